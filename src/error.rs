//! The errors the addon's methods throw, each with a stable code that JS
//! branches on; JS never reads anything out of an error's message.
//!
//! An error is made as a `NativeError` and turned into a JS exception once,
//! at the napi boundary (`NativeError::throw`):
//!
//! - `InvalidArg`: JS passed something unusable (a port out of range, a
//!   certificate that does not parse, a request that is no upgrade). Thrown
//!   as an Error with `code: 'InvalidArg'`.
//! - `Os(errno)`: a system call failed. Thrown as an Error with
//!   `code: 'Os'` and `errno` set to the OS error number, positive as the
//!   OS has it (lib/server.js makes a Node-style error of it: `EADDRINUSE`,
//!   its negative errno, `syscall`...).

use std::io;

use napi::bindgen_prelude::JsObjectValue;
use napi::{Env, Error, JsValue, Status};

/// The stable code of a `NativeError`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
  InvalidArg,
  /// The OS error number (`0` when the failure had none).
  Os(i32),
}

impl ErrorCode {
  /// The `code` of the thrown JS error.
  pub fn as_str(self) -> &'static str {
    match self {
      ErrorCode::InvalidArg => "InvalidArg",
      ErrorCode::Os(_) => "Os",
    }
  }
}

/// An error on its way to JS: a stable code and a message for people.
#[derive(Debug)]
pub struct NativeError {
  pub code: ErrorCode,
  pub message: String,
}

impl NativeError {
  pub fn invalid_arg(message: impl Into<String>) -> NativeError {
    NativeError { code: ErrorCode::InvalidArg, message: message.into() }
  }

  /// The JS exception: an Error with `code`, and `errno` for `Os`.
  pub fn throw(self, env: &Env) -> Error {
    let code = self.code.as_str();
    let errno = match self.code {
      ErrorCode::InvalidArg => return Error::new(Status::InvalidArg, self.message),
      ErrorCode::Os(errno) => errno,
    };
    let made =
      env.create_error(Error::new(Status::GenericFailure, self.message)).and_then(|mut error| {
        error.set_named_property("code", code)?;
        error.set_named_property("errno", errno)?;
        Ok(Error::from(error.to_unknown()))
      });
    // Making the error fails only while the environment is torn down, when
    // nobody will read it.
    made.unwrap_or_else(|failure| failure)
  }
}

impl From<io::Error> for NativeError {
  fn from(error: io::Error) -> NativeError {
    let errno = error.raw_os_error().unwrap_or(0);
    NativeError { code: ErrorCode::Os(errno), message: error.to_string() }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn an_io_error_keeps_its_errno() {
    let error = NativeError::from(io::Error::from_raw_os_error(98));
    assert_eq!(error.code, ErrorCode::Os(98));
    assert_eq!(error.code.as_str(), "Os");
  }

  #[test]
  fn an_io_error_without_errno_has_errno_0() {
    let error = NativeError::from(io::Error::other("no errno"));
    assert_eq!(error.code, ErrorCode::Os(0));
    assert_eq!(error.message, "no errno");
  }
}
