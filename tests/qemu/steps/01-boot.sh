#!/bin/sh
# STEP: modules load, the emulated NVMe controller (class 0x010802) is bound to nvme and its block device works, eth0/IOMMU/hugepages are up, nvme-cli and fio run
# PROFILES: iommu auth
. /qemu/lib.sh

say "kernel $(uname -r), $(nproc) CPUs"
if [ -s /tmp/boot-modules.failed ]; then
  cat /tmp/boot-modules.failed
  fail "boot modules failed to load"
fi
for m in configfs e1000e nvme nvme_core nvme_fabrics nvme_tcp vfio vfio_pci vfio_iommu_type1; do
  module_loaded "$m" || fail "module $m is not loaded"
done
echo "modules loaded: $(cut -d' ' -f1 /proc/modules | sort | xargs)"

ctrls=$(nvme_pci_ctrls)
[ -n "$ctrls" ] || fail "no PCI device of class 0x010802"
for bdf in $ctrls; do
  d=/sys/bus/pci/devices/$bdf
  drv=$(basename "$(readlink "$d/driver")" 2>/dev/null)
  grp=$(basename "$(readlink "$d/iommu_group")" 2>/dev/null)
  echo "NVMe controller $bdf vendor=$(cat $d/vendor) device=$(cat $d/device) driver=$drv iommu_group=$grp"
  [ "$drv" = nvme ] || fail "$bdf is not bound to the nvme driver"
  [ -n "$grp" ] || fail "$bdf has no IOMMU group (is intel-iommu on?)"
  [ "$(ls $d/iommu_group/devices | wc -l)" = 1 ] || echo "note: IOMMU group $grp has $(ls $d/iommu_group/devices | xargs)"
done
[ -e /dev/vfio/vfio ] || fail "/dev/vfio/vfio missing"
echo "IOMMU groups: $(ls /sys/kernel/iommu_groups | wc -l)"

wait_until 10 test -b /dev/nvme0n1 || fail "/dev/nvme0n1 did not appear"
echo "nvme0n1: $(cat /sys/block/nvme0n1/size) sectors of $(cat /sys/block/nvme0n1/queue/logical_block_size) bytes"
must nvme list
nvme id-ctrl /dev/nvme0 | grep -E '^(vid|sn|mn|fr|mdts|nn) ' || fail "nvme id-ctrl /dev/nvme0"
must nvme id-ns /dev/nvme0n1 -H | grep -E '^(nsze|ncap|flbas)|in use' 
dd_verify /dev/nvme0n1 4

state=$(cat /sys/class/net/eth0/operstate)
[ "$state" = up ] || fail "eth0 is $state"
ip -4 addr show dev eth0 | grep -q 'inet 10.0.2.15/24' || fail "eth0 has no 10.0.2.15/24"
ip -4 addr show dev eth0 | grep inet

hp=$(cat /proc/sys/vm/nr_hugepages)
echo "hugepages: $hp x $(awk '/Hugepagesize/{print $2 $3}' /proc/meminfo)"
[ "$hp" -gt 0 ] || fail "no hugepages reserved"
grep -q ' /sys/kernel/config configfs' /proc/mounts || fail "configfs not mounted"

fio --version || fail "fio does not run"
[ -n "$OUR_BINS" ] && echo "our binaries in /usr/local/bin: $OUR_BINS"
exit 0
