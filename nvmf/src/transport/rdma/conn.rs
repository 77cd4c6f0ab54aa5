//! One NVMe/RDMA queue pair: the per-request state machine (NVMe/RDMA Transport Spec 1.0b
//! section 3: command capsules arrive as RDMA SENDs into the shared receive queue, data moves by
//! RDMA READ/WRITE against the host's keyed SGL, the response capsule goes back as a SEND, or
//! SEND with Invalidate when the host asked for it).
//!
//! ```text
//!  recv ──► check SGL ─┬─ none / in-capsule ───────────────────────► Executing
//!                      ├─ keyed, host-to-ctrl ─► [NeedUnits] ─► Reading ─► [NeedBuf] ─► Executing
//!                      └─ keyed, ctrl-to-host ─► [NeedBuf] ──────────────────────────► Executing
//!  Executing ─► complete ─┬─ data to host ─► [NeedUnits] ─► RDMA WRITEs + SEND ─► Sending ─► Free
//!                         └─ otherwise ─────────────────────────────► SEND ─► Sending ─► Free
//! ```
//!
//! Nothing here calls verbs directly: work requests go through [`SendQueue`] and the registered
//! memory through [`LocalMem`], so tests drive this with fakes.
//!
//! Data: when the namespace's bdev lends a DMA buffer (direct mode, an NVMe device), RDMA
//! READ/WRITE move host data straight into and out of it (its pool is registered once), and
//! the device works on the same memory: no copy. Otherwise data is staged in registered
//! "units" of the poll group's arena and copied to and from the heap `IoBuf`s the other bdevs
//! take (not registered memory; registering per I/O is avoided on purpose).

use super::sgl::{plan_data, DataPlan};
use super::wr::{send_wr_id, Keyed, Wr, SQE_SIZE};
use crate::bdev::{BdevCompletion, IoBuf};
use crate::poll_group::GroupCtx;
use crate::queue::{Cmd, Exec, NvmeQueue, QueueEvent};
use crate::spec::{Cqe, GenericStatus, Sqe, Status};
use crate::transport::{direction, make_tag, Dir, TransportAddr};
use std::collections::VecDeque;
use zerocopy::{FromBytes, IntoBytes};

/// Most commands one queue may have in flight.
pub(crate) const MAX_SLOTS: usize = crate::ctrlr::MAX_QUEUE_DEPTH as usize;
/// How long a closed connection waits for its flushed work requests before it gives up on
/// them (a removed device or a broken provider may never report them).
pub(crate) const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Stands in for a QP that was destroyed: posts nothing.
struct NoQp;
impl SendQueue for NoQp {
    fn post(&mut self, _wr_id: u64, _wr: &Wr<'_>) -> bool {
        false
    }
    fn disconnect(&mut self) {}
}

/// Where a connection posts work requests (its QP).
pub(crate) trait SendQueue: Send {
    fn post(&mut self, wr_id: u64, wr: &Wr<'_>) -> bool;
    /// Disconnect: the QP goes to the error state and outstanding requests flush.
    fn disconnect(&mut self);
}

/// The poll group's registered memory.
pub(crate) trait LocalMem {
    fn addr(&self, off: usize) -> u64;
    fn lkey(&self) -> u32;
    fn read(&self, off: usize, dst: &mut [u8]);
    fn write(&mut self, off: usize, src: &[u8]);
    /// The local key covering a DMA pool buffer (registering its pool on first use), or `None`
    /// when it cannot be registered: the data is staged instead.
    fn dma_lkey(&mut self, _buf: &nvme_driver::PoolBuf) -> Option<u32> {
        None
    }
}

/// Fixed-size staging units in registered memory, shared by a poll group's connections.
pub(crate) struct UnitPool {
    free: Vec<u32>,
    base: usize,
    pub unit_size: usize,
}

impl UnitPool {
    pub fn new(base: usize, unit_size: usize, count: usize) -> Self {
        UnitPool { free: (0..count as u32).rev().collect(), base, unit_size }
    }
    pub fn available(&self) -> usize {
        self.free.len()
    }
    fn offset(&self, unit: u32) -> usize {
        self.base + unit as usize * self.unit_size
    }
    fn needed(&self, len: usize) -> usize {
        len.div_ceil(self.unit_size).max(1)
    }
}

/// The shared resources a connection works with during one call.
pub(crate) struct ConnResources<'a> {
    pub mem: &'a mut dyn LocalMem,
    pub units: &'a mut UnitPool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReqState {
    Free,
    /// Waiting for staging units (to READ host data, or to WRITE read data back).
    NeedUnits,
    /// RDMA READs outstanding.
    Reading,
    /// Waiting for an IoBuf from the pool.
    NeedBuf,
    Executing,
    Parked,
    /// RDMA WRITEs and the response SEND outstanding.
    Sending,
}

struct Req {
    st: ReqState,
    sqe: Sqe,
    cqe: Cqe,
    buf: Option<IoBuf>,
    dir: Dir,
    keyed: Keyed,
    units: Vec<u32>,
    /// Work requests posted and not yet completed.
    pending: u16,
    /// A work request of this request failed.
    failed: bool,
    /// Executed already (NeedUnits then means: stage the completion's data).
    executed: bool,
    /// Host data was RDMA READ straight into `buf` (a registered DMA buffer): nothing to copy.
    direct: bool,
}

impl Req {
    fn new() -> Req {
        Req {
            st: ReqState::Free,
            sqe: Sqe::default(),
            cqe: Cqe::default(),
            buf: None,
            dir: Dir::None,
            keyed: Keyed::default(),
            units: Vec::with_capacity(8),
            pending: 0,
            failed: false,
            executed: false,
            direct: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnState {
    Ready,
    /// Close requested; the group disconnects it on its next pass.
    Closing,
    /// Disconnected; waiting for flushed work requests and bdev I/O to drain.
    Closed,
}

/// Limits a connection works with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnLimits {
    pub max_io: u32,
    pub icd_max: usize,
}

pub(crate) struct RdmaConn {
    pub idx: u32,
    pub peer: String,
    pub qp: Box<dyn SendQueue>,
    /// Index of the device resources (CQ/SRQ/arena) in the poll group.
    pub dev: usize,
    pub qp_num: u32,
    pub cm_key: usize,
    pub state: ConnState,
    pub close_reason: &'static str,
    q: NvmeQueue,
    limits: ConnLimits,
    reqs: Vec<Req>,
    free: Vec<u16>,
    /// Requests waiting for units or a buffer, oldest first.
    waiting: VecDeque<u16>,
    /// Send-queue work requests not yet completed.
    pub posted: usize,
    /// When `close` ran.
    closed_at: Option<std::time::Instant>,
}

impl RdmaConn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        idx: u32,
        peer: String,
        qp: Box<dyn SendQueue>,
        dev: usize,
        qp_num: u32,
        cm_key: usize,
        listener: TransportAddr,
        limits: ConnLimits,
    ) -> Self {
        RdmaConn {
            idx,
            peer,
            qp,
            dev,
            qp_num,
            cm_key,
            state: ConnState::Ready,
            close_reason: "",
            q: NvmeQueue::new(listener),
            limits,
            reqs: (0..MAX_SLOTS).map(|_| Req::new()).collect(),
            free: (0..MAX_SLOTS as u16).rev().collect(),
            waiting: VecDeque::with_capacity(MAX_SLOTS),
            posted: 0,
            closed_at: None,
        }
    }

    /// Ask for this connection to close (only this one).
    pub fn fail(&mut self, why: &'static str) {
        if self.state == ConnState::Ready {
            log::info!("rdma connection {}: closing ({why})", self.peer);
            self.state = ConnState::Closing;
            self.close_reason = why;
        }
    }

    /// Disconnect, drop NVMe state, free what no work request or bdev I/O still uses.
    pub fn close(&mut self, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) {
        if self.state == ConnState::Closed {
            return;
        }
        self.qp.disconnect();
        self.state = ConnState::Closed;
        self.closed_at = Some(ctx.now);
        self.q.on_close(ctx);
        self.waiting.clear();
        for i in 0..self.reqs.len() {
            let r = &self.reqs[i];
            if r.st != ReqState::Free && r.st != ReqState::Executing && r.pending == 0 {
                self.release(i as u16, ctx, res);
            }
        }
    }

    /// A closed connection whose flushed work requests did not come back within
    /// `FLUSH_TIMEOUT` (bdev I/O done): destroy its QP, after which the device touches none of
    /// its memory any more, then free what the requests held. Returns whether it did.
    pub fn abandon_stuck_work_requests(&mut self, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) -> bool {
        let stuck = self.state == ConnState::Closed
            && self.posted > 0
            && self.q.outstanding() == 0
            && self.closed_at.is_some_and(|t| ctx.now.saturating_duration_since(t) >= FLUSH_TIMEOUT);
        if !stuck {
            return false;
        }
        log::warn!(
            "rdma connection {}: {} work requests not flushed after {:?}; destroying the QP",
            self.peer,
            self.posted,
            FLUSH_TIMEOUT
        );
        // Dropping the QP destroys it: no DMA into the buffers below from here on.
        self.qp = Box::new(NoQp);
        self.posted = 0;
        for i in 0..self.reqs.len() {
            self.reqs[i].pending = 0;
            if self.reqs[i].st != ReqState::Free {
                self.release(i as u16, ctx, res);
            }
        }
        true
    }

    pub fn is_drained(&self) -> bool {
        self.state == ConnState::Closed && self.posted == 0 && self.q.outstanding() == 0
    }

    /// Free a request and everything it holds.
    fn release(&mut self, slot: u16, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) {
        let r = &mut self.reqs[slot as usize];
        if r.st == ReqState::Free {
            return;
        }
        for u in r.units.drain(..) {
            res.units.free.push(u);
        }
        if let Some(b) = r.buf.take() {
            ctx.bufs.put(b);
        }
        r.st = ReqState::Free;
        self.free.push(slot);
    }

    /// Keep-alive, controller teardown and reset, asynchronous events.
    pub fn poll_events(&mut self, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) -> usize {
        if self.state != ConnState::Ready {
            return 0;
        }
        match self.q.poll_event(ctx) {
            None => 0,
            Some(QueueEvent::Close(why)) => {
                self.fail(why);
                1
            }
            Some(QueueEvent::Aen { slot, dw0 }) => {
                if let Some(r) = self.reqs.get_mut(slot as usize) {
                    r.cqe.dw0.set(dw0);
                    self.complete(slot, ctx, res);
                }
                1
            }
        }
    }

    /// A command capsule arrived in the receive buffer at `off` (`len` bytes). The caller
    /// re-posts the buffer afterwards: everything needed is copied out here.
    pub fn on_recv(&mut self, off: usize, len: usize, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) {
        if self.state != ConnState::Ready {
            return;
        }
        if len < SQE_SIZE {
            return self.fail("capsule shorter than an SQE");
        }
        // In flight: the Connect before the queue is connected, then at most SQSIZE.
        if !self.q.can_accept(MAX_SLOTS - self.free.len()) {
            return self.fail("host exceeded its queue depth");
        }
        let Some(slot) = self.free.pop() else { return self.fail("host exceeded its queue depth") };
        let mut sqe_bytes = [0u8; SQE_SIZE];
        res.mem.read(off, &mut sqe_bytes);
        let r = &mut self.reqs[slot as usize];
        r.sqe = Sqe::read_from_bytes(&sqe_bytes).unwrap_or_default();
        let admitted = self.q.begin(ctx, &r.sqe, &mut r.cqe);
        r.buf = None;
        r.keyed = Keyed::default();
        r.units.clear();
        r.pending = 0;
        r.failed = false;
        r.executed = false;
        r.direct = false;
        r.dir = direction(&r.sqe);
        r.st = ReqState::Executing;
        if let Err(status) = admitted {
            r.dir = Dir::None;
            return self.fail_req(slot, status, ctx, res);
        }
        let plan = plan_data(&r.sqe.sgl1(), r.dir, len - SQE_SIZE, self.limits.icd_max, self.limits.max_io);
        match plan {
            DataPlan::Bad(st) => {
                r.dir = Dir::None;
                self.fail_req(slot, st, ctx, res)
            }
            DataPlan::None => {
                r.dir = Dir::None;
                self.exec(slot, ctx, res)
            }
            DataPlan::InCapsule { off: d, len: n } => {
                let sqe = r.sqe;
                let Some(mut b) = self.q.data_buf(ctx, &sqe, n) else {
                    // The receive buffer is re-posted after this call, so the data cannot wait
                    // for a buffer: ask the host to retry.
                    r.dir = Dir::None;
                    return self.fail_req(slot, Status::generic(GenericStatus::TRANSIENT_TRANSPORT_ERROR), ctx, res);
                };
                res.mem.read(off + SQE_SIZE + d, b.as_mut_slice());
                self.reqs[slot as usize].buf = Some(b);
                self.exec(slot, ctx, res)
            }
            DataPlan::Keyed(k) => {
                r.keyed = k;
                if k.len == 0 {
                    r.dir = Dir::None;
                    return self.exec(slot, ctx, res);
                }
                if r.dir == Dir::HostToCtrl {
                    if self.read_direct(slot, ctx, res) {
                        return;
                    }
                    self.reqs[slot as usize].st = ReqState::NeedUnits;
                } else {
                    r.st = ReqState::NeedBuf;
                }
                self.advance(slot, ctx, res);
            }
        }
    }

    /// Host-to-controller data into a DMA buffer lent by the bdev: RDMA READ straight into it.
    /// Returns false, holding nothing, when there is none or it cannot be registered: the
    /// staged path then takes units first and a buffer only after the READ (a heap buffer held
    /// while waiting for units could deadlock against requests holding units).
    fn read_direct(&mut self, slot: u16, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) -> bool {
        let r = &mut self.reqs[slot as usize];
        let sqe = r.sqe;
        let k = r.keyed;
        let Some(b) = self.q.lent_buf(ctx, &sqe, k.len as usize) else { return false };
        let Some(lkey) = b.dma().and_then(|d| res.mem.dma_lkey(d)) else { return false };
        let r = &mut self.reqs[slot as usize];
        let local = b.as_slice().as_ptr() as u64;
        r.buf = Some(b);
        r.direct = true;
        r.st = ReqState::Reading;
        let wr = Wr::Read { local, len: k.len, lkey, remote: k.addr, rkey: k.key };
        self.post(slot, &wr);
        if self.reqs[slot as usize].pending == 0 {
            self.release(slot, ctx, res);
        }
        true
    }

    /// Move a waiting request forward if its resources are there; queue it otherwise.
    /// Returns whether it moved.
    fn advance(&mut self, slot: u16, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) -> bool {
        let r = &mut self.reqs[slot as usize];
        let len = r.keyed.len as usize;
        match r.st {
            ReqState::NeedUnits => {
                let n = res.units.needed(len);
                if res.units.available() < n || (!self.waiting.is_empty() && self.waiting.front() != Some(&slot)) {
                    if !self.waiting.contains(&slot) {
                        self.waiting.push_back(slot);
                    }
                    return false;
                }
                for _ in 0..n {
                    if let Some(u) = res.units.free.pop() {
                        r.units.push(u);
                    }
                }
                if r.executed {
                    self.post_response(slot, ctx, res);
                } else {
                    self.post_reads(slot, ctx, res);
                }
                true
            }
            ReqState::NeedBuf if r.direct => {
                // RDMA READ put the host data in place.
                self.exec(slot, ctx, res);
                true
            }
            ReqState::NeedBuf => {
                let taken = match r.buf.take() {
                    Some(b) => Some(b),
                    None => {
                        let sqe = r.sqe;
                        self.q.data_buf(ctx, &sqe, len)
                    }
                };
                let r = &mut self.reqs[slot as usize];
                let Some(mut b) = taken else {
                    if !self.waiting.contains(&slot) {
                        self.waiting.push_back(slot);
                    }
                    return false;
                };
                if r.dir == Dir::CtrlToHost {
                    // Pool buffers hold earlier data: zero all but reads the bdev fills.
                    if !self.q.bdev_fills_buffer(&r.sqe) {
                        b.as_mut_slice().fill(0);
                    }
                } else {
                    // Host data arrived in the staging units.
                    let us = res.units.unit_size;
                    for (i, &u) in r.units.iter().enumerate() {
                        let start = i * us;
                        let end = (start + us).min(len);
                        if start < end {
                            res.mem.read(res.units.offset(u), &mut b.as_mut_slice()[start..end]);
                        }
                    }
                    for u in r.units.drain(..) {
                        res.units.free.push(u);
                    }
                }
                r.buf = Some(b);
                self.exec(slot, ctx, res);
                true
            }
            _ => true,
        }
    }

    /// Retry requests waiting for units or buffers, oldest first.
    pub fn retry_waiting(&mut self, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) -> usize {
        let mut n = 0;
        while let Some(&slot) = self.waiting.front() {
            if !self.advance(slot, ctx, res) {
                break;
            }
            self.waiting.pop_front();
            n += 1;
        }
        n
    }

    fn post(&mut self, slot: u16, wr: &Wr<'_>) -> bool {
        if self.qp.post(send_wr_id(self.idx, slot), wr) {
            self.posted += 1;
            self.reqs[slot as usize].pending += 1;
            true
        } else {
            self.reqs[slot as usize].failed = true;
            self.fail("posting a work request failed");
            false
        }
    }

    fn post_reads(&mut self, slot: u16, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) {
        let r = &mut self.reqs[slot as usize];
        r.st = ReqState::Reading;
        let k = r.keyed;
        let units = std::mem::take(&mut r.units);
        let us = res.units.unit_size;
        for (i, &u) in units.iter().enumerate() {
            let start = i * us;
            let n = (k.len as usize - start).min(us) as u32;
            let wr = Wr::Read {
                local: res.mem.addr(res.units.offset(u)),
                len: n,
                lkey: res.mem.lkey(),
                remote: k.addr + start as u64,
                rkey: k.key,
            };
            if !self.post(slot, &wr) {
                break;
            }
        }
        self.reqs[slot as usize].units = units;
        if self.reqs[slot as usize].pending == 0 {
            self.release(slot, ctx, res);
        }
    }

    /// A send-queue work request of request `slot` completed (`ok` false: it failed or was
    /// flushed).
    pub fn on_send_done(&mut self, slot: u16, ok: bool, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) {
        self.posted = self.posted.saturating_sub(1);
        let Some(r) = self.reqs.get_mut(slot as usize) else { return };
        r.pending = r.pending.saturating_sub(1);
        if !ok {
            r.failed = true;
            self.fail("work request failed");
        }
        let r = &mut self.reqs[slot as usize];
        if r.pending > 0 {
            return;
        }
        match r.st {
            ReqState::Reading if !r.failed && self.state == ConnState::Ready => {
                r.st = ReqState::NeedBuf;
                self.advance(slot, ctx, res);
            }
            ReqState::Executing if self.state != ConnState::Closed => {}
            ReqState::Free => {}
            _ => self.release(slot, ctx, res),
        }
    }

    fn fail_req(&mut self, slot: u16, status: Status, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) {
        self.reqs[slot as usize].cqe.set_status(status);
        self.complete(slot, ctx, res);
    }

    fn exec(&mut self, slot: u16, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) {
        let tag = make_tag(ctx.transport_index, self.idx, slot);
        let r = &mut self.reqs[slot as usize];
        r.st = ReqState::Executing;
        r.executed = true;
        match self.q.execute(ctx, Cmd { sqe: &r.sqe, buf: &mut r.buf, cqe: &mut r.cqe, tag }) {
            Exec::Complete => self.complete(slot, ctx, res),
            Exec::Pending => {}
            Exec::Parked => r.st = ReqState::Parked,
            Exec::CompleteThenClose => {
                self.complete(slot, ctx, res);
                self.fail("host disconnected");
            }
        }
    }

    /// A bdev I/O of this connection finished.
    pub fn bdev_complete(&mut self, slot: u16, done: BdevCompletion, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) {
        let Some(r) = self.reqs.get_mut(slot as usize) else {
            return self.q.bdev_complete_unknown(ctx, done);
        };
        self.q.bdev_complete(ctx, done, &mut r.buf, &mut r.cqe);
        if self.state != ConnState::Ready {
            return self.release(slot, ctx, res);
        }
        self.complete(slot, ctx, res);
    }

    /// Finish a command: push read data with RDMA WRITEs, then the response SEND.
    fn complete(&mut self, slot: u16, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) {
        if self.state != ConnState::Ready {
            return self.release(slot, ctx, res);
        }
        let r = &mut self.reqs[slot as usize];
        r.executed = true;
        self.q.finish_cqe(ctx, &r.sqe, &mut r.cqe);
        let has_data = r.cqe.status().is_success() && r.dir == Dir::CtrlToHost && r.keyed.len > 0 && r.buf.is_some();
        let lkey = match r.buf.as_ref().and_then(IoBuf::dma) {
            Some(d) if has_data => res.mem.dma_lkey(d),
            _ => None,
        };
        if let Some(lkey) = lkey {
            // Read data goes out of the lent DMA buffer itself, held until the WRITE is done.
            self.write_direct(slot, lkey, ctx, res);
        } else if has_data {
            r.st = ReqState::NeedUnits;
            self.advance(slot, ctx, res);
        } else {
            if let Some(b) = r.buf.take() {
                ctx.bufs.put(b);
            }
            self.post_response(slot, ctx, res);
        }
    }

    /// RDMA WRITE the read data from the request's registered DMA buffer, then the response.
    fn write_direct(&mut self, slot: u16, lkey: u32, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) {
        let r = &mut self.reqs[slot as usize];
        r.st = ReqState::Sending;
        let k = r.keyed;
        let Some(b) = r.buf.as_ref() else { return self.release(slot, ctx, res) };
        let len = (k.len as usize).min(b.len()) as u32;
        let wr = Wr::Write { local: b.as_slice().as_ptr() as u64, len, lkey, remote: k.addr, rkey: k.key };
        if self.post(slot, &wr) {
            let cqe = self.reqs[slot as usize].cqe;
            let inv = k.invalidate.then_some(k.key);
            self.post(slot, &Wr::SendInline { data: cqe.as_bytes(), inv_rkey: inv });
        }
        if self.reqs[slot as usize].pending == 0 {
            self.release(slot, ctx, res);
        }
    }

    /// Units are in hand (or no data goes back): copy data into them, post WRITEs and the SEND.
    fn post_response(&mut self, slot: u16, ctx: &mut GroupCtx, res: &mut ConnResources<'_>) {
        let r = &mut self.reqs[slot as usize];
        r.st = ReqState::Sending;
        let k = r.keyed;
        let units = std::mem::take(&mut r.units);
        let buf = r.buf.take();
        let us = res.units.unit_size;
        let mut ok = true;
        if let Some(b) = buf.as_ref() {
            let len = (k.len as usize).min(b.len());
            for (i, &u) in units.iter().enumerate() {
                let start = i * us;
                if start >= len {
                    break;
                }
                let end = (start + us).min(len);
                let uoff = res.units.offset(u);
                res.mem.write(uoff, &b.as_slice()[start..end]);
                let wr = Wr::Write {
                    local: res.mem.addr(uoff),
                    len: (end - start) as u32,
                    lkey: res.mem.lkey(),
                    remote: k.addr + start as u64,
                    rkey: k.key,
                };
                if !self.post(slot, &wr) {
                    ok = false;
                    break;
                }
            }
        }
        if let Some(b) = buf {
            ctx.bufs.put(b);
        }
        self.reqs[slot as usize].units = units;
        if ok {
            let cqe = self.reqs[slot as usize].cqe;
            let inv = k.invalidate.then_some(k.key);
            self.post(slot, &Wr::SendInline { data: cqe.as_bytes(), inv_rkey: inv });
        }
        if self.reqs[slot as usize].pending == 0 {
            self.release(slot, ctx, res);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::spec::{Cqe, SglDescriptor, Sqe};
    use crate::transport::rdma::wr::split_send_wr_id;

    // ---- the request state machine against a fake QP and fake registered memory ----

    #[derive(Default)]
    pub(crate) struct FakeQp {
        pub posted: std::sync::Arc<std::sync::Mutex<Vec<(u64, OwnedWr)>>>,
        pub fail_posts: bool,
        pub disconnected: std::sync::Arc<std::sync::atomic::AtomicBool>,
        /// Set when the QP is dropped (destroyed).
        pub destroyed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }
    impl Drop for FakeQp {
        fn drop(&mut self) {
            self.destroyed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(crate) enum OwnedWr {
        Read { local: u64, len: u32, lkey: u32, remote: u64, rkey: u32 },
        Write { local: u64, len: u32, lkey: u32, remote: u64, rkey: u32 },
        Send { data: Vec<u8>, inv: Option<u32> },
    }
    impl SendQueue for FakeQp {
        fn post(&mut self, wr_id: u64, wr: &Wr<'_>) -> bool {
            if self.fail_posts {
                return false;
            }
            let w = match *wr {
                Wr::Read { local, len, lkey, remote, rkey } => OwnedWr::Read { local, len, lkey, remote, rkey },
                Wr::Write { local, len, lkey, remote, rkey } => OwnedWr::Write { local, len, lkey, remote, rkey },
                Wr::SendInline { data, inv_rkey } => OwnedWr::Send { data: data.to_vec(), inv: inv_rkey },
                Wr::Send { .. } => OwnedWr::Send { data: vec![], inv: None },
            };
            self.posted.lock().unwrap().push((wr_id, w));
            true
        }
        fn disconnect(&mut self) {
            self.disconnected.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    /// The arena, plus NVMe DMA pools "registered" under `DMA_LKEY` (the fake NIC reaches them
    /// by address with `DmaPool::read_va`/`write_va`).
    pub(crate) struct FakeMem(pub Vec<u8>, pub Vec<nvme_driver::DmaPool>);
    const DMA_LKEY: u32 = 0x55;
    impl LocalMem for FakeMem {
        fn dma_lkey(&mut self, buf: &nvme_driver::PoolBuf) -> Option<u32> {
            if !self.1.iter().any(|p| p.id() == buf.pool_id()) {
                self.1.push(buf.pool());
            }
            Some(DMA_LKEY)
        }
        fn addr(&self, off: usize) -> u64 {
            0x10_0000 + off as u64
        }
        fn lkey(&self) -> u32 {
            0x99
        }
        fn read(&self, off: usize, dst: &mut [u8]) {
            dst.copy_from_slice(&self.0[off..off + dst.len()]);
        }
        fn write(&mut self, off: usize, src: &[u8]) {
            self.0[off..off + src.len()].copy_from_slice(src);
        }
    }

    use crate::bdev::MallocBdev;
    use crate::host::pdu::{connect_data, connect_sqe, fabrics_sqe};
    use crate::spec::fabrics::PropertyCmd;
    use crate::spec::{reg, Cc, FabricsType, IdentifyController};
    use crate::{NamespaceConfig, SubsystemConfig, Target};
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    const NQN: &str = "nqn.2024-01.io.nvmf-rs:rdma-unit";
    const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001";
    const UNIT: usize = 1024;
    const UNITS_BASE: usize = 16384;

    /// SENDs' CQEs with the invalidated key, and WRITEs' bytes by remote address.
    type Finished = (Vec<(Cqe, Option<u32>)>, Vec<(u64, Vec<u8>)>);

    struct Rig {
        _t: Target,
        ctx: GroupCtx,
        conn: RdmaConn,
        posted: Arc<Mutex<Vec<(u64, OwnedWr)>>>,
        disconnected: Arc<std::sync::atomic::AtomicBool>,
        mem: FakeMem,
        units: UnitPool,
    }

    impl Rig {
        fn new(units: usize) -> Rig {
            let t = Target::new();
            let mut cfg = SubsystemConfig::new(NQN);
            cfg.allow_any_host = true;
            let sub = t.add_subsystem(cfg).unwrap();
            let listener = TransportAddr::rdma("10.0.0.1", 4420);
            sub.add_listener(listener.clone()).unwrap();
            sub.add_namespace(NamespaceConfig::new(Arc::new(MallocBdev::new("m0", 64, 512).unwrap()))).unwrap();
            let ctx = GroupCtx::new(t.shared_for_test());
            let qp = FakeQp::default();
            let posted = qp.posted.clone();
            let disconnected = qp.disconnected.clone();
            let limits = ConnLimits { max_io: 1 << 20, icd_max: 8192 };
            let conn = RdmaConn::new(5, "peer".into(), Box::new(qp), 0, 77, 0, listener, limits);
            Rig {
                _t: t,
                ctx,
                conn,
                posted,
                disconnected,
                mem: FakeMem(vec![0; UNITS_BASE + UNIT * units], Vec::new()),
                units: UnitPool::new(UNITS_BASE, UNIT, units),
            }
        }
        fn recv(&mut self, sqe: &Sqe, icd: &[u8]) {
            self.mem.0[..64].copy_from_slice(sqe.as_bytes());
            self.mem.0[64..64 + icd.len()].copy_from_slice(icd);
            let mut res = ConnResources { mem: &mut self.mem, units: &mut self.units };
            self.conn.on_recv(0, 64 + icd.len(), &mut self.ctx, &mut res);
        }
        fn take(&self) -> Vec<(u64, OwnedWr)> {
            std::mem::take(&mut *self.posted.lock().unwrap())
        }
        fn done(&mut self, wr_id: u64, ok: bool) {
            let (c, slot) = split_send_wr_id(wr_id);
            assert_eq!(c, 5);
            let mut res = ConnResources { mem: &mut self.mem, units: &mut self.units };
            self.conn.on_send_done(slot, ok, &mut self.ctx, &mut res);
        }
        /// Complete every posted work request; READs get `host` data. Returns the SENDs' CQEs
        /// (with the invalidated key) and the bytes each WRITE carried, by remote address.
        fn finish(&mut self, host: &[u8]) -> Finished {
            let mut cqes = Vec::new();
            let mut writes = Vec::new();
            loop {
                let wrs = self.take();
                if wrs.is_empty() {
                    return (cqes, writes);
                }
                for (id, wr) in wrs {
                    match wr {
                        OwnedWr::Read { local, len, lkey, remote, rkey } => {
                            assert_eq!(rkey, 0x1234);
                            let src = (remote - 0xAAAA_0000) as usize;
                            let data = &host[src..src + len as usize];
                            if lkey == DMA_LKEY {
                                assert!(
                                    self.mem.1.iter().any(|p| p.write_va(local as usize, data)),
                                    "READ into unregistered memory"
                                );
                            } else {
                                let off = (local - 0x10_0000) as usize;
                                self.mem.0[off..off + len as usize].copy_from_slice(data);
                            }
                        }
                        OwnedWr::Write { local, len, lkey, remote, .. } => {
                            let mut data = vec![0u8; len as usize];
                            if lkey == DMA_LKEY {
                                assert!(
                                    self.mem.1.iter().any(|p| p.read_va(local as usize, &mut data)),
                                    "WRITE from unregistered memory"
                                );
                            } else {
                                let off = (local - 0x10_0000) as usize;
                                data.copy_from_slice(&self.mem.0[off..off + len as usize]);
                            }
                            writes.push((remote, data));
                        }
                        OwnedWr::Send { data, inv } => cqes.push((Cqe::read_from_bytes(&data).unwrap(), inv)),
                    }
                    self.done(id, true);
                }
            }
        }
    }

    fn keyed(len: u32, inv: bool) -> SglDescriptor {
        Keyed::encode(0xAAAA_0000, len, 0x1234, inv)
    }

    fn connect_admin(rig: &mut Rig) -> u16 {
        let mut sqe = connect_sqe(0, 31, 0);
        sqe.cid.set(1);
        sqe.set_sgl1(keyed(1024, true));
        rig.recv(&sqe, &[]);
        let wrs = rig.take();
        assert_eq!(wrs.len(), 1, "{wrs:?}");
        assert!(matches!(wrs[0].1, OwnedWr::Read { len: 1024, remote: 0xAAAA_0000, rkey: 0x1234, .. }), "{wrs:?}");
        rig.posted.lock().unwrap().extend(wrs);
        let data = connect_data(&[7; 16], 0xffff, NQN, HOSTNQN);
        let (cqes, writes) = rig.finish(data.as_bytes());
        assert!(writes.is_empty());
        assert_eq!(cqes.len(), 1);
        let (cqe, inv) = cqes[0];
        assert!(cqe.status().is_success(), "{:?}", cqe.status());
        assert_eq!(inv, Some(0x1234), "the host asked for invalidation: SEND with Invalidate");
        assert_eq!(cqe.cid.get(), 1);
        cqe.dw0.get() as u16
    }

    #[test]
    fn connect_enable_identify_over_keyed_sgls() {
        let mut rig = Rig::new(8);
        let cntlid = connect_admin(&mut rig);
        assert!(cntlid >= 1);
        // Property Set CC.EN: no data.
        let mut sqe = fabrics_sqe(FabricsType::PropertySet);
        PropertyCmd { eight_bytes: false, offset: reg::CC, value: Cc::enabled_nvm().0 as u64 }.write(&mut sqe);
        sqe.cid.set(2);
        sqe.set_sgl1(Keyed::encode(0, 0, 0, false));
        rig.recv(&sqe, &[]);
        let (cqes, _) = rig.finish(&[]);
        assert_eq!(cqes.len(), 1);
        assert!(cqes[0].0.status().is_success());
        assert_eq!(cqes[0].1, None);
        // Identify Controller: 4096 bytes pushed by RDMA WRITE in four 1 KiB units.
        let mut sqe = Sqe { opcode: 0x06, ..Default::default() };
        sqe.cdw10.set(1);
        sqe.cid.set(3);
        sqe.set_sgl1(keyed(4096, false));
        rig.recv(&sqe, &[]);
        let (cqes, writes) = rig.finish(&[]);
        assert_eq!(cqes.len(), 1);
        assert!(cqes[0].0.status().is_success(), "{:?}", cqes[0].0.status());
        assert_eq!(cqes[0].0.cid.get(), 3);
        assert_eq!(writes.len(), 4);
        let mut data = Vec::new();
        for (i, (remote, bytes)) in writes.iter().enumerate() {
            assert_eq!(*remote, 0xAAAA_0000 + (i * UNIT) as u64);
            data.extend_from_slice(bytes);
        }
        let id = IdentifyController::read_from_bytes(&data).unwrap();
        assert_eq!(id.cntlid.get(), cntlid);
        assert!(id.sgls.get() & (1 << 2) != 0, "keyed SGLs advertised over RDMA");
        assert_eq!(rig.units.available(), 8, "units returned");
        assert_eq!(rig.ctx.bufs.in_use(), 0, "buffers returned");
        // A transfer larger than the limit fails with the spec's status and moves no data.
        let mut sqe = Sqe { opcode: 0x06, ..Default::default() };
        sqe.cdw10.set(1);
        sqe.cid.set(4);
        sqe.set_sgl1(keyed((1 << 20) + 1, false));
        rig.recv(&sqe, &[]);
        let (cqes, writes) = rig.finish(&[]);
        assert!(writes.is_empty());
        assert_eq!(cqes[0].0.status().sc(), GenericStatus::DATA_SGL_LENGTH_INVALID);
        assert!(cqes[0].0.status().is_dnr());
        // Unknown keyed subtype.
        let mut sqe = Sqe { opcode: 0x06, ..Default::default() };
        sqe.cdw10.set(1);
        sqe.cid.set(5);
        let mut sgl = keyed(4096, false);
        sgl.identifier = 0x42;
        sqe.set_sgl1(sgl);
        rig.recv(&sqe, &[]);
        let (cqes, _) = rig.finish(&[]);
        assert_eq!(cqes[0].0.status().sc(), GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID);
        assert_eq!(rig.conn.state, ConnState::Ready);
    }

    #[test]
    fn commands_before_connect_fail_and_units_wait() {
        let mut rig = Rig::new(2);
        let mut sqe = Sqe { opcode: 0x06, ..Default::default() };
        sqe.set_sgl1(keyed(4096, false));
        rig.recv(&sqe, &[]);
        let (cqes, writes) = rig.finish(&[]);
        assert!(writes.is_empty());
        assert_eq!(cqes[0].0.status().sc(), GenericStatus::COMMAND_SEQUENCE_ERROR);
        // Connect needs one unit for its 1 KiB; with both units taken it waits, then goes on.
        let held: Vec<u32> = (0..2).filter_map(|_| rig.units.free.pop()).collect();
        let mut sqe = connect_sqe(0, 31, 0);
        sqe.set_sgl1(keyed(1024, false));
        rig.recv(&sqe, &[]);
        assert!(rig.take().is_empty(), "no READ without a staging unit");
        assert_eq!(rig.ctx.bufs.in_use(), 0, "no buffer held while waiting for units");
        rig.units.free.extend(held);
        let mut res = ConnResources { mem: &mut rig.mem, units: &mut rig.units };
        assert_eq!(rig.conn.retry_waiting(&mut rig.ctx, &mut res), 1);
        let data = connect_data(&[7; 16], 0xffff, NQN, HOSTNQN);
        let (cqes, _) = rig.finish(data.as_bytes());
        assert!(cqes[0].0.status().is_success());
        assert_eq!(cqes[0].1, None);
    }

    #[test]
    fn in_capsule_connect_and_failed_work_request_closes_only_this_connection() {
        let mut rig = Rig::new(4);
        let mut sqe = connect_sqe(0, 31, 0);
        sqe.cid.set(9);
        let data = connect_data(&[7; 16], 0xffff, NQN, HOSTNQN);
        rig.recv(&sqe, data.as_bytes());
        let (cqes, _) = rig.finish(&[]);
        assert!(cqes[0].0.status().is_success(), "{:?}", cqes[0].0.status());
        let mut sqe = fabrics_sqe(FabricsType::PropertySet);
        PropertyCmd { eight_bytes: false, offset: reg::CC, value: Cc::enabled_nvm().0 as u64 }.write(&mut sqe);
        rig.recv(&sqe, &[]);
        let (cqes, _) = rig.finish(&[]);
        assert!(cqes[0].0.status().is_success());
        // Identify; its WRITE fails (e.g. a bad rkey): the connection closes and drains.
        let mut sqe = Sqe { opcode: 0x06, ..Default::default() };
        sqe.cdw10.set(1);
        sqe.set_sgl1(keyed(4096, false));
        rig.recv(&sqe, &[]);
        let wrs = rig.take();
        assert_eq!(wrs.len(), 5, "4 WRITEs and the SEND");
        rig.done(wrs[0].0, false);
        assert_eq!(rig.conn.state, ConnState::Closing);
        let mut res = ConnResources { mem: &mut rig.mem, units: &mut rig.units };
        rig.conn.close(&mut rig.ctx, &mut res);
        assert!(rig.disconnected.load(Ordering::SeqCst));
        assert!(!rig.conn.is_drained(), "flushed work requests still to come");
        for (id, _) in &wrs[1..] {
            rig.done(*id, false);
        }
        assert!(rig.conn.is_drained());
        assert_eq!(rig.units.available(), 4);
        assert_eq!(rig.ctx.bufs.in_use(), 0);
        // Capsules arriving after the close are ignored.
        rig.recv(&sqe, &[]);
        assert!(rig.take().is_empty());
    }

    #[test]
    fn unflushed_work_requests_are_given_up_after_the_timeout_with_the_qp_destroyed() {
        let mut rig = Rig::new(4);
        let destroyed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut qp = FakeQp::default();
        qp.posted = rig.posted.clone();
        qp.destroyed = destroyed.clone();
        rig.conn.qp = Box::new(qp);
        let mut sqe = connect_sqe(0, 31, 0);
        let data = connect_data(&[7; 16], 0xffff, NQN, HOSTNQN);
        rig.recv(&sqe, data.as_bytes());
        rig.finish(&[]);
        let mut en = fabrics_sqe(FabricsType::PropertySet);
        PropertyCmd { eight_bytes: false, offset: reg::CC, value: Cc::enabled_nvm().0 as u64 }.write(&mut en);
        rig.recv(&en, &[]);
        assert!(rig.finish(&[]).0[0].0.status().is_success(), "CC.EN");
        // A 4 KiB Identify by keyed SGL: its WRITEs and SEND are posted and never complete.
        sqe = Sqe { opcode: 0x06, ..Default::default() };
        sqe.cdw10.set(1);
        sqe.set_sgl1(keyed(4096, false));
        rig.recv(&sqe, &[]);
        assert_eq!(rig.take().len(), 5);
        assert_eq!(rig.units.available(), 0, "the units are held by the posted WRITEs");
        rig.conn.fail("test");
        let mut res = ConnResources { mem: &mut rig.mem, units: &mut rig.units };
        rig.conn.close(&mut rig.ctx, &mut res);
        assert!(!rig.conn.is_drained());
        // Not yet: flushes may still come.
        rig.ctx.now += FLUSH_TIMEOUT / 2;
        assert!(!rig.conn.abandon_stuck_work_requests(&mut rig.ctx, &mut res));
        assert!(!destroyed.load(Ordering::SeqCst));
        rig.ctx.now += FLUSH_TIMEOUT;
        assert!(rig.conn.abandon_stuck_work_requests(&mut rig.ctx, &mut res));
        assert!(destroyed.load(Ordering::SeqCst), "QP destroyed before the memory is reused");
        assert!(rig.conn.is_drained());
        // A late completion for the destroyed QP changes nothing.
        rig.conn.on_send_done(0, false, &mut rig.ctx, &mut res);
        assert!(rig.conn.is_drained());
        assert_eq!(rig.units.available(), 4, "units back");
        assert_eq!(rig.ctx.bufs.in_use(), 0, "buffers back");
    }

    /// Deliver bdev completions to the connection until `n` arrived.
    fn drain_bdev(rig: &mut Rig, n: usize) {
        let mut got = 0;
        let start = std::time::Instant::now();
        while got < n {
            let mut out = Vec::new();
            rig.ctx.poll_channels(&mut out);
            for c in out {
                let (_, conn, slot) = crate::transport::split_tag(c.tag);
                assert_eq!(conn, 5);
                let mut res = ConnResources { mem: &mut rig.mem, units: &mut rig.units };
                rig.conn.bdev_complete(slot, c, &mut rig.ctx, &mut res);
                got += 1;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "bdev I/O did not complete");
        }
    }

    #[test]
    fn direct_mode_data_moves_by_rdma_straight_into_and_out_of_dma_buffers() {
        use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
        let emu = EmulatedController::new(EmulatorConfig { namespaces: vec![(512, 8192)], ..Default::default() });
        let pcie = Arc::new(nvme_driver::Controller::new_emulated(&emu, Default::default()).unwrap());
        let nvme = Arc::new(crate::bdev::NvmeBdev::new("Nvme0n1", pcie, 1).unwrap());
        let mut rig = Rig::new(4);
        let sub = rig._t.subsystem(NQN).unwrap();
        let nsid = sub.add_namespace(NamespaceConfig::new(nvme.clone())).unwrap();
        // Admin queue, then I/O queue 1 of the same controller on a second connection (the
        // admin one stays open beside it).
        let cntlid = connect_admin(&mut rig);
        let mut en = fabrics_sqe(FabricsType::PropertySet);
        PropertyCmd { eight_bytes: false, offset: reg::CC, value: Cc::enabled_nvm().0 as u64 }.write(&mut en);
        en.set_sgl1(Keyed::encode(0, 0, 0, false));
        rig.recv(&en, &[]);
        assert!(rig.finish(&[]).0[0].0.status().is_success(), "CC.EN");
        let mut qp = FakeQp::default();
        qp.posted = rig.posted.clone();
        let limits = ConnLimits { max_io: 1 << 20, icd_max: 8192 };
        let io_conn =
            RdmaConn::new(5, "peer".into(), Box::new(qp), 0, 78, 0, TransportAddr::rdma("10.0.0.1", 4420), limits);
        let _admin = std::mem::replace(&mut rig.conn, io_conn);
        let io = &mut rig;
        let mut sqe = connect_sqe(1, 31, 0);
        sqe.cid.set(2);
        sqe.set_sgl1(keyed(1024, false));
        io.recv(&sqe, &[]);
        let data = connect_data(&[7; 16], cntlid, NQN, HOSTNQN);
        let (cqes, _) = io.finish(data.as_bytes());
        assert!(cqes[0].0.status().is_success(), "I/O queue connect: {:?}", cqes[0].0.status());
        let units = io.units.available();
        // A 64 KiB write: one RDMA READ straight into a lent DMA buffer, no staging unit.
        let host: Vec<u8> = (0..65536u32).map(|i| (i * 7 + i / 4096) as u8).collect();
        let mut w = Sqe { opcode: 0x01, ..Default::default() };
        w.cid.set(3);
        w.nsid.set(nsid);
        w.cdw12.set(127);
        w.set_sgl1(keyed(65536, false));
        io.recv(&w, &[]);
        let wrs = io.take();
        assert!(
            matches!(wrs[..], [(_, OwnedWr::Read { len: 65536, lkey: DMA_LKEY, remote: 0xAAAA_0000, .. })]),
            "{wrs:?}"
        );
        assert_eq!(io.units.available(), units, "no staging unit taken");
        io.posted.lock().unwrap().extend(wrs);
        let (cqes, _) = io.finish(&host);
        assert!(cqes.is_empty(), "the write is at the device");
        drain_bdev(io, 1);
        let (cqes, writes) = io.finish(&[]);
        assert!(writes.is_empty());
        assert!(cqes[0].0.status().is_success(), "{:?}", cqes[0].0.status());
        let mut disk = vec![0u8; 65536];
        assert!(emu.read_disk(1, 0, &mut disk));
        assert!(disk == host, "the device wrote what RDMA READ put in the lent buffer");
        // Read it back: the device fills a lent buffer, one RDMA WRITE sends it from there.
        let mut r = Sqe { opcode: 0x02, ..Default::default() };
        r.cid.set(4);
        r.nsid.set(nsid);
        r.cdw12.set(127);
        r.set_sgl1(keyed(65536, true));
        io.recv(&r, &[]);
        assert!(io.take().is_empty(), "nothing to post before the device answers");
        drain_bdev(io, 1);
        let wrs = io.take();
        assert!(
            matches!(
                wrs[..],
                [(_, OwnedWr::Write { len: 65536, lkey: DMA_LKEY, .. }), (_, OwnedWr::Send { inv: Some(0x1234), .. })]
            ),
            "{wrs:?}"
        );
        io.posted.lock().unwrap().extend(wrs);
        let (cqes, writes) = io.finish(&[]);
        assert!(cqes[0].0.status().is_success());
        assert_eq!(writes.len(), 1);
        assert!(writes[0].1 == host, "RDMA WRITE carried the device's data");
        assert_eq!(io.units.available(), units);
        assert_eq!(nvme.copied_bytes(), 0, "no copy between network and device");
        assert_eq!(io.ctx.bufs.in_use(), 0);
    }
}
