//! Discovery Log Page (NVMe-oF 1.1 section 5.3, Figures 31-32).

use super::{Le16, Le64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Discovery log page header, 1024 bytes (Figure 31).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct DiscoveryLogHeader {
    /// Generation counter (GENCTR): changes whenever the log changes.
    pub genctr: Le64,
    /// Number of records (NUMREC).
    pub numrec: Le64,
    /// Record format (RECFMT): 0.
    pub recfmt: Le16,
    pub reserved: [u8; 1006],
}
const _: () = assert!(core::mem::size_of::<DiscoveryLogHeader>() == 1024);

/// Discovery log page entry, 1024 bytes (Figure 32).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct DiscoveryLogEntry {
    /// Transport type (TRTYPE).
    pub trtype: u8,
    /// Address family (ADRFAM).
    pub adrfam: u8,
    /// Subsystem type (SUBTYPE).
    pub subtype: u8,
    /// Transport requirements (TREQ).
    pub treq: u8,
    /// Port ID (PORTID).
    pub portid: Le16,
    /// Controller ID (CNTLID): 0xFFFF = dynamic.
    pub cntlid: Le16,
    /// Admin max SQ size (ASQSZ).
    pub asqsz: Le16,
    /// Entry flags (EFLAGS).
    pub eflags: Le16,
    pub reserved1: [u8; 20],
    /// Transport service identifier (TRSVCID), e.g. the TCP port as ASCII.
    pub trsvcid: [u8; 32],
    pub reserved2: [u8; 192],
    pub subnqn: [u8; 256],
    /// Transport address (TRADDR), e.g. the IP address as ASCII.
    pub traddr: [u8; 256],
    /// Transport specific address subtype (TSAS).
    pub tsas: [u8; 256],
}
const _: () = assert!(core::mem::size_of::<DiscoveryLogEntry>() == 1024);

/// TRTYPE values (NVMe-oF 1.1 Figure 32 / TP 8000).
pub mod trtype {
    pub const RDMA: u8 = 1;
    pub const FC: u8 = 2;
    pub const TCP: u8 = 3;
    pub const LOOP: u8 = 254;
}
/// ADRFAM values.
pub mod adrfam {
    pub const IPV4: u8 = 1;
    pub const IPV6: u8 = 2;
    /// Intra-host transport (the loopback transport).
    pub const INTRA_HOST: u8 = 254;
}
/// SUBTYPE values.
pub mod subtype {
    /// A referral to another discovery service.
    pub const DISCOVERY_REFERRAL: u8 = 1;
    pub const NVME: u8 = 2;
    /// The discovery subsystem reporting itself.
    pub const CURRENT_DISCOVERY: u8 = 3;
}
/// TREQ bits: SECURE_CHANNEL (bits 1:0: 01b required, 10b not required), SQ flow control
/// disable (bit 2).
pub mod treq {
    pub const SECURE_CHANNEL_REQUIRED: u8 = 0x01;
    pub const SECURE_CHANNEL_NOT_REQUIRED: u8 = 0x02;
    pub const DISABLE_SQFLOW: u8 = 0x04;
}
/// EFLAGS bits (NVMe-oF 1.1a / TP 8013, 8014).
pub mod eflags {
    /// Duplicate Returned Information: the entry describes what the host already knows.
    pub const DUPRETINFO: u16 = 1 << 0;
    /// Explicit Persistent Connection Support for Discovery.
    pub const EPCSD: u16 = 1 << 1;
    /// No CDC Connectivity.
    pub const NCC: u16 = 1 << 2;
}
/// Transport Specific Address Subtype for RDMA (NVMe/RDMA 1.0b Figure 6): bytes 0-2.
pub mod rdma_tsas {
    /// RDMA_QPTYPE: reliable connected.
    pub const QPTYPE_RELIABLE_CONNECTED: u8 = 1;
    /// RDMA_PRTYPE: no provider specified.
    pub const PRTYPE_NOT_SPECIFIED: u8 = 1;
    /// RDMA_CMS: the RDMA_CM (RDMA_IP_CM).
    pub const CMS_RDMA_CM: u8 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;
    #[test]
    fn entry_offsets() {
        assert_eq!(offset_of!(DiscoveryLogEntry, portid), 4);
        assert_eq!(offset_of!(DiscoveryLogEntry, asqsz), 8);
        assert_eq!(offset_of!(DiscoveryLogEntry, trsvcid), 32);
        assert_eq!(offset_of!(DiscoveryLogEntry, subnqn), 256);
        assert_eq!(offset_of!(DiscoveryLogEntry, traddr), 512);
        assert_eq!(offset_of!(DiscoveryLogEntry, tsas), 768);
    }
}
