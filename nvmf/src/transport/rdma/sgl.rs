//! Checking a command's SGL1 against what the NVMe/RDMA transport allows (RDMA Transport Spec
//! 1.0b section 3.2) and deciding how its data moves: a pure function.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Cqe;

    fn st(p: DataPlan) -> u8 {
        match p {
            DataPlan::Bad(s) => {
                let mut c = Cqe::default();
                c.set_status(s);
                assert!(c.status().is_dnr());
                c.status().sc()
            }
            _ => 0,
        }
    }

    #[test]
    fn keyed_sgl_validation() {
        let max = 1 << 20;
        let ok = Keyed::encode(0x1000, 4096, 7, false);
        assert_eq!(
            plan_data(&ok, Dir::CtrlToHost, 0, 8192, max),
            DataPlan::Keyed(Keyed { addr: 0x1000, len: 4096, key: 7, invalidate: false })
        );
        // Longer than the largest I/O.
        assert_eq!(
            st(plan_data(&Keyed::encode(0x1000, max + 1, 7, false), Dir::HostToCtrl, 0, 8192, max)),
            GenericStatus::DATA_SGL_LENGTH_INVALID
        );
        // Address + length wraps.
        assert_eq!(
            st(plan_data(&Keyed::encode(u64::MAX - 10, 4096, 7, false), Dir::HostToCtrl, 0, 8192, max)),
            GenericStatus::DATA_SGL_LENGTH_INVALID
        );
        // Unknown keyed subtype.
        let mut bad = Keyed::encode(0x1000, 4096, 7, false);
        bad.identifier = 0x45;
        assert_eq!(st(plan_data(&bad, Dir::HostToCtrl, 0, 8192, max)), GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID);
        // Data on a command that moves none.
        assert_eq!(st(plan_data(&ok, Dir::None, 0, 8192, max)), GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID);
        // The TCP transport's descriptor is not valid on RDMA.
        assert_eq!(
            st(plan_data(&SglDescriptor::transport(4096), Dir::HostToCtrl, 0, 8192, max)),
            GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID
        );
        // Zero-length keyed: no data.
        assert!(matches!(
            plan_data(&Keyed::encode(0, 0, 0, false), Dir::None, 0, 8192, max),
            DataPlan::Keyed(Keyed { len: 0, .. })
        ));
    }

    #[test]
    fn in_capsule_validation() {
        let max = 1 << 20;
        let icd = SglDescriptor::in_capsule(0, 512);
        assert_eq!(plan_data(&icd, Dir::HostToCtrl, 512, 8192, max), DataPlan::InCapsule { off: 0, len: 512 });
        assert_eq!(
            plan_data(&SglDescriptor::in_capsule(16, 496), Dir::HostToCtrl, 512, 8192, max),
            DataPlan::InCapsule { off: 16, len: 496 }
        );
        assert_eq!(st(plan_data(&icd, Dir::HostToCtrl, 256, 8192, max)), GenericStatus::DATA_SGL_LENGTH_INVALID);
        assert_eq!(
            st(plan_data(&SglDescriptor::in_capsule(600, 10), Dir::HostToCtrl, 512, 8192, max)),
            GenericStatus::INVALID_SGL_OFFSET
        );
        assert_eq!(st(plan_data(&icd, Dir::CtrlToHost, 512, 8192, max)), GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID);
        assert_eq!(
            st(plan_data(&SglDescriptor::in_capsule(0, 9000), Dir::HostToCtrl, 9000, 8192, max)),
            GenericStatus::DATA_SGL_LENGTH_INVALID
        );
    }
}
