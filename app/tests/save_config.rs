//! `save_config` of a default run (`nvmf_tgt` with no configuration) loads back with `--json`
//! into the same target: transport, bdev, subsystem, namespace and listener.

#![forbid(unsafe_code)]

mod common;

use common::*;
use nvmf::host::{Controller, HostConfig};
use serde_json::Value;
use std::time::Duration;

fn rpc_json(t: &Tgt, args: &[&str]) -> Value {
    let (code, out, err) = t.rpc(args);
    assert_eq!(code, 0, "rpc {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("rpc {args:?}: {e}: {out}"))
}

#[test]
fn default_run_saved_and_reloaded_with_json() {
    let _g = serial();
    let mut t = Tgt::start(&[]);
    // The embedded default went through the RPC layer: it is visible like any configuration.
    let transports = rpc_json(&t, &["nvmf_get_transports"]);
    assert_eq!(transports.as_array().map(Vec::len), Some(1), "{transports}");
    assert_eq!(transports[0]["trtype"], "TCP");
    let bdevs = rpc_json(&t, &["bdev_get_bdevs"]);
    assert_eq!(bdevs[0]["name"], "Malloc0");
    assert_eq!(bdevs[0]["product_name"], "Malloc disk");
    let saved = rpc_json(&t, &["save_config"]);
    let methods: Vec<&str> = saved["subsystems"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["config"].as_array().unwrap().iter().map(|e| e["method"].as_str().unwrap()))
        .collect();
    for m in [
        "bdev_malloc_create",
        "nvmf_create_transport",
        "nvmf_create_subsystem",
        "nvmf_subsystem_add_ns",
        "nvmf_subsystem_add_listener",
    ] {
        assert!(methods.contains(&m), "save_config lacks {m}: {methods:?}");
    }
    let cfg = TempFile::new("saved.json", 0);
    std::fs::write(cfg.path(), serde_json::to_vec_pretty(&saved).unwrap()).unwrap();
    let port = t.port;
    t.terminate(Duration::from_secs(15));

    // The saved listener names the port the first run was given; the restart binds it again.
    let mut t2 = Tgt::start_empty(&["--json", cfg.path().to_str().unwrap()]);
    assert_eq!(rpc_json(&t2, &["save_config"]), saved, "the reload reproduces the configuration");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let cfg_h = HostConfig { io_timeout: Duration::from_secs(10), ..Default::default() };
    let mut c = Controller::connect(addr, DEFAULT_NQN, &cfg_h).expect("connect to the reloaded target");
    assert_eq!(c.active_namespaces().expect("namespaces"), vec![1]);
    let mut q = c.connect_io_queue(1).expect("io queue");
    let data = pattern(3, 77, 64 * 512);
    q.write(1, 77, 64, &data).expect("write");
    let mut back = vec![0u8; data.len()];
    q.read(1, 77, 64, &mut back).expect("read");
    assert!(back == data);
    t2.terminate(Duration::from_secs(15));
}
