//! Command line of `hugepage-setup`; the work is done in the library.

#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use hugepage_setup::pci::Bdf;
use hugepage_setup::{commands, ConfigOptions, Report, ResetOptions, System};
use std::path::PathBuf;
use std::process::ExitCode;

/// Reserve hugepages and bind NVMe devices to vfio-pci for a userspace driver
/// (like SPDK's scripts/setup.sh).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Root of the sysfs/procfs/dev tree to act on. External programs (modprobe, mount) only run
    /// when this is /.
    #[arg(long, global = true, default_value = "/")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show hugepages per NUMA node and NVMe devices with their driver, IOMMU group and usage.
    Status,
    /// Reserve hugepages, mount hugetlbfs, load vfio-pci and bind unused NVMe devices to it.
    Config(ConfigArgs),
    /// Give NVMe devices back to the nvme driver and release the 2 MiB hugepages.
    Reset(ResetArgs),
}

#[derive(Args, Debug)]
struct ConfigArgs {
    /// MiB of memory to reserve as 2 MiB hugepages (0: leave the pools unchanged).
    #[arg(long, default_value_t = 2048)]
    hugemem: u64,
    /// Reserve --hugemem on each of these NUMA nodes (comma separated) instead of globally.
    #[arg(long, value_delimiter = ',')]
    hugenode: Vec<u32>,
    /// Enable VFIO's unsafe no-IOMMU mode (for hosts without an IOMMU).
    #[arg(long)]
    noiommu: bool,
    /// Bind only these PCI addresses (comma separated); default: every unused NVMe device.
    #[arg(long, value_delimiter = ',', value_parser = bdf)]
    pci_allowed: Vec<Bdf>,
    /// Never bind these PCI addresses (comma separated).
    #[arg(long, value_delimiter = ',', value_parser = bdf)]
    pci_blocked: Vec<Bdf>,
    /// Only set up hugepages; do not load vfio-pci or bind devices.
    #[arg(long)]
    skip_bind: bool,
}

#[derive(Args, Debug)]
struct ResetArgs {
    /// Release only these PCI addresses (comma separated); default: every device on vfio-pci.
    #[arg(long, value_delimiter = ',', value_parser = bdf)]
    pci_allowed: Vec<Bdf>,
    /// Leave the hugepage pools as they are.
    #[arg(long)]
    keep_hugepages: bool,
}

fn bdf(s: &str) -> Result<Bdf, String> {
    s.parse().map_err(|e: hugepage_setup::Error| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let system = System::new(&cli.root);
    let mut report = Report::default();
    let result = match cli.command {
        Command::Status => commands::status(&system).map(|s| print!("{s}")),
        Command::Config(a) => {
            let opts = ConfigOptions {
                hugemem_mb: a.hugemem,
                hugenodes: a.hugenode,
                noiommu: a.noiommu,
                pci_allowed: a.pci_allowed,
                pci_blocked: a.pci_blocked,
                skip_bind: a.skip_bind,
            };
            commands::config(&system, &opts, &mut report)
        }
        Command::Reset(a) => {
            let opts = ResetOptions { pci_allowed: a.pci_allowed, keep_hugepages: a.keep_hugepages };
            commands::reset(&system, &opts, &mut report)
        }
    };
    print!("{report}");
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
