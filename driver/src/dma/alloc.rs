//! The DMA allocator: mmaps pinned memory (2 MiB hugepages, or anonymous pages for the emulator),
//! registers it with a [`DmaMapper`] and carves small allocations out of 2 MiB chunks.
//!
//! Small allocations are bump-allocated and their memory comes back only when every region of
//! a chunk is dropped; that fits the control path (queues, identify buffers) and pools, which
//! are allocated once and recycled by [`super::DmaPool`].

use super::mapper::DmaMapper;
use super::pool::DmaPool;
use super::region::{DmaRegion, Mapping};
use crate::error::{Error, Result};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

/// Size of a hugepage, and of the allocator's chunks.
pub const HUGEPAGE_SIZE: usize = 2 << 20;

/// What backs DMA memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaBacking {
    /// 2 MiB hugepages, pinned (required with real devices).
    Hugepages,
    /// Ordinary anonymous pages (locked when possible): for the emulated controller only.
    Anonymous,
    /// Hugepages when some are reserved, anonymous pages otherwise (tests, benchmarks).
    PreferHugepages,
}

/// The current 2 MiB chunk of small allocations: `rest` is its unallocated tail, which starts
/// `used` bytes into the chunk. Allocations are split off the front, so they cannot overlap.
struct Arena {
    rest: DmaRegion,
    used: usize,
}

/// Allocates device-mapped memory. Shared by a controller and its queue pairs.
pub struct DmaAllocator {
    mapper: Arc<dyn DmaMapper>,
    backing: DmaBacking,
    arena: Mutex<Option<Arena>>,
}

impl DmaAllocator {
    pub fn new(mapper: Arc<dyn DmaMapper>, backing: DmaBacking) -> Self {
        DmaAllocator { mapper, backing, arena: Mutex::new(None) }
    }

    pub fn mapper(&self) -> &Arc<dyn DmaMapper> {
        &self.mapper
    }
    pub fn backing(&self) -> DmaBacking {
        self.backing
    }

    /// Allocate `len` zeroed bytes aligned to `align` (a power of two up to 2 MiB).
    pub fn alloc(&self, len: usize, align: usize) -> Result<DmaRegion> {
        if len == 0 || !align.is_power_of_two() || align > HUGEPAGE_SIZE {
            return Err(Error::InvalidArgument(format!("DMA alloc of {len} bytes aligned to {align}")));
        }
        if len > HUGEPAGE_SIZE / 2 {
            return Ok(DmaRegion::new(self.map_new(len.next_multiple_of(HUGEPAGE_SIZE))?, len));
        }
        let mut arena = self.arena.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = arena.as_mut() {
            let pad = a.used.next_multiple_of(align) - a.used;
            if pad + len <= a.rest.len() {
                drop(a.rest.split_front(pad));
                a.used += pad + len;
                return Ok(a.rest.split_front(len));
            }
        }
        let mut rest = DmaRegion::new(self.map_new(HUGEPAGE_SIZE)?, HUGEPAGE_SIZE);
        let out = rest.split_front(len);
        *arena = Some(Arena { rest, used: len });
        Ok(out)
    }

    /// A pool of `count` buffers of `buf_size` bytes, each aligned to 4 KiB.
    pub fn alloc_pool(&self, buf_size: usize, count: usize) -> Result<DmaPool> {
        let stride = buf_size.next_multiple_of(super::PAGE_SIZE);
        let total = stride.checked_mul(count).ok_or_else(|| Error::InvalidArgument("pool too large".into()))?;
        let map = self.map_new(total.next_multiple_of(HUGEPAGE_SIZE))?;
        Ok(DmaPool::new(DmaRegion::new(map, total), buf_size, stride, count))
    }

    fn map_new(&self, len: usize) -> Result<Mapping> {
        let (ptr, page_size) = match self.backing {
            DmaBacking::Hugepages => (mmap_hugepages(len)?, HUGEPAGE_SIZE),
            DmaBacking::Anonymous => (mmap_anonymous(len)?, super::pagemap::base_page_size()),
            DmaBacking::PreferHugepages => match mmap_hugepages(len) {
                Ok(p) => (p, HUGEPAGE_SIZE),
                Err(e) => {
                    log::debug!("falling back to anonymous DMA memory: {e}");
                    (mmap_anonymous(len)?, super::pagemap::base_page_size())
                }
            },
        };
        // SAFETY: ptr..ptr+len is a fresh mapping we own; the returned `Mapping` keeps it mapped
        // until its Drop calls `unmap` on the same mapper before munmap.
        let translation = match unsafe { self.mapper.map(ptr.as_ptr() as usize, len, page_size) } {
            Ok(t) => t,
            Err(e) => {
                // SAFETY: unmapping the fresh mapping we just created; nothing references it.
                unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
                return Err(e);
            }
        };
        // SAFETY: the fresh mmap above, owned by nothing else, just mapped by `self.mapper`.
        Ok(unsafe { Mapping::new(ptr, len, translation, self.mapper.clone()) })
    }
}

/// Free 2 MiB hugepages reported by /proc/meminfo.
pub fn hugepages_free() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo.lines().find_map(|l| l.strip_prefix("HugePages_Free:")).and_then(|v| v.trim().parse().ok())
}

fn mmap_hugepages(len: usize) -> Result<NonNull<u8>> {
    let flags = libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_POPULATE | libc::MAP_LOCKED;
    // SAFETY: anonymous mapping with a null hint: no existing memory is affected.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        let err = std::io::Error::last_os_error();
        let free = hugepages_free().unwrap_or(0);
        if free * (HUGEPAGE_SIZE as u64) < len as u64 || err.raw_os_error() == Some(libc::ENOMEM) {
            return Err(Error::NoHugepages { requested: len, free });
        }
        return Err(Error::os("mmap(MAP_HUGETLB)", err));
    }
    dontfork(p, len);
    NonNull::new(p.cast()).ok_or_else(|| Error::InvalidArgument("mmap returned null".into()))
}

fn mmap_anonymous(len: usize) -> Result<NonNull<u8>> {
    let flags = libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
    // SAFETY: anonymous mapping with a null hint: no existing memory is affected.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(Error::os("mmap(anonymous DMA memory)", std::io::Error::last_os_error()));
    }
    // SAFETY: p..p+len is the mapping just created.
    if unsafe { libc::mlock(p, len) } != 0 {
        log::debug!("mlock of {len} bytes failed: {}", std::io::Error::last_os_error());
    }
    dontfork(p, len);
    NonNull::new(p.cast()).ok_or_else(|| Error::InvalidArgument("mmap returned null".into()))
}

/// A forked child must not get copy-on-write copies of pages the device writes to.
fn dontfork(p: *mut libc::c_void, len: usize) {
    // SAFETY: p..p+len is a mapping we own; madvise does not touch its contents.
    if unsafe { libc::madvise(p, len, libc::MADV_DONTFORK) } != 0 {
        log::debug!("madvise(MADV_DONTFORK) failed: {}", std::io::Error::last_os_error());
    }
}
