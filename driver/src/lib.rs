//! `nvme-driver`: a userspace PCIe NVMe driver (VFIO, hugepage DMA memory, one lock-free I/O
//! queue pair per thread), the in-process emulated controller it is tested against, and the
//! NVMe base-spec types shared with the fabrics target.
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
pub mod spec;
pub mod vfio;

pub use controller::{Controller, ControllerOptions, Namespace};
pub use dma::{DmaAllocator, DmaBacking, DmaPool, DmaRegion, PoolBuf};
pub use error::{Error, Result};
pub use qpair::IoQpair;
