//! Who makes DMA memory visible to a device: a VFIO IOMMU container, the no-IOMMU physical
//! address lookup, or the emulator's identity map.

use crate::error::Result;

/// How a mapping's byte offsets translate to device (IO virtual or physical) addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Translation {
    /// The mapping is contiguous in IOVA space starting at `iova`.
    Linear { iova: u64 },
    /// One IOVA per page of `1 << page_shift` bytes (no-IOMMU: physical addresses).
    Pages { page_shift: u32, iovas: Vec<u64> },
}

impl Translation {
    /// Device address of byte `off` of the mapping. `off` must be inside the mapping.
    pub fn iova(&self, off: usize) -> u64 {
        match self {
            Translation::Linear { iova } => iova + off as u64,
            Translation::Pages { page_shift, iovas } => {
                let page = off >> page_shift;
                let base = iovas.get(page).copied().unwrap_or(0);
                base + (off & ((1usize << page_shift) - 1)) as u64
            }
        }
    }
}

/// Makes memory reachable by a device.
pub trait DmaMapper: Send + Sync + 'static {
    /// Map `len` bytes at virtual address `va` (backed by pages of `page_size` bytes) for DMA and
    /// say how offsets translate to device addresses.
    ///
    /// # Safety
    /// `va..va + len` must be a live, pinned mapping that stays mapped until [`DmaMapper::unmap`]
    /// is called for it; the device may read and write it at any time in between.
    unsafe fn map(&self, va: usize, len: usize, page_size: usize) -> Result<Translation>;

    /// Undo [`DmaMapper::map`]; called before the memory is unmapped from the process.
    fn unmap(&self, va: usize, len: usize, translation: &Translation);

    /// A short name for logs.
    fn name(&self) -> &'static str;
}
