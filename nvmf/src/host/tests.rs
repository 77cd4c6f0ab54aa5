//! The host against a scripted fake target on 127.0.0.1: every PDU the host sends is checked
//! byte for byte, and the fake sends what a real target may (out-of-order C2HData, several R2Ts
//! at once, C2HData with SUCCESS) and what it must not (bad digests, TermReq, bad offsets).

use super::pdu::{self, encode, SQE_FLAGS_SGL};
use super::*;
use crate::spec::discovery::{DiscoveryLogEntry, DiscoveryLogHeader};
use crate::spec::fabrics::{ConnectData, DISCOVERY_NQN};
use crate::spec::tcp::{
    data_offset, digest, fes, pdu_flags, pdu_type, CapsuleRespHdr, CommonHeader, DataHdr, ICResp, R2THdr, TermReqHdr,
};
use crate::spec::{Cqe, GenericStatus, IdentifyController, MediaStatus, SglDescriptor, Sqe, Status, StatusCodeType};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

const SUBNQN: &str = "nqn.2016-06.io.nvmf-rs:test";
const CNTLID: u16 = 5;
/// In-capsule data the fake advertises for I/O queues (IOCCSZ 260).
const IO_ICD: usize = 4096;

fn cfg(digests: bool) -> HostConfig {
    HostConfig {
        header_digest: digests,
        data_digest: digests,
        kato_ms: 15_000,
        queue_size: 8,
        io_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Run `target` on a listener in a thread and `host` here; a target assertion failure is
/// reported in preference to the host error it causes.
fn scenario(target: impl FnOnce(TcpListener) + Send + 'static, host: impl FnOnce(SocketAddr) -> Result<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = thread::spawn(move || target(l));
    let r = host(addr);
    let joined = t.join();
    if let Err(p) = joined {
        std::panic::resume_unwind(p);
    }
    r.unwrap();
}

/// Byte-exact comparison that reports the first difference instead of dumping kilobytes.
#[track_caller]
fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        let end = (i + 16).min(got.len()).min(want.len());
        panic!("{what}: first difference at byte {i}: got {:02x?}, want {:02x?}", &got[i..end], &want[i..end]);
    }
    assert_eq!(got.len(), want.len(), "{what}: length");
}

fn read_pdu(s: &mut TcpStream) -> Vec<u8> {
    let mut ch = [0u8; 8];
    s.read_exact(&mut ch).unwrap();
    let plen = u32::from_le_bytes(ch[4..8].try_into().unwrap()) as usize;
    assert!((8..=2 << 20).contains(&plen), "PLEN {plen}");
    let mut v = vec![0u8; plen];
    v[..8].copy_from_slice(&ch);
    s.read_exact(&mut v[8..]).unwrap();
    v
}

/// The scripted target side of one connection.
struct Fake {
    s: TcpStream,
    hdgst: bool,
    ddgst: bool,
    /// CPDA this fake announced.
    cpda: u8,
}

impl Fake {
    /// Accept, check the ICReq, answer with an ICResp echoing the digests.
    fn accept(l: &TcpListener, cpda: u8, maxh2cdata: u32, want_dgst: u8) -> Fake {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        let req = read_pdu(&mut s);
        let mut want = vec![0u8; 128];
        want[..8].copy_from_slice(&[0, 0, 128, 0, 128, 0, 0, 0]);
        want[11] = want_dgst; // PFV 0, HPDA 0, MAXR2T 0
        assert_eq!(req, want, "ICReq bytes");
        let mut r = ICResp::new_zeroed();
        r.ch = CommonHeader { pdu_type: pdu_type::IC_RESP, flags: 0, hlen: 128, pdo: 0, plen: 128.into() };
        r.cpda = cpda;
        r.dgst = want_dgst;
        r.maxh2cdata = maxh2cdata.into();
        s.write_all(r.as_bytes()).unwrap();
        Fake { s, hdgst: want_dgst & 1 != 0, ddgst: want_dgst & 2 != 0, cpda }
    }

    /// Receive a PDU, checking its digests; returns the whole PDU.
    fn recv(&mut self) -> Vec<u8> {
        let p = read_pdu(&mut self.s);
        let (flags, hlen) = (p[1], p[2] as usize);
        assert_eq!(flags & pdu_flags::HDGSTF != 0, self.hdgst, "HDGSTF in {:?}", &p[..8]);
        if self.hdgst {
            assert_eq!(&p[hlen..hlen + 4], &digest(&p[..hlen]).to_le_bytes(), "header digest");
        }
        let data = Self::data(&p);
        if !data.is_empty() {
            assert_eq!(flags & pdu_flags::DDGSTF != 0, self.ddgst, "DDGSTF");
            if self.ddgst {
                assert_eq!(&p[p.len() - 4..], &digest(data).to_le_bytes(), "data digest");
            }
        }
        p
    }

    fn data(p: &[u8]) -> &[u8] {
        let pdo = p[3] as usize;
        if pdo == 0 {
            return &[];
        }
        let dd = if p[1] & pdu_flags::DDGSTF != 0 { 4 } else { 0 };
        &p[pdo..p.len() - dd]
    }

    /// Receive a CapsuleCmd: (SQE, in-capsule data, whole PDU).
    fn cmd(&mut self) -> (Sqe, Vec<u8>, Vec<u8>) {
        let p = self.recv();
        assert_eq!(p[0], pdu_type::CAPSULE_CMD, "expected a CapsuleCmd, got {:?}", &p[..8]);
        assert_eq!(p[2], 72);
        let sqe = Sqe::read_from_bytes(&p[8..72]).unwrap();
        assert_eq!(sqe.flags & 0xc0, SQE_FLAGS_SGL, "PSDT");
        let data = Self::data(&p).to_vec();
        (sqe, data, p)
    }

    fn send(&mut self, header: &mut [u8], data: &[u8]) {
        let mut out = Vec::new();
        encode(&mut out, header, data, self.hdgst, self.ddgst, 0);
        self.s.write_all(&out).unwrap();
    }

    fn resp(&mut self, cid: u16, status: Status, dw0: u32, dw1: u32) {
        let mut cqe = Cqe::new(cid, status);
        cqe.dw0.set(dw0);
        cqe.dw1.set(dw1);
        cqe.sqid.set(0);
        let mut h = CapsuleRespHdr { cqe, ..Default::default() };
        h.ch.pdu_type = pdu_type::CAPSULE_RESP;
        self.send(h.as_mut_bytes(), &[]);
    }

    fn ok(&mut self, cid: u16) {
        self.resp(cid, Status::SUCCESS, 0, 0)
    }

    fn c2h(&mut self, cid: u16, datao: u32, data: &[u8], flags: u8) {
        let mut h =
            DataHdr { cccid: cid.into(), datao: datao.into(), datal: (data.len() as u32).into(), ..Default::default() };
        h.ch.pdu_type = pdu_type::C2H_DATA;
        h.ch.flags = flags;
        self.send(h.as_mut_bytes(), data);
    }

    fn r2t(&mut self, cid: u16, ttag: u16, off: u32, len: u32) {
        let mut h =
            R2THdr { cccid: cid.into(), ttag: ttag.into(), r2to: off.into(), r2tl: len.into(), ..Default::default() };
        h.ch.pdu_type = pdu_type::R2T;
        self.send(h.as_mut_bytes(), &[]);
    }

    fn term_req(&mut self, fes: u16, fei: u32) {
        let mut h = TermReqHdr { fes: fes.into(), fei: fei.into(), ..Default::default() };
        h.ch = CommonHeader { pdu_type: pdu_type::C2H_TERM_REQ, flags: 0, hlen: 24, pdo: 0, plen: 32.into() };
        self.s.write_all(h.as_bytes()).unwrap();
        self.s.write_all(&[0xaa; 8]).unwrap();
    }

    /// Expect a fabrics command of type `fctype`; returns the SQE.
    fn fabrics(&mut self, fctype: u8) -> Sqe {
        let (sqe, data, _) = self.cmd();
        assert_eq!((sqe.opcode, sqe.fctype()), (0x7f, fctype), "fabrics command");
        assert!(data.is_empty());
        assert_eq!(sqe.sgl1(), SglDescriptor::transport(0), "no-data SGL");
        sqe
    }

    /// Expect a Connect for `qid`; check it completely and accept it.
    fn connect(&mut self, qid: u16, sqsize: u16, kato: u32, cntlid: u16, subnqn: &str, cfg: &HostConfig) {
        let (sqe, data, p) = self.cmd();
        let pdo = data_offset(72, self.hdgst, self.cpda);
        assert_eq!(p[3] as usize, pdo, "Connect PDO");
        assert_eq!(p.len(), pdo + 1024 + if self.ddgst { 4 } else { 0 }, "Connect PLEN");
        assert_eq!((sqe.opcode, sqe.flags, sqe.fctype()), (0x7f, 0x40, 0x01));
        assert_eq!(sqe.sgl1(), SglDescriptor::in_capsule(0, 1024));
        let b = sqe.as_bytes();
        assert_eq!(u16::from_le_bytes([b[40], b[41]]), 0, "RECFMT");
        assert_eq!(u16::from_le_bytes([b[42], b[43]]), qid, "QID");
        assert_eq!(u16::from_le_bytes([b[44], b[45]]), sqsize, "SQSIZE");
        assert_eq!(b[46], 0, "CATTR");
        assert_eq!(sqe.cdw12.get(), kato, "KATO");
        let d = ConnectData::read_from_bytes(&data[..]).unwrap();
        assert_eq!(d.hostid, cfg.hostid);
        assert_eq!(d.cntlid.get(), cntlid);
        assert_eq!(crate::spec::get_str(&d.subnqn), subnqn);
        assert_eq!(crate::spec::get_str(&d.hostnqn), cfg.hostnqn);
        self.resp(sqe.cid.get(), Status::SUCCESS, CNTLID as u32, 0);
    }

    /// Script the controller enable that follows the admin Connect: CAP, VS, CC, CSTS (not ready
    /// once, then ready).
    fn enable(&mut self) {
        let sqe = self.fabrics(0x04);
        assert_eq!((sqe.cdw10.get(), sqe.cdw11.get()), (1, 0x00), "Property Get CAP, 8 bytes");
        let cap = Cap::new(127, 1).0;
        self.resp(sqe.cid.get(), Status::SUCCESS, cap as u32, (cap >> 32) as u32);
        let sqe = self.fabrics(0x04);
        assert_eq!((sqe.cdw10.get(), sqe.cdw11.get()), (0, 0x08), "Property Get VS");
        self.resp(sqe.cid.get(), Status::SUCCESS, 0x0001_0400, 0);
        let sqe = self.fabrics(0x00);
        assert_eq!((sqe.cdw10.get(), sqe.cdw11.get()), (0, 0x14), "Property Set CC");
        assert_eq!((sqe.cdw12.get(), sqe.cdw13.get()), (0x0046_0001, 0), "CC value");
        self.ok(sqe.cid.get());
        for rdy in [0, 1] {
            let sqe = self.fabrics(0x04);
            assert_eq!((sqe.cdw10.get(), sqe.cdw11.get()), (0, 0x1c), "Property Get CSTS");
            self.resp(sqe.cid.get(), Status::SUCCESS, rdy, 0);
        }
    }

    /// Answer an Identify Controller with IOCCSZ for 4 KiB of in-capsule data, in two C2HData.
    fn identify_controller(&mut self) {
        let (sqe, data, _) = self.cmd();
        assert_eq!((sqe.opcode, sqe.cdw10.get()), (0x06, 0x01));
        assert!(data.is_empty());
        assert_eq!(sqe.sgl1(), SglDescriptor::transport(4096));
        let mut id = IdentifyController::default();
        id.set_model("fake");
        id.cntlid.set(CNTLID);
        id.ioccsz.set(((IO_ICD + 64) / 16) as u32);
        id.nn.set(1);
        let b = id.as_bytes().to_vec();
        let cid = sqe.cid.get();
        self.c2h(cid, 0, &b[..1000], 0);
        self.c2h(cid, 1000, &b[1000..], pdu_flags::LAST_PDU);
        self.ok(cid);
    }
}

use crate::spec::Cap;

/// Admin connect with digests and CPDA, identify, one I/O queue with its own CPDA: out-of-order
/// reads, SUCCESS-flag reads, two outstanding R2Ts split by MAXH2CDATA, in-capsule writes, the
/// pipelined API, error status, TermReq.
#[test]
fn connect_identify_read_write_against_fake_target() {
    let c = cfg(true);
    let tc = c.clone();
    let pattern: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let tpattern = pattern.clone();
    scenario(
        move |l| {
            let c = tc;
            // Admin queue: CPDA 1 (8-byte alignment).
            let mut a = Fake::accept(&l, 1, 8192, 3);
            a.connect(0, 31, 15_000, 0xffff, SUBNQN, &c);
            a.enable();
            a.identify_controller();

            // I/O queue 1: CPDA 3 (16-byte alignment), MAXH2CDATA 4096.
            let mut q = Fake::accept(&l, 3, 4096, 3);
            q.connect(1, 7, 0, CNTLID, SUBNQN, &c);

            // Read of 8 KiB: second half first, then the first half with LAST_PDU.
            let (sqe, data, _) = q.cmd();
            assert_eq!((sqe.opcode, sqe.nsid.get(), sqe.slba(), sqe.cdw12.get()), (0x02, 1, 100, 15));
            assert!(data.is_empty());
            assert_eq!(sqe.sgl1(), SglDescriptor::transport(8192));
            let cid = sqe.cid.get();
            q.c2h(cid, 4096, &tpattern[4096..8192], 0);
            q.c2h(cid, 0, &tpattern[..4096], pdu_flags::LAST_PDU);
            q.ok(cid);

            // Read of 512 bytes completed by C2HData LAST_PDU|SUCCESS, no CapsuleResp.
            let (sqe, _, _) = q.cmd();
            assert_eq!((sqe.opcode, sqe.slba(), sqe.cdw12.get()), (0x02, 7, 0));
            q.c2h(sqe.cid.get(), 0, &tpattern[..512], pdu_flags::LAST_PDU | pdu_flags::SUCCESS);

            // Write of 10000 bytes (> 4 KiB in-capsule): two R2Ts at once.
            let (sqe, data, raw) = q.cmd();
            assert_eq!((sqe.opcode, sqe.slba(), sqe.cdw12.get()), (0x01, 200, 19));
            assert!(data.is_empty());
            assert_eq!(raw.len(), 76, "capsule without data: header + digest");
            assert_eq!(sqe.sgl1(), SglDescriptor::transport(10_000));
            let cid = sqe.cid.get();
            q.r2t(cid, 0x11, 0, 6000);
            q.r2t(cid, 0x22, 6000, 4000);
            let expect = [(0x11, 0, 4096, false), (0x11, 4096, 6000, true), (0x22, 6000, 10_000, true)];
            for (ttag, from, to, last) in expect {
                let got = q.recv();
                let mut want = Vec::new();
                pdu::encode_h2c_data(&mut want, cid, ttag, from as u32, &tpattern[from..to], last, true, true, 3);
                assert_eq!(got[3], 32, "H2CData PDO: 24 + 4 aligned to 16");
                assert_bytes(&got, &want, &format!("H2CData {ttag:#x} {from}..{to}"));
            }
            q.ok(cid);

            // Small write: in-capsule, exact bytes.
            let (sqe, data, raw) = q.cmd();
            let mut want_sqe = Sqe { opcode: 0x01, flags: 0x40, ..Default::default() };
            want_sqe.cid = sqe.cid;
            want_sqe.nsid.set(1);
            want_sqe.set_slba(5);
            want_sqe.set_sgl1(SglDescriptor::in_capsule(0, 512));
            let mut want = Vec::new();
            pdu::encode_capsule_cmd(&mut want, &want_sqe, &tpattern[..512], true, true, 3);
            assert_bytes(&raw, &want, "in-capsule write PDU");
            assert_eq!(raw[3], 80, "PDO 72 + 4 aligned to 16");
            assert!(data == tpattern[..512]);
            q.ok(sqe.cid.get());

            // Compare that fails.
            let (sqe, _, _) = q.cmd();
            assert_eq!(sqe.opcode, 0x05);
            q.resp(sqe.cid.get(), Status::media(MediaStatus::COMPARE_FAILURE).dnr(), 0, 0);

            // Pipelined: two reads and an R2T write, answered out of order.
            let mut cmds = Vec::new();
            for _ in 0..3 {
                cmds.push(q.cmd().0);
            }
            let cids: Vec<u16> = cmds.iter().map(|s| s.cid.get()).collect();
            assert!(cids[0] != cids[1] && cids[1] != cids[2] && cids[0] != cids[2], "distinct CIDs {cids:?}");
            assert_eq!([cmds[0].opcode, cmds[1].opcode, cmds[2].opcode], [0x02, 0x02, 0x01]);
            q.r2t(cids[2], 7, 0, 8192);
            q.c2h(cids[1], 0, &tpattern[1..4097], pdu_flags::LAST_PDU | pdu_flags::SUCCESS);
            let h2c = q.recv();
            assert_eq!(h2c[0], pdu_type::H2C_DATA);
            let h2c2 = q.recv();
            assert_eq!(h2c2[1] & pdu_flags::LAST_PDU, pdu_flags::LAST_PDU);
            assert!(Fake::data(&h2c2) == &tpattern[4096..8192]);
            q.ok(cids[2]);
            q.c2h(cids[0], 0, &tpattern[2..4098], pdu_flags::LAST_PDU);
            q.resp(cids[0], Status::generic(GenericStatus::LBA_OUT_OF_RANGE), 0, 0);

            // Flush, then a TermReq instead of an answer.
            let (sqe, _, _) = q.cmd();
            assert_eq!((sqe.opcode, sqe.nsid.get()), (0x00, 1));
            q.term_req(fes::INVALID_PDU_HEADER_FIELD, 2);

            // Admin keep-alive still works on its own connection.
            let (sqe, _, _) = a.cmd();
            assert_eq!(sqe.opcode, 0x18);
            a.ok(sqe.cid.get());
        },
        move |addr| {
            let mut ctrl = Controller::connect(addr, SUBNQN, &c)?;
            assert_eq!(ctrl.cntlid(), CNTLID);
            assert_eq!(ctrl.vs().0, 0x0001_0400);
            assert_eq!(ctrl.cap().mqes(), 127);
            assert_eq!(ctrl.icresp_params(), (1, 8192));
            let id = ctrl.identify_controller()?;
            assert_eq!(id.model(), "fake");
            assert_eq!(id.cntlid.get(), CNTLID);
            let mut io = ctrl.connect_io_queue(1)?;
            assert_eq!(io.in_capsule_size(), IO_ICD);
            assert_eq!(io.depth(), 7);

            let mut buf = vec![0u8; 8192];
            io.read(1, 100, 16, &mut buf)?;
            assert!(buf == pattern[..8192], "out-of-order read data");
            let mut small = vec![0u8; 512];
            io.read(1, 7, 1, &mut small)?;
            assert!(small == pattern[..512], "SUCCESS read data");
            io.write(1, 200, 20, &pattern[..10_000])?;
            io.write(1, 5, 1, &pattern[..512])?;
            match io.compare(1, 0, 1, &pattern[..512]) {
                Err(HostError::Status { status, .. }) => {
                    assert_eq!((status.sct(), status.sc()), (StatusCodeType::MediaDataIntegrity as u8, 0x85));
                    assert!(status.is_dnr());
                }
                other => panic!("compare: {other:?}"),
            }

            let r0 = io.submit_read(1, 0, 8, 4096)?;
            let r1 = io.submit_read(1, 8, 8, 4096)?;
            let w = io.submit_write(1, 16, 16, &pattern[..8192])?;
            assert_eq!(io.in_flight(), 3);
            let mut done = Vec::new();
            while done.len() < 3 {
                io.poll(|cid, cqe, data| {
                    let data = data.map(|d| d.to_vec());
                    done.push((cid, cqe.status(), data));
                })?;
            }
            assert_eq!(io.in_flight(), 0);
            assert_eq!((done[0].0, done[0].1), (r1, Status::SUCCESS));
            assert!(done[0].2.as_deref() == Some(&pattern[1..4097]), "pipelined read data");
            assert_eq!((done[1].0, done[1].1, done[1].2.is_none()), (w, Status::SUCCESS, true));
            assert_eq!(done[2].0, r0);
            assert_eq!(done[2].1, Status::generic(GenericStatus::LBA_OUT_OF_RANGE));

            match io.flush(1) {
                Err(HostError::TermReq { fes, fei }) => assert_eq!((fes, fei), (1, 2)),
                other => panic!("flush: {other:?}"),
            }
            assert!(matches!(io.flush(1), Err(HostError::Closed)));
            ctrl.keep_alive()?;
            Ok(())
        },
    );
}

/// A CapsuleResp with a corrupt header digest: `HostError::Protocol`, an H2CTermReq with FES
/// Header Digest Error, the connection closed.
#[test]
fn bad_header_digest_is_a_protocol_error() {
    let c = cfg(true);
    scenario(
        move |l| {
            let mut a = Fake::accept(&l, 0, 8192, 3);
            let (sqe, _, _) = a.cmd();
            let mut cqe = Cqe::new(sqe.cid.get(), Status::SUCCESS);
            cqe.dw0.set(1);
            let mut h = CapsuleRespHdr { cqe, ..Default::default() };
            h.ch = CommonHeader { pdu_type: pdu_type::CAPSULE_RESP, flags: 1, hlen: 24, pdo: 0, plen: 28.into() };
            let mut out = h.as_bytes().to_vec();
            out.extend_from_slice(&(digest(h.as_bytes()) ^ 1).to_le_bytes());
            a.s.write_all(&out).unwrap();
            let term = read_pdu(&mut a.s);
            assert_eq!(&term[..8], &[0x02, 0, 24, 0, 48, 0, 0, 0], "H2CTermReq with the 24-byte header");
            assert_eq!(u16::from_le_bytes([term[8], term[9]]), fes::HEADER_DIGEST_ERROR);
            assert_eq!(&term[24..], h.as_bytes());
            let mut rest = Vec::new();
            a.s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        },
        move |addr| {
            match Controller::connect(addr, SUBNQN, &c) {
                Err(HostError::Protocol(m)) => assert!(m.contains("header digest"), "{m}"),
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => panic!("connected despite the bad digest"),
            }
            Ok(())
        },
    );
}

/// Target misbehaviour on data PDUs: bad data digest, C2HData beyond the buffer, R2T for a
/// command without R2T data, completion for an unknown CID, a TermReq during ICReq.
#[test]
fn bad_data_pdus_are_protocol_errors() {
    #[derive(Clone, Copy, Debug)]
    enum Case {
        DataDigest,
        C2hOutOfRange,
        R2tForRead,
        UnknownCid,
        SuccessWithoutLast,
        ShortReadSuccess,
    }
    for case in [
        Case::DataDigest,
        Case::C2hOutOfRange,
        Case::R2tForRead,
        Case::UnknownCid,
        Case::SuccessWithoutLast,
        Case::ShortReadSuccess,
    ] {
        let digests = matches!(case, Case::DataDigest);
        let c = cfg(digests);
        let dg = if digests { 3 } else { 0 };
        scenario(
            move |l| {
                let mut q = Fake::accept(&l, 0, 8192, dg);
                let (sqe, _, _) = q.cmd(); // the Connect
                q.resp(sqe.cid.get(), Status::SUCCESS, 0, 0);
                let (sqe, _, _) = q.cmd(); // the read of 1024 bytes
                let cid = sqe.cid.get();
                let term = match case {
                    Case::DataDigest => {
                        let mut h = DataHdr { cccid: cid.into(), datal: 1024.into(), ..Default::default() };
                        h.ch = CommonHeader {
                            pdu_type: pdu_type::C2H_DATA,
                            flags: 3 | pdu_flags::LAST_PDU,
                            hlen: 24,
                            pdo: 28,
                            plen: (28 + 1024 + 4).into(),
                        };
                        let mut out = h.as_bytes().to_vec();
                        out.extend_from_slice(&digest(h.as_bytes()).to_le_bytes());
                        out.extend_from_slice(&[9; 1024]);
                        out.extend_from_slice(&(digest(&[9; 1024]) ^ 0x100).to_le_bytes());
                        q.s.write_all(&out).unwrap();
                        None
                    }
                    Case::C2hOutOfRange => {
                        q.c2h(cid, 512, &[1; 1024], pdu_flags::LAST_PDU);
                        Some(fes::DATA_TRANSFER_OUT_OF_RANGE)
                    }
                    Case::R2tForRead => {
                        q.r2t(cid, 1, 0, 1024);
                        Some(fes::INVALID_PDU_HEADER_FIELD)
                    }
                    Case::UnknownCid => {
                        q.ok(cid + 1);
                        Some(fes::INVALID_PDU_HEADER_FIELD)
                    }
                    Case::SuccessWithoutLast => {
                        q.c2h(cid, 0, &[1; 1024], pdu_flags::SUCCESS);
                        Some(fes::INVALID_PDU_HEADER_FIELD)
                    }
                    Case::ShortReadSuccess => {
                        q.c2h(cid, 0, &[1; 512], pdu_flags::LAST_PDU | pdu_flags::SUCCESS);
                        None
                    }
                };
                if let Some(f) = term {
                    let t = read_pdu(&mut q.s);
                    assert_eq!(t[0], pdu_type::H2C_TERM_REQ, "{case:?}");
                    assert_eq!(u16::from_le_bytes([t[8], t[9]]), f, "{case:?} FES");
                }
                let mut rest = Vec::new();
                let _ = q.s.read_to_end(&mut rest);
                assert!(rest.is_empty(), "{case:?}: host sent more after the error");
            },
            move |addr| {
                let mut io = IoQueue::connect(addr, SUBNQN, CNTLID, 1, &c, 0)?;
                let mut buf = [0u8; 1024];
                match io.read(1, 0, 2, &mut buf) {
                    Err(HostError::Protocol(_)) => {}
                    other => panic!("{case:?}: {other:?}"),
                }
                assert!(matches!(io.read(1, 0, 2, &mut buf), Err(HostError::Closed)), "{case:?}");
                Ok(())
            },
        );
    }
}

/// A target refusing the connection outright: TermReq instead of ICResp; and an error status on
/// Connect.
#[test]
fn term_req_at_icreq_and_connect_rejected() {
    scenario(
        |l| {
            let (mut s, _) = l.accept().unwrap();
            let _ = read_pdu(&mut s);
            let mut h = TermReqHdr { fes: fes::UNSUPPORTED_PARAMETER.into(), fei: 11.into(), ..Default::default() };
            h.ch = CommonHeader { pdu_type: pdu_type::C2H_TERM_REQ, flags: 0, hlen: 24, pdo: 0, plen: 24.into() };
            s.write_all(h.as_bytes()).unwrap();
            let mut q = Fake::accept(&l, 0, 8192, 0);
            let (sqe, _, _) = q.cmd();
            q.resp(sqe.cid.get(), Status::command_specific(0x84).dnr(), 0, 0);
        },
        |addr| {
            match Controller::connect(addr, SUBNQN, &cfg(false)) {
                Err(HostError::TermReq { fes, fei }) => assert_eq!((fes, fei), (fes::UNSUPPORTED_PARAMETER, 11)),
                other => panic!("{:?}", other.err()),
            }
            match Controller::connect(addr, SUBNQN, &cfg(false)) {
                Err(HostError::Status { status, .. }) => {
                    assert_eq!((status.sct(), status.sc()), (1, 0x84))
                }
                other => panic!("{:?}", other.err()),
            }
            Ok(())
        },
    );
}

/// Discovery: connect to the discovery NQN (enabled like any controller), read the log header,
/// the entries, the header again; then shutdown.
#[test]
fn discovery_log_and_shutdown() {
    let c = cfg(false);
    let tc = c.clone();
    scenario(
        move |l| {
            let mut a = Fake::accept(&l, 0, 8192, 0);
            a.connect(0, 31, 15_000, 0xffff, DISCOVERY_NQN, &tc);
            a.enable();
            let mut log = vec![0u8; 3 * 1024];
            let mut h = DiscoveryLogHeader::new_zeroed();
            h.genctr.set(42);
            h.numrec.set(2);
            log[..1024].copy_from_slice(h.as_bytes());
            for i in 0..2usize {
                let mut e = DiscoveryLogEntry::new_zeroed();
                e.trtype = 3;
                e.subtype = 2;
                e.portid.set(i as u16);
                crate::spec::put_str(&mut e.subnqn, &format!("nqn.test:{i}"), 0);
                log[1024 * (i + 1)..1024 * (i + 2)].copy_from_slice(e.as_bytes());
            }
            for (off, len) in [(0usize, 1024usize), (1024, 2048), (0, 1024)] {
                let (sqe, _, _) = a.cmd();
                assert_eq!(sqe.opcode, 0x02);
                let numd = (len / 4 - 1) as u32;
                assert_eq!(sqe.cdw10.get(), 0x70 | (numd & 0xffff) << 16, "LID and NUMDL");
                assert_eq!(sqe.cdw11.get(), numd >> 16);
                assert_eq!((sqe.cdw12.get(), sqe.cdw13.get()), (off as u32, 0));
                assert_eq!(sqe.sgl1(), SglDescriptor::transport(len as u32));
                a.c2h(sqe.cid.get(), 0, &log[off..off + len], pdu_flags::LAST_PDU | pdu_flags::SUCCESS);
            }
            // Shutdown: read CC, set SHN, CSTS polled until SHST = 10b.
            let sqe = a.fabrics(0x04);
            assert_eq!(sqe.cdw11.get(), 0x14);
            a.resp(sqe.cid.get(), Status::SUCCESS, 0x0046_0001, 0);
            let sqe = a.fabrics(0x00);
            assert_eq!((sqe.cdw11.get(), sqe.cdw12.get()), (0x14, 0x0046_4001));
            a.ok(sqe.cid.get());
            for csts in [0x5, 0x9] {
                let sqe = a.fabrics(0x04);
                assert_eq!(sqe.cdw11.get(), 0x1c);
                a.resp(sqe.cid.get(), Status::SUCCESS, csts, 0);
            }
            let mut rest = Vec::new();
            a.s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        },
        move |addr| {
            let mut d = Controller::connect(addr, DISCOVERY_NQN, &c)?;
            assert!(d.is_discovery());
            let (genctr, entries) = d.discovery_log()?;
            assert_eq!(genctr, 42);
            assert_eq!(entries.len(), 2);
            assert_eq!(crate::spec::get_str(&entries[1].subnqn), "nqn.test:1");
            assert_eq!(entries[1].portid.get(), 1);
            d.shutdown()?;
            d.disconnect()?;
            Ok(())
        },
    );
}

/// A target that never answers: `HostError::Timeout`, then `Closed`.
#[test]
fn silent_target_times_out() {
    let mut c = cfg(false);
    c.io_timeout = Duration::from_millis(300);
    scenario(
        |l| {
            let mut q = Fake::accept(&l, 0, 8192, 0);
            let _ = q.cmd();
            let mut rest = Vec::new();
            let _ = q.s.read_to_end(&mut rest);
        },
        move |addr| {
            assert!(matches!(Controller::connect(addr, SUBNQN, &c), Err(HostError::Timeout)));
            Ok(())
        },
    );
}

/// RawConnection: ICReq/ICResp, a hand-made PDU, recv_pdu, expect_closed.
#[test]
fn raw_connection_round_trip() {
    scenario(
        |l| {
            let mut f = Fake::accept(&l, 2, 65536, 1);
            let p = read_pdu(&mut f.s);
            assert_eq!(p, [0x42, 0, 8, 0, 8, 0, 0, 0]);
            f.term_req(fes::INVALID_PDU_HEADER_FIELD, 0);
            // Close.
        },
        |addr| {
            let mut r = RawConnection::connect(addr)?;
            let resp = r.icreq(true, false)?;
            assert_eq!((resp.cpda, resp.dgst, resp.maxh2cdata.get()), (2, 1, 65536));
            r.send(&[0x42, 0, 8, 0, 8, 0, 0, 0])?;
            let (ch, bytes) = r.recv_pdu()?;
            assert_eq!((ch.pdu_type, ch.hlen, ch.plen.get()), (pdu_type::C2H_TERM_REQ, 24, 32));
            assert_eq!(bytes.len(), 32);
            r.expect_closed()?;
            Ok(())
        },
    );
}

#[test]
fn default_config() {
    let c = HostConfig::default();
    assert_eq!(c.hostnqn, format!("nqn.2014-08.org.nvmexpress:uuid:{DEFAULT_HOST_UUID}"));
    let hex: String = c.hostid.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, DEFAULT_HOST_UUID.replace('-', ""));
    assert_eq!((c.kato_ms, c.queue_size, c.io_timeout), (30_000, 128, Duration::from_secs(10)));
    assert!(!c.header_digest && !c.data_digest);
    assert_eq!(c.transport, HostTransport::Tcp);
}

#[test]
fn transport_names() {
    assert_eq!("tcp".parse::<HostTransport>(), Ok(HostTransport::Tcp));
    assert_eq!("RDMA".parse::<HostTransport>(), Ok(HostTransport::Rdma));
    assert!("fc".parse::<HostTransport>().is_err());
}

/// Without the `rdma` feature, asking for NVMe/RDMA fails before anything is sent.
#[cfg(not(feature = "rdma"))]
#[test]
fn rdma_without_the_feature_is_an_invalid_argument() {
    let cfg = HostConfig { transport: HostTransport::Rdma, ..cfg(false) };
    let r = Controller::connect("127.0.0.1:9".parse().unwrap(), SUBNQN, &cfg);
    assert!(matches!(r, Err(HostError::InvalidArgument(ref m)) if m.contains("rdma")), "{:?}", r.err());
}
