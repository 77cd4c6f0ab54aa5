//! Discovery referrals: `nvmf_discovery_add_referral`, `nvmf_discovery_remove_referral`,
//! `nvmf_discovery_get_referrals`, with SPDK's parameters and result shape.

use super::nvmf::{listen_address_json, transport_addr, ListenAddress};
use super::{parse_params, RpcError};
use crate::state::AppState;
use nvmf::spec::fabrics::DISCOVERY_NQN;
use nvmf::Referral;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferralParams {
    address: ListenAddress,
    /// Absent: a referral to another discovery service (the discovery NQN).
    subnqn: Option<String>,
    secure_channel: Option<bool>,
    #[allow(dead_code)]
    tgt_name: Option<String>,
}

fn referral_of(p: ReferralParams) -> Result<Referral, RpcError> {
    let addr = transport_addr(&p.address)?;
    let subnqn = p.subnqn.unwrap_or_else(|| DISCOVERY_NQN.to_string());
    if !nvmf::subsystem::valid_nqn(&subnqn) {
        return Err(RpcError::invalid_params(format!("Invalid subnqn {subnqn:?}")));
    }
    Ok(Referral { addr, subnqn, secure_channel: p.secure_channel.unwrap_or(false) })
}

/// `{address: {trtype, adrfam, traddr, trsvcid}, subnqn, secure_channel}`: what
/// `nvmf_discovery_get_referrals` reports and `save_config` writes.
pub(crate) fn referral_json(r: &Referral) -> Value {
    json!({"address": listen_address_json(&r.addr), "subnqn": r.subnqn, "secure_channel": r.secure_channel})
}

/// Add a referral; adding one to the same address and NQN again changes nothing (as SPDK).
pub fn add_referral(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let r = referral_of(parse_params(params)?)?;
    if state.target.add_referral(r.clone())? {
        log::info!("discovery referral to {} ({}) added", r.addr, r.subnqn);
    }
    Ok(json!(true))
}

/// Remove the referral to that address and NQN (`secure_channel` is not part of its identity).
pub fn remove_referral(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let r = referral_of(parse_params(params)?)?;
    state.target.remove_referral(&r)?;
    log::info!("discovery referral to {} ({}) removed", r.addr, r.subnqn);
    Ok(json!(true))
}

pub fn get_referrals(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let _: super::TgtParams = parse_params(params)?;
    Ok(Value::Array(state.target.referrals().iter().map(referral_json).collect()))
}
