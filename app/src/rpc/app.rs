//! Application methods: start-up control (`framework_start_init`, `framework_wait_init`, with
//! `--wait-for-rpc`), `spdk_kill_instance`, and the run-time log (`log_*`), with SPDK's names,
//! parameters, results and errors.

use super::{parse_params, RpcError};
use crate::state::AppState;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

/// SPDK_JSONRPC_ERROR_INVALID_STATE: a method called in the wrong start-up phase.
pub const INVALID_STATE: i32 = -1;

/// Methods SPDK serves both before and after `framework_start_init` (SPDK_RPC_STARTUP |
/// SPDK_RPC_RUNTIME). `framework_start_init` and the global `*_set_options`-style methods
/// (rpc/globals.rs) are start-up only; every other method is run-time only. Either fails with
/// -1 in the wrong phase, as in SPDK; a config file (`--json`) may use all of them.
pub const ANY_TIME_METHODS: &[&str] = &[
    "framework_wait_init",
    "framework_get_subsystems",
    "rpc_get_methods",
    "spdk_get_version",
    "spdk_kill_instance",
    "log_set_level",
    "log_get_level",
    "log_set_print_level",
    "log_get_print_level",
    "log_set_flag",
    "log_clear_flag",
    "log_get_flags",
];

/// When a method may be called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    StartupOnly,
    AnyTime,
    RuntimeOnly,
}

fn phase(method: &str) -> Phase {
    if ANY_TIME_METHODS.contains(&method) || super::globals::ALSO_AT_RUN_TIME.contains(&method) {
        Phase::AnyTime
    } else if method == "framework_start_init" || super::globals::is_global(method) {
        Phase::StartupOnly
    } else {
        Phase::RuntimeOnly
    }
}

/// Whether `method` may run now.
pub fn allowed_now(state: &AppState, method: &str) -> Result<(), RpcError> {
    match (phase(method), state.init_done) {
        _ if state.loading_config => Ok(()),
        (Phase::AnyTime, _) | (Phase::StartupOnly, false) | (Phase::RuntimeOnly, true) => Ok(()),
        (Phase::RuntimeOnly, false) => Err(RpcError::new(
            INVALID_STATE,
            "Method may only be called after framework is initialized using framework_start_init RPC.",
        )),
        (Phase::StartupOnly, true) => Err(RpcError::new(
            INVALID_STATE,
            "Method may only be called before framework is initialized. Use --wait-for-rpc command line parameter and then issue this RPC before the framework_start_init RPC.",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

pub fn start_init(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let _: NoParams = parse_params(params)?;
    state.init_done = true;
    log::info!("framework_start_init: starting the reactors");
    Ok(json!(true))
}

/// `framework_wait_init`: answered at once when initialized; the RPC server holds the answer
/// until `framework_start_init` otherwise (see `rpc::Client::poll`).
pub fn wait_init(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let _: NoParams = parse_params(params)?;
    debug_assert!(state.init_done, "held by the server until init");
    Ok(json!(true))
}

pub fn kill_instance(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        sig_name: String,
    }
    let p: P = parse_params(params)?;
    let name = p.sig_name.to_ascii_uppercase();
    match name.trim_start_matches("SIG") {
        // A clean shutdown, as on the signal itself: the control loop stops after this poll
        // (the answer is sent first).
        "INT" | "TERM" => state.stop.store(true, Ordering::Relaxed),
        "KILL" => {
            log::warn!("spdk_kill_instance SIGKILL");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
        _ => {
            return Err(RpcError::invalid_params(format!(
                "Unsupported signal {:?}: SIGINT, SIGTERM or SIGKILL",
                p.sig_name
            )))
        }
    }
    Ok(json!(true))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelParams {
    level: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagParams {
    flag: String,
}

/// `log_set_level` and `log_set_print_level`: one level here (everything goes to stderr).
pub fn set_level(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: LevelParams = parse_params(params)?;
    if !state.log.set_level(&p.level) {
        return Err(RpcError::invalid_params(format!(
            "Invalid log level {:?}: one of {}",
            p.level,
            crate::logging::LEVELS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(json!(true))
}

pub fn get_level(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let _: NoParams = parse_params(params)?;
    Ok(json!(state.log.level_name()))
}

fn flag(state: &mut AppState, params: Option<Value>, on: bool) -> Result<Value, RpcError> {
    let p: FlagParams = parse_params(params)?;
    if !state.log.set_flag(&p.flag, on) {
        return Err(RpcError::invalid_params(format!("Invalid log flag {:?}: see log_get_flags", p.flag)));
    }
    Ok(json!(true))
}

pub fn set_flag(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    flag(state, params, true)
}

pub fn clear_flag(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    flag(state, params, false)
}

pub fn get_flags(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let _: NoParams = parse_params(params)?;
    let m: Map<String, Value> = state.log.flags().into_iter().map(|(n, on)| (n.to_string(), json!(on))).collect();
    Ok(Value::Object(m))
}
