//! A bulkhead's slots shared by every worker of an Envoy (resilience4j's SemaphoreBulkhead,
//! and the thread-pool bulkhead mapped onto the same slots): how many calls are in flight to
//! the upstream and how many wait for a slot, kept per worker so that a worker whose Wasm VM
//! died cannot hold slots for ever.
//!
//! Every worker that holds or waits for a slot has a record: its id, when it was last heard
//! from, its calls in flight and its calls waiting. A live worker renews its record on its tick
//! (every second at least); a record not renewed for [`LEASE_MS`] belongs to a dead VM and its
//! slots and waiters are given back. So a crashed worker throttles the upstream for at most
//! the lease. A record with nothing held is dropped, so the state stays as small as the number
//! of busy workers.
//!
//! Fairness (resilience4j's bulkhead is a fair semaphore): a new call does not take a free slot
//! while calls wait for one; waiting calls take free slots on their worker's tick.
//!
//! Time is passed in (milliseconds, a clock common to every worker).

#[cfg(test)]
mod tests;

/// A worker not heard from for this long is gone: its slots and waiters are given back.
pub const LEASE_MS: u64 = 10_000;

/// Workers (records) kept at most; beyond it the least recently heard from is dropped. Envoy
/// runs one VM per worker thread, so this is far above any real count.
const MAX_WORKERS: usize = 1024;

const FORMAT_VERSION: u8 = 1;
const RECORD_BYTES: usize = 4 + 8 + 4 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WorkerRecord {
    worker: u32,
    seen_ms: u64,
    active: u32,
    waiting: u32,
}

/// The slots of one bulkhead, as stored in shared data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots {
    workers: Vec<WorkerRecord>,
}

/// What a new call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A slot: the call goes on; give it back with [`Slots::release`].
    Entered,
    /// No free slot, but room to wait: the call waits (take a slot with [`Slots::try_promote`],
    /// or give up with [`Slots::leave_queue`]).
    Queued,
    /// No free slot and no room to wait: refused (BulkheadFullException).
    Full,
}

/// A bulkhead's limits: `max_concurrent` in flight, `queue_capacity` waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_concurrent: u32,
    pub queue_capacity: u32,
}

impl Slots {
    /// Calls in flight, across every live worker.
    pub fn active(&self) -> u32 {
        self.workers
            .iter()
            .fold(0u32, |sum, w| sum.saturating_add(w.active))
    }

    /// Calls waiting for a slot, across every live worker.
    pub fn waiting(&self) -> u32 {
        self.workers
            .iter()
            .fold(0u32, |sum, w| sum.saturating_add(w.waiting))
    }

    /// Free slots (resilience4j's availableConcurrentCalls), never negative: a lowered limit
    /// lets the calls in flight finish.
    pub fn available(&self, limits: Limits) -> u32 {
        limits.max_concurrent.saturating_sub(self.active())
    }

    /// A new call of `worker`.
    pub fn try_enter(&mut self, worker: u32, now: u64, limits: Limits) -> Entry {
        self.expire(now);
        let free = self.active() < limits.max_concurrent;
        if free && self.waiting() == 0 {
            if let Some(record) = self.record(worker, now) {
                record.active = record.active.saturating_add(1);
            }
            Entry::Entered
        } else if self.waiting() < limits.queue_capacity {
            if let Some(record) = self.record(worker, now) {
                record.waiting = record.waiting.saturating_add(1);
            }
            Entry::Queued
        } else {
            Entry::Full
        }
    }

    /// One of `worker`'s waiting calls takes a free slot. False: none free (it keeps waiting).
    pub fn try_promote(&mut self, worker: u32, now: u64, limits: Limits) -> bool {
        self.expire(now);
        if self.active() >= limits.max_concurrent {
            self.heartbeat(worker, now);
            return false;
        }
        if let Some(record) = self.record(worker, now) {
            // A waiter whose record expired (its worker stalled past the lease) has no count
            // to take back.
            record.waiting = record.waiting.saturating_sub(1);
            record.active = record.active.saturating_add(1);
        }
        true
    }

    /// One of `worker`'s waiting calls gives up (its wait is over, or its client went away).
    pub fn leave_queue(&mut self, worker: u32, now: u64) {
        if let Some(record) = self.find(worker) {
            record.waiting = record.waiting.saturating_sub(1);
            record.seen_ms = now;
        }
        self.expire(now);
    }

    /// One of `worker`'s calls in flight ends, however it ends.
    pub fn release(&mut self, worker: u32, now: u64) {
        if let Some(record) = self.find(worker) {
            record.active = record.active.saturating_sub(1);
            record.seen_ms = now;
        }
        self.expire(now);
    }

    /// `worker` is alive: renews its lease (a worker with nothing held has no record).
    pub fn heartbeat(&mut self, worker: u32, now: u64) {
        if let Some(record) = self.find(worker) {
            record.seen_ms = record.seen_ms.max(now);
        }
        self.expire(now);
    }

    fn find(&mut self, worker: u32) -> Option<&mut WorkerRecord> {
        self.workers.iter_mut().find(|w| w.worker == worker)
    }

    /// `worker`'s record, made if it has none. None only if the list is inconsistent.
    fn record(&mut self, worker: u32, now: u64) -> Option<&mut WorkerRecord> {
        let index = match self.workers.iter().position(|w| w.worker == worker) {
            Some(index) => index,
            None => {
                if self.workers.len() >= MAX_WORKERS {
                    if let Some(oldest) = (0..self.workers.len())
                        .min_by_key(|i| self.workers.get(*i).map_or(0, |w| w.seen_ms))
                    {
                        self.workers.remove(oldest);
                    }
                }
                self.workers.push(WorkerRecord {
                    worker,
                    seen_ms: now,
                    active: 0,
                    waiting: 0,
                });
                self.workers.len() - 1
            }
        };
        let record = self.workers.get_mut(index)?;
        record.seen_ms = record.seen_ms.max(now);
        Some(record)
    }

    /// Drops dead workers' records (their slots and waiters are free again) and idle ones.
    fn expire(&mut self, now: u64) {
        self.workers.retain(|w| {
            (w.active > 0 || w.waiting > 0) && now.saturating_sub(w.seen_ms) < LEASE_MS
        });
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.workers.len() * RECORD_BYTES);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&(self.workers.len() as u16).to_le_bytes());
        for w in &self.workers {
            out.extend_from_slice(&w.worker.to_le_bytes());
            out.extend_from_slice(&w.seen_ms.to_le_bytes());
            out.extend_from_slice(&w.active.to_le_bytes());
            out.extend_from_slice(&w.waiting.to_le_bytes());
        }
        out
    }

    /// Unreadable bytes (another format version, truncated) read as no slot held: a bulkhead
    /// must never stay shut on state it cannot read.
    pub fn decode(bytes: &[u8]) -> Slots {
        let Some((&FORMAT_VERSION, rest)) = bytes.split_first() else {
            return Slots::default();
        };
        let Some((count, mut rest)) = rest.split_first_chunk::<2>() else {
            return Slots::default();
        };
        let count = usize::from(u16::from_le_bytes(*count));
        let mut workers = Vec::with_capacity(count.min(MAX_WORKERS));
        for _ in 0..count {
            let Some((record, tail)) = rest.split_first_chunk::<RECORD_BYTES>() else {
                return Slots::default();
            };
            let u32_at = |at: usize| {
                record
                    .get(at..at + 4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map_or(0, u32::from_le_bytes)
            };
            let seen = record
                .get(4..12)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes);
            workers.push(WorkerRecord {
                worker: u32_at(0),
                seen_ms: seen,
                active: u32_at(12),
                waiting: u32_at(16),
            });
            rest = tail;
        }
        if !rest.is_empty() {
            return Slots::default();
        }
        Slots { workers }
    }
}
