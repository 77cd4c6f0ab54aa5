//! Zero heap allocations per I/O in steady state (issue 6). A counting global allocator counts,
//! per thread role, the allocations made on threads that set a thread-local flag: the target's
//! poll thread (accept + one poll group, like one nvmf_tgt reactor) and the host's I/O thread.
//! After a warm-up, thousands of 4 KiB reads and writes at QD 32 over TCP (in-capsule writes and
//! R2T writes, Null and Malloc namespaces) must allocate nothing on either side.

use nvmf::bdev::{Bdev, MallocBdev, NullBdev};
use nvmf::host::{Controller, HostConfig, IoQueue};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

struct Counting;

const NONE: u8 = 0;
const TARGET: u8 = 1;
const HOST: u8 = 2;

thread_local! {
    static ROLE: Cell<u8> = const { Cell::new(NONE) };
}
static TARGET_ALLOCS: AtomicU64 = AtomicU64::new(0);
static HOST_ALLOCS: AtomicU64 = AtomicU64::new(0);

fn count() {
    // try_with: the thread-local may already be gone while a thread exits.
    match ROLE.try_with(|r| r.get()).unwrap_or(NONE) {
        TARGET => TARGET_ALLOCS.fetch_add(1, Ordering::Relaxed),
        HOST => HOST_ALLOCS.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
}

// SAFETY: forwards to the system allocator; counting touches only atomics and a const-initialised
// thread-local Cell (no allocation, no re-entry).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds GlobalAlloc's contract for these arguments; passed on as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds GlobalAlloc's contract for these arguments; passed on as is.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: the caller upholds GlobalAlloc's contract for these arguments; passed on as is.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller upholds GlobalAlloc's contract for these arguments; passed on as is.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const NQN: &str = "nqn.2016-06.io.nvmf-rs:zero-alloc";
const IO: usize = 4096;
const QD: usize = 32;

/// Target on one thread: accept + one poll group (Null namespace 1, Malloc namespace 2).
fn start_target(stop: Arc<AtomicBool>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let null: Arc<dyn Bdev> = Arc::new(NullBdev::new("Null0", 1 << 20, 512).expect("null"));
    let malloc: Arc<dyn Bdev> = Arc::new(MallocBdev::new("Malloc0", 32 << 11, 512).expect("malloc"));
    let (mut target, addr) = nvmf_tests::polled_target(NQN, vec![null, malloc]);
    let h = std::thread::spawn(move || {
        let mut group = target.create_poll_group();
        ROLE.with(|r| r.set(TARGET));
        while !stop.load(Ordering::Relaxed) {
            target.accept(|q| group.add(q));
            group.poll();
        }
        ROLE.with(|r| r.set(NONE));
        group.close_all();
        for _ in 0..100_000 {
            if group.num_connections() == 0 {
                break;
            }
            group.poll();
        }
    });
    (addr, h)
}

/// Keep QD commands in flight until `n` have completed: writes then reads of 4 KiB over a
/// 16 MiB range of `nsid`. Returns how many failed.
fn run(q: &mut IoQueue, nsid: u32, n: u64, data: &[u8]) -> u64 {
    let (mut submitted, mut done, mut failed) = (0u64, 0u64, 0u64);
    while done < n {
        while q.in_flight() < QD && submitted < n {
            let lba = (submitted * 2654435761 % 4096) * (IO as u64 / 512);
            if submitted % 2 == 0 {
                q.submit_write(nsid, lba, (IO / 512) as u32, data).expect("submit write");
            } else {
                q.submit_read(nsid, lba, (IO / 512) as u32, IO).expect("submit read");
            }
            submitted += 1;
        }
        done += q
            .poll(|_, cqe, _| {
                if !cqe.is_success() {
                    failed += 1;
                }
            })
            .expect("poll") as u64;
    }
    failed
}

#[test]
fn steady_state_io_allocates_nothing() {
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, th) = start_target(stop.clone());
    let cfg = HostConfig { queue_size: QD as u16 + 1, ..Default::default() };
    let mut c = Controller::connect(addr, NQN, &cfg).expect("connect");
    // In-capsule writes (4 KiB fits the 8 KiB in-capsule size) and R2T writes (in-capsule 0).
    let mut icd = c.connect_io_queue(1).expect("io queue 1");
    assert!(icd.in_capsule_size() >= IO);
    let mut r2t = IoQueue::connect(addr, NQN, c.cntlid(), 2, &cfg, 0).expect("io queue 2");
    let data = vec![0xa5u8; IO];

    ROLE.with(|r| r.set(HOST));
    // Warm-up: pool buffers, send/receive buffers and slot buffers reach their steady sizes.
    for q in [&mut icd, &mut r2t] {
        for nsid in [1, 2] {
            assert_eq!(run(q, nsid, 2_000, &data), 0);
        }
    }
    let (t0, h0) = (TARGET_ALLOCS.load(Ordering::Relaxed), HOST_ALLOCS.load(Ordering::Relaxed));
    // The counter works: setting up connections and buffers did allocate on the target thread.
    assert!(t0 > 0, "no target allocations counted at all");
    const N: u64 = 20_000;
    for q in [&mut icd, &mut r2t] {
        for nsid in [1, 2] {
            assert_eq!(run(q, nsid, N, &data), 0);
        }
    }
    let (t1, h1) = (TARGET_ALLOCS.load(Ordering::Relaxed), HOST_ALLOCS.load(Ordering::Relaxed));
    ROLE.with(|r| r.set(NONE));

    let ios = 4 * N;
    eprintln!("{ios} I/Os: {} target allocations, {} host allocations", t1 - t0, h1 - h0);
    assert_eq!(t1 - t0, 0, "target allocated {} times during {ios} steady-state I/Os", t1 - t0);
    assert_eq!(h1 - h0, 0, "host allocated {} times during {ios} steady-state I/Os", h1 - h0);

    drop(icd);
    drop(r2t);
    drop(c);
    stop.store(true, Ordering::Relaxed);
    th.join().expect("target thread");
}
