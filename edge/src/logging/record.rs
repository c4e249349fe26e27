//! A request's log line as the edge keeps it until it is encoded: plain values and one string
//! holding the text fields, so the request path makes one small allocation per line. The node's
//! id and region are the batcher's, added when the line is encoded.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use tollgate_model::request_log::{LogLine, LoggedIp};
use uuid::Uuid;

pub struct LogRecord {
    pub time_secs: i64,
    pub time_nanos: u32,
    pub organization_id: Uuid,
    pub control_plane_id: Uuid,
    pub service_id: Option<Uuid>,
    pub route_id: Option<Uuid>,
    pub status: u16,
    pub latency_total_us: u64,
    pub latency_upstream_us: Option<u64>,
    pub latency_edge_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client_ip: IpAddr,
    /// Request id, method, host and path back to back; `ends` marks where the first three end.
    text: String,
    ends: [usize; 3],
}

/// The text fields of a line.
pub struct LogText<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
}

/// Now, to the millisecond (as the line's `time` has always been), as seconds and nanoseconds.
fn now_to_the_millisecond() -> (i64, u32) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    let nanos = since_epoch.subsec_nanos();
    (secs, nanos - nanos % 1_000_000)
}

impl LogRecord {
    pub fn new(
        organization_id: Uuid,
        control_plane_id: Uuid,
        text: LogText<'_>,
        client_ip: IpAddr,
    ) -> LogRecord {
        let (time_secs, time_nanos) = now_to_the_millisecond();
        let mut all = String::with_capacity(
            text.request_id.len() + text.method.len() + text.host.len() + text.path.len(),
        );
        all.push_str(text.request_id);
        let request_id_end = all.len();
        all.push_str(text.method);
        let method_end = all.len();
        all.push_str(text.host);
        let host_end = all.len();
        all.push_str(text.path);
        LogRecord {
            time_secs,
            time_nanos,
            organization_id,
            control_plane_id,
            service_id: None,
            route_id: None,
            status: 0,
            latency_total_us: 0,
            latency_upstream_us: None,
            latency_edge_us: 0,
            bytes_in: 0,
            bytes_out: 0,
            client_ip,
            text: all,
            ends: [request_id_end, method_end, host_end],
        }
    }

    pub fn text(&self) -> LogText<'_> {
        let [request_id, method, host] = self.ends;
        LogText {
            request_id: &self.text[..request_id],
            method: &self.text[request_id..method],
            host: &self.text[method..host],
            path: &self.text[host..],
        }
    }

    /// The wire form's view of the line.
    pub fn line<'a>(&'a self, id: Uuid, node_id: Uuid, region: &'a str) -> LogLine<'a> {
        let text = self.text();
        LogLine {
            id,
            time_secs: self.time_secs,
            time_nanos: self.time_nanos,
            organization_id: self.organization_id,
            control_plane_id: self.control_plane_id,
            node_id,
            region,
            request_id: text.request_id,
            service_id: self.service_id,
            route_id: self.route_id,
            // Consumers are not identified yet; the AI fields wait for an AI plugin.
            consumer_id: None,
            method: text.method,
            host: text.host,
            path: text.path,
            status: self.status,
            latency_total_us: self.latency_total_us,
            latency_upstream_us: self.latency_upstream_us,
            latency_edge_us: self.latency_edge_us,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            client_ip: LoggedIp::Addr(self.client_ip),
            ai_provider: None,
            ai_model: None,
            ai_prompt_tokens: 0,
            ai_completion_tokens: 0,
            ai_cost_micros: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_come_back_apart() {
        let record = LogRecord::new(
            Uuid::nil(),
            Uuid::nil(),
            LogText {
                request_id: "r-1",
                method: "GET",
                host: "",
                path: "/é",
            },
            IpAddr::from([127, 0, 0, 1]),
        );
        let text = record.text();
        assert_eq!(
            (text.request_id, text.method, text.host, text.path),
            ("r-1", "GET", "", "/é")
        );
        assert_eq!(record.time_nanos % 1_000_000, 0);
    }
}
