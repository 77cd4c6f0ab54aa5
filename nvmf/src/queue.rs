//! Transport-independent state of one NVMe queue (a `Qpair`'s NVMe side): which controller it
//! belongs to, its queue ID and size, SQ head, the cached namespace table, pending AERs. Every
//! transport drives its connections through `NvmeQueue::execute`.

use crate::bdev::IoBuf;
use crate::ctrlr::{Controller, MAX_AERS};
use crate::poll_group::GroupCtx;
use crate::spec::{Cqe, Sqe, Status};
use crate::subsystem::{Namespace, NsTable};
use crate::transport::TransportAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// One command as a transport hands it to the NVMe layer.
pub(crate) struct Cmd<'a> {
    pub sqe: &'a Sqe,
    /// Data buffer: host-to-controller data already received, or a buffer of the transfer
    /// length to fill for controller-to-host commands. I/O moves it into the bdev.
    pub buf: &'a mut Option<IoBuf>,
    /// Completion to fill (CID, SQID and SQHD are set by the transport).
    pub cqe: &'a mut Cqe,
    /// Bdev tag routing the completion back to this request.
    pub tag: u64,
}

/// What happened to a command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Exec {
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
pub(crate) enum QueueEvent {
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

pub(crate) struct NvmeQueue {
    pub qid: u16,
    /// SQ size in entries (from Connect SQSIZE + 1); 0 before Connect.
    pub sqsize: u16,
    pub sqhd: u16,
    /// The host disabled SQ flow control (Connect CATTR bit 2).
    pub sq_flow_disabled: bool,
    pub ctrl: Option<Arc<Controller>>,
    pub reset_epoch: u32,
    pub listener: TransportAddr,
    ns_cache: NsCache,
    /// Slots of parked Asynchronous Event Requests (admin queue only).
    pub aer_slots: Vec<u16>,
    /// DH-HMAC-CHAP state when this queue's host must authenticate (set at Connect).
    pub auth: Option<Box<crate::cmd::auth::QueueAuth>>,
}

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
        }
    }

    /// The host must still authenticate this queue: everything but AUTH_Send/Receive and
    /// Disconnect fails with Authentication Required.
    pub fn auth_pending(&self) -> bool {
        self.auth.as_ref().is_some_and(|a| !a.authenticated)
    }

    pub fn is_connected(&self) -> bool {
        self.ctrl.is_some()
    }

    /// Advance the SQ head for a command taken off the queue; returns SQHD for its completion.
    pub fn consume_sqe(&mut self) -> u16 {
        if self.sqsize > 0 {
            self.sqhd = (self.sqhd + 1) % self.sqsize;
        }
        self.sqhd
    }

    /// Execute one command.
    pub fn execute(&mut self, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
        cmd.cqe.set_status(Status::SUCCESS);
        if cmd.sqe.opcode == crate::spec::AdminOpcode::Fabrics as u8 {
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
        if self.qid == 0 {
            crate::cmd::admin::execute(self, &ctrl, ctx, cmd)
        } else {
            crate::cmd::io::execute(self, &ctrl, ctx, cmd)
        }
    }

    /// The namespace `nsid` as this queue currently sees it. Reads one atomic in the common
    /// case; refreshes the cached table (taking the subsystem lock) only after a change.
    pub fn namespace(&mut self, ctrl: &Controller, nsid: u32) -> Option<Arc<Namespace>> {
        self.namespace_ref(ctrl, nsid).cloned()
    }

    /// [`NvmeQueue::namespace`] without taking a reference count (the I/O path).
    #[inline]
    pub fn namespace_ref(&mut self, ctrl: &Controller, nsid: u32) -> Option<&Arc<Namespace>> {
        self.ns_cache.refresh(ctrl);
        self.ns_cache.table.as_ref()?.get((nsid as usize).wrapping_sub(1))?.as_ref()
    }

    /// Every namespace slot as this queue currently sees it (index = NSID - 1): the namespaces
    /// visible to the controller's host.
    pub fn ns_table(&mut self, ctrl: &Controller) -> NsTable {
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
    pub fn lent_buf(&mut self, ctx: &mut GroupCtx, sqe: &Sqe, len: usize) -> Option<IoBuf> {
        let ctrl = self.ctrl.as_ref()?;
        self.ns_cache.refresh(ctrl);
        // The common case first: no namespace of the subsystem lends buffers.
        if !self.ns_cache.lenders {
            return None;
        }
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

    /// Checks done once per poll: controller teardown, reset, keep-alive, pending events.
    pub fn poll_event(&mut self, now: Instant) -> Option<QueueEvent> {
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
        if ctrl.event_flag.load(Ordering::Acquire) && !self.aer_slots.is_empty() {
            if let Some(dw0) = crate::cmd::admin::take_event(ctrl) {
                let slot = self.aer_slots.remove(0);
                return Some(QueueEvent::Aen { slot, dw0 });
            }
        }
        None
    }

    /// The connection is gone: release the queue ID, or tear the controller down with its
    /// admin queue.
    pub fn on_close(&mut self) {
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
