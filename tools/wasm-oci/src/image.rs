//! The image: blobs, manifest, OCI image layout on disk.

use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";

pub fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

pub struct Image {
    pub layer: Vec<u8>,
    pub layer_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl Image {
    pub fn new(module: Vec<u8>, title: &str) -> Image {
        // The spec's config: what the module is. Istio does not read it; no timestamps, so the
        // digest depends on the module only.
        let config = json!({
            "type": "envoy_proxy",
            "abiVersions": ["proxy_abi_version_0_2_1"],
        })
        .to_string()
        .into_bytes();
        let layer_digest = digest(&module);
        let config_digest = digest(&config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": layer_digest,
                "size": module.len(),
                "annotations": {"org.opencontainers.image.title": title},
            }],
        })
        .to_string()
        .into_bytes();
        let manifest_digest = digest(&manifest);
        Image {
            layer: module,
            layer_digest,
            config,
            config_digest,
            manifest,
            manifest_digest,
        }
    }

    /// An OCI image layout (oci-layout, index.json, blobs/sha256/*) at `dir`, replacing what
    /// was there. `reference` (if any) names the image in index.json.
    pub fn write_layout(&self, dir: &Path, reference: Option<&str>) -> Result<(), String> {
        let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        let blobs = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| io(&blobs, e))?;
        for (d, bytes) in [
            (&self.layer_digest, &self.layer),
            (&self.config_digest, &self.config),
            (&self.manifest_digest, &self.manifest),
        ] {
            let p = blobs.join(hex_of(d));
            std::fs::write(&p, bytes).map_err(|e| io(&p, e))?;
        }
        let mut descriptor = json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": self.manifest_digest,
            "size": self.manifest.len(),
        });
        if let Some(r) = reference {
            descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": r});
        }
        let index = json!({"schemaVersion": 2, "manifests": [descriptor]});
        let p = dir.join("index.json");
        std::fs::write(&p, index.to_string()).map_err(|e| io(&p, e))?;
        let p = dir.join("oci-layout");
        std::fs::write(&p, r#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|e| io(&p, e))?;
        Ok(())
    }
}
