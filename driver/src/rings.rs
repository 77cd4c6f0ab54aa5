//! Submission and completion queue rings in DMA memory, shared by the admin queue and the I/O
//! queue pairs: tail/head bookkeeping, phase tags and doorbell writes.

use crate::dma::DmaRegion;
use crate::mmio::RegisterSpace;
use crate::spec::{Cqe, Sqe};
use std::sync::atomic::{fence, Ordering};

const SQE_SIZE: usize = 64;
const CQE_SIZE: usize = 16;

/// A submission queue: the host writes entries at the tail and rings the tail doorbell.
pub(crate) struct SubQueue {
    pub(crate) mem: DmaRegion,
    entries: u16,
    tail: u16,
    head: u16,
    doorbell: usize,
    unrung: bool,
}

impl SubQueue {
    pub(crate) fn new(mem: DmaRegion, entries: u16, doorbell: usize) -> Self {
        debug_assert!(mem.len() >= entries as usize * SQE_SIZE);
        SubQueue { mem, entries, tail: 0, head: 0, doorbell, unrung: false }
    }
    pub(crate) fn entries(&self) -> u16 {
        self.entries
    }
    pub(crate) fn is_full(&self) -> bool {
        (self.tail + 1) % self.entries == self.head
    }
    /// Write `sqe` at the tail; the doorbell is written by [`SubQueue::ring`].
    pub(crate) fn push(&mut self, sqe: &Sqe) {
        self.mem.write_obj(self.tail as usize * SQE_SIZE, sqe);
        self.tail = (self.tail + 1) % self.entries;
        self.unrung = true;
    }
    /// The controller's SQ head from a completion (SQHD); ignored when out of range.
    pub(crate) fn set_head(&mut self, head: u16) {
        if head < self.entries {
            self.head = head;
        } else {
            log::warn!("completion reports SQ head {head} for a {} entry queue", self.entries);
        }
    }
    /// Write the tail doorbell once for everything pushed since the last ring.
    pub(crate) fn ring(&mut self, regs: &dyn RegisterSpace) {
        if self.unrung {
            fence(Ordering::Release);
            regs.write32(self.doorbell, self.tail as u32);
            self.unrung = false;
        }
    }
    pub(crate) fn reset(&mut self) {
        self.tail = 0;
        self.head = 0;
        self.unrung = false;
        self.mem.fill(0, self.mem.len(), 0);
    }
}

/// A completion queue: the controller posts entries, the host consumes them by phase tag and
/// writes the head doorbell.
pub(crate) struct CompQueue {
    pub(crate) mem: DmaRegion,
    entries: u16,
    head: u16,
    phase: bool,
    doorbell: usize,
}

impl CompQueue {
    pub(crate) fn new(mem: DmaRegion, entries: u16, doorbell: usize) -> Self {
        debug_assert!(mem.len() >= entries as usize * CQE_SIZE);
        CompQueue { mem, entries, head: 0, phase: true, doorbell }
    }
    /// The entry at the head if the controller has posted it (its phase tag matches ours).
    pub(crate) fn peek(&self) -> Option<Cqe> {
        let off = self.head as usize * CQE_SIZE;
        let status = self.mem.read_volatile_u16(off + 14);
        if (status & 1 != 0) != self.phase {
            return None;
        }
        // The rest of the entry was written before the status word became visible.
        fence(Ordering::Acquire);
        Some(self.mem.read_obj::<Cqe>(off))
    }
    /// Consume the head entry.
    pub(crate) fn advance(&mut self) {
        self.head += 1;
        if self.head == self.entries {
            self.head = 0;
            self.phase = !self.phase;
        }
    }
    pub(crate) fn ring_head(&self, regs: &dyn RegisterSpace) {
        regs.write32(self.doorbell, self.head as u32);
    }
    pub(crate) fn reset(&mut self) {
        self.head = 0;
        self.phase = true;
        self.mem.fill(0, self.mem.len(), 0);
    }
}
