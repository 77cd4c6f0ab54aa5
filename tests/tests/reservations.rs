//! Persistent reservations over NVMe/TCP with two hosts (two host NQNs and Host Identifiers):
//! register, acquire, report, I/O conflicts across poll groups, release notifications with their
//! event and log page, and Persist Through Power Loss across a target restart.

#![forbid(unsafe_code)]

use nvmf::bdev::MallocBdev;
use nvmf::host::{Controller, HostConfig, IoQueue};
use nvmf::spec::reservation::{
    cptpl, notification_type, racqa, rrega, rrela, RegisteredControllerExtended, ReservationCdw10,
    ReservationNotificationLog, ReservationStatusHeader, ReservationType as T, REPORT_EDS,
};
use nvmf::spec::{lid, Cqe, GenericStatus, Sqe};
use nvmf::NamespaceConfig;
use nvmf_tests::*;
use std::sync::Arc;
use zerocopy::FromBytes;

const REGISTER: u8 = 0x0d;
const REPORT: u8 = 0x0e;
const ACQUIRE: u8 = 0x11;
const RELEASE: u8 = 0x15;

fn host(n: u8) -> HostConfig {
    HostConfig {
        hostnqn: format!("nqn.2014-08.org.nvmexpress:uuid:{n:08x}-0000-0000-0000-000000000000"),
        hostid: [n; 16],
        ..Default::default()
    }
}

struct Host {
    c: Controller,
    q: IoQueue,
}

fn connect(t: &TestTarget, n: u8) -> Host {
    let mut c = Controller::connect(t.addr, NQN, &host(n)).expect("connect");
    let q = c.connect_io_queue(1).expect("io queue");
    Host { c, q }
}

fn cmd(q: &mut IoQueue, opcode: u8, nsid: u32, cdw10: ReservationCdw10, data: &[u8]) -> Cqe {
    let mut sqe = Sqe { opcode, flags: 0x40, ..Default::default() };
    sqe.nsid.set(nsid);
    sqe.cdw10.set(cdw10.to_dw());
    q.raw(sqe, Some(data), None).expect("reservation command")
}

fn keys(a: u64, b: u64) -> Vec<u8> {
    [a.to_le_bytes(), b.to_le_bytes()].concat()
}

fn register(q: &mut IoQueue, nsid: u32, action: u8, cptpl: u8, crkey: u64, nrkey: u64) -> Cqe {
    cmd(q, REGISTER, nsid, ReservationCdw10 { action, iekey: false, rtype: 0, cptpl }, &keys(crkey, nrkey))
}

fn acquire(q: &mut IoQueue, nsid: u32, action: u8, t: T, crkey: u64, prkey: u64) -> Cqe {
    cmd(q, ACQUIRE, nsid, ReservationCdw10 { action, iekey: false, rtype: t as u8, cptpl: 0 }, &keys(crkey, prkey))
}

fn release(q: &mut IoQueue, nsid: u32, action: u8, t: T, crkey: u64) -> Cqe {
    cmd(q, RELEASE, nsid, ReservationCdw10 { action, iekey: false, rtype: t as u8, cptpl: 0 }, &crkey.to_le_bytes())
}

fn report(q: &mut IoQueue, nsid: u32) -> (ReservationStatusHeader, Vec<RegisteredControllerExtended>) {
    let mut sqe = Sqe { opcode: REPORT, flags: 0x40, ..Default::default() };
    sqe.nsid.set(nsid);
    sqe.cdw10.set(4096 / 4 - 1);
    sqe.cdw11.set(REPORT_EDS);
    let mut buf = vec![0xeeu8; 4096];
    let cqe = q.raw(sqe, None, Some(&mut buf)).expect("report");
    assert!(cqe.is_success(), "report: {:#x}", cqe.status().sc());
    let hdr = ReservationStatusHeader::read_from_bytes(&buf[..64]).expect("header");
    let regs = (0..hdr.regctl.get() as usize)
        .map(|i| RegisteredControllerExtended::read_from_bytes(&buf[64 + 64 * i..128 + 64 * i]).expect("entry"))
        .collect();
    (hdr, regs)
}

fn ok(c: Cqe, what: &str) {
    assert!(c.is_success(), "{what}: status {:#x}", c.status().sc());
}

fn write_status(q: &mut IoQueue, nsid: u32) -> u8 {
    let mut sqe = Sqe { opcode: 0x01, flags: 0x40, ..Default::default() };
    sqe.nsid.set(nsid);
    let data = vec![0x5au8; 512];
    q.raw(sqe, Some(&data), None).expect("write").status().sc()
}

fn read_status(q: &mut IoQueue, nsid: u32) -> u8 {
    let mut sqe = Sqe { opcode: 0x02, flags: 0x40, ..Default::default() };
    sqe.nsid.set(nsid);
    let mut data = vec![0u8; 512];
    q.raw(sqe, None, Some(&mut data)).expect("read").status().sc()
}

const OK: u8 = GenericStatus::SUCCESS;
const CONFLICT: u8 = GenericStatus::RESERVATION_CONFLICT;

#[test]
fn write_exclusive_blocks_the_other_host_until_released() {
    // Two poll groups: the hosts' queues may land on different ones.
    let t = TestTarget::start(TargetSpec::default());
    let (mut a, mut b) = (connect(&t, 0xa), connect(&t, 0xb));
    let id = a.c.identify_namespace(1).expect("identify");
    assert_eq!(id.rescap & 0x7e, 0x7e, "all six reservation types");
    assert_ne!(a.c.identify_controller().expect("id").oncs.get() & 1 << 5, 0, "ONCS reservations");

    ok(register(&mut a.q, 1, rrega::REGISTER, 0, 0, 0xaaaa), "A registers");
    ok(register(&mut b.q, 1, rrega::REGISTER, 0, 0, 0xbbbb), "B registers");
    ok(acquire(&mut a.q, 1, racqa::ACQUIRE, T::WriteExclusive, 0xaaaa, 0), "A acquires");
    assert_eq!(acquire(&mut b.q, 1, racqa::ACQUIRE, T::WriteExclusive, 0xbbbb, 0).status().sc(), CONFLICT);

    let (hdr, regs) = report(&mut b.q, 1);
    assert_eq!((hdr.rtype, hdr.regctl.get(), hdr.ptpls), (T::WriteExclusive as u8, 2, 0));
    assert_eq!(hdr.gen.get(), 2, "two registrations");
    let holder: Vec<_> = regs.iter().filter(|r| r.rcsts & 1 == 1).map(|r| (r.hostid, r.rkey.get())).collect();
    assert_eq!(holder, vec![([0xa; 16], 0xaaaa)]);

    // The non-holder reads but may not write; the holder does both; a stranger likewise.
    assert_eq!(write_status(&mut b.q, 1), CONFLICT, "B writes under A's Write Exclusive");
    assert_eq!(read_status(&mut b.q, 1), OK);
    assert_eq!(write_status(&mut a.q, 1), OK);
    let mut c = connect(&t, 0xc);
    assert_eq!(write_status(&mut c.q, 1), CONFLICT, "an unregistered host");
    // The data is A's: B's write did not land.
    let mut buf = vec![0u8; 512];
    c.q.read(1, 0, 1, &mut buf).expect("read back");
    assert_eq!(buf, vec![0x5a; 512]);

    // Release with the wrong type: Invalid Field; with the right one: B may write.
    assert_eq!(
        release(&mut a.q, 1, rrela::RELEASE, T::ExclusiveAccess, 0xaaaa).status().sc(),
        GenericStatus::INVALID_FIELD
    );
    ok(release(&mut a.q, 1, rrela::RELEASE, T::WriteExclusive, 0xaaaa), "A releases");
    assert_eq!(write_status(&mut b.q, 1), OK);
    // Report without the extended data structure: 128-bit host IDs do not fit.
    let mut sqe = Sqe { opcode: REPORT, flags: 0x40, ..Default::default() };
    sqe.nsid.set(1);
    sqe.cdw10.set(1023);
    let mut buf = vec![0u8; 4096];
    let cqe = b.q.raw(sqe, None, Some(&mut buf)).expect("report");
    assert_eq!(cqe.status().sc(), GenericStatus::HOSTID_INCONSISTENT_FORMAT);
}

#[test]
fn preempt_and_clear_notify_the_other_host() {
    let t = TestTarget::start(TargetSpec::default());
    let (mut a, mut b) = (connect(&t, 0xa), connect(&t, 0xb));
    ok(register(&mut a.q, 1, rrega::REGISTER, 0, 0, 1), "A registers");
    ok(register(&mut b.q, 1, rrega::REGISTER, 0, 0, 2), "B registers");
    ok(acquire(&mut a.q, 1, racqa::ACQUIRE, T::ExclusiveAccessRegistrantsOnly, 1, 0), "A acquires");
    assert_eq!(read_status(&mut b.q, 1), OK, "registrants keep access");
    // B preempts A: A is unregistered and told so.
    ok(acquire(&mut b.q, 1, racqa::PREEMPT, T::ExclusiveAccess, 2, 1), "B preempts");
    assert_eq!(read_status(&mut a.q, 1), CONFLICT, "Exclusive Access: A may not even read");
    // A's controller has a Reservation Log Page Available event (type 6, info 0, log 80h) ...
    let aer = Sqe { opcode: 0x0c, flags: 0x40, ..Default::default() };
    let cqe = a.c.admin_raw(aer, None, None).expect("AER");
    assert_eq!(cqe.dw0.get(), 6 | 0x80 << 16);
    // ... and the log says Registration Preempted on NSID 1, then is empty.
    let raw = a.c.get_log_page(lid::RESERVATION_NOTIFICATION, 0, 64, 0).expect("log 80h");
    let log = ReservationNotificationLog::read_from_bytes(&raw[..]).expect("size");
    assert_eq!((log.log_type, log.nsid.get(), log.num_available), (notification_type::REGISTRATION_PREEMPTED, 1, 0));
    assert_ne!(log.log_page_count.get(), 0);
    let raw = a.c.get_log_page(lid::RESERVATION_NOTIFICATION, 0, 64, 0).expect("log 80h again");
    assert_eq!(raw[8], notification_type::EMPTY);
    // A registers again and clears everything: B is told Reservation Preempted.
    ok(register(&mut a.q, 1, rrega::REGISTER, 0, 0, 5), "A registers again");
    ok(release(&mut a.q, 1, rrela::CLEAR, T::ExclusiveAccess, 5), "A clears");
    let cqe = b.c.admin_raw(aer, None, None).expect("AER");
    assert_eq!(cqe.dw0.get(), 6 | 0x80 << 16);
    let raw = b.c.get_log_page(lid::RESERVATION_NOTIFICATION, 0, 64, 0).expect("log 80h");
    assert_eq!(raw[8], notification_type::RESERVATION_PREEMPTED);
    assert_eq!(report(&mut b.q, 1).0.regctl.get(), 0);
    assert_eq!(write_status(&mut b.q, 1), OK);
}

/// A fresh directory for a test's PTPL file (`tag` tells the tests apart) and the file's path in
/// it (not created).
fn ptpl_path(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("nvmf-ptpl-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("ns2.json");
    let _ = std::fs::remove_file(&path);
    (dir, path)
}

fn add_ptpl_namespace(t: &TestTarget, path: &std::path::Path) {
    let bdev = Arc::new(MallocBdev::new("Malloc1", 2048, 512).expect("malloc"));
    let cfg = NamespaceConfig { nsid: Some(2), ptpl_file: Some(path.to_path_buf()), ..NamespaceConfig::new(bdev) };
    t.subsystem.add_namespace(cfg).expect("add namespace with a PTPL file");
}

#[test]
fn persist_through_power_loss_survives_a_restart() {
    let (dir, path) = ptpl_path("it");
    {
        let t = TestTarget::start(TargetSpec::default());
        add_ptpl_namespace(&t, &path);
        let mut a = connect(&t, 0xa);
        assert_eq!(a.c.identify_namespace(2).expect("identify").rescap & 1, 1, "RESCAP PTPL");
        // Without a file, PTPL cannot be turned on.
        assert_eq!(
            register(&mut a.q, 1, rrega::REGISTER, cptpl::SET, 0, 7).status().sc(),
            GenericStatus::INVALID_FIELD
        );
        ok(register(&mut a.q, 2, rrega::REGISTER, cptpl::SET, 0, 7), "register with PTPL on");
        ok(acquire(&mut a.q, 2, racqa::ACQUIRE, T::WriteExclusiveRegistrantsOnly, 7, 0), "acquire");
        // Completed means on disk: the file already holds the reservation.
        let text = std::fs::read_to_string(&path).expect("ptpl file");
        assert!(text.contains("\"rtype\": 3"), "{text}");
    }
    // A new target on the same file: the registration and reservation are back.
    let t = TestTarget::start(TargetSpec::default());
    add_ptpl_namespace(&t, &path);
    let mut b = connect(&t, 0xb);
    let (hdr, regs) = report(&mut b.q, 2);
    assert_eq!((hdr.rtype, hdr.ptpls, hdr.regctl.get()), (T::WriteExclusiveRegistrantsOnly as u8, 1, 1));
    assert_eq!((regs[0].hostid, regs[0].rkey.get(), regs[0].rcsts), ([0xa; 16], 7, 1));
    assert_eq!(write_status(&mut b.q, 2), CONFLICT, "B is not a registrant");
    let mut a = connect(&t, 0xa);
    assert_eq!(write_status(&mut a.q, 2), OK, "A still holds it");
    // Turning PTPL off empties the file.
    ok(register(&mut a.q, 2, rrega::REGISTER, cptpl::CLEAR, 0, 7), "PTPL off");
    assert_eq!(std::fs::read(&path).expect("file"), b"");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_reservation_command_without_its_data_is_refused() {
    let t = TestTarget::start(TargetSpec::default());
    let mut a = connect(&t, 0xa);
    let mut sqe = Sqe { opcode: REGISTER, flags: 0x40, ..Default::default() };
    sqe.nsid.set(1);
    let cqe = a.q.raw(sqe, Some(&[0u8; 4]), None).expect("register");
    assert_eq!(cqe.status().sc(), GenericStatus::INVALID_FIELD);
    let cqe = register(&mut a.q, 9, rrega::REGISTER, 0, 0, 1);
    assert_eq!(cqe.status().sc(), GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
}

#[test]
fn reservations_arbitrate_a_direct_mode_namespace_too() {
    use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
    use nvme_driver::{Controller as PcieController, ControllerOptions};
    use nvmf::bdev::{Bdev, NvmeBdev};
    let emu = EmulatedController::new(EmulatorConfig { namespaces: vec![(512, 2048)], ..Default::default() });
    let ctrl = Arc::new(PcieController::new_emulated(&emu, ControllerOptions::default()).expect("bring-up"));
    let bdev: Arc<dyn Bdev> = Arc::new(NvmeBdev::new("Nvme0n1", ctrl, 1).expect("bdev"));
    let t = TestTarget::start(TargetSpec { bdevs: vec![bdev], ..Default::default() });
    let (mut a, mut b) = (connect(&t, 0xa), connect(&t, 0xb));
    ok(register(&mut a.q, 1, rrega::REGISTER, 0, 0, 0xaaaa), "A registers");
    ok(register(&mut b.q, 1, rrega::REGISTER, 0, 0, 0xbbbb), "B registers");
    ok(acquire(&mut a.q, 1, racqa::ACQUIRE, T::WriteExclusive, 0xaaaa, 0), "A acquires");
    let disk = |emu: &EmulatedController| {
        let mut v = vec![0u8; 512];
        assert!(emu.read_disk(1, 0, &mut v));
        v
    };
    // The target refuses the non-holder's write: the device never sees it.
    assert_eq!(write_status(&mut b.q, 1), CONFLICT);
    assert_eq!(disk(&emu), vec![0u8; 512], "B's write did not reach the device");
    assert_eq!(write_status(&mut a.q, 1), OK);
    assert_eq!(disk(&emu), vec![0x5a; 512], "the holder's write did");
    let (hdr, _) = report(&mut b.q, 1);
    assert_eq!((hdr.rtype, hdr.regctl.get()), (T::WriteExclusive as u8, 2), "the target keeps the state");
}

#[test]
fn one_host_nqn_with_many_host_ids_cannot_fill_the_registrant_table() {
    let t = TestTarget::start(TargetSpec::default());
    // One host NQN connecting with a new Host Identifier each time.
    let greedy = |i: u8| HostConfig { hostid: [0x80 + i; 16], ..host(1) };
    let limit = nvmf::reservation::MAX_REGISTRANTS_PER_HOSTNQN as u8;
    let mut hosts = Vec::new();
    for i in 0..=limit {
        let mut c = Controller::connect(t.addr, NQN, &greedy(i)).expect("connect");
        let mut q = c.connect_io_queue(1).expect("io queue");
        let r = register(&mut q, 1, rrega::REGISTER, cptpl::NO_CHANGE, 0, 100 + i as u64);
        if i < limit {
            ok(r, "register within the host NQN's share");
        } else {
            assert_eq!(r.status().sc(), GenericStatus::INTERNAL_ERROR, "one Host ID too many for one host NQN");
            assert!(r.status().is_dnr());
        }
        hosts.push((c, q));
    }
    // Another host still registers.
    let mut b = connect(&t, 2);
    ok(register(&mut b.q, 1, rrega::REGISTER, cptpl::NO_CHANGE, 0, 7), "another host registers");
    let (_, regs) = report(&mut b.q, 1);
    assert_eq!(regs.len(), limit as usize + 1, "the greedy host's share and the other host");
}

/// Set/Get Features 82h with an NSID.
fn mask_cmd(c: &mut Controller, set: bool, nsid: u32, mask: u32) -> Cqe {
    let mut sqe = Sqe { opcode: if set { 0x09 } else { 0x0a }, flags: 0x40, ..Default::default() };
    sqe.nsid.set(nsid);
    sqe.cdw10.set(0x82);
    sqe.cdw11.set(mask);
    c.admin_raw(sqe, None, None).expect("features 82h")
}

#[test]
fn the_notification_mask_is_per_namespace() {
    let bdevs: Vec<Arc<dyn nvmf::bdev::Bdev>> = (0..2)
        .map(|i| {
            Arc::new(MallocBdev::new(&format!("Malloc{i}"), 2048, 512).expect("malloc")) as Arc<dyn nvmf::bdev::Bdev>
        })
        .collect();
    let t = TestTarget::start(TargetSpec { bdevs, ..Default::default() });
    let (mut a, mut b) = (connect(&t, 0xa), connect(&t, 0xb));
    // A masks Registration Preempted (bit 1) on namespace 1 only.
    ok(mask_cmd(&mut a.c, true, 1, 1 << notification_type::REGISTRATION_PREEMPTED), "set mask of ns 1");
    assert_eq!(mask_cmd(&mut a.c, false, 1, 0).dw0.get(), 1 << notification_type::REGISTRATION_PREEMPTED);
    assert_eq!(mask_cmd(&mut a.c, false, 2, 0).dw0.get(), 0, "namespace 2 keeps its own mask");
    let bad = mask_cmd(&mut a.c, false, 0xffff_ffff, 0);
    assert_eq!(bad.status().sc(), GenericStatus::INVALID_FIELD, "Get needs one namespace");
    assert_eq!(mask_cmd(&mut a.c, false, 9, 0).status().sc(), GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
    // B preempts A on both namespaces: A hears about namespace 2 only.
    for ns in 1..=2 {
        ok(register(&mut a.q, ns, rrega::REGISTER, 0, 0, 1), "A registers");
        ok(register(&mut b.q, ns, rrega::REGISTER, 0, 0, 2), "B registers");
        ok(acquire(&mut a.q, ns, racqa::ACQUIRE, T::WriteExclusive, 1, 0), "A acquires");
        ok(acquire(&mut b.q, ns, racqa::PREEMPT, T::WriteExclusive, 2, 1), "B preempts");
    }
    let raw = a.c.get_log_page(lid::RESERVATION_NOTIFICATION, 0, 64, 0).expect("log 80h");
    let log = ReservationNotificationLog::read_from_bytes(&raw[..]).expect("size");
    assert_eq!((log.log_type, log.nsid.get(), log.num_available), (notification_type::REGISTRATION_PREEMPTED, 2, 0));
    // NSID FFFFFFFFh sets every namespace's mask.
    ok(mask_cmd(&mut a.c, true, 0xffff_ffff, 0b1110), "set all masks");
    assert_eq!(mask_cmd(&mut a.c, false, 2, 0).dw0.get(), 0b1110);
}

/// Set/Get Features 83h (Reservation Persistence) on namespace `nsid`.
fn persistence(c: &mut Controller, set: Option<bool>, nsid: u32) -> Cqe {
    let mut sqe = Sqe { opcode: if set.is_some() { 0x09 } else { 0x0a }, flags: 0x40, ..Default::default() };
    sqe.nsid.set(nsid);
    sqe.cdw10.set(0x83);
    sqe.cdw11.set(set.unwrap_or(false) as u32);
    c.admin_raw(sqe, None, None).expect("features 83h")
}

#[test]
fn set_features_reservation_persistence_turns_ptpl_on_and_off() {
    let (dir, path) = ptpl_path("83");
    let t = TestTarget::start(TargetSpec::default());
    add_ptpl_namespace(&t, &path);
    let mut a = connect(&t, 0xa);
    ok(register(&mut a.q, 2, rrega::REGISTER, cptpl::NO_CHANGE, 0, 7), "register");
    assert_eq!(persistence(&mut a.c, None, 2).dw0.get(), 0, "PTPL off at first");
    // On: the file holds the registration once the command has completed.
    ok(persistence(&mut a.c, Some(true), 2), "PTPL on");
    assert_eq!(persistence(&mut a.c, None, 2).dw0.get(), 1);
    let text = std::fs::read_to_string(&path).expect("ptpl file");
    assert!(text.contains("\"rkey\": 7"), "{text}");
    assert_eq!(report(&mut a.q, 2).0.ptpls, 1, "the report agrees");
    // Off: the file is emptied.
    ok(persistence(&mut a.c, Some(false), 2), "PTPL off");
    assert_eq!(persistence(&mut a.c, None, 2).dw0.get(), 0);
    assert_eq!(std::fs::read(&path).expect("file"), b"");
    // Namespace 1 has no PTPL file: only off is accepted.
    assert_eq!(persistence(&mut a.c, Some(true), 1).status().sc(), GenericStatus::INVALID_FIELD);
    ok(persistence(&mut a.c, Some(false), 1), "off where it is off");
    assert_eq!(persistence(&mut a.c, Some(true), 9).status().sc(), GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
