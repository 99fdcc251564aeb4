//! A small Kafka HTTP bridge: the Strimzi Kafka Bridge's produce API over a real Kafka client
//! (librdkafka, through the `rdkafka` crate). It stands in for the Strimzi bridge — which users
//! deploy next to their services — in the tests and `make run`, where the Java bridge cannot be
//! installed. Only the produce side is implemented:
//!
//! - `POST /topics/{topic}` and `POST /topics/{topic}/partitions/{partition}` with
//!   `application/vnd.kafka.{json,binary,text}.v2+json` bodies
//!   `{"records": [{"key", "value", "partition", "headers": [{"key", "value": base64}]}]}`:
//!   json keys/values are written as their JSON text, binary ones base64-decoded, text ones as
//!   UTF-8. Answers `200 {"offsets": [{"partition", "offset"} | {"error_code", "message"}]}`
//!   once every record is acknowledged by the broker (or failed).
//! - `GET /topics` (topic names), `GET /healthy` and `GET /ready` (204), `GET /` (version).
//! - Errors as Strimzi writes them, `{"error_code": N, "message": "..."}`: 404 unknown topic or
//!   path, 415 unsupported Content-Type, 422 a body that is not a valid record list (400 for
//!   unparsable JSON), 405 wrong method.
//!
//! Usage: `kafka-bridge --listen 127.0.0.1:8080 --bootstrap 127.0.0.1:9092`. Prints
//! `kafka-bridge listening on http://ADDR` once it serves.

mod bridge;

fn main() {
    std::process::exit(bridge::main());
}
