//! The response served while a circuit does not permit calls: the instance's configured
//! fallback, or a JSON 503 naming the upstream and the state. `Retry-After` tells the
//! caller when the circuit may let calls through again.

use crate::policy::Fallback;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Renders the response for a call that was not permitted. `state` is the breaker state as
/// resilience4j names it (`OPEN`, `FORCED_OPEN`, `HALF_OPEN`); `retry_after_ms` the remaining
/// open wait when known.
pub fn render(
    configured: Option<&Fallback>,
    instance: &str,
    state: &str,
    retry_after_ms: Option<u64>,
) -> LocalResponse {
    let retry_after_s = retry_after_ms.map(|ms| ms.div_ceil(1000).max(1));
    let (status, mut headers, body) = match configured {
        Some(fallback) => (
            fallback.status,
            fallback.headers.clone(),
            fallback
                .body
                .clone()
                .unwrap_or_else(|| default_body(instance, state, retry_after_s)),
        ),
        None => (
            503,
            vec![("content-type".to_string(), "application/json".to_string())],
            default_body(instance, state, retry_after_s),
        ),
    };
    let has = |headers: &[(String, String)], name: &str| {
        headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    if let Some(seconds) = retry_after_s {
        if !has(&headers, "retry-after") {
            headers.push(("retry-after".to_string(), seconds.to_string()));
        }
    }
    // Lets callers and access logs tell a fallback from a real upstream answer.
    headers.push((
        "x-circuit-breaker".to_string(),
        format!("{instance}; state={state}"),
    ));
    LocalResponse {
        status,
        headers,
        body: body.into_bytes(),
    }
}

fn default_body(instance: &str, state: &str, retry_after_s: Option<u64>) -> String {
    let mut body = serde_json::json!({
        "error": "circuit breaker does not permit calls",
        "upstream": instance,
        "state": state,
    });
    if let (Some(seconds), Some(map)) = (retry_after_s, body.as_object_mut()) {
        map.insert("retryAfterSeconds".to_string(), seconds.into());
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn header<'a>(r: &'a LocalResponse, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn default_fallback_is_a_json_503_naming_upstream_and_state_with_retry_after() {
        let r = render(None, "user-service", "OPEN", Some(12_300));
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("13"));
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        assert_eq!(body["upstream"], "user-service");
        assert_eq!(body["state"], "OPEN");
        assert_eq!(body["retryAfterSeconds"], 13);
    }

    #[test]
    fn retry_after_is_at_least_one_second_and_absent_when_unknown() {
        assert_eq!(
            header(&render(None, "a", "OPEN", Some(1)), "retry-after"),
            Some("1")
        );
        assert_eq!(
            header(&render(None, "a", "FORCED_OPEN", None), "retry-after"),
            None
        );
    }

    #[test]
    fn configured_fallback_serves_its_status_headers_and_body() {
        let fallback = Fallback {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(r#"{"id":"unknown","name":"Guest"}"#.into()),
        };
        let r = render(Some(&fallback), "user-service", "OPEN", Some(5000));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, br#"{"id":"unknown","name":"Guest"}"#.to_vec());
        assert_eq!(header(&r, "retry-after"), Some("5"));
        assert_eq!(
            header(&r, "x-circuit-breaker"),
            Some("user-service; state=OPEN")
        );
    }

    #[test]
    fn configured_retry_after_is_kept() {
        let fallback = Fallback {
            status: 503,
            headers: vec![("Retry-After".into(), "60".into())],
            body: None,
        };
        let r = render(Some(&fallback), "a", "OPEN", Some(5000));
        assert_eq!(
            r.headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                .count(),
            1
        );
    }
}
