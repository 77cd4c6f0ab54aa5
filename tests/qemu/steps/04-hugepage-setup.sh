#!/bin/sh
# STEP: hugepage-setup in the guest: status; config binds the emulated NVMe controller to vfio-pci (group node appears) and reserves hugepages; reset gives it back to nvme (block device returns); config again leaves it on vfio-pci
# PROFILES: iommu noiommu
. /qemu/lib.sh
need_bins hugepage-setup
bdf=$(test_ctrl)
noiommu=
[ "$IOMMU_PROFILE" = noiommu ] && noiommu=--noiommu
say "controller $bdf, profile ${IOMMU_PROFILE:-iommu}"

# Start from the kernel driver (a step before may have left it on vfio-pci).
[ "$(pci_driver "$bdf")" = nvme ] || must hugepage-setup reset --pci-allowed "$bdf" --keep-hugepages
wait_until 20 pci_nvme_blk "$bdf" || fail "$bdf has no block device on nvme"
disk=$(pci_nvme_blk "$bdf")

out=$(x hugepage-setup status 2>&1) || { echo "$out"; fail "hugepage-setup status"; }
echo "$out"
echo "$out" | grep -q "$bdf" || fail "status does not list $bdf"
echo "$out" | grep "$bdf" | grep -q nvme || fail "status does not show $bdf on nvme"

echo 0 >/proc/sys/vm/nr_hugepages
out=$(x hugepage-setup config --hugemem 256 $noiommu 2>&1); rc=$?
echo "$out"
[ $rc = 0 ] || fail "hugepage-setup config (status $rc)"
[ "$(pci_driver "$bdf")" = vfio-pci ] || fail "after config $bdf is on '$(pci_driver "$bdf")', not vfio-pci"
wait_until 5 vfio_node "$bdf" || fail "no /dev/vfio/<group> node for $bdf"
node=$(vfio_node "$bdf")
echo "$bdf -> $(readlink /sys/bus/pci/devices/$bdf/driver), $node"
if [ "$IOMMU_PROFILE" = noiommu ]; then
  case $node in /dev/vfio/noiommu-*) ;; *) fail "expected a noiommu group node, got $node" ;; esac
  [ "$(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode)" = Y ] || fail "enable_unsafe_noiommu_mode is not Y"
else
  case $node in /dev/vfio/noiommu-*) fail "IOMMU profile but $node" ;; esac
fi
[ -e "$disk" ] && fail "$disk still exists with the controller on vfio-pci"
hp=$(cat /proc/sys/vm/nr_hugepages)
echo "hugepages: $hp"
[ "$hp" -ge 128 ] || fail "config --hugemem 256 reserved $hp pages, not 128"
grep -q ' hugetlbfs ' /proc/mounts || fail "no hugetlbfs mount"
out=$(hugepage-setup status 2>&1); echo "$out" | grep "$bdf"
echo "$out" | grep "$bdf" | grep -q vfio-pci || fail "status does not show $bdf on vfio-pci"

out=$(x hugepage-setup reset 2>&1); rc=$?
echo "$out"
[ $rc = 0 ] || fail "hugepage-setup reset (status $rc)"
wait_until 20 pci_nvme_blk "$bdf" || fail "no block device for $bdf after reset"
[ "$(pci_driver "$bdf")" = nvme ] || fail "after reset $bdf is on '$(pci_driver "$bdf")'"
echo "$bdf -> nvme, $(pci_nvme_blk "$bdf") is back, driver_override '$(cat /sys/bus/pci/devices/$bdf/driver_override)'"
[ "$(cat /proc/sys/vm/nr_hugepages)" = 0 ] || fail "reset left $(cat /proc/sys/vm/nr_hugepages) hugepages"
dd if="$(pci_nvme_blk "$bdf")" of=/dev/null bs=4k count=16 iflag=direct 2>/dev/null || fail "cannot read $(pci_nvme_blk "$bdf") after reset"

# Leave it bound to vfio-pci with hugepages for the driver steps.
vfio_bind "$bdf" 256
exit 0
