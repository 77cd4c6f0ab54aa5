//! Application state owned by the control thread (the acceptor): the `Target`, the named bdevs
//! and the transports created so far. RPC methods and the JSON config loader mutate it; the
//! reactors never touch it.

use nvmf::bdev::Bdev;
use nvmf::Target;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct AppState {
    pub target: Target,
    /// Bdevs by name, as `bdev_get_bdevs` lists them.
    pub bdevs: BTreeMap<String, Arc<dyn Bdev>>,
    /// Per-reactor statistics readable from the control thread (filled by reactor.rs).
    pub reactors: Vec<crate::reactor::ReactorInfo>,
}

impl AppState {
    pub fn new(target: Target) -> Self {
        AppState { target, bdevs: BTreeMap::new(), reactors: Vec::new() }
    }
}
