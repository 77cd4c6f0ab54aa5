//! Checking a command's SGL1 against what the NVMe/RDMA transport allows (RDMA Transport Spec
//! 1.0b section 3.2) and deciding how its data moves: a pure function, unit-tested in `conn.rs`.

use super::wr::{Keyed, KEYED_SUBTYPE_ADDRESS, KEYED_SUBTYPE_INVALIDATE};
use crate::spec::sqe::{sgl_subtype, sgl_type};
use crate::spec::{GenericStatus, SglDescriptor, Status};
use crate::transport::Dir;

/// How a command's data moves, or the status that fails it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataPlan {
    None,
    /// In-capsule data at `off` (relative to the end of the SQE), `len` bytes.
    InCapsule {
        off: usize,
        len: usize,
    },
    Keyed(Keyed),
    Bad(Status),
}

/// Check SGL1 of a command (RDMA Transport Spec 1.0b section 3.2: keyed SGL data blocks with
/// the Address or Invalidate subtype, or a data block with the Offset subtype for in-capsule
/// data) against the in-capsule bytes received and the transport limits.
pub(crate) fn plan_data(sgl: &SglDescriptor, dir: Dir, icd_len: usize, icd_max: usize, max_io: u32) -> DataPlan {
    let bad = |sc| DataPlan::Bad(Status::generic(sc).dnr());
    match (sgl.sgl_type(), sgl.subtype()) {
        (sgl_type::KEYED_DATA_BLOCK, KEYED_SUBTYPE_ADDRESS | KEYED_SUBTYPE_INVALIDATE) => {
            let k = Keyed::decode(sgl);
            if k.len > max_io {
                return bad(GenericStatus::DATA_SGL_LENGTH_INVALID);
            }
            if k.len > 0 && k.addr.checked_add(k.len as u64).is_none() {
                // The host buffer would wrap around the address space.
                return bad(GenericStatus::DATA_SGL_LENGTH_INVALID);
            }
            if k.len > 0 && dir == Dir::None {
                return bad(GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID);
            }
            DataPlan::Keyed(k)
        }
        (sgl_type::KEYED_DATA_BLOCK, _) => bad(GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID),
        (sgl_type::DATA_BLOCK, sgl_subtype::OFFSET) => {
            let off = sgl.address.get();
            let len = sgl.length.get() as u64;
            if len == 0 {
                return DataPlan::None;
            }
            if dir != Dir::HostToCtrl {
                return bad(GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID);
            }
            if len > icd_max as u64 {
                return bad(GenericStatus::DATA_SGL_LENGTH_INVALID);
            }
            match off.checked_add(len) {
                Some(end) if end <= icd_len as u64 => DataPlan::InCapsule { off: off as usize, len: len as usize },
                _ if off >= icd_len as u64 => bad(GenericStatus::INVALID_SGL_OFFSET),
                _ => bad(GenericStatus::DATA_SGL_LENGTH_INVALID),
            }
        }
        _ if dir == Dir::None && sgl.length.get() == 0 => DataPlan::None,
        _ => bad(GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID),
    }
}
