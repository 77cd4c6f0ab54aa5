//! RAM-backed bdev ("Malloc disk").
//!
//! Why it is shaped this way:
//! - The RAM is one `Box<[AtomicU64]>` shared (through an `Arc`) by every channel on every
//!   thread. Relaxed 8-byte atomic loads/stores make concurrent access from several poll groups
//!   sound without a lock and without `unsafe`; racing I/Os to the same blocks may interleave
//!   at 8-byte granularity, as with SPDK's memcpy-based malloc bdev.
//! - It is allocated with zerocopy's `FromZeros::new_box_zeroed_with_elems`, i.e. one
//!   `alloc_zeroed` (calloc/mmap), so a 1 GiB disk is created instantly and pages are only
//!   committed when first written. WriteZeroes/Unmap skip words that are already zero, so
//!   zeroing untouched space does not commit it either.
//! - I/O is synchronous: `submit` copies, then queues the completion in a pre-allocated
//!   `VecDeque` that `poll` drains, so completions are never reported from inside `submit`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use zerocopy::FromZeros;

use super::sync_channel::{SyncChannel, SyncExecute};
use super::{check_io, dsm_ranges, Bdev, BdevChannel, BdevError, BdevIo, BdevOp, BdevStatus};

/// Validate a bdev geometry: `block_size` a power of two >= 512, `num_blocks` > 0, and the size
/// in bytes representable in a `u64` (so `check_io`'s byte-offset arithmetic cannot overflow).
/// Returns the size in bytes.
pub(super) fn check_geometry(block_size: u32, num_blocks: u64) -> Result<u64, BdevError> {
    if block_size < 512 || !block_size.is_power_of_two() {
        return Err(BdevError::InvalidParam(format!("block size {block_size} is not a power of two >= 512")));
    }
    if num_blocks == 0 {
        return Err(BdevError::InvalidParam("number of blocks is 0".into()));
    }
    num_blocks
        .checked_mul(block_size as u64)
        .ok_or_else(|| BdevError::InvalidParam(format!("{num_blocks} blocks of {block_size} bytes overflow u64")))
}

/// A RAM disk. Wrap it in an `Arc` to share it (`Arc<dyn Bdev>`).
#[derive(Debug)]
pub struct MallocBdev {
    name: String,
    block_size: u32,
    num_blocks: u64,
    mem: Arc<Box<[AtomicU64]>>,
}

impl MallocBdev {
    /// Create a zeroed RAM disk of `num_blocks` blocks of `block_size` bytes (a power of two,
    /// >= 512). Memory is committed lazily, as blocks are written.
    pub fn new(name: &str, num_blocks: u64, block_size: u32) -> Result<Self, BdevError> {
        let bytes = check_geometry(block_size, num_blocks)?;
        let words = usize::try_from(bytes / 8).map_err(|_| BdevError::NoMemory(bytes))?;
        let mem = <[AtomicU64]>::new_box_zeroed_with_elems(words).map_err(|_| BdevError::NoMemory(bytes))?;
        Ok(MallocBdev { name: name.to_owned(), block_size, num_blocks, mem: Arc::new(mem) })
    }
}

impl Bdev for MallocBdev {
    fn name(&self) -> &str {
        &self.name
    }
    fn product_name(&self) -> &'static str {
        "Malloc disk"
    }
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }
    fn supports(&self, _op: BdevOp) -> bool {
        true
    }
    fn deallocated_reads_zeroes(&self) -> bool {
        true
    }
    fn open_channel(&self) -> Result<Box<dyn BdevChannel>, BdevError> {
        Ok(Box::new(SyncChannel::new(MallocChannel {
            mem: Arc::clone(&self.mem),
            block_size: self.block_size,
            num_blocks: self.num_blocks,
        })))
    }
}

struct MallocChannel {
    mem: Arc<Box<[AtomicU64]>>,
    block_size: u32,
    num_blocks: u64,
}

impl MallocChannel {
    /// The words covering `len` bytes at byte offset `off` (both multiples of 8 after
    /// `check_io`; `None` only if that invariant were broken).
    fn words(&self, off: u64, len: usize) -> Option<&[AtomicU64]> {
        let start = usize::try_from(off / 8).ok()?;
        self.mem.get(start..start.checked_add(len / 8)?)
    }

    fn blocks(&self, slba: u64, nlb: u64) -> Option<&[AtomicU64]> {
        let bs = self.block_size as u64;
        let off = slba.checked_mul(bs)?;
        let len = usize::try_from(nlb.checked_mul(bs)?).ok()?;
        self.words(off, len)
    }

    fn run(&self, io: &mut BdevIo) -> BdevStatus {
        let (off, len) = match check_io(io, self.block_size, self.num_blocks) {
            Ok(r) => r,
            Err(status) => return status,
        };
        match io.op {
            BdevOp::Flush => BdevStatus::Success,
            BdevOp::Read => {
                let (Some(words), Some(buf)) = (self.words(off, len), io.buf.as_mut()) else {
                    return BdevStatus::InvalidArg;
                };
                for (w, chunk) in words.iter().zip(buf.as_mut_slice().chunks_exact_mut(8)) {
                    chunk.copy_from_slice(&w.load(Relaxed).to_ne_bytes());
                }
                BdevStatus::Success
            }
            BdevOp::Write => {
                let (Some(words), Some(buf)) = (self.words(off, len), io.buf.as_ref()) else {
                    return BdevStatus::InvalidArg;
                };
                for (w, chunk) in words.iter().zip(buf.as_slice().chunks_exact(8)) {
                    w.store(u64::from_ne_bytes(chunk.try_into().unwrap_or_default()), Relaxed);
                }
                BdevStatus::Success
            }
            BdevOp::Compare => {
                let (Some(words), Some(buf)) = (self.words(off, len), io.buf.as_ref()) else {
                    return BdevStatus::InvalidArg;
                };
                let same = words
                    .iter()
                    .zip(buf.as_slice().chunks_exact(8))
                    .all(|(w, chunk)| w.load(Relaxed).to_ne_bytes().as_slice() == chunk);
                if same {
                    BdevStatus::Success
                } else {
                    BdevStatus::CompareMismatch
                }
            }
            BdevOp::WriteZeroes => match self.words(off, len) {
                Some(words) => {
                    zero(words);
                    BdevStatus::Success
                }
                None => BdevStatus::InvalidArg,
            },
            BdevOp::Unmap => {
                let Some(buf) = io.buf.as_ref() else {
                    return BdevStatus::InvalidArg;
                };
                for (slba, nlb) in dsm_ranges(buf.as_slice()) {
                    match self.blocks(slba, nlb as u64) {
                        Some(words) => zero(words),
                        None => return BdevStatus::OutOfRange,
                    }
                }
                BdevStatus::Success
            }
        }
    }
}

/// Zero `words`, leaving words that are already zero untouched so that zeroing never-written
/// space does not commit its pages.
fn zero(words: &[AtomicU64]) {
    for w in words {
        if w.load(Relaxed) != 0 {
            w.store(0, Relaxed);
        }
    }
}

impl SyncExecute for MallocChannel {
    fn execute(&mut self, io: &mut BdevIo) -> BdevStatus {
        MallocChannel::run(self, io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bdev::test_util::*;
    use crate::bdev::IoBuf;

    const BS: u32 = 512;

    fn pattern(len: usize, seed: u64) -> IoBuf {
        IoBuf::from(nvmf_test_support::pattern(seed, 0, len))
    }

    #[test]
    fn geometry_and_params() {
        let b = MallocBdev::new("Malloc0", 64, BS).unwrap();
        assert_eq!(b.name(), "Malloc0");
        assert_eq!(b.product_name(), "Malloc disk");
        assert_eq!(b.block_size(), 512);
        assert_eq!(b.num_blocks(), 64);
        assert!(!b.volatile_write_cache());
        for op in [BdevOp::Read, BdevOp::Write, BdevOp::Compare, BdevOp::Flush, BdevOp::WriteZeroes, BdevOp::Unmap] {
            assert!(b.supports(op));
        }
        assert!(matches!(MallocBdev::new("x", 8, 1000), Err(BdevError::InvalidParam(_))));
        assert!(matches!(MallocBdev::new("x", 8, 256), Err(BdevError::InvalidParam(_))));
        assert!(matches!(MallocBdev::new("x", 0, 512), Err(BdevError::InvalidParam(_))));
        assert!(matches!(MallocBdev::new("x", u64::MAX, 4096), Err(BdevError::InvalidParam(_))));
        // Representable but not allocatable.
        assert!(matches!(MallocBdev::new("x", u64::MAX / 4096, 4096), Err(BdevError::NoMemory(_))));
    }

    #[test]
    fn write_read_back_and_fresh_is_zero() {
        let b = MallocBdev::new("m", 128, 4096).unwrap();
        let mut ch = b.open_channel().unwrap();
        assert_eq!(read(&mut *ch, 0, 128, 4096), vec![0; 128 * 4096]);
        let data = pattern(3 * 4096, 7);
        let expect = data.as_slice().to_vec();
        let c = run(&mut *ch, BdevOp::Write, 10, 3, Some(data));
        assert_eq!(c.status, BdevStatus::Success);
        assert_eq!(c.buf.unwrap().as_slice(), &expect[..], "write hands its buffer back intact");
        assert_eq!(read(&mut *ch, 10, 3, 4096), expect);
        // Neighbours untouched, and a second channel sees the data.
        let mut ch2 = b.open_channel().unwrap();
        assert_eq!(read(&mut *ch2, 9, 1, 4096), vec![0; 4096]);
        assert_eq!(read(&mut *ch2, 13, 1, 4096), vec![0; 4096]);
        assert_eq!(read(&mut *ch2, 11, 1, 4096), expect[4096..8192].to_vec());
        // Last block.
        let last = pattern(4096, 99);
        let lastv = last.as_slice().to_vec();
        assert_eq!(run(&mut *ch, BdevOp::Write, 127, 1, Some(last)).status, BdevStatus::Success);
        assert_eq!(read(&mut *ch, 127, 1, 4096), lastv);
        assert_eq!(run(&mut *ch, BdevOp::Flush, 0, 0, None).status, BdevStatus::Success);
    }

    #[test]
    fn compare_match_and_mismatch() {
        let b = MallocBdev::new("m", 16, BS).unwrap();
        let mut ch = b.open_channel().unwrap();
        let data = pattern(2 * 512, 3);
        let mut other = data.as_slice().to_vec();
        assert_eq!(run(&mut *ch, BdevOp::Write, 4, 2, Some(data)).status, BdevStatus::Success);
        let c = run(&mut *ch, BdevOp::Compare, 4, 2, Some(IoBuf::from(other.clone())));
        assert_eq!(c.status, BdevStatus::Success);
        assert_eq!(c.buf.unwrap().as_slice(), &other[..]);
        other[1023] ^= 1; // last byte
        assert_eq!(
            run(&mut *ch, BdevOp::Compare, 4, 2, Some(IoBuf::from(other.clone()))).status,
            BdevStatus::CompareMismatch
        );
        other[1023] ^= 1;
        other[0] ^= 0x80; // first byte
        assert_eq!(run(&mut *ch, BdevOp::Compare, 4, 2, Some(IoBuf::from(other))).status, BdevStatus::CompareMismatch);
        assert_eq!(run(&mut *ch, BdevOp::Compare, 0, 1, Some(IoBuf::new(512))).status, BdevStatus::Success);
        assert_eq!(run(&mut *ch, BdevOp::Compare, 4, 1, Some(IoBuf::new(512))).status, BdevStatus::CompareMismatch);
    }

    #[test]
    fn out_of_range_and_bad_requests() {
        let b = MallocBdev::new("m", 16, BS).unwrap();
        let mut ch = b.open_channel().unwrap();
        let data = pattern(512, 1);
        let v = data.as_slice().to_vec();
        assert_eq!(run(&mut *ch, BdevOp::Write, 15, 1, Some(data)).status, BdevStatus::Success);
        assert_rejects_bad_requests(&mut *ch, 16, BS);
        assert_eq!(run(&mut *ch, BdevOp::WriteZeroes, 10, 7, None).status, BdevStatus::OutOfRange);
        assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, None).status, BdevStatus::InvalidArg);
        assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(&[(0, 1), (15, 2)]))).status, BdevStatus::OutOfRange);
        assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(&[(u64::MAX, 2)]))).status, BdevStatus::OutOfRange);
        // Nothing above changed the data (the failed Unmap's first range included).
        assert_eq!(read(&mut *ch, 15, 1, BS), v);
    }

    #[test]
    fn write_zeroes_and_unmap_zero() {
        let b = MallocBdev::new("m", 32, BS).unwrap();
        let mut ch = b.open_channel().unwrap();
        let data = pattern(32 * 512, 5);
        let all = data.as_slice().to_vec();
        assert_eq!(run(&mut *ch, BdevOp::Write, 0, 32, Some(data)).status, BdevStatus::Success);
        assert_eq!(run(&mut *ch, BdevOp::WriteZeroes, 2, 3, None).status, BdevStatus::Success);
        let c = run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(&[(10, 1), (20, 4), (31, 1), (0, 0)])));
        assert_eq!(c.status, BdevStatus::Success);
        assert_eq!(c.buf.unwrap().len(), 64);
        let got = read(&mut *ch, 0, 32, BS);
        for blk in 0..32usize {
            let r = blk * 512..(blk + 1) * 512;
            let zeroed = (2..5).contains(&blk) || blk == 10 || (20..24).contains(&blk) || blk == 31;
            if zeroed {
                assert_eq!(&got[r], &[0u8; 512][..], "block {blk}");
            } else {
                assert_eq!(&got[r.clone()], &all[r], "block {blk}");
            }
        }
    }

    #[test]
    fn two_threads_disjoint_ranges() {
        let b: Arc<dyn Bdev> = Arc::new(MallocBdev::new("m", 256, BS).unwrap());
        let handles: Vec<_> = (0..2u8)
            .map(|t| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let mut ch = b.open_channel().unwrap();
                    for i in 0..128u64 {
                        let blk = t as u64 * 128 + i;
                        let buf = IoBuf::from(vec![t.wrapping_mul(100).wrapping_add(i as u8); 512]);
                        assert_eq!(run(&mut *ch, BdevOp::Write, blk, 1, Some(buf)).status, BdevStatus::Success);
                    }
                    // Each thread reads back its own range through its own channel.
                    let got = read(&mut *ch, t as u64 * 128, 128, BS);
                    for i in 0..128usize {
                        assert!(got[i * 512..(i + 1) * 512]
                            .iter()
                            .all(|&x| x == t.wrapping_mul(100).wrapping_add(i as u8)));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut ch = b.open_channel().unwrap();
        let got = read(&mut *ch, 0, 256, BS);
        for blk in 0..256usize {
            let (t, i) = ((blk / 128) as u8, (blk % 128) as u8);
            let want = t.wrapping_mul(100).wrapping_add(i);
            assert!(got[blk * 512..(blk + 1) * 512].iter().all(|&x| x == want), "block {blk}");
        }
    }

    #[test]
    fn many_completions_in_order() {
        let b = MallocBdev::new("m", 1024, BS).unwrap();
        let mut ch = b.open_channel().unwrap();
        for i in 0..600u64 {
            let buf = IoBuf::from(vec![i as u8; 512]);
            ch.submit(BdevIo {
                op: BdevOp::Write,
                offset_blocks: i,
                num_blocks: 1,
                buf: Some(buf),
                fua: false,
                tag: i,
            });
        }
        ch.submit(BdevIo {
            op: BdevOp::Read,
            offset_blocks: 2000,
            num_blocks: 1,
            buf: Some(IoBuf::new(512)),
            fua: false,
            tag: 600,
        });
        assert_eq!(ch.outstanding(), 601);
        let mut out = vec![];
        assert_eq!(ch.poll(&mut out), 601);
        assert_eq!(ch.poll(&mut out), 0);
        assert_eq!(out.len(), 601);
        for (i, c) in out.iter().enumerate() {
            assert_eq!(c.tag, i as u64);
            let want = if i == 600 { BdevStatus::OutOfRange } else { BdevStatus::Success };
            assert_eq!(c.status, want);
            assert!(c.buf.is_some());
        }
        assert_eq!(read(&mut *ch, 599, 1, BS), vec![599u64 as u8; 512]);
    }

    fn rss_bytes() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }

    #[test]
    fn one_gib_is_lazy() {
        let before = rss_bytes();
        let t = std::time::Instant::now();
        let b = MallocBdev::new("big", 1 << 18, 4096).unwrap();
        let elapsed = t.elapsed();
        assert_eq!(b.num_blocks() * b.block_size() as u64, 1 << 30);
        let mut ch = b.open_channel().unwrap();
        let data = pattern(4096, 11);
        let v = data.as_slice().to_vec();
        assert_eq!(run(&mut *ch, BdevOp::Write, (1 << 18) - 1, 1, Some(data)).status, BdevStatus::Success);
        assert_eq!(read(&mut *ch, (1 << 18) - 1, 1, 4096), v);
        assert_eq!(read(&mut *ch, 1 << 17, 1, 4096), vec![0; 4096]);
        assert!(elapsed < std::time::Duration::from_millis(500), "creating 1 GiB took {elapsed:?}");
        if let (Some(a), Some(z)) = (before, rss_bytes()) {
            assert!(z.saturating_sub(a) < 256 << 20, "1 GiB malloc bdev committed {} bytes", z - a);
        }
    }
}
