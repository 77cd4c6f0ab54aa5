//! Completion Queue Entry (NVMe Base 2.0, section 4.6, Figure 89).

use super::{Le16, Le32, Status};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Completion Queue Entry: 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct Cqe {
    /// DW0: command specific.
    pub dw0: Le32,
    /// DW1: command specific.
    pub dw1: Le32,
    /// SQ head pointer (SQHD).
    pub sqhd: Le16,
    /// SQ identifier (SQID).
    pub sqid: Le16,
    /// Command identifier (CID).
    pub cid: Le16,
    /// Phase tag (bit 0) and status field (bits 15:1).
    pub status: Le16,
}
const _: () = assert!(core::mem::size_of::<Cqe>() == 16);

impl Cqe {
    pub fn new(cid: u16, status: Status) -> Self {
        Cqe { cid: cid.into(), status: (status.to_raw() << 1).into(), ..Default::default() }
    }
    /// Phase tag (P).
    pub fn phase(&self) -> bool {
        self.status.get() & 1 != 0
    }
    /// The status field without the phase tag.
    pub fn status(&self) -> Status {
        Status::from_raw(self.status.get() >> 1)
    }
    pub fn set_status(&mut self, status: Status) {
        let p = self.status.get() & 1;
        self.status.set((status.to_raw() << 1) | p);
    }
    pub fn is_success(&self) -> bool {
        self.status().is_success()
    }
}
