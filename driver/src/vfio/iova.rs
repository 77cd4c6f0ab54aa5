//! IOVA allocation for IOMMU mode.
//!
//! The device's IO virtual addresses must lie inside the IOMMU's usable ranges: an Intel IOMMU
//! with 39 address bits (QEMU's `intel-iommu` default, many client CPUs) cannot map the
//! 47-bit user-space addresses that `mmap` returns, so IOVA = VA fails with EINVAL. IOVAs are
//! therefore allocated from the ranges VFIO_IOMMU_GET_INFO reports (its IOVA-range capability),
//! first fit, aligned to the mapping's page size, and given back on unmap.

use std::sync::Mutex;

/// Below this the allocator hands out nothing (keeps 0 and the first pages unused).
const IOVA_FLOOR: u64 = 2 << 20;
/// Used when the kernel reports no ranges: the smallest x86 IOMMU width (39 bits) minus the
/// MSI window.
pub const FALLBACK_RANGES: [(u64, u64); 2] = [(0, 0xfedf_ffff), (0xfef0_0000, (1 << 39) - 1)];

/// Free IOVA space: sorted, non-overlapping `(start, end_exclusive)` ranges.
pub struct IovaSpace {
    free: Mutex<Vec<(u64, u64)>>,
}

impl IovaSpace {
    /// From inclusive `(start, last)` usable ranges, as VFIO reports them.
    pub fn new(ranges: &[(u64, u64)]) -> IovaSpace {
        let mut free: Vec<(u64, u64)> = ranges
            .iter()
            .filter_map(|&(s, last)| {
                let s = s.max(IOVA_FLOOR);
                let e = last.saturating_add(1);
                (e > s).then_some((s, e))
            })
            .collect();
        free.sort_unstable();
        IovaSpace { free: Mutex::new(free) }
    }

    /// Allocate `len` bytes aligned to `align` (a power of two).
    pub fn alloc(&self, len: u64, align: u64) -> Option<u64> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        for i in 0..free.len() {
            let (s, e) = free[i];
            let a = s.checked_next_multiple_of(align)?;
            let Some(end) = a.checked_add(len) else { continue };
            if end > e {
                continue;
            }
            // Split (s, e) into (s, a) and (end, e).
            let mut repl = Vec::with_capacity(2);
            if a > s {
                repl.push((s, a));
            }
            if end < e {
                repl.push((end, e));
            }
            free.splice(i..=i, repl);
            return Some(a);
        }
        None
    }

    /// Give back `[iova, iova + len)`, merging with its neighbours.
    pub fn free(&self, iova: u64, len: u64) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let end = iova + len;
        let i = free.partition_point(|&(s, _)| s < iova);
        free.insert(i, (iova, end));
        if i + 1 < free.len() && free[i + 1].0 == end {
            free[i].1 = free[i + 1].1;
            free.remove(i + 1);
        }
        if i > 0 && free[i - 1].1 == iova {
            free[i - 1].1 = free[i].1;
            free.remove(i);
        }
    }

    #[cfg(test)]
    fn ranges(&self) -> Vec<(u64, u64)> {
        self.free.lock().unwrap().clone()
    }
}

/// Parse the reply of VFIO_IOMMU_GET_INFO (`struct vfio_iommu_type1_info` and its capability
/// chain) into inclusive IOVA ranges; empty when there is no IOVA-range capability.
pub fn parse_iova_ranges(buf: &[u8]) -> Vec<(u64, u64)> {
    const VFIO_IOMMU_INFO_CAPS: u32 = 1 << 1;
    const CAP_IOVA_RANGE: u16 = 1;
    let u16_at = |o: usize| buf.get(o..o + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |o: usize| buf.get(o..o + 4).map(|b| u32::from_ne_bytes(b.try_into().unwrap()));
    let u64_at = |o: usize| buf.get(o..o + 8).map(|b| u64::from_ne_bytes(b.try_into().unwrap()));
    let mut out = Vec::new();
    let Some(flags) = u32_at(4) else { return out };
    if flags & VFIO_IOMMU_INFO_CAPS == 0 {
        return out;
    }
    let mut off = u32_at(16).unwrap_or(0) as usize;
    let mut hops = 0;
    while off != 0 && hops < 64 {
        hops += 1;
        let (Some(id), Some(next)) = (u16_at(off), u32_at(off + 4)) else { break };
        if id == CAP_IOVA_RANGE {
            let n = u32_at(off + 8).unwrap_or(0) as usize;
            for k in 0..n.min(1024) {
                let r = off + 16 + k * 16;
                if let (Some(s), Some(e)) = (u64_at(r), u64_at(r + 8)) {
                    out.push((s, e));
                }
            }
        }
        off = next as usize;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    const M2: u64 = 2 << 20;

    #[test]
    fn first_fit_aligned_and_merged_on_free() {
        let sp = IovaSpace::new(&[(0, (1 << 30) - 1)]);
        let a = sp.alloc(M2, M2).unwrap();
        assert_eq!(a, M2);
        let b = sp.alloc(3 * M2, M2).unwrap();
        assert_eq!(b, 2 * M2);
        let c = sp.alloc(M2, M2).unwrap();
        assert_eq!(c, 5 * M2);
        sp.free(b, 3 * M2);
        assert_eq!(sp.alloc(2 * M2, M2).unwrap(), 2 * M2);
        sp.free(2 * M2, 2 * M2);
        sp.free(a, M2);
        sp.free(c, M2);
        assert_eq!(sp.ranges(), vec![(M2, 1 << 30)]);
    }

    #[test]
    fn respects_ranges_and_exhaustion() {
        let sp = IovaSpace::new(&FALLBACK_RANGES);
        // Everything stays under 2^39 and outside the MSI window.
        let mut got = Vec::new();
        for _ in 0..3 {
            let len = 1 << 30;
            let a = sp.alloc(len, M2).unwrap();
            assert!(a + len <= 1 << 39);
            assert!(a + len <= 0xfee0_0000 || a >= 0xfef0_0000);
            got.push(a);
        }
        assert!(sp.alloc(1 << 40, M2).is_none());
        let tiny = IovaSpace::new(&[(0, 4 * M2 - 1)]);
        assert!(tiny.alloc(2 * M2, 2 * M2).is_some());
        assert!(tiny.alloc(2 * M2, 2 * M2).is_none());
    }

    #[test]
    fn iova_range_capability_is_parsed() {
        let mut b = vec![0u8; 40];
        b[0..4].copy_from_slice(&72u32.to_ne_bytes());
        b[4..8].copy_from_slice(&3u32.to_ne_bytes()); // PGSIZES | CAPS
        b[16..20].copy_from_slice(&24u32.to_ne_bytes()); // cap_offset
        b[24..26].copy_from_slice(&1u16.to_ne_bytes()); // id IOVA_RANGE
        b[28..32].copy_from_slice(&0u32.to_ne_bytes()); // next
        b[32..36].copy_from_slice(&2u32.to_ne_bytes()); // nr_iovas
        b.extend_from_slice(&0u64.to_ne_bytes());
        b.extend_from_slice(&0xfedf_ffffu64.to_ne_bytes());
        b.extend_from_slice(&0xfef0_0000u64.to_ne_bytes());
        b.extend_from_slice(&((1u64 << 39) - 1).to_ne_bytes());
        assert_eq!(parse_iova_ranges(&b), vec![(0, 0xfedf_ffff), (0xfef0_0000, (1 << 39) - 1)]);
        b[4..8].copy_from_slice(&1u32.to_ne_bytes());
        assert!(parse_iova_ranges(&b).is_empty());
    }
}
