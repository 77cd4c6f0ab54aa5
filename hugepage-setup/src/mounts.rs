//! `/proc/mounts` and `/proc/swaps`.

use crate::sysfs::Sysfs;
use crate::Result;

/// One line of `/proc/mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: String,
}

/// Undo the octal escapes the kernel uses for spaces, tabs, newlines and backslashes.
pub fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            if v <= 0xff {
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse the contents of `/proc/mounts` (fstab format). Malformed lines are skipped.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(Mount {
                source: unescape(f.next()?),
                target: unescape(f.next()?),
                fstype: f.next()?.to_string(),
                options: f.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The mounts of the system under `sys`; empty when `/proc/mounts` is missing.
pub fn mounts(sys: &Sysfs) -> Result<Vec<Mount>> {
    Ok(sys.read_opt("/proc/mounts")?.map(|s| parse_mounts(&s)).unwrap_or_default())
}

/// Mount points of hugetlbfs file systems.
pub fn hugetlbfs_mounts(mounts: &[Mount]) -> Vec<&Mount> {
    mounts.iter().filter(|m| m.fstype == "hugetlbfs").collect()
}

/// Parse `/proc/swaps`: the file names of active swap areas (header skipped).
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(unescape).collect()
}

/// Active swap areas of the system under `sys`.
pub fn swaps(sys: &Sysfs) -> Result<Vec<String>> {
    Ok(sys.read_opt("/proc/swaps")?.map(|s| parse_swaps(&s)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTree;

    #[test]
    fn parses_mounts_with_escapes() {
        let m = parse_mounts(
            "sysfs /sys sysfs rw 0 0\n/dev/nvme0n1p2 /mnt/my\\040disk ext4 rw,relatime 0 0\n\
             hugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\nbroken\n",
        );
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].source, "/dev/nvme0n1p2");
        assert_eq!(m[1].target, "/mnt/my disk");
        assert_eq!(m[1].fstype, "ext4");
        let h = hugetlbfs_mounts(&m);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].target, "/dev/hugepages");
        assert_eq!(h[0].options, "rw,pagesize=2M");
    }

    #[test]
    fn unescape_edge_cases() {
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("tab\\011x"), "tab\tx");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
        assert_eq!(unescape("\\999"), "\\999");
    }

    #[test]
    fn parses_swaps() {
        let s = parse_swaps(
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/nvme1n1p3  partition\t8388604\t\t0\t\t-2\n/swapfile file 1024 0 -3\n",
        );
        assert_eq!(s, vec!["/dev/nvme1n1p3", "/swapfile"]);
        assert!(parse_swaps("Filename Type Size Used Priority\n").is_empty());
    }

    #[test]
    fn reads_from_the_root() {
        let t = FakeTree::new();
        t.file("/proc/mounts", "none /dev/hugepages hugetlbfs rw 0 0\n");
        t.file("/proc/swaps", "Filename Type\n/dev/sdb1 partition 1 0 -2\n");
        let s = t.sysfs();
        assert_eq!(hugetlbfs_mounts(&mounts(&s).unwrap()).len(), 1);
        assert_eq!(swaps(&s).unwrap(), vec!["/dev/sdb1"]);
        std::fs::remove_file(t.path("/proc/swaps")).unwrap();
        assert!(swaps(&s).unwrap().is_empty());
    }
}
