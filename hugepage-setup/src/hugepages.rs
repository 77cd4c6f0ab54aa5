//! Hugepages: `/proc/meminfo`, the global pool (`/proc/sys/vm/nr_hugepages`) and the per-NUMA-node
//! pools (`/sys/devices/system/node/nodeN/hugepages/hugepages-<size>kB/{nr,free}_hugepages`).

use crate::sysfs::Sysfs;
use crate::{Error, Result};

/// The page size this tool reserves: 2 MiB.
pub const HUGEPAGE_KB: u64 = 2048;

/// Global pool of the default hugepage size.
pub const GLOBAL_NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";
/// Global pool of 2 MiB pages when the default size is something else.
pub const GLOBAL_NR_2M: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
pub const NODE_DIR: &str = "/sys/devices/system/node";

/// Hugepage lines of `/proc/meminfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meminfo {
    pub total: u64,
    pub free: u64,
    pub reserved: u64,
    pub surplus: u64,
    /// Default hugepage size (`Hugepagesize`) in kB.
    pub size_kb: u64,
}

/// Parse the hugepage lines of `/proc/meminfo`; absent lines read as 0.
pub fn parse_meminfo(text: &str) -> Meminfo {
    let mut m = Meminfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let v = rest.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match key.trim() {
            "HugePages_Total" => m.total = v,
            "HugePages_Free" => m.free = v,
            "HugePages_Rsvd" => m.reserved = v,
            "HugePages_Surp" => m.surplus = v,
            "Hugepagesize" => m.size_kb = v,
            _ => {}
        }
    }
    m
}

/// `/proc/meminfo` of the system under `sys`; `None` when it is missing.
pub fn meminfo(sys: &Sysfs) -> Result<Option<Meminfo>> {
    Ok(sys.read_opt("/proc/meminfo")?.map(|s| parse_meminfo(&s)))
}

/// One per-node pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePool {
    pub node: u32,
    pub size_kb: u64,
    pub nr: u64,
    pub free: u64,
}

/// NUMA node numbers present under `/sys/devices/system/node`, sorted.
pub fn nodes(sys: &Sysfs) -> Result<Vec<u32>> {
    let mut v: Vec<u32> = sys.list(NODE_DIR)?.iter().filter_map(|n| n.strip_prefix("node")?.parse().ok()).collect();
    v.sort_unstable();
    Ok(v)
}

fn node_pool_dir(node: u32, size_kb: u64) -> String {
    format!("{NODE_DIR}/node{node}/hugepages/hugepages-{size_kb}kB")
}

/// All per-node pools (every page size the kernel lists), by node then size.
pub fn node_pools(sys: &Sysfs) -> Result<Vec<NodePool>> {
    let mut out = Vec::new();
    for node in nodes(sys)? {
        let mut sizes: Vec<u64> = sys
            .list(format!("{NODE_DIR}/node{node}/hugepages"))?
            .iter()
            .filter_map(|n| n.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok())
            .collect();
        sizes.sort_unstable();
        for size_kb in sizes {
            let d = node_pool_dir(node, size_kb);
            out.push(NodePool {
                node,
                size_kb,
                nr: sys.read_u64_opt(format!("{d}/nr_hugepages"))?.unwrap_or(0),
                free: sys.read_u64_opt(format!("{d}/free_hugepages"))?.unwrap_or(0),
            });
        }
    }
    Ok(out)
}

/// Number of 2 MiB pages that hold `mb` MiB (rounded up).
pub fn pages_for_mb(mb: u64) -> u64 {
    mb.div_ceil(HUGEPAGE_KB / 1024)
}

/// The file that sets the global number of 2 MiB pages: `/proc/sys/vm/nr_hugepages` unless the
/// default hugepage size is not 2 MiB.
pub fn global_nr_path(sys: &Sysfs) -> Result<&'static str> {
    let size = meminfo(sys)?.map(|m| m.size_kb).unwrap_or(0);
    Ok(if size == 0 || size == HUGEPAGE_KB || !sys.exists(GLOBAL_NR_2M) { GLOBAL_NR_HUGEPAGES } else { GLOBAL_NR_2M })
}

/// The outcome of setting one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolChange {
    /// The file written.
    pub path: String,
    pub requested: u64,
    /// What the kernel reports afterwards (it may allocate fewer when memory is fragmented).
    pub allocated: u64,
}

fn set_pool(sys: &Sysfs, path: &str, pages: u64) -> Result<PoolChange> {
    sys.write(path, &format!("{pages}\n"))?;
    let allocated = sys.read_u64(path)?;
    Ok(PoolChange { path: path.to_string(), requested: pages, allocated })
}

/// Reserve `pages` 2 MiB pages: in the global pool when `nodes` is empty (the kernel spreads
/// them over the nodes), else `pages` on each listed node.
pub fn reserve(sys: &Sysfs, pages: u64, nodes_wanted: &[u32]) -> Result<Vec<PoolChange>> {
    if nodes_wanted.is_empty() {
        return Ok(vec![set_pool(sys, global_nr_path(sys)?, pages)?]);
    }
    let present = nodes(sys)?;
    if let Some(&missing) = nodes_wanted.iter().find(|n| !present.contains(n)) {
        return Err(Error::NoSuchNode(missing));
    }
    nodes_wanted
        .iter()
        .map(|&n| set_pool(sys, &format!("{}/nr_hugepages", node_pool_dir(n, HUGEPAGE_KB)), pages))
        .collect()
}

/// Release every 2 MiB page: each node's pool and the global pool set to 0.
pub fn clear(sys: &Sysfs) -> Result<Vec<PoolChange>> {
    let mut out = Vec::new();
    for n in nodes(sys)? {
        let p = format!("{}/nr_hugepages", node_pool_dir(n, HUGEPAGE_KB));
        if sys.exists(&p) {
            out.push(set_pool(sys, &p, 0)?);
        }
    }
    let g = global_nr_path(sys)?;
    if sys.exists(g) {
        out.push(set_pool(sys, g, 0)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTree;

    #[test]
    fn meminfo_parsing() {
        let m = parse_meminfo(
            "MemTotal: 100 kB\nHugePages_Total:    1024\nHugePages_Free:     1000\nHugePages_Rsvd:        3\n\
             HugePages_Surp:        1\nHugepagesize:       2048 kB\n",
        );
        assert_eq!(m, Meminfo { total: 1024, free: 1000, reserved: 3, surplus: 1, size_kb: 2048 });
        assert_eq!(parse_meminfo(""), Meminfo::default());
    }

    #[test]
    fn page_counts() {
        assert_eq!(pages_for_mb(2048), 1024);
        assert_eq!(pages_for_mb(3), 2);
        assert_eq!(pages_for_mb(0), 0);
    }

    #[test]
    fn per_node_pools() {
        let t = FakeTree::new();
        t.hugepage_node(0, 512, 500);
        t.hugepage_node(1, 256, 256);
        t.file("/sys/devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages", "2\n");
        t.file("/sys/devices/system/node/node1/hugepages/hugepages-1048576kB/free_hugepages", "1\n");
        t.dir("/sys/devices/system/node/possible_not_a_node");
        let s = t.sysfs();
        assert_eq!(nodes(&s).unwrap(), vec![0, 1]);
        let p = node_pools(&s).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0], NodePool { node: 0, size_kb: 2048, nr: 512, free: 500 });
        assert_eq!(p[2], NodePool { node: 1, size_kb: 1048576, nr: 2, free: 1 });
    }

    #[test]
    fn reserve_global_and_per_node() {
        let t = FakeTree::new();
        t.hugepage_node(0, 0, 0);
        t.hugepage_node(1, 0, 0);
        let s = t.sysfs();
        let c = reserve(&s, 1024, &[]).unwrap();
        assert_eq!(c, vec![PoolChange { path: GLOBAL_NR_HUGEPAGES.into(), requested: 1024, allocated: 1024 }]);
        assert_eq!(t.read("/proc/sys/vm/nr_hugepages"), "1024\n");

        reserve(&s, 64, &[1]).unwrap();
        assert_eq!(t.read("/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages"), "64\n");
        assert_eq!(t.read("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"), "0\n");
        assert!(matches!(reserve(&s, 64, &[0, 3]), Err(Error::NoSuchNode(3))));

        let c = clear(&s).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(t.read("/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages"), "0\n");
        assert_eq!(t.read("/proc/sys/vm/nr_hugepages"), "0\n");
    }

    #[test]
    fn non_2m_default_size_uses_the_sized_pool() {
        let t = FakeTree::new();
        t.file("/proc/meminfo", "HugePages_Total: 0\nHugepagesize: 524288 kB\n");
        t.file(GLOBAL_NR_2M, "0\n");
        let s = t.sysfs();
        assert_eq!(global_nr_path(&s).unwrap(), GLOBAL_NR_2M);
        reserve(&s, 8, &[]).unwrap();
        assert_eq!(t.read(GLOBAL_NR_2M), "8\n");
        assert_eq!(t.read(GLOBAL_NR_HUGEPAGES), "0\n");
    }
}
