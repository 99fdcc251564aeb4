//! YAML as JSON values, for tests that read istio/ manifests, compose files and importer output.

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// Every document of a YAML text, as JSON (keys as strings; floats finite).
pub fn load_docs(text: &str) -> Result<Vec<Value>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    docs.iter().map(to_json).collect()
}

/// Every document of a YAML file.
pub fn load_file(path: &std::path::Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    load_docs(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn to_json(node: &Yaml) -> Result<Value, String> {
    Ok(match node {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(r) => Value::Number(
            node.as_f64()
                .and_then(Number::from_f64)
                .ok_or_else(|| format!("not a finite number: {r}"))?,
        ),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(h) => {
            let mut map = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(format!("unsupported key {other:?}")),
                };
                map.insert(key, to_json(v)?);
            }
            Value::Object(map)
        }
        other => return Err(format!("unsupported YAML node {other:?}")),
    })
}
