//! Completion status field (NVMe Base 2.0 section 4.6.1, Figures 92-101).

/// Status Code Type (SCT, bits 11:9 of the status field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum StatusCodeType {
    Generic = 0,
    CommandSpecific = 1,
    MediaDataIntegrity = 2,
    Path = 3,
    VendorSpecific = 7,
}

/// Generic command status codes (SCT 0, Figure 94).
#[allow(non_snake_case)]
pub mod GenericStatus {
    pub const SUCCESS: u8 = 0x00;
    pub const INVALID_OPCODE: u8 = 0x01;
    pub const INVALID_FIELD: u8 = 0x02;
    pub const CID_CONFLICT: u8 = 0x03;
    pub const DATA_TRANSFER_ERROR: u8 = 0x04;
    pub const ABORTED_POWER_LOSS: u8 = 0x05;
    pub const INTERNAL_ERROR: u8 = 0x06;
    pub const ABORTED_BY_REQUEST: u8 = 0x07;
    pub const ABORTED_SQ_DELETION: u8 = 0x08;
    pub const ABORTED_FAILED_FUSED: u8 = 0x09;
    pub const ABORTED_MISSING_FUSED: u8 = 0x0a;
    pub const INVALID_NAMESPACE_OR_FORMAT: u8 = 0x0b;
    pub const COMMAND_SEQUENCE_ERROR: u8 = 0x0c;
    pub const INVALID_SGL_SEG_DESCRIPTOR: u8 = 0x0d;
    pub const INVALID_NUM_SGL_DESCRIPTORS: u8 = 0x0e;
    pub const DATA_SGL_LENGTH_INVALID: u8 = 0x0f;
    pub const METADATA_SGL_LENGTH_INVALID: u8 = 0x10;
    pub const SGL_DESCRIPTOR_TYPE_INVALID: u8 = 0x11;
    pub const INVALID_CONTROLLER_MEM_BUF: u8 = 0x12;
    pub const INVALID_PRP_OFFSET: u8 = 0x13;
    pub const ATOMIC_WRITE_UNIT_EXCEEDED: u8 = 0x14;
    pub const OPERATION_DENIED: u8 = 0x15;
    pub const INVALID_SGL_OFFSET: u8 = 0x16;
    pub const HOSTID_INCONSISTENT_FORMAT: u8 = 0x18;
    pub const KEEP_ALIVE_EXPIRED: u8 = 0x19;
    pub const KEEP_ALIVE_INVALID: u8 = 0x1a;
    pub const ABORTED_PREEMPT: u8 = 0x1b;
    pub const SANITIZE_FAILED: u8 = 0x1c;
    pub const SANITIZE_IN_PROGRESS: u8 = 0x1d;
    pub const SGL_DATA_BLOCK_GRANULARITY_INVALID: u8 = 0x1e;
    pub const COMMAND_INVALID_IN_CMB: u8 = 0x1f;
    pub const NAMESPACE_IS_WRITE_PROTECTED: u8 = 0x20;
    pub const COMMAND_INTERRUPTED: u8 = 0x21;
    pub const TRANSIENT_TRANSPORT_ERROR: u8 = 0x22;
    /// NVM command set specific generic codes (0x80..).
    pub const LBA_OUT_OF_RANGE: u8 = 0x80;
    pub const CAPACITY_EXCEEDED: u8 = 0x81;
    pub const NAMESPACE_NOT_READY: u8 = 0x82;
    pub const RESERVATION_CONFLICT: u8 = 0x83;
    pub const FORMAT_IN_PROGRESS: u8 = 0x84;
}

/// Command specific status codes (SCT 1, Figure 95 and NVMe-oF 1.1 Figure 16).
#[allow(non_snake_case)]
pub mod CommandSpecificStatus {
    pub const COMPLETION_QUEUE_INVALID: u8 = 0x00;
    pub const INVALID_QUEUE_IDENTIFIER: u8 = 0x01;
    pub const INVALID_QUEUE_SIZE: u8 = 0x02;
    pub const ABORT_COMMAND_LIMIT_EXCEEDED: u8 = 0x03;
    pub const ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED: u8 = 0x05;
    pub const INVALID_FIRMWARE_SLOT: u8 = 0x06;
    pub const INVALID_LOG_PAGE: u8 = 0x09;
    pub const INVALID_FORMAT: u8 = 0x0a;
    pub const FEATURE_ID_NOT_SAVEABLE: u8 = 0x0d;
    pub const FEATURE_NOT_CHANGEABLE: u8 = 0x0e;
    pub const FEATURE_NOT_NAMESPACE_SPECIFIC: u8 = 0x0f;
    pub const INVALID_CONTROLLER_ID: u8 = 0x1f;
    /// NVM command set: Conflicting Attributes (DSM, etc.).
    pub const CONFLICTING_ATTRIBUTES: u8 = 0x80;
    pub const INVALID_PROTECTION_INFO: u8 = 0x81;
    pub const ATTEMPTED_WRITE_TO_RO_RANGE: u8 = 0x82;
    /// Fabrics (NVMe-oF 1.1 Figure 16): Connect Incompatible Format.
    pub const CONNECT_INCOMPATIBLE_FORMAT: u8 = 0x80;
    /// Fabrics: Connect Controller Busy.
    pub const CONNECT_CONTROLLER_BUSY: u8 = 0x81;
    /// Fabrics: Connect Invalid Parameters (DW0 carries IATTR/IPO).
    pub const CONNECT_INVALID_PARAMETERS: u8 = 0x82;
    /// Fabrics: Connect Restart Discovery.
    pub const CONNECT_RESTART_DISCOVERY: u8 = 0x83;
    /// Fabrics: Connect Invalid Host.
    pub const CONNECT_INVALID_HOST: u8 = 0x84;
    /// Fabrics: Invalid Queue Type.
    pub const INVALID_QUEUE_TYPE: u8 = 0x85;
    /// Fabrics: Discover Restart.
    pub const DISCOVER_RESTART: u8 = 0x90;
    /// Fabrics: Authentication Required.
    pub const AUTH_REQUIRED: u8 = 0x91;
}

/// Media and data integrity errors (SCT 2, Figure 100).
#[allow(non_snake_case)]
pub mod MediaStatus {
    pub const WRITE_FAULT: u8 = 0x80;
    pub const UNRECOVERED_READ_ERROR: u8 = 0x81;
    pub const GUARD_CHECK_ERROR: u8 = 0x82;
    pub const APPLICATION_TAG_CHECK_ERROR: u8 = 0x83;
    pub const REFERENCE_TAG_CHECK_ERROR: u8 = 0x84;
    pub const COMPARE_FAILURE: u8 = 0x85;
    pub const ACCESS_DENIED: u8 = 0x86;
    pub const DEALLOCATED_OR_UNWRITTEN_BLOCK: u8 = 0x87;
}

/// Path related status (SCT 3, Figure 101).
#[allow(non_snake_case)]
pub mod PathStatus {
    pub const INTERNAL_PATH_ERROR: u8 = 0x00;
    /// Asymmetric Access Persistent Loss: the namespace is not reachable through this controller.
    pub const ASYMMETRIC_ACCESS_PERSISTENT_LOSS: u8 = 0x01;
    /// Asymmetric Access Inaccessible: try another path.
    pub const ASYMMETRIC_ACCESS_INACCESSIBLE: u8 = 0x02;
    /// Asymmetric Access Transition: the path is changing state; retry.
    pub const ASYMMETRIC_ACCESS_TRANSITION: u8 = 0x03;
    pub const CONTROLLER_PATHING_ERROR: u8 = 0x60;
    pub const HOST_PATHING_ERROR: u8 = 0x70;
    pub const ABORTED_BY_HOST: u8 = 0x71;
}

/// The 15-bit status field of a CQE (without the phase tag): SC, SCT, CRD, More, DNR.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Status(u16);

impl Status {
    pub const SUCCESS: Status = Status(0);

    /// Build a status from SCT and SC with DNR clear.
    pub const fn new(sct: StatusCodeType, sc: u8) -> Self {
        Status(((sct as u16) << 8) | sc as u16)
    }
    pub const fn generic(sc: u8) -> Self {
        Self::new(StatusCodeType::Generic, sc)
    }
    pub const fn command_specific(sc: u8) -> Self {
        Self::new(StatusCodeType::CommandSpecific, sc)
    }
    pub const fn media(sc: u8) -> Self {
        Self::new(StatusCodeType::MediaDataIntegrity, sc)
    }
    pub const fn path(sc: u8) -> Self {
        Self::new(StatusCodeType::Path, sc)
    }
    /// Set Do Not Retry (bit 14 of the field without phase, bit 15 in the CQE).
    pub const fn dnr(self) -> Self {
        Status(self.0 | 1 << 14)
    }
    /// Raw 15-bit field: SC bits 7:0, SCT bits 10:8, CRD bits 12:11, M bit 13, DNR bit 14.
    pub const fn to_raw(self) -> u16 {
        self.0
    }
    pub const fn from_raw(v: u16) -> Self {
        Status(v & 0x7fff)
    }
    pub const fn sc(self) -> u8 {
        self.0 as u8
    }
    pub const fn sct(self) -> u8 {
        ((self.0 >> 8) & 0x7) as u8
    }
    pub const fn is_dnr(self) -> bool {
        self.0 & (1 << 14) != 0
    }
    pub const fn is_success(self) -> bool {
        self.sc() == 0 && self.sct() == 0
    }
}

impl core::fmt::Debug for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Status(sct={:#x}, sc={:#04x}{})", self.sct(), self.sc(), if self.is_dnr() { ", dnr" } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn status_bits_match_the_cqe_layout() {
        let s = Status::generic(GenericStatus::LBA_OUT_OF_RANGE).dnr();
        // In the CQE the field is shifted left by one for the phase tag: DNR is bit 15, SCT bits 11:9.
        assert_eq!(s.to_raw() << 1, 0x8000 | 0x80 << 1);
        let s = Status::media(MediaStatus::COMPARE_FAILURE);
        assert_eq!((s.to_raw() << 1) >> 9 & 7, 2);
        assert_eq!(Status::from_raw(s.to_raw()).sc(), 0x85);
    }
}
