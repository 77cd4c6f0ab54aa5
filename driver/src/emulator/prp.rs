//! Walking PRP1/PRP2 and PRP lists on the controller side, and moving data through them.

use crate::dma::{IdentityMapper, PAGE_SIZE};
use crate::spec::{GenericStatus, Status};

fn err(sc: u8) -> Status {
    Status::generic(sc).dnr()
}

/// The (device address, length) pieces of a `len` byte transfer described by PRP1/PRP2.
pub(crate) fn segments(mem: &IdentityMapper, prp1: u64, prp2: u64, len: usize) -> Result<Vec<(u64, usize)>, Status> {
    let page = PAGE_SIZE as u64;
    if prp1 % 4 != 0 {
        return Err(err(GenericStatus::INVALID_PRP_OFFSET));
    }
    let first = len.min((page - prp1 % page) as usize);
    let mut segs = vec![(prp1, first)];
    let mut rest = len - first;
    if rest == 0 {
        return Ok(segs);
    }
    if rest <= PAGE_SIZE {
        if prp2 % page != 0 {
            return Err(err(GenericStatus::INVALID_PRP_OFFSET));
        }
        segs.push((prp2, rest));
        return Ok(segs);
    }
    let mut list = prp2;
    if list % 8 != 0 {
        return Err(err(GenericStatus::INVALID_PRP_OFFSET));
    }
    while rest > 0 {
        let in_page = ((page - list % page) / 8) as usize;
        let mut raw = vec![0u8; in_page * 8];
        mem.read(list, &mut raw).map_err(|_| err(GenericStatus::DATA_TRANSFER_ERROR))?;
        let mut next_list = None;
        for (i, e) in raw.chunks_exact(8).enumerate() {
            if rest == 0 {
                break;
            }
            let addr = u64::from_le_bytes(e.try_into().unwrap_or([0; 8]));
            if i == in_page - 1 && rest > PAGE_SIZE {
                // Last entry of a full list page points at the next list page.
                next_list = Some(addr);
                break;
            }
            if addr % page != 0 {
                return Err(err(GenericStatus::INVALID_PRP_OFFSET));
            }
            let n = rest.min(PAGE_SIZE);
            segs.push((addr, n));
            rest -= n;
        }
        match next_list {
            Some(a) if a % 8 == 0 => list = a,
            Some(_) => return Err(err(GenericStatus::INVALID_PRP_OFFSET)),
            None => break,
        }
    }
    Ok(segs)
}

/// Copy `data` to the host buffer described by the PRPs.
pub(crate) fn to_host(mem: &IdentityMapper, prp1: u64, prp2: u64, data: &[u8]) -> Result<(), Status> {
    let mut off = 0;
    for (addr, n) in segments(mem, prp1, prp2, data.len())? {
        mem.write(addr, &data[off..off + n]).map_err(|_| err(GenericStatus::DATA_TRANSFER_ERROR))?;
        off += n;
    }
    Ok(())
}

/// Fill `buf` from the host buffer described by the PRPs.
pub(crate) fn from_host(mem: &IdentityMapper, prp1: u64, prp2: u64, buf: &mut [u8]) -> Result<(), Status> {
    let mut off = 0;
    for (addr, n) in segments(mem, prp1, prp2, buf.len())? {
        mem.read(addr, &mut buf[off..off + n]).map_err(|_| err(GenericStatus::DATA_TRANSFER_ERROR))?;
        off += n;
    }
    Ok(())
}
