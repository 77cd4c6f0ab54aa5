//! Application state owned by the control thread (the acceptor): the `Target`, the named bdevs
//! and the transports created so far. RPC methods and the JSON config loader mutate it; the
//! reactors never touch it.

use nvmf::bdev::Bdev;
use nvmf::{Target, TransportAddr};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a bdev was created, as far as `save_config` needs to recreate it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BdevKind {
    Malloc,
    Null,
    /// `bdev_aio_create`: the file or block device path.
    Aio { filename: String },
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
        }
    }
}
