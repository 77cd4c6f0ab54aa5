//! Get Features and Set Features (Base 2.0 sections 5.15 and 5.27): the features a fabrics
//! controller has, with Get Features' Select field (current, default, saved, supported
//! capabilities). No feature is saveable: Select "saved" returns the default value, and Set
//! Features with Save set fails with Feature Identifier Not Saveable.

use crate::ctrlr::{Controller, DISCOVERY_DEFAULT_KATO_MS, MAX_IO_QUEUES, WARNING_TEMPERATURE_K};
use crate::queue::{Cmd, Exec};
use crate::spec::features::{cdw10_sel, sel};
use crate::spec::{fid, CommandSpecificStatus, GenericStatus, NumberOfQueues, Status};
use std::sync::atomic::Ordering;

/// Supported capabilities (Get Features with SEL 011b, Base 2.0 Figure 314): bit 2 the feature
/// is changeable (bit 0 saveable and bit 1 namespace specific never apply here).
const CHANGEABLE: u32 = 1 << 2;
/// Set Features CDW10 bit 31: Save (SV).
const SAVE: u32 = 1 << 31;

/// Whether any namespace of the controller's subsystem has a volatile write cache (Identify
/// Controller VWC bit 0).
pub(crate) fn has_volatile_write_cache(ctrl: &Controller) -> bool {
    ctrl.subsys.namespaces().iter().any(|n| n.bdev.volatile_write_cache())
}

/// The features this controller has, or `None` for an unsupported Feature Identifier.
/// Returns whether the host can change it.
fn changeable(ctrl: &Controller, f: u8) -> Option<bool> {
    match f {
        fid::NUMBER_OF_QUEUES | fid::KEEP_ALIVE_TIMER | fid::ASYNC_EVENT_CONFIG | fid::TEMP_THRESHOLD => Some(true),
        // Base 2.0 section 5.27.1.4: without a volatile write cache the feature is not there.
        fid::VOLATILE_WRITE_CACHE => has_volatile_write_cache(ctrl).then_some(true),
        // Accepted and kept at their only value: nothing here arbitrates, throttles, retries
        // or coalesces.
        fid::ARBITRATION | fid::POWER_MGMT | fid::ERROR_RECOVERY | fid::INTERRUPT_COALESCING | fid::WRITE_ATOMICITY => {
            Some(false)
        }
        // Set once by Connect's Host Identifier.
        fid::HOST_IDENTIFIER => Some(false),
        fid::RESERVATION_NOTIFICATION_MASK => Some(true),
        // Set through `reservation::set_persistence`, which writes the PTPL file.
        fid::RESERVATION_PERSISTENCE => Some(true),
        _ => None,
    }
}

/// Temperature Threshold CDW11 (Base 2.0 Figure 330): TMPTH bits 15:0, TMPSEL bits 19:16 (0:
/// composite temperature), THSEL bits 21:20 (00b over, 01b under).
fn temp_threshold_select(cdw11: u32) -> Option<u32> {
    let tmpsel = (cdw11 >> 16) & 0xf;
    let thsel = (cdw11 >> 20) & 0x3;
    (tmpsel == 0 && thsel <= 1).then_some(thsel * 16)
}

/// Namespace `nsid` of the subsystem if this controller's host sees it.
fn host_namespace(ctrl: &Controller, nsid: u32) -> Option<std::sync::Arc<crate::subsystem::Namespace>> {
    ctrl.subsys.namespace(nsid).filter(|ns| ns.visible_to(&ctrl.hostnqn))
}

/// The one namespace a namespace-specific feature names: FFFFFFFFh names none (Base 2.0
/// section 5.27: Invalid Field, as SPDK answers), an NSID the host does not see is an Invalid
/// Namespace or Format.
pub(crate) fn one_namespace(
    ctrl: &Controller,
    nsid: u32,
) -> Result<std::sync::Arc<crate::subsystem::Namespace>, Status> {
    host_namespace(ctrl, nsid).ok_or_else(|| {
        let sc =
            if nsid == 0xffff_ffff { GenericStatus::INVALID_FIELD } else { GenericStatus::INVALID_NAMESPACE_OR_FORMAT };
        Status::generic(sc).dnr()
    })
}

pub(crate) fn get_features(ctrl: &Controller, cmd: Cmd<'_>) -> Exec {
    let cdw10 = cmd.sqe.cdw10.get();
    let f = cdw10 as u8;
    let Some(can_change) = changeable(ctrl, f) else {
        cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
        return Exec::Complete;
    };
    let select = cdw10_sel(cdw10);
    let default = matches!(select, sel::DEFAULT | sel::SAVED);
    let dw0 = match select {
        sel::SUPPORTED_CAPABILITIES => {
            cmd.cqe.dw0.set(if can_change { CHANGEABLE } else { 0 });
            return Exec::Complete;
        }
        sel::CURRENT | sel::DEFAULT | sel::SAVED => match f {
            fid::NUMBER_OF_QUEUES => {
                let n = if default { MAX_IO_QUEUES } else { ctrl.num_io_queues() } as u32;
                NumberOfQueues { sq: n, cq: n }.to_dw()
            }
            fid::KEEP_ALIVE_TIMER if default && ctrl.subsys.is_discovery() => DISCOVERY_DEFAULT_KATO_MS,
            fid::KEEP_ALIVE_TIMER if default => 0,
            fid::KEEP_ALIVE_TIMER => ctrl.kato_ms(),
            fid::ASYNC_EVENT_CONFIG if default => 0,
            fid::ASYNC_EVENT_CONFIG => ctrl.aen_config.load(Ordering::Relaxed),
            fid::VOLATILE_WRITE_CACHE => (default || ctrl.write_cache_enabled()) as u32,
            fid::TEMP_THRESHOLD => {
                let Some(shift) = temp_threshold_select(cmd.sqe.cdw11.get()) else {
                    cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
                    return Exec::Complete;
                };
                let th =
                    if default { WARNING_TEMPERATURE_K as u32 } else { ctrl.temp_thresholds.load(Ordering::Relaxed) };
                (th >> shift) & 0xffff
            }
            fid::HOST_IDENTIFIER => {
                super::fill_data(cmd.buf, &ctrl.hostid);
                0
            }
            fid::RESERVATION_NOTIFICATION_MASK => {
                let ns = match one_namespace(ctrl, cmd.sqe.nsid.get()) {
                    Ok(ns) => ns,
                    Err(s) => {
                        cmd.cqe.set_status(s);
                        return Exec::Complete;
                    }
                };
                if default {
                    0
                } else {
                    ctrl.reservation_mask(ns.nsid)
                }
            }
            fid::RESERVATION_PERSISTENCE => {
                let Some(ns) = host_namespace(ctrl, cmd.sqe.nsid.get()) else {
                    cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT).dnr());
                    return Exec::Complete;
                };
                (!default && ns.reservations.snapshot().ptpl_activated) as u32
            }
            _ => 0,
        },
        _ => {
            cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
            return Exec::Complete;
        }
    };
    cmd.cqe.dw0.set(dw0);
    Exec::Complete
}

pub(crate) fn set_features(ctrl: &Controller, ctx: &mut crate::poll_group::GroupCtx, cmd: Cmd<'_>) -> Exec {
    let cdw10 = cmd.sqe.cdw10.get();
    let f = cdw10 as u8;
    let cdw11 = cmd.sqe.cdw11.get();
    let Some(can_change) = changeable(ctrl, f) else {
        cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
        return Exec::Complete;
    };
    if cdw10 & SAVE != 0 {
        cmd.cqe.set_status(Status::command_specific(CommandSpecificStatus::FEATURE_ID_NOT_SAVEABLE).dnr());
        return Exec::Complete;
    }
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
        // WCE (bit 0) off: this controller's writes are written through from now on.
        fid::VOLATILE_WRITE_CACHE => ctrl.set_write_cache_enabled(cdw11 & 1 != 0),
        fid::TEMP_THRESHOLD => {
            let Some(shift) = temp_threshold_select(cdw11) else {
                cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
                return Exec::Complete;
            };
            let th = cdw11 & 0xffff;
            let _ = ctrl
                .temp_thresholds
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some((v & !(0xffff << shift)) | th << shift));
        }
        // Bits 3:1 mask Registration Preempted, Reservation Released, Reservation Preempted, for
        // one namespace or (NSID FFFFFFFFh) all of them.
        fid::RESERVATION_NOTIFICATION_MASK => {
            let (nsid, mask) = (cmd.sqe.nsid.get(), cdw11 & 0b1110);
            if nsid == 0xffff_ffff {
                ctrl.set_reservation_mask(None, mask);
            } else if let Some(ns) = host_namespace(ctrl, nsid) {
                ctrl.set_reservation_mask(Some(ns.nsid), mask);
            } else {
                cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT).dnr());
            }
        }
        fid::HOST_IDENTIFIER => {
            // A fabrics controller's Host Identifier comes from Connect (NVMe-oF 1.1 section
            // 3.3); Linux nvmet answers a Set the same way.
            cmd.cqe.set_status(Status::generic(GenericStatus::COMMAND_SEQUENCE_ERROR).dnr());
        }
        // Writes the PTPL file before completing, as Register's CPTPL does.
        fid::RESERVATION_PERSISTENCE => return super::reservation::set_persistence(ctrl, ctx, cmd),
        _ => debug_assert!(!can_change),
    }
    Exec::Complete
}
