//! The manifests to deploy: istio/*.yaml pinned to the image just built (target/oci/istio/).
//!
//! The committed files apply as they are: their url is the default image name and they carry no
//! sha256. Pinning a WasmPlugin whose module comes from a registry (an `oci://` url, or no
//! scheme, which Istio reads as oci: pilot/pkg/model/extensions.go) sets
//! - `url` to the built image,
//! - `sha256` to its manifest digest, which istio-agent compares with the digest of the image it
//!   pulls, refusing the module on a mismatch (pkg/wasm/cache.go getOrFetch),
//! - `imagePullPolicy: Always` to `IfNotPresent`: with a checksum Istio finds the module by it and
//!   never pulls again, so Always would only promise what does not happen (cache.go getEntry).
//!
//! A `file://` or `http(s)://` module is not this image: copied as is. (Istio checks no sha256
//! for a file:// url at all: buildDataSource in pilot/pkg/model/extensions.go.) The edits are
//! line edits so the comments stay; the result is parsed back and checked.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// Pins every `*.yaml` under `templates` into `out`; returns the files written.
pub fn render_istio(
    templates: &Path,
    out: &Path,
    image_url: &str,
    manifest_sha256: &str,
) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(templates)
        .map_err(|e| format!("{}: {e}", templates.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut written = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let name = file.file_name().map(PathBuf::from).unwrap_or_default();
        let source = Path::new("istio").join(&name);
        let pinned = pin(&text, image_url, manifest_sha256)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let header = format!(
            "# Written by `make oci` (wasm-oci) from {}; edit that file, not this copy.\n",
            source.display()
        );
        let target = out.join(name);
        std::fs::write(&target, header + &pinned)
            .map_err(|e| format!("{}: {e}", target.display()))?;
        written.push(target);
    }
    Ok(written)
}

/// Is this module url one of this image's (oci, or no scheme)?
fn from_registry(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, _)) => scheme == "oci",
        None => {
            !url.starts_with("file:") && !url.starts_with("http:") && !url.starts_with("https:")
        }
    }
}

fn unquote(value: &str) -> &str {
    let v = value.trim();
    let v = v.split(" #").next().unwrap_or(v).trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(v)
}

/// One YAML document's lines, with the spec-level keys found.
#[derive(Default)]
struct SpecKeys {
    indent: Option<usize>,
    url: Option<usize>,
    sha256: Option<usize>,
    pull_policy: Option<usize>,
}

/// Pins the WasmPlugins in `text` (one or more YAML documents) to the image.
pub fn pin(text: &str, image_url: &str, sha256: &str) -> Result<String, String> {
    if let Some(at) = text.find("{{") {
        let token: String = text[at..].chars().take_while(|c| *c != '\n').collect();
        return Err(format!(
            "placeholder {token}: istio/ manifests carry valid values, not placeholders"
        ));
    }
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Documents as line ranges, each with its spec keys.
    let mut docs: Vec<SpecKeys> = vec![SpecKeys::default()];
    let mut in_spec = false;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("---") {
            docs.push(SpecKeys::default());
            in_spec = false;
            continue;
        }
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if indent == 0 {
            in_spec = content.trim_end() == "spec:";
            continue;
        }
        if !in_spec {
            continue;
        }
        let Some(doc) = docs.last_mut() else { continue };
        let spec_indent = *doc.indent.get_or_insert(indent);
        if indent != spec_indent {
            continue;
        }
        let slot = if content.starts_with("url:") {
            &mut doc.url
        } else if content.starts_with("sha256:") {
            &mut doc.sha256
        } else if content.starts_with("imagePullPolicy:") {
            &mut doc.pull_policy
        } else {
            continue;
        };
        if slot.replace(i).is_some() {
            return Err(format!("line {}: spec key given twice", i + 1));
        }
    }
    // Edit from the last line up, so inserting a line keeps the earlier indexes valid.
    let quoted = serde_json::to_string(image_url).map_err(|e| e.to_string())?;
    for doc in docs.iter().rev() {
        let (Some(url_line), Some(indent)) = (doc.url, doc.indent) else {
            continue;
        };
        let url = unquote(lines[url_line].trim_start().trim_start_matches("url:")).to_string();
        if !from_registry(&url) {
            continue;
        }
        let pad = " ".repeat(indent);
        if let Some(p) = doc.pull_policy {
            if unquote(lines[p].trim_start().trim_start_matches("imagePullPolicy:")) == "Always" {
                lines[p] = format!("{pad}imagePullPolicy: IfNotPresent");
            }
        }
        // Quoted: a digest of digits and one `e` would otherwise read as a YAML number.
        let sha_line = format!("{pad}sha256: \"{sha256}\"");
        match doc.sha256 {
            Some(s) => lines[s] = sha_line,
            None => lines.insert(url_line + 1, sha_line),
        }
        lines[url_line] = format!("{pad}url: {quoted}");
    }
    let mut out = lines.join("\n");
    out.push('\n');
    check(&out, image_url, sha256)?;
    Ok(out)
}

/// The pinned text says what it should: every registry module pinned, nothing else touched.
fn check(text: &str, image_url: &str, sha256: &str) -> Result<(), String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("pinned YAML: {e}"))?;
    for doc in docs {
        if doc["kind"].as_str() != Some("WasmPlugin") {
            continue;
        }
        let spec = &doc["spec"];
        let url = spec["url"].as_str().unwrap_or_default();
        let sha = &spec["sha256"];
        if from_registry(url) || url == image_url {
            if url != image_url || sha.as_str() != Some(sha256) {
                return Err(format!("pinning failed: url {url:?}, sha256 {sha:?}"));
            }
            if spec["imagePullPolicy"].as_str() == Some("Always") {
                return Err("pinning failed: imagePullPolicy Always left".to_string());
            }
        } else if url.starts_with("file:") && !matches!(sha, Yaml::BadValue) {
            return Err(format!(
                "{url}: a file:// module has no sha256 (Istio checks none)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn pins_registry_modules_and_keeps_comments() {
        let text = "# head\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: a\n  # url: not this one\nspec:\n  # the image\n  url: oci://registry.example.com/x:1\n  imagePullPolicy: Always\n  pluginConfig:\n    url: nested, untouched\n";
        let out = pin(text, "oci://127.0.0.1:5000/m/x:t", SHA).unwrap();
        assert_eq!(
            out,
            format!("# head\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: a\n  # url: not this one\nspec:\n  # the image\n  url: \"oci://127.0.0.1:5000/m/x:t\"\n  sha256: \"{SHA}\"\n  imagePullPolicy: IfNotPresent\n  pluginConfig:\n    url: nested, untouched\n")
        );
    }

    #[test]
    fn file_modules_are_copied_as_is_and_every_document_is_pinned() {
        let text = "kind: WasmPlugin\nspec:\n  url: file:///m.wasm\n---\nkind: WasmPlugin\nspec:\n    url: \"registry.example.com/x:1\"\n    sha256: old\n";
        let out = pin(text, "oci://r/x:2", SHA).unwrap();
        assert!(out.starts_with("kind: WasmPlugin\nspec:\n  url: file:///m.wasm\n---\n"));
        assert!(out.ends_with(&format!(
            "    url: \"oci://r/x:2\"\n    sha256: \"{SHA}\"\n"
        )));
    }

    #[test]
    fn placeholders_and_file_sha256_are_refused() {
        assert!(pin("spec:\n  url: \"{{IMAGE_URL}}\"\n", "oci://r/x", SHA).is_err());
        let err = pin(
            "kind: WasmPlugin\nspec:\n  url: file:///m.wasm\n  sha256: abc\n",
            "oci://r/x",
            SHA,
        )
        .unwrap_err();
        assert!(err.contains("no sha256"), "{err}");
    }
}
