//! Runs the `hugepage-setup` binary against a fake sysfs/procfs tree.

#![forbid(unsafe_code)]

use hugepage_setup::testing::FakeTree;
use std::process::{Command, Output};

fn run(t: &FakeTree, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hugepage-setup"))
        .arg("--root")
        .arg(t.root())
        .args(args)
        .output()
        .expect("run hugepage-setup")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn tree() -> FakeTree {
    let t = FakeTree::new();
    t.hugepage_node(0, 4, 2);
    t.driver("vfio-pci");
    t.nvme("0000:01:00.0", 0, &[1], Some(7));
    t.nvme("0000:02:00.0", 1, &[1], Some(8));
    t.dir("/sys/bus/pci/devices/0000:02:00.0/nvme/nvme1/nvme1n1/holders/md127");
    t
}

#[test]
fn status_lists_devices_and_usage() {
    let t = tree();
    let o = run(&t, &["status"]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(s.contains("node0"), "{s}");
    assert!(s.contains("0000:01:00.0"), "{s}");
    assert!(s.contains("yes: /dev/nvme1n1 is held by md127"), "{s}");
}

#[test]
fn config_then_reset() {
    let t = tree();
    let o = run(&t, &["config", "--hugemem", "16"]);
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert_eq!(t.read("/proc/sys/vm/nr_hugepages"), "8\n");
    assert_eq!(t.read("/sys/bus/pci/devices/0000:01:00.0/driver_override"), "vfio-pci");
    assert_eq!(t.read("/sys/bus/pci/drivers/nvme/unbind"), "0000:01:00.0");
    assert_eq!(t.read("/sys/bus/pci/drivers_probe"), "0000:01:00.0");
    assert!(s.contains("refused: 0000:02:00.0 (nvme): in use: /dev/nvme1n1 is held by md127"), "{s}");
    assert!(s.contains("skipped: `modprobe vfio-pci`"), "{s}");

    // Simulate the kernel's bind, then reset.
    t.symlink("/sys/bus/pci/devices/0000:01:00.0/driver", "../../../../bus/pci/drivers/vfio-pci");
    let o = run(&t, &["reset"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(t.read("/sys/bus/pci/devices/0000:01:00.0/driver_override"), "\n");
    assert_eq!(t.read("/sys/bus/pci/drivers/vfio-pci/unbind"), "0000:01:00.0");
    assert_eq!(t.read("/proc/sys/vm/nr_hugepages"), "0\n");
}

#[test]
fn explicit_device_in_use_fails_with_the_reason() {
    let t = tree();
    let o = run(&t, &["config", "--hugemem", "0", "--pci-allowed", "0000:02:00.0,01:00.0"]);
    let s = text(&o);
    assert!(!o.status.success(), "{s}");
    assert!(s.contains("error: refused to bind 0000:02:00.0: /dev/nvme1n1 is held by md127"), "{s}");
    // The other allowed device was still bound.
    assert_eq!(t.read("/sys/bus/pci/devices/0000:01:00.0/driver_override"), "vfio-pci");
    assert_eq!(t.read("/sys/bus/pci/devices/0000:02:00.0/driver_override"), "(null)\n");
}

#[test]
fn bad_arguments_are_rejected() {
    let t = tree();
    let o = run(&t, &["config", "--pci-allowed", "nonsense"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("invalid PCI address"), "{}", text(&o));
    let o = run(&t, &["config", "--hugenode", "5", "--hugemem", "2"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("NUMA node 5 not found"), "{}", text(&o));
}
