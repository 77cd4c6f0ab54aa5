//! nvmf: a passive NVMe over Fabrics target library and NVMe/TCP host client.
//!
//! The library spawns no threads, sleeps nowhere and keeps no global state: everything
//! advances when the caller polls. A `Target` holds subsystems and listeners;
//! `Target::accept` hands each new connection (`Qpair`) to the caller, who adds it to a
//! `PollGroup`; each poll group is polled by one thread (`PollGroup::poll`).

// `unsafe` only in the RDMA verbs module (`transport/rdma/verbs.rs`, which allows it); the modules
// below that need none forbid it outright (docs/architecture.md, "Unsafe code").
#![deny(unsafe_code)]

#[forbid(unsafe_code)]
pub mod ana;
#[forbid(unsafe_code)]
pub mod auth;
#[forbid(unsafe_code)]
pub mod bdev;
#[forbid(unsafe_code)]
mod channel;
#[forbid(unsafe_code)]
mod cmd;
#[forbid(unsafe_code)]
pub mod ctrlr;
#[forbid(unsafe_code)]
mod deferred;
#[forbid(unsafe_code)]
mod error;
#[forbid(unsafe_code)]
mod fanout;
#[forbid(unsafe_code)]
mod fused;
#[forbid(unsafe_code)]
pub mod group_ctx;
#[forbid(unsafe_code)]
pub mod host;
#[forbid(unsafe_code)]
pub mod poll_group;
#[forbid(unsafe_code)]
pub mod queue;
#[forbid(unsafe_code)]
pub mod referral;
#[forbid(unsafe_code)]
pub mod reservation;
#[forbid(unsafe_code)]
pub mod spec;
#[forbid(unsafe_code)]
pub mod subsystem;
#[forbid(unsafe_code)]
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
