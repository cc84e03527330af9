//! The JS thread's side of event delivery: it takes the batch the
//! dispatcher task handed over (see `deliver` in the parent module) and calls
//! the JS dispatcher with it, then gives the batch's bytes back to the
//! receive buffers.

use std::ptr;
use std::sync::Arc;

use napi::bindgen_prelude::{Buffer, ToNapiValue, Uint32Array};
use napi::{check_status, sys, JsError};

use super::{Batch, EventQueue, Events, Handoff, JoinedTexts};
use crate::sync::lock;

/// The JS dispatcher, called on the JS thread with what the dispatcher task
/// handed over. Dropped there, when the last batch is delivered or the
/// environment tears down.
pub(super) struct Dispatcher {
  env: sys::napi_env,
  function: sys::napi_ref,
  /// Calls go through `napi_make_callback` in this async context, so that
  /// the microtasks and `process.nextTick` callbacks JS queued run after.
  context: sys::napi_async_context,
  queue: Arc<EventQueue>,
}

impl Dispatcher {
  pub(super) fn new(
    env: sys::napi_env,
    function: sys::napi_value,
    queue: Arc<EventQueue>,
  ) -> napi::Result<Dispatcher> {
    let name = "mytosis-websocket events";
    let mut reference = ptr::null_mut();
    let mut resource_name = ptr::null_mut();
    let mut context = ptr::null_mut();
    // SAFETY: on the JS thread with its env; `function` is a live value of
    // the current scope.
    let created = unsafe {
      sys::napi_create_reference(env, function, 1, &mut reference) == sys::Status::napi_ok
        && sys::napi_create_string_utf8(
          env,
          name.as_ptr().cast(),
          name.len() as isize,
          &mut resource_name,
        ) == sys::Status::napi_ok
        && sys::napi_async_init(env, ptr::null_mut(), resource_name, &mut context)
          == sys::Status::napi_ok
    };
    // Made before the check, so that its drop releases what was created.
    let dispatcher = Dispatcher { env, function: reference, context, queue };
    if !created {
      return Err(napi::Error::from_reason("cannot keep the events callback"));
    }
    Ok(dispatcher)
  }

  /// Delivers the handoff, if any; false once the last one is delivered.
  pub(super) fn dispatch(&mut self, env: sys::napi_env) -> bool {
    let Handoff { batch, last } = std::mem::take(&mut *lock(&self.queue.handoff));
    if let Some(Batch { events, held }) = batch {
      self.queue.taken.notify_one();
      self.call(env, events);
      for (receiver, len) in held {
        self.queue.flow.release(receiver.link(), len);
      }
    }
    !last
  }

  /// Calls the JS dispatcher with `(records, bytes, details, texts)`; a
  /// throw from it is reported as an uncaught exception, after which
  /// delivery goes on.
  fn call(&self, env: sys::napi_env, events: Events) {
    let Events { records, bytes, details, texts } = events;
    // SAFETY: on the JS thread, inside the handle scope js_wake.rs opens.
    unsafe {
      let args = records_to_js(env, records).and_then(|records| {
        let bytes = bytes_to_js(env, bytes)?;
        let details = ToNapiValue::to_napi_value(env, details)?;
        Ok([records, bytes, details, texts_to_js(env, &texts)?])
      });
      let argv = match args {
        Ok(argv) => argv,
        Err(error) => {
          sys::napi_fatal_exception(env, JsError::from(error).into_value(env));
          return;
        }
      };
      let mut function = ptr::null_mut();
      let mut receiver = ptr::null_mut();
      let mut result = ptr::null_mut();
      sys::napi_get_reference_value(env, self.function, &mut function);
      // `napi_make_callback` wants an object as `this`; the dispatcher
      // does not use it.
      sys::napi_get_global(env, &mut receiver);
      let status = sys::napi_make_callback(
        env,
        self.context,
        receiver,
        function,
        argv.len(),
        argv.as_ptr(),
        &mut result,
      );
      // Any other failure means JS can no longer run (the environment is
      // stopping): there is nobody to tell.
      if status == sys::Status::napi_pending_exception {
        let mut error = ptr::null_mut();
        if sys::napi_get_and_clear_last_exception(env, &mut error) == sys::Status::napi_ok {
          sys::napi_fatal_exception(env, error);
        }
      }
    }
  }
}

/// Batches this large or smaller are copied into memory V8 allocates; larger
/// ones are handed over as they are. Memory handed over costs V8 a finalizer
/// and a weak callback each, more than copying a few KiB (a storm of short
/// connections makes many small batches).
const COPY_MAX: usize = 16 * 1024;

/// The records as a `Uint32Array`.
///
/// # Safety
/// On the JS thread, inside a handle scope.
unsafe fn records_to_js(env: sys::napi_env, records: Vec<u32>) -> napi::Result<sys::napi_value> {
  let byte_length = size_of_val(records.as_slice());
  if byte_length == 0 || byte_length > COPY_MAX {
    // SAFETY: as this function's.
    return unsafe { ToNapiValue::to_napi_value(env, Uint32Array::new(records)) };
  }
  let mut data = ptr::null_mut();
  let mut buffer = ptr::null_mut();
  let mut array = ptr::null_mut();
  // SAFETY: `data` is a fresh allocation of `byte_length` bytes.
  unsafe {
    check_status!(sys::napi_create_arraybuffer(env, byte_length, &mut data, &mut buffer))?;
    ptr::copy_nonoverlapping(records.as_ptr().cast::<u8>(), data.cast::<u8>(), byte_length);
    let kind = sys::TypedarrayType::uint32_array;
    check_status!(sys::napi_create_typedarray(env, kind, records.len(), buffer, 0, &mut array))?;
  }
  Ok(array)
}

/// The message bytes as a `Buffer`.
///
/// # Safety
/// On the JS thread, inside a handle scope.
unsafe fn bytes_to_js(env: sys::napi_env, bytes: Vec<u8>) -> napi::Result<sys::napi_value> {
  if bytes.len() > COPY_MAX {
    // SAFETY: as this function's.
    return unsafe { ToNapiValue::to_napi_value(env, Buffer::from(bytes)) };
  }
  let mut data = ptr::null_mut();
  let mut buffer = ptr::null_mut();
  // SAFETY: `bytes` is readable for its length.
  check_status!(unsafe {
    sys::napi_create_buffer_copy(env, bytes.len(), bytes.as_ptr().cast(), &mut data, &mut buffer)
  })?;
  Ok(buffer)
}

/// The joined texts as one string: copied as Latin-1 while they are all
/// ASCII (the same characters), else decoded from UTF-8.
///
/// # Safety
/// On the JS thread, inside a handle scope.
unsafe fn texts_to_js(env: sys::napi_env, texts: &JoinedTexts) -> napi::Result<sys::napi_value> {
  let (data, len) = (texts.utf8.as_ptr().cast(), texts.utf8.len() as isize);
  let mut string = ptr::null_mut();
  // SAFETY: `data` is readable for `len` bytes, and is UTF-8 (Latin-1 too
  // when it is ASCII).
  check_status!(unsafe {
    if texts.wide {
      sys::napi_create_string_utf8(env, data, len, &mut string)
    } else {
      sys::napi_create_string_latin1(env, data, len, &mut string)
    }
  })?;
  Ok(string)
}

impl Drop for Dispatcher {
  fn drop(&mut self) {
    // SAFETY: dropped on the JS thread while its environment stands.
    unsafe {
      if !self.function.is_null() {
        sys::napi_delete_reference(self.env, self.function);
      }
      if !self.context.is_null() {
        sys::napi_async_destroy(self.env, self.context);
      }
    }
    // Whatever the dispatcher task waits for will not come.
    self.queue.taken.notify_one();
  }
}
