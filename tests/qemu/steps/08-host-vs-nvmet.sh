#!/bin/sh
# STEP: our NVMe/TCP host (host_check, nvmf::host) against the Linux kernel target (nvmet-tcp, null_blk) on 127.0.0.1:4421: discovery log, connect, identify, write/read verify 512 B..2 MiB split by MDTS, pipelined I/O, shutdown; without digests, with header, data and both digests
. /qemu/lib.sh
need_bins host_check
NQN=nqn.2016-06.io.nvmf-rs:kernel-for-host
ADDR=127.0.0.1
PORT=4421

cleanup() { nvmet_teardown "$NQN" 2; }
trap cleanup EXIT
null_blk_setup 1 || fail "null_blk (memory_backed) did not come up"
nvmet_setup "$NQN" "$ADDR" "$PORT" /dev/nullb0 2 || fail "nvmet configfs setup"

for d in none header data both; do
  say "digests: $d"
  x host_check "$ADDR:$PORT" "$NQN" --digests $d >/tmp/host_check.out 2>&1
  rc=$?
  cat /tmp/host_check.out
  [ $rc = 0 ] || fail "host_check --digests $d failed (status $rc)"
  grep -q '^host_check: PASS' /tmp/host_check.out || fail "host_check --digests $d did not report PASS"
done
grep -q 'CHECK rw-2097152 ok' /tmp/host_check.out || fail "no 2 MiB transfer"
exit 0
