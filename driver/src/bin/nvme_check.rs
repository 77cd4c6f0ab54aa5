//! `nvme_check`: exercise the userspace driver on a real controller bound to `vfio-pci`
//! (the QEMU test bed's `driver-vfio` step runs it against QEMU's emulated NVMe).
//!
//! ```text
//! nvme_check BDF [--threads N] [--ios N] [--big BYTES] [--mark-lba LBA] [--mark-file PATH]
//! ```
//!
//! Checks, in order: bring-up (IOMMU or no-IOMMU, whichever the group node says), identify,
//! N queue pairs on N threads each writing and reading back its own LBA range with several
//! commands in flight, one large transfer through a PRP list (default 1 MiB, split by MDTS),
//! a marker block written at `--mark-lba` whose contents are also written to `--mark-file`
//! (so the kernel driver can read it back after re-binding), and a clean shutdown.
//! Prints one `CHECK <name> ok|FAILED ...` line per check and exits 1 if any failed.

#![forbid(unsafe_code)]

use nvme_driver::spec::{NvmOpcode, Sqe};
use nvme_driver::{Controller, ControllerOptions, IoQpair, PoolBuf};
use nvmf_test_support::pattern;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    bdf: String,
    threads: u64,
    ios: u64,
    big: usize,
    mark_lba: u64,
    mark_file: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args { bdf: String::new(), threads: 4, ios: 256, big: 1 << 20, mark_lba: 4096, mark_file: None };
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--threads" => a.threads = val("--threads")?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--ios" => a.ios = val("--ios")?.parse().map_err(|e| format!("--ios: {e}"))?,
            "--big" => a.big = val("--big")?.parse().map_err(|e| format!("--big: {e}"))?,
            "--mark-lba" => a.mark_lba = val("--mark-lba")?.parse().map_err(|e| format!("--mark-lba: {e}"))?,
            "--mark-file" => a.mark_file = Some(val("--mark-file")?),
            "-h" | "--help" => {
                println!(
                    "usage: nvme_check BDF [--threads N] [--ios N] [--big BYTES] [--mark-lba LBA] [--mark-file PATH]"
                );
                std::process::exit(0);
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => a.bdf = s.to_string(),
        }
    }
    if a.bdf.is_empty() {
        return Err("missing PCI address (e.g. 0000:00:03.0)".into());
    }
    Ok(a)
}

/// Poll until `n` completions arrived (or a timeout), collecting (token, ok) pairs.
fn wait_all(qp: &mut IoQpair, n: usize, what: &str) -> Result<Vec<u64>, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut toks = Vec::new();
    let mut err = None;
    while toks.len() < n {
        qp.poll(64, |tok, r| {
            if let Err(e) = r {
                err.get_or_insert(format!("{what}: token {tok}: {e}"));
            }
            toks.push(tok);
        })
        .map_err(|e| format!("{what}: poll: {e}"))?;
        if Instant::now() > deadline {
            return Err(format!("{what}: {} of {n} completions after 30 s", toks.len()));
        }
    }
    err.map_or(Ok(toks), Err)
}

/// One thread's work: its own queue pair and LBA range, `ios` 4 KiB writes then reads with up to
/// 16 in flight, every read compared with what was written.
fn thread_io(ctrl: &Controller, t: u64, ios: u64, nsid: u32, bs: u32) -> Result<(IoQpair, Duration), String> {
    let t0 = Instant::now();
    let mut qp = ctrl.alloc_io_qpair_with(32).map_err(|e| format!("alloc_io_qpair: {e}"))?;
    let pool = ctrl.dma().alloc_pool(4096, 16).map_err(|e| format!("alloc_pool: {e}"))?;
    let blocks = 4096 / bs;
    let base = t * ios * blocks as u64;
    for phase in ["write", "read"] {
        let mut inflight: Vec<Option<PoolBuf>> = (0..ios).map(|_| None).collect();
        let (mut next, mut done) = (0u64, 0u64);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut err: Option<String> = None;
        while done < ios {
            while next < ios {
                let Some(mut b) = pool.get() else { break };
                let lba = base + next * blocks as u64;
                let r = if phase == "write" {
                    b.as_mut_slice().copy_from_slice(&pattern(t, next, 4096));
                    qp.write(nsid, lba, blocks, &b, next)
                } else {
                    b.as_mut_slice().fill(0);
                    qp.read(nsid, lba, blocks, &b, next)
                };
                match r {
                    Ok(()) => inflight[next as usize] = Some(b),
                    Err(nvme_driver::Error::QueueFull) => break,
                    Err(e) => return Err(format!("{phase} submit {next}: {e}")),
                }
                next += 1;
            }
            qp.poll(64, |tok, r| {
                let b = inflight[tok as usize].take();
                done += 1;
                if let Err(e) = r {
                    err.get_or_insert(format!("{phase} {tok}: {e}"));
                } else if phase == "read" {
                    match b {
                        Some(b) if b.as_slice() == &pattern(t, tok, 4096)[..] => {}
                        Some(_) => {
                            err.get_or_insert(format!("read {tok}: data differs from what was written"));
                        }
                        None => {
                            err.get_or_insert(format!("completion for unknown token {tok}"));
                        }
                    }
                }
            })
            .map_err(|e| format!("{phase} poll: {e}"))?;
            if let Some(e) = err.take() {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(format!("{phase}: {done} of {ios} done after 60 s"));
            }
        }
    }
    let dt = t0.elapsed();
    Ok((qp, dt))
}

/// Large transfer through PRP lists: `len` bytes in commands of at most `max_transfer_bytes()`,
/// written from one buffer and read back into another.
fn big_transfer(ctrl: &Controller, nsid: u32, bs: u32, lba: u64, len: usize) -> Result<String, String> {
    let mut qp = ctrl.alloc_io_qpair().map_err(|e| format!("alloc_io_qpair: {e}"))?;
    let chunk = qp.max_transfer_bytes().min(len);
    let src = ctrl.dma().alloc(len, 4096).map_err(|e| format!("alloc {len}: {e}"))?;
    let dst = ctrl.dma().alloc(len, 4096).map_err(|e| format!("alloc {len}: {e}"))?;
    let data = pattern(0xb1, len as u64, len);
    src.write(0, &data);
    dst.fill(0, len, 0);
    let mut cmds = 0;
    for (write, buf) in [(true, &src), (false, &dst)] {
        let mut off = 0;
        while off < len {
            let n = chunk.min(len - off);
            // offsets into one buffer: raw commands with PRPs over (buf, off, n)
            let blocks = (n / bs as usize) as u32;
            let op = if write { NvmOpcode::Write } else { NvmOpcode::Read };
            let mut sqe = Sqe { opcode: op as u8, ..Default::default() };
            sqe.nsid.set(nsid);
            sqe.set_slba(lba + (off / bs as usize) as u64);
            sqe.cdw12.set(blocks - 1);
            qp.submit_raw(sqe, Some((buf, off, n)), off as u64).map_err(|e| format!("submit at {off}: {e}"))?;
            off += n;
            cmds += 1;
        }
        let n = len.div_ceil(chunk);
        wait_all(&mut qp, n, if write { "big write" } else { "big read" })?;
    }
    if dst.as_slice() != &data[..] {
        let first = dst.as_slice().iter().zip(&data).position(|(a, b)| a != b).unwrap_or(0);
        return Err(format!("read back differs from what was written (first difference at byte {first})"));
    }
    Ok(format!("{len} bytes written and read back identical in {cmds} commands of up to {chunk} bytes"))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("nvme_check: {e}");
            std::process::exit(2);
        }
    };
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", "info");
    }
    env_logger_init();
    let mut failed = 0;
    let mut report = |name: &str, r: Result<String, String>| match r {
        Ok(s) => println!("CHECK {name} ok: {s}"),
        Err(e) => {
            println!("CHECK {name} FAILED: {e}");
            failed += 1;
        }
    };

    let t0 = Instant::now();
    // Short timeouts: an emulated controller answers within milliseconds even under TCG, and a
    // broken driver should fail the check quickly rather than wait out the defaults.
    let opts = ControllerOptions {
        io_queues: args.threads.max(2) as u16 + 1,
        io_timeout: Some(Duration::from_secs(5)),
        admin_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let ctrl = match Controller::open_vfio(&args.bdf, opts) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            report("bring-up", Err(format!("open_vfio({}): {e}", args.bdf)));
            println!("nvme_check: FAILED ({failed} checks)");
            std::process::exit(1);
        }
    };
    let mode = ctrl.dma().mapper().name();
    report("bring-up", Ok(format!("{} via {mode} in {:?}, CAP={:#x}", args.bdf, t0.elapsed(), ctrl.cap().0)));

    let id = ctrl.identify();
    let nss = ctrl.namespaces();
    report(
        "identify",
        if nss.is_empty() {
            Err("no active namespace".into())
        } else {
            Ok(format!(
                "model '{}' serial '{}' fw '{}' mdts {} nn {}; {} I/O queues granted, max transfer {} bytes; namespaces: {}",
                id.model().trim(),
                id.serial().trim(),
                id.firmware().trim(),
                id.mdts,
                id.nn.get(),
                ctrl.max_io_qpairs(),
                ctrl.max_transfer_bytes(),
                nss.iter().map(|n| format!("{}: {} x {} B", n.nsid, n.blocks, n.block_size)).collect::<Vec<_>>().join(", ")
            ))
        },
    );
    let Some(ns) = nss.first().cloned() else {
        println!("nvme_check: FAILED");
        std::process::exit(1);
    };
    let (nsid, bs) = (ns.nsid, ns.block_size);
    let blocks_per_4k = 4096 / bs as u64;
    let need = args.threads * args.ios * blocks_per_4k;
    let big_lba = need.next_multiple_of(256);
    let big_blocks = (args.big / bs as usize) as u64;
    if args.mark_lba < big_lba + big_blocks || args.mark_lba >= ns.blocks || big_lba + big_blocks > ns.blocks {
        println!(
            "CHECK layout FAILED: namespace of {} blocks too small or --mark-lba {} overlaps the test ranges (< {})",
            ns.blocks,
            args.mark_lba,
            big_lba + big_blocks
        );
        std::process::exit(1);
    }

    // N queue pairs on N threads.
    // Each thread keeps its queue pair until all are done: a thread that finished early would
    // otherwise free its QID for a late starter (seen under load) and the QIDs would repeat.
    let t1 = Instant::now();
    let all_done = Arc::new(std::sync::Barrier::new(args.threads as usize));
    let handles: Vec<_> = (0..args.threads)
        .map(|t| {
            let ctrl = ctrl.clone();
            let ios = args.ios;
            let all_done = all_done.clone();
            std::thread::spawn(move || {
                let r = thread_io(&ctrl, t, ios, nsid, bs);
                all_done.wait();
                r.map(|(qp, dt)| (qp.qid(), dt))
            })
        })
        .collect();
    let mut qids = Vec::new();
    let mut errs = Vec::new();
    for (t, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok((qid, dt))) => {
                println!("  thread {t}: qid {qid}, {} x 4 KiB written + read back in {dt:?}", args.ios);
                qids.push(qid)
            }
            Ok(Err(e)) => errs.push(format!("thread {t}: {e}")),
            Err(_) => errs.push(format!("thread {t} panicked")),
        }
    }
    qids.sort();
    qids.dedup();
    report(
        "qpairs",
        if errs.is_empty() && qids.len() == args.threads as usize {
            Ok(format!(
                "{} threads on queue pairs {qids:?}, {} x 4 KiB each, verified in {:?}",
                args.threads,
                args.ios,
                t1.elapsed()
            ))
        } else if errs.is_empty() {
            Err(format!("threads did not get distinct queue pairs: {qids:?}"))
        } else {
            Err(errs.join("; "))
        },
    );

    report("prp-list", big_transfer(&ctrl, nsid, bs, big_lba, args.big));

    // Marker block for the kernel driver to read back after re-binding.
    let mark = (|| -> Result<String, String> {
        let mut qp = ctrl.alloc_io_qpair().map_err(|e| format!("alloc_io_qpair: {e}"))?;
        let len = 64 << 10;
        let buf = ctrl.dma().alloc(len, 4096).map_err(|e| format!("alloc: {e}"))?;
        let mut data = pattern(0x3a, args.mark_lba, len);
        let tag = format!("nvme_check marker at LBA {} via {mode}\n", args.mark_lba);
        data[..tag.len()].copy_from_slice(tag.as_bytes());
        buf.write(0, &data);
        qp.write(nsid, args.mark_lba, (len / bs as usize) as u32, &buf, 1).map_err(|e| format!("write: {e}"))?;
        wait_all(&mut qp, 1, "marker write")?;
        qp.flush(nsid, 2).map_err(|e| format!("flush: {e}"))?;
        wait_all(&mut qp, 1, "flush")?;
        if let Some(f) = &args.mark_file {
            std::fs::write(f, &data).map_err(|e| format!("{f}: {e}"))?;
        }
        Ok(format!("{len} bytes at LBA {} (byte offset {}), flushed", args.mark_lba, args.mark_lba * bs as u64))
    })();
    report("marker", mark);

    // Clean shutdown: every queue pair is gone; CC.SHN and CSTS.SHST complete.
    let t2 = Instant::now();
    report(
        "shutdown",
        ctrl.shutdown().map(|()| format!("CSTS.SHST complete in {:?}", t2.elapsed())).map_err(|e| e.to_string()),
    );
    drop(ctrl);

    if failed == 0 {
        println!("nvme_check: PASS ({:?})", t0.elapsed());
    } else {
        println!("nvme_check: FAILED ({failed} checks)");
        std::process::exit(1);
    }
}

/// Minimal stderr logger (the driver crate has no env_logger dependency).
fn env_logger_init() {
    struct L(log::LevelFilter);
    impl log::Log for L {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= self.0
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
            }
        }
        fn flush(&self) {}
    }
    let lvl = match std::env::var("RUST_LOG").unwrap_or_default().as_str() {
        "trace" => log::LevelFilter::Trace,
        "debug" => log::LevelFilter::Debug,
        "warn" => log::LevelFilter::Warn,
        "error" => log::LevelFilter::Error,
        _ => log::LevelFilter::Info,
    };
    let logger: &'static L = Box::leak(Box::new(L(lvl)));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(lvl);
    }
}
