//! Authentication Send / Receive commands (NVMe-oF 1.1 + TP 8006; Base 2.0 sections 6.2 and 6.3)
//! and the DH-HMAC-CHAP messages they carry (Base 2.0 section 8.13.5, Figures 442-452). Layouts
//! as in Linux's include/linux/nvme.h (`struct nvmf_auth_*`).
//!
//! Each message is a fixed header (`#[repr(C)]`, size asserted) followed by variable-length
//! values; [`Message`] parses and builds whole messages, checking every length against the
//! buffer so that nothing a peer sends can index out of range.

use crate::spec::{Le16, Le32, Sqe};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// SECP of the NVMe in-band authentication protocols.
pub const SECP_NVME_AUTH: u8 = 0xe9;
/// SPSP0 / SPSP1 of DH-HMAC-CHAP.
pub const SPSP_DHCHAP: u8 = 0x01;
/// Connect response DW0 bit 17: Authentication Transaction Required (AUTHREQ.ATR; DW0 bits
/// 31:16 are AUTHREQ, its bit 1 is ATR, bit 2 ASCR; Linux `NVME_CONNECT_AUTHREQ_ATR`).
pub const CONNECT_AUTHREQ_ATR: u32 = 1 << 17;
/// Connect response DW0 bit 18: Authentication and Secure Channel Required (not used).
pub const CONNECT_AUTHREQ_ASCR: u32 = 1 << 18;

/// AUTH_TYPE: common messages (Negotiate, Failure1/2) or DH-HMAC-CHAP messages.
pub mod auth_type {
    pub const COMMON: u8 = 0x00;
    pub const DHCHAP: u8 = 0x01;
}

/// AUTH_ID of each message.
pub mod auth_id {
    pub const NEGOTIATE: u8 = 0x00;
    pub const CHALLENGE: u8 = 0x01;
    pub const REPLY: u8 = 0x02;
    pub const SUCCESS1: u8 = 0x03;
    pub const SUCCESS2: u8 = 0x04;
    pub const FAILURE2: u8 = 0xf0;
    pub const FAILURE1: u8 = 0xf1;
}

/// AUTHID of the DH-HMAC-CHAP protocol descriptor.
pub const DHCHAP_AUTH_ID: u8 = 0x01;

/// Reason code explanations of Failure1/Failure2 (Base 2.0 Figure 452); the reason code itself
/// is always 01h, "authentication failure".
pub mod failure {
    pub const REASON_FAILED: u8 = 0x01;
    pub const FAILED: u8 = 0x01;
    pub const NOT_USABLE: u8 = 0x02;
    pub const CONCAT_MISMATCH: u8 = 0x03;
    pub const HASH_UNUSABLE: u8 = 0x04;
    pub const DHGROUP_UNUSABLE: u8 = 0x05;
    pub const INCORRECT_PAYLOAD: u8 = 0x06;
    pub const INCORRECT_MESSAGE: u8 = 0x07;

    /// Text for a reason code explanation.
    pub fn describe(code: u8) -> &'static str {
        match code {
            FAILED => "authentication failed",
            NOT_USABLE => "authentication protocol not usable",
            CONCAT_MISMATCH => "secure channel concatenation mismatch",
            HASH_UNUSABLE => "hash function not usable",
            DHGROUP_UNUSABLE => "DH group not usable",
            INCORRECT_PAYLOAD => "incorrect payload",
            INCORRECT_MESSAGE => "incorrect protocol message",
            _ => "unknown reason",
        }
    }
}

/// AUTH_Send / AUTH_Receive command fields (Base 2.0 Figures 371 and 374): CDW10 bits 15:8
/// SPSP0, 23:16 SPSP1, 31:24 SECP; CDW11 the transfer length (TL) or allocation length (AL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthCmd {
    pub secp: u8,
    pub spsp0: u8,
    pub spsp1: u8,
    /// TL (Send) or AL (Receive) in bytes.
    pub len: u32,
}

impl AuthCmd {
    /// DH-HMAC-CHAP command with length `len`.
    pub fn dhchap(len: u32) -> Self {
        AuthCmd { secp: SECP_NVME_AUTH, spsp0: SPSP_DHCHAP, spsp1: SPSP_DHCHAP, len }
    }
    pub fn parse(sqe: &Sqe) -> Self {
        let d10 = sqe.cdw10.get();
        AuthCmd { secp: (d10 >> 24) as u8, spsp0: (d10 >> 8) as u8, spsp1: (d10 >> 16) as u8, len: sqe.cdw11.get() }
    }
    pub fn write(&self, sqe: &mut Sqe) {
        sqe.cdw10.set((self.secp as u32) << 24 | (self.spsp1 as u32) << 16 | (self.spsp0 as u32) << 8);
        sqe.cdw11.set(self.len);
    }
}

/// DH-HMAC-CHAP_Negotiate header (Figure 442), followed by NAPD protocol descriptors.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct NegotiateHdr {
    pub auth_type: u8,
    pub auth_id: u8,
    pub rsvd: Le16,
    pub t_id: Le16,
    /// Secure channel concatenation (SC_C): 0 = none.
    pub sc_c: u8,
    /// Number of protocol descriptors (NAPD).
    pub napd: u8,
}
const _: () = assert!(core::mem::size_of::<NegotiateHdr>() == 8);

/// DH-HMAC-CHAP protocol descriptor (Figure 443): HALEN hash IDs at IDLIST[0..], DHLEN DH group
/// IDs at IDLIST[30..].
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ProtocolDescriptor {
    pub authid: u8,
    pub rsvd: u8,
    pub halen: u8,
    pub dhlen: u8,
    pub idlist: [u8; 60],
}
const _: () = assert!(core::mem::size_of::<ProtocolDescriptor>() == 64);
/// Most hash IDs / DH group IDs in a descriptor.
pub const MAX_HASH_IDS: usize = 30;
pub const MAX_DH_IDS: usize = 30;

/// DH-HMAC-CHAP_Challenge header (Figure 444), followed by HL bytes of C1 and DHVLEN bytes of
/// the controller's DH value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ChallengeHdr {
    pub auth_type: u8,
    pub auth_id: u8,
    pub rsvd1: Le16,
    pub t_id: Le16,
    pub hl: u8,
    pub rsvd2: u8,
    pub hashid: u8,
    pub dhgid: u8,
    pub dhvlen: Le16,
    pub seqnum: Le32,
}
const _: () = assert!(core::mem::size_of::<ChallengeHdr>() == 16);

/// DH-HMAC-CHAP_Reply header (Figure 445), followed by HL bytes of R1, HL bytes of C2 (zeros
/// when CVALID is 0) and DHVLEN bytes of the host's DH value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ReplyHdr {
    pub auth_type: u8,
    pub auth_id: u8,
    pub rsvd1: Le16,
    pub t_id: Le16,
    pub hl: u8,
    pub rsvd2: u8,
    /// C2 is valid: the host asks the controller to authenticate (bidirectional).
    pub cvalid: u8,
    pub rsvd3: u8,
    pub dhvlen: Le16,
    /// S2; 0 when the host does not authenticate the controller.
    pub seqnum: Le32,
}
const _: () = assert!(core::mem::size_of::<ReplyHdr>() == 16);

/// DH-HMAC-CHAP_Success1 header (Figure 446), followed by HL bytes of R2 when RVALID is set.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Success1Hdr {
    pub auth_type: u8,
    pub auth_id: u8,
    pub rsvd1: Le16,
    pub t_id: Le16,
    pub hl: u8,
    pub rsvd2: u8,
    pub rvalid: u8,
    pub rsvd3: [u8; 7],
}
const _: () = assert!(core::mem::size_of::<Success1Hdr>() == 16);

/// DH-HMAC-CHAP_Success2 (Figure 447).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Success2Hdr {
    pub auth_type: u8,
    pub auth_id: u8,
    pub rsvd1: Le16,
    pub t_id: Le16,
    pub rsvd2: [u8; 10],
}
const _: () = assert!(core::mem::size_of::<Success2Hdr>() == 16);

/// AUTH_Failure1 / AUTH_Failure2 (Figure 451).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct FailureHdr {
    pub auth_type: u8,
    pub auth_id: u8,
    pub rsvd1: Le16,
    pub t_id: Le16,
    /// Reason code (REASON_FAILED).
    pub rescode: u8,
    /// Reason code explanation (`failure::*`).
    pub rescode_exp: u8,
}
const _: () = assert!(core::mem::size_of::<FailureHdr>() == 8);

/// A parsed (or to be built) authentication message. The variable-length values are owned.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    Negotiate { tid: u16, sc_c: u8, hashes: Vec<u8>, dhgroups: Vec<u8> },
    Challenge { tid: u16, hashid: u8, dhgid: u8, seqnum: u32, c1: Vec<u8>, dhv: Vec<u8> },
    Reply { tid: u16, seqnum: u32, r1: Vec<u8>, c2: Option<Vec<u8>>, dhv: Vec<u8> },
    Success1 { tid: u16, hl: u8, r2: Option<Vec<u8>> },
    Success2 { tid: u16 },
    Failure1 { tid: u16, rescode: u8, rescode_exp: u8 },
    Failure2 { tid: u16, rescode: u8, rescode_exp: u8 },
}

impl std::fmt::Debug for Message {
    // Challenges, responses and DH values are left out: they are key-derived or session material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Negotiate { tid, sc_c, hashes, dhgroups } => {
                write!(f, "Negotiate(tid {tid}, sc_c {sc_c}, hashes {hashes:?}, dhgroups {dhgroups:?})")
            }
            Message::Challenge { tid, hashid, dhgid, c1, dhv, .. } => {
                write!(f, "Challenge(tid {tid}, hash {hashid}, dhgroup {dhgid}, hl {}, dhvlen {})", c1.len(), dhv.len())
            }
            Message::Reply { tid, r1, c2, dhv, .. } => {
                write!(f, "Reply(tid {tid}, hl {}, cvalid {}, dhvlen {})", r1.len(), c2.is_some(), dhv.len())
            }
            Message::Success1 { tid, hl, r2 } => write!(f, "Success1(tid {tid}, hl {hl}, rvalid {})", r2.is_some()),
            Message::Success2 { tid } => write!(f, "Success2(tid {tid})"),
            Message::Failure1 { tid, rescode, rescode_exp } => {
                write!(f, "Failure1(tid {tid}, reason {rescode:#x}/{rescode_exp:#x})")
            }
            Message::Failure2 { tid, rescode, rescode_exp } => {
                write!(f, "Failure2(tid {tid}, reason {rescode:#x}/{rescode_exp:#x})")
            }
        }
    }
}

/// Take `n` bytes at `*off` from `b`, or fail with Incorrect Payload.
fn take<'a>(b: &'a [u8], off: &mut usize, n: usize) -> Result<&'a [u8], u8> {
    let end = off.checked_add(n).filter(|&e| e <= b.len()).ok_or(failure::INCORRECT_PAYLOAD)?;
    let s = &b[*off..end];
    *off = end;
    Ok(s)
}

fn hdr<T: FromBytes>(b: &[u8]) -> Result<T, u8> {
    T::read_from_prefix(b).map(|(h, _)| h).map_err(|_| failure::INCORRECT_PAYLOAD)
}

impl Message {
    pub fn tid(&self) -> u16 {
        match self {
            Message::Negotiate { tid, .. }
            | Message::Challenge { tid, .. }
            | Message::Reply { tid, .. }
            | Message::Success1 { tid, .. }
            | Message::Success2 { tid }
            | Message::Failure1 { tid, .. }
            | Message::Failure2 { tid, .. } => *tid,
        }
    }

    /// Parse a message. `Err` carries the failure reason code explanation to report
    /// (Incorrect Payload for truncated or inconsistent lengths, Incorrect Message for an
    /// unknown AUTH_TYPE / AUTH_ID). Trailing bytes (the rest of an AL-sized buffer) are ignored.
    pub fn parse(b: &[u8]) -> Result<Message, u8> {
        if b.len() < 2 {
            return Err(failure::INCORRECT_PAYLOAD);
        }
        let mut off = 16usize;
        match (b[0], b[1]) {
            (auth_type::COMMON, auth_id::NEGOTIATE) => {
                let h: NegotiateHdr = hdr(b)?;
                off = 8;
                if h.napd == 0 {
                    return Err(failure::NOT_USABLE);
                }
                // Only the first descriptor matters: DH-HMAC-CHAP is the only protocol defined.
                let d: ProtocolDescriptor = hdr(take(b, &mut off, 64)?)?;
                if d.authid != DHCHAP_AUTH_ID {
                    return Err(failure::NOT_USABLE);
                }
                let (ha, dh) = (d.halen as usize, d.dhlen as usize);
                if ha > MAX_HASH_IDS || dh > MAX_DH_IDS {
                    return Err(failure::INCORRECT_PAYLOAD);
                }
                Ok(Message::Negotiate {
                    tid: h.t_id.get(),
                    sc_c: h.sc_c,
                    hashes: d.idlist[..ha].to_vec(),
                    dhgroups: d.idlist[30..30 + dh].to_vec(),
                })
            }
            (auth_type::DHCHAP, auth_id::CHALLENGE) => {
                let h: ChallengeHdr = hdr(b)?;
                let c1 = take(b, &mut off, h.hl as usize)?.to_vec();
                let dhv = take(b, &mut off, h.dhvlen.get() as usize)?.to_vec();
                Ok(Message::Challenge {
                    tid: h.t_id.get(),
                    hashid: h.hashid,
                    dhgid: h.dhgid,
                    seqnum: h.seqnum.get(),
                    c1,
                    dhv,
                })
            }
            (auth_type::DHCHAP, auth_id::REPLY) => {
                let h: ReplyHdr = hdr(b)?;
                let hl = h.hl as usize;
                let r1 = take(b, &mut off, hl)?.to_vec();
                let c2 = take(b, &mut off, hl)?;
                let c2 = (h.cvalid != 0).then(|| c2.to_vec());
                let dhv = take(b, &mut off, h.dhvlen.get() as usize)?.to_vec();
                Ok(Message::Reply { tid: h.t_id.get(), seqnum: h.seqnum.get(), r1, c2, dhv })
            }
            (auth_type::DHCHAP, auth_id::SUCCESS1) => {
                let h: Success1Hdr = hdr(b)?;
                let r2 = if h.rvalid & 1 != 0 { Some(take(b, &mut off, h.hl as usize)?.to_vec()) } else { None };
                Ok(Message::Success1 { tid: h.t_id.get(), hl: h.hl, r2 })
            }
            (auth_type::DHCHAP, auth_id::SUCCESS2) => {
                let h: Success2Hdr = hdr(b)?;
                Ok(Message::Success2 { tid: h.t_id.get() })
            }
            (auth_type::COMMON, id @ (auth_id::FAILURE1 | auth_id::FAILURE2)) => {
                let h: FailureHdr = hdr(b)?;
                let (tid, rescode, rescode_exp) = (h.t_id.get(), h.rescode, h.rescode_exp);
                Ok(if id == auth_id::FAILURE1 {
                    Message::Failure1 { tid, rescode, rescode_exp }
                } else {
                    Message::Failure2 { tid, rescode, rescode_exp }
                })
            }
            _ => Err(failure::INCORRECT_MESSAGE),
        }
    }

    /// The message's bytes. Lengths beyond the fields' ranges (HL over 255, more than 30 IDs,
    /// DHVLEN over 65535) are the caller's bug; they are truncated to what the field can say.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Message::Negotiate { tid, sc_c, hashes, dhgroups } => {
                let h = NegotiateHdr {
                    auth_type: auth_type::COMMON,
                    auth_id: auth_id::NEGOTIATE,
                    t_id: Le16::new(*tid),
                    sc_c: *sc_c,
                    napd: 1,
                    ..Default::default()
                };
                let ha = hashes.len().min(MAX_HASH_IDS);
                let dh = dhgroups.len().min(MAX_DH_IDS);
                let mut d = ProtocolDescriptor {
                    authid: DHCHAP_AUTH_ID,
                    rsvd: 0,
                    halen: ha as u8,
                    dhlen: dh as u8,
                    idlist: [0; 60],
                };
                d.idlist[..ha].copy_from_slice(&hashes[..ha]);
                d.idlist[30..30 + dh].copy_from_slice(&dhgroups[..dh]);
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(d.as_bytes());
            }
            Message::Challenge { tid, hashid, dhgid, seqnum, c1, dhv } => {
                let h = ChallengeHdr {
                    auth_type: auth_type::DHCHAP,
                    auth_id: auth_id::CHALLENGE,
                    t_id: Le16::new(*tid),
                    hl: c1.len() as u8,
                    hashid: *hashid,
                    dhgid: *dhgid,
                    dhvlen: Le16::new(dhv.len() as u16),
                    seqnum: Le32::new(*seqnum),
                    ..Default::default()
                };
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(c1);
                out.extend_from_slice(dhv);
            }
            Message::Reply { tid, seqnum, r1, c2, dhv } => {
                let h = ReplyHdr {
                    auth_type: auth_type::DHCHAP,
                    auth_id: auth_id::REPLY,
                    t_id: Le16::new(*tid),
                    hl: r1.len() as u8,
                    cvalid: c2.is_some() as u8,
                    dhvlen: Le16::new(dhv.len() as u16),
                    seqnum: Le32::new(*seqnum),
                    ..Default::default()
                };
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(r1);
                match c2 {
                    Some(c) => out.extend_from_slice(c),
                    None => out.resize(out.len() + r1.len(), 0),
                }
                out.extend_from_slice(dhv);
            }
            Message::Success1 { tid, hl, r2 } => {
                let h = Success1Hdr {
                    auth_type: auth_type::DHCHAP,
                    auth_id: auth_id::SUCCESS1,
                    t_id: Le16::new(*tid),
                    hl: *hl,
                    rvalid: r2.is_some() as u8,
                    ..Default::default()
                };
                out.extend_from_slice(h.as_bytes());
                if let Some(r) = r2 {
                    out.extend_from_slice(r);
                }
            }
            Message::Success2 { tid } => {
                let h = Success2Hdr {
                    auth_type: auth_type::DHCHAP,
                    auth_id: auth_id::SUCCESS2,
                    t_id: Le16::new(*tid),
                    ..Default::default()
                };
                out.extend_from_slice(h.as_bytes());
            }
            Message::Failure1 { tid, rescode, rescode_exp } | Message::Failure2 { tid, rescode, rescode_exp } => {
                let id = if matches!(self, Message::Failure1 { .. }) { auth_id::FAILURE1 } else { auth_id::FAILURE2 };
                let h = FailureHdr {
                    auth_type: auth_type::COMMON,
                    auth_id: id,
                    t_id: Le16::new(*tid),
                    rescode: *rescode,
                    rescode_exp: *rescode_exp,
                    ..Default::default()
                };
                out.extend_from_slice(h.as_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn layouts() {
        assert_eq!(offset_of!(NegotiateHdr, t_id), 4);
        assert_eq!(offset_of!(NegotiateHdr, napd), 7);
        assert_eq!(offset_of!(ChallengeHdr, hl), 6);
        assert_eq!(offset_of!(ChallengeHdr, hashid), 8);
        assert_eq!(offset_of!(ChallengeHdr, dhvlen), 10);
        assert_eq!(offset_of!(ChallengeHdr, seqnum), 12);
        assert_eq!(offset_of!(ReplyHdr, cvalid), 8);
        assert_eq!(offset_of!(ReplyHdr, dhvlen), 10);
        assert_eq!(offset_of!(ReplyHdr, seqnum), 12);
        assert_eq!(offset_of!(Success1Hdr, rvalid), 8);
        assert_eq!(offset_of!(FailureHdr, rescode_exp), 7);
        // Command: SPSP0 byte 41, SPSP1 byte 42, SECP byte 43, TL/AL bytes 47:44 of the SQE.
        let mut sqe = Sqe::default();
        AuthCmd::dhchap(0x1234).write(&mut sqe);
        let b = sqe.as_bytes();
        assert_eq!(&b[40..48], &[0, 1, 1, 0xe9, 0x34, 0x12, 0, 0]);
        assert_eq!(AuthCmd::parse(&sqe), AuthCmd::dhchap(0x1234));
    }

    #[test]
    fn linux_negotiate_bytes() {
        // What Linux's nvme_auth_set_dhchap_negotiate_data sends (transaction 3).
        let m = Message::Negotiate { tid: 3, sc_c: 0, hashes: vec![1, 2, 3], dhgroups: vec![0, 1, 2, 3, 4, 5] };
        let b = m.to_bytes();
        assert_eq!(b.len(), 72);
        assert_eq!(&b[..12], &[0, 0, 0, 0, 3, 0, 0, 1, 1, 0, 3, 6]);
        assert_eq!(&b[12..15], &[1, 2, 3]);
        assert_eq!(&b[8 + 4 + 30..8 + 4 + 36], &[0, 1, 2, 3, 4, 5]);
        assert_eq!(Message::parse(&b), Ok(m));
    }

    #[test]
    fn round_trips() {
        let msgs = [
            Message::Challenge { tid: 9, hashid: 1, dhgid: 1, seqnum: 77, c1: vec![7; 32], dhv: vec![9; 256] },
            Message::Challenge { tid: 9, hashid: 3, dhgid: 0, seqnum: 77, c1: vec![7; 64], dhv: vec![] },
            Message::Reply { tid: 9, seqnum: 0, r1: vec![1; 48], c2: None, dhv: vec![] },
            Message::Reply { tid: 9, seqnum: 5, r1: vec![1; 32], c2: Some(vec![2; 32]), dhv: vec![3; 256] },
            Message::Success1 { tid: 9, hl: 32, r2: None },
            Message::Success1 { tid: 9, hl: 32, r2: Some(vec![4; 32]) },
            Message::Success2 { tid: 9 },
            Message::Failure1 { tid: 9, rescode: 1, rescode_exp: failure::FAILED },
            Message::Failure2 { tid: 9, rescode: 1, rescode_exp: failure::HASH_UNUSABLE },
        ];
        for m in msgs {
            let mut b = m.to_bytes();
            assert_eq!(Message::parse(&b).as_ref(), Ok(&m));
            // A 4 KiB receive buffer: trailing zeros are ignored.
            b.resize(4096, 0);
            assert_eq!(Message::parse(&b).as_ref(), Ok(&m));
        }
    }

    #[test]
    fn hostile_lengths() {
        // HL / DHVLEN pointing past the buffer.
        let mut b = Message::Challenge { tid: 1, hashid: 1, dhgid: 1, seqnum: 1, c1: vec![0; 32], dhv: vec![0; 256] }
            .to_bytes();
        b.truncate(16 + 32 + 100);
        assert_eq!(Message::parse(&b), Err(failure::INCORRECT_PAYLOAD));
        let mut r = Message::Reply { tid: 1, seqnum: 1, r1: vec![0; 32], c2: None, dhv: vec![] }.to_bytes();
        r[6] = 255;
        assert_eq!(Message::parse(&r), Err(failure::INCORRECT_PAYLOAD));
        let mut n = Message::Negotiate { tid: 1, sc_c: 0, hashes: vec![1], dhgroups: vec![0] }.to_bytes();
        n[10] = 31;
        assert_eq!(Message::parse(&n), Err(failure::INCORRECT_PAYLOAD));
        n[10] = 1;
        n[7] = 0;
        assert_eq!(Message::parse(&n), Err(failure::NOT_USABLE));
        assert_eq!(Message::parse(&n[..20]), Err(failure::NOT_USABLE));
        n[7] = 1;
        assert_eq!(Message::parse(&n[..20]), Err(failure::INCORRECT_PAYLOAD));
        assert_eq!(Message::parse(&[1, 0x42, 0, 0]), Err(failure::INCORRECT_MESSAGE));
        assert_eq!(Message::parse(&[1]), Err(failure::INCORRECT_PAYLOAD));
        for len in 0..40 {
            let _ = Message::parse(&vec![0xff; len]);
            let _ = Message::parse(&[&[1u8, 2][..], &vec![0xff; len]].concat());
        }
    }
}
