//! Host glue for event stamping: recognizes produce requests bound for a bridge cluster, holds
//! their body until it is whole, has the core stamp it ([`crate::events::stamp`]) and forwards
//! the stamped body, or answers the refusal itself so nothing reaches the bridge. Time comes
//! from the host clock, id randomness from WASI `random_get`.
//!
//! Metrics (named in `metrics`; topic dots become `_`): `sidecar_events_records_stamped_total`,
//! `sidecar_events_envelopes_kept_total`, `sidecar_events_sources_corrected_total` by `topic`,
//! `sidecar_events_requests_rejected_total` by `topic` and `reason`. At most
//! [`MAX_METRIC_TOPICS`] topics per worker get their own; the rest count under `_other`.

use crate::sorted_map::SortedMap;
use std::cell::RefCell;

use super::dispatch::Action;

use crate::events::{self, EventsConfig, RejectReason, Rejection, StampInput, StampStats};
use crate::headers::RawHeaders;

use super::abi::{self, METRIC_COUNTER};
use super::metrics::{self, add};

pub const MAX_METRIC_TOPICS: usize = 64;
const OTHER_TOPIC: &str = "_other";

/// The `events` policy section as one worker runs it.
pub struct Events {
    config: EventsConfig,
    /// This workload's identity, from node metadata through the template; fixed per config.
    source: String,
    metrics: RefCell<SortedMap<String, TopicMetrics>>,
}

/// A produce request being held until its body is whole.
pub struct Publish {
    topic: String,
    content_type: Option<String>,
    traceparent: Option<String>,
}

pub enum HeadersStep {
    /// Not a produce request to a bridge: the filter's other work goes on as usual (with the
    /// request headers, if they were read).
    NotOurs(Option<RawHeaders>),
    /// Refused and answered locally; the stream stops here.
    Answered,
    /// A produce request: its body is held until whole and stamped. The request headers as
    /// read, before Content-Length was removed from the host's map (`RawHeaders::without`
    /// gives the map as the host now holds it), so a guard need not read them again.
    Publish(Publish, RawHeaders),
}

pub enum BodyStep {
    /// Return this action (buffering, or the refusal was answered).
    Hold(Action),
    /// The body was replaced by this stamped one; continue.
    Stamped(Vec<u8>),
}

impl Events {
    /// Reads the workload's identity from Envoy's node (Istio's `WORKLOAD_NAME`, `NAMESPACE`
    /// metadata; the node id).
    pub fn configure(config: Option<&EventsConfig>) -> Option<Events> {
        let config = config?.clone();
        // Envoy names the node `xds.node` (older builds: `node`).
        let read = |path: &[&str]| {
            let mut xds = vec!["xds"];
            xds.extend_from_slice(path);
            let get = |p: &[&str]| {
                abi::get_string_property(p)
                    .ok()
                    .flatten()
                    .filter(|s| !s.is_empty())
            };
            get(&xds).or_else(|| get(path))
        };
        let workload = read(&["node", "metadata", "WORKLOAD_NAME"]);
        let namespace = read(&["node", "metadata", "NAMESPACE"]);
        let node_id = read(&["node", "id"]);
        let source = config.source(
            workload.as_deref(),
            namespace.as_deref(),
            node_id.as_deref(),
        );
        log::info!(
            "events: stamping produce requests to {:?} as source \"{source}\"",
            config.bridges
        );
        Some(Events {
            config,
            source,
            metrics: RefCell::new(SortedMap::new()),
        })
    }

    fn count(&self, topic: &str, f: impl FnOnce(&TopicMetrics)) {
        let mut metrics = self.metrics.borrow_mut();
        let key = if metrics.contains_key(topic) || metrics.len() < MAX_METRIC_TOPICS {
            topic
        } else {
            OTHER_TOPIC
        };
        let entry = metrics
            .entry(key.to_string())
            .or_insert_with(|| TopicMetrics::define(key));
        f(entry);
    }

    fn reject(&self, topic: &str, rejection: &Rejection) -> Action {
        self.count(topic, |m| m.rejected(rejection.reason));
        log::info!(
            "events: produce to '{topic}' refused ({}): {}",
            rejection.status(),
            rejection.message
        );
        let headers = vec![(
            "content-type".to_string(),
            "application/vnd.kafka.v2+json".to_string(),
        )];
        match abi::send_local_response(
            rejection.status(),
            &headers,
            &rejection.body(),
            "events_rejected",
        ) {
            Ok(()) => Action::Pause,
            Err(e) => {
                // Could not answer: pause anyway, an unstamped body must never be forwarded.
                log::warn!("events: refusal not sent (host status {})", e.0);
                Action::Pause
            }
        }
    }
}

/// Request headers: is this a produce request to a bridge cluster? Refuses what can be
/// refused before the body (content type, declared size, no body at all).
pub fn request_headers(events: Option<&Events>, cluster: &str, end_of_stream: bool) -> HeadersStep {
    let Some(events) = events else {
        return HeadersStep::NotOurs(None);
    };
    if !events.config.is_bridge(cluster) {
        return HeadersStep::NotOurs(None);
    }
    // Raw: nothing decoded or allocated per header, only the few values read below.
    let Ok(headers) = abi::get_header_map_raw(abi::MAP_REQUEST_HEADERS) else {
        return HeadersStep::NotOurs(None);
    };
    // One pass over the map for every value this step reads.
    let [method, path, content_type, content_length, traceparent] = headers.values([
        ":method",
        ":path",
        "content-type",
        "content-length",
        "traceparent",
    ]);
    let Some(target) = events::produce_target(method.unwrap_or(""), path.unwrap_or("")) else {
        return HeadersStep::NotOurs(Some(headers));
    };
    let topic = target.topic;
    let content_type = content_type.map(str::to_string);
    if let Err(rejection) = events::format_of(content_type.as_deref()) {
        events.reject(&topic, &rejection);
        return HeadersStep::Answered;
    }
    let declared = content_length.and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(len) = declared.filter(|len| *len > events.config.max_body_bytes) {
        events.reject(
            &topic,
            &events::too_large(len, events.config.max_body_bytes),
        );
        return HeadersStep::Answered;
    }
    let publish = Publish {
        topic,
        content_type,
        traceparent: traceparent.map(str::to_string),
    };
    if !end_of_stream {
        // Envoy delivers no body to a filter whose headers are paused (it turns the pause into
        // StopAllIteration), so the headers go on now and the body is held instead. The stamped
        // body's length is unknown yet: drop Content-Length and let Envoy frame the body
        // (chunked to an HTTP/1.1 bridge). A refusal later resets the upstream stream before
        // the bridge has a whole body, so nothing is produced.
        if let Err(e) = abi::remove_header(abi::MAP_REQUEST_HEADERS, "content-length") {
            let rejection = Rejection::new(
                RejectReason::Unavailable,
                format!("request headers not writable (host status {})", e.0),
            );
            events.reject(&publish.topic, &rejection);
            return HeadersStep::Answered;
        }
    }
    if end_of_stream {
        // No body at all: the core explains what is missing.
        return match stamp(events, &publish, &[]) {
            Err(rejection) => {
                events.reject(&publish.topic, &rejection);
                HeadersStep::Answered
            }
            Ok(_) => HeadersStep::NotOurs(Some(headers)),
        };
    }
    HeadersStep::Publish(publish, headers)
}

/// Request body: buffer until whole, then stamp and swap it in (or refuse).
pub fn request_body(
    events: Option<&Events>,
    publish: &Publish,
    body_size: usize,
    end_of_stream: bool,
) -> BodyStep {
    let Some(events) = events else {
        return BodyStep::Hold(Action::Continue);
    };
    let max = events.config.max_body_bytes;
    if body_size > max {
        return BodyStep::Hold(events.reject(&publish.topic, &events::too_large(body_size, max)));
    }
    if !end_of_stream {
        return BodyStep::Hold(Action::Pause);
    }
    let body = match abi::get_buffer(abi::BUFFER_REQUEST_BODY, 0, body_size) {
        Ok(body) => body.unwrap_or_default(),
        Err(e) => {
            let rejection = Rejection::new(
                RejectReason::Unavailable,
                format!("request body unreadable (host status {})", e.0),
            );
            return BodyStep::Hold(events.reject(&publish.topic, &rejection));
        }
    };
    let stamped = match stamp(events, publish, &body) {
        Ok(stamped) => stamped,
        Err(rejection) => return BodyStep::Hold(events.reject(&publish.topic, &rejection)),
    };
    if let Err(e) = abi::set_buffer(abi::BUFFER_REQUEST_BODY, 0, body_size, &stamped.body) {
        let rejection = Rejection::new(
            RejectReason::Unavailable,
            format!("stamped body could not be forwarded (host status {})", e.0),
        );
        return BodyStep::Hold(events.reject(&publish.topic, &rejection));
    }
    events.count(&publish.topic, |m| m.stamped(&stamped.stats));
    BodyStep::Stamped(stamped.body)
}

fn stamp(events: &Events, publish: &Publish, body: &[u8]) -> Result<events::Stamped, Rejection> {
    let input = StampInput {
        config: &events.config,
        topic: &publish.topic,
        source: &events.source,
        content_type: publish.content_type.as_deref(),
        traceparent: publish.traceparent.as_deref(),
        now_ms: abi::now_ms().unwrap_or(0),
    };
    events::stamp(&input, body, &mut || abi::random_bytes::<16>().ok())
}

/// Per-topic counters; a counter that cannot be defined is a no-op.
struct TopicMetrics {
    stamped: Option<u32>,
    kept: Option<u32>,
    corrected: Option<u32>,
    rejected: [Option<u32>; RejectReason::ALL.len()],
}

impl TopicMetrics {
    fn define(topic: &str) -> Self {
        let topic = (metrics::TOPIC, topic);
        let counter = |name: &str| metrics::series(METRIC_COUNTER, name, &[topic]);
        TopicMetrics {
            stamped: counter(metrics::EVENTS_STAMPED),
            kept: counter(metrics::EVENTS_KEPT),
            corrected: counter(metrics::EVENTS_CORRECTED),
            rejected: RejectReason::ALL.map(|r| {
                metrics::series(
                    METRIC_COUNTER,
                    metrics::EVENTS_REJECTED,
                    &[topic, (metrics::REASON, r.as_str())],
                )
            }),
        }
    }

    fn stamped(&self, stats: &StampStats) {
        add(self.stamped, stats.records);
        add(self.kept, stats.kept);
        add(self.corrected, stats.corrected);
    }

    fn rejected(&self, reason: RejectReason) {
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            add(self.rejected[i], 1);
        }
    }
}
