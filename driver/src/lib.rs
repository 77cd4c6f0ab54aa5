//! `nvme-driver`: a userspace PCIe NVMe driver (VFIO, hugepage DMA memory, one lock-free I/O
//! queue pair per thread) and the in-process emulated controller it is tested against. The
//! NVMe base-spec types come from the `nvme-spec` crate, re-exported as [`spec`].
//!
//! Start with [`Controller`]: [`Controller::open_vfio`] for a device bound to `vfio-pci`, or
//! [`Controller::new_emulated`] with an [`emulator::EmulatedController`]. Each I/O thread takes
//! its own [`IoQpair`] from [`Controller::alloc_io_qpair`].

// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
#![allow(clippy::manual_is_multiple_of)]

mod admin;
pub mod controller;
pub mod dma;
pub mod emulator;
pub mod error;
pub mod mmio;
pub mod prp;
pub mod qpair;
mod rings;
pub mod vfio;

pub use controller::{Controller, ControllerOptions, Namespace};
pub use dma::{DmaAllocator, DmaBacking, DmaPool, DmaRegion, PoolBuf};
pub use error::{Error, Result};
/// The NVMe base-spec types (the `nvme-spec` crate), re-exported so driver users need no second
/// dependency.
pub use nvme_spec as spec;
pub use qpair::IoQpair;
