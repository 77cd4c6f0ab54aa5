//! DH-HMAC-CHAP in-band authentication between our host client and the target: uni- and
//! bidirectional for every hash with the null group and ffdhe2048 (larger groups: one run of
//! each in `larger_dh_groups`), wrong keys, hosts without keys or not on the list, commands
//! before authentication, I/O queues.

#![forbid(unsafe_code)]

use nvmf::auth::messages::{AuthCmd, Message, CONNECT_AUTHREQ_ATR};
use nvmf::auth::{DhGroup, DhKeyPair, FfdheGroup, HashId, Secret};
use nvmf::host::{pdu, Controller, HostConfig, HostError, RawConnection};
use nvmf::spec::tcp::pdu_type;
use nvmf::spec::{AdminOpcode, CommandSpecificStatus, FabricsType, GenericStatus, SglDescriptor, Sqe, StatusCodeType};
use nvmf::HostKeys;
use nvmf_tests::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:9d2f4c1e-7b8a-4e36-a5c0-3f1d6e2b8a47";

/// Secrets as `nvme gen-dhchap-key` prints them.
const HOST_KEY: &str = "DHHC-1:01:FXxHMF/wOdhX0qUZw2Cd4EvRbJ9L57chOXvRTS1yeX9f/gxI:";
const CTRL_KEY: &str =
    "DHHC-1:03:tkXtMoNWCwhGPNWNxW7R0kwPwqq/ypzgrPEdcqdebbLegiJAaMmOI/I1MbHqpBrYYpac1LoXEvTGxOAl/f2AeXYCW+E=:";
const OTHER_KEY: &str = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:";

fn secret(s: &str) -> Secret {
    Secret::parse(s).expect("secret")
}

/// A target that knows `HOSTNQN` with the host key and, when `bidi`, the controller key.
fn target(bidi: bool) -> TestTarget {
    target_with(TargetSpec::default(), bidi)
}

/// `target` built from `spec` (hosts must be on the list).
fn target_with(spec: TargetSpec, bidi: bool) -> TestTarget {
    let t = TestTarget::start(TargetSpec { allow_any_host: false, ..spec });
    let keys = HostKeys {
        dhchap_key: Some(secret(HOST_KEY)),
        dhchap_ctrlr_key: bidi.then(|| secret(CTRL_KEY)),
        ..Default::default()
    };
    t.subsystem.add_host_with_keys(HOSTNQN, keys).expect("add host");
    t
}

fn host(hash: HashId, group: DhGroup, bidi: bool) -> HostConfig {
    HostConfig {
        hostnqn: HOSTNQN.into(),
        kato_ms: 0,
        io_timeout: Duration::from_secs(20),
        dhchap_secret: Some(secret(HOST_KEY)),
        dhchap_ctrl_secret: bidi.then(|| secret(CTRL_KEY)),
        dhchap_digests: vec![hash],
        dhchap_dhgroups: vec![group],
        ..Default::default()
    }
}

fn auth_error(r: Result<Controller, HostError>) -> String {
    match r {
        Ok(_) => panic!("connect succeeded"),
        Err(HostError::Auth(m)) => m,
        Err(e) => panic!("expected an authentication error, got {e}"),
    }
}

/// Authenticated admin queue and I/O queue, with verified I/O.
fn connect_and_io(t: &TestTarget, cfg: &HostConfig) {
    let mut c = Controller::connect(t.addr, NQN, cfg).unwrap_or_else(|e| panic!("connect {cfg:?}: {e}"));
    c.identify_controller().expect("identify after authentication");
    let mut io = c.connect_io_queue(1).expect("I/O queue connect + authentication");
    let data = pattern(7, 3, 4096);
    io.write(1, 3, 8, &data).expect("write");
    let mut back = vec![0u8; 4096];
    io.read(1, 3, 8, &mut back).expect("read");
    assert_eq!(back, data);
    io.disconnect().expect("io disconnect");
    c.disconnect().expect("disconnect");
}

#[test]
fn unidirectional_all_hashes_null_and_ffdhe2048() {
    let t = target(false);
    for hash in HashId::ALL {
        for group in [DhGroup::Null, DhGroup::Ffdhe2048] {
            connect_and_io(&t, &host(hash, group, false));
        }
    }
}

#[test]
fn bidirectional_all_hashes_null_and_ffdhe2048() {
    let t = target(true);
    for hash in HashId::ALL {
        for group in [DhGroup::Null, DhGroup::Ffdhe2048] {
            connect_and_io(&t, &host(hash, group, true));
        }
    }
    // The controller key is optional for the host: unidirectional against the same entry.
    connect_and_io(&t, &host(HashId::Sha256, DhGroup::Null, false));
}

/// Without a work runner (the default here) the poll group runs the exponentiations itself.
#[test]
fn larger_dh_groups() {
    let t = target(true);
    for group in [DhGroup::Ffdhe3072, DhGroup::Ffdhe4096, DhGroup::Ffdhe6144, DhGroup::Ffdhe8192] {
        connect_and_io(&t, &host(HashId::Sha512, group, true));
    }
}

#[test]
fn negotiation_follows_the_target_preferences() {
    let t = TestTarget::start(TargetSpec { allow_any_host: false, ..Default::default() });
    let keys = HostKeys {
        dhchap_key: Some(secret(HOST_KEY)),
        dhchap_digests: vec![HashId::Sha384],
        dhchap_dhgroups: vec![DhGroup::Null],
        ..Default::default()
    };
    t.subsystem.add_host_with_keys(HOSTNQN, keys).expect("add host");
    // The host offers everything: the target picks SHA-384 / null.
    let mut cfg = host(HashId::Sha256, DhGroup::Null, false);
    cfg.dhchap_digests.clear();
    cfg.dhchap_dhgroups.clear();
    Controller::connect(t.addr, NQN, &cfg).expect("connect").disconnect().expect("disconnect");
    // Nothing in common.
    let m = auth_error(Controller::connect(t.addr, NQN, &host(HashId::Sha512, DhGroup::Null, false)));
    assert!(m.contains("hash"), "{m}");
    let m = auth_error(Controller::connect(t.addr, NQN, &host(HashId::Sha384, DhGroup::Ffdhe2048, false)));
    assert!(m.contains("DH group"), "{m}");
    assert!(t.wait_for(|t| t.subsystem.num_controllers() == 0), "failed controllers torn down");
}

#[test]
fn wrong_keys_are_refused() {
    let t = target(true);
    // Wrong host key: the controller sends AUTH_Failure1 and closes the connection.
    let mut cfg = host(HashId::Sha256, DhGroup::Ffdhe2048, false);
    cfg.dhchap_secret = Some(secret(OTHER_KEY));
    let m = auth_error(Controller::connect(t.addr, NQN, &cfg));
    assert!(m.contains("authentication failed"), "{m}");
    // Right host key, wrong idea of the controller's key: the host refuses the controller.
    let mut cfg = host(HashId::Sha256, DhGroup::Null, true);
    cfg.dhchap_ctrl_secret = Some(secret(OTHER_KEY));
    let m = auth_error(Controller::connect(t.addr, NQN, &cfg));
    assert!(m.contains("controller authentication failed"), "{m}");
    // No secret at all.
    let mut cfg = host(HashId::Sha256, DhGroup::Null, false);
    cfg.dhchap_secret = None;
    let m = auth_error(Controller::connect(t.addr, NQN, &cfg));
    assert!(m.contains("no dhchap_secret"), "{m}");
    assert!(t.wait_for(|t| t.subsystem.num_controllers() == 0 && t.connections() == 0), "all torn down");
    // The right key still works afterwards.
    connect_and_io(&t, &host(HashId::Sha256, DhGroup::Null, true));
}

#[test]
fn unidirectional_target_refuses_bidirectional_host() {
    // The host wants the controller to prove itself; the target has no controller key.
    let t = target(false);
    let m = auth_error(Controller::connect(t.addr, NQN, &host(HashId::Sha256, DhGroup::Null, true)));
    assert!(m.contains("refused"), "{m}");
}

#[test]
fn host_with_controller_key_refuses_a_target_that_skips_authentication() {
    // A target with no keys for this host does not ask for authentication; a host that holds a
    // controller key insists, and the target cannot answer.
    let t = TestTarget::start(TargetSpec::default());
    let r = Controller::connect(t.addr, NQN, &host(HashId::Sha256, DhGroup::Null, true));
    let e = r.err().expect("must fail");
    let st = e.status().expect("AUTH_Send refused with a status");
    assert_eq!((st.sct(), st.sc()), (StatusCodeType::Generic as u8, GenericStatus::INVALID_FIELD));
}

#[test]
fn host_not_on_the_list_is_refused() {
    let t = target(false);
    let mut cfg = host(HashId::Sha256, DhGroup::Null, false);
    cfg.hostnqn = "nqn.2016-06.io.nvmf-rs:intruder".into();
    let e = Controller::connect(t.addr, NQN, &cfg).err().expect("must fail");
    let st = e.status().expect("status");
    assert_eq!(
        (st.sct(), st.sc()),
        (StatusCodeType::CommandSpecific as u8, CommandSpecificStatus::CONNECT_INVALID_HOST)
    );
}

fn raw_connect(t: &TestTarget, qid: u16, cntlid: u16) -> (RawConnection, u32) {
    let mut r = RawConnection::connect(t.addr).expect("tcp");
    r.icreq(false, false).expect("icreq");
    let cfg = HostConfig { hostnqn: HOSTNQN.into(), kato_ms: 0, ..Default::default() };
    let cqe = r.fabrics_connect(qid, 31, cntlid, NQN, &cfg).expect("connect");
    assert!(cqe.is_success(), "{:?}", cqe.status());
    (r, cqe.dw0.get())
}

fn assert_auth_required(r: &mut RawConnection, sqe: Sqe, cid: u16, what: &str) {
    let mut sqe = sqe;
    sqe.cid.set(cid);
    r.send_capsule(&sqe, &[]).expect("send");
    let cqe = r.recv_capsule_resp().expect("response");
    let st = cqe.status();
    assert_eq!(
        (st.sct(), st.sc()),
        (StatusCodeType::CommandSpecific as u8, CommandSpecificStatus::AUTH_REQUIRED),
        "{what}"
    );
    assert!(st.is_dnr(), "{what}: DNR");
}

#[test]
fn commands_before_authentication_fail_with_authentication_required() {
    let t = target(false);
    let (mut r, dw0) = raw_connect(&t, 0, 0xffff);
    assert_ne!(dw0 & CONNECT_AUTHREQ_ATR, 0, "Connect response asks for authentication");
    // Fabrics Property Get, admin Identify and Keep Alive are all refused.
    let mut pg = pdu::fabrics_sqe(FabricsType::PropertyGet);
    pg.cdw11.set(0x1c); // CSTS
    assert_auth_required(&mut r, pg, 1, "property get");
    let mut id = Sqe { opcode: AdminOpcode::Identify as u8, flags: pdu::SQE_FLAGS_SGL, ..Default::default() };
    id.cdw10.set(1);
    id.set_sgl1(SglDescriptor::transport(4096));
    assert_auth_required(&mut r, id, 2, "identify");
    let ka = Sqe { opcode: AdminOpcode::KeepAlive as u8, flags: pdu::SQE_FLAGS_SGL, ..Default::default() };
    assert_auth_required(&mut r, ka, 3, "keep alive");
    // A garbage AUTH_Send is accepted; the AUTH_Receive after it returns AUTH_Failure1 and the
    // controller closes the connection.
    let mut send = pdu::fabrics_sqe(FabricsType::AuthenticationSend);
    AuthCmd::dhchap(16).write(&mut send);
    send.set_sgl1(SglDescriptor::in_capsule(0, 16));
    send.cid.set(4);
    r.send_capsule(&send, &[0x01, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).expect("send");
    assert!(r.recv_capsule_resp().expect("auth send response").is_success());
    let mut recv = pdu::fabrics_sqe(FabricsType::AuthenticationReceive);
    AuthCmd::dhchap(64).write(&mut recv);
    recv.set_sgl1(SglDescriptor::transport(64));
    recv.cid.set(5);
    r.send_capsule(&recv, &[]).expect("send");
    let (ch, bytes) = r.recv_pdu().expect("C2HData");
    assert_eq!(ch.pdu_type, pdu_type::C2H_DATA);
    let data = &bytes[ch.pdo as usize..];
    assert_eq!(&data[..2], &[0x00, 0xf1], "AUTH_Failure1");
    assert_eq!(data[7], nvmf::auth::messages::failure::INCORRECT_MESSAGE);
    let cqe = r.recv_capsule_resp().expect("auth receive response");
    assert!(cqe.is_success());
    r.expect_closed().expect("connection closed after AUTH_Failure1");
    assert!(t.wait_for(|t| t.subsystem.num_controllers() == 0), "controller torn down");
}

#[test]
fn io_queue_connect_requires_authentication() {
    let t = target(false);
    let cfg = host(HashId::Sha256, DhGroup::Null, false);
    let mut c = Controller::connect(t.addr, NQN, &cfg).expect("authenticated admin queue");
    c.identify_controller().expect("identify");
    // A raw I/O queue Connect succeeds but asks for authentication; I/O is refused until then.
    let (mut r, dw0) = raw_connect(&t, 1, c.cntlid());
    assert_ne!(dw0 & CONNECT_AUTHREQ_ATR, 0);
    let mut rd = Sqe { opcode: 0x02, flags: pdu::SQE_FLAGS_SGL, ..Default::default() };
    rd.nsid.set(1);
    rd.set_sgl1(SglDescriptor::transport(512));
    assert_auth_required(&mut r, rd, 1, "read");
    let fl = Sqe { opcode: 0x00, flags: pdu::SQE_FLAGS_SGL, ..Default::default() };
    assert_auth_required(&mut r, fl, 2, "flush");
    r.close();
    // Our host authenticates its I/O queues.
    let mut io = c.connect_io_queue(2).expect("authenticated I/O queue");
    io.flush(1).expect("flush");
    // A host that authenticated the admin queue cannot skip it on an I/O queue with a wrong key.
    let mut bad = cfg.clone();
    bad.dhchap_secret = Some(secret(OTHER_KEY));
    let e = nvmf::host::IoQueue::connect(t.addr, NQN, c.cntlid(), 3, &bad, 0).err().expect("must fail");
    assert!(matches!(e, HostError::Auth(_)), "{e}");
    // ... and the admin queue is unaffected.
    c.identify_controller().expect("identify");
}

#[test]
fn keys_stay_out_of_debug_output() {
    let keys =
        HostKeys { dhchap_key: Some(secret(HOST_KEY)), dhchap_ctrlr_key: Some(secret(CTRL_KEY)), ..Default::default() };
    let cfg = host(HashId::Sha256, DhGroup::Null, true);
    for s in [format!("{keys:?}"), format!("{cfg:?}"), format!("{keys:#?}")] {
        assert!(s.contains("redacted"), "{s}");
        for k in [HOST_KEY, CTRL_KEY] {
            let b64 = k.split(':').nth(2).unwrap();
            assert!(!s.contains(&b64[..12]), "{s}");
        }
    }
}

#[test]
fn set_host_keys_applies_to_new_connections_and_io_queues_of_existing_controllers() {
    let t = target(false);
    let mut c = Controller::connect(t.addr, NQN, &host(HashId::Sha256, DhGroup::Null, false))
        .expect("connect with the first key");
    // Re-key (nvmf_subsystem_set_keys): the host's new secret is OTHER_KEY.
    let new = HostKeys { dhchap_key: Some(secret(OTHER_KEY)), ..Default::default() };
    t.subsystem.set_host_keys(HOSTNQN, new).expect("set keys");
    let old = host(HashId::Sha256, DhGroup::Null, false);
    auth_error(Controller::connect(t.addr, NQN, &old));
    let mut cfg = old.clone();
    cfg.dhchap_secret = Some(secret(OTHER_KEY));
    Controller::connect(t.addr, NQN, &cfg).expect("connect with the new key");
    // The controller made before the change authenticates its new I/O queue with the new key:
    // the old key no longer opens one.
    assert!(c.connect_io_queue(1).is_err(), "an I/O queue authenticated with the replaced key");
    // Keys removed: the host connects without authenticating.
    t.subsystem.set_host_keys(HOSTNQN, HostKeys::default()).expect("remove keys");
    let plain = HostConfig { dhchap_secret: None, ..old };
    Controller::connect(t.addr, NQN, &plain).expect("connect without keys");
    assert!(t
        .subsystem
        .set_host_keys("nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-00000000000f", HostKeys::default())
        .is_err());
}

/// A host on the same subsystem that needs no authentication.
const GOOD_HOST: &str = "nqn.2016-06.io.nvmf-rs:well-behaved";

/// One poll group (every connection shares it), deferred work on `runner`, `HOSTNQN` with
/// both keys and `GOOD_HOST` without.
fn one_group_target(runner: &Arc<WorkThread>) -> TestTarget {
    let spec = TargetSpec { poll_groups: 1, work_runner: Some(runner.clone()), ..Default::default() };
    let t = target_with(spec, true);
    t.subsystem.add_host(GOOD_HOST).expect("add host");
    t
}

/// Write a pattern, read it back and compare: `n` times (or until `stop`), returning each
/// I/O's latency.
fn verified_io(io: &mut nvmf::host::IoQueue, n: usize, stop: Option<&AtomicBool>) -> Vec<Duration> {
    let mut lat = Vec::new();
    let mut back = vec![0u8; 4096];
    for i in 0..n {
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            break;
        }
        let lba = (i as u64 % 1024) * 8;
        let data = pattern(i as u64, lba, 4096);
        let t0 = Instant::now();
        io.write(1, lba, 8, &data).expect("write");
        let t1 = Instant::now();
        io.read(1, lba, 8, &mut back).expect("read");
        lat.push(t1 - t0);
        lat.push(t1.elapsed());
        assert_eq!(back, data, "data read back at lba {lba}");
    }
    lat
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// 100 ffdhe8192 handshakes (from two threads) while a well-behaved host on the same poll
/// group does verified I/O. The exponentiations run on the work runner: 2 per handshake, all
/// counted there. The good host's p99 I/O latency must stay below the cost of one ffdhe8192
/// exponentiation measured here (generous: with the exponentiations on the poll group every
/// handshake would hold its I/O for two of them), and it must see fewer slow I/Os (above that
/// cost) than there were handshakes (each would cause at least one).
#[test]
fn ffdhe8192_handshakes_do_not_stall_io_on_the_same_poll_group() {
    const THREADS: usize = 2;
    const PER_THREAD: usize = 50;
    let runner = WorkThread::start();
    let t = one_group_target(&runner);
    let params = Arc::new(FfdheGroup::new(DhGroup::Ffdhe8192).expect("group"));
    let exp_cost = (0..3)
        .map(|_| {
            let s = Instant::now();
            std::hint::black_box(DhKeyPair::generate(&params));
            s.elapsed()
        })
        .min()
        .expect("timed");
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    let good = {
        let (addr, stop) = (t.addr, stop.clone());
        std::thread::spawn(move || {
            let cfg = HostConfig { hostnqn: GOOD_HOST.into(), kato_ms: 0, ..Default::default() };
            let mut c = Controller::connect(addr, NQN, &cfg).expect("good host connect");
            let mut io = c.connect_io_queue(1).expect("good host I/O queue");
            let _ = started_tx.send(());
            let lat = verified_io(&mut io, usize::MAX, Some(&stop));
            io.disconnect().expect("io disconnect");
            c.disconnect().expect("disconnect");
            lat
        })
    };
    started_rx.recv().expect("good host started");
    let begin = Instant::now();
    let handshakers: Vec<_> = (0..THREADS)
        .map(|_| {
            let addr = t.addr;
            std::thread::spawn(move || {
                let cfg = host(HashId::Sha512, DhGroup::Ffdhe8192, true);
                for _ in 0..PER_THREAD {
                    let mut c = Controller::connect(addr, NQN, &cfg).expect("ffdhe8192 handshake");
                    c.identify_controller().expect("identify after authentication");
                    c.disconnect().expect("disconnect");
                }
            })
        })
        .collect();
    for h in handshakers {
        h.join().expect("handshake thread");
    }
    let took = begin.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lat = good.join().expect("good host");
    lat.sort();
    let handshakes = THREADS * PER_THREAD;
    let (p50, p99, max) = (percentile(&lat, 0.5), percentile(&lat, 0.99), lat[lat.len() - 1]);
    let slow = lat.iter().filter(|l| **l >= exp_cost).count();
    println!(
        "{handshakes} ffdhe8192 handshakes in {took:?} (one exponentiation {exp_cost:?}); good host: {} I/Os, \
         p50 {p50:?}, p99 {p99:?}, max {max:?}, {slow} at or above one exponentiation",
        lat.len()
    );
    assert_eq!(runner.ran(), 2 * handshakes, "every exponentiation ran on the work runner");
    assert!(lat.len() >= 2 * handshakes, "the good host did I/O throughout ({} I/Os)", lat.len());
    assert!(p99 < exp_cost, "good host p99 {p99:?} not below one ffdhe8192 exponentiation ({exp_cost:?})");
    assert!(slow < handshakes, "{slow} I/Os took at least one exponentiation ({exp_cost:?})");
    assert!(t.wait_for(|t| t.subsystem.num_controllers() == 0 && t.connections() == 0), "all hosts gone");
    assert!(t.wait_for(|t| t.bufs_per_group[0].load(Ordering::Relaxed) == 0), "no buffer leaked");
}

/// A raw connection to the one-group target's admin queue that has negotiated ffdhe8192 and
/// asked for the Challenge (AUTH_Receive, CID 5), whose job the held runner parks.
fn challenge_waiting(t: &TestTarget, runner: &WorkThread) -> RawConnection {
    runner.hold();
    let (mut r, _) = raw_connect(t, 0, 0xffff);
    let neg = Message::Negotiate {
        tid: 1,
        sc_c: 0,
        hashes: vec![HashId::Sha256 as u8],
        dhgroups: vec![DhGroup::Ffdhe8192 as u8],
    }
    .to_bytes();
    let mut send = pdu::fabrics_sqe(FabricsType::AuthenticationSend);
    AuthCmd::dhchap(neg.len() as u32).write(&mut send);
    send.set_sgl1(SglDescriptor::in_capsule(0, neg.len() as u32));
    send.cid.set(4);
    r.send_capsule(&send, &neg).expect("send");
    assert!(r.recv_capsule_resp().expect("negotiate response").is_success());
    send_auth_receive(&mut r, 5);
    assert!(t.wait_for(|_| runner.parked() == 1), "the Challenge's exponentiation reached the runner");
    r
}

fn send_auth_receive(r: &mut RawConnection, cid: u16) {
    let mut recv = pdu::fabrics_sqe(FabricsType::AuthenticationReceive);
    AuthCmd::dhchap(4096).write(&mut recv);
    recv.set_sgl1(SglDescriptor::transport(4096));
    recv.cid.set(cid);
    r.send_capsule(&recv, &[]).expect("send");
}

/// The AUTH_Receive data and completion.
fn recv_auth_data(r: &mut RawConnection) -> (Vec<u8>, nvmf::spec::Cqe) {
    let (ch, bytes) = r.recv_pdu().expect("C2HData");
    assert_eq!(ch.pdu_type, pdu_type::C2H_DATA);
    (bytes[ch.pdo as usize..].to_vec(), r.recv_capsule_resp().expect("auth receive response"))
}

#[test]
fn io_goes_on_while_a_dh_job_waits() {
    let runner = WorkThread::start();
    let t = one_group_target(&runner);
    let mut r = challenge_waiting(&t, &runner);
    // The poll group serves the good host while the handshake's job has not run.
    let cfg = HostConfig { hostnqn: GOOD_HOST.into(), kato_ms: 0, ..Default::default() };
    let mut c = Controller::connect(t.addr, NQN, &cfg).expect("good host connect");
    let mut io = c.connect_io_queue(1).expect("good host I/O queue");
    assert_eq!(verified_io(&mut io, 100, None).len(), 200);
    assert_eq!((runner.parked(), runner.ran()), (1, 0), "the job is still waiting");
    // Once it runs, the Challenge arrives with the controller's 1024-byte DH value.
    runner.release();
    let (data, cqe) = recv_auth_data(&mut r);
    assert!(cqe.is_success(), "{:?}", cqe.status());
    match Message::parse(&data) {
        Ok(Message::Challenge { tid: 1, dhgid, c1, dhv, .. }) => {
            assert_eq!((dhgid, c1.len(), dhv.len()), (DhGroup::Ffdhe8192 as u8, 32, 1024));
        }
        m => panic!("expected the Challenge, got {m:?}"),
    }
    assert_eq!(runner.ran(), 1);
    io.disconnect().expect("io disconnect");
    c.disconnect().expect("disconnect");
}

#[test]
fn a_host_that_leaves_while_its_dh_job_waits_is_cleaned_up() {
    let runner = WorkThread::start();
    let t = one_group_target(&runner);
    let r = challenge_waiting(&t, &runner);
    r.close();
    assert!(t.wait_for(|t| t.subsystem.num_controllers() == 0), "controller torn down");
    // The connection and the AUTH_Receive's buffer wait for the job...
    assert_eq!(t.connections(), 1, "the closed connection stays until its job completes");
    assert_eq!(t.bufs_per_group[0].load(Ordering::Relaxed), 1, "the AUTH_Receive buffer is held");
    // ... and go when it has run; its result is dropped.
    runner.release();
    assert!(t.wait_for(|t| t.connections() == 0), "connection freed after its job");
    assert!(t.wait_for(|t| t.bufs_per_group[0].load(Ordering::Relaxed) == 0), "buffer returned");
    assert_eq!(runner.ran(), 1);
    connect_and_io(&t, &host(HashId::Sha256, DhGroup::Ffdhe8192, true));
}

#[test]
fn a_dh_job_the_runner_drops_fails_its_command() {
    let runner = WorkThread::start();
    let t = one_group_target(&runner);
    let mut r = challenge_waiting(&t, &runner);
    runner.discard();
    let cqe = r.recv_capsule_resp().expect("AUTH_Receive completion");
    let st = cqe.status();
    assert_eq!((st.sct(), st.sc()), (StatusCodeType::Generic as u8, GenericStatus::INTERNAL_ERROR));
    // The transaction cannot go on: the Reply finds no key pair and Success1 is AUTH_Failure1.
    r.close();
    assert!(t.wait_for(|t| t.connections() == 0 && t.bufs_per_group[0].load(Ordering::Relaxed) == 0));
    connect_and_io(&t, &host(HashId::Sha256, DhGroup::Ffdhe8192, false));
}

#[test]
fn auth_commands_while_a_dh_job_runs_fail_the_transaction() {
    let runner = WorkThread::start();
    let t = one_group_target(&runner);
    let mut r = challenge_waiting(&t, &runner);
    // A second AUTH_Receive before the first completed: AUTH_Failure1, then the close.
    send_auth_receive(&mut r, 6);
    let (data, cqe) = recv_auth_data(&mut r);
    assert!(cqe.is_success());
    assert_eq!(cqe.cid.get(), 6);
    assert_eq!(&data[..2], &[0x00, 0xf1], "AUTH_Failure1");
    assert_eq!(data[7], nvmf::auth::messages::failure::INCORRECT_MESSAGE);
    assert!(t.wait_for(|t| t.subsystem.num_controllers() == 0), "controller torn down");
    runner.release();
    assert!(t.wait_for(|t| t.connections() == 0 && t.bufs_per_group[0].load(Ordering::Relaxed) == 0));
    assert_eq!(runner.ran(), 1);
}
