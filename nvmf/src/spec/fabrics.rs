//! Fabrics command fields (NVMe-oF 1.1 section 3.3) as views over an `Sqe`, and the Connect
//! command's data (section 3.3.1, Figure 20).

use super::{Le16, Sqe};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// NQN of the well-known discovery subsystem.
pub const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";
/// Maximum NQN length in bytes (NVMe Base 2.0 section 4.5: 223 bytes).
pub const NQN_MAX_LEN: usize = 223;

/// Connect command fields (NVMe-oF 1.1 Figure 19).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectCmd {
    /// Record format (RECFMT), must be 0.
    pub recfmt: u16,
    /// Queue ID: 0 = admin queue.
    pub qid: u16,
    /// Submission queue size, 0's based (SQSIZE).
    pub sqsize: u16,
    /// Connect attributes (CATTR).
    pub cattr: u8,
    /// Keep alive timeout in milliseconds (KATO), admin queue only.
    pub kato: u32,
}

impl ConnectCmd {
    pub fn parse(sqe: &Sqe) -> Self {
        ConnectCmd {
            recfmt: sqe.cdw10.get() as u16,
            qid: (sqe.cdw10.get() >> 16) as u16,
            sqsize: sqe.cdw11.get() as u16,
            cattr: (sqe.cdw11.get() >> 16) as u8,
            kato: sqe.cdw12.get(),
        }
    }
    pub fn write(&self, sqe: &mut Sqe) {
        sqe.cdw10.set(self.recfmt as u32 | (self.qid as u32) << 16);
        sqe.cdw11.set(self.sqsize as u32 | (self.cattr as u32) << 16);
        sqe.cdw12.set(self.kato);
    }
}

/// Connect command data, 1024 bytes (NVMe-oF 1.1 Figure 20).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ConnectData {
    /// Host identifier (HOSTID).
    pub hostid: [u8; 16],
    /// Controller ID (CNTLID): 0xFFFF asks for a dynamic controller on the admin queue.
    pub cntlid: Le16,
    pub reserved1: [u8; 238],
    pub subnqn: [u8; 256],
    pub hostnqn: [u8; 256],
    pub reserved2: [u8; 256],
}
const _: () = assert!(core::mem::size_of::<ConnectData>() == 1024);

/// Controller ID a host asks for when any dynamic controller will do.
pub const CNTLID_DYNAMIC: u16 = 0xffff;

/// Byte offsets used in the Connect Invalid Parameters response (IPO).
pub mod connect_ipo {
    /// Offset of CNTLID in the Connect data.
    pub const CNTLID: u16 = 16;
    pub const SUBNQN: u16 = 256;
    pub const HOSTNQN: u16 = 512;
    /// Offsets in the SQE.
    pub const QID: u16 = 42;
    pub const SQSIZE: u16 = 44;
}

/// Connect response DW0 for Invalid Parameters (NVMe-oF 1.1 Figure 21): IPO bits 15:0,
/// IATTR bit 16 (1 = the offset is in the command's data).
pub fn connect_invalid_param_dw0(in_data: bool, offset: u16) -> u32 {
    offset as u32 | if in_data { 1 << 16 } else { 0 }
}

/// Property Get/Set fields (NVMe-oF 1.1 Figures 24 and 26).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PropertyCmd {
    /// True for an 8-byte property (ATTRIB.SIZE = 1).
    pub eight_bytes: bool,
    /// Register offset (OFST).
    pub offset: u32,
    /// Value (Property Set only).
    pub value: u64,
}

impl PropertyCmd {
    pub fn parse(sqe: &Sqe) -> Self {
        PropertyCmd {
            eight_bytes: sqe.cdw10.get() & 0x7 == 1,
            offset: sqe.cdw11.get(),
            value: sqe.cdw12.get() as u64 | (sqe.cdw13.get() as u64) << 32,
        }
    }
    pub fn write(&self, sqe: &mut Sqe) {
        sqe.cdw10.set(self.eight_bytes as u32);
        sqe.cdw11.set(self.offset);
        sqe.cdw12.set(self.value as u32);
        sqe.cdw13.set((self.value >> 32) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;
    use zerocopy::IntoBytes;

    #[test]
    fn connect_layout() {
        assert_eq!(offset_of!(ConnectData, cntlid), 16);
        assert_eq!(offset_of!(ConnectData, subnqn), 256);
        assert_eq!(offset_of!(ConnectData, hostnqn), 512);
        let mut sqe = Sqe::default();
        ConnectCmd { recfmt: 0, qid: 3, sqsize: 127, cattr: 0, kato: 120_000 }.write(&mut sqe);
        let b = sqe.as_bytes();
        assert_eq!(&b[42..44], &3u16.to_le_bytes());
        assert_eq!(&b[44..46], &127u16.to_le_bytes());
        assert_eq!(&b[48..52], &120_000u32.to_le_bytes());
        assert_eq!(ConnectCmd::parse(&sqe).qid, 3);
    }

    #[test]
    fn property_layout() {
        let mut sqe = Sqe::default();
        PropertyCmd { eight_bytes: true, offset: 0x14, value: 0x1122_3344_5566_7788 }.write(&mut sqe);
        let b = sqe.as_bytes();
        assert_eq!(b[40], 1);
        assert_eq!(&b[44..48], &0x14u32.to_le_bytes());
        assert_eq!(&b[48..56], &0x1122_3344_5566_7788u64.to_le_bytes());
    }
}
