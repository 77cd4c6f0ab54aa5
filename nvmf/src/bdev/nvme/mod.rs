//! Direct mode: a bdev backed by a PCIe NVMe namespace through the userspace driver
//! (`nvme_driver`), so NVMe-oF I/O is forwarded to the device with no kernel in the path.
//!
//! Why it is shaped this way:
//! - One hardware queue pair per channel. Each poll group opens its own channel, so each reactor
//!   thread owns its own `IoQpair` (Send, not Sync) and its own `DmaPool`: no lock on the I/O
//!   path. The `Controller` is shared (`Arc`) only for the control path.
//! - No copy between the network and the device: the channel lends its DMA buffers to the
//!   transport (`alloc_buf`), which receives host data into them and sends read data from them,
//!   and the device reads or writes them in place. Buffers it did not lend (pools exhausted,
//!   other bdevs' buffers, emulated Compare) are copied through a DMA buffer of its own, and
//!   the bytes copied are counted (`NvmeBdev::copied_bytes`).
//! - Two pools per channel: command-sized buffers (one per queue slot; a quarter is kept back
//!   for the copy path so a host that never sends the data it announced cannot stall it) and a
//!   few buffers of the target's largest I/O, so a 1 MiB transfer is zero-copy too.
//! - An I/O larger than a DMA buffer (buffer size = min(max transfer, `max_buf_size`), a multiple
//!   of the block size) is split into several NVMe commands, so devices with a small MDTS work and
//!   the pinned memory per poll group stays bounded (queue depth x buffer size).
//! - When no command slot or DMA buffer is free, the I/O waits in a FIFO and continues from
//!   `poll` as completions free resources. The in-flight tables and the FIFO are allocated once
//!   (they only grow to the high-water mark), so steady-state I/O allocates nothing.
//! - `submit` only writes SQEs; `poll` rings the SQ doorbell once for everything queued since the
//!   last poll, then reaps completions (one CQ head doorbell per poll).
//! - Nothing from the device can panic this code: unknown tokens are logged and ignored, and
//!   every NVMe status maps to a `BdevStatus`. Buffers of commands that timed out, or that were
//!   outstanding when the controller failed, are never reused (the device may still write them).
//! - Passthrough whose data length the target could not check (`PassthruIo::exact_len` false,
//!   "trusting the hosts") may make the device move more or less than the host sent. It goes
//!   through the channel's one passthrough buffer (allocated on first use, zeroed for each
//!   command), with PRPs that lead the device only into that buffer for any length up to its
//!   maximum transfer (`IoQpair::submit_raw_opaque`). Whatever the command claims, the device
//!   cannot reach another command's memory, nor read data another host left behind.
//!
//! Files: this one holds the bdev (geometry, capabilities, opening a channel); `channel.rs` the
//! channel (in-flight tables, waiting FIFO, submit and poll); `issue.rs` turns an I/O into NVMe
//! commands and splits it; `emulate.rs` emulates Compare and Write Zeroes on controllers
//! without them; `status.rs` maps device statuses to bdev statuses.

mod channel;
mod emulate;
mod issue;
mod status;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nvme_driver::Controller;

use self::channel::NvmeChannel;
pub use self::status::map_status;
use super::{check_io, Bdev, BdevChannel, BdevCompletion, BdevError, BdevIo, BdevOp, BdevStatus, IoBuf, PassthruIo};
use crate::spec::identify::oncs;

/// Default upper bound of one DMA buffer (and so of one NVMe data command).
pub const DEFAULT_MAX_BUF_SIZE: usize = 128 << 10;
/// Default number of large DMA buffers (of the target's largest I/O) per channel.
pub const DEFAULT_LARGE_BUFS: usize = 8;
/// Write Zeroes NLB limit (16-bit 0's based field).
const MAX_WZ_BLOCKS: u64 = 0x1_0000;
/// Dataset Management ranges per command.
const MAX_DSM_RANGES: usize = 256;
/// Initial capacity of the waiting FIFO and the immediate-completion queue.
const QUEUE_CAPACITY: usize = 256;

/// Per-channel resources of an [`NvmeBdev`].
#[derive(Clone, Debug)]
pub struct NvmeBdevOpts {
    /// Entries of each channel's hardware queue pair (one fewer can be outstanding); `None` uses
    /// the controller's `ControllerOptions::io_queue_entries`.
    pub queue_entries: Option<u16>,
    /// Upper bound of a DMA buffer; the real size is also capped by the controller's maximum
    /// transfer and rounded down to a multiple of the block size.
    pub max_buf_size: usize,
    /// DMA buffers per channel; `None` = the queue depth (every command slot can carry data).
    pub num_bufs: Option<usize>,
    /// DMA buffers of `crate::MAX_IO_SIZE` bytes per channel, lent to transports for I/Os larger
    /// than a command buffer (0: such I/Os are copied through command buffers).
    pub large_bufs: usize,
}

impl Default for NvmeBdevOpts {
    fn default() -> Self {
        NvmeBdevOpts {
            queue_entries: None,
            max_buf_size: DEFAULT_MAX_BUF_SIZE,
            num_bufs: None,
            large_bufs: DEFAULT_LARGE_BUFS,
        }
    }
}

/// A namespace of a userspace-driven NVMe controller ("NVMe disk"). Share it as `Arc<dyn Bdev>`.
pub struct NvmeBdev {
    name: String,
    ctrl: Arc<Controller>,
    nsid: u32,
    block_size: u32,
    num_blocks: u64,
    oncs: u16,
    vwc: bool,
    buf_size: usize,
    opts: NvmeBdevOpts,
    /// Bytes copied between transport buffers and DMA buffers, over all channels.
    copied: Arc<AtomicU64>,
}

impl std::fmt::Debug for NvmeBdev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmeBdev")
            .field("name", &self.name)
            .field("nsid", &self.nsid)
            .field("block_size", &self.block_size)
            .field("num_blocks", &self.num_blocks)
            .field("oncs", &self.oncs)
            .field("vwc", &self.vwc)
            .field("buf_size", &self.buf_size)
            .finish()
    }
}

impl NvmeBdev {
    /// A bdev on namespace `nsid` of `ctrl` with default per-channel resources.
    pub fn new(name: &str, ctrl: Arc<Controller>, nsid: u32) -> Result<NvmeBdev, BdevError> {
        Self::with_opts(name, ctrl, nsid, NvmeBdevOpts::default())
    }

    /// A bdev on namespace `nsid` of `ctrl`.
    pub fn with_opts(name: &str, ctrl: Arc<Controller>, nsid: u32, opts: NvmeBdevOpts) -> Result<NvmeBdev, BdevError> {
        let ns = ctrl
            .namespace(nsid)
            .ok_or_else(|| BdevError::InvalidParam(format!("controller has no active namespace {nsid}")))?;
        super::malloc::check_geometry(ns.block_size, ns.blocks)?;
        let bs = ns.block_size as usize;
        let max = ctrl.max_transfer_bytes().min(opts.max_buf_size);
        let buf_size = max / bs * bs;
        if buf_size == 0 {
            return Err(BdevError::InvalidParam(format!(
                "maximum transfer {max} bytes is smaller than the block size {bs}"
            )));
        }
        if opts.num_bufs == Some(0) {
            return Err(BdevError::InvalidParam("num_bufs is 0".into()));
        }
        let id = ctrl.identify();
        Ok(NvmeBdev {
            name: name.to_owned(),
            nsid,
            block_size: ns.block_size,
            num_blocks: ns.blocks,
            oncs: id.oncs.get(),
            vwc: id.vwc & 1 != 0,
            buf_size,
            opts,
            ctrl,
            copied: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.ctrl
    }
    pub fn nsid(&self) -> u32 {
        self.nsid
    }
    /// Bytes of one DMA buffer (the largest single NVMe data command this bdev issues).
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }
    /// Data bytes copied between transport buffers and DMA buffers so far (0 while every I/O
    /// used a buffer lent by its channel).
    pub fn copied_bytes(&self) -> u64 {
        self.copied.load(Ordering::Relaxed)
    }
}

fn io_error(name: &str, op: &'static str, e: nvme_driver::Error) -> BdevError {
    BdevError::Io { op, path: name.to_owned(), source: std::io::Error::other(e) }
}

impl Bdev for NvmeBdev {
    fn name(&self) -> &str {
        &self.name
    }
    fn product_name(&self) -> &'static str {
        "NVMe disk"
    }
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }
    fn supports(&self, op: BdevOp) -> bool {
        match op {
            // Write Zeroes and Compare are emulated (Write of zeroes, Read + compare) when the
            // controller lacks them.
            BdevOp::Read | BdevOp::Write | BdevOp::Compare | BdevOp::Flush | BdevOp::WriteZeroes => true,
            BdevOp::Unmap => self.oncs & oncs::DATASET_MANAGEMENT != 0,
        }
    }
    fn volatile_write_cache(&self) -> bool {
        self.vwc
    }
    fn supports_passthru(&self) -> bool {
        true
    }
    fn lends_buffers(&self) -> bool {
        true
    }
    fn open_channel(&self) -> Result<Box<dyn BdevChannel>, BdevError> {
        Ok(Box::new(self.open()?))
    }
}

impl NvmeBdev {
    fn open(&self) -> Result<NvmeChannel, BdevError> {
        let qp = match self.opts.queue_entries {
            Some(n) => self.ctrl.alloc_io_qpair_with(n),
            None => self.ctrl.alloc_io_qpair(),
        }
        .map_err(|e| io_error(&self.name, "allocate I/O queue pair", e))?;
        let depth = qp.depth();
        log::info!("bdev {}: channel on hardware I/O queue {} ({depth} deep)", self.name, qp.qid());
        let nbufs = self.opts.num_bufs.unwrap_or(depth);
        let pool = self
            .ctrl
            .dma()
            .alloc_pool(self.buf_size, nbufs)
            .map_err(|e| io_error(&self.name, "allocate DMA buffers", e))?;
        let bs = self.block_size as usize;
        let large_size = crate::MAX_IO_SIZE / bs * bs;
        let large = match self.opts.large_bufs {
            0 => None,
            n => Some(
                self.ctrl
                    .dma()
                    .alloc_pool(large_size, n)
                    .map_err(|e| io_error(&self.name, "allocate large DMA buffers", e))?,
            ),
        };
        Ok(NvmeChannel {
            dma: self.ctrl.dma().clone(),
            opaque: None,
            qp,
            lend_reserve: (pool.capacity() / 4).max(1),
            pool,
            large,
            copied: self.copied.clone(),
            nsid: self.nsid,
            block_size: self.block_size,
            num_blocks: self.num_blocks,
            buf_blocks: (self.buf_size / self.block_size as usize) as u64,
            native_compare: self.oncs & oncs::COMPARE != 0,
            native_write_zeroes: self.oncs & oncs::WRITE_ZEROES != 0,
            dsm: self.oncs & oncs::DATASET_MANAGEMENT != 0,
            ios: Vec::with_capacity(depth),
            free_ios: Vec::with_capacity(depth),
            cmds: (0..depth).map(|_| None).collect(),
            free_cmds: (0..depth as u32).rev().collect(),
            waiting: VecDeque::with_capacity(QUEUE_CAPACITY),
            done: VecDeque::with_capacity(QUEUE_CAPACITY),
            quarantine: Vec::new(),
            dead: false,
            name: self.name.clone(),
        })
    }
}
