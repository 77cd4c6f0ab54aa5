//! Reservation Register, Acquire, Release and Report (Base 2.0 section 8.19 and the commands in
//! chapter 7): parse the command, run it on the namespace's [`Reservations`], tell the other
//! hosts' controllers (Reservation Notification log page and event), and, with a PTPL file,
//! complete only once the new state is on disk.
//!
//! [`Reservations`]: crate::reservation::Reservations

use crate::ctrlr::Controller;
use crate::poll_group::GroupCtx;
use crate::queue::{Cmd, Exec, NvmeQueue};
use crate::reservation::{Effects, Register, ReservationState};
use crate::spec::opcode::io;
use crate::spec::reservation::{
    RegisteredControllerExtended, ReservationAcquireData, ReservationCdw10, ReservationRegisterData,
    ReservationStatusHeader, REPORT_EDS,
};
use crate::spec::{GenericStatus, Status};
use crate::subsystem::Namespace;
use std::sync::Arc;
use zerocopy::{FromBytes, IntoBytes};

/// Whether `opcode` is a reservation command.
pub(crate) fn is_reservation(opcode: u8) -> bool {
    matches!(
        opcode,
        io::RESERVATION_REGISTER | io::RESERVATION_REPORT | io::RESERVATION_ACQUIRE | io::RESERVATION_RELEASE
    )
}

fn done(cmd: Cmd<'_>, s: Status) -> Exec {
    cmd.cqe.set_status(s);
    Exec::Complete
}

pub(crate) fn execute(q: &mut NvmeQueue, ctrl: &Controller, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    let nsid = cmd.sqe.nsid.get();
    let Some(ns) = q.namespace(ctrl, nsid) else {
        return done(cmd, Status::generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT).dnr());
    };
    if let Some(s) = super::io::ana_refusal(ctrl, &ns) {
        return done(cmd, s);
    }
    if cmd.sqe.opcode == io::RESERVATION_REPORT {
        return report(&ns, cmd);
    }
    let f = ReservationCdw10::from_dw(cmd.sqe.cdw10.get());
    let host = ctrl.hostid;
    let data = cmd.buf.as_ref().map_or(&[][..], |b| b.as_slice());
    let capable = ns.reservations.ptpl.is_some();
    let was_on = ns.reservations.snapshot().ptpl_activated;
    let ((result, st, seq), op) = match cmd.sqe.opcode {
        io::RESERVATION_REGISTER => {
            let Ok((k, _)) = ReservationRegisterData::read_from_prefix(data) else {
                return done(cmd, Status::generic(GenericStatus::INVALID_FIELD).dnr());
            };
            let (crkey, nrkey) = (k.crkey.get(), k.nrkey.get());
            let hostnqn = crate::reservation::hostnqn_key(&ctrl.hostnqn);
            let r = ns.reservations.update(|st| {
                st.register_as(
                    &host,
                    hostnqn,
                    Register { action: f.action, iekey: f.iekey, change_ptpl: f.cptpl, crkey, nrkey },
                    capable,
                )
            });
            (r, "register")
        }
        io::RESERVATION_ACQUIRE => {
            let Ok((k, _)) = ReservationAcquireData::read_from_prefix(data) else {
                return done(cmd, Status::generic(GenericStatus::INVALID_FIELD).dnr());
            };
            let (crkey, prkey) = (k.crkey.get(), k.prkey.get());
            (ns.reservations.update(|st| st.acquire(&host, f.action, f.iekey, f.rtype, crkey, prkey)), "acquire")
        }
        _ => {
            let Some(crkey) = data.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))) else {
                return done(cmd, Status::generic(GenericStatus::INVALID_FIELD).dnr());
            };
            (ns.reservations.update(|st| st.release(&host, f.action, f.iekey, f.rtype, crkey)), "release")
        }
    };
    let fx = match result {
        Ok(fx) => fx,
        Err(s) => {
            log::debug!("reservation {op} on NSID {nsid} from host {}: status {:#x}", ctrl.hostnqn, s.sc());
            return done(cmd, s);
        }
    };
    notify(ctrl, nsid, &fx);
    if fx.changed && (st.ptpl_activated || was_on) {
        persist(&ns, st, seq, ctx, cmd)
    } else {
        Exec::Complete
    }
}

/// Set Features Reservation Persistence (83h, Base 2.0 section 5.27.1.22) on namespace NSID:
/// CDW11 bit 0 turns Persist Through Power Loss on (the namespace needs a PTPL file) or off; a
/// change is written to the file before the command completes, as for Register's CPTPL.
pub(crate) fn set_persistence(ctrl: &Controller, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    let ns = match super::features::one_namespace(ctrl, cmd.sqe.nsid.get()) {
        Ok(ns) => ns,
        Err(s) => return done(cmd, s),
    };
    let on = cmd.sqe.cdw11.get() & 1 != 0;
    let capable = ns.reservations.ptpl.is_some();
    let (result, st, seq) = ns.reservations.update(|st| st.set_ptpl(on, capable));
    match result {
        Err(s) => done(cmd, s),
        Ok(fx) if fx.changed => persist(&ns, st, seq, ctx, cmd),
        Ok(_) => Exec::Complete,
    }
}

/// Queue each notice on the live controllers of the host it is for.
fn notify(ctrl: &Controller, nsid: u32, fx: &Effects) {
    if fx.notices.is_empty() {
        return;
    }
    for c in ctrl.subsys.controllers() {
        for (_, ty) in fx.notices.iter().filter(|(h, _)| *h == c.hostid) {
            c.reservation_notice(*ty, nsid);
        }
    }
}

/// Write the new state to the PTPL file off the poll group; the command completes when it is
/// on disk (Internal Error if the write fails: the host must not believe it persisted).
fn persist(ns: &Arc<Namespace>, st: ReservationState, seq: u64, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    let Some(file) = ns.reservations.ptpl.as_ref() else { return Exec::Complete };
    let contents = file.render(&st);
    let ns = ns.clone();
    let buf = cmd.buf.take();
    ctx.defer_fallible(cmd.tag, buf, move || {
        let Some(file) = ns.reservations.ptpl.as_ref() else { return Ok(Vec::new()) };
        file.store(seq, &contents).map(|()| Vec::new()).map_err(|e| {
            log::error!("PTPL file {}: {e}", file.path().display());
            Status::generic(GenericStatus::INTERNAL_ERROR)
        })
    });
    Exec::Pending
}

/// Reservation Report: the extended data structure only (fabrics hosts have 128-bit host
/// identifiers; without EDS the spec's answer is Host Identifier Inconsistent Format).
fn report(ns: &Namespace, cmd: Cmd<'_>) -> Exec {
    if cmd.sqe.cdw11.get() & REPORT_EDS == 0 {
        return done(cmd, Status::generic(GenericStatus::HOSTID_INCONSISTENT_FORMAT).dnr());
    }
    let st = ns.reservations.snapshot();
    let mut hdr = ReservationStatusHeader::default();
    hdr.gen.set(st.generation);
    hdr.rtype = st.reservation.map_or(0, |(t, _)| t as u8);
    hdr.regctl.set(st.registrants.len() as u16);
    hdr.ptpls = st.ptpl_activated as u8;
    // NUMD (CDW10) is 0's based; the buffer may be shorter still.
    let len = (cmd.sqe.cdw10.get() as usize + 1) * 4;
    let mut out = Vec::with_capacity(64 * (1 + st.registrants.len()));
    out.extend_from_slice(hdr.as_bytes());
    for r in &st.registrants {
        let mut e = RegisteredControllerExtended::default();
        // FFFFh: dynamic controllers; the registration belongs to the host, not a controller.
        e.cntlid.set(0xffff);
        e.rcsts = st.is_holder(&r.hostid) as u8;
        e.rkey.set(r.rkey);
        e.hostid = r.hostid;
        out.extend_from_slice(e.as_bytes());
    }
    out.truncate(len);
    super::fill_data(cmd.buf, &out);
    Exec::Complete
}
