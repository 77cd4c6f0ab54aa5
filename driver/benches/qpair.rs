//! Submit + complete cost per I/O on one queue pair against the emulated controller.
//!
//! `cargo bench -p nvme-driver --bench qpair [-- --ios N]`. Prints one line per case: ns per I/O
//! (driver and emulator together: the emulator runs inside the doorbell write) and doorbell
//! writes per I/O. With hugepages reserved DMA memory is hugepage-backed, otherwise anonymous.

#![forbid(unsafe_code)]

use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
use nvme_driver::{Controller, ControllerOptions, DmaBacking, DmaRegion, IoQpair};
use std::time::Instant;

#[derive(Clone, Copy)]
enum Op {
    Read4k,
    Write4k,
    Flush,
}

fn submit(qp: &mut IoQpair, op: Op, buf: &DmaRegion, lba: u64, tok: u64) {
    match op {
        Op::Read4k => qp.read(1, lba, 8, buf, tok),
        Op::Write4k => qp.write(1, lba, 8, buf, tok),
        Op::Flush => qp.flush(1, tok),
    }
    .expect("submit");
}

fn run(ctrl: &Controller, emu: &EmulatedController, op: Op, qd: usize, ios: u64) -> (f64, f64) {
    let mut qp = ctrl.alloc_io_qpair_with(256).unwrap();
    let bufs: Vec<DmaRegion> = (0..qd).map(|_| ctrl.dma().alloc(4096, 4096).unwrap()).collect();
    let before = emu.stats();
    let start = Instant::now();
    let (mut submitted, mut done) = (0u64, 0u64);
    let mut free: Vec<usize> = (0..qd).collect();
    while done < ios {
        while submitted < ios {
            let Some(i) = free.pop() else { break };
            submit(&mut qp, op, &bufs[i], (submitted * 8) % 65_000, i as u64);
            submitted += 1;
        }
        qp.poll(qd, |tok, r| {
            r.expect("I/O");
            free.push(tok as usize);
            done += 1;
        })
        .unwrap();
    }
    let ns = start.elapsed().as_nanos() as f64 / ios as f64;
    let db = (emu.stats().sq_doorbells + emu.stats().cq_doorbells - before.sq_doorbells - before.cq_doorbells) as f64;
    (ns, db / ios as f64)
}

fn main() {
    let mut ios = 200_000u64;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--ios") {
        ios = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(ios);
    }
    let emu = EmulatedController::new(EmulatorConfig { namespaces: vec![(512, 1 << 17)], ..Default::default() });
    let opts = ControllerOptions { dma_backing: DmaBacking::PreferHugepages, ..Default::default() };
    let ctrl = Controller::new_emulated(&emu, opts).unwrap();
    let hp = nvme_driver::dma::hugepages_free().unwrap_or(0);
    println!(
        "qpair bench: {ios} I/Os per case, hugepages free {hp} (backing: {})",
        if hp > 0 { "hugepages" } else { "anonymous" }
    );
    for (name, op) in [("flush", Op::Flush), ("read 4KiB", Op::Read4k), ("write 4KiB", Op::Write4k)] {
        for qd in [1usize, 32] {
            // Warm up, then measure.
            run(&ctrl, &emu, op, qd, ios / 10);
            let (ns, db) = run(&ctrl, &emu, op, qd, ios);
            println!("{name:<11} qd {qd:>2}: {ns:>7.0} ns/IO  {:>6.2} M IOPS  {db:.2} doorbells/IO", 1e3 / ns);
        }
    }
}
