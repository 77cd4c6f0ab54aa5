//! Register access behind a small trait, so the controller logic runs unchanged against a real
//! BAR0 mapping or the in-process emulator. Doorbells are written through the same trait.

use std::ptr::NonNull;

/// A controller's register space (BAR0). Offsets are byte offsets; accesses are naturally aligned.
pub trait RegisterSpace: Send + Sync {
    fn read32(&self, off: usize) -> u32;
    fn write32(&self, off: usize, v: u32);
    /// 64-bit registers (CAP, ASQ, ACQ); the default splits into two 32-bit accesses, low first.
    fn read64(&self, off: usize) -> u64 {
        self.read32(off) as u64 | (self.read32(off + 4) as u64) << 32
    }
    fn write64(&self, off: usize, v: u64) {
        self.write32(off, v as u32);
        self.write32(off + 4, (v >> 32) as u32);
    }
}

/// A memory-mapped BAR (from VFIO). Out-of-range or misaligned accesses read as all ones and
/// are dropped on write, like a PCIe master abort, and are logged.
pub struct MappedBar {
    ptr: NonNull<u8>,
    len: usize,
    unmap_on_drop: bool,
}

// SAFETY: the mapping is device memory accessed only by volatile loads/stores of whole registers;
// the device serialises concurrent register accesses itself.
unsafe impl Send for MappedBar {}
// SAFETY: as above.
unsafe impl Sync for MappedBar {}

impl MappedBar {
    /// Wrap an mmap'ed BAR.
    ///
    /// # Safety
    /// `ptr..ptr+len` must be a live mapping of device registers (or memory) that stays valid for
    /// the life of the returned value; if `unmap_on_drop`, it must come from `mmap` and is
    /// unmapped on drop.
    pub unsafe fn new(ptr: NonNull<u8>, len: usize, unmap_on_drop: bool) -> Self {
        MappedBar { ptr, len, unmap_on_drop }
    }

    fn in_range(&self, off: usize, size: usize) -> bool {
        let ok = off.is_multiple_of(size) && off.checked_add(size).is_some_and(|e| e <= self.len);
        if !ok {
            log::error!("BAR access of {size} bytes at {off:#x} outside {} byte BAR", self.len);
        }
        ok
    }
}

impl RegisterSpace for MappedBar {
    fn read32(&self, off: usize) -> u32 {
        if !self.in_range(off, 4) {
            return u32::MAX;
        }
        // SAFETY: in bounds and 4-byte aligned (checked above) in a live device mapping.
        u32::from_le(unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(off).cast::<u32>()) })
    }
    fn write32(&self, off: usize, v: u32) {
        if self.in_range(off, 4) {
            // SAFETY: in bounds and 4-byte aligned (checked above) in a live device mapping.
            unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(off).cast::<u32>(), v.to_le()) }
        }
    }
    fn read64(&self, off: usize) -> u64 {
        if !self.in_range(off, 8) {
            return u64::MAX;
        }
        // SAFETY: in bounds and 8-byte aligned (checked above) in a live device mapping.
        u64::from_le(unsafe { std::ptr::read_volatile(self.ptr.as_ptr().add(off).cast::<u64>()) })
    }
    fn write64(&self, off: usize, v: u64) {
        if self.in_range(off, 8) {
            // SAFETY: in bounds and 8-byte aligned (checked above) in a live device mapping.
            unsafe { std::ptr::write_volatile(self.ptr.as_ptr().add(off).cast::<u64>(), v.to_le()) }
        }
    }
}

impl Drop for MappedBar {
    fn drop(&mut self) {
        if self.unmap_on_drop {
            // SAFETY: per `new`'s contract the range came from mmap and nothing else uses it now.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_bar_reads_writes_and_rejects_out_of_range() {
        let mut backing = vec![0u64; 512];
        let ptr = NonNull::new(backing.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `backing` outlives `bar` and is not otherwise touched while `bar` lives.
        let bar = unsafe { MappedBar::new(ptr, 4096, false) };
        bar.write32(0x14, 0x0046_0001);
        assert_eq!(bar.read32(0x14), 0x0046_0001);
        bar.write64(0x28, 0x1234_5678_9abc_d000);
        assert_eq!(bar.read64(0x28), 0x1234_5678_9abc_d000);
        assert_eq!(bar.read32(0x2c), 0x1234_5678);
        assert_eq!(bar.read32(4096), u32::MAX);
        assert_eq!(bar.read32(0x15), u32::MAX);
        bar.write32(4094, 1);
        drop(bar);
        assert_eq!(backing[0x28 / 8], 0x1234_5678_9abc_d000);
    }
}
