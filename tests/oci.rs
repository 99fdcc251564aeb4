//! `make oci` / wasm-oci: the filter as a Wasm OCI image, pushed without a docker engine to a
//! real registry on loopback (Debian's `docker-registry`, the reference distribution server,
//! started here on a free port with a temp config), then pulled back by digest: the layer's
//! bytes are the built .wasm and the manifest's digest is its sha256.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A `docker-registry serve` on 127.0.0.1, storage in a temp dir; stopped on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Registry {
    fn start() -> Registry {
        let bin = std::env::var_os("REGISTRY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("docker-registry"));
        let dir = TempDir::new("oci-registry").unwrap();
        let port = free_port().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {}: {e} (run `make deps-oci`: apt-get install docker-registry)",
                    bin.display()
                )
            });
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = get(port, "127.0.0.1", "/v2/") {
                if r.status == 200 {
                    return registry;
                }
            }
            assert!(
                Instant::now() < deadline,
                "registry did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build(),
    )
}

fn fetch(url: &str, accept: &str) -> (u16, Option<String>, Vec<u8>) {
    let mut response = agent().get(url).header("Accept", accept).call().unwrap();
    let digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .unwrap();
    (status, digest, body)
}

fn build(out: &Path, extra: &[&str]) -> String {
    wasm_oci_build(&filter_wasm(), out, extra).unwrap()
}

fn line_value<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{stdout}"))
}

#[test]
fn push_then_pull_by_digest_gives_back_the_module() {
    let wasm = std::fs::read(filter_wasm()).expect("filter built (make wasm)");
    let registry = Registry::start();
    let out = TempDir::new("oci-out").unwrap();
    let image = format!("127.0.0.1:{}/mesh/sidecar-resilience:test", registry.port);
    let stdout = build(out.path(), &["--image", &image, "--push"]);
    let digest = line_value(&stdout, "digest ").to_string();
    assert!(
        stdout.contains(&format!(
            "pushed 127.0.0.1:{}/mesh/sidecar-resilience@{digest}",
            registry.port
        )),
        "{stdout}"
    );

    let base = format!(
        "http://127.0.0.1:{}/v2/mesh/sidecar-resilience",
        registry.port
    );
    // By tag: the registry names the manifest by the digest we computed.
    let (status, by_tag_digest, by_tag) = fetch(&format!("{base}/manifests/test"), MANIFEST);
    assert_eq!(status, 200);
    assert_eq!(by_tag_digest.as_deref(), Some(digest.as_str()));
    // By digest: the very bytes, whose sha256 is the digest.
    let (status, _, manifest_bytes) = fetch(&format!("{base}/manifests/{digest}"), MANIFEST);
    assert_eq!(status, 200);
    assert_eq!(manifest_bytes, by_tag);
    assert_eq!(format!("sha256:{}", sha256(&manifest_bytes)), digest);

    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.module.wasm.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "the module is the single layer");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.module.wasm.content.layer.v1+wasm"
    );
    let layer_digest = layers[0]["digest"].as_str().unwrap();
    assert_eq!(layer_digest, format!("sha256:{}", sha256(&wasm)));
    assert_eq!(layers[0]["size"], wasm.len());

    let (status, _, pulled) = fetch(&format!("{base}/blobs/{layer_digest}"), "*/*");
    assert_eq!(status, 200);
    assert!(pulled == wasm, "pulled layer differs from the built .wasm");
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let (status, _, config) = fetch(&format!("{base}/blobs/{config_digest}"), "*/*");
    assert_eq!(status, 200);
    assert_eq!(format!("sha256:{}", sha256(&config)), config_digest);

    // The rendered WasmPlugins point at this image and carry the digest Istio verifies; the
    // canary too, with IfNotPresent (a pinned module is looked up by its checksum).
    for name in [
        "sidecar-resilience",
        "sidecar-resilience-canary",
        "sidecar-resilience-gateway",
    ] {
        let rendered = yaml::load_file(&out.path().join(format!("istio/{name}.yaml"))).unwrap();
        let spec = &rendered[0]["spec"];
        assert_eq!(spec["url"], format!("oci://{image}"), "{name}");
        assert_eq!(
            spec["sha256"],
            digest.trim_start_matches("sha256:"),
            "{name}"
        );
        assert_eq!(spec["imagePullPolicy"], "IfNotPresent", "{name}");
    }
    // A file:// module is copied as is: Istio checks no sha256 for it.
    let file = yaml::load_file(&out.path().join("istio/sidecar-resilience-file.yaml")).unwrap();
    assert!(file[0]["spec"].get("sha256").is_none());
    assert_eq!(
        file[0]["spec"],
        yaml::load_file(&repo_root().join("istio/sidecar-resilience-file.yaml")).unwrap()[0]
            ["spec"]
    );

    // Pushing again is harmless (blobs already there) and names the same manifest.
    let again = build(out.path(), &["--image", &image, "--push"]);
    assert_eq!(line_value(&again, "digest "), digest);
}

#[test]
fn layout_on_disk_is_an_oci_image_layout_and_reproducible() {
    let wasm = std::fs::read(filter_wasm()).expect("filter built (make wasm)");
    let a = TempDir::new("oci-out").unwrap();
    let b = TempDir::new("oci-out").unwrap();
    let digest = line_value(&build(a.path(), &[]), "digest ").to_string();
    assert_eq!(
        line_value(&build(b.path(), &[]), "digest "),
        digest,
        "same .wasm, same image"
    );
    let layout = a.path().join("layout");
    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest);
    let blob = |d: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let manifest_bytes = blob(&digest);
    assert_eq!(format!("sha256:{}", sha256(&manifest_bytes)), digest);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert!(blob(manifest["layers"][0]["digest"].as_str().unwrap()) == wasm);
    // Without --image, no placeholder is left unfilled either.
    for entry in std::fs::read_dir(a.path().join("istio")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(!text.contains("{{"), "unfilled placeholder:\n{text}");
    }
}
