//! Admin and fabrics commands: identify, log pages, features, properties, discovery, access
//! control, keep-alive, asynchronous events.

#![forbid(unsafe_code)]

use nvmf::bdev::{MallocBdev, NullBdev};
use nvmf::host::{pdu, Controller, HostConfig, HostError, RawConnection};
use nvmf::spec::discovery::subtype;
use nvmf::spec::fabrics::{PropertyCmd, DISCOVERY_NQN};
use nvmf::spec::{get_str, lid, reg, CommandSpecificStatus, Cqe, FabricsType, GenericStatus, Sqe};
use nvmf::NamespaceConfig;
use nvmf_tests::*;
use std::sync::Arc;
use std::time::Duration;

fn must_fail<T>(r: Result<T, HostError>, what: &str) -> HostError {
    match r {
        Ok(_) => panic!("{what}: expected an error"),
        Err(e) => e,
    }
}

fn host(nqn: &str) -> HostConfig {
    HostConfig { hostnqn: nqn.to_string(), ..Default::default() }
}

#[test]
fn identify_controller_namespace_and_descriptors() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    let id = c.identify_controller().expect("identify controller");
    assert_eq!(id.subsystem_nqn(), NQN);
    assert_eq!(id.cntlid.get(), c.cntlid());
    assert_eq!(id.sqes, 0x66);
    assert_eq!(id.cqes, 0x44);
    assert_eq!(id.mdts, 8);
    assert_eq!(id.cntrltype, 1);
    assert_eq!(id.ioccsz.get(), (64 + 8192) / 16);
    assert_eq!(id.iorcsz.get(), 1);
    assert_eq!(id.ver.get(), 0x0002_0000);
    assert!(id.sgls.get() & 3 == 1, "SGLs supported");
    assert_eq!(id.nn.get(), 32);
    let ns = id_ns(&mut c, 1);
    assert_eq!(ns.nsze.get(), 64 * 1024 * 1024 / 512);
    assert_eq!(ns.lbaf[0].lbads, 9);
    assert_ne!(ns.nguid, [0; 16]);
    // Inactive NSID in range: zero-filled. NSID 0: invalid.
    assert_eq!(id_ns(&mut c, 7).nsze.get(), 0);
    let e = c.identify_namespace(0).expect_err("nsid 0");
    assert_eq!(e.status().expect("status").sc(), GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
    assert_eq!(c.active_namespaces().expect("active list"), vec![1]);
    let desc = c.ns_descriptors(1).expect("descriptors");
    // EUI-64 (type 1, len 8), NGUID (type 2, len 16), UUID (type 3, len 16), then zeroes.
    assert_eq!((desc[0], desc[1]), (1, 8));
    assert_eq!((desc[12], desc[13]), (2, 16));
    assert_eq!(&desc[16..32], &ns.nguid);
    assert_eq!((desc[32], desc[33]), (3, 16));
    assert_eq!(desc[52], 0);
}

fn id_ns(c: &mut Controller, nsid: u32) -> nvmf::spec::IdentifyNamespace {
    c.identify_namespace(nsid).expect("identify namespace")
}

#[test]
fn properties_features_and_log_pages() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    let cap = c.property_get(reg::CAP, true).expect("CAP");
    assert_eq!(cap & 0xffff, 127, "MQES");
    assert_eq!(c.property_get(reg::VS, false).expect("VS"), 0x0002_0000);
    assert_eq!(c.property_get(reg::CSTS, false).expect("CSTS") & 1, 1, "RDY after enable");
    // An unknown property offset is an invalid field.
    let e = c.property_get(0x50, false).expect_err("bad offset");
    assert_eq!(e.status().expect("status").sc(), GenericStatus::INVALID_FIELD);
    // Number of queues: ask for 8 SQs and 8 CQs (0's based 7).
    let dw0 = c.set_features(0x07, 7 | 7 << 16).expect("set number of queues");
    assert_eq!(dw0, 7 | 7 << 16);
    assert_eq!(c.get_features(0x07, 0).expect("get number of queues"), 7 | 7 << 16);
    // I/O queue 9 is now beyond what was granted.
    let e = must_fail(c.connect_io_queue(9), "qid beyond the granted queues");
    assert_eq!(e.status().expect("status").sc(), CommandSpecificStatus::CONNECT_INVALID_PARAMETERS);
    c.set_features(0x0f, 20_000).expect("set keep-alive timer");
    assert_eq!(c.get_features(0x0f, 0).expect("get kato"), 20_000);
    let e = c.get_features(0x99, 0).expect_err("unknown feature");
    assert_eq!(e.status().expect("status").sc(), GenericStatus::INVALID_FIELD);
    let smart = c.get_log_page(lid::SMART, 0xffff_ffff, 512, 0).expect("SMART");
    assert_eq!(smart[3], 100, "available spare");
    let err = c.get_log_page(lid::ERROR, 0, 64, 0).expect("error log");
    assert!(err.iter().all(|&b| b == 0));
    let e = c.get_log_page(0x42, 0, 512, 0).expect_err("unsupported log");
    assert_eq!(e.status().expect("status").sc(), CommandSpecificStatus::INVALID_LOG_PAGE);
    c.keep_alive().expect("keep alive");
    // Abort: accepted, command not aborted (DW0 bit 0 set).
    let sqe = Sqe { opcode: 0x08, flags: 0x40, cdw10: (5u32 << 16).into(), ..Default::default() };
    let cqe: Cqe = c.admin_raw(sqe, None, None).expect("abort");
    assert!(cqe.is_success());
    assert_eq!(cqe.dw0.get() & 1, 1);
    c.shutdown().expect("shutdown");
    assert_eq!((c.property_get(reg::CSTS, false).expect("CSTS") >> 2) & 3, 2, "SHST complete");
}

#[test]
fn discovery_log_lists_allowed_subsystems_only() {
    let allowed = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
    let t = TestTarget::start(TargetSpec { allow_any_host: false, hosts: vec![allowed.into()], ..Default::default() });
    let mut d = Controller::connect(t.addr, DISCOVERY_NQN, &host(allowed)).expect("discovery connect");
    let id = d.identify_controller().expect("identify discovery");
    assert_eq!(id.cntrltype, 2);
    assert_eq!(id.subsystem_nqn(), DISCOVERY_NQN);
    let (genctr, entries) = d.discovery_log().expect("discovery log");
    assert!(genctr > 0);
    let nvm: Vec<_> = entries.iter().filter(|e| e.subtype == subtype::NVME).collect();
    assert_eq!(nvm.len(), 1);
    assert_eq!(get_str(&nvm[0].subnqn), NQN);
    assert_eq!(nvm[0].trtype, 3);
    assert_eq!(nvm[0].adrfam, 1);
    assert_eq!(get_str(&nvm[0].traddr), "127.0.0.1");
    assert_eq!(get_str(&nvm[0].trsvcid), t.addr.port().to_string());
    assert!(entries.iter().any(|e| e.subtype == subtype::CURRENT_DISCOVERY && get_str(&e.subnqn) == DISCOVERY_NQN));
    // A host not on the list sees no NVM subsystem.
    let other = "nqn.2014-08.org.nvmexpress:uuid:99999999-2222-3333-4444-555555555555";
    let mut d2 = Controller::connect(t.addr, DISCOVERY_NQN, &host(other)).expect("discovery connect");
    let (_, entries) = d2.discovery_log().expect("discovery log");
    assert!(entries.iter().all(|e| e.subtype != subtype::NVME));
    // ... and is refused by the subsystem itself with Connect Invalid Host.
    let e = must_fail(Controller::connect(t.addr, NQN, &host(other)), "denied");
    let st = e.status().expect("status");
    assert_eq!((st.sct(), st.sc()), (1, CommandSpecificStatus::CONNECT_INVALID_HOST));
    // The allowed host gets in and can do I/O.
    let mut c = Controller::connect(t.addr, NQN, &host(allowed)).expect("allowed host");
    let mut q = c.connect_io_queue(1).expect("io queue");
    q.write(1, 0, 1, &pattern(1, 0, 512)).expect("write");
}

#[test]
fn connect_errors() {
    let t = TestTarget::start(TargetSpec::default());
    let e = must_fail(
        Controller::connect(t.addr, "nqn.2016-06.io.nvmf-rs:nope", &HostConfig::default()),
        "unknown subsystem",
    );
    match e {
        HostError::Status { status, dw0 } => {
            assert_eq!(status.sc(), CommandSpecificStatus::CONNECT_INVALID_PARAMETERS);
            assert_eq!(dw0, 256 | 1 << 16, "IATTR=1 (data), IPO=256 (SUBNQN)");
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    let _q1 = c.connect_io_queue(1).expect("qid 1");
    let e = must_fail(c.connect_io_queue(1), "qid 1 twice");
    assert_eq!(e.status().expect("status").sc(), CommandSpecificStatus::CONNECT_INVALID_PARAMETERS);
    // A different host cannot join this controller's I/O queues.
    let other = HostConfig {
        hostnqn: "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000001".into(),
        ..Default::default()
    };
    let mut raw = nvmf::host::RawConnection::connect(t.addr).expect("raw");
    raw.icreq(false, false).expect("icreq");
    let cqe = raw.fabrics_connect(2, 31, c.cntlid(), NQN, &other).expect("connect response");
    assert_eq!(cqe.status().sc(), CommandSpecificStatus::CONNECT_INVALID_PARAMETERS);
}

/// Keep-alive on a virtual clock: the controller survives exactly KATO of silence and is torn
/// down 1 ms later; a Keep Alive restarts the timer.
#[test]
fn keep_alive_timeout_tears_the_controller_down() {
    const KATO: u64 = 10_000;
    let ms = Duration::from_millis;
    let clock = TestClock::new();
    let t = TestTarget::start(TargetSpec { clock: Some(clock), ..Default::default() });
    let cfg = HostConfig { kato_ms: KATO as u32, ..Default::default() };
    // Connected at virtual time 0: the timer starts there.
    let mut c = Controller::connect(t.addr, NQN, &cfg).expect("connect");
    let mut q = c.connect_io_queue(1).expect("io queue");
    assert!(t.wait_for(|t| t.connections() == 2));
    t.set_time(ms(KATO));
    assert_eq!(t.subsystem.num_controllers(), 1, "expired after exactly KATO");
    // A Keep Alive at KATO restarts the timer: KATO + 1 ms after the Connect is no expiry.
    c.keep_alive().expect("keep alive");
    t.set_time(ms(KATO + 1));
    assert_eq!(t.subsystem.num_controllers(), 1, "the Keep Alive did not restart the timer");
    t.set_time(ms(2 * KATO));
    assert_eq!(t.subsystem.num_controllers(), 1, "expired exactly KATO after the Keep Alive");
    assert_eq!(t.connections(), 2);
    // 1 ms more of silence: the target tears the controller down and closes both queues.
    t.set_time(ms(2 * KATO + 1));
    assert_eq!(t.subsystem.num_controllers(), 0, "controller not torn down 1 ms past KATO");
    assert!(t.wait_for(|t| t.connections() == 0), "connections not closed");
    let mut buf = vec![0u8; 512];
    assert!(q.read(1, 0, 1, &mut buf).is_err());
    assert!(c.keep_alive().is_err());
}

/// A command on `r` (CID `cid`) that carries no data; returns its response.
fn raw_cmd(r: &mut RawConnection, mut sqe: Sqe, cid: u16) -> Cqe {
    sqe.cid.set(cid);
    r.send_capsule(&sqe, &[]).expect("send");
    let cqe = r.recv_capsule_resp().expect("response");
    assert_eq!(cqe.cid.get(), cid);
    cqe
}

#[test]
fn namespace_hot_add_raises_an_async_event() {
    let t = TestTarget::start(TargetSpec::default());
    // A raw admin queue parks an AER; a Keep Alive sent after it answers first, so the AER is
    // known to be parked (commands of a queue run in order) before the namespace is added.
    let mut r = RawConnection::connect(t.addr).expect("tcp");
    r.icreq(false, false).expect("icreq");
    let cqe = r.fabrics_connect(0, 31, 0xffff, NQN, &HostConfig::default()).expect("connect");
    assert!(cqe.is_success(), "{:?}", cqe.status());
    let mut en = pdu::fabrics_sqe(FabricsType::PropertySet);
    // CC.EN with 64-byte SQEs (IOSQES 6) and 16-byte CQEs (IOCQES 4).
    PropertyCmd { eight_bytes: false, offset: reg::CC, value: 1 | 6 << 16 | 4 << 20 }.write(&mut en);
    assert!(raw_cmd(&mut r, en, 1).is_success(), "CC.EN = 1");
    // Enable Namespace Attribute Notices.
    let aen = Sqe { opcode: 0x09, flags: 0x40, cdw10: 0x0b.into(), cdw11: (1u32 << 8).into(), ..Default::default() };
    assert!(raw_cmd(&mut r, aen, 2).is_success(), "async event config");
    let mut aer = Sqe { opcode: 0x0c, flags: 0x40, ..Default::default() };
    aer.cid.set(3);
    r.send_capsule(&aer, &[]).expect("send AER");
    let ka = Sqe { opcode: 0x18, flags: 0x40, ..Default::default() };
    assert!(raw_cmd(&mut r, ka, 4).is_success(), "the Keep Alive behind the AER answers first");
    // A controller of the high-level host, to read the changed namespace list afterwards.
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    c.set_features(0x0b, 1 << 8).expect("async event config");
    let b = Arc::new(NullBdev::new("Null1", 1024, 4096).expect("null"));
    let nsid = t.subsystem.add_namespace(NamespaceConfig { nsid: Some(5), ..NamespaceConfig::new(b) }).expect("add ns");
    assert_eq!(nsid, 5);
    let cqe = r.recv_capsule_resp().expect("the parked AER completes");
    assert_eq!(cqe.cid.get(), 3);
    assert!(cqe.is_success());
    // Notice (type 2), Namespace Attribute Changed (0), log page 04h.
    assert_eq!(cqe.dw0.get(), 2 | 0x04 << 16);
    let log = c.get_log_page(lid::CHANGED_NS_LIST, 0, 4096, 0).expect("changed ns list");
    assert_eq!(u32::from_le_bytes(log[0..4].try_into().unwrap()), 5);
    assert_eq!(u32::from_le_bytes(log[4..8].try_into().unwrap()), 0);
    assert_eq!(c.active_namespaces().expect("list"), vec![1, 5]);
    let ns = c.identify_namespace(5).expect("identify ns 5");
    assert_eq!(ns.lbaf[0].lbads, 12);
    // I/O to the new namespace works; after removal it is an invalid namespace.
    let mut q = c.connect_io_queue(1).expect("io queue");
    let mut b = vec![0xffu8; 4096];
    q.read(5, 0, 1, &mut b).expect("read null");
    assert!(b.iter().all(|&x| x == 0));
    t.subsystem.remove_namespace(5).expect("remove");
    let e = q.read(5, 0, 1, &mut b).expect_err("removed");
    assert_eq!(e.status().expect("status").sc(), GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
    let _ = MallocBdev::new("unused", 8, 512);
}

#[test]
fn disconnect_and_controller_reset_close_io_queues() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    let q1 = c.connect_io_queue(1).expect("qid 1");
    let mut q2 = c.connect_io_queue(2).expect("qid 2");
    assert!(t.wait_for(|t| t.connections() == 3));
    // Fabrics Disconnect on an I/O queue closes just that queue; its QID can be reused.
    q1.disconnect().expect("disconnect");
    assert!(t.wait_for(|t| t.connections() == 2), "disconnected queue still open");
    let mut q1 = c.connect_io_queue(1).expect("qid 1 again");
    q1.write(1, 0, 1, &pattern(4, 0, 512)).expect("write on the new qid 1");
    // CC.EN 1 -> 0 resets the controller: its I/O queues close, CSTS.RDY clears.
    let cc = c.property_get(reg::CC, false).expect("CC");
    c.property_set(reg::CC, false, cc & !1).expect("CC.EN = 0");
    assert_eq!(c.property_get(reg::CSTS, false).expect("CSTS") & 1, 0, "RDY cleared");
    assert!(t.wait_for(|t| t.connections() == 1), "I/O queues survived the reset");
    let mut b = vec![0u8; 512];
    assert!(q2.read(1, 0, 1, &mut b).is_err());
    // Admin commands other than fabrics are refused until the host enables again.
    let e = c.identify_controller().expect_err("identify while disabled");
    assert_eq!(e.status().expect("status").sc(), GenericStatus::COMMAND_SEQUENCE_ERROR);
    c.property_set(reg::CC, false, cc).expect("CC.EN = 1");
    assert_eq!(c.property_get(reg::CSTS, false).expect("CSTS") & 1, 1);
    let mut q = c.connect_io_queue(2).expect("qid 2 after reset");
    q.read(1, 0, 1, &mut b).expect("read after reset");
    assert_eq!(b, pattern(4, 0, 512), "data written before the reset is still there");
}

#[test]
fn controller_to_host_buffers_never_leak_other_data() {
    let t = TestTarget::start(TargetSpec { poll_groups: 1, ..Default::default() });
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    let mut q = c.connect_io_queue(1).expect("io queue");
    // Fill pool buffers with a recognisable pattern through reads and writes.
    let junk = vec![0xa5u8; 4096];
    for i in 0..8 {
        q.write(1, i * 8, 8, &junk).expect("write");
        let mut b = vec![0u8; 4096];
        q.read(1, i * 8, 8, &mut b).expect("read");
    }
    // Get Features Host Identifier with a 4 KiB buffer: the HOSTID, then zeroes.
    let mut sqe = Sqe { opcode: 0x0a, flags: 0x40, ..Default::default() };
    sqe.cdw10.set(0x81);
    let mut data = vec![0xffu8; 4096];
    let cqe = c.admin_raw(sqe, None, Some(&mut data)).expect("get features");
    assert!(cqe.is_success());
    assert_eq!(&data[..16], &HostConfig::default().hostid);
    assert!(data[16..].iter().all(|&b| b == 0), "stale pool data leaked");
    // The same for an error log longer than the page.
    let log = c.get_log_page(lid::ERROR, 0, 4096, 0).expect("error log");
    assert!(log.iter().all(|&b| b == 0));
}
