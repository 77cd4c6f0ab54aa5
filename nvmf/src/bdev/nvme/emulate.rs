//! Compare and Write Zeroes for controllers whose ONCS lacks them (the channel's
//! `native_compare` / `native_write_zeroes`), so every NVMe bdev supports both:
//! - Compare becomes a Read into a DMA buffer of the channel (`Kind::CompareByRead`), compared
//!   with the host's data when it completes: any difference is a Compare Failure.
//! - Write Zeroes becomes a Write from a zero-filled DMA buffer, split like any write.

use nvme_driver::{IoQpair, PoolBuf};

use super::IoBuf;
use crate::spec::NvmOpcode;

/// Emulated Write Zeroes: zero the first `blocks` blocks (of `block_size` bytes) of `d` and
/// queue a Write of them at `lba`.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_zeroes_by_write(
    qp: &mut IoQpair,
    d: &PoolBuf,
    block_size: usize,
    nsid: u32,
    lba: u64,
    blocks: u32,
    cdw12_flags: u32,
    token: u64,
) -> nvme_driver::Result<()> {
    d.fill(0, blocks as usize * block_size, 0);
    qp.rw_at_flags(NvmOpcode::Write, nsid, lba, blocks, d, 0, cdw12_flags, token)
}

/// Emulated Compare, on completion of its Read: whether the `len` bytes read into `d` differ
/// from the host's bytes at `off` in `host` (a range outside either buffer counts as a
/// mismatch).
pub(super) fn compare_mismatch(host: &IoBuf, off: usize, len: usize, d: &PoolBuf) -> bool {
    let same = host.as_slice().get(off..off + len).zip(d.as_slice().get(..len));
    same.is_none_or(|(x, y)| x != y)
}
