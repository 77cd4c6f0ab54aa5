//! A mapped, pinned piece of DMA memory and the safe accessors to it.

use super::mapper::{DmaMapper, Translation};
use std::ptr::NonNull;
use std::sync::Arc;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// One mmap'ed, device-mapped chunk. Dropping it unmaps it from the device, then from the process.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    translation: Translation,
    mapper: Arc<dyn DmaMapper>,
}

// SAFETY: the mapping is plain memory owned by this struct; every access goes through raw-pointer
// copies or volatile operations in `DmaRegion`, never through references shared across threads.
unsafe impl Send for Mapping {}
// SAFETY: as above; concurrent accesses are to disjoint sub-regions or by copy.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Take ownership of a mapping, to be unmapped from `mapper` and then munmap'ed on drop.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` must come from `mmap`, be owned by nobody else (no other `Mapping`, no
    /// Rust reference) and have been mapped with `mapper.map`, which returned `translation`.
    pub(crate) unsafe fn new(
        ptr: NonNull<u8>,
        len: usize,
        translation: Translation,
        mapper: Arc<dyn DmaMapper>,
    ) -> Self {
        Mapping { ptr, len, translation, mapper }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        self.mapper.unmap(self.ptr.as_ptr() as usize, self.len, &self.translation);
        // SAFETY: ptr/len came from a successful mmap owned by this struct; the device mapping was
        // just removed and no DmaRegion (which holds an Arc to us) is alive any more.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A byte range of DMA memory with its device address. Not `Clone`: exactly one owner may hand out
/// `&mut [u8]` to it.
pub struct DmaRegion {
    map: Arc<Mapping>,
    off: usize,
    len: usize,
}

impl std::fmt::Debug for DmaRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DmaRegion(va={:p}, iova={:#x}, len={})", self.as_ptr(), self.iova(), self.len)
    }
}

impl DmaRegion {
    /// The first `len` bytes of a mapping nobody else has a region of (it is moved in).
    pub(crate) fn new(map: Mapping, len: usize) -> Self {
        Self::piece(Arc::new(map), 0, len)
    }

    /// `off..off + len` of `map`: private, so that only `new`, `split_front` and `carve` (whose
    /// callers promise disjointness) make regions.
    fn piece(map: Arc<Mapping>, off: usize, len: usize) -> Self {
        assert!(off.checked_add(len).is_some_and(|end| end <= map.len));
        DmaRegion { map, off, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Device address of the first byte.
    pub fn iova(&self) -> u64 {
        self.iova_at(0)
    }
    /// Device address of byte `off` (which must be `<= len`).
    pub fn iova_at(&self, off: usize) -> u64 {
        assert!(off <= self.len, "offset {off} outside DMA region of {} bytes", self.len);
        self.map.translation.iova(self.off + off)
    }
    /// Process virtual address of the first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: off <= map.len, checked at construction, so the result stays in the mapping.
        unsafe { self.map.ptr.as_ptr().add(self.off) }
    }

    fn check(&self, off: usize, len: usize) {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "access {off}+{len} outside DMA region of {} bytes",
            self.len
        );
    }

    /// Copy bytes out of the region.
    pub fn read(&self, off: usize, buf: &mut [u8]) {
        self.check(off, buf.len());
        // SAFETY: bounds checked above; source is mapped memory, destination a distinct Rust buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.as_ptr().add(off), buf.as_mut_ptr(), buf.len()) }
    }
    /// Copy bytes into the region.
    pub fn write(&self, off: usize, data: &[u8]) {
        self.check(off, data.len());
        // SAFETY: bounds checked above; destination is mapped memory not borrowed as a Rust reference
        // by the driver (only the owner's `as_mut_slice`, which needs `&mut self`).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(off), data.len()) }
    }
    /// Set `len` bytes at `off` to `byte`.
    pub fn fill(&self, off: usize, len: usize, byte: u8) {
        self.check(off, len);
        // SAFETY: bounds checked above.
        unsafe { std::ptr::write_bytes(self.as_ptr().add(off), byte, len) }
    }
    /// Read a plain-data value (e.g. a queue entry) by copy.
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, off: usize) -> T {
        let mut v = T::new_zeroed();
        self.read(off, v.as_mut_bytes());
        v
    }
    /// Write a plain-data value by copy.
    pub fn write_obj<T: IntoBytes + Immutable>(&self, off: usize, v: &T) {
        self.write(off, v.as_bytes());
    }
    /// Volatile 16-bit load (the phase/status word of a completion the device may be writing).
    pub fn read_volatile_u16(&self, off: usize) -> u16 {
        self.check(off, 2);
        assert!((self.as_ptr() as usize + off).is_multiple_of(2), "unaligned volatile access");
        // SAFETY: in bounds and 2-byte aligned (checked above).
        u16::from_le(unsafe { std::ptr::read_volatile(self.as_ptr().add(off).cast::<u16>()) })
    }

    /// The region's bytes. The caller must not read them while a device command writing this
    /// region is in flight (the contents would be undefined, like any DMA buffer).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr/len lie in a live mapping kept alive by `self.map`; the driver itself never
        // writes to a region it does not own; device writes happen only for commands the owner
        // submitted with this region.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }
    /// Mutable view of the region's bytes, e.g. to fill a write buffer or receive from a socket.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; `&mut self` guarantees no other Rust reference to these bytes.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }
}

impl DmaRegion {
    /// Split off the first `len` bytes as a region of their own; `self` keeps the rest. The two
    /// cannot overlap, so each may have its own owner (bump allocation, per-slot pages).
    pub(crate) fn split_front(&mut self, len: usize) -> DmaRegion {
        self.check(0, len);
        let front = DmaRegion::piece(self.map.clone(), self.off, len);
        self.off += len;
        self.len -= len;
        front
    }

    /// A second handle on `off..off+len` of this region, for a pool that hands out fixed slots of
    /// one region it keeps.
    ///
    /// # Safety
    ///
    /// While the returned region is alive, no other carved region may overlap it, and `self`
    /// must not be borrowed by [`as_slice`](Self::as_slice) or [`as_mut_slice`](Self::as_mut_slice)
    /// over those bytes: the owner of the piece may hold `&mut [u8]` to them. (Copies through
    /// `read`/`write` on `self` are what a device's DMA does, see `as_slice`.)
    pub(crate) unsafe fn carve(&self, off: usize, len: usize) -> DmaRegion {
        self.check(off, len);
        DmaRegion::piece(self.map.clone(), self.off + off, len)
    }
}
