//! Fused Compare and Write (NVMe Base 2.0 section 3.4.2; NVM Command Set 1.0 section 3.2.2 and
//! 3.2.6): a Compare with FUSE = 01b followed, next in the same submission queue, by a Write
//! with FUSE = 10b on the same blocks. The Write happens only if the Compare matched, and
//! nothing else writes those blocks in between (ESXi VMFS's ATS locking relies on it).
//!
//! ```text
//!  queue (SQ order)     pairing::begin: the command after a first must be its second
//!  queue (data ready)   execute_member: each member checked, held until both are there
//!  poll group           job: close the namespace's write gate ─► wait until no write
//!                       admitted before is in flight on any poll group ─► Compare ─► Write
//!                       (only on a match) ─► open the gate ─► complete both
//! ```
//!
//! Malformed fusing gets the spec's status: a first whose next command is not a second, and a
//! second without a first, are aborted with Command Aborted due to Missing Fused Command; a
//! member that fails (a miscompare, a bad field, a reservation conflict, ...) has its partner
//! aborted with Command Aborted due to Failed Fused Command; a first that is not a Compare, a
//! second that is not a Write, a pair on different blocks, and FUSE = 11b get Invalid Field.
//! Both members' completions reach the transport through `bdev_complete`, as an I/O's do.

pub(crate) mod gate;
pub(crate) mod job;
pub(crate) mod pairing;

use crate::bdev::IoBuf;
use crate::cmd::io::{access_refusal, check_blocks};
use crate::ctrlr::Controller;
use crate::poll_group::GroupCtx;
use crate::queue::{Cmd, Exec, NvmeQueue};
use crate::spec::{GenericStatus, NvmOpcode, Sqe, Status};

pub(crate) use crate::spec::sqe::{FUSE_FIRST, FUSE_SECOND};

/// Command Aborted due to Failed Fused Command (generic 09h).
pub(crate) const FAILED_FUSED: Status = Status::generic(GenericStatus::ABORTED_FAILED_FUSED);
/// Command Aborted due to Missing Fused Command (generic 0Ah).
pub(crate) const MISSING_FUSED: Status = Status::generic(GenericStatus::ABORTED_MISSING_FUSED);
const INVALID_FIELD: Status = Status::generic(GenericStatus::INVALID_FIELD).dnr();

/// A member of a pair that passed its checks and waits: its command, data and tag.
pub(crate) struct Held {
    pub sqe: Sqe,
    pub buf: Option<IoBuf>,
    pub tag: u64,
}

/// Execute a command with FUSE bits set on an I/O queue (its begin paired it).
#[cold]
#[inline(never)]
pub(crate) fn execute_member(q: &mut NvmeQueue, ctrl: &Controller, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    let sqe = cmd.sqe;
    let second = sqe.fuse() == FUSE_SECOND;
    let Some(part) = q.fused_mut().find(sqe.cid.get(), second) else {
        cmd.cqe.set_status(INVALID_FIELD);
        return Exec::Complete;
    };
    // The partner already failed: this one is aborted without running.
    if let Some(status) = part.doomed {
        q.fused_mut().part_done(ctx, part.pair, second, None);
        cmd.cqe.set_status(status);
        return Exec::Complete;
    }
    if let Err(status) = check_member(q, ctrl, sqe, cmd.buf.as_ref().map_or(0, |b| b.len()), second) {
        q.fused_mut().part_done(ctx, part.pair, second, Some(FAILED_FUSED));
        cmd.cqe.set_status(status);
        return Exec::Complete;
    }
    let held = Held { sqe: *sqe, buf: cmd.buf.take(), tag: cmd.tag };
    if let Some((compare, write)) = q.fused_mut().hold(part.pair, second, held) {
        start(q, ctrl, ctx, compare, write);
    }
    Exec::Pending
}

/// Both members are held: run the pair, or fail it when they name different blocks.
fn start(q: &mut NvmeQueue, ctrl: &Controller, ctx: &mut GroupCtx, compare: Held, write: Held) {
    let (c, w) = (&compare.sqe, &write.sqe);
    let same = c.nsid.get() == w.nsid.get() && c.slba() == w.slba() && c.nlb() == w.nlb();
    let ns = if same { q.namespace(ctrl, c.nsid.get()) } else { None };
    let Some(ns) = ns else {
        ctx.fused.complete_held(compare, INVALID_FIELD);
        ctx.fused.complete_held(write, FAILED_FUSED);
        return;
    };
    // Durable before completion when the host asks (FUA) or has turned the cache off.
    let fua = w.fua() || !ctrl.write_cache_enabled();
    ctx.fused.start(ns, compare, write, fua);
}

/// The checks a plain Compare or Write gets, plus the member's opcode.
fn check_member(q: &mut NvmeQueue, ctrl: &Controller, sqe: &Sqe, data: usize, second: bool) -> Result<(), Status> {
    let expected = if second { NvmOpcode::Write } else { NvmOpcode::Compare };
    if sqe.opcode != expected as u8 {
        return Err(INVALID_FIELD);
    }
    let Some(ns) = q.namespace_ref(ctrl, sqe.nsid.get()) else {
        return Err(Status::generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT).dnr());
    };
    if let Some(s) = access_refusal(ctrl, ns, second) {
        return Err(s);
    }
    check_blocks(sqe, ns.bdev.num_blocks(), ns.bdev.block_size() as u64, Some(data))
}
