//! Pure NVMe/TCP PDU encoding (host to controller) and header validation (controller to host).
//! No I/O here: `conn` moves the bytes.

use crate::spec::fabrics::{ConnectCmd, ConnectData};
use crate::spec::tcp::{
    data_offset, dgst, digest, expected_hlen, fes, pdu_flags, pdu_type, CapsuleCmdHdr, CommonHeader, DataHdr, ICReq,
    TermReqHdr, DIGEST_LEN, TERM_REQ_MAX_DATA,
};
use crate::spec::{put_str, FabricsType, SglDescriptor, Sqe};
use zerocopy::{FromZeros, IntoBytes};

/// Largest PDU the host accepts from a target (PLEN), whatever the command's buffer: 8 MiB of
/// data plus headers, digests and padding. A C2HData must in addition fit its command's buffer.
pub const MAX_PDU_LEN: usize = (8 << 20) + 512;

/// PSDT = 01b (SGL) in SQE byte 1, as every fabrics host sets it.
pub const SQE_FLAGS_SGL: u8 = 0x40;

/// Admin Submission Queue size the host asks for in the admin Connect (like Linux's NVME_AQ_DEPTH).
pub const ADMIN_QUEUE_SIZE: u16 = 32;

/// Flags, PDO and PLEN of a PDU with a header of `hlen` bytes and `data_len` bytes of data.
pub fn layout(hlen: usize, data_len: usize, hdgst: bool, ddgst: bool, cpda: u8) -> (u8, u8, u32) {
    let mut flags = 0;
    if hdgst {
        flags |= pdu_flags::HDGSTF;
    }
    if data_len == 0 {
        let plen = hlen + if hdgst { DIGEST_LEN } else { 0 };
        return (flags, 0, plen as u32);
    }
    if ddgst {
        flags |= pdu_flags::DDGSTF;
    }
    let pdo = data_offset(hlen, hdgst, cpda);
    let plen = pdo + data_len + if ddgst { DIGEST_LEN } else { 0 };
    (flags, pdo as u8, plen as u32)
}

/// Append a PDU to `out`: `header` (common header included; FLAGS gets the digest bits ORed in,
/// HLEN, PDO and PLEN are filled in here), the header digest, padding up to PDO, `data`, the data
/// digest.
pub(crate) fn encode(out: &mut Vec<u8>, header: &mut [u8], data: &[u8], hdgst: bool, ddgst: bool, cpda: u8) {
    let hlen = header.len();
    let (flags, pdo, plen) = layout(hlen, data.len(), hdgst, ddgst, cpda);
    header[1] |= flags;
    header[2] = hlen as u8;
    header[3] = pdo;
    header[4..8].copy_from_slice(&plen.to_le_bytes());
    let start = out.len();
    out.reserve(plen as usize);
    out.extend_from_slice(header);
    if hdgst {
        out.extend_from_slice(&digest(header).to_le_bytes());
    }
    if !data.is_empty() {
        out.resize(start + pdo as usize, 0);
        out.extend_from_slice(data);
        if ddgst {
            out.extend_from_slice(&digest(data).to_le_bytes());
        }
    }
    debug_assert_eq!(out.len() - start, plen as usize);
}

/// The ICReq the host sends: PFV 0, the given HPDA, DGST and MAXR2T (0's based).
pub fn icreq(hdgst: bool, ddgst: bool, hpda: u8, maxr2t: u32) -> ICReq {
    let mut r = ICReq::new_zeroed();
    r.ch = CommonHeader { pdu_type: pdu_type::IC_REQ, flags: 0, hlen: 128, pdo: 0, plen: 128.into() };
    r.hpda = hpda;
    r.dgst = if hdgst { dgst::HEADER } else { 0 } | if ddgst { dgst::DATA } else { 0 };
    r.maxr2t = maxr2t.into();
    r
}

/// Append a CapsuleCmd PDU carrying `sqe` and `data` as in-capsule data (may be empty).
pub fn encode_capsule_cmd(out: &mut Vec<u8>, sqe: &Sqe, data: &[u8], hdgst: bool, ddgst: bool, cpda: u8) {
    let mut h = CapsuleCmdHdr { sqe: *sqe, ..Default::default() };
    h.ch.pdu_type = pdu_type::CAPSULE_CMD;
    encode(out, h.as_mut_bytes(), data, hdgst, ddgst, cpda);
}

/// Append an H2CData PDU.
#[allow(clippy::too_many_arguments)]
pub fn encode_h2c_data(
    out: &mut Vec<u8>,
    cccid: u16,
    ttag: u16,
    datao: u32,
    data: &[u8],
    last: bool,
    hdgst: bool,
    ddgst: bool,
    cpda: u8,
) {
    let mut h = DataHdr {
        cccid: cccid.into(),
        ttag: ttag.into(),
        datao: datao.into(),
        datal: (data.len() as u32).into(),
        ..Default::default()
    };
    h.ch.pdu_type = pdu_type::H2C_DATA;
    if last {
        h.ch.flags = pdu_flags::LAST_PDU;
    }
    encode(out, h.as_mut_bytes(), data, hdgst, ddgst, cpda);
}

/// Append an H2CTermReq PDU with up to 128 bytes of the offending PDU header (no digests, as the
/// specification requires for TermReq).
pub fn encode_h2c_term_req(out: &mut Vec<u8>, fes: u16, fei: u32, offending: &[u8]) {
    let data = &offending[..offending.len().min(TERM_REQ_MAX_DATA)];
    let mut h = TermReqHdr { fes: fes.into(), fei: fei.into(), ..Default::default() };
    let plen = (core::mem::size_of::<TermReqHdr>() + data.len()) as u32;
    h.ch = CommonHeader { pdu_type: pdu_type::H2C_TERM_REQ, flags: 0, hlen: 24, pdo: 0, plen: plen.into() };
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
}

/// A fabrics command SQE with FCTYPE set and an SGL with no data (transport, length 0).
pub fn fabrics_sqe(fctype: FabricsType) -> Sqe {
    let mut sqe = Sqe { opcode: crate::spec::AdminOpcode::Fabrics as u8, flags: SQE_FLAGS_SGL, ..Default::default() };
    sqe.nsid.set(fctype as u8 as u32);
    sqe
}

/// A Connect command for `qid` with SQSIZE `sqsize` (0's based) and KATO `kato_ms`, its data
/// described as 1024 bytes of in-capsule data at offset 0 (SGL 0x01).
pub fn connect_sqe(qid: u16, sqsize: u16, kato_ms: u32) -> Sqe {
    let mut sqe = fabrics_sqe(FabricsType::Connect);
    ConnectCmd { recfmt: 0, qid, sqsize, cattr: 0, kato: kato_ms }.write(&mut sqe);
    sqe.set_sgl1(SglDescriptor::in_capsule(0, core::mem::size_of::<ConnectData>() as u32));
    sqe
}

/// The 1024 bytes of Connect data. `cntlid` is `CNTLID_DYNAMIC` (0xFFFF) on the admin queue.
pub fn connect_data(hostid: &[u8; 16], cntlid: u16, subnqn: &str, hostnqn: &str) -> ConnectData {
    let mut d = ConnectData::new_zeroed();
    d.hostid = *hostid;
    d.cntlid = cntlid.into();
    put_str(&mut d.subnqn, subnqn, 0);
    put_str(&mut d.hostnqn, hostnqn, 0);
    d
}

/// Where the parts of a received PDU lie, from its common header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxLayout {
    /// A header digest follows the header.
    pub hdgst: bool,
    /// Bytes of padding between the header (and its digest) and the data.
    pub pad: usize,
    /// Data bytes (for a TermReq: the offending header bytes).
    pub data_len: usize,
    /// A data digest follows the data.
    pub ddgst: bool,
}

/// Why a received header is unacceptable: the TermReq FES/FEI the host reports and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderFault {
    pub fes: u16,
    pub fei: u32,
    pub msg: String,
}

fn fault(fes: u16, fei: u32, msg: String) -> HeaderFault {
    HeaderFault { fes, fei, msg }
}

/// Validate the common header of a PDU a controller sent on an established connection
/// (CapsuleResp, C2HData, R2T or C2HTermReq) against the negotiated digests, and work out its
/// layout. Every length is bounded before anything is read.
pub fn check_rx_header(ch: &CommonHeader, hdgst: bool, ddgst: bool) -> Result<RxLayout, HeaderFault> {
    const F: u16 = fes::INVALID_PDU_HEADER_FIELD;
    let t = ch.pdu_type;
    let hlen = ch.hlen as usize;
    let plen = ch.plen.get() as usize;
    let pdo = ch.pdo as usize;
    match t {
        pdu_type::CAPSULE_RESP | pdu_type::C2H_DATA | pdu_type::R2T | pdu_type::C2H_TERM_REQ => {}
        _ => return Err(fault(F, 0, format!("unexpected PDU type {t:#04x}"))),
    }
    if Some(ch.hlen) != expected_hlen(t) {
        return Err(fault(F, 2, format!("PDU type {t:#04x} with HLEN {hlen}")));
    }
    if plen > MAX_PDU_LEN {
        return Err(fault(fes::DATA_TRANSFER_LIMIT_EXCEEDED, 4, format!("PLEN {plen} exceeds {MAX_PDU_LEN}")));
    }
    if t == pdu_type::C2H_TERM_REQ {
        // No digests on TermReq; the data is the offending header, at most 128 bytes.
        if plen < hlen || plen > hlen + TERM_REQ_MAX_DATA {
            return Err(fault(F, 4, format!("C2HTermReq with PLEN {plen}")));
        }
        return Ok(RxLayout { hdgst: false, pad: 0, data_len: plen - hlen, ddgst: false });
    }
    let has_hd = ch.flags & pdu_flags::HDGSTF != 0;
    if has_hd != hdgst {
        return Err(fault(
            F,
            1,
            format!("HDGSTF {} but header digest {}negotiated", has_hd as u8, if hdgst { "" } else { "not " }),
        ));
    }
    let hd = if hdgst { DIGEST_LEN } else { 0 };
    if t != pdu_type::C2H_DATA {
        if plen != hlen + hd {
            return Err(fault(F, 4, format!("PDU type {t:#04x} with PLEN {plen}, expected {}", hlen + hd)));
        }
        return Ok(RxLayout { hdgst, pad: 0, data_len: 0, ddgst: false });
    }
    let has_dd = ch.flags & pdu_flags::DDGSTF != 0;
    if has_dd != ddgst {
        return Err(fault(
            F,
            1,
            format!("DDGSTF {} but data digest {}negotiated", has_dd as u8, if ddgst { "" } else { "not " }),
        ));
    }
    let dd = if ddgst { DIGEST_LEN } else { 0 };
    if pdo < hlen + hd {
        return Err(fault(F, 3, format!("C2HData PDO {pdo} inside the header ({})", hlen + hd)));
    }
    if plen < pdo + dd {
        return Err(fault(F, 4, format!("C2HData PLEN {plen} shorter than PDO {pdo} + digest {dd}")));
    }
    Ok(RxLayout { hdgst, pad: pdo - hlen - hd, data_len: plen - pdo - dd, ddgst })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::fabrics::CNTLID_DYNAMIC;
    use crate::spec::tcp::DIGEST_LEN;
    use zerocopy::FromBytes;

    fn sqe() -> Sqe {
        let mut s = Sqe { opcode: 0x01, flags: SQE_FLAGS_SGL, ..Default::default() };
        s.cid.set(7);
        s.nsid.set(1);
        s
    }

    #[test]
    fn capsule_without_data_or_digests() {
        let mut out = Vec::new();
        encode_capsule_cmd(&mut out, &sqe(), &[], false, false, 0);
        assert_eq!(out.len(), 72);
        assert_eq!(&out[..8], &[0x04, 0, 72, 0, 72, 0, 0, 0]);
        assert_eq!(&out[8..], sqe().as_bytes());
        let h = CapsuleCmdHdr::read_from_bytes(&out).unwrap();
        assert_eq!(h.sqe, sqe());
    }

    #[test]
    fn capsule_with_digests_and_cpda() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut out = vec![0xee]; // appends after what is already there
        encode_capsule_cmd(&mut out, &sqe(), &data, true, true, 3); // 16-byte alignment
        let pdu = &out[1..];
        let pdo = 80; // 72 + 4 rounded up to 16
        assert_eq!(pdu[0], 0x04);
        assert_eq!(pdu[1], pdu_flags::HDGSTF | pdu_flags::DDGSTF);
        assert_eq!(pdu[2], 72);
        assert_eq!(pdu[3], pdo as u8);
        let plen = pdo + 100 + DIGEST_LEN;
        assert_eq!(u32::from_le_bytes(pdu[4..8].try_into().unwrap()) as usize, plen);
        assert_eq!(pdu.len(), plen);
        assert_eq!(&pdu[72..76], &digest(&pdu[..72]).to_le_bytes());
        assert_eq!(&pdu[76..pdo], &[0; 4]);
        assert_eq!(&pdu[pdo..pdo + 100], &data[..]);
        assert_eq!(&pdu[plen - 4..], &digest(&data).to_le_bytes());
        assert_eq!(out[0], 0xee);
    }

    #[test]
    fn header_digest_without_data_sets_no_ddgstf() {
        let mut out = Vec::new();
        encode_capsule_cmd(&mut out, &sqe(), &[], true, true, 0);
        assert_eq!(out.len(), 76);
        assert_eq!(&out[..8], &[0x04, pdu_flags::HDGSTF, 72, 0, 76, 0, 0, 0]);
        assert_eq!(&out[72..], &digest(&out[..72]).to_le_bytes());
    }

    #[test]
    fn h2c_data_round_trip() {
        let data = [0xabu8; 4096];
        let mut out = Vec::new();
        encode_h2c_data(&mut out, 9, 0x1234, 8192, &data, true, false, true, 0);
        assert_eq!(out.len(), 24 + 4096 + 4);
        let (h, rest) = DataHdr::read_from_prefix(&out).unwrap();
        assert_eq!(h.ch.pdu_type, pdu_type::H2C_DATA);
        assert_eq!(h.ch.flags, pdu_flags::LAST_PDU | pdu_flags::DDGSTF);
        assert_eq!((h.ch.hlen, h.ch.pdo, h.ch.plen.get()), (24, 24, 24 + 4096 + 4));
        assert_eq!((h.cccid.get(), h.ttag.get(), h.datao.get(), h.datal.get()), (9, 0x1234, 8192, 4096));
        assert_eq!(&rest[..4096], &data[..]);
        assert_eq!(&rest[4096..], &digest(&data).to_le_bytes());
    }

    #[test]
    fn icreq_and_term_req_bytes() {
        let r = icreq(true, false, 0, 0);
        let b = r.as_bytes();
        assert_eq!(&b[..16], &[0, 0, 128, 0, 128, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert!(b[16..].iter().all(|&x| x == 0));
        let mut out = Vec::new();
        encode_h2c_term_req(&mut out, fes::HEADER_DIGEST_ERROR, 0, &[0x55; 200]);
        assert_eq!(out.len(), 24 + 128);
        assert_eq!(&out[..12], &[0x02, 0, 24, 0, 152, 0, 0, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn connect_command_layout() {
        let sqe = connect_sqe(0, 31, 30_000);
        let b = sqe.as_bytes();
        assert_eq!((b[0], b[1], b[4]), (0x7f, 0x40, 0x01));
        assert_eq!(&b[24..40], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0x01]);
        assert_eq!(&b[42..44], &[0, 0]);
        assert_eq!(&b[44..46], &[31, 0]);
        assert_eq!(&b[48..52], &30_000u32.to_le_bytes());
        let d = connect_data(&[7; 16], CNTLID_DYNAMIC, "nqn.sub", "nqn.host");
        let b = d.as_bytes();
        assert_eq!(&b[..16], &[7; 16]);
        assert_eq!(&b[16..18], &[0xff, 0xff]);
        assert_eq!(&b[256..264], b"nqn.sub\0");
        assert_eq!(&b[512..521], b"nqn.host\0");
    }

    fn ch(t: u8, flags: u8, hlen: u8, pdo: u8, plen: u32) -> CommonHeader {
        CommonHeader { pdu_type: t, flags, hlen, pdo, plen: plen.into() }
    }

    #[test]
    fn rx_header_validation() {
        use pdu_type::*;
        let ok = |c, h, d| check_rx_header(&c, h, d).unwrap();
        let bad = |c, h, d| check_rx_header(&c, h, d).unwrap_err();
        assert_eq!(ok(ch(CAPSULE_RESP, 0, 24, 0, 24), false, false).data_len, 0);
        assert_eq!(
            ok(ch(CAPSULE_RESP, 1, 24, 0, 28), true, true),
            RxLayout { hdgst: true, pad: 0, data_len: 0, ddgst: false }
        );
        assert_eq!(bad(ch(CAPSULE_RESP, 0, 24, 0, 28), true, false).fei, 1);
        assert_eq!(bad(ch(CAPSULE_RESP, 1, 24, 0, 28), false, false).fei, 1);
        assert_eq!(bad(ch(CAPSULE_RESP, 0, 24, 0, 25), false, false).fei, 4);
        assert_eq!(bad(ch(CAPSULE_RESP, 0, 72, 0, 72), false, false).fei, 2);
        assert_eq!(bad(ch(R2T, 0, 24, 0, 4096), false, false).fei, 4);
        assert_eq!(bad(ch(CAPSULE_CMD, 0, 72, 0, 72), false, false).fei, 0);
        assert_eq!(bad(ch(0x42, 0, 24, 0, 24), false, false).fei, 0);
        assert_eq!(bad(ch(IC_RESP, 0, 128, 0, 128), false, false).fei, 0);
        // C2HData: padding from PDO, data length, digests.
        assert_eq!(
            ok(ch(C2H_DATA, 0x0c, 24, 24, 24 + 512), false, false),
            RxLayout { hdgst: false, pad: 0, data_len: 512, ddgst: false }
        );
        assert_eq!(
            ok(ch(C2H_DATA, 3, 24, 32, 32 + 512 + 4), true, true),
            RxLayout { hdgst: true, pad: 4, data_len: 512, ddgst: true }
        );
        assert_eq!(bad(ch(C2H_DATA, 1, 24, 24, 600), true, false).fei, 3);
        assert_eq!(bad(ch(C2H_DATA, 0, 24, 24, 600), false, true).fei, 1);
        assert_eq!(bad(ch(C2H_DATA, 2, 24, 24, 26), false, true).fei, 4);
        assert_eq!(bad(ch(C2H_DATA, 0, 24, 24, u32::MAX), false, false).fes, fes::DATA_TRANSFER_LIMIT_EXCEEDED);
        // TermReq: no digest, at most 128 bytes of data.
        assert_eq!(ok(ch(C2H_TERM_REQ, 0, 24, 0, 24 + 72), true, true).data_len, 72);
        assert_eq!(bad(ch(C2H_TERM_REQ, 0, 24, 0, 24 + 129), false, false).fei, 4);
        assert_eq!(bad(ch(C2H_TERM_REQ, 0, 24, 0, 8), false, false).fei, 4);
    }
}
