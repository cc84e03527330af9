//! What every subcommand shares: options, connecting (ws:// and wss://),
//! JSON lines on stdout, CPU snapshots of a process from /proc, and a
//! latency histogram.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{client_async_with_config, WebSocketStream};

pub type Ws = WebSocketStream<Stream>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `--name value` options; every subcommand reads the ones it knows.
pub struct Opts {
  values: HashMap<String, String>,
}

impl Opts {
  pub fn parse(args: &[String]) -> Result<Opts, BoxError> {
    let mut values = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
      let Some(name) = arg.strip_prefix("--") else {
        return Err(format!("unexpected argument {arg:?}").into());
      };
      let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
      values.insert(name.to_string(), value.clone());
    }
    Ok(Opts { values })
  }

  pub fn str(&self, name: &str, default: &str) -> String {
    self.values.get(name).cloned().unwrap_or_else(|| default.to_string())
  }

  pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, BoxError> {
    match self.values.get(name) {
      None => Ok(default),
      Some(v) => v.parse().map_err(|_| format!("--{name}: not a number: {v:?}").into()),
    }
  }

  pub fn secs(&self, name: &str, default: f64) -> Result<Duration, BoxError> {
    Ok(Duration::from_secs_f64(self.num(name, default)?))
  }

  /// The process whose CPU time is reported as the server's, if any.
  pub fn cpu_pid(&self) -> Result<Option<u32>, BoxError> {
    match self.values.get("cpu-pid") {
      None => Ok(None),
      Some(v) => Ok(Some(v.parse().map_err(|_| format!("--cpu-pid: {v:?}"))?)),
    }
  }
}

/// Prints one JSON object per line and flushes, so the runner sees it now.
pub fn emit(json: &str) {
  let stdout = std::io::stdout();
  let mut out = stdout.lock();
  let _ = writeln!(out, "{json}");
  let _ = out.flush();
}

pub fn emit_event(event: &str) {
  emit(&format!("{{\"event\":\"{event}\"}}"));
}

/// A JSON object built field by field (numbers and plain strings only).
pub struct JsonObj(String);

impl JsonObj {
  pub fn new(event: &str) -> JsonObj {
    JsonObj(format!("{{\"event\":\"{event}\""))
  }
  pub fn num(mut self, key: &str, value: impl std::fmt::Display) -> JsonObj {
    let _ = write!(self.0, ",\"{key}\":{value}");
    self
  }
  pub fn float(mut self, key: &str, value: f64) -> JsonObj {
    if value.is_finite() {
      let _ = write!(self.0, ",\"{key}\":{value:.3}");
    } else {
      let _ = write!(self.0, ",\"{key}\":null");
    }
    self
  }
  /// A plain string: no escaping.
  pub fn str(mut self, key: &str, value: &str) -> JsonObj {
    let _ = write!(self.0, ",\"{key}\":\"{value}\"");
    self
  }
  /// `"tls"`: what TLS negotiated, when a connection was wss://.
  pub fn tls(self) -> JsonObj {
    match tls_negotiated() {
      Some(tls) => self.str("tls", &tls),
      None => self,
    }
  }
  /// The CPU use of a measured window of `secs` seconds: the server's, the
  /// load generator's and other processes' (what the runner checks to
  /// tell a busy machine).
  pub fn cpu_use(
    self,
    window: &CpuWindow,
    server: &CpuDelta,
    own: &CpuDelta,
    secs: f64,
  ) -> JsonObj {
    self
      .cpu("server", server)
      .cpu("loadgen", own)
      .float("others_cpu_pct", window.others_ms(server, own) as f64 / 10.0 / secs)
      .float("server_cpu_pct", server.ns as f64 / 1e7 / secs)
      .float("loadgen_cpu_pct", own.ns as f64 / 1e7 / secs)
  }
  fn cpu(self, prefix: &str, delta: &CpuDelta) -> JsonObj {
    self
      .num(&format!("{prefix}_cpu_ns"), delta.ns)
      .num(&format!("{prefix}_user_ms"), delta.user_ms)
      .num(&format!("{prefix}_sys_ms"), delta.sys_ms)
  }
  pub fn emit(self) {
    emit(&format!("{}}}", self.0));
  }
}

/// CPU time of a process: the precise total from the per-thread schedstat
/// (nanoseconds on CPU, user and system), and user/system split from
/// /proc/PID/stat (clock ticks, 100 per second on Linux).
#[derive(Clone, Copy, Default)]
pub struct CpuSnapshot {
  ns: u64,
  user_ticks: u64,
  sys_ticks: u64,
}

#[derive(Clone, Copy, Default)]
pub struct CpuDelta {
  pub ns: u64,
  pub user_ms: u64,
  pub sys_ms: u64,
}

const MS_PER_TICK: u64 = 10;

pub fn cpu_snapshot(pid: u32) -> CpuSnapshot {
  let mut snap = CpuSnapshot::default();
  if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
    // Fields after the command name, which is in parentheses.
    if let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) {
      let fields: Vec<&str> = rest.split_whitespace().collect();
      // utime and stime are fields 14 and 15 of the whole line: 12 and 13
      // after the state field at index 0 here.
      snap.user_ticks = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
      snap.sys_ticks = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    }
  }
  let mut ns = 0u64;
  let mut found = false;
  if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
    for task in tasks.flatten() {
      let path = task.path().join("schedstat");
      if let Ok(text) = std::fs::read_to_string(path) {
        if let Some(first) = text.split_whitespace().next().and_then(|f| f.parse::<u64>().ok()) {
          ns += first;
          found = true;
        }
      }
    }
  }
  snap.ns = if found { ns } else { (snap.user_ticks + snap.sys_ticks) * MS_PER_TICK * 1_000_000 };
  snap
}

impl CpuSnapshot {
  pub fn until(&self, later: &CpuSnapshot) -> CpuDelta {
    CpuDelta {
      ns: later.ns.saturating_sub(self.ns),
      user_ms: later.user_ticks.saturating_sub(self.user_ticks) * MS_PER_TICK,
      sys_ms: later.sys_ticks.saturating_sub(self.sys_ticks) * MS_PER_TICK,
    }
  }
}

/// Busy time of the whole machine, all cores, in milliseconds (/proc/stat:
/// user, nice, system, irq, softirq, steal).
pub fn machine_busy_ms() -> u64 {
  let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
  let Some(line) = stat.lines().next() else { return 0 };
  let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
  let get = |i: usize| f.get(i).copied().unwrap_or(0);
  (get(0) + get(1) + get(2) + get(5) + get(6) + get(7)) * MS_PER_TICK
}

/// The phases of a measured run, which its tasks read so as to count only
/// inside the window.
pub const WARMUP: u8 = 0;
pub const MEASURE: u8 = 1;
pub const DONE: u8 = 2;

/// A measured window: the CPU taken in it and how long it lasted.
pub struct Measured {
  pub cpu: CpuWindow,
  pub server_cpu: CpuDelta,
  pub own_cpu: CpuDelta,
  pub elapsed: f64,
}

/// Lets the run warm up for `warmup`, then measures it for `duration`:
/// `phase` is MEASURE inside the window (announced by the "start" and
/// "stop" events) and DONE after it.
pub async fn measure_window(
  phase: &AtomicU8,
  warmup: Duration,
  duration: Duration,
  cpu_pid: Option<u32>,
) -> Measured {
  tokio::time::sleep(warmup).await;
  let cpu = CpuWindow::start(cpu_pid);
  phase.store(MEASURE, Ordering::SeqCst);
  let started = Instant::now();
  emit_event("start");
  tokio::time::sleep_until((started + duration).into()).await;
  phase.store(DONE, Ordering::SeqCst);
  let (server_cpu, own_cpu) = cpu.stop();
  let elapsed = started.elapsed().as_secs_f64();
  emit_event("stop");
  Measured { cpu, server_cpu, own_cpu, elapsed }
}

/// CPU of the server (`--cpu-pid`, if given) and of this process together.
pub struct CpuWindow {
  server_pid: Option<u32>,
  server: CpuSnapshot,
  own: CpuSnapshot,
  busy_ms: u64,
}

impl CpuWindow {
  pub fn start(server_pid: Option<u32>) -> CpuWindow {
    CpuWindow {
      server_pid,
      server: server_pid.map(cpu_snapshot).unwrap_or_default(),
      own: cpu_snapshot(std::process::id()),
      busy_ms: machine_busy_ms(),
    }
  }

  /// (server, own) CPU used since `start`.
  pub fn stop(&self) -> (CpuDelta, CpuDelta) {
    let server = match self.server_pid {
      Some(pid) => self.server.until(&cpu_snapshot(pid)),
      None => CpuDelta::default(),
    };
    (server, self.own.until(&cpu_snapshot(std::process::id())))
  }

  /// CPU time, in ms, that the machine spent on anything but the server and
  /// this process since `start` (10 ms resolution): other processes and
  /// interrupts not charged to either.
  pub fn others_ms(&self, server: &CpuDelta, own: &CpuDelta) -> i64 {
    let busy = machine_busy_ms().saturating_sub(self.busy_ms) as i64;
    busy - (server.ns / 1_000_000) as i64 - (own.ns / 1_000_000) as i64
  }
}

/// A client's transport: plain TCP (`ws://`) or TLS over it (`wss://`).
pub enum Stream {
  Plain(TcpStream),
  Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
  fn poll_read(
    self: Pin<&mut Self>,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
  ) -> Poll<std::io::Result<()>> {
    match self.get_mut() {
      Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
      Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
    }
  }
}

impl AsyncWrite for Stream {
  fn poll_write(
    self: Pin<&mut Self>,
    cx: &mut Context<'_>,
    buf: &[u8],
  ) -> Poll<std::io::Result<usize>> {
    match self.get_mut() {
      Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
      Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
    }
  }
  fn poll_write_vectored(
    self: Pin<&mut Self>,
    cx: &mut Context<'_>,
    bufs: &[std::io::IoSlice<'_>],
  ) -> Poll<std::io::Result<usize>> {
    match self.get_mut() {
      Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
      Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
    }
  }
  fn is_write_vectored(&self) -> bool {
    match self {
      Stream::Plain(s) => s.is_write_vectored(),
      Stream::Tls(s) => s.is_write_vectored(),
    }
  }
  fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
    match self.get_mut() {
      Stream::Plain(s) => Pin::new(s).poll_flush(cx),
      Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
    }
  }
  fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
    match self.get_mut() {
      Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
      Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
    }
  }
}

/// The client TLS settings of `--ca FILE` (set once, by `init_tls`).
static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
/// What the first TLS connection negotiated: "TLSv1_3 TLS13_AES_128_GCM_SHA256 X25519".
static NEGOTIATED: Mutex<Option<String>> = Mutex::new(None);

/// `--ca FILE` (PEM: the certificate(s) to trust, the only roots),
/// `--tls-cipher NAME` (the one cipher suite offered, rustls's name;
/// TLS13_AES_128_GCM_SHA256 by default, what browsers prefer with AES in
/// hardware) and `--tls-group NAME` (the one key exchange offered: X25519 by
/// default, as browsers; rustls 0.23.48's ring provider puts secp384r1
/// first), so that every server runs the same; `any`: rustls's defaults.
/// Sessions are never resumed: every connection makes a full handshake.
pub fn init_tls(opts: &Opts) -> Result<(), BoxError> {
  use rustls::pki_types::pem::PemObject;
  use rustls::pki_types::CertificateDer;
  let Some(ca) = opts.values.get("ca") else { return Ok(()) };
  let mut roots = rustls::RootCertStore::empty();
  for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("--ca {ca}: {e}"))? {
    roots.add(cert.map_err(|e| format!("--ca {ca}: {e}"))?)?;
  }
  if roots.is_empty() {
    return Err(format!("--ca {ca}: no certificate").into());
  }
  // ring, the provider the Server used when these figures began (it now
  // uses aws-lc-rs): the client's cost per handshake and per byte stays
  // what earlier runs measured, and it is the same for every server.
  #[allow(deprecated)]
  let mut provider = rustls::crypto::ring::default_provider();
  let cipher = opts.str("tls-cipher", "TLS13_AES_128_GCM_SHA256");
  if cipher != "any" {
    provider.cipher_suites.retain(|s| format!("{:?}", s.suite()) == cipher);
    if provider.cipher_suites.is_empty() {
      return Err(format!("--tls-cipher {cipher}: not a cipher suite of rustls (ring)").into());
    }
  }
  let group = opts.str("tls-group", "X25519");
  if group != "any" {
    provider.kx_groups.retain(|g| format!("{:?}", g.name()) == group);
    if provider.kx_groups.is_empty() {
      return Err(format!("--tls-group {group}: not a key exchange group of rustls (ring)").into());
    }
  }
  let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
  config.resumption = rustls::client::Resumption::disabled();
  let _ = TLS.set(Arc::new(config));
  Ok(())
}

/// What TLS negotiated, once a wss:// connection was made.
pub fn tls_negotiated() -> Option<String> {
  NEGOTIATED.lock().unwrap().clone()
}

/// The parts of `ws://host:port/path` or `wss://...` that connecting needs.
struct Target<'a> {
  tls: bool,
  host: &'a str,
  host_port: &'a str,
}

fn target(url: &str) -> Result<Target<'_>, BoxError> {
  let (tls, rest) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
    (Some(rest), _) => (false, rest),
    (_, Some(rest)) => (true, rest),
    _ => return Err(format!("not a ws:// or wss:// URL: {url}").into()),
  };
  let host_port = rest.split('/').next().unwrap_or(rest);
  let host = match host_port.strip_prefix('[') {
    Some(v6) => v6.split(']').next().unwrap_or(v6),
    None => host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
  };
  Ok(Target { tls, host, host_port })
}

/// Connects one WebSocket client to `url` (`ws://host:port/path` or
/// `wss://...`, which needs `--ca`).
pub async fn connect(url: &str, config: WebSocketConfig) -> Result<Ws, BoxError> {
  connect_from(url, config, None).await
}

/// As `connect`, from the source address `source` when given (its port
/// chosen at connect time, IP_BIND_ADDRESS_NO_PORT, so that a port is
/// unique per destination rather than per source address).
pub async fn connect_from(
  url: &str,
  config: WebSocketConfig,
  source: Option<Ipv4Addr>,
) -> Result<Ws, BoxError> {
  let target = target(url)?;
  let tcp = match source {
    None => TcpStream::connect(target.host_port).await?,
    Some(ip) => {
      let addr: SocketAddr = tokio::net::lookup_host(target.host_port)
        .await?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{}: no IPv4 address", target.host_port))?;
      let socket = TcpSocket::new_v4()?;
      bind_address_no_port(&socket)?;
      socket.bind(SocketAddr::new(ip.into(), 0)).map_err(|e| format!("bind {ip}: {e}"))?;
      socket.connect(addr).await?
    }
  };
  tcp.set_nodelay(true)?;
  let stream = if target.tls {
    let config = TLS.get().ok_or("a wss:// URL needs --ca FILE (the certificate to trust)")?;
    let name = rustls::pki_types::ServerName::try_from(target.host.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await?;
    let mut negotiated = NEGOTIATED.lock().unwrap();
    if negotiated.is_none() {
      let (_, conn) = tls.get_ref();
      *negotiated = Some(format!(
        "{:?} {:?} {:?}",
        conn.protocol_version().ok_or("no TLS version")?,
        conn.negotiated_cipher_suite().ok_or("no cipher suite")?.suite(),
        conn.negotiated_key_exchange_group().ok_or("no key exchange")?.name()
      ));
    }
    Stream::Tls(Box::new(tls))
  } else {
    Stream::Plain(tcp)
  };
  let (ws, _response) = client_async_with_config(url, stream, Some(config)).await?;
  Ok(ws)
}

fn bind_address_no_port(socket: &TcpSocket) -> std::io::Result<()> {
  use std::os::fd::AsRawFd;
  let one: libc::c_int = 1;
  // SAFETY: a valid socket fd and a c_int option of the right size.
  let rc = unsafe {
    libc::setsockopt(
      socket.as_raw_fd(),
      libc::IPPROTO_IP,
      libc::IP_BIND_ADDRESS_NO_PORT,
      (&one as *const libc::c_int).cast(),
      std::mem::size_of::<libc::c_int>() as libc::socklen_t,
    )
  };
  if rc == 0 {
    Ok(())
  } else {
    Err(std::io::Error::last_os_error())
  }
}

/// Small buffers for many connections with small messages: tungstenite
/// allocates its read buffer up front (128 KiB by default).
pub fn small_config() -> WebSocketConfig {
  WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(16 * 1024)
}

/// Connects `count` clients, at most `parallel` handshakes at a time, in
/// order. Fails on the first error.
pub async fn connect_many(
  url: &str,
  count: usize,
  parallel: usize,
  config: WebSocketConfig,
) -> Result<Vec<Ws>, BoxError> {
  open_many(count, parallel, || connect(url, config)).await
}

/// `count` results of `open`, at most `parallel` pending at a time, in
/// order. Fails on the first error.
pub async fn open_many<T, F, Fut>(
  count: usize,
  parallel: usize,
  open: F,
) -> Result<Vec<T>, BoxError>
where
  F: Fn() -> Fut,
  Fut: std::future::Future<Output = Result<T, BoxError>>,
{
  use futures_util::StreamExt;
  let mut out = Vec::with_capacity(count);
  let mut pending = futures_util::stream::FuturesOrdered::new();
  let mut started = 0;
  while out.len() < count {
    while started < count && pending.len() < parallel {
      pending.push_back(open());
      started += 1;
    }
    match pending.next().await {
      Some(Ok(ws)) => out.push(ws),
      Some(Err(e)) => return Err(format!("connection {} failed: {e}", out.len() + 1).into()),
      None => break,
    }
  }
  Ok(out)
}

/// Watches stdin on a thread: a line `stop` (or EOF) notifies `stop`; with
/// `exit_on_eof`, EOF ends the process, so a loadgen whose runner died never
/// lingers.
pub struct Stdin {
  pub stop: Arc<Notify>,
}

pub fn watch_stdin(exit_on_eof: bool) -> Stdin {
  let stop = Arc::new(Notify::new());
  let stop2 = stop.clone();
  std::thread::spawn(move || {
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let mut line = String::new();
    loop {
      line.clear();
      match stdin.read_line(&mut line) {
        Ok(0) => break,
        Ok(_) if line.trim() == "stop" => stop2.notify_one(),
        Ok(_) => {}
        // A pipe shared with a Node process may have been made
        // non-blocking by it.
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
          std::thread::sleep(Duration::from_millis(50));
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(_) => break,
      }
    }
    if exit_on_eof {
      std::process::exit(3);
    }
    stop2.notify_one();
  });
  Stdin { stop }
}

/// A log-linear histogram of microseconds: exact below 256, then 128
/// sub-buckets per power of two (under 0.8% error).
pub struct Histogram {
  buckets: Vec<u64>,
  count: u64,
  max: u64,
}

const LINEAR: u64 = 256;
const SUB: u64 = 128;

impl Histogram {
  pub fn new() -> Histogram {
    Histogram { buckets: vec![0; (LINEAR + 56 * SUB) as usize], count: 0, max: 0 }
  }

  fn index(v: u64) -> usize {
    if v < LINEAR {
      return v as usize;
    }
    let bits = 64 - v.leading_zeros() as u64; // >= 9
    let shift = bits - 8;
    let top = v >> shift; // 128..=255
    (LINEAR + (shift - 1) * SUB + (top - SUB)) as usize
  }

  /// The middle of bucket `i`.
  fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
      return i;
    }
    let shift = (i - LINEAR) / SUB + 1;
    let top = (i - LINEAR) % SUB + SUB;
    (top << shift) + (1 << (shift - 1))
  }

  pub fn record(&mut self, v: u64) {
    self.buckets[Self::index(v)] += 1;
    self.count += 1;
    self.max = self.max.max(v);
  }

  pub fn merge(&mut self, other: &Histogram) {
    for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
      *a += b;
    }
    self.count += other.count;
    self.max = self.max.max(other.max);
  }

  pub fn count(&self) -> u64 {
    self.count
  }

  pub fn percentile(&self, p: f64) -> u64 {
    if self.count == 0 {
      return 0;
    }
    let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in self.buckets.iter().enumerate() {
      seen += n;
      if seen >= rank {
        return Self::value(i).min(self.max);
      }
    }
    self.max
  }

  pub fn max(&self) -> u64 {
    self.max
  }
}

/// The number after `"key":` in a small JSON text, without parsing it all.
pub fn json_number(text: &[u8], key: &[u8]) -> Option<u64> {
  let pos = text.windows(key.len()).position(|w| w == key)?;
  let mut n: u64 = 0;
  let mut digits = 0;
  for &b in &text[pos + key.len()..] {
    if b.is_ascii_digit() {
      n = n * 10 + (b - b'0') as u64;
      digits += 1;
    } else if digits > 0 || b != b' ' {
      break;
    }
  }
  (digits > 0).then_some(n)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn histogram_buckets_round_trip() {
    for v in [0u64, 1, 255, 256, 257, 1000, 12345, 1 << 20, 123_456_789] {
      let i = Histogram::index(v);
      let mid = Histogram::value(i);
      let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
      assert!(err < 0.01, "{v} -> {mid}");
    }
  }

  #[test]
  fn parses_urls() {
    let t = target("wss://127.0.0.1:8443/x").unwrap();
    assert!(t.tls);
    assert_eq!((t.host, t.host_port), ("127.0.0.1", "127.0.0.1:8443"));
    let t = target("ws://localhost:80").unwrap();
    assert!(!t.tls);
    assert_eq!((t.host, t.host_port), ("localhost", "localhost:80"));
    assert_eq!(target("wss://[::1]:9/").unwrap().host, "::1");
    assert!(target("http://x").is_err());
  }

  #[test]
  fn finds_numbers() {
    assert_eq!(json_number(br#"{"type":"ping","seq":123,"t":9}"#, b"\"seq\":"), Some(123));
    assert_eq!(json_number(br#"{"seq": 7}"#, b"\"seq\":"), Some(7));
    assert_eq!(json_number(br#"{"x":1}"#, b"\"seq\":"), None);
  }
}
