//! The in-process loopback transport: the whole command path (Connect, admin, I/O to a bdev and
//! back, AER parking, queue-depth and sequence errors) with no sockets, driven by polling the
//! target from the test thread. The transport is built on the public transport API only.

#![forbid(unsafe_code)]

use nvmf::bdev::MallocBdev;
use nvmf::host::pdu::{connect_data, connect_sqe, fabrics_sqe};
use nvmf::spec::fabrics::PropertyCmd;
use nvmf::spec::sqe::SglDescriptor;
use nvmf::spec::{reg, Cc, FabricsType};
use nvmf::spec::{Cqe, GenericStatus, IdentifyController, Sqe, StatusCodeType};
use nvmf::transport::loopback::{LoopbackCompletion, LoopbackHost, LoopbackTransport};
use nvmf::{NamespaceConfig, PollGroup, SubsystemConfig, Target, TransportAddr};
use nvmf_test_support::pattern;
use std::sync::Arc;
use zerocopy::{FromBytes, IntoBytes};

const NQN: &str = "nqn.2016-06.io.nvmf-rs:loop";
const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-00000000100f";
const BS: usize = 512;

struct Bed {
    target: Target,
    group: PollGroup,
    transport: Arc<LoopbackTransport>,
    addr: TransportAddr,
}

fn bed() -> Bed {
    let transport = Arc::new(LoopbackTransport::new());
    let mut target = Target::new();
    target.add_transport(transport.clone());
    let addr = TransportAddr::loopback("loop0");
    target.listen(&addr).expect("listen");
    let mut cfg = SubsystemConfig::new(NQN);
    cfg.allow_any_host = true;
    let sub = target.add_subsystem(cfg).expect("subsystem");
    sub.add_listener(addr.clone()).expect("listener");
    let bdev = Arc::new(MallocBdev::new("Malloc0", 2048, BS as u32).expect("malloc"));
    sub.add_namespace(NamespaceConfig::new(bdev)).expect("namespace");
    let group = target.create_poll_group();
    Bed { target, group, transport, addr }
}

impl Bed {
    fn open(&mut self) -> LoopbackHost {
        let h = self.transport.connect(&self.addr).expect("connect");
        let group = &mut self.group;
        assert_eq!(self.target.accept(|q| group.add(q)), 1, "the connection was accepted");
        h
    }

    /// Poll until `h` has a completion (every step is in-process: a bounded number of polls).
    fn wait(&mut self, h: &LoopbackHost) -> LoopbackCompletion {
        for _ in 0..10_000 {
            if let Some(c) = h.take_completion() {
                return c;
            }
            self.group.poll();
        }
        panic!("no completion after 10000 polls");
    }

    fn run(&mut self, h: &LoopbackHost, sqe: Sqe, data: &[u8]) -> LoopbackCompletion {
        h.submit(sqe, data).expect("submit");
        self.wait(h)
    }

    fn connect(&mut self, h: &LoopbackHost, qid: u16, cntlid: u16) -> Cqe {
        let mut sqe = connect_sqe(qid, 31, if qid == 0 { 30_000 } else { 0 });
        sqe.cid.set(0x4242);
        let data = connect_data(&[0x0f; 16], cntlid, NQN, HOSTNQN);
        self.run(h, sqe, data.as_bytes()).cqe
    }

    /// Admin Connect, then CC.EN = 1 (Property Set); returns the controller ID.
    fn connect_admin(&mut self, h: &LoopbackHost) -> u16 {
        let c = self.connect(h, 0, 0xffff);
        assert!(c.status().is_success(), "admin Connect: {:?}", c.status());
        let mut sqe = fabrics_sqe(FabricsType::PropertySet);
        PropertyCmd { eight_bytes: false, offset: reg::CC, value: Cc::enabled_nvm().0 as u64 }.write(&mut sqe);
        let r = self.run(h, sqe, &[]);
        assert!(r.cqe.status().is_success(), "Property Set CC.EN: {:?}", r.cqe.status());
        c.dw0.get() as u16
    }
}

fn io_sqe(opcode: u8, cid: u16, slba: u64, blocks: u32) -> Sqe {
    let mut sqe = Sqe { opcode, flags: 0x40, ..Default::default() };
    sqe.cid.set(cid);
    sqe.nsid.set(1);
    sqe.cdw10.set(slba as u32);
    sqe.cdw11.set((slba >> 32) as u32);
    sqe.cdw12.set(blocks - 1);
    sqe.set_sgl1(SglDescriptor::transport(blocks * BS as u32));
    sqe
}

#[test]
fn connect_identify_write_read_over_loopback() {
    let mut b = bed();
    let admin = b.open();
    let c = b.connect(&admin, 0, 0xffff);
    assert!(c.status().is_success(), "admin Connect: {:?}", c.status());
    assert_eq!(c.cid.get(), 0x4242, "CID echoed");
    assert_eq!(c.sqid.get(), 0, "SQID of the admin queue");
    let cntlid = c.dw0.get() as u16;
    let mut sqe = fabrics_sqe(FabricsType::PropertySet);
    PropertyCmd { eight_bytes: false, offset: reg::CC, value: Cc::enabled_nvm().0 as u64 }.write(&mut sqe);
    assert!(b.run(&admin, sqe, &[]).cqe.status().is_success(), "CC.EN = 1");

    let mut id = Sqe { opcode: 0x06, flags: 0x40, ..Default::default() };
    id.cid.set(7);
    id.cdw10.set(1);
    id.set_sgl1(SglDescriptor::transport(4096));
    let r = b.run(&admin, id, &[]);
    assert!(r.cqe.status().is_success(), "Identify: {:?}", r.cqe.status());
    let ic = IdentifyController::read_from_bytes(&r.data).expect("4096 bytes of Identify Controller");
    assert_eq!(ic.cntlid.get(), cntlid, "Identify answers for this controller");
    assert!(String::from_utf8_lossy(&ic.subnqn).starts_with(NQN));

    let io = b.open();
    let c = b.connect(&io, 1, cntlid);
    assert!(c.status().is_success(), "I/O Connect: {:?}", c.status());
    let data = pattern(11, 0, 8 * BS);
    let w = b.run(&io, io_sqe(0x01, 1, 16, 8), &data);
    assert!(w.cqe.status().is_success(), "write: {:?}", w.cqe.status());
    assert_eq!(w.cqe.sqid.get(), 1);
    let r = b.run(&io, io_sqe(0x02, 2, 16, 8), &[]);
    assert_eq!(r.cqe.sqhd.get(), (w.cqe.sqhd.get() + 1) % 32, "SQHD advances by one per command");
    assert!(r.cqe.status().is_success(), "read: {:?}", r.cqe.status());
    assert_eq!(r.data, data, "read back what was written");
    assert_eq!(b.group.buffers_in_use(), 0, "every buffer went back to the pool");
}

#[test]
fn commands_before_connect_and_wrong_lengths_get_the_spec_status() {
    let mut b = bed();
    let h = b.open();
    let r = b.run(&h, io_sqe(0x02, 9, 0, 1), &[]);
    assert_eq!(r.cqe.status().sct(), StatusCodeType::Generic as u8);
    assert_eq!(r.cqe.status().sc(), GenericStatus::COMMAND_SEQUENCE_ERROR);
    assert!(r.data.is_empty(), "no data for a failed command");

    b.connect_admin(&h);
    // A write whose data does not match its SGL length.
    let r = b.run(&h, io_sqe(0x01, 3, 0, 2), &[0u8; 512]);
    assert_eq!(r.cqe.status().sc(), GenericStatus::DATA_SGL_LENGTH_INVALID);
}

#[test]
fn an_aer_is_parked_until_an_event_then_completes() {
    let mut b = bed();
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
    for _ in 0..100 {
        b.group.poll();
    }
    if let Some(c) = h.take_completion() {
        panic!("the AER was answered ({:?}), not parked", c.cqe.status());
    }
    let mut ka = Sqe { opcode: 0x18, ..Default::default() };
    ka.cid.set(0x78);
    assert_eq!(b.run(&h, ka, &[]).cqe.cid.get(), 0x78, "a Keep Alive behind the AER answers first");

    // A namespace added: Namespace Attribute Changed (type 2h, info 0, log 04h).
    let sub = b.target.subsystem(NQN).expect("subsystem");
    let bdev = Arc::new(MallocBdev::new("Malloc1", 2048, BS as u32).expect("malloc"));
    sub.add_namespace(NamespaceConfig::new(bdev)).expect("namespace");
    let c = b.wait(&h);
    assert_eq!(c.cqe.cid.get(), 0x77, "the parked AER completed");
    assert_eq!(c.cqe.dw0.get() & 0x7, 2, "Notice event type");
    assert_eq!((c.cqe.dw0.get() >> 16) & 0xff, 0x04, "Changed Namespace List log");
}

#[test]
fn host_close_tears_the_controller_down() {
    let mut b = bed();
    let h = b.open();
    assert!(b.connect(&h, 0, 0xffff).status().is_success());
    assert_eq!(b.group.num_connections(), 1);
    h.close();
    for _ in 0..10 {
        b.group.poll();
    }
    assert_eq!(b.group.num_connections(), 0, "the closed connection was dropped");
    assert!(h.is_closed());
    assert!(h.submit(Sqe::default(), &[]).is_err(), "nothing more can be submitted");
}
