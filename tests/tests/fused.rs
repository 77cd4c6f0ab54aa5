//! Fused Compare and Write: the pairing rules and their statuses (loopback), the write gate that
//! makes a pair atomic against writes on other poll groups (a bdev whose I/Os the test releases),
//! and a compare-and-swap counter that concurrent pairs from several queues and poll groups,
//! over NVMe/TCP, never lose an update on Malloc, File and direct-mode namespaces.

#![forbid(unsafe_code)]

use nvmf::bdev::{Bdev, BdevChannel, BdevCompletion, BdevError, BdevIo, BdevOp, BdevStatus, FileBdev, MallocBdev};
use nvmf::host::{Controller, HostConfig, IoQueue};
use nvmf::spec::sqe::{FUSE_FIRST, FUSE_SECOND};
use nvmf::spec::{Cqe, GenericStatus, IdentifyController, MediaStatus, Sqe, StatusCodeType};
use nvmf::transport::loopback::LoopbackHost;
use nvmf_test_support::pattern;
use nvmf_tests::loopback::*;
use nvmf_tests::{TargetSpec, TestTarget, NQN};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use zerocopy::FromBytes;

const COMPARE: u8 = 0x05;
const WRITE: u8 = 0x01;
const READ: u8 = 0x02;

fn fused(op: u8, fuse: u8, cid: u16, slba: u64, blocks: u32) -> Sqe {
    let mut sqe = loop_io_sqe(op, cid, slba, blocks);
    sqe.flags |= fuse;
    sqe
}

fn sc(c: &Cqe) -> (u8, u8) {
    (c.status().sct(), c.status().sc())
}

const OK: (u8, u8) = (0, 0);
const FAILED_FUSED: (u8, u8) = (0, GenericStatus::ABORTED_FAILED_FUSED);
const MISSING_FUSED: (u8, u8) = (0, GenericStatus::ABORTED_MISSING_FUSED);
const INVALID_FIELD: (u8, u8) = (0, GenericStatus::INVALID_FIELD);
const COMPARE_FAILURE: (u8, u8) = (StatusCodeType::MediaDataIntegrity as u8, MediaStatus::COMPARE_FAILURE);

/// Submit every command, then collect as many completions, ordered as submitted (by CID).
fn run_all(b: &mut LoopBed, h: &LoopbackHost, cmds: &[(Sqe, &[u8])]) -> Vec<Cqe> {
    for (sqe, data) in cmds {
        h.submit(*sqe, data).expect("submit");
    }
    let mut got: Vec<Cqe> = (0..cmds.len()).map(|_| b.wait(h).cqe).collect();
    let order: Vec<u16> = cmds.iter().map(|(s, _)| s.cid.get()).collect();
    got.sort_by_key(|c| order.iter().position(|&id| id == c.cid.get()));
    got
}

/// An admin queue and one I/O queue (on poll group `g`) of one controller.
fn io_queue(b: &mut LoopBed, g: usize) -> (LoopbackHost, LoopbackHost) {
    let admin = b.open();
    let cntlid = b.connect_admin(&admin);
    let io = b.open_on(g);
    assert!(b.connect(&io, 1, cntlid).status().is_success());
    (admin, io)
}

fn read_block(b: &mut LoopBed, h: &LoopbackHost, slba: u64) -> Vec<u8> {
    let r = b.run(h, loop_io_sqe(READ, 900, slba, 1), &[]);
    assert!(r.cqe.status().is_success(), "read: {:?}", r.cqe.status());
    r.data
}

#[test]
fn identify_reports_fused_compare_and_write_and_admin_commands_refuse_fuse_bits() {
    let mut b = LoopBed::new();
    let a = b.open();
    b.connect_admin(&a);
    let mut id = admin_sqe(0x06, 4, 4096);
    id.cdw10.set(1);
    let ic = IdentifyController::read_from_bytes(&b.run(&a, id, &[]).data).expect("identify");
    assert_eq!(ic.fuses.get() & 1, 1, "FUSES bit 0: Compare and Write");
    assert_eq!(ic.acwu.get(), (nvmf::MAX_IO_SIZE / 512 - 1) as u16, "ACWU: a whole transfer of 512-byte blocks");
    assert_eq!(ic.oncs.get() & 1, 1, "ONCS bit 0: Compare");
    id.flags |= FUSE_FIRST;
    assert_eq!(sc(&b.run(&a, id, &[]).cqe), INVALID_FIELD, "admin command with FUSE 01b");
}

#[test]
fn a_matching_compare_writes_and_a_miscompare_writes_nothing() {
    let mut b = LoopBed::new();
    let (_a, io) = io_queue(&mut b, 0);
    let (old, new, other) = (pattern(1, 5, 2 * LOOP_BS), pattern(2, 5, 2 * LOOP_BS), pattern(3, 5, 2 * LOOP_BS));
    assert!(b.run(&io, loop_io_sqe(WRITE, 1, 5, 2), &old).cqe.status().is_success());
    let r = run_all(
        &mut b,
        &io,
        &[(fused(COMPARE, FUSE_FIRST, 2, 5, 2), &old), (fused(WRITE, FUSE_SECOND, 3, 5, 2), &new)],
    );
    assert_eq!((sc(&r[0]), sc(&r[1])), (OK, OK), "matching pair");
    assert_eq!(r[1].sqid.get(), 1);
    let mut now = read_block(&mut b, &io, 5);
    now.extend(read_block(&mut b, &io, 6));
    assert_eq!(now, new, "the Write happened");
    // Compare against what is no longer there: Compare Failure, and the Write is aborted.
    let r = run_all(
        &mut b,
        &io,
        &[(fused(COMPARE, FUSE_FIRST, 4, 5, 2), &old), (fused(WRITE, FUSE_SECOND, 5, 5, 2), &other)],
    );
    assert_eq!((sc(&r[0]), sc(&r[1])), (COMPARE_FAILURE, FAILED_FUSED), "miscompare");
    let mut now = read_block(&mut b, &io, 5);
    now.extend(read_block(&mut b, &io, 6));
    assert_eq!(now, new, "nothing written by the aborted Write");
    assert_eq!(b.group.buffers_in_use(), 0, "every buffer came back");
    let stats = b.target.subsystem(LOOP_NQN).expect("subsystem").namespace(1).expect("ns").io_stats();
    assert_eq!(stats.num_write_ops, 2, "the plain write and the fused one; not the aborted one");
}

#[test]
fn a_pair_on_a_null_namespace_compares_against_zeroes() {
    let null: Arc<dyn Bdev> = Arc::new(nvmf::bdev::NullBdev::new("Null0", 2048, LOOP_BS as u32).expect("null"));
    let mut b = LoopBed::with_bdev(null, 1);
    let (_a, io) = io_queue(&mut b, 0);
    let (zero, data) = (vec![0u8; LOOP_BS], pattern(1, 0, LOOP_BS));
    let r = run_all(
        &mut b,
        &io,
        &[(fused(COMPARE, FUSE_FIRST, 1, 0, 1), &zero), (fused(WRITE, FUSE_SECOND, 2, 0, 1), &data)],
    );
    assert_eq!((sc(&r[0]), sc(&r[1])), (OK, OK), "Null reads zeroes: the Compare matches");
    let r = run_all(
        &mut b,
        &io,
        &[(fused(COMPARE, FUSE_FIRST, 3, 0, 1), &data), (fused(WRITE, FUSE_SECOND, 4, 0, 1), &data)],
    );
    assert_eq!((sc(&r[0]), sc(&r[1])), (COMPARE_FAILURE, FAILED_FUSED), "the write was discarded");
}

#[test]
fn malformed_fusing_gets_the_specs_status() {
    let mut b = LoopBed::new();
    let (_a, io) = io_queue(&mut b, 0);
    let base = pattern(7, 0, LOOP_BS);
    let new = pattern(8, 0, LOOP_BS);
    assert!(b.run(&io, loop_io_sqe(WRITE, 1, 0, 1), &base).cqe.status().is_success());
    let cmp = |cid| fused(COMPARE, FUSE_FIRST, cid, 0, 1);
    let wr = |cid| fused(WRITE, FUSE_SECOND, cid, 0, 1);

    // A first followed by a command that is not its second: Missing Fused Command; the other
    // command runs.
    let r = run_all(&mut b, &io, &[(cmp(10), &base), (loop_io_sqe(READ, 11, 0, 1), &[])]);
    assert_eq!((sc(&r[0]), sc(&r[1])), (MISSING_FUSED, OK), "lone first");
    // A second without a first.
    let r = run_all(&mut b, &io, &[(wr(12), &new)]);
    assert_eq!(sc(&r[0]), MISSING_FUSED, "lone second");
    // A first followed by another first: the older one is aborted, the new pair runs.
    let r = run_all(&mut b, &io, &[(cmp(13), &base), (cmp(14), &pattern(9, 0, LOOP_BS)), (wr(15), &new)]);
    assert_eq!((sc(&r[0]), sc(&r[1]), sc(&r[2])), (MISSING_FUSED, COMPARE_FAILURE, FAILED_FUSED));
    // Wrong opcodes: a Write as first, a Read as second.
    let r = run_all(&mut b, &io, &[(fused(WRITE, FUSE_FIRST, 16, 0, 1), &new), (wr(17), &new)]);
    assert_eq!((sc(&r[0]), sc(&r[1])), (INVALID_FIELD, FAILED_FUSED), "Write as first");
    let r = run_all(&mut b, &io, &[(cmp(18), &base), (fused(READ, FUSE_SECOND, 19, 0, 1), &[])]);
    assert_eq!((sc(&r[0]), sc(&r[1])), (FAILED_FUSED, INVALID_FIELD), "Read as second");
    // A pair naming different blocks.
    let r = run_all(&mut b, &io, &[(cmp(20), &base), (fused(WRITE, FUSE_SECOND, 21, 1, 1), &new)]);
    assert_eq!((sc(&r[0]), sc(&r[1])), (INVALID_FIELD, FAILED_FUSED), "different LBAs");
    // A member that fails its own checks takes its partner along.
    let r = run_all(&mut b, &io, &[(fused(COMPARE, FUSE_FIRST, 22, 4096, 1), &base), (wr(23), &new)]);
    assert_eq!((sc(&r[0]), sc(&r[1])), ((0, GenericStatus::LBA_OUT_OF_RANGE), FAILED_FUSED), "first out of range");
    let mut short = fused(WRITE, FUSE_SECOND, 25, 0, 2);
    short.set_sgl1(nvmf::spec::sqe::SglDescriptor::transport(LOOP_BS as u32));
    let r = run_all(&mut b, &io, &[(cmp(24), &base), (short, &new)]);
    assert_eq!((sc(&r[0]), sc(&r[1])), (FAILED_FUSED, (0, GenericStatus::DATA_SGL_LENGTH_INVALID)), "second too short");
    // A member the transport fails before it runs (its data is shorter than its SGL) takes its
    // partner along, whichever of the two it is.
    let half = &base[..LOOP_BS / 2];
    let r = run_all(&mut b, &io, &[(cmp(30), half), (wr(31), &new)]);
    assert_eq!((sc(&r[0]), sc(&r[1])), ((0, GenericStatus::DATA_SGL_LENGTH_INVALID), FAILED_FUSED), "short first");
    let r = run_all(&mut b, &io, &[(cmp(32), &base), (wr(33), half)]);
    assert_eq!((sc(&r[0]), sc(&r[1])), (FAILED_FUSED, (0, GenericStatus::DATA_SGL_LENGTH_INVALID)), "short second");
    // A fabrics command after a first is its next command too.
    let mut get = nvmf::host::pdu::fabrics_sqe(nvmf::spec::FabricsType::PropertyGet);
    nvmf::spec::fabrics::PropertyCmd { eight_bytes: false, offset: nvmf::spec::reg::VS, value: 0 }.write(&mut get);
    get.cid.set(29);
    let r = run_all(&mut b, &io, &[(cmp(28), &base), (get, &[])]);
    assert_eq!(sc(&r[0]), MISSING_FUSED, "first followed by a fabrics command");
    // FUSE 11b is reserved.
    let r = run_all(&mut b, &io, &[(fused(COMPARE, 0b11, 26, 0, 1), &base)]);
    assert_eq!(sc(&r[0]), INVALID_FIELD, "FUSE 11b");
    // A lone first with nothing after it waits; the queue then closes: nothing leaks.
    assert_eq!(read_block(&mut b, &io, 0), base, "no malformed pair wrote anything");
    io.submit(cmp(27), &base).expect("submit");
    assert!(b.idle(&io, 50).is_none(), "a first waits for the command after it");
    assert_eq!(b.group.buffers_in_use(), 1, "its data is held");
    io.close();
    b.idle(&io, 10);
    assert_eq!(b.group.buffers_in_use(), 0, "the held first's buffer came back with the connection");
    assert_eq!(b.group.num_connections(), 1, "only the admin connection is left");
}

#[test]
fn a_first_whose_next_command_never_comes_is_aborted_after_a_while() {
    let mut b = LoopBed::new();
    let (_a, io) = io_queue(&mut b, 0);
    let start = std::time::Instant::now();
    io.submit(fused(COMPARE, FUSE_FIRST, 1, 0, 1), &vec![0; LOOP_BS]).expect("submit");
    assert!(b.idle(&io, 20).is_none(), "it waits for the next command");
    assert_eq!(b.group.buffers_in_use(), 1, "holding its data");
    // The poll group's clock (virtual here) passes the timeout: Missing Fused Command.
    b.group.poll_at(start + std::time::Duration::from_secs(6));
    let c = b.wait(&io).cqe;
    assert_eq!((c.cid.get(), sc(&c)), (1, MISSING_FUSED));
    assert_eq!(b.group.buffers_in_use(), 0, "its buffer came back");
    // The queue goes on: a pair right after works.
    let r = run_all(
        &mut b,
        &io,
        &[
            (fused(COMPARE, FUSE_FIRST, 2, 0, 1), &vec![0; LOOP_BS]),
            (fused(WRITE, FUSE_SECOND, 3, 0, 1), &pattern(5, 0, LOOP_BS)),
        ],
    );
    assert_eq!((sc(&r[0]), sc(&r[1])), (OK, OK));
}

// ---- The write gate across poll groups, step by step -------------------------------------------

/// A RAM bdev whose I/Os run only when the test lets them (`hold` false), in submission order;
/// it records every operation it is given.
struct Manual {
    data: Mutex<Vec<u8>>,
    log: Mutex<Vec<BdevOp>>,
    hold: AtomicBool,
}

struct ManualBdev(Arc<Manual>);

struct ManualChannel {
    m: Arc<Manual>,
    queued: VecDeque<BdevIo>,
}

impl Bdev for ManualBdev {
    fn name(&self) -> &str {
        "Manual0"
    }
    fn product_name(&self) -> &'static str {
        "Malloc disk"
    }
    fn block_size(&self) -> u32 {
        LOOP_BS as u32
    }
    fn num_blocks(&self) -> u64 {
        64
    }
    fn supports(&self, _op: BdevOp) -> bool {
        true
    }
    fn open_channel(&self) -> Result<Box<dyn BdevChannel>, BdevError> {
        Ok(Box::new(ManualChannel { m: self.0.clone(), queued: VecDeque::new() }))
    }
}

impl BdevChannel for ManualChannel {
    fn submit(&mut self, io: BdevIo) {
        self.m.log.lock().unwrap().push(io.op);
        self.queued.push_back(io);
    }
    fn poll(&mut self, out: &mut Vec<BdevCompletion>) -> usize {
        if self.m.hold.load(Ordering::SeqCst) {
            return 0;
        }
        let n = self.queued.len();
        let mut data = self.m.data.lock().unwrap();
        for mut io in self.queued.drain(..) {
            let off = io.offset_blocks as usize * LOOP_BS;
            let len = io.num_blocks as usize * LOOP_BS;
            let status = match (io.op, io.buf.as_mut()) {
                (BdevOp::Write, Some(b)) => {
                    data[off..off + len].copy_from_slice(b.as_slice());
                    BdevStatus::Success
                }
                (BdevOp::Read, Some(b)) => {
                    b.as_mut_slice().copy_from_slice(&data[off..off + len]);
                    BdevStatus::Success
                }
                (BdevOp::Compare, Some(b)) if b.as_slice() == &data[off..off + len] => BdevStatus::Success,
                (BdevOp::Compare, Some(_)) => BdevStatus::CompareMismatch,
                _ => BdevStatus::InvalidArg,
            };
            out.push(BdevCompletion { tag: io.tag, status, buf: io.buf });
        }
        n
    }
    fn outstanding(&self) -> usize {
        self.queued.len()
    }
}

/// A bed of two poll groups whose namespace is a [`Manual`] bdev (its I/Os held at first).
fn manual_bed() -> (Arc<Manual>, LoopBed) {
    let m = Arc::new(Manual {
        data: Mutex::new(vec![0; 64 * LOOP_BS]),
        log: Mutex::default(),
        hold: AtomicBool::new(true),
    });
    let b = LoopBed::with_bdev(Arc::new(ManualBdev(m.clone())), 2);
    (m, b)
}

impl Manual {
    /// The operations the bdev was given so far.
    fn ops(&self) -> Vec<BdevOp> {
        self.log.lock().unwrap().clone()
    }
}

#[test]
fn a_pair_waits_for_writes_in_flight_on_other_poll_groups_and_holds_new_ones_back() {
    let (m, mut b) = manual_bed();
    // Host A's I/O queue on poll group 0, host B's on poll group 1.
    let (_aa, qa) = io_queue(&mut b, 0);
    let (_ab, qb) = io_queue(&mut b, 1);
    let log = || m.ops();
    let (x, y, z) = (pattern(1, 0, LOOP_BS), pattern(2, 0, LOOP_BS), pattern(3, 0, LOOP_BS));

    // B's write of X is at the bdev, not finished.
    qb.submit(loop_io_sqe(WRITE, 1, 0, 1), &x).expect("submit");
    b.idle(&qb, 5);
    assert_eq!(log(), [BdevOp::Write]);
    // A's pair expects X: it must not compare before B's write is done.
    qa.submit(fused(COMPARE, FUSE_FIRST, 2, 0, 1), &x).expect("submit");
    qa.submit(fused(WRITE, FUSE_SECOND, 3, 0, 1), &y).expect("submit");
    b.idle(&qa, 20);
    assert_eq!(log(), [BdevOp::Write], "the pair waits for the write in flight on the other group");
    // B's write finishes (only B's group polls, so A's pair has not looked again yet).
    m.hold.store(false, Ordering::SeqCst);
    let done = (0..100).find_map(|_| {
        b.more_groups[0].poll();
        qb.take_completion()
    });
    assert_eq!(sc(&done.expect("B's write completes").cqe), OK);
    // Now A's Compare goes to the bdev and is held there: the pair holds the namespace.
    m.hold.store(true, Ordering::SeqCst);
    b.idle(&qa, 5);
    assert_eq!(log(), [BdevOp::Write, BdevOp::Compare]);
    // B's next write (Z) waits in B's group, not at the bdev.
    qb.submit(loop_io_sqe(WRITE, 4, 0, 1), &z).expect("submit");
    assert!(b.idle(&qb, 20).is_none());
    assert_eq!(log(), [BdevOp::Write, BdevOp::Compare], "a write is held back while the pair runs");
    // Let everything run: Compare matches X, the pair writes Y, then B's Z goes.
    m.hold.store(false, Ordering::SeqCst);
    let w = b.wait(&qb);
    assert_eq!((w.cqe.cid.get(), sc(&w.cqe)), (4, OK));
    let r: Vec<Cqe> = (0..2).map(|_| b.wait(&qa).cqe).collect();
    assert!(r.iter().all(|c| sc(c) == OK), "the pair succeeded: {:?}", r.iter().map(sc).collect::<Vec<_>>());
    assert_eq!(log(), [BdevOp::Write, BdevOp::Compare, BdevOp::Write, BdevOp::Write], "Compare, its Write, then Z");
    assert_eq!(m.data.lock().unwrap()[..LOOP_BS], z[..], "Z came last");
}

#[test]
fn writes_held_back_by_one_pair_go_before_the_next_pair() {
    let (m, mut b) = manual_bed();
    let (_aa, qa) = io_queue(&mut b, 0);
    let (_ab, qb) = io_queue(&mut b, 1);
    let log = || m.ops();
    let zero = vec![0u8; LOOP_BS];
    let (x, y, w) = (pattern(1, 0, LOOP_BS), pattern(2, 0, LOOP_BS), pattern(3, 0, LOOP_BS));
    // A's first pair holds the namespace (its Compare at the bdev); B's write is held back.
    qa.submit(fused(COMPARE, FUSE_FIRST, 1, 0, 1), &zero).expect("submit");
    qa.submit(fused(WRITE, FUSE_SECOND, 2, 0, 1), &x).expect("submit");
    b.idle(&qa, 5);
    qb.submit(loop_io_sqe(WRITE, 3, 1, 1), &w).expect("submit");
    b.idle(&qb, 5);
    // A's next pair is queued behind the first on A's own poll group.
    qa.submit(fused(COMPARE, FUSE_FIRST, 4, 0, 1), &x).expect("submit");
    qa.submit(fused(WRITE, FUSE_SECOND, 5, 0, 1), &y).expect("submit");
    b.idle(&qa, 5);
    assert_eq!(log(), [BdevOp::Compare]);
    // The first pair finishes; only A's poll group runs: its next pair may not take the gate
    // while B's poll group still holds a write the first pair turned away.
    m.hold.store(false, Ordering::SeqCst);
    for _ in 0..50 {
        b.group.poll();
    }
    assert_eq!(log(), [BdevOp::Compare, BdevOp::Write], "the next pair waits for the held write");
    // B's poll group submits its write; then the next pair runs.
    for _ in 0..5 {
        b.more_groups[0].poll();
    }
    for _ in 0..4 {
        let c = b.wait(&qa).cqe;
        assert_eq!(sc(&c), OK, "cid {}", c.cid.get());
    }
    assert_eq!(sc(&b.wait(&qb).cqe), OK);
    assert_eq!(
        log(),
        [BdevOp::Compare, BdevOp::Write, BdevOp::Write, BdevOp::Compare, BdevOp::Write],
        "held write between the pairs"
    );
}

#[test]
fn what_a_closed_connection_left_waiting_at_the_gate_never_reaches_the_bdev() {
    let (m, mut b) = manual_bed();
    let (_aa, qa) = io_queue(&mut b, 0);
    let (_ab, qb) = io_queue(&mut b, 1);
    let (_ac, qc) = io_queue(&mut b, 1);
    let log = || m.ops();
    let (x, y) = (pattern(1, 0, LOOP_BS), pattern(2, 0, LOOP_BS));
    // B's write is at the bdev; A's pair waits for it (it holds the gate); C's pair waits for
    // the gate; B's second write is held back.
    qb.submit(loop_io_sqe(WRITE, 1, 0, 1), &x).expect("submit");
    b.idle(&qb, 5);
    qa.submit(fused(COMPARE, FUSE_FIRST, 2, 0, 1), &x).expect("submit");
    qa.submit(fused(WRITE, FUSE_SECOND, 3, 0, 1), &y).expect("submit");
    qc.submit(fused(COMPARE, FUSE_FIRST, 4, 0, 1), &x).expect("submit");
    qc.submit(fused(WRITE, FUSE_SECOND, 5, 0, 1), &pattern(3, 0, LOOP_BS)).expect("submit");
    qb.submit(loop_io_sqe(WRITE, 6, 0, 1), &pattern(4, 0, LOOP_BS)).expect("submit");
    b.idle(&qb, 20);
    assert_eq!(log(), [BdevOp::Write], "only B's first write reached the bdev");
    // B and C go away (a host failing over to another path).
    let before = b.group.num_connections() + b.more_groups[0].num_connections();
    qb.close();
    qc.close();
    m.hold.store(false, Ordering::SeqCst);
    for _ in 0..50 {
        b.poll_all();
    }
    assert_eq!(b.group.num_connections() + b.more_groups[0].num_connections(), before - 2, "both closed");
    let r: Vec<Cqe> = (0..2).map(|_| b.wait(&qa).cqe).collect();
    assert!(r.iter().all(|c| sc(c) == OK), "A's pair ran after B's first write");
    assert_eq!(log(), [BdevOp::Write, BdevOp::Compare, BdevOp::Write], "nothing of B's or C's waiting work ran");
    assert_eq!(m.data.lock().unwrap()[..LOOP_BS], y[..], "A's pair wrote last");
    assert_eq!(b.group.buffers_in_use() + b.more_groups[0].buffers_in_use(), 0, "every buffer came back");
}

// ---- A compare-and-swap counter under concurrency, over NVMe/TCP ----------------------------------

/// Blocks the widest workers swap at once (16 KiB: more than the in-capsule size, so their data
/// comes by R2T).
const WIDE: u32 = 32;
/// The block a plain writer keeps rewriting inside the wide workers' range.
const PLAIN_LBA: u64 = 5;

/// Increment the counter in block 0 `n` times by fused Compare and Write over `blocks` blocks
/// from 0, retrying after a miscompare. Returns the miscompares seen.
fn cas_increments(q: &mut IoQueue, blocks: u32, n: u64) -> u64 {
    let len = blocks as usize * 512;
    let (mut cur, mut misses, mut done) = (vec![0u8; len], 0, 0);
    while done < n {
        assert!(misses < n * 10_000, "no progress: {misses} miscompares for {done} increments");
        q.read(1, 0, blocks, &mut cur).expect("read");
        let v = u64::from_le_bytes(cur[..8].try_into().expect("8 bytes"));
        let mut next = cur.clone();
        next[..8].copy_from_slice(&(v + 1).to_le_bytes());
        let (c, w) = q.compare_and_write(1, 0, blocks, &cur, &next).expect("compare and write");
        match (sc(&c), sc(&w)) {
            (OK, OK) => done += 1,
            (COMPARE_FAILURE, FAILED_FUSED) => misses += 1,
            other => panic!("unexpected statuses {other:?}"),
        }
    }
    misses
}

/// Four workers on four I/O queues spread over three poll groups (two swapping one block, two
/// swapping [`WIDE`] blocks), and a plain writer rewriting block [`PLAIN_LBA`] with increasing
/// values: no increment is lost, and no pair's Write undoes a plain write.
fn counter_never_loses_an_update(bdev: Arc<dyn Bdev>) {
    let t = TestTarget::start(TargetSpec { bdevs: vec![bdev], poll_groups: 3, ..Default::default() });
    let mut c = Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect");
    let mut zero = c.connect_io_queue(6).expect("queue");
    zero.write(1, 0, WIDE, &vec![0u8; WIDE as usize * 512]).expect("zero the range");
    let queues: Vec<IoQueue> = (1..=5).map(|qid| c.connect_io_queue(qid).expect("io queue")).collect();
    assert!(t.wait_for(|t| t.conns_per_group.iter().all(|n| n.load(Ordering::Relaxed) >= 2)), "every group serves");
    const N: u64 = 150;
    const PLAIN: u64 = 300;
    let mut it = queues.into_iter();
    let mut plain_q = it.next().expect("queue");
    let misses: u64 = std::thread::scope(|s| {
        let plain = s.spawn(move || {
            for k in 1..=PLAIN {
                plain_q.write(1, PLAIN_LBA, 1, &pattern(k, PLAIN_LBA, 512)).expect("plain write");
            }
        });
        let workers: Vec<_> = it
            .enumerate()
            .map(|(i, mut q)| s.spawn(move || cas_increments(&mut q, if i % 2 == 0 { 1 } else { WIDE }, N)))
            .collect();
        plain.join().expect("plain writer");
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    let mut block = vec![0u8; 512];
    zero.read(1, 0, 1, &mut block).expect("read");
    let counter = u64::from_le_bytes(block[..8].try_into().expect("8 bytes"));
    assert_eq!(counter, 4 * N, "every successful Compare and Write counted once ({misses} miscompares)");
    zero.read(1, PLAIN_LBA, 1, &mut block).expect("read");
    assert_eq!(block, pattern(PLAIN, PLAIN_LBA, 512), "the last plain write survived every pair");
    assert!(t.wait_for(|t| t.buffers_in_use() == 0), "no buffer left lent");
}

#[test]
fn counter_on_malloc() {
    counter_never_loses_an_update(Arc::new(MallocBdev::new("Malloc0", 1024, 512).expect("malloc")));
}

#[test]
fn counter_on_file() {
    let path = std::env::temp_dir().join(format!("nvmf-fused-{}.img", std::process::id()));
    std::fs::File::create(&path).and_then(|f| f.set_len(1 << 20)).expect("create the file");
    let bdev = Arc::new(FileBdev::open("File0", &path, 512).expect("file bdev"));
    counter_never_loses_an_update(bdev);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn counter_on_direct_mode() {
    use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
    use nvme_driver::{Controller as PcieController, ControllerOptions};
    let emu = EmulatedController::new(EmulatorConfig { namespaces: vec![(512, 4096)], mdts: 9, ..Default::default() });
    let ctrl = Arc::new(PcieController::new_emulated(&emu, ControllerOptions::default()).expect("bring-up"));
    let bdev = nvmf::bdev::NvmeBdev::new("Nvme0n1", ctrl, 1).expect("bdev");
    counter_never_loses_an_update(Arc::new(bdev));
    let mut v = vec![0u8; 8];
    assert!(emu.read_disk(1, 0, &mut v), "read_disk");
    assert_eq!(u64::from_le_bytes(v.try_into().expect("8")), 4 * 150, "the device holds the count");
}
