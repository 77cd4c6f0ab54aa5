//! Physical Region Page lists (NVMe Base 2.0 section 4.1.1): PRP1 points at the first byte of the
//! transfer; PRP2 is either the second page or the device address of a list of page addresses.

use crate::dma::{DmaRegion, PAGE_SIZE};
use crate::error::{Error, Result};

/// Page addresses one list page holds. The driver uses one list page per command, so a transfer
/// spans at most 1 + `LIST_ENTRIES` pages.
pub const LIST_ENTRIES: usize = PAGE_SIZE / 8;

/// Largest transfer one list page can describe when the buffer starts page-aligned.
pub const MAX_TRANSFER: usize = (1 + LIST_ENTRIES) * PAGE_SIZE;

/// Build PRP1/PRP2 for `len` bytes at `off` of `buf`, writing a PRP list into `list` when the
/// transfer spans more than two pages.
///
/// `written` is how many leading entries of `list` may still hold addresses from earlier
/// commands. A list holds exactly this command's entries: those past them are zeroed (so a device
/// that reads further finds no address of another command's buffer), and `written` becomes the
/// number written now. Tracking it keeps the common case (the same size again) free of extra
/// writes.
pub fn build(buf: &DmaRegion, off: usize, len: usize, list: &DmaRegion, written: &mut usize) -> Result<(u64, u64)> {
    if len == 0 || off.checked_add(len).is_none_or(|end| end > buf.len()) {
        return Err(Error::InvalidArgument(format!("{len} bytes at {off} outside a {} byte buffer", buf.len())));
    }
    let prp1 = buf.iova_at(off);
    if !prp1.is_multiple_of(4) {
        return Err(Error::InvalidArgument(format!("data address {prp1:#x} is not dword aligned")));
    }
    let first = PAGE_SIZE - (prp1 as usize % PAGE_SIZE);
    if len <= first {
        return Ok((prp1, 0));
    }
    let rest = len - first;
    let pages = rest.div_ceil(PAGE_SIZE);
    if pages == 1 {
        return Ok((prp1, buf.iova_at(off + first)));
    }
    if pages > LIST_ENTRIES || list.len() < pages * 8 {
        return Err(Error::TransferTooLarge { len, max: first + LIST_ENTRIES * PAGE_SIZE });
    }
    let mut entries = [0u8; PAGE_SIZE];
    for (i, e) in entries.chunks_exact_mut(8).take(pages).enumerate() {
        e.copy_from_slice(&buf.iova_at(off + first + i * PAGE_SIZE).to_le_bytes());
    }
    list.write(0, &entries[..pages * 8]);
    if *written > pages {
        list.fill(pages * 8, (*written - pages) * 8, 0);
    }
    *written = pages;
    Ok((prp1, list.iova()))
}

/// Bytes of a buffer for [`IoQpair::submit_raw_opaque`](crate::IoQpair::submit_raw_opaque) on a
/// queue pair whose maximum transfer is `max_transfer`.
pub fn opaque_buf_size(max_transfer: usize) -> usize {
    max_transfer.next_multiple_of(PAGE_SIZE) + 2 * PAGE_SIZE
}

/// Where the host's `len` bytes go in the buffer of an opaque command (one whose real transfer
/// length only the device knows), or `None` when no safe layout exists.
///
/// The device reads PRP2 as a data page when its transfer ends within two pages and as a list
/// pointer otherwise. Host-to-controller data spanning exactly two pages would put host bytes
/// in the page a longer transfer takes for a PRP list, so such data starts 4 bytes before the
/// end of the first page: it then always needs a list the driver wrote. That is impossible only
/// for 4097..=4100 bytes.
pub fn opaque_offset(len: usize, host_to_ctrl: bool) -> Option<usize> {
    const SHIFT: usize = PAGE_SIZE - 4;
    match len {
        _ if !host_to_ctrl || len <= PAGE_SIZE => Some(0),
        _ if len <= PAGE_SIZE + 4 => None,
        _ => Some(SHIFT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::{DmaAllocator, DmaBacking, IdentityMapper};
    use std::sync::Arc;

    fn alloc() -> DmaAllocator {
        DmaAllocator::new(Arc::new(IdentityMapper::new()), DmaBacking::Anonymous)
    }

    #[test]
    fn one_and_two_pages_need_no_list() {
        let a = alloc();
        let buf = a.alloc(3 * PAGE_SIZE, PAGE_SIZE).unwrap();
        let list = a.alloc(PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(build(&buf, 0, 512, &list, &mut 0).unwrap(), (buf.iova(), 0));
        assert_eq!(build(&buf, 0, PAGE_SIZE, &list, &mut 0).unwrap(), (buf.iova(), 0));
        assert_eq!(build(&buf, 0, 2 * PAGE_SIZE, &list, &mut 0).unwrap(), (buf.iova(), buf.iova() + PAGE_SIZE as u64));
        // 1 KiB before a page boundary + 4 KiB: two pages, PRP2 page aligned.
        let (p1, p2) = build(&buf, 3072, PAGE_SIZE, &list, &mut 0).unwrap();
        assert_eq!((p1, p2), (buf.iova() + 3072, buf.iova() + PAGE_SIZE as u64));
    }

    #[test]
    fn long_transfers_use_a_list_of_page_addresses() {
        let a = alloc();
        let buf = a.alloc(64 << 10, PAGE_SIZE).unwrap();
        let list = a.alloc(PAGE_SIZE, PAGE_SIZE).unwrap();
        let (p1, p2) = build(&buf, 0, 64 << 10, &list, &mut 0).unwrap();
        assert_eq!(p1, buf.iova());
        assert_eq!(p2, list.iova());
        for i in 0..15 {
            assert_eq!(list.read_obj::<u64>(i * 8), buf.iova() + ((i + 1) * PAGE_SIZE) as u64);
        }
    }

    #[test]
    fn a_shorter_list_zeroes_the_entries_of_a_longer_one() {
        let a = alloc();
        let buf = a.alloc(64 << 10, PAGE_SIZE).unwrap();
        let other = a.alloc(64 << 10, PAGE_SIZE).unwrap();
        let list = a.alloc(PAGE_SIZE, PAGE_SIZE).unwrap();
        let mut written = 0;
        build(&other, 0, 64 << 10, &list, &mut written).unwrap();
        assert_eq!(written, 15);
        // 12 KiB: PRP1 + 2 list entries; the 13 entries after them pointed into `other`.
        let (_, p2) = build(&buf, 0, 12 << 10, &list, &mut written).unwrap();
        assert_eq!((p2, written), (list.iova(), 2));
        assert_eq!(list.read_obj::<u64>(8), buf.iova() + 2 * PAGE_SIZE as u64);
        for i in 2..LIST_ENTRIES {
            assert_eq!(list.read_obj::<u64>(i * 8), 0, "entry {i} is not left over");
        }
        // Two pages need no list: the page keeps its (now unreachable) entries and count.
        build(&buf, 0, 8 << 10, &list, &mut written).unwrap();
        assert_eq!(written, 2);
    }

    #[test]
    fn too_long_or_misaligned_is_rejected() {
        let a = alloc();
        let buf = a.alloc(4 << 20, PAGE_SIZE).unwrap();
        let list = a.alloc(PAGE_SIZE, PAGE_SIZE).unwrap();
        assert!(build(&buf, 0, MAX_TRANSFER, &list, &mut 0).is_ok());
        assert!(matches!(build(&buf, 0, MAX_TRANSFER + PAGE_SIZE, &list, &mut 0), Err(Error::TransferTooLarge { .. })));
        assert!(build(&buf, 2, 512, &list, &mut 0).is_err());
        assert!(build(&buf, 0, (4 << 20) + 1, &list, &mut 0).is_err());
    }
}
