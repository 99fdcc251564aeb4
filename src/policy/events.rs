//! The `events` section (beside `resilience4j`): which Envoy clusters are the Kafka HTTP
//! bridge, how the sender's identity is written, and how each topic's records are stamped.
//! The model is [`crate::events::EventsConfig`].
//!
//! ```json
//! "events": {
//!   "bridges": ["kafka-bridge"],
//!   "source": "{workload}.{namespace}",
//!   "spoofed-source": "correct",
//!   "max-body-bytes": 1048576,
//!   "mode": "envelope",
//!   "topics": {
//!     "order.created":     {"type": "com.example.order.created", "partition-key": "/orderId"},
//!     "payment.completed": {"mode": "cloudevents-binary"}
//!   }
//! }
//! ```
//! Read by the policy's one reader ([`super::read`]): relaxed keys, numbers as strings, `null`
//! as empty, paths as written (`events.topics.order.created.mode`). Unknown keys list the
//! known ones.

use crate::sorted_map::SortedMap;

use crate::json::Value;

use super::read::{
    as_number, enum_option, enumeration, error, is_object, join, keyed, keys, Hint, PolicyError,
    Result,
};
use crate::events::config::{
    is_topic_name, EventsConfig, Mode, SpoofedSource, TopicConfig, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_SOURCE_TEMPLATE, MAX_MAX_BODY_BYTES,
};

keys! {
    enum EventsKey (Hint::ListKnown) {
        Bridges = "bridges",
        Source = "source",
        SpoofedSource = "spoofed-source",
        MaxBodyBytes = "max-body-bytes",
        Mode = "mode",
        Topics = "topics",
    }
}

keys! {
    enum TopicKey (Hint::ListKnown) {
        Mode = "mode",
        Type = "type",
        PartitionKey = "partition-key",
    }
}

/// What a JSON value is, for "got ..." in this section's messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
        Value::Raw(_) => "JSON text",
    }
}

/// An object (or `null`, read as an empty one), else this section's message.
fn check_object(value: &Value, path: &str) -> Result<()> {
    if is_object(value) {
        Ok(())
    } else {
        Err(error(
            path,
            format!("must be an object, got {}", kind(value)),
        ))
    }
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str> {
    value
        .as_str()
        .ok_or_else(|| error(path, format!("must be a string, got {}", kind(value))))
}

fn mode(value: &Value, path: &str) -> Result<Mode> {
    string(value, path)?;
    enumeration(
        value,
        path,
        &[
            ("envelope", Mode::Envelope),
            ("cloudevents-structured", Mode::CloudEventsStructured),
            ("cloudevents-binary", Mode::CloudEventsBinary),
        ],
    )
}

/// Reads the `events` section; `path` is where it sits (`events`).
pub fn parse_events(value: &Value, path: &str) -> std::result::Result<EventsConfig, PolicyError> {
    read(value, path, &mut Vec::new())
}

pub(super) fn read(value: &Value, path: &str, warnings: &mut Vec<String>) -> Result<EventsConfig> {
    check_object(value, path)?;
    let mut config = EventsConfig {
        bridges: Vec::new(),
        source_template: DEFAULT_SOURCE_TEMPLATE.to_string(),
        spoofed_source: SpoofedSource::Correct,
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        default_mode: Mode::Envelope,
        topics: SortedMap::new(),
    };
    let mut topics = None;
    let mut saw_bridges = false;
    for (key, value, p) in keyed(value, path, warnings)? {
        match key {
            EventsKey::Bridges => {
                saw_bridges = true;
                let list: &[Value] = match value {
                    Value::Array(items) => items,
                    Value::Null => &[],
                    other => {
                        return Err(error(
                            &p,
                            format!(
                                "must be an array of Envoy cluster names, got {}",
                                kind(other)
                            ),
                        ))
                    }
                };
                for (i, item) in list.iter().enumerate() {
                    let item_path = format!("{p}[{i}]");
                    let name = string(item, &item_path)?;
                    if name.is_empty() {
                        return Err(error(&item_path, "must not be empty"));
                    }
                    config.bridges.push(name.to_string());
                }
                if config.bridges.is_empty() {
                    return Err(error(&p, "must name at least one Envoy cluster"));
                }
            }
            EventsKey::Source => {
                let template = string(value, &p)?;
                validate_template(template, &p)?;
                config.source_template = template.to_string();
            }
            EventsKey::SpoofedSource => {
                string(value, &p)?;
                config.spoofed_source = enum_option(
                    value,
                    &[
                        ("correct", SpoofedSource::Correct),
                        ("reject", SpoofedSource::Reject),
                    ],
                )
                .ok_or_else(|| {
                    error(
                        &p,
                        format!(
                            "must be correct or reject, got {}",
                            super::read::describe(value)
                        ),
                    )
                })?
            }
            EventsKey::MaxBodyBytes => {
                let max = MAX_MAX_BODY_BYTES as f64;
                config.max_body_bytes = match as_number(value) {
                    Some(n) if n.fract() == 0.0 && (1.0..=max).contains(&n) => n as usize,
                    _ => {
                        return Err(error(
                            &p,
                            format!(
                                "must be an integer in [1, {MAX_MAX_BODY_BYTES}], got {}",
                                super::read::describe(value)
                            ),
                        ))
                    }
                }
            }
            EventsKey::Mode => config.default_mode = mode(value, &p)?,
            EventsKey::Topics => topics = Some((value, p)),
        }
    }
    if !saw_bridges {
        return Err(error(
            &join(path, "bridges"),
            "is required: the Envoy cluster name(s) of the Kafka HTTP bridge",
        ));
    }
    if let Some((value, p)) = topics {
        check_object(value, &p)?;
        for (topic, settings) in value.as_object().into_iter().flatten() {
            let tp = join(&p, topic);
            if !is_topic_name(topic) {
                return Err(error(
                    &tp,
                    "not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)",
                ));
            }
            let parsed = read_topic(settings, &tp, config.default_mode, warnings)?;
            config.topics.insert(topic.clone(), parsed);
        }
    }
    Ok(config)
}

fn read_topic(
    value: &Value,
    path: &str,
    default_mode: Mode,
    warnings: &mut Vec<String>,
) -> Result<TopicConfig> {
    check_object(value, path)?;
    let mut topic = TopicConfig {
        mode: default_mode,
        event_type: None,
        partition_key: None,
    };
    for (key, value, p) in keyed(value, path, warnings)? {
        match key {
            TopicKey::Mode => topic.mode = mode(value, &p)?,
            TopicKey::Type => {
                let t = string(value, &p)?;
                if t.is_empty() {
                    return Err(error(&p, "must not be empty"));
                }
                topic.event_type = Some(t.to_string());
            }
            TopicKey::PartitionKey => {
                let pointer = string(value, &p)?;
                if !pointer.starts_with('/') {
                    return Err(error(&p, format!("must be a JSON pointer into the data such as \"/orderId\", got \"{pointer}\"")));
                }
                topic.partition_key = Some(pointer.to_string());
            }
        }
    }
    Ok(topic)
}

fn validate_template(template: &str, path: &str) -> Result<()> {
    if template.is_empty() {
        return Err(error(path, "must not be empty"));
    }
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(error(path, "unbalanced '}'"));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(error(path, "unbalanced '{'"));
        };
        let name = &rest[open + 1..open + close];
        if !matches!(name, "workload" | "namespace" | "node") {
            return Err(error(
                path,
                format!(
                    "unknown placeholder {{{name}}} (known: {{workload}}, {{namespace}}, {{node}})"
                ),
            ));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}
