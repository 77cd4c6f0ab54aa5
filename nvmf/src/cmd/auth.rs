//! Authentication Send / Receive on the controller side: the DH-HMAC-CHAP transaction of one
//! queue (NVMe Base 2.0 section 8.13.5), as Linux nvmet runs it
//! (drivers/nvme/target/fabrics-cmd-auth.c):
//!
//! ```text
//!   host                                   controller (step)
//!   AUTH_Send    Negotiate        ->       Negotiate -> Challenge
//!   AUTH_Receive                  <-       Challenge (C1, S1, g^x) -> Reply
//!   AUTH_Send    Reply (R1, C2?)  ->       Reply -> Success1   (R1 checked here)
//!   AUTH_Receive                  <-       Success1 (R2 if C2) -> Success2, or Done
//!   AUTH_Send    Success2         ->       Success2 -> Done     (bidirectional only)
//! ```
//!
//! With an ffdhe group the two modular exponentiations (the controller's key pair for the
//! Challenge, the session key from the host's Reply) run as deferred work (`crate::deferred`):
//! the AUTH_Receive that returns the Challenge and the AUTH_Send that carries the Reply
//! complete when their job has finished, and R1 is checked when the host reads Success1. Any
//! AUTH command that arrives while the queue's job runs is out of sequence (the host did not
//! wait for the previous completion) and fails the transaction; so at most one job per queue.
//!
//! A problem turns the step into Failure1: the next AUTH_Receive returns AUTH_Failure1 and the
//! connection closes (on the admin queue that tears the controller down). An AUTH_Failure2 from
//! the host closes it too. Until the transaction succeeds the queue answers everything but
//! AUTH_Send/Receive and Disconnect with Authentication Required (`NvmeQueue::auth_pending`).
//! A Negotiate on an authenticated queue starts re-authentication.
//!
//! Secrets, challenges, responses and DH values are never logged.

use crate::auth::dhchap::{response, DhError, ResponseInput, Role};
use crate::auth::messages::{failure, AuthCmd, Message, SECP_NVME_AUTH, SPSP_DHCHAP};
use crate::auth::{ct_eq, random_bytes, random_seqnum, wipe, DhGroup, DhKeyPair, HashId};
use crate::ctrlr::Controller;
use crate::poll_group::GroupCtx;
use crate::queue::{Cmd, Exec, NvmeQueue};
use crate::spec::{GenericStatus, Status};
use crate::subsystem::HostKeys;
use std::sync::{Arc, Mutex};

/// Where the queue's transaction stands: the message the controller expects or owes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Waiting for AUTH_Negotiate.
    Negotiate,
    /// The host reads DH-HMAC-CHAP_Challenge next.
    Challenge,
    /// Waiting for DH-HMAC-CHAP_Reply.
    Reply,
    /// The Reply arrived; its DH value is becoming the session key (a DH job). R1 is checked
    /// when the host reads Success1.
    ReplyDh,
    /// The host reads DH-HMAC-CHAP_Success1 next.
    Success1,
    /// Waiting for DH-HMAC-CHAP_Success2 (bidirectional).
    Success2,
    /// The host reads AUTH_Failure1 next; then the connection closes.
    Failure1,
    /// Transaction finished successfully.
    Done,
}

/// Key material that is wiped when dropped.
struct SecretBytes(Vec<u8>);

impl Drop for SecretBytes {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// What a queue's DH job leaves for the queue's next step.
enum DhOutcome {
    /// The controller's key pair; its public value went out in the Challenge.
    KeyPair(DhKeyPair),
    /// The session key Ks, or why the host's DH value was refused.
    SessionKey(Result<SecretBytes, DhError>),
}

/// Where a DH job leaves its outcome.
type DhSlot = Arc<Mutex<Option<DhOutcome>>>;

fn put(slot: DhSlot, outcome: DhOutcome) {
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
}

/// The Reply's fields kept while its DH job runs.
struct PendingReply {
    seqnum: u32,
    r1: Vec<u8>,
    c2: Option<Vec<u8>>,
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        wipe(&mut self.r1);
        if let Some(c2) = self.c2.as_mut() {
            wipe(c2);
        }
    }
}

/// DH-HMAC-CHAP state of one queue.
pub(crate) struct QueueAuth {
    keys: Arc<HostKeys>,
    /// The host proved its identity on this queue.
    pub authenticated: bool,
    step: Step,
    tid: u16,
    hash: HashId,
    dhgroup: DhGroup,
    s1: u32,
    c1: Vec<u8>,
    /// S2 and C2 when the host authenticates the controller too.
    s2: u32,
    c2: Option<Vec<u8>>,
    /// The slot of the queue's latest DH job. The job holds the slot's other reference until
    /// it has run (or been dropped), so the reference count says whether it still runs.
    job: Option<DhSlot>,
    /// The Reply whose session key the job computes (step ReplyDh).
    reply: Option<PendingReply>,
    session_key: Option<Vec<u8>>,
    /// Reason code explanation for AUTH_Failure1.
    status: u8,
}

impl Drop for QueueAuth {
    fn drop(&mut self) {
        self.clear();
    }
}

impl QueueAuth {
    pub fn new(keys: Arc<HostKeys>) -> Self {
        QueueAuth {
            keys,
            authenticated: false,
            step: Step::Negotiate,
            tid: 0,
            hash: HashId::Sha256,
            dhgroup: DhGroup::Null,
            s1: 0,
            c1: Vec::new(),
            s2: 0,
            c2: None,
            job: None,
            reply: None,
            session_key: None,
            status: 0,
        }
    }

    /// Forget the transaction's values.
    fn clear(&mut self) {
        wipe(&mut self.c1);
        self.c1.clear();
        if let Some(c2) = self.c2.as_mut() {
            wipe(c2);
        }
        self.c2 = None;
        if let Some(k) = self.session_key.as_mut() {
            wipe(k);
        }
        self.session_key = None;
        self.reply = None;
        // A running job's slot is kept: it is what tells that the job still runs.
        if !self.job_running() {
            self.job = None;
        }
        self.s1 = 0;
        self.s2 = 0;
    }

    fn fail(&mut self, code: u8) {
        self.clear();
        self.step = Step::Failure1;
        self.status = code;
    }

    /// The host's Reply did not authenticate it.
    fn reply_failed(&mut self, qid: u16, ctrl: &Controller, code: u8) {
        self.fail(code);
        log::warn!("{}: DH-HMAC-CHAP authentication failed: {}", who(qid, ctrl), failure::describe(code));
    }

    /// AUTH_Negotiate: pick the hash and DH group.
    fn negotiate(&mut self, sc_c: u8, hashes: &[u8], dhgroups: &[u8]) -> Result<(), u8> {
        if sc_c != 0 {
            // Secure channel concatenation (TLS) is not supported.
            return Err(failure::CONCAT_MISMATCH);
        }
        self.hash =
            *self.keys.digests().iter().find(|h| hashes.contains(&(**h as u8))).ok_or(failure::HASH_UNUSABLE)?;
        self.dhgroup =
            *self.keys.dhgroups().iter().find(|g| dhgroups.contains(&(**g as u8))).ok_or(failure::DHGROUP_UNUSABLE)?;
        Ok(())
    }

    /// Whether the queue's DH job has not run yet.
    fn job_running(&self) -> bool {
        self.job.as_ref().is_some_and(|slot| Arc::strong_count(slot) > 1)
    }

    /// A fresh slot for a new DH job (the caller checked that none runs).
    fn new_job(&mut self) -> DhSlot {
        let slot = DhSlot::default();
        self.job = Some(slot.clone());
        slot
    }

    /// What the finished DH job left (`None`: it was dropped unrun, or never started).
    fn take_outcome(&mut self) -> Option<DhOutcome> {
        self.job.take()?.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// DH-HMAC-CHAP_Challenge: C1 and S1 (kept to check R1), and the controller's DH value,
    /// computed by a DH job whose bytes (up to `room`) complete the command: `Exec::Pending`.
    /// With the null group the message is written right away: `Exec::Complete`.
    fn challenge(&mut self, ctx: &mut GroupCtx, cmd: &mut Cmd<'_>, room: usize) -> Exec {
        let mut c1 = vec![0u8; self.hash.len()];
        random_bytes(&mut c1);
        self.s1 = random_seqnum();
        self.c1 = c1.clone();
        self.step = Step::Reply;
        let (tid, hashid, dhgid, seqnum) = (self.tid, self.hash as u8, self.dhgroup as u8, self.s1);
        let message = move |dhv| Message::Challenge { tid, hashid, dhgid, seqnum, c1, dhv };
        let Some(params) = ctx.target.ffdhe.get(self.dhgroup).cloned() else {
            send_message(cmd.buf, &message(Vec::new()), room);
            return Exec::Complete;
        };
        let slot = self.new_job();
        ctx.defer(cmd.tag, cmd.buf.take(), move || {
            let dh = DhKeyPair::generate(&params);
            let mut bytes = message(dh.public().to_vec()).to_bytes();
            put(slot, DhOutcome::KeyPair(dh));
            bytes.truncate(room);
            bytes
        });
        Exec::Pending
    }

    /// DH-HMAC-CHAP_Reply. With the null group R1 is checked now (`Exec::Complete`); with an
    /// ffdhe group a DH job computes the session key first (`Exec::Pending`, step ReplyDh).
    fn reply(
        &mut self,
        ctx: &mut GroupCtx,
        cmd: &mut Cmd<'_>,
        ctrl: &Controller,
        reply: PendingReply,
        dhv: Vec<u8>,
    ) -> Result<Exec, u8> {
        if reply.r1.len() != self.hash.len() || (self.dhgroup == DhGroup::Null) != dhv.is_empty() {
            return Err(failure::INCORRECT_PAYLOAD);
        }
        if self.dhgroup == DhGroup::Null {
            self.check_reply(ctrl, reply)?;
            self.step = Step::Success1;
            return Ok(Exec::Complete);
        }
        // No key pair: the Challenge's job was dropped and its command failed.
        let Some(DhOutcome::KeyPair(dh)) = self.take_outcome() else { return Err(failure::FAILED) };
        let slot = self.new_job();
        self.reply = Some(reply);
        self.step = Step::ReplyDh;
        ctx.defer(cmd.tag, cmd.buf.take(), move || {
            put(slot, DhOutcome::SessionKey(dh.shared_secret(&dhv).map(SecretBytes)));
            Vec::new()
        });
        Ok(Exec::Pending)
    }

    /// Step ReplyDh, once its job has run: take the session key and check the Reply.
    fn finish_reply(&mut self, ctrl: &Controller) -> Result<(), u8> {
        let reply = self.reply.take().ok_or(failure::INCORRECT_MESSAGE)?;
        match self.take_outcome() {
            Some(DhOutcome::SessionKey(Ok(mut ks))) => self.session_key = Some(std::mem::take(&mut ks.0)),
            Some(DhOutcome::SessionKey(Err(_))) => return Err(failure::DHGROUP_UNUSABLE),
            _ => return Err(failure::FAILED),
        }
        self.check_reply(ctrl, reply)
    }

    /// Check R1 (with the session key when there is one) and note C2.
    fn check_reply(&mut self, ctrl: &Controller, reply: PendingReply) -> Result<(), u8> {
        let key = self.keys.dhchap_key.as_ref().ok_or(failure::FAILED)?;
        let expected = response(
            Role::Host,
            key,
            &ResponseInput {
                hash: self.hash,
                challenge: &self.c1,
                seqnum: self.s1,
                tid: self.tid,
                hostnqn: &ctrl.hostnqn,
                subnqn: &ctrl.subsys.nqn,
                session_key: self.session_key.as_deref(),
            },
        );
        if !ct_eq(&expected, &reply.r1) {
            return Err(failure::FAILED);
        }
        // C2 with S2 = 0 only feeds a TLS PSK (not supported): no controller authentication.
        match &reply.c2 {
            Some(c2) if reply.seqnum != 0 => {
                if self.keys.dhchap_ctrlr_key.is_none() {
                    // The host wants the controller to prove itself, and we have no key to.
                    return Err(failure::FAILED);
                }
                self.s2 = reply.seqnum;
                self.c2 = Some(c2.clone());
            }
            _ => {}
        }
        Ok(())
    }

    /// DH-HMAC-CHAP_Success1, with R2 when the host sent C2.
    fn success1(&self, ctrl: &Controller) -> Result<Message, u8> {
        let r2 = match (&self.c2, &self.keys.dhchap_ctrlr_key) {
            (None, _) => None,
            (Some(c2), Some(key)) => Some(response(
                Role::Controller,
                key,
                &ResponseInput {
                    hash: self.hash,
                    challenge: c2,
                    seqnum: self.s2,
                    tid: self.tid,
                    hostnqn: &ctrl.hostnqn,
                    subnqn: &ctrl.subsys.nqn,
                    session_key: self.session_key.as_deref(),
                },
            )),
            (Some(_), None) => return Err(failure::FAILED),
        };
        Ok(Message::Success1 { tid: self.tid, hl: self.hash.len() as u8, r2 })
    }
}

/// Check SECP/SPSP0/SPSP1 and the length field (Linux: Invalid Field for each).
fn check_fields(cmd: &mut Cmd<'_>) -> Option<u32> {
    let a = AuthCmd::parse(cmd.sqe);
    if a.secp != SECP_NVME_AUTH || a.spsp0 != SPSP_DHCHAP || a.spsp1 != SPSP_DHCHAP || a.len == 0 {
        cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
        return None;
    }
    Some(a.len)
}

/// AUTH_Send (fabrics 05h): a message from the host.
pub(crate) fn send(q: &mut NvmeQueue, ctx: &mut GroupCtx, mut cmd: Cmd<'_>) -> Exec {
    let Some(tl) = check_fields(&mut cmd) else { return Exec::Complete };
    let Some(ctrl) = q.controller().cloned() else { return Exec::Complete };
    let qid = q.qid();
    let Some(auth) = q.auth_mut() else {
        // No key for this host: the controller does not authenticate it.
        cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
        return Exec::Complete;
    };
    let data = match cmd.buf.as_ref() {
        Some(b) if b.len() >= tl as usize => &b.as_slice()[..tl as usize],
        _ => {
            cmd.cqe.set_status(Status::generic(GenericStatus::DATA_SGL_LENGTH_INVALID).dnr());
            return Exec::Complete;
        }
    };
    let msg = match Message::parse(data) {
        Ok(m) => m,
        Err(code) => {
            auth.fail(code);
            return Exec::Complete;
        }
    };
    log::debug!("controller {} qid {qid}: AUTH_Send {msg:?} at step {:?}", ctrl.cntlid, auth.step);
    if auth.job_running() && !matches!(msg, Message::Failure2 { .. }) {
        auth.fail(failure::INCORRECT_MESSAGE);
        return Exec::Complete;
    }
    match msg {
        Message::Negotiate { tid, sc_c, hashes, dhgroups } => {
            // Also a restart (or re-authentication of an authenticated queue).
            auth.clear();
            auth.tid = tid;
            match auth.negotiate(sc_c, &hashes, &dhgroups) {
                Ok(()) => auth.step = Step::Challenge,
                Err(code) => {
                    log::warn!(
                        "{}: DH-HMAC-CHAP negotiation failed: {} (host offers hashes {hashes:?}, DH groups {dhgroups:?})",
                        who(qid, &ctrl),
                        failure::describe(code)
                    );
                    auth.fail(code);
                }
            }
            Exec::Complete
        }
        Message::Failure2 { rescode_exp, .. } => {
            log::warn!("{}: host aborted authentication: {}", who(qid, &ctrl), failure::describe(rescode_exp));
            auth.clear();
            auth.authenticated = false;
            Exec::CompleteThenClose
        }
        m if m.tid() != auth.tid && auth.step != Step::Negotiate => {
            auth.fail(failure::INCORRECT_PAYLOAD);
            Exec::Complete
        }
        Message::Reply { seqnum, r1, c2, dhv, .. } if auth.step == Step::Reply => {
            match auth.reply(ctx, &mut cmd, &ctrl, PendingReply { seqnum, r1, c2 }, dhv) {
                Ok(exec) => exec,
                Err(code) => {
                    auth.reply_failed(qid, &ctrl, code);
                    Exec::Complete
                }
            }
        }
        Message::Success2 { .. } if auth.step == Step::Success2 => {
            auth.clear();
            auth.step = Step::Done;
            auth.authenticated = true;
            let (hash, group) = (auth.hash.name(), auth.dhgroup.name());
            log::info!("{}: authenticated ({hash}, {group}, bidirectional)", who(qid, &ctrl));
            Exec::Complete
        }
        _ => {
            auth.fail(failure::INCORRECT_MESSAGE);
            Exec::Complete
        }
    }
}

/// AUTH_Receive (fabrics 06h): the controller's next message.
pub(crate) fn receive(q: &mut NvmeQueue, ctx: &mut GroupCtx, mut cmd: Cmd<'_>) -> Exec {
    let Some(al) = check_fields(&mut cmd) else { return Exec::Complete };
    let Some(ctrl) = q.controller().cloned() else { return Exec::Complete };
    let qid = q.qid();
    let Some(auth) = q.auth_mut() else {
        cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
        return Exec::Complete;
    };
    let room = (al as usize).min(cmd.buf.as_ref().map_or(0, |b| b.len()));
    if auth.job_running() {
        auth.fail(failure::INCORRECT_MESSAGE);
    } else if auth.step == Step::ReplyDh {
        match auth.finish_reply(&ctrl) {
            Ok(()) => auth.step = Step::Success1,
            Err(code) => auth.reply_failed(qid, &ctrl, code),
        }
    }
    // Space each message needs, checked before its step advances so the host can retry.
    let hl = auth.hash.len();
    let need = match auth.step {
        Step::Challenge => 16 + hl + auth.dhgroup.value_len(),
        Step::Success1 => 16 + if auth.c2.is_some() { hl } else { 0 },
        _ => 8,
    };
    if room < need {
        cmd.cqe.set_status(Status::generic(GenericStatus::INVALID_FIELD).dnr());
        return Exec::Complete;
    }
    if auth.step == Step::Challenge {
        return auth.challenge(ctx, &mut cmd, room);
    }
    let mut close = false;
    let msg = match auth.step {
        Step::Success1 => match auth.success1(&ctrl) {
            Ok(m) => {
                if auth.c2.is_some() {
                    auth.step = Step::Success2;
                } else {
                    auth.clear();
                    auth.step = Step::Done;
                    auth.authenticated = true;
                    log::info!("{}: authenticated ({}, {})", who(qid, &ctrl), auth.hash.name(), auth.dhgroup.name());
                }
                m
            }
            Err(code) => {
                auth.fail(code);
                close = true;
                Message::Failure1 { tid: auth.tid, rescode: failure::REASON_FAILED, rescode_exp: code }
            }
        },
        step => {
            let code = if step == Step::Failure1 { auth.status } else { failure::INCORRECT_MESSAGE };
            auth.fail(code);
            auth.authenticated = false;
            close = true;
            Message::Failure1 { tid: auth.tid, rescode: failure::REASON_FAILED, rescode_exp: code }
        }
    };
    log::debug!("controller {} qid {qid}: AUTH_Receive -> {msg:?}", ctrl.cntlid);
    send_message(cmd.buf, &msg, room);
    if close {
        Exec::CompleteThenClose
    } else {
        Exec::Complete
    }
}

/// Write `msg` (up to `room` bytes) as the AUTH_Receive data.
fn send_message(buf: &mut Option<crate::bdev::IoBuf>, msg: &Message, room: usize) {
    let mut bytes = msg.to_bytes();
    super::fill_data(buf, &bytes[..bytes.len().min(room)]);
    wipe(&mut bytes);
}

fn who(qid: u16, ctrl: &Controller) -> String {
    format!("controller {} of {} qid {qid} host {}", ctrl.cntlid, ctrl.subsys.nqn, ctrl.hostnqn)
}
