//! One NVMe/TCP connection: the receive state machine (PDU header -> payload -> data digest),
//! per-request state (like SPDK's request states: new, awaiting H2C data, executing, parked,
//! completed), and the send buffer. Nothing here panics on network input: every length is
//! checked, and a malformed PDU ends in a C2HTermReq and closes only this connection.

use super::pdu_rx::{self, H2cExpect, Refusal, RxParams};
use super::pdu_tx;
use super::send::{SendQueue, ZERO_COPY_MIN};
use super::TcpTransportOpts;
use crate::bdev::{BdevCompletion, IoBuf};
use crate::poll_group::GroupCtx;
use crate::queue::{Admitted, Cmd, Exec, NvmeQueue, QueueEvent, CONNECT_DATA_LEN};
use crate::spec::sqe::{sgl_subtype, sgl_type};
use crate::spec::tcp::{
    dgst, digest_append, fes, pdu_flags, pdu_type, CapsuleCmdHdr, CommonHeader, DataHdr, ICReq, DIGEST_LEN,
};
use crate::spec::{Cqe, GenericStatus, Sqe, Status};
use crate::transport::limits::{ConnSlot, DataBudget};
use crate::transport::{direction, make_tag, Dir};
use mio::net::TcpStream;
use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};
use zerocopy::FromBytes;

/// Most commands in flight on one connection (the largest SQ size a host may ask for).
const MAX_SLOTS: usize = crate::ctrlr::MAX_QUEUE_DEPTH as usize;
/// Read payloads straight into the request buffer when at least this much is outstanding.
const DIRECT_READ_MIN: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReqState {
    Free,
    /// Receiving in-capsule data.
    CapsuleData,
    /// Waiting for a buffer from the pool before sending an R2T or executing.
    NeedBuffer,
    /// R2T sent; receiving H2CData.
    AwaitingH2C,
    /// Submitted to a bdev.
    Executing,
    /// An AER parked until an event.
    Parked,
}

struct TcpReq {
    state: ReqState,
    sqe: Sqe,
    cqe: Cqe,
    buf: Option<IoBuf>,
    dir: Dir,
    /// Transfer length from SGL1.
    xfer_len: u32,
    /// H2C data received so far.
    h2c_done: u32,
    /// A data digest did not match: fail the command once its data is in.
    digest_error: bool,
    /// Bytes of its buffer counted against the connection's data budget.
    held: u32,
    /// When its R2T went out (the H2CData timeout runs from here).
    r2t_at: Instant,
}

impl TcpReq {
    fn new(now: Instant) -> Self {
        TcpReq {
            state: ReqState::Free,
            sqe: Sqe::default(),
            cqe: Cqe::default(),
            buf: None,
            dir: Dir::None,
            xfer_len: 0,
            h2c_done: 0,
            digest_error: false,
            held: 0,
            r2t_at: now,
        }
    }
}

/// The connection's timeouts (`None`: disabled).
struct Timeouts {
    icreq: Option<Duration>,
    connect: Option<Duration>,
    h2c_data: Option<Duration>,
    send: Option<Duration>,
}

fn timeout(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Where the receive state machine is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rx {
    /// Next bytes are a PDU header.
    Header,
    /// Skipping `pad` bytes, then copying `left` payload bytes into request `slot` at `pos`.
    Payload { slot: u16, pad: usize, pos: usize, left: usize, h2c: bool, last: bool },
    /// Four bytes of data digest for the payload just received.
    DataDigest { slot: u16, h2c: bool, last: bool, end: usize },
}

/// Why a connection must end.
pub(crate) enum Fatal {
    /// Send a C2HTermReq, then close.
    TermReq { fes: u16, fei: u32 },
    /// Close without a TermReq (peer closed, socket error, H2CTermReq, teardown).
    Close(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnState {
    AwaitIcReq,
    Ready,
    /// Flushing what is queued (TermReq, final response), then close.
    Closing,
    /// Socket closed; waiting for bdev I/O to drain.
    Closed,
}

pub(crate) struct TcpConn {
    pub sock: TcpStream,
    pub peer: String,
    pub idx: u32,
    pub state: ConnState,
    q: NvmeQueue,
    hdgst: bool,
    ddgst: bool,
    hpda: u8,
    maxh2cdata: u32,
    max_io: u32,
    icd_size: u32,
    c2h_success: bool,
    allow_digests: bool,
    rx: Box<[u8]>,
    rx_head: usize,
    rx_tail: usize,
    rx_state: Rx,
    /// Running data digest of the current payload.
    rx_crc: u32,
    /// PDUs to send: bytes, plus C2HData payloads sent from their request buffers.
    tx: SendQueue,
    reqs: Vec<TcpReq>,
    free: Vec<u16>,
    /// Requests waiting for a pool buffer (or for room in the data budget), oldest first.
    need_buf: Vec<u16>,
    /// Data buffers this connection holds, against its own and its controller's limits.
    budget: DataBudget,
    max_data_per_ctrlr: u64,
    /// Take no new commands while more than this waits to be sent.
    send_backlog: usize,
    timeouts: Timeouts,
    /// When the current handshake step began (accept, then ICResp).
    since: Instant,
    /// Requests with an R2T out and their data not all in.
    awaiting_h2c: u16,
    /// Next time the H2CData timeout is checked.
    next_h2c_check: Instant,
    /// Bytes written to the socket so far, and the count and time the write-stall check last
    /// saw them move.
    tx_written: u64,
    tx_seen: u64,
    tx_seen_at: Instant,
    /// Its place under the connection limits.
    _slot: ConnSlot,
    pub readable: bool,
    pub writable: bool,
    /// The poller reported the peer's FIN or RST (or a socket error). It reports that edge only
    /// once, often together with the last data: from then on a short read no longer means
    /// "drained until the next edge", so reads go on until they return 0 or the error.
    pub peer_closed: bool,
}

impl TcpConn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sock: TcpStream,
        peer: String,
        idx: u32,
        listener: crate::transport::TransportAddr,
        opts: &TcpTransportOpts,
        slot: ConnSlot,
        now: Instant,
    ) -> Self {
        TcpConn {
            sock,
            peer,
            idx,
            state: ConnState::AwaitIcReq,
            q: NvmeQueue::new(listener),
            hdgst: false,
            ddgst: false,
            hpda: 0,
            maxh2cdata: opts.max_h2c_data.max(4096),
            max_io: opts.max_io_size,
            icd_size: opts.in_capsule_data_size,
            c2h_success: opts.c2h_success,
            allow_digests: opts.allow_digests,
            rx: vec![0; opts.recv_buf_size.max(4096)].into_boxed_slice(),
            rx_head: 0,
            rx_tail: 0,
            rx_state: Rx::Header,
            rx_crc: 0,
            tx: SendQueue::new(16 * 1024),
            reqs: (0..MAX_SLOTS).map(|_| TcpReq::new(now)).collect(),
            free: (0..MAX_SLOTS as u16).rev().collect(),
            need_buf: Vec::with_capacity(MAX_SLOTS),
            budget: DataBudget::new(opts.max_data_per_qpair),
            max_data_per_ctrlr: opts.max_data_per_ctrlr,
            send_backlog: opts.send_backlog_size,
            timeouts: Timeouts {
                icreq: timeout(opts.icreq_timeout_ms),
                connect: timeout(opts.connect_timeout_ms),
                h2c_data: timeout(opts.h2c_data_timeout_ms),
                send: timeout(opts.send_timeout_ms),
            },
            since: now,
            awaiting_h2c: 0,
            next_h2c_check: now,
            tx_written: 0,
            tx_seen: 0,
            tx_seen_at: now,
            _slot: slot,
            readable: true,
            writable: true,
            peer_closed: false,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == ConnState::Closed
    }

    /// Closed, and no bdev I/O of it is still outstanding: it can be dropped.
    pub fn is_drained(&self) -> bool {
        self.is_closed() && self.q.outstanding() == 0
    }

    /// Queue a TermReq for `hdr` (the offending header bytes) and start closing.
    pub fn fail(&mut self, f: Fatal, hdr: &[u8]) {
        if matches!(self.state, ConnState::Closing | ConnState::Closed) {
            return;
        }
        match f {
            Fatal::TermReq { fes, fei } => {
                log::warn!("connection {}: C2HTermReq FES {fes:#x} FEI {fei:#x}", self.peer);
                pdu_tx::c2h_term_req(self.tx.bytes_mut(), fes, fei, hdr);
            }
            Fatal::Close(why) => log::info!("connection {}: closing ({why})", self.peer),
        }
        self.state = ConnState::Closing;
    }

    /// Close the socket and drop NVMe state; buffers come back as bdev I/O completes.
    pub fn close(&mut self, ctx: &mut GroupCtx) {
        if self.state == ConnState::Closed {
            return;
        }
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        self.state = ConnState::Closed;
        self.q.on_close(ctx);
        for r in self.reqs.iter_mut() {
            if r.state != ReqState::Executing {
                if let Some(b) = r.buf.take() {
                    ctx.bufs.put(b);
                }
                self.budget.give(std::mem::take(&mut r.held));
                r.state = ReqState::Free;
            }
        }
        self.need_buf.clear();
        self.awaiting_h2c = 0;
        self.tx.shut(&mut ctx.bufs);
        self.rx = Box::new([]);
    }

    /// Periodic checks: controller teardown, reset, keep-alive, asynchronous events.
    pub fn poll_events(&mut self, ctx: &mut GroupCtx) -> usize {
        if self.state != ConnState::Ready {
            return 0;
        }
        match self.q.poll_event(ctx) {
            None => 0,
            Some(QueueEvent::Close(why)) => {
                self.fail(Fatal::Close(why), &[]);
                1
            }
            Some(QueueEvent::Aen { slot, dw0 }) => {
                if let Some(r) = self.reqs.get_mut(slot as usize) {
                    r.cqe.dw0.set(dw0);
                    self.complete(slot, ctx);
                }
                1
            }
        }
    }

    /// Retry requests that waited for a buffer.
    pub fn retry_need_buf(&mut self, ctx: &mut GroupCtx) -> usize {
        let mut n = 0;
        if self.tx.pending() > self.send_backlog {
            return 0; // the host is not reading: execute nothing more for it
        }
        while let Some(&slot) = self.need_buf.first() {
            if !self.take_buf(slot, ctx) {
                break;
            }
            self.need_buf.remove(0);
            self.start_transfer(slot, ctx);
            n += 1;
        }
        n
    }

    /// Give request `slot` a buffer for its transfer, within the data budget; `false` when the
    /// budget or the pool has no room (it waits in `need_buf`).
    fn take_buf(&mut self, slot: u16, ctx: &mut GroupCtx) -> bool {
        let r = &self.reqs[slot as usize];
        let (len, dir) = (r.xfer_len, r.dir);
        if !self.budget.take(len) {
            return false;
        }
        // Borrows of two fields, not of `self`: the SQE is not copied.
        let Some(mut buf) = self.q.data_buf(ctx, &self.reqs[slot as usize].sqe, len as usize) else {
            self.budget.give(len);
            return false;
        };
        // Pool buffers hold earlier I/O's data: anything but a read that the bdev fills
        // completely is zeroed so a short answer never leaks it.
        if dir == Dir::CtrlToHost && !self.q.bdev_fills_buffer(&self.reqs[slot as usize].sqe) {
            buf.zero();
        }
        let r = &mut self.reqs[slot as usize];
        r.buf = Some(buf);
        r.held = len;
        true
    }

    /// Timer checks, on the poll group's tick: handshake timeouts (ICReq, Connect), the
    /// H2CData timeout and the write-stall timeout. Returns 1 when it acted.
    pub fn poll_timers(&mut self, ctx: &mut GroupCtx) -> usize {
        let now = ctx.now;
        let expired =
            |since: Instant, limit: Option<Duration>| limit.is_some_and(|l| now.saturating_duration_since(since) >= l);
        match self.state {
            ConnState::AwaitIcReq if expired(self.since, self.timeouts.icreq) => {
                self.fail(Fatal::Close("no ICReq before icreq_timeout_ms"), &[]);
                return 1;
            }
            ConnState::Ready
                if (!self.q.is_connected() || self.q.auth_pending()) && expired(self.since, self.timeouts.connect) =>
            {
                self.fail(Fatal::Close("not connected before connect_timeout_ms"), &[]);
                return 1;
            }
            ConnState::Closed => return 0,
            _ => {}
        }
        if self.tx.is_empty() || self.tx_written != self.tx_seen {
            self.tx_seen = self.tx_written;
            self.tx_seen_at = now;
        } else if expired(self.tx_seen_at, self.timeouts.send) {
            log::warn!("connection {}: {} bytes unsent for send_timeout_ms: closing", self.peer, self.tx.pending());
            self.fail(Fatal::Close("send stalled"), &[]);
            self.close(ctx);
            return 1;
        }
        match self.timeouts.h2c_data {
            Some(limit) if self.awaiting_h2c > 0 && now >= self.next_h2c_check => {
                self.next_h2c_check = now + (limit / 4).max(Duration::from_millis(10));
                self.expire_h2c(limit, ctx)
            }
            _ => 0,
        }
    }

    /// Fail the writes whose data did not arrive within `limit` of their R2T (Command Transient
    /// Transport Error: a retry may succeed) and give their buffers back.
    fn expire_h2c(&mut self, limit: Duration, ctx: &mut GroupCtx) -> usize {
        let receiving = match self.rx_state {
            Rx::Payload { slot, h2c: true, .. } | Rx::DataDigest { slot, h2c: true, .. } => Some(slot),
            _ => None,
        };
        let mut n = 0;
        for slot in 0..self.reqs.len() as u16 {
            let r = &self.reqs[slot as usize];
            if r.state != ReqState::AwaitingH2C || ctx.now.saturating_duration_since(r.r2t_at) < limit {
                continue;
            }
            if receiving == Some(slot) {
                // Stopped in the middle of an H2CData PDU: the stream cannot resync.
                self.fail(Fatal::Close("H2CData PDU not finished before h2c_data_timeout_ms"), &[]);
                return n + 1;
            }
            log::warn!(
                "connection {}: CID {} got no H2CData within h2c_data_timeout_ms: failing it",
                self.peer,
                r.sqe.cid.get()
            );
            self.awaiting_h2c -= 1;
            self.fail_req(slot, Status::generic(GenericStatus::TRANSIENT_TRANSPORT_ERROR), ctx);
            n += 1;
        }
        n
    }

    /// Read and process everything the socket has. Returns the number of PDUs handled.
    pub fn on_readable(&mut self, ctx: &mut GroupCtx) -> usize {
        let mut work = 0;
        while matches!(self.state, ConnState::AwaitIcReq | ConnState::Ready) {
            // Back-pressure: resume on a later poll. Requests waiting for buffers do not stop
            // reading: the H2CData of other commands must get in, or their buffers never return.
            if self.tx.pending() > self.send_backlog {
                break;
            }
            match self.process(ctx) {
                Ok(0) => {}
                Ok(n) => {
                    work += n;
                    continue;
                }
                Err((f, hdr_len)) => {
                    let hdr: Vec<u8> = self.rx[self.rx_head..self.rx_head + hdr_len].to_vec();
                    self.fail(f, &hdr);
                    break;
                }
            }
            // Nothing more can be parsed from the buffer: read from the socket.
            if !self.readable {
                break;
            }
            if let Some(n) = self.try_direct_read() {
                match n {
                    Ok(()) => continue,
                    Err(f) => {
                        self.fail(f, &[]);
                        break;
                    }
                }
            }
            if self.rx_head > 0 {
                self.rx.copy_within(self.rx_head..self.rx_tail, 0);
                self.rx_tail -= self.rx_head;
                self.rx_head = 0;
            }
            if self.rx_tail == self.rx.len() {
                // Cannot happen: a header never exceeds the buffer. Guard anyway.
                self.fail(Fatal::Close("receive buffer full"), &[]);
                break;
            }
            let room = self.rx.len() - self.rx_tail;
            match self.sock.read(&mut self.rx[self.rx_tail..]) {
                Ok(0) => {
                    self.fail(Fatal::Close("peer closed"), &[]);
                    break;
                }
                Ok(n) => {
                    self.rx_tail += n;
                    // A short read drained the socket: skip the read that would only return
                    // EAGAIN; the edge-triggered poller reports the next bytes (one receive
                    // syscall per batch instead of two). Not once the peer closed: no edge
                    // follows, and the read that returns 0 (or the reset) ends the connection.
                    if n < room && !self.peer_closed {
                        self.readable = false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.readable = false;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.fail(Fatal::Close("socket error"), &[]);
                    break;
                }
            }
        }
        work
    }

    /// When a large payload is pending and the receive buffer is empty, read it straight into
    /// the request's buffer (saves a copy). `None` when not applicable.
    fn try_direct_read(&mut self) -> Option<Result<(), Fatal>> {
        let Rx::Payload { slot, pad: 0, pos, left, h2c, last } = self.rx_state else { return None };
        if self.rx_head != self.rx_tail || left < DIRECT_READ_MIN {
            return None;
        }
        let r = &mut self.reqs[slot as usize];
        let dst = r.buf.as_mut()?.as_mut_slice().get_mut(pos..pos + left)?;
        match self.sock.read(dst) {
            Ok(0) => Some(Err(Fatal::Close("peer closed"))),
            Ok(n) => {
                if self.ddgst {
                    self.rx_crc = digest_append(self.rx_crc, &dst[..n]);
                }
                if n < left && !self.peer_closed {
                    self.readable = false; // drained (see on_readable)
                }
                self.rx_state = Rx::Payload { slot, pad: 0, pos: pos + n, left: left - n, h2c, last };
                Some(Ok(()))
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.readable = false;
                Some(Ok(()))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Some(Ok(())),
            Err(_) => Some(Err(Fatal::Close("socket error"))),
        }
    }

    /// Process buffered bytes: one step of the receive state machine. Returns Ok(0) when more
    /// bytes are needed; on a fatal error, also the length of the offending header at rx_head.
    fn process(&mut self, ctx: &mut GroupCtx) -> Result<usize, (Fatal, usize)> {
        let avail = self.rx_tail - self.rx_head;
        match self.rx_state {
            Rx::Header => self.process_header(ctx, avail),
            Rx::Payload { slot, pad, pos, left, h2c, last } => {
                if left == 0 && pad == 0 {
                    if self.ddgst {
                        self.rx_state = Rx::DataDigest { slot, h2c, last, end: pos };
                        return Ok(1);
                    }
                    self.rx_state = Rx::Header;
                    self.payload_received(slot, h2c, pos, ctx);
                    return Ok(1);
                }
                if avail == 0 {
                    return Ok(0);
                }
                if pad > 0 {
                    let n = pad.min(avail);
                    self.rx_head += n;
                    self.rx_state = Rx::Payload { slot, pad: pad - n, pos, left, h2c, last };
                    return Ok(1);
                }
                let n = left.min(avail);
                let src = &self.rx[self.rx_head..self.rx_head + n];
                if let Some(dst) =
                    self.reqs[slot as usize].buf.as_mut().and_then(|b| b.as_mut_slice().get_mut(pos..pos + n))
                {
                    dst.copy_from_slice(src);
                }
                if self.ddgst {
                    self.rx_crc = digest_append(self.rx_crc, src);
                }
                self.rx_head += n;
                self.rx_state = Rx::Payload { slot, pad: 0, pos: pos + n, left: left - n, h2c, last };
                Ok(1)
            }
            Rx::DataDigest { slot, h2c, end, .. } => {
                if avail < DIGEST_LEN {
                    return Ok(0);
                }
                let got = u32::from_le_bytes(self.rx[self.rx_head..self.rx_head + 4].try_into().unwrap_or([0; 4]));
                self.rx_head += DIGEST_LEN;
                if got != self.rx_crc {
                    // A data digest error fails the command, not the connection (SPDK and the
                    // spec's Transient Transport Error status).
                    log::warn!("connection {}: data digest mismatch", self.peer);
                    self.reqs[slot as usize].digest_error = true;
                }
                self.rx_state = Rx::Header;
                self.payload_received(slot, h2c, end, ctx);
                Ok(1)
            }
        }
    }

    fn process_header(&mut self, ctx: &mut GroupCtx, avail: usize) -> Result<usize, (Fatal, usize)> {
        if avail < 8 {
            return Ok(0);
        }
        let head = self.rx_head;
        let term = |r: Refusal, len| Err((Fatal::TermReq { fes: r.fes, fei: r.fei }, len));
        let Ok((ch, _)) = CommonHeader::read_from_prefix(&self.rx[head..self.rx_tail]) else { return Ok(0) };
        let hdr_show = avail.min(128).min(ch.hlen.max(8) as usize);
        let params = RxParams {
            awaiting_icreq: self.state == ConnState::AwaitIcReq,
            hdgst: self.hdgst,
            max_plen: (self.max_io as usize).max(self.icd_size as usize) + 512,
        };
        let h = match pdu_rx::check_common(&ch, &params) {
            Ok(h) => h,
            Err(r) => return term(r, hdr_show),
        };
        if avail < h.len() {
            return Ok(0);
        }
        let hdr_show = h.hlen.min(128);
        let checked = pdu_rx::check_header_digest(&h, &self.rx[head..head + h.len()])
            .and_then(|()| pdu_rx::payload(&ch, &h, self.ddgst));
        let pl = match checked {
            Ok(p) => p,
            Err(r) => return term(r, hdr_show),
        };
        let (hlen, hd, plen) = (h.hlen, h.hd, h.plen);
        match ch.pdu_type {
            pdu_type::IC_REQ => {
                let Ok((ic, _)) = ICReq::read_from_prefix(&self.rx[head..]) else { return Ok(0) };
                if let Err(r) = pdu_rx::check_icreq(&h, &ic) {
                    return term(r, hdr_show);
                }
                let allowed = if self.allow_digests { dgst::HEADER | dgst::DATA } else { 0 };
                let d = ic.dgst & allowed;
                self.hdgst = d & dgst::HEADER != 0;
                self.ddgst = d & dgst::DATA != 0;
                self.hpda = ic.hpda;
                pdu_tx::ic_resp(self.tx.bytes_mut(), d, self.maxh2cdata);
                self.state = ConnState::Ready;
                self.since = ctx.now; // the Connect timeout runs from the ICResp
                self.rx_head += 128;
                Ok(1)
            }
            pdu_type::H2C_TERM_REQ => {
                if avail < plen.min(hlen + 128) {
                    return Ok(0);
                }
                let fesv = u16::from_le_bytes([self.rx[head + 8], self.rx[head + 9]]);
                log::warn!("connection {}: host sent H2CTermReq FES {fesv:#x}", self.peer);
                Err((Fatal::Close("host terminated the connection"), 0))
            }
            pdu_type::CAPSULE_CMD => {
                if let Err(r) = pdu_rx::check_capsule(&pl, self.icd_size as usize) {
                    return term(r, hdr_show);
                }
                let data_len = pl.data_len;
                // In flight: one command (the Connect) before the queue is connected, then at
                // most SQSIZE; a host that exceeds it has broken the protocol.
                if !self.q.can_accept(MAX_SLOTS - self.free.len()) {
                    return term(Refusal { fes: fes::PDU_SEQUENCE_ERROR, fei: 0 }, hdr_show);
                }
                let Ok((cap, _)) = CapsuleCmdHdr::read_from_prefix(&self.rx[head..]) else { return Ok(0) };
                let Some(slot) = self.free.pop() else {
                    return term(Refusal { fes: fes::PDU_SEQUENCE_ERROR, fei: 0 }, hdr_show);
                };
                // In-capsule data never waits for the pool (bounded by the queue depth times
                // in_capsule_data_size): the stream behind it may hold the data that frees buffers.
                let buf = (data_len > 0).then(|| {
                    self.q.data_buf(ctx, &cap.sqe, data_len).unwrap_or_else(|| ctx.bufs.get_unbounded(data_len))
                });
                let r = &mut self.reqs[slot as usize];
                r.state = ReqState::CapsuleData;
                r.sqe = cap.sqe;
                r.buf = buf;
                r.h2c_done = 0;
                r.digest_error = false;
                self.rx_head += hlen + hd;
                if data_len > 0 {
                    self.rx_crc = 0;
                    self.rx_state = Rx::Payload { slot, pad: pl.pad, pos: 0, left: data_len, h2c: false, last: true };
                } else {
                    self.capsule_received(slot, ctx);
                }
                Ok(1)
            }
            _ => {
                // H2CData
                let Ok((d, _)) = DataHdr::read_from_prefix(&self.rx[head..]) else { return Ok(0) };
                let slot = d.ttag.get();
                let Some(r) = self.reqs.get(slot as usize).filter(|r| r.state == ReqState::AwaitingH2C) else {
                    return term(Refusal { fes: fes::INVALID_PDU_HEADER_FIELD, fei: 10 }, hdr_show);
                };
                let expect = H2cExpect {
                    cid: r.sqe.cid.get(),
                    done: r.h2c_done,
                    xfer_len: r.xfer_len,
                    max_h2c_data: self.maxh2cdata,
                };
                if let Err(r) = pdu_rx::check_h2c_data(&ch, &d, &pl, &expect) {
                    return term(r, hdr_show);
                }
                self.rx_head += hlen + hd;
                self.rx_crc = 0;
                let last = ch.flags & pdu_flags::LAST_PDU != 0;
                let (pos, left) = (d.datao.get() as usize, pl.data_len);
                self.rx_state = Rx::Payload { slot, pad: pl.pad, pos, left, h2c: true, last };
                Ok(1)
            }
        }
    }

    /// A capsule's payload (in-capsule data) or an H2CData payload is complete; `end` is the
    /// offset just past the data received.
    fn payload_received(&mut self, slot: u16, h2c: bool, end: usize, ctx: &mut GroupCtx) {
        if !h2c {
            self.capsule_received(slot, ctx);
            return;
        }
        let r = &mut self.reqs[slot as usize];
        r.h2c_done = end as u32;
        if r.h2c_done < r.xfer_len {
            return; // more H2CData PDUs follow
        }
        self.awaiting_h2c -= 1;
        if r.digest_error {
            r.cqe.set_status(Status::generic(GenericStatus::TRANSIENT_TRANSPORT_ERROR));
            self.complete(slot, ctx);
        } else {
            self.exec(slot, ctx);
        }
    }

    fn fail_req(&mut self, slot: u16, status: Status, ctx: &mut GroupCtx) {
        self.reqs[slot as usize].cqe.set_status(status);
        self.complete(slot, ctx);
    }

    /// A command capsule (with any in-capsule data) has arrived: work out the data transfer.
    fn capsule_received(&mut self, slot: u16, ctx: &mut GroupCtx) {
        let r = &mut self.reqs[slot as usize];
        let admitted = self.q.begin(ctx, &r.sqe, &mut r.cqe);
        if r.digest_error {
            self.fail_req(slot, Status::generic(GenericStatus::TRANSIENT_TRANSPORT_ERROR), ctx);
            return;
        }
        r.dir = direction(&r.sqe);
        let is_connect = match admitted {
            Ok(a) => a == Admitted::Connect,
            Err(status) => {
                // Nothing but Connect before the queue is connected: no buffers, no R2T.
                r.dir = Dir::None;
                return self.fail_req(slot, status, ctx);
            }
        };
        let sgl = r.sqe.sgl1();
        let len = sgl.length.get();
        let in_capsule = r.buf.as_ref().map_or(0, |b| b.len());
        let ty = sgl.sgl_type();
        let sub = sgl.subtype();
        if in_capsule > 0 || (ty == sgl_type::DATA_BLOCK && sub == sgl_subtype::OFFSET) {
            // In-capsule data: SGL data block with an offset into the capsule's data.
            if r.dir != Dir::HostToCtrl && len > 0 {
                return self.fail_req(slot, Status::generic(GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID).dnr(), ctx);
            }
            let off = sgl.address.get();
            if ty != sgl_type::DATA_BLOCK || sub != sgl_subtype::OFFSET {
                return self.fail_req(slot, Status::generic(GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID).dnr(), ctx);
            }
            if off.checked_add(len as u64).is_none_or(|end| end > in_capsule as u64) {
                let sc = if off >= in_capsule as u64 && len > 0 {
                    GenericStatus::INVALID_SGL_OFFSET
                } else {
                    GenericStatus::DATA_SGL_LENGTH_INVALID
                };
                return self.fail_req(slot, Status::generic(sc).dnr(), ctx);
            }
            if let Some(b) = r.buf.as_mut() {
                if off > 0 {
                    b.as_mut_slice().copy_within(off as usize..off as usize + len as usize, 0);
                }
                b.set_len(len as usize);
            }
            r.xfer_len = len;
            return self.exec(slot, ctx);
        }
        r.xfer_len = 0;
        if r.dir == Dir::None || len == 0 {
            return self.exec(slot, ctx);
        }
        if ty != sgl_type::TRANSPORT_DATA_BLOCK || sub != sgl_subtype::TRANSPORT {
            return self.fail_req(slot, Status::generic(GenericStatus::SGL_DESCRIPTOR_TYPE_INVALID).dnr(), ctx);
        }
        if len > self.max_io {
            return self.fail_req(slot, Status::generic(GenericStatus::DATA_SGL_LENGTH_INVALID).dnr(), ctx);
        }
        if is_connect && len != CONNECT_DATA_LEN {
            // No buffer for a host that has not connected beyond Connect's own 1 KiB.
            self.fail_req(slot, Status::generic(GenericStatus::DATA_SGL_LENGTH_INVALID).dnr(), ctx);
            return self.fail(Fatal::Close("Connect data is not 1024 bytes"), &[]);
        }
        r.xfer_len = len;
        // Behind earlier waiters (first come, first served), or within the budget and pool.
        if self.need_buf.is_empty() && self.take_buf(slot, ctx) {
            self.start_transfer(slot, ctx);
        } else {
            self.reqs[slot as usize].state = ReqState::NeedBuffer;
            self.need_buf.push(slot);
        }
    }

    /// The request has its buffer: ask for host data with an R2T, or execute.
    fn start_transfer(&mut self, slot: u16, ctx: &mut GroupCtx) {
        let r = &mut self.reqs[slot as usize];
        if r.dir == Dir::HostToCtrl {
            r.state = ReqState::AwaitingH2C;
            r.h2c_done = 0;
            r.r2t_at = ctx.now;
            self.awaiting_h2c += 1;
            // One R2T for the whole transfer; the host splits it into H2CData PDUs of at most
            // MAXH2CDATA bytes (as Linux nvmet does).
            pdu_tx::r2t(self.tx.bytes_mut(), r.sqe.cid.get(), slot, 0, r.xfer_len, self.hdgst);
        } else {
            self.exec(slot, ctx);
        }
    }

    fn exec(&mut self, slot: u16, ctx: &mut GroupCtx) {
        let tag = make_tag(ctx.transport_index, self.idx, slot);
        let r = &mut self.reqs[slot as usize];
        r.state = ReqState::Executing;
        let res = self.q.execute(ctx, Cmd { sqe: &r.sqe, buf: &mut r.buf, cqe: &mut r.cqe, tag });
        match res {
            Exec::Complete => self.complete(slot, ctx),
            Exec::Pending => {}
            Exec::Parked => r.state = ReqState::Parked,
            Exec::CompleteThenClose => {
                self.complete(slot, ctx);
                self.fail(Fatal::Close("host disconnected"), &[]);
            }
        }
        if !self.budget.has_host() {
            // Connected: from now on count its buffers against its controller's limit too.
            if let Some(c) = self.q.controller() {
                self.budget.join_host(ctx.target.host_data.counter(c), self.max_data_per_ctrlr);
            }
        }
    }

    /// A bdev I/O of this connection finished.
    pub fn bdev_complete(&mut self, slot: u16, done: BdevCompletion, ctx: &mut GroupCtx) {
        let Some(r) = self.reqs.get_mut(slot as usize) else {
            return self.q.bdev_complete_unknown(ctx, done);
        };
        self.q.bdev_complete(ctx, done, &mut r.buf, &mut r.cqe);
        if self.state == ConnState::Closed {
            if let Some(b) = r.buf.take() {
                ctx.bufs.put(b);
            }
            self.budget.give(std::mem::take(&mut r.held));
            r.state = ReqState::Free;
            return;
        }
        self.complete(slot, ctx);
    }

    /// Send the command's data (reads) and completion, then free the request.
    fn complete(&mut self, slot: u16, ctx: &mut GroupCtx) {
        // Buffers already sent go back first, so the segment queue has room.
        self.tx.reclaim(&mut ctx.bufs);
        let r = &mut self.reqs[slot as usize];
        let cid = r.sqe.cid.get();
        self.q.finish_cqe(ctx, &r.sqe, &mut r.cqe);
        let ok = r.cqe.status().is_success();
        let data_len = match (&r.buf, r.dir) {
            (Some(b), Dir::CtrlToHost) if ok && r.xfer_len > 0 => Some((r.xfer_len as usize).min(b.len())),
            _ => None,
        };
        let mut need_resp = true;
        if let Some(len) = data_len {
            let use_success =
                self.c2h_success && self.q.sq_flow_disabled() && r.cqe.dw0.get() == 0 && r.cqe.dw1.get() == 0;
            let (hdgst, ddgst, hpda) = (self.hdgst, self.ddgst, self.hpda);
            match r.buf.take() {
                // Large payloads leave straight from the buffer (writev in `flush`), which goes
                // back to its pool once they are written. A heap buffer is held only while the
                // poll group's pool has room: hosts that do not read must not starve the others.
                Some(b)
                    if len >= ZERO_COPY_MIN
                        && self.tx.can_take_segment()
                        && (b.dma().is_some() || ctx.bufs.has_room()) =>
                {
                    pdu_tx::c2h_data_from_buf(&mut self.tx, cid, 0, b, len, true, use_success, hdgst, ddgst, hpda);
                }
                Some(b) => {
                    pdu_tx::c2h_data(
                        self.tx.bytes_mut(),
                        cid,
                        0,
                        &b.as_slice()[..len],
                        true,
                        use_success,
                        hdgst,
                        ddgst,
                        hpda,
                    );
                    ctx.bufs.put(b);
                }
                None => {}
            }
            need_resp = !use_success;
        }
        if need_resp {
            pdu_tx::capsule_resp(self.tx.bytes_mut(), &r.cqe, self.hdgst);
        }
        if let Some(b) = r.buf.take() {
            ctx.bufs.put(b);
        }
        let held = std::mem::take(&mut r.held);
        r.state = ReqState::Free;
        self.free.push(slot);
        if held > 0 {
            self.budget.give(held);
        }
    }

    /// Write queued PDUs (one `writev` per round, payload segments included). Returns bytes
    /// written. Heap buffers of segments written out wait in the send queue until `reclaim`.
    pub fn flush(&mut self) -> usize {
        let mut written = 0;
        while !self.tx.is_empty() && self.writable {
            match self.tx.write_to(&mut super::send::NoSigPipe(&self.sock)) {
                Ok((0, _)) => {
                    self.state = ConnState::Closing;
                    self.tx.clear();
                    break;
                }
                Ok((n, short)) => {
                    // A short write filled the socket buffer: wait for the writable edge
                    // instead of trying again for EAGAIN.
                    if short {
                        self.writable = false;
                    }
                    written += n;
                    self.tx_written += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    // The peer is gone: drop what is queued and close.
                    self.tx.clear();
                    self.state = ConnState::Closing;
                    break;
                }
            }
        }
        self.tx.compact();
        written
    }

    /// Give the heap buffers of segments already written back to the pool.
    pub fn reclaim(&mut self, ctx: &mut GroupCtx) {
        self.tx.reclaim(&mut ctx.bufs);
    }

    /// Unparsed bytes are buffered (e.g. after a stall): process them even without a new
    /// readiness event.
    pub fn rx_pending(&self) -> bool {
        self.rx_head < self.rx_tail
    }

    pub fn tx_pending(&self) -> bool {
        !self.tx.is_empty()
    }
}
