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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nvme_driver::spec::identify::oncs;
use nvme_driver::spec::{CommandSpecificStatus, GenericStatus, MediaStatus, Status, StatusCodeType};
use nvme_driver::{Controller, DmaAllocator, DmaPool, IoQpair, PoolBuf};

use super::{check_io, Bdev, BdevChannel, BdevCompletion, BdevError, BdevIo, BdevOp, BdevStatus, IoBuf, PassthruIo};
use nvme_driver::spec::{NvmOpcode, Sqe, CDW12_FUA};

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

/// A bdev I/O being executed as one or more NVMe commands.
struct Io {
    tag: u64,
    op: BdevOp,
    offset_blocks: u64,
    buf: Option<IoBuf>,
    /// CDW12 bits 31:16 for the device's commands: FUA when the host asked for it.
    cdw12_flags: u32,
    /// Units issued so far and in all: blocks (Read/Write/Compare/WriteZeroes), ranges (Unmap),
    /// or 1 (Flush).
    next: u64,
    total: u64,
    /// NVMe commands submitted and not yet completed.
    inflight: u32,
    /// First failure wins.
    status: BdevStatus,
    /// A passthrough command (sanitized: NSID, flags, pointers); `op` is Write when its data
    /// goes to the device, Read otherwise.
    passthru: Option<Sqe>,
    /// A passthrough command whose length the target could not check: the PRPs cover the
    /// device's maximum transfer.
    opaque: bool,
    /// `buf` is a DMA buffer this channel lent: commands point the device at it directly.
    direct: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Copy the DMA buffer into the IoBuf on success.
    Read,
    /// Read issued for a Compare the controller does not support: compare on completion.
    CompareByRead,
    /// Nothing to copy back.
    Other,
}

/// One NVMe command in flight; its index in `cmds` is the driver token.
struct Cmd {
    io: u32,
    dma: Option<PoolBuf>,
    /// Byte range of the IoBuf this command covers (data commands).
    off: usize,
    len: usize,
    kind: Kind,
}

enum Step {
    /// Issued one command; more remain.
    More,
    /// Every command of the I/O is issued (or issuing stopped on an error).
    AllIssued,
    /// No command slot or DMA buffer free: try again after completions.
    Blocked,
}

struct NvmeChannel {
    // Declared first so it drops first: the SQ/CQ are deleted on the controller before any DMA
    // buffer still referenced by an outstanding command goes back to the pool.
    qp: IoQpair,
    pool: DmaPool,
    /// Buffers of the target's largest I/O, lent to transports only.
    large: Option<DmaPool>,
    dma: Arc<DmaAllocator>,
    /// One buffer of the device's maximum transfer for opaque passthrough (see the module
    /// docs), allocated on first use.
    opaque: Option<DmaPool>,
    /// Command buffers never lent out, so the copy path always makes progress.
    lend_reserve: usize,
    copied: Arc<AtomicU64>,
    nsid: u32,
    block_size: u32,
    num_blocks: u64,
    buf_blocks: u64,
    native_compare: bool,
    native_write_zeroes: bool,
    dsm: bool,
    ios: Vec<Option<Io>>,
    free_ios: Vec<u32>,
    cmds: Vec<Option<Cmd>>,
    free_cmds: Vec<u32>,
    /// I/Os with commands still to issue, oldest first.
    waiting: VecDeque<u32>,
    /// Completions decided without the device (validation, dead channel).
    done: VecDeque<BdevCompletion>,
    /// DMA buffers the device may still write (timed-out commands, controller failure).
    quarantine: Vec<PoolBuf>,
    /// The queue pair failed (controller fatal, reset or shut down): every I/O fails.
    dead: bool,
    name: String,
}

/// The status for an I/O that failed without a more specific NVMe status (submission error,
/// timeout, dead controller): reads and compares fail as reads, everything else as writes.
fn failure(op: BdevOp) -> BdevStatus {
    match op {
        BdevOp::Read | BdevOp::Compare => BdevStatus::ReadError,
        _ => BdevStatus::WriteError,
    }
}

/// Map an NVMe completion status from the device to a bdev status (which the target maps back
/// to an NVMe status for the host).
pub fn map_status(status: Status, op: BdevOp) -> BdevStatus {
    if status.is_success() {
        return BdevStatus::Success;
    }
    let sct = status.sct();
    let sc = status.sc();
    if sct == StatusCodeType::MediaDataIntegrity as u8 {
        return match sc {
            MediaStatus::UNRECOVERED_READ_ERROR => BdevStatus::ReadError,
            MediaStatus::WRITE_FAULT => BdevStatus::WriteError,
            MediaStatus::COMPARE_FAILURE => BdevStatus::CompareMismatch,
            _ => failure(op),
        };
    }
    if sct == StatusCodeType::Generic as u8 {
        return match sc {
            GenericStatus::LBA_OUT_OF_RANGE => BdevStatus::OutOfRange,
            GenericStatus::CAPACITY_EXCEEDED => BdevStatus::NoSpace,
            GenericStatus::INVALID_OPCODE => BdevStatus::Unsupported,
            GenericStatus::INVALID_FIELD
            | GenericStatus::INVALID_NAMESPACE_OR_FORMAT
            | GenericStatus::DATA_SGL_LENGTH_INVALID
            | GenericStatus::INVALID_PRP_OFFSET
            | GenericStatus::INVALID_NUM_SGL_DESCRIPTORS
            | GenericStatus::INVALID_SGL_SEG_DESCRIPTOR
            | GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID
            | GenericStatus::INVALID_SGL_OFFSET => BdevStatus::InvalidArg,
            // Internal error, data transfer error, aborts, namespace not ready, write protected...
            _ => failure(op),
        };
    }
    if sct == StatusCodeType::CommandSpecific as u8 {
        return match sc {
            CommandSpecificStatus::CONFLICTING_ATTRIBUTES | CommandSpecificStatus::INVALID_PROTECTION_INFO => {
                BdevStatus::InvalidArg
            }
            _ => failure(op),
        };
    }
    // Path-related and vendor-specific statuses.
    failure(op)
}

impl NvmeChannel {
    /// Whether `buf` is a DMA buffer of this channel's pools (the device can address it).
    fn lent(&self, buf: Option<&IoBuf>) -> bool {
        buf.and_then(IoBuf::dma).is_some_and(|d| {
            d.pool_id() == self.pool.id() || self.large.as_ref().is_some_and(|l| l.id() == d.pool_id())
        })
    }

    fn alloc_io(&mut self, io: Io) -> u32 {
        match self.free_ios.pop() {
            Some(i) => {
                self.ios[i as usize] = Some(io);
                i
            }
            None => {
                self.ios.push(Some(io));
                (self.ios.len() - 1) as u32
            }
        }
    }

    /// Remove a finished I/O and build its completion.
    fn finish(ios: &mut [Option<Io>], free_ios: &mut Vec<u32>, idx: u32) -> Option<BdevCompletion> {
        let io = ios.get_mut(idx as usize)?.take()?;
        free_ios.push(idx);
        Some(BdevCompletion { tag: io.tag, status: io.status, buf: io.buf })
    }

    /// Issue the next command of I/O `idx`.
    fn issue(&mut self, idx: u32) -> Step {
        let Some(io) = self.ios.get_mut(idx as usize).and_then(Option::as_mut) else {
            return Step::AllIssued;
        };
        if io.status != BdevStatus::Success {
            // A command of this I/O already failed: issue no more.
            io.next = io.total;
        }
        if io.next >= io.total {
            return Step::AllIssued;
        }
        let Some(&ci) = self.free_cmds.last() else { return Step::Blocked };
        let remaining = io.total - io.next;
        let needs_buf = if io.direct {
            false
        } else if io.passthru.is_some() {
            io.opaque || io.buf.as_ref().is_some_and(|b| !b.is_empty())
        } else {
            match io.op {
                BdevOp::Read | BdevOp::Write | BdevOp::Compare => true,
                BdevOp::WriteZeroes => !self.native_write_zeroes,
                BdevOp::Flush | BdevOp::Unmap => false,
            }
        };
        let dma = if needs_buf && io.opaque {
            if self.opaque.is_none() {
                match self.dma.alloc_pool(nvme_driver::prp::opaque_buf_size(self.qp.max_transfer_bytes()), 1) {
                    Ok(p) => self.opaque = Some(p),
                    Err(e) => {
                        log::error!("bdev {}: allocating the passthrough buffer: {e}", self.name);
                        io.status = failure(io.op);
                        io.next = io.total;
                        return Step::AllIssued;
                    }
                }
            }
            match self.opaque.as_ref().and_then(DmaPool::get) {
                Some(b) => Some(b),
                None => return Step::Blocked,
            }
        } else if needs_buf {
            match self.pool.get() {
                Some(b) => Some(b),
                None => return Step::Blocked,
            }
        } else {
            None
        };
        let bs = self.block_size as usize;
        let lba = io.offset_blocks + io.next;
        let (mut off, mut len, mut kind) = (0, 0, Kind::Other);
        let nsid = self.nsid;
        let token = ci as u64;
        let (units, result) = if let Some(sqe) = io.passthru {
            let h2c = io.op == BdevOp::Write;
            let r = match (dma.as_ref(), io.buf.as_ref()) {
                (Some(d), b) if io.opaque => {
                    // Never another command's old data: only the host's, and zeroes.
                    d.fill(0, d.len(), 0);
                    let n = b.map_or(0, IoBuf::len);
                    match nvme_driver::prp::opaque_offset(n, h2c) {
                        Some(at) => {
                            if let Some(b) = b.filter(|_| n > 0) {
                                len = n;
                                if h2c {
                                    d.write(at, b.as_slice());
                                    self.copied.fetch_add(len as u64, Ordering::Relaxed);
                                } else {
                                    kind = Kind::Read;
                                }
                            }
                            self.qp.submit_raw_opaque(sqe, d, n, h2c, token)
                        }
                        None => Err(nvme_driver::Error::InvalidArgument(format!("no safe layout for {n} bytes"))),
                    }
                }
                (Some(d), Some(b)) => {
                    len = b.len();
                    if h2c {
                        d.write(0, b.as_slice());
                        self.copied.fetch_add(len as u64, Ordering::Relaxed);
                    } else {
                        kind = Kind::Read;
                    }
                    self.qp.submit_raw(sqe, Some((d, 0, len)), token)
                }
                (None, Some(b)) if io.direct => match b.dma() {
                    Some(d) => self.qp.submit_raw(sqe, Some((d, 0, b.len())), token),
                    None => Err(nvme_driver::Error::InvalidArgument("lent buffer is not DMA memory".into())),
                },
                _ => self.qp.submit_raw(sqe, None, token),
            };
            (1, r)
        } else {
            match (io.op, dma.as_ref()) {
                (BdevOp::Read | BdevOp::Write | BdevOp::Compare, _) if io.direct => {
                    // The device moves the data in place, in the buffer the transport filled or
                    // will send from.
                    let blocks = remaining.min(self.buf_blocks);
                    let at = io.next as usize * bs;
                    let opc = match io.op {
                        BdevOp::Read => NvmOpcode::Read,
                        BdevOp::Write => NvmOpcode::Write,
                        _ => NvmOpcode::Compare,
                    };
                    let r = match io.buf.as_ref().and_then(IoBuf::dma) {
                        Some(d) => self.qp.rw_at_flags(opc, nsid, lba, blocks as u32, d, at, io.cdw12_flags, token),
                        None => Err(nvme_driver::Error::InvalidArgument("lent buffer is not DMA memory".into())),
                    };
                    (blocks, r)
                }
                (BdevOp::Read | BdevOp::Write | BdevOp::Compare, Some(d)) => {
                    let blocks = remaining.min(self.buf_blocks);
                    off = io.next as usize * bs;
                    len = blocks as usize * bs;
                    let r = match io.op {
                        BdevOp::Read => {
                            kind = Kind::Read;
                            self.qp.read(nsid, lba, blocks as u32, d, token)
                        }
                        BdevOp::Compare if !self.native_compare => {
                            kind = Kind::CompareByRead;
                            self.qp.read(nsid, lba, blocks as u32, d, token)
                        }
                        op => {
                            // The one copy left on the data path (see the module docs).
                            match io.buf.as_ref().and_then(|b| b.as_slice().get(off..off + len)) {
                                Some(src) => {
                                    d.write(0, src);
                                    self.copied.fetch_add(len as u64, Ordering::Relaxed);
                                }
                                None => {
                                    io.status = BdevStatus::InvalidArg;
                                    return Step::More;
                                }
                            }
                            if op == BdevOp::Write {
                                self.qp.rw_at_flags(
                                    NvmOpcode::Write,
                                    nsid,
                                    lba,
                                    blocks as u32,
                                    d,
                                    0,
                                    io.cdw12_flags,
                                    token,
                                )
                            } else {
                                self.qp.compare(nsid, lba, blocks as u32, d, token)
                            }
                        }
                    };
                    (blocks, r)
                }
                (BdevOp::WriteZeroes, Some(d)) => {
                    let blocks = remaining.min(self.buf_blocks);
                    d.fill(0, blocks as usize * bs, 0);
                    (
                        blocks,
                        self.qp.rw_at_flags(NvmOpcode::Write, nsid, lba, blocks as u32, d, 0, io.cdw12_flags, token),
                    )
                }
                (BdevOp::WriteZeroes, None) => {
                    let blocks = remaining.min(MAX_WZ_BLOCKS);
                    (blocks, self.qp.write_zeroes_flags(nsid, lba, blocks as u32, io.cdw12_flags, token))
                }
                (BdevOp::Flush, _) => (1, self.qp.flush(nsid, token)),
                (BdevOp::Unmap, _) => {
                    let mut ranges = [(0u64, 0u32); MAX_DSM_RANGES];
                    let first = io.next as usize;
                    let n = (remaining as usize).min(MAX_DSM_RANGES);
                    let src = io.buf.as_ref().map_or(&[][..], |b| b.as_slice());
                    let src = src.get(first * 16..(first + n) * 16).unwrap_or(&[]);
                    for (dst, r) in ranges.iter_mut().zip(super::dsm_ranges(src)) {
                        *dst = r;
                    }
                    (n as u64, self.qp.deallocate(nsid, &ranges[..n], token))
                }
                (_, None) => {
                    // Unreachable: data ops always got a buffer above.
                    io.status = BdevStatus::InvalidArg;
                    return Step::More;
                }
            }
        };
        match result {
            Ok(()) => {
                self.free_cmds.pop();
                self.cmds[ci as usize] = Some(Cmd { io: idx, dma, off, len, kind });
                io.next += units;
                io.inflight += 1;
                if io.next >= io.total {
                    Step::AllIssued
                } else {
                    Step::More
                }
            }
            // Driver slots held by commands lost after a timeout: wait for completions.
            Err(nvme_driver::Error::QueueFull) => Step::Blocked,
            Err(e) => {
                if matches!(e, nvme_driver::Error::QpairInvalidated | nvme_driver::Error::ControllerFatal) {
                    self.dead = true;
                }
                log::error!("bdev {}: submitting {:?}: {e}", self.name, io.op);
                io.status = failure(io.op);
                Step::More
            }
        }
    }

    /// Issue commands for waiting I/Os, oldest first, until resources run out.
    fn pump(&mut self) {
        while let Some(&idx) = self.waiting.front() {
            match self.issue(idx) {
                Step::More => {}
                Step::Blocked => return,
                Step::AllIssued => {
                    self.waiting.pop_front();
                    if self.ios.get(idx as usize).and_then(Option::as_ref).is_some_and(|io| io.inflight == 0) {
                        if let Some(c) = Self::finish(&mut self.ios, &mut self.free_ios, idx) {
                            self.done.push_back(c);
                        }
                    }
                }
            }
        }
    }

    /// The queue pair is unusable: fail every I/O. Buffers of outstanding commands are kept out
    /// of the pool for good (the device may still write them).
    fn fail_all(&mut self, e: &nvme_driver::Error) {
        log::error!(
            "bdev {}: queue pair failed: {e}; failing {} I/Os",
            self.name,
            self.ios.len() - self.free_ios.len()
        );
        self.dead = true;
        for c in self.cmds.iter_mut() {
            let Some(c) = c.take() else { continue };
            if let Some(dma) = c.dma {
                self.quarantine.push(dma);
            }
            // A lent buffer the device may still write stays out of use too.
            if let Some(io) = self.ios.get_mut(c.io as usize).and_then(Option::as_mut) {
                if io.direct {
                    if let Some(Ok(d)) = io.buf.take().map(IoBuf::into_dma) {
                        self.quarantine.push(d);
                    }
                }
            }
        }
        self.waiting.clear();
        for idx in 0..self.ios.len() as u32 {
            if let Some(io) = self.ios[idx as usize].as_mut() {
                if io.status == BdevStatus::Success {
                    io.status = failure(io.op);
                }
                if let Some(c) = Self::finish(&mut self.ios, &mut self.free_ios, idx) {
                    self.done.push_back(c);
                }
            }
        }
    }
}

impl BdevChannel for NvmeChannel {
    fn submit(&mut self, io: BdevIo) {
        let status = match check_io(&io, self.block_size, self.num_blocks) {
            Err(s) => Some(s),
            Ok(_) if io.op == BdevOp::Unmap && !self.dsm => Some(BdevStatus::Unsupported),
            Ok(_) if self.dead => Some(failure(io.op)),
            Ok(_) => None,
        };
        if let Some(status) = status {
            self.done.push_back(BdevCompletion { tag: io.tag, status, buf: io.buf });
            return;
        }
        let total = match io.op {
            BdevOp::Flush => 1,
            BdevOp::Unmap => io.buf.as_ref().map_or(0, |b| b.len() / 16) as u64,
            _ => io.num_blocks,
        };
        if total == 0 {
            self.done.push_back(BdevCompletion { tag: io.tag, status: BdevStatus::Success, buf: io.buf });
            return;
        }
        let data_in_place = match io.op {
            BdevOp::Read | BdevOp::Write => true,
            BdevOp::Compare => self.native_compare,
            _ => false,
        };
        let direct = data_in_place && self.lent(io.buf.as_ref());
        let idx = self.alloc_io(Io {
            tag: io.tag,
            op: io.op,
            offset_blocks: io.offset_blocks,
            buf: io.buf,
            cdw12_flags: if io.fua { CDW12_FUA } else { 0 },
            next: 0,
            total,
            inflight: 0,
            status: BdevStatus::Success,
            passthru: None,
            opaque: false,
            direct,
        });
        self.waiting.push_back(idx);
        // Queue SQEs only when nothing older waits (FIFO); the doorbell is rung by `poll`.
        if self.waiting.len() == 1 {
            self.pump();
        }
    }

    fn poll(&mut self, out: &mut Vec<BdevCompletion>) -> usize {
        let before = out.len();
        if !self.dead {
            let max = self.qp.depth();
            let NvmeChannel { qp, cmds, free_cmds, ios, free_ios, quarantine, name, copied, opaque, .. } = self;
            let r = qp.poll(max, |token, result| {
                let Some(cmd) = cmds.get_mut(token as usize).and_then(Option::take) else {
                    log::warn!("bdev {name}: completion for unknown token {token}");
                    return;
                };
                free_cmds.push(token as u32);
                let Some(io) = ios.get_mut(cmd.io as usize).and_then(Option::as_mut) else {
                    log::warn!("bdev {name}: completion for a finished I/O");
                    return;
                };
                io.inflight = io.inflight.saturating_sub(1);
                if io.passthru.is_some() {
                    // The device's answer goes to the host as it is.
                    match &result {
                        Ok(cqe) => io.status = BdevStatus::Nvme { status: cqe.status(), dw0: cqe.dw0.get() },
                        Err(nvme_driver::Error::Nvme { status, cqe }) => {
                            io.status = BdevStatus::Nvme { status: *status, dw0: cqe.dw0.get() }
                        }
                        Err(_) => {}
                    }
                }
                match result {
                    Ok(_) => match (cmd.kind, cmd.dma.as_ref(), io.buf.as_mut()) {
                        (Kind::Read, Some(d), Some(b)) => {
                            if let Some(dst) = b.as_mut_slice().get_mut(cmd.off..cmd.off + cmd.len) {
                                d.read(0, dst);
                                copied.fetch_add(cmd.len as u64, Ordering::Relaxed);
                            }
                        }
                        (Kind::CompareByRead, Some(d), Some(b)) => {
                            let same = b.as_slice().get(cmd.off..cmd.off + cmd.len).zip(d.as_slice().get(..cmd.len));
                            if same.is_none_or(|(x, y)| x != y) && io.status == BdevStatus::Success {
                                io.status = BdevStatus::CompareMismatch;
                            }
                        }
                        _ => {}
                    },
                    Err(e) => {
                        let s = match &e {
                            nvme_driver::Error::Nvme { status, .. } => map_status(*status, io.op),
                            nvme_driver::Error::Timeout { .. } => {
                                // The device may still own the buffer: never reuse it.
                                if let Some(d) = cmd.dma {
                                    if opaque.as_ref().is_some_and(|p| p.id() == d.pool_id()) {
                                        // The next opaque command gets a fresh buffer.
                                        *opaque = None;
                                    }
                                    quarantine.push(d);
                                }
                                if io.direct {
                                    if let Some(Ok(d)) = io.buf.take().map(IoBuf::into_dma) {
                                        quarantine.push(d);
                                    }
                                }
                                failure(io.op)
                            }
                            _ => failure(io.op),
                        };
                        log::debug!("bdev {name}: {:?} failed: {e}", io.op);
                        if io.status == BdevStatus::Success && io.passthru.is_none() {
                            io.status = s;
                        }
                    }
                }
                if io.inflight == 0 && io.next >= io.total {
                    if let Some(c) = NvmeChannel::finish(ios, free_ios, cmd.io) {
                        out.push(c);
                    }
                }
            });
            if let Err(e) = r {
                self.fail_all(&e);
            }
        }
        if self.dead && self.ios.len() > self.free_ios.len() {
            let e = nvme_driver::Error::QpairInvalidated;
            self.fail_all(&e);
        }
        // Freed slots and buffers let waiting I/Os continue; their SQEs go out with one doorbell.
        self.pump();
        if !self.dead {
            self.qp.ring();
        }
        out.extend(self.done.drain(..));
        out.len() - before
    }

    fn outstanding(&self) -> usize {
        self.ios.len() - self.free_ios.len() + self.done.len()
    }

    fn alloc_buf(&mut self, len: usize) -> Option<IoBuf> {
        if self.dead || len == 0 {
            return None;
        }
        let b = if len <= self.pool.buf_size() {
            if self.pool.available() <= self.lend_reserve {
                return None;
            }
            self.pool.get()?
        } else {
            self.large.as_ref()?.get()?
        };
        IoBuf::from_dma(b, len)
    }

    fn submit_passthru(&mut self, io: PassthruIo) -> Result<(), PassthruIo> {
        let op = if io.host_to_ctrl { BdevOp::Write } else { BdevOp::Read };
        let len = io.buf.as_ref().map_or(0, |b| b.len());
        let opaque = !io.exact_len;
        // One command: a passthrough command cannot be split. A lent buffer is already DMA
        // memory, so up to the device's maximum transfer; otherwise it must fit one command
        // buffer. An opaque command always goes through the passthrough buffer (module docs).
        let direct = !opaque && self.lent(io.buf.as_ref());
        let max = if direct || opaque {
            self.qp.max_transfer_bytes()
        } else {
            self.buf_blocks as usize * self.block_size as usize
        };
        let status = if len > max || (opaque && nvme_driver::prp::opaque_offset(len, io.host_to_ctrl).is_none()) {
            Some(BdevStatus::InvalidArg)
        } else if self.dead {
            Some(failure(op))
        } else {
            None
        };
        if let Some(status) = status {
            self.done.push_back(BdevCompletion { tag: io.tag, status, buf: io.buf });
            return Ok(());
        }
        // The device's namespace, no fused operation, PRPs (not the host's SGL) built by the
        // driver, no metadata pointer.
        let mut sqe = io.sqe;
        sqe.nsid.set(self.nsid);
        sqe.flags = 0;
        sqe.cid.set(0);
        sqe.mptr.set(0);
        sqe.dptr = [0; 16];
        let idx = self.alloc_io(Io {
            tag: io.tag,
            op,
            offset_blocks: 0,
            buf: io.buf,
            // The host's own CDW12 is in the SQE.
            cdw12_flags: 0,
            next: 0,
            total: 1,
            inflight: 0,
            status: BdevStatus::Success,
            passthru: Some(sqe),
            opaque,
            direct,
        });
        self.waiting.push_back(idx);
        if self.waiting.len() == 1 {
            self.pump();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bdev::test_util::dsm;
    use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
    use nvme_driver::ControllerOptions;
    use std::time::{Duration, Instant};

    const BS: u32 = 512;
    const BLOCKS: u64 = 8192;

    fn setup(mdts: u8, opts: NvmeBdevOpts) -> (Arc<EmulatedController>, NvmeBdev) {
        let emu = EmulatedController::new(EmulatorConfig {
            namespaces: vec![(BS, BLOCKS), (4096, 256)],
            mdts,
            ..Default::default()
        });
        let ctrl = Arc::new(Controller::new_emulated(&emu, ControllerOptions::default()).expect("bring-up"));
        let b = NvmeBdev::with_opts("Nvme0n1", ctrl, 1, opts).expect("bdev");
        (emu, b)
    }

    fn small() -> NvmeBdevOpts {
        NvmeBdevOpts { queue_entries: Some(32), ..Default::default() }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
    }

    /// Poll until `n` completions arrived (bounded).
    fn wait(ch: &mut dyn BdevChannel, n: usize) -> Vec<BdevCompletion> {
        let mut out = Vec::new();
        let start = Instant::now();
        while out.len() < n {
            ch.poll(&mut out);
            assert!(start.elapsed() < Duration::from_secs(10), "only {} of {n} completions", out.len());
        }
        out
    }

    fn run(ch: &mut dyn BdevChannel, op: BdevOp, off: u64, nb: u64, buf: Option<IoBuf>) -> BdevCompletion {
        ch.submit(BdevIo { op, offset_blocks: off, num_blocks: nb, buf, fua: false, tag: 0x77 });
        let mut out = wait(ch, 1);
        assert_eq!(ch.outstanding(), 0);
        let c = out.pop().unwrap();
        assert_eq!(c.tag, 0x77);
        c
    }

    fn read(ch: &mut dyn BdevChannel, off: u64, nb: u64) -> Vec<u8> {
        let c = run(ch, BdevOp::Read, off, nb, Some(IoBuf::from(vec![0x5a; nb as usize * BS as usize])));
        assert_eq!(c.status, BdevStatus::Success);
        c.buf.unwrap().as_slice().to_vec()
    }

    fn disk(emu: &EmulatedController, off: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        assert!(emu.read_disk(1, off, &mut v));
        v
    }

    #[test]
    fn geometry_and_capabilities() {
        let (_emu, b) = setup(9, NvmeBdevOpts::default());
        assert_eq!(b.name(), "Nvme0n1");
        assert_eq!(b.product_name(), "NVMe disk");
        assert_eq!((b.block_size(), b.num_blocks()), (BS, BLOCKS));
        assert_eq!(b.buf_size(), DEFAULT_MAX_BUF_SIZE);
        let id = b.controller().identify();
        assert_eq!(b.volatile_write_cache(), id.vwc & 1 != 0);
        assert_eq!(b.supports(BdevOp::Unmap), id.oncs.get() & oncs::DATASET_MANAGEMENT != 0);
        assert!(b.supports(BdevOp::Unmap), "the emulator reports DSM");
        let ns2 = NvmeBdev::new("n2", b.controller().clone(), 2).unwrap();
        assert_eq!((ns2.block_size(), ns2.num_blocks()), (4096, 256));
        assert!(matches!(NvmeBdev::new("x", b.controller().clone(), 3), Err(BdevError::InvalidParam(_))));
        assert!(matches!(NvmeBdev::new("x", b.controller().clone(), 0), Err(BdevError::InvalidParam(_))));
        let tiny = NvmeBdevOpts { max_buf_size: 100, ..Default::default() };
        assert!(matches!(NvmeBdev::with_opts("x", b.controller().clone(), 1, tiny), Err(BdevError::InvalidParam(_))));
    }

    #[test]
    fn write_read_compare_flush_with_data_checks() {
        let (emu, b) = setup(9, small());
        let mut ch = b.open_channel().unwrap();
        assert_eq!(read(&mut *ch, 0, 16), vec![0; 16 * 512]);
        let data = pattern(24 * 512, 3);
        let c = run(&mut *ch, BdevOp::Write, 100, 24, Some(IoBuf::from(data.clone())));
        assert_eq!(c.status, BdevStatus::Success);
        assert_eq!(c.buf.unwrap().as_slice(), &data[..], "write hands its buffer back intact");
        assert_eq!(disk(&emu, 100 * 512, data.len()), data, "data reached the device");
        assert_eq!(read(&mut *ch, 100, 24), data);
        assert_eq!(read(&mut *ch, 99, 1), vec![0; 512]);
        assert_eq!(
            run(&mut *ch, BdevOp::Compare, 100, 24, Some(IoBuf::from(data.clone()))).status,
            BdevStatus::Success
        );
        let mut other = data.clone();
        other[24 * 512 - 1] ^= 1;
        assert_eq!(
            run(&mut *ch, BdevOp::Compare, 100, 24, Some(IoBuf::from(other))).status,
            BdevStatus::CompareMismatch
        );
        assert_eq!(run(&mut *ch, BdevOp::Flush, 0, 0, None).status, BdevStatus::Success);
        // Last block of the namespace.
        let last = pattern(512, 9);
        assert_eq!(
            run(&mut *ch, BdevOp::Write, BLOCKS - 1, 1, Some(IoBuf::from(last.clone()))).status,
            BdevStatus::Success
        );
        assert_eq!(read(&mut *ch, BLOCKS - 1, 1), last);
    }

    #[test]
    fn large_io_is_split_into_several_commands() {
        // MDTS 2: 16 KiB per command; a 1 MiB write is 64 commands, more than the 31 slots.
        let (emu, b) = setup(2, small());
        assert_eq!(b.buf_size(), 16 << 10);
        let mut ch = b.open_channel().unwrap();
        let data = pattern(1 << 20, 5);
        let before = emu.stats();
        assert_eq!(
            run(&mut *ch, BdevOp::Write, 1000, 2048, Some(IoBuf::from(data.clone()))).status,
            BdevStatus::Success
        );
        assert_eq!(emu.stats().io_commands - before.io_commands, 64);
        assert_eq!(disk(&emu, 1000 * 512, 1 << 20), data);
        assert_eq!(read(&mut *ch, 1000, 2048), data);
        let mut other = data.clone();
        other[(1 << 20) - 1] ^= 0x10;
        assert_eq!(
            run(&mut *ch, BdevOp::Compare, 1000, 2048, Some(IoBuf::from(other))).status,
            BdevStatus::CompareMismatch
        );
        assert_eq!(run(&mut *ch, BdevOp::Compare, 1000, 2048, Some(IoBuf::from(data))).status, BdevStatus::Success);
    }

    #[test]
    fn write_zeroes_and_deallocate() {
        let (emu, b) = setup(9, small());
        let mut ch = b.open_channel().unwrap();
        let data = pattern(64 * 512, 1);
        assert_eq!(run(&mut *ch, BdevOp::Write, 0, 64, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        assert_eq!(run(&mut *ch, BdevOp::WriteZeroes, 2, 3, None).status, BdevStatus::Success);
        let c = run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(&[(10, 1), (20, 4), (63, 1)])));
        assert_eq!(c.status, BdevStatus::Success);
        assert_eq!(c.buf.unwrap().len(), 48);
        let got = read(&mut *ch, 0, 64);
        assert_eq!(disk(&emu, 0, 64 * 512), got);
        for blk in 0..64usize {
            let r = blk * 512..(blk + 1) * 512;
            let zeroed = (2..5).contains(&blk) || blk == 10 || (20..24).contains(&blk) || blk == 63;
            if zeroed {
                assert_eq!(&got[r], &[0u8; 512][..], "block {blk}");
            } else {
                assert_eq!(&got[r.clone()], &data[r], "block {blk}");
            }
        }
        // Write Zeroes over more than 65536 blocks is split; on namespace 1 (8192 blocks) the
        // whole namespace works in one command.
        assert_eq!(run(&mut *ch, BdevOp::WriteZeroes, 0, BLOCKS, None).status, BdevStatus::Success);
        assert_eq!(disk(&emu, 0, 64 * 512), vec![0; 64 * 512]);
        // More than 256 ranges: two DSM commands.
        let data = pattern(512, 4);
        assert_eq!(run(&mut *ch, BdevOp::Write, 299, 1, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        assert_eq!(run(&mut *ch, BdevOp::Write, 300, 1, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        let ranges: Vec<(u64, u32)> = (0..300).map(|i| (i, 1)).collect();
        assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(&ranges))).status, BdevStatus::Success);
        assert_eq!(read(&mut *ch, 299, 1), vec![0; 512]);
        assert_eq!(read(&mut *ch, 300, 1), data);
    }

    #[test]
    fn compare_and_write_zeroes_are_emulated_without_oncs_support() {
        let (emu, b) = setup(2, small());
        let mut ch = b.open().unwrap();
        ch.native_compare = false;
        ch.native_write_zeroes = false;
        let ch: &mut dyn BdevChannel = &mut ch;
        let data = pattern(64 << 10, 8);
        assert_eq!(run(ch, BdevOp::Write, 0, 128, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        let before = emu.stats().io_commands;
        assert_eq!(run(ch, BdevOp::Compare, 0, 128, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        let mut other = data.clone();
        other[40000] ^= 4;
        assert_eq!(run(ch, BdevOp::Compare, 0, 128, Some(IoBuf::from(other))).status, BdevStatus::CompareMismatch);
        assert_eq!(emu.stats().io_commands - before, 8, "compares were 16 KiB reads");
        assert_eq!(run(ch, BdevOp::WriteZeroes, 8, 100, None).status, BdevStatus::Success);
        let got = read(ch, 0, 128);
        assert_eq!(&got[..8 * 512], &data[..8 * 512]);
        assert!(got[8 * 512..108 * 512].iter().all(|&x| x == 0));
        assert_eq!(&got[108 * 512..], &data[108 * 512..]);
    }

    #[test]
    fn fua_reaches_every_device_command_of_a_write() {
        // MDTS 2: 16 KiB commands, so a 64 KiB write is four commands, each with FUA.
        let (emu, b) = setup(2, small());
        let mut ch = b.open_channel().unwrap();
        let ch = &mut *ch;
        let data = pattern(64 << 10, 11);
        let fua = |op, off, nb, buf| BdevIo { op, offset_blocks: off, num_blocks: nb, buf, fua: true, tag: 0x77 };
        let submit = |ch: &mut dyn BdevChannel, io: BdevIo| {
            ch.submit(io);
            let c = wait(ch, 1).pop().unwrap();
            assert_eq!(c.status, BdevStatus::Success);
        };
        // Plain writes: no FUA on the device.
        assert_eq!(run(ch, BdevOp::Write, 0, 128, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        assert_eq!(emu.stats().fua_writes, 0);
        // Copied through command buffers, and in a lent DMA buffer (no copy): every command.
        let before = emu.stats();
        submit(ch, fua(BdevOp::Write, 200, 128, Some(IoBuf::from(data.clone()))));
        let w = lent(ch, &data);
        submit(ch, fua(BdevOp::Write, 400, 128, Some(w)));
        let after = emu.stats();
        assert_eq!(after.io_commands - before.io_commands, 8);
        assert_eq!(after.fua_writes - before.fua_writes, 8);
        assert_eq!(disk(&emu, 200 * 512, 64 << 10), data);
        assert_eq!(disk(&emu, 400 * 512, 64 << 10), data);
        // Write Zeroes with FUA (the emulator supports it natively).
        submit(ch, fua(BdevOp::WriteZeroes, 200, 16, None));
        assert_eq!(emu.stats().fua_writes, after.fua_writes + 1);
        assert_eq!(disk(&emu, 200 * 512, 16 * 512), vec![0; 16 * 512]);
        // FUA on a read means nothing to the bdev.
        submit(ch, fua(BdevOp::Read, 400, 8, Some(IoBuf::new(8 * 512))));
        assert_eq!(emu.stats().fua_writes, after.fua_writes + 1);
    }

    /// A buffer lent by the channel, filled with `data`.
    fn lent(ch: &mut dyn BdevChannel, data: &[u8]) -> IoBuf {
        let mut b = ch.alloc_buf(data.len()).expect("channel lends a DMA buffer");
        b.as_mut_slice().copy_from_slice(data);
        b
    }

    #[test]
    fn lent_buffers_move_data_in_place_with_no_copy() {
        // MDTS 2: 16 KiB commands; 32-entry queue: 31 command buffers, 7 kept back from lending.
        let (emu, b) = setup(2, small());
        let mut ch = b.open_channel().unwrap();
        let ch = &mut *ch;
        let data = pattern(12 * 512, 1);
        let w = lent(ch, &data);
        assert!(w.dma().is_some());
        assert_eq!(run(ch, BdevOp::Write, 7, 12, Some(w)).status, BdevStatus::Success);
        assert_eq!(disk(&emu, 7 * 512, data.len()), data, "the device wrote the lent buffer in place");
        let mut r = ch.alloc_buf(data.len()).unwrap();
        r.as_mut_slice().fill(0xee);
        let c = run(ch, BdevOp::Read, 7, 12, Some(r));
        assert_eq!(c.status, BdevStatus::Success);
        assert_eq!(c.buf.as_ref().unwrap().as_slice(), &data[..], "the device read into the lent buffer");
        drop(c);
        // 1 MiB: a large buffer, 64 commands of 16 KiB at offsets into it, still no copy.
        let big = pattern(1 << 20, 2);
        let before = emu.stats().io_commands;
        let w = lent(ch, &big);
        assert_eq!(run(ch, BdevOp::Write, 1000, 2048, Some(w)).status, BdevStatus::Success);
        assert_eq!(emu.stats().io_commands - before, 64);
        assert_eq!(disk(&emu, 1000 * 512, big.len()), big);
        let r = ch.alloc_buf(1 << 20).unwrap();
        let c = run(ch, BdevOp::Read, 1000, 2048, Some(r));
        assert_eq!(c.buf.as_ref().unwrap().as_slice(), &big[..]);
        drop(c);
        let mut other = big.clone();
        other[12345] ^= 1;
        let x = lent(ch, &other);
        assert_eq!(run(ch, BdevOp::Compare, 1000, 2048, Some(x)).status, BdevStatus::CompareMismatch);
        let x = lent(ch, &big);
        assert_eq!(run(ch, BdevOp::Compare, 1000, 2048, Some(x)).status, BdevStatus::Success);
        assert_eq!(b.copied_bytes(), 0, "nothing was copied");
        // A heap buffer still works, through a command buffer: counted.
        assert_eq!(read(ch, 7, 12), data);
        assert_eq!(b.copied_bytes(), data.len() as u64);
        // Lending stops short of the reserve, and beyond the largest I/O.
        let held: Vec<IoBuf> = std::iter::from_fn(|| ch.alloc_buf(512)).take(100).collect();
        assert_eq!(held.len(), 31 - 7);
        assert!(ch.alloc_buf((1 << 20) + 512).is_none());
        // With every lendable buffer held, heap-buffer I/O still goes through the reserve.
        assert_eq!(read(ch, 1000, 2048), big);
        drop(held);
        assert!(ch.alloc_buf(512).is_some(), "lent buffers came back");
    }

    #[test]
    fn bad_requests_complete_without_the_device() {
        let (emu, b) = setup(9, small());
        let mut ch = b.open_channel().unwrap();
        let before = emu.stats().io_commands;
        for op in [BdevOp::Read, BdevOp::Write, BdevOp::Compare] {
            assert_eq!(run(&mut *ch, op, BLOCKS - 1, 2, Some(IoBuf::new(1024))).status, BdevStatus::OutOfRange);
            assert_eq!(run(&mut *ch, op, u64::MAX, 2, Some(IoBuf::new(1024))).status, BdevStatus::OutOfRange);
            assert_eq!(run(&mut *ch, op, 0, 1, Some(IoBuf::new(511))).status, BdevStatus::InvalidArg);
            assert_eq!(run(&mut *ch, op, 0, 1, None).status, BdevStatus::InvalidArg);
        }
        assert_eq!(run(&mut *ch, BdevOp::WriteZeroes, BLOCKS, 1, None).status, BdevStatus::OutOfRange);
        assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(&[(BLOCKS, 1)]))).status, BdevStatus::OutOfRange);
        assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, None).status, BdevStatus::InvalidArg);
        assert_eq!(emu.stats().io_commands, before, "nothing reached the device");
    }

    #[test]
    fn injected_media_errors_map_to_read_and_write_errors() {
        let (emu, b) = setup(9, small());
        let mut ch = b.open_channel().unwrap();
        let data = pattern(8 * 512, 2);
        assert_eq!(run(&mut *ch, BdevOp::Write, 40, 8, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        emu.inject_media_error(1, 43, 1);
        let c = run(&mut *ch, BdevOp::Read, 40, 8, Some(IoBuf::new(8 * 512)));
        assert_eq!(c.status, BdevStatus::ReadError);
        assert!(c.buf.is_some(), "the buffer comes back on failure too");
        assert_eq!(read(&mut *ch, 40, 8), data, "the fault was one-shot");
        emu.inject_media_error(1, 44, 1);
        assert_eq!(run(&mut *ch, BdevOp::Write, 44, 1, Some(IoBuf::new(512))).status, BdevStatus::WriteError);
        assert_eq!(read(&mut *ch, 40, 8), data, "a failed write changed nothing");
        // A split I/O with one failing chunk fails as a whole; no buffer or slot leaks.
        let (emu, b) = setup(2, small());
        let mut ch = b.open_channel().unwrap();
        emu.inject_media_error(1, 100, 1);
        let c = run(&mut *ch, BdevOp::Read, 0, 512, Some(IoBuf::new(512 * 512)));
        assert_eq!(c.status, BdevStatus::ReadError);
        for _ in 0..3 {
            assert_eq!(run(&mut *ch, BdevOp::Read, 0, 512, Some(IoBuf::new(512 * 512))).status, BdevStatus::Success);
        }
    }

    #[test]
    fn status_mapping() {
        use BdevOp::*;
        let m = |s: Status, op| map_status(s, op);
        assert_eq!(m(Status::SUCCESS, Read), BdevStatus::Success);
        assert_eq!(m(Status::media(MediaStatus::UNRECOVERED_READ_ERROR).dnr(), Read), BdevStatus::ReadError);
        assert_eq!(m(Status::media(MediaStatus::WRITE_FAULT), Write), BdevStatus::WriteError);
        assert_eq!(m(Status::media(MediaStatus::COMPARE_FAILURE), Compare), BdevStatus::CompareMismatch);
        assert_eq!(m(Status::media(MediaStatus::GUARD_CHECK_ERROR), Read), BdevStatus::ReadError);
        assert_eq!(m(Status::media(MediaStatus::GUARD_CHECK_ERROR), Write), BdevStatus::WriteError);
        assert_eq!(m(Status::generic(GenericStatus::LBA_OUT_OF_RANGE), Read), BdevStatus::OutOfRange);
        assert_eq!(m(Status::generic(GenericStatus::CAPACITY_EXCEEDED), Write), BdevStatus::NoSpace);
        assert_eq!(m(Status::generic(GenericStatus::INVALID_OPCODE), Unmap), BdevStatus::Unsupported);
        assert_eq!(m(Status::generic(GenericStatus::INVALID_FIELD), Read), BdevStatus::InvalidArg);
        assert_eq!(m(Status::generic(GenericStatus::INTERNAL_ERROR), Flush), BdevStatus::WriteError);
        assert_eq!(m(Status::generic(GenericStatus::DATA_TRANSFER_ERROR), Read), BdevStatus::ReadError);
        assert_eq!(
            m(Status::command_specific(CommandSpecificStatus::ATTEMPTED_WRITE_TO_RO_RANGE), Write),
            BdevStatus::WriteError
        );
        assert_eq!(m(Status::from_raw(0x7ff), Read), BdevStatus::ReadError, "vendor specific");
    }

    #[test]
    fn many_ios_wait_for_slots_and_buffers_in_order() {
        // 8 command slots and 4 DMA buffers; 200 writes then 200 reads queued at once.
        let opts = NvmeBdevOpts { queue_entries: Some(9), num_bufs: Some(4), ..Default::default() };
        let (emu, b) = setup(9, opts);
        let mut ch = b.open_channel().unwrap();
        for i in 0..200u64 {
            ch.submit(BdevIo {
                op: BdevOp::Write,
                offset_blocks: i * 2,
                num_blocks: 2,
                buf: Some(IoBuf::from(pattern(1024, i as u8))),
                fua: false,
                tag: i,
            });
        }
        assert_eq!(ch.outstanding(), 200);
        let out = wait(&mut *ch, 200);
        for (i, c) in out.iter().enumerate() {
            assert_eq!((c.tag, c.status), (i as u64, BdevStatus::Success), "FIFO order");
        }
        for i in 0..200u64 {
            let buf = IoBuf::new(1024);
            ch.submit(BdevIo {
                op: BdevOp::Read,
                offset_blocks: i * 2,
                num_blocks: 2,
                buf: Some(buf),
                fua: false,
                tag: 1000 + i,
            });
        }
        let out = wait(&mut *ch, 200);
        for c in out {
            let i = c.tag - 1000;
            assert_eq!(c.status, BdevStatus::Success);
            assert_eq!(c.buf.unwrap().as_slice(), &pattern(1024, i as u8)[..], "read {i}");
        }
        assert_eq!(ch.outstanding(), 0);
        assert_eq!(disk(&emu, 199 * 1024, 1024), pattern(1024, 199));
    }

    #[test]
    fn batching_rings_once_per_poll() {
        let (emu, b) = setup(9, small());
        let mut ch = b.open_channel().unwrap();
        let before = emu.stats();
        for i in 0..16u64 {
            ch.submit(BdevIo {
                op: BdevOp::Write,
                offset_blocks: i,
                num_blocks: 1,
                buf: Some(IoBuf::from(vec![i as u8; 512])),
                fua: false,
                tag: i,
            });
        }
        assert_eq!(emu.stats().sq_doorbells, before.sq_doorbells, "submit only queues");
        let out = wait(&mut *ch, 16);
        assert!(out.iter().all(|c| c.status == BdevStatus::Success));
        let after = emu.stats();
        assert_eq!(after.io_commands - before.io_commands, 16);
        assert_eq!(after.sq_doorbells - before.sq_doorbells, 1, "one doorbell for the batch");
    }

    #[test]
    fn two_channels_on_two_threads() {
        let (emu, b) = setup(9, small());
        let b: Arc<dyn Bdev> = Arc::new(b);
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let b = b.clone();
                s.spawn(move || {
                    let mut ch = b.open_channel().unwrap();
                    for i in 0..64u64 {
                        let lba = t * 2048 + i * 8;
                        ch.submit(BdevIo {
                            op: BdevOp::Write,
                            offset_blocks: lba,
                            num_blocks: 8,
                            buf: Some(IoBuf::from(pattern(4096, (t * 64 + i) as u8))),
                            fua: false,
                            tag: i,
                        });
                    }
                    assert!(wait(&mut *ch, 64).iter().all(|c| c.status == BdevStatus::Success));
                    for i in 0..64u64 {
                        let lba = t * 2048 + i * 8;
                        assert_eq!(read(&mut *ch, lba, 8), pattern(4096, (t * 64 + i) as u8));
                    }
                });
            }
        });
        for t in 0..2u64 {
            for i in 0..64u64 {
                let lba = t * 2048 + i * 8;
                assert_eq!(disk(&emu, lba * 512, 4096), pattern(4096, (t * 64 + i) as u8));
            }
        }
    }

    /// An opaque passthrough command (the target could not check its length) claiming its
    /// buffer's length.
    fn passthru(ch: &mut dyn BdevChannel, opcode: u8, nsid: u32, buf: Option<IoBuf>, h2c: bool) -> BdevCompletion {
        let claim = buf.as_ref().map_or(0, |b| b.len());
        passthru_claiming(ch, opcode, nsid, buf, h2c, false, claim)
    }

    /// A vendor command whose CDW10 claims `claim` bytes, whatever `buf` holds.
    fn passthru_claiming(
        ch: &mut dyn BdevChannel,
        opcode: u8,
        nsid: u32,
        buf: Option<IoBuf>,
        h2c: bool,
        exact_len: bool,
        claim: usize,
    ) -> BdevCompletion {
        let mut sqe = Sqe { opcode, flags: 0x40, ..Default::default() };
        sqe.nsid.set(nsid);
        sqe.cid.set(0x1234);
        sqe.dptr = [0xee; 16];
        sqe.cdw10.set(claim as u32 / 4);
        ch.submit_passthru(PassthruIo { sqe, buf, host_to_ctrl: h2c, exact_len, tag: 0x99 })
            .expect("NVMe channels pass through");
        let mut out = wait(ch, 1);
        assert_eq!(ch.outstanding(), 0);
        let c = out.pop().unwrap();
        assert_eq!(c.tag, 0x99);
        c
    }

    #[test]
    fn passthrough_moves_data_and_returns_the_device_status_and_dw0() {
        use nvme_driver::emulator::{VENDOR_LOAD, VENDOR_STORE, VENDOR_STORE_DW0};
        let (_emu, b) = setup(2, small());
        assert!(b.supports_passthru());
        let mut ch = b.open_channel().unwrap();
        // Host NSID 7 (the target's numbering) becomes the device's NSID 1; the SGL flags and
        // pointer are replaced by PRPs.
        let data = pattern(8192, 6);
        let c = passthru(&mut *ch, VENDOR_STORE, 7, Some(IoBuf::from(data.clone())), true);
        assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: VENDOR_STORE_DW0 });
        assert_eq!(c.buf.unwrap().as_slice(), &data[..]);
        let c = passthru(&mut *ch, VENDOR_LOAD, 7, Some(IoBuf::new(8192)), false);
        assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: 8192 });
        assert_eq!(c.buf.unwrap().as_slice(), &data[..], "data came back from the device");
        // No data.
        let c = passthru(&mut *ch, VENDOR_STORE, 1, None, true);
        assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: VENDOR_STORE_DW0 });
        // An opcode the device does not know: its status, unchanged.
        let c = passthru(&mut *ch, 0xC5, 1, None, false);
        assert_eq!(c.status, BdevStatus::Nvme { status: Status::generic(GenericStatus::INVALID_OPCODE).dnr(), dw0: 0 });
        // More than one DMA buffer (16 KiB with MDTS 2): refused without the device.
        let c = passthru(&mut *ch, VENDOR_STORE, 1, Some(IoBuf::new(32 << 10)), true);
        assert_eq!(c.status, BdevStatus::InvalidArg);
        // Regular I/O still works on the same channel.
        assert_eq!(run(&mut *ch, BdevOp::Write, 0, 1, Some(IoBuf::from(vec![3; 512]))).status, BdevStatus::Success);
    }

    #[test]
    fn exact_length_passthrough_in_a_lent_buffer_may_exceed_a_command_buffer() {
        use nvme_driver::emulator::{VENDOR_LOAD, VENDOR_STORE, VENDOR_STORE_DW0};
        // MDTS 9 (2 MiB): 128 KiB command buffers, but a lent 256 KiB large buffer is one command
        // when the target checked the command's length (`exact_len`).
        let (emu, b) = setup(9, small());
        let mut ch = b.open_channel().unwrap();
        let ch = &mut *ch;
        let data = pattern(256 << 10, 8);
        let w = lent(ch, &data);
        let c = passthru_claiming(ch, VENDOR_STORE, 1, Some(w), true, true, 256 << 10);
        assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: VENDOR_STORE_DW0 });
        drop(c);
        let r = ch.alloc_buf(256 << 10).unwrap();
        let c = passthru_claiming(ch, VENDOR_LOAD, 1, Some(r), false, true, 256 << 10);
        assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: 256 << 10 });
        assert!(c.buf.as_ref().unwrap().as_slice() == &data[..], "data came back in place");
        assert_eq!(b.copied_bytes(), 0);
        // The same size in a heap buffer still has to fit a command buffer.
        let c = passthru_claiming(ch, VENDOR_STORE, 1, Some(IoBuf::new(256 << 10)), true, true, 256 << 10);
        assert_eq!(c.status, BdevStatus::InvalidArg);
        // Opaque (unchecked length): through the passthrough buffer, lent or not.
        let c = passthru(ch, VENDOR_STORE, 1, Some(IoBuf::from(data.clone())), true);
        assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: VENDOR_STORE_DW0 });
        let r = ch.alloc_buf(256 << 10).unwrap();
        let c = passthru(ch, VENDOR_LOAD, 1, Some(r), false);
        assert!(c.buf.as_ref().unwrap().as_slice() == &data[..]);
        assert_eq!(b.copied_bytes(), 512 << 10, "both ways copied");
        assert_eq!(emu.dma_guard().violation_count(), 0, "{:?}", emu.dma_guard().violations());
    }

    /// Opaque passthrough (passthrough trusting the hosts): for every host buffer length, both
    /// directions and any claimed length up to the device's maximum transfer, the device touches
    /// only memory of that command; honest claims move the right data.
    #[test]
    fn opaque_passthrough_stays_in_its_own_memory_whatever_it_claims() {
        use nvme_driver::emulator::{VENDOR_LOAD, VENDOR_STORE};
        for mdts in [2u8, 9] {
            let (emu, b) = setup(mdts, small());
            let max = 4096usize << mdts;
            let mut ch = b.open_channel().unwrap();
            let ch = &mut *ch;
            // Other commands' memory the device must not reach: a lent buffer full of 0xaa.
            let victim = lent(ch, &vec![0xaa; 8192]);
            for len in [0usize, 512, 4096, 4100, 6000, 8192, 12288, 64 << 10] {
                let len = len.min(max);
                for claim in [0, len / 2, len, len + 4096, 3 * len + 8192, max] {
                    let claim = claim.min(max) & !3;
                    for (h2c, opcode) in [(true, VENDOR_STORE), (false, VENDOR_LOAD)] {
                        let data = pattern(len, claim as u8);
                        let buf = (len > 0).then(|| if h2c { IoBuf::from(data.clone()) } else { IoBuf::new(len) });
                        let c = passthru_claiming(ch, opcode, 1, buf, h2c, false, claim);
                        if h2c && (4097..=4100).contains(&len) {
                            assert_eq!(c.status, BdevStatus::InvalidArg, "no safe layout for {len} bytes");
                            continue;
                        }
                        assert!(matches!(c.status, BdevStatus::Nvme { .. }), "{len}/{claim}: {:?}", c.status);
                        if h2c && claim == len && len > 0 {
                            // Read it back honestly: the device got exactly the host's bytes.
                            let c = passthru_claiming(ch, VENDOR_LOAD, 1, Some(IoBuf::new(len)), false, false, len);
                            assert!(c.buf.unwrap().as_slice() == &data[..], "{len} bytes round trip");
                        }
                    }
                }
            }
            assert!(victim.as_slice().iter().all(|&x| x == 0xaa), "the other buffer is untouched");
            let g = emu.dma_guard();
            assert!(g.is_armed() && g.checked() > 100, "checked {}", g.checked());
            assert_eq!(g.violation_count(), 0, "mdts {mdts}: {:?}", g.violations());
        }
    }

    #[test]
    fn controller_failure_fails_io_instead_of_hanging() {
        let (emu, b) = setup(9, small());
        let mut ch = b.open_channel().unwrap();
        assert_eq!(run(&mut *ch, BdevOp::Write, 0, 1, Some(IoBuf::new(512))).status, BdevStatus::Success);
        b.controller().reset().expect("reset");
        let c = run(&mut *ch, BdevOp::Read, 0, 1, Some(IoBuf::new(512)));
        assert_eq!(c.status, BdevStatus::ReadError);
        assert_eq!(run(&mut *ch, BdevOp::Write, 0, 1, Some(IoBuf::new(512))).status, BdevStatus::WriteError);
        drop(ch);
        // A fresh channel after the reset works.
        let mut ch = b.open_channel().unwrap();
        assert_eq!(run(&mut *ch, BdevOp::Write, 1, 1, Some(IoBuf::from(vec![7; 512]))).status, BdevStatus::Success);
        assert_eq!(disk(&emu, 512, 512), vec![7; 512]);
    }
}
