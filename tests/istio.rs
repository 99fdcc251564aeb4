//! istio/: every WasmPlugin is well-formed for Istio, and its policy is accepted by the filter's
//! own parser (the code that runs in Envoy) and means exactly what the seed's ConfigMap means.
//! (tests/wasmplugin_schema.rs checks them against Istio's CRD and webhook rules.)
//! Then the filter running the way Istio configures it: plugin named
//! `<namespace>.<name>~istio-translated-wasmplugin` (1.30+) or `<namespace>.<name>`, no vm_id,
//! policy as pluginConfig JSON, Istio's `outbound|port|subset|host` cluster names; and in a
//! filter chain in Istio's order, where VirtualService fault injection runs after the filter.

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

/// The image name the committed manifests use: wasm-oci's and r4j-import's default.
fn default_image_url() -> String {
    format!(
        "oci://registry.example.com/sidecar-resilience:{}",
        env!("CARGO_PKG_VERSION")
    )
}

#[test]
fn every_plugin_is_the_last_outbound_plugin_fail_open_and_applies_as_committed() {
    for (name, plugin) in plugins() {
        assert_eq!(
            plugin["apiVersion"], "extensions.istio.io/v1alpha1",
            "{name}"
        );
        let spec = &plugin["spec"];
        // The latest phase and the lowest priority: the last plugin before Istio's fault filter
        // (istio/sidecar-resilience.yaml says why).
        assert_eq!(spec["phase"], "UNSPECIFIED_PHASE", "{name}");
        assert_eq!(spec["priority"], i64::from(i32::MIN), "{name}: priority");
        assert_eq!(spec["failStrategy"], "FAIL_OPEN", "{name}");
        assert_eq!(spec["type"], "HTTP", "{name}");
        assert_eq!(spec["match"], json!([{"mode": "CLIENT"}]), "{name}");
        // As committed nothing is pinned: `make oci` writes the pinned copies (tests/oci.rs).
        assert!(spec.get("sha256").is_none(), "{name}: sha256 as committed");
        let url = spec["url"].as_str().unwrap();
        if url.starts_with("file://") {
            assert!(spec.get("imagePullPolicy").is_none(), "{name}");
        } else {
            assert_eq!(url, default_image_url(), "{name}");
            let canary = plugin["metadata"]["name"] == "sidecar-resilience-canary";
            // Unpinned, Always re-pulls the tag when the WasmPlugin changes (pkg/wasm/cache.go).
            let policy = if canary { "Always" } else { "IfNotPresent" };
            assert_eq!(spec["imagePullPolicy"], policy, "{name}");
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

/// Plugin names istiod gives the WasmPlugin `default/sidecar-resilience`: from 1.30 it is
/// translated into a TrafficExtension named `<name>~istio-translated-wasmplugin`
/// (pilot/pkg/config/kube/extensions/translate.go) and the plugin is `<namespace>.<that name>`
/// (pilot/pkg/model/extensions.go buildWasmConfig); before 1.30 it was `<namespace>.<name>`.
const ISTIO_PLUGIN_NAME: &str = "default.sidecar-resilience~istio-translated-wasmplugin";
const ISTIO_PLUGIN_NAME_BEFORE_1_30: &str = "default.sidecar-resilience";

/// The Wasm filter config istiod sends for a WasmPlugin: plugin named `plugin_name`, root_id
/// from the unset pluginName, no vm_id, pluginConfig as JSON in a StringValue, FAIL_OPEN.
fn istio_wasm_config(plugin_name: &str, policy: &Value) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": plugin_name,
            "root_id": "",
            "vm_config": {
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": filter_wasm().display().to_string()}}
            },
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": policy.to_string()
            },
            "failure_policy": "FAIL_OPEN"
        }
    })
}

/// The ECDS resource istiod sends, under the harness bootstrap's filter name.
fn istio_style_ecds(version: u64, plugin_name: &str, policy: &Value) -> Value {
    json!({
        "version_info": version.to_string(),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": FILTER_NAME,
            "typed_config": istio_wasm_config(plugin_name, policy)
        }]
    })
}

fn push_istio_config(envoy: &Envoy, version: u64, plugin_name: &str, policy: &Value) {
    let success = envoy.ecds_counter("update_success");
    write_atomically(
        &envoy.dir().join("ecds.json"),
        &istio_style_ecds(version, plugin_name, policy).to_string(),
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
    push_istio_config(&envoy, 100, ISTIO_PLUGIN_NAME, &policy);
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
    let user = |series: &str, label: (&str, &str)| {
        envoy.metric(series, &[("name", "user-service"), label])
    };
    let counter = |series: &str, label: (&str, &str), expected: u64| {
        envoy.counter(series, &[("name", "user-service"), label], expected)
    };
    assert_eq!(
        counter(
            "resilience4j_circuitbreaker_calls_seconds_count",
            ("kind", "failed"),
            5
        ),
        5
    );
    assert_eq!(
        counter(
            "resilience4j_circuitbreaker_not_permitted_calls_total",
            ("kind", "not_permitted"),
            1
        ),
        1
    );
    assert_eq!(
        user("resilience4j_circuitbreaker_state", ("state", "open")),
        1
    );
    // The plain-named cluster maps to the same instance and, in the same plugin, the same state.
    assert_eq!(envoy.get("user-service", "/users/1").unwrap().status, 503);
    assert_eq!(services.user.count(), 0);

    // The same WasmPlugin as Istio before 1.30 names it: another plugin name, other shared-data
    // keys, so a fresh (closed) breaker: two plugins never share state.
    push_istio_config(&envoy, 101, ISTIO_PLUGIN_NAME_BEFORE_1_30, &policy);
    istio.set_default(Action::status(200));
    assert_eq!(envoy.get(host, "/users/1").unwrap().status, 200);
    assert_eq!(istio.count(), 6, "a fresh breaker lets the call through");
}

// ---------------------------------------------------------------------------------------------
// Istio's filter order, with a VirtualService fault.

/// An Envoy on a bootstrap the test writes (not the harness's): stopped on drop.
struct ChainEnvoy {
    child: std::process::Child,
    admin_port: u16,
    listen_port: u16,
    dir: TempDir,
}

impl ChainEnvoy {
    fn start(bootstrap: impl Fn(u16, u16) -> Value) -> ChainEnvoy {
        let dir = TempDir::new("istio-chain").unwrap();
        let (admin_port, listen_port) = (free_port().unwrap(), free_port().unwrap());
        let config = dir.path().join("bootstrap.json");
        std::fs::write(&config, bootstrap(admin_port, listen_port).to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
        let child = envoy_command(&config)
            .args(["-l", "warning"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut envoy = ChainEnvoy {
            child,
            admin_port,
            listen_port,
            dir,
        };
        // Generous: a loaded machine compiles the module slowly.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !get(admin_port, "127.0.0.1", "/ready").is_ok_and(|r| r.text().trim() == "LIVE") {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!("envoy exited ({status}):\n{}", envoy.log());
            }
            assert!(
                Instant::now() < deadline,
                "envoy not ready:\n{}",
                envoy.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        envoy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    fn stat(&self, name: &str) -> u64 {
        let text = get(self.admin_port, "127.0.0.1", "/stats").unwrap().text();
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ChainEnvoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- envoy log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHAIN_HOST: &str = "user-service.default.svc.cluster.local";

fn chain_get(envoy: &ChainEnvoy, chaos: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = chaos.map(|c| ("x-chaos", c)).into_iter().collect();
    request(
        envoy.listen_port,
        "GET",
        CHAIN_HOST,
        "/users/1",
        &headers,
        b"",
    )
    .unwrap()
}

/// An outbound HTTP listener as Istio builds it (pilot/pkg/networking/core/listener_builder.go
/// buildHTTPConnectionManager): the WasmPlugins (UNSPECIFIED_PHASE, the last of them here), then
/// Istio's grpc_stats, fault and cors filters (pilot/pkg/xds/filters/filters.go, same configs)
/// and the router. Istio's own istio.* filters (metadata exchange, alpn, stats) are not in
/// upstream Envoy; none of them answers requests. The routes with header `x-chaos: abort` and
/// `x-chaos: delay` carry what Istio makes of a VirtualService `fault.abort` (httpStatus 503,
/// 100 %) and `fault.delay` (fixedDelay 300ms, 100 %) in the fault filter's per-route config
/// (pilot/pkg/networking/core/route/route.go TranslateFault).
fn istio_chain_bootstrap(admin: u16, listen: u16, upstream: u16, policy: &Value) -> Value {
    let cluster = "outbound|8080||user-service.default.svc.cluster.local";
    let all = json!({"numerator": 1000000, "denominator": "MILLION"});
    let route = |chaos: Option<(&str, Value)>| {
        let mut r = json!({
            "match": {"prefix": "/"},
            "route": {"cluster": cluster, "timeout": "5s"}
        });
        if let Some((name, fault)) = chaos {
            r["match"]["headers"] = json!([{"name": "x-chaos", "string_match": {"exact": name}}]);
            let mut config = json!({
                "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
            });
            config[name] = fault;
            r["typed_per_filter_config"] = json!({ "envoy.filters.http.fault": config });
        }
        r
    };
    let routes = json!([
        route(Some((
            "abort",
            json!({"http_status": 503, "percentage": all})
        ))),
        route(Some((
            "delay",
            json!({"fixed_delay": "0.3s", "percentage": all})
        ))),
        route(None),
    ]);
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "0.0.0.0_8080",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "outbound_0.0.0.0_8080",
                        "route_config": {"name": "8080", "virtual_hosts": [{
                            "name": "user-service.default.svc.cluster.local:8080",
                            "domains": [CHAIN_HOST],
                            "routes": routes
                        }]},
                        "http_filters": [
                            {"name": format!("extensions.istio.io/trafficextension/{ISTIO_PLUGIN_NAME}"),
                             "typed_config": istio_wasm_config(ISTIO_PLUGIN_NAME, policy)},
                            {"name": "envoy.filters.http.grpc_stats", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
                                "emit_filter_state": true, "stats_for_all_methods": false}},
                            {"name": "envoy.filters.http.fault", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
                            {"name": "envoy.filters.http.cors", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
                            {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                        ]
                    }
                }]}]
            }],
            "clusters": [{
                "name": cluster,
                "type": "STATIC",
                "connect_timeout": "0.25s",
                "load_assignment": {"cluster_name": cluster, "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}}
                }]}]}
            }]
        }
    })
}

#[test]
fn in_istios_filter_order_injected_aborts_are_neither_counted_nor_retried() {
    let upstream = Upstream::start("user-service").unwrap();
    upstream.set_default(Action::status(200));
    // A small window and immediate retries, so the numbers below are exact.
    let policy = json!({"resilience4j": {
        "circuitbreaker": {"instances": {"user-service": {
            "sliding-window-size": 4, "minimum-number-of-calls": 4,
            "failure-rate-threshold": 50, "wait-duration-in-open-state": "60s"}}},
        "retry": {"instances": {"user-service": {"max-attempts": 3, "wait-duration": "0s"}}}}});
    let envoy = ChainEnvoy::start(|admin, listen| {
        istio_chain_bootstrap(admin, listen, upstream.port(), &policy)
    });
    let send = |chaos: bool| chain_get(&envoy, if chaos { Some("abort") } else { None });
    // The calls counter of `kind` once it reads `expected` (flushed on the filter's tick).
    let cb = |kind: &str, expected: u64| {
        counter_reaches(
            || {
                envoy.stat(&stat_name(
                    "resilience4j_circuitbreaker_calls_seconds_count",
                    &[("name", "user-service"), ("kind", kind)],
                ))
            },
            expected,
        )
    };
    let aborts = || envoy.stat("http.outbound_0.0.0.0_8080.fault.aborts_injected");
    assert_eq!(send(false).status, 200);
    assert_eq!(cb("successful", 1), 1, "the filter guards this route");

    // The VirtualService's abort reaches the caller as it is: not counted, not retried (a retry
    // would reach the upstream, since a callout does not pass the fault filter).
    for _ in 0..6 {
        let r = send(true);
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.text(), "fault filter abort");
        assert!(r.header("x-circuit-breaker").is_none());
    }
    assert_eq!(aborts(), 6, "the fault filter answered");
    assert_eq!(
        upstream.count(),
        1,
        "no injected abort was retried to the upstream"
    );
    assert_eq!(
        (cb("failed", 0), cb("successful", 1), cb("ignored", 0)),
        (0, 1, 0)
    );
    // Six failures would have opened a window of 4 at 50 %: the circuit is still closed.
    assert_eq!(send(false).status, 200);
    assert_eq!(upstream.count(), 2);

    // Real upstream failures are counted and retried: the window holds 2 successes, the first
    // attempt fails, its retry fails too (2 of 4 = 50 %: OPEN), and the next retry is refused,
    // so the caller gets the fallback.
    upstream.set_default(Action::status(500));
    let fallback = send(false);
    assert_eq!(fallback.status, 503, "{}", fallback.text());
    assert!(fallback.header("x-circuit-breaker").is_some());
    assert_eq!(upstream.count(), 4, "2 attempts reached the upstream");
    assert_eq!(cb("failed", 2), 2);
    // Open: the filter answers before the fault filter sees the request (Istio's order).
    let r = send(true);
    assert!(r.header("x-circuit-breaker").is_some(), "{}", r.text());
    assert_eq!(aborts(), 6, "the fault filter never saw it");
    assert_eq!(upstream.count(), 4);
}

#[test]
fn in_istios_filter_order_injected_delays_never_count_as_slow() {
    let upstream = Upstream::start("user-service").unwrap();
    upstream.set_default(Action::status(200));
    let policy = json!({"resilience4j": {"circuitbreaker": {"instances": {"user-service": {
        "sliding-window-size": 4, "minimum-number-of-calls": 4,
        "slow-call-duration-threshold": "100ms", "slow-call-rate-threshold": 50,
        "wait-duration-in-open-state": "60s"}}}}});
    let envoy = ChainEnvoy::start(|admin, listen| {
        istio_chain_bootstrap(admin, listen, upstream.port(), &policy)
    });
    // The calls counter of `kind` once it reads `expected` (flushed on the filter's tick).
    let cb = |kind: &str, expected: u64| {
        counter_reaches(
            || {
                envoy.stat(&stat_name(
                    "resilience4j_circuitbreaker_calls_seconds_count",
                    &[("name", "user-service"), ("kind", kind)],
                ))
            },
            expected,
        )
    };
    // The VirtualService delays each call by 300 ms, three times the slow threshold; the
    // upstream answers at once. The answers count, the delay does not.
    for _ in 0..4 {
        let started = Instant::now();
        assert_eq!(chain_get(&envoy, Some("delay")).status, 200);
        // (Envoy's timers run on its event loop's cached clock: a few ms early at most.)
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    }
    assert_eq!(
        envoy.stat("http.outbound_0.0.0.0_8080.fault.delays_injected"),
        4
    );
    assert_eq!(cb("successful", 4), 4);
    // The window's gauges follow on the filter's tick: 4 calls in it, none slow.
    let window = |kind: &str| {
        let gauge = |series: &str| {
            envoy.stat(&stat_name(
                series,
                &[("name", "user-service"), ("kind", kind)],
            ))
        };
        (
            gauge("resilience4j_circuitbreaker_buffered_calls"),
            gauge("resilience4j_circuitbreaker_slow_calls"),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while window("successful").0 != 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(window("successful"), (4, 0));
    assert_eq!(chain_get(&envoy, None).status, 200, "still closed");
    // An upstream that is slow itself is: two slow calls of the last four open the circuit.
    upstream.push_n(2, Action::delay(300, 200));
    assert_eq!(chain_get(&envoy, None).status, 200);
    assert_eq!(chain_get(&envoy, None).status, 200);
    // (The circuit opened on that call, which publishes the gauges at once.)
    assert_eq!(window("successful").1, 2);
    let fallback = chain_get(&envoy, None);
    assert_eq!(fallback.status, 503, "{}", fallback.text());
    assert!(fallback.header("x-circuit-breaker").is_some());
    assert_eq!(upstream.count(), 7);
}
