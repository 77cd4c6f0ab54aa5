//! Fuzzing entry points, shared by the `cargo fuzz` targets in `fuzz/` and by
//! `tests/tests/fuzz_regressions.rs`, which replays the seed corpora and every input that ever
//! crashed through these same functions in a normal `cargo test`.
//!
//! Each input runs against a fresh in-process target (a `Target` with two Malloc namespaces, a
//! direct-mode namespace on the driver's emulated NVMe controller, and one `PollGroup`) over real loopback sockets, polled from the calling thread: no threads, no
//! sleeps, so every crash belongs to the input being run, and controller IDs are the same on
//! every run (the first controller is 1), as in the captured seeds.
//!
//! Besides "never panics", the harness checks (and panics when they fail):
//! - every PDU the target sends is well formed: a known controller-to-host type, the right
//!   HLEN, PLEN and PDO, correct header and data digests, nothing after a C2HTermReq;
//! - (commands) every command gets exactly one completion, except a parked Asynchronous Event
//!   Request, R2Ts and C2HData stay inside the transfer the command described;
//! - once the hosts are gone, the poll group frees every connection and every pool buffer.

use crate::NQN;
use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
use nvme_driver::{ControllerOptions, DmaBacking};
use nvmf::bdev::nvme::NvmeBdevOpts;
use nvmf::bdev::{Bdev, MallocBdev, NvmeBdev};
use nvmf::host::pdu::{
    check_rx_header, connect_data, connect_sqe, encode_capsule_cmd, encode_h2c_data, fabrics_sqe, icreq,
};
use nvmf::host::HostConfig;
use nvmf::spec::fabrics::PropertyCmd;
use nvmf::spec::tcp::{digest, pdu_flags, pdu_type, CapsuleRespHdr, CommonHeader, DataHdr, ICResp, R2THdr, DIGEST_LEN};
use nvmf::spec::{reg, FabricsType, SglDescriptor, Sqe};
use nvmf::{PollGroup, Target};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use zerocopy::{FromBytes, IntoBytes};

/// Consecutive polls without work (and without bytes for any host) that count as idle.
const IDLE_POLLS: u32 = 4;
/// Polls after which a target that is still busy is reported as never going idle.
const MAX_POLLS: u32 = 200_000;
/// Most TCP connections one `tcp_pdu_stream` input may open.
const MAX_CONNS: usize = 16;
/// Largest controller-to-host transfer a `commands` record asks for.
const MAX_READ: usize = 1 << 16;

/// One PDU received from the target: its common header and all its bytes.
pub struct Pdu {
    pub ch: CommonHeader,
    pub bytes: Vec<u8>,
}

/// What the hosts of one input received (for checking that seeds still get through).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Completions with a success status (CapsuleResp, or C2HData with SUCCESS).
    pub success: usize,
    /// Completions with an error status.
    pub errors: usize,
    /// C2HTermReqs.
    pub term_reqs: usize,
}

/// Checks the target's PDU stream on one connection as it arrives.
#[derive(Default)]
struct PduCheck {
    stats: Stats,
    icresp: bool,
    hdgst: bool,
    ddgst: bool,
    cpda: u8,
    maxh2cdata: u32,
    terminated: bool,
}

impl PduCheck {
    /// Take every complete PDU off the front of `rx`, checking each; returns them when `keep`.
    fn parse(&mut self, rx: &mut Vec<u8>, keep: bool, out: &mut Vec<Pdu>) {
        let mut pos = 0;
        while rx.len() - pos >= 8 {
            let ch = CommonHeader::read_from_bytes(&rx[pos..pos + 8]).expect("8 bytes");
            assert!(!self.terminated, "the target sent PDU type {:#04x} after a C2HTermReq", ch.pdu_type);
            let plen = ch.plen.get() as usize;
            if ch.pdu_type == pdu_type::IC_RESP {
                assert!(!self.icresp, "a second ICResp");
                assert_eq!((ch.hlen, plen), (128, 128), "ICResp HLEN/PLEN");
                if rx.len() - pos < plen {
                    break;
                }
                let r = ICResp::read_from_bytes(&rx[pos..pos + 128]).expect("128 bytes");
                assert_eq!(r.pfv.get(), 0, "ICResp PFV");
                self.icresp = true;
                self.hdgst = r.dgst & 1 != 0;
                self.ddgst = r.dgst & 2 != 0;
                self.cpda = r.cpda;
                self.maxh2cdata = r.maxh2cdata.get();
                assert!(
                    self.maxh2cdata >= 4096 && self.maxh2cdata.is_multiple_of(4),
                    "ICResp MAXH2CDATA {}",
                    self.maxh2cdata
                );
            } else {
                if ch.pdu_type != pdu_type::C2H_TERM_REQ {
                    assert!(self.icresp, "PDU type {:#04x} before the ICResp", ch.pdu_type);
                }
                let lay = check_rx_header(&ch, self.hdgst, self.ddgst).unwrap_or_else(|f| {
                    panic!("malformed PDU from the target: {} (FES {:#x} FEI {})", f.msg, f.fes, f.fei)
                });
                if rx.len() - pos < plen {
                    break;
                }
                let p = &rx[pos..pos + plen];
                let hlen = ch.hlen as usize;
                if lay.hdgst {
                    let got = u32::from_le_bytes(p[hlen..hlen + 4].try_into().expect("4 bytes"));
                    assert_eq!(got, digest(&p[..hlen]), "header digest of PDU type {:#04x}", ch.pdu_type);
                }
                if lay.data_len > 0 && ch.pdu_type != pdu_type::C2H_TERM_REQ {
                    let start = ch.pdo as usize;
                    let data = &p[start..start + lay.data_len];
                    if lay.ddgst {
                        let d = &p[start + lay.data_len..start + lay.data_len + DIGEST_LEN];
                        assert_eq!(u32::from_le_bytes(d.try_into().expect("4 bytes")), digest(data), "data digest");
                    }
                }
                match ch.pdu_type {
                    pdu_type::C2H_TERM_REQ => {
                        self.terminated = true;
                        self.stats.term_reqs += 1;
                    }
                    pdu_type::CAPSULE_RESP => {
                        let h = CapsuleRespHdr::read_from_prefix(p).expect("CapsuleResp").0;
                        if h.cqe.status().is_success() {
                            self.stats.success += 1;
                        } else {
                            self.stats.errors += 1;
                        }
                    }
                    pdu_type::C2H_DATA if ch.flags & pdu_flags::SUCCESS != 0 => self.stats.success += 1,
                    _ => {}
                }
            }
            if keep {
                out.push(Pdu { ch, bytes: rx[pos..pos + plen].to_vec() });
            }
            pos += plen;
        }
        rx.drain(..pos);
    }
}

/// The host side of one loopback connection.
struct Client {
    sock: Option<TcpStream>,
    rx: Vec<u8>,
    eof: bool,
    check: PduCheck,
    pdus: Vec<Pdu>,
}

/// A fresh target on 127.0.0.1 polled from this thread, and the hosts connected to it.
pub struct Loopback {
    target: Target,
    group: PollGroup,
    addr: SocketAddr,
    clients: Vec<Client>,
    /// Keep received PDUs for the caller (`take_pdus`).
    keep: bool,
}

impl Loopback {
    /// A target with subsystem [`NQN`] (any host): namespace 1 is a 1 MiB Malloc bdev of 512-byte
    /// blocks, namespace 2 one of 4 KiB blocks, namespace 3 a 1 MiB direct-mode namespace on the
    /// emulated NVMe controller (data in DMA buffers lent to the transport, commands split at a
    /// 16 KiB MDTS, unmodelled opcodes passed through).
    pub fn new(keep: bool) -> Loopback {
        // Logging as RUST_LOG says (nothing by default), also inside the fuzz binaries.
        let _ = env_logger::builder().is_test(true).try_init();
        let mut bdevs: Vec<Arc<dyn Bdev>> = [("Malloc0", 2048, 512), ("Malloc1", 256, 4096)]
            .into_iter()
            .map(|(name, blocks, bs)| Arc::new(MallocBdev::new(name, blocks, bs).expect("malloc")) as Arc<dyn Bdev>)
            .collect();
        // Small queues and pools keep a fresh controller per input cheap.
        let emu =
            EmulatedController::new(EmulatorConfig { namespaces: vec![(512, 2048)], mdts: 2, ..Default::default() });
        let opts = ControllerOptions { dma_backing: DmaBacking::Anonymous, ..Default::default() };
        let ctrl = Arc::new(nvme_driver::Controller::new_emulated(&emu, opts).expect("emulated controller"));
        let nopts = NvmeBdevOpts { queue_entries: Some(8), large_bufs: 1, ..Default::default() };
        bdevs.push(Arc::new(NvmeBdev::with_opts("Nvme0n1", ctrl, 1, nopts).expect("nvme bdev")));
        let (target, addr) = crate::polled_target(NQN, bdevs);
        let group = target.create_poll_group();
        Loopback { target, group, addr, clients: Vec::new(), keep }
    }

    /// Open a connection and hand it to the poll group; returns its index.
    pub fn connect(&mut self) -> usize {
        let s = TcpStream::connect(self.addr).expect("connect to the loopback target");
        crate::accept_one(&mut self.target, &mut self.group);
        s.set_nonblocking(true).expect("nonblocking");
        let _ = s.set_nodelay(true);
        self.clients.push(Client {
            sock: Some(s),
            rx: Vec::new(),
            eof: false,
            check: PduCheck::default(),
            pdus: Vec::new(),
        });
        self.clients.len() - 1
    }

    /// Whether connection `i` is still open on both sides (no EOF, no TermReq, not reset).
    pub fn alive(&self, i: usize) -> bool {
        let c = &self.clients[i];
        c.sock.is_some() && !c.eof && !c.check.terminated
    }

    /// The PDUs received on connection `i` since the last call (with `keep`).
    pub fn take_pdus(&mut self, i: usize) -> Vec<Pdu> {
        std::mem::take(&mut self.clients[i].pdus)
    }

    /// Digests, CPDA and MAXH2CDATA from connection `i`'s ICResp.
    fn negotiated(&self, i: usize) -> (bool, bool, u8, u32) {
        let c = &self.clients[i].check;
        (c.hdgst, c.ddgst, c.cpda, c.maxh2cdata)
    }

    /// Send `bytes` on connection `i`, polling the target while the socket is full. Bytes the
    /// target no longer takes (it closed) are dropped.
    pub fn send(&mut self, i: usize, mut bytes: &[u8]) {
        let mut stuck = 0;
        while !bytes.is_empty() {
            let Some(s) = self.clients[i].sock.as_mut() else { return };
            match s.write(bytes) {
                Ok(0) => return,
                Ok(n) => {
                    bytes = &bytes[n..];
                    stuck = 0;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    stuck += 1;
                    assert!(stuck < MAX_POLLS, "the target stopped reading");
                    self.step();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return, // reset or broken pipe: the target closed
            }
        }
    }

    /// Half-close connection `i` (the target reads EOF).
    pub fn shutdown_write(&mut self, i: usize) {
        if let Some(s) = self.clients[i].sock.as_ref() {
            let _ = s.shutdown(Shutdown::Write);
        }
    }

    /// Close connection `i` abruptly with a TCP reset.
    pub fn reset(&mut self, i: usize) {
        if let Some(s) = self.clients[i].sock.take() {
            crate::reset_connection(s);
        }
    }

    /// Read what every host has been sent, checking the PDUs. Returns bytes read.
    fn drain(&mut self) -> usize {
        let mut total = 0;
        let mut buf = [0u8; 65536];
        for c in self.clients.iter_mut() {
            let Some(s) = c.sock.as_mut() else { continue };
            if c.eof {
                continue;
            }
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        c.eof = true;
                        break;
                    }
                    Ok(n) => {
                        total += n;
                        c.rx.extend_from_slice(&buf[..n]);
                        c.check.parse(&mut c.rx, self.keep, &mut c.pdus);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        c.eof = true;
                        break;
                    }
                }
            }
        }
        total
    }

    /// Poll the target once and read what it sent. Returns the work done (0: nothing).
    pub fn step(&mut self) -> usize {
        let w = self.group.poll();
        w + self.drain()
    }

    /// Poll until the target is idle and every host has read what it was sent.
    pub fn settle(&mut self) {
        let mut idle = 0;
        for _ in 0..MAX_POLLS {
            if self.step() == 0 {
                idle += 1;
                if idle >= IDLE_POLLS {
                    return;
                }
            } else {
                idle = 0;
            }
        }
        panic!("the target never went idle");
    }

    /// Reset every connection, then check that the poll group frees all of them and every pool
    /// buffer. Returns what the hosts received.
    pub fn finish(mut self) -> Stats {
        for i in 0..self.clients.len() {
            self.reset(i);
        }
        for _ in 0..MAX_POLLS {
            self.group.poll();
            if self.group.num_connections() == 0 {
                break;
            }
        }
        assert_eq!(self.group.num_connections(), 0, "connections left in the poll group after every host reset");
        assert_eq!(self.group.buffers_in_use(), 0, "pool buffers leaked after every connection closed");
        let mut st = Stats::default();
        for c in &self.clients {
            st.success += c.check.stats.success;
            st.errors += c.check.stats.errors;
            st.term_reqs += c.check.stats.term_reqs;
        }
        st
    }
}

/// Fuzz target `tcp_pdu_stream`: raw bytes on up to four connections, through the real NVMe/TCP
/// receive state machine, command execution and send path.
///
/// The input is a sequence of segments `[ctl: u8][len: u16 le][len bytes]` (a short last
/// segment takes what is left). `ctl` bits 1:0 pick the connection (opened on first use), bit
/// 2 half-closes it after the bytes, bit 3 resets it (a later segment for the same number opens
/// a new one). After each segment the target is polled until idle, so a PDU split over two
/// segments arrives in two reads. Seeds are host-to-target streams captured from the host client
/// (`fuzz/seeds/tcp_pdu_stream`).
pub fn tcp_pdu_stream(data: &[u8]) -> Stats {
    let mut lb = Loopback::new(false);
    let mut conns: [Option<usize>; 4] = [None; 4];
    let mut rest = data;
    while rest.len() >= 3 {
        let ctl = rest[0];
        let len = (u16::from_le_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let bytes = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let slot = (ctl & 3) as usize;
        let idx = match conns[slot] {
            Some(i) => i,
            None if lb.clients.len() < MAX_CONNS => {
                let i = lb.connect();
                conns[slot] = Some(i);
                i
            }
            None => continue,
        };
        lb.send(idx, bytes);
        if ctl & 4 != 0 {
            lb.shutdown_write(idx);
        }
        if ctl & 8 != 0 {
            lb.reset(idx);
            conns[slot] = None;
        }
        lb.settle();
    }
    lb.finish()
}

/// Data direction of a command from its opcode (fabrics: FCTYPE), as the target works it out.
fn direction(sqe: &Sqe) -> u8 {
    (if sqe.opcode == 0x7f { sqe.fctype() } else { sqe.opcode }) & 3
}

/// A command the `commands` harness sent and has not seen completed.
struct Pending {
    /// Data to send when the target asks with R2T.
    data: Vec<u8>,
    /// Transfer length described by SGL1.
    xfer: u32,
    /// An Asynchronous Event Request: may stay parked.
    aer: bool,
    /// The latest command of an I/O queue, a fused first: it waits for the command after it
    /// (Base 2.0 section 3.4.2), so it may stay pending until one comes.
    fused_first_last: bool,
}

/// The two queues of the `commands` harness: admin (0) and I/O queue 1 (1).
struct CmdHost {
    lb: Loopback,
    conns: [usize; 2],
    pending: [BTreeMap<u16, Pending>; 2],
    next_cid: u16,
}

impl CmdHost {
    /// Handle what arrived: completions, R2Ts (answered with H2CData), C2HData. Returns PDUs seen.
    fn handle(&mut self) -> usize {
        let mut n = 0;
        for q in 0..2 {
            let conn = self.conns[q];
            let pdus = self.lb.take_pdus(conn);
            n += pdus.len();
            for p in pdus {
                match p.ch.pdu_type {
                    pdu_type::CAPSULE_RESP => {
                        let h = CapsuleRespHdr::read_from_prefix(&p.bytes).expect("CapsuleResp").0;
                        let cid = h.cqe.cid.get();
                        assert!(
                            self.pending[q].remove(&cid).is_some(),
                            "queue {q}: completion for CID {cid}, which is not outstanding"
                        );
                    }
                    pdu_type::C2H_DATA => {
                        let h = DataHdr::read_from_prefix(&p.bytes).expect("C2HData").0;
                        let cid = h.cccid.get();
                        let Some(pd) = self.pending[q].get(&cid) else {
                            panic!("queue {q}: C2HData for CID {cid}, which is not outstanding")
                        };
                        let end = h.datao.get() as u64 + h.datal.get() as u64;
                        assert!(
                            end <= pd.xfer as u64,
                            "queue {q}: C2HData up to {end} for a {}-byte transfer",
                            pd.xfer
                        );
                        if p.ch.flags & pdu_flags::SUCCESS != 0 {
                            self.pending[q].remove(&cid);
                        }
                    }
                    pdu_type::R2T => {
                        let h = R2THdr::read_from_prefix(&p.bytes).expect("R2T").0;
                        let cid = h.cccid.get();
                        let Some(pd) = self.pending[q].get(&cid) else {
                            panic!("queue {q}: R2T for CID {cid}, which is not outstanding")
                        };
                        let (off, len) = (h.r2to.get() as usize, h.r2tl.get() as usize);
                        assert!(
                            (off + len) as u64 <= pd.xfer as u64,
                            "queue {q}: R2T for {off}+{len} of a {}-byte transfer",
                            pd.xfer
                        );
                        let mut data = pd.data.get(off..).unwrap_or(&[]).to_vec();
                        data.resize(len, 0);
                        let (hd, dd, cpda, max) = self.lb.negotiated(conn);
                        let mut out = Vec::new();
                        let chunk = (max as usize).max(4096);
                        let mut done = 0;
                        while done < len {
                            let l = chunk.min(len - done);
                            encode_h2c_data(
                                &mut out,
                                cid,
                                h.ttag.get(),
                                (off + done) as u32,
                                &data[done..done + l],
                                done + l == len,
                                hd,
                                dd,
                                cpda,
                            );
                            done += l;
                        }
                        self.lb.send(conn, &out);
                    }
                    _ => {} // ICResp, C2HTermReq: the checker saw them
                }
            }
        }
        n
    }

    /// Poll, answering R2Ts, until nothing moves.
    fn settle(&mut self) {
        let mut idle = 0;
        for _ in 0..MAX_POLLS {
            let w = self.lb.step() + self.handle();
            if w == 0 {
                idle += 1;
                if idle >= IDLE_POLLS {
                    return;
                }
            } else {
                idle = 0;
            }
        }
        panic!("the target never went idle");
    }

    /// Every command on a queue that is still up has completed, parked AERs aside.
    fn check_completions(&mut self) {
        for q in 0..2 {
            if !self.lb.alive(self.conns[q]) {
                self.pending[q].clear();
                continue;
            }
            if let Some((cid, _)) = self.pending[q].iter().find(|(_, p)| !p.aer && !p.fused_first_last) {
                panic!("queue {q}: CID {cid} never completed although the connection is up");
            }
        }
    }

    fn submit(&mut self, q: usize, mut sqe: Sqe, data: Vec<u8>, in_capsule: bool) {
        let conn = self.conns[q];
        if !self.lb.alive(conn) {
            return;
        }
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        sqe.cid.set(cid);
        let (hd, dd, cpda, _) = self.lb.negotiated(conn);
        let xfer = sqe.sgl1().length.get();
        let mut out = Vec::new();
        encode_capsule_cmd(&mut out, &sqe, if in_capsule { &data } else { &[] }, hd, dd, cpda);
        let aer = q == 0 && sqe.opcode == 0x0c;
        for p in self.pending[q].values_mut() {
            p.fused_first_last = false;
        }
        let fused_first_last = q == 1 && sqe.fuse() == nvmf::spec::sqe::FUSE_FIRST;
        self.pending[q].insert(cid, Pending { data, xfer, aer, fused_first_last });
        self.lb.send(conn, &out);
    }
}

/// Fuzz target `commands`: admin, fabrics and NVM commands against the Malloc namespaces, sent
/// as well-formed capsules on a connected admin queue and I/O queue 1 (data moved in-capsule or
/// with R2T/H2CData, answered by the harness).
///
/// Input: one mode byte (bit 0 header digest, bit 1 data digest), then records
/// `[ctl: u8][sqe: 64 bytes][len: u16 le][data]`. `ctl` bit 0 picks the queue (0 admin, 1 I/O);
/// bit 1 sends the SQE's SGL as given (with `len` bytes of in-capsule data, if any); otherwise the
/// harness describes the data itself: host-to-controller commands carry `len` bytes of data
/// (in-capsule up to 8 KiB unless bit 2 asks for R2T), controller-to-host commands get a
/// transfer of `len` bytes (no data follows). Bit 3 sends the next record without waiting for
/// this one's completion. The harness sets a unique CID and PSDT = SGL.
pub fn commands(data: &[u8]) -> Stats {
    let Some((&mode, mut rest)) = data.split_first() else { return Stats::default() };
    let (hd, dd) = (mode & 1 != 0, mode & 2 != 0);
    let mut lb = Loopback::new(true);
    let admin = lb.connect();
    let io = lb.connect();
    let mut h = CmdHost { lb, conns: [admin, io], pending: [BTreeMap::new(), BTreeMap::new()], next_cid: 1 };
    let cfg = HostConfig::default();
    for (q, conn) in [admin, io].into_iter().enumerate() {
        h.lb.send(conn, icreq(hd, dd, 0, 0).as_bytes());
        h.lb.settle();
        assert!(h.lb.negotiated(conn).3 > 0, "no ICResp");
        // Admin: SQSIZE 31, no keep-alive timeout; I/O queue 1: SQSIZE 127 on controller 1.
        let (qid, sqsize, cntlid) = if q == 0 { (0, 31, 0xffff) } else { (1, 127, 1) };
        let sqe = connect_sqe(qid, sqsize, 0);
        let d = connect_data(&cfg.hostid, cntlid, NQN, &cfg.hostnqn);
        h.submit(q, sqe, d.as_bytes().to_vec(), true);
        h.settle();
        if q == 0 {
            // Enable the controller: CC.EN with IOSQES 6, IOCQES 4 (the target is ready at once).
            let mut set = fabrics_sqe(FabricsType::PropertySet);
            PropertyCmd { eight_bytes: false, offset: reg::CC, value: 0x0046_0001 }.write(&mut set);
            h.submit(0, set, Vec::new(), false);
            h.settle();
        }
        let st = h.lb.clients[conn].check.stats;
        assert!(h.pending[q].is_empty() && h.lb.alive(conn) && st.errors == 0, "queue {q}: Connect failed: {st:?}");
    }
    while rest.len() > 1 {
        let ctl = rest[0];
        let mut raw = [0u8; 64];
        let n = (rest.len() - 1).min(64);
        raw[..n].copy_from_slice(&rest[1..1 + n]);
        rest = &rest[1 + n..];
        let len = if rest.len() >= 2 { u16::from_le_bytes([rest[0], rest[1]]) as usize } else { 0 };
        rest = rest.get(2..).unwrap_or(&[]);
        let mut sqe = Sqe::read_from_bytes(&raw[..]).expect("64 bytes");
        let q = (ctl & 1) as usize;
        let dir = direction(&sqe);
        let take = |rest: &mut &[u8], len: usize| {
            let l = len.min(rest.len());
            let d = rest[..l].to_vec();
            *rest = &rest[l..];
            d
        };
        if ctl & 2 != 0 {
            let d = take(&mut rest, len);
            let in_capsule = !d.is_empty();
            h.submit(q, sqe, d, in_capsule);
        } else {
            sqe.flags = (sqe.flags & 0x3f) | 0x40;
            match dir {
                1 => {
                    let d = take(&mut rest, len);
                    let in_capsule = !d.is_empty() && d.len() <= nvmf::IN_CAPSULE_DATA_SIZE && ctl & 4 == 0;
                    let sgl = if in_capsule {
                        SglDescriptor::in_capsule(0, d.len() as u32)
                    } else {
                        SglDescriptor::transport(d.len() as u32)
                    };
                    sqe.set_sgl1(sgl);
                    h.submit(q, sqe, d, in_capsule);
                }
                2 => {
                    sqe.set_sgl1(SglDescriptor::transport(len.min(MAX_READ) as u32));
                    h.submit(q, sqe, Vec::new(), false);
                }
                _ => h.submit(q, sqe, Vec::new(), false),
            }
        }
        if ctl & 8 == 0 {
            h.settle();
            h.check_completions();
        }
    }
    h.settle();
    h.check_completions();
    h.lb.finish()
}
