//! JSON -> validated [`Policy`].
//!
//! The text is parsed into a `serde_json::Value` and walked by hand, so that every error names
//! the full key path as the user wrote it and keys match with Spring's relaxed binding
//! (`failure-rate-threshold`, `failureRateThreshold`, `failure_rate_threshold` and
//! `FAILURE_RATE_THRESHOLD` are one key). Relaxed matching applies to property keys only; names
//! of instances, configs, clusters and headers are map keys and are kept as written.
//!
//! The `resilience4j` tree is read as resilience4j's Spring Boot binding reads it
//! (`CommonCircuitBreakerConfigurationProperties` / `CommonRetryConfigurationProperties` in
//! resilience4j-framework-common): `configs.<name>`, `instances.<name>` (alias `backends`),
//! `base-config`, each property of `InstanceProperties`, and the section keys `tags`,
//! `circuit-breaker-aspect-order` / `retry-aspect-order` and `metrics`. Properties that exist
//! in Spring but mean nothing in a sidecar are checked loosely and ignored with a warning.
//!
//! Resolution of one instance, weakest first: resilience4j's defaults, `configs.default` (the
//! implicit base of every instance and config without `base-config`), the `base-config` chain,
//! the instance's own keys.
//!
//! Beside `resilience4j`, the filter's own keys: `upstreams` (Envoy cluster -> instance),
//! `fallbacks` (circuit breaker instance -> `status` / `headers` / `body`), `retry-options`
//! (retry instance -> `retry-non-idempotent`, `max-body-bytes`, `per-try-timeout`,
//! `overall-timeout`, `budget.{retry-ratio, min-retries-per-second, window}`) and `events`
//! (parsed by `crate::events::config`). Every other key is an error.
//!
//! A value written as JSON `null` where an object is expected reads as an empty object (YAML
//! writes an empty mapping as a key without value).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::model::{
    BreakerConfig, BudgetConfig, Fallback, InitialState, Policy, RetryConfig, RetryOptions,
    SlidingWindowType,
};
use crate::duration;
use crate::outcome::OutcomeMatcher;

/// A policy error: the full key path and what is wrong, e.g.
/// `resilience4j.circuitbreaker.instances.user-service.failure-rate-threshold: must be in (0, 100], got 120`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

type Result<T> = std::result::Result<T, PolicyError>;

/// Parses and validates a whole policy (see the module documentation).
pub(super) fn parse_policy(text: &str) -> Result<Policy> {
    let root: Value = serde_json::from_str(text)
        .map_err(|e| error("", format!("policy is not valid JSON: {e}")))?;
    let mut warnings = Vec::new();
    let mut resilience4j = None;
    let mut upstreams = None;
    let mut fallbacks = None;
    let mut retry_options = None;
    let mut events = None;
    for field in fields(
        &root,
        "",
        &[
            "resilience4j",
            "upstreams",
            "fallbacks",
            "retry-options",
            "events",
        ],
        &[],
        &mut warnings,
    )? {
        match field.name {
            "resilience4j" => resilience4j = Some(field),
            "upstreams" => upstreams = Some(field),
            "fallbacks" => fallbacks = Some(field),
            "events" => events = Some(field),
            _ => retry_options = Some(field),
        }
    }

    let mut circuit_breakers = BTreeMap::new();
    let mut retries = BTreeMap::new();
    if let Some(r4j) = resilience4j {
        let mut breaker_section = None;
        let mut retry_section = None;
        for field in fields(
            r4j.value,
            &r4j.path,
            &["circuitbreaker", "retry"],
            &[],
            &mut warnings,
        )? {
            if field.name == "circuitbreaker" {
                breaker_section = Some(field);
            } else {
                retry_section = Some(field);
            }
        }
        if let Some(field) = breaker_section {
            let section = parse_section(&field, &BREAKER, &mut warnings)?;
            for (name, chain) in section.resolve_all()? {
                circuit_breakers.insert(name, build_breaker(&chain)?);
            }
        }
        if let Some(field) = retry_section {
            let section = parse_section(&field, &RETRY, &mut warnings)?;
            for (name, chain) in section.resolve_all()? {
                retries.insert(name, build_retry(&chain)?);
            }
        }
    }

    let upstreams = match upstreams {
        Some(field) => parse_upstreams(&field, &circuit_breakers, &retries)?,
        None => BTreeMap::new(),
    };
    let fallbacks = match fallbacks {
        Some(field) => parse_fallbacks(&field, &circuit_breakers, &mut warnings)?,
        None => BTreeMap::new(),
    };
    let mut options: BTreeMap<String, RetryOptions> = retries
        .keys()
        .map(|name| (name.clone(), RetryOptions::default()))
        .collect();
    if let Some(field) = retry_options {
        for (name, value, path) in entries(field.value, &field.path)? {
            let slot = options
                .get_mut(name)
                .ok_or_else(|| error(&path, format!("unknown retry instance '{name}'")))?;
            *slot = parse_retry_options(value, &path, &mut warnings)?;
        }
    }

    // The `events` section has its own parser (crate::events::config), same error paths.
    let events = match events {
        Some(field) => Some(
            crate::events::parse_config(field.value, &field.path)
                .map_err(|e| error(&e.path, e.message))?,
        ),
        None => None,
    };

    Ok(Policy {
        circuit_breakers,
        retries,
        upstreams,
        fallbacks,
        retry_options: options,
        events,
        warnings,
    })
}

// ---------------------------------------------------------------------------------------------
// The path-tracking reader.

fn error(path: &str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        path: path.to_string(),
        message: message.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Spring's relaxed binding: case, `-` and `_` do not matter.
fn canonical(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '-' && *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A value as the user wrote it, compact and cut short, for "got ..." in messages.
fn describe(value: &Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| String::from("?"));
    if text.chars().count() > 80 {
        let head: String = text.chars().take(77).collect();
        format!("{head}...")
    } else {
        text
    }
}

/// A number for messages: `120`, not `120.0`.
fn show(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn type_error(path: &str, expected: &str, value: &Value) -> PolicyError {
    error(
        path,
        format!("expected {expected}, got {}", describe(value)),
    )
}

/// An object; `null` reads as an empty one.
fn object<'a>(value: &'a Value, path: &str) -> Result<Option<&'a Map<String, Value>>> {
    match value {
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(None),
        other => Err(type_error(path, "an object", other)),
    }
}

/// The entries of a map keyed by names (instances, configs, clusters), names kept verbatim.
fn entries<'a>(value: &'a Value, path: &str) -> Result<Vec<(&'a str, &'a Value, String)>> {
    let mut out = Vec::new();
    for (key, value) in object(value, path)?.into_iter().flatten() {
        let entry_path = join(path, key);
        if key.trim().is_empty() {
            return Err(error(&entry_path, "name must not be empty"));
        }
        out.push((key.as_str(), value, entry_path));
    }
    Ok(out)
}

/// One property of an object, matched to its known name.
struct Field<'a> {
    /// The known (kebab-case) name; for a deprecated alias, the name it stands for.
    name: &'static str,
    value: &'a Value,
    /// Full path, with the key as the user wrote it.
    path: String,
}

/// The properties of an object, each matched by relaxed binding to one of `names` or of the
/// deprecated `aliases` (alias, name). Unknown keys and two spellings of one property are errors.
fn fields<'a>(
    value: &'a Value,
    path: &str,
    names: &[&'static str],
    aliases: &[(&'static str, &'static str)],
    warnings: &mut Vec<String>,
) -> Result<Vec<Field<'a>>> {
    let mut out: Vec<Field<'a>> = Vec::new();
    let mut written: BTreeMap<&'static str, &'a str> = BTreeMap::new();
    for (key, value) in object(value, path)?.into_iter().flatten() {
        let key_path = join(path, key);
        let canon = canonical(key);
        let name = match names.iter().find(|n| canonical(n) == canon) {
            Some(name) => *name,
            None => match aliases.iter().find(|(alias, _)| canonical(alias) == canon) {
                Some((_, name)) => {
                    warnings.push(format!("{key_path}: deprecated; use {name}"));
                    *name
                }
                None => return Err(unknown_key(&key_path, &canon, names, aliases)),
            },
        };
        if let Some(first) = written.get(name) {
            return Err(error(&key_path, format!("same property as '{first}'")));
        }
        written.insert(name, key.as_str());
        out.push(Field {
            name,
            value,
            path: key_path,
        });
    }
    Ok(out)
}

fn unknown_key(
    path: &str,
    canon: &str,
    names: &[&'static str],
    aliases: &[(&'static str, &'static str)],
) -> PolicyError {
    if let Some(module) = UNSUPPORTED_MODULES.iter().find(|m| canonical(m) == canon) {
        if names.contains(&"circuitbreaker") {
            return error(
                path,
                format!("resilience4j {module} is not supported by this filter (only circuitbreaker and retry)"),
            );
        }
    }
    let candidates = names
        .iter()
        .copied()
        .chain(aliases.iter().map(|(alias, _)| *alias));
    let best = candidates
        .map(|name| (edit_distance(&canonical(name), canon), name))
        .min_by_key(|(distance, _)| *distance);
    match best {
        // Short keys get only one edit: "code" is no typo of "body".
        Some((distance, name)) if distance <= (canon.len() / 4).clamp(1, 2) => {
            error(path, format!("unknown key (did you mean '{name}'?)"))
        }
        _ => error(path, "unknown key"),
    }
}

/// resilience4j modules other than circuitbreaker and retry (Spring prefixes under resilience4j).
pub const UNSUPPORTED_MODULES: [&str; 6] = [
    "ratelimiter",
    "bulkhead",
    "thread-pool-bulkhead",
    "timelimiter",
    "scheduled",
    "micrometer",
];

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(usize::from(ca != *cb));
            let delete = previous
                .get(j + 1)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let insert = current
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(usize::MAX)
}

// Scalars. Spring converts strings to numbers and booleans, so `"50"` and `"true"` are accepted
// (YAML-to-JSON tooling often produces them).

fn number(value: &Value, path: &str) -> Result<f64> {
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(x) if x.is_finite() => Ok(x),
        _ => Err(type_error(path, "a number", value)),
    }
}

fn integer(value: &Value, path: &str, min: i64, max: i64) -> Result<i64> {
    let x = number(value, path)?;
    if x.fract() != 0.0 {
        return Err(error(path, format!("must be an integer, got {}", show(x))));
    }
    if x < min as f64 || x > max as f64 {
        let message = if max == JAVA_INT_MAX {
            format!("must be at least {min}, got {}", show(x))
        } else {
            format!("must be in [{min}, {max}], got {}", show(x))
        };
        return Err(error(path, message));
    }
    Ok(x as i64)
}

/// Java's Integer.MAX_VALUE: the bound of every Spring `Integer` property.
const JAVA_INT_MAX: i64 = i32::MAX as i64;

/// Spring's StringToBooleanConverter accepts true/false, on/off, yes/no, 1/0.
fn boolean(value: &Value, path: &str) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            _ => Err(type_error(path, "a boolean", value)),
        },
        other => Err(type_error(path, "a boolean", other)),
    }
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str> {
    match value {
        Value::String(s) => Ok(s.as_str()),
        other => Err(type_error(path, "a string", other)),
    }
}

fn duration_ms(value: &Value, path: &str, min_ms: u64) -> Result<u64> {
    let ms = duration::parse_duration_ms(value).map_err(|message| error(path, message))?;
    if ms < min_ms {
        return Err(error(
            path,
            format!("must be at least {min_ms}ms, got {}", describe(value)),
        ));
    }
    Ok(ms)
}

/// A Spring enum value: relaxed like keys (`COUNT_BASED`, `count-based`, `countBased`).
fn enumeration<T: Copy>(value: &Value, path: &str, options: &[(&str, T)]) -> Result<T> {
    let text = string(value, path)?;
    let canon = canonical(text.trim());
    match options.iter().find(|(name, _)| canonical(name) == canon) {
        Some((_, option)) => Ok(*option),
        None => {
            let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
            Err(error(
                path,
                format!(
                    "must be one of {}, got {}",
                    names.join(", "),
                    describe(value)
                ),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Instance properties.

/// How a property's value is read and checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A percentage in (0, 100].
    Percent,
    /// A duration of at least `min_ms`.
    Duration {
        min_ms: u64,
    },
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    /// In [0, 1), as resilience4j's randomizedWaitFactor.
    Factor,
    /// > 0, as resilience4j's exponentialBackoffMultiplier.
    Multiplier,
    WindowType,
    InitialState,
    /// A record/ignore/retry list (see [`outcomes`]).
    Outcomes,
    /// A Java class name (predicates, interval functions): only its shape is checked.
    ClassName,
    BaseConfig,
}

struct Prop {
    name: &'static str,
    kind: Kind,
    /// False: exists in Spring, has no meaning in a sidecar; checked, then ignored with a warning.
    sidecar: bool,
}

const fn prop(name: &'static str, kind: Kind) -> Prop {
    Prop {
        name,
        kind,
        sidecar: true,
    }
}

const fn ignored(name: &'static str, kind: Kind) -> Prop {
    Prop {
        name,
        kind,
        sidecar: false,
    }
}

struct SectionSpec {
    /// The Spring property of the aspect order, a section-level key.
    aspect_order: &'static str,
    props: &'static [Prop],
    aliases: &'static [(&'static str, &'static str)],
}

const POSITIVE_INT: Kind = Kind::Int {
    min: 1,
    max: JAVA_INT_MAX,
};

/// CommonCircuitBreakerConfigurationProperties.InstanceProperties, plus the deprecated 1.x
/// ring buffer sizes. Window and half-open call counts are bounded: windows live in shared memory.
const BREAKER: SectionSpec = SectionSpec {
    aspect_order: "circuit-breaker-aspect-order",
    props: &[
        prop("failure-rate-threshold", Kind::Percent),
        prop("slow-call-rate-threshold", Kind::Percent),
        prop("slow-call-duration-threshold", Kind::Duration { min_ms: 1 }),
        prop("sliding-window-type", Kind::WindowType),
        prop(
            "sliding-window-size",
            Kind::Int {
                min: 1,
                max: 10_000,
            },
        ),
        prop("minimum-number-of-calls", POSITIVE_INT),
        prop("wait-duration-in-open-state", Kind::Duration { min_ms: 1 }),
        prop(
            "automatic-transition-from-open-to-half-open-enabled",
            Kind::Bool,
        ),
        prop(
            "permitted-number-of-calls-in-half-open-state",
            Kind::Int {
                min: 1,
                max: 10_000,
            },
        ),
        prop(
            "max-wait-duration-in-half-open-state",
            Kind::Duration { min_ms: 0 },
        ),
        prop("enable-exponential-backoff", Kind::Bool),
        prop("exponential-backoff-multiplier", Kind::Multiplier),
        prop(
            "exponential-max-wait-duration-in-open-state",
            Kind::Duration { min_ms: 1 },
        ),
        prop("record-exceptions", Kind::Outcomes),
        prop("ignore-exceptions", Kind::Outcomes),
        prop("initial-state", Kind::InitialState),
        prop("base-config", Kind::BaseConfig),
        // The open wait is not randomized by the sidecar's breaker.
        ignored("enable-randomized-wait", Kind::Bool),
        ignored("randomized-wait-factor", Kind::Factor),
        ignored("writable-stack-trace-enabled", Kind::Bool),
        ignored("register-health-indicator", Kind::Bool),
        ignored("allow-health-indicator-to-fail", Kind::Bool),
        ignored("event-consumer-buffer-size", POSITIVE_INT),
        ignored("record-failure-predicate", Kind::ClassName),
        ignored("record-result-predicate", Kind::ClassName),
        ignored("ignore-exception-predicate", Kind::ClassName),
        ignored("ignore-class-binding-exceptions", Kind::Bool),
    ],
    aliases: &[
        ("ring-buffer-size-in-closed-state", "sliding-window-size"),
        (
            "ring-buffer-size-in-half-open-state",
            "permitted-number-of-calls-in-half-open-state",
        ),
    ],
};

/// CommonRetryConfigurationProperties.InstanceProperties, plus the deprecated 1.x
/// max-retry-attempts.
const RETRY: SectionSpec = SectionSpec {
    aspect_order: "retry-aspect-order",
    props: &[
        prop("max-attempts", POSITIVE_INT),
        prop("wait-duration", Kind::Duration { min_ms: 0 }),
        prop("enable-exponential-backoff", Kind::Bool),
        prop("exponential-backoff-multiplier", Kind::Multiplier),
        prop(
            "exponential-max-wait-duration",
            Kind::Duration { min_ms: 1 },
        ),
        prop("enable-randomized-wait", Kind::Bool),
        prop("randomized-wait-factor", Kind::Factor),
        prop("fail-after-max-attempts", Kind::Bool),
        prop("retry-exceptions", Kind::Outcomes),
        prop("ignore-exceptions", Kind::Outcomes),
        prop("base-config", Kind::BaseConfig),
        ignored("retry-exception-predicate", Kind::ClassName),
        ignored("result-predicate", Kind::ClassName),
        ignored("interval-bi-function", Kind::ClassName),
        ignored("consume-result-before-retry-attempt", Kind::ClassName),
        ignored("event-consumer-buffer-size", POSITIVE_INT),
    ],
    aliases: &[("max-retry-attempts", "max-attempts")],
};

/// A checked property value.
#[derive(Debug, Clone)]
enum Val {
    Num(f64),
    Int(u32),
    Ms(u64),
    Bool(bool),
    Window(SlidingWindowType),
    State(InitialState),
    Outcomes(Vec<OutcomeMatcher>),
    /// Checked, but nothing reads it (class names, base-config: kept in `Layer::base`).
    Unused,
}

/// The properties written in one `configs.<name>` or `instances.<name>` object.
struct Layer {
    path: String,
    values: BTreeMap<&'static str, Val>,
    /// `base-config`: the config's name and the key's path.
    base: Option<(String, String)>,
}

fn parse_layer(
    value: &Value,
    path: &str,
    spec: &SectionSpec,
    warnings: &mut Vec<String>,
) -> Result<Layer> {
    let names: Vec<&'static str> = spec.props.iter().map(|p| p.name).collect();
    let mut layer = Layer {
        path: path.to_string(),
        values: BTreeMap::new(),
        base: None,
    };
    for field in fields(value, path, &names, spec.aliases, warnings)? {
        let Some(prop) = spec.props.iter().find(|p| p.name == field.name) else {
            continue;
        };
        let (value, path) = (field.value, field.path.as_str());
        let parsed = match prop.kind {
            Kind::Percent => {
                let x = number(value, path)?;
                if !(x > 0.0 && x <= 100.0) {
                    return Err(error(path, format!("must be in (0, 100], got {}", show(x))));
                }
                Val::Num(x)
            }
            Kind::Duration { min_ms } => Val::Ms(duration_ms(value, path, min_ms)?),
            Kind::Int { min, max } => {
                let n = integer(value, path, min, max)?;
                Val::Int(u32::try_from(n).unwrap_or(0))
            }
            Kind::Bool => Val::Bool(boolean(value, path)?),
            Kind::Factor => {
                let x = number(value, path)?;
                if !(0.0..1.0).contains(&x) {
                    return Err(error(path, format!("must be in [0, 1), got {}", show(x))));
                }
                Val::Num(x)
            }
            Kind::Multiplier => {
                let x = number(value, path)?;
                if x <= 0.0 {
                    return Err(error(
                        path,
                        format!("must be greater than 0, got {}", show(x)),
                    ));
                }
                Val::Num(x)
            }
            Kind::WindowType => Val::Window(enumeration(
                value,
                path,
                &[
                    ("COUNT_BASED", SlidingWindowType::CountBased),
                    ("TIME_BASED", SlidingWindowType::TimeBased),
                ],
            )?),
            Kind::InitialState => Val::State(enumeration(
                value,
                path,
                &[
                    ("CLOSED", InitialState::Closed),
                    ("DISABLED", InitialState::Disabled),
                    ("FORCED_OPEN", InitialState::ForcedOpen),
                    ("METRICS_ONLY", InitialState::MetricsOnly),
                ],
            )?),
            Kind::Outcomes => Val::Outcomes(outcomes(
                value,
                path,
                prop.name == "ignore-exceptions",
                warnings,
            )?),
            Kind::ClassName => {
                let text = string(value, path)?;
                if !is_class_name(text.trim()) {
                    return Err(error(
                        path,
                        format!("expected a Java class name, got {}", describe(value)),
                    ));
                }
                Val::Unused
            }
            Kind::BaseConfig => {
                let name = string(value, path)?;
                // resilience4j treats an empty base-config as none.
                if !name.is_empty() {
                    layer.base = Some((name.to_string(), path.to_string()));
                }
                Val::Unused
            }
        };
        if !prop.sidecar {
            warnings.push(format!("{path}: has no meaning in the sidecar; ignored"));
        }
        layer.values.insert(prop.name, parsed);
    }
    Ok(layer)
}

// ---------------------------------------------------------------------------------------------
// Record / ignore / retry lists.

/// A list of outcome tokens: a JSON array, or a comma-separated string as Spring also binds.
/// Each entry is an HTTP status (`503`, `"503"`), a status class (`"5xx"`, `"4xx"`),
/// `"connect-failure"`, `"reset"`, `"timeout"`, or a Java exception class: well-known ones map
/// to their HTTP meaning, others are accepted with a warning and match nothing.
fn outcomes(
    value: &Value,
    path: &str,
    is_ignore_list: bool,
    warnings: &mut Vec<String>,
) -> Result<Vec<OutcomeMatcher>> {
    let items: Vec<Value> = match value {
        Value::Array(items) => items.clone(),
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
    match canonical(&text).as_str() {
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

/// `a.b.C`, `a.b.C$Inner`: dot-separated Java identifiers.
fn is_class_name(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        })
}

// ---------------------------------------------------------------------------------------------
// Sections, configs and base-config resolution.

struct Section {
    configs: BTreeMap<String, Layer>,
    instances: BTreeMap<String, Layer>,
}

/// base-config chains longer than this are rejected (also bounds the work on hostile input).
const MAX_CHAIN: usize = 32;

fn parse_section(
    field: &Field<'_>,
    spec: &SectionSpec,
    warnings: &mut Vec<String>,
) -> Result<Section> {
    let mut section = Section {
        configs: BTreeMap::new(),
        instances: BTreeMap::new(),
    };
    let keys = ["instances", "configs", "tags", "metrics", spec.aspect_order];
    for f in fields(
        field.value,
        &field.path,
        &keys,
        &[("backends", "instances")],
        warnings,
    )? {
        match f.name {
            "instances" => {
                for (name, value, path) in entries(f.value, &f.path)? {
                    check_instance_name(name, &path)?;
                    section
                        .instances
                        .insert(name.to_string(), parse_layer(value, &path, spec, warnings)?);
                }
            }
            "configs" => {
                for (name, value, path) in entries(f.value, &f.path)? {
                    section
                        .configs
                        .insert(name.to_string(), parse_layer(value, &path, spec, warnings)?);
                }
            }
            "tags" => {
                for (_, value, path) in entries(f.value, &f.path)? {
                    string(value, &path)?;
                }
                warnings.push(format!(
                    "{}: has no meaning in the sidecar; ignored",
                    f.path
                ));
            }
            "metrics" => {
                object(f.value, &f.path)?;
                warnings.push(format!(
                    "{}: has no meaning in the sidecar; ignored",
                    f.path
                ));
            }
            _ => {
                integer(f.value, &f.path, i32::MIN as i64, JAVA_INT_MAX)?;
                warnings.push(format!(
                    "{}: has no meaning in the sidecar; ignored",
                    f.path
                ));
            }
        }
    }
    Ok(section)
}

/// Instance names become part of shared-data keys and stat names.
fn check_instance_name(name: &str, path: &str) -> Result<()> {
    if name.chars().count() > 100 {
        return Err(error(path, "instance name must be at most 100 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(error(
            path,
            "instance name may only contain ASCII letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

impl Section {
    /// Every config is checked (unknown base-config, cycles) even when no instance uses it;
    /// then each instance's layers, strongest first.
    fn resolve_all(&self) -> Result<Vec<(String, Vec<&Layer>)>> {
        for (name, layer) in &self.configs {
            self.chain(layer, Some(name))?;
        }
        let mut out = Vec::new();
        for (name, layer) in &self.instances {
            out.push((name.clone(), self.chain(layer, None)?));
        }
        Ok(out)
    }

    /// `own`, its base-config chain, then (unless already in it) `configs.default` and its chain.
    fn chain<'s>(&'s self, own: &'s Layer, own_config: Option<&'s str>) -> Result<Vec<&'s Layer>> {
        let mut layers = vec![own];
        let mut seen: Vec<&str> = own_config.into_iter().collect();
        let mut current = own;
        while let Some((name, key_path)) = &current.base {
            if seen.contains(&name.as_str()) {
                let mut cycle = seen.clone();
                cycle.push(name);
                return Err(error(
                    key_path,
                    format!("base-config cycle: {}", cycle.join(" -> ")),
                ));
            }
            if layers.len() >= MAX_CHAIN {
                return Err(error(
                    key_path,
                    format!("base-config chain longer than {MAX_CHAIN}"),
                ));
            }
            let Some((config_name, next)) = self.configs.get_key_value(name) else {
                return Err(error(key_path, format!("unknown config '{name}'")));
            };
            seen.push(config_name.as_str());
            layers.push(next);
            current = next;
        }
        if !seen.contains(&"default") {
            if let Some(default) = self.configs.get("default") {
                for layer in self.chain(default, Some("default"))? {
                    if !layers.iter().any(|l| std::ptr::eq(*l, layer)) {
                        layers.push(layer);
                    }
                }
            }
        }
        Ok(layers)
    }
}

/// The first value of a property along the chain (own layer first).
fn find<'c>(chain: &[&'c Layer], name: &str) -> Option<&'c Val> {
    chain.iter().find_map(|layer| layer.values.get(name))
}

fn num(chain: &[&Layer], name: &str, default: f64) -> f64 {
    match find(chain, name) {
        Some(Val::Num(x)) => *x,
        _ => default,
    }
}

fn int(chain: &[&Layer], name: &str, default: u32) -> u32 {
    match find(chain, name) {
        Some(Val::Int(n)) => *n,
        _ => default,
    }
}

fn ms(chain: &[&Layer], name: &str) -> Option<u64> {
    match find(chain, name) {
        Some(Val::Ms(ms)) => Some(*ms),
        _ => None,
    }
}

fn flag(chain: &[&Layer], name: &str) -> bool {
    matches!(find(chain, name), Some(Val::Bool(true)))
}

fn matchers(chain: &[&Layer], name: &str) -> Vec<OutcomeMatcher> {
    match find(chain, name) {
        Some(Val::Outcomes(list)) => list.clone(),
        _ => Vec::new(),
    }
}

/// resilience4j's IntervalFunction.DEFAULT_MULTIPLIER, for the open-state wait too.
const DEFAULT_MULTIPLIER: f64 = 1.5;

fn build_breaker(chain: &[&Layer]) -> Result<BreakerConfig> {
    let path = chain.first().map(|l| l.path.as_str()).unwrap_or("");
    let exponential = flag(chain, "enable-exponential-backoff");
    if exponential && flag(chain, "enable-randomized-wait") {
        // resilience4j refuses this combination for the open-state wait.
        return Err(error(
            path,
            "enable-exponential-backoff and enable-randomized-wait cannot both be true",
        ));
    }
    let d = BreakerConfig::default();
    Ok(BreakerConfig {
        failure_rate_threshold: num(
            chain,
            "failure-rate-threshold",
            f64::from(d.failure_rate_threshold),
        ) as f32,
        slow_call_rate_threshold: num(
            chain,
            "slow-call-rate-threshold",
            f64::from(d.slow_call_rate_threshold),
        ) as f32,
        slow_call_duration_threshold_ms: ms(chain, "slow-call-duration-threshold")
            .unwrap_or(d.slow_call_duration_threshold_ms),
        sliding_window_type: match find(chain, "sliding-window-type") {
            Some(Val::Window(window)) => *window,
            _ => d.sliding_window_type,
        },
        sliding_window_size: int(chain, "sliding-window-size", d.sliding_window_size),
        minimum_number_of_calls: int(chain, "minimum-number-of-calls", d.minimum_number_of_calls),
        wait_duration_in_open_state_ms: ms(chain, "wait-duration-in-open-state")
            .unwrap_or(d.wait_duration_in_open_state_ms),
        automatic_transition_from_open_to_half_open_enabled: flag(
            chain,
            "automatic-transition-from-open-to-half-open-enabled",
        ),
        permitted_number_of_calls_in_half_open_state: int(
            chain,
            "permitted-number-of-calls-in-half-open-state",
            d.permitted_number_of_calls_in_half_open_state,
        ),
        max_wait_duration_in_half_open_state_ms: ms(chain, "max-wait-duration-in-half-open-state")
            .unwrap_or(d.max_wait_duration_in_half_open_state_ms),
        transition_to_state_after_wait_duration: d.transition_to_state_after_wait_duration,
        open_wait_multiplier: if exponential {
            num(chain, "exponential-backoff-multiplier", DEFAULT_MULTIPLIER)
        } else {
            d.open_wait_multiplier
        },
        open_wait_max_ms: if exponential {
            ms(chain, "exponential-max-wait-duration-in-open-state")
        } else {
            d.open_wait_max_ms
        },
        open_wait_randomization_factor: d.open_wait_randomization_factor,
        initial_state: match find(chain, "initial-state") {
            Some(Val::State(state)) => *state,
            _ => d.initial_state,
        },
        record: matchers(chain, "record-exceptions"),
        ignore: matchers(chain, "ignore-exceptions"),
    })
}

fn build_retry(chain: &[&Layer]) -> Result<RetryConfig> {
    let path = chain.first().map(|l| l.path.as_str()).unwrap_or("");
    let d = RetryConfig::default();
    let config = RetryConfig {
        max_attempts: int(chain, "max-attempts", d.max_attempts),
        wait_duration_ms: ms(chain, "wait-duration").unwrap_or(d.wait_duration_ms),
        enable_exponential_backoff: flag(chain, "enable-exponential-backoff"),
        exponential_backoff_multiplier: num(
            chain,
            "exponential-backoff-multiplier",
            d.exponential_backoff_multiplier,
        ),
        exponential_max_wait_duration_ms: ms(chain, "exponential-max-wait-duration"),
        enable_randomized_wait: flag(chain, "enable-randomized-wait"),
        randomized_wait_factor: num(chain, "randomized-wait-factor", d.randomized_wait_factor),
        fail_after_max_attempts: flag(chain, "fail-after-max-attempts"),
        retry_on: matchers(chain, "retry-exceptions"),
        ignore: matchers(chain, "ignore-exceptions"),
    };
    if config.wait_duration_ms == 0
        && (config.enable_exponential_backoff || config.enable_randomized_wait)
    {
        // resilience4j's IntervalFunction rejects a 0 ms interval for these.
        return Err(error(
            path,
            "wait-duration must be at least 1ms when exponential backoff or randomized wait is enabled",
        ));
    }
    Ok(config)
}

// ---------------------------------------------------------------------------------------------
// The filter's own keys.

fn parse_upstreams(
    field: &Field<'_>,
    breakers: &BTreeMap<String, BreakerConfig>,
    retries: &BTreeMap<String, RetryConfig>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (cluster, value, path) in entries(field.value, &field.path)? {
        let instance = string(value, &path)?;
        if !breakers.contains_key(instance) && !retries.contains_key(instance) {
            return Err(error(&path, format!("unknown instance '{instance}'")));
        }
        out.insert(cluster.to_string(), instance.to_string());
    }
    Ok(out)
}

fn parse_fallbacks(
    field: &Field<'_>,
    breakers: &BTreeMap<String, BreakerConfig>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, Fallback>> {
    let mut out = BTreeMap::new();
    for (instance, value, path) in entries(field.value, &field.path)? {
        if !breakers.contains_key(instance) {
            return Err(error(
                &path,
                format!("unknown circuit breaker instance '{instance}'"),
            ));
        }
        let mut fallback = Fallback {
            status: 503,
            headers: Vec::new(),
            body: None,
        };
        for f in fields(value, &path, &["status", "headers", "body"], &[], warnings)? {
            match f.name {
                "status" => {
                    fallback.status =
                        u16::try_from(integer(f.value, &f.path, 100, 599)?).unwrap_or(503)
                }
                "headers" => fallback.headers = headers(f.value, &f.path)?,
                _ => {
                    fallback.body =
                        match f.value {
                            Value::Null => None,
                            Value::String(s) => Some(s.clone()),
                            other => Some(serde_json::to_string(other).map_err(|e| {
                                error(&f.path, format!("cannot be serialized: {e}"))
                            })?),
                        }
                }
            }
        }
        out.insert(instance.to_string(), fallback);
    }
    Ok(out)
}

/// Response headers of a fallback: names lower-cased (HTTP/2 requires it), scalar values.
fn headers(value: &Value, path: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen = BTreeSet::new();
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
        if !seen.insert(lower.clone()) {
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

/// `retry-options.<retry instance>`: how the sidecar replays requests (no resilience4j
/// equivalent).
fn parse_retry_options(
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<RetryOptions> {
    let mut options = RetryOptions::default();
    let keys = [
        "retry-non-idempotent",
        "max-body-bytes",
        "per-try-timeout",
        "overall-timeout",
        "budget",
    ];
    for f in fields(value, path, &keys, &[], warnings)? {
        match f.name {
            "retry-non-idempotent" => options.retry_non_idempotent = boolean(f.value, &f.path)?,
            "max-body-bytes" => {
                options.max_body_bytes =
                    u32::try_from(integer(f.value, &f.path, 0, JAVA_INT_MAX)?).unwrap_or(0)
            }
            "per-try-timeout" => options.per_try_timeout_ms = duration_ms(f.value, &f.path, 1)?,
            "overall-timeout" => {
                options.overall_timeout_ms = Some(duration_ms(f.value, &f.path, 1)?)
            }
            _ => options.budget = parse_budget(f.value, &f.path, warnings)?,
        }
    }
    Ok(options)
}

fn parse_budget(value: &Value, path: &str, warnings: &mut Vec<String>) -> Result<BudgetConfig> {
    let mut budget = BudgetConfig::default();
    for f in fields(
        value,
        path,
        &["retry-ratio", "min-retries-per-second", "window"],
        &[],
        warnings,
    )? {
        match f.name {
            "retry-ratio" => {
                let x = number(f.value, &f.path)?;
                if !(0.0..=1000.0).contains(&x) {
                    return Err(error(
                        &f.path,
                        format!("must be in [0, 1000], got {}", show(x)),
                    ));
                }
                budget.retry_ratio = x;
            }
            "min-retries-per-second" => {
                budget.min_retries_per_second =
                    u32::try_from(integer(f.value, &f.path, 0, JAVA_INT_MAX)?).unwrap_or(0)
            }
            _ => {
                let ms = duration_ms(f.value, &f.path, 0)?;
                if ms % 1000 != 0 || !(1_000..=60_000).contains(&ms) {
                    return Err(error(
                        &f.path,
                        format!(
                            "must be a whole number of seconds from 1s to 60s, got {}",
                            describe(f.value)
                        ),
                    ));
                }
                budget.window_s = u32::try_from(ms / 1000).unwrap_or(1);
            }
        }
    }
    Ok(budget)
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::*;
    use crate::outcome::OutcomeMatcher::{ConnectFailure, Reset, Status, StatusClass, Timeout};

    // -- fixtures --------------------------------------------------------------------------

    const SEED: &str = r#"{"resilience4j": {
      "circuitbreaker": {"instances": {
        "user-service":  {"failure-rate-threshold": 50, "wait-duration-in-open-state": "30s", "sliding-window-size": 10, "minimum-number-of-calls": 5},
        "order-service": {"failure-rate-threshold": 60, "wait-duration-in-open-state": "20s", "sliding-window-size": 8}}},
      "retry": {"instances": {
        "user-service":  {"max-attempts": 3, "wait-duration": "2s"},
        "order-service": {"max-attempts": 2, "wait-duration": "1s"}}}}}"#;

    fn parse(policy: &Value) -> Result<Policy> {
        parse_policy(&policy.to_string())
    }

    /// The message of a rejected policy, path included.
    fn rejected(policy: Value) -> String {
        match parse(&policy) {
            Ok(p) => panic!("policy accepted: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// A policy with one circuit breaker instance `svc` holding `props`.
    fn breaker_policy(props: Value) -> Value {
        json!({"resilience4j": {"circuitbreaker": {"instances": {"svc": props}}}})
    }

    fn retry_policy(props: Value) -> Value {
        json!({"resilience4j": {"retry": {"instances": {"svc": props}}}})
    }

    fn breaker(props: Value) -> BreakerConfig {
        let policy = parse(&breaker_policy(props)).unwrap();
        policy.circuit_breakers["svc"].clone()
    }

    fn retry(props: Value) -> RetryConfig {
        let policy = parse(&retry_policy(props)).unwrap();
        policy.retries["svc"].clone()
    }

    fn breaker_error(props: Value) -> String {
        rejected(breaker_policy(props))
    }

    fn retry_error(props: Value) -> String {
        rejected(retry_policy(props))
    }

    /// resilience4j's CircuitBreakerConfig defaults.
    fn r4j_breaker() -> BreakerConfig {
        BreakerConfig {
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration_threshold_ms: 60_000,
            sliding_window_type: SlidingWindowType::CountBased,
            sliding_window_size: 100,
            minimum_number_of_calls: 100,
            wait_duration_in_open_state_ms: 60_000,
            automatic_transition_from_open_to_half_open_enabled: false,
            permitted_number_of_calls_in_half_open_state: 10,
            max_wait_duration_in_half_open_state_ms: 0,
            transition_to_state_after_wait_duration: crate::policy::StateAfterWait::Open,
            open_wait_multiplier: 1.0,
            open_wait_max_ms: None,
            open_wait_randomization_factor: None,
            initial_state: InitialState::Closed,
            record: vec![],
            ignore: vec![],
        }
    }

    /// resilience4j's RetryConfig defaults.
    fn r4j_retry() -> RetryConfig {
        RetryConfig {
            max_attempts: 3,
            wait_duration_ms: 500,
            enable_exponential_backoff: false,
            exponential_backoff_multiplier: 1.5,
            exponential_max_wait_duration_ms: None,
            enable_randomized_wait: false,
            randomized_wait_factor: 0.5,
            fail_after_max_attempts: false,
            retry_on: vec![],
            ignore: vec![],
        }
    }

    const BREAKER_PATH: &str = "resilience4j.circuitbreaker.instances.svc";
    const RETRY_PATH: &str = "resilience4j.retry.instances.svc";

    // -- the seed --------------------------------------------------------------------------

    #[test]
    fn seed_policy_parses_to_the_expected_model_with_resilience4j_defaults() {
        let policy = parse_policy(SEED).unwrap();
        let user = BreakerConfig {
            failure_rate_threshold: 50.0,
            wait_duration_in_open_state_ms: 30_000,
            sliding_window_size: 10,
            minimum_number_of_calls: 5,
            ..r4j_breaker()
        };
        let order = BreakerConfig {
            failure_rate_threshold: 60.0,
            wait_duration_in_open_state_ms: 20_000,
            sliding_window_size: 8,
            // Not clamped to the window here: the breaker does that.
            minimum_number_of_calls: 100,
            ..r4j_breaker()
        };
        let expected = Policy {
            circuit_breakers: [
                ("user-service".to_string(), user),
                ("order-service".to_string(), order),
            ]
            .into_iter()
            .collect(),
            retries: [
                (
                    "user-service".to_string(),
                    RetryConfig {
                        max_attempts: 3,
                        wait_duration_ms: 2_000,
                        ..r4j_retry()
                    },
                ),
                (
                    "order-service".to_string(),
                    RetryConfig {
                        max_attempts: 2,
                        wait_duration_ms: 1_000,
                        ..r4j_retry()
                    },
                ),
            ]
            .into_iter()
            .collect(),
            upstreams: BTreeMap::new(),
            fallbacks: BTreeMap::new(),
            retry_options: [
                ("user-service".to_string(), RetryOptions::default()),
                ("order-service".to_string(), RetryOptions::default()),
            ]
            .into_iter()
            .collect(),
            events: None,
            warnings: vec![],
        };
        assert_eq!(policy, expected);
    }

    #[test]
    fn camel_snake_and_upper_case_spellings_give_the_same_model_as_the_seed() {
        let camel = r#"{"resilience4j": {
          "circuitBreaker": {"instances": {
            "user-service":  {"failureRateThreshold": 50, "waitDurationInOpenState": "30s", "slidingWindowSize": 10, "minimumNumberOfCalls": 5},
            "order-service": {"failureRateThreshold": 60, "waitDurationInOpenState": "20s", "slidingWindowSize": 8}}},
          "retry": {"instances": {
            "user-service":  {"maxAttempts": 3, "waitDuration": "2s"},
            "order-service": {"maxAttempts": 2, "waitDuration": "1s"}}}}}"#;
        let snake = r#"{"RESILIENCE4J": {
          "circuit_breaker": {"INSTANCES": {
            "user-service":  {"failure_rate_threshold": 50, "WAIT_DURATION_IN_OPEN_STATE": "30s", "sliding_window_size": 10, "minimum_number_of_calls": 5},
            "order-service": {"FAILURE_RATE_THRESHOLD": 60, "wait_duration_in_open_state": "20s", "Sliding-Window-Size": 8}}},
          "retry": {"instances": {
            "user-service":  {"MAX_ATTEMPTS": 3, "wait_duration": "2s"},
            "order-service": {"max_attempts": 2, "WaitDuration": "1s"}}}}}"#;
        let seed = parse_policy(SEED).unwrap();
        assert_eq!(parse_policy(camel).unwrap(), seed);
        assert_eq!(parse_policy(snake).unwrap(), seed);
    }

    #[test]
    fn instance_names_are_map_keys_and_kept_verbatim() {
        let policy = parse(&json!({"resilience4j": {"circuitbreaker": {"instances": {
            "User_Service": {}, "user-service": {}}}}}))
        .unwrap();
        assert_eq!(
            policy.circuit_breakers.keys().collect::<Vec<_>>(),
            ["User_Service", "user-service"]
        );
    }

    #[test]
    fn an_empty_policy_is_valid_and_empty() {
        let policy = parse_policy("{}").unwrap();
        assert!(policy.circuit_breakers.is_empty() && policy.retries.is_empty());
        assert!(
            policy.upstreams.is_empty()
                && policy.fallbacks.is_empty()
                && policy.retry_options.is_empty()
        );
        assert!(policy.events.is_none() && policy.warnings.is_empty());
        // YAML's empty mapping arrives as null.
        let policy = parse(&json!({"resilience4j": {"circuitbreaker": {"instances": {"svc": null}}, "retry": null}})).unwrap();
        assert_eq!(policy.circuit_breakers["svc"], r4j_breaker());
    }

    // -- configs, base-config, configs.default ---------------------------------------------

    #[test]
    fn configs_default_is_the_implicit_base_and_base_config_overrides_it() {
        let policy = parse(&json!({"resilience4j": {"circuitbreaker": {
            "configs": {
                "default": {"sliding-window-size": 20, "failure-rate-threshold": 40, "minimum-number-of-calls": 10},
                "slow": {"wait-duration-in-open-state": "2m", "failure-rate-threshold": 30}
            },
            "instances": {
                "plain": {},
                "tuned": {"minimum-number-of-calls": 4},
                "based": {"base-config": "slow", "sliding-window-size": 50}
            }
        }}}))
        .unwrap();
        let breakers = &policy.circuit_breakers;
        let from_default = BreakerConfig {
            sliding_window_size: 20,
            failure_rate_threshold: 40.0,
            minimum_number_of_calls: 10,
            ..r4j_breaker()
        };
        assert_eq!(breakers["plain"], from_default);
        assert_eq!(
            breakers["tuned"],
            BreakerConfig {
                minimum_number_of_calls: 4,
                ..from_default.clone()
            }
        );
        // own key > base-config > configs.default > resilience4j default
        assert_eq!(
            breakers["based"],
            BreakerConfig {
                sliding_window_size: 50,
                wait_duration_in_open_state_ms: 120_000,
                failure_rate_threshold: 30.0,
                ..from_default
            }
        );
        // Configs are templates, not instances.
        assert_eq!(breakers.len(), 3);
    }

    #[test]
    fn a_config_may_itself_have_a_base_config() {
        let retry = parse(&json!({"resilience4j": {"retry": {
            "configs": {
                "default": {"max-attempts": 5},
                "base": {"wait-duration": "100ms", "max-attempts": 4},
                "middle": {"base-config": "base", "retry-exceptions": ["503"]}
            },
            "instances": {"svc": {"base-config": "middle", "fail-after-max-attempts": true}}
        }}}))
        .unwrap()
        .retries["svc"]
            .clone();
        assert_eq!(
            retry,
            RetryConfig {
                max_attempts: 4,
                wait_duration_ms: 100,
                retry_on: vec![Status(503)],
                fail_after_max_attempts: true,
                ..r4j_retry()
            }
        );
    }

    #[test]
    fn unknown_base_config_is_rejected_at_its_key() {
        assert_eq!(
            breaker_error(json!({"base-config": "missing"})),
            "resilience4j.circuitbreaker.instances.svc.base-config: unknown config 'missing'"
        );
        // Also in a config no instance uses.
        assert_eq!(
            rejected(json!({"resilience4j": {"retry": {"configs": {"a": {"baseConfig": "b"}}}}})),
            "resilience4j.retry.configs.a.baseConfig: unknown config 'b'"
        );
    }

    #[test]
    fn base_config_cycles_are_rejected() {
        assert_eq!(
            rejected(json!({"resilience4j": {"circuitbreaker": {"configs": {
                "a": {"base-config": "b"}, "b": {"base-config": "a"}}}}})),
            "resilience4j.circuitbreaker.configs.b.base-config: base-config cycle: a -> b -> a"
        );
        assert_eq!(
            rejected(json!({"resilience4j": {"circuitbreaker": {"configs": {"default": {"base-config": "default"}}}}})),
            "resilience4j.circuitbreaker.configs.default.base-config: base-config cycle: default -> default"
        );
    }

    #[test]
    fn configs_default_with_its_own_base_is_not_a_cycle() {
        let policy = parse(&json!({"resilience4j": {"circuitbreaker": {
            "configs": {"default": {"base-config": "shared"}, "shared": {"sliding-window-size": 7}},
            "instances": {"svc": {"base-config": "shared"}}
        }}}))
        .unwrap();
        assert_eq!(policy.circuit_breakers["svc"].sliding_window_size, 7);
    }

    #[test]
    fn long_base_config_chains_are_bounded() {
        let mut configs = Map::new();
        for i in 0..40 {
            configs.insert(
                format!("c{i}"),
                json!({"base-config": format!("c{}", i + 1)}),
            );
        }
        configs.insert("c40".to_string(), json!({}));
        let message = rejected(json!({"resilience4j": {"retry": {"configs": configs}}}));
        assert!(
            message.ends_with("base-config chain longer than 32"),
            "{message}"
        );
    }

    // -- circuit breaker properties ----------------------------------------------------------

    #[test]
    fn every_circuit_breaker_property_maps_to_the_model() {
        let config = breaker(json!({
            "failure-rate-threshold": 25.5,
            "slow-call-rate-threshold": "80",
            "slow-call-duration-threshold": "PT2S",
            "sliding-window-type": "time_based",
            "sliding-window-size": 30,
            "minimum-number-of-calls": 10.0,
            "wait-duration-in-open-state": 1500,
            "automatic-transition-from-open-to-half-open-enabled": "true",
            "permitted-number-of-calls-in-half-open-state": 3,
            "max-wait-duration-in-half-open-state": "10s",
            "enable-exponential-backoff": true,
            "exponential-backoff-multiplier": 2,
            "exponential-max-wait-duration-in-open-state": "5m",
            "record-exceptions": ["5xx", "429", "timeout"],
            "ignore-exceptions": ["404"],
            "initial-state": "FORCED_OPEN"
        }));
        assert_eq!(
            config,
            BreakerConfig {
                failure_rate_threshold: 25.5,
                slow_call_rate_threshold: 80.0,
                slow_call_duration_threshold_ms: 2_000,
                sliding_window_type: SlidingWindowType::TimeBased,
                sliding_window_size: 30,
                minimum_number_of_calls: 10,
                wait_duration_in_open_state_ms: 1_500,
                automatic_transition_from_open_to_half_open_enabled: true,
                permitted_number_of_calls_in_half_open_state: 3,
                max_wait_duration_in_half_open_state_ms: 10_000,
                transition_to_state_after_wait_duration: crate::policy::StateAfterWait::Open,
                open_wait_multiplier: 2.0,
                open_wait_max_ms: Some(300_000),
                open_wait_randomization_factor: None,
                initial_state: InitialState::ForcedOpen,
                record: vec![StatusClass(5), Status(429), Timeout],
                ignore: vec![Status(404)],
            }
        );
    }

    #[test]
    fn exponential_open_wait_defaults_to_resilience4j_multiplier_and_is_off_unless_enabled() {
        let on = breaker(json!({"enable-exponential-backoff": true}));
        assert_eq!((on.open_wait_multiplier, on.open_wait_max_ms), (1.5, None));
        let off = breaker(
            json!({"exponential-backoff-multiplier": 3, "exponential-max-wait-duration-in-open-state": "1m"}),
        );
        assert_eq!(
            (off.open_wait_multiplier, off.open_wait_max_ms),
            (1.0, None)
        );
    }

    #[test]
    fn initial_states_and_window_types_bind_leniently() {
        for (text, state) in [
            ("CLOSED", InitialState::Closed),
            ("disabled", InitialState::Disabled),
            ("forced-open", InitialState::ForcedOpen),
            ("metricsOnly", InitialState::MetricsOnly),
        ] {
            assert_eq!(breaker(json!({"initial-state": text})).initial_state, state);
        }
        assert_eq!(
            breaker(json!({"sliding-window-type": "COUNT_BASED"})).sliding_window_type,
            SlidingWindowType::CountBased
        );
        assert_eq!(
            breaker(json!({"slidingWindowType": "TimeBased"})).sliding_window_type,
            SlidingWindowType::TimeBased
        );
    }

    #[test]
    fn deprecated_ring_buffer_sizes_are_aliases_with_a_warning() {
        let policy = parse(&breaker_policy(json!({
            "ring-buffer-size-in-closed-state": 12, "ringBufferSizeInHalfOpenState": 4})))
        .unwrap();
        let config = &policy.circuit_breakers["svc"];
        assert_eq!(
            (
                config.sliding_window_size,
                config.permitted_number_of_calls_in_half_open_state
            ),
            (12, 4)
        );
        assert_eq!(
            policy.warnings,
            [
                format!("{BREAKER_PATH}.ring-buffer-size-in-closed-state: deprecated; use sliding-window-size"),
                format!("{BREAKER_PATH}.ringBufferSizeInHalfOpenState: deprecated; use permitted-number-of-calls-in-half-open-state"),
            ]
        );
        assert_eq!(
            breaker_error(json!({"ring-buffer-size-in-closed-state": 12, "sliding-window-size": 10})),
            format!("{BREAKER_PATH}.sliding-window-size: same property as 'ring-buffer-size-in-closed-state'")
        );
    }

    #[test]
    fn spring_keys_without_sidecar_meaning_are_accepted_with_one_warning_each() {
        let policy = parse(&breaker_policy(json!({
            "register-health-indicator": true,
            "event-consumer-buffer-size": 10,
            "record-failure-predicate": "com.example.RecordFailurePredicate",
            "writableStackTraceEnabled": false
        })))
        .unwrap();
        assert_eq!(policy.circuit_breakers["svc"], r4j_breaker());
        assert_eq!(
            policy.warnings,
            [
                format!("{BREAKER_PATH}.event-consumer-buffer-size: has no meaning in the sidecar; ignored"),
                format!("{BREAKER_PATH}.record-failure-predicate: has no meaning in the sidecar; ignored"),
                format!("{BREAKER_PATH}.register-health-indicator: has no meaning in the sidecar; ignored"),
                format!("{BREAKER_PATH}.writableStackTraceEnabled: has no meaning in the sidecar; ignored"),
            ]
        );
        // Checked loosely all the same.
        assert_eq!(
            breaker_error(json!({"register-health-indicator": "maybe"})),
            format!("{BREAKER_PATH}.register-health-indicator: expected a boolean, got \"maybe\"")
        );
    }

    #[test]
    fn section_level_spring_keys_are_accepted_with_a_warning() {
        let policy = parse(&json!({"resilience4j": {
            "circuitbreaker": {"circuit-breaker-aspect-order": 1, "tags": {"team": "a"}, "metrics": {"enabled": false}},
            "retry": {"retryAspectOrder": 2, "backends": {"svc": {}}}
        }}))
        .unwrap();
        assert_eq!(policy.retries["svc"], r4j_retry());
        assert_eq!(
            policy.warnings,
            [
                "resilience4j.circuitbreaker.circuit-breaker-aspect-order: has no meaning in the sidecar; ignored",
                "resilience4j.circuitbreaker.metrics: has no meaning in the sidecar; ignored",
                "resilience4j.circuitbreaker.tags: has no meaning in the sidecar; ignored",
                "resilience4j.retry.backends: deprecated; use instances",
                "resilience4j.retry.retryAspectOrder: has no meaning in the sidecar; ignored",
            ]
        );
    }

    #[test]
    fn out_of_range_circuit_breaker_values_are_rejected() {
        let cases = [
            (json!({"failure-rate-threshold": 0}), "failure-rate-threshold: must be in (0, 100], got 0"),
            (json!({"failure-rate-threshold": 120}), "failure-rate-threshold: must be in (0, 100], got 120"),
            (json!({"slow-call-rate-threshold": -1}), "slow-call-rate-threshold: must be in (0, 100], got -1"),
            (json!({"sliding-window-size": 0}), "sliding-window-size: must be in [1, 10000], got 0"),
            (json!({"sliding-window-size": 10001}), "sliding-window-size: must be in [1, 10000], got 10001"),
            (json!({"sliding-window-size": 10.5}), "sliding-window-size: must be an integer, got 10.5"),
            (json!({"minimum-number-of-calls": 0}), "minimum-number-of-calls: must be at least 1, got 0"),
            (
                json!({"permitted-number-of-calls-in-half-open-state": 0}),
                "permitted-number-of-calls-in-half-open-state: must be in [1, 10000], got 0",
            ),
            (json!({"wait-duration-in-open-state": "0s"}), "wait-duration-in-open-state: must be at least 1ms, got \"0s\""),
            (json!({"wait-duration-in-open-state": "-5s"}), "wait-duration-in-open-state: must not be negative, got \"-5s\""),
            (json!({"slow-call-duration-threshold": 0}), "slow-call-duration-threshold: must be at least 1ms, got 0"),
            (json!({"max-wait-duration-in-half-open-state": "PT-1S"}), "max-wait-duration-in-half-open-state: must not be negative, got \"PT-1S\""),
            (json!({"exponential-backoff-multiplier": 0}), "exponential-backoff-multiplier: must be greater than 0, got 0"),
            (json!({"randomized-wait-factor": 1}), "randomized-wait-factor: must be in [0, 1), got 1"),
            (
                json!({"sliding-window-type": "SLIDING"}),
                "sliding-window-type: must be one of COUNT_BASED, TIME_BASED, got \"SLIDING\"",
            ),
            (
                json!({"initial-state": "HALF_OPEN"}),
                "initial-state: must be one of CLOSED, DISABLED, FORCED_OPEN, METRICS_ONLY, got \"HALF_OPEN\"",
            ),
        ];
        for (props, message) in cases {
            assert_eq!(breaker_error(props), format!("{BREAKER_PATH}.{message}"));
        }
    }

    #[test]
    fn wrong_types_name_what_was_expected_and_what_was_given() {
        assert_eq!(
            breaker_error(json!({"failure-rate-threshold": "abc"})),
            format!("{BREAKER_PATH}.failure-rate-threshold: expected a number, got \"abc\"")
        );
        assert_eq!(
            breaker_error(json!({"automatic-transition-from-open-to-half-open-enabled": 1})),
            format!("{BREAKER_PATH}.automatic-transition-from-open-to-half-open-enabled: expected a boolean, got 1")
        );
        assert_eq!(
            breaker_error(json!([1, 2])),
            format!("{BREAKER_PATH}: expected an object, got [1,2]")
        );
        assert_eq!(
            rejected(json!({"resilience4j": {"circuitbreaker": {"instances": [1, 2]}}})),
            "resilience4j.circuitbreaker.instances: expected an object, got [1,2]"
        );
        assert_eq!(
            breaker_error(json!({"wait-duration-in-open-state": "soon"})),
            format!(
                "{BREAKER_PATH}.wait-duration-in-open-state: expected a duration such as \"30s\", \"500ms\", \"PT30S\" or a number of milliseconds, got \"soon\""
            )
        );
        assert_eq!(
            breaker_error(json!({"record-exceptions": 503})),
            format!("{BREAKER_PATH}.record-exceptions: expected a list, got 503")
        );
    }

    #[test]
    fn exponential_and_randomized_open_wait_cannot_be_combined() {
        assert_eq!(
            breaker_error(json!({"enable-exponential-backoff": true, "enable-randomized-wait": true})),
            format!("{BREAKER_PATH}: enable-exponential-backoff and enable-randomized-wait cannot both be true")
        );
    }

    // -- keys ------------------------------------------------------------------------------

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        assert_eq!(
            breaker_error(json!({"failure-rate-treshold": 50})),
            format!("{BREAKER_PATH}.failure-rate-treshold: unknown key (did you mean 'failure-rate-threshold'?)")
        );
        assert_eq!(
            breaker_error(json!({"colour": "blue"})),
            format!("{BREAKER_PATH}.colour: unknown key")
        );
        // A retry-only property is unknown to a circuit breaker.
        assert_eq!(
            breaker_error(json!({"max-attempts": 3})),
            format!("{BREAKER_PATH}.max-attempts: unknown key")
        );
        assert_eq!(
            rejected(json!({"resilience4j": {"circuitbreaker": {"instance": {}}}})),
            "resilience4j.circuitbreaker.instance: unknown key (did you mean 'instances'?)"
        );
    }

    #[test]
    fn unknown_top_level_keys_are_rejected() {
        assert_eq!(rejected(json!({"bulkhead": {}})), "bulkhead: unknown key");
        assert_eq!(
            rejected(json!({"fallback": {}})),
            "fallback: unknown key (did you mean 'fallbacks'?)"
        );
    }

    #[test]
    fn other_resilience4j_modules_are_not_supported() {
        assert_eq!(
            rejected(json!({"resilience4j": {"ratelimiter": {}}})),
            "resilience4j.ratelimiter: resilience4j ratelimiter is not supported by this filter (only circuitbreaker and retry)"
        );
        assert_eq!(
            rejected(json!({"resilience4j": {"threadPoolBulkhead": {}}})),
            "resilience4j.threadPoolBulkhead: resilience4j thread-pool-bulkhead is not supported by this filter (only circuitbreaker and retry)"
        );
        for module in ["bulkhead", "timelimiter", "TIME_LIMITER", "scheduled"] {
            let message = rejected(json!({"resilience4j": {module: {}}}));
            assert!(
                message.contains("is not supported by this filter"),
                "{message}"
            );
        }
    }

    #[test]
    fn two_spellings_of_one_property_are_rejected() {
        assert_eq!(
            breaker_error(json!({"failure-rate-threshold": 50, "failureRateThreshold": 60})),
            format!(
                "{BREAKER_PATH}.failureRateThreshold: same property as 'failure-rate-threshold'"
            )
        );
    }

    #[test]
    fn bad_instance_names_are_rejected() {
        assert_eq!(
            rejected(json!({"resilience4j": {"retry": {"instances": {"a/b": {}}}}})),
            "resilience4j.retry.instances.a/b: instance name may only contain ASCII letters, digits, '-', '_' and '.'"
        );
        assert_eq!(
            rejected(json!({"resilience4j": {"retry": {"instances": {"": {}}}}})),
            "resilience4j.retry.instances.: name must not be empty"
        );
        let long = "x".repeat(101);
        assert_eq!(
            rejected(json!({"resilience4j": {"retry": {"instances": {long.clone(): {}}}}})),
            format!(
                "resilience4j.retry.instances.{long}: instance name must be at most 100 characters"
            )
        );
    }

    #[test]
    fn not_json_or_not_an_object_is_rejected() {
        assert!(parse_policy("{")
            .unwrap_err()
            .to_string()
            .starts_with("policy is not valid JSON: "));
        assert_eq!(rejected(json!([1])), "expected an object, got [1]");
    }

    // -- retry properties ------------------------------------------------------------------

    #[test]
    fn every_retry_property_maps_to_the_model() {
        let config = retry(json!({
            "max-attempts": "4",
            "wait-duration": "250ms",
            "enable-exponential-backoff": true,
            "exponential-backoff-multiplier": 2.5,
            "exponential-max-wait-duration": "2s",
            "enable-randomized-wait": "yes",
            "randomized-wait-factor": 0.25,
            "fail-after-max-attempts": true,
            "retry-exceptions": "5xx, connect-failure",
            "ignore-exceptions": [501]
        }));
        assert_eq!(
            config,
            RetryConfig {
                max_attempts: 4,
                wait_duration_ms: 250,
                enable_exponential_backoff: true,
                exponential_backoff_multiplier: 2.5,
                exponential_max_wait_duration_ms: Some(2_000),
                enable_randomized_wait: true,
                randomized_wait_factor: 0.25,
                fail_after_max_attempts: true,
                retry_on: vec![StatusClass(5), ConnectFailure],
                ignore: vec![Status(501)],
            }
        );
    }

    #[test]
    fn deprecated_max_retry_attempts_is_an_alias() {
        let policy = parse(&retry_policy(json!({"max-retry-attempts": 5}))).unwrap();
        assert_eq!(policy.retries["svc"].max_attempts, 5);
        assert_eq!(
            policy.warnings,
            [format!(
                "{RETRY_PATH}.max-retry-attempts: deprecated; use max-attempts"
            )]
        );
    }

    #[test]
    fn out_of_range_retry_values_are_rejected() {
        let cases = [
            (json!({"max-attempts": 0}), "max-attempts: must be at least 1, got 0"),
            (json!({"max-attempts": 2.5}), "max-attempts: must be an integer, got 2.5"),
            (json!({"wait-duration": "-1ms"}), "wait-duration: must not be negative, got \"-1ms\""),
            (json!({"exponential-max-wait-duration": 0}), "exponential-max-wait-duration: must be at least 1ms, got 0"),
            (json!({"randomized-wait-factor": -0.1}), "randomized-wait-factor: must be in [0, 1), got -0.1"),
            (json!({"exponential-backoff-multiplier": -2}), "exponential-backoff-multiplier: must be greater than 0, got -2"),
            (json!({"retry-exceptions": ["5xx", "abc"]}), "retry-exceptions[1]: expected an HTTP status (100-599), \"4xx\", \"5xx\", \"connect-failure\", \"reset\", \"timeout\" or a Java exception class, got \"abc\""),
        ];
        for (props, message) in cases {
            assert_eq!(retry_error(props), format!("{RETRY_PATH}.{message}"));
        }
        assert_eq!(
            retry_error(json!({"wait-duration": 0, "enable-exponential-backoff": true})),
            format!("{RETRY_PATH}: wait-duration must be at least 1ms when exponential backoff or randomized wait is enabled")
        );
        assert_eq!(retry(json!({"wait-duration": 0})).wait_duration_ms, 0);
    }

    // -- outcome lists ---------------------------------------------------------------------

    #[test]
    fn outcome_tokens_map_to_matchers() {
        let config = breaker(json!({"record-exceptions": [
            "500", 503, "4XX", "5xx", "connect-failure", "connectFailure", "RESET", "timeout", "100", "599"]}));
        assert_eq!(
            config.record,
            [
                Status(500),
                Status(503),
                StatusClass(4),
                StatusClass(5),
                ConnectFailure,
                Reset,
                Timeout,
                Status(100),
                Status(599)
            ]
        );
    }

    #[test]
    fn well_known_java_exceptions_map_to_their_http_meaning() {
        let record = |class: &str| breaker(json!({"record-exceptions": [class]})).record;
        assert_eq!(
            record("java.io.IOException"),
            [ConnectFailure, Reset, Timeout]
        );
        assert_eq!(record("java.net.ConnectException"), [ConnectFailure, Reset]);
        assert_eq!(record("java.net.SocketException"), [ConnectFailure, Reset]);
        assert_eq!(record("java.util.concurrent.TimeoutException"), [Timeout]);
        assert_eq!(record("java.net.SocketTimeoutException"), [Timeout]);
        assert_eq!(
            record("org.springframework.web.client.HttpServerErrorException"),
            [StatusClass(5)]
        );
        assert_eq!(
            record("org.springframework.web.client.HttpClientErrorException"),
            [StatusClass(4)]
        );
        for broad in [
            "java.lang.Exception",
            "java.lang.RuntimeException",
            "java.lang.Throwable",
        ] {
            assert_eq!(
                record(broad),
                [StatusClass(5), ConnectFailure, Reset, Timeout]
            );
        }
        // Duplicates collapse.
        assert_eq!(
            breaker(json!({"record-exceptions": ["java.io.IOException", "java.net.ConnectException", "reset"]})).record,
            [ConnectFailure, Reset, Timeout]
        );
    }

    #[test]
    fn other_java_exceptions_are_accepted_with_a_warning_and_match_nothing() {
        let policy = parse(&breaker_policy(json!({
            "record-exceptions": ["com.example.BusinessException", "503"],
            "ignore-exceptions": ["com.example.Other$Inner"]})))
        .unwrap();
        assert_eq!(policy.circuit_breakers["svc"].record, [Status(503)]);
        assert_eq!(policy.circuit_breakers["svc"].ignore, []);
        assert_eq!(
            policy.warnings,
            [
                format!("{BREAKER_PATH}.ignore-exceptions[0]: com.example.Other$Inner has no HTTP meaning in the sidecar; ignored"),
                format!("{BREAKER_PATH}.ignore-exceptions: no entry has an HTTP meaning, so nothing is ignored"),
                format!("{BREAKER_PATH}.record-exceptions[0]: com.example.BusinessException has no HTTP meaning in the sidecar; ignored"),
            ]
        );
    }

    #[test]
    fn bad_outcome_tokens_are_rejected_with_their_index() {
        let expected = |index: usize, got: &str| {
            format!(
                "{BREAKER_PATH}.record-exceptions[{index}]: expected an HTTP status (100-599), \"4xx\", \"5xx\", \"connect-failure\", \"reset\", \"timeout\" or a Java exception class, got {got}"
            )
        };
        assert_eq!(
            breaker_error(json!({"record-exceptions": ["500", "503", "abc"]})),
            expected(2, "\"abc\"")
        );
        assert_eq!(
            breaker_error(json!({"record-exceptions": ["99"]})),
            expected(0, "\"99\"")
        );
        assert_eq!(
            breaker_error(json!({"record-exceptions": [600]})),
            expected(0, "600")
        );
        assert_eq!(
            breaker_error(json!({"record-exceptions": ["3xx"]})),
            expected(0, "\"3xx\"")
        );
        assert_eq!(
            breaker_error(json!({"record-exceptions": [null]})),
            expected(0, "null")
        );
        assert_eq!(
            breaker_error(json!({"record-exceptions": ["java..Bad"]})),
            expected(0, "\"java..Bad\"")
        );
    }

    // -- durations through properties ----------------------------------------------------

    #[test]
    fn every_duration_form_is_accepted_where_a_duration_is_expected() {
        let wait = |value: Value| {
            breaker(json!({"wait-duration-in-open-state": value})).wait_duration_in_open_state_ms
        };
        assert_eq!(wait(json!("30s")), 30_000);
        assert_eq!(wait(json!("500ms")), 500);
        assert_eq!(wait(json!("2m")), 120_000);
        assert_eq!(wait(json!("1h")), 3_600_000);
        assert_eq!(wait(json!("1d")), 86_400_000);
        assert_eq!(wait(json!("1500us")), 2);
        assert_eq!(wait(json!("10ns")), 1);
        assert_eq!(wait(json!("PT30S")), 30_000);
        assert_eq!(wait(json!("PT0.5S")), 500);
        assert_eq!(wait(json!("PT1M30S")), 90_000);
        assert_eq!(wait(json!("P1D")), 86_400_000);
        assert_eq!(wait(json!(750)), 750);
        assert_eq!(wait(json!("750")), 750);
    }

    // -- upstreams -------------------------------------------------------------------------

    #[test]
    fn upstreams_map_clusters_to_existing_instances() {
        let mut policy: Value = serde_json::from_str(SEED).unwrap();
        policy["upstreams"] = json!({"outbound|8080||users.default.svc.cluster.local": "user-service", "orders_v2": "order-service"});
        let policy = parse(&policy).unwrap();
        assert_eq!(policy.upstreams["orders_v2"], "order-service");
        assert_eq!(
            policy.instance_for_cluster("outbound|8080||users.default.svc.cluster.local"),
            Some("user-service")
        );
    }

    #[test]
    fn upstreams_naming_unknown_instances_are_rejected() {
        let mut policy: Value = serde_json::from_str(SEED).unwrap();
        policy["upstreams"] = json!({"payments": "payment-service"});
        assert_eq!(
            rejected(policy.clone()),
            "upstreams.payments: unknown instance 'payment-service'"
        );
        policy["upstreams"] = json!({"payments": 1});
        assert_eq!(
            rejected(policy),
            "upstreams.payments: expected a string, got 1"
        );
    }

    // -- fallbacks -------------------------------------------------------------------------

    #[test]
    fn fallbacks_parse_status_headers_and_body() {
        let mut policy: Value = serde_json::from_str(SEED).unwrap();
        policy["fallbacks"] = json!({
            "user-service": {"status": 200, "headers": {"Content-Type": "application/json", "x-fallback": 1},
                             "body": {"users": [], "degraded": true}},
            "order-service": {"body": "try later"}
        });
        let policy = parse(&policy).unwrap();
        assert_eq!(
            policy.fallbacks["user-service"],
            Fallback {
                status: 200,
                headers: vec![
                    ("content-type".to_string(), "application/json".to_string()),
                    ("x-fallback".to_string(), "1".to_string()),
                ],
                body: Some(r#"{"degraded":true,"users":[]}"#.to_string()),
            }
        );
        assert_eq!(
            policy.fallbacks["order-service"],
            Fallback {
                status: 503,
                headers: vec![],
                body: Some("try later".to_string())
            }
        );
    }

    #[test]
    fn bad_fallbacks_are_rejected() {
        let with = |fallbacks: Value| {
            let mut policy: Value = serde_json::from_str(SEED).unwrap();
            policy["fallbacks"] = fallbacks;
            rejected(policy)
        };
        assert_eq!(
            with(json!({"payment-service": {}})),
            "fallbacks.payment-service: unknown circuit breaker instance 'payment-service'"
        );
        assert_eq!(
            with(json!({"user-service": {"status": 700}})),
            "fallbacks.user-service.status: must be in [100, 599], got 700"
        );
        assert_eq!(
            with(json!({"user-service": {"code": 200}})),
            "fallbacks.user-service.code: unknown key"
        );
        assert_eq!(
            with(json!({"user-service": {"headers": {":status": "200"}}})),
            "fallbacks.user-service.headers.:status: pseudo-headers cannot be set"
        );
        assert_eq!(
            with(json!({"user-service": {"headers": {"Content-Length": "5"}}})),
            "fallbacks.user-service.headers.Content-Length: is set by Envoy and cannot be set"
        );
        assert_eq!(
            with(json!({"user-service": {"headers": {"x-a": "a\r\nb"}}})),
            "fallbacks.user-service.headers.x-a: header value must not contain CR, LF or NUL"
        );
        assert_eq!(
            with(json!({"user-service": {"headers": {"bad name": "x"}}})),
            "fallbacks.user-service.headers.bad name: is not a valid header name"
        );
        assert_eq!(
            with(json!({"user-service": "oops"})),
            "fallbacks.user-service: expected an object, got \"oops\""
        );
    }

    // -- retry options ---------------------------------------------------------------------

    #[test]
    fn retry_options_default_for_every_retry_instance_and_can_be_overridden() {
        let mut policy: Value = serde_json::from_str(SEED).unwrap();
        policy["retry-options"] = json!({"order-service": {
            "retry-non-idempotent": true, "max-body-bytes": 1024, "per-try-timeout": "2s",
            "overall-timeout": "10s", "budget": {"retry-ratio": 0.5, "min-retries-per-second": 1, "window": "30s"}}});
        let policy = parse(&policy).unwrap();
        assert_eq!(
            policy.retry_options["user-service"],
            RetryOptions::default()
        );
        assert_eq!(
            policy.retry_options["order-service"],
            RetryOptions {
                retry_non_idempotent: true,
                max_body_bytes: 1024,
                per_try_timeout_ms: 2_000,
                overall_timeout_ms: Some(10_000),
                budget: BudgetConfig {
                    retry_ratio: 0.5,
                    min_retries_per_second: 1,
                    window_s: 30
                },
            }
        );
    }

    #[test]
    fn bad_retry_options_are_rejected() {
        let with = |options: Value| {
            let mut policy: Value = serde_json::from_str(SEED).unwrap();
            policy["retry-options"] = options;
            rejected(policy)
        };
        assert_eq!(
            with(json!({"nope": {}})),
            "retry-options.nope: unknown retry instance 'nope'"
        );
        assert_eq!(
            with(json!({"user-service": {"budget": {"window": "90s"}}})),
            "retry-options.user-service.budget.window: must be a whole number of seconds from 1s to 60s, got \"90s\""
        );
        assert_eq!(
            with(json!({"user-service": {"per-try-timeout": 0}})),
            "retry-options.user-service.per-try-timeout: must be at least 1ms, got 0"
        );
    }
}
