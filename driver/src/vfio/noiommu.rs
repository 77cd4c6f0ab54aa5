//! VFIO no-IOMMU mode (`/dev/vfio/noiommu-N`, needs `enable_unsafe_noiommu_mode` and root):
//! `vfio-ioctls` only knows Type1 containers, so the container/group/device setup is done with
//! the raw ioctls here. DMA addresses are physical (see [`crate::dma::PagemapMapper`]).

use super::{vfio_err, with_bus_master, RegionInfo, PCI_COMMAND};
use crate::error::{Error, Result};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use vfio_bindings::bindings::vfio::{
    vfio_group_status, vfio_region_info, VFIO_API_VERSION, VFIO_GROUP_FLAGS_VIABLE, VFIO_NOIOMMU_IOMMU,
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX,
};
use vmm_sys_util::ioctl::{ioctl, ioctl_with_mut_ref, ioctl_with_ptr, ioctl_with_ref, ioctl_with_val};
use vmm_sys_util::ioctl_io_nr;

const VFIO_TYPE: u32 = vfio_bindings::bindings::vfio::VFIO_TYPE as u32;
const VFIO_BASE: u32 = vfio_bindings::bindings::vfio::VFIO_BASE;
ioctl_io_nr!(VFIO_GET_API_VERSION, VFIO_TYPE, VFIO_BASE);
ioctl_io_nr!(VFIO_CHECK_EXTENSION, VFIO_TYPE, VFIO_BASE + 1);
ioctl_io_nr!(VFIO_SET_IOMMU, VFIO_TYPE, VFIO_BASE + 2);
ioctl_io_nr!(VFIO_GROUP_GET_STATUS, VFIO_TYPE, VFIO_BASE + 3);
ioctl_io_nr!(VFIO_GROUP_SET_CONTAINER, VFIO_TYPE, VFIO_BASE + 4);
ioctl_io_nr!(VFIO_GROUP_GET_DEVICE_FD, VFIO_TYPE, VFIO_BASE + 6);
ioctl_io_nr!(VFIO_DEVICE_GET_REGION_INFO, VFIO_TYPE, VFIO_BASE + 8);

pub(super) struct NoIommuDevice {
    device: File,
    _group: File,
    _container: File,
    pub(super) bar0: (u64, usize),
}

impl NoIommuDevice {
    pub(super) fn device_fd(&self) -> RawFd {
        self.device.as_raw_fd()
    }
}

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| vfio_err("open", format!("{}: {e}", path.display())))
}

fn check(op: &'static str, ret: i32) -> Result<i32> {
    if ret < 0 {
        Err(vfio_err(op, std::io::Error::last_os_error().to_string()))
    } else {
        Ok(ret)
    }
}

fn region_info(device: &File, index: u32) -> Result<RegionInfo> {
    let mut info =
        vfio_region_info { argsz: std::mem::size_of::<vfio_region_info>() as u32, index, ..Default::default() };
    // SAFETY: the kernel writes at most `argsz` bytes into `info`, which we own.
    check("DEVICE_GET_REGION_INFO", unsafe { ioctl_with_mut_ref(device, VFIO_DEVICE_GET_REGION_INFO(), &mut info) })?;
    Ok(RegionInfo { flags: info.flags, size: info.size, offset: info.offset })
}

pub(super) fn open(group_node: &Path, pci_addr: &str) -> Result<NoIommuDevice> {
    let container = open_rw(Path::new("/dev/vfio/vfio"))?;
    // SAFETY: argument-less ioctl on a VFIO container fd.
    let version = check("GET_API_VERSION", unsafe { ioctl(&container, VFIO_GET_API_VERSION()) })?;
    if version != VFIO_API_VERSION as i32 {
        return Err(vfio_err("GET_API_VERSION", format!("unsupported API version {version}")));
    }
    // SAFETY: integer-argument ioctl on a VFIO container fd.
    let has = check("CHECK_EXTENSION", unsafe {
        ioctl_with_val(&container, VFIO_CHECK_EXTENSION(), VFIO_NOIOMMU_IOMMU.into())
    })?;
    if has != 1 {
        return Err(vfio_err(
            "CHECK_EXTENSION",
            "no-IOMMU mode is not enabled (vfio enable_unsafe_noiommu_mode=1)".into(),
        ));
    }
    let group = open_rw(group_node)?;
    let mut status = vfio_group_status { argsz: std::mem::size_of::<vfio_group_status>() as u32, flags: 0 };
    // SAFETY: the kernel fills `status`, which we own.
    check("GROUP_GET_STATUS", unsafe { ioctl_with_mut_ref(&group, VFIO_GROUP_GET_STATUS(), &mut status) })?;
    if status.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
        return Err(vfio_err("group", "not viable: bind every device of the group to vfio-pci".into()));
    }
    let container_fd: RawFd = container.as_raw_fd();
    // SAFETY: passes a pointer to a live fd number; the kernel only reads it.
    check("GROUP_SET_CONTAINER", unsafe { ioctl_with_ref(&group, VFIO_GROUP_SET_CONTAINER(), &container_fd) })?;
    // SAFETY: integer-argument ioctl on the container fd.
    check("SET_IOMMU", unsafe { ioctl_with_val(&container, VFIO_SET_IOMMU(), VFIO_NOIOMMU_IOMMU.into()) })?;
    let name = CString::new(pci_addr).map_err(|_| Error::InvalidArgument(pci_addr.into()))?;
    // SAFETY: passes a NUL-terminated string that outlives the call; the kernel only reads it.
    let fd =
        check("GROUP_GET_DEVICE_FD", unsafe { ioctl_with_ptr(&group, VFIO_GROUP_GET_DEVICE_FD(), name.as_ptr()) })?;
    // SAFETY: `fd` is a new file descriptor returned by the kernel and owned by nobody else.
    let device = unsafe { File::from_raw_fd(fd) };
    let bar0 = region_info(&device, VFIO_PCI_BAR0_REGION_INDEX)?.bar0_mapping()?;
    let config = region_info(&device, VFIO_PCI_CONFIG_REGION_INDEX)?;
    let mut cmd = [0u8; 2];
    device.read_exact_at(&mut cmd, config.offset + PCI_COMMAND).map_err(|e| Error::os("read PCI command", e))?;
    let new = with_bus_master(u16::from_le_bytes(cmd));
    device
        .write_all_at(&new.to_le_bytes(), config.offset + PCI_COMMAND)
        .map_err(|e| Error::os("write PCI command", e))?;
    Ok(NoIommuDevice { device, _group: group, _container: container, bar0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_uapi() {
        // _IO(';', 100 + n) from include/uapi/linux/vfio.h.
        assert_eq!(VFIO_GET_API_VERSION(), 0x3b64);
        assert_eq!(VFIO_CHECK_EXTENSION(), 0x3b65);
        assert_eq!(VFIO_SET_IOMMU(), 0x3b66);
        assert_eq!(VFIO_GROUP_GET_STATUS(), 0x3b67);
        assert_eq!(VFIO_GROUP_SET_CONTAINER(), 0x3b68);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD(), 0x3b6a);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO(), 0x3b6c);
        assert_eq!(VFIO_NOIOMMU_IOMMU, 8);
    }
}
