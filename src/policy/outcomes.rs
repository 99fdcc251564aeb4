//! Record / ignore / retry lists: HTTP outcomes, and Java exceptions mapped to their HTTP
//! meaning.

use serde_json::Value;

use super::properties::is_class_name;
use super::read::{canonical_key, describe, error, type_error, Result};
use crate::outcome::OutcomeMatcher;

/// A list of outcome tokens: a JSON array, or a comma-separated string as Spring also binds
/// (`null`: empty).
/// Each entry is an HTTP status (`503`, `"503"`), a status class (`"5xx"`, `"4xx"`),
/// `"connect-failure"`, `"reset"`, `"timeout"`, or a Java exception class: well-known ones map
/// to their HTTP meaning, others are accepted with a warning and match nothing.
pub(super) fn outcomes(
    value: &Value,
    path: &str,
    is_ignore_list: bool,
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
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let matchers = outcome(item, &item_path, warnings)?;
        for matcher in matchers {
            if !out.contains(&matcher) {
                out.push(matcher);
            }
        }
    }
    if out.is_empty() && !items.is_empty() {
        // An empty list means "the default" in the model: say so, the user listed something.
        let consequence = if is_ignore_list {
            "nothing is ignored"
        } else {
            "the default applies (5xx and connection failures)"
        };
        warnings.push(format!(
            "{path}: no entry has an HTTP meaning, so {consequence}"
        ));
    }
    Ok(out)
}

const CONNECTION_FAILURES: [OutcomeMatcher; 3] = [
    OutcomeMatcher::ConnectFailure,
    OutcomeMatcher::Reset,
    OutcomeMatcher::Timeout,
];

/// Java exceptions with an HTTP meaning. `Exception` and its broadest kin mean every failure.
const JAVA_EXCEPTIONS: &[(&str, &[OutcomeMatcher])] = &[
    ("java.io.IOException", &CONNECTION_FAILURES),
    (
        "java.net.ConnectException",
        &[OutcomeMatcher::ConnectFailure, OutcomeMatcher::Reset],
    ),
    (
        "java.net.SocketException",
        &[OutcomeMatcher::ConnectFailure, OutcomeMatcher::Reset],
    ),
    (
        "java.util.concurrent.TimeoutException",
        &[OutcomeMatcher::Timeout],
    ),
    (
        "java.net.SocketTimeoutException",
        &[OutcomeMatcher::Timeout],
    ),
    (
        "org.springframework.web.client.HttpServerErrorException",
        &[OutcomeMatcher::StatusClass(5)],
    ),
    (
        "org.springframework.web.client.HttpClientErrorException",
        &[OutcomeMatcher::StatusClass(4)],
    ),
    ("java.lang.Exception", &crate::outcome::DEFAULT_FAILURES),
    (
        "java.lang.RuntimeException",
        &crate::outcome::DEFAULT_FAILURES,
    ),
    ("java.lang.Throwable", &crate::outcome::DEFAULT_FAILURES),
];

fn outcome(item: &Value, path: &str, warnings: &mut Vec<String>) -> Result<Vec<OutcomeMatcher>> {
    let invalid = || {
        error(
            path,
            format!(
                "expected an HTTP status (100-599), \"4xx\", \"5xx\", \"connect-failure\", \"reset\", \"timeout\" or a Java exception class, got {}",
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
            return Ok(vec![OutcomeMatcher::Status(status)]);
        }
        return Err(invalid());
    }
    match canonical_key(&text).as_str() {
        "4xx" => return Ok(vec![OutcomeMatcher::StatusClass(4)]),
        "5xx" => return Ok(vec![OutcomeMatcher::StatusClass(5)]),
        "connectfailure" => return Ok(vec![OutcomeMatcher::ConnectFailure]),
        "reset" => return Ok(vec![OutcomeMatcher::Reset]),
        "timeout" => return Ok(vec![OutcomeMatcher::Timeout]),
        _ => {}
    }
    if text.contains('.') && is_class_name(&text) {
        if let Some((_, matchers)) = JAVA_EXCEPTIONS.iter().find(|(class, _)| *class == text) {
            return Ok(matchers.to_vec());
        }
        warnings.push(format!(
            "{path}: {text} has no HTTP meaning in the sidecar; ignored"
        ));
        return Ok(Vec::new());
    }
    Err(invalid())
}
