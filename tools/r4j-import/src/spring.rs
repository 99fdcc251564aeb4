//! Reading what Spring teams already have: an `application.yml` (several documents, profiles,
//! dotted keys) or Kubernetes manifests with a ConfigMap that embeds one. The result is the
//! `resilience4j` tree as JSON, exactly the value the filter's policy holds under `resilience4j`.
//!
//! Spring's rules that matter here, and how they are followed:
//! - A file may hold several YAML documents; later documents override earlier ones key by key
//!   (maps merge, scalars and lists replace). A document with `spring.config.activate.on-profile`
//!   (or the older `spring.profiles`) only counts when one of its profiles is active
//!   (`--profile`); `!name` negates. Skipped documents are reported.
//! - Spring flattens YAML into property names, so `resilience4j.circuitbreaker: {...}` written as
//!   one dotted key is the same as nested keys; a map key in brackets (`"[user.service]"`) keeps
//!   its dots.
//! - YAML 1.1 merge keys (`<<: *defaults`), which SnakeYAML supports, are applied.
//! - `${...}` placeholders are resolved by Spring from its environment; the importer has none,
//!   so it reports them by path instead of guessing.

use serde_json::{Map, Number, Value};
use sidecar_resilience::policy::canonical_key;
use yaml_rust2::{Yaml, YamlLoader};

/// Where the resilience4j tree came from, for the report and the generated file's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The `resilience4j` tree (a JSON object).
    pub tree: Value,
    /// e.g. `ConfigMap default/circuit-breaker-config, key application.yml`.
    pub source: String,
    /// The ConfigMap's namespace, if any (a default for the WasmPlugin's namespace).
    pub namespace: Option<String>,
    /// Notes for the user: skipped documents and the like (not problems of the policy).
    pub notes: Vec<String>,
}

/// A problem reading the input: not YAML, nothing to import, ambiguous, unresolvable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which ConfigMap data to read when there are several: `name` or `name/key`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub configmap: Option<String>,
    pub key: Option<String>,
    pub profiles: Vec<String>,
}

impl Selection {
    pub fn parse_configmap(spec: &str) -> Selection {
        match spec.split_once('/') {
            Some((name, key)) => Selection {
                configmap: Some(name.to_string()),
                key: Some(key.to_string()),
                profiles: Vec::new(),
            },
            None => Selection {
                configmap: Some(spec.to_string()),
                key: None,
                profiles: Vec::new(),
            },
        }
    }
}

/// One Spring configuration text found in the input (a file, or a ConfigMap data entry).
struct SpringText {
    source: String,
    namespace: Option<String>,
    text: String,
}

/// Reads `text` (from `file_name`) and returns the resilience4j tree it configures.
pub fn extract(text: &str, file_name: &str, selection: &Selection) -> Result<Extracted, ReadError> {
    let docs = if file_name.ends_with(".properties") {
        Vec::new()
    } else {
        load(text, file_name)?
    };
    let is_kubernetes = docs.iter().any(is_kubernetes_object);
    let candidates = if is_kubernetes {
        configmap_texts(&docs, file_name, selection)?
    } else {
        if selection.configmap.is_some() {
            return Err(ReadError(format!(
                "{file_name}: --configmap given, but the file holds no Kubernetes objects"
            )));
        }
        vec![SpringText {
            source: file_name.to_string(),
            namespace: None,
            text: text.to_string(),
        }]
    };
    let mut found = Vec::new();
    for candidate in candidates {
        let docs = if candidate.source.ends_with(".properties") {
            properties_documents(&candidate.text)
        } else {
            load(&candidate.text, &candidate.source)?
                .iter()
                .enumerate()
                .map(|(i, doc)| {
                    to_json(
                        doc,
                        &format!("{}, document {}", candidate.source, i + 1),
                        "",
                    )
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut notes = Vec::new();
        let merged = merge_documents(docs, &candidate.source, &selection.profiles, &mut notes)?;
        if let Some(tree) = merged.get("resilience4j") {
            found.push(Extracted {
                tree: tree.clone(),
                source: candidate.source,
                namespace: candidate.namespace,
                notes,
            });
        }
    }
    match found.len() {
        0 => Err(ReadError(format!(
            "{file_name}: no `resilience4j` configuration found{}",
            if is_kubernetes {
                " in any ConfigMap's *.yml / *.yaml data"
            } else {
                ""
            }
        ))),
        1 => {
            let mut extracted = found.remove(0);
            placeholders(&extracted.tree, "resilience4j")?;
            if !extracted.tree.is_object() && !extracted.tree.is_null() {
                return Err(ReadError(format!(
                    "{}: `resilience4j` must be a mapping",
                    extracted.source
                )));
            }
            if extracted.tree.is_null() {
                extracted.tree = Value::Object(Map::new());
            }
            Ok(extracted)
        }
        _ => Err(ReadError(format!(
            "{file_name}: several sources configure resilience4j ({}); choose one with --configmap NAME[/KEY]",
            found
                .iter()
                .map(|f| f.source.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

/// A plain YAML or JSON mapping (the `--filter-keys` file): no Spring rules, keys kept verbatim
/// (cluster names contain dots).
pub fn extract_plain(text: &str, file_name: &str) -> Result<serde_json::Value, ReadError> {
    let docs = load(text, file_name)?;
    match docs.as_slice() {
        [] => Ok(Value::Null),
        [doc] => to_json(doc, file_name, ""),
        _ => Err(ReadError(format!(
            "{file_name}: expected one YAML document"
        ))),
    }
}

fn load(text: &str, source: &str) -> Result<Vec<Yaml>, ReadError> {
    YamlLoader::load_from_str(text).map_err(|e| ReadError(format!("{source}: not valid YAML: {e}")))
}

fn is_kubernetes_object(doc: &Yaml) -> bool {
    matches!(doc, Yaml::Hash(h) if h.contains_key(&key("apiVersion")) && h.contains_key(&key("kind")))
}

fn key(name: &str) -> Yaml {
    Yaml::String(name.to_string())
}

fn str_at<'a>(doc: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    let mut node = doc;
    for name in path {
        let Yaml::Hash(h) = node else { return None };
        node = h.get(&key(name))?;
    }
    node.as_str()
}

/// The Spring configuration texts embedded in ConfigMaps (`data` entries named `*.yml` /
/// `*.yaml`), narrowed by `--configmap NAME[/KEY]`.
fn configmap_texts(
    docs: &[Yaml],
    file_name: &str,
    selection: &Selection,
) -> Result<Vec<SpringText>, ReadError> {
    let mut out = Vec::new();
    let mut configmaps = Vec::new();
    for doc in docs {
        if str_at(doc, &["kind"]) != Some("ConfigMap") {
            continue;
        }
        let name = str_at(doc, &["metadata", "name"])
            .unwrap_or("(unnamed)")
            .to_string();
        configmaps.push(name.clone());
        if selection
            .configmap
            .as_deref()
            .is_some_and(|want| want != name)
        {
            continue;
        }
        let namespace = str_at(doc, &["metadata", "namespace"]).map(str::to_string);
        let Yaml::Hash(top) = doc else { continue };
        let Some(Yaml::Hash(data)) = top.get(&key("data")) else {
            continue;
        };
        for (data_key, value) in data {
            let Some(data_key) = data_key.as_str() else {
                continue;
            };
            let wanted = match &selection.key {
                Some(k) => k == data_key,
                None => [".yml", ".yaml", ".properties"]
                    .iter()
                    .any(|ext| data_key.ends_with(ext)),
            };
            if !wanted {
                continue;
            }
            let Some(text) = value.as_str() else {
                return Err(ReadError(format!(
                    "{file_name}: ConfigMap {name}, key {data_key}: expected a string"
                )));
            };
            out.push(SpringText {
                source: format!(
                    "{file_name}: ConfigMap {}{name}, key {data_key}",
                    namespace
                        .as_deref()
                        .map(|n| format!("{n}/"))
                        .unwrap_or_default()
                ),
                namespace: namespace.clone(),
                text: text.to_string(),
            });
        }
    }
    if let Some(want) = &selection.configmap {
        if !configmaps.iter().any(|c| c == want) {
            return Err(ReadError(format!(
                "{file_name}: no ConfigMap named {want} (found: {})",
                if configmaps.is_empty() {
                    "none".to_string()
                } else {
                    configmaps.join(", ")
                }
            )));
        }
    }
    Ok(out)
}

/// Spring's view of a multi-document file: the active documents, merged in order.
fn merge_documents(
    docs: Vec<Value>,
    source: &str,
    profiles: &[String],
    notes: &mut Vec<String>,
) -> Result<Map<String, Value>, ReadError> {
    let mut merged = Map::new();
    for (index, value) in docs.into_iter().enumerate() {
        let where_ = format!("{source}, document {}", index + 1);
        let value = match value {
            Value::Object(map) => expand_dotted(map),
            Value::Null => continue,
            _ => {
                return Err(ReadError(format!(
                    "{where_}: expected a mapping at the top"
                )));
            }
        };
        if let Some(condition) = profile_condition(&value) {
            if !profile_active(&condition, profiles) {
                notes.push(format!(
                    "{where_}: skipped, its profile condition `{condition}` is not active (--profile)"
                ));
                continue;
            }
        }
        deep_merge(&mut merged, value);
    }
    Ok(merged)
}

fn profile_condition(doc: &Map<String, Value>) -> Option<String> {
    let spring = doc.get("spring")?;
    let explicit = spring
        .pointer("/config/activate/on-profile")
        .or_else(|| spring.get("profiles"))?;
    match explicit {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    }
}

/// `a,b` (any), `!a` (not active); the operators `&` and `|` of profile expressions are
/// read as `,` (any) would be too lax, so they count as not active and the note says so.
fn profile_active(condition: &str, active: &[String]) -> bool {
    condition.split(',').map(str::trim).any(|p| {
        if p.contains('&') || p.contains('|') {
            false
        } else if let Some(negated) = p.strip_prefix('!') {
            !active.iter().any(|a| a == negated.trim())
        } else {
            active.iter().any(|a| a == p)
        }
    })
}

/// Later wins; maps merge recursively. Keys match as Spring's relaxed binding matches property
/// names (`failureRateThreshold` in one document, `failure-rate-threshold` in a later one are
/// one property); the later spelling is kept.
fn deep_merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        let same = into
            .keys()
            .find(|existing| **existing != k && canonical_key(existing) == canonical_key(&k))
            .cloned();
        if let Some(old) = same {
            if let Some(previous) = into.remove(&old) {
                into.insert(k.clone(), previous);
            }
        }
        match (into.get_mut(&k), v) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                deep_merge(existing, incoming)
            }
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// `a.b.c: x` → `a: {b: {c: x}}` at every level; `[a.b]` is one key `a.b`.
fn expand_dotted(map: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in map {
        let v = match v {
            Value::Object(inner) => Value::Object(expand_dotted(inner)),
            other => other,
        };
        let parts: Vec<String> = split_key(&k)
            .iter()
            .map(|p| unbracket(p).to_string())
            .collect();
        let mut nested = v;
        for part in parts.iter().skip(1).rev() {
            let mut m = Map::new();
            m.insert(part.clone(), nested);
            nested = Value::Object(m);
        }
        let first = parts.into_iter().next().unwrap_or_default();
        let mut single = Map::new();
        single.insert(first, nested);
        deep_merge(&mut out, single);
    }
    out
}

/// Spring's property name syntax: `.` separates elements, `[...]` is one element of its own (a
/// map key that may hold dots, or a list index): `a.b[x.y][0]` → `a`, `b`, `[x.y]`, `[0]`.
/// Bracketed elements keep their brackets here; [`unbracket`] removes them.
fn split_key(k: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0u32;
    for c in k.chars() {
        match c {
            '[' if depth == 0 => {
                if !current.is_empty() {
                    parts.push(std::mem::take(&mut current));
                }
                depth = 1;
                current.push(c);
            }
            '[' => {
                depth += 1;
                current.push(c);
            }
            ']' if depth > 0 => {
                depth -= 1;
                current.push(c);
                if depth == 0 {
                    parts.push(std::mem::take(&mut current));
                }
            }
            '.' if depth == 0 => {
                if !current.is_empty() || parts.is_empty() {
                    parts.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

fn unbracket(part: &str) -> &str {
    part.strip_prefix('[')
        .and_then(|p| p.strip_suffix(']'))
        .unwrap_or(part)
}

/// Spring `.properties`: `key=value` / `key: value` / `key value` lines, `#` and `!` comments,
/// `\` line continuations and escapes, documents separated by `#---` / `!---`. Values are text
/// in a properties file; Spring converts them to the property's type, so numbers and booleans
/// are read as such here (a duration `500` is milliseconds either way). `a[0]` list indexes
/// become lists.
fn properties_documents(text: &str) -> Vec<Value> {
    let mut docs = vec![Map::new()];
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() {
            if line == "#---" || line == "!---" {
                docs.push(Map::new());
                continue;
            }
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
        }
        let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        let entry = std::mem::take(&mut logical);
        let (key, value) = split_property(&entry);
        let mut nested = typed(&value);
        let parts = split_key(&key);
        for part in parts.iter().skip(1).rev() {
            let mut m = Map::new();
            m.insert(part.clone(), nested);
            nested = Value::Object(m);
        }
        let mut single = Map::new();
        single.insert(parts.first().cloned().unwrap_or_default(), nested);
        if let Some(doc) = docs.last_mut() {
            deep_merge(doc, single);
        }
    }
    docs.into_iter()
        .map(|d| indexes_to_lists(Value::Object(d)))
        .collect()
}

fn split_property(entry: &str) -> (String, String) {
    let mut key = String::new();
    let mut chars = entry.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    key.push(n);
                }
            }
            '=' | ':' => break,
            c if c.is_whitespace() => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|c| *c == '=' || *c == ':') {
                    chars.next();
                }
                break;
            }
            c => key.push(c),
        }
    }
    let rest: String = chars.collect();
    (key, unescape(rest.trim_start()))
}

fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn typed(value: &str) -> Value {
    if let Ok(i) = value.parse::<i64>() {
        return Value::Number(i.into());
    }
    if value.contains('.') && value.bytes().any(|b| b.is_ascii_digit()) {
        if let Some(n) = value.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    match value.to_ascii_lowercase().as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(value.to_string()),
    }
}

/// Objects whose keys are all `[n]` become lists ordered by n. Other `[key]`s keep their
/// brackets: the documents then go through [`expand_dotted`], which removes them.
fn indexes_to_lists(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let all_indexes = !map.is_empty()
                && map
                    .keys()
                    .all(|k| k.starts_with('[') && unbracket(k).parse::<usize>().is_ok());
            if all_indexes {
                let mut items: Vec<(usize, Value)> = map
                    .into_iter()
                    .map(|(k, v)| (unbracket(&k).parse().unwrap_or(0), indexes_to_lists(v)))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(
                    map.into_iter()
                        .map(|(k, v)| (k, indexes_to_lists(v)))
                        .collect(),
                )
            }
        }
        other => other,
    }
}

/// YAML → JSON. Keys become strings; merge keys (`<<`) are applied; floats must be finite.
fn to_json(node: &Yaml, where_: &str, path: &str) -> Result<Value, ReadError> {
    let at = |msg: &str| {
        ReadError(format!(
            "{where_}: {}{msg}",
            if path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            }
        ))
    };
    Ok(match node {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(text) => {
            let x = node
                .as_f64()
                .ok_or_else(|| at(&format!("not a number: {text}")))?;
            Value::Number(
                Number::from_f64(x).ok_or_else(|| at(&format!("not a finite number: {text}")))?,
            )
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(item, where_, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(h) => {
            let mut out = Map::new();
            let mut merged_in: Vec<Map<String, Value>> = Vec::new();
            for (k, v) in h {
                let name = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Real(r) => r.clone(),
                    Yaml::Null => "null".to_string(),
                    _ => return Err(at("a mapping key must be a scalar")),
                };
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                let value = to_json(v, where_, &child)?;
                if name == "<<" {
                    match value {
                        Value::Object(m) => merged_in.push(m),
                        Value::Array(items) => {
                            for item in items {
                                match item {
                                    Value::Object(m) => merged_in.push(m),
                                    _ => return Err(at("`<<` merges mappings only")),
                                }
                            }
                        }
                        _ => return Err(at("`<<` merges mappings only")),
                    }
                } else {
                    out.insert(name, value);
                }
            }
            // Explicit keys win over merged ones; earlier merge sources win over later ones.
            for m in merged_in {
                for (k, v) in m {
                    out.entry(k).or_insert(v);
                }
            }
            Value::Object(out)
        }
        Yaml::Alias(_) => return Err(at("unresolved YAML alias")),
        Yaml::BadValue => return Err(at("unreadable YAML value")),
    })
}

/// Spring resolves `${name:default}` from its environment; we cannot, so we say where.
fn placeholders(value: &Value, path: &str) -> Result<(), ReadError> {
    match value {
        Value::String(s) if s.contains("${") => Err(ReadError(format!(
            "{path}: property placeholder {s:?} cannot be resolved by the importer (Spring fills it from its environment); write the value"
        ))),
        Value::Object(m) => m.iter().try_for_each(|(k, v)| placeholders(v, &format!("{path}.{k}"))),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| placeholders(v, &format!("{path}[{i}]"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tree(text: &str, profiles: &[&str]) -> Value {
        let selection = Selection {
            profiles: profiles.iter().map(|p| p.to_string()).collect(),
            ..Selection::default()
        };
        extract(text, "application.yml", &selection).unwrap().tree
    }

    #[test]
    fn dotted_keys_and_brackets_nest_like_spring() {
        let t = tree(
            "resilience4j.circuitbreaker.instances:\n  \"[user.service]\":\n    sliding-window-size: 4\n",
            &[],
        );
        assert_eq!(
            t,
            json!({"circuitbreaker": {"instances": {"user.service": {"sliding-window-size": 4}}}})
        );
    }

    #[test]
    fn later_documents_override_and_profiles_select() {
        let text = "resilience4j:\n  retry:\n    instances:\n      a: {max-attempts: 3, wait-duration: 1s}\n---\nspring:\n  config:\n    activate:\n      on-profile: prod\nresilience4j.retry.instances.a.max-attempts: 5\n---\nspring.profiles: '!prod'\nresilience4j.retry.instances.a.wait-duration: 9s\n";
        assert_eq!(
            tree(text, &[]),
            json!({"retry": {"instances": {"a": {"max-attempts": 3, "wait-duration": "9s"}}}})
        );
        assert_eq!(
            tree(text, &["prod"]),
            json!({"retry": {"instances": {"a": {"max-attempts": 5, "wait-duration": "1s"}}}})
        );
    }

    #[test]
    fn properties_files_read_like_spring() {
        let text = "# comment\nresilience4j.circuitbreaker.instances.user-service.failure-rate-threshold=50\nresilience4j.circuitbreaker.instances.user-service.wait-duration-in-open-state: 30s\nresilience4j.circuitbreaker.instances[a.b].record-exceptions[1]=java.io.IOException\nresilience4j.circuitbreaker.instances[a.b].record-exceptions[0]=5xx\nresilience4j.circuitbreaker.instances.user-service.automatic-transition-from-open-to-half-open-enabled = true\n#---\nspring.config.activate.on-profile=prod\nresilience4j.circuitbreaker.instances.user-service.failure-rate-threshold=\\\n  30\n";
        let selection = Selection::default();
        let t = extract(text, "application.properties", &selection)
            .unwrap()
            .tree;
        assert_eq!(
            t,
            json!({"circuitbreaker": {"instances": {
                "user-service": {"failure-rate-threshold": 50, "wait-duration-in-open-state": "30s",
                                 "automatic-transition-from-open-to-half-open-enabled": true},
                "a.b": {"record-exceptions": ["5xx", "java.io.IOException"]}}}})
        );
        let prod = Selection {
            profiles: vec!["prod".into()],
            ..Selection::default()
        };
        let t = extract(text, "application.properties", &prod).unwrap().tree;
        assert_eq!(
            t["circuitbreaker"]["instances"]["user-service"]["failure-rate-threshold"],
            30
        );
    }

    #[test]
    fn merge_keys_apply() {
        let text = "defaults: &d {failure-rate-threshold: 40, sliding-window-size: 20}\nresilience4j:\n  circuitbreaker:\n    instances:\n      a:\n        <<: *d\n        sliding-window-size: 5\n";
        assert_eq!(
            tree(text, &[]),
            json!({"circuitbreaker": {"instances": {"a": {"failure-rate-threshold": 40, "sliding-window-size": 5}}}})
        );
    }

    #[test]
    fn placeholders_are_reported_by_path() {
        let err = extract(
            "resilience4j.retry.instances.a.wait-duration: ${WAIT:2s}\n",
            "application.yml",
            &Selection::default(),
        )
        .unwrap_err();
        assert!(
            err.0
                .starts_with("resilience4j.retry.instances.a.wait-duration: property placeholder"),
            "{err}"
        );
    }

    #[test]
    fn nothing_to_import_is_an_error() {
        let err = extract(
            "server.port: 8080\n",
            "application.yml",
            &Selection::default(),
        )
        .unwrap_err();
        assert!(err.0.contains("no `resilience4j` configuration"), "{err}");
    }
}
