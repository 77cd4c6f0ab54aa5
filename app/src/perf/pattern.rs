//! The --verify data pattern: every 8-byte word derives from (nsid, LBA of the I/O, write
//! generation, word index), so a misplaced, stale or torn block is caught.

#[inline]
fn word(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn seed(nsid: u32, lba: u64, gen: u32) -> u64 {
    (lba << 16) ^ ((nsid as u64) << 56) ^ ((gen as u64) << 1) ^ 0x5a5a
}

pub fn fill(buf: &mut [u8], nsid: u32, lba: u64, gen: u32) {
    let s = seed(nsid, lba, gen);
    for (i, c) in buf.chunks_mut(8).enumerate() {
        let w = word(s, i as u64).to_le_bytes();
        c.copy_from_slice(&w[..c.len()]);
    }
}

pub fn check(buf: &[u8], nsid: u32, lba: u64, gen: u32) -> bool {
    let s = seed(nsid, lba, gen);
    !buf.is_empty() && buf.chunks(8).enumerate().all(|(i, c)| c == &word(s, i as u64).to_le_bytes()[..c.len()])
}

#[cfg(test)]
mod tests {
    #[test]
    fn roundtrip() {
        let mut b = vec![0u8; 4096];
        super::fill(&mut b, 1, 8, 3);
        assert!(super::check(&b, 1, 8, 3));
        assert!(!super::check(&b, 1, 8, 4));
        assert!(!super::check(&b, 1, 16, 3));
    }
}
