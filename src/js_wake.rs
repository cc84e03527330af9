//! Waking the JS thread from IO threads, with a libuv async handle.
//!
//! Node's threadsafe function signals the JS thread while it holds its
//! queue's lock. When both threads share a core, the JS thread, once woken,
//! preempts the signalling thread and at once blocks on that lock: three
//! context switches and two futex calls for one handoff, the largest cost
//! left per connection in a connection storm. `uv_async_send` is an atomic
//! exchange and, unless a wake is already pending, one eventfd write; the
//! only lock it takes here is one the JS thread takes only to close. The JS
//! thread runs `on_wake` once for any number of wakes before it. What to
//! deliver is handed over by the caller (events/mod.rs).

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::{Arc, Mutex};

use napi::sys;

use crate::sync::lock;

// libuv, as the `node` binary exports it to addons.
extern "C" {
  fn uv_handle_size(kind: c_int) -> usize;
  fn uv_async_init(
    event_loop: *mut sys::uv_loop_s,
    handle: *mut c_void,
    on_wake: unsafe extern "C" fn(*mut c_void),
  ) -> c_int;
  fn uv_async_send(handle: *mut c_void) -> c_int;
  fn uv_close(handle: *mut c_void, on_closed: unsafe extern "C" fn(*mut c_void));
  fn uv_unref(handle: *mut c_void);
}

/// `UV_ASYNC` in libuv's `uv_handle_type`.
const UV_ASYNC: c_int = 1;

/// What runs on the JS thread after one or more wakes, inside a handle scope;
/// it returns whether to stay open for more.
pub type OnWake = Box<dyn FnMut(sys::napi_env) -> bool>;

/// The open handle's address; `None` once it closes, so that no wake reaches
/// a closed handle or a loop that is gone.
type Gate = Arc<Mutex<Option<HandleAddress>>>;

struct HandleAddress(*mut c_void);

// SAFETY: libuv allows `uv_async_send` from any thread; the address is only
// used for that, under the gate's lock, while the handle is open.
unsafe impl Send for HandleAddress {}

/// Wakes the JS thread. It never keeps the process alive.
pub struct JsWaker {
  gate: Gate,
}

impl JsWaker {
  /// Registers `on_wake` on the JS thread of `env`; call it there. It runs
  /// until it returns false or the environment tears down, then is dropped
  /// on the JS thread.
  pub fn start(env: sys::napi_env, on_wake: OnWake) -> napi::Result<JsWaker> {
    let mut event_loop = ptr::null_mut();
    // SAFETY: called on the JS thread with its env.
    let status = unsafe { sys::napi_get_uv_event_loop(env, &mut event_loop) };
    if status != sys::Status::napi_ok || event_loop.is_null() {
      return Err(napi::Error::from_reason("cannot reach the JS thread's event loop"));
    }
    // SAFETY: a libuv query with no preconditions.
    let words = unsafe { uv_handle_size(UV_ASYNC) }.div_ceil(size_of::<u64>());
    let gate = Gate::default();
    let listener = Box::into_raw(Box::new(Listener {
      env,
      handle: vec![0; words].into_boxed_slice(),
      gate: Arc::clone(&gate),
      on_wake: Some(on_wake),
      missed: false,
      closed: false,
    }));
    // SAFETY: `listener` stays allocated until libuv has closed its handle
    // (`free_listener`); every libuv and N-API call here is on the JS thread.
    unsafe {
      let handle = (*listener).handle.as_mut_ptr().cast::<c_void>();
      if uv_async_init(event_loop, handle, wake_on_js_thread) != 0 {
        drop(Box::from_raw(listener));
        return Err(napi::Error::from_reason("cannot register with the JS thread's event loop"));
      }
      // `data`, the first field of every libuv handle, is the user's.
      handle.cast::<*mut Listener>().write(listener);
      uv_unref(handle);
      // Without the hook, the handle would outlive a worker thread's loop,
      // which Node refuses (it aborts): close it now instead.
      if sys::napi_add_env_cleanup_hook(env, Some(on_teardown), listener.cast())
        != sys::Status::napi_ok
      {
        close(listener);
        return Err(napi::Error::from_reason("cannot watch the JS thread's teardown"));
      }
      *lock(&gate) = Some(HandleAddress(handle));
    }
    Ok(JsWaker { gate })
  }

  /// Has the JS thread run `on_wake` soon; false once it has closed.
  pub fn wake(&self) -> bool {
    match &*lock(&self.gate) {
      // SAFETY: the handle is open while the gate holds its address.
      Some(handle) => unsafe { uv_async_send(handle.0) == 0 },
      None => false,
    }
  }
}

/// What lives on the JS thread: the handle's memory and what it runs.
struct Listener {
  env: sys::napi_env,
  /// The `uv_async_t`, as large as libuv says; its `data` points here.
  handle: Box<[u64]>,
  gate: Gate,
  /// Taken out while it runs.
  on_wake: Option<OnWake>,
  /// A wake came while `on_wake` ran (JS spun the event loop inside it).
  missed: bool,
  closed: bool,
}

unsafe extern "C" fn wake_on_js_thread(handle: *mut c_void) {
  // SAFETY: libuv calls this on the JS thread for an open handle, whose
  // `data` is its live `Listener`.
  unsafe {
    let listener = handle.cast::<*mut Listener>().read();
    let env = (*listener).env;
    let Some(mut on_wake) = (*listener).on_wake.take() else {
      // libuv cleared its pending flag before calling: run again after.
      (*listener).missed = true;
      return;
    };
    let mut scope = ptr::null_mut();
    if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
      (*listener).on_wake = Some(on_wake);
      return;
    }
    let stay_open = on_wake(env);
    sys::napi_close_handle_scope(env, scope);
    if (*listener).closed {
      // The environment tore down while JS ran (Node 20 never does this
      // synchronously): what `on_wake` holds may no longer be released.
      std::mem::forget(on_wake);
      return;
    }
    (*listener).on_wake = Some(on_wake);
    if !stay_open {
      sys::napi_remove_env_cleanup_hook(env, Some(on_teardown), listener.cast());
      close(listener);
    } else if std::mem::take(&mut (*listener).missed) {
      uv_async_send(handle);
    }
  }
}

unsafe extern "C" fn on_teardown(listener: *mut c_void) {
  // SAFETY: registered with a live `Listener`, removed before it is freed.
  unsafe { close(listener.cast()) }
}

/// Stops wakes, drops `on_wake` while the environment still stands, and has
/// libuv close the handle and then free the listener.
unsafe fn close(listener: *mut Listener) {
  // SAFETY: on the JS thread, with a live, not yet closed `Listener`.
  unsafe {
    // After this, no `uv_async_send` is running or will run.
    lock(&(*listener).gate).take();
    (*listener).closed = true;
    (*listener).on_wake = None;
    uv_close((*listener).handle.as_mut_ptr().cast(), free_listener);
  }
}

unsafe extern "C" fn free_listener(handle: *mut c_void) {
  // SAFETY: libuv has closed the handle: nothing refers to it any more.
  unsafe { drop(Box::from_raw(handle.cast::<*mut Listener>().read())) }
}
