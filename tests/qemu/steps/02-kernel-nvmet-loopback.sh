#!/bin/sh
# STEP: Linux kernel target (nvmet + nvmet-tcp, null_blk namespace) on the guest's 127.0.0.1:4420; nvme discover/connect/list, dd + fio crc32c verify, disconnect
. /qemu/lib.sh

NQN=nqn.2016-06.io.nvmf-rs:kernel-loop
ADDR=127.0.0.1
PORT=4420

cleanup() {
  nvme disconnect -n "$NQN" >/dev/null 2>&1
  nvmet_teardown "$NQN" 1
}
trap cleanup EXIT

null_blk_setup 1 || fail "null_blk (memory_backed) did not come up"
nvmet_setup "$NQN" "$ADDR" "$PORT" /dev/nullb0 1 || fail "nvmet configfs setup"

out=$(x nvme discover -t tcp -a "$ADDR" -s "$PORT" 2>&1); rc=$?
echo "$out"
[ $rc = 0 ] || fail "nvme discover"
echo "$out" | grep -q "subnqn: *$NQN" || fail "discovery log does not list $NQN"

must nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN"
ctrl=$(nvmf_ctrl_by_nqn "$NQN") || fail "no controller for $NQN after connect"
dev=$(wait_ns_blk "$ctrl" 1 20) || fail "namespace 1 of $ctrl did not appear"
echo "connected: $ctrl, namespace 1 = $dev, state $(cat /sys/class/nvme/$ctrl/state)"
must nvme list
nvme id-ctrl "/dev/$ctrl" | grep -E '^(mn|subnqn|ioccsz|iorcsz|mdts) ' || fail "nvme id-ctrl /dev/$ctrl"

dd_verify "$dev" 4
fio_verify "$dev" 16M

out=$(x nvme disconnect -n "$NQN" 2>&1); rc=$?
echo "$out"
[ $rc = 0 ] || fail "nvme disconnect"
echo "$out" | grep -q 'disconnected 1 controller' || fail "nvme disconnect did not disconnect 1 controller"
wait_until 10 sh -c "! test -e /sys/class/nvme/$ctrl" || fail "$ctrl still present after disconnect"
trap - EXIT
nvmet_teardown "$NQN" 1
[ -d "$NVMET/ports/1" ] && fail "nvmet port 1 still exists after teardown"
exit 0
