#!/bin/sh
# STEP: durability on File-backed namespaces: the Linux host sees a volatile write cache (write back) and uses the VWC feature; fio --fsync=1 crc32c on ns 1 and mkfs.ext4 + file writes + sync on ns 2 take sync points in nvmf_tgt; nvmf_tgt is killed with SIGKILL and restarted, the host reconnects, and everything it synced reads back (fio verify_only, file checksums, a clean e2fsck)
. /qemu/lib.sh
need_bins nvmf_tgt
# Absolute paths: busybox sh prefers its own (ext2-only) mke2fs applet to the one in PATH.
MKE2FS=/usr/sbin/mke2fs E2FSCK=/usr/sbin/e2fsck
[ -x "$MKE2FS" ] && [ -x "$E2FSCK" ] || skip "e2fsprogs is not in the image (install it on the host)"
NQN=nqn.2016-06.io.nvmf-rs:durable
ADDR=127.0.0.1
PORT=4420
MNT=/mnt/durable

cleanup() { umount "$MNT" >/dev/null 2>&1; nvme disconnect -n "$NQN" >/dev/null 2>&1; tgt_stop >/dev/null 2>&1; }
trap cleanup EXIT

rm -f /tmp/dur0.img /tmp/dur1.img
dd if=/dev/zero of=/tmp/dur0.img bs=1M count=32 2>/dev/null || fail "cannot create /tmp/dur0.img"
dd if=/dev/zero of=/tmp/dur1.img bs=1M count=64 2>/dev/null || fail "cannot create /tmp/dur1.img"
cat >/tmp/dur.json <<JSON
{"subsystems": [
  {"subsystem": "bdev", "config": [
    {"method": "bdev_aio_create", "params": {"name": "File0", "filename": "/tmp/dur0.img", "block_size": 512}},
    {"method": "bdev_aio_create", "params": {"name": "File1", "filename": "/tmp/dur1.img", "block_size": 4096}}]},
  {"subsystem": "nvmf", "config": [
    {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
    {"method": "nvmf_create_subsystem", "params": {"nqn": "$NQN", "allow_any_host": true, "serial_number": "NVMFRSDURABLE01"}},
    {"method": "nvmf_subsystem_add_ns", "params": {"nqn": "$NQN", "namespace": {"bdev_name": "File0", "nsid": 1}}},
    {"method": "nvmf_subsystem_add_ns", "params": {"nqn": "$NQN", "namespace": {"bdev_name": "File1", "nsid": 2}}},
    {"method": "nvmf_subsystem_add_listener", "params": {"nqn": "$NQN", "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "$ADDR", "trsvcid": "$PORT"}}}]}
]}
JSON
sync_points() { rpc bdev_get_bdevs --name "$1" | awk -F: '/"sync_points"/{gsub(/[ ,]/, "", $2); print $2}'; }

tgt_start --cpus 0,1 --idle-backoff-us 50 --no-default --json /tmp/dur.json
# Reconnect quickly after the target comes back (the kernel default delay is 10 s).
must nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN" --reconnect-delay=1 --ctrl-loss-tmo=120
ctrl=$(nvmf_ctrl_by_nqn "$NQN" "$ADDR") || fail "no controller for $NQN after connect"
dev1=$(wait_ns_blk "$ctrl" 1 20) || fail "namespace 1 of $ctrl did not appear"
dev2=$(wait_ns_blk "$ctrl" 2 20) || fail "namespace 2 of $ctrl did not appear"
echo "connected: $ctrl; ns 1 = $dev1, ns 2 = $dev2"

# The host sees the volatile write cache and sends Flush / FUA for it.
wc=$(cat /sys/block/${dev1#/dev/}/queue/write_cache)
echo "write_cache: $wc"
[ "$wc" = "write back" ] || fail "the Linux host does not see a volatile write cache ($wc)"
x nvme id-ctrl "/dev/$ctrl" | grep -E '^vwc ' | grep -q '0x7' || fail "id-ctrl vwc is not 0x7"
out=$(x nvme get-feature "/dev/$ctrl" -f 6 2>&1) || { echo "$out"; fail "nvme get-feature VWC"; }
echo "$out"; echo "$out" | grep -Eq 'Current value: *(0x)?0*1$' || fail "VWC feature is not enabled by default"
must nvme set-feature "/dev/$ctrl" -f 6 -v 0
out=$(x nvme get-feature "/dev/$ctrl" -f 6 2>&1); echo "$out"
# (nvme-cli prints 0 as 00000000, without 0x)
echo "$out" | grep -Eq 'Current value: *(0x)?0+$' || fail "VWC feature did not turn off"
must nvme set-feature "/dev/$ctrl" -f 6 -v 1

before=$(sync_points File0)
# fio: sequential 4 KiB writes with an fsync after each (the host sends Flush), crc32c headers.
FIO_ARGS="--name=durable --filename=$dev1 --direct=1 --ioengine=psync --rw=write --bs=4k --size=8M --verify=crc32c --verify_fatal=1 --verify_state_save=0"
x fio $FIO_ARGS --fsync=1 --do_verify=1 || fail "fio --fsync=1 with verify on $dev1"
after=$(sync_points File0)
echo "File0 sync points: $before -> $after"
# fio issues an fsync after each write but the last (2,047), each a Flush: one sync point each.
[ "$after" -ge $((before + 2047)) ] || fail "fio's 2047 fsyncs took only $((after - before)) sync points in nvmf_tgt"

# ext4: mkfs, files, sync.
must "$MKE2FS" -q -t ext4 -F "$dev2"
mkdir -p "$MNT"
must mount -t ext4 "$dev2" "$MNT"
for i in 1 2 3 4; do
  head -c $((i * 1048576 + 12345)) /dev/urandom >"/tmp/ref$i"
  cp "/tmp/ref$i" "$MNT/file$i" || fail "write $MNT/file$i"
done
mkdir "$MNT/dir" && echo "synced" >"$MNT/dir/note" || fail "mkdir/echo on ext4"
before=$(sync_points File1)
must sync
after=$(sync_points File1)
echo "File1 sync points: $before -> $after"
[ "$after" -gt "$before" ] || fail "sync on ext4 took no sync point in nvmf_tgt"

# Kill the target without any chance to flush, restart it on the same files.
say "SIGKILL nvmf_tgt (pid $TGT_PID)"
kill -KILL "$TGT_PID"; wait "$TGT_PID" 2>/dev/null; TGT_PID=
tgt_start --cpus 0,1 --idle-backoff-us 50 --no-default --json /tmp/dur.json
wait_until 60 sh -c "grep -q live /sys/class/nvme/$ctrl/state" || fail "$ctrl did not reconnect after the restart (state $(cat /sys/class/nvme/$ctrl/state))"
echo "reconnected: $ctrl $(cat /sys/class/nvme/$ctrl/state)"
# Read from the target, not the guest's page cache.
echo 3 >/proc/sys/vm/drop_caches
x fio $FIO_ARGS --verify_only || fail "fio verify_only after SIGKILL and restart: data acknowledged with fsync is gone"
for i in 1 2 3 4; do
  cmp "/tmp/ref$i" "$MNT/file$i" || fail "file$i differs after SIGKILL and restart"
done
[ "$(cat "$MNT/dir/note")" = synced ] || fail "dir/note lost after SIGKILL and restart"
echo "every synced file reads back intact"
must umount "$MNT"
x "$E2FSCK" -fn "$dev2" || fail "e2fsck finds errors after SIGKILL and restart"

nvme_disconnect_one "$NQN"
trap - EXIT
tgt_stop
exit 0
