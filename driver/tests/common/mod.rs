//! Helpers shared by the emulator tests.
#![allow(dead_code)]

use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
use nvme_driver::spec::Cqe;
use nvme_driver::{Controller, ControllerOptions, DmaBacking, DmaRegion, IoQpair, Result};
use std::sync::Arc;

pub fn opts() -> ControllerOptions {
    ControllerOptions { dma_backing: DmaBacking::Anonymous, ..Default::default() }
}

pub fn setup(cfg: EmulatorConfig) -> (Arc<EmulatedController>, Controller) {
    let emu = EmulatedController::new(cfg);
    let ctrl = Controller::new_emulated(&emu, opts()).expect("bring-up");
    (emu, ctrl)
}

pub use nvmf_test_support::pattern;

/// Poll until one completion arrives; returns its token and result.
pub fn wait_one(qp: &mut IoQpair) -> (u64, Result<Cqe>) {
    for _ in 0..1_000_000 {
        let mut got = None;
        qp.poll(1, |t, r| got = Some((t, r))).expect("poll");
        if let Some(g) = got {
            return g;
        }
    }
    panic!("no completion");
}

/// Submit-ring-wait helpers for one command at a time.
pub fn write_sync(qp: &mut IoQpair, lba: u64, blocks: u32, buf: &DmaRegion) -> Result<Cqe> {
    qp.write(1, lba, blocks, buf, 7)?;
    wait_one(qp).1
}
pub fn read_sync(qp: &mut IoQpair, lba: u64, blocks: u32, buf: &DmaRegion) -> Result<Cqe> {
    qp.read(1, lba, blocks, buf, 8)?;
    wait_one(qp).1
}
