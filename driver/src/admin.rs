//! The admin queue pair and builders for the admin commands the driver issues. Admin commands
//! run one at a time under the controller's mutex: this is the control path.

use crate::error::{Error, Result};
use crate::mmio::RegisterSpace;
use crate::rings::{CompQueue, SubQueue};
use crate::spec::{cns, reg, AdminOpcode, Cqe, Csts, Sqe};
use std::time::{Duration, Instant};

/// The admin SQ/CQ with a scratch page for identify/log data.
pub(crate) struct AdminQueue {
    pub(crate) sq: SubQueue,
    pub(crate) cq: CompQueue,
    next_cid: u16,
}

impl AdminQueue {
    pub(crate) fn new(sq: SubQueue, cq: CompQueue) -> Self {
        AdminQueue { sq, cq, next_cid: 0 }
    }

    pub(crate) fn reset(&mut self) {
        self.sq.reset();
        self.cq.reset();
    }

    /// Submit `sqe`, ring, and wait for its completion.
    pub(crate) fn execute(&mut self, regs: &dyn RegisterSpace, mut sqe: Sqe, timeout: Duration) -> Result<Cqe> {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1);
        sqe.cid.set(cid);
        if self.sq.is_full() {
            return Err(Error::QueueFull);
        }
        self.sq.push(&sqe);
        self.sq.ring(regs);
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            while let Some(cqe) = self.cq.peek() {
                self.cq.advance();
                self.sq.set_head(cqe.sqhd.get());
                self.cq.ring_head(regs);
                if cqe.cid.get() == cid {
                    return if cqe.is_success() { Ok(cqe) } else { Err(Error::Nvme { status: cqe.status(), cqe }) };
                }
                log::warn!("admin completion for unexpected cid {} (waiting for {cid})", cqe.cid.get());
            }
            if Csts(regs.read32(reg::CSTS as usize)).cfs() {
                return Err(Error::ControllerFatal);
            }
            if start.elapsed() > timeout {
                log::error!("admin command opcode {:#x} cid {cid} timed out", sqe.opcode);
                return Err(Error::Timeout { cid });
            }
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }
}

fn admin(op: AdminOpcode) -> Sqe {
    Sqe { opcode: op as u8, ..Default::default() }
}

pub(crate) fn identify(cns_value: u8, nsid: u32, prp1: u64) -> Sqe {
    let mut s = admin(AdminOpcode::Identify);
    s.nsid.set(nsid);
    s.cdw10.set(crate::spec::identify::identify_cdw10(cns_value, 0));
    s.set_prps(prp1, 0);
    s
}

pub(crate) fn identify_controller(prp1: u64) -> Sqe {
    identify(cns::CONTROLLER, 0, prp1)
}

pub(crate) fn create_io_cq(qid: u16, entries: u16, iova: u64) -> Sqe {
    let mut s = admin(AdminOpcode::CreateIoCq);
    s.set_prps(iova, 0);
    s.cdw10.set((entries as u32 - 1) << 16 | qid as u32);
    // Physically contiguous, interrupts disabled: the queue pair is polled.
    s.cdw11.set(1);
    s
}

pub(crate) fn create_io_sq(qid: u16, entries: u16, iova: u64, cqid: u16) -> Sqe {
    let mut s = admin(AdminOpcode::CreateIoSq);
    s.set_prps(iova, 0);
    s.cdw10.set((entries as u32 - 1) << 16 | qid as u32);
    s.cdw11.set((cqid as u32) << 16 | 1);
    s
}

pub(crate) fn delete_io_sq(qid: u16) -> Sqe {
    let mut s = admin(AdminOpcode::DeleteIoSq);
    s.cdw10.set(qid as u32);
    s
}

pub(crate) fn delete_io_cq(qid: u16) -> Sqe {
    let mut s = admin(AdminOpcode::DeleteIoCq);
    s.cdw10.set(qid as u32);
    s
}

pub(crate) fn set_features(fid: u8, cdw11: u32) -> Sqe {
    let mut s = admin(AdminOpcode::SetFeatures);
    s.cdw10.set(fid as u32);
    s.cdw11.set(cdw11);
    s
}

pub(crate) fn abort(sqid: u16, cid: u16) -> Sqe {
    let mut s = admin(AdminOpcode::Abort);
    s.cdw10.set((cid as u32) << 16 | sqid as u32);
    s
}

pub(crate) fn get_log_page(lid: u8, len: u32, prp1: u64) -> Sqe {
    let mut s = admin(AdminOpcode::GetLogPage);
    s.nsid.set(0xffff_ffff);
    crate::spec::GetLogPageArgs::new(lid, len, 0).apply_to(&mut s);
    s.set_prps(prp1, 0);
    s
}
