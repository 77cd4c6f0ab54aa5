//! The `nvmf_tgt` binary end to end: the embedded default, several reactors, and clean
//! shutdown under load with a File bdev.

#![forbid(unsafe_code)]

mod common;

use common::*;
use nvmf::host::{Controller, HostConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);

fn host_cfg() -> HostConfig {
    HostConfig { io_timeout: Duration::from_secs(10), ..Default::default() }
}

#[test]
fn default_run_serves_a_namespace_and_exits_0_on_sigterm() {
    let _g = serial();
    // No configuration at all (only the test's port and socket): the embedded default, busy
    // polling on core 0.
    let mut t = Tgt::start(&[]);
    let mut c = Controller::connect(t.addr(), DEFAULT_NQN, &host_cfg()).expect("connect");
    let id = c.identify_controller().expect("identify controller");
    assert_eq!(id.subsystem_nqn(), DEFAULT_NQN);
    assert_eq!(c.active_namespaces().expect("active namespaces"), vec![1]);
    let ns = c.identify_namespace(1).expect("identify namespace");
    assert_eq!(ns.nsze.get(), 1024 * 1024 * 1024 / 512, "1 GiB of 512-byte blocks");

    let mut q = c.connect_io_queue(1).expect("io queue");
    for (lba, blocks) in [(0u64, 1u32), (100, 8), (4096, 256)] {
        let data = pattern(1, lba, blocks as usize * 512);
        q.write(1, lba, blocks, &data).expect("write");
        let mut back = vec![0u8; data.len()];
        q.read(1, lba, blocks, &mut back).expect("read");
        assert!(back == data, "read-back differs at lba {lba}");
    }
    assert_eq!(t.wait_count("-> reactor 0 (core 0)", 2, SEC), 2, "admin and I/O queue on the only reactor");

    // Hosts still connected: SIGTERM disconnects them and exits 0.
    t.terminate(Duration::from_secs(15));
    assert!(t.count_log("reactor 0 (core 0) stopped") == 1, "reactor joined");
    assert!(!t.rpc_socket.exists(), "RPC socket removed");
    // The host sees the connection gone.
    let mut back = vec![0u8; 512];
    assert!(q.read(1, 0, 1, &mut back).is_err(), "I/O after shutdown must fail");
}

#[test]
fn two_reactors_least_loaded_eight_hosts_verified_io() {
    let _g = serial();
    let mut t =
        Tgt::start(&["--cpus", "0,1", "--placement", "least-loaded", "--idle-backoff-us", "20", "--size-mb", "256"]);
    assert!(t.wait_log("2 reactor(s) on core(s) [0, 1]", Duration::from_secs(5)));
    const HOSTS: u64 = 8;
    const REGION: u64 = 256 * 1024 * 1024 / 512 / HOSTS;
    std::thread::scope(|s| {
        for h in 0..HOSTS {
            let addr = t.addr();
            s.spawn(move || {
                let mut c = Controller::connect(addr, DEFAULT_NQN, &host_cfg()).expect("connect");
                let mut qa = c.connect_io_queue(1).expect("io queue 1");
                let mut qb = c.connect_io_queue(2).expect("io queue 2");
                let base = h * REGION;
                // Mixed sizes, in-capsule and through R2T.
                let sizes = [1u32, 8, 64, 256];
                let mut written = Vec::new();
                let mut lba = base;
                for i in 0..48usize {
                    let nlb = sizes[i % sizes.len()];
                    let data = pattern(h, lba, nlb as usize * 512);
                    let q = if i % 2 == 0 { &mut qa } else { &mut qb };
                    q.write(1, lba, nlb, &data).expect("write");
                    written.push((lba, nlb));
                    lba += nlb as u64;
                }
                assert!(lba < base + REGION);
                for (i, &(lba, nlb)) in written.iter().enumerate() {
                    // Read back through the other queue (likely on the other reactor).
                    let q = if i % 2 == 0 { &mut qb } else { &mut qa };
                    let mut back = vec![0u8; nlb as usize * 512];
                    q.read(1, lba, nlb, &mut back).expect("read");
                    assert!(back == pattern(h, lba, back.len()), "host {h}: read-back differs at lba {lba}");
                }
                c.keep_alive().expect("keep alive");
                // Stay connected until every host is done, so placement saw them all.
                (c, qa, qb)
            });
        }
    });
    // 8 admin + 16 I/O connections, spread by load.
    t.wait_count("] accepted ", 24, SEC);
    let r0 = t.count_log("-> reactor 0 (core 0)");
    let r1 = t.count_log("-> reactor 1 (core 1)");
    assert_eq!(r0 + r1, 24, "every connection placed once");
    assert!(r0 >= 8 && r1 >= 8, "least-loaded placement is lopsided: {r0} / {r1}");
    // Each reactor says whether it pinned itself (done before it served anything).
    let pinned = t.wait_count("started on core", 2, SEC);
    let unpinned = t.count_log("cannot pin");
    assert_eq!(pinned + unpinned, 2, "two reactors started");
    t.terminate(Duration::from_secs(15));
    assert_eq!(t.count_log(") stopped:"), 2);
}

#[test]
fn round_robin_alternates_and_cpumask_selects_cores() {
    let _g = serial();
    let mut t = Tgt::start(&["-m", "0x3", "--idle-backoff-us", "50", "--size-mb", "16"]);
    let mut c = Controller::connect(t.addr(), DEFAULT_NQN, &host_cfg()).expect("connect");
    let qs: Vec<_> = (1..=3).map(|qid| c.connect_io_queue(qid).expect("io queue")).collect();
    t.wait_count("] accepted ", 4, SEC);
    assert_eq!(t.count_log("-> reactor 0 (core 0)"), 2);
    assert_eq!(t.count_log("-> reactor 1 (core 1)"), 2);
    drop(qs);
    t.terminate(Duration::from_secs(15));
}

#[test]
fn framework_get_reactors_over_the_rpc_subcommand() {
    let _g = serial();
    let mut t = Tgt::start(&["--cpus", "0,1", "--idle-backoff-us", "50", "--size-mb", "16"]);
    let mut c = Controller::connect(t.addr(), DEFAULT_NQN, &host_cfg()).expect("connect");
    let _q = c.connect_io_queue(1).expect("io queue");
    // Reactors publish their counts after a poll: wait for them.
    let end = Instant::now() + Duration::from_secs(5);
    let reactors = loop {
        let (code, out, _) = t.rpc(&["framework_get_reactors"]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
        let r = v["reactors"].as_array().expect("reactors").clone();
        let conns: u64 = r.iter().map(|x| x["connections"].as_u64().unwrap_or(0)).sum();
        if conns == 2 || Instant::now() > end {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let lcores: Vec<u64> = reactors.iter().map(|x| x["lcore"].as_u64().expect("lcore")).collect();
    assert_eq!(lcores, vec![0, 1]);
    let conns: Vec<u64> = reactors.iter().map(|x| x["connections"].as_u64().expect("connections")).collect();
    assert_eq!(conns, vec![1, 1], "round-robin: admin queue on reactor 0, I/O queue on reactor 1");
    // busy/idle count poll iterations: both grow, and reactors that served commands were busy.
    for r in &reactors {
        let (busy, idle) = (r["busy"].as_u64().expect("busy"), r["idle"].as_u64().expect("idle"));
        assert!(busy > 0 && idle > 0, "reactor {r}");
    }
    let (code, out, _) = t.rpc(&["nvmf_get_stats"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    let groups = v["poll_groups"].as_array().expect("poll groups");
    let conns: Vec<u64> = groups.iter().map(|g| g["current_io_qpairs"].as_u64().expect("current_io_qpairs")).collect();
    assert_eq!(conns, vec![1, 1]);
    assert!(groups.iter().all(|g| g["busy"].as_u64() > Some(0) && g["io_qpairs"].as_u64() == Some(1)), "{v}");
    let (code, _, _) = t.rpc(&["no_such_method"]);
    assert_ne!(code, 0);
    t.terminate(Duration::from_secs(15));
}

/// Configured only over RPC: the TCP transport is created after the reactors started, so they
/// get new poll groups with it.
#[test]
fn no_default_configured_over_rpc_serves_io() {
    let _g = serial();
    let mut t = Tgt::start_empty(&["--cpus", "0,1", "--idle-backoff-us", "50"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let nqn = "nqn.2016-06.io.nvmf-rs:rpc-made";
    let port_s = port.to_string();
    for args in [
        vec!["nvmf_create_transport", "--trtype", "TCP"],
        vec!["bdev_malloc_create", "--name", "Malloc7", "--num_blocks", "32768", "--block_size", "512"],
        vec!["nvmf_create_subsystem", "--nqn", nqn, "--allow_any_host", "true"],
        vec!["nvmf_subsystem_add_ns", "--nqn", nqn, "--namespace.bdev_name", "Malloc7"],
        vec![
            "nvmf_subsystem_add_listener",
            "--nqn",
            nqn,
            "--listen_address.trtype",
            "TCP",
            "--listen_address.adrfam",
            "IPv4",
            "--listen_address.traddr",
            "127.0.0.1",
            "--str",
            "listen_address.trsvcid",
            &port_s,
        ],
    ] {
        let (code, _, err) = t.rpc(&args);
        assert_eq!(code, 0, "rpc {args:?}: {err}");
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = Controller::connect(addr, nqn, &host_cfg()).expect("connect");
    let mut qa = c.connect_io_queue(1).expect("io queue 1");
    let mut qb = c.connect_io_queue(2).expect("io queue 2");
    let data = pattern(7, 64, 64 * 512);
    qa.write(1, 64, 64, &data).expect("write");
    let mut back = vec![0u8; data.len()];
    qb.read(1, 64, 64, &mut back).expect("read");
    assert!(back == data);
    assert_eq!(t.wait_count("] accepted ", 3, SEC), 3);
    assert_eq!(t.count_log("dropping connection"), 0);
    t.terminate(Duration::from_secs(15));
}

/// Writes acknowledged before SIGTERM survive a restart on the same file.
#[test]
fn shutdown_under_load_loses_no_acknowledged_write() {
    let _g = serial();
    const WRITERS: u64 = 2;
    const NLB: u32 = 8; // 4 KiB writes
    const DEPTH: usize = 16;
    let file = TempFile::new("file-bdev", 256 * 1024 * 1024);
    let path = file.path().to_str().expect("utf-8 temp path").to_string();
    let mut t = Tgt::start(&["--bdev", &path, "--cpus", "0,1", "--idle-backoff-us", "20"]);
    let slots = 256 * 1024 * 1024 / 512 / NLB as u64 / WRITERS;

    // Per writer: LBAs whose write completed successfully.
    let acked: Arc<Mutex<Vec<Vec<u64>>>> = Arc::new(Mutex::new(vec![Vec::new(); WRITERS as usize]));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let addr = t.addr();
        let acked = acked.clone();
        writers.push(std::thread::spawn(move || -> (u64, String) {
            let cfg = HostConfig { io_timeout: Duration::from_secs(5), ..Default::default() };
            let mut c = Controller::connect(addr, DEFAULT_NQN, &cfg).expect("connect");
            let mut q = c.connect_io_queue(1).expect("io queue");
            let mut inflight: HashMap<u16, u64> = HashMap::new();
            let mut next = 0u64;
            let mut submitted = 0u64;
            let why = 'outer: loop {
                while inflight.len() < DEPTH && next < slots {
                    let lba = (w * slots + next) * NLB as u64;
                    match q.submit_write(1, lba, NLB, &pattern(w + 1, lba, NLB as usize * 512)) {
                        Ok(cid) => {
                            inflight.insert(cid, lba);
                            submitted += 1;
                            next += 1;
                        }
                        Err(e) => break 'outer format!("submit: {e}"),
                    }
                }
                if inflight.is_empty() {
                    break "region full".to_string();
                }
                let mut done = Vec::new();
                let r = q.poll(|cid, cqe, _| done.push((cid, cqe.is_success())));
                let mut a = acked.lock().unwrap();
                for (cid, ok) in done {
                    if let Some(lba) = inflight.remove(&cid) {
                        if ok {
                            a[w as usize].push(lba);
                        }
                    }
                }
                drop(a);
                if let Err(e) = r {
                    break format!("poll: {e}");
                }
            };
            (submitted, why)
        }));
    }
    // Let the writers get going, then stop the target while they are still writing.
    let start = Instant::now();
    loop {
        let n: usize = acked.lock().unwrap().iter().map(Vec::len).sum();
        if n >= 2000 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "writers too slow: {n} writes acknowledged");
        assert!(writers.iter().all(|w| !w.is_finished()), "a writer stopped early");
        std::thread::sleep(Duration::from_millis(5));
    }
    t.terminate(Duration::from_secs(20));
    let mut submitted = 0;
    for w in writers {
        let (s, why) = w.join().expect("writer panicked");
        eprintln!("writer stopped after {s} writes: {why}");
        assert_ne!(why, "region full", "the writer was not writing when the target stopped");
        submitted += s;
    }
    let acked = Arc::try_unwrap(acked).expect("writers joined").into_inner().unwrap();
    let total: usize = acked.iter().map(Vec::len).sum();
    eprintln!("{total} of {submitted} writes acknowledged before shutdown");
    assert!(total >= 2000);

    // Restart on the same file and read back every acknowledged write.
    let mut t = Tgt::start(&["--bdev", &path, "--idle-backoff-us", "20"]);
    let mut c = Controller::connect(t.addr(), DEFAULT_NQN, &host_cfg()).expect("connect after restart");
    let mut q = c.connect_io_queue(1).expect("io queue");
    let mut back = vec![0u8; NLB as usize * 512];
    for (w, lbas) in acked.iter().enumerate() {
        for &lba in lbas {
            q.read(1, lba, NLB, &mut back).expect("read after restart");
            assert!(
                back == pattern(w as u64 + 1, lba, back.len()),
                "acknowledged write at lba {lba} (writer {w}) lost"
            );
        }
    }
    t.terminate(Duration::from_secs(15));
}

/// DH-HMAC-CHAP with ffdhe8192 against nvmf_tgt: its work thread runs the exponentiations and
/// is joined at shutdown.
#[test]
fn ffdhe8192_handshake_and_the_work_thread_joined_at_shutdown() {
    use nvmf::auth::{DhGroup, HashId, Secret};
    let _g = serial();
    const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:9d2f4c1e-7b8a-4e36-a5c0-3f1d6e2b8a47";
    const KEY: &str = "DHHC-1:01:FXxHMF/wOdhX0qUZw2Cd4EvRbJ9L57chOXvRTS1yeX9f/gxI:";
    let mut t = Tgt::start(&[]);
    let (code, _, err) = t.rpc(&["nvmf_subsystem_add_host", "--nqn", DEFAULT_NQN, "--host", HOST, "--dhchap_key", KEY]);
    assert_eq!(code, 0, "add host: {err}");
    let cfg = HostConfig {
        hostnqn: HOST.into(),
        dhchap_secret: Some(Secret::parse(KEY).expect("secret")),
        dhchap_dhgroups: vec![DhGroup::Ffdhe8192],
        dhchap_digests: vec![HashId::Sha256],
        ..host_cfg()
    };
    let mut c = Controller::connect(t.addr(), DEFAULT_NQN, &cfg).expect("ffdhe8192 handshake");
    let mut q = c.connect_io_queue(1).expect("authenticated io queue");
    let data = pattern(3, 8, 4096);
    q.write(1, 8, 8, &data).expect("write");
    let mut back = vec![0u8; data.len()];
    q.read(1, 8, 8, &mut back).expect("read");
    assert!(back == data, "read-back differs");
    assert_eq!(t.wait_count("authenticated (sha256, ffdhe8192)", 2, SEC), 2, "admin and I/O queue");
    t.terminate(Duration::from_secs(15));
    assert_eq!(t.count_log("work thread joined"), 1, "work thread joined at shutdown");
}
