//! A poll group's channel on one namespace (`GroupCtx::channel`): the bdev channel, the group's
//! I/O counters on it, and its side of the namespace's write gate (`fused::gate`). Every I/O
//! the target submits goes through [`GroupChannel::submit`] / [`GroupChannel::submit_passthru`],
//! so no write reaches the bdev while a fused Compare and Write holds the namespace.

use crate::bdev::iostat::ChannelIoStats;
use crate::bdev::{BdevChannel, BdevCompletion, BdevIo, BdevOp, BdevStatus, IoBuf, PassthruIo};
use crate::fused::gate::GateSlot;
use crate::spec::{GenericStatus, Status};
use crate::subsystem::Namespace;
use std::collections::VecDeque;
use std::sync::Arc;

/// Tag bit of a write counted in the group's gate slot (bits 31:16 of a transport tag are free:
/// `transport::make_tag`). Set at submission, cleared when the completion is reaped, so nothing
/// past this module sees it.
const GATED: u64 = 1 << 31;

/// A write the gate held back, submitted once it opens.
enum HeldIo {
    Io(BdevIo),
    Passthru(PassthruIo),
}

pub(crate) struct GroupChannel {
    pub(crate) uid: u64,
    pub(crate) ns: Arc<Namespace>,
    chan: Box<dyn BdevChannel>,
    stats: Arc<ChannelIoStats>,
    slot: Arc<GateSlot>,
    /// Writes held back while a fused pair holds the namespace, oldest first.
    held: VecDeque<HeldIo>,
}

/// Whether a bdev operation changes blocks (and so waits for a fused pair to finish).
#[inline]
fn modifies(op: BdevOp) -> bool {
    matches!(op, BdevOp::Write | BdevOp::WriteZeroes | BdevOp::Unmap)
}

impl GroupChannel {
    pub(crate) fn new(ns: &Arc<Namespace>, chan: Box<dyn BdevChannel>) -> Self {
        GroupChannel {
            uid: ns.uid,
            ns: ns.clone(),
            chan,
            stats: ns.iostats.register(),
            slot: ns.write_gate.register(),
            held: VecDeque::new(),
        }
    }

    /// This group's I/O counters on the namespace.
    #[inline]
    pub(crate) fn stats(&self) -> &ChannelIoStats {
        &self.stats
    }

    /// A DMA buffer lent by the bdev channel (direct mode), or `None`.
    #[inline]
    pub(crate) fn alloc_buf(&mut self, len: usize) -> Option<IoBuf> {
        self.chan.alloc_buf(len)
    }

    /// Submit an I/O. A write waits behind a fused pair holding the namespace (and behind
    /// writes already waiting, so they keep their order); it completes through `poll` as usual.
    #[inline(always)]
    pub(crate) fn submit(&mut self, mut io: BdevIo) {
        if !modifies(io.op) {
            return self.chan.submit(io);
        }
        if self.held.is_empty() && self.ns.write_gate.enter(&self.slot) {
            io.tag |= GATED;
            return self.chan.submit(io);
        }
        self.hold(HeldIo::Io(io));
    }

    /// Submit an I/O the fused pair holding the gate makes itself (its Compare and Write): not
    /// gated, not counted.
    pub(crate) fn submit_ungated(&mut self, io: BdevIo) {
        self.chan.submit(io)
    }

    /// Submit a passthrough command (the namespace's bdev passes commands through); `writes`
    /// when it may change blocks (gated like a write). `Err` hands it back when the channel
    /// refuses it at once.
    #[allow(clippy::result_large_err)]
    pub(crate) fn submit_passthru(&mut self, mut io: PassthruIo, writes: bool) -> Result<(), PassthruIo> {
        if !writes {
            return self.chan.submit_passthru(io);
        }
        if self.held.is_empty() && self.ns.write_gate.enter(&self.slot) {
            io.tag |= GATED;
            return self.chan.submit_passthru(io).map_err(|io| self.refused(io));
        }
        self.hold(HeldIo::Passthru(io));
        Ok(())
    }

    #[cold]
    fn hold(&mut self, io: HeldIo) {
        if self.held.is_empty() {
            self.ns.write_gate.holding(true);
        }
        self.held.push_back(io);
    }

    /// Submitted I/Os not yet reaped, and writes held back.
    pub(crate) fn busy(&self) -> bool {
        self.chan.outstanding() > 0 || !self.held.is_empty()
    }

    /// Once per poll: submit held writes if the gate opened, then move finished I/Os to `out`
    /// (a held passthrough the channel refuses completes there with Invalid Opcode).
    #[inline]
    pub(crate) fn poll(&mut self, out: &mut Vec<BdevCompletion>) {
        if !self.held.is_empty() && self.ns.write_gate.is_open() {
            self.release_held(out);
        }
        if self.chan.outstanding() == 0 {
            return;
        }
        let start = out.len();
        self.chan.poll(out);
        // The group's own count (one writer): only while it has counted writes in flight are
        // completions looked at.
        if self.slot.in_flight() > 0 {
            self.reap_gated(&mut out[start..]);
        }
    }

    /// A counted passthrough the channel handed back at once: uncount it.
    #[cold]
    fn refused(&mut self, mut io: PassthruIo) -> PassthruIo {
        self.slot.done(1);
        io.tag &= !GATED;
        io
    }

    /// Uncount the counted writes among `done` and clear their tag bit.
    #[inline]
    fn reap_gated(&mut self, done: &mut [BdevCompletion]) {
        let mut n = 0;
        for c in done {
            if c.tag & GATED != 0 {
                c.tag &= !GATED;
                n += 1;
            }
        }
        if n > 0 {
            self.slot.done(n);
        }
    }

    /// The connection whose tags have bits 63:32 `conn` closed: its writes still held back
    /// never reach the bdev (its host, which may have failed over to another path, could
    /// otherwise see them land after newer data). They complete into `out` with Aborted due to
    /// SQ Deletion, so the transport frees their requests.
    #[cold]
    pub(crate) fn abort_held(&mut self, conn: u64, out: &mut Vec<BdevCompletion>) {
        let status = BdevStatus::Nvme { status: Status::generic(GenericStatus::ABORTED_SQ_DELETION), dw0: 0 };
        let was_holding = !self.held.is_empty();
        self.held.retain_mut(|io| {
            let (tag, buf) = match io {
                HeldIo::Io(io) => (io.tag, &mut io.buf),
                HeldIo::Passthru(io) => (io.tag, &mut io.buf),
            };
            if tag >> 32 != conn {
                return true;
            }
            out.push(BdevCompletion { tag, status, buf: buf.take() });
            false
        });
        if was_holding && self.held.is_empty() {
            self.ns.write_gate.holding(false);
        }
    }

    #[cold]
    fn release_held(&mut self, out: &mut Vec<BdevCompletion>) {
        self.submit_held(out);
        if self.held.is_empty() {
            self.ns.write_gate.holding(false);
        }
    }

    fn submit_held(&mut self, out: &mut Vec<BdevCompletion>) {
        while let Some(io) = self.held.pop_front() {
            if !self.ns.write_gate.enter(&self.slot) {
                self.held.push_front(io);
                return;
            }
            match io {
                HeldIo::Io(mut io) => {
                    io.tag |= GATED;
                    self.chan.submit(io);
                }
                HeldIo::Passthru(mut io) => {
                    io.tag |= GATED;
                    if let Err(io) = self.chan.submit_passthru(io) {
                        let io = self.refused(io);
                        let status = Status::generic(GenericStatus::INVALID_OPCODE).dnr();
                        out.push(BdevCompletion {
                            tag: io.tag,
                            status: BdevStatus::Nvme { status, dw0: 0 },
                            buf: io.buf,
                        });
                    }
                }
            }
        }
    }
}

impl Drop for GroupChannel {
    fn drop(&mut self) {
        if !self.held.is_empty() {
            self.ns.write_gate.holding(false);
        }
        self.ns.write_gate.unregister(&self.slot);
    }
}
