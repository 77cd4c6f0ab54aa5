//! nvmf-perf: the orchestration. Connect, spread the namespaces over the queue pairs, run the
//! workers (warm-up, measure), print; with --ceiling, the same against the trivial responder.

pub mod args;
pub mod ceiling;
pub mod hist;
pub mod pattern;
pub mod report;
pub mod worker;

use args::{parse_cores, parse_trid, Args, Trid};
use nvmf::host::{Controller, HostConfig, HostTransport, IoQueue};
use report::Line;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use worker::{Job, NsRange, Shared, Stats, Worker};

/// I/O queues per controller the target grants (nvmf::ctrlr::MAX_IO_QUEUES).
const MAX_IO_QUEUES: u16 = nvmf::ctrlr::MAX_IO_QUEUES;

/// What the target phase learned and the ceiling phase reuses.
struct Geometry {
    block_size: u32,
    /// (NSID, size in blocks) of the namespaces used.
    ns: Vec<(u32, u64)>,
    in_capsule: usize,
    qd: usize,
    cfg: HostConfig,
}

pub struct PhaseResult {
    pub lines: Vec<Line>,
    pub total: Line,
    pub ok: bool,
}

fn host_cfg(a: &Args, transport: HostTransport, queue_size: u16) -> HostConfig {
    HostConfig { transport, header_digest: a.hdgst, data_digest: a.ddgst, queue_size, ..HostConfig::default() }
}

fn connect_target(a: &Args, t: &Trid) -> Result<(Controller, Geometry), String> {
    let want = (a.qd + 1).min(u16::MAX as usize) as u16;
    let e = |e: nvmf::host::HostError| format!("{}: {e}", t.addr);
    let mut ctrl = Controller::connect(t.addr, &t.subnqn, &host_cfg(a, t.trtype, want)).map_err(e)?;
    let max = ctrl.cap().max_queue_entries().min(u16::MAX as u32) as u16;
    if want > max {
        eprintln!(
            "nvmf-perf: the controller allows {max} queue entries: {} commands in flight per queue pair, not {}",
            max - 1,
            a.qd
        );
    }
    let idc = ctrl.identify_controller().map_err(e)?;
    let in_capsule = (idc.ioccsz.get() as usize * 16).saturating_sub(64);
    let ids = ctrl.active_namespaces().map_err(e)?;
    if ids.len() < a.namespaces.max(1) {
        return Err(format!("{} has {} active namespaces, -n {}", t.subnqn, ids.len(), a.namespaces));
    }
    let mut ns = Vec::new();
    let mut block_size = 0;
    for &id in &ids[..a.namespaces.max(1)] {
        let idn = ctrl.identify_namespace(id).map_err(e)?;
        let bs = idn.block_size();
        if block_size != 0 && bs != block_size {
            return Err("namespaces with different block sizes".into());
        }
        block_size = bs;
        ns.push((id, idn.nsze.get()));
    }
    if block_size == 0 || a.io_size == 0 || !a.io_size.is_multiple_of(block_size as usize) {
        return Err(format!("I/O size {} is not a multiple of the block size {block_size}", a.io_size));
    }
    // I/O queues are connected with IoQueue::connect and this configuration (queue size
    // within MQES), not through the controller's own.
    let cfg = host_cfg(a, t.trtype, want.min(max));
    let qd = a.qd.min(cfg.queue_size as usize - 1).max(1);
    Ok((ctrl, Geometry { block_size, ns, in_capsule, qd, cfg }))
}

fn jobs(a: &Args, g: &Geometry) -> Result<Vec<Job>, String> {
    let c = a.qpairs.max(1);
    let nlb = (a.io_size / g.block_size as usize) as u64;
    let mut jobs = Vec::new();
    for i in 0..c {
        let mut ns = Vec::new();
        for &(nsid, nsze) in &g.ns {
            let limit = a.range_mb.map_or(nsze, |mb| (mb << 20) / g.block_size as u64).min(nsze);
            let slice = limit / nlb / c as u64;
            if slice == 0 || (a.verify && slice < g.qd as u64) {
                return Err(format!(
                    "namespace {nsid}: {limit} blocks are too few for {c} queue pairs of {}-byte I/O",
                    a.io_size
                ));
            }
            ns.push(NsRange { nsid, start: i as u64 * slice * nlb, units: slice });
        }
        jobs.push(Job {
            index: i,
            qd: g.qd,
            io_size: a.io_size,
            block_size: g.block_size,
            read_pct: a.workload.read_pct(a.read_pct),
            random: a.workload.random(),
            verify: a.verify,
            ns,
        });
    }
    Ok(jobs)
}

fn progress(a: &Args, label: &str, secs: u64, ios: u64, last: &mut u64, dt: f64) {
    if a.quiet {
        return;
    }
    let iops = (ios - *last) as f64 / dt;
    *last = ios;
    let line =
        format!("[{label} {secs:>3} s] {iops:>10.0} IOPS {:>9.1} MiB/s", iops * a.io_size as f64 / (1 << 20) as f64);
    if a.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// Run the workload on `workers` (one thread each): prefill (--verify, first run only), warm-up,
/// measure. The workers (and their connections) come back for the next repetition.
fn run_phase(
    a: &Args,
    label: &str,
    workers: Vec<Worker>,
    ctrls: &mut [Controller],
) -> Result<(PhaseResult, Vec<Worker>), String> {
    let cores = a.cores.as_deref().map(parse_cores).transpose()?;
    let n = workers.len();
    let shared =
        Arc::new(Shared { phase: AtomicU8::new(worker::WARMUP), done: (0..n).map(|_| Default::default()).collect() });
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut handles = Vec::new();
    for (i, mut w) in workers.into_iter().enumerate() {
        let (shared, barrier) = (shared.clone(), barrier.clone());
        let core = cores.as_ref().map(|c| c[i % c.len()]);
        let h = std::thread::Builder::new()
            .name(format!("qpair-{}", i + 1))
            .spawn(move || -> (Result<Stats, String>, Worker) {
                if let Some(c) = core {
                    args::pin(c);
                }
                let pre = if w.needs_prefill() { w.prefill() } else { Ok(()) };
                barrier.wait();
                let r = pre.and_then(|_| w.run(&shared));
                (r, w)
            })
            .map_err(|e| e.to_string())?;
        handles.push((h, core));
    }
    barrier.wait();
    let total_done = |s: &Shared| s.done.iter().map(|d| d.0.load(Ordering::Relaxed)).sum::<u64>();
    let mut last = 0;
    let tick = |secs: u64, label: &str, ctrls: &mut [Controller], last: &mut u64, t: &mut Instant| {
        std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
        let dt = t.elapsed().as_secs_f64();
        *t = Instant::now();
        progress(a, label, secs, total_done(&shared), last, dt);
        for c in ctrls.iter_mut() {
            let _ = c.keep_alive();
        }
    };
    let mut t = Instant::now();
    for s in 1..=a.warmup {
        tick(s, &format!("{label} warm-up"), ctrls, &mut last, &mut t);
    }
    shared.phase.store(worker::MEASURE, Ordering::Relaxed);
    for s in 1..=a.time.max(1) {
        tick(s, label, ctrls, &mut last, &mut t);
    }
    shared.phase.store(worker::STOP, Ordering::Relaxed);
    let mut lines = Vec::new();
    let mut total = Stats::default();
    let mut ok = true;
    let mut iops = 0.0;
    let mut back = Vec::new();
    let mut err = None;
    for (i, (h, core)) in handles.into_iter().enumerate() {
        let (r, w) = h.join().map_err(|_| "worker panicked".to_string())?;
        back.push(w);
        let st = match r {
            Ok(st) => st,
            Err(e) => {
                err = Some(e);
                continue;
            }
        };
        let name = match core {
            Some(c) => format!("qpair {} (core {c})", i + 1),
            None => format!("qpair {}", i + 1),
        };
        let l = Line::new(name, &st, st.elapsed.as_secs_f64(), a.io_size);
        iops += l.iops;
        ok &= st.errors == 0 && st.miscompares == 0;
        lines.push(l);
        total.ios += st.ios;
        total.errors += st.errors;
        total.miscompares += st.miscompares;
        total.hist.merge(&st.hist);
    }
    if let Some(e) = err {
        return Err(e);
    }
    let mut tl = Line::new(format!("{label} total"), &total, 1.0, a.io_size);
    tl.iops = iops;
    tl.mibs = iops * a.io_size as f64 / (1 << 20) as f64;
    Ok((PhaseResult { lines, total: tl, ok }, back))
}

fn connect_ceiling(addr: SocketAddr, g: &Geometry, n: usize) -> Result<Vec<IoQueue>, String> {
    (0..n)
        .map(|i| {
            IoQueue::connect(addr, "nqn.2016-06.io.nvmf-rs:ceiling", 1, i as u16 + 1, &g.cfg, g.in_capsule)
                .map_err(|e| format!("ceiling {addr}: {e}"))
        })
        .collect()
}

pub fn main(a: Args) -> i32 {
    if let Some(addr) = a.ceiling_server {
        return match std::net::TcpListener::bind(addr) {
            Ok(l) => {
                println!(
                    "nvmf-perf ceiling responder listening on {}",
                    l.local_addr().map(|a| a.to_string()).unwrap_or_default()
                );
                ceiling::serve(l, Arc::new(AtomicBool::new(false)));
                0
            }
            Err(e) => {
                eprintln!("nvmf-perf: bind {addr}: {e}");
                1
            }
        };
    }
    match run(&a) {
        Ok(true) => 0,
        Ok(false) => 2,
        Err(e) => {
            eprintln!("nvmf-perf: {e}");
            1
        }
    }
}

fn run(a: &Args) -> Result<bool, String> {
    let trid = parse_trid(&a.trid)?;
    if trid.trtype == HostTransport::Rdma && (a.ceiling || a.hdgst || a.ddgst) {
        return Err("trtype:rdma: --ceiling (an NVMe/TCP responder) and digests are NVMe/TCP only".into());
    }
    let (ctrl, g) = connect_target(a, &trid)?;
    let jobs = jobs(a, &g)?;
    // A controller grants at most MAX_IO_QUEUES I/O queues: more queue pairs get more
    // controllers (admin connections), as separate hosts would.
    let mut ctrls = vec![ctrl];
    let mut workers = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        let per = MAX_IO_QUEUES as usize;
        if i / per >= ctrls.len() {
            ctrls
                .push(Controller::connect(trid.addr, &trid.subnqn, &g.cfg).map_err(|e| format!("{}: {e}", trid.addr))?);
        }
        let qid = (i % per) as u16 + 1;
        let q = IoQueue::connect(trid.addr, &trid.subnqn, ctrls[i / per].cntlid(), qid, &g.cfg, g.in_capsule)
            .map_err(|e| format!("connect I/O queue {qid}: {e}"))?;
        workers.push(Worker::new(job.clone(), q));
    }
    let desc = format!(
        "{} {} B, QD {}, {} qpair(s), {} namespace(s){}{}",
        a.workload.name(),
        a.io_size,
        g.qd,
        a.qpairs.max(1),
        g.ns.len(),
        if a.hdgst { ", hdgst" } else { "" },
        if a.ddgst { ", ddgst" } else { "" }
    );
    if !a.json {
        println!(
            "nvmf-perf: {}{} {} -- {desc}",
            if trid.trtype == HostTransport::Rdma { "rdma " } else { "" },
            trid.addr,
            trid.subnqn
        );
    }
    // The ceiling: the same workload against the trivial responder, on its own connections.
    let stop = Arc::new(AtomicBool::new(false));
    let mut handle = None;
    let mut cworkers = Vec::new();
    if a.ceiling {
        let addr = match a.ceiling_addr {
            Some(addr) => addr,
            None => {
                let (addr, h) = ceiling::spawn("127.0.0.1:0".parse().expect("addr"), a.ceiling_core, stop.clone())
                    .map_err(|e| format!("ceiling responder: {e}"))?;
                handle = Some(h);
                addr
            }
        };
        // The responder returns zeros: no verification there.
        let queues = connect_ceiling(addr, &g, a.qpairs.max(1))?;
        cworkers = queues
            .into_iter()
            .zip(jobs)
            .map(|(q, mut j)| {
                j.verify = false;
                Worker::new(j, q)
            })
            .collect();
    }
    // Repetitions alternate target and ceiling so that both see the same machine conditions;
    // the efficiency reported is the median of the per-repetition ratios.
    let mut reps = Vec::new();
    let mut last = None;
    for rep in 0..a.repeat.max(1) {
        let (target, w) = run_phase(a, "target", workers, &mut ctrls)?;
        workers = w;
        let ceiling = if a.ceiling {
            let (c, w) = run_phase(a, "ceiling", cworkers, &mut [])?;
            cworkers = w;
            Some(c)
        } else {
            None
        };
        let eff = ceiling.as_ref().map(|c| target.total.iops / c.total.iops.max(1e-9));
        if a.repeat > 1 && !a.json {
            println!(
                "repetition {}: target {:.0} IOPS, ceiling {}, efficiency {}",
                rep + 1,
                target.total.iops,
                ceiling.as_ref().map_or("-".into(), |c| format!("{:.0} IOPS", c.total.iops)),
                eff.map_or("-".into(), |e| format!("{e:.3}"))
            );
        }
        reps.push((target.total.iops, ceiling.as_ref().map(|c| c.total.iops), eff));
        last = Some((target, ceiling));
    }
    stop.store(true, Ordering::Relaxed);
    drop(cworkers);
    if let Some(h) = handle {
        let _ = h.join();
    }
    drop(workers);
    for c in ctrls {
        let _ = c.disconnect();
    }
    let Some((target, ceiling)) = last else { return Err("no repetition ran".into()) };
    let mut effs: Vec<f64> = reps.iter().filter_map(|r| r.2).collect();
    effs.sort_by(|x, y| x.total_cmp(y));
    let eff = (!effs.is_empty()).then(|| effs[effs.len() / 2]);
    if a.json {
        let phase = |p: &PhaseResult| json!({ "qpairs": p.lines.iter().map(Line::json).collect::<Vec<_>>(), "total": p.total.json() });
        let v = json!({
            "transport": { "trtype": if trid.trtype == HostTransport::Rdma { "rdma" } else { "tcp" }, "traddr": trid.addr.ip().to_string(), "trsvcid": trid.addr.port(), "subnqn": trid.subnqn },
            "workload": a.workload.name(), "io_size": a.io_size, "queue_depth": g.qd, "qpairs": a.qpairs.max(1),
            "namespaces": g.ns.len(), "read_pct": a.workload.read_pct(a.read_pct), "time_s": a.time, "warmup_s": a.warmup,
            "hdgst": a.hdgst, "ddgst": a.ddgst, "verify": a.verify,
            "target": phase(&target),
            "ceiling": ceiling.as_ref().map(phase),
            "efficiency": eff,
            "repetitions": reps.iter().map(|r| json!({"target_iops": r.0, "ceiling_iops": r.1, "efficiency": r.2})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!();
        report::print_table(&format!("Target ({desc})"), &target.lines, &target.total);
        if let Some(c) = &ceiling {
            println!();
            report::print_table("Ceiling (trivial responder, same workload)", &c.lines, &c.total);
            println!();
            if a.repeat > 1 {
                println!("Efficiency (median of {} repetitions): {:.3}", reps.len(), eff.unwrap_or(0.0));
            } else {
                println!("Efficiency: {:.0} / {:.0} IOPS = {:.3}", target.total.iops, c.total.iops, eff.unwrap_or(0.0));
            }
        }
    }
    Ok(target.ok && ceiling.as_ref().is_none_or(|c| c.ok))
}
