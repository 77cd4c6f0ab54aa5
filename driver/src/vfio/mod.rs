//! Opening an NVMe device bound to `vfio-pci`: container, group and device; BAR0 mapped for the
//! registers; bus mastering enabled through the config-space region; DMA memory mapped into the
//! IOMMU (Type1v2, IOVA = virtual address) or, in VFIO's no-IOMMU mode, hugepages addressed by
//! their physical address from `/proc/self/pagemap`.
//!
//! IOMMU mode goes through `vfio-ioctls`; no-IOMMU mode (`/dev/vfio/noiommu-N`), which that crate
//! does not support, uses a handful of raw ioctls (`noiommu.rs`).

mod iommu;
#[forbid(unsafe_code)]
pub mod iova;
mod noiommu;

use crate::controller::{Controller, ControllerOptions};
use crate::dma::{DmaAllocator, DmaBacking, PagemapMapper};
use crate::error::{Error, Result};
use crate::mmio::MappedBar;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

pub use iommu::IommuMapper;

/// PCI config-space Command register: Memory Space Enable (bit 1) and Bus Master Enable (bit 2).
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// Smallest BAR0 holding the registers and the admin doorbells (NVMe Base 2.0 section 3.1.4).
const MIN_BAR0: u64 = 0x1008;

/// How the device's DMA is translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfioMode {
    /// An IOMMU group `/dev/vfio/N`: IOVA = virtual address, mapped with VFIO_IOMMU_MAP_DMA.
    Iommu,
    /// `/dev/vfio/noiommu-N`: no translation, the device sees physical addresses.
    NoIommu,
}

/// A VFIO region as reported by VFIO_DEVICE_GET_REGION_INFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    pub flags: u32,
    pub size: u64,
    pub offset: u64,
}

impl RegionInfo {
    /// Where to mmap BAR0 on the device fd, checking that it is mappable and large enough.
    pub fn bar0_mapping(&self) -> Result<(u64, usize)> {
        use vfio_bindings::bindings::vfio::{
            VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
        };
        let need = VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        if self.flags & need != need {
            return Err(vfio_err("BAR0", format!("region flags {:#x} lack read/write/mmap", self.flags)));
        }
        if self.size < MIN_BAR0 {
            return Err(vfio_err("BAR0", format!("only {} bytes: not an NVMe controller", self.size)));
        }
        let size = usize::try_from(self.size).map_err(|_| vfio_err("BAR0", "size overflows".into()))?;
        Ok((self.offset, size))
    }
}

pub(crate) fn vfio_err(op: &'static str, detail: String) -> Error {
    Error::Vfio { op, detail }
}

/// Normalise a PCI address to `DDDD:BB:DD.F` (a missing domain means 0000).
pub fn normalize_pci_addr(addr: &str) -> Result<String> {
    let full = if addr.matches(':').count() == 1 { format!("0000:{addr}") } else { addr.to_string() };
    let ok = full.len() == 12
        && full.char_indices().all(|(i, c)| match i {
            4 | 7 => c == ':',
            10 => c == '.',
            11 => ('0'..='7').contains(&c),
            _ => c.is_ascii_hexdigit(),
        });
    if ok {
        Ok(full.to_ascii_lowercase())
    } else {
        Err(Error::InvalidArgument(format!("`{addr}` is not a PCI address like 0000:01:00.0")))
    }
}

/// The IOMMU group number from the target of `/sys/bus/pci/devices/<addr>/iommu_group`.
pub fn group_from_link(target: &Path) -> Result<u32> {
    target
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| vfio_err("iommu_group", format!("unexpected link {}", target.display())))
}

/// The group's device node under `dev_vfio` (normally `/dev/vfio`) and the mode it implies.
pub fn group_node(dev_vfio: &Path, group: u32) -> Result<(PathBuf, VfioMode)> {
    let iommu = dev_vfio.join(group.to_string());
    if iommu.exists() {
        return Ok((iommu, VfioMode::Iommu));
    }
    let noiommu = dev_vfio.join(format!("noiommu-{group}"));
    if noiommu.exists() {
        return Ok((noiommu, VfioMode::NoIommu));
    }
    Err(vfio_err(
        "group",
        format!(
            "neither {} nor {} exists: bind the device to vfio-pci (`hugepage-setup config`)",
            iommu.display(),
            noiommu.display()
        ),
    ))
}

/// Command register value with memory decoding and bus mastering on.
pub fn with_bus_master(cmd: u16) -> u16 {
    cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER
}

/// mmap `len` bytes of the device fd at `offset` (a BAR region).
fn map_bar(fd: std::os::fd::RawFd, offset: u64, len: usize) -> Result<MappedBar> {
    let off = libc::off_t::try_from(offset).map_err(|_| vfio_err("mmap BAR0", "offset overflows".into()))?;
    // SAFETY: maps a new shared region of the device fd; no existing memory is affected.
    let p =
        unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, off) };
    if p == libc::MAP_FAILED {
        return Err(Error::os("mmap BAR0", std::io::Error::last_os_error()));
    }
    let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| vfio_err("mmap BAR0", "null mapping".into()))?;
    // SAFETY: ptr..ptr+len is the BAR mapping just created, owned (and unmapped) by MappedBar.
    Ok(unsafe { MappedBar::new(ptr, len, true) })
}

impl Controller {
    /// Open the NVMe controller at PCI address `pci_addr` (bound to `vfio-pci`) and bring it up.
    /// DMA memory is always hugepage-backed here, whatever `opts.dma_backing` says.
    pub fn open_vfio(pci_addr: &str, opts: ControllerOptions) -> Result<Controller> {
        let addr = normalize_pci_addr(pci_addr)?;
        let sysfs = PathBuf::from("/sys/bus/pci/devices").join(&addr);
        let link = std::fs::read_link(sysfs.join("iommu_group"))
            .map_err(|e| vfio_err("iommu_group", format!("{}: {e}", sysfs.display())))?;
        let group = group_from_link(&link)?;
        let (node, mode) = group_node(Path::new("/dev/vfio"), group)?;
        log::info!("opening {addr} through {} ({mode:?})", node.display());
        let (bar, dma, owner): (MappedBar, DmaAllocator, Box<dyn std::any::Any + Send + Sync>) = match mode {
            VfioMode::Iommu => {
                let dev = iommu::open(&sysfs)?;
                let bar = map_bar(dev.device_fd(), dev.bar0.0, dev.bar0.1)?;
                let dma = DmaAllocator::new(Arc::new(dev.mapper()), DmaBacking::Hugepages);
                (bar, dma, Box::new(dev))
            }
            VfioMode::NoIommu => {
                let dev = noiommu::open(&node, &addr)?;
                let bar = map_bar(dev.device_fd(), dev.bar0.0, dev.bar0.1)?;
                let dma = DmaAllocator::new(Arc::new(PagemapMapper::new()?), DmaBacking::Hugepages);
                (bar, dma, Box::new(dev))
            }
        };
        // `owner` keeps the device, group and container fds open for the controller's life.
        Controller::with_owner(Arc::new(bar), Arc::new(dma), opts, Some(owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_bindings::bindings::vfio::{
        VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
    };

    #[test]
    fn pci_addresses_are_normalised() {
        assert_eq!(normalize_pci_addr("01:00.0").unwrap(), "0000:01:00.0");
        assert_eq!(normalize_pci_addr("0000:AF:00.1").unwrap(), "0000:af:00.1");
        assert!(normalize_pci_addr("0000:01:00.8").is_err());
        assert!(normalize_pci_addr("nvme0").is_err());
        assert!(normalize_pci_addr("0000:01:00").is_err());
    }

    #[test]
    fn group_number_comes_from_the_link_name() {
        assert_eq!(group_from_link(Path::new("../../../../kernel/iommu_groups/17")).unwrap(), 17);
        assert!(group_from_link(Path::new("../iommu_groups/x")).is_err());
    }

    #[test]
    fn group_node_prefers_iommu_then_noiommu() {
        let dir = std::env::temp_dir().join(format!("nvme-driver-vfio-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("noiommu-3"), b"").unwrap();
        std::fs::write(dir.join("4"), b"").unwrap();
        assert_eq!(group_node(&dir, 3).unwrap(), (dir.join("noiommu-3"), VfioMode::NoIommu));
        assert_eq!(group_node(&dir, 4).unwrap(), (dir.join("4"), VfioMode::Iommu));
        let e = group_node(&dir, 5).unwrap_err().to_string();
        assert!(e.contains("vfio-pci"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bar0_region_must_be_mappable_and_big_enough() {
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        let ok = RegionInfo { flags: rw | VFIO_REGION_INFO_FLAG_MMAP, size: 0x4000, offset: 0 };
        assert_eq!(ok.bar0_mapping().unwrap(), (0, 0x4000));
        assert!(RegionInfo { flags: rw, ..ok }.bar0_mapping().is_err());
        assert!(RegionInfo { size: 0x100, ..ok }.bar0_mapping().is_err());
    }

    #[test]
    fn bus_master_and_memory_bits_are_set() {
        assert_eq!(with_bus_master(0x0400), 0x0406);
        assert_eq!(with_bus_master(0x0006), 0x0006);
    }
}
