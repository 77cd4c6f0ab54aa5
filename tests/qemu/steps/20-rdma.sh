#!/bin/sh
# STEP: NVMe/RDMA over soft-RoCE (rdma_rxe on eth0): nvmf_tgt (built with --features rdma) listens on RDMA at the guest's eth0 address; the Linux nvme-rdma host connects, id-ctrl (keyed SGLs), fio crc32c verify, disconnect; then our host client over RDMA (host_check --trtype rdma: discovery, identify, write/read verify 512 B..2 MiB, pipelined I/O, fused Compare and Write, shutdown) and nvmf-perf -r trtype:rdma --verify; clean target exit
. /qemu/lib.sh
need_bins nvmf_tgt host_check nvmf-perf
NQN=nqn.2016-06.io.nvmf-rs:rdma
ADDR=10.0.2.15
PORT=4420

# Skips unless nvmf_tgt, host_check and nvmf-perf have RDMA and the image has soft-RoCE.
rdma_need

cleanup() { nvme disconnect -n "$NQN" >/dev/null 2>&1; tgt_stop >/dev/null 2>&1; }
trap cleanup EXIT

rxe_setup "$ADDR"

cat >/tmp/tgt-rdma.json <<JSON
{"subsystems": [
  {"subsystem": "bdev", "config": [
    {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 65536, "block_size": 512}}]},
  {"subsystem": "nvmf", "config": [
    {"method": "nvmf_create_transport", "params": {"trtype": "RDMA"}},
    {"method": "nvmf_create_subsystem", "params": {"nqn": "$NQN", "allow_any_host": true, "serial_number": "NVMFRSRDMA0001", "model_number": "nvmf-rs rdma"}},
    {"method": "nvmf_subsystem_add_ns", "params": {"nqn": "$NQN", "namespace": {"bdev_name": "Malloc0", "nsid": 1}}},
    {"method": "nvmf_subsystem_add_listener", "params": {"nqn": "$NQN", "listen_address": {"trtype": "RDMA", "adrfam": "IPv4", "traddr": "$ADDR", "trsvcid": "$PORT"}}}]}
]}
JSON
RUST_LOG=${RUST_LOG:-info} tgt_start --cpus 0 --idle-backoff-us 50 --no-default --json /tmp/tgt-rdma.json
grep -i "listening on" "$TGT_LOG"

out=$(x nvme discover -t rdma -a "$ADDR" -s "$PORT" 2>&1); rc=$?
echo "$out"
[ $rc = 0 ] || { tail -n 30 "$TGT_LOG"; fail "nvme discover -t rdma"; }
echo "$out" | grep -q "subnqn: *$NQN\$" || fail "discovery log does not list $NQN"

x nvme connect -t rdma -a "$ADDR" -s "$PORT" -n "$NQN" || { tail -n 40 "$TGT_LOG"; dmesg | tail -n 20; fail "nvme connect -t rdma"; }
ctrl=$(nvmf_ctrl_by_nqn "$NQN" "$ADDR") || fail "no controller for $NQN after connect"
echo "connected: $ctrl ($(cat /sys/class/nvme/$ctrl/transport)), state $(cat /sys/class/nvme/$ctrl/state)"
dev=$(wait_ns_blk "$ctrl" 1 20) || fail "namespace 1 of $ctrl did not appear"
out=$(x nvme id-ctrl "/dev/$ctrl" 2>&1) || { echo "$out"; fail "nvme id-ctrl"; }
echo "$out" | grep -E '^(mdts|cntlid|sgls|subnqn|ioccsz|iorcsz|maxcmd) '
echo "$out" | grep -q "^subnqn *: *$NQN\$" || fail "id-ctrl subnqn is not $NQN"

# Small writes go in-capsule, larger ones and all reads by RDMA READ/WRITE.
must fio --name=rdma-verify --filename="$dev" --direct=1 --ioengine=psync --rw=randwrite --bsrange=512-256k \
  --size=16M --verify=crc32c --verify_fatal=1 --do_verify=1 --numjobs=1 --iodepth=1 --randseed=7
must fio --name=rdma-qd --filename="$dev" --direct=1 --ioengine=libaio --rw=randrw --bs=4k --iodepth=32 \
  --size=8M --verify=crc32c --verify_fatal=1 --numjobs=1 --randseed=11

nvme_disconnect_one "$NQN"

# Our host client over RDMA: writes up to the in-capsule size (8 KiB) go in-capsule, larger
# ones by keyed SGL (the target RDMA READs them from our registered memory), reads by keyed SGL
# (RDMA WRITE into it); discovery, identify, 512 B..2 MiB split by MDTS, 16 in flight on a
# second queue, shutdown.
host_check_rdma "$ADDR" "$PORT" "$NQN"

# nvmf-perf over RDMA with data verification: small mixed I/O (in-capsule writes), then 64 KiB
# random writes and reads (keyed SGLs both ways). Soft-RoCE under TCG: no performance figure.
TRID="trtype:rdma adrfam:ipv4 traddr:$ADDR trsvcid:$PORT subnqn:$NQN"
say "nvmf-perf over RDMA"
x nvmf-perf -r "$TRID" -q 16 -o 4096 -w randrw -M 50 -t 3 --verify || { tail -n 30 "$TGT_LOG"; fail "nvmf-perf -r trtype:rdma 4 KiB randrw --verify"; }
x nvmf-perf -r "$TRID" -q 8 -o 65536 -w randrw -M 50 -t 3 --verify || { tail -n 30 "$TGT_LOG"; fail "nvmf-perf -r trtype:rdma 64 KiB randrw --verify"; }

trap - EXIT
tgt_stop
