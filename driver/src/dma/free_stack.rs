//! A lock-free LIFO free list of buffer indexes. LIFO matters: the buffer freed last is the one
//! still in the CPU cache, and a FIFO queue would walk every buffer of the pool in turn (with
//! 32 MiB pools that costs a fifth of the write throughput, measured in docs/performance.md).
//!
//! A Treiber stack over an index array: `head` packs a generation tag (high 32 bits) with the
//! top index + 1 (low 32 bits, 0 = empty); every successful update bumps the tag, so a
//! compare-and-swap cannot succeed on a head that was popped and pushed back in between (ABA).
//! Indexes are unique (each is held by at most one owner), which is what makes `next` safe to
//! overwrite on push.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub(crate) struct FreeStack {
    head: AtomicU64,
    next: Box<[AtomicU32]>,
    len: AtomicU32,
}

const EMPTY: u32 = 0;

fn pack(tag: u32, top: u32) -> u64 {
    (tag as u64) << 32 | top as u64
}
fn unpack(h: u64) -> (u32, u32) {
    ((h >> 32) as u32, h as u32)
}

impl FreeStack {
    /// A stack holding `0..count`, `0` on top.
    pub fn full(count: u32) -> Self {
        let next: Box<[AtomicU32]> =
            (0..count).map(|i| AtomicU32::new(if i + 1 < count { i + 2 } else { EMPTY })).collect();
        let top = if count > 0 { 1 } else { EMPTY };
        FreeStack { head: AtomicU64::new(pack(0, top)), next, len: AtomicU32::new(count) }
    }

    /// Take the most recently freed index.
    pub fn pop(&self) -> Option<u32> {
        let mut h = self.head.load(Ordering::Acquire);
        loop {
            let (tag, top) = unpack(h);
            if top == EMPTY {
                return None;
            }
            let i = top - 1;
            let below = self.next[i as usize].load(Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                h,
                pack(tag.wrapping_add(1), below),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.len.fetch_sub(1, Ordering::Relaxed);
                    return Some(i);
                }
                Err(now) => h = now,
            }
        }
    }

    /// Give back index `i` (taken by `pop`, or never handed out twice).
    pub fn push(&self, i: u32) {
        let Some(slot) = self.next.get(i as usize) else { return };
        // Counted before it is visible, so a pop of it never decrements below zero.
        self.len.fetch_add(1, Ordering::Relaxed);
        let mut h = self.head.load(Ordering::Acquire);
        loop {
            let (tag, top) = unpack(h);
            slot.store(top, Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                h,
                pack(tag.wrapping_add(1), i + 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => h = now,
            }
        }
    }

    /// Indexes on the stack (a snapshot).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn last_freed_comes_out_first() {
        let s = FreeStack::full(4);
        assert_eq!((s.pop(), s.pop()), (Some(0), Some(1)));
        s.push(0);
        s.push(1);
        assert_eq!(s.pop(), Some(1), "LIFO: the cache-hot buffer");
        assert_eq!(s.len(), 3);
        assert_eq!((s.pop(), s.pop(), s.pop(), s.pop()), (Some(0), Some(2), Some(3), None));
        s.push(99); // not an index of this stack: ignored
        assert_eq!(s.pop(), None);
        assert!(FreeStack::full(0).pop().is_none());
    }

    #[test]
    fn threads_never_share_an_index() {
        const N: u32 = 64;
        let s = Arc::new(FreeStack::full(N));
        let owners: Arc<Vec<AtomicU32>> = Arc::new((0..N).map(|_| AtomicU32::new(0)).collect());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (s, owners) = (s.clone(), owners.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if let Some(i) = s.pop() {
                            // Exclusive while held: nobody else may hold it now.
                            assert_eq!(
                                owners[i as usize].swap(t + 1, Ordering::SeqCst),
                                0,
                                "index {i} handed out twice"
                            );
                            owners[i as usize].store(0, Ordering::SeqCst);
                            s.push(i);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(s.len(), N as usize);
        let mut all: Vec<u32> = std::iter::from_fn(|| s.pop()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..N).collect::<Vec<_>>(), "every index back exactly once");
    }
}
