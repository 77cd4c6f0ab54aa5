#!/usr/bin/env bash
# Target instructions per 4 KiB I/O (callgrind counts instructions, not time, so the figures do
# not depend on what else the machine runs): nvmf_tgt --bdev null on one reactor under
# valgrind, nvmf-perf QD 32 over loopback, the inclusive instructions of the receive path
# (TcpConn::on_readable: parse + execute + bdev submit) and of the completion path
# (TcpConn::bdev_complete) divided by the I/Os perf completed.
#
#   app/bench/callgrind.sh [BIN_DIR]     BIN_DIR holds nvmf_tgt and nvmf-perf (default target/release)
set -euo pipefail
BIN=${1:-target/release}
PORT=${PORT:-4470}
OUT=$(mktemp -d)
for w in randread randwrite; do
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$w" "$BIN/nvmf_tgt" --cpus 0 --bdev null \
    --port "$PORT" -r "$OUT/rpc.sock" >"$OUT/tgt.$w.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    "$BIN/nvmf_tgt" rpc -s "$OUT/rpc.sock" spdk_get_version >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$BIN/nvmf-perf" -r "trtype:tcp traddr:127.0.0.1 trsvcid:$PORT subnqn:nqn.2016-06.io.nvmf-rs:cnode1" \
    -q 32 -o 4096 -w "$w" -t 8 --warmup 0 --json >"$OUT/perf.$w.json" 2>/dev/null
  kill -INT "$pid"
  wait "$pid" || true
  ios=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['target']['total']['ios'])" "$OUT/perf.$w.json" 2>/dev/null || echo 0)
  callgrind_annotate --inclusive=yes --auto=no "$OUT/cg.$w" >"$OUT/ann.$w" 2>/dev/null
  total=$(awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}' "$OUT/ann.$w")
  rx=$(awk '/TcpConn::on_readable/{gsub(",","",$1); print $1; exit}' "$OUT/ann.$w")
  cq=$(awk '/TcpConn::bdev_complete/{gsub(",","",$1); print $1; exit}' "$OUT/ann.$w")
  python3 - "$w" "$ios" "$total" "$rx" "$cq" <<'PY'
import sys
w, ios, total, rx, cq = sys.argv[1], *(int(x or 0) for x in sys.argv[2:])
per = lambda v: f"{v / ios:,.0f}" if ios else "?"
print(f"{w}: {ios:,} I/Os; per I/O: receive+execute {per(rx)}, completion {per(cq)}, whole program {per(total)}")
PY
done
rm -rf "$OUT"
