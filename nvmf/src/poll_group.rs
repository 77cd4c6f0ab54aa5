//! Poll groups: a set of connections that one thread polls (SPDK's poll group, Linux's
//! io_handler). A poll group owns its bdev channels and buffer pool, so nothing on its I/O
//! path is shared with other threads.

use crate::bdev::BdevCompletion;
pub use crate::group_ctx::GroupCtx;
use crate::target::{Qpair, TargetShared};
use crate::transport::{split_tag, TransportPollGroup};
use std::sync::Arc;
use std::time::Instant;

/// While busy, the clock is read (and timers checked) once per this many polls; an idle poll
/// always reads it. Keep-alive and event timers have millisecond granularity.
const CLOCK_EVERY: u64 = 32;

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
        if !self.ctx.fused.no_jobs() {
            self.ctx.step_fused();
        }
        let mut n = done.len();
        self.route(&mut done);
        // Completions of fused members, including those that routing just produced (a member's
        // completion can fail its partner).
        while !self.ctx.fused.ready.is_empty() {
            std::mem::swap(&mut done, &mut self.ctx.fused.ready);
            n += done.len();
            self.route(&mut done);
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

    /// Hand finished bdev I/Os to their fan-outs, fused pairs or transports.
    #[inline]
    fn route(&mut self, done: &mut Vec<BdevCompletion>) {
        for c in done.drain(..) {
            let c = if self.ctx.fanouts.is_empty() {
                c
            } else {
                match self.ctx.fanouts.complete(c) {
                    Some(c) => c,
                    None => continue,
                }
            };
            let c = if self.ctx.fused.no_jobs() {
                c
            } else {
                match self.ctx.fused_complete(c) {
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
