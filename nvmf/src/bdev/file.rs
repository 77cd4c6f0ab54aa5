//! File-backed bdev ("AIO disk"): a regular file or a block device, through the page cache.
//!
//! Why it is shaped this way:
//! - Each channel has its own `File` handle (`try_clone` of the one opened at `open`) and does
//!   synchronous positioned I/O (`read_exact_at` / `write_all_at`, i.e. pread/pwrite), so
//!   channels on different threads share no state and need no lock and no `unsafe`. A write
//!   completes only after `write_all_at` returned; because it went to the page cache, the
//!   device reports a volatile write cache and Flush is `fdatasync`.
//! - Force Unit Access: a FUA Write goes through a second handle opened with `O_DSYNC`, so that
//!   one `pwrite` returns only once its data (and the metadata needed to read it back) is on
//!   stable storage, without flushing anything else; a FUA Write Zeroes is followed by an
//!   `fdatasync`. Every such sync point is counted ([`FileBdev::sync_points`]) so tests can
//!   prove durable completions took the durable path and plain writes did not.
//! - The work happens inside `submit`, but the completion is queued in a pre-allocated
//!   `VecDeque` and only reported by `poll`, like the other backings.
//! - Nothing is allocated per I/O in steady state: WriteZeroes writes from a zero buffer the
//!   channel allocates once, and Compare reads chunk by chunk into a channel-owned scratch
//!   buffer that grows once, up to the same chunk size.
//! - Unmap is not supported (a hole punch would be file-system specific); the size is taken
//!   from the metadata for a regular file and by seeking to the end for a block device.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::malloc::check_geometry;
use super::sync_channel::{SyncChannel, SyncExecute};
use super::{check_io, Bdev, BdevChannel, BdevError, BdevIo, BdevOp, BdevStatus};

/// Size of each channel's zero buffer for WriteZeroes, and the chunk size of Compare reads.
const CHUNK: usize = 128 * 1024;

/// A bdev on a regular file or block device. Wrap it in an `Arc` to share it.
#[derive(Debug)]
pub struct FileBdev {
    name: String,
    path: String,
    file: File,
    /// The same file opened with `O_DSYNC`, for Force Unit Access writes.
    dsync: File,
    block_size: u32,
    num_blocks: u64,
    /// Sync points taken: `fdatasync` calls and `O_DSYNC` writes.
    sync_points: Arc<AtomicU64>,
}

impl FileBdev {
    /// Open `path` (a regular file or a block device) read-write with logical blocks of
    /// `block_size` bytes (a power of two, >= 512). The device has `size / block_size` blocks;
    /// a trailing partial block is not used.
    pub fn open(name: &str, path: impl AsRef<Path>, block_size: u32) -> Result<Self, BdevError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let io_err = |op, source| BdevError::Io { op, path: shown.clone(), source };
        let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| io_err("open", e))?;
        let meta = file.metadata().map_err(|e| io_err("stat", e))?;
        let ft = meta.file_type();
        let size = if ft.is_file() {
            meta.len()
        } else if ft.is_block_device() {
            file.seek(SeekFrom::End(0)).map_err(|e| io_err("seek", e))?
        } else {
            return Err(BdevError::InvalidParam(format!("{shown} is not a regular file or block device")));
        };
        check_geometry(block_size, 1)?;
        let num_blocks = size / block_size as u64;
        if num_blocks == 0 {
            return Err(BdevError::InvalidParam(format!(
                "{shown}: size {size} is smaller than one {block_size}-byte block"
            )));
        }
        check_geometry(block_size, num_blocks)?;
        let dsync = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .open(path)
            .map_err(|e| io_err("open O_DSYNC", e))?;
        Ok(FileBdev {
            name: name.to_owned(),
            path: shown,
            file,
            dsync,
            block_size,
            num_blocks,
            sync_points: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sync points taken so far, over all channels: each Flush, each FUA Write (an `O_DSYNC`
    /// write) and FUA Write Zeroes, and each shutdown flush. A plain Write takes none.
    pub fn sync_points(&self) -> u64 {
        self.sync_points.load(Ordering::Relaxed)
    }
}

impl Bdev for FileBdev {
    fn name(&self) -> &str {
        &self.name
    }
    fn product_name(&self) -> &'static str {
        "AIO disk"
    }
    fn block_size(&self) -> u32 {
        self.block_size
    }
    fn num_blocks(&self) -> u64 {
        self.num_blocks
    }
    fn supports(&self, op: BdevOp) -> bool {
        op != BdevOp::Unmap
    }
    fn volatile_write_cache(&self) -> bool {
        true
    }
    fn flush_blocking(&self) -> Result<(), BdevError> {
        self.sync_points.fetch_add(1, Ordering::Relaxed);
        self.file.sync_data().map_err(|source| BdevError::Io { op: "fdatasync", path: self.path.clone(), source })
    }
    fn open_channel(&self) -> Result<Box<dyn BdevChannel>, BdevError> {
        let dup =
            |f: &File| f.try_clone().map_err(|source| BdevError::Io { op: "dup", path: self.path.clone(), source });
        Ok(Box::new(SyncChannel::new(FileChannel {
            file: dup(&self.file)?,
            dsync: dup(&self.dsync)?,
            sync_points: self.sync_points.clone(),
            block_size: self.block_size,
            num_blocks: self.num_blocks,
            zeroes: vec![0u8; CHUNK].into_boxed_slice(),
            scratch: Vec::new(),
        })))
    }
}

struct FileChannel {
    file: File,
    /// `O_DSYNC` handle for FUA writes.
    dsync: File,
    sync_points: Arc<AtomicU64>,
    block_size: u32,
    num_blocks: u64,
    /// Zeroes for WriteZeroes, allocated once per channel.
    zeroes: Box<[u8]>,
    /// Compare's read buffer: grows once, to at most `CHUNK` bytes.
    scratch: Vec<u8>,
}

/// Map a failed write or flush to a status: out of space or quota is `NoSpace`, the rest is a
/// write fault.
fn write_status(e: &io::Error) -> BdevStatus {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => BdevStatus::NoSpace,
        _ => BdevStatus::WriteError,
    }
}

impl FileChannel {
    fn run(&mut self, io: &mut BdevIo) -> BdevStatus {
        if io.op == BdevOp::Unmap {
            return BdevStatus::Unsupported;
        }
        let (off, len) = match check_io(io, self.block_size, self.num_blocks) {
            Ok(r) => r,
            Err(status) => return status,
        };
        let result = match io.op {
            BdevOp::Read => match io.buf.as_mut() {
                Some(buf) => self.file.read_exact_at(buf.as_mut_slice(), off).map_err(|_| BdevStatus::ReadError),
                None => Err(BdevStatus::InvalidArg),
            },
            BdevOp::Write => match io.buf.as_ref() {
                Some(buf) => {
                    let file = if io.fua {
                        self.sync_points.fetch_add(1, Ordering::Relaxed);
                        &self.dsync
                    } else {
                        &self.file
                    };
                    file.write_all_at(buf.as_slice(), off).map_err(|e| write_status(&e))
                }
                None => Err(BdevStatus::InvalidArg),
            },
            BdevOp::Compare => match io.buf.as_ref() {
                Some(buf) => self.compare(buf.as_slice(), off),
                None => Err(BdevStatus::InvalidArg),
            },
            BdevOp::Flush => self.sync_data(),
            BdevOp::WriteZeroes => {
                self.write_zeroes(off, len).and_then(|()| if io.fua { self.sync_data() } else { Ok(()) })
            }
            BdevOp::Unmap => Err(BdevStatus::Unsupported),
        };
        match result {
            Ok(()) => BdevStatus::Success,
            Err(status) => status,
        }
    }

    fn sync_data(&self) -> Result<(), BdevStatus> {
        self.sync_points.fetch_add(1, Ordering::Relaxed);
        self.file.sync_data().map_err(|e| write_status(&e))
    }

    fn compare(&mut self, expected: &[u8], off: u64) -> Result<(), BdevStatus> {
        let want = expected.len().min(CHUNK);
        if self.scratch.len() < want {
            self.scratch.resize(want, 0);
        }
        let mut pos = off;
        for chunk in expected.chunks(CHUNK) {
            let got = &mut self.scratch[..chunk.len()];
            self.file.read_exact_at(got, pos).map_err(|_| BdevStatus::ReadError)?;
            if *got != *chunk {
                return Err(BdevStatus::CompareMismatch);
            }
            pos += chunk.len() as u64;
        }
        Ok(())
    }

    fn write_zeroes(&self, off: u64, len: usize) -> Result<(), BdevStatus> {
        let mut pos = off;
        let mut left = len;
        while left > 0 {
            let n = left.min(self.zeroes.len());
            self.file.write_all_at(&self.zeroes[..n], pos).map_err(|e| write_status(&e))?;
            pos += n as u64;
            left -= n;
        }
        Ok(())
    }
}

impl SyncExecute for FileChannel {
    fn execute(&mut self, io: &mut BdevIo) -> BdevStatus {
        FileChannel::run(self, io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bdev::test_util::*;
    use crate::bdev::IoBuf;
    use nvmf_test_support::pattern;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A uniquely named file in the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str, len: u64) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let p = std::env::temp_dir().join(format!("nvmf-filebdev-{}-{tag}-{n}-{nanos}", std::process::id()));
            let f = OpenOptions::new().write(true).create_new(true).open(&p).unwrap();
            f.set_len(len).unwrap();
            TempFile(p)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn open_params_and_errors() {
        // 1 MiB plus a partial block, which is not used.
        let t = TempFile::new("params", (1 << 20) + 100);
        let b = FileBdev::open("AIO0", &t.0, 4096).unwrap();
        assert_eq!(b.name(), "AIO0");
        assert_eq!(b.product_name(), "AIO disk");
        assert_eq!(b.block_size(), 4096);
        assert_eq!(b.num_blocks(), 256);
        assert!(b.volatile_write_cache());
        for op in [BdevOp::Read, BdevOp::Write, BdevOp::Compare, BdevOp::Flush, BdevOp::WriteZeroes] {
            assert!(b.supports(op));
        }
        assert!(!b.supports(BdevOp::Unmap));
        assert!(matches!(FileBdev::open("x", &t.0, 1000), Err(BdevError::InvalidParam(_))));
        let small = TempFile::new("small", 511);
        assert!(matches!(FileBdev::open("x", &small.0, 512), Err(BdevError::InvalidParam(_))));
        let missing = std::env::temp_dir().join(format!("nvmf-filebdev-missing-{}", std::process::id()));
        assert!(matches!(FileBdev::open("x", &missing, 512), Err(BdevError::Io { op: "open", .. })));
        // Not a regular file or block device.
        assert!(matches!(
            FileBdev::open("x", std::env::temp_dir(), 512),
            Err(BdevError::Io { .. } | BdevError::InvalidParam(_))
        ));
        if Path::new("/dev/null").exists() {
            assert!(matches!(FileBdev::open("x", "/dev/null", 512), Err(BdevError::InvalidParam(_))));
        }
    }

    #[test]
    fn write_read_back_compare_and_unmap_unsupported() {
        let t = TempFile::new("rw", 64 * 512);
        let b = FileBdev::open("f", &t.0, 512).unwrap();
        let mut ch = b.open_channel().unwrap();
        assert_eq!(read(&mut *ch, 0, 64, 512), vec![0; 64 * 512]);
        let data = pattern(3, 0, 5 * 512);
        let c = run(&mut *ch, BdevOp::Write, 7, 5, Some(IoBuf::from(data.clone())));
        assert_eq!(c.status, BdevStatus::Success);
        assert_eq!(c.buf.unwrap().as_slice(), &data[..]);
        assert_eq!(read(&mut *ch, 7, 5, 512), data);
        assert_eq!(read(&mut *ch, 6, 1, 512), vec![0; 512]);
        assert_eq!(read(&mut *ch, 12, 1, 512), vec![0; 512]);
        // The bytes are really in the file at the right place.
        let raw = std::fs::read(&t.0).unwrap();
        assert_eq!(&raw[7 * 512..12 * 512], &data[..]);
        // Another channel sees them.
        let mut ch2 = b.open_channel().unwrap();
        assert_eq!(read(&mut *ch2, 8, 2, 512), data[512..1536].to_vec());

        assert_eq!(run(&mut *ch, BdevOp::Compare, 7, 5, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        let mut bad = data.clone();
        bad[5 * 512 - 1] ^= 0xff;
        assert_eq!(run(&mut *ch, BdevOp::Compare, 7, 5, Some(IoBuf::from(bad))).status, BdevStatus::CompareMismatch);
        assert_eq!(run(&mut *ch, BdevOp::Compare, 0, 1, Some(IoBuf::new(512))).status, BdevStatus::Success);
        assert_eq!(run(&mut *ch, BdevOp::Compare, 7, 1, Some(IoBuf::new(512))).status, BdevStatus::CompareMismatch);

        let mut range = vec![0u8; 16];
        range[4] = 1;
        range[8] = 7;
        let c = run(&mut *ch, BdevOp::Unmap, 0, 0, Some(IoBuf::from(range)));
        assert_eq!(c.status, BdevStatus::Unsupported);
        assert!(c.buf.is_some());
        assert_eq!(read(&mut *ch, 7, 5, 512), data, "unsupported unmap left the data alone");
        assert_eq!(run(&mut *ch, BdevOp::Flush, 0, 0, None).status, BdevStatus::Success);
    }

    #[test]
    fn fua_writes_and_flushes_take_a_sync_point_plain_writes_do_not() {
        let t = TempFile::new("fua", 64 * 512);
        let b = FileBdev::open("f", &t.0, 512).unwrap();
        let mut ch = b.open_channel().unwrap();
        let data = pattern(9, 0, 4 * 512);
        let io = |op, fua, buf: Option<Vec<u8>>| BdevIo {
            op,
            offset_blocks: 8,
            num_blocks: 4,
            buf: buf.map(IoBuf::from),
            fua,
            tag: 7,
        };
        // Plain writes and write zeroes stay in the page cache: no sync point.
        for _ in 0..3 {
            assert_eq!(run_io(&mut *ch, io(BdevOp::Write, false, Some(data.clone()))).status, BdevStatus::Success);
        }
        assert_eq!(run_io(&mut *ch, io(BdevOp::WriteZeroes, false, None)).status, BdevStatus::Success);
        assert_eq!(b.sync_points(), 0);
        // Each FUA write is one O_DSYNC write, taken before its completion is queued.
        assert_eq!(run_io(&mut *ch, io(BdevOp::Write, true, Some(data.clone()))).status, BdevStatus::Success);
        assert_eq!(b.sync_points(), 1);
        assert_eq!(read(&mut *ch, 8, 4, 512), data);
        assert_eq!(run_io(&mut *ch, io(BdevOp::WriteZeroes, true, None)).status, BdevStatus::Success);
        assert_eq!(b.sync_points(), 2);
        assert_eq!(read(&mut *ch, 8, 4, 512), vec![0; 4 * 512]);
        // FUA on a read means nothing; Flush is an fdatasync.
        assert_eq!(run_io(&mut *ch, io(BdevOp::Read, true, Some(vec![0; 4 * 512]))).status, BdevStatus::Success);
        assert_eq!(b.sync_points(), 2);
        assert_eq!(run(&mut *ch, BdevOp::Flush, 0, 0, None).status, BdevStatus::Success);
        assert_eq!(b.sync_points(), 3);
        b.flush_blocking().unwrap();
        assert_eq!(b.sync_points(), 4);
        // The O_DSYNC handle writes the same file.
        let again = pattern(77, 0, 4 * 512);
        assert_eq!(run_io(&mut *ch, io(BdevOp::Write, true, Some(again.clone()))).status, BdevStatus::Success);
        assert_eq!(std::fs::read(&t.0).unwrap()[8 * 512..12 * 512], again[..]);
    }

    #[test]
    fn large_compare_spans_chunks() {
        let nb = (3 * CHUNK / 512 + 3) as u64;
        let t = TempFile::new("cmp", nb * 512);
        let b = FileBdev::open("f", &t.0, 512).unwrap();
        let mut ch = b.open_channel().unwrap();
        let data = pattern(9, 0, nb as usize * 512);
        assert_eq!(run(&mut *ch, BdevOp::Write, 0, nb, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        assert_eq!(run(&mut *ch, BdevOp::Compare, 0, nb, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        for at in [0, CHUNK - 1, CHUNK, 2 * CHUNK + 5, data.len() - 1] {
            let mut bad = data.clone();
            bad[at] ^= 0x10;
            assert_eq!(
                run(&mut *ch, BdevOp::Compare, 0, nb, Some(IoBuf::from(bad))).status,
                BdevStatus::CompareMismatch,
                "diff at {at}"
            );
        }
    }

    #[test]
    fn out_of_range_and_bad_requests() {
        let t = TempFile::new("oor", 16 * 512);
        let b = FileBdev::open("f", &t.0, 512).unwrap();
        let mut ch = b.open_channel().unwrap();
        let data = pattern(1, 0, 512);
        assert_eq!(run(&mut *ch, BdevOp::Write, 15, 1, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        assert_rejects_bad_requests(&mut *ch, 16, 512);
        assert_eq!(read(&mut *ch, 15, 1, 512), data);
        // Nothing was written past the end of the device.
        assert_eq!(std::fs::metadata(&t.0).unwrap().len(), 16 * 512);
    }

    #[test]
    fn write_zeroes_multi_chunk() {
        let nb = (2 * CHUNK / 4096 + 4) as u64;
        let t = TempFile::new("wz", nb * 4096);
        let b = FileBdev::open("f", &t.0, 4096).unwrap();
        let mut ch = b.open_channel().unwrap();
        let data = pattern(77, 0, nb as usize * 4096);
        assert_eq!(run(&mut *ch, BdevOp::Write, 0, nb, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
        // Zero everything but the first and last block: more than two zero buffers' worth.
        assert_eq!(run(&mut *ch, BdevOp::WriteZeroes, 1, nb - 2, None).status, BdevStatus::Success);
        let got = read(&mut *ch, 0, nb, 4096);
        let last = (nb as usize - 1) * 4096;
        assert_eq!(&got[..4096], &data[..4096]);
        assert!(got[4096..last].iter().all(|&x| x == 0));
        assert_eq!(&got[last..], &data[last..]);
    }

    #[test]
    fn persists_after_reopen_and_flush() {
        let t = TempFile::new("persist", 32 * 4096);
        let data = pattern(5, 0, 2 * 4096);
        {
            let b: Arc<dyn Bdev> = Arc::new(FileBdev::open("f", &t.0, 4096).unwrap());
            let mut ch = b.open_channel().unwrap();
            assert_eq!(
                run(&mut *ch, BdevOp::Write, 30, 2, Some(IoBuf::from(data.clone()))).status,
                BdevStatus::Success
            );
            assert_eq!(run(&mut *ch, BdevOp::Flush, 0, 0, None).status, BdevStatus::Success);
            // A channel may outlive the bdev handle it came from.
            drop(b);
            assert_eq!(run(&mut *ch, BdevOp::Flush, 0, 0, None).status, BdevStatus::Success);
        }
        let b = FileBdev::open("f", &t.0, 4096).unwrap();
        assert_eq!(b.num_blocks(), 32);
        let mut ch = b.open_channel().unwrap();
        assert_eq!(read(&mut *ch, 30, 2, 4096), data);
        assert_eq!(read(&mut *ch, 29, 1, 4096), vec![0; 4096]);
    }

    #[test]
    fn two_threads_own_channels() {
        let t = TempFile::new("threads", 64 * 512);
        let b: Arc<dyn Bdev> = Arc::new(FileBdev::open("f", &t.0, 512).unwrap());
        let hs: Vec<_> = (0..2u8)
            .map(|i| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let mut ch = b.open_channel().unwrap();
                    for blk in 0..32u64 {
                        let buf = IoBuf::from(vec![i * 32 + blk as u8; 512]);
                        assert_eq!(
                            run(&mut *ch, BdevOp::Write, i as u64 * 32 + blk, 1, Some(buf)).status,
                            BdevStatus::Success
                        );
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let mut ch = b.open_channel().unwrap();
        let got = read(&mut *ch, 0, 64, 512);
        for blk in 0..64usize {
            assert!(got[blk * 512..(blk + 1) * 512].iter().all(|&x| x == blk as u8), "block {blk}");
        }
    }

    #[test]
    fn read_error_when_file_shrinks() {
        let t = TempFile::new("shrink", 8 * 512);
        let b = FileBdev::open("f", &t.0, 512).unwrap();
        let mut ch = b.open_channel().unwrap();
        OpenOptions::new().write(true).open(&t.0).unwrap().set_len(4 * 512).unwrap();
        assert_eq!(run(&mut *ch, BdevOp::Read, 6, 1, Some(IoBuf::new(512))).status, BdevStatus::ReadError);
        assert_eq!(run(&mut *ch, BdevOp::Compare, 6, 1, Some(IoBuf::new(512))).status, BdevStatus::ReadError);
        assert_eq!(read(&mut *ch, 3, 1, 512), vec![0; 512]);
    }

    #[test]
    fn write_error_mapping() {
        assert_eq!(write_status(&io::Error::from_raw_os_error(libc::ENOSPC)), BdevStatus::NoSpace);
        assert_eq!(write_status(&io::Error::from_raw_os_error(libc::EDQUOT)), BdevStatus::NoSpace);
        assert_eq!(write_status(&io::Error::from_raw_os_error(libc::EIO)), BdevStatus::WriteError);
        assert_eq!(write_status(&io::Error::from(io::ErrorKind::WriteZero)), BdevStatus::WriteError);
    }

    #[test]
    fn write_to_read_only_file_fails() {
        // A channel whose handle cannot write reports WriteError (not a panic, not Success).
        let t = TempFile::new("ro", 4 * 512);
        let mut ch = SyncChannel::new(FileChannel {
            file: File::open(&t.0).unwrap(),
            dsync: File::open(&t.0).unwrap(),
            sync_points: Arc::default(),
            block_size: 512,
            num_blocks: 4,
            zeroes: vec![0u8; CHUNK].into_boxed_slice(),
            scratch: Vec::new(),
        });
        assert_eq!(run(&mut ch, BdevOp::Write, 0, 1, Some(IoBuf::new(512))).status, BdevStatus::WriteError);
        assert_eq!(run(&mut ch, BdevOp::WriteZeroes, 0, 4, None).status, BdevStatus::WriteError);
        assert_eq!(read(&mut ch, 0, 4, 512), vec![0; 2048]);
    }

    #[test]
    fn full_device_reports_no_space() {
        // /dev/full fails every write with ENOSPC.
        let Ok(file) = OpenOptions::new().read(true).write(true).open("/dev/full") else {
            return;
        };
        let mut ch = SyncChannel::new(FileChannel {
            dsync: file.try_clone().unwrap(),
            file,
            sync_points: Arc::default(),
            block_size: 512,
            num_blocks: 4,
            zeroes: vec![0u8; CHUNK].into_boxed_slice(),
            scratch: Vec::new(),
        });
        assert_eq!(run(&mut ch, BdevOp::Write, 1, 1, Some(IoBuf::new(512))).status, BdevStatus::NoSpace);
        assert_eq!(run(&mut ch, BdevOp::WriteZeroes, 0, 2, None).status, BdevStatus::NoSpace);
    }
}
