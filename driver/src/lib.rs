//! `nvme-driver`: a userspace PCIe NVMe driver (VFIO, hugepage DMA memory, one lock-free I/O
//! queue pair per thread) and the in-process emulated controller it is tested against. The
//! NVMe base-spec types come from the `nvme-spec` crate, re-exported as [`spec`].
//!
//! Start with [`Controller`]: [`Controller::open_vfio`] for a device bound to `vfio-pci`, or
//! [`Controller::new_emulated`] with an [`emulator::EmulatedController`]. Each I/O thread takes
//! its own [`IoQpair`] from [`Controller::alloc_io_qpair`].

// `unsafe` only in the DMA-memory, MMIO and VFIO modules (each allows it); the others forbid it
// (docs/architecture.md, "Unsafe code").
#![deny(unsafe_code)]

#[forbid(unsafe_code)]
mod admin;
#[forbid(unsafe_code)]
pub mod controller;
pub mod dma;
#[forbid(unsafe_code)]
pub mod emulator;
#[forbid(unsafe_code)]
pub mod error;
#[allow(unsafe_code)]
pub mod mmio;
#[forbid(unsafe_code)]
pub mod prp;
#[forbid(unsafe_code)]
pub mod qpair;
#[forbid(unsafe_code)]
mod rings;
#[allow(unsafe_code)]
pub mod vfio;

pub use controller::{Controller, ControllerOptions, Namespace};
pub use dma::{DmaAllocator, DmaBacking, DmaPool, DmaRegion, PoolBuf};
pub use error::{Error, Result};
/// The NVMe base-spec types (the `nvme-spec` crate), re-exported so driver users need no second
/// dependency.
pub use nvme_spec as spec;
pub use qpair::IoQpair;
