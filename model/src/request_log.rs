//! The record an edge writes for every request it answers (DESIGN §9), and the batch it ships
//! them in. Batches are the unit of delivery: an edge publishes each one once (or replays it
//! from its spool under the same id), and the ingester stores each batch id at most once, which
//! is what keeps counts exact through crashes and redeliveries.
//!
//! On the wire (NATS, and the edge's spool) a batch is [`LogBatch::encode`]'s compact binary
//! form: a fixed header, then each line as postcard, less the ids and names it shares with the
//! line before it (format 2: a flags byte first says which). An edge's lines mostly share their
//! organization, control plane, node, region, service, route and host: leaving them out halves
//! a line, which is what NATS stores for a week and the local NATS server spends CPU on.
//! [`LogBatch::decode`] also reads format 1 (every field on every line) and the JSON that
//! earlier edges published and spooled.

use std::net::IpAddr;

use bytes::Bytes;
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

/// The first byte of a binary batch in format 1: every line whole. JSON batches start with `{`.
const BINARY_V1: u8 = 0xB1;
/// Format 2: each line starts with [`Repeats`] flags and leaves those fields out.
const BINARY_V2: u8 = 0xB2;
/// Format byte, batch id, node id, line count (u32, little endian).
const HEADER_BYTES: usize = 1 + 16 + 16 + 4;
const COUNT_AT: usize = 1 + 16 + 16;

/// Why bytes are not a log batch.
#[derive(Debug, thiserror::Error)]
pub enum LogCodecError {
    #[error("JSON log batch: {0}")]
    Json(#[from] serde_json::Error),
    #[error("binary log batch: {0}")]
    Binary(#[from] postcard::Error),
    #[error("log batch: {0}")]
    Malformed(&'static str),
}

/// A log line as the wire carries it, borrowing its text: what the edge encodes straight from
/// its own request records, without building a [`RequestLog`] of owned strings first. The field
/// order is the wire format (postcard is positional): append new fields at the end only with a
/// new format byte.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogLine<'a> {
    pub id: Uuid,
    /// Seconds and nanoseconds since the Unix epoch (a `DateTime<Utc>` to the nanosecond).
    pub time_secs: i64,
    pub time_nanos: u32,
    pub organization_id: Uuid,
    pub control_plane_id: Uuid,
    pub node_id: Uuid,
    pub region: &'a str,
    pub request_id: &'a str,
    pub service_id: Option<Uuid>,
    pub route_id: Option<Uuid>,
    pub consumer_id: Option<Uuid>,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency_total_us: u64,
    pub latency_upstream_us: Option<u64>,
    pub latency_edge_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(borrow)]
    pub client_ip: LoggedIp<'a>,
    #[serde(borrow)]
    pub ai_provider: Option<&'a str>,
    #[serde(borrow)]
    pub ai_model: Option<&'a str>,
    pub ai_prompt_tokens: u64,
    pub ai_completion_tokens: u64,
    pub ai_cost_micros: u64,
}

/// The client's address: binary when it is one (as the edge has it), text otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoggedIp<'a> {
    Addr(IpAddr),
    Text(&'a str),
}

/// Most bytes of a [`LogLine`]'s encoding besides its text: a flags byte, eight 17-byte ids and
/// options, nine varints of at most 10 bytes, seven string length prefixes and option tags of at
/// most 6.
const LINE_FIXED_BOUND: usize = 1 + 8 * 17 + 9 * 10 + 7 * 6 + 17 + 8;

/// Which fields a format 2 line shares with the line before it in its batch (and leaves out).
struct Repeats;

impl Repeats {
    const ORGANIZATION: u8 = 1;
    const CONTROL_PLANE: u8 = 1 << 1;
    const NODE: u8 = 1 << 2;
    const REGION: u8 = 1 << 3;
    const SERVICE: u8 = 1 << 4;
    const ROUTE: u8 = 1 << 5;
    const CONSUMER: u8 = 1 << 6;
    const HOST: u8 = 1 << 7;
}

/// The shared fields of the last line encoded, to compare the next one with.
#[derive(Default)]
struct LastLine {
    organization_id: Uuid,
    control_plane_id: Uuid,
    node_id: Uuid,
    service_id: Option<Uuid>,
    route_id: Option<Uuid>,
    consumer_id: Option<Uuid>,
    region: Vec<u8>,
    host: Vec<u8>,
}

impl LastLine {
    /// The flags for `line`, remembering its fields for the next.
    fn repeats(&mut self, line: &LogLine<'_>) -> u8 {
        let mut flags = 0;
        let mut same = |equal: bool, flag: u8| {
            if equal {
                flags |= flag;
            }
        };
        same(
            line.organization_id == self.organization_id,
            Repeats::ORGANIZATION,
        );
        same(
            line.control_plane_id == self.control_plane_id,
            Repeats::CONTROL_PLANE,
        );
        same(line.node_id == self.node_id, Repeats::NODE);
        same(line.service_id == self.service_id, Repeats::SERVICE);
        same(line.route_id == self.route_id, Repeats::ROUTE);
        same(line.consumer_id == self.consumer_id, Repeats::CONSUMER);
        same(line.region.as_bytes() == self.region, Repeats::REGION);
        same(line.host.as_bytes() == self.host, Repeats::HOST);
        self.organization_id = line.organization_id;
        self.control_plane_id = line.control_plane_id;
        self.node_id = line.node_id;
        self.service_id = line.service_id;
        self.route_id = line.route_id;
        self.consumer_id = line.consumer_id;
        if flags & Repeats::REGION == 0 {
            self.region.clear();
            self.region.extend_from_slice(line.region.as_bytes());
        }
        if flags & Repeats::HOST == 0 {
            self.host.clear();
            self.host.extend_from_slice(line.host.as_bytes());
        }
        flags
    }
}

impl<'a> LogLine<'a> {
    /// Borrows a [`RequestLog`].
    pub fn of(log: &'a RequestLog) -> LogLine<'a> {
        // Binary only when it reads back as the same text.
        let client_ip = match log.client_ip.parse::<IpAddr>() {
            Ok(ip) if ip.to_string() == log.client_ip => LoggedIp::Addr(ip),
            _ => LoggedIp::Text(&log.client_ip),
        };
        LogLine {
            id: log.id,
            time_secs: log.time.timestamp(),
            time_nanos: log.time.timestamp_subsec_nanos(),
            organization_id: log.organization_id,
            control_plane_id: log.control_plane_id,
            node_id: log.node_id,
            region: &log.region,
            request_id: &log.request_id,
            service_id: log.service_id,
            route_id: log.route_id,
            consumer_id: log.consumer_id,
            method: &log.method,
            host: &log.host,
            path: &log.path,
            status: log.status,
            latency_total_us: log.latency_total_us,
            latency_upstream_us: log.latency_upstream_us,
            latency_edge_us: log.latency_edge_us,
            bytes_in: log.bytes_in,
            bytes_out: log.bytes_out,
            client_ip,
            ai_provider: log.ai.provider.as_deref(),
            ai_model: log.ai.model.as_deref(),
            ai_prompt_tokens: log.ai.prompt_tokens,
            ai_completion_tokens: log.ai.completion_tokens,
            ai_cost_micros: log.ai.cost_micros,
        }
    }

    /// An upper bound of the line's encoded size, to close a batch before it outgrows a message.
    pub fn encoded_len_bound(&self) -> usize {
        let ip = match self.client_ip {
            LoggedIp::Addr(_) => 0,
            LoggedIp::Text(text) => text.len(),
        };
        LINE_FIXED_BOUND
            + self.region.len()
            + self.request_id.len()
            + self.method.len()
            + self.host.len()
            + self.path.len()
            + ip
            + self.ai_provider.map_or(0, str::len)
            + self.ai_model.map_or(0, str::len)
    }

    fn to_log(self) -> Result<RequestLog, LogCodecError> {
        let time = DateTime::from_timestamp(self.time_secs, self.time_nanos)
            .ok_or(LogCodecError::Malformed("a time out of range"))?;
        Ok(RequestLog {
            id: self.id,
            time,
            organization_id: self.organization_id,
            control_plane_id: self.control_plane_id,
            node_id: self.node_id,
            region: self.region.to_owned(),
            request_id: self.request_id.to_owned(),
            service_id: self.service_id,
            route_id: self.route_id,
            consumer_id: self.consumer_id,
            method: self.method.to_owned(),
            host: self.host.to_owned(),
            path: self.path.to_owned(),
            status: self.status,
            latency_total_us: self.latency_total_us,
            latency_upstream_us: self.latency_upstream_us,
            latency_edge_us: self.latency_edge_us,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            client_ip: match self.client_ip {
                LoggedIp::Addr(ip) => ip.to_string(),
                LoggedIp::Text(text) => text.to_owned(),
            },
            ai: AiUsage {
                provider: self.ai_provider.map(str::to_owned),
                model: self.ai_model.map(str::to_owned),
                prompt_tokens: self.ai_prompt_tokens,
                completion_tokens: self.ai_completion_tokens,
                cost_micros: self.ai_cost_micros,
            },
        })
    }
}

impl LogLine<'_> {
    /// Appends the line in format 2: the `repeats` flags, then the fields in postcard's format
    /// (what `postcard::to_stdvec(self)` makes, checked byte for byte by a test), less those the
    /// flags say repeat. Written out by hand because this runs for every request an edge
    /// answers: through serde it took about three times the instructions, and the edge's whole
    /// logging cost was the issue. Decoding reads each field with postcard.
    fn encode_into(&self, out: &mut Vec<u8>, repeats: u8) {
        // Written into a slice sized by the bound, then cut to what was written: one length
        // check per byte instead of a capacity check and possible growth per push (this runs
        // once per request on the edge).
        let start = out.len();
        out.resize(start + self.encoded_len_bound(), 0);
        let mut w = Writer {
            buf: &mut out[start..],
            at: 0,
        };
        let new = |flag: u8| repeats & flag == 0;
        w.byte(repeats);
        w.uuid(&self.id);
        w.signed(self.time_secs);
        w.varint(u64::from(self.time_nanos));
        if new(Repeats::ORGANIZATION) {
            w.uuid(&self.organization_id);
        }
        if new(Repeats::CONTROL_PLANE) {
            w.uuid(&self.control_plane_id);
        }
        if new(Repeats::NODE) {
            w.uuid(&self.node_id);
        }
        if new(Repeats::REGION) {
            w.str(self.region);
        }
        w.str(self.request_id);
        if new(Repeats::SERVICE) {
            w.option(self.service_id.as_ref(), Writer::uuid);
        }
        if new(Repeats::ROUTE) {
            w.option(self.route_id.as_ref(), Writer::uuid);
        }
        if new(Repeats::CONSUMER) {
            w.option(self.consumer_id.as_ref(), Writer::uuid);
        }
        w.str(self.method);
        if new(Repeats::HOST) {
            w.str(self.host);
        }
        w.str(self.path);
        w.varint(u64::from(self.status));
        w.varint(self.latency_total_us);
        w.option(self.latency_upstream_us, Writer::varint);
        w.varint(self.latency_edge_us);
        w.varint(self.bytes_in);
        w.varint(self.bytes_out);
        // Enum variants are varints of their index; serde writes an address as its octets.
        match self.client_ip {
            LoggedIp::Addr(IpAddr::V4(ip)) => {
                w.bytes(&[0, 0]);
                w.bytes(&ip.octets());
            }
            LoggedIp::Addr(IpAddr::V6(ip)) => {
                w.bytes(&[0, 1]);
                w.bytes(&ip.octets());
            }
            LoggedIp::Text(text) => {
                w.byte(1);
                w.str(text);
            }
        }
        w.option(self.ai_provider, Writer::str);
        w.option(self.ai_model, Writer::str);
        w.varint(self.ai_prompt_tokens);
        w.varint(self.ai_completion_tokens);
        w.varint(self.ai_cost_micros);
        let written = w.at;
        out.truncate(start + written);
    }
}

/// postcard's encodings of the line's parts, into a slice at least as long as the line
/// ([`LogLine::encoded_len_bound`]).
struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn byte(&mut self, byte: u8) {
        self.buf[self.at] = byte;
        self.at += 1;
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    /// Unsigned integers: LEB128, seven bits a byte, low bits first.
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.byte((value as u8) | 0x80);
            value >>= 7;
        }
        self.byte(value as u8);
    }

    /// Signed integers: zigzag, then as unsigned.
    fn signed(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    fn str(&mut self, text: &str) {
        self.varint(text.len() as u64);
        self.bytes(text.as_bytes());
    }

    /// uuid serializes as 16 bytes (a byte string) in binary formats.
    fn uuid(&mut self, id: &Uuid) {
        self.byte(16);
        self.bytes(id.as_bytes());
    }

    /// Options: a 0 byte for none, else a 1 and the value.
    fn option<T>(&mut self, value: Option<T>, put: fn(&mut Self, T)) {
        match value {
            None => self.byte(0),
            Some(value) => {
                self.byte(1);
                put(self, value);
            }
        }
    }
}

/// Builds one batch's wire form line by line.
pub struct LogBatchEncoder {
    bytes: Vec<u8>,
    lines: u32,
    last: LastLine,
}

impl LogBatchEncoder {
    /// A batch with no lines yet; `capacity` is a guess of its final size in bytes.
    pub fn new(id: Uuid, node_id: Uuid, capacity: usize) -> LogBatchEncoder {
        let mut bytes = Vec::with_capacity(capacity.max(HEADER_BYTES));
        bytes.push(BINARY_V2);
        bytes.extend_from_slice(id.as_bytes());
        bytes.extend_from_slice(node_id.as_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        LogBatchEncoder {
            bytes,
            lines: 0,
            last: LastLine::default(),
        }
    }

    pub fn push(&mut self, line: &LogLine<'_>) -> Result<(), LogCodecError> {
        if self.lines == u32::MAX {
            return Err(LogCodecError::Malformed("more lines than a batch counts"));
        }
        // The first line repeats nothing.
        let repeats = if self.lines == 0 {
            self.last.repeats(line);
            0
        } else {
            self.last.repeats(line)
        };
        line.encode_into(&mut self.bytes, repeats);
        self.lines += 1;
        Ok(())
    }

    pub fn lines(&self) -> usize {
        self.lines as usize
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The encoded size so far.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn finish(mut self) -> EncodedLogBatch {
        self.bytes[COUNT_AT..HEADER_BYTES].copy_from_slice(&self.lines.to_le_bytes());
        let header = read_header(&self.bytes);
        let (id, node_id) = header.map_or((Uuid::nil(), Uuid::nil()), |(id, node, _)| (id, node));
        EncodedLogBatch {
            id,
            node_id,
            lines: u64::from(self.lines),
            bytes: Bytes::from(self.bytes),
        }
    }
}

/// A batch in its wire form, with what delivery needs to know of it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedLogBatch {
    pub id: Uuid,
    pub node_id: Uuid,
    pub lines: u64,
    pub bytes: Bytes,
}

impl EncodedLogBatch {
    /// Checks that `bytes` are a whole batch (as read back from disk) and takes its id and
    /// counts. A JSON batch (an earlier edge's spool) comes back in the binary form.
    pub fn from_bytes(bytes: Bytes) -> Result<EncodedLogBatch, LogCodecError> {
        let batch = LogBatch::decode(&bytes)?;
        if matches!(bytes.first(), Some(&BINARY_V1 | &BINARY_V2)) {
            return Ok(EncodedLogBatch {
                id: batch.id,
                node_id: batch.node_id,
                lines: batch.logs.len() as u64,
                bytes,
            });
        }
        batch.encode()
    }

    pub fn decode(&self) -> Result<LogBatch, LogCodecError> {
        LogBatch::decode(&self.bytes)
    }
}

fn read_header(bytes: &[u8]) -> Option<(Uuid, Uuid, u32)> {
    let header = bytes.get(..HEADER_BYTES)?;
    let id = Uuid::from_slice(&header[1..17]).ok()?;
    let node_id = Uuid::from_slice(&header[17..COUNT_AT]).ok()?;
    let count = u32::from_le_bytes(header[COUNT_AT..HEADER_BYTES].try_into().ok()?);
    Some((id, node_id, count))
}

impl LogBatch {
    /// The wire form (see the module docs).
    pub fn encode(&self) -> Result<EncodedLogBatch, LogCodecError> {
        let estimate = HEADER_BYTES + self.logs.len() * 200;
        let mut encoder = LogBatchEncoder::new(self.id, self.node_id, estimate);
        for log in &self.logs {
            encoder.push(&LogLine::of(log))?;
        }
        Ok(encoder.finish())
    }

    /// Reads [`LogBatch::encode`]'s form, or the JSON that earlier edges wrote.
    pub fn decode(bytes: &[u8]) -> Result<LogBatch, LogCodecError> {
        let whole_lines = match bytes.first() {
            Some(&BINARY_V1) => true,
            Some(&BINARY_V2) => false,
            _ => return Ok(serde_json::from_slice(bytes)?),
        };
        let (id, node_id, count) =
            read_header(bytes).ok_or(LogCodecError::Malformed("a short header"))?;
        // Each line takes well over one byte: a count beyond the bytes is a lie, not a size.
        if count as usize > bytes.len() {
            return Err(LogCodecError::Malformed("more lines than bytes"));
        }
        let mut logs = Vec::with_capacity(count as usize);
        let mut rest = &bytes[HEADER_BYTES..];
        let mut last: Option<LogLine<'_>> = None;
        for _ in 0..count {
            let line = if whole_lines {
                let (line, after) = postcard::take_from_bytes::<LogLine<'_>>(rest)?;
                rest = after;
                line
            } else {
                read_line(&mut rest, last.as_ref())?
            };
            logs.push(line.to_log()?);
            last = Some(line);
        }
        if !rest.is_empty() {
            return Err(LogCodecError::Malformed("bytes after the last line"));
        }
        Ok(LogBatch { id, node_id, logs })
    }
}

/// The next format 2 line of `rest`, taking what it repeats from `last`.
fn read_line<'a>(
    rest: &mut &'a [u8],
    last: Option<&LogLine<'a>>,
) -> Result<LogLine<'a>, LogCodecError> {
    fn take<'a, T: Deserialize<'a>>(rest: &mut &'a [u8]) -> Result<T, LogCodecError> {
        let (value, after) = postcard::take_from_bytes::<T>(rest)?;
        *rest = after;
        Ok(value)
    }
    let repeats: u8 = take(rest)?;
    if repeats != 0 && last.is_none() {
        return Err(LogCodecError::Malformed(
            "a first line that repeats a line before it",
        ));
    }
    let repeated = |flag: u8| repeats & flag != 0;
    macro_rules! field {
        ($flag:expr, $name:ident) => {
            match last {
                Some(last) if repeated($flag) => last.$name,
                _ => take(rest)?,
            }
        };
    }
    Ok(LogLine {
        id: take(rest)?,
        time_secs: take(rest)?,
        time_nanos: take(rest)?,
        organization_id: field!(Repeats::ORGANIZATION, organization_id),
        control_plane_id: field!(Repeats::CONTROL_PLANE, control_plane_id),
        node_id: field!(Repeats::NODE, node_id),
        region: field!(Repeats::REGION, region),
        request_id: take(rest)?,
        service_id: field!(Repeats::SERVICE, service_id),
        route_id: field!(Repeats::ROUTE, route_id),
        consumer_id: field!(Repeats::CONSUMER, consumer_id),
        method: take(rest)?,
        host: field!(Repeats::HOST, host),
        path: take(rest)?,
        status: take(rest)?,
        latency_total_us: take(rest)?,
        latency_upstream_us: take(rest)?,
        latency_edge_us: take(rest)?,
        bytes_in: take(rest)?,
        bytes_out: take(rest)?,
        client_ip: take(rest)?,
        ai_provider: take(rest)?,
        ai_model: take(rest)?,
        ai_prompt_tokens: take(rest)?,
        ai_completion_tokens: take(rest)?,
        ai_cost_micros: take(rest)?,
    })
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn log(text: &str, client_ip: &str, ai: bool) -> RequestLog {
        RequestLog {
            id: Uuid::now_v7(),
            time: Utc.timestamp_opt(1_790_000_000, 123_456_789).unwrap(),
            organization_id: Uuid::new_v4(),
            control_plane_id: Uuid::new_v4(),
            node_id: Uuid::new_v4(),
            region: format!("eu-{text}"),
            request_id: format!("req-{text}"),
            service_id: Some(Uuid::new_v4()),
            route_id: None,
            consumer_id: Some(Uuid::max()),
            method: "GET".into(),
            host: format!("{text}.example.com"),
            path: format!("/{text}"),
            status: 503,
            latency_total_us: u64::MAX,
            latency_upstream_us: Some(0),
            latency_edge_us: 17,
            bytes_in: 1 << 40,
            bytes_out: 1024,
            client_ip: client_ip.into(),
            ai: if ai {
                AiUsage {
                    provider: Some(format!("{text}\u{1}")),
                    model: Some(String::new()),
                    prompt_tokens: 3,
                    completion_tokens: u64::MAX,
                    cost_micros: 9,
                }
            } else {
                AiUsage::default()
            },
        }
    }

    fn batch() -> LogBatch {
        LogBatch {
            id: Uuid::now_v7(),
            node_id: Uuid::new_v4(),
            logs: vec![
                log("a", "203.0.113.9", false),
                log("é\"\\", "2001:db8::1", true),
                log("", "::ffff:192.0.2.1", false),
                // Not an address, or not in its canonical spelling: kept as text.
                log(&"x".repeat(MAX_LOGGED_PATH), "unknown", true),
                log("b", "2001:DB8::1", false),
            ],
        }
    }

    #[test]
    fn batches_read_back_exactly() {
        let batch = batch();
        let encoded = batch.encode().unwrap();
        assert_eq!((encoded.id, encoded.node_id), (batch.id, batch.node_id));
        assert_eq!(encoded.lines, 5);
        assert_eq!(LogBatch::decode(&encoded.bytes).unwrap(), batch);
        assert_eq!(encoded.decode().unwrap(), batch);
        assert_eq!(
            EncodedLogBatch::from_bytes(encoded.bytes.clone()).unwrap(),
            encoded
        );
        let empty = LogBatch {
            logs: vec![],
            ..batch
        };
        assert_eq!(
            LogBatch::decode(&empty.encode().unwrap().bytes).unwrap(),
            empty
        );
    }

    /// An edge's lines: shared ids and names, with a few lines that differ in turn.
    fn edge_batch() -> LogBatch {
        let first = log("api", "203.0.113.9", false);
        let logs = (0..200)
            .map(|i| {
                let mut line = RequestLog {
                    id: Uuid::now_v7(),
                    request_id: Uuid::new_v4().to_string(),
                    ..first.clone()
                };
                match i % 7 {
                    1 => line.route_id = Some(Uuid::new_v4()),
                    2 => line.service_id = None,
                    3 => line.host = "other.example.com".into(),
                    4 => line.control_plane_id = Uuid::new_v4(),
                    5 => line.region = String::new(),
                    _ => {}
                }
                line
            })
            .collect();
        LogBatch {
            id: Uuid::now_v7(),
            node_id: first.node_id,
            logs,
        }
    }

    /// Format 1: every field of every line, as edges wrote before format 2.
    fn format_1(batch: &LogBatch) -> Vec<u8> {
        let mut bytes = vec![BINARY_V1];
        bytes.extend_from_slice(batch.id.as_bytes());
        bytes.extend_from_slice(batch.node_id.as_bytes());
        bytes.extend_from_slice(&(batch.logs.len() as u32).to_le_bytes());
        for log in &batch.logs {
            bytes.extend(postcard::to_stdvec(&LogLine::of(log)).unwrap());
        }
        bytes
    }

    #[test]
    fn lines_leave_out_what_the_line_before_had_and_read_back_exactly() {
        let batch = edge_batch();
        let encoded = batch.encode().unwrap();
        assert_eq!(encoded.bytes[0], BINARY_V2);
        assert_eq!(LogBatch::decode(&encoded.bytes).unwrap(), batch);
        let whole = format_1(&batch);
        assert!(
            encoded.bytes.len() * 10 < whole.len() * 6,
            "{} vs {}",
            encoded.bytes.len(),
            whole.len()
        );
        // Format 1 still reads, and comes back from a spool as it was.
        assert_eq!(LogBatch::decode(&whole).unwrap(), batch);
        let spooled = EncodedLogBatch::from_bytes(Bytes::from(whole.clone())).unwrap();
        assert_eq!((spooled.bytes.to_vec(), spooled.lines), (whole, 200));
    }

    #[test]
    fn a_first_line_cannot_repeat_a_line_before_it() {
        let mut bytes = batch().encode().unwrap().bytes.to_vec();
        assert_eq!(bytes[HEADER_BYTES], 0);
        bytes[HEADER_BYTES] = Repeats::ORGANIZATION;
        assert!(LogBatch::decode(&bytes).is_err());
    }

    #[test]
    fn json_batches_of_earlier_edges_still_read() {
        let batch = batch();
        let json = serde_json::to_vec(&batch).unwrap();
        assert_eq!(LogBatch::decode(&json).unwrap(), batch);
        let encoded = EncodedLogBatch::from_bytes(Bytes::from(json)).unwrap();
        assert_eq!(encoded, batch.encode().unwrap());
    }

    #[test]
    fn the_binary_form_is_far_smaller_than_json() {
        let batch = LogBatch {
            logs: (0..100).map(|_| log("api", "203.0.113.9", false)).collect(),
            ..batch()
        };
        let binary = batch.encode().unwrap().bytes.len();
        let json = serde_json::to_vec(&batch).unwrap().len();
        assert!(binary * 3 < json, "{binary} vs {json}");
    }

    #[test]
    fn broken_batches_are_refused() {
        let bytes = batch().encode().unwrap().bytes;
        for cut in [1, HEADER_BYTES - 1, HEADER_BYTES + 3, bytes.len() - 1] {
            assert!(LogBatch::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(LogBatch::decode(&longer).is_err());
        let mut lying = bytes.to_vec();
        lying[COUNT_AT..HEADER_BYTES].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(LogBatch::decode(&lying).is_err());
        assert!(LogBatch::decode(b"").is_err());
        assert!(LogBatch::decode(b"not a batch").is_err());
    }

    #[test]
    fn the_hand_written_encoding_is_postcards() {
        let mut lines: Vec<RequestLog> = batch().logs;
        let mut extreme = log("z", "0.0.0.0", true);
        extreme.time = DateTime::<Utc>::MIN_UTC;
        extreme.latency_upstream_us = None;
        extreme.service_id = None;
        extreme.bytes_in = 0;
        extreme.bytes_out = 127;
        extreme.latency_edge_us = 128;
        lines.push(extreme);
        let mut late = log("y", "::", false);
        late.time = DateTime::<Utc>::MAX_UTC;
        lines.push(late);
        for log in &lines {
            let line = LogLine::of(log);
            let mut ours = Vec::new();
            line.encode_into(&mut ours, 0);
            // A line that repeats nothing: its flags, then postcard's encoding.
            assert_eq!(ours[0], 0);
            assert_eq!(ours[1..], postcard::to_stdvec(&line).unwrap(), "{log:?}");
        }
    }

    #[test]
    fn the_size_bound_holds_for_the_longest_lines() {
        let mut longest = log(&"\u{10ffff}".repeat(256), "not an ip at all", true);
        longest.time = DateTime::<Utc>::MAX_UTC;
        longest.latency_upstream_us = Some(u64::MAX);
        longest.route_id = Some(Uuid::max());
        for log in batch().logs.iter().chain([&longest]) {
            let line = LogLine::of(log);
            let size = postcard::to_stdvec(&line).unwrap().len();
            // With the flags byte.
            assert!(size < line.encoded_len_bound(), "{size}");
            // The encoder writes into exactly the bound's room.
            let mut ours = vec![7];
            line.encode_into(&mut ours, 0);
            assert_eq!(ours.len(), 1 + 1 + size);
        }
    }

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let path = format!("/{}é", "a".repeat(MAX_LOGGED_PATH - 2));
        assert_eq!(path.len(), MAX_LOGGED_PATH + 1);
        assert_eq!(logged_path(&path).len(), MAX_LOGGED_PATH - 1);
        assert_eq!(logged_path("/short"), "/short");
    }
}
