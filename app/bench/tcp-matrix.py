#!/usr/bin/env python3
"""The NVMe/TCP table of docs/performance.md: nvmf_tgt (one reactor, core 0) with a 1 GiB Null
or Malloc namespace, nvmf-perf (core 1) against it and against its trivial-responder ceiling.

    app/bench/tcp-matrix.py [TARGET_DIR]      (default: target/release)

Each row: `nvmf-perf -q QD -o SIZE -w WORKLOAD -t 2 --warmup 1 --repeat 5 --ceiling
--ceiling-core 0 --cores 1 --json`; prints markdown rows (medians of the five repetitions,
latencies of the last target phase).
"""
import json, os, statistics, subprocess, sys, time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release"
PORT = int(os.environ.get("BENCH_PORT", "4497"))
SOCK = f"/tmp/nvmf-bench-matrix.{os.getpid()}.sock"
NQN = "nqn.2016-06.io.nvmf-rs:cnode1"
ROWS = [(4096, "randread", 1), (4096, "randread", 32), (4096, "randread", 128),
        (4096, "randwrite", 1), (4096, "randwrite", 32), (4096, "randwrite", 128),
        (131072, "read", 8), (131072, "write", 8)]


def run_rows(bdev):
    tgt = subprocess.Popen([f"{BIN}/nvmf_tgt", "--cpus", "0", "--bdev", bdev, "--idle-backoff-us", "50",
                            "-p", str(PORT), "-r", SOCK], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if subprocess.run([f"{BIN}/nvmf_tgt", "rpc", "-s", SOCK, "spdk_get_version"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        for size, w, qd in ROWS:
            trid = f"trtype:tcp traddr:127.0.0.1 trsvcid:{PORT} subnqn:{NQN}"
            out = subprocess.run([f"{BIN}/nvmf-perf", "-r", trid, "-q", str(qd), "-o", str(size), "-w", w,
                                  "-t", "2", "--warmup", "1", "--repeat", "5", "--ceiling", "--ceiling-core", "0",
                                  "--cores", "1", "--json"], capture_output=True, text=True, check=True).stdout
            r = json.loads(out)
            reps = r["repetitions"]
            t = statistics.median(x["target_iops"] for x in reps)
            c = statistics.median(x["ceiling_iops"] for x in reps)
            e = r["efficiency"]
            lat = r["target"]["total"]["latency_us"]
            kind = f"{size // 1024} KiB {w}"
            mib = f" ({t * size / 2**20:.0f} MiB/s)" if size > 4096 else ""
            q = f"{qd} (127 on the wire)" if qd == 128 else str(qd)
            print(f"| {bdev} | {kind} | {q} | {t:,.0f}{mib} | {c:,.0f} | {e:.2f} | "
                  f"{lat['p50']:.0f} / {lat['p99']:.0f} / {lat['p99_9']:.0f} |", flush=True)
    finally:
        tgt.terminate()
        tgt.wait()


for bdev in ("null", "malloc"):
    run_rows(bdev)
