//! One queue pair's thread: keeps `qd` commands in flight through the host's pipelined API and
//! records per-I/O latency. Nothing here allocates once the loop runs.

use super::hist::Histogram;
use super::pattern;
use nvmf::host::{HostError, IoQueue};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

pub const WARMUP: u8 = 0;
pub const MEASURE: u8 = 1;
pub const STOP: u8 = 2;

/// Run state shared by the main thread and the workers.
pub struct Shared {
    pub phase: AtomicU8,
    /// I/Os completed by each worker (for the progress line), one cache line each.
    pub done: Vec<Padded>,
}

#[repr(align(128))]
#[derive(Default)]
pub struct Padded(pub AtomicU64);

/// A namespace slice one worker uses.
#[derive(Clone, Debug)]
pub struct NsRange {
    pub nsid: u32,
    /// First block of the slice.
    pub start: u64,
    /// I/O-sized units in the slice.
    pub units: u64,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub index: usize,
    pub qd: usize,
    pub io_size: usize,
    pub block_size: u32,
    pub read_pct: u32,
    pub random: bool,
    pub verify: bool,
    pub ns: Vec<NsRange>,
}

#[derive(Default)]
pub struct Stats {
    pub ios: u64,
    pub reads: u64,
    pub writes: u64,
    pub errors: u64,
    pub miscompares: u64,
    pub hist: Histogram,
    /// Measured interval as this worker saw it.
    pub elapsed: Duration,
}

impl Stats {
    fn reset(&mut self) {
        self.ios = 0;
        self.reads = 0;
        self.writes = 0;
        self.errors = 0;
        self.miscompares = 0;
        self.hist.reset();
    }
}

/// What one CID is doing.
#[derive(Clone, Copy, Default)]
struct Inflight {
    t0: Option<Instant>,
    ns: u8,
    unit: u64,
    read: bool,
}

struct Rng(u64);
impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Per-unit write generation (for --verify); the top bit marks a unit with a command in flight.
const BUSY: u32 = 1 << 31;

pub struct Worker {
    job: Job,
    q: IoQueue,
    nlb: u32,
    rng: Rng,
    seq: Vec<u64>,
    gens: Vec<Vec<u32>>,
    wbuf: Vec<u8>,
    cids: Vec<Inflight>,
    next_ns: usize,
    prefilled: bool,
}

impl Worker {
    pub fn new(job: Job, q: IoQueue) -> Worker {
        let nlb = (job.io_size / job.block_size as usize) as u32;
        let gens = if job.verify { job.ns.iter().map(|n| vec![0u32; n.units as usize]).collect() } else { Vec::new() };
        let mut wbuf = vec![0u8; job.io_size];
        pattern::fill(&mut wbuf, 0, 0, 0);
        Worker {
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ ((job.index as u64 + 1) << 32)),
            seq: vec![0; job.ns.len()],
            nlb,
            gens,
            wbuf,
            cids: vec![Inflight::default(); q.depth().max(1)],
            next_ns: 0,
            prefilled: false,
            job,
            q,
        }
    }

    /// Needs a prefill before its first run (--verify).
    pub fn needs_prefill(&self) -> bool {
        self.job.verify && !self.prefilled
    }

    /// Write every unit of this worker's slices once (for --verify).
    pub fn prefill(&mut self) -> Result<(), String> {
        for ni in 0..self.job.ns.len() {
            let units = self.job.ns[ni].units;
            let mut next = 0;
            while next < units || self.q.in_flight() > 0 {
                while next < units && self.q.in_flight() < self.job.qd {
                    if !self.submit_at(ni, next, false, None)? {
                        break;
                    }
                    next += 1;
                }
                let mut errs = 0;
                self.q.poll(|_, cqe, _| errs += u64::from(!cqe.is_success())).map_err(|e| e.to_string())?;
                if errs > 0 {
                    return Err(format!("{errs} prefill writes failed"));
                }
            }
        }
        self.prefilled = true;
        // Prefill wrote generation 1 everywhere (its completions do not advance the counters).
        for g in self.gens.iter_mut() {
            g.fill(1);
        }
        Ok(())
    }

    fn pick(&mut self) -> (usize, u64, bool) {
        let ni = self.next_ns;
        self.next_ns = (self.next_ns + 1) % self.job.ns.len();
        let units = self.job.ns[ni].units;
        let mut unit = if self.job.random {
            self.rng.next() % units
        } else {
            let u = self.seq[ni];
            self.seq[ni] = (u + 1) % units;
            u
        };
        if self.job.verify {
            // Never two commands on one unit at once: take the next idle one.
            while self.gens[ni][unit as usize] & BUSY != 0 {
                unit = (unit + 1) % units;
            }
        }
        let read = match self.job.read_pct {
            100 => true,
            0 => false,
            p => (self.rng.next() % 100) < p as u64,
        };
        (ni, unit, read)
    }

    /// Submit one command; `Ok(false)` when the queue has no room for it now (over RDMA, the
    /// queue's registered data area can fill up before QD commands are in flight).
    fn submit_at(&mut self, ni: usize, unit: u64, read: bool, t0: Option<Instant>) -> Result<bool, String> {
        let ns = &self.job.ns[ni];
        let lba = ns.start + unit * self.nlb as u64;
        let cid = if read {
            self.q.submit_read(ns.nsid, lba, self.nlb, self.job.io_size)
        } else {
            if self.job.verify {
                let g = self.gens[ni][unit as usize] & !BUSY;
                pattern::fill(&mut self.wbuf, ns.nsid, lba, g.wrapping_add(1) & !BUSY);
            }
            self.q.submit_write(ns.nsid, lba, self.nlb, &self.wbuf)
        };
        let cid = match cid {
            Ok(c) => c,
            Err(HostError::QueueFull) if self.q.in_flight() > 0 => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        if self.job.verify {
            self.gens[ni][unit as usize] |= BUSY;
        }
        self.cids[cid as usize] = Inflight { t0, ns: ni as u8, unit, read };
        Ok(true)
    }

    /// Run until the phase turns STOP; returns the stats of the MEASURE phase.
    pub fn run(&mut self, shared: &Shared) -> Result<Stats, String> {
        let mut st = Stats::default();
        let mut phase = WARMUP;
        let mut start = Instant::now();
        let mut total = 0u64;
        let done = &shared.done[self.job.index].0;
        loop {
            let p = shared.phase.load(Ordering::Relaxed);
            if p != phase {
                if p >= MEASURE && phase == WARMUP {
                    st.reset();
                    start = Instant::now();
                }
                if p == STOP {
                    st.elapsed = start.elapsed();
                }
                phase = p;
            }
            if phase != STOP {
                let now = Instant::now();
                while self.q.in_flight() < self.job.qd {
                    let (ni, unit, read) = self.pick();
                    if !self.submit_at(ni, unit, read, Some(now))? {
                        break;
                    }
                }
            } else if self.q.in_flight() == 0 {
                break;
            }
            let Worker { q, cids, gens, job, nlb, .. } = &mut *self;
            let mut now: Option<Instant> = None;
            let n = q
                .poll(|cid, cqe, data| {
                    let f = cids[cid as usize];
                    let t = *now.get_or_insert_with(Instant::now);
                    if let Some(t0) = f.t0 {
                        st.hist.record(t.saturating_duration_since(t0).as_nanos() as u64);
                    }
                    st.ios += 1;
                    if f.read {
                        st.reads += 1;
                    } else {
                        st.writes += 1;
                    }
                    if !cqe.is_success() {
                        st.errors += 1;
                    }
                    if job.verify {
                        let g = &mut gens[f.ns as usize][f.unit as usize];
                        *g &= !BUSY;
                        if f.read {
                            let ns = &job.ns[f.ns as usize];
                            let lba = ns.start + f.unit * *nlb as u64;
                            if cqe.is_success() && !pattern::check(data.unwrap_or(&[]), ns.nsid, lba, *g) {
                                st.miscompares += 1;
                            }
                        } else if cqe.is_success() {
                            *g = g.wrapping_add(1) & !BUSY;
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
            total += n as u64;
            done.store(total, Ordering::Relaxed);
        }
        Ok(st)
    }
}
