#!/bin/sh
# STEP: ANA with Linux native NVMe multipath: one subsystem with ANA reporting on two listeners, the host connects through both (one multipath head device), fio verifies (crc32c, verify_backlog) while each listener in turn goes inaccessible through nvmf_subsystem_listener_set_ana_state and back: the kernel sees each path's ana_state change, I/O moves to the other path, and fio finishes with zero errors
. /qemu/lib.sh
need_bins nvmf_tgt
command -v fio >/dev/null 2>&1 || skip "fio is not in the guest"
NQN=nqn.2016-06.io.nvmf-rs:ana
ADDR=127.0.0.1
P1=4420
P2=4421

cleanup() { kill "$FIO" 2>/dev/null; nvme disconnect -n "$NQN" >/dev/null 2>&1; tgt_stop >/dev/null 2>&1; }
trap cleanup EXIT

[ "$(cat /sys/module/nvme_core/parameters/multipath 2>/dev/null)" = Y ] || skip "native NVMe multipath is off in this kernel"

listen_json() { echo "{\"listen_address\":{\"trtype\":\"TCP\",\"adrfam\":\"IPv4\",\"traddr\":\"$ADDR\",\"trsvcid\":\"$1\"}}"; }
set_ana() {  # set_ana PORT STATE
  must rpc nvmf_subsystem_listener_set_ana_state --nqn "$NQN" --str ana_state "$2" --json "$(listen_json "$1")"
}

tgt_start --cpus 0,1 --idle-backoff-us 50 --no-default
must rpc nvmf_create_transport --trtype TCP
must rpc bdev_malloc_create --name Malloc0 --num_blocks 65536 --block_size 512
must rpc nvmf_create_subsystem --nqn "$NQN" --allow_any_host true --ana_reporting true --str serial_number NVMFRSANA0000001
must rpc nvmf_subsystem_add_ns --nqn "$NQN" --namespace '{"bdev_name":"Malloc0","nsid":1}'
for p in $P1 $P2; do
  must rpc nvmf_subsystem_add_listener --nqn "$NQN" --json "$(listen_json $p)"
done
# The controller connected through port $1.
ctrl_on_port() {
  for _c in /sys/class/nvme/nvme*; do
    [ "$(cat "$_c/subsysnqn" 2>/dev/null)" = "$NQN" ] && grep -q "trsvcid=$1" "$_c/address" 2>/dev/null \
      && { echo "${_c##*/}"; return 0; }
  done
  return 1
}
# The path node (nvmeXcYnZ) of namespace 1 through controller $1.
path_of() {
  for _p in /sys/class/nvme/"$1"/nvme*c*n1; do [ -e "$_p" ] && { echo "$_p"; return 0; }; done
  return 1
}
ana_of() { cat "$(path_of "$1")/ana_state"; }
# Writes completed through the path of controller $1 (field 5 of its stat).
writes_of() { awk '{print $5}' "$(path_of "$1")/stat"; }
ana_is() { [ "$(ana_of "$1")" = "$2" ]; }
grew() { [ "$(writes_of "$1")" -gt "$2" ]; }

must nvme connect -t tcp -a "$ADDR" -s "$P1" -n "$NQN"
must nvme connect -t tcp -a "$ADDR" -s "$P2" -n "$NQN"
C1=$(ctrl_on_port $P1) || fail "no controller through port $P1"
C2=$(ctrl_on_port $P2) || fail "no controller through port $P2"
DEV=$(wait_ns_blk "$C1" 1 20) || fail "namespace 1 of $C1 did not appear"
[ "$(nvme_ns_blk "$C2" 1)" = "$DEV" ] || fail "the two paths did not join one multipath device ($DEV, $(nvme_ns_blk "$C2" 1))"
path_of "$C1" >/dev/null && path_of "$C2" >/dev/null || fail "no path nodes (nvmeXcYn1) for $C1 and $C2"
echo "multipath head $DEV: $C1 via $P1 ($(ana_of "$C1")), $C2 via $P2 ($(ana_of "$C2"))"
ana_is "$C1" optimized && ana_is "$C2" optimized || fail "paths are not both optimized at start"
x nvme ana-log "/dev/$C1" 2>&1 | head -n 20

echo "+ fio --name=ana (randwrite 4k..64k, crc32c, verify_backlog, until stopped)"
# Started directly (not through x), so $! is fio itself and SIGINT reaches it.
fio --name=ana --filename="$DEV" --direct=1 --ioengine=libaio --iodepth=8 --rw=randwrite --bsrange=4k-64k \
  --size=24M --verify=crc32c --verify_backlog=128 --verify_fatal=1 --time_based --runtime=600 \
  --eta=never --output=/tmp/ana-fio.txt &
FIO=$!

# fio runs until both turns are done (however slow the emulation), then is stopped: with
# verify_fatal it would have exited early on any error.
fio_alive() { kill -0 "$FIO" 2>/dev/null || { cat /tmp/ana-fio.txt; fail "fio stopped early (an I/O or verify error?)"; }; }
# Each listener in turn: inaccessible (the kernel moves I/O to the other path), then back.
for turn in "$P1 $C1 $C2" "$P2 $C2 $C1"; do
  set -- $turn
  port=$1 down=$2 up=$3
  fio_alive
  wait_until 20 grew "$up" 0 || wait_until 20 grew "$down" 0 || fail "no writes reach the target"
  set_ana "$port" inaccessible
  wait_until 20 ana_is "$down" inaccessible || fail "$down's path did not become inaccessible (it is $(ana_of "$down"))"
  ana_is "$up" optimized || fail "$up's path is $(ana_of "$up"), expected optimized"
  # In-flight I/O on the old path drains; from then on only the other path carries writes.
  sleep 1
  d0=$(writes_of "$down") u0=$(writes_of "$up")
  wait_until 20 grew "$up" "$u0" || fail "writes did not continue through $up while $down is inaccessible"
  sleep 2
  [ "$(writes_of "$down")" = "$d0" ] || fail "writes still go through inaccessible $down ($d0 -> $(writes_of "$down"))"
  echo "port $port inaccessible: $up carried $(( $(writes_of "$up") - u0 )) writes, $down none"
  set_ana "$port" optimized
  wait_until 20 ana_is "$down" optimized || fail "$down's path did not come back to optimized"
done
echo "listeners: $(rpc nvmf_subsystem_get_listeners --nqn "$NQN" | tr -d ' \n' | cut -c1-300)..."
fio_alive
kill -INT "$FIO"; wait "$FIO"; FIO=
cat /tmp/ana-fio.txt
grep -q "err= 0" /tmp/ana-fio.txt || fail "fio reports errors across the ANA changes"
# Both paths optimized again: a full write + verify pass through the multipath device.
fio_verify "$DEV" 8M --eta=never

must nvme disconnect -n "$NQN"
trap - EXIT
tgt_stop
exit 0
