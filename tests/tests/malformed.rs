//! Hostile input: each malformed PDU gets a C2HTermReq with the spec's FES, only that
//! connection closes, and other hosts keep working.

#![forbid(unsafe_code)]

use nvmf::host::{Controller, HostConfig, HostError, RawConnection};
use nvmf::spec::tcp::{digest, fes, pdu_type};
use nvmf::spec::{GenericStatus, SglDescriptor, Sqe};
use nvmf_tests::*;
use zerocopy::IntoBytes;

/// A healthy host that must keep working while others misbehave.
struct Bystander {
    _c: Controller,
    q: nvmf::host::IoQueue,
    n: u64,
}

impl Bystander {
    fn new(t: &TestTarget) -> Self {
        let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("bystander connect");
        let q = c.connect_io_queue(1).expect("bystander io queue");
        Bystander { _c: c, q, n: 0 }
    }
    fn check(&mut self) {
        self.n += 1;
        let lba = 1000 + self.n * 8;
        let data = pattern(99, lba, 4096);
        self.q.write(1, lba, 8, &data).expect("bystander write");
        let mut back = vec![0u8; 4096];
        self.q.read(1, lba, 8, &mut back).expect("bystander read");
        assert_eq!(back, data);
    }
}

fn raw(t: &TestTarget) -> RawConnection {
    let mut r = RawConnection::connect(t.addr).expect("connect");
    r.icreq(false, false).expect("icreq");
    r
}

fn connected_raw(t: &TestTarget, hd: bool, dd: bool) -> RawConnection {
    let mut r = RawConnection::connect(t.addr).expect("connect");
    r.icreq(hd, dd).expect("icreq");
    let cqe = r.fabrics_connect(0, 31, 0xffff, NQN, &HostConfig::default()).expect("connect");
    assert!(cqe.is_success());
    r
}

/// Expect a C2HTermReq with `want_fes` (and `want_fei` when given) echoing `sent`'s header,
/// then the connection closing.
fn expect_term(r: &mut RawConnection, want_fes: u16, want_fei: Option<u32>, sent: &[u8]) {
    let (ch, bytes) = r.recv_pdu().expect("a TermReq");
    assert_eq!(ch.pdu_type, pdu_type::C2H_TERM_REQ, "got PDU type {:#x}", ch.pdu_type);
    assert_eq!(ch.hlen, 24);
    let fes_got = u16::from_le_bytes([bytes[8], bytes[9]]);
    let fei_got = u32::from_le_bytes(bytes[10..14].try_into().unwrap());
    assert_eq!(fes_got, want_fes, "FES");
    if let Some(f) = want_fei {
        assert_eq!(fei_got, f, "FEI");
    }
    let echoed = &bytes[24..];
    assert!(!echoed.is_empty() && echoed.len() <= 128);
    assert_eq!(echoed, &sent[..echoed.len()], "TermReq echoes the offending header");
    r.expect_closed().expect("connection closed after TermReq");
}

fn hdr(ty: u8, flags: u8, hlen: u8, pdo: u8, plen: u32) -> Vec<u8> {
    let mut v = vec![ty, flags, hlen, pdo];
    v.extend_from_slice(&plen.to_le_bytes());
    v
}

fn write_sqe(cid: u16, lba: u64, nlb: u16, sgl: SglDescriptor) -> Sqe {
    let mut sqe = Sqe { opcode: 0x01, flags: 0x40, cid: cid.into(), nsid: 1.into(), ..Default::default() };
    sqe.set_slba(lba);
    sqe.cdw12.set(nlb as u32 - 1);
    sqe.set_sgl1(sgl);
    sqe
}

#[test]
fn bad_pdu_type_length_and_offsets() {
    let t = TestTarget::start(TargetSpec::default());
    let mut b = Bystander::new(&t);

    // Unknown PDU type.
    let mut r = raw(&t);
    let mut p = hdr(0x42, 0, 24, 0, 24);
    p.resize(24, 0);
    r.send(&p).unwrap();
    expect_term(&mut r, fes::INVALID_PDU_HEADER_FIELD, Some(0), &p);
    b.check();

    // A controller-to-host type sent by a host.
    let mut r = raw(&t);
    let mut p = hdr(pdu_type::CAPSULE_RESP, 0, 24, 0, 24);
    p.resize(24, 0);
    r.send(&p).unwrap();
    expect_term(&mut r, fes::INVALID_PDU_HEADER_FIELD, Some(0), &p);

    // Wrong HLEN for a CapsuleCmd.
    let mut r = raw(&t);
    let mut p = hdr(pdu_type::CAPSULE_CMD, 0, 70, 0, 72);
    p.resize(72, 0);
    r.send(&p).unwrap();
    expect_term(&mut r, fes::INVALID_PDU_HEADER_FIELD, Some(2), &p);
    b.check();

    // PLEN smaller than the header, and absurdly large.
    for plen in [10u32, 0xffff_ffff] {
        let mut r = raw(&t);
        let mut p = hdr(pdu_type::CAPSULE_CMD, 0, 72, 0, plen);
        p.resize(72, 0);
        r.send(&p).unwrap();
        expect_term(&mut r, fes::INVALID_PDU_HEADER_FIELD, Some(4), &p);
    }

    // PDO inside the header.
    let mut r = raw(&t);
    let mut p = hdr(pdu_type::CAPSULE_CMD, 0, 72, 16, 72 + 512);
    p.resize(72 + 512, 0);
    r.send(&p).unwrap();
    expect_term(&mut r, fes::INVALID_PDU_HEADER_FIELD, Some(3), &p);
    b.check();
}

#[test]
fn sequence_and_icreq_errors() {
    let t = TestTarget::start(TargetSpec::default());
    let mut b = Bystander::new(&t);
    // A command before ICReq.
    let mut r = RawConnection::connect(t.addr).expect("connect");
    let mut p = hdr(pdu_type::CAPSULE_CMD, 0, 72, 0, 72);
    p.resize(72, 0);
    r.send(&p).unwrap();
    expect_term(&mut r, fes::PDU_SEQUENCE_ERROR, None, &p);
    // A second ICReq.
    let mut r = raw(&t);
    let mut p = hdr(pdu_type::IC_REQ, 0, 128, 0, 128);
    p.resize(128, 0);
    r.send(&p).unwrap();
    expect_term(&mut r, fes::PDU_SEQUENCE_ERROR, None, &p);
    // ICReq with an unsupported PDU format version.
    let mut r = RawConnection::connect(t.addr).expect("connect");
    let mut p = hdr(pdu_type::IC_REQ, 0, 128, 0, 128);
    p.resize(128, 0);
    p[8] = 1;
    r.send(&p).unwrap();
    expect_term(&mut r, fes::UNSUPPORTED_PARAMETER, Some(8), &p);
    // HPDA out of range.
    let mut r = RawConnection::connect(t.addr).expect("connect");
    p[8] = 0;
    p[10] = 32;
    r.send(&p).unwrap();
    expect_term(&mut r, fes::INVALID_PDU_HEADER_FIELD, Some(10), &p);
    b.check();
}

#[test]
fn digest_errors() {
    let t = TestTarget::start(TargetSpec::default());
    let mut b = Bystander::new(&t);
    // Header digest mismatch: TermReq.
    let mut r = RawConnection::connect(t.addr).expect("connect");
    r.icreq(true, false).expect("icreq");
    let sqe = Sqe { opcode: 0x18, flags: 0x40, ..Default::default() };
    let mut p = hdr(pdu_type::CAPSULE_CMD, 0x01, 72, 0, 76);
    p.extend_from_slice(sqe.as_bytes());
    p.extend_from_slice(&(digest(&p) ^ 1).to_le_bytes());
    r.send(&p).unwrap();
    expect_term(&mut r, fes::HEADER_DIGEST_ERROR, None, &p);
    // Header digest flag missing although negotiated.
    let mut r = RawConnection::connect(t.addr).expect("connect");
    r.icreq(true, false).expect("icreq");
    let mut p = hdr(pdu_type::CAPSULE_CMD, 0, 72, 0, 72);
    p.extend_from_slice(sqe.as_bytes());
    r.send(&p).unwrap();
    expect_term(&mut r, fes::INVALID_PDU_HEADER_FIELD, Some(1), &p);
    b.check();

    // Data digest mismatch: the command fails with Transient Transport Error, the connection lives.
    let mut r = connected_raw(&t, false, true);
    let data = pattern(5, 0, 512);
    let sqe = write_sqe(7, 0, 1, SglDescriptor::in_capsule(0, 512));
    let mut p = hdr(pdu_type::CAPSULE_CMD, 0x02, 72, 72, 72 + 512 + 4);
    p.extend_from_slice(sqe.as_bytes());
    p.extend_from_slice(&data);
    p.extend_from_slice(&(digest(&data) ^ 0xff).to_le_bytes());
    r.send(&p).unwrap();
    let cqe = r.recv_capsule_resp().expect("completion");
    assert_eq!(cqe.cid.get(), 7);
    assert_eq!(cqe.status().sc(), GenericStatus::TRANSIENT_TRANSPORT_ERROR);
    // Same command with the right digest succeeds on the same connection.
    p.truncate(72 + 512);
    p.extend_from_slice(&digest(&data).to_le_bytes());
    r.send(&p).unwrap();
    // Property/enable not needed for the check: the controller is not enabled, so the I/O
    // command is refused in sequence, but the connection answers.
    let cqe = r.recv_capsule_resp().expect("completion");
    assert_eq!(cqe.cid.get(), 7);
    b.check();
}

#[test]
fn data_limits_and_unknown_h2c() {
    let t = TestTarget::start(TargetSpec::default());
    let mut b = Bystander::new(&t);
    // In-capsule data beyond the 8 KiB the target accepts.
    let mut r = connected_raw(&t, false, false);
    let sqe = write_sqe(1, 0, 32, SglDescriptor::in_capsule(0, 16384));
    let mut p = hdr(pdu_type::CAPSULE_CMD, 0, 72, 72, 72 + 16384);
    p.extend_from_slice(sqe.as_bytes());
    p.resize(72 + 16384, 0);
    r.send(&p).unwrap();
    expect_term(&mut r, fes::DATA_TRANSFER_LIMIT_EXCEEDED, None, &p);

    // H2CData for a command that has no R2T outstanding.
    let mut r = connected_raw(&t, false, false);
    let mut p = hdr(pdu_type::H2C_DATA, 0x04, 24, 24, 24 + 512);
    p.extend_from_slice(&3u16.to_le_bytes()); // CCCID
    p.extend_from_slice(&5u16.to_le_bytes()); // TTAG
    p.extend_from_slice(&0u32.to_le_bytes()); // DATAO
    p.extend_from_slice(&512u32.to_le_bytes()); // DATAL
    p.extend_from_slice(&[0; 4]);
    p.resize(24 + 512, 0);
    r.send(&p).unwrap();
    expect_term(&mut r, fes::INVALID_PDU_HEADER_FIELD, Some(10), &p);
    b.check();

    // A real R2T, then H2CData beyond MAXH2CDATA, and H2CData outside the transfer.
    for (datao, datal, want) in
        [(0u32, 256 * 1024u32, fes::DATA_TRANSFER_LIMIT_EXCEEDED), (4096, 512, fes::DATA_TRANSFER_OUT_OF_RANGE)]
    {
        let mut host = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
        let cntlid = host.cntlid();
        let mut r = RawConnection::connect(t.addr).expect("connect");
        r.icreq(false, false).expect("icreq");
        let cqe = r.fabrics_connect(1, 31, cntlid, NQN, &HostConfig::default()).expect("io connect");
        assert!(cqe.is_success(), "{:?}", cqe.status());
        let sqe = write_sqe(9, 0, 8, SglDescriptor::transport(4096));
        r.send_capsule(&sqe, &[]).unwrap();
        let (ch, r2t) = r.recv_pdu().expect("R2T");
        assert_eq!(ch.pdu_type, pdu_type::R2T);
        assert_eq!(u16::from_le_bytes([r2t[8], r2t[9]]), 9, "R2T CCCID");
        let ttag = u16::from_le_bytes([r2t[10], r2t[11]]);
        assert_eq!(u32::from_le_bytes(r2t[16..20].try_into().unwrap()), 4096, "R2TL");
        let mut p = hdr(pdu_type::H2C_DATA, 0x04, 24, 24, 24 + datal);
        p.extend_from_slice(&9u16.to_le_bytes());
        p.extend_from_slice(&ttag.to_le_bytes());
        p.extend_from_slice(&datao.to_le_bytes());
        p.extend_from_slice(&datal.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        r.send(&p).unwrap();
        let _ = r.send(&vec![0u8; datal as usize]);
        expect_term(&mut r, want, None, &p);
        let _ = host.keep_alive();
        b.check();
    }
}

#[test]
fn garbage_streams_never_take_the_target_down() {
    let t = TestTarget::start(TargetSpec::default());
    let mut b = Bystander::new(&t);
    let mut seed = 0x1234_5678_9abc_def0u64;
    for i in 0..64 {
        let mut r = RawConnection::connect(t.addr).expect("connect");
        r.set_timeout(std::time::Duration::from_secs(5)).unwrap();
        if i % 2 == 0 {
            r.icreq(i % 4 == 0, i % 8 == 0).expect("icreq");
        }
        let len = 8 + (seed % 600) as usize;
        let mut junk: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        // Make half of them plausible headers so they get past the first checks.
        if i % 3 == 0 {
            junk[0] = [pdu_type::CAPSULE_CMD, pdu_type::H2C_DATA, pdu_type::IC_REQ][(i / 3) % 3];
            junk[2] = 72;
        }
        let _ = r.send(&junk);
        r.close();
    }
    b.check();
    assert!(t.wait_for(|t| t.connections() == 2), "only the bystander's two connections remain");
    let _ = HostError::Closed;
}

#[test]
fn capsule_with_padding_but_no_data_and_early_last_pdu() {
    let t = TestTarget::start(TargetSpec::default());
    let mut b = Bystander::new(&t);
    // PLEN beyond the header with PDO = PLEN: no data at all.
    let mut r = connected_raw(&t, false, false);
    let sqe = Sqe { opcode: 0x18, flags: 0x40, ..Default::default() };
    let mut p = hdr(pdu_type::CAPSULE_CMD, 0, 72, 80, 80);
    p.extend_from_slice(sqe.as_bytes());
    p.resize(80, 0);
    r.send(&p).unwrap();
    expect_term(&mut r, fes::INVALID_PDU_HEADER_FIELD, Some(4), &p);

    // LAST_PDU on an H2CData that does not end the transfer.
    let mut host = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    let mut r = RawConnection::connect(t.addr).expect("connect");
    r.icreq(false, false).expect("icreq");
    assert!(r.fabrics_connect(1, 31, host.cntlid(), NQN, &HostConfig::default()).expect("io connect").is_success());
    r.send_capsule(&write_sqe(4, 0, 8, SglDescriptor::transport(4096)), &[]).unwrap();
    let (_, r2t) = r.recv_pdu().expect("R2T");
    let ttag = u16::from_le_bytes([r2t[10], r2t[11]]);
    let mut p = hdr(pdu_type::H2C_DATA, 0x04, 24, 24, 24 + 512);
    p.extend_from_slice(&4u16.to_le_bytes());
    p.extend_from_slice(&ttag.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&512u32.to_le_bytes());
    p.extend_from_slice(&[0; 4]);
    r.send(&p).unwrap();
    let _ = r.send(&[0u8; 512]);
    expect_term(&mut r, fes::INVALID_PDU_HEADER_FIELD, Some(1), &p);
    let _ = host.keep_alive();
    b.check();
}

#[test]
fn commands_beyond_the_queue_size_or_before_connect_are_refused() {
    let t = TestTarget::start(TargetSpec::default());
    let mut b = Bystander::new(&t);
    // Two write capsules before any Connect.
    let mut r = raw(&t);
    let sqe = write_sqe(1, 0, 8, SglDescriptor::transport(4096));
    let mut p = hdr(pdu_type::CAPSULE_CMD, 0, 72, 0, 72);
    p.extend_from_slice(sqe.as_bytes());
    let mut two = p.clone();
    two.extend_from_slice(&p);
    r.send(&two).unwrap();
    // Neither is a Connect: both are answered with Command Sequence Error at once, without an
    // R2T (no buffer is spent on a queue that is not connected).
    for _ in 0..2 {
        let cqe = r.recv_capsule_resp().expect("answered without R2T");
        assert_eq!(cqe.status().sc(), GenericStatus::COMMAND_SEQUENCE_ERROR);
    }

    // An I/O queue of SQSIZE 2 (0's based 1): a third outstanding command is a protocol error.
    let mut host = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    let mut r = RawConnection::connect(t.addr).expect("connect");
    r.icreq(false, false).expect("icreq");
    assert!(r.fabrics_connect(1, 1, host.cntlid(), NQN, &HostConfig::default()).expect("io connect").is_success());
    for cid in 10..12u16 {
        r.send_capsule(&write_sqe(cid, 0, 8, SglDescriptor::transport(4096)), &[]).unwrap();
        let (ch, _) = r.recv_pdu().expect("R2T");
        assert_eq!(ch.pdu_type, pdu_type::R2T);
    }
    let third = write_sqe(12, 0, 8, SglDescriptor::transport(4096));
    let mut p = hdr(pdu_type::CAPSULE_CMD, 0, 72, 0, 72);
    p.extend_from_slice(third.as_bytes());
    r.send(&p).unwrap();
    expect_term(&mut r, fes::PDU_SEQUENCE_ERROR, None, &p);
    let _ = host.keep_alive();
    b.check();
}
