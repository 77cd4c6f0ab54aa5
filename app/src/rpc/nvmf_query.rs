//! Read-only nvmf methods SPDK users script against: `nvmf_subsystem_get_controllers`,
//! `nvmf_subsystem_get_qpairs`, `nvmf_subsystem_get_listeners`, `nvmf_get_config`, with SPDK's
//! result shapes.

use super::nvmf::{any_subsystem, listen_address_json, NqnParams};
use super::{format_uuid, parse_params, RpcError};
use crate::state::AppState;
use serde_json::{json, Value};

/// `[{cntlid, hostnqn, hostid, num_io_qpairs}]` of the subsystem's live controllers.
pub fn get_controllers(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: NqnParams = parse_params(params)?;
    let sub = any_subsystem(state, &p.nqn)?;
    Ok(Value::Array(
        sub.controllers()
            .iter()
            .map(|c| {
                json!({"cntlid": c.cntlid, "hostnqn": c.hostnqn, "hostid": format_uuid(&c.hostid),
                       "num_io_qpairs": c.io_queue_ids().len()})
            })
            .collect(),
    ))
}

/// `[{cntlid, qid, state, listen_address}]`: each controller's admin queue and connected I/O
/// queues (the listen address is the one its admin queue used).
pub fn get_qpairs(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: NqnParams = parse_params(params)?;
    let sub = any_subsystem(state, &p.nqn)?;
    let mut out = Vec::new();
    for c in sub.controllers() {
        for qid in std::iter::once(0).chain(c.io_queue_ids()) {
            out.push(json!({"cntlid": c.cntlid, "qid": qid, "state": "active", "hostnqn": c.hostnqn,
                            "listen_address": listen_address_json(&c.listener)}));
        }
    }
    Ok(Value::Array(out))
}

/// `[{address, ana_states}]` of the subsystem's listeners: each ANA group's state when the
/// subsystem has ANA reporting (as SPDK lists them), otherwise the one optimized group.
pub fn get_listeners(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: NqnParams = parse_params(params)?;
    let sub = any_subsystem(state, &p.nqn)?;
    Ok(Value::Array(
        sub.listeners()
            .iter()
            .map(|l| {
                let states: Vec<Value> = match sub.ana_states(l) {
                    Some(groups) if sub.ana_reporting => groups
                        .iter()
                        .enumerate()
                        .map(|(i, st)| json!({"ana_group": i + 1, "ana_state": st.name()}))
                        .collect(),
                    _ => vec![json!({"ana_group": 1, "ana_state": "optimized"})],
                };
                json!({"address": listen_address_json(l), "ana_states": states})
            })
            .collect(),
    ))
}

/// The target-wide settings `nvmf_set_config` would change, all at the values nvmf-rs has.
pub fn get_config(_state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let _: super::TgtParams = parse_params(params)?;
    Ok(json!({
        "discovery_filter": "match_any",
        "admin_cmd_passthru": {"identify_ctrlr": false},
        "dhchap_digests": ["sha256", "sha384", "sha512"],
        "dhchap_dhgroups": ["null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"],
    }))
}
