//! resilience4j semantics for Envoy, as a proxy-wasm filter.
//!
//! Everything outside `host` is the pure core: no proxy-wasm imports, time and randomness are
//! parameters. `host` is the thin proxy-wasm layer and only exists on `wasm32-wasip1`.

mod bignum;
pub mod breaker;
pub mod bulkhead;
pub mod duration;
pub mod events;
pub mod fallback;
pub mod float_parse;
pub mod float_text;
pub mod headers;
pub mod interval;
pub mod json;
pub mod outcome;
pub mod policy;
pub mod ratelimiter;
pub mod retry;
pub mod sorted_map;
pub mod timelimiter;

/// The filter's name: its plugin name when the host does not tell (shared-data keys and logs
/// carry it), and the name, root id and vm id the Envoy configs in tools/ give it.
pub const FILTER_NAME: &str = "sidecar-resilience";

#[cfg(target_os = "wasi")]
mod host;

#[cfg(test)]
mod fuzz_tests;
