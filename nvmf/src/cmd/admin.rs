//! Admin commands (Base 2.0 section 5): dispatch, Keep Alive, Asynchronous Event Request,
//! Abort. Identify, Get Log Page and Get/Set Features have their own files.

use crate::ctrlr::{Controller, EventState, MAX_AERS};
use crate::poll_group::GroupCtx;
use crate::queue::{Cmd, Exec, NvmeQueue};
use crate::spec::features::async_event_config;
use crate::spec::{
    async_event_notice, async_event_type, lid, AdminOpcode, AsyncEvent, CommandSpecificStatus, GenericStatus, Status,
};
use std::sync::atomic::Ordering;

pub(crate) fn execute(q: &mut NvmeQueue, ctrl: &Controller, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    let op = AdminOpcode::from_u8(cmd.sqe.opcode);
    // Until the host enables the controller only fabrics commands are allowed.
    if !ctrl.is_ready() {
        cmd.cqe.set_status(Status::generic(GenericStatus::COMMAND_SEQUENCE_ERROR).dnr());
        return Exec::Complete;
    }
    let discovery = ctrl.subsys.is_discovery();
    match op {
        Some(AdminOpcode::Identify) => super::identify::execute(q, ctrl, cmd),
        Some(AdminOpcode::GetLogPage) => super::log_page::execute(ctrl, ctx, cmd),
        Some(AdminOpcode::GetFeatures) => super::features::get_features(ctrl, cmd),
        Some(AdminOpcode::SetFeatures) => super::features::set_features(ctrl, ctx, cmd),
        Some(AdminOpcode::KeepAlive) => {
            ctrl.keep_alive(ctx.now);
            Exec::Complete
        }
        Some(AdminOpcode::AsyncEventRequest) => {
            if q.parked_aers() >= MAX_AERS {
                cmd.cqe.set_status(
                    Status::command_specific(CommandSpecificStatus::ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED).dnr(),
                );
                return Exec::Complete;
            }
            Exec::Parked
        }
        Some(AdminOpcode::Abort) if !discovery => {
            // DW0 bit 0 = 1: the command was not aborted. Commands here finish quickly; the
            // spec allows a controller to decline.
            cmd.cqe.dw0.set(1);
            Exec::Complete
        }
        _ => {
            cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_OPCODE).dnr());
            Exec::Complete
        }
    }
}

/// The next asynchronous event for a parked AER, if one is pending and enabled: Discovery Log
/// Page Change (AEC bit 31, discovery controllers), Asymmetric Namespace Access Change (AEC
/// bit 11), Namespace Attribute Changed (AEC bit 8), then Reservation Log Page Available (I/O
/// Command Set specific event 0; masked per notice type by the Reservation Notification Mask
/// feature instead).
pub(crate) fn take_event(ctrl: &Controller) -> Option<u32> {
    let mut ev = ctrl.events.lock().unwrap_or_else(|e| e.into_inner());
    let ns_enabled = ctrl.aen_config.load(Ordering::Relaxed) & async_event_config::NS_ATTR_NOTICES != 0;
    let ns_ready = |ev: &EventState| ev.ns_change_pending && !ev.ns_change_masked && ns_enabled;
    let resv_ready = |ev: &EventState| !ev.reservation_notices.is_empty() && !ev.reservation_masked;
    let ana_enabled = ctrl.aen_config.load(Ordering::Relaxed) & async_event_config::ANA_CHANGE_NOTICES != 0;
    let ana_ready = |ev: &EventState| ev.ana_change_pending && !ev.ana_change_masked && ana_enabled;
    let disc_enabled = ctrl.aen_config.load(Ordering::Relaxed) & async_event_config::DISCOVERY_LOG_CHANGE_NOTICES != 0;
    let disc_ready = |ev: &EventState| ev.disc_change_pending && !ev.disc_change_masked && disc_enabled;
    let result = if disc_ready(&ev) {
        // Only discovery controllers raise it: the host reads the log page again.
        ev.disc_change_pending = false;
        ev.disc_change_masked = true;
        Some(
            AsyncEvent::new(async_event_type::NOTICE, async_event_notice::DISCOVERY_LOG_CHANGE, lid::DISCOVERY)
                .to_dw0(),
        )
    } else if ana_ready(&ev) {
        // Multipath hosts act on this one first: it moves their I/O to another path.
        ev.ana_change_pending = false;
        ev.ana_change_masked = true;
        Some(AsyncEvent::new(async_event_type::NOTICE, async_event_notice::ANA_CHANGE, lid::ANA).to_dw0())
    } else if ns_ready(&ev) {
        ev.ns_change_pending = false;
        ev.ns_change_masked = true;
        Some(
            AsyncEvent::new(async_event_type::NOTICE, async_event_notice::NS_ATTR_CHANGED, lid::CHANGED_NS_LIST)
                .to_dw0(),
        )
    } else if resv_ready(&ev) {
        ev.reservation_masked = true;
        Some(AsyncEvent::new(async_event_type::IO_COMMAND_SET, 0, lid::RESERVATION_NOTIFICATION).to_dw0())
    } else {
        None
    };
    // Nothing more deliverable now (delivered, masked or disabled): clear the flag; reading a
    // log page or changing the configuration sets it again.
    let more = ns_ready(&ev) || resv_ready(&ev) || ana_ready(&ev) || disc_ready(&ev);
    ctrl.event_flag.store(more, Ordering::Release);
    result
}
