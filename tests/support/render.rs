//! Rendering: the bootstrap template, the ECDS resource, `envoy --mode validate`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::{envoy_bin, filter_wasm, repo_root, unique_suffix};

/// Replaces every `{{NAME}}` in `template`; fails if one is left without a value.
pub fn render_template(template: &str, values: &[(&str, String)]) -> Result<String, String> {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    match out.find("{{") {
        None => Ok(out),
        Some(at) => {
            let rest = &out[at..];
            let token = rest.find("}}").map(|end| &rest[..end + 2]).unwrap_or(rest);
            Err(format!("template placeholder {token} has no value"))
        }
    }
}

/// What `envoy/bootstrap.yaml` needs filled in.
#[derive(Debug, Clone)]
pub struct BootstrapValues {
    pub admin_port: u16,
    pub listen_port: u16,
    pub ecds_path: PathBuf,
    pub user_service_port: u16,
    pub order_service_port: u16,
    pub istio_user_service_port: u16,
    pub payment_service_port: u16,
    /// Cluster `kafka-bridge` (authority `kafka-bridge`): the Kafka HTTP bridge.
    pub kafka_bridge_port: u16,
}

impl BootstrapValues {
    /// Placeholder values, for validating a template without running anything.
    pub fn sample(ecds_path: &Path) -> Self {
        BootstrapValues {
            admin_port: 19901,
            listen_port: 19900,
            ecds_path: ecds_path.to_path_buf(),
            user_service_port: 19911,
            order_service_port: 19912,
            istio_user_service_port: 19913,
            payment_service_port: 19914,
            kafka_bridge_port: 19915,
        }
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ADMIN_PORT", self.admin_port.to_string()),
            ("LISTEN_PORT", self.listen_port.to_string()),
            ("ECDS_PATH", self.ecds_path.display().to_string()),
            ("USER_SERVICE_PORT", self.user_service_port.to_string()),
            ("ORDER_SERVICE_PORT", self.order_service_port.to_string()),
            (
                "ISTIO_USER_SERVICE_PORT",
                self.istio_user_service_port.to_string(),
            ),
            (
                "PAYMENT_SERVICE_PORT",
                self.payment_service_port.to_string(),
            ),
            ("KAFKA_BRIDGE_PORT", self.kafka_bridge_port.to_string()),
        ]
    }
}

/// The shipped bootstrap template.
pub fn bootstrap_template() -> PathBuf {
    repo_root().join("envoy/bootstrap.yaml")
}

/// Every Envoy bootstrap template shipped under `envoy/` and `envoy/bench/` (`*.yaml`), sorted.
/// (`envoy/compose/` holds compose files, validated by tests/compose.rs.)
pub fn shipped_bootstraps() -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in ["envoy", "envoy/bench"] {
        files.extend(
            std::fs::read_dir(repo_root().join(dir))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|ext| ext == "yaml" || ext == "yml")
                }),
        );
    }
    files.sort();
    Ok(files)
}

/// Renders a bootstrap template file with the given values.
pub fn render_bootstrap(template: &Path, values: &BootstrapValues) -> Result<String, String> {
    let text = std::fs::read_to_string(template)
        .map_err(|e| format!("reading {}: {e}", template.display()))?;
    render_template(&text, &values.pairs())
        .map_err(|e| format!("rendering {}: {e}", template.display()))
}

pub use tools_common::FILTER_NAME;

/// The Wasm filter config that loads the filter with a policy (`tools_common::envoy_config`).
pub fn wasm_filter_config(wasm: &Path, policy_json: &str) -> Value {
    tools_common::wasm_filter_config(&wasm.display().to_string(), policy_json)
}

/// The ECDS file contents (a `DiscoveryResponse`) that `config_discovery` in the bootstrap reads.
pub fn ecds_response(version: u64, wasm: &Path, policy_json: &str) -> Value {
    tools_common::ecds_response(version, &wasm.display().to_string(), policy_json)
}

/// A minimal bootstrap with the filter configured inline: `envoy --mode validate` on it loads the
/// .wasm and runs `on_configure` with the policy, which a dynamic (ECDS) config never gets in
/// validate mode.
pub fn inline_filter_bootstrap(wasm: &Path, policy_json: &str) -> Value {
    json!({
        "static_resources": {"listeners": [{
            "name": "validate",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 19900}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "validate",
                    "route_config": {},
                    "http_filters": [
                        {"name": FILTER_NAME, "typed_config": wasm_filter_config(wasm, policy_json)},
                        {"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                    ]
                }
            }]}]
        }]}
    })
}

/// Runs `envoy --mode validate -c <config>`; the error carries Envoy's output.
pub fn envoy_validate(config: &Path) -> Result<(), String> {
    let bin = envoy_bin();
    let out = Command::new(&bin)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "warning",
            "-c",
        ])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e} (run `make deps`)", bin.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "envoy --mode validate -c {} failed ({}):\n{}{}",
            config.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A temp directory removed on drop (unless `SIDECAR_KEEP_TMP` is set).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", unique_suffix()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("SIDECAR_KEEP_TMP").is_some() {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Validates every shipped bootstrap (rendered with sample values) and the filter config carrying
/// `policy` (inline, so Envoy loads the .wasm and the filter accepts the policy). Returns the
/// files it checked.
pub fn validate_shipped(policy_json: &str) -> Result<Vec<String>, String> {
    let dir = TempDir::new("sidecar-validate").map_err(|e| format!("temp dir: {e}"))?;
    let ecds = dir.path().join("ecds.json");
    let wasm = filter_wasm();
    let ecds_text = ecds_response(1, &wasm, policy_json).to_string();
    std::fs::write(&ecds, ecds_text).map_err(|e| format!("writing {}: {e}", ecds.display()))?;
    let mut checked = Vec::new();
    let templates = shipped_bootstraps().map_err(|e| format!("listing envoy/: {e}"))?;
    for template in templates {
        let rendered = render_bootstrap(&template, &BootstrapValues::sample(&ecds))?;
        let name = template
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("bootstrap.yaml");
        let out = dir.path().join(name);
        std::fs::write(&out, rendered).map_err(|e| format!("writing {}: {e}", out.display()))?;
        envoy_validate(&out)?;
        checked.push(template.display().to_string());
    }
    let inline = dir.path().join("inline-filter.json");
    let text = inline_filter_bootstrap(&wasm, policy_json).to_string();
    std::fs::write(&inline, text).map_err(|e| format!("writing {}: {e}", inline.display()))?;
    envoy_validate(&inline).map_err(|e| format!("filter {} with policy: {e}", wasm.display()))?;
    checked.push(format!("{} (inline filter config)", wasm.display()));
    Ok(checked)
}
