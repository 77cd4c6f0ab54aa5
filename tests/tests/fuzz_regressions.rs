//! The fuzz targets' inputs, replayed in a normal `cargo test` through the same entry points the
//! `cargo fuzz` targets call (`nvmf_tests::fuzz`): every seed of `fuzz/seeds/<target>/` and every
//! input that once crashed a target, kept in `fuzz/regressions/<target>/`.
//!
//! `write_seed_corpora` (ignored) regenerates the seeds: the `tcp_pdu_stream` ones are captured
//! from the host client talking to a target through a recording proxy, the `commands` ones are
//! built from real command encodings. See docs/reliability.md.

#![forbid(unsafe_code)]

use nvmf::bdev::{Bdev, MallocBdev};
use nvmf::host::{Controller, HostConfig};
use nvmf::spec::fabrics::PropertyCmd;
use nvmf::spec::{reg, FabricsType, Sqe};
use nvmf_tests::fuzz::Stats;
use nvmf_tests::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zerocopy::IntoBytes;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Files in `fuzz/<kind>/<target>/`, sorted.
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut v: Vec<_> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).expect("read input");
            (p, data)
        })
        .collect();
    v.sort();
    v
}

/// Replay the seeds (each must still get through: completions, no C2HTermReq, and for captured
/// host sessions no error status), then every kept crash input (must simply not fail the checks).
fn replay(target: &str, run: fn(&[u8]) -> Stats, seeds_error_free: bool) {
    let _ = env_logger::builder().is_test(true).try_init();
    let seeds = inputs("seeds", target);
    assert!(!seeds.is_empty(), "no seeds in fuzz/seeds/{target}");
    for (p, data) in &seeds {
        let st = run(data);
        eprintln!("seed {}: {st:?}", p.display());
        assert!(st.success > 0 && st.term_reqs == 0, "seed {} no longer gets through: {st:?}", p.display());
        if seeds_error_free {
            assert_eq!(st.errors, 0, "seed {}", p.display());
        }
    }
    for (p, data) in inputs("regressions", target) {
        let st = run(&data);
        eprintln!("regression {}: {st:?}", p.display());
    }
}

#[test]
fn tcp_pdu_stream_seeds_and_regressions() {
    replay("tcp_pdu_stream", nvmf_tests::fuzz::tcp_pdu_stream, true);
}

/// The first finding (crash-ea3c1050...): data and the peer's RST (or FIN) reported in one
/// poller edge; after a short read the target waited for another edge that never came and kept
/// the connection forever. Here: 1 byte then a reset on one connection, 5 bytes then a
/// half-close on another, each written before the target polls.
#[test]
fn data_with_reset_or_fin_in_one_edge_closes_the_connection() {
    let icreq = nvmf::host::pdu::icreq(false, false, 0, 0);
    let icreq = icreq.as_bytes();
    let mut input = vec![0x08, 1, 0, icreq[0]]; // connection 0: 1 byte, then reset
    input.extend_from_slice(&[0x05, 5, 0]); // connection 1: 5 bytes, then half-close
    input.extend_from_slice(&icreq[..5]);
    // An ICReq and a half-close: the ICResp comes back, then the connection closes.
    input.extend_from_slice(&[0x06, 128, 0]);
    input.extend_from_slice(icreq);
    let st = nvmf_tests::fuzz::tcp_pdu_stream(&input); // panics if a connection is left over
    assert_eq!(st, Stats::default());
}

#[test]
fn commands_seeds_and_regressions() {
    replay("commands", nvmf_tests::fuzz::commands, false);
}

#[test]
fn passthru_seeds_and_regressions() {
    // The harness itself panics on a DMA guard violation or a lost completion.
    replay("passthru", |d| Stats { success: nvmf_tests::fuzz_passthru::passthru(d), ..Default::default() }, false);
}

// ---- Seed generation -------------------------------------------------------------------------

/// Host-to-target bytes captured by [`Recorder`]: (connection number, bytes), in the order the
/// proxy read them.
type Capture = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

/// A TCP proxy in front of a target that records what hosts send.
struct Recorder {
    addr: SocketAddr,
    log: Capture,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The threads recording each host's bytes: each ends at that host's EOF.
    readers: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
}

impl Recorder {
    fn start(target: SocketAddr) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let log: Capture = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let readers: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>> = Arc::default();
        let readers2 = readers.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !stop2.load(Ordering::Relaxed) {
                let Ok((host, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                host.set_nonblocking(false).expect("blocking");
                let tgt = TcpStream::connect(target).expect("connect to the target");
                let _ = (host.set_nodelay(true), tgt.set_nodelay(true));
                let (mut h_rd, mut t_wr) = (host.try_clone().expect("clone"), tgt.try_clone().expect("clone"));
                let (mut t_rd, mut h_wr) = (tgt, host);
                let (log3, idx) = (log2.clone(), n);
                n += 1;
                // Pushed before any byte is forwarded, so before the host sees a response.
                readers2.lock().unwrap().push(std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 20];
                    while let Ok(k) = h_rd.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        // Record before forwarding: a segment never precedes what caused it.
                        log3.lock().unwrap().push((idx, buf[..k].to_vec()));
                        if t_wr.write_all(&buf[..k]).is_err() {
                            break;
                        }
                    }
                    let _ = t_wr.shutdown(Shutdown::Write);
                }));
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut t_rd, &mut h_wr);
                    let _ = h_wr.shutdown(Shutdown::Write);
                });
            }
        });
        Recorder { addr, log, stop, thread: Some(thread), readers }
    }

    /// The capture as a `tcp_pdu_stream` input: `[connection][len][bytes]` segments. Waits
    /// until every host connection reached EOF, so the capture holds each host's last bytes.
    fn segments(&self) -> Vec<u8> {
        let readers = std::mem::take(&mut *self.readers.lock().unwrap());
        for r in readers {
            r.join().expect("recording thread");
        }
        let mut out = Vec::new();
        for (conn, bytes) in self.log.lock().unwrap().iter() {
            for chunk in bytes.chunks(0xffff) {
                out.push((*conn % 4) as u8);
                out.extend_from_slice(&(chunk.len() as u16).to_le_bytes());
                out.extend_from_slice(chunk);
            }
        }
        out
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The same namespaces as the fuzz harness's target (`nvmf_tests::fuzz::Loopback`).
fn fuzz_shaped_target() -> TestTarget {
    let bdevs: Vec<Arc<dyn Bdev>> = vec![
        Arc::new(MallocBdev::new("Malloc0", 2048, 512).expect("malloc")),
        Arc::new(MallocBdev::new("Malloc1", 256, 4096).expect("malloc")),
    ];
    TestTarget::start(TargetSpec { bdevs, ..Default::default() })
}

/// Run `session` as a host through a recording proxy in front of a fresh target; returns the
/// captured host-to-target stream.
fn capture(cfg: HostConfig, session: impl FnOnce(SocketAddr, &HostConfig)) -> Vec<u8> {
    let t = fuzz_shaped_target();
    let rec = Recorder::start(t.addr);
    session(rec.addr, &cfg);
    rec.segments()
}

fn connect(addr: SocketAddr, cfg: &HostConfig) -> Controller {
    Controller::connect(addr, NQN, cfg).expect("connect")
}

fn tcp_pdu_stream_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds = Vec::new();
    seeds.push((
        "admin_identify_logs_features",
        capture(HostConfig::default(), |a, cfg| {
            let mut c = connect(a, cfg);
            c.identify_controller().expect("identify");
            c.identify_namespace(1).expect("identify ns");
            c.active_namespaces().expect("active ns");
            c.ns_descriptors(1).expect("descriptors");
            c.get_log_page(0x02, 0xffff_ffff, 512, 0).expect("smart");
            c.get_log_page(0x01, 0, 64, 0).expect("error log");
            c.get_features(0x07, 0).expect("number of queues");
            c.set_features(0x0b, 0x100).expect("async event config");
            c.keep_alive().expect("keep alive");
            c.shutdown().expect("shutdown");
        }),
    ));
    seeds.push((
        "io_in_capsule_write_read_compare",
        capture(HostConfig::default(), |a, cfg| {
            let mut c = connect(a, cfg);
            let mut q = c.connect_io_queue(1).expect("io queue");
            let data = pattern(1, 8, 4096);
            q.write(1, 8, 8, &data).expect("write");
            let mut back = vec![0u8; 4096];
            q.read(1, 8, 8, &mut back).expect("read");
            q.compare(1, 8, 8, &data).expect("compare");
            q.flush(1).expect("flush");
            q.write_zeroes(1, 16, 8).expect("write zeroes");
            q.deallocate(1, &[(100, 8), (200, 1)]).expect("deallocate");
            q.disconnect().expect("disconnect io");
            c.disconnect().expect("disconnect");
        }),
    ));
    seeds.push((
        "io_r2t_h2cdata_c2hdata",
        capture(HostConfig::default(), |a, cfg| {
            let mut c = connect(a, cfg);
            let mut q = c.connect_io_queue(1).expect("io queue");
            // 132 KiB: one R2T answered with two H2CData PDUs (MAXH2CDATA 128 KiB).
            let data = pattern(2, 512, 132 * 1024);
            q.write(1, 512, 264, &data).expect("write");
            let mut back = vec![0u8; 132 * 1024];
            q.read(1, 512, 264, &mut back).expect("read");
            // Namespace 2, 4 KiB blocks, through R2T.
            q.write(2, 4, 4, &pattern(3, 4, 16384)).expect("write ns 2");
        }),
    ));
    seeds.push((
        "digests_r2t",
        capture(HostConfig { header_digest: true, data_digest: true, ..Default::default() }, |a, cfg| {
            let mut c = connect(a, cfg);
            let mut q = c.connect_io_queue(1).expect("io queue");
            q.write(1, 64, 32, &pattern(4, 64, 16384)).expect("write");
            q.write(1, 96, 2, &pattern(4, 96, 1024)).expect("in-capsule write");
            let mut back = vec![0u8; 16384];
            q.read(1, 64, 32, &mut back).expect("read");
        }),
    ));
    seeds.push((
        "two_io_queues_pipelined",
        capture(HostConfig::default(), |a, cfg| {
            let mut c = connect(a, cfg);
            let mut q1 = c.connect_io_queue(1).expect("io queue 1");
            let mut q2 = c.connect_io_queue(2).expect("io queue 2");
            for i in 0..8u64 {
                q1.submit_write(1, i * 4, 4, &pattern(5, i, 2048)).expect("submit");
                q2.submit_read(1, 1024 + i * 8, 8, 4096).expect("submit read");
            }
            let (mut a1, mut a2) = (8, 8);
            while a1 + a2 > 0 {
                a1 -= q1.poll(|_, _, _| {}).expect("poll");
                a2 -= q2.poll(|_, _, _| {}).expect("poll");
            }
        }),
    ));
    seeds.push((
        "discovery_log",
        capture(HostConfig::default(), |a, cfg| {
            let mut c = Controller::connect(a, nvmf::spec::fabrics::DISCOVERY_NQN, cfg).expect("discovery");
            c.discovery_log().expect("discovery log");
        }),
    ));
    seeds.push((
        "controller_reset_then_reconnect",
        capture(HostConfig::default(), |a, cfg| {
            let mut c = connect(a, cfg);
            let mut q = c.connect_io_queue(1).expect("io queue");
            q.write(1, 0, 1, &pattern(6, 0, 512)).expect("write");
            let cc = c.property_get(reg::CC, false).expect("CC");
            c.property_set(reg::CC, false, cc & !1).expect("CC.EN = 0");
            c.property_set(reg::CC, false, cc).expect("CC.EN = 1");
            let mut q = c.connect_io_queue(2).expect("io queue after reset");
            let mut b = vec![0u8; 512];
            q.read(1, 0, 1, &mut b).expect("read");
        }),
    ));
    seeds
}

/// One `commands` record.
fn rec(ctl: u8, sqe: &Sqe, len: u16, data: &[u8]) -> Vec<u8> {
    let mut v = vec![ctl];
    v.extend_from_slice(sqe.as_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn sqe(opcode: u8, nsid: u32, cdw10: u32, cdw11: u32, cdw12: u32) -> Sqe {
    let mut s = Sqe { opcode, ..Default::default() };
    s.nsid.set(nsid);
    s.cdw10.set(cdw10);
    s.cdw11.set(cdw11);
    s.cdw12.set(cdw12);
    s
}

fn io(opcode: u8, nsid: u32, slba: u64, nlb: u32) -> Sqe {
    let mut s = sqe(opcode, nsid, 0, 0, nlb - 1);
    s.set_slba(slba);
    s
}

fn fabrics(fctype: FabricsType) -> Sqe {
    nvmf::host::pdu::fabrics_sqe(fctype)
}

const ADMIN: u8 = 0;
const IO: u8 = 1;
const R2T: u8 = 4;
const NO_WAIT: u8 = 8;

fn commands_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut prop_get = fabrics(FabricsType::PropertyGet);
    PropertyCmd { eight_bytes: true, offset: reg::CAP, value: 0 }.write(&mut prop_get);
    let mut prop_set = fabrics(FabricsType::PropertySet);
    PropertyCmd { eight_bytes: false, offset: reg::CC, value: 0x0046_0001 }.write(&mut prop_set);
    let admin: Vec<u8> = [
        rec(ADMIN, &prop_get, 0, &[]),
        rec(ADMIN, &prop_set, 0, &[]),
        rec(ADMIN, &sqe(0x06, 0, 1, 0, 0), 4096, &[]), // Identify controller
        rec(ADMIN, &sqe(0x06, 1, 0, 0, 0), 4096, &[]), // Identify namespace 1
        rec(ADMIN, &sqe(0x06, 0, 2, 0, 0), 4096, &[]), // active namespace list
        rec(ADMIN, &sqe(0x06, 2, 3, 0, 0), 4096, &[]), // namespace descriptors of 2
        rec(ADMIN, &sqe(0x02, 0xffff_ffff, 0x02 | (127 << 16), 0, 0), 512, &[]), // SMART log
        rec(ADMIN, &sqe(0x02, 0, 0x01 | (15 << 16), 0, 0), 64, &[]), // error log
        rec(ADMIN, &sqe(0x02, 0, 0x04 | (1023 << 16), 0, 0), 4096, &[]), // changed namespaces
        rec(ADMIN, &sqe(0x0a, 0, 0x07, 0, 0), 0, &[]), // Get Features: number of queues
        rec(ADMIN, &sqe(0x09, 0, 0x07, 0x0003_0003, 0), 0, &[]), // Set Features: number of queues
        rec(ADMIN, &sqe(0x09, 0, 0x0b, 0x100, 0), 0, &[]), // Set Features: async event config
        rec(ADMIN, &sqe(0x18, 0, 0, 0, 0), 0, &[]),    // Keep Alive
        rec(ADMIN, &sqe(0x0c, 0, 0, 0, 0), 0, &[]),    // Asynchronous Event Request (parks)
        rec(ADMIN, &sqe(0x08, 0, 0, 0, 0), 0, &[]),    // Abort
    ]
    .concat();
    let data = pattern(7, 0, 16384);
    let mut dsm = Vec::new();
    for (slba, nlb) in [(64u64, 8u32), (1000, 16)] {
        dsm.extend_from_slice(&0u32.to_le_bytes());
        dsm.extend_from_slice(&nlb.to_le_bytes());
        dsm.extend_from_slice(&slba.to_le_bytes());
    }
    let io_cmds: Vec<u8> = [
        rec(IO, &io(0x01, 1, 0, 8), 4096, &data[..4096]),  // Write in-capsule
        rec(IO, &io(0x02, 1, 0, 8), 4096, &[]),            // Read
        rec(IO, &io(0x05, 1, 0, 8), 4096, &data[..4096]),  // Compare
        rec(IO | R2T, &io(0x01, 1, 32, 32), 16384, &data), // Write through R2T
        rec(IO, &io(0x02, 1, 32, 32), 16384, &[]),         // Read 16 KiB
        rec(IO, &io(0x01, 2, 1, 2), 8192, &data[..8192]),  // namespace 2, 4 KiB blocks
        rec(IO, &io(0x02, 2, 1, 2), 8192, &[]),
        rec(IO, &io(0x08, 1, 8, 8), 0, &[]),                       // Write Zeroes
        rec(IO, &sqe(0x09, 1, 1, 0x4, 0), dsm.len() as u16, &dsm), // Dataset Management: deallocate
        rec(IO, &sqe(0x00, 1, 0, 0, 0), 0, &[]),                   // Flush
        rec(IO, &io(0x02, 1, 2040, 16), 8192, &[]),                // past the end
    ]
    .concat();
    let pipelined: Vec<u8> = (0..8u64)
        .flat_map(|i| rec(IO | NO_WAIT, &io(0x01, 1, i * 4, 4), 2048, &data[..2048]))
        .chain(rec(IO | NO_WAIT | R2T, &io(0x01, 1, 100, 16), 8192, &data[..8192]))
        .chain(rec(IO, &io(0x02, 1, 0, 32), 16384, &[]))
        .collect();
    let disconnect: Vec<u8> =
        [rec(IO, &io(0x01, 1, 0, 1), 512, &data[..512]), rec(IO, &fabrics(FabricsType::Disconnect), 0, &[])].concat();
    let mut reset = prop_set;
    PropertyCmd { eight_bytes: false, offset: reg::CC, value: 0x0046_0000 }.write(&mut reset);
    let reset: Vec<u8> =
        [rec(IO | NO_WAIT, &io(0x01, 1, 0, 8), 4096, &data[..4096]), rec(ADMIN, &reset, 0, &[])].concat();
    // Fused Compare and Write: a matching pair, a miscompare, a pair through R2T on the
    // direct-mode namespace, a lone first (then a Read) and a lone second.
    let fuse = |mut s: Sqe, f: u8| {
        s.flags |= f;
        s
    };
    let (first, second) = (nvmf::spec::sqe::FUSE_FIRST, nvmf::spec::sqe::FUSE_SECOND);
    let fused: Vec<u8> = [
        rec(IO, &io(0x01, 1, 0, 1), 512, &data[..512]),
        rec(IO | NO_WAIT, &fuse(io(0x05, 1, 0, 1), first), 512, &data[..512]),
        rec(IO, &fuse(io(0x01, 1, 0, 1), second), 512, &data[512..1024]),
        rec(IO | NO_WAIT, &fuse(io(0x05, 1, 0, 1), first), 512, &data[..512]),
        rec(IO, &fuse(io(0x01, 1, 0, 1), second), 512, &data[1024..1536]),
        rec(IO | NO_WAIT | R2T, &fuse(io(0x05, 3, 0, 32), first), 16384, &vec![0; 16384]),
        rec(IO | R2T, &fuse(io(0x01, 3, 0, 32), second), 16384, &data),
        rec(IO | NO_WAIT, &fuse(io(0x05, 1, 0, 1), first), 512, &data[..512]),
        rec(IO, &io(0x02, 1, 0, 1), 512, &[]),
        rec(IO, &fuse(io(0x01, 1, 0, 1), second), 512, &data[..512]),
    ]
    .concat();
    let with = |mode: u8, body: &[u8]| [&[mode][..], body].concat();
    vec![
        ("admin", with(0, &admin)),
        ("io", with(0, &io_cmds)),
        ("io_digests", with(3, &io_cmds)),
        ("pipelined", with(0, &pipelined)),
        ("disconnect", with(0, &disconnect)),
        ("reset_with_io", with(0, &reset)),
        ("fused", with(0, &fused)),
    ]
}

/// Regenerate `fuzz/seeds/`: `cargo test -p nvmf-tests --test fuzz_regressions -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds/; run by hand after protocol changes"]
fn write_seed_corpora() {
    for (target, seeds) in [("tcp_pdu_stream", tcp_pdu_stream_seeds()), ("commands", commands_seeds())] {
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (name, data) in seeds {
            assert!(!data.is_empty(), "{target}/{name}: nothing captured");
            std::fs::write(dir.join(name), &data).expect("write seed");
        }
    }
}
