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
use crate::spec::{GenericStatus, Status};
use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;

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
    /// The job's controller-to-host data, or the status to fail the command with;
    /// disconnected if the job was dropped unrun.
    result: Receiver<Result<Vec<u8>, Status>>,
}

/// A poll group's commands waiting for deferred work (control path: a few at a time).
#[derive(Default)]
pub(crate) struct Deferred {
    waiting: Vec<Waiting>,
    /// Jobs the poll group runs itself (no runner installed), oldest first.
    inline: VecDeque<Job>,
}

impl Deferred {
    /// Queue `work` for the command with `tag` (see [`GroupCtx::defer`]): to `runner`, or to
    /// this poll group's own queue without one.
    fn submit(
        &mut self,
        runner: Option<Arc<dyn WorkRunner>>,
        tag: u64,
        buf: Option<IoBuf>,
        work: impl FnOnce() -> Result<Vec<u8>, Status> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            // The command may be gone (its poll group dropped): then nobody wants the result.
            let _ = tx.send(work());
        });
        self.waiting.push(Waiting { tag, buf, result: rx });
        match runner {
            Some(runner) => runner.run(job),
            None => self.inline.push_back(job),
        }
    }

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
                Ok(Ok(mut data)) => {
                    if !data.is_empty() {
                        crate::cmd::fill_data(&mut self.waiting[i].buf, &data);
                    }
                    crate::auth::wipe(&mut data);
                    BdevStatus::Success
                }
                Ok(Err(status)) => BdevStatus::Nvme { status, dw0: 0 },
                Err(TryRecvError::Disconnected) => {
                    log::warn!("deferred work was dropped before it ran; failing its command");
                    BdevStatus::Nvme { status: Status::generic(GenericStatus::INTERNAL_ERROR), dw0: 0 }
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
        self.defer_fallible(tag, buf, move || Ok(work()));
    }

    /// [`GroupCtx::defer`] for work that can fail: an `Err` completes the command with that
    /// status (PTPL file writes).
    pub(crate) fn defer_fallible(
        &mut self,
        tag: u64,
        buf: Option<IoBuf>,
        work: impl FnOnce() -> Result<Vec<u8>, Status> + Send + 'static,
    ) {
        let runner = self.target.work_runner();
        self.deferred.submit(runner, tag, buf, work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn tags(out: &[BdevCompletion]) -> Vec<u64> {
        out.iter().map(|c| c.tag).collect()
    }

    #[test]
    fn without_a_runner_one_job_per_poll_and_its_bytes_fill_the_buffer() {
        let mut d = Deferred::default();
        let mut out = Vec::new();
        d.poll(&mut out);
        assert!(out.is_empty());
        let mut buf = IoBuf::new(8);
        buf.as_mut_slice().fill(0xee);
        d.submit(None, 1, Some(buf), || Ok(vec![1, 2, 3]));
        d.submit(None, 2, None, || Ok(Vec::new()));
        d.poll(&mut out);
        assert_eq!(tags(&out), [1]);
        assert_eq!(out[0].status, BdevStatus::Success);
        // The job's bytes, the rest zeroed (no stale pool data reaches the host).
        assert_eq!(out[0].buf.as_ref().unwrap().as_slice(), &[1, 2, 3, 0, 0, 0, 0, 0]);
        out.clear();
        d.poll(&mut out);
        assert_eq!(tags(&out), [2]);
        assert!(d.waiting.is_empty() && d.inline.is_empty());
    }

    #[test]
    fn a_runner_runs_the_jobs_and_the_poll_collects_them() {
        let held: Arc<Mutex<Vec<Job>>> = Arc::default();
        let h = held.clone();
        let runner: Arc<dyn WorkRunner> = Arc::new(move |job| h.lock().unwrap().push(job));
        let mut d = Deferred::default();
        let mut buf = IoBuf::new(4);
        buf.as_mut_slice().fill(0xee);
        d.submit(Some(runner.clone()), 7, Some(buf), || Ok(vec![9]));
        d.submit(Some(runner), 8, None, || Err(Status::generic(GenericStatus::RESERVATION_CONFLICT)));
        let mut out = Vec::new();
        d.poll(&mut out);
        assert!(out.is_empty(), "nothing finished while the runner holds the jobs");
        let mut jobs = std::mem::take(&mut *held.lock().unwrap());
        assert_eq!(jobs.len(), 2);
        // Run the second (it fails); drop the first unrun: Internal Error, keeping its buffer.
        (jobs.pop().unwrap())();
        drop(jobs);
        d.poll(&mut out);
        out.sort_by_key(|c| c.tag);
        assert_eq!(tags(&out), [7, 8]);
        let internal = BdevStatus::Nvme { status: Status::generic(GenericStatus::INTERNAL_ERROR), dw0: 0 };
        assert_eq!(out[0].status, internal);
        assert_eq!(out[0].buf.as_ref().unwrap().as_slice(), &[0xee; 4], "no data from a job that did not run");
        let failed = BdevStatus::Nvme { status: Status::generic(GenericStatus::RESERVATION_CONFLICT), dw0: 0 };
        assert_eq!(out[1].status, failed, "a job's error status completes its command");
        assert!(d.waiting.is_empty());
    }
}
