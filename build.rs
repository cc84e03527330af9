fn main() {
  napi_build::setup();
  // `cfg(dormancy)`: quiet server connections leave tokio for an epoll set
  // of the server's own (src/dormancy.rs). Only on Linux, where its memory
  // savings were measured; elsewhere, and with the `portable` feature, they
  // stay tokio tasks (README, "Platforms").
  println!("cargo::rustc-check-cfg=cfg(dormancy)");
  let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
  if linux && std::env::var_os("CARGO_FEATURE_PORTABLE").is_none() {
    println!("cargo::rustc-cfg=dormancy");
  }
}
