//! Per-host resource limits shared by the transports (issue 12: no host stalls or starves the
//! others): connection counts checked at accept, and the data-buffer budget of one connection
//! and of its host's controller.

use crate::ctrlr::Controller;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Live connections against a maximum (a listener's, or a transport's).
#[derive(Clone, Debug)]
pub(crate) struct ConnCounter {
    live: Arc<AtomicUsize>,
    max: usize,
}

impl ConnCounter {
    pub fn new(max: usize) -> Self {
        ConnCounter { live: Arc::new(AtomicUsize::new(0)), max }
    }
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
    pub fn max(&self) -> usize {
        self.max
    }
}

/// A connection's place in every counter it was admitted under; given back when dropped (when
/// the connection leaves its poll group, its I/O drained).
#[derive(Debug)]
pub(crate) struct ConnSlot {
    held: Vec<Arc<AtomicUsize>>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        for c in &self.held {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Admit one more connection under all `counters`, or name the index of the first one that is
/// full (the connection is refused).
pub(crate) fn admit(counters: &[&ConnCounter]) -> Result<ConnSlot, usize> {
    let mut slot = ConnSlot { held: Vec::with_capacity(counters.len()) };
    for (i, c) in counters.iter().enumerate() {
        if c.live.fetch_add(1, Ordering::AcqRel) >= c.max {
            c.live.fetch_sub(1, Ordering::AcqRel);
            return Err(i); // `slot` gives back the ones taken so far
        }
        slot.held.push(c.live.clone());
    }
    Ok(slot)
}

/// Bytes of data buffers each live controller's connections hold, shared by every poll group
/// (a host's queues may be spread over several). Looked up once per connection, at Connect.
#[derive(Default)]
pub(crate) struct HostDataRegistry {
    entries: Mutex<Vec<(Weak<Controller>, Arc<AtomicU64>)>>,
}

impl HostDataRegistry {
    pub fn counter(&self, ctrl: &Arc<Controller>) -> Arc<AtomicU64> {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.retain(|(w, _)| w.strong_count() > 0);
        let me = Arc::downgrade(ctrl);
        if let Some((_, c)) = e.iter().find(|(w, _)| w.ptr_eq(&me)) {
            return c.clone();
        }
        let c = Arc::new(AtomicU64::new(0));
        e.push((me, c.clone()));
        c
    }
}

/// Host credit is reserved from the shared counter in steps of this much, so that most I/Os
/// touch only the connection's own numbers (no shared atomic per I/O).
const CREDIT_STEP: u64 = 1 << 20;

/// The share of its controller's budget a connection has reserved.
struct HostCredit {
    shared: Arc<AtomicU64>,
    max: u64,
    reserved: u64,
}

impl HostCredit {
    /// Make `reserved` cover `need` bytes, if the controller's budget has room.
    fn cover(&mut self, need: u64) -> bool {
        if need <= self.reserved {
            return true;
        }
        let add = (need - self.reserved).div_ceil(CREDIT_STEP) * CREDIT_STEP;
        let mut cur = self.shared.load(Ordering::Relaxed);
        loop {
            // An empty budget always lends one transfer, so a limit below an I/O never deadlocks.
            if cur + add > self.max && cur > 0 {
                return false;
            }
            match self.shared.compare_exchange_weak(cur, cur + add, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    self.reserved += add;
                    return true;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Give back what is reserved beyond `used`, keeping a step of slack.
    fn trim(&mut self, used: u64) {
        let keep = used.div_ceil(CREDIT_STEP) * CREDIT_STEP + CREDIT_STEP;
        if self.reserved > keep + CREDIT_STEP {
            self.shared.fetch_sub(self.reserved - keep, Ordering::AcqRel);
            self.reserved = keep;
        }
    }
}

impl Drop for HostCredit {
    fn drop(&mut self) {
        self.shared.fetch_sub(self.reserved, Ordering::AcqRel);
    }
}

/// What data buffers one connection may hold: at most `max_conn` bytes itself, and together
/// with the other connections of its controller at most the controller's maximum. A connection
/// holding nothing may always take one transfer (the limits bound memory, never progress).
pub(crate) struct DataBudget {
    held: u64,
    max_conn: u64,
    host: Option<HostCredit>,
}

impl DataBudget {
    pub fn new(max_conn: u64) -> Self {
        DataBudget { held: 0, max_conn, host: None }
    }

    /// Count this connection's buffers against its controller's budget of `max` bytes too
    /// (from its Connect on).
    pub fn join_host(&mut self, shared: Arc<AtomicU64>, max: u64) {
        let mut credit = HostCredit { shared, max, reserved: 0 };
        if self.held > 0 && !credit.cover(self.held) {
            // Held before the Connect (its own data): count it anyway.
            credit.shared.fetch_add(self.held, Ordering::AcqRel);
            credit.reserved = self.held;
        }
        self.host = Some(credit);
    }

    pub fn has_host(&self) -> bool {
        self.host.is_some()
    }

    /// Take `len` bytes, or `false` when a limit would be exceeded (the caller waits for
    /// buffers to come back).
    #[inline]
    pub fn take(&mut self, len: u32) -> bool {
        let need = self.held + len as u64;
        if self.held > 0 && need > self.max_conn {
            return false;
        }
        if let Some(h) = self.host.as_mut() {
            if !h.cover(need) {
                return false;
            }
        }
        self.held = need;
        true
    }

    /// `len` bytes taken earlier came back.
    #[inline]
    pub fn give(&mut self, len: u32) {
        self.held = self.held.saturating_sub(len as u64);
        if let Some(h) = self.host.as_mut() {
            h.trim(self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_admitted_up_to_each_limit_and_given_back_on_drop() {
        let listener = ConnCounter::new(2);
        let all = ConnCounter::new(3);
        let a = admit(&[&listener, &all]).expect("first");
        let b = admit(&[&listener, &all]).expect("second");
        assert_eq!(admit(&[&listener, &all]).err(), Some(0), "listener full");
        assert_eq!((listener.live(), all.live()), (2, 2), "a refusal takes nothing");
        let other = ConnCounter::new(8);
        let c = admit(&[&other, &all]).expect("third overall");
        assert_eq!(admit(&[&other, &all]).err(), Some(1), "transport full");
        assert_eq!(other.live(), 1);
        drop((a, b, c));
        assert_eq!((listener.live(), all.live(), other.live()), (0, 0, 0));
    }

    #[test]
    fn budget_bounds_a_connection_and_its_host_and_always_lends_one_transfer() {
        let shared = Arc::new(AtomicU64::new(0));
        let mut a = DataBudget::new(4 << 20);
        let mut b = DataBudget::new(4 << 20);
        a.join_host(shared.clone(), 6 << 20);
        b.join_host(shared.clone(), 6 << 20);
        assert!(a.take(3 << 20) && a.take(1 << 20));
        assert!(!a.take(1), "connection limit");
        assert!(b.take(1 << 20), "host room left");
        assert!(!b.take(2 << 20), "host limit: 4 + 1 + 2 MiB > 6 MiB");
        a.give(4 << 20);
        assert!(b.take(2 << 20), "room again once the other connection gave back");
        let mut solo = DataBudget::new(1024);
        assert!(solo.take(1 << 20), "a transfer larger than the limit still goes alone");
        assert!(!solo.take(1));
        drop((a, b));
        assert_eq!(shared.load(Ordering::Relaxed), 0, "credit returns with the connections");
    }
}
