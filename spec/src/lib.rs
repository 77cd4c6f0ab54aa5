//! NVMe Base Specification 2.0 data structures, shared by the PCIe driver and the fabrics target.
//!
//! Every wire or memory structure is `#[repr(C)]`, built from little-endian field types
//! (`zerocopy::little_endian`, alignment 1, so there is never hidden padding) and has a
//! compile-time size assertion.
//!
//! The bottom of the workspace's dependency graph: it depends on `zerocopy` only, and both the
//! PCIe driver (`nvme-driver`, which re-exports it as `nvme_driver::spec`) and the fabrics
//! target (`nvmf`, as part of `nvmf::spec`) build on it.

#![forbid(unsafe_code)]

pub mod cqe;
pub mod features;
pub mod identify;
pub mod log_page;
pub mod opcode;
pub mod registers;
pub mod reservation;
pub mod sqe;
pub mod status;

pub use cqe::Cqe;
pub use features::{async_event_dw0, async_event_notice, async_event_type, fid, AsyncEvent, NumberOfQueues};
pub use identify::{
    cns, csi, nidt, IdentifyController, IdentifyControllerNvm, IdentifyNamespace, IdentifyNamespaceIndependent,
    IdentifyNamespaceNvm, IoCommandSetCombinations, LbaFormat, NsIdDescriptorHeader, PowerStateDescriptor,
};
pub use log_page::{
    ana_state, cmd_effects, lid, lid_effects, AnaGroupDescriptor, AnaLogHeader, ChangedNsList,
    CommandsSupportedEffects, ErrorLogEntry, FirmwareSlotLog, GetLogPageArgs, SmartLog, SupportedLogPages, ANA_LSP_RGO,
};
pub use opcode::{AdminOpcode, FabricsType, NvmOpcode};
pub use registers::{cap_css, cc_css, doorbell_offset, reg, shn, shst, Aqa, Cap, Cc, Csts, Vs};
pub use sqe::{SglDescriptor, Sqe, CDW12_FUA};
pub use status::{CommandSpecificStatus, GenericStatus, MediaStatus, PathStatus, Status, StatusCodeType};

/// Little-endian field types used by all spec structs.
pub use zerocopy::little_endian::{U16 as Le16, U32 as Le32, U64 as Le64};
