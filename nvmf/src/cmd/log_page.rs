//! Get Log Page (Base 2.0 section 5.16): the log pages an I/O controller and a discovery
//! controller serve. Base 2.0 makes Supported Log Pages, Error Information, SMART / Health
//! Information, Firmware Slot Information and Commands Supported and Effects mandatory for an I/O
//! controller; a discovery controller serves Supported Log Pages, Error Information and the
//! Discovery log page (NVMe-oF 1.1 section 5.3).

use crate::ctrlr::{Controller, WARNING_TEMPERATURE_K};
use crate::poll_group::GroupCtx;
use crate::queue::{Cmd, Exec};
use crate::spec::opcode::io;
use crate::spec::reservation::ReservationNotificationLog;
use crate::spec::{
    cmd_effects, lid, put_str, AdminOpcode, ChangedNsList, CommandSpecificStatus, CommandsSupportedEffects,
    FirmwareSlotLog, GenericStatus, GetLogPageArgs, NvmOpcode, SmartLog, Status, SupportedLogPages,
};
use crate::spec::{AnaGroupDescriptor, AnaLogHeader, ANA_LSP_RGO};
use std::sync::atomic::Ordering;
use zerocopy::{FromZeros, IntoBytes};

/// Log pages of an I/O controller (Supported Log Pages lists exactly these).
const IO_CONTROLLER_PAGES: [u8; 7] = [
    lid::SUPPORTED_LOG_PAGES,
    lid::ERROR,
    lid::SMART,
    lid::FW_SLOT,
    lid::CHANGED_NS_LIST,
    lid::COMMANDS_SUPPORTED,
    lid::RESERVATION_NOTIFICATION,
];
/// Log pages of a discovery controller.
const DISCOVERY_PAGES: [u8; 3] = [lid::SUPPORTED_LOG_PAGES, lid::ERROR, lid::DISCOVERY];

/// Admin commands an I/O controller executes (Commands Supported and Effects ACS); a discovery
/// controller has the same less Abort. None changes logical blocks or capabilities.
const ADMIN_COMMANDS: [AdminOpcode; 7] = [
    AdminOpcode::GetLogPage,
    AdminOpcode::Identify,
    AdminOpcode::Abort,
    AdminOpcode::SetFeatures,
    AdminOpcode::GetFeatures,
    AdminOpcode::AsyncEventRequest,
    AdminOpcode::KeepAlive,
];

/// The NVM commands every namespace executes, and whether each changes logical block content
/// (LBCC; Linux warns about any other effect on an I/O command).
const NVM_COMMANDS: [(NvmOpcode, bool); 6] = [
    (NvmOpcode::Flush, false),
    (NvmOpcode::Write, true),
    (NvmOpcode::Read, false),
    (NvmOpcode::Compare, false),
    (NvmOpcode::WriteZeroes, true),
    (NvmOpcode::DatasetManagement, true),
];

/// The reservation commands, which every namespace executes (the target arbitrates them).
const RESERVATION_COMMANDS: [u8; 4] =
    [io::RESERVATION_REGISTER, io::RESERVATION_REPORT, io::RESERVATION_ACQUIRE, io::RESERVATION_RELEASE];

/// The log pages this controller serves (what Supported Log Pages lists).
fn supported_pages(ctrl: &Controller) -> Vec<u8> {
    if ctrl.subsys.is_discovery() {
        return DISCOVERY_PAGES.to_vec();
    }
    let mut v = IO_CONTROLLER_PAGES.to_vec();
    if ctrl.subsys.ana_reporting {
        v.push(lid::ANA);
        v.sort_unstable();
    }
    v
}

pub(crate) fn execute(ctrl: &Controller, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    let args = GetLogPageArgs::from_sqe(cmd.sqe);
    let len = args.byte_len();
    if cmd.buf.as_ref().map_or(0, |b| b.len() as u64) < len {
        cmd.cqe.set_status(Status::generic(GenericStatus::DATA_SGL_LENGTH_INVALID).dnr());
        return Exec::Complete;
    }
    // Offset Type 1 (an index into a list, Base 2.0 section 5.16) is for pages this target
    // does not have.
    if args.ot {
        cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
        return Exec::Complete;
    }
    let supported = supported_pages(ctrl);
    if !supported.contains(&args.lid) {
        cmd.cqe.set_status(Status::command_specific(CommandSpecificStatus::INVALID_LOG_PAGE).dnr());
        return Exec::Complete;
    }
    let page: Vec<u8> = match args.lid {
        lid::SUPPORTED_LOG_PAGES => SupportedLogPages::with(&supported).as_bytes().to_vec(),
        lid::ANA => ana_log(ctrl, args.lsp & ANA_LSP_RGO != 0, args.rae),
        lid::DISCOVERY => {
            let (page, genctr) = super::discovery::build_log(&*ctx.target, &ctrl.hostnqn, ctrl.listener.trtype);
            if !args.rae {
                ctrl.discovery_log_read(genctr);
            }
            page
        }
        // One entry (Identify ELPE 0), never filled: errors are reported in each completion.
        lid::ERROR => vec![0; 64],
        lid::SMART => smart_log().as_bytes().to_vec(),
        lid::FW_SLOT => firmware_slot_log().as_bytes().to_vec(),
        lid::COMMANDS_SUPPORTED => commands_supported(ctrl, args.csi).as_bytes().to_vec(),
        lid::RESERVATION_NOTIFICATION => reservation_notification(ctrl, args.rae).as_bytes().to_vec(),
        _ => changed_ns_list(ctrl, args.rae).as_bytes().to_vec(),
    };
    if args.offset > page.len() as u64 || !args.offset.is_multiple_of(4) {
        cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
        return Exec::Complete;
    }
    let start = args.offset as usize;
    let end = (start as u64 + len).min(page.len() as u64) as usize;
    super::fill_data(cmd.buf, &page[start..end]);
    Exec::Complete
}

fn smart_log() -> SmartLog {
    let mut smart = SmartLog::default();
    // 37 degrees C in kelvin, below the warning threshold; full spare capacity, 10% threshold.
    const _: () = assert!(310 < WARNING_TEMPERATURE_K);
    smart.composite_temperature.set(310);
    smart.avail_spare = 100;
    smart.avail_spare_threshold = 10;
    smart
}

/// One read-only slot holding this build's firmware revision (Identify FRMW says the same).
fn firmware_slot_log() -> FirmwareSlotLog {
    let mut log = FirmwareSlotLog::new_zeroed();
    log.afi = 1;
    put_str(&mut log.frs[0], env!("CARGO_PKG_VERSION"), b' ');
    log
}

fn commands_supported(ctrl: &Controller, csi: u8) -> CommandsSupportedEffects {
    let mut log = CommandsSupportedEffects::new_zeroed();
    let discovery = ctrl.subsys.is_discovery();
    for op in ADMIN_COMMANDS.iter().filter(|&&op| !discovery || op != AdminOpcode::Abort) {
        log.acs[*op as usize].set(cmd_effects::CSUPP);
    }
    // I/O commands only for the NVM Command Set, the one set this controller has.
    if discovery || csi != crate::spec::csi::NVM {
        return log;
    }
    for (op, lbcc) in NVM_COMMANDS {
        log.iocs[op as usize].set(cmd_effects::CSUPP | if lbcc { cmd_effects::LBCC } else { 0 });
    }
    for op in RESERVATION_COMMANDS {
        log.iocs[op as usize].set(cmd_effects::CSUPP);
    }
    // Direct mode passes these two through to the device (see `passthru`).
    if ctrl.subsys.namespaces().iter().any(|ns| ns.bdev.supports_passthru()) {
        log.iocs[io::WRITE_UNCORRECTABLE as usize].set(cmd_effects::CSUPP | cmd_effects::LBCC);
        log.iocs[io::VERIFY as usize].set(cmd_effects::CSUPP);
    }
    log
}

/// The oldest unread Reservation Notification (Base 2.0 section 5.16.1.21): reading it removes
/// it, and unless RAE, unmasks the event for the next one.
fn reservation_notification(ctrl: &Controller, rae: bool) -> ReservationNotificationLog {
    let mut ev = ctrl.events.lock().unwrap_or_else(|e| e.into_inner());
    let mut log = ReservationNotificationLog::default();
    if let Some((log_type, nsid)) = ev.reservation_notices.pop_front() {
        // The count of the entry returned: the newest count less those still queued.
        let count = ev.reservation_notice_count.wrapping_sub(ev.reservation_notices.len() as u64);
        log.log_page_count.set(count);
        log.log_type = log_type;
        log.num_available = ev.reservation_notices.len().min(255) as u8;
        log.nsid.set(nsid);
    }
    if !rae {
        ev.reservation_masked = false;
        if !ev.reservation_notices.is_empty() {
            ctrl.event_flag.store(true, Ordering::Release);
        }
    }
    log
}

/// The ANA log page (Base 2.0 section 5.16.1.9): one descriptor per ANA group that has a
/// namespace this controller's host sees, in group order, each with its state through this
/// controller and (unless Return Groups Only) its NSIDs in ascending order.
fn ana_log(ctrl: &Controller, groups_only: bool, rae: bool) -> Vec<u8> {
    let table = ctrl.subsys.ns_table_for(&ctrl.hostnqn);
    let mut groups: Vec<(u32, Vec<u32>)> = Vec::new();
    for ns in table.iter().flatten() {
        match groups.iter_mut().find(|(g, _)| *g == ns.anagrpid) {
            Some((_, nsids)) => nsids.push(ns.nsid),
            None => groups.push((ns.anagrpid, vec![ns.nsid])),
        }
    }
    groups.sort_unstable_by_key(|(g, _)| *g);
    // The Change Count and the states as one snapshot; a read without RAE covers every change
    // so far, so none of them raises another event.
    let (chgcnt, states) = ctrl.subsys.with_ana_stable(|chgcnt| {
        let states: Vec<u8> = groups.iter().map(|(g, _)| ctrl.ana_state(*g) as u8).collect();
        if !rae {
            let mut ev = ctrl.events.lock().unwrap_or_else(|e| e.into_inner());
            ev.ana_change_masked = false;
            ev.ana_change_pending = false;
        }
        (chgcnt, states)
    });
    let mut hdr = AnaLogHeader::default();
    hdr.chgcnt.set(chgcnt);
    hdr.ngrps.set(groups.len() as u16);
    let mut out = hdr.as_bytes().to_vec();
    for ((g, nsids), state) in groups.iter().zip(states) {
        let mut d = AnaGroupDescriptor::default();
        d.anagrpid.set(*g);
        d.nnsid.set(if groups_only { 0 } else { nsids.len() as u32 });
        d.chgcnt.set(chgcnt);
        d.state = state;
        out.extend_from_slice(d.as_bytes());
        if !groups_only {
            for n in nsids {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
    }
    out
}

fn changed_ns_list(ctrl: &Controller, rae: bool) -> ChangedNsList {
    let mut ev = ctrl.events.lock().unwrap_or_else(|e| e.into_inner());
    let list = ChangedNsList::from_nsids(ev.changed_ns.iter().copied());
    if !rae {
        // The list read covers every change so far (it is taken under the same lock): no
        // second event for them.
        ev.changed_ns.clear();
        ev.ns_change_masked = false;
        ev.ns_change_pending = false;
    }
    list
}
