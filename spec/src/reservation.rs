//! Reservations (NVMe Base 2.0 section 8.19; the commands in chapter 7, I/O Commands): the command fields
//! of Reservation Register, Acquire, Release and Report, their data structures, the reservation
//! types, Identify Namespace RESCAP bits and the Reservation Notification log page (LID 80h).

use super::{Le16, Le32, Le64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Reservation Type (RTYPE; Base 2.0, Reservation Acquire command).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReservationType {
    WriteExclusive = 1,
    ExclusiveAccess = 2,
    WriteExclusiveRegistrantsOnly = 3,
    ExclusiveAccessRegistrantsOnly = 4,
    WriteExclusiveAllRegistrants = 5,
    ExclusiveAccessAllRegistrants = 6,
}

impl ReservationType {
    pub fn from_u8(v: u8) -> Option<Self> {
        use ReservationType::*;
        Some(match v {
            1 => WriteExclusive,
            2 => ExclusiveAccess,
            3 => WriteExclusiveRegistrantsOnly,
            4 => ExclusiveAccessRegistrantsOnly,
            5 => WriteExclusiveAllRegistrants,
            6 => ExclusiveAccessAllRegistrants,
            _ => return None,
        })
    }
    /// Every registrant holds the reservation (types 5 and 6).
    pub fn all_registrants(self) -> bool {
        matches!(self, Self::WriteExclusiveAllRegistrants | Self::ExclusiveAccessAllRegistrants)
    }
    /// Registrants that do not hold it still have access (types 3 to 6).
    pub fn registrants_have_access(self) -> bool {
        !matches!(self, Self::WriteExclusive | Self::ExclusiveAccess)
    }
    /// Hosts without access may not read either (the Exclusive Access types).
    pub fn exclusive_access(self) -> bool {
        matches!(
            self,
            Self::ExclusiveAccess | Self::ExclusiveAccessRegistrantsOnly | Self::ExclusiveAccessAllRegistrants
        )
    }
}

/// Reservation Register Action (RREGA, CDW10 bits 2:0; Base 2.0, Reservation Register command).
pub mod rrega {
    pub const REGISTER: u8 = 0b000;
    pub const UNREGISTER: u8 = 0b001;
    pub const REPLACE: u8 = 0b010;
}

/// Change Persist Through Power Loss State (CPTPL, Register CDW10 bits 31:30).
pub mod cptpl {
    pub const NO_CHANGE: u8 = 0b00;
    pub const CLEAR: u8 = 0b10;
    pub const SET: u8 = 0b11;
}

/// Reservation Acquire Action (RACQA, CDW10 bits 2:0; Base 2.0, Reservation Acquire command).
pub mod racqa {
    pub const ACQUIRE: u8 = 0b000;
    pub const PREEMPT: u8 = 0b001;
    pub const PREEMPT_AND_ABORT: u8 = 0b010;
}

/// Reservation Release Action (RRELA, CDW10 bits 2:0; Base 2.0, Reservation Release command).
pub mod rrela {
    pub const RELEASE: u8 = 0b000;
    pub const CLEAR: u8 = 0b001;
}

/// The action fields every reservation command has in CDW10: the action (bits 2:0), Ignore
/// Existing Key (IEKEY, bit 3), RTYPE (bits 15:8, Acquire and Release) and CPTPL (bits 31:30,
/// Register).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservationCdw10 {
    pub action: u8,
    pub iekey: bool,
    pub rtype: u8,
    pub cptpl: u8,
}

impl ReservationCdw10 {
    pub const fn from_dw(dw: u32) -> Self {
        ReservationCdw10 {
            action: (dw & 7) as u8,
            iekey: dw & 1 << 3 != 0,
            rtype: (dw >> 8) as u8,
            cptpl: (dw >> 30) as u8,
        }
    }
    pub const fn to_dw(self) -> u32 {
        (self.action as u32 & 7) | (self.iekey as u32) << 3 | (self.rtype as u32) << 8 | (self.cptpl as u32 & 3) << 30
    }
}

/// Reservation Register data structure, 16 bytes (Base 2.0, Reservation Register command).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct ReservationRegisterData {
    /// Current Reservation Key (CRKEY).
    pub crkey: Le64,
    /// New Reservation Key (NRKEY).
    pub nrkey: Le64,
}

/// Reservation Acquire data structure, 16 bytes (Base 2.0, Reservation Acquire command).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct ReservationAcquireData {
    /// Current Reservation Key (CRKEY).
    pub crkey: Le64,
    /// Preempt Reservation Key (PRKEY).
    pub prkey: Le64,
}

/// Reservation Status data structure header, extended form, 64 bytes (Report with EDS set;
/// Base 2.0, Reservation Report command).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct ReservationStatusHeader {
    /// Generation (GEN): reservation generation counter.
    pub gen: Le32,
    /// Reservation Type (RTYPE), 0: no reservation.
    pub rtype: u8,
    /// Number of Registered Controllers (REGCTL).
    pub regctl: Le16,
    pub rsvd7: [u8; 2],
    /// Persist Through Power Loss State (PTPLS).
    pub ptpls: u8,
    pub rsvd10: [u8; 14],
    pub rsvd24: [u8; 32],
    pub rsvd56: [u8; 8],
}
const _: () = assert!(core::mem::size_of::<ReservationStatusHeader>() == 64);

/// Registered Controller extended data structure, 64 bytes (Base 2.0, Reservation Report command).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct RegisteredControllerExtended {
    /// Controller ID (CNTLID); FFFFh: the host has no controller connected now.
    pub cntlid: Le16,
    /// Reservation Status (RCSTS): bit 0 the host holds the reservation.
    pub rcsts: u8,
    pub rsvd3: [u8; 5],
    /// Reservation Key (RKEY).
    pub rkey: Le64,
    /// 128-bit Host Identifier (HOSTID).
    pub hostid: [u8; 16],
    pub rsvd32: [u8; 32],
}
const _: () = assert!(core::mem::size_of::<RegisteredControllerExtended>() == 64);

/// Reservation Report CDW11 bit 0: Extended Data Structure (EDS).
pub const REPORT_EDS: u32 = 1;

/// Reservation Notification log page, 64 bytes (LID 80h; Base 2.0 section 5.16.1.21).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct ReservationNotificationLog {
    /// Log Page Count: increments with each new notification; 0: the log is empty.
    pub log_page_count: Le64,
    /// Reservation Notification Log Page Type, see [`notification_type`].
    pub log_type: u8,
    /// Number of Available Log Pages beyond this one (saturates at FFh).
    pub num_available: u8,
    pub rsvd10: [u8; 2],
    /// Namespace ID.
    pub nsid: Le32,
    pub rsvd16: [u8; 32],
    pub rsvd48: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<ReservationNotificationLog>() == 64);

/// Reservation Notification Log Page Type values (Base 2.0 section 5.16.1.21).
pub mod notification_type {
    pub const EMPTY: u8 = 0;
    pub const REGISTRATION_PREEMPTED: u8 = 1;
    pub const RESERVATION_RELEASED: u8 = 2;
    pub const RESERVATION_PREEMPTED: u8 = 3;
}

/// Reservation Capabilities (RESCAP) bits of Identify Namespace (NVM Command Set 1.0 Figure 97).
pub mod rescap {
    /// Persist Through Power Loss.
    pub const PTPL: u8 = 1 << 0;
    /// Bits 6:1: reservation types 1 to 6 supported.
    pub const ALL_TYPES: u8 = 0b0111_1110;
    /// Ignore Existing Key behaves as NVMe 1.3 and later define it.
    pub const IEKEY_13: u8 = 1 << 7;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdw10_round_trips() {
        let c = ReservationCdw10 { action: 2, iekey: true, rtype: 6, cptpl: 3 };
        assert_eq!(c.to_dw(), 2 | 1 << 3 | 6 << 8 | 3 << 30);
        assert_eq!(ReservationCdw10::from_dw(c.to_dw()), c);
    }

    #[test]
    fn types() {
        assert_eq!(ReservationType::from_u8(0), None);
        assert_eq!(ReservationType::from_u8(7), None);
        let t = ReservationType::from_u8(4).unwrap();
        assert!(t.registrants_have_access() && t.exclusive_access() && !t.all_registrants());
    }
}
