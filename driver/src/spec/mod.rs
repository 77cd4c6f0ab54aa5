//! NVMe Base Specification 2.0 data structures, shared by the PCIe driver and the fabrics target.
//!
//! Every wire or memory structure is `#[repr(C)]`, built from little-endian field types
//! (`zerocopy::little_endian`, alignment 1, so there is never hidden padding) and has a
//! compile-time size assertion.

pub mod cqe;
pub mod opcode;
pub mod sqe;
pub mod status;

pub use cqe::Cqe;
pub use opcode::{AdminOpcode, FabricsType, NvmOpcode};
pub use sqe::{Sqe, SglDescriptor};
pub use status::{GenericStatus, Status, StatusCodeType, CommandSpecificStatus, MediaStatus, PathStatus};

/// Little-endian field types used by all spec structs.
pub use zerocopy::little_endian::{U16 as Le16, U32 as Le32, U64 as Le64};
