//! Fabrics commands (NVMe-oF 1.1 section 3.3): Connect, Property Get/Set, Disconnect;
//! Authentication Send/Receive go to `cmd::auth`.

use crate::ctrlr::{CcChange, Controller, MAX_ADMIN_QUEUE_DEPTH, MAX_QUEUE_DEPTH, NVME_VERSION};
use crate::fanout::FanoutDone;
use crate::poll_group::GroupCtx;
use crate::queue::{Cmd, Connected, Exec, NvmeQueue};
use crate::spec::fabrics::{
    connect_invalid_param_dw0, connect_ipo, ConnectCmd, ConnectData, PropertyCmd, CNTLID_DYNAMIC,
};
use crate::spec::{get_str, reg, Cc, CommandSpecificStatus, FabricsType, GenericStatus, Status};
use zerocopy::FromBytes;

/// Connect CATTR bit 2: the host disables SQ flow control.
const CATTR_DISABLE_SQ_FLOW: u8 = 1 << 2;

pub(crate) fn execute(q: &mut NvmeQueue, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    let fctype = cmd.sqe.fctype();
    match FabricsType::from_u8(fctype) {
        Some(FabricsType::Connect) => connect(q, ctx, cmd),
        _ if !q.is_connected() => {
            cmd.cqe.set_status(Status::generic(GenericStatus::COMMAND_SEQUENCE_ERROR).dnr());
            Exec::Complete
        }
        Some(FabricsType::AuthenticationSend) => super::auth::send(q, ctx, cmd),
        Some(FabricsType::AuthenticationReceive) => super::auth::receive(q, ctx, cmd),
        Some(FabricsType::Disconnect) => Exec::CompleteThenClose,
        _ if q.auth_pending() => {
            cmd.cqe.set_status(Status::command_specific(CommandSpecificStatus::AUTH_REQUIRED).dnr());
            Exec::Complete
        }
        Some(FabricsType::PropertyGet) if q.qid() == 0 => property_get(q, cmd),
        Some(FabricsType::PropertySet) if q.qid() == 0 => property_set(q, ctx, cmd),
        _ => {
            cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_OPCODE).dnr());
            Exec::Complete
        }
    }
}

fn invalid_param(cmd: &mut Cmd<'_>, in_data: bool, offset: u16) -> Exec {
    cmd.cqe.set_status(Status::command_specific(CommandSpecificStatus::CONNECT_INVALID_PARAMETERS).dnr());
    cmd.cqe.dw0.set(connect_invalid_param_dw0(in_data, offset));
    Exec::Complete
}

fn connect(q: &mut NvmeQueue, ctx: &mut GroupCtx, mut cmd: Cmd<'_>) -> Exec {
    if q.is_connected() {
        cmd.cqe.set_status(Status::generic(GenericStatus::COMMAND_SEQUENCE_ERROR).dnr());
        return Exec::Complete;
    }
    let c = ConnectCmd::parse(cmd.sqe);
    if c.recfmt != 0 {
        cmd.cqe.set_status(Status::command_specific(CommandSpecificStatus::CONNECT_INCOMPATIBLE_FORMAT).dnr());
        return Exec::Complete;
    }
    // Connect's data is exactly 1024 bytes (NVMe-oF 1.1 Figure 20); other lengths are refused
    // like Linux nvmet does, and the connection (not yet anyone's) closes.
    let data = cmd.buf.as_ref().filter(|b| b.len() == size_of::<ConnectData>());
    let Some(data) = data.and_then(|b| ConnectData::read_from_prefix(b.as_slice()).ok()).map(|(d, _)| d) else {
        cmd.cqe.set_status(Status::generic(GenericStatus::DATA_SGL_LENGTH_INVALID).dnr());
        return Exec::CompleteThenClose;
    };
    let subnqn = get_str(&data.subnqn);
    let hostnqn = get_str(&data.hostnqn);
    let Some(subsys) = ctx.target.find_subsystem(&subnqn) else {
        log::info!("connect from {hostnqn}: subsystem {subnqn:?} not found");
        return invalid_param(&mut cmd, true, connect_ipo::SUBNQN);
    };
    if !subsys.listening_on(q.listener()) {
        log::info!("connect from {hostnqn}: {subnqn} does not listen on {}", q.listener());
        return invalid_param(&mut cmd, true, connect_ipo::SUBNQN);
    }
    if !subsys.host_allowed(&hostnqn) {
        log::info!("connect from {hostnqn} to {subnqn}: host not allowed");
        cmd.cqe.set_status(Status::command_specific(CommandSpecificStatus::CONNECT_INVALID_HOST).dnr());
        return Exec::Complete;
    }
    let max_depth = if c.qid == 0 { MAX_ADMIN_QUEUE_DEPTH } else { MAX_QUEUE_DEPTH };
    if c.sqsize == 0 || c.sqsize >= max_depth || (c.qid == 0 && c.sqsize < 31) {
        return invalid_param(&mut cmd, false, connect_ipo::SQSIZE);
    }
    let cntlid = data.cntlid.get();
    let mut reset_epoch = 0;
    let ctrl = if c.qid == 0 {
        if cntlid != CNTLID_DYNAMIC {
            return invalid_param(&mut cmd, true, connect_ipo::CNTLID);
        }
        let now = ctx.now;
        let kato = c.kato;
        let keys = if subsys.is_discovery() { None } else { subsys.host_keys(&hostnqn) };
        let Some(ctrl) = subsys.register_controller(|id| {
            Controller::new(id, subsys.clone(), hostnqn.clone(), data.hostid, q.listener().clone(), keys, kato, now)
        }) else {
            cmd.cqe.set_status(Status::command_specific(CommandSpecificStatus::CONNECT_CONTROLLER_BUSY));
            return Exec::Complete;
        };
        ctrl.keep_alive(now);
        log::info!(
            "controller {} of {} created for host {hostnqn} (kato {} ms) via {}",
            ctrl.cntlid,
            subsys.nqn,
            c.kato,
            q.listener()
        );
        ctrl
    } else {
        let Some(ctrl) = subsys.find_controller(cntlid) else {
            return invalid_param(&mut cmd, true, connect_ipo::CNTLID);
        };
        if ctrl.hostnqn != hostnqn || ctrl.hostid != data.hostid {
            return invalid_param(&mut cmd, true, connect_ipo::HOSTNQN);
        }
        if !ctrl.is_ready() || subsys.is_discovery() {
            cmd.cqe.set_status(Status::generic(GenericStatus::COMMAND_SEQUENCE_ERROR).dnr());
            return Exec::Complete;
        }
        if !ctrl.claim_io_queue(c.qid) {
            return invalid_param(&mut cmd, false, connect_ipo::QID);
        }
        reset_epoch = ctrl.reset_epoch();
        ctrl
    };
    let mut auth = None;
    let mut dw0 = ctrl.cntlid as u32;
    // A controller that authenticated keeps authenticating its queues, with the host's current
    // keys (nvmf_subsystem_set_keys may have replaced them since the admin Connect).
    if let Some(keys) = ctrl.host_keys.clone().map(|k| ctrl.subsys.host_keys(&ctrl.hostnqn).unwrap_or(k)) {
        // The host must authenticate this queue before anything else (AUTHREQ.ATR).
        auth = Some(Box::new(super::auth::QueueAuth::new(keys)));
        dw0 |= crate::auth::messages::CONNECT_AUTHREQ_ATR;
    }
    cmd.cqe.dw0.set(dw0);
    q.connected(Connected {
        qid: c.qid,
        sqsize: c.sqsize + 1,
        sq_flow_disabled: c.cattr & CATTR_DISABLE_SQ_FLOW != 0,
        ctrl,
        reset_epoch,
        auth,
    });
    Exec::Complete
}

fn property_get(q: &mut NvmeQueue, cmd: Cmd<'_>) -> Exec {
    let Some(ctrl) = q.controller() else { return Exec::Complete };
    let p = PropertyCmd::parse(cmd.sqe);
    let value: u64 = match (p.offset, p.eight_bytes) {
        (reg::CAP, true) => Controller::cap().0,
        (reg::CAP, false) => Controller::cap().0 & 0xffff_ffff,
        (o, false) if o == reg::CAP + 4 => Controller::cap().0 >> 32,
        (reg::VS, false) => NVME_VERSION as u64,
        (reg::CC, false) => ctrl.cc().0 as u64,
        (reg::CSTS, false) => ctrl.csts().0 as u64,
        _ => {
            cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
            return Exec::Complete;
        }
    };
    cmd.cqe.dw0.set(value as u32);
    cmd.cqe.dw1.set((value >> 32) as u32);
    Exec::Complete
}

fn property_set(q: &mut NvmeQueue, ctx: &mut GroupCtx, cmd: Cmd<'_>) -> Exec {
    let Some(ctrl) = q.controller() else { return Exec::Complete };
    let p = PropertyCmd::parse(cmd.sqe);
    match (p.offset, p.eight_bytes) {
        (reg::CC, false) => match ctrl.set_cc(Cc(p.value as u32)) {
            CcChange::Invalid => cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr()),
            change => {
                if change == CcChange::ShutdownStarted {
                    // CSTS.SHST reads 01b until every namespace's write cache is flushed.
                    let namespaces = ctrl.subsys.namespaces();
                    ctx.flush_namespaces(namespaces.iter(), 0, FanoutDone::Shutdown(ctrl.clone()));
                }
                log::debug!("controller {}: CC <- {:#x}, CSTS {:#x}", ctrl.cntlid, p.value, ctrl.csts().0);
            }
        },
        _ => cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr()),
    }
    Exec::Complete
}
