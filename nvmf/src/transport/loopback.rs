//! The in-process loopback transport (like Linux's nvmet-loop; NVMe-oF TRTYPE FEh, intra-host):
//! a host in the same process submits SQEs with their data and takes completions with theirs,
//! with no sockets and no PDUs. The library's tests, the fuzzers and embedding applications use
//! it to drive the target's command layer directly.
//!
//! It is built only on the public transport API (`Transport` and its traits, [`GroupCtx`]'s
//! public methods, [`NvmeQueue`]), as a transport outside this crate would be: the request
//! lifecycle (admission, SQHD, completion fields, AER parking, bdev completions) lives in the
//! queue, and this file only moves commands, data and completions between the two ends.
//!
//! Each connection is a pair of queues behind one mutex, taken once per poll per connection:
//! at most `MAX_SLOTS` submissions wait (`submit` answers `QueueFull`), and a host with that
//! many completions not taken gets no new command started. The loopback transport is for
//! testing and embedding, not a data path.

use super::{direction, Dir, Transport, TransportAddr, TransportConn, TransportListener, TransportPollGroup};
use super::{TransportType, TransportType::Loop};
use crate::bdev::{BdevCompletion, IoBuf};
use crate::ctrlr::MAX_QUEUE_DEPTH;
use crate::group_ctx::GroupCtx;
use crate::queue::{Admitted, Cmd, Exec, NvmeQueue, QueueEvent, CONNECT_DATA_LEN};
use crate::spec::{Cqe, GenericStatus, Sqe, Status};
use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// Most commands a host may have submitted and not yet completed on one connection (the
/// largest SQ size a host may ask for); more closes the connection, as on the wire transports.
const MAX_SLOTS: usize = MAX_QUEUE_DEPTH as usize;
/// Commands taken from one connection per poll, so one busy host cannot monopolise the group.
const BATCH: usize = 32;

/// Why the host end could not submit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoopbackError {
    #[error("no loopback listener at {0}")]
    NoListener(String),
    #[error("connection closed")]
    Closed,
    #[error("data of {0} bytes exceeds the largest transfer ({1} bytes)")]
    TooLarge(usize, usize),
    #[error("{MAX_SLOTS} submissions are waiting: take completions first")]
    QueueFull,
}

/// A completion as the host end receives it.
#[derive(Clone, Debug)]
pub struct LoopbackCompletion {
    pub cqe: Cqe,
    /// Controller-to-host data (empty for other commands or on error).
    pub data: Vec<u8>,
}

struct Submission {
    sqe: Sqe,
    data: Vec<u8>,
    /// `NvmeQueue::begin` already ran for it (it waits for a buffer): its completion so far.
    begun: Option<Cqe>,
}

#[derive(Default)]
struct Pipe {
    sq: VecDeque<Submission>,
    cq: VecDeque<LoopbackCompletion>,
    host_closed: bool,
    target_closed: bool,
}

type SharedPipe = Arc<Mutex<Pipe>>;

fn lock(p: &SharedPipe) -> MutexGuard<'_, Pipe> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Listeners by name, with the connections each has not yet accepted.
type Registry = Arc<Mutex<HashMap<String, VecDeque<SharedPipe>>>>;

/// The loopback transport. Add it to the target, listen on [`TransportAddr::loopback`], and
/// connect hosts with [`LoopbackTransport::connect`].
#[derive(Default)]
pub struct LoopbackTransport {
    listeners: Registry,
}

impl LoopbackTransport {
    pub fn new() -> Self {
        Self::default()
    }

    /// Open a connection to the listener at `addr`; the target accepts it on its next
    /// `Target::accept`.
    pub fn connect(&self, addr: &TransportAddr) -> Result<LoopbackHost, LoopbackError> {
        let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        let pending = l.get_mut(&addr.traddr).ok_or_else(|| LoopbackError::NoListener(addr.traddr.clone()))?;
        let pipe = SharedPipe::default();
        pending.push_back(pipe.clone());
        Ok(LoopbackHost { pipe })
    }
}

impl Transport for LoopbackTransport {
    fn trtype(&self) -> TransportType {
        Loop
    }

    fn listen(&self, addr: &TransportAddr) -> crate::Result<Box<dyn TransportListener>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).entry(addr.traddr.clone()).or_default();
        Ok(Box::new(LoopbackListener { addr: addr.clone(), listeners: self.listeners.clone() }))
    }

    fn create_poll_group(&self) -> Box<dyn TransportPollGroup> {
        Box::new(LoopbackPollGroup { conns: Vec::new() })
    }
}

/// The host end of one loopback connection.
pub struct LoopbackHost {
    pipe: SharedPipe,
}

impl LoopbackHost {
    /// Submit a command. `data` is its host-to-controller data; the controller-to-host length
    /// comes from SGL1's length, as on the wire.
    pub fn submit(&self, sqe: Sqe, data: &[u8]) -> Result<(), LoopbackError> {
        let max = crate::MAX_IO_SIZE;
        if data.len() > max {
            return Err(LoopbackError::TooLarge(data.len(), max));
        }
        let mut p = lock(&self.pipe);
        if p.target_closed || p.host_closed {
            return Err(LoopbackError::Closed);
        }
        if p.sq.len() >= MAX_SLOTS {
            return Err(LoopbackError::QueueFull);
        }
        p.sq.push_back(Submission { sqe, data: data.to_vec(), begun: None });
        Ok(())
    }

    /// The oldest completion not yet taken.
    pub fn take_completion(&self) -> Option<LoopbackCompletion> {
        lock(&self.pipe).cq.pop_front()
    }

    /// The target closed the connection (and every completion has been taken).
    pub fn is_closed(&self) -> bool {
        let p = lock(&self.pipe);
        p.target_closed && p.cq.is_empty()
    }

    /// Close the connection from the host side.
    pub fn close(&self) {
        lock(&self.pipe).host_closed = true;
    }
}

impl Drop for LoopbackHost {
    fn drop(&mut self) {
        self.close();
    }
}

struct LoopbackListener {
    addr: TransportAddr,
    listeners: Registry,
}

impl TransportListener for LoopbackListener {
    fn addr(&self) -> &TransportAddr {
        &self.addr
    }
    fn accept(&mut self) -> Option<Box<dyn TransportConn>> {
        let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        let pipe = l.get_mut(&self.addr.traddr)?.pop_front()?;
        Some(Box::new(LoopbackConn { pipe }))
    }
}

impl Drop for LoopbackListener {
    fn drop(&mut self) {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.addr.traddr);
    }
}

struct LoopbackConn {
    pipe: SharedPipe,
}

impl TransportConn for LoopbackConn {
    fn trtype(&self) -> TransportType {
        Loop
    }
    fn peer(&self) -> String {
        "loopback".to_string()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

#[derive(Default)]
struct Request {
    sqe: Sqe,
    cqe: Cqe,
    buf: Option<IoBuf>,
    dir: Dir,
    busy: bool,
}

struct Conn {
    q: NvmeQueue,
    pipe: SharedPipe,
    reqs: Vec<Request>,
    free: Vec<u16>,
    /// A submission waiting for a pool buffer.
    waiting: Option<Submission>,
    closed: bool,
    /// `close_all` asked: close on the next poll.
    shutting_down: bool,
}

struct LoopbackPollGroup {
    conns: Vec<Option<Conn>>,
}

impl Conn {
    fn in_flight(&self) -> usize {
        MAX_SLOTS - self.free.len()
    }

    fn close(&mut self, ctx: &mut GroupCtx) {
        if !self.closed {
            self.closed = true;
            self.q.on_close(ctx);
            lock(&self.pipe).target_closed = true;
        }
    }

    /// Send request `slot`'s completion with its data and free the slot.
    fn complete(&mut self, slot: u16, ctx: &mut GroupCtx) {
        let r = &mut self.reqs[slot as usize];
        self.q.finish_cqe(ctx, &r.sqe, &mut r.cqe);
        let mut data = Vec::new();
        if let Some(b) = r.buf.take() {
            if r.dir == Dir::CtrlToHost && r.cqe.status().is_success() {
                data.extend_from_slice(b.as_slice());
            }
            ctx.put_buffer(b);
        }
        r.busy = false;
        let cqe = r.cqe;
        self.free.push(slot);
        if !self.closed {
            lock(&self.pipe).cq.push_back(LoopbackCompletion { cqe, data });
        }
    }

    fn complete_with(&mut self, slot: u16, status: Status, ctx: &mut GroupCtx) {
        self.reqs[slot as usize].cqe.set_status(status);
        self.complete(slot, ctx);
    }

    /// Take one submission: admit it, give it a buffer with its data, execute it. `Err` gives
    /// the submission back when no buffer is free.
    fn start(&mut self, conn: u32, s: Submission, ctx: &mut GroupCtx) -> Result<(), Submission> {
        if !self.q.can_accept(self.in_flight()) {
            log::warn!("loopback host exceeded its queue depth: closing");
            self.close(ctx);
            return Ok(());
        }
        let Some(&slot) = self.free.last() else { return Err(s) };
        let len = s.sqe.sgl1().length.get() as usize;
        let dir = direction(&s.sqe);
        // Admission and lengths first: nothing is allocated for a command that fails.
        let (cqe, early) = match s.begun {
            Some(cqe) => (cqe, None),
            None => {
                let mut cqe = Cqe::default();
                let admitted = self.q.begin(ctx, &s.sqe, &mut cqe);
                let bad_len = match (admitted, dir) {
                    (Err(_), _) => false,
                    (Ok(Admitted::Connect), _) => len as u32 != CONNECT_DATA_LEN || s.data.len() != len,
                    (Ok(_), Dir::HostToCtrl) => s.data.len() != len,
                    (Ok(_), _) => !s.data.is_empty(),
                } || len > crate::MAX_IO_SIZE;
                let early = match admitted {
                    Err(status) => Some(status),
                    Ok(_) if bad_len => Some(Status::generic(GenericStatus::DATA_SGL_LENGTH_INVALID).dnr()),
                    Ok(_) => None,
                };
                (cqe, early)
            }
        };
        let mut buf = None;
        if early.is_none() && len > 0 && dir != Dir::None {
            match self.q.data_buf(ctx, &s.sqe, len) {
                Some(b) => buf = Some(b),
                // No buffer free: retried on a later poll, admitted once.
                None => return Err(Submission { begun: Some(cqe), ..s }),
            }
        }
        self.free.pop();
        let r = &mut self.reqs[slot as usize];
        r.sqe = s.sqe;
        r.cqe = cqe;
        r.busy = true;
        r.dir = dir;
        r.buf = buf;
        if let Some(status) = early {
            self.complete_with(slot, status, ctx);
            return Ok(());
        }
        let fills = self.q.bdev_fills_buffer(&r.sqe);
        if let Some(b) = r.buf.as_mut() {
            match dir {
                Dir::HostToCtrl => b.as_mut_slice().copy_from_slice(&s.data),
                Dir::CtrlToHost if !fills => b.zero(),
                _ => {}
            }
        }
        let tag = ctx.tag(conn, slot);
        match self.q.execute(ctx, Cmd { sqe: &r.sqe, buf: &mut r.buf, cqe: &mut r.cqe, tag }) {
            Exec::Complete => self.complete(slot, ctx),
            Exec::Pending | Exec::Parked => {}
            Exec::CompleteThenClose => {
                self.complete(slot, ctx);
                self.close(ctx);
            }
        }
        Ok(())
    }

    fn poll(&mut self, conn: u32, ctx: &mut GroupCtx) -> usize {
        let mut work = 0;
        if self.closed {
            return 0;
        }
        if self.shutting_down {
            log::info!("loopback connection closed: target shutting down");
            self.close(ctx);
            return 1;
        }
        if ctx.is_tick() {
            match self.q.poll_event(ctx) {
                Some(QueueEvent::Close(why)) => {
                    log::info!("loopback connection closed: {why}");
                    self.close(ctx);
                    return 1;
                }
                Some(QueueEvent::Aen { slot, dw0 }) => {
                    if self.reqs.get(slot as usize).is_some_and(|r| r.busy) {
                        self.reqs[slot as usize].cqe.dw0.set(dw0);
                        self.complete(slot, ctx);
                    }
                    work += 1;
                }
                None => {}
            }
        }
        for _ in 0..BATCH {
            let next = match self.waiting.take() {
                Some(s) => Some(s),
                None => {
                    let mut p = lock(&self.pipe);
                    if p.host_closed {
                        drop(p);
                        self.close(ctx);
                        return work + 1;
                    }
                    // A host that does not take its completions stops being served.
                    if p.cq.len() >= MAX_SLOTS {
                        break;
                    }
                    p.sq.pop_front()
                }
            };
            let Some(s) = next else { break };
            work += 1;
            if let Err(s) = self.start(conn, s, ctx) {
                self.waiting = Some(s);
                break;
            }
            if self.closed {
                break;
            }
        }
        work
    }
}

impl TransportPollGroup for LoopbackPollGroup {
    fn trtype(&self) -> TransportType {
        Loop
    }

    fn add(&mut self, conn: Box<dyn TransportConn>, listener: TransportAddr, _ctx: &mut GroupCtx) {
        let Ok(c) = conn.into_any().downcast::<LoopbackConn>() else {
            log::error!("loopback poll group given a connection of another transport");
            return;
        };
        let c = Conn {
            q: NvmeQueue::new(listener),
            pipe: c.pipe,
            reqs: (0..MAX_SLOTS).map(|_| Request::default()).collect(),
            free: (0..MAX_SLOTS as u16).rev().collect(),
            waiting: None,
            closed: false,
            shutting_down: false,
        };
        match self.conns.iter().position(Option::is_none) {
            Some(i) => self.conns[i] = Some(c),
            None => self.conns.push(Some(c)),
        }
    }

    fn poll(&mut self, ctx: &mut GroupCtx) -> usize {
        let mut work = 0;
        for (i, slot) in self.conns.iter_mut().enumerate() {
            let Some(c) = slot.as_mut() else { continue };
            work += c.poll(i as u32, ctx);
            if c.closed && c.q.outstanding() == 0 {
                // Parked AERs and anything else still held go back with the connection.
                for r in c.reqs.iter_mut() {
                    if let Some(b) = r.buf.take() {
                        ctx.put_buffer(b);
                    }
                }
                *slot = None;
            }
        }
        work
    }

    fn bdev_complete(&mut self, conn: u32, slot: u16, done: BdevCompletion, ctx: &mut GroupCtx) {
        let Some(c) = self.conns.get_mut(conn as usize).and_then(Option::as_mut) else {
            if let Some(b) = done.buf {
                ctx.put_buffer(b);
            }
            return;
        };
        let Some(r) = c.reqs.get_mut(slot as usize).filter(|r| r.busy) else {
            return c.q.bdev_complete_unknown(ctx, done);
        };
        c.q.bdev_complete(ctx, done, &mut r.buf, &mut r.cqe);
        c.complete(slot, ctx);
    }

    fn num_connections(&self) -> usize {
        self.conns.iter().flatten().count()
    }

    fn close_all(&mut self) {
        // Closed by their next poll (which has the group's context).
        for c in self.conns.iter_mut().flatten() {
            c.shutting_down = true;
        }
    }
}
