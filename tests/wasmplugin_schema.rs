//! Every WasmPlugin the project ships or writes, checked the way a cluster checks it before
//! istiod ever sees it:
//!
//! 1. Istio's CRD schema (tests/fixtures/istio-wasmplugin-crd.gen.yaml, Istio's published CRD) by
//!    a JSON Schema validator (the `jsonschema` crate). The CRD's OpenAPI is turned into JSON
//!    Schema the way the API server reads it: `nullable`, `format: int32` as a range, and unknown
//!    fields rejected wherever the CRD does not preserve them (kubectl's default
//!    `--validate=strict`); plus apiVersion, kind and metadata, which the API server checks itself.
//! 2. The CRD's CEL rules (`x-kubernetes-validations`), which no JSON Schema validator runs: each
//!    rule text is implemented here, and a rule in the CRD without an implementation fails the
//!    test. `isURL` / `url().getScheme()` follow Go's `url.ParseRequestURI`, which Kubernetes' CEL
//!    library uses.
//! 3. Istio's validation webhook for WasmPlugin (pkg/config/validation/validation.go,
//!    ValidateWasmPlugin): selector vs targetRef(s), label keys and values, targetRef kinds, the
//!    url (strictParseURL, schemes), sha256, lengths, vmConfig env, match ports.
//! 4. Two project rules (not Istio's): no sha256 for a file:// url (Istio checks none:
//!    pilot/pkg/model/extensions.go buildDataSource), no `imagePullPolicy: Always` beside a sha256
//!    (with a checksum Istio never pulls again: pkg/wasm/cache.go getEntry).
//!
//! Checked: istio/ as committed, what `make oci` (wasm-oci) writes from it, and what r4j-import
//! writes; and the old placeholder manifests and hand-broken ones are rejected.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

use harness::{repo_root, tool_bin, wasm_oci_build};

const CRD: &str = "tests/fixtures/istio-wasmplugin-crd.gen.yaml";

// ---------------------------------------------------------------------------------------------
// YAML in, JSON out.

fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(r.clone())),
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
    }
}

fn load_docs(text: &str) -> Vec<Value> {
    YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("YAML: {e}\n{text}"))
        .iter()
        .map(to_json)
        .filter(|d| !d.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The CRD schema.

struct Crd {
    api_version: String,
    kind: String,
    /// The served version's openAPIV3Schema, as the CRD has it.
    open_api: Value,
}

fn crd() -> Crd {
    let text = std::fs::read_to_string(repo_root().join(CRD)).unwrap();
    let doc = load_docs(&text).remove(0);
    assert_eq!(doc["kind"], "CustomResourceDefinition");
    let spec = &doc["spec"];
    let version = spec["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1alpha1")
        .expect("version v1alpha1 in the CRD");
    assert_eq!(version["served"], true);
    Crd {
        api_version: format!("{}/v1alpha1", spec["group"].as_str().unwrap()),
        kind: spec["names"]["kind"].as_str().unwrap().to_string(),
        open_api: version["schema"]["openAPIV3Schema"].clone(),
    }
}

/// The CRD's OpenAPI node as JSON Schema, read the way the API server reads it.
fn json_schema(node: &Value) -> Value {
    let Value::Object(map) = node else {
        return node.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        match k.as_str() {
            "properties" => {
                let props = v
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(name, s)| (name.clone(), json_schema(s)))
                    .collect();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" if v.is_object() => {
                out.insert(k.clone(), json_schema(v));
            }
            "anyOf" | "allOf" | "oneOf" => {
                let list = v.as_array().unwrap().iter().map(json_schema).collect();
                out.insert(k.clone(), Value::Array(list));
            }
            // OpenAPI's nullable, and formats the API server enforces as ranges.
            "nullable" | "format" | "description" => {}
            k if k.starts_with("x-kubernetes-") => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if map.get("nullable") == Some(&json!(true)) {
        if let Some(t) = map.get("type") {
            out.insert("type".into(), json!([t, "null"]));
        }
    }
    if map.get("format") == Some(&json!("int32")) {
        out.insert("minimum".into(), json!(i32::MIN));
        out.insert("maximum".into(), json!(i32::MAX));
    }
    // Strict field validation: fields the schema does not know are errors, except where the CRD
    // preserves unknown fields (pluginConfig, status).
    let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if map.contains_key("properties") && !preserves && !map.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), json!(false));
    }
    Value::Object(out)
}

/// The whole object's schema: the CRD's, plus what the API server checks itself.
fn object_schema(crd: &Crd) -> Value {
    let mut schema = json_schema(&crd.open_api);
    let dns1123_subdomain = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    let dns1123_label = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
    let props = schema["properties"].as_object_mut().unwrap();
    props.insert("apiVersion".into(), json!({"const": crd.api_version}));
    props.insert("kind".into(), json!({"const": crd.kind}));
    props.insert(
        "metadata".into(),
        json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 253, "pattern": dns1123_subdomain},
                "namespace": {"type": "string", "maxLength": 63, "pattern": dns1123_label},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        }),
    );
    let required = schema["required"].as_array_mut().unwrap();
    for key in ["apiVersion", "kind", "metadata"] {
        required.push(json!(key));
    }
    schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    schema
}

struct Checker {
    validator: jsonschema::Validator,
    open_api: Value,
}

impl Checker {
    fn new() -> Checker {
        let crd = crd();
        let validator = jsonschema::draft202012::new(&object_schema(&crd))
            .unwrap_or_else(|e| panic!("the CRD schema does not compile: {e}"));
        Checker {
            validator,
            open_api: crd.open_api,
        }
    }

    /// Every reason a cluster with Istio would refuse `doc`; empty when it would take it.
    fn errors(&self, doc: &Value) -> Vec<String> {
        let mut errors: Vec<String> = self
            .validator
            .iter_errors(doc)
            .map(|e| format!("schema: {}: {e}", e.instance_path()))
            .collect();
        cel_errors(&self.open_api, doc, "", &mut errors);
        if let Some(spec) = doc.get("spec").filter(|s| s.is_object()) {
            errors.extend(
                webhook_errors(spec)
                    .into_iter()
                    .map(|e| format!("webhook: {e}")),
            );
            errors.extend(
                project_errors(spec)
                    .into_iter()
                    .map(|e| format!("project: {e}")),
            );
        }
        errors
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The CRD's CEL rules.

/// The CRD's rules by their text (whitespace collapsed). `self` is the value the rule's schema
/// node describes; a rule meets values of the wrong type only when the schema rejects them
/// anyway, so those pass here.
fn cel_rule(rule: &str) -> Option<fn(&Value) -> bool> {
    let rule: String = rule.split_whitespace().collect::<Vec<_>>().join(" ");
    let f: fn(&Value) -> bool = match rule.as_str() {
        r#"!self.contains("*")"# => |v| v.as_str().is_none_or(|s| !s.contains('*')),
        r#"self.all(key, !key.contains("*"))"# => {
            |v| v.as_object().is_none_or(|m| m.keys().all(|k| !k.contains('*')))
        }
        "self.all(key, key.size() != 0)" => {
            |v| v.as_object().is_none_or(|m| m.keys().all(|k| !k.is_empty()))
        }
        "self.size() == 0" => |v| v.as_str().is_none_or(str::is_empty),
        r#"(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)"# => |v| {
            v.get("valueFrom").and_then(Value::as_str) != Some("HOST")
                || v.get("value").is_none_or(Value::is_null)
        },
        r#"isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])"# => {
            |v| v.as_str().is_none_or(cel_url_rule)
        }
        "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1" => {
            |v| {
                let has = |key: &str| v.get(key).is_some_and(|x| !x.is_null());
                [has("selector"), has("targetRef"), has("targetRefs")]
                    .iter()
                    .filter(|b| **b)
                    .count()
                    <= 1
            }
        }
        _ => return None,
    };
    Some(f)
}

const URL_SCHEMES: [&str; 5] = ["", "http", "https", "oci", "file"];

/// The url rule: `isURL(self) ? scheme ok : (isURL("http://" + self) && scheme ok)`.
fn cel_url_rule(url: &str) -> bool {
    match go_parse_request_uri(url) {
        Ok(scheme) => URL_SCHEMES.contains(&scheme.as_str()),
        Err(_) => go_parse_request_uri(&format!("http://{url}"))
            .is_ok_and(|scheme| URL_SCHEMES.contains(&scheme.as_str())),
    }
}

/// (schema path, rule, message) of every CEL rule in the CRD.
fn cel_rules(node: &Value, path: &str, out: &mut Vec<(String, String, String)>) {
    let Value::Object(map) = node else { return };
    if let Some(rules) = map
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for r in rules {
            out.push((
                path.to_string(),
                r["rule"].as_str().unwrap().to_string(),
                r["message"].as_str().unwrap().to_string(),
            ));
        }
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            cel_rules(v, &format!("{path}.{k}"), out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.get(key) {
            cel_rules(child, &format!("{path}.{key}"), out);
        }
    }
}

/// Runs the rules of `schema` and its children on `value`.
fn cel_errors(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Value::Object(map) = schema else { return };
    if let Some(rules) = map
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for r in rules {
            let rule = r["rule"].as_str().unwrap();
            let check =
                cel_rule(rule).unwrap_or_else(|| panic!("CEL rule not implemented: {rule}"));
            if !check(value) {
                let at = if path.is_empty() { "<root>" } else { path };
                errors.push(format!(
                    "CRD rule: {at}: {}",
                    r["message"].as_str().unwrap()
                ));
            }
        }
    }
    match value {
        Value::Object(fields) => {
            let props = map.get("properties").and_then(Value::as_object);
            for (k, v) in fields {
                let child = props
                    .and_then(|p| p.get(k))
                    .or_else(|| map.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(child) = child {
                    cel_errors(child, v, &format!("{path}.{k}"), errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(child) = map.get("items") {
                for (i, v) in items.iter().enumerate() {
                    cel_errors(child, v, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

// Go's net/url, as far as `url.ParseRequestURI` and `url.Parse` accept or refuse a string.

/// `url.ParseRequestURI(raw)`: the scheme (lower case) or why Go refuses it.
fn go_parse_request_uri(raw: &str) -> Result<String, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("invalid control character in URL".into());
    }
    if raw.is_empty() {
        return Err("empty url".into());
    }
    if raw == "*" {
        return Ok(String::new());
    }
    let (scheme, rest) = go_scheme(raw)?;
    // Via a request, the query is cut off, not parsed.
    let rest = rest.split('?').next().unwrap_or_default();
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            return Ok(scheme); // opaque, e.g. `oci:name`
        }
        return Err("invalid URI for request".into());
    }
    let mut path = rest;
    if !scheme.is_empty() && rest.starts_with("//") {
        let after = &rest[2..];
        let end = after.find('/').unwrap_or(after.len());
        go_authority(&after[..end])?;
        path = &after[end..];
    }
    go_unescape_ok(path)?;
    Ok(scheme)
}

/// `url.Parse(raw)` after ParseRequestURI accepted it: only the fragment is new.
fn go_parse(raw: &str) -> Result<(), String> {
    match raw.split_once('#') {
        Some((_, fragment)) => go_unescape_ok(fragment),
        None => Ok(()),
    }
}

fn go_scheme(raw: &str) -> Result<(String, &str), String> {
    for (i, c) in raw.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err("missing protocol scheme".into()),
            ':' => return Ok((raw[..i].to_ascii_lowercase(), &raw[i + 1..])),
            _ => return Ok((String::new(), raw)),
        }
    }
    Ok((String::new(), raw))
}

fn go_authority(authority: &str) -> Result<(), String> {
    let host = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let valid = userinfo.chars().all(|c| {
                c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c) || !c.is_ascii()
            });
            if !valid {
                return Err("invalid userinfo".into());
            }
            go_unescape_ok(userinfo)?;
            &authority[at + 1..]
        }
        None => authority,
    };
    let valid_port = |p: &str| {
        p.is_empty()
            || p.strip_prefix(':')
                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
    };
    if host.starts_with('[') {
        let close = host.find(']').ok_or("missing ']' in host")?;
        if !valid_port(&host[close + 1..]) {
            return Err(format!("invalid port {:?} after host", &host[close + 1..]));
        }
        return Ok(());
    }
    if let Some(colon) = host.rfind(':') {
        if !valid_port(&host[colon..]) {
            return Err(format!("invalid port {:?} after host", &host[colon..]));
        }
    }
    let bytes = host.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'%' {
            let hex = host.get(i + 1..i + 3).ok_or("invalid URL escape")?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("invalid URL escape %{hex}"));
            }
            i += 3;
            continue;
        }
        let allowed =
            c >= 0x80 || c.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&c);
        if !allowed {
            return Err(format!("invalid character {:?} in host name", c as char));
        }
        i += 1;
    }
    Ok(())
}

/// Every `%` starts a two-digit hex escape.
fn go_unescape_ok(s: &str) -> Result<(), String> {
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = s.get(i + 1..i + 3).unwrap_or_default();
            if hex.len() != 2 || !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                return Err(format!("invalid URL escape {:?}", &s[i..]));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Istio's webhook (pkg/config/validation/validation.go, ValidateWasmPlugin).

/// strictParseURL: ParseRequestURI as is, else with `http://` in front; then url.Parse.
fn istio_strict_parse_url(url: &str) -> Result<String, String> {
    let (scheme, parsed) = match go_parse_request_uri(url) {
        Ok(scheme) => (scheme, url.to_string()),
        Err(e) => {
            let prefixed = format!("http://{url}");
            match go_parse_request_uri(&prefixed) {
                Ok(scheme) => (scheme, prefixed),
                Err(_) => return Err(format!("failed to parse url: {e}")),
            }
        }
    };
    go_parse(&parsed).map_err(|e| format!("failed to strict parse url: {e}"))?;
    Ok(scheme)
}

fn webhook_errors(spec: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let selector = spec.get("selector").filter(|v| !v.is_null());
    let target_ref = spec.get("targetRef").filter(|v| !v.is_null());
    let target_refs: Vec<&Value> = spec
        .get("targetRefs")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    // validateOneOfSelectorType
    let set = [
        selector.is_some(),
        target_ref.is_some(),
        !target_refs.is_empty(),
    ];
    if set.iter().filter(|b| **b).count() > 1 {
        errors.push("only one of targetRefs or workloadSelector can be set".to_string());
    }
    // validateWorkloadSelector
    if let Some(labels) = selector
        .and_then(|s| s.get("matchLabels"))
        .and_then(Value::as_object)
    {
        for (k, v) in labels {
            let v = str_of(v);
            if k.is_empty() {
                errors.push(format!(
                    "empty key is not supported in selector: \"{k}={v}\""
                ));
            }
            if k.contains('*') || v.contains('*') {
                errors.push(format!(
                    "wildcard is not supported in selector: \"{k}={v}\""
                ));
            }
        }
    }
    // validatePolicyTargetReference(s); allowedTargetRefs: Service, ServiceEntry, Gateway,
    // GatewayClass (canonical group "core" for the empty one).
    let allowed = [
        ("core", "Service"),
        ("networking.istio.io", "ServiceEntry"),
        ("gateway.networking.k8s.io", "Gateway"),
        ("gateway.networking.k8s.io", "GatewayClass"),
    ];
    for r in target_ref.into_iter().chain(target_refs) {
        if str_of(&r["name"]).is_empty() {
            errors.push("targetRef name must be set".to_string());
        }
        if !str_of(&r["namespace"]).is_empty() {
            errors.push(
                "targetRef namespace must not be set; cross namespace referencing is not supported"
                    .to_string(),
            );
        }
        let group = match str_of(&r["group"]) {
            g if g.is_empty() => "core".to_string(),
            g => g,
        };
        let kind = str_of(&r["kind"]);
        if !allowed.contains(&(group.as_str(), kind.as_str())) {
            errors.push(format!(
                "targetRef must be to one of {allowed:?} but was {group}/{kind}"
            ));
        }
    }
    // validateWasmPluginURL
    let url = str_of(&spec["url"]);
    if url.is_empty() {
        errors.push("url field needs to be set".to_string());
    } else {
        match istio_strict_parse_url(&url) {
            Err(e) => errors.push(e),
            Ok(scheme) if !URL_SCHEMES.contains(&scheme.as_str()) => {
                errors.push(format!("url contains unsupported scheme: {scheme}"))
            }
            Ok(_) => {}
        }
    }
    // validateWasmPluginSHA
    let sha = str_of(&spec["sha256"]);
    if !sha.is_empty() {
        if sha.len() != 64 {
            errors.push("sha256 field must be 64 characters long".to_string());
        } else if !sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            errors.push("sha256 field must match [a-f0-9]{64} pattern".to_string());
        }
    }
    // validateWasmPluginImagePullSecret, validateWasmPluginName
    if str_of(&spec["imagePullSecret"]).len() > 253 {
        errors.push("imagePullSecret field must be less than 253 characters long".to_string());
    }
    if str_of(&spec["pluginName"]).len() > 256 {
        errors.push("pluginName field must be less than 255 characters long".to_string());
    }
    // validateWasmPluginVMConfig
    let mut names = BTreeSet::new();
    for env in spec["vmConfig"]["env"].as_array().into_iter().flatten() {
        let name = str_of(&env["name"]);
        if name.is_empty() {
            errors.push("spec.vmConfig.env invalid".to_string());
            continue;
        }
        if name.len() > 256 {
            errors.push("env.name field must be less than 255 characters long".to_string());
        }
        if !names.insert(name) {
            errors.push("duplicate env".to_string());
        }
        let inline = env["valueFrom"].as_str().is_none_or(|v| v == "INLINE");
        if !inline && !str_of(&env["value"]).is_empty() {
            errors.push("value may only be set when valueFrom is INLINE".to_string());
        }
    }
    // validateWasmPluginMatch
    for (s, sel) in spec["match"].as_array().into_iter().flatten().enumerate() {
        for (p, port) in sel["ports"].as_array().into_iter().flatten().enumerate() {
            let n = port["number"].as_i64().unwrap_or(0);
            if !(1..=65535).contains(&n) {
                errors.push(format!("spec.Match[{s}].Ports[{p}] is out of range: {n}"));
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// 4. Project rules.

fn project_errors(spec: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let url = spec["url"].as_str().unwrap_or_default();
    let sha = spec["sha256"].as_str().unwrap_or_default();
    if url.starts_with("file:") && !sha.is_empty() {
        errors.push(format!(
            "{url}: sha256 on a file:// url, which Istio does not check (buildDataSource)"
        ));
    }
    if !sha.is_empty() && spec["imagePullPolicy"] == "Always" {
        errors.push(
            "imagePullPolicy Always beside a sha256: Istio finds the module by its checksum and never pulls again (pkg/wasm/cache.go)"
                .to_string(),
        );
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// What the project ships and writes.

fn assert_accepted(checker: &Checker, what: &str, docs: &[Value]) {
    assert!(!docs.is_empty(), "{what}: no documents");
    for doc in docs {
        assert_eq!(doc["kind"], "WasmPlugin", "{what}");
        let errors = checker.errors(doc);
        assert!(
            errors.is_empty(),
            "{what} ({}) would be refused:\n{}",
            doc["metadata"]["name"],
            errors.join("\n")
        );
    }
}

#[test]
fn crd_fixture_is_istios_published_wasmplugin_crd() {
    let crd = crd();
    assert_eq!(
        (crd.api_version.as_str(), crd.kind.as_str()),
        ("extensions.istio.io/v1alpha1", "WasmPlugin")
    );
    // The fixture is a copy of the shared CRD; compare when it is beside the repo.
    let shared = repo_root().join("../shared/istio-crd/wasmplugin-crd.gen.yaml");
    if let Ok(original) = std::fs::read_to_string(shared) {
        let copy = std::fs::read_to_string(repo_root().join(CRD)).unwrap();
        assert!(copy == original, "{CRD} differs from shared/istio-crd");
    }
}

#[test]
fn every_cel_rule_in_the_crd_is_implemented() {
    let mut rules = Vec::new();
    cel_rules(&crd().open_api, "", &mut rules);
    let places: Vec<&str> = rules.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        places,
        [
            ".spec",
            ".spec.selector.matchLabels",
            ".spec.selector.matchLabels",
            ".spec.selector.matchLabels.additionalProperties",
            ".spec.targetRef.namespace",
            ".spec.targetRefs.items.namespace",
            ".spec.url",
            ".spec.vmConfig.env.items",
        ]
    );
    for (path, rule, _) in &rules {
        assert!(
            cel_rule(rule).is_some(),
            "{path}: no implementation of {rule}"
        );
    }
}

#[test]
fn committed_istio_manifests_are_accepted_as_they_are() {
    let checker = Checker::new();
    let files = yaml_files(&repo_root().join("istio"));
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let docs = load_docs(&std::fs::read_to_string(&file).unwrap());
        assert_accepted(&checker, &file.display().to_string(), &docs);
    }
}

fn wasm_oci(out: &Path, extra: &[&str]) {
    // Rendering needs a module, not the filter: the 8-byte empty module.
    let wasm = out.join("m.wasm");
    std::fs::write(&wasm, b"\0asm\x01\0\0\0").unwrap();
    wasm_oci_build(&wasm, out, extra).unwrap();
}

#[test]
fn make_oci_output_is_accepted_and_pinned() {
    let checker = Checker::new();
    for extra in [
        &[][..],
        &["--image", "127.0.0.1:5000/mesh/sidecar-resilience:test"][..],
    ] {
        let out = TempDir::new("wasmplugin-oci");
        wasm_oci(&out.0, extra);
        let files = yaml_files(&out.0.join("istio"));
        assert_eq!(files.len(), yaml_files(&repo_root().join("istio")).len());
        for file in files {
            let docs = load_docs(&std::fs::read_to_string(&file).unwrap());
            assert_accepted(
                &checker,
                &format!("make oci {extra:?}: {}", file.display()),
                &docs,
            );
            for doc in docs {
                let spec = &doc["spec"];
                let url = spec["url"].as_str().unwrap();
                if url.starts_with("file://") {
                    assert!(spec.get("sha256").is_none());
                } else {
                    assert_eq!(spec["sha256"].as_str().unwrap().len(), 64, "{url} pinned");
                }
            }
        }
    }
    // And a real `make oci` run, if there was one.
    let made = repo_root().join("target/oci/istio");
    if made.is_dir() {
        for file in yaml_files(&made) {
            let docs = load_docs(&std::fs::read_to_string(&file).unwrap());
            assert_accepted(&checker, &file.display().to_string(), &docs);
        }
    }
}

#[test]
fn importer_output_is_accepted() {
    let checker = Checker::new();
    let seed = repo_root().join("tests/fixtures/seed-manifests.yaml");
    let sha = "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476";
    let runs: [&[&str]; 7] = [
        &[],
        &[
            "--selector",
            "resilience.sidecar/channel=stable",
            "--namespace",
            "shop",
        ],
        &["--namespace", "shop", "--name", "orders-resilience"],
        &["--mesh-wide"],
        &[
            "--url",
            "file:///var/local/lib/wasm/sidecar_resilience.wasm",
        ],
        &[
            "--url",
            "https://example.com/sidecar_resilience.wasm",
            "--sha256",
            sha,
        ],
        &[
            "--sha256",
            sha,
            "--selector",
            "app=checkout",
            "--selector",
            "tier=web",
        ],
    ];
    for args in runs {
        let output = Command::new(tool_bin("r4j-import").unwrap())
            .arg(&seed)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "r4j-import {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let docs = load_docs(&String::from_utf8_lossy(&output.stdout));
        assert_accepted(&checker, &format!("r4j-import {args:?}"), &docs);
    }
}

// ---------------------------------------------------------------------------------------------
// The checks reject what a cluster rejects.

fn has(errors: &[String], needle: &str) -> bool {
    errors.iter().any(|e| e.contains(needle))
}

#[test]
fn old_placeholder_manifests_are_rejected() {
    let checker = Checker::new();
    let text = std::fs::read_to_string(
        repo_root().join("tests/fixtures/wasmplugin-placeholders-rejected.yaml"),
    )
    .unwrap();
    let docs = load_docs(&text);
    assert_eq!(docs.len(), 4);
    for doc in &docs {
        let errors = checker.errors(doc);
        let name = doc["metadata"]["name"].as_str().unwrap();
        let sha = doc["spec"]["sha256"].as_str().unwrap();
        // `{{IMAGE_SHA256}}` / `{{WASM_SHA256}}` fail the CRD's pattern (^$|^[a-f0-9]{64}$).
        assert!(
            errors.iter().any(|e| e.starts_with("schema: /spec/sha256")),
            "{name}: {errors:?}"
        );
        assert!(
            has(&errors, "webhook: sha256 field must be 64 characters long"),
            "{name}"
        );
        if sha == "{{WASM_SHA256}}" {
            assert!(has(&errors, "project: file:///"), "{name}: {errors:?}");
        } else {
            assert_eq!(doc["spec"]["url"], "{{IMAGE_URL}}");
            assert!(
                has(
                    &errors,
                    "CRD rule: .spec.url: url must have schema one of [http, https, file, oci]"
                ),
                "{name}: {errors:?}"
            );
            assert!(
                has(&errors, "webhook: failed to parse url"),
                "{name}: {errors:?}"
            );
        }
    }
}

/// istio/sidecar-resilience.yaml with one change.
fn stable_with(change: impl Fn(&mut Value)) -> Value {
    let text = std::fs::read_to_string(repo_root().join("istio/sidecar-resilience.yaml")).unwrap();
    let mut doc = load_docs(&text).remove(0);
    change(&mut doc);
    doc
}

#[test]
fn each_rule_rejects_what_it_should() {
    let checker = Checker::new();
    assert!(checker.errors(&stable_with(|_| {})).is_empty());
    const SHA: &str = "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476";
    let sha = SHA;
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change, &[&str])> = vec![
        (
            "ftp url",
            Box::new(|d| d["spec"]["url"] = json!("ftp://example.com/m.wasm")),
            &["CRD rule: .spec.url: url must have schema", "webhook: url contains unsupported scheme: ftp"],
        ),
        (
            "selector and targetRefs",
            Box::new(|d| d["spec"]["targetRefs"] = json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g"}])),
            &["CRD rule: .spec: only one of targetRefs or selector", "webhook: only one of targetRefs or workloadSelector"],
        ),
        (
            "upper-case sha256",
            Box::new(|d| d["spec"]["sha256"] = json!(sha.to_uppercase())),
            &["schema: /spec/sha256", "webhook: sha256 field must match [a-f0-9]{64} pattern"],
        ),
        (
            "wildcard label value",
            Box::new(|d| d["spec"]["selector"]["matchLabels"]["app"] = json!("web-*")),
            &["CRD rule: .spec.selector.matchLabels.app: wildcard not allowed in label value match", "webhook: wildcard is not supported"],
        ),
        (
            "empty label key",
            Box::new(|d| d["spec"]["selector"]["matchLabels"][""] = json!("x")),
            &["CRD rule: .spec.selector.matchLabels: key must not be empty", "webhook: empty key"],
        ),
        (
            "cross-namespace targetRef",
            Box::new(|d| {
                d["spec"].as_object_mut().unwrap().remove("selector");
                d["spec"]["targetRefs"] = json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g", "namespace": "other"}]);
            }),
            &["CRD rule: .spec.targetRefs[0].namespace: cross namespace referencing", "webhook: targetRef namespace must not be set"],
        ),
        (
            "targetRef to a Deployment",
            Box::new(|d| {
                d["spec"].as_object_mut().unwrap().remove("selector");
                d["spec"]["targetRefs"] = json!([{"group": "apps", "kind": "Deployment", "name": "d"}]);
            }),
            &["webhook: targetRef must be to one of"],
        ),
        (
            "misspelt field",
            Box::new(|d| d["spec"]["phaze"] = json!("STATS")),
            &["schema: /spec: Additional properties are not allowed ('phaze'"],
        ),
        (
            "unknown phase",
            Box::new(|d| d["spec"]["phase"] = json!("LAST")),
            &["schema: /spec/phase"],
        ),
        (
            "priority beyond int32",
            Box::new(|d| d["spec"]["priority"] = json!(i64::from(i32::MIN) - 1)),
            &["schema: /spec/priority"],
        ),
        (
            "host env with a value",
            Box::new(|d| d["spec"]["vmConfig"] = json!({"env": [{"name": "A", "valueFrom": "HOST", "value": "x"}]})),
            &["CRD rule: .spec.vmConfig.env[0]: value may only be set when valueFrom is INLINE", "webhook: value may only be set"],
        ),
        (
            "port 0",
            Box::new(|d| d["spec"]["match"] = json!([{"mode": "CLIENT", "ports": [{"number": 0}]}])),
            &["schema: /spec/match/0/ports/0/number", "webhook: spec.Match[0].Ports[0] is out of range: 0"],
        ),
        (
            "no url",
            Box::new(|d| {
                d["spec"].as_object_mut().unwrap().remove("url");
            }),
            &["schema: /spec: \"url\" is a required property", "webhook: url field needs to be set"],
        ),
        (
            "wrong apiVersion",
            Box::new(|d| d["apiVersion"] = json!("extensions.istio.io/v1")),
            &["schema: /apiVersion"],
        ),
        (
            "invalid name",
            Box::new(|d| d["metadata"]["name"] = json!("Sidecar_Resilience")),
            &["schema: /metadata/name"],
        ),
        (
            "sha256 on a file url",
            Box::new(|d| {
                d["spec"]["url"] = json!("file:///var/local/lib/wasm/m.wasm");
                d["spec"]["sha256"] = json!(SHA);
            }),
            &["project: file:///var/local/lib/wasm/m.wasm: sha256 on a file:// url"],
        ),
        (
            "Always beside a sha256",
            Box::new(|d| {
                d["spec"]["sha256"] = json!(SHA);
                d["spec"]["imagePullPolicy"] = json!("Always");
            }),
            &["project: imagePullPolicy Always beside a sha256"],
        ),
    ];
    for (what, change, expected) in cases {
        let errors = checker.errors(&stable_with(change));
        for e in expected {
            assert!(has(&errors, e), "{what}: no {e:?} in {errors:#?}");
        }
    }
}

#[test]
fn url_rule_follows_go_url_parsing() {
    for (url, accepted) in [
        ("oci://registry.example.com/sidecar-resilience:0.1.0", true),
        (
            "oci://127.0.0.1:5000/mesh/sidecar-resilience@sha256:93a44bbb96c7",
            true,
        ),
        ("registry.example.com/sidecar-resilience:0.1.0", true), // no scheme: Istio reads oci
        ("file:///var/local/lib/wasm/sidecar_resilience.wasm", true),
        ("https://example.com/m.wasm?x=1", true),
        ("ftp://example.com/m.wasm", false),
        ("s3://bucket/m.wasm", false),
        ("{{IMAGE_URL}}", false),
        ("oci://registry.example.com:port/x", true), // Go reads http://oci://… then
    ] {
        assert_eq!(cel_url_rule(url), accepted, "CRD url rule on {url}");
        let webhook =
            istio_strict_parse_url(url).is_ok_and(|scheme| URL_SCHEMES.contains(&scheme.as_str()));
        assert_eq!(webhook, accepted, "webhook on {url}");
    }
    assert!(
        go_parse_request_uri("oci://registry.example.com:port/x").is_err(),
        "bad port"
    );
    assert!(
        go_parse_request_uri("http://{{IMAGE_URL}}").is_err(),
        "braces in a host"
    );
    assert_eq!(go_parse_request_uri("OCI://r/x").unwrap(), "oci");
}
