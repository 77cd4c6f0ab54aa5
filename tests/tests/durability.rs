//! Durability the host asked for (issue 12): Force Unit Access, the Volatile Write Cache
//! feature, Flush of every namespace, the shutdown flush. File bdevs count their sync points
//! (`FileBdev::sync_points`: fdatasync calls and O_DSYNC writes), so each test proves that a
//! write the host asked to be durable took a sync point before its completion arrived, and that
//! plain writes took none.

#![forbid(unsafe_code)]

use nvmf::bdev::{Bdev, BdevChannel, BdevCompletion, BdevError, BdevIo, BdevOp, BdevStatus, FileBdev, MallocBdev};
use nvmf::host::{Controller, HostConfig, IoQueue};
use nvmf::spec::fabrics::DISCOVERY_NQN;
use nvmf::spec::{fid, reg, shn, shst, Cc, Csts, GenericStatus, NvmOpcode, Sqe, CDW12_FUA};
use nvmf_tests::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A 4 MiB file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!("nvmf-durability-{}-{tag}", std::process::id()));
        std::fs::write(&p, vec![0u8; 4 << 20]).expect("create backing file");
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn file_bdev(name: &str, f: &TempFile) -> Arc<FileBdev> {
    Arc::new(FileBdev::open(name, &f.0, 512).expect("file bdev"))
}

fn target(bdevs: Vec<Arc<dyn Bdev>>) -> TestTarget {
    TestTarget::start(TargetSpec { bdevs, ..Default::default() })
}

fn connect(t: &TestTarget) -> (Controller, IoQueue) {
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    let q = c.connect_io_queue(1).expect("io queue");
    (c, q)
}

fn write_sqe(opcode: NvmOpcode, nsid: u32, slba: u64, nlb: u32, fua: bool) -> Sqe {
    let mut sqe = Sqe { opcode: opcode as u8, ..Default::default() };
    sqe.nsid.set(nsid);
    sqe.set_slba(slba);
    sqe.cdw12.set((nlb - 1) | if fua { CDW12_FUA } else { 0 });
    sqe
}

fn fua_write(q: &mut IoQueue, nsid: u32, slba: u64, data: &[u8]) {
    let cqe = q
        .raw(write_sqe(NvmOpcode::Write, nsid, slba, (data.len() / 512) as u32, true), Some(data), None)
        .expect("fua write");
    assert!(cqe.is_success(), "FUA write: {:?}", cqe.status());
}

fn read_back(q: &mut IoQueue, nsid: u32, slba: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    q.read(nsid, slba, (len / 512) as u32, &mut buf).expect("read");
    buf
}

#[test]
fn fua_writes_take_a_sync_point_before_completion_plain_writes_do_not() {
    let f = TempFile::new("fua");
    let file = file_bdev("File0", &f);
    let t = target(vec![file.clone()]);
    let (_c, mut q) = connect(&t);
    let data = pattern(1, 0, 8 * 512);
    for i in 0..4 {
        q.write(1, i * 8, 8, &data).expect("plain write");
    }
    q.write_zeroes(1, 64, 8).expect("plain write zeroes");
    assert_eq!(file.sync_points(), 0, "plain writes stay in the page cache");
    // Each FUA write is durable before its completion comes back.
    for i in 0..3u64 {
        fua_write(&mut q, 1, 100 + i * 8, &data);
        assert_eq!(file.sync_points(), i + 1);
    }
    assert_eq!(read_back(&mut q, 1, 100, 8 * 512), data);
    let cqe = q.raw(write_sqe(NvmOpcode::WriteZeroes, 1, 100, 8, true), None, None).expect("fua write zeroes");
    assert!(cqe.is_success());
    assert_eq!(file.sync_points(), 4);
    assert_eq!(read_back(&mut q, 1, 100, 8 * 512), vec![0; 8 * 512]);
    // The data is in the file itself.
    fua_write(&mut q, 1, 200, &data);
    assert_eq!(std::fs::read(&f.0).expect("read file")[200 * 512..208 * 512], data[..]);
}

#[test]
fn volatile_write_cache_off_writes_through_for_that_controller_only() {
    let f = TempFile::new("vwc");
    let file = file_bdev("File0", &f);
    let t = target(vec![file.clone()]);
    let (mut c, mut q) = connect(&t);
    let (mut other, mut other_q) = connect(&t);
    let id = c.identify_controller().expect("identify");
    assert_eq!(id.vwc, 0b111, "VWC present, Flush NSID FFFFFFFFh supported");
    assert_eq!(c.get_features(fid::VOLATILE_WRITE_CACHE, 0).expect("get vwc"), 1, "WCE on by default");
    let data = pattern(2, 0, 4 * 512);
    q.write(1, 0, 4, &data).expect("write");
    assert_eq!(file.sync_points(), 0);

    c.set_features(fid::VOLATILE_WRITE_CACHE, 0).expect("set vwc off");
    assert_eq!(c.get_features(fid::VOLATILE_WRITE_CACHE, 0).expect("get vwc"), 0);
    // Every write of this controller is now written through: one sync point each.
    for i in 1..=3u64 {
        q.write(1, i * 4, 4, &data).expect("write-through write");
        assert_eq!(file.sync_points(), i);
    }
    q.write_zeroes(1, 40, 4).expect("write-through write zeroes");
    assert_eq!(file.sync_points(), 4);
    // The feature is the controller's: the other host's writes still use the cache.
    assert_eq!(other.get_features(fid::VOLATILE_WRITE_CACHE, 0).expect("get vwc"), 1);
    other_q.write(1, 80, 4, &data).expect("other host's write");
    assert_eq!(file.sync_points(), 4);

    c.set_features(fid::VOLATILE_WRITE_CACHE, 1).expect("set vwc on");
    q.write(1, 0, 4, &data).expect("cached write");
    assert_eq!(file.sync_points(), 4);
    assert_eq!(read_back(&mut q, 1, 12, 4 * 512), data);
}

#[test]
fn volatile_write_cache_feature_is_absent_without_a_cache() {
    let t = target(vec![Arc::new(MallocBdev::new("Malloc0", 8192, 512).expect("malloc"))]);
    let (mut c, mut q) = connect(&t);
    assert_eq!(c.identify_controller().expect("identify").vwc, 0);
    for r in [c.get_features(fid::VOLATILE_WRITE_CACHE, 0), c.set_features(fid::VOLATILE_WRITE_CACHE, 0)] {
        let e = r.expect_err("no volatile write cache: the feature does not exist");
        assert_eq!(e.status().expect("status").sc(), GenericStatus::INVALID_FIELD);
    }
    // Flush of every namespace has nothing to do and succeeds; a FUA write is just a write.
    q.flush(0xffff_ffff).expect("flush all");
    let data = pattern(3, 0, 512);
    fua_write(&mut q, 1, 5, &data);
    assert_eq!(read_back(&mut q, 1, 5, 512), data);
}

#[test]
fn flush_with_nsid_ffffffff_flushes_every_namespace() {
    let (f1, f2) = (TempFile::new("all-1"), TempFile::new("all-2"));
    let (a, b) = (file_bdev("File0", &f1), file_bdev("File1", &f2));
    let malloc: Arc<dyn Bdev> = Arc::new(MallocBdev::new("Malloc0", 8192, 512).expect("malloc"));
    let t = target(vec![a.clone(), malloc, b.clone()]);
    let (_c, mut q) = connect(&t);
    q.flush(1).expect("flush namespace 1");
    assert_eq!((a.sync_points(), b.sync_points()), (1, 0));
    q.flush(3).expect("flush namespace 3");
    assert_eq!((a.sync_points(), b.sync_points()), (1, 1));
    // One command, one completion, after both files were synced.
    for round in 2..5 {
        q.flush(0xffff_ffff).expect("flush all");
        assert_eq!((a.sync_points(), b.sync_points()), (round, round));
    }
    // Pipelined with other I/O: each command still gets exactly one completion.
    let data = pattern(4, 0, 512);
    let flush_all = {
        let mut sqe = Sqe { opcode: NvmOpcode::Flush as u8, ..Default::default() };
        sqe.nsid.set(0xffff_ffff);
        sqe
    };
    let mut cids = Vec::new();
    for i in 0..8 {
        cids.push(q.submit_write(1, i, 1, &data).expect("submit write"));
        cids.push(q.submit(flush_all, None, 0).expect("submit flush all"));
    }
    let mut done = Vec::new();
    while done.len() < cids.len() {
        q.poll(|cid, cqe, _| {
            assert!(cqe.is_success(), "cid {cid}: {:?}", cqe.status());
            done.push(cid);
        })
        .expect("poll");
    }
    done.sort_unstable();
    cids.sort_unstable();
    assert_eq!(done, cids);
    assert_eq!((a.sync_points(), b.sync_points()), (12, 12));
}

#[test]
fn shutdown_notification_flushes_every_namespace_before_shutdown_complete() {
    let (f1, f2) = (TempFile::new("shn-1"), TempFile::new("shn-2"));
    let (a, b) = (file_bdev("File0", &f1), file_bdev("File1", &f2));
    let t = target(vec![a.clone(), b.clone()]);
    let (mut c, mut q) = connect(&t);
    let data = pattern(5, 0, 4096);
    q.write(1, 0, 8, &data).expect("write");
    q.write(2, 0, 8, &data).expect("write");
    assert_eq!((a.sync_points(), b.sync_points()), (0, 0));
    // CSTS.SHST reads 10b only once both files were synced (through the poll group's channels,
    // not a blocking flush on the poll thread).
    c.shutdown().expect("shutdown");
    assert_eq!((a.sync_points(), b.sync_points()), (1, 1));
}

#[test]
fn discovery_controller_without_keep_alive_gets_the_default_timeout() {
    let t = TestTarget::start(TargetSpec::default());
    let cfg = HostConfig { kato_ms: 0, ..Default::default() };
    let mut d = Controller::connect(t.addr, DISCOVERY_NQN, &cfg).expect("discovery connect");
    assert_eq!(d.get_features(fid::KEEP_ALIVE_TIMER, 0).expect("get kato"), 120_000);
    // Turning it off later does not disable it either.
    d.set_features(fid::KEEP_ALIVE_TIMER, 0).expect("set kato");
    assert_eq!(d.get_features(fid::KEEP_ALIVE_TIMER, 0).expect("get kato"), 120_000);
    // An I/O controller may run without keep-alive (KATO 0) as the host asked.
    let mut c = Controller::connect(t.addr, NQN, &cfg).expect("connect");
    assert_eq!(c.get_features(fid::KEEP_ALIVE_TIMER, 0).expect("get kato"), 0);
}

/// A bdev with a volatile write cache whose Flushes stay outstanding until the test opens its
/// gate: shows what the target does while a flush is in progress. Other I/O completes at once.
struct GatedFlushBdev {
    open: Arc<AtomicBool>,
    flushes: Arc<AtomicUsize>,
}

struct GatedChannel {
    open: Arc<AtomicBool>,
    flushes: Arc<AtomicUsize>,
    held: Vec<BdevCompletion>,
    done: Vec<BdevCompletion>,
}

impl Bdev for GatedFlushBdev {
    fn name(&self) -> &str {
        "Gated0"
    }
    fn product_name(&self) -> &'static str {
        "Gated disk"
    }
    fn block_size(&self) -> u32 {
        512
    }
    fn num_blocks(&self) -> u64 {
        1024
    }
    fn supports(&self, op: BdevOp) -> bool {
        op != BdevOp::Unmap
    }
    fn volatile_write_cache(&self) -> bool {
        true
    }
    fn open_channel(&self) -> Result<Box<dyn BdevChannel>, BdevError> {
        let (open, flushes) = (self.open.clone(), self.flushes.clone());
        Ok(Box::new(GatedChannel { open, flushes, held: Vec::new(), done: Vec::new() }))
    }
}

impl BdevChannel for GatedChannel {
    fn submit(&mut self, io: BdevIo) {
        let c = BdevCompletion { tag: io.tag, status: BdevStatus::Success, buf: io.buf };
        if io.op == BdevOp::Flush {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            self.held.push(c);
        } else {
            self.done.push(c);
        }
    }
    fn poll(&mut self, out: &mut Vec<BdevCompletion>) -> usize {
        if self.open.load(Ordering::SeqCst) {
            self.done.append(&mut self.held);
        }
        let n = self.done.len();
        out.append(&mut self.done);
        n
    }
    fn outstanding(&self) -> usize {
        self.held.len() + self.done.len()
    }
}

#[test]
fn shutdown_flush_does_not_block_the_poll_group() {
    let open = Arc::new(AtomicBool::new(false));
    let flushes = Arc::new(AtomicUsize::new(0));
    let gated: Arc<dyn Bdev> = Arc::new(GatedFlushBdev { open: open.clone(), flushes: flushes.clone() });
    let malloc: Arc<dyn Bdev> = Arc::new(MallocBdev::new("Malloc0", 8192, 512).expect("malloc"));
    // One poll group: the shutting-down controller and the bystander share its thread.
    let t = TestTarget::start(TargetSpec { poll_groups: 1, bdevs: vec![gated, malloc], ..Default::default() });
    let (mut c, _q) = connect(&t);
    let (_other, mut bystander) = connect(&t);
    let cc = Cc(c.property_get(reg::CC, false).expect("CC") as u32).with_shn(shn::NORMAL);
    c.property_set(reg::CC, false, cc.0 as u64).expect("CC.SHN = 01b");
    assert_eq!(flushes.load(Ordering::SeqCst), 1, "the shutdown flushed the namespace with a cache");
    // While the flush is outstanding: SHST reads 01b (processing) and the poll group keeps
    // serving the other host.
    for lba in 0..50 {
        let csts = Csts(c.property_get(reg::CSTS, false).expect("CSTS") as u32);
        assert_eq!(csts.shst(), shst::OCCURRING, "shutdown must wait for the flush");
        let data = pattern(6, lba, 512);
        bystander.write(2, lba, 1, &data).expect("bystander write");
        assert_eq!(read_back(&mut bystander, 2, lba, 512), data);
    }
    open.store(true, Ordering::SeqCst);
    c.wait_csts(std::time::Duration::from_secs(10), |c| c.shst() == shst::COMPLETE, "SHST complete")
        .expect("shutdown completes once flushed");
}
