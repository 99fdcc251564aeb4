//! Validation with the filter's own parser, reporting every problem by path.
//!
//! The parser stops at the first error (it must: Envoy gets one log line). To report all of
//! them, the importer removes the offending key and parses again, up to a bound, so one run
//! lists every broken key. Warnings (accepted keys that mean nothing in a sidecar, deprecated
//! spellings) come from the parser too.

use serde_json::{Map, Value};
use sidecar_resilience::policy::{canonical_key, Policy, UNSUPPORTED_MODULES};
/// More errors than this in one file: the rest are not worth listing.
const MAX_ERRORS: usize = 50;

pub struct Report {
    /// The filter's configuration (`{"resilience4j": ..., <filter keys>}`), when valid.
    pub policy: Option<Value>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn validate(tree: Value, extra: Option<Value>, skip_unsupported: bool) -> Report {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let mut tree = tree;
    if skip_unsupported {
        if let Value::Object(map) = &mut tree {
            let skipped: Vec<String> = map.keys().filter(|k| is_unsupported(k)).cloned().collect();
            for k in skipped {
                map.remove(&k);
                warnings.push(format!(
                    "resilience4j.{k}: skipped (--skip-unsupported): the filter has no sidecar meaning for it yet"
                ));
            }
        }
    }
    let mut doc = Map::new();
    doc.insert("resilience4j".to_string(), tree);
    match extra {
        Some(Value::Object(keys)) => {
            for (k, v) in keys {
                if k == "resilience4j" {
                    errors.push(
                        "--filter-keys: must not contain `resilience4j` (it comes from INPUT)"
                            .to_string(),
                    );
                    continue;
                }
                doc.insert(k, v);
            }
        }
        Some(Value::Null) | None => {}
        Some(_) => errors.push("--filter-keys: expected a mapping at the top".to_string()),
    }
    let policy = Value::Object(doc);
    let mut work = policy.clone();
    loop {
        match Policy::from_json(&work.to_string()) {
            Ok(parsed) => {
                if errors.is_empty() {
                    warnings.extend(parsed.warnings);
                }
                break;
            }
            Err(e) => {
                if unsupported_module(&e.path).is_some() {
                    errors.push(format!(
                        "{e}; --skip-unsupported drops it with a warning and imports the rest"
                    ));
                } else {
                    errors.push(e.to_string());
                }
                if errors.len() >= MAX_ERRORS
                    || e.path.is_empty()
                    || tools_common::remove_path(&mut work, &e.path).is_none()
                {
                    break;
                }
            }
        }
    }
    Report {
        policy: errors.is_empty().then_some(policy),
        errors,
        warnings,
    }
}

fn is_unsupported(module: &str) -> bool {
    UNSUPPORTED_MODULES
        .iter()
        .any(|m| canonical_key(m) == canonical_key(module))
}

/// The module a `resilience4j.<module>` error path names, when the filter does not implement it.
fn unsupported_module(path: &str) -> Option<&str> {
    let module = path.strip_prefix("resilience4j.")?;
    (!module.contains('.') && is_unsupported(module)).then_some(module)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refuses_what_the_filter_refuses_such_as_too_many_instances() {
        let instances: Map<String, Value> =
            (0..257).map(|i| (format!("svc-{i}"), json!({}))).collect();
        let report = validate(json!({"retry": {"instances": instances}}), None, false);
        assert_eq!(
            report.errors,
            ["resilience4j: at most 256 circuit breaker and retry instances, got 257"]
        );
    }

    #[test]
    fn reports_and_removes_event_topic_keys_by_the_path_the_filter_reports() {
        let tree = json!({"retry": {"instances": {"a": {}}}});
        let extra = json!({"events": {"bridges": ["b"], "topics": {
            "order.created": {"mode": "avro"}, "order.updated": {"colour": 1}}}});
        let report = validate(tree, Some(extra), false);
        assert_eq!(
            report.errors,
            [
                "events.topics.order.created.mode: must be one of envelope, cloudevents-structured, cloudevents-binary, got \"avro\"",
                "events.topics.order.updated.colour: unknown key (known: mode, type, partition-key)",
            ]
        );
    }

    #[test]
    fn reports_every_error_by_path() {
        let tree = json!({"circuitbreaker": {"instances": {
            "a": {"failure-rate-threshold": 120, "sliding-windw-size": 3},
            "b": {"wait-duration-in-open-state": "-1s"}}},
            "bulkhead": {"instances": {"a": {"max-concurrent-calls": 0}}}});
        let report = validate(tree, None, false);
        assert!(report.policy.is_none());
        let all = report.errors.join("\n");
        for path in [
            "resilience4j.circuitbreaker.instances.a.failure-rate-threshold:",
            "resilience4j.circuitbreaker.instances.a.sliding-windw-size:",
            "resilience4j.circuitbreaker.instances.b.wait-duration-in-open-state:",
            "resilience4j.bulkhead.instances.a.max-concurrent-calls:",
        ] {
            assert!(all.contains(path), "{path} missing in:\n{all}");
        }
    }

    #[test]
    fn an_unsupported_module_error_names_skip_unsupported() {
        // Whichever modules are still unsupported when this runs (others are being added).
        let Some(module) = UNSUPPORTED_MODULES.first() else {
            return;
        };
        let mut tree = Map::new();
        tree.insert(module.to_string(), json!({"instances": {"a": {}}}));
        let report = validate(Value::Object(tree), None, false);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert!(
            report.errors[0].starts_with(&format!("resilience4j.{module}: "))
                && report.errors[0]
                    .ends_with("; --skip-unsupported drops it with a warning and imports the rest"),
            "{}",
            report.errors[0]
        );
    }

    #[test]
    fn skip_unsupported_drops_modules_with_a_warning() {
        let tree = json!({"retry": {"instances": {"a": {"max-attempts": 2}}}, "Scheduled": {"executor": {}}});
        let report = validate(tree, None, true);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report
            .warnings
            .iter()
            .any(|w| w.starts_with("resilience4j.Scheduled: skipped")));
        assert_eq!(
            report.policy,
            Some(json!({"resilience4j": {"retry": {"instances": {"a": {"max-attempts": 2}}}}}))
        );
    }

    #[test]
    fn timelimiter_is_imported_not_refused() {
        let tree = json!({"timelimiter": {
            "configs": {"default": {"timeoutDuration": "2s", "cancelRunningFuture": true}},
            "instances": {"backendA": {"timeout-duration": "500ms", "eventConsumerBufferSize": 10}}
        }});
        for skip_unsupported in [false, true] {
            let report = validate(tree.clone(), None, skip_unsupported);
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            assert_eq!(
                report.policy.as_ref().map(|p| &p["resilience4j"]),
                Some(&tree),
                "kept as written"
            );
            assert!(report
                .warnings
                .iter()
                .any(|w| w.contains("eventConsumerBufferSize: has no meaning")));
        }
    }
}
