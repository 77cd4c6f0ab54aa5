//! `host_check`: our NVMe/TCP or NVMe/RDMA host (`nvmf::host`) against any target, normally the
//! Linux kernel target (nvmet-tcp) in the QEMU test bed's `host-vs-nvmet` step: an independent
//! implementation checks our host side; over RDMA (`--trtype rdma`, needs a build with the
//! `nvmf/rdma` feature, e.g. `--features nvmf-tgt/rdma`) nvmf_tgt on soft-RoCE in the `rdma` step.
//!
//! ```text
//! host_check ADDR:PORT SUBNQN [--trtype tcp|rdma] [--digests none|header|data|both] [--hostnqn NQN]
//! ```
//!
//! Discovery log (through the discovery controller), connect, Identify Controller and Namespace,
//! active namespace list, write/read-back verify of several sizes (512 B .. 2 MiB, split by the
//! controller's MDTS), pipelined I/O on two queues, Flush, fused Compare and Write (when the
//! controller reports FUSES bit 0), orderly shutdown. Prints one
//! `CHECK <name> ok|FAILED ...` line per check and exits 1 if any failed.

#![forbid(unsafe_code)]

use nvmf::host::{Controller, HostConfig, HostTransport};
use nvmf::spec::discovery::DiscoveryLogEntry;
use nvmf_test_support::pattern;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn field(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim().to_string()
}

struct Args {
    addr: SocketAddr,
    nqn: String,
    hdgst: bool,
    ddgst: bool,
    hostnqn: Option<String>,
    trtype: HostTransport,
}

fn parse() -> Result<Args, String> {
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = Vec::new();
    let (mut hdgst, mut ddgst, mut hostnqn, mut trtype) = (false, false, None, HostTransport::Tcp);
    let mut i = 0;
    while i < v.len() {
        match v[i].as_str() {
            "--digests" => {
                i += 1;
                match v.get(i).map(String::as_str) {
                    Some("none") => {}
                    Some("header") => hdgst = true,
                    Some("data") => ddgst = true,
                    Some("both") => (hdgst, ddgst) = (true, true),
                    o => return Err(format!("--digests {o:?}: none|header|data|both")),
                }
            }
            "--trtype" => {
                i += 1;
                trtype = v.get(i).ok_or("--trtype needs a value")?.parse()?;
            }
            "--hostnqn" => {
                i += 1;
                hostnqn = Some(v.get(i).ok_or("--hostnqn needs a value")?.clone());
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => pos.push(s.to_string()),
        }
        i += 1;
    }
    if pos.len() != 2 {
        return Err(
            "usage: host_check ADDR:PORT SUBNQN [--trtype tcp|rdma] [--digests none|header|data|both] [--hostnqn NQN]"
                .into(),
        );
    }
    if trtype == HostTransport::Rdma && (hdgst || ddgst) {
        return Err("--digests: NVMe/TCP only".into());
    }
    let addr = pos[0].parse().map_err(|e| format!("{}: {e}", pos[0]))?;
    Ok(Args { addr, nqn: pos[1].clone(), hdgst, ddgst, hostnqn, trtype })
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("host_check: {e}");
            std::process::exit(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut cfg = HostConfig {
        transport: a.trtype,
        header_digest: a.hdgst,
        data_digest: a.ddgst,
        kato_ms: 0,
        io_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    if let Some(h) = &a.hostnqn {
        cfg.hostnqn = h.clone();
    }
    let mut failed = 0;
    let mut report = |name: &str, r: Result<String, String>| match r {
        Ok(s) => println!("CHECK {name} ok: {s}"),
        Err(e) => {
            println!("CHECK {name} FAILED: {e}");
            failed += 1;
        }
    };
    let t0 = Instant::now();
    println!("host_check: {:?} {} {} digests: header={} data={}", a.trtype, a.addr, a.nqn, a.hdgst, a.ddgst);

    // Discovery.
    let disc = (|| -> Result<String, String> {
        let mut d = Controller::connect(a.addr, "nqn.2014-08.org.nvmexpress.discovery", &cfg)
            .map_err(|e| format!("connect: {e}"))?;
        let (genctr, entries): (u64, Vec<DiscoveryLogEntry>) = d.discovery_log().map_err(|e| format!("log: {e}"))?;
        let names: Vec<String> = entries
            .iter()
            .map(|e| {
                format!("{} at {}:{} (trtype {})", field(&e.subnqn), field(&e.traddr), field(&e.trsvcid), e.trtype)
            })
            .collect();
        let _ = d.disconnect();
        if !entries.iter().any(|e| field(&e.subnqn) == a.nqn) {
            return Err(format!("{} not in the discovery log: {names:?}", a.nqn));
        }
        Ok(format!("genctr {genctr}, {} records: {}", entries.len(), names.join("; ")))
    })();
    report("discovery", disc);

    let mut ctrl = match Controller::connect(a.addr, &a.nqn, &cfg) {
        Ok(c) => c,
        Err(e) => {
            report("connect", Err(e.to_string()));
            println!("host_check: FAILED");
            std::process::exit(1);
        }
    };
    report("connect", Ok(format!("cntlid {}, CAP {:#x}, VS {:#x}", ctrl.cntlid(), ctrl.cap().0, ctrl.vs().0)));

    let mut mdts_bytes = 1usize << 20;
    let mut fused = false;
    match ctrl.identify_controller() {
        Ok(id) => {
            fused = id.fuses.get() & 1 != 0;
            let mps = ctrl.cap().min_page_size();
            if id.mdts != 0 {
                mdts_bytes = mps << id.mdts;
            } else {
                mdts_bytes = 8 << 20;
            }
            let ok = id.subsystem_nqn() == a.nqn;
            let s = format!(
                "model '{}' serial '{}' fw '{}' subnqn '{}' mdts {} ({} bytes) nn {} ioccsz {} maxcmd {} sgls {:#x}",
                id.model().trim(),
                id.serial().trim(),
                id.firmware().trim(),
                id.subsystem_nqn(),
                id.mdts,
                mdts_bytes,
                id.nn.get(),
                id.ioccsz.get(),
                id.maxcmd.get(),
                id.sgls.get()
            );
            report("identify-ctrl", if ok { Ok(s) } else { Err(format!("subnqn mismatch: {s}")) });
        }
        Err(e) => report("identify-ctrl", Err(e.to_string())),
    }
    let nsids = ctrl.active_namespaces().unwrap_or_default();
    let nsid = *nsids.first().unwrap_or(&1);
    let (bs, nsze) = match ctrl.identify_namespace(nsid) {
        Ok(ns) => {
            let bs = ns.block_size();
            report(
                "identify-ns",
                if ns.nsze.get() > 0 && bs >= 512 {
                    Ok(format!(
                        "active {nsids:?}; nsid {nsid}: nsze {} ncap {} block size {bs}",
                        ns.nsze.get(),
                        ns.ncap.get()
                    ))
                } else {
                    Err(format!("nsze {} block size {bs}", ns.nsze.get()))
                },
            );
            (bs as usize, ns.nsze.get())
        }
        Err(e) => {
            report("identify-ns", Err(e.to_string()));
            (512, 0)
        }
    };

    let mut io = match ctrl.connect_io_queue(1) {
        Ok(q) => q,
        Err(e) => {
            report("io-queue", Err(e.to_string()));
            println!("host_check: FAILED");
            std::process::exit(1);
        }
    };
    report(
        "io-queue",
        Ok(format!("qid {}, depth {}, in-capsule {} bytes", io.qid(), io.depth(), io.in_capsule_size())),
    );

    // Write/read verify of several sizes, each split into commands of at most MDTS.
    let sizes = [512usize, 4096, 8192 + 512, 65536, 131072, 1 << 20, 2 << 20];
    let mut lba = 0u64;
    for &size in &sizes {
        let size = size.max(bs) / bs * bs;
        let blocks = (size / bs) as u64;
        if lba + blocks > nsze {
            report(&format!("rw-{size}"), Err(format!("namespace of {nsze} blocks too small")));
            continue;
        }
        let data = pattern(size as u64, lba, size);
        let t = Instant::now();
        let r = (|| -> Result<String, String> {
            let chunk = mdts_bytes.min(size);
            let mut cmds = 0;
            for (i, c) in data.chunks(chunk).enumerate() {
                let l = lba + (i * chunk / bs) as u64;
                io.write(nsid, l, (c.len() / bs) as u32, c).map_err(|e| format!("write at LBA {l}: {e}"))?;
                cmds += 1;
            }
            let mut back = vec![0u8; size];
            for (i, c) in back.chunks_mut(chunk).enumerate() {
                let l = lba + (i * chunk / bs) as u64;
                io.read(nsid, l, (c.len() / bs) as u32, c).map_err(|e| format!("read at LBA {l}: {e}"))?;
            }
            if back != data {
                let at = back.iter().zip(&data).position(|(x, y)| x != y).unwrap_or(0);
                return Err(format!("read back differs at byte {at}"));
            }
            Ok(format!(
                "LBA {lba}: {size} bytes in {cmds} write(s) of up to {chunk} bytes, read back identical ({:?})",
                t.elapsed()
            ))
        })();
        report(&format!("rw-{size}"), r);
        lba += blocks.next_multiple_of(8);
    }

    // Pipelined: 16 writes in flight on a second queue, then reads on the first.
    let pipe = (|| -> Result<String, String> {
        let mut q2 = ctrl.connect_io_queue(2).map_err(|e| format!("connect queue 2: {e}"))?;
        let n = 16u64.min(q2.depth() as u64);
        let len = 16384usize;
        let base = lba;
        let mut pending = std::collections::HashSet::new();
        for i in 0..n {
            let cid = q2
                .submit_write(nsid, base + i * (len / bs) as u64, (len / bs) as u32, &pattern(1000 + i, 0, len))
                .map_err(|e| format!("submit write {i}: {e}"))?;
            pending.insert(cid);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut err = None;
        while !pending.is_empty() {
            q2.poll(|cid, cqe, _| {
                pending.remove(&cid);
                if !cqe.is_success() {
                    err.get_or_insert(format!("write cid {cid}: status {:#x}", cqe.status.get()));
                }
            })
            .map_err(|e| format!("poll: {e}"))?;
            if Instant::now() > deadline {
                return Err(format!("{} writes still pending after 30 s", pending.len()));
            }
        }
        if let Some(e) = err {
            return Err(e);
        }
        q2.flush(nsid).map_err(|e| format!("flush: {e}"))?;
        q2.disconnect().map_err(|e| format!("disconnect queue 2: {e}"))?;
        for i in 0..n {
            let mut b = vec![0u8; len];
            io.read(nsid, base + i * (len / bs) as u64, (len / bs) as u32, &mut b)
                .map_err(|e| format!("read {i}: {e}"))?;
            if b != pattern(1000 + i, 0, len) {
                return Err(format!("block group {i} differs"));
            }
        }
        Ok(format!("{n} x {len} bytes in flight on queue 2, flushed, read back on queue 1"))
    })();
    report("pipelined", pipe);

    // Fused Compare and Write (when FUSES bit 0 says so): a matching pair writes, a miscompare
    // fails the Compare (2h/85h) and aborts the Write (0h/09h); one block, and 16 KiB (data
    // moved by R2T or RDMA Read).
    let cas = (|| -> Result<String, String> {
        if !fused {
            return Ok("skipped: FUSES bit 0 clear".into());
        }
        let l = lba + 16 * 32 + 64;
        let mut done = Vec::new();
        for size in [bs, 16384usize.max(bs)] {
            let nlb = (size / bs) as u32;
            let (old, new, other) = (pattern(77, l, size), pattern(78, l, size), pattern(79, l, size));
            io.write(nsid, l, nlb, &old).map_err(|e| format!("write: {e}"))?;
            let (c, w) = io.compare_and_write(nsid, l, nlb, &old, &new).map_err(|e| format!("pair: {e}"))?;
            if !c.is_success() || !w.is_success() {
                return Err(format!("matching pair: statuses {:?} / {:?}", c.status(), w.status()));
            }
            let (c, w) = io.compare_and_write(nsid, l, nlb, &old, &other).map_err(|e| format!("pair: {e}"))?;
            let (cs, ws) = (c.status(), w.status());
            if (cs.sct(), cs.sc(), ws.sct(), ws.sc()) != (2, 0x85, 0, 0x09) {
                return Err(format!("miscompare: statuses {cs:?} / {ws:?}"));
            }
            let mut back = vec![0u8; size];
            io.read(nsid, l, nlb, &mut back).map_err(|e| format!("read: {e}"))?;
            if back != new {
                return Err(format!("{size} bytes at LBA {l}: not what the matching pair wrote"));
            }
            done.push(size.to_string());
        }
        Ok(format!("LBA {l}: {} bytes swapped; miscompare aborted the Write", done.join(" and ")))
    })();
    report("compare-and-write", cas);

    let r = io.disconnect().map_err(|e| e.to_string());
    let r = r.and_then(|()| ctrl.shutdown().map_err(|e| format!("shutdown: {e}")));
    report("shutdown", r.map(|()| "I/O queue closed, CSTS.SHST complete".into()));
    let _ = ctrl.disconnect();

    if failed == 0 {
        println!("host_check: PASS ({:?})", t0.elapsed());
    } else {
        println!("host_check: FAILED ({failed} checks)");
        std::process::exit(1);
    }
}
