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

/// The skip log: `$NVMF_SKIP_LOG`, or `target/skipped-tests.txt` of this workspace.
pub fn skip_log_path() -> std::path::PathBuf {
    match std::env::var_os("NVMF_SKIP_LOG") {
        Some(p) => p.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/skipped-tests.txt"),
    }
}

/// The calling test cannot run on this machine (no root, no hugepages, ...): say so and why.
/// libtest has no run-time skip, so the test returns after this and shows as passed; the line
/// this appends to the skip log (`test name: reason`) is what keeps it from being mistaken for
/// one that ran: `.ci/run` prints the log and its count after the tests.
pub fn skip(reason: &str) {
    let name = std::thread::current().name().unwrap_or("<unnamed test>").to_string();
    eprintln!("SKIPPED: {name}: {reason}");
    let line = format!("{name}: {reason}\n");
    let path = skip_log_path();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        eprintln!("SKIPPED (not recorded in {}: {e})", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_appends_the_test_name_and_reason_to_the_log() {
        let dir = std::env::temp_dir().join(format!("nvmf-skip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips.txt");
        // The environment is process-wide; no other test of this crate reads it.
        std::env::set_var("NVMF_SKIP_LOG", &log);
        skip("no hugepages reserved");
        std::env::remove_var("NVMF_SKIP_LOG");
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text, "tests::skip_appends_the_test_name_and_reason_to_the_log: no hugepages reserved\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
