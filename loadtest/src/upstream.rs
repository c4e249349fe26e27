//! The benchmarks' fixed upstream: answers every request with the same 1 KiB body over
//! keep-alive HTTP/1.1 (and h2c), as cheaply as hyper allows, so that differences between peers
//! are the peers'.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

const BODY: [u8; 1024] = [b'x'; 1024];

/// `upstream --listen ADDR --threads N`, as the benchmark starts it.
pub fn serve_from_args(args: Vec<String>) -> anyhow::Result<()> {
    let mut listen: Option<SocketAddr> = None;
    let mut threads = 1;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = Some(args.next().context("--listen ADDR")?.parse()?),
            "--threads" => threads = args.next().context("--threads N")?.parse()?,
            other => bail!("upstream: unknown argument '{other}'"),
        }
    }
    let listen = listen.context("upstream: --listen ADDR is required")?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(serve(listen))
}

async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let body = Bytes::from_static(&BODY);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request| {
                let body = body.clone();
                async move {
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(http::header::CONTENT_TYPE, "text/plain")
                        .body(Full::new(body))
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
