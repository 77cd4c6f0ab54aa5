//! Pooled data buffers. A poll group owns one `BufPool`; buffers move by value through the
//! transport and the bdev and return to the pool, so steady-state I/O allocates nothing.
//!
//! A buffer is either heap memory from the poll group's pool, or a DMA buffer lent by a bdev
//! channel ([`crate::bdev::BdevChannel::alloc_buf`]: direct mode). The transport receives host
//! data straight into a DMA buffer and sends read data straight out of it, and the NVMe device
//! reads or writes it in place: no copy between the network and the device.

// The unit tests build DMA buffers from the driver (a dev-dependency) with or without `direct`.
#[cfg(any(feature = "direct", test))]
use nvme_driver::PoolBuf;

/// Without direct mode (feature `direct`) no bdev lends DMA memory: this stands in for the
/// driver's pool buffer and has no values, so every buffer is a heap buffer.
#[cfg(not(any(feature = "direct", test)))]
#[derive(Debug)]
pub enum PoolBuf {}

#[cfg(not(any(feature = "direct", test)))]
impl PoolBuf {
    fn len(&self) -> usize {
        match *self {}
    }
    fn fill(&mut self, _off: usize, _len: usize, _byte: u8) {
        match *self {}
    }
    fn as_slice(&self) -> &[u8] {
        match *self {}
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        match *self {}
    }
}

#[derive(Debug)]
enum Storage {
    Heap(Vec<u8>),
    /// `len` bytes at the start of a DMA pool buffer (returns to its pool when dropped).
    Dma {
        buf: PoolBuf,
        len: usize,
    },
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
/// keeps what it has, so after warm-up no I/O allocates; idle memory above a watermark is freed
/// again by [`BufPool::trim`] (a burst must not pin its peak for the life of the process).
#[derive(Debug)]
pub struct BufPool {
    free: Vec<IoBuf>,
    /// Heap buffers alive: free plus handed out.
    created: usize,
    max_buffers: usize,
    /// Capacity of the buffers in `free`.
    free_bytes: usize,
    /// Fewest buffers `free` held since the last trim: the ones below that mark (the bottom of
    /// the stack) were not used all that time.
    low_free: usize,
}

impl BufPool {
    pub fn new(max_buffers: usize) -> Self {
        BufPool { free: Vec::with_capacity(max_buffers), created: 0, max_buffers, free_bytes: 0, low_free: 0 }
    }
    /// Change the number of heap buffers lent at once (buffers already out stay out).
    pub fn set_max_buffers(&mut self, max_buffers: usize) {
        self.max_buffers = max_buffers.max(1);
    }
    pub fn max_buffers(&self) -> usize {
        self.max_buffers
    }
    /// A buffer of exactly `len` bytes, or `None` when all `max_buffers` are in use (the caller
    /// queues the request and retries after buffers come back). Contents are unspecified.
    pub fn get(&mut self, len: usize) -> Option<IoBuf> {
        if self.free.is_empty() && self.created >= self.max_buffers {
            return None;
        }
        Some(self.get_any(len))
    }
    /// A buffer even when `max_buffers` are out: for small transfers that are bounded by other
    /// means (in-capsule data: queue depth times the in-capsule size per connection), which must
    /// never wait behind large ones, or a stream could stop in front of the data that frees them.
    pub fn get_unbounded(&mut self, len: usize) -> IoBuf {
        self.get_any(len)
    }
    fn get_any(&mut self, len: usize) -> IoBuf {
        let mut b = match self.free.pop() {
            Some(b) => {
                self.free_bytes -= b.capacity();
                self.low_free = self.low_free.min(self.free.len());
                b
            }
            None => {
                self.created += 1;
                IoBuf { data: Storage::Heap(Vec::with_capacity(len)), zeroed: false }
            }
        };
        b.set_len(len);
        b
    }
    /// Return a buffer. DMA buffers go back to their own pool (by being dropped), heap buffers
    /// to this one.
    pub fn put(&mut self, buf: IoBuf) {
        if !matches!(buf.data, Storage::Heap(_)) {
            return;
        }
        if self.free.len() < self.max_buffers {
            self.free_bytes += buf.capacity();
            self.free.push(buf);
        } else {
            self.created = self.created.saturating_sub(1);
        }
    }
    /// Free the buffers that stayed unused since the previous call while more than `keep_bytes`
    /// sit idle in the pool. Called periodically (a poll group's timer), never per I/O; the
    /// buffers dropped are the least recently used. Returns the bytes freed.
    pub fn trim(&mut self, keep_bytes: usize) -> usize {
        let mut n = 0;
        let mut freed = 0;
        while n < self.low_free && self.free_bytes - freed > keep_bytes {
            freed += self.free[n].capacity();
            n += 1;
        }
        if n > 0 {
            self.free.drain(..n);
            self.free_bytes -= freed;
            self.created -= n;
        }
        self.low_free = self.free.len();
        freed
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
    /// Bytes of idle buffers the pool keeps.
    pub fn free_bytes(&self) -> usize {
        self.free_bytes
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

    #[test]
    fn trim_frees_only_idle_buffers_above_the_watermark() {
        let mut pool = BufPool::new(8);
        let bufs: Vec<IoBuf> = (0..6).map(|_| pool.get(1 << 20).expect("buffer")).collect();
        assert!(pool.get(1).is_some() && pool.get(1).is_some(), "eight in all");
        for b in bufs {
            pool.put(b);
        }
        assert_eq!(pool.free_bytes(), 6 << 20);
        assert_eq!(pool.trim(1 << 20), 0, "no full idle period yet");
        // One buffer is used during the period: five stay idle throughout.
        let b = pool.get(4096).expect("buffer");
        pool.put(b);
        let freed = pool.trim(2 << 20);
        assert_eq!(freed, 4 << 20, "down to the watermark, idle buffers only");
        assert_eq!((pool.free_bytes(), pool.in_use()), (2 << 20, 2));
        assert_eq!(pool.trim(0), 2 << 20, "the rest once idle for a period");
        assert!(pool.get(1).is_some(), "freed buffers can be created again");
    }

    #[test]
    fn unbounded_buffers_go_past_the_limit_and_are_dropped_when_the_pool_is_full() {
        let mut pool = BufPool::new(1);
        let a = pool.get(512).expect("buffer");
        assert!(pool.get(512).is_none());
        let b = pool.get_unbounded(512);
        assert_eq!(pool.in_use(), 2);
        pool.put(a);
        pool.put(b);
        assert_eq!(pool.in_use(), 0, "the extra buffer is dropped, not kept");
    }
}
