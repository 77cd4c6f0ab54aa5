//! nvmf: a passive NVMe over Fabrics target library and NVMe/TCP host client.
//!
//! The library spawns no threads, sleeps nowhere and keeps no global state: everything
//! advances when the caller polls. A `Target` holds subsystems and listeners;
//! `Target::accept` hands each new connection (`Qpair`) to the caller, who adds it to a
//! `PollGroup`; each poll group is polled by one thread (`PollGroup::poll`).

pub mod ana;
pub mod auth;
pub mod bdev;
mod cmd;
pub mod ctrlr;
mod deferred;
mod error;
mod fanout;
pub mod host;
pub mod poll_group;
mod queue;
pub mod referral;
pub mod reservation;
pub mod spec;
pub mod subsystem;
pub mod target;
pub mod transport;

pub use cmd::identify::{IN_CAPSULE_DATA_SIZE, MAX_IO_SIZE};
pub use deferred::{Job, WorkRunner};
pub use error::{Error, Result};
pub use poll_group::PollGroup;
pub use referral::Referral;
pub use subsystem::{HostKeys, Namespace, NamespaceConfig, Subsystem, SubsystemConfig};
pub use target::{Qpair, Target};
#[cfg(feature = "rdma")]
pub use transport::rdma::{RdmaTransport, RdmaTransportOpts};
pub use transport::tcp::{TcpTransport, TcpTransportOpts};
pub use transport::{Transport, TransportAddr, TransportType};
