//! `make run`: Envoy with the filter and the seed policy (envoy/policy.json) in front of demo
//! `user-service` and `order-service` upstreams; a scripted mix of requests printed as a
//! timeline; then Envoy keeps running until Ctrl-C.

#[allow(unused_imports)]
#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use support::{Action, Envoy, EnvoyOptions, Services, Upstream, ORDER, PAYMENT, USER};

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
        let name =
            format!("wasmcustom.resilience4j_circuitbreaker_state.name.{instance}.state.{state}");
        if envoy.stat(&name) == Some(1) {
            return state.to_ascii_uppercase();
        }
    }
    "-".to_string()
}

fn wait_with_countdown(seconds: u64, what: &str) {
    for left in (1..=seconds).rev() {
        print!("\r  … {what}: {left:>2} s ");
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(1));
    }
    print!("\r{:60}\r", "");
}

fn run() -> Result<(), String> {
    let policy_path = support::repo_root().join("envoy/policy.json");
    let policy_text = std::fs::read_to_string(&policy_path)
        .map_err(|e| format!("{}: {e}", policy_path.display()))?;
    let policy: serde_json::Value = serde_json::from_str(&policy_text)
        .map_err(|e| format!("{}: {e}", policy_path.display()))?;
    let services = Services::start().map_err(|e| format!("demo upstreams: {e}"))?;
    let port_or_free = |preferred: u16| match std::net::TcpListener::bind(("127.0.0.1", preferred))
    {
        Ok(_) => Some(preferred),
        Err(_) => None,
    };
    let options = EnvoyOptions {
        admin_port: port_or_free(9901),
        listen_port: port_or_free(10000),
        ..EnvoyOptions::default()
    };
    println!(
        "Starting Envoy 1.40 (--concurrency 2) with the filter and the seed policy ({})…",
        policy_path.display()
    );
    let envoy = Envoy::start_with(&services, &policy, &options)?;
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

    println!("\nEnvoy keeps running with the seed policy:");
    println!("  listener  http://127.0.0.1:{}   e.g. curl -H 'Host: user-service' http://127.0.0.1:{}/users/1", envoy.port(), envoy.port());
    println!(
        "  admin     {}   (/stats?filter=resilience4j, /stats/prometheus)",
        envoy.admin_url()
    );
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
