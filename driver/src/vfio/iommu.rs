//! IOMMU (Type1v2) mode through `vfio-ioctls`: the container maps DMA memory at IOVAs allocated
//! from the IOMMU's usable ranges (see `iova.rs`; IOVA = VA does not fit a 39-bit IOMMU).

use super::iova::{parse_iova_ranges, IovaSpace, FALLBACK_RANGES};
use super::{vfio_err, with_bus_master, RegionInfo, PCI_COMMAND};
use crate::dma::{DmaMapper, Translation};
use crate::error::Result;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use vfio_bindings::bindings::vfio::VFIO_PCI_CONFIG_REGION_INDEX;
use vfio_ioctls::{VfioContainer, VfioDevice, VfioOps};

/// Maps DMA memory into a VFIO container's IOMMU domain.
pub struct IommuMapper {
    container: Arc<VfioContainer>,
    iova: Arc<IovaSpace>,
}

impl DmaMapper for IommuMapper {
    unsafe fn map(&self, va: usize, len: usize, page_size: usize) -> Result<Translation> {
        let align = page_size.max(4096) as u64;
        let iova = self
            .iova
            .alloc(len as u64, align)
            .ok_or_else(|| vfio_err("DMA map", format!("no free IOVA space for {len} bytes")))?;
        // SAFETY: the caller guarantees va..va+len stays mapped until `unmap`, and the driver only
        // accesses this memory through raw-pointer copies and volatile operations.
        if let Err(e) = unsafe { self.container.vfio_dma_map(iova, len, va as *mut u8) } {
            self.iova.free(iova, len as u64);
            return Err(vfio_err("DMA map", format!("{len} bytes at IOVA {iova:#x}: {e}")));
        }
        Ok(Translation::Linear { iova })
    }
    fn unmap(&self, va: usize, len: usize, t: &Translation) {
        let Translation::Linear { iova } = *t else {
            log::error!("VFIO DMA unmap of {len} bytes at {va:#x}: not an IOMMU mapping");
            return;
        };
        match self.container.vfio_dma_unmap(iova, len) {
            Ok(()) => self.iova.free(iova, len as u64),
            // The range stays reserved: the device may still reach it.
            Err(e) => log::error!("VFIO DMA unmap of {len} bytes at IOVA {iova:#x} (VA {va:#x}): {e}"),
        }
    }
    fn name(&self) -> &'static str {
        "VFIO IOMMU (Type1v2)"
    }
}

pub(super) struct IommuDevice {
    container: Arc<VfioContainer>,
    iova: Arc<IovaSpace>,
    device: VfioDevice,
    pub(super) bar0: (u64, usize),
}

impl IommuDevice {
    pub(super) fn device_fd(&self) -> std::os::fd::RawFd {
        self.device.as_raw_fd()
    }
    pub(super) fn mapper(&self) -> IommuMapper {
        IommuMapper { container: self.container.clone(), iova: self.iova.clone() }
    }
}

pub(super) fn open(sysfs: &Path) -> Result<IommuDevice> {
    let container = Arc::new(VfioContainer::new(None).map_err(|e| vfio_err("open container", e.to_string()))?);
    let ops: Arc<dyn VfioOps> = container.clone();
    let device = VfioDevice::new(sysfs, ops, false).map_err(|e| vfio_err("open device", e.to_string()))?;
    let info = RegionInfo {
        flags: device.get_region_flags(0),
        size: device.get_region_size(0),
        offset: device.get_region_offset(0),
    };
    let bar0 = info.bar0_mapping()?;
    let mut cmd = [0u8; 2];
    device.region_read(VFIO_PCI_CONFIG_REGION_INDEX, &mut cmd, PCI_COMMAND);
    let new = with_bus_master(u16::from_le_bytes(cmd));
    device.region_write(VFIO_PCI_CONFIG_REGION_INDEX, &new.to_le_bytes(), PCI_COMMAND);
    let ranges = iova_ranges(container.as_raw_fd());
    let iova = if ranges.is_empty() {
        log::warn!("VFIO reports no IOVA ranges; assuming a 39-bit IOMMU");
        Arc::new(IovaSpace::new(&FALLBACK_RANGES))
    } else {
        log::info!(
            "IOVA ranges: {}",
            ranges.iter().map(|(s, e)| format!("{s:#x}-{e:#x}")).collect::<Vec<_>>().join(", ")
        );
        Arc::new(IovaSpace::new(&ranges))
    };
    Ok(IommuDevice { container, iova, device, bar0 })
}

vmm_sys_util::ioctl_io_nr!(
    VFIO_IOMMU_GET_INFO,
    vfio_bindings::bindings::vfio::VFIO_TYPE as u32,
    vfio_bindings::bindings::vfio::VFIO_BASE + 12
);

/// The container's usable IOVA ranges (VFIO_IOMMU_GET_INFO, IOVA-range capability); empty when
/// the kernel does not say.
fn iova_ranges(container_fd: std::os::fd::RawFd) -> Vec<(u64, u64)> {
    let mut buf = vec![0u64; 512];
    let bytes = buf.len() * 8;
    // argsz
    buf[0] = bytes as u64;
    // SAFETY: the kernel writes at most argsz (= the buffer's size) bytes into our buffer.
    let ret = unsafe { libc::ioctl(container_fd, VFIO_IOMMU_GET_INFO() as _, buf.as_mut_ptr()) };
    if ret < 0 {
        log::warn!("VFIO_IOMMU_GET_INFO: {}", std::io::Error::last_os_error());
        return Vec::new();
    }
    let raw: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    parse_iova_ranges(&raw)
}
