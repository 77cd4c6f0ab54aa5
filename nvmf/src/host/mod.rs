//! NVMe/TCP and NVMe/RDMA host (initiator): what the tests and the perf tool use to talk to a
//! target. [`HostConfig::transport`] picks the transport; NVMe/RDMA needs the `rdma` feature.
//!
//! Blocking and single-threaded per object: a [`Controller`] owns the admin queue's connection
//! (TCP socket or RDMA queue pair), each [`IoQueue`] owns its own, so I/O queues can move to
//! other threads. Every socket read and write (every wait for an RDMA completion or CM event)
//! is bounded by [`HostConfig::io_timeout`]. Nothing here panics on what a
//! target sends: every length is checked before it is used, and any protocol violation closes
//! the connection with [`HostError::Protocol`].
//!
//! [`RawConnection`] is the PDU-level escape hatch for sending malformed input.
//!
//! The host sends no keep-alives on its own (there is no background thread): call
//! [`Controller::keep_alive`] within KATO, or connect with `kato_ms: 0`.

mod admin;
mod auth;
mod conn;
mod error;
mod io;
pub mod pdu;
mod queue;
mod raw;
#[cfg(feature = "rdma")]
mod rdma;
#[cfg(test)]
mod tests;

pub use admin::Controller;
pub use error::{HostError, Result};
pub use io::IoQueue;
pub use queue::MAX_TRANSFER;
pub use raw::RawConnection;

use crate::auth::{DhGroup, HashId, Secret};
use std::time::Duration;

/// UUID in the default host NQN; [`HostConfig::default`]'s HOSTID holds the same 16 bytes.
pub const DEFAULT_HOST_UUID: &str = "9d2f4c1e-7b8a-4e36-a5c0-3f1d6e2b8a47";
const DEFAULT_HOSTID: [u8; 16] =
    [0x9d, 0x2f, 0x4c, 0x1e, 0x7b, 0x8a, 0x4e, 0x36, 0xa5, 0xc0, 0x3f, 0x1d, 0x6e, 0x2b, 0x8a, 0x47];

/// The fabric a host connects over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostTransport {
    /// NVMe/TCP.
    #[default]
    Tcp,
    /// NVMe/RDMA (RDMA CM on the address's RDMA device, e.g. soft-RoCE). Needs the `rdma`
    /// feature; without it connecting fails with `HostError::InvalidArgument`. The digest
    /// settings do not apply.
    Rdma,
}

impl std::str::FromStr for HostTransport {
    type Err = String;
    /// `tcp` or `rdma`, any case (a transport ID's `trtype`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(HostTransport::Tcp),
            "rdma" => Ok(HostTransport::Rdma),
            _ => Err(format!("trtype {s}: tcp or rdma")),
        }
    }
}

/// How the host connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// Transport of every queue (TCP by default).
    pub transport: HostTransport,
    /// Host NQN sent in every Connect.
    pub hostnqn: String,
    /// Host identifier (HOSTID) sent in every Connect.
    pub hostid: [u8; 16],
    /// Ask for header digests in the ICReq (TCP only).
    pub header_digest: bool,
    /// Ask for data digests in the ICReq (TCP only).
    pub data_digest: bool,
    /// Keep-alive timeout for the admin Connect, milliseconds (0: none).
    pub kato_ms: u32,
    /// I/O queue size in entries (1's based); SQSIZE in the Connect is one less, and at most
    /// `queue_size - 1` commands are in flight.
    pub queue_size: u16,
    /// Socket read/write timeout: how long the host waits for the target to make progress.
    pub io_timeout: Duration,
    /// DH-HMAC-CHAP host secret (`nvme connect --dhchap-secret`): every queue authenticates
    /// with it when the controller asks (Connect AUTHREQ.ATR).
    pub dhchap_secret: Option<Secret>,
    /// DH-HMAC-CHAP controller secret (`--dhchap-ctrl-secret`): the host also authenticates
    /// the controller (bidirectional), and authenticates even when the controller does not ask.
    pub dhchap_ctrl_secret: Option<Secret>,
    /// Hash functions offered in the negotiation, in order; empty offers SHA-256, SHA-384, SHA-512.
    pub dhchap_digests: Vec<HashId>,
    /// DH groups offered in the negotiation, in order; empty offers null and ffdhe2048..8192.
    pub dhchap_dhgroups: Vec<DhGroup>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            transport: HostTransport::Tcp,
            hostnqn: format!("nqn.2014-08.org.nvmexpress:uuid:{DEFAULT_HOST_UUID}"),
            hostid: DEFAULT_HOSTID,
            header_digest: false,
            data_digest: false,
            kato_ms: 30_000,
            queue_size: 128,
            io_timeout: Duration::from_secs(10),
            dhchap_secret: None,
            dhchap_ctrl_secret: None,
            dhchap_digests: Vec::new(),
            dhchap_dhgroups: Vec::new(),
        }
    }
}
