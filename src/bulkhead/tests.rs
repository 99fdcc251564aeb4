//! The shared slots, specified the way resilience4j's `SemaphoreBulkheadTest` describes a
//! bulkhead, plus what a sidecar adds: workers, leases, waiting. Time is passed in.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

const T0: u64 = 1_700_000_000_000;
const W1: u32 = 1;
const W2: u32 = 2;

fn limits(max_concurrent: u32, queue_capacity: u32) -> Limits {
    Limits {
        max_concurrent,
        queue_capacity,
    }
}

#[test]
fn max_concurrent_calls_across_workers_then_full() {
    let mut slots = Slots::default();
    let l = limits(2, 0);
    assert_eq!(slots.try_enter(W1, T0, l), Entry::Entered);
    assert_eq!(slots.try_enter(W2, T0, l), Entry::Entered);
    assert_eq!(slots.try_enter(W1, T0, l), Entry::Full);
    assert_eq!(slots.available(l), 0);
    slots.release(W2, T0 + 1);
    assert_eq!(slots.available(l), 1);
    assert_eq!(slots.try_enter(W1, T0 + 2, l), Entry::Entered);
    assert_eq!(slots.active(), 2);
}

#[test]
fn released_slots_survive_an_encode_decode_round_trip() {
    let mut slots = Slots::default();
    let l = limits(3, 5);
    slots.try_enter(W1, T0, l);
    slots.try_enter(W2, T0, l);
    slots.try_enter(W2, T0, l);
    slots.try_enter(W2, T0, l);
    let decoded = Slots::decode(&slots.encode());
    assert_eq!(decoded, slots);
    assert_eq!(decoded.active(), 3);
    assert_eq!(decoded.waiting(), 1);
}

#[test]
fn unreadable_state_reads_as_no_slot_held() {
    assert_eq!(Slots::decode(&[]), Slots::default());
    assert_eq!(Slots::decode(&[9, 1, 0]), Slots::default());
    let mut bytes = {
        let mut slots = Slots::default();
        slots.try_enter(W1, T0, limits(1, 0));
        slots.encode()
    };
    bytes.pop();
    assert_eq!(Slots::decode(&bytes), Slots::default());
}

#[test]
fn a_full_bulkhead_queues_up_to_the_capacity_then_refuses() {
    let mut slots = Slots::default();
    let l = limits(1, 2);
    assert_eq!(slots.try_enter(W1, T0, l), Entry::Entered);
    assert_eq!(slots.try_enter(W1, T0, l), Entry::Queued);
    assert_eq!(slots.try_enter(W2, T0, l), Entry::Queued);
    assert_eq!(slots.try_enter(W2, T0, l), Entry::Full);
    assert_eq!(slots.waiting(), 2);
}

#[test]
fn a_new_call_does_not_overtake_waiting_ones() {
    let mut slots = Slots::default();
    let l = limits(1, 10);
    slots.try_enter(W1, T0, l);
    assert_eq!(slots.try_enter(W2, T0, l), Entry::Queued);
    slots.release(W1, T0 + 5);
    // A slot is free but W2's call waits for it: W1's new call queues behind.
    assert_eq!(slots.try_enter(W1, T0 + 6, l), Entry::Queued);
    assert!(slots.try_promote(W2, T0 + 10, l));
    assert!(!slots.try_promote(W1, T0 + 10, l));
    assert_eq!((slots.active(), slots.waiting()), (1, 1));
}

#[test]
fn a_waiter_that_gives_up_leaves_the_queue() {
    let mut slots = Slots::default();
    let l = limits(1, 1);
    slots.try_enter(W1, T0, l);
    assert_eq!(slots.try_enter(W2, T0, l), Entry::Queued);
    slots.leave_queue(W2, T0 + 100);
    assert_eq!(slots.waiting(), 0);
    assert_eq!(slots.try_enter(W2, T0 + 100, l), Entry::Queued);
}

#[test]
fn a_dead_workers_slots_are_given_back_after_the_lease() {
    let mut slots = Slots::default();
    let l = limits(2, 0);
    slots.try_enter(W1, T0, l);
    slots.try_enter(W1, T0, l);
    // W2 keeps renewing, W1 (its VM died) does not.
    assert_eq!(slots.try_enter(W2, T0 + LEASE_MS - 1, l), Entry::Full);
    assert_eq!(slots.try_enter(W2, T0 + LEASE_MS, l), Entry::Entered);
    assert_eq!(slots.active(), 1);
}

#[test]
fn a_heartbeat_keeps_a_live_workers_slots() {
    let mut slots = Slots::default();
    let l = limits(1, 0);
    slots.try_enter(W1, T0, l);
    slots.heartbeat(W1, T0 + LEASE_MS - 1);
    assert_eq!(slots.try_enter(W2, T0 + LEASE_MS + 5, l), Entry::Full);
    slots.release(W1, T0 + LEASE_MS + 6);
    assert_eq!(slots.try_enter(W2, T0 + LEASE_MS + 6, l), Entry::Entered);
}

#[test]
fn a_release_without_a_slot_changes_nothing() {
    let mut slots = Slots::default();
    let l = limits(1, 0);
    slots.release(W1, T0);
    slots.leave_queue(W1, T0);
    assert_eq!(slots.try_enter(W1, T0, l), Entry::Entered);
    assert_eq!(slots.try_enter(W2, T0, l), Entry::Full);
}

#[test]
fn a_lowered_limit_lets_calls_in_flight_finish() {
    let mut slots = Slots::default();
    slots.try_enter(W1, T0, limits(3, 0));
    slots.try_enter(W1, T0, limits(3, 0));
    slots.try_enter(W1, T0, limits(3, 0));
    let lowered = limits(1, 0);
    assert_eq!(slots.available(lowered), 0);
    assert_eq!(slots.try_enter(W2, T0, lowered), Entry::Full);
    slots.release(W1, T0);
    slots.release(W1, T0);
    assert_eq!(slots.try_enter(W2, T0, lowered), Entry::Full);
    slots.release(W1, T0);
    assert_eq!(slots.try_enter(W2, T0, lowered), Entry::Entered);
}

#[test]
fn idle_workers_leave_no_record() {
    let mut slots = Slots::default();
    let l = limits(1, 0);
    slots.try_enter(W1, T0, l);
    slots.release(W1, T0);
    assert_eq!(slots, Slots::default());
}
