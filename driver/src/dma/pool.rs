//! Fixed-size DMA buffer pools for the hot path: one mapping carved into equal buffers that
//! return to the pool when dropped, so steady-state I/O never calls mmap.
//!
//! The free list is a lock-free LIFO stack (`free_stack.rs`): a buffer may be handed to another
//! layer (the target hands it to its transport, which receives network data straight into it)
//! and dropped there, taking or returning one never takes a lock, and the buffer freed last
//! (still in cache) is the next one handed out.

use super::free_stack::FreeStack;
use super::region::DmaRegion;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

struct Shared {
    whole: DmaRegion,
    buf_size: usize,
    stride: usize,
    free: FreeStack,
}

/// A pool of equal DMA buffers. Cloning shares the pool.
#[derive(Clone)]
pub struct DmaPool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DmaPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DmaPool({} x {} bytes, {} free)", self.capacity(), self.buf_size(), self.available())
    }
}

/// A buffer taken from a [`DmaPool`]; goes back on drop. Dereferences to its [`DmaRegion`].
pub struct PoolBuf {
    region: DmaRegion,
    index: u32,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PoolBuf(#{} of pool {:#x}, {:?})", self.index, self.pool_id(), self.region)
    }
}

impl DmaPool {
    pub(crate) fn new(whole: DmaRegion, buf_size: usize, stride: usize, count: usize) -> Self {
        let free = FreeStack::full(count as u32);
        DmaPool { shared: Arc::new(Shared { whole, buf_size, stride, free }) }
    }

    /// Take a buffer, or `None` when all are in use.
    pub fn get(&self) -> Option<PoolBuf> {
        let index = self.shared.free.pop()?;
        let off = index as usize * self.shared.stride;
        // SAFETY: the free stack hands each index to one PoolBuf at a time (it returns on drop),
        // and slots are `stride >= buf_size` apart, so live buffers are disjoint; the pool uses
        // `whole` only for its length, address and copies (`read_va`/`write_va`), never slices.
        let region = unsafe { self.shared.whole.carve(off, self.shared.buf_size) };
        Some(PoolBuf { region, index, shared: self.shared.clone() })
    }
    pub fn buf_size(&self) -> usize {
        self.shared.buf_size
    }
    pub fn capacity(&self) -> usize {
        self.shared.whole.len() / self.shared.stride.max(1)
    }
    pub fn available(&self) -> usize {
        self.shared.free.len()
    }
    /// Identifies the pool: equal for clones of it and for its buffers' [`PoolBuf::pool_id`].
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }
    /// Copy bytes out of the pool's memory at virtual address `va` (what a software DMA engine
    /// reading by address does). False, copying nothing, when the range is not in the pool.
    pub fn read_va(&self, va: usize, dst: &mut [u8]) -> bool {
        match self.offset_of(va, dst.len()) {
            Some(off) => {
                self.shared.whole.read(off, dst);
                true
            }
            None => false,
        }
    }
    /// Copy bytes into the pool's memory at virtual address `va` (a software DMA engine
    /// writing by address). False, copying nothing, when the range is not in the pool.
    pub fn write_va(&self, va: usize, src: &[u8]) -> bool {
        match self.offset_of(va, src.len()) {
            Some(off) => {
                self.shared.whole.write(off, src);
                true
            }
            None => false,
        }
    }
    fn offset_of(&self, va: usize, len: usize) -> Option<usize> {
        let (base, size) = self.span();
        let off = va.checked_sub(base)?;
        (off.checked_add(len)? <= size).then_some(off)
    }
    /// Whether this is the last handle on the pool (no clone, no buffer out): whoever keeps
    /// it only to keep the memory alive may let it go.
    pub fn is_last_handle(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }
    /// The pool's whole memory as (virtual address, length): registering it once with another
    /// DMA engine (an RDMA memory region) covers every buffer of the pool.
    pub fn span(&self) -> (usize, usize) {
        (self.shared.whole.as_ptr() as usize, self.shared.whole.len())
    }
}

impl PoolBuf {
    /// The [`DmaPool::id`] of the pool this buffer came from.
    pub fn pool_id(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }
    /// A handle on the pool this buffer came from (keeps its memory alive).
    pub fn pool(&self) -> DmaPool {
        DmaPool { shared: self.shared.clone() }
    }
}

impl Deref for PoolBuf {
    type Target = DmaRegion;
    fn deref(&self) -> &DmaRegion {
        &self.region
    }
}
impl DerefMut for PoolBuf {
    fn deref_mut(&mut self) -> &mut DmaRegion {
        &mut self.region
    }
}
impl Drop for PoolBuf {
    fn drop(&mut self) {
        self.shared.free.push(self.index);
    }
}

#[cfg(test)]
mod tests {
    use crate::dma::{DmaAllocator, DmaBacking, IdentityMapper};
    use std::sync::Arc;

    #[test]
    fn buffers_come_back_on_drop_from_any_thread_and_know_their_pool() {
        let alloc = DmaAllocator::new(Arc::new(IdentityMapper::new()), DmaBacking::Anonymous);
        let pool = alloc.alloc_pool(8192, 4).expect("pool");
        let other = alloc.alloc_pool(4096, 1).expect("pool");
        assert_eq!(pool.capacity(), 4);
        let bufs: Vec<_> = (0..4).map(|_| pool.get().expect("buffer")).collect();
        assert!(pool.get().is_none(), "a fifth buffer from a pool of four");
        assert!(bufs.iter().all(|b| b.pool_id() == pool.id() && b.len() == 8192));
        assert_ne!(other.id(), pool.id());
        let (va, len) = pool.span();
        assert!(len >= 4 * 8192);
        for b in &bufs {
            let p = b.as_ptr() as usize;
            assert!(p >= va && p + b.len() <= va + len, "buffer outside the pool's span");
        }
        let p = bufs[1].as_ptr() as usize;
        assert!(pool.write_va(p + 100, b"dma"));
        let mut back = [0u8; 3];
        bufs[1].read(100, &mut back);
        assert_eq!(&back, b"dma");
        assert!(pool.read_va(p + 100, &mut back) && &back == b"dma");
        assert!(!pool.write_va(va + len - 1, b"xy"), "past the end");
        assert!(!pool.read_va(va.wrapping_sub(1), &mut back), "before the start");
        std::thread::spawn(move || drop(bufs)).join().expect("thread");
        assert_eq!(pool.available(), 4);
    }
}
