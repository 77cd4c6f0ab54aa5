//! The command engine shared by the admin queue and the I/O queues. [`Queue`] is the
//! transport-agnostic seam: it dispatches to the NVMe/TCP engine here ([`TcpQueue`]) or to the
//! NVMe/RDMA one (`host/rdma.rs`, feature `rdma`); both keep command slots indexed by CID and
//! offer the same submit / wait / poll / release calls, and `execute` is built on them once.
//!
//! [`TcpQueue`]: in-capsule or R2T/H2CData writes, C2HData reads, completions by CapsuleResp or
//! by a C2HData with SUCCESS. Slot buffers are reused, so steady-state I/O allocates nothing.

use super::conn::Conn;
use super::error::{HostError, Result};
use super::pdu::SQE_FLAGS_SGL;
use super::{HostConfig, HostTransport};
use crate::spec::tcp::{fes, pdu_flags, pdu_type, CapsuleRespHdr, DataHdr, R2THdr};
use crate::spec::{Cqe, SglDescriptor, Sqe};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Largest data transfer of one command the host sets up (its buffer is allocated here).
pub const MAX_TRANSFER: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    None,
    /// Controller to host (C2HData).
    Read,
    /// Host to controller, in-capsule or by R2T.
    Write,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    InFlight,
    /// Completed, waiting to be handed to the caller.
    Done,
}

struct Slot {
    state: State,
    dir: Dir,
    in_capsule: bool,
    /// Data length of the command.
    len: usize,
    /// Read data, or write data awaiting R2Ts. Its capacity is kept between commands.
    buf: Vec<u8>,
    /// C2HData bytes received so far.
    rcvd: usize,
    cqe: Cqe,
}

pub(crate) struct TcpQueue {
    pub conn: Conn,
    pub qid: u16,
    slots: Vec<Slot>,
    free: Vec<u16>,
    ready: VecDeque<u16>,
    /// Largest write sent as in-capsule data.
    pub icd_max: usize,
}

const F: u16 = fes::INVALID_PDU_HEADER_FIELD;

impl TcpQueue {
    /// A queue allowing `depth` commands in flight (CIDs `0..depth`).
    pub fn new(conn: Conn, qid: u16, depth: usize, icd_max: usize) -> TcpQueue {
        let depth = depth.clamp(1, 0xffff);
        let slots = (0..depth)
            .map(|_| Slot {
                state: State::Free,
                dir: Dir::None,
                in_capsule: false,
                len: 0,
                buf: Vec::new(),
                rcvd: 0,
                cqe: Cqe::default(),
            })
            .collect();
        TcpQueue {
            conn,
            qid,
            slots,
            free: (0..depth as u16).rev().collect(),
            ready: VecDeque::with_capacity(depth),
            icd_max,
        }
    }

    pub fn depth(&self) -> usize {
        self.slots.len()
    }

    /// Commands submitted and not yet handed back.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Send `sqe` (its CID, PSDT and SGL1 are set here) with `out` as write data or `in_len`
    /// bytes to read. Returns the CID.
    pub fn submit(&mut self, mut sqe: Sqe, out: Option<&[u8]>, in_len: usize) -> Result<u16> {
        self.conn.check_alive()?;
        let out = out.filter(|d| !d.is_empty());
        if out.is_some() && in_len > 0 {
            return Err(HostError::InvalidArgument("data in both directions".into()));
        }
        let len = out.map_or(in_len, |d| d.len());
        if len > MAX_TRANSFER {
            return Err(HostError::InvalidArgument(format!("transfer of {len} bytes exceeds {MAX_TRANSFER}")));
        }
        let cid = self.free.pop().ok_or(HostError::QueueFull)?;
        let slot = &mut self.slots[cid as usize];
        sqe.cid.set(cid);
        sqe.flags = (sqe.flags & 0x3f) | SQE_FLAGS_SGL;
        slot.len = len;
        slot.rcvd = 0;
        slot.in_capsule = false;
        slot.state = State::InFlight;
        let capsule_data: &[u8] = match out {
            Some(d) if d.len() <= self.icd_max => {
                slot.dir = Dir::Write;
                slot.in_capsule = true;
                sqe.set_sgl1(SglDescriptor::in_capsule(0, len as u32));
                d
            }
            Some(d) => {
                slot.dir = Dir::Write;
                slot.buf.clear();
                slot.buf.extend_from_slice(d);
                sqe.set_sgl1(SglDescriptor::transport(len as u32));
                &[]
            }
            None => {
                slot.dir = if len > 0 { Dir::Read } else { Dir::None };
                slot.buf.resize(len, 0);
                sqe.set_sgl1(SglDescriptor::transport(len as u32));
                &[]
            }
        };
        log::trace!("qid {} submit cid {cid} opcode {:#04x} len {len}", self.qid, sqe.opcode);
        let r = self.conn.send_capsule(&sqe, capsule_data);
        self.conn.guard(r)?;
        Ok(cid)
    }

    fn complete(&mut self, cid: u16, cqe: Cqe) {
        let slot = &mut self.slots[cid as usize];
        slot.cqe = cqe;
        slot.state = State::Done;
        self.ready.push_back(cid);
    }

    /// Receive and handle one PDU (blocking up to the socket timeout).
    fn process_one(&mut self) -> Result<()> {
        let r = self.process_one_inner();
        self.conn.guard(r)
    }

    fn process_one_inner(&mut self) -> Result<()> {
        let t = self.conn.recv_header()?;
        match t {
            pdu_type::CAPSULE_RESP => {
                let h: CapsuleRespHdr = self.conn.header();
                let cid = h.cqe.cid.get();
                let Some(slot) = self.slots.get(cid as usize).filter(|s| s.state == State::InFlight) else {
                    return Err(self.conn.violation(
                        Some((F, 20)),
                        24,
                        format!("CapsuleResp for CID {cid}, not in flight"),
                    ));
                };
                if slot.dir == Dir::Read && h.cqe.is_success() && slot.rcvd != slot.len {
                    let msg = format!("read CID {cid} completed with {} of {} bytes", slot.rcvd, slot.len);
                    return Err(self.conn.violation(None, 0, msg));
                }
                log::trace!("qid {} CapsuleResp cid {cid} status {:?}", self.qid, h.cqe.status());
                self.complete(cid, h.cqe);
            }
            pdu_type::C2H_DATA => {
                let h: DataHdr = self.conn.header();
                let cid = h.cccid.get();
                let (datao, datal) = (h.datao.get() as usize, h.datal.get() as usize);
                let flags = h.ch.flags;
                let Some(slot) =
                    self.slots.get(cid as usize).filter(|s| s.state == State::InFlight && s.dir == Dir::Read)
                else {
                    return Err(self.conn.violation(
                        Some((F, 8)),
                        24,
                        format!("C2HData for CID {cid}, no read in flight"),
                    ));
                };
                let len = slot.len;
                if datal != self.conn.data_len() {
                    let msg = format!("C2HData DATAL {datal} but {} bytes of data", self.conn.data_len());
                    return Err(self.conn.violation(Some((F, 16)), 24, msg));
                }
                if datao.checked_add(datal).is_none_or(|end| end > len) {
                    let msg = format!("C2HData DATAO {datao} DATAL {datal} beyond the {len}-byte buffer of CID {cid}");
                    return Err(self.conn.violation(Some((fes::DATA_TRANSFER_OUT_OF_RANGE, 12)), 24, msg));
                }
                if flags & pdu_flags::SUCCESS != 0 && flags & pdu_flags::LAST_PDU == 0 {
                    return Err(self.conn.violation(Some((F, 1)), 24, "C2HData SUCCESS without LAST_PDU".into()));
                }
                let TcpQueue { conn, slots, .. } = self;
                let slot = &mut slots[cid as usize];
                conn.recv_data(&mut slot.buf[datao..datao + datal])?;
                slot.rcvd += datal;
                if flags & pdu_flags::SUCCESS != 0 {
                    if slot.rcvd != len {
                        let msg = format!("C2HData SUCCESS for CID {cid} after {} of {len} bytes", slot.rcvd);
                        return Err(self.conn.violation(None, 0, msg));
                    }
                    let mut cqe = Cqe::default();
                    cqe.cid.set(cid);
                    cqe.sqid.set(self.qid);
                    self.complete(cid, cqe);
                }
            }
            pdu_type::R2T => {
                let h: R2THdr = self.conn.header();
                let cid = h.cccid.get();
                let (r2to, r2tl) = (h.r2to.get() as usize, h.r2tl.get() as usize);
                let Some(slot) = self
                    .slots
                    .get(cid as usize)
                    .filter(|s| s.state == State::InFlight && s.dir == Dir::Write && !s.in_capsule)
                else {
                    return Err(self.conn.violation(
                        Some((F, 8)),
                        24,
                        format!("R2T for CID {cid}, no R2T write in flight"),
                    ));
                };
                if r2tl == 0 || r2to.checked_add(r2tl).is_none_or(|end| end > slot.len) {
                    let msg = format!("R2T R2TO {r2to} R2TL {r2tl} outside the {}-byte write of CID {cid}", slot.len);
                    return Err(self.conn.violation(Some((fes::DATA_TRANSFER_OUT_OF_RANGE, 12)), 24, msg));
                }
                log::trace!("qid {} R2T cid {cid} ttag {} off {r2to} len {r2tl}", self.qid, h.ttag.get());
                let TcpQueue { conn, slots, .. } = self;
                conn.send_h2c(cid, h.ttag.get(), r2to as u32, &slots[cid as usize].buf[r2to..r2to + r2tl])?;
                conn.flush()?;
            }
            t => return Err(self.conn.violation(Some((F, 0)), 8, format!("unexpected PDU type {t:#04x}"))),
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        let r = self.conn.flush();
        self.conn.guard(r)
    }

    /// Block until `cid` completes; other completions arriving meanwhile stay queued for
    /// [`TcpQueue::poll`]. The slot stays allocated until [`TcpQueue::release`].
    pub fn wait(&mut self, cid: u16) -> Result<Cqe> {
        self.flush()?;
        loop {
            let slot = &self.slots[cid as usize];
            match slot.state {
                State::Done => {
                    let cqe = slot.cqe;
                    self.ready.retain(|&c| c != cid);
                    return Ok(cqe);
                }
                State::InFlight => self.process_one()?,
                State::Free => return Err(HostError::InvalidArgument(format!("CID {cid} not in flight"))),
            }
        }
    }

    /// Data of a completed read (or an empty slice).
    pub fn data(&self, cid: u16) -> &[u8] {
        let s = &self.slots[cid as usize];
        if s.dir == Dir::Read {
            &s.buf[..s.len]
        } else {
            &[]
        }
    }

    pub fn release(&mut self, cid: u16) {
        let s = &mut self.slots[cid as usize];
        if s.state != State::Free {
            s.state = State::Free;
            self.free.push(cid);
        }
    }

    /// Hand every completion that has arrived to `on_complete`; when none has and commands are
    /// in flight, block (up to the I/O timeout) for at least one. Returns how many were handed.
    pub fn poll(&mut self, mut on_complete: impl FnMut(u16, Cqe, Option<&[u8]>)) -> Result<usize> {
        self.flush()?;
        while self.ready.is_empty() && self.in_flight() > 0 {
            self.process_one()?;
        }
        while self.conn.rx_buffered() {
            self.process_one()?;
        }
        let mut n = 0;
        while let Some(cid) = self.ready.pop_front() {
            let s = &self.slots[cid as usize];
            let data = if s.dir == Dir::Read { Some(&s.buf[..s.len]) } else { None };
            on_complete(cid, s.cqe, data);
            self.release(cid);
            n += 1;
        }
        Ok(n)
    }

    pub fn close(&mut self) {
        self.conn.close();
    }
}

/// Which transport a queue runs over (chosen by [`HostConfig::transport`]).
pub(crate) enum Queue {
    Tcp(TcpQueue),
    #[cfg(feature = "rdma")]
    Rdma(super::rdma::RdmaQueue),
}

/// Run `$e` with `$q` bound to the queue's engine, whatever the transport.
macro_rules! each {
    ($self:expr, $q:ident => $e:expr) => {
        match $self {
            Queue::Tcp($q) => $e,
            #[cfg(feature = "rdma")]
            Queue::Rdma($q) => $e,
        }
    };
}

impl Queue {
    /// Open the transport connection of queue `qid` (of controller `cntlid`, or
    /// `CNTLID_DYNAMIC` for an admin queue) to `addr`, allowing `depth` commands in flight and
    /// writes of up to `icd_max` bytes in-capsule. The Fabrics Connect is the caller's.
    pub fn open(
        addr: SocketAddr,
        qid: u16,
        cntlid: u16,
        depth: usize,
        icd_max: usize,
        cfg: &HostConfig,
    ) -> Result<Queue> {
        match cfg.transport {
            HostTransport::Tcp => {
                let _ = cntlid;
                Ok(Queue::Tcp(TcpQueue::new(Conn::connect(addr, cfg)?, qid, depth, icd_max)))
            }
            #[cfg(feature = "rdma")]
            HostTransport::Rdma => {
                Ok(Queue::Rdma(super::rdma::RdmaQueue::connect(addr, qid, cntlid, depth, icd_max, cfg)?))
            }
            #[cfg(not(feature = "rdma"))]
            HostTransport::Rdma => {
                Err(HostError::InvalidArgument("NVMe/RDMA: nvmf was built without the `rdma` feature".into()))
            }
        }
    }

    pub fn qid(&self) -> u16 {
        each!(self, q => q.qid)
    }
    pub fn depth(&self) -> usize {
        each!(self, q => q.depth())
    }
    pub fn in_flight(&self) -> usize {
        each!(self, q => q.in_flight())
    }
    /// Largest write sent as in-capsule data.
    pub fn icd_max(&self) -> usize {
        each!(self, q => q.icd_max)
    }
    pub fn set_icd_max(&mut self, n: usize) {
        each!(self, q => q.icd_max = n)
    }
    /// NVMe/TCP ICResp CPDA and MAXH2CDATA; (0, 0) over RDMA.
    pub fn icresp_params(&self) -> (u8, u32) {
        match self {
            Queue::Tcp(q) => (q.conn.cpda, q.conn.maxh2cdata),
            #[cfg(feature = "rdma")]
            Queue::Rdma(_) => (0, 0),
        }
    }
    pub fn submit(&mut self, sqe: Sqe, out: Option<&[u8]>, in_len: usize) -> Result<u16> {
        each!(self, q => q.submit(sqe, out, in_len))
    }
    pub fn wait(&mut self, cid: u16) -> Result<Cqe> {
        each!(self, q => q.wait(cid))
    }
    pub fn data(&self, cid: u16) -> &[u8] {
        each!(self, q => q.data(cid))
    }
    pub fn release(&mut self, cid: u16) {
        each!(self, q => q.release(cid))
    }
    pub fn poll(&mut self, on_complete: impl FnMut(u16, Cqe, Option<&[u8]>)) -> Result<usize> {
        each!(self, q => q.poll(on_complete))
    }
    /// Send whatever is queued (TCP batches capsules; RDMA posts each at once).
    pub fn flush(&mut self) -> Result<()> {
        each!(self, q => q.flush())
    }
    pub fn close(&mut self) {
        each!(self, q => q.close())
    }

    /// Submit, wait, copy read data into `data_in`. Returns the CQE whatever its status.
    pub fn execute(&mut self, sqe: Sqe, data_out: Option<&[u8]>, data_in: Option<&mut [u8]>) -> Result<Cqe> {
        let in_len = data_in.as_ref().map_or(0, |b| b.len());
        let cid = self.submit(sqe, data_out, in_len)?;
        let r = self.wait(cid);
        if let (Ok(_), Some(dst)) = (&r, data_in) {
            let src = self.data(cid);
            dst[..src.len()].copy_from_slice(src);
        }
        self.release(cid);
        r
    }

    /// Like [`Queue::execute`], turning an error status into `HostError::Status`.
    pub fn execute_ok(&mut self, sqe: Sqe, data_out: Option<&[u8]>, data_in: Option<&mut [u8]>) -> Result<Cqe> {
        check(self.execute(sqe, data_out, data_in)?)
    }
}

/// `Ok(cqe)` for a successful completion, `HostError::Status` otherwise.
pub(crate) fn check(cqe: Cqe) -> Result<Cqe> {
    if cqe.is_success() {
        Ok(cqe)
    } else {
        Err(HostError::Status { status: cqe.status(), dw0: cqe.dw0.get() })
    }
}
