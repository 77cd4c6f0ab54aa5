//! Per-namespace I/O statistics (`bdev_get_iostat`) without a shared write on the I/O path:
//! each poll group's channel counts into its own `ChannelIoStats` (one writer: a relaxed load
//! and store, no locked instruction), and readers add up every channel's counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One channel's counters, written only by its poll group.
#[derive(Debug, Default)]
pub struct ChannelIoStats {
    read_ops: AtomicU64,
    bytes_read: AtomicU64,
    write_ops: AtomicU64,
    bytes_written: AtomicU64,
    unmap_ops: AtomicU64,
    bytes_unmapped: AtomicU64,
}

/// Single-writer add: the owning poll group is the only writer.
#[inline]
fn bump(c: &AtomicU64, v: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

impl ChannelIoStats {
    #[inline]
    pub(crate) fn read(&self, bytes: u64) {
        bump(&self.read_ops, 1);
        bump(&self.bytes_read, bytes);
    }
    #[inline]
    pub(crate) fn write(&self, bytes: u64) {
        bump(&self.write_ops, 1);
        bump(&self.bytes_written, bytes);
    }
    #[inline]
    pub(crate) fn unmap(&self, bytes: u64) {
        bump(&self.unmap_ops, 1);
        bump(&self.bytes_unmapped, bytes);
    }
}

/// Totals over a namespace's channels (I/Os submitted to its bdev by the target).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    pub num_read_ops: u64,
    pub bytes_read: u64,
    pub num_write_ops: u64,
    pub bytes_written: u64,
    pub num_unmap_ops: u64,
    pub bytes_unmapped: u64,
}

/// The channels of one namespace.
#[derive(Debug, Default)]
pub(crate) struct IoStatsRegistry {
    channels: Mutex<Vec<Arc<ChannelIoStats>>>,
}

impl IoStatsRegistry {
    /// A new channel's counters (control path: when a poll group opens its channel).
    pub(crate) fn register(&self) -> Arc<ChannelIoStats> {
        let s = Arc::new(ChannelIoStats::default());
        self.channels.lock().unwrap_or_else(|e| e.into_inner()).push(s.clone());
        s
    }

    pub(crate) fn total(&self) -> IoStats {
        let chans = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let mut t = IoStats::default();
        for c in chans.iter() {
            let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
            t.num_read_ops += l(&c.read_ops);
            t.bytes_read += l(&c.bytes_read);
            t.num_write_ops += l(&c.write_ops);
            t.bytes_written += l(&c.bytes_written);
            t.num_unmap_ops += l(&c.unmap_ops);
            t.bytes_unmapped += l(&c.bytes_unmapped);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_add_up() {
        let r = IoStatsRegistry::default();
        let (a, b) = (r.register(), r.register());
        a.read(4096);
        b.read(512);
        a.write(8192);
        b.unmap(1 << 20);
        let t = r.total();
        assert_eq!((t.num_read_ops, t.bytes_read), (2, 4608));
        assert_eq!((t.num_write_ops, t.bytes_written), (1, 8192));
        assert_eq!((t.num_unmap_ops, t.bytes_unmapped), (1, 1 << 20));
    }
}
