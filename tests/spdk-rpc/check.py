#!/usr/bin/env python3
"""nvmf_tgt driven by SPDK's own JSON-RPC client (`spdk-rpc` from the PyPI package `spdk`, the same
code as SPDK's scripts/rpc.py), as an SPDK user would drive it: every call goes through the real
command line, which sends every option's default value. Each check asserts on what comes back
(results, error codes and messages), not only on exit codes.

    tests/spdk-rpc/check.py [--bin DIR]      DIR holds nvmf_tgt and nvmf-perf (default target/release)

Exit status 0 when every check passed, 1 otherwise. CI (.ci/run) installs the pinned client
(pip install spdk==26.9) and runs this after the release build.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NQN = "nqn.2016-06.io.spdk:cnode1"
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Target:
    def __init__(self, bindir, work, *args):
        self.bindir, self.sock = bindir, os.path.join(work, "spdk.sock")
        self.log = open(os.path.join(work, "nvmf_tgt.log"), "ab")
        self.proc = subprocess.Popen([os.path.join(bindir, "nvmf_tgt"), "-r", self.sock, *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"nvmf_tgt exited at start (status {self.proc.returncode})")
            if os.path.exists(self.sock) and self.rpc("spdk_get_version").returncode == 0:
                return
            time.sleep(0.1)
        raise SystemExit("nvmf_tgt RPC socket not up after 30 s")

    def rpc(self, *args):
        return subprocess.run(["spdk-rpc", "-s", self.sock, *args], capture_output=True, text=True, timeout=60)

    def ok(self, *args):
        """Run a method that must succeed; return its output parsed as JSON when it is JSON."""
        r = self.rpc(*args)
        check(r.returncode == 0, f"spdk-rpc {' '.join(args)}" + ("" if r.returncode == 0 else f": {r.stdout}{r.stderr}"))
        try:
            return json.loads(r.stdout)
        except ValueError:
            return r.stdout.strip()

    def fails(self, code, text, *args):
        """Run a method that must fail with JSON-RPC error `code` and a message containing `text`."""
        r = self.rpc(*args)
        out = r.stdout + r.stderr
        got = None
        if '"code"' in out:
            try:
                start = out.index("response:") + len("response:")
                got = json.loads(out[start:out.index("}", start) + 1])
            except ValueError:
                got = None
        good = r.returncode != 0 and got is not None and got.get("code") == code and text in got.get("message", "")
        check(good, f"spdk-rpc {' '.join(args)} fails with {code} '{text}'" + ("" if good else f": got {got} / {out[-300:]}"))

    def stop(self, how="SIGTERM"):
        """Stop nvmf_tgt with a signal, or with spdk_kill_instance when `how` is "rpc"; it must exit 0."""
        if how == "rpc":
            self.ok("spdk_kill_instance", "SIGTERM")
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "still running after 30 s"
        check(rc == 0, f"nvmf_tgt exits cleanly after {how} (status {rc})")


def perf_verify(bindir, port, nsid_count=1):
    r = subprocess.run([os.path.join(bindir, "nvmf-perf"), "-r", f"trtype:tcp traddr:127.0.0.1 trsvcid:{port} subnqn:{NQN}",
                        "-q", "8", "-o", "4096", "-w", "randrw", "-t", "1", "--warmup", "0", "--verify",
                        "-n", str(nsid_count), "--range-mb", "1", "--json"], capture_output=True, text=True, timeout=120)
    ios = 0
    if r.returncode == 0:
        ios = json.loads(r.stdout)["target"]["total"]["ios"]
    check(r.returncode == 0 and ios > 0, f"nvmf-perf --verify on {nsid_count} namespace(s): {ios} I/Os" + ("" if r.returncode == 0 else f": {r.stderr[-500:]}"))


def readme_sequence(t, work, port):
    """The README's rpc.py sequence, with the defaults rpc.py adds, and what each call returns."""
    # rpc.py prints nothing for a method that returns true.
    check(t.ok("nvmf_create_transport", "-t", "TCP") == "", "nvmf_create_transport succeeds silently")
    t.fails(-17, "already exists", "nvmf_create_transport", "-t", "TCP")
    check(t.ok("bdev_malloc_create", "-b", "Malloc0", "64", "512") == "Malloc0", "bdev_malloc_create prints the name")
    check(t.ok("bdev_null_create", "Null0", "64", "4096") == "Null0", "bdev_null_create prints the name")
    img = os.path.join(work, "aio0.img")
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    check(t.ok("bdev_aio_create", img, "AIO0", "512") == "AIO0", "bdev_aio_create prints the name")
    t.ok("nvmf_create_subsystem", NQN, "-a", "-s", "SPDK00000000000001", "-m", "32")
    # Verified I/O runs on the first two (512-byte blocks); Null0 reads back zeroes.
    for b in ("Malloc0", "AIO0", "Null0"):
        t.ok("nvmf_subsystem_add_ns", NQN, b)
    t.ok("nvmf_subsystem_add_listener", NQN, "-t", "tcp", "-a", "127.0.0.1", "-s", str(port))
    subs = t.ok("nvmf_get_subsystems")
    sub = [s for s in subs if s.get("nqn") == NQN] if isinstance(subs, list) else []
    check(len(sub) == 1, "nvmf_get_subsystems lists the subsystem")
    if sub:
        s = sub[0]
        check([n["bdev_name"] for n in s["namespaces"]] == ["Malloc0", "AIO0", "Null0"], "three namespaces in order")
        check(s["serial_number"] == "SPDK00000000000001" and s["allow_any_host"] is True, "serial number and allow_any_host")
        check(any(a["trsvcid"] == str(port) for a in s["listen_addresses"]), "the listener")
    bdevs = {b["name"]: b for b in t.ok("bdev_get_bdevs")}
    check(set(bdevs) == {"Malloc0", "Null0", "AIO0"}, "bdev_get_bdevs lists three bdevs")
    check(all(b["claimed"] for b in bdevs.values()), "every bdev is claimed by its namespace")
    check(bdevs.get("Null0", {}).get("block_size") == 4096, "Null0 has 4 KiB blocks")
    ls = t.ok("nvmf_subsystem_get_listeners", NQN)
    check(isinstance(ls, list) and len(ls) == 1 and ls[0]["address"]["trsvcid"] == str(port)
          and ls[0]["ana_states"][0]["ana_state"] == "optimized", "nvmf_subsystem_get_listeners")
    check(t.ok("nvmf_subsystem_get_controllers", NQN) == [], "no controllers before a host connects")
    check(t.ok("nvmf_subsystem_get_qpairs", NQN) == [], "no qpairs before a host connects")
    # rpc.py 26.9 has no command line for nvmf_get_config: SPDK's client module calls it.
    from spdk.rpc.client import JSONRPCClient
    cfg = JSONRPCClient(t.sock).call("nvmf_get_config")
    check(isinstance(cfg, dict) and cfg.get("discovery_filter") == "match_any", "nvmf_get_config (spdk.rpc client)")
    tr = t.ok("nvmf_get_transports")
    check(isinstance(tr, list) and tr and tr[0]["trtype"] == "TCP", "nvmf_get_transports shows TCP")


def keyring_and_hosts(t, work):
    """SPDK's keyring: hosts refer to DH-HMAC-CHAP keys by name; nvmf_subsystem_set_keys re-keys."""
    host = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
    paths = []
    for i, secret in enumerate(["DHHC-1:01:FXxHMF/wOdhX0qUZw2Cd4EvRbJ9L57chOXvRTS1yeX9f/gxI:",
                                "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"]):
        p = os.path.join(work, f"key{i}")
        with open(p, "w") as f:
            f.write(secret)
        os.chmod(p, 0o600)
        paths.append(p)
    t.ok("keyring_file_add_key", "key0", paths[0])
    t.ok("keyring_file_add_key", "key1", paths[1])
    t.fails(-17, "already exists", "keyring_file_add_key", "key0", paths[1])
    os.chmod(paths[1], 0o644)
    t.fails(-32602, "chmod 600", "keyring_file_add_key", "key2", paths[1])
    os.chmod(paths[1], 0o600)
    t.ok("nvmf_subsystem_add_host", NQN, host, "--dhchap-key", "key0")
    t.fails(-32602, "no key named", "nvmf_subsystem_set_keys", NQN, host, "--dhchap-key", "nokey")
    t.ok("nvmf_subsystem_set_keys", NQN, host, "--dhchap-key", "key1", "--dhchap-ctrlr-key", "key0")
    keys = {k["name"]: k for k in t.ok("keyring_get_keys")}
    check(set(keys) == {"key0", "key1"} and keys["key1"]["path"] == paths[1] and keys["key0"]["module"] == "keyring_file",
          "keyring_get_keys lists both keys")
    sub = [s for s in t.ok("nvmf_get_subsystems") if s.get("nqn") == NQN]
    check(bool(sub) and host in [h["nqn"] for h in sub[0]["hosts"]], "the host is allowed")
    saved = json.dumps(t.ok("save_config"))
    check('"dhchap_key": "key1"' in saved and '"keyring_file_add_key"' in saved and "FXxHMF" not in saved,
          "save_config writes the keyring and key names, never a secret")
    t.ok("nvmf_subsystem_remove_host", NQN, host)


def spdk_cli_browses(t):
    """spdk-cli (spdkcli, same package) lists the target's tree without errors."""
    if shutil.which("spdk-cli") is None:
        check(False, "spdk-cli is installed")
        return
    r = subprocess.run(["spdk-cli", "-s", t.sock, "ls", "/"], capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    check(r.returncode == 0 and "Traceback" not in out, "spdk-cli ls / succeeds" + ("" if r.returncode == 0 else f": {out[-800:]}"))
    for want in ["Malloc0", "AIO0", "Null0", NQN, "TCP"]:
        check(want in out, f"spdk-cli ls / shows {want}")
    r = subprocess.run(["spdk-cli", "-s", t.sock, "ls", "/nvmf/subsystem"], capture_output=True, text=True, timeout=120)
    check(r.returncode == 0 and "Namespaces: 3" in r.stdout, "spdk-cli ls /nvmf/subsystem shows three namespaces")


def bad_arguments(t):
    """Non-default values of options we have no behaviour for are refused by name; bad values fail."""
    t.fails(-32602, "no_srq", "nvmf_create_transport", "-t", "RDMA", "-r")
    t.fails(-32602, "enable_nssr", "nvmf_create_subsystem", "nqn.2016-06.io.spdk:x", "--enable-nssr")
    t.fails(-32602, "passthrough", "nvmf_create_subsystem", "nqn.2016-06.io.spdk:x", "--passthrough")
    t.fails(-32602, "nowait", "bdev_aio_create", "/dev/null", "X", "512", "--no-wait")
    t.fails(-32602, "physical_block_size", "bdev_malloc_create", "-b", "X", "-p", "4096", "8", "512")
    t.fails(-32602, "readonly", "bdev_aio_create", "/dev/null", "X", "512", "-r")
    t.fails(-17, "", "bdev_malloc_create", "-b", "Malloc0", "8", "512")
    t.fails(-19, "", "bdev_malloc_delete", "Nope")
    t.fails(-32602, "", "nvmf_subsystem_add_ns", "nqn.2016-06.io.spdk:nope", "Malloc0")
    t.fails(-32601, "Method not found", "bdev_lvol_get_lvstores")


def visibility_and_referrals(t):
    """no_auto_visible + nvmf_ns_add_host / nvmf_ns_remove_host, discovery referrals; save_config keeps both."""
    nqn2, host = "nqn.2016-06.io.spdk:vis1", "nqn.2014-08.org.nvmexpress:uuid:66666666-2222-3333-4444-555555555555"
    t.ok("bdev_malloc_create", "-b", "Malloc9", "8", "512")
    t.ok("nvmf_create_subsystem", nqn2, "-a")
    t.ok("nvmf_subsystem_add_ns", nqn2, "Malloc9", "--no-auto-visible")
    sub = [s for s in t.ok("nvmf_get_subsystems") if s.get("nqn") == nqn2]
    check(bool(sub) and [n["nsid"] for n in sub[0]["namespaces"]] == [1], "nvmf_subsystem_add_ns --no-auto-visible adds NSID 1")
    check(t.ok("nvmf_ns_add_host", nqn2, "1", host) == "", "nvmf_ns_add_host succeeds silently")
    t.ok("nvmf_ns_add_host", nqn2, "1", host)  # again: no change, as SPDK
    t.fails(-32602, "visible to every host", "nvmf_ns_add_host", NQN, "1", host)
    t.fails(-32602, "not found", "nvmf_ns_add_host", nqn2, "5", host)
    t.fails(-32602, "invalid NQN", "nvmf_ns_add_host", nqn2, "1", "nohost")
    t.fails(-32602, "Unable to find subsystem", "nvmf_ns_remove_host", "nqn.2016-06.io.spdk:nope", "1", host)
    t.ok("nvmf_ns_add_host", nqn2, "1", "nqn.2014-08.org.nvmexpress:uuid:77777777-2222-3333-4444-555555555555")
    check(t.ok("nvmf_ns_remove_host", nqn2, "1", "nqn.2014-08.org.nvmexpress:uuid:77777777-2222-3333-4444-555555555555") == "",
          "nvmf_ns_remove_host succeeds silently")
    nvmf = [s for s in t.ok("save_config")["subsystems"] if s["subsystem"] == "nvmf"][0]["config"]
    adds = [c["params"] for c in nvmf if c["method"] == "nvmf_subsystem_add_ns" and c["params"]["nqn"] == nqn2]
    check(len(adds) == 1 and adds[0]["namespace"]["no_auto_visible"] is True, "save_config writes no_auto_visible")
    # A PTPL file (reservations persist through restarts): accepted and kept by save_config.
    ptpl = os.path.join(tempfile.mkdtemp(prefix="nvmf-ptpl-"), "ns2.json")
    t.ok("bdev_malloc_create", "-b", "Malloc8", "8", "512")
    t.ok("nvmf_subsystem_add_ns", nqn2, "Malloc8", "--ptpl-file", ptpl)
    nvmf = [s for s in t.ok("save_config")["subsystems"] if s["subsystem"] == "nvmf"][0]["config"]
    adds = [c["params"] for c in nvmf if c["method"] == "nvmf_subsystem_add_ns" and c["params"]["nqn"] == nqn2]
    check([a["namespace"].get("ptpl_file") for a in adds] == [None, ptpl], "save_config writes ptpl_file")
    t.ok("nvmf_subsystem_remove_ns", nqn2, "2")
    vis = [c["params"] for c in nvmf if c["method"] == "nvmf_ns_add_host"]
    check(vis == [{"nqn": nqn2, "nsid": 1, "host": host}], "save_config writes one nvmf_ns_add_host per visible host")

    check(t.ok("nvmf_discovery_get_referrals") == [], "no referrals at first")
    check(t.ok("nvmf_discovery_add_referral", "-t", "tcp", "-a", "192.0.2.7", "-s", "8009", "-f", "ipv4") == "",
          "nvmf_discovery_add_referral succeeds silently")
    t.ok("nvmf_discovery_add_referral", "-t", "tcp", "-a", "192.0.2.7", "-s", "8009", "-n", "discovery")  # the same one
    t.ok("nvmf_discovery_add_referral", "-t", "tcp", "-a", "192.0.2.8", "-s", "4420", "-n", "nqn.2016-06.io.spdk:far", "-k")
    t.ok("nvmf_discovery_add_referral", "-t", "tcp", "-a", "192.0.2.9", "-s", "4420")
    refs = t.ok("nvmf_discovery_get_referrals")
    want = [{"address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "192.0.2.7", "trsvcid": "8009"},
             "subnqn": "nqn.2014-08.org.nvmexpress.discovery", "secure_channel": False},
            {"address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "192.0.2.8", "trsvcid": "4420"},
             "subnqn": "nqn.2016-06.io.spdk:far", "secure_channel": True},
            {"address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "192.0.2.9", "trsvcid": "4420"},
             "subnqn": "nqn.2014-08.org.nvmexpress.discovery", "secure_channel": False}]
    check(refs == want, f"nvmf_discovery_get_referrals lists three referrals: {refs}")
    t.fails(-32602, "", "nvmf_discovery_add_referral", "-t", "tcp", "-a", "192.0.2.7")
    t.fails(-32602, "Invalid traddr", "nvmf_discovery_add_referral", "-t", "tcp", "-a", "nohost", "-s", "1")
    t.fails(-32602, "Invalid subnqn", "nvmf_discovery_add_referral", "-t", "tcp", "-a", "192.0.2.7", "-s", "1", "-n", "bogus")
    t.fails(-32602, "not found", "nvmf_discovery_remove_referral", "-t", "tcp", "-a", "192.0.2.6", "-s", "8009")
    check(t.ok("nvmf_discovery_remove_referral", "-t", "tcp", "-a", "192.0.2.9", "-s", "4420") == "",
          "nvmf_discovery_remove_referral succeeds silently")
    check(t.ok("nvmf_discovery_get_referrals") == want[:2], "the removed referral is gone")
    nvmf = [s for s in t.ok("save_config")["subsystems"] if s["subsystem"] == "nvmf"][0]["config"]
    saved = [c["params"] for c in nvmf if c["method"] == "nvmf_discovery_add_referral"]
    check(saved == want[:2], "save_config writes the referrals")


def ana(t, port):
    """ANA reporting, namespace ANA groups and listener states through rpc.py; save_config keeps them."""
    nqn = "nqn.2016-06.io.spdk:ana1"
    t.ok("bdev_malloc_create", "-b", "Malloc7", "8", "512")
    t.ok("bdev_malloc_create", "-b", "Malloc6", "8", "512")
    t.ok("nvmf_create_subsystem", nqn, "-a", "-r", "-m", "4")
    t.ok("nvmf_subsystem_add_ns", nqn, "Malloc7")
    t.ok("nvmf_subsystem_add_ns", nqn, "Malloc6", "--anagrpid", "3")
    t.fails(-32602, "ANA reporting", "nvmf_subsystem_add_listener", NQN, "-t", "tcp", "-a", "127.0.0.1", "-s", str(port), "-n", "inaccessible")
    t.ok("nvmf_subsystem_add_listener", nqn, "-t", "tcp", "-a", "127.0.0.1", "-s", str(port), "-n", "non_optimized")
    check(t.ok("nvmf_subsystem_listener_set_ana_state", nqn, "-n", "inaccessible", "-t", "tcp", "-a", "127.0.0.1",
               "-s", str(port), "-g", "3") == "", "nvmf_subsystem_listener_set_ana_state succeeds silently")
    ls = t.ok("nvmf_subsystem_get_listeners", nqn)
    states = [g["ana_state"] for g in ls[0]["ana_states"]] if isinstance(ls, list) and ls else []
    check(states == ["non_optimized", "non_optimized", "inaccessible", "non_optimized"],
          f"nvmf_subsystem_get_listeners shows each group's state: {states}")
    t.fails(-32602, "ANA", "nvmf_subsystem_listener_set_ana_state", NQN, "-n", "optimized", "-t", "tcp", "-a", "127.0.0.1", "-s", str(port))
    nvmf = [s for s in t.ok("save_config")["subsystems"] if s["subsystem"] == "nvmf"][0]["config"]
    mine = [c for c in nvmf if c["params"].get("nqn") == nqn]
    created = [c["params"] for c in mine if c["method"] == "nvmf_create_subsystem"]
    check(bool(created) and created[0].get("ana_reporting") is True, "save_config writes ana_reporting")
    groups = [c["params"]["namespace"]["anagrpid"] for c in mine if c["method"] == "nvmf_subsystem_add_ns"]
    check(groups == [1, 3], f"save_config writes each namespace's anagrpid: {groups}")
    sets = [(c["params"]["anagrpid"], c["params"]["ana_state"]) for c in mine if c["method"] == "nvmf_subsystem_listener_set_ana_state"]
    check(sets == [(1, "non_optimized"), (2, "non_optimized"), (3, "inaccessible"), (4, "non_optimized")],
          f"save_config writes the listener's non-optimized states: {sets}")


def save_and_restart(bindir, work, t, port):
    """rpc.py's save_config (framework_get_subsystems + framework_get_config) -> restart -> same."""
    first = t.ok("save_config")
    check(isinstance(first, dict) and [s["subsystem"] for s in first.get("subsystems", [])] == ["keyring", "bdev", "nvmf"],
          "spdk-rpc save_config writes the keyring, bdev and nvmf subsystems")
    path = os.path.join(work, "saved.json")
    with open(path, "w") as f:
        json.dump(first, f)
    t.stop()
    t2 = Target(bindir, work, "--json", path)
    second = t2.ok("save_config")
    check(second == first, "save_config after a restart from the saved file is the same")
    perf_verify(bindir, port, 2)
    return t2


# Parameters rpc.py's command line gathers under another name or into an object.
NESTED = {
    "nvmf_subsystem_add_ns": ("namespace", {"bdev_name", "ptpl_file", "nsid", "nguid", "eui64", "uuid", "anagrpid", "no_auto_visible"}),
    "nvmf_subsystem_add_listener": ("listen_address", {"trtype", "traddr", "trsvcid", "adrfam"}),
    "nvmf_subsystem_remove_listener": ("listen_address", {"trtype", "traddr", "trsvcid", "adrfam"}),
    "nvmf_subsystem_listener_set_ana_state": ("listen_address", {"trtype", "traddr", "trsvcid", "adrfam"}),
    "nvmf_discovery_add_referral": ("address", {"trtype", "traddr", "trsvcid", "adrfam"}),
    "nvmf_discovery_remove_referral": ("address", {"trtype", "traddr", "trsvcid", "adrfam"}),
}
RENAMED = {"total_size": "num_blocks"}
CLIENT_SIDE = {"save_config"}


def docs_list_every_parameter(t):
    """docs/rpc.md has a row for every parameter rpc.py can send to each method nvmf_tgt serves."""
    from spdk.spdk_rpc import create_parser
    parser, sub = create_parser()
    glob = {a.dest for a in parser._actions}
    with open(os.path.join(HERE, "..", "..", "docs", "rpc.md")) as f:
        doc = f.read()
    served = t.ok("rpc_get_methods")
    for m in served:
        p = sub.choices.get(m)
        if p is None or m in CLIENT_SIDE:
            continue
        dests = [a.dest for a in p._actions if a.dest not in glob and a.dest != "help"]
        if not dests:
            continue
        start = doc.find(f"#### {m}\n")
        section = doc[start:doc.find("\n#", start + 1)] if start >= 0 else ""
        missing = []
        for d in dests:
            d = RENAMED.get(d, d)
            obj, keys = NESTED.get(m, (None, set()))
            key = f"{obj}.{d}" if d in keys else d
            if f"| `{key}` |" not in section:
                missing.append(key)
        check(start >= 0 and not missing, f"docs/rpc.md lists every rpc.py parameter of {m}" + (f": missing {missing}" if missing else ""))


def spdk_written_config(bindir, work):
    """A config file as SPDK's nvmf_tgt writes it (fixtures/, written by hand from SPDK's
    *_write_config_json code: every subsystem and global method SPDK saves, every parameter at its
    default) starts nvmf_tgt unchanged and serves verified I/O."""
    with open(os.path.join(HERE, "fixtures", "spdk-nvmf-tgt-save-config.json")) as f:
        text = f.read()
    port = free_port()
    img, key = os.path.join(work, "aio0.img"), os.path.join(work, "key0")
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    with open(key, "w") as f:
        f.write("DHHC-1:01:FXxHMF/wOdhX0qUZw2Cd4EvRbJ9L57chOXvRTS1yeX9f/gxI:")
    os.chmod(key, 0o600)
    # Only the paths and the port differ from the file SPDK would write.
    text = text.replace("/var/tmp/aio0.img", img).replace("/var/tmp/key0", key).replace('"4420"', f'"{port}"')
    path = os.path.join(work, "spdk-written.json")
    with open(path, "w") as f:
        f.write(text)
    t = Target(bindir, work, "--json", path)
    bdevs = {b["name"]: b for b in t.ok("bdev_get_bdevs")}
    check(set(bdevs) == {"Malloc0", "Null0", "AIO0"}, "the SPDK-written config creates its three bdevs")
    subs = [s for s in t.ok("nvmf_get_subsystems") if s.get("nqn") == NQN]
    check(len(subs) == 1 and len(subs[0]["namespaces"]) == 3 and len(subs[0]["hosts"]) == 1,
          "its subsystem with three namespaces and the DH-HMAC-CHAP host")
    keys = t.ok("keyring_get_keys")
    check(isinstance(keys, list) and [k["name"] for k in keys] == ["key0"], "its keyring key")
    perf_verify(bindir, port, 1)
    t.stop()


def startup_and_logs(bindir, work, saved):
    """--wait-for-rpc: only start-up methods until framework_start_init (rpc.py load_config uses
    rpc_get_methods --current to order a config around it); log_* methods; spdk_kill_instance."""
    t = Target(bindir, work, "--wait-for-rpc")
    current = t.ok("rpc_get_methods", "--current")
    check(isinstance(current, list) and "framework_start_init" in current and "bdev_malloc_create" not in current
          and "iobuf_set_options" in current, "before init, rpc_get_methods --current lists start-up methods only")
    t.fails(-1, "framework_start_init", "bdev_malloc_create", "-b", "M", "8", "512")
    t.ok("iobuf_set_options", "--small-pool-count", "8192")
    t.fails(-32602, "identify_ctrlr", "nvmf_set_config", "--passthru-admin-cmds", "identify_ctrlr")
    check(t.ok("nvmf_set_config", "--discovery-filters", "match_any") == "", "nvmf_set_config at its defaults")
    # rpc.py's own load_config: start-up entries, then framework_start_init, then the rest.
    with open(saved) as f:
        r = subprocess.run(["spdk-rpc", "-s", t.sock, "load_config"], stdin=f, capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "spdk-rpc load_config of the saved config on a --wait-for-rpc target" + ("" if r.returncode == 0 else f": {r.stdout}{r.stderr}"))
    check(t.ok("framework_wait_init") == "", "framework_wait_init returns once initialized")
    with open(saved) as f:
        want = json.load(f)
    check(t.ok("save_config") == want, "the loaded state saves as the file it came from")
    t.fails(-1, "before framework is initialized", "framework_start_init")
    t.fails(-1, "before framework is initialized", "iobuf_set_options", "--small-pool-count", "8192")
    check(t.ok("log_get_level") == "INFO", "log_get_level is INFO")
    t.ok("log_set_level", "ERROR")
    check(t.ok("log_get_level") == "ERROR", "log_set_level ERROR took")
    t.ok("log_set_print_level", "INFO")
    t.ok("log_set_flag", "nvmf_tcp")
    flags = t.ok("log_get_flags")
    check(isinstance(flags, dict) and flags.get("nvmf_tcp") is True and flags.get("bdev") is False, "log_get_flags shows nvmf_tcp set")
    t.ok("log_clear_flag", "nvmf_tcp")
    check(t.ok("log_get_flags").get("nvmf_tcp") is False, "log_clear_flag cleared it")
    t.fails(-32602, "Invalid log flag", "log_set_flag", "nope")
    t.stop("rpc")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release")
    a = ap.parse_args()
    if shutil.which("spdk-rpc") is None:
        print("FAIL spdk-rpc is not installed (pip install spdk==26.9)")
        return 1
    work = tempfile.mkdtemp(prefix="nvmf-spdk-rpc-")
    port = free_port()
    t = Target(a.bin, work, "--no-default")
    try:
        docs_list_every_parameter(t)
        readme_sequence(t, work, port)
        perf_verify(a.bin, port, 2)
        st = {b["name"]: b for b in t.ok("bdev_get_iostat")["bdevs"]}
        check(st.get("Malloc0", {}).get("num_read_ops", 0) > 0 and st["Malloc0"]["num_write_ops"] > 0
              and st["Malloc0"]["bytes_read"] % 4096 == 0 and st.get("Null0", {}).get("num_read_ops") == 0,
              "bdev_get_iostat counts the verified I/O on Malloc0 and none on Null0")
        t.fails(-19, "", "bdev_get_iostat", "--names", "Nope")
        spdk_cli_browses(t)
        bad_arguments(t)
        keyring_and_hosts(t, work)
        visibility_and_referrals(t)
        ana(t, port)
        t = save_and_restart(a.bin, work, t, port)
        t.stop()
        startup_and_logs(a.bin, work, os.path.join(work, "saved.json"))
        spdk_written_config(a.bin, work)
    finally:
        if t.proc.poll() is None:
            t.stop()
    print(f"{len(failures)} check(s) failed" if failures else "all checks passed")
    if failures:
        with open(os.path.join(work, "nvmf_tgt.log"), "rb") as f:
            sys.stdout.write(f.read()[-4000:].decode(errors="replace"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
