//! The root context: on (re)configuration it reads the policy into this worker's [`Runtime`];
//! on the tick it does breaker housekeeping and starts the retries that are due. It also
//! receives the answers to replays it dispatched.

use std::cell::RefCell;
use std::rc::Rc;

use crate::policy::Policy;
use crate::sorted_map::SortedMap;

use super::abi;
use super::admission::{self, InstanceAdmission, SharedAdmissions};
use super::boot;
use super::breaker::SharedBreaker;
use super::events::Events;
use super::metrics;
use super::retry::{self, RetryInstance, SharedCalls};
use super::stream::Stream;
use super::timelimiter::TimeLimiterInstance;

/// Plugin name when the host does not tell (shared-data keys and logs carry it).
const DEFAULT_PLUGIN_NAME: &str = crate::FILTER_NAME;
/// Breaker housekeeping (automatic OPEN -> HALF_OPEN, half-open max wait, gauges).
const FAST_BREAKER_TICK_MS: u64 = 100;
const GAUGE_TICK_MS: u64 = 1000;
/// Counters are accumulated per worker and handed to Envoy on the tick (`metrics::add`): the
/// tick comes at least this often, so a counter trails its calls by at most this long.
pub const COUNTER_FLUSH_MS: u32 = 100;

/// What one policy compiles to inside a worker.
pub struct Runtime {
    pub policy: Policy,
    pub breakers: SortedMap<String, SharedBreaker>,
    pub retries: SortedMap<String, RetryInstance>,
    /// Rate limiters and bulkheads, by instance.
    pub admission: SortedMap<String, InstanceAdmission>,
    pub time_limiters: SortedMap<String, TimeLimiterInstance>,
    breaker_tick_ms: u64,
    /// The policy's `events` section (stamping records produced through a Kafka bridge).
    pub events: Option<Events>,
    /// Which instance guards each cluster this worker has seen (None: none does), so that a
    /// request looks its cluster up once and carries the instance's name as a shared `Rc`.
    instance_of_cluster: RefCell<SortedMap<String, Option<Rc<str>>>>,
}

/// Most clusters whose instance a worker remembers (a mesh has as many as it has upstreams);
/// beyond them a request asks the policy each time.
const MAX_REMEMBERED_CLUSTERS: usize = 4096;

impl Runtime {
    /// Defines the instances' metrics; shared state is left alone (see
    /// [`Runtime::prepare_shared_state`]).
    fn new(policy: Policy, plugin_name: &str) -> Runtime {
        // Inserted one by one: collecting into a SortedMap would add a sort to the module.
        let mut breakers = SortedMap::new();
        for (instance, config) in &policy.circuit_breakers {
            let fallback = policy.fallbacks.get(instance).cloned();
            let breaker = SharedBreaker::new(plugin_name, instance, config.clone(), fallback);
            breakers.insert(instance.clone(), breaker);
        }
        let mut retries = SortedMap::new();
        for (instance, config) in &policy.retries {
            let options = policy
                .retry_options
                .get(instance)
                .cloned()
                .unwrap_or_default();
            let retry = RetryInstance::new(plugin_name, instance, config.clone(), options);
            retries.insert(instance.clone(), retry);
        }
        let mut time_limiters = SortedMap::new();
        for (instance, config) in &policy.time_limiters {
            // `fallbacks.<instance>.on.timeout` first, else the instance's fallback.
            let fallback = policy
                .fallbacks
                .get(instance)
                .map(|f| f.for_kind("timeout").clone());
            let limiter = TimeLimiterInstance::new(instance, config.clone(), fallback);
            time_limiters.insert(instance.clone(), limiter);
        }
        let fast = policy.circuit_breakers.values().any(|c| {
            c.automatic_transition_from_open_to_half_open_enabled
                || c.max_wait_duration_in_half_open_state_ms > 0
        });
        let breaker_tick_ms = if fast {
            FAST_BREAKER_TICK_MS
        } else {
            GAUGE_TICK_MS
        };
        let events = Events::configure(policy.events.as_ref());
        let admission = admission::configure(&policy, plugin_name);
        Runtime {
            policy,
            breakers,
            retries,
            admission,
            time_limiters,
            breaker_tick_ms,
            events,
            instance_of_cluster: RefCell::default(),
        }
    }

    /// The instance that guards `cluster`, if any (the policy's `instance_for_cluster`,
    /// remembered per cluster).
    pub fn instance_for_cluster(&self, cluster: &str) -> Option<Rc<str>> {
        if let Some(known) = self.instance_of_cluster.borrow().get(cluster) {
            return known.clone();
        }
        let found: Option<Rc<str>> = self.policy.instance_for_cluster(cluster).map(Rc::from);
        let mut remembered = self.instance_of_cluster.borrow_mut();
        if remembered.len() < MAX_REMEMBERED_CLUSTERS {
            remembered.insert(cluster.to_string(), found.clone());
        }
        found
    }

    /// On configuration (each worker does it; the main thread first): starts afresh every
    /// shared breaker whose stored state was built for another config (the first one to see a
    /// change resets it), and creates every other instance's shared state that does not exist
    /// yet (see `store::create_if_missing`).
    fn prepare_shared_state(&self, now: u64) {
        for breaker in self.breakers.values() {
            breaker.reset_if_config_changed(now);
        }
        for retry in self.retries.values() {
            retry.create_missing_budget();
        }
        admission::create_missing_state(&self.admission, now);
    }

    /// The tick's period while no call waits for it (see `retry::WAIT_TICK_MS`).
    fn idle_tick_ms(&self) -> u32 {
        (self.breaker_tick_ms as u32).min(COUNTER_FLUSH_MS)
    }
}

/// The plugin configuration as Envoy handed it (empty when there is none).
fn read_config() -> Result<Vec<u8>, String> {
    match abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, usize::MAX) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(format!(
            "plugin configuration unreadable (host status {})",
            e.0
        )),
    }
}

/// The plugin configuration, parsed and checked; policy warnings are logged.
fn read_policy(config: &[u8]) -> Result<Policy, String> {
    let text = String::from_utf8_lossy(config);
    let policy = Policy::from_json(&text).map_err(|e| e.to_string())?;
    for warning in &policy.warnings {
        log::warn!("policy: {warning}");
    }
    Ok(policy)
}

fn plugin_name() -> String {
    match abi::get_string_property(&["plugin_name"]) {
        Ok(Some(name)) if !name.is_empty() => name,
        _ => DEFAULT_PLUGIN_NAME.to_string(),
    }
}

#[derive(Default)]
pub struct FilterRoot {
    runtime: Option<Rc<Runtime>>,
    calls: SharedCalls,
    admissions: SharedAdmissions,
    last_breaker_tick_ms: u64,
}

impl FilterRoot {
    /// The answer to a replay the tick dispatched.
    pub fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize) {
        if let Some(runtime) = self.runtime.clone() {
            retry::on_replay_answer(
                &runtime,
                &self.calls,
                &self.admissions,
                token,
                num_headers,
                body_size,
            );
        }
    }

    pub fn on_configure(&mut self, _size: usize) -> bool {
        let plugin_name = plugin_name();
        let config = match read_config() {
            Ok(config) => config,
            Err(message) => {
                log::error!("policy rejected: {message}");
                return false;
            }
        };
        let policy = match read_policy(&config) {
            Ok(policy) => {
                boot::mark_accepted(&plugin_name);
                if policy.circuit_breakers.is_empty()
                    && policy.retries.is_empty()
                    && policy.bulkheads.is_empty()
                    && policy.thread_pool_bulkheads.is_empty()
                    && policy.rate_limiters.is_empty()
                    && policy.events.is_none()
                {
                    log::warn!(
                        "policy guards nothing (no resilience4j instance or events): every \
                         request passes through"
                    );
                }
                policy
            }
            Err(message) if !boot::run_pass_through(&plugin_name, boot::fingerprint(&config)) => {
                log::error!("policy rejected: {message}");
                return false;
            }
            Err(message) => {
                // Refusing would leave Envoy without a filter config: 500 on every route.
                log::error!(
                    "policy rejected: {message}; no policy was accepted before, so the filter \
                     runs PASS-THROUGH (no circuit breaker, retry or events) until a valid \
                     policy arrives"
                );
                match Policy::from_json("{}") {
                    Ok(empty) => empty,
                    Err(_) => return false,
                }
            }
        };
        if self.admissions.borrow().worker == 0 {
            self.admissions.borrow_mut().worker = admission::store_worker_id(&plugin_name);
        }
        let runtime = Runtime::new(policy, &plugin_name);
        runtime.prepare_shared_state(abi::now_ms().unwrap_or(0));
        if let Err(e) = self.settle_tick(&runtime, true) {
            log::warn!(
                "tick unavailable (host status {}): retries and automatic transitions stop",
                e.0
            );
        }
        self.runtime = Some(Rc::new(runtime));
        true
    }

    /// The tick's period for what waits now: fast while a call of this worker waits for the
    /// tick, else the idle period. `always`: set it even if it looks unchanged.
    fn settle_tick(&self, runtime: &Runtime, always: bool) -> Result<(), abi::HostError> {
        let waiting = self.calls.borrow().any_waiting() || admission::any_waiting(&self.admissions);
        if !always && waiting == self.calls.borrow().fast_tick {
            return Ok(());
        }
        let period = if waiting {
            retry::WAIT_TICK_MS
        } else {
            runtime.idle_tick_ms()
        };
        abi::set_tick_period_ms(period)?;
        self.calls.borrow_mut().fast_tick = waiting;
        Ok(())
    }

    /// Runs on every worker and the main thread. Retries are per worker; breaker
    /// housekeeping is shared, so whichever root gets there first does it.
    pub fn on_tick(&mut self) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        metrics::flush_counters();
        let Ok(now) = abi::now_ms() else { return };
        if now.saturating_sub(self.last_breaker_tick_ms) >= runtime.breaker_tick_ms {
            self.last_breaker_tick_ms = now;
            for breaker in runtime.breakers.values() {
                breaker.tick(now);
            }
        }
        for retry in runtime.retries.values() {
            retry.flush_requests(now);
        }
        retry::on_tick(&runtime, &self.calls, &self.admissions, now);
        admission::on_tick(&self.admissions, &self.calls, Some(&runtime), now);
        // Back to the idle period once no call waits (a failure leaves it as it was).
        let _ = self.settle_tick(&runtime, false);
    }

    pub fn create_http_context(&self, context_id: u32) -> Stream {
        Stream::new(
            context_id,
            self.runtime.clone(),
            self.calls.clone(),
            self.admissions.clone(),
        )
    }
}
