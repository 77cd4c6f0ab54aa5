//! The NVMe/RDMA host queue (NVMe over Fabrics RDMA Transport Specification 1.0b): one RDMA CM
//! id and RC queue pair per NVMe queue, with its own completion queue and receive queue.
//!
//! Setup: resolve address and route, create the QP, post a receive per response the target may
//! send, then `rdma_connect` with the CM Request private data (`private.rs`: QID, HRQSIZE,
//! HSQSIZE, CNTLID) and wait for ESTABLISHED (a REJECTED carries the spec's reject status).
//!
//! One memory region, registered once per queue (local write, remote read and write), holds:
//!
//! ```text
//!  [ receive buffers: (depth + 1) x 64 B ][ send capsules: depth x (64 B SQE + in-capsule) ][ data ]
//! ```
//!
//! A command is a SEND of its capsule: in-capsule data (an SGL data block, Offset subtype)
//! when it is a write that fits, otherwise a keyed SGL data block (Address subtype; never
//! Invalidate: the key is the one of the whole region) over a range of the data area that the
//! target RDMA READs (writes) or RDMA WRITEs (reads). The response capsule (a CQE) arrives as a
//! RECV; its receive buffer is re-posted at once. A command slot is reused only once both its
//! response and its SEND's completion have arrived. The CQ is polled (no completion channel):
//! spinning briefly, then sleeping in short steps, up to [`HostConfig::io_timeout`].
//!
//! Data is copied between the caller's buffers and the registered area, like the TCP engine
//! copies into its slot buffers.

use super::error::{HostError, Result};
use super::pdu::SQE_FLAGS_SGL;
use super::HostConfig;
use crate::spec::fabrics::CNTLID_DYNAMIC;
use crate::spec::{Cqe, SglDescriptor, Sqe};
use crate::transport::rdma::private::{self, CmAccept, CmReject};
use crate::transport::rdma::verbs::{self, Arena, CmEventKind, CmId, Cq, EventChannel, Pd, QpCaps, Wc};
use crate::transport::rdma::wr::{Keyed, Wr, SQE_SIZE, WR_SEND};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use zerocopy::{FromBytes, IntoBytes};

/// Size of one receive buffer: a response capsule is a 16-byte CQE (room to spare).
const RECV_SIZE: usize = 64;
/// Size of a CQE.
const CQE_SIZE: usize = 16;
/// In-capsule room of every send buffer at least (the Connect data is 1 KiB).
const MIN_SEND_ICD: usize = 1024;
/// Largest length a keyed SGL data block can carry (3 bytes).
const MAX_KEYED_LEN: usize = 0xff_ffff;
/// Data area per command slot, and the bounds of the whole data area: room for `depth`
/// transfers of 128 KiB, at least 4 MiB (a 1 MiB MDTS transfer beside others), at most 32 MiB
/// of pinned memory per queue.
const DATA_PER_SLOT: usize = 128 << 10;
const DATA_MIN: usize = 4 << 20;
const DATA_MAX: usize = 32 << 20;
/// Alignment of data ranges.
const DATA_ALIGN: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    InFlight,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    None,
    Read,
    Write,
}

struct Slot {
    state: State,
    dir: Dir,
    len: usize,
    /// The range of the data area this command uses (offset into the arena, length).
    range: Option<(usize, usize)>,
    /// Read data, copied out of the registered area at completion. Capacity kept.
    buf: Vec<u8>,
    cqe: Cqe,
    /// Its SEND has not completed yet: the send buffer (and the CID) stay taken.
    send_busy: bool,
}

/// First-fit allocator of ranges of the data area, coalescing on free. Pure bookkeeping
/// (unit-tested without a device).
#[derive(Debug)]
pub(crate) struct Ranges {
    /// Free ranges (offset, length), sorted by offset, never adjacent.
    free: Vec<(usize, usize)>,
}

impl Ranges {
    pub fn new(base: usize, len: usize) -> Ranges {
        Ranges { free: if len > 0 { vec![(base, len)] } else { Vec::new() } }
    }

    /// A range of `len` bytes (rounded up to the alignment), or None when none is free.
    pub fn alloc(&mut self, len: usize) -> Option<(usize, usize)> {
        let len = len.max(1).div_ceil(DATA_ALIGN) * DATA_ALIGN;
        let i = self.free.iter().position(|&(_, l)| l >= len)?;
        let (off, l) = self.free[i];
        if l == len {
            self.free.remove(i);
        } else {
            self.free[i] = (off + len, l - len);
        }
        Some((off, len))
    }

    pub fn release(&mut self, (off, len): (usize, usize)) {
        let i = self.free.partition_point(|&(o, _)| o < off);
        self.free.insert(i, (off, len));
        // Merge with the next, then with the previous.
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }

    /// The largest range that could ever be handed out (all free).
    #[cfg(test)]
    fn largest(&self) -> usize {
        self.free.iter().map(|&(_, l)| l).max().unwrap_or(0)
    }
}

/// Memory layout of a queue's registered region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub nrecv: usize,
    pub send_off: usize,
    /// Bytes per send buffer (SQE + in-capsule room).
    pub send_size: usize,
    pub data_off: usize,
    pub data_len: usize,
}

impl Layout {
    pub fn new(depth: usize, icd_max: usize) -> Layout {
        let nrecv = depth + 1;
        let send_off = (nrecv * RECV_SIZE).div_ceil(DATA_ALIGN) * DATA_ALIGN;
        let send_size = (SQE_SIZE + icd_max.max(MIN_SEND_ICD)).div_ceil(64) * 64;
        let data_off = (send_off + depth * send_size).div_ceil(DATA_ALIGN) * DATA_ALIGN;
        let data_len = (depth * DATA_PER_SLOT).clamp(DATA_MIN, DATA_MAX);
        Layout { nrecv, send_off, send_size, data_off, data_len }
    }
    pub fn total(&self) -> usize {
        self.data_off + self.data_len
    }
    pub fn send_buf(&self, cid: u16) -> usize {
        self.send_off + cid as usize * self.send_size
    }
}

/// A connected NVMe/RDMA queue.
pub(crate) struct RdmaQueue {
    // Field order is drop order: the QP (in the id) before the memory it uses, the CQ and the
    // PD; the id before its event channel.
    id: CmId,
    arena: Arena,
    cq: Cq,
    _pd: Pd,
    ch: EventChannel,
    pub qid: u16,
    lay: Layout,
    slots: Vec<Slot>,
    free: Vec<u16>,
    ready: VecDeque<u16>,
    ranges: Ranges,
    /// Slots not Free (submitted and not yet released).
    busy: usize,
    /// Largest write sent as in-capsule data (capped by the send buffers' room).
    pub icd_max: usize,
    timeout: Duration,
    dead: bool,
    wcs: Vec<Wc>,
    peer: SocketAddr,
}

fn io_err(kind: io::ErrorKind, msg: String) -> HostError {
    HostError::Io(io::Error::new(kind, msg))
}

fn reject_name(sts: u16) -> &'static str {
    use private::reject_status::*;
    match sts {
        INVALID_LENGTH => "invalid private data length",
        INVALID_RECFMT => "invalid RECFMT",
        INVALID_QID => "invalid QID",
        INVALID_HSQSIZE => "invalid HSQSIZE",
        INVALID_HRQSIZE => "invalid HRQSIZE",
        NO_RESOURCES => "no resources",
        INVALID_IRD => "invalid IRD",
        INVALID_ORD => "invalid ORD",
        INVALID_CNTLID => "invalid CNTLID",
        _ => "unknown status",
    }
}

/// What a REJECTED event means, from its private data.
pub(crate) fn describe_reject(private_data: &[u8], status: i32) -> String {
    match CmReject::read_from_prefix(private_data) {
        Ok((r, _)) if r.recfmt.get() == private::RECFMT_1_0 => {
            let sts = r.sts.get();
            format!("NVMe/RDMA connect rejected by the target: status {sts:#x} ({})", reject_name(sts))
        }
        _ => format!("RDMA connect rejected (CM status {status}; no NVMe/RDMA reject data: nothing listening?)"),
    }
}

/// The CM Request private data for queue `qid` of `depth` commands (HSQSIZE is 0's based like
/// the Connect's SQSIZE, HRQSIZE is 1's based: a receive buffer per command plus one).
pub(crate) fn cm_request(qid: u16, depth: usize, cntlid: u16) -> private::CmRequest {
    let d = depth.min(0xfffe) as u16;
    private::request(qid, d + 1, d, if qid == 0 { CNTLID_DYNAMIC } else { cntlid })
}

impl RdmaQueue {
    /// Connect queue `qid` to `addr` over RDMA (no Fabrics Connect yet).
    pub fn connect(
        addr: SocketAddr,
        qid: u16,
        cntlid: u16,
        depth: usize,
        icd_max: usize,
        cfg: &HostConfig,
    ) -> Result<RdmaQueue> {
        let depth = depth.clamp(1, crate::ctrlr::MAX_QUEUE_DEPTH as usize);
        let timeout = cfg.io_timeout;
        let tmo_ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        if verbs::device_count() == 0 {
            return Err(io_err(
                io::ErrorKind::NotFound,
                "no RDMA device (ibv_get_device_list found none; load an RDMA driver or create a soft-RoCE device: rdma link add rxe0 type rxe netdev <ifname>)".into(),
            ));
        }
        let ch = EventChannel::new(false)?;
        let mut id = CmId::new(&ch)?;
        let wait = |ch: &EventChannel, want: CmEventKind, what: &str| -> Result<verbs::CmEvent> {
            let Some(ev) = ch.wait(timeout) else {
                return Err(HostError::Timeout);
            };
            if ev.kind == want {
                return Ok(ev);
            }
            if ev.kind == CmEventKind::Rejected {
                return Err(io_err(io::ErrorKind::ConnectionRefused, describe_reject(&ev.private_data, ev.status)));
            }
            Err(io_err(
                io::ErrorKind::Other,
                format!("{what} {addr}: RDMA CM event {:?} (status {})", ev.kind, ev.status),
            ))
        };
        id.resolve_addr(addr, tmo_ms)?;
        wait(&ch, CmEventKind::AddrResolved, "resolving address")?;
        id.resolve_route(tmo_ms)?;
        wait(&ch, CmEventKind::RouteResolved, "resolving route to")?;
        let dev = id
            .device()
            .ok_or_else(|| io_err(io::ErrorKind::NotFound, format!("{addr}: no RDMA device for this address")))?;
        let attrs = dev.attrs()?;
        let pd = Pd::new(dev)?;
        let lay = Layout::new(depth, icd_max);
        let cq = Cq::new(dev, (2 * depth as u32 + 2).min(attrs.max_cqe))?;
        let arena = Arena::new(&pd, lay.total(), true)?;
        let caps = QpCaps {
            max_send_wr: (depth as u32).min(attrs.max_qp_wr),
            max_recv_wr: (lay.nrecv as u32).min(attrs.max_qp_wr),
            max_inline: 0,
        };
        id.create_qp(&pd, &cq, None, caps)?;
        let mut q = RdmaQueue {
            id,
            arena,
            cq,
            _pd: pd,
            ch,
            qid,
            lay,
            slots: (0..depth)
                .map(|_| Slot {
                    state: State::Free,
                    dir: Dir::None,
                    len: 0,
                    range: None,
                    buf: Vec::new(),
                    cqe: Cqe::default(),
                    send_busy: false,
                })
                .collect(),
            free: (0..depth as u16).rev().collect(),
            ready: VecDeque::with_capacity(depth),
            ranges: Ranges::new(lay.data_off, lay.data_len),
            busy: 0,
            icd_max,
            timeout,
            dead: false,
            wcs: Vec::with_capacity(32),
            peer: addr,
        };
        for i in 0..lay.nrecv.min(caps.max_recv_wr as usize) {
            q.post_recv(i)?;
        }
        let req = cm_request(qid, depth, cntlid);
        // Responder resources: RDMA READs the target may have outstanding against our memory
        // (it fetches write data that way); initiator depth: we issue none.
        q.id.connect(req.as_bytes(), attrs.max_qp_rd_atom.max(1), 0)?;
        let ev = wait(&q.ch, CmEventKind::Established, "connecting to")?;
        if let Ok((acc, _)) = CmAccept::read_from_prefix(&ev.private_data[..]) {
            let crq = acc.crqsize.get() as usize;
            if crq > 0 && crq < depth {
                // The controller holds fewer capsules than we would send: send fewer.
                log::debug!("qid {qid}: controller receive queue {crq} < {depth}: limiting the queue");
                q.free.retain(|&c| (c as usize) < crq);
            }
        }
        log::debug!("NVMe/RDMA queue {qid} connected to {addr} (depth {depth})");
        Ok(q)
    }

    fn post_recv(&mut self, i: usize) -> Result<()> {
        let r = self.id.post_recv(i as u64, self.arena.addr(i * RECV_SIZE), RECV_SIZE as u32, self.arena.lkey());
        r.map_err(|e| self.fail(e.into()))
    }

    /// Mark the queue dead (disconnecting) and return `e`.
    fn fail(&mut self, e: HostError) -> HostError {
        if !self.dead {
            self.dead = true;
            self.id.disconnect();
        }
        e
    }

    fn check_alive(&self) -> Result<()> {
        if self.dead {
            Err(HostError::Closed)
        } else {
            Ok(())
        }
    }

    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    pub fn in_flight(&self) -> usize {
        self.busy
    }

    pub fn submit(&mut self, mut sqe: Sqe, out: Option<&[u8]>, in_len: usize) -> Result<u16> {
        self.check_alive()?;
        let out = out.filter(|d| !d.is_empty());
        if out.is_some() && in_len > 0 {
            return Err(HostError::InvalidArgument("data in both directions".into()));
        }
        let len = out.map_or(in_len, |d| d.len());
        let max = self.lay.data_len.min(MAX_KEYED_LEN);
        if len > max {
            return Err(HostError::InvalidArgument(format!("transfer of {len} bytes exceeds {max} (NVMe/RDMA queue)")));
        }
        // Every free CID may be waiting for its SEND's completion (released right after the
        // response came): take those completions before saying the queue is full.
        while self.free.is_empty() && self.slots.iter().any(|s| s.state == State::Free && s.send_busy) {
            self.process(true)?;
        }
        let icd_room = self.lay.send_size - SQE_SIZE;
        let in_capsule = out.is_some_and(|d| d.len() <= self.icd_max.min(icd_room));
        let range = if len > 0 && !in_capsule {
            match self.ranges.alloc(len) {
                Some(r) => Some(r),
                // Every byte of the registered data area is taken by commands in flight.
                None => return Err(HostError::QueueFull),
            }
        } else {
            None
        };
        let Some(cid) = self.free.pop() else {
            if let Some(r) = range {
                self.ranges.release(r);
            }
            return Err(HostError::QueueFull);
        };
        sqe.cid.set(cid);
        sqe.flags = (sqe.flags & 0x3f) | SQE_FLAGS_SGL;
        let sbuf = self.lay.send_buf(cid);
        let dir;
        let mut capsule_len = SQE_SIZE;
        match (out, range) {
            (Some(d), None) => {
                dir = Dir::Write;
                sqe.set_sgl1(SglDescriptor::in_capsule(0, len as u32));
                self.arena.write(sbuf + SQE_SIZE, d);
                capsule_len += d.len();
            }
            (Some(d), Some((off, _))) => {
                dir = Dir::Write;
                self.arena.write(off, d);
                sqe.set_sgl1(Keyed::encode(self.arena.addr(off), len as u32, self.arena.rkey(), false));
            }
            (None, Some((off, _))) => {
                dir = Dir::Read;
                sqe.set_sgl1(Keyed::encode(self.arena.addr(off), len as u32, self.arena.rkey(), false));
            }
            (None, None) => {
                dir = Dir::None;
                // A keyed SGL data block of length 0 (what Linux sends for no data).
                sqe.set_sgl1(Keyed::encode(0, 0, 0, false));
            }
        }
        self.arena.write(sbuf, sqe.as_bytes());
        let slot = &mut self.slots[cid as usize];
        slot.state = State::InFlight;
        slot.dir = dir;
        slot.len = len;
        slot.range = range;
        slot.send_busy = true;
        self.busy += 1;
        log::trace!(
            "rdma qid {} submit cid {cid} opcode {:#04x} len {len} in-capsule {in_capsule}",
            self.qid,
            sqe.opcode
        );
        let wr = Wr::Send { local: self.arena.addr(sbuf), len: capsule_len as u32, lkey: self.arena.lkey() };
        if let Err(e) = self.id.post_send(WR_SEND | cid as u64, &wr) {
            return Err(self.fail(e.into()));
        }
        Ok(cid)
    }

    /// Handle completions, waiting (up to the I/O timeout) for at least one when `block`.
    /// Returns how many were handled.
    fn process(&mut self, block: bool) -> Result<usize> {
        self.check_alive()?;
        let start = Instant::now();
        let mut spins = 0u32;
        let mut wcs = std::mem::take(&mut self.wcs);
        loop {
            wcs.clear();
            self.cq.poll(&mut wcs, 32);
            if !wcs.is_empty() || !block {
                break;
            }
            spins += 1;
            if spins < 2000 {
                std::hint::spin_loop();
            } else {
                if start.elapsed() >= self.timeout {
                    self.wcs = wcs;
                    return Err(self.fail(HostError::Timeout));
                }
                // Nothing for a while (slow target, emulated NIC): stop burning the CPU.
                std::thread::sleep(Duration::from_micros(if spins < 4000 { 10 } else { 100 }));
            }
        }
        let n = wcs.len();
        let mut r = Ok(n);
        for wc in &wcs {
            if let Err(e) = self.handle(wc) {
                r = Err(self.fail(e));
                break;
            }
        }
        self.wcs = wcs;
        r
    }

    fn handle(&mut self, wc: &Wc) -> Result<()> {
        if !wc.ok {
            if wc.flushed {
                return Err(HostError::Closed);
            }
            return Err(io_err(
                io::ErrorKind::Other,
                format!(
                    "RDMA work request failed: {} (wr_id {:#x}, peer {})",
                    verbs::wc_status_str(wc.status),
                    wc.wr_id,
                    self.peer
                ),
            ));
        }
        if wc.wr_id & WR_SEND != 0 {
            let cid = wc.wr_id as u16;
            let Some(slot) = self.slots.get_mut(cid as usize) else {
                return Err(HostError::Protocol(format!("send completion for unknown CID {cid}")));
            };
            slot.send_busy = false;
            if slot.state == State::Free {
                // Released before its SEND completed: the CID is free only now.
                self.free.push(cid);
            }
            return Ok(());
        }
        if !wc.is_recv {
            return Err(HostError::Protocol(format!("unexpected work completion {wc:?}")));
        }
        let i = wc.wr_id as usize;
        if i >= self.lay.nrecv {
            return Err(HostError::Protocol(format!("receive completion for unknown buffer {i}")));
        }
        if (wc.byte_len as usize) < CQE_SIZE {
            return Err(HostError::Protocol(format!("response capsule of {} bytes", wc.byte_len)));
        }
        let mut b = [0u8; CQE_SIZE];
        self.arena.read(i * RECV_SIZE, &mut b);
        self.post_recv(i)?;
        let cqe = Cqe::read_from_bytes(&b[..]).map_err(|_| HostError::Protocol("short CQE".into()))?;
        let cid = cqe.cid.get();
        let Some(slot) = self.slots.get_mut(cid as usize).filter(|s| s.state == State::InFlight) else {
            return Err(HostError::Protocol(format!("response for CID {cid}, not in flight")));
        };
        if slot.dir == Dir::Read {
            if let Some((off, _)) = slot.range {
                slot.buf.resize(slot.len, 0);
                // The target's RDMA WRITEs are placed before its SEND arrives (RC ordering).
                self.arena.read(off, &mut slot.buf[..]);
            }
        }
        log::trace!("rdma qid {} response cid {cid} status {:?}", self.qid, cqe.status());
        slot.cqe = cqe;
        slot.state = State::Done;
        self.ready.push_back(cid);
        Ok(())
    }

    pub fn wait(&mut self, cid: u16) -> Result<Cqe> {
        loop {
            let Some(slot) = self.slots.get(cid as usize) else {
                return Err(HostError::InvalidArgument(format!("CID {cid} not in flight")));
            };
            match slot.state {
                State::Done => {
                    let cqe = slot.cqe;
                    self.ready.retain(|&c| c != cid);
                    return Ok(cqe);
                }
                State::InFlight => {
                    self.process(true)?;
                }
                State::Free => return Err(HostError::InvalidArgument(format!("CID {cid} not in flight"))),
            }
        }
    }

    pub fn data(&self, cid: u16) -> &[u8] {
        match self.slots.get(cid as usize) {
            Some(s) if s.dir == Dir::Read && s.range.is_some() => &s.buf[..s.len],
            _ => &[],
        }
    }

    pub fn release(&mut self, cid: u16) {
        let Some(s) = self.slots.get_mut(cid as usize) else { return };
        if s.state == State::Free {
            return;
        }
        s.state = State::Free;
        self.busy -= 1;
        if let Some(r) = s.range.take() {
            self.ranges.release(r);
        }
        if !s.send_busy {
            self.free.push(cid);
        }
    }

    pub fn poll(&mut self, mut on_complete: impl FnMut(u16, Cqe, Option<&[u8]>)) -> Result<usize> {
        while self.ready.is_empty() && self.busy > 0 {
            self.process(true)?;
        }
        // Whatever else has completed meanwhile.
        while !self.dead && self.process(false)? > 0 {}
        let mut n = 0;
        while let Some(cid) = self.ready.pop_front() {
            let s = &self.slots[cid as usize];
            let data = if s.dir == Dir::Read && s.range.is_some() { Some(&s.buf[..s.len]) } else { None };
            on_complete(cid, s.cqe, data);
            self.release(cid);
            n += 1;
        }
        Ok(n)
    }

    /// Capsules are posted as they are submitted: nothing to flush.
    pub fn flush(&mut self) -> Result<()> {
        self.check_alive()
    }

    pub fn close(&mut self) {
        if !self.dead {
            self.dead = true;
            self.id.disconnect();
            // Best effort: let the DISCONNECTED event come so the target sees an orderly close.
            let _ = self.ch.wait(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::sqe::sgl_type;

    #[test]
    fn ranges_allocate_align_and_coalesce() {
        let mut r = Ranges::new(8192, 64 << 10);
        let a = r.alloc(512).unwrap();
        assert_eq!(a, (8192, 4096));
        let b = r.alloc(10_000).unwrap();
        assert_eq!(b, (8192 + 4096, 12288));
        let c = r.alloc(4096).unwrap();
        assert_eq!(c.0, 8192 + 4096 + 12288);
        assert!(r.alloc(64 << 10).is_none());
        r.release(b);
        // The hole of 12 KiB is reused first-fit.
        assert_eq!(r.alloc(8192).unwrap(), (8192 + 4096, 8192));
        r.release((8192 + 4096, 8192));
        r.release(a);
        r.release(c);
        assert_eq!(r.free, vec![(8192, 64 << 10)]);
        assert_eq!(r.largest(), 64 << 10);
        assert_eq!(r.alloc(64 << 10), Some((8192, 64 << 10)));
        assert!(r.alloc(1).is_none());
    }

    #[test]
    fn ranges_release_in_any_order() {
        let mut r = Ranges::new(0, 16 * 4096);
        let v: Vec<_> = (0..16).map(|_| r.alloc(4096).unwrap()).collect();
        for i in [3, 1, 2, 0, 15, 8, 9, 10, 4, 5, 6, 7, 11, 13, 12, 14] {
            r.release(v[i]);
        }
        assert_eq!(r.free, vec![(0, 16 * 4096)]);
    }

    #[test]
    fn layout_fits_depth_and_in_capsule_data() {
        let l = Layout::new(127, 8192);
        assert_eq!(l.nrecv, 128);
        assert_eq!(l.send_off, 8192);
        assert_eq!(l.send_size, 64 + 8192);
        assert!(l.data_off >= l.send_buf(126) + l.send_size);
        assert_eq!(l.data_off % DATA_ALIGN, 0);
        assert_eq!(l.data_len, 127 * DATA_PER_SLOT);
        // The admin queue: the Connect's 1 KiB always fits in-capsule; at least 4 MiB of data.
        let a = Layout::new(31, 0);
        assert_eq!(a.send_size, 64 + 1024);
        assert_eq!(a.data_len, DATA_MIN);
        assert_eq!(Layout::new(1024, 8192).data_len, DATA_MAX);
    }

    #[test]
    fn cm_request_sizes_like_linux() {
        // I/O queue 3 of a 128-entry queue (127 in flight) on controller 1: HRQSIZE 128,
        // HSQSIZE 127 (what the Linux host sends, and what the target's parser accepts).
        let r = cm_request(3, 127, 1);
        assert_eq!((r.qid.get(), r.hrqsize.get(), r.hsqsize.get(), r.cntlid.get()), (3, 128, 127, 1));
        assert_eq!(private::parse_request(r.as_bytes(), 128).map(|q| q.sq_size), Ok(128));
        // Admin queue: dynamic CNTLID, 32 entries.
        let a = cm_request(0, 31, 7);
        assert_eq!((a.qid.get(), a.hrqsize.get(), a.hsqsize.get(), a.cntlid.get()), (0, 32, 31, 0xffff));
        assert!(private::parse_request(a.as_bytes(), 128).is_ok());
    }

    #[test]
    fn rejects_are_described() {
        let r = private::reject(private::reject_status::INVALID_HSQSIZE);
        let s = describe_reject(r.as_bytes(), 28);
        assert!(s.contains("status 0x4") && s.contains("HSQSIZE"), "{s}");
        assert!(describe_reject(&[], 28).contains("nothing listening"));
    }

    #[test]
    fn keyed_sgl_the_host_sends() {
        let d = Keyed::encode(0x7f00_1234_5000, 1 << 20, 0xabcd, false);
        assert_eq!(d.sgl_type(), sgl_type::KEYED_DATA_BLOCK);
        assert_eq!(d.subtype(), 0);
        let k = Keyed::decode(&d);
        assert_eq!((k.addr, k.len, k.key, k.invalidate), (0x7f00_1234_5000, 1 << 20, 0xabcd, false));
        let none = Keyed::encode(0, 0, 0, false);
        assert_eq!(none.as_bytes()[..15], [0u8; 15]);
        assert_eq!(none.identifier, 0x40);
    }

    #[test]
    fn connect_without_device_says_so() {
        if verbs::device_count() > 0 {
            return;
        }
        let cfg = HostConfig { io_timeout: Duration::from_secs(1), ..Default::default() };
        let err =
            RdmaQueue::connect("127.0.0.1:4420".parse().unwrap(), 0, 0xffff, 31, 8192, &cfg).err().expect("no device");
        assert!(err.to_string().contains("no RDMA device"), "{err}");
    }
}
