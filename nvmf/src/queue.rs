//! Transport-independent state of one NVMe queue (a `Qpair`'s NVMe side): which controller it
//! belongs to, its queue ID and size, SQ head, the cached namespace table, pending AERs, the
//! bdev I/Os in flight. It owns the request lifecycle every transport shares; a transport only
//! moves bytes (PDUs, work requests), finds buffers and transfers data:
//!
//! ```text
//!  capsule in ─► can_accept(in_flight)? ─► begin(sqe, cqe) ─┬─ Err(status): complete with it
//!                                                          └─ Ok: move data ─► execute(ctx, cmd)
//!  execute ─┬─ Complete / CompleteThenClose ─► finish_cqe ─► send (then close)
//!           ├─ Pending (bdev) ─► bdev_complete(ctx, done, buf, cqe) ─► finish_cqe ─► send
//!           └─ Parked (AER) ─► poll_event() → QueueEvent::Aen { slot, dw0 } ─► finish_cqe ─► send
//! ```

use crate::bdev::{BdevCompletion, IoBuf};
use crate::ctrlr::{Controller, MAX_AERS};
use crate::poll_group::GroupCtx;
use crate::spec::{Cqe, Sqe, Status};
use crate::subsystem::{Namespace, NsTable};
use crate::transport::TransportAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One command as a transport hands it to the NVMe layer.
pub struct Cmd<'a> {
    pub sqe: &'a Sqe,
    /// Data buffer: host-to-controller data already received, or a buffer of the transfer
    /// length to fill for controller-to-host commands. I/O moves it into the bdev.
    pub buf: &'a mut Option<IoBuf>,
    /// Completion to fill ([`NvmeQueue::begin`] set SQHD; [`NvmeQueue::finish_cqe`] sets CID and SQID).
    pub cqe: &'a mut Cqe,
    /// Bdev tag routing the completion back to this request.
    pub tag: u64,
}

/// What happened to a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Exec {
    /// `cqe` holds the completion; send it now.
    Complete,
    /// Submitted to a bdev; the completion comes through the poll group.
    Pending,
    /// An Asynchronous Event Request is parked until an event occurs.
    Parked,
    /// Send the completion, then close the connection (Disconnect).
    CompleteThenClose,
}

/// Something a queue must act on between commands.
pub enum QueueEvent {
    /// Complete the parked AER in `slot` with DW0.
    Aen { slot: u16, dw0: u32 },
    /// Close this connection, for the reason given.
    Close(&'static str),
}

/// The queue's copy of its subsystem's namespace table as its controller's host sees it
/// (namespaces hidden from the host are absent), refreshed when the subsystem's generation
/// changes (one atomic load per lookup otherwise).
struct NsCache {
    generation: u64,
    table: Option<NsTable>,
    /// Some namespace of `table` lends DMA buffers (direct mode): only then does an I/O command
    /// look its namespace up for a buffer.
    lenders: bool,
}

impl NsCache {
    /// The per-I/O part: one atomic load and a compare (inlined; the reload is not).
    #[inline]
    fn refresh(&mut self, ctrl: &Controller) {
        let generation = ctrl.subsys.ns_generation.load(Ordering::Acquire);
        if generation != self.generation || self.table.is_none() {
            self.reload(ctrl, generation);
        }
    }

    #[cold]
    fn reload(&mut self, ctrl: &Controller, generation: u64) {
        let table = ctrl.subsys.ns_table_for(&ctrl.hostnqn);
        self.lenders = table.iter().flatten().any(|ns| ns.bdev.lends_buffers());
        self.table = Some(table);
        self.generation = generation;
    }
}

/// What a successful Connect sets on its queue (`NvmeQueue::connected`).
pub(crate) struct Connected {
    pub qid: u16,
    /// SQ size in entries (Connect SQSIZE + 1).
    pub sqsize: u16,
    pub sq_flow_disabled: bool,
    pub ctrl: Arc<Controller>,
    /// The controller's reset epoch when an I/O queue connected (0 for the admin queue).
    pub reset_epoch: u32,
    pub auth: Option<Box<crate::cmd::auth::QueueAuth>>,
}

/// A command [`NvmeQueue::begin`] let in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// A Fabrics Connect (its data is exactly `CONNECT_DATA_LEN` bytes).
    Connect,
    /// Any other command on a connected queue.
    Command,
}

pub struct NvmeQueue {
    qid: u16,
    /// SQ size in entries (from Connect SQSIZE + 1); 0 before Connect.
    sqsize: u16,
    sqhd: u16,
    /// The host disabled SQ flow control (Connect CATTR bit 2).
    sq_flow_disabled: bool,
    ctrl: Option<Arc<Controller>>,
    reset_epoch: u32,
    listener: TransportAddr,
    ns_cache: NsCache,
    /// Slots of parked Asynchronous Event Requests (admin queue only).
    aer_slots: Vec<u16>,
    /// DH-HMAC-CHAP state when this queue's host must authenticate (set at Connect).
    auth: Option<Box<crate::cmd::auth::QueueAuth>>,
    /// Commands submitted to a bdev and not yet completed (`Exec::Pending`).
    outstanding: usize,
    /// Fused Compare and Write pairs being put together (I/O queues).
    fused: crate::fused::pairing::Pairing,
    /// Bits 63:32 of this connection's bdev tags (transport and connection), from its first
    /// command: what the poll group still holds back for it is dropped when it closes.
    conn_tag: Option<u64>,
}

/// Connect's data is exactly this long (NVMe-oF 1.1 Figure 20).
pub const CONNECT_DATA_LEN: u32 = core::mem::size_of::<crate::spec::fabrics::ConnectData>() as u32;

impl NvmeQueue {
    pub fn new(listener: TransportAddr) -> Self {
        NvmeQueue {
            qid: 0,
            sqsize: 0,
            sqhd: 0,
            sq_flow_disabled: false,
            ctrl: None,
            reset_epoch: 0,
            listener,
            ns_cache: NsCache { generation: u64::MAX, table: None, lenders: false },
            aer_slots: Vec::with_capacity(MAX_AERS),
            auth: None,
            outstanding: 0,
            fused: Default::default(),
            conn_tag: None,
        }
    }

    /// Queue ID (0: admin queue; meaningful once connected).
    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// The controller this queue belongs to, once connected.
    pub fn controller(&self) -> Option<&Arc<Controller>> {
        self.ctrl.as_ref()
    }

    /// The listener the connection came in on.
    pub fn listener(&self) -> &TransportAddr {
        &self.listener
    }

    /// The host disabled SQ flow control at Connect (completions carry SQHD FFFFh).
    pub fn sq_flow_disabled(&self) -> bool {
        self.sq_flow_disabled
    }

    /// Bdev I/Os of this queue not yet completed: a closed connection is kept until they drain.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Whether a new command may be taken while `in_flight` commands of this queue are (the
    /// transport's requests not yet freed): the Connect alone before the queue is connected,
    /// then at most SQSIZE. A host that sends more has broken the protocol: close.
    #[inline]
    pub fn can_accept(&self, in_flight: usize) -> bool {
        let limit = if self.ctrl.is_some() { (self.sqsize as usize).max(1) } else { 1 };
        in_flight < limit.min(crate::ctrlr::MAX_QUEUE_DEPTH as usize)
    }

    /// A command was taken off the wire: reset its completion, advance the SQ head (SQHD goes
    /// into `cqe`) and check it may run; commands are begun in submission order, which pairs
    /// fused commands. `Err(status)`: complete it with that status at once, moving no data
    /// (nothing but Connect before the queue is connected; a fused second without a first).
    #[inline]
    pub fn begin(&mut self, ctx: &mut GroupCtx, sqe: &Sqe, cqe: &mut Cqe) -> Result<Admitted, Status> {
        *cqe = Cqe::default();
        let sqhd = self.consume_sqe();
        cqe.sqhd.set(sqhd);
        let fabrics = sqe.opcode == crate::spec::AdminOpcode::Fabrics as u8;
        // The I/O path: a connected queue and no fabrics command.
        if !fabrics && self.ctrl.is_some() {
            if self.fused.begin_needed(sqe) && self.qid != 0 {
                self.fused.begin(ctx, sqe)?;
            }
            return Ok(Admitted::Command);
        }
        if fabrics && self.qid != 0 {
            // A fabrics command is the next command too: a fused first before it lost its second.
            self.fused.interrupted(ctx);
        }
        if fabrics && sqe.fctype() == crate::spec::FabricsType::Connect as u8 {
            Ok(Admitted::Connect)
        } else if self.ctrl.is_some() {
            Ok(Admitted::Command)
        } else {
            Err(Status::generic(crate::spec::GenericStatus::COMMAND_SEQUENCE_ERROR).dnr())
        }
    }

    /// The bdev overwrites the whole data buffer of `sqe` (an I/O Read): a pool buffer for it
    /// need not be zeroed first. Every other controller-to-host buffer must be, so a short
    /// answer never leaks earlier data.
    #[inline]
    pub fn bdev_fills_buffer(&self, sqe: &Sqe) -> bool {
        self.qid != 0 && sqe.opcode == crate::spec::NvmOpcode::Read as u8
    }

    /// Fill in what every completion carries: CID, SQID, and SQHD FFFFh when SQ flow control is
    /// disabled (otherwise the SQHD [`NvmeQueue::begin`] set stays). Every completion the
    /// transport sends passes here, also those of commands it failed itself: a fused member's
    /// partner then fails too.
    #[inline]
    pub fn finish_cqe(&mut self, ctx: &mut GroupCtx, sqe: &Sqe, cqe: &mut Cqe) {
        if self.fused.active() && sqe.fuse() != 0 {
            self.fused.finished(ctx, sqe);
        }
        cqe.cid.set(sqe.cid.get());
        cqe.sqid.set(self.qid);
        if self.sq_flow_disabled {
            cqe.sqhd.set(0xffff);
        }
    }

    /// A bdev I/O of this queue finished: its buffer goes back into the request (`buf`; a buffer
    /// the request still held returns to the pool) and its status into `cqe`. The transport
    /// then completes the request, or frees it when the connection is closed.
    #[inline]
    pub fn bdev_complete(&mut self, ctx: &mut GroupCtx, done: BdevCompletion, buf: &mut Option<IoBuf>, cqe: &mut Cqe) {
        self.outstanding = self.outstanding.saturating_sub(1);
        if let Some(b) = done.buf {
            if let Some(old) = buf.replace(b) {
                ctx.bufs.put(old);
            }
        }
        crate::cmd::io::set_bdev_completion(cqe, done.status);
    }

    /// A bdev completion whose request the transport does not know: count it and return its
    /// buffer.
    #[cold]
    pub fn bdev_complete_unknown(&mut self, ctx: &mut GroupCtx, done: BdevCompletion) {
        self.outstanding = self.outstanding.saturating_sub(1);
        if let Some(b) = done.buf {
            ctx.bufs.put(b);
        }
    }

    /// Connect succeeded: this queue now belongs to `c.ctrl`.
    pub(crate) fn connected(&mut self, c: Connected) {
        self.qid = c.qid;
        self.sqsize = c.sqsize;
        self.sq_flow_disabled = c.sq_flow_disabled;
        self.reset_epoch = c.reset_epoch;
        self.auth = c.auth;
        self.ctrl = Some(c.ctrl);
    }

    /// Asynchronous Event Requests parked on this queue.
    pub(crate) fn parked_aers(&self) -> usize {
        self.aer_slots.len()
    }

    /// DH-HMAC-CHAP state of this queue, when its host must authenticate.
    pub(crate) fn auth_mut(&mut self) -> Option<&mut crate::cmd::auth::QueueAuth> {
        self.auth.as_deref_mut()
    }

    /// The host must still authenticate this queue: everything but AUTH_Send/Receive and
    /// Disconnect fails with Authentication Required.
    pub(crate) fn auth_pending(&self) -> bool {
        self.auth.as_ref().is_some_and(|a| !a.authenticated)
    }

    pub fn is_connected(&self) -> bool {
        self.ctrl.is_some()
    }

    /// Advance the SQ head for a command taken off the queue; returns SQHD for its completion.
    fn consume_sqe(&mut self) -> u16 {
        if self.sqsize > 0 {
            self.sqhd = (self.sqhd + 1) % self.sqsize;
        }
        self.sqhd
    }

    /// Execute one command (`begin` let it in, its data is in `cmd.buf`). `Pending` counts it
    /// as outstanding until [`NvmeQueue::bdev_complete`]; `Parked` keeps its slot (the slot part
    /// of `cmd.tag`) for a later `QueueEvent::Aen`.
    #[inline]
    pub fn execute(&mut self, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
        let tag = cmd.tag;
        let res = self.dispatch(ctx, cmd);
        match res {
            Exec::Pending => self.outstanding += 1,
            Exec::Parked => self.aer_slots.push(crate::transport::split_tag(tag).2),
            Exec::Complete | Exec::CompleteThenClose => {}
        }
        res
    }

    #[inline(always)]
    fn dispatch(&mut self, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
        cmd.cqe.set_status(Status::SUCCESS);
        if cmd.sqe.opcode == crate::spec::AdminOpcode::Fabrics as u8 {
            // The first command of every queue is a Connect.
            self.conn_tag.get_or_insert(cmd.tag >> 32);
            return crate::cmd::fabrics::execute(self, ctx, cmd);
        }
        let Some(ctrl) = self.ctrl.clone() else {
            cmd.cqe.set_status(Status::generic(crate::spec::GenericStatus::COMMAND_SEQUENCE_ERROR).dnr());
            return Exec::Complete;
        };
        if self.auth_pending() {
            cmd.cqe.set_status(Status::command_specific(crate::spec::CommandSpecificStatus::AUTH_REQUIRED).dnr());
            return Exec::Complete;
        }
        if cmd.sqe.fuse() != 0 {
            if self.qid != 0 {
                return crate::fused::execute_member(self, &ctrl, ctx, cmd);
            }
            // No admin command is fused: a FUSE value is refused, never ignored.
            cmd.cqe.set_status(Status::generic(crate::spec::GenericStatus::INVALID_FIELD).dnr());
            return Exec::Complete;
        }
        if self.qid == 0 {
            crate::cmd::admin::execute(self, &ctrl, ctx, cmd)
        } else {
            crate::cmd::io::execute(self, &ctrl, ctx, cmd)
        }
    }

    /// This queue's fused pairs being put together.
    pub(crate) fn fused_mut(&mut self) -> &mut crate::fused::pairing::Pairing {
        &mut self.fused
    }

    /// The namespace `nsid` as this queue currently sees it. Reads one atomic in the common
    /// case; refreshes the cached table (taking the subsystem lock) only after a change.
    pub(crate) fn namespace(&mut self, ctrl: &Controller, nsid: u32) -> Option<Arc<Namespace>> {
        self.namespace_ref(ctrl, nsid).cloned()
    }

    /// [`NvmeQueue::namespace`] without taking a reference count (the I/O path).
    #[inline]
    pub(crate) fn namespace_ref(&mut self, ctrl: &Controller, nsid: u32) -> Option<&Arc<Namespace>> {
        self.ns_cache.refresh(ctrl);
        self.ns_cache.table.as_ref()?.get((nsid as usize).wrapping_sub(1))?.as_ref()
    }

    /// Every namespace slot as this queue currently sees it (index = NSID - 1): the namespaces
    /// visible to the controller's host.
    pub(crate) fn ns_table(&mut self, ctrl: &Controller) -> NsTable {
        self.ns_cache.refresh(ctrl);
        self.ns_cache.table.clone().unwrap_or_default()
    }

    /// A buffer of `len` bytes for the data of I/O command `sqe`: lent by the namespace's
    /// bdev channel when the device can work on it in place (direct mode: no copy between the
    /// network and the device), otherwise (or when none is free) from the poll group's pool.
    /// `None` when neither has one: the caller waits and retries.
    #[inline]
    pub fn data_buf(&mut self, ctx: &mut GroupCtx, sqe: &Sqe, len: usize) -> Option<IoBuf> {
        self.lent_buf(ctx, sqe, len).or_else(|| ctx.bufs.get(len))
    }

    /// A DMA buffer lent by the namespace's bdev channel for command `sqe`'s data, or `None`
    /// (not direct mode, or none free).
    #[inline]
    pub(crate) fn lent_buf(&mut self, ctx: &mut GroupCtx, sqe: &Sqe, len: usize) -> Option<IoBuf> {
        let ctrl = self.ctrl.as_ref()?;
        self.ns_cache.refresh(ctrl);
        // The common case first (inlined): no namespace of the subsystem lends buffers.
        if !self.ns_cache.lenders {
            return None;
        }
        self.lent_buf_from_channel(ctx, sqe, len)
    }

    fn lent_buf_from_channel(&mut self, ctx: &mut GroupCtx, sqe: &Sqe, len: usize) -> Option<IoBuf> {
        // Dataset Management ranges are read by the target, not moved by the device.
        if self.qid != 0 && sqe.opcode != crate::spec::NvmOpcode::DatasetManagement as u8 && !self.auth_pending() {
            let ns =
                self.ns_cache.table.as_ref().and_then(|t| t.get((sqe.nsid.get() as usize).wrapping_sub(1))?.as_ref());
            if let Some(ns) = ns.filter(|ns| ns.bdev.lends_buffers()) {
                return ctx.channel(ns).and_then(|ch| ch.alloc_buf(len));
            }
        }
        None
    }

    /// Checks done on a timer tick ([`GroupCtx::is_tick`]): controller teardown, reset,
    /// keep-alive, pending events, a fused first whose next command does not come.
    pub fn poll_event(&mut self, ctx: &mut GroupCtx) -> Option<QueueEvent> {
        let now = ctx.now();
        if self.fused.active() {
            self.fused.expire(ctx);
        }
        let ctrl = self.ctrl.as_ref()?;
        if ctrl.is_failed() {
            return Some(QueueEvent::Close("controller torn down"));
        }
        if self.qid != 0 {
            if ctrl.reset_epoch() != self.reset_epoch {
                return Some(QueueEvent::Close("controller reset"));
            }
            return None;
        }
        if ctrl.keep_alive_expired(now) {
            log::warn!(
                "controller {} of {} for host {}: keep-alive timeout ({} ms) expired",
                ctrl.cntlid,
                ctrl.subsys.nqn,
                ctrl.hostnqn,
                ctrl.kato_ms()
            );
            ctrl.fail();
            return Some(QueueEvent::Close("keep-alive timeout"));
        }
        if ctrl.subsys.is_discovery() {
            ctrl.check_discovery_change();
        }
        if ctrl.event_flag.load(Ordering::Acquire) && !self.aer_slots.is_empty() {
            if let Some(dw0) = crate::cmd::admin::take_event(ctrl) {
                let slot = self.aer_slots.remove(0);
                return Some(QueueEvent::Aen { slot, dw0 });
            }
        }
        None
    }

    /// The connection is gone: release the queue ID, or tear the controller down with its
    /// admin queue. Fused members the queue still holds complete through `bdev_complete`.
    pub fn on_close(&mut self, ctx: &mut GroupCtx) {
        self.fused.close(ctx);
        if let Some(conn) = self.conn_tag.take() {
            ctx.abort_not_started(conn);
        }
        if let Some(ctrl) = self.ctrl.take() {
            if self.qid == 0 {
                ctrl.fail();
                log::info!("controller {} of {} for host {} destroyed", ctrl.cntlid, ctrl.subsys.nqn, ctrl.hostnqn);
            } else if ctrl.reset_epoch() == self.reset_epoch {
                ctrl.release_io_queue(self.qid);
            }
        }
        self.aer_slots.clear();
        self.auth = None;
    }
}
