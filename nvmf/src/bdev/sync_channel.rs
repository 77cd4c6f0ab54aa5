//! The channel shape shared by the synchronous backings (Malloc, Null, File): `submit` does the
//! work at once and queues the completion in a pre-allocated `VecDeque` that `poll` drains, so a
//! completion is never reported from inside `submit` and nothing is allocated per I/O.

use super::{BdevChannel, BdevCompletion, BdevIo, BdevStatus};
use std::collections::VecDeque;

/// Completions a synchronous channel queues before its deque has to grow.
pub(super) const COMPLETION_QUEUE_CAPACITY: usize = 256;

/// A backing that finishes each I/O inside the call.
pub(super) trait SyncExecute: Send {
    fn execute(&mut self, io: &mut BdevIo) -> BdevStatus;
}

/// A `BdevChannel` over a synchronous backing.
pub(super) struct SyncChannel<E> {
    exec: E,
    done: VecDeque<BdevCompletion>,
}

impl<E: SyncExecute> SyncChannel<E> {
    pub(super) fn new(exec: E) -> Self {
        SyncChannel { exec, done: VecDeque::with_capacity(COMPLETION_QUEUE_CAPACITY) }
    }
}

impl<E: SyncExecute> BdevChannel for SyncChannel<E> {
    fn submit(&mut self, mut io: BdevIo) {
        let status = self.exec.execute(&mut io);
        self.done.push_back(BdevCompletion { tag: io.tag, status, buf: io.buf });
    }
    fn poll(&mut self, out: &mut Vec<BdevCompletion>) -> usize {
        let n = self.done.len();
        out.extend(self.done.drain(..));
        n
    }
    fn outstanding(&self) -> usize {
        self.done.len()
    }
}
