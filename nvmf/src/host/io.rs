//! An I/O queue: [`IoQueue`], on its own TCP connection.

use super::admin::connect_queue;
use super::error::{HostError, Result};
use super::pdu;
use super::queue::{check, Queue};
use super::HostConfig;
use crate::spec::sqe::{FUSE_FIRST, FUSE_SECOND};
use crate::spec::{Cqe, FabricsType, NvmOpcode, Sqe};
use std::net::SocketAddr;

/// Most ranges one Dataset Management command carries.
pub const MAX_DSM_RANGES: usize = 256;

/// One I/O queue pair. Blocking calls (`read`, `write`, ...) and the pipelined API
/// (`submit_*` + [`IoQueue::poll`]) can be mixed; at most `queue_size - 1` commands are in flight.
pub struct IoQueue {
    q: Queue,
}

fn nvm_sqe(opcode: NvmOpcode, nsid: u32) -> Sqe {
    let mut sqe = Sqe { opcode: opcode as u8, ..Default::default() };
    sqe.nsid.set(nsid);
    sqe
}

/// Read/Write/Compare/Write Zeroes SQE; `nlb` is a 1-based block count (1..=65536).
fn rw_sqe(opcode: NvmOpcode, nsid: u32, slba: u64, nlb: u32) -> Result<Sqe> {
    if nlb == 0 || nlb > 0x1_0000 {
        return Err(HostError::InvalidArgument(format!("NLB {nlb} outside 1..=65536")));
    }
    let mut sqe = nvm_sqe(opcode, nsid);
    sqe.set_slba(slba);
    sqe.cdw12.set(nlb - 1);
    Ok(sqe)
}

impl IoQueue {
    /// Connect I/O queue `qid` of controller `cntlid` (normally through
    /// [`super::Controller::connect_io_queue`]). Writes of up to `in_capsule` bytes go in-capsule.
    pub fn connect(
        addr: SocketAddr,
        subnqn: &str,
        cntlid: u16,
        qid: u16,
        cfg: &HostConfig,
        in_capsule: usize,
    ) -> Result<IoQueue> {
        if qid == 0 || cfg.queue_size < 2 {
            return Err(HostError::InvalidArgument(format!("QID {qid}, queue size {}", cfg.queue_size)));
        }
        let mut q = Queue::open(addr, qid, cntlid, cfg.queue_size as usize - 1, in_capsule, cfg)?;
        connect_queue(&mut q, qid, cfg.queue_size - 1, 0, cntlid, subnqn, cfg)?;
        log::debug!("I/O queue {qid} of controller {cntlid} connected");
        Ok(IoQueue { q })
    }

    pub fn qid(&self) -> u16 {
        self.q.qid()
    }
    /// Most commands in flight at once (`queue_size - 1`).
    pub fn depth(&self) -> usize {
        self.q.depth()
    }
    /// Commands submitted and not yet handed back by [`IoQueue::poll`].
    pub fn in_flight(&self) -> usize {
        self.q.in_flight()
    }
    /// Largest write sent as in-capsule data.
    pub fn in_capsule_size(&self) -> usize {
        self.q.icd_max()
    }
    /// CPDA and MAXH2CDATA from the ICResp.
    pub fn icresp_params(&self) -> (u8, u32) {
        self.q.icresp_params()
    }

    /// Read `nlb` blocks from `slba` into `buf` (the SGL length is `buf.len()`).
    pub fn read(&mut self, nsid: u32, slba: u64, nlb: u32, buf: &mut [u8]) -> Result<()> {
        let sqe = rw_sqe(NvmOpcode::Read, nsid, slba, nlb)?;
        self.q.execute_ok(sqe, None, Some(buf)).map(|_| ())
    }

    /// Write `data` (`nlb` blocks) at `slba`.
    pub fn write(&mut self, nsid: u32, slba: u64, nlb: u32, data: &[u8]) -> Result<()> {
        let sqe = rw_sqe(NvmOpcode::Write, nsid, slba, nlb)?;
        self.q.execute_ok(sqe, Some(data), None).map(|_| ())
    }

    /// Compare `data` with `nlb` blocks at `slba`; a mismatch is `HostError::Status` with
    /// Compare Failure (SCT 2h, SC 85h).
    pub fn compare(&mut self, nsid: u32, slba: u64, nlb: u32, data: &[u8]) -> Result<()> {
        let sqe = rw_sqe(NvmOpcode::Compare, nsid, slba, nlb)?;
        self.q.execute_ok(sqe, Some(data), None).map(|_| ())
    }

    /// Fused Compare and Write (NVM Command Set 1.0 sections 3.2.2 and 3.2.6): write `write`
    /// over `nlb` blocks at `slba` only if they hold `compare`, atomically with respect to other
    /// writes. Both completions come back whatever their status, (Compare's, Write's): on a
    /// miscompare the first has Compare Failure (SCT 2h, SC 85h) and the second Command Aborted
    /// due to Failed Fused Command (SC 09h). The two capsules leave in one send.
    pub fn compare_and_write(
        &mut self,
        nsid: u32,
        slba: u64,
        nlb: u32,
        compare: &[u8],
        write: &[u8],
    ) -> Result<(Cqe, Cqe)> {
        let mut first = rw_sqe(NvmOpcode::Compare, nsid, slba, nlb)?;
        first.flags |= FUSE_FIRST;
        let mut second = rw_sqe(NvmOpcode::Write, nsid, slba, nlb)?;
        second.flags |= FUSE_SECOND;
        let a = self.q.submit(first, Some(compare), 0)?;
        let b = match self.q.submit(second, Some(write), 0) {
            Ok(b) => b,
            Err(e) => {
                // The first goes out alone and is aborted (Missing Fused Command) by the target.
                let _ = self.q.wait(a);
                self.q.release(a);
                return Err(e);
            }
        };
        let ra = self.q.wait(a);
        self.q.release(a);
        let rb = self.q.wait(b);
        self.q.release(b);
        Ok((ra?, rb?))
    }

    pub fn flush(&mut self, nsid: u32) -> Result<()> {
        self.q.execute_ok(nvm_sqe(NvmOpcode::Flush, nsid), None, None).map(|_| ())
    }

    pub fn write_zeroes(&mut self, nsid: u32, slba: u64, nlb: u32) -> Result<()> {
        let sqe = rw_sqe(NvmOpcode::WriteZeroes, nsid, slba, nlb)?;
        self.q.execute_ok(sqe, None, None).map(|_| ())
    }

    /// Dataset Management with the Deallocate attribute over `(slba, nlb)` ranges (1..=256,
    /// `nlb` a block count).
    pub fn deallocate(&mut self, nsid: u32, ranges: &[(u64, u32)]) -> Result<()> {
        if ranges.is_empty() || ranges.len() > MAX_DSM_RANGES {
            return Err(HostError::InvalidArgument(format!("{} DSM ranges", ranges.len())));
        }
        let mut data = Vec::with_capacity(ranges.len() * 16);
        for &(slba, nlb) in ranges {
            data.extend_from_slice(&0u32.to_le_bytes()); // context attributes
            data.extend_from_slice(&nlb.to_le_bytes());
            data.extend_from_slice(&slba.to_le_bytes());
        }
        let mut sqe = nvm_sqe(NvmOpcode::DatasetManagement, nsid);
        sqe.cdw10.set(ranges.len() as u32 - 1);
        sqe.cdw11.set(1 << 2); // AD
        self.q.execute_ok(sqe, Some(&data), None).map(|_| ())
    }

    /// Any I/O command; returns the CQE whatever its status. CID, PSDT and SGL1 are filled in.
    pub fn raw(&mut self, sqe: Sqe, data_out: Option<&[u8]>, data_in: Option<&mut [u8]>) -> Result<Cqe> {
        self.q.execute(sqe, data_out, data_in)
    }

    /// Pipelined: queue any command (sent at the next [`IoQueue::poll`] or once 64 KiB are
    /// queued). Returns its CID. `HostError::QueueFull` when `depth()` commands are in flight.
    pub fn submit(&mut self, sqe: Sqe, data_out: Option<&[u8]>, in_len: usize) -> Result<u16> {
        self.q.submit(sqe, data_out, in_len)
    }

    /// Pipelined Read of `nlb` blocks, `len` bytes; the data comes to `poll`'s callback.
    pub fn submit_read(&mut self, nsid: u32, slba: u64, nlb: u32, len: usize) -> Result<u16> {
        let sqe = rw_sqe(NvmOpcode::Read, nsid, slba, nlb)?;
        self.q.submit(sqe, None, len)
    }

    /// Pipelined Write (the data is copied into the command's reused buffer, or in-capsule).
    pub fn submit_write(&mut self, nsid: u32, slba: u64, nlb: u32, data: &[u8]) -> Result<u16> {
        let sqe = rw_sqe(NvmOpcode::Write, nsid, slba, nlb)?;
        self.q.submit(sqe, Some(data), 0)
    }

    /// Send what is queued, then hand every completion that has arrived to `on_complete(cid,
    /// cqe, read data)`; when none has and commands are in flight, block (up to the I/O timeout)
    /// for at least one. Returns how many completions were handed over. A failed command is
    /// reported through its CQE, not as an error; errors mean the connection is gone.
    pub fn poll(&mut self, on_complete: impl FnMut(u16, Cqe, Option<&[u8]>)) -> Result<usize> {
        self.q.poll(on_complete)
    }

    /// Fabrics Disconnect for this queue, then close the connection. A target that closes the
    /// connection instead of answering is fine too, and so is one that does not know the
    /// command (Disconnect is new in NVMe 2.0; Linux nvmet answers Invalid Opcode): closing the
    /// connection is how such targets delete an I/O queue.
    pub fn disconnect(mut self) -> Result<()> {
        let sqe = pdu::fabrics_sqe(FabricsType::Disconnect);
        let r = match self.q.execute(sqe, None, None) {
            Ok(cqe)
                if !cqe.is_success()
                    && cqe.status().sct() == 0
                    && matches!(
                        cqe.status().sc(),
                        crate::spec::GenericStatus::INVALID_OPCODE | crate::spec::GenericStatus::INVALID_FIELD
                    ) =>
            {
                log::debug!(
                    "queue {}: target does not support Fabrics Disconnect ({:?}); closing",
                    self.q.qid(),
                    cqe.status()
                );
                Ok(())
            }
            Ok(cqe) => check(cqe).map(|_| ()),
            Err(HostError::Closed) => Ok(()),
            Err(e) => Err(e),
        };
        self.q.close();
        r
    }
}
