#!/bin/sh
# STEP: our userspace driver on real VFIO (nvme_check): bring-up, identify, 4 queue pairs on 4 threads with read-back verify, 1 MiB PRP-list transfer, clean shutdown; then the kernel nvme driver re-binds and dd reads back the marker our driver wrote
# PROFILES: iommu noiommu
. /qemu/lib.sh
need_bins hugepage-setup nvme_check
bdf=$(test_ctrl)
MARK_LBA=32768
say "controller $bdf, profile ${IOMMU_PROFILE:-iommu}"

[ "$(pci_driver "$bdf")" = vfio-pci ] && vfio_node "$bdf" >/dev/null || vfio_bind "$bdf" 256
echo "hugepages free: $(awk '/HugePages_Free/{print $2}' /proc/meminfo)"

rm -f /tmp/mark.bin
t0=$(cut -d. -f1 /proc/uptime)
x timeout 240 nvme_check "$bdf" --threads 4 --ios 256 --big 1048576 --mark-lba $MARK_LBA --mark-file /tmp/mark.bin >/tmp/nvme_check.out 2>&1
rc=$?
cat /tmp/nvme_check.out
echo "nvme_check: exit status $rc after $(($(cut -d. -f1 /proc/uptime) - t0))s"
[ $rc = 0 ] || fail "nvme_check failed (status $rc)"
grep -q '^nvme_check: PASS' /tmp/nvme_check.out || fail "nvme_check did not report PASS"
if [ "$IOMMU_PROFILE" = noiommu ]; then
  grep -q 'CHECK bring-up ok:.*no-IOMMU' /tmp/nvme_check.out || fail "nvme_check did not run in no-IOMMU mode"
else
  grep -q 'CHECK bring-up ok:.*VFIO IOMMU' /tmp/nvme_check.out || fail "nvme_check did not run in IOMMU mode"
fi
[ -s /tmp/mark.bin ] || fail "nvme_check wrote no marker file"

# The kernel driver takes the controller back and must see what our driver wrote.
nvme_rebind "$bdf"
disk=$(pci_nvme_blk "$bdf")
bs=$(cat /sys/block/${disk#/dev/}/queue/logical_block_size)
len=$(wc -c </tmp/mark.bin)
x dd if="$disk" of=/tmp/mark.read bs=$bs skip=$MARK_LBA count=$((len / bs)) iflag=direct 2>&1 || fail "dd read of $disk"
cmp /tmp/mark.bin /tmp/mark.read || fail "the kernel reads different data at LBA $MARK_LBA than nvme_check wrote"
echo "kernel nvme driver read back $len bytes at LBA $MARK_LBA identical: '$(head -c 60 /tmp/mark.read | head -1)'"
exit 0
