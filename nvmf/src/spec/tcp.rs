//! NVMe/TCP PDUs (NVMe/TCP Transport Specification 1.0, section 3.6). All fields little-endian.

use super::{Cqe, Le16, Le32, Sqe};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// PDU-TYPE values (section 3.6.1, Figure 19).
pub mod pdu_type {
    pub const IC_REQ: u8 = 0x00;
    pub const IC_RESP: u8 = 0x01;
    pub const H2C_TERM_REQ: u8 = 0x02;
    pub const C2H_TERM_REQ: u8 = 0x03;
    pub const CAPSULE_CMD: u8 = 0x04;
    pub const CAPSULE_RESP: u8 = 0x05;
    pub const H2C_DATA: u8 = 0x06;
    pub const C2H_DATA: u8 = 0x07;
    pub const R2T: u8 = 0x09;
}

/// Common header FLAGS bits (section 3.6.1, Figure 20).
pub mod pdu_flags {
    /// Header digest present (HDGSTF).
    pub const HDGSTF: u8 = 0x01;
    /// Data digest present (DDGSTF).
    pub const DDGSTF: u8 = 0x02;
    /// Last PDU of a data transfer (H2CData, C2HData).
    pub const LAST_PDU: u8 = 0x04;
    /// C2HData only: the command succeeded and no CapsuleResp follows.
    pub const SUCCESS: u8 = 0x08;
}

/// Fatal Error Status of a TermReq (sections 3.6.2.4-3.6.2.5).
pub mod fes {
    pub const INVALID_PDU_HEADER_FIELD: u16 = 0x01;
    pub const PDU_SEQUENCE_ERROR: u16 = 0x02;
    pub const HEADER_DIGEST_ERROR: u16 = 0x03;
    pub const DATA_TRANSFER_OUT_OF_RANGE: u16 = 0x04;
    /// R2T limit / data transfer limit exceeded.
    pub const DATA_TRANSFER_LIMIT_EXCEEDED: u16 = 0x05;
    pub const UNSUPPORTED_PARAMETER: u16 = 0x06;
}

/// DGST bits of ICReq/ICResp (sections 3.6.2.2-3.6.2.3).
pub mod dgst {
    pub const HEADER: u8 = 0x01;
    pub const DATA: u8 = 0x02;
}

/// Size of a header or data digest (CRC32C).
pub const DIGEST_LEN: usize = 4;
/// TermReq carries at most this many bytes of the offending PDU header.
pub const TERM_REQ_MAX_DATA: usize = 128;

/// PDU common header, 8 bytes (section 3.6.1, Figure 18).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout, PartialEq, Eq)]
pub struct CommonHeader {
    pub pdu_type: u8,
    pub flags: u8,
    /// Header length (HLEN), without the header digest.
    pub hlen: u8,
    /// PDU data offset (PDO): where data starts, from the start of the PDU; 0 with no data.
    pub pdo: u8,
    /// Total PDU length (PLEN) including header, digests, padding and data.
    pub plen: Le32,
}
const _: () = assert!(core::mem::size_of::<CommonHeader>() == 8);

/// Initialize Connection Request, 128 bytes (section 3.6.2.2, Figure 26).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ICReq {
    pub ch: CommonHeader,
    /// PDU format version (PFV): 0.
    pub pfv: Le16,
    /// Host PDU data alignment (HPDA), 0's based dwords.
    pub hpda: u8,
    /// Digest types requested (DGST).
    pub dgst: u8,
    /// Maximum outstanding R2Ts per command (MAXR2T), 0's based.
    pub maxr2t: Le32,
    pub reserved: [u8; 112],
}
const _: () = assert!(core::mem::size_of::<ICReq>() == 128);

/// Initialize Connection Response, 128 bytes (section 3.6.2.3, Figure 27).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ICResp {
    pub ch: CommonHeader,
    pub pfv: Le16,
    /// Controller PDU data alignment (CPDA), 0's based dwords.
    pub cpda: u8,
    /// Digest types enabled (DGST).
    pub dgst: u8,
    /// Maximum H2CData payload the controller accepts (MAXH2CDATA), >= 4096.
    pub maxh2cdata: Le32,
    pub reserved: [u8; 112],
}
const _: () = assert!(core::mem::size_of::<ICResp>() == 128);

/// H2C/C2H Terminate Connection Request header, 24 bytes (sections 3.6.2.4-5, Figures 28-29).
/// Followed by up to 128 bytes of the PDU header in error.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TermReqHdr {
    pub ch: CommonHeader,
    /// Fatal error status (FES).
    pub fes: Le16,
    /// Fatal error information (FEI): for an invalid header field, its byte offset.
    pub fei: Le32,
    pub reserved: [u8; 10],
}
const _: () = assert!(core::mem::size_of::<TermReqHdr>() == 24);

/// Command Capsule PDU header, 72 bytes (section 3.6.2.6, Figure 30).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CapsuleCmdHdr {
    pub ch: CommonHeader,
    pub sqe: Sqe,
}
const _: () = assert!(core::mem::size_of::<CapsuleCmdHdr>() == 72);

/// Response Capsule PDU, 24 bytes (section 3.6.2.7, Figure 31).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CapsuleRespHdr {
    pub ch: CommonHeader,
    pub cqe: Cqe,
}
const _: () = assert!(core::mem::size_of::<CapsuleRespHdr>() == 24);

/// H2CData and C2HData PDU header, 24 bytes (sections 3.6.2.8-9, Figures 32-33).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct DataHdr {
    pub ch: CommonHeader,
    /// Command capsule CID (CCCID).
    pub cccid: Le16,
    /// Transfer tag (TTAG) from the R2T; reserved in C2HData.
    pub ttag: Le16,
    /// Data offset (DATAO) within the command's data.
    pub datao: Le32,
    /// Data length (DATAL) in this PDU.
    pub datal: Le32,
    pub reserved: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<DataHdr>() == 24);

/// Ready to Transfer PDU, 24 bytes (section 3.6.2.10, Figure 34).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct R2THdr {
    pub ch: CommonHeader,
    pub cccid: Le16,
    pub ttag: Le16,
    /// R2T offset (R2TO).
    pub r2to: Le32,
    /// R2T length (R2TL).
    pub r2tl: Le32,
    pub reserved: [u8; 4],
}
const _: () = assert!(core::mem::size_of::<R2THdr>() == 24);

/// HLEN each PDU type must carry (section 3.6.2).
pub fn expected_hlen(pdu_type: u8) -> Option<u8> {
    Some(match pdu_type {
        pdu_type::IC_REQ | pdu_type::IC_RESP => 128,
        pdu_type::H2C_TERM_REQ | pdu_type::C2H_TERM_REQ => 24,
        pdu_type::CAPSULE_CMD => 72,
        pdu_type::CAPSULE_RESP => 24,
        pdu_type::H2C_DATA | pdu_type::C2H_DATA | pdu_type::R2T => 24,
        _ => return None,
    })
}

/// CRC32C digest as NVMe/TCP uses it (section 3.6.4.2: CRC32C over the bytes, stored LE).
pub fn digest(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Extend a running digest (for data split across buffers).
pub fn digest_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

/// PDO for a PDU with data: header (+ header digest), rounded up to the peer's alignment
/// (`pda` is 0's based dwords, as in HPDA/CPDA).
pub fn data_offset(hlen: usize, hdgst: bool, pda: u8) -> usize {
    let base = hlen + if hdgst { DIGEST_LEN } else { 0 };
    let align = (pda as usize + 1) * 4;
    if pda == 0 {
        base
    } else {
        base.div_ceil(align) * align
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn field_offsets_match_the_spec() {
        assert_eq!(offset_of!(ICReq, hpda), 10);
        assert_eq!(offset_of!(ICReq, dgst), 11);
        assert_eq!(offset_of!(ICReq, maxr2t), 12);
        assert_eq!(offset_of!(ICResp, maxh2cdata), 12);
        assert_eq!(offset_of!(TermReqHdr, fes), 8);
        assert_eq!(offset_of!(TermReqHdr, fei), 10);
        assert_eq!(offset_of!(DataHdr, cccid), 8);
        assert_eq!(offset_of!(DataHdr, ttag), 10);
        assert_eq!(offset_of!(DataHdr, datao), 12);
        assert_eq!(offset_of!(DataHdr, datal), 16);
        assert_eq!(offset_of!(R2THdr, r2tl), 16);
    }

    #[test]
    fn crc32c_known_answer() {
        // RFC 3720 B.4: 32 bytes of zeroes.
        assert_eq!(digest(&[0u8; 32]), 0x8a9136aa);
        assert_eq!(digest_append(digest(&[0u8; 16]), &[0u8; 16]), 0x8a9136aa);
    }

    #[test]
    fn pdo_alignment() {
        assert_eq!(data_offset(72, false, 0), 72);
        assert_eq!(data_offset(72, true, 0), 76);
        assert_eq!(data_offset(24, true, 7), 32);
        assert_eq!(data_offset(72, false, 31), 128);
    }
}
