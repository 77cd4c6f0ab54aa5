//! DMA guard: the emulated controller's check that each I/O command moves data only through the
//! memory the driver lent to that command. A device that follows a PRP past the buffer (a
//! command claiming more data than it carried, PRP2 = 0, a stale PRP list entry, a "list" that is
//! really host data) would read or write memory that belongs to another command, possibly
//! another host's. Here such an access is refused like an IOMMU fault (the command fails with
//! Data Transfer Error) and recorded, so tests can assert that it never happens.
//!
//! The driver tells the guard what it lent when it is built with the `dma-guard` feature (tests
//! and fuzzing): per submitted I/O command, the byte ranges of its data buffer and the entries of
//! its PRP list it wrote. Without that feature nothing is registered and the guard stays unarmed
//! (no checks): [`DmaGuard::is_armed`] says which.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Violations kept for inspection (the count goes on).
const KEPT: usize = 64;

/// Device addresses one I/O command may touch, as half-open `[start, end)` ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lent {
    /// The data buffer (page pieces, merged where contiguous).
    pub data: Vec<(u64, u64)>,
    /// The PRP list entries written for this command.
    pub list: Vec<(u64, u64)>,
}

/// What the device tried to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read data from host memory (host-to-controller transfer).
    DataRead,
    /// Write data to host memory (controller-to-host transfer).
    DataWrite,
    /// Read a PRP list entry.
    PrpList,
}

/// One refused access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    pub sqid: u16,
    pub cid: u16,
    pub opcode: u8,
    pub access: Access,
    pub iova: u64,
    pub len: usize,
}

/// See the module docs. One per [`EmulatedController`](super::EmulatedController).
#[derive(Default)]
pub struct DmaGuard {
    armed: AtomicBool,
    lent: Mutex<HashMap<(u16, u16), Lent>>,
    checked: AtomicU64,
    count: AtomicU64,
    kept: Mutex<Vec<Violation>>,
}

impl DmaGuard {
    /// The driver lent `lent` to command `cid` of I/O queue `sqid` (replacing what an earlier
    /// command with that CID had). Arms the guard.
    pub fn lend(&self, sqid: u16, cid: u16, lent: Lent) {
        self.armed.store(true, Ordering::Release);
        self.lent.lock().unwrap_or_else(|p| p.into_inner()).insert((sqid, cid), lent);
    }

    /// Whether a driver registers its buffers (built with the `dma-guard` feature), so I/O
    /// command DMA is checked.
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    /// Accesses checked so far (and allowed or refused).
    pub fn checked(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }

    /// Accesses refused so far.
    pub fn violation_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The first refused accesses.
    pub fn violations(&self) -> Vec<Violation> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// May command `cid` of I/O queue `sqid` do `access` on `len` bytes at `iova`? Records a
    /// violation when not. Always true while unarmed.
    pub(crate) fn allow(&self, sqid: u16, cid: u16, opcode: u8, access: Access, iova: u64, len: usize) -> bool {
        if !self.is_armed() {
            return true;
        }
        self.checked.fetch_add(1, Ordering::Relaxed);
        let end = iova.checked_add(len as u64);
        let inside = |r: &(u64, u64)| end.is_some_and(|e| r.0 <= iova && e <= r.1);
        let ok = {
            let lent = self.lent.lock().unwrap_or_else(|p| p.into_inner());
            lent.get(&(sqid, cid)).is_some_and(|l| match access {
                Access::PrpList => l.list.iter().any(inside),
                Access::DataRead | Access::DataWrite => l.data.iter().any(inside),
            })
        };
        if !ok {
            let v = Violation { sqid, cid, opcode, access, iova, len };
            log::error!("emulator: DMA guard refused {v:?}");
            self.count.fetch_add(1, Ordering::Relaxed);
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() < KEPT {
                kept.push(v);
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unarmed_allows_armed_checks_ranges_and_kinds() {
        let g = DmaGuard::default();
        assert!(g.allow(1, 0, 0xC2, Access::DataWrite, 0, 4096), "unarmed: no checks");
        assert_eq!(g.checked(), 0);
        g.lend(1, 3, Lent { data: vec![(0x1000, 0x3000)], list: vec![(0x8000, 0x8010)] });
        assert!(g.is_armed());
        assert!(g.allow(1, 3, 2, Access::DataWrite, 0x1000, 0x2000));
        assert!(g.allow(1, 3, 2, Access::DataRead, 0x2ffc, 4));
        assert!(g.allow(1, 3, 2, Access::PrpList, 0x8008, 8));
        assert!(!g.allow(1, 3, 2, Access::DataWrite, 0x2ffc, 8), "one byte past the buffer");
        assert!(!g.allow(1, 3, 2, Access::PrpList, 0x8010, 8), "an entry the driver did not write");
        assert!(!g.allow(1, 3, 2, Access::PrpList, 0x1000, 8), "data read as a PRP list");
        assert!(!g.allow(1, 3, 2, Access::DataRead, 0x8000, 8), "the list is not data");
        assert!(!g.allow(1, 4, 2, Access::DataRead, 0x1000, 8), "another command's buffer");
        assert!(!g.allow(2, 3, 2, Access::DataRead, 0x1000, 8), "another queue's command");
        assert!(!g.allow(1, 3, 2, Access::DataRead, u64::MAX - 2, 8), "wrapping");
        assert_eq!((g.checked(), g.violation_count()), (10, 7));
        assert_eq!(
            g.violations()[0],
            Violation { sqid: 1, cid: 3, opcode: 2, access: Access::DataWrite, iova: 0x2ffc, len: 8 }
        );
    }
}
