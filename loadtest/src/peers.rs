//! The processes a benchmark runs side by side: the fixed upstream, nginx and HAProxy from
//! Debian's packages configured like the edge (one worker, keep-alive to the upstream), and the
//! `tollgate edge` binary itself, fed through a real NATS server. Each runs as its own process so
//! that its CPU time and peak memory can be read from `/proc`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// A child process, killed when dropped.
pub struct Peer {
    pub name: &'static str,
    pub child: Child,
    /// Plain HTTP (HTTP/1.1 and h2c where the peer offers it).
    pub addr: SocketAddr,
    /// h2c when the peer needs a listener of its own for it.
    pub h2c_addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub status_addr: Option<SocketAddr>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // nginx's workers outlive a killed master: stop the whole tree.
        let others: Vec<String> = process_tree(self.child.id())
            .into_iter()
            .skip(1)
            .map(|pid| pid.to_string())
            .collect();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !others.is_empty() {
            let _ = Command::new("kill").arg("-9").args(&others).status();
        }
    }
}

impl Peer {
    /// User plus system CPU time of the process and its children so far.
    pub fn cpu_time(&self) -> Duration {
        process_tree(self.child.id())
            .iter()
            .map(|pid| cpu_of(*pid))
            .sum()
    }

    /// Peak resident memory (`VmHWM`) of the process and its children, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        process_tree(self.child.id())
            .iter()
            .filter_map(|pid| status_field(*pid, "VmHWM:"))
            .sum()
    }
}

/// A free port on 127.0.0.1 for a peer to listen on, below Linux's ephemeral range (32768 and
/// up): a port the kernel hands out (`:0`) can be taken by one of the benchmark's own outgoing
/// connections before the peer binds it, which once stopped a run with "Address already in use".
/// Ports are tried in turn from a start that differs per process.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..COUNT {
        let offset = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = u16::try_from(FIRST + offset)?;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return Ok(listener.local_addr()?);
        }
    }
    anyhow::bail!(
        "no free port on 127.0.0.1 between {FIRST} and {}",
        FIRST + COUNT
    )
}

/// Waits until `addr` accepts connections.
pub fn wait_listening(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{what} did not start listening on {addr} within 20 s")
}

fn require(binary: &str, package: &str) -> anyhow::Result<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(binary);
        if path.exists() {
            return Ok(path);
        }
    }
    bail!("{binary} not found: install Debian's `{package}` package (apt-get install {package})")
}

/// The benchmark's upstream: this binary's own `upstream` mode (1 KiB body, keep-alive).
pub fn upstream(threads: usize) -> anyhow::Result<Peer> {
    let addr = free_addr()?;
    let child = Command::new(std::env::current_exe()?)
        .args([
            "upstream",
            "--listen",
            &addr.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .context("starting the upstream")?;
    let peer = Peer {
        name: "upstream",
        child,
        addr,
        h2c_addr: addr,
        tls_addr: None,
        status_addr: None,
    };
    wait_listening(addr, "the upstream")?;
    Ok(peer)
}

/// What a peer adds to the requests and answers it proxies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    /// What the edge adds, as Kong does: upstream, `X-Forwarded-For/Proto/Host/Port/Path`,
    /// `X-Real-IP`, `Via` and a generated `X-Request-Id`; to the client, `Via`, the same
    /// `X-Request-Id` and two latency headers. Each peer is configured to do the same work.
    LikeTheEdge,
    /// nginx's usual reverse-proxy set only (`Host`, `X-Forwarded-For`, `X-Forwarded-Proto`):
    /// a reference for what the header work costs.
    ForwardingOnly,
}

/// nginx's directives for [`Headers::LikeTheEdge`], beside the `Host` and `X-Forwarded-For/Proto`
/// every nginx peer sets. nginx has no proxy-latency figure of its own: `$upstream_connect_time`
/// stands in for it (a value of the same size, made per request).
const NGINX_LIKE_THE_EDGE: &str = r#"  proxy_set_header X-Real-IP $remote_addr;
  proxy_set_header X-Forwarded-Host $host;
  proxy_set_header X-Forwarded-Port $server_port;
  proxy_set_header X-Forwarded-Path $uri;
  proxy_set_header Via "1.1 nginx";
  proxy_set_header X-Request-Id $request_id;
  add_header Via "1.1 nginx" always;
  add_header X-Request-Id $request_id always;
  add_header X-Proxy-Latency $upstream_connect_time always;
  add_header X-Upstream-Latency $upstream_header_time always;
"#;

/// nginx as a reverse proxy: `workers` worker processes, keep-alive pool to the upstream, no
/// access log (the edge keeps none yet either), HTTP/2 on the TLS listener and h2c on its own
/// port (nginx cannot offer both on one plain port).
pub fn nginx(
    dir: &Path,
    upstream: SocketAddr,
    workers: usize,
    cert: &Path,
    key: &Path,
    locations: &[String],
    headers: Headers,
) -> anyhow::Result<Peer> {
    let binary = require("nginx", "nginx")?;
    let (addr, h2c_addr, tls_addr) = (free_addr()?, free_addr()?, free_addr()?);
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let mut routes = String::new();
    for location in locations {
        routes.push_str(&format!(
            "    location {location} {{ proxy_pass http://backend; }}\n"
        ));
    }
    let conf = format!(
        r#"worker_processes {workers};
error_log {err} error;
pid {pid};
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_requests 1000000;
  upstream backend {{ server {upstream}; keepalive 256; keepalive_requests 1000000; }}
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $host;
  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
  proxy_set_header X-Forwarded-Proto $scheme;
  proxy_buffering off;
{like_the_edge}  server {{
    listen {addr};
    listen {h2c_addr} http2;
    listen {tls_addr} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
{routes}  }}
}}
"#,
        err = prefix.join("logs/error.log").display(),
        pid = prefix.join("nginx.pid").display(),
        tmp = prefix.display(),
        cert = cert.display(),
        key = key.display(),
        like_the_edge = match headers {
            Headers::LikeTheEdge => NGINX_LIKE_THE_EDGE,
            Headers::ForwardingOnly => "",
        },
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new(binary)
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    let peer = Peer {
        name: match headers {
            Headers::LikeTheEdge => "nginx",
            Headers::ForwardingOnly => "nginx, forwarding headers only",
        },
        child,
        addr,
        h2c_addr,
        tls_addr: Some(tls_addr),
        status_addr: None,
    };
    wait_listening(addr, "nginx")?;
    wait_listening(tls_addr, "nginx (TLS)")?;
    Ok(peer)
}

/// HAProxy in HTTP mode: `threads` threads, connection reuse to the upstream, h2c and HTTP/1.1
/// on one plain port, ALPN on the TLS one, and the edge's headers ([`Headers::LikeTheEdge`]; the
/// latency headers carry HAProxy's `%Tc` and `%Tr`, as 2.6 has no fetch for them).
pub fn haproxy(
    dir: &Path,
    upstream: SocketAddr,
    threads: usize,
    cert_and_key: &Path,
) -> anyhow::Result<Peer> {
    let binary = require("haproxy", "haproxy")?;
    let (addr, h2c_addr, tls_addr) = (free_addr()?, free_addr()?, free_addr()?);
    let conf = format!(
        r#"global
  nbthread {threads}
  maxconn 8000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend plain
  bind {addr}
  default_backend upstream
frontend h2c
  bind {h2c_addr} proto h2
  default_backend upstream
frontend tls
  bind {tls_addr} ssl crt {pem} alpn h2,http/1.1
  default_backend upstream
backend upstream
  option forwardfor
  http-request set-var(txn.request_id) uuid(4),regsub(-,,g)
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto %[ssl_fc,iif(https,http)]
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Port %[dst_port]
  http-request set-header X-Forwarded-Path %[path]
  http-request set-header Via "1.1 haproxy"
  http-request set-header X-Request-Id %[var(txn.request_id)]
  http-response add-header Via "1.1 haproxy"
  http-response set-header X-Request-Id %[var(txn.request_id)]
  http-response set-header X-Proxy-Latency %Tc
  http-response set-header X-Upstream-Latency %Tr
  server u1 {upstream}
"#,
        pem = cert_and_key.display(),
    );
    let conf_path = dir.join("haproxy.cfg");
    std::fs::write(&conf_path, conf)?;
    let log = std::fs::File::create(dir.join("haproxy.log"))?;
    let child = Command::new(binary)
        .arg("-db")
        .arg("-f")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting haproxy")?;
    let peer = Peer {
        name: "HAProxy",
        child,
        addr,
        h2c_addr,
        tls_addr: Some(tls_addr),
        status_addr: None,
    };
    wait_listening(addr, "HAProxy")
        .with_context(|| format!("see {}", dir.join("haproxy.log").display()))?;
    Ok(peer)
}

/// How to start `tollgate edge`.
pub struct EdgeProcess<'a> {
    pub binary: &'a Path,
    pub data_dir: &'a Path,
    pub nats_url: &'a str,
    pub nats_prefix: &'a str,
    pub control_plane: uuid::Uuid,
    pub threads: usize,
    pub master_key_hex: &'a str,
    /// `--request-logs on|off`: log every request and publish the logs on NATS.
    pub request_logs: bool,
}

pub fn edge(options: &EdgeProcess<'_>) -> anyhow::Result<Peer> {
    let (addr, tls_addr, status_addr) = (free_addr()?, free_addr()?, free_addr()?);
    let child = Command::new(options.binary)
        .arg("--worker-threads")
        .arg(options.threads.to_string())
        .arg("edge")
        .args([
            "--nats-url",
            options.nats_url,
            "--nats-prefix",
            options.nats_prefix,
        ])
        .args(["--control-plane", &options.control_plane.to_string()])
        .args(["--proxy-listen", &addr.to_string()])
        .args(["--proxy-tls-listen", &tls_addr.to_string()])
        .args(["--status-listen", &status_addr.to_string()])
        .args([
            "--request-logs",
            if options.request_logs { "on" } else { "off" },
        ])
        .arg("--data-dir")
        .arg(options.data_dir)
        .env("TOLLGATE_MASTER_KEY", options.master_key_hex)
        .env("TOLLGATE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", options.binary.display()))?;
    let peer = Peer {
        name: "Tollgate edge",
        child,
        addr,
        h2c_addr: addr,
        tls_addr: Some(tls_addr),
        status_addr: Some(status_addr),
    };
    wait_listening(addr, "the edge")?;
    Ok(peer)
}

/// The `tollgate` binary built beside this one (`cargo build --release -p tollgate`).
pub fn tollgate_binary() -> anyhow::Result<PathBuf> {
    let here = std::env::current_exe()?;
    let dir = here
        .parent()
        .ok_or_else(|| anyhow!("no directory for {}", here.display()))?;
    let binary = dir.join("tollgate");
    if !binary.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p tollgate`",
            binary.display()
        );
    }
    Ok(binary)
}

/// The process and its descendants (nginx's workers run as children of its master).
fn process_tree(root: u32) -> Vec<u32> {
    let mut all = vec![root];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return all;
    };
    let pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        for pid in &pids {
            if parent_of(*pid) == Some(parent) && !all.contains(pid) {
                all.push(*pid);
            }
        }
        i += 1;
    }
    all
}

/// CPU time used so far by every process named `name` (as `/proc/PID/comm` says), such as the
/// local `nats-server` the edges publish their logs to; `None` when none runs.
pub fn cpu_time_of_named(name: &str) -> Option<Duration> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect();
    (!pids.is_empty()).then(|| pids.iter().map(|pid| cpu_of(*pid)).sum())
}

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after it.
    let after = text.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

fn cpu_of(pid: u32) -> Duration {
    let Some(fields) = stat_fields(pid) else {
        return Duration::ZERO;
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 1000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100)
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
