//! Poll groups: a set of connections that one thread polls (SPDK's poll group, Linux's
//! io_handler). A poll group owns its bdev channels and buffer pool, so nothing on its I/O
//! path is shared with other threads.

use crate::bdev::{BdevChannel, BdevCompletion, BufPool};
use crate::subsystem::Namespace;
use crate::target::{Qpair, TargetShared};
use crate::transport::{split_tag, TransportPollGroup};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buffers a poll group may hold at once (they grow to the largest I/O seen, 1 MiB at most).
pub(crate) const MAX_BUFFERS: usize = 4096;
/// While busy, the clock is read (and timers checked) once per this many polls; an idle poll
/// always reads it. Keep-alive and event timers have millisecond granularity.
const CLOCK_EVERY: u64 = 32;
/// Idle pool buffers are looked at once per this period: those unused all through it are freed
/// down to the watermark.
const BUF_TRIM_PERIOD: Duration = Duration::from_secs(1);
/// Idle pool memory kept by default (a transport may set its own: `buf_pool_watermark`).
pub(crate) const DEFAULT_BUF_WATERMARK: usize = 64 << 20;

struct ChannelEntry {
    uid: u64,
    ns: Arc<Namespace>,
    chan: Box<dyn BdevChannel>,
    stats: Arc<crate::bdev::iostat::ChannelIoStats>,
}

/// Per-poll-group state shared by all transports in the group.
pub struct GroupCtx {
    pub(crate) target: Arc<TargetShared>,
    pub(crate) bufs: BufPool,
    /// Idle pool memory kept when trimming (bytes).
    pub(crate) buf_watermark: usize,
    last_trim: Instant,
    /// Time of the current poll: read on every idle poll and every `CLOCK_EVERY` busy polls.
    pub(crate) now: Instant,
    /// `now` was refreshed for this poll: run the timer checks (keep-alive, events, teardown).
    pub(crate) tick: bool,
    channels: Vec<ChannelEntry>,
    completions: Vec<BdevCompletion>,
    /// Flushes spanning several namespaces (Flush NSID FFFFFFFFh, shutdown).
    pub(crate) fanouts: crate::fanout::Fanouts,
    /// Index of the transport being polled (for bdev tags).
    pub(crate) transport_index: u8,
    /// Commands waiting for work run off the poll group (DH-HMAC-CHAP).
    pub(crate) deferred: crate::deferred::Deferred,
}

impl GroupCtx {
    pub(crate) fn new(target: Arc<TargetShared>) -> Self {
        GroupCtx {
            target,
            bufs: BufPool::new(MAX_BUFFERS),
            buf_watermark: DEFAULT_BUF_WATERMARK,
            last_trim: Instant::now(),
            now: Instant::now(),
            tick: true,
            channels: Vec::new(),
            completions: Vec::with_capacity(1024),
            fanouts: Default::default(),
            transport_index: 0,
            deferred: Default::default(),
        }
    }

    /// This group's channel on `ns`, opened on first use.
    pub(crate) fn channel(&mut self, ns: &Arc<Namespace>) -> Option<&mut Box<dyn BdevChannel>> {
        self.channel_and_stats(ns).map(|(c, _)| c)
    }

    /// [`GroupCtx::channel`] and this group's I/O counters on `ns` (the I/O path).
    #[inline]
    pub(crate) fn channel_and_stats(
        &mut self,
        ns: &Arc<Namespace>,
    ) -> Option<(&mut Box<dyn BdevChannel>, &crate::bdev::iostat::ChannelIoStats)> {
        let idx = match self.channels.iter().position(|c| c.uid == ns.uid) {
            Some(i) => i,
            None => self.open_channel(ns)?,
        };
        let e = &mut self.channels[idx];
        Some((&mut e.chan, &*e.stats))
    }

    #[cold]
    fn open_channel(&mut self, ns: &Arc<Namespace>) -> Option<usize> {
        match ns.bdev.open_channel() {
            Ok(chan) => {
                let stats = ns.iostats.register();
                self.channels.push(ChannelEntry { uid: ns.uid, ns: ns.clone(), chan, stats });
                Some(self.channels.len() - 1)
            }
            Err(e) => {
                log::error!("open channel on bdev {}: {e}", ns.bdev.name());
                None
            }
        }
    }

    /// Buffers currently lent out (for leak checks).
    pub fn buffers_in_use(&self) -> usize {
        self.bufs.in_use()
    }

    /// On a timer tick: free pool buffers left unused for a whole period above the watermark.
    fn trim_buffers(&mut self) {
        if self.now.duration_since(self.last_trim) >= BUF_TRIM_PERIOD {
            self.last_trim = self.now;
            let freed = self.bufs.trim(self.buf_watermark);
            if freed > 0 {
                log::debug!("buffer pool: freed {} KiB of idle buffers", freed >> 10);
            }
        }
    }

    /// Poll every channel with I/O outstanding; finished I/Os are appended to `out`.
    pub(crate) fn poll_channels(&mut self, out: &mut Vec<BdevCompletion>) {
        for c in self.channels.iter_mut() {
            if c.chan.outstanding() > 0 {
                c.chan.poll(out);
            }
        }
    }

    /// Close channels of namespaces that were removed once their I/O has drained.
    fn reap_channels(&mut self) {
        self.channels.retain(|c| Arc::strong_count(&c.ns) > 1 || c.chan.outstanding() > 0);
    }
}

/// A set of connections polled by one thread.
pub struct PollGroup {
    ctx: GroupCtx,
    transports: Vec<Box<dyn TransportPollGroup>>,
    polls: u64,
    /// Work done by the previous poll.
    last_work: usize,
}

impl PollGroup {
    pub(crate) fn new(target: Arc<TargetShared>, transports: Vec<Box<dyn TransportPollGroup>>) -> Self {
        PollGroup { ctx: GroupCtx::new(target), transports, polls: 0, last_work: 0 }
    }

    /// Take over a connection handed out by `Target::accept`.
    pub fn add(&mut self, qpair: Qpair) {
        let Qpair { conn, listener } = qpair;
        match self.transports.iter_mut().find(|t| t.trtype() == conn.trtype()) {
            Some(t) => t.add(conn, listener, &mut self.ctx),
            None => log::error!("poll group has no {} transport; dropping connection", conn.trtype().name()),
        }
    }

    /// Advance every connection and bdev channel once. Returns the amount of work done
    /// (0 means idle: the caller may back off).
    #[inline]
    pub fn poll(&mut self) -> usize {
        // Reading the clock on every busy poll is measurable at high IOPS (issue 6); timers
        // only need millisecond resolution.
        let tick = self.last_work == 0 || self.polls.is_multiple_of(CLOCK_EVERY);
        self.poll_inner(tick.then(Instant::now))
    }

    /// [`PollGroup::poll`] with the time supplied by the caller instead of read from the system
    /// clock: every timer of the group (keep-alive, Connect and R2T timeouts, teardown, buffer
    /// trimming) is checked against `now`, on every call. For tests that drive virtual time and
    /// for applications with their own clock. `now` must not go backwards.
    pub fn poll_at(&mut self, now: Instant) -> usize {
        self.poll_inner(Some(now))
    }

    /// One poll; `now` is `Some` when timers are checked in this poll.
    fn poll_inner(&mut self, now: Option<Instant>) -> usize {
        self.ctx.tick = now.is_some();
        if let Some(now) = now {
            self.ctx.now = now;
            self.ctx.trim_buffers();
        }
        let mut work = 0;
        for (i, t) in self.transports.iter_mut().enumerate() {
            self.ctx.transport_index = i as u8;
            work += t.poll(&mut self.ctx);
        }
        work += self.poll_bdevs();
        self.polls += 1;
        if self.polls.is_multiple_of(1024) {
            self.ctx.reap_channels();
        }
        self.last_work = work;
        work
    }

    fn poll_bdevs(&mut self) -> usize {
        let mut done = std::mem::take(&mut self.ctx.completions);
        self.ctx.poll_channels(&mut done);
        self.ctx.deferred.poll(&mut done);
        let n = done.len();
        for c in done.drain(..) {
            let c = if self.ctx.fanouts.is_empty() {
                c
            } else {
                match self.ctx.fanouts.complete(c) {
                    Some(c) => c,
                    None => continue,
                }
            };
            let (t, conn, slot) = split_tag(c.tag);
            if let Some(tp) = self.transports.get_mut(t as usize) {
                self.ctx.transport_index = t;
                tp.bdev_complete(conn, slot, c, &mut self.ctx);
            }
        }
        self.ctx.completions = done;
        if n > 0 {
            // Responses go out in this poll, not after the next one's epoll_wait and reads:
            // shorter turnaround, still one send per connection per batch.
            for t in self.transports.iter_mut() {
                t.flush_completions();
            }
        }
        n
    }

    /// Connections in this group.
    pub fn num_connections(&self) -> usize {
        self.transports.iter().map(|t| t.num_connections()).sum()
    }

    /// Close every connection; keep polling until `num_connections()` is 0 to drain I/O.
    pub fn close_all(&mut self) {
        for t in self.transports.iter_mut() {
            t.close_all();
        }
    }

    /// Buffers lent out to requests right now (returns to 0 when idle: leak checks).
    pub fn buffers_in_use(&self) -> usize {
        self.ctx.buffers_in_use()
    }

    /// Bytes of idle buffers the pool keeps (trimmed down to the watermark when unused).
    pub fn buffer_bytes_idle(&self) -> usize {
        self.ctx.bufs.free_bytes()
    }
}
