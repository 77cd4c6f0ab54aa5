#!/bin/sh
# STEP: direct mode over RDMA: nvmf_tgt (--features rdma, --cpus 0,1) attaches the VFIO-bound emulated controller (bdev_nvme_attach_controller -t PCIe) and exports Nvme0n1 on an NVMe/RDMA listener at the guest's eth0 address (soft-RoCE); the Linux nvme-rdma host: connect, fio crc32c verify (512 B..1 MiB, 4 KiB QD32 randrw), dd write/read-back, disconnect; our host client (host_check --trtype rdma, with a fused Compare and Write on the device) and nvmf-perf -r trtype:rdma --verify at 4 KiB, 128 KiB and 1 MiB; zero copy checked (DMA pools registered for RDMA, data_copied_bytes 0); clean target exit (controller shut down), kernel nvme driver takes the controller back and reads what was written
. /qemu/lib.sh
need_bins nvmf_tgt hugepage-setup host_check nvmf-perf
NQN=nqn.2016-06.io.nvmf-rs:rdma-direct
ADDR=10.0.2.15
PORT=4420
bdf=$(test_ctrl)

# Skips unless nvmf_tgt, host_check and nvmf-perf have RDMA and the image has soft-RoCE.
rdma_need

cleanup() { nvme disconnect -n "$NQN" >/dev/null 2>&1; tgt_stop >/dev/null 2>&1; }
trap cleanup EXIT

rxe_setup "$ADDR"

tgt_direct_export "$bdf" RDMA "$NQN" NVMFRSRDMADIR01 "$ADDR" "$PORT"
grep -i "listening on" "$TGT_LOG"

# The Linux nvme-rdma host.
out=$(x nvme discover -t rdma -a "$ADDR" -s "$PORT" 2>&1); rc=$?
echo "$out" | grep -E 'trtype|subnqn|trsvcid|traddr'
[ $rc = 0 ] || { tail -n 30 "$TGT_LOG"; fail "nvme discover -t rdma"; }
echo "$out" | grep -q "subnqn: *$NQN\$" || fail "discovery log does not list $NQN"

x nvme connect -t rdma -a "$ADDR" -s "$PORT" -n "$NQN" || { tail -n 40 "$TGT_LOG"; dmesg | tail -n 20; fail "nvme connect -t rdma"; }
ctrl=$(nvmf_ctrl_by_nqn "$NQN" "$ADDR") || fail "no controller for $NQN after connect"
[ "$(cat /sys/class/nvme/$ctrl/transport)" = rdma ] || fail "$ctrl is not an rdma controller"
dev=$(wait_ns_blk "$ctrl" 1 20) || fail "namespace 1 of $ctrl did not appear"
echo "connected: $ctrl (rdma), state $(cat /sys/class/nvme/$ctrl/state), namespace 1 = $dev ($(cat /sys/block/${dev#/dev/}/size) sectors)"
out=$(x nvme id-ctrl "/dev/$ctrl" 2>&1) || { echo "$out"; fail "nvme id-ctrl"; }
echo "$out" | grep -E '^(sn|mn|mdts|sgls|subnqn|ioccsz|maxcmd) '
echo "$out" | grep -q "^subnqn *: *$NQN\$" || fail "id-ctrl subnqn is not $NQN"
must nvme list

# Mixed sizes up to 1 MiB (in-capsule, keyed SGL, and more than the emulated controller's
# 512 KiB MDTS underneath), then 4 KiB random read/write with 32 in flight; crc32c verified.
must fio --name=rdma-direct-verify --filename="$dev" --direct=1 --ioengine=libaio --iodepth=4 \
  --rw=randwrite --bsrange=512-1M --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 \
  --verify_state_save=0 --randseed=7
must fio --name=rdma-direct-qd --filename="$dev" --direct=1 --ioengine=libaio --rw=randrw --bs=4k \
  --iodepth=32 --size=8M --offset=64M --verify=crc32c --verify_fatal=1 --verify_state_save=0 --randseed=11

# 2 MiB through the target at 192 MiB (clear of what fio, host_check and nvmf-perf write), kept
# for the check after the kernel re-binds.
PAT_MIB=192
head -c 2097152 /dev/urandom >/tmp/rdma-direct.pattern
x dd if=/tmp/rdma-direct.pattern of="$dev" bs=1M seek=$PAT_MIB count=2 oflag=direct conv=fsync 2>&1 || fail "dd write to $dev"
x dd if="$dev" of=/tmp/rdma-direct.back bs=1M skip=$PAT_MIB count=2 iflag=direct 2>&1 || fail "dd read from $dev"
cmp /tmp/rdma-direct.pattern /tmp/rdma-direct.back || fail "$dev: read back differs"
echo "dd: 2 MiB written and read back identical"

nvme_disconnect_one "$NQN"
wait_until 10 sh -c "! test -e /sys/class/nvme/$ctrl" || fail "$ctrl still present after disconnect"

# Our host client over RDMA (discovery, identify, 512 B..2 MiB split by MDTS, pipelined I/O,
# shutdown; it writes the first few MiB).
host_check_rdma "$ADDR" "$PORT" "$NQN"

# nvmf-perf over RDMA with data verification (prefill, then checked reads) in the first 8, 32
# and 64 MiB: 4 KiB (in-capsule writes), 128 KiB and 1 MiB (keyed SGLs both ways; 1 MiB is more
# than the emulated controller's 512 KiB MDTS underneath).
TRID="trtype:rdma adrfam:ipv4 traddr:$ADDR trsvcid:$PORT subnqn:$NQN"
say "nvmf-perf over RDMA"
x nvmf-perf -r "$TRID" -q 16 -o 4096 -w randrw -M 50 -t 3 --range-mb 8 --verify || { tail -n 30 "$TGT_LOG"; fail "nvmf-perf -r trtype:rdma 4 KiB randrw --verify"; }
x nvmf-perf -r "$TRID" -q 8 -o 131072 -w randrw -M 50 -t 3 --range-mb 32 --verify || { tail -n 30 "$TGT_LOG"; fail "nvmf-perf -r trtype:rdma 128 KiB randrw --verify"; }
x nvmf-perf -r "$TRID" -q 4 -o 1048576 -w randrw -M 50 -t 3 --range-mb 64 --verify || { tail -n 30 "$TGT_LOG"; fail "nvmf-perf -r trtype:rdma 1 MiB randrw --verify"; }

# Zero copy: every transfer above fit the lent buffers (at most 4 I/Os over 128 KiB at once),
# so RDMA READ/WRITE worked on the driver's DMA buffers and nothing went through a bounce copy.
grep "registered NVMe DMA buffer pool" "$TGT_LOG" || fail "no NVMe DMA buffer pool was registered for RDMA"
copied=$(tgt_copied_bytes Nvme0n1)
echo "data_copied_bytes: $copied"
[ "$copied" = 0 ] || fail "direct mode over RDMA copied $copied bytes through bounce buffers"
trap - EXIT
tgt_stop
grep -qi 'panic' "$TGT_LOG" && fail "nvmf_tgt log mentions a panic"

# The controller was shut down cleanly: the kernel driver takes it back and reads the pattern.
nvme_rebind "$bdf"
disk=$(pci_nvme_blk "$bdf")
x dd if="$disk" of=/tmp/rdma-direct.read bs=1M skip=$PAT_MIB count=2 iflag=direct 2>&1 || fail "dd read of $disk"
cmp /tmp/rdma-direct.pattern /tmp/rdma-direct.read || fail "the kernel reads different data than was written through nvmf_tgt over RDMA"
echo "kernel nvme driver reads back the 2 MiB written through nvmf_tgt in direct mode over RDMA"
exit 0
