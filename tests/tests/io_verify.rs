//! Data path: write/read-back verify over several I/O queues on two poll groups, large
//! transfers through R2T, digests, and the NVM commands besides read and write.

#![forbid(unsafe_code)]

use nvmf::host::{Controller, HostConfig, HostError};
use nvmf::spec::{GenericStatus, MediaStatus, Sqe, StatusCodeType};
use nvmf_tests::*;

fn connect(t: &TestTarget, hd: bool, dd: bool) -> Controller {
    let cfg = HostConfig { header_digest: hd, data_digest: dd, ..Default::default() };
    Controller::connect(t.addr, NQN, &cfg).expect("connect")
}

#[test]
fn several_queues_on_two_poll_groups_from_two_threads() {
    let t = TestTarget::start(TargetSpec { poll_groups: 2, ..Default::default() });
    let mut c = connect(&t, false, false);
    let queues: Vec<_> = (1..=4).map(|qid| c.connect_io_queue(qid).expect("io queue")).collect();
    // Round-robin placement: the admin queue and four I/O queues span both poll groups.
    assert!(t.wait_for(|t| t.conns_per_group.iter().all(|n| n.load(std::sync::atomic::Ordering::Relaxed) >= 2)));
    let mut it = queues.into_iter();
    let pairs = [(it.next().unwrap(), it.next().unwrap()), (it.next().unwrap(), it.next().unwrap())];
    std::thread::scope(|s| {
        for (worker, (mut qa, mut qb)) in pairs.into_iter().enumerate() {
            s.spawn(move || {
                for i in 0..64u64 {
                    let lba = (worker as u64 * 100_000) + i * 16;
                    let q = if i % 2 == 0 { &mut qa } else { &mut qb };
                    let data = pattern(worker as u64, lba, 8192);
                    q.write(1, lba, 16, &data).expect("write");
                }
                for i in 0..64u64 {
                    let lba = (worker as u64 * 100_000) + i * 16;
                    // Read back through the other queue (possibly another poll group).
                    let q = if i % 2 == 0 { &mut qb } else { &mut qa };
                    let mut back = vec![0u8; 8192];
                    q.read(1, lba, 16, &mut back).expect("read");
                    assert_eq!(back, pattern(worker as u64, lba, 8192), "lba {lba}");
                }
            });
        }
    });
}

#[test]
fn one_mib_writes_through_r2t_with_and_without_digests() {
    let t = TestTarget::start(TargetSpec::default());
    for (hd, dd) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut c = connect(&t, hd, dd);
        let mut q = c.connect_io_queue(1).expect("io queue");
        let seed = hd as u64 * 2 + dd as u64;
        let lba = seed * 4096;
        let data = pattern(seed, lba, 1 << 20);
        q.write(1, lba, 2048, &data).expect("1 MiB write");
        let mut back = vec![0u8; 1 << 20];
        q.read(1, lba, 2048, &mut back).expect("1 MiB read");
        assert!(back == data, "1 MiB read-back differs (hdgst {hd}, ddgst {dd})");
        // A small write goes in-capsule.
        let small = pattern(seed + 10, lba, 512);
        q.write(1, lba + 5, 1, &small).expect("small write");
        let mut b = vec![0u8; 512];
        q.read(1, lba + 5, 1, &mut b).expect("small read");
        assert_eq!(b, small);
    }
}

#[test]
fn pipelined_io_keeps_many_r2ts_outstanding() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = connect(&t, false, false);
    let mut q = c.connect_io_queue(1).expect("io queue");
    // 32 writes of 64 KiB in flight at once: each needs its own R2T.
    let mut cids = Vec::new();
    for i in 0..32u64 {
        cids.push(q.submit_write(1, i * 128, 128, &pattern(7, i, 65536)).expect("submit"));
    }
    let mut done = 0;
    while done < cids.len() {
        done += q.poll(|_, cqe, _| assert!(cqe.is_success(), "write failed: {:?}", cqe.status())).expect("poll");
    }
    for i in 0..32u64 {
        let mut back = vec![0u8; 65536];
        q.read(1, i * 128, 128, &mut back).expect("read");
        assert!(back == pattern(7, i, 65536), "block {i}");
    }
}

#[test]
fn flush_write_zeroes_deallocate_compare() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = connect(&t, false, false);
    let mut q = c.connect_io_queue(1).expect("io queue");
    let data = pattern(3, 0, 4096);
    q.write(1, 100, 8, &data).expect("write");
    q.flush(1).expect("flush");
    q.compare(1, 100, 8, &data).expect("compare equal");
    let mut other = data.clone();
    other[17] ^= 1;
    let e = q.compare(1, 100, 8, &other).expect_err("compare must fail");
    let st = e.status().expect("status");
    assert_eq!((st.sct(), st.sc()), (StatusCodeType::MediaDataIntegrity as u8, MediaStatus::COMPARE_FAILURE));
    q.write_zeroes(1, 100, 4).expect("write zeroes");
    let mut back = vec![0u8; 4096];
    q.read(1, 100, 8, &mut back).expect("read");
    assert!(back[..2048].iter().all(|&b| b == 0));
    assert_eq!(&back[2048..], &data[2048..]);
    q.deallocate(1, &[(104, 4)]).expect("deallocate");
    q.read(1, 100, 8, &mut back).expect("read");
    assert!(back.iter().all(|&b| b == 0), "deallocated blocks read as zeroes on Malloc");
}

#[test]
fn bad_nsid_out_of_range_and_unknown_opcode_get_spec_status() {
    let t = TestTarget::start(TargetSpec::default());
    let mut c = connect(&t, false, false);
    let mut q = c.connect_io_queue(1).expect("io queue");
    let blocks = 64 * 1024 * 1024 / 512;
    let mut buf = vec![0u8; 512];
    let st = q.read(2, 0, 1, &mut buf).expect_err("nsid 2").status().expect("status");
    assert_eq!((st.sct(), st.sc(), st.is_dnr()), (0, GenericStatus::INVALID_NAMESPACE_OR_FORMAT, true));
    let st = q.read(1, blocks, 1, &mut buf).expect_err("past the end").status().expect("status");
    assert_eq!((st.sct(), st.sc()), (0, GenericStatus::LBA_OUT_OF_RANGE));
    let st = q.write(1, blocks - 1, 2, &vec![0u8; 1024]).expect_err("straddles the end").status().expect("status");
    assert_eq!(st.sc(), GenericStatus::LBA_OUT_OF_RANGE);
    let mut sqe = Sqe { opcode: 0x7e, nsid: 1.into(), ..Default::default() };
    sqe.flags = 0x40;
    let cqe = q.raw(sqe, None, None).expect("raw");
    assert_eq!((cqe.status().sct(), cqe.status().sc()), (0, GenericStatus::INVALID_OPCODE));
    // The queue still works afterwards.
    q.write(1, 0, 1, &pattern(1, 0, 512)).expect("write after errors");
    // An admin opcode on an I/O queue is invalid there.
    let sqe = Sqe { opcode: 0x06, flags: 0x40, ..Default::default() };
    let cqe = q.raw(sqe, None, None).expect("raw");
    assert_eq!(cqe.status().sc(), GenericStatus::INVALID_OPCODE);
    let _ = HostError::Closed;
}
