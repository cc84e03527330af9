//! Servers and Sockets end with the JS environment that made them.
//!
//! The tokio runtime is the process's, shared by every thread that loaded
//! the addon. A Server or Socket made in a worker thread would otherwise
//! keep its listener, its connections and its reconnections running after
//! the worker is terminated, reporting to a JS environment that is gone.

use napi::{CleanupEnvHook, Env, Result};

/// A cleanup hook of the environment that made an object; removed when the
/// object is collected first.
pub struct TeardownHook<T: 'static>(Option<CleanupEnvHook<T>>);

impl<T: 'static> TeardownHook<T> {
  /// Runs `stop(data)` when `env` is torn down.
  pub fn register(env: &Env, data: T, stop: impl FnOnce(T) + 'static) -> Result<TeardownHook<T>> {
    Ok(TeardownHook(Some(env.add_env_cleanup_hook(data, stop)?)))
  }

  /// The object was collected: there is nothing to stop at teardown.
  pub fn remove(&mut self, env: &Env) -> Result<()> {
    match self.0.take() {
      Some(hook) => env.remove_env_cleanup_hook(hook),
      None => Ok(()),
    }
  }
}
