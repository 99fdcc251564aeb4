//! A bound on the distinct stat names the filter defines over the life of the Envoy process.
//!
//! Envoy never frees a stat a Wasm module defined, and every policy push with new instance
//! names (or events with new topics) defines new ones: without a bound, pushes grow Envoy's
//! memory for good (~600 bytes a stat). Each name is admitted once process-wide: names seen
//! before are always admitted (defining them again costs nothing), new names until
//! [`MAX_STAT_NAMES`]; beyond that a new name gets no stat (its counts are not exported) and
//! the filter says so once at error level.
//!
//! Process-wide, in shared data, because Envoy configures each new policy first in a canary
//! VM cloned for the purpose, which defines the policy's stats too and remembers nothing. The
//! bookkeeping is one shared-data key per admitted name (`<filter>/stats/<hash>`, bounded by
//! the cap) and a count; each VM caches what it has seen.
//!
//! [`MAX_STAT_NAMES`] is about three times the names of the largest policy the parser accepts
//! (256 instances × 27 names, plus 65 topics × 9 names per worker).

use std::cell::RefCell;

use super::abi::{self, SetOutcome};
use super::boot::fingerprint;
use crate::sorted_map::SortedMap;

/// Distinct stat names the filter defines over the process lifetime (~12 MB of Envoy stats).
pub const MAX_STAT_NAMES: u32 = 20_000;
const MAX_CAS_ATTEMPTS: u32 = 64;

thread_local! {
    /// Hashes of names this VM knows to be admitted.
    static SEEN: RefCell<SortedMap<u64, ()>> = const { RefCell::new(SortedMap::new()) };
}

fn prefix() -> &'static str {
    crate::FILTER_NAME
}

/// Whether `name` may be defined. Host errors admit it (stats never fail a request and the
/// bound is not worth a missing metric).
pub fn admit(name: &str) -> bool {
    let hash = fingerprint(name.as_bytes());
    if SEEN.with(|seen| seen.borrow().contains_key(&hash)) {
        return true;
    }
    let key = format!("{}/stats/{hash:016x}", prefix());
    let admitted = match abi::get_shared_data(&key) {
        Ok(Some(_)) | Err(_) => true,
        Ok(None) => match take_slot() {
            Some(true) => {
                let _ = abi::set_shared_data(&key, b"", 0);
                true
            }
            Some(false) => {
                refused(name);
                false
            }
            None => true,
        },
    };
    if admitted {
        SEEN.with(|seen| seen.borrow_mut().insert(hash, ()));
    }
    admitted
}

/// Takes one from the process-wide count: Some(false) when it is spent, None on host errors.
fn take_slot() -> Option<bool> {
    let key = format!("{}/stats/count", prefix());
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (count, cas) = match abi::get_shared_data(&key).ok()? {
            Some((bytes, cas)) => (
                bytes
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map_or(0, u32::from_le_bytes),
                cas,
            ),
            None => (0, 0),
        };
        if count >= MAX_STAT_NAMES {
            return Some(false);
        }
        match abi::set_shared_data(&key, &(count + 1).to_le_bytes(), cas).ok()? {
            SetOutcome::Written => return Some(true),
            SetOutcome::CasMismatch => continue,
        }
    }
    None
}

/// Logs the first refusal in the process.
fn refused(name: &str) {
    let key = format!("{}/stats/full", prefix());
    if let Ok(Some(_)) = abi::get_shared_data(&key) {
        return;
    }
    if let Ok(SetOutcome::Written) = abi::set_shared_data(&key, b"1", 0) {
        log::error!(
            "stats: {MAX_STAT_NAMES} distinct stat names defined since Envoy started (Envoy never \
             frees them); new instance or topic names get no stats from now on (first refused: \
             {}). Restart Envoy to start afresh.",
            crate::policy::shorten(name)
        );
    }
}
