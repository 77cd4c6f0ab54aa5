//! Virtual-to-physical translation through `/proc/self/pagemap`, for VFIO's no-IOMMU mode where
//! the device sees physical addresses. Reading PFNs needs CAP_SYS_ADMIN; without it the kernel
//! reports PFN 0, which is turned into an error rather than a bogus DMA address.

use super::mapper::{DmaMapper, Translation};
use crate::error::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

const PFN_MASK: u64 = (1 << 55) - 1;
const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;

/// Decode one 64-bit pagemap entry for virtual address `va` into a physical address.
pub fn parse_entry(entry: u64, va: usize, base_page: usize) -> Result<u64> {
    if entry & PRESENT == 0 || entry & SWAPPED != 0 {
        return Err(Error::Pagemap(format!("page at {va:#x} is not resident")));
    }
    let pfn = entry & PFN_MASK;
    if pfn == 0 {
        return Err(Error::Pagemap(format!(
            "pagemap shows PFN 0 for {va:#x}: physical addresses need root (CAP_SYS_ADMIN)"
        )));
    }
    Ok(pfn * base_page as u64 + (va % base_page) as u64)
}

/// Reads `/proc/self/pagemap`.
pub struct Pagemap {
    file: File,
    base_page: usize,
}

impl Pagemap {
    pub fn open() -> Result<Self> {
        let file = File::open("/proc/self/pagemap").map_err(|e| Error::os("open /proc/self/pagemap", e))?;
        Ok(Pagemap { file, base_page: base_page_size() })
    }

    /// Physical address of virtual address `va` (the page must be resident, e.g. locked).
    pub fn phys(&self, va: usize) -> Result<u64> {
        let mut buf = [0u8; 8];
        let off = (va / self.base_page) as u64 * 8;
        self.file.read_exact_at(&mut buf, off).map_err(|e| Error::os("read /proc/self/pagemap", e))?;
        parse_entry(u64::from_le_bytes(buf), va, self.base_page)
    }
}

/// No-IOMMU DMA mapping: the device sees physical addresses, looked up once per page when the
/// memory is allocated. Only sound with pinned memory that the kernel does not migrate, i.e.
/// locked hugepages ([`DmaBacking::Hugepages`](super::DmaBacking::Hugepages)).
pub struct PagemapMapper {
    pagemap: Pagemap,
}

impl PagemapMapper {
    pub fn new() -> Result<Self> {
        Ok(PagemapMapper { pagemap: Pagemap::open()? })
    }
}

impl DmaMapper for PagemapMapper {
    unsafe fn map(&self, va: usize, len: usize, page_size: usize) -> Result<Translation> {
        let iovas =
            (0..len.div_ceil(page_size)).map(|i| self.pagemap.phys(va + i * page_size)).collect::<Result<_>>()?;
        Ok(Translation::Pages { page_shift: page_size.trailing_zeros(), iovas })
    }
    fn unmap(&self, _va: usize, _len: usize, _t: &Translation) {}
    fn name(&self) -> &'static str {
        "no-IOMMU (physical addresses)"
    }
}

/// The kernel's base page size.
pub fn base_page_size() -> usize {
    page_size_sysconf().unwrap_or(4096)
}

fn page_size_sysconf() -> Option<usize> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (v > 0).then_some(v as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_entry_gives_pfn_times_page_plus_offset() {
        let entry = PRESENT | 0x1234;
        assert_eq!(parse_entry(entry, 0x7f00_0000_0abc, 4096).unwrap(), 0x1234 * 4096 + 0xabc);
    }

    #[test]
    fn soft_dirty_and_exclusive_bits_are_not_part_of_the_pfn() {
        let entry = PRESENT | (1 << 56) | (1 << 55) | 0x42;
        assert_eq!(parse_entry(entry, 0x1000, 4096).unwrap(), 0x42 * 4096);
    }

    #[test]
    fn absent_swapped_or_hidden_pfn_is_an_error() {
        assert!(parse_entry(0x1234, 0, 4096).is_err());
        assert!(parse_entry(PRESENT | SWAPPED | 0x1234, 0, 4096).is_err());
        let e = parse_entry(PRESENT, 0, 4096).unwrap_err();
        assert!(e.to_string().contains("CAP_SYS_ADMIN"));
    }
}
