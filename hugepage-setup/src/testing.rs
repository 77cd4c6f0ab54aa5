//! A fake sysfs/procfs tree in a temporary directory, for the unit and integration tests.
//! Not part of the supported API.

use crate::sysfs::Sysfs;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A temporary root directory, removed on drop.
pub struct FakeTree {
    root: PathBuf,
}

impl Default for FakeTree {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeTree {
    /// An empty tree with the files every command expects: `/proc/mounts`, `/proc/swaps`,
    /// `/proc/meminfo`, `/proc/sys/vm/nr_hugepages`, `/sys/bus/pci/drivers_probe`.
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "hugepage-setup-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create temp root");
        let t = FakeTree { root };
        t.file("/proc/mounts", "proc /proc proc rw,nosuid 0 0\n/dev/vda1 / ext4 rw,relatime 0 0\n");
        t.file("/proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
        t.meminfo(0, 0);
        t.file("/proc/sys/vm/nr_hugepages", "0\n");
        t.file("/sys/bus/pci/drivers_probe", "");
        t.file("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "N\n");
        t.dir("/sys/kernel/iommu_groups");
        t
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn sysfs(&self) -> Sysfs {
        Sysfs::new(&self.root)
    }

    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Create (or replace) a regular file, with its parent directories.
    pub fn file(&self, abs: &str, content: &str) {
        let p = self.path(abs);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    pub fn dir(&self, abs: &str) {
        fs::create_dir_all(self.path(abs)).unwrap();
    }

    /// Create a symlink at `abs` pointing to `target` (taken literally).
    pub fn symlink(&self, abs: &str, target: &str) {
        let p = self.path(abs);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&p);
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    pub fn read(&self, abs: &str) -> String {
        fs::read_to_string(self.path(abs)).unwrap_or_else(|e| panic!("{abs}: {e}"))
    }

    pub fn exists(&self, abs: &str) -> bool {
        fs::symlink_metadata(self.path(abs)).is_ok()
    }

    /// A PCI driver directory with `bind` and `unbind` files.
    pub fn driver(&self, name: &str) {
        self.file(&format!("/sys/bus/pci/drivers/{name}/bind"), "");
        self.file(&format!("/sys/bus/pci/drivers/{name}/unbind"), "");
    }

    /// A PCI function of class `class` (e.g. "0x010802"), bound to `driver` when given, in
    /// IOMMU group `group` when given.
    pub fn pci_device(&self, bdf: &str, class: &str, driver: Option<&str>, group: Option<u32>) {
        let d = format!("/sys/bus/pci/devices/{bdf}");
        self.file(&format!("{d}/class"), &format!("{class}\n"));
        self.file(&format!("{d}/vendor"), "0x8086\n");
        self.file(&format!("{d}/device"), "0x0a54\n");
        self.file(&format!("{d}/numa_node"), "0\n");
        self.file(&format!("{d}/driver_override"), "(null)\n");
        if let Some(drv) = driver {
            self.driver(drv);
            self.symlink(&format!("{d}/driver"), &format!("../../../../bus/pci/drivers/{drv}"));
        }
        if let Some(g) = group {
            self.dir(&format!("/sys/kernel/iommu_groups/{g}/devices"));
            self.symlink(&format!("{d}/iommu_group"), &format!("../../../../kernel/iommu_groups/{g}"));
        }
    }

    /// An NVMe controller bound to `nvme` with controller `nvme{ctrl}` and namespace block
    /// devices `nvme{ctrl}n{ns}` for each of `namespaces`.
    pub fn nvme(&self, bdf: &str, ctrl: u32, namespaces: &[u32], group: Option<u32>) {
        self.pci_device(bdf, "0x010802", Some("nvme"), group);
        for ns in namespaces {
            self.dir(&format!("/sys/bus/pci/devices/{bdf}/nvme/nvme{ctrl}/nvme{ctrl}n{ns}/holders"));
        }
        self.file(&format!("/sys/bus/pci/devices/{bdf}/nvme/nvme{ctrl}/dev"), "243:0\n");
    }

    /// Hugepages of 2048 kB on NUMA node `node`.
    pub fn hugepage_node(&self, node: u32, nr: u64, free: u64) {
        let d = format!("/sys/devices/system/node/node{node}/hugepages/hugepages-2048kB");
        self.file(&format!("{d}/nr_hugepages"), &format!("{nr}\n"));
        self.file(&format!("{d}/free_hugepages"), &format!("{free}\n"));
    }

    pub fn meminfo(&self, total: u64, free: u64) {
        self.file(
            "/proc/meminfo",
            &format!(
                "MemTotal:       16384000 kB\nMemFree:         8000000 kB\nHugePages_Total:   {total}\n\
                 HugePages_Free:    {free}\nHugePages_Rsvd:        0\nHugePages_Surp:        0\n\
                 Hugepagesize:       2048 kB\nHugetlb:         {} kB\n",
                total * 2048
            ),
        );
    }
}

impl Drop for FakeTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}
