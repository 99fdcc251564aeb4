//! What a platform team scrapes, charts and alerts on: a real Prometheus (Debian's
//! `prometheus`, installed by `make deps-prometheus`) scrapes Envoy's `/stats/prometheus`, and
//! every query of resilience4j's own Grafana dashboard returns series for the demo instances;
//! so does every query of the dashboard shipped in istio/observability/, and README's metrics
//! table lists every series as scraped. A bootstrap whose
//! stats_config is shaped like Istio's (tags from `extraStatTags`, its stats matcher) gives the
//! same series as envoy/bootstrap.yaml. The shipped alert rules pass `promtool test rules`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

/// The PromQL of resilience4j's grafana_dashboard.json (repository root), verbatim.
/// `$application` comes from Micrometer's `jvm_info`, which a sidecar has not: Grafana leaves it
/// empty, which matches series without the label.
const R4J_DASHBOARD: &[&str] = &[
    r#"sum(resilience4j_circuitbreaker_state{state="closed"})"#,
    r#"sum(resilience4j_circuitbreaker_state{state=~"open|forced_open"})"#,
    r#"resilience4j_circuitbreaker_state{instance=~"$instance"}"#,
    r#"sum(resilience4j_circuitbreaker_state{state="half_open"})"#,
    r#"resilience4j_circuitbreaker_failure_rate{instance=~"$instance",name=~"$circuitbreaker_name"}"#,
    r#"rate(resilience4j_circuitbreaker_calls_seconds_count{instance=~"$instance",name=~"$circuitbreaker_name"}[1m])"#,
    r#"resilience4j_circuitbreaker_buffered_calls{instance=~"$instance",name=~"$circuitbreaker_name"}"#,
    r#"resilience4j_circuitbreaker_max_buffered_calls{instance=~"$instance",name=~"$circuitbreaker_name"}"#,
    r#"increase(resilience4j_circuitbreaker_calls_seconds_sum{instance=~"$instance",name=~"$circuitbreaker_name"}[1m]) / increase(resilience4j_circuitbreaker_calls_seconds_count{instance=~"$instance",name=~"$circuitbreaker_name"}[1m])"#,
    r#"sum(increase(resilience4j_circuitbreaker_calls_seconds_sum{instance=~"$instance",name=~"$circuitbreaker_name"}[1m])) / sum(increase(resilience4j_circuitbreaker_calls_seconds_count{instance=~"$instance",name=~"$circuitbreaker_name"}[1m]))"#,
    r#"rate(resilience4j_retry_calls_total{application=~"$application",name=~"$retry_name",}[1m])"#,
    r#"resilience4j_bulkhead_available_concurrent_calls{application=~"$application", name=~"$bulkhead_name"}"#,
    r#"resilience4j_bulkhead_max_allowed_concurrent_calls{application=~"$application",name=~"$bulkhead_name"}"#,
];
const R4J_VARIABLES: &[&str] = &[
    "label_values(resilience4j_circuitbreaker_state, instance)",
    "label_values(resilience4j_circuitbreaker_state, name)",
    "label_values(resilience4j_retry_calls_total,name)",
    "label_values(resilience4j_bulkhead_available_concurrent_calls, name)",
];
/// The seed's instances: breakers and retries.
const DEMO_INSTANCES: [&str; 2] = ["user-service", "order-service"];
/// The dashboards' instance-name variables, the module each names, and that module's
/// instances in the test's policy (`observed_policy`).
const NAME_VARIABLES: [(&str, &str, &[&str]); 6] = [
    ("$circuitbreaker_name", "circuitbreaker", &DEMO_INSTANCES),
    ("$retry_name", "retry", &DEMO_INSTANCES),
    ("$bulkhead_name", "bulkhead", &["payment-service"]),
    (
        "$thread_pool_bulkhead_name",
        "thread-pool-bulkhead",
        &["order-service"],
    ),
    ("$ratelimiter_name", "ratelimiter", &["user-service"]),
    ("$timelimiter_name", "timelimiter", &["payment-service"]),
];

/// The stats_config of Istio's bootstrap (tools/packaging/common/envoy_bootstrap.json),
/// rendered with `extraStatTags` as istio/observability/mesh-stats-tags.yaml sets them; Istio's
/// generic extractors are kept so that a clash with them shows.
const ISTIO_STATS_CONFIG: &str = r#"stats_config:
  use_all_default_tags: false
  stats_tags:
  - { tag_name: cluster_name, regex: '^cluster(\.(.+);)' }
  - { tag_name: http_conn_manager_prefix, regex: '^http\.(((?:[_.[:digit:]\w]*|[_\[\]aAbBcCdDeEfF[:digit:]\w\:]*));\.)' }
  - { tag_name: thread_name, regex: '^server(\.(.+))\.watchdog' }
  - { tag_name: tcp_prefix, regex: '^tcp\.((.*?)\.)\w+?$' }
  - { tag_name: response_code, regex: '_rq(_(\d{3}))$' }
  - { tag_name: response_code_class, regex: '_rq(_(\dxx))$' }
  - { tag_name: http_conn_manager_listener_prefix, regex: '^listener(?=\.).*?\.http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)' }
  - { tag_name: listener_address, regex: '^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)' }
  - { tag_name: mongo_prefix, regex: '^mongo\.(.+?)\.(collection|cmd|cx_|op_|delays_|decoding_)(.*?)$' }
  - { tag_name: name, regex: '(name=\.=(.*?);\.;)' }
  - { tag_name: kind, regex: '(kind=\.=(.*?);\.;)' }
  - { tag_name: state, regex: '(state=\.=(.*?);\.;)' }
  - { tag_name: from, regex: '(from=\.=(.*?);\.;)' }
  - { tag_name: to, regex: '(to=\.=(.*?);\.;)' }
  - { tag_name: topic, regex: '(topic=\.=(.*?);\.;)' }
  - { tag_name: reason, regex: '(reason=\.=(.*?);\.;)' }
  - { tag_name: cache, regex: '(cache\.(.+?)\.)' }
  - { tag_name: component, regex: '(component\.(.+?)\.)' }
  - { tag_name: tag, regex: '(tag\.(.+?);\.)' }
  - { tag_name: wasm_filter, regex: '(wasm_filter\.(.+?)\.)' }
  - { tag_name: authz_enforce_result, regex: 'rbac(\.(allowed|denied))' }
  - { tag_name: authz_dry_run_action, regex: '(\.istio_dry_run_(allow|deny)_)' }
  - { tag_name: authz_dry_run_result, regex: '(\.shadow_(allowed|denied))' }
  stats_matcher:
    inclusion_list:
      patterns:
      - prefix: "reporter="
      - prefix: "cluster_manager"
      - prefix: "listener_manager"
      - prefix: "server"
      - prefix: "cluster.xds-grpc"
      - prefix: "wasm"
      - suffix: "rbac.allowed"
      - suffix: "rbac.denied"
      - suffix: "shadow_allowed"
      - suffix: "shadow_denied"
      - suffix: "downstream_cx_active"
      - safe_regex: { regex: 'vhost\..*\.route\..*' }
      - prefix: "component"
      - prefix: "istio"
      # The harness waits on the ECDS stats (a proxyStatsMatcher inclusionPrefixes entry).
      - prefix: "extension_config_discovery"

"#;

/// envoy/policy.json with short retry waits (the test's time), plus what `make run` adds
/// live (payment-service's bulkhead and time limiter) and, for the shipped dashboard's panels
/// of the other modules, a thread-pool bulkhead and a rate limiter that the test's traffic
/// never fills.
fn observed_policy() -> Value {
    let mut policy = shipped_policy().unwrap();
    for instance in DEMO_INSTANCES {
        set_path(
            &mut policy,
            &format!("resilience4j.retry.instances.{instance}.wait-duration"),
            json!("50ms"),
        );
    }
    let modules = [
        (
            "bulkhead",
            "payment-service",
            json!({"max-concurrent-calls": 2}),
        ),
        (
            "timelimiter",
            "payment-service",
            json!({"timeout-duration": "500ms"}),
        ),
        (
            "thread-pool-bulkhead",
            "order-service",
            json!({"max-thread-pool-size": 4, "queue-capacity": 10}),
        ),
        (
            "ratelimiter",
            "user-service",
            json!({"limit-for-period": 50, "limit-refresh-period": "1s"}),
        ),
    ];
    for (module, instance, config) in modules {
        set_path(
            &mut policy,
            &format!("resilience4j.{module}.instances.{instance}"),
            config,
        );
    }
    // Each instance a dashboard variable should list is in the policy.
    for (_, module, instances) in NAME_VARIABLES {
        for instance in instances {
            let path = format!("/resilience4j/{module}/instances/{instance}");
            assert!(policy.pointer(&path).is_some(), "{path}");
        }
    }
    policy
}

/// Successes, failures (retried, then opening user-service's circuit), refused calls, a slow
/// call, calls through payment-service's bulkhead and time limiter (one cut by it), a stamped
/// record and a rejected produce request.
fn demo_traffic(services: &Services, envoy: &Envoy) {
    services.order.set_default(Action::status(200));
    services.user.set_default(Action::status(200));
    services.payment.set_default(Action::status(200));
    assert_eq!(envoy.get("payment-service", "/p").unwrap().status, 200);
    services.payment.push(Action::delay(1500, 200));
    assert_eq!(envoy.get("payment-service", "/p").unwrap().status, 504);
    services
        .bridge
        .set_default(Action::respond(200, r#"{"offsets":[]}"#));
    for _ in 0..3 {
        assert_eq!(envoy.get("order-service", "/o").unwrap().status, 200);
    }
    services.order.push(Action::delay(1100, 200));
    assert_eq!(envoy.get("order-service", "/o").unwrap().status, 200);
    assert_eq!(envoy.get("user-service", "/u").unwrap().status, 200);
    services.user.set_default(Action::status(500));
    for _ in 0..6 {
        envoy.get("user-service", "/u").unwrap();
    }
    let produce = |body: &[u8]| {
        envoy
            .request(
                "POST",
                "kafka-bridge",
                "/topics/order.created",
                &[("content-type", "application/vnd.kafka.json.v2+json")],
                body,
            )
            .unwrap()
            .status
    };
    assert_eq!(
        produce(br#"{"records":[{"value":{"orderId":"o-1"}}]}"#),
        200
    );
    assert_ne!(produce(br#"{"records":"not a list"}"#), 200);
}

/// Each sample of the filter's series in `/stats/prometheus`: name and sorted labels → value.
fn filter_series(envoy: &Envoy) -> BTreeMap<String, f64> {
    let text = envoy.admin_get("/stats/prometheus").unwrap();
    text.lines()
        .filter(|l| l.starts_with("resilience4j_") || l.starts_with("sidecar_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut labels: Vec<&str> = labels.split(',').filter(|s| !s.is_empty()).collect();
            labels.sort();
            Some((
                format!("{name}{{{}}}", labels.join(",")),
                value.parse().ok()?,
            ))
        })
        .collect()
}

struct Prometheus {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Prometheus {
    fn scraping(targets: &[u16]) -> Prometheus {
        let dir = TempDir::new("prometheus").unwrap();
        let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let config = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             scrape_configs:\n\
             - job_name: sidecar\n  metrics_path: /stats/prometheus\n  \
             static_configs: [{{ targets: [{}] }}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port().unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (make deps-prometheus)");
        let prometheus = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(port, "127.0.0.1", "/-/ready").map(|r| r.status).ok() != Some(200) {
            assert!(Instant::now() < deadline, "prometheus not ready");
            thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// The result vector of an instant query.
    fn query(&self, promql: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let response = get(self.port, "127.0.0.1", &path).unwrap();
        let body = response.json().unwrap();
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn label_values(&self, series: &str, label: &str) -> BTreeSet<String> {
        let path = format!(
            "/api/v1/label/{label}/values?match[]={}",
            percent_encode(series)
        );
        let body = get(self.port, "127.0.0.1", &path).unwrap().json().unwrap();
        body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dashboard query as Grafana sends it with every variable's values selected.
fn as_grafana_sends(query: &str, instances: &str) -> String {
    let mut promql = query
        .replace("$instance", instances)
        .replace("$application", "")
        .replace("$topic", "order_created");
    for (variable, _, names) in NAME_VARIABLES {
        promql = promql.replace(variable, &names.join("|"));
    }
    assert!(!promql.contains('$'), "a variable left in {promql}");
    promql
}

/// Asserts the query returns series, and that those labelled by instance name cover the
/// instances of the module the query selects by name.
fn assert_series(prometheus: &Prometheus, query: &str, instances: &str) {
    let promql = as_grafana_sends(query, instances);
    let result = prometheus.query(&promql);
    assert!(!result.is_empty(), "no series for {promql}");
    let names: BTreeSet<&str> = result
        .iter()
        .filter_map(|s| s["metric"]["name"].as_str())
        .collect();
    // (An aggregate over names has none.)
    let selected = NAME_VARIABLES
        .iter()
        .filter(|(variable, _, _)| query.contains(variable) && !names.is_empty())
        .flat_map(|(_, _, instances)| instances.iter());
    for instance in selected {
        assert!(
            names.contains(instance),
            "{instance} missing from {promql}: {result:?}"
        );
    }
}

#[test]
fn dashboards_show_the_demo_instances_from_a_real_prometheus_and_istio_tags_give_the_same_series() {
    let services = Services::start().unwrap();
    let policy = observed_policy();
    let envoy = Envoy::start(&services, &policy).unwrap();
    // The same Envoy but for a stats_config shaped like an Istio sidecar's.
    let template = TempDir::new("istio-bootstrap").unwrap();
    let ours = std::fs::read_to_string(bootstrap_template()).unwrap();
    let (head, rest) = ours.split_once("stats_config:").unwrap();
    let (_, tail) = rest.split_once("\nadmin:").unwrap();
    let istio_template = template.path().join("bootstrap.yaml");
    std::fs::write(
        &istio_template,
        format!("{head}{ISTIO_STATS_CONFIG}admin:{tail}"),
    )
    .unwrap();
    let istio_services = Services::start().unwrap();
    let istio = Envoy::start_with(
        &istio_services,
        &policy,
        &EnvoyOptions {
            template: istio_template,
            ..EnvoyOptions::default()
        },
    )
    .unwrap();

    let prometheus = Prometheus::scraping(&[envoy.admin_port(), istio.admin_port()]);
    demo_traffic(&services, &envoy);
    demo_traffic(&istio_services, &istio);

    // Istio's tags give the same series, labels and (traffic-determined) counts.
    let counted = |series: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        series
            .iter()
            .filter(|(k, _)| k.contains("_total{") || k.contains("_seconds_count{"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    // (Counters reach Envoy on the filter's tick: read until both agree, then once more a flush
    // period later, so a count still on its way shows.)
    let deadline = Instant::now() + COUNTER_WAIT;
    while counted(&filter_series(&envoy)) != counted(&filter_series(&istio))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(COUNTER_SETTLE);
    let (ours, theirs) = (filter_series(&envoy), filter_series(&istio));
    assert!(ours.contains_key(r#"resilience4j_circuitbreaker_calls_seconds_count{kind="successful",name="order-service"}"#), "{ours:#?}");
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    assert_eq!(counted(&ours), counted(&theirs));

    // Rates need two scrapes after the traffic; gauges the filter's tick.
    let instances = format!(
        "127.0.0.1:{}|127.0.0.1:{}",
        envoy.admin_port(),
        istio.admin_port()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let opened = format!(
        r#"resilience4j_circuitbreaker_state{{name="user-service",state="open",instance=~"{instances}"}} == 1"#
    );
    while (prometheus.query(&opened).len() < 2
        || prometheus
            .query("rate(sidecar_events_records_stamped_total[1m]) > 0")
            .len()
            < 2)
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        prometheus.query(&opened).len(),
        2,
        "user-service open on both"
    );

    for query in R4J_DASHBOARD {
        assert_series(&prometheus, query, &instances);
    }
    for variable in R4J_VARIABLES {
        let inner = variable
            .trim_start_matches("label_values(")
            .trim_end_matches(')');
        let (series, label) = inner.split_once(',').unwrap();
        let values = prometheus.label_values(series.trim(), label.trim());
        let expected: Vec<String> = if label.trim() == "instance" {
            vec![
                format!("127.0.0.1:{}", envoy.admin_port()),
                format!("127.0.0.1:{}", istio.admin_port()),
            ]
        } else if series.contains("bulkhead") {
            vec!["payment-service".to_string()]
        } else {
            DEMO_INSTANCES.iter().map(|s| s.to_string()).collect()
        };
        for value in expected {
            assert!(values.contains(&value), "{variable}: {values:?}");
        }
    }

    // The shipped dashboard: every query, and every variable.
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("istio/observability/grafana-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in shipped["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            assert_series(&prometheus, expr, &instances);
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} queries checked");
    for variable in shipped["templating"]["list"].as_array().unwrap() {
        let query = variable["query"]["query"].as_str().unwrap();
        let inner = query
            .trim_start_matches("label_values(")
            .trim_end_matches(')');
        let (series, label) = inner.split_once(',').unwrap();
        let values = prometheus.label_values(series.trim(), label.trim());
        let name = format!("${}", variable["name"].as_str().unwrap());
        let expected = NAME_VARIABLES
            .iter()
            .find(|(v, _, _)| *v == name)
            .map_or(&[][..], |(_, _, instances)| *instances);
        assert!(!values.is_empty(), "{query}");
        for instance in expected {
            assert!(values.contains(*instance), "{query}: {values:?}");
        }
    }
    // The queries of resilience4j's dashboard are among the shipped one's.
    let shipped_text = shipped.to_string();
    for query in R4J_DASHBOARD {
        let relaxed = query
            .replace(",}", "}")
            .replace(", name", ",name")
            .replace("application=~\"$application\"", "instance=~\"$instance\"");
        assert!(
            shipped_text.contains(
                &serde_json::to_string(&relaxed)
                    .unwrap()
                    .trim_matches('"')
                    .to_string()
            ),
            "shipped dashboard lacks {query}"
        );
    }
    assert_readme_lists_the_scraped_series(&ours);
    envoy.filter_crashes().unwrap();
    istio.filter_crashes().unwrap();
}

/// Series name → its label keys, of one `filter_series` key.
fn family(series: &str) -> (String, BTreeSet<String>) {
    let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
    let keys = labels
        .trim_end_matches('}')
        .split(',')
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
        .collect();
    (name.to_string(), keys)
}

/// README's metrics table (README, Metrics) lists every scraped series with its labels, and
/// nothing else; a row whose type is `–` is a Micrometer series the sidecar does not produce.
fn assert_readme_lists_the_scraped_series(scraped: &BTreeMap<String, f64>) {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let (_, table) = readme
        .split_once("| Prometheus series (labels) | type |")
        .expect("README's metrics table");
    let mut listed = BTreeSet::new();
    let mut not_produced = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (series, kind) = (cells[1], cells[2]);
        for token in series.split('`').skip(1).step_by(2) {
            let (name, labels) = token.split_once('{').unwrap_or((token, "}"));
            let keys: BTreeSet<String> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|k| !k.is_empty())
                .map(|k| k.split_once('=').map_or(k, |(k, _)| k).to_string())
                .collect();
            if kind == "–" {
                not_produced.insert(name.to_string());
            } else {
                listed.insert((name.to_string(), keys));
            }
        }
    }
    let families: BTreeSet<(String, BTreeSet<String>)> =
        scraped.keys().map(|k| family(k)).collect();
    let unlisted: Vec<_> = families.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "scraped, not in README's table: {unlisted:?}"
    );
    let unscraped: Vec<_> = listed.difference(&families).collect();
    assert!(
        unscraped.is_empty(),
        "in README's table, not scraped: {unscraped:?}"
    );
    for name in &not_produced {
        assert!(
            families.iter().all(|(scraped, _)| scraped != name),
            "{name} is scraped but README says not produced"
        );
    }
}

#[test]
fn alert_rules_pass_promtool() {
    let rules = repo_root().join("istio/observability/prometheus-rules.yaml");
    let docs = yaml::load_file(&rules).unwrap();
    assert_eq!(docs[0]["kind"], "PrometheusRule");
    let dir = TempDir::new("promtool").unwrap();
    std::fs::write(dir.path().join("rules.json"), docs[0]["spec"].to_string()).unwrap();
    std::fs::copy(
        repo_root().join("tests/fixtures/alert-rules.test.yaml"),
        dir.path().join("alert-rules.test.yaml"),
    )
    .unwrap();
    for args in [
        &["check", "rules", "rules.json"][..],
        &["test", "rules", "alert-rules.test.yaml"][..],
    ] {
        promtool(dir.path(), args);
    }
}

fn promtool(dir: &Path, args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (make deps-prometheus)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One label set in three places: Istio's `extraStatTags` (what a mesh gets), the regexes
/// envoy/bootstrap.yaml declares for them (Istio's shape), and this test's Istio bootstrap.
#[test]
fn istio_extra_stat_tags_are_the_bootstrap_tags() {
    let mesh =
        yaml::load_file(&repo_root().join("istio/observability/mesh-stats-tags.yaml")).unwrap();
    let extra: Vec<&str> = mesh[0]["spec"]["meshConfig"]["defaultConfig"]["extraStatTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let bootstrap = std::fs::read_to_string(bootstrap_template()).unwrap();
    let (_, stats) = bootstrap.split_once("stats_config:").unwrap();
    let (stats, _) = stats.split_once("\nadmin:").unwrap();
    let stats = yaml::load_docs(stats).unwrap();
    let declared: Vec<(String, String)> = stats[0]["stats_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag_name"].as_str().unwrap().to_string(),
                t["regex"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let istio_shape: Vec<(String, String)> = extra
        .iter()
        .map(|tag| (tag.to_string(), format!(r"({tag}=\.=(.*?);\.;)")))
        .collect();
    assert_eq!(declared, istio_shape);
    for (tag, regex) in &istio_shape {
        assert!(
            ISTIO_STATS_CONFIG.contains(&format!("{{ tag_name: {tag}, regex: '{regex}' }}")),
            "{tag}"
        );
    }
    // No key ends with another (Istio's regexes are unanchored).
    for a in &extra {
        for b in &extra {
            assert!(a == b || !a.ends_with(b), "{a} ends with {b}");
        }
    }
    // The kustomization's files exist.
    let kustomization =
        yaml::load_file(&repo_root().join("istio/observability/kustomization.yaml")).unwrap();
    let dir = repo_root().join("istio/observability");
    for file in kustomization[0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            kustomization[0]["configMapGenerator"][0]["files"]
                .as_array()
                .unwrap(),
        )
    {
        assert!(dir.join(file.as_str().unwrap()).is_file(), "{file}");
    }
}
