//! Application state owned by the control thread (the acceptor): the `Target`, the named bdevs
//! and the transports created so far. RPC methods and the JSON config loader mutate it; the
//! reactors never touch it.

use nvmf::bdev::Bdev;
use nvmf::{Target, TransportAddr};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a bdev was created, as far as `save_config` needs to recreate it.
#[derive(Clone, Debug)]
pub enum BdevKind {
    Malloc,
    Null,
    /// `bdev_aio_create`: the file or block device path, and the bdev (for its sync points).
    Aio {
        filename: String,
        file: Arc<nvmf::bdev::FileBdev>,
    },
    /// A namespace of the NVMe controller attached as `ctrlr` (`bdev_nvme_attach_controller`).
    Nvme {
        ctrlr: String,
    },
}

/// How `bdev_nvme_attach_controller` sized an emulated controller (the test/demo transport
/// address `traddr: "emulated"`), so `save_config` can recreate it. Its data lives in RAM and
/// is lost at exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmulatedShape {
    pub namespaces: u32,
    pub block_size: u32,
    pub num_blocks: u64,
}

/// A controller attached with `bdev_nvme_attach_controller` (direct mode).
pub struct NvmeCtrlr {
    pub ctrl: Arc<nvme_driver::Controller>,
    /// As given: "PCIe".
    pub trtype: String,
    /// The BDF, or "emulated".
    pub traddr: String,
    /// The bdevs made from its namespaces (`<name>n<nsid>`).
    pub bdevs: Vec<String>,
    /// The same bdevs, for what only an NVMe bdev reports (bytes copied instead of lent).
    pub nvme_bdevs: Vec<Arc<nvmf::bdev::NvmeBdev>>,
    /// `Some` for the emulated controller.
    pub emulated: Option<EmulatedShape>,
}

/// What the RPC layer remembers about a bdev beyond the `Bdev` trait.
#[derive(Clone, Debug)]
pub struct BdevMeta {
    pub kind: BdevKind,
    /// UUID as SPDK prints it (lowercase, dashed).
    pub uuid: String,
}

/// Transport options as `nvmf_create_transport` applied them (SPDK's names), for
/// `nvmf_get_transports` and `save_config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportInfo {
    pub trtype: String,
    pub max_queue_depth: u32,
    pub max_io_qpairs_per_ctrlr: u32,
    pub in_capsule_data_size: u32,
    pub max_io_size: u32,
    pub io_unit_size: u32,
    pub max_aq_depth: u32,
    pub c2h_success: bool,
    /// Per-host limits and timeouts (TCP; docs/reliability.md "Per-host resources").
    pub limits: TransportLimits,
}

/// The per-host limits of `nvmf_create_transport` (names of the `TcpTransportOpts` fields).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransportLimits {
    pub max_data_per_qpair: u64,
    pub max_data_per_ctrlr: u64,
    pub h2c_data_timeout_ms: u64,
    pub icreq_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub send_backlog_size: usize,
    pub send_timeout_ms: u64,
    pub max_connections_per_listener: usize,
    pub max_connections: usize,
    pub buf_pool_size: usize,
    pub buf_pool_watermark: usize,
}

impl TransportLimits {
    pub fn of(o: &nvmf::TcpTransportOpts) -> Self {
        TransportLimits {
            max_data_per_qpair: o.max_data_per_qpair,
            max_data_per_ctrlr: o.max_data_per_ctrlr,
            h2c_data_timeout_ms: o.h2c_data_timeout_ms,
            icreq_timeout_ms: o.icreq_timeout_ms,
            connect_timeout_ms: o.connect_timeout_ms,
            send_backlog_size: o.send_backlog_size,
            send_timeout_ms: o.send_timeout_ms,
            max_connections_per_listener: o.max_connections_per_listener,
            max_connections: o.max_connections,
            buf_pool_size: o.buf_pool_size,
            buf_pool_watermark: o.buf_pool_watermark,
        }
    }
    pub fn apply(&self, o: &mut nvmf::TcpTransportOpts) {
        o.max_data_per_qpair = self.max_data_per_qpair;
        o.max_data_per_ctrlr = self.max_data_per_ctrlr;
        o.h2c_data_timeout_ms = self.h2c_data_timeout_ms;
        o.icreq_timeout_ms = self.icreq_timeout_ms;
        o.connect_timeout_ms = self.connect_timeout_ms;
        o.send_backlog_size = self.send_backlog_size;
        o.send_timeout_ms = self.send_timeout_ms;
        o.max_connections_per_listener = self.max_connections_per_listener;
        o.max_connections = self.max_connections;
        o.buf_pool_size = self.buf_pool_size;
        o.buf_pool_watermark = self.buf_pool_watermark;
    }
}

pub struct AppState {
    pub target: Target,
    /// Bdevs by name, as `bdev_get_bdevs` lists them.
    pub bdevs: BTreeMap<String, Arc<dyn Bdev>>,
    /// Per-reactor statistics readable from the control thread (filled by reactor.rs).
    pub reactors: Vec<crate::reactor::ReactorInfo>,
    /// Creation details of bdevs made through RPC / config (bdevs inserted directly into
    /// `bdevs` without an entry here are reported by their product name).
    pub bdev_meta: BTreeMap<String, BdevMeta>,
    /// Transports created through `nvmf_create_transport`, by type name ("TCP").
    pub transports: BTreeMap<String, TransportInfo>,
    /// Target listeners that `nvmf_subsystem_add_listener` started: stopped again when no
    /// subsystem uses them any more. Listeners started elsewhere are left alone.
    pub rpc_listeners: Vec<TransportAddr>,
    /// NVMe controllers attached for direct mode, by controller name ("Nvme0").
    pub nvme_ctrlrs: BTreeMap<String, NvmeCtrlr>,
    /// DH-HMAC-CHAP key files of hosts added with keys, by (subsystem NQN, host NQN): host key
    /// file, controller key file (`None` for inline secrets, which `save_config` never writes).
    pub dhchap_key_files: BTreeMap<(String, String), [Option<String>; 2]>,
    /// `keyring_file_add_key` keys: name -> key file path.
    pub keyring: BTreeMap<String, String>,
    /// `framework_start_init` has run (always true unless started with --wait-for-rpc): the
    /// reactors run and run-time methods are served.
    pub init_done: bool,
    /// A config file is being applied: start-up and run-time methods are both allowed.
    pub loading_config: bool,
    /// Set by `spdk_kill_instance` SIGINT/SIGTERM: the control loop shuts down cleanly.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    /// Run-time log level and flags (`log_*` methods).
    pub log: Arc<crate::logging::LogControl>,
}

impl AppState {
    pub fn new(target: Target) -> Self {
        AppState {
            target,
            bdevs: BTreeMap::new(),
            reactors: Vec::new(),
            bdev_meta: BTreeMap::new(),
            transports: BTreeMap::new(),
            rpc_listeners: Vec::new(),
            nvme_ctrlrs: BTreeMap::new(),
            dhchap_key_files: BTreeMap::new(),
            keyring: BTreeMap::new(),
            init_done: true,
            loading_config: false,
            stop: Arc::default(),
            log: Arc::new(crate::logging::LogControl::new(log::max_level())),
        }
    }

    /// Shut every attached NVMe controller down (CC.SHN, waiting for SHST complete). Call after
    /// the reactors stopped (their queue pairs are gone). Dropping the last reference to a
    /// controller does the same; this makes it explicit and logged.
    pub fn shutdown_controllers(&mut self) {
        for (name, c) in &self.nvme_ctrlrs {
            match c.ctrl.shutdown() {
                Ok(()) => log::info!("NVMe controller {name} ({}) shut down", c.traddr),
                Err(e) => log::warn!("NVMe controller {name} ({}): shutdown: {e}", c.traddr),
            }
        }
    }
}
