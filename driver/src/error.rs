//! The driver's error type: one enum, each variant naming what failed; NVMe command failures
//! carry the completion's [`Status`].

use crate::spec::{Cqe, Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no hugepages available for {requested} bytes of DMA memory ({free} free 2 MiB pages): \
         reserve some with `hugepage-setup config --hugemem 256` or `echo 128 > /proc/sys/vm/nr_hugepages`"
    )]
    NoHugepages { requested: usize, free: u64 },
    #[error("{op}: {source}")]
    Os {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("physical address lookup: {0}")]
    Pagemap(String),
    #[error("VFIO {op}: {detail}")]
    Vfio { op: &'static str, detail: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("controller {what} did not happen within {timeout_ms} ms (CSTS={csts:#x})")]
    ReadyTimeout { what: &'static str, timeout_ms: u64, csts: u32 },
    #[error("controller reports fatal status (CSTS.CFS); reset it")]
    ControllerFatal,
    #[error("controller was reset or shut down; this queue pair is gone, allocate a new one")]
    QpairInvalidated,
    #[error("command failed: {status:?}")]
    Nvme { status: Status, cqe: Cqe },
    #[error("command timed out and was aborted (cid {cid})")]
    Timeout { cid: u16 },
    #[error("queue full")]
    QueueFull,
    #[error("no I/O queue pair left (controller grants {granted})")]
    NoQueuesLeft { granted: u16 },
    #[error("transfer of {len} bytes is larger than the maximum {max}")]
    TransferTooLarge { len: usize, max: usize },
    #[error("unexpected device data: {0}")]
    Device(String),
}

impl Error {
    pub(crate) fn os(op: &'static str, source: std::io::Error) -> Self {
        Error::Os { op, source }
    }
    /// The NVMe status of a failed command, if this error is one.
    pub fn status(&self) -> Option<Status> {
        match self {
            Error::Nvme { status, .. } => Some(*status),
            _ => None,
        }
    }
}
