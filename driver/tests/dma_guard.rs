//! The emulated controller's DMA guard against the driver: every command the driver builds stays
//! inside the memory it lent, and a device that goes further (a command claiming more data than
//! its buffer, through PRP2 = 0, a stale PRP list entry or a data page taken for a list) is
//! refused and recorded.

#![forbid(unsafe_code)]

mod common;
use common::*;
use nvme_driver::emulator::guard::Access;
use nvme_driver::emulator::{EmulatorConfig, VENDOR_LOAD, VENDOR_STORE};
use nvme_driver::spec::{GenericStatus, NvmOpcode, Sqe, Status};
use nvme_driver::Error;

fn vendor(opcode: u8, claimed: usize) -> Sqe {
    let mut sqe = Sqe { opcode, ..Default::default() };
    sqe.nsid.set(1);
    sqe.cdw10.set(claimed as u32 / 4);
    sqe
}

fn data_transfer_error(r: nvme_driver::Result<nvme_driver::spec::Cqe>) {
    match r {
        Err(Error::Nvme { status, .. }) => {
            assert_eq!(status, Status::generic(GenericStatus::DATA_TRANSFER_ERROR).dnr())
        }
        other => panic!("expected Data Transfer Error, got {other:?}"),
    }
}

#[test]
fn every_command_the_driver_builds_stays_inside_its_buffers() {
    let (emu, ctrl) = setup(EmulatorConfig::default());
    let mut qp = ctrl.alloc_io_qpair_with(4).unwrap();
    let g = emu.dma_guard().clone();
    let buf = ctrl.dma().alloc(1 << 20, 4096).unwrap();
    buf.write(0, &pattern(1, 0, 1 << 20));
    // One page, two pages, lists of 15 and 255 entries, then shorter ones on the same slots.
    for blocks in [1u32, 16, 128, 2048, 24, 1, 256] {
        write_sync(&mut qp, 0, blocks, &buf).unwrap();
        read_sync(&mut qp, 0, blocks, &buf).unwrap();
    }
    // Unaligned start with a list.
    let mut sqe = Sqe { opcode: NvmOpcode::Read as u8, ..Default::default() };
    sqe.nsid.set(1);
    sqe.cdw12.set(15);
    qp.submit_raw(sqe, Some((&buf, 512, 8192)), 1).unwrap();
    wait_one(&mut qp).1.unwrap();
    qp.deallocate(1, &[(0, 8), (100, 8)], 2).unwrap();
    wait_one(&mut qp).1.unwrap();
    qp.flush(1, 3).unwrap();
    wait_one(&mut qp).1.unwrap();
    // Vendor commands whose claimed length is their buffer.
    qp.submit_raw(vendor(VENDOR_STORE, 64 << 10), Some((&buf, 0, 64 << 10)), 4).unwrap();
    wait_one(&mut qp).1.unwrap();
    qp.submit_raw(vendor(VENDOR_LOAD, 4096), Some((&buf, 0, 4096)), 5).unwrap();
    wait_one(&mut qp).1.unwrap();
    assert!(g.is_armed(), "the driver registers what it lends");
    assert!(g.checked() > 20, "the accesses were checked: {}", g.checked());
    assert_eq!(g.violation_count(), 0, "{:?}", g.violations());
}

#[test]
fn more_data_than_the_buffer_through_prp2_zero_is_refused() {
    let (emu, ctrl) = setup(EmulatorConfig::default());
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let buf = ctrl.dma().alloc(4096, 4096).unwrap();
    qp.submit_raw(vendor(VENDOR_STORE, 4096), Some((&buf, 0, 4096)), 1).unwrap();
    wait_one(&mut qp).1.unwrap();
    // 4 KiB lent (PRP2 = 0), 16 KiB claimed: the device would write to IOVA 0 and on.
    qp.submit_raw(vendor(VENDOR_LOAD, 16 << 10), Some((&buf, 0, 4096)), 2).unwrap();
    data_transfer_error(wait_one(&mut qp).1);
    let v = emu.dma_guard().violations();
    assert_eq!(emu.dma_guard().violation_count(), 1, "{v:?}");
    assert_eq!((v[0].access, v[0].iova, v[0].opcode), (Access::PrpList, 0, VENDOR_LOAD), "PRP2 = 0 taken for a list");
}

#[test]
fn a_data_page_taken_for_a_prp_list_is_refused() {
    let (emu, ctrl) = setup(EmulatorConfig::default());
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let victim = ctrl.dma().alloc(4096, 4096).unwrap();
    victim.fill(0, 4096, 0xaa);
    // 8 KiB lent: PRP2 is the buffer's second page, whose contents the host chose: a "list"
    // pointing at another command's buffer.
    let buf = ctrl.dma().alloc(8192, 4096).unwrap();
    buf.write_obj(4096, &victim.iova());
    qp.submit_raw(vendor(VENDOR_LOAD, 12 << 10), Some((&buf, 0, 8192)), 1).unwrap();
    data_transfer_error(wait_one(&mut qp).1);
    let v = emu.dma_guard().violations();
    assert_eq!((v[0].access, v[0].iova), (Access::PrpList, buf.iova() + 4096), "{v:?}");
    assert!(victim.as_slice().iter().all(|&b| b == 0xaa), "the other buffer was not written");
}

#[test]
fn a_shorter_command_does_not_reach_an_earlier_commands_list_entries() {
    let (emu, ctrl) = setup(EmulatorConfig::default());
    // Depth 1: every command uses the same slot and list page.
    let mut qp = ctrl.alloc_io_qpair_with(2).unwrap();
    let old = ctrl.dma().alloc(64 << 10, 4096).unwrap();
    qp.submit_raw(vendor(VENDOR_STORE, 64 << 10), Some((&old, 0, 64 << 10)), 1).unwrap();
    wait_one(&mut qp).1.unwrap();
    old.fill(0, 64 << 10, 0xaa);
    // 12 KiB lent (a list of 2 entries), 64 KiB claimed: entries 3..15 once pointed into `old`.
    let buf = ctrl.dma().alloc(12 << 10, 4096).unwrap();
    qp.submit_raw(vendor(VENDOR_LOAD, 64 << 10), Some((&buf, 0, 12 << 10)), 2).unwrap();
    data_transfer_error(wait_one(&mut qp).1);
    let v = emu.dma_guard().violations();
    assert_eq!(v[0].access, Access::PrpList, "{v:?}");
    assert!(old.as_slice().iter().all(|&b| b == 0xaa), "the earlier command's buffer was not written");
}
