//! resilience4j semantics for Envoy, as a proxy-wasm filter.
//!
//! Everything outside `host` is the pure core: no proxy-wasm imports, time and randomness are
//! parameters. `host` is the thin proxy-wasm layer and only exists on `wasm32-wasip1`.

pub mod breaker;
pub mod duration;
pub mod envoy_config;
pub mod events;
pub mod fallback;
pub mod interval;
pub mod outcome;
pub mod policy;
pub mod retry;

#[cfg(target_os = "wasi")]
mod host;
