//! Private data of the RDMA CM messages that set up an NVMe/RDMA queue pair (NVMe over Fabrics
//! RDMA Transport Specification 1.0b, section 3.3 "RDMA CM Private Data": Figure 4 Request,
//! Figure 5 Accept, Figure 6 Reject and its RDMA CM status codes). The same layouts are Linux's
//! `struct nvme_rdma_cm_req/_rep/_rej` in include/linux/nvme-rdma.h.

use crate::spec::Le16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Record format 0 (RECFMT): the only one defined.
pub const RECFMT_1_0: u16 = 0;

/// RDMA CM Request private data (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct CmRequest {
    /// Bytes 01:00 Record Format.
    pub recfmt: Le16,
    /// Bytes 03:02 Queue ID (0 = admin queue).
    pub qid: Le16,
    /// Bytes 05:04 Host Receive Queue Size (1's based): the most completions the host can take.
    pub hrqsize: Le16,
    /// Bytes 07:06 Host Send Queue Size (0's based, as Connect SQSIZE).
    pub hsqsize: Le16,
    /// Bytes 09:08 Controller ID (NVMe-oF 1.1+; 0xFFFF for the admin queue / dynamic).
    pub cntlid: Le16,
    /// Bytes 31:10 reserved.
    pub rsvd: [u8; 22],
}
const _: () = assert!(core::mem::size_of::<CmRequest>() == 32);

/// RDMA CM Accept private data (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct CmAccept {
    /// Bytes 01:00 Record Format.
    pub recfmt: Le16,
    /// Bytes 03:02 Controller Receive Queue Size (1's based): capsules the controller can hold.
    pub crqsize: Le16,
    /// Bytes 31:04 reserved.
    pub rsvd: [u8; 28],
}
const _: () = assert!(core::mem::size_of::<CmAccept>() == 32);

/// RDMA CM Reject private data (4 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct CmReject {
    /// Bytes 01:00 Record Format.
    pub recfmt: Le16,
    /// Bytes 03:02 Status (`reject_status`).
    pub sts: Le16,
}
const _: () = assert!(core::mem::size_of::<CmReject>() == 4);

/// RDMA CM reject status codes (RDMA Transport Spec Figure 6).
pub mod reject_status {
    /// The private data is shorter than the request structure.
    pub const INVALID_LENGTH: u16 = 0x01;
    pub const INVALID_RECFMT: u16 = 0x02;
    pub const INVALID_QID: u16 = 0x03;
    pub const INVALID_HSQSIZE: u16 = 0x04;
    pub const INVALID_HRQSIZE: u16 = 0x05;
    pub const NO_RESOURCES: u16 = 0x06;
    pub const INVALID_IRD: u16 = 0x07;
    pub const INVALID_ORD: u16 = 0x08;
    pub const INVALID_CNTLID: u16 = 0x09;
}

/// Admin queue depth cap (Linux NVME_AQ_DEPTH): HSQSIZE + 1 of an admin queue may not exceed it.
pub const MAX_ADMIN_QUEUE_SIZE: u16 = 32;

/// A checked request: what the transport sizes the queue by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueRequest {
    pub qid: u16,
    /// Commands the host may have outstanding (HSQSIZE + 1).
    pub sq_size: u16,
    /// Completions the host can receive (HRQSIZE).
    pub rq_size: u16,
}

/// Parse and check a request's private data against the most entries a queue may have.
/// `Err` carries the reject status to send.
pub fn parse_request(data: &[u8], max_queue_size: u16) -> Result<QueueRequest, u16> {
    let Ok((req, _)) = CmRequest::read_from_prefix(data) else {
        return Err(reject_status::INVALID_LENGTH);
    };
    if req.recfmt.get() != RECFMT_1_0 {
        return Err(reject_status::INVALID_RECFMT);
    }
    let qid = req.qid.get();
    if qid == 0xffff {
        return Err(reject_status::INVALID_QID);
    }
    let sq_size = req.hsqsize.get() as u32 + 1;
    let limit = if qid == 0 { MAX_ADMIN_QUEUE_SIZE.min(max_queue_size) } else { max_queue_size };
    if sq_size > limit as u32 {
        return Err(reject_status::INVALID_HSQSIZE);
    }
    let rq_size = req.hrqsize.get();
    // The host must be able to take a completion for every command it can send.
    if rq_size == 0 {
        return Err(reject_status::INVALID_HRQSIZE);
    }
    Ok(QueueRequest { qid, sq_size: sq_size as u16, rq_size })
}

pub fn accept(crqsize: u16) -> CmAccept {
    CmAccept { recfmt: RECFMT_1_0.into(), crqsize: crqsize.into(), rsvd: [0; 28] }
}

pub fn reject(sts: u16) -> CmReject {
    CmReject { recfmt: RECFMT_1_0.into(), sts: sts.into() }
}

pub fn request(qid: u16, hrqsize: u16, hsqsize: u16, cntlid: u16) -> CmRequest {
    CmRequest {
        recfmt: RECFMT_1_0.into(),
        qid: qid.into(),
        hrqsize: hrqsize.into(),
        hsqsize: hsqsize.into(),
        cntlid: cntlid.into(),
        rsvd: [0; 22],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout_matches_known_bytes() {
        // What the Linux nvme-rdma host sends for I/O queue 3 of a 128-entry queue on
        // controller 1: recfmt 0, qid 3, hrqsize 128, hsqsize 127, cntlid 1.
        let mut bytes = [0u8; 32];
        bytes[..10].copy_from_slice(&[0, 0, 3, 0, 0x80, 0, 0x7f, 0, 1, 0]);
        let r = CmRequest::read_from_bytes(&bytes).unwrap();
        assert_eq!(
            (r.recfmt.get(), r.qid.get(), r.hrqsize.get(), r.hsqsize.get(), r.cntlid.get()),
            (0, 3, 128, 127, 1)
        );
        assert_eq!(request(3, 128, 127, 1).as_bytes(), &bytes);
        assert_eq!(parse_request(&bytes, 128), Ok(QueueRequest { qid: 3, sq_size: 128, rq_size: 128 }));
    }

    #[test]
    fn accept_and_reject_bytes() {
        let a = accept(128);
        let mut want = [0u8; 32];
        want[2] = 0x80;
        assert_eq!(a.as_bytes(), &want);
        assert_eq!(reject(reject_status::INVALID_HSQSIZE).as_bytes(), &[0, 0, 4, 0]);
        assert_eq!(reject(reject_status::INVALID_RECFMT).as_bytes(), &[0, 0, 2, 0]);
    }

    #[test]
    fn bad_requests_get_the_spec_status() {
        assert_eq!(parse_request(&[0; 31], 128), Err(reject_status::INVALID_LENGTH));
        assert_eq!(parse_request(&[0; 8], 128), Err(reject_status::INVALID_LENGTH));
        assert_eq!(parse_request(request(1, 32, 31, 1).as_bytes(), 128).map(|r| r.sq_size), Ok(32));
        let mut b = request(1, 32, 31, 1);
        b.recfmt = 1.into();
        assert_eq!(parse_request(b.as_bytes(), 128), Err(reject_status::INVALID_RECFMT));
        assert_eq!(parse_request(request(1, 256, 255, 1).as_bytes(), 128), Err(reject_status::INVALID_HSQSIZE));
        // Admin queue: at most 32 entries.
        assert_eq!(parse_request(request(0, 32, 31, 0xffff).as_bytes(), 128).map(|r| r.sq_size), Ok(32));
        assert_eq!(parse_request(request(0, 64, 63, 0xffff).as_bytes(), 128), Err(reject_status::INVALID_HSQSIZE));
        assert_eq!(parse_request(request(1, 0, 31, 1).as_bytes(), 128), Err(reject_status::INVALID_HRQSIZE));
        assert_eq!(parse_request(request(0xffff, 32, 31, 1).as_bytes(), 128), Err(reject_status::INVALID_QID));
        // Longer private data (the CM pads it) is fine.
        let mut long = request(2, 16, 15, 1).as_bytes().to_vec();
        long.extend_from_slice(&[0; 24]);
        assert_eq!(parse_request(&long, 128).map(|r| r.qid), Ok(2));
    }
}
