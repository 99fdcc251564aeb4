//! istio/: every WasmPlugin is well-formed for Istio, and its policy is accepted by the filter's
//! own parser (the code that runs in Envoy) and means exactly what the seed's ConfigMap means.
//! Then the filter running the way Istio configures it: plugin named `<namespace>.<name>`, no
//! vm_id, policy as pluginConfig JSON, Istio's `outbound|port|subset|host` cluster names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};
use sidecar_resilience::policy::Policy;

fn manifests() -> Vec<(PathBuf, Value)> {
    let dir = repo_root().join("istio");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        for doc in yaml::load_file(&file).unwrap() {
            if !doc.is_null() {
                out.push((file.clone(), doc));
            }
        }
    }
    out
}

fn plugins() -> Vec<(String, Value)> {
    manifests()
        .into_iter()
        .filter(|(_, d)| d["kind"] == "WasmPlugin")
        .map(|(file, d)| (format!("{} ({})", file.display(), d["metadata"]["name"]), d))
        .collect()
}

/// The seed's ConfigMap, read the way a user would: through the importer.
fn seed_policy_via_importer() -> Value {
    let dir = TempDir::new("istio-test").unwrap();
    let out = dir.path().join("policy.json");
    let status = Command::new(tool_bin("r4j-import").unwrap())
        .arg(repo_root().join("tests/fixtures/seed-manifests.yaml"))
        .arg("--policy")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "r4j-import failed on the seed manifests");
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

#[test]
fn istio_dir_has_the_stable_canary_file_and_gateway_plugins() {
    let names: Vec<String> = plugins()
        .iter()
        .map(|(_, d)| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "sidecar-resilience",
        "sidecar-resilience-canary",
        "sidecar-resilience-file",
        "sidecar-resilience-gateway",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "no WasmPlugin {want} under istio/ (found {names:?})"
        );
    }
}

#[test]
fn every_plugin_policy_parses_and_means_the_seed_configmap() {
    let seed = seed_policy_via_importer();
    let expected = Policy::from_json(&seed.to_string()).unwrap();
    // Same meaning as the harness's seed fixture and envoy/policy.json (what `make run` uses).
    assert_eq!(
        Policy::from_json(&seed_policy().to_string()).unwrap(),
        expected
    );
    let shipped = std::fs::read_to_string(repo_root().join("envoy/policy.json")).unwrap();
    let mut shipped = Policy::from_json(&shipped).unwrap();
    // Plus the demo's `events` section (checked in tests/foundation.rs).
    shipped.events = None;
    assert_eq!(shipped, expected, "envoy/policy.json");
    let plugins = plugins();
    assert!(!plugins.is_empty());
    for (name, plugin) in plugins {
        let config = &plugin["spec"]["pluginConfig"];
        let parsed =
            Policy::from_json(&config.to_string()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            parsed.warnings.is_empty(),
            "{name}: warnings {:?}",
            parsed.warnings
        );
        assert_eq!(
            parsed, expected,
            "{name}: pluginConfig does not mean what the seed ConfigMap means"
        );
        // "pasted as is": the very tree of the ConfigMap, not merely an equivalent one.
        assert_eq!(
            config, &seed,
            "{name}: pluginConfig differs from the ConfigMap's resilience4j tree"
        );
    }
}

#[test]
fn every_plugin_is_outbound_last_before_router_fail_open_and_pinned() {
    for (name, plugin) in plugins() {
        assert_eq!(
            plugin["apiVersion"], "extensions.istio.io/v1alpha1",
            "{name}"
        );
        let spec = &plugin["spec"];
        assert_eq!(spec["phase"], "UNSPECIFIED_PHASE", "{name}");
        assert!(spec["priority"].is_i64(), "{name}: priority");
        assert_eq!(spec["failStrategy"], "FAIL_OPEN", "{name}");
        assert_eq!(spec["type"], "HTTP", "{name}");
        assert_eq!(spec["match"], json!([{"mode": "CLIENT"}]), "{name}");
        let url = spec["url"].as_str().unwrap();
        let sha = spec["sha256"].as_str().unwrap();
        if url.starts_with("file://") {
            assert_eq!(
                sha, "{{WASM_SHA256}}",
                "{name}: a file:// url is checked against the module's sha256"
            );
        } else {
            assert_eq!(url, "{{IMAGE_URL}}", "{name}");
            assert_eq!(
                sha, "{{IMAGE_SHA256}}",
                "{name}: an OCI url is checked against the image digest"
            );
        }
        let has_selector = spec.get("selector").is_some();
        let has_refs = spec.get("targetRefs").is_some();
        assert!(
            has_selector != has_refs,
            "{name}: exactly one of selector and targetRefs"
        );
    }
}

#[test]
fn stable_and_canary_never_select_the_same_workload() {
    let labels = |wanted: &str| -> Value {
        plugins()
            .into_iter()
            .find(|(_, d)| d["metadata"]["name"] == wanted)
            .unwrap()
            .1["spec"]["selector"]["matchLabels"]
            .clone()
    };
    let stable = labels("sidecar-resilience");
    let canary = labels("sidecar-resilience-canary");
    let key = "resilience.sidecar/channel";
    assert_eq!(stable[key], "stable");
    assert_eq!(canary[key], "canary");
}

#[test]
fn seed_fixture_is_the_seed_documents_verbatim() {
    // The fixture is a copy of the seed's manifests; compare when the seed is beside the repo.
    let seed = repo_root().join("../shared/seed/microservice-communication-pattern.md");
    let Ok(text) = std::fs::read_to_string(&seed) else {
        return;
    };
    let block = text
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let fixture =
        std::fs::read_to_string(repo_root().join("tests/fixtures/seed-manifests.yaml")).unwrap();
    assert_eq!(fixture, block);
}

// ---------------------------------------------------------------------------------------------
// The filter configured the way Istio configures it.

/// The ECDS resource istiod sends for a WasmPlugin `default/sidecar-resilience`: the filter and
/// plugin are named `<namespace>.<name>`, vm_config has no vm_id, pluginConfig arrives as JSON
/// in a StringValue.
fn istio_style_ecds(version: u64, policy: &Value) -> Value {
    json!({
        "version_info": version.to_string(),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": FILTER_NAME,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "default.sidecar-resilience",
                    "root_id": "",
                    "vm_config": {
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": filter_wasm().display().to_string()}}
                    },
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": policy.to_string()
                    },
                    "fail_open": true
                }
            }
        }]
    })
}

#[test]
fn filter_works_as_istio_configures_it() {
    let plugin = plugins()
        .into_iter()
        .find(|(_, d)| d["metadata"]["name"] == "sidecar-resilience")
        .unwrap()
        .1;
    let mut policy = plugin["spec"]["pluginConfig"].clone();
    // No retries and a short open wait, so the test is quick; the breaker is the seed's.
    remove_path(&mut policy, "resilience4j.retry");
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &json!({})).unwrap();
    let success = envoy.ecds_counter("update_success");
    write_atomically(
        &envoy.dir().join("ecds.json"),
        &istio_style_ecds(100, &policy).to_string(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while envoy.ecds_counter("update_success") == success {
        assert!(
            envoy.ecds_counter("update_rejected") == 0,
            "Istio-style config rejected"
        );
        assert!(Instant::now() < deadline, "Istio-style config not applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    let istio = &services.istio_user;
    let host = "user-service.default.svc.cluster.local";
    // Seed: minimum 5 calls, 50 % → the fifth failure opens the circuit.
    istio.push_n(5, Action::status(500));
    for _ in 0..5 {
        assert_eq!(envoy.get(host, "/users/1").unwrap().status, 500);
    }
    let fallback = envoy.get(host, "/users/1").unwrap();
    assert_eq!(fallback.status, 503, "{}", fallback.text());
    assert_eq!(istio.count(), 5, "the fallback must not reach the upstream");
    let stat = |name: &str| {
        envoy
            .stat(&format!("wasmcustom.resilience4j_circuitbreaker_{name}"))
            .unwrap_or(0)
    };
    assert_eq!(stat("calls.name.user-service.kind.failed"), 5);
    assert_eq!(stat("calls.name.user-service.kind.not_permitted"), 1);
    assert_eq!(stat("state.name.user-service.state.open"), 1);
    // The plain-named cluster maps to the same instance and, in the same plugin, the same state.
    assert_eq!(envoy.get("user-service", "/users/1").unwrap().status, 503);
    assert_eq!(services.user.count(), 0);
}
