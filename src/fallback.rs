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
    let configured = configured.map(|f| f.for_kind("circuit-open"));
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

/// Why a module refused a call before it reached the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The bulkhead (or thread-pool bulkhead) had no free slot and no room or time to wait:
    /// resilience4j's BulkheadFullException.
    BulkheadFull { thread_pool: bool },
    /// No permit within the timeout: resilience4j's RequestNotPermitted.
    RateLimited { wait_ms: u64 },
}

impl Refusal {
    /// The module, as resilience4j's Spring prefix names it.
    pub fn module(self) -> &'static str {
        match self {
            Refusal::BulkheadFull { thread_pool: false } => "bulkhead",
            Refusal::BulkheadFull { thread_pool: true } => "thread-pool-bulkhead",
            Refusal::RateLimited { .. } => "ratelimiter",
        }
    }

    /// The refusal kind, as `x-resilience4j-refused` and per-kind fallbacks name it.
    pub fn kind(self) -> &'static str {
        match self {
            Refusal::BulkheadFull { .. } => "bulkhead-full",
            Refusal::RateLimited { .. } => "rate-limited",
        }
    }
}

/// Renders the response for a call refused by a bulkhead or rate limiter: the instance's
/// fallback if configured, else `503` (bulkhead full) or `429` with `Retry-After` (rate
/// limited), with a JSON body naming the upstream, the module and why. The
/// `x-resilience4j-refused` header tells it from an upstream's answer.
pub fn render_refusal(
    configured: Option<&Fallback>,
    instance: &str,
    refusal: Refusal,
) -> LocalResponse {
    let (default_status, reason, retry_after_s) = match refusal {
        Refusal::BulkheadFull { .. } => (
            503,
            "bulkhead is full and does not permit further calls".to_string(),
            None,
        ),
        Refusal::RateLimited { wait_ms } => (
            429,
            "rate limiter does not permit further calls".to_string(),
            Some(wait_ms.div_ceil(1000).max(1)),
        ),
    };
    let default_body = || {
        let mut body = crate::json!({
            "error": reason,
            "upstream": instance,
            "module": refusal.module(),
            "refused": refusal.kind(),
        });
        if let (Some(seconds), Some(map)) = (retry_after_s, body.as_object_mut()) {
            map.insert("retryAfterSeconds".to_string(), seconds.into());
        }
        body.to_string()
    };
    let configured = configured.map(|f| f.for_kind(refusal.kind()));
    let (status, mut headers, body) = match configured {
        Some(fallback) => (
            fallback.status,
            fallback.headers.clone(),
            fallback.body.clone().unwrap_or_else(default_body),
        ),
        None => (
            default_status,
            vec![("content-type".to_string(), "application/json".to_string())],
            default_body(),
        ),
    };
    if let Some(seconds) = retry_after_s {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        {
            headers.push(("retry-after".to_string(), seconds.to_string()));
        }
    }
    headers.push((
        "x-resilience4j-refused".to_string(),
        format!(
            "{instance}; module={}; kind={}",
            refusal.module(),
            refusal.kind()
        ),
    ));
    LocalResponse {
        status,
        headers,
        body: body.into_bytes(),
    }
}

fn default_body(instance: &str, state: &str, retry_after_s: Option<u64>) -> String {
    let mut body = crate::json!({
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
        let body: crate::json::Value = crate::json::from_slice(&r.body).unwrap_or_default();
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
            on: Default::default(),
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
    fn a_full_bulkhead_is_a_503_naming_upstream_and_module() {
        let r = render_refusal(None, "svc", Refusal::BulkheadFull { thread_pool: false });
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), None);
        assert_eq!(
            header(&r, "x-resilience4j-refused"),
            Some("svc; module=bulkhead; kind=bulkhead-full")
        );
        let body: crate::json::Value = crate::json::from_slice(&r.body).unwrap_or_default();
        assert_eq!(body["upstream"], "svc");
        assert_eq!(body["module"], "bulkhead");
    }

    #[test]
    fn a_rate_limited_call_is_a_429_with_retry_after_or_the_fallback() {
        let r = render_refusal(None, "svc", Refusal::RateLimited { wait_ms: 1200 });
        assert_eq!(r.status, 429);
        assert_eq!(header(&r, "retry-after"), Some("2"));
        let fallback = Fallback {
            status: 200,
            headers: vec![],
            body: Some("cached".into()),
            on: Default::default(),
        };
        let r = render_refusal(Some(&fallback), "svc", Refusal::RateLimited { wait_ms: 10 });
        assert_eq!((r.status, r.body.as_slice()), (200, b"cached".as_slice()));
        let mut per_kind = fallback.clone();
        per_kind.on.insert(
            "rate-limited".into(),
            Fallback {
                status: 429,
                headers: vec![],
                body: Some("slow down".into()),
                on: Default::default(),
            },
        );
        let r = render_refusal(Some(&per_kind), "svc", Refusal::RateLimited { wait_ms: 10 });
        assert_eq!(
            (r.status, r.body.as_slice()),
            (429, b"slow down".as_slice())
        );
        let r = render_refusal(
            Some(&per_kind),
            "svc",
            Refusal::BulkheadFull { thread_pool: false },
        );
        assert_eq!(r.status, 200, "other kinds keep the instance's fallback");
        assert_eq!(render(Some(&per_kind), "svc", "OPEN", None).status, 200);
        assert_eq!(
            header(
                &render_refusal(Some(&fallback), "svc", Refusal::RateLimited { wait_ms: 10 }),
                "x-resilience4j-refused"
            ),
            Some("svc; module=ratelimiter; kind=rate-limited")
        );
    }

    #[test]
    fn configured_retry_after_is_kept() {
        let fallback = Fallback {
            status: 503,
            headers: vec![("Retry-After".into(), "60".into())],
            body: None,
            on: Default::default(),
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
