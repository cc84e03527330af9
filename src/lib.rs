//! The native half of mytosis-websocket: a WebSocket server and a reconnecting
//! client whose IO runs on one tokio runtime, exposed to `lib/*.js` through
//! napi-rs. Users never see these classes; the JS facade wraps them.

mod buffers;
mod client_transport;
mod connection_loop;
mod connection_task;
mod deflate;
#[cfg(test)]
mod differential_tests;
mod direct_frame;
#[cfg(dormancy)]
mod dormancy;
mod error;
mod events;
mod flow;
mod frame_boundaries;
mod handshake;
mod header_block;
mod heartbeat;
mod js_wake;
mod link;
mod server;
mod server_stream;
mod socket;
mod sync;
mod teardown;
mod tls;

/// One runtime for the whole process, with a single worker: the JS thread
/// takes the other core, and one worker measured as fast as two for echo
/// loads on a 2-core machine.
#[napi_derive::module_init]
fn init() {
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(1)
    .thread_name("mytosis-websocket")
    // Before sleeping, let the JS thread run if it is ready to, on this
    // core. The worker has usually just handed JS a batch; JS answering it
    // now means its sends find the worker still awake (a wake without a
    // system call) and the next batch is whole. When the two threads share
    // a core this measured about a third more client throughput; with a
    // core each it costs one cheap system call per sleep.
    .on_thread_park(std::thread::yield_now)
    .enable_all()
    .build();
  // If the runtime cannot be built here, napi-rs builds its default one on
  // first use, so the addon still works.
  if let Ok(runtime) = runtime {
    napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
  }
}
