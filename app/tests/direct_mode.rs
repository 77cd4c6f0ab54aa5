//! Direct mode through the application: host client → NVMe/TCP → nvmf_tgt reactors → each
//! reactor's own hardware queue pair (nvme-driver) → the emulated PCIe controller, and back.
//! The controller comes from `bdev_nvme_attach_controller` with `traddr: "emulated"`.

#![forbid(unsafe_code)]

mod common;

use common::*;
use nvme_driver::emulator::{VENDOR_LOAD, VENDOR_STORE, VENDOR_STORE_DW0};
use nvmf::host::{Controller, HostConfig};
use nvmf::spec::{GenericStatus, Sqe, Status};
use serde_json::{json, Value};
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);
const NQN: &str = "nqn.2016-06.io.nvmf-rs:direct";
/// 64 MiB namespace of 512-byte blocks.
const BLOCKS: u64 = 131072;

fn host_cfg() -> HostConfig {
    HostConfig { io_timeout: Duration::from_secs(10), ..Default::default() }
}

/// An SPDK-style config: the emulated controller, a TCP transport, a subsystem with its
/// namespace, a listener on an ephemeral port.
fn config() -> Value {
    json!({"subsystems": [
        {"subsystem": "bdev", "config": [
            {"method": "bdev_nvme_attach_controller", "params": {
                "name": "Nvme0", "trtype": "PCIe", "traddr": "emulated", "emulated_num_blocks": BLOCKS}},
            {"method": "bdev_malloc_create", "params": {"name": "Malloc0", "num_blocks": 2048, "block_size": 512}}
        ]},
        {"subsystem": "nvmf", "config": [
            {"method": "nvmf_create_transport", "params": {"trtype": "TCP"}},
            {"method": "nvmf_create_subsystem", "params": {"nqn": NQN, "allow_any_host": true, "serial_number": "DIRECT01"}},
            {"method": "nvmf_subsystem_add_ns", "params": {"nqn": NQN, "namespace": {"bdev_name": "Nvme0n1", "passthru_io": true}}},
            {"method": "nvmf_subsystem_add_ns", "params": {"nqn": NQN, "namespace": {"bdev_name": "Malloc0", "nsid": 2}}},
            {"method": "nvmf_subsystem_add_listener", "params": {"nqn": NQN, "listen_address": {
                "trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "0"}}}
        ]}
    ]})
}

/// `nvmf_tgt rpc METHOD ARGS...`, parsed.
fn rpc_json(t: &Tgt, args: &[&str]) -> Value {
    let (code, out, err) = t.rpc(args);
    assert_eq!(code, 0, "rpc {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("rpc {args:?}: {e}: {out}"))
}

/// The port the subsystem listens on.
fn listener_port(t: &Tgt, nqn: &str) -> u16 {
    let subs = rpc_json(t, &["nvmf_get_subsystems"]);
    let sub = subs.as_array().unwrap().iter().find(|s| s["nqn"] == nqn).expect("subsystem");
    sub["listen_addresses"][0]["trsvcid"].as_str().expect("trsvcid").parse().expect("port")
}

#[test]
fn host_to_emulated_controller_through_two_reactors() {
    let _g = serial();
    let cfg = TempFile::new("direct.json", 0);
    std::fs::write(cfg.path(), serde_json::to_vec_pretty(&config()).unwrap()).unwrap();
    let cfg_path = cfg.path().to_str().unwrap();
    let mut t = Tgt::start_empty(&["--json", cfg_path, "--cpus", "0,1"]);
    let port = listener_port(&t, NQN);

    let bdevs = rpc_json(&t, &["bdev_get_bdevs", "--name", "Nvme0n1"]);
    assert_eq!(bdevs[0]["product_name"], "NVMe disk");
    assert_eq!(bdevs[0]["num_blocks"], BLOCKS);
    assert_eq!(bdevs[0]["claimed"], true);
    assert_eq!(bdevs[0]["supported_io_types"]["nvme_io"], true);

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = Controller::connect(addr, NQN, &host_cfg()).expect("connect");
    assert_eq!(c.active_namespaces().expect("active namespaces"), vec![1, 2]);
    assert_eq!(c.identify_namespace(1).expect("identify namespace").nsze.get(), BLOCKS);
    // Round-robin over two reactors: admin queue on reactor 0, queue 1 on reactor 1, queue 2 on
    // reactor 0. Both reactors serve I/O, so each opens its own channel (hardware queue pair).
    let mut q1 = c.connect_io_queue(1).expect("io queue 1");
    let mut q2 = c.connect_io_queue(2).expect("io queue 2");
    assert_eq!(t.wait_count("-> reactor 1 (core 1)", 1, SEC), 1);

    let cases: [(u64, u32); 5] = [(0, 1), (7, 8), (1000, 256), (4096, 2048), (BLOCKS - 2048, 2048)];
    for (i, &(lba, nlb)) in cases.iter().enumerate() {
        let data = pattern(i as u64 + 1, lba, nlb as usize * 512);
        // Written through one reactor's queue pair, read back through the other's.
        let (w, r) = if i % 2 == 0 { (&mut q1, &mut q2) } else { (&mut q2, &mut q1) };
        w.write(1, lba, nlb, &data).unwrap_or_else(|e| panic!("write lba {lba} x{nlb}: {e}"));
        let mut back = vec![0u8; data.len()];
        r.read(1, lba, nlb, &mut back).unwrap_or_else(|e| panic!("read lba {lba} x{nlb}: {e}"));
        assert!(back == data, "read-back differs at lba {lba} x{nlb}");
        let mut back2 = vec![0u8; data.len()];
        w.read(1, lba, nlb, &mut back2).expect("read on the writing queue");
        assert!(back2 == data);
        w.compare(1, lba, nlb, &data).expect("compare");
    }
    q1.flush(1).expect("flush");
    q2.write_zeroes(1, 4096, 16).expect("write zeroes");
    let mut back = vec![0xffu8; 16 * 512];
    q1.read(1, 4096, 16, &mut back).expect("read zeroes");
    assert!(back.iter().all(|&b| b == 0));
    // Past the end: the target refuses it before the device.
    let mut one = vec![0u8; 512];
    assert!(q1.read(1, BLOCKS, 1, &mut one).is_err());

    // Every transfer used a DMA buffer the reactor's channel lent to the transport.
    let bdevs = rpc_json(&t, &["bdev_get_bdevs", "--name", "Nvme0n1"]);
    assert_eq!(bdevs[0]["driver_specific"]["nvme"][0]["data_copied_bytes"], 0, "no bounce copy: {bdevs}");
    passthrough(&mut q1, &mut q2);

    assert_eq!(
        t.wait_count("bdev Nvme0n1: channel on hardware I/O queue", 2, SEC),
        2,
        "one hardware queue pair per reactor"
    );
    let qids: std::collections::HashSet<String> = t
        .log()
        .iter()
        .filter_map(|l| {
            l.split("channel on hardware I/O queue ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        })
        .collect();
    assert_eq!(qids.len(), 2, "distinct hardware queues: {qids:?}");

    // Hosts still connected: SIGTERM drains, stops the reactors, then shuts the controller down.
    t.terminate(Duration::from_secs(15));
    assert_eq!(t.count_log("NVMe controller Nvme0 (emulated) shut down"), 1, "CC.SHN at exit");
    let log = t.log();
    let stopped = log.iter().rposition(|l| l.contains("reactor 1 (core 1) stopped")).expect("reactor 1 stopped");
    let shut = log.iter().position(|l| l.contains("NVMe controller Nvme0 (emulated) shut down")).unwrap();
    assert!(stopped < shut, "controller shut down after the reactors stopped");
    assert_eq!(t.count_log("dropped with"), 0, "no queue pair dropped with commands outstanding");
}

fn vendor_sqe(opcode: u8, nsid: u32, bytes: usize) -> Sqe {
    let mut sqe = Sqe { opcode, ..Default::default() };
    sqe.nsid.set(nsid);
    sqe.cdw10.set(bytes as u32 / 4);
    sqe
}

/// With `passthru_io` on, opcodes the target does not model reach the device (the emulator's
/// vendor-specific store and load): data both ways, the device's DW0 and its error status come
/// back unchanged. On a Malloc namespace the same opcode is the target's Invalid Opcode.
fn passthrough(q1: &mut nvmf::host::IoQueue, q2: &mut nvmf::host::IoQueue) {
    let invalid_opcode = Status::generic(GenericStatus::INVALID_OPCODE).dnr();
    // 64 KiB: more than the in-capsule size, so it goes R2T / H2CData.
    for (len, seed) in [(4096usize, 1u64), (64 << 10, 2)] {
        let data = pattern(seed, 0, len);
        let cqe = q1.raw(vendor_sqe(VENDOR_STORE, 1, len), Some(&data), None).expect("vendor store");
        assert!(cqe.status().is_success(), "{:?}", cqe.status());
        assert_eq!(cqe.dw0.get(), VENDOR_STORE_DW0, "DW0 from the device");
        let mut back = vec![0u8; len];
        // Through the other reactor's hardware queue pair: the device kept it.
        let cqe = q2.raw(vendor_sqe(VENDOR_LOAD, 1, len), None, Some(&mut back)).expect("vendor load");
        assert!(cqe.status().is_success(), "{:?}", cqe.status());
        assert_eq!(cqe.dw0.get(), len as u32);
        assert!(back == data, "vendor data came back from the device ({len} bytes)");
    }
    // Unknown to the device: its own status reaches the host.
    let cqe = q1.raw(vendor_sqe(0xC5, 1, 0), None, None).expect("unknown vendor opcode");
    assert_eq!(cqe.status(), invalid_opcode);
    // Larger than a 128 KiB command buffer: one command all the same, through the channel's
    // passthrough buffer (the emulated controller's MDTS is 2 MiB).
    let big = pattern(77, 0, 256 << 10);
    let cqe = q1.raw(vendor_sqe(VENDOR_STORE, 1, big.len()), Some(&big), None).expect("big vendor store");
    assert!(cqe.status().is_success(), "{:?}", cqe.status());
    let mut back = vec![0u8; big.len()];
    let cqe = q2.raw(vendor_sqe(VENDOR_LOAD, 1, big.len()), None, Some(&mut back)).expect("big vendor load");
    assert!(cqe.status().is_success(), "{:?}", cqe.status());
    assert!(back == big, "256 KiB of vendor data came back");
    // Not an NVMe namespace: no passthrough.
    let cqe = q1.raw(vendor_sqe(VENDOR_STORE, 2, 4096), Some(&[1u8; 4096]), None).expect("vendor store on malloc");
    assert_eq!(cqe.status(), invalid_opcode);
    assert_eq!(cqe.dw0.get(), 0);
}
