//! Building outgoing PDUs into a connection's send buffer, with header and data digests.

use super::send::SendQueue;
use crate::bdev::IoBuf;
use crate::spec::tcp::{
    data_offset, digest, pdu_flags, pdu_type, CapsuleRespHdr, CommonHeader, DataHdr, ICResp, R2THdr, TermReqHdr,
    TERM_REQ_MAX_DATA,
};
use crate::spec::Cqe;
use zerocopy::{FromZeros, IntoBytes};

/// Append a header, with its CRC32C when header digests are on.
fn push_header(tx: &mut Vec<u8>, hdr: &[u8], hdgst: bool) {
    tx.extend_from_slice(hdr);
    if hdgst {
        tx.extend_from_slice(&digest(hdr).to_le_bytes());
    }
}

fn ch(pdu_type: u8, flags: u8, hlen: u8, pdo: u8, plen: usize, hdgst: bool) -> CommonHeader {
    CommonHeader {
        pdu_type,
        flags: flags | if hdgst { pdu_flags::HDGSTF } else { 0 },
        hlen,
        pdo,
        plen: (plen as u32).into(),
    }
}

pub(crate) fn ic_resp(tx: &mut Vec<u8>, dgst: u8, maxh2cdata: u32) {
    let mut r = ICResp::new_zeroed();
    r.ch = ch(pdu_type::IC_RESP, 0, 128, 0, 128, false);
    r.cpda = 0;
    r.dgst = dgst;
    r.maxh2cdata.set(maxh2cdata);
    tx.extend_from_slice(r.as_bytes());
}

pub(crate) fn capsule_resp(tx: &mut Vec<u8>, cqe: &Cqe, hdgst: bool) {
    let hd = if hdgst { 4 } else { 0 };
    let r = CapsuleRespHdr { ch: ch(pdu_type::CAPSULE_RESP, 0, 24, 0, 24 + hd, hdgst), cqe: *cqe };
    push_header(tx, r.as_bytes(), hdgst);
}

pub(crate) fn r2t(tx: &mut Vec<u8>, cid: u16, ttag: u16, offset: u32, len: u32, hdgst: bool) {
    let hd = if hdgst { 4 } else { 0 };
    let r = R2THdr {
        ch: ch(pdu_type::R2T, 0, 24, 0, 24 + hd, hdgst),
        cccid: cid.into(),
        ttag: ttag.into(),
        r2to: offset.into(),
        r2tl: len.into(),
        reserved: [0; 4],
    };
    push_header(tx, r.as_bytes(), hdgst);
}

/// One C2HData PDU carrying `data` at `offset`, copied into the send buffer. `last`/`success`
/// set LAST_PDU and SUCCESS.
#[allow(clippy::too_many_arguments)]
pub(crate) fn c2h_data(
    tx: &mut Vec<u8>,
    cid: u16,
    offset: u32,
    data: &[u8],
    last: bool,
    success: bool,
    hdgst: bool,
    ddgst: bool,
    hpda: u8,
) {
    c2h_data_header(tx, cid, offset, data.len(), last, success, hdgst, ddgst, hpda);
    tx.extend_from_slice(data);
    if ddgst {
        tx.extend_from_slice(&digest(data).to_le_bytes());
    }
}

/// One C2HData PDU whose payload, the first `len` bytes of `buf`, is sent straight from `buf`
/// (no copy): the header goes into the send buffer, `buf` into the segment queue, then the
/// data digest, computed over `buf` in place. The caller checks `SendQueue::can_take_segment`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn c2h_data_from_buf(
    q: &mut SendQueue,
    cid: u16,
    offset: u32,
    buf: IoBuf,
    len: usize,
    last: bool,
    success: bool,
    hdgst: bool,
    ddgst: bool,
    hpda: u8,
) {
    let len = len.min(buf.len());
    c2h_data_header(q.bytes_mut(), cid, offset, len, last, success, hdgst, ddgst, hpda);
    let dd = ddgst.then(|| digest(&buf.as_slice()[..len]));
    q.push_segment(buf, len);
    if let Some(d) = dd {
        q.bytes_mut().extend_from_slice(&d.to_le_bytes());
    }
}

/// A C2HData header for `len` bytes of data, with its header digest and the padding up to PDO.
#[allow(clippy::too_many_arguments)]
fn c2h_data_header(
    tx: &mut Vec<u8>,
    cid: u16,
    offset: u32,
    len: usize,
    last: bool,
    success: bool,
    hdgst: bool,
    ddgst: bool,
    hpda: u8,
) {
    let pdo = data_offset(24, hdgst, hpda);
    let plen = pdo + len + if ddgst { 4 } else { 0 };
    let mut flags = 0;
    if last {
        flags |= pdu_flags::LAST_PDU;
    }
    if success {
        flags |= pdu_flags::SUCCESS;
    }
    if ddgst {
        flags |= pdu_flags::DDGSTF;
    }
    let h = DataHdr {
        ch: ch(pdu_type::C2H_DATA, flags, 24, pdo as u8, plen, hdgst),
        cccid: cid.into(),
        ttag: 0.into(),
        datao: offset.into(),
        datal: (len as u32).into(),
        reserved: [0; 4],
    };
    let start = tx.len();
    push_header(tx, h.as_bytes(), hdgst);
    tx.resize(start + pdo, 0);
}

/// C2HTermReq carrying the offending PDU header (section 3.6.2.5). Never has digests.
pub(crate) fn c2h_term_req(tx: &mut Vec<u8>, fes: u16, fei: u32, bad_hdr: &[u8]) {
    let n = bad_hdr.len().min(TERM_REQ_MAX_DATA);
    let mut t = TermReqHdr::new_zeroed();
    t.ch = ch(pdu_type::C2H_TERM_REQ, 0, 24, 0, 24 + n, false);
    t.fes.set(fes);
    t.fei.set(fei);
    tx.extend_from_slice(t.as_bytes());
    tx.extend_from_slice(&bad_hdr[..n]);
}
