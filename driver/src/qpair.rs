//! An I/O queue pair owned by one thread: submit NVM or raw commands with a caller token, ring the
//! doorbell once per batch, poll completions by phase tag. No locks on the hot path; `Send` so it
//! can move to its thread, not `Sync` so it cannot be shared.

use crate::controller::Shared;
use crate::dma::{DmaRegion, PAGE_SIZE};
use crate::error::{Error, Result};
use crate::rings::{CompQueue, SubQueue};
use crate::spec::{reg, Cqe, Csts, GenericStatus, NvmOpcode, Sqe, StatusCodeType};
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

/// Polls between checks of command deadlines and CSTS.CFS.
const CHECK_INTERVAL: u32 = 1024;

#[derive(Clone, Copy, Default)]
struct Slot {
    token: u64,
    busy: bool,
    /// Abort was sent for it.
    aborted: bool,
    /// Reported to the caller as timed out; its CID stays reserved until the device completes it.
    lost: bool,
    deadline: Option<Instant>,
}

/// An I/O submission/completion queue pair. Created by
/// [`Controller::alloc_io_qpair`](crate::Controller::alloc_io_qpair); deleted on the controller
/// when dropped.
pub struct IoQpair {
    shared: Arc<Shared>,
    generation: u64,
    qid: u16,
    sq: SubQueue,
    cq: CompQueue,
    slots: Vec<Slot>,
    free: Vec<u16>,
    /// One PRP list page per slot (also the DSM range buffer), indexed by CID.
    prp_lists: Vec<DmaRegion>,
    /// Per slot: leading entries of its list page that may hold addresses (see `prp::build`).
    list_written: Vec<usize>,
    namespaces: Vec<(u32, u32)>,
    max_transfer: usize,
    polls: u32,
    _not_sync: PhantomData<Cell<()>>,
}

impl IoQpair {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shared: Arc<Shared>,
        generation: u64,
        qid: u16,
        sq: SubQueue,
        cq: CompQueue,
        prp_lists: DmaRegion,
        namespaces: Vec<(u32, u32)>,
        max_transfer: usize,
    ) -> Self {
        let depth = sq.entries() as usize - 1;
        let mut rest = prp_lists;
        let prp_lists = (0..depth).map(|_| rest.split_front(PAGE_SIZE)).collect();
        IoQpair {
            shared,
            generation,
            qid,
            sq,
            cq,
            slots: vec![Slot::default(); depth],
            free: (0..depth as u16).rev().collect(),
            prp_lists,
            list_written: vec![0; depth],
            namespaces,
            max_transfer,
            polls: 0,
            _not_sync: PhantomData,
        }
    }

    pub fn qid(&self) -> u16 {
        self.qid
    }
    /// Commands that can be outstanding at once.
    pub fn depth(&self) -> usize {
        self.slots.len()
    }
    /// Commands submitted and not yet completed.
    pub fn outstanding(&self) -> usize {
        self.slots.len() - self.free.len()
    }
    /// Largest data transfer of one command.
    pub fn max_transfer_bytes(&self) -> usize {
        self.max_transfer
    }
    /// Block size of namespace `nsid`, if active.
    pub fn block_size(&self, nsid: u32) -> Option<u32> {
        self.namespaces.iter().find(|n| n.0 == nsid).map(|n| n.1)
    }

    fn check_alive(&self) -> Result<()> {
        if self.shared.is_current(self.generation) {
            Ok(())
        } else {
            Err(Error::QpairInvalidated)
        }
    }

    fn take_slot(&mut self, token: u64) -> Result<u16> {
        self.check_alive()?;
        let cid = self.free.pop().ok_or(Error::QueueFull)?;
        let deadline = self.shared.opts.io_timeout.map(|t| Instant::now() + t);
        self.slots[cid as usize] = Slot { token, busy: true, aborted: false, lost: false, deadline };
        Ok(cid)
    }

    fn release_slot(&mut self, cid: u16) {
        self.slots[cid as usize].busy = false;
        self.free.push(cid);
    }

    fn push(&mut self, mut sqe: Sqe, cid: u16) {
        sqe.cid.set(cid);
        self.sq.push(&sqe);
    }

    #[cfg(any(test, feature = "dma-guard"))]
    fn list_page(&self, cid: u16) -> &DmaRegion {
        &self.prp_lists[cid as usize]
    }

    /// PRPs for `len` bytes at `off` of `buf` in slot `cid`'s list page; with the `dma-guard`
    /// feature, the emulated controller's guard learns what the command was lent.
    fn prps(&mut self, cid: u16, buf: &DmaRegion, off: usize, len: usize) -> Result<(u64, u64)> {
        let list = &self.prp_lists[cid as usize];
        let written = &mut self.list_written[cid as usize];
        let (p1, p2) = crate::prp::build(buf, off, len, list, written)?;
        #[cfg(any(test, feature = "dma-guard"))]
        {
            // A list is used when the transfer goes past the page after PRP1's.
            let entries = if len > 2 * PAGE_SIZE - p1 as usize % PAGE_SIZE { *written } else { 0 };
            self.lend(cid, Some((buf, off, len)), entries);
        }
        Ok((p1, p2))
    }

    /// Tell the emulated controller's DMA guard that command `cid` may touch `data` and the
    /// first `list_entries` entries of its list page, nothing else.
    #[cfg(any(test, feature = "dma-guard"))]
    fn lend(&self, cid: u16, data: Option<(&DmaRegion, usize, usize)>, list_entries: usize) {
        let Some(g) = self.shared.guard.get() else { return };
        let mut lent = crate::emulator::guard::Lent::default();
        if let Some((buf, off, len)) = data {
            let mut o = off;
            while o < off + len {
                let a = buf.iova_at(o);
                let n = (PAGE_SIZE - a as usize % PAGE_SIZE).min(off + len - o);
                match lent.data.last_mut() {
                    Some(last) if last.1 == a => last.1 += n as u64,
                    _ => lent.data.push((a, a + n as u64)),
                }
                o += n;
            }
        }
        if list_entries > 0 {
            let l = self.list_page(cid).iova();
            lent.list.push((l, l + list_entries as u64 * 8));
        }
        g.lend(self.qid, cid, lent);
    }

    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::too_many_arguments)]
    fn rw(
        &mut self,
        op: NvmOpcode,
        nsid: u32,
        lba: u64,
        blocks: u32,
        buf: &DmaRegion,
        off: usize,
        cdw12_flags: u32,
        token: u64,
    ) -> Result<()> {
        let bs = self.block_size(nsid).ok_or_else(|| Error::InvalidArgument(format!("no namespace {nsid}")))?;
        if blocks == 0 || blocks > 0x1_0000 {
            return Err(Error::InvalidArgument(format!("{blocks} blocks in one command")));
        }
        let len = blocks as usize * bs as usize;
        if len > self.max_transfer {
            return Err(Error::TransferTooLarge { len, max: self.max_transfer });
        }
        if off.checked_add(len).is_none_or(|end| end > buf.len()) {
            return Err(Error::InvalidArgument(format!("{len} byte transfer at {off} of a {} byte buffer", buf.len())));
        }
        let cid = self.take_slot(token)?;
        let (prp1, prp2) = match self.prps(cid, buf, off, len) {
            Ok(p) => p,
            Err(e) => {
                self.release_slot(cid);
                return Err(e);
            }
        };
        let mut sqe = Sqe { opcode: op as u8, ..Default::default() };
        sqe.nsid.set(nsid);
        sqe.set_slba(lba);
        sqe.cdw12.set((blocks - 1) | (cdw12_flags & 0xffff_0000));
        sqe.set_prps(prp1, prp2);
        self.push(sqe, cid);
        Ok(())
    }

    /// Queue a Read of `blocks` blocks at `lba` into the start of `buf`.
    pub fn read(&mut self, nsid: u32, lba: u64, blocks: u32, buf: &DmaRegion, token: u64) -> Result<()> {
        self.rw(NvmOpcode::Read, nsid, lba, blocks, buf, 0, 0, token)
    }
    /// Queue a Write of `blocks` blocks at `lba` from the start of `buf`.
    pub fn write(&mut self, nsid: u32, lba: u64, blocks: u32, buf: &DmaRegion, token: u64) -> Result<()> {
        self.rw(NvmOpcode::Write, nsid, lba, blocks, buf, 0, 0, token)
    }
    /// Queue a Compare of `blocks` blocks at `lba` with the start of `buf`.
    pub fn compare(&mut self, nsid: u32, lba: u64, blocks: u32, buf: &DmaRegion, token: u64) -> Result<()> {
        self.rw(NvmOpcode::Compare, nsid, lba, blocks, buf, 0, 0, token)
    }
    /// Queue a Read, Write or Compare whose data is `blocks` blocks at byte `off` of `buf`
    /// (one piece of a larger buffer split into several commands).
    #[allow(clippy::too_many_arguments)]
    pub fn rw_at(
        &mut self,
        op: NvmOpcode,
        nsid: u32,
        lba: u64,
        blocks: u32,
        buf: &DmaRegion,
        off: usize,
        token: u64,
    ) -> Result<()> {
        self.rw_at_flags(op, nsid, lba, blocks, buf, off, 0, token)
    }
    /// [`IoQpair::rw_at`] with the command's CDW12 bits 31:16 set from `cdw12_flags` (Limited
    /// Retry, Force Unit Access [`crate::spec::CDW12_FUA`], ...); bits 15:0 (NLB) are the
    /// driver's.
    #[allow(clippy::too_many_arguments)]
    pub fn rw_at_flags(
        &mut self,
        op: NvmOpcode,
        nsid: u32,
        lba: u64,
        blocks: u32,
        buf: &DmaRegion,
        off: usize,
        cdw12_flags: u32,
        token: u64,
    ) -> Result<()> {
        match op {
            NvmOpcode::Read | NvmOpcode::Write | NvmOpcode::Compare => {
                self.rw(op, nsid, lba, blocks, buf, off, cdw12_flags, token)
            }
            _ => Err(Error::InvalidArgument(format!("{op:?} is not a data transfer"))),
        }
    }

    /// Queue a Flush.
    pub fn flush(&mut self, nsid: u32, token: u64) -> Result<()> {
        let cid = self.take_slot(token)?;
        #[cfg(any(test, feature = "dma-guard"))]
        self.lend(cid, None, 0);
        let mut sqe = Sqe { opcode: NvmOpcode::Flush as u8, ..Default::default() };
        sqe.nsid.set(nsid);
        self.push(sqe, cid);
        Ok(())
    }

    /// Queue a Write Zeroes of `blocks` (1..=65536) blocks at `lba`.
    pub fn write_zeroes(&mut self, nsid: u32, lba: u64, blocks: u32, token: u64) -> Result<()> {
        self.write_zeroes_flags(nsid, lba, blocks, 0, token)
    }
    /// [`IoQpair::write_zeroes`] with CDW12 bits 31:16 from `cdw12_flags` (e.g. FUA).
    pub fn write_zeroes_flags(&mut self, nsid: u32, lba: u64, blocks: u32, cdw12_flags: u32, token: u64) -> Result<()> {
        if blocks == 0 || blocks > 0x1_0000 {
            return Err(Error::InvalidArgument(format!("{blocks} blocks in one command")));
        }
        let cid = self.take_slot(token)?;
        #[cfg(any(test, feature = "dma-guard"))]
        self.lend(cid, None, 0);
        let mut sqe = Sqe { opcode: NvmOpcode::WriteZeroes as u8, ..Default::default() };
        sqe.nsid.set(nsid);
        sqe.set_slba(lba);
        sqe.cdw12.set((blocks - 1) | (cdw12_flags & 0xffff_0000));
        self.push(sqe, cid);
        Ok(())
    }

    /// Queue a Dataset Management deallocate (trim) of up to 256 `(lba, blocks)` ranges.
    pub fn deallocate(&mut self, nsid: u32, ranges: &[(u64, u32)], token: u64) -> Result<()> {
        if ranges.is_empty() || ranges.len() > 256 {
            return Err(Error::InvalidArgument(format!("{} DSM ranges", ranges.len())));
        }
        let cid = self.take_slot(token)?;
        let page = &self.prp_lists[cid as usize];
        let mut data = [0u8; PAGE_SIZE];
        for (i, &(lba, blocks)) in ranges.iter().enumerate() {
            // Range: context attributes (4), length in blocks (4), starting LBA (8).
            data[i * 16 + 4..i * 16 + 8].copy_from_slice(&blocks.to_le_bytes());
            data[i * 16 + 8..i * 16 + 16].copy_from_slice(&lba.to_le_bytes());
        }
        page.write(0, &data[..ranges.len() * 16]);
        // The ranges are host-chosen numbers: a later, shorter PRP list must clear them.
        let written = &mut self.list_written[cid as usize];
        *written = (*written).max(ranges.len() * 2);
        #[cfg(any(test, feature = "dma-guard"))]
        self.lend(cid, Some((page, 0, ranges.len() * 16)), 0);
        let mut sqe = Sqe { opcode: NvmOpcode::DatasetManagement as u8, ..Default::default() };
        sqe.nsid.set(nsid);
        sqe.cdw10.set(ranges.len() as u32 - 1);
        sqe.cdw11.set(1 << 2); // AD: deallocate
        sqe.set_prps(page.iova(), 0);
        self.push(sqe, cid);
        Ok(())
    }

    /// Queue a raw command (passthrough). The CID is replaced; with `data`, PRPs describe
    /// `len` bytes at `off` of the buffer.
    pub fn submit_raw(&mut self, mut sqe: Sqe, data: Option<(&DmaRegion, usize, usize)>, token: u64) -> Result<()> {
        let cid = self.take_slot(token)?;
        if let Some((buf, off, len)) = data {
            if len > self.max_transfer {
                self.release_slot(cid);
                return Err(Error::TransferTooLarge { len, max: self.max_transfer });
            }
            match self.prps(cid, buf, off, len) {
                Ok((p1, p2)) => sqe.set_prps(p1, p2),
                Err(e) => {
                    self.release_slot(cid);
                    return Err(e);
                }
            }
        } else {
            // No data: no address of the caller's either.
            sqe.set_prps(0, 0);
            #[cfg(any(test, feature = "dma-guard"))]
            self.lend(cid, None, 0);
        }
        self.push(sqe, cid);
        Ok(())
    }

    /// Queue a raw command whose transfer length only the device knows (passthrough trusting
    /// the host). `buf`, of at least [`prp::opaque_buf_size`](crate::prp::opaque_buf_size) bytes
    /// and this command's alone, holds the host's `len` bytes at
    /// [`prp::opaque_offset`](crate::prp::opaque_offset). Whatever length up to the maximum
    /// transfer the device uses, the PRPs lead it only into `buf` and this slot's list page: for
    /// data within two pages, PRP2 is `buf`'s second page, filled as a list of the pages after
    /// it (data for a short transfer, a list for a long one); otherwise a list of the whole
    /// maximum transfer.
    pub fn submit_raw_opaque(
        &mut self,
        mut sqe: Sqe,
        buf: &DmaRegion,
        len: usize,
        host_to_ctrl: bool,
        token: u64,
    ) -> Result<()> {
        let max = self.max_transfer;
        let off = crate::prp::opaque_offset(len, host_to_ctrl)
            .filter(|_| len <= max && buf.len() >= crate::prp::opaque_buf_size(max))
            .ok_or_else(|| {
                Error::InvalidArgument(format!("no opaque layout for {len} bytes in {} bytes", buf.len()))
            })?;
        let cid = self.take_slot(token)?;
        let (p1, p2) = if off == 0 && len <= 2 * PAGE_SIZE {
            let n = max.div_ceil(PAGE_SIZE).saturating_sub(1);
            let mut entries = [0u8; PAGE_SIZE];
            for (i, e) in entries.chunks_exact_mut(8).take(n).enumerate() {
                e.copy_from_slice(&buf.iova_at((2 + i) * PAGE_SIZE).to_le_bytes());
            }
            // Host-to-controller data, if any, is all in the first page here.
            buf.write(PAGE_SIZE, &entries[..n * 8]);
            (buf.iova(), buf.iova_at(PAGE_SIZE))
        } else {
            match self.prps(cid, buf, off, max) {
                Ok(p) => p,
                Err(e) => {
                    self.release_slot(cid);
                    return Err(e);
                }
            }
        };
        sqe.set_prps(p1, p2);
        #[cfg(any(test, feature = "dma-guard"))]
        if let Some(g) = self.shared.guard.get() {
            // All of `buf` and the list page, as data or as lists.
            let l = self.list_page(cid);
            let ranges = vec![(buf.iova(), buf.iova() + buf.len() as u64), (l.iova(), l.iova() + PAGE_SIZE as u64)];
            g.lend(self.qid, cid, crate::emulator::guard::Lent { data: ranges.clone(), list: ranges });
        }
        self.push(sqe, cid);
        Ok(())
    }

    /// Write the SQ tail doorbell for everything queued since the last ring (at most once).
    pub fn ring(&mut self) {
        self.sq.ring(&*self.shared.regs);
    }

    /// Ring if needed, then hand up to `max` completions to `f(token, result)`: `Ok(cqe)` on
    /// success, [`Error::Nvme`] with the status on failure, [`Error::Timeout`] for a command that
    /// was aborted after its timeout. Writes the CQ head doorbell once. Returns how many
    /// completions were handed over.
    pub fn poll(&mut self, max: usize, mut f: impl FnMut(u64, Result<Cqe>)) -> Result<usize> {
        self.check_alive()?;
        self.ring();
        let mut n = 0;
        let mut consumed = false;
        while n < max {
            let Some(cqe) = self.cq.peek() else { break };
            self.cq.advance();
            consumed = true;
            self.sq.set_head(cqe.sqhd.get());
            let cid = cqe.cid.get();
            let Some(slot) = self.slots.get(cid as usize).copied().filter(|s| s.busy) else {
                log::warn!("qpair {}: completion for unknown cid {cid}", self.qid);
                continue;
            };
            self.release_slot(cid);
            if slot.lost {
                continue;
            }
            n += 1;
            let status = cqe.status();
            let result = if status.is_success() {
                Ok(cqe)
            } else if slot.aborted
                && status.sct() == StatusCodeType::Generic as u8
                && status.sc() == GenericStatus::ABORTED_BY_REQUEST
            {
                Err(Error::Timeout { cid })
            } else {
                Err(Error::Nvme { status, cqe })
            };
            f(slot.token, result);
        }
        if consumed {
            self.cq.ring_head(&*self.shared.regs);
        }
        self.polls = self.polls.wrapping_add(1);
        if self.polls.is_multiple_of(CHECK_INTERVAL) && self.outstanding() > 0 {
            n += self.check_health(&mut f)?;
        }
        Ok(n)
    }

    /// Abort commands past their deadline; give up on those still stuck a timeout after the abort.
    fn check_health(&mut self, f: &mut impl FnMut(u64, Result<Cqe>)) -> Result<usize> {
        if Csts(self.shared.regs.read32(reg::CSTS as usize)).cfs() {
            return Err(Error::ControllerFatal);
        }
        let Some(timeout) = self.shared.opts.io_timeout else { return Ok(0) };
        let now = Instant::now();
        let mut reported = 0;
        for cid in 0..self.slots.len() {
            let slot = self.slots[cid];
            if !slot.busy || slot.lost || slot.deadline.is_none_or(|d| d > now) {
                continue;
            }
            if !slot.aborted {
                log::warn!("qpair {}: cid {cid} timed out, aborting", self.qid);
                let shared = self.shared.clone();
                let mut admin = shared.lock_admin();
                if let Err(e) = shared.admin_cmd(&mut admin, crate::admin::abort(self.qid, cid as u16)) {
                    log::warn!("abort of cid {cid} failed: {e}");
                }
                self.slots[cid].aborted = true;
                self.slots[cid].deadline = Some(now + timeout);
            } else {
                log::error!("qpair {}: cid {cid} did not complete after abort", self.qid);
                self.slots[cid].lost = true;
                reported += 1;
                f(slot.token, Err(Error::Timeout { cid: cid as u16 }));
            }
        }
        Ok(reported)
    }
}

impl Drop for IoQpair {
    fn drop(&mut self) {
        let shared = self.shared.clone();
        let mut admin = shared.lock_admin();
        if !shared.is_current(self.generation) {
            return;
        }
        if self.outstanding() > 0 {
            log::warn!("qpair {} dropped with {} commands outstanding", self.qid, self.outstanding());
        }
        for sqe in [crate::admin::delete_io_sq(self.qid), crate::admin::delete_io_cq(self.qid)] {
            if let Err(e) = shared.admin_cmd(&mut admin, sqe) {
                log::warn!("deleting I/O queue {}: {e}", self.qid);
            }
        }
        if let Some(used) = admin.qid_used.get_mut(self.qid as usize) {
            *used = false;
        }
    }
}
