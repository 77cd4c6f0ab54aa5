//! Controller-side queue state: SQ head/tail, CQ tail/phase and completions waiting for room.

use crate::dma::IdentityMapper;
use crate::spec::{Cqe, Sqe};
use std::collections::VecDeque;
use zerocopy::{FromBytes, IntoBytes};

pub(crate) struct EmuSq {
    pub base: u64,
    pub entries: u16,
    pub head: u16,
    pub tail: u16,
    pub cqid: u16,
}

impl EmuSq {
    /// Fetch the entry at the head and advance it; `None` when empty or on a DMA fault.
    pub fn fetch(&mut self, mem: &IdentityMapper) -> Option<Sqe> {
        if self.head == self.tail {
            return None;
        }
        let mut raw = [0u8; 64];
        if let Err(e) = mem.read(self.base + self.head as u64 * 64, &mut raw) {
            log::error!("emulator: SQ fetch failed: {e}");
            return None;
        }
        self.head = (self.head + 1) % self.entries;
        Sqe::read_from_bytes(&raw).ok()
    }
}

pub(crate) struct EmuCq {
    pub base: u64,
    pub entries: u16,
    pub tail: u16,
    pub head: u16,
    pub phase: bool,
    /// Completions that found the queue full; posted when the host frees entries.
    pub backlog: VecDeque<Cqe>,
}

impl EmuCq {
    pub fn new(base: u64, entries: u16) -> Self {
        EmuCq { base, entries, tail: 0, head: 0, phase: true, backlog: VecDeque::new() }
    }

    fn full(&self) -> bool {
        (self.tail + 1) % self.entries == self.head
    }

    /// Post `cqe` (phase tag set here), or keep it until there is room.
    pub fn post(&mut self, mem: &IdentityMapper, cqe: Cqe) {
        if self.full() || !self.backlog.is_empty() {
            self.backlog.push_back(cqe);
            return;
        }
        self.write(mem, cqe);
    }

    fn write(&mut self, mem: &IdentityMapper, mut cqe: Cqe) {
        let status = cqe.status.get() & !1;
        cqe.status.set(status | self.phase as u16);
        if let Err(e) = mem.write(self.base + self.tail as u64 * 16, cqe.as_bytes()) {
            log::error!("emulator: CQ post failed: {e}");
        }
        self.tail += 1;
        if self.tail == self.entries {
            self.tail = 0;
            self.phase = !self.phase;
        }
    }

    /// Host consumed entries up to `head`.
    pub fn set_head(&mut self, mem: &IdentityMapper, head: u16) {
        if head >= self.entries {
            log::warn!("emulator: CQ head doorbell {head} beyond {} entries", self.entries);
            return;
        }
        self.head = head;
        while !self.full() {
            let Some(cqe) = self.backlog.pop_front() else { break };
            self.write(mem, cqe);
        }
    }
}
