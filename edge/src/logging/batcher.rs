//! Closes batches of log lines by count, by estimated size (so a batch always fits in one NATS
//! message) and by time, and gives each line and batch its UUIDv7 here, off the request path.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tollgate_model::request_log::{LogBatch, RequestLog};
use uuid::Uuid;

/// The most a batch's JSON may weigh by [`estimated_json_bytes`]. NATS refuses messages over
/// 1 MiB (its default `max_payload`); the estimate is an upper bound, so real batches are smaller.
pub const MAX_BATCH_BYTES: usize = 768 * 1024;

/// Everything in a log line's JSON but the text of its string fields: field names, punctuation,
/// ids, the timestamp and numbers at their longest. Checked by a test against serde's output.
const FIXED_JSON_BYTES: usize = 900;

/// An upper bound of `serde_json::to_vec(log).len()`. The strings are valid UTF-8 without
/// control characters (a header value, a URI path, a method token, an IP, a region), so JSON
/// escaping at most doubles them (`"` and `\`); the AI names come from config and may hold
/// anything, so they get the 6 bytes of a `\u00XX` escape each.
pub fn estimated_json_bytes(log: &RequestLog) -> usize {
    let plain = log.region.len()
        + log.request_id.len()
        + log.method.len()
        + log.host.len()
        + log.path.len()
        + log.client_ip.len();
    let ai = log.ai.provider.as_ref().map_or(0, String::len)
        + log.ai.model.as_ref().map_or(0, String::len);
    FIXED_JSON_BYTES + 2 * plain + 6 * ai
}

pub struct Batching {
    pub node_id: Uuid,
    pub batch_size: usize,
    pub flush_interval: Duration,
}

/// Log lines taken from the queue at once.
const RECEIVE_CHUNK: usize = 1024;
/// How long the batcher lets lines gather once it has emptied the queue. Short against the flush
/// interval; the queue holds far more than arrives in this time.
const GATHER_PAUSE: Duration = Duration::from_millis(10);

/// Runs until `stop` fires (or its sender is gone), then closes the queue, batches what was in it
/// and returns; dropping `outbox` tells delivery that nothing more comes.
pub async fn run(
    batching: Batching,
    mut queue: mpsc::Receiver<RequestLog>,
    outbox: mpsc::Sender<LogBatch>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut open = OpenBatch::new(batching.batch_size);
    let mut received = Vec::with_capacity(RECEIVE_CHUNK);
    let mut stopping = false;
    loop {
        let deadline = open.deadline;
        tokio::select! {
            count = queue.recv_many(&mut received, RECEIVE_CHUNK) => {
                if count == 0 {
                    // Closed (by us, on stop) and empty.
                    break;
                }
                for mut log in received.drain(..) {
                    log.id = Uuid::now_v7();
                    let size = estimated_json_bytes(&log);
                    if open.is_full_for(size) {
                        send(open.close(batching.node_id), &outbox).await;
                    }
                    open.push(log, size, batching.flush_interval);
                }
                if open.logs.len() >= batching.batch_size {
                    send(open.close(batching.node_id), &outbox).await;
                }
                if count < RECEIVE_CHUNK && !stopping {
                    // The queue is empty: let lines gather instead of waking for each request
                    // (a wake-up per request costs the proxy's thread more than the line itself).
                    tokio::time::sleep(GATHER_PAUSE).await;
                }
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                send(open.close(batching.node_id), &outbox).await;
            }
            _ = &mut stop, if !stopping => {
                // Lines already queued are still taken; later pushes are refused and counted.
                stopping = true;
                queue.close();
            }
        }
    }
    if !open.logs.is_empty() {
        send(open.close(batching.node_id), &outbox).await;
    }
}

async fn send(batch: LogBatch, outbox: &mpsc::Sender<LogBatch>) {
    // Waiting here (delivery is slow) fills the queue behind us, never a request.
    if outbox.send(batch).await.is_err() {
        tracing::error!("request log delivery has stopped; a batch is lost");
    }
}

struct OpenBatch {
    logs: Vec<RequestLog>,
    bytes: usize,
    batch_size: usize,
    /// When the oldest line in the batch has waited long enough.
    deadline: Option<Instant>,
}

impl OpenBatch {
    fn new(batch_size: usize) -> OpenBatch {
        OpenBatch {
            logs: Vec::with_capacity(batch_size),
            bytes: 0,
            batch_size,
            deadline: None,
        }
    }

    fn is_full_for(&self, size: usize) -> bool {
        !self.logs.is_empty()
            && (self.logs.len() >= self.batch_size || self.bytes + size > MAX_BATCH_BYTES)
    }

    fn push(&mut self, log: RequestLog, size: usize, flush_interval: Duration) {
        if self.logs.is_empty() {
            self.deadline = Some(Instant::now() + flush_interval);
        }
        self.logs.push(log);
        self.bytes += size;
    }

    fn close(&mut self, node_id: Uuid) -> LogBatch {
        self.bytes = 0;
        self.deadline = None;
        let logs = std::mem::replace(&mut self.logs, Vec::with_capacity(self.batch_size));
        LogBatch {
            id: Uuid::now_v7(),
            node_id,
            logs,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use tollgate_model::request_log::AiUsage;

    fn log_with(text: &str) -> RequestLog {
        RequestLog {
            id: Uuid::max(),
            time: Utc.timestamp_opt(4_000_000_000, 999_999_999).unwrap(),
            organization_id: Uuid::max(),
            control_plane_id: Uuid::max(),
            node_id: Uuid::max(),
            region: text.into(),
            request_id: text.into(),
            service_id: Some(Uuid::max()),
            route_id: Some(Uuid::max()),
            consumer_id: Some(Uuid::max()),
            method: text.into(),
            host: text.into(),
            path: text.into(),
            status: u16::MAX,
            latency_total_us: u64::MAX,
            latency_upstream_us: Some(u64::MAX),
            latency_edge_us: u64::MAX,
            bytes_in: u64::MAX,
            bytes_out: u64::MAX,
            client_ip: text.into(),
            ai: AiUsage {
                provider: Some(format!("{text}\u{1}")),
                model: Some(format!("{text}\u{1}")),
                prompt_tokens: u64::MAX,
                completion_tokens: u64::MAX,
                cost_micros: u64::MAX,
            },
        }
    }

    #[test]
    fn the_estimate_bounds_the_json_of_the_longest_lines() {
        for text in ["", "a", "\"\\\"", &"\\".repeat(1024), &"é".repeat(500)] {
            let log = log_with(text);
            let json = serde_json::to_vec(&log).unwrap();
            assert!(
                json.len() <= estimated_json_bytes(&log),
                "{} > {} for {text:?}",
                json.len(),
                estimated_json_bytes(&log)
            );
        }
        // And is not wildly above it for ordinary lines.
        let log = log_with("");
        let json = serde_json::to_vec(&log).unwrap();
        assert!(
            estimated_json_bytes(&log) < json.len() + 200,
            "{}",
            json.len()
        );
    }

    #[test]
    fn batches_close_by_count_and_by_size() {
        let mut open = OpenBatch::new(3);
        for _ in 0..3 {
            assert!(!open.is_full_for(10));
            open.push(log_with(""), 10, Duration::from_secs(1));
        }
        assert!(open.is_full_for(10));
        let batch = open.close(Uuid::nil());
        assert_eq!(batch.logs.len(), 3);
        assert!(open.deadline.is_none());

        open.push(log_with(""), MAX_BATCH_BYTES - 5, Duration::from_secs(1));
        assert!(open.is_full_for(10));
        // A line alone in a batch always fits.
        let mut empty = OpenBatch::new(3);
        assert!(!empty.is_full_for(MAX_BATCH_BYTES * 2));
        empty.push(log_with(""), 1, Duration::from_secs(1));
    }
}
