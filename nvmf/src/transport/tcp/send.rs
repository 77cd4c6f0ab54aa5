//! A connection's send queue: PDU bytes (headers, digests, small payloads) in one buffer, plus
//! C2HData payloads that stay in their request's `IoBuf` and are sent from it with `writev`,
//! without a copy (in direct mode the buffer is the DMA buffer the device filled).
//!
//! The byte stream is `bytes[head..]` with each pending segment's data inserted at the position
//! in `bytes` it was queued at (`Seg::at`): the C2HData header and any padding come before that
//! position, the data digest and the next PDU after it. Positions never fall below `head` (a
//! segment is written out before any byte that follows it), so the stream is
//!
//! ```text
//! bytes[head..at0] seg0 bytes[at0..at1] seg1 ... bytes[atN..]
//! ```

use crate::bdev::{BufPool, IoBuf};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// C2HData payloads of at least this many bytes are sent straight from the request buffer;
/// smaller ones are copied into the send buffer (cheaper than an iovec and a buffer held until
/// the peer reads).
pub(crate) const ZERO_COPY_MIN: usize = 4096;
/// Segments queued (or written and waiting to go back to the pool) per connection: as many as
/// requests a connection may have in flight. A C2HData beyond it is copied instead, so the
/// buffers a host that does not read can pin stay bounded (this many, besides those of its
/// commands in flight), and the segment queues never grow past what was reserved.
pub(crate) const MAX_SEGS: usize = crate::ctrlr::MAX_QUEUE_DEPTH as usize;
/// iovecs per `writev` (an array on the stack, 16 bytes each): enough for every segment and the
/// bytes around each, so one call offers all that is queued, as one `write` of the send buffer
/// would; well under Linux's IOV_MAX (1024).
pub(crate) const MAX_IOV: usize = 2 * MAX_SEGS + 1;
/// Sent bytes at the front of a send buffer that has not drained are dropped once there are
/// this many and they are at least half of it.
const TX_COMPACT_AT: usize = 256 << 10;

struct Seg {
    /// Position in `bytes` where this segment's data belongs.
    at: usize,
    buf: IoBuf,
    /// `buf[off..end]` is still to be sent.
    off: usize,
    end: usize,
}

pub(crate) struct SendQueue {
    bytes: Vec<u8>,
    /// Bytes of `bytes` before this have been sent.
    head: usize,
    segs: VecDeque<Seg>,
    /// Unsent bytes in `segs`.
    seg_left: usize,
    /// Heap buffers whose bytes have all been sent, until `reclaim` hands them to the pool
    /// (`flush` may run where the pool is out of reach). DMA buffers are dropped at once, which
    /// returns them to their own pool.
    released: Vec<IoBuf>,
    max_segs: usize,
    compact_at: usize,
}

/// A socket written with `sendmsg(MSG_NOSIGNAL)`: `writev` (std's `write_vectored`) raises
/// SIGPIPE on a reset peer, which kills a process that has not ignored it (a C program embedding
/// the library); the Rust runtime ignores it, but a library must not rely on that.
pub(crate) struct NoSigPipe<'a, S: std::os::fd::AsFd>(pub &'a S);

impl<S: std::os::fd::AsFd> Write for NoSigPipe<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        socket2::SockRef::from(self.0).send_with_flags(buf, libc::MSG_NOSIGNAL)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        socket2::SockRef::from(self.0).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SendQueue {
    pub fn new(bytes_capacity: usize) -> Self {
        Self::with_limits(bytes_capacity, MAX_SEGS, TX_COMPACT_AT)
    }

    fn with_limits(bytes_capacity: usize, max_segs: usize, compact_at: usize) -> Self {
        SendQueue {
            bytes: Vec::with_capacity(bytes_capacity),
            head: 0,
            segs: VecDeque::with_capacity(max_segs),
            seg_left: 0,
            released: Vec::with_capacity(max_segs),
            max_segs,
            compact_at,
        }
    }

    /// The send buffer, for appending PDU bytes.
    pub fn bytes_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Bytes queued and not yet written (buffer and segments).
    pub fn pending(&self) -> usize {
        self.bytes.len() - self.head + self.seg_left
    }

    pub fn is_empty(&self) -> bool {
        self.pending() == 0
    }

    /// A segment may be queued without growing the segment queues (so without allocating).
    pub fn can_take_segment(&self) -> bool {
        self.segs.len() + self.released.len() < self.max_segs
    }

    /// Queue the first `len` bytes of `buf` to be sent from it, after the bytes queued so far.
    pub fn push_segment(&mut self, buf: IoBuf, len: usize) {
        let end = len.min(buf.len());
        if end == 0 {
            self.release(buf);
            return;
        }
        self.seg_left += end;
        self.segs.push_back(Seg { at: self.bytes.len(), buf, off: 0, end });
    }

    fn release(&mut self, buf: IoBuf) {
        if buf.dma().is_none() {
            self.released.push(buf);
        }
    }

    /// Fill `iov` with the start of the unsent stream. Returns the number of slices and bytes.
    fn fill_iov<'a>(&'a self, iov: &mut [IoSlice<'a>]) -> (usize, usize) {
        let (mut k, mut total) = (0, 0);
        let mut push = |s: &'a [u8]| {
            if s.is_empty() {
                return true;
            }
            if k == iov.len() {
                return false;
            }
            iov[k] = IoSlice::new(s);
            k += 1;
            total += s.len();
            true
        };
        let mut pos = self.head;
        'fill: {
            for s in &self.segs {
                if !push(&self.bytes[pos..s.at]) || !push(&s.buf.as_slice()[s.off..s.end]) {
                    break 'fill;
                }
                pos = s.at;
            }
            push(&self.bytes[pos..]);
        }
        (k, total)
    }

    /// `n` bytes from the front of the stream were written: move past them, releasing the
    /// buffer of every segment whose last byte was among them.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.segs.front_mut() {
                Some(s) if s.at == self.head => {
                    let k = n.min(s.end - s.off);
                    s.off += k;
                    self.seg_left -= k;
                    n -= k;
                    if s.off == s.end {
                        if let Some(s) = self.segs.pop_front() {
                            self.release(s.buf);
                        }
                    }
                }
                front => {
                    let stop = front.map_or(self.bytes.len(), |s| s.at);
                    let k = n.min(stop - self.head);
                    debug_assert!(k > 0, "advanced past the queued bytes");
                    if k == 0 {
                        return;
                    }
                    self.head += k;
                    n -= k;
                }
            }
        }
    }

    /// One `write_vectored` of the start of the stream. Returns the bytes written and whether
    /// that was fewer than offered (the socket buffer is full). Sockets go through [`NoSigPipe`]
    /// so a write to a reset peer returns EPIPE instead of raising SIGPIPE.
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<(usize, bool)> {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let (k, offered) = self.fill_iov(&mut iov);
        let n = w.write_vectored(&iov[..k])?.min(offered);
        self.advance(n);
        Ok((n, n < offered))
    }

    /// Drop the sent prefix of the buffer when everything before the segments was sent, or when
    /// it is large (a peer that reads slower than responses are queued never lets the buffer
    /// drain: it would grow without bound). Moves at most as many bytes as were sent.
    pub fn compact(&mut self) {
        let d = self.head;
        if d == self.bytes.len() {
            self.bytes.clear();
        } else if d >= self.compact_at && d * 2 >= self.bytes.len() {
            self.bytes.drain(..d);
        } else {
            return;
        }
        for s in self.segs.iter_mut() {
            s.at -= d;
        }
        self.head = 0;
    }

    /// Drop everything queued (the peer is gone); segment buffers are released.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.head = 0;
        self.seg_left = 0;
        while let Some(s) = self.segs.pop_front() {
            self.release(s.buf);
        }
    }

    /// Give released heap buffers back to the pool.
    pub fn reclaim(&mut self, pool: &mut BufPool) {
        for b in self.released.drain(..) {
            pool.put(b);
        }
    }

    /// The connection closed: return every buffer and free the queue's memory.
    pub fn shut(&mut self, pool: &mut BufPool) {
        self.clear();
        self.reclaim(pool);
        *self = Self::with_limits(0, 0, self.compact_at);
    }
}

#[cfg(test)]
mod tests {
    use super::super::pdu_tx;
    use super::*;
    use nvme_driver::dma::{DmaAllocator, DmaBacking, IdentityMapper};
    use std::sync::Arc;

    /// A socket that takes at most the next scripted number of bytes per call (0: WouldBlock;
    /// none left: everything offered), recording what it took.
    #[derive(Default)]
    struct Sink {
        out: Vec<u8>,
        script: VecDeque<usize>,
        calls: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut room = self.script.pop_front().unwrap_or(usize::MAX);
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let start = self.out.len();
            for b in bufs {
                let k = b.len().min(room);
                self.out.extend_from_slice(&b[..k]);
                room -= k;
            }
            Ok(self.out.len() - start)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    enum Part {
        Inline(Vec<u8>),
        Seg(Vec<u8>),
    }

    fn bytes(seed: u8, n: usize) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// Queue `parts` (segments from heap buffers). Returns the expected stream and the stream
    /// offset just past each segment.
    fn build(q: &mut SendQueue, parts: &[Part]) -> (Vec<u8>, Vec<usize>) {
        let (mut stream, mut seg_ends) = (Vec::new(), Vec::new());
        for p in parts {
            match p {
                Part::Inline(b) => q.bytes_mut().extend_from_slice(b),
                Part::Seg(b) => {
                    // A buffer longer than what is sent: only `len` bytes go out.
                    let mut buf = b.clone();
                    buf.extend_from_slice(&[0xee; 7]);
                    q.push_segment(IoBuf::from(buf), b.len());
                }
            }
            let (Part::Inline(b) | Part::Seg(b)) = p;
            stream.extend_from_slice(b);
            if matches!(p, Part::Seg(_)) {
                seg_ends.push(stream.len());
            }
        }
        (stream, seg_ends)
    }

    /// What the next write would offer, as one byte string.
    fn unsent(q: &SendQueue) -> Vec<u8> {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let (k, total) = q.fill_iov(&mut iov);
        let v: Vec<u8> = iov[..k].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(v.len(), total);
        v
    }

    /// C2HData PDUs as the connection queues them: 24-byte header (+ header digest, padding),
    /// payload, data digest; then a CapsuleResp.
    fn scenarios() -> Vec<(&'static str, Vec<Part>)> {
        use Part::*;
        let hdr = |s| bytes(s, 24);
        vec![
            ("one PDU, no digests, data last", vec![Inline(hdr(1)), Seg(bytes(2, 4096))]),
            (
                "one PDU with digests",
                vec![Inline(bytes(1, 32)), Seg(bytes(2, 5000)), Inline(bytes(3, 4)), Inline(hdr(4))],
            ),
            (
                "two PDUs, no data digest",
                vec![Inline(hdr(1)), Seg(bytes(2, 4096)), Inline(hdr(3)), Seg(bytes(4, 8192)), Inline(hdr(5))],
            ),
            (
                "two PDUs with data digests and padding",
                vec![
                    Inline(bytes(1, 64)),
                    Seg(bytes(2, 4100)),
                    Inline(bytes(3, 4 + 64)),
                    Seg(bytes(4, 4096)),
                    Inline(bytes(5, 4)),
                ],
            ),
            ("adjacent segments", vec![Inline(hdr(1)), Seg(bytes(2, 4096)), Seg(bytes(3, 4096)), Inline(hdr(4))]),
            ("segment first", vec![Seg(bytes(2, 4096)), Inline(hdr(1))]),
            ("no segment", vec![Inline(bytes(9, 300))]),
        ]
    }

    #[test]
    fn short_writes_around_every_boundary_keep_the_stream_and_release_each_buffer_when_sent() {
        for (name, parts) in scenarios() {
            for compact in [false, true] {
                // Every byte within 3 of a boundary between parts (inside a header, at a
                // segment's first and last byte, just past it...), and a stride in between.
                let mut ends = vec![0];
                for p in &parts {
                    let (Part::Inline(b) | Part::Seg(b)) = p;
                    ends.push(ends[ends.len() - 1] + b.len());
                }
                let total = ends[ends.len() - 1];
                let cuts: std::collections::BTreeSet<usize> = ends
                    .iter()
                    .flat_map(|&e| e.saturating_sub(3)..=e + 3)
                    .chain((0..total).step_by(61))
                    .filter(|&c| c > 0 && c < total)
                    .collect();
                for first in cuts {
                    let mut q = SendQueue::with_limits(0, MAX_SEGS, if compact { 1 } else { usize::MAX });
                    let (stream, seg_ends) = build(&mut q, &parts);
                    assert_eq!(q.pending(), total, "{name}");
                    assert_eq!(unsent(&q), stream, "{name}: iovecs before any write");
                    let mut sink = Sink { script: [first].into(), ..Default::default() };
                    assert_eq!(q.write_to(&mut sink).expect("write"), (first, true), "{name}");
                    if compact {
                        q.compact();
                    }
                    let ctx = format!("{name}, first write {first} bytes, compaction {compact}");
                    assert_eq!(q.pending(), total - first, "{ctx}");
                    assert_eq!(unsent(&q), &stream[first..], "{ctx}: what is left");
                    let done = seg_ends.iter().filter(|&&e| e <= first).count();
                    assert_eq!(q.released.len(), done, "{ctx}: buffers released exactly once fully written");
                    assert_eq!(q.segs.len(), seg_ends.len() - done, "{ctx}");
                    // Then one byte at a time across the next few boundaries, then the rest.
                    sink.script = [1, 1, 3].into();
                    while !q.is_empty() {
                        q.write_to(&mut sink).expect("write");
                        if compact {
                            q.compact();
                        }
                    }
                    assert_eq!(sink.out, stream, "{ctx}: bytes on the wire");
                    assert_eq!(q.released.len(), seg_ends.len(), "{ctx}");
                    q.compact();
                    assert_eq!((q.head, q.bytes.len(), q.segs.len(), q.seg_left), (0, 0, 0, 0), "{ctx}");
                }
            }
        }
    }

    #[test]
    fn writes_append_after_a_partly_sent_segment_and_compaction_moves_positions() {
        let mut q = SendQueue::with_limits(0, MAX_SEGS, 16);
        let mut expect = Vec::new();
        let mut sink = Sink::default();
        for round in 0..50u8 {
            let hdr = bytes(round, 24 + round as usize);
            let data = bytes(round ^ 0x5a, 4096 + round as usize);
            q.bytes_mut().extend_from_slice(&hdr);
            q.push_segment(IoBuf::from(data.clone()), data.len());
            q.bytes_mut().extend_from_slice(&[round; 4]);
            expect.extend_from_slice(&hdr);
            expect.extend_from_slice(&data);
            expect.extend_from_slice(&[round; 4]);
            // Write an odd amount, leaving bytes queued in the middle of a header or segment.
            sink.script = [1000 + 37 * round as usize, 0].into();
            let _ = q.write_to(&mut sink);
            assert!(q.write_to(&mut sink).is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock));
            q.compact();
            assert_eq!(unsent(&q), &expect[sink.out.len()..], "round {round}");
        }
        while !q.is_empty() {
            q.write_to(&mut sink).expect("write");
        }
        assert_eq!(sink.out, expect);
    }

    #[test]
    fn all_segments_go_out_in_one_writev_and_more_iovecs_in_several() {
        for (n, calls) in [(MAX_SEGS, 1), (MAX_SEGS + 72, 2)] {
            let mut q = SendQueue::with_limits(0, n, TX_COMPACT_AT);
            let parts: Vec<Part> = (0..n)
                .flat_map(|i| [Part::Inline(bytes(i as u8, 24)), Part::Seg(bytes(!(i as u8), 4096))])
                .chain([Part::Inline(bytes(1, 24))])
                .collect();
            let (stream, _) = build(&mut q, &parts);
            let mut sink = Sink::default();
            while !q.is_empty() {
                q.write_to(&mut sink).expect("write");
            }
            assert_eq!(sink.out, stream);
            assert_eq!(sink.calls, calls, "{n} segments");
        }
    }

    #[test]
    fn buffers_go_back_to_their_pools_when_sent_or_dropped() {
        let alloc = DmaAllocator::new(Arc::new(IdentityMapper::new()), DmaBacking::Anonymous);
        let dma = alloc.alloc_pool(8192, 2).expect("DMA pool");
        let mut pool = BufPool::new(4);
        let mut q = SendQueue::with_limits(0, 3, TX_COMPACT_AT);
        let mut d = IoBuf::from_dma(dma.get().expect("buffer"), 8192).expect("fits");
        d.as_mut_slice().fill(0xd1);
        let mut h = pool.get(4096).expect("heap buffer");
        h.as_mut_slice().fill(0x4e);
        q.bytes_mut().extend_from_slice(b"hdr1");
        q.push_segment(d, 8000);
        q.bytes_mut().extend_from_slice(b"hdr2");
        q.push_segment(h, 4096);
        assert_eq!(q.pending(), 8 + 8000 + 4096);
        let mut sink = Sink { script: [4 + 8000 - 1, 1].into(), ..Default::default() };
        q.write_to(&mut sink).expect("write");
        assert_eq!(dma.available(), 1, "one byte of the DMA segment unsent: still held");
        q.write_to(&mut sink).expect("write");
        assert_eq!(dma.available(), 2, "fully sent: back in its pool");
        q.write_to(&mut sink).expect("write");
        assert!(q.is_empty());
        assert_eq!((q.released.len(), pool.in_use()), (1, 1), "heap buffer waits for the pool");
        q.reclaim(&mut pool);
        assert_eq!(pool.in_use(), 0);
        let mut want = b"hdr1".to_vec();
        want.extend_from_slice(&[0xd1; 8000]);
        want.extend_from_slice(b"hdr2");
        want.extend_from_slice(&[0x4e; 4096]);
        assert_eq!(sink.out, want);

        // Closing with segments queued (one partly sent) returns them all.
        let d = IoBuf::from_dma(dma.get().expect("buffer"), 4096).expect("fits");
        q.push_segment(d, 4096);
        q.push_segment(pool.get(4096).expect("heap"), 4096);
        q.push_segment(pool.get(4096).expect("heap"), 4096);
        assert!(!q.can_take_segment(), "at most 3 segments");
        sink.script = [100].into();
        q.write_to(&mut sink).expect("write");
        assert_eq!((dma.available(), pool.in_use()), (1, 2));
        q.shut(&mut pool);
        assert_eq!((dma.available(), pool.in_use(), q.pending()), (2, 0, 0));
    }

    #[test]
    fn segments_are_capped_until_sent_buffers_are_reclaimed() {
        let mut q = SendQueue::with_limits(0, 2, TX_COMPACT_AT);
        let mut pool = BufPool::new(4);
        q.push_segment(pool.get(4096).expect("heap"), 4096);
        assert!(q.can_take_segment());
        q.push_segment(pool.get(4096).expect("heap"), 4096);
        assert!(!q.can_take_segment());
        q.write_to(&mut Sink::default()).expect("write");
        assert!(q.is_empty());
        assert!(!q.can_take_segment(), "written, not yet back in the pool");
        q.reclaim(&mut pool);
        assert!(q.can_take_segment());
        assert_eq!(pool.in_use(), 0);
        // Capacity reserved up front: queuing up to the cap never reallocates.
        let (segs, rel) = (q.segs.capacity(), q.released.capacity());
        q.push_segment(pool.get(4096).expect("heap"), 4096);
        q.push_segment(pool.get(4096).expect("heap"), 4096);
        q.write_to(&mut Sink::default()).expect("write");
        assert_eq!((q.segs.capacity(), q.released.capacity()), (segs, rel));
        q.shut(&mut pool);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn c2h_data_from_the_buffer_is_byte_identical_to_the_copied_pdu() {
        let data = bytes(7, 12288 + 100);
        for (hdgst, ddgst, hpda) in [
            (false, false, 0),
            (true, false, 0),
            (false, true, 0),
            (true, true, 0),
            (true, true, 3),
            (false, false, 31),
        ] {
            for success in [false, true] {
                let len = 12288;
                let mut copied = Vec::new();
                pdu_tx::c2h_data(&mut copied, 0x1234, 0, &data[..len], true, success, hdgst, ddgst, hpda);
                let mut q = SendQueue::new(0);
                q.bytes_mut().extend_from_slice(b"before");
                pdu_tx::c2h_data_from_buf(
                    &mut q,
                    0x1234,
                    0,
                    IoBuf::from(data.clone()),
                    len,
                    true,
                    success,
                    hdgst,
                    ddgst,
                    hpda,
                );
                q.bytes_mut().extend_from_slice(b"after");
                assert_eq!(q.segs.len(), 1, "payload not copied");
                let mut sink = Sink::default();
                while !q.is_empty() {
                    q.write_to(&mut sink).expect("write");
                }
                let mut want = b"before".to_vec();
                want.extend_from_slice(&copied);
                want.extend_from_slice(b"after");
                assert_eq!(sink.out, want, "hdgst {hdgst} ddgst {ddgst} hpda {hpda} success {success}");
            }
        }
    }
}
