//! The filter's own keys beside `resilience4j`: `upstreams` (Envoy cluster -> instance),
//! `fallbacks` (circuit breaker instance -> `status` / `headers` / `body`) and `retry-options`
//! (retry instance -> `retry-non-idempotent`, `max-body-bytes`, `per-try-timeout`,
//! `overall-timeout`, `budget.{retry-ratio, min-retries-per-second, window}`).

use crate::sorted_map::SortedMap;

use crate::json::Value;

use super::model::{BudgetConfig, Fallback, RetryConfig, RetryOptions};
use super::read::{
    boolean, describe, duration_ms, entries, error, integer, keyed, keys, number, show, string,
    type_error, Hint, Keys, Result, JAVA_INT_MAX,
};

/// `upstreams`: Envoy cluster name -> an instance of any module (`is_instance`).
pub(super) fn read_upstreams(
    value: &Value,
    path: &str,
    is_instance: impl Fn(&str) -> bool,
) -> Result<SortedMap<String, String>> {
    let mut out = SortedMap::new();
    for (cluster, value, path) in entries(value, path)? {
        let instance = string(value, &path)?;
        if !is_instance(instance) {
            return Err(error(&path, format!("unknown instance '{instance}'")));
        }
        out.insert(cluster.to_string(), instance.to_string());
    }
    Ok(out)
}

keys! {
    enum FallbackKey (Hint::Suggest) {
        Status = "status",
        Headers = "headers",
        Body = "body",
        On = "on",
    }
}

keys! {
    /// The refusal kinds a fallback may be given for (`fallbacks.<instance>.on.<kind>`).
    enum RefusalKind (Hint::ListKnown) {
        CircuitOpen = "circuit-open",
        BulkheadFull = "bulkhead-full",
        RateLimited = "rate-limited",
        Timeout = "timeout",
    }
}

/// `fallbacks`: instance -> the response served when its circuit breaker, bulkhead or rate
/// limiter refuses a call, or its time limiter cuts an attempt short.
pub(super) fn read_fallbacks(
    value: &Value,
    path: &str,
    guarded_by_refusing_module: impl Fn(&str) -> bool,
    warnings: &mut Vec<String>,
) -> Result<SortedMap<String, Fallback>> {
    let mut out = SortedMap::new();
    for (instance, value, path) in entries(value, path)? {
        // A fallback answers a refusal: a circuit breaker's, a bulkhead's or a rate limiter's.
        if !guarded_by_refusing_module(instance) {
            return Err(error(
                &path,
                format!("unknown circuit breaker instance '{instance}'"),
            ));
        }
        let fallback = read_fallback(value, &path, true, warnings)?;
        out.insert(instance.to_string(), fallback);
    }
    Ok(out)
}

/// One fallback: `status` (default 503), `headers`, `body`, and (at the instance level) `on`,
/// a fallback per refusal kind, served for that kind instead.
fn read_fallback(
    value: &Value,
    path: &str,
    top_level: bool,
    warnings: &mut Vec<String>,
) -> Result<Fallback> {
    let mut fallback = Fallback {
        status: 503,
        headers: Vec::new(),
        body: None,
        on: SortedMap::new(),
    };
    for (key, value, path) in keyed(value, path, warnings)? {
        match key {
            FallbackKey::Status => {
                fallback.status = u16::try_from(integer(value, &path, 100, 599)?).unwrap_or(503)
            }
            FallbackKey::Headers => fallback.headers = headers(value, &path)?,
            FallbackKey::Body => {
                fallback.body = match value {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_json()),
                };
                let size = fallback.body.as_ref().map_or(0, String::len);
                if size > super::MAX_FALLBACK_BODY_BYTES {
                    return Err(error(
                        &path,
                        format!(
                            "at most {} bytes, got {size}",
                            super::MAX_FALLBACK_BODY_BYTES
                        ),
                    ));
                }
            }
            FallbackKey::On if !top_level => {
                return Err(error(&path, "a per-kind fallback has no `on` of its own"));
            }
            FallbackKey::On => {
                for (kind, value, path) in keyed::<RefusalKind>(value, &path, warnings)? {
                    let name = RefusalKind::KEYS
                        .iter()
                        .find(|k| k.target == kind)
                        .map_or("", |k| k.name);
                    let per_kind = read_fallback(value, &path, false, warnings)?;
                    fallback.on.insert(name.to_string(), per_kind);
                }
            }
        }
    }
    Ok(fallback)
}

/// Response headers of a fallback: names lower-cased (HTTP/2 requires it), scalar values.
fn headers(value: &Value, path: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen = SortedMap::new();
    for (name, value, header_path) in entries(value, path)? {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with(':') {
            return Err(error(&header_path, "pseudo-headers cannot be set"));
        }
        if lower == "content-length" || lower == "transfer-encoding" {
            return Err(error(&header_path, "is set by Envoy and cannot be set"));
        }
        if !lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(error(&header_path, "is not a valid header name"));
        }
        if seen.insert(lower.clone(), ()).is_some() {
            return Err(error(&header_path, "header given twice"));
        }
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => return Err(type_error(&header_path, "a string", other)),
        };
        if text.contains(['\r', '\n', '\0']) {
            return Err(error(
                &header_path,
                "header value must not contain CR, LF or NUL",
            ));
        }
        out.push((lower, text));
    }
    Ok(out)
}

keys! {
    enum RetryOptionsKey (Hint::Suggest) {
        RetryNonIdempotent = "retry-non-idempotent",
        MaxBodyBytes = "max-body-bytes",
        PerTryTimeout = "per-try-timeout",
        OverallTimeout = "overall-timeout",
        Budget = "budget",
    }
}

/// `retry-options`: how the sidecar replays requests, per retry instance (no resilience4j
/// equivalent). Every retry instance gets an entry, defaults filled in.
pub(super) fn read_retry_options(
    value: Option<(&Value, &str)>,
    retries: &SortedMap<String, RetryConfig>,
    warnings: &mut Vec<String>,
) -> Result<SortedMap<String, RetryOptions>> {
    let mut all: SortedMap<String, RetryOptions> = retries
        .keys()
        .map(|name| (name.clone(), RetryOptions::default()))
        .collect();
    let Some((value, path)) = value else {
        return Ok(all);
    };
    for (name, value, path) in entries(value, path)? {
        let options = all
            .get_mut(name)
            .ok_or_else(|| error(&path, format!("unknown retry instance '{name}'")))?;
        for (key, value, path) in keyed(value, &path, warnings)? {
            match key {
                RetryOptionsKey::RetryNonIdempotent => {
                    options.retry_non_idempotent = boolean(value, &path)?
                }
                RetryOptionsKey::MaxBodyBytes => {
                    options.max_body_bytes =
                        u32::try_from(integer(value, &path, 0, super::MAX_RETRY_BODY_BYTES)?)
                            .unwrap_or(0)
                }
                RetryOptionsKey::PerTryTimeout => {
                    options.per_try_timeout_ms = duration_ms(value, &path, 1)?
                }
                RetryOptionsKey::OverallTimeout => {
                    options.overall_timeout_ms = Some(duration_ms(value, &path, 1)?)
                }
                RetryOptionsKey::Budget => options.budget = budget(value, &path, warnings)?,
            }
        }
    }
    Ok(all)
}

keys! {
    enum BudgetKey (Hint::Suggest) {
        RetryRatio = "retry-ratio",
        MinRetriesPerSecond = "min-retries-per-second",
        Window = "window",
    }
}

fn budget(value: &Value, path: &str, warnings: &mut Vec<String>) -> Result<BudgetConfig> {
    let mut budget = BudgetConfig::default();
    for (key, value, path) in keyed(value, path, warnings)? {
        match key {
            BudgetKey::RetryRatio => {
                let x = number(value, &path)?;
                if !(0.0..=1000.0).contains(&x) {
                    return Err(error(
                        &path,
                        format!("must be in [0, 1000], got {}", show(x)),
                    ));
                }
                budget.retry_ratio = x;
            }
            BudgetKey::MinRetriesPerSecond => {
                budget.min_retries_per_second =
                    u32::try_from(integer(value, &path, 0, JAVA_INT_MAX)?).unwrap_or(0)
            }
            BudgetKey::Window => {
                let ms = duration_ms(value, &path, 0)?;
                if ms % 1000 != 0 || !(1_000..=60_000).contains(&ms) {
                    return Err(error(
                        &path,
                        format!(
                            "must be a whole number of seconds from 1s to 60s, got {}",
                            describe(value)
                        ),
                    ));
                }
                budget.window_s = u32::try_from(ms / 1000).unwrap_or(1);
            }
        }
    }
    Ok(budget)
}
