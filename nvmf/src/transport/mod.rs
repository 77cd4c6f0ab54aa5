//! The transport abstraction (like SPDK's `spdk_nvmf_transport_ops`): a transport listens on
//! addresses, accepts connections, and drives them inside a poll group. TCP is the first
//! implementation; RDMA plugs into the same traits, and so does the in-process loopback
//! transport (`loopback`), which uses only the public API (`GroupCtx`, `queue::NvmeQueue`) that a
//! transport outside this crate would.

#[forbid(unsafe_code)]
pub(crate) mod limits;
#[forbid(unsafe_code)]
pub mod loopback;
#[cfg(feature = "rdma")]
pub mod rdma;
#[forbid(unsafe_code)]
pub mod tcp;

use crate::bdev::BdevCompletion;
use crate::poll_group::GroupCtx;
use std::any::Any;
use std::fmt;

/// Transport types, numbered as in the discovery log's TRTYPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportType {
    Rdma,
    Tcp,
    /// In-process loopback (TRTYPE FEh, intra-host): [`loopback`].
    Loop,
}

impl TransportType {
    pub fn trtype(self) -> u8 {
        match self {
            TransportType::Rdma => crate::spec::discovery::trtype::RDMA,
            TransportType::Tcp => crate::spec::discovery::trtype::TCP,
            TransportType::Loop => crate::spec::discovery::trtype::LOOP,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TransportType::Rdma => "RDMA",
            TransportType::Tcp => "TCP",
            TransportType::Loop => "LOOP",
        }
    }
}

/// A transport address (transport ID): type, address and service (port).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransportAddr {
    pub trtype: TransportType,
    /// IP address as text, e.g. "127.0.0.1" or "::1".
    pub traddr: String,
    /// Service ID: the port as text, e.g. "4420".
    pub trsvcid: String,
}

impl TransportAddr {
    pub fn tcp(traddr: &str, port: u16) -> Self {
        TransportAddr { trtype: TransportType::Tcp, traddr: traddr.to_string(), trsvcid: port.to_string() }
    }
    pub fn rdma(traddr: &str, port: u16) -> Self {
        TransportAddr { trtype: TransportType::Rdma, traddr: traddr.to_string(), trsvcid: port.to_string() }
    }
    /// A loopback address: `name` identifies the listener within the process.
    pub fn loopback(name: &str) -> Self {
        TransportAddr { trtype: TransportType::Loop, traddr: name.to_string(), trsvcid: String::new() }
    }
    /// ADRFAM for the discovery log.
    pub fn adrfam(&self) -> u8 {
        if self.trtype == TransportType::Loop {
            crate::spec::discovery::adrfam::INTRA_HOST
        } else if self.traddr.contains(':') {
            crate::spec::discovery::adrfam::IPV6
        } else {
            crate::spec::discovery::adrfam::IPV4
        }
    }
    /// Whether a connection accepted on listener `listener` may use a subsystem listening on
    /// `self`. An exact match, or the subsystem allows the wildcard address on the same port.
    pub fn matches(&self, listener: &TransportAddr) -> bool {
        self.trtype == listener.trtype
            && self.trsvcid == listener.trsvcid
            && (self.traddr == listener.traddr || self.traddr == "0.0.0.0" || self.traddr == "::")
    }
}

impl fmt::Display for TransportAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trtype:{} traddr:{} trsvcid:{}", self.trtype.name(), self.traddr, self.trsvcid)
    }
}

/// A transport: makes listeners and per-poll-group connection sets.
pub trait Transport: Send + Sync {
    fn trtype(&self) -> TransportType;
    /// Start listening on `addr` (non-blocking).
    fn listen(&self, addr: &TransportAddr) -> crate::Result<Box<dyn TransportListener>>;
    /// Create this transport's part of a poll group.
    fn create_poll_group(&self) -> Box<dyn TransportPollGroup>;
}

/// A listening endpoint.
pub trait TransportListener: Send {
    fn addr(&self) -> &TransportAddr;
    /// Accept at most one pending connection without blocking.
    fn accept(&mut self) -> Option<Box<dyn TransportConn>>;
}

/// A newly accepted connection not yet in a poll group.
pub trait TransportConn: Send {
    fn trtype(&self) -> TransportType;
    fn peer(&self) -> String;
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

/// One transport's connections inside one poll group. Driven from one thread.
pub trait TransportPollGroup: Send {
    fn trtype(&self) -> TransportType;
    /// Take over a connection of this transport. `listener` is the address it arrived on.
    fn add(&mut self, conn: Box<dyn TransportConn>, listener: TransportAddr, ctx: &mut GroupCtx);
    /// Advance every connection: receive, execute, send. Returns the amount of work done.
    fn poll(&mut self, ctx: &mut GroupCtx) -> usize;
    /// A bdev I/O submitted by connection `conn`, request `slot`, finished.
    fn bdev_complete(&mut self, conn: u32, slot: u16, done: BdevCompletion, ctx: &mut GroupCtx);
    /// Called once after a batch of `bdev_complete` calls in a poll: send what they queued now
    /// rather than on the next poll (one send per connection for the whole batch).
    fn flush_completions(&mut self) {}
    /// Connections in this group (including ones draining after close).
    fn num_connections(&self) -> usize;
    /// Close every connection (graceful shutdown); they drain on later polls.
    fn close_all(&mut self);
}

/// Data direction of a command from its opcode's low two bits (NVMe Base 2.0 Figure 89; fabrics
/// commands use FCTYPE's), shared by the transports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dir {
    #[default]
    None,
    HostToCtrl,
    CtrlToHost,
}

pub fn direction(sqe: &crate::spec::Sqe) -> Dir {
    let bits = if sqe.opcode == crate::spec::AdminOpcode::Fabrics as u8 { sqe.fctype() } else { sqe.opcode };
    match bits & 3 {
        1 => Dir::HostToCtrl,
        2 => Dir::CtrlToHost,
        _ => Dir::None,
    }
}

/// Bdev tag layout: transport index (bits 63:56), connection (55:32), request slot (15:0). Bits
/// 31:16 are zero in every tag made here; the poll group's channel uses bit 31 for writes it
/// counted (`channel::GATED`), internal tags (`fanout`) stay below it.
pub(crate) fn make_tag(transport: u8, conn: u32, slot: u16) -> u64 {
    (transport as u64) << 56 | ((conn as u64) & 0xff_ffff) << 32 | slot as u64
}
pub(crate) fn split_tag(tag: u64) -> (u8, u32, u16) {
    ((tag >> 56) as u8, ((tag >> 32) & 0xff_ffff) as u32, tag as u16)
}
