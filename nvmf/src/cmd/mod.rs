//! Command execution, one file per command group as the specs arrange them: fabrics
//! (NVMe-oF 1.1 section 3; in-band authentication in `auth`), admin (Base 2.0 section 5), NVM
//! I/O (NVM Command Set 1.0 section 3), and the discovery log (NVMe-oF 1.1 section 5).

pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod discovery;
pub(crate) mod fabrics;
pub(crate) mod features;
pub(crate) mod identify;
pub(crate) mod io;
pub(crate) mod log_page;
pub(crate) mod passthru;
pub(crate) mod reservation;

use crate::bdev::IoBuf;

/// Copy `src` into the command's data buffer (zero-filling the rest so pooled buffers never leak
/// old data), limited by the host's transfer length.
pub(crate) fn fill_data(buf: &mut Option<IoBuf>, src: &[u8]) {
    if let Some(b) = buf.as_mut() {
        let dst = b.as_mut_slice();
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
        dst[n..].fill(0);
    }
}
