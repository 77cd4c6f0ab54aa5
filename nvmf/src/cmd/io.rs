//! NVM command set I/O (NVM Command Set 1.0 section 3): Read, Write, Compare, Flush, Write
//! Zeroes, Dataset Management, turned into bdev I/O on the poll group's channel, after the
//! namespace's reservation allows it; reservation commands go to `reservation`.

use crate::bdev::{BdevIo, BdevOp, BdevStatus};
use crate::ctrlr::Controller;
use crate::fanout::FanoutDone;
use crate::poll_group::GroupCtx;
use crate::queue::{Cmd, Exec, NvmeQueue};
use crate::spec::{Cqe, GenericStatus, MediaStatus, NvmOpcode, Status};
use crate::subsystem::Namespace;
use std::sync::Arc;

/// Dataset Management CDW11 bit 2: Attribute - Deallocate.
const DSM_AD: u32 = 1 << 2;
/// NSID FFFFFFFFh: every namespace (Base 2.0 section 3.2.1.2).
const NSID_ALL: u32 = 0xffff_ffff;

/// The status an I/O command to `ns` gets through this controller's path, if its ANA state
/// refuses I/O (Base 2.0 section 8.1.3).
#[inline]
pub(crate) fn ana_refusal(ctrl: &Controller, ns: &Namespace) -> Option<Status> {
    if !ctrl.subsys.ana_reporting {
        return None;
    }
    ctrl.ana_state(ns.anagrpid).io_refusal()
}

pub(crate) fn execute(q: &mut NvmeQueue, ctrl: &Controller, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    let Some(op) = NvmOpcode::from_u8(cmd.sqe.opcode) else {
        // Reservations are the target's to arbitrate, whatever backs the namespace.
        if super::reservation::is_reservation(cmd.sqe.opcode) {
            return super::reservation::execute(q, ctrl, ctx, cmd);
        }
        // Not modelled here: pass it through to an NVMe device (direct mode), or refuse it.
        if let Some(ns) = q.namespace(ctrl, cmd.sqe.nsid.get()).filter(|ns| ns.bdev.supports_passthru()) {
            // Verify only reads; Write Uncorrectable and anything opaque may change blocks.
            if let Some(s) = access_refusal(ctrl, &ns, super::passthru::may_write(cmd.sqe.opcode)) {
                cmd.cqe.set_status(s);
                return Exec::Complete;
            }
            return passthru(&ns, ctx, cmd);
        }
        cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_OPCODE).dnr());
        return Exec::Complete;
    };
    let nsid = cmd.sqe.nsid.get();
    if op == NvmOpcode::Flush && nsid == NSID_ALL {
        // Identify Controller VWC bits 2:1 = 11b: Flush applies to every attached namespace.
        let table = q.ns_table(ctrl);
        return match ctx.flush_namespaces(table.iter().flatten(), cmd.tag, FanoutDone::Command) {
            true => Exec::Pending,
            false => Exec::Complete,
        };
    }
    let Some(ns) = q.namespace_ref(ctrl, nsid) else {
        cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT).dnr());
        return Exec::Complete;
    };
    // The path's ANA state (one relaxed load), then the reservation (one atomic load unless a
    // reservation is held; then Base 2.0 section 8.19's access rules).
    if let Some(s) = access_refusal(ctrl, ns, !matches!(op, NvmOpcode::Read | NvmOpcode::Compare)) {
        cmd.cqe.set_status(s);
        return Exec::Complete;
    }
    let bs = ns.bdev.block_size() as u64;
    let mut unmapped = 0u64;
    let (bop, offset, count) = match op {
        NvmOpcode::Read | NvmOpcode::Write | NvmOpcode::Compare | NvmOpcode::WriteZeroes => {
            let bop = match op {
                NvmOpcode::Read => BdevOp::Read,
                NvmOpcode::Write => BdevOp::Write,
                NvmOpcode::Compare => BdevOp::Compare,
                _ => BdevOp::WriteZeroes,
            };
            let data = (bop != BdevOp::WriteZeroes).then(|| cmd.buf.as_ref().map_or(0, |b| b.len()));
            if let Err(s) = check_blocks(cmd.sqe, ns.bdev.num_blocks(), bs, data) {
                cmd.cqe.set_status(s);
                return Exec::Complete;
            }
            (bop, cmd.sqe.slba(), cmd.sqe.nlb() as u64)
        }
        NvmOpcode::Flush => (BdevOp::Flush, 0, 0),
        NvmOpcode::DatasetManagement => {
            let nr = (cmd.sqe.cdw10.get() & 0xff) as usize + 1;
            if cmd.sqe.cdw11.get() & DSM_AD == 0 || !ns.bdev.supports(BdevOp::Unmap) {
                // Only deallocation has an effect here; other attributes are hints.
                return Exec::Complete;
            }
            match cmd.buf.as_mut() {
                Some(b) if b.len() >= nr * 16 => b.set_len(nr * 16),
                _ => {
                    cmd.cqe.set_status(Status::generic(GenericStatus::DATA_SGL_LENGTH_INVALID).dnr());
                    return Exec::Complete;
                }
            }
            let blocks = ns.bdev.num_blocks();
            for (s, n) in crate::bdev::dsm_ranges(cmd.buf.as_ref().map_or(&[][..], |b| b.as_slice())) {
                if s.checked_add(n as u64).is_none_or(|end| end > blocks) {
                    cmd.cqe.set_status(Status::generic(GenericStatus::LBA_OUT_OF_RANGE).dnr());
                    return Exec::Complete;
                }
                unmapped += n as u64;
            }
            (BdevOp::Unmap, 0, 0)
        }
    };
    let Some(chan) = ctx.channel(ns) else {
        cmd.cqe.set_status(Status::generic(GenericStatus::INTERNAL_ERROR));
        return Exec::Complete;
    };
    let buf = match bop {
        BdevOp::Read | BdevOp::Write | BdevOp::Compare | BdevOp::Unmap => cmd.buf.take(),
        _ => None,
    };
    // Durable before completion when the host asks (FUA), or always once it has turned this
    // controller's volatile write cache off (Set Features VWC WCE = 0).
    let fua = matches!(bop, BdevOp::Write | BdevOp::WriteZeroes) && (cmd.sqe.fua() || !ctrl.write_cache_enabled());
    let stats = chan.stats();
    match bop {
        BdevOp::Read => stats.read(count * bs),
        BdevOp::Write | BdevOp::WriteZeroes => stats.write(count * bs),
        BdevOp::Unmap => stats.unmap(unmapped * bs),
        BdevOp::Compare | BdevOp::Flush => {}
    }
    chan.submit(BdevIo { op: bop, offset_blocks: offset, num_blocks: count, buf, fua, tag: cmd.tag });
    Exec::Pending
}

/// Why an I/O command to `ns` may not run through this controller: its path's ANA state, or the
/// namespace's reservation (`writes`: the command may change blocks).
#[inline(always)]
pub(crate) fn access_refusal(ctrl: &Controller, ns: &Namespace, writes: bool) -> Option<Status> {
    if let Some(s) = ana_refusal(ctrl, ns) {
        return Some(s);
    }
    if !ns.reservations.allows(&ctrl.hostid, writes) {
        return Some(Status::generic(GenericStatus::RESERVATION_CONFLICT));
    }
    None
}

/// The blocks of a Read, Write, Compare or Write Zeroes fit a namespace of `blocks` blocks of
/// `bs` bytes, and its data (`data`: the buffer's length, `None` for Write Zeroes) is exactly
/// those blocks.
#[inline]
pub(crate) fn check_blocks(sqe: &crate::spec::Sqe, blocks: u64, bs: u64, data: Option<usize>) -> Result<(), Status> {
    let (slba, nlb) = (sqe.slba(), sqe.nlb() as u64);
    if slba.checked_add(nlb).is_none_or(|end| end > blocks) {
        return Err(Status::generic(GenericStatus::LBA_OUT_OF_RANGE).dnr());
    }
    if data.is_some_and(|len| len as u64 != nlb * bs) {
        return Err(Status::generic(GenericStatus::DATA_SGL_LENGTH_INVALID).dnr());
    }
    Ok(())
}

/// An I/O opcode the target does not model, on a namespace whose bdev is an NVMe device.
fn passthru(ns: &Arc<Namespace>, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    super::passthru::execute(ns, ctx, cmd)
}

/// Fill a completion from a bdev completion: the status, and DW0 for a passthrough command.
pub(crate) fn set_bdev_completion(cqe: &mut Cqe, s: BdevStatus) {
    if let BdevStatus::Nvme { dw0, .. } = s {
        cqe.dw0.set(dw0);
    }
    cqe.set_status(bdev_status(s));
}

/// The NVMe status for a bdev completion.
pub(crate) fn bdev_status(s: BdevStatus) -> Status {
    match s {
        BdevStatus::Success => Status::SUCCESS,
        BdevStatus::ReadError => Status::media(MediaStatus::UNRECOVERED_READ_ERROR),
        BdevStatus::WriteError => Status::media(MediaStatus::WRITE_FAULT),
        BdevStatus::CompareMismatch => Status::media(MediaStatus::COMPARE_FAILURE).dnr(),
        BdevStatus::OutOfRange => Status::generic(GenericStatus::LBA_OUT_OF_RANGE).dnr(),
        BdevStatus::NoSpace => Status::generic(GenericStatus::CAPACITY_EXCEEDED).dnr(),
        BdevStatus::InvalidArg => Status::generic(GenericStatus::INVALID_FIELD).dnr(),
        BdevStatus::Unsupported => Status::generic(GenericStatus::INVALID_OPCODE).dnr(),
        BdevStatus::Nvme { status, .. } => status,
    }
}
