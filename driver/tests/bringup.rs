//! Bring-up, identify, queue allocation, shutdown and reset against the emulated controller.

mod common;
use common::*;
use nvme_driver::emulator::EmulatorConfig;
use nvme_driver::mmio::RegisterSpace;
use nvme_driver::spec::{reg, shst, Csts};
use nvme_driver::{Controller, Error};

#[test]
fn bring_up_identifies_controller_and_namespaces() {
    let cfg = EmulatorConfig { namespaces: vec![(512, 4096), (4096, 1024)], ..Default::default() };
    let (emu, ctrl) = setup(cfg);
    let id = ctrl.identify();
    assert_eq!(id.model(), "nvmf-rs emulated NVMe");
    assert_eq!(id.serial(), "EMU0001");
    assert_eq!(id.nn.get(), 2);
    let ns = ctrl.namespaces();
    assert_eq!(ns.len(), 2);
    assert_eq!((ns[0].nsid, ns[0].block_size, ns[0].blocks), (1, 512, 4096));
    assert_eq!((ns[1].nsid, ns[1].block_size, ns[1].blocks), (2, 4096, 1024));
    assert_eq!(ctrl.max_io_qpairs(), 16);
    // MDTS 9 with 4 KiB pages: 2 MiB, capped by one PRP list page.
    assert!(ctrl.max_transfer_bytes() >= 1 << 20);
    let csts = Csts(emu.read32(reg::CSTS as usize));
    assert!(csts.rdy() && !csts.cfs());
}

#[test]
fn qpairs_are_limited_by_granted_queues_and_qids_are_reused() {
    let cfg = EmulatorConfig { max_io_queues: 2, ..Default::default() };
    let (_emu, ctrl) = setup(cfg);
    let a = ctrl.alloc_io_qpair().unwrap();
    let b = ctrl.alloc_io_qpair().unwrap();
    assert_ne!(a.qid(), b.qid());
    assert!(matches!(ctrl.alloc_io_qpair(), Err(Error::NoQueuesLeft { granted: 2 })));
    let freed = a.qid();
    drop(a);
    let c = ctrl.alloc_io_qpair().unwrap();
    assert_eq!(c.qid(), freed);
}

#[test]
fn oversized_queue_request_is_capped_by_mqes() {
    let cfg = EmulatorConfig { max_queue_entries: 64, ..Default::default() };
    let (_emu, ctrl) = setup(cfg);
    let qp = ctrl.alloc_io_qpair_with(4096).unwrap();
    assert_eq!(qp.depth(), 63);
}

#[test]
fn shutdown_sets_shst_complete_and_invalidates_qpairs() {
    let (emu, ctrl) = setup(EmulatorConfig::default());
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    ctrl.shutdown().unwrap();
    let csts = Csts(emu.read32(reg::CSTS as usize));
    assert_eq!(csts.shst(), shst::COMPLETE);
    assert!(matches!(qp.poll(8, |_, _| {}), Err(Error::QpairInvalidated)));
    assert!(matches!(qp.flush(1, 0), Err(Error::QpairInvalidated)));
}

#[test]
fn drop_shuts_the_controller_down() {
    let (emu, ctrl) = setup(EmulatorConfig::default());
    drop(ctrl);
    assert_eq!(Csts(emu.read32(reg::CSTS as usize)).shst(), shst::COMPLETE);
}

#[test]
fn fatal_status_then_reset_gives_working_queues() {
    let (emu, ctrl) = setup(EmulatorConfig::default());
    let buf = ctrl.dma().alloc(4096, 4096).unwrap();
    buf.write(0, &pattern(1, 10, 4096));
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    write_sync(&mut qp, 10, 8, &buf).unwrap();

    emu.set_fatal();
    assert!(ctrl.is_fatal());
    qp.read(1, 10, 8, &buf, 1).unwrap();
    // The controller no longer completes anything: polling notices CSTS.CFS.
    let mut err = None;
    for _ in 0..100_000 {
        match qp.poll(8, |_, _| panic!("no completion expected")) {
            Ok(_) => continue,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert!(matches!(err, Some(Error::ControllerFatal)), "{err:?}");

    ctrl.reset().unwrap();
    assert!(!ctrl.is_fatal());
    assert!(matches!(qp.poll(8, |_, _| {}), Err(Error::QpairInvalidated)));
    drop(qp);
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let out = ctrl.dma().alloc(4096, 4096).unwrap();
    read_sync(&mut qp, 10, 8, &out).unwrap();
    assert_eq!(out.as_slice(), &pattern(1, 10, 4096)[..]);
}

#[test]
fn controller_is_sync_and_qpair_is_send() {
    fn sync<T: Sync + Send>() {}
    fn send<T: Send>() {}
    sync::<Controller>();
    send::<nvme_driver::IoQpair>();
}
