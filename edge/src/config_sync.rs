//! Keeps the served config in step with the bus: watches snapshot heads, fetches bodies it does
//! not have, decodes, checks and compiles them off the request path, swaps them in and records
//! them as last-known-good in the background. Each apply is timed by phase (`/status`,
//! `/metrics`). Everything retries with backoff, so a bus outage only delays updates.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tollgate_bus::{Bus, ConfigEvent, ConfigFilter, SnapshotBody};
use tollgate_model::secret::MasterKey;
use tollgate_model::{Snapshot, SnapshotHead};
use uuid::Uuid;

use crate::data_dir::{ArrivedBody, LastKnownGood};
use crate::served::LoadedControlPlane;
use crate::shutdown::wait_for_shutdown;
use crate::state::{ApplyPhase, ApplyReport, EdgeState};

const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(15);

pub struct ConfigSync {
    pub bus: Arc<dyn Bus>,
    pub filter: ConfigFilter,
    pub state: Arc<EdgeState>,
    pub lkg: LastKnownGood,
    /// Opens the certificates' private keys while compiling.
    pub master_key: Option<MasterKey>,
    /// Decodes, compiles and frees snapshots.
    pub apply_thread: ApplyThread,
}

/// The one thread that decodes and compiles snapshots and frees the configs they replace.
///
/// A 10,000-route apply allocates tens of MiB. Done on one thread, each apply reuses what the
/// allocator kept of the memory the last one freed (the binary sets mimalloc to keep it). On
/// tokio's blocking pool, each step runs on whichever thread is free, and idle threads end, so
/// the memory is spread over heaps and an apply often takes fresh pages from the OS. On a VM
/// those page faults cost more than the apply's own work: cold applies of 10,000 routes took
/// 100–360 ms instead of 30 (`loadtest/RESULTS.md`). A channel and a thread do this; a thread
/// pool crate would add nothing here.
pub struct ApplyThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce() + Send>;

impl ApplyThread {
    pub fn start() -> std::io::Result<ApplyThread> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("tollgate-apply".into())
            .spawn(move || {
                for job in queue {
                    // A job that panics has dropped its result sender: its caller sees the
                    // failure, and the thread goes on to the next job.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        Ok(ApplyThread { jobs })
    }

    /// Runs `job` on the apply thread; `Err` when it panicked.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let (result, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = result.send(job());
            }))
            .map_err(|_| "the apply thread has stopped".to_string())?;
        answer.await.map_err(|_| "applying panicked".to_string())
    }

    /// Drops a replaced config on the apply thread: freeing a big router's every piece takes
    /// milliseconds that a request thread should not spend, and its memory goes back to the heap
    /// the next apply allocates from. Requests still holding it keep it alive until they finish,
    /// whichever thread then frees it.
    fn retire(&self, replaced: impl Send + 'static) {
        let _ = self.jobs.send(Box::new(move || drop(replaced)));
    }
}

/// A head whose body could not be applied yet.
struct Pending {
    head: SnapshotHead,
    attempts: u32,
    due: Instant,
}

impl ConfigSync {
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let lkg = LkgWriter::start(self.lkg.clone());
        self.follow(&lkg, shutdown).await;
        // What was applied before the shutdown is on disk for the next start.
        lkg.finish().await;
    }

    async fn follow(&self, lkg: &LkgWriter, mut shutdown: watch::Receiver<bool>) {
        let mut rewatch = Backoff::default();
        let mut pending: HashMap<Uuid, Pending> = HashMap::new();
        loop {
            let mut events = match self.bus.watch_config(self.filter.clone()).await {
                Ok(events) => {
                    tracing::debug!("watching config heads");
                    events
                }
                Err(e) => {
                    let delay = rewatch.next();
                    tracing::warn!(error = %e, retry_in = ?delay, "cannot watch config heads");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = wait_for_shutdown(&mut shutdown) => return,
                    }
                }
            };
            loop {
                let next_due = pending.values().map(|p| p.due).min();
                tokio::select! {
                    _ = wait_for_shutdown(&mut shutdown) => return,
                    event = events.next() => match event {
                        Some(Ok(event)) => {
                            rewatch = Backoff::default();
                            self.handle(event, &mut pending, lkg).await;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "config watch failed");
                            break;
                        }
                        None => {
                            tracing::warn!("config watch ended");
                            break;
                        }
                    },
                    _ = sleep_until(next_due), if next_due.is_some() => {
                        self.retry_due(&mut pending, lkg).await;
                    }
                }
            }
            let delay = rewatch.next();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_for_shutdown(&mut shutdown) => return,
            }
        }
    }

    async fn handle(
        &self,
        event: ConfigEvent,
        pending: &mut HashMap<Uuid, Pending>,
        lkg: &LkgWriter,
    ) {
        match event {
            ConfigEvent::Updated(head) => {
                if !self.filter.accepts(&head) {
                    return;
                }
                pending.remove(&head.control_plane_id);
                self.try_apply(head, 0, pending, lkg).await;
            }
            ConfigEvent::Removed { control_plane_id } => {
                if self
                    .filter
                    .control_plane
                    .is_some_and(|only| only != control_plane_id)
                {
                    return;
                }
                pending.remove(&control_plane_id);
                self.remove(control_plane_id, lkg);
            }
        }
    }

    async fn retry_due(&self, pending: &mut HashMap<Uuid, Pending>, lkg: &LkgWriter) {
        let now = Instant::now();
        let due: Vec<Uuid> = pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = pending.remove(&id) {
                self.try_apply(p.head, p.attempts, pending, lkg).await;
            }
        }
    }

    /// Applies the snapshot a head announces, or schedules another try.
    async fn try_apply(
        &self,
        head: SnapshotHead,
        attempts: u32,
        pending: &mut HashMap<Uuid, Pending>,
        lkg: &LkgWriter,
    ) {
        let started = Instant::now();
        let id = head.control_plane_id;
        if let Some(applied) = self.state.served.load().get(id) {
            // Same content under a newer number (a no-op write, a restore) is still applied,
            // so the version this node reports matches the control plane's.
            if applied.hash == head.hash && head.version <= applied.version {
                return;
            }
            if head.version < applied.version {
                tracing::debug!(control_plane = %id, head = head.version, applied = applied.version, "ignoring an older head");
                return;
            }
        }
        let mut report = ApplyReport::new(id, head.version);
        match self.fetch(&head, &mut report).await {
            Ok((snapshot, arrived)) => self.apply(snapshot, arrived, report, started, lkg).await,
            Err(reason) => {
                let delay = retry_delay(attempts);
                tracing::warn!(control_plane = %id, version = head.version, %reason, retry_in = ?delay, "snapshot not applied yet");
                pending.insert(
                    id,
                    Pending {
                        head,
                        attempts: attempts + 1,
                        due: Instant::now() + delay,
                    },
                );
            }
        }
    }

    /// The body a head announces, decoded and checked against its hash, off the request threads.
    async fn fetch(
        &self,
        head: &SnapshotHead,
        report: &mut ApplyReport,
    ) -> Result<(Snapshot, Option<ArrivedBody>), String> {
        let fetching = Instant::now();
        let body = self
            .bus
            .fetch_snapshot_body(head)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no body published")?;
        report.set(ApplyPhase::Fetch, fetching.elapsed());
        let (snapshot, arrived, decode, verify) = self
            .apply_thread
            .run(move || decode_and_verify(body))
            .await??;
        report.set(ApplyPhase::Decode, decode);
        report.set(ApplyPhase::Verify, verify);
        if snapshot.control_plane_id != head.control_plane_id {
            return Err(format!(
                "body is for control plane {}",
                snapshot.control_plane_id
            ));
        }
        if snapshot.version < head.version {
            return Err(format!(
                "body is version {}, older than the head",
                snapshot.version
            ));
        }
        Ok((snapshot, arrived))
    }

    /// Compiles and swaps in `snapshot`; `arrived` is the body it came in, when that is a
    /// faithful encoding, for the last-known-good store to write as it is.
    async fn apply(
        &self,
        snapshot: Snapshot,
        arrived: Option<ArrivedBody>,
        mut report: ApplyReport,
        started: Instant,
        lkg: &LkgWriter,
    ) {
        let id = snapshot.control_plane_id;
        if let Some(applied) = self.state.served.load().get(id) {
            if snapshot.version < applied.version {
                tracing::debug!(control_plane = %id, "not applying an older snapshot");
                return;
            }
        }
        // A body newer than its head is reported under its own version.
        report.version = snapshot.version;
        let snapshot = Arc::new(snapshot);
        let compiling = snapshot.clone();
        let master_key = self.master_key.clone();
        let targets = self.state.targets.clone();
        let previous = self.state.served.load().get(id).cloned();
        let compiled = match self
            .apply_thread
            .run(move || {
                let compiling_started = Instant::now();
                let compiled = LoadedControlPlane::compile_after(
                    &compiling,
                    master_key.as_ref(),
                    &targets,
                    previous.as_deref(),
                );
                (compiled, compiling_started.elapsed())
            })
            .await
        {
            Ok((compiled, took)) => {
                report.set(ApplyPhase::Compile, took);
                Arc::new(compiled)
            }
            Err(e) => {
                tracing::error!(control_plane = %id, error = %e, "compiling a snapshot failed");
                return;
            }
        };
        let swapping = Instant::now();
        let next = self.state.served.load().with(compiled);
        let replaced = self.state.swap(next);
        report.set(ApplyPhase::Swap, swapping.elapsed());
        report.set(ApplyPhase::Total, started.elapsed());
        self.apply_thread.retire(replaced);
        tracing::info!(
            control_plane = %id,
            version = snapshot.version,
            hash = %snapshot.hash,
            fetch_ms = millis(report.get(ApplyPhase::Fetch)),
            decode_ms = millis(report.get(ApplyPhase::Decode)),
            verify_ms = millis(report.get(ApplyPhase::Verify)),
            compile_ms = millis(report.get(ApplyPhase::Compile)),
            swap_ms = millis(report.get(ApplyPhase::Swap)),
            total_ms = millis(report.get(ApplyPhase::Total)),
            "applied config"
        );
        self.state.record_apply(report);
        lkg.store(snapshot, arrived);
    }

    fn remove(&self, id: Uuid, lkg: &LkgWriter) {
        if self.state.served.load().get(id).is_some() {
            let next = self.state.served.load().without(id);
            self.apply_thread.retire(self.state.swap(next));
            self.state.forget_apply(id);
            tracing::info!(control_plane = %id, "removed config");
        }
        lkg.remove(id);
    }
}

/// A snapshot, the body it came in when its bytes were confirmed as they are (so they can be
/// stored again without encoding the snapshot anew), and how long decoding and verifying took.
type Decoded = (Snapshot, Option<ArrivedBody>, Duration, Duration);

/// Unpacks and parses a body (when the bus did not) and checks it against its hash; returns how
/// long each took. An encoded body's hash is checked on its bytes on a second thread while this
/// one decodes it, so checking costs no time unless the body is laid out unusually. Slow for big
/// snapshots: call it off the request threads.
fn decode_and_verify(body: SnapshotBody) -> Result<Decoded, String> {
    let unpacking = std::time::Instant::now();
    // A packed body is kept as it came: the last-known-good store writes it packed.
    let (bytes, packed) = match body {
        SnapshotBody::Encoded(bytes) => (bytes, None),
        SnapshotBody::Packed(packed) => {
            let bytes = tollgate_bus::packing::unpack(&packed)
                .map_err(|e| format!("unpackable body: {e}"))?;
            (bytes, Some(packed))
        }
        SnapshotBody::Decoded(snapshot) => {
            let verifying = std::time::Instant::now();
            if !snapshot.verify() {
                return Err("body does not match its hash".into());
            }
            return Ok((*snapshot, None, Duration::ZERO, verifying.elapsed()));
        }
    };
    let unpacked = unpacking.elapsed();
    let (decoded, (encoded_hash, hashing)) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| {
            let started = std::time::Instant::now();
            let hash = Snapshot::hash_of_encoded(&bytes).map(str::to_owned);
            (hash, started.elapsed())
        });
        let decoding = std::time::Instant::now();
        // The whole body is checked as UTF-8 once, in long strides: `from_slice` checks each of
        // its tens of thousands of short strings on its own (10,000 routes: 13 ms → 12 ms at
        // best, `edge/examples/snapshot_apply`).
        let decoded = std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<Snapshot>(text).map_err(|e| e.to_string()))
            .map(|s| (s, decoding.elapsed()));
        // A hashing thread that panicked confirmed nothing: the full check below runs.
        (decoded, hashing.join().unwrap_or((None, Duration::ZERO)))
    });
    let (snapshot, decode) = decoded.map_err(|e| format!("undecodable body: {e}"))?;
    // Unpacking is part of decoding, as `/status` reports it.
    let decode = decode + unpacked;
    let confirmed = encoded_hash.is_some_and(|hash| {
        hash == snapshot.hash && snapshot.format == tollgate_model::snapshot::SNAPSHOT_FORMAT
    });
    if confirmed {
        let arrived = match packed {
            Some(frame) => ArrivedBody::Packed(frame),
            None => ArrivedBody::Json(bytes),
        };
        return Ok((snapshot, Some(arrived), decode, hashing));
    }
    drop((bytes, packed));
    let verifying = std::time::Instant::now();
    if !snapshot.verify() {
        return Err("body does not match its hash".into());
    }
    Ok((snapshot, None, decode, hashing + verifying.elapsed()))
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A change to the last-known-good store.
enum LkgChange {
    /// The snapshot, and the body it came in when that can be written as it is.
    Store(Arc<Snapshot>, Option<ArrivedBody>),
    Remove,
}

/// Writes last-known-good snapshots in the background, in the order they were applied, so that
/// serializing and fsyncing MiBs never holds up applying the next head. When changes come faster
/// than the disk takes them, only each control plane's latest is written.
struct LkgWriter {
    changes: mpsc::UnboundedSender<(Uuid, LkgChange)>,
    task: tokio::task::JoinHandle<()>,
}

impl LkgWriter {
    fn start(lkg: LastKnownGood) -> LkgWriter {
        let (changes, mut queue) = mpsc::unbounded_channel::<(Uuid, LkgChange)>();
        let task = tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut latest: HashMap<Uuid, LkgChange> = HashMap::new();
                let mut order = Vec::new();
                let mut next = Some(first);
                while let Some((id, change)) = next {
                    if latest.insert(id, change).is_none() {
                        order.push(id);
                    }
                    next = queue.try_recv().ok();
                }
                for id in order {
                    let Some(change) = latest.remove(&id) else {
                        continue;
                    };
                    let lkg = lkg.clone();
                    let written = tokio::task::spawn_blocking(move || match change {
                        LkgChange::Store(snapshot, arrived) => {
                            lkg.store(&snapshot, arrived.as_ref()).map(|()| "store")
                        }
                        LkgChange::Remove => lkg.remove(id).map(|()| "delete"),
                    })
                    .await;
                    if let Err(e) = written
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()))
                    {
                        tracing::warn!(control_plane = %id, error = %e, "could not update the last-known-good snapshot");
                    }
                }
            }
        });
        LkgWriter { changes, task }
    }

    fn store(&self, snapshot: Arc<Snapshot>, arrived: Option<ArrivedBody>) {
        let id = snapshot.control_plane_id;
        let _ = self.changes.send((id, LkgChange::Store(snapshot, arrived)));
    }

    fn remove(&self, id: Uuid) {
        let _ = self.changes.send((id, LkgChange::Remove));
    }

    /// Waits for the changes already queued to be written.
    async fn finish(self) {
        drop(self.changes);
        let _ = self.task.await;
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn retry_delay(attempts: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1u32 << attempts.min(10))
        .min(MAX_RETRY)
}

/// Exponential backoff with a little jitter, so a fleet of edges does not reconnect in step.
#[derive(Default)]
pub struct Backoff {
    attempts: u32,
}

impl Backoff {
    pub fn next(&mut self) -> Duration {
        let base = retry_delay(self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter_ceiling = u32::try_from(base.as_millis() / 4).unwrap_or(0).max(1);
        base + Duration::from_millis(u64::from(nanos % jitter_ceiling))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_apply_thread_runs_every_job_on_one_thread_and_outlives_a_panic() {
        let apply = ApplyThread::start().unwrap();
        let thread = || std::thread::current().id();
        let first = apply.run(thread).await.unwrap();
        assert_ne!(first, std::thread::current().id());
        let panicked = apply.run(|| -> u8 { panic!("a job that fails") }).await;
        assert_eq!(panicked.unwrap_err(), "applying panicked");
        // What the config it replaces holds is freed there too.
        let (freed, on) = std::sync::mpsc::channel();
        struct Reports(std::sync::mpsc::Sender<std::thread::ThreadId>);
        impl Drop for Reports {
            fn drop(&mut self) {
                let _ = self.0.send(std::thread::current().id());
            }
        }
        let replaced = Reports(freed);
        apply.retire(replaced);
        assert_eq!(on.recv().unwrap(), first);
        assert_eq!(apply.run(thread).await.unwrap(), first);
    }

    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(retry_delay(0), FIRST_RETRY);
        assert_eq!(retry_delay(1), FIRST_RETRY * 2);
        assert_eq!(retry_delay(30), MAX_RETRY);
        let mut backoff = Backoff::default();
        let first = backoff.next();
        assert!(first >= FIRST_RETRY && first < FIRST_RETRY * 2);
    }

    fn snapshot_of(paths: &[&str]) -> Snapshot {
        let routes = paths
            .iter()
            .map(|path| {
                tollgate_model::entity::build(
                    tollgate_model::entity::Build::Create { id: Uuid::now_v7() },
                    &serde_json::json!({ "paths": [path] }),
                    1,
                )
                .unwrap()
            })
            .collect();
        Snapshot::compile(
            Uuid::now_v7(),
            Uuid::nil(),
            4,
            vec!["a.test".into()],
            vec![],
            routes,
        )
    }

    #[test]
    fn encoded_bodies_are_decoded_and_checked_against_their_hash() {
        let snapshot = snapshot_of(&["/a", "/b"]);
        let body = serde_json::to_vec(&snapshot).unwrap();
        let (decoded, kept, _, _) = decode_and_verify(SnapshotBody::Encoded(body.clone())).unwrap();
        assert_eq!(decoded, snapshot);
        // Confirmed on its bytes: kept, for the last-known-good store to write as it is.
        assert!(matches!(kept, Some(ArrivedBody::Json(kept)) if kept == body));

        // Another layout of the same content still verifies, by encoding it again, and is not
        // kept: only the publisher's own encoding is confirmed byte for byte.
        let pretty = serde_json::to_vec_pretty(&snapshot).unwrap();
        let (decoded, kept, _, _) = decode_and_verify(SnapshotBody::Encoded(pretty)).unwrap();
        assert_eq!(decoded, snapshot);
        assert!(kept.is_none());

        // Content that is not what was hashed does not, in either layout.
        let edited = String::from_utf8(body).unwrap().replace("\"/b\"", "\"/c\"");
        let refused = decode_and_verify(SnapshotBody::Encoded(edited.into_bytes()));
        assert_eq!(refused.unwrap_err(), "body does not match its hash");
        let mut edited = snapshot.clone();
        edited.hostnames.push("b.test".into());
        let pretty = serde_json::to_vec_pretty(&edited).unwrap();
        assert!(decode_and_verify(SnapshotBody::Encoded(pretty)).is_err());

        // A hash that matches the content but comes with an unknown format is refused.
        let mut future = snapshot.clone();
        future.format += 1;
        let body = serde_json::to_vec(&future).unwrap();
        assert!(decode_and_verify(SnapshotBody::Encoded(body)).is_err());

        assert!(decode_and_verify(SnapshotBody::Encoded(b"{".to_vec()))
            .unwrap_err()
            .starts_with("undecodable body"));
        // Bytes that are not UTF-8, inside a string, are refused as a whole body is.
        let mut not_utf8 = serde_json::to_vec(&snapshot).unwrap();
        let at = not_utf8.windows(2).position(|w| w == b"/a").unwrap() + 1;
        not_utf8[at] = 0xff;
        let refused = decode_and_verify(SnapshotBody::Encoded(not_utf8)).unwrap_err();
        assert!(
            refused.starts_with("undecodable body: invalid utf-8"),
            "{refused}"
        );
        // A packed body is the same bytes once unpacked, and is kept packed, as it came.
        let body = serde_json::to_vec(&snapshot).unwrap();
        let packed = tollgate_bus::packing::pack(&body);
        let (decoded, kept, _, _) =
            decode_and_verify(SnapshotBody::Packed(packed.clone())).unwrap();
        assert_eq!(decoded, snapshot);
        assert!(matches!(kept, Some(ArrivedBody::Packed(kept)) if kept == packed));
        let pretty = tollgate_bus::packing::pack(&serde_json::to_vec_pretty(&snapshot).unwrap());
        let (decoded, kept, _, _) = decode_and_verify(SnapshotBody::Packed(pretty)).unwrap();
        assert_eq!(decoded, snapshot);
        assert!(kept.is_none());
        let refused = decode_and_verify(SnapshotBody::Packed(packed[..packed.len() - 9].to_vec()));
        assert!(refused
            .unwrap_err()
            .starts_with("unpackable body: damaged LZ4 frame"));
        assert!(decode_and_verify(SnapshotBody::Decoded(Box::new(snapshot))).is_ok());
        assert!(decode_and_verify(SnapshotBody::Decoded(Box::new(edited))).is_err());
    }
}
