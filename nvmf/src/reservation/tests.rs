//! Every transition of the reservation state machine, against the rules of Base 2.0 section 8.19.

use super::*;
use crate::spec::reservation::ReservationType as T;

const A: HostId = [0xa; 16];
const B: HostId = [0xb; 16];
const C: HostId = [0xc; 16];

fn sc(r: Result<Effects, Status>) -> u8 {
    r.expect_err("must fail").sc()
}

fn registered(hosts: &[(HostId, u64)]) -> ReservationState {
    let mut st = ReservationState::default();
    for (h, k) in hosts {
        st.register(h, Register { action: rrega::REGISTER, iekey: false, change_ptpl: 0, crkey: 0, nrkey: *k }, false)
            .expect("register");
    }
    st
}

fn acquire(st: &mut ReservationState, h: &HostId, key: u64, t: T) -> Result<Effects, Status> {
    st.acquire(h, racqa::ACQUIRE, false, t as u8, key, 0)
}

#[test]
fn register_unregister_replace() {
    let mut st = ReservationState::default();
    assert_eq!(
        sc(st.register(
            &A,
            Register { action: rrega::REGISTER, iekey: false, change_ptpl: 0, crkey: 0, nrkey: 0 },
            false
        )),
        GenericStatus::INVALID_FIELD,
        "NRKEY 0"
    );
    let fx = st
        .register(&A, Register { action: rrega::REGISTER, iekey: false, change_ptpl: 0, crkey: 0, nrkey: 1 }, false)
        .unwrap();
    assert!(fx.changed, "a new registrant changes the state");
    let again =
        st.register(&A, Register { action: rrega::REGISTER, iekey: false, change_ptpl: 0, crkey: 0, nrkey: 1 }, false);
    assert!(!again.unwrap().changed, "the same key again changes nothing (no PTPL write)");
    assert_eq!(st.generation, 1);
    // The same key again: success, no change of key; another key: conflict.
    st.register(&A, Register { action: rrega::REGISTER, iekey: false, change_ptpl: 0, crkey: 0, nrkey: 1 }, false)
        .unwrap();
    assert_eq!(
        sc(st.register(
            &A,
            Register { action: rrega::REGISTER, iekey: false, change_ptpl: 0, crkey: 0, nrkey: 2 },
            false
        )),
        GenericStatus::RESERVATION_CONFLICT
    );
    // Replace needs the current key unless IEKEY.
    assert_eq!(
        sc(st.register(
            &A,
            Register { action: rrega::REPLACE, iekey: false, change_ptpl: 0, crkey: 9, nrkey: 2 },
            false
        )),
        GenericStatus::RESERVATION_CONFLICT
    );
    st.register(&A, Register { action: rrega::REPLACE, iekey: false, change_ptpl: 0, crkey: 1, nrkey: 2 }, false)
        .unwrap();
    st.register(&A, Register { action: rrega::REPLACE, iekey: true, change_ptpl: 0, crkey: 0, nrkey: 3 }, false)
        .unwrap();
    assert_eq!(st.registrants, vec![Registrant { hostid: A, rkey: 3, hostnqn: 0 }]);
    // Replace by an unregistered host: conflict, or a registration with IEKEY.
    assert_eq!(
        sc(st.register(
            &B,
            Register { action: rrega::REPLACE, iekey: false, change_ptpl: 0, crkey: 0, nrkey: 5 },
            false
        )),
        GenericStatus::RESERVATION_CONFLICT
    );
    st.register(&B, Register { action: rrega::REPLACE, iekey: true, change_ptpl: 0, crkey: 0, nrkey: 5 }, false)
        .unwrap();
    // Unregister: key must match unless IEKEY; an unregistered host conflicts.
    assert_eq!(
        sc(st.register(
            &B,
            Register { action: rrega::UNREGISTER, iekey: false, change_ptpl: 0, crkey: 4, nrkey: 0 },
            false
        )),
        GenericStatus::RESERVATION_CONFLICT
    );
    st.register(&B, Register { action: rrega::UNREGISTER, iekey: false, change_ptpl: 0, crkey: 5, nrkey: 0 }, false)
        .unwrap();
    assert_eq!(
        sc(st.register(
            &B,
            Register { action: rrega::UNREGISTER, iekey: true, change_ptpl: 0, crkey: 0, nrkey: 0 },
            false
        )),
        GenericStatus::RESERVATION_CONFLICT
    );
    st.register(&A, Register { action: rrega::UNREGISTER, iekey: true, change_ptpl: 0, crkey: 0, nrkey: 0 }, false)
        .unwrap();
    assert!(st.registrants.is_empty());
    // Reserved action values.
    assert_eq!(
        sc(st.register(&A, Register { action: 3, iekey: false, change_ptpl: 0, crkey: 0, nrkey: 1 }, false)),
        GenericStatus::INVALID_FIELD
    );
}

#[test]
fn ptpl_change_needs_a_file() {
    let mut st = ReservationState::default();
    assert_eq!(
        sc(st.register(
            &A,
            Register { action: rrega::REGISTER, iekey: false, change_ptpl: cptpl::SET, crkey: 0, nrkey: 1 },
            false
        )),
        GenericStatus::INVALID_FIELD
    );
    assert_eq!(
        sc(st.register(
            &A,
            Register { action: rrega::REGISTER, iekey: false, change_ptpl: 0b01, crkey: 0, nrkey: 1 },
            true
        )),
        GenericStatus::INVALID_FIELD
    );
    st.register(
        &A,
        Register { action: rrega::REGISTER, iekey: false, change_ptpl: cptpl::SET, crkey: 0, nrkey: 1 },
        true,
    )
    .unwrap();
    assert!(st.ptpl_activated);
    st.register(
        &A,
        Register { action: rrega::REGISTER, iekey: false, change_ptpl: cptpl::CLEAR, crkey: 0, nrkey: 1 },
        true,
    )
    .unwrap();
    assert!(!st.ptpl_activated);
}

#[test]
fn registrant_table_is_bounded() {
    let mut st = ReservationState::default();
    for i in 0..MAX_REGISTRANTS {
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        st.register(&h, Register { action: rrega::REGISTER, iekey: false, change_ptpl: 0, crkey: 0, nrkey: 7 }, false)
            .unwrap();
    }
    assert_eq!(
        sc(st.register(
            &[0xff; 16],
            Register { action: rrega::REGISTER, iekey: false, change_ptpl: 0, crkey: 0, nrkey: 7 },
            false
        )),
        GenericStatus::INTERNAL_ERROR
    );
    assert_eq!(st.registrants.len(), MAX_REGISTRANTS);
}

#[test]
fn set_ptpl_needs_a_file_to_turn_on_and_reports_a_change() {
    let mut st = ReservationState::default();
    assert_eq!(sc(st.set_ptpl(true, false)), GenericStatus::INVALID_FIELD);
    assert!(!st.set_ptpl(false, false).unwrap().changed, "off while off");
    assert!(st.set_ptpl(true, true).unwrap().changed && st.ptpl_activated);
    assert!(!st.set_ptpl(true, true).unwrap().changed, "on while on: no file write");
    assert!(st.set_ptpl(false, true).unwrap().changed && !st.ptpl_activated);
}

#[test]
fn one_host_nqn_cannot_fill_the_registrant_table() {
    let mut st = ReservationState::default();
    let (greedy, other) = (hostnqn_key("nqn.2014-08.org.nvmexpress:uuid:greedy"), hostnqn_key("nqn.other"));
    let reg = Register { action: rrega::REGISTER, iekey: false, change_ptpl: 0, crkey: 0, nrkey: 7 };
    let id = |i: u8| [i; 16];
    for i in 0..MAX_REGISTRANTS_PER_HOSTNQN as u8 {
        st.register_as(&id(i + 1), greedy, reg, false).unwrap();
    }
    assert_eq!(sc(st.register_as(&id(100), greedy, reg, false)), GenericStatus::INTERNAL_ERROR, "its next Host ID");
    // Replace with IEKEY registers too: also refused.
    let replace = Register { action: rrega::REPLACE, iekey: true, nrkey: 8, ..reg };
    assert_eq!(sc(st.register_as(&id(101), greedy, replace, false)), GenericStatus::INTERNAL_ERROR);
    // What it holds still works, and another host registers.
    st.register_as(&id(1), greedy, Register { action: rrega::REPLACE, crkey: 7, nrkey: 9, ..reg }, false).unwrap();
    st.register_as(&id(200), other, reg, false).unwrap();
    // Once one of its registrations goes, it may register another Host ID.
    st.register_as(&id(2), greedy, Register { action: rrega::UNREGISTER, crkey: 7, ..reg }, false).unwrap();
    st.register_as(&id(100), greedy, reg, false).unwrap();
    assert_eq!(st.registrants.len(), MAX_REGISTRANTS_PER_HOSTNQN + 1);
}

#[test]
fn acquire_and_release_each_type() {
    for t in [
        T::WriteExclusive,
        T::ExclusiveAccess,
        T::WriteExclusiveRegistrantsOnly,
        T::ExclusiveAccessRegistrantsOnly,
        T::WriteExclusiveAllRegistrants,
        T::ExclusiveAccessAllRegistrants,
    ] {
        let mut st = registered(&[(A, 1), (B, 2)]);
        // Must be registered with the right key.
        assert_eq!(sc(acquire(&mut st, &C, 0, t)), GenericStatus::RESERVATION_CONFLICT);
        assert_eq!(sc(acquire(&mut st, &A, 9, t)), GenericStatus::RESERVATION_CONFLICT);
        acquire(&mut st, &A, 1, t).unwrap();
        assert!(st.is_holder(&A));
        assert_eq!(st.is_holder(&B), t.all_registrants(), "{t:?}");
        // Acquiring again, same type: fine; another type: conflict.
        assert!(!acquire(&mut st, &A, 1, t).unwrap().changed);
        let other = if t == T::WriteExclusive { T::ExclusiveAccess } else { T::WriteExclusive };
        assert_eq!(sc(acquire(&mut st, &A, 1, other)), GenericStatus::RESERVATION_CONFLICT);
        if !t.all_registrants() {
            assert_eq!(sc(acquire(&mut st, &B, 2, t)), GenericStatus::RESERVATION_CONFLICT, "held by A");
        }
        // Release: the type must match; a non-holder's release changes nothing.
        assert_eq!(sc(st.release(&A, rrela::RELEASE, false, other as u8, 1)), GenericStatus::INVALID_FIELD);
        if !t.all_registrants() {
            assert!(!st.release(&B, rrela::RELEASE, false, t as u8, 2).unwrap().changed);
            assert!(st.reservation.is_some());
        }
        let fx = st.release(&A, rrela::RELEASE, false, t as u8, 1).unwrap();
        assert!(st.reservation.is_none());
        // Registrants-only and all-registrants types tell the other registrants.
        let expect =
            if t.registrants_have_access() { vec![(B, notification_type::RESERVATION_RELEASED)] } else { vec![] };
        assert_eq!(fx.notices, expect, "{t:?}");
        assert_eq!(st.registrants.len(), 2, "release keeps registrations");
    }
}

#[test]
fn access_rules_for_holder_registrant_and_stranger() {
    // (type, registrant may read, registrant may write, stranger may read, stranger may write)
    let table = [
        (T::WriteExclusive, true, false, true, false),
        (T::ExclusiveAccess, false, false, false, false),
        (T::WriteExclusiveRegistrantsOnly, true, true, true, false),
        (T::ExclusiveAccessRegistrantsOnly, true, true, false, false),
        (T::WriteExclusiveAllRegistrants, true, true, true, false),
        (T::ExclusiveAccessAllRegistrants, true, true, false, false),
    ];
    for (t, rr, rw, sr, sw) in table {
        let mut st = registered(&[(A, 1), (B, 2)]);
        assert!(st.allows(&C, true), "no reservation: everyone");
        acquire(&mut st, &A, 1, t).unwrap();
        assert!(st.allows(&A, false) && st.allows(&A, true), "{t:?}: holder");
        assert_eq!((st.allows(&B, false), st.allows(&B, true)), (rr, rw), "{t:?}: registrant");
        assert_eq!((st.allows(&C, false), st.allows(&C, true)), (sr, sw), "{t:?}: stranger");
    }
}

#[test]
fn unregistering_the_holder_ends_or_passes_the_reservation() {
    let mut st = registered(&[(A, 1), (B, 2)]);
    acquire(&mut st, &A, 1, T::WriteExclusiveRegistrantsOnly).unwrap();
    let fx = st
        .register(&A, Register { action: rrega::UNREGISTER, iekey: false, change_ptpl: 0, crkey: 1, nrkey: 0 }, false)
        .unwrap();
    assert!(st.reservation.is_none());
    assert_eq!(fx.notices, vec![(B, notification_type::RESERVATION_RELEASED)]);
    // All registrants: the reservation stays with the others, then ends with the last.
    let mut st = registered(&[(A, 1), (B, 2)]);
    acquire(&mut st, &A, 1, T::ExclusiveAccessAllRegistrants).unwrap();
    st.register(&A, Register { action: rrega::UNREGISTER, iekey: false, change_ptpl: 0, crkey: 1, nrkey: 0 }, false)
        .unwrap();
    assert_eq!(st.reservation, Some((T::ExclusiveAccessAllRegistrants, B)));
    assert!(!st.allows(&A, false));
    st.register(&B, Register { action: rrega::UNREGISTER, iekey: false, change_ptpl: 0, crkey: 2, nrkey: 0 }, false)
        .unwrap();
    assert!(st.reservation.is_none());
}

#[test]
fn preempt() {
    // Single holder, PRKEY = holder's key: the holder is unregistered, the preempter holds.
    let mut st = registered(&[(A, 1), (B, 2), (C, 3)]);
    acquire(&mut st, &A, 1, T::WriteExclusive).unwrap();
    let gen = st.generation;
    let fx = st.acquire(&B, racqa::PREEMPT, false, T::ExclusiveAccess as u8, 2, 1).unwrap();
    assert_eq!(st.reservation, Some((T::ExclusiveAccess, B)));
    assert!(st.registrants.iter().all(|r| r.hostid != A));
    assert!(st.generation > gen);
    assert!(fx.notices.contains(&(A, notification_type::REGISTRATION_PREEMPTED)));
    assert!(fx.notices.contains(&(C, notification_type::RESERVATION_RELEASED)));
    // PRKEY of a non-holder: that registration goes, the reservation stays.
    let fx = st.acquire(&B, racqa::PREEMPT_AND_ABORT, false, T::ExclusiveAccess as u8, 2, 3).unwrap();
    assert_eq!(fx.notices, vec![(C, notification_type::REGISTRATION_PREEMPTED)]);
    assert_eq!(st.reservation, Some((T::ExclusiveAccess, B)));
    // PRKEY 0 against a single holder: conflict.
    let mut st = registered(&[(A, 1), (B, 2)]);
    acquire(&mut st, &A, 1, T::WriteExclusive).unwrap();
    assert_eq!(sc(st.acquire(&B, racqa::PREEMPT, false, 1, 2, 0)), GenericStatus::RESERVATION_CONFLICT);
    // The holder preempting itself changes the type.
    st.acquire(&A, racqa::PREEMPT, false, T::ExclusiveAccess as u8, 1, 1).unwrap();
    assert_eq!(st.reservation, Some((T::ExclusiveAccess, A)));
    assert_eq!(st.registrants.len(), 2);
    // All registrants, PRKEY 0: everyone else goes, the preempter holds the new type.
    let mut st = registered(&[(A, 1), (B, 2), (C, 3)]);
    acquire(&mut st, &A, 1, T::WriteExclusiveAllRegistrants).unwrap();
    st.acquire(&B, racqa::PREEMPT, false, T::WriteExclusive as u8, 2, 0).unwrap();
    assert_eq!(st.reservation, Some((T::WriteExclusive, B)));
    assert_eq!(st.registrants, vec![Registrant { hostid: B, rkey: 2, hostnqn: 0 }]);
    // All registrants, a PRKEY nobody has: conflict.
    let mut st = registered(&[(A, 1), (B, 2)]);
    acquire(&mut st, &A, 1, T::WriteExclusiveAllRegistrants).unwrap();
    assert_eq!(sc(st.acquire(&B, racqa::PREEMPT, false, 5, 2, 9)), GenericStatus::RESERVATION_CONFLICT);
    // No reservation: PRKEY only unregisters.
    let mut st = registered(&[(A, 1), (B, 2)]);
    st.acquire(&A, racqa::PREEMPT, false, 1, 1, 2).unwrap();
    assert!(st.reservation.is_none());
    assert_eq!(st.registrants.len(), 1);
    // IEKEY and bad types are invalid for Acquire.
    assert_eq!(sc(st.acquire(&A, racqa::ACQUIRE, true, 1, 1, 0)), GenericStatus::INVALID_FIELD);
    assert_eq!(sc(st.acquire(&A, racqa::ACQUIRE, false, 7, 1, 0)), GenericStatus::INVALID_FIELD);
    assert_eq!(sc(st.acquire(&A, 3, false, 1, 1, 0)), GenericStatus::INVALID_FIELD);
}

#[test]
fn clear_removes_everything_and_tells_the_others() {
    let mut st = registered(&[(A, 1), (B, 2)]);
    acquire(&mut st, &B, 2, T::WriteExclusive).unwrap();
    assert_eq!(sc(st.release(&A, rrela::CLEAR, false, 0, 9)), GenericStatus::RESERVATION_CONFLICT, "key");
    let fx = st.release(&A, rrela::CLEAR, false, 0, 1).unwrap();
    assert!(st.registrants.is_empty() && st.reservation.is_none());
    assert_eq!(fx.notices, vec![(B, notification_type::RESERVATION_PREEMPTED)]);
    assert_eq!(sc(st.release(&A, 2, false, 0, 1)), GenericStatus::RESERVATION_CONFLICT, "no longer registered");
}

#[test]
fn the_io_path_reads_an_atomic_until_a_reservation_is_held() {
    let r = Reservations::new(None, ReservationState::default());
    assert!(r.allows(&C, true));
    let ((), _, seq) = r.update(|st| {
        st.register(&A, Register { action: rrega::REGISTER, iekey: false, change_ptpl: 0, crkey: 0, nrkey: 1 }, false)
            .unwrap();
        acquire(st, &A, 1, T::WriteExclusive).unwrap();
    });
    assert_eq!(seq, 1);
    assert!(!r.allows(&C, true) && r.allows(&C, false) && r.allows(&A, true));
    r.update(|st| st.release(&A, rrela::RELEASE, false, 1, 1).unwrap());
    assert!(r.allows(&C, true));
}

#[test]
fn ptpl_file_round_trips_in_spdk_format_and_writes_in_order() {
    let dir = std::env::temp_dir().join(format!("nvmf-ptpl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ns1.json");
    let _ = std::fs::remove_file(&path);
    let f = ptpl::PtplFile::new(&path, [7; 16]);
    assert_eq!(f.load().unwrap(), ReservationState::default(), "no file yet");
    let mut st = registered(&[(A, 1), (B, 2)]);
    st.ptpl_activated = true;
    acquire(&mut st, &B, 2, T::WriteExclusiveRegistrantsOnly).unwrap();
    f.store(2, &f.render(&st)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ptpl"], true);
    assert_eq!(v["rtype"], 3);
    assert_eq!(v["crkey"], 2);
    assert_eq!(v["holder_uuid"], ptpl::uuid_text(&B));
    assert_eq!(v["bdev_uuid"], "07070707-0707-0707-0707-070707070707");
    assert_eq!(v["registrants"][0]["host_uuid"], ptpl::uuid_text(&A));
    let back = f.load().unwrap();
    assert_eq!(
        (back.registrants.clone(), back.reservation, back.ptpl_activated),
        (st.registrants.clone(), st.reservation, true)
    );
    // An older state arriving late is dropped.
    f.store(1, b"").unwrap();
    assert_eq!(f.load().unwrap().registrants.len(), 2);
    // PTPL off: the file is emptied, and loads as nothing.
    st.ptpl_activated = false;
    f.store(3, &f.render(&st)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"");
    assert_eq!(f.load().unwrap(), ReservationState::default());
    // Another namespace's file is refused.
    std::fs::write(&path, text).unwrap();
    assert!(ptpl::PtplFile::new(&path, [8; 16]).load().is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
