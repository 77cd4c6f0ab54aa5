//! Framework methods: reactors, version, method list, and `save_config`.

use super::bdev::bdev_uuid;
use super::nvmf::{listen_address_json, transport_infos, transport_json, TICK_RATE};
use super::{format_uuid, hex_upper, parse_params, RpcError};
use crate::state::{AppState, BdevKind};
use nvmf::ana::AnaState;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

pub fn get_reactors(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let _: NoParams = parse_params(params)?;
    let reactors: Vec<Value> = state
        .reactors
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "lcore": r.core,
                // SPDK counts TSC ticks here; nvmf-rs counts poll iterations that found work
                // (busy) and that found none (idle). Their ratio is the reactor's load.
                "busy": r.busy_polls,
                "idle": r.polls.saturating_sub(r.busy_polls),
                "in_interrupt": false,
                "connections": r.connections,
                "pinned": r.pinned,
                "lw_threads": [{
                    "name": format!("nvmf_tgt_poll_group_{i:03}"),
                    "id": i,
                    "cpumask": format!("{:x}", 1u128.checked_shl(r.core as u32).unwrap_or(0)),
                    "elapsed": r.polls,
                }],
            })
        })
        .collect();
    Ok(json!({"tick_rate": TICK_RATE, "pid": std::process::id(), "reactors": reactors}))
}

pub fn get_version(_state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let _: NoParams = parse_params(params)?;
    let num = |s: &str| s.parse::<u64>().unwrap_or(0);
    Ok(json!({
        "version": format!("nvmf-rs {}", env!("CARGO_PKG_VERSION")),
        "fields": {
            "major": num(env!("CARGO_PKG_VERSION_MAJOR")),
            "minor": num(env!("CARGO_PKG_VERSION_MINOR")),
            "patch": num(env!("CARGO_PKG_VERSION_PATCH")),
            "suffix": env!("CARGO_PKG_VERSION_PRE"),
        }
    }))
}

pub fn get_methods(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        current: bool,
        #[serde(default)]
        include_aliases: bool,
    }
    let p: P = parse_params(params)?;
    let _ = p.include_aliases;
    if p.current {
        return Ok(json!(super::current_method_names(state).collect::<Vec<_>>()));
    }
    Ok(json!(super::method_names().collect::<Vec<_>>()))
}

/// The SPDK JSON config document that recreates the current state (bdevs, transports,
/// subsystems with their listeners, hosts and namespaces).
pub fn config_document(state: &AppState) -> Value {
    let subsystems: Vec<Value> = SUBSYSTEMS
        .iter()
        .map(|(name, _)| json!({"subsystem": name, "config": subsystem_config(state, name).unwrap_or_default()}))
        .collect();
    json!({ "subsystems": subsystems })
}

/// The subsystems `save_config` writes, in SPDK's order, with what each depends on (the shape of
/// SPDK's `framework_get_subsystems`).
const SUBSYSTEMS: &[(&str, &[&str])] = &[("keyring", &[]), ("bdev", &[]), ("nvmf", &["bdev", "keyring"])];

/// One subsystem's `config` array, `None` for an unknown subsystem.
fn subsystem_config(state: &AppState, name: &str) -> Option<Vec<Value>> {
    match name {
        "keyring" => Some(super::keyring::config(state)),
        "bdev" => Some(bdev_config(state)),
        "nvmf" => Some(nvmf_config(state)),
        _ => None,
    }
}

/// `framework_get_subsystems`: what SPDK's rpc.py `save_config` asks first.
pub fn get_subsystems(_state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let _: NoParams = parse_params(params)?;
    Ok(Value::Array(SUBSYSTEMS.iter().map(|(s, deps)| json!({"subsystem": s, "depends_on": deps})).collect()))
}

/// `framework_get_config`: one subsystem's part of `save_config`.
pub fn get_config(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        name: String,
        // SPDK bundles some calls into batches when asked; we write none, so both give the same.
        #[serde(default)]
        with_batches: bool,
    }
    let p: P = parse_params(params)?;
    let _ = p.with_batches;
    match subsystem_config(state, &p.name) {
        Some(c) => Ok(Value::Array(c)),
        None => Err(RpcError::invalid_params(format!("Subsystem {:?} not found", p.name))),
    }
}

fn bdev_config(state: &AppState) -> Vec<Value> {
    let mut bdev = Vec::new();
    for (name, b) in &state.bdevs {
        let kind = match (state.bdev_meta.get(name), b.product_name()) {
            (Some(m), _) => m.kind.clone(),
            (None, "Null disk") => BdevKind::Null,
            (None, "Malloc disk") => BdevKind::Malloc,
            (None, other) => {
                // Made outside the RPC layer (e.g. an AIO or NVMe bdev from the command line):
                // no method here recreates it.
                log::warn!("save_config: bdev {name} ({other}) was not created by RPC; not saved");
                continue;
            }
        };
        let uuid = bdev_uuid(state, name);
        bdev.push(match kind {
            BdevKind::Malloc => json!({"method": "bdev_malloc_create", "params": {
                "name": name, "num_blocks": b.num_blocks(), "block_size": b.block_size(), "uuid": uuid}}),
            BdevKind::Null => json!({"method": "bdev_null_create", "params": {
                "name": name, "num_blocks": b.num_blocks(), "block_size": b.block_size(), "uuid": uuid}}),
            BdevKind::Aio { filename, .. } => json!({"method": "bdev_aio_create", "params": {
                "name": name, "filename": filename, "block_size": b.block_size(), "uuid": uuid}}),
            // One bdev_nvme_attach_controller per controller, below.
            BdevKind::Nvme { .. } => continue,
        });
    }
    for (name, c) in &state.nvme_ctrlrs {
        let mut params = json!({"name": name, "trtype": c.trtype, "traddr": c.traddr});
        if let Some(e) = &c.emulated {
            params["emulated_namespaces"] = json!(e.namespaces);
            params["emulated_block_size"] = json!(e.block_size);
            params["emulated_num_blocks"] = json!(e.num_blocks);
        }
        bdev.push(json!({"method": "bdev_nvme_attach_controller", "params": params}));
    }
    bdev
}

fn nvmf_config(state: &AppState) -> Vec<Value> {
    let mut nvmf = Vec::new();
    for t in transport_infos(state) {
        nvmf.push(json!({"method": "nvmf_create_transport", "params": transport_json(&t)}));
    }
    for s in state.target.subsystems() {
        if !s.is_discovery() {
            nvmf.push(json!({"method": "nvmf_create_subsystem", "params": {
                "nqn": s.nqn,
                "serial_number": s.serial,
                "model_number": s.model,
                "allow_any_host": s.allow_any_host(),
                "max_namespaces": s.max_namespaces,
                "ana_reporting": s.ana_reporting,
            }}));
        }
        for l in s.listeners() {
            nvmf.push(json!({"method": "nvmf_subsystem_add_listener", "params": {
                "nqn": s.nqn, "listen_address": listen_address_json(&l)}}));
            // ANA states other than the default (optimized), group by group.
            let groups = if s.ana_reporting { s.ana_states(&l).unwrap_or_default() } else { Vec::new() };
            for (i, st) in groups.iter().enumerate().filter(|(_, st)| **st != AnaState::Optimized) {
                nvmf.push(json!({"method": "nvmf_subsystem_listener_set_ana_state", "params": {
                    "nqn": s.nqn, "listen_address": listen_address_json(&l),
                    "ana_state": st.name(), "anagrpid": i + 1}}));
            }
        }
        if s.is_discovery() {
            continue;
        }
        for h in s.hosts() {
            nvmf.push(
                json!({"method": "nvmf_subsystem_add_host", "params": super::nvmf::add_host_params(state, &s, &h)}),
            );
        }
        for ns in s.namespaces() {
            let mut p = json!({"nqn": s.nqn, "namespace": {
                "nsid": ns.nsid,
                "bdev_name": ns.bdev.name(),
                "nguid": hex_upper(&ns.nguid),
                "eui64": hex_upper(&ns.eui64),
                "uuid": format_uuid(&ns.uuid),
                "no_auto_visible": !ns.auto_visible,
                "anagrpid": ns.anagrpid,
            }});
            // Only when on: configs stay loadable by SPDK, which does not know it.
            if ns.passthru_io {
                p["namespace"]["passthru_io"] = json!(true);
            }
            if let Some(f) = ns.reservations.ptpl_file() {
                p["namespace"]["ptpl_file"] = json!(f.display().to_string());
            }
            nvmf.push(json!({"method": "nvmf_subsystem_add_ns", "params": p}));
            for h in ns.visible_hosts() {
                nvmf.push(json!({"method": "nvmf_ns_add_host", "params": {"nqn": s.nqn, "nsid": ns.nsid, "host": h}}));
            }
        }
    }
    for r in state.target.referrals() {
        nvmf.push(json!({"method": "nvmf_discovery_add_referral", "params": super::nvmf_referral::referral_json(&r)}));
    }
    nvmf
}

pub fn save_config(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let _: NoParams = parse_params(params)?;
    Ok(config_document(state))
}
