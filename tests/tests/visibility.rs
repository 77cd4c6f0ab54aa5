//! Per-host namespace visibility (SPDK's `no_auto_visible` + `nvmf_ns_add_host`) and discovery
//! referrals, seen through the host client: Identify lists, I/O status, asynchronous events and
//! the changed namespace list, discovery log entries.

#![forbid(unsafe_code)]

use nvmf::bdev::MallocBdev;
use nvmf::host::{Controller, HostConfig, IoQueue};
use nvmf::spec::discovery::{subtype, treq};
use nvmf::spec::fabrics::DISCOVERY_NQN;
use nvmf::spec::{get_str, lid, Cqe, GenericStatus, Sqe};
use nvmf::{Error, NamespaceConfig, Referral, TransportAddr};
use nvmf_tests::*;
use std::sync::{mpsc, Arc};

const HOST_A: &str = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-000000000001";
const HOST_B: &str = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-000000000002";

fn host(nqn: &str) -> HostConfig {
    HostConfig { hostnqn: nqn.to_string(), ..Default::default() }
}

/// A controller with Namespace Attribute Notices enabled.
fn connect(t: &TestTarget, nqn: &str) -> Controller {
    let mut c = Controller::connect(t.addr, NQN, &host(nqn)).expect("connect");
    c.set_features(0x0b, 1 << 8).expect("async event config");
    c
}

/// The changed namespace list (log page 04h) up to its first zero entry; reading it also unmasks
/// the next Namespace Attribute Changed event.
fn changed_ns(c: &mut Controller) -> Vec<u32> {
    let log = c.get_log_page(lid::CHANGED_NS_LIST, 0, 4096, 0).expect("changed ns list");
    log.chunks(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).take_while(|&n| n != 0).collect()
}

/// Send an AER; only call it when an event is pending (it completes at once then).
fn pending_event(c: &mut Controller) -> Cqe {
    let aer = Sqe { opcode: 0x0c, flags: 0x40, ..Default::default() };
    c.admin_raw(aer, None, None).expect("AER completes")
}

/// NSID 2 is hidden from `c`: not active, zeroed Identify Namespace, I/O is an invalid namespace.
fn assert_hidden(c: &mut Controller, q: &mut IoQueue) {
    assert_eq!(c.active_namespaces().expect("active list"), vec![1]);
    assert_eq!(c.identify_namespace(2).expect("identify inactive nsid").nsze.get(), 0);
    let mut b = vec![0u8; 512];
    let e = q.read(2, 0, 1, &mut b).expect_err("read of a hidden namespace");
    assert_eq!(e.status().expect("status").sc(), GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
    let e = q.write(2, 0, 1, &pattern(9, 0, 512)).expect_err("write to a hidden namespace");
    assert_eq!(e.status().expect("status").sc(), GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
}

#[test]
fn namespace_visibility_follows_the_host_nqn() {
    let t = TestTarget::start(TargetSpec::default());
    let bdev = Arc::new(MallocBdev::new("Malloc1", 2048, 512).expect("malloc"));
    let cfg = NamespaceConfig { nsid: Some(2), auto_visible: false, ..NamespaceConfig::new(bdev) };
    assert_eq!(t.subsystem.add_namespace(cfg).expect("add hidden ns"), 2);
    let mut a = connect(&t, HOST_A);
    let mut b = connect(&t, HOST_B);
    let mut qa = a.connect_io_queue(1).expect("io queue A");
    let mut qb = b.connect_io_queue(1).expect("io queue B");
    // Added invisible: no host sees it, and no controller was told about it.
    assert_hidden(&mut a, &mut qa);
    assert_hidden(&mut b, &mut qb);
    assert_eq!(changed_ns(&mut a), Vec::<u32>::new());
    assert_eq!(changed_ns(&mut b), Vec::<u32>::new());

    t.subsystem.ns_add_host(2, HOST_A).expect("ns_add_host");
    assert_eq!(t.subsystem.namespace(2).expect("ns 2").visible_hosts(), vec![HOST_A.to_string()]);
    // Host A's controller: Notice / Namespace Attribute Changed / log 04h, listing NSID 2.
    assert_eq!(pending_event(&mut a).dw0.get(), 2 | 0x04 << 16);
    assert_eq!(changed_ns(&mut a), vec![2]);
    assert_eq!(a.active_namespaces().expect("active list"), vec![1, 2]);
    assert_eq!(a.identify_namespace(2).expect("identify ns 2").nsze.get(), 2048);
    qa.write(2, 7, 1, &pattern(2, 7, 512)).expect("write to the visible namespace");
    let mut buf = vec![0u8; 512];
    qa.read(2, 7, 1, &mut buf).expect("read back");
    assert_eq!(buf, pattern(2, 7, 512));
    // Host B is unaffected: still hidden, nothing in its changed list.
    assert_hidden(&mut b, &mut qb);
    assert_eq!(changed_ns(&mut b), Vec::<u32>::new());
    // A controller host A creates later sees it from the start.
    let mut a2 = connect(&t, HOST_A);
    assert_eq!(a2.active_namespaces().expect("active list"), vec![1, 2]);
    // Adding the same host again changes nothing: no event.
    t.subsystem.ns_add_host(2, HOST_A).expect("ns_add_host again");
    assert_eq!(changed_ns(&mut a), Vec::<u32>::new());

    t.subsystem.ns_remove_host(2, HOST_A).expect("ns_remove_host");
    assert_eq!(pending_event(&mut a).dw0.get(), 2 | 0x04 << 16);
    assert_eq!(changed_ns(&mut a), vec![2]);
    assert_hidden(&mut a, &mut qa);
    assert_eq!(changed_ns(&mut a2), vec![2], "every controller of the host is told");
    assert_eq!(changed_ns(&mut b), Vec::<u32>::new());
    // Removing a host that does not see it: no change, no event.
    t.subsystem.ns_remove_host(2, HOST_B).expect("ns_remove_host of an absent host");
    assert_eq!(changed_ns(&mut b), Vec::<u32>::new());
    // Data written while visible is still there when it comes back.
    t.subsystem.ns_add_host(2, HOST_A).expect("ns_add_host");
    qa.read(2, 7, 1, &mut buf).expect("read after re-adding");
    assert_eq!(buf, pattern(2, 7, 512));
}

#[test]
fn namespace_visibility_errors() {
    let t = TestTarget::start(TargetSpec::default());
    // NSID 1 is visible to every host: no per-host control (SPDK's -EPERM).
    assert!(matches!(t.subsystem.ns_add_host(1, HOST_A), Err(Error::InvalidParam(_))));
    assert!(matches!(t.subsystem.ns_remove_host(1, HOST_A), Err(Error::InvalidParam(_))));
    assert!(matches!(t.subsystem.ns_add_host(9, HOST_A), Err(Error::NamespaceNotFound(9))));
    assert!(matches!(t.subsystem.ns_add_host(0, HOST_A), Err(Error::NamespaceNotFound(0))));
    assert!(matches!(t.subsystem.ns_add_host(1, "not-an-nqn"), Err(Error::InvalidNqn(_))));
    // A hidden namespace that is removed tells nobody (nobody saw it).
    let bdev = Arc::new(MallocBdev::new("Malloc1", 64, 512).expect("malloc"));
    let mut c = connect(&t, HOST_A);
    let cfg = NamespaceConfig { nsid: Some(3), auto_visible: false, ..NamespaceConfig::new(bdev) };
    t.subsystem.add_namespace(cfg).expect("add hidden ns");
    t.subsystem.remove_namespace(3).expect("remove");
    assert_eq!(changed_ns(&mut c), Vec::<u32>::new());
}

fn referral_target(
    t: &TestTarget,
    f: impl FnOnce(&mut nvmf::Target) -> nvmf::Result<bool> + Send + 'static,
) -> nvmf::Result<bool> {
    let (tx, rx) = mpsc::channel();
    t.with_target(move |target| {
        let _ = tx.send(f(target));
    });
    rx.recv().expect("target thread answered")
}

#[test]
fn discovery_log_lists_referrals() {
    let t = TestTarget::start(TargetSpec::default());
    let mut d = Controller::connect(t.addr, DISCOVERY_NQN, &host(HOST_A)).expect("discovery connect");
    let (gen0, before) = d.discovery_log().expect("discovery log");
    assert!(before.iter().all(|e| e.subtype != subtype::DISCOVERY_REFERRAL));

    let other_disc = Referral::discovery(TransportAddr::tcp("192.0.2.10", 8009));
    let remote_nvm = Referral {
        addr: TransportAddr::tcp("2001:db8::5", 4420),
        subnqn: "nqn.2016-06.io.spdk:remote1".into(),
        secure_channel: true,
    };
    let (r1, r2) = (other_disc.clone(), remote_nvm.clone());
    assert!(referral_target(&t, move |target| target.add_referral(r1)).expect("add discovery referral"));
    assert!(referral_target(&t, move |target| target.add_referral(r2)).expect("add NVM referral"));
    let (gen1, entries) = d.discovery_log().expect("discovery log");
    assert!(gen1 > gen0, "GENCTR bumps when a referral is added");
    assert_eq!(entries.len(), before.len() + 2);
    let disc = entries.iter().find(|e| get_str(&e.traddr) == "192.0.2.10").expect("discovery referral entry");
    assert_eq!(disc.subtype, subtype::DISCOVERY_REFERRAL);
    assert_eq!(get_str(&disc.subnqn), DISCOVERY_NQN);
    assert_eq!(get_str(&disc.trsvcid), "8009");
    assert_eq!((disc.trtype, disc.adrfam, disc.treq), (3, 1, treq::SECURE_CHANNEL_NOT_REQUIRED));
    assert_eq!(disc.cntlid.get(), 0xffff);
    let nvm = entries.iter().find(|e| get_str(&e.traddr) == "2001:db8::5").expect("NVM referral entry");
    assert_eq!(nvm.subtype, subtype::NVME);
    assert_eq!(get_str(&nvm.subnqn), "nqn.2016-06.io.spdk:remote1");
    assert_eq!((nvm.adrfam, nvm.treq), (2, treq::SECURE_CHANNEL_REQUIRED));

    // The same address and NQN again: nothing changes, GENCTR included.
    let r1 = other_disc.clone();
    assert!(!referral_target(&t, move |target| target.add_referral(r1)).expect("add again"));
    let (gen2, again) = d.discovery_log().expect("discovery log");
    assert_eq!((gen2, again.len()), (gen1, entries.len()));

    let r1 = other_disc.clone();
    referral_target(&t, move |target| target.remove_referral(&r1).map(|()| true)).expect("remove");
    let (gen3, after) = d.discovery_log().expect("discovery log");
    assert!(gen3 > gen2);
    assert!(after.iter().all(|e| get_str(&e.traddr) != "192.0.2.10"));
    assert!(after.iter().any(|e| get_str(&e.traddr) == "2001:db8::5"));
    let r1 = other_disc.clone();
    let e = referral_target(&t, move |target| target.remove_referral(&r1).map(|()| true)).expect_err("remove twice");
    assert!(matches!(e, Error::ReferralNotFound(_)));
    let bad = Referral { subnqn: "bogus".into(), ..other_disc };
    let e = referral_target(&t, move |target| target.add_referral(bad)).expect_err("bad subnqn");
    assert!(matches!(e, Error::InvalidNqn(_)));
}
