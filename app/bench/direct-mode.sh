#!/bin/sh
# Direct-mode throughput over NVMe/TCP: nvmf_tgt (one reactor, core 0) serving the emulated
# NVMe controller's namespace, nvmf-perf (core 1) reading and writing it.
#
#   app/bench/direct-mode.sh [TARGET_DIR]     (default: target/release)
#
# Prints one line per workload: size, workload, IOPS, MiB/s, and the target's
# data_copied_bytes (bdev_get_bdevs) afterwards. Figures go to docs/performance.md.
set -eu
BIN=${1:-target/release}
PORT=${BENCH_PORT:-4471}
SOCK=/tmp/nvmf-bench-direct.$$.sock
NQN=nqn.2016-06.io.nvmf-rs:bench-direct
CFG=/tmp/nvmf-bench-direct.$$.json
cat >"$CFG" <<JSON
{"subsystems": [
  {"subsystem": "bdev", "config": [
    {"method": "bdev_nvme_attach_controller", "params": {"name": "Nvme0", "trtype": "PCIe", "traddr": "emulated", "emulated_num_blocks": 2097152}}]},
  {"subsystem": "nvmf", "config": [
    {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
    {"method": "nvmf_create_subsystem", "params": {"nqn": "$NQN", "allow_any_host": true}},
    {"method": "nvmf_subsystem_add_ns", "params": {"nqn": "$NQN", "namespace": {"bdev_name": "Nvme0n1"}}},
    {"method": "nvmf_subsystem_add_listener", "params": {"nqn": "$NQN", "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "$PORT"}}}]}
]}
JSON
"$BIN/nvmf_tgt" --cpus 0 --no-default --json "$CFG" -r "$SOCK" >/tmp/nvmf-bench-direct.log 2>&1 &
TGT=$!
trap 'kill $TGT 2>/dev/null; wait $TGT 2>/dev/null; rm -f "$CFG"' EXIT
i=0
while ! "$BIN/nvmf_tgt" rpc -s "$SOCK" spdk_get_version >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 100 ] || { cat /tmp/nvmf-bench-direct.log; exit 1; }; sleep 0.1
done
TRID="trtype:tcp traddr:127.0.0.1 trsvcid:$PORT subnqn:$NQN"
for size in 4096 131072; do
  for w in randread randwrite; do
    out=$("$BIN/nvmf-perf" -r "$TRID" -q 32 -o $size -w $w -t ${BENCH_TIME:-5} --warmup 1 --cores 1 --json 2>/dev/null)
    iops=$(echo "$out" | sed -n 's/.*"iops": *\([0-9]*\).*/\1/p' | head -1)
    mibs=$(echo "$out" | sed -n 's/.*"mib_per_s": *\([0-9]*\).*/\1/p' | head -1)
    copied=$("$BIN/nvmf_tgt" rpc -s "$SOCK" bdev_get_bdevs --name Nvme0n1 | sed -n 's/.*"data_copied_bytes": *\([0-9]*\).*/\1/p')
    echo "$size $w iops=$iops MiB/s=$mibs data_copied_bytes=${copied:-n/a}"
  done
done
