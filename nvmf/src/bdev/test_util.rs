//! Helpers shared by the bdev unit tests: [`run`] and [`read`] for synchronous channels (malloc,
//! null, file), [`run_polled`], [`read_polled`] and [`wait`] for asynchronous ones (NVMe). The
//! data pattern comes from the `nvmf-test-support` crate.
// The asynchronous helpers serve the NVMe bdev's tests, which need direct mode.
#![cfg_attr(not(feature = "direct"), allow(dead_code))]

use super::{BdevChannel, BdevCompletion, BdevIo, BdevOp, BdevStatus, IoBuf};
use std::time::{Duration, Instant};

/// Submit one I/O to a synchronous channel and take its completion back.
pub(super) fn run(ch: &mut dyn BdevChannel, op: BdevOp, off: u64, nb: u64, buf: Option<IoBuf>) -> BdevCompletion {
    run_io(ch, BdevIo { op, offset_blocks: off, num_blocks: nb, buf, fua: false, tag: 7 })
}

/// Submit `io` (tag 7) to a synchronous channel and take its completion back.
pub(super) fn run_io(ch: &mut dyn BdevChannel, io: BdevIo) -> BdevCompletion {
    assert_eq!(io.tag, 7);
    ch.submit(io);
    assert_eq!(ch.outstanding(), 1);
    let mut out = Vec::new();
    assert_eq!(ch.poll(&mut out), 1);
    assert_eq!(ch.outstanding(), 0);
    let c = out.pop().expect("a completion");
    assert_eq!(c.tag, 7);
    c
}

/// Poll an asynchronous channel until `n` completions arrived; fails the test after 10 s.
pub(super) fn wait(ch: &mut dyn BdevChannel, n: usize) -> Vec<BdevCompletion> {
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < n {
        ch.poll(&mut out);
        assert!(start.elapsed() < Duration::from_secs(10), "only {} of {n} completions", out.len());
    }
    out
}

/// [`run`] for an asynchronous channel (a device queue): submit, then poll (bounded) until the
/// completion arrives.
pub(super) fn run_polled(
    ch: &mut dyn BdevChannel,
    op: BdevOp,
    off: u64,
    nb: u64,
    buf: Option<IoBuf>,
) -> BdevCompletion {
    ch.submit(BdevIo { op, offset_blocks: off, num_blocks: nb, buf, fua: false, tag: 7 });
    let mut out = wait(ch, 1);
    assert_eq!(ch.outstanding(), 0);
    let c = out.pop().expect("a completion");
    assert_eq!(c.tag, 7);
    c
}

/// Read `nb` blocks; the buffer is pre-filled with garbage so a read that does nothing is caught.
pub(super) fn read(ch: &mut dyn BdevChannel, off: u64, nb: u64, bs: u32) -> Vec<u8> {
    read_with(run, ch, off, nb, bs)
}

/// [`read`] for an asynchronous channel.
pub(super) fn read_polled(ch: &mut dyn BdevChannel, off: u64, nb: u64, bs: u32) -> Vec<u8> {
    read_with(run_polled, ch, off, nb, bs)
}

type RunFn = fn(&mut dyn BdevChannel, BdevOp, u64, u64, Option<IoBuf>) -> BdevCompletion;

fn read_with(run: RunFn, ch: &mut dyn BdevChannel, off: u64, nb: u64, bs: u32) -> Vec<u8> {
    let c = run(ch, BdevOp::Read, off, nb, Some(IoBuf::from(vec![0x5a; nb as usize * bs as usize])));
    assert_eq!(c.status, BdevStatus::Success);
    c.buf.expect("buffer back").as_slice().to_vec()
}

/// Dataset Management ranges (starting LBA, blocks) as an Unmap buffer.
pub(super) fn dsm(ranges: &[(u64, u32)]) -> IoBuf {
    let mut v = Vec::new();
    for &(slba, nlb) in ranges {
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&nlb.to_le_bytes());
        v.extend_from_slice(&slba.to_le_bytes());
    }
    IoBuf::from(v)
}

/// The request checks every backing makes, on a channel of a device with `blocks` blocks of `bs`
/// bytes: Read/Write/Compare ranges past the end (including ones that overflow u64) are
/// `OutOfRange`; a missing or wrongly sized buffer is `InvalidArg`; Write Zeroes past the end is
/// `OutOfRange`. Every failed I/O hands its buffer back.
pub(super) fn assert_rejects_bad_requests(ch: &mut dyn BdevChannel, blocks: u64, bs: u32) {
    let bs = bs as usize;
    for op in [BdevOp::Read, BdevOp::Write, BdevOp::Compare] {
        let out_of_range = [
            (blocks - 1, 2, 2 * bs),
            (blocks, 1, bs),
            (u64::MAX, 1, bs),
            (u64::MAX, 2, 2 * bs),
            (1, u64::MAX, bs),
            (2, u64::MAX - 1, bs),
            (3, u64::MAX - 2, bs),
        ];
        for (off, nb, len) in out_of_range {
            let c = run(ch, op, off, nb, Some(IoBuf::new(len)));
            assert_eq!(c.status, BdevStatus::OutOfRange, "{op:?} at {off} for {nb} blocks");
            assert!(c.buf.is_some(), "a failed I/O hands its buffer back");
        }
        for len in [bs - 1, bs + 1, 2 * bs, 8 * bs] {
            let c = run(ch, op, 0, 1, Some(IoBuf::new(len)));
            assert_eq!(c.status, BdevStatus::InvalidArg, "{op:?} with a {len}-byte buffer");
        }
        assert_eq!(run(ch, op, 0, 1, None).status, BdevStatus::InvalidArg, "{op:?} without a buffer");
    }
    for (off, nb) in [(u64::MAX, 1), (blocks - 1, 2), (1, u64::MAX)] {
        assert_eq!(run(ch, BdevOp::WriteZeroes, off, nb, None).status, BdevStatus::OutOfRange, "write zeroes at {off}");
    }
}
