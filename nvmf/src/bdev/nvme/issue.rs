//! Issuing: the next NVMe command of an I/O, split at the channel's DMA buffer size (Read, Write,
//! Compare, emulated Write Zeroes), the Write Zeroes NLB limit or the DSM range limit, and
//! passthrough commands (one command each).

use std::sync::atomic::Ordering;

use nvme_driver::DmaPool;

use super::channel::{Cmd, Kind, NvmeChannel};
use super::emulate::write_zeroes_by_write;
use super::status::failure;
use super::{BdevOp, BdevStatus, IoBuf, MAX_DSM_RANGES, MAX_WZ_BLOCKS};
use crate::spec::NvmOpcode;

pub(super) enum Step {
    /// Issued one command; more remain.
    More,
    /// Every command of the I/O is issued (or issuing stopped on an error).
    AllIssued,
    /// No command slot or DMA buffer free: try again after completions.
    Blocked,
}

impl NvmeChannel {
    /// Issue the next command of I/O `idx`.
    pub(super) fn issue(&mut self, idx: u32) -> Step {
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
                            // Emulated Compare (emulate.rs): read, compare on completion.
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
                    (
                        blocks,
                        write_zeroes_by_write(&mut self.qp, d, bs, nsid, lba, blocks as u32, io.cdw12_flags, token),
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
                    for (dst, r) in ranges.iter_mut().zip(crate::bdev::dsm_ranges(src)) {
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
}
