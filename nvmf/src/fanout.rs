//! Bdev work that spans several namespaces and finishes as one: a Flush with NSID FFFFFFFFh
//! (every namespace, Base 2.0 section 7.1 / NVM Command Set 1.0 section 3.3.2) and the flush a
//! shutdown notification (CC.SHN) needs. One bdev Flush goes to each namespace with a volatile
//! write cache on the poll group's own channel; their completions are counted here and the
//! whole finishes once, with the first failure. Nothing blocks the poll thread.

use crate::bdev::{BdevCompletion, BdevIo, BdevOp, BdevStatus};
use crate::ctrlr::Controller;
use crate::poll_group::GroupCtx;
use crate::subsystem::Namespace;
use std::sync::Arc;

/// Transport index of tags for work the target starts itself (no transport owns them).
const INTERNAL_TRANSPORT: u64 = 0xff;

/// Who hears about the end of a fan-out.
pub(crate) enum FanoutDone {
    /// A host command: its completion, with the command's tag, goes to its transport.
    Command,
    /// A controller shutdown: CSTS.SHST becomes "complete".
    Shutdown(Arc<Controller>),
}

struct Fanout {
    tag: u64,
    left: u32,
    status: BdevStatus,
    done: FanoutDone,
}

/// The fan-outs in progress on one poll group (at most one per outstanding command).
#[derive(Default)]
pub(crate) struct Fanouts {
    active: Vec<Fanout>,
    next_internal: u64,
}

impl Fanouts {
    pub(crate) fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// A tag for internal work that no transport request owns.
    fn internal_tag(&mut self) -> u64 {
        // Bits 30:0 only: bit 31 marks counted writes (`channel::GATED`); fewer than 2^31
        // fan-outs are ever in progress at once, so the ids stay unique.
        self.next_internal = self.next_internal.wrapping_add(1) & 0x7fff_ffff;
        INTERNAL_TRANSPORT << 56 | self.next_internal
    }

    /// Account a bdev completion. Returns it unchanged when it is not part of a fan-out, the
    /// fan-out's single completion when this was its last part, `None` otherwise.
    pub(crate) fn complete(&mut self, c: BdevCompletion) -> Option<BdevCompletion> {
        let Some(i) = self.active.iter().position(|f| f.tag == c.tag) else { return Some(c) };
        let f = &mut self.active[i];
        f.left -= 1;
        if f.status == BdevStatus::Success {
            f.status = c.status;
        }
        if f.left > 0 {
            return None;
        }
        let f = self.active.swap_remove(i);
        match f.done {
            FanoutDone::Command => Some(BdevCompletion { tag: f.tag, status: f.status, buf: None }),
            FanoutDone::Shutdown(ctrl) => {
                if f.status != BdevStatus::Success {
                    log::error!("controller {}: flush on shutdown failed: {:?}", ctrl.cntlid, f.status);
                }
                ctrl.shutdown_complete();
                None
            }
        }
    }
}

impl GroupCtx {
    /// Flush every namespace of `namespaces` that has a volatile write cache, on this poll
    /// group's channels. `tag` is the command's (for `FanoutDone::Command`; ignored for internal
    /// work). Returns false when there was nothing to flush: the caller finishes at once.
    pub(crate) fn flush_namespaces<'a>(
        &mut self,
        namespaces: impl Iterator<Item = &'a Arc<Namespace>>,
        tag: u64,
        done: FanoutDone,
    ) -> bool {
        let tag = match done {
            FanoutDone::Command => tag,
            FanoutDone::Shutdown(_) => self.fanouts.internal_tag(),
        };
        let mut sent = 0u32;
        let mut status = BdevStatus::Success;
        for ns in namespaces.filter(|ns| ns.bdev.volatile_write_cache()) {
            match self.channel(ns) {
                Some(chan) => {
                    chan.submit(BdevIo {
                        op: BdevOp::Flush,
                        offset_blocks: 0,
                        num_blocks: 0,
                        buf: None,
                        fua: false,
                        tag,
                    });
                    sent += 1;
                }
                None => status = BdevStatus::WriteError,
            }
        }
        if sent == 0 {
            if let FanoutDone::Shutdown(ctrl) = &done {
                ctrl.shutdown_complete();
            }
            return false;
        }
        // Completions arrive only through a later poll, so registering after submitting is safe.
        self.fanouts.active.push(Fanout { tag, left: sent, status, done });
        true
    }
}
