//! Virtual-mode block devices: the `Bdev` trait and its RAM, null and file backings.
//!
//! A `Bdev` is shared by every poll group; each poll group opens its own `BdevChannel` on it and
//! drives that channel from its own thread, so the I/O path needs no lock. Data buffers move by
//! value through `submit` and come back in the completion, so nothing is allocated per I/O.

mod buf;
pub mod file;
pub mod iostat;
pub mod malloc;
pub mod null;
#[cfg(feature = "direct")]
pub mod nvme;
mod sync_channel;
#[cfg(test)]
mod test_util;

pub use buf::{BufPool, IoBuf};
pub use file::FileBdev;
pub use malloc::MallocBdev;
pub use null::NullBdev;
#[cfg(feature = "direct")]
pub use nvme::NvmeBdev;

use crate::spec::{Sqe, Status};

/// Errors creating or opening a bdev (never on the I/O path: I/O errors are `BdevStatus`).
#[derive(Debug, thiserror::Error)]
pub enum BdevError {
    #[error("invalid bdev parameter: {0}")]
    InvalidParam(String),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: String, source: std::io::Error },
    #[error("out of memory allocating {0} bytes")]
    NoMemory(u64),
}

/// What an I/O asks the bdev to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BdevOp {
    /// Fill `buf` (exactly `num_blocks * block_size` bytes) from the device.
    Read,
    /// Store `buf` (exactly `num_blocks * block_size` bytes); complete only once stored.
    Write,
    /// Compare `buf` with the device contents; `CompareMismatch` when they differ.
    Compare,
    /// Make earlier completed writes durable (fdatasync for files). No buffer.
    Flush,
    /// Zero `num_blocks` blocks at `offset_blocks`. No buffer.
    WriteZeroes,
    /// Deallocate the ranges in `buf`: Dataset Management range entries (NVM Command Set 1.0
    /// Figure 40: 16 bytes each, context attributes u32, length in blocks u32, starting LBA u64,
    /// little-endian), `buf.len() / 16` of them. `offset_blocks`/`num_blocks` are unused.
    Unmap,
}

/// One I/O request. `tag` is the caller's; it comes back unchanged in the completion.
#[derive(Debug)]
pub struct BdevIo {
    pub op: BdevOp,
    pub offset_blocks: u64,
    pub num_blocks: u64,
    pub buf: Option<IoBuf>,
    /// Force Unit Access (Write and WriteZeroes; NVM Command Set 1.0 section 3.2.6, CDW12 bit
    /// 30): complete only once the data is on non-volatile media, not just in a volatile write
    /// cache. Ignored by bdevs without one ([`Bdev::volatile_write_cache`] false).
    pub fua: bool,
    pub tag: u64,
}

/// How an I/O ended. The target maps these to NVMe status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BdevStatus {
    Success,
    /// Unrecovered read error.
    ReadError,
    /// Write fault.
    WriteError,
    /// Compare found a difference.
    CompareMismatch,
    /// Blocks beyond the end of the device.
    OutOfRange,
    /// The backing store has no space (e.g. a full file system).
    NoSpace,
    /// Malformed request (wrong buffer size, missing buffer).
    InvalidArg,
    /// The bdev does not support this operation.
    Unsupported,
    /// The device's own completion for a passthrough command ([`BdevChannel::submit_passthru`]):
    /// its NVMe status (success included) and DW0 go to the host unchanged.
    Nvme {
        status: Status,
        dw0: u32,
    },
}

/// A command passed through to an NVMe device unchanged except for what the bdev must own:
/// the NSID (set to the device's), the CID, and the data pointer (built from `buf`). Only for
/// bdevs whose [`Bdev::supports_passthru`] is true.
#[derive(Debug)]
pub struct PassthruIo {
    /// The host's command (NVM command set I/O opcode the target does not model).
    pub sqe: Sqe,
    /// Data: host-to-controller data received, or a buffer of the transfer length to fill.
    pub buf: Option<IoBuf>,
    /// Direction of `buf` (from the opcode's bits 1:0).
    pub host_to_ctrl: bool,
    /// The target computed the command's data length from its fields and it is `buf`'s
    /// length. `false` (passthrough trusting the hosts): the device decides how much it moves,
    /// so the bdev must describe to it, for everything it could transfer, memory that belongs
    /// to this command alone.
    pub exact_len: bool,
    pub tag: u64,
}

/// A finished I/O: the request's tag, its status, and its buffer handed back.
#[derive(Debug)]
pub struct BdevCompletion {
    pub tag: u64,
    pub status: BdevStatus,
    pub buf: Option<IoBuf>,
}

/// A block device. Shared (`Arc<dyn Bdev>`) by all poll groups.
pub trait Bdev: Send + Sync {
    /// Unique name (e.g. "Malloc0").
    fn name(&self) -> &str;
    /// Product name as SPDK reports it ("Malloc disk", "Null disk", "AIO disk").
    fn product_name(&self) -> &'static str;
    /// Logical block size in bytes (a power of two, >= 512).
    fn block_size(&self) -> u32;
    /// Number of logical blocks.
    fn num_blocks(&self) -> u64;
    /// Whether `op` is supported (Read/Write/Compare/Flush are always supported).
    fn supports(&self, op: BdevOp) -> bool;
    /// Whether the device has a volatile write cache that Flush must drain.
    fn volatile_write_cache(&self) -> bool {
        false
    }
    /// Whether deallocated blocks read back as zeroes (reported in Identify Namespace DLFEAT).
    fn deallocated_reads_zeroes(&self) -> bool {
        false
    }
    /// Make completed writes durable, blocking (control path only: controller shutdown).
    fn flush_blocking(&self) -> Result<(), BdevError> {
        Ok(())
    }
    /// Whether its channels take I/O commands the target does not model
    /// ([`BdevChannel::submit_passthru`]): true only for NVMe devices (direct mode).
    fn supports_passthru(&self) -> bool {
        false
    }
    /// Whether its channels lend DMA buffers ([`BdevChannel::alloc_buf`]) that transports
    /// should move data into and out of: true only for NVMe devices (direct mode).
    fn lends_buffers(&self) -> bool {
        false
    }
    /// Open a channel for one poll group (one thread).
    fn open_channel(&self) -> Result<Box<dyn BdevChannel>, BdevError>;
}

/// A per-poll-group I/O channel on a bdev. Used from one thread only.
pub trait BdevChannel: Send {
    /// Start an I/O. Its completion is reported by a later `poll`, never from inside `submit`,
    /// so callers never re-enter themselves. Never panics on a bad request: it completes with
    /// `InvalidArg` / `OutOfRange` instead.
    fn submit(&mut self, io: BdevIo);
    /// Move finished I/Os to `out` (appending) and return how many were added.
    fn poll(&mut self, out: &mut Vec<BdevCompletion>) -> usize;
    /// Number of submitted I/Os not yet returned by `poll`.
    fn outstanding(&self) -> usize;
    /// Start a passthrough command; it completes through `poll` (with `BdevStatus::Nvme` when
    /// the device answered). A channel that cannot pass commands through hands the request
    /// back at once (`Err`), and the caller answers Invalid Opcode. The default does that.
    // Handed back by value, not boxed: the I/O path allocates nothing.
    #[allow(clippy::result_large_err)]
    fn submit_passthru(&mut self, io: PassthruIo) -> Result<(), PassthruIo> {
        Err(io)
    }
    /// A data buffer of `len` bytes in memory the device reaches directly (direct mode: a DMA
    /// buffer of the channel's own pool), for the transport to receive host data into or to
    /// fill by a read and send from; it comes back in the I/O and goes back to its pool when
    /// dropped. `None` (the default, and when none is free) means: use an ordinary pool buffer.
    fn alloc_buf(&mut self, _len: usize) -> Option<IoBuf> {
        None
    }
}

/// Parse Dataset Management ranges from an Unmap buffer: (starting LBA, number of blocks).
pub fn dsm_ranges(buf: &[u8]) -> impl Iterator<Item = (u64, u32)> + '_ {
    buf.chunks_exact(16).map(|r| {
        let nlb = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
        let slba = u64::from_le_bytes([r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]]);
        (slba, nlb)
    })
}

/// Common request validation for bdev implementations: the range fits and the buffer has the
/// right size for the op. Returns the byte offset and byte length on success.
pub fn check_io(io: &BdevIo, block_size: u32, num_blocks: u64) -> Result<(u64, usize), BdevStatus> {
    match io.op {
        BdevOp::Flush => return Ok((0, 0)),
        BdevOp::Unmap => {
            let Some(buf) = io.buf.as_ref() else { return Err(BdevStatus::InvalidArg) };
            for (slba, nlb) in dsm_ranges(buf.as_slice()) {
                if slba.checked_add(nlb as u64).is_none_or(|end| end > num_blocks) {
                    return Err(BdevStatus::OutOfRange);
                }
            }
            return Ok((0, 0));
        }
        _ => {}
    }
    let end = io.offset_blocks.checked_add(io.num_blocks).ok_or(BdevStatus::OutOfRange)?;
    if end > num_blocks {
        return Err(BdevStatus::OutOfRange);
    }
    let bytes = io.num_blocks.checked_mul(block_size as u64).ok_or(BdevStatus::InvalidArg)?;
    let bytes = usize::try_from(bytes).map_err(|_| BdevStatus::InvalidArg)?;
    match io.op {
        BdevOp::Read | BdevOp::Write | BdevOp::Compare => match io.buf.as_ref() {
            Some(b) if b.len() == bytes => {}
            _ => return Err(BdevStatus::InvalidArg),
        },
        _ => {}
    }
    Ok((io.offset_blocks * block_size as u64, bytes))
}
