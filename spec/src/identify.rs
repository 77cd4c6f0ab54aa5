//! Identify data structures: Identify Controller (NVMe Base 2.0 section 5.17.2.1, Figure 275),
//! Identify Namespace for the NVM Command Set (NVM Command Set 1.0 section 4.1.5.1, Figure 97),
//! the Namespace Identification Descriptor (Base 2.0 Figure 278) and the CNS values
//! (Base 2.0 Figure 273).

use super::{Le16, Le32, Le64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Controller or Namespace Structure (CNS) values, Identify CDW10 bits 7:0 (Base 2.0 Figure 273).
pub mod cns {
    /// Identify Namespace data structure for the NSID (I/O command set specific: NVM).
    pub const NAMESPACE: u8 = 0x00;
    /// Identify Controller data structure.
    pub const CONTROLLER: u8 = 0x01;
    /// Active Namespace ID list (NSIDs greater than CDW1.NSID).
    pub const ACTIVE_NS_LIST: u8 = 0x02;
    /// Namespace Identification Descriptor list.
    pub const NS_DESCRIPTOR_LIST: u8 = 0x03;
    /// NVM Set List.
    pub const NVM_SET_LIST: u8 = 0x04;
    /// I/O Command Set specific Identify Namespace (CSI in CDW11).
    pub const CSI_NAMESPACE: u8 = 0x05;
    /// I/O Command Set specific Identify Controller (CSI in CDW11).
    pub const CSI_CONTROLLER: u8 = 0x06;
    /// I/O Command Set specific Active Namespace ID list.
    pub const CSI_ACTIVE_NS_LIST: u8 = 0x07;
    /// I/O Command Set Independent Identify Namespace.
    pub const CS_INDEPENDENT_NAMESPACE: u8 = 0x08;
    /// Allocated Namespace ID list.
    pub const ALLOCATED_NS_LIST: u8 = 0x10;
    /// Identify Namespace for an allocated NSID.
    pub const ALLOCATED_NAMESPACE: u8 = 0x11;
    /// Controller list of controllers attached to the NSID.
    pub const NS_CONTROLLER_LIST: u8 = 0x12;
    /// Controller list of all controllers in the subsystem.
    pub const CONTROLLER_LIST: u8 = 0x13;
    /// Primary Controller Capabilities.
    pub const PRIMARY_CONTROLLER_CAPS: u8 = 0x14;
    /// Secondary Controller list.
    pub const SECONDARY_CONTROLLER_LIST: u8 = 0x15;
    /// Namespace Granularity list.
    pub const NS_GRANULARITY_LIST: u8 = 0x16;
    /// UUID list.
    pub const UUID_LIST: u8 = 0x17;
    /// Domain list.
    pub const DOMAIN_LIST: u8 = 0x18;
    /// Endurance Group list.
    pub const ENDURANCE_GROUP_LIST: u8 = 0x19;
    /// I/O Command Set specific Allocated Namespace ID list.
    pub const CSI_ALLOCATED_NS_LIST: u8 = 0x1A;
    /// I/O Command Set specific Identify Namespace for an allocated NSID.
    pub const CSI_ALLOCATED_NAMESPACE: u8 = 0x1B;
    /// Identify I/O Command Set data structure.
    pub const IO_COMMAND_SET: u8 = 0x1C;
}

/// Command Set Identifier (CSI) values (Base 2.0 Figure 286), used in Identify CDW11 and the
/// CSI namespace identification descriptor.
pub mod csi {
    pub const NVM: u8 = 0x00;
    pub const KEY_VALUE: u8 = 0x01;
    pub const ZONED: u8 = 0x02;
}

/// Identify CDW10: CNS (bits 7:0) and CNTID (bits 31:16).
pub const fn identify_cdw10(cns: u8, cntid: u16) -> u32 {
    cns as u32 | (cntid as u32) << 16
}

/// Write `s` into an ASCII identify field, padding with spaces (SN, MN, FR: Base 2.0 section
/// 1.5 "ASCII string"). Longer strings are truncated.
pub fn fill_ascii(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// Write `s` into a NUL-padded UTF-8 field such as SUBNQN. Longer strings are truncated so that
/// at least one NUL remains.
pub fn fill_nul_padded(dst: &mut [u8], s: &str) {
    dst.fill(0);
    let n = s.len().min(dst.len().saturating_sub(1));
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// Read a space- or NUL-padded identify string, trimmed.
pub fn field_str(src: &[u8]) -> &str {
    let end = src.iter().position(|&b| b == 0).unwrap_or(src.len());
    core::str::from_utf8(&src[..end]).unwrap_or("").trim_end_matches(' ')
}

/// Power State Descriptor, 32 bytes (Base 2.0 Figure 276). Identify Controller holds 32 of them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct PowerStateDescriptor {
    /// Maximum Power (MP) in 0.01 W or 0.0001 W units (see MXPS).
    pub mp: Le16,
    pub rsvd2: u8,
    /// Bit 0 Max Power Scale (MXPS), bit 1 Non-Operational State (NOPS).
    pub flags: u8,
    /// Entry Latency (ENLAT) in microseconds.
    pub enlat: Le32,
    /// Exit Latency (EXLAT) in microseconds.
    pub exlat: Le32,
    /// Relative Read Throughput (RRT, bits 4:0).
    pub rrt: u8,
    /// Relative Read Latency (RRL, bits 4:0).
    pub rrl: u8,
    /// Relative Write Throughput (RWT, bits 4:0).
    pub rwt: u8,
    /// Relative Write Latency (RWL, bits 4:0).
    pub rwl: u8,
    /// Idle Power (IDLP).
    pub idlp: Le16,
    /// Idle Power Scale (IPS, bits 7:6).
    pub ips: u8,
    pub rsvd19: u8,
    /// Active Power (ACTP).
    pub actp: Le16,
    /// Active Power Workload (APW, bits 2:0) and Active Power Scale (APS, bits 7:6).
    pub apw_aps: u8,
    pub rsvd23: [u8; 9],
}
const _: () = assert!(core::mem::size_of::<PowerStateDescriptor>() == 32);

/// Identify Controller data structure, 4096 bytes (CNS 0x01; Base 2.0 Figure 275, NVMe-oF
/// attributes from NVMe-oF 1.1 Figure 28).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct IdentifyController {
    // ---- Controller capabilities and features (bytes 0..255) ----
    /// PCI Vendor ID (VID).
    pub vid: Le16,
    /// PCI Subsystem Vendor ID (SSVID).
    pub ssvid: Le16,
    /// Serial Number (SN), ASCII, space padded.
    pub sn: [u8; 20],
    /// Model Number (MN), ASCII, space padded.
    pub mn: [u8; 40],
    /// Firmware Revision (FR), ASCII, space padded.
    pub fr: [u8; 8],
    /// Recommended Arbitration Burst (RAB).
    pub rab: u8,
    /// IEEE OUI Identifier (IEEE), least significant byte first.
    pub ieee: [u8; 3],
    /// Controller Multi-Path I/O and Namespace Sharing Capabilities (CMIC).
    pub cmic: u8,
    /// Maximum Data Transfer Size (MDTS): power of two in units of CAP.MPSMIN; 0 = no limit.
    pub mdts: u8,
    /// Controller ID (CNTLID).
    pub cntlid: Le16,
    /// Version (VER), same encoding as the VS register.
    pub ver: Le32,
    /// RTD3 Resume Latency (RTD3R) in microseconds.
    pub rtd3r: Le32,
    /// RTD3 Entry Latency (RTD3E) in microseconds.
    pub rtd3e: Le32,
    /// Optional Asynchronous Events Supported (OAES): bit 8 namespace attribute notices,
    /// bit 31 discovery log page change.
    pub oaes: Le32,
    /// Controller Attributes (CTRATT).
    pub ctratt: Le32,
    /// Read Recovery Levels Supported (RRLS).
    pub rrls: Le16,
    pub rsvd102: [u8; 9],
    /// Controller Type (CNTRLTYPE): 1 I/O, 2 discovery, 3 administrative.
    pub cntrltype: u8,
    /// FRU Globally Unique Identifier (FGUID).
    pub fguid: [u8; 16],
    /// Command Retry Delay Times 1..3 (CRDT1-3) in 100 ms units.
    pub crdt1: Le16,
    pub crdt2: Le16,
    pub crdt3: Le16,
    pub rsvd134: [u8; 106],
    /// Reserved for the NVMe Management Interface (bytes 240..252).
    pub rsvd240: [u8; 13],
    /// NVM Subsystem Report (NVMSR).
    pub nvmsr: u8,
    /// VPD Write Cycle Information (VWCI).
    pub vwci: u8,
    /// Management Endpoint Capabilities (MEC).
    pub mec: u8,

    // ---- Admin command set attributes and optional controller capabilities (256..511) ----
    /// Optional Admin Command Support (OACS).
    pub oacs: Le16,
    /// Abort Command Limit (ACL), 0's based.
    pub acl: u8,
    /// Asynchronous Event Request Limit (AERL), 0's based.
    pub aerl: u8,
    /// Firmware Updates (FRMW).
    pub frmw: u8,
    /// Log Page Attributes (LPA).
    pub lpa: u8,
    /// Error Log Page Entries (ELPE), 0's based.
    pub elpe: u8,
    /// Number of Power States Support (NPSS), 0's based.
    pub npss: u8,
    /// Admin Vendor Specific Command Configuration (AVSCC).
    pub avscc: u8,
    /// Autonomous Power State Transition Attributes (APSTA).
    pub apsta: u8,
    /// Warning Composite Temperature Threshold (WCTEMP) in Kelvin.
    pub wctemp: Le16,
    /// Critical Composite Temperature Threshold (CCTEMP) in Kelvin.
    pub cctemp: Le16,
    /// Maximum Time for Firmware Activation (MTFA) in 100 ms units.
    pub mtfa: Le16,
    /// Host Memory Buffer Preferred Size (HMPRE) in 4 KiB units.
    pub hmpre: Le32,
    /// Host Memory Buffer Minimum Size (HMMIN) in 4 KiB units.
    pub hmmin: Le32,
    /// Total NVM Capacity (TNVMCAP) in bytes, 128-bit.
    pub tnvmcap: [u8; 16],
    /// Unallocated NVM Capacity (UNVMCAP) in bytes, 128-bit.
    pub unvmcap: [u8; 16],
    /// Replay Protected Memory Block Support (RPMBS).
    pub rpmbs: Le32,
    /// Extended Device Self-test Time (EDSTT) in minutes.
    pub edstt: Le16,
    /// Device Self-test Options (DSTO).
    pub dsto: u8,
    /// Firmware Update Granularity (FWUG) in 4 KiB units.
    pub fwug: u8,
    /// Keep Alive Support (KAS): granularity in 100 ms units, 0 = not supported.
    pub kas: Le16,
    /// Host Controlled Thermal Management Attributes (HCTMA).
    pub hctma: Le16,
    /// Minimum Thermal Management Temperature (MNTMT).
    pub mntmt: Le16,
    /// Maximum Thermal Management Temperature (MXTMT).
    pub mxtmt: Le16,
    /// Sanitize Capabilities (SANICAP).
    pub sanicap: Le32,
    /// Host Memory Buffer Minimum Descriptor Entry Size (HMMINDS).
    pub hmminds: Le32,
    /// Host Memory Maximum Descriptors Entries (HMMAXD).
    pub hmmaxd: Le16,
    /// NVM Set Identifier Maximum (NSETIDMAX).
    pub nsetidmax: Le16,
    /// Endurance Group Identifier Maximum (ENDGIDMAX).
    pub endgidmax: Le16,
    /// ANA Transition Time (ANATT) in seconds.
    pub anatt: u8,
    /// Asymmetric Namespace Access Capabilities (ANACAP).
    pub anacap: u8,
    /// ANA Group Identifier Maximum (ANAGRPMAX).
    pub anagrpmax: Le32,
    /// Number of ANA Group Identifiers (NANAGRPID).
    pub nanagrpid: Le32,
    /// Persistent Event Log Size (PELS) in 64 KiB units.
    pub pels: Le32,
    /// Domain Identifier.
    pub domainid: Le16,
    pub rsvd358: [u8; 10],
    /// Max Endurance Group Capacity (MEGCAP), 128-bit.
    pub megcap: [u8; 16],
    pub rsvd384: [u8; 128],

    // ---- NVM command set attributes (512..767) ----
    /// Submission Queue Entry Size (SQES): bits 3:0 required, 7:4 maximum, as powers of two.
    pub sqes: u8,
    /// Completion Queue Entry Size (CQES): bits 3:0 required, 7:4 maximum, as powers of two.
    pub cqes: u8,
    /// Maximum Outstanding Commands (MAXCMD), fabrics.
    pub maxcmd: Le16,
    /// Number of Namespaces (NN): maximum valid NSID.
    pub nn: Le32,
    /// Optional NVM Command Support (ONCS).
    pub oncs: Le16,
    /// Fused Operation Support (FUSES).
    pub fuses: Le16,
    /// Format NVM Attributes (FNA).
    pub fna: u8,
    /// Volatile Write Cache (VWC): bit 0 present, bits 2:1 flush behaviour for NSID FFFFFFFFh.
    pub vwc: u8,
    /// Atomic Write Unit Normal (AWUN), 0's based, in logical blocks.
    pub awun: Le16,
    /// Atomic Write Unit Power Fail (AWUPF), 0's based, in logical blocks.
    pub awupf: Le16,
    /// I/O Command Set Vendor Specific Command Configuration (ICSVSCC).
    pub icsvscc: u8,
    /// Namespace Write Protection Capabilities (NWPC).
    pub nwpc: u8,
    /// Atomic Compare & Write Unit (ACWU), 0's based.
    pub acwu: Le16,
    /// Optional Copy Formats Supported (OCFS).
    pub ocfs: Le16,
    /// SGL Support (SGLS).
    pub sgls: Le32,
    /// Maximum Number of Allowed Namespaces (MNAN).
    pub mnan: Le32,
    /// Maximum Domain Namespace Attachments (MAXDNA), 128-bit.
    pub maxdna: [u8; 16],
    /// Maximum I/O Controller Namespace Attachments (MAXCNA).
    pub maxcna: Le32,
    pub rsvd564: [u8; 204],
    /// NVM Subsystem NVMe Qualified Name (SUBNQN), UTF-8, NUL padded.
    pub subnqn: [u8; 256],
    pub rsvd1024: [u8; 768],

    // ---- NVMe over Fabrics attributes (1792..2047, NVMe-oF 1.1 Figure 28) ----
    /// I/O Queue Command Capsule Supported Size (IOCCSZ) in 16-byte units (4 = SQE only).
    pub ioccsz: Le32,
    /// I/O Queue Response Capsule Supported Size (IORCSZ) in 16-byte units.
    pub iorcsz: Le32,
    /// In Capsule Data Offset (ICDOFF) in 16-byte units.
    pub icdoff: Le16,
    /// Fabrics Controller Attributes (FCATT): bit 0 static controller model.
    pub fcatt: u8,
    /// Maximum SGL Data Block Descriptors (MSDBD); 0 = no limit.
    pub msdbd: u8,
    /// Optional Fabric Commands Support (OFCS): bit 0 Disconnect.
    pub ofcs: Le16,
    pub rsvd1806: [u8; 242],

    // ---- Power state descriptors (2048..3071) ----
    /// Power State 0..31 Descriptors (PSD0-PSD31).
    pub psd: [PowerStateDescriptor; 32],

    // ---- Vendor specific (3072..4095) ----
    pub vs: [u8; 1024],
}
const _: () = assert!(core::mem::size_of::<IdentifyController>() == 4096);

impl Default for IdentifyController {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

/// Controller types of [`IdentifyController::cntrltype`] (Base 2.0 Figure 275).
pub mod cntrltype {
    pub const NOT_REPORTED: u8 = 0;
    pub const IO: u8 = 1;
    pub const DISCOVERY: u8 = 2;
    pub const ADMINISTRATIVE: u8 = 3;
}

/// Bits of [`IdentifyController::oncs`] (Optional NVM Command Support, Base 2.0 Figure 275).
pub mod oncs {
    pub const COMPARE: u16 = 1 << 0;
    pub const WRITE_UNCORRECTABLE: u16 = 1 << 1;
    pub const DATASET_MANAGEMENT: u16 = 1 << 2;
    pub const WRITE_ZEROES: u16 = 1 << 3;
    pub const SAVE_SELECT: u16 = 1 << 4;
    pub const RESERVATIONS: u16 = 1 << 5;
    pub const TIMESTAMP: u16 = 1 << 6;
    pub const VERIFY: u16 = 1 << 7;
    pub const COPY: u16 = 1 << 8;
}

impl IdentifyController {
    /// Serial number, trimmed.
    pub fn serial(&self) -> &str {
        field_str(&self.sn)
    }
    /// Model number, trimmed.
    pub fn model(&self) -> &str {
        field_str(&self.mn)
    }
    /// Firmware revision, trimmed.
    pub fn firmware(&self) -> &str {
        field_str(&self.fr)
    }
    /// Subsystem NQN.
    pub fn subsystem_nqn(&self) -> &str {
        field_str(&self.subnqn)
    }
    pub fn set_serial(&mut self, s: &str) {
        fill_ascii(&mut self.sn, s);
    }
    pub fn set_model(&mut self, s: &str) {
        fill_ascii(&mut self.mn, s);
    }
    pub fn set_firmware(&mut self, s: &str) {
        fill_ascii(&mut self.fr, s);
    }
    pub fn set_subsystem_nqn(&mut self, s: &str) {
        fill_nul_padded(&mut self.subnqn, s);
    }
    /// Maximum data transfer size in bytes for a minimum page size of `min_page_size` bytes;
    /// `None` when MDTS is 0 (no limit).
    pub fn max_transfer_bytes(&self, min_page_size: usize) -> Option<usize> {
        match self.mdts {
            0 => None,
            n => min_page_size.checked_shl(n as u32),
        }
    }
}

/// LBA Format Data Structure, 4 bytes (NVM Command Set 1.0 Figure 98).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct LbaFormat {
    /// Metadata Size (MS) in bytes per logical block.
    pub ms: Le16,
    /// LBA Data Size (LBADS): log2 of the logical block size (9 = 512, 12 = 4096).
    pub lbads: u8,
    /// Relative Performance (RP, bits 1:0): 0 best .. 3 degraded.
    pub rp: u8,
}
const _: () = assert!(core::mem::size_of::<LbaFormat>() == 4);

impl LbaFormat {
    pub fn new(lbads: u8, ms: u16) -> Self {
        LbaFormat { ms: ms.into(), lbads, rp: 0 }
    }
    /// Logical block size in bytes (0 when LBADS is below 9, i.e. the format is unused).
    pub fn block_size(&self) -> u32 {
        if self.lbads < 9 || self.lbads >= 32 {
            0
        } else {
            1 << self.lbads
        }
    }
}

/// Identify Namespace data structure for the NVM Command Set, 4096 bytes (CNS 0x00; NVM Command
/// Set 1.0 Figure 97).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct IdentifyNamespace {
    /// Namespace Size (NSZE) in logical blocks.
    pub nsze: Le64,
    /// Namespace Capacity (NCAP) in logical blocks.
    pub ncap: Le64,
    /// Namespace Utilization (NUSE) in logical blocks.
    pub nuse: Le64,
    /// Namespace Features (NSFEAT).
    pub nsfeat: u8,
    /// Number of LBA Formats (NLBAF), 0's based.
    pub nlbaf: u8,
    /// Formatted LBA Size (FLBAS): bits 3:0 format index low, bit 4 metadata at end of LBA,
    /// bits 6:5 format index high (when NLBAF > 16).
    pub flbas: u8,
    /// Metadata Capabilities (MC).
    pub mc: u8,
    /// End-to-end Data Protection Capabilities (DPC).
    pub dpc: u8,
    /// End-to-end Data Protection Type Settings (DPS).
    pub dps: u8,
    /// Namespace Multi-path I/O and Namespace Sharing Capabilities (NMIC).
    pub nmic: u8,
    /// Reservation Capabilities (RESCAP).
    pub rescap: u8,
    /// Format Progress Indicator (FPI).
    pub fpi: u8,
    /// Deallocate Logical Block Features (DLFEAT).
    pub dlfeat: u8,
    /// Namespace Atomic Write Unit Normal (NAWUN), 0's based.
    pub nawun: Le16,
    /// Namespace Atomic Write Unit Power Fail (NAWUPF), 0's based.
    pub nawupf: Le16,
    /// Namespace Atomic Compare & Write Unit (NACWU), 0's based.
    pub nacwu: Le16,
    /// Namespace Atomic Boundary Size Normal (NABSN), 0's based.
    pub nabsn: Le16,
    /// Namespace Atomic Boundary Offset (NABO).
    pub nabo: Le16,
    /// Namespace Atomic Boundary Size Power Fail (NABSPF), 0's based.
    pub nabspf: Le16,
    /// Namespace Optimal I/O Boundary (NOIOB) in logical blocks.
    pub noiob: Le16,
    /// NVM Capacity (NVMCAP) in bytes, 128-bit.
    pub nvmcap: [u8; 16],
    /// Namespace Preferred Write Granularity (NPWG), 0's based.
    pub npwg: Le16,
    /// Namespace Preferred Write Alignment (NPWA), 0's based.
    pub npwa: Le16,
    /// Namespace Preferred Deallocate Granularity (NPDG), 0's based.
    pub npdg: Le16,
    /// Namespace Preferred Deallocate Alignment (NPDA), 0's based.
    pub npda: Le16,
    /// Namespace Optimal Write Size (NOWS), 0's based.
    pub nows: Le16,
    /// Maximum Single Source Range Length (MSSRL) for Copy.
    pub mssrl: Le16,
    /// Maximum Copy Length (MCL).
    pub mcl: Le32,
    /// Maximum Source Range Count (MSRC), 0's based.
    pub msrc: u8,
    pub rsvd81: u8,
    /// Number of Unique Capability LBA Formats (NULBAF); reserved (0) in NVM Command Set 1.0.
    pub nulbaf: u8,
    pub rsvd83: [u8; 9],
    /// ANA Group Identifier (ANAGRPID).
    pub anagrpid: Le32,
    pub rsvd96: [u8; 3],
    /// Namespace Attributes (NSATTR): bit 0 write protected.
    pub nsattr: u8,
    /// NVM Set Identifier (NVMSETID).
    pub nvmsetid: Le16,
    /// Endurance Group Identifier (ENDGID).
    pub endgid: Le16,
    /// Namespace Globally Unique Identifier (NGUID).
    pub nguid: [u8; 16],
    /// IEEE Extended Unique Identifier (EUI64).
    pub eui64: [u8; 8],
    /// LBA Format 0..63 Support (LBAF0-LBAF63).
    pub lbaf: [LbaFormat; 64],
    /// Vendor specific (bytes 384..4095).
    pub vs: [u8; 3712],
}
const _: () = assert!(core::mem::size_of::<IdentifyNamespace>() == 4096);

impl Default for IdentifyNamespace {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl IdentifyNamespace {
    /// Index of the formatted LBA format (FLBAS bits 3:0, plus bits 6:5 as bits 5:4).
    pub fn lba_format_index(&self) -> usize {
        ((self.flbas & 0xf) | ((self.flbas >> 5) & 0x3) << 4) as usize
    }
    /// The LBA format in use.
    pub fn current_lba_format(&self) -> LbaFormat {
        self.lbaf[self.lba_format_index()]
    }
    /// Logical block size in bytes of the format in use.
    pub fn block_size(&self) -> u32 {
        self.current_lba_format().block_size()
    }
    /// Select LBA format `index` (0..64) in FLBAS, keeping bit 4 (metadata setting).
    pub fn set_lba_format_index(&mut self, index: usize) {
        let i = (index & 0x3f) as u8;
        self.flbas = (self.flbas & 0x10) | (i & 0xf) | ((i >> 4) << 5);
    }
}

/// Namespace Identification Descriptor header, 4 bytes (Base 2.0 Figure 278). The NID of NIDL
/// bytes follows; the list (CNS 0x03) is 4096 bytes and ends at a descriptor with NIDL 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct NsIdDescriptorHeader {
    /// Namespace Identifier Type (NIDT), see [`nidt`].
    pub nidt: u8,
    /// Namespace Identifier Length (NIDL) in bytes.
    pub nidl: u8,
    pub rsvd2: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<NsIdDescriptorHeader>() == 4);

/// Namespace Identifier Types (NIDT, Base 2.0 Figure 279) and their NIDL.
pub mod nidt {
    /// IEEE Extended Unique Identifier, NIDL 8.
    pub const EUI64: u8 = 0x1;
    /// Namespace Globally Unique Identifier, NIDL 16.
    pub const NGUID: u8 = 0x2;
    /// Namespace UUID, NIDL 16.
    pub const UUID: u8 = 0x3;
    /// Command Set Identifier, NIDL 1.
    pub const CSI: u8 = 0x4;

    /// The NIDL that goes with `nidt`, or `None` for unknown types.
    pub const fn len(nidt: u8) -> Option<u8> {
        match nidt {
            EUI64 => Some(8),
            NGUID | UUID => Some(16),
            CSI => Some(1),
            _ => None,
        }
    }
}

impl NsIdDescriptorHeader {
    pub fn new(nidt: u8, nidl: u8) -> Self {
        NsIdDescriptorHeader { nidt, nidl, rsvd2: [0; 2] }
    }
}

/// Append one namespace identification descriptor (header + `nid`) to `buf` at `pos`; returns the
/// position after it, or `None` if it does not fit.
pub fn put_ns_id_descriptor(buf: &mut [u8], pos: usize, nidt: u8, nid: &[u8]) -> Option<usize> {
    let end = pos.checked_add(4 + nid.len())?;
    if end > buf.len() || nid.len() > u8::MAX as usize {
        return None;
    }
    buf[pos..pos + 4].copy_from_slice(NsIdDescriptorHeader::new(nidt, nid.len() as u8).as_bytes());
    buf[pos + 4..end].copy_from_slice(nid);
    Some(end)
}

/// I/O Command Set Independent Identify Namespace data structure, 4096 bytes (CNS 08h; Base 2.0
/// section 5.17.2.8).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct IdentifyNamespaceIndependent {
    /// Common Namespace Features (NSFEAT).
    pub nsfeat: u8,
    /// Namespace Multi-path I/O and Namespace Sharing Capabilities (NMIC).
    pub nmic: u8,
    /// Reservation Capabilities (RESCAP).
    pub rescap: u8,
    /// Format Progress Indicator (FPI).
    pub fpi: u8,
    /// ANA Group Identifier (ANAGRPID).
    pub anagrpid: Le32,
    /// Namespace Attributes (NSATTR): bit 0 write protected.
    pub nsattr: u8,
    pub rsvd9: u8,
    /// NVM Set Identifier (NVMSETID).
    pub nvmsetid: Le16,
    /// Endurance Group Identifier (ENDGID).
    pub endgid: Le16,
    /// Namespace Status (NSTAT): bit 0 the namespace is ready (NRDY).
    pub nstat: u8,
    pub rsvd15: [u8; 4081],
}
const _: () = assert!(core::mem::size_of::<IdentifyNamespaceIndependent>() == 4096);

/// I/O Command Set specific Identify Controller data structure for the NVM Command Set, 4096
/// bytes (CNS 06h, CSI 00h; NVM Command Set 1.0 section 4.1.5.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct IdentifyControllerNvm {
    /// Verify Size Limit (VSL), a power of two in units of CAP.MPSMIN; 0: no limit.
    pub vsl: u8,
    /// Write Zeroes Size Limit (WZSL), as VSL.
    pub wzsl: u8,
    /// Write Uncorrectable Size Limit (WUSL), as VSL.
    pub wusl: u8,
    /// Dataset Management Ranges Limit (DMRL): ranges per command; 0: no limit beyond 256.
    pub dmrl: u8,
    /// Dataset Management Range Size Limit (DMRSL) in logical blocks; 0: no limit.
    pub dmrsl: Le32,
    /// Dataset Management Size Limit (DMSL) in logical blocks; 0: no limit.
    pub dmsl: Le64,
    pub rsvd16: [u8; 4080],
}
const _: () = assert!(core::mem::size_of::<IdentifyControllerNvm>() == 4096);

/// I/O Command Set specific Identify Namespace data structure for the NVM Command Set, 4096 bytes
/// (CNS 05h, CSI 00h; NVM Command Set 1.0 section 4.1.5.3). All zero: no protection information,
/// no storage tag, no extended LBA formats.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct IdentifyNamespaceNvm {
    /// Logical Block Storage Tag Mask (LBSTM).
    pub lbstm: Le64,
    /// Protection Information Capabilities (PIC).
    pub pic: u8,
    pub rsvd9: [u8; 3],
    /// Extended LBA Formats (ELBAF0..ELBAF63).
    pub elbaf: [Le32; 64],
    pub rsvd268: [u8; 3828],
}
const _: () = assert!(core::mem::size_of::<IdentifyNamespaceNvm>() == 4096);

/// Identify I/O Command Set data structure, 4096 bytes (CNS 1Ch; Base 2.0 section 5.17.2.19): 512
/// I/O Command Set Combinations, each a bit vector indexed by CSI.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct IoCommandSetCombinations {
    pub combination: [Le64; 512],
}
const _: () = assert!(core::mem::size_of::<IoCommandSetCombinations>() == 4096);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn identify_controller_offsets() {
        type C = IdentifyController;
        assert_eq!(offset_of!(C, vid), 0);
        assert_eq!(offset_of!(C, ssvid), 2);
        assert_eq!(offset_of!(C, sn), 4);
        assert_eq!(offset_of!(C, mn), 24);
        assert_eq!(offset_of!(C, fr), 64);
        assert_eq!(offset_of!(C, rab), 72);
        assert_eq!(offset_of!(C, ieee), 73);
        assert_eq!(offset_of!(C, cmic), 76);
        assert_eq!(offset_of!(C, mdts), 77);
        assert_eq!(offset_of!(C, cntlid), 78);
        assert_eq!(offset_of!(C, ver), 80);
        assert_eq!(offset_of!(C, rtd3r), 84);
        assert_eq!(offset_of!(C, rtd3e), 88);
        assert_eq!(offset_of!(C, oaes), 92);
        assert_eq!(offset_of!(C, ctratt), 96);
        assert_eq!(offset_of!(C, rrls), 100);
        assert_eq!(offset_of!(C, cntrltype), 111);
        assert_eq!(offset_of!(C, fguid), 112);
        assert_eq!(offset_of!(C, crdt1), 128);
        assert_eq!(offset_of!(C, crdt3), 132);
        assert_eq!(offset_of!(C, nvmsr), 253);
        assert_eq!(offset_of!(C, vwci), 254);
        assert_eq!(offset_of!(C, mec), 255);
        assert_eq!(offset_of!(C, oacs), 256);
        assert_eq!(offset_of!(C, acl), 258);
        assert_eq!(offset_of!(C, aerl), 259);
        assert_eq!(offset_of!(C, frmw), 260);
        assert_eq!(offset_of!(C, lpa), 261);
        assert_eq!(offset_of!(C, elpe), 262);
        assert_eq!(offset_of!(C, npss), 263);
        assert_eq!(offset_of!(C, avscc), 264);
        assert_eq!(offset_of!(C, apsta), 265);
        assert_eq!(offset_of!(C, wctemp), 266);
        assert_eq!(offset_of!(C, cctemp), 268);
        assert_eq!(offset_of!(C, mtfa), 270);
        assert_eq!(offset_of!(C, hmpre), 272);
        assert_eq!(offset_of!(C, hmmin), 276);
        assert_eq!(offset_of!(C, tnvmcap), 280);
        assert_eq!(offset_of!(C, unvmcap), 296);
        assert_eq!(offset_of!(C, rpmbs), 312);
        assert_eq!(offset_of!(C, edstt), 316);
        assert_eq!(offset_of!(C, dsto), 318);
        assert_eq!(offset_of!(C, fwug), 319);
        assert_eq!(offset_of!(C, kas), 320);
        assert_eq!(offset_of!(C, hctma), 322);
        assert_eq!(offset_of!(C, sanicap), 328);
        assert_eq!(offset_of!(C, hmminds), 332);
        assert_eq!(offset_of!(C, hmmaxd), 336);
        assert_eq!(offset_of!(C, nsetidmax), 338);
        assert_eq!(offset_of!(C, endgidmax), 340);
        assert_eq!(offset_of!(C, anatt), 342);
        assert_eq!(offset_of!(C, anacap), 343);
        assert_eq!(offset_of!(C, anagrpmax), 344);
        assert_eq!(offset_of!(C, nanagrpid), 348);
        assert_eq!(offset_of!(C, pels), 352);
        assert_eq!(offset_of!(C, domainid), 356);
        assert_eq!(offset_of!(C, megcap), 368);
        assert_eq!(offset_of!(C, sqes), 512);
        assert_eq!(offset_of!(C, cqes), 513);
        assert_eq!(offset_of!(C, maxcmd), 514);
        assert_eq!(offset_of!(C, nn), 516);
        assert_eq!(offset_of!(C, oncs), 520);
        assert_eq!(offset_of!(C, fuses), 522);
        assert_eq!(offset_of!(C, fna), 524);
        assert_eq!(offset_of!(C, vwc), 525);
        assert_eq!(offset_of!(C, awun), 526);
        assert_eq!(offset_of!(C, awupf), 528);
        assert_eq!(offset_of!(C, icsvscc), 530);
        assert_eq!(offset_of!(C, nwpc), 531);
        assert_eq!(offset_of!(C, acwu), 532);
        assert_eq!(offset_of!(C, ocfs), 534);
        assert_eq!(offset_of!(C, sgls), 536);
        assert_eq!(offset_of!(C, mnan), 540);
        assert_eq!(offset_of!(C, maxdna), 544);
        assert_eq!(offset_of!(C, maxcna), 560);
        assert_eq!(offset_of!(C, subnqn), 768);
        assert_eq!(offset_of!(C, ioccsz), 1792);
        assert_eq!(offset_of!(C, iorcsz), 1796);
        assert_eq!(offset_of!(C, icdoff), 1800);
        assert_eq!(offset_of!(C, fcatt), 1802);
        assert_eq!(offset_of!(C, msdbd), 1803);
        assert_eq!(offset_of!(C, ofcs), 1804);
        assert_eq!(offset_of!(C, psd), 2048);
        assert_eq!(offset_of!(C, vs), 3072);
    }

    #[test]
    fn power_state_descriptor_offsets() {
        type P = PowerStateDescriptor;
        assert_eq!(offset_of!(P, mp), 0);
        assert_eq!(offset_of!(P, flags), 3);
        assert_eq!(offset_of!(P, enlat), 4);
        assert_eq!(offset_of!(P, exlat), 8);
        assert_eq!(offset_of!(P, rrt), 12);
        assert_eq!(offset_of!(P, rwl), 15);
        assert_eq!(offset_of!(P, idlp), 16);
        assert_eq!(offset_of!(P, ips), 18);
        assert_eq!(offset_of!(P, actp), 20);
        assert_eq!(offset_of!(P, apw_aps), 22);
    }

    #[test]
    fn identify_namespace_offsets() {
        type N = IdentifyNamespace;
        assert_eq!(offset_of!(N, nsze), 0);
        assert_eq!(offset_of!(N, ncap), 8);
        assert_eq!(offset_of!(N, nuse), 16);
        assert_eq!(offset_of!(N, nsfeat), 24);
        assert_eq!(offset_of!(N, nlbaf), 25);
        assert_eq!(offset_of!(N, flbas), 26);
        assert_eq!(offset_of!(N, mc), 27);
        assert_eq!(offset_of!(N, dpc), 28);
        assert_eq!(offset_of!(N, dps), 29);
        assert_eq!(offset_of!(N, nmic), 30);
        assert_eq!(offset_of!(N, rescap), 31);
        assert_eq!(offset_of!(N, fpi), 32);
        assert_eq!(offset_of!(N, dlfeat), 33);
        assert_eq!(offset_of!(N, nawun), 34);
        assert_eq!(offset_of!(N, nawupf), 36);
        assert_eq!(offset_of!(N, nacwu), 38);
        assert_eq!(offset_of!(N, nabsn), 40);
        assert_eq!(offset_of!(N, nabo), 42);
        assert_eq!(offset_of!(N, nabspf), 44);
        assert_eq!(offset_of!(N, noiob), 46);
        assert_eq!(offset_of!(N, nvmcap), 48);
        assert_eq!(offset_of!(N, npwg), 64);
        assert_eq!(offset_of!(N, npwa), 66);
        assert_eq!(offset_of!(N, npdg), 68);
        assert_eq!(offset_of!(N, npda), 70);
        assert_eq!(offset_of!(N, nows), 72);
        assert_eq!(offset_of!(N, mssrl), 74);
        assert_eq!(offset_of!(N, mcl), 76);
        assert_eq!(offset_of!(N, msrc), 80);
        assert_eq!(offset_of!(N, nulbaf), 82);
        assert_eq!(offset_of!(N, anagrpid), 92);
        assert_eq!(offset_of!(N, nsattr), 99);
        assert_eq!(offset_of!(N, nvmsetid), 100);
        assert_eq!(offset_of!(N, endgid), 102);
        assert_eq!(offset_of!(N, nguid), 104);
        assert_eq!(offset_of!(N, eui64), 120);
        assert_eq!(offset_of!(N, lbaf), 128);
        assert_eq!(offset_of!(N, vs), 384);
        // LBA format n at 128 + 4n, LBADS at byte 2 of each.
        assert_eq!(offset_of!(LbaFormat, ms), 0);
        assert_eq!(offset_of!(LbaFormat, lbads), 2);
        assert_eq!(offset_of!(LbaFormat, rp), 3);
        let mut ns = IdentifyNamespace::default();
        ns.lbaf[3] = LbaFormat::new(12, 0);
        assert_eq!(ns.as_bytes()[128 + 4 * 3 + 2], 12);
    }

    #[test]
    fn strings_and_lba_format() {
        let mut c = IdentifyController::default();
        c.set_serial("SN123");
        c.set_model("nvmf-rs");
        c.set_subsystem_nqn("nqn.2014-08.org.nvmexpress:uuid:1");
        assert_eq!(&c.as_bytes()[4..10], b"SN123 ");
        assert_eq!(c.as_bytes()[23], b' ');
        assert_eq!(c.serial(), "SN123");
        assert_eq!(c.model(), "nvmf-rs");
        assert_eq!(c.subsystem_nqn(), "nqn.2014-08.org.nvmexpress:uuid:1");
        assert_eq!(c.as_bytes()[768], b'n');
        c.mdts = 5;
        assert_eq!(c.max_transfer_bytes(4096), Some(128 * 1024));

        let mut ns = IdentifyNamespace { nlbaf: 1, ..Default::default() };
        ns.lbaf[0] = LbaFormat::new(9, 0);
        ns.lbaf[1] = LbaFormat::new(12, 0);
        assert_eq!(ns.block_size(), 512);
        ns.set_lba_format_index(1);
        assert_eq!(ns.flbas, 1);
        assert_eq!(ns.block_size(), 4096);
        ns.set_lba_format_index(17);
        assert_eq!(ns.flbas, 0x21);
        assert_eq!(ns.lba_format_index(), 17);
    }

    #[test]
    fn ns_id_descriptors() {
        assert_eq!(identify_cdw10(cns::CONTROLLER, 0), 1);
        assert_eq!(identify_cdw10(cns::NS_CONTROLLER_LIST, 7), 0x0007_0012);
        let mut buf = [0u8; 64];
        let p = put_ns_id_descriptor(&mut buf, 0, nidt::NGUID, &[0xaa; 16]).unwrap();
        let p = put_ns_id_descriptor(&mut buf, p, nidt::CSI, &[csi::NVM]).unwrap();
        assert_eq!(p, 20 + 5);
        assert_eq!(&buf[0..4], &[2, 16, 0, 0]);
        assert_eq!(buf[4], 0xaa);
        assert_eq!(&buf[20..25], &[4, 1, 0, 0, 0]);
        assert_eq!(nidt::len(nidt::EUI64), Some(8));
        assert!(put_ns_id_descriptor(&mut buf, 60, nidt::EUI64, &[0; 8]).is_none());
        let h = NsIdDescriptorHeader::read_from_bytes(&buf[0..4]).unwrap();
        assert_eq!((h.nidt, h.nidl), (nidt::NGUID, 16));
    }
}
