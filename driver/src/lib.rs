//! `nvme-driver`: a userspace PCIe NVMe driver (VFIO, hugepage DMA memory, one lock-free I/O
//! queue pair per thread), the in-process emulated controller it is tested against, and the
//! NVMe base-spec types shared with the fabrics target.
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
#[forbid(unsafe_code)]
pub mod spec;
#[allow(unsafe_code)]
pub mod vfio;

pub use controller::{Controller, ControllerOptions, Namespace};
pub use dma::{DmaAllocator, DmaBacking, DmaPool, DmaRegion, PoolBuf};
pub use error::{Error, Result};
pub use qpair::IoQpair;
