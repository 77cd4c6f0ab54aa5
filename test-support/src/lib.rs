//! Helpers shared by the tests, fuzz harnesses and check tools of every crate in the
//! workspace. The crate depends on nothing (the driver, the lowest crate, uses it), so anything
//! that needs `nvmf` or driver types stays in those crates.
#![forbid(unsafe_code)]

/// Deterministic contents for block `lba` written by `seed`: an xorshift stream keyed by both,
/// so data written to the wrong block or by another writer (seed) never compares equal.
pub fn pattern(seed: u64, lba: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill_pattern(&mut v, seed, lba);
    v
}

/// [`pattern`] into a caller's buffer (no allocation).
pub fn fill_pattern(buf: &mut [u8], seed: u64, lba: u64) {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ lba.wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ 0x1234_5678;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_keyed_by_seed_and_block() {
        assert_eq!(pattern(1, 2, 4096), pattern(1, 2, 4096));
        assert_ne!(pattern(1, 2, 4096), pattern(2, 2, 4096));
        assert_ne!(pattern(1, 2, 4096), pattern(1, 3, 4096));
        assert_eq!(&pattern(5, 0, 4096)[..512], &pattern(5, 0, 512)[..]);
        assert!(pattern(7, 7, 4096).iter().any(|&b| b != 0));
        let mut b = vec![0u8; 100];
        fill_pattern(&mut b, 9, 1);
        assert_eq!(b, pattern(9, 1, 100));
    }
}
