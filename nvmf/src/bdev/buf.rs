//! Pooled data buffers. A poll group owns one `BufPool`; buffers move by value through the
//! transport and the bdev and return to the pool, so steady-state I/O allocates nothing.
//!
//! A buffer is either heap memory from the poll group's pool, or a DMA buffer lent by a bdev
//! channel ([`crate::bdev::BdevChannel::alloc_buf`]: direct mode). The transport receives host
//! data straight into a DMA buffer and sends read data straight out of it, and the NVMe device
//! reads or writes it in place: no copy between the network and the device.

use nvme_driver::PoolBuf;

#[derive(Debug)]
enum Storage {
    Heap(Vec<u8>),
    /// `len` bytes at the start of a DMA pool buffer (returns to its pool when dropped).
    Dma { buf: PoolBuf, len: usize },
}

/// A data buffer with a current length (`len() <= capacity()`).
#[derive(Debug)]
pub struct IoBuf {
    data: Storage,
    /// Every byte is known to be zero (nothing wrote through `as_mut_slice` since the last
    /// [`IoBuf::zero`]; growing zero-fills): zeroing again can be skipped.
    zeroed: bool,
}

impl Default for IoBuf {
    fn default() -> Self {
        IoBuf { data: Storage::Heap(Vec::new()), zeroed: true }
    }
}

impl IoBuf {
    /// A zeroed buffer of `len` bytes (allocates: use a `BufPool` on the I/O path).
    pub fn new(len: usize) -> Self {
        IoBuf { data: Storage::Heap(vec![0; len]), zeroed: true }
    }
    /// The first `len` bytes of a DMA pool buffer (`None` when `len` exceeds it). Contents are
    /// unspecified.
    pub fn from_dma(buf: PoolBuf, len: usize) -> Option<Self> {
        (len <= buf.len()).then_some(IoBuf { data: Storage::Dma { buf, len }, zeroed: false })
    }
    /// The DMA buffer behind this one, when it is one: the device can address its first
    /// `len()` bytes directly.
    pub fn dma(&self) -> Option<&PoolBuf> {
        match &self.data {
            Storage::Dma { buf, .. } => Some(buf),
            Storage::Heap(_) => None,
        }
    }
    /// The DMA buffer itself (for keeping it away from reuse while a device may still write it).
    pub fn into_dma(self) -> Result<PoolBuf, IoBuf> {
        match self.data {
            Storage::Dma { buf, .. } => Ok(buf),
            data => Err(IoBuf { data, zeroed: self.zeroed }),
        }
    }
    /// Zero the contents. Free when nothing wrote the buffer since it was last zeroed, which
    /// makes reads from zero-returning bdevs (Null) cost no memset in steady state.
    pub fn zero(&mut self) {
        if !self.zeroed {
            self.as_mut_slice().fill(0);
            // Bytes past `len` are unreachable until `set_len` grows the buffer, which
            // zero-fills them.
            self.zeroed = true;
        }
    }
    pub fn len(&self) -> usize {
        match &self.data {
            Storage::Heap(v) => v.len(),
            Storage::Dma { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> usize {
        match &self.data {
            Storage::Heap(v) => v.capacity(),
            Storage::Dma { buf, .. } => buf.len(),
        }
    }
    /// Set the length. Grows (zero-filling) or shrinks. A heap buffer allocates only past its
    /// capacity; a DMA buffer grown past its size becomes a heap buffer (a copy: never on the
    /// I/O path, where buffers are sized when they are taken).
    pub fn set_len(&mut self, new_len: usize) {
        match &mut self.data {
            Storage::Heap(v) => v.resize(new_len, 0),
            Storage::Dma { buf, len } if new_len <= buf.len() => {
                if new_len > *len {
                    buf.fill(*len, new_len - *len, 0);
                }
                *len = new_len;
            }
            Storage::Dma { buf, len } => {
                let mut v = Vec::with_capacity(new_len);
                v.extend_from_slice(&buf.as_slice()[..*len]);
                v.resize(new_len, 0);
                self.data = Storage::Heap(v);
            }
        }
    }
    pub fn as_slice(&self) -> &[u8] {
        match &self.data {
            Storage::Heap(v) => v,
            Storage::Dma { buf, len } => &buf.as_slice()[..*len],
        }
    }
    /// The contents, for writing (the buffer no longer counts as zeroed).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.zeroed = false;
        match &mut self.data {
            Storage::Heap(v) => v,
            Storage::Dma { buf, len } => &mut buf.as_mut_slice()[..*len],
        }
    }
}

impl From<Vec<u8>> for IoBuf {
    fn from(data: Vec<u8>) -> Self {
        IoBuf { data: Storage::Heap(data), zeroed: false }
    }
}

/// A per-poll-group free list of heap `IoBuf`s. It grows on demand up to `max_buffers` and
/// keeps what it has, so after warm-up no I/O allocates.
#[derive(Debug)]
pub struct BufPool {
    free: Vec<IoBuf>,
    created: usize,
    max_buffers: usize,
}

impl BufPool {
    pub fn new(max_buffers: usize) -> Self {
        BufPool { free: Vec::with_capacity(max_buffers), created: 0, max_buffers }
    }
    /// A buffer of exactly `len` bytes, or `None` when all `max_buffers` are in use (the caller
    /// queues the request and retries after buffers come back). Contents are unspecified.
    pub fn get(&mut self, len: usize) -> Option<IoBuf> {
        let mut b = match self.free.pop() {
            Some(b) => b,
            None if self.created < self.max_buffers => {
                self.created += 1;
                IoBuf { data: Storage::Heap(Vec::with_capacity(len)), zeroed: false }
            }
            None => return None,
        };
        b.set_len(len);
        Some(b)
    }
    /// Return a buffer. DMA buffers go back to their own pool (by being dropped), heap buffers
    /// to this one.
    pub fn put(&mut self, buf: IoBuf) {
        if matches!(buf.data, Storage::Heap(_)) && self.free.len() < self.max_buffers {
            self.free.push(buf);
        }
    }
    /// At most half of the buffers are handed out: a buffer may be held for something that can
    /// wait (a payload queued until the peer reads it) without starving requests.
    pub fn has_room(&self) -> bool {
        self.in_use() < self.max_buffers / 2
    }
    /// Heap buffers handed out and not yet returned.
    pub fn in_use(&self) -> usize {
        self.created.saturating_sub(self.free.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme_driver::dma::{DmaAllocator, DmaBacking, IdentityMapper};
    use std::sync::Arc;

    #[test]
    fn zero_skips_clean_buffers_and_never_leaks() {
        let mut pool = BufPool::new(1);
        let mut b = pool.get(4096).expect("buffer");
        b.as_mut_slice().fill(0xaa);
        b.zero();
        assert!(b.as_slice().iter().all(|&x| x == 0));
        pool.put(b);
        // Written, shrunk, zeroed, grown again: the regrown bytes are zero too.
        let mut b = pool.get(4096).expect("buffer");
        b.as_mut_slice().fill(0x55);
        b.set_len(512);
        b.zero();
        b.set_len(4096);
        b.zero(); // clean: skipped
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice()[100] = 1;
        b.zero();
        assert_eq!(b.as_slice()[100], 0);
    }

    #[test]
    fn room_means_at_most_half_handed_out() {
        let mut pool = BufPool::new(4);
        let a = pool.get(512).expect("buffer");
        assert!(pool.has_room());
        let b = pool.get(512).expect("buffer");
        assert!(!pool.has_room(), "two of four out");
        pool.put(a);
        assert!(pool.has_room());
        pool.put(b);
    }

    #[test]
    fn dma_buffers_behave_like_heap_ones_and_go_back_to_their_own_pool() {
        let alloc = DmaAllocator::new(Arc::new(IdentityMapper::new()), DmaBacking::Anonymous);
        let dma = alloc.alloc_pool(8192, 1).expect("DMA pool");
        assert!(IoBuf::from_dma(dma.get().expect("buffer"), 8193).is_none(), "longer than the DMA buffer");
        assert_eq!(dma.available(), 1, "refused buffer went back");
        let mut b = IoBuf::from_dma(dma.get().expect("buffer"), 4096).expect("fits");
        assert_eq!((b.len(), b.capacity()), (4096, 8192));
        assert!(b.dma().is_some_and(|d| d.pool_id() == dma.id()));
        b.as_mut_slice().fill(0xaa);
        b.set_len(512);
        b.set_len(1024);
        assert_eq!(&b.as_slice()[..512], &[0xaa; 512][..]);
        assert!(b.as_slice()[512..].iter().all(|&x| x == 0), "growing zero-fills");
        b.zero();
        assert!(b.as_slice().iter().all(|&x| x == 0));
        // Grown past the DMA buffer: the contents move to the heap, the DMA buffer goes back.
        b.as_mut_slice()[7] = 7;
        b.set_len(16384);
        assert!(b.dma().is_none());
        assert_eq!(dma.available(), 1);
        assert_eq!((b.len(), b.as_slice()[7], b.as_slice()[16383]), (16384, 7, 0));
        // Returned to the heap pool: only heap buffers stay there.
        let mut heap = BufPool::new(4);
        let d = IoBuf::from_dma(dma.get().expect("buffer"), 512).expect("fits");
        heap.put(d);
        assert_eq!(dma.available(), 1, "DMA buffer dropped back into its own pool");
        assert!(heap.free.is_empty());
    }
}
