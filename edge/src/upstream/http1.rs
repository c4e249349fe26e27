//! HTTP/1.1 on a pooled upstream connection, spoken by the task that proxies the request: it
//! writes the request head (and a small body in the same write), reads and parses the response
//! head with `httparse`, and hands back a [`ResponseBody`] that reads the body's framing
//! (`Content-Length`, chunked, or until close) straight from the connection and gives the
//! connection back to the pool when the body ends cleanly. A connection is closed instead after
//! any error, a `Connection: close`, a body read until close, a body left unread, or bytes the
//! upstream sent past the end of its answer.
//!
//! Written by hand rather than driven through hyper's `client::conn::http1` because hyper runs
//! each connection as a task of its own: a request is handed to that task over a channel, the
//! answer comes back over a oneshot, and the body over another channel, waking two tasks several
//! times per request. That dispatch cost about 13k instructions per proxied request, more than
//! everything else on the upstream side; here the request costs one `write` and one `read` in
//! the task that already runs it. What hyper's client did and this keeps: the request framing
//! rules of its `set_length` (a known length goes as `Content-Length`, an unknown one chunked,
//! except on GET, HEAD and CONNECT, which send none), its response framing rules (RFC 9112 §6.3:
//! HEAD, 1xx, 204 and 304 have no body; `Transfer-Encoding` ending in `chunked` wins over
//! `Content-Length`, differing lengths are an error, anything else is read until close), its
//! limits (100 headers, a head of at most ~400 KiB), skipping informational answers (`100
//! Continue`, `103 Early Hints`), refusing obsolete line folding, and keep-alive by version and
//! `Connection`.
//!
//! A request body of unknown or large size is streamed, never buffered: after the head, a task of
//! its own writes it (each write under the write timeout) while this one reads the answer, which
//! may start before the body is all sent; the connection is only reused if the body was all
//! sent by the time the answer ended.

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::uri::Authority;
use http::{response, HeaderMap, Method, Response, StatusCode, Version};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use super::body::{BoxError, ClientBody};
use super::pool::{Connection, Lease};
use crate::proxy::UpstreamHeaders;

/// Response head limits: hyper's defaults.
const MAX_HEADERS: usize = 100;
const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
/// A request body up to this size goes out in the same write as its head.
const INLINE_BODY: usize = 16 * 1024;
/// The least room made for a read, and the most for a body of known length.
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;
/// A chunk-size line (with extensions) longer than this is refused, as are larger trailers.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILER_BYTES: usize = 64 * 1024;

/// The request body as this exchange sends it.
pub enum Body<'a> {
    Empty,
    /// Kept by the caller for a retry.
    Buffered(&'a Bytes),
    /// Taken once the head is out; until then, an attempt that failed unsent can go again.
    Streamed(&'a mut Option<ClientBody>),
}

/// One request for [`exchange`]: the head is borrowed so that retries need not copy it.
pub struct Request<'a> {
    pub method: &'a Method,
    /// In origin form.
    pub path_and_query: &'a str,
    /// The client's fields to pass on; a `Host` among them is not.
    pub headers: &'a HeaderMap,
    /// The fields the proxy sets.
    pub added: Option<&'a UpstreamHeaders<'a>>,
    /// `None`: the authority's.
    pub host: Option<&'a HeaderValue>,
    pub authority: &'a Authority,
    pub body: Body<'a>,
}

/// How one exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// Not a byte of the request reached the connection: it can go on another one.
    Unsent(io::Error),
    WriteTimeout,
    ReadTimeout,
    /// The connection broke, or what came back was not an HTTP/1.1 answer.
    Broken(String),
}

impl Failure {
    fn broken(what: impl std::fmt::Display) -> Failure {
        Failure::Broken(what.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unsent(e) => write!(f, "writing the request: {e}"),
            Failure::WriteTimeout => {
                f.write_str("the upstream took no data within the write timeout")
            }
            Failure::ReadTimeout => {
                f.write_str("the upstream sent nothing within the read timeout")
            }
            Failure::Broken(cause) => f.write_str(cause),
        }
    }
}

impl std::error::Error for Failure {}

/// How the request body is framed on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    /// No body goes out (none, or an unknown-length one on GET, HEAD or CONNECT, as hyper does).
    None,
    Length(u64),
    Chunked,
}

/// Sends `request` on `connection` and reads the response head. `write_timeout` bounds each write,
/// `read_timeout` the wait for the head once the request is all written.
pub async fn exchange(
    connection: Connection,
    lease: Lease,
    request: Request<'_>,
    write_timeout: Duration,
    read_timeout: Duration,
) -> Result<Response<ResponseBody>, Failure> {
    let Connection {
        mut stream,
        mut read_buf,
        mut write_buf,
        mut header_spans,
        mut read_timer,
    } = connection;
    let framing = framing(request.method, request.headers, &request.body);
    encode_head(&request, framing, &mut write_buf);
    let Request { method, body, .. } = request;
    let rest = match &body {
        Body::Buffered(bytes) if framing != Framing::None => {
            if bytes.len() <= INLINE_BODY {
                write_buf.extend_from_slice(bytes);
                None
            } else {
                Some(*bytes)
            }
        }
        _ => None,
    };
    write_all(&mut stream, &write_buf, write_timeout, true).await?;
    if let Some(rest) = rest {
        write_all(&mut stream, rest, write_timeout, false).await?;
    }

    let streamed = match body {
        Body::Streamed(client) if framing != Framing::None => client.take(),
        _ => None,
    };
    let mut io = match streamed {
        None => Io::Whole(stream),
        Some(client) => {
            let (read, write) = stream.into_split();
            let task = tokio::spawn(pump(write, client, framing, write_timeout));
            Io::Split {
                read,
                pump: Pump { task, done: None },
            }
        }
    };

    let is_head = *method == Method::HEAD;
    let parsed = match &mut io {
        Io::Whole(stream) => {
            // The connection's timer, moved to the new deadline: a later deadline than the one
            // it is registered for only updates it, where a new timer each time is registered and
            // unregistered with the runtime's timer wheel under its lock.
            let deadline = tokio::time::Instant::now() + read_timeout;
            let timer =
                read_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            timer.as_mut().reset(deadline);
            poll_fn(|cx| {
                if let Poll::Ready(parsed) =
                    poll_head(stream, &mut read_buf, &mut header_spans, is_head, cx)
                {
                    return Poll::Ready(parsed);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(Failure::ReadTimeout)),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await?
        }
        Io::Split { read, pump } => {
            // The read timeout runs from when the body is all written; until then the answer may
            // come early, or the body's writes time out.
            let mut head = pin!(poll_fn(|cx| poll_head(
                read,
                &mut read_buf,
                &mut header_spans,
                is_head,
                cx
            )));
            let early = tokio::select! {
                biased;
                parsed = &mut head => Some(parsed?),
                sent = pump.finish() => {
                    sent?;
                    None
                }
            };
            match early {
                Some(parsed) => parsed,
                None => tokio::time::timeout(read_timeout, head)
                    .await
                    .map_err(|_| Failure::ReadTimeout)??,
            }
        }
    };
    let Parsed {
        parts,
        decoder,
        keep_alive,
    } = parsed;
    let no_body = decoder.is_none();
    let mut body = ResponseBody {
        reading: Some(Box::new(Reading {
            io,
            read_buf,
            write_buf,
            header_spans,
            read_timer,
            lease,
            decoder: decoder.unwrap_or(Decoder::Length(0)),
            keep_alive,
        })),
    };
    if no_body {
        body.finish();
    }
    Ok(Response::from_parts(parts, body))
}

/// The request body's framing, by hyper's rules for a request without `Transfer-Encoding` (the
/// proxy removes it as hop-by-hop): the head's own `Content-Length` when it has one, else the
/// body's known size, else chunked.
fn framing(method: &Method, headers: &HeaderMap, body: &Body<'_>) -> Framing {
    let known = match body {
        Body::Empty => return Framing::None,
        Body::Buffered(bytes) => Some(bytes.len() as u64),
        Body::Streamed(client) => match client {
            Some(client) if client.is_end_stream() => return Framing::None,
            Some(client) => client.size_hint().exact(),
            None => return Framing::None,
        },
    };
    if let Some(length) = content_length(headers) {
        return Framing::Length(length);
    }
    match known {
        Some(length) => Framing::Length(length),
        None if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) => Framing::None,
        None => Framing::Chunked,
    }
}

fn encode_head(request: &Request<'_>, framing: Framing, dst: &mut Vec<u8>) {
    dst.clear();
    dst.extend_from_slice(request.method.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(request.path_and_query.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    let host = request
        .host
        .map_or(request.authority.as_str().as_bytes(), HeaderValue::as_bytes);
    header_line(dst, b"host", host);
    for (name, value) in request.headers {
        if *name == HOST
            || *name == TRANSFER_ENCODING
            || (*name == CONTENT_LENGTH && framing == Framing::Chunked)
        {
            continue;
        }
        header_line(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(added) = request.added {
        added.encode(dst);
    }
    match framing {
        Framing::Length(length) if !request.headers.contains_key(CONTENT_LENGTH) => {
            header_line(
                dst,
                b"content-length",
                itoa::Buffer::new().format(length).as_bytes(),
            );
        }
        Framing::Chunked => header_line(dst, b"transfer-encoding", b"chunked"),
        _ => {}
    }
    dst.extend_from_slice(b"\r\n");
}

fn header_line(dst: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

/// Writes all of `bytes`; each write may wait up to `timeout` for the upstream to take data.
async fn write_all<W: AsyncWrite + Unpin>(
    stream: &mut W,
    bytes: &[u8],
    timeout: Duration,
    first: bool,
) -> Result<(), Failure> {
    let mut written = 0;
    while written < bytes.len() {
        // A write that goes at once (the usual case) needs no timer.
        let attempt = match stream.write(&bytes[written..]).now_or_never() {
            Some(done) => Ok(done),
            None => tokio::time::timeout(timeout, stream.write(&bytes[written..])).await,
        };
        match attempt {
            Err(_) => return Err(Failure::WriteTimeout),
            Ok(Ok(0)) => {
                return Err(Failure::broken(
                    "the upstream connection takes no more data",
                ))
            }
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) if first && written == 0 => return Err(Failure::Unsent(e)),
            Ok(Err(e)) => return Err(Failure::broken(format!("writing the request: {e}"))),
        }
    }
    Ok(())
}

/// Streams the client's body upstream (a task of its own); gives the write half back when the
/// body is all sent.
async fn pump(
    mut write: OwnedWriteHalf,
    mut client: ClientBody,
    framing: Framing,
    timeout: Duration,
) -> Result<OwnedWriteHalf, Failure> {
    let mut sent: u64 = 0;
    let mut chunk = Vec::new();
    loop {
        let frame = match client.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Err(Failure::broken(format!("reading the client's body: {e}"))),
        };
        let Ok(data) = frame.into_data() else {
            // Trailers: HTTP/1.1 requests to upstreams carry none here.
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match framing {
            Framing::Length(length) if sent > length => {
                return Err(Failure::broken(
                    "the client's body is longer than its length",
                ));
            }
            Framing::Chunked => {
                chunk.clear();
                chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                chunk.extend_from_slice(&data);
                chunk.extend_from_slice(b"\r\n");
                write_all(&mut write, &chunk, timeout, false).await?;
                continue;
            }
            _ => {}
        }
        write_all(&mut write, &data, timeout, false).await?;
    }
    match framing {
        Framing::Length(length) if sent != length => Err(Failure::broken(
            "the client's body is shorter than its length",
        )),
        Framing::Chunked => {
            write_all(&mut write, b"0\r\n\r\n", timeout, false).await?;
            Ok(write)
        }
        _ => Ok(write),
    }
}

/// The connection while a response is read: whole, or split while a task streams the request body.
enum Io {
    Whole(TcpStream),
    Split { read: OwnedReadHalf, pump: Pump },
}

/// The task streaming a request body, and what it ended with.
struct Pump {
    task: JoinHandle<Result<OwnedWriteHalf, Failure>>,
    done: Option<OwnedWriteHalf>,
}

impl Pump {
    /// Waits until the body is all written.
    async fn finish(&mut self) -> Result<(), Failure> {
        if self.done.is_some() {
            return Ok(());
        }
        let written = (&mut self.task)
            .await
            .map_err(|e| Failure::broken(format!("the request body's task: {e}")))??;
        self.done = Some(written);
        Ok(())
    }

    /// The write half, if the body is all written by now.
    fn written(&mut self) -> Option<OwnedWriteHalf> {
        if self.done.is_none() && self.task.is_finished() {
            if let Some(Ok(Ok(write))) = (&mut self.task).now_or_never() {
                self.done = Some(write);
            }
        }
        self.done.take()
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Io {
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self {
            Io::Whole(stream) => poll_read_buf(stream, cx, buf),
            Io::Split { read, .. } => poll_read_buf(read, cx, buf),
        }
    }

    /// The whole stream again, when nothing is being written any more.
    fn into_stream(self) -> Option<TcpStream> {
        match self {
            Io::Whole(stream) => Some(stream),
            Io::Split { read, mut pump } => read.reunite(pump.written()?).ok(),
        }
    }
}

/// One read into `buf`'s spare room (made at least [`MIN_READ`]). A read shorter than that room
/// tells the runtime the socket is drained, which the pool's idle check relies on.
fn poll_read_buf<R: AsyncRead + Unpin>(
    io: &mut R,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    buf.reserve(MIN_READ);
    pin!(io.read_buf(buf)).poll(cx)
}

/// A parsed response head.
struct Parsed {
    parts: response::Parts,
    /// `None` for an answer without a body.
    decoder: Option<Decoder>,
    keep_alive: bool,
}

fn poll_head<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    spans: &mut Vec<HeaderSpan>,
    is_head: bool,
    cx: &mut Context<'_>,
) -> Poll<Result<Parsed, Failure>> {
    loop {
        while !buf.is_empty() {
            match parse_head(buf, is_head, spans)? {
                Head::Final(parsed) => return Poll::Ready(Ok(parsed)),
                Head::Informational => {}
                Head::Partial if buf.len() >= MAX_HEAD_BYTES => {
                    return Poll::Ready(Err(Failure::broken("the response head is too large")));
                }
                Head::Partial => break,
            }
        }
        let received = !buf.is_empty();
        match ready!(poll_read_buf(io, cx, buf)) {
            Ok(0) if received => {
                return Poll::Ready(Err(Failure::broken(
                    "the upstream closed the connection in the middle of the response head",
                )));
            }
            Ok(0) => {
                return Poll::Ready(Err(Failure::broken(
                    "the upstream closed the connection before answering",
                )));
            }
            Ok(_) => {}
            Err(e) => {
                return Poll::Ready(Err(Failure::broken(format!("reading the response: {e}"))))
            }
        }
    }
}

enum Head {
    Final(Parsed),
    /// A 1xx answer other than 101, consumed: the final one follows.
    Informational,
    Partial,
}

/// Where a header's name and value are in the head: `[name start, name end, value start, value
/// end]` (the head is at most [`MAX_HEAD_BYTES`] long).
pub type HeaderSpan = [u32; 4];

fn parse_head(
    buf: &mut BytesMut,
    is_head: bool,
    spans: &mut Vec<HeaderSpan>,
) -> Result<Head, Failure> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            return Err(Failure::broken("the response head is too large"));
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(Head::Partial),
        Err(e) => return Err(Failure::broken(format!("invalid response head: {e}"))),
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .map_err(|_| Failure::broken(format!("invalid response status {code}")))?;
    let version = if response.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Kept, as hyper keeps it, only when it is not the usual one.
    let reason = response
        .reason
        .filter(|r| Some(*r) != status.canonical_reason() && !r.is_empty())
        .and_then(|r| hyper::ext::ReasonPhrase::try_from(r.as_bytes()).ok());
    // Where each name and value is in the buffer, so that the values can be slices of the head
    // once it is split off (no copy per header).
    let base = buf.as_ptr() as usize;
    spans.clear();
    spans.extend(response.headers.iter().map(|header| {
        let name = header.name.as_ptr() as usize - base;
        let value = header.value.as_ptr() as usize - base;
        [
            name as u32,
            (name + header.name.len()) as u32,
            value as u32,
            (value + header.value.len()) as u32,
        ]
    }));
    let head = buf.split_to(len).freeze();
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(Failure::broken("the upstream switched protocols unasked"));
        }
        return Ok(Head::Informational);
    }
    if version == Version::HTTP_11
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
    {
        if let Some(fields) = PassedFields::of(&head, spans) {
            // Known length, HTTP/1.1, no `Connection`: the connection stays open after the body.
            let decoder = (!is_head).then_some(Decoder::Length(fields.content_length));
            let (mut parts, ()) = Response::new(()).into_parts();
            parts.status = status;
            if let Some(reason) = reason {
                parts.extensions.insert(reason);
            }
            parts.extensions.insert(fields);
            return Ok(Head::Final(Parsed {
                parts,
                decoder,
                keep_alive: true,
            }));
        }
    }
    // Room for the headers the proxy adds to the answer.
    let mut headers = HeaderMap::with_capacity(spans.len() + 6);
    let mut keep_alive = version == Version::HTTP_11;
    let mut close = false;
    // The framing headers, noted on the way rather than looked up after.
    let mut length = Length::Absent;
    let mut chunked = None;
    for &[name_start, name_end, value_start, value_end] in spans.iter() {
        let name = HeaderName::from_bytes(&head[name_start as usize..name_end as usize])
            .map_err(|e| Failure::broken(format!("invalid response header name: {e}")))?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(value_start as usize..value_end as usize))
                .map_err(|e| {
                    Failure::broken(format!("invalid value of response header {name}: {e}"))
                })?;
        if name == CONNECTION {
            if close || has_token(&value, "close") {
                close = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = has_token(&value, "keep-alive");
            }
        } else if name == CONTENT_LENGTH {
            length = length.and(&value);
        } else if name == TRANSFER_ENCODING {
            // The last coding of the last field counts.
            chunked = Some(last_coding_is_chunked(&value));
        }
        headers.append(name, value);
    }
    let decoder =
        if is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            None
        } else if let Some(chunked) = chunked {
            if version == Version::HTTP_10 {
                return Err(Failure::broken("Transfer-Encoding in an HTTP/1.0 response"));
            }
            if chunked {
                Some(Decoder::Chunked(Chunk::Size))
            } else {
                keep_alive = false;
                Some(Decoder::UntilClose)
            }
        } else {
            match length {
                Length::Of(0) => None,
                Length::Of(length) => Some(Decoder::Length(length)),
                Length::Invalid => {
                    return Err(Failure::broken("invalid Content-Length in the response"))
                }
                Length::Absent => {
                    keep_alive = false;
                    Some(Decoder::UntilClose)
                }
            }
        };
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    if let Some(reason) = reason {
        parts.extensions.insert(reason);
    }
    Ok(Head::Final(Parsed {
        parts,
        decoder,
        keep_alive,
    }))
}

/// An answer's header fields passed on as the upstream wrote them, instead of being parsed into a
/// `HeaderMap` and encoded again: the listener's own HTTP/1.1 path copies them in one piece
/// ([`PassedFields::lines`]), every other path turns them into a map first
/// ([`PassedFields::into_headers`]). Building the map, adding to it and encoding it cost about
/// 2.4k instructions per proxied request, a tenth of the edge's.
///
/// Only the usual answer is passed this way: each field written `name: value` and ended with
/// CRLF, one non-zero `Content-Length` (which frames the body, so no other framing is left to
/// decide), and no field the proxy removes (hop-by-hop ones) or sets itself (`X-Request-Id`, the
/// latency headers). Any other answer gets a map, as before.
#[derive(Clone, Debug)]
pub struct PassedFields {
    /// The header lines, each ending with CRLF.
    block: Bytes,
    /// Lines the proxy adds after them ([`PassedFields::add`]).
    added: Vec<u8>,
    content_length: u64,
    has_date: bool,
}

impl PassedFields {
    fn of(head: &Bytes, spans: &[HeaderSpan]) -> Option<PassedFields> {
        let first = spans.first()?[0];
        let mut next = first;
        let mut content_length = None;
        let mut has_date = false;
        for &[name_start, name_end, value_start, value_end] in spans {
            let canonical = name_start == next
                && value_start == name_end + 2
                && value_end > value_start
                && head.get(name_end as usize..value_start as usize) == Some(b": ")
                && head.get(value_end as usize..value_end as usize + 2) == Some(b"\r\n");
            if !canonical {
                return None;
            }
            next = value_end + 2;
            let name = &head[name_start as usize..name_end as usize];
            if name.eq_ignore_ascii_case(b"content-length") {
                let value = &head[value_start as usize..value_end as usize];
                if content_length.is_some() {
                    return None;
                }
                content_length = Some(crate::listener::http1::parse_length(value)?);
            } else if name.eq_ignore_ascii_case(b"date") {
                has_date = true;
            } else if is_withheld(name) {
                return None;
            }
        }
        Some(PassedFields {
            block: head.slice(first as usize..next as usize),
            added: Vec::new(),
            content_length: content_length.filter(|n| *n > 0)?,
            has_date,
        })
    }

    /// The header lines as they came, then those added, each ending with CRLF.
    pub fn lines(&self) -> [&[u8]; 2] {
        [&self.block, &self.added]
    }

    /// Adds one of the proxy's fields after the passed ones. For `Via` and `Set-Cookie` that is
    /// what the map does too (append); the fields the proxy sets (the request id, the latency
    /// headers) were not among the upstream's, since [`is_withheld`] keeps such answers out.
    pub fn add(&mut self, name: &HeaderName, value: &HeaderValue) {
        if self.added.is_empty() {
            // `Via`, `X-Request-Id` and the two latency headers, in one allocation.
            self.added.reserve(160);
        }
        self.added.extend_from_slice(name.as_str().as_bytes());
        self.added.extend_from_slice(b": ");
        self.added.extend_from_slice(value.as_bytes());
        self.added.extend_from_slice(b"\r\n");
    }

    pub fn content_length(&self) -> u64 {
        self.content_length
    }

    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// For a path that needs a `HeaderMap`: moves the passed fields among `extensions` (if there
    /// are any) into `headers`, ahead of those the proxy added.
    pub fn into_headers(headers: &mut HeaderMap, extensions: &mut http::Extensions) {
        let Some(fields) = extensions.remove::<PassedFields>() else {
            return;
        };
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut block = Vec::with_capacity(fields.block.len() + fields.added.len() + 2);
        block.extend_from_slice(&fields.block);
        block.extend_from_slice(&fields.added);
        // `parse_headers` wants the blank line that ends a head.
        block.extend_from_slice(b"\r\n");
        let Ok(httparse::Status::Complete((_, parsed))) =
            httparse::parse_headers(&block, &mut slots)
        else {
            // Checked when the answer was read; cannot happen.
            tracing::error!("passed header fields no longer parse");
            return;
        };
        let mut passed = HeaderMap::with_capacity(parsed.len() + headers.len());
        for field in parsed {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(field.name.as_bytes()),
                HeaderValue::from_bytes(field.value),
            ) {
                passed.append(name, value);
            }
        }
        let mut name = None;
        for (key, value) in std::mem::take(headers) {
            // `None` repeats the previous name.
            if key.is_some() {
                name = key;
            }
            if let Some(name) = &name {
                passed.append(name.clone(), value);
            }
        }
        *headers = passed;
    }
}

/// Fields an answer cannot be passed on with as it came: hop-by-hop ones, which the proxy
/// removes, and those it sets itself. The twin of the proxy's `is_hop_by_hop` plus its answer
/// headers, kept as bytes here: one shared list of `HeaderName`s cost about 250 instructions
/// per request (callgrind) in the two hot paths. A name added there belongs here too.
fn is_withheld(name: &[u8]) -> bool {
    const WITHHELD: [&[u8]; 12] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"x-request-id",
        b"x-tollgate-proxy-latency",
        b"x-tollgate-upstream-latency",
    ];
    WITHHELD
        .iter()
        .any(|withheld| withheld.len() == name.len() && withheld.eq_ignore_ascii_case(name))
}

/// Whether a comma-separated header value holds `token` (case-insensitively).
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether a `Transfer-Encoding` value's last coding is `chunked`.
fn last_coding_is_chunked(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .next_back()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// What the `Content-Length` fields seen so far say: every value (and every comma-separated one)
/// must be the same number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Length {
    Absent,
    Of(u64),
    Invalid,
}

impl Length {
    fn and(self, value: &HeaderValue) -> Length {
        let mut length = self;
        for part in value.as_bytes().split(|b| *b == b',') {
            let Some(n) = crate::listener::http1::parse_length(part.trim_ascii()) else {
                return Length::Invalid;
            };
            length = match length {
                Length::Absent => Length::Of(n),
                Length::Of(l) if l == n => length,
                _ => return Length::Invalid,
            };
        }
        length
    }
}

/// The `Content-Length` of a head, when it has a valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let length = headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .fold(Length::Absent, Length::and);
    match length {
        Length::Of(n) => Some(n),
        _ => None,
    }
}

/// How the rest of the body is framed.
#[derive(Debug)]
enum Decoder {
    /// Bytes left.
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Bytes left in the current chunk.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// An upstream's response body, read from its connection as the client's side asks for it.
pub struct ResponseBody {
    /// `None` once the body ended (the connection given back or closed) or failed. Boxed: the
    /// response this body is part of is moved several times on its way to the client, and a
    /// pointer is cheaper to move than the 200 bytes of the connection's state.
    reading: Option<Box<Reading>>,
}

struct Reading {
    io: Io,
    read_buf: BytesMut,
    write_buf: Vec<u8>,
    header_spans: Vec<HeaderSpan>,
    read_timer: Option<Pin<Box<Sleep>>>,
    lease: Lease,
    decoder: Decoder,
    keep_alive: bool,
}

/// What one step of decoding produced.
enum Step {
    /// Data, and whether it was the last of the body.
    Data(Bytes, bool),
    Trailers(HeaderMap),
    End,
}

impl ResponseBody {
    /// The body ended cleanly: the connection goes back to the pool if it can take another
    /// request.
    fn finish(&mut self) {
        let Some(reading) = self.reading.take() else {
            return;
        };
        let Reading {
            io,
            read_buf,
            write_buf,
            header_spans,
            read_timer,
            lease,
            keep_alive,
            ..
        } = *reading;
        // Bytes past the end of the answer are not the start of anything this side asked for.
        if !keep_alive || !read_buf.is_empty() {
            return;
        }
        if let Some(stream) = io.into_stream() {
            lease.give_back(Connection {
                stream,
                read_buf,
                write_buf,
                header_spans,
                read_timer,
            });
        }
    }
}

impl Reading {
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Result<Step, Failure>> {
        loop {
            let buf = &mut self.read_buf;
            match &mut self.decoder {
                Decoder::Length(left) => {
                    if !buf.is_empty() {
                        let n = (*left).min(buf.len() as u64);
                        *left -= n;
                        let data = buf.split_to(n as usize).freeze();
                        return Poll::Ready(Ok(Step::Data(data, *left == 0)));
                    }
                    // Room for the rest when it is not much, so that the last read is a short one.
                    buf.reserve((*left).min(MAX_READ as u64) as usize);
                }
                Decoder::UntilClose => {
                    if !buf.is_empty() {
                        let data = buf.split().freeze();
                        return Poll::Ready(Ok(Step::Data(data, false)));
                    }
                }
                Decoder::Chunked(chunk) => {
                    if let Some(step) = decode_chunked(chunk, buf)? {
                        return Poll::Ready(Ok(step));
                    }
                }
            }
            let read = ready!(self.io.poll_read_buf(cx, &mut self.read_buf));
            match read {
                Ok(0) if matches!(self.decoder, Decoder::UntilClose) => {
                    return Poll::Ready(Ok(Step::End));
                }
                Ok(0) => {
                    return Poll::Ready(Err(Failure::broken(
                        "the upstream closed the connection before the body was complete",
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    return Poll::Ready(Err(Failure::broken(format!(
                        "reading the response body: {e}"
                    ))));
                }
            }
        }
    }
}

/// Decodes what `buf` holds of a chunked body; `None` when more must be read first.
fn decode_chunked(chunk: &mut Chunk, buf: &mut BytesMut) -> Result<Option<Step>, Failure> {
    loop {
        match chunk {
            Chunk::Size => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((line, size))) => {
                    buf.advance(line);
                    *chunk = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                    return Err(Failure::broken("a chunk-size line is too long"));
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err(Failure::broken("invalid chunk size")),
            },
            Chunk::Data(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                let data = buf.split_to(n as usize).freeze();
                if *left == 0 {
                    *chunk = Chunk::DataEnd;
                }
                return Ok(Some(Step::Data(data, false)));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    return Ok(None);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(Failure::broken("a chunk's data is not followed by CRLF"));
                }
                buf.advance(2);
                *chunk = Chunk::Size;
            }
            Chunk::Trailers => {
                let mut fields = [httparse::EMPTY_HEADER; 32];
                return match httparse::parse_headers(buf, &mut fields) {
                    Ok(httparse::Status::Complete((len, fields))) => {
                        let mut trailers = HeaderMap::new();
                        for field in fields {
                            let name = HeaderName::from_bytes(field.name.as_bytes());
                            let value = HeaderValue::from_bytes(field.value);
                            if let (Ok(name), Ok(value)) = (name, value) {
                                trailers.append(name, value);
                            }
                        }
                        buf.advance(len);
                        Ok(Some(if trailers.is_empty() {
                            Step::End
                        } else {
                            Step::Trailers(trailers)
                        }))
                    }
                    Ok(httparse::Status::Partial) if buf.len() > MAX_TRAILER_BYTES => {
                        Err(Failure::broken("the trailers are too large"))
                    }
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(e) => Err(Failure::broken(format!("invalid trailers: {e}"))),
                };
            }
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(reading.poll_step(cx)) {
            Ok(Step::Data(data, last)) => {
                if last {
                    this.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(Step::Trailers(trailers)) => {
                this.finish();
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Ok(Step::End) => {
                this.finish();
                Poll::Ready(None)
            }
            Err(failure) => {
                // Dropping the connection closes it.
                this.reading = None;
                Poll::Ready(Some(Err(Box::new(failure))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.reading.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading.as_deref() {
            None => SizeHint::with_exact(0),
            Some(Reading {
                decoder: Decoder::Length(left),
                ..
            }) => SizeHint::with_exact(*left),
            Some(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parsed(raw: &[u8], is_head: bool) -> Result<Head, Failure> {
        let mut buf = BytesMut::from(raw);
        parse_head(&mut buf, is_head, &mut Vec::new())
    }

    fn final_head(raw: &[u8]) -> Parsed {
        match parsed(raw, false) {
            Ok(Head::Final(parsed)) => parsed,
            Ok(_) => panic!("not a final head"),
            Err(e) => panic!("{e}"),
        }
    }

    fn passed(raw: &[u8], is_head: bool) -> Option<PassedFields> {
        match parsed(raw, is_head) {
            Ok(Head::Final(parsed)) => parsed.parts.extensions.get::<PassedFields>().cloned(),
            _ => panic!("not a final head"),
        }
    }

    #[test]
    fn only_usual_answers_pass_their_fields_as_they_came() {
        let fields = passed(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 12\r\nDate: x\r\n\r\n",
            false,
        )
        .expect("the usual answer");
        assert_eq!(
            fields.lines()[0],
            b"Content-Type: text/plain\r\ncontent-length: 12\r\nDate: x\r\n"
        );
        assert_eq!(fields.content_length(), 12);
        assert!(fields.has_date());
        let head = final_head(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n");
        assert!(head.parts.headers.is_empty());
        assert!(matches!(head.decoder, Some(Decoder::Length(12))));
        assert!(head.keep_alive);
        assert!(passed(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n", true).is_some());

        for refused in [
            &b"HTTP/1.1 200 OK\r\nx-a: 1\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length:2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length:  2\r\n\r\n",
            b"HTTP/1.1 200 OK\ncontent-length: 2\n\n",
            b"HTTP/1.1 200 OK\r\nx-empty: \r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx-trailing: a \r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Request-Id: a\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx-tollgate-upstream-latency: 1\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 2\r\n\r\n",
        ] {
            assert!(
                passed(refused, false).is_none(),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
    }

    #[test]
    fn passed_fields_become_a_map_ahead_of_the_proxys() {
        let head = final_head(
            b"HTTP/1.1 200 OK\r\nVia: 1.0 a\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 3\r\n\r\n",
        );
        let mut parts = head.parts;
        parts.headers.append("x-own", HeaderValue::from_static("1"));
        let fields = parts.extensions.get_mut::<PassedFields>().unwrap();
        fields.add(
            &http::header::VIA,
            &HeaderValue::from_static("1.1 tollgate"),
        );
        PassedFields::into_headers(&mut parts.headers, &mut parts.extensions);
        assert!(parts.extensions.get::<PassedFields>().is_none());
        let fields: Vec<(String, &str)> = parts
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap()))
            .collect();
        let expected = [
            ("via", "1.0 a"),
            ("via", "1.1 tollgate"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("content-length", "3"),
            ("x-own", "1"),
        ];
        assert_eq!(fields.len(), expected.len(), "{fields:?}");
        for (name, value) in expected {
            assert!(
                fields.iter().any(|(n, v)| n == name && *v == value),
                "{name}: {value} in {fields:?}"
            );
        }
        let via: Vec<_> = parts.headers.get_all("via").iter().collect();
        assert_eq!(via, ["1.0 a", "1.1 tollgate"]);
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let head = final_head(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n");
        assert!(matches!(head.decoder, Some(Decoder::Length(5))));
        assert!(head.keep_alive);
        let head = final_head(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
        );
        assert!(matches!(head.decoder, Some(Decoder::Chunked(Chunk::Size))));
        let head = final_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert!(matches!(head.decoder, Some(Decoder::UntilClose)));
        assert!(!head.keep_alive);
        let head = final_head(b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(head.decoder, Some(Decoder::UntilClose)));
        let head = final_head(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n");
        assert!(head.decoder.is_none());
        let head = final_head(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n");
        assert!(!head.keep_alive);
        let head =
            final_head(b"HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n");
        assert!(head.keep_alive);
        let head = final_head(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n");
        assert!(!head.keep_alive);
        let Ok(Head::Final(head)) = parsed(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true)
        else {
            panic!("HEAD answer")
        };
        assert!(head.decoder.is_none());
        assert!(parsed(b"HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n", false).is_err());
        assert!(parsed(b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n", false).is_err());
        assert!(parsed(b"HTTP/1.1 200 OK\r\nx: a\r\n b\r\n\r\n", false).is_err());
        assert!(matches!(
            parsed(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n", false),
            Ok(Head::Informational)
        ));
        assert!(matches!(
            parsed(b"HTTP/1.1 200 OK\r\nx: y\r\n", false),
            Ok(Head::Partial)
        ));
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let mut buf = BytesMut::from(&b"4;ext=1\r\nRust\r\n3\r\n!!!\r\n0\r\nx-sum: 7\r\n\r\n"[..]);
        let mut chunk = Chunk::Size;
        let mut data = Vec::new();
        let mut trailers = None;
        while let Some(step) = decode_chunked(&mut chunk, &mut buf).unwrap() {
            match step {
                Step::Data(bytes, _) => data.extend_from_slice(&bytes),
                Step::Trailers(t) => {
                    trailers = Some(t);
                    break;
                }
                Step::End => break,
            }
        }
        assert_eq!(data, b"Rust!!!");
        assert_eq!(trailers.unwrap()["x-sum"], "7");
        assert!(buf.is_empty());

        let mut partial = BytesMut::from(&b"4\r\nRu"[..]);
        let mut chunk = Chunk::Size;
        assert!(matches!(
            decode_chunked(&mut chunk, &mut partial),
            Ok(Some(Step::Data(ref d, false))) if d == "Ru"
        ));
        assert!(matches!(decode_chunked(&mut chunk, &mut partial), Ok(None)));
        let mut bad = BytesMut::from(&b"4\r\nRustXX"[..]);
        let mut chunk = Chunk::Size;
        assert!(decode_chunked(&mut chunk, &mut bad).is_ok());
        assert!(decode_chunked(&mut chunk, &mut bad).is_err());
    }

    #[test]
    fn request_heads_are_framed_as_hyper_frames_them() {
        let authority = Authority::from_static("up.test:8080");
        let service_host = HeaderValue::from_static("svc.test");
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("client.test"));
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("5"));
        let body = Bytes::from_static(b"hello");
        let encoded = |request: &Request<'_>| {
            let mut out = Vec::new();
            let framing = framing(request.method, request.headers, &request.body);
            encode_head(request, framing, &mut out);
            String::from_utf8(out).unwrap()
        };
        let mut request = Request {
            method: &Method::POST,
            path_and_query: "/p?q=1",
            headers: &headers,
            added: None,
            host: Some(&service_host),
            authority: &authority,
            body: Body::Buffered(&body),
        };
        assert_eq!(
            encoded(&request),
            "POST /p?q=1 HTTP/1.1\r\nhost: svc.test\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n"
        );
        let mut client_body = None;
        request.body = Body::Streamed(&mut client_body);
        request.host = None;
        request.method = &Method::GET;
        request.path_and_query = "/";
        assert_eq!(
            encoded(&request),
            "GET / HTTP/1.1\r\nhost: up.test:8080\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n"
        );
        let mut headers = headers.clone();
        headers.remove(CONTENT_LENGTH);
        let request = Request {
            headers: &headers,
            body: Body::Buffered(&body),
            ..request
        };
        assert_eq!(
            encoded(&request),
            "GET / HTTP/1.1\r\nhost: up.test:8080\r\nx-a: 1\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!(
            framing(&Method::POST, &headers, &Body::Empty),
            Framing::None
        );
    }
}
