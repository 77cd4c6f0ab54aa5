//! DH-HMAC-CHAP on the host side (NVMe Base 2.0 section 8.13.5; Linux
//! drivers/nvme/host/auth.c): run right after a queue's Connect when the controller sets
//! AUTHREQ.ATR in the Connect response, or whenever a controller secret is configured (a host
//! that wants to authenticate the controller does not take "no authentication" for an answer).
//!
//! Negotiate -> Challenge -> Reply -> Success1 [-> Success2]. Any problem on our side is
//! reported to the controller with AUTH_Failure2 before the error is returned.

use super::error::{HostError, Result};
use super::pdu;
use super::queue::{check, Queue};
use super::HostConfig;
use crate::auth::dhchap::{response, ResponseInput, Role};
use crate::auth::messages::{failure, AuthCmd, Message};
use crate::auth::{ct_eq, random_bytes, random_seqnum, wipe, DhGroup, DhKeyPair, FfdheGroup, HashId};
use crate::spec::FabricsType;

/// AUTH_Receive allocation length (Linux uses the same 4 KiB; ffdhe8192 needs 16 + 64 + 1024).
const RECV_LEN: usize = 4096;

fn auth_err(msg: impl Into<String>) -> HostError {
    HostError::Auth(msg.into())
}

fn send(q: &mut Queue, msg: &Message) -> Result<()> {
    let mut data = msg.to_bytes();
    let mut sqe = pdu::fabrics_sqe(FabricsType::AuthenticationSend);
    AuthCmd::dhchap(data.len() as u32).write(&mut sqe);
    let r = q.execute(sqe, Some(&data), None);
    wipe(&mut data);
    check(r?).map(|_| ())
}

fn receive(q: &mut Queue) -> Result<Message> {
    let mut sqe = pdu::fabrics_sqe(FabricsType::AuthenticationReceive);
    AuthCmd::dhchap(RECV_LEN as u32).write(&mut sqe);
    let mut buf = vec![0u8; RECV_LEN];
    let r = q.execute(sqe, None, Some(&mut buf));
    let parsed = Message::parse(&buf);
    wipe(&mut buf);
    check(r?)?;
    match parsed {
        Ok(Message::Failure1 { rescode_exp, .. }) => {
            Err(auth_err(format!("the controller refused: {}", failure::describe(rescode_exp))))
        }
        Ok(m) => Ok(m),
        Err(code) => Err(auth_err(format!("unreadable message from the controller: {}", failure::describe(code)))),
    }
}

/// Tell the controller we give up (AUTH_Failure2), then return `err`.
fn abort(q: &mut Queue, tid: u16, code: u8, err: HostError) -> HostError {
    let _ = send(q, &Message::Failure2 { tid, rescode: failure::REASON_FAILED, rescode_exp: code });
    err
}

/// Authenticate queue `qid` (already connected) with the secrets of `cfg`.
pub(crate) fn authenticate(q: &mut Queue, qid: u16, subnqn: &str, cfg: &HostConfig) -> Result<()> {
    let Some(secret) = cfg.dhchap_secret.as_ref() else {
        return Err(auth_err("the controller requires authentication and no dhchap_secret is configured"));
    };
    let hashes: Vec<HashId> =
        if cfg.dhchap_digests.is_empty() { HashId::ALL.to_vec() } else { cfg.dhchap_digests.clone() };
    let groups: Vec<DhGroup> =
        if cfg.dhchap_dhgroups.is_empty() { DhGroup::ALL.to_vec() } else { cfg.dhchap_dhgroups.clone() };
    let mut t = [0u8; 2];
    random_bytes(&mut t);
    let tid = u16::from_le_bytes(t);

    // Step 1: negotiate.
    send(
        q,
        &Message::Negotiate {
            tid,
            sc_c: 0,
            hashes: hashes.iter().map(|h| *h as u8).collect(),
            dhgroups: groups.iter().map(|g| *g as u8).collect(),
        },
    )?;

    // Step 2: the challenge.
    let (hash, group, s1, c1, ctrl_dhv) = match receive(q)? {
        Message::Challenge { tid: t, hashid, dhgid, seqnum, c1, dhv } if t == tid => {
            let Some(hash) = HashId::from_u8(hashid).filter(|h| hashes.contains(h)) else {
                let e = auth_err(format!("controller chose hash {hashid}, not offered"));
                return Err(abort(q, tid, failure::HASH_UNUSABLE, e));
            };
            let Some(group) = DhGroup::from_u8(dhgid).filter(|g| groups.contains(g)) else {
                let e = auth_err(format!("controller chose DH group {dhgid}, not offered"));
                return Err(abort(q, tid, failure::DHGROUP_UNUSABLE, e));
            };
            if c1.len() != hash.len() || (group == DhGroup::Null) != dhv.is_empty() {
                let e = auth_err("challenge with a wrong hash or DH value length");
                return Err(abort(q, tid, failure::INCORRECT_PAYLOAD, e));
            }
            (hash, group, seqnum, c1, dhv)
        }
        m => {
            let e = auth_err(format!("expected DH-HMAC-CHAP_Challenge, got {m:?}"));
            return Err(abort(q, tid, failure::INCORRECT_MESSAGE, e));
        }
    };
    log::debug!("qid {qid}: DH-HMAC-CHAP with {} / {}", hash.name(), group.name());

    // Step 3: DH exchange and our response.
    let (dhv, mut session_key) = if group == DhGroup::Null {
        (Vec::new(), None)
    } else {
        // The host parses its one group per handshake; the target parses them once (FfdheGroups).
        let params = std::sync::Arc::new(FfdheGroup::new(group).map_err(|e| auth_err(e.to_string()))?);
        let dh = DhKeyPair::generate(&params);
        match dh.shared_secret(&ctrl_dhv) {
            Ok(ks) => (dh.public().to_vec(), Some(ks)),
            Err(e) => {
                return Err(abort(q, tid, failure::DHGROUP_UNUSABLE, auth_err(format!("controller DH value: {e}"))))
            }
        }
    };
    let inp = |challenge, seqnum, session_key| ResponseInput {
        hash,
        challenge,
        seqnum,
        tid,
        hostnqn: &cfg.hostnqn,
        subnqn,
        session_key,
    };
    let r1 = response(Role::Host, secret, &inp(&c1, s1, session_key.as_deref()));
    let bidi = cfg.dhchap_ctrl_secret.as_ref().map(|ks| {
        let mut c2 = vec![0u8; hash.len()];
        random_bytes(&mut c2);
        (ks, c2, random_seqnum())
    });
    let reply = Message::Reply {
        tid,
        seqnum: bidi.as_ref().map_or(0, |b| b.2),
        r1,
        c2: bidi.as_ref().map(|b| b.1.clone()),
        dhv,
    };
    let r = send(q, &reply);
    if let Message::Reply { mut r1, .. } = reply {
        wipe(&mut r1);
    }
    r?;

    // Step 4: success1, with the controller's response when we asked for one.
    let result = match receive(q) {
        Ok(Message::Success1 { tid: t, hl, r2 }) if t == tid && hl as usize == hash.len() => match &bidi {
            None => Ok(()),
            Some((ctrl_secret, c2, s2)) => {
                let expected = response(Role::Controller, ctrl_secret, &inp(c2, *s2, session_key.as_deref()));
                match r2 {
                    Some(r2) if ct_eq(&expected, &r2) => send(q, &Message::Success2 { tid }),
                    Some(_) => Err(abort(
                        q,
                        tid,
                        failure::FAILED,
                        auth_err("controller authentication failed (wrong response)"),
                    )),
                    None => Err(abort(q, tid, failure::FAILED, auth_err("the controller did not authenticate itself"))),
                }
            }
        },
        Ok(m) => Err(abort(
            q,
            tid,
            failure::INCORRECT_MESSAGE,
            auth_err(format!("expected DH-HMAC-CHAP_Success1, got {m:?}")),
        )),
        Err(e) => Err(e),
    };
    if let Some(k) = session_key.as_mut() {
        wipe(k);
    }
    if result.is_ok() {
        log::debug!("qid {qid}: authenticated{}", if bidi.is_some() { " (bidirectional)" } else { "" });
    }
    result
}
