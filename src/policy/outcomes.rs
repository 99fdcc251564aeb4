//! Record / ignore / retry lists: HTTP outcomes, and Java exceptions mapped to their HTTP
//! meaning.

use crate::json::Value;

use super::java_exceptions::{meaning, Meaning, REFUSAL_NOT_RECORDED};
use super::properties::is_class_name;
use super::read::{canonical_key, describe, error, type_error, Result};
use crate::outcome::{OutcomeMatcher, GRPC_CODES};

/// A list of outcome tokens: a JSON array, or a comma-separated string as Spring also binds
/// (`null`: empty).
/// Each entry is an HTTP status (`503`, `"503"`), a status class (`"5xx"`, `"4xx"`),
/// `"connect-failure"`, `"reset"`, `"timeout"`, a gRPC status (`"grpc-error"`: any but OK;
/// `"grpc-unavailable"`, `"grpc-14"`: one code), or a Java exception class: well-known ones map
/// to their HTTP (or gRPC) meaning, others are accepted with a warning and match nothing. `refusals`
/// (Retry's lists): resilience4j's `BulkheadFullException` / `RequestNotPermitted` and the
/// tokens `"bulkhead-full"` / `"rate-limited"` mean a replay the bulkhead / rate limiter
/// refused; elsewhere they match nothing (warned about).
pub(super) fn outcomes(
    value: &Value,
    path: &str,
    is_ignore_list: bool,
    refusals: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<OutcomeMatcher>> {
    let items: Vec<Value> = match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        Value::String(s) if s.trim().is_empty() => Vec::new(),
        Value::String(s) => s
            .split(',')
            .map(|item| Value::String(item.trim().to_string()))
            .collect(),
        other => return Err(type_error(path, "a list", other)),
    };
    let mut out: Vec<OutcomeMatcher> = Vec::new();
    let mut unknown_classes = false;
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let matchers = match outcome(item, &item_path, refusals, warnings)? {
            Entry::Matches(matchers) => matchers,
            Entry::UnknownClass => {
                unknown_classes = true;
                Vec::new()
            }
            Entry::LocalRejection => Vec::new(),
        };
        for matcher in matchers {
            if !out.contains(&matcher) {
                out.push(matcher);
            }
        }
    }
    // A list of resilience4j's own rejections only changes nothing (they were said to match
    // nothing); one of application exceptions only is worth a word on what then applies.
    if out.is_empty() && unknown_classes {
        // An empty list means "the default" in the model: say so, the user listed something.
        let consequence = if is_ignore_list {
            "nothing is ignored"
        } else {
            "the default applies (5xx, connection failures and gRPC errors)"
        };
        warnings.push(format!(
            "{path}: no entry has an HTTP meaning, so {consequence}; list the HTTP outcomes \
             meant instead (e.g. \"404\", \"5xx\", \"timeout\")"
        ));
    }
    Ok(out)
}

/// What one list entry stands for.
enum Entry {
    Matches(Vec<OutcomeMatcher>),
    /// A Java class the sidecar knows no HTTP meaning of (warned about).
    UnknownClass,
    /// One of resilience4j's own local rejections (warned about).
    LocalRejection,
}

fn outcome(item: &Value, path: &str, refusals: bool, warnings: &mut Vec<String>) -> Result<Entry> {
    let invalid = || {
        error(
            path,
            format!(
                "expected an HTTP status (100-599), \"4xx\", \"5xx\", \"connect-failure\", \"reset\", \"timeout\", \"grpc-error\", a gRPC status (\"grpc-unavailable\", \"grpc-14\") or a Java exception class, got {}",
                describe(item)
            ),
        )
    };
    let text = match item {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return Err(invalid()),
    };
    if text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit()) {
        let status: u16 = text.parse().map_err(|_| invalid())?;
        if (100..=599).contains(&status) {
            return Ok(Entry::Matches(vec![OutcomeMatcher::Status(status)]));
        }
        return Err(invalid());
    }
    match canonical_key(&text).as_str() {
        "4xx" => return Ok(Entry::Matches(vec![OutcomeMatcher::StatusClass(4)])),
        "5xx" => return Ok(Entry::Matches(vec![OutcomeMatcher::StatusClass(5)])),
        "connectfailure" => return Ok(Entry::Matches(vec![OutcomeMatcher::ConnectFailure])),
        "reset" => return Ok(Entry::Matches(vec![OutcomeMatcher::Reset])),
        "timeout" => return Ok(Entry::Matches(vec![OutcomeMatcher::Timeout])),
        "bulkheadfull" => {
            return Ok(refusal(
                OutcomeMatcher::BulkheadFull,
                &text,
                path,
                refusals,
                warnings,
            ))
        }
        "ratelimited" => {
            return Ok(refusal(
                OutcomeMatcher::RateLimited,
                &text,
                path,
                refusals,
                warnings,
            ))
        }
        "grpcerror" => return Ok(Entry::Matches(vec![OutcomeMatcher::GrpcError])),
        key => {
            if let Some(code) = key.strip_prefix("grpc").and_then(grpc_code) {
                return Ok(Entry::Matches(vec![OutcomeMatcher::GrpcStatus(code)]));
            }
        }
    }
    if text.contains('.') && is_class_name(&text) {
        return Ok(match meaning(&text) {
            Some(Meaning::Outcomes(matchers)) => Entry::Matches(matchers.to_vec()),
            Some(Meaning::Status(status)) => Entry::Matches(vec![OutcomeMatcher::Status(status)]),
            Some(Meaning::Refusal(matcher)) => refusal(matcher, &text, path, refusals, warnings),
            Some(Meaning::LocalRejection(what)) => {
                warnings.push(format!("{path}: {text} is {what}"));
                Entry::LocalRejection
            }
            None => {
                warnings.push(format!(
                    "{path}: {text} is no HTTP client exception the sidecar knows (it sees \
                     HTTP answers, not the application's exceptions), so it matches nothing; \
                     if it stands for HTTP statuses (an error decoder or handler throws it for \
                     them), list those instead, e.g. \"404\" or \"4xx\""
                ));
                Entry::UnknownClass
            }
        });
    }
    Err(invalid())
}

/// A bulkhead's or rate limiter's refusal in a list: a refused replay in Retry's lists.
fn refusal(
    matcher: OutcomeMatcher,
    text: &str,
    path: &str,
    refusals: bool,
    warnings: &mut Vec<String>,
) -> Entry {
    if refusals {
        return Entry::Matches(vec![matcher]);
    }
    warnings.push(format!("{path}: {text} is {REFUSAL_NOT_RECORDED}"));
    Entry::LocalRejection
}

/// A gRPC status code by its number (1-16) or its name (`unavailable`, `deadline-exceeded`,
/// any case, `-` or `_`), as [`canonical_key`] leaves it. OK is no failure: None.
fn grpc_code(key: &str) -> Option<u8> {
    if let Ok(code) = key.parse::<u8>() {
        return (1..=16).contains(&code).then_some(code);
    }
    GRPC_CODES
        .iter()
        .find(|(name, _)| canonical_key(name) == key)
        .map(|(_, code)| *code)
}
