//! Asymmetric Namespace Access over NVMe/TCP: one subsystem with ANA reporting on two
//! listeners, one controller through each; Identify fields, the ANA log page (with and without
//! Return Groups Only), the ANA Change event, and I/O refused through an inaccessible path while
//! the other path keeps working.

#![forbid(unsafe_code)]

use nvmf::ana::AnaState;
use nvmf::bdev::MallocBdev;
use nvmf::host::{Controller, HostConfig};
use nvmf::spec::{lid, AnaGroupDescriptor, AnaLogHeader, GenericStatus, GetLogPageArgs, Sqe, StatusCodeType};
use nvmf::{Error, NamespaceConfig, Subsystem, SubsystemConfig, TransportAddr};
use nvmf_tests::*;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use zerocopy::FromBytes;

const ANA_NQN: &str = "nqn.2016-06.io.nvmf-rs:ana";

/// The ANA subsystem, listening on the test target's listener and on a second one.
fn ana_subsystem(t: &TestTarget) -> (Arc<Subsystem>, [(TransportAddr, SocketAddr); 2]) {
    let (tx, rx) = mpsc::channel();
    t.with_target(move |target| {
        target.listen(&TransportAddr::tcp("127.0.0.1", 0)).expect("second listener");
        let mut cfg = SubsystemConfig::new(ANA_NQN);
        cfg.allow_any_host = true;
        cfg.ana_reporting = true;
        let sub = target.add_subsystem(cfg).expect("subsystem");
        let ls = target.listen_addrs();
        for l in &ls {
            sub.add_listener(l.clone()).expect("add listener");
        }
        tx.send((sub, ls)).expect("send");
    });
    let (sub, ls) = rx.recv().expect("ANA subsystem");
    let b1 = Arc::new(MallocBdev::new("AnaMalloc1", 2048, 512).expect("malloc"));
    let b2 = Arc::new(MallocBdev::new("AnaMalloc2", 2048, 512).expect("malloc"));
    sub.add_namespace(NamespaceConfig::new(b1)).expect("ns 1 (group 1)");
    sub.add_namespace(NamespaceConfig { anagrpid: Some(5), ..NamespaceConfig::new(b2) }).expect("ns 2 (group 5)");
    let sa = |l: &TransportAddr| -> SocketAddr { format!("127.0.0.1:{}", l.trsvcid).parse().expect("addr") };
    let pair = [(ls[0].clone(), sa(&ls[0])), (ls[1].clone(), sa(&ls[1]))];
    (sub, pair)
}

fn ana_log(c: &mut Controller, rgo: bool) -> (AnaLogHeader, Vec<(AnaGroupDescriptor, Vec<u32>)>) {
    let mut sqe = Sqe { opcode: 0x02, flags: 0x40, ..Default::default() };
    sqe.nsid.set(0xffff_ffff);
    let mut args = GetLogPageArgs::new(lid::ANA, 4096, 0);
    args.lsp = rgo as u8;
    args.apply_to(&mut sqe);
    let mut raw = vec![0u8; 4096];
    let cqe = c.admin_raw(sqe, None, Some(&mut raw)).expect("ANA log");
    assert!(cqe.is_success());
    let hdr = AnaLogHeader::read_from_bytes(&raw[..16]).expect("header");
    let mut off = 16;
    let mut groups = Vec::new();
    for _ in 0..hdr.ngrps.get() {
        let d = AnaGroupDescriptor::read_from_bytes(&raw[off..off + 32]).expect("descriptor");
        off += 32;
        let n = d.nnsid.get() as usize;
        let nsids = raw[off..off + 4 * n].chunks(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
        off += 4 * n;
        groups.push((d, nsids));
    }
    assert!(raw[off..].iter().all(|&b| b == 0), "nothing after the last descriptor");
    (hdr, groups)
}

fn read_status(c: &mut Controller, nsid: u32) -> (u8, u8) {
    let s = read_full_status(c, nsid);
    (s.sct(), s.sc())
}

fn read_full_status(c: &mut Controller, nsid: u32) -> nvmf::spec::Status {
    // A new queue ID each time: the previous queue's close may not have reached the target yet
    // when the next Connect does (reusing QID 1 failed now and then with Invalid Parameters).
    static NEXT_QID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let qid = NEXT_QID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut q = c.connect_io_queue(qid).expect("io queue");
    let mut sqe = Sqe { opcode: 0x02, flags: 0x40, ..Default::default() };
    sqe.nsid.set(nsid);
    let mut buf = vec![0u8; 512];
    q.raw(sqe, None, Some(&mut buf)).expect("read").status()
}

#[test]
fn identify_log_event_and_io_follow_the_listener_state() {
    let t = TestTarget::start(TargetSpec::default());
    let (sub, [(l1, a1), (_l2, a2)]) = ana_subsystem(&t);
    let mut c1 = Controller::connect(a1, ANA_NQN, &HostConfig::default()).expect("connect via listener 1");
    let mut c2 = Controller::connect(a2, ANA_NQN, &HostConfig::default()).expect("connect via listener 2");

    let id = c1.identify_controller().expect("identify");
    assert_ne!(id.cmic & 1 << 3, 0, "CMIC: ANA reporting");
    assert_ne!(id.oaes.get() & 1 << 11, 0, "OAES: ANA Change notices");
    assert_eq!((id.anacap & 0x1f, id.anagrpmax.get(), id.nanagrpid.get()), (0x1f, 32, 32));
    assert!(id.anatt > 0);
    assert_eq!(c1.identify_namespace(1).expect("ns 1").anagrpid.get(), 1);
    assert_eq!(c1.identify_namespace(2).expect("ns 2").anagrpid.get(), 5);
    let supported = c1.get_log_page(lid::SUPPORTED_LOG_PAGES, 0, 1024, 0).expect("supported log pages");
    assert_eq!(supported[4 * lid::ANA as usize] & 1, 1, "log page 0Ch is listed");

    // Both groups optimized, NSIDs listed; with Return Groups Only, no NSIDs.
    let (hdr, groups) = ana_log(&mut c1, false);
    let view: Vec<_> = groups.iter().map(|(d, n)| (d.anagrpid.get(), d.state, n.clone())).collect();
    assert_eq!(view, vec![(1, 1, vec![1]), (5, 1, vec![2])]);
    let (_, rgo) = ana_log(&mut c1, true);
    assert!(rgo.iter().all(|(d, n)| d.nnsid.get() == 0 && n.is_empty()) && rgo.len() == 2);

    // Listener 1, group 1 inaccessible: c1 gets an ANA Change event ...
    c1.set_features(0x0b, 1 << 11).expect("enable ANA Change notices");
    sub.set_ana_state(&l1, Some(1), AnaState::Inaccessible).expect("set state");
    let aer = Sqe { opcode: 0x0c, flags: 0x40, ..Default::default() };
    let cqe = c1.admin_raw(aer, None, None).expect("AER");
    assert_eq!(cqe.dw0.get(), 2 | 0x03 << 8 | 0x0c << 16, "Notice, ANA Change, log page 0Ch");
    // ... its log and Identify show it, and its I/O to group 1 is refused with a path status.
    let (hdr2, groups) = ana_log(&mut c1, false);
    assert!(hdr2.chgcnt.get() > hdr.chgcnt.get());
    assert_eq!((groups[0].0.state, groups[1].0.state), (3, 1));
    assert_eq!(c1.identify_namespace(1).expect("ns 1").nuse.get(), 0);
    assert_eq!(read_status(&mut c1, 1), (StatusCodeType::Path as u8, 0x02), "ANA Inaccessible");
    assert_eq!(read_status(&mut c1, 2), (0, GenericStatus::SUCCESS), "group 5 stays optimized");
    // The other path is untouched.
    assert_eq!(ana_log(&mut c2, false).1[0].0.state, 1);
    assert_eq!(read_status(&mut c2, 1), (0, GenericStatus::SUCCESS));

    // Persistent loss: not on this path, but without DNR, so a multipath host fails over
    // (Linux checks DNR before path errors); change asks to retry later.
    sub.set_ana_state(&l1, None, AnaState::PersistentLoss).expect("set all groups");
    let s = read_full_status(&mut c1, 2);
    assert_eq!((s.sct(), s.sc(), s.is_dnr()), (StatusCodeType::Path as u8, 0x01, false), "ANA Persistent Loss");
    sub.set_ana_state(&l1, None, AnaState::Change).expect("set all groups");
    assert_eq!(read_status(&mut c1, 2), (StatusCodeType::Path as u8, 0x03), "ANA Transition");
    // Back to optimized: I/O works again.
    sub.set_ana_state(&l1, None, AnaState::Optimized).expect("set all groups");
    assert_eq!(read_status(&mut c1, 1), (0, GenericStatus::SUCCESS));
    assert_eq!(sub.ana_states(&l1).expect("states")[0], AnaState::Optimized);

    // Bad requests.
    assert!(matches!(sub.set_ana_state(&l1, Some(0), AnaState::Optimized), Err(Error::InvalidParam(_))));
    assert!(matches!(sub.set_ana_state(&l1, Some(33), AnaState::Optimized), Err(Error::InvalidParam(_))));
    let nowhere = TransportAddr::tcp("127.0.0.1", 1);
    assert!(matches!(sub.set_ana_state(&nowhere, None, AnaState::Optimized), Err(Error::NotListening(_))));
    assert!(matches!(t.subsystem.set_ana_state(&l1, None, AnaState::Inaccessible), Err(Error::InvalidParam(_))));
    // A subsystem without ANA reporting lists no ANA log page and refuses it.
    let mut plain = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    assert!(plain.get_log_page(lid::ANA, 0, 512, 0).is_err());
    assert_eq!(plain.identify_controller().expect("identify").cmic & 1 << 3, 0);
}

/// Over the loopback transport (an AER can wait without blocking the test): a change the host
/// already read in the ANA log page (RAE cleared) raises no second event; a later change does.
#[test]
fn a_change_already_read_in_the_log_raises_no_second_event() {
    use nvmf_tests::loopback::{admin_sqe, LoopBed};
    let mut b = LoopBed::new();
    let mut cfg = SubsystemConfig::new(ANA_NQN);
    cfg.allow_any_host = true;
    cfg.ana_reporting = true;
    let sub = b.target.add_subsystem(cfg).expect("subsystem");
    sub.add_listener(b.addr.clone()).expect("listener");
    sub.add_namespace(NamespaceConfig::new(Arc::new(MallocBdev::new("Ana0", 64, 512).expect("malloc"))))
        .expect("namespace");
    let h = b.open();
    let c = b.connect_to(&h, ANA_NQN, 0, 0xffff, 30_000);
    assert!(c.status().is_success());
    b.enable(&h);
    let mut aec = Sqe { opcode: 0x09, flags: 0x40, ..Default::default() };
    aec.cdw10.set(0x0b);
    aec.cdw11.set(1 << 11);
    assert!(b.run(&h, aec, &[]).cqe.status().is_success(), "ANA Change notices on");
    let mut aer = Sqe { opcode: 0x0c, flags: 0x40, ..Default::default() };
    let log = |cid: u16| {
        let mut sqe = admin_sqe(0x02, cid, 4096);
        GetLogPageArgs::new(lid::ANA, 4096, 0).apply_to(&mut sqe);
        sqe
    };
    // First change: its event arrives (and masks further ones until the log is read).
    aer.cid.set(1);
    h.submit(aer, &[]).expect("AER");
    sub.set_ana_state(&b.addr, Some(1), AnaState::NonOptimized).expect("state");
    assert_eq!(b.wait(&h).cqe.cid.get(), 1, "the first change's event");
    // A second change while masked, then the log (RAE cleared) that shows it.
    sub.set_ana_state(&b.addr, Some(1), AnaState::Inaccessible).expect("state");
    let page = b.run(&h, log(2), &[]).data;
    let d = AnaGroupDescriptor::read_from_bytes(&page[16..48]).expect("descriptor");
    assert_eq!(d.state, AnaState::Inaccessible as u8, "the log shows the second change");
    aer.cid.set(3);
    h.submit(aer, &[]).expect("AER");
    assert!(b.idle(&h, 50).is_none(), "no event for a change the host has read");
    // A third change: an event again.
    sub.set_ana_state(&b.addr, Some(1), AnaState::Optimized).expect("state");
    let e = b.wait(&h).cqe;
    assert_eq!((e.cid.get(), e.dw0.get()), (3, 2 | 0x03 << 8 | 0x0c << 16), "ANA Change for the third");
}
