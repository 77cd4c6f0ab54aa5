//! Fixed-size DMA buffer pools for the hot path: one mapping carved into equal buffers that
//! return to the pool when dropped, so steady-state I/O never calls mmap.

use super::region::DmaRegion;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

struct Shared {
    whole: DmaRegion,
    buf_size: usize,
    stride: usize,
    count: usize,
    free: Mutex<Vec<u32>>,
}

/// A pool of equal DMA buffers. Cloning shares the pool.
#[derive(Clone)]
pub struct DmaPool {
    shared: Arc<Shared>,
}

/// A buffer taken from a [`DmaPool`]; goes back on drop. Dereferences to its [`DmaRegion`].
pub struct PoolBuf {
    region: DmaRegion,
    index: u32,
    shared: Arc<Shared>,
}

impl DmaPool {
    pub(crate) fn new(whole: DmaRegion, buf_size: usize, stride: usize, count: usize) -> Self {
        let free = (0..count as u32).rev().collect();
        DmaPool { shared: Arc::new(Shared { whole, buf_size, stride, count, free: Mutex::new(free) }) }
    }

    /// Take a buffer, or `None` when all are in use.
    pub fn get(&self) -> Option<PoolBuf> {
        let index = self.shared.free.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
        let off = index as usize * self.shared.stride;
        // Disjoint: each index is handed to one PoolBuf at a time.
        let region = self.shared.whole.carve(off, self.shared.buf_size);
        Some(PoolBuf { region, index, shared: self.shared.clone() })
    }
    pub fn buf_size(&self) -> usize {
        self.shared.buf_size
    }
    pub fn capacity(&self) -> usize {
        self.shared.count
    }
    pub fn available(&self) -> usize {
        self.shared.free.lock().unwrap_or_else(|p| p.into_inner()).len()
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
        self.shared.free.lock().unwrap_or_else(|p| p.into_inner()).push(self.index);
    }
}
