//! The benchmark's load generator (and, for the client scenario, a fast echo
//! server), on tokio-tungstenite with a single-threaded runtime: the runner
//! pins it to its own core.
//!
//! Every subcommand prints JSON lines on stdout: progress events
//! (`{"event":"ready"}`, `{"event":"start"}`, `{"event":"stop"}`) and one
//! `{"event":"result", ...}` at the end. Errors go to stderr and end the
//! process with a non-zero status. See bench/README.md.

mod big;
mod client_echo;
mod common;
mod connrate;
mod deflate_client;
mod echo;
mod echo_deflate;
mod fanout;
mod fanout_deflate;
mod graph_update;
mod idle;
mod idle_deflate;

use common::{BoxError, Opts};

const USAGE: &str = "\
usage: loadgen <subcommand> [--option value ...]

  echo         --url U --connections 100 --inflight 16 --warmup 1 --duration 10 [--cpu-pid P]
  fanout       --url U --receivers 1000 --messages 2000 [--cpu-pid P]
               [--url U1,U2 (receivers spread over them)] [--sender-url U] [--latency 1] [--rate N]
               [--more-cpu-pids P,P] [--protocol ws|socketio]
  idle         --url U --connections 10000 [--parallel 200]   (holds them until `stop` on stdin)
  big          --url U --connections 1 --inflight 2 --size 1048576 --warmup 1 --duration 5 [--cpu-pid P]
  echo-deflate, fanout-deflate, idle-deflate: echo, fanout and idle with
               permessage-deflate and ~2 KB JSON graph updates, same options
  connrate     --url U --concurrency 50 --warmup 1 --duration 10 [--cpu-pid P]
               [--sources 127.0.0.2-9 | A,B,... | none] [--conn-timeout 10]
               (connect, upgrade, one JSON echo, close; connections/s)
  client-echo  [--port 0] [--host 127.0.0.1]                    (an echo server; ends on stdin EOF)

wss:// URLs: --ca FILE (PEM, the certificate to trust) [--tls-cipher NAME
  (TLS13_AES_128_GCM_SHA256)] [--tls-group NAME (X25519)] (`any`: rustls's
  defaults); no session resumption: a full handshake per connection.

Common: --timeout SECONDS (default 120): give up and exit 2.";

fn main() {
  let args: Vec<String> = std::env::args().skip(1).collect();
  let Some(cmd) = args.first().cloned() else {
    eprintln!("{USAGE}");
    std::process::exit(64);
  };
  if cmd == "-h" || cmd == "--help" || cmd == "help" {
    println!("{USAGE}");
    return;
  }
  let opts = match Opts::parse(&args[1..]) {
    Ok(o) => o,
    Err(e) => {
      eprintln!("loadgen: {e}\n{USAGE}");
      std::process::exit(64);
    }
  };

  // A watchdog: no scenario may hang the runner.
  let timeout = opts.num("timeout", 120.0f64).unwrap_or(120.0);
  let cmd2 = cmd.clone();
  std::thread::spawn(move || {
    std::thread::sleep(std::time::Duration::from_secs_f64(timeout));
    eprintln!("loadgen {cmd2}: timed out after {timeout} s");
    std::process::exit(2);
  });

  let runtime =
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
  let result: Result<(), BoxError> = runtime.block_on(async {
    common::init_tls(&opts)?;
    match cmd.as_str() {
      "echo" => echo::run(&opts).await,
      "fanout" => fanout::run(&opts).await,
      "idle" => idle::run(&opts).await,
      "big" => big::run(&opts).await,
      "client-echo" => client_echo::run(&opts).await,
      "connrate" => connrate::run(&opts).await,
      "echo-deflate" => echo_deflate::run(&opts).await,
      "fanout-deflate" => fanout_deflate::run(&opts).await,
      "idle-deflate" => idle_deflate::run(&opts).await,
      other => Err(format!("unknown subcommand {other:?}\n{USAGE}").into()),
    }
  });
  if let Err(e) = result {
    eprintln!("loadgen {cmd}: {e}");
    std::process::exit(1);
  }
  // Do not wait for tasks still holding connections.
  std::process::exit(0);
}
