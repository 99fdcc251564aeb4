//! Admission: an instance's rate limiter and bulkheads, asked before a request goes upstream,
//! in resilience4j's aspect order Retry(CircuitBreaker(RateLimiter(TimeLimiter(Bulkhead(call))))):
//! the stream asks after the breaker permitted. Their state lives in shared data (`store`'s CAS
//! loop), so every worker shares one limit.
//!
//! A call may wait (ratelimiter `timeout-duration`, bulkhead `max-wait-duration`,
//! thread-pool-bulkhead `queue-capacity`): its stream pauses and this worker's tick resumes it
//! when its permit is due or a slot is free, or refuses it at its deadline. A slot is given back
//! at the latest when the stream ends however it ends (response, reset, timeout, client gone:
//! `on_log`), by the handle of the policy that gave it, so a policy swap keeps the count right;
//! a worker whose VM died frees its slots after the lease (`crate::bulkhead::LEASE_MS`).
//!
//! A refusal of a first attempt is answered locally (503 / 429, or the instance's fallback),
//! is not recorded by the circuit breaker (its permission is handed back) and is not retried.
//!
//! Every attempt passes through the instance's modules: a replay (`retry`) asks the rate
//! limiter for a permit and the bulkhead for a slot as the first attempt did
//! ([`admit_replay`]), and may wait the same way (its response stays held; the tick dispatches
//! it, [`retry::on_admitted`]). A slot is held by one attempt: the first attempt's goes back
//! when its response is retried (before the retry's wait), or when the stream ends if that
//! response is the answer; a replay's when its answer (or failure, or timeout) arrives
//! ([`attempt_ended`]), even when its caller went away first (the callout cannot be cancelled,
//! so the upstream still serves it: [`on_stream_end_with`], [`orphan_answered`]). A replay refused here is an attempt that ended with resilience4j's
//! RequestNotPermitted / BulkheadFullException: Retry retries it only if its retry-exceptions
//! name it (`crate::retry::sequence`).

use std::cell::RefCell;
use std::rc::Rc;

use crate::bulkhead::{Entry, Limits, Slots};
use crate::fallback::{self, LocalResponse, Refusal};
use crate::policy::{Fallback, Policy, RateLimiterConfig};
use crate::ratelimiter::{RateLimiter, Reservation};
use crate::sorted_map::SortedMap;

use super::abi;
use super::metrics::{BulkheadMetrics, RateLimiterMetrics};
use super::retry::{self, SharedCalls};
use super::root::Runtime;
use super::store::{self, StoreError};

/// Most calls a semaphore bulkhead lets wait at once (its `max-wait-duration` bounds how long).
const MAX_BULKHEAD_WAITERS: u32 = 10_000;

/// A replay whose caller went away keeps its slot until Envoy answers its callout (always, at
/// the latest at the callout's timeout); past this, a safety net gives the slot back anyway.
const ORPHAN_MAX_MS: u64 = 600_000;

/// One bulkhead instance (semaphore or thread-pool) as a worker reaches it.
pub struct SharedBulkhead {
    instance: String,
    thread_pool: bool,
    key: String,
    limits: Limits,
    /// How long a call may wait for a slot; None: until it gets one or its stream ends.
    max_wait_ms: Option<u64>,
    metrics: BulkheadMetrics,
}

impl SharedBulkhead {
    /// The gauges are not published here but on the tick (`publish_stored`, each second):
    /// two to six `record_metric` host calls per entry and per release would double a
    /// request's host calls.
    fn update<R>(&self, mut op: impl FnMut(&mut Slots) -> R) -> Option<R> {
        let result = store::cas_update(&self.key, |stored| {
            let mut slots = stored.map(Slots::decode).unwrap_or_default();
            let result = op(&mut slots);
            Ok((Some(slots.encode()), result))
        });
        match result {
            Ok(result) => Some(result),
            Err(e) => {
                report_store_error(&self.instance, self.module(), &e);
                None
            }
        }
    }

    fn module(&self) -> &'static str {
        if self.thread_pool {
            "thread-pool-bulkhead"
        } else {
            "bulkhead"
        }
    }

    fn publish(&self, active: u32, waiting: u32) {
        self.metrics.publish(
            active,
            waiting,
            self.limits.max_concurrent,
            self.limits.queue_capacity,
        );
    }

    /// Gauges from the stored slots (no write).
    fn publish_stored(&self) {
        let slots = match abi::get_shared_data(&self.key) {
            Ok(Some((bytes, _))) => Slots::decode(&bytes),
            _ => Slots::default(),
        };
        self.publish(slots.active(), slots.waiting());
    }
}

/// One rate limiter instance as a worker reaches it.
pub struct SharedRateLimiter {
    instance: String,
    key: String,
    config: RateLimiterConfig,
    metrics: RateLimiterMetrics,
}

impl SharedRateLimiter {
    /// None: shared state unavailable (fail open).
    fn reserve(&self, now: u64) -> Option<Reservation> {
        let config = &self.config;
        let result = store::cas_update(&self.key, |stored| {
            let mut limiter = match stored.and_then(RateLimiter::decode) {
                Some(limiter) if limiter.is_for(config) => limiter,
                // Missing, unreadable or built for another limit/period: start afresh.
                _ => RateLimiter::new(config, now),
            };
            let reservation = limiter.reserve(now, config.timeout_duration_ms);
            Ok((Some(limiter.encode()), reservation))
        });
        match result {
            Ok(reservation) => Some(reservation),
            Err(e) => {
                report_store_error(&self.instance, "ratelimiter", &e);
                None
            }
        }
    }

    fn publish_stored(&self, now: u64) {
        let available = match abi::get_shared_data(&self.key) {
            Ok(Some((bytes, _))) => RateLimiter::decode(&bytes)
                .filter(|l| l.is_for(&self.config))
                .map(|l| l.available(now)),
            _ => None,
        };
        self.metrics
            .publish(available.unwrap_or_else(|| i64::from(self.config.limit_for_period)));
    }
}

fn report_store_error(instance: &str, module: &str, error: &StoreError) {
    log::warn!("{module} '{instance}': shared state unavailable ({error}); failing open");
}

/// What an instance asks of a call before it goes upstream.
pub struct InstanceAdmission {
    rate_limiter: Option<SharedRateLimiter>,
    /// The semaphore bulkhead first, then the thread-pool one.
    bulkheads: Vec<SharedBulkhead>,
    fallback: Option<Fallback>,
}

pub fn bulkhead_key(plugin_name: &str, instance: &str, thread_pool: bool) -> String {
    let module = if thread_pool { "tpb" } else { "bh" };
    format!("{plugin_name}/{module}/{instance}")
}

/// The admission of every instance with a rate limiter or bulkhead; defines their metrics.
pub fn configure(policy: &Policy, plugin_name: &str) -> SortedMap<String, InstanceAdmission> {
    let mut out: SortedMap<String, InstanceAdmission> = SortedMap::new();
    fn entry<'a>(
        out: &'a mut SortedMap<String, InstanceAdmission>,
        policy: &Policy,
        instance: &str,
    ) -> &'a mut InstanceAdmission {
        out.entry(instance.to_string())
            .or_insert_with(|| InstanceAdmission {
                rate_limiter: None,
                bulkheads: Vec::new(),
                fallback: policy.fallbacks.get(instance).cloned(),
            })
    }
    for (instance, config) in &policy.rate_limiters {
        entry(&mut out, policy, instance).rate_limiter = Some(SharedRateLimiter {
            instance: instance.clone(),
            key: format!("{plugin_name}/rl/{instance}"),
            config: config.clone(),
            metrics: RateLimiterMetrics::define(instance),
        });
    }
    for (instance, config) in &policy.bulkheads {
        let wait = config.max_wait_duration_ms;
        entry(&mut out, policy, instance)
            .bulkheads
            .push(SharedBulkhead {
                instance: instance.clone(),
                thread_pool: false,
                key: bulkhead_key(plugin_name, instance, false),
                limits: Limits {
                    max_concurrent: config.max_concurrent_calls,
                    queue_capacity: if wait > 0 { MAX_BULKHEAD_WAITERS } else { 0 },
                },
                max_wait_ms: Some(wait),
                metrics: BulkheadMetrics::define(instance, false),
            });
    }
    for (instance, config) in &policy.thread_pool_bulkheads {
        entry(&mut out, policy, instance)
            .bulkheads
            .push(SharedBulkhead {
                instance: instance.clone(),
                thread_pool: true,
                key: bulkhead_key(plugin_name, instance, true),
                limits: Limits {
                    max_concurrent: config.max_thread_pool_size,
                    queue_capacity: config.queue_capacity,
                },
                max_wait_ms: None,
                metrics: BulkheadMetrics::define(instance, true),
            });
    }
    out
}

/// Creates every rate limiter's and bulkhead's shared state that does not exist yet (on
/// configuration, see `store::create_if_missing`).
pub fn create_missing_state(admission: &SortedMap<String, InstanceAdmission>, now: u64) {
    for admission in admission.values() {
        let limiter = admission.rate_limiter.iter().map(|l| {
            (
                &l.instance,
                &l.key,
                RateLimiter::new(&l.config, now).encode(),
            )
        });
        let bulkheads = admission
            .bulkheads
            .iter()
            .map(|b| (&b.instance, &b.key, Slots::default().encode()));
        for (instance, key, initial) in limiter.chain(bulkheads) {
            if let Err(e) = store::create_if_missing(key, &initial) {
                log::warn!("'{instance}': shared state unavailable ({e})");
            }
        }
    }
}

/// Where a stream's call stands.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Admitted: goes (went) upstream.
    Admitted,
    /// A permit is reserved for `until_ms`.
    RateWait { until_ms: u64 },
    /// Waits for a slot of bulkhead `index`, until `deadline_ms` (None: no deadline).
    Queued {
        index: usize,
        deadline_ms: Option<u64>,
    },
}

/// One stream's admission (of its current attempt): the policy that admits it, its slots,
/// where it stands.
struct StreamAdmission {
    runtime: Rc<Runtime>,
    instance: String,
    /// Indices of the bulkheads whose slot it holds.
    held: Vec<usize>,
    step: Step,
    /// A replay (the tick dispatches it), not the first attempt (the tick resumes the request).
    replay: bool,
}

/// This worker's admissions (streams and the root share them: one VM, one thread).
#[derive(Default)]
pub struct Admissions {
    /// This worker's id in the bulkheads' shared slots (see [`store_worker_id`]).
    pub worker: u32,
    by_stream: SortedMap<u32, StreamAdmission>,
    /// Replays in flight whose caller went away, by callout token, with when it went: the
    /// upstream still serves them (a Wasm filter cannot cancel its callout), so their slots
    /// stay taken until the answer ([`orphan_answered`]).
    orphans: SortedMap<u32, (StreamAdmission, u64)>,
    last_heartbeat_ms: u64,
}

pub type SharedAdmissions = Rc<RefCell<Admissions>>;

/// What the stream does with its request.
pub enum Admit {
    Go,
    /// Paused; the tick resumes or refuses it.
    Wait,
    Refused(LocalResponse),
}

/// What a replay gets (see [`Admit`]); a refusal is the retry's to judge.
pub enum ReplayAdmit {
    Go,
    /// Waits; the tick reports the end of the wait to [`retry::on_admitted`].
    Wait,
    Refused(Refusal),
}

/// Where an attempt stands with the rate limiter and bulkheads.
enum Admission {
    Go,
    Wait,
    Refused(Refusal),
}

/// A new call of `instance` on `stream` (after the breaker permitted).
pub fn admit(
    admissions: &SharedAdmissions,
    runtime: &Rc<Runtime>,
    stream: u32,
    instance: &str,
    now: u64,
) -> Admit {
    match admit_attempt(admissions, runtime, stream, instance, now, false) {
        Admission::Go => Admit::Go,
        Admission::Wait => Admit::Wait,
        Admission::Refused(refusal) => Admit::Refused(refusal_response(runtime, instance, refusal)),
    }
}

/// The next attempt (a replay) of `instance` on `stream`, after the breaker permitted it.
pub fn admit_replay(
    admissions: &SharedAdmissions,
    runtime: &Rc<Runtime>,
    stream: u32,
    instance: &str,
    now: u64,
) -> ReplayAdmit {
    // The previous attempt's slots are back by now; if not, they go back here, never twice.
    attempt_ended(admissions, stream, now);
    match admit_attempt(admissions, runtime, stream, instance, now, true) {
        Admission::Go => ReplayAdmit::Go,
        Admission::Wait => ReplayAdmit::Wait,
        Admission::Refused(refusal) => ReplayAdmit::Refused(refusal),
    }
}

/// The caller's answer to a refusal: the instance's fallback, or the module's default.
pub fn refusal_response(runtime: &Runtime, instance: &str, refusal: Refusal) -> LocalResponse {
    let configured = runtime
        .admission
        .get(instance)
        .and_then(|a| a.fallback.as_ref());
    fallback::render_refusal(configured, instance, refusal)
}

fn admit_attempt(
    admissions: &SharedAdmissions,
    runtime: &Rc<Runtime>,
    stream: u32,
    instance: &str,
    now: u64,
    replay: bool,
) -> Admission {
    let Some(admission) = runtime.admission.get(instance) else {
        return Admission::Go;
    };
    let mut entry = StreamAdmission {
        runtime: runtime.clone(),
        instance: instance.to_string(),
        held: Vec::new(),
        step: Step::Admitted,
        replay,
    };
    if let Some(limiter) = &admission.rate_limiter {
        match limiter.reserve(now) {
            None | Some(Reservation::Now) => {}
            Some(Reservation::Wait(ms)) => {
                limiter.metrics.waiting(1);
                entry.step = Step::RateWait {
                    until_ms: now.saturating_add(ms),
                };
                admissions.borrow_mut().by_stream.insert(stream, entry);
                return Admission::Wait;
            }
            Some(Reservation::Refused { wait_ms }) => {
                return Admission::Refused(Refusal::RateLimited { wait_ms });
            }
        }
    }
    let worker = admissions.borrow().worker;
    let result = enter_bulkheads(admission, &mut entry, 0, worker, now);
    if !entry.held.is_empty() || matches!(entry.step, Step::Queued { .. }) {
        admissions.borrow_mut().by_stream.insert(stream, entry);
    }
    result
}

/// The stream's current attempt ended (its response or answer arrived, or it did not go out):
/// its slots go back.
pub fn attempt_ended(admissions: &SharedAdmissions, stream: u32, now: u64) {
    on_stream_end(admissions, stream, || now);
}

/// Enters the instance's bulkheads from `from` on.
fn enter_bulkheads(
    admission: &InstanceAdmission,
    entry: &mut StreamAdmission,
    from: usize,
    worker: u32,
    now: u64,
) -> Admission {
    for (index, bulkhead) in admission.bulkheads.iter().enumerate().skip(from) {
        match bulkhead.update(|slots| slots.try_enter(worker, now, bulkhead.limits)) {
            // Shared state unavailable: fail open, nothing held.
            None => {}
            Some(Entry::Entered) => entry.held.push(index),
            Some(Entry::Queued) => {
                entry.step = Step::Queued {
                    index,
                    deadline_ms: bulkhead.max_wait_ms.map(|ms| now.saturating_add(ms)),
                };
                return Admission::Wait;
            }
            Some(Entry::Full) => {
                release_held(admission, entry, worker, now);
                return Admission::Refused(Refusal::BulkheadFull {
                    thread_pool: bulkhead.thread_pool,
                });
            }
        }
    }
    entry.step = Step::Admitted;
    Admission::Go
}

fn release_held(admission: &InstanceAdmission, entry: &mut StreamAdmission, worker: u32, now: u64) {
    for index in entry.held.drain(..) {
        if let Some(bulkhead) = admission.bulkheads.get(index) {
            bulkhead.update(|slots| slots.release(worker, now));
        }
    }
}

/// Gives back whatever the stream holds or waits for (its stream ended).
/// `now`: the clock, read only if there is something to give back.
pub fn on_stream_end(admissions: &SharedAdmissions, stream: u32, now: impl FnOnce() -> u64) {
    let (entry, worker) = {
        let mut admissions = admissions.borrow_mut();
        (admissions.by_stream.remove(&stream), admissions.worker)
    };
    if let Some(entry) = entry {
        give_back(entry, worker, now());
    }
}

/// The stream ended; `in_flight`: the token of its replay still at the upstream, whose slot
/// stays taken until the callout's answer ([`orphan_answered`]). Anything else goes back now.
pub fn on_stream_end_with(
    admissions: &SharedAdmissions,
    stream: u32,
    in_flight: Option<u32>,
    now: impl FnOnce() -> u64,
) {
    if let Some(token) = in_flight {
        let mut admissions = admissions.borrow_mut();
        let holds_for_replay = admissions
            .by_stream
            .get(&stream)
            .is_some_and(|e| e.replay && matches!(e.step, Step::Admitted) && !e.held.is_empty());
        if holds_for_replay {
            if let Some(entry) = admissions.by_stream.remove(&stream) {
                admissions.orphans.insert(token, (entry, now()));
                return;
            }
        }
    }
    on_stream_end(admissions, stream, now);
}

/// The answer to callout `token` arrived after its caller went away: its slot goes back.
pub fn orphan_answered(admissions: &SharedAdmissions, token: u32, now: u64) {
    let (orphan, worker) = {
        let mut admissions = admissions.borrow_mut();
        (admissions.orphans.remove(&token), admissions.worker)
    };
    if let Some((entry, _)) = orphan {
        give_back(entry, worker, now);
    }
}

fn give_back(mut entry: StreamAdmission, worker: u32, now: u64) {
    let runtime = entry.runtime.clone();
    let Some(admission) = runtime.admission.get(&entry.instance) else {
        return;
    };
    match entry.step {
        Step::Admitted => {}
        Step::RateWait { .. } => {
            if let Some(limiter) = &admission.rate_limiter {
                limiter.metrics.waiting(-1);
            }
        }
        Step::Queued { index, .. } => {
            if let Some(bulkhead) = admission.bulkheads.get(index) {
                bulkhead.update(|slots| slots.leave_queue(worker, now));
            }
        }
    }
    release_held(admission, &mut entry, worker, now);
}

/// Whether a call of this worker waits for a permit or a slot (the tick resumes it).
pub fn any_waiting(admissions: &SharedAdmissions) -> bool {
    admissions
        .borrow()
        .by_stream
        .values()
        .any(|e| !matches!(e.step, Step::Admitted))
}

/// The tick: resumes the waiting calls whose permit is due or whose slot is free (dispatches
/// the waiting replays), refuses those whose wait is over (a replay's refusal goes to its
/// retry); renews this worker's lease on the slots it holds and publishes the gauges (each
/// second).
pub fn on_tick(
    admissions: &SharedAdmissions,
    calls: &SharedCalls,
    runtime: Option<&Rc<Runtime>>,
    now: u64,
) {
    let (waiting, worker): (Vec<u32>, u32) = {
        let admissions = admissions.borrow();
        let waiting = admissions
            .by_stream
            .iter()
            .filter(|(_, e)| !matches!(e.step, Step::Admitted))
            .map(|(stream, _)| *stream)
            .collect();
        (waiting, admissions.worker)
    };
    for stream in waiting {
        let Some(mut entry) = admissions.borrow_mut().by_stream.remove(&stream) else {
            continue;
        };
        let runtime = entry.runtime.clone();
        let Some(admission) = runtime.admission.get(&entry.instance) else {
            continue;
        };
        let outcome = match entry.step {
            Step::Admitted => Admission::Go,
            Step::RateWait { until_ms } if now < until_ms => Admission::Wait,
            Step::RateWait { .. } => {
                if let Some(limiter) = &admission.rate_limiter {
                    limiter.metrics.waiting(-1);
                }
                enter_bulkheads(admission, &mut entry, 0, worker, now)
            }
            Step::Queued { index, deadline_ms } => {
                let Some(bulkhead) = admission.bulkheads.get(index) else {
                    continue;
                };
                let promoted = bulkhead
                    .update(|slots| slots.try_promote(worker, now, bulkhead.limits))
                    .unwrap_or(true);
                if promoted {
                    entry.held.push(index);
                    enter_bulkheads(admission, &mut entry, index + 1, worker, now)
                } else if deadline_ms.is_some_and(|deadline| now >= deadline) {
                    bulkhead.update(|slots| slots.leave_queue(worker, now));
                    release_held(admission, &mut entry, worker, now);
                    Admission::Refused(Refusal::BulkheadFull {
                        thread_pool: bulkhead.thread_pool,
                    })
                } else {
                    Admission::Wait
                }
            }
        };
        let replay = entry.replay;
        match outcome {
            Admission::Wait => {
                admissions.borrow_mut().by_stream.insert(stream, entry);
            }
            Admission::Go => {
                let holds = !entry.held.is_empty();
                if holds {
                    admissions.borrow_mut().by_stream.insert(stream, entry);
                }
                if replay {
                    retry::on_admitted(&runtime, calls, admissions, stream, now, Ok(()));
                } else if abi::set_effective_context(stream).is_ok() {
                    if let Err(e) = abi::resume_http_request() {
                        log::warn!("request not resumed (host status {})", e.0);
                    }
                }
            }
            Admission::Refused(refusal) if replay => {
                retry::on_admitted(&runtime, calls, admissions, stream, now, Err(refusal));
            }
            Admission::Refused(refusal) => {
                let response = refusal_response(&runtime, &entry.instance, refusal);
                refuse_paused(&runtime, calls, stream, &response, now);
            }
        }
    }
    let due = now.saturating_sub(admissions.borrow().last_heartbeat_ms) >= 1000;
    if due {
        admissions.borrow_mut().last_heartbeat_ms = now;
        let stale: Vec<u32> = admissions
            .borrow()
            .orphans
            .iter()
            .filter(|(_, (_, since))| now.saturating_sub(*since) >= ORPHAN_MAX_MS)
            .map(|(token, _)| *token)
            .collect();
        for token in stale {
            orphan_answered(admissions, token, now);
        }
        heartbeat(admissions, worker, now);
        if let Some(runtime) = runtime {
            for admission in runtime.admission.values() {
                for bulkhead in &admission.bulkheads {
                    bulkhead.publish_stored();
                }
                if let Some(limiter) = &admission.rate_limiter {
                    limiter.publish_stored(now);
                }
            }
        }
    }
}

/// Renews this worker's lease on every bulkhead it holds or waits for a slot of.
fn heartbeat(admissions: &SharedAdmissions, worker: u32, now: u64) {
    let mut done: Vec<String> = Vec::new();
    let admissions = admissions.borrow();
    let orphans = admissions.orphans.values().map(|(entry, _)| entry);
    for entry in admissions.by_stream.values().chain(orphans) {
        let Some(admission) = entry.runtime.admission.get(&entry.instance) else {
            continue;
        };
        let queued = match entry.step {
            Step::Queued { index, .. } => Some(index),
            _ => None,
        };
        for index in entry.held.iter().copied().chain(queued) {
            if let Some(bulkhead) = admission.bulkheads.get(index) {
                if !done.contains(&bulkhead.key) {
                    done.push(bulkhead.key.clone());
                    bulkhead.update(|slots| slots.heartbeat(worker, now));
                }
            }
        }
    }
}

/// Answers a paused request refused at the end of its wait: the breaker's permission is
/// handed back unrecorded, the call forgotten (a first attempt's refusal is not retried), the
/// refusal sent.
fn refuse_paused(
    runtime: &Runtime,
    calls: &SharedCalls,
    stream: u32,
    response: &LocalResponse,
    now: u64,
) {
    forget_call(runtime, calls, stream, now);
    if abi::set_effective_context(stream).is_err() {
        return;
    }
    if let Err(e) = abi::send_local_response(
        response.status,
        &response.headers,
        &response.body,
        "resilience4j_refused",
    ) {
        log::warn!("refusal not sent (host status {})", e.0);
    }
}

/// The stream's call will not go upstream: hands the breaker's permission back.
pub fn forget_call(runtime: &Runtime, calls: &SharedCalls, stream: u32, now: u64) {
    let call = calls.borrow_mut().by_stream.remove(&stream);
    if let Some(call) = call {
        if call.sequence.permission_held() {
            if let Some(breaker) = runtime.breakers.get(&*call.instance) {
                breaker.release(now);
            }
        }
    }
}

/// This VM's id among the workers sharing the bulkheads: a counter in shared data.
pub fn store_worker_id(plugin_name: &str) -> u32 {
    let key = format!("{plugin_name}/workers");
    let result = store::cas_update(&key, |stored| {
        let last = stored
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        let next = last.wrapping_add(1).max(1);
        Ok((Some(next.to_le_bytes().to_vec()), next))
    });
    match result {
        Ok(id) => id,
        Err(e) => {
            log::warn!("worker id unavailable ({e}); bulkhead leases share id 0");
            0
        }
    }
}
