//! Passthrough fuzzing (`cargo fuzz run passthru`, replayed by `tests/tests/fuzz_regressions.rs`):
//! random opcodes, buffer lengths, claimed lengths and CDWs through a direct-mode bdev channel
//! (`NvmeBdev`) to the driver and the emulated controller, mixed with Reads and Writes of
//! random sizes on the same queue slots. The emulator's DMA guard must see no access outside
//! the memory lent to each command; the harness panics when it does, and when a command does not
//! complete.
//!
//! Input: byte 0 picks MDTS (16 KiB or 2 MiB); then 16-byte records: opcode, flags (bit 0 host
//! to controller, bit 1 checked length, bit 2 lent buffer, bit 3 a Read/Write instead), host
//! length (u16, x4 bytes), CDW10-12 (u32 each; CDW10 is the vendor commands' claimed dwords).

use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
use nvme_driver::{ControllerOptions, DmaBacking};
use nvmf::bdev::nvme::NvmeBdevOpts;
use nvmf::bdev::{Bdev, BdevChannel, BdevCompletion, BdevIo, BdevOp, IoBuf, NvmeBdev, PassthruIo};
use nvmf::spec::Sqe;
use std::sync::Arc;

const BLOCKS: u64 = 4096;
/// Records run per input (bounds the time per input).
const MAX_RECORDS: usize = 64;

fn wait(ch: &mut dyn BdevChannel) -> BdevCompletion {
    let mut out = Vec::new();
    for _ in 0..100_000 {
        ch.poll(&mut out);
        if let Some(c) = out.pop() {
            return c;
        }
    }
    panic!("a command did not complete");
}

/// Returns how many commands completed.
pub fn passthru(data: &[u8]) -> usize {
    let Some((&mode, rest)) = data.split_first() else { return 0 };
    let mdts = if mode & 1 == 0 { 2 } else { 9 };
    let emu = EmulatedController::new(EmulatorConfig { namespaces: vec![(512, BLOCKS)], mdts, ..Default::default() });
    let opts = ControllerOptions { dma_backing: DmaBacking::Anonymous, ..Default::default() };
    let ctrl = Arc::new(nvme_driver::Controller::new_emulated(&emu, opts).expect("bring-up"));
    let bopts = NvmeBdevOpts { queue_entries: Some(4), large_bufs: 1, ..Default::default() };
    let bdev = NvmeBdev::with_opts("Nvme0n1", ctrl, 1, bopts).expect("bdev");
    let mut ch = bdev.open_channel().expect("channel");
    let ch = &mut *ch;
    // One honest Write first: it arms the guard (the driver registers what it lends), so the
    // check below proves the guard was watching, whatever the records do.
    ch.submit(BdevIo {
        op: BdevOp::Write,
        offset_blocks: 0,
        num_blocks: 1,
        buf: Some(IoBuf::new(512)),
        fua: false,
        tag: 1,
    });
    wait(ch);
    let mut issued = 0;
    for r in rest.chunks_exact(16).take(MAX_RECORDS) {
        let (opcode, flags) = (r[0], r[1]);
        let len = u16::from_le_bytes([r[2], r[3]]) as usize * 4;
        let dw = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
        let (h2c, exact, lend) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
        let buf = match len {
            0 => None,
            _ if lend => ch.alloc_buf(len).or_else(|| Some(IoBuf::new(len))),
            _ => Some(IoBuf::new(len)),
        };
        issued += 1;
        if flags & 8 != 0 {
            // A Read or Write of 1..=256 blocks: leaves PRP lists of its own size behind.
            let blocks = (dw(4) % 256) as u64 + 1;
            let lba = dw(8) as u64 % (BLOCKS - blocks);
            let op = if h2c { BdevOp::Write } else { BdevOp::Read };
            let buf = ch.alloc_buf(blocks as usize * 512).unwrap_or_else(|| IoBuf::new(blocks as usize * 512));
            ch.submit(BdevIo { op, offset_blocks: lba, num_blocks: blocks, buf: Some(buf), fua: false, tag: 1 });
            wait(ch);
            continue;
        }
        let mut sqe = Sqe { opcode, ..Default::default() };
        sqe.cdw10.set(dw(4));
        sqe.cdw11.set(dw(8));
        sqe.cdw12.set(dw(12));
        // The target marks a length checked only for what it proved carries exactly `buf`:
        // Write Uncorrectable and Verify, without data.
        let exact = exact && buf.is_none() && matches!(opcode, 0x04 | 0x0c);
        if ch.submit_passthru(PassthruIo { sqe, buf, host_to_ctrl: h2c, exact_len: exact, tag: 2 }).is_ok() {
            wait(ch);
        }
    }
    let g = emu.dma_guard();
    assert!(g.is_armed(), "build nvme-driver with the dma-guard feature");
    assert_eq!(g.violation_count(), 0, "the device reached memory not lent to its command: {:?}", g.violations());
    issued
}
