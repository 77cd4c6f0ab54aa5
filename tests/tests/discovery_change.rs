//! Discovery that stays current (NVMe-oF 1.1 section 5.3, TP 8013): a persistent discovery
//! controller (OAES bit 31) that enabled Discovery Log Page Change notices (AEC bit 31) gets the
//! event when a subsystem appears, masked until it reads the log page again, and the new
//! subsystem is in the log it reads then: no reconnect. Entries carry EFLAGS (DUPRETINFO and
//! EPCSD on the current discovery subsystem) and TREQ. Driven over the loopback transport.

#![forbid(unsafe_code)]

use nvmf::spec::discovery::{eflags, subtype, treq, DiscoveryLogEntry, DiscoveryLogHeader};
use nvmf::spec::{lid, GetLogPageArgs, IdentifyController, Sqe};
use nvmf::transport::loopback::LoopbackHost;
use nvmf::SubsystemConfig;
use nvmf_tests::loopback::*;
use zerocopy::FromBytes;

const DISCOVERY_CHANGE_EVENT: u32 = 2 | 0xf0 << 8 | (lid::DISCOVERY as u32) << 16;

fn log(b: &mut LoopBed, h: &LoopbackHost, rae: bool) -> (DiscoveryLogHeader, Vec<DiscoveryLogEntry>) {
    let mut sqe = admin_sqe(0x02, 0x21, 8192);
    let mut args = GetLogPageArgs::new(lid::DISCOVERY, 8192, 0);
    args.rae = rae;
    args.apply_to(&mut sqe);
    let r = b.run(h, sqe, &[]);
    assert!(r.cqe.status().is_success(), "Get Log Page 70h: {:?}", r.cqe.status());
    let hdr = DiscoveryLogHeader::read_from_bytes(&r.data[..1024]).expect("header");
    let n = (hdr.numrec.get() as usize).min(7);
    let entries = (0..n).map(|i| DiscoveryLogEntry::read_from_bytes(&r.data[1024 * (i + 1)..1024 * (i + 2)]).unwrap());
    (hdr, entries.collect())
}

fn nqn_of(e: &DiscoveryLogEntry) -> String {
    String::from_utf8_lossy(&e.subnqn).trim_end_matches('\0').to_string()
}

fn set_aec(b: &mut LoopBed, h: &LoopbackHost, aec: u32) {
    let mut sqe = Sqe { opcode: 0x09, ..Default::default() };
    sqe.cdw10.set(0x0b);
    sqe.cdw11.set(aec);
    assert!(b.run(h, sqe, &[]).cqe.status().is_success(), "Set Features AEC {aec:#x}");
}

fn aer(h: &LoopbackHost, cid: u16) {
    let mut sqe = Sqe { opcode: 0x0c, ..Default::default() };
    sqe.cid.set(cid);
    h.submit(sqe, &[]).expect("submit AER");
}

fn add_subsystem(b: &mut LoopBed, nqn: &str) {
    let mut cfg = SubsystemConfig::new(nqn);
    cfg.allow_any_host = true;
    let s = b.target.add_subsystem(cfg).expect("subsystem");
    s.add_listener(b.addr.clone()).expect("listener");
}

#[test]
fn a_persistent_discovery_controller_sees_a_new_subsystem_without_reconnecting() {
    let mut b = LoopBed::new();
    let d = b.open();
    b.connect_discovery(&d);
    let mut id = admin_sqe(0x06, 3, 4096);
    id.cdw10.set(1);
    let ic = IdentifyController::read_from_bytes(&b.run(&d, id, &[]).data).expect("identify");
    assert_ne!(ic.oaes.get() & 1 << 31, 0, "OAES bit 31: Discovery Log Page Change notices");

    let (h0, e0) = log(&mut b, &d, false);
    assert_eq!(e0.len(), 2, "the discovery subsystem's own entry and {LOOP_NQN}");
    assert_eq!(e0[0].subtype, subtype::CURRENT_DISCOVERY);
    assert_eq!(e0[0].eflags.get(), eflags::DUPRETINFO | eflags::EPCSD, "EFLAGS of the current discovery entry");
    assert_eq!(nqn_of(&e0[1]), LOOP_NQN);
    assert_eq!(e0[1].eflags.get(), 0);
    for e in &e0 {
        assert_eq!(e.treq, treq::SECURE_CHANNEL_NOT_REQUIRED | treq::DISABLE_SQFLOW, "TREQ");
        assert_eq!(e.trtype, 0xfe, "TRTYPE intra-host (loopback)");
    }

    set_aec(&mut b, &d, 1 << 31);
    aer(&d, 0x51);
    assert!(b.idle(&d, 100).is_none(), "no event before anything changed");

    add_subsystem(&mut b, "nqn.2016-06.io.nvmf-rs:new1");
    let c = b.wait(&d);
    assert_eq!(c.cqe.cid.get(), 0x51);
    assert_eq!(c.cqe.dw0.get(), DISCOVERY_CHANGE_EVENT, "Notice, Discovery Log Page Change, log 70h");

    // Masked until the host reads the log again: a second change raises nothing yet.
    aer(&d, 0x52);
    add_subsystem(&mut b, "nqn.2016-06.io.nvmf-rs:new2");
    assert!(b.idle(&d, 100).is_none(), "masked until log page 70h is read");
    // Reading it with Retain Asynchronous Event keeps the mask.
    let _ = log(&mut b, &d, true);
    assert!(b.idle(&d, 100).is_none(), "still masked after a read with RAE");
    let (h1, e1) = log(&mut b, &d, false);
    assert!(h1.genctr.get() > h0.genctr.get(), "GENCTR moved");
    let names: Vec<String> = e1.iter().map(nqn_of).collect();
    assert!(names.iter().any(|n| n == "nqn.2016-06.io.nvmf-rs:new1"), "the new subsystem is listed: {names:?}");
    assert!(names.iter().any(|n| n == "nqn.2016-06.io.nvmf-rs:new2"), "{names:?}");
    assert!(b.idle(&d, 100).is_none(), "the read covered both changes: no event for them");

    // Unmasked: the next change completes the AER still parked.
    b.target.remove_subsystem("nqn.2016-06.io.nvmf-rs:new2").expect("remove");
    let c = b.wait(&d);
    assert_eq!((c.cqe.cid.get(), c.cqe.dw0.get()), (0x52, DISCOVERY_CHANGE_EVENT));
}

#[test]
fn no_discovery_change_event_unless_the_host_enabled_it() {
    let mut b = LoopBed::new();
    let d = b.open();
    b.connect_discovery(&d);
    aer(&d, 0x61);
    add_subsystem(&mut b, "nqn.2016-06.io.nvmf-rs:quiet");
    assert!(b.idle(&d, 200).is_none(), "AEC bit 31 is off: the AER stays parked");
    // An I/O controller never gets it, even with the bit set.
    let a = b.open();
    b.connect_admin(&a);
    set_aec(&mut b, &a, 1 << 31);
    aer(&a, 0x62);
    add_subsystem(&mut b, "nqn.2016-06.io.nvmf-rs:quiet2");
    assert!(b.idle(&a, 200).is_none(), "not a discovery controller");
}
