//! The global methods SPDK writes at the head of each subsystem in its configs (`*_set_options`,
//! `sock_set_default_impl`, `nvmf_set_config`, ...). They tune SPDK internals (buffer pools,
//! socket implementations, schedulers) that have no counterpart in nvmf-rs, so each is accepted
//! as a documented no-op: every parameter SPDK has is checked against [`Only`] (a value that
//! would change behaviour we do not have is refused with -32602 naming it) and an unknown
//! parameter is refused too. `docs/rpc.md` lists them.

use super::compat::Only;
use super::RpcError;
use crate::state::AppState;
use serde_json::{json, Value};

/// Every parameter, any value: for methods whose whole parameter set is host-side tuning.
const ANY_PARAM: &str = "*";

const DIGESTS: &[&str] = &["sha256", "sha384", "sha512"];
const DHGROUPS: &[&str] = &["null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"];

/// Global methods SPDK also serves after `framework_start_init`; the others are start-up only.
pub(crate) const ALSO_AT_RUN_TIME: &[&str] =
    &["framework_set_scheduler", "bdev_nvme_set_options", "bdev_nvme_set_hotplug", "bdev_wait_for_examine"];

/// (method, parameters and the values accepted).
pub(crate) const GLOBALS: &[(&str, &[(&str, Only)])] = &[
    // iobuf: SPDK's shared data buffer pools (ours are per poll group).
    (
        "iobuf_set_options",
        &[
            ("small_pool_count", Only::Any),
            ("large_pool_count", Only::Any),
            ("small_bufsize", Only::Any),
            ("large_bufsize", Only::Any),
            ("enable_numa", Only::Any),
        ],
    ),
    // sock: the posix implementation is the only one; TLS (ssl) is not supported.
    ("sock_set_default_impl", &[("impl_name", Only::Str("posix"))]),
    (
        "sock_impl_set_options",
        &[
            ("impl_name", Only::Any),
            ("recv_buf_size", Only::Any),
            ("send_buf_size", Only::Any),
            ("enable_recv_pipe", Only::Any),
            ("enable_quickack", Only::Any),
            ("enable_placement_id", Only::Any),
            ("enable_zerocopy_send_server", Only::Any),
            ("enable_zerocopy_send_client", Only::Any),
            ("zerocopy_threshold", Only::Any),
            ("tls_version", Only::Any),
            ("enable_ktls", Only::Any),
            ("psk_key", Only::Null),
            ("psk_identity", Only::Null),
            ("tls_cipher_suites", Only::Any),
        ],
    ),
    // accel: SPDK's acceleration framework (digests here are computed in software).
    (
        "accel_set_options",
        &[
            ("small_cache_size", Only::Any),
            ("large_cache_size", Only::Any),
            ("task_count", Only::Any),
            ("sequence_count", Only::Any),
            ("buf_count", Only::Any),
        ],
    ),
    // bdev layer and modules nvmf-rs does not have.
    (
        "bdev_set_options",
        &[
            ("bdev_io_pool_size", Only::Any),
            ("bdev_io_cache_size", Only::Any),
            ("bdev_auto_examine", Only::Any),
            ("iobuf_small_cache_size", Only::Any),
            ("iobuf_large_cache_size", Only::Any),
        ],
    ),
    ("bdev_raid_set_options", &[("process_window_size_kb", Only::Any), ("process_max_bandwidth_mb_sec", Only::Any)]),
    ("bdev_iscsi_set_options", &[("timeout_sec", Only::Any)]),
    // SPDK's NVMe bdev driver options (timeouts, retries, fabrics host settings); direct mode
    // uses the userspace driver's own (docs/direct-mode.md).
    ("bdev_nvme_set_options", &[(ANY_PARAM, Only::Any)]),
    ("bdev_nvme_set_hotplug", &[("period_us", Only::Any), ("enable", Only::False)]),
    ("bdev_wait_for_examine", &[]),
    ("fsdev_set_opts", &[("fsdev_io_pool_size", Only::Any), ("fsdev_io_cache_size", Only::Any)]),
    // scheduler: reactors poll their own poll group (static placement).
    (
        "framework_set_scheduler",
        &[
            ("name", Only::Str("static")),
            ("period", Only::Any),
            ("load_limit", Only::Any),
            ("core_limit", Only::Any),
            ("core_busy", Only::Any),
            ("mappings", Only::Any),
        ],
    ),
    // nvmf target-wide settings.
    (
        "nvmf_set_config",
        &[
            ("acceptor_poll_rate", Only::Any),
            ("conn_sched", Only::Any),
            // No admin command is passed through to a device.
            ("admin_cmd_passthru.identify_ctrlr", Only::False),
            ("admin_cmd_passthru.identify_uuid_list", Only::False),
            ("admin_cmd_passthru.get_log_page", Only::False),
            ("admin_cmd_passthru.get_set_features", Only::False),
            ("admin_cmd_passthru.sanitize", Only::False),
            ("admin_cmd_passthru.security_send_recv", Only::False),
            ("admin_cmd_passthru.fw_update", Only::False),
            ("admin_cmd_passthru.nvme_mi", Only::False),
            ("admin_cmd_passthru.vendor_specific", Only::False),
            ("poll_groups_mask", Only::Null),
            // The discovery log lists every subsystem the host may connect to.
            ("discovery_filter", Only::Str("match_any")),
            ("discovery_filters", Only::AllOf(&["match_any"])),
            ("dup_host_policy", Only::Str("allow")),
            ("dhchap_digests", Only::AllOf(DIGESTS)),
            ("dhchap_dhgroups", Only::AllOf(DHGROUPS)),
        ],
    ),
    // nvmf-rs has no subsystem limit.
    ("nvmf_set_max_subsystems", &[("max_subsystems", Only::Any)]),
    // Identify Controller CRDT1-3 are reported as 0 (no Command Retry Delay).
    ("nvmf_set_crdt", &[("crdt1", Only::Zero), ("crdt2", Only::Zero), ("crdt3", Only::Zero)]),
];

pub(crate) fn is_global(method: &str) -> bool {
    GLOBALS.iter().any(|(m, _)| *m == method)
}

/// Run global method `method`: check every parameter, change nothing, answer `true`.
pub(crate) fn call(_state: &mut AppState, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
    let Some((_, spec)) = GLOBALS.iter().find(|(m, _)| *m == method) else {
        return Err(RpcError::new(super::error::METHOD_NOT_FOUND, format!("Method not found: {method}")));
    };
    if spec.iter().any(|(p, _)| *p == ANY_PARAM) {
        return Ok(json!(true));
    }
    let empty = serde_json::Map::new();
    let obj = match &params {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err(RpcError::invalid_params("params must be a JSON object")),
    };
    check_object(method, spec, obj, "")?;
    log::info!("{method}: accepted (no effect in nvmf-rs)");
    Ok(json!(true))
}

/// Check the members of `obj` (at `prefix`, "" or "name.") against `spec`.
fn check_object(
    method: &str,
    spec: &[(&str, Only)],
    obj: &serde_json::Map<String, Value>,
    prefix: &str,
) -> Result<(), RpcError> {
    for (k, v) in obj {
        let path = format!("{prefix}{k}");
        if let Value::Object(inner) = v {
            let nested = format!("{path}.");
            if spec.iter().any(|(p, _)| p.starts_with(&nested)) {
                check_object(method, spec, inner, &nested)?;
                continue;
            }
        }
        match spec.iter().find(|(p, _)| *p == path) {
            None => return Err(RpcError::invalid_params(format!("{method}: unknown parameter {path}"))),
            Some((_, only)) if !only.accepts(v, obj) => {
                return Err(RpcError::invalid_params(format!(
                    "{method}: {path}={v} is not supported by nvmf-rs (accepted: {})",
                    only.describe()
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(method: &str, p: Value) -> Result<Value, String> {
        let mut st = AppState::new(nvmf::Target::new());
        call(&mut st, method, Some(p)).map_err(|e| e.message)
    }

    #[test]
    fn what_spdk_writes_is_accepted_and_behaviour_changes_are_refused_by_name() {
        let cfg = json!({"discovery_filter": "match_any", "admin_cmd_passthru": {"identify_ctrlr": false},
            "dhchap_digests": ["sha256", "sha384", "sha512"],
            "dhchap_dhgroups": ["null", "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"]});
        assert_eq!(run("nvmf_set_config", cfg), Ok(json!(true)));
        let e = run("nvmf_set_config", json!({"admin_cmd_passthru": {"identify_ctrlr": true}})).unwrap_err();
        assert!(e.contains("admin_cmd_passthru.identify_ctrlr=true"), "{e}");
        assert!(run("nvmf_set_config", json!({"discovery_filter": "transport"}))
            .unwrap_err()
            .contains("discovery_filter"));
        assert!(run("nvmf_set_config", json!({"dhchap_digests": ["sha256"]})).unwrap_err().contains("dhchap_digests"));
        assert!(run("nvmf_set_config", json!({"bogus": 1})).unwrap_err().contains("unknown parameter bogus"));
        assert_eq!(
            run("iobuf_set_options", json!({"small_pool_count": 8192, "large_pool_count": 1024})),
            Ok(json!(true))
        );
        assert_eq!(run("nvmf_set_crdt", json!({"crdt1": 0, "crdt2": 0, "crdt3": 0})), Ok(json!(true)));
        assert!(run("nvmf_set_crdt", json!({"crdt1": 5})).is_err());
        assert!(run("framework_set_scheduler", json!({"name": "dynamic"})).is_err());
        assert_eq!(run("framework_set_scheduler", json!({"name": "static"})), Ok(json!(true)));
        assert_eq!(run("bdev_nvme_set_options", json!({"timeout_us": 0, "anything": true})), Ok(json!(true)));
        assert_eq!(run("bdev_wait_for_examine", json!({})), Ok(json!(true)));
        assert!(run("bdev_nvme_set_hotplug", json!({"enable": true})).is_err());
    }
}
