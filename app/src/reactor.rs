//! Reactors: one pinned thread per selected core, each owning its `PollGroup`.
//!
//! The control thread (`main`) accepts connections and hands each to a reactor through that
//! reactor's lock-free `ArrayQueue`; nothing on the I/O path takes a lock. Each reactor
//! publishes its connection count and poll counters in atomics, which `ReactorInfo` snapshots
//! for RPC (`framework_get_reactors`, `nvmf_get_stats`) and for least-loaded placement.
//!
//! Poll groups are created on the control thread (the library requires it: a poll group gets a
//! part for every transport registered at that time). When the set of transports changes at run
//! time (`nvmf_create_transport`), the control thread sends every reactor a fresh poll group;
//! new connections go to the newest one and older ones are dropped once their last connection
//! is gone.

use crate::cli::Placement;
use crossbeam_queue::ArrayQueue;
use nvmf::{PollGroup, Qpair};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connections waiting for a reactor to pick them up (per reactor).
const QPAIR_QUEUE: usize = 1024;
/// Idle polls spun before an idle reactor starts sleeping (when a backoff is configured).
const SPIN_BEFORE_BACKOFF: u32 = 1000;

/// What the control thread knows about a reactor (for `framework_get_reactors`, `nvmf_get_stats`).
#[derive(Clone, Debug, Default)]
#[allow(dead_code)] // read by the RPC methods
pub struct ReactorInfo {
    /// The core it runs on.
    pub core: usize,
    /// Connections (queue pairs) in its poll groups.
    pub connections: usize,
    /// Reactor index (SPDK's lcore order: 0 is the first selected core).
    pub index: usize,
    /// Whether pinning to `core` succeeded.
    pub pinned: bool,
    /// Poll iterations so far.
    pub polls: u64,
    /// Poll iterations that found work.
    pub busy_polls: u64,
    /// Pool buffers lent out to requests right now.
    pub buffers_in_use: usize,
    /// Connections placed on it since start.
    pub placed: u64,
    /// Poll groups it polls (more than one briefly after a transport change).
    pub poll_groups: usize,
}

/// Counters a reactor publishes (written by the reactor, read by the control thread).
#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    polls: AtomicU64,
    busy_polls: AtomicU64,
    buffers: AtomicUsize,
    poll_groups: AtomicUsize,
    pinned: AtomicBool,
}

struct Handle {
    core: usize,
    qpairs: Arc<ArrayQueue<Qpair>>,
    groups: Arc<ArrayQueue<PollGroup>>,
    stats: Arc<Stats>,
    placed: u64,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    /// Connections it has plus those queued for it.
    fn load(&self) -> usize {
        self.stats.connections.load(Ordering::Relaxed) + self.qpairs.len()
    }
}

/// How reactors run.
#[derive(Clone, Debug)]
pub struct ReactorOpts {
    pub placement: Placement,
    /// Sleep when idle (after a short spin); zero = busy polling.
    pub idle_backoff: Duration,
    /// How long a reactor keeps polling at shutdown for its connections to close.
    pub drain_timeout: Duration,
}

/// The reactor threads, driven from the control thread.
pub struct Reactors {
    handles: Vec<Handle>,
    opts: ReactorOpts,
    next: usize,
    stop: Arc<AtomicBool>,
}

impl Reactors {
    /// Start one reactor per core, each with the poll group `make_group` returns (called on
    /// this thread).
    pub fn start(
        cores: &[usize],
        opts: ReactorOpts,
        mut make_group: impl FnMut() -> PollGroup,
    ) -> std::io::Result<Reactors> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut reactors = Reactors { handles: Vec::new(), opts: opts.clone(), next: 0, stop: stop.clone() };
        for (index, &core) in cores.iter().enumerate() {
            let qpairs = Arc::new(ArrayQueue::new(QPAIR_QUEUE));
            let groups = Arc::new(ArrayQueue::new(8));
            let stats = Arc::new(Stats::default());
            let group = make_group();
            let r = Reactor {
                index,
                core,
                qpairs: qpairs.clone(),
                new_groups: groups.clone(),
                stats: stats.clone(),
                stop: stop.clone(),
                groups: vec![group],
                idle_backoff: opts.idle_backoff,
                drain_timeout: opts.drain_timeout,
            };
            // On error, `reactors` drops here and stops the threads already started.
            let thread = std::thread::Builder::new().name(format!("reactor_{index}")).spawn(move || r.run())?;
            reactors.handles.push(Handle { core, qpairs, groups, stats, placed: 0, thread: Some(thread) });
        }
        Ok(reactors)
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Hand a new connection to a reactor chosen by the placement policy.
    pub fn place(&mut self, q: Qpair) {
        if self.handles.is_empty() {
            log::error!("no reactor; dropping connection from {}", q.peer());
            return;
        }
        let i = match self.opts.placement {
            Placement::RoundRobin => {
                let i = self.next % self.handles.len();
                self.next = self.next.wrapping_add(1);
                i
            }
            Placement::LeastLoaded => {
                // Fewest connections; ties go round-robin so equal reactors share new work.
                let start = self.next % self.handles.len();
                self.next = self.next.wrapping_add(1);
                let n = self.handles.len();
                (0..n).map(|k| (start + k) % n).min_by_key(|&i| self.handles[i].load()).unwrap_or(start)
            }
        };
        let h = &mut self.handles[i];
        log::info!("accepted {} on {} -> reactor {} (core {})", q.peer(), q.listener(), i, h.core);
        let mut q = q;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match h.qpairs.push(q) {
                Ok(()) => break,
                Err(back) => {
                    // Full: the reactor is behind (or gone). Wait a little, then give up on it.
                    if Instant::now() > deadline || h.thread.as_ref().is_none_or(|t| t.is_finished()) {
                        log::error!("reactor {i} is not taking connections; dropping {}", back.peer());
                        return;
                    }
                    q = back;
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        }
        h.placed += 1;
    }

    /// Give every reactor a new poll group (after the transports changed). Returns false if a
    /// reactor's group queue is full (it has not caught up with earlier changes).
    pub fn add_poll_groups(&mut self, mut make_group: impl FnMut() -> PollGroup) -> bool {
        let mut ok = true;
        for (i, h) in self.handles.iter().enumerate() {
            if h.groups.push(make_group()).is_err() {
                log::error!("reactor {i}: too many pending poll groups");
                ok = false;
            }
        }
        ok
    }

    /// Refresh `out` with a snapshot (reusing its allocation).
    pub fn info_into(&self, out: &mut Vec<ReactorInfo>) {
        out.resize_with(self.handles.len(), ReactorInfo::default);
        for (i, (h, o)) in self.handles.iter().zip(out.iter_mut()).enumerate() {
            *o = ReactorInfo {
                core: h.core,
                connections: h.stats.connections.load(Ordering::Relaxed),
                index: i,
                pinned: h.stats.pinned.load(Ordering::Relaxed),
                polls: h.stats.polls.load(Ordering::Relaxed),
                busy_polls: h.stats.busy_polls.load(Ordering::Relaxed),
                buffers_in_use: h.stats.buffers.load(Ordering::Relaxed),
                placed: h.placed,
                poll_groups: h.stats.poll_groups.load(Ordering::Relaxed),
            };
        }
    }

    /// Close every connection, let the reactors drain their I/O (bounded by the drain
    /// timeout), and join them. Returns how many reactors failed to drain or panicked.
    pub fn shutdown(mut self) -> usize {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> usize {
        self.stop.store(true, Ordering::Release);
        let mut bad = 0;
        for (i, h) in self.handles.iter_mut().enumerate() {
            let Some(t) = h.thread.take() else { continue };
            match t.join() {
                Ok(()) => {
                    let left = h.stats.connections.load(Ordering::Relaxed);
                    if left > 0 {
                        bad += 1;
                    }
                    log::info!(
                        "reactor {i} (core {}) stopped: {} polls, {} busy, {} connections placed, {left} left",
                        h.core,
                        h.stats.polls.load(Ordering::Relaxed),
                        h.stats.busy_polls.load(Ordering::Relaxed),
                        h.placed
                    );
                }
                Err(_) => {
                    log::error!("reactor {i} (core {}) panicked", h.core);
                    bad += 1;
                }
            }
        }
        bad
    }
}

impl Drop for Reactors {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

/// One reactor thread's state.
struct Reactor {
    index: usize,
    core: usize,
    qpairs: Arc<ArrayQueue<Qpair>>,
    new_groups: Arc<ArrayQueue<PollGroup>>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    /// Newest last; new connections go to the last one.
    groups: Vec<PollGroup>,
    idle_backoff: Duration,
    drain_timeout: Duration,
}

impl Reactor {
    fn run(mut self) {
        match pin_to_core(self.core) {
            Ok(()) => {
                self.stats.pinned.store(true, Ordering::Relaxed);
                log::info!("reactor {} started on core {}", self.index, self.core);
            }
            Err(e) => log::warn!("reactor {}: cannot pin to core {}: {e}; running unpinned", self.index, self.core),
        }
        self.stats.poll_groups.store(self.groups.len(), Ordering::Relaxed);
        let (mut polls, mut busy, mut idle) = (0u64, 0u64, 0u32);
        while !self.stop.load(Ordering::Acquire) {
            self.take_new_work();
            let work = self.poll_groups();
            polls += 1;
            if work > 0 {
                busy += 1;
                idle = 0;
            } else {
                idle = idle.saturating_add(1);
            }
            self.publish(polls, busy);
            if work == 0 {
                if !self.idle_backoff.is_zero() && idle > SPIN_BEFORE_BACKOFF {
                    std::thread::sleep(self.idle_backoff);
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        self.drain(polls, busy);
    }

    /// Adopt poll groups and connections the control thread sent.
    fn take_new_work(&mut self) {
        self.take_new_groups();
        while let Some(q) = self.qpairs.pop() {
            // A group sent before this connection is visible now: use the newest.
            self.take_new_groups();
            if let Some(g) = self.groups.last_mut() {
                g.add(q);
            }
        }
    }

    fn take_new_groups(&mut self) {
        let mut changed = false;
        while let Some(g) = self.new_groups.pop() {
            self.groups.push(g);
            changed = true;
        }
        if changed {
            self.stats.poll_groups.store(self.groups.len(), Ordering::Relaxed);
        }
    }

    fn poll_groups(&mut self) -> usize {
        let mut work = 0;
        for g in self.groups.iter_mut() {
            work += g.poll();
        }
        // Retire superseded groups once empty (their bdev channels close with them).
        if self.groups.len() > 1 {
            let last = self.groups.len() - 1;
            let mut i = 0;
            self.groups.retain(|g| {
                let keep = i == last || g.num_connections() > 0;
                i += 1;
                keep
            });
            self.stats.poll_groups.store(self.groups.len(), Ordering::Relaxed);
        }
        work
    }

    fn publish(&self, polls: u64, busy: u64) {
        let (mut conns, mut bufs) = (0, 0);
        for g in &self.groups {
            conns += g.num_connections();
            bufs += g.buffers_in_use();
        }
        self.stats.connections.store(conns, Ordering::Relaxed);
        self.stats.buffers.store(bufs, Ordering::Relaxed);
        self.stats.polls.store(polls, Ordering::Relaxed);
        self.stats.busy_polls.store(busy, Ordering::Relaxed);
    }

    /// Shutdown: refuse queued connections, close the rest and keep polling (bounded) so that
    /// outstanding I/O completes or fails and the connections go away.
    fn drain(mut self, mut polls: u64, busy: u64) {
        self.take_new_groups();
        while let Some(q) = self.qpairs.pop() {
            log::debug!("reactor {}: dropping not-yet-served connection from {}", self.index, q.peer());
        }
        let before: usize = self.groups.iter().map(|g| g.num_connections()).sum();
        for g in self.groups.iter_mut() {
            g.close_all();
        }
        let deadline = Instant::now() + self.drain_timeout;
        loop {
            let left: usize = self.groups.iter().map(|g| g.num_connections()).sum();
            if left == 0 || Instant::now() >= deadline {
                break;
            }
            let mut work = 0;
            for g in self.groups.iter_mut() {
                work += g.poll();
            }
            polls += 1;
            if work == 0 {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        self.publish(polls, busy);
        let left = self.stats.connections.load(Ordering::Relaxed);
        if left > 0 {
            log::warn!(
                "reactor {}: {left} of {before} connections still open after {:?}",
                self.index,
                self.drain_timeout
            );
        } else {
            log::debug!("reactor {}: closed {before} connections", self.index);
        }
        // Dropping the groups closes their bdev channels.
    }
}

/// Pin the calling thread to `core` (through nix's safe wrapper of sched_setaffinity).
fn pin_to_core(core: usize) -> std::io::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(core).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("core {core}: {e}")))?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)
}
