//! `make run`: Envoy with the filter and envoy/policy.json (the seed policy plus an `events`
//! section) in front of demo `user-service` and `order-service` upstreams; a scripted mix of
//! requests printed as a timeline; an `order.created` event published through Envoy to the Kafka
//! bridge and read back by the consumer group `order-processor-group`; then Envoy keeps running
//! until Ctrl-C.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

// The events tests' real parts: Tansu broker, the kafka-bridge tool, the librdkafka consumer.
use harness::events::{consume, Bridge, Broker, GROUP};
use harness::{
    free_port, shipped_policy, Action, Envoy, EnvoyOptions, ServicePorts, Services, Upstream,
    KAFKA_BRIDGE, ORDER, PAYMENT, SHIPPED_POLICY, USER,
};
use serde_json::{json, Value};

struct Timeline {
    started: Instant,
}

impl Timeline {
    fn header(&self) {
        println!(
            "\n  {:>7}  {:<15} {:<18} {:>6}  {:>8}  circuit",
            "time", "upstream", "request", "status", "attempts"
        );
    }

    /// Sends one request and prints a line: time, upstream, status, attempts the upstream
    /// saw, and the circuit state after the call.
    fn call(
        &self,
        envoy: &Envoy,
        authority: &str,
        upstream: &Upstream,
        method: &str,
        path: &str,
        note: &str,
    ) {
        let before = upstream.count();
        let response = envoy.request(method, authority, path, &[], b"");
        let attempts = upstream.count() - before;
        let state = circuit_state(envoy, authority);
        let status = match &response {
            Ok(r) => r.status.to_string(),
            Err(e) => format!("error: {e}"),
        };
        let fallback = match &response {
            Ok(r) if r.header("x-circuit-breaker").is_some() => "  fallback, upstream not called",
            Ok(r) if r.header("x-time-limiter").is_some() => "  time limiter: attempt cut",
            _ => "",
        };
        println!(
            "  {:>6.1}s  {:<15} {:<18} {:>6}  {:>8}  {:<9}{}{}",
            self.started.elapsed().as_secs_f64(),
            authority,
            format!("{method} {path}"),
            status,
            attempts,
            state,
            fallback,
            if note.is_empty() {
                String::new()
            } else {
                format!("  ({note})")
            }
        );
    }

    fn say(&self, text: &str) {
        println!("\n  {text}");
    }
}

fn circuit_state(envoy: &Envoy, instance: &str) -> String {
    for state in [
        "closed",
        "open",
        "half_open",
        "forced_open",
        "disabled",
        "metrics_only",
    ] {
        let labels = [("name", instance), ("state", state)];
        if envoy.metric("resilience4j_circuitbreaker_state", &labels) == 1 {
            return state.to_ascii_uppercase();
        }
    }
    "-".to_string()
}

/// Where the series are: the scrape URL, what it holds and a few lines of it.
fn print_metrics(envoy: &Envoy) {
    let scraped = envoy.admin_get("/stats/prometheus").unwrap_or_default();
    let ours: Vec<&str> = scraped
        .lines()
        .filter(|l| l.starts_with("resilience4j_") || l.starts_with("sidecar_events_"))
        .collect();
    println!(
        "  metrics   {}/stats/prometheus   ({} series resilience4j_*, sidecar_events_*; README, Metrics)",
        envoy.admin_url(),
        ours.len()
    );
    for line in ours
        .iter()
        .filter(|l| {
            (l.contains("calls_seconds_count") && l.contains("kind=\"failed\""))
                || l.contains("state=\"open\"")
        })
        .take(5)
        .chain(
            ours.iter()
                .filter(|l| {
                    l.starts_with("resilience4j_bulkhead_")
                        || (l.starts_with("resilience4j_timelimiter_calls_total")
                            && l.contains("kind=\"timeout\""))
                })
                .take(3),
        )
    {
        println!("            {line}");
    }
    println!(
        "            Prometheus: scrape that path; Grafana: istio/observability/grafana-dashboard.json"
    );
}

fn wait_with_countdown(seconds: u64, what: &str) {
    for left in (1..=seconds).rev() {
        print!("\r  … {what}: {left:>2} s ");
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(1));
    }
    print!("\r{:60}\r", "");
}

/// The envelope with the seed's field order (`id, type, source, timestamp, data, version`, then
/// anything else), pretty-printed and indented by `indent`.
fn pretty_envelope(v: &Value, indent: &str) -> String {
    let Some(map) = v.as_object() else {
        return format!("{indent}{v}");
    };
    let order = ["id", "type", "source", "timestamp", "data", "version"];
    let mut keys: Vec<&String> = order
        .iter()
        .filter_map(|k| map.get_key_value(*k).map(|(k, _)| k))
        .collect();
    keys.extend(map.keys().filter(|k| !order.contains(&k.as_str())));
    let fields: Vec<String> = keys
        .iter()
        .map(|k| {
            let value = serde_json::to_string_pretty(&map[k.as_str()])
                .unwrap_or_default()
                .replace('\n', &format!("\n{indent}  "));
            format!("{indent}  {}: {value}", Value::from(k.as_str()))
        })
        .collect();
    format!("{indent}{{\n{}\n{indent}}}", fields.join(",\n"))
}

/// Step 5: a broker and the bridge on `bridge_port` (the port Envoy's `kafka-bridge` cluster
/// was given), one unwrapped `order.created` record POSTed through Envoy, and what the consumer
/// group read. Returns the bridge and broker (dropped in that order: the bridge's producer
/// disconnects before the broker stops) so they keep serving while Envoy does.
fn publish_event(
    t: &Timeline,
    envoy: &Envoy,
    bridge_port: u16,
) -> Result<(Bridge, Broker), String> {
    let broker =
        Broker::start().map_err(|e| format!("the Kafka broker (Tansu) could not start: {e}"))?;
    let bridge = Bridge::start_on(&broker, bridge_port)
        .map_err(|e| format!("the Kafka bridge could not start: {e}"))?;
    println!(
        "  {:>6.1}s  broker (Tansu) on {}, topics created; kafka-bridge on 127.0.0.1:{bridge_port}",
        t.started.elapsed().as_secs_f64(),
        broker.bootstrap
    );
    let record = json!({"records": [{"value": {"orderId": "o-1001", "customerId": "c-42", "total": 59.80}}]});
    let path = "/topics/order.created";
    println!(
        "  {:>6.1}s  POST {path} (Host: {KAFKA_BRIDGE}) {record}",
        t.started.elapsed().as_secs_f64()
    );
    let response = envoy
        .request(
            "POST",
            KAFKA_BRIDGE,
            path,
            &[("content-type", "application/vnd.kafka.json.v2+json")],
            record.to_string(),
        )
        .map_err(|e| format!("POST through Envoy: {e}"))?;
    println!(
        "  {:>6.1}s  bridge answered {} {}",
        t.started.elapsed().as_secs_f64(),
        response.status,
        response.text().trim()
    );
    if response.status != 200 {
        return Err(format!("the bridge answered {}", response.status));
    }
    let got = consume(&broker, Duration::from_secs(8), Duration::ZERO, |r| {
        !r.is_empty()
    })?;
    let received = got
        .first()
        .ok_or_else(|| format!("group {GROUP} read nothing within 8 s"))?;
    let value: Value = serde_json::from_slice(received.value.as_deref().unwrap_or(b"null"))
        .map_err(|e| format!("the record is not JSON: {e}"))?;
    let key = received
        .key
        .as_deref()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_else(|| "none".to_string());
    println!(
        "  {:>6.1}s  consumer group {GROUP} received from {} (key {key}):",
        t.started.elapsed().as_secs_f64(),
        received.topic
    );
    println!("{}", pretty_envelope(&value, "           "));
    Ok((bridge, broker))
}

fn run() -> Result<(), String> {
    let policy = shipped_policy()?;
    let services = Services::start().map_err(|e| format!("demo upstreams: {e}"))?;
    let port_or_free = |preferred: u16| match std::net::TcpListener::bind(("127.0.0.1", preferred))
    {
        Ok(_) => Some(preferred),
        Err(_) => None,
    };
    // Envoy's `kafka-bridge` cluster points here; step 5 starts the bridge on it.
    let bridge_port = free_port().map_err(|e| format!("free port: {e}"))?;
    let ports = ServicePorts {
        kafka_bridge: bridge_port,
        ..services.ports()
    };
    let options = EnvoyOptions {
        admin_port: port_or_free(9901),
        listen_port: port_or_free(10000),
        ..EnvoyOptions::default()
    };
    println!(
        "Starting Envoy 1.40 (--concurrency 2) with the filter and the seed policy plus events ({SHIPPED_POLICY})…"
    );
    let mut envoy = Envoy::start_on(&ports, Some(&policy), &options)?;
    let t = Timeline {
        started: Instant::now(),
    };

    t.say("1. Healthy upstreams: requests pass through, circuits CLOSED.");
    t.header();
    t.call(&envoy, USER, &services.user, "GET", "/users/1", "");
    t.call(&envoy, ORDER, &services.order, "GET", "/orders/7", "");
    t.call(
        &envoy,
        PAYMENT,
        &services.payment,
        "GET",
        "/payments/3",
        "no policy: passes untouched",
    );

    t.say("2. A flaky user-service: the first attempt fails, the retry 2 s later succeeds (retry: max-attempts 3, wait-duration 2s).");
    t.header();
    services.user.push(Action::status(503));
    t.call(
        &envoy,
        USER,
        &services.user,
        "GET",
        "/users/2",
        "rescued by a retry",
    );

    t.say("3. order-service goes down (every call 500). Each request makes 2 attempts 1 s apart; the breaker counts every attempt and opens at 60 % of its window of 8.");
    t.header();
    services.order.set_default(Action::status(500));
    for i in 0..6 {
        t.call(
            &envoy,
            ORDER,
            &services.order,
            "GET",
            &format!("/orders/{}", 10 + i),
            "",
        );
    }

    t.say("4. order-service recovers, but the circuit stays OPEN for wait-duration-in-open-state (20 s); then 10 HALF_OPEN trial calls (permitted-number-of-calls-in-half-open-state) close it.");
    services.order.set_default(Action::status(200));
    wait_with_countdown(20, "order-service circuit OPEN");
    t.header();
    for i in 0..11 {
        t.call(
            &envoy,
            ORDER,
            &services.order,
            "GET",
            &format!("/orders/{}", 20 + i),
            "",
        );
    }

    t.say("5. Events: the app POSTs an unwrapped order.created record to the Kafka bridge through Envoy; the filter wraps it in the standard envelope {id, type, source, timestamp, data, version}, source from the node metadata (WORKLOAD_NAME checkout, NAMESPACE shop), never from the request.");
    let kafka = match publish_event(&t, &envoy, bridge_port) {
        Ok(parts) => Some(parts),
        Err(e) => {
            println!("  (events step skipped: {e}; `make deps` installs the broker)");
            None
        }
    };

    t.say("6. A live policy change, no restart: user-service's failure-rate-threshold goes from 50 to 20 through ECDS (the policy file is replaced atomically, as a rollout would). Its breaker config changed, so it starts fresh with the new threshold; order-service's did not and keeps its state.");
    let mut lowered = policy.clone();
    lowered["resilience4j"]["circuitbreaker"]["instances"]["user-service"]
        ["failure-rate-threshold"] = 20.into();
    let pid_uptime = |envoy: &Envoy| envoy.stat("server.uptime").unwrap_or(0);
    let uptime_before = pid_uptime(&envoy);
    let swap_started = Instant::now();
    let update = envoy.set_policy(&lowered)?;
    println!(
        "  {:>6.1}s  policy update {:?} after {} ms; Envoy not restarted (server.uptime {} s → {} s)",
        t.started.elapsed().as_secs_f64(),
        update,
        swap_started.elapsed().as_millis(),
        uptime_before,
        pid_uptime(&envoy)
    );
    t.header();
    services.user.set_default(Action::status(200));
    services.user.push(Action::status(500));
    for i in 0..5 {
        let note = match i {
            0 => "1 failed attempt, rescued by the retry",
            3 => "1 of 5 calls failed: 20 % ≥ 20 %; the old 50 % would have stayed CLOSED",
            _ => "",
        };
        t.call(
            &envoy,
            USER,
            &services.user,
            "GET",
            &format!("/users/{}", 30 + i),
            note,
        );
    }

    t.say("7. A bulkhead: payment-service gets `resilience4j.bulkhead.instances.payment-service.max-concurrent-calls: 2` (live policy change). It answers slowly (1.5 s); 4 calls at once: 2 reach it, 2 are refused at once with 503 and `x-resilience4j-refused` (max-wait-duration 0), not recorded by any breaker, not retried.");
    lowered["resilience4j"]["bulkhead"] =
        json!({"instances": {"payment-service": {"max-concurrent-calls": 2}}});
    let update = envoy.set_policy(&lowered)?;
    println!("  policy update {update:?}");
    services.payment.set_default(Action::delay(1500, 200));
    services.payment.reset_requests();
    let port = envoy.port();
    let calls: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let response = harness::get(port, PAYMENT, &format!("/payments/{}", 40 + i));
                (i, started.elapsed(), response)
            })
        })
        .collect();
    for call in calls {
        let Ok((i, took, response)) = call.join() else {
            continue;
        };
        match response {
            Ok(r) => println!(
                "  GET payment-service /payments/{}  {}  after {:>5} ms  {}",
                40 + i,
                r.status,
                took.as_millis(),
                r.header("x-resilience4j-refused")
                    .map(|v| format!("refused: {v}"))
                    .unwrap_or_else(|| "from the upstream".to_string())
            ),
            Err(e) => println!("  GET payment-service /payments/{}  failed: {e}", 40 + i),
        }
    }
    println!(
        "  payment-service received {} of the 4 calls",
        services.payment.count()
    );
    services.payment.set_default(Action::status(200));

    t.say("8. TimeLimiter: a live change adds resilience4j.timelimiter.instances.payment-service (timeout-duration 500ms). A payment-service that takes 3 s is cut at 500 ms: Envoy resets the upstream request and the caller gets a 504 naming the upstream.");
    let mut limited = lowered.clone();
    limited["resilience4j"]["timelimiter"] =
        json!({"instances": {"payment-service": {"timeout-duration": "500ms"}}});
    let update = envoy.set_policy(&limited)?;
    println!(
        "  {:>6.1}s  policy update {:?}",
        t.started.elapsed().as_secs_f64(),
        update
    );
    t.header();
    services.payment.set_default(Action::delay(3000, 200));
    let started = Instant::now();
    t.call(&envoy, PAYMENT, &services.payment, "GET", "/payments/4", "");
    println!(
        "            answered after {} ms (the upstream would have taken 3000 ms)",
        started.elapsed().as_millis()
    );
    services.payment.set_default(Action::status(200));
    t.call(
        &envoy,
        PAYMENT,
        &services.payment,
        "GET",
        "/payments/5",
        "fast: passes",
    );

    println!("\nEnvoy keeps running with the changed policy (user-service threshold 20 %, payment-service bulkhead 2 and time limiter 500 ms):");
    println!("  listener  http://127.0.0.1:{}   e.g. curl -H 'Host: user-service' http://127.0.0.1:{}/users/1", envoy.port(), envoy.port());
    if kafka.is_some() {
        println!("            curl -H 'Host: kafka-bridge' -H 'content-type: application/vnd.kafka.json.v2+json' -d '{{\"records\":[{{\"value\":{{\"orderId\":\"o-2\"}}}}]}}' http://127.0.0.1:{}/topics/order.created", envoy.port());
    }
    println!("  admin     {}", envoy.admin_url());
    print_metrics(&envoy);
    if std::env::var_os("DEMO_EXIT").is_some() || !std::io::stdin().is_terminal() {
        println!("(not a terminal: stopping)");
        return Ok(());
    }
    println!("Ctrl-C stops everything.");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}
