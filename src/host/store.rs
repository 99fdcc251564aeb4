//! Cross-worker state in proxy-wasm shared data: each instance's breaker and retry budget.
//!
//! Keys carry the plugin name (Istio sets no vm_id, so several plugins may share one data
//! space): `<plugin>/cb/<instance>` and `<plugin>/rb/<instance>`; their number is bounded by
//! the policy's instance count. Values are versioned encodings from the core. Updates are
//! read-modify-write with the CAS token in a bounded retry loop (the istio local rate limit
//! model): a lost race re-reads and re-applies, so no update is lost.

use crate::breaker::{CircuitBreaker, DecodeError};
use crate::policy::{BreakerConfig, BudgetConfig};
use crate::retry::budget::RetryBudget;

use super::abi::{self, HostError, SetOutcome, METRIC_GAUGE};
use super::metrics;

/// Beyond this many lost CAS races in one update we stop and fail open: a request must not
/// spin. Two workers per Envoy rarely collide more than a few times.
const MAX_CAS_ATTEMPTS: u32 = 64;

#[derive(Debug)]
pub enum StoreError {
    Host(HostError),
    /// Every CAS attempt lost to another worker.
    Contended,
    /// The stored breaker belongs to another config of this instance: a policy rollout is in
    /// progress and this worker still runs the old (or already the new) policy. The worker
    /// that configures the new policy resets the state; until then this worker leaves it.
    ConfigChanged,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Host(e) => write!(f, "shared data host status {}", e.0),
            StoreError::Contended => {
                write!(f, "{MAX_CAS_ATTEMPTS} CAS attempts lost to other workers")
            }
            StoreError::ConfigChanged => write!(f, "stored state belongs to another config"),
        }
    }
}

impl From<HostError> for StoreError {
    fn from(e: HostError) -> Self {
        StoreError::Host(e)
    }
}

pub fn breaker_key(plugin_name: &str, instance: &str) -> String {
    format!("{plugin_name}/cb/{instance}")
}

pub fn budget_key(plugin_name: &str, instance: &str) -> String {
    format!("{plugin_name}/rb/{instance}")
}

/// How many times a key's value has been written, in an Envoy gauge every worker shares. A
/// worker that read the value while the count was N knows the value unchanged while the count
/// still reads N: a check that costs a metric read instead of a copy of the value. Each writer
/// counts its write right after it, before its response leaves, so calls one at a time see
/// every write another worker made; only a call that overlaps a write can miss it, as a call
/// racing another thread's transition in resilience4j's breaker does.
pub struct WriteCount {
    /// None: no gauge (refused, or a stat Envoy's stats matcher drops): every check reads.
    id: Option<u32>,
}

impl WriteCount {
    /// `name`: the gauge's stat name, one per key (across plugins sharing a name it only
    /// counts more writes).
    pub fn define(name: String) -> Self {
        let id = metrics::define(METRIC_GAUGE, name).filter(|&id| {
            // A stat the stats matcher rejects is a null stat that always reads 0: it would
            // never show a write. One count of our own tells (it also only adds a write).
            abi::increment_metric(id, 1).is_ok() && abi::get_metric(id).is_ok_and(|n| n > 0)
        });
        WriteCount { id }
    }

    /// The count now (None: unknown, so nothing read before can be trusted).
    pub fn current(&self) -> Option<u64> {
        abi::get_metric(self.id?).ok()
    }

    fn count_one(&self) {
        if let Some(id) = self.id {
            if abi::increment_metric(id, 1).is_err() {
                log::warn!("shared state write count not incremented: workers re-read");
            }
        }
    }
}

/// A shared-data value as read, with its CAS token (None: no such key).
pub type Stored = Option<(Vec<u8>, u32)>;

/// Stores `initial` under `key` unless the key exists. Called on configuration, which Envoy
/// runs on the main thread before any worker gets the new policy: proxy-wasm has no
/// create-if-absent, and the CAS loop's first write to a missing key is unconditional, so two
/// workers creating one key under load would each overwrite the other's first update (seen:
/// 5 of 4 rate-limiter permits handed out in a burst across workers). True: created here.
pub fn create_if_missing(key: &str, initial: &[u8]) -> Result<bool, StoreError> {
    if abi::get_shared_data(key)?.is_some() {
        return Ok(false);
    }
    abi::set_shared_data(key, initial, 0)?;
    Ok(true)
}

/// The CAS loop. `op` sees the stored bytes (None: no such key) and returns the bytes to
/// store (None: nothing changed) and a result; it runs once per attempt on fresh bytes.
pub(super) fn cas_update<R>(
    key: &str,
    op: impl FnMut(Option<&[u8]>) -> Result<(Option<Vec<u8>>, R), StoreError>,
) -> Result<R, StoreError> {
    cas_update_from(key, None, None, op)
}

/// The CAS loop whose first attempt may use a value the caller has just read (`first`), so
/// a peek followed by an update costs one read, not two; a lost race re-reads as always.
/// `writes`: the key's write count, counted after each write.
fn cas_update_from<R>(
    key: &str,
    writes: Option<&WriteCount>,
    mut first: Option<Stored>,
    mut op: impl FnMut(Option<&[u8]>) -> Result<(Option<Vec<u8>>, R), StoreError>,
) -> Result<R, StoreError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let read = match first.take() {
            Some(stored) => stored,
            None => abi::get_shared_data(key)?,
        };
        let (stored, cas) = match read {
            Some((bytes, cas)) => (Some(bytes), cas),
            None => (None, 0),
        };
        let (write, result) = op(stored.as_deref())?;
        let Some(bytes) = write else {
            return Ok(result);
        };
        if stored.as_deref() == Some(bytes.as_slice()) {
            return Ok(result);
        }
        match abi::set_shared_data(key, &bytes, cas)? {
            SetOutcome::Written => {
                if let Some(writes) = writes {
                    writes.count_one();
                }
                return Ok(result);
            }
            SetOutcome::CasMismatch => continue,
        }
    }
    Err(StoreError::Contended)
}

/// The instance's stored breaker bytes and CAS token (one shared-data read): for the request
/// path's peeks (`CircuitBreaker::stored_*`), which decide without decoding whether an update
/// would change anything; when it would, the read is handed to [`update_breaker`] as its
/// first attempt. None: no such key yet.
pub fn read_breaker(key: &str) -> Result<Stored, StoreError> {
    Ok(abi::get_shared_data(key)?)
}

/// Applies `op` to the instance's shared breaker and stores the result. `fingerprint` is
/// `config_fingerprint(config)`, computed once per instance. `read`: the value the caller has
/// just read with [`read_breaker`], used for the first attempt (None: read it here).
pub fn update_breaker<R>(
    key: &str,
    writes: &WriteCount,
    config: &BreakerConfig,
    fingerprint: u64,
    now_ms: u64,
    read: Option<Stored>,
    mut op: impl FnMut(&mut CircuitBreaker) -> R,
) -> Result<R, StoreError> {
    cas_update_from(key, Some(writes), read, |stored| {
        let mut breaker =
            match stored.map(|b| CircuitBreaker::decode_pinned(b, config, fingerprint)) {
                Some(Ok(breaker)) => breaker,
                Some(Err(DecodeError::ConfigChanged)) => return Err(StoreError::ConfigChanged),
                // Unreadable (another format version) or missing: start fresh, as resilience4j
                // does for a new breaker. An old filter version's state is never misread.
                Some(Err(_)) | None => CircuitBreaker::new(config, now_ms, abi::random01),
            };
        let result = op(&mut breaker);
        Ok((Some(breaker.encode_pinned(fingerprint)), result))
    })
}

/// On (re)configuration: keep the stored breaker when it was built for this very config
/// (a change to another instance must not reset it), else start it fresh. True: reset.
pub fn ensure_breaker(
    key: &str,
    writes: &WriteCount,
    config: &BreakerConfig,
    now_ms: u64,
) -> Result<bool, StoreError> {
    cas_update_from(key, Some(writes), None, |stored| {
        match stored.map(|b| CircuitBreaker::decode(b, config)) {
            Some(Ok(_)) => Ok((None, false)),
            _ => Ok((
                Some(CircuitBreaker::new(config, now_ms, abi::random01).encode(config)),
                true,
            )),
        }
    })
}

/// Counts requests against the instance's retry budget.
pub fn budget_record_requests(
    key: &str,
    config: &BudgetConfig,
    now_ms: u64,
    count: u32,
) -> Result<(), StoreError> {
    cas_update(key, |stored| {
        let mut budget = stored.map(RetryBudget::decode).unwrap_or_default();
        budget.record_requests(config, now_ms, count);
        Ok((Some(budget.encode()), ()))
    })
}

/// Takes one retry from the instance's budget; false: exhausted.
pub fn budget_try_withdraw(
    key: &str,
    config: &BudgetConfig,
    now_ms: u64,
) -> Result<bool, StoreError> {
    cas_update(key, |stored| {
        let mut budget = stored.map(RetryBudget::decode).unwrap_or_default();
        let allowed = budget.try_withdraw(config, now_ms);
        Ok((allowed.then(|| budget.encode()), allowed))
    })
}
