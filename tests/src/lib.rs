//! Integration-test harness: an in-process target on 127.0.0.1 with an ephemeral port, an
//! acceptor thread handing connections round-robin to poll-group threads, like `nvmf_tgt`.

#![forbid(unsafe_code)]

use nvmf::bdev::{Bdev, MallocBdev};
use nvmf::{
    NamespaceConfig, PollGroup, Subsystem, SubsystemConfig, Target, TcpTransport, TcpTransportOpts, TransportAddr,
    WorkRunner,
};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod fuzz;
pub mod fuzz_passthru;
pub mod loopback;
pub mod work;

pub use nvmf_test_support::{fill_pattern, pattern};
pub use work::WorkThread;

/// A control-path closure run on the acceptor thread.
type CtlFn = Box<dyn FnOnce(&mut Target) + Send>;

pub const NQN: &str = "nqn.2016-06.io.nvmf-rs:test";

/// A running target. Dropping it stops every thread.
pub struct TestTarget {
    pub addr: SocketAddr,
    pub subsystem: Arc<Subsystem>,
    /// Connections currently in each poll group.
    pub conns_per_group: Vec<Arc<AtomicUsize>>,
    /// Pool buffers lent out in each poll group (0 when idle).
    pub bufs_per_group: Vec<Arc<AtomicUsize>>,
    /// Bytes of idle buffers each poll group's pool keeps (trimmed to the watermark).
    pub idle_bytes_per_group: Vec<Arc<AtomicUsize>>,
    /// Per poll group: 1 + the virtual time (µs) of the last finished `poll_at` (0: none yet).
    polled_at_us: Vec<Arc<AtomicU64>>,
    clock: Option<Arc<TestClock>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Run a closure against the target on the acceptor thread.
    ctl: mpsc::Sender<CtlFn>,
}

/// How to build a test target.
pub struct TargetSpec {
    pub poll_groups: usize,
    pub bdevs: Vec<Arc<dyn Bdev>>,
    pub allow_any_host: bool,
    pub hosts: Vec<String>,
    pub opts: TcpTransportOpts,
    /// Runs the target's deferred work (DH-HMAC-CHAP exponentiations); `None`: the poll groups
    /// run it themselves.
    pub work_runner: Option<Arc<dyn WorkRunner>>,
    /// Drive the poll groups with this virtual clock (`PollGroup::poll_at`) instead of the
    /// system clock: timers (keep-alive, Connect and R2T timeouts) fire only when the test moves
    /// it, with [`TestTarget::set_time`].
    pub clock: Option<Arc<TestClock>>,
}

/// A virtual clock for the poll groups of a [`TestTarget`]: starts at its creation and moves
/// only when the test says so.
pub struct TestClock {
    base: Instant,
    offset_us: AtomicU64,
}

impl TestClock {
    pub fn new() -> Arc<TestClock> {
        Arc::new(TestClock { base: Instant::now(), offset_us: AtomicU64::new(0) })
    }

    /// Virtual time since the clock was created.
    pub fn elapsed(&self) -> Duration {
        Duration::from_micros(self.offset_us.load(Ordering::Acquire))
    }

    /// The current virtual instant.
    pub fn now(&self) -> Instant {
        self.base + self.elapsed()
    }

    /// Move the clock to `since_start` after its creation; it never goes back.
    pub fn set(&self, since_start: Duration) {
        let us = since_start.as_micros() as u64;
        let old = self.offset_us.fetch_max(us, Ordering::AcqRel);
        assert!(old <= us, "the test clock cannot go back ({old} µs -> {us} µs)");
    }
}

impl Default for TargetSpec {
    fn default() -> Self {
        TargetSpec {
            poll_groups: 2,
            bdevs: vec![Arc::new(MallocBdev::new("Malloc0", 64 * 1024 * 1024 / 512, 512).expect("malloc"))],
            allow_any_host: true,
            hosts: vec![],
            opts: TcpTransportOpts::default(),
            work_runner: None,
            clock: None,
        }
    }
}

impl TestTarget {
    pub fn start(spec: TargetSpec) -> TestTarget {
        let _ = env_logger::builder().is_test(true).try_init();
        let mut target = Target::new();
        target.add_transport(Arc::new(TcpTransport::new(spec.opts.clone())));
        target.set_work_runner(spec.work_runner.clone());
        target.listen(&TransportAddr::tcp("127.0.0.1", 0)).expect("listen");
        let la = target.listen_addrs().pop().expect("listener");
        let mut cfg = SubsystemConfig::new(NQN);
        cfg.allow_any_host = spec.allow_any_host;
        let sub = target.add_subsystem(cfg).expect("subsystem");
        for h in &spec.hosts {
            sub.add_host(h).expect("host");
        }
        sub.add_listener(la.clone()).expect("add listener");
        for b in spec.bdevs {
            sub.add_namespace(NamespaceConfig::new(b)).expect("namespace");
        }
        let addr: SocketAddr = format!("127.0.0.1:{}", la.trsvcid).parse().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        let mut conns_per_group = Vec::new();
        let mut bufs_per_group = Vec::new();
        let mut idle_bytes_per_group = Vec::new();
        let mut polled_at_us = Vec::new();
        for i in 0..spec.poll_groups.max(1) {
            let (tx, rx) = mpsc::channel::<nvmf::Qpair>();
            senders.push(tx);
            let mut group: PollGroup = target.create_poll_group();
            let stop = stop.clone();
            let nconn = Arc::new(AtomicUsize::new(0));
            let nbuf = Arc::new(AtomicUsize::new(0));
            let nidle = Arc::new(AtomicUsize::new(0));
            conns_per_group.push(nconn.clone());
            bufs_per_group.push(nbuf.clone());
            idle_bytes_per_group.push(nidle.clone());
            let polled = Arc::new(AtomicU64::new(0));
            polled_at_us.push(polled.clone());
            let clock = spec.clock.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("poll-group-{i}"))
                    .spawn(move || {
                        let mut idle = 0u32;
                        while !stop.load(Ordering::Relaxed) {
                            while let Ok(q) = rx.try_recv() {
                                group.add(q);
                            }
                            let work = match &clock {
                                Some(c) => {
                                    let at = c.elapsed();
                                    let w = group.poll_at(c.base + at);
                                    polled.store(at.as_micros() as u64 + 1, Ordering::Release);
                                    w
                                }
                                None => group.poll(),
                            };
                            if work == 0 {
                                idle += 1;
                                if idle > 200 {
                                    std::thread::sleep(Duration::from_micros(100));
                                }
                            } else {
                                idle = 0;
                            }
                            nconn.store(group.num_connections(), Ordering::Relaxed);
                            nbuf.store(group.buffers_in_use(), Ordering::Relaxed);
                            nidle.store(group.buffer_bytes_idle(), Ordering::Relaxed);
                        }
                        group.close_all();
                        for _ in 0..10_000 {
                            if group.num_connections() == 0 {
                                break;
                            }
                            group.poll();
                        }
                    })
                    .expect("spawn"),
            );
        }
        let (ctl_tx, ctl_rx) = mpsc::channel::<CtlFn>();
        {
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("acceptor".into())
                    .spawn(move || {
                        let mut next = 0;
                        while !stop.load(Ordering::Relaxed) {
                            while let Ok(f) = ctl_rx.try_recv() {
                                f(&mut target);
                            }
                            let n = target.accept(|q| {
                                let _ = senders[next % senders.len()].send(q);
                                next += 1;
                            });
                            if n == 0 {
                                std::thread::sleep(Duration::from_micros(200));
                            }
                        }
                    })
                    .expect("spawn"),
            );
        }
        TestTarget {
            addr,
            subsystem: sub,
            conns_per_group,
            bufs_per_group,
            idle_bytes_per_group,
            polled_at_us,
            clock: spec.clock,
            stop,
            threads,
            ctl: ctl_tx,
        }
    }

    /// Run `f` on the thread that owns the `Target`.
    pub fn with_target(&self, f: impl FnOnce(&mut Target) + Send + 'static) {
        let (tx, rx) = mpsc::channel();
        let _ = self.ctl.send(Box::new(move |t| {
            f(t);
            let _ = tx.send(());
        }));
        let _ = rx.recv_timeout(Duration::from_secs(10));
    }

    /// Total connections in all poll groups.
    pub fn connections(&self) -> usize {
        self.conns_per_group.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Pool buffers lent out in all poll groups.
    pub fn buffers_in_use(&self) -> usize {
        self.bufs_per_group.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Idle pool bytes in all poll groups.
    pub fn idle_buffer_bytes(&self) -> usize {
        self.idle_bytes_per_group.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Move the virtual clock (see [`TargetSpec::clock`]) to `since_start` and wait until every
    /// poll group has finished a poll at that time, so each timer decision due by then has been
    /// taken. Fails the test when the target has no virtual clock or a group does not get there
    /// within 10 s.
    pub fn set_time(&self, since_start: Duration) {
        let clock = self.clock.as_ref().expect("set_time needs TargetSpec::clock");
        clock.set(since_start);
        let want = clock.elapsed().as_micros() as u64 + 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        for (i, p) in self.polled_at_us.iter().enumerate() {
            while p.load(Ordering::Acquire) < want {
                assert!(Instant::now() < deadline, "poll group {i} did not poll at {since_start:?} within 10 s");
                std::thread::yield_now();
            }
        }
    }

    /// Wait (bounded) until `cond` holds; returns whether it did.
    pub fn wait_for(&self, mut cond: impl FnMut(&TestTarget) -> bool) -> bool {
        for _ in 0..1000 {
            if cond(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for TestTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A target polled by the test itself: a TCP transport listening on an ephemeral 127.0.0.1
/// port and subsystem `nqn` (any host) with `bdevs` as namespaces 1, 2, ... Returns the target
/// and the listener's address.
pub fn polled_target(nqn: &str, bdevs: Vec<Arc<dyn Bdev>>) -> (Target, SocketAddr) {
    let mut target = Target::new();
    target.add_transport(Arc::new(TcpTransport::new(TcpTransportOpts::default())));
    target.listen(&TransportAddr::tcp("127.0.0.1", 0)).expect("listen");
    let la = target.listen_addrs().pop().expect("listener");
    let mut cfg = SubsystemConfig::new(nqn);
    cfg.allow_any_host = true;
    let sub = target.add_subsystem(cfg).expect("subsystem");
    sub.add_listener(la.clone()).expect("add listener");
    for b in bdevs {
        sub.add_namespace(NamespaceConfig::new(b)).expect("namespace");
    }
    let addr = format!("127.0.0.1:{}", la.trsvcid).parse().expect("addr");
    (target, addr)
}

/// Hand the connection a host just opened to `group` (accepting until it arrives).
pub fn accept_one(target: &mut Target, group: &mut PollGroup) {
    let mut accepted = 0;
    for _ in 0..100_000 {
        accepted += target.accept(|q| group.add(q));
        if accepted > 0 {
            break;
        }
        std::thread::yield_now();
    }
    assert_eq!(accepted, 1, "the connection was not accepted");
}

/// Close `s` abruptly: SO_LINGER 0, then close, so the peer gets a TCP reset (a host that
/// vanished) and neither side keeps the connection in TIME_WAIT.
pub fn reset_connection(s: TcpStream) {
    set_linger_zero(&s);
    drop(s);
}

/// Set SO_LINGER to { on, 0 s } on `s`: closing it then sends an RST instead of a FIN.
pub fn set_linger_zero(s: &TcpStream) {
    if let Err(e) = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO)) {
        log::warn!("setsockopt(SO_LINGER): {e}");
    }
}
