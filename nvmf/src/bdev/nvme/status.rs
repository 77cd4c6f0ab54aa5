//! Status mapping: an NVMe completion status from the device becomes a bdev status (which the
//! target maps back to an NVMe status for the host).

use super::BdevOp;
use super::BdevStatus;
use crate::spec::{CommandSpecificStatus, GenericStatus, MediaStatus, Status, StatusCodeType};

/// The status for an I/O that failed without a more specific NVMe status (submission error,
/// timeout, dead controller): reads and compares fail as reads, everything else as writes.
pub(super) fn failure(op: BdevOp) -> BdevStatus {
    match op {
        BdevOp::Read | BdevOp::Compare => BdevStatus::ReadError,
        _ => BdevStatus::WriteError,
    }
}

/// Map an NVMe completion status from the device to a bdev status (which the target maps back
/// to an NVMe status for the host).
pub fn map_status(status: Status, op: BdevOp) -> BdevStatus {
    if status.is_success() {
        return BdevStatus::Success;
    }
    let sct = status.sct();
    let sc = status.sc();
    if sct == StatusCodeType::MediaDataIntegrity as u8 {
        return match sc {
            MediaStatus::UNRECOVERED_READ_ERROR => BdevStatus::ReadError,
            MediaStatus::WRITE_FAULT => BdevStatus::WriteError,
            MediaStatus::COMPARE_FAILURE => BdevStatus::CompareMismatch,
            _ => failure(op),
        };
    }
    if sct == StatusCodeType::Generic as u8 {
        return match sc {
            GenericStatus::LBA_OUT_OF_RANGE => BdevStatus::OutOfRange,
            GenericStatus::CAPACITY_EXCEEDED => BdevStatus::NoSpace,
            GenericStatus::INVALID_OPCODE => BdevStatus::Unsupported,
            GenericStatus::INVALID_FIELD
            | GenericStatus::INVALID_NAMESPACE_OR_FORMAT
            | GenericStatus::DATA_SGL_LENGTH_INVALID
            | GenericStatus::INVALID_PRP_OFFSET
            | GenericStatus::INVALID_NUM_SGL_DESCRIPTORS
            | GenericStatus::INVALID_SGL_SEG_DESCRIPTOR
            | GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID
            | GenericStatus::INVALID_SGL_OFFSET => BdevStatus::InvalidArg,
            // Internal error, data transfer error, aborts, namespace not ready, write protected...
            _ => failure(op),
        };
    }
    if sct == StatusCodeType::CommandSpecific as u8 {
        return match sc {
            CommandSpecificStatus::CONFLICTING_ATTRIBUTES | CommandSpecificStatus::INVALID_PROTECTION_INFO => {
                BdevStatus::InvalidArg
            }
            _ => failure(op),
        };
    }
    // Path-related and vendor-specific statuses.
    failure(op)
}
