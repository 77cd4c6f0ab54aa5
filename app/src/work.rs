//! The helper thread that runs the target's deferred work (`nvmf::WorkRunner`): DH-HMAC-CHAP's
//! ffdhe modular exponentiations, which would otherwise hold a reactor's poll group (and every
//! connection on it) for their duration. Started before the reactors, installed with
//! `Target::set_work_runner`, joined after the reactors have drained.

use nvmf::{Job, WorkRunner};
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

/// One thread running jobs in the order they arrive (one is plenty: a handshake needs two short
/// jobs). Not pinned: it takes whatever core the reactors leave.
pub struct WorkThread {
    /// `None` once shut down: later jobs are dropped, which fails their commands.
    tx: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl WorkThread {
    pub fn start() -> std::io::Result<WorkThread> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("nvmf-work".into()).spawn(move || {
            for job in rx {
                job();
            }
        })?;
        Ok(WorkThread { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) })
    }

    /// Finish the queued jobs and join the thread (after the reactors: draining connections
    /// may still wait for a job).
    pub fn shutdown(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if t.join().is_err() {
                log::warn!("the work thread panicked");
            }
        }
    }
}

impl WorkRunner for WorkThread {
    fn run(&self, job: Job) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            // Only fails once the thread is gone; the dropped job then fails its command.
            let _ = tx.send(job);
        }
    }
}

impl Drop for WorkThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn jobs_run_on_the_helper_thread_until_shutdown() {
        let w = WorkThread::start().expect("start");
        let (tx, rx) = mpsc::channel();
        let t = tx.clone();
        w.run(Box::new(move || {
            let _ = t.send(std::thread::current().name().map(str::to_string));
        }));
        assert_eq!(rx.recv().expect("job ran"), Some("nvmf-work".to_string()));
        w.shutdown();
        // After shutdown a job is dropped unrun (its command fails; nothing hangs).
        let dropped = Arc::new(());
        let d = dropped.clone();
        w.run(Box::new(move || drop(d)));
        assert_eq!(Arc::strong_count(&dropped), 1, "the job was dropped, not queued");
        drop(tx);
    }
}
