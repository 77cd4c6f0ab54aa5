//! Controller registers and doorbells: the CC/CSTS state machine and command dispatch.

use super::disk::RamDisk;
use super::guard::DmaGuard;
use super::nvm::MediaFault;
use super::queues::{EmuCq, EmuSq};
use super::{EmulatorConfig, EmulatorStats};
use crate::dma::IdentityMapper;
use crate::spec::{reg, shn, shst, Aqa, Cap, Cc, Cqe, Csts, ErrorLogEntry, Status, Vs};
use std::collections::HashMap;
use std::sync::Arc;

/// What a command handler decided: complete now with (status, DW0), or hold the command.
pub(crate) type Outcome = Option<(Status, u32)>;

pub(crate) struct State {
    pub cfg: EmulatorConfig,
    pub mem: Arc<IdentityMapper>,
    pub guard: Arc<DmaGuard>,
    pub cap: Cap,
    pub cc: Cc,
    pub csts: Csts,
    pub aqa: Aqa,
    pub asq: u64,
    pub acq: u64,
    /// Indexed by queue id; 0 is the admin queue.
    pub sqs: Vec<Option<EmuSq>>,
    pub cqs: Vec<Option<EmuCq>>,
    pub features: HashMap<u8, u32>,
    pub disks: Vec<RamDisk>,
    pub faults: Vec<MediaFault>,
    /// Commands held without completion: (sqid, cid).
    pub held: Vec<(u16, u16)>,
    pub hold_next: u32,
    /// What the last vendor-specific store command (`VENDOR_STORE`) wrote.
    pub vendor_data: Vec<u8>,
    /// Error Information log, newest first.
    pub errors: Vec<ErrorLogEntry>,
    pub error_count: u64,
    pub smart: SmartCounters,
    pub stats: EmulatorStats,
}

#[derive(Default)]
pub(crate) struct SmartCounters {
    pub bytes_read: u128,
    pub bytes_written: u128,
    pub reads: u128,
    pub writes: u128,
    pub media_errors: u128,
}

impl State {
    pub fn new(cfg: EmulatorConfig, mem: Arc<IdentityMapper>, guard: Arc<DmaGuard>) -> Self {
        let cap = Cap::new(cfg.max_queue_entries.max(2) - 1, 2).with_dstrd(cfg.dstrd);
        let queues = cfg.max_io_queues as usize + 1;
        let disks = cfg.namespaces.iter().map(|&(bs, n)| RamDisk::new(bs, n)).collect();
        State {
            cap,
            cc: Cc(0),
            csts: Csts(0),
            aqa: Aqa(0),
            asq: 0,
            acq: 0,
            sqs: (0..queues).map(|_| None).collect(),
            cqs: (0..queues).map(|_| None).collect(),
            features: HashMap::new(),
            disks,
            faults: Vec::new(),
            held: Vec::new(),
            hold_next: 0,
            vendor_data: Vec::new(),
            errors: Vec::new(),
            error_count: 0,
            smart: SmartCounters::default(),
            stats: EmulatorStats::default(),
            cfg,
            mem,
            guard,
        }
    }

    pub fn read32(&mut self, off: usize) -> u32 {
        match off as u32 {
            reg::CAP => self.cap.0 as u32,
            0x04 => (self.cap.0 >> 32) as u32,
            reg::VS => Vs::V1_4.0,
            reg::CC => self.cc.0,
            reg::CSTS => {
                let v = self.csts;
                // Shutdown takes one status read to complete, so hosts must really poll SHST.
                if v.shst() == shst::OCCURRING {
                    self.csts.set_shst(shst::COMPLETE);
                }
                v.0
            }
            reg::AQA => self.aqa.0,
            reg::ASQ => self.asq as u32,
            0x2c => (self.asq >> 32) as u32,
            reg::ACQ => self.acq as u32,
            0x34 => (self.acq >> 32) as u32,
            _ => 0,
        }
    }

    pub fn write32(&mut self, off: usize, v: u32) {
        match off as u32 {
            reg::CC => self.write_cc(Cc(v)),
            reg::AQA => self.aqa = Aqa(v),
            reg::ASQ => self.asq = (self.asq & !0xffff_ffff) | v as u64,
            0x2c => self.asq = (self.asq & 0xffff_ffff) | (v as u64) << 32,
            reg::ACQ => self.acq = (self.acq & !0xffff_ffff) | v as u64,
            0x34 => self.acq = (self.acq & 0xffff_ffff) | (v as u64) << 32,
            o if o >= reg::DOORBELL_BASE => self.doorbell(off - reg::DOORBELL_BASE as usize, v),
            _ => {}
        }
    }

    fn write_cc(&mut self, new: Cc) {
        let old = self.cc;
        self.cc = new;
        if old.en() && !new.en() {
            self.reset();
            return;
        }
        if !old.en() && new.en() {
            self.enable();
        }
        if new.en() && old.shn() == shn::NONE && new.shn() != shn::NONE {
            self.csts.set_shst(shst::OCCURRING);
        }
    }

    /// CC.EN 1 -> 0: a controller reset. Queues are gone; CFS clears.
    fn reset(&mut self) {
        self.sqs.iter_mut().for_each(|q| *q = None);
        self.cqs.iter_mut().for_each(|q| *q = None);
        self.held.clear();
        self.csts = Csts(0);
    }

    fn enable(&mut self) {
        if self.csts.cfs() {
            return;
        }
        let (sqn, cqn) = (self.aqa.asqs() as u32 + 1, self.aqa.acqs() as u32 + 1);
        let ok = sqn >= 2
            && cqn >= 2
            && self.asq.is_multiple_of(4096)
            && self.acq.is_multiple_of(4096)
            && self.asq != 0
            && self.acq != 0
            && self.cc.mps() == 0
            && self.cc.css() == 0;
        if !ok {
            log::warn!("emulator: invalid admin queue or CC setup, raising CFS");
            self.csts.set_cfs(true);
            return;
        }
        self.sqs[0] = Some(EmuSq { base: self.asq, entries: sqn as u16, head: 0, tail: 0, cqid: 0 });
        self.cqs[0] = Some(EmuCq::new(self.acq, cqn as u16));
        self.csts = Csts(0).with_rdy(true);
    }

    fn doorbell(&mut self, rel: usize, v: u32) {
        if !self.csts.rdy() || self.csts.cfs() {
            return;
        }
        let stride = 4usize << self.cfg.dstrd;
        if !rel.is_multiple_of(stride) {
            return;
        }
        let (qid, is_cq) = ((rel / stride / 2) as u16, rel / stride % 2 == 1);
        let mem = self.mem.clone();
        if is_cq {
            self.stats.cq_doorbells += 1;
            if let Some(Some(cq)) = self.cqs.get_mut(qid as usize) {
                cq.set_head(&mem, v as u16);
            }
            return;
        }
        self.stats.sq_doorbells += 1;
        match self.sqs.get_mut(qid as usize) {
            Some(Some(sq)) if v < sq.entries as u32 => sq.tail = v as u16,
            _ => {
                log::warn!("emulator: bad SQ {qid} tail doorbell {v}");
                return;
            }
        }
        self.process(qid);
    }

    /// Execute everything between the SQ's head and tail.
    fn process(&mut self, qid: u16) {
        let mem = self.mem.clone();
        while !self.csts.cfs() {
            let Some(Some(sq)) = self.sqs.get_mut(qid as usize) else { break };
            let Some(sqe) = sq.fetch(&mem) else { break };
            let outcome = if qid == 0 {
                self.stats.admin_commands += 1;
                super::admin::execute(self, &sqe)
            } else {
                self.stats.io_commands += 1;
                super::nvm::execute(self, qid, &sqe)
            };
            if let Some((status, dw0)) = outcome {
                self.complete(qid, sqe.cid.get(), status, dw0, sqe.opcode);
            }
        }
    }

    /// Post a completion for command `cid` of SQ `sqid` on that SQ's CQ.
    pub fn complete(&mut self, sqid: u16, cid: u16, status: Status, dw0: u32, opcode: u8) {
        let Some(Some(sq)) = self.sqs.get(sqid as usize) else { return };
        let (sqhd, cqid) = (sq.head, sq.cqid);
        if !status.is_success() {
            self.log_error(sqid, cid, status, opcode);
        }
        let mut cqe = Cqe::new(cid, status);
        cqe.dw0.set(dw0);
        cqe.sqhd.set(sqhd);
        cqe.sqid.set(sqid);
        let mem = self.mem.clone();
        if let Some(Some(cq)) = self.cqs.get_mut(cqid as usize) {
            cq.post(&mem, cqe);
        }
    }

    fn log_error(&mut self, sqid: u16, cid: u16, status: Status, opcode: u8) {
        self.error_count += 1;
        let mut e = ErrorLogEntry::default();
        e.error_count.set(self.error_count);
        e.sqid.set(sqid);
        e.cid.set(cid);
        e.status.set(status.to_raw() << 1);
        e.param_error_location.set(0xffff);
        e.opcode = opcode;
        self.errors.insert(0, e);
        self.errors.truncate(64);
    }
}
