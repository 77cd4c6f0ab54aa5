//! The DH-HMAC-CHAP computations (NVMe Base 2.0 section 8.13.5.3 - 8.13.5.6), as Linux computes
//! them (drivers/nvme/host/auth.c, drivers/nvme/target/auth.c):
//!
//! ```text
//! Kh' = transform(Kh, NQNh)              Kc' = transform(Kc, NQNc)          (secret.rs)
//! Ca  = C                                 (null DH group)
//! Ca  = HMAC(H(Ks), C)                    (ffdhe group; Ks = g^(xy) mod p, padded to |p|)
//! R1  = HMAC(Kh', Ca1 || S1 || T || 00h || "HostHost"   || NQNh || 00h || NQNc)
//! R2  = HMAC(Kc', Ca2 || S2 || T || 00h || "Controller" || NQNc || 00h || NQNh)
//! ```
//!
//! with S1/S2 little-endian 32-bit and T (the transaction ID) little-endian 16-bit; HMAC and H
//! use the hash negotiated for the transaction.

use super::ffdhe;
use super::secret::{digest, hmac_parts};
use super::{random_bytes, wipe, DhGroup, HashId, Secret};
use num_bigint::BigUint;
use std::sync::Arc;

/// Who computes a response: the host answers C1 (R1), the controller answers C2 (R2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Host,
    Controller,
}

/// Inputs of one response computation.
pub struct ResponseInput<'a> {
    pub hash: HashId,
    /// The challenge as sent (C1 or C2), `hash.len()` bytes.
    pub challenge: &'a [u8],
    /// S1 or S2.
    pub seqnum: u32,
    pub tid: u16,
    pub hostnqn: &'a str,
    pub subnqn: &'a str,
    /// The DH session key Ks when a DH group is in use.
    pub session_key: Option<&'a [u8]>,
}

/// The augmented challenge `HMAC(H(Ks), C)` (Linux `nvme_auth_augmented_challenge`).
pub fn augmented_challenge(hash: HashId, session_key: &[u8], challenge: &[u8]) -> Vec<u8> {
    let mut hk = digest(hash, session_key);
    let ca = hmac_parts(hash, &hk, &[challenge]);
    wipe(&mut hk);
    ca
}

/// The response R1 (`Role::Host`, keyed with the host's secret) or R2 (`Role::Controller`,
/// keyed with the controller's secret).
pub fn response(role: Role, secret: &Secret, inp: &ResponseInput<'_>) -> Vec<u8> {
    let (label, first, second): (&[u8], &str, &str) = match role {
        Role::Host => (b"HostHost", inp.hostnqn, inp.subnqn),
        Role::Controller => (b"Controller", inp.subnqn, inp.hostnqn),
    };
    let mut key = secret.transform(first);
    let ca = match inp.session_key {
        Some(ks) => augmented_challenge(inp.hash, ks, inp.challenge),
        None => inp.challenge.to_vec(),
    };
    let r = hmac_parts(
        inp.hash,
        &key,
        &[
            &ca,
            &inp.seqnum.to_le_bytes(),
            &inp.tid.to_le_bytes(),
            &[0],
            label,
            first.as_bytes(),
            &[0],
            second.as_bytes(),
        ],
    );
    wipe(&mut key);
    r
}

/// Why a peer's DH value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DhError {
    #[error("the null DH group has no key exchange")]
    NullGroup,
    #[error("DH public value of {0} bytes for a group of {1}")]
    Length(usize, usize),
    #[error("DH public value outside 2..=p-2")]
    Range,
}

/// Bytes of the random private exponent: 512 bits, at least twice the security strength of every
/// ffdhe group (RFC 7919 section 5.2 asks for 2x; ffdhe8192 is rated ~200 bits).
const PRIVATE_KEY_BYTES: usize = 64;

fn parse_prime(group: DhGroup) -> Option<BigUint> {
    let hex = match group {
        DhGroup::Null => return None,
        DhGroup::Ffdhe2048 => ffdhe::FFDHE2048,
        DhGroup::Ffdhe3072 => ffdhe::FFDHE3072,
        DhGroup::Ffdhe4096 => ffdhe::FFDHE4096,
        DhGroup::Ffdhe6144 => ffdhe::FFDHE6144,
        DhGroup::Ffdhe8192 => ffdhe::FFDHE8192,
    };
    BigUint::parse_bytes(hex.as_bytes(), 16)
}

/// One ffdhe group's parameters (RFC 7919, generator 2), parsed once and shared by every key
/// pair of the group.
pub struct FfdheGroup {
    group: DhGroup,
    p: BigUint,
}

impl std::fmt::Debug for FfdheGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FfdheGroup").field(&self.group).finish()
    }
}

impl FfdheGroup {
    /// Parse `group`'s prime; `Err` for the null group.
    pub fn new(group: DhGroup) -> Result<FfdheGroup, DhError> {
        let p = parse_prime(group).ok_or(DhError::NullGroup)?;
        Ok(FfdheGroup { group, p })
    }

    pub fn group(&self) -> DhGroup {
        self.group
    }
}

/// Every ffdhe group, parsed once: a `Target` holds one set for all its poll groups, so a
/// handshake never re-parses a prime.
#[derive(Debug)]
pub struct FfdheGroups {
    /// Indexed by DH group identifier - 1.
    groups: Vec<Arc<FfdheGroup>>,
}

impl Default for FfdheGroups {
    fn default() -> Self {
        Self::new()
    }
}

impl FfdheGroups {
    pub fn new() -> Self {
        let groups = DhGroup::ALL[1..].iter().filter_map(|g| FfdheGroup::new(*g).ok().map(Arc::new)).collect();
        FfdheGroups { groups }
    }

    /// The parameters of `group` (`None` for the null group).
    pub fn get(&self, group: DhGroup) -> Option<&Arc<FfdheGroup>> {
        self.groups.iter().find(|g| g.group == group)
    }
}

/// Big-endian bytes of `v`, left-padded with zeros to `len` (as Linux's kpp API returns them).
fn to_padded(v: &BigUint, len: usize) -> Vec<u8> {
    let b = v.to_bytes_be();
    let mut out = vec![0u8; len.saturating_sub(b.len())];
    out.extend_from_slice(&b);
    out
}

/// One side's ephemeral Diffie-Hellman key pair in an ffdhe group (generator 2).
pub struct DhKeyPair {
    params: Arc<FfdheGroup>,
    x: BigUint,
    public: Vec<u8>,
}

impl std::fmt::Debug for DhKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhKeyPair").field("group", &self.params.group).field("private", &"<redacted>").finish()
    }
}

impl DhKeyPair {
    /// A fresh key pair in `params`' group. One modular exponentiation (tens of ms for
    /// ffdhe8192): the target runs it as deferred work (`crate::deferred`), off the poll group.
    pub fn generate(params: &Arc<FfdheGroup>) -> DhKeyPair {
        let mut xb = [0u8; PRIVATE_KEY_BYTES];
        random_bytes(&mut xb);
        xb[0] |= 0x80; // full length, never 0 or 1
        let r = Self::from_private(params, &xb);
        wipe(&mut xb);
        r
    }

    /// A key pair from a given private exponent (big-endian); for known-answer tests.
    pub fn from_private(params: &Arc<FfdheGroup>, x: &[u8]) -> DhKeyPair {
        let x = BigUint::from_bytes_be(x);
        let y = BigUint::from(2u32).modpow(&x, &params.p);
        let public = to_padded(&y, params.group.value_len());
        DhKeyPair { params: params.clone(), x, public }
    }

    pub fn group(&self) -> DhGroup {
        self.params.group
    }

    /// The group parameters this pair was made from.
    pub fn params(&self) -> &Arc<FfdheGroup> {
        &self.params
    }

    /// g^x mod p, big-endian, `group.value_len()` bytes (the DHV field).
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// The session key Ks = peer^x mod p, `group.value_len()` bytes. The peer's value must be
    /// the group's size (leading zeros included, as Linux sends it) and in 2..=p-2. One modular
    /// exponentiation, like `generate`.
    pub fn shared_secret(&self, peer: &[u8]) -> Result<Vec<u8>, DhError> {
        let len = self.params.group.value_len();
        if peer.len() != len {
            return Err(DhError::Length(peer.len(), len));
        }
        let y = BigUint::from_bytes_be(peer);
        let one = BigUint::from(1u32);
        let p = &self.params.p;
        if y <= one || y >= p - &one {
            return Err(DhError::Range);
        }
        Ok(to_padded(&y.modpow(&self.x, p), len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:9d2f4c1e-7b8a-4e36-a5c0-3f1d6e2b8a47";
    const SUBNQN: &str = "nqn.2016-06.io.nvmf-rs:test";

    // Known answers computed independently (Python hmac/hashlib, following the kernel's
    // nvme_auth_transform_key / nvmet_auth_host_hash / nvmet_auth_ctrl_hash) for the secret
    // 00 01 .. 1f with transform SHA-256, challenge 0x40 0x41 .. (hl bytes), S 0x01020304, T 7.

    fn input<'a>(hash: HashId, challenge: &'a [u8], session_key: Option<&'a [u8]>) -> ResponseInput<'a> {
        ResponseInput { hash, challenge, seqnum: 0x0102_0304, tid: 7, hostnqn: HOSTNQN, subnqn: SUBNQN, session_key }
    }

    fn chal(n: usize) -> Vec<u8> {
        (0x40..0x40 + n as u8).collect()
    }

    #[test]
    fn response_known_answers() {
        let key: Vec<u8> = (0..32).collect();
        let s = Secret::from_key(Some(HashId::Sha256), &key).unwrap();
        for (h, want_host, want_ctrl) in KAT {
            let c = chal(h.len());
            let inp = input(h, &c, None);
            assert_eq!(response(Role::Host, &s, &inp), hex(want_host), "R1 {h:?}");
            assert_eq!(response(Role::Controller, &s, &inp), hex(want_ctrl), "R2 {h:?}");
        }
        // With a session key: the challenge is augmented first.
        let ks: &[u8] = &[0x5a; 256];
        let c = chal(32);
        let inp = input(HashId::Sha256, &c, Some(ks));
        assert_eq!(response(Role::Host, &s, &inp), hex(KAT_AUGMENTED));
        assert_eq!(augmented_challenge(HashId::Sha256, ks, &chal(32)), hex(KAT_CA));
    }

    #[test]
    fn dh_agreement_and_known_answer() {
        let groups = FfdheGroups::new();
        let g = groups.get(DhGroup::Ffdhe2048).unwrap();
        let a = DhKeyPair::from_private(g, &[0x11; 64]);
        let b = DhKeyPair::from_private(g, &[0x22; 64]);
        assert_eq!(a.public().len(), 256);
        let k1 = a.shared_secret(b.public()).unwrap();
        let k2 = b.shared_secret(a.public()).unwrap();
        assert_eq!(k1, k2);
        assert_eq!(k1.len(), 256);
        assert_eq!(digest(HashId::Sha256, &k1), hex(KAT_DH_2048_SHA256_OF_KS));
        // Random pairs agree too.
        let c = DhKeyPair::generate(g);
        // Every pair shares the group's one parsed prime.
        assert!(Arc::ptr_eq(c.params(), a.params()) && Arc::ptr_eq(c.params(), g));
        assert_eq!(c.shared_secret(a.public()).unwrap(), a.shared_secret(c.public()).unwrap());
        // Bad peer values.
        assert_eq!(a.shared_secret(&[0u8; 255]), Err(DhError::Length(255, 256)));
        let mut one = vec![0u8; 256];
        one[255] = 1;
        assert_eq!(a.shared_secret(&one), Err(DhError::Range));
        assert_eq!(a.shared_secret(&[0xff; 256]), Err(DhError::Range));
        assert!(FfdheGroup::new(DhGroup::Null).is_err());
        assert!(groups.get(DhGroup::Null).is_none());
    }

    #[test]
    fn primes_are_rfc7919_shaped() {
        let groups = FfdheGroups::new();
        for g in &DhGroup::ALL[1..] {
            let p = &groups.get(*g).unwrap().p;
            assert_eq!(groups.get(*g).unwrap().group(), *g);
            assert_eq!(p.bits() as usize, g.value_len() * 8, "{g:?}");
            // Top and bottom 64 bits are all ones (RFC 7919 appendix A construction).
            let b = p.to_bytes_be();
            assert!(b[..8].iter().chain(&b[b.len() - 8..]).all(|&x| x == 0xff), "{g:?}");
        }
        // Fermat check of the smallest group.
        let p = &groups.get(DhGroup::Ffdhe2048).unwrap().p;
        assert_eq!(BigUint::from(2u32).modpow(&(p - 1u32), p), BigUint::from(1u32));
    }

    // Computed with Python's hmac/hashlib from the formulas in the module comment (and pow()
    // for the DH value), independently of this code.
    const KAT: [(HashId, &str, &str); 3] = [
        (
            HashId::Sha256,
            "16775a378ed50a0b07306f64f271a643abcd29608babae67441b6cc89b861c8c",
            "dbecfb0a3b679b8c7baa98bfb6d03c6d1e0fa7e3a7c868de2235cd780801e899",
        ),
        (
            HashId::Sha384,
            "88459e7e40354718873d54a212ff27890b06d185794569063028736142c5431fd974442e3ffa724ddb51a575d81cd1d2",
            "18c1e9645b6fe201ac123ddca63a6938008da4c3f84af7bfb533947f23250f8d7450ca2650be27f8606dffd8aa366268",
        ),
        (
            HashId::Sha512,
            "726642d462c5bdd71227501d7d5b57a2384072ceae1822afd79c79b07d179ce106bf25698acce033a2ea2bcf4623fd02f23269a42d1f4bc966c652db98cab802",
            "7803554790ef4fc362f40d7c23b980a596dea1377c5e5447a57ba32f8e257301fb0631803b857a8cea4d8748794e0ff2d92cd60f2eba600b216a72debfcfd03b",
        ),
    ];
    const KAT_AUGMENTED: &str = "06fc622c1ec9fb293df456da75977f5b8e12fb26dd6fe9d8d27e1304e9800175";
    const KAT_CA: &str = "3653adb3193d797eedcc27c3c929ffcd4e270ea24f8de7311ff6f2ad590f3109";
    const KAT_DH_2048_SHA256_OF_KS: &str = "cd1e876da2686813dd5ed662229427fcc05862469b0c73532f79872ba486bd74";
}
