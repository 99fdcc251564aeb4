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
//! Read by the policy reader (`crate::policy`, its `events` section).

use crate::sorted_map::SortedMap;

/// Default `max-body-bytes`: 512 KiB, half of Envoy's default per-connection buffer limit
/// (1 MiB). The limit holds for the stamped body, which Envoy must buffer; and a chunked body
/// arrives in reads of up to the buffer limit, so the filter must see a body go over its limit
/// before Envoy's buffer does, or the client gets Envoy's plain 413 instead of the filter's JSON
/// one. Larger limits need larger buffers (README: listener and route buffer limits).
pub const DEFAULT_MAX_BODY_BYTES: usize = 512 << 10;
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
    pub topics: SortedMap<String, TopicConfig>,
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

/// Kafka's legal topic names: 1..=249 of `[a-zA-Z0-9._-]`.
pub fn is_topic_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}
