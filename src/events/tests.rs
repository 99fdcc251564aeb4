//! The envelope, as the spec says it: one test per promise.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::json;
use crate::json::Value;

use super::codec::{base64_decode, base64_encode};
use super::*;

const NOW: u64 = 1_714_566_896_789; // 2024-05-01T12:34:56.789Z
const TIME: &str = "2024-05-01T12:34:56.789Z";
const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn config(extra: Value) -> EventsConfig {
    let mut v = json!({"bridges": ["kafka-bridge"]});
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    crate::policy::parse_events(&v, "events").unwrap()
}

/// Random bytes that count up, so ids are predictable: the n-th id ends in n.
fn counter() -> impl FnMut() -> Option<[u8; 16]> {
    let mut n = 0u8;
    move || {
        n += 1;
        let mut b = [0u8; 16];
        b[15] = n;
        Some(b)
    }
}

fn id(n: u8) -> String {
    format!("00000000-0000-4000-8000-0000000000{n:02x}")
}

struct Call<'a> {
    config: EventsConfig,
    topic: &'a str,
    content_type: &'a str,
    traceparent: Option<&'a str>,
}

impl<'a> Call<'a> {
    fn json(topic: &'a str) -> Self {
        Call {
            config: config(json!({})),
            topic,
            content_type: produce::JSON_V2,
            traceparent: None,
        }
    }
    fn with(mut self, extra: Value) -> Self {
        self.config = config(extra);
        self
    }
    fn content_type(mut self, ct: &'a str) -> Self {
        self.content_type = ct;
        self
    }
    fn run(&self, body: &Value) -> Result<(Value, StampStats), Rejection> {
        self.run_raw(body.to_string().as_bytes())
    }
    fn run_raw(&self, body: &[u8]) -> Result<(Value, StampStats), Rejection> {
        let input = StampInput {
            config: &self.config,
            topic: self.topic,
            source: "order-service.shop",
            content_type: Some(self.content_type),
            traceparent: self.traceparent,
            now_ms: NOW,
        };
        let mut random = counter();
        let out = stamp(&input, body, &mut random)?;
        Ok((crate::json::from_slice(&out.body).unwrap(), out.stats))
    }
}

fn header(record: &Value, name: &str) -> Option<String> {
    record["headers"]
        .as_array()?
        .iter()
        .find(|h| h["key"] == name)
        .map(|h| String::from_utf8(base64_decode(h["value"].as_str().unwrap()).unwrap()).unwrap())
}

#[test]
fn produce_endpoints_are_post_topics_and_post_topic_partitions() {
    let t = |m, p| produce_target(m, p);
    assert_eq!(
        t("POST", "/topics/order.created"),
        Some(ProduceTarget {
            topic: "order.created".into(),
            partition: None
        })
    );
    assert_eq!(
        t("POST", "/topics/order.created?x=1"),
        Some(ProduceTarget {
            topic: "order.created".into(),
            partition: None
        })
    );
    assert_eq!(
        t("POST", "/topics/order.created/partitions/2"),
        Some(ProduceTarget {
            topic: "order.created".into(),
            partition: Some(2)
        })
    );
    assert_eq!(
        t("GET", "/topics/order.created"),
        None,
        "reads pass untouched"
    );
    assert_eq!(
        t("POST", "/consumers/order-processor-group"),
        None,
        "the consumer API passes untouched"
    );
    assert_eq!(t("POST", "/topics/order.created/partitions"), None);
    assert_eq!(t("POST", "/topics/order.created/partitions/x"), None);
    assert_eq!(t("POST", "/topics/"), None);
    assert_eq!(t("POST", "/topics/a%20b"), None);
}

#[test]
fn content_types_are_the_bridge_v2_formats() {
    assert_eq!(
        format_of(Some("application/vnd.kafka.json.v2+json")),
        Ok(Format::Json)
    );
    assert_eq!(
        format_of(Some("application/vnd.kafka.binary.v2+json; charset=utf-8")),
        Ok(Format::Binary)
    );
    assert_eq!(
        format_of(Some("Application/Vnd.Kafka.Text.V2+Json")),
        Ok(Format::Text)
    );
    let e = format_of(Some("application/json")).unwrap_err();
    assert_eq!(e.status(), 415);
    assert!(
        e.message.ends_with("got \"application/json\""),
        "{}",
        e.message
    );
    assert_eq!(
        format_of(Some("application/vnd.kafka.avro.v2+json"))
            .unwrap_err()
            .status(),
        415
    );
    assert_eq!(format_of(None).unwrap_err().status(), 415);
}

#[test]
fn a_plain_json_value_becomes_the_seed_envelope() {
    let (out, stats) = Call::json("order.created")
        .run(&json!({"records": [{"key": "o-1", "value": {"orderId": "o-1", "total": 42}}]}))
        .unwrap();
    assert_eq!(
        out,
        json!({"records": [{"key": "o-1", "value": {
            "id": id(1), "type": "order.created", "source": "order-service.shop",
            "timestamp": TIME, "data": {"orderId": "o-1", "total": 42}, "version": "1.0"
        }}]})
    );
    assert_eq!(
        stats,
        StampStats {
            records: 1,
            kept: 0,
            corrected: 0
        }
    );
}

#[test]
fn every_record_gets_its_own_id_and_partition_and_headers_are_kept() {
    let (out, stats) = Call::json("order.updated")
        .run(&json!({"records": [
            {"value": 1, "partition": 2, "headers": [{"key": "k", "value": base64_encode(b"v")}]},
            {"value": "two"}
        ]}))
        .unwrap();
    let r = out["records"].as_array().unwrap();
    assert_eq!(r[0]["value"]["id"], id(1));
    assert_eq!(r[1]["value"]["id"], id(2));
    assert_eq!(r[0]["partition"], 2);
    assert_eq!(header(&r[0], "k").as_deref(), Some("v"));
    assert_eq!(r[1]["value"]["data"], "two");
    assert_eq!(stats.records, 2);
}

#[test]
fn the_type_comes_from_the_topic_mapping_never_from_the_producer() {
    let call = Call::json("order.created")
        .with(json!({"topics": {"order.created": {"type": "com.example.order.created"}}}));
    let (out, _) = call
        .run(&json!({"records": [{"value": {"a": 1}}]}))
        .unwrap();
    assert_eq!(
        out["records"][0]["value"]["type"],
        "com.example.order.created"
    );
    let mislabeled =
        json!({"id": "e-1", "type": "payment.completed", "data": {}, "version": "1.0"});
    let (out, _) = call
        .run(&json!({"records": [{"value": mislabeled}]}))
        .unwrap();
    assert_eq!(
        out["records"][0]["value"]["type"],
        "com.example.order.created"
    );
}

#[test]
fn an_already_enveloped_record_keeps_its_id_and_timestamp() {
    let prior = json!({"id": "evt-7", "type": "order.created", "source": "order-service.shop",
                       "timestamp": "2024-01-01T00:00:00.000Z", "data": {"orderId": "o-7"}, "version": "1.0"});
    let (out, stats) = Call::json("order.created")
        .run(&json!({"records": [{"value": prior}]}))
        .unwrap();
    assert_eq!(
        out["records"][0]["value"], prior,
        "stamping is idempotent: a retried publish keeps its id"
    );
    assert_eq!(
        stats,
        StampStats {
            records: 1,
            kept: 1,
            corrected: 0
        }
    );
    // The output of a stamp, stamped again (a retry by anyone), is unchanged.
    let (once, _) = Call::json("order.created")
        .run(&json!({"records": [{"value": {"x": 1}}]}))
        .unwrap();
    let (twice, _) = Call::json("order.created").run(&once).unwrap();
    assert_eq!(once, twice);
}

#[test]
fn a_bad_producer_timestamp_is_replaced_by_the_host_clock() {
    let prior = json!({"id": "evt-7", "timestamp": "yesterday", "data": 1});
    let (out, _) = Call::json("order.created")
        .run(&json!({"records": [{"value": prior}]}))
        .unwrap();
    assert_eq!(out["records"][0]["value"]["timestamp"], TIME);
    assert_eq!(out["records"][0]["value"]["id"], "evt-7");
}

#[test]
fn an_object_with_other_fields_is_data_not_an_envelope() {
    let payload = json!({"id": "o-1", "data": "x", "customer": "c-1"});
    let (out, stats) = Call::json("order.created")
        .run(&json!({"records": [{"value": payload}]}))
        .unwrap();
    assert_eq!(out["records"][0]["value"]["data"], payload);
    assert_eq!(out["records"][0]["value"]["id"], id(1));
    assert_eq!(stats.kept, 0);
}

#[test]
fn a_record_claiming_another_source_is_corrected_and_counted() {
    let spoof = json!({"id": "evt-1", "source": "payment-service.shop", "data": {}});
    let (out, stats) = Call::json("order.created")
        .run(&json!({"records": [{"value": spoof}]}))
        .unwrap();
    assert_eq!(out["records"][0]["value"]["source"], "order-service.shop");
    assert_eq!(stats.corrected, 1);
}

#[test]
fn a_record_claiming_another_source_is_rejected_when_the_policy_says_so() {
    let call = Call::json("order.created").with(json!({"spoofed-source": "reject"}));
    let spoof = json!({"id": "evt-1", "source": "payment-service.shop", "data": {}});
    let e = call
        .run(&json!({"records": [{"value": 1}, {"value": spoof}]}))
        .unwrap_err();
    assert_eq!(e.status(), 403);
    assert_eq!(e.reason, RejectReason::SpoofedSource);
    assert!(
        e.message
            .starts_with("records[1]: claims source \"payment-service.shop\""),
        "{}",
        e.message
    );
    // Its own source is no spoof.
    let own = json!({"id": "evt-1", "source": "order-service.shop", "data": {}});
    assert!(call.run(&json!({"records": [{"value": own}]})).is_ok());
}

#[test]
fn binary_values_keep_their_bytes_as_base64_with_the_content_type_said() {
    let bytes: Vec<u8> = (0..=255u8).collect();
    let call = Call::json("order.created").content_type(produce::BINARY_V2);
    let (out, _) = call
        .run(&json!({"records": [{"key": base64_encode(b"k"), "value": base64_encode(&bytes)}]}))
        .unwrap();
    let record = &out["records"][0];
    assert_eq!(record["key"], base64_encode(b"k"));
    let envelope: Value =
        crate::json::from_slice(&base64_decode(record["value"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(envelope["datacontenttype"], "application/octet-stream");
    assert_eq!(envelope["dataencoding"], "base64");
    assert_eq!(
        base64_decode(envelope["data"].as_str().unwrap()).unwrap(),
        bytes
    );
    assert_eq!(envelope["id"], id(1));
}

#[test]
fn binary_json_bytes_that_are_an_envelope_keep_their_id() {
    let prior = json!({"id": "evt-9", "data": {"a": 1}, "version": "1.0"});
    let call = Call::json("order.created").content_type(produce::BINARY_V2);
    let (out, stats) = call
        .run(&json!({"records": [{"value": base64_encode(prior.to_string().as_bytes())}]}))
        .unwrap();
    let envelope: Value = crate::json::from_slice(
        &base64_decode(out["records"][0]["value"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(envelope["id"], "evt-9");
    assert_eq!(stats.kept, 1);
}

#[test]
fn text_values_are_wrapped_and_stay_strings() {
    let call = Call::json("order.created").content_type(produce::TEXT_V2);
    let (out, _) = call
        .run(&json!({"records": [{"key": "o-1", "value": "hello"}]}))
        .unwrap();
    let envelope: Value =
        crate::json::from_str(out["records"][0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(envelope["data"], "hello");
    assert_eq!(envelope["datacontenttype"], "text/plain");
    assert_eq!(out["records"][0]["key"], "o-1");
}

#[test]
fn cloudevents_structured_mode() {
    let mut call = Call::json("order.created")
        .with(json!({"topics": {"order.created": {"mode": "cloudevents-structured"}}}));
    call.traceparent = Some(TP);
    let (out, _) = call
        .run(&json!({"records": [{"value": {"orderId": "o-1"}}]}))
        .unwrap();
    let record = &out["records"][0];
    assert_eq!(
        record["value"],
        json!({"specversion": "1.0", "id": id(1), "source": "order-service.shop", "type": "order.created",
               "time": TIME, "datacontenttype": "application/json", "data": {"orderId": "o-1"}, "traceparent": TP})
    );
    assert_eq!(
        header(record, "content-type").as_deref(),
        Some("application/cloudevents+json")
    );
}

#[test]
fn cloudevents_structured_binary_data_goes_to_data_base64() {
    let call = Call::json("t")
        .with(json!({"mode": "cloudevents-structured"}))
        .content_type(produce::BINARY_V2);
    let (out, _) = call
        .run(&json!({"records": [{"value": base64_encode(&[0, 159, 146, 150])}]}))
        .unwrap();
    let event: Value = crate::json::from_slice(
        &base64_decode(out["records"][0]["value"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(event["data_base64"], base64_encode(&[0, 159, 146, 150]));
    assert!(event.get("data").is_none());
}

#[test]
fn cloudevents_binary_mode_leaves_the_value_and_adds_ce_headers() {
    let mut call = Call::json("payment.completed")
        .with(json!({"topics": {"payment.completed": {"mode": "cloudevents-binary"}}}));
    call.traceparent = Some(TP);
    let (out, _) = call
        .run(&json!({"records": [{"value": {"paymentId": "p-1"}}]}))
        .unwrap();
    let record = &out["records"][0];
    assert_eq!(record["value"], json!({"paymentId": "p-1"}));
    assert_eq!(header(record, "ce_specversion").as_deref(), Some("1.0"));
    assert_eq!(header(record, "ce_id"), Some(id(1)));
    assert_eq!(
        header(record, "ce_source").as_deref(),
        Some("order-service.shop")
    );
    assert_eq!(
        header(record, "ce_type").as_deref(),
        Some("payment.completed")
    );
    assert_eq!(header(record, "ce_time").as_deref(), Some(TIME));
    assert_eq!(
        header(record, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(header(record, "traceparent").as_deref(), Some(TP));
}

#[test]
fn cloudevents_binary_keeps_a_prior_ce_id_and_corrects_ce_source() {
    let call = Call::json("t").with(json!({"mode": "cloudevents-binary"}));
    let h = |k: &str, v: &str| json!({"key": k, "value": base64_encode(v.as_bytes())});
    let (out, stats) = call
        .run(&json!({"records": [{"value": 1, "headers": [h("ce_id", "evt-3"), h("ce_source", "someone-else")]}]}))
        .unwrap();
    let record = &out["records"][0];
    assert_eq!(header(record, "ce_id").as_deref(), Some("evt-3"));
    assert_eq!(
        header(record, "ce_source").as_deref(),
        Some("order-service.shop")
    );
    assert_eq!(
        record["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["key"] == "ce_id")
            .count(),
        1
    );
    assert_eq!(
        stats,
        StampStats {
            records: 1,
            kept: 1,
            corrected: 1
        }
    );
}

#[test]
fn a_traceparent_travels_in_the_envelope_and_a_malformed_one_does_not() {
    let mut call = Call::json("order.created");
    call.traceparent = Some(TP);
    let (out, _) = call.run(&json!({"records": [{"value": 1}]})).unwrap();
    assert_eq!(out["records"][0]["value"]["traceparent"], TP);
    call.traceparent = Some("garbage");
    let (out, _) = call.run(&json!({"records": [{"value": 1}]})).unwrap();
    assert!(out["records"][0]["value"].get("traceparent").is_none());
}

#[test]
fn the_partition_key_comes_from_the_data_when_the_record_has_none() {
    let call = Call::json("order.created")
        .with(json!({"topics": {"order.created": {"partition-key": "/orderId"}}}));
    let (out, _) = call
        .run(&json!({"records": [{"value": {"orderId": "o-1"}}, {"key": "mine", "value": {"orderId": "o-2"}}, {"value": {"x": 1}}]}))
        .unwrap();
    assert_eq!(out["records"][0]["key"], "o-1");
    assert_eq!(
        out["records"][1]["key"], "mine",
        "a key the producer set wins"
    );
    assert!(
        out["records"][2].get("key").is_none(),
        "no such field: no key"
    );
    let binary = Call {
        content_type: produce::BINARY_V2,
        ..call
    };
    let (out, _) = binary
        .run(&json!({"records": [{"value": base64_encode(br#"{"orderId":42}"#)}]}))
        .unwrap();
    assert_eq!(out["records"][0]["key"], base64_encode(b"42"));
}

#[test]
fn bad_input_is_refused_whole_with_a_message_naming_what_is_wrong() {
    let call = Call::json("order.created");
    let cases: Vec<(&[u8], u16, &str)> = vec![
        (b"{not json", 400, "body is not valid JSON"),
        (b"[]", 400, "body must be an object"),
        (
            br#"{"records": {}}"#,
            400,
            "records: required, an array of records",
        ),
        (br#"{"records": []}"#, 400, "records: must not be empty"),
        (
            br#"{"records": [{"value": 1}], "extra": 1}"#,
            400,
            "unknown key \"extra\"",
        ),
        (
            br#"{"records": [{"value": 1}, 7]}"#,
            400,
            "records[1]: must be an object",
        ),
        (
            br#"{"records": [{"value": 1, "partition": "x"}]}"#,
            400,
            "records[0].partition: must be a non-negative integer",
        ),
        (
            br#"{"records": [{"value": 1, "headers": [{"key": "a", "value": "!!"}]}]}"#,
            400,
            "records[0].headers[0]: must be",
        ),
    ];
    for (body, status, message) in cases {
        let e = call.run_raw(body).unwrap_err();
        assert_eq!(e.status(), status, "{}", String::from_utf8_lossy(body));
        assert!(
            e.message.starts_with(message),
            "{} -> {}",
            String::from_utf8_lossy(body),
            e.message
        );
        let json: Value = crate::json::from_slice(&e.body()).unwrap();
        assert_eq!(json["error_code"], status);
    }
    let binary = Call::json("t").content_type(produce::BINARY_V2);
    let e = binary
        .run(&json!({"records": [{"value": "not base64!"}]}))
        .unwrap_err();
    assert_eq!(
        (e.status(), e.message.as_str()),
        (
            400,
            "records[0].value: not base64, as application/vnd.kafka.binary.v2+json requires"
        )
    );
    let text = Call::json("t").content_type(produce::TEXT_V2);
    assert_eq!(
        text.run(&json!({"records": [{"value": {"a": 1}}]}))
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        Call::json("t")
            .content_type("text/plain")
            .run(&json!({"records": [{"value": 1}]}))
            .unwrap_err()
            .status(),
        415
    );
}

#[test]
fn a_body_over_the_limit_is_413() {
    let call = Call::json("t").with(json!({"max-body-bytes": 64}));
    let e = call.run_raw(&[b' '; 65]).unwrap_err();
    assert_eq!(e.status(), 413);
    assert_eq!(
        e.message,
        "body is 65 bytes, over the limit of 64 bytes (events.max-body-bytes)"
    );
}

#[test]
fn without_random_bytes_nothing_is_published() {
    let config = config(json!({}));
    let input = StampInput {
        config: &config,
        topic: "t",
        source: "s",
        content_type: Some(produce::JSON_V2),
        traceparent: None,
        now_ms: NOW,
    };
    let e = stamp(&input, br#"{"records":[{"value":1}]}"#, &mut || None).unwrap_err();
    assert_eq!(e.status(), 503);
}

fn events_config(section: &Value) -> EventsConfig {
    crate::policy::parse_events(section, "events").unwrap()
}

#[test]
fn source_comes_from_node_metadata_through_the_template() {
    let c = events_config(&json!({"bridges": ["b"]}));
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
    let c = events_config(&json!({"bridges": ["b"], "source": "//{namespace}/{workload}"}));
    assert_eq!(
        c.source(Some("order-service"), Some("shop"), None),
        "//shop/order-service"
    );
}

#[test]
fn the_limit_holds_for_the_stamped_body() {
    // 200 small records: ~4 KB in, ~30 KB once stamped.
    let records: Vec<Value> = (0..200).map(|i| json!({"value": i})).collect();
    let body = json!({ "records": records }).to_string();
    let limit = body.len() * 2;
    let config = config(json!({ "max-body-bytes": limit }));
    let input = StampInput {
        config: &config,
        topic: "t",
        source: "s",
        content_type: Some(produce::JSON_V2),
        traceparent: None,
        now_ms: NOW,
    };
    let e = stamp(&input, body.as_bytes(), &mut counter()).unwrap_err();
    assert_eq!(e.status(), 413);
    assert!(
        e.message.contains("once stamped, over the limit of"),
        "{}",
        e.message
    );
    // Within the limit once stamped: forwarded, and never larger than the limit.
    let config = self::config(json!({ "max-body-bytes": 1 << 20 }));
    let input = StampInput {
        config: &config,
        ..input
    };
    let stamped = stamp(&input, body.as_bytes(), &mut counter()).unwrap();
    assert!(stamped.body.len() <= 1 << 20);
}
