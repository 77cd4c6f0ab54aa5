//! Command opcodes: admin (Base 2.0 Figure 138), NVM (NVM Command Set 1.0 Figure 17), fabrics
//! (NVMe-oF 1.1 Figure 13).

/// Admin command opcodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AdminOpcode {
    DeleteIoSq = 0x00,
    CreateIoSq = 0x01,
    GetLogPage = 0x02,
    DeleteIoCq = 0x04,
    CreateIoCq = 0x05,
    Identify = 0x06,
    Abort = 0x08,
    SetFeatures = 0x09,
    GetFeatures = 0x0a,
    AsyncEventRequest = 0x0c,
    KeepAlive = 0x18,
    /// Fabrics commands share opcode 0x7F on the admin and I/O queues.
    Fabrics = 0x7f,
}

impl AdminOpcode {
    pub fn from_u8(v: u8) -> Option<Self> {
        use AdminOpcode::*;
        Some(match v {
            0x00 => DeleteIoSq,
            0x01 => CreateIoSq,
            0x02 => GetLogPage,
            0x04 => DeleteIoCq,
            0x05 => CreateIoCq,
            0x06 => Identify,
            0x08 => Abort,
            0x09 => SetFeatures,
            0x0a => GetFeatures,
            0x0c => AsyncEventRequest,
            0x18 => KeepAlive,
            0x7f => Fabrics,
            _ => return None,
        })
    }
}

/// NVM command set I/O opcodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NvmOpcode {
    Flush = 0x00,
    Write = 0x01,
    Read = 0x02,
    Compare = 0x05,
    WriteZeroes = 0x08,
    DatasetManagement = 0x09,
}

impl NvmOpcode {
    pub fn from_u8(v: u8) -> Option<Self> {
        use NvmOpcode::*;
        Some(match v {
            0x00 => Flush,
            0x01 => Write,
            0x02 => Read,
            0x05 => Compare,
            0x08 => WriteZeroes,
            0x09 => DatasetManagement,
            _ => return None,
        })
    }
}

/// I/O opcodes beyond [`NvmOpcode`] (the ones the fabrics target models): NVM Command Set 1.0
/// Figure 17 and the NVMe Base 2.x I/O commands common to all command sets (Base 2.1 Figure 90).
pub mod io {
    /// Write Uncorrectable: NLB blocks at SLBA (CDW10-12), no data transfer.
    pub const WRITE_UNCORRECTABLE: u8 = 0x04;
    /// Verify: NLB blocks at SLBA (CDW10-12), no data transfer.
    pub const VERIFY: u8 = 0x0c;
    /// Reservation Register: a 24-byte data structure of reservation keys.
    pub const RESERVATION_REGISTER: u8 = 0x0d;
    /// Reservation Report: NUMD + 1 dwords (CDW10) of registrants.
    pub const RESERVATION_REPORT: u8 = 0x0e;
    /// Reservation Acquire: a 16-byte data structure of reservation keys.
    pub const RESERVATION_ACQUIRE: u8 = 0x11;
    /// I/O Management Receive (flexible data placement).
    pub const IO_MANAGEMENT_RECEIVE: u8 = 0x12;
    /// Reservation Release: an 8-byte reservation key.
    pub const RESERVATION_RELEASE: u8 = 0x15;
    /// Cancel: names a command by SQ ID and CID (CDW10-11).
    pub const CANCEL: u8 = 0x18;
    /// Copy: source ranges (LBAs, and in formats 2h/3h NSIDs) in its data.
    pub const COPY: u8 = 0x19;
    /// I/O Management Send (flexible data placement).
    pub const IO_MANAGEMENT_SEND: u8 = 0x1d;
}

/// Fabrics command types (FCTYPE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FabricsType {
    PropertySet = 0x00,
    Connect = 0x01,
    PropertyGet = 0x04,
    AuthenticationSend = 0x05,
    AuthenticationReceive = 0x06,
    Disconnect = 0x08,
}

impl FabricsType {
    pub fn from_u8(v: u8) -> Option<Self> {
        use FabricsType::*;
        Some(match v {
            0x00 => PropertySet,
            0x01 => Connect,
            0x04 => PropertyGet,
            0x05 => AuthenticationSend,
            0x06 => AuthenticationReceive,
            0x08 => Disconnect,
            _ => return None,
        })
    }
}
