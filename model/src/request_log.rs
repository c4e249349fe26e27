//! The record an edge writes for every request it answers (DESIGN §9), and the batch it ships
//! them in. Batches are the unit of delivery: an edge publishes each one once (or replays it
//! from its spool under the same id), and the ingester stores each batch id at most once, which
//! is what keeps counts exact through crashes and redeliveries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One answered request. Ids of things that did not take part (no route matched, no consumer
/// identified) are `None`; the AI fields stay empty until a route with an AI plugin fills them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLog {
    /// Unique per log line (UUIDv7, made by the edge).
    pub id: Uuid,
    /// When the request arrived, to the millisecond.
    pub time: DateTime<Utc>,
    /// The tenant.
    pub organization_id: Uuid,
    pub control_plane_id: Uuid,
    pub node_id: Uuid,
    pub region: String,
    /// `X-Request-Id` as the client sent it, or as the edge made it.
    pub request_id: String,
    pub service_id: Option<Uuid>,
    pub route_id: Option<Uuid>,
    pub consumer_id: Option<Uuid>,
    pub method: String,
    /// The Host the client asked for, lowercased, without the port.
    pub host: String,
    /// The path as received, without the query string (at most 1,024 bytes).
    pub path: String,
    pub status: u16,
    /// From the request's arrival to the last byte of the response sent to the client.
    pub latency_total_us: u64,
    /// From sending upstream to the upstream's response head; `None` when nothing went upstream.
    pub latency_upstream_us: Option<u64>,
    /// The edge's own share: total minus upstream.
    pub latency_edge_us: u64,
    /// Request body bytes received from the client.
    pub bytes_in: u64,
    /// Response body bytes sent to the client.
    pub bytes_out: u64,
    pub client_ip: String,
    #[serde(default)]
    pub ai: AiUsage,
}

/// What an LLM call cost. Empty for requests that were not LLM calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AiUsage {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Micro-dollars, so sums stay exact.
    pub cost_micros: u64,
}

/// Logs shipped together. `id` is what deduplicates redeliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogBatch {
    /// UUIDv7, made by the edge when the batch is closed.
    pub id: Uuid,
    pub node_id: Uuid,
    pub logs: Vec<RequestLog>,
}

/// Longest path kept in a log line; longer ones are cut at a character boundary.
pub const MAX_LOGGED_PATH: usize = 1024;

/// `path` cut to [`MAX_LOGGED_PATH`] bytes.
pub fn logged_path(path: &str) -> &str {
    if path.len() <= MAX_LOGGED_PATH {
        return path;
    }
    let mut end = MAX_LOGGED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let path = format!("/{}é", "a".repeat(MAX_LOGGED_PATH - 2));
        assert_eq!(path.len(), MAX_LOGGED_PATH + 1);
        assert_eq!(logged_path(&path).len(), MAX_LOGGED_PATH - 1);
        assert_eq!(logged_path("/short"), "/short");
    }
}
