//! Errors of the host client.

use crate::spec::Status;
use std::io;

/// Everything that can go wrong talking to a target.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A socket error other than a timeout or the peer closing the connection.
    #[error("I/O error: {0}")]
    Io(#[source] io::Error),
    /// The command completed with an error status; `dw0` is the CQE's DW0 (for example the
    /// Connect Invalid Parameters IATTR/IPO).
    #[error("command failed with {status:?} (dw0 {dw0:#x})")]
    Status { status: Status, dw0: u32 },
    /// The target sent a C2HTermReq: the connection is gone.
    #[error("target terminated the connection: FES {fes:#x}, FEI {fei:#x}")]
    TermReq { fes: u16, fei: u32 },
    /// The target broke the NVMe/TCP or NVMe protocol (bad PDU, digest mismatch, unknown
    /// command identifier, ...). The connection is unusable afterwards.
    #[error("protocol violation by the target: {0}")]
    Protocol(String),
    /// No answer within `HostConfig::io_timeout` (or a register did not change in time). The
    /// connection is unusable afterwards.
    #[error("timed out")]
    Timeout,
    /// The connection is closed (by the target, or earlier by an error on this side).
    #[error("connection closed")]
    Closed,
    /// All command slots of the queue are in use (pipelined API): poll first.
    #[error("queue full")]
    QueueFull,
    /// DH-HMAC-CHAP in-band authentication failed (wrong secret, no common hash or DH group, the
    /// controller failed to prove itself, ...). The target closes the connection afterwards.
    #[error("DH-HMAC-CHAP authentication failed: {0}")]
    Auth(String),
    /// The caller asked for something the protocol cannot express (NLB out of range, a buffer of
    /// the wrong size, data in both directions, ...). Nothing was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Result of host operations.
pub type Result<T> = std::result::Result<T, HostError>;

impl From<io::Error> for HostError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HostError::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected => HostError::Closed,
            _ => HostError::Io(e),
        }
    }
}

impl HostError {
    /// The NVMe status, when the command itself failed.
    pub fn status(&self) -> Option<Status> {
        match self {
            HostError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
