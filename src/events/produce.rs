//! The Kafka HTTP bridge's produce request (Strimzi Kafka Bridge API; Confluent REST Proxy v2
//! has the same shape minus `headers`) and its stamping: every record's value is rewritten into
//! the topic's envelope before the request leaves the sidecar, or the whole request is refused.
//!
//! `POST /topics/{topic}` or `POST /topics/{topic}/partitions/{partition}` with
//! `Content-Type: application/vnd.kafka.{json|binary|text}.v2+json` and body
//! `{"records": [{"key", "value", "partition", "headers": [{"key", "value": base64}]}]}`.

use crate::json;
use crate::json::{Map, Value};

use super::codec::{
    base64_decode, base64_encode, is_rfc3339, is_traceparent, rfc3339_millis, uuid_v4,
};
use super::config::{is_topic_name, EventsConfig, Mode, SpoofedSource, TopicConfig};

/// The produce endpoint a request targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTarget {
    pub topic: String,
    pub partition: Option<u32>,
}

/// `POST /topics/{topic}` and `POST /topics/{topic}/partitions/{p}` (query string ignored).
/// Anything else — the consumer API, GETs, other paths — is not a produce request and passes
/// through the filter untouched.
pub fn produce_target(method: &str, path: &str) -> Option<ProduceTarget> {
    if method != "POST" {
        return None;
    }
    let path = before_any(path, b'?', b'#');
    let rest = path.strip_prefix("/topics/")?;
    let mut parts = rest.split('/');
    let topic = parts.next()?;
    if !is_topic_name(topic) {
        return None;
    }
    let partition = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => None,
        (Some("partitions"), Some(p), None)
            if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) =>
        {
            Some(p.parse().ok()?)
        }
        _ => return None,
    };
    Some(ProduceTarget {
        topic: topic.to_string(),
        partition,
    })
}

/// `text` up to the first ASCII byte `a` or `b` (all of it without one). An index loop: an
/// iterator with a closure is a call per byte in a module built for size.
fn before_any(text: &str, a: u8, b: u8) -> &str {
    let bytes = text.as_bytes();
    let mut end = 0;
    while let Some(&c) = bytes.get(end) {
        if c == a || c == b {
            break;
        }
        end += 1;
    }
    // Stops are ASCII: `end` is a char boundary.
    text.get(..end).unwrap_or(text)
}

/// The embedded format named by the request's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/vnd.kafka.json.v2+json`: keys and values are JSON.
    Json,
    /// `application/vnd.kafka.binary.v2+json`: keys and values are base64 strings.
    Binary,
    /// `application/vnd.kafka.text.v2+json`: keys and values are strings.
    Text,
}

pub const JSON_V2: &str = "application/vnd.kafka.json.v2+json";
pub const BINARY_V2: &str = "application/vnd.kafka.binary.v2+json";
pub const TEXT_V2: &str = "application/vnd.kafka.text.v2+json";

/// Parses the Content-Type (parameters such as `charset` are ignored).
pub fn format_of(content_type: Option<&str>) -> Result<Format, Rejection> {
    let media = before_any(content_type.unwrap_or(""), b';', b';').trim();
    // Compared in place, exactly first (producers send these lower case), then ignoring case:
    // no lower-cased copy per produce request.
    let is = |known: &str| media == known || media.eq_ignore_ascii_case(known);
    if is(JSON_V2) {
        Ok(Format::Json)
    } else if is(BINARY_V2) {
        Ok(Format::Binary)
    } else if is(TEXT_V2) {
        Ok(Format::Text)
    } else {
        Err(Rejection::new(
            RejectReason::UnsupportedMediaType,
            format!(
                "Content-Type must be {JSON_V2}, {BINARY_V2} or {TEXT_V2} for the sidecar to stamp events, got {}",
                content_type.map_or_else(|| "none".to_string(), |c| format!("\"{c}\""))
            ),
        ))
    }
}

/// Why a produce request was refused (the metric tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// 400: the body is not JSON.
    InvalidJson,
    /// 400: the body is JSON but not `{"records": [...]}` with well-formed records.
    InvalidShape,
    /// 413: the body is over `max-body-bytes`.
    TooLarge,
    /// 415: not a json/binary/text v2 content type.
    UnsupportedMediaType,
    /// 403: a record claims another source and the policy says `reject`.
    SpoofedSource,
    /// 503: the host could not help (no random bytes for ids, body unreadable).
    Unavailable,
}

impl RejectReason {
    pub const ALL: [RejectReason; 6] = [
        RejectReason::InvalidJson,
        RejectReason::InvalidShape,
        RejectReason::TooLarge,
        RejectReason::UnsupportedMediaType,
        RejectReason::SpoofedSource,
        RejectReason::Unavailable,
    ];

    pub fn status(self) -> u16 {
        match self {
            RejectReason::InvalidJson | RejectReason::InvalidShape => 400,
            RejectReason::TooLarge => 413,
            RejectReason::UnsupportedMediaType => 415,
            RejectReason::SpoofedSource => 403,
            RejectReason::Unavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::InvalidShape => "invalid_shape",
            RejectReason::TooLarge => "too_large",
            RejectReason::UnsupportedMediaType => "unsupported_media_type",
            RejectReason::SpoofedSource => "spoofed_source",
            RejectReason::Unavailable => "unavailable",
        }
    }
}

/// A refused produce request: nothing of it is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        self.reason.status()
    }

    /// The bridge's own error shape, so clients handle both alike:
    /// `{"error_code": 400, "message": "..."}`.
    pub fn body(&self) -> Vec<u8> {
        let mut body = format!("{{\"error_code\":{},\"message\":", self.status());
        json::escape_into(&self.message, &mut body);
        body.push('}');
        body.into_bytes()
    }
}

/// What stamping one request did, for the per-topic metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StampStats {
    /// Records stamped (every record of an accepted request).
    pub records: u64,
    /// Records that already carried an envelope whose id was kept.
    pub kept: u64,
    /// Records whose claimed source was overwritten with the workload's.
    pub corrected: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stamped {
    pub body: Vec<u8>,
    pub stats: StampStats,
}

/// Everything the stamping needs besides the body; time and randomness come from the host.
pub struct StampInput<'a> {
    pub config: &'a EventsConfig,
    pub topic: &'a str,
    /// The workload's identity ([`EventsConfig::source`]).
    pub source: &'a str,
    pub content_type: Option<&'a str>,
    /// The request's `traceparent` header; propagated only when well-formed.
    pub traceparent: Option<&'a str>,
    /// Unix time in milliseconds.
    pub now_ms: u64,
}

/// 16 random bytes per call (a UUID's worth), None when the host has no random source.
pub type RandomSource<'a> = dyn FnMut() -> Option<[u8; 16]> + 'a;

const ENVELOPE_KEYS: [&str; 9] = [
    "id",
    "type",
    "source",
    "timestamp",
    "data",
    "version",
    "datacontenttype",
    "dataencoding",
    "traceparent",
];

const CE_HEADERS: [&str; 5] = ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"];

/// Stamps a whole produce request body, or refuses it whole.
pub fn stamp(
    input: &StampInput<'_>,
    body: &[u8],
    random: &mut RandomSource<'_>,
) -> Result<Stamped, Rejection> {
    if body.len() > input.config.max_body_bytes {
        return Err(too_large(body.len(), input.config.max_body_bytes));
    }
    let format = format_of(input.content_type)?;
    // A record's object or array value that is already compact is copied into its envelope,
    // not parsed and written again; one with an `id` and a `data` or `specversion` may be a
    // prior event (`is_prior_event`), read as a tree.
    let keep = json::Keep {
        depth: 3,
        key: "value",
        unless_members: &[&["id"], &["data", "specversion"]],
    };
    let parsed: Value = json::from_slice_keeping(body, keep).map_err(|e| {
        Rejection::new(
            RejectReason::InvalidJson,
            format!("body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut top) = parsed else {
        return Err(shape("body must be an object {\"records\": [...]}"));
    };
    if let Some(key) = top.keys().find(|k| k.as_str() != "records") {
        return Err(shape(format!(
            "unknown key \"{key}\": the body must be {{\"records\": [...]}}"
        )));
    }
    let Some(Value::Array(records)) = top.remove("records") else {
        return Err(shape("records: required, an array of records"));
    };
    if records.is_empty() {
        return Err(shape("records: must not be empty"));
    }
    let topic = input.config.topic(input.topic);
    let traceparent = input
        .traceparent
        .map(str::trim)
        .filter(|t| is_traceparent(t));
    let ctx = RecordContext {
        input,
        topic: &topic,
        format,
        traceparent,
    };
    let mut stats = StampStats::default();
    let mut out = Vec::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        out.push(ctx.stamp_record(i, record, random, &mut stats)?);
        stats.records += 1;
    }
    // Written straight into a buffer sized for the stamped body (~150 bytes more a record).
    let mut text = String::with_capacity(body.len() + 256 * out.len());
    // Back into the request's own (now empty) top object; `json!` would clone the whole tree.
    top.insert("records".to_string(), Value::Array(out));
    crate::json::write_value(&Value::Object(top), &mut text);
    let body = text.into_bytes();
    // The limit holds for what is forwarded: stamping adds ~150 bytes a record, and a body
    // over Envoy's buffer limit would get Envoy's plain 413 after the records were counted.
    if body.len() > input.config.max_body_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!(
                "body is {} bytes once stamped, over the limit of {} bytes \
                 (events.max-body-bytes)",
                body.len(),
                input.config.max_body_bytes
            ),
        ));
    }
    Ok(Stamped { body, stats })
}

pub fn too_large(size: usize, max: usize) -> Rejection {
    Rejection::new(
        RejectReason::TooLarge,
        format!("body is {size} bytes, over the limit of {max} bytes (events.max-body-bytes)"),
    )
}

fn shape(message: impl Into<String>) -> Rejection {
    Rejection::new(RejectReason::InvalidShape, message)
}

/// A record's value, decoded per the embedded format.
enum Data {
    Json(Value),
    Text(String),
    Bytes(Vec<u8>),
    Null,
}

/// Where in the request a record's field is (`records[2].value`), for error messages: written
/// only when one is, not for every record stamped.
#[derive(Clone, Copy)]
struct At<'a> {
    record: usize,
    field: &'a str,
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "records[{}]{}", self.record, self.field)
    }
}

struct RecordContext<'a> {
    input: &'a StampInput<'a>,
    topic: &'a TopicConfig,
    format: Format,
    traceparent: Option<&'a str>,
}

impl RecordContext<'_> {
    fn event_type(&self) -> &str {
        self.topic.event_type.as_deref().unwrap_or(self.input.topic)
    }

    fn new_id(&self, random: &mut RandomSource<'_>) -> Result<String, Rejection> {
        random().map(uuid_v4).ok_or_else(|| {
            Rejection::new(
                RejectReason::Unavailable,
                "no random source for event ids; nothing was published",
            )
        })
    }

    fn stamp_record(
        &self,
        i: usize,
        record: Value,
        random: &mut RandomSource<'_>,
        stats: &mut StampStats,
    ) -> Result<Value, Rejection> {
        let at = |field| At { record: i, field };
        let Value::Object(mut record) = record else {
            return Err(shape(format!("{}: must be an object", at(""))));
        };
        if let Some(p) = record.get("partition") {
            if !p.is_u64() && !p.is_null() {
                return Err(shape(format!(
                    "{}: must be a non-negative integer",
                    at(".partition")
                )));
            }
        }
        let mut headers = decode_headers(record.remove("headers"), at(".headers"))?;
        let data = self.decode_value(record.remove("value"), at(".value"))?;
        self.check_key(record.get("key"), at(".key"))?;

        // The partition key reads the payload only when configured and the record has no key.
        let wants_data =
            self.topic.partition_key.is_some() && record.get("key").is_none_or(Value::is_null);
        let (value, key_value) = match self.topic.mode {
            Mode::CloudEventsBinary => {
                let key_value = if wants_data {
                    self.partition_value(&data)
                } else {
                    None
                };
                self.stamp_headers(&mut headers, &data, random, stats, i)?;
                (self.encode_value(data), key_value)
            }
            Mode::Envelope | Mode::CloudEventsStructured => {
                let (event, key_value) =
                    self.stamp_structured(data, &headers, random, stats, i, wants_data)?;
                if self.topic.mode == Mode::CloudEventsStructured {
                    set_header(
                        &mut headers,
                        "content-type",
                        b"application/cloudevents+json".to_vec(),
                    );
                }
                (self.encode_value(Data::Json(event)), key_value)
            }
        };
        record.insert("value".into(), value);
        if let Some(key) = key_value.and_then(|k| self.encode_key(&k)) {
            record.insert("key".into(), key);
        }
        if !headers.is_empty() {
            let list = headers
                .into_iter()
                .map(|(k, v)| {
                    let value = Value::String(base64_encode(&v));
                    Value::Object(Map::from_pairs(vec![
                        ("key".into(), Value::String(k)),
                        ("value".into(), value),
                    ]))
                })
                .collect();
            record.insert("headers".into(), Value::Array(list));
        }
        Ok(Value::Object(record))
    }

    fn decode_value(&self, value: Option<Value>, at: At<'_>) -> Result<Data, Rejection> {
        match (self.format, value) {
            (_, None | Some(Value::Null)) => Ok(Data::Null),
            (Format::Json, Some(v)) => Ok(Data::Json(v)),
            (Format::Text, Some(Value::String(s))) => Ok(Data::Text(s)),
            (Format::Binary, Some(Value::String(s))) => base64_decode(&s)
                .map(Data::Bytes)
                .ok_or_else(|| shape(format!("{at}: not base64, as {BINARY_V2} requires"))),
            (_, Some(_)) => Err(self.not_of_format(at)),
        }
    }

    /// A key or value that is not the string the format says it must be.
    fn not_of_format(&self, at: At<'_>) -> Rejection {
        shape(match self.format {
            Format::Text => format!("{at}: must be a string, as {TEXT_V2} requires"),
            _ => format!("{at}: must be a base64 string, as {BINARY_V2} requires"),
        })
    }

    fn check_key(&self, key: Option<&Value>, at: At<'_>) -> Result<(), Rejection> {
        match (self.format, key) {
            (_, None | Some(Value::Null)) | (Format::Json, _) => Ok(()),
            (Format::Text, Some(Value::String(_))) => Ok(()),
            (Format::Binary, Some(Value::String(s))) if base64_decode(s).is_some() => Ok(()),
            (_, Some(_)) => Err(self.not_of_format(at)),
        }
    }

    /// The record value in the request's embedded format.
    fn encode_value(&self, data: Data) -> Value {
        let bytes = |d: Data| match d {
            Data::Json(v) => v.to_json().into_bytes(),
            Data::Text(s) => s.into_bytes(),
            Data::Bytes(b) => b,
            Data::Null => Vec::new(),
        };
        match (self.format, data) {
            (_, Data::Null) => Value::Null,
            (Format::Json, Data::Json(v)) => v,
            (Format::Json, Data::Text(s)) => Value::String(s),
            (Format::Json, Data::Bytes(b)) => Value::String(base64_encode(&b)),
            (Format::Text, d) => Value::String(match String::from_utf8(bytes(d)) {
                Ok(text) => text,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            }),
            (Format::Binary, d) => Value::String(base64_encode(&bytes(d))),
        }
    }

    fn encode_key(&self, key: &Value) -> Option<Value> {
        let text = match key {
            Value::Null => return None,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some(match self.format {
            Format::Json => key.clone(),
            Format::Text => Value::String(text),
            Format::Binary => Value::String(base64_encode(text.as_bytes())),
        })
    }

    fn data_content_type(&self, headers: &[(String, Vec<u8>)]) -> &'static str {
        match self.format {
            Format::Json => "application/json",
            Format::Text => "text/plain",
            Format::Binary => {
                // The producer may say what its bytes are with a `content-type` record header.
                let said = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-type"));
                match said.map(|(_, v)| String::from_utf8_lossy(v).into_owned()) {
                    // Bytes, not `str::contains`: keeps core's substring searcher out of the `.wasm`.
                    Some(ct) if ct.as_bytes().windows(4).any(|w| w == b"json") => {
                        "application/json"
                    }
                    Some(ct) if ct.starts_with("text/") => "text/plain",
                    _ => "application/octet-stream",
                }
            }
        }
    }

    /// Envelope and CloudEvents structured: the value becomes the event object.
    fn stamp_structured(
        &self,
        data: Data,
        headers: &[(String, Vec<u8>)],
        random: &mut RandomSource<'_>,
        stats: &mut StampStats,
        i: usize,
        wants_data: bool,
    ) -> Result<(Value, Option<Value>), Rejection> {
        // Returns the event and, when `wants_data`, the value its partition key is made of.
        let structured = self.topic.mode == Mode::CloudEventsStructured;
        let (id_key, time_key) = if structured {
            ("id", "time")
        } else {
            ("id", "timestamp")
        };
        // An object payload is moved, not copied; text and bytes are read as JSON to look.
        let (prior, data) = match data {
            Data::Json(Value::Object(m)) if is_prior_event(&m, structured) => (Some(m), Data::Null),
            Data::Json(v) => (None, Data::Json(v)),
            other => {
                let prior = data_as_json(&other).and_then(|v| match v {
                    Value::Object(m) if is_prior_event(&m, structured) => Some(m),
                    _ => None,
                });
                (prior, other)
            }
        };
        let source = self.input.source;
        let mut event = match prior {
            Some(mut prior) => {
                if let Some(claimed) = prior.get("source") {
                    if claimed.as_str() != Some(source) {
                        self.spoofed(i, claimed)?;
                        stats.corrected += 1;
                    }
                }
                match prior.get(id_key).and_then(Value::as_str) {
                    Some(id) if !id.is_empty() => stats.kept += 1,
                    _ => {
                        prior.insert(id_key.into(), Value::String(self.new_id(random)?));
                    }
                }
                if !prior
                    .get(time_key)
                    .and_then(Value::as_str)
                    .is_some_and(is_rfc3339)
                {
                    prior.insert(
                        time_key.into(),
                        Value::String(rfc3339_millis(self.input.now_ms)),
                    );
                }
                prior
            }
            None => {
                // Written straight out: no map, no key strings, the payload copied once.
                let key_value = if wants_data {
                    self.partition_value(&data)
                } else {
                    None
                };
                let id = self.new_id(random)?;
                let event = self.new_event(data, &id, headers, structured);
                return Ok((Value::Raw(event), key_value));
            }
        };
        event.insert("source".into(), Value::String(source.to_string()));
        event.insert("type".into(), Value::String(self.event_type().to_string()));
        if structured {
            event.insert("specversion".into(), "1.0".into());
        } else {
            event.insert("version".into(), "1.0".into());
        }
        if let (Some(tp), false) = (self.traceparent, event.contains_key("traceparent")) {
            event.insert("traceparent".into(), tp.into());
        }
        // The partition key reads the event's data (the producer's own payload).
        if !wants_data {
            return Ok((Value::Object(event), None));
        }
        let data_json = match event.get("data") {
            Some(Value::String(s)) if event.get("dataencoding").is_some() => {
                base64_decode(s).and_then(|b| crate::json::from_slice(&b).ok())
            }
            Some(Value::String(s)) if self.format != Format::Json => crate::json::from_str(s).ok(),
            Some(v) => Some(v.clone()),
            None => event
                .get("data_base64")
                .and_then(Value::as_str)
                .and_then(base64_decode)
                .and_then(|b| crate::json::from_slice(&b).ok()),
        };
        let pointer = self.topic.partition_key.as_deref();
        let key_value = data_json.and_then(|d| pointed(&d, pointer?));
        Ok((Value::Object(event), key_value))
    }

    /// The value at the topic's partition-key pointer in a record's data: a kept payload is
    /// scanned to it, a tree is pointed into; neither is copied whole.
    fn partition_value(&self, data: &Data) -> Option<Value> {
        let pointer = self.topic.partition_key.as_deref()?;
        match data {
            Data::Json(v) => pointed(v, pointer),
            other => pointed(&data_as_json(other)?, pointer),
        }
    }

    /// A new event's text, exactly as `write_value` writes the map: members in key order
    /// (`data` < `data_base64` < `datacontenttype` < `dataencoding` < `id` < `source` <
    /// `specversion` < `time` < `timestamp` < `traceparent` < `type` < `version`).
    fn new_event(
        &self,
        data: Data,
        id: &str,
        headers: &[(String, Vec<u8>)],
        structured: bool,
    ) -> String {
        let ct = self.data_content_type(headers);
        let size = match &data {
            Data::Json(Value::Raw(text)) | Data::Text(text) => text.len(),
            Data::Bytes(b) => b.len() / 3 * 4 + 4,
            _ => 0,
        };
        let mut out = String::with_capacity(256 + size);
        // `key` as written: quoted, with its colon (two appends a member).
        let member = |out: &mut String, key: &str| {
            out.push_str(if out.is_empty() { "{" } else { "," });
            out.push_str(key);
        };
        let (ct, encoding) = match data {
            Data::Bytes(b) => {
                member(
                    &mut out,
                    if structured {
                        "\"data_base64\":"
                    } else {
                        "\"data\":"
                    },
                );
                json::escape_into(&base64_encode(&b), &mut out);
                (Some(ct), (!structured).then_some("base64"))
            }
            Data::Text(text) => {
                member(&mut out, "\"data\":");
                json::escape_into(&text, &mut out);
                (Some(ct), None)
            }
            Data::Json(v) => {
                member(&mut out, "\"data\":");
                json::write_value(&v, &mut out);
                (structured.then_some(ct), None)
            }
            Data::Null => {
                member(&mut out, "\"data\":");
                out.push_str("null");
                (None, None)
            }
        };
        let time = rfc3339_millis(self.input.now_ms);
        let tail = [
            ("\"datacontenttype\":", ct),
            ("\"dataencoding\":", encoding),
            ("\"id\":", Some(id)),
            ("\"source\":", Some(self.input.source)),
            ("\"specversion\":", structured.then_some("1.0")),
            ("\"time\":", structured.then_some(time.as_str())),
            ("\"timestamp\":", (!structured).then_some(time.as_str())),
            ("\"traceparent\":", self.traceparent),
            ("\"type\":", Some(self.event_type())),
            ("\"version\":", (!structured).then_some("1.0")),
        ];
        for (key, value) in tail {
            if let Some(value) = value {
                member(&mut out, key);
                json::escape_into(value, &mut out);
            }
        }
        out.push('}');
        out
    }

    /// CloudEvents binary: the value stays; the attributes become `ce_*` record headers.
    fn stamp_headers(
        &self,
        headers: &mut Vec<(String, Vec<u8>)>,
        data: &Data,
        random: &mut RandomSource<'_>,
        stats: &mut StampStats,
        i: usize,
    ) -> Result<(), Rejection> {
        let get = |headers: &[(String, Vec<u8>)], name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        if let Some(claimed) = get(headers, "ce_source") {
            if claimed != self.input.source {
                self.spoofed(i, &Value::String(claimed))?;
                stats.corrected += 1;
            }
        }
        let id = match get(headers, "ce_id").filter(|id| !id.is_empty()) {
            Some(id) => {
                stats.kept += 1;
                id
            }
            None => self.new_id(random)?,
        };
        let time = get(headers, "ce_time")
            .filter(|t| is_rfc3339(t))
            .unwrap_or_else(|| rfc3339_millis(self.input.now_ms));
        headers.retain(|(k, _)| !CE_HEADERS.contains(&k.as_str()));
        headers.push(("ce_specversion".into(), b"1.0".to_vec()));
        headers.push(("ce_id".into(), id.into_bytes()));
        headers.push(("ce_source".into(), self.input.source.as_bytes().to_vec()));
        headers.push(("ce_type".into(), self.event_type().as_bytes().to_vec()));
        headers.push(("ce_time".into(), time.into_bytes()));
        let has_content_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if !has_content_type && !matches!(data, Data::Null | Data::Bytes(_)) {
            headers.push((
                "content-type".into(),
                self.data_content_type(&[]).as_bytes().to_vec(),
            ));
        }
        if let (Some(tp), false) = (
            self.traceparent,
            headers.iter().any(|(k, _)| k == "traceparent"),
        ) {
            headers.push(("traceparent".into(), tp.as_bytes().to_vec()));
        }
        Ok(())
    }

    fn spoofed(&self, i: usize, claimed: &Value) -> Result<(), Rejection> {
        match self.input.config.spoofed_source {
            SpoofedSource::Correct => Ok(()),
            SpoofedSource::Reject => Err(Rejection::new(
                RejectReason::SpoofedSource,
                format!(
                    "records[{i}]: claims source {claimed} but this workload is \"{}\"; nothing was published",
                    self.input.source
                ),
            )),
        }
    }
}

/// The record value read as JSON, for envelope detection and partition keys.
fn data_as_json(data: &Data) -> Option<Value> {
    match data {
        Data::Json(v) => Some(v.clone()),
        Data::Text(s) => crate::json::from_str(s).ok(),
        Data::Bytes(b) => crate::json::from_slice(b).ok(),
        Data::Null => None,
    }
}

/// The value at a JSON pointer into the data; a kept payload ([`Value::Raw`]) is scanned to
/// it, not read whole.
fn pointed(data: &Value, pointer: &str) -> Option<Value> {
    match data {
        Value::Raw(text) => json::raw_pointer(text, pointer),
        tree => tree.pointer(pointer).cloned(),
    }
}

/// An event the producer (or an earlier attempt) already wrapped: the seed's envelope (an `id`
/// and `data`, nothing but envelope fields) or, for CloudEvents, an object with `specversion`
/// and `id`.
fn is_prior_event(m: &Map<String, Value>, structured: bool) -> bool {
    let has_id = m.get("id").is_some_and(Value::is_string);
    if structured {
        has_id && m.contains_key("specversion")
    } else {
        has_id && m.contains_key("data") && m.keys().all(|k| ENVELOPE_KEYS.contains(&k.as_str()))
    }
}

fn decode_headers(headers: Option<Value>, at: At<'_>) -> Result<Vec<(String, Vec<u8>)>, Rejection> {
    let list = match headers {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => {
            return Err(shape(format!(
                "{at}: must be an array of {{\"key\", \"value\"}}"
            )))
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (j, h) in list.iter().enumerate() {
        let key = h.get("key").and_then(Value::as_str);
        let value = h
            .get("value")
            .and_then(Value::as_str)
            .and_then(base64_decode);
        match (key, value) {
            (Some(k), Some(v)) => out.push((k.to_string(), v)),
            _ => {
                return Err(shape(format!(
                    "{at}[{j}]: must be {{\"key\": string, \"value\": base64 string}}"
                )))
            }
        }
    }
    Ok(out)
}

fn set_header(headers: &mut Vec<(String, Vec<u8>)>, name: &str, value: Vec<u8>) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    headers.push((name.to_string(), value));
}
