//! The NVMe/TCP send path under short writes: far more read data than the socket buffers can
//! hold, to a host that does not read and then reads in small, uneven pieces. C2HData payloads of
//! 4 KiB and more leave the target straight from their request buffers (`writev`), so the
//! target's sends stop at arbitrary bytes: inside headers, inside payloads, at their edges.
//!
//! Deterministic: the target (one `PollGroup`) is polled from the test thread, which also drives
//! a non-blocking host socket; no threads, no sleeps. The host checks every PDU byte for byte
//! (header and data digests, the data against what it wrote), and the test checks that pool
//! buffers and the direct-mode namespace's DMA buffers come back, also when the host resets the
//! connection while payloads still wait in their buffers.

#![forbid(unsafe_code)]

use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
use nvme_driver::{Controller as PcieController, ControllerOptions, DmaBacking};
use nvmf::bdev::nvme::NvmeBdevOpts;
use nvmf::bdev::{Bdev, MallocBdev, NvmeBdev};
use nvmf::host::pdu::{
    check_rx_header, connect_data, connect_sqe, encode_capsule_cmd, encode_h2c_data, fabrics_sqe, icreq,
};
use nvmf::host::HostConfig;
use nvmf::spec::fabrics::{ConnectCmd, PropertyCmd};
use nvmf::spec::tcp::{digest, pdu_flags, pdu_type, CapsuleRespHdr, CommonHeader, DataHdr, ICResp, R2THdr, DIGEST_LEN};
use nvmf::spec::{reg, FabricsType, SglDescriptor, Sqe};
use nvmf::{PollGroup, Target};
use nvmf_tests::{accept_one, pattern, polled_target, reset_connection, NQN};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use zerocopy::{FromBytes, IntoBytes};

const BS: u64 = 512;
const MIB: usize = 1 << 20;
/// Polls `settle` may take before the test fails (the target never goes idle).
const MAX_POLLS: usize = 2_000_000;

/// Bounds a wait by how long nothing moves (not by a deadline): spins at first, then naps, and
/// fails after about 10 s without progress. Nothing asserts on time.
struct Patience(u32);

impl Patience {
    fn new() -> Self {
        Patience(0)
    }
    fn progress(&mut self) {
        self.0 = 0;
    }
    fn stuck(&mut self, what: &str) {
        self.0 += 1;
        if self.0 > 1000 {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        assert!(self.0 < 101_000, "{what}: no progress");
    }
}
/// Consecutive polls without work that mean the target is idle.
const IDLE_POLLS: usize = 8;
/// Command buffers of the direct-mode channel (a quarter, 2, is never lent).
const NVME_BUFS: usize = 8;

struct Rig {
    target: Target,
    group: PollGroup,
    addr: SocketAddr,
    nvme: Arc<NvmeBdev>,
}

impl Rig {
    /// Namespace 1: 8 MiB Malloc. Namespace 2: 8 MiB direct mode on the emulated controller, with
    /// 8 command buffers and one large (1 MiB) buffer to lend.
    fn new() -> Rig {
        let malloc: Arc<dyn Bdev> =
            Arc::new(MallocBdev::new("Malloc0", 8 * MIB as u64 / BS, BS as u32).expect("malloc"));
        let emu = EmulatedController::new(EmulatorConfig {
            namespaces: vec![(BS as u32, 8 * MIB as u64 / BS)],
            ..Default::default()
        });
        let opts = ControllerOptions { dma_backing: DmaBacking::Anonymous, ..Default::default() };
        let ctrl = Arc::new(PcieController::new_emulated(&emu, opts).expect("emulated controller"));
        let nopts =
            NvmeBdevOpts { queue_entries: Some(32), num_bufs: Some(NVME_BUFS), large_bufs: 1, ..Default::default() };
        let nvme = Arc::new(NvmeBdev::with_opts("Nvme0n1", ctrl, 1, nopts).expect("nvme bdev"));
        let (target, addr) = polled_target(NQN, vec![malloc, nvme.clone()]);
        let group = target.create_poll_group();
        Rig { target, group, addr, nvme }
    }

    fn poll(&mut self) -> usize {
        self.group.poll()
    }

    /// Poll until the target has had nothing to do for a while.
    fn settle(&mut self) {
        let mut idle = 0;
        for _ in 0..MAX_POLLS {
            if self.poll() == 0 {
                idle += 1;
                if idle == IDLE_POLLS {
                    return;
                }
            } else {
                idle = 0;
            }
        }
        panic!("the target never went idle");
    }

    /// A host connection handed to the poll group. Its receive buffer is fixed and small (no
    /// autotuning), so the data the target can have in flight is bounded by its send buffer.
    fn connect(&mut self) -> TcpStream {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        s.set_recv_buffer_size(64 << 10).expect("SO_RCVBUF");
        s.connect(&self.addr.into()).expect("connect");
        s.set_nodelay(true).expect("TCP_NODELAY");
        s.set_nonblocking(true).expect("O_NONBLOCK");
        accept_one(&mut self.target, &mut self.group);
        s.into()
    }

    fn connections(&self) -> usize {
        self.group.num_connections()
    }

    /// Poll until `n` connections are left.
    fn wait_connections(&mut self, n: usize) {
        let mut p = Patience::new();
        while self.connections() != n {
            if self.poll() == 0 {
                p.stuck("waiting for connections to close");
            }
        }
    }
}

/// What a read should return, and whether its data and completion have arrived.
struct PendingRead {
    want: Vec<u8>,
    got_data: bool,
    done: bool,
}

/// One host queue (admin or I/O) on a non-blocking socket.
struct Host {
    sock: TcpStream,
    rx: Vec<u8>,
    hd: bool,
    dd: bool,
    maxh2cdata: usize,
    next_cid: u16,
    reads: BTreeMap<u16, PendingRead>,
    /// Sizes of the host's successive socket reads while it reads "slowly".
    chunks: std::iter::Cycle<std::array::IntoIter<usize, 9>>,
}

impl Host {
    /// ICReq and Connect (`cattr` bit 2 disables SQ flow control: read data then comes as
    /// C2HData with SUCCESS, without a CapsuleResp). Returns the host and the controller ID.
    fn connect(rig: &mut Rig, hd: bool, dd: bool, qid: u16, cntlid: u16, cattr: u8) -> (Host, u16) {
        let chunks = [1, 7, 24, 100, 1000, 4093, 16384, 65536, 131072].into_iter().cycle();
        let sock = rig.connect();
        let mut h = Host { sock, rx: Vec::new(), hd, dd, maxh2cdata: 0, next_cid: 1, reads: BTreeMap::new(), chunks };
        h.send(rig, icreq(hd, dd, 0, 0).as_bytes());
        let p = h.next_pdu(rig);
        let r = ICResp::read_from_bytes(&p[..]).expect("ICResp");
        assert_eq!(r.ch.pdu_type, pdu_type::IC_RESP);
        assert_eq!(r.dgst, hd as u8 | (dd as u8) << 1, "digests granted");
        h.maxh2cdata = r.maxh2cdata.get() as usize;
        let sqsize = if qid == 0 { 31 } else { 127 };
        let mut sqe = connect_sqe(qid, sqsize, 0);
        ConnectCmd { recfmt: 0, qid, sqsize, cattr, kato: 0 }.write(&mut sqe);
        let cfg = HostConfig::default();
        let data = connect_data(&cfg.hostid, cntlid, NQN, &cfg.hostnqn);
        let cqe = h.command(rig, sqe, data.as_bytes());
        (h, cqe.dw0.get() as u16)
    }

    /// Send `bytes`, polling the target while the socket is full.
    fn send(&mut self, rig: &mut Rig, mut bytes: &[u8]) {
        let mut p = Patience::new();
        while !bytes.is_empty() {
            match self.sock.write(bytes) {
                Ok(n) => {
                    bytes = &bytes[n..];
                    p.progress();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    rig.poll();
                    p.stuck("the target does not read");
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("send: {e}"),
            }
        }
    }

    /// Read at most `max` bytes that have arrived (none: 0).
    fn fill(&mut self, max: usize) -> usize {
        let start = self.rx.len();
        self.rx.resize(start + max, 0);
        let n = loop {
            match self.sock.read(&mut self.rx[start..]) {
                Ok(0) => panic!("the target closed the connection"),
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("receive: {e}"),
            }
        };
        self.rx.truncate(start + n);
        n
    }

    /// A complete PDU at the front of what was received, taken off.
    fn take_pdu(&mut self) -> Option<Vec<u8>> {
        let ch = CommonHeader::read_from_bytes(self.rx.get(..8)?).expect("8 bytes");
        let plen = ch.plen.get() as usize;
        assert!(plen >= 8, "PLEN {plen}");
        (self.rx.len() >= plen).then(|| self.rx.drain(..plen).collect())
    }

    /// The next PDU, polling the target until it is there.
    fn next_pdu(&mut self, rig: &mut Rig) -> Vec<u8> {
        let mut p = Patience::new();
        loop {
            if let Some(pdu) = self.take_pdu() {
                return pdu;
            }
            if self.fill(1 << 17) == 0 {
                rig.poll();
                p.stuck("waiting for a PDU");
            } else {
                p.progress();
            }
        }
    }

    fn capsule(&mut self, rig: &mut Rig, sqe: &Sqe, data: &[u8]) {
        let mut out = Vec::new();
        encode_capsule_cmd(&mut out, sqe, data, self.hd, self.dd, 0);
        self.send(rig, &out);
    }

    /// A command with in-capsule data (or none), waited for; it must succeed.
    fn command(&mut self, rig: &mut Rig, mut sqe: Sqe, data: &[u8]) -> nvmf::spec::Cqe {
        sqe.cid.set(self.cid());
        self.capsule(rig, &sqe, data);
        let p = self.next_pdu(rig);
        let cqe = self.capsule_resp(&p);
        assert_eq!(cqe.cid.get(), sqe.cid.get());
        assert!(cqe.status().is_success(), "command {:#x}: {:?}", sqe.opcode, cqe.status());
        cqe
    }

    fn cid(&mut self) -> u16 {
        let c = self.next_cid;
        self.next_cid += 1;
        c
    }

    fn check_header(&self, p: &[u8]) -> (CommonHeader, nvmf::host::pdu::RxLayout) {
        let ch = CommonHeader::read_from_bytes(&p[..8]).expect("8 bytes");
        let lay = check_rx_header(&ch, self.hd, self.dd).unwrap_or_else(|f| panic!("malformed PDU: {}", f.msg));
        if lay.hdgst {
            let hlen = ch.hlen as usize;
            assert_eq!(
                p[hlen..hlen + 4],
                digest(&p[..hlen]).to_le_bytes(),
                "header digest of PDU type {:#x}",
                ch.pdu_type
            );
        }
        (ch, lay)
    }

    fn capsule_resp(&self, p: &[u8]) -> nvmf::spec::Cqe {
        let (ch, _) = self.check_header(p);
        assert_eq!(ch.pdu_type, pdu_type::CAPSULE_RESP, "expected a CapsuleResp");
        CapsuleRespHdr::read_from_prefix(p).expect("CapsuleResp").0.cqe
    }

    fn rw_sqe(opcode: u8, nsid: u32, lba: u64, len: usize) -> Sqe {
        let mut sqe = Sqe { opcode, flags: 0x40, nsid: nsid.into(), ..Default::default() };
        sqe.set_slba(lba);
        sqe.cdw12.set((len as u64 / BS - 1) as u32);
        sqe.set_sgl1(SglDescriptor::transport(len as u32));
        sqe
    }

    /// Write `data` through R2T and H2CData.
    fn write(&mut self, rig: &mut Rig, nsid: u32, lba: u64, data: &[u8]) {
        let mut sqe = Self::rw_sqe(0x01, nsid, lba, data.len());
        let cid = self.cid();
        sqe.cid.set(cid);
        self.capsule(rig, &sqe, &[]);
        let p = self.next_pdu(rig);
        self.check_header(&p);
        let r2t = R2THdr::read_from_prefix(&p).expect("R2T").0;
        assert_eq!(
            (r2t.ch.pdu_type, r2t.cccid.get(), r2t.r2to.get(), r2t.r2tl.get() as usize),
            (pdu_type::R2T, cid, 0, data.len())
        );
        let mut out = Vec::new();
        for (i, chunk) in data.chunks(self.maxh2cdata).enumerate() {
            let off = i * self.maxh2cdata;
            encode_h2c_data(
                &mut out,
                cid,
                r2t.ttag.get(),
                off as u32,
                chunk,
                off + chunk.len() == data.len(),
                self.hd,
                self.dd,
                0,
            );
        }
        self.send(rig, &out);
        let p = self.next_pdu(rig);
        let cqe = self.capsule_resp(&p);
        assert!(cqe.cid.get() == cid && cqe.status().is_success(), "write: {:?}", cqe.status());
    }

    /// Send a read of `want.len()` bytes without waiting for it.
    fn submit_read(&mut self, rig: &mut Rig, nsid: u32, lba: u64, want: Vec<u8>) {
        let mut sqe = Self::rw_sqe(0x02, nsid, lba, want.len());
        let cid = self.cid();
        sqe.cid.set(cid);
        self.capsule(rig, &sqe, &[]);
        self.reads.insert(cid, PendingRead { want, got_data: false, done: false });
    }

    /// Check one PDU of a read: its C2HData (digests, offsets, every byte) or its completion.
    fn on_read_pdu(&mut self, p: &[u8]) {
        let (ch, lay) = self.check_header(p);
        match ch.pdu_type {
            pdu_type::C2H_DATA => {
                let h = DataHdr::read_from_prefix(p).expect("C2HData").0;
                let cid = h.cccid.get();
                let r = self.reads.get_mut(&cid).unwrap_or_else(|| panic!("C2HData for CID {cid}, not outstanding"));
                assert!(!r.got_data && !r.done, "CID {cid}: a second C2HData");
                let start = ch.pdo as usize;
                let data = &p[start..start + lay.data_len];
                if lay.ddgst {
                    let d = &p[start + lay.data_len..start + lay.data_len + DIGEST_LEN];
                    assert_eq!(d, digest(data).to_le_bytes(), "CID {cid}: data digest");
                }
                assert_eq!(
                    (h.datao.get(), h.datal.get() as usize),
                    (0, r.want.len()),
                    "CID {cid}: one PDU for the whole read"
                );
                assert!(ch.flags & pdu_flags::LAST_PDU != 0, "CID {cid}: LAST_PDU");
                assert!(data == &r.want[..], "CID {cid}: {} bytes of read data differ", r.want.len());
                r.got_data = true;
                r.done = ch.flags & pdu_flags::SUCCESS != 0;
            }
            pdu_type::CAPSULE_RESP => {
                let cqe = CapsuleRespHdr::read_from_prefix(p).expect("CapsuleResp").0.cqe;
                let cid = cqe.cid.get();
                let r = self.reads.get_mut(&cid).unwrap_or_else(|| panic!("completion for CID {cid}, not outstanding"));
                assert!(cqe.status().is_success(), "CID {cid}: {:?}", cqe.status());
                assert!(r.got_data && !r.done, "CID {cid}: completion before its data, or twice");
                r.done = true;
            }
            t => panic!("unexpected PDU type {t:#x}"),
        }
    }

    /// Receive every outstanding read, `slowly`: one small, uneven socket read per target poll.
    /// Otherwise as fast as the data comes.
    fn receive_reads(&mut self, rig: &mut Rig, slowly: bool) {
        let mut p = Patience::new();
        while !self.reads.values().all(|r| r.done) {
            let max = if slowly { self.chunks.next().unwrap_or(1) } else { 1 << 17 };
            let n = self.fill(max);
            while let Some(pdu) = self.take_pdu() {
                self.on_read_pdu(&pdu);
            }
            if n == 0 {
                p.stuck("waiting for read data");
            } else {
                p.progress();
            }
            if slowly || n == 0 {
                rig.poll();
            }
        }
        self.reads.clear();
    }
}

/// What the host wrote, to check reads against.
struct Disks {
    malloc: Vec<u8>,
    nvme: Vec<u8>,
}

impl Disks {
    fn want(&self, nsid: u32, lba: u64, len: usize) -> Vec<u8> {
        let d = if nsid == 1 { &self.malloc } else { &self.nvme };
        d[(lba * BS) as usize..(lba * BS) as usize + len].to_vec()
    }
}

/// Connect a controller (admin queue, enabled) and I/O queue 1.
fn connect(rig: &mut Rig, hd: bool, dd: bool, cattr: u8) -> (Host, Host, u16) {
    let (mut admin, cntlid) = Host::connect(rig, hd, dd, 0, 0xffff, 0);
    let mut set = fabrics_sqe(FabricsType::PropertySet);
    PropertyCmd { eight_bytes: false, offset: reg::CC, value: 0x0046_0001 }.write(&mut set);
    admin.command(rig, set, &[]);
    let (io, _) = Host::connect(rig, hd, dd, 1, cntlid, cattr);
    (admin, io, cntlid)
}

/// About 36 MiB of reads, submitted at once: 32 reads of 1 MiB from the Malloc namespace with
/// 4 KiB reads (sent from their buffers) and 2 KiB reads (copied) between them, and on the
/// direct-mode namespace 64 KiB reads and two of 1 MiB (2.5 MiB in DMA buffers in all).
fn submit_burst(rig: &mut Rig, io: &mut Host, disks: &Disks) {
    for i in 0..32u64 {
        let big = (i % 4) * 2048;
        io.submit_read(rig, 1, big, disks.want(1, big, MIB));
        io.submit_read(rig, 1, i * 8 + 1, disks.want(1, i * 8 + 1, 4096));
        io.submit_read(rig, 1, i * 16 + 3, disks.want(1, i * 16 + 3, 2048));
        if i % 4 == 1 {
            io.submit_read(rig, 2, i * 128, disks.want(2, i * 128, 65536));
        }
        if i == 5 || i == 17 {
            io.submit_read(rig, 2, 2048, disks.want(2, 2048, MIB));
        }
    }
}

#[test]
fn large_reads_to_a_slow_host_arrive_intact_through_short_writes_and_every_buffer_comes_back() {
    let mut rig = Rig::new();
    let mut disks = Disks { malloc: vec![0; 8 * MIB], nvme: vec![0; 8 * MIB] };
    // No digests with SQ flow control disabled (C2HData with SUCCESS: a payload can be the last
    // thing queued), then both digests with CapsuleResps.
    for (hd, dd, cattr, seed) in [(false, false, 4, 1u64), (true, true, 0, 2)] {
        let (admin, mut io, _) = connect(&mut rig, hd, dd, cattr);
        for (nsid, mib) in [(1u32, 4usize), (2, 2)] {
            for m in 0..mib {
                let lba = (m * MIB) as u64 / BS;
                let data = pattern(seed * 10 + nsid as u64, lba, MIB);
                io.write(&mut rig, nsid, lba, &data);
                let disk = if nsid == 1 { &mut disks.malloc } else { &mut disks.nvme };
                disk[m * MIB..(m + 1) * MIB].copy_from_slice(&data);
            }
        }
        submit_burst(&mut rig, &mut io, &disks);
        // The host reads nothing: the target works until the socket is full (or it stops
        // taking commands with more than 8 MiB unsent). Either way at least 8 MiB is left, so
        // payloads of Malloc reads wait in their pool buffers.
        rig.settle();
        assert!(rig.group.buffers_in_use() > 0, "read payloads wait in their buffers while the socket is full");
        io.receive_reads(&mut rig, true);
        // Every buffer is back once the data is out: pool buffers, and the DMA buffers (a
        // 1 MiB read and six 64 KiB reads at once, with one large buffer and six lendable command
        // buffers, copy nothing).
        rig.settle();
        assert_eq!(rig.group.buffers_in_use(), 0, "pool buffers held after every read was sent");
        check_dma_buffers_back(&mut rig, &mut io, &disks, "after a slow host");
        drop((admin, io));
        rig.wait_connections(0);
    }
    assert_eq!(rig.group.buffers_in_use(), 0);
}

/// The DMA buffers are all back: a 1 MiB read (one large buffer) and six 64 KiB reads at once
/// (six lendable command buffers) copy nothing.
fn check_dma_buffers_back(rig: &mut Rig, io: &mut Host, disks: &Disks, what: &str) {
    let copied = rig.nvme.copied_bytes();
    io.submit_read(rig, 2, 4096, disks.want(2, 4096, MIB));
    io.receive_reads(rig, false);
    for i in 0..NVME_BUFS as u64 - 2 {
        io.submit_read(rig, 2, i * 128, disks.want(2, i * 128, 65536));
    }
    io.receive_reads(rig, false);
    assert_eq!(rig.nvme.copied_bytes(), copied, "{what}: every DMA buffer came back to be lent again");
}

#[test]
fn payloads_queued_when_a_connection_ends_go_back_to_their_pools() {
    let mut rig = Rig::new();
    let disks = Disks { malloc: vec![0; 8 * MIB], nvme: vec![0; 8 * MIB] };
    // The host resets the I/O connection (the target's next send fails), or its admin queue
    // goes away while the I/O queue does not read (the controller is torn down and the I/O
    // connection closes with its payloads still queued).
    for reset in [true, false] {
        let what = if reset { "I/O connection reset" } else { "controller torn down" };
        let (admin, mut io, _) = connect(&mut rig, false, true, 0);
        submit_burst(&mut rig, &mut io, &disks);
        rig.settle();
        assert!(rig.group.buffers_in_use() > 0, "{what}: payloads queued");
        // A few pieces in, the host stops reading.
        for _ in 0..5 {
            io.fill(4093);
            rig.poll();
        }
        if reset {
            reset_connection(io.sock);
            rig.wait_connections(1);
            drop(admin);
        } else {
            drop(admin);
            rig.wait_connections(0);
            drop(io);
        }
        rig.wait_connections(0);
        assert_eq!(rig.group.buffers_in_use(), 0, "{what}: pool buffers of queued payloads returned");
        let (admin, mut io, _) = connect(&mut rig, false, true, 0);
        check_dma_buffers_back(&mut rig, &mut io, &disks, what);
        drop((admin, io));
        rig.wait_connections(0);
    }
    assert_eq!(rig.group.buffers_in_use(), 0);
}
