//! Which upstream each instance will guard, said per instance, and `--upstream INSTANCE=SERVICE`
//! to map the ones that guard nothing.
//!
//! An instance guards the Envoy cluster of its own name, and in Istio the Kubernetes service of
//! its name (the first DNS label of an outbound cluster's host). Spring configurations name
//! instances as code handles (`backendA`, `inventoryClient`), and a Kubernetes service name is
//! a DNS-1035 label (lowercase letters, digits, `-`): such an instance would guard nothing,
//! silently. `--upstream` writes the filter's `upstreams` map (service -> instance), which the
//! filter matches against every outbound cluster of that service.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sidecar_resilience::policy::Policy;

/// `--upstream INSTANCE=SERVICE`, in command-line order.
#[derive(Debug, Clone, Default)]
pub struct Mappings(Vec<(String, String)>);

impl Mappings {
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let (instance, upstream) = spec
            .split_once('=')
            .map(|(i, u)| (i.trim(), u.trim()))
            .filter(|(i, u)| !i.is_empty() && !u.is_empty())
            .ok_or_else(|| format!("--upstream {spec}: expected INSTANCE=SERVICE"))?;
        self.0.push((instance.to_string(), upstream.to_string()));
        Ok(())
    }

    /// The filter keys with the mappings added to `upstreams` (service -> instance). An
    /// upstream guarded by two instances is refused: the filter guards an upstream with the
    /// instances of one name.
    pub fn merge_into(&self, extra: Option<Value>) -> Result<Option<Value>, String> {
        if self.0.is_empty() {
            return Ok(extra);
        }
        let mut keys = match extra {
            Some(Value::Object(keys)) => keys,
            None | Some(Value::Null) => Map::new(),
            // validate() reports the wrong shape.
            Some(other) => return Ok(Some(other)),
        };
        let upstreams = keys
            .entry("upstreams")
            .or_insert_with(|| Value::Object(Map::new()));
        if upstreams.is_null() {
            *upstreams = Value::Object(Map::new());
        }
        let Value::Object(upstreams) = upstreams else {
            return Err("--filter-keys: upstreams must be a mapping".to_string());
        };
        for (instance, upstream) in &self.0 {
            match upstreams.get(upstream).and_then(Value::as_str) {
                Some(other) if other != instance => {
                    return Err(format!(
                        "--upstream {instance}={upstream}: {upstream} is already guarded by \
                         instance {other}. The sidecar guards an upstream with the instances \
                         of one name (the circuit breaker and the retry named alike); give \
                         them one name in the configuration"
                    ))
                }
                _ => {
                    upstreams.insert(upstream.clone(), Value::String(instance.clone()));
                }
            }
        }
        Ok(Some(Value::Object(keys)))
    }
}

/// A Kubernetes Service name: an RFC 1035 label (lowercase letters, digits and '-', starting
/// with a letter, ending with a letter or digit, at most 63 characters).
pub fn is_service_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// A service name `name` likely stands for (`backendA` -> `backend-a`), if one can be made.
pub fn suggested_service(name: &str) -> Option<String> {
    let mut out = String::new();
    let mut previous: Option<char> = None;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
        previous = Some(c);
    }
    let trimmed: String = out
        .trim_start_matches(|c: char| c == '-' || c.is_ascii_digit())
        .chars()
        .take(63)
        .collect();
    let trimmed = trimmed.trim_end_matches('-').to_string();
    is_service_name(&trimmed).then_some(trimmed)
}

/// What the report says about the instances: notes (what each guards) and warnings (names that
/// guard nothing in Istio).
#[derive(Debug, Default)]
pub struct Report {
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

/// Every instance of `policy` with the modules it is an instance of.
fn instances(policy: &Policy) -> BTreeMap<&str, Vec<&'static str>> {
    let mut out: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
    // Each module the filter implements, by its resilience4j name.
    for name in policy.circuit_breakers.keys() {
        out.entry(name).or_default().push("circuitbreaker");
    }
    for name in policy.retries.keys() {
        out.entry(name).or_default().push("retry");
    }
    out
}

fn describe_upstream(key: &str) -> String {
    if key.starts_with("outbound|") {
        format!("the Istio cluster {key}")
    } else if is_service_name(key) {
        format!("the Kubernetes service {key} (in Istio every outbound|PORT|SUBSET|{key}.NAMESPACE.svc.cluster.local cluster) and the Envoy cluster {key}")
    } else if key.contains('.') && key.split('.').all(is_service_name) {
        format!("the Istio host {key} (every outbound|PORT|SUBSET|{key} cluster)")
    } else {
        format!("the Envoy cluster {key}")
    }
}

/// Says, per instance, which upstream it guards; warns for names no Kubernetes service has.
pub fn report(policy: &Policy) -> Report {
    let mut report = Report::default();
    for (name, modules) in instances(policy) {
        let what = format!("instance {name} ({})", modules.join(", "));
        let mapped: Vec<&str> = policy
            .upstreams
            .iter()
            .filter(|(_, instance)| instance.as_str() == name)
            .map(|(key, _)| key.as_str())
            .collect();
        if !mapped.is_empty() {
            let guards: Vec<String> = mapped.iter().map(|k| describe_upstream(k)).collect();
            report
                .notes
                .push(format!("{what} guards {} (upstreams)", guards.join("; ")));
        } else if is_service_name(name) {
            report.notes.push(format!(
                "{what} guards {}; if it calls a service of another name: --upstream {name}=SERVICE",
                describe_upstream(name)
            ));
        } else {
            let example = suggested_service(name)
                .map(|s| format!(" (e.g. --upstream {name}={s})"))
                .unwrap_or_default();
            report.warnings.push(format!(
                "{what} guards nothing in Istio: no Kubernetes service can be named {name} \
                 (service names are DNS-1035 labels: lowercase letters, digits and '-', \
                 starting with a letter, at most 63 characters); only an Envoy cluster of that \
                 exact name. Name the service it calls: --upstream {name}=SERVICE{example}"
            ));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_names_are_dns_1035_labels() {
        for good in ["backend-a", "a", "user-service", "svc2"] {
            assert!(is_service_name(good), "{good}");
        }
        let long = "a".repeat(64);
        for bad in [
            "backendA",
            "inventory_client",
            "2svc",
            "svc-",
            "",
            "user.service",
            &long,
        ] {
            assert!(!is_service_name(bad), "{bad}");
        }
    }

    #[test]
    fn suggestions_lower_camel_case_into_labels() {
        assert_eq!(suggested_service("backendA").as_deref(), Some("backend-a"));
        assert_eq!(
            suggested_service("inventoryClient").as_deref(),
            Some("inventory-client")
        );
        assert_eq!(
            suggested_service("multipleRateLimiters_rps_limiter").as_deref(),
            Some("multiple-rate-limiters-rps-limiter")
        );
        assert_eq!(suggested_service("HTTPBin").as_deref(), Some("httpbin"));
        assert_eq!(suggested_service("__"), None);
    }

    #[test]
    fn every_instance_is_reported_and_camel_case_names_are_warned_about() {
        let mut mappings = Mappings::default();
        mappings.add("backendB=backend-b").unwrap();
        let extra = mappings.merge_into(None).unwrap().unwrap();
        let mut doc = json!({"resilience4j": {"circuitbreaker": {"instances": {
            "backendA": {}, "backendB": {}, "product": {}}}, "retry": {"instances": {"product": {}}}}});
        doc["upstreams"] = extra["upstreams"].clone();
        let policy = Policy::from_json(&doc.to_string()).unwrap();
        let report = report(&policy);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(report.warnings[0]
            .starts_with("instance backendA (circuitbreaker) guards nothing in Istio"));
        assert!(report.warnings[0]
            .ends_with("--upstream backendA=SERVICE (e.g. --upstream backendA=backend-a)"));
        assert_eq!(report.notes.len(), 2, "{:?}", report.notes);
        assert!(report.notes[0].starts_with(
            "instance backendB (circuitbreaker) guards the Kubernetes service backend-b"
        ));
        assert!(report.notes[1].starts_with(
            "instance product (circuitbreaker, retry) guards the Kubernetes service product"
        ));
    }

    #[test]
    fn one_upstream_is_refused_two_instances() {
        let mut mappings = Mappings::default();
        mappings.add("inventoryCB=inventory").unwrap();
        mappings.add("inventoryRetry=inventory").unwrap();
        let err = mappings.merge_into(None).unwrap_err();
        assert!(
            err.contains("inventory is already guarded by instance inventoryCB"),
            "{err}"
        );
        // With --filter-keys upstreams too.
        let mut one = Mappings::default();
        one.add("b=svc").unwrap();
        assert!(one
            .merge_into(Some(json!({"upstreams": {"svc": "a"}})))
            .is_err());
        assert!(one
            .merge_into(Some(json!({"upstreams": {"svc": "b"}})))
            .is_ok());
        assert!(Mappings::default().add("noequals").is_err());
    }
}
