//! Identify (Base 2.0 section 5.17): controller, namespace, active namespace list, namespace
//! identification descriptors, and the I/O Command Set structures of Base 2.0 (CNS 05h-08h and
//! 1Ch) for the one command set a controller here has, NVM.

use crate::ctrlr::{
    Controller, CRITICAL_TEMPERATURE_K, MAX_AERS, MAX_QUEUE_DEPTH, NVME_VERSION, WARNING_TEMPERATURE_K,
};
use crate::queue::{Cmd, Exec, NvmeQueue};
use crate::spec::identify::{cntrltype, oncs};
use crate::spec::reservation::rescap;
use crate::spec::{
    cns, csi, nidt, put_str, GenericStatus, IdentifyController, IdentifyControllerNvm, IdentifyNamespace,
    IdentifyNamespaceIndependent, IdentifyNamespaceNvm, IoCommandSetCombinations, LbaFormat, Status,
};
use zerocopy::{FromZeros, IntoBytes};

/// Largest data transfer per command: 1 MiB (MDTS = 8 with 4 KiB pages).
pub const MAX_IO_SIZE: usize = 1 << 20;
const MDTS: u8 = 8;
/// ANA Transition Time (Identify ANATT): the longest a group stays in the change state before
/// hosts may treat it as inaccessible.
const ANA_TRANSITION_TIME_S: u8 = 10;
/// In-capsule data accepted per command (Identify Controller IOCCSZ), as Linux's admin queue uses.
pub const IN_CAPSULE_DATA_SIZE: usize = 8192;

pub(crate) fn execute(q: &mut NvmeQueue, ctrl: &Controller, cmd: Cmd<'_>) -> Exec {
    let cns = cmd.sqe.cdw10.get() as u8;
    let nsid = cmd.sqe.nsid.get();
    match cns {
        cns::CONTROLLER => {
            let mut id = identify_controller(ctrl);
            if q.listener().trtype == crate::transport::TransportType::Rdma {
                // SGLS bit 2: Keyed SGL Data Block descriptors (mandatory for NVMe/RDMA; the
                // Linux nvme-rdma host refuses a controller without it).
                id.sgls.set(id.sgls.get() | 1 << 2);
            }
            super::fill_data(cmd.buf, id.as_bytes());
        }
        // The command-set specific structures exist only for the NVM Command Set.
        cns::CSI_NAMESPACE | cns::CSI_CONTROLLER | cns::CSI_ACTIVE_NS_LIST if command_set(cmd.sqe) != csi::NVM => {
            cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
        }
        cns::NAMESPACE | cns::CSI_NAMESPACE | cns::CS_INDEPENDENT_NAMESPACE => {
            if nsid == 0 || nsid == 0xffff_ffff || nsid > ctrl.subsys.max_namespaces {
                cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT).dnr());
                return Exec::Complete;
            }
            // An inactive NSID returns a zero-filled structure.
            let ns = q.namespace(ctrl, nsid);
            match (cns, ns) {
                (cns::NAMESPACE, Some(ns)) => {
                    let mut id = identify_namespace(&ns);
                    if ctrl.subsys.ana_reporting {
                        id.anagrpid.set(ns.anagrpid);
                        // Not usable through this path (SPDK reports the same).
                        if ctrl.ana_state(ns.anagrpid).unusable() {
                            id.nuse.set(0);
                        }
                    }
                    super::fill_data(cmd.buf, id.as_bytes())
                }
                (cns::CS_INDEPENDENT_NAMESPACE, Some(ns)) => {
                    let mut id = identify_namespace_independent(&ns);
                    if ctrl.subsys.ana_reporting {
                        id.anagrpid.set(ns.anagrpid);
                    }
                    super::fill_data(cmd.buf, id.as_bytes())
                }
                // Inactive NSIDs (all zero), and CNS 05h: no protection information, storage
                // tags or extended LBA formats.
                _ => super::fill_data(cmd.buf, IdentifyNamespaceNvm::new_zeroed().as_bytes()),
            }
        }
        cns::CSI_CONTROLLER => {
            // No Verify, Write Zeroes, Write Uncorrectable or Dataset Management limits beyond
            // MDTS and the commands' own fields.
            super::fill_data(cmd.buf, IdentifyControllerNvm::new_zeroed().as_bytes());
        }
        cns::IO_COMMAND_SET => {
            // One I/O Command Set combination: the NVM Command Set alone.
            let mut sets = IoCommandSetCombinations::new_zeroed();
            sets.combination[0].set(1 << csi::NVM);
            super::fill_data(cmd.buf, sets.as_bytes());
        }
        cns::ACTIVE_NS_LIST | cns::CSI_ACTIVE_NS_LIST => {
            if nsid >= 0xffff_fffe {
                cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT).dnr());
                return Exec::Complete;
            }
            // Only the namespaces visible to this controller's host are active for it.
            let table = q.ns_table(ctrl);
            let mut list = [0u32; 1024];
            for (slot, ns) in list.iter_mut().zip(table.iter().flatten().filter(|ns| ns.nsid > nsid)) {
                *slot = ns.nsid;
            }
            super::fill_data(cmd.buf, list.as_bytes());
        }
        cns::NS_DESCRIPTOR_LIST => {
            let Some(ns) = q.namespace(ctrl, nsid) else {
                cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT).dnr());
                return Exec::Complete;
            };
            let mut page = [0u8; 4096];
            let mut off = 0;
            for (ty, id) in [(nidt::EUI64, &ns.eui64[..]), (nidt::NGUID, &ns.nguid[..]), (nidt::UUID, &ns.uuid[..])] {
                page[off] = ty;
                page[off + 1] = id.len() as u8;
                page[off + 4..off + 4 + id.len()].copy_from_slice(id);
                off += 4 + id.len();
            }
            super::fill_data(cmd.buf, &page);
        }
        _ => cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr()),
    }
    Exec::Complete
}

/// Command Set Identifier of an Identify command (CDW11 bits 31:24).
fn command_set(sqe: &crate::spec::Sqe) -> u8 {
    (sqe.cdw11.get() >> 24) as u8
}

pub(crate) fn identify_controller(ctrl: &Controller) -> IdentifyController {
    let sub = &ctrl.subsys;
    let mut id = IdentifyController::default();
    put_str(&mut id.sn, &sub.serial, b' ');
    put_str(&mut id.mn, &sub.model, b' ');
    put_str(&mut id.fr, env!("CARGO_PKG_VERSION"), b' ');
    put_str(&mut id.subnqn, &sub.nqn, 0);
    id.rab = 6;
    id.cntlid.set(ctrl.cntlid);
    id.ver.set(NVME_VERSION);
    // CTRATT bit 0: 128-bit host identifier (required by fabrics).
    id.ctratt.set(1);
    id.acl = 3;
    id.aerl = MAX_AERS as u8 - 1;
    // LPA bit 1: Commands Supported and Effects log page; bit 2: extended data for Get Log Page
    // (NUMDU, offsets).
    id.lpa = 1 << 1 | 1 << 2;
    // FRMW: one firmware slot (bits 3:1), read only (bit 0), as the Firmware Slot log says.
    id.frmw = 1 << 1 | 1;
    id.elpe = 0;
    // KAS in 100 ms units: the keep-alive timer is checked every poll, so 100 ms granularity holds.
    id.kas.set(1);
    id.sqes = 0x66;
    id.cqes = 0x44;
    id.maxcmd.set(MAX_QUEUE_DEPTH);
    id.mdts = MDTS;
    // SGLS: SGLs supported (bits 1:0 = 01b), offset in data block descriptors (bit 20).
    id.sgls.set(1 | 1 << 20);
    if sub.is_discovery() {
        id.cntrltype = cntrltype::DISCOVERY;
        id.mdts = 0;
        // OAES bit 31: Discovery Log Page Change notices (persistent discovery connections).
        id.oaes.set(1 << 31);
    } else {
        id.cntrltype = cntrltype::IO;
        // CMIC bit 1: the subsystem may have several controllers.
        id.cmic = 1 << 1;
        // OAES bit 8: Namespace Attribute Notices.
        id.oaes.set(1 << 8);
        id.nn.set(sub.max_namespaces);
        id.mnan.set(sub.max_namespaces);
        // ONCS bit 4: Get Features' Select field (no feature is saveable); bit 5: reservations.
        id.oncs.set(
            oncs::COMPARE | oncs::DATASET_MANAGEMENT | oncs::WRITE_ZEROES | oncs::SAVE_SELECT | oncs::RESERVATIONS,
        );
        // FUSES bit 0: fused Compare and Write (crate::fused). The write gate makes a pair of
        // any length atomic, so ACWU (0's based, in blocks) is the largest transfer in the
        // smallest block size.
        id.fuses.set(1);
        id.acwu.set((MAX_IO_SIZE / 512 - 1) as u16);
        // The thresholds the SMART log's composite temperature is measured against; the
        // Temperature Threshold feature defaults to WCTEMP.
        id.wctemp.set(WARNING_TEMPERATURE_K);
        id.cctemp.set(CRITICAL_TEMPERATURE_K);
        // VWC bit 0: a volatile write cache may exist (file bdevs); hosts must Flush. Bits 2:1
        // = 11b: Flush with NSID FFFFFFFFh flushes every namespace.
        id.vwc = if sub.namespaces().iter().any(|ns| ns.bdev.volatile_write_cache()) { 0b111 } else { 0 };
        if sub.ana_reporting {
            // CMIC bit 3: ANA reporting; OAES bit 11: ANA Change notices. ANACAP: all five
            // states reported (bits 4:0), a namespace's group does not change while it is
            // attached (bit 6). One group per possible namespace, as SPDK.
            id.cmic |= 1 << 3;
            id.oaes.set(id.oaes.get() | 1 << 11);
            id.anatt = ANA_TRANSITION_TIME_S;
            id.anacap = 0b0101_1111;
            id.anagrpmax.set(sub.max_namespaces);
            id.nanagrpid.set(sub.max_namespaces);
        }
        id.ioccsz.set(((64 + IN_CAPSULE_DATA_SIZE) / 16) as u32);
        id.iorcsz.set(1);
        id.msdbd = 1;
    }
    id
}

/// CNS 08h for an active namespace: shared (NMIC bit 0), ready (NSTAT bit 0), and its
/// reservation capabilities.
fn identify_namespace_independent(ns: &crate::subsystem::Namespace) -> IdentifyNamespaceIndependent {
    let mut id = IdentifyNamespaceIndependent::new_zeroed();
    id.nmic = 1;
    id.nstat = 1;
    id.rescap = reservation_capabilities(ns);
    id
}

/// RESCAP: all six types, IEKEY as NVMe 1.3 defines it, and PTPL when the namespace has a file.
fn reservation_capabilities(ns: &crate::subsystem::Namespace) -> u8 {
    rescap::ALL_TYPES | rescap::IEKEY_13 | if ns.reservations.ptpl.is_some() { rescap::PTPL } else { 0 }
}

pub(crate) fn identify_namespace(ns: &crate::subsystem::Namespace) -> IdentifyNamespace {
    let mut id = IdentifyNamespace::default();
    let blocks = ns.bdev.num_blocks();
    id.nsze.set(blocks);
    id.ncap.set(blocks);
    id.nuse.set(blocks);
    // NMIC bit 0: the namespace may be attached to several controllers.
    id.nmic = 1;
    id.nlbaf = 0;
    id.flbas = 0;
    id.lbaf[0] = LbaFormat::new(ns.bdev.block_size().trailing_zeros() as u8, 0);
    id.nguid = ns.nguid;
    id.eui64 = ns.eui64;
    id.rescap = reservation_capabilities(ns);
    if ns.bdev.supports(crate::bdev::BdevOp::Unmap) && ns.bdev.deallocated_reads_zeroes() {
        // DLFEAT bits 2:0 = 001b: deallocated blocks read as zeroes.
        id.dlfeat = 1;
    }
    id
}
