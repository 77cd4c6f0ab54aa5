//! Deferred work: control-path computations too slow for a poll group's thread, run by the
//! application. Today that is DH-HMAC-CHAP's ffdhe modular exponentiation (two per handshake,
//! milliseconds each for ffdhe8192 in an optimised build): run inline it would stall every other
//! connection of the poll group while an unauthenticated host makes the target compute.
//!
//! The library stays passive. A command that needs such work returns `Exec::Pending` and hands
//! a [`Job`] to the application's [`WorkRunner`] (`Target::set_work_runner`), which runs it on a
//! thread of its own (nvmf_tgt: one helper thread). The poll group keeps the command's tag and
//! data buffer here and, on each poll, turns finished jobs into completions through the path a
//! bdev I/O takes (`TransportPollGroup::bdev_complete`): the job's bytes become the command's
//! controller-to-host data.
//!
//! Without a runner the poll group runs the jobs itself, at most one per poll, so a burst of
//! handshakes interleaves with the other connections' I/O instead of running back to back; each
//! job still holds its poll for its duration.
//!
//! A connection that closes while its job runs keeps the request until the completion arrives
//! (transports free a connection only with nothing outstanding); the completion then only
//! returns the buffer and the job's result is dropped. A job the runner drops unrun (shutting
//! down, or a panic) completes its command with Internal Error.

use crate::bdev::{BdevCompletion, BdevStatus, IoBuf};
use crate::poll_group::GroupCtx;
use crate::spec::{GenericStatus as Gs, Status};
use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, TryRecvError};

/// A piece of deferred work: call it once, on any thread.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// The application's way of running [`Job`]s off the poll groups' threads, installed with
/// `Target::set_work_runner`. `run` is called from poll group threads and must not block: queue
/// the job (to a helper thread or a pool) and return. Jobs are short (one modular
/// exponentiation) and independent; they may run in any order. Dropping a job instead of
/// running it is allowed (e.g. at shutdown) and fails the command waiting for it.
///
/// Any `Fn(Job) + Send + Sync` closure is a runner.
pub trait WorkRunner: Send + Sync {
    fn run(&self, job: Job);
}

impl<F: Fn(Job) + Send + Sync> WorkRunner for F {
    fn run(&self, job: Job) {
        self(job)
    }
}

/// A command waiting for its job.
struct Waiting {
    tag: u64,
    /// The command's data buffer, handed back with the completion.
    buf: Option<IoBuf>,
    /// The job's controller-to-host data; disconnected if the job was dropped unrun.
    result: Receiver<Vec<u8>>,
}

/// A poll group's commands waiting for deferred work (control path: a few at a time).
#[derive(Default)]
pub(crate) struct Deferred {
    waiting: Vec<Waiting>,
    /// Jobs the poll group runs itself (no runner installed), oldest first.
    inline: VecDeque<Job>,
}

impl Deferred {
    /// Turn finished jobs into completions (appended to `out`); without a runner, first run the
    /// oldest queued job.
    pub(crate) fn poll(&mut self, out: &mut Vec<BdevCompletion>) {
        if self.waiting.is_empty() {
            return;
        }
        if let Some(job) = self.inline.pop_front() {
            job();
        }
        let mut i = 0;
        while i < self.waiting.len() {
            let status = match self.waiting[i].result.try_recv() {
                Err(TryRecvError::Empty) => {
                    i += 1;
                    continue;
                }
                Ok(mut data) => {
                    if !data.is_empty() {
                        crate::cmd::fill_data(&mut self.waiting[i].buf, &data);
                    }
                    crate::auth::wipe(&mut data);
                    BdevStatus::Success
                }
                Err(TryRecvError::Disconnected) => {
                    log::warn!("deferred work was dropped before it ran; failing its command");
                    BdevStatus::Nvme { status: Status::generic(Gs::INTERNAL_ERROR), dw0: 0 }
                }
            };
            let w = self.waiting.swap_remove(i);
            out.push(BdevCompletion { tag: w.tag, status, buf: w.buf });
        }
    }
}

impl GroupCtx {
    /// Run `work` off this poll group (see the module comment) for the command with `tag`,
    /// which the caller completes with `Exec::Pending`. `buf` (the command's data buffer, taken
    /// from it) comes back with the completion, holding the bytes `work` returns when they are
    /// not empty.
    pub(crate) fn defer(&mut self, tag: u64, buf: Option<IoBuf>, work: impl FnOnce() -> Vec<u8> + Send + 'static) {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            // The command may be gone (its poll group dropped): then nobody wants the result.
            let _ = tx.send(work());
        });
        self.deferred.waiting.push(Waiting { tag, buf, result: rx });
        match self.target.work_runner() {
            Some(runner) => runner.run(job),
            None => self.deferred.inline.push_back(job),
        }
    }
}

