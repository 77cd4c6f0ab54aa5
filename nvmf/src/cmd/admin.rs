//! Admin commands (Base 2.0 section 5): Identify, Get Log Page, Get/Set Features, Keep Alive,
//! Asynchronous Event Request, Abort.

use crate::ctrlr::{Controller, MAX_AERS};
use crate::poll_group::GroupCtx;
use crate::queue::{Cmd, Exec, NvmeQueue};
use crate::spec::features::async_event_config;
use crate::spec::{
    async_event_notice, async_event_type, fid, lid, AdminOpcode, AsyncEvent, ChangedNsList, CommandSpecificStatus,
    GenericStatus, GetLogPageArgs, NumberOfQueues, SmartLog, Status,
};
use std::sync::atomic::Ordering;
use zerocopy::IntoBytes;

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
        Some(AdminOpcode::GetLogPage) => get_log_page(ctrl, ctx, cmd),
        Some(AdminOpcode::GetFeatures) => get_features(ctrl, cmd),
        Some(AdminOpcode::SetFeatures) => set_features(ctrl, cmd),
        Some(AdminOpcode::KeepAlive) => {
            ctrl.keep_alive(ctx.now);
            Exec::Complete
        }
        Some(AdminOpcode::AsyncEventRequest) => {
            if q.aer_slots.len() >= MAX_AERS {
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

/// The next asynchronous event for a parked AER, if one is pending and enabled.
pub(crate) fn take_event(ctrl: &Controller) -> Option<u32> {
    let mut ev = ctrl.events.lock().unwrap_or_else(|e| e.into_inner());
    let enabled = ctrl.aen_config.load(Ordering::Relaxed) & async_event_config::NS_ATTR_NOTICES != 0;
    let result = if ev.ns_change_pending && !ev.ns_change_masked && enabled {
        ev.ns_change_pending = false;
        ev.ns_change_masked = true;
        Some(
            AsyncEvent::new(async_event_type::NOTICE, async_event_notice::NS_ATTR_CHANGED, lid::CHANGED_NS_LIST)
                .to_dw0(),
        )
    } else {
        None
    };
    // Nothing deliverable now (delivered, masked or disabled): clear the flag; reading the
    // changed namespace log or changing the configuration sets it again.
    ctrl.event_flag.store(false, Ordering::Release);
    result
}

fn get_log_page(ctrl: &Controller, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    let args = GetLogPageArgs::from_sqe(cmd.sqe);
    let len = args.byte_len();
    if cmd.buf.as_ref().map_or(0, |b| b.len() as u64) < len {
        cmd.cqe.set_status(Status::generic(GenericStatus::DATA_SGL_LENGTH_INVALID).dnr());
        return Exec::Complete;
    }
    let discovery = ctrl.subsys.is_discovery();
    let page: Vec<u8> = match args.lid {
        lid::DISCOVERY if discovery => super::discovery::build_log(&*ctx.target, &ctrl.hostnqn),
        lid::ERROR => vec![0; 64],
        lid::SMART if !discovery => {
            let mut smart = SmartLog::default();
            // 37 degrees C in kelvin, full spare capacity, 10% threshold.
            smart.composite_temperature.set(310);
            smart.avail_spare = 100;
            smart.avail_spare_threshold = 10;
            smart.as_bytes().to_vec()
        }
        lid::CHANGED_NS_LIST if !discovery => {
            let mut ev = ctrl.events.lock().unwrap_or_else(|e| e.into_inner());
            let list = ChangedNsList::from_nsids(ev.changed_ns.iter().copied());
            if !args.rae {
                ev.changed_ns.clear();
                ev.ns_change_masked = false;
                if ev.ns_change_pending {
                    ctrl.event_flag.store(true, Ordering::Release);
                }
            }
            list.as_bytes().to_vec()
        }
        _ => {
            cmd.cqe.set_status(Status::command_specific(CommandSpecificStatus::INVALID_LOG_PAGE).dnr());
            return Exec::Complete;
        }
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

/// Whether any namespace of the controller's subsystem has a volatile write cache (Identify
/// Controller VWC bit 0).
pub(crate) fn has_volatile_write_cache(ctrl: &Controller) -> bool {
    ctrl.subsys.namespaces().iter().any(|n| n.bdev.volatile_write_cache())
}

fn get_features(ctrl: &Controller, cmd: Cmd<'_>) -> Exec {
    let f = cmd.sqe.cdw10.get() as u8;
    let dw0 = match f {
        fid::NUMBER_OF_QUEUES => {
            let n = ctrl.num_io_queues() as u32;
            NumberOfQueues { sq: n, cq: n }.to_dw()
        }
        fid::KEEP_ALIVE_TIMER => ctrl.kato_ms(),
        fid::ASYNC_EVENT_CONFIG => ctrl.aen_config.load(Ordering::Relaxed),
        // Base 2.0 section 5.27.1.4: without a volatile write cache the feature is not there.
        fid::VOLATILE_WRITE_CACHE if !has_volatile_write_cache(ctrl) => {
            cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
            return Exec::Complete;
        }
        fid::VOLATILE_WRITE_CACHE => ctrl.write_cache_enabled() as u32,
        fid::ARBITRATION | fid::POWER_MGMT | fid::ERROR_RECOVERY | fid::INTERRUPT_COALESCING | fid::WRITE_ATOMICITY => {
            0
        }
        fid::TEMP_THRESHOLD => 0x0157, // 343 K
        fid::HOST_IDENTIFIER => {
            super::fill_data(cmd.buf, &ctrl.hostid);
            0
        }
        _ => {
            cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
            return Exec::Complete;
        }
    };
    cmd.cqe.dw0.set(dw0);
    Exec::Complete
}

fn set_features(ctrl: &Controller, cmd: Cmd<'_>) -> Exec {
    let f = cmd.sqe.cdw10.get() as u8;
    let cdw11 = cmd.sqe.cdw11.get();
    match f {
        fid::NUMBER_OF_QUEUES => {
            let req = NumberOfQueues::from_dw(cdw11);
            if cdw11 & 0xffff == 0xffff || cdw11 >> 16 == 0xffff {
                cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
                return Exec::Complete;
            }
            let n = ctrl.set_num_io_queues(req.sq.min(req.cq).min(u16::MAX as u32) as u16) as u32;
            cmd.cqe.dw0.set(NumberOfQueues { sq: n, cq: n }.to_dw());
        }
        fid::KEEP_ALIVE_TIMER => ctrl.set_kato_ms(cdw11),
        fid::ASYNC_EVENT_CONFIG => {
            ctrl.aen_config.store(cdw11, Ordering::Relaxed);
            ctrl.event_flag.store(true, Ordering::Release);
        }
        fid::VOLATILE_WRITE_CACHE if !has_volatile_write_cache(ctrl) => {
            cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr())
        }
        // WCE (bit 0) off: this controller's writes are written through from now on.
        fid::VOLATILE_WRITE_CACHE => ctrl.set_write_cache_enabled(cdw11 & 1 != 0),
        fid::ARBITRATION
        | fid::POWER_MGMT
        | fid::TEMP_THRESHOLD
        | fid::ERROR_RECOVERY
        | fid::INTERRUPT_COALESCING
        | fid::WRITE_ATOMICITY => {}
        _ => cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr()),
    }
    Exec::Complete
}
