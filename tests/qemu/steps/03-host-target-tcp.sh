#!/bin/sh
# STEP: the Linux NVMe/TCP host in the guest against the target running on the host (10.0.2.2:$NVMF_TGT_PORT): discover, connect, id-ctrl (VER 2.0, FUSES 0x1), NVMe 2.0 pages (fw-log, effects-log, supported-log-pages, id-ctrl -H, get-feature -s 0..3), id-ns, fio crc32c verify, disconnect
. /qemu/lib.sh

[ "$HOST_TARGET" = 1 ] || skip "$HOST_TARGET_DESC"
say "host target: $HOST_TARGET_DESC"
ADDR=$HOST_ADDR
PORT=$TARGET_PORT
NQN=$TARGET_NQN

cleanup() { nvme disconnect -n "$NQN" >/dev/null 2>&1; }
trap cleanup EXIT

# The target was ready on the host before the guest booted; still give the
# user-mode network path a few tries.
i=0
until nvme discover -t tcp -a "$ADDR" -s "$PORT" >/dev/null 2>&1 || [ $i -ge 5 ]; do sleep 1; i=$((i + 1)); done
out=$(x nvme discover -t tcp -a "$ADDR" -s "$PORT" 2>&1); rc=$?
echo "$out"
[ $rc = 0 ] || fail "nvme discover against $ADDR:$PORT"
echo "$out" | grep -q "subnqn: *$NQN" || fail "discovery log does not list $NQN"

must nvme connect -t tcp -a "$ADDR" -s "$PORT" -n "$NQN"
ctrl=$(nvmf_ctrl_by_nqn "$NQN" "$ADDR") || fail "no controller for $NQN after connect"
echo "connected: $ctrl ($(cat /sys/class/nvme/$ctrl/address)), state $(cat /sys/class/nvme/$ctrl/state)"

out=$(x nvme id-ctrl "/dev/$ctrl" 2>&1) || { echo "$out"; fail "nvme id-ctrl /dev/$ctrl"; }
echo "$out" | grep -E '^(vid|sn|mn|fr|mdts|cntlid|ver|nn|sgls|subnqn|ioccsz|iorcsz|icdoff|maxcmd) '
echo "$out" | grep -q "^subnqn *: *$NQN" || fail "id-ctrl subnqn is not $NQN"
echo "$out" | grep -q "^ver *: *0x20000" || fail "id-ctrl ver is not 2.0 (0x20000)"
echo "$out" | grep -q "^fuses *: *0x1" || fail "id-ctrl fuses is not 0x1 (fused Compare and Write)"

# What NVMe 2.0 makes mandatory, through nvme-cli (SPDK's identify asks for the same pages).
out=$(x nvme id-ctrl -H "/dev/$ctrl" 2>&1) || { echo "$out"; fail "nvme id-ctrl -H /dev/$ctrl"; }
out=$(x nvme fw-log "/dev/$ctrl" 2>&1) || { echo "$out"; fail "nvme fw-log /dev/$ctrl"; }
echo "$out"
echo "$out" | grep -Eq "^afi *: *0x1" || fail "fw-log: slot 1 is not active"
out=$(x nvme effects-log "/dev/$ctrl" --csi=0 2>&1) || { echo "$out"; fail "nvme effects-log /dev/$ctrl"; }
echo "$out"
# Write (I/O opcode 01h): IOCS[1] at byte 1024 + 4 of the raw log must have CSUPP (bit 0).
eff=$(nvme get-log "/dev/$ctrl" --log-id=5 --log-len=4096 --raw-binary 2>/dev/null | od -An -tx4 -j 1028 -N 4 | tr -d ' ')
echo "effects log IOCS1 (Write): 0x$eff"
[ -n "$eff" ] && [ $((0x$eff & 1)) = 1 ] || fail "effects-log does not list Write (IOCS1 CSUPP)"
out=$(x nvme supported-log-pages "/dev/$ctrl" 2>&1) || { echo "$out"; fail "nvme supported-log-pages /dev/$ctrl"; }
echo "$out"
for sel in 0 1 2 3; do
  out=$(x nvme get-feature "/dev/$ctrl" -f 0x0f -s $sel 2>&1) || { echo "$out"; fail "nvme get-feature -f 0x0f -s $sel"; }
  echo "$out"
done

dev=$(wait_ns_blk "$ctrl" 1 20) || fail "namespace 1 of $ctrl did not appear"
out=$(x nvme id-ns "$dev" 2>&1) || { echo "$out"; fail "nvme id-ns $dev"; }
echo "$out" | grep -E '^(nsze|ncap|nuse|nlbaf|flbas|lbaf  0) '
nsze=$(echo "$out" | awk '/^nsze/{print $3}')
[ -n "$nsze" ] && [ "$((nsze))" -gt 0 ] || fail "id-ns reports nsze=$nsze"
must nvme list

bytes=$(($(cat /sys/block/${dev#/dev/}/size) * 512))
size=16M
[ "$bytes" -lt $((16 * 1048576)) ] && size=$bytes
fio_verify "$dev" "$size"

out=$(x nvme disconnect -n "$NQN" 2>&1); rc=$?
echo "$out"
[ $rc = 0 ] || fail "nvme disconnect"
echo "$out" | grep -q 'disconnected 1 controller' || fail "nvme disconnect did not disconnect 1 controller"
trap - EXIT
exit 0
