//! I/O queue pairs against the emulated controller: data read back, concurrency, wrap-around,
//! PRP lists, error statuses, timeouts with Abort, and the other NVM commands.

#![forbid(unsafe_code)]

mod common;
use common::*;
use nvme_driver::emulator::EmulatorConfig;
use nvme_driver::spec::{GenericStatus, MediaStatus, NvmOpcode, Sqe, StatusCodeType};
use nvme_driver::{Controller, ControllerOptions, DmaBacking, Error};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn write_then_read_back_one_block() {
    let (emu, ctrl) = setup(EmulatorConfig::default());
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let mut buf = ctrl.dma().alloc(512, 4096).unwrap();
    buf.as_mut_slice().copy_from_slice(&pattern(0, 3, 512));
    let cqe = write_sync(&mut qp, 3, 1, &buf).unwrap();
    assert!(cqe.is_success());
    let mut disk = vec![0u8; 512];
    assert!(emu.read_disk(1, 3 * 512, &mut disk));
    assert_eq!(disk, pattern(0, 3, 512));
    let out = ctrl.dma().alloc(512, 4096).unwrap();
    read_sync(&mut qp, 3, 1, &out).unwrap();
    assert_eq!(out.as_slice(), &pattern(0, 3, 512)[..]);
}

#[test]
fn four_threads_with_their_own_qpairs_verify_their_data() {
    let cfg = EmulatorConfig { namespaces: vec![(512, 1 << 16)], ..Default::default() };
    let (_emu, ctrl) = setup(cfg);
    let ctrl = Arc::new(ctrl);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let ctrl = ctrl.clone();
            std::thread::spawn(move || {
                let mut qp = ctrl.alloc_io_qpair_with(32).unwrap();
                let pool = ctrl.dma().alloc_pool(4096, 16).unwrap();
                // Each thread owns LBAs [t * 8192, (t + 1) * 8192) in 8-block (4 KiB) units.
                let base = t * 8192;
                let ios = 400u64;
                let mut bufs: Vec<Option<nvme_driver::PoolBuf>> = (0..ios).map(|_| None).collect();
                let (mut next, mut done) = (0u64, 0u64);
                while done < ios {
                    while next < ios {
                        let Some(mut b) = pool.get() else { break };
                        b.as_mut_slice().copy_from_slice(&pattern(t, next, 4096));
                        if qp.write(1, base + next * 8, 8, &b, next).is_err() {
                            break;
                        }
                        bufs[next as usize] = Some(b);
                        next += 1;
                    }
                    qp.poll(64, |tok, r| {
                        r.expect("write");
                        bufs[tok as usize] = None;
                        done += 1;
                    })
                    .unwrap();
                }
                // Read everything back, several in flight.
                let mut reads: Vec<Option<nvme_driver::PoolBuf>> = (0..ios).map(|_| None).collect();
                let (mut next, mut done) = (0u64, 0u64);
                while done < ios {
                    while next < ios {
                        let Some(b) = pool.get() else { break };
                        qp.read(1, base + next * 8, 8, &b, next).unwrap();
                        reads[next as usize] = Some(b);
                        next += 1;
                    }
                    qp.poll(64, |tok, r| {
                        r.expect("read");
                        let b = reads[tok as usize].take().expect("token");
                        assert_eq!(b.as_slice(), &pattern(t, tok, 4096)[..], "thread {t} io {tok}");
                        done += 1;
                    })
                    .unwrap();
                }
                qp.qid()
            })
        })
        .collect();
    let mut qids: Vec<u16> = threads.into_iter().map(|h| h.join().unwrap()).collect();
    qids.sort();
    qids.dedup();
    assert_eq!(qids.len(), 4);
}

#[test]
fn small_queue_wraps_around_many_times() {
    let (emu, ctrl) = setup(EmulatorConfig::default());
    let mut qp = ctrl.alloc_io_qpair_with(4).unwrap();
    assert_eq!(qp.depth(), 3);
    let bufs: Vec<_> = (0..3).map(|_| ctrl.dma().alloc(512, 512).unwrap()).collect();
    let before = emu.stats();
    let mut completed = 0u64;
    for round in 0..100u64 {
        for (i, b) in bufs.iter().enumerate() {
            b.write(0, &pattern(9, round * 3 + i as u64, 512));
            qp.write(1, round * 3 + i as u64, 1, b, round * 3 + i as u64).unwrap();
        }
        // Full: the fourth is refused until completions are reaped.
        assert!(matches!(qp.flush(1, 0), Err(Error::QueueFull)));
        let mut n = 0;
        while n < 3 {
            n += qp
                .poll(8, |_, r| {
                    r.unwrap();
                })
                .unwrap();
        }
        completed += n as u64;
    }
    assert_eq!(completed, 300);
    // One doorbell per batch of three.
    assert_eq!(emu.stats().sq_doorbells - before.sq_doorbells, 100);
    let out = ctrl.dma().alloc(300 * 512, 4096).unwrap();
    read_sync(&mut qp, 0, 300, &out).unwrap();
    for lba in 0..300u64 {
        assert_eq!(&out.as_slice()[lba as usize * 512..][..512], &pattern(9, lba, 512)[..]);
    }
}

fn big_transfer(len: usize) {
    let cfg = EmulatorConfig { namespaces: vec![(512, 1 << 16)], ..Default::default() };
    let (emu, ctrl) = setup(cfg);
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let src = ctrl.dma().alloc(len, 4096).unwrap();
    let data = pattern(5, len as u64, len);
    src.write(0, &data);
    let blocks = (len / 512) as u32;
    write_sync(&mut qp, 1000, blocks, &src).unwrap();
    let mut disk = vec![0u8; len];
    assert!(emu.read_disk(1, 1000 * 512, &mut disk));
    assert!(disk == data, "disk contents differ");
    let dst = ctrl.dma().alloc(len, 4096).unwrap();
    read_sync(&mut qp, 1000, blocks, &dst).unwrap();
    assert!(dst.as_slice() == &data[..], "read back differs");
}

#[test]
fn prp_list_64k() {
    big_transfer(64 << 10);
}

#[test]
fn prp_list_1m() {
    big_transfer(1 << 20);
}

#[test]
fn two_page_transfer_without_list() {
    big_transfer(8192);
}

#[test]
fn unaligned_start_with_raw_read_spans_three_pages() {
    let (_emu, ctrl) = setup(EmulatorConfig::default());
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let src = ctrl.dma().alloc(8192, 4096).unwrap();
    src.write(0, &pattern(3, 0, 8192));
    write_sync(&mut qp, 0, 16, &src).unwrap();
    // Read 16 blocks into a buffer at offset 512: first page partial, then a list of two pages.
    let dst = ctrl.dma().alloc(3 * 4096, 4096).unwrap();
    let mut sqe = Sqe { opcode: NvmOpcode::Read as u8, ..Default::default() };
    sqe.nsid.set(1);
    sqe.set_slba(0);
    sqe.cdw12.set(15);
    qp.submit_raw(sqe, Some((&dst, 512, 8192)), 42).unwrap();
    let (tok, r) = wait_one(&mut qp);
    assert_eq!(tok, 42);
    r.unwrap();
    assert_eq!(&dst.as_slice()[512..512 + 8192], &pattern(3, 0, 8192)[..]);
}

#[test]
fn transfer_beyond_max_is_refused() {
    let (_emu, ctrl) = setup(EmulatorConfig::default());
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let buf = ctrl.dma().alloc(4 << 20, 4096).unwrap();
    let blocks = (qp.max_transfer_bytes() / 512 + 8) as u32;
    assert!(matches!(qp.read(1, 0, blocks, &buf, 0), Err(Error::TransferTooLarge { .. })));
    // Nothing was left behind in the queue.
    assert_eq!(qp.outstanding(), 0);
}

#[test]
fn media_error_is_reported_with_its_status_then_clears() {
    let (emu, ctrl) = setup(EmulatorConfig::default());
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let buf = ctrl.dma().alloc(4096, 4096).unwrap();
    emu.inject_media_error(1, 21, 1);
    let err = read_sync(&mut qp, 16, 8, &buf).unwrap_err();
    let status = err.status().expect("NVMe status");
    assert_eq!(status.sct(), StatusCodeType::MediaDataIntegrity as u8);
    assert_eq!(status.sc(), MediaStatus::UNRECOVERED_READ_ERROR);
    assert!(status.is_dnr());
    read_sync(&mut qp, 16, 8, &buf).unwrap();

    emu.inject_media_error(1, 30, 1);
    let err = write_sync(&mut qp, 30, 1, &buf).unwrap_err();
    assert_eq!(err.status().unwrap().sc(), MediaStatus::WRITE_FAULT);

    let log = ctrl.error_log(2).unwrap();
    assert_eq!(log[0].error_count.get(), 2);
    assert_eq!(log[0].sqid.get(), qp.qid());
    let smart = ctrl.smart_log().unwrap();
    assert_eq!(smart.media_errors(), 2);
    assert_eq!(smart.host_read_commands(), 1);
}

#[test]
fn out_of_range_and_bad_namespace_statuses() {
    let (_emu, ctrl) = setup(EmulatorConfig { namespaces: vec![(512, 128)], ..Default::default() });
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let buf = ctrl.dma().alloc(4096, 4096).unwrap();
    let err = read_sync(&mut qp, 127, 2, &buf).unwrap_err();
    assert_eq!(err.status().unwrap().sc(), GenericStatus::LBA_OUT_OF_RANGE);
    let mut sqe = Sqe { opcode: NvmOpcode::Flush as u8, ..Default::default() };
    sqe.nsid.set(9);
    qp.submit_raw(sqe, None, 1).unwrap();
    let err = wait_one(&mut qp).1.unwrap_err();
    assert_eq!(err.status().unwrap().sc(), GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
    let mut sqe = Sqe { opcode: 0x7e, ..Default::default() };
    sqe.nsid.set(1);
    qp.submit_raw(sqe, None, 1).unwrap();
    assert_eq!(wait_one(&mut qp).1.unwrap_err().status().unwrap().sc(), GenericStatus::INVALID_OPCODE);
}

#[test]
fn stuck_command_times_out_and_is_aborted() {
    let emu = nvme_driver::emulator::EmulatedController::new(EmulatorConfig::default());
    let opts = ControllerOptions {
        dma_backing: DmaBacking::Anonymous,
        io_timeout: Some(Duration::from_millis(5)),
        ..Default::default()
    };
    let ctrl = Controller::new_emulated(&emu, opts).unwrap();
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let buf = ctrl.dma().alloc(4096, 4096).unwrap();
    emu.hold_next_io(1);
    qp.read(1, 0, 8, &buf, 77).unwrap();
    let mut result = None;
    // Bounded: a timeout that never fires fails the test instead of hanging it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while result.is_none() {
        assert!(std::time::Instant::now() < deadline, "the held command never timed out");
        qp.poll(8, |t, r| result = Some((t, r))).unwrap();
        std::thread::sleep(Duration::from_micros(50)); // pacing only: the loop waits for the CQE
    }
    let (tok, r) = result.unwrap();
    assert_eq!(tok, 77);
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert_eq!(emu.stats().aborts, 1);
    assert_eq!(qp.outstanding(), 0);
    read_sync(&mut qp, 0, 8, &buf).unwrap();
}

#[test]
fn write_zeroes_deallocate_flush_and_compare() {
    let (_emu, ctrl) = setup(EmulatorConfig::default());
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let buf = ctrl.dma().alloc(4096, 4096).unwrap();
    buf.write(0, &pattern(2, 0, 4096));
    write_sync(&mut qp, 0, 8, &buf).unwrap();
    write_sync(&mut qp, 100, 8, &buf).unwrap();

    qp.compare(1, 0, 8, &buf, 1).unwrap();
    wait_one(&mut qp).1.unwrap();
    qp.write_zeroes(1, 0, 4, 2).unwrap();
    wait_one(&mut qp).1.unwrap();
    qp.compare(1, 0, 8, &buf, 3).unwrap();
    let err = wait_one(&mut qp).1.unwrap_err();
    assert_eq!(err.status().unwrap().sc(), MediaStatus::COMPARE_FAILURE);

    let out = ctrl.dma().alloc(4096, 4096).unwrap();
    read_sync(&mut qp, 0, 8, &out).unwrap();
    assert!(out.as_slice()[..2048].iter().all(|&b| b == 0));
    assert_eq!(&out.as_slice()[2048..], &pattern(2, 0, 4096)[2048..]);

    qp.deallocate(1, &[(100, 8), (200, 1)], 4).unwrap();
    wait_one(&mut qp).1.unwrap();
    read_sync(&mut qp, 100, 8, &out).unwrap();
    assert!(out.as_slice().iter().all(|&b| b == 0));
    qp.flush(1, 5).unwrap();
    assert_eq!(wait_one(&mut qp).0, 5);
}

#[test]
fn batch_completes_with_each_token_once() {
    let (_emu, ctrl) = setup(EmulatorConfig::default());
    let mut qp = ctrl.alloc_io_qpair_with(64).unwrap();
    for t in 0..50 {
        qp.flush(1, 1000 + t).unwrap();
    }
    qp.ring();
    let mut seen = Vec::new();
    while seen.len() < 50 {
        qp.poll(7, |t, r| {
            r.unwrap();
            seen.push(t);
        })
        .unwrap();
    }
    seen.sort();
    assert_eq!(seen, (1000..1050).collect::<Vec<_>>());
}

#[test]
fn hugepage_backed_io_when_hugepages_are_reserved() {
    let emu = nvme_driver::emulator::EmulatedController::new(EmulatorConfig::default());
    let opts = ControllerOptions { dma_backing: DmaBacking::Hugepages, ..Default::default() };
    let ctrl = match Controller::new_emulated(&emu, opts) {
        Ok(c) => c,
        Err(Error::NoHugepages { .. }) => {
            nvmf_test_support::skip("no hugepages reserved");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let total: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Total:").map(|v| v.trim().parse().unwrap()))
        .unwrap();
    assert!(nvme_driver::dma::hugepages_free().unwrap() < total, "queues should live in hugepages");
    let mut qp = ctrl.alloc_io_qpair().unwrap();
    let src = ctrl.dma().alloc(1 << 20, 4096).unwrap();
    src.write(0, &pattern(11, 0, 1 << 20));
    write_sync(&mut qp, 0, 2048, &src).unwrap();
    let dst = ctrl.dma().alloc(1 << 20, 4096).unwrap();
    read_sync(&mut qp, 0, 2048, &dst).unwrap();
    assert!(dst.as_slice() == &pattern(11, 0, 1 << 20)[..]);
}
