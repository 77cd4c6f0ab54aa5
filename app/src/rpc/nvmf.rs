//! nvmf_* methods: transports, subsystems, namespaces, listeners, hosts, statistics.

use super::error::EEXIST;
use super::{
    format_uuid, hex_upper, opt_string_or_number, parse_hex, parse_params, parse_uuid, string_or_number, RpcError,
};
use crate::state::{AppState, TransportInfo, TransportLimits};
use nvmf::ana::AnaState;
use nvmf::subsystem::MAX_NAMESPACES;
use nvmf::{NamespaceConfig, SubsystemConfig, TcpTransport, TcpTransportOpts, TransportAddr, TransportType};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// SPDK's defaults for subsystems created by RPC.
const DEFAULT_SERIAL: &str = "00000000000000000000";
const DEFAULT_MODEL: &str = "SPDK bdev Controller";
/// Controller ID range (all of it: min_cntlid/max_cntlid are accepted only at these values).
const MIN_CNTLID: u16 = 1;
const MAX_CNTLID: u16 = 0xffef;

// ---- transports ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransportParams {
    trtype: String,
    #[allow(dead_code)]
    tgt_name: Option<String>,
    max_queue_depth: Option<u32>,
    #[serde(alias = "max_qpairs_per_ctrlr")]
    max_io_qpairs_per_ctrlr: Option<u32>,
    in_capsule_data_size: Option<u32>,
    max_io_size: Option<u32>,
    io_unit_size: Option<u32>,
    max_aq_depth: Option<u32>,
    c2h_success: Option<bool>,
    // Accepted for compatibility with rpc.py and SPDK configs; they tune SPDK internals
    // (shared buffer pools, socket priority, zero copy) that have no counterpart here.
    num_shared_buffers: Option<u32>,
    buf_cache_size: Option<u32>,
    dif_insert_or_strip: Option<bool>,
    sock_priority: Option<u32>,
    abort_timeout_sec: Option<u32>,
    acceptor_poll_rate: Option<u32>,
    zcopy: Option<bool>,
    control_msg_num: Option<u32>,
    ack_timeout: Option<u32>,
    data_wr_pool_size: Option<u32>,
    disable_command_passthru: Option<bool>,
    kas: Option<u32>,
    // Per-host limits (not in SPDK; docs/reliability.md "Per-host resources").
    max_data_per_qpair: Option<u64>,
    max_data_per_ctrlr: Option<u64>,
    h2c_data_timeout_ms: Option<u64>,
    icreq_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    send_backlog_size: Option<usize>,
    send_timeout_ms: Option<u64>,
    max_connections_per_listener: Option<usize>,
    max_connections: Option<usize>,
    buf_pool_size: Option<usize>,
    buf_pool_watermark: Option<usize>,
}

/// The per-host limits asked for, over the defaults. Sizes and counts must be at least 1;
/// a timeout of 0 disables it.
fn limits_of(p: &TransportParams, d: &TcpTransportOpts) -> Result<TransportLimits, RpcError> {
    let mut l = TransportLimits::of(d);
    let positive = |name: &str, v: Option<u64>| match v {
        Some(0) => Err(RpcError::invalid_params(format!("{name} must be at least 1"))),
        _ => Ok(()),
    };
    positive("max_data_per_qpair", p.max_data_per_qpair)?;
    positive("max_data_per_ctrlr", p.max_data_per_ctrlr)?;
    positive("send_backlog_size", p.send_backlog_size.map(|v| v as u64))?;
    positive("max_connections_per_listener", p.max_connections_per_listener.map(|v| v as u64))?;
    positive("max_connections", p.max_connections.map(|v| v as u64))?;
    positive("buf_pool_size", p.buf_pool_size.map(|v| v as u64))?;
    l.max_data_per_qpair = p.max_data_per_qpair.unwrap_or(l.max_data_per_qpair);
    l.max_data_per_ctrlr = p.max_data_per_ctrlr.unwrap_or(l.max_data_per_ctrlr);
    l.h2c_data_timeout_ms = p.h2c_data_timeout_ms.unwrap_or(l.h2c_data_timeout_ms);
    l.icreq_timeout_ms = p.icreq_timeout_ms.unwrap_or(l.icreq_timeout_ms);
    l.connect_timeout_ms = p.connect_timeout_ms.unwrap_or(l.connect_timeout_ms);
    l.send_backlog_size = p.send_backlog_size.unwrap_or(l.send_backlog_size);
    l.send_timeout_ms = p.send_timeout_ms.unwrap_or(l.send_timeout_ms);
    l.max_connections_per_listener = p.max_connections_per_listener.unwrap_or(l.max_connections_per_listener);
    l.max_connections = p.max_connections.unwrap_or(l.max_connections);
    l.buf_pool_size = p.buf_pool_size.unwrap_or(l.buf_pool_size);
    l.buf_pool_watermark = p.buf_pool_watermark.unwrap_or(l.buf_pool_watermark);
    Ok(l)
}

fn trtype_of(s: &str) -> Result<TransportType, RpcError> {
    match s.to_ascii_uppercase().as_str() {
        "TCP" => Ok(TransportType::Tcp),
        #[cfg(feature = "rdma")]
        "RDMA" => Ok(TransportType::Rdma),
        #[cfg(not(feature = "rdma"))]
        "RDMA" => Err(RpcError::invalid_params(
            "transport type RDMA is not supported: nvmf_tgt was built without the 'rdma' feature",
        )),
        _ => Err(RpcError::invalid_params(format!("Invalid transport type {s:?}"))),
    }
}

pub fn create_transport(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: TransportParams = parse_params(params)?;
    let tt = trtype_of(&p.trtype)?;
    let _ = (p.num_shared_buffers, p.buf_cache_size, p.dif_insert_or_strip, p.sock_priority, p.abort_timeout_sec);
    let _ = (
        p.acceptor_poll_rate,
        p.zcopy,
        p.control_msg_num,
        p.ack_timeout,
        p.data_wr_pool_size,
        p.disable_command_passthru,
        p.kas,
    );
    if state.target.transports().iter().any(|t| t.trtype() == tt) {
        return Err(RpcError::new(EEXIST, format!("Transport type '{}' already exists", tt.name())));
    }
    let d = TcpTransportOpts::default();
    // Identify Controller advertises MDTS = MAX_IO_SIZE and IOCCSZ = IN_CAPSULE_DATA_SIZE, so the
    // transport must accept at least those; smaller requests are raised to them.
    let max_io = nvmf::MAX_IO_SIZE as u32;
    let icd_min = nvmf::IN_CAPSULE_DATA_SIZE as u32;
    let mut opts = d.clone();
    if let Some(v) = p.max_io_size {
        if v == 0 || v > max_io {
            return Err(RpcError::invalid_params(format!("max_io_size {v} must be 1..={max_io}")));
        }
        if v < max_io {
            log::info!("max_io_size {v}: using {max_io} (the MDTS this target advertises)");
        }
    }
    opts.max_io_size = max_io;
    if let Some(v) = p.in_capsule_data_size {
        if v > max_io || v % 16 != 0 {
            return Err(RpcError::invalid_params(format!(
                "in_capsule_data_size {v} must be a multiple of 16, at most {max_io}"
            )));
        }
        opts.in_capsule_data_size = v.max(icd_min);
    }
    if let Some(v) = p.io_unit_size {
        if !(4096..=max_io).contains(&v) || v % 4 != 0 {
            return Err(RpcError::invalid_params(format!(
                "io_unit_size {v} must be a multiple of 4 in 4096..={max_io}"
            )));
        }
        opts.max_h2c_data = v;
    }
    if let Some(v) = p.c2h_success {
        opts.c2h_success = v;
    }
    for (name, v) in [
        ("max_queue_depth", p.max_queue_depth),
        ("max_aq_depth", p.max_aq_depth),
        ("max_io_qpairs_per_ctrlr", p.max_io_qpairs_per_ctrlr),
    ] {
        if v == Some(0) || v.is_some_and(|v| v > 65536) {
            return Err(RpcError::invalid_params(format!("{name} must be 1..=65536")));
        }
    }
    let limits = limits_of(&p, &d)?;
    limits.apply(&mut opts);
    let info = TransportInfo {
        limits,
        trtype: tt.name().to_string(),
        max_queue_depth: p.max_queue_depth.unwrap_or(128),
        max_io_qpairs_per_ctrlr: p.max_io_qpairs_per_ctrlr.unwrap_or(127),
        in_capsule_data_size: opts.in_capsule_data_size,
        max_io_size: opts.max_io_size,
        io_unit_size: opts.max_h2c_data,
        max_aq_depth: p.max_aq_depth.unwrap_or(128),
        c2h_success: opts.c2h_success,
    };
    match tt {
        #[cfg(feature = "rdma")]
        TransportType::Rdma => {
            let d = nvmf::RdmaTransportOpts::default();
            let ropts = nvmf::RdmaTransportOpts {
                max_io_size: opts.max_io_size,
                in_capsule_data_size: opts.in_capsule_data_size,
                max_queue_depth: p
                    .max_queue_depth
                    .map_or(d.max_queue_depth, |v| v.min(d.max_queue_depth as u32) as u16),
                io_unit_size: p.io_unit_size.unwrap_or(d.io_unit_size),
                num_shared_buffers: p.num_shared_buffers.map_or(d.num_shared_buffers, |v| v.max(1)),
                ..d
            };
            state.target.add_transport(Arc::new(nvmf::RdmaTransport::new(ropts)));
        }
        _ => state.target.add_transport(Arc::new(TcpTransport::new(opts))),
    }
    state.transports.insert(info.trtype.clone(), info);
    log::info!("created transport {}", tt.name());
    Ok(json!(true))
}

pub(crate) fn transport_json(t: &TransportInfo) -> Value {
    let mut v = json!({
        "trtype": t.trtype,
        "max_queue_depth": t.max_queue_depth,
        "max_io_qpairs_per_ctrlr": t.max_io_qpairs_per_ctrlr,
        "in_capsule_data_size": t.in_capsule_data_size,
        "max_io_size": t.max_io_size,
        "io_unit_size": t.io_unit_size,
        "max_aq_depth": t.max_aq_depth,
        "c2h_success": t.c2h_success,
    });
    if let (Some(m), Ok(Value::Object(l))) = (v.as_object_mut(), serde_json::to_value(&t.limits)) {
        m.extend(l);
    }
    v
}

/// Every transport of the target: the ones made by RPC with their options, others (added by
/// the application itself) with the library defaults.
pub(crate) fn transport_infos(state: &AppState) -> Vec<TransportInfo> {
    state
        .target
        .transports()
        .iter()
        .map(|t| {
            let name = t.trtype().name();
            state.transports.get(name).cloned().unwrap_or_else(|| {
                let d = TcpTransportOpts::default();
                TransportInfo {
                    trtype: name.to_string(),
                    max_queue_depth: 128,
                    max_io_qpairs_per_ctrlr: 127,
                    in_capsule_data_size: d.in_capsule_data_size,
                    max_io_size: d.max_io_size,
                    io_unit_size: d.max_h2c_data,
                    max_aq_depth: 128,
                    c2h_success: d.c2h_success,
                    limits: TransportLimits::of(&d),
                }
            })
        })
        .collect()
}

pub fn get_transports(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        trtype: Option<String>,
        #[allow(dead_code)]
        tgt_name: Option<String>,
    }
    let p: P = parse_params(params)?;
    let all = transport_infos(state);
    match p.trtype {
        Some(t) => {
            let tt = trtype_of(&t)?;
            let found: Vec<Value> = all.iter().filter(|i| i.trtype == tt.name()).map(transport_json).collect();
            if found.is_empty() {
                return Err(RpcError::invalid_params(format!("Transport type '{t}' not found")));
            }
            Ok(Value::Array(found))
        }
        None => Ok(Value::Array(all.iter().map(transport_json).collect())),
    }
}

// ---- subsystems ----

fn nvm_subsystem(state: &AppState, nqn: &str) -> Result<Arc<nvmf::Subsystem>, RpcError> {
    match state.target.subsystem(nqn) {
        Some(s) if !s.is_discovery() => Ok(s),
        Some(_) => Err(RpcError::invalid_params(format!("{nqn} is the discovery subsystem: not allowed here"))),
        None => Err(RpcError::no_subsystem(nqn)),
    }
}

pub(crate) fn any_subsystem(state: &AppState, nqn: &str) -> Result<Arc<nvmf::Subsystem>, RpcError> {
    state.target.subsystem(nqn).ok_or_else(|| RpcError::no_subsystem(nqn))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSubsystemParams {
    nqn: String,
    #[serde(default, deserialize_with = "opt_string_or_number")]
    serial_number: Option<String>,
    #[serde(default, deserialize_with = "opt_string_or_number")]
    model_number: Option<String>,
    #[serde(default)]
    allow_any_host: bool,
    #[serde(default)]
    max_namespaces: u32,
    #[allow(dead_code)]
    tgt_name: Option<String>,
    #[serde(default)]
    ana_reporting: bool,
    min_cntlid: Option<u16>,
    max_cntlid: Option<u16>,
}

fn check_id_string(s: &str, what: &str, max: usize) -> Result<(), RpcError> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(RpcError::invalid_params(format!("Invalid {what} {s:?}: 1 to {max} printable ASCII characters")));
    }
    Ok(())
}

pub fn create_subsystem(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: CreateSubsystemParams = parse_params(params)?;
    if !nvmf::subsystem::valid_nqn(&p.nqn) || p.nqn == nvmf::spec::fabrics::DISCOVERY_NQN {
        return Err(RpcError::invalid_params(format!("Invalid NQN {:?}", p.nqn)));
    }
    if state.target.subsystem(&p.nqn).is_some() {
        return Err(RpcError::new(EEXIST, format!("Subsystem {} already exists", p.nqn)));
    }
    let serial = p.serial_number.unwrap_or_else(|| DEFAULT_SERIAL.into());
    let model = p.model_number.unwrap_or_else(|| DEFAULT_MODEL.into());
    check_id_string(&serial, "serial_number", 20)?;
    check_id_string(&model, "model_number", 40)?;
    if p.max_namespaces > MAX_NAMESPACES {
        return Err(RpcError::invalid_params(format!("max_namespaces {} exceeds {MAX_NAMESPACES}", p.max_namespaces)));
    }
    if p.min_cntlid.unwrap_or(MIN_CNTLID) != MIN_CNTLID || p.max_cntlid.unwrap_or(MAX_CNTLID) != MAX_CNTLID {
        return Err(RpcError::invalid_params(format!(
            "min_cntlid/max_cntlid other than {MIN_CNTLID}/{MAX_CNTLID} are not supported"
        )));
    }
    let mut cfg = SubsystemConfig::new(&p.nqn);
    cfg.serial = serial;
    cfg.model = model;
    cfg.allow_any_host = p.allow_any_host;
    cfg.ana_reporting = p.ana_reporting;
    if p.max_namespaces != 0 {
        cfg.max_namespaces = p.max_namespaces;
    }
    state.target.add_subsystem(cfg)?;
    log::info!("created subsystem {}", p.nqn);
    Ok(json!(true))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NqnParams {
    pub(crate) nqn: String,
    #[allow(dead_code)]
    tgt_name: Option<String>,
}

pub fn delete_subsystem(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: NqnParams = parse_params(params)?;
    nvm_subsystem(state, &p.nqn)?;
    state.target.remove_subsystem(&p.nqn)?;
    release_listeners(state);
    log::info!("deleted subsystem {}", p.nqn);
    Ok(json!(true))
}

// ---- namespaces ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NsParams {
    bdev_name: String,
    #[serde(default)]
    nsid: u32,
    nguid: Option<String>,
    eui64: Option<String>,
    uuid: Option<String>,
    ptpl_file: Option<String>,
    anagrpid: Option<u32>,
    #[serde(default)]
    no_auto_visible: bool,
    /// Pass unchecked I/O opcodes to an NVMe bdev, trusting the hosts (nvmf-rs extension).
    #[serde(default)]
    passthru_io: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNsParams {
    nqn: String,
    namespace: NsParams,
    #[allow(dead_code)]
    tgt_name: Option<String>,
}

pub fn add_ns(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: AddNsParams = parse_params(params)?;
    let sub = nvm_subsystem(state, &p.nqn)?;
    let ns = p.namespace;
    let bdev = state.bdevs.get(&ns.bdev_name).cloned().ok_or_else(|| RpcError::no_bdev(&ns.bdev_name))?;
    if let Some((nqn, nsid)) = super::bdev::users(state, &ns.bdev_name).first() {
        return Err(RpcError::invalid_params(format!(
            "bdev {} is already claimed by namespace {nsid} of {nqn}",
            ns.bdev_name
        )));
    }
    if ns.anagrpid.is_some_and(|g| g == 0 || g > sub.max_namespaces) {
        return Err(RpcError::invalid_params(format!("anagrpid must be 1..={} (max_namespaces)", sub.max_namespaces)));
    }
    if ns.nsid > sub.max_namespaces {
        return Err(RpcError::invalid_params(format!(
            "nsid {} exceeds max_namespaces {} of {}",
            ns.nsid, sub.max_namespaces, p.nqn
        )));
    }
    if ns.nsid != 0 && sub.namespace(ns.nsid).is_some() {
        return Err(RpcError::invalid_params(format!("nsid {} is already in use in {}", ns.nsid, p.nqn)));
    }
    if ns.passthru_io && !bdev.supports_passthru() {
        return Err(RpcError::invalid_params(format!("passthru_io needs an NVMe bdev; {} is not one", ns.bdev_name)));
    }
    let mut cfg = NamespaceConfig::new(bdev);
    cfg.nsid = (ns.nsid != 0).then_some(ns.nsid);
    cfg.passthru_io = ns.passthru_io;
    cfg.auto_visible = !ns.no_auto_visible;
    cfg.ptpl_file = ns.ptpl_file.as_ref().map(std::path::PathBuf::from);
    cfg.anagrpid = ns.anagrpid;
    if let Some(g) = &ns.nguid {
        cfg.nguid = parse_hex::<16>(g, "NGUID")?;
    }
    if let Some(e) = &ns.eui64 {
        cfg.eui64 = parse_hex::<8>(e, "EUI-64")?;
    }
    if let Some(u) = &ns.uuid {
        cfg.uuid = parse_uuid(u)?;
    }
    let nsid = sub.add_namespace(cfg)?;
    log::info!("added namespace {nsid} ({}) to {}", ns.bdev_name, p.nqn);
    Ok(json!(nsid))
}

pub fn remove_ns(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        nqn: String,
        nsid: u32,
        #[allow(dead_code)]
        tgt_name: Option<String>,
    }
    let p: P = parse_params(params)?;
    let sub = nvm_subsystem(state, &p.nqn)?;
    if sub.namespace(p.nsid).is_none() {
        return Err(RpcError::invalid_params(format!("namespace {} not found in {}", p.nsid, p.nqn)));
    }
    sub.remove_namespace(p.nsid)?;
    log::info!("removed namespace {} from {}", p.nsid, p.nqn);
    Ok(json!(true))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NsHostParams {
    nqn: String,
    nsid: u32,
    host: String,
    #[allow(dead_code)]
    tgt_name: Option<String>,
}

/// `nvmf_ns_add_host` / `nvmf_ns_remove_host`: make a namespace added with `no_auto_visible`
/// visible to a host's controllers, or hide it again (SPDK's nvmf_ns_visible).
fn ns_visible(state: &mut AppState, params: Option<Value>, visible: bool) -> Result<Value, RpcError> {
    let p: NsHostParams = parse_params(params)?;
    let sub = nvm_subsystem(state, &p.nqn)?;
    if visible {
        sub.ns_add_host(p.nsid, &p.host)?;
    } else {
        sub.ns_remove_host(p.nsid, &p.host)?;
    }
    log::info!(
        "namespace {} of {} {} host {}",
        p.nsid,
        p.nqn,
        if visible { "visible to" } else { "hidden from" },
        p.host
    );
    Ok(json!(true))
}

pub fn ns_add_host(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    ns_visible(state, params, true)
}

pub fn ns_remove_host(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    ns_visible(state, params, false)
}

// ---- listeners ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenAddress {
    trtype: String,
    adrfam: Option<String>,
    traddr: String,
    #[serde(deserialize_with = "string_or_number")]
    trsvcid: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerParams {
    nqn: String,
    listen_address: ListenAddress,
    #[allow(dead_code)]
    tgt_name: Option<String>,
    #[serde(default)]
    secure_channel: bool,
    ana_state: Option<String>,
    anagrpid: Option<u32>,
}

pub(crate) fn transport_addr(a: &ListenAddress) -> Result<TransportAddr, RpcError> {
    let trtype = trtype_of(&a.trtype)?;
    let ip: std::net::IpAddr = a
        .traddr
        .parse()
        .map_err(|_| RpcError::invalid_params(format!("Invalid traddr {:?}: an IPv4 or IPv6 address", a.traddr)))?;
    if let Some(f) = &a.adrfam {
        let ok = match f.to_ascii_lowercase().as_str() {
            "ipv4" => ip.is_ipv4(),
            "ipv6" => ip.is_ipv6(),
            _ => return Err(RpcError::invalid_params(format!("Invalid adrfam {f:?}: IPv4 or IPv6"))),
        };
        if !ok {
            return Err(RpcError::invalid_params(format!("adrfam {f} does not match traddr {}", a.traddr)));
        }
    }
    let port: u16 = a
        .trsvcid
        .parse()
        .map_err(|_| RpcError::invalid_params(format!("Invalid trsvcid {:?}: a TCP port", a.trsvcid)))?;
    Ok(TransportAddr { trtype, traddr: ip.to_string(), trsvcid: port.to_string() })
}

pub(crate) fn listen_address_json(a: &TransportAddr) -> Value {
    json!({
        "trtype": a.trtype.name(),
        "adrfam": if a.traddr.contains(':') { "IPv6" } else { "IPv4" },
        "traddr": a.traddr,
        "trsvcid": a.trsvcid,
    })
}

pub fn add_listener(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: ListenerParams = parse_params(params)?;
    let sub = any_subsystem(state, &p.nqn)?;
    let mut addr = transport_addr(&p.listen_address)?;
    if p.secure_channel {
        return Err(RpcError::invalid_params("secure_channel is not supported"));
    }
    let ana = p.ana_state.as_deref().map(parse_ana_state).transpose()?;
    if p.anagrpid.is_some() && ana.is_none() {
        return Err(RpcError::invalid_params("anagrpid needs ana_state"));
    }
    if ana.is_some() && !sub.ana_reporting {
        return Err(RpcError::invalid_params(format!("{} does not have ANA reporting (--ana-reporting)", p.nqn)));
    }
    if p.anagrpid.is_some_and(|g| g == 0 || g > sub.max_namespaces) {
        return Err(RpcError::invalid_params(format!("anagrpid must be 1..={}", sub.max_namespaces)));
    }
    if !state.target.transports().iter().any(|t| t.trtype() == addr.trtype) {
        return Err(RpcError::invalid_params(format!(
            "Unable to find {} transport: create it with nvmf_create_transport first",
            addr.trtype.name()
        )));
    }
    if sub.listeners().contains(&addr) {
        return Err(RpcError::new(EEXIST, format!("{} already listens on {addr}", p.nqn)));
    }
    // Like SPDK: make the target listen there first if it does not yet.
    let mut started = false;
    if !state.target.listen_addrs().contains(&addr) {
        let before = state.target.listen_addrs();
        state.target.listen(&addr).map_err(|e| RpcError::internal(format!("Unable to listen on {addr}: {e}")))?;
        started = true;
        if addr.trsvcid == "0" {
            // An ephemeral port: record the one the system picked.
            if let Some(real) = state.target.listen_addrs().into_iter().find(|a| !before.contains(a)) {
                addr = real;
            }
        }
        state.rpc_listeners.push(addr.clone());
    }
    if let Err(e) = sub.add_listener(addr.clone()) {
        if started {
            let _ = state.target.stop_listening(&addr);
            state.rpc_listeners.retain(|a| a != &addr);
        }
        return Err(e.into());
    }
    if let Some(st) = ana {
        sub.set_ana_state(&addr, p.anagrpid, st)?;
    }
    log::info!("{} listening on {addr}", p.nqn);
    Ok(json!(true))
}

fn parse_ana_state(s: &str) -> Result<AnaState, RpcError> {
    AnaState::parse(s).ok_or_else(|| {
        RpcError::invalid_params(format!(
            "Invalid ana_state {s:?}: optimized, non_optimized, inaccessible, persistent_loss or change"
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnaStateParams {
    nqn: String,
    listen_address: ListenAddress,
    ana_state: String,
    anagrpid: Option<u32>,
    #[allow(dead_code)]
    tgt_name: Option<String>,
}

/// SPDK's `nvmf_subsystem_listener_set_ana_state`: the listener's state for one ANA group
/// (`anagrpid`) or for all of them.
pub fn listener_set_ana_state(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: AnaStateParams = parse_params(params)?;
    let sub = nvm_subsystem(state, &p.nqn)?;
    let addr = transport_addr(&p.listen_address)?;
    let st = parse_ana_state(&p.ana_state)?;
    sub.set_ana_state(&addr, p.anagrpid, st)?;
    match p.anagrpid {
        Some(g) => log::info!("{}: listener {addr}: ANA group {g} is {}", p.nqn, st.name()),
        None => log::info!("{}: listener {addr}: every ANA group is {}", p.nqn, st.name()),
    }
    Ok(json!(true))
}

/// Stop target listeners started by `add_listener` that no subsystem uses any more.
fn release_listeners(state: &mut AppState) {
    let used: Vec<TransportAddr> = state.target.subsystems().iter().flat_map(|s| s.listeners()).collect();
    let (keep, drop): (Vec<_>, Vec<_>) =
        std::mem::take(&mut state.rpc_listeners).into_iter().partition(|a| used.contains(a));
    state.rpc_listeners = keep;
    for a in drop {
        match state.target.stop_listening(&a) {
            Ok(()) => log::info!("stopped listening on {a}"),
            Err(e) => log::warn!("stop listening on {a}: {e}"),
        }
    }
}

pub fn remove_listener(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: ListenerParams = parse_params(params)?;
    let sub = any_subsystem(state, &p.nqn)?;
    let addr = transport_addr(&p.listen_address)?;
    if !sub.listeners().contains(&addr) {
        return Err(RpcError::invalid_params(format!("{} does not listen on {addr}", p.nqn)));
    }
    sub.remove_listener(&addr)?;
    release_listeners(state);
    log::info!("{} no longer listening on {addr}", p.nqn);
    Ok(json!(true))
}

// ---- hosts ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostParams {
    nqn: String,
    host: String,
    #[allow(dead_code)]
    tgt_name: Option<String>,
    psk: Option<String>,
    /// DH-HMAC-CHAP host key: an inline "DHHC-1:..." secret or the path of a file holding one
    /// (SPDK names a keyring key here; see docs/authentication.md).
    dhchap_key: Option<String>,
    dhchap_ctrlr_key: Option<String>,
    /// nvmf-rs extension: accepted hashes / DH groups for this host, most preferred first.
    dhchap_digests: Option<Vec<String>>,
    dhchap_dhgroups: Option<Vec<String>>,
}

/// What `save_config` writes in place of an inline secret: loading it fails on purpose.
const REDACTED_SECRET: &str = "(inline DH-HMAC-CHAP secret not saved; add the host again)";

/// A DH-HMAC-CHAP key parameter: the name of a keyring key (`keyring_file_add_key`, as in
/// SPDK), or (extensions) an inline secret or a key file path (owner-only permissions). Returns
/// the secret and what `save_config` writes for it (the key name or the path; nothing for an
/// inline secret). Errors never echo the key.
fn dhchap_secret(state: &AppState, what: &str, v: &str) -> Result<(nvmf::auth::Secret, Option<String>), RpcError> {
    if v == REDACTED_SECRET {
        return Err(RpcError::invalid_params(format!(
            "{what}: the saved configuration holds no secret; re-add the host with its key"
        )));
    }
    if v.starts_with("DHHC-1:") {
        let s = nvmf::auth::Secret::parse(v).map_err(|e| RpcError::invalid_params(format!("{what}: {e}")))?;
        return Ok((s, None));
    }
    let path = match state.keyring.get(v) {
        Some(path) => path.as_str(),
        None if v.starts_with('/') => v,
        None => {
            return Err(RpcError::invalid_params(format!(
                "{what}: no key named {v:?} in the keyring (keyring_file_add_key)"
            )))
        }
    };
    super::keyring::check_key_file(what, path)?;
    let text =
        std::fs::read_to_string(path).map_err(|e| RpcError::invalid_params(format!("{what}: key file {path}: {e}")))?;
    let s = nvmf::auth::Secret::parse(&text)
        .map_err(|e| RpcError::invalid_params(format!("{what}: key file {path}: {e}")))?;
    Ok((s, Some(v.to_string())))
}

fn name_list<T>(what: &str, v: &Option<Vec<String>>, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, RpcError> {
    v.iter().flatten().map(|n| f(n).ok_or_else(|| RpcError::invalid_params(format!("unknown {what} {n:?}")))).collect()
}

pub fn add_host(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: HostParams = parse_params(params)?;
    let sub = nvm_subsystem(state, &p.nqn)?;
    if p.psk.is_some() {
        return Err(RpcError::invalid_params("psk (TLS) is not supported"));
    }
    if !nvmf::subsystem::valid_nqn(&p.host) {
        return Err(RpcError::invalid_params(format!("Invalid host NQN {:?}", p.host)));
    }
    if sub.hosts().contains(&p.host) {
        return Err(RpcError::new(EEXIST, format!("host {} is already allowed on {}", p.host, p.nqn)));
    }
    let (keys, files) = host_keys(state, &p)?;
    let authenticated = keys.dhchap_key.is_some();
    sub.add_host_with_keys(&p.host, keys)?;
    if authenticated {
        state.dhchap_key_files.insert((p.nqn.clone(), p.host.clone()), files);
        log::info!("host {} allowed on {} with DH-HMAC-CHAP", p.host, p.nqn);
    }
    Ok(json!(true))
}

/// The DH-HMAC-CHAP settings of an add-host / set-keys request, and what `save_config` writes
/// for its two keys.
fn host_keys(state: &AppState, p: &HostParams) -> Result<(nvmf::HostKeys, [Option<String>; 2]), RpcError> {
    let key = p.dhchap_key.as_deref().map(|v| dhchap_secret(state, "dhchap_key", v)).transpose()?;
    let ckey = p.dhchap_ctrlr_key.as_deref().map(|v| dhchap_secret(state, "dhchap_ctrlr_key", v)).transpose()?;
    let digests = name_list("digest", &p.dhchap_digests, nvmf::auth::HashId::from_name)?;
    let dhgroups = name_list("DH group", &p.dhchap_dhgroups, nvmf::auth::DhGroup::from_name)?;
    if key.is_none() && (ckey.is_some() || !digests.is_empty() || !dhgroups.is_empty()) {
        return Err(RpcError::invalid_params("DH-HMAC-CHAP settings need a dhchap_key"));
    }
    let files = [key.as_ref().and_then(|k| k.1.clone()), ckey.as_ref().and_then(|k| k.1.clone())];
    let keys = nvmf::HostKeys {
        dhchap_key: key.map(|k| k.0),
        dhchap_ctrlr_key: ckey.map(|k| k.0),
        dhchap_digests: digests,
        dhchap_dhgroups: dhgroups,
    };
    Ok((keys, files))
}

/// `nvmf_subsystem_set_keys`: replace (or, with no `dhchap_key`, remove) an allowed host's
/// DH-HMAC-CHAP keys; connections made from now on use them.
pub fn set_keys(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: HostParams = parse_params(params)?;
    let sub = nvm_subsystem(state, &p.nqn)?;
    if p.psk.is_some() {
        return Err(RpcError::invalid_params("psk (TLS) is not supported"));
    }
    if !sub.hosts().contains(&p.host) {
        return Err(RpcError::invalid_params(format!("host {} not found in {}", p.host, p.nqn)));
    }
    let (keys, files) = host_keys(state, &p)?;
    let authenticated = keys.dhchap_key.is_some();
    sub.set_host_keys(&p.host, keys)?;
    let id = (p.nqn.clone(), p.host.clone());
    if authenticated {
        state.dhchap_key_files.insert(id, files);
    } else {
        state.dhchap_key_files.remove(&id);
    }
    log::info!(
        "host {} on {}: DH-HMAC-CHAP keys {}",
        p.host,
        p.nqn,
        if authenticated { "replaced" } else { "removed" }
    );
    Ok(json!(true))
}

/// `save_config` parameters re-creating host `h` of `s`. Secrets are never written in clear:
/// keys loaded from a file are saved as that path; inline secrets as a marker that makes the
/// reload fail (rather than silently allowing the host without authentication).
pub(crate) fn add_host_params(state: &AppState, s: &nvmf::Subsystem, h: &str) -> Value {
    let mut v = json!({"nqn": s.nqn, "host": h});
    let Some(keys) = s.host_keys(h) else { return v };
    let files = state.dhchap_key_files.get(&(s.nqn.clone(), h.to_string()));
    let saved = |i: usize| files.and_then(|f| f[i].clone()).unwrap_or_else(|| REDACTED_SECRET.to_string());
    v["dhchap_key"] = json!(saved(0));
    if keys.dhchap_ctrlr_key.is_some() {
        v["dhchap_ctrlr_key"] = json!(saved(1));
    }
    if !keys.dhchap_digests.is_empty() {
        v["dhchap_digests"] = json!(keys.dhchap_digests.iter().map(|d| d.name()).collect::<Vec<_>>());
    }
    if !keys.dhchap_dhgroups.is_empty() {
        v["dhchap_dhgroups"] = json!(keys.dhchap_dhgroups.iter().map(|g| g.name()).collect::<Vec<_>>());
    }
    v
}

pub fn remove_host(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let p: HostParams = parse_params(params)?;
    let sub = nvm_subsystem(state, &p.nqn)?;
    if p.psk.is_some() || p.dhchap_key.is_some() || p.dhchap_ctrlr_key.is_some() {
        return Err(RpcError::invalid_params("psk and DH-HMAC-CHAP keys are not parameters of host removal"));
    }
    if !sub.hosts().contains(&p.host) {
        return Err(RpcError::invalid_params(format!("host {} not found in {}", p.host, p.nqn)));
    }
    sub.remove_host(&p.host)?;
    state.dhchap_key_files.remove(&(p.nqn.clone(), p.host.clone()));
    Ok(json!(true))
}

pub fn allow_any_host(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        nqn: String,
        allow_any_host: bool,
        #[allow(dead_code)]
        tgt_name: Option<String>,
    }
    let p: P = parse_params(params)?;
    let sub = nvm_subsystem(state, &p.nqn)?;
    sub.set_allow_any_host(p.allow_any_host);
    Ok(json!(true))
}

// ---- queries ----

pub(crate) fn subsystem_json(s: &nvmf::Subsystem) -> Value {
    let mut v = json!({
        "nqn": s.nqn,
        "subtype": if s.is_discovery() { "Discovery" } else { "NVMe" },
        "listen_addresses": s.listeners().iter().map(listen_address_json).collect::<Vec<_>>(),
        "allow_any_host": s.allow_any_host(),
        "hosts": s.hosts().iter().map(|h| json!({"nqn": h})).collect::<Vec<_>>(),
    });
    if !s.is_discovery() {
        v["serial_number"] = json!(s.serial);
        v["model_number"] = json!(s.model);
        v["max_namespaces"] = json!(s.max_namespaces);
        v["min_cntlid"] = json!(MIN_CNTLID);
        v["max_cntlid"] = json!(MAX_CNTLID);
        v["namespaces"] = s
            .namespaces()
            .iter()
            .map(|ns| {
                json!({
                    "nsid": ns.nsid,
                    "bdev_name": ns.bdev.name(),
                    "name": ns.bdev.name(),
                    "nguid": hex_upper(&ns.nguid),
                    "eui64": hex_upper(&ns.eui64),
                    "uuid": format_uuid(&ns.uuid),
                    "passthru_io": ns.passthru_io,
                })
            })
            .collect();
    }
    v
}

pub fn get_subsystems(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        nqn: Option<String>,
        #[allow(dead_code)]
        tgt_name: Option<String>,
    }
    let p: P = parse_params(params)?;
    let subs = state.target.subsystems();
    if let Some(n) = &p.nqn {
        let s = subs.iter().find(|s| &s.nqn == n).ok_or_else(|| RpcError::no_subsystem(n))?;
        return Ok(json!([subsystem_json(s)]));
    }
    Ok(Value::Array(subs.iter().map(|s| subsystem_json(s)).collect()))
}

/// Ticks per second of the counters reported (nanoseconds).
pub(crate) const TICK_RATE: u64 = 1_000_000_000;

pub fn get_stats(state: &mut AppState, params: Option<Value>) -> Result<Value, RpcError> {
    let _: super::TgtParams = parse_params(params)?;
    let transports: Vec<Value> =
        state.target.transports().iter().map(|t| json!({"trtype": t.trtype().name()})).collect();
    let groups: Vec<Value> = state
        .reactors
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "name": format!("nvmf_tgt_poll_group_{i:03}"),
                "core": r.core,
                // Connections (admin and I/O queues alike: each is one TCP connection) now and
                // placed on this reactor since start.
                "current_io_qpairs": r.connections,
                "io_qpairs": r.placed,
                "connections": r.connections,
                "pending_bdev_io": 0,
                // Poll iterations that found work / found none (see framework_get_reactors).
                "busy": r.busy_polls,
                "idle": r.polls.saturating_sub(r.busy_polls),
                "buffers_in_use": r.buffers_in_use,
                "transports": transports,
            })
        })
        .collect();
    Ok(json!({"tick_rate": TICK_RATE, "poll_groups": groups}))
}

#[cfg(test)]
mod dhchap_tests {
    use super::super::{dispatch, framework};
    use crate::state::AppState;
    use serde_json::{json, Value};

    const NQN: &str = "nqn.2016-06.io.spdk:cnode1";
    const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
    const KEY: &str = "DHHC-1:01:FXxHMF/wOdhX0qUZw2Cd4EvRbJ9L57chOXvRTS1yeX9f/gxI:";
    const CKEY: &str = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:";

    fn call(st: &mut AppState, m: &str, p: Value) -> Result<Value, super::RpcError> {
        dispatch(st, m, Some(p))
    }

    fn state() -> AppState {
        let mut st = AppState::new(::nvmf::Target::new());
        call(&mut st, "nvmf_create_subsystem", json!({"nqn": NQN})).unwrap();
        st
    }

    #[test]
    fn add_host_with_inline_keys_never_saves_them() {
        let mut st = state();
        let p = json!({"nqn": NQN, "host": HOST, "dhchap_key": KEY, "dhchap_ctrlr_key": CKEY,
                       "dhchap_dhgroups": ["ffdhe2048", "null"]});
        call(&mut st, "nvmf_subsystem_add_host", p).unwrap();
        let keys = st.target.subsystem(NQN).unwrap().host_keys(HOST).expect("keys");
        assert_eq!(keys.dhchap_key.as_ref().unwrap().to_dhhc1(), KEY);
        assert_eq!(keys.dhchap_dhgroups, vec![::nvmf::auth::DhGroup::Ffdhe2048, ::nvmf::auth::DhGroup::Null]);
        let doc = framework::config_document(&st).to_string();
        assert!(!doc.contains("FXxHMF") && !doc.contains("AAECAw"), "{doc}");
        assert!(doc.contains(super::REDACTED_SECRET));
        // Reloading the saved entry fails loudly instead of allowing the host without keys.
        let mut st2 = state();
        let saved = framework::config_document(&st);
        let entry = saved["subsystems"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["config"].as_array().cloned().unwrap_or_default())
            .find(|c| c["method"] == "nvmf_subsystem_add_host")
            .expect("host entry");
        let e = call(&mut st2, "nvmf_subsystem_add_host", entry["params"].clone()).unwrap_err();
        assert!(e.message.contains("re-add"), "{}", e.message);
        assert!(st2.target.subsystem(NQN).unwrap().hosts().is_empty());
    }

    #[test]
    fn key_files_are_saved_as_paths() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("nvmf-dhchap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("key0");
        std::fs::write(&f, format!("{KEY}\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path = f.to_str().unwrap().to_string();
        let mut st = state();
        let e = call(&mut st, "nvmf_subsystem_add_host", json!({"nqn": NQN, "host": HOST, "dhchap_key": path}));
        assert!(e.unwrap_err().message.contains("chmod 600"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        call(&mut st, "nvmf_subsystem_add_host", json!({"nqn": NQN, "host": HOST, "dhchap_key": path})).unwrap();
        let doc = framework::config_document(&st).to_string();
        assert!(doc.contains(&path) && !doc.contains("FXxHMF"), "{doc}");
        // The saved document reloads.
        let mut st2 = state();
        let saved = framework::config_document(&st);
        for s in saved["subsystems"].as_array().unwrap() {
            for c in s["config"].as_array().into_iter().flatten() {
                if c["method"] == "nvmf_subsystem_add_host" {
                    call(&mut st2, "nvmf_subsystem_add_host", c["params"].clone()).unwrap();
                }
            }
        }
        assert!(st2.target.subsystem(NQN).unwrap().host_keys(HOST).is_some());
        call(&mut st, "nvmf_subsystem_remove_host", json!({"nqn": NQN, "host": HOST})).unwrap();
        assert!(st.dhchap_key_files.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A key file with owner-only permissions in a fresh temp dir.
    fn key_file(tag: &str, secret: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("nvmf-tgt-keyring-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("key");
        std::fs::write(&p, secret).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn keyring_names_are_host_keys_and_set_keys_replaces_them() {
        let mut st = state();
        let (k0, k1) = (key_file("k0", KEY), key_file("k1", CKEY));
        call(&mut st, "keyring_file_add_key", json!({"name": "key0", "path": k0})).unwrap();
        call(&mut st, "keyring_file_add_key", json!({"name": "key1", "path": k1})).unwrap();
        let e = call(&mut st, "keyring_file_add_key", json!({"name": "key0", "path": k1})).unwrap_err();
        assert_eq!(e.code, super::EEXIST);
        let e = call(&mut st, "keyring_file_add_key", json!({"name": "kx", "path": "relative"})).unwrap_err();
        assert_eq!(e.code, super::super::error::INVALID_PARAMS);
        call(&mut st, "nvmf_subsystem_add_host", json!({"nqn": NQN, "host": HOST, "dhchap_key": "key0"})).unwrap();
        let sub = st.target.subsystem(NQN).unwrap();
        assert_eq!(sub.host_keys(HOST).unwrap().dhchap_key.as_ref().unwrap().to_dhhc1(), KEY);
        let keys = call(&mut st, "keyring_get_keys", json!({})).unwrap();
        assert_eq!(keys[0]["name"], "key0");
        assert_eq!(keys[0]["path"], k0);
        assert_eq!(keys[0]["refcnt"], 2, "the keyring's reference and the host's");
        assert_eq!(keys[1]["refcnt"], 1);
        // Re-key: new host key and a controller key, by name.
        call(
            &mut st,
            "nvmf_subsystem_set_keys",
            json!({"nqn": NQN, "host": HOST, "dhchap_key": "key1", "dhchap_ctrlr_key": "key0"}),
        )
        .unwrap();
        let keys = sub.host_keys(HOST).unwrap();
        assert_eq!(keys.dhchap_key.as_ref().unwrap().to_dhhc1(), CKEY);
        assert_eq!(keys.dhchap_ctrlr_key.as_ref().unwrap().to_dhhc1(), KEY);
        // save_config writes the keyring and the names, never a secret; it loads back the same.
        let doc = framework::config_document(&st);
        let text = doc.to_string();
        assert!(!text.contains("FXxHMF") && !text.contains("AAECAw"), "{text}");
        assert!(text.contains(r#""dhchap_key":"key1""#) && text.contains(r#""dhchap_ctrlr_key":"key0""#), "{text}");
        let mut st2 = AppState::new(::nvmf::Target::new());
        crate::config::apply(&doc, &mut st2).unwrap();
        assert_eq!(framework::config_document(&st2), doc);
        // Unknown host, unknown key name; then keys removed: the host no longer authenticates.
        let e = call(&mut st, "nvmf_subsystem_set_keys", json!({"nqn": NQN, "host": "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000009", "dhchap_key": "key1"})).unwrap_err();
        assert_eq!(e.code, super::super::error::INVALID_PARAMS);
        assert!(
            call(&mut st, "nvmf_subsystem_set_keys", json!({"nqn": NQN, "host": HOST, "dhchap_key": "nokey"})).is_err()
        );
        call(&mut st, "nvmf_subsystem_set_keys", json!({"nqn": NQN, "host": HOST})).unwrap();
        assert!(sub.host_keys(HOST).is_none());
        call(&mut st, "keyring_file_remove_key", json!({"name": "key0"})).unwrap();
        assert_eq!(
            call(&mut st, "keyring_file_remove_key", json!({"name": "key0"})).unwrap_err().code,
            super::super::error::ENODEV
        );
        assert_eq!(call(&mut st, "keyring_get_keys", json!({})).unwrap().as_array().unwrap().len(), 1);
    }

    #[test]
    fn bad_key_parameters() {
        let mut st = state();
        for p in [
            json!({"nqn": NQN, "host": HOST, "dhchap_key": "DHHC-1:01:AAAA:"}),
            json!({"nqn": NQN, "host": HOST, "dhchap_key": "key0"}),
            json!({"nqn": NQN, "host": HOST, "dhchap_ctrlr_key": CKEY}),
            json!({"nqn": NQN, "host": HOST, "dhchap_key": KEY, "dhchap_digests": ["md5"]}),
            json!({"nqn": NQN, "host": HOST, "dhchap_key": KEY, "dhchap_dhgroups": ["ffdhe1024"]}),
        ] {
            let e = call(&mut st, "nvmf_subsystem_add_host", p.clone()).unwrap_err();
            assert_eq!(e.code, super::super::error::INVALID_PARAMS, "{p}");
            assert!(!e.message.contains("FXxHMF"));
            assert!(st.target.subsystem(NQN).unwrap().hosts().is_empty(), "{p}");
        }
    }
}
