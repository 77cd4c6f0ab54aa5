//! Validating the headers of PDUs a host sends (NVMe/TCP 1.0, sections 3.6 and 3.7): pure
//! functions of the header bytes and the connection's negotiated parameters, so every
//! rejection (its TermReq FES and FEI) is unit-tested without a socket. The connection
//! (`conn.rs`) acts on what they return.

use crate::spec::tcp::{digest, expected_hlen, fes, pdu_flags, pdu_type, CommonHeader, DataHdr, ICReq, DIGEST_LEN};

/// Why a header is refused: the C2HTermReq's Fatal Error Status and Information (the byte
/// offset of the offending field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub fes: u16,
    pub fei: u32,
}

const fn refuse(fes: u16, fei: u32) -> Refusal {
    Refusal { fes, fei }
}

/// What the connection has negotiated so far.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RxParams {
    /// No ICReq yet: only an ICReq (or a TermReq) may come.
    pub awaiting_icreq: bool,
    pub hdgst: bool,
    /// The largest PLEN accepted (the largest transfer plus room for the header).
    pub max_plen: usize,
}

/// A header that passed the common checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub pdu_type: u8,
    pub hlen: usize,
    /// Length of the header digest after the header (0 or 4).
    pub hd: usize,
    pub plen: usize,
}

impl Header {
    /// Bytes needed before the header (and its digest) can be checked further.
    #[inline]
    pub fn len(&self) -> usize {
        self.hlen + self.hd
    }
}

/// The payload after a header: `[pad][data][data digest]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Payload {
    /// PLEN says there is something after the header.
    pub present: bool,
    pub pad: usize,
    pub data_len: usize,
}

/// The common-header checks: a host-to-controller type, its fixed HLEN, the PDU sequence
/// (ICReq first), the header digest flag as negotiated, and PLEN within bounds.
#[inline]
pub(crate) fn check_common(ch: &CommonHeader, p: &RxParams) -> Result<Header, Refusal> {
    let Some(hlen) = expected_hlen(ch.pdu_type) else { return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 0)) };
    match ch.pdu_type {
        pdu_type::IC_REQ | pdu_type::H2C_TERM_REQ | pdu_type::CAPSULE_CMD | pdu_type::H2C_DATA => {}
        _ => return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 0)),
    }
    if ch.hlen != hlen {
        return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 2));
    }
    let is_ic = ch.pdu_type == pdu_type::IC_REQ;
    let is_term = ch.pdu_type == pdu_type::H2C_TERM_REQ;
    if p.awaiting_icreq != is_ic && !is_term {
        return Err(refuse(fes::PDU_SEQUENCE_ERROR, 0));
    }
    // ICReq and TermReq never carry digests; the others carry a header digest when negotiated.
    let plain = is_ic || is_term;
    let hd = if !plain && p.hdgst { DIGEST_LEN } else { 0 };
    if !plain && ((ch.flags & pdu_flags::HDGSTF != 0) != p.hdgst) {
        return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 1));
    }
    let hlen = hlen as usize;
    let plen = ch.plen.get() as usize;
    if plen < hlen + hd || plen > p.max_plen {
        return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 4));
    }
    Ok(Header { pdu_type: ch.pdu_type, hlen, hd, plen })
}

/// The header digest (`bytes` holds the header and its digest).
#[inline]
pub(crate) fn check_header_digest(h: &Header, bytes: &[u8]) -> Result<(), Refusal> {
    if h.hd == 0 {
        return Ok(());
    }
    let (Some(hdr), Some(got)) = (bytes.get(..h.hlen), bytes.get(h.hlen..h.hlen + DIGEST_LEN)) else {
        return Err(refuse(fes::HEADER_DIGEST_ERROR, 0));
    };
    let got = u32::from_le_bytes([got[0], got[1], got[2], got[3]]);
    if digest(hdr) != got {
        return Err(refuse(fes::HEADER_DIGEST_ERROR, 0));
    }
    Ok(())
}

/// Where the data lies: PDO within the PDU and at most 128 bytes of padding, the data digest
/// flag as negotiated. A TermReq's payload is the offending header, with no padding.
#[inline]
pub(crate) fn payload(ch: &CommonHeader, h: &Header, ddgst: bool) -> Result<Payload, Refusal> {
    if h.plen <= h.len() {
        return Ok(Payload { present: false, pad: 0, data_len: 0 });
    }
    let is_term = h.pdu_type == pdu_type::H2C_TERM_REQ;
    let has_dd = ch.flags & pdu_flags::DDGSTF != 0;
    if has_dd != ddgst && !is_term {
        return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 1));
    }
    if is_term {
        return Ok(Payload { present: true, pad: 0, data_len: h.plen - h.hlen });
    }
    let dd = if has_dd { DIGEST_LEN } else { 0 };
    let pdo = ch.pdo as usize;
    if pdo < h.len() || pdo > h.plen - dd || pdo - h.len() > 128 {
        return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 3));
    }
    Ok(Payload { present: true, pad: pdo - h.len(), data_len: h.plen - pdo - dd })
}

/// An ICReq: exactly 128 bytes, PFV 0, HPDA at most 31.
pub(crate) fn check_icreq(h: &Header, ic: &ICReq) -> Result<(), Refusal> {
    if h.plen != 128 {
        return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 4));
    }
    if ic.pfv.get() != 0 {
        return Err(refuse(fes::UNSUPPORTED_PARAMETER, 8));
    }
    if ic.hpda > 31 {
        return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 10));
    }
    Ok(())
}

/// A CapsuleCmd's in-capsule data: none claimed but absent, at most `icd_size` bytes.
#[inline]
pub(crate) fn check_capsule(p: &Payload, icd_size: usize) -> Result<(), Refusal> {
    if p.present && p.data_len == 0 {
        // PLEN claims bytes beyond the header but carries no data.
        return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 4));
    }
    if p.data_len > icd_size {
        return Err(refuse(fes::DATA_TRANSFER_LIMIT_EXCEEDED, 0));
    }
    Ok(())
}

/// What the request an H2CData PDU names expects next.
#[derive(Clone, Copy, Debug)]
pub(crate) struct H2cExpect {
    /// The command's CID (CCCID must match).
    pub cid: u16,
    /// Bytes received so far (DATAO must continue from here).
    pub done: u32,
    /// The whole transfer's length.
    pub xfer_len: u32,
    /// MAXH2CDATA from the ICResp.
    pub max_h2c_data: u32,
}

/// An H2CData PDU for a request waiting for it (the caller found that request by TTAG).
#[inline]
pub(crate) fn check_h2c_data(ch: &CommonHeader, d: &DataHdr, p: &Payload, e: &H2cExpect) -> Result<(), Refusal> {
    let (datao, datal) = (d.datao.get(), d.datal.get());
    if e.cid != d.cccid.get() {
        return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 8));
    }
    if datal > e.max_h2c_data {
        return Err(refuse(fes::DATA_TRANSFER_LIMIT_EXCEEDED, 16));
    }
    if datao != e.done || (datao as u64 + datal as u64) > e.xfer_len as u64 || datal == 0 {
        return Err(refuse(fes::DATA_TRANSFER_OUT_OF_RANGE, 12));
    }
    if p.data_len != datal as usize {
        return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 4));
    }
    // One R2T covers the whole transfer, so LAST_PDU marks its final bytes.
    if ch.flags & pdu_flags::LAST_PDU != 0 && datao + datal != e.xfer_len {
        return Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    const READY: RxParams = RxParams { awaiting_icreq: false, hdgst: false, max_plen: 8192 };

    fn ch(pdu_type: u8, flags: u8, hlen: u8, pdo: u8, plen: u32) -> CommonHeader {
        CommonHeader { pdu_type, flags, hlen, pdo, plen: plen.into() }
    }

    #[test]
    fn common_header_refusals_name_the_field() {
        assert_eq!(
            check_common(&ch(0x01, 0, 8, 0, 8), &READY),
            Err(refuse(fes::INVALID_PDU_HEADER_FIELD, 0)),
            "a C2H type"
        );
        assert_eq!(check_common(&ch(pdu_type::CAPSULE_CMD, 0, 70, 0, 72), &READY).unwrap_err().fei, 2, "HLEN");
        let early = RxParams { awaiting_icreq: true, ..READY };
        assert_eq!(
            check_common(&ch(pdu_type::CAPSULE_CMD, 0, 72, 0, 72), &early).unwrap_err().fes,
            fes::PDU_SEQUENCE_ERROR
        );
        assert_eq!(
            check_common(&ch(pdu_type::IC_REQ, 0, 128, 0, 128), &READY).unwrap_err().fes,
            fes::PDU_SEQUENCE_ERROR
        );
        let hd = RxParams { hdgst: true, ..READY };
        assert_eq!(check_common(&ch(pdu_type::CAPSULE_CMD, 0, 72, 0, 76), &hd).unwrap_err().fei, 1, "HDGSTF missing");
        assert_eq!(
            check_common(&ch(pdu_type::CAPSULE_CMD, 0, 72, 0, 9000), &READY).unwrap_err().fei,
            4,
            "PLEN too big"
        );
        assert_eq!(check_common(&ch(pdu_type::CAPSULE_CMD, 0, 72, 0, 71), &READY).unwrap_err().fei, 4, "PLEN < HLEN");
        let h = check_common(&ch(pdu_type::CAPSULE_CMD, pdu_flags::HDGSTF, 72, 0, 76), &hd).expect("valid");
        assert_eq!(h, Header { pdu_type: pdu_type::CAPSULE_CMD, hlen: 72, hd: 4, plen: 76 });
        // A TermReq is accepted in any state and never carries digests.
        assert!(check_common(&ch(pdu_type::H2C_TERM_REQ, 0, 24, 0, 24), &early).is_ok());
    }

    #[test]
    fn header_digest_is_checked() {
        let h = Header { pdu_type: pdu_type::CAPSULE_CMD, hlen: 72, hd: 4, plen: 76 };
        let mut bytes = vec![7u8; 76];
        let d = digest(&bytes[..72]).to_le_bytes();
        bytes[72..].copy_from_slice(&d);
        assert_eq!(check_header_digest(&h, &bytes), Ok(()));
        bytes[3] ^= 1;
        assert_eq!(check_header_digest(&h, &bytes), Err(refuse(fes::HEADER_DIGEST_ERROR, 0)));
        assert_eq!(check_header_digest(&h, &bytes[..74]), Err(refuse(fes::HEADER_DIGEST_ERROR, 0)), "short");
    }

    #[test]
    fn payload_geometry() {
        let h = Header { pdu_type: pdu_type::CAPSULE_CMD, hlen: 72, hd: 0, plen: 72 + 8 + 512 };
        let c = ch(pdu_type::CAPSULE_CMD, 0, 72, 80, h.plen as u32);
        assert_eq!(payload(&c, &h, false), Ok(Payload { present: true, pad: 8, data_len: 512 }));
        assert_eq!(payload(&c, &h, true).unwrap_err().fei, 1, "DDGSTF not set though negotiated");
        let c = ch(pdu_type::CAPSULE_CMD, 0, 72, 60, h.plen as u32);
        assert_eq!(payload(&c, &h, false).unwrap_err().fei, 3, "PDO inside the header");
        let far = Header { plen: 72 + 200 + 16, ..h };
        let c = ch(pdu_type::CAPSULE_CMD, 0, 72, 0xff, far.plen as u32);
        assert_eq!(payload(&c, &far, false).unwrap_err().fei, 3, "more than 128 bytes of padding");
        let none = Header { plen: 72, ..h };
        assert_eq!(payload(&ch(pdu_type::CAPSULE_CMD, 0, 72, 0, 72), &none, false).map(|p| p.present), Ok(false));
    }

    #[test]
    fn icreq_capsule_and_h2c_data_checks() {
        let h = Header { pdu_type: pdu_type::IC_REQ, hlen: 128, hd: 0, plen: 128 };
        let mut ic = ICReq::new_zeroed();
        assert_eq!(check_icreq(&h, &ic), Ok(()));
        ic.hpda = 32;
        assert_eq!(check_icreq(&h, &ic).unwrap_err().fei, 10);
        ic.hpda = 0;
        ic.pfv.set(1);
        assert_eq!(check_icreq(&h, &ic).unwrap_err().fes, fes::UNSUPPORTED_PARAMETER);

        let empty = Payload { present: true, pad: 0, data_len: 0 };
        assert_eq!(check_capsule(&empty, 8192).unwrap_err().fei, 4);
        let big = Payload { present: true, pad: 0, data_len: 8193 };
        assert_eq!(check_capsule(&big, 8192).unwrap_err().fes, fes::DATA_TRANSFER_LIMIT_EXCEEDED);

        let e = H2cExpect { cid: 5, done: 0, xfer_len: 8192, max_h2c_data: 4096 };
        let mut d = DataHdr::new_zeroed();
        d.cccid.set(5);
        d.datal.set(4096);
        let p = Payload { present: true, pad: 0, data_len: 4096 };
        let plain = ch(pdu_type::H2C_DATA, 0, 24, 24, 24 + 4096);
        assert_eq!(check_h2c_data(&plain, &d, &p, &e), Ok(()));
        let last = ch(pdu_type::H2C_DATA, pdu_flags::LAST_PDU, 24, 24, 24 + 4096);
        assert_eq!(check_h2c_data(&last, &d, &p, &e).unwrap_err().fei, 1, "LAST_PDU before the end");
        d.cccid.set(6);
        assert_eq!(check_h2c_data(&plain, &d, &p, &e).unwrap_err().fei, 8, "CCCID");
        d.cccid.set(5);
        d.datao.set(512);
        assert_eq!(check_h2c_data(&plain, &d, &p, &e).unwrap_err().fes, fes::DATA_TRANSFER_OUT_OF_RANGE);
        d.datao.set(0);
        d.datal.set(8192);
        assert_eq!(check_h2c_data(&plain, &d, &p, &e).unwrap_err().fes, fes::DATA_TRANSFER_LIMIT_EXCEEDED);
    }
}
