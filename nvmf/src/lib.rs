//! nvmf: a passive NVMe over Fabrics target library and NVMe/TCP host client.
//!
//! The library spawns no threads, sleeps nowhere and keeps no global state: everything
//! advances when the caller polls (`Target::accept`, `PollGroup::poll`).

pub mod bdev;
pub mod spec;
