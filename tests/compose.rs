//! The docker compose path (`make docker-run`, envoy/compose/) runs the same files as the native
//! path: the official Envoy image at the version the tests use, envoy/bootstrap.yaml and
//! envoy/policy.json mounted as they are, rendered by envoy/compose/render.sh exactly as
//! tests/support renders them, and the module `make wasm` builds. There is no docker engine
//! here, so the compose entrypoint is also run natively: it starts a working Envoy that applies
//! a changed policy.json live.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::Value;

fn compose_dir() -> PathBuf {
    repo_root().join("envoy/compose")
}

fn compose() -> Value {
    yaml::load_file(&compose_dir().join("docker-compose.yaml"))
        .unwrap()
        .remove(0)
}

/// The Envoy version the native path installs (scripts/install-deps.sh).
fn native_envoy_version() -> String {
    let script = std::fs::read_to_string(repo_root().join("scripts/install-deps.sh")).unwrap();
    script
        .lines()
        .find_map(|l| l.strip_prefix("ENVOY_VERSION="))
        .expect("ENVOY_VERSION= in scripts/install-deps.sh")
        .trim()
        .to_string()
}

/// A bind mount's source, resolved as compose does (relative to the compose file's directory).
fn mount_source(service: &Value, target: &str) -> PathBuf {
    let volume = service["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["target"] == target)
        .unwrap_or_else(|| panic!("no volume with target {target}"));
    assert_eq!(volume["type"], "bind");
    assert_eq!(
        volume["read_only"], true,
        "{target} must be mounted read-only"
    );
    let source = compose_dir().join(volume["source"].as_str().unwrap());
    normalize(&source)
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn compose_pins_the_envoy_version_the_tests_run() {
    let want = format!("envoyproxy/envoy:v{}", native_envoy_version());
    let services = &compose()["services"];
    for name in ["envoy", "upstreams"] {
        assert_eq!(services[name]["image"], want.as_str(), "service {name}");
    }
    // And the Envoy in .venv really is that version (when installed).
    let bin = envoy_bin();
    if let Ok(out) = Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("/{}/", native_envoy_version())),
            "{}: {text}",
            bin.display()
        );
    }
}

#[test]
fn compose_mounts_the_native_config_files_and_module() {
    let envoy = &compose()["services"]["envoy"];
    let env = &envoy["environment"];
    let config_dir = mount_source(envoy, env["ENVOY_DIR"].as_str().unwrap());
    // The directory holding the very files the harness and the demo read.
    assert_eq!(
        config_dir,
        normalize(&bootstrap_template()).parent().unwrap()
    );
    assert!(config_dir.join("bootstrap.yaml").is_file());
    assert!(config_dir.join("policy.json").is_file());
    // `make run` reads envoy/policy.json: the demo loads the harness's shipped_policy().
    assert_eq!(
        config_dir.join("policy.json"),
        normalize(&repo_root().join(SHIPPED_POLICY))
    );
    let demo = std::fs::read_to_string(repo_root().join("tools/demo/src/main.rs")).unwrap();
    assert!(
        demo.contains("shipped_policy()"),
        "make run reads envoy/policy.json"
    );
    // The entrypoint is render.sh from that same mount.
    assert_eq!(
        envoy["entrypoint"][1],
        format!("{}/compose/render.sh", env["ENVOY_DIR"].as_str().unwrap())
    );
    // The module is the one `make wasm` builds (the Makefile's FILTER_WASM default).
    let wasm = mount_source(envoy, env["WASM"].as_str().unwrap());
    assert_eq!(wasm, repo_root().join(FILTER_WASM));
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).unwrap();
    assert!(makefile.contains(&format!("FILTER_WASM ?= $(ROOT)/{FILTER_WASM}")));
    // Every placeholder of the bootstrap has a value in the compose environment.
    let template = std::fs::read_to_string(bootstrap_template()).unwrap();
    for token in template.split("{{").skip(1) {
        let name = token.split("}}").next().unwrap();
        assert!(env.get(name).is_some(), "compose sets no {name}");
    }
}

fn values(dir: &Path, ports: [u16; 7]) -> BootstrapValues {
    BootstrapValues {
        admin_port: ports[0],
        listen_port: ports[1],
        ecds_path: dir.join("ecds.yaml"),
        user_service_port: ports[2],
        order_service_port: ports[3],
        istio_user_service_port: ports[4],
        payment_service_port: ports[5],
        kafka_bridge_port: ports[6],
    }
}

fn render_sh(envoy_dir: &Path, out: &Path, wasm: &Path, v: &BootstrapValues) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg(compose_dir().join("render.sh"))
        .env("ENVOY_DIR", envoy_dir)
        .env("OUT_DIR", out)
        .env("WASM", wasm)
        .env("ECDS_PATH", &v.ecds_path)
        .env("ADMIN_PORT", v.admin_port.to_string())
        .env("LISTEN_PORT", v.listen_port.to_string())
        .env("USER_SERVICE_PORT", v.user_service_port.to_string())
        .env("ORDER_SERVICE_PORT", v.order_service_port.to_string())
        .env(
            "ISTIO_USER_SERVICE_PORT",
            v.istio_user_service_port.to_string(),
        )
        .env("PAYMENT_SERVICE_PORT", v.payment_service_port.to_string())
        .env("KAFKA_BRIDGE_PORT", v.kafka_bridge_port.to_string())
        .stdin(Stdio::null());
    cmd
}

#[test]
fn render_sh_renders_exactly_what_the_native_path_renders() {
    let dir = TempDir::new("compose-render").unwrap();
    let v = values(
        dir.path(),
        [19901, 19900, 19911, 19912, 19913, 19914, 19915],
    );
    let wasm = filter_wasm();
    let out = render_sh(&repo_root().join("envoy"), dir.path(), &wasm, &v)
        .env("RENDER_ONLY", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let native = render_bootstrap(&bootstrap_template(), &v).unwrap();
    let compose = std::fs::read_to_string(dir.path().join("bootstrap.yaml")).unwrap();
    assert_eq!(
        compose, native,
        "render.sh and tests/support render the bootstrap differently"
    );

    // The ECDS resource is the harness's, with envoy/policy.json as the policy text.
    let policy = std::fs::read_to_string(repo_root().join("envoy/policy.json")).unwrap();
    let mut ecds = yaml::load_file(&v.ecds_path).unwrap().remove(0);
    let value = &mut ecds["resources"][0]["typed_config"]["config"]["configuration"]["value"];
    assert_eq!(
        value.as_str().unwrap().trim_end(),
        policy.trim_end(),
        "the policy text as is"
    );
    *value = serde_json::from_str(value.as_str().unwrap()).unwrap();
    let mut expected = ecds_response(1, &wasm, &policy);
    let value = &mut expected["resources"][0]["typed_config"]["config"]["configuration"]["value"];
    *value = serde_json::from_str(value.as_str().unwrap()).unwrap();
    assert_eq!(ecds, expected);

    // Both render.sh outputs and the upstreams' config are valid for this Envoy version.
    envoy_validate(&dir.path().join("bootstrap.yaml")).unwrap();
    envoy_validate(&compose_dir().join("upstreams.yaml")).unwrap();

    // A placeholder without a value is an error, as in the harness.
    let out = render_sh(&repo_root().join("envoy"), dir.path(), &wasm, &v)
        .env("RENDER_ONLY", "1")
        .env_remove("PAYMENT_SERVICE_PORT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("{{PAYMENT_SERVICE_PORT}} has no value"));
}

/// The compose entrypoint run natively (its own process group, killed whole on drop: render.sh
/// leaves a policy watcher beside Envoy).
struct Entrypoint {
    child: Child,
    admin_port: u16,
}

impl Drop for Entrypoint {
    fn drop(&mut self) {
        extern "C" {
            fn kill(pid: i32, sig: i32) -> i32;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group this test created; no memory is passed.
            unsafe {
                kill(-pid, 15);
            }
            std::thread::sleep(Duration::from_millis(300));
            unsafe {
                kill(-pid, 9);
            }
        }
        let _ = self.child.wait();
    }
}

impl Entrypoint {
    fn counter(&self, name: &str) -> u64 {
        let path = format!(
            "/stats?filter=^{}{name}$",
            ECDS_STAT_PREFIX.replace('.', "\\.")
        );
        get(self.admin_port, "127.0.0.1", &path)
            .ok()
            .and_then(|r| {
                r.text()
                    .lines()
                    .find_map(|l| l.split_once(": ").map(|(_, v)| v.trim().parse().ok()))
                    .flatten()
            })
            .unwrap_or(0)
    }

    fn wait_counter(&self, name: &str, above: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.counter(name) <= above {
            assert!(Instant::now() < deadline, "{name} did not go above {above}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn compose_entrypoint_serves_and_applies_a_changed_policy_live() {
    let services = Services::start().unwrap();
    let dir = TempDir::new("compose-live").unwrap();
    // A copy of envoy/ so the test may edit policy.json as a user of `make docker-run` would.
    let envoy_dir = dir.path().join("envoy");
    std::fs::create_dir_all(envoy_dir.join("compose")).unwrap();
    for f in ["bootstrap.yaml", "policy.json"] {
        std::fs::copy(repo_root().join("envoy").join(f), envoy_dir.join(f)).unwrap();
    }
    let ports = [
        free_port().unwrap(),
        free_port().unwrap(),
        services.user.port(),
        services.order.port(),
        services.istio_user.port(),
        services.payment.port(),
        services.bridge.port(),
    ];
    let out = dir.path().join("out");
    let v = values(&out, ports);
    let bin_dir = envoy_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = std::fs::File::create(dir.path().join("envoy.log")).unwrap();
    let child = render_sh(&envoy_dir, &out, &filter_wasm(), &v)
        .env("PATH", path)
        .env("LOG_LEVEL", "warning")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    let entry = Entrypoint {
        child,
        admin_port: v.admin_port,
    };
    entry.wait_counter("update_success", 0);

    services.user.set_default(Action::status(200));
    let ok = request(v.listen_port, "GET", USER, "/users/42", &[], b"").unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(services.user.count(), 1);

    // Lower user-service's threshold in policy.json: the watcher pushes it, Envoy applies it.
    let mut policy: Value =
        serde_json::from_str(&std::fs::read_to_string(envoy_dir.join("policy.json")).unwrap())
            .unwrap();
    set_path(
        &mut policy,
        "resilience4j.circuitbreaker.instances.user-service.failure-rate-threshold",
        serde_json::json!(20),
    );
    let before = entry.counter("update_success");
    write_atomically(&envoy_dir.join("policy.json"), &policy.to_string()).unwrap();
    entry.wait_counter("update_success", before);

    // A broken policy.json is rejected and the previous one keeps serving.
    let rejected = entry.counter("update_rejected");
    set_path(
        &mut policy,
        "resilience4j.circuitbreaker.instances.user-service.failure-rate-threshold",
        serde_json::json!(120),
    );
    write_atomically(&envoy_dir.join("policy.json"), &policy.to_string()).unwrap();
    entry.wait_counter("update_rejected", rejected);
    let ok = request(v.listen_port, "GET", USER, "/users/42", &[], b"").unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(services.user.count(), 2);
}

#[test]
fn compose_runs_the_real_strimzi_bridge_where_the_bootstrap_sends_events() {
    let compose = compose();
    let services = &compose["services"];
    let bridge = &services["kafka-bridge"];
    assert!(
        bridge["image"]
            .as_str()
            .unwrap()
            .starts_with("quay.io/strimzi/kafka-bridge:"),
        "the docker run uses the real Strimzi Kafka Bridge"
    );
    let properties = std::fs::read_to_string(mount_source(
        bridge,
        "/opt/strimzi/config/sidecar-demo.properties",
    ))
    .unwrap();
    let property = |key: &str| {
        properties
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in kafka-bridge.properties"))
            .to_string()
    };
    // Envoy's kafka-bridge cluster points where the bridge listens ...
    assert_eq!(
        services["envoy"]["environment"]["KAFKA_BRIDGE_PORT"]
            .as_str()
            .unwrap(),
        property("http.port")
    );
    // ... and the bridge produces to the broker's advertised listener.
    let advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        .as_str()
        .unwrap();
    assert_eq!(
        advertised.strip_prefix("PLAINTEXT://").unwrap(),
        property("kafka.bootstrap.servers")
    );
}
