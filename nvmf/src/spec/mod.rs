//! NVMe over Fabrics wire definitions (NVMe-oF 1.1) and the NVMe/TCP transport binding
//! (NVMe/TCP Transport Specification 1.0). The base-spec types (SQE, CQE, status, identify)
//! come from the `nvme-spec` crate and are re-exported here.

pub mod discovery;
pub mod fabrics;
pub mod tcp;

pub use nvme_spec::*;

/// Copy an ASCII string into a fixed, space- or NUL-padded field (truncating).
pub fn put_str(dst: &mut [u8], s: &str, pad: u8) {
    dst.fill(pad);
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// Read a NUL-terminated (or full-length) string field, lossily.
pub fn get_str(src: &[u8]) -> String {
    let end = src.iter().position(|&b| b == 0).unwrap_or(src.len());
    String::from_utf8_lossy(&src[..end]).trim_end().to_string()
}
