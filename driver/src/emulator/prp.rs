//! Walking PRP1/PRP2 and PRP lists on the controller side, and moving data through them, every
//! access of an I/O command checked by the DMA guard.

use super::guard::{Access, DmaGuard};
use crate::dma::{IdentityMapper, PAGE_SIZE};
use crate::spec::{GenericStatus, Sqe, Status};
use std::sync::Arc;

fn err(sc: u8) -> Status {
    Status::generic(sc).dnr()
}

/// The device's view of host memory for one command: the emulator's IOMMU, and for I/O commands
/// the DMA guard.
pub(crate) struct Dma {
    mem: Arc<IdentityMapper>,
    /// (guard, SQ id, CID, opcode) of an I/O command; `None` for admin commands (unchecked).
    guard: Option<(Arc<DmaGuard>, u16, u16, u8)>,
}

impl Dma {
    pub fn admin(mem: &Arc<IdentityMapper>) -> Self {
        Dma { mem: mem.clone(), guard: None }
    }

    pub fn io(mem: &Arc<IdentityMapper>, guard: &Arc<DmaGuard>, sqid: u16, sqe: &Sqe) -> Self {
        Dma { mem: mem.clone(), guard: Some((guard.clone(), sqid, sqe.cid.get(), sqe.opcode)) }
    }

    fn allow(&self, access: Access, iova: u64, len: usize) -> Result<(), Status> {
        match &self.guard {
            Some((g, sqid, cid, op)) if !g.allow(*sqid, *cid, *op, access, iova, len) => {
                Err(err(GenericStatus::DATA_TRANSFER_ERROR))
            }
            _ => Ok(()),
        }
    }

    fn read(&self, access: Access, iova: u64, buf: &mut [u8]) -> Result<(), Status> {
        self.allow(access, iova, buf.len())?;
        self.mem.read(iova, buf).map_err(|_| err(GenericStatus::DATA_TRANSFER_ERROR))
    }

    fn write(&self, iova: u64, data: &[u8]) -> Result<(), Status> {
        self.allow(Access::DataWrite, iova, data.len())?;
        self.mem.write(iova, data).map_err(|_| err(GenericStatus::DATA_TRANSFER_ERROR))
    }
}

/// The (device address, length) pieces of a `len` byte transfer described by PRP1/PRP2. Reads
/// only the list entries the transfer needs.
pub(crate) fn segments(dma: &Dma, prp1: u64, prp2: u64, len: usize) -> Result<Vec<(u64, usize)>, Status> {
    let page = PAGE_SIZE as u64;
    if !prp1.is_multiple_of(4) {
        return Err(err(GenericStatus::INVALID_PRP_OFFSET));
    }
    let first = len.min((page - prp1 % page) as usize);
    let mut segs = vec![(prp1, first)];
    let mut rest = len - first;
    if rest == 0 {
        return Ok(segs);
    }
    if rest <= PAGE_SIZE {
        if !prp2.is_multiple_of(page) {
            return Err(err(GenericStatus::INVALID_PRP_OFFSET));
        }
        segs.push((prp2, rest));
        return Ok(segs);
    }
    let mut list = prp2;
    // Each list page but the last yields at least one data page: this bounds a chain that
    // loops back on itself.
    for _ in 0..=len / PAGE_SIZE + 1 {
        if !list.is_multiple_of(8) {
            return Err(err(GenericStatus::INVALID_PRP_OFFSET));
        }
        let in_page = ((page - list % page) / 8) as usize;
        let needed = rest.div_ceil(PAGE_SIZE);
        // More pages than entries left in this list page: its last entry points at the next one.
        let chain = needed > in_page;
        let entries = if chain { in_page } else { needed };
        let mut raw = vec![0u8; entries * 8];
        dma.read(Access::PrpList, list, &mut raw)?;
        for (i, e) in raw.chunks_exact(8).enumerate() {
            let addr = u64::from_le_bytes(e.try_into().unwrap_or([0; 8]));
            if chain && i == entries - 1 {
                list = addr;
                break;
            }
            if addr % page != 0 {
                return Err(err(GenericStatus::INVALID_PRP_OFFSET));
            }
            let n = rest.min(PAGE_SIZE);
            segs.push((addr, n));
            rest -= n;
        }
        if rest == 0 {
            return Ok(segs);
        }
    }
    Err(err(GenericStatus::INVALID_PRP_OFFSET))
}

/// Copy `data` to the host buffer described by the PRPs.
pub(crate) fn to_host(dma: &Dma, prp1: u64, prp2: u64, data: &[u8]) -> Result<(), Status> {
    let mut off = 0;
    for (addr, n) in segments(dma, prp1, prp2, data.len())? {
        dma.write(addr, &data[off..off + n])?;
        off += n;
    }
    Ok(())
}

/// Fill `buf` from the host buffer described by the PRPs.
pub(crate) fn from_host(dma: &Dma, prp1: u64, prp2: u64, buf: &mut [u8]) -> Result<(), Status> {
    let mut off = 0;
    for (addr, n) in segments(dma, prp1, prp2, buf.len())? {
        dma.read(Access::DataRead, addr, &mut buf[off..off + n])?;
        off += n;
    }
    Ok(())
}
