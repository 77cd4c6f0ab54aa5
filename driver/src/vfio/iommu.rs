//! IOMMU (Type1v2) mode through `vfio-ioctls`: the container maps DMA memory with IOVA = VA.

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
}

impl DmaMapper for IommuMapper {
    unsafe fn map(&self, va: usize, len: usize, _page_size: usize) -> Result<Translation> {
        // SAFETY: the caller guarantees va..va+len stays mapped until `unmap`, and the driver only
        // accesses this memory through raw-pointer copies and volatile operations.
        unsafe { self.container.vfio_dma_map(va as u64, len, va as *mut u8) }
            .map_err(|e| vfio_err("DMA map", e.to_string()))?;
        Ok(Translation::Linear { iova: va as u64 })
    }
    fn unmap(&self, va: usize, len: usize, _t: &Translation) {
        if let Err(e) = self.container.vfio_dma_unmap(va as u64, len) {
            log::error!("VFIO DMA unmap of {len} bytes at {va:#x}: {e}");
        }
    }
    fn name(&self) -> &'static str {
        "VFIO IOMMU (Type1v2)"
    }
}

pub(super) struct IommuDevice {
    container: Arc<VfioContainer>,
    device: VfioDevice,
    pub(super) bar0: (u64, usize),
}

impl IommuDevice {
    pub(super) fn device_fd(&self) -> std::os::fd::RawFd {
        self.device.as_raw_fd()
    }
    pub(super) fn mapper(&self) -> IommuMapper {
        IommuMapper { container: self.container.clone() }
    }
}

pub(super) fn open(sysfs: &Path) -> Result<IommuDevice> {
    let container = Arc::new(VfioContainer::new(None).map_err(|e| vfio_err("open container", e.to_string()))?);
    let ops: Arc<dyn VfioOps> = container.clone();
    let device = VfioDevice::new(sysfs, ops, false).map_err(|e| vfio_err("open device", e.to_string()))?;
    let info = RegionInfo { flags: device.get_region_flags(0), size: device.get_region_size(0), offset: device.get_region_offset(0) };
    let bar0 = info.bar0_mapping()?;
    let mut cmd = [0u8; 2];
    device.region_read(VFIO_PCI_CONFIG_REGION_INDEX, &mut cmd, PCI_COMMAND);
    let new = with_bus_master(u16::from_le_bytes(cmd));
    device.region_write(VFIO_PCI_CONFIG_REGION_INDEX, &new.to_le_bytes(), PCI_COMMAND);
    Ok(IommuDevice { container, device, bar0 })
}
