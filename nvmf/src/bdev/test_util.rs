//! Helpers shared by the bdev unit tests.

use super::{BdevChannel, BdevCompletion, BdevIo, BdevOp, BdevStatus, IoBuf};

/// Submit one I/O to a synchronous channel and take its completion back.
pub(super) fn run(ch: &mut dyn BdevChannel, op: BdevOp, off: u64, nb: u64, buf: Option<IoBuf>) -> BdevCompletion {
    ch.submit(BdevIo { op, offset_blocks: off, num_blocks: nb, buf, tag: 7 });
    assert_eq!(ch.outstanding(), 1);
    let mut out = Vec::new();
    assert_eq!(ch.poll(&mut out), 1);
    assert_eq!(ch.outstanding(), 0);
    let c = out.pop().expect("a completion");
    assert_eq!(c.tag, 7);
    c
}

/// Read `nb` blocks; the buffer is pre-filled with garbage so a read that does nothing is caught.
pub(super) fn read(ch: &mut dyn BdevChannel, off: u64, nb: u64, bs: u32) -> Vec<u8> {
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
