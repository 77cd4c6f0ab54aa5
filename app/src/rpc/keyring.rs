//! SPDK's file keyring (`keyring_file_add_key`, `keyring_file_remove_key`, `keyring_get_keys`):
//! named key files that `nvmf_subsystem_add_host` / `nvmf_subsystem_set_keys` refer to by name
//! (`dhchap_key`, `dhchap_ctrlr_key`), as in SPDK. The file is checked when added (absolute
//! path, owner-only permissions) and read when a host is given the key.

use super::error::{EEXIST, ENODEV};
use super::{parse_params, RpcError};
use crate::state::AppState;
use serde::Deserialize;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddParams {
    name: String,
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParams {
    name: String,
}

/// Check a key file: absolute, a regular file, readable, owner-only (SPDK refuses others too).
pub(crate) fn check_key_file(what: &str, path: &str) -> Result<(), RpcError> {
    if !path.starts_with('/') {
        return Err(RpcError::invalid_params(format!("{what}: key file path {path:?} must be absolute")));
    }
    let meta =
        std::fs::metadata(path).map_err(|e| RpcError::invalid_params(format!("{what}: key file {path}: {e}")))?;
    if !meta.is_file() {
        return Err(RpcError::invalid_params(format!("{what}: key file {path} is not a regular file")));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(RpcError::invalid_params(format!(
            "{what}: key file {path} is accessible to group or others (chmod 600)"
        )));
    }
    Ok(())
}

pub fn file_add_key(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: AddParams = parse_params(params)?;
    if p.name.is_empty() || p.name.contains('/') {
        return Err(RpcError::invalid_params(format!("Invalid key name {:?}", p.name)));
    }
    if state.keyring.contains_key(&p.name) {
        return Err(RpcError::new(EEXIST, format!("Key {} already exists", p.name)));
    }
    check_key_file(&p.name, &p.path)?;
    log::info!("keyring: added key {} ({})", p.name, p.path);
    state.keyring.insert(p.name, p.path);
    Ok(json!(true))
}

pub fn file_remove_key(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: NameParams = parse_params(params)?;
    // Hosts given this key keep the secret they loaded; new references fail.
    state.keyring.remove(&p.name).ok_or_else(|| RpcError::new(ENODEV, format!("Key {} not found", p.name)))?;
    Ok(json!(true))
}

pub fn get_keys(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {}
    let _: P = parse_params(params)?;
    let refs = |name: &str| state.dhchap_key_files.values().flatten().filter(|r| r.as_deref() == Some(name)).count();
    Ok(Value::Array(
        state
            .keyring
            .iter()
            .map(|(name, path)| json!({"name": name, "module": "keyring_file", "path": path, "removed": false, "probed": true, "refcnt": 1 + refs(name)}))
            .collect(),
    ))
}

/// `save_config` entries of the keyring subsystem.
pub(crate) fn config(state: &AppState) -> Vec<Value> {
    state
        .keyring
        .iter()
        .map(|(name, path)| json!({"method": "keyring_file_add_key", "params": {"name": name, "path": path}}))
        .collect()
}
