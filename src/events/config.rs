//! The policy's `events` section (beside `resilience4j`): which Envoy clusters are the Kafka
//! HTTP bridge, how the sender's identity is written, and how each topic's records are stamped.
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
//! Keys are kebab-case (camelCase is accepted too, like the resilience4j keys); unknown keys
//! are errors naming their full path, e.g. `events.topics.order\.created.mode: ...` (dots in
//! topic names are escaped in paths).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Default `max-body-bytes`: 1 MiB, Envoy's default per-connection buffer limit, so a body the
/// filter accepts is one Envoy can buffer.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Upper bound for `max-body-bytes`: the whole body sits in the worker's memory while stamped.
pub const MAX_MAX_BODY_BYTES: usize = 64 << 20;
/// Default `source` template.
pub const DEFAULT_SOURCE_TEMPLATE: &str = "{workload}.{namespace}";

/// How a topic's records are stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `envelope` (default): the value becomes the seed's envelope
    /// `{id, type, source, timestamp, data, version: "1.0"}`.
    Envelope,
    /// `cloudevents-structured`: the value becomes a CloudEvents 1.0 JSON event
    /// (`specversion`, `id`, `source`, `type`, `time`, `datacontenttype`, `data`/`data_base64`),
    /// with the Kafka header `content-type: application/cloudevents+json`.
    CloudEventsStructured,
    /// `cloudevents-binary`: the value is untouched; the attributes travel as Kafka record
    /// headers `ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time` (and `content-type`),
    /// per the CloudEvents Kafka protocol binding.
    CloudEventsBinary,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Envelope => "envelope",
            Mode::CloudEventsStructured => "cloudevents-structured",
            Mode::CloudEventsBinary => "cloudevents-binary",
        }
    }
}

/// What to do with a record that claims another sender as its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoofedSource {
    /// `correct` (default): overwrite it with the workload's identity, count it, publish.
    Correct,
    /// `reject`: answer 403 and publish nothing from that request.
    Reject,
}

/// Per-topic settings, every field resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub mode: Mode,
    /// Event `type`; None: the topic name (`order.created`).
    pub event_type: Option<String>,
    /// JSON pointer (RFC 6901) into the data whose value becomes the record key when the
    /// record has none, so one entity's events land in one partition, in order.
    pub partition_key: Option<String>,
}

/// The validated `events` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// Envoy cluster names (`xds.cluster_name`) that are the Kafka HTTP bridge. Required.
    pub bridges: Vec<String>,
    /// Template of `source`: `{workload}`, `{namespace}` (Istio node metadata `WORKLOAD_NAME`,
    /// `NAMESPACE`) and `{node}` (the Envoy node id). When a placeholder's value is unknown
    /// the source is the node id. Default `{workload}.{namespace}`; `{workload}` gives the
    /// seed's `serviceName`.
    pub source_template: String,
    pub spoofed_source: SpoofedSource,
    /// Larger bodies are answered 413 and not forwarded. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Mode of topics not listed in `topics` (key `mode`). Default envelope.
    pub default_mode: Mode,
    pub topics: BTreeMap<String, TopicConfig>,
}

impl EventsConfig {
    pub fn is_bridge(&self, cluster: &str) -> bool {
        self.bridges.iter().any(|b| b == cluster)
    }

    /// The settings for a topic: its own entry, else the defaults.
    pub fn topic(&self, topic: &str) -> TopicConfig {
        self.topics.get(topic).cloned().unwrap_or(TopicConfig {
            mode: self.default_mode,
            event_type: None,
            partition_key: None,
        })
    }

    /// The workload's identity from the template. Placeholders whose value is unknown make
    /// the identity the node id (or `unknown` when Envoy has no node id either).
    pub fn source(
        &self,
        workload: Option<&str>,
        namespace: Option<&str>,
        node_id: Option<&str>,
    ) -> String {
        let node = node_id.filter(|s| !s.is_empty());
        let fallback = || node.unwrap_or("unknown").to_string();
        let mut out = String::new();
        let mut rest = self.source_template.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let name = &rest[open + 1..open + close];
            let value = match name {
                "workload" => workload,
                "namespace" => namespace,
                _ => node,
            };
            match value.filter(|s| !s.is_empty()) {
                Some(v) => out.push_str(v),
                None => return fallback(),
            }
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// An error in the `events` section: full key path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn err(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// `parent.key`, with dots inside the key escaped so the path stays unambiguous.
fn child(parent: &str, key: &str) -> String {
    format!("{parent}.{}", key.replace('.', "\\."))
}

/// Spring-style relaxed binding for the fixed keys: `maxBodyBytes` -> `max-body-bytes`.
fn kebab(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else if c == '_' {
            out.push('-');
        } else {
            out.push(c);
        }
    }
    out
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    value
        .as_object()
        .ok_or_else(|| err(path, format!("must be an object, got {}", kind(value))))
}

fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| err(path, format!("must be a string, got {}", kind(value))))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn mode(value: &Value, path: &str) -> Result<Mode, ConfigError> {
    match string(value, path)? {
        "envelope" => Ok(Mode::Envelope),
        "cloudevents-structured" => Ok(Mode::CloudEventsStructured),
        "cloudevents-binary" => Ok(Mode::CloudEventsBinary),
        other => Err(err(
            path,
            format!("must be one of envelope, cloudevents-structured, cloudevents-binary, got \"{other}\""),
        )),
    }
}

/// Kafka's legal topic names: 1..=249 of `[a-zA-Z0-9._-]`.
pub fn is_topic_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Parses the `events` section; `path` is where it sits (`events`).
pub fn parse(value: &Value, path: &str) -> Result<EventsConfig, ConfigError> {
    let map = object(value, path)?;
    let mut config = EventsConfig {
        bridges: Vec::new(),
        source_template: DEFAULT_SOURCE_TEMPLATE.to_string(),
        spoofed_source: SpoofedSource::Correct,
        max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        default_mode: Mode::Envelope,
        topics: BTreeMap::new(),
    };
    let mut topics = None;
    let mut saw_bridges = false;
    for (key, value) in map {
        let p = child(path, key);
        match kebab(key).as_str() {
            "bridges" => {
                saw_bridges = true;
                let list = value.as_array().ok_or_else(|| {
                    err(&p, format!("must be an array of Envoy cluster names, got {}", kind(value)))
                })?;
                for (i, item) in list.iter().enumerate() {
                    let name = string(item, &format!("{p}[{i}]"))?;
                    if name.is_empty() {
                        return Err(err(&format!("{p}[{i}]"), "must not be empty"));
                    }
                    config.bridges.push(name.to_string());
                }
                if config.bridges.is_empty() {
                    return Err(err(&p, "must name at least one Envoy cluster"));
                }
            }
            "source" => {
                let template = string(value, &p)?;
                validate_template(template, &p)?;
                config.source_template = template.to_string();
            }
            "spoofed-source" => {
                config.spoofed_source = match string(value, &p)? {
                    "correct" => SpoofedSource::Correct,
                    "reject" => SpoofedSource::Reject,
                    other => return Err(err(&p, format!("must be correct or reject, got \"{other}\""))),
                }
            }
            "max-body-bytes" => {
                let n = value.as_u64().filter(|n| (1..=MAX_MAX_BODY_BYTES as u64).contains(n));
                config.max_body_bytes = n.ok_or_else(|| {
                    err(&p, format!("must be an integer in [1, {MAX_MAX_BODY_BYTES}], got {value}"))
                })? as usize;
            }
            "mode" => config.default_mode = mode(value, &p)?,
            "topics" => topics = Some((value, p)),
            _ => return Err(err(&p, "unknown key (known: bridges, source, spoofed-source, max-body-bytes, mode, topics)")),
        }
    }
    if !saw_bridges {
        return Err(err(
            &child(path, "bridges"),
            "is required: the Envoy cluster name(s) of the Kafka HTTP bridge",
        ));
    }
    if let Some((value, p)) = topics {
        for (topic, settings) in object(value, &p)? {
            let tp = child(&p, topic);
            if !is_topic_name(topic) {
                return Err(err(
                    &tp,
                    "not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)",
                ));
            }
            let parsed = parse_topic(settings, &tp, config.default_mode)?;
            config.topics.insert(topic.clone(), parsed);
        }
    }
    Ok(config)
}

fn parse_topic(value: &Value, path: &str, default_mode: Mode) -> Result<TopicConfig, ConfigError> {
    let mut topic = TopicConfig {
        mode: default_mode,
        event_type: None,
        partition_key: None,
    };
    for (key, value) in object(value, path)? {
        let p = child(path, key);
        match kebab(key).as_str() {
            "mode" => topic.mode = mode(value, &p)?,
            "type" => {
                let t = string(value, &p)?;
                if t.is_empty() {
                    return Err(err(&p, "must not be empty"));
                }
                topic.event_type = Some(t.to_string());
            }
            "partition-key" => {
                let pointer = string(value, &p)?;
                if !pointer.starts_with('/') {
                    return Err(err(&p, format!("must be a JSON pointer into the data such as \"/orderId\", got \"{pointer}\"")));
                }
                topic.partition_key = Some(pointer.to_string());
            }
            _ => return Err(err(&p, "unknown key (known: mode, type, partition-key)")),
        }
    }
    Ok(topic)
}

fn validate_template(template: &str, path: &str) -> Result<(), ConfigError> {
    if template.is_empty() {
        return Err(err(path, "must not be empty"));
    }
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(err(path, "unbalanced '}'"));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(err(path, "unbalanced '{'"));
        };
        let name = &rest[open + 1..open + close];
        if !matches!(name, "workload" | "namespace" | "node") {
            return Err(err(
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

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde_json::json;

    fn parse_ok(v: Value) -> EventsConfig {
        parse(&v, "events").unwrap()
    }

    fn parse_err(v: Value) -> String {
        parse(&v, "events").unwrap_err().to_string()
    }

    #[test]
    fn minimal_section_takes_the_documented_defaults() {
        let c = parse_ok(json!({"bridges": ["kafka-bridge"]}));
        assert_eq!(c.bridges, vec!["kafka-bridge"]);
        assert_eq!(c.source_template, "{workload}.{namespace}");
        assert_eq!(c.spoofed_source, SpoofedSource::Correct);
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.default_mode, Mode::Envelope);
        let t = c.topic("order.created");
        assert_eq!(
            t,
            TopicConfig {
                mode: Mode::Envelope,
                event_type: None,
                partition_key: None
            }
        );
        assert!(c.is_bridge("kafka-bridge"));
        assert!(!c.is_bridge("user-service"));
    }

    #[test]
    fn full_section_with_per_topic_settings() {
        let c = parse_ok(json!({
            "bridges": ["kafka-bridge", "outbound|8080||kafka-bridge.kafka.svc.cluster.local"],
            "source": "{workload}",
            "spoofedSource": "reject",
            "max-body-bytes": 4096,
            "mode": "cloudevents-structured",
            "topics": {
                "order.created": {"type": "com.example.order.created", "partition-key": "/orderId"},
                "payment.completed": {"mode": "cloudevents-binary"}
            }
        }));
        assert_eq!(c.spoofed_source, SpoofedSource::Reject);
        assert_eq!(c.max_body_bytes, 4096);
        let oc = c.topic("order.created");
        assert_eq!(
            oc.mode,
            Mode::CloudEventsStructured,
            "topics inherit the section's mode"
        );
        assert_eq!(oc.event_type.as_deref(), Some("com.example.order.created"));
        assert_eq!(oc.partition_key.as_deref(), Some("/orderId"));
        assert_eq!(c.topic("payment.completed").mode, Mode::CloudEventsBinary);
        assert_eq!(c.topic("order.updated").mode, Mode::CloudEventsStructured);
    }

    #[test]
    fn source_comes_from_node_metadata_through_the_template() {
        let c = parse_ok(json!({"bridges": ["b"]}));
        assert_eq!(
            c.source(
                Some("order-service"),
                Some("shop"),
                Some("sidecar~10.0.0.1~x")
            ),
            "order-service.shop"
        );
        assert_eq!(
            c.source(None, Some("shop"), Some("sidecar~node")),
            "sidecar~node",
            "no workload: the node id"
        );
        assert_eq!(c.source(None, None, None), "unknown");
        let c = parse_ok(json!({"bridges": ["b"], "source": "//{namespace}/{workload}"}));
        assert_eq!(
            c.source(Some("order-service"), Some("shop"), None),
            "//shop/order-service"
        );
    }

    #[test]
    fn errors_name_the_full_path() {
        assert_eq!(
            parse_err(json!({})),
            "events.bridges: is required: the Envoy cluster name(s) of the Kafka HTTP bridge"
        );
        assert_eq!(
            parse_err(json!({"bridges": []})),
            "events.bridges: must name at least one Envoy cluster"
        );
        assert_eq!(
            parse_err(json!({"bridges": "b"})),
            "events.bridges: must be an array of Envoy cluster names, got a string"
        );
        assert_eq!(
            parse_err(json!({"bridges": ["b", 3]})),
            "events.bridges[1]: must be a string, got a number"
        );
        assert_eq!(
            parse_err(json!({"bridges": ["b"], "topics": {"order.created": {"mode": "avro"}}})),
            "events.topics.order\\.created.mode: must be one of envelope, cloudevents-structured, cloudevents-binary, got \"avro\""
        );
        assert_eq!(
            parse_err(
                json!({"bridges": ["b"], "topics": {"order.created": {"modes": "envelope"}}})
            ),
            "events.topics.order\\.created.modes: unknown key (known: mode, type, partition-key)"
        );
        assert_eq!(
            parse_err(json!({"bridges": ["b"], "topics": {"order.created": {"partition-key": "orderId"}}})),
            "events.topics.order\\.created.partition-key: must be a JSON pointer into the data such as \"/orderId\", got \"orderId\""
        );
        assert_eq!(
            parse_err(json!({"bridges": ["b"], "topics": {"bad topic": {}}})),
            "events.topics.bad topic: not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"
        );
        assert_eq!(
            parse_err(json!({"bridges": ["b"], "max-body-bytes": 0})),
            "events.max-body-bytes: must be an integer in [1, 67108864], got 0"
        );
        assert_eq!(
            parse_err(json!({"bridges": ["b"], "max-body-bytes": "1MB"})),
            "events.max-body-bytes: must be an integer in [1, 67108864], got \"1MB\""
        );
        assert_eq!(
            parse_err(json!({"bridges": ["b"], "spoofed-source": "ignore"})),
            "events.spoofed-source: must be correct or reject, got \"ignore\""
        );
        assert_eq!(
            parse_err(json!({"bridges": ["b"], "source": "{pod}"})),
            "events.source: unknown placeholder {pod} (known: {workload}, {namespace}, {node})"
        );
        assert_eq!(
            parse_err(json!({"bridges": ["b"], "source": "{workload"})),
            "events.source: unbalanced '{'"
        );
        assert!(parse_err(json!({"bridges": ["b"], "colour": 1}))
            .starts_with("events.colour: unknown key"));
        assert_eq!(
            parse_err(json!([])),
            "events: must be an object, got an array"
        );
    }
}
