//! One queue's fused pairs being put together. Submission order decides who pairs with whom
//! ([`Pairing::begin`], as each command is taken off the queue); data arrival decides when each
//! member is ready ([`Pairing::hold`]): with in-capsule data, R2Ts or RDMA Reads, a second can be
//! ready before its first.

use super::{Held, FAILED_FUSED, FUSE_FIRST, FUSE_SECOND, INVALID_FIELD, MISSING_FUSED};
use crate::ctrlr::MAX_QUEUE_DEPTH;
use crate::poll_group::GroupCtx;
use crate::spec::{GenericStatus, Sqe, Status};
use std::time::{Duration, Instant};

/// How long a first waits for the command after it. Hosts send the two back to back; one that
/// sends nothing more would otherwise keep the first (and its data buffer) for ever.
pub(crate) const SECOND_TIMEOUT: Duration = Duration::from_secs(5);

enum Part {
    /// Taken off the queue, not executed yet.
    Waiting,
    /// Executed and checked: waits for its partner.
    Held(Held),
    /// Its pair failed: it completes with this status when it executes.
    Doomed(Status),
    /// Completed (or, for a second, not taken off the queue).
    Done,
}

struct Pair {
    first_cid: u16,
    /// `None` until the command after the first is taken off the queue.
    second_cid: Option<u16>,
    first: Part,
    second: Part,
}

impl Pair {
    fn part(&mut self, second: bool) -> &mut Part {
        if second {
            &mut self.second
        } else {
            &mut self.first
        }
    }
}

/// A member found by [`Pairing::find`]: its pair, and the status it must fail with if its
/// pair already failed.
pub(crate) struct Found {
    pub pair: usize,
    pub doomed: Option<Status>,
}

/// The fused pairs of one queue (empty, and allocation free, until a host fuses).
#[derive(Default)]
pub(crate) struct Pairing {
    /// CID of the first whose begin was the latest: the next command must be its second.
    expecting: Option<u16>,
    /// When that first was taken off the queue (the poll's clock).
    expecting_since: Option<Instant>,
    pairs: Vec<Pair>,
}

/// Complete a part that waits (held) with `status`, or doom it if it has not executed yet.
fn fail(ctx: &mut GroupCtx, part: &mut Part, status: Status) {
    match std::mem::replace(part, Part::Done) {
        Part::Held(h) => ctx.fused.complete_held(h, status),
        Part::Waiting => *part = Part::Doomed(status),
        p @ Part::Doomed(_) => *part = p,
        Part::Done => {}
    }
}

impl Pairing {
    /// A begin must look at the command: it has FUSE bits, or a first waits for its second.
    #[inline]
    pub(crate) fn begin_needed(&self, sqe: &Sqe) -> bool {
        sqe.fuse() != 0 || self.expecting.is_some()
    }

    /// Some member of this queue is not complete yet.
    #[inline]
    pub(crate) fn active(&self) -> bool {
        !self.pairs.is_empty()
    }

    /// An I/O queue took `sqe` off: pair it. `Err`: complete it with that status at once.
    #[cold]
    pub(crate) fn begin(&mut self, ctx: &mut GroupCtx, sqe: &Sqe) -> Result<(), Status> {
        let cid = sqe.cid.get();
        if let Some(first) = self.expecting {
            if sqe.fuse() == FUSE_SECOND {
                self.expecting = None;
                self.expecting_since = None;
                if let Some(p) = self.pairs.iter_mut().find(|p| p.first_cid == first && p.second_cid.is_none()) {
                    p.second_cid = Some(cid);
                    // A first that already failed (in the transport) takes its second along.
                    p.second = if matches!(p.first, Part::Done) { Part::Doomed(FAILED_FUSED) } else { Part::Waiting };
                    return Ok(());
                }
            }
            self.interrupted(ctx);
        }
        match sqe.fuse() {
            0 => Ok(()),
            FUSE_FIRST if self.pairs.len() < MAX_QUEUE_DEPTH as usize => {
                self.pairs.push(Pair { first_cid: cid, second_cid: None, first: Part::Waiting, second: Part::Done });
                self.expecting = Some(cid);
                self.expecting_since = Some(ctx.now());
                Ok(())
            }
            FUSE_FIRST => Err(Status::generic(GenericStatus::INTERNAL_ERROR)),
            FUSE_SECOND => Err(MISSING_FUSED),
            _ => Err(INVALID_FIELD),
        }
    }

    /// The command after a first is not its second (Base 2.0 section 3.4.2): the first is
    /// aborted with Missing Fused Command.
    #[cold]
    pub(crate) fn interrupted(&mut self, ctx: &mut GroupCtx) {
        self.expecting_since = None;
        let Some(first) = self.expecting.take() else { return };
        if let Some(i) = self.pairs.iter().position(|p| p.first_cid == first && p.second_cid.is_none()) {
            fail(ctx, &mut self.pairs[i].first, MISSING_FUSED);
            self.collect(i);
        }
    }

    /// On a timer tick: a first whose next command has not come within [`SECOND_TIMEOUT`] is
    /// aborted (Missing Fused Command).
    #[cold]
    pub(crate) fn expire(&mut self, ctx: &mut GroupCtx) {
        if self.expecting_since.is_some_and(|t| ctx.now().saturating_duration_since(t) >= SECOND_TIMEOUT) {
            log::warn!("fused first without a next command for {SECOND_TIMEOUT:?}: aborted");
            self.interrupted(ctx);
        }
    }

    /// The member `cid` (a second when `second`) that has not executed yet.
    pub(crate) fn find(&self, cid: u16, second: bool) -> Option<Found> {
        let pair = self.pairs.iter().position(|p| {
            let (id, part) = if second { (p.second_cid, &p.second) } else { (Some(p.first_cid), &p.first) };
            id == Some(cid) && matches!(part, Part::Waiting | Part::Doomed(_))
        })?;
        let p = &self.pairs[pair];
        let doomed = match if second { &p.second } else { &p.first } {
            Part::Doomed(s) => Some(*s),
            _ => None,
        };
        Some(Found { pair, doomed })
    }

    /// A member completed without waiting; its partner fails with `partner` when given.
    pub(crate) fn part_done(&mut self, ctx: &mut GroupCtx, pair: usize, second: bool, partner: Option<Status>) {
        let p = &mut self.pairs[pair];
        *p.part(second) = Part::Done;
        if let Some(status) = partner {
            if second || p.second_cid.is_some() {
                fail(ctx, p.part(!second), status);
            }
        }
        self.collect(pair);
    }

    /// A checked member waits for its partner. Both there: the pair leaves the queue, (Compare,
    /// Write), to run.
    pub(crate) fn hold(&mut self, pair: usize, second: bool, held: Held) -> Option<(Held, Held)> {
        let p = &mut self.pairs[pair];
        *p.part(second) = Part::Held(held);
        if !matches!((&p.first, &p.second), (Part::Held(_), Part::Held(_))) {
            return None;
        }
        let p = self.pairs.swap_remove(pair);
        match (p.first, p.second) {
            (Part::Held(c), Part::Held(w)) => Some((c, w)),
            _ => None,
        }
    }

    /// The transport completed `sqe` (a fused member): if it never executed (a transport error),
    /// its pair fails.
    #[cold]
    pub(crate) fn finished(&mut self, ctx: &mut GroupCtx, sqe: &Sqe) {
        let second = sqe.fuse() == FUSE_SECOND;
        if let Some(f) = self.find(sqe.cid.get(), second) {
            let partner = f.doomed.is_none().then_some(FAILED_FUSED);
            self.part_done(ctx, f.pair, second, partner);
        }
    }

    /// The connection closed: members still held complete (their requests are freed), the rest
    /// the transport frees itself.
    pub(crate) fn close(&mut self, ctx: &mut GroupCtx) {
        for mut p in self.pairs.drain(..) {
            for part in [&mut p.first, &mut p.second] {
                if let Part::Held(h) = std::mem::replace(part, Part::Done) {
                    ctx.fused.complete_held(h, Status::generic(GenericStatus::ABORTED_SQ_DELETION));
                }
            }
        }
        self.expecting = None;
        self.expecting_since = None;
    }

    /// Forget pair `i` once nothing of it is left (a first still waiting for its second's begin
    /// stays).
    fn collect(&mut self, i: usize) {
        let p = &self.pairs[i];
        let waiting_second = p.second_cid.is_none() && self.expecting == Some(p.first_cid);
        if matches!((&p.first, &p.second), (Part::Done, Part::Done)) && !waiting_second {
            self.pairs.swap_remove(i);
        }
    }
}
