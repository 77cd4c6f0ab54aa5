//! The in-process loopback transport: the whole command path (Connect, admin, I/O to a bdev and
//! back, AER parking, sequence and length errors, host close) with no sockets, driven by polling
//! the target from the test thread. The transport is built on the public transport API only.

#![forbid(unsafe_code)]

use nvmf::bdev::MallocBdev;
use nvmf::spec::{GenericStatus, IdentifyController, Sqe, StatusCodeType};
use nvmf::NamespaceConfig;
use nvmf_test_support::pattern;
use nvmf_tests::loopback::*;
use std::sync::Arc;
use zerocopy::FromBytes;

#[test]
fn connect_identify_write_read_over_loopback() {
    let mut b = LoopBed::new();
    let admin = b.open();
    let c = b.connect(&admin, 0, 0xffff);
    assert!(c.status().is_success(), "admin Connect: {:?}", c.status());
    assert_eq!(c.cid.get(), 0x4242, "CID echoed");
    assert_eq!(c.sqid.get(), 0, "SQID of the admin queue");
    let cntlid = c.dw0.get() as u16;
    b.enable(&admin);

    let mut id = admin_sqe(0x06, 7, 4096);
    id.cdw10.set(1);
    let r = b.run(&admin, id, &[]);
    assert!(r.cqe.status().is_success(), "Identify: {:?}", r.cqe.status());
    let ic = IdentifyController::read_from_bytes(&r.data).expect("4096 bytes of Identify Controller");
    assert_eq!(ic.cntlid.get(), cntlid, "Identify answers for this controller");
    assert!(String::from_utf8_lossy(&ic.subnqn).starts_with(LOOP_NQN));

    let io = b.open();
    let c = b.connect(&io, 1, cntlid);
    assert!(c.status().is_success(), "I/O Connect: {:?}", c.status());
    let data = pattern(11, 0, 8 * LOOP_BS);
    let w = b.run(&io, loop_io_sqe(0x01, 1, 16, 8), &data);
    assert!(w.cqe.status().is_success(), "write: {:?}", w.cqe.status());
    assert_eq!(w.cqe.sqid.get(), 1);
    let r = b.run(&io, loop_io_sqe(0x02, 2, 16, 8), &[]);
    assert!(r.cqe.status().is_success(), "read: {:?}", r.cqe.status());
    assert_eq!(r.cqe.sqhd.get(), (w.cqe.sqhd.get() + 1) % 32, "SQHD advances by one per command");
    assert_eq!(r.data, data, "read back what was written");
    assert_eq!(b.group.buffers_in_use(), 0, "every buffer went back to the pool");
}

#[test]
fn commands_before_connect_and_wrong_lengths_get_the_spec_status() {
    let mut b = LoopBed::new();
    let h = b.open();
    let r = b.run(&h, loop_io_sqe(0x02, 9, 0, 1), &[]);
    assert_eq!(r.cqe.status().sct(), StatusCodeType::Generic as u8);
    assert_eq!(r.cqe.status().sc(), GenericStatus::COMMAND_SEQUENCE_ERROR);
    assert!(r.data.is_empty(), "no data for a failed command");

    b.connect_admin(&h);
    // A write whose data does not match its SGL length.
    let r = b.run(&h, loop_io_sqe(0x01, 3, 0, 2), &[0u8; 512]);
    assert_eq!(r.cqe.status().sc(), GenericStatus::DATA_SGL_LENGTH_INVALID);
}

#[test]
fn an_aer_is_parked_until_an_event_then_completes() {
    let mut b = LoopBed::new();
    let h = b.open();
    b.connect_admin(&h);
    // Set Features Asynchronous Event Configuration: Namespace Attribute Notices (bit 8).
    let mut aec = Sqe { opcode: 0x09, ..Default::default() };
    aec.cdw10.set(0x0b);
    aec.cdw11.set(1 << 8);
    assert!(b.run(&h, aec, &[]).cqe.status().is_success());
    let mut aer = Sqe { opcode: 0x0c, ..Default::default() };
    aer.cid.set(0x77);
    h.submit(aer, &[]).expect("submit");
    if let Some(c) = b.idle(&h, 100) {
        panic!("the AER was answered ({:?}), not parked", c.cqe.status());
    }
    let mut ka = Sqe { opcode: 0x18, ..Default::default() };
    ka.cid.set(0x78);
    assert_eq!(b.run(&h, ka, &[]).cqe.cid.get(), 0x78, "a Keep Alive behind the AER answers first");

    // A namespace added: Namespace Attribute Changed (type 2h, info 0, log 04h).
    let sub = b.target.subsystem(LOOP_NQN).expect("subsystem");
    let bdev = Arc::new(MallocBdev::new("Malloc1", 2048, LOOP_BS as u32).expect("malloc"));
    sub.add_namespace(NamespaceConfig::new(bdev)).expect("namespace");
    let c = b.wait(&h);
    assert_eq!(c.cqe.cid.get(), 0x77, "the parked AER completed");
    assert_eq!(c.cqe.dw0.get() & 0x7, 2, "Notice event type");
    assert_eq!((c.cqe.dw0.get() >> 16) & 0xff, 0x04, "Changed Namespace List log");
}

#[test]
fn host_close_tears_the_controller_down() {
    let mut b = LoopBed::new();
    let h = b.open();
    b.connect_admin(&h);
    assert_eq!(b.group.num_connections(), 1);
    h.close();
    b.idle(&h, 10);
    assert_eq!(b.group.num_connections(), 0, "the closed connection was dropped");
    assert!(h.is_closed());
    assert!(h.submit(Sqe::default(), &[]).is_err(), "nothing more can be submitted");
}

#[test]
fn oversized_transfers_and_a_host_that_never_reads_completions_are_bounded() {
    let mut b = LoopBed::new();
    let h = b.open();
    // Before Connect and after: a 1 GiB read is refused without a buffer being allocated.
    let mut big = loop_io_sqe(0x02, 1, 0, 1);
    big.set_sgl1(nvmf::spec::sqe::SglDescriptor::transport(1 << 30));
    assert_eq!(b.run(&h, big, &[]).cqe.status().sc(), GenericStatus::COMMAND_SEQUENCE_ERROR);
    let cntlid = b.connect_admin(&h);
    let io = b.open();
    assert!(b.connect(&io, 1, cntlid).status().is_success());
    assert_eq!(b.run(&io, big, &[]).cqe.status().sc(), GenericStatus::DATA_SGL_LENGTH_INVALID);
    assert_eq!(b.group.buffers_in_use(), 0);
    assert!(b.group.buffer_bytes_idle() < 1 << 20, "no 1 GiB buffer was made for it");
    // Submissions are bounded; completions not taken stop the host's commands.
    let mut n = 0;
    while io.submit(loop_io_sqe(0x00, 100, 0, 1), &[]).is_ok() {
        n += 1;
        assert!(n <= 128, "submit never refused");
    }
    assert_eq!(n, 128, "at most 128 submissions wait");
    b.idle(&io, 200);
    // Meanwhile another host (its own controller) on the same poll group is served.
    let admin2 = b.open();
    let cntlid2 = b.connect_admin(&admin2);
    let io2 = b.open();
    assert!(b.connect(&io2, 1, cntlid2).status().is_success());
    let data = pattern(21, 4, LOOP_BS);
    assert!(b.run(&io2, loop_io_sqe(0x01, 1, 4, 1), &data).cqe.status().is_success());
    assert_eq!(b.run(&io2, loop_io_sqe(0x02, 2, 4, 1), &[]).data, data, "the well-behaved host's data");
    let mut done = 0;
    while io.take_completion().is_some() {
        done += 1;
    }
    assert!((1..=128).contains(&done), "{done} completions");
}
