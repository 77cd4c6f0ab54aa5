//! Admin commands of the emulated controller.

use super::prp;
use super::queues::{EmuCq, EmuSq};
use super::regs::{Outcome, State};
use crate::spec::identify::{oncs, put_ns_id_descriptor};
use crate::spec::{
    cns, fid, lid, nidt, AdminOpcode, CommandSpecificStatus, GenericStatus, GetLogPageArgs, IdentifyController,
    IdentifyNamespace, LbaFormat, NumberOfQueues, SmartLog, Sqe, Status, Vs,
};
use zerocopy::{FromZeros, IntoBytes};

/// Delete I/O CQ with SQs still attached (Base 2.0 Figure 95, 0x0C).
const INVALID_QUEUE_DELETION: u8 = 0x0c;

fn ok(dw0: u32) -> Outcome {
    Some((Status::SUCCESS, dw0))
}
fn generic(sc: u8) -> Outcome {
    Some((Status::generic(sc).dnr(), 0))
}
fn specific(sc: u8) -> Outcome {
    Some((Status::command_specific(sc).dnr(), 0))
}

pub(crate) fn execute(st: &mut State, sqe: &Sqe) -> Outcome {
    let Some(op) = AdminOpcode::from_u8(sqe.opcode) else { return generic(GenericStatus::INVALID_OPCODE) };
    match op {
        AdminOpcode::Identify => identify(st, sqe),
        AdminOpcode::CreateIoCq => create_cq(st, sqe),
        AdminOpcode::CreateIoSq => create_sq(st, sqe),
        AdminOpcode::DeleteIoSq => delete_sq(st, sqe),
        AdminOpcode::DeleteIoCq => delete_cq(st, sqe),
        AdminOpcode::SetFeatures => set_features(st, sqe),
        AdminOpcode::GetFeatures => get_features(st, sqe),
        AdminOpcode::Abort => abort(st, sqe),
        AdminOpcode::GetLogPage => get_log_page(st, sqe),
        AdminOpcode::KeepAlive => ok(0),
        // Held until reset: there are no events to report.
        AdminOpcode::AsyncEventRequest => None,
        AdminOpcode::Fabrics => generic(GenericStatus::INVALID_OPCODE),
    }
}

fn send(st: &State, sqe: &Sqe, data: &[u8]) -> Outcome {
    match prp::to_host(&prp::Dma::admin(&st.mem), sqe.prp1(), sqe.prp2(), data) {
        Ok(()) => ok(0),
        Err(s) => Some((s, 0)),
    }
}

fn identify(st: &mut State, sqe: &Sqe) -> Outcome {
    let nsid = sqe.nsid.get();
    let ns_count = st.disks.len() as u32;
    match (sqe.cdw10.get() & 0xff) as u8 {
        cns::CONTROLLER => {
            let mut id = IdentifyController::new_zeroed();
            id.vid.set(0x1b36);
            id.ssvid.set(0x1af4);
            id.set_serial(&st.cfg.serial);
            id.set_model(&st.cfg.model);
            id.set_firmware("1.0");
            id.set_subsystem_nqn(&format!("nqn.2024-01.io.nvmf-rs:emulator:{}", st.cfg.serial));
            id.mdts = st.cfg.mdts;
            id.cntlid.set(1);
            id.ver.set(Vs::V1_4.0);
            id.acl = 3;
            id.aerl = 3;
            id.elpe = 63;
            id.sqes = 0x66;
            id.cqes = 0x44;
            id.maxcmd.set(st.cfg.max_queue_entries);
            id.nn.set(ns_count);
            id.oncs.set(oncs::COMPARE | oncs::DATASET_MANAGEMENT | oncs::WRITE_ZEROES);
            send(st, sqe, id.as_bytes())
        }
        cns::NAMESPACE => {
            let Some(disk) = nsid.checked_sub(1).and_then(|i| st.disks.get(i as usize)) else {
                return generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
            };
            let mut id = IdentifyNamespace::new_zeroed();
            id.nsze.set(disk.blocks);
            id.ncap.set(disk.blocks);
            id.nuse.set(disk.blocks);
            id.nlbaf = 0;
            id.lbaf[0] = LbaFormat::new(disk.block_size.trailing_zeros() as u8, 0);
            id.set_lba_format_index(0);
            // Deallocated blocks read as zeroes; Write Zeroes may deallocate.
            id.dlfeat = 0x1 | 1 << 3;
            id.nguid = nguid(nsid);
            send(st, sqe, id.as_bytes())
        }
        cns::ACTIVE_NS_LIST => {
            if nsid >= 0xffff_fffe {
                return generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
            }
            let mut list = [0u32; 1024];
            for (slot, id) in list.iter_mut().zip((nsid + 1)..=ns_count) {
                *slot = id.to_le();
            }
            send(st, sqe, list.as_bytes())
        }
        cns::NS_DESCRIPTOR_LIST => {
            if nsid == 0 || nsid > ns_count {
                return generic(GenericStatus::INVALID_NAMESPACE_OR_FORMAT);
            }
            let mut page = [0u8; 4096];
            let _ = put_ns_id_descriptor(&mut page, 0, nidt::NGUID, &nguid(nsid));
            send(st, sqe, &page)
        }
        _ => generic(GenericStatus::INVALID_FIELD),
    }
}

fn nguid(nsid: u32) -> [u8; 16] {
    let mut g = *b"nvmf-rs-emu-\0\0\0\0";
    g[12..].copy_from_slice(&nsid.to_be_bytes());
    g
}

/// (qid, entries) from CDW10 of Create I/O SQ/CQ, or the failing status.
fn queue_args(st: &State, sqe: &Sqe, exists: bool) -> Result<(u16, u16), Outcome> {
    let qid = (sqe.cdw10.get() & 0xffff) as u16;
    let entries = (sqe.cdw10.get() >> 16) + 1;
    if qid == 0 || qid as usize >= st.sqs.len() || exists {
        return Err(specific(CommandSpecificStatus::INVALID_QUEUE_IDENTIFIER));
    }
    if entries < 2 || entries > st.cap.max_queue_entries() {
        return Err(specific(CommandSpecificStatus::INVALID_QUEUE_SIZE));
    }
    if sqe.cdw11.get() & 1 == 0 || !sqe.prp1().is_multiple_of(4096) {
        // Contiguous queues are required (CAP.CQR) and must be page aligned.
        return Err(generic(GenericStatus::INVALID_FIELD));
    }
    Ok((qid, entries as u16))
}

fn create_cq(st: &mut State, sqe: &Sqe) -> Outcome {
    let qid = (sqe.cdw10.get() & 0xffff) as usize;
    let exists = st.cqs.get(qid).is_some_and(|q| q.is_some());
    let (qid, entries) = match queue_args(st, sqe, exists) {
        Ok(v) => v,
        Err(o) => return o,
    };
    if st.cc.iocqes() != 4 {
        return generic(GenericStatus::INVALID_FIELD);
    }
    st.cqs[qid as usize] = Some(EmuCq::new(sqe.prp1(), entries));
    ok(0)
}

fn create_sq(st: &mut State, sqe: &Sqe) -> Outcome {
    let qid = (sqe.cdw10.get() & 0xffff) as usize;
    let exists = st.sqs.get(qid).is_some_and(|q| q.is_some());
    let (qid, entries) = match queue_args(st, sqe, exists) {
        Ok(v) => v,
        Err(o) => return o,
    };
    let cqid = (sqe.cdw11.get() >> 16) as u16;
    if cqid == 0 || !st.cqs.get(cqid as usize).is_some_and(|q| q.is_some()) {
        return specific(CommandSpecificStatus::COMPLETION_QUEUE_INVALID);
    }
    if st.cc.iosqes() != 6 {
        return generic(GenericStatus::INVALID_FIELD);
    }
    st.sqs[qid as usize] = Some(EmuSq { base: sqe.prp1(), entries, head: 0, tail: 0, cqid });
    ok(0)
}

fn delete_sq(st: &mut State, sqe: &Sqe) -> Outcome {
    let qid = (sqe.cdw10.get() & 0xffff) as u16;
    if qid == 0 || !st.sqs.get(qid as usize).is_some_and(|q| q.is_some()) {
        return specific(CommandSpecificStatus::INVALID_QUEUE_IDENTIFIER);
    }
    let held: Vec<u16> = st.held.iter().filter(|h| h.0 == qid).map(|h| h.1).collect();
    st.held.retain(|h| h.0 != qid);
    for cid in held {
        st.complete(qid, cid, Status::generic(GenericStatus::ABORTED_SQ_DELETION), 0, 0);
    }
    st.sqs[qid as usize] = None;
    ok(0)
}

fn delete_cq(st: &mut State, sqe: &Sqe) -> Outcome {
    let qid = (sqe.cdw10.get() & 0xffff) as u16;
    if qid == 0 || !st.cqs.get(qid as usize).is_some_and(|q| q.is_some()) {
        return specific(CommandSpecificStatus::INVALID_QUEUE_IDENTIFIER);
    }
    if st.sqs.iter().flatten().any(|sq| sq.cqid == qid) {
        return specific(INVALID_QUEUE_DELETION);
    }
    st.cqs[qid as usize] = None;
    ok(0)
}

fn queues_dw(st: &State) -> u32 {
    let n = st.cfg.max_io_queues as u32;
    NumberOfQueues { sq: n, cq: n }.to_dw()
}

fn set_features(st: &mut State, sqe: &Sqe) -> Outcome {
    let f = (sqe.cdw10.get() & 0xff) as u8;
    match f {
        fid::NUMBER_OF_QUEUES => {
            if st.sqs.iter().skip(1).any(|q| q.is_some()) || st.cqs.iter().skip(1).any(|q| q.is_some()) {
                return generic(GenericStatus::COMMAND_SEQUENCE_ERROR);
            }
            let want = sqe.cdw11.get();
            if want & 0xffff == 0xffff || want >> 16 == 0xffff {
                return generic(GenericStatus::INVALID_FIELD);
            }
            ok(queues_dw(st))
        }
        fid::ARBITRATION..=fid::KEEP_ALIVE_TIMER => {
            st.features.insert(f, sqe.cdw11.get());
            ok(0)
        }
        _ => generic(GenericStatus::INVALID_FIELD),
    }
}

fn get_features(st: &mut State, sqe: &Sqe) -> Outcome {
    match (sqe.cdw10.get() & 0xff) as u8 {
        fid::NUMBER_OF_QUEUES => ok(queues_dw(st)),
        f @ fid::ARBITRATION..=fid::KEEP_ALIVE_TIMER => ok(st.features.get(&f).copied().unwrap_or(0)),
        _ => generic(GenericStatus::INVALID_FIELD),
    }
}

fn abort(st: &mut State, sqe: &Sqe) -> Outcome {
    st.stats.aborts += 1;
    let sqid = (sqe.cdw10.get() & 0xffff) as u16;
    let cid = (sqe.cdw10.get() >> 16) as u16;
    let Some(pos) = st.held.iter().position(|&h| h == (sqid, cid)) else {
        // DW0 bit 0 set: the command was not aborted (it already completed or is unknown).
        return ok(1);
    };
    st.held.remove(pos);
    st.complete(sqid, cid, Status::generic(GenericStatus::ABORTED_BY_REQUEST), 0, 0);
    ok(0)
}

fn get_log_page(st: &mut State, sqe: &Sqe) -> Outcome {
    let args = GetLogPageArgs::from_sqe(sqe);
    let len = args.byte_len().min(64 << 10) as usize;
    let mut page = match args.lid {
        lid::ERROR => st.errors.iter().flat_map(|e| e.as_bytes().to_vec()).collect::<Vec<u8>>(),
        lid::SMART => {
            let mut s = SmartLog::default();
            s.composite_temperature.set(310);
            s.avail_spare = 100;
            s.avail_spare_threshold = 10;
            s.set_data_units_read(SmartLog::bytes_to_data_units(st.smart.bytes_read));
            s.set_data_units_written(SmartLog::bytes_to_data_units(st.smart.bytes_written));
            s.set_host_read_commands(st.smart.reads);
            s.set_host_write_commands(st.smart.writes);
            s.set_media_errors(st.smart.media_errors);
            s.set_num_err_log_entries(st.error_count as u128);
            s.as_bytes().to_vec()
        }
        _ => return specific(CommandSpecificStatus::INVALID_LOG_PAGE),
    };
    let start = (args.offset as usize).min(page.len());
    page.drain(..start);
    page.resize(len, 0);
    send(st, sqe, &page)
}
