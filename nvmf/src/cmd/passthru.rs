//! I/O opcodes the target does not model, on a namespace whose bdev is an NVMe device (direct
//! mode): which may reach the device, and how.
//!
//! The device moves as much data as the command's own fields say, through PRPs the bdev builds
//! from the buffer the transport sized from the host's SGL. A host that claims more than it
//! sends would make the device read or write past that buffer, into memory of other commands
//! and other hosts. So by default only opcodes whose data length the target computes from the
//! command pass, and only when it matches the buffer (like SPDK's and Linux nvmet's passthrough,
//! which limit I/O passthrough to commands they can parse):
//!
//! - Write Uncorrectable (04h) and Verify (0Ch), NVM Command Set 1.0 sections 3.3.7 and 3.3.4:
//!   NLB blocks at SLBA, no data transfer. The LBA range is checked here too.
//!
//! Never, whatever the namespace's setting, because they name things the target must own:
//!
//! - Reservation Register/Report/Acquire/Release (0Dh, 0Eh, 11h, 15h): the device knows only
//!   the target's one host identity, so every host would share (and could break) one
//!   registration. The target arbitrates reservations itself (`cmd::reservation`) before a
//!   command gets here; this is the second line.
//! - Copy (19h): source ranges (and, in formats 2h/3h, source NSIDs) in its data.
//! - Cancel (18h): names a command by the device's SQ ID and CID, which belong to the target.
//!
//! Everything else (vendor specific, I/O Management, ...) only with the namespace's
//! `passthru_io` (trusting the hosts); the bdev then gives the device memory of that command
//! alone for anything up to its maximum transfer (`PassthruIo::exact_len` false).

use crate::bdev::PassthruIo;
use crate::cmd::identify::MAX_IO_SIZE;
use crate::poll_group::GroupCtx;
use crate::queue::{Cmd, Exec};
use crate::spec::opcode::io;
use crate::spec::{GenericStatus, Status};
use crate::subsystem::Namespace;
use std::sync::Arc;

/// What the target does with an opcode it does not model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// NLB blocks at SLBA, no data: checked, then passed.
    BlocksNoData,
    /// Invalid Opcode, even with passthrough on.
    Refused,
    /// Passed only with the namespace's `passthru_io`.
    Opaque,
}

fn class(opcode: u8) -> Class {
    match opcode {
        io::WRITE_UNCORRECTABLE | io::VERIFY => Class::BlocksNoData,
        io::RESERVATION_REGISTER
        | io::RESERVATION_REPORT
        | io::RESERVATION_ACQUIRE
        | io::RESERVATION_RELEASE
        | io::COPY
        | io::CANCEL => Class::Refused,
        _ => Class::Opaque,
    }
}

/// Whether a passed-through opcode may change blocks: all but Verify (Write Uncorrectable, and
/// anything opaque). Such commands are checked and gated as writes.
pub(crate) fn may_write(opcode: u8) -> bool {
    opcode != io::VERIFY
}

fn complete(cmd: Cmd<'_>, s: Status) -> Exec {
    cmd.cqe.set_status(s);
    Exec::Complete
}

/// Hand an unmodelled I/O opcode to namespace `ns`'s NVMe bdev, or refuse it (see the module
/// docs). The data buffer is the one the transport sized from the SGL, in the direction of the
/// opcode's bits 1:0; bidirectional and fused commands are refused (Invalid Field).
pub(crate) fn execute(ns: &Arc<Namespace>, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    let sqe = cmd.sqe;
    let len = cmd.buf.as_ref().map_or(0, |b| b.len());
    let exact_len = match class(sqe.opcode) {
        Class::Refused => return complete(cmd, Status::generic(GenericStatus::INVALID_OPCODE).dnr()),
        Class::Opaque if !ns.passthru_io => return complete(cmd, Status::generic(GenericStatus::INVALID_OPCODE).dnr()),
        Class::Opaque => false,
        Class::BlocksNoData => {
            if len != 0 || sqe.sgl1().length.get() != 0 {
                return complete(cmd, Status::generic(GenericStatus::DATA_SGL_LENGTH_INVALID).dnr());
            }
            let end = sqe.slba().checked_add(sqe.nlb() as u64);
            if end.is_none_or(|end| end > ns.bdev.num_blocks()) {
                return complete(cmd, Status::generic(GenericStatus::LBA_OUT_OF_RANGE).dnr());
            }
            true
        }
    };
    let host_to_ctrl = match sqe.opcode & 3 {
        1 => true,
        2 => false,
        // No data transfer: the transport gave no buffer.
        0 => false,
        // Bidirectional: the transports move data one way per command.
        _ if sqe.sgl1().length.get() == 0 => false,
        _ => return complete(cmd, Status::generic(GenericStatus::INVALID_FIELD).dnr()),
    };
    if sqe.fuse() != 0 {
        return complete(cmd, Status::generic(GenericStatus::INVALID_FIELD).dnr());
    }
    if len > MAX_IO_SIZE || (sqe.opcode & 3 != 0 && len as u64 != sqe.sgl1().length.get() as u64) {
        return complete(cmd, Status::generic(GenericStatus::DATA_SGL_LENGTH_INVALID).dnr());
    }
    let Some(chan) = ctx.channel(ns) else {
        return complete(cmd, Status::generic(GenericStatus::INTERNAL_ERROR));
    };
    let buf = if len > 0 { cmd.buf.take() } else { None };
    let io = PassthruIo { sqe: *sqe, buf, host_to_ctrl, exact_len, tag: cmd.tag };
    match chan.submit_passthru(io, may_write(sqe.opcode)) {
        Ok(()) => Exec::Pending,
        Err(io) => {
            if io.buf.is_some() {
                *cmd.buf = io.buf;
            }
            complete(cmd, Status::generic(GenericStatus::INVALID_OPCODE).dnr())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcode_classes() {
        assert_eq!(class(io::VERIFY), Class::BlocksNoData);
        assert_eq!(class(io::WRITE_UNCORRECTABLE), Class::BlocksNoData);
        for op in [0x0d, 0x0e, 0x11, 0x15, 0x18, 0x19] {
            assert_eq!(class(op), Class::Refused, "opcode {op:#x}");
        }
        for op in [0x12, 0x1d, 0x80, 0xc1, 0xc2, 0xff] {
            assert_eq!(class(op), Class::Opaque, "opcode {op:#x}");
        }
    }
}
