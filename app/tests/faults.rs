//! Faults of the `nvmf_tgt` process itself: killed with SIGKILL under load, nothing acknowledged
//! on a File bdev is lost (docs/reliability.md).

#![forbid(unsafe_code)]

mod common;

use common::*;
use nvmf::host::{Controller, HostConfig};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writes acknowledged before the target is killed with SIGKILL (no shutdown path runs: no
/// flush, no drain) are all there after a restart on the same file. The File bdev completes a
/// write only after `pwrite` returned, so the data is in the page cache, which outlives the
/// process (not a power failure: that needs Flush, which this test does not claim).
#[test]
fn file_bdev_acknowledged_writes_survive_sigkill() {
    let _g = serial();
    const WRITERS: u64 = 2;
    const NLB: u32 = 8; // 4 KiB writes
    const DEPTH: usize = 16;
    const SIZE: u64 = 64 * 1024 * 1024;
    let file = TempFile::new("sigkill-file-bdev", SIZE);
    let path = file.path().to_str().expect("utf-8 temp path").to_string();
    let mut t = Tgt::start(&["--bdev", &path, "--cpus", "0,1", "--idle-backoff-us", "20"]);
    let slots = SIZE / 512 / NLB as u64 / WRITERS;

    // Per writer: (LBA, pattern seed) of every write whose completion said success. Each LBA is
    // written once, so what is on the file after the restart must be exactly that pattern.
    let acked: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (addr, acked, killed) = (t.addr(), acked.clone(), killed.clone());
        writers.push(std::thread::spawn(move || -> String {
            let cfg = HostConfig { io_timeout: Duration::from_secs(5), ..Default::default() };
            let mut c = Controller::connect(addr, DEFAULT_NQN, &cfg).expect("connect");
            let mut q = c.connect_io_queue(1).expect("io queue");
            let mut inflight: HashMap<u16, u64> = HashMap::new();
            let mut next = 0u64;
            loop {
                while inflight.len() < DEPTH && next < slots {
                    let lba = (w * slots + next) * NLB as u64;
                    match q.submit_write(1, lba, NLB, &pattern(w + 1, lba, NLB as usize * 512)) {
                        Ok(cid) => {
                            inflight.insert(cid, lba);
                            next += 1;
                        }
                        Err(e) => return format!("submit: {e}"),
                    }
                }
                if inflight.is_empty() {
                    return "region full".into();
                }
                let mut done = Vec::new();
                let r = q.poll(|cid, cqe, _| done.push((cid, cqe.is_success())));
                for (cid, ok) in done {
                    if let Some(lba) = inflight.remove(&cid) {
                        assert!(ok || killed.load(Ordering::Relaxed), "write at LBA {lba} failed before the kill");
                        if ok {
                            acked.lock().unwrap().push((lba, w + 1));
                        }
                    }
                }
                if let Err(e) = r {
                    assert!(killed.load(Ordering::Relaxed), "connection failed before the kill: {e}");
                    return format!("poll: {e}");
                }
            }
        }));
    }
    let start = Instant::now();
    while acked.lock().unwrap().len() < 2000 {
        assert!(start.elapsed() < Duration::from_secs(60), "writers too slow");
        assert!(writers.iter().all(|w| !w.is_finished()), "a writer stopped early");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Kill it mid-I/O: no signal handler, no shutdown, no flush.
    killed.store(true, Ordering::Relaxed);
    t.signal("KILL");
    let st = t.wait_exit(Duration::from_secs(10)).expect("nvmf_tgt still running after SIGKILL");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9), "killed by SIGKILL: {st:?}");
    for w in writers {
        let why = w.join().expect("writer panicked");
        eprintln!("writer stopped: {why}");
        assert_ne!(why, "region full", "the writer was not writing when the target was killed");
    }
    let acked = Arc::try_unwrap(acked).expect("writers joined").into_inner().unwrap();
    eprintln!("{} writes acknowledged before SIGKILL", acked.len());

    // Restart on the same file and read back every acknowledged write.
    let mut t = Tgt::start(&["--bdev", &path, "--idle-backoff-us", "20"]);
    let mut c = Controller::connect(t.addr(), DEFAULT_NQN, &HostConfig::default()).expect("connect after restart");
    let mut q = c.connect_io_queue(1).expect("io queue");
    let mut back = vec![0u8; NLB as usize * 512];
    for &(lba, seed) in &acked {
        q.read(1, lba, NLB, &mut back).expect("read back");
        assert!(back == pattern(seed, lba, back.len()), "acknowledged write at LBA {lba} lost after SIGKILL");
    }
    drop(q);
    drop(c);
    t.terminate(Duration::from_secs(15));
}
