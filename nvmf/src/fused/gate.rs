//! The write gate of one namespace: what makes a fused Compare and Write atomic with respect to
//! every other write, from any queue of any poll group.
//!
//! A fused pair closes the gate, waits until no write admitted before is still in flight on any
//! poll group, runs its Compare and its Write, and opens the gate again. While it is closed, a
//! poll group holds new writes to the namespace back (`GroupCtx`) and submits them once it
//! opens. Each poll group counts its own writes in flight in its own [`GateSlot`] (one writer),
//! so the write path takes no lock: a relaxed load while the gate is open, then one locked
//! increment on the group's own cache line and a second load (Dekker: with both sides
//! sequentially consistent, either the writer sees the gate closed or the pair sees the write
//! counted, never neither).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One poll group's writes in flight on one namespace (written by that group only).
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct GateSlot {
    in_flight: AtomicU64,
}

impl GateSlot {
    /// `n` counted writes of this group completed.
    #[inline]
    pub(crate) fn done(&self, n: u64) {
        self.in_flight.fetch_sub(n, Ordering::Release);
    }

    /// This group's writes in flight (read by the group itself: its own count).
    #[inline]
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// The gate (see the module docs). Shared by every poll group through the `Namespace`.
#[derive(Debug, Default)]
pub(crate) struct WriteGate {
    /// A fused pair holds the namespace (from its close to its open).
    closed: AtomicBool,
    /// Poll groups holding writes back (turned away while a pair ran): the next pair waits for
    /// them, so a host streaming pairs cannot keep other hosts' writes out for ever.
    waiting: AtomicU64,
    /// Every poll group's slot on this namespace (registered when it opens its channel).
    slots: Mutex<Vec<Arc<GateSlot>>>,
}

impl WriteGate {
    /// A new poll group's slot (control path: when it opens its channel on the namespace).
    pub(crate) fn register(&self) -> Arc<GateSlot> {
        let s = Arc::new(GateSlot::default());
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).push(s.clone());
        s
    }

    /// A poll group's channel closed: forget its slot (nothing of it is in flight).
    pub(crate) fn unregister(&self, slot: &Arc<GateSlot>) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).retain(|s| !Arc::ptr_eq(s, slot));
    }

    /// A write may go to the bdev now: it is counted in `slot` until [`GateSlot::done`]. `false`:
    /// a fused pair holds the namespace; hold the write back and ask again later.
    #[inline]
    pub(crate) fn enter(&self, slot: &GateSlot) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        slot.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            slot.in_flight.fetch_sub(1, Ordering::Release);
            return false;
        }
        true
    }

    /// Whether the gate is open (held writes may be retried).
    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }

    /// Close the gate for one fused pair. `false`: another pair holds it, or writes turned away
    /// by the last one have not gone yet; try again later.
    pub(crate) fn try_close(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) == 0
            && self.closed.compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed).is_ok()
    }

    /// A poll group started holding writes back (`true`) or submitted the last of them.
    pub(crate) fn holding(&self, started: bool) {
        if started {
            self.waiting.fetch_add(1, Ordering::SeqCst);
        } else {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// With the gate closed: no write admitted before the close is still in flight on any poll
    /// group (their data is visible to this thread once this returns true).
    pub(crate) fn drained(&self) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.iter().all(|s| s.in_flight.load(Ordering::SeqCst) == 0)
    }

    /// The pair is done: writes may go again.
    pub(crate) fn open(&self) {
        self.closed.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_gate_turns_writes_away_and_drains_those_admitted() {
        let g = WriteGate::default();
        let (a, b) = (g.register(), g.register());
        assert!(g.enter(&a), "open gate admits");
        assert!(g.try_close());
        assert!(!g.try_close(), "one pair at a time");
        assert!(!g.enter(&b), "closed gate holds writes back");
        assert_eq!(b.in_flight(), 0, "a refused write is not counted");
        assert!(!g.drained(), "the write admitted before the close is in flight");
        a.done(1);
        assert!(g.drained());
        g.open();
        assert!(g.is_open() && g.enter(&b), "an opened gate admits again");
        g.holding(true);
        assert!(!g.try_close(), "a pair waits while a group still holds writes the last one turned away");
        g.holding(false);
        assert!(g.try_close());
    }

    #[test]
    fn writer_and_pair_never_both_proceed() {
        // Many rounds of a writer racing a pair: whenever the writer was admitted, the pair
        // (having closed the gate) must see it in flight until it is done.
        for _ in 0..2000 {
            let g = Arc::new(WriteGate::default());
            let slot = g.register();
            let (g2, slot2) = (g.clone(), slot.clone());
            let writer = std::thread::spawn(move || g2.enter(&slot2));
            let closed = g.try_close();
            let saw_none = closed && g.drained();
            let admitted = writer.join().unwrap_or(false);
            assert!(!(admitted && saw_none), "a write was admitted while the pair saw none in flight");
            assert_eq!(slot.in_flight(), admitted as u64, "an admitted write is counted, a refused one not");
        }
    }
}
