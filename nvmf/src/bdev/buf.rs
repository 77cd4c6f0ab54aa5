//! Pooled data buffers. A poll group owns one `BufPool`; buffers move by value through the
//! transport and the bdev and return to the pool, so steady-state I/O allocates nothing.

/// A data buffer with a current length (`len() <= capacity()`).
#[derive(Debug, Default)]
pub struct IoBuf {
    data: Vec<u8>,
    /// Every byte is known to be zero (nothing wrote through `as_mut_slice` since the last
    /// [`IoBuf::zero`]; growing zero-fills): zeroing again can be skipped.
    zeroed: bool,
}

impl IoBuf {
    /// A zeroed buffer of `len` bytes (allocates: use a `BufPool` on the I/O path).
    pub fn new(len: usize) -> Self {
        IoBuf { data: vec![0; len], zeroed: true }
    }
    /// Zero the contents. Free when nothing wrote the buffer since it was last zeroed, which
    /// makes reads from zero-returning bdevs (Null) cost no memset in steady state.
    pub fn zero(&mut self) {
        if !self.zeroed {
            self.data.fill(0);
            // Bytes past `len` are unreachable until `set_len` grows the buffer, which
            // zero-fills them.
            self.zeroed = true;
        }
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }
    /// Set the length. Grows (zero-filling, allocating only past the capacity) or shrinks.
    pub fn set_len(&mut self, len: usize) {
        self.data.resize(len, 0);
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }
    /// The contents, for writing (the buffer no longer counts as zeroed).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.zeroed = false;
        &mut self.data
    }
}

impl From<Vec<u8>> for IoBuf {
    fn from(data: Vec<u8>) -> Self {
        IoBuf { data, zeroed: false }
    }
}

/// A per-poll-group free list of `IoBuf`s. It grows on demand up to `max_buffers` and keeps
/// what it has, so after warm-up no I/O allocates.
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
                IoBuf { data: Vec::with_capacity(len), zeroed: false }
            }
            None => return None,
        };
        b.set_len(len);
        Some(b)
    }
    /// Return a buffer to the pool.
    pub fn put(&mut self, buf: IoBuf) {
        if self.free.len() < self.max_buffers {
            self.free.push(buf);
        }
    }
    /// Buffers handed out and not yet returned.
    pub fn in_use(&self) -> usize {
        self.created - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
