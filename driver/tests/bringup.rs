//! Bring-up, identify, queue allocation, shutdown and reset against the emulated controller.

#![forbid(unsafe_code)]

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

#[test]
fn admin_passthrough_and_queue_creation_checks() {
    use nvme_driver::spec::{fid, AdminOpcode, CommandSpecificStatus, NumberOfQueues, Sqe};
    let (_emu, ctrl) = setup(EmulatorConfig { max_io_queues: 4, max_queue_entries: 64, ..Default::default() });
    let mut get = Sqe { opcode: AdminOpcode::GetFeatures as u8, ..Default::default() };
    get.cdw10.set(fid::NUMBER_OF_QUEUES as u32);
    let cqe = ctrl.admin_command(get, None).unwrap();
    assert_eq!(NumberOfQueues::from_dw(cqe.dw0.get()), NumberOfQueues { sq: 4, cq: 4 });

    let q = ctrl.dma().alloc(64 * 64, 4096).unwrap();
    let create_sq = |qid: u32, size: u32, cqid: u32| {
        let mut s = Sqe { opcode: AdminOpcode::CreateIoSq as u8, ..Default::default() };
        s.set_prps(q.iova(), 0);
        s.cdw10.set((size - 1) << 16 | qid);
        s.cdw11.set(cqid << 16 | 1);
        ctrl.admin_command(s, None).unwrap_err().status().unwrap().sc()
    };
    assert_eq!(create_sq(1, 16, 3), CommandSpecificStatus::COMPLETION_QUEUE_INVALID);
    assert_eq!(create_sq(9, 16, 1), CommandSpecificStatus::INVALID_QUEUE_IDENTIFIER);
    let mut cq = Sqe { opcode: AdminOpcode::CreateIoCq as u8, ..Default::default() };
    cq.set_prps(q.iova(), 0);
    cq.cdw10.set(127 << 16 | 1);
    cq.cdw11.set(1);
    assert_eq!(
        ctrl.admin_command(cq, None).unwrap_err().status().unwrap().sc(),
        CommandSpecificStatus::INVALID_QUEUE_SIZE
    );
    // Number of Queues cannot change once I/O queues exist.
    let _qp = ctrl.alloc_io_qpair().unwrap();
    let mut set = Sqe { opcode: AdminOpcode::SetFeatures as u8, ..Default::default() };
    set.cdw10.set(fid::NUMBER_OF_QUEUES as u32);
    assert!(ctrl.admin_command(set, None).is_err());
}
