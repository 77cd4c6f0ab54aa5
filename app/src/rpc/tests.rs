//! Dispatcher tests against a real `Target`, the socket server end to end, and a host
//! connecting to a subsystem built entirely by RPC.

use super::error::*;
use super::*;
use crate::state::AppState;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NQN: &str = "nqn.2016-06.io.spdk:cnode1";

fn state() -> AppState {
    AppState::new(::nvmf::Target::new())
}

fn call(st: &mut AppState, m: &str, p: Value) -> Result<Value, RpcError> {
    dispatch(st, m, if p.is_null() { None } else { Some(p) })
}

#[track_caller]
fn ok(st: &mut AppState, m: &str, p: Value) -> Value {
    call(st, m, p.clone()).unwrap_or_else(|e| panic!("{m} {p}: {e}"))
}

/// Everything observable, to check that a failed request changed nothing.
fn snapshot(st: &mut AppState) -> Value {
    json!({
        "config": framework::config_document(st),
        "subsystems": ok(st, "nvmf_get_subsystems", Value::Null),
        "bdevs": ok(st, "bdev_get_bdevs", Value::Null),
        "listen": st.target.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
    })
}

/// Assert that `m(p)` fails with `code` and leaves the state untouched.
#[track_caller]
fn fails(st: &mut AppState, m: &str, p: Value, code: i32) -> String {
    let before = snapshot(st);
    let e = call(st, m, p.clone()).expect_err(&format!("{m} {p} should fail"));
    assert_eq!(e.code, code, "{m} {p}: {}", e.message);
    assert!(!e.message.is_empty());
    assert_eq!(snapshot(st), before, "{m} {p} changed the state");
    e.message
}

/// A state with a TCP transport, Malloc0 and a subsystem with it as namespace 1.
fn populated() -> AppState {
    let mut st = state();
    ok(&mut st, "nvmf_create_transport", json!({"trtype": "TCP"}));
    ok(&mut st, "bdev_malloc_create", json!({"name": "Malloc0", "num_blocks": 2048, "block_size": 512}));
    ok(&mut st, "nvmf_create_subsystem", json!({"nqn": NQN, "serial_number": "SN1", "allow_any_host": true}));
    ok(&mut st, "nvmf_subsystem_add_ns", json!({"nqn": NQN, "namespace": {"bdev_name": "Malloc0"}}));
    st
}

#[test]
fn bdev_methods() {
    let mut st = state();
    assert_eq!(
        ok(&mut st, "bdev_malloc_create", json!({"name": "M0", "num_blocks": 1024, "block_size": 512})),
        json!("M0")
    );
    assert_eq!(
        ok(&mut st, "bdev_null_create", json!({"name": "N0", "num_blocks": 1024, "block_size": 4096})),
        json!("N0")
    );
    assert_eq!(ok(&mut st, "bdev_malloc_create", json!({"num_blocks": 8, "block_size": 512})), json!("Malloc0"));
    let u = "0b1e8a6c-4d2f-4a3b-9c1d-2e3f4a5b6c7d";
    ok(&mut st, "bdev_malloc_create", json!({"name": "M1", "num_blocks": 8, "block_size": 512, "uuid": u}));
    let dir = std::env::temp_dir().join(format!("nvmf-tgt-rpc-bdev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("disk.img");
    std::fs::write(&f, vec![0u8; 1 << 20]).unwrap();
    ok(&mut st, "bdev_aio_create", json!({"name": "A0", "filename": f, "block_size": 4096}));

    let all = ok(&mut st, "bdev_get_bdevs", Value::Null);
    assert_eq!(all.as_array().unwrap().len(), 5);
    let a0 = &ok(&mut st, "bdev_get_bdevs", json!({"name": "A0"}))[0];
    assert_eq!(a0["product_name"], "AIO disk");
    assert_eq!(a0["num_blocks"], 256);
    assert_eq!(a0["claimed"], false);
    assert_eq!(a0["driver_specific"]["aio"]["sync_points"], 0);
    st.bdevs["A0"].flush_blocking().unwrap();
    assert_eq!(ok(&mut st, "bdev_get_bdevs", json!({"name": "A0"}))[0]["driver_specific"]["aio"]["sync_points"], 1);
    let m1 = &ok(&mut st, "bdev_get_bdevs", json!({"name": "M1"}))[0];
    assert_eq!(m1["uuid"], u);
    assert_eq!(m1["supported_io_types"]["read"], true);

    // Bad params: missing, unknown, wrong type, duplicate, bad geometry, unknown bdev.
    fails(&mut st, "bdev_malloc_create", json!({"name": "X", "block_size": 512}), INVALID_PARAMS);
    fails(
        &mut st,
        "bdev_malloc_create",
        json!({"name": "X", "num_blocks": 8, "block_size": 512, "bogus": 1}),
        INVALID_PARAMS,
    );
    fails(&mut st, "bdev_malloc_create", json!({"name": "X", "num_blocks": "8", "block_size": 512}), INVALID_PARAMS);
    fails(&mut st, "bdev_malloc_create", json!({"name": "M0", "num_blocks": 8, "block_size": 512}), EEXIST);
    fails(&mut st, "bdev_malloc_create", json!({"name": "X", "num_blocks": 8, "block_size": 500}), EINVAL);
    fails(
        &mut st,
        "bdev_malloc_create",
        json!({"name": "X", "num_blocks": 8, "block_size": 512, "uuid": "nope"}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "bdev_malloc_create",
        json!({"name": "X", "num_blocks": 8, "block_size": 512, "md_size": 8}),
        INVALID_PARAMS,
    );
    fails(&mut st, "bdev_null_create", json!({"name": "X", "num_blocks": 8}), INVALID_PARAMS);
    fails(&mut st, "bdev_null_create", json!({"name": "N0", "num_blocks": 8, "block_size": 512}), EEXIST);
    fails(&mut st, "bdev_aio_create", json!({"name": "X", "filename": dir.join("missing")}), ENOENT);
    fails(&mut st, "bdev_aio_create", json!({"name": "X"}), INVALID_PARAMS);
    fails(&mut st, "bdev_aio_create", json!({"name": "A0", "filename": f}), EEXIST);
    fails(&mut st, "bdev_get_bdevs", json!({"name": "Nope"}), ENODEV);
    fails(&mut st, "bdev_get_bdevs", json!({"name": 5}), INVALID_PARAMS);
    fails(&mut st, "bdev_malloc_delete", json!({"name": "Nope"}), ENODEV);
    fails(&mut st, "bdev_malloc_delete", json!({}), INVALID_PARAMS);
    fails(&mut st, "bdev_malloc_delete", json!({"name": "N0"}), ENODEV); // a Null bdev
    fails(&mut st, "bdev_null_delete", json!({"name": "M0", "x": 1}), INVALID_PARAMS);
    fails(&mut st, "bdev_aio_delete", json!({"name": "M0"}), ENODEV);

    // In use by a namespace: refused.
    ok(&mut st, "nvmf_create_subsystem", json!({"nqn": NQN}));
    ok(&mut st, "nvmf_subsystem_add_ns", json!({"nqn": NQN, "namespace": {"bdev_name": "M0"}}));
    assert_eq!(ok(&mut st, "bdev_get_bdevs", json!({"name": "M0"}))[0]["claimed"], true);
    fails(&mut st, "bdev_malloc_delete", json!({"name": "M0"}), EBUSY);
    ok(&mut st, "nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": 1}));

    for (m, n) in [("bdev_malloc_delete", "M0"), ("bdev_null_delete", "N0"), ("bdev_aio_delete", "A0")] {
        assert_eq!(ok(&mut st, m, json!({"name": n})), json!(true));
        assert!(!st.bdevs.contains_key(n));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nvme_attach_and_detach_emulated() {
    let mut st = populated();
    let emu = json!({"name": "Nvme0", "trtype": "PCIe", "traddr": "emulated", "emulated_namespaces": 2,
                     "emulated_block_size": 4096, "emulated_num_blocks": 1024});
    assert_eq!(ok(&mut st, "bdev_nvme_attach_controller", emu.clone()), json!(["Nvme0n1", "Nvme0n2"]));
    let b = ok(&mut st, "bdev_get_bdevs", json!({"name": "Nvme0n2"}));
    assert_eq!(b[0]["product_name"], "NVMe disk");
    assert_eq!((b[0]["block_size"].as_u64(), b[0]["num_blocks"].as_u64()), (Some(4096), Some(1024)));
    assert_eq!(b[0]["driver_specific"]["nvme"][0]["trid"]["traddr"], "emulated");
    assert_eq!(b[0]["driver_specific"]["nvme"][0]["data_copied_bytes"], 0);
    assert_eq!(b[0]["supported_io_types"]["nvme_io"], true, "passthrough");
    // Bad requests change nothing.
    fails(&mut st, "bdev_nvme_attach_controller", emu.clone(), EEXIST);
    fails(&mut st, "bdev_nvme_attach_controller", json!({"name": "Nvme1"}), INVALID_PARAMS);
    fails(
        &mut st,
        "bdev_nvme_attach_controller",
        json!({"name": "Nvme1", "trtype": "TCP", "traddr": "127.0.0.1"}),
        EOPNOTSUPP,
    );
    fails(
        &mut st,
        "bdev_nvme_attach_controller",
        json!({"name": "Nvme1", "trtype": "PCIe", "traddr": "emulated", "emulated_block_size": 1000}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "bdev_nvme_attach_controller",
        json!({"name": "Nvme1", "trtype": "PCIe", "traddr": "0000:01:00.0", "emulated_num_blocks": 8}),
        INVALID_PARAMS,
    );
    // No such PCI device (or no VFIO here): a clear error, nothing half-attached.
    let m = fails(
        &mut st,
        "bdev_nvme_attach_controller",
        json!({"name": "Nvme1", "trtype": "PCIe", "traddr": "0000:ff:1f.7"}),
        ENODEV,
    );
    assert!(m.contains("Unable to attach controller Nvme1"), "{m}");
    fails(&mut st, "bdev_malloc_delete", json!({"name": "Nvme0n1"}), ENODEV);

    // Passthrough trusting the hosts: only on an NVMe bdev, off unless asked for.
    fails(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "Nvme0n2", "passthru_io": "yes"}}),
        INVALID_PARAMS,
    );
    ok(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "Nvme0n2", "passthru_io": true}}),
    );
    let subs = ok(&mut st, "nvmf_get_subsystems", json!({"nqn": NQN}));
    let nss = subs[0]["namespaces"].as_array().unwrap();
    assert_eq!(
        nss.iter().map(|n| n["passthru_io"].clone()).collect::<Vec<_>>(),
        vec![json!(false), json!(true)],
        "{subs}"
    );
    let m = fails(&mut st, "bdev_nvme_detach_controller", json!({"name": "Nvme0"}), EBUSY);
    assert!(m.contains("Nvme0n2"), "{m}");
    fails(&mut st, "bdev_nvme_detach_controller", json!({"name": "Nvme9"}), ENODEV);

    // save_config recreates the controller with one call.
    let doc = framework::config_document(&st);
    let bdev = doc["subsystems"].as_array().unwrap().iter().find(|s| s["subsystem"] == "bdev").unwrap();
    let attach: Vec<&Value> =
        bdev["config"].as_array().unwrap().iter().filter(|e| e["method"] == "bdev_nvme_attach_controller").collect();
    assert_eq!(attach.len(), 1);
    assert_eq!(attach[0]["params"], emu);
    let nvmf = doc["subsystems"].as_array().unwrap().iter().find(|s| s["subsystem"] == "nvmf").unwrap();
    let add_ns: Vec<&Value> =
        nvmf["config"].as_array().unwrap().iter().filter(|e| e["method"] == "nvmf_subsystem_add_ns").collect();
    assert_eq!(
        add_ns.iter().map(|e| e["params"]["namespace"].get("passthru_io").cloned()).collect::<Vec<_>>(),
        vec![None, Some(json!(true))]
    );
    let mut st2 = state();
    crate::config::apply(&doc, &mut st2).unwrap();
    assert_eq!(framework::config_document(&st2), doc);
    assert!(st2.target.subsystem(NQN).unwrap().namespace(2).unwrap().passthru_io, "loaded back on");

    ok(&mut st, "nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": 2}));
    let ctrl = st.nvme_ctrlrs["Nvme0"].ctrl.clone();
    assert_eq!(ok(&mut st, "bdev_nvme_detach_controller", json!({"name": "Nvme0"})), json!(true));
    assert!(!st.bdevs.contains_key("Nvme0n1") && !st.bdevs.contains_key("Nvme0n2"));
    assert!(ctrl.alloc_io_qpair().is_err(), "the controller was shut down");
    // The name is free again.
    ok(&mut st, "bdev_nvme_attach_controller", json!({"name": "Nvme0", "trtype": "PCIe", "traddr": "emulated"}));
    assert_eq!(st.bdevs["Nvme0n1"].num_blocks(), 131072);
}

#[test]
fn transport_methods() {
    let mut st = state();
    assert_eq!(ok(&mut st, "nvmf_get_transports", Value::Null), json!([]));
    fails(&mut st, "nvmf_create_transport", json!({}), INVALID_PARAMS);
    fails(&mut st, "nvmf_create_transport", json!({"trtype": "FC"}), INVALID_PARAMS);
    #[cfg(not(feature = "rdma"))]
    fails(&mut st, "nvmf_create_transport", json!({"trtype": "RDMA"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_create_transport", json!({"trtype": "TCP", "max_io_size": "big"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_create_transport", json!({"trtype": "TCP", "max_io_size": 1 << 24}), INVALID_PARAMS);
    fails(&mut st, "nvmf_create_transport", json!({"trtype": "TCP", "frobnicate": true}), INVALID_PARAMS);
    assert!(st.target.transports().is_empty());
    ok(
        &mut st,
        "nvmf_create_transport",
        json!({"trtype": "tcp", "max_queue_depth": 64, "io_unit_size": 8192, "in_capsule_data_size": 16384, "c2h_success": false, "num_shared_buffers": 511}),
    );
    fails(&mut st, "nvmf_create_transport", json!({"trtype": "TCP"}), EEXIST);
    let t = ok(&mut st, "nvmf_get_transports", json!({"trtype": "TCP"}));
    assert_eq!(t[0]["trtype"], "TCP");
    assert_eq!(t[0]["max_queue_depth"], 64);
    assert_eq!(t[0]["io_unit_size"], 8192);
    assert_eq!(t[0]["in_capsule_data_size"], 16384);
    assert_eq!(t[0]["c2h_success"], false);
    assert_eq!(t[0]["max_data_per_ctrlr"], 256 << 20, "per-host limits shown with their defaults");
    assert_eq!(t[0]["h2c_data_timeout_ms"], 10_000);
    // Per-host limits: set, shown, refused when 0 where 0 means nothing.
    let mut st2 = state();
    fails(&mut st2, "nvmf_create_transport", json!({"trtype": "TCP", "max_connections": 0}), INVALID_PARAMS);
    ok(
        &mut st2,
        "nvmf_create_transport",
        json!({"trtype": "TCP", "h2c_data_timeout_ms": 250, "max_connections_per_listener": 8, "max_data_per_qpair": 1048576, "send_timeout_ms": 0}),
    );
    let t = ok(&mut st2, "nvmf_get_transports", json!({"trtype": "TCP"}));
    assert_eq!(
        (t[0]["h2c_data_timeout_ms"].as_u64(), t[0]["max_connections_per_listener"].as_u64()),
        (Some(250), Some(8))
    );
    assert_eq!((t[0]["max_data_per_qpair"].as_u64(), t[0]["send_timeout_ms"].as_u64()), (Some(1 << 20), Some(0)));
    fails(&mut st, "nvmf_get_transports", json!({"trtype": "RDMA"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_get_transports", json!({"bogus": 1}), INVALID_PARAMS);
}

#[test]
fn subsystem_methods() {
    let mut st = state();
    ok(
        &mut st,
        "nvmf_create_subsystem",
        json!({"nqn": NQN, "serial_number": "SPDK00000000000001", "model_number": "M", "max_namespaces": 4}),
    );
    ok(&mut st, "nvmf_create_subsystem", json!({"nqn": "nqn.2016-06.io.spdk:cnode2"}));
    let subs = ok(&mut st, "nvmf_get_subsystems", Value::Null);
    assert_eq!(subs[0]["subtype"], "Discovery");
    let s = &subs[1];
    assert_eq!(s["nqn"], NQN);
    assert_eq!(s["subtype"], "NVMe");
    assert_eq!(s["serial_number"], "SPDK00000000000001");
    assert_eq!(s["model_number"], "M");
    assert_eq!(s["max_namespaces"], 4);
    assert_eq!(s["allow_any_host"], false);
    assert_eq!(s["hosts"], json!([]));
    assert_eq!(s["namespaces"], json!([]));
    assert_eq!(subs[2]["serial_number"], "00000000000000000000");
    assert_eq!(subs[2]["model_number"], "SPDK bdev Controller");
    assert_eq!(ok(&mut st, "nvmf_get_subsystems", json!({"nqn": NQN})).as_array().unwrap().len(), 1);

    fails(&mut st, "nvmf_create_subsystem", json!({"nqn": NQN}), EEXIST);
    fails(&mut st, "nvmf_create_subsystem", json!({"nqn": "bad"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_create_subsystem", json!({"nqn": "nqn.2014-08.org.nvmexpress.discovery"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_create_subsystem", json!({}), INVALID_PARAMS);
    fails(
        &mut st,
        "nvmf_create_subsystem",
        json!({"nqn": "nqn.2016-06.io.spdk:c3", "serial_number": "012345678901234567890123"}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_create_subsystem",
        json!({"nqn": "nqn.2016-06.io.spdk:c3", "allow_any_host": "yes"}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_create_subsystem",
        json!({"nqn": "nqn.2016-06.io.spdk:c3", "max_namespaces": 5000}),
        INVALID_PARAMS,
    );
    fails(&mut st, "nvmf_create_subsystem", json!({"nqn": "nqn.2016-06.io.spdk:c3", "unknown": 1}), INVALID_PARAMS);
    fails(&mut st, "nvmf_get_subsystems", json!({"nqn": "nqn.2016-06.io.spdk:none"}), INVALID_PARAMS);

    // Hosts and allow_any_host.
    let host = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
    ok(&mut st, "nvmf_subsystem_add_host", json!({"nqn": NQN, "host": host}));
    assert_eq!(ok(&mut st, "nvmf_get_subsystems", json!({"nqn": NQN}))[0]["hosts"], json!([{"nqn": host}]));
    fails(&mut st, "nvmf_subsystem_add_host", json!({"nqn": NQN, "host": host}), EEXIST);
    fails(&mut st, "nvmf_subsystem_add_host", json!({"nqn": NQN, "host": "x"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_subsystem_add_host", json!({"nqn": NQN}), INVALID_PARAMS);
    fails(&mut st, "nvmf_subsystem_add_host", json!({"nqn": "nqn.2016-06.io.spdk:none", "host": host}), INVALID_PARAMS);
    fails(&mut st, "nvmf_subsystem_add_host", json!({"nqn": NQN, "host": host, "psk": "k"}), INVALID_PARAMS);
    fails(
        &mut st,
        "nvmf_subsystem_remove_host",
        json!({"nqn": NQN, "host": "nqn.2014-08.org.nvmexpress:other"}),
        INVALID_PARAMS,
    );
    ok(&mut st, "nvmf_subsystem_remove_host", json!({"nqn": NQN, "host": host}));
    assert_eq!(st.target.subsystem(NQN).unwrap().hosts().len(), 0);
    ok(&mut st, "nvmf_subsystem_allow_any_host", json!({"nqn": NQN, "allow_any_host": true}));
    assert!(st.target.subsystem(NQN).unwrap().allow_any_host());
    fails(&mut st, "nvmf_subsystem_allow_any_host", json!({"nqn": NQN}), INVALID_PARAMS);
    fails(&mut st, "nvmf_subsystem_allow_any_host", json!({"nqn": NQN, "allow_any_host": 1}), INVALID_PARAMS);
    fails(&mut st, "nvmf_subsystem_allow_any_host", json!({"nqn": NQN, "disable": true}), INVALID_PARAMS);
    fails(
        &mut st,
        "nvmf_subsystem_allow_any_host",
        json!({"nqn": "nqn.2016-06.io.spdk:none", "allow_any_host": false}),
        INVALID_PARAMS,
    );
    ok(&mut st, "nvmf_subsystem_allow_any_host", json!({"nqn": NQN, "allow_any_host": false}));
    assert!(!st.target.subsystem(NQN).unwrap().allow_any_host());

    // Delete.
    fails(&mut st, "nvmf_delete_subsystem", json!({"nqn": "nqn.2016-06.io.spdk:none"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_delete_subsystem", json!({"nqn": "nqn.2014-08.org.nvmexpress.discovery"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_delete_subsystem", json!({}), INVALID_PARAMS);
    ok(&mut st, "nvmf_delete_subsystem", json!({"nqn": "nqn.2016-06.io.spdk:cnode2"}));
    assert!(st.target.subsystem("nqn.2016-06.io.spdk:cnode2").is_none());
}

#[test]
fn namespace_methods() {
    let mut st = populated();
    ok(&mut st, "bdev_malloc_create", json!({"name": "Malloc1", "num_blocks": 64, "block_size": 4096}));
    ok(&mut st, "bdev_null_create", json!({"name": "Null0", "num_blocks": 64, "block_size": 512}));
    let nguid = "0123456789ABCDEF0123456789ABCDEF";
    let uuid = "0b1e8a6c-4d2f-4a3b-9c1d-2e3f4a5b6c7d";
    let nsid = ok(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "Malloc1", "nsid": 5, "nguid": nguid, "eui64": "0011223344556677", "uuid": uuid}}),
    );
    assert_eq!(nsid, json!(5));
    let ns = &ok(&mut st, "nvmf_get_subsystems", json!({"nqn": NQN}))[0]["namespaces"];
    assert_eq!(ns[0]["nsid"], 1);
    assert_eq!(ns[0]["bdev_name"], "Malloc0");
    assert_eq!(ns[1]["nsid"], 5);
    assert_eq!(ns[1]["name"], "Malloc1");
    assert_eq!(ns[1]["nguid"], nguid);
    assert_eq!(ns[1]["eui64"], "0011223344556677");
    assert_eq!(ns[1]["uuid"], uuid);

    fails(&mut st, "nvmf_subsystem_add_ns", json!({"nqn": NQN, "namespace": {"bdev_name": "Nope"}}), ENODEV);
    fails(&mut st, "nvmf_subsystem_add_ns", json!({"nqn": NQN, "namespace": {"bdev_name": "Malloc0"}}), INVALID_PARAMS); // claimed
    fails(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "Null0", "nsid": 5}}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "Null0", "nsid": 100}}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "Null0", "nguid": "xyz"}}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "Null0", "uuid": "1234"}}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "Null0", "size": 1}}),
        INVALID_PARAMS,
    );
    fails(&mut st, "nvmf_subsystem_add_ns", json!({"nqn": NQN, "namespace": {"nsid": 2}}), INVALID_PARAMS);
    fails(&mut st, "nvmf_subsystem_add_ns", json!({"nqn": NQN, "namespace": "Null0"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_subsystem_add_ns", json!({"nqn": NQN}), INVALID_PARAMS);
    fails(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": "nqn.2016-06.io.spdk:none", "namespace": {"bdev_name": "Null0"}}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": "nqn.2014-08.org.nvmexpress.discovery", "namespace": {"bdev_name": "Null0"}}),
        INVALID_PARAMS,
    );
    assert_eq!(
        ok(&mut st, "nvmf_subsystem_add_ns", json!({"nqn": NQN, "namespace": {"bdev_name": "Null0"}})),
        json!(2)
    );

    fails(&mut st, "nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": 3}), INVALID_PARAMS);
    fails(&mut st, "nvmf_subsystem_remove_ns", json!({"nqn": NQN}), INVALID_PARAMS);
    fails(&mut st, "nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": "1"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_subsystem_remove_ns", json!({"nqn": "nqn.2016-06.io.spdk:none", "nsid": 1}), INVALID_PARAMS);
    assert_eq!(ok(&mut st, "nvmf_subsystem_remove_ns", json!({"nqn": NQN, "nsid": 5})), json!(true));
    assert_eq!(st.target.subsystem(NQN).unwrap().namespaces().len(), 2);
}

#[test]
fn listener_methods() {
    let mut st = state();
    ok(&mut st, "nvmf_create_subsystem", json!({"nqn": NQN}));
    ok(&mut st, "nvmf_create_subsystem", json!({"nqn": "nqn.2016-06.io.spdk:cnode2"}));
    let la = json!({"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "0"});
    // No transport yet.
    fails(&mut st, "nvmf_subsystem_add_listener", json!({"nqn": NQN, "listen_address": la}), INVALID_PARAMS);
    ok(&mut st, "nvmf_create_transport", json!({"trtype": "TCP"}));
    ok(&mut st, "nvmf_subsystem_add_listener", json!({"nqn": NQN, "listen_address": la}));
    let addrs = st.target.listen_addrs();
    assert_eq!(addrs.len(), 1);
    let port = addrs[0].trsvcid.clone();
    assert_ne!(port, "0");
    let la = json!({"trtype": "tcp", "adrfam": "ipv4", "traddr": "127.0.0.1", "trsvcid": port.parse::<u16>().unwrap()});
    let got = &ok(&mut st, "nvmf_get_subsystems", json!({"nqn": NQN}))[0]["listen_addresses"];
    assert_eq!(got, &json!([{"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": port}]));
    // A second subsystem on the same address shares the listener.
    ok(&mut st, "nvmf_subsystem_add_listener", json!({"nqn": "nqn.2016-06.io.spdk:cnode2", "listen_address": la}));
    assert_eq!(st.target.listen_addrs().len(), 1);

    fails(&mut st, "nvmf_subsystem_add_listener", json!({"nqn": NQN, "listen_address": la}), EEXIST);
    fails(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "not-an-ip", "trsvcid": "4420"}}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "adrfam": "IPv6", "traddr": "127.0.0.1", "trsvcid": "4420"}}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": "http"}}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "127.0.0.1"}}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": "1", "x": 1}}),
        INVALID_PARAMS,
    );
    fails(&mut st, "nvmf_subsystem_add_listener", json!({"nqn": NQN}), INVALID_PARAMS);
    fails(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": "nqn.2016-06.io.spdk:none", "listen_address": la}),
        INVALID_PARAMS,
    );
    // Binding an address this machine does not have fails cleanly.
    fails(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "192.0.2.1", "trsvcid": "4420"}}),
        INTERNAL_ERROR,
    );

    fails(
        &mut st,
        "nvmf_subsystem_remove_listener",
        json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": "1"}}),
        INVALID_PARAMS,
    );
    ok(&mut st, "nvmf_subsystem_remove_listener", json!({"nqn": NQN, "listen_address": la}));
    assert_eq!(st.target.listen_addrs().len(), 1, "still used by cnode2");
    ok(&mut st, "nvmf_delete_subsystem", json!({"nqn": "nqn.2016-06.io.spdk:cnode2"}));
    assert!(st.target.listen_addrs().is_empty(), "last user gone: listener stopped");
}

#[test]
fn framework_methods() {
    let mut st = state();
    st.reactors = vec![
        crate::reactor::ReactorInfo {
            core: 0,
            connections: 2,
            polls: 100,
            busy_polls: 30,
            placed: 5,
            ..Default::default()
        },
        crate::reactor::ReactorInfo { core: 3, connections: 1, ..Default::default() },
    ];
    let v = ok(&mut st, "spdk_get_version", Value::Null);
    assert!(v["version"].as_str().unwrap().starts_with("nvmf-rs "));
    assert!(v["fields"]["major"].is_u64());
    let m = ok(&mut st, "rpc_get_methods", Value::Null);
    let m: Vec<&str> = m.as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    for name in [
        "bdev_malloc_create",
        "nvmf_get_subsystems",
        "save_config",
        "rpc_get_methods",
        "framework_get_subsystems",
        "framework_get_config",
    ] {
        assert!(m.contains(&name));
    }
    assert_eq!(m.len(), super::method_names().count());
    // What SPDK's rpc.py save_config asks: the subsystems, then each one's config, which
    // together are our own save_config.
    let subs = ok(&mut st, "framework_get_subsystems", Value::Null);
    assert_eq!(
        subs,
        json!([{"subsystem": "keyring", "depends_on": []}, {"subsystem": "bdev", "depends_on": []},
               {"subsystem": "nvmf", "depends_on": ["bdev", "keyring"]}])
    );
    let whole = ok(&mut st, "save_config", Value::Null);
    for (i, name) in ["keyring", "bdev", "nvmf"].into_iter().enumerate() {
        let part = ok(&mut st, "framework_get_config", json!({"name": name, "with_batches": false}));
        assert_eq!(whole["subsystems"][i]["config"], part, "{name}");
    }
    fails(&mut st, "framework_get_config", json!({"name": "vhost"}), INVALID_PARAMS);
    fails(&mut st, "framework_get_config", json!({}), INVALID_PARAMS);
    let r = ok(&mut st, "framework_get_reactors", Value::Null);
    assert_eq!(r["reactors"][1]["lcore"], 3);
    assert_eq!(r["reactors"][1]["lw_threads"][0]["cpumask"], "8");
    assert_eq!((r["reactors"][0]["busy"].as_u64(), r["reactors"][0]["idle"].as_u64()), (Some(30), Some(70)));
    let s = ok(&mut st, "nvmf_get_stats", Value::Null);
    assert_eq!(s["poll_groups"].as_array().unwrap().len(), 2);
    assert_eq!(s["poll_groups"][0]["current_io_qpairs"], 2);
    assert_eq!(s["poll_groups"][0]["io_qpairs"], 5);
    assert_eq!((s["poll_groups"][0]["busy"].as_u64(), s["poll_groups"][0]["idle"].as_u64()), (Some(30), Some(70)));
    assert!(s["tick_rate"].is_u64());
    for m in ["spdk_get_version", "framework_get_reactors", "nvmf_get_stats", "save_config", "rpc_get_methods"] {
        fails(&mut st, m, json!({"bogus": true}), INVALID_PARAMS);
    }
    fails(&mut st, "no_such_method", Value::Null, METHOD_NOT_FOUND);
    fails(&mut st, "bdev_get_bdevs", json!([1, 2]), INVALID_PARAMS);
}

#[test]
fn save_config_round_trip() {
    let mut st = populated();
    ok(&mut st, "bdev_null_create", json!({"name": "Null0", "num_blocks": 100, "block_size": 4096}));
    ok(
        &mut st,
        "nvmf_create_subsystem",
        json!({"nqn": "nqn.2016-06.io.spdk:cnode2", "model_number": "Other", "max_namespaces": 8}),
    );
    ok(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": "nqn.2016-06.io.spdk:cnode2", "namespace": {"bdev_name": "Null0", "nsid": 3, "nguid": "00112233445566778899AABBCCDDEEFF"}}),
    );
    ok(
        &mut st,
        "nvmf_subsystem_add_host",
        json!({"nqn": "nqn.2016-06.io.spdk:cnode2", "host": "nqn.2014-08.org.nvmexpress:uuid:abc"}),
    );
    ok(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "0"}}),
    );
    let port = st.target.listen_addrs()[0].trsvcid.clone();
    ok(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": "nqn.2014-08.org.nvmexpress.discovery", "listen_address": {"trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": port}}),
    );
    let saved = ok(&mut st, "save_config", Value::Null);
    // The listening port must be free for the copy to bind it.
    drop(st);

    let dir = std::env::temp_dir().join(format!("nvmf-tgt-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("config.json");
    std::fs::write(&f, serde_json::to_string_pretty(&saved).unwrap()).unwrap();
    let mut st2 = state();
    crate::config::load_json(&f, &mut st2).unwrap();
    let again = ok(&mut st2, "save_config", Value::Null);
    assert_eq!(saved, again);
    assert_eq!(st2.target.listen_addrs().len(), 1);
    let s = st2.target.subsystem("nqn.2016-06.io.spdk:cnode2").unwrap();
    assert_eq!(
        s.namespace(3).unwrap().nguid,
        [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn request_envelope() {
    let mut st = state();
    let r = handle_request(&mut st, json!({"jsonrpc": "2.0", "id": 7, "method": "spdk_get_version"})).unwrap();
    assert_eq!(r["id"], 7);
    assert!(r["result"]["version"].is_string());
    let r = handle_request(&mut st, json!({"jsonrpc": "2.0", "id": "a", "method": "nope"})).unwrap();
    assert_eq!(r["error"]["code"], METHOD_NOT_FOUND);
    assert_eq!(r["id"], "a");
    let r = handle_request(&mut st, json!({"id": 1, "method": "spdk_get_version"})).unwrap();
    assert_eq!(r["error"]["code"], INVALID_REQUEST);
    let r = handle_request(&mut st, json!({"jsonrpc": "2.0", "id": 1})).unwrap();
    assert_eq!(r["error"]["code"], INVALID_REQUEST);
    let r = handle_request(&mut st, json!([{"jsonrpc": "2.0", "id": 1, "method": "spdk_get_version"}])).unwrap();
    assert_eq!(r["error"]["code"], INVALID_REQUEST);
    // A notification gets no answer but still runs.
    assert!(handle_request(&mut st, json!({"jsonrpc": "2.0", "method": "bdev_null_create", "params": {"name": "N", "num_blocks": 1, "block_size": 512}})).is_none());
    assert!(st.bdevs.contains_key("N"));
}

#[test]
fn client_argument_parsing() {
    let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (sock, _, m, p) = client::parse_args(&a(&[
        "-s",
        "/tmp/x.sock",
        "bdev_malloc_create",
        "--name",
        "M0",
        "--num-blocks",
        "2048",
        "--block_size=512",
    ]))
    .unwrap();
    assert_eq!(sock, "/tmp/x.sock");
    assert_eq!(m, "bdev_malloc_create");
    assert_eq!(p.unwrap(), json!({"name": "M0", "num_blocks": 2048, "block_size": 512}));
    let (_, _, _, p) = client::parse_args(&a(&[
        "nvmf_subsystem_add_listener",
        "--nqn",
        NQN,
        "--listen_address.trtype",
        "TCP",
        "--listen_address.traddr",
        "127.0.0.1",
        "--str",
        "listen_address.trsvcid",
        "4420",
    ]))
    .unwrap();
    assert_eq!(
        p.unwrap(),
        json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": "4420"}})
    );
    let (sock, _, _, p) = client::parse_args(&a(&[
        "nvmf_subsystem_allow_any_host",
        "--json",
        r#"{"nqn":"x"}"#,
        "--allow_any_host",
        "true",
    ]))
    .unwrap();
    assert_eq!(sock, DEFAULT_SOCKET);
    assert_eq!(p.unwrap(), json!({"nqn": "x", "allow_any_host": true}));
    let (_, _, _, p) = client::parse_args(&a(&["spdk_get_version"])).unwrap();
    assert!(p.is_none());
    assert!(client::parse_args(&a(&[])).is_err());
    assert!(client::parse_args(&a(&["m", "--name"])).is_err());
}

/// The server on a real socket, polled on its own thread; the test is the client.
#[test]
fn socket_end_to_end() {
    let dir = std::env::temp_dir().join(format!("nvmf-tgt-rpc-sock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spdk.sock");
    std::fs::write(&path, b"stale").unwrap(); // a stale file is replaced
    let mut server = RpcServer::bind(&path).unwrap();
    assert!(RpcServer::bind(&path).is_err(), "a live socket is not taken over");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let t = std::thread::spawn(move || {
        let mut st = state();
        let mut handled = 0;
        while !stop2.load(Ordering::Relaxed) {
            let n = server.poll(&mut st);
            handled += n;
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        (st, handled)
    });
    let to = Duration::from_secs(10);
    let c = |m: &str, p: Value| client::call(&path, m, if p.is_null() { None } else { Some(p) }, to);
    assert_eq!(
        c("bdev_malloc_create", json!({"name": "Malloc0", "num_blocks": 256, "block_size": 512})).unwrap(),
        json!("Malloc0")
    );
    match c("bdev_malloc_create", json!({"name": "Malloc0", "num_blocks": 256, "block_size": 512})) {
        Err(client::CallError::Rpc(e)) => assert_eq!(e.code, EEXIST),
        r => panic!("{r:?}"),
    }
    match c("nope", Value::Null) {
        Err(client::CallError::Rpc(e)) => assert_eq!(e.code, METHOD_NOT_FOUND),
        r => panic!("{r:?}"),
    }

    // Several requests in one write, one split across writes, then garbage.
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(to)).unwrap();
    let two =
        r#"{"jsonrpc":"2.0","id":1,"method":"spdk_get_version"} {"jsonrpc":"2.0","id":2,"method":"bdev_get_bdevs"}"#;
    s.write_all(two.as_bytes()).unwrap();
    let mut got = read_values(&mut s, 2);
    assert_eq!(got[0]["id"], 1);
    assert_eq!(got[1]["result"][0]["name"], "Malloc0");
    s.write_all(b"{\"jsonrpc\": nonsense}").unwrap();
    got = read_values(&mut s, 1);
    assert_eq!(got[0]["error"]["code"], PARSE_ERROR);
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0, "connection closed after a parse error");

    // The client entry point.
    let args = vec![
        "-s".to_string(),
        path.display().to_string(),
        "bdev_get_bdevs".to_string(),
        "--name".into(),
        "Malloc0".into(),
    ];
    assert_eq!(client_main(args), 0);
    let args = vec![
        "-s".to_string(),
        path.display().to_string(),
        "bdev_get_bdevs".to_string(),
        "--name".into(),
        "Nope".into(),
    ];
    assert_eq!(client_main(args), 1);

    stop.store(true, Ordering::Relaxed);
    let (st, handled) = t.join().unwrap();
    assert!(handled >= 8, "{handled}");
    assert!(st.bdevs.contains_key("Malloc0"));
    drop(st);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A request split across writes is answered once, when its last byte arrives: the server is
/// polled on the test thread, so the test knows it saw the first half alone.
#[test]
fn split_request_is_answered_when_complete() {
    let dir = std::env::temp_dir().join(format!("nvmf-tgt-rpc-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spdk.sock");
    let mut server = RpcServer::bind(&path).unwrap();
    let mut st = state();
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_nonblocking(true).unwrap();
    let req = br#"{"jsonrpc":"2.0","id":3,"method":"rpc_get_methods"}"#;
    s.write_all(&req[..20]).unwrap();
    // Poll until the server has accepted the connection and read what is there: it answers nothing.
    for _ in 0..100 {
        assert_eq!(server.poll(&mut st), 0, "half a request was handled");
    }
    let mut b = [0u8; 64];
    assert!(
        matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no answer to half a request"
    );
    s.write_all(&req[20..]).unwrap();
    let mut handled = 0;
    for _ in 0..1000 {
        handled += server.poll(&mut st);
        if handled > 0 {
            break;
        }
    }
    assert_eq!(handled, 1, "the completed request was handled once");
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let got = read_values(&mut s, 1);
    assert_eq!(got[0]["id"], 3);
    assert!(got[0]["result"].is_array());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn read_values(s: &mut UnixStream, n: usize) -> Vec<Value> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let vals: Vec<Value> = serde_json::Deserializer::from_slice(&buf)
            .into_iter::<Value>()
            .take_while(|r| r.is_ok())
            .map(|r| r.unwrap())
            .collect();
        if vals.len() >= n {
            return vals;
        }
        let k = s.read(&mut chunk).unwrap();
        assert!(k > 0, "closed early");
        buf.extend_from_slice(&chunk[..k]);
    }
}

/// A host connects to a subsystem made entirely by RPC calls and writes, then reads back.
#[test]
fn host_io_on_rpc_built_subsystem() {
    let mut st = state();
    ok(&mut st, "nvmf_create_transport", json!({"trtype": "TCP"}));
    ok(&mut st, "bdev_malloc_create", json!({"name": "Malloc0", "num_blocks": 1024, "block_size": 512}));
    ok(&mut st, "nvmf_create_subsystem", json!({"nqn": NQN, "allow_any_host": true, "serial_number": "SPDK1"}));
    assert_eq!(
        ok(&mut st, "nvmf_subsystem_add_ns", json!({"nqn": NQN, "namespace": {"bdev_name": "Malloc0"}})),
        json!(1)
    );
    ok(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "0"}}),
    );
    let a = st.target.listen_addrs()[0].clone();
    let addr: std::net::SocketAddr = format!("{}:{}", a.traddr, a.trsvcid).parse().unwrap();

    let mut group = st.target.create_poll_group();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    // The host waits with its queues connected until the control side has looked at them.
    let (connected, queried) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (connected2, queried2) = (connected.clone(), queried.clone());
    let host = std::thread::spawn(move || {
        let r = (|| -> ::nvmf::host::Result<Vec<u8>> {
            let cfg = ::nvmf::host::HostConfig { kato_ms: 0, queue_size: 16, ..Default::default() };
            let mut ctrl = ::nvmf::host::Controller::connect(addr, NQN, &cfg)?;
            assert_eq!(ctrl.active_namespaces()?, vec![1]);
            let mut io = ctrl.connect_io_queue(1)?;
            let data: Vec<u8> = (0..8 * 512).map(|i| (i * 7 % 251) as u8).collect();
            io.write(1, 10, 8, &data)?;
            let mut back = vec![0u8; data.len()];
            io.read(1, 10, 8, &mut back)?;
            assert_eq!(back, data);
            connected2.store(true, Ordering::Release);
            while !queried2.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            io.disconnect()?;
            ctrl.disconnect()?;
            Ok(back)
        })();
        done2.store(true, Ordering::Release);
        r
    });
    let start = Instant::now();
    while !done.load(Ordering::Acquire) {
        st.target.accept(|q| group.add(q));
        if group.poll() == 0 {
            std::thread::yield_now();
        }
        if connected.load(Ordering::Acquire) && !queried.load(Ordering::Acquire) {
            let c = ok(&mut st, "nvmf_subsystem_get_controllers", json!({"nqn": NQN}));
            assert_eq!(c.as_array().unwrap().len(), 1, "{c}");
            assert_eq!(c[0]["num_io_qpairs"], 1);
            assert_eq!(c[0]["hostnqn"], ::nvmf::host::HostConfig::default().hostnqn);
            let q = ok(&mut st, "nvmf_subsystem_get_qpairs", json!({"nqn": NQN}));
            let qids: Vec<u64> = q.as_array().unwrap().iter().map(|q| q["qid"].as_u64().unwrap()).collect();
            assert_eq!(qids, vec![0, 1]);
            assert_eq!(q[1]["listen_address"]["trsvcid"], a.trsvcid);
            let l = ok(&mut st, "nvmf_subsystem_get_listeners", json!({"nqn": NQN}));
            assert_eq!(l[0]["address"]["trsvcid"], a.trsvcid);
            assert_eq!(l[0]["ana_states"][0]["ana_state"], "optimized");
            fails(
                &mut st,
                "nvmf_subsystem_get_controllers",
                json!({"nqn": "nqn.2016-06.io.spdk:none"}),
                INVALID_PARAMS,
            );
            queried.store(true, Ordering::Release);
        }
        assert!(start.elapsed() < Duration::from_secs(30), "host did not finish");
    }
    // The controller goes once the poll group has seen the admin queue close.
    let start = Instant::now();
    while ok(&mut st, "nvmf_subsystem_get_controllers", json!({"nqn": NQN})) != json!([]) {
        group.poll();
        assert!(start.elapsed() < Duration::from_secs(10), "controller still listed after disconnect");
    }
    let back = host.join().unwrap().expect("host I/O");
    assert_eq!(back.len(), 4096);
    // bdev_get_iostat counts what the host did: one 4 KiB write and one 4 KiB read.
    let io = ok(&mut st, "bdev_get_iostat", json!({"name": "Malloc0"}));
    let b = &io["bdevs"][0];
    assert_eq!((b["num_write_ops"].as_u64(), b["bytes_written"].as_u64()), (Some(1), Some(4096)), "{io}");
    assert_eq!((b["num_read_ops"].as_u64(), b["bytes_read"].as_u64()), (Some(1), Some(4096)), "{io}");
    fails(&mut st, "bdev_get_iostat", json!({"name": "Nope"}), ENODEV);
    fails(&mut st, "bdev_get_iostat", json!({"per_channel": true}), INVALID_PARAMS);
    // The namespace shows up as used.
    assert_eq!(ok(&mut st, "bdev_get_bdevs", json!({"name": "Malloc0"}))[0]["claimed"], true);
}

const HOST1: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-0000000000a1";

#[test]
fn ns_visibility_methods() {
    let mut st = populated();
    ok(&mut st, "bdev_malloc_create", json!({"name": "Malloc1", "num_blocks": 64, "block_size": 512}));
    let nsid = ok(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "Malloc1", "no_auto_visible": true}}),
    );
    assert_eq!(nsid, 2);
    let sub = st.target.subsystem(NQN).unwrap();
    assert!(!sub.namespace(2).unwrap().auto_visible);
    assert!(sub.namespace(1).unwrap().auto_visible);
    assert_eq!(
        ok(&mut st, "nvmf_ns_add_host", json!({"nqn": NQN, "nsid": 2, "host": HOST1, "tgt_name": "nvmf_tgt"})),
        json!(true)
    );
    assert!(sub.namespace(2).unwrap().visible_to(HOST1));
    // Again: accepted, nothing changes (as SPDK).
    ok(&mut st, "nvmf_ns_add_host", json!({"nqn": NQN, "nsid": 2, "host": HOST1}));
    assert_eq!(sub.namespace(2).unwrap().visible_hosts(), vec![HOST1.to_string()]);
    // Bad arguments leave everything as it was.
    fails(&mut st, "nvmf_ns_add_host", json!({"nqn": NQN, "nsid": 1, "host": HOST1}), INVALID_PARAMS);
    fails(&mut st, "nvmf_ns_add_host", json!({"nqn": NQN, "nsid": 7, "host": HOST1}), INVALID_PARAMS);
    fails(&mut st, "nvmf_ns_add_host", json!({"nqn": NQN, "nsid": 2, "host": "nope"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_ns_add_host", json!({"nqn": NQN, "nsid": 2}), INVALID_PARAMS);
    fails(&mut st, "nvmf_ns_add_host", json!({"nqn": NQN, "nsid": 2, "host": HOST1, "extra": 1}), INVALID_PARAMS);
    fails(
        &mut st,
        "nvmf_ns_remove_host",
        json!({"nqn": "nqn.2016-06.io.spdk:none", "nsid": 2, "host": HOST1}),
        INVALID_PARAMS,
    );
    fails(&mut st, "nvmf_ns_remove_host", json!({"nqn": NQN, "nsid": 1, "host": HOST1}), INVALID_PARAMS);
    // save_config writes no_auto_visible and one nvmf_ns_add_host per host; loading it back
    // gives the same document.
    let doc = framework::config_document(&st);
    let nvmf =
        doc["subsystems"].as_array().unwrap().iter().find(|s| s["subsystem"] == "nvmf").unwrap()["config"].clone();
    let adds: Vec<&Value> =
        nvmf.as_array().unwrap().iter().filter(|c| c["method"] == "nvmf_subsystem_add_ns").collect();
    assert_eq!(adds[0]["params"]["namespace"]["no_auto_visible"], json!(false));
    assert_eq!(adds[1]["params"]["namespace"]["no_auto_visible"], json!(true));
    let hosts: Vec<&Value> = nvmf.as_array().unwrap().iter().filter(|c| c["method"] == "nvmf_ns_add_host").collect();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0]["params"], json!({"nqn": NQN, "nsid": 2, "host": HOST1}));
    let mut st2 = state();
    crate::config::apply(&doc, &mut st2).unwrap();
    assert_eq!(framework::config_document(&st2), doc);
    assert!(st2.target.subsystem(NQN).unwrap().namespace(2).unwrap().visible_to(HOST1));

    assert_eq!(ok(&mut st, "nvmf_ns_remove_host", json!({"nqn": NQN, "nsid": 2, "host": HOST1})), json!(true));
    assert!(!sub.namespace(2).unwrap().visible_to(HOST1));
    // Removing a host that does not see it is accepted too (SPDK's nvmf_ns_visible).
    ok(&mut st, "nvmf_ns_remove_host", json!({"nqn": NQN, "nsid": 2, "host": HOST1}));
}

#[test]
fn discovery_referral_methods() {
    let mut st = state();
    assert_eq!(ok(&mut st, "nvmf_discovery_get_referrals", Value::Null), json!([]));
    let addr = json!({"trtype": "tcp", "adrfam": "ipv4", "traddr": "192.0.2.1", "trsvcid": "8009"});
    assert_eq!(
        ok(&mut st, "nvmf_discovery_add_referral", json!({"address": addr, "secure_channel": false, "tgt_name": null})),
        json!(true)
    );
    ok(
        &mut st,
        "nvmf_discovery_add_referral",
        json!({"address": {"trtype": "TCP", "traddr": "::1", "trsvcid": 4420}, "subnqn": "nqn.2016-06.io.spdk:remote", "secure_channel": true}),
    );
    // The same address and NQN again: accepted, not duplicated.
    ok(&mut st, "nvmf_discovery_add_referral", json!({"address": addr}));
    let list = ok(&mut st, "nvmf_discovery_get_referrals", json!({"tgt_name": "nvmf_tgt"}));
    assert_eq!(
        list,
        json!([
            {"address": {"trtype": "TCP", "adrfam": "IPv4", "traddr": "192.0.2.1", "trsvcid": "8009"},
             "subnqn": "nqn.2014-08.org.nvmexpress.discovery", "secure_channel": false},
            {"address": {"trtype": "TCP", "adrfam": "IPv6", "traddr": "::1", "trsvcid": "4420"},
             "subnqn": "nqn.2016-06.io.spdk:remote", "secure_channel": true},
        ])
    );
    // Bad arguments change nothing.
    fails(
        &mut st,
        "nvmf_discovery_add_referral",
        json!({"address": {"trtype": "TCP", "traddr": "192.0.2.1"}}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_discovery_add_referral",
        json!({"address": {"trtype": "FC", "traddr": "192.0.2.1", "trsvcid": "1"}}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_discovery_add_referral",
        json!({"address": {"trtype": "TCP", "traddr": "host.example", "trsvcid": "1"}}),
        INVALID_PARAMS,
    );
    fails(&mut st, "nvmf_discovery_add_referral", json!({"address": addr, "subnqn": "bogus"}), INVALID_PARAMS);
    fails(&mut st, "nvmf_discovery_add_referral", json!({"address": addr, "allow_any_host": true}), INVALID_PARAMS);
    fails(
        &mut st,
        "nvmf_discovery_remove_referral",
        json!({"address": addr, "subnqn": "nqn.2016-06.io.spdk:remote"}),
        INVALID_PARAMS,
    );
    // save_config writes them; loading the document back gives the same referrals.
    let doc = framework::config_document(&st);
    let mut st2 = state();
    crate::config::apply(&doc, &mut st2).unwrap();
    assert_eq!(framework::config_document(&st2), doc);
    assert_eq!(ok(&mut st2, "nvmf_discovery_get_referrals", Value::Null), list);
    // Removal matches address and NQN; secure_channel is not part of a referral's identity.
    assert_eq!(
        ok(&mut st, "nvmf_discovery_remove_referral", json!({"address": addr, "secure_channel": true})),
        json!(true)
    );
    assert_eq!(ok(&mut st, "nvmf_discovery_get_referrals", Value::Null).as_array().unwrap().len(), 1);
    fails(&mut st, "nvmf_discovery_remove_referral", json!({"address": addr}), INVALID_PARAMS);
}

#[test]
fn ana_methods() {
    let mut st = state();
    ok(&mut st, "nvmf_create_transport", json!({"trtype": "TCP"}));
    ok(&mut st, "bdev_malloc_create", json!({"name": "Malloc0", "num_blocks": 2048, "block_size": 512}));
    ok(&mut st, "bdev_malloc_create", json!({"name": "Malloc1", "num_blocks": 2048, "block_size": 512}));
    ok(
        &mut st,
        "nvmf_create_subsystem",
        json!({"nqn": NQN, "allow_any_host": true, "ana_reporting": true, "max_namespaces": 4}),
    );
    ok(&mut st, "nvmf_create_subsystem", json!({"nqn": "nqn.2016-06.io.spdk:plain"}));
    ok(&mut st, "nvmf_subsystem_add_ns", json!({"nqn": NQN, "namespace": {"bdev_name": "Malloc0"}}));
    fails(
        &mut st,
        "nvmf_subsystem_add_ns",
        json!({"nqn": NQN, "namespace": {"bdev_name": "Malloc1", "anagrpid": 5}}),
        INVALID_PARAMS,
    );
    ok(&mut st, "nvmf_subsystem_add_ns", json!({"nqn": NQN, "namespace": {"bdev_name": "Malloc1", "anagrpid": 2}}));
    let la = json!({"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": "0"});
    // An ANA state on a listener of a subsystem without ANA reporting, or an unknown state.
    fails(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": "nqn.2016-06.io.spdk:plain", "listen_address": la, "ana_state": "inaccessible"}),
        INVALID_PARAMS,
    );
    fails(
        &mut st,
        "nvmf_subsystem_add_listener",
        json!({"nqn": NQN, "listen_address": la, "ana_state": "sleepy"}),
        INVALID_PARAMS,
    );
    ok(&mut st, "nvmf_subsystem_add_listener", json!({"nqn": NQN, "listen_address": la, "ana_state": "non_optimized"}));
    let port = st.target.listen_addrs()[0].trsvcid.clone();
    let la = json!({"trtype": "TCP", "adrfam": "IPv4", "traddr": "127.0.0.1", "trsvcid": port});
    let states = |st: &mut AppState| -> Vec<String> {
        let l = ok(st, "nvmf_subsystem_get_listeners", json!({"nqn": NQN}));
        l[0]["ana_states"].as_array().unwrap().iter().map(|g| g["ana_state"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(states(&mut st), ["non_optimized"; 4], "add_listener's state applies to every group");
    ok(
        &mut st,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": NQN, "listen_address": la, "ana_state": "inaccessible", "anagrpid": 2, "tgt_name": null}),
    );
    assert_eq!(states(&mut st), ["non_optimized", "inaccessible", "non_optimized", "non_optimized"]);
    ok(
        &mut st,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": NQN, "listen_address": la, "ana_state": "optimized"}),
    );
    ok(
        &mut st,
        "nvmf_subsystem_listener_set_ana_state",
        json!({"nqn": NQN, "listen_address": la, "ana_state": "persistent_loss", "anagrpid": 2}),
    );
    for bad in [
        json!({"nqn": NQN, "listen_address": la, "ana_state": "inaccessible", "anagrpid": 0}),
        json!({"nqn": NQN, "listen_address": la, "ana_state": "inaccessible", "anagrpid": 5}),
        json!({"nqn": NQN, "listen_address": la, "ana_state": "bogus"}),
        json!({"nqn": "nqn.2016-06.io.spdk:plain", "listen_address": la, "ana_state": "optimized"}),
        json!({"nqn": NQN, "listen_address": {"trtype": "TCP", "traddr": "127.0.0.1", "trsvcid": "1"}, "ana_state": "optimized"}),
        json!({"nqn": NQN, "ana_state": "optimized"}),
    ] {
        fails(&mut st, "nvmf_subsystem_listener_set_ana_state", bad, INVALID_PARAMS);
    }
    // save_config keeps ANA reporting, each namespace's group and the non-default states.
    let cfg = framework::config_document(&st).to_string();
    assert!(cfg.contains(r#""ana_reporting":true"#), "{cfg}");
    assert!(cfg.contains(r#""anagrpid":2,"bdev_name":"Malloc1""#), "{cfg}");
    assert!(cfg.contains(r#""method":"nvmf_subsystem_listener_set_ana_state""#), "{cfg}");
    assert!(cfg.contains(r#""ana_state":"persistent_loss""#), "{cfg}");
}
