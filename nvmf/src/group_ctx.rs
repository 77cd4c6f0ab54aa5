//! The execution context of one poll group (`GroupCtx`), handed to every transport and to the
//! NVMe layer with each call: the poll's clock, the group's buffer pool, its bdev channels and
//! the target. Transports (inside or outside this crate) use only its public methods.

use crate::bdev::{BdevCompletion, BufPool, IoBuf};
use crate::channel::GroupChannel;
use crate::subsystem::Namespace;
use crate::target::TargetShared;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buffers a poll group may hold at once (they grow to the largest I/O seen, 1 MiB at most).
pub(crate) const MAX_BUFFERS: usize = 4096;
/// Idle pool buffers are looked at once per this period: those unused all through it are freed
/// down to the watermark.
const BUF_TRIM_PERIOD: Duration = Duration::from_secs(1);
/// Idle pool memory kept by default (a transport may set its own: `buf_pool_watermark`).
pub(crate) const DEFAULT_BUF_WATERMARK: usize = 64 << 20;

/// Per-poll-group state shared by all transports in the group.
pub struct GroupCtx {
    pub(crate) target: Arc<TargetShared>,
    pub(crate) bufs: BufPool,
    /// Idle pool memory kept when trimming (bytes).
    pub(crate) buf_watermark: usize,
    pub(crate) last_trim: Instant,
    /// Time of the current poll: read on every idle poll and every `CLOCK_EVERY` busy polls.
    pub(crate) now: Instant,
    /// `now` was refreshed for this poll: run the timer checks (keep-alive, events, teardown).
    pub(crate) tick: bool,
    channels: Vec<GroupChannel>,
    pub(crate) completions: Vec<BdevCompletion>,
    /// Flushes spanning several namespaces (Flush NSID FFFFFFFFh, shutdown).
    pub(crate) fanouts: crate::fanout::Fanouts,
    /// Index of the transport being polled (for bdev tags).
    pub(crate) transport_index: u8,
    /// Commands waiting for work run off the poll group (DH-HMAC-CHAP).
    pub(crate) deferred: crate::deferred::Deferred,
    /// Fused Compare and Write pairs running on this group, and completions they produced.
    pub(crate) fused: crate::fused::job::FusedJobs,
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
            fused: Default::default(),
        }
    }

    /// This group's channel on `ns`, opened on first use (`None` when the bdev cannot open
    /// one).
    #[inline]
    pub(crate) fn channel(&mut self, ns: &Arc<Namespace>) -> Option<&mut GroupChannel> {
        let idx = match self.channels.iter().position(|c| c.uid == ns.uid) {
            Some(i) => i,
            None => self.open_channel(ns)?,
        };
        Some(&mut self.channels[idx])
    }

    #[cold]
    fn open_channel(&mut self, ns: &Arc<Namespace>) -> Option<usize> {
        match ns.bdev.open_channel() {
            Ok(chan) => {
                self.channels.push(GroupChannel::new(ns, chan));
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

    /// The time of the current poll (read once per poll, or once per several busy polls).
    #[inline]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The clock was read for this poll: a transport runs its timer checks (keep-alive, events,
    /// teardown: [`crate::queue::NvmeQueue::poll_event`]) now and skips them otherwise.
    #[inline]
    pub fn is_tick(&self) -> bool {
        self.tick
    }

    /// A buffer of `len` bytes from the group's pool, `None` when the pool is exhausted (wait
    /// for buffers to come back and retry). Its contents are whatever an earlier I/O left.
    #[inline]
    pub fn get_buffer(&mut self, len: usize) -> Option<IoBuf> {
        self.bufs.get(len)
    }

    /// Give a buffer back to the group's pool.
    #[inline]
    pub fn put_buffer(&mut self, buf: IoBuf) {
        self.bufs.put(buf)
    }

    /// The bdev tag for request `slot` of connection `conn` of the transport being polled:
    /// its completion comes back through that transport's
    /// [`TransportPollGroup::bdev_complete`](crate::transport::TransportPollGroup::bdev_complete)
    /// with the same `conn` and `slot`.
    #[inline]
    pub fn tag(&self, conn: u32, slot: u16) -> u64 {
        crate::transport::make_tag(self.transport_index, conn, slot)
    }

    /// On a timer tick: free pool buffers left unused for a whole period above the watermark.
    pub(crate) fn trim_buffers(&mut self) {
        if self.now.duration_since(self.last_trim) >= BUF_TRIM_PERIOD {
            self.last_trim = self.now;
            let freed = self.bufs.trim(self.buf_watermark);
            if freed > 0 {
                log::debug!("buffer pool: freed {} KiB of idle buffers", freed >> 10);
            }
        }
    }

    /// Poll every channel (held writes go out once their gate opens); finished I/Os are
    /// appended to `out`.
    pub(crate) fn poll_channels(&mut self, out: &mut Vec<BdevCompletion>) {
        for c in self.channels.iter_mut() {
            c.poll(out);
        }
    }

    /// A connection closed (its tags have bits 63:32 `conn`): what it submitted that has not
    /// reached a bdev (writes held back by a write gate, fused pairs waiting for one) is dropped
    /// and completed with Aborted due to SQ Deletion.
    #[cold]
    pub(crate) fn abort_not_started(&mut self, conn: u64) {
        self.fused.abort_not_started(conn);
        for c in self.channels.iter_mut() {
            c.abort_held(conn, &mut self.fused.ready);
        }
    }

    /// Close channels of namespaces that were removed once their I/O has drained.
    pub(crate) fn reap_channels(&mut self) {
        self.channels.retain(|c| Arc::strong_count(&c.ns) > 1 || c.busy());
    }
}
