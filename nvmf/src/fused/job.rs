//! Fused pairs running on one poll group: each takes its namespace's write gate, waits for
//! writes admitted before to drain (on every poll group), runs its Compare, then its Write if
//! the Compare matched, and gives the gate back. Every step is retried or continued by the
//! group's poll; nothing waits on the thread.

use super::{Held, FAILED_FUSED};
use crate::bdev::{BdevCompletion, BdevIo, BdevOp, BdevStatus};
use crate::poll_group::GroupCtx;
use crate::spec::{GenericStatus, Status};
use crate::subsystem::Namespace;
use std::sync::Arc;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// Waiting for the namespace's gate (another pair holds it).
    Gate,
    /// Gate closed; writes admitted before may still be in flight.
    Drain,
    /// The Compare is at the bdev.
    Compare,
    /// The Compare matched; the Write is at the bdev.
    Write,
}

struct Job {
    ns: Arc<Namespace>,
    compare: Held,
    write: Held,
    fua: bool,
    stage: Stage,
}

/// The pairs of one poll group, and completions for held members waiting to be delivered
/// through their transports (routed by the poll group like bdev completions).
#[derive(Default)]
pub(crate) struct FusedJobs {
    jobs: Vec<Job>,
    pub(crate) ready: Vec<BdevCompletion>,
}

impl FusedJobs {
    /// No pair runs: bdev completions need not be looked at.
    #[inline]
    pub(crate) fn no_jobs(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Complete a held member with `status` (through its transport's `bdev_complete`, which
    /// gets its buffer back).
    pub(crate) fn complete_held(&mut self, h: Held, status: Status) {
        self.complete_held_bdev(h, BdevStatus::Nvme { status, dw0: 0 });
    }

    /// [`FusedJobs::complete_held`] with a bdev's status (mapped as any I/O's).
    fn complete_held_bdev(&mut self, h: Held, status: BdevStatus) {
        self.ready.push(BdevCompletion { tag: h.tag, status, buf: h.buf });
    }

    /// Run a checked pair on namespace `ns`.
    pub(crate) fn start(&mut self, ns: Arc<Namespace>, compare: Held, write: Held, fua: bool) {
        self.jobs.push(Job { ns, compare, write, fua, stage: Stage::Gate });
    }
}

impl FusedJobs {
    /// The connection whose tags have bits 63:32 `conn` closed: its pairs that have not reached
    /// the bdev yet never will (as for held writes, `GroupChannel::abort_held`); a pair that
    /// held the gate gives it back.
    #[cold]
    pub(crate) fn abort_not_started(&mut self, conn: u64) {
        let mut i = 0;
        while i < self.jobs.len() {
            let j = &self.jobs[i];
            if j.compare.tag >> 32 != conn || !matches!(j.stage, Stage::Gate | Stage::Drain) {
                i += 1;
                continue;
            }
            let j = self.jobs.swap_remove(i);
            if j.stage == Stage::Drain {
                j.ns.write_gate.open();
            }
            let status = Status::generic(GenericStatus::ABORTED_SQ_DELETION);
            self.complete_held(j.compare, status);
            self.complete_held(j.write, status);
        }
    }
}

impl Drop for FusedJobs {
    /// A poll group dropped with pairs running (shutdown) gives their gates back, so other
    /// poll groups' writes do not wait for ever.
    fn drop(&mut self) {
        for j in self.jobs.iter().filter(|j| j.stage != Stage::Gate) {
            j.ns.write_gate.open();
        }
    }
}

fn io(op: BdevOp, h: &mut Held, fua: bool) -> BdevIo {
    BdevIo { op, offset_blocks: h.sqe.slba(), num_blocks: h.sqe.nlb() as u64, buf: h.buf.take(), fua, tag: h.tag }
}

impl GroupCtx {
    /// Once per poll, while pairs run: take gates, and start Compares once drained.
    pub(crate) fn step_fused(&mut self) {
        let mut i = 0;
        while i < self.fused.jobs.len() {
            let j = &mut self.fused.jobs[i];
            if j.stage == Stage::Gate && j.ns.write_gate.try_close() {
                j.stage = Stage::Drain;
            }
            if j.stage == Stage::Drain && j.ns.write_gate.drained() {
                let ns = j.ns.clone();
                let cmp = io(BdevOp::Compare, &mut j.compare, false);
                match self.channel(&ns) {
                    Some(chan) => {
                        chan.submit_ungated(cmp);
                        self.fused.jobs[i].stage = Stage::Compare;
                    }
                    None => {
                        let mut j = self.fused.jobs.swap_remove(i);
                        j.ns.write_gate.open();
                        j.compare.buf = cmp.buf;
                        self.fused.complete_held(j.compare, Status::generic(GenericStatus::INTERNAL_ERROR));
                        self.fused.complete_held(j.write, FAILED_FUSED);
                        continue;
                    }
                }
            }
            i += 1;
        }
    }

    /// A bdev completion: the step of a running pair it ends is taken (`None`), any other
    /// completion is handed back.
    pub(crate) fn fused_complete(&mut self, c: BdevCompletion) -> Option<BdevCompletion> {
        let Some(i) = self.fused.jobs.iter().position(|j| {
            (j.stage == Stage::Compare && j.compare.tag == c.tag) || (j.stage == Stage::Write && j.write.tag == c.tag)
        }) else {
            return Some(c);
        };
        if self.fused.jobs[i].stage == Stage::Compare {
            self.fused.jobs[i].compare.buf = c.buf;
            if c.status == BdevStatus::Success {
                let j = &mut self.fused.jobs[i];
                let (ns, fua) = (j.ns.clone(), j.fua);
                let wr = io(BdevOp::Write, &mut j.write, fua);
                if let Some(chan) = self.channel(&ns) {
                    chan.stats().write(wr.num_blocks * ns.bdev.block_size() as u64);
                    chan.submit_ungated(wr);
                    self.fused.jobs[i].stage = Stage::Write;
                    return None;
                }
                self.fused.jobs[i].write.buf = wr.buf;
            }
            // A miscompare (or a failed Compare): the Write does not happen.
            let j = self.fused.jobs.swap_remove(i);
            j.ns.write_gate.open();
            self.fused.complete_held_bdev(j.compare, c.status);
            self.fused.complete_held(j.write, FAILED_FUSED);
            return None;
        }
        let j = self.fused.jobs.swap_remove(i);
        j.ns.write_gate.open();
        self.fused.complete_held(j.compare, Status::SUCCESS);
        Some(c)
    }
}
