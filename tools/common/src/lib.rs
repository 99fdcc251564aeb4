//! What the tools (tools/) and the test harness (tests/support) share, kept out of the filter:
//! how Envoy loads the filter ([`envoy_config`]) and edits of a policy document by the dotted
//! paths the filter's error messages use ([`remove_path`]).

pub mod envoy_config;
mod policy_path;

pub use envoy_config::{ecds_response, wasm_filter_config, FILTER_NAME, FILTER_WASM};
pub use policy_path::remove_path;
