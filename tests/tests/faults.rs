//! Faults: hosts that vanish, churn, keep-alive expiry, Disconnect and controller reset with I/O
//! in flight, backing devices that fail. Each test checks that only the faulty host is affected,
//! that nothing acknowledged is lost, and that the target gives back what the connection held
//! (poll-group connections and pool buffers back to their idle values). Loopback only, bounded in
//! count and time, no timing assertions (waits are bounded polls of a condition).

#![forbid(unsafe_code)]

use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
use nvme_driver::{Controller as PcieController, ControllerOptions};
use nvmf::bdev::{Bdev, FileBdev, MallocBdev, NvmeBdev};
use nvmf::host::{Controller, HostConfig, IoQueue, RawConnection};
use nvmf::spec::tcp::{pdu_type, R2THdr};
use nvmf::spec::{reg, Cqe, GenericStatus, MediaStatus, SglDescriptor, Sqe, StatusCodeType};
use nvmf_tests::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zerocopy::FromBytes;

/// A healthy host that must keep working while others misbehave (namespace `nsid`).
struct Bystander {
    _c: Controller,
    q: IoQueue,
    nsid: u32,
    n: u64,
}

impl Bystander {
    fn new(t: &TestTarget, nsid: u32) -> Self {
        let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("bystander connect");
        let q = c.connect_io_queue(1).expect("bystander io queue");
        Bystander { _c: c, q, nsid, n: 0 }
    }
    /// Write a block pattern and read it back.
    fn check(&mut self) {
        self.n += 1;
        let lba = 4096 + (self.n % 64) * 8; // clear of the LBAs the tests write
        let data = pattern(99 + self.n, lba, 4096);
        self.q.write(self.nsid, lba, 8, &data).expect("bystander write");
        let mut back = vec![0u8; 4096];
        self.q.read(self.nsid, lba, 8, &mut back).expect("bystander read");
        assert_eq!(back, data, "bystander data");
    }
}

fn bufs(t: &TestTarget) -> usize {
    t.bufs_per_group.iter().map(|b| b.load(Ordering::Relaxed)).sum()
}

/// Wait (bounded) until the target holds exactly `conns` connections and no pool buffer.
fn assert_idle(t: &TestTarget, conns: usize, what: &str) {
    let ok = t.wait_for(|t| t.connections() == conns && bufs(t) == 0);
    assert!(ok, "{what}: {} connections (idle: {conns}), {} pool buffers in use (idle: 0)", t.connections(), bufs(t));
}

/// An I/O queue on a raw connection, for controller `cntlid` (which must be enabled).
fn raw_io_queue(t: &TestTarget, cntlid: u16, qid: u16) -> RawConnection {
    let mut r = RawConnection::connect(t.addr).expect("connect");
    r.icreq(false, false).expect("icreq");
    let cqe = r.fabrics_connect(qid, 127, cntlid, NQN, &HostConfig::default()).expect("connect");
    assert!(cqe.is_success(), "I/O queue connect: {:?}", cqe.status());
    r
}

fn rw_sqe(opcode: u8, cid: u16, nsid: u32, lba: u64, nlb: u32, sgl: SglDescriptor) -> Sqe {
    let mut sqe = Sqe { opcode, flags: 0x40, cid: cid.into(), nsid: nsid.into(), ..Default::default() };
    sqe.set_slba(lba);
    sqe.cdw12.set(nlb - 1);
    sqe.set_sgl1(sgl);
    sqe
}

/// Close a raw connection with a TCP reset: the host vanished.
fn vanish(r: RawConnection) {
    set_linger_zero(r.stream());
    drop(r);
}

/// What a writer sent: per LBA, the seed of the last acknowledged write and of the last write
/// submitted (which may have reached the disk without its completion reaching the host).
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<u64, u64>,
    submitted: BTreeMap<u64, u64>,
}

type Shared = Arc<Mutex<Ledger>>;

/// Read back every LBA with an acknowledged write (8 blocks of 512 bytes) and compare: it holds
/// that write, or a later one whose completion never arrived; never anything older.
fn verify_acked(q: &mut IoQueue, ledger: &Ledger) {
    let mut back = vec![0u8; 4096];
    for (&lba, &seed) in &ledger.acked {
        q.read(1, lba, 8, &mut back).expect("read back");
        if back == pattern(seed, lba, 4096) {
            continue;
        }
        let later = ledger.submitted.get(&lba).copied().filter(|&s| s > seed);
        assert!(later.is_some_and(|s| back == pattern(s, lba, 4096)), "acknowledged write at LBA {lba} lost");
    }
}

/// Pipelined 4 KiB writes (16 in flight) at LBAs `base, base + 8, ...`, wrapping after `span`
/// writes (so two writes to one LBA are never in flight together), until the connection fails,
/// `stop` is set or `limit` writes completed. Every completion must be a success or one of
/// `allowed` (SCT 0) statuses. Returns how many writes were acknowledged.
#[allow(clippy::too_many_arguments)]
fn write_until_failure(
    q: &mut IoQueue,
    base: u64,
    span: u64,
    seed: u64,
    ledger: &Shared,
    stop: &AtomicBool,
    limit: usize,
    allowed: &[u8],
) -> usize {
    let mut inflight: BTreeMap<u16, u64> = BTreeMap::new();
    let mut n = 0u64;
    let mut ok = 0;
    loop {
        while !stop.load(Ordering::Relaxed) && inflight.len() < 16 && ok < limit {
            let lba = base + (n % span) * 8;
            ledger.lock().unwrap().submitted.insert(lba, seed + n);
            match q.submit_write(1, lba, 8, &pattern(seed + n, lba, 4096)) {
                Ok(cid) => {
                    inflight.insert(cid, n);
                    n += 1;
                }
                Err(_) => return ok,
            }
        }
        if inflight.is_empty() {
            return ok;
        }
        let r = q.poll(|cid, cqe: Cqe, _| {
            let Some(i) = inflight.remove(&cid) else { return };
            if cqe.is_success() {
                let lba = base + (i % span) * 8;
                ledger.lock().unwrap().acked.insert(lba, seed + i);
                ok += 1;
            } else {
                let st = cqe.status();
                assert!(st.sct() == 0 && allowed.contains(&st.sc()), "write completed with {st:?}");
            }
        });
        if r.is_err() {
            return ok;
        }
    }
}

#[test]
fn host_reset_during_r2t_frees_its_buffers() {
    let t = TestTarget::start(TargetSpec::default());
    let mut b = Bystander::new(&t, 1);
    let c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    assert_idle(&t, 3, "before");
    for round in 0..3u16 {
        let mut r = raw_io_queue(&t, c.cntlid(), 1 + round);
        // 16 writes of 128 KiB through R2T: the target lends each a pool buffer and asks for its
        // data; the host sends part of the first one's data and vanishes.
        let len = 128 * 1024;
        for cid in 0..16u16 {
            let sqe = rw_sqe(0x01, cid, 1, cid as u64 * 256, 256, SglDescriptor::transport(len));
            r.send_capsule(&sqe, &[]).expect("send write");
        }
        let mut ttag = 0;
        for i in 0..16 {
            let (ch, bytes) = r.recv_pdu().expect("R2T");
            assert_eq!(ch.pdu_type, pdu_type::R2T, "expected an R2T");
            if i == 0 {
                ttag = R2THdr::read_from_prefix(&bytes).expect("R2T header").0.ttag.get();
            }
        }
        assert!(t.wait_for(|t| bufs(t) >= 16), "the target holds a buffer per R2T");
        r.send_h2c_data(0, ttag, 0, &pattern(1, 0, 8192), false).expect("partial H2CData");
        vanish(r);
        assert_idle(&t, 3, "after a host reset during R2T");
        b.check();
    }
    assert_eq!(t.subsystem.num_controllers(), 2, "only the vanished I/O queues went away");
}

#[test]
fn host_reset_during_c2h_transfer_frees_the_connection() {
    let t = TestTarget::start(TargetSpec::default());
    let mut b = Bystander::new(&t, 1);
    let c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    assert_idle(&t, 3, "before");
    for round in 0..3u16 {
        let mut r = raw_io_queue(&t, c.cntlid(), 1 + round);
        // 24 reads of 1 MiB: far more than the socket buffers hold, so the target is still
        // sending when the host reads part of the first C2HData and vanishes.
        for cid in 0..24u16 {
            let sqe = rw_sqe(0x02, cid, 1, cid as u64 * 2048, 2048, SglDescriptor::transport(1 << 20));
            r.send_capsule(&sqe, &[]).expect("send read");
        }
        let mut head = [0u8; 8 + 16 + 4096];
        let mut s: &TcpStream = r.stream();
        s.read_exact(&mut head).expect("start of the data");
        assert_eq!(head[0], pdu_type::C2H_DATA, "expected C2HData");
        vanish(r);
        assert_idle(&t, 3, "after a host reset during a C2H transfer");
        b.check();
    }
}

#[test]
fn thousand_connections_churn_while_two_hosts_run_verified_io() {
    let t = TestTarget::start(TargetSpec::default());
    let stop = Arc::new(AtomicBool::new(false));
    let cfg = HostConfig::default();
    let hosts: Vec<_> = (0..2u64)
        .map(|h| {
            let (addr, stop) = (t.addr, stop.clone());
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let mut c = Controller::connect(addr, NQN, &cfg).expect("host connect");
                let mut q = c.connect_io_queue(1).expect("host io queue");
                let mut n = 0u64;
                let mut back = vec![0u8; 4096];
                while !stop.load(Ordering::Relaxed) || n < 10 {
                    let lba = h * 100_000 + (n % 512) * 8;
                    let data = pattern(h * 1_000_000 + n, lba, 4096);
                    q.write(1, lba, 8, &data).expect("verified write");
                    q.read(1, lba, 8, &mut back).expect("verified read");
                    assert!(back == data, "host {h}: data mismatch at LBA {lba}");
                    n += 1;
                }
                c.keep_alive().expect("host admin queue still up");
                (c, q, n)
            })
        })
        .collect();
    let icreq = nvmf::host::pdu::icreq(false, false, 0, 0);
    let icreq = zerocopy::IntoBytes::as_bytes(&icreq).to_vec();
    for i in 0..1000 {
        match i % 5 {
            // Connect and close at once.
            0 => drop(TcpStream::connect(t.addr).expect("connect")),
            // Half an ICReq, then a reset.
            1 => {
                let mut r = RawConnection::connect(t.addr).expect("connect");
                r.send(&icreq[..40 + i % 60]).expect("partial ICReq");
                vanish(r);
            }
            // ICReq/ICResp, then close.
            2 => {
                let mut r = RawConnection::connect(t.addr).expect("connect");
                r.icreq(false, false).expect("icreq");
                r.close();
            }
            // A whole admin Connect (a controller is created), then a reset.
            3 => {
                let mut r = RawConnection::connect(t.addr).expect("connect");
                r.icreq(false, false).expect("icreq");
                let cqe = r.fabrics_connect(0, 31, 0xffff, NQN, &cfg).expect("admin connect");
                assert!(cqe.is_success());
                vanish(r);
            }
            // A Connect capsule cut short, then a reset.
            _ => {
                let mut r = RawConnection::connect(t.addr).expect("connect");
                r.icreq(false, false).expect("icreq");
                let mut out = Vec::new();
                let sqe = nvmf::host::pdu::connect_sqe(0, 31, 0);
                let data = nvmf::host::pdu::connect_data(&cfg.hostid, 0xffff, NQN, &cfg.hostnqn);
                nvmf::host::pdu::encode_capsule_cmd(
                    &mut out,
                    &sqe,
                    zerocopy::IntoBytes::as_bytes(&data),
                    false,
                    false,
                    0,
                );
                r.send(&out[..72 + (i % 900)]).expect("partial Connect");
                vanish(r);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let hosts: Vec<_> = hosts.into_iter().map(|h| h.join().expect("a host saw an error")).collect();
    assert!(hosts.iter().all(|(_, _, n)| *n >= 10));
    assert_idle(&t, 4, "after 1,000 connections came and went");
    assert!(t.wait_for(|t| t.subsystem.num_controllers() == 2), "controllers of closed connections remain");
}

#[test]
fn keep_alive_expiry_with_io_in_flight_loses_nothing_acknowledged() {
    let t = TestTarget::start(TargetSpec::default());
    let mut b = Bystander::new(&t, 1);
    assert_idle(&t, 2, "before");
    // KATO 500 ms and no Keep Alive: I/O does not count as keep-alive traffic (no TBKAS), so
    // the controller expires while writes are in flight.
    let cfg = HostConfig { kato_ms: 500, ..Default::default() };
    let mut c = Controller::connect(t.addr, NQN, &cfg).expect("connect");
    let mut q = c.connect_io_queue(1).expect("io queue");
    let ledger: Shared = Arc::default();
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut total = 0;
    let mut pass = 0u64;
    while Instant::now() < deadline {
        // Each pass uses higher seeds, so "a later write" stays a larger seed in the ledger.
        pass += 1;
        let seed = 1 + pass * 1_000_000;
        let n = write_until_failure(
            &mut q,
            0,
            256,
            seed,
            &ledger,
            &stop,
            2000,
            &[GenericStatus::KEEP_ALIVE_EXPIRED, GenericStatus::ABORTED_SQ_DELETION],
        );
        total += n;
        if n < 2000 {
            break; // the connection went away
        }
    }
    eprintln!("keep-alive expiry: {total} writes acknowledged before the connection closed");
    assert!(c.keep_alive().is_err(), "the expired controller's admin queue is closed");
    assert!(total > 0, "writes were acknowledged before the expiry");
    assert_idle(&t, 2, "after the keep-alive expiry");
    assert_eq!(t.subsystem.num_controllers(), 1, "the expired controller is gone");
    b.check();
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("reconnect");
    let mut q = c.connect_io_queue(1).expect("io queue");
    verify_acked(&mut q, &ledger.lock().unwrap());
}

#[test]
fn disconnect_with_io_outstanding_loses_nothing_acknowledged() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    assert_idle(&t, 1, "before");
    let mut acked = BTreeMap::new();
    for round in 0..3u64 {
        let mut r = raw_io_queue(&t, c.cntlid(), 1);
        // 32 in-capsule writes and 8 through R2T, then a Disconnect, all in one burst.
        let mut burst = Vec::new();
        let mut cids = BTreeMap::new();
        for cid in 0..40u16 {
            let lba = round * 1000 + cid as u64 * 8;
            let seed = round * 100 + cid as u64;
            let data = pattern(seed, lba, 4096);
            let sgl = if cid < 32 { SglDescriptor::in_capsule(0, 4096) } else { SglDescriptor::transport(4096) };
            let sqe = rw_sqe(0x01, cid, 1, lba, 8, sgl);
            let d: &[u8] = if cid < 32 { &data } else { &[] };
            nvmf::host::pdu::encode_capsule_cmd(&mut burst, &sqe, d, false, false, 0);
            cids.insert(cid, (lba, seed));
        }
        let mut disc = nvmf::host::pdu::fabrics_sqe(nvmf::spec::FabricsType::Disconnect);
        disc.cid.set(999);
        nvmf::host::pdu::encode_capsule_cmd(&mut burst, &disc, &[], false, false, 0);
        r.send(&burst).expect("send burst");
        // Responses until the target closes: completions, R2Ts (left unanswered), the
        // Disconnect's success.
        let mut disconnected = false;
        while let Ok((ch, bytes)) = r.recv_pdu() {
            match ch.pdu_type {
                pdu_type::CAPSULE_RESP => {
                    let cqe = nvmf::spec::tcp::CapsuleRespHdr::read_from_prefix(&bytes).expect("resp").0.cqe;
                    let cid = cqe.cid.get();
                    if cid == 999 {
                        assert!(cqe.is_success(), "Disconnect: {:?}", cqe.status());
                        disconnected = true;
                    } else if cqe.is_success() {
                        let (lba, seed) = cids[&cid];
                        acked.insert(lba, seed);
                    } else {
                        assert_eq!(
                            cqe.status().sc(),
                            GenericStatus::ABORTED_SQ_DELETION,
                            "CID {cid}: {:?}",
                            cqe.status()
                        );
                    }
                }
                pdu_type::R2T => {}
                t => panic!("unexpected PDU type {t:#04x}"),
            }
        }
        assert!(disconnected, "no completion for the Disconnect");
        eprintln!("round {round}: Disconnect completed; {} of 40 writes acknowledged in all so far", acked.len());
        r.expect_closed().expect("closed after Disconnect");
        assert_idle(&t, 1, "after Disconnect with I/O outstanding");
    }
    // The admin queue is unaffected; the QID is free again; acknowledged writes are there.
    c.keep_alive().expect("admin queue");
    let mut q = c.connect_io_queue(1).expect("qid 1 again");
    let mut back = vec![0u8; 4096];
    for (&lba, &seed) in &acked {
        q.read(1, lba, 8, &mut back).expect("read back");
        assert!(back == pattern(seed, lba, 4096), "acknowledged write at LBA {lba} lost");
    }
}

#[test]
fn controller_reset_with_io_in_flight_loses_nothing_acknowledged() {
    let t = TestTarget::start(TargetSpec::default());
    let mut b = Bystander::new(&t, 1);
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    assert_idle(&t, 3, "before");
    let ledger: Shared = Arc::default();
    for round in 0..3u64 {
        let mut q = c.connect_io_queue(1).expect("io queue");
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (ledger, stop) = (ledger.clone(), stop.clone());
            std::thread::spawn(move || {
                write_until_failure(
                    &mut q,
                    10_000 * round,
                    512,
                    1_000_000 * round,
                    &ledger,
                    &stop,
                    usize::MAX,
                    &[GenericStatus::ABORTED_SQ_DELETION],
                )
            })
        };
        // Reset once writes are flowing.
        let before = ledger.lock().unwrap().acked.len();
        let flowing = t.wait_for(|_| ledger.lock().unwrap().acked.len() >= before + 50);
        assert!(flowing, "writes are being acknowledged");
        let cc = c.property_get(reg::CC, false).expect("CC");
        c.property_set(reg::CC, false, cc & !1).expect("CC.EN = 0");
        assert_eq!(c.property_get(reg::CSTS, false).expect("CSTS") & 1, 0, "CSTS.RDY cleared by the reset");
        let n = writer.join().expect("writer: unexpected status");
        eprintln!("round {round}: {n} writes acknowledged before the reset closed the I/O queue");
        assert!(n > 0);
        assert_idle(&t, 3, "after the reset");
        c.property_set(reg::CC, false, cc).expect("CC.EN = 1");
        assert_eq!(c.property_get(reg::CSTS, false).expect("CSTS") & 1, 1, "CSTS.RDY after re-enable");
        stop.store(true, Ordering::Relaxed);
        b.check();
    }
    let mut q = c.connect_io_queue(1).expect("io queue after the resets");
    verify_acked(&mut q, &ledger.lock().unwrap());
}

fn emulated() -> (Arc<EmulatedController>, Arc<PcieController>) {
    let emu = EmulatedController::new(EmulatorConfig { namespaces: vec![(512, 65536)], mdts: 9, ..Default::default() });
    let ctrl = Arc::new(PcieController::new_emulated(&emu, ControllerOptions::default()).expect("bring-up"));
    (emu, ctrl)
}

#[test]
fn media_errors_from_the_device_reach_the_host_and_the_target_keeps_serving() {
    let (emu, ctrl) = emulated();
    let bdevs: Vec<Arc<dyn Bdev>> = vec![
        Arc::new(NvmeBdev::new("Nvme0n1", ctrl, 1).expect("nvme bdev")),
        Arc::new(MallocBdev::new("Malloc0", 8192, 512).expect("malloc")),
    ];
    let t = TestTarget::start(TargetSpec { bdevs, ..Default::default() });
    let mut b = Bystander::new(&t, 2);
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    let mut q = c.connect_io_queue(1).expect("io queue");
    let sct_media = StatusCodeType::MediaDataIntegrity as u8;
    for i in 0..20u64 {
        let lba = i * 64;
        let data = pattern(i, lba, 8192);
        q.write(1, lba, 16, &data).expect("write");
        // A bad block inside a 16-block read: Unrecovered Read Error (SCT 2h, SC 81h).
        emu.inject_media_error(1, lba + (i % 16), 1);
        let mut back = vec![0u8; 8192];
        let st = q.read(1, lba, 16, &mut back).expect_err("media error").status().expect("an NVMe status");
        assert_eq!((st.sct(), st.sc()), (sct_media, MediaStatus::UNRECOVERED_READ_ERROR), "read {i}");
        // The same queue keeps working, and the data is intact.
        q.read(1, lba, 16, &mut back).expect("read after the error");
        assert!(back == data, "data after a media error");
        // A failing write: Write Fault (SCT 2h, SC 80h).
        emu.inject_media_error(1, lba + 32, 1);
        let st = q.write(1, lba + 32, 1, &[0xa5; 512]).expect_err("write fault").status().expect("an NVMe status");
        assert_eq!((st.sct(), st.sc()), (sct_media, MediaStatus::WRITE_FAULT), "write {i}");
        b.check();
    }
    c.keep_alive().expect("admin queue");
    assert_idle(&t, 4, "after the media errors");
}

/// A 1 MiB tmpfs mounted for the test, unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount() -> Result<SmallFs, String> {
        let dir = std::env::temp_dir().join(format!("nvmf-faults-fullfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "nvmf-faults"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("run mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("mount -t tmpfs: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(SmallFs(dir))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn file_bdev_on_a_full_filesystem_returns_capacity_exceeded_and_keeps_serving() {
    let fs = match SmallFs::mount() {
        Ok(fs) => fs,
        Err(e) => {
            nvmf_test_support::skip(&format!(
                "a full filesystem needs a small tmpfs, which this host cannot mount (needs root): {e}"
            ));
            return;
        }
    };
    // An 8 MiB sparse file on a 1 MiB filesystem: writes fail once the space is used up.
    let path = fs.0.join("disk.img");
    std::fs::File::create(&path).and_then(|f| f.set_len(8 << 20)).expect("create the sparse file");
    let bdevs: Vec<Arc<dyn Bdev>> = vec![
        Arc::new(FileBdev::open("File0", &path, 512).expect("file bdev")),
        Arc::new(MallocBdev::new("Malloc0", 8192, 512).expect("malloc")),
    ];
    let t = TestTarget::start(TargetSpec { bdevs, ..Default::default() });
    let mut b = Bystander::new(&t, 2);
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    let mut q = c.connect_io_queue(1).expect("io queue");
    let mut written = Vec::new();
    let mut full = None;
    for i in 0..64u64 {
        let lba = i * 256; // 128 KiB each
        let data = pattern(i, lba, 128 * 1024);
        match q.write(1, lba, 256, &data) {
            Ok(()) => written.push((lba, data)),
            Err(e) => {
                full = Some(e.status().expect("an NVMe status, not a dropped connection"));
                break;
            }
        }
        b.check();
    }
    let st = full.expect("8 MiB of writes fit a 1 MiB filesystem?");
    assert_eq!((st.sct(), st.sc()), (0, GenericStatus::CAPACITY_EXCEEDED), "status on a full filesystem: {st:?}");
    assert!(st.is_dnr(), "Capacity Exceeded is not worth retrying");
    // The target keeps serving: what was written reads back, the other namespace works, and
    // overwriting blocks that already have space succeeds.
    let mut back = vec![0u8; 128 * 1024];
    for (lba, data) in &written {
        q.read(1, *lba, 256, &mut back).expect("read back");
        assert!(&back == data, "LBA {lba}");
    }
    if let Some((lba, _)) = written.first() {
        q.write(1, *lba, 256, &pattern(77, *lba, 128 * 1024)).expect("overwrite allocated blocks");
    }
    b.check();
    c.keep_alive().expect("admin queue");
    assert_idle(&t, 4, "after the full-filesystem errors");
    drop(q);
    drop(c);
    drop(b);
    drop(t);
    drop(fs);
}
