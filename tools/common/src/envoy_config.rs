//! How Envoy loads this filter: the module `make wasm` builds, the Wasm filter config and the
//! ECDS resource that carries it. One definition for every place that writes one (the test
//! harness, the demo, the bench, the importer, the compose entrypoint's test), so they cannot
//! drift apart.

use serde_json::{json, Value};

/// The filter's name in Envoy: the HTTP filter, its ECDS resource, the plugin and vm ids.
/// Shared-data keys and logs carry the plugin name (Istio sets `<namespace>.<name>`; from 1.30
/// `<namespace>.<name>~istio-translated-wasmplugin`).
pub use sidecar_resilience::FILTER_NAME;

/// The module `make wasm` builds, relative to the repository root (the Makefile's
/// `FILTER_WASM` default; tests/compose.rs checks the two agree).
pub const FILTER_WASM: &str = "target/wasm32-wasip1/release/sidecar_resilience.wasm";

/// The `envoy.extensions.filters.http.wasm.v3.Wasm` config that loads the module at
/// `wasm_path` with `policy_json` (a JSON string in a `StringValue`, parsed by the filter).
pub fn wasm_filter_config(wasm_path: &str, policy_json: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": FILTER_NAME,
            "root_id": FILTER_NAME,
            "vm_config": {
                "vm_id": FILTER_NAME,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": wasm_path}}
            },
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": policy_json
            },
            // If the VM itself cannot start, let traffic through rather than fail every
            // request. (A rejected policy is different: Envoy keeps the previous one serving.)
            "failure_policy": "FAIL_OPEN"
        }
    })
}

/// The ECDS file contents (a `DiscoveryResponse`) for a bootstrap's `config_discovery`.
pub fn ecds_response(version: u64, wasm_path: &str, policy_json: &str) -> Value {
    json!({
        "version_info": version.to_string(),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": FILTER_NAME,
            "typed_config": wasm_filter_config(wasm_path, policy_json)
        }]
    })
}
