#!/bin/sh
# STEP: namespace hot add/remove over RPC while the Linux host is connected: nvmf_subsystem_add_ns makes a new /dev/nvmeXn2 appear (AEN, rescan) within 20 s and it carries I/O; nvmf_subsystem_remove_ns makes it disappear; namespace 1 keeps working throughout
. /qemu/lib.sh
need_bins nvmf_tgt
NQN=nqn.2016-06.io.nvmf-rs:hotplug
ADDR=127.0.0.1
PORT=4420

cleanup() { nvme disconnect -n "$NQN" >/dev/null 2>&1; tgt_stop >/dev/null 2>&1; }
trap cleanup EXIT

tgt_start --cpus 0,1 --idle-backoff-us 50 --no-default
must rpc nvmf_create_transport --trtype TCP
must rpc bdev_malloc_create --name Malloc0 --num_blocks 32768 --block_size 512
must rpc nvmf_create_subsystem --nqn "$NQN" --allow_any_host true --str serial_number NVMFRSHOTPLUG01
must rpc nvmf_subsystem_add_ns --nqn "$NQN" --namespace '{"bdev_name":"Malloc0","nsid":1}'
must rpc nvmf_subsystem_add_listener --nqn "$NQN" --json "{\"listen_address\":{\"trtype\":\"TCP\",\"adrfam\":\"IPv4\",\"traddr\":\"$ADDR\",\"trsvcid\":\"$PORT\"}}"

must nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN"
ctrl=$(nvmf_ctrl_by_nqn "$NQN" "$ADDR") || fail "no controller for $NQN after connect"
dev1=$(wait_ns_blk "$ctrl" 1 20) || fail "namespace 1 of $ctrl did not appear"
echo "connected: $ctrl, namespace 1 = $dev1"
nvme_ns_blk "$ctrl" 2 >/dev/null && fail "namespace 2 exists before it was added"
x nvme list-ns "/dev/$ctrl"

# Hot add: a new bdev, then the namespace, while connected.
must rpc bdev_malloc_create --name Malloc1 --num_blocks 16384 --block_size 512
t0=$(cut -d' ' -f1 /proc/uptime)
echo "+ rpc nvmf_subsystem_add_ns --nqn $NQN --namespace '{\"bdev_name\":\"Malloc1\"}'"
out=$(rpc nvmf_subsystem_add_ns --nqn "$NQN" --namespace '{"bdev_name":"Malloc1"}' 2>&1) || { echo "$out"; fail "nvmf_subsystem_add_ns"; }
echo "$out"
[ "$(echo "$out" | tr -d ' \n')" = 2 ] || fail "add_ns returned '$out', expected NSID 2"
dev2=$(wait_ns_blk "$ctrl" 2 20) || { dmesg | tail -n 20; x nvme list-ns "/dev/$ctrl"; fail "namespace 2 did not appear on the host within 20 s (no AEN / rescan?)"; }
t1=$(cut -d' ' -f1 /proc/uptime)
echo "namespace 2 appeared as $dev2 after $(awk "BEGIN{print $t1 - $t0}")s"
out=$(x nvme list 2>&1); echo "$out"
echo "$out" | grep -q "^$dev2 " || fail "nvme list does not show $dev2"
x nvme list-ns "/dev/$ctrl"
[ "$(cat /sys/block/${dev2#/dev/}/size)" = 16384 ] || fail "$dev2 has $(cat /sys/block/${dev2#/dev/}/size) sectors, expected 16384"
dd_verify "$dev2" 2
dd_verify "$dev1" 1
dmesg | grep -iE 'nvme|rescan|attr' | tail -n 5

# Hot remove.
t0=$(cut -d' ' -f1 /proc/uptime)
must rpc nvmf_subsystem_remove_ns --nqn "$NQN" --nsid 2
wait_until 20 sh -c "! test -b $dev2" || fail "$dev2 still present 20 s after nvmf_subsystem_remove_ns"
t1=$(cut -d' ' -f1 /proc/uptime)
echo "$dev2 disappeared after $(awk "BEGIN{print $t1 - $t0}")s"
out=$(x nvme list 2>&1); echo "$out"
echo "$out" | grep -q "^$dev2 " && fail "nvme list still shows $dev2"
rpc nvmf_get_subsystems --nqn "$NQN" | grep -q '"bdev_name": *"Malloc1"' && fail "nvmf_get_subsystems still lists Malloc1"
must rpc bdev_malloc_delete --name Malloc1
dd_verify "$dev1" 1
[ "$(cat /sys/class/nvme/$ctrl/state)" = live ] || fail "$ctrl is $(cat /sys/class/nvme/$ctrl/state), not live"

nvme_disconnect_one "$NQN"
trap - EXIT
tgt_stop
exit 0
