//! Null bdev ("Null disk"): a device with no storage, for measuring the target's own overhead.
//!
//! Why it is shaped this way:
//! - Writes, WriteZeroes, Unmap and Flush are validated and then succeed without storing
//!   anything; reads always return zeroes. Pooled buffers carry whatever a previous I/O left in
//!   them, so Read must fill the buffer with zeroes rather than just hand it back, or one host
//!   would see another's data.
//! - Compare succeeds only against zeroes, consistent with what Read returns.
//! - Like the other backings, requests are validated with `check_io` (never a panic) and the
//!   completion is queued in a pre-allocated `VecDeque` that `poll` drains, so nothing is
//!   reported from inside `submit` and steady-state I/O allocates nothing.

use super::malloc::check_geometry;
use super::sync_channel::{SyncChannel, SyncExecute};
use super::{check_io, Bdev, BdevChannel, BdevError, BdevIo, BdevOp, BdevStatus};

/// A device that discards writes and reads zeroes. Wrap it in an `Arc` to share it.
#[derive(Debug)]
pub struct NullBdev {
    name: String,
    block_size: u32,
    num_blocks: u64,
}

impl NullBdev {
    /// A null device of `num_blocks` blocks of `block_size` bytes (a power of two, >= 512).
    pub fn new(name: &str, num_blocks: u64, block_size: u32) -> Result<Self, BdevError> {
        check_geometry(block_size, num_blocks)?;
        Ok(NullBdev { name: name.to_owned(), block_size, num_blocks })
    }
}

impl Bdev for NullBdev {
    fn name(&self) -> &str {
        &self.name
    }
    fn product_name(&self) -> &'static str {
        "Null disk"
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
    fn open_channel(&self) -> Result<Box<dyn BdevChannel>, BdevError> {
        Ok(Box::new(SyncChannel::new(NullChannel { block_size: self.block_size, num_blocks: self.num_blocks })))
    }
}

struct NullChannel {
    block_size: u32,
    num_blocks: u64,
}

impl NullChannel {
    fn run(&self, io: &mut BdevIo) -> BdevStatus {
        if let Err(status) = check_io(io, self.block_size, self.num_blocks) {
            return status;
        }
        match (io.op, io.buf.as_mut()) {
            (BdevOp::Read, Some(buf)) => {
                buf.zero();
                BdevStatus::Success
            }
            (BdevOp::Compare, Some(buf)) => {
                if buf.as_slice().iter().all(|&b| b == 0) {
                    BdevStatus::Success
                } else {
                    BdevStatus::CompareMismatch
                }
            }
            // check_io guarantees a buffer for Read/Compare; be defensive anyway.
            (BdevOp::Read | BdevOp::Compare, None) => BdevStatus::InvalidArg,
            (BdevOp::Write | BdevOp::Flush | BdevOp::WriteZeroes | BdevOp::Unmap, _) => BdevStatus::Success,
        }
    }
}

impl SyncExecute for NullChannel {
    fn execute(&mut self, io: &mut BdevIo) -> BdevStatus {
        NullChannel::run(self, io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bdev::test_util::*;
    use crate::bdev::IoBuf;

    fn dsm(slba: u64, nlb: u32) -> IoBuf {
        let mut v = vec![0u8; 16];
        v[4..8].copy_from_slice(&nlb.to_le_bytes());
        v[8..16].copy_from_slice(&slba.to_le_bytes());
        IoBuf::from(v)
    }

    #[test]
    fn params() {
        let b = NullBdev::new("Null0", 1 << 40, 4096).unwrap();
        assert_eq!(b.name(), "Null0");
        assert_eq!(b.product_name(), "Null disk");
        assert_eq!(b.block_size(), 4096);
        assert_eq!(b.num_blocks(), 1 << 40);
        assert!(!b.volatile_write_cache());
        for op in [BdevOp::Read, BdevOp::Write, BdevOp::Compare, BdevOp::Flush, BdevOp::WriteZeroes, BdevOp::Unmap] {
            assert!(b.supports(op));
        }
        assert!(matches!(NullBdev::new("x", 8, 520), Err(BdevError::InvalidParam(_))));
        assert!(matches!(NullBdev::new("x", 0, 512), Err(BdevError::InvalidParam(_))));
        // Size in bytes must fit in a u64, so byte offsets can never overflow.
        assert!(matches!(NullBdev::new("x", u64::MAX, 512), Err(BdevError::InvalidParam(_))));
        assert!(NullBdev::new("x", u64::MAX / 512, 512).is_ok());
    }

    #[test]
    fn write_discarded_read_zeroes() {
        let b = NullBdev::new("n", 1024, 512).unwrap();
        let mut ch = b.open_channel().unwrap();
        let c = run(&mut *ch, BdevOp::Write, 3, 2, Some(IoBuf::from(vec![0xee; 1024])));
        assert_eq!(c.status, BdevStatus::Success);
        assert_eq!(c.buf.unwrap().as_slice(), &[0xee; 1024][..]);
        // A recycled buffer full of old data comes back zeroed.
        let c = run(&mut *ch, BdevOp::Read, 3, 2, Some(IoBuf::from(vec![0xee; 1024])));
        assert_eq!(c.status, BdevStatus::Success);
        assert_eq!(c.buf.unwrap().as_slice(), &[0u8; 1024][..]);
        assert_eq!(run(&mut *ch, BdevOp::Flush, 0, 0, None).status, BdevStatus::Success);
        assert_eq!(run(&mut *ch, BdevOp::WriteZeroes, 0, 1024, None).status, BdevStatus::Success);
        assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(1000, 24))).status, BdevStatus::Success);
    }

    #[test]
    fn compare_only_zeroes_match() {
        let b = NullBdev::new("n", 16, 512).unwrap();
        let mut ch = b.open_channel().unwrap();
        assert_eq!(run(&mut *ch, BdevOp::Write, 0, 1, Some(IoBuf::from(vec![1; 512]))).status, BdevStatus::Success);
        assert_eq!(run(&mut *ch, BdevOp::Compare, 0, 1, Some(IoBuf::new(512))).status, BdevStatus::Success);
        let mut v = vec![0u8; 1024];
        v[1023] = 1;
        assert_eq!(run(&mut *ch, BdevOp::Compare, 0, 2, Some(IoBuf::from(v))).status, BdevStatus::CompareMismatch);
    }

    #[test]
    fn out_of_range_and_bad_requests() {
        let b = NullBdev::new("n", 16, 512).unwrap();
        let mut ch = b.open_channel().unwrap();
        assert_rejects_bad_requests(&mut *ch, 16, 512);
        assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, None).status, BdevStatus::InvalidArg);
        assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(10, 7))).status, BdevStatus::OutOfRange);
        assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(u64::MAX, 1))).status, BdevStatus::OutOfRange);
        // Huge device: byte offsets near u64::MAX do not overflow.
        let big = NullBdev::new("big", u64::MAX / 4096, 4096).unwrap();
        let mut ch = big.open_channel().unwrap();
        let last = u64::MAX / 4096 - 1;
        let c = run(&mut *ch, BdevOp::Read, last, 1, Some(IoBuf::from(vec![9; 4096])));
        assert_eq!(c.status, BdevStatus::Success);
        assert_eq!(c.buf.unwrap().as_slice(), &[0u8; 4096][..]);
        assert_eq!(run(&mut *ch, BdevOp::Read, last, 2, Some(IoBuf::new(8192))).status, BdevStatus::OutOfRange);
    }
}
