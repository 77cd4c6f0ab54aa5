//! DMA memory: pinned (hugepage or, for the emulator, anonymous) mappings that a device may read
//! and write, their virtual-to-IOVA translation, and fixed-size buffer pools for the hot path.
//!
//! Memory shared with a device is never handed out as a long-lived Rust reference by the driver
//! itself: queues are accessed by copies and volatile loads through [`DmaRegion`]. `unsafe` for
//! DMA memory lives only in this module.

#[allow(unsafe_code)]
mod alloc;
#[forbid(unsafe_code)]
mod free_stack;
#[allow(unsafe_code)]
mod identity;
#[allow(unsafe_code)]
mod mapper;
#[allow(unsafe_code)]
pub mod pagemap;
#[allow(unsafe_code)]
mod pool;
#[allow(unsafe_code)]
mod region;

pub use alloc::{hugepages_free, DmaAllocator, DmaBacking, HUGEPAGE_SIZE};
pub use identity::{DmaFault, IdentityMapper};
pub use mapper::{DmaMapper, Translation};
pub use pagemap::PagemapMapper;
pub use pool::{DmaPool, PoolBuf};
pub use region::DmaRegion;

/// The page size the driver uses for PRPs and queue alignment (CC.MPS = 0, 4 KiB).
pub const PAGE_SIZE: usize = 4096;
