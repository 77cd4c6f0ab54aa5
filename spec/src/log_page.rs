//! Get Log Page (NVMe Base 2.0 section 5.16): command fields (Figures 197-201), log page
//! identifiers (Figure 202) and the log pages a target serves: Error Information (Figure 205),
//! Supported Log Pages (5.16.1.1), SMART / Health Information (Figure 207), Firmware Slot
//! Information (5.16.1.4), Changed Namespace List (Figure 209) and Commands Supported and
//! Effects (5.16.1.6).

use super::{Le16, Le32, Le64, Sqe};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Log Page Identifiers (LID, Base 2.0 Figure 202; Discovery from NVMe-oF 1.1 section 5.3).
pub mod lid {
    pub const SUPPORTED_LOG_PAGES: u8 = 0x00;
    pub const ERROR: u8 = 0x01;
    pub const SMART: u8 = 0x02;
    pub const FW_SLOT: u8 = 0x03;
    pub const CHANGED_NS_LIST: u8 = 0x04;
    pub const COMMANDS_SUPPORTED: u8 = 0x05;
    pub const DEVICE_SELF_TEST: u8 = 0x06;
    pub const TELEMETRY_HOST: u8 = 0x07;
    pub const TELEMETRY_CONTROLLER: u8 = 0x08;
    pub const ENDURANCE_GROUP: u8 = 0x09;
    pub const ANA: u8 = 0x0C;
    pub const PERSISTENT_EVENT: u8 = 0x0D;
    pub const DISCOVERY: u8 = 0x70;
    pub const RESERVATION_NOTIFICATION: u8 = 0x80;
    pub const SANITIZE_STATUS: u8 = 0x81;
}

/// Read a 128-bit little-endian counter (SMART data units, capacities).
pub const fn get_u128(b: &[u8; 16]) -> u128 {
    u128::from_le_bytes(*b)
}

/// Write a 128-bit little-endian counter.
pub fn put_u128(b: &mut [u8; 16], v: u128) {
    *b = v.to_le_bytes();
}

/// Decoded Get Log Page command fields (Base 2.0 Figures 197-201).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetLogPageArgs {
    /// Log Page Identifier (LID, CDW10 bits 7:0).
    pub lid: u8,
    /// Log Specific Parameter (LSP, CDW10 bits 14:8).
    pub lsp: u8,
    /// Retain Asynchronous Event (RAE, CDW10 bit 15).
    pub rae: bool,
    /// Number of Dwords (NUMDU:NUMDL), converted from 0's based: 1..=2^32.
    pub numd: u64,
    /// Log Specific Identifier (LSI, CDW11 bits 31:16).
    pub lsi: u16,
    /// Log Page Offset (LPOU:LPOL, CDW13:CDW12) in bytes (or an index, when OT is set).
    pub offset: u64,
    /// UUID Index (CDW14 bits 6:0).
    pub uuid_index: u8,
    /// Offset Type (OT, CDW14 bit 23): the offset is an entry index.
    pub ot: bool,
    /// Command Set Identifier (CSI, CDW14 bits 31:24).
    pub csi: u8,
}

impl GetLogPageArgs {
    /// Args for reading `len` bytes (a multiple of 4, at least 4) of log `lid` from byte `offset`.
    pub fn new(lid: u8, len: u32, offset: u64) -> Self {
        GetLogPageArgs { lid, numd: (len as u64 / 4).max(1), offset, ..Default::default() }
    }

    /// Decode from CDW10..CDW14.
    pub fn from_cdws(cdw10: u32, cdw11: u32, cdw12: u32, cdw13: u32, cdw14: u32) -> Self {
        let numdl = cdw10 >> 16;
        let numdu = cdw11 & 0xffff;
        GetLogPageArgs {
            lid: cdw10 as u8,
            lsp: ((cdw10 >> 8) & 0x7f) as u8,
            rae: cdw10 & (1 << 15) != 0,
            numd: ((numdu as u64) << 16 | numdl as u64) + 1,
            lsi: (cdw11 >> 16) as u16,
            offset: (cdw13 as u64) << 32 | cdw12 as u64,
            uuid_index: (cdw14 & 0x7f) as u8,
            ot: cdw14 & (1 << 23) != 0,
            csi: (cdw14 >> 24) as u8,
        }
    }

    /// Decode from a Get Log Page SQE.
    pub fn from_sqe(sqe: &Sqe) -> Self {
        Self::from_cdws(sqe.cdw10.get(), sqe.cdw11.get(), sqe.cdw12.get(), sqe.cdw13.get(), sqe.cdw14.get())
    }

    /// Transfer length in bytes (NUMD * 4).
    pub fn byte_len(&self) -> u64 {
        self.numd * 4
    }

    /// Encode to (CDW10, CDW11, CDW12, CDW13, CDW14). `numd` is clamped to 1..=2^32.
    pub fn to_cdws(&self) -> [u32; 5] {
        let n = self.numd.clamp(1, 1 << 32) - 1;
        let cdw10 =
            self.lid as u32 | ((self.lsp as u32) & 0x7f) << 8 | (self.rae as u32) << 15 | ((n & 0xffff) as u32) << 16;
        let cdw11 = ((n >> 16) & 0xffff) as u32 | (self.lsi as u32) << 16;
        let cdw14 = (self.uuid_index as u32 & 0x7f) | (self.ot as u32) << 23 | (self.csi as u32) << 24;
        [cdw10, cdw11, self.offset as u32, (self.offset >> 32) as u32, cdw14]
    }

    /// Write the fields into CDW10..CDW14 of `sqe` (opcode, NSID and data pointer are untouched).
    pub fn apply_to(&self, sqe: &mut Sqe) {
        let [c10, c11, c12, c13, c14] = self.to_cdws();
        sqe.cdw10.set(c10);
        sqe.cdw11.set(c11);
        sqe.cdw12.set(c12);
        sqe.cdw13.set(c13);
        sqe.cdw14.set(c14);
    }
}

/// Error Information Log Entry, 64 bytes (LID 0x01; Base 2.0 Figure 205).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct ErrorLogEntry {
    /// Error Count: unique, incrementing; 0 marks an invalid entry.
    pub error_count: Le64,
    /// Submission Queue ID (SQID) of the failed command.
    pub sqid: Le16,
    /// Command ID (CID) of the failed command.
    pub cid: Le16,
    /// Status Field: bit 0 phase tag, bits 15:1 status as in the CQE.
    pub status: Le16,
    /// Parameter Error Location: bits 7:0 byte, bits 10:8 bit in the command (0xFFFF = n/a).
    pub param_error_location: Le16,
    /// LBA of the first failing block.
    pub lba: Le64,
    /// Namespace ID.
    pub nsid: Le32,
    /// Vendor Specific Information Available (a log page identifier, 0 = none).
    pub vs: u8,
    /// Transport Type (TRTYPE) of the queue, for transport errors.
    pub trtype: u8,
    /// Command Set Indicator (CSI) of the failed command (later 2.0 revisions; else reserved).
    pub csi: u8,
    /// Opcode of the failed command (later 2.0 revisions; else reserved).
    pub opcode: u8,
    /// Command Specific Information.
    pub cs: Le64,
    /// Transport Type Specific Information.
    pub trtype_specific: Le16,
    pub rsvd42: [u8; 21],
    /// Log Page Version (later 2.0 revisions; else reserved).
    pub log_page_version: u8,
}
const _: () = assert!(core::mem::size_of::<ErrorLogEntry>() == 64);

/// Critical Warning bits of [`SmartLog::critical_warning`] (Base 2.0 Figure 207).
pub mod critical_warning {
    pub const SPARE_BELOW_THRESHOLD: u8 = 1 << 0;
    pub const TEMPERATURE: u8 = 1 << 1;
    pub const RELIABILITY_DEGRADED: u8 = 1 << 2;
    pub const READ_ONLY: u8 = 1 << 3;
    pub const VOLATILE_BACKUP_FAILED: u8 = 1 << 4;
    pub const PMR_READ_ONLY: u8 = 1 << 5;
}

/// SMART / Health Information log page, 512 bytes (LID 0x02; Base 2.0 Figure 207).
///
/// The 128-bit counters are raw little-endian byte arrays; use the accessor methods.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct SmartLog {
    /// Critical Warning bits, see [`critical_warning`].
    pub critical_warning: u8,
    /// Composite Temperature in Kelvin.
    pub composite_temperature: Le16,
    /// Available Spare, percent.
    pub avail_spare: u8,
    /// Available Spare Threshold, percent.
    pub avail_spare_threshold: u8,
    /// Percentage Used (may exceed 100).
    pub percent_used: u8,
    /// Endurance Group Critical Warning Summary.
    pub endurance_group_critical_warning: u8,
    pub rsvd7: [u8; 25],
    /// Data Units Read, in thousands of 512-byte units, rounded up.
    pub data_units_read: [u8; 16],
    /// Data Units Written, in thousands of 512-byte units, rounded up.
    pub data_units_written: [u8; 16],
    /// Host Read Commands completed.
    pub host_read_commands: [u8; 16],
    /// Host Write Commands completed.
    pub host_write_commands: [u8; 16],
    /// Controller Busy Time in minutes.
    pub controller_busy_time: [u8; 16],
    /// Power Cycles.
    pub power_cycles: [u8; 16],
    /// Power On Hours.
    pub power_on_hours: [u8; 16],
    /// Unsafe Shutdowns.
    pub unsafe_shutdowns: [u8; 16],
    /// Media and Data Integrity Errors.
    pub media_errors: [u8; 16],
    /// Number of Error Information Log Entries over the controller's life.
    pub num_err_log_entries: [u8; 16],
    /// Warning Composite Temperature Time in minutes.
    pub warning_temp_time: Le32,
    /// Critical Composite Temperature Time in minutes.
    pub critical_temp_time: Le32,
    /// Temperature Sensors 1..8 in Kelvin (0 = not implemented).
    pub temp_sensor: [Le16; 8],
    /// Thermal Management Temperature 1 Transition Count.
    pub thm_temp1_trans_count: Le32,
    /// Thermal Management Temperature 2 Transition Count.
    pub thm_temp2_trans_count: Le32,
    /// Total Time For Thermal Management Temperature 1 in seconds.
    pub thm_temp1_total_time: Le32,
    /// Total Time For Thermal Management Temperature 2 in seconds.
    pub thm_temp2_total_time: Le32,
    pub rsvd232: [u8; 280],
}
const _: () = assert!(core::mem::size_of::<SmartLog>() == 512);

impl Default for SmartLog {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

macro_rules! u128_counters {
    ($($field:ident, $set:ident;)*) => {
        impl SmartLog {
            $(
                #[doc = concat!("`", stringify!($field), "` as a number.")]
                pub fn $field(&self) -> u128 {
                    get_u128(&self.$field)
                }
                #[doc = concat!("Set `", stringify!($field), "`.")]
                pub fn $set(&mut self, v: u128) {
                    put_u128(&mut self.$field, v);
                }
            )*
        }
    };
}
u128_counters! {
    data_units_read, set_data_units_read;
    data_units_written, set_data_units_written;
    host_read_commands, set_host_read_commands;
    host_write_commands, set_host_write_commands;
    controller_busy_time, set_controller_busy_time;
    power_cycles, set_power_cycles;
    power_on_hours, set_power_on_hours;
    unsafe_shutdowns, set_unsafe_shutdowns;
    media_errors, set_media_errors;
    num_err_log_entries, set_num_err_log_entries;
}

impl SmartLog {
    /// Convert a byte count to SMART data units (thousands of 512-byte units, rounded up).
    pub const fn bytes_to_data_units(bytes: u128) -> u128 {
        bytes.div_ceil(512 * 1000)
    }
}

/// Changed Namespace List log page, 4096 bytes (LID 0x04; Base 2.0 Figure 209): up to 1024
/// NSIDs in increasing order, zero filled. If more than 1024 changed, entry 0 is FFFFFFFFh and the
/// rest are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct ChangedNsList {
    pub nsid: [Le32; 1024],
}
const _: () = assert!(core::mem::size_of::<ChangedNsList>() == 4096);

impl Default for ChangedNsList {
    fn default() -> Self {
        Self::new_zeroed()
    }
}

impl ChangedNsList {
    pub const MAX_ENTRIES: usize = 1024;
    /// Marker in entry 0 when more than 1024 namespaces changed.
    pub const OVERFLOW: u32 = 0xFFFF_FFFF;

    /// Build the list from NSIDs (sorted and deduplicated here; 0 is skipped).
    pub fn from_nsids(nsids: impl IntoIterator<Item = u32>) -> Self {
        let mut v: Vec<u32> = nsids.into_iter().filter(|&n| n != 0).collect();
        v.sort_unstable();
        v.dedup();
        let mut list = Self::default();
        if v.len() > Self::MAX_ENTRIES {
            list.nsid[0].set(Self::OVERFLOW);
        } else {
            for (slot, n) in list.nsid.iter_mut().zip(v) {
                slot.set(n);
            }
        }
        list
    }

    /// The non-zero entries.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.nsid.iter().map(|n| n.get()).take_while(|&n| n != 0)
    }

    /// True when the list reports more than 1024 changes.
    pub fn overflowed(&self) -> bool {
        self.nsid[0].get() == Self::OVERFLOW
    }
}

/// Supported Log Pages log page, 1024 bytes (LID 00h; Base 2.0 section 5.16.1.1):
/// one LID Supported and Effects dword per Log Identifier.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct SupportedLogPages {
    pub lid: [Le32; 256],
}
const _: () = assert!(core::mem::size_of::<SupportedLogPages>() == 1024);

/// Bits of a LID Supported and Effects dword (Base 2.0 section 5.16.1.1).
pub mod lid_effects {
    /// LID Supported (LSUPP).
    pub const LSUPP: u32 = 1 << 0;
    /// Index Offset Supported (IOS).
    pub const IOS: u32 = 1 << 1;
}

impl SupportedLogPages {
    /// The page with LSUPP set for each of `lids`.
    pub fn with(lids: &[u8]) -> Self {
        let mut p = SupportedLogPages::new_zeroed();
        for &l in lids {
            p.lid[l as usize].set(lid_effects::LSUPP);
        }
        p
    }
}

/// Firmware Slot Information log page, 512 bytes (LID 03h; Base 2.0 section 5.16.1.4).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct FirmwareSlotLog {
    /// Active Firmware Info (AFI): bits 2:0 the active slot, bits 6:4 the slot activated at the
    /// next reset (0: none pending).
    pub afi: u8,
    pub rsvd1: [u8; 7],
    /// Firmware Revision for Slot 1..7 (FRS1..FRS7), ASCII, space padded; zero when empty.
    pub frs: [[u8; 8]; 7],
    pub rsvd64: [u8; 448],
}
const _: () = assert!(core::mem::size_of::<FirmwareSlotLog>() == 512);

/// Commands Supported and Effects log page, 4096 bytes (LID 05h; Base 2.0 section
/// 5.16.1.6): one Commands Supported and Effects dword per opcode, admin then I/O.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct CommandsSupportedEffects {
    /// Admin Command Supported (ACS0..ACS255).
    pub acs: [Le32; 256],
    /// I/O Command Supported (IOCS0..IOCS255) for the command set the CSI field selects.
    pub iocs: [Le32; 256],
    pub rsvd2048: [u8; 2048],
}
const _: () = assert!(core::mem::size_of::<CommandsSupportedEffects>() == 4096);

/// Bits of a Commands Supported and Effects dword (Base 2.0 section 5.16.1.6).
pub mod cmd_effects {
    /// Command Supported (CSUPP).
    pub const CSUPP: u32 = 1 << 0;
    /// Logical Block Content Change (LBCC).
    pub const LBCC: u32 = 1 << 1;
    /// Namespace Capability Change (NCC).
    pub const NCC: u32 = 1 << 2;
    /// Namespace Inventory Change (NIC).
    pub const NIC: u32 = 1 << 3;
    /// Controller Capability Change (CCC).
    pub const CCC: u32 = 1 << 4;
}

/// Asymmetric Namespace Access log page header, 16 bytes (LID 0Ch; Base 2.0 section 5.16.1.9).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct AnaLogHeader {
    /// Change Count (CHGCNT): increments with each change of the log's contents.
    pub chgcnt: Le64,
    /// Number of ANA Group Descriptors (NGRPS).
    pub ngrps: Le16,
    pub rsvd10: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<AnaLogHeader>() == 16);

/// ANA Group Descriptor, 32 bytes, followed by NNSID NSIDs (Base 2.0 section 5.16.1.9).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct AnaGroupDescriptor {
    /// ANA Group ID (ANAGRPID).
    pub anagrpid: Le32,
    /// Number of NSID Values (NNSID); 0 with Return Groups Only.
    pub nnsid: Le32,
    /// Change Count of this group.
    pub chgcnt: Le64,
    /// ANA State (bits 3:0), see [`ana_state`].
    pub state: u8,
    pub rsvd17: [u8; 15],
}
const _: () = assert!(core::mem::size_of::<AnaGroupDescriptor>() == 32);

/// ANA states (Base 2.0 section 8.1.3).
pub mod ana_state {
    pub const OPTIMIZED: u8 = 0x01;
    pub const NON_OPTIMIZED: u8 = 0x02;
    pub const INACCESSIBLE: u8 = 0x03;
    pub const PERSISTENT_LOSS: u8 = 0x04;
    pub const CHANGE: u8 = 0x0f;
}

/// Get Log Page LSP bit 0 for the ANA log page: Return Groups Only (RGO).
pub const ANA_LSP_RGO: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn error_log_entry_offsets() {
        type E = ErrorLogEntry;
        assert_eq!(offset_of!(E, error_count), 0);
        assert_eq!(offset_of!(E, sqid), 8);
        assert_eq!(offset_of!(E, cid), 10);
        assert_eq!(offset_of!(E, status), 12);
        assert_eq!(offset_of!(E, param_error_location), 14);
        assert_eq!(offset_of!(E, lba), 16);
        assert_eq!(offset_of!(E, nsid), 24);
        assert_eq!(offset_of!(E, vs), 28);
        assert_eq!(offset_of!(E, trtype), 29);
        assert_eq!(offset_of!(E, cs), 32);
        assert_eq!(offset_of!(E, trtype_specific), 40);
        assert_eq!(offset_of!(E, log_page_version), 63);
    }

    #[test]
    fn smart_log_offsets() {
        type S = SmartLog;
        assert_eq!(offset_of!(S, critical_warning), 0);
        assert_eq!(offset_of!(S, composite_temperature), 1);
        assert_eq!(offset_of!(S, avail_spare), 3);
        assert_eq!(offset_of!(S, avail_spare_threshold), 4);
        assert_eq!(offset_of!(S, percent_used), 5);
        assert_eq!(offset_of!(S, endurance_group_critical_warning), 6);
        assert_eq!(offset_of!(S, data_units_read), 32);
        assert_eq!(offset_of!(S, data_units_written), 48);
        assert_eq!(offset_of!(S, host_read_commands), 64);
        assert_eq!(offset_of!(S, host_write_commands), 80);
        assert_eq!(offset_of!(S, controller_busy_time), 96);
        assert_eq!(offset_of!(S, power_cycles), 112);
        assert_eq!(offset_of!(S, power_on_hours), 128);
        assert_eq!(offset_of!(S, unsafe_shutdowns), 144);
        assert_eq!(offset_of!(S, media_errors), 160);
        assert_eq!(offset_of!(S, num_err_log_entries), 176);
        assert_eq!(offset_of!(S, warning_temp_time), 192);
        assert_eq!(offset_of!(S, critical_temp_time), 196);
        assert_eq!(offset_of!(S, temp_sensor), 200);
        assert_eq!(offset_of!(S, thm_temp1_trans_count), 216);
        assert_eq!(offset_of!(S, thm_temp2_trans_count), 220);
        assert_eq!(offset_of!(S, thm_temp1_total_time), 224);
        assert_eq!(offset_of!(S, thm_temp2_total_time), 228);
    }

    #[test]
    fn smart_counters() {
        let mut s = SmartLog::default();
        s.set_data_units_written(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        assert_eq!(s.as_bytes()[48], 0x10);
        assert_eq!(s.as_bytes()[63], 0x01);
        assert_eq!(s.data_units_written(), 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        s.set_power_cycles(3);
        assert_eq!(s.as_bytes()[112], 3);
        assert_eq!(SmartLog::bytes_to_data_units(0), 0);
        assert_eq!(SmartLog::bytes_to_data_units(1), 1);
        assert_eq!(SmartLog::bytes_to_data_units(512_000), 1);
        assert_eq!(SmartLog::bytes_to_data_units(512_001), 2);
    }

    #[test]
    fn get_log_page_fields() {
        // SMART log, 512 bytes: NUMDL = 127, RAE set, LSP 1, offset 0x1_0000_0200.
        let cdw10 = 0x02 | 1 << 8 | 1 << 15 | 127 << 16;
        let a = GetLogPageArgs::from_cdws(cdw10, 0x0005_0000, 0x200, 1, 0x0100_0003 | 1 << 23);
        assert_eq!(a.lid, lid::SMART);
        assert_eq!(a.lsp, 1);
        assert!(a.rae);
        assert_eq!(a.numd, 128);
        assert_eq!(a.byte_len(), 512);
        assert_eq!(a.lsi, 5);
        assert_eq!(a.offset, 0x1_0000_0200);
        assert_eq!(a.uuid_index, 3);
        assert!(a.ot);
        assert_eq!(a.csi, 1);
        assert_eq!(
            GetLogPageArgs::from_cdws(a.to_cdws()[0], a.to_cdws()[1], a.to_cdws()[2], a.to_cdws()[3], a.to_cdws()[4]),
            a
        );

        // NUMDU carries the high 16 bits: 4 MiB = 0x10_0000 dwords, 0's based 0xF_FFFF.
        let a = GetLogPageArgs::from_cdws(0xffff_0070, 0x000f, 0, 0, 0);
        assert_eq!(a.numd, 0x10_0000);
        assert_eq!(a.byte_len(), 4 << 20);
        assert_eq!(a.lid, lid::DISCOVERY);

        let mut sqe = Sqe::default();
        GetLogPageArgs::new(lid::CHANGED_NS_LIST, 4096, 0).apply_to(&mut sqe);
        assert_eq!(sqe.cdw10.get(), 0x03ff_0004);
        assert_eq!(sqe.cdw11.get(), 0);
        assert_eq!(GetLogPageArgs::from_sqe(&sqe).byte_len(), 4096);
    }

    #[test]
    fn changed_ns_list() {
        let l = ChangedNsList::from_nsids([5, 1, 5, 0, 3]);
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![1, 3, 5]);
        assert_eq!(&l.as_bytes()[0..8], &[1, 0, 0, 0, 3, 0, 0, 0]);
        assert!(!l.overflowed());
        let l = ChangedNsList::from_nsids(1..=1025);
        assert!(l.overflowed());
        assert_eq!(l.nsid[1].get(), 0);
    }
}
