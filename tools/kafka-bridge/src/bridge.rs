//! The bridge proper: a thread-per-connection HTTP/1.1 server and an rdkafka producer.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use serde_json::{json, Value};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MAX_HEADER_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 64 << 20;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

type Delivery = Result<(i32, i64), (i32, String)>;

struct Ctx;
impl ClientContext for Ctx {}
impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<SyncSender<Delivery>>;
    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(kafka_error_code(e)),
        };
        let _ = tx.send(outcome);
    }
}

fn kafka_error_code(e: &KafkaError) -> (i32, String) {
    let code = match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::UnknownTopic,
        ) => 404,
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => 413,
        _ => 500,
    };
    (code, e.to_string())
}

struct Bridge {
    producer: ThreadedProducer<Ctx>,
    /// topic -> partition count, refreshed on a miss.
    topics: RwLock<HashMap<String, i32>>,
}

pub fn main() -> i32 {
    let mut listen = "127.0.0.1:8080".to_string();
    let mut bootstrap =
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--bootstrap", Some(v)) => bootstrap = v,
            _ => {
                eprintln!("usage: kafka-bridge [--listen ADDR] [--bootstrap HOST:PORT]");
                return 2;
            }
        }
    }
    let producer: ThreadedProducer<Ctx> = match ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .set("enable.idempotence", "false")
        .create_with_context(Ctx)
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kafka-bridge: producer: {e}");
            return 1;
        }
    };
    let bridge = Arc::new(Bridge {
        producer,
        topics: RwLock::new(HashMap::new()),
    });
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kafka-bridge: bind {listen}: {e}");
            return 1;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen);
    println!("kafka-bridge listening on http://{addr} (Kafka at {bootstrap})");
    let _ = std::io::stdout().flush();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let bridge = bridge.clone();
        std::thread::spawn(move || serve(stream, &bridge));
    }
    0
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

const V2: &str = "application/vnd.kafka.v2+json";

fn error(status: u16, message: impl Into<String>) -> Response {
    let body = json!({"error_code": status, "message": message.into()})
        .to_string()
        .into_bytes();
    Response {
        status,
        content_type: V2,
        body,
    }
}

fn serve(stream: TcpStream, bridge: &Bridge) {
    let _ = stream.set_nodelay(true);
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = write_half;
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(message) => {
                let _ = write_response(&mut writer, &error(400, message), true);
                return;
            }
        };
        let close = request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let response = route(bridge, &request);
        if write_response(&mut writer, &response, close).is_err() || close {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>, String> {
    let mut line = String::new();
    let mut header_bytes = 0;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(None),
            Ok(_) if line.trim().is_empty() => continue, // tolerate stray CRLF between requests
            Ok(_) => break,
            Err(_) => return Ok(None),
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err("malformed request line".into());
    };
    let (method, path) = (method.to_string(), path.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        let n = reader.read_line(&mut h).map_err(|e| e.to_string())?;
        header_bytes += n;
        if n == 0 || header_bytes > MAX_HEADER_BYTES {
            return Err("headers too large or truncated".into());
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size_line = String::new();
            reader
                .read_line(&mut size_line)
                .map_err(|e| e.to_string())?;
            let size_hex = size_line.trim().split(';').next().unwrap_or("");
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size".to_string())?;
            if request.body.len() + size > MAX_BODY_BYTES {
                return Err("body too large".into());
            }
            if size == 0 {
                // trailers until an empty line
                loop {
                    let mut t = String::new();
                    if reader.read_line(&mut t).map_err(|e| e.to_string())? == 0
                        || t.trim().is_empty()
                    {
                        break;
                    }
                }
                break;
            }
            let start = request.body.len();
            request.body.resize(start + size, 0);
            reader
                .read_exact(&mut request.body[start..])
                .map_err(|e| e.to_string())?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).map_err(|e| e.to_string())?;
        }
    } else if let Some(len) = request.header("content-length") {
        let len: usize = len.parse().map_err(|_| "bad Content-Length".to_string())?;
        if len > MAX_BODY_BYTES {
            return Err("body too large".into());
        }
        request.body.resize(len, 0);
        reader
            .read_exact(&mut request.body)
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(request))
}

fn write_response(w: &mut TcpStream, r: &Response, close: bool) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        _ => "Error",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-length: {}\r\n",
        r.status,
        r.body.len()
    );
    if !r.body.is_empty() {
        head.push_str(&format!("content-type: {}\r\n", r.content_type));
    }
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&r.body);
    w.write_all(&out)?;
    w.flush()
}

fn route(bridge: &Bridge, r: &Request) -> Response {
    let path = r.path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (r.method.as_str(), segments.as_slice()) {
        ("GET", [""]) => Response {
            status: 200,
            content_type: "application/json",
            body: json!({"bridge_version": VERSION, "implementation": "sidecar-resilience kafka-bridge (Strimzi produce API)"}).to_string().into_bytes(),
        },
        ("GET", ["healthy"]) | ("GET", ["ready"]) => Response { status: 204, content_type: V2, body: Vec::new() },
        ("GET", ["topics"]) => match bridge.producer.client().fetch_metadata(None, METADATA_TIMEOUT) {
            Ok(md) => {
                let mut names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
                names.sort_unstable();
                Response { status: 200, content_type: V2, body: json!(names).to_string().into_bytes() }
            }
            Err(e) => error(500, e.to_string()),
        },
        ("POST", ["topics", topic]) => produce(bridge, r, topic, None),
        ("POST", ["topics", topic, "partitions", p]) => match p.parse::<i32>() {
            Ok(p) if p >= 0 => produce(bridge, r, topic, Some(p)),
            _ => error(404, format!("partition {p} not found")),
        },
        (_, ["topics", ..]) | (_, ["healthy" | "ready"]) => error(405, format!("method {} not allowed", r.method)),
        _ => error(404, "Not Found"),
    }
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Binary,
    Text,
}

fn partitions(bridge: &Bridge, topic: &str) -> Option<i32> {
    if let Some(n) = bridge
        .topics
        .read()
        .ok()
        .and_then(|t| t.get(topic).copied())
    {
        return Some(n);
    }
    let md = bridge
        .producer
        .client()
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .ok()?;
    let t = md.topics().iter().find(|t| t.name() == topic)?;
    if t.error().is_some() || t.partitions().is_empty() {
        return None;
    }
    let n = t.partitions().len() as i32;
    if let Ok(mut cache) = bridge.topics.write() {
        cache.insert(topic.to_string(), n);
    }
    Some(n)
}

struct Prepared {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    partition: Option<i32>,
    headers: Vec<(String, Vec<u8>)>,
}

/// Base64 as Java's `Base64.getDecoder()` (which the Strimzi bridge uses) reads it: the
/// standard alphabet, padding optional, unused trailing bits ignored.
const JAVA_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// None: not base64.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    JAVA_BASE64.decode(text).ok()
}

fn bytes_of(format: Format, v: &Value, what: &str) -> Result<Option<Vec<u8>>, String> {
    match (format, v) {
        (_, Value::Null) => Ok(None),
        (Format::Json, v) => Ok(Some(v.to_string().into_bytes())),
        (Format::Text, Value::String(s)) => Ok(Some(s.clone().into_bytes())),
        (Format::Binary, Value::String(s)) => base64_decode(s)
            .map(Some)
            .ok_or_else(|| format!("{what} is not valid base64")),
        _ => Err(format!("{what} has the wrong type for the embedded format")),
    }
}

fn prepare(format: Format, record: &Value, i: usize) -> Result<Prepared, String> {
    let Value::Object(m) = record else {
        return Err(format!("records[{i}] is not an object"));
    };
    let key = bytes_of(
        format,
        m.get("key").unwrap_or(&Value::Null),
        &format!("records[{i}].key"),
    )?;
    let value = bytes_of(
        format,
        m.get("value").unwrap_or(&Value::Null),
        &format!("records[{i}].value"),
    )?;
    let partition = match m.get("partition") {
        None | Some(Value::Null) => None,
        Some(p) => Some(
            p.as_i64()
                .filter(|p| *p >= 0 && *p <= i64::from(i32::MAX))
                .ok_or_else(|| format!("records[{i}].partition is not a partition number"))?
                as i32,
        ),
    };
    let mut headers = Vec::new();
    match m.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (j, h) in list.iter().enumerate() {
                let k = h.get("key").and_then(Value::as_str);
                let v = h
                    .get("value")
                    .and_then(Value::as_str)
                    .and_then(base64_decode);
                match (k, v) {
                    (Some(k), Some(v)) => headers.push((k.to_string(), v)),
                    _ => {
                        return Err(format!(
                            "records[{i}].headers[{j}] must be {{key, value (base64)}}"
                        ))
                    }
                }
            }
        }
        Some(_) => return Err(format!("records[{i}].headers is not an array")),
    }
    Ok(Prepared {
        key,
        value,
        partition,
        headers,
    })
}

fn produce(bridge: &Bridge, r: &Request, topic: &str, path_partition: Option<i32>) -> Response {
    let media = r
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match media.as_str() {
        "application/vnd.kafka.json.v2+json" => Format::Json,
        "application/vnd.kafka.binary.v2+json" => Format::Binary,
        "application/vnd.kafka.text.v2+json" => Format::Text,
        _ => return error(415, format!("Unsupported Content-Type \"{media}\"")),
    };
    let body: Value = match serde_json::from_slice(&r.body) {
        Ok(v) => v,
        Err(e) => return error(400, format!("Invalid JSON: {e}")),
    };
    let Some(records) = body.get("records").and_then(Value::as_array) else {
        return error(422, "Invalid request body: \"records\" must be an array");
    };
    let mut prepared = Vec::with_capacity(records.len());
    for (i, record) in records.iter().enumerate() {
        match prepare(format, record, i) {
            Ok(p) => prepared.push(p),
            Err(m) => return error(422, m),
        }
    }
    let Some(partition_count) = partitions(bridge, topic) else {
        return error(404, format!("Topic {topic} not found"));
    };
    let mut offsets: Vec<Option<Value>> = vec![None; prepared.len()];
    let mut waiting = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        let partition = path_partition.or(p.partition);
        if let Some(part) = partition {
            if part >= partition_count {
                offsets[i] = Some(
                    json!({"error_code": 404, "message": format!("partition {part} of topic {topic} not found")}),
                );
                continue;
            }
        }
        // Deliveries come back in any order; the index rides with the sender.
        let (one_tx, one_rx) = sync_channel::<Delivery>(1);
        let mut headers = OwnedHeaders::new_with_capacity(p.headers.len());
        for (k, v) in &p.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8], Box<SyncSender<Delivery>>> =
            BaseRecord::with_opaque_to(topic, Box::new(one_tx)).headers(headers);
        if let Some(k) = &p.key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &p.value {
            record = record.payload(v.as_slice());
        }
        if let Some(part) = partition {
            record = record.partition(part);
        }
        let deadline = Instant::now() + DELIVERY_TIMEOUT;
        loop {
            match bridge.producer.send(record) {
                Ok(()) => {
                    waiting.push((i, one_rx));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    let (code, message) = kafka_error_code(&e);
                    offsets[i] = Some(json!({"error_code": code, "message": message}));
                    break;
                }
            }
        }
    }
    for (i, one_rx) in waiting {
        offsets[i] = Some(match one_rx.recv_timeout(DELIVERY_TIMEOUT) {
            Ok(Ok((partition, offset))) => json!({"partition": partition, "offset": offset}),
            Ok(Err((code, message))) => json!({"error_code": code, "message": message}),
            Err(_) => json!({"error_code": 500, "message": "delivery timed out"}),
        });
    }
    let offsets: Vec<Value> = offsets
        .into_iter()
        .map(|o| o.unwrap_or(Value::Null))
        .collect();
    Response {
        status: 200,
        content_type: V2,
        body: json!({"offsets": offsets}).to_string().into_bytes(),
    }
}
