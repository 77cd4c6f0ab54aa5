#!/bin/sh
# STEP: nvmf_tgt in direct mode in the guest (--cpus 0,1): bdev_nvme_attach_controller -t PCIe on the VFIO-bound emulated controller, namespace Nvme0n1 exported over NVMe/TCP on 127.0.0.1; the Linux host: discover, connect, fio crc32c verify through /dev/nvmeXnY, disconnect, clean target exit (controller shut down), kernel nvme driver takes the controller back
. /qemu/lib.sh
need_bins nvmf_tgt hugepage-setup
NQN=nqn.2016-06.io.nvmf-rs:direct
ADDR=127.0.0.1
PORT=4420
bdf=$(test_ctrl)

cleanup() { nvme disconnect -n "$NQN" >/dev/null 2>&1; tgt_stop >/dev/null 2>&1; }
trap cleanup EXIT

tgt_direct_export "$bdf" TCP "$NQN" NVMFRSDIRECT01 "$ADDR" "$PORT"

out=$(x nvme discover -t tcp -a "$ADDR" -s "$PORT" 2>&1); rc=$?
echo "$out" | grep -E 'subnqn|trsvcid|traddr'
[ $rc = 0 ] || fail "nvme discover"
echo "$out" | grep -q "subnqn: *$NQN\$" || fail "discovery log does not list $NQN"

must nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN"
ctrl=$(nvmf_ctrl_by_nqn "$NQN" "$ADDR") || fail "no controller for $NQN after connect"
dev=$(wait_ns_blk "$ctrl" 1 20) || fail "namespace 1 of $ctrl did not appear"
echo "connected: $ctrl, state $(cat /sys/class/nvme/$ctrl/state), namespace 1 = $dev ($(cat /sys/block/${dev#/dev/}/size) sectors)"
nvme id-ctrl "/dev/$ctrl" | grep -E '^(sn|mn|mdts|subnqn) '
must nvme list

fio_verify "$dev" 32M --numjobs=2 --offset_increment=64M
# 2 MiB through the target at offset 0, kept for the check after the kernel re-binds.
head -c 2097152 /dev/urandom >/tmp/direct.pattern
x dd if=/tmp/direct.pattern of="$dev" bs=1M count=2 oflag=direct conv=fsync 2>&1 || fail "dd write to $dev"
x dd if="$dev" of=/tmp/direct.back bs=1M count=2 iflag=direct 2>&1 || fail "dd read from $dev"
cmp /tmp/direct.pattern /tmp/direct.back || fail "$dev: read back differs"

nvme_disconnect_one "$NQN"
wait_until 10 sh -c "! test -e /sys/class/nvme/$ctrl" || fail "$ctrl still present after disconnect"
# Bytes that took a bounce copy (I/Os beyond the lent buffers: fio's 2 x 8 writes of up to
# 256 KiB may outnumber a reactor's eight 1 MiB buffers); informational.
echo "data_copied_bytes: $(tgt_copied_bytes Nvme0n1)"
trap - EXIT
tgt_stop
grep -qi 'panic' "$TGT_LOG" && fail "nvmf_tgt log mentions a panic"

# The controller was shut down cleanly: the kernel driver takes it back, and the data fio's
# last job wrote through the target is there.
nvme_rebind "$bdf"
disk=$(pci_nvme_blk "$bdf")
x dd if="$disk" of=/tmp/direct.read bs=1M count=2 iflag=direct 2>&1 || fail "dd read of $disk"
cmp /tmp/direct.pattern /tmp/direct.read || fail "the kernel reads different data than was written through nvmf_tgt"
echo "kernel nvme driver reads back the 2 MiB written through nvmf_tgt in direct mode"
exit 0
