//! The parser's warnings, sorted for a platform engineer: what to act on stays a warning (and
//! says how), what needs nothing becomes one note.
//!
//! The parser says "has no meaning in the sidecar; ignored" for every Spring key it accepts
//! but does not use. Most of those concern the Java process only (health indicator, event
//! buffer, aspect order, metrics tags): nothing to do, so they are listed in one note. The
//! predicates and interval functions are Java code that decided what counts as a failure or
//! how long to wait: the sidecar cannot run them, and the warning says what to write instead.

use sidecar_resilience::policy::canonical_key;

const IGNORED: &str = ": has no meaning in the sidecar; ignored";

/// Keys for the Java process only (canonical form; `…aspectorder` by suffix).
const JAVA_PROCESS_ONLY: &[&str] = &[
    "registerhealthindicator",
    "allowhealthindicatortofail",
    "eventconsumerbuffersize",
    "writablestacktraceenabled",
    "ignoreclassbindingexceptions",
    "tags",
    "metrics",
];

/// Java code the sidecar cannot run, and what to write instead.
const JAVA_CODE: &[(&str, &str)] = &[
    ("recordfailurepredicate", "list the HTTP outcomes it records in record-exceptions instead (e.g. \"5xx\", \"timeout\")"),
    ("ignoreexceptionpredicate", "list the HTTP outcomes it ignores in ignore-exceptions instead (e.g. \"404\")"),
    ("recordresultpredicate", "list the HTTP statuses it records in record-exceptions instead"),
    ("retryexceptionpredicate", "list the HTTP outcomes it retries in retry-exceptions instead (e.g. \"503\", \"connect-failure\")"),
    ("resultpredicate", "list the HTTP statuses it retries in retry-exceptions instead"),
    ("intervalbifunction", "write the waits it computes with wait-duration and enable-exponential-backoff / enable-randomized-wait instead"),
    ("consumeresultbeforeretryattempt", "nothing replaces it: the sidecar discards a retried answer itself; the entry can be dropped"),
];

/// (notes, warnings) from the parser's warnings.
pub fn sort(warnings: Vec<String>) -> (Vec<String>, Vec<String>) {
    let mut java_only = Vec::new();
    let mut out = Vec::new();
    for warning in warnings {
        let Some(path) = warning.strip_suffix(IGNORED) else {
            out.push(warning);
            continue;
        };
        let key = canonical_key(path.rsplit('.').next().unwrap_or(path));
        if JAVA_PROCESS_ONLY.contains(&key.as_str()) || key.ends_with("aspectorder") {
            java_only.push(path.to_string());
        } else if let Some((_, instead)) = JAVA_CODE.iter().find(|(k, _)| *k == key) {
            out.push(format!(
                "{path}: Java code the sidecar cannot run; ignored: {instead}"
            ));
        } else {
            out.push(warning);
        }
    }
    let mut notes = Vec::new();
    if !java_only.is_empty() {
        notes.push(format!(
            "ignored, they concern the Java process only (health indicator, event buffer, \
             aspect order, metrics), nothing to do: {}",
            java_only.join(", ")
        ));
    }
    (notes, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sidecar_resilience::policy::Policy;

    #[test]
    fn java_process_keys_become_one_note_and_predicates_say_what_to_write() {
        // The parser's own wording, so a change there shows here.
        let policy = json!({"resilience4j": {"circuitbreaker": {"circuitBreakerAspectOrder": 1,
            "instances": {"a": {"registerHealthIndicator": true, "eventConsumerBufferSize": 10,
            "recordFailurePredicate": "com.example.RecordFailurePredicate"}}}}});
        let parsed = Policy::from_json(&policy.to_string()).unwrap();
        let (notes, warnings) = sort(parsed.warnings);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].ends_with(": resilience4j.circuitbreaker.circuitBreakerAspectOrder, resilience4j.circuitbreaker.instances.a.eventConsumerBufferSize, resilience4j.circuitbreaker.instances.a.registerHealthIndicator"), "{notes:?}");
        assert_eq!(
            warnings,
            ["resilience4j.circuitbreaker.instances.a.recordFailurePredicate: Java code the sidecar cannot run; ignored: list the HTTP outcomes it records in record-exceptions instead (e.g. \"5xx\", \"timeout\")"]
        );
    }
}
