//! DMA memory: allocation, pools, the emulator's bounds-checked access, hugepages and the
//! no-IOMMU physical address lookup.

#![forbid(unsafe_code)]

use nvme_driver::dma::{pagemap::Pagemap, DmaAllocator, DmaBacking, IdentityMapper, PagemapMapper, PAGE_SIZE};
use nvme_driver::Error;
use std::sync::Arc;

fn anon() -> (Arc<IdentityMapper>, DmaAllocator) {
    let m = Arc::new(IdentityMapper::new());
    (m.clone(), DmaAllocator::new(m, DmaBacking::Anonymous))
}

#[test]
fn allocations_are_zeroed_aligned_and_disjoint() {
    let (_m, a) = anon();
    let x = a.alloc(100, 64).unwrap();
    let y = a.alloc(5000, 4096).unwrap();
    let big = a.alloc(3 << 20, 4096).unwrap();
    assert_eq!(y.iova() % 4096, 0);
    assert_eq!(x.iova() % 64, 0);
    assert!(y.iova() >= x.iova() + 100 || y.iova() + 5000 <= x.iova());
    assert!(x.as_slice().iter().all(|&b| b == 0));
    assert!(big.as_slice().iter().all(|&b| b == 0));
    x.write(10, b"abc");
    let mut out = [0u8; 3];
    x.read(10, &mut out);
    assert_eq!(&out, b"abc");
    assert!(a.alloc(0, 8).is_err());
    assert!(a.alloc(8, 3).is_err());
}

#[test]
fn pool_hands_out_each_buffer_once_and_takes_it_back() {
    let (_m, a) = anon();
    let pool = a.alloc_pool(512, 3).unwrap();
    let b1 = pool.get().unwrap();
    let b2 = pool.get().unwrap();
    let b3 = pool.get().unwrap();
    assert!(pool.get().is_none());
    assert_eq!(b1.len(), 512);
    let mut iovas = vec![b1.iova(), b2.iova(), b3.iova()];
    iovas.sort();
    iovas.dedup();
    assert_eq!(iovas.len(), 3);
    assert!(iovas.iter().all(|i| i % PAGE_SIZE as u64 == 0));
    drop(b2);
    assert_eq!(pool.available(), 1);
    assert!(pool.get().is_some());
}

#[test]
fn emulator_access_outside_live_memory_faults() {
    let (m, a) = anon();
    let r = a.alloc(3 << 20, 4096).unwrap();
    let iova = r.iova();
    m.write(iova + 8, &[1, 2, 3]).unwrap();
    let mut b = [0u8; 3];
    r.read(8, &mut b);
    assert_eq!(b, [1, 2, 3]);
    assert!(m.read(0x10, &mut b).is_err());
    assert!(m.write(u64::MAX - 1, &[0; 4]).is_err());
    drop(r);
    assert!(m.read(iova, &mut b).is_err(), "freed memory must not be reachable");
}

#[test]
fn hugepage_allocation_works_or_names_the_fix() {
    let a = DmaAllocator::new(Arc::new(IdentityMapper::new()), DmaBacking::Hugepages);
    match a.alloc(4096, 4096) {
        Ok(r) => {
            r.write(0, &[7; 16]);
            assert_eq!(r.as_slice()[..16], [7; 16]);
            let pool = a.alloc_pool(64 << 10, 8).unwrap();
            assert_eq!(pool.capacity(), 8);
        }
        Err(e) => {
            assert!(matches!(e, Error::NoHugepages { .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.contains("hugepage-setup config --hugemem 256"), "{msg}");
            assert!(msg.contains("/proc/sys/vm/nr_hugepages"), "{msg}");
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

#[test]
fn no_iommu_translation_matches_pagemap() {
    if !is_root() {
        nvmf_test_support::skip("physical addresses need root");
        return;
    }
    let mapper = match PagemapMapper::new() {
        Ok(m) => m,
        Err(e) => {
            nvmf_test_support::skip(&format!("no pagemap: {e}"));
            return;
        }
    };
    let a = DmaAllocator::new(Arc::new(mapper), DmaBacking::PreferHugepages);
    let r = a.alloc(3 << 20, 4096).unwrap();
    let pm = Pagemap::open().unwrap();
    for off in [0usize, 4096, 8192 + 100, (2 << 20) + 12] {
        assert_eq!(r.iova_at(off), pm.phys(r.as_ptr() as usize + off).unwrap(), "offset {off}");
    }
}
