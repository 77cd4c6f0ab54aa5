#!/bin/sh
# STEP: persistent reservations with two Linux hosts (two host NQNs and host IDs) on one namespace of nvmf_tgt: nvme resv-register/resv-acquire/resv-report/resv-release, a write from the non-holder fails with Reservation Conflict and one from the holder succeeds, and the PTPL file carries registration and reservation through an nvmf_tgt restart
. /qemu/lib.sh
need_bins nvmf_tgt
NQN=nqn.2016-06.io.nvmf-rs:resv
ADDR=127.0.0.1
PORT=4420
# Host B connects through a second listener: nvme-cli (2.4) refuses a second connection to the
# same address, port and subsystem even under another host NQN.
PORT_B=4421
IA=aaaaaaaa-1111-2222-3333-444444444444
IB=bbbbbbbb-1111-2222-3333-444444444444
HA=nqn.2014-08.org.nvmexpress:uuid:$IA
HB=nqn.2014-08.org.nvmexpress:uuid:$IB
PTPL=/tmp/resv-ptpl.json
KA=0xaaaa
KB=0xbbbb

cleanup() { nvme disconnect -n "$NQN" >/dev/null 2>&1; tgt_stop >/dev/null 2>&1; }
trap cleanup EXIT
rm -f "$PTPL" /tmp/resv-data

tgt_setup() {
  tgt_start --cpus 0,1 --idle-backoff-us 50 --no-default
  must rpc nvmf_create_transport --trtype TCP
  must rpc bdev_malloc_create --name Malloc0 --num_blocks 32768 --block_size 512
  must rpc nvmf_create_subsystem --nqn "$NQN" --allow_any_host true --str serial_number NVMFRSRESV00001
  must rpc nvmf_subsystem_add_ns --nqn "$NQN" --namespace "{\"bdev_name\":\"Malloc0\",\"nsid\":1,\"ptpl_file\":\"$PTPL\"}"
  for p in "$PORT" "$PORT_B"; do
    must rpc nvmf_subsystem_add_listener --nqn "$NQN" --json "{\"listen_address\":{\"trtype\":\"TCP\",\"adrfam\":\"IPv4\",\"traddr\":\"$ADDR\",\"trsvcid\":\"$p\"}}"
  done
}

# The controller of host NQN $1 on $NQN. Commands go to its character device /dev/nvmeN with
# -n 1, so each reaches the target on that host's own connection (the namespace block device
# is shared by both paths under native multipath).
ctrl_of() {
  for _c in /sys/class/nvme/nvme*; do
    [ "$(cat "$_c/subsysnqn" 2>/dev/null)" = "$NQN" ] && [ "$(cat "$_c/hostnqn" 2>/dev/null)" = "$1" ] \
      && { echo "${_c##*/}"; return 0; }
  done
  return 1
}

connect_both() {
  must nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN" --hostnqn="$HA" --hostid="$IA"
  must nvme connect -t tcp -a "$ADDR" -s "$PORT_B" -n "$NQN" --hostnqn="$HB" --hostid="$IB"
  A=$(ctrl_of "$HA") || fail "no controller for host A"
  B=$(ctrl_of "$HB") || fail "no controller for host B"
  wait_ns_blk "$A" 1 20 >/dev/null || fail "namespace 1 of $A did not appear"
  wait_ns_blk "$B" 1 20 >/dev/null || fail "namespace 1 of $B did not appear"
  echo "host A: $A, host B: $B"
}

# write_one CTRL: write one block at LBA 0 through CTRL; prints nvme-cli's output.
write_one() {
  nvme io-passthru "/dev/$1" --opcode=0x01 --namespace-id=1 --data-len=512 --write \
    --input-file=/tmp/resv-data --cdw10=0 --cdw11=0 --cdw12=0 2>&1
}

report() {
  out=$(x nvme resv-report "/dev/$1" -n 1 --eds 2>&1) || { echo "$out"; fail "nvme resv-report on $1"; }
  echo "$out"
}

tgt_setup
connect_both
dd if=/dev/urandom of=/tmp/resv-data bs=512 count=1 2>/dev/null

must nvme resv-register "/dev/$A" -n 1 --nrkey=$KA --rrega=0 --cptpl=3
must nvme resv-register "/dev/$B" -n 1 --nrkey=$KB --rrega=0
must nvme resv-acquire "/dev/$A" -n 1 --crkey=$KA --rtype=1 --racqa=0
report "$B"
echo "$out" | grep -Eiq "(rtype|reservation type)[^0-9]*1" || fail "resv-report does not show a Write Exclusive reservation"
echo "$out" | grep -Eiq "(regctl|number of registrants)[^0-9]*2" || fail "resv-report does not show two registrants"

# The non-holder's write: Reservation Conflict. The holder's: success.
out=$(write_one "$B"); rc=$?
echo "+ write from host B: status $rc: $out"
[ $rc != 0 ] || fail "a write from the non-holder succeeded under Write Exclusive"
echo "$out" | grep -iq "reservation.conflict" || fail "the non-holder's write did not fail with Reservation Conflict"
out=$(write_one "$A") || { echo "$out"; fail "a write from the holder failed"; }

# PTPL: restart the target; the registrations and the reservation come back from the file.
must test -s "$PTPL"
x cat "$PTPL"
must nvme disconnect -n "$NQN"
tgt_stop
tgt_setup
connect_both
report "$B"
echo "$out" | grep -Eiq "(rtype|reservation type)[^0-9]*1" || fail "the reservation did not survive the restart"
out=$(write_one "$B"); rc=$?
[ $rc != 0 ] && echo "$out" | grep -iq "reservation.conflict" || { echo "$out"; fail "after the restart the non-holder's write was not refused"; }

# Release: host B may write again.
must nvme resv-release "/dev/$A" -n 1 --crkey=$KA --rtype=1 --rrela=0
out=$(write_one "$B") || { echo "$out"; fail "host B's write failed after the release"; }
must nvme resv-release "/dev/$A" -n 1 --crkey=$KA --rrela=1
report "$A"
must nvme disconnect -n "$NQN"
trap - EXIT
tgt_stop
exit 0
