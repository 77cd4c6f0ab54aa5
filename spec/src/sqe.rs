//! Submission Queue Entry (NVMe Base 2.0, section 4.2, Figure 88) and SGL descriptors
//! (section 4.3.2, Figure 114).

use super::{Le16, Le32, Le64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Submission Queue Entry: 64 bytes, common to admin, NVM and fabrics commands.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct Sqe {
    /// CDW0 byte 0: opcode (OPC).
    pub opcode: u8,
    /// CDW0 byte 1: FUSE (bits 1:0) and PSDT (bits 7:6). For fabrics commands byte 4 is FCTYPE.
    pub flags: u8,
    /// CDW0 bytes 3:2: command identifier (CID).
    pub cid: Le16,
    /// Namespace identifier (NSID). For fabrics commands byte 0 of this field is FCTYPE.
    pub nsid: Le32,
    pub cdw2: Le32,
    pub cdw3: Le32,
    /// Metadata pointer (MPTR).
    pub mptr: Le64,
    /// Data pointer (DPTR): PRP1/PRP2 or SGL1.
    pub dptr: [u8; 16],
    pub cdw10: Le32,
    pub cdw11: Le32,
    pub cdw12: Le32,
    pub cdw13: Le32,
    pub cdw14: Le32,
    pub cdw15: Le32,
}
const _: () = assert!(core::mem::size_of::<Sqe>() == 64);

/// FUSE values in [`Sqe::flags`] bits 1:0 (Base 2.0 Figure 88): the first and the second
/// command of a fused operation (11b is reserved).
pub const FUSE_FIRST: u8 = 0b01;
pub const FUSE_SECOND: u8 = 0b10;

/// PSDT value in [`Sqe::flags`] bits 7:6: PRPs used for this transfer.
pub const PSDT_PRP: u8 = 0b00;
/// PSDT: SGLs, metadata pointer is a buffer (used by all fabrics transports).
pub const PSDT_SGL_MPTR_CONTIG: u8 = 0b01;

impl Sqe {
    /// PSDT field (bits 7:6 of CDW0 byte 1).
    pub fn psdt(&self) -> u8 {
        self.flags >> 6
    }
    /// FUSE field (bits 1:0 of CDW0 byte 1).
    pub fn fuse(&self) -> u8 {
        self.flags & 0x3
    }
    /// Fabrics command type (FCTYPE, byte 4 of a fabrics command: NVMe-oF 1.1 section 3.3).
    pub fn fctype(&self) -> u8 {
        self.nsid.get() as u8
    }
    /// PRP entry 1 (DPTR bytes 7:0).
    pub fn prp1(&self) -> u64 {
        u64::from_le_bytes(self.dptr[0..8].try_into().unwrap_or([0; 8]))
    }
    /// PRP entry 2 (DPTR bytes 15:8).
    pub fn prp2(&self) -> u64 {
        u64::from_le_bytes(self.dptr[8..16].try_into().unwrap_or([0; 8]))
    }
    pub fn set_prps(&mut self, prp1: u64, prp2: u64) {
        self.dptr[0..8].copy_from_slice(&prp1.to_le_bytes());
        self.dptr[8..16].copy_from_slice(&prp2.to_le_bytes());
    }
    /// SGL1 in DPTR.
    pub fn sgl1(&self) -> SglDescriptor {
        SglDescriptor::read_from_bytes(&self.dptr[..]).unwrap_or_default()
    }
    pub fn set_sgl1(&mut self, sgl: SglDescriptor) {
        self.dptr.copy_from_slice(sgl.as_bytes());
    }
    /// Starting LBA of an NVM command (CDW10 low, CDW11 high).
    pub fn slba(&self) -> u64 {
        (self.cdw10.get() as u64) | ((self.cdw11.get() as u64) << 32)
    }
    pub fn set_slba(&mut self, slba: u64) {
        self.cdw10.set(slba as u32);
        self.cdw11.set((slba >> 32) as u32);
    }
    /// Number of logical blocks of Read/Write/Compare/Write Zeroes, converted from 0's based.
    pub fn nlb(&self) -> u32 {
        (self.cdw12.get() & 0xffff) + 1
    }
    /// Force Unit Access (Read, Write, Compare, Write Zeroes: NVM Command Set 1.0 Figure 46,
    /// CDW12 bit 30).
    pub fn fua(&self) -> bool {
        self.cdw12.get() & CDW12_FUA != 0
    }
}

/// CDW12 bit 30 of NVM I/O commands: Force Unit Access (NVM Command Set 1.0 section 3.2.6).
pub const CDW12_FUA: u32 = 1 << 30;

/// SGL descriptor (16 bytes, Base 2.0 Figure 114).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct SglDescriptor {
    pub address: Le64,
    pub length: Le32,
    /// Type-specific bytes (for keyed descriptors: bytes 8..10 of length are length, key here).
    pub reserved: [u8; 3],
    /// SGL identifier: descriptor type (bits 7:4) and subtype (bits 3:0).
    pub identifier: u8,
}
const _: () = assert!(core::mem::size_of::<SglDescriptor>() == 16);

/// SGL descriptor types (Base 2.0 Figure 115), in the identifier's high nibble.
pub mod sgl_type {
    pub const DATA_BLOCK: u8 = 0x0;
    pub const BIT_BUCKET: u8 = 0x1;
    pub const SEGMENT: u8 = 0x2;
    pub const LAST_SEGMENT: u8 = 0x3;
    pub const KEYED_DATA_BLOCK: u8 = 0x4;
    pub const TRANSPORT_DATA_BLOCK: u8 = 0x5;
}
/// SGL descriptor subtypes (Base 2.0 Figure 116), in the identifier's low nibble.
pub mod sgl_subtype {
    pub const ADDRESS: u8 = 0x0;
    /// Offset into in-capsule data (fabrics).
    pub const OFFSET: u8 = 0x1;
    /// Transport specific (NVMe/TCP uses 0xA for data carried by H2CData/C2HData).
    pub const TRANSPORT: u8 = 0xA;
}

impl SglDescriptor {
    pub fn sgl_type(&self) -> u8 {
        self.identifier >> 4
    }
    pub fn subtype(&self) -> u8 {
        self.identifier & 0xf
    }
    /// Data block, offset subtype: in-capsule data at `offset` (NVMe/TCP: 0x01).
    pub fn in_capsule(offset: u64, len: u32) -> Self {
        Self {
            address: offset.into(),
            length: len.into(),
            reserved: [0; 3],
            identifier: (sgl_type::DATA_BLOCK << 4) | sgl_subtype::OFFSET,
        }
    }
    /// Transport data block (NVMe/TCP: 0x5A): data moves in H2CData/C2HData PDUs.
    pub fn transport(len: u32) -> Self {
        Self {
            address: 0.into(),
            length: len.into(),
            reserved: [0; 3],
            identifier: (sgl_type::TRANSPORT_DATA_BLOCK << 4) | sgl_subtype::TRANSPORT,
        }
    }
}
