//! The emulated controller's "IOMMU": IOVA = virtual address, but only for memory registered
//! through [`DmaAllocator`](super::DmaAllocator). The emulator reads and writes device memory
//! only through [`IdentityMapper::read`] and [`IdentityMapper::write`], which fail on addresses
//! outside a live mapping, like an IOMMU fault, instead of touching arbitrary memory.

use super::mapper::{DmaMapper, Translation};
use crate::error::Result;
use std::collections::BTreeMap;
use std::sync::RwLock;

/// A DMA access outside any mapped region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("DMA fault at IOVA {iova:#x} ({len} bytes)")]
pub struct DmaFault {
    pub iova: u64,
    pub len: usize,
}

/// Identity IOVA map with bounds-checked device-side access.
#[derive(Default)]
pub struct IdentityMapper {
    /// start -> length of each live mapping.
    maps: RwLock<BTreeMap<usize, usize>>,
}

impl IdentityMapper {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_range<R>(&self, iova: u64, len: usize, f: impl FnOnce(*mut u8) -> R) -> std::result::Result<R, DmaFault> {
        let fault = DmaFault { iova, len };
        let start = usize::try_from(iova).map_err(|_| fault)?;
        let end = start.checked_add(len).ok_or(fault)?;
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        match maps.range(..=start).next_back() {
            // The read lock is held during `f`, so `unmap` (and thus munmap) cannot run meanwhile.
            Some((&base, &mlen)) if end <= base + mlen => Ok(f(start as *mut u8)),
            _ => Err(fault),
        }
    }

    /// Device-side read of `buf.len()` bytes at `iova`.
    pub fn read(&self, iova: u64, buf: &mut [u8]) -> std::result::Result<(), DmaFault> {
        self.with_range(iova, buf.len(), |p| {
            // SAFETY: p..p+len lies inside a live registered mapping (checked by with_range, which
            // holds the lock that unmap needs); buf is a distinct Rust buffer.
            unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) }
        })
    }

    /// Device-side write of `data` at `iova`.
    pub fn write(&self, iova: u64, data: &[u8]) -> std::result::Result<(), DmaFault> {
        self.with_range(iova, data.len(), |p| {
            // SAFETY: as in `read`; DMA memory is never borrowed as a Rust reference by the driver
            // while a command that writes it is in flight.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) }
        })
    }
}

impl DmaMapper for IdentityMapper {
    unsafe fn map(&self, va: usize, len: usize, _page_size: usize) -> Result<Translation> {
        self.maps.write().unwrap_or_else(|p| p.into_inner()).insert(va, len);
        Ok(Translation::Linear { iova: va as u64 })
    }
    fn unmap(&self, va: usize, _len: usize, _t: &Translation) {
        self.maps.write().unwrap_or_else(|p| p.into_inner()).remove(&va);
    }
    fn name(&self) -> &'static str {
        "identity (emulator)"
    }
}
