//! An in-process software model of a PCIe NVMe controller, so the driver (and the target's direct
//! mode) can be tested without hardware. It implements [`RegisterSpace`]: writing a doorbell
//! processes the new submissions synchronously, reading SQEs and writing CQEs and data through
//! the same DMA address translation a device would use ([`IdentityMapper`]).
//!
//! Modelled: CC/CSTS (enable, disable, normal/abrupt shutdown, fatal status), admin queues from
//! AQA/ASQ/ACQ, admin commands (Identify CNS 0-3, Create/Delete I/O SQ/CQ, Get/Set Features,
//! Abort, Get Log Page error/SMART), NVM commands against RAM disks, PRP lists, phase tags and
//! queue wrap-around, Verify and Write Uncorrectable (range check only), and two vendor-specific
//! I/O commands ([`VENDOR_STORE`], [`VENDOR_LOAD`]) for passthrough tests. Every data and PRP list
//! access of an I/O command goes through the [`DmaGuard`] (see [`guard`]). Error injection:
//! media errors on an LBA, fatal status, and holding commands without completing them (to
//! exercise timeouts and Abort).

mod admin;
mod disk;
pub mod guard;
mod nvm;
mod prp;
mod queues;
mod regs;

use crate::dma::{DmaMapper, IdentityMapper};
use crate::mmio::RegisterSpace;
use std::sync::{Arc, Mutex, MutexGuard};

pub use disk::RamDisk;
pub use guard::{DmaGuard, Violation};

/// Vendor-specific I/O command (opcode bits 1:0 = 01b, host to controller): stores the CDW10
/// dwords of data it carries and completes with DW0 = [`VENDOR_STORE_DW0`]. Namespace-scoped like
/// any I/O command (the NSID must be active).
pub const VENDOR_STORE: u8 = 0xC1;
/// DW0 of a successful [`VENDOR_STORE`].
pub const VENDOR_STORE_DW0: u32 = 0x00C0_FFEE;
/// Vendor-specific I/O command (bits 1:0 = 10b, controller to host): returns CDW10 dwords, the
/// data of the last [`VENDOR_STORE`] zero-padded, with DW0 = the number of bytes stored.
pub const VENDOR_LOAD: u8 = 0xC2;
/// Largest vendor-specific transfer (larger, or larger than MDTS: Invalid Field).
pub const VENDOR_MAX_BYTES: usize = 1 << 20;

/// Shape of the emulated controller.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Namespaces as (block size in bytes, number of blocks); NSIDs are 1, 2, ...
    pub namespaces: Vec<(u32, u64)>,
    /// Maximum entries of any queue (CAP.MQES + 1).
    pub max_queue_entries: u16,
    /// I/O queue pairs the controller supports.
    pub max_io_queues: u16,
    /// MDTS: maximum transfer is `4 KiB << mdts` (0 = unlimited).
    pub mdts: u8,
    /// CAP.DSTRD: doorbell stride `4 << dstrd`.
    pub dstrd: u8,
    pub serial: String,
    pub model: String,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            namespaces: vec![(512, 65536)],
            max_queue_entries: 1024,
            max_io_queues: 16,
            mdts: 9,
            dstrd: 0,
            serial: "EMU0001".into(),
            model: "nvmf-rs emulated NVMe".into(),
        }
    }
}

/// The emulated controller. Share it as `Arc<EmulatedController>`; it is the register space
/// passed to [`Controller::new`](crate::Controller::new) (or use
/// [`Controller::new_emulated`](crate::Controller::new_emulated)).
pub struct EmulatedController {
    state: Mutex<regs::State>,
    mapper: Arc<IdentityMapper>,
    guard: Arc<DmaGuard>,
}

/// Counters of what the emulator did, for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmulatorStats {
    pub sq_doorbells: u64,
    pub cq_doorbells: u64,
    pub admin_commands: u64,
    pub io_commands: u64,
    pub aborts: u64,
    /// Writes and Write Zeroes with Force Unit Access (CDW12 bit 30) executed.
    pub fua_writes: u64,
}

impl EmulatedController {
    pub fn new(cfg: EmulatorConfig) -> Arc<Self> {
        let mapper = Arc::new(IdentityMapper::new());
        let guard = Arc::new(DmaGuard::default());
        let state = Mutex::new(regs::State::new(cfg, mapper.clone(), guard.clone()));
        Arc::new(EmulatedController { state, mapper, guard })
    }

    fn lock(&self) -> MutexGuard<'_, regs::State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The DMA mapper whose memory this controller can reach; build the driver's
    /// [`DmaAllocator`](crate::dma::DmaAllocator) on it.
    pub fn mapper(&self) -> Arc<dyn DmaMapper> {
        self.mapper.clone()
    }

    /// The DMA guard: which memory each I/O command was lent, and what the device was refused.
    /// Armed by a driver built with the `dma-guard` feature.
    pub fn dma_guard(&self) -> &Arc<DmaGuard> {
        &self.guard
    }

    /// Fail the next `count` Read/Write/Compare commands touching `lba` of `nsid` with a media
    /// error (Unrecovered Read Error / Write Fault).
    pub fn inject_media_error(&self, nsid: u32, lba: u64, count: u32) {
        self.lock().faults.push(nvm::MediaFault { nsid, lba, remaining: count });
    }

    /// Set CSTS.CFS: the controller stops processing commands until it is reset (CC.EN 1 -> 0).
    pub fn set_fatal(&self) {
        self.lock().csts.set_cfs(true);
    }

    /// Hold the next `count` I/O commands without completing them (until aborted or the queue is
    /// deleted).
    pub fn hold_next_io(&self, count: u32) {
        self.lock().hold_next = count;
    }

    pub fn stats(&self) -> EmulatorStats {
        self.lock().stats
    }

    /// Copy `buf.len()` bytes from namespace `nsid` starting at byte `offset` (test verification).
    pub fn read_disk(&self, nsid: u32, offset: u64, buf: &mut [u8]) -> bool {
        let st = self.lock();
        st.disks.get(nsid.wrapping_sub(1) as usize).is_some_and(|d| d.read_bytes(offset, buf))
    }
}

impl RegisterSpace for EmulatedController {
    fn read32(&self, off: usize) -> u32 {
        self.lock().read32(off)
    }
    fn write32(&self, off: usize, v: u32) {
        self.lock().write32(off, v)
    }
    fn read64(&self, off: usize) -> u64 {
        let mut st = self.lock();
        st.read32(off) as u64 | (st.read32(off + 4) as u64) << 32
    }
    fn write64(&self, off: usize, v: u64) {
        let mut st = self.lock();
        st.write32(off, v as u32);
        st.write32(off + 4, (v >> 32) as u32);
    }
}
