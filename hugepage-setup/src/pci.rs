//! NVMe PCI functions under `/sys/bus/pci/devices`: discovery, usage checks and driver binding
//! through `driver_override`, `driver/unbind` and `drivers_probe`.

use crate::mounts::Mount;
use crate::sysfs::Sysfs;
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// PCI class code of an NVM Express controller (mass storage, non-volatile memory, NVMe).
pub const NVME_CLASS: u32 = 0x01_08_02;
pub const DEVICES: &str = "/sys/bus/pci/devices";
pub const DRIVERS: &str = "/sys/bus/pci/drivers";
pub const DRIVERS_PROBE: &str = "/sys/bus/pci/drivers_probe";
pub const VFIO_PCI: &str = "vfio-pci";
pub const IOMMU_GROUPS: &str = "/sys/kernel/iommu_groups";

/// A PCI address, domain:bus:device.function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

impl FromStr for Bdf {
    type Err = Error;
    /// `DDDD:BB:DD.F`, or `BB:DD.F` for domain 0.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidBdf(s.to_string());
        let s = s.trim();
        let (rest, func) = s.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (dom, bus, dev) = match parts.as_slice() {
            [d, b, v] => (*d, *b, *v),
            [b, v] => ("0", *b, *v),
            _ => return Err(bad()),
        };
        let hex = |t: &str, max_len: usize| -> Result<u32> {
            if t.is_empty() || t.len() > max_len || !t.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(t, 16).map_err(|_| bad())
        };
        let bdf = Bdf {
            domain: hex(dom, 8)?,
            bus: hex(bus, 2)? as u8,
            device: hex(dev, 2)? as u8,
            function: hex(func, 1)? as u8,
        };
        if bdf.device > 0x1f || bdf.function > 7 {
            return Err(bad());
        }
        Ok(bdf)
    }
}

/// Parse a comma or space separated list of addresses.
pub fn parse_bdf_list(s: &str) -> Result<Vec<Bdf>> {
    s.split(|c: char| c == ',' || c.is_whitespace()).filter(|t| !t.is_empty()).map(str::parse).collect()
}

/// A namespace block device of a controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockDevice {
    /// Block device name, e.g. `nvme0n1` (the multipath head for `nvme0c0n1` entries).
    pub name: String,
    /// Its directory: `/sys/class/block/<name>` when present, else the entry under the controller.
    pub sysfs_dir: String,
}

/// An NVMe PCI function and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvmeDevice {
    pub bdf: Bdf,
    pub vendor: Option<String>,
    pub device: Option<String>,
    pub numa_node: Option<i64>,
    /// The bound driver (`nvme`, `vfio-pci`, ...), `None` when unbound.
    pub driver: Option<String>,
    /// `driver_override`, `None` when unset.
    pub driver_override: Option<String>,
    /// IOMMU group number, `None` without an IOMMU.
    pub iommu_group: Option<String>,
    pub block_devices: Vec<BlockDevice>,
    /// Why the device must not be taken from the kernel; empty when it is unused.
    pub in_use: Vec<String>,
}

impl NvmeDevice {
    pub fn dir(&self) -> String {
        device_dir(self.bdf)
    }
    pub fn is_in_use(&self) -> bool {
        !self.in_use.is_empty()
    }
    pub fn is_bound_to(&self, driver: &str) -> bool {
        self.driver.as_deref() == Some(driver)
    }
}

pub fn device_dir(bdf: Bdf) -> String {
    format!("{DEVICES}/{bdf}")
}

/// PCI class of a device, `None` when the device or its class file is missing.
pub fn class(sys: &Sysfs, bdf: Bdf) -> Result<Option<u32>> {
    let p = format!("{}/class", device_dir(bdf));
    match sys.read_opt(&p)? {
        None => Ok(None),
        Some(s) => u32::from_str_radix(s.trim_start_matches("0x"), 16).map(Some).map_err(|_| Error::Parse {
            path: sys.path(&p),
            what: "a PCI class",
            content: s,
        }),
    }
}

/// Every PCI function under `/sys/bus/pci/devices`, sorted.
pub fn all_bdfs(sys: &Sysfs) -> Result<Vec<Bdf>> {
    let mut v: Vec<Bdf> = sys.list(DEVICES)?.iter().filter_map(|n| n.parse().ok()).collect();
    v.sort();
    Ok(v)
}

/// The block device name for a controller's sysfs child entry: `nvme0n1` for `nvme0n1`,
/// `nvme0n1` for the multipath path entry `nvme0c0n1`, `None` for anything else.
pub fn namespace_block_name(entry: &str) -> Option<String> {
    let rest = entry.strip_prefix("nvme")?;
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let (head, ns) = rest.rsplit_once('n')?;
    if !digits(ns) {
        return None;
    }
    let subsys = match head.split_once('c') {
        Some((s, c)) if digits(s) && digits(c) => s,
        None if digits(head) => head,
        _ => return None,
    };
    Some(format!("nvme{subsys}n{ns}"))
}

/// Namespace block devices of the controller(s) of `bdf` (`.../nvme/nvme*/nvme*n*`).
pub fn block_devices(sys: &Sysfs, bdf: Bdf) -> Result<Vec<BlockDevice>> {
    let nvme_dir = format!("{}/nvme", device_dir(bdf));
    let mut out: Vec<BlockDevice> = Vec::new();
    for ctrl in sys.list(&nvme_dir)? {
        if !ctrl.starts_with("nvme") {
            continue;
        }
        for entry in sys.list(format!("{nvme_dir}/{ctrl}"))? {
            let Some(name) = namespace_block_name(&entry) else { continue };
            if out.iter().any(|b| b.name == name) {
                continue;
            }
            let class_dir = format!("/sys/class/block/{name}");
            let sysfs_dir = if sys.exists(&class_dir) { class_dir } else { format!("{nvme_dir}/{ctrl}/{entry}") };
            out.push(BlockDevice { name, sysfs_dir });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Partitions of a block device (`nvme0n1p1`, ...), from its sysfs directory.
pub fn partitions(sys: &Sysfs, bdev: &BlockDevice) -> Result<Vec<String>> {
    Ok(sys
        .list(&bdev.sysfs_dir)?
        .into_iter()
        .filter(|e| {
            e.strip_prefix(bdev.name.as_str())
                .and_then(|r| r.strip_prefix('p'))
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .collect())
}

fn holder_label(sys: &Sysfs, holder: &str) -> Result<String> {
    Ok(match sys.read_opt(format!("/sys/class/block/{holder}/dm/name"))? {
        Some(n) if !n.is_empty() => format!("{holder} ({n})"),
        _ => holder.to_string(),
    })
}

/// Reasons the block devices of a controller are in use: a mounted namespace or partition, an
/// active swap area, or a holder (device mapper, md RAID).
pub fn usage(sys: &Sysfs, bdevs: &[BlockDevice], mounts: &[Mount], swaps: &[String]) -> Result<Vec<String>> {
    let mut reasons = Vec::new();
    for b in bdevs {
        let mut names = vec![(b.name.clone(), b.sysfs_dir.clone())];
        for p in partitions(sys, b)? {
            names.push((p.clone(), format!("{}/{p}", b.sysfs_dir)));
        }
        for (name, dir) in names {
            let dev = format!("/dev/{name}");
            for m in mounts.iter().filter(|m| m.source == dev) {
                reasons.push(format!("{dev} is mounted on {}", m.target));
            }
            if swaps.contains(&dev) {
                reasons.push(format!("{dev} is an active swap area"));
            }
            let holders = sys.list(format!("{dir}/holders"))?;
            if !holders.is_empty() {
                let labels = holders.iter().map(|h| holder_label(sys, h)).collect::<Result<Vec<_>>>()?;
                reasons.push(format!("{dev} is held by {}", labels.join(", ")));
            }
        }
    }
    Ok(reasons)
}

fn read_override(sys: &Sysfs, bdf: Bdf) -> Result<Option<String>> {
    Ok(sys.read_opt(format!("{}/driver_override", device_dir(bdf)))?.filter(|s| !s.is_empty() && s != "(null)"))
}

/// The state of one device, which must exist and be an NVMe controller.
pub fn device(sys: &Sysfs, bdf: Bdf, mounts: &[Mount], swaps: &[String]) -> Result<NvmeDevice> {
    let class = match class(sys, bdf)? {
        None => return Err(Error::NoSuchDevice(bdf)),
        Some(c) => c,
    };
    if class != NVME_CLASS {
        return Err(Error::NotNvme { bdf, class: format!("{class:#08x}") });
    }
    let dir = device_dir(bdf);
    let block_devices = block_devices(sys, bdf)?;
    let in_use = usage(sys, &block_devices, mounts, swaps)?;
    Ok(NvmeDevice {
        bdf,
        vendor: sys.read_opt(format!("{dir}/vendor"))?,
        device: sys.read_opt(format!("{dir}/device"))?,
        numa_node: sys.read_opt(format!("{dir}/numa_node"))?.and_then(|s| s.parse().ok()),
        driver: sys.link_name(format!("{dir}/driver"))?,
        driver_override: read_override(sys, bdf)?,
        iommu_group: sys.link_name(format!("{dir}/iommu_group"))?,
        block_devices,
        in_use,
    })
}

/// Every NVMe controller (class 0x010802), sorted by address.
pub fn nvme_devices(sys: &Sysfs, mounts: &[Mount], swaps: &[String]) -> Result<Vec<NvmeDevice>> {
    let mut out = Vec::new();
    for bdf in all_bdfs(sys)? {
        if class(sys, bdf)? == Some(NVME_CLASS) {
            out.push(device(sys, bdf, mounts, swaps)?);
        }
    }
    Ok(out)
}

/// Number of IOMMU groups the kernel created (0: no IOMMU, or it is disabled).
pub fn iommu_group_count(sys: &Sysfs) -> Result<usize> {
    Ok(sys.list(IOMMU_GROUPS)?.len())
}

/// Bind `dev` to `driver`: write the driver name to `driver_override`, unbind from the current
/// driver, and ask the kernel to probe the device again. Returns what was written.
pub fn bind(sys: &Sysfs, dev: &NvmeDevice, driver: &str) -> Result<Vec<String>> {
    let bdf = dev.bdf.to_string();
    let mut done = Vec::new();
    let ov = format!("{}/driver_override", dev.dir());
    sys.write(&ov, driver)?;
    done.push(format!("wrote {driver} to {ov}"));
    if let Some(cur) = &dev.driver {
        let unbind = format!("{DRIVERS}/{cur}/unbind");
        sys.write(&unbind, &bdf)?;
        done.push(format!("wrote {bdf} to {unbind}"));
    }
    sys.write(DRIVERS_PROBE, &bdf)?;
    done.push(format!("wrote {bdf} to {DRIVERS_PROBE}"));
    Ok(done)
}

/// Give `dev` back to the kernel: clear `driver_override`, unbind from the current driver and
/// probe, so the driver matching its ID (`nvme`) takes it. Returns what was written.
pub fn release(sys: &Sysfs, dev: &NvmeDevice) -> Result<Vec<String>> {
    let bdf = dev.bdf.to_string();
    let mut done = Vec::new();
    let ov = format!("{}/driver_override", dev.dir());
    sys.write(&ov, "\n")?;
    done.push(format!("cleared {ov}"));
    if let Some(cur) = &dev.driver {
        let unbind = format!("{DRIVERS}/{cur}/unbind");
        sys.write(&unbind, &bdf)?;
        done.push(format!("wrote {bdf} to {unbind}"));
    }
    sys.write(DRIVERS_PROBE, &bdf)?;
    done.push(format!("wrote {bdf} to {DRIVERS_PROBE}"));
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounts::parse_mounts;
    use crate::testing::FakeTree;

    fn bdf(s: &str) -> Bdf {
        s.parse().unwrap()
    }

    #[test]
    fn bdf_parsing() {
        let b = bdf("0000:5e:00.1");
        assert_eq!(b, Bdf { domain: 0, bus: 0x5e, device: 0, function: 1 });
        assert_eq!(b.to_string(), "0000:5e:00.1");
        assert_eq!(bdf("01:00.0").to_string(), "0000:01:00.0");
        assert_eq!(bdf("10000:01:1f.7").to_string(), "10000:01:1f.7");
        for bad in ["", "01:00", "0000:01:00.8", "0000:01:20.0", "zz:00.0", "0:0:0:0.0", "0000:100:00.0"] {
            assert!(matches!(bad.parse::<Bdf>(), Err(Error::InvalidBdf(_))), "{bad}");
        }
        assert_eq!(parse_bdf_list("0000:01:00.0, 02:00.0").unwrap(), vec![bdf("01:00.0"), bdf("02:00.0")]);
        assert!(parse_bdf_list("0000:01:00.0,x").is_err());
    }

    #[test]
    fn namespace_names() {
        assert_eq!(namespace_block_name("nvme0n1").as_deref(), Some("nvme0n1"));
        assert_eq!(namespace_block_name("nvme12n3").as_deref(), Some("nvme12n3"));
        assert_eq!(namespace_block_name("nvme1c2n3").as_deref(), Some("nvme1n3"));
        for no in ["nvme0", "ng0n1", "hwmon0", "nvme0n", "nvmen1", "nvme0n1p1", "nvme0cn1", "power"] {
            assert_eq!(namespace_block_name(no), None, "{no}");
        }
    }

    #[test]
    fn discovers_nvme_devices_only() {
        let t = FakeTree::new();
        t.nvme("0000:01:00.0", 0, &[1, 2], Some(12));
        t.pci_device("0000:00:1f.2", "0x010601", Some("ahci"), Some(3));
        t.pci_device("0000:02:00.0", "0x010802", None, None);
        t.file("/sys/bus/pci/devices/0000:02:00.0/driver_override", "vfio-pci\n");
        let s = t.sysfs();
        let devs = nvme_devices(&s, &[], &[]).unwrap();
        assert_eq!(devs.len(), 2);
        let d = &devs[0];
        assert_eq!(d.bdf, bdf("0000:01:00.0"));
        assert_eq!(d.driver.as_deref(), Some("nvme"));
        assert_eq!(d.driver_override, None);
        assert_eq!(d.iommu_group.as_deref(), Some("12"));
        assert_eq!(d.numa_node, Some(0));
        assert_eq!(d.vendor.as_deref(), Some("0x8086"));
        let names: Vec<_> = d.block_devices.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["nvme0n1", "nvme0n2"]);
        assert!(!d.is_in_use());
        assert_eq!(devs[1].driver, None);
        assert_eq!(devs[1].driver_override.as_deref(), Some("vfio-pci"));
        assert_eq!(devs[1].iommu_group, None);

        assert!(matches!(device(&s, bdf("0000:00:1f.2"), &[], &[]), Err(Error::NotNvme { .. })));
        assert!(matches!(device(&s, bdf("0000:09:00.0"), &[], &[]), Err(Error::NoSuchDevice(_))));
    }

    #[test]
    fn usage_reasons() {
        let t = FakeTree::new();
        t.nvme("0000:01:00.0", 0, &[1], None);
        t.nvme("0000:02:00.0", 1, &[1], None);
        t.nvme("0000:03:00.0", 2, &[1], None);
        t.nvme("0000:04:00.0", 3, &[1], None);
        // nvme0n1p2 mounted; nvme1n1 swap; nvme2n1p1 in a dm device; nvme3n1 unused.
        let ns0 = "/sys/bus/pci/devices/0000:01:00.0/nvme/nvme0/nvme0n1";
        t.dir(&format!("{ns0}/nvme0n1p1/holders"));
        t.dir(&format!("{ns0}/nvme0n1p2/holders"));
        t.dir(&format!("{ns0}/queue"));
        // nvme2 uses /sys/class/block (as on a real system).
        t.dir("/sys/class/block/nvme2n1/nvme2n1p1/holders/dm-0");
        t.file("/sys/class/block/dm-0/dm/name", "vg0-root\n");
        let s = t.sysfs();
        let mounts = parse_mounts("/dev/nvme0n1p2 /data xfs rw 0 0\n/dev/sda1 / ext4 rw 0 0\n");
        let swaps = vec!["/dev/nvme1n1".to_string()];
        let devs = nvme_devices(&s, &mounts, &swaps).unwrap();
        assert_eq!(devs[0].in_use, vec!["/dev/nvme0n1p2 is mounted on /data"]);
        assert_eq!(devs[1].in_use, vec!["/dev/nvme1n1 is an active swap area"]);
        assert_eq!(devs[2].block_devices[0].sysfs_dir, "/sys/class/block/nvme2n1");
        assert_eq!(devs[2].in_use, vec!["/dev/nvme2n1p1 is held by dm-0 (vg0-root)"]);
        assert!(devs[3].in_use.is_empty());
    }

    #[test]
    fn multipath_entries_map_to_the_head() {
        let t = FakeTree::new();
        t.pci_device("0000:01:00.0", "0x010802", Some("nvme"), None);
        t.dir("/sys/bus/pci/devices/0000:01:00.0/nvme/nvme0/nvme0c0n1");
        t.dir("/sys/class/block/nvme0n1");
        let s = t.sysfs();
        let mounts = parse_mounts("/dev/nvme0n1 /mnt ext4 rw 0 0\n");
        let d = device(&s, bdf("01:00.0"), &mounts, &[]).unwrap();
        assert_eq!(d.block_devices[0].name, "nvme0n1");
        assert_eq!(d.in_use, vec!["/dev/nvme0n1 is mounted on /mnt"]);
    }

    #[test]
    fn bind_and_release_write_the_expected_files() {
        let t = FakeTree::new();
        t.nvme("0000:01:00.0", 0, &[1], Some(5));
        t.driver("vfio-pci");
        let s = t.sysfs();
        let d = device(&s, bdf("01:00.0"), &[], &[]).unwrap();
        let done = bind(&s, &d, VFIO_PCI).unwrap();
        assert_eq!(done.len(), 3);
        assert_eq!(t.read("/sys/bus/pci/devices/0000:01:00.0/driver_override"), "vfio-pci");
        assert_eq!(t.read("/sys/bus/pci/drivers/nvme/unbind"), "0000:01:00.0");
        assert_eq!(t.read("/sys/bus/pci/drivers_probe"), "0000:01:00.0");

        // Pretend the kernel bound it to vfio-pci, then give it back.
        t.symlink("/sys/bus/pci/devices/0000:01:00.0/driver", "../../../../bus/pci/drivers/vfio-pci");
        t.file("/sys/bus/pci/drivers_probe", "");
        let d = device(&s, bdf("01:00.0"), &[], &[]).unwrap();
        assert!(d.is_bound_to(VFIO_PCI));
        release(&s, &d).unwrap();
        assert_eq!(t.read("/sys/bus/pci/devices/0000:01:00.0/driver_override"), "\n");
        assert_eq!(t.read("/sys/bus/pci/drivers/vfio-pci/unbind"), "0000:01:00.0");
        assert_eq!(t.read("/sys/bus/pci/drivers_probe"), "0000:01:00.0");
    }
}
