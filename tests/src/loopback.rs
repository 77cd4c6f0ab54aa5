//! A target driven through the in-process loopback transport (`nvmf::transport::loopback`) by
//! the test thread: no sockets, no threads, every step a bounded number of polls.

use nvmf::bdev::{Bdev, MallocBdev};
use nvmf::host::pdu::{connect_data, connect_sqe, fabrics_sqe};
use nvmf::spec::fabrics::{PropertyCmd, DISCOVERY_NQN};
use nvmf::spec::sqe::SglDescriptor;
use nvmf::spec::{reg, Cc, Cqe, FabricsType, Sqe};
use nvmf::transport::loopback::{LoopbackCompletion, LoopbackHost, LoopbackTransport};
use nvmf::{NamespaceConfig, PollGroup, SubsystemConfig, Target, TransportAddr};
use std::sync::Arc;
use zerocopy::IntoBytes;

/// The subsystem every bed has.
pub const LOOP_NQN: &str = "nqn.2016-06.io.nvmf-rs:loop";
/// The host NQN the bed's hosts connect with.
pub const LOOP_HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-00000000100f";
/// Block size of the bed's Malloc namespace.
pub const LOOP_BS: usize = 512;

/// A target with a loopback listener `loop0` and subsystem [`LOOP_NQN`] (any host) with one
/// 1 MiB Malloc namespace, and one poll group the test polls.
pub struct LoopBed {
    pub target: Target,
    pub group: PollGroup,
    /// More poll groups ([`LoopBed::with_bdev`]): polled with `group` by every wait.
    pub more_groups: Vec<PollGroup>,
    pub transport: Arc<LoopbackTransport>,
    pub addr: TransportAddr,
}

impl LoopBed {
    pub fn new() -> LoopBed {
        let bdev: Arc<dyn Bdev> = Arc::new(MallocBdev::new("Malloc0", 2048, LOOP_BS as u32).expect("malloc"));
        Self::with_bdev(bdev, 1)
    }

    /// A bed whose namespace 1 is `bdev` (block size [`LOOP_BS`]), with `groups` poll groups.
    pub fn with_bdev(bdev: Arc<dyn Bdev>, groups: usize) -> LoopBed {
        let _ = env_logger::builder().is_test(true).try_init();
        let transport = Arc::new(LoopbackTransport::new());
        let mut target = Target::new();
        target.add_transport(transport.clone());
        let addr = TransportAddr::loopback("loop0");
        target.listen(&addr).expect("listen");
        let mut cfg = SubsystemConfig::new(LOOP_NQN);
        cfg.allow_any_host = true;
        let sub = target.add_subsystem(cfg).expect("subsystem");
        sub.add_listener(addr.clone()).expect("listener");
        sub.add_namespace(NamespaceConfig::new(bdev)).expect("namespace");
        let group = target.create_poll_group();
        let more_groups = (1..groups.max(1)).map(|_| target.create_poll_group()).collect();
        LoopBed { target, group, more_groups, transport, addr }
    }

    /// A new connection, accepted into the (first) poll group.
    pub fn open(&mut self) -> LoopbackHost {
        self.open_on(0)
    }

    /// A new connection, accepted into poll group `g` (0: `group`, then `more_groups`).
    pub fn open_on(&mut self, g: usize) -> LoopbackHost {
        let h = self.transport.connect(&self.addr).expect("connect");
        let group = if g == 0 { &mut self.group } else { &mut self.more_groups[g - 1] };
        assert_eq!(self.target.accept(|q| group.add(q)), 1, "the connection was accepted");
        h
    }

    /// Poll every group once.
    pub fn poll_all(&mut self) {
        self.group.poll();
        for g in self.more_groups.iter_mut() {
            g.poll();
        }
    }

    /// Poll until `h` has a completion (bounded: every step is in-process).
    pub fn wait(&mut self, h: &LoopbackHost) -> LoopbackCompletion {
        for _ in 0..10_000 {
            if let Some(c) = h.take_completion() {
                return c;
            }
            self.poll_all();
        }
        panic!("no completion after 10000 polls");
    }

    /// Poll `n` times; returns the completion that arrived meanwhile, if any.
    pub fn idle(&mut self, h: &LoopbackHost, n: usize) -> Option<LoopbackCompletion> {
        for _ in 0..n {
            self.poll_all();
        }
        h.take_completion()
    }

    pub fn run(&mut self, h: &LoopbackHost, sqe: Sqe, data: &[u8]) -> LoopbackCompletion {
        h.submit(sqe, data).expect("submit");
        self.wait(h)
    }

    /// Fabrics Connect of queue `qid` to `subnqn` (CID 4242h, SQSIZE 31).
    pub fn connect_to(&mut self, h: &LoopbackHost, subnqn: &str, qid: u16, cntlid: u16, kato_ms: u32) -> Cqe {
        let mut sqe = connect_sqe(qid, 31, kato_ms);
        sqe.cid.set(0x4242);
        let data = connect_data(&[0x0f; 16], cntlid, subnqn, LOOP_HOSTNQN);
        self.run(h, sqe, data.as_bytes()).cqe
    }

    /// Connect of queue `qid` of [`LOOP_NQN`].
    pub fn connect(&mut self, h: &LoopbackHost, qid: u16, cntlid: u16) -> Cqe {
        self.connect_to(h, LOOP_NQN, qid, cntlid, if qid == 0 { 30_000 } else { 0 })
    }

    /// CC.EN = 1 (Property Set) on an admin queue.
    pub fn enable(&mut self, h: &LoopbackHost) {
        let mut sqe = fabrics_sqe(FabricsType::PropertySet);
        PropertyCmd { eight_bytes: false, offset: reg::CC, value: Cc::enabled_nvm().0 as u64 }.write(&mut sqe);
        let r = self.run(h, sqe, &[]);
        assert!(r.cqe.status().is_success(), "Property Set CC.EN: {:?}", r.cqe.status());
    }

    /// Admin Connect to [`LOOP_NQN`], then CC.EN = 1; returns the controller ID.
    pub fn connect_admin(&mut self, h: &LoopbackHost) -> u16 {
        let c = self.connect(h, 0, 0xffff);
        assert!(c.status().is_success(), "admin Connect: {:?}", c.status());
        self.enable(h);
        c.dw0.get() as u16
    }

    /// A persistent discovery controller: admin Connect to the discovery NQN with a keep-alive
    /// timeout, then CC.EN = 1.
    pub fn connect_discovery(&mut self, h: &LoopbackHost) {
        let c = self.connect_to(h, DISCOVERY_NQN, 0, 0xffff, 30_000);
        assert!(c.status().is_success(), "discovery Connect: {:?}", c.status());
        self.enable(h);
    }
}

impl Default for LoopBed {
    fn default() -> Self {
        Self::new()
    }
}

/// An NVM command on namespace 1 of `blocks` blocks at `slba`, its data described by a
/// transport SGL of that length.
pub fn loop_io_sqe(opcode: u8, cid: u16, slba: u64, blocks: u32) -> Sqe {
    let mut sqe = Sqe { opcode, flags: 0x40, ..Default::default() };
    sqe.cid.set(cid);
    sqe.nsid.set(1);
    sqe.cdw10.set(slba as u32);
    sqe.cdw11.set((slba >> 32) as u32);
    sqe.cdw12.set(blocks - 1);
    sqe.set_sgl1(SglDescriptor::transport(blocks * LOOP_BS as u32));
    sqe
}

/// An admin command with a controller-to-host buffer of `len` bytes.
pub fn admin_sqe(opcode: u8, cid: u16, len: u32) -> Sqe {
    let mut sqe = Sqe { opcode, flags: 0x40, ..Default::default() };
    sqe.cid.set(cid);
    sqe.set_sgl1(SglDescriptor::transport(len));
    sqe
}
