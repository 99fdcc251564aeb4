//! A real Envoy with the filter delivered through ECDS from a file.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    bootstrap_template, ecds_response, envoy_bin, envoy_command, filter_wasm, free_port, get,
    render_bootstrap, request, request_with_timeout, write_atomically, BootstrapValues, Response,
    Services, TempDir,
};

/// Where the clusters of a bootstrap template point: one port per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicePorts {
    pub user: u16,
    pub order: u16,
    pub istio_user: u16,
    pub payment: u16,
    /// Cluster `kafka-bridge`: the Kafka HTTP bridge.
    pub kafka_bridge: u16,
}

impl ServicePorts {
    /// Every service on one port (the bench's single upstream).
    pub fn all(port: u16) -> ServicePorts {
        ServicePorts {
            user: port,
            order: port,
            istio_user: port,
            payment: port,
            kafka_bridge: port,
        }
    }
}

impl Services {
    /// The ports of these upstreams.
    pub fn ports(&self) -> ServicePorts {
        ServicePorts {
            user: self.user.port(),
            order: self.order.port(),
            istio_user: self.istio_user.port(),
            payment: self.payment.port(),
            kafka_bridge: self.bridge.port(),
        }
    }
}

/// How Envoy answered a policy pushed through ECDS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyUpdate {
    /// `update_success` went up: the new policy serves new streams.
    Applied,
    /// `update_rejected` (or `update_failure`) went up: the previous policy keeps serving.
    Rejected,
}

/// ECDS counters for the filter; all under `extension_config_discovery.http_filter.<name>.`.
/// (`config_reload` counts every attempt, accepted or not, so it does not tell the outcome.)
pub const ECDS_STAT_PREFIX: &str = "extension_config_discovery.http_filter.sidecar-resilience.";

/// Options for [`Envoy::start_with`] and [`Envoy::start_on`]; `Default` picks free ports, the
/// shipped bootstrap and the built filter.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub admin_port: Option<u16>,
    pub listen_port: Option<u16>,
    /// Envoy's `-l` level (`info` by default: the filter's info logs and Envoy's config messages).
    pub log_level: String,
    pub startup_timeout: Duration,
    /// The bootstrap template (`envoy/bootstrap.yaml` by default; the bench's are under
    /// `envoy/bench/`).
    pub template: PathBuf,
    /// The filter module the ECDS file names ([`filter_wasm`] by default).
    pub wasm: PathBuf,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            admin_port: None,
            listen_port: None,
            log_level: "info".to_string(),
            startup_timeout: Duration::from_secs(90),
            template: bootstrap_template(),
            wasm: filter_wasm(),
        }
    }
}

/// A running Envoy (`--concurrency 2`) from a bootstrap template (`envoy/bootstrap.yaml` unless
/// [`EnvoyOptions::template`] says otherwise), with the filter delivered by ECDS from a file in
/// its own temp dir. Dropping it stops Envoy (SIGTERM, then SIGKILL), prints the Envoy log if the
/// thread is panicking (a failing test), and removes the temp dir.
pub struct Envoy {
    child: Option<Child>,
    dir: TempDir,
    admin_port: u16,
    listen_port: u16,
    ecds_path: PathBuf,
    wasm: PathBuf,
    version: u64,
}

impl Envoy {
    /// Starts Envoy with `policy` in front of `services`; returns once admin `/ready` says LIVE,
    /// the listener answers and the policy was applied.
    pub fn start(services: &Services, policy: &Value) -> Result<Envoy, String> {
        Envoy::start_with(services, policy, &EnvoyOptions::default())
    }

    pub fn start_with(
        services: &Services,
        policy: &Value,
        options: &EnvoyOptions,
    ) -> Result<Envoy, String> {
        Envoy::start_on(&services.ports(), Some(policy), options)
    }

    /// Starts Envoy with its clusters pointing at `ports`; with `policy`, the filter is
    /// delivered through ECDS carrying it (without, no ECDS file is written: for templates
    /// without the filter). Returns once admin `/ready` says LIVE, the listener answers and the
    /// policy (if any) was applied.
    pub fn start_on(
        ports: &ServicePorts,
        policy: Option<&Value>,
        options: &EnvoyOptions,
    ) -> Result<Envoy, String> {
        let fixed_ports = options.admin_port.is_some() || options.listen_port.is_some();
        let policy_json = policy.map(Value::to_string);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Envoy::start_once(ports, policy_json.as_deref(), options) {
                // Free ports are only free until someone else binds them: retry on a clash.
                Err(e) if !fixed_ports && attempt < 3 && e.contains("Address already in use") => {
                    continue
                }
                result => return result,
            }
        }
    }

    fn start_once(
        ports: &ServicePorts,
        policy_json: Option<&str>,
        options: &EnvoyOptions,
    ) -> Result<Envoy, String> {
        let wasm = options.wasm.clone();
        if policy_json.is_some() && !wasm.is_file() {
            return Err(format!(
                "filter not built: {} (run `make wasm`)",
                wasm.display()
            ));
        }
        let bin = envoy_bin();
        let port = |fixed: Option<u16>| match fixed {
            Some(p) => Ok(p),
            None => free_port().map_err(|e| format!("free port: {e}")),
        };
        let dir = TempDir::new("sidecar-envoy").map_err(|e| format!("temp dir: {e}"))?;
        let ecds_path = dir.path().join("ecds.json");
        let values = BootstrapValues {
            admin_port: port(options.admin_port)?,
            listen_port: port(options.listen_port)?,
            ecds_path: ecds_path.clone(),
            user_service_port: ports.user,
            order_service_port: ports.order,
            istio_user_service_port: ports.istio_user,
            payment_service_port: ports.payment,
            kafka_bridge_port: ports.kafka_bridge,
        };
        let bootstrap = render_bootstrap(&options.template, &values)?;
        let bootstrap_path = dir.path().join("bootstrap.yaml");
        std::fs::write(&bootstrap_path, bootstrap)
            .map_err(|e| format!("writing {}: {e}", bootstrap_path.display()))?;
        if let Some(policy_json) = policy_json {
            write_atomically(
                &ecds_path,
                &ecds_response(1, &wasm, policy_json).to_string(),
            )
            .map_err(|e| format!("writing {}: {e}", ecds_path.display()))?;
        }

        let stdio_path = dir.path().join("stdio.log");
        let stdio = std::fs::File::create(&stdio_path)
            .map_err(|e| format!("creating {}: {e}", stdio_path.display()))?;
        let stdio_err = stdio.try_clone().map_err(|e| format!("stdio: {e}"))?;
        let child = envoy_command(&bootstrap_path)
            .args(["-l", &options.log_level])
            .arg("--log-path")
            .arg(dir.path().join("envoy.log"))
            .args(["--file-flush-interval-msec", "50"])
            .stdin(Stdio::null())
            .stdout(stdio)
            .stderr(stdio_err)
            .spawn()
            .map_err(|e| format!("starting {}: {e} (run `make deps`)", bin.display()))?;
        let mut envoy = Envoy {
            child: Some(child),
            dir,
            admin_port: values.admin_port,
            listen_port: values.listen_port,
            ecds_path,
            wasm,
            version: 1,
        };
        match envoy.wait_started(options.startup_timeout, policy_json.is_some()) {
            Ok(()) => Ok(envoy),
            Err(e) => Err(format!("{e}\n--- envoy log ---\n{}", envoy.log())),
        }
    }

    fn wait_started(&mut self, timeout: Duration, with_policy: bool) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let short = Duration::from_secs(2);
        #[derive(Debug)]
        enum Stage {
            AdminReady,
            Listener,
            InitialPolicy,
        }
        let mut stage = Stage::AdminReady;
        loop {
            self.check_running()?;
            if Instant::now() >= deadline {
                return Err(format!(
                    "envoy not started after {timeout:?}: waiting for {stage:?}"
                ));
            }
            let done = match stage {
                Stage::AdminReady => self
                    .admin_get_timeout("/ready", short)
                    .is_ok_and(|body| body.trim() == "LIVE"),
                Stage::Listener => {
                    // An authority no virtual host matches: Envoy answers 404 itself.
                    request_with_timeout(
                        self.listen_port,
                        "GET",
                        "harness-probe",
                        "/",
                        &[],
                        b"",
                        short,
                    )
                    .is_ok()
                }
                Stage::InitialPolicy if !with_policy => return Ok(()),
                Stage::InitialPolicy => {
                    let success = self.ecds_counter("update_success");
                    let rejected =
                        self.ecds_counter("update_rejected") + self.ecds_counter("update_failure");
                    if success > 0 {
                        return Ok(());
                    }
                    if rejected > 0 {
                        return Err("the initial policy was rejected".to_string());
                    }
                    false
                }
            };
            if done {
                stage = match stage {
                    Stage::AdminReady => Stage::Listener,
                    _ => Stage::InitialPolicy,
                };
                continue;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn check_running(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            Some(Ok(Some(status))) => Err(format!("envoy exited: {status}")),
            Some(Err(e)) => Err(format!("envoy: {e}")),
            None => Err("envoy was stopped".to_string()),
        }
    }

    /// The listener port (send requests here with an authority from the bootstrap).
    pub fn port(&self) -> u16 {
        self.listen_port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Envoy's process id (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// The temp dir holding bootstrap.yaml, ecds.json and envoy.log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A request through Envoy's listener.
    pub fn request(
        &self,
        method: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl AsRef<[u8]>,
    ) -> io::Result<Response> {
        request(self.listen_port, method, authority, path, headers, body)
    }

    /// A GET through Envoy's listener.
    pub fn get(&self, authority: &str, path: &str) -> io::Result<Response> {
        get(self.listen_port, authority, path)
    }

    /// Replaces the filter's policy through ECDS, as a rollout would (atomic file replace), and
    /// waits until Envoy reports the update applied or rejected.
    pub fn set_policy(&mut self, policy: &Value) -> Result<PolicyUpdate, String> {
        self.set_policy_text(&policy.to_string())
    }

    /// [`Envoy::set_policy`] with raw text (for policies that are not even JSON).
    pub fn set_policy_text(&mut self, policy_json: &str) -> Result<PolicyUpdate, String> {
        let success = self.ecds_counter("update_success");
        let rejected = self.ecds_counter("update_rejected") + self.ecds_counter("update_failure");
        self.version += 1;
        let text = ecds_response(self.version, &self.wasm, policy_json).to_string();
        write_atomically(&self.ecds_path, &text)
            .map_err(|e| format!("writing {}: {e}", self.ecds_path.display()))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.check_running()?;
            if self.ecds_counter("update_success") > success {
                return Ok(PolicyUpdate::Applied);
            }
            let now_rejected =
                self.ecds_counter("update_rejected") + self.ecds_counter("update_failure");
            if now_rejected > rejected {
                return Ok(PolicyUpdate::Rejected);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "ECDS update {} neither applied nor rejected in 15s",
                    self.version
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the admin interface; the body, or an error for a non-200 status.
    pub fn admin_get(&self, path: &str) -> Result<String, String> {
        self.admin_get_timeout(path, Duration::from_secs(5))
    }

    /// POST on the admin interface (e.g. `/logging?wasm=trace`), as [`Envoy::admin_get`].
    pub fn admin_post(&self, path: &str) -> Result<String, String> {
        self.admin_call("POST", path, Duration::from_secs(5))
    }

    fn admin_get_timeout(&self, path: &str, timeout: Duration) -> Result<String, String> {
        self.admin_call("GET", path, timeout)
    }

    fn admin_call(&self, method: &str, path: &str, timeout: Duration) -> Result<String, String> {
        let response = request_with_timeout(
            self.admin_port,
            method,
            "127.0.0.1",
            path,
            &[],
            b"",
            timeout,
        )
        .map_err(|e| format!("admin: {e}"))?;
        if response.status != 200 {
            return Err(format!(
                "admin {path}: {} {}",
                response.status,
                response.text()
            ));
        }
        Ok(response.text())
    }

    /// All stats from admin `/stats`, name → value text (counters and gauges are integers;
    /// histograms are summaries).
    pub fn stats(&self) -> Result<BTreeMap<String, String>, String> {
        let text = self.admin_get("/stats")?;
        Ok(text
            .lines()
            .filter_map(|line| line.split_once(": "))
            .map(|(name, value)| (name.to_string(), value.trim().to_string()))
            .collect())
    }

    /// A counter or gauge; None if Envoy has no such stat (or it is not a number).
    pub fn stat(&self, name: &str) -> Option<u64> {
        let filter = percent_encode(&format!("^{}$", regex_escape(name)));
        let text = self.admin_get(&format!("/stats?filter={filter}")).ok()?;
        text.lines()
            .filter_map(|line| line.split_once(": "))
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.trim().parse().ok())
    }

    /// One of the filter's series by its Prometheus name and labels (read from `/stats` under
    /// its Envoy name, [`stat_name`]); 0 when absent.
    pub fn metric(&self, series: &str, labels: &[(&str, &str)]) -> u64 {
        self.stat(&stat_name(series, labels)).unwrap_or(0)
    }

    /// One of the filter's counters once it reads `expected` ([`super::counter_reaches`]: the
    /// filter flushes its counts on its tick); the value last read, for the caller to assert.
    pub fn counter(&self, series: &str, labels: &[(&str, &str)], expected: u64) -> u64 {
        super::counter_reaches(|| self.metric(series, labels), expected)
    }

    /// Counters and gauges whose name matches `regex` (admin `/stats?filter=`), name → value.
    pub fn counters(&self, regex: &str) -> Result<BTreeMap<String, u64>, String> {
        let text = self.admin_get(&format!("/stats?filter={}", percent_encode(regex)))?;
        Ok(text
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter_map(|(name, value)| Some((name.to_string(), value.trim().parse().ok()?)))
            .collect())
    }

    /// One of the filter's ECDS counters (see [`ECDS_STAT_PREFIX`]); 0 when absent.
    pub fn ecds_counter(&self, name: &str) -> u64 {
        self.stat(&format!("{ECDS_STAT_PREFIX}{name}")).unwrap_or(0)
    }

    /// The ECDS `version_info` of the filter config currently serving (the harness numbers
    /// them 1, 2, … per file write, rejected ones included).
    pub fn ecds_version(&self) -> Option<String> {
        let name = format!("{ECDS_STAT_PREFIX}version_text");
        self.stats()
            .ok()?
            .get(&name)
            .map(|v| v.trim_matches('"').to_string())
    }

    /// Envoy's log so far (the `--log-path` file, then anything on stdout/stderr).
    pub fn log(&self) -> String {
        let mut log =
            std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default();
        let stdio = std::fs::read_to_string(self.dir.path().join("stdio.log")).unwrap_or_default();
        if !stdio.trim().is_empty() {
            log.push_str("--- stdout/stderr ---\n");
            log.push_str(&stdio);
        }
        log
    }

    /// Err if the filter's VM panicked or trapped: a crashed VM fails every later request on its
    /// worker, so every test that drives traffic should end with this check.
    pub fn filter_crashes(&self) -> Result<(), String> {
        let log = self.log();
        let crashes: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("panicked at")
                    || l.contains("Uncaught RuntimeError")
                    || l.contains("wasm trap")
                    || (l.contains("[critical]") && l.contains("wasm log"))
            })
            .collect();
        if crashes.is_empty() {
            Ok(())
        } else {
            Err(crashes.join("\n"))
        }
    }

    /// A position in the log, for [`Envoy::log_since`].
    pub fn log_mark(&self) -> usize {
        std::fs::metadata(self.dir.path().join("envoy.log"))
            .map(|m| m.len() as usize)
            .unwrap_or(0)
    }

    /// The log written after `mark`.
    pub fn log_since(&self, mark: usize) -> String {
        let bytes = std::fs::read(self.dir.path().join("envoy.log")).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(mark..).unwrap_or_default()).into_owned()
    }

    /// Waits until a log line after `mark` contains `needle`; returns the matching lines.
    pub fn wait_for_log(
        &self,
        mark: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines: Vec<String> = self
                .log_since(mark)
                .lines()
                .filter(|line| line.contains(needle))
                .map(str::to_string)
                .collect();
            if !lines.is_empty() {
                return Ok(lines);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no log line containing {needle:?} within {timeout:?}"
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops Envoy now (also done on drop): SIGTERM, up to 5 s to exit, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            sigterm(child.id());
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- envoy log ({}) ---\n{}--- end of envoy log ---",
                self.dir.path().display(),
                self.log()
            );
        }
        self.stop();
    }
}

/// SIGTERM lets Envoy shut down cleanly (std's `Child::kill` is SIGKILL only).
#[cfg(unix)]
fn sigterm(pid: u32) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGTERM: i32 = 15;
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a pid of our own child process; no memory is passed.
        let _ = unsafe { kill(pid, SIGTERM) };
    }
}

#[cfg(not(unix))]
fn sigterm(_pid: u32) {}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay as they are).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Envoy name of one of the filter's series: its labels in Istio's `key=.=value;.;`
/// encoding, then the series name (as src/host/metrics.rs writes them; tests that read
/// `/stats/prometheus` check the two agree).
pub fn stat_name(series: &str, labels: &[(&str, &str)]) -> String {
    let tags: String = labels
        .iter()
        .map(|(k, v)| format!("{k}=.={};.;", v.replace(['.', ';'], "_")))
        .collect();
    format!("wasmcustom.{tags}{series}")
}
