//! A `WorkRunner` for tests: one helper thread runs the target's deferred jobs (as nvmf_tgt's
//! does), counting them; `hold` parks new jobs until `release` or `discard`, so a test can act
//! while a job is known not to have run.

use nvmf::{Job, WorkRunner};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub struct WorkThread {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    ran: Arc<AtomicUsize>,
    holding: AtomicBool,
    parked: Mutex<Vec<Job>>,
}

impl WorkThread {
    pub fn start() -> Arc<WorkThread> {
        let (tx, rx) = mpsc::channel::<Job>();
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let thread = std::thread::Builder::new()
            .name("test-work".into())
            .spawn(move || {
                for job in rx {
                    // Counted before it runs: its result (a completion the host waits for) can
                    // reach the host before anything after `job()` here.
                    counter.fetch_add(1, Ordering::Relaxed);
                    job();
                }
            })
            .expect("spawn");
        Arc::new(WorkThread {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            ran,
            holding: AtomicBool::new(false),
            parked: Mutex::new(Vec::new()),
        })
    }

    /// Jobs started so far (each one's result comes after it is counted).
    pub fn ran(&self) -> usize {
        self.ran.load(Ordering::Relaxed)
    }

    /// Park the jobs that arrive from now on.
    pub fn hold(&self) {
        self.holding.store(true, Ordering::Relaxed);
    }

    /// Jobs parked by `hold`.
    pub fn parked(&self) -> usize {
        self.parked.lock().unwrap().len()
    }

    /// Stop parking; run the parked jobs.
    pub fn release(&self) {
        self.holding.store(false, Ordering::Relaxed);
        for job in std::mem::take(&mut *self.parked.lock().unwrap()) {
            self.send(job);
        }
    }

    /// Stop parking; drop the parked jobs unrun.
    pub fn discard(&self) {
        self.holding.store(false, Ordering::Relaxed);
        self.parked.lock().unwrap().clear();
    }

    fn send(&self, job: Job) {
        if let Some(tx) = self.tx.lock().unwrap().as_ref() {
            let _ = tx.send(job);
        }
    }
}

impl WorkRunner for WorkThread {
    fn run(&self, job: Job) {
        if self.holding.load(Ordering::Relaxed) {
            self.parked.lock().unwrap().push(job);
        } else {
            self.send(job);
        }
    }
}

impl Drop for WorkThread {
    fn drop(&mut self) {
        self.parked.lock().unwrap().clear();
        drop(self.tx.lock().unwrap().take());
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}
