//! What a rejected policy does: on an update it is refused (Envoy keeps the previous filter
//! config); when no policy was ever accepted in this Envoy the filter comes up pass-through.
//!
//! Why: the bootstrap's (and Istio's) ECDS reference has no default config. A filter config
//! that Envoy rejects at first load leaves the name without config, and Envoy then answers
//! every request on the listener with 500 (response flag NFCF), whatever the plugin's
//! `failure_policy` says: `on_configure` returning false is a config error, not a VM failure,
//! so FAIL_OPEN does not apply to it. Istio does the same for a WasmPlugin whose module cannot
//! be fetched when it is FAIL_OPEN: it substitutes an allow-all filter. A filter that guards
//! traffic must not take it down, so a first policy that fails to parse runs the filter with
//! no instances (every request passes through untouched) and says so at error level on every
//! configure (main thread, each worker).
//!
//! "A policy was ever accepted" is kept in shared data (process-wide; the canary VM that Envoy
//! configures first is a fresh clone and remembers nothing). A policy update is judged by that
//! mark, so a bad push after a good one keeps the good one.
//!
//! One exception, forced by Envoy: it canaries a configuration only once per process (its
//! canary cache is keyed by the configuration text) and then configures the workers without
//! asking again. A configuration that once came up pass-through must therefore come up
//! pass-through again whenever it is pushed; refusing it on a worker would fail that worker's
//! VM. Such configurations are remembered by fingerprint (one shared-data key each; only
//! configurations pushed before the first accepted policy can be among them).

use super::abi;

/// Shared-data key marking that this plugin accepted a policy in this Envoy process.
fn accepted_key(plugin_name: &str) -> String {
    format!("{plugin_name}/policy/accepted")
}

/// Called when a policy was accepted: later rejected policies are refused.
pub fn mark_accepted(plugin_name: &str) {
    let key = accepted_key(plugin_name);
    match abi::get_shared_data(&key) {
        Ok(Some(_)) => {}
        _ => {
            if let Err(e) = abi::set_shared_data(&key, b"1", 0) {
                log::warn!(
                    "policy: cannot record the accepted policy (host status {}); a later \
                     rejected policy may come up pass-through",
                    e.0
                );
            }
        }
    }
}

/// Whether a policy was accepted before (in any VM of this plugin in this process).
pub fn accepted_before(plugin_name: &str) -> bool {
    matches!(
        abi::get_shared_data(&accepted_key(plugin_name)),
        Ok(Some(_))
    )
}

fn pass_through_key(plugin_name: &str, fingerprint: u64) -> String {
    format!("{plugin_name}/policy/pass-through/{fingerprint:016x}")
}

/// FNV-1a of the plugin configuration as Envoy handed it.
pub fn fingerprint(config: &[u8]) -> u64 {
    config.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether a rejected configuration runs pass-through: no policy was accepted before, or this
/// very configuration came up pass-through before (see the module docs). Remembers it if so.
pub fn run_pass_through(plugin_name: &str, fingerprint: u64) -> bool {
    let key = pass_through_key(plugin_name, fingerprint);
    if matches!(abi::get_shared_data(&key), Ok(Some(_))) {
        return true;
    }
    if accepted_before(plugin_name) {
        return false;
    }
    if let Err(e) = abi::set_shared_data(&key, b"1", 0) {
        log::warn!(
            "policy: cannot record the pass-through configuration (host status {})",
            e.0
        );
    }
    true
}
