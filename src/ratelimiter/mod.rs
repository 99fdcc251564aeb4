//! A rate limiter shared by every worker of an Envoy, with resilience4j's AtomicRateLimiter
//! semantics: time is cut into cycles of `limit-refresh-period` counted from a start common to
//! every worker (stored with the state); each cycle refills the permits to `limit-for-period`
//! (not beyond: no burst above one period's worth); a call that finds none may reserve one of
//! a coming cycle (the count goes negative: the debt is repaid by the next refills first) when
//! the wait is no longer than `timeout-duration`, else it is refused at once and reserves
//! nothing.
//!
//! Differences, for a sidecar: time is in whole milliseconds (a sub-millisecond
//! `limit-refresh-period`, as resilience4j's default 500ns, is 1 ms); a refused call is answered
//! at once, where resilience4j's blocking `acquirePermission` parks the refused thread for the
//! whole timeout first (the sidecar follows `reservePermission`, what resilience4j's reactive
//! operators use). The clock is the host's system clock, which can step back: a cycle never
//! goes back.

#[cfg(test)]
mod tests;

use crate::policy::RateLimiterConfig;

const FORMAT_VERSION: u8 = 1;
const ENCODED_BYTES: usize = 1 + 4 + 8 + 8 + 8 + 8;

/// One rate limiter's state, as stored in shared data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimiter {
    /// The config it was built for (limit and period); another config starts afresh.
    limit: u32,
    period_ms: u64,
    /// Cycles are counted from here (ms, the common clock).
    start_ms: u64,
    active_cycle: u64,
    /// Negative: permits of coming cycles already reserved.
    active_permissions: i64,
}

/// What a call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A permit now.
    Now,
    /// A permit reserved: the call goes on after this many milliseconds.
    Wait(u64),
    /// Refused (RequestNotPermitted): a permit would take this long, more than the timeout.
    Refused { wait_ms: u64 },
}

impl RateLimiter {
    /// A fresh limiter: a full period's permits, cycles counted from `now`.
    pub fn new(config: &RateLimiterConfig, now: u64) -> Self {
        RateLimiter {
            limit: config.limit_for_period,
            period_ms: config.limit_refresh_period_ms.max(1),
            start_ms: now,
            active_cycle: 0,
            active_permissions: i64::from(config.limit_for_period),
        }
    }

    /// Whether this state was built for `config` (else the caller starts afresh).
    pub fn is_for(&self, config: &RateLimiterConfig) -> bool {
        self.limit == config.limit_for_period
            && self.period_ms == config.limit_refresh_period_ms.max(1)
    }

    /// Refills for the cycles passed since the last call (AtomicRateLimiter's lazy refill).
    fn refresh(&mut self, now: u64) {
        let cycle = now.saturating_sub(self.start_ms) / self.period_ms;
        if cycle > self.active_cycle {
            let elapsed = i64::try_from(cycle - self.active_cycle).unwrap_or(i64::MAX);
            let refill = elapsed.saturating_mul(i64::from(self.limit));
            self.active_permissions = self
                .active_permissions
                .saturating_add(refill)
                .min(i64::from(self.limit));
            self.active_cycle = cycle;
        }
    }

    /// Milliseconds until a permit is this call's (0: now), as nanosToWaitForPermission.
    fn wait_ms(&self, now: u64) -> u64 {
        if self.active_permissions >= 1 {
            return 0;
        }
        let next_cycle_at = self
            .start_ms
            .saturating_add((self.active_cycle + 1).saturating_mul(self.period_ms));
        let to_next_cycle = next_cycle_at.saturating_sub(now);
        let limit = i64::from(self.limit.max(1));
        let at_next_cycle = self.active_permissions.saturating_add(limit);
        // Whole cycles more until the debt is repaid: ceil((1 - at_next_cycle) / limit).
        let missing = 1i64.saturating_sub(at_next_cycle).max(0);
        let full_cycles = u64::try_from((missing + limit - 1) / limit).unwrap_or(0);
        full_cycles
            .saturating_mul(self.period_ms)
            .saturating_add(to_next_cycle)
    }

    /// One permit for a call that may wait up to `timeout_ms` (reservePermission).
    pub fn reserve(&mut self, now: u64, timeout_ms: u64) -> Reservation {
        self.refresh(now);
        let wait = self.wait_ms(now);
        if wait > timeout_ms {
            return Reservation::Refused { wait_ms: wait };
        }
        self.active_permissions = self.active_permissions.saturating_sub(1);
        if wait == 0 {
            Reservation::Now
        } else {
            Reservation::Wait(wait)
        }
    }

    /// Permits available now (negative: reserved ahead), resilience4j's
    /// getAvailablePermissions; the state is not changed.
    pub fn available(&self, now: u64) -> i64 {
        let mut copy = *self;
        copy.refresh(now);
        copy.active_permissions
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_BYTES);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.limit.to_le_bytes());
        out.extend_from_slice(&self.period_ms.to_le_bytes());
        out.extend_from_slice(&self.start_ms.to_le_bytes());
        out.extend_from_slice(&self.active_cycle.to_le_bytes());
        out.extend_from_slice(&self.active_permissions.to_le_bytes());
        out
    }

    /// None: unreadable (another format version, truncated).
    pub fn decode(bytes: &[u8]) -> Option<RateLimiter> {
        let (&FORMAT_VERSION, rest) = bytes.split_first()? else {
            return None;
        };
        let (limit, rest) = rest.split_first_chunk::<4>()?;
        let (period, rest) = rest.split_first_chunk::<8>()?;
        let (start, rest) = rest.split_first_chunk::<8>()?;
        let (cycle, rest) = rest.split_first_chunk::<8>()?;
        let (permissions, rest) = rest.split_first_chunk::<8>()?;
        if !rest.is_empty() {
            return None;
        }
        Some(RateLimiter {
            limit: u32::from_le_bytes(*limit),
            period_ms: u64::from_le_bytes(*period).max(1),
            start_ms: u64::from_le_bytes(*start),
            active_cycle: u64::from_le_bytes(*cycle),
            active_permissions: i64::from_le_bytes(*permissions),
        })
    }
}
