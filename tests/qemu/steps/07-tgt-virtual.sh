#!/bin/sh
# STEP: nvmf_tgt in virtual mode in the guest (--cpus 0,1, --json): Malloc and File (AIO) bdevs as two namespaces; the Linux host: discovery, connect, id-ctrl, id-ns, list-subsys, fio crc32c verify on both namespaces, host-NQN denial on a restricted subsystem, disconnect, clean target exit
. /qemu/lib.sh
need_bins nvmf_tgt
NQN=nqn.2016-06.io.nvmf-rs:virtual
DENY_NQN=nqn.2016-06.io.nvmf-rs:restricted
OTHER_HOST=nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-0000000000aa
ADDR=127.0.0.1
PORT=4420

cleanup() { nvme disconnect -n "$NQN" >/dev/null 2>&1; nvme disconnect -n "$DENY_NQN" >/dev/null 2>&1; tgt_stop >/dev/null 2>&1; }
trap cleanup EXIT

# The File bdev: a 64 MiB file (hugepage-free memory; /tmp is tmpfs).
rm -f /tmp/file0.img
dd if=/dev/zero of=/tmp/file0.img bs=1M count=64 2>/dev/null || fail "cannot create /tmp/file0.img"
listener() { echo "{\"method\": \"nvmf_subsystem_add_listener\", \"params\": {\"nqn\": \"$1\", \"listen_address\": {\"trtype\": \"TCP\", \"adrfam\": \"IPv4\", \"traddr\": \"$ADDR\", \"trsvcid\": \"$PORT\"}}}"; }
cat >/tmp/tgt.json <<JSON
{"subsystems": [
  {"subsystem": "bdev", "config": [
    {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 131072, "block_size": 512}},
    {"method": "bdev_aio_create", "params": {"name": "File0", "filename": "/tmp/file0.img", "block_size": 4096}},
    {"method": "bdev_malloc_create", "params": {"name": "Malloc1", "num_blocks": 8192, "block_size": 512}}]},
  {"subsystem": "nvmf", "config": [
    {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
    {"method": "nvmf_create_subsystem", "params": {"nqn": "$NQN", "allow_any_host": true, "serial_number": "NVMFRSVIRT0001", "model_number": "nvmf-rs virtual"}},
    {"method": "nvmf_subsystem_add_ns", "params": {"nqn": "$NQN", "namespace": {"bdev_name": "Malloc0", "nsid": 1}}},
    {"method": "nvmf_subsystem_add_ns", "params": {"nqn": "$NQN", "namespace": {"bdev_name": "File0", "nsid": 2}}},
    $(listener "$NQN"),
    {"method": "nvmf_create_subsystem", "params": {"nqn": "$DENY_NQN", "allow_any_host": false, "serial_number": "NVMFRSDENY0001"}},
    {"method": "nvmf_subsystem_add_host", "params": {"nqn": "$DENY_NQN", "host": "$OTHER_HOST"}},
    {"method": "nvmf_subsystem_add_ns", "params": {"nqn": "$DENY_NQN", "namespace": {"bdev_name": "Malloc1"}}},
    $(listener "$DENY_NQN")]}
]}
JSON
tgt_start --cpus 0,1 --idle-backoff-us 50 --no-default --json /tmp/tgt.json
x rpc framework_get_reactors | grep -E '"lcore"' | tr -d ' ' | xargs echo "reactors:"
[ "$(rpc framework_get_reactors | grep -c '"lcore"')" = 2 ] || fail "expected 2 reactors (one per guest CPU)"

out=$(x nvme discover -t tcp -a "$ADDR" -s "$PORT" 2>&1); rc=$?
echo "$out"
[ $rc = 0 ] || fail "nvme discover"
echo "$out" | grep -q "subnqn: *$NQN\$" || fail "discovery log does not list $NQN"

must nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN"
ctrl=$(nvmf_ctrl_by_nqn "$NQN" "$ADDR") || fail "no controller for $NQN after connect"
dev1=$(wait_ns_blk "$ctrl" 1 20) || fail "namespace 1 of $ctrl did not appear"
dev2=$(wait_ns_blk "$ctrl" 2 20) || fail "namespace 2 of $ctrl did not appear"
echo "connected: $ctrl, state $(cat /sys/class/nvme/$ctrl/state); ns 1 = $dev1, ns 2 = $dev2"

out=$(x nvme id-ctrl "/dev/$ctrl" 2>&1) || { echo "$out"; fail "nvme id-ctrl"; }
echo "$out" | grep -E '^(vid|sn|mn|fr|mdts|cntlid|ver|oacs|nn|sgls|subnqn|ioccsz|iorcsz|maxcmd|oaes) '
echo "$out" | grep -q "^subnqn *: *$NQN\$" || fail "id-ctrl subnqn is not $NQN"
echo "$out" | grep -q "^sn *: *NVMFRSVIRT0001" || fail "id-ctrl sn is not NVMFRSVIRT0001"
echo "$out" | grep -q "^mn *: *nvmf-rs virtual" || fail "id-ctrl mn is not 'nvmf-rs virtual'"
nn=$(echo "$out" | awk '/^nn /{print $3}')
[ "$((nn))" -ge 2 ] || fail "id-ctrl nn=$nn"

for pair in "1 $dev1 131072 512" "2 $dev2 16384 4096"; do
  set -- $pair
  out=$(x nvme id-ns "$2" 2>&1) || { echo "$out"; fail "nvme id-ns $2"; }
  echo "$out" | grep -E '^(nsze|ncap|nuse|nlbaf|flbas|nguid|eui64|lbaf  0) '
  nsze=$(echo "$out" | awk '/^nsze/{print $3}')
  [ "$((nsze))" = "$3" ] || fail "namespace $1: nsze $nsze, expected $3"
  [ "$(cat /sys/block/${2#/dev/}/queue/logical_block_size)" = "$4" ] || fail "namespace $1: block size $(cat /sys/block/${2#/dev/}/queue/logical_block_size), expected $4"
done

out=$(x nvme list-subsys 2>&1) || { echo "$out"; fail "nvme list-subsys"; }
echo "$out"
echo "$out" | grep -q "$NQN" || fail "list-subsys does not show $NQN"
echo "$out" | grep -A3 "$NQN" | grep -q "tcp traddr=$ADDR,trsvcid=$PORT.* live" || fail "list-subsys: no live tcp path to $NQN"
must nvme list

fio_verify "$dev1" 16M
fio_verify "$dev2" 16M

# Host NQN denial: the restricted subsystem admits only $OTHER_HOST.
say "host NQN denial: $DENY_NQN allows only $OTHER_HOST, we are $(cat /etc/nvme/hostnqn)"
out=$(x nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$DENY_NQN" 2>&1); rc=$?
echo "$out"
[ $rc != 0 ] || fail "nvme connect to $DENY_NQN succeeded with a host NQN that is not allowed"
nvmf_ctrl_by_nqn "$DENY_NQN" >/dev/null && fail "a controller for $DENY_NQN exists after the refused connect"
echo "refused as expected (status $rc)"

nvme_disconnect_one "$NQN"
wait_until 10 sh -c "! test -e /sys/class/nvme/$ctrl" || fail "$ctrl still present after disconnect"
trap - EXIT
tgt_stop
exit 0
