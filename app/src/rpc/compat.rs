//! Parameters that SPDK's `scripts/rpc.py` (the PyPI `spdk` package, 26.9) sends, or that
//! SPDK-written config files hold, for which nvmf-rs has no behaviour of its own.
//!
//! rpc.py sends every option's default value (`false` for each flag), so each of these must be
//! understood. A parameter listed here is accepted when it holds the value that asks for
//! nothing (SPDK's default, or absent/`null`), and refused with `-32602` naming it when a
//! non-default value asks for behaviour we do not have: nothing that would change behaviour is
//! silently ignored. Tuning knobs of SPDK internals with no counterpart here (buffer caches,
//! SRQ depths, NUMA hints) are accepted with any value ([`Only::Any`]). The tables are applied
//! by the dispatcher before each method parses its own parameters (`rpc::dispatch`), and
//! `docs/rpc.md` lists them per method.

use super::error::RpcError;
use serde_json::Value;

/// The values of a parameter that are accepted without behaviour behind them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Only {
    /// `false` (or absent).
    False,
    /// `0` (or absent).
    Zero,
    /// This integer (or absent).
    Int(i64),
    /// `0`, absent, or the same value as the named parameter (e.g. a physical block size equal
    /// to the logical block size).
    ZeroOrSameAs(&'static str),
    /// Absent or `null`.
    Null,
    /// Absent, `null`, or this string.
    Str(&'static str),
    /// Absent, `null` or an empty list.
    EmptyList,
    /// Absent, or a list holding exactly these strings (in any order).
    AllOf(&'static [&'static str]),
    /// Any value: an SPDK-internal tuning knob with no counterpart (documented as such).
    Any,
}

impl Only {
    pub(crate) fn accepts(self, v: &Value, obj: &serde_json::Map<String, Value>) -> bool {
        match self {
            Only::False => v.is_null() || v == &Value::Bool(false),
            Only::Zero => v.is_null() || v.as_i64() == Some(0),
            Only::Int(n) => v.is_null() || v.as_i64() == Some(n),
            Only::ZeroOrSameAs(other) => v.is_null() || v.as_i64() == Some(0) || obj.get(other) == Some(v),
            Only::Null => v.is_null(),
            Only::Str(s) => v.is_null() || v.as_str() == Some(s),
            Only::EmptyList => v.is_null() || v.as_array().is_some_and(|a| a.is_empty()),
            Only::AllOf(all) => {
                v.is_null()
                    || v.as_array().is_some_and(|a| {
                        a.len() == all.len() && all.iter().all(|x| a.iter().any(|y| y.as_str() == Some(x)))
                    })
            }
            Only::Any => true,
        }
    }

    /// How the accepted values read in an error message and in docs/rpc.md.
    pub(crate) fn describe(self) -> String {
        match self {
            Only::False => "false".into(),
            Only::Zero => "0".into(),
            Only::Int(n) => n.to_string(),
            Only::ZeroOrSameAs(other) => format!("0 or equal to {other}"),
            Only::Null => "absent".into(),
            Only::Str(s) => format!("\"{s}\""),
            Only::EmptyList => "[]".into(),
            Only::AllOf(all) => format!("all of {all:?}"),
            Only::Any => "any (no effect)".into(),
        }
    }
}

/// (method, parameter, accepted values). A parameter in a nested object is written
/// `object.parameter`.
pub(crate) const DEFAULT_ONLY: &[(&str, &str, Only)] = &[
    // Transport: SPDK's RDMA/VFIO-USER knobs and masks we have no behaviour for.
    ("nvmf_create_transport", "acceptor_backlog", Only::Any),
    ("nvmf_create_transport", "iobuf_small_cache_size", Only::Any),
    ("nvmf_create_transport", "iobuf_large_cache_size", Only::Any),
    ("nvmf_create_transport", "max_srq_depth", Only::Any),
    ("nvmf_create_transport", "num_cqe", Only::Any),
    ("nvmf_create_transport", "no_srq", Only::False),
    ("nvmf_create_transport", "no_wr_batching", Only::False),
    ("nvmf_create_transport", "disable_mappable_bar0", Only::False),
    ("nvmf_create_transport", "disable_adaptive_irq", Only::False),
    ("nvmf_create_transport", "disable_shadow_doorbells", Only::False),
    ("nvmf_create_transport", "masked_oncs", Only::EmptyList),
    // No fused operation is advertised, so masking any of them changes nothing.
    ("nvmf_create_transport", "masked_fuses", Only::Any),
    ("nvmf_create_transport", "min_kato", Only::Int(10_000)),
    // Bdevs.
    ("bdev_malloc_create", "physical_block_size", Only::ZeroOrSameAs("block_size")),
    ("bdev_malloc_create", "dif_pi_format", Only::Zero),
    ("bdev_malloc_create", "numa_id", Only::Any),
    ("bdev_null_create", "physical_block_size", Only::ZeroOrSameAs("block_size")),
    ("bdev_null_create", "dif_pi_format", Only::Zero),
    ("bdev_null_create", "preferred_write_alignment", Only::Zero),
    ("bdev_null_create", "preferred_write_granularity", Only::Zero),
    ("bdev_null_create", "optimal_write_size", Only::Zero),
    ("bdev_null_create", "preferred_unmap_alignment", Only::Zero),
    ("bdev_null_create", "preferred_unmap_granularity", Only::Zero),
    ("bdev_aio_create", "nowait", Only::False),
    // Subsystems.
    ("nvmf_create_subsystem", "enable_nssr", Only::False),
    ("nvmf_create_subsystem", "passthrough", Only::False),
    ("nvmf_create_subsystem", "dmrsl", Only::Zero),
    ("nvmf_create_subsystem", "wzsl", Only::Zero),
    // The same limits under the names SPDK's save_config wrote before 26.05.
    ("nvmf_create_subsystem", "max_discard_size_kib", Only::Zero),
    ("nvmf_create_subsystem", "max_write_zeroes_size_kib", Only::Zero),
    // Extended discovery log page entries are not written.
    ("nvmf_create_subsystem", "admin_label", Only::Null),
    ("nvmf_subsystem_add_listener", "sock_impl", Only::Str("posix")),
    ("nvmf_subsystem_add_listener", "numa_id", Only::Any),
    ("nvmf_subsystem_remove_host", "timeout_ms", Only::Any),
    // Direct mode serves namespaces without protection information.
    ("bdev_nvme_attach_controller", "prchk_reftag", Only::False),
    ("bdev_nvme_attach_controller", "prchk_guard", Only::False),
    // Detaching names one controller; rpc.py's path filters would pick one of several paths.
    ("bdev_nvme_detach_controller", "trtype", Only::Null),
    ("bdev_nvme_detach_controller", "traddr", Only::Null),
    ("bdev_nvme_detach_controller", "adrfam", Only::Null),
    ("bdev_nvme_detach_controller", "trsvcid", Only::Null),
    ("bdev_nvme_detach_controller", "subnqn", Only::Null),
    ("bdev_nvme_detach_controller", "hostaddr", Only::Null),
    ("bdev_nvme_detach_controller", "hostsvcid", Only::Null),
];

/// Check and remove `method`'s default-only parameters from `params`, so that the method's own
/// parser sees only what it implements.
pub(crate) fn strip_default_only(method: &str, params: &mut Option<Value>) -> Result<(), RpcError> {
    let Some(Value::Object(obj)) = params.as_mut() else { return Ok(()) };
    for &(_, name, only) in DEFAULT_ONLY.iter().filter(|(m, _, _)| *m == method) {
        let (parent, key) = match name.split_once('.') {
            Some((p, k)) => (obj.get_mut(p).and_then(Value::as_object_mut), k),
            None => (Some(&mut *obj), name),
        };
        let Some(parent) = parent else { continue };
        let Some(v) = parent.get(key) else { continue };
        if !only.accepts(v, parent) {
            return Err(RpcError::invalid_params(format!(
                "{name}={v} is not supported by nvmf-rs (accepted: {})",
                only.describe()
            )));
        }
        parent.remove(key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strip(method: &str, v: Value) -> Result<Value, String> {
        let mut p = Some(v);
        strip_default_only(method, &mut p).map_err(|e| e.to_string())?;
        Ok(p.unwrap())
    }

    #[test]
    fn defaults_are_removed_and_other_values_refused_by_name() {
        // What rpc.py sends for `nvmf_create_transport -t TCP`.
        let sent = json!({"trtype": "TCP", "no_srq": false, "c2h_success": true, "zcopy": false,
            "dif_insert_or_strip": false, "no_wr_batching": false, "disable_mappable_bar0": false,
            "disable_adaptive_irq": false, "disable_shadow_doorbells": false, "disable_command_passthru": false});
        let left = strip("nvmf_create_transport", sent).unwrap();
        assert_eq!(
            left,
            json!({"trtype": "TCP", "c2h_success": true, "zcopy": false, "dif_insert_or_strip": false, "disable_command_passthru": false})
        );
        let e = strip("nvmf_create_transport", json!({"trtype": "TCP", "no_srq": true})).unwrap_err();
        assert!(e.contains("no_srq=true"), "{e}");
        assert!(strip("nvmf_create_transport", json!({"masked_oncs": ["write_zeroes"]}))
            .unwrap_err()
            .contains("masked_oncs"));
        assert_eq!(strip("nvmf_create_transport", json!({"min_kato": 10000})).unwrap(), json!({}));
        assert!(strip("nvmf_create_transport", json!({"min_kato": 5})).is_err());
        assert_eq!(strip("nvmf_create_transport", json!({"iobuf_large_cache_size": 77})).unwrap(), json!({}));
    }

    #[test]
    fn same_as_and_strings() {
        let ok = strip("bdev_malloc_create", json!({"block_size": 4096, "physical_block_size": 4096})).unwrap();
        assert_eq!(ok, json!({"block_size": 4096}));
        assert!(strip("bdev_malloc_create", json!({"block_size": 512, "physical_block_size": 4096})).is_err());
        assert!(strip("nvmf_subsystem_add_listener", json!({"sock_impl": "posix"})).is_ok());
        assert!(strip("nvmf_subsystem_add_listener", json!({"sock_impl": "uring"})).unwrap_err().contains("sock_impl"));
        // Other methods and non-object params are left alone.
        assert_eq!(strip("bdev_get_bdevs", json!({"no_srq": true})).unwrap(), json!({"no_srq": true}));
    }
}
