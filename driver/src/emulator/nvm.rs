//! NVM command set I/O commands of the emulated controller, against its RAM disks.

use super::prp;
use super::regs::{Outcome, State};
use crate::spec::opcode::io as opcode;
use crate::spec::{GenericStatus, MediaStatus, NvmOpcode, Sqe, Status};

/// Injected media error: the next `remaining` commands touching `lba` fail.
pub(crate) struct MediaFault {
    pub nsid: u32,
    pub lba: u64,
    pub remaining: u32,
}

fn fail(s: Status) -> Outcome {
    Some((s.dnr(), 0))
}

fn status(r: Result<(), Status>) -> Outcome {
    match r {
        Ok(()) => Some((Status::SUCCESS, 0)),
        Err(s) => Some((s, 0)),
    }
}

pub(crate) fn execute(st: &mut State, sqid: u16, sqe: &Sqe) -> Outcome {
    if st.hold_next > 0 {
        st.hold_next -= 1;
        st.held.push((sqid, sqe.cid.get()));
        return None;
    }
    let nsid = sqe.nsid.get();
    let Some(di) = nsid.checked_sub(1).map(|i| i as usize).filter(|&i| i < st.disks.len()) else {
        return fail(Status::generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT));
    };
    if sqe.psdt() != 0 {
        // SGLs are not supported (Identify SGLS = 0).
        return fail(Status::generic(GenericStatus::INVALID_FIELD));
    }
    let dma = prp::Dma::io(&st.mem, &st.guard, sqid, sqe);
    match sqe.opcode {
        super::VENDOR_STORE => return vendor_store(st, &dma, sqe),
        super::VENDOR_LOAD => return vendor_load(st, &dma, sqe),
        // No data: only the LBA range is checked (Write Uncorrectable marks nothing here).
        opcode::VERIFY | opcode::WRITE_UNCORRECTABLE => {
            return match st.disks[di].in_range(sqe.slba(), sqe.nlb() as u64) {
                true => Some((Status::SUCCESS, 0)),
                false => fail(Status::generic(GenericStatus::LBA_OUT_OF_RANGE)),
            };
        }
        _ => {}
    }
    let Some(op) = NvmOpcode::from_u8(sqe.opcode) else { return fail(Status::generic(GenericStatus::INVALID_OPCODE)) };
    if matches!(op, NvmOpcode::Write | NvmOpcode::WriteZeroes) && sqe.fua() {
        st.stats.fua_writes += 1;
    }
    match op {
        NvmOpcode::Flush => Some((Status::SUCCESS, 0)),
        NvmOpcode::Read | NvmOpcode::Write | NvmOpcode::Compare => read_write(st, &dma, di, op, sqe),
        NvmOpcode::WriteZeroes => {
            let (slba, nlb) = (sqe.slba(), sqe.nlb() as u64);
            if !st.disks[di].in_range(slba, nlb) {
                return fail(Status::generic(GenericStatus::LBA_OUT_OF_RANGE));
            }
            st.disks[di].blocks_mut(slba, nlb).fill(0);
            Some((Status::SUCCESS, 0))
        }
        NvmOpcode::DatasetManagement => dsm(st, &dma, di, sqe),
    }
}

fn read_write(st: &mut State, dma: &prp::Dma, di: usize, op: NvmOpcode, sqe: &Sqe) -> Outcome {
    let (slba, nlb) = (sqe.slba(), sqe.nlb() as u64);
    let disk = &st.disks[di];
    if !disk.in_range(slba, nlb) {
        return fail(Status::generic(GenericStatus::LBA_OUT_OF_RANGE));
    }
    let len = nlb as usize * disk.block_size as usize;
    if st.cfg.mdts != 0 && len > 4096usize << st.cfg.mdts {
        return fail(Status::generic(GenericStatus::INVALID_FIELD));
    }
    let nsid = sqe.nsid.get();
    if let Some(f) =
        st.faults.iter_mut().find(|f| f.nsid == nsid && f.remaining > 0 && (slba..slba + nlb).contains(&f.lba))
    {
        f.remaining -= 1;
        st.faults.retain(|f| f.remaining > 0);
        st.smart.media_errors += 1;
        let sc = if op == NvmOpcode::Write { MediaStatus::WRITE_FAULT } else { MediaStatus::UNRECOVERED_READ_ERROR };
        return fail(Status::media(sc));
    }
    let (p1, p2) = (sqe.prp1(), sqe.prp2());
    match op {
        NvmOpcode::Read => {
            st.smart.reads += 1;
            st.smart.bytes_read += len as u128;
            status(prp::to_host(dma, p1, p2, st.disks[di].blocks(slba, nlb)))
        }
        NvmOpcode::Write => {
            st.smart.writes += 1;
            st.smart.bytes_written += len as u128;
            status(prp::from_host(dma, p1, p2, st.disks[di].blocks_mut(slba, nlb)))
        }
        _ => {
            let mut host = vec![0u8; len];
            if let Err(s) = prp::from_host(dma, p1, p2, &mut host) {
                return Some((s, 0));
            }
            if host != st.disks[di].blocks(slba, nlb) {
                return fail(Status::media(MediaStatus::COMPARE_FAILURE));
            }
            Some((Status::SUCCESS, 0))
        }
    }
}

fn dsm(st: &mut State, dma: &prp::Dma, di: usize, sqe: &Sqe) -> Outcome {
    let nr = (sqe.cdw10.get() & 0xff) as usize + 1;
    let mut raw = vec![0u8; nr * 16];
    if let Err(s) = prp::from_host(dma, sqe.prp1(), sqe.prp2(), &mut raw) {
        return Some((s, 0));
    }
    if sqe.cdw11.get() & (1 << 2) == 0 {
        // Only deallocate has an effect; attribute hints are accepted and ignored.
        return Some((Status::SUCCESS, 0));
    }
    let ranges: Vec<(u64, u64)> = raw
        .chunks_exact(16)
        .map(|r| {
            let nlb = u32::from_le_bytes(r[4..8].try_into().unwrap_or([0; 4])) as u64;
            (u64::from_le_bytes(r[8..16].try_into().unwrap_or([0; 8])), nlb)
        })
        .collect();
    if ranges.iter().any(|&(slba, nlb)| !st.disks[di].in_range(slba, nlb)) {
        return fail(Status::generic(GenericStatus::LBA_OUT_OF_RANGE));
    }
    for (slba, nlb) in ranges {
        st.disks[di].blocks_mut(slba, nlb).fill(0);
    }
    Some((Status::SUCCESS, 0))
}

/// Bytes a vendor-specific command moves: CDW10 = number of dwords, at most MDTS.
fn vendor_len(st: &State, sqe: &Sqe) -> Result<usize, Outcome> {
    let len = sqe.cdw10.get() as usize * 4;
    if len > super::VENDOR_MAX_BYTES || (st.cfg.mdts != 0 && len > 4096usize << st.cfg.mdts) {
        return Err(fail(Status::generic(GenericStatus::INVALID_FIELD)));
    }
    Ok(len)
}

/// `VENDOR_STORE` (host to controller): keep the data, answer DW0 = `VENDOR_STORE_DW0`.
fn vendor_store(st: &mut State, dma: &prp::Dma, sqe: &Sqe) -> Outcome {
    let len = match vendor_len(st, sqe) {
        Ok(l) => l,
        Err(o) => return o,
    };
    let mut data = vec![0u8; len];
    if len > 0 {
        if let Err(s) = prp::from_host(dma, sqe.prp1(), sqe.prp2(), &mut data) {
            return Some((s, 0));
        }
    }
    st.vendor_data = data;
    Some((Status::SUCCESS, super::VENDOR_STORE_DW0))
}

/// `VENDOR_LOAD` (controller to host): return the stored data (zero-padded to the length
/// asked), DW0 = the number of bytes stored.
fn vendor_load(st: &mut State, dma: &prp::Dma, sqe: &Sqe) -> Outcome {
    let len = match vendor_len(st, sqe) {
        Ok(l) => l,
        Err(o) => return o,
    };
    let mut data = st.vendor_data.clone();
    data.resize(len, 0);
    if len > 0 {
        if let Err(s) = prp::to_host(dma, sqe.prp1(), sqe.prp2(), &data) {
            return Some((s, 0));
        }
    }
    Some((Status::SUCCESS, st.vendor_data.len() as u32))
}
