//! The `status`, `config` and `reset` commands.

use crate::hugepages::{self, Meminfo, NodePool};
use crate::mounts::{self, Mount};
use crate::pci::{self, Bdf, NvmeDevice, VFIO_PCI};
use crate::sysfs::Sysfs;
use crate::{Error, Result};
use std::fmt;
use std::path::PathBuf;

/// Runs external programs (`modprobe`, `mount`).
pub trait Exec {
    /// Run `program` with `args`; `Err` carries a one-line reason (exit status and stderr).
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String>;
}

/// [`Exec`] through `std::process::Command`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealExec;

impl Exec for RealExec {
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!("{program} {}: {}: {}", args.join(" "), out.status, err.trim()))
        }
    }
}

/// The system the commands act on: a file tree and a way to run programs.
pub struct System {
    pub sys: Sysfs,
    exec: Box<dyn Exec>,
    /// Whether external programs run; by default only when the root is `/`.
    pub run_commands: bool,
}

impl System {
    /// The system under `root`; programs run only when `root` is `/`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let sys = Sysfs::new(root);
        let run_commands = sys.is_real_root();
        System { sys, exec: Box::new(RealExec), run_commands }
    }

    /// Replace the program runner and say whether to use it (for tests).
    pub fn with_exec(mut self, exec: Box<dyn Exec>, run_commands: bool) -> Self {
        self.exec = exec;
        self.run_commands = run_commands;
        self
    }

    fn run(&self, out: &mut Report, program: &str, args: &[&str]) -> Option<Result<(), String>> {
        let cmd = format!("{program} {}", args.join(" "));
        if !self.run_commands {
            out.skip(format!("`{cmd}` (root is {}, not /)", self.sys.root().display()));
            return None;
        }
        let r = self.exec.run(program, args);
        match &r {
            Ok(()) => out.done(format!("ran `{cmd}`")),
            Err(e) => out.warn(format!("`{cmd}` failed: {e}")),
        }
        Some(r)
    }
}

/// What a command did, line by line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<ReportLine>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportLine {
    Info(String),
    Done(String),
    Skipped(String),
    Warning(String),
    Refused(String),
}

impl Report {
    pub fn info(&mut self, s: impl Into<String>) {
        self.lines.push(ReportLine::Info(s.into()));
    }
    pub fn done(&mut self, s: impl Into<String>) {
        self.lines.push(ReportLine::Done(s.into()));
    }
    pub fn skip(&mut self, s: impl Into<String>) {
        self.lines.push(ReportLine::Skipped(s.into()));
    }
    pub fn warn(&mut self, s: impl Into<String>) {
        self.lines.push(ReportLine::Warning(s.into()));
    }
    pub fn refuse(&mut self, s: impl Into<String>) {
        self.lines.push(ReportLine::Refused(s.into()));
    }
    /// True if any line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.to_string().contains(needle)
    }
}

impl fmt::Display for ReportLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportLine::Info(s) => write!(f, "{s}"),
            ReportLine::Done(s) => write!(f, "done: {s}"),
            ReportLine::Skipped(s) => write!(f, "skipped: {s}"),
            ReportLine::Warning(s) => write!(f, "warning: {s}"),
            ReportLine::Refused(s) => write!(f, "refused: {s}"),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

/// Result of `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub meminfo: Option<Meminfo>,
    pub node_pools: Vec<NodePool>,
    pub hugetlbfs: Vec<Mount>,
    pub iommu_groups: usize,
    pub devices: Vec<NvmeDevice>,
}

/// Hugepages per node, hugetlbfs mounts and NVMe devices.
pub fn status(system: &System) -> Result<Status> {
    let sys = &system.sys;
    let mounts = mounts::mounts(sys)?;
    let swaps = mounts::swaps(sys)?;
    Ok(Status {
        meminfo: hugepages::meminfo(sys)?,
        node_pools: hugepages::node_pools(sys)?,
        hugetlbfs: mounts::hugetlbfs_mounts(&mounts).into_iter().cloned().collect(),
        iommu_groups: pci::iommu_group_count(sys)?,
        devices: pci::nvme_devices(sys, &mounts, &swaps)?,
    })
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.meminfo {
            Some(m) => writeln!(
                f,
                "Hugepages (/proc/meminfo): total {}, free {}, reserved {}, surplus {}, default size {} kB",
                m.total, m.free, m.reserved, m.surplus, m.size_kb
            )?,
            None => writeln!(f, "Hugepages: /proc/meminfo not found")?,
        }
        if !self.node_pools.is_empty() {
            writeln!(f, "{:<8} {:>12} {:>8} {:>8}", "node", "hugesize", "free", "total")?;
            for p in &self.node_pools {
                writeln!(
                    f,
                    "{:<8} {:>12} {:>8} {:>8}",
                    format!("node{}", p.node),
                    format!("{}kB", p.size_kb),
                    p.free,
                    p.nr
                )?;
            }
        }
        if self.hugetlbfs.is_empty() {
            writeln!(f, "hugetlbfs: not mounted")?;
        }
        for m in &self.hugetlbfs {
            writeln!(f, "hugetlbfs: mounted on {} ({})", m.target, m.options)?;
        }
        writeln!(f, "IOMMU groups: {}", self.iommu_groups)?;
        writeln!(f)?;
        if self.devices.is_empty() {
            return writeln!(f, "NVMe devices: none");
        }
        writeln!(
            f,
            "{:<14} {:<7} {:<7} {:<5} {:<10} {:<6} {:<16} In use",
            "BDF", "Vendor", "Device", "NUMA", "Driver", "IOMMU", "Block devices"
        )?;
        for d in &self.devices {
            let short = |s: &Option<String>| s.as_deref().map(|v| v.trim_start_matches("0x").to_string());
            let blocks = d.block_devices.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(",");
            let driver = match (&d.driver, &d.driver_override) {
                (Some(drv), _) => drv.clone(),
                (None, Some(ov)) => format!("-(ovr {ov})"),
                (None, None) => "-".into(),
            };
            writeln!(
                f,
                "{:<14} {:<7} {:<7} {:<5} {:<10} {:<6} {:<16} {}",
                d.bdf.to_string(),
                short(&d.vendor).unwrap_or_else(|| "-".into()),
                short(&d.device).unwrap_or_else(|| "-".into()),
                d.numa_node.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                driver,
                d.iommu_group.clone().unwrap_or_else(|| "-".into()),
                if blocks.is_empty() { "-".to_string() } else { blocks },
                if d.in_use.is_empty() { "no".to_string() } else { format!("yes: {}", d.in_use.join("; ")) }
            )?;
        }
        Ok(())
    }
}

/// Options of `config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigOptions {
    /// MiB of 2 MiB hugepages to reserve; 0 leaves the pools alone.
    pub hugemem_mb: u64,
    /// Reserve `hugemem_mb` on each of these nodes instead of in the global pool.
    pub hugenodes: Vec<u32>,
    /// Enable VFIO's unsafe no-IOMMU mode.
    pub noiommu: bool,
    /// Bind only these devices (each must be an unused NVMe controller); empty: every unused one.
    pub pci_allowed: Vec<Bdf>,
    /// Never touch these devices.
    pub pci_blocked: Vec<Bdf>,
    /// Do not bind any device.
    pub skip_bind: bool,
}

impl Default for ConfigOptions {
    fn default() -> Self {
        ConfigOptions {
            hugemem_mb: 2048,
            hugenodes: Vec::new(),
            noiommu: false,
            pci_allowed: Vec::new(),
            pci_blocked: Vec::new(),
            skip_bind: false,
        }
    }
}

pub const HUGETLBFS_MOUNT: &str = "/dev/hugepages";
pub const NOIOMMU_PARAM: &str = "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode";

fn report_pools(out: &mut Report, changes: &[hugepages::PoolChange]) {
    for c in changes {
        if c.allocated == c.requested {
            out.done(format!("{}: {} pages", c.path, c.allocated));
        } else {
            out.warn(format!(
                "{}: requested {} pages, the kernel allocated {} (memory fragmented?)",
                c.path, c.requested, c.allocated
            ));
        }
    }
}

fn ensure_hugetlbfs(system: &System, out: &mut Report) -> Result<()> {
    let mounts = mounts::mounts(&system.sys)?;
    if let Some(m) = mounts::hugetlbfs_mounts(&mounts).first() {
        out.info(format!("hugetlbfs already mounted on {}", m.target));
        return Ok(());
    }
    if !system.run_commands {
        out.skip(format!("mounting hugetlbfs on {HUGETLBFS_MOUNT} (root is {}, not /)", system.sys.root().display()));
        return Ok(());
    }
    system.sys.create_dir_all(HUGETLBFS_MOUNT)?;
    let target = system.sys.path(HUGETLBFS_MOUNT);
    let target = target.to_string_lossy();
    system.run(out, "mount", &["-t", "hugetlbfs", "nodev", &target]);
    Ok(())
}

/// Reserve hugepages, mount hugetlbfs, load vfio-pci and bind unused NVMe devices to it.
///
/// Progress goes to `out` even when an error ends the command. Devices in use are refused with
/// the reason; refusing a device named in `pci_allowed` makes the command fail with
/// [`Error::Refused`] after the other devices were handled.
pub fn config(system: &System, opts: &ConfigOptions, out: &mut Report) -> Result<()> {
    let sys = &system.sys;

    // 1. Hugepages.
    if opts.hugemem_mb > 0 {
        let pages = hugepages::pages_for_mb(opts.hugemem_mb);
        if pages > u32::MAX as u64 {
            return Err(Error::InvalidHugemem(format!("{} MiB is too much", opts.hugemem_mb)));
        }
        let changes = hugepages::reserve(sys, pages, &opts.hugenodes)?;
        report_pools(out, &changes);
    } else {
        out.info("hugepages left unchanged (--hugemem 0)");
    }
    ensure_hugetlbfs(system, out)?;

    if opts.skip_bind {
        return Ok(());
    }

    // 2. VFIO.
    system.run(out, "modprobe", &["vfio-pci"]);
    if opts.noiommu {
        if !sys.exists(NOIOMMU_PARAM) {
            return Err(Error::Step(format!(
                "--noiommu: {NOIOMMU_PARAM} does not exist (is the vfio module loaded, and built with \
                 CONFIG_VFIO_NOIOMMU?)"
            )));
        }
        sys.write(NOIOMMU_PARAM, "Y")?;
        out.done(format!("wrote Y to {NOIOMMU_PARAM}"));
    } else if pci::iommu_group_count(sys)? == 0 {
        out.warn("no IOMMU groups: vfio-pci needs an enabled IOMMU (intel_iommu=on / amd_iommu=on) or --noiommu");
    }
    if !sys.exists(format!("{}/{VFIO_PCI}", pci::DRIVERS)) {
        out.warn(format!(
            "driver {VFIO_PCI} is not registered ({}/{VFIO_PCI} missing); binding will not take",
            pci::DRIVERS
        ));
    }

    // 3. Devices.
    let mounts = mounts::mounts(sys)?;
    let swaps = mounts::swaps(sys)?;
    let explicit = !opts.pci_allowed.is_empty();
    let devices: Vec<NvmeDevice> = if explicit {
        opts.pci_allowed.iter().map(|&b| pci::device(sys, b, &mounts, &swaps)).collect::<Result<_>>()?
    } else {
        pci::nvme_devices(sys, &mounts, &swaps)?
    };
    if devices.is_empty() {
        out.info("no NVMe devices found");
    }
    let mut refused = Vec::new();
    for dev in &devices {
        if opts.pci_blocked.contains(&dev.bdf) {
            out.skip(format!("{} is in --pci-blocked", dev.bdf));
            continue;
        }
        if dev.is_bound_to(VFIO_PCI) {
            out.info(format!("{} already bound to {VFIO_PCI}", dev.bdf));
            continue;
        }
        if dev.is_in_use() {
            let why = dev.in_use.join("; ");
            out.refuse(format!("{} ({}): in use: {why}", dev.bdf, dev.driver.as_deref().unwrap_or("no driver")));
            if explicit {
                refused.push((dev.bdf, why));
            }
            continue;
        }
        if dev.iommu_group.is_none() && !opts.noiommu {
            out.warn(format!("{} has no IOMMU group; vfio-pci will not bind it without --noiommu", dev.bdf));
        }
        for line in pci::bind(sys, dev, VFIO_PCI)? {
            out.done(format!("{}: {line}", dev.bdf));
        }
        if system.run_commands {
            match sys.link_name(format!("{}/driver", dev.dir()))? {
                Some(d) if d == VFIO_PCI => {
                    out.info(format!("{} ({}) -> {VFIO_PCI}", dev.bdf, dev.driver.as_deref().unwrap_or("-")))
                }
                other => out.warn(format!(
                    "{} is bound to {} after probing, not {VFIO_PCI}",
                    dev.bdf,
                    other.as_deref().unwrap_or("no driver")
                )),
            }
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Error::Refused(refused))
    }
}

/// Options of `reset`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResetOptions {
    /// Release only these devices; empty: every NVMe device bound to (or overridden to) vfio-pci.
    pub pci_allowed: Vec<Bdf>,
    /// Leave the hugepage pools alone.
    pub keep_hugepages: bool,
}

/// Give NVMe devices back to the kernel driver and release the 2 MiB hugepages.
pub fn reset(system: &System, opts: &ResetOptions, out: &mut Report) -> Result<()> {
    let sys = &system.sys;
    let mounts = mounts::mounts(sys)?;
    let swaps = mounts::swaps(sys)?;
    let devices: Vec<NvmeDevice> = if opts.pci_allowed.is_empty() {
        pci::nvme_devices(sys, &mounts, &swaps)?
            .into_iter()
            .filter(|d| d.is_bound_to(VFIO_PCI) || d.driver_override.as_deref() == Some(VFIO_PCI))
            .collect()
    } else {
        opts.pci_allowed.iter().map(|&b| pci::device(sys, b, &mounts, &swaps)).collect::<Result<_>>()?
    };
    if devices.is_empty() {
        out.info(format!("no NVMe devices bound to {VFIO_PCI}"));
    }
    for dev in &devices {
        if dev.driver.is_some() && !dev.is_bound_to(VFIO_PCI) && dev.driver_override.is_none() {
            out.info(format!("{} already bound to {}", dev.bdf, dev.driver.as_deref().unwrap_or("-")));
            continue;
        }
        for line in pci::release(sys, dev)? {
            out.done(format!("{}: {line}", dev.bdf));
        }
        if system.run_commands {
            let now = sys.link_name(format!("{}/driver", dev.dir()))?;
            out.info(format!("{} now bound to {}", dev.bdf, now.as_deref().unwrap_or("no driver")));
        }
    }
    if opts.keep_hugepages {
        out.info("hugepages left unchanged (--keep-hugepages)");
    } else {
        report_pools(out, &hugepages::clear(sys)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeTree;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(Clone, Default)]
    struct Recorder(Rc<RefCell<Vec<String>>>, bool);
    impl Exec for Recorder {
        fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
            self.0.borrow_mut().push(format!("{program} {}", args.join(" ")));
            if self.1 {
                Err("exit status: 1: not found".into())
            } else {
                Ok(())
            }
        }
    }

    fn tree() -> FakeTree {
        let t = FakeTree::new();
        t.hugepage_node(0, 0, 0);
        t.hugepage_node(1, 0, 0);
        t.driver("vfio-pci");
        t.nvme("0000:01:00.0", 0, &[1], Some(10));
        t.nvme("0000:02:00.0", 1, &[1], Some(11));
        t.dir("/sys/bus/pci/devices/0000:02:00.0/nvme/nvme1/nvme1n1/nvme1n1p1");
        t.file("/proc/mounts", "/dev/vda1 / ext4 rw 0 0\n/dev/nvme1n1p1 /home ext4 rw 0 0\n");
        t.pci_device("0000:00:1f.2", "0x010601", Some("ahci"), Some(3));
        t
    }

    #[test]
    fn status_reports_nodes_and_devices() {
        let t = tree();
        t.hugepage_node(0, 16, 8);
        t.meminfo(16, 8);
        let s = status(&System::new(t.root())).unwrap();
        assert_eq!(s.meminfo.as_ref().unwrap().total, 16);
        assert_eq!(s.node_pools.len(), 2);
        assert_eq!(s.devices.len(), 2);
        assert_eq!(s.iommu_groups, 3);
        assert!(s.devices[1].is_in_use());
        let text = s.to_string();
        assert!(text.contains("node0"), "{text}");
        assert!(text.contains("0000:01:00.0"), "{text}");
        assert!(text.contains("yes: /dev/nvme1n1p1 is mounted on /home"), "{text}");
        assert!(text.contains("hugetlbfs: not mounted"), "{text}");
        assert!(!text.contains("0000:00:1f.2"), "{text}");
    }

    #[test]
    fn config_binds_unused_devices_and_refuses_used_ones() {
        let t = tree();
        let system = System::new(t.root());
        let mut out = Report::default();
        config(&system, &ConfigOptions { hugemem_mb: 1024, ..Default::default() }, &mut out).unwrap();
        let text = out.to_string();
        assert_eq!(t.read("/proc/sys/vm/nr_hugepages"), "512\n");
        assert_eq!(t.read("/sys/bus/pci/devices/0000:01:00.0/driver_override"), "vfio-pci");
        assert_eq!(t.read("/sys/bus/pci/drivers/nvme/unbind"), "0000:01:00.0");
        assert_eq!(t.read("/sys/bus/pci/drivers_probe"), "0000:01:00.0");
        // The mounted one is untouched and the reason is given.
        assert_eq!(t.read("/sys/bus/pci/devices/0000:02:00.0/driver_override"), "(null)\n");
        assert!(text.contains("refused: 0000:02:00.0 (nvme): in use: /dev/nvme1n1p1 is mounted on /home"), "{text}");
        // Commands are skipped with a fake root.
        assert!(text.contains("skipped: `modprobe vfio-pci`"), "{text}");
        assert!(text.contains("skipped: mounting hugetlbfs"), "{text}");
        assert_eq!(t.read("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode"), "N\n");
    }

    #[test]
    fn config_refuses_an_explicitly_allowed_device_in_use() {
        let t = tree();
        t.file("/proc/swaps", "Filename Type Size Used Priority\n/dev/nvme0n1 partition 100 0 -2\n");
        let system = System::new(t.root());
        let mut out = Report::default();
        let opts =
            ConfigOptions { hugemem_mb: 0, pci_allowed: vec!["0000:01:00.0".parse().unwrap()], ..Default::default() };
        let err = config(&system, &opts, &mut out).unwrap_err();
        assert!(matches!(&err, Error::Refused(v) if v.len() == 1), "{err}");
        assert!(err.to_string().contains("/dev/nvme0n1 is an active swap area"), "{err}");
        assert_eq!(t.read("/sys/bus/pci/drivers_probe"), "");
        assert_eq!(t.read("/proc/sys/vm/nr_hugepages"), "0\n");

        // A non-NVMe or missing device is an error before anything is bound.
        let opts =
            ConfigOptions { hugemem_mb: 0, pci_allowed: vec!["0000:00:1f.2".parse().unwrap()], ..Default::default() };
        assert!(matches!(config(&system, &opts, &mut Report::default()), Err(Error::NotNvme { .. })));
        let opts =
            ConfigOptions { hugemem_mb: 0, pci_allowed: vec!["0000:07:00.0".parse().unwrap()], ..Default::default() };
        assert!(matches!(config(&system, &opts, &mut Report::default()), Err(Error::NoSuchDevice(_))));
    }

    #[test]
    fn config_per_node_noiommu_blocked_and_commands() {
        let t = tree();
        t.file("/proc/mounts", "/dev/vda1 / ext4 rw 0 0\n");
        let rec = Recorder::default();
        let system = System::new(t.root()).with_exec(Box::new(rec.clone()), true);
        let mut out = Report::default();
        let opts = ConfigOptions {
            hugemem_mb: 64,
            hugenodes: vec![1],
            noiommu: true,
            pci_blocked: vec!["0000:02:00.0".parse().unwrap()],
            ..Default::default()
        };
        config(&system, &opts, &mut out).unwrap();
        assert_eq!(t.read("/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages"), "32\n");
        assert_eq!(t.read("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"), "0\n");
        assert_eq!(t.read("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode"), "Y");
        assert_eq!(t.read("/sys/bus/pci/devices/0000:02:00.0/driver_override"), "(null)\n");
        assert_eq!(t.read("/sys/bus/pci/devices/0000:01:00.0/driver_override"), "vfio-pci");
        let ran = rec.0.borrow().clone();
        let mnt = t.path("/dev/hugepages");
        assert_eq!(ran, vec![format!("mount -t hugetlbfs nodev {}", mnt.display()), "modprobe vfio-pci".to_string()]);
        assert!(mnt.is_dir());
        // The fake kernel did not move the device: that is reported.
        assert!(out.contains("bound to nvme after probing"), "{out}");

        // A failing modprobe is reported, not fatal.
        let failing = Recorder(Rc::default(), true);
        let system = System::new(t.root()).with_exec(Box::new(failing), true);
        let mut out = Report::default();
        config(&system, &ConfigOptions { hugemem_mb: 0, ..Default::default() }, &mut out).unwrap();
        assert!(out.contains("warning: `modprobe vfio-pci` failed: exit status: 1: not found"), "{out}");
    }

    #[test]
    fn config_noiommu_without_the_parameter_fails() {
        let t = tree();
        std::fs::remove_file(t.path(NOIOMMU_PARAM)).unwrap();
        let mut out = Report::default();
        let opts = ConfigOptions { hugemem_mb: 0, noiommu: true, ..Default::default() };
        assert!(matches!(config(&System::new(t.root()), &opts, &mut out), Err(Error::Step(_))));
        assert_eq!(t.read("/sys/bus/pci/drivers_probe"), "");
    }

    #[test]
    fn config_keeps_an_existing_hugetlbfs_mount_and_skips_bound_devices() {
        let t = tree();
        t.file("/proc/mounts", "nodev /mnt/huge hugetlbfs rw,pagesize=2M 0 0\n");
        t.symlink("/sys/bus/pci/devices/0000:01:00.0/driver", "../../../../bus/pci/drivers/vfio-pci");
        let rec = Recorder::default();
        let system = System::new(t.root()).with_exec(Box::new(rec.clone()), true);
        let mut out = Report::default();
        config(&system, &ConfigOptions { hugemem_mb: 0, ..Default::default() }, &mut out).unwrap();
        assert!(out.contains("hugetlbfs already mounted on /mnt/huge"), "{out}");
        assert!(out.contains("0000:01:00.0 already bound to vfio-pci"), "{out}");
        assert_eq!(rec.0.borrow().as_slice(), ["modprobe vfio-pci"]);
        assert_eq!(t.read("/sys/bus/pci/drivers/vfio-pci/unbind"), "");
    }

    #[test]
    fn reset_returns_devices_and_frees_hugepages() {
        let t = tree();
        t.file("/proc/sys/vm/nr_hugepages", "1024\n");
        t.hugepage_node(0, 512, 512);
        t.hugepage_node(1, 512, 512);
        t.symlink("/sys/bus/pci/devices/0000:01:00.0/driver", "../../../../bus/pci/drivers/vfio-pci");
        t.file("/sys/bus/pci/devices/0000:01:00.0/driver_override", "vfio-pci\n");
        let mut out = Report::default();
        reset(&System::new(t.root()), &ResetOptions::default(), &mut out).unwrap();
        assert_eq!(t.read("/sys/bus/pci/devices/0000:01:00.0/driver_override"), "\n");
        assert_eq!(t.read("/sys/bus/pci/drivers/vfio-pci/unbind"), "0000:01:00.0");
        assert_eq!(t.read("/sys/bus/pci/drivers_probe"), "0000:01:00.0");
        // The device on nvme is left alone.
        assert_eq!(t.read("/sys/bus/pci/drivers/nvme/unbind"), "");
        assert_eq!(t.read("/proc/sys/vm/nr_hugepages"), "0\n");
        assert_eq!(t.read("/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages"), "0\n");

        let t = tree();
        t.file("/proc/sys/vm/nr_hugepages", "8\n");
        let mut out = Report::default();
        reset(&System::new(t.root()), &ResetOptions { keep_hugepages: true, ..Default::default() }, &mut out).unwrap();
        assert!(out.contains("no NVMe devices bound to vfio-pci"), "{out}");
        assert_eq!(t.read("/proc/sys/vm/nr_hugepages"), "8\n");
    }
}
