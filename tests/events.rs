//! Events end to end: records POSTed through Envoy to the Kafka bridge land in Kafka stamped,
//! as the consumer group `order-processor-group` reads them. Real Envoy (`--concurrency 2`),
//! real broker (Tansu), the stand-in Strimzi bridge over librdkafka, a real consumer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use harness::events::*;
use serde_json::{json, Value};

const JSON: &str = "application/vnd.kafka.json.v2+json";
const BINARY: &str = "application/vnd.kafka.binary.v2+json";
const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
        && s.split('-').count() == 5
}

fn modes_policy() -> Value {
    json!({
        "bridges": ["kafka-bridge", "recorder"],
        "topics": {
            "order.created": {"partition-key": "/orderId"},
            "order.updated": {"mode": "cloudevents-structured", "type": "com.example.order.updated"},
            "payment.completed": {"mode": "cloudevents-binary"}
        }
    })
}

fn marker_seen(records: &[Consumed]) -> bool {
    records.iter().any(|r| {
        r.value
            .as_deref()
            .is_some_and(|v| String::from_utf8_lossy(v).contains("marker"))
    })
}

#[test]
fn each_envelope_mode_lands_as_the_consumer_group_reads_it() {
    let stack = Stack::start(modes_policy()).unwrap();
    let tp = [("traceparent", TP)];
    let r = stack
        .produce(
            "order.created",
            JSON,
            br#"{"records":[{"value":{"orderId":"o-1","total":42}}]}"#,
            &tp,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json().unwrap()["offsets"][0]["offset"].is_i64(),
        "{}",
        r.text()
    );
    let r = stack
        .produce(
            "order.updated",
            JSON,
            br#"{"records":[{"key":"o-1","value":{"orderId":"o-1","status":"paid"}}]}"#,
            &tp,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = stack
        .produce(
            "payment.completed",
            JSON,
            br#"{"records":[{"value":{"paymentId":"p-1"}}]}"#,
            &tp,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let got = consume(
        &stack.broker,
        Duration::from_secs(30),
        Duration::ZERO,
        |r| r.len() >= 3,
    )
    .unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    let on = |t: &str| got.iter().find(|r| r.topic == t).unwrap();

    // Envelope (the seed's shape), keyed by the data's orderId.
    let created = on("order.created");
    let v = created.json().unwrap();
    assert!(is_uuid_v4(v["id"].as_str().unwrap()), "{v}");
    assert_eq!(v["type"], "order.created");
    assert_eq!(v["source"], SOURCE);
    assert_eq!(v["version"], "1.0");
    assert_eq!(v["data"], json!({"orderId": "o-1", "total": 42}));
    assert_eq!(v["traceparent"], TP);
    assert_eq!(
        v["timestamp"].as_str().unwrap().len(),
        24,
        "RFC 3339 UTC millis: {v}"
    );
    assert_eq!(
        created.key.as_deref(),
        Some(&br#""o-1""#[..]),
        "json keys are JSON text, as Strimzi writes them"
    );

    // CloudEvents structured.
    let updated = on("order.updated");
    let v = updated.json().unwrap();
    assert_eq!(v["specversion"], "1.0");
    assert_eq!(v["type"], "com.example.order.updated");
    assert_eq!(v["source"], SOURCE);
    assert_eq!(v["datacontenttype"], "application/json");
    assert_eq!(v["data"]["status"], "paid");
    assert_eq!(v["traceparent"], TP);
    assert!(v["time"].is_string() && is_uuid_v4(v["id"].as_str().unwrap()));
    assert_eq!(
        updated.header("content-type").as_deref(),
        Some("application/cloudevents+json")
    );

    // CloudEvents binary: value untouched, attributes in headers.
    let paid = on("payment.completed");
    assert_eq!(paid.json().unwrap(), json!({"paymentId": "p-1"}));
    assert_eq!(paid.header("ce_specversion").as_deref(), Some("1.0"));
    assert!(is_uuid_v4(&paid.header("ce_id").unwrap()));
    assert_eq!(paid.header("ce_source").as_deref(), Some(SOURCE));
    assert_eq!(paid.header("ce_type").as_deref(), Some("payment.completed"));
    assert!(paid.header("ce_time").is_some());
    assert_eq!(paid.header("traceparent").as_deref(), Some(TP));

    assert_eq!(
        stack.envoy.counter(
            "sidecar_events_records_stamped_total",
            &[("topic", "order_created")],
            1
        ),
        1
    );
}

#[test]
fn a_service_cannot_publish_as_another() {
    let stack = Stack::start(modes_policy()).unwrap();
    let spoof = json!({"records": [
        {"value": {"id": "evt-1", "source": "payment-service.shop", "type": "payment.completed", "data": {"marker": 1}}},
        {"value": {"source": "payment-service.shop", "orderId": "o-2", "marker": 2}}
    ]});
    let r = stack
        .produce("order.created", JSON, spoof.to_string().as_bytes(), &[])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let h = |k: &str, v: &str| json!({"key": k, "value": BASE64.encode(v)});
    let binary_spoof = json!({"records": [{"value": {"marker": 3}, "headers": [h("ce_source", "payment-service.shop")]}]});
    let r = stack
        .produce(
            "payment.completed",
            JSON,
            binary_spoof.to_string().as_bytes(),
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let got = consume(
        &stack.broker,
        Duration::from_secs(30),
        Duration::ZERO,
        |r| r.len() >= 3,
    )
    .unwrap();
    assert_eq!(got.len(), 3);
    let created: Vec<Value> = got
        .iter()
        .filter(|r| r.topic == "order.created")
        .map(|r| r.json().unwrap())
        .collect();
    assert!(created.iter().all(|v| v["source"] == SOURCE), "{created:?}");
    assert!(
        created.iter().all(|v| v["type"] == "order.created"),
        "the type is the topic's, not the claim: {created:?}"
    );
    // A source field inside the payload (no envelope) is data, left alone.
    assert!(created
        .iter()
        .any(|v| v["data"]["source"] == "payment-service.shop"));
    let paid = got.iter().find(|r| r.topic == "payment.completed").unwrap();
    assert_eq!(paid.header("ce_source").as_deref(), Some(SOURCE));
    assert_eq!(
        paid.headers
            .iter()
            .filter(|(k, _)| k == "ce_source")
            .count(),
        1
    );
    assert_eq!(
        stack.envoy.counter(
            "sidecar_events_sources_corrected_total",
            &[("topic", "order_created")],
            1
        ),
        1
    );
    assert_eq!(
        stack.envoy.counter(
            "sidecar_events_sources_corrected_total",
            &[("topic", "payment_completed")],
            1
        ),
        1
    );
}

#[test]
fn a_spoofed_source_is_refused_when_the_policy_says_reject() {
    let stack =
        Stack::start(json!({"bridges": ["kafka-bridge"], "spoofed-source": "reject"})).unwrap();
    let spoof = json!({"records": [{"value": {"n": 1}}, {"value": {"id": "e", "source": "payment-service.shop", "data": {}}}]});
    let r = stack
        .produce("order.created", JSON, spoof.to_string().as_bytes(), &[])
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.json().unwrap()["message"]
        .as_str()
        .unwrap()
        .contains("payment-service.shop"));
    let r = stack
        .produce(
            "order.created",
            JSON,
            br#"{"records":[{"value":"marker"}]}"#,
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 200);
    let got = consume(
        &stack.broker,
        Duration::from_secs(30),
        Duration::from_millis(500),
        marker_seen,
    )
    .unwrap();
    assert_eq!(
        got.len(),
        1,
        "nothing of the refused request landed: {got:?}"
    );
}

#[test]
fn ids_are_unique_across_10k_records_sent_concurrently_through_both_workers() {
    let stack = Stack::start(json!({"bridges": ["kafka-bridge"]})).unwrap();
    const THREADS: usize = 16;
    const REQUESTS: usize = 50;
    const RECORDS: usize = 13; // 16 * 50 * 13 = 10_400 >= 10k
    let port = stack.envoy.port;
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..REQUESTS {
                    let records: Vec<Value> = (0..RECORDS)
                        .map(|j| json!({"value": {"t": t, "i": i, "j": j}}))
                        .collect();
                    let body = json!({"records": records}).to_string();
                    // A fresh connection per request: Envoy spreads them over its two workers.
                    let r = harness::request(
                        port,
                        "POST",
                        "kafka-bridge",
                        "/topics/order.created",
                        &[("content-type", JSON)],
                        body.as_bytes(),
                    )
                    .unwrap();
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            });
        }
    });
    let total = THREADS * REQUESTS * RECORDS;
    eprintln!("{total} records through Envoy in {:?}", started.elapsed());
    let got = consume(
        &stack.broker,
        Duration::from_secs(90),
        Duration::from_millis(500),
        |r| r.len() >= total,
    )
    .unwrap();
    assert_eq!(got.len(), total);
    let ids: HashSet<String> = got
        .iter()
        .map(|r| r.json().unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), total, "every id unique");
    assert!(ids.iter().all(|id| is_uuid_v4(id)));
    let workers: Vec<u64> = (0..2)
        .map(|w| {
            stack
                .envoy
                .stat(&format!(
                    "listener.127.0.0.1_{port}.worker_{w}.downstream_cx_total"
                ))
                .unwrap()
        })
        .collect();
    assert!(
        workers.iter().all(|n| *n > 0),
        "both workers served: {workers:?}"
    );
}

#[test]
fn an_enveloped_record_keeps_its_id_and_binary_values_keep_their_bytes() {
    let stack = Stack::start(modes_policy()).unwrap();
    let prior = json!({"id": "evt-42", "type": "order.created", "source": SOURCE,
                       "timestamp": "2024-01-01T00:00:00.000Z", "data": {"orderId": "o-42"}, "version": "1.0"});
    let r = stack
        .produce(
            "order.created",
            JSON,
            json!({"records": [{"value": prior}]})
                .to_string()
                .as_bytes(),
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let bytes: Vec<u8> = (0..=255u8).rev().collect();
    let body = json!({"records": [{"value": BASE64.encode(&bytes)}]}).to_string();
    let r = stack
        .produce("order.updated", BINARY, body.as_bytes(), &[])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = stack
        .produce("payment.completed", BINARY, body.as_bytes(), &[])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let got = consume(
        &stack.broker,
        Duration::from_secs(30),
        Duration::ZERO,
        |r| r.len() >= 3,
    )
    .unwrap();
    let on = |t: &str| got.iter().find(|r| r.topic == t).unwrap();
    assert_eq!(
        on("order.created").json().unwrap(),
        prior,
        "kept whole: same id, same timestamp"
    );
    let structured = on("order.updated").json().unwrap();
    assert_eq!(
        BASE64
            .decode(structured["data_base64"].as_str().unwrap())
            .unwrap(),
        bytes
    );
    assert_eq!(structured["datacontenttype"], "application/octet-stream");
    assert_eq!(
        on("payment.completed").value.as_deref(),
        Some(bytes.as_slice()),
        "binary mode: the bytes, untouched"
    );
    assert_eq!(
        stack.envoy.counter(
            "sidecar_events_envelopes_kept_total",
            &[("topic", "order_created")],
            1
        ),
        1
    );
}

#[test]
fn bad_input_gets_its_error_and_nothing_of_it_lands() {
    let stack = Stack::start(json!({"bridges": ["kafka-bridge"], "max-body-bytes": 2048})).unwrap();
    let big = format!(r#"{{"records":[{{"value":"{}"}}]}}"#, "x".repeat(4096));
    let cases: Vec<(&str, &[u8], u16, &str)> = vec![
        (JSON, b"{not json", 400, "body is not valid JSON"),
        (JSON, br#"{"value": 1}"#, 400, "unknown key \"value\""),
        (
            JSON,
            br#"{"records": []}"#,
            400,
            "records: must not be empty",
        ),
        (
            JSON,
            br#"{"records": [{"value": 1}, 2]}"#,
            400,
            "records[1]: must be an object",
        ),
        (
            BINARY,
            br#"{"records": [{"value": "not base64!"}]}"#,
            400,
            "records[0].value: not base64",
        ),
        (JSON, big.as_bytes(), 413, "body is"),
        (
            "application/json",
            br#"{"records": [{"value": 1}]}"#,
            415,
            "Content-Type must be",
        ),
        (
            "application/vnd.kafka.avro.v2+json",
            br#"{"records": [{"value": 1}]}"#,
            415,
            "Content-Type must be",
        ),
    ];
    for (ct, body, status, message) in &cases {
        let r = stack.produce("order.created", ct, body, &[]).unwrap();
        assert_eq!(
            r.status,
            *status,
            "{ct} {}: {}",
            String::from_utf8_lossy(body),
            r.text()
        );
        let error = r.json().unwrap();
        assert_eq!(error["error_code"], *status);
        assert!(
            error["message"].as_str().unwrap().starts_with(message),
            "{error}"
        );
    }
    let r = stack
        .produce(
            "order.created",
            JSON,
            br#"{"records":[{"value":"marker"}]}"#,
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 200);
    let got = consume(
        &stack.broker,
        Duration::from_secs(30),
        Duration::from_millis(500),
        marker_seen,
    )
    .unwrap();
    assert_eq!(got.len(), 1, "only the marker landed: {got:?}");
    assert_eq!(
        stack.envoy.counter(
            "sidecar_events_requests_rejected_total",
            &[("topic", "order_created"), ("reason", "invalid_shape")],
            4
        ),
        4
    );
}

#[test]
fn non_produce_bridge_traffic_passes_untouched() {
    let stack = Stack::start(modes_policy()).unwrap();
    // Through Envoy, the bridge's other endpoints answer as they do directly.
    let direct = harness::request(stack.bridge.port, "GET", "bridge", "/topics", &[], b"").unwrap();
    let via =
        harness::request(stack.envoy.port, "GET", "kafka-bridge", "/topics", &[], b"").unwrap();
    assert_eq!((via.status, via.text()), (direct.status, direct.text()));
    // Bodies of non-produce requests reach a bridge cluster byte for byte.
    stack
        .recorder
        .set_default(harness::Action::respond(200, "{}"));
    let consumer_api = br#"{"name": "c1", "format": "json", "not": "an envelope"}"#;
    for (method, path) in [
        ("POST", "/consumers/order-processor-group"),
        ("PUT", "/topics/order.created"),
        ("POST", "/topics/order.created/extra"),
    ] {
        let r = harness::request(
            stack.envoy.port,
            method,
            "recorder",
            path,
            &[("content-type", JSON)],
            consumer_api,
        )
        .unwrap();
        assert_eq!(r.status, 200);
        let got = stack.recorder.last().unwrap();
        assert_eq!((got.method.as_str(), got.path.as_str()), (method, path));
        assert_eq!(
            got.body,
            consumer_api.to_vec(),
            "{method} {path} passed untouched"
        );
    }
    // And a produce request to that same cluster is stamped; the client's Content-Length
    // (of the unstamped body) does not travel with it: Envoy frames the stamped body.
    let r = harness::request(
        stack.envoy.port,
        "POST",
        "recorder",
        "/topics/order.created",
        &[("content-type", JSON)],
        br#"{"records":[{"value":1}]}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let got = stack.recorder.last().unwrap();
    let stamped: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(stamped["records"][0]["value"]["source"], SOURCE);
    if let Some(length) = got.header("content-length") {
        assert_eq!(length, got.body.len().to_string());
    } else {
        assert_eq!(got.header("transfer-encoding"), Some("chunked"));
    }
}

/// What `make run` runs: the shipped bootstrap (cluster `kafka-bridge`) with envoy/policy.json
/// stamps produce requests bound to that cluster with the node's identity (`checkout.shop`).
/// The harness's `Services::bridge` stands in for the bridge here; the demo points the cluster
/// at a real one.
#[test]
fn shipped_bootstrap_and_policy_stamp_what_goes_to_the_kafka_bridge() {
    let text = std::fs::read_to_string(harness::repo_root().join("envoy/policy.json")).unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    let services = harness::Services::start().unwrap();
    let envoy = harness::Envoy::start(&services, &policy).unwrap();
    services.bridge.push(harness::Action::respond(
        200,
        r#"{"offsets":[{"partition":0,"offset":0}]}"#,
    ));
    let r = envoy
        .request(
            "POST",
            harness::KAFKA_BRIDGE,
            "/topics/order.created",
            &[("content-type", JSON)],
            br#"{"records":[{"value":{"orderId":"o-1001"}}]}"#,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let got = services.bridge.last().unwrap();
    let stamped: Value = serde_json::from_slice(&got.body).unwrap();
    let record = &stamped["records"][0];
    assert_eq!(record["value"]["source"], "checkout.shop", "{stamped}");
    assert_eq!(record["value"]["type"], "order.created");
    assert_eq!(record["value"]["version"], "1.0");
    assert_eq!(record["value"]["data"], json!({"orderId": "o-1001"}));
    assert_eq!(record["key"], "o-1001", "partition-key /orderId: {stamped}");
    // Per-topic metrics, with the bootstrap's stats_tags turning them into labels (once the
    // filter's tick has handed the count to Envoy).
    assert_eq!(
        envoy.counter(
            "sidecar_events_records_stamped_total",
            &[("topic", "order.created")],
            1
        ),
        1
    );
    let prometheus = envoy.admin_get("/stats/prometheus").unwrap();
    let line = r#"sidecar_events_records_stamped_total{topic="order_created"} 1"#;
    assert!(
        prometheus.lines().any(|l| l == line),
        "{line} missing from /stats/prometheus"
    );
}

/// ~7,000 small records: 104 KB as sent, over 1 MB once stamped. The limit holds for what is
/// forwarded: the filter's JSON 413, and no record counted as stamped (before: Envoy's plain
/// 413 after the filter had counted every record).
#[test]
fn a_batch_over_the_limit_once_stamped_gets_the_filters_413_and_is_not_counted() {
    let stack = Stack::start(json!({"bridges": ["kafka-bridge"]})).unwrap();
    let records: Vec<Value> = (0..7000).map(|i| json!({"value": i})).collect();
    let body = json!({ "records": records }).to_string();
    assert!(body.len() < 110_000, "{}", body.len());
    let r = stack
        .produce("order.created", JSON, body.as_bytes(), &[])
        .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    let error = r.json().unwrap_or_else(|e| panic!("{e}: {}", r.text()));
    assert_eq!(error["error_code"], 413);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("once stamped, over the limit"),
        "{error}"
    );
    let stamped = stack.envoy.counter(
        "sidecar_events_records_stamped_total",
        &[("topic", "order.created")],
        0,
    );
    assert_eq!(stamped, 0, "nothing forwarded, nothing counted");
    // A batch that fits once stamped goes through.
    let records: Vec<Value> = (0..100).map(|i| json!({"value": i})).collect();
    let body = json!({ "records": records }).to_string();
    let r = stack
        .produce("order.created", JSON, body.as_bytes(), &[])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A bridge cluster that is also guarded (a retry on `recorder`): the events step's read of the
/// request headers is the one the guard keeps for a replay (issue 13: each read of the map is a
/// buffer handed into the module). The replay carries the stamped body — the same event id —
/// and no Content-Length of the unstamped body, nor the client's router headers.
#[test]
fn a_retried_produce_request_replays_the_stamped_body_with_the_headers_read_once() {
    let recorder = harness::Upstream::start("recorder").unwrap();
    let policy = json!({
        "resilience4j": {"retry": {"instances": {"recorder": {"max-attempts": 2, "wait-duration": "0ms"}}}},
        "events": modes_policy()
    });
    // The kafka-bridge cluster is not used here: any port.
    let envoy = EventsEnvoy::start(recorder.port(), recorder.port(), &policy).unwrap();
    recorder.push(harness::Action::status(503));
    recorder.set_default(harness::Action::respond(200, "{}"));
    let body = br#"{"records":[{"value":{"orderId":"o-9","note":"n"}}]}"#;
    let r = harness::request(
        envoy.port,
        "POST",
        "recorder",
        "/topics/order.created",
        &[
            ("content-type", JSON),
            ("x-envoy-max-retries", "5"),
            // A POST is replayed only with an idempotency key (or retry-non-idempotent).
            ("idempotency-key", "order-o-9"),
        ],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let got = recorder.requests();
    assert_eq!(got.len(), 2, "the first attempt and one replay");
    let ids: Vec<Value> = got
        .iter()
        .map(|request| {
            assert_eq!(request.header("x-envoy-max-retries"), None, "stripped");
            if let Some(length) = request.header("content-length") {
                assert_eq!(length, request.body.len().to_string());
            }
            let stamped: Value = serde_json::from_slice(&request.body).unwrap();
            assert_eq!(stamped["records"][0]["value"]["source"], SOURCE);
            assert_eq!(stamped["records"][0]["value"]["data"]["orderId"], "o-9");
            stamped["records"][0]["value"]["id"].clone()
        })
        .collect();
    assert!(ids[0].is_string());
    assert_eq!(ids[0], ids[1], "the replay is the stamped body");
    assert_ne!(got[0].body, body.to_vec());
}
