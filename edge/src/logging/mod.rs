//! Request logs (DESIGN §9): every answered request becomes a `RequestLog` when its response body
//! ends ([`body`]); the request path hands it to a bounded queue without waiting; a batcher encodes
//! the lines into their batch's wire form and closes batches by count, size and time
//! ([`batcher`]); delivery publishes them on the bus, or spools
//! them to the data dir while the bus is unreachable and replays them oldest first
//! ([`delivery`], [`spool`]). Nothing accepted into the queue is lost except by a counted drop.

mod batcher;
pub mod body;
mod delivery;
mod record;
mod spool;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tollgate_bus::Bus;
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::LogMetrics;
use crate::websocket::Tunnel;
use record::LogRecord;
pub use spool::SpoolError;

/// Where the spool lives inside the edge's data dir.
pub const SPOOL_DIR: &str = "log-spool";

/// How an edge ships its request logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLogConfig {
    /// Off: no log lines are made at all.
    pub enabled: bool,
    /// Most log lines in one batch (batches are also capped well under NATS's 1 MiB message).
    pub batch_size: usize,
    /// Longest a log line waits in an open batch.
    pub flush_interval: Duration,
    /// Most bytes the spool keeps while the bus is unreachable; beyond it the oldest batches go.
    pub spool_max_bytes: u64,
}

impl Default for RequestLogConfig {
    fn default() -> Self {
        RequestLogConfig {
            enabled: true,
            batch_size: 1000,
            flush_interval: Duration::from_secs(1),
            spool_max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The request path's end of the log queue. Cloning is one reference count.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<SinkInner>,
}

struct SinkInner {
    queue: Arc<LineQueue>,
    metrics: LogMetrics,
    /// The lines of upgraded connections still open, by a number of their own: queued when the
    /// tunnel closes, or at shutdown with the bytes so far.
    tunnels: Mutex<HashMap<u64, (LogRecord, Tunnel)>>,
    next_tunnel: AtomicU64,
}

impl LogSink {
    /// Queues a finished log line; never waits. A full queue (the shipper cannot keep up)
    /// drops the line and counts it.
    pub(crate) fn push(&self, record: LogRecord) {
        match self.inner.queue.push(record) {
            Ok(()) => {}
            Err(Refused::Full) => self.inner.metrics.dropped_queue_full.inc(),
            Err(Refused::Closed) => self.inner.metrics.dropped_shutdown.inc(),
        }
    }

    pub fn metrics(&self) -> &LogMetrics {
        &self.inner.metrics
    }

    /// Queues `record` once `tunnel` has closed, with the bytes it carried added. Until then it
    /// waits among the open tunnels, which [`LogShipper::shutdown`] ships as they stand, so a
    /// line is not lost to a tunnel that outlives the edge.
    pub(crate) fn push_when_closed(&self, record: LogRecord, tunnel: Tunnel) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.push(with_tunnel_bytes(record, &tunnel));
        };
        let id = self.inner.next_tunnel.fetch_add(1, Ordering::Relaxed);
        self.open_tunnels().insert(id, (record, tunnel.clone()));
        let sink = self.clone();
        runtime.spawn(async move {
            tunnel.closed().await;
            let closed = sink.open_tunnels().remove(&id);
            if let Some((record, tunnel)) = closed {
                sink.push(with_tunnel_bytes(record, &tunnel));
            }
        });
    }

    /// Queues the lines of the tunnels still open, with the bytes they have carried so far.
    fn flush_tunnels(&self) {
        let open = std::mem::take(&mut *self.open_tunnels());
        for (record, tunnel) in open.into_values() {
            self.push(with_tunnel_bytes(record, &tunnel));
        }
    }

    fn open_tunnels(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (LogRecord, Tunnel)>> {
        // A panic while holding the lock leaves whole entries: still usable.
        self.inner
            .tunnels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// `record` with a tunnel's bytes added: from the client in, to the client out.
fn with_tunnel_bytes(mut record: LogRecord, tunnel: &Tunnel) -> LogRecord {
    let (from_client, to_client) = tunnel.bytes();
    record.bytes_in += from_client;
    record.bytes_out += to_client;
    record
}

/// The bounded queue of finished lines between the request path and the batcher: a vector
/// behind a lock that the batcher swaps out whole. A tokio channel woke the batcher task for
/// nearly every line and moved lines one by one; here a push is a short uncontended lock, and
/// only the push that finds the queue empty wakes the batcher, which then lets lines gather.
struct LineQueue {
    state: Mutex<QueueState>,
    /// Signalled by the push that finds the queue empty.
    filled: Notify,
    capacity: usize,
}

struct QueueState {
    lines: Vec<LogRecord>,
    closed: bool,
}

enum Refused {
    Full,
    Closed,
}

impl LineQueue {
    fn new(capacity: usize) -> LineQueue {
        LineQueue {
            state: Mutex::new(QueueState {
                lines: Vec::new(),
                closed: false,
            }),
            filled: Notify::new(),
            capacity,
        }
    }

    fn push(&self, record: LogRecord) -> Result<(), Refused> {
        // A panic while holding the lock leaves a vector of whole lines: still usable.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return Err(Refused::Closed);
        }
        if state.lines.len() >= self.capacity {
            return Err(Refused::Full);
        }
        let was_empty = state.lines.is_empty();
        state.lines.push(record);
        drop(state);
        if was_empty {
            self.filled.notify_one();
        }
        Ok(())
    }

    /// Moves every queued line into `into` (empty), leaving its allocation to the queue.
    fn take(&self, into: &mut Vec<LogRecord>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut state.lines, into);
    }

    /// Refuses later pushes; lines already queued can still be taken.
    fn close(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
    }
}

/// The running shipper: the batcher and delivery tasks.
pub struct LogShipper {
    /// To ship the lines of tunnels still open first.
    sink: LogSink,
    stop: oneshot::Sender<()>,
    batcher: JoinHandle<()>,
    delivery: JoinHandle<()>,
}

/// The longest shutdown waits for the last batches to be published or spooled. Publishing has
/// its own timeout, so this only guards against a stuck disk.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

impl LogShipper {
    /// Closes the queue, batches what is in it and publishes or spools everything still in
    /// memory. Call it after the listeners have drained, so the last requests are in.
    pub async fn shutdown(self) {
        self.sink.flush_tunnels();
        let _ = self.stop.send(());
        let finished = async {
            let _ = self.batcher.await;
            let _ = self.delivery.await;
        };
        if tokio::time::timeout(SHUTDOWN_LIMIT, finished)
            .await
            .is_err()
        {
            tracing::error!("request logs still not flushed after {SHUTDOWN_LIMIT:?}; giving up");
        }
    }
}

/// The queue between the request path and the batcher, in log lines. Sized for several seconds
/// of a busy edge while a publish waits for its timeout, at a few hundred bytes per line.
fn queue_capacity(config: &RequestLogConfig) -> usize {
    config.batch_size.saturating_mul(32).clamp(8_192, 262_144)
}

/// Closed batches waiting for delivery.
const OUTBOX_BATCHES: usize = 16;

/// Opens the spool in `data_dir` (replaying what an earlier run left there) and starts shipping.
pub async fn start(
    config: &RequestLogConfig,
    bus: Arc<dyn Bus>,
    node_id: Uuid,
    region: &str,
    data_dir: &Path,
    metrics: LogMetrics,
) -> Result<(LogSink, LogShipper), SpoolError> {
    let spool = spool::Spool::open(
        data_dir.join(SPOOL_DIR),
        config.spool_max_bytes,
        metrics.clone(),
    )
    .await?;
    if !spool.is_empty() {
        tracing::info!(
            batches = spool.len(),
            "request log batches in the spool from an earlier run; replaying them"
        );
    }
    let queue = Arc::new(LineQueue::new(queue_capacity(config)));
    let (outbox, outgoing) = mpsc::channel(OUTBOX_BATCHES);
    let (stop, stopped) = oneshot::channel();
    let batcher = tokio::spawn(
        batcher::run(
            batcher::Batching {
                node_id,
                region: region.to_owned(),
                batch_size: config.batch_size.max(1),
                flush_interval: config.flush_interval,
            },
            queue.clone(),
            outbox,
            stopped,
        )
        .instrument(tracing::info_span!("request_log_batcher")),
    );
    let delivery = tokio::spawn(
        delivery::run(bus, spool, outgoing, metrics.clone())
            .instrument(tracing::info_span!("request_log_delivery")),
    );
    let sink = LogSink {
        inner: Arc::new(SinkInner {
            queue,
            metrics,
            tunnels: Mutex::default(),
            next_tunnel: AtomicU64::new(0),
        }),
    };
    Ok((
        sink.clone(),
        LogShipper {
            sink,
            stop,
            batcher,
            delivery,
        },
    ))
}
