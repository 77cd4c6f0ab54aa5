//! NVMe in-band authentication: DH-HMAC-CHAP (NVMe Base 2.0 section 8.13, TP 8006), shared by
//! the target (`cmd::auth`) and the host client (`host::auth`).
//!
//! - [`secret`]: the `DHHC-1:XX:<base64(key || CRC-32)>:` secret representation and the key
//!   transform.
//! - [`messages`]: the AUTH_Send / AUTH_Receive commands and the DH-HMAC-CHAP messages on the wire.
//! - [`dhchap`]: HMAC responses, the augmented challenge and ffdhe Diffie-Hellman.
//!
//! Secrets and everything derived from them never reach a log line or a `Debug` string.

pub mod dhchap;
mod ffdhe;
pub mod messages;
pub mod secret;

pub use dhchap::{DhKeyPair, FfdheGroup, FfdheGroups};
pub use secret::{Secret, SecretError};

/// Hash functions of DH-HMAC-CHAP (Base 2.0 Figure 447; `NVME_AUTH_HASH_*` in Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HashId {
    Sha256 = 1,
    Sha384 = 2,
    Sha512 = 3,
}

impl HashId {
    pub const ALL: [HashId; 3] = [HashId::Sha256, HashId::Sha384, HashId::Sha512];

    pub fn from_u8(v: u8) -> Option<HashId> {
        match v {
            1 => Some(HashId::Sha256),
            2 => Some(HashId::Sha384),
            3 => Some(HashId::Sha512),
            _ => None,
        }
    }
    /// Digest length in bytes (the HL field of the messages).
    #[allow(clippy::len_without_is_empty)] // a fixed digest size, never empty
    pub fn len(self) -> usize {
        match self {
            HashId::Sha256 => 32,
            HashId::Sha384 => 48,
            HashId::Sha512 => 64,
        }
    }
    /// Name as Linux and SPDK spell it ("sha256", ...).
    pub fn name(self) -> &'static str {
        match self {
            HashId::Sha256 => "sha256",
            HashId::Sha384 => "sha384",
            HashId::Sha512 => "sha512",
        }
    }
    /// Parse "sha256" / "sha384" / "sha512" (also "hmac(sha256)" and "SHA-256" forms).
    pub fn from_name(s: &str) -> Option<HashId> {
        let s = s.trim().to_ascii_lowercase().replace(['-', '(', ')'], "");
        let s = s.strip_prefix("hmac").unwrap_or(&s);
        HashId::ALL.into_iter().find(|h| h.name() == s)
    }
}

/// Diffie-Hellman groups of DH-HMAC-CHAP (Base 2.0 Figure 448; `NVME_AUTH_DHGROUP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DhGroup {
    /// No Diffie-Hellman exchange: plain HMAC-CHAP.
    Null = 0,
    Ffdhe2048 = 1,
    Ffdhe3072 = 2,
    Ffdhe4096 = 3,
    Ffdhe6144 = 4,
    Ffdhe8192 = 5,
}

impl DhGroup {
    pub const ALL: [DhGroup; 6] = [
        DhGroup::Null,
        DhGroup::Ffdhe2048,
        DhGroup::Ffdhe3072,
        DhGroup::Ffdhe4096,
        DhGroup::Ffdhe6144,
        DhGroup::Ffdhe8192,
    ];

    pub fn from_u8(v: u8) -> Option<DhGroup> {
        DhGroup::ALL.into_iter().find(|g| *g as u8 == v)
    }
    /// Name as Linux and SPDK spell it ("null", "ffdhe2048", ...).
    pub fn name(self) -> &'static str {
        match self {
            DhGroup::Null => "null",
            DhGroup::Ffdhe2048 => "ffdhe2048",
            DhGroup::Ffdhe3072 => "ffdhe3072",
            DhGroup::Ffdhe4096 => "ffdhe4096",
            DhGroup::Ffdhe6144 => "ffdhe6144",
            DhGroup::Ffdhe8192 => "ffdhe8192",
        }
    }
    pub fn from_name(s: &str) -> Option<DhGroup> {
        let s = s.trim().to_ascii_lowercase();
        DhGroup::ALL.into_iter().find(|g| g.name() == s)
    }
    /// Size of the group's public values and shared secret in bytes (0 for the null group).
    pub fn value_len(self) -> usize {
        match self {
            DhGroup::Null => 0,
            DhGroup::Ffdhe2048 => 256,
            DhGroup::Ffdhe3072 => 384,
            DhGroup::Ffdhe4096 => 512,
            DhGroup::Ffdhe6144 => 768,
            DhGroup::Ffdhe8192 => 1024,
        }
    }
}

/// Fill `buf` from the operating system's random source (challenges, DH private keys).
pub(crate) fn random_bytes(buf: &mut [u8]) {
    // getrandom only fails when the OS has no entropy source at all; there is no safe
    // fallback for key material, so that is fatal.
    getrandom::fill(buf).expect("operating system random source unavailable");
}

/// Random non-zero 32-bit sequence number (S1 / S2; 0 means "no bidirectional authentication").
pub(crate) fn random_seqnum() -> u32 {
    loop {
        let mut b = [0u8; 4];
        random_bytes(&mut b);
        let v = u32::from_le_bytes(b);
        if v != 0 {
            return v;
        }
    }
}

/// Constant-time comparison of two byte strings (lengths are not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Overwrite key material before its memory is freed (best effort; no `unsafe`).
pub(crate) fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::hint::black_box(&*buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        for h in HashId::ALL {
            assert_eq!(HashId::from_u8(h as u8), Some(h));
            assert_eq!(HashId::from_name(h.name()), Some(h));
        }
        assert_eq!(HashId::from_name("hmac(sha384)"), Some(HashId::Sha384));
        assert_eq!(HashId::from_name("SHA-512"), Some(HashId::Sha512));
        assert_eq!(HashId::from_u8(0), None);
        for g in DhGroup::ALL {
            assert_eq!(DhGroup::from_u8(g as u8), Some(g));
            assert_eq!(DhGroup::from_name(g.name()), Some(g));
        }
        assert_eq!(DhGroup::from_u8(6), None);
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"ab", b"abc"));
    }
}
