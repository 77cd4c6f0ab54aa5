//! Direct mode end to end: host client -> NVMe/TCP -> target -> `NvmeBdev` -> userspace driver
//! -> emulated PCIe NVMe controller, and back. Data is verified both over TCP and directly on the
//! emulator's RAM disk.

#![forbid(unsafe_code)]

use nvme_driver::emulator::{EmulatedController, EmulatorConfig};
use nvme_driver::{Controller as PcieController, ControllerOptions};
use nvmf::bdev::nvme::NvmeBdevOpts;
use nvmf::bdev::{Bdev, NvmeBdev};
use nvmf::host::{Controller, HostConfig};
use nvmf::spec::{MediaStatus, StatusCodeType};
use nvmf_tests::*;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const BS: u32 = 512;
const BLOCKS: u64 = 131_072; // 64 MiB

fn emulated(mdts: u8) -> (Arc<EmulatedController>, Arc<PcieController>) {
    let emu = EmulatedController::new(EmulatorConfig { namespaces: vec![(BS, BLOCKS)], mdts, ..Default::default() });
    let ctrl = Arc::new(PcieController::new_emulated(&emu, ControllerOptions::default()).expect("bring-up"));
    (emu, ctrl)
}

fn target(bdev: NvmeBdev) -> TestTarget {
    let bdevs: Vec<Arc<dyn Bdev>> = vec![Arc::new(bdev)];
    TestTarget::start(TargetSpec { bdevs, poll_groups: 2, ..Default::default() })
}

fn connect(t: &TestTarget) -> Controller {
    Controller::connect(t.addr, NQN, &HostConfig::default()).expect("connect")
}

fn disk(emu: &EmulatedController, lba: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    assert!(emu.read_disk(1, lba * BS as u64, &mut v), "read_disk");
    v
}

#[test]
fn several_queues_on_two_poll_groups_reach_the_device() {
    let (emu, ctrl) = emulated(9);
    let t = target(NvmeBdev::new("Nvme0n1", ctrl.clone(), 1).expect("bdev"));
    let mut c = connect(&t);
    let ns = c.identify_namespace(1).expect("identify ns");
    assert_eq!(ns.nsze.get(), BLOCKS);
    let queues: Vec<_> = (1..=4).map(|qid| c.connect_io_queue(qid).expect("io queue")).collect();
    assert!(t.wait_for(|t| t.conns_per_group.iter().all(|n| n.load(Ordering::Relaxed) >= 2)));
    let before = emu.stats();
    let mut it = queues.into_iter();
    let pairs = [(it.next().unwrap(), it.next().unwrap()), (it.next().unwrap(), it.next().unwrap())];
    std::thread::scope(|s| {
        for (worker, (mut qa, mut qb)) in pairs.into_iter().enumerate() {
            s.spawn(move || {
                for i in 0..48u64 {
                    let lba = worker as u64 * 50_000 + i * 16;
                    let q = if i % 2 == 0 { &mut qa } else { &mut qb };
                    q.write(1, lba, 16, &pattern(worker as u64, lba, 8192)).expect("write");
                }
                for i in 0..48u64 {
                    let lba = worker as u64 * 50_000 + i * 16;
                    // Read back through the other queue, possibly on the other poll group and so
                    // on the other hardware queue pair.
                    let q = if i % 2 == 0 { &mut qb } else { &mut qa };
                    let mut back = vec![0u8; 8192];
                    q.read(1, lba, 16, &mut back).expect("read");
                    assert_eq!(back, pattern(worker as u64, lba, 8192), "lba {lba}");
                }
            });
        }
    });
    // The data is on the device itself.
    for worker in 0..2u64 {
        for i in 0..48u64 {
            let lba = worker * 50_000 + i * 16;
            assert_eq!(disk(&emu, lba, 8192), pattern(worker, lba, 8192), "device lba {lba}");
        }
    }
    let after = emu.stats();
    assert!(after.io_commands - before.io_commands >= 192, "every host I/O became a device command");
    // Two poll groups, so two hardware queue pairs (plus the admin queue's).
    assert!(after.admin_commands - before.admin_commands >= 4, "create CQ+SQ per poll group");
}

#[test]
fn data_moves_between_socket_and_device_with_no_copy() {
    // The host's data lands in DMA buffers the bdev channel lent the transport, and read data
    // leaves from them: in-capsule writes (4 KiB), R2T writes (64 KiB, 1 MiB: a large buffer
    // split into device commands at offsets), reads of the same sizes, with and without digests.
    let (emu, ctrl) = emulated(5);
    let bdev = Arc::new(NvmeBdev::new("Nvme0n1", ctrl, 1).expect("bdev"));
    let bdevs: Vec<Arc<dyn Bdev>> = vec![bdev.clone()];
    let t = TestTarget::start(TargetSpec { bdevs, poll_groups: 2, ..Default::default() });
    for digests in [false, true] {
        let cfg = HostConfig { header_digest: digests, data_digest: digests, ..Default::default() };
        let mut c = Controller::connect(t.addr, NQN, &cfg).expect("connect");
        let mut q = c.connect_io_queue(1).expect("io queue");
        let seed = digests as u64;
        for (lba, len) in [(8u64, 4096usize), (64, 65536), (4096, 1 << 20)] {
            let data = pattern(seed, lba, len);
            q.write(1, lba, (len / BS as usize) as u32, &data).expect("write");
            assert!(disk(&emu, lba, len) == data, "{len} bytes at lba {lba} on the device");
            let mut back = vec![0u8; len];
            q.read(1, lba, (len / BS as usize) as u32, &mut back).expect("read");
            assert!(back == data, "{len} bytes at lba {lba} read back");
        }
        // 32 writes of 8 KiB in flight at once: lent buffers recycle.
        for i in 0..32u64 {
            q.submit_write(1, 20_000 + i * 16, 16, &pattern(seed + 7, i, 8192)).expect("submit");
        }
        let mut n = 32;
        while n > 0 {
            n -= q.poll(|_, cqe, _| assert!(cqe.is_success(), "write failed: {:?}", cqe.status())).expect("poll");
        }
        for i in 0..32u64 {
            assert!(disk(&emu, 20_000 + i * 16, 8192) == pattern(seed + 7, i, 8192), "write {i}");
        }
    }
    assert_eq!(bdev.copied_bytes(), 0, "no data was copied between transport and DMA buffers");
}

#[test]
fn one_mib_write_through_r2t_is_split_for_a_small_mdts() {
    // MDTS 3: 32 KiB per device command, so 1 MiB host I/O becomes 32 device commands.
    let (emu, ctrl) = emulated(3);
    let opts = NvmeBdevOpts { queue_entries: Some(16), ..Default::default() };
    let t = target(NvmeBdev::with_opts("Nvme0n1", ctrl, 1, opts).expect("bdev"));
    let mut c = connect(&t);
    let mut q = c.connect_io_queue(1).expect("io queue");
    let data = pattern(9, 4096, 1 << 20);
    let before = emu.stats().io_commands;
    q.write(1, 4096, 2048, &data).expect("1 MiB write");
    assert_eq!(emu.stats().io_commands - before, 32);
    assert!(disk(&emu, 4096, 1 << 20) == data, "1 MiB on the device");
    let mut back = vec![0u8; 1 << 20];
    q.read(1, 4096, 2048, &mut back).expect("1 MiB read");
    assert!(back == data, "1 MiB read back over TCP");
    // Pipelined: 16 writes of 64 KiB in flight, more than the 15 device command slots.
    let mut n = 0;
    for i in 0..16u64 {
        q.submit_write(1, 10_000 + i * 128, 128, &pattern(10, i, 65536)).expect("submit");
        n += 1;
    }
    while n > 0 {
        n -= q.poll(|_, cqe, _| assert!(cqe.is_success(), "write failed: {:?}", cqe.status())).expect("poll");
    }
    for i in 0..16u64 {
        assert!(disk(&emu, 10_000 + i * 128, 65536) == pattern(10, i, 65536), "write {i}");
    }
}

#[test]
fn compare_flush_write_zeroes_deallocate() {
    let (emu, ctrl) = emulated(9);
    let t = target(NvmeBdev::new("Nvme0n1", ctrl, 1).expect("bdev"));
    let mut c = connect(&t);
    let mut q = c.connect_io_queue(1).expect("io queue");
    let data = pattern(3, 0, 4096);
    q.write(1, 100, 8, &data).expect("write");
    q.flush(1).expect("flush");
    q.compare(1, 100, 8, &data).expect("compare equal");
    let mut other = data.clone();
    other[17] ^= 1;
    let st = q.compare(1, 100, 8, &other).expect_err("compare must fail").status().expect("status");
    assert_eq!((st.sct(), st.sc()), (StatusCodeType::MediaDataIntegrity as u8, MediaStatus::COMPARE_FAILURE));
    q.write_zeroes(1, 100, 4).expect("write zeroes");
    let on_disk = disk(&emu, 100, 4096);
    assert!(on_disk[..2048].iter().all(|&b| b == 0));
    assert_eq!(&on_disk[2048..], &data[2048..]);
    q.deallocate(1, &[(104, 4)]).expect("deallocate");
    assert!(disk(&emu, 100, 4096).iter().all(|&b| b == 0));
    let mut back = vec![1u8; 4096];
    q.read(1, 100, 8, &mut back).expect("read");
    assert!(back.iter().all(|&b| b == 0));
}

#[test]
fn media_error_reaches_the_host_as_unrecovered_read_error() {
    let (emu, ctrl) = emulated(9);
    let t = target(NvmeBdev::new("Nvme0n1", ctrl, 1).expect("bdev"));
    let mut c = connect(&t);
    let mut q = c.connect_io_queue(1).expect("io queue");
    let data = pattern(5, 200, 4096);
    q.write(1, 200, 8, &data).expect("write");
    emu.inject_media_error(1, 203, 1);
    let mut back = vec![0u8; 4096];
    let st = q.read(1, 200, 8, &mut back).expect_err("media error").status().expect("status");
    assert_eq!((st.sct(), st.sc()), (2, 0x81));
    assert_eq!((st.sct(), st.sc()), (StatusCodeType::MediaDataIntegrity as u8, MediaStatus::UNRECOVERED_READ_ERROR));
    // One-shot fault: the queue and the data are fine afterwards.
    q.read(1, 200, 8, &mut back).expect("read after the fault");
    assert_eq!(back, data);
    emu.inject_media_error(1, 300, 1);
    let st = q.write(1, 300, 1, &[0u8; 512]).expect_err("write fault").status().expect("status");
    assert_eq!((st.sct(), st.sc()), (2, MediaStatus::WRITE_FAULT));
}
