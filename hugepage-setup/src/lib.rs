//! `hugepage-setup`: prepare a Linux host for a userspace NVMe driver, like SPDK's
//! `scripts/setup.sh`.
//!
//! * [`commands::status`] reports hugepages per NUMA node and the NVMe devices (PCI class
//!   0x010802) with their driver, IOMMU group and whether the kernel is using them.
//! * [`commands::config`] reserves 2 MiB hugepages, mounts hugetlbfs, loads `vfio-pci` and binds
//!   unused NVMe devices to it.
//! * [`commands::reset`] gives the devices back to the kernel `nvme` driver and frees hugepages.
//!
//! Every sysfs, procfs and `/dev` path is resolved under a root directory ([`sysfs::Sysfs`]), so
//! the tests run the commands against a fake tree in a temporary directory. External programs
//! (`modprobe`, `mount`) go through [`commands::Exec`] and only run when the root is `/`.

#![forbid(unsafe_code)]

pub mod commands;
pub mod hugepages;
pub mod mounts;
pub mod pci;
pub mod sysfs;
#[doc(hidden)]
pub mod testing;

use std::path::PathBuf;

pub use commands::{config, reset, status, ConfigOptions, Exec, Report, ResetOptions, System};
pub use pci::{Bdf, NvmeDevice};

/// Errors of all commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file under the root could not be read, written or listed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file had unexpected content.
    #[error("{path}: cannot parse {what} from {content:?}")]
    Parse { path: PathBuf, what: &'static str, content: String },
    /// A PCI address given on the command line is malformed.
    #[error("invalid PCI address {0:?} (expected DDDD:BB:DD.F or BB:DD.F)")]
    InvalidBdf(String),
    /// A PCI address given on the command line does not exist.
    #[error("PCI device {0} not found under /sys/bus/pci/devices")]
    NoSuchDevice(Bdf),
    /// A PCI address given on the command line is not an NVMe controller.
    #[error("PCI device {bdf} is not an NVMe controller (class {class})")]
    NotNvme { bdf: Bdf, class: String },
    /// A hugepage amount that cannot be represented.
    #[error("invalid hugepage request: {0}")]
    InvalidHugemem(String),
    /// A NUMA node named with `--hugenode` does not exist.
    #[error("NUMA node {0} not found under /sys/devices/system/node")]
    NoSuchNode(u32),
    /// A required step failed.
    #[error("{0}")]
    Step(String),
    /// Devices explicitly requested with `--pci-allowed` were refused.
    #[error("refused to bind {}: {}", .0.iter().map(|(b, _)| b.to_string()).collect::<Vec<_>>().join(", "), .0.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>().join("; "))]
    Refused(Vec<(Bdf, String)>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
