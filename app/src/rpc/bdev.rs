//! bdev_* methods: Malloc, Null and AIO (file) bdevs, and the direct-mode NVMe attach.

use super::error::{EBUSY, EEXIST, ENODEV, EOPNOTSUPP};
use super::{format_uuid, parse_params, parse_uuid, RpcError};
use crate::state::{AppState, BdevKind, BdevMeta, EmulatedShape, NvmeCtrlr};
use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
use nvme_driver::DmaBacking;
use nvme_driver::{Controller, ControllerOptions};
use nvmf::bdev::{Bdev, BdevOp, FileBdev, MallocBdev, NullBdev, NvmeBdev};
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
    uuid: Option<String>,
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
    let fnv = |seed: u64| name.bytes().fold(seed, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
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
    log::info!(
        "created bdev {name} ({}): {} blocks of {} bytes",
        bdev.product_name(),
        bdev.num_blocks(),
        bdev.block_size()
    );
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
    let uuid = match &p.uuid {
        Some(u) => Some(format_uuid(&parse_uuid(u)?)),
        None => None,
    };
    Ok(insert(state, bdev.clone(), BdevKind::Aio { filename: p.filename, file: bdev }, uuid))
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
        return Err(RpcError::no_bdev(&p.name).with_note(&format!(
            "{} is a {}, not a {product}",
            p.name,
            b.product_name()
        )));
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
            "nvme_io": b.supports_passthru(),
        },
        "driver_specific": {},
    });
    if claimed {
        v["claim_type"] = json!("exclusive_write");
    }
    match state.bdev_meta.get(name).map(|m| &m.kind) {
        Some(BdevKind::Aio { filename, file }) => {
            // sync_points is not in SPDK: fdatasync calls and O_DSYNC (FUA) writes so far.
            v["driver_specific"] = json!({"aio": {
                "filename": filename,
                "block_size_override": true,
                "readonly": false,
                "sync_points": file.sync_points(),
            }});
        }
        Some(BdevKind::Nvme { ctrlr }) => {
            if let Some(c) = state.nvme_ctrlrs.get(ctrlr) {
                let nsid = name.strip_prefix(&format!("{ctrlr}n")).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
                let key = if c.emulated.is_some() { "traddr" } else { "pci_address" };
                // Not in SPDK: data bytes that went through a bounce copy instead of a buffer
                // lent to the transport (0 while direct mode is zero-copy).
                let copied = c.nvme_bdevs.iter().find(|b| b.name() == name).map_or(0, |b| b.copied_bytes());
                v["driver_specific"] = json!({"nvme": [{
                    key: c.traddr,
                    "trid": {"trtype": c.trtype, "traddr": c.traddr},
                    "ctrlr": ctrlr,
                    "ns_data": {"id": nsid},
                    "data_copied_bytes": copied,
                }]});
            }
        }
        _ => {}
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

/// Shape of the emulated controller when `bdev_nvme_attach_controller` gives no size.
const EMU_DEFAULT_BLOCK_SIZE: u32 = 512;
/// 64 MiB of 512-byte blocks (RAM, committed as written).
const EMU_DEFAULT_NUM_BLOCKS: u64 = 131072;
/// At most this many namespaces on an emulated controller.
const EMU_MAX_NAMESPACES: u32 = 16;
/// The transport address that selects the in-process emulated controller instead of a PCI
/// device. Not a BDF, so it cannot name real hardware.
pub(crate) const EMULATED_TRADDR: &str = "emulated";

#[derive(Deserialize)]
struct AttachParams {
    name: String,
    trtype: String,
    traddr: String,
    /// Emulated controller only (`traddr: "emulated"`): namespaces, their block size and size.
    emulated_namespaces: Option<u32>,
    emulated_block_size: Option<u32>,
    emulated_num_blocks: Option<u64>,
    // rpc.py sends many other optional knobs (multipath, timeouts, digests, hostnqn...); they
    // concern fabrics controllers and are ignored for PCIe.
}

/// `bdev_nvme_attach_controller`: direct mode. Opens the PCIe controller at `traddr` (a BDF,
/// bound to vfio-pci) with the userspace driver, or the in-process emulated controller for
/// `traddr: "emulated"`, and creates one bdev `<name>n<nsid>` per active namespace. Returns the
/// bdev names, like SPDK.
pub fn nvme_attach_controller(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: AttachParams = parse_params(params)?;
    if p.name.is_empty() {
        return Err(RpcError::invalid_params("controller name must not be empty"));
    }
    if state.nvme_ctrlrs.contains_key(&p.name) {
        return Err(RpcError::new(EEXIST, format!("A controller named {} already exists: File exists", p.name)));
    }
    if !p.trtype.eq_ignore_ascii_case("pcie") {
        return Err(RpcError::new(
            EOPNOTSUPP,
            format!("bdev_nvme_attach_controller: trtype {} is not supported (only PCIe direct mode)", p.trtype),
        ));
    }
    let emulated = p.traddr.eq_ignore_ascii_case(EMULATED_TRADDR);
    let sized = p.emulated_namespaces.is_some() || p.emulated_block_size.is_some() || p.emulated_num_blocks.is_some();
    if sized && !emulated {
        return Err(RpcError::invalid_params(format!(
            "emulated_* parameters apply only to traddr \"{EMULATED_TRADDR}\""
        )));
    }
    if let Some(c) = state.nvme_ctrlrs.values().find(|c| !emulated && c.traddr.eq_ignore_ascii_case(&p.traddr)) {
        let owner =
            state.nvme_ctrlrs.iter().find(|(_, x)| std::ptr::eq(*x, c)).map(|(n, _)| n.clone()).unwrap_or_default();
        return Err(RpcError::new(
            EEXIST,
            format!("{} is already attached as controller {owner}: File exists", p.traddr),
        ));
    }
    let shape = if emulated {
        let s = EmulatedShape {
            namespaces: p.emulated_namespaces.unwrap_or(1),
            block_size: p.emulated_block_size.unwrap_or(EMU_DEFAULT_BLOCK_SIZE),
            num_blocks: p.emulated_num_blocks.unwrap_or(EMU_DEFAULT_NUM_BLOCKS),
        };
        if !(1..=EMU_MAX_NAMESPACES).contains(&s.namespaces) {
            return Err(RpcError::invalid_params(format!("emulated_namespaces must be 1..={EMU_MAX_NAMESPACES}")));
        }
        if !s.block_size.is_power_of_two() || !(512..=65536).contains(&s.block_size) {
            return Err(RpcError::invalid_params("emulated_block_size must be a power of two in 512..=65536"));
        }
        // The emulator's disks are RAM: keep them to what a test or demo needs.
        if s.num_blocks == 0 || s.num_blocks.saturating_mul(s.block_size as u64) > 64 << 30 {
            return Err(RpcError::invalid_params("emulated_num_blocks must be 1.. and the namespace at most 64 GiB"));
        }
        Some(s)
    } else {
        None
    };
    // Names must all be free before anything is opened.
    let prefix = format!("{}n", p.name);
    if let Some(taken) = state.bdevs.keys().find(|k| k.strip_prefix(&prefix).is_some_and(|n| n.parse::<u32>().is_ok()))
    {
        return Err(RpcError::new(EEXIST, format!("bdev {taken} already exists: File exists")));
    }
    let ctrl = match shape {
        Some(s) => {
            let emu = EmulatedController::new(EmulatorConfig {
                namespaces: vec![(s.block_size, s.num_blocks); s.namespaces as usize],
                ..Default::default()
            });
            let opts = ControllerOptions { dma_backing: DmaBacking::Anonymous, ..Default::default() };
            Controller::new_emulated(&emu, opts)
        }
        None => Controller::open_vfio(&p.traddr, ControllerOptions::default()),
    }
    .map_err(|e| {
        RpcError::new(ENODEV, format!("Unable to attach controller {} at {} {}: {e}", p.name, p.trtype, p.traddr))
    })?;
    let ctrl = Arc::new(ctrl);
    let mut made: Vec<(String, Arc<NvmeBdev>)> = Vec::new();
    for ns in ctrl.namespaces() {
        let name = format!("{}n{}", p.name, ns.nsid);
        // On error `made` and `ctrl` drop here: the controller shuts down.
        let b = NvmeBdev::new(&name, ctrl.clone(), ns.nsid)?;
        made.push((name, Arc::new(b)));
    }
    let nvme_bdevs: Vec<Arc<NvmeBdev>> = made.iter().map(|(_, b)| b.clone()).collect();
    if made.is_empty() {
        log::warn!("controller {} at {} has no active namespace", p.name, p.traddr);
    }
    let names: Vec<String> = made.iter().map(|(n, _)| n.clone()).collect();
    for (_, b) in made {
        insert(state, b as Arc<dyn Bdev>, BdevKind::Nvme { ctrlr: p.name.clone() }, None);
    }
    let id = ctrl.identify();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end_matches([' ', '\0']).to_string();
    log::info!(
        "attached NVMe controller {} at {} ({}, serial {}): bdevs {names:?}",
        p.name,
        p.traddr,
        text(&id.mn),
        text(&id.sn),
    );
    let traddr = if emulated { EMULATED_TRADDR.to_string() } else { p.traddr };
    state.nvme_ctrlrs.insert(
        p.name,
        NvmeCtrlr { ctrl, trtype: "PCIe".into(), traddr, bdevs: names.clone(), nvme_bdevs, emulated: shape },
    );
    Ok(json!(names))
}

/// `bdev_nvme_detach_controller`: delete a controller's bdevs and shut it down. Refused while a
/// namespace of a subsystem uses one of its bdevs.
pub fn nvme_detach_controller(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    #[derive(Deserialize)]
    struct P {
        name: String,
        // rpc.py may narrow the path with trtype/traddr/...; one path per controller here, so
        // they are accepted and ignored.
    }
    let p: P = parse_params(params)?;
    let Some(c) = state.nvme_ctrlrs.get(&p.name) else {
        return Err(RpcError::new(ENODEV, format!("Controller {} not found: No such device", p.name)));
    };
    for b in &c.bdevs {
        if let Some((nqn, nsid)) = users(state, b).first() {
            return Err(RpcError::new(
                EBUSY,
                format!(
                    "bdev {b} of controller {} is in use by namespace {nsid} of {nqn}: remove the namespace first",
                    p.name
                ),
            ));
        }
    }
    let Some(c) = state.nvme_ctrlrs.remove(&p.name) else { return Err(RpcError::internal("controller vanished")) };
    for b in &c.bdevs {
        state.bdevs.remove(b);
        state.bdev_meta.remove(b);
    }
    // Reactor channels of removed namespaces may still hold queue pairs for a moment; the
    // shutdown invalidates them (their I/O fails) and they are dropped without admin commands.
    match c.ctrl.shutdown() {
        Ok(()) => log::info!("detached NVMe controller {} ({}): shut down", p.name, c.traddr),
        Err(e) => log::warn!("detached NVMe controller {} ({}): shutdown: {e}", p.name, c.traddr),
    }
    Ok(json!(true))
}

/// `bdev_get_iostat`: SPDK's shape. Counts are the I/Os the target submitted to the bdev
/// through its namespace (`Namespace::io_stats`, over every poll group); latency, queue-depth
/// and time fields are not measured here and read 0.
pub fn get_iostat(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        name: Option<String>,
        names: Option<Vec<String>>,
        #[serde(default)]
        per_channel: bool,
        reset_mode: Option<String>,
    }
    let p: P = parse_params(params)?;
    if p.per_channel {
        return Err(RpcError::invalid_params("per_channel=true is not supported by nvmf-rs (accepted: false)"));
    }
    if p.reset_mode.as_deref().is_some_and(|m| m != "none") {
        return Err(RpcError::invalid_params(
            "reset_mode other than \"none\" is not supported by nvmf-rs (counters are never reset)",
        ));
    }
    let wanted: Vec<String> = match (p.name, p.names) {
        (Some(n), _) => vec![n],
        (None, Some(v)) => v,
        (None, None) => state.bdevs.keys().cloned().collect(),
    };
    let mut out = Vec::new();
    for name in &wanted {
        if !state.bdevs.contains_key(name) {
            return Err(RpcError::no_bdev(name));
        }
        let s = state
            .target
            .subsystems()
            .iter()
            .flat_map(|sub| sub.namespaces())
            .find(|ns| ns.bdev.name() == name)
            .map(|ns| ns.io_stats())
            .unwrap_or_default();
        out.push(json!({
            "name": name,
            "bytes_read": s.bytes_read, "num_read_ops": s.num_read_ops,
            "bytes_written": s.bytes_written, "num_write_ops": s.num_write_ops,
            "bytes_unmapped": s.bytes_unmapped, "num_unmap_ops": s.num_unmap_ops,
            "bytes_copied": 0, "num_copy_ops": 0,
            "read_latency_ticks": 0, "max_read_latency_ticks": 0, "min_read_latency_ticks": 0,
            "write_latency_ticks": 0, "max_write_latency_ticks": 0, "min_write_latency_ticks": 0,
            "unmap_latency_ticks": 0, "max_unmap_latency_ticks": 0, "min_unmap_latency_ticks": 0,
            "copy_latency_ticks": 0, "max_copy_latency_ticks": 0, "min_copy_latency_ticks": 0,
            "queue_depth_polling_period": 0, "queue_depth": 0, "io_time": 0, "weighted_io_time": 0,
            "io_error": {},
        }));
    }
    Ok(json!({"tick_rate": 1_000_000_000u64, "ticks": 0, "bdevs": out}))
}
