//! DH-HMAC-CHAP secrets in the representation of NVMe Base 2.0 section 8.13.5.8 (what
//! `nvme gen-dhchap-key` prints and Linux's `nvme_auth_extract_key` parses):
//!
//! ```text
//! DHHC-1:XX:<base64 of key || CRC-32(key) little-endian>:
//! ```
//!
//! `XX` names the hash used to transform the key before use (00 none, 01 SHA-256, 02 SHA-384,
//! 03 SHA-512); the key is 32, 48 or 64 bytes; the CRC is the standard (IEEE 802.3) CRC-32.

use super::{wipe, HashId};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384, Sha512};

/// Base64 with the standard alphabet; padding written, and accepted whether present or not.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a secret string was rejected. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("not a DHHC-1 secret (expected \"DHHC-1:XX:<base64>:\")")]
    Format,
    #[error("unknown key transformation hash {0:?} (00, 01, 02 or 03)")]
    Hash(String),
    #[error("invalid base64 in the secret")]
    Base64,
    #[error("secret key is {0} bytes; it must be 32, 48 or 64")]
    Length(usize),
    #[error("secret CRC-32 mismatch (mistyped secret?)")]
    Crc,
}

/// A DH-HMAC-CHAP secret: the key and the hash that transforms it. `Debug` shows neither the key
/// nor its CRC; the memory is overwritten on drop.
#[derive(Clone)]
pub struct Secret {
    transform: Option<HashId>,
    key: Vec<u8>,
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.key);
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("transform", &self.transform.map(HashId::name))
            .field("key_len", &self.key.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.transform == other.transform && super::ct_eq(&self.key, &other.key)
    }
}
impl Eq for Secret {}

impl std::str::FromStr for Secret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, SecretError> {
        Secret::parse(s)
    }
}

impl Secret {
    /// Parse `DHHC-1:XX:<base64>:` (the trailing colon is optional, surrounding whitespace is
    /// ignored).
    pub fn parse(s: &str) -> Result<Secret, SecretError> {
        let rest = s.trim().strip_prefix("DHHC-1:").ok_or(SecretError::Format)?;
        let (hash, b64) = rest.split_once(':').ok_or(SecretError::Format)?;
        let b64 = b64.strip_suffix(':').unwrap_or(b64);
        if hash.len() != 2 || b64.is_empty() || b64.contains(':') {
            return Err(SecretError::Format);
        }
        let transform = match hash {
            "00" => None,
            "01" => Some(HashId::Sha256),
            "02" => Some(HashId::Sha384),
            "03" => Some(HashId::Sha512),
            other => return Err(SecretError::Hash(other.to_string())),
        };
        let mut raw = B64.decode(b64).map_err(|_| SecretError::Base64)?;
        let r = Self::check(&raw);
        let secret = r.map(|n| Secret { transform, key: raw[..n].to_vec() });
        wipe(&mut raw);
        secret
    }

    /// Length of the key in `raw` (key || CRC-32 LE) once its length and CRC check out.
    fn check(raw: &[u8]) -> Result<usize, SecretError> {
        let n = raw.len().saturating_sub(4);
        if !matches!(n, 32 | 48 | 64) || raw.len() != n + 4 {
            return Err(SecretError::Length(n));
        }
        let crc = u32::from_le_bytes([raw[n], raw[n + 1], raw[n + 2], raw[n + 3]]);
        if crc32fast::hash(&raw[..n]) != crc {
            return Err(SecretError::Crc);
        }
        Ok(n)
    }

    /// A secret from raw key bytes (32, 48 or 64 of them).
    pub fn from_key(transform: Option<HashId>, key: &[u8]) -> Result<Secret, SecretError> {
        if !matches!(key.len(), 32 | 48 | 64) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Secret { transform, key: key.to_vec() })
    }

    /// A new random secret of `len` bytes (32, 48 or 64) from the OS random source.
    pub fn generate(transform: Option<HashId>, len: usize) -> Result<Secret, SecretError> {
        if !matches!(len, 32 | 48 | 64) {
            return Err(SecretError::Length(len));
        }
        let mut key = vec![0u8; len];
        super::random_bytes(&mut key);
        Ok(Secret { transform, key })
    }

    /// The `DHHC-1:XX:...:` representation. It contains the key: keep it out of logs.
    pub fn to_dhhc1(&self) -> String {
        let mut raw = Vec::with_capacity(self.key.len() + 4);
        raw.extend_from_slice(&self.key);
        raw.extend_from_slice(&crc32fast::hash(&self.key).to_le_bytes());
        let s = format!("DHHC-1:{:02}:{}:", self.transform.map_or(0, |h| h as u8), B64.encode(&raw));
        wipe(&mut raw);
        s
    }

    /// The hash that transforms the key (`XX` of the representation); `None` for 00.
    pub fn transform_hash(&self) -> Option<HashId> {
        self.transform
    }

    /// Key length in bytes.
    pub fn key_len(&self) -> usize {
        self.key.len()
    }

    #[cfg(test)]
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    /// The transformed key used as the HMAC key of the response (Base 2.0 section 8.13.5.8;
    /// Linux `nvme_auth_transform_key`): `HMAC-H(key, NQN || "NVMe-over-Fabrics")` with the
    /// secret's hash `H`, or the key itself for 00. `nqn` is the host NQN for the host's secret
    /// and the subsystem NQN for the controller's.
    pub fn transform(&self, nqn: &str) -> Vec<u8> {
        match self.transform {
            None => self.key.clone(),
            Some(h) => hmac_parts(h, &self.key, &[nqn.as_bytes(), b"NVMe-over-Fabrics"]),
        }
    }
}

/// HMAC-`h` keyed with `key` over the concatenation of `parts`.
pub(crate) fn hmac_parts(h: HashId, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! run {
        ($d:ty) => {{
            let mut m = <Hmac<$d> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }};
    }
    match h {
        HashId::Sha256 => run!(Sha256),
        HashId::Sha384 => run!(Sha384),
        HashId::Sha512 => run!(Sha512),
    }
}

/// Plain digest `h(data)`.
pub(crate) fn digest(h: HashId, data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    match h {
        HashId::Sha256 => Sha256::digest(data).to_vec(),
        HashId::Sha384 => Sha384::digest(data).to_vec(),
        HashId::Sha512 => Sha512::digest(data).to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:9d2f4c1e-7b8a-4e36-a5c0-3f1d6e2b8a47";

    fn counting(n: usize) -> Vec<u8> {
        (0..n as u8).collect()
    }

    // Vectors from nvme-cli 2.3: `nvme gen-dhchap-key -s <hex> -l <len> -m <hmac> -n <nqn>`
    // with the secret 00 01 02 .. (len - 1). With -m 0 it prints the key itself; with -m 1..3 it
    // prints the key already transformed for that NQN, i.e. transform(raw, nqn).

    #[test]
    fn parse_untransformed_nvme_cli() {
        let s = Secret::parse("DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:").unwrap();
        assert_eq!(s.transform_hash(), None);
        assert_eq!(s.key(), &counting(32)[..]);
        // `nvme check-dhchap-key` reports CRC 91267e8a for it.
        assert_eq!(crc32fast::hash(&counting(32)), 0x9126_7e8a);
        assert_eq!(s.to_dhhc1(), "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:");
        let s64 = Secret::parse(
            "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P4zODhA=:",
        )
        .unwrap();
        assert_eq!(s64.key(), &counting(64)[..]);
    }

    #[test]
    fn transform_matches_nvme_cli() {
        let cases = [
            (HashId::Sha256, 32, HOSTNQN, "DHHC-1:01:FXxHMF/wOdhX0qUZw2Cd4EvRbJ9L57chOXvRTS1yeX9f/gxI:"),
            (
                HashId::Sha384,
                48,
                HOSTNQN,
                "DHHC-1:02:rlOhR4DMi0r4r3BKceibnYgOTBmYedPdSW6WUw3Nk2y4zigGalN0/98rges46gDsdE2m+Q==:",
            ),
            (
                HashId::Sha512,
                64,
                HOSTNQN,
                "DHHC-1:03:tkXtMoNWCwhGPNWNxW7R0kwPwqq/ypzgrPEdcqdebbLegiJAaMmOI/I1MbHqpBrYYpac1LoXEvTGxOAl/f2AeXYCW+E=:",
            ),
            (HashId::Sha256, 32, "nqn.2016-06.io.nvmf-rs:host1", "DHHC-1:01:c72BkjlQHtSHqfldT1hBqwFOKQbaN6amKz+DFdb3hQ/3PBzH:"),
        ];
        for (h, len, nqn, printed) in cases {
            let raw = Secret::from_key(Some(h), &counting(len)).unwrap();
            let cli = Secret::parse(printed).unwrap();
            assert_eq!(cli.transform_hash(), Some(h));
            assert_eq!(raw.transform(nqn), cli.key(), "{h:?} {nqn}");
            assert_eq!(cli.to_dhhc1(), printed);
        }
    }

    #[test]
    fn rejects_bad_secrets() {
        let good = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:";
        assert_eq!(Secret::parse("DHHC-2:00:AAAA:"), Err(SecretError::Format));
        assert_eq!(Secret::parse("DHHC-1:00"), Err(SecretError::Format));
        assert_eq!(Secret::parse("DHHC-1:00::"), Err(SecretError::Format));
        assert_eq!(Secret::parse(&good.replace(":00:", ":04:")), Err(SecretError::Hash("04".into())));
        assert_eq!(Secret::parse(&good.replace("AAEC", "AAE!")), Err(SecretError::Base64));
        // One flipped bit in the key: CRC mismatch.
        assert_eq!(Secret::parse(&good.replace("AAEC", "AAED")), Err(SecretError::Crc));
        // 16-byte key.
        let mut raw = counting(16);
        raw.extend_from_slice(&crc32fast::hash(&counting(16)).to_le_bytes());
        assert_eq!(Secret::parse(&format!("DHHC-1:00:{}:", B64.encode(&raw))), Err(SecretError::Length(16)));
        // No trailing colon, unpadded base64 and whitespace are accepted.
        assert!(Secret::parse(" DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR\n").is_ok());
        let s48 = Secret::from_key(None, &counting(48)).unwrap().to_dhhc1();
        assert!(s48.ends_with("=:") || s48.ends_with(":"));
        assert!(Secret::parse(&s48.replace('=', "")).is_ok());
    }

    #[test]
    fn debug_redacts_key() {
        let s = Secret::parse("DHHC-1:01:FXxHMF/wOdhX0qUZw2Cd4EvRbJ9L57chOXvRTS1yeX9f/gxI:").unwrap();
        let d = format!("{s:?} {s:#?}");
        assert!(d.contains("redacted") && d.contains("sha256"));
        assert!(!d.contains("FXxHMF") && !d.contains("21, 124"), "{d}"); // 0x15 0x7c are the first key bytes
        let g = Secret::generate(Some(HashId::Sha512), 64).unwrap();
        assert_eq!(g.key_len(), 64);
        assert_eq!(Secret::parse(&g.to_dhhc1()).unwrap(), g);
    }
}
