//! Encodes finished log lines straight into their batch's wire form, closes batches by count, by
//! size (so a batch always fits in one NATS message) and by time, and gives each line and batch
//! its UUIDv7 here, off the request path.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tollgate_model::request_log::{EncodedLogBatch, LogBatchEncoder, LogLine};
use uuid::{Builder, Uuid};

use super::record::LogRecord;
use super::LineQueue;

/// The most a batch may weigh, with room to spare under NATS's 1 MiB `max_payload`. A line's
/// size is bounded before it is added ([`LogLine::encoded_len_bound`]), so a batch never
/// exceeds it.
pub const MAX_BATCH_BYTES: usize = 768 * 1024;

pub struct Batching {
    pub node_id: Uuid,
    pub region: String,
    pub batch_size: usize,
    pub flush_interval: Duration,
}

/// How long the batcher lets lines gather after taking what was queued. Short against the flush
/// interval; the queue holds far more than arrives in this time.
const GATHER_PAUSE: Duration = Duration::from_millis(10);

/// Runs until `stop` fires (or its sender is gone), then closes the queue, batches what was in it
/// and returns; dropping `outbox` tells delivery that nothing more comes.
pub(super) async fn run(
    batching: Batching,
    queue: Arc<LineQueue>,
    outbox: mpsc::Sender<EncodedLogBatch>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut open = OpenBatch::new(&batching);
    let mut ids = LineIds::new();
    let mut taken = Vec::new();
    loop {
        let deadline = open.deadline;
        tokio::select! {
            () = queue.filled.notified() => {
                // Let lines gather instead of waking for each request (a wake-up per request
                // costs the proxy's thread more than the line itself). Stopping cuts it short.
                tokio::select! {
                    () = tokio::time::sleep(GATHER_PAUSE) => {}
                    _ = &mut stop => {
                        queue.close();
                        break;
                    }
                }
                queue.take(&mut taken);
                add_lines(&mut open, &mut ids, &mut taken, &batching, &outbox).await;
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                send(open.close(), &outbox).await;
            }
            _ = &mut stop => {
                // Lines already queued are still taken; later pushes are refused and counted.
                queue.close();
                break;
            }
        }
    }
    queue.take(&mut taken);
    add_lines(&mut open, &mut ids, &mut taken, &batching, &outbox).await;
    if !open.is_empty() {
        send(open.close(), &outbox).await;
    }
}

/// Ids of log lines: UUIDv7 with the line's own arrival time, and for the 74 bits after it a
/// random starting point drawn once per batcher, counted up by one per line. Unique within an
/// edge (a counter), and across edges as random ids are; drawing fresh random bits per line
/// (`Uuid::new_v7`) cost a tenth of what logging adds to a request.
struct LineIds {
    next: u128,
}

impl LineIds {
    fn new() -> LineIds {
        LineIds {
            next: Uuid::new_v4().as_u128(),
        }
    }

    fn id(&mut self, time_secs: i64, time_nanos: u32) -> Uuid {
        let millis =
            u64::try_from(time_secs).unwrap_or(0) * 1000 + u64::from(time_nanos / 1_000_000);
        self.next = self.next.wrapping_add(1);
        let bytes = self.next.to_be_bytes();
        let mut random = [0u8; 10];
        random.copy_from_slice(&bytes[6..]);
        Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
    }
}

async fn add_lines(
    open: &mut OpenBatch,
    ids: &mut LineIds,
    lines: &mut Vec<LogRecord>,
    batching: &Batching,
    outbox: &mpsc::Sender<EncodedLogBatch>,
) {
    for record in lines.drain(..) {
        let id = ids.id(record.time_secs, record.time_nanos);
        let line = record.line(id, batching.node_id, &batching.region);
        if open.is_full_for(&line) {
            send(open.close(), outbox).await;
        }
        open.push(&line);
    }
    if open.lines() >= batching.batch_size {
        send(open.close(), outbox).await;
    }
}

async fn send(batch: Option<EncodedLogBatch>, outbox: &mpsc::Sender<EncodedLogBatch>) {
    let Some(batch) = batch else {
        return;
    };
    // Waiting here (delivery is slow) fills the queue behind us, never a request.
    if outbox.send(batch).await.is_err() {
        tracing::error!("request log delivery has stopped; a batch is lost");
    }
}

struct OpenBatch {
    encoder: Option<LogBatchEncoder>,
    node_id: Uuid,
    batch_size: usize,
    flush_interval: Duration,
    /// The last batch's size: the next one's buffer is made about as large at once.
    last_bytes: usize,
    /// When the oldest line in the batch has waited long enough.
    deadline: Option<Instant>,
}

impl OpenBatch {
    fn new(batching: &Batching) -> OpenBatch {
        OpenBatch {
            encoder: None,
            node_id: batching.node_id,
            batch_size: batching.batch_size,
            flush_interval: batching.flush_interval,
            last_bytes: 16 * 1024,
            deadline: None,
        }
    }

    fn lines(&self) -> usize {
        self.encoder.as_ref().map_or(0, LogBatchEncoder::lines)
    }

    fn is_empty(&self) -> bool {
        self.lines() == 0
    }

    fn is_full_for(&self, line: &LogLine<'_>) -> bool {
        self.encoder.as_ref().is_some_and(|encoder| {
            !encoder.is_empty()
                && (encoder.lines() >= self.batch_size
                    || encoder.len_bytes() + line.encoded_len_bound() > MAX_BATCH_BYTES)
        })
    }

    fn push(&mut self, line: &LogLine<'_>) {
        let capacity = (self.last_bytes + self.last_bytes / 8).min(MAX_BATCH_BYTES);
        let node_id = self.node_id;
        let encoder = self.encoder.get_or_insert_with(|| {
            // The batch id is made when its first line comes: batches are opened and closed
            // one at a time, so their ids still go by age, as spool replay needs.
            LogBatchEncoder::new(Uuid::now_v7(), node_id, capacity)
        });
        if let Err(e) = encoder.push(line) {
            // Only a line postcard cannot write, which these types never are.
            tracing::error!(error = %e, "cannot encode a request log line; dropping it");
            return;
        }
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.flush_interval);
        }
    }

    fn close(&mut self) -> Option<EncodedLogBatch> {
        self.deadline = None;
        let encoder = self.encoder.take()?;
        if encoder.is_empty() {
            return None;
        }
        self.last_bytes = encoder.len_bytes();
        Some(encoder.finish())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::logging::record::LogText;
    use std::net::IpAddr;

    fn record(text: &str) -> LogRecord {
        LogRecord::new(
            Uuid::max(),
            Uuid::max(),
            LogText {
                request_id: text,
                method: text,
                host: text,
                path: text,
            },
            IpAddr::from([0xffff; 8]),
        )
    }

    fn batching(batch_size: usize) -> Batching {
        Batching {
            node_id: Uuid::max(),
            region: "eu".into(),
            batch_size,
            flush_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn line_ids_are_distinct_v7_ids_of_the_line_time() {
        let (mut a, mut b) = (LineIds::new(), LineIds::new());
        let time = 1_790_000_000; // 2026-09-21
        let mut seen = std::collections::HashSet::new();
        for n in 0..10_000u32 {
            for ids in [&mut a, &mut b] {
                let id = ids.id(time, n * 1000);
                assert_eq!(id.get_version_num(), 7);
                assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
                let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
                assert_eq!(
                    (secs, nanos / 1_000_000),
                    (time as u64, n * 1000 / 1_000_000)
                );
                assert!(seen.insert(id), "{id} twice");
            }
        }
    }

    #[tokio::test]
    async fn batches_close_by_count_and_by_size() {
        let batching = batching(3);
        let mut open = OpenBatch::new(&batching);
        let small = record("a");
        let line = small.line(Uuid::max(), Uuid::max(), "eu");
        for _ in 0..3 {
            assert!(!open.is_full_for(&line));
            open.push(&line);
        }
        assert!(open.is_full_for(&line));
        let batch = open.close().unwrap();
        assert_eq!(batch.lines, 3);
        assert_eq!(batch.decode().unwrap().logs.len(), 3);
        assert!(open.deadline.is_none());
        assert!(open.close().is_none());

        // Long lines: closed by size, and no batch over the bound.
        let batching = batching_of_size(usize::MAX);
        let mut open = OpenBatch::new(&batching);
        let long = record(&"x".repeat(1024));
        let line = long.line(Uuid::max(), Uuid::max(), "eu");
        let mut closed = Vec::new();
        for _ in 0..1000 {
            if open.is_full_for(&line) {
                closed.extend(open.close());
            }
            open.push(&line);
        }
        assert!(!closed.is_empty());
        for batch in &closed {
            assert!(batch.bytes.len() <= MAX_BATCH_BYTES);
            assert!(batch.bytes.len() > MAX_BATCH_BYTES - 5 * 1024);
        }
    }

    fn batching_of_size(batch_size: usize) -> Batching {
        batching(batch_size)
    }

    #[tokio::test]
    async fn lines_are_encoded_with_the_node_region_and_their_own_ids() {
        let queue = Arc::new(LineQueue::new(16));
        let (outbox, mut outgoing) = mpsc::channel(4);
        let (stop, stopped) = oneshot::channel();
        let batcher = tokio::spawn(run(batching(10), queue.clone(), outbox, stopped));
        for i in 0..5 {
            assert!(queue.push(record(&format!("r{i}"))).is_ok());
        }
        stop.send(()).unwrap();
        batcher.await.unwrap();
        assert!(matches!(
            queue.push(record("late")),
            Err(super::super::Refused::Closed)
        ));
        let batch = outgoing.recv().await.unwrap().decode().unwrap();
        assert!(outgoing.recv().await.is_none());
        assert_eq!(batch.node_id, Uuid::max());
        let ids: std::collections::BTreeSet<Uuid> = batch.logs.iter().map(|l| l.id).collect();
        assert_eq!(ids.len(), 5);
        for (i, log) in batch.logs.iter().enumerate() {
            assert_eq!(log.request_id, format!("r{i}"));
            assert_eq!(log.region, "eu");
            assert_eq!(log.node_id, Uuid::max());
            assert_eq!(log.client_ip, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
            assert_eq!(log.id.get_version_num(), 7);
            assert_eq!(
                log.id.get_timestamp().unwrap().to_unix().0,
                log.time.timestamp() as u64
            );
        }
    }
}
