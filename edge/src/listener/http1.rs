//! The listener's own HTTP/1.1 path for plain-text connections. A request that is well formed
//! (as `httparse` reads it), HTTP/1.1, without a body (no `Content-Length` but `0`, no
//! `Transfer-Encoding`), and that asks for nothing unusual (`Expect`, `Upgrade`, `CONNECT`) is
//! parsed, handed to the handler and answered here, in the connection's own task. The first
//! request that does not fit hands the connection, with what was read of it, to hyper, which
//! serves it from there on: HTTP/2's preface, HTTP/1.0, request bodies, upgrades, and every
//! malformed or oversized head (hyper's 400, 414 and 431 included).
//!
//! Written by hand rather than served by hyper's `server::conn::http1` because hyper's dispatcher
//! cost about 11k instructions per proxied request, a third of the edge's: the request's future
//! boxed and moved several times, a timer set and cancelled per head, channels for the body.
//! What hyper's server does and this keeps: its response framing (a known length as
//! `Content-Length`, an unknown one chunked, none for HEAD, 204 and 304), `Date` when the answer
//! has none, `Connection: close` when it will close, the 30 s limit for a request head (idle time
//! between requests included), closing when the client leaves while its request is answered,
//! pipelined requests answered in order, and a graceful end on shutdown.

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;

use super::IncomingBody;
use crate::proxy::ConnectionInfo;
use crate::upstream::body::BoxError;
use crate::upstream::http1::PassedFields;

/// Request head limits: hyper's. A longer head is left to hyper to refuse.
const MAX_HEADERS: usize = 100;
const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
const READ_BUFFER: usize = 8 * 1024;
/// Response bytes gathered before they are written.
const WRITE_CHUNK: usize = 64 * 1024;

/// How serving a connection here ended.
pub enum Ended {
    Closed,
    /// The next request is hyper's: the bytes read and not answered, and the connection.
    HandOff(Bytes, TcpStream),
}

/// Serves requests on `stream` until the client leaves, shutdown, or a request for hyper.
pub async fn serve<H, F, B>(
    stream: TcpStream,
    info: &ConnectionInfo,
    handler: &H,
    shutdown: &mut watch::Receiver<bool>,
    header_read_timeout: Duration,
) -> Ended
where
    H: Fn(ConnectionInfo, Request<IncomingBody>) -> F,
    F: Future<Output = Response<B>>,
    B: Body<Data = Bytes, Error = BoxError>,
{
    let mut connection = Connection {
        stream,
        read_buf: BytesMut::with_capacity(READ_BUFFER),
        write_buf: Vec::with_capacity(READ_BUFFER),
        spans: Vec::new(),
        timer: Box::pin(tokio::time::sleep(header_read_timeout)),
        header_read_timeout,
    };
    let mut shutdown = Shutdown::new(shutdown);
    loop {
        if shutdown.asked() {
            return Ended::Closed;
        }
        let head = match connection.read_head(&mut shutdown).await {
            Next::Request(head) => head,
            Next::HandOff => return connection.hand_off(),
            Next::Close => return Ended::Closed,
        };
        let Head {
            request,
            keep_alive,
            is_head,
        } = head;
        let answer = pin!(handler(info.clone(), request));
        let Some(response) = connection.answer_unless_client_leaves(answer).await else {
            return Ended::Closed;
        };
        // A shutdown that came while the request was answered ends the connection after it.
        let keep_alive = keep_alive && !shutdown.asked();
        match connection
            .write_response(response, is_head, keep_alive)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let _ = connection.stream.shutdown().await;
                return Ended::Closed;
            }
            Err(e) => {
                tracing::debug!(error = %e, "writing the response failed");
                return Ended::Closed;
            }
        }
    }
}

/// Whether the edge is shutting down, asked without a trip through the `watch` channel's waiter
/// list each time: a `changed()` future polled once registers this task to be woken, and after
/// that a look at the channel's version is enough.
struct Shutdown<'a> {
    signal: Pin<Box<dyn Future<Output = Result<(), watch::error::RecvError>> + Send + 'a>>,
    probe: watch::Receiver<bool>,
    registered: bool,
}

impl<'a> Shutdown<'a> {
    fn new(receiver: &'a mut watch::Receiver<bool>) -> Shutdown<'a> {
        let mut probe = receiver.clone();
        probe.mark_unchanged();
        let asked = *receiver.borrow_and_update();
        if asked {
            probe.mark_changed();
        }
        Shutdown {
            // Unconstrained: its one poll must register it, not be turned away by the task's
            // budget.
            signal: Box::pin(tokio::task::unconstrained(receiver.changed())),
            probe,
            registered: false,
        }
    }

    fn asked(&self) -> bool {
        self.probe.has_changed().unwrap_or(true)
    }

    /// Ready once shutdown is asked; wakes the task when it is.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.registered {
            self.registered = true;
            if self.signal.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        if self.asked() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

struct Connection {
    stream: TcpStream,
    /// Read and not answered yet.
    read_buf: BytesMut,
    write_buf: Vec<u8>,
    /// Where a head's header fields are, while it is parsed: `[name start, name end, value start,
    /// value end]`.
    spans: Vec<[u32; 4]>,
    /// The limit for reading a request head, moved to each new head's deadline.
    timer: Pin<Box<Sleep>>,
    header_read_timeout: Duration,
}

/// A request this path answers.
struct Head {
    request: Request<IncomingBody>,
    keep_alive: bool,
    is_head: bool,
}

// Not boxed: one is made per request and moved once, where a box would allocate per request.
#[allow(clippy::large_enum_variant)]
enum Next {
    Request(Head),
    HandOff,
    Close,
}

#[allow(clippy::large_enum_variant)]
enum Parsed {
    Request(Head),
    /// For hyper: nothing was taken out of the buffer.
    NotOurs,
    Partial,
}

impl Connection {
    fn hand_off(self) -> Ended {
        Ended::HandOff(self.read_buf.freeze(), self.stream)
    }

    /// Reads until the next request's head is complete. The timer starts when this begins
    /// waiting, as hyper's does: an idle keep-alive connection gets the same time as a slow head.
    async fn read_head(&mut self, shutdown: &mut Shutdown<'_>) -> Next {
        let mut timing = false;
        loop {
            if !self.read_buf.is_empty() {
                match parse_request(&mut self.read_buf, &mut self.spans) {
                    Parsed::Request(head) => return Next::Request(head),
                    Parsed::NotOurs => return Next::HandOff,
                    Parsed::Partial if self.read_buf.len() >= MAX_HEAD_BYTES => {
                        return Next::HandOff
                    }
                    Parsed::Partial => {}
                }
            }
            if !timing {
                let deadline = tokio::time::Instant::now() + self.header_read_timeout;
                self.timer.as_mut().reset(deadline);
                timing = true;
            }
            let read = poll_fn(|cx| {
                if let Poll::Ready(read) = poll_read_buf(&mut self.stream, cx, &mut self.read_buf) {
                    return Poll::Ready(Some(read));
                }
                if self.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                if shutdown.poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            match read {
                Some(Ok(n)) if n > 0 => {}
                // The client left, an error, the head took too long, or shutdown.
                _ => return Next::Close,
            }
        }
    }

    /// Runs `answer` to its end, unless the client closes the connection meanwhile (then the
    /// request is dropped, as hyper drops it). Bytes the client pipelines meanwhile are kept.
    async fn answer_unless_client_leaves<F: Future>(
        &mut self,
        mut answer: Pin<&mut F>,
    ) -> Option<F::Output> {
        poll_fn(|cx| {
            if let Poll::Ready(response) = answer.as_mut().poll(cx) {
                return Poll::Ready(Some(response));
            }
            // Reading ahead stops at a head's worth: the rest can wait in the socket.
            while self.read_buf.len() < MAX_HEAD_BYTES {
                match self.stream.poll_read_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(_)) => return Poll::Ready(None),
                    Poll::Ready(Ok(())) => {}
                }
                self.read_buf.reserve(READ_BUFFER);
                match self.stream.try_read_buf(&mut self.read_buf) {
                    Ok(0) => return Poll::Ready(None),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return Poll::Ready(None),
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Writes `response` (no body after a HEAD request); whether the connection stays open.
    async fn write_response<B>(
        &mut self,
        response: Response<B>,
        is_head: bool,
        keep_alive: bool,
    ) -> Result<bool, BoxError>
    where
        B: Body<Data = Bytes, Error = BoxError>,
    {
        let (mut parts, body) = response.into_parts();
        let length = if body.is_end_stream() {
            Length::None
        } else {
            match body.size_hint().exact() {
                Some(n) => Length::Known(n),
                None => Length::Unknown,
            }
        };
        // Passed fields carry their `Content-Length`; a body that has ended before it began (hyper
        // drops the field then, but for HEAD) needs the fields one by one.
        if matches!(length, Length::None) && !is_head {
            PassedFields::into_headers(&mut parts.headers, &mut parts.extensions);
        }
        self.write_buf.clear();
        let (framing, keep_alive) =
            encode_head(&mut self.write_buf, &parts, length, is_head, keep_alive)?;
        drop(parts);
        if matches!(framing, Framing::Length(0)) {
            drop(body);
            write_all(&mut self.stream, &self.write_buf).await?;
            return Ok(keep_alive);
        }
        let mut body = pin!(body);
        let mut left = match framing {
            Framing::Length(n) => Some(n),
            Framing::Chunked => None,
        };
        loop {
            // What the body has at once goes out with what is gathered; before waiting for
            // more, what is gathered goes out (the client gets each chunk as it comes).
            let frame = match body.frame().now_or_never() {
                Some(frame) => frame,
                None => {
                    write_all(&mut self.stream, &self.write_buf).await?;
                    self.write_buf.clear();
                    body.frame().await
                }
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => return Err(e),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    // Trailers: the proxy drops `Trailer` as hop-by-hop, and hyper sends none
                    // without it.
                    Err(_) => continue,
                },
            };
            if data.is_empty() {
                continue;
            }
            match &mut left {
                Some(left) => {
                    let n = data.len() as u64;
                    if n > *left {
                        return Err("the body is longer than its Content-Length".into());
                    }
                    *left -= n;
                    self.gather(&data).await?;
                }
                None => {
                    let mut size = [0u8; 16];
                    self.write_buf
                        .extend_from_slice(hex(data.len() as u64, &mut size));
                    self.write_buf.extend_from_slice(b"\r\n");
                    self.gather(&data).await?;
                    self.write_buf.extend_from_slice(b"\r\n");
                }
            }
        }
        match left {
            Some(0) => {}
            Some(_) => return Err("the body is shorter than its Content-Length".into()),
            None => self.write_buf.extend_from_slice(b"0\r\n\r\n"),
        }
        write_all(&mut self.stream, &self.write_buf).await?;
        self.write_buf.clear();
        Ok(keep_alive)
    }

    /// Adds `data` to what goes out next; a large amount is written at once instead.
    async fn gather(&mut self, data: &Bytes) -> Result<(), BoxError> {
        if self.write_buf.len() + data.len() <= WRITE_CHUNK {
            self.write_buf.extend_from_slice(data);
            return Ok(());
        }
        write_all(&mut self.stream, &self.write_buf).await?;
        self.write_buf.clear();
        write_all(&mut self.stream, data).await?;
        Ok(())
    }
}

/// Writes all of `bytes`: at once when the socket takes them (the usual case), without a future
/// to poll.
async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), BoxError> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.try_write(&bytes[written..]) {
            Ok(0) => return Err("the client takes no more data".into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One read into `buf`'s spare room. A read shorter than that room tells the runtime the socket
/// is drained, so the next wait needs no system call to find out.
fn poll_read_buf(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    buf.reserve(READ_BUFFER);
    pin!(stream.read_buf(buf)).poll(cx)
}

/// Parses the request at the start of `buf`, taking it out when it is one this path answers.
fn parse_request(buf: &mut BytesMut, spans: &mut Vec<[u32; 4]>) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        _ => return Parsed::NotOurs,
    };
    if parsed.version != Some(1) {
        return Parsed::NotOurs;
    }
    let method = match parsed.method.map(|m| Method::from_bytes(m.as_bytes())) {
        Some(Ok(method)) if method != Method::CONNECT => method,
        _ => return Parsed::NotOurs,
    };
    let base = buf.as_ptr() as usize;
    let Some(path) = parsed.path else {
        return Parsed::NotOurs;
    };
    let path_start = path.as_ptr() as usize - base;
    let path_end = path_start + path.len();
    spans.clear();
    let mut lengths = 0;
    for header in parsed.headers.iter() {
        let name = header.name.as_bytes();
        // What makes a request hyper's: a body, or something asked of the connection. Two
        // `Content-Length: 0` fields are no framing to guess at either, but hyper's to judge.
        let ours = if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            header.value == b"0" && lengths == 1
        } else {
            !(name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"expect")
                || name.eq_ignore_ascii_case(b"upgrade"))
        };
        if !ours {
            return Parsed::NotOurs;
        }
        let name_start = header.name.as_ptr() as usize - base;
        let value_start = header.value.as_ptr() as usize - base;
        // The head is at most MAX_HEAD_BYTES long.
        spans.push([
            name_start as u32,
            (name_start + name.len()) as u32,
            value_start as u32,
            (value_start + header.value.len()) as u32,
        ]);
    }
    let head = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(path_start..path_end)) else {
        put_back(buf, head);
        return Parsed::NotOurs;
    };
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut keep_alive = true;
    for &[name_start, name_end, value_start, value_end] in spans.iter() {
        let name = HeaderName::from_bytes(&head[name_start as usize..name_end as usize]);
        let value =
            HeaderValue::from_maybe_shared(head.slice(value_start as usize..value_end as usize));
        let (Ok(name), Ok(value)) = (name, value) else {
            put_back(buf, head);
            return Parsed::NotOurs;
        };
        if name == CONNECTION && has_token(&value, b"close") {
            keep_alive = false;
        }
        headers.append(name, value);
    }
    let is_head = method == Method::HEAD;
    let mut request = Request::new(IncomingBody::Empty);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Parsed::Request(Head {
        request,
        keep_alive,
        is_head,
    })
}

/// Puts a head taken out of `buf` back in front of what follows it, for hyper.
fn put_back(buf: &mut BytesMut, head: Bytes) {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(&head);
    whole.extend_from_slice(buf);
    *buf = whole;
}

/// Whether a comma-separated header value holds `token` (case-insensitively).
fn has_token(value: &HeaderValue, token: &[u8]) -> bool {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// What the response body says of its length.
#[derive(Clone, Copy)]
enum Length {
    /// Ended before it began.
    None,
    Known(u64),
    Unknown,
}

/// How the response body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

/// Writes the status line and header fields of a response to a request (HEAD when `is_head`), by
/// hyper's rules; the body's framing and whether the connection stays open after it.
fn encode_head(
    dst: &mut Vec<u8>,
    parts: &http::response::Parts,
    length: Length,
    is_head: bool,
    keep_alive: bool,
) -> Result<(Framing, bool), BoxError> {
    let status = parts.status;
    if status.is_informational() {
        // hyper answers 500 to a handler that returns a 1xx; the proxy never does.
        return Err("a 1xx response cannot be sent as the answer".into());
    }
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    if status == StatusCode::OK && reason.is_none() {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.extend_from_slice(b"HTTP/1.1 ");
        dst.extend_from_slice(status.as_str().as_bytes());
        dst.push(b' ');
        match reason {
            Some(reason) => dst.extend_from_slice(reason.as_bytes()),
            None => dst.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        dst.extend_from_slice(b"\r\n");
    }
    let no_content = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let can_have_body = !is_head && !no_content;
    let mut framing = None;
    let mut keep_alive = keep_alive;
    let mut wrote_date = false;
    let mut wrote_close = false;
    let mut written_length = None;
    if let Some(fields) = parts.extensions.get::<PassedFields>() {
        // As a `Content-Length` field below: the body's own length frames it (the same, as the
        // body is passed on untouched); after HEAD the field is kept and nothing follows.
        for lines in fields.lines() {
            dst.extend_from_slice(lines);
        }
        wrote_date = fields.has_date();
        let declared = fields.content_length();
        written_length = Some(declared);
        framing = match length {
            Length::Known(n) => Some(Framing::Length(n)),
            Length::Unknown => Some(Framing::Length(declared)),
            Length::None => None,
        };
    }
    for (name, value) in &parts.headers {
        if *name == CONTENT_LENGTH {
            let declared = parse_length(value.as_bytes());
            match length {
                Length::None if !is_head => continue,
                Length::Known(n) => {
                    if written_length.is_some() {
                        continue;
                    }
                    framing = Some(Framing::Length(n));
                }
                Length::Unknown => match (declared, written_length) {
                    (Some(n), None) => framing = Some(Framing::Length(n)),
                    (Some(n), Some(written)) if n == written => continue,
                    _ => return Err("the response's Content-Length is invalid".into()),
                },
                Length::None => {}
            }
            written_length = Some(declared.unwrap_or_default());
        } else if *name == TRANSFER_ENCODING {
            // The proxy removes it as hop-by-hop; the framing is decided below.
            continue;
        } else if *name == CONNECTION {
            if has_token(value, b"close") {
                keep_alive = false;
                wrote_close = true;
            }
        } else if *name == DATE {
            wrote_date = true;
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    let framing = match (framing, length) {
        (Some(framing), _) => framing,
        (None, Length::Unknown) if can_have_body => {
            dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        }
        (None, Length::Unknown) => Framing::Length(0),
        (None, Length::None | Length::Known(0)) => {
            if !is_head && !no_content {
                dst.extend_from_slice(b"content-length: 0\r\n");
            }
            Framing::Length(0)
        }
        (None, Length::Known(n)) => {
            if no_content {
                Framing::Length(0)
            } else {
                dst.extend_from_slice(b"content-length: ");
                dst.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                dst.extend_from_slice(b"\r\n");
                Framing::Length(n)
            }
        }
    };
    let framing = if can_have_body {
        framing
    } else {
        Framing::Length(0)
    };
    if !keep_alive && !wrote_close {
        dst.extend_from_slice(b"connection: close\r\n");
    }
    if !wrote_date {
        dst.extend_from_slice(b"date: ");
        http_date(dst);
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    Ok((framing, keep_alive))
}

/// A `Content-Length` value as hyper reads it: digits only. The upstream side reads its answers'
/// lengths with it too.
pub(crate) fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// `n` in hexadecimal (a chunk size), written at the end of `buffer`.
fn hex(mut n: u64, buffer: &mut [u8; 16]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b"0123456789ABCDEF"[(n % 16) as usize];
        n /= 16;
        if n == 0 {
            return &buffer[at..];
        }
    }
}

/// The current time as an HTTP date, formatted once a second per thread (as hyper caches it).
fn http_date(dst: &mut Vec<u8>) {
    thread_local! {
        static CACHED: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second || cached.1.is_empty() {
            *cached = (second, httpdate::fmt_http_date(now));
        }
        dst.extend_from_slice(cached.1.as_bytes());
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(raw);
        let parsed = parse_request(&mut buf, &mut Vec::new());
        (parsed, buf)
    }

    #[test]
    fn simple_requests_are_ours_and_the_rest_hypers_untouched() {
        let (parsed, rest) =
            parse(b"GET /a?b=c HTTP/1.1\r\nHost: x.test\r\nX-A: 1\r\n\r\nGET /next HTTP/1.1\r\n");
        let Parsed::Request(head) = parsed else {
            panic!("a plain GET is ours")
        };
        assert_eq!(head.request.uri(), "/a?b=c");
        assert_eq!(head.request.headers()["host"], "x.test");
        assert!(head.keep_alive && !head.is_head);
        assert_eq!(&rest[..], b"GET /next HTTP/1.1\r\n");

        let (parsed, _) =
            parse(b"HEAD / HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        let Parsed::Request(head) = parsed else {
            panic!("HEAD with an empty body is ours")
        };
        assert!(!head.keep_alive && head.is_head);

        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 0\r\ncontent-length: 0\r\n\r\n",
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"CONNECT x.test:443 HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad header: 1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\n\r\n",
        ] {
            let (parsed, rest) = parse(raw);
            assert!(
                matches!(parsed, Parsed::NotOurs),
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(&rest[..], raw, "hyper gets every byte");
        }
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x").0,
            Parsed::Partial
        ));
    }

    fn head_of(
        status: u16,
        headers: &[(&str, &str)],
        length: Length,
        is_head: bool,
        keep_alive: bool,
    ) -> (String, Framing, bool) {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let (parts, ()) = response.into_parts();
        let mut out = Vec::new();
        let (framing, keep_alive) =
            encode_head(&mut out, &parts, length, is_head, keep_alive).unwrap();
        (String::from_utf8(out).unwrap(), framing, keep_alive)
    }

    #[test]
    fn response_heads_are_framed_as_hyper_frames_them() {
        let date = ("date", "Thu, 01 Jan 2026 00:00:00 GMT");
        let (head, framing, keep) = head_of(
            200,
            &[date, ("content-length", "5")],
            Length::Known(5),
            false,
            true,
        );
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!((framing, keep), (Framing::Length(5), true));

        let (head, framing, _) = head_of(404, &[date], Length::Unknown, false, true);
        assert_eq!(head, "HTTP/1.1 404 Not Found\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(framing, Framing::Chunked);

        let (head, framing, _) = head_of(200, &[date], Length::Known(3), false, true);
        assert!(head.ends_with("content-length: 3\r\n\r\n"), "{head}");
        assert_eq!(framing, Framing::Length(3));

        // HEAD keeps the length it is told and sends nothing.
        let (head, framing, _) = head_of(
            200,
            &[date, ("content-length", "9")],
            Length::None,
            true,
            true,
        );
        assert!(head.contains("content-length: 9\r\n"), "{head}");
        assert_eq!(framing, Framing::Length(0));

        let (head, framing, _) = head_of(204, &[date], Length::None, false, true);
        assert_eq!(
            head,
            "HTTP/1.1 204 No Content\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n"
        );
        assert_eq!(framing, Framing::Length(0));

        let (head, _, _) = head_of(200, &[date], Length::None, false, true);
        assert!(head.ends_with("content-length: 0\r\n\r\n"), "{head}");

        let (head, _, keep) = head_of(200, &[date], Length::None, false, false);
        assert!(head.contains("connection: close\r\n"), "{head}");
        assert!(!keep);

        let (head, _, keep) = head_of(
            426,
            &[date, ("connection", "Upgrade")],
            Length::None,
            false,
            true,
        );
        assert!(
            head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
            "{head}"
        );
        assert!(keep);

        let (head, _, _) = head_of(200, &[], Length::None, false, true);
        assert!(
            head.contains("\r\ndate: ") && head.ends_with(" GMT\r\n\r\n"),
            "{head}"
        );
        assert_eq!(hex(255, &mut [0; 16]), b"FF");
    }
}
