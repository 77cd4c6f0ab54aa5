//! bdev_* methods: Malloc, Null and AIO (file) bdevs, and the direct-mode NVMe attach.

use super::error::{EBUSY, EEXIST, EOPNOTSUPP};
use super::{format_uuid, parse_params, parse_uuid, RpcError};
use crate::state::{AppState, BdevKind, BdevMeta};
use nvmf::bdev::{Bdev, BdevOp, FileBdev, MallocBdev, NullBdev};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateParams {
    name: Option<String>,
    num_blocks: u64,
    block_size: u32,
    uuid: Option<String>,
    /// SPDK options we accept only at their defaults.
    #[serde(default)]
    optimal_io_boundary: u32,
    #[serde(default)]
    md_size: u32,
    #[serde(default)]
    md_interleave: bool,
    #[serde(default)]
    dif_type: u32,
    #[serde(default)]
    dif_is_head_of_md: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AioParams {
    name: String,
    filename: String,
    #[serde(default)]
    block_size: u32,
    #[serde(default)]
    readonly: bool,
    #[serde(default)]
    fallocate: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParams {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetParams {
    name: Option<String>,
    #[serde(default)]
    timeout: u64,
}

/// A stable UUID for a bdev that was not given one: two FNV-1a hashes of its name.
pub(crate) fn derive_uuid(name: &str) -> String {
    let fnv = |seed: u64| {
        name.bytes().fold(seed, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
    };
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&fnv(0xcbf29ce484222325).to_be_bytes());
    u[8..].copy_from_slice(&fnv(0x84222325cbf29ce4).to_be_bytes());
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    format_uuid(&u)
}

fn check_new_name(state: &AppState, name: &str) -> Result<(), RpcError> {
    if name.is_empty() {
        return Err(RpcError::invalid_params("bdev name must not be empty"));
    }
    if state.bdevs.contains_key(name) {
        return Err(RpcError::new(EEXIST, format!("bdev {name} already exists: File exists")));
    }
    Ok(())
}

/// Next free default name: `Malloc0`, `Malloc1`, ...
fn auto_name(state: &AppState, prefix: &str) -> String {
    (0..).map(|i| format!("{prefix}{i}")).find(|n| !state.bdevs.contains_key(n)).unwrap_or_default()
}

fn insert(state: &mut AppState, bdev: Arc<dyn Bdev>, kind: BdevKind, uuid: Option<String>) -> Value {
    let name = bdev.name().to_string();
    let uuid = uuid.unwrap_or_else(|| derive_uuid(&name));
    log::info!("created bdev {name} ({}): {} blocks of {} bytes", bdev.product_name(), bdev.num_blocks(), bdev.block_size());
    state.bdevs.insert(name.clone(), bdev);
    state.bdev_meta.insert(name.clone(), BdevMeta { kind, uuid });
    json!(name)
}

fn create(state: &mut AppState, params: Option<Value>, prefix: &str, malloc: bool) -> Result<Value, RpcError> {
    let p: CreateParams = parse_params(params)?;
    let name = p.name.clone().unwrap_or_else(|| auto_name(state, prefix));
    check_new_name(state, &name)?;
    if p.optimal_io_boundary != 0 || p.md_size != 0 || p.md_interleave || p.dif_type != 0 || p.dif_is_head_of_md {
        return Err(RpcError::invalid_params(
            "metadata, DIF and optimal_io_boundary are not supported: leave them at 0/false",
        ));
    }
    let uuid = match &p.uuid {
        Some(u) => Some(format_uuid(&parse_uuid(u)?)),
        None => None,
    };
    let (bdev, kind): (Arc<dyn Bdev>, _) = if malloc {
        (Arc::new(MallocBdev::new(&name, p.num_blocks, p.block_size)?), BdevKind::Malloc)
    } else {
        (Arc::new(NullBdev::new(&name, p.num_blocks, p.block_size)?), BdevKind::Null)
    };
    Ok(insert(state, bdev, kind, uuid))
}

pub fn malloc_create(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    create(state, params, "Malloc", true)
}

pub fn null_create(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    create(state, params, "Null", false)
}

pub fn aio_create(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: AioParams = parse_params(params)?;
    check_new_name(state, &p.name)?;
    if p.readonly || p.fallocate {
        return Err(RpcError::invalid_params("readonly and fallocate are not supported"));
    }
    // SPDK picks the device's logical block size when block_size is 0; for files that is 512.
    let block_size = if p.block_size == 0 { 512 } else { p.block_size };
    let bdev = Arc::new(FileBdev::open(&p.name, &p.filename, block_size)?);
    Ok(insert(state, bdev, BdevKind::Aio { filename: p.filename }, None))
}

/// Namespaces (subsystem NQN, NSID) using bdev `name`.
pub(crate) fn users(state: &AppState, name: &str) -> Vec<(String, u32)> {
    let mut v = Vec::new();
    for s in state.target.subsystems() {
        for ns in s.namespaces() {
            if ns.bdev.name() == name {
                v.push((s.nqn.clone(), ns.nsid));
            }
        }
    }
    v
}

fn delete(state: &mut AppState, params: Option<Value>, product: &str) -> Result<Value, RpcError> {
    let p: NameParams = parse_params(params)?;
    let Some(b) = state.bdevs.get(&p.name) else {
        return Err(RpcError::no_bdev(&p.name));
    };
    if b.product_name() != product {
        return Err(RpcError::no_bdev(&p.name).with_note(&format!("{} is a {}, not a {product}", p.name, b.product_name())));
    }
    if let Some((nqn, nsid)) = users(state, &p.name).first() {
        return Err(RpcError::new(
            EBUSY,
            format!("bdev {} is in use by namespace {nsid} of {nqn}: remove the namespace first", p.name),
        ));
    }
    state.bdevs.remove(&p.name);
    state.bdev_meta.remove(&p.name);
    log::info!("deleted bdev {}", p.name);
    Ok(json!(true))
}

impl RpcError {
    fn with_note(mut self, note: &str) -> Self {
        self.message = format!("{} ({note})", self.message);
        self
    }
}

pub fn malloc_delete(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    delete(state, params, "Malloc disk")
}

pub fn null_delete(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    delete(state, params, "Null disk")
}

pub fn aio_delete(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    delete(state, params, "AIO disk")
}

pub(crate) fn bdev_uuid(state: &AppState, name: &str) -> String {
    state.bdev_meta.get(name).map(|m| m.uuid.clone()).unwrap_or_else(|| derive_uuid(name))
}

fn describe(state: &AppState, b: &Arc<dyn Bdev>) -> Value {
    let name = b.name();
    let claimed = !users(state, name).is_empty();
    let mut v = json!({
        "name": name,
        "aliases": [],
        "product_name": b.product_name(),
        "block_size": b.block_size(),
        "num_blocks": b.num_blocks(),
        "uuid": bdev_uuid(state, name),
        "claimed": claimed,
        "zoned": false,
        "supported_io_types": {
            "read": true,
            "write": true,
            "unmap": b.supports(BdevOp::Unmap),
            "write_zeroes": b.supports(BdevOp::WriteZeroes),
            "flush": true,
            "reset": false,
            "compare": true,
            "compare_and_write": false,
            "abort": false,
            "nvme_admin": false,
            "nvme_io": false,
        },
        "driver_specific": {},
    });
    if claimed {
        v["claim_type"] = json!("exclusive_write");
    }
    if let Some(BdevKind::Aio { filename }) = state.bdev_meta.get(name).map(|m| &m.kind) {
        v["driver_specific"] = json!({"aio": {"filename": filename, "block_size_override": true, "readonly": false}});
    }
    v
}

pub fn get_bdevs(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: GetParams = parse_params(params)?;
    let _ = p.timeout;
    match p.name {
        Some(n) => match state.bdevs.get(&n) {
            Some(b) => Ok(json!([describe(state, b)])),
            None => Err(RpcError::no_bdev(&n)),
        },
        None => Ok(Value::Array(state.bdevs.values().map(|b| describe(state, b)).collect())),
    }
}

/// `bdev_nvme_attach_controller`: direct mode. The parameters are checked; attaching needs
/// `nvme_driver::Controller::open_vfio` + `nvmf::bdev::NvmeBdev`, and the app crate does not
/// depend on `nvme-driver` yet, so this answers with a clear error.
pub fn nvme_attach_controller(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    // rpc.py sends many optional knobs (multipath, timeouts, digests...): only the required
    // ones are checked here.
    #[derive(Deserialize)]
    struct P {
        name: String,
        trtype: String,
        traddr: String,
    }
    let p: P = parse_params(params)?;
    if state.bdevs.keys().any(|k| k == &format!("{}n1", p.name)) {
        return Err(RpcError::new(EEXIST, format!("controller {} already exists: File exists", p.name)));
    }
    if p.trtype.eq_ignore_ascii_case("pcie") {
        Err(RpcError::new(
            EOPNOTSUPP,
            format!(
                "direct mode (PCIe) not available: nvmf_tgt is not built with the nvme-driver VFIO controller \
                 (nvme_driver::Controller::open_vfio), so controller {} at {} cannot be attached; \
                 use bdev_malloc_create, bdev_null_create or bdev_aio_create",
                p.name, p.traddr
            ),
        ))
    } else {
        Err(RpcError::new(
            EOPNOTSUPP,
            format!("bdev_nvme_attach_controller: trtype {} is not supported (only PCIe direct mode is planned)", p.trtype),
        ))
    }
}
