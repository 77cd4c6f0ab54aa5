//! The channel: one hardware queue pair and its DMA pools per poll group, the in-flight tables,
//! the waiting FIFO, and the `BdevChannel` entry points (submit, poll, lend a buffer,
//! passthrough). Turning an I/O into NVMe commands is in `issue.rs`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nvme_driver::{DmaAllocator, DmaPool, IoQpair, PoolBuf};

use super::emulate::compare_mismatch;
use super::issue::Step;
use super::status::{failure, map_status};
use super::{check_io, BdevChannel, BdevCompletion, BdevIo, BdevOp, BdevStatus, IoBuf, PassthruIo};
use crate::spec::{Sqe, CDW12_FUA};

/// A bdev I/O being executed as one or more NVMe commands.
pub(super) struct Io {
    pub(super) tag: u64,
    pub(super) op: BdevOp,
    pub(super) offset_blocks: u64,
    pub(super) buf: Option<IoBuf>,
    /// CDW12 bits 31:16 for the device's commands: FUA when the host asked for it.
    pub(super) cdw12_flags: u32,
    /// Units issued so far and in all: blocks (Read/Write/Compare/WriteZeroes), ranges (Unmap),
    /// or 1 (Flush).
    pub(super) next: u64,
    pub(super) total: u64,
    /// NVMe commands submitted and not yet completed.
    pub(super) inflight: u32,
    /// First failure wins.
    pub(super) status: BdevStatus,
    /// A passthrough command (sanitized: NSID, flags, pointers); `op` is Write when its data
    /// goes to the device, Read otherwise.
    pub(super) passthru: Option<Sqe>,
    /// A passthrough command whose length the target could not check: the PRPs cover the
    /// device's maximum transfer.
    pub(super) opaque: bool,
    /// `buf` is a DMA buffer this channel lent: commands point the device at it directly.
    pub(super) direct: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Copy the DMA buffer into the IoBuf on success.
    Read,
    /// Read issued for a Compare the controller does not support: compare on completion.
    CompareByRead,
    /// Nothing to copy back.
    Other,
}

/// One NVMe command in flight; its index in `cmds` is the driver token.
pub(super) struct Cmd {
    pub(super) io: u32,
    pub(super) dma: Option<PoolBuf>,
    /// Byte range of the IoBuf this command covers (data commands).
    pub(super) off: usize,
    pub(super) len: usize,
    pub(super) kind: Kind,
}

pub(super) struct NvmeChannel {
    // Declared first so it drops first: the SQ/CQ are deleted on the controller before any DMA
    // buffer still referenced by an outstanding command goes back to the pool.
    pub(super) qp: IoQpair,
    pub(super) pool: DmaPool,
    /// Buffers of the target's largest I/O, lent to transports only.
    pub(super) large: Option<DmaPool>,
    pub(super) dma: Arc<DmaAllocator>,
    /// One buffer of the device's maximum transfer for opaque passthrough (see the module
    /// docs), allocated on first use.
    pub(super) opaque: Option<DmaPool>,
    /// Command buffers never lent out, so the copy path always makes progress.
    pub(super) lend_reserve: usize,
    pub(super) copied: Arc<AtomicU64>,
    pub(super) nsid: u32,
    pub(super) block_size: u32,
    pub(super) num_blocks: u64,
    pub(super) buf_blocks: u64,
    pub(super) native_compare: bool,
    pub(super) native_write_zeroes: bool,
    pub(super) dsm: bool,
    pub(super) ios: Vec<Option<Io>>,
    pub(super) free_ios: Vec<u32>,
    pub(super) cmds: Vec<Option<Cmd>>,
    pub(super) free_cmds: Vec<u32>,
    /// I/Os with commands still to issue, oldest first.
    pub(super) waiting: VecDeque<u32>,
    /// Completions decided without the device (validation, dead channel).
    pub(super) done: VecDeque<BdevCompletion>,
    /// DMA buffers the device may still write (timed-out commands, controller failure).
    pub(super) quarantine: Vec<PoolBuf>,
    /// The queue pair failed (controller fatal, reset or shut down): every I/O fails.
    pub(super) dead: bool,
    pub(super) name: String,
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
                        (Kind::CompareByRead, Some(d), Some(b))
                            if compare_mismatch(b, cmd.off, cmd.len, d) && io.status == BdevStatus::Success =>
                        {
                            io.status = BdevStatus::CompareMismatch;
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
