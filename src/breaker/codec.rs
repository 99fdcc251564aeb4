//! The breaker's bytes in proxy-wasm shared data, and the config fingerprint they carry.
//!
//! Layout, version 1 (varint = unsigned LEB128, at most 10 bytes):
//!
//! ```text
//! [0]      format version = 1
//! [1..9]   config_fingerprint(config), u64 little-endian
//! [9]      state = State::index(): 0 CLOSED, 1 OPEN, 2 HALF_OPEN, 3 DISABLED, 4 FORCED_OPEN,
//!          5 METRICS_ONLY
//! then, by state:
//!   CLOSED        window
//!   OPEN          varint open_until_ms, varint attempts, window
//!   HALF_OPEN     varint since_ms, varint attempts, varint permits_left, window
//!   DISABLED      (nothing)
//!   FORCED_OPEN   (nothing)
//!   METRICS_ONLY  window
//! window:
//!   [kind]  0 = CLOSED window, COUNT_BASED; 1 = CLOSED window, TIME_BASED;
//!           2 = HALF_OPEN trial window (COUNT_BASED)
//!   COUNT:  varint n (calls held, ≤ window size), then ceil(n/4) bytes, 2 bits per call,
//!           oldest first: call i sits in byte i/4 at bits 2·(i%4) (bit 0 failed, bit 1 slow);
//!           unused bits zero
//!   TIME:   varint n (buckets, ≤ window seconds), then per bucket, ascending:
//!           varint second (first: epoch second; then: seconds after the previous bucket, ≥ 1),
//!           varint calls (≥ 1), varint failed, varint slow, varint slow_failed
//! ```
//!
//! A COUNT_BASED window of 100 calls in CLOSED is 10 + 1 + 1 + 25 = 37 bytes. Window sizes,
//! thresholds and waits are not stored: they come from the config, which the fingerprint
//! pins. Decoding accepts exactly what encoding produces (no trailing bytes, consistent
//! counts, sizes within the config's), so bytes that decode re-encode identically.

use std::collections::VecDeque;

use super::window::{Bucket, Counts, Window};
use super::{CircuitBreaker, DecodeError, Inner, Shape, State};
use crate::outcome::OutcomeMatcher;
use crate::policy::{BreakerConfig, InitialState, SlidingWindowType, StateAfterWait};

pub(crate) const VERSION: u8 = 1;

const KIND_CLOSED_COUNT: u8 = 0;
const KIND_CLOSED_TIME: u8 = 1;
const KIND_HALF_OPEN: u8 = 2;

/// Two bits per call: four calls a byte.
const CALLS_PER_BYTE: usize = 4;

// ---- config fingerprint ----

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    fn matchers(&mut self, list: &[OutcomeMatcher]) {
        self.u64(list.len() as u64);
        for m in list {
            match *m {
                OutcomeMatcher::Status(code) => {
                    self.u8(0);
                    self.u16(code);
                }
                OutcomeMatcher::StatusClass(class) => {
                    self.u8(1);
                    self.u8(class);
                }
                OutcomeMatcher::ConnectFailure => self.u8(2),
                OutcomeMatcher::Reset => self.u8(3),
                OutcomeMatcher::Timeout => self.u8(4),
                OutcomeMatcher::GrpcStatus(code) => {
                    self.u8(5);
                    self.u8(code);
                }
                OutcomeMatcher::GrpcError => self.u8(6),
                // Never in a breaker's lists (the policy keeps them to Retry's).
                OutcomeMatcher::BulkheadFull => self.u8(7),
                OutcomeMatcher::RateLimited => self.u8(8),
            }
        }
    }
}

/// FNV-1a (64 bit) over a canonical byte encoding of every config field (little-endian
/// integers, floats by `to_bits`, enums and options by tag). Stable across builds and
/// platforms, unlike std's `DefaultHasher`, because every worker and every filter build that
/// shares the data must agree on it.
///
/// Fields added after the first release are hashed last, each behind its own tag byte and
/// only when not at its default: a config that does not use them keeps the fingerprint it
/// had (its breakers survive a filter upgrade), and the byte string stays uniquely decodable
/// (the lists before are length-prefixed, the tags ascend).
pub fn config_fingerprint(config: &BreakerConfig) -> u64 {
    // Destructured without `..`: a new config field does not compile until it is hashed.
    let BreakerConfig {
        failure_rate_threshold,
        slow_call_rate_threshold,
        slow_call_duration_threshold_ms,
        sliding_window_type,
        sliding_window_size,
        minimum_number_of_calls,
        wait_duration_in_open_state_ms,
        automatic_transition_from_open_to_half_open_enabled,
        permitted_number_of_calls_in_half_open_state,
        max_wait_duration_in_half_open_state_ms,
        transition_to_state_after_wait_duration,
        open_wait_multiplier,
        open_wait_max_ms,
        open_wait_randomization_factor,
        initial_state,
        record,
        ignore,
    } = config;
    let mut h = Fnv(FNV_OFFSET);
    h.bytes(b"resilience4j.circuitbreaker/v1");
    h.u32(failure_rate_threshold.to_bits());
    h.u32(slow_call_rate_threshold.to_bits());
    h.u64(*slow_call_duration_threshold_ms);
    h.u8(match sliding_window_type {
        SlidingWindowType::CountBased => 0,
        SlidingWindowType::TimeBased => 1,
    });
    h.u32(*sliding_window_size);
    h.u32(*minimum_number_of_calls);
    h.u64(*wait_duration_in_open_state_ms);
    h.u8(u8::from(
        *automatic_transition_from_open_to_half_open_enabled,
    ));
    h.u32(*permitted_number_of_calls_in_half_open_state);
    h.u64(*max_wait_duration_in_half_open_state_ms);
    h.u64(open_wait_multiplier.to_bits());
    match open_wait_max_ms {
        None => h.u8(0),
        Some(max) => {
            h.u8(1);
            h.u64(*max);
        }
    }
    h.u8(match initial_state {
        InitialState::Closed => 0,
        InitialState::Disabled => 1,
        InitialState::ForcedOpen => 2,
        InitialState::MetricsOnly => 3,
        InitialState::Open => 4,
        InitialState::HalfOpen => 5,
    });
    h.matchers(record);
    h.matchers(ignore);
    // Later fields, see above.
    match transition_to_state_after_wait_duration {
        StateAfterWait::Open => {}
        StateAfterWait::Closed => {
            h.u8(1);
            h.u8(0);
        }
    }
    if let Some(factor) = open_wait_randomization_factor {
        h.u8(2);
        h.u64(factor.to_bits());
    }
    h.0
}

// ---- encoding ----

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_window(out: &mut Vec<u8>, shape: Shape, window: &Window) {
    match window {
        Window::Count(ring) => {
            out.push(match shape {
                Shape::Closed => KIND_CLOSED_COUNT,
                Shape::HalfOpen => KIND_HALF_OPEN,
            });
            put_varint(out, ring.len() as u64);
            let mut byte = 0u8;
            for (i, code) in ring.iter().enumerate() {
                let slot = i % CALLS_PER_BYTE;
                byte |= (code & 0b11) << (2 * slot);
                if slot == CALLS_PER_BYTE - 1 {
                    out.push(byte);
                    byte = 0;
                }
            }
            if ring.len() % CALLS_PER_BYTE != 0 {
                out.push(byte);
            }
        }
        Window::Time(buckets) => {
            out.push(KIND_CLOSED_TIME);
            put_varint(out, buckets.len() as u64);
            let mut previous: Option<u64> = None;
            for b in buckets {
                let second = match previous {
                    None => b.epoch_second,
                    Some(p) => b.epoch_second.saturating_sub(p),
                };
                previous = Some(b.epoch_second);
                put_varint(out, second);
                put_varint(out, u64::from(b.counts.calls));
                put_varint(out, u64::from(b.counts.failed));
                put_varint(out, u64::from(b.counts.slow));
                put_varint(out, u64::from(b.counts.slow_failed));
            }
        }
    }
}

pub(crate) fn encode(breaker: &CircuitBreaker, fingerprint: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    out.push(VERSION);
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.push(breaker.state().index());
    match &breaker.inner {
        Inner::Closed { window } | Inner::MetricsOnly { window } => {
            put_window(&mut out, Shape::Closed, window)
        }
        Inner::Open {
            until_ms,
            attempts,
            shape,
            window,
        } => {
            put_varint(&mut out, *until_ms);
            put_varint(&mut out, u64::from(*attempts));
            put_window(&mut out, *shape, window);
        }
        Inner::HalfOpen {
            since_ms,
            attempts,
            permits,
            window,
        } => {
            put_varint(&mut out, *since_ms);
            put_varint(&mut out, u64::from(*attempts));
            put_varint(&mut out, u64::from(*permits));
            put_window(&mut out, Shape::HalfOpen, window);
        }
        Inner::Disabled | Inner::ForcedOpen => {}
    }
    out
}

// ---- decoding ----

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (first, rest) = self.bytes.split_first().ok_or(DecodeError::Corrupt)?;
        self.bytes = rest;
        Ok(*first)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Err(DecodeError::Corrupt);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u64_le(&mut self) -> Result<u64, DecodeError> {
        let raw: [u8; 8] = self.take(8)?.try_into().map_err(|_| DecodeError::Corrupt)?;
        Ok(u64::from_le_bytes(raw))
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            let shift = 7 * i;
            // The 10th byte may only carry the top bit of a u64.
            if i == 9 && bits > 1 {
                return Err(DecodeError::Corrupt);
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                // Canonical only: no trailing zero groups (they would re-encode differently).
                if i > 0 && bits == 0 {
                    return Err(DecodeError::Corrupt);
                }
                return Ok(value);
            }
        }
        Err(DecodeError::Corrupt)
    }

    fn varint_u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::Corrupt)
    }
}

fn read_window(
    r: &mut Reader<'_>,
    config: &BreakerConfig,
    allowed: &[Shape],
) -> Result<(Shape, Window), DecodeError> {
    let kind = r.u8()?;
    let (shape, time) = match kind {
        KIND_CLOSED_COUNT => (Shape::Closed, false),
        KIND_CLOSED_TIME => (Shape::Closed, true),
        KIND_HALF_OPEN => (Shape::HalfOpen, false),
        _ => return Err(DecodeError::Corrupt),
    };
    let expected_time =
        shape == Shape::Closed && config.sliding_window_type == SlidingWindowType::TimeBased;
    if !allowed.contains(&shape) || time != expected_time {
        return Err(DecodeError::Corrupt);
    }
    let size = u64::from(shape.size(config));
    let n = r.varint()?;
    if n > size {
        return Err(DecodeError::Corrupt);
    }
    let n = usize::try_from(n).map_err(|_| DecodeError::Corrupt)?;
    if !time {
        let packed = r.take(n.div_ceil(CALLS_PER_BYTE))?;
        let mut ring = VecDeque::with_capacity(n);
        for i in 0..n {
            let byte = packed
                .get(i / CALLS_PER_BYTE)
                .copied()
                .ok_or(DecodeError::Corrupt)?;
            ring.push_back((byte >> (2 * (i % CALLS_PER_BYTE))) & 0b11);
        }
        // Unused bits of the last byte must be zero (canonical encoding).
        let used_bits = 2 * (n % CALLS_PER_BYTE);
        if used_bits != 0 {
            let last = packed.last().copied().ok_or(DecodeError::Corrupt)?;
            if last >> used_bits != 0 {
                return Err(DecodeError::Corrupt);
            }
        }
        return Ok((shape, Window::Count(ring)));
    }
    // Each bucket takes at least 5 bytes: bound the allocation by the input.
    if n > r.bytes.len() / 5 {
        return Err(DecodeError::Corrupt);
    }
    let mut buckets: Vec<Bucket> = Vec::with_capacity(n);
    let mut first_second: Option<u64> = None;
    for _ in 0..n {
        let second = r.varint()?;
        let epoch_second = match buckets.last() {
            None => second,
            Some(previous) => {
                if second == 0 {
                    return Err(DecodeError::Corrupt);
                }
                previous
                    .epoch_second
                    .checked_add(second)
                    .ok_or(DecodeError::Corrupt)?
            }
        };
        let first = *first_second.get_or_insert(epoch_second);
        // All buckets fit in one window: newest - oldest < size seconds.
        if epoch_second.saturating_sub(first) >= size {
            return Err(DecodeError::Corrupt);
        }
        let counts = Counts {
            calls: r.varint_u32()?,
            failed: r.varint_u32()?,
            slow: r.varint_u32()?,
            slow_failed: r.varint_u32()?,
        };
        if counts.calls == 0 || !counts.is_consistent() {
            return Err(DecodeError::Corrupt);
        }
        buckets.push(Bucket {
            epoch_second,
            counts,
        });
    }
    Ok((shape, Window::Time(buckets)))
}

pub(crate) fn decode(
    bytes: &[u8],
    config: &BreakerConfig,
    fingerprint: u64,
) -> Result<CircuitBreaker, DecodeError> {
    let mut r = Reader { bytes };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::UnknownVersion(version));
    }
    if r.u64_le()? != fingerprint {
        return Err(DecodeError::ConfigChanged);
    }
    let state = State::from_index(r.u8()?).ok_or(DecodeError::Corrupt)?;
    let inner = match state {
        State::Closed => Inner::Closed {
            window: read_window(&mut r, config, &[Shape::Closed])?.1,
        },
        State::MetricsOnly => Inner::MetricsOnly {
            window: read_window(&mut r, config, &[Shape::Closed])?.1,
        },
        State::Open => {
            let until_ms = r.varint()?;
            let attempts = r.varint_u32()?;
            let (shape, window) = read_window(&mut r, config, &[Shape::Closed, Shape::HalfOpen])?;
            Inner::Open {
                until_ms,
                attempts,
                shape,
                window,
            }
        }
        State::HalfOpen => {
            let since_ms = r.varint()?;
            let attempts = r.varint_u32()?;
            let permits = r.varint_u32()?;
            if permits > config.permitted_number_of_calls_in_half_open_state {
                return Err(DecodeError::Corrupt);
            }
            let window = read_window(&mut r, config, &[Shape::HalfOpen])?.1;
            Inner::HalfOpen {
                since_ms,
                attempts,
                permits,
                window,
            }
        }
        State::Disabled => Inner::Disabled,
        State::ForcedOpen => Inner::ForcedOpen,
    };
    if !r.bytes.is_empty() {
        return Err(DecodeError::Corrupt);
    }
    Ok(CircuitBreaker { inner })
}

// ---- peeking: the request path's two common questions without decoding the window ----

/// The stored state, read from the header alone (version and fingerprint checked). None: not
/// this format or this config (the full decode path handles it).
pub(crate) fn peek_state(bytes: &[u8], fingerprint: u64) -> Option<State> {
    let mut r = Reader { bytes };
    if r.u8().ok()? != VERSION || r.u64_le().ok()? != fingerprint {
        return None;
    }
    State::from_index(r.u8().ok()?)
}

/// The stored breaker is CLOSED with a full COUNT_BASED window of fast successes only: exactly
/// the bytes `encode` writes for it (the window holds the config's size, every bit zero, nothing
/// after). Recording one more fast success into it drops the oldest success and adds a new
/// one: the window, the rates and the bytes stay what they are.
pub(crate) fn is_closed_full_of_fast_successes(
    bytes: &[u8],
    config: &BreakerConfig,
    fingerprint: u64,
) -> bool {
    if config.sliding_window_type != SlidingWindowType::CountBased
        || peek_state(bytes, fingerprint) != Some(State::Closed)
    {
        return false;
    }
    // Header: version, fingerprint, state; then kind, varint n, packed calls.
    let Some(window) = bytes.get(10..) else {
        return false;
    };
    let mut r = Reader { bytes: window };
    let (Ok(kind), Ok(n)) = (r.u8(), r.varint()) else {
        return false;
    };
    let size = u64::from(Shape::Closed.size(config));
    let Ok(n_usize) = usize::try_from(n) else {
        return false;
    };
    kind == KIND_CLOSED_COUNT
        && n == size
        && n > 0
        && r.bytes.len() == n_usize.div_ceil(CALLS_PER_BYTE)
        && r.bytes.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        let hash = |s: &[u8]| {
            let mut h = Fnv(FNV_OFFSET);
            h.bytes(s);
            h.0
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn varints_round_trip_and_reject_overlong_forms() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = vec![];
            put_varint(&mut out, v);
            let mut r = Reader { bytes: &out };
            assert_eq!(r.varint(), Ok(v));
            assert!(r.bytes.is_empty());
        }
        // 0 written in two bytes; an 11-byte value; a 10th byte above u64.
        for bad in [
            &[0x80, 0x00][..],
            &[0xff; 11][..],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02][..],
        ] {
            assert_eq!(Reader { bytes: bad }.varint(), Err(DecodeError::Corrupt));
        }
    }
}
