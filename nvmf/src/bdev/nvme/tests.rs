use super::*;
use crate::bdev::test_util::{dsm, read_polled, run_polled as run, wait};
use crate::spec::{CommandSpecificStatus, GenericStatus, MediaStatus, Sqe, Status};
use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
use nvme_driver::ControllerOptions;

const BS: u32 = 512;
const BLOCKS: u64 = 8192;

fn setup(mdts: u8, opts: NvmeBdevOpts) -> (Arc<EmulatedController>, NvmeBdev) {
    let emu = EmulatedController::new(EmulatorConfig {
        namespaces: vec![(BS, BLOCKS), (4096, 256)],
        mdts,
        ..Default::default()
    });
    let ctrl = Arc::new(Controller::new_emulated(&emu, ControllerOptions::default()).expect("bring-up"));
    let b = NvmeBdev::with_opts("Nvme0n1", ctrl, 1, opts).expect("bdev");
    (emu, b)
}

fn small() -> NvmeBdevOpts {
    NvmeBdevOpts { queue_entries: Some(32), ..Default::default() }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    nvmf_test_support::pattern(seed as u64, 0, len)
}

fn read(ch: &mut dyn BdevChannel, off: u64, nb: u64) -> Vec<u8> {
    read_polled(ch, off, nb, BS)
}

fn disk(emu: &EmulatedController, off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    assert!(emu.read_disk(1, off, &mut v));
    v
}

#[test]
fn geometry_and_capabilities() {
    let (_emu, b) = setup(9, NvmeBdevOpts::default());
    assert_eq!(b.name(), "Nvme0n1");
    assert_eq!(b.product_name(), "NVMe disk");
    assert_eq!((b.block_size(), b.num_blocks()), (BS, BLOCKS));
    assert_eq!(b.buf_size(), DEFAULT_MAX_BUF_SIZE);
    let id = b.controller().identify();
    assert_eq!(b.volatile_write_cache(), id.vwc & 1 != 0);
    assert_eq!(b.supports(BdevOp::Unmap), id.oncs.get() & oncs::DATASET_MANAGEMENT != 0);
    assert!(b.supports(BdevOp::Unmap), "the emulator reports DSM");
    let ns2 = NvmeBdev::new("n2", b.controller().clone(), 2).unwrap();
    assert_eq!((ns2.block_size(), ns2.num_blocks()), (4096, 256));
    assert!(matches!(NvmeBdev::new("x", b.controller().clone(), 3), Err(BdevError::InvalidParam(_))));
    assert!(matches!(NvmeBdev::new("x", b.controller().clone(), 0), Err(BdevError::InvalidParam(_))));
    let tiny = NvmeBdevOpts { max_buf_size: 100, ..Default::default() };
    assert!(matches!(NvmeBdev::with_opts("x", b.controller().clone(), 1, tiny), Err(BdevError::InvalidParam(_))));
}

#[test]
fn write_read_compare_flush_with_data_checks() {
    let (emu, b) = setup(9, small());
    let mut ch = b.open_channel().unwrap();
    assert_eq!(read(&mut *ch, 0, 16), vec![0; 16 * 512]);
    let data = pattern(24 * 512, 3);
    let c = run(&mut *ch, BdevOp::Write, 100, 24, Some(IoBuf::from(data.clone())));
    assert_eq!(c.status, BdevStatus::Success);
    assert_eq!(c.buf.unwrap().as_slice(), &data[..], "write hands its buffer back intact");
    assert_eq!(disk(&emu, 100 * 512, data.len()), data, "data reached the device");
    assert_eq!(read(&mut *ch, 100, 24), data);
    assert_eq!(read(&mut *ch, 99, 1), vec![0; 512]);
    assert_eq!(run(&mut *ch, BdevOp::Compare, 100, 24, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
    let mut other = data.clone();
    other[24 * 512 - 1] ^= 1;
    assert_eq!(run(&mut *ch, BdevOp::Compare, 100, 24, Some(IoBuf::from(other))).status, BdevStatus::CompareMismatch);
    assert_eq!(run(&mut *ch, BdevOp::Flush, 0, 0, None).status, BdevStatus::Success);
    // Last block of the namespace.
    let last = pattern(512, 9);
    assert_eq!(
        run(&mut *ch, BdevOp::Write, BLOCKS - 1, 1, Some(IoBuf::from(last.clone()))).status,
        BdevStatus::Success
    );
    assert_eq!(read(&mut *ch, BLOCKS - 1, 1), last);
}

#[test]
fn large_io_is_split_into_several_commands() {
    // MDTS 2: 16 KiB per command; a 1 MiB write is 64 commands, more than the 31 slots.
    let (emu, b) = setup(2, small());
    assert_eq!(b.buf_size(), 16 << 10);
    let mut ch = b.open_channel().unwrap();
    let data = pattern(1 << 20, 5);
    let before = emu.stats();
    assert_eq!(run(&mut *ch, BdevOp::Write, 1000, 2048, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
    assert_eq!(emu.stats().io_commands - before.io_commands, 64);
    assert_eq!(disk(&emu, 1000 * 512, 1 << 20), data);
    assert_eq!(read(&mut *ch, 1000, 2048), data);
    let mut other = data.clone();
    other[(1 << 20) - 1] ^= 0x10;
    assert_eq!(
        run(&mut *ch, BdevOp::Compare, 1000, 2048, Some(IoBuf::from(other))).status,
        BdevStatus::CompareMismatch
    );
    assert_eq!(run(&mut *ch, BdevOp::Compare, 1000, 2048, Some(IoBuf::from(data))).status, BdevStatus::Success);
}

#[test]
fn write_zeroes_and_deallocate() {
    let (emu, b) = setup(9, small());
    let mut ch = b.open_channel().unwrap();
    let data = pattern(64 * 512, 1);
    assert_eq!(run(&mut *ch, BdevOp::Write, 0, 64, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
    assert_eq!(run(&mut *ch, BdevOp::WriteZeroes, 2, 3, None).status, BdevStatus::Success);
    let c = run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(&[(10, 1), (20, 4), (63, 1)])));
    assert_eq!(c.status, BdevStatus::Success);
    assert_eq!(c.buf.unwrap().len(), 48);
    let got = read(&mut *ch, 0, 64);
    assert_eq!(disk(&emu, 0, 64 * 512), got);
    for blk in 0..64usize {
        let r = blk * 512..(blk + 1) * 512;
        let zeroed = (2..5).contains(&blk) || blk == 10 || (20..24).contains(&blk) || blk == 63;
        if zeroed {
            assert_eq!(&got[r], &[0u8; 512][..], "block {blk}");
        } else {
            assert_eq!(&got[r.clone()], &data[r], "block {blk}");
        }
    }
    // Write Zeroes over more than 65536 blocks is split; on namespace 1 (8192 blocks) the
    // whole namespace works in one command.
    assert_eq!(run(&mut *ch, BdevOp::WriteZeroes, 0, BLOCKS, None).status, BdevStatus::Success);
    assert_eq!(disk(&emu, 0, 64 * 512), vec![0; 64 * 512]);
    // More than 256 ranges: two DSM commands.
    let data = pattern(512, 4);
    assert_eq!(run(&mut *ch, BdevOp::Write, 299, 1, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
    assert_eq!(run(&mut *ch, BdevOp::Write, 300, 1, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
    let ranges: Vec<(u64, u32)> = (0..300).map(|i| (i, 1)).collect();
    assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(&ranges))).status, BdevStatus::Success);
    assert_eq!(read(&mut *ch, 299, 1), vec![0; 512]);
    assert_eq!(read(&mut *ch, 300, 1), data);
}

#[test]
fn compare_and_write_zeroes_are_emulated_without_oncs_support() {
    let (emu, b) = setup(2, small());
    let mut ch = b.open().unwrap();
    ch.native_compare = false;
    ch.native_write_zeroes = false;
    let ch: &mut dyn BdevChannel = &mut ch;
    let data = pattern(64 << 10, 8);
    assert_eq!(run(ch, BdevOp::Write, 0, 128, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
    let before = emu.stats().io_commands;
    assert_eq!(run(ch, BdevOp::Compare, 0, 128, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
    let mut other = data.clone();
    other[40000] ^= 4;
    assert_eq!(run(ch, BdevOp::Compare, 0, 128, Some(IoBuf::from(other))).status, BdevStatus::CompareMismatch);
    assert_eq!(emu.stats().io_commands - before, 8, "compares were 16 KiB reads");
    assert_eq!(run(ch, BdevOp::WriteZeroes, 8, 100, None).status, BdevStatus::Success);
    let got = read(ch, 0, 128);
    assert_eq!(&got[..8 * 512], &data[..8 * 512]);
    assert!(got[8 * 512..108 * 512].iter().all(|&x| x == 0));
    assert_eq!(&got[108 * 512..], &data[108 * 512..]);
}

#[test]
fn fua_reaches_every_device_command_of_a_write() {
    // MDTS 2: 16 KiB commands, so a 64 KiB write is four commands, each with FUA.
    let (emu, b) = setup(2, small());
    let mut ch = b.open_channel().unwrap();
    let ch = &mut *ch;
    let data = pattern(64 << 10, 11);
    let fua = |op, off, nb, buf| BdevIo { op, offset_blocks: off, num_blocks: nb, buf, fua: true, tag: 0x77 };
    let submit = |ch: &mut dyn BdevChannel, io: BdevIo| {
        ch.submit(io);
        let c = wait(ch, 1).pop().unwrap();
        assert_eq!(c.status, BdevStatus::Success);
    };
    // Plain writes: no FUA on the device.
    assert_eq!(run(ch, BdevOp::Write, 0, 128, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
    assert_eq!(emu.stats().fua_writes, 0);
    // Copied through command buffers, and in a lent DMA buffer (no copy): every command.
    let before = emu.stats();
    submit(ch, fua(BdevOp::Write, 200, 128, Some(IoBuf::from(data.clone()))));
    let w = lent(ch, &data);
    submit(ch, fua(BdevOp::Write, 400, 128, Some(w)));
    let after = emu.stats();
    assert_eq!(after.io_commands - before.io_commands, 8);
    assert_eq!(after.fua_writes - before.fua_writes, 8);
    assert_eq!(disk(&emu, 200 * 512, 64 << 10), data);
    assert_eq!(disk(&emu, 400 * 512, 64 << 10), data);
    // Write Zeroes with FUA (the emulator supports it natively).
    submit(ch, fua(BdevOp::WriteZeroes, 200, 16, None));
    assert_eq!(emu.stats().fua_writes, after.fua_writes + 1);
    assert_eq!(disk(&emu, 200 * 512, 16 * 512), vec![0; 16 * 512]);
    // FUA on a read means nothing to the bdev.
    submit(ch, fua(BdevOp::Read, 400, 8, Some(IoBuf::new(8 * 512))));
    assert_eq!(emu.stats().fua_writes, after.fua_writes + 1);
}

/// A buffer lent by the channel, filled with `data`.
fn lent(ch: &mut dyn BdevChannel, data: &[u8]) -> IoBuf {
    let mut b = ch.alloc_buf(data.len()).expect("channel lends a DMA buffer");
    b.as_mut_slice().copy_from_slice(data);
    b
}

#[test]
fn lent_buffers_move_data_in_place_with_no_copy() {
    // MDTS 2: 16 KiB commands; 32-entry queue: 31 command buffers, 7 kept back from lending.
    let (emu, b) = setup(2, small());
    let mut ch = b.open_channel().unwrap();
    let ch = &mut *ch;
    let data = pattern(12 * 512, 1);
    let w = lent(ch, &data);
    assert!(w.dma().is_some());
    assert_eq!(run(ch, BdevOp::Write, 7, 12, Some(w)).status, BdevStatus::Success);
    assert_eq!(disk(&emu, 7 * 512, data.len()), data, "the device wrote the lent buffer in place");
    let mut r = ch.alloc_buf(data.len()).unwrap();
    r.as_mut_slice().fill(0xee);
    let c = run(ch, BdevOp::Read, 7, 12, Some(r));
    assert_eq!(c.status, BdevStatus::Success);
    assert_eq!(c.buf.as_ref().unwrap().as_slice(), &data[..], "the device read into the lent buffer");
    drop(c);
    // 1 MiB: a large buffer, 64 commands of 16 KiB at offsets into it, still no copy.
    let big = pattern(1 << 20, 2);
    let before = emu.stats().io_commands;
    let w = lent(ch, &big);
    assert_eq!(run(ch, BdevOp::Write, 1000, 2048, Some(w)).status, BdevStatus::Success);
    assert_eq!(emu.stats().io_commands - before, 64);
    assert_eq!(disk(&emu, 1000 * 512, big.len()), big);
    let r = ch.alloc_buf(1 << 20).unwrap();
    let c = run(ch, BdevOp::Read, 1000, 2048, Some(r));
    assert_eq!(c.buf.as_ref().unwrap().as_slice(), &big[..]);
    drop(c);
    let mut other = big.clone();
    other[12345] ^= 1;
    let x = lent(ch, &other);
    assert_eq!(run(ch, BdevOp::Compare, 1000, 2048, Some(x)).status, BdevStatus::CompareMismatch);
    let x = lent(ch, &big);
    assert_eq!(run(ch, BdevOp::Compare, 1000, 2048, Some(x)).status, BdevStatus::Success);
    assert_eq!(b.copied_bytes(), 0, "nothing was copied");
    // A heap buffer still works, through a command buffer: counted.
    assert_eq!(read(ch, 7, 12), data);
    assert_eq!(b.copied_bytes(), data.len() as u64);
    // Lending stops short of the reserve, and beyond the largest I/O.
    let held: Vec<IoBuf> = std::iter::from_fn(|| ch.alloc_buf(512)).take(100).collect();
    assert_eq!(held.len(), 31 - 7);
    assert!(ch.alloc_buf((1 << 20) + 512).is_none());
    // With every lendable buffer held, heap-buffer I/O still goes through the reserve.
    assert_eq!(read(ch, 1000, 2048), big);
    drop(held);
    assert!(ch.alloc_buf(512).is_some(), "lent buffers came back");
}

#[test]
fn bad_requests_complete_without_the_device() {
    let (emu, b) = setup(9, small());
    let mut ch = b.open_channel().unwrap();
    let before = emu.stats().io_commands;
    for op in [BdevOp::Read, BdevOp::Write, BdevOp::Compare] {
        assert_eq!(run(&mut *ch, op, BLOCKS - 1, 2, Some(IoBuf::new(1024))).status, BdevStatus::OutOfRange);
        assert_eq!(run(&mut *ch, op, u64::MAX, 2, Some(IoBuf::new(1024))).status, BdevStatus::OutOfRange);
        assert_eq!(run(&mut *ch, op, 0, 1, Some(IoBuf::new(511))).status, BdevStatus::InvalidArg);
        assert_eq!(run(&mut *ch, op, 0, 1, None).status, BdevStatus::InvalidArg);
    }
    assert_eq!(run(&mut *ch, BdevOp::WriteZeroes, BLOCKS, 1, None).status, BdevStatus::OutOfRange);
    assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, Some(dsm(&[(BLOCKS, 1)]))).status, BdevStatus::OutOfRange);
    assert_eq!(run(&mut *ch, BdevOp::Unmap, 0, 0, None).status, BdevStatus::InvalidArg);
    assert_eq!(emu.stats().io_commands, before, "nothing reached the device");
}

#[test]
fn injected_media_errors_map_to_read_and_write_errors() {
    let (emu, b) = setup(9, small());
    let mut ch = b.open_channel().unwrap();
    let data = pattern(8 * 512, 2);
    assert_eq!(run(&mut *ch, BdevOp::Write, 40, 8, Some(IoBuf::from(data.clone()))).status, BdevStatus::Success);
    emu.inject_media_error(1, 43, 1);
    let c = run(&mut *ch, BdevOp::Read, 40, 8, Some(IoBuf::new(8 * 512)));
    assert_eq!(c.status, BdevStatus::ReadError);
    assert!(c.buf.is_some(), "the buffer comes back on failure too");
    assert_eq!(read(&mut *ch, 40, 8), data, "the fault was one-shot");
    emu.inject_media_error(1, 44, 1);
    assert_eq!(run(&mut *ch, BdevOp::Write, 44, 1, Some(IoBuf::new(512))).status, BdevStatus::WriteError);
    assert_eq!(read(&mut *ch, 40, 8), data, "a failed write changed nothing");
    // A split I/O with one failing chunk fails as a whole; no buffer or slot leaks.
    let (emu, b) = setup(2, small());
    let mut ch = b.open_channel().unwrap();
    emu.inject_media_error(1, 100, 1);
    let c = run(&mut *ch, BdevOp::Read, 0, 512, Some(IoBuf::new(512 * 512)));
    assert_eq!(c.status, BdevStatus::ReadError);
    for _ in 0..3 {
        assert_eq!(run(&mut *ch, BdevOp::Read, 0, 512, Some(IoBuf::new(512 * 512))).status, BdevStatus::Success);
    }
}

#[test]
fn status_mapping() {
    use BdevOp::*;
    let m = |s: Status, op| map_status(s, op);
    assert_eq!(m(Status::SUCCESS, Read), BdevStatus::Success);
    assert_eq!(m(Status::media(MediaStatus::UNRECOVERED_READ_ERROR).dnr(), Read), BdevStatus::ReadError);
    assert_eq!(m(Status::media(MediaStatus::WRITE_FAULT), Write), BdevStatus::WriteError);
    assert_eq!(m(Status::media(MediaStatus::COMPARE_FAILURE), Compare), BdevStatus::CompareMismatch);
    assert_eq!(m(Status::media(MediaStatus::GUARD_CHECK_ERROR), Read), BdevStatus::ReadError);
    assert_eq!(m(Status::media(MediaStatus::GUARD_CHECK_ERROR), Write), BdevStatus::WriteError);
    assert_eq!(m(Status::generic(GenericStatus::LBA_OUT_OF_RANGE), Read), BdevStatus::OutOfRange);
    assert_eq!(m(Status::generic(GenericStatus::CAPACITY_EXCEEDED), Write), BdevStatus::NoSpace);
    assert_eq!(m(Status::generic(GenericStatus::INVALID_OPCODE), Unmap), BdevStatus::Unsupported);
    assert_eq!(m(Status::generic(GenericStatus::INVALID_FIELD), Read), BdevStatus::InvalidArg);
    assert_eq!(m(Status::generic(GenericStatus::INTERNAL_ERROR), Flush), BdevStatus::WriteError);
    assert_eq!(m(Status::generic(GenericStatus::DATA_TRANSFER_ERROR), Read), BdevStatus::ReadError);
    assert_eq!(
        m(Status::command_specific(CommandSpecificStatus::ATTEMPTED_WRITE_TO_RO_RANGE), Write),
        BdevStatus::WriteError
    );
    assert_eq!(m(Status::from_raw(0x7ff), Read), BdevStatus::ReadError, "vendor specific");
}

#[test]
fn many_ios_wait_for_slots_and_buffers_in_order() {
    // 8 command slots and 4 DMA buffers; 200 writes then 200 reads queued at once.
    let opts = NvmeBdevOpts { queue_entries: Some(9), num_bufs: Some(4), ..Default::default() };
    let (emu, b) = setup(9, opts);
    let mut ch = b.open_channel().unwrap();
    for i in 0..200u64 {
        ch.submit(BdevIo {
            op: BdevOp::Write,
            offset_blocks: i * 2,
            num_blocks: 2,
            buf: Some(IoBuf::from(pattern(1024, i as u8))),
            fua: false,
            tag: i,
        });
    }
    assert_eq!(ch.outstanding(), 200);
    let out = wait(&mut *ch, 200);
    for (i, c) in out.iter().enumerate() {
        assert_eq!((c.tag, c.status), (i as u64, BdevStatus::Success), "FIFO order");
    }
    for i in 0..200u64 {
        let buf = IoBuf::new(1024);
        ch.submit(BdevIo {
            op: BdevOp::Read,
            offset_blocks: i * 2,
            num_blocks: 2,
            buf: Some(buf),
            fua: false,
            tag: 1000 + i,
        });
    }
    let out = wait(&mut *ch, 200);
    for c in out {
        let i = c.tag - 1000;
        assert_eq!(c.status, BdevStatus::Success);
        assert_eq!(c.buf.unwrap().as_slice(), &pattern(1024, i as u8)[..], "read {i}");
    }
    assert_eq!(ch.outstanding(), 0);
    assert_eq!(disk(&emu, 199 * 1024, 1024), pattern(1024, 199));
}

#[test]
fn batching_rings_once_per_poll() {
    let (emu, b) = setup(9, small());
    let mut ch = b.open_channel().unwrap();
    let before = emu.stats();
    for i in 0..16u64 {
        ch.submit(BdevIo {
            op: BdevOp::Write,
            offset_blocks: i,
            num_blocks: 1,
            buf: Some(IoBuf::from(vec![i as u8; 512])),
            fua: false,
            tag: i,
        });
    }
    assert_eq!(emu.stats().sq_doorbells, before.sq_doorbells, "submit only queues");
    let out = wait(&mut *ch, 16);
    assert!(out.iter().all(|c| c.status == BdevStatus::Success));
    let after = emu.stats();
    assert_eq!(after.io_commands - before.io_commands, 16);
    assert_eq!(after.sq_doorbells - before.sq_doorbells, 1, "one doorbell for the batch");
}

#[test]
fn two_channels_on_two_threads() {
    let (emu, b) = setup(9, small());
    let b: Arc<dyn Bdev> = Arc::new(b);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let b = b.clone();
            s.spawn(move || {
                let mut ch = b.open_channel().unwrap();
                for i in 0..64u64 {
                    let lba = t * 2048 + i * 8;
                    ch.submit(BdevIo {
                        op: BdevOp::Write,
                        offset_blocks: lba,
                        num_blocks: 8,
                        buf: Some(IoBuf::from(pattern(4096, (t * 64 + i) as u8))),
                        fua: false,
                        tag: i,
                    });
                }
                assert!(wait(&mut *ch, 64).iter().all(|c| c.status == BdevStatus::Success));
                for i in 0..64u64 {
                    let lba = t * 2048 + i * 8;
                    assert_eq!(read(&mut *ch, lba, 8), pattern(4096, (t * 64 + i) as u8));
                }
            });
        }
    });
    for t in 0..2u64 {
        for i in 0..64u64 {
            let lba = t * 2048 + i * 8;
            assert_eq!(disk(&emu, lba * 512, 4096), pattern(4096, (t * 64 + i) as u8));
        }
    }
}

/// An opaque passthrough command (the target could not check its length) claiming its
/// buffer's length.
fn passthru(ch: &mut dyn BdevChannel, opcode: u8, nsid: u32, buf: Option<IoBuf>, h2c: bool) -> BdevCompletion {
    let claim = buf.as_ref().map_or(0, |b| b.len());
    passthru_claiming(ch, opcode, nsid, buf, h2c, false, claim)
}

/// A vendor command whose CDW10 claims `claim` bytes, whatever `buf` holds.
fn passthru_claiming(
    ch: &mut dyn BdevChannel,
    opcode: u8,
    nsid: u32,
    buf: Option<IoBuf>,
    h2c: bool,
    exact_len: bool,
    claim: usize,
) -> BdevCompletion {
    let mut sqe = Sqe { opcode, flags: 0x40, ..Default::default() };
    sqe.nsid.set(nsid);
    sqe.cid.set(0x1234);
    sqe.dptr = [0xee; 16];
    sqe.cdw10.set(claim as u32 / 4);
    ch.submit_passthru(PassthruIo { sqe, buf, host_to_ctrl: h2c, exact_len, tag: 0x99 })
        .expect("NVMe channels pass through");
    let mut out = wait(ch, 1);
    assert_eq!(ch.outstanding(), 0);
    let c = out.pop().unwrap();
    assert_eq!(c.tag, 0x99);
    c
}

#[test]
fn passthrough_moves_data_and_returns_the_device_status_and_dw0() {
    use nvme_driver::emulator::{VENDOR_LOAD, VENDOR_STORE, VENDOR_STORE_DW0};
    let (_emu, b) = setup(2, small());
    assert!(b.supports_passthru());
    let mut ch = b.open_channel().unwrap();
    // Host NSID 7 (the target's numbering) becomes the device's NSID 1; the SGL flags and
    // pointer are replaced by PRPs.
    let data = pattern(8192, 6);
    let c = passthru(&mut *ch, VENDOR_STORE, 7, Some(IoBuf::from(data.clone())), true);
    assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: VENDOR_STORE_DW0 });
    assert_eq!(c.buf.unwrap().as_slice(), &data[..]);
    let c = passthru(&mut *ch, VENDOR_LOAD, 7, Some(IoBuf::new(8192)), false);
    assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: 8192 });
    assert_eq!(c.buf.unwrap().as_slice(), &data[..], "data came back from the device");
    // No data.
    let c = passthru(&mut *ch, VENDOR_STORE, 1, None, true);
    assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: VENDOR_STORE_DW0 });
    // An opcode the device does not know: its status, unchanged.
    let c = passthru(&mut *ch, 0xC5, 1, None, false);
    assert_eq!(c.status, BdevStatus::Nvme { status: Status::generic(GenericStatus::INVALID_OPCODE).dnr(), dw0: 0 });
    // More than one DMA buffer (16 KiB with MDTS 2): refused without the device.
    let c = passthru(&mut *ch, VENDOR_STORE, 1, Some(IoBuf::new(32 << 10)), true);
    assert_eq!(c.status, BdevStatus::InvalidArg);
    // Regular I/O still works on the same channel.
    assert_eq!(run(&mut *ch, BdevOp::Write, 0, 1, Some(IoBuf::from(vec![3; 512]))).status, BdevStatus::Success);
}

#[test]
fn exact_length_passthrough_in_a_lent_buffer_may_exceed_a_command_buffer() {
    use nvme_driver::emulator::{VENDOR_LOAD, VENDOR_STORE, VENDOR_STORE_DW0};
    // MDTS 9 (2 MiB): 128 KiB command buffers, but a lent 256 KiB large buffer is one command
    // when the target checked the command's length (`exact_len`).
    let (emu, b) = setup(9, small());
    let mut ch = b.open_channel().unwrap();
    let ch = &mut *ch;
    let data = pattern(256 << 10, 8);
    let w = lent(ch, &data);
    let c = passthru_claiming(ch, VENDOR_STORE, 1, Some(w), true, true, 256 << 10);
    assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: VENDOR_STORE_DW0 });
    drop(c);
    let r = ch.alloc_buf(256 << 10).unwrap();
    let c = passthru_claiming(ch, VENDOR_LOAD, 1, Some(r), false, true, 256 << 10);
    assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: 256 << 10 });
    assert!(c.buf.as_ref().unwrap().as_slice() == &data[..], "data came back in place");
    assert_eq!(b.copied_bytes(), 0);
    // The same size in a heap buffer still has to fit a command buffer.
    let c = passthru_claiming(ch, VENDOR_STORE, 1, Some(IoBuf::new(256 << 10)), true, true, 256 << 10);
    assert_eq!(c.status, BdevStatus::InvalidArg);
    // Opaque (unchecked length): through the passthrough buffer, lent or not.
    let c = passthru(ch, VENDOR_STORE, 1, Some(IoBuf::from(data.clone())), true);
    assert_eq!(c.status, BdevStatus::Nvme { status: Status::SUCCESS, dw0: VENDOR_STORE_DW0 });
    let r = ch.alloc_buf(256 << 10).unwrap();
    let c = passthru(ch, VENDOR_LOAD, 1, Some(r), false);
    assert!(c.buf.as_ref().unwrap().as_slice() == &data[..]);
    assert_eq!(b.copied_bytes(), 512 << 10, "both ways copied");
    assert_eq!(emu.dma_guard().violation_count(), 0, "{:?}", emu.dma_guard().violations());
}

/// Opaque passthrough (passthrough trusting the hosts): for every host buffer length, both
/// directions and any claimed length up to the device's maximum transfer, the device touches
/// only memory of that command; honest claims move the right data.
#[test]
fn opaque_passthrough_stays_in_its_own_memory_whatever_it_claims() {
    use nvme_driver::emulator::{VENDOR_LOAD, VENDOR_STORE};
    for mdts in [2u8, 9] {
        let (emu, b) = setup(mdts, small());
        let max = 4096usize << mdts;
        let mut ch = b.open_channel().unwrap();
        let ch = &mut *ch;
        // Other commands' memory the device must not reach: a lent buffer full of 0xaa.
        let victim = lent(ch, &vec![0xaa; 8192]);
        for len in [0usize, 512, 4096, 4100, 6000, 8192, 12288, 64 << 10] {
            let len = len.min(max);
            for claim in [0, len / 2, len, len + 4096, 3 * len + 8192, max] {
                let claim = claim.min(max) & !3;
                for (h2c, opcode) in [(true, VENDOR_STORE), (false, VENDOR_LOAD)] {
                    let data = pattern(len, claim as u8);
                    let buf = (len > 0).then(|| if h2c { IoBuf::from(data.clone()) } else { IoBuf::new(len) });
                    let c = passthru_claiming(ch, opcode, 1, buf, h2c, false, claim);
                    if h2c && (4097..=4100).contains(&len) {
                        assert_eq!(c.status, BdevStatus::InvalidArg, "no safe layout for {len} bytes");
                        continue;
                    }
                    assert!(matches!(c.status, BdevStatus::Nvme { .. }), "{len}/{claim}: {:?}", c.status);
                    if h2c && claim == len && len > 0 {
                        // Read it back honestly: the device got exactly the host's bytes.
                        let c = passthru_claiming(ch, VENDOR_LOAD, 1, Some(IoBuf::new(len)), false, false, len);
                        assert!(c.buf.unwrap().as_slice() == &data[..], "{len} bytes round trip");
                    }
                }
            }
        }
        assert!(victim.as_slice().iter().all(|&x| x == 0xaa), "the other buffer is untouched");
        let g = emu.dma_guard();
        assert!(g.is_armed() && g.checked() > 100, "checked {}", g.checked());
        assert_eq!(g.violation_count(), 0, "mdts {mdts}: {:?}", g.violations());
    }
}

#[test]
fn controller_failure_fails_io_instead_of_hanging() {
    let (emu, b) = setup(9, small());
    let mut ch = b.open_channel().unwrap();
    assert_eq!(run(&mut *ch, BdevOp::Write, 0, 1, Some(IoBuf::new(512))).status, BdevStatus::Success);
    b.controller().reset().expect("reset");
    let c = run(&mut *ch, BdevOp::Read, 0, 1, Some(IoBuf::new(512)));
    assert_eq!(c.status, BdevStatus::ReadError);
    assert_eq!(run(&mut *ch, BdevOp::Write, 0, 1, Some(IoBuf::new(512))).status, BdevStatus::WriteError);
    drop(ch);
    // A fresh channel after the reset works.
    let mut ch = b.open_channel().unwrap();
    assert_eq!(run(&mut *ch, BdevOp::Write, 1, 1, Some(IoBuf::from(vec![7; 512]))).status, BdevStatus::Success);
    assert_eq!(disk(&emu, 512, 512), vec![7; 512]);
}
