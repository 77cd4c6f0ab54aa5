//! The NVMe/RDMA pieces the target's connections and the host client share (NVMe/RDMA
//! Transport Spec 1.0b): capsule sizes, keyed SGL data blocks, send-queue work requests and
//! their IDs. Both sides post work requests through the verbs layer (`verbs.rs`); neither
//! reaches into the other's connection state.

use crate::spec::sqe::sgl_type;
use crate::spec::SglDescriptor;
use zerocopy::{FromBytes, IntoBytes};

/// Size of a command capsule's SQE.
pub(crate) const SQE_SIZE: usize = 64;
/// Keyed SGL Data Block subtypes (RDMA Transport Spec Figure 3).
pub(crate) const KEYED_SUBTYPE_ADDRESS: u8 = 0x0;
pub(crate) const KEYED_SUBTYPE_INVALIDATE: u8 = 0xF;
/// Send-queue work request IDs carry this bit; receive IDs (SRQ buffer indexes) do not.
pub(crate) const WR_SEND: u64 = 1 << 63;

/// The ID of the send-queue work request for request `slot` of connection `conn`.
pub(crate) fn send_wr_id(conn: u32, slot: u16) -> u64 {
    WR_SEND | (conn as u64) << 16 | slot as u64
}
/// [`send_wr_id`] taken apart: (connection, slot).
pub(crate) fn split_send_wr_id(id: u64) -> (u32, u16) {
    (((id & !WR_SEND) >> 16) as u32, id as u16)
}

/// A send-queue work request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wr<'a> {
    /// RDMA READ `len` bytes from the host's `remote`/`rkey` into local memory.
    Read { local: u64, len: u32, lkey: u32, remote: u64, rkey: u32 },
    /// RDMA WRITE `len` bytes of local memory to the host's `remote`/`rkey`.
    Write { local: u64, len: u32, lkey: u32, remote: u64, rkey: u32 },
    /// SEND of a small buffer inline (the 16-byte response capsule); with Invalidate when
    /// `inv_rkey` is set.
    SendInline { data: &'a [u8], inv_rkey: Option<u32> },
    /// SEND from registered memory (host side: command capsules).
    Send { local: u64, len: u32, lkey: u32 },
}

/// A keyed SGL data block: host memory reachable by RDMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Keyed {
    pub addr: u64,
    pub len: u32,
    pub key: u32,
    pub invalidate: bool,
}

impl Keyed {
    /// Decode a Keyed SGL Data Block descriptor (Base 2.0 Figure 119): address in bytes 7:0,
    /// a 3-byte length in bytes 10:8, the key in bytes 14:11.
    pub fn decode(sgl: &SglDescriptor) -> Keyed {
        let b = sgl.as_bytes();
        Keyed {
            addr: u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8])),
            len: u32::from_le_bytes([b[8], b[9], b[10], 0]),
            key: u32::from_le_bytes(b[11..15].try_into().unwrap_or([0; 4])),
            invalidate: sgl.subtype() == KEYED_SUBTYPE_INVALIDATE,
        }
    }
    pub fn encode(addr: u64, len: u32, key: u32, invalidate: bool) -> SglDescriptor {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&addr.to_le_bytes());
        b[8..11].copy_from_slice(&len.to_le_bytes()[..3]);
        b[11..15].copy_from_slice(&key.to_le_bytes());
        let sub = if invalidate { KEYED_SUBTYPE_INVALIDATE } else { KEYED_SUBTYPE_ADDRESS };
        b[15] = sgl_type::KEYED_DATA_BLOCK << 4 | sub;
        SglDescriptor::read_from_bytes(&b).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wr_ids_round_trip() {
        let id = send_wr_id(0xabcdef, 77);
        assert!(id & WR_SEND != 0);
        assert_eq!(split_send_wr_id(id), (0xabcdef, 77));
    }

    #[test]
    fn keyed_sgl_known_bytes() {
        // addr 0x1122334455667788, len 0x012345, key 0xdeadbeef, invalidate (0x4F).
        let sgl = Keyed::encode(0x1122_3344_5566_7788, 0x01_2345, 0xdead_beef, true);
        assert_eq!(
            sgl.as_bytes(),
            &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x45, 0x23, 0x01, 0xef, 0xbe, 0xad, 0xde, 0x4f]
        );
        let k = Keyed::decode(&sgl);
        assert_eq!(k, Keyed { addr: 0x1122_3344_5566_7788, len: 0x01_2345, key: 0xdead_beef, invalidate: true });
        assert_eq!(Keyed::encode(1, 2, 3, false).identifier, 0x40);
    }
}
