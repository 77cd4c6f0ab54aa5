//! Persistent reservations (NVMe Base 2.0 section 8.19), arbitrated by the target for every
//! backing (a direct-mode device never sees a reservation command: it knows only the target's
//! one host identity).
//!
//! One [`ReservationState`] per namespace, shared by every controller and poll group: hosts are
//! keyed by their 128-bit Host Identifier, so all controllers of one host share its
//! registration. The state changes only under the namespace's mutex, from Reservation commands.
//! The I/O path reads one atomic (`Reservations::held`) and takes the mutex only while a
//! reservation is held, to decide Reservation Conflict.
//!
//! The transitions follow the spec where it is explicit and SPDK's target where it leaves room
//! (the Linux host and SPDK's initiator are what clusters run against): NRKEY 0 is refused,
//! Replace with IEKEY registers an unregistered host, the all-registrants types keep the first
//! registrant as the nominal holder, Preempt and Abort behaves as Preempt (commands already
//! admitted complete; none is queued in the target to abort).

pub(crate) mod ptpl;

use crate::spec::reservation::{cptpl, notification_type, racqa, rrega, rrela, ReservationType};
use crate::spec::{GenericStatus, Status};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Registrants a namespace keeps; a Register beyond them fails (SPDK's CVE-2025-57275 was an
/// unbounded table here). Host identifiers are per host, so this bounds hosts, not controllers.
pub const MAX_REGISTRANTS: usize = 64;
/// Registrants one host NQN may hold in a namespace (a host has one Host Identifier; a few
/// more cover re-generated IDs). Without it one host could fill the table by connecting with
/// many Host Identifiers and keep every other host from registering.
pub const MAX_REGISTRANTS_PER_HOSTNQN: usize = 8;

/// A registrant's host NQN as [`Registrant::hostnqn`] keeps it: a hash (only ever compared, to
/// count a host NQN's registrants); never 0.
pub fn hostnqn_key(hostnqn: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hostnqn.hash(&mut h);
    h.finish().max(1)
}

/// A 128-bit Host Identifier (Connect's HOSTID).
pub type HostId = [u8; 16];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registrant {
    pub hostid: HostId,
    /// Reservation key (RKEY), never 0.
    pub rkey: u64,
    /// [`hostnqn_key`] of the host NQN that registered it; 0 when unknown (reloaded from a PTPL
    /// file, which has no host NQNs, or registered through [`ReservationState::register`]).
    pub hostnqn: u64,
}

/// A namespace's registrants and reservation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReservationState {
    /// Persistent Reservations Generation (PRGEN): counts successful Registers and Preempts.
    pub generation: u32,
    /// In registration order.
    pub registrants: Vec<Registrant>,
    /// The reservation, if one is held: its type and holder. For the all-registrants types
    /// every registrant holds it; `holder` is then the first registrant.
    pub reservation: Option<(ReservationType, HostId)>,
    /// Persist Through Power Loss is on (Register CPTPL 11b; needs a PTPL file).
    pub ptpl_activated: bool,
}

/// What a reservation command changed: notices for other hosts (host, Reservation Notification
/// log page type) and whether the state changed (then a PTPL file must be rewritten).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub notices: Vec<(HostId, u8)>,
    pub changed: bool,
}

fn conflict() -> Status {
    Status::generic(GenericStatus::RESERVATION_CONFLICT)
}
fn invalid_field() -> Status {
    Status::generic(GenericStatus::INVALID_FIELD).dnr()
}

/// The fields of one Reservation Register command (Base 2.0 section 7.3, Figures 563 and 564).
#[derive(Clone, Copy, Debug)]
pub struct Register {
    /// RREGA: register, unregister or replace.
    pub action: u8,
    /// IEKEY: ignore the current key.
    pub iekey: bool,
    /// CPTPL: change Persist Through Power Loss.
    pub change_ptpl: u8,
    /// CRKEY: the current reservation key.
    pub crkey: u64,
    /// NRKEY: the new reservation key.
    pub nrkey: u64,
}

impl ReservationState {
    fn registrant(&self, host: &HostId) -> Option<&Registrant> {
        self.registrants.iter().find(|r| &r.hostid == host)
    }

    /// Whether `host` holds the reservation (any registrant, for the all-registrants types).
    pub fn is_holder(&self, host: &HostId) -> bool {
        match self.reservation {
            Some((t, _)) if t.all_registrants() => self.registrant(host).is_some(),
            Some((_, h)) => &h == host,
            None => false,
        }
    }

    /// The holder's key (Report's and the PTPL file's CRKEY); 0 without a reservation.
    pub fn holder_key(&self) -> u64 {
        self.reservation.and_then(|(_, h)| self.registrant(&h)).map_or(0, |r| r.rkey)
    }

    /// Whether `host` may run an I/O command that reads (`write` false) or changes logical
    /// blocks (Base 2.0 section 8.19, "Command Behavior in the Presence of a Reservation").
    pub fn allows(&self, host: &HostId, write: bool) -> bool {
        let Some((t, _)) = self.reservation else { return true };
        if self.is_holder(host) {
            return true;
        }
        if t.registrants_have_access() && self.registrant(host).is_some() {
            return true;
        }
        !write && !t.exclusive_access()
    }

    fn other_hosts(&self, host: &HostId) -> Vec<HostId> {
        self.registrants.iter().map(|r| r.hostid).filter(|h| h != host).collect()
    }

    /// Remove `host`'s registration; a single holder's reservation goes with it, an
    /// all-registrants reservation passes to the next registrant or ends with the last.
    fn remove(&mut self, host: &HostId) {
        self.registrants.retain(|r| &r.hostid != host);
        self.generation = self.generation.wrapping_add(1);
        if let Some((t, h)) = self.reservation {
            if t.all_registrants() {
                self.reservation = self.registrants.first().map(|r| (t, r.hostid));
            } else if &h == host {
                self.reservation = None;
            }
        }
    }

    fn remove_key(&mut self, rkey: u64, keep: &HostId) -> usize {
        let gone: Vec<HostId> =
            self.registrants.iter().filter(|r| r.rkey == rkey && &r.hostid != keep).map(|r| r.hostid).collect();
        for h in &gone {
            self.remove(h);
        }
        gone.len()
    }

    /// Reservation Register. `ptpl_capable`: the namespace has a PTPL file.
    pub fn register(&mut self, host: &HostId, req: Register, ptpl_capable: bool) -> Result<Effects, Status> {
        self.register_as(host, 0, req, ptpl_capable)
    }

    /// [`ReservationState::register`] from a host NQN (`hostnqn`: its [`hostnqn_key`]), which
    /// may hold at most [`MAX_REGISTRANTS_PER_HOSTNQN`] registrants.
    pub fn register_as(
        &mut self,
        host: &HostId,
        hostnqn: u64,
        req: Register,
        ptpl_capable: bool,
    ) -> Result<Effects, Status> {
        let Register { action, iekey, change_ptpl, crkey, nrkey } = req;
        let mut fx = Effects::default();
        let ptpl = match change_ptpl {
            cptpl::NO_CHANGE => None,
            cptpl::CLEAR => Some(false),
            cptpl::SET if ptpl_capable => Some(true),
            _ => return Err(invalid_field()),
        };
        let current = self.registrant(host).copied();
        let generation_before = self.generation;
        let ptpl_before = self.ptpl_activated;
        match action {
            rrega::REGISTER => match current {
                // Registering again with the same key is not an error.
                Some(r) if r.rkey == nrkey => {}
                Some(_) => return Err(conflict()),
                None => self.add(host, hostnqn, nrkey)?,
            },
            rrega::UNREGISTER => {
                let r = current.ok_or_else(conflict)?;
                if !iekey && r.rkey != crkey {
                    return Err(conflict());
                }
                let before = self.reservation;
                let others = self.other_hosts(host);
                self.remove(host);
                // The registrants-only reservation ended with its holder: tell the others.
                if let (Some((t, _)), None) = (before, self.reservation) {
                    if matches!(
                        t,
                        ReservationType::WriteExclusiveRegistrantsOnly
                            | ReservationType::ExclusiveAccessRegistrantsOnly
                    ) {
                        fx.notices.extend(others.into_iter().map(|h| (h, notification_type::RESERVATION_RELEASED)));
                    }
                }
            }
            rrega::REPLACE => {
                if nrkey == 0 {
                    return Err(invalid_field());
                }
                match current {
                    Some(r) if !iekey && r.rkey != crkey => return Err(conflict()),
                    Some(_) => {
                        let r = self.registrants.iter_mut().find(|r| &r.hostid == host).expect("registered");
                        r.rkey = nrkey;
                        self.generation = self.generation.wrapping_add(1);
                    }
                    None if iekey => self.add(host, hostnqn, nrkey)?,
                    None => return Err(conflict()),
                }
            }
            _ => return Err(invalid_field()),
        }
        if let Some(p) = ptpl {
            self.ptpl_activated = p;
        }
        // A repeated Register with the same key changes nothing: no PTPL file write for it.
        fx.changed = self.generation != generation_before || self.ptpl_activated != ptpl_before;
        Ok(fx)
    }

    fn add(&mut self, host: &HostId, hostnqn: u64, nrkey: u64) -> Result<(), Status> {
        if nrkey == 0 {
            return Err(invalid_field());
        }
        // DNR: retrying cannot help until a registrant leaves.
        let full = Status::generic(GenericStatus::INTERNAL_ERROR).dnr();
        if self.registrants.len() >= MAX_REGISTRANTS {
            log::warn!("reservation: registrant table full ({MAX_REGISTRANTS} hosts); refusing a registration");
            return Err(full);
        }
        if hostnqn != 0
            && self.registrants.iter().filter(|r| r.hostnqn == hostnqn).count() >= MAX_REGISTRANTS_PER_HOSTNQN
        {
            log::warn!(
                "reservation: a host NQN already holds {MAX_REGISTRANTS_PER_HOSTNQN} registrations; refusing another Host Identifier"
            );
            return Err(full);
        }
        self.registrants.push(Registrant { hostid: *host, rkey: nrkey, hostnqn });
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// Set Features Reservation Persistence (83h): PTPL on or off. `ptpl_capable`: the namespace
    /// has a PTPL file (otherwise only off is accepted).
    pub fn set_ptpl(&mut self, on: bool, ptpl_capable: bool) -> Result<Effects, Status> {
        if on && !ptpl_capable {
            return Err(invalid_field());
        }
        let changed = self.ptpl_activated != on;
        self.ptpl_activated = on;
        Ok(Effects { changed, ..Default::default() })
    }

    /// Reservation Acquire (acquire, preempt, preempt and abort).
    pub fn acquire(
        &mut self,
        host: &HostId,
        action: u8,
        iekey: bool,
        rtype: u8,
        crkey: u64,
        prkey: u64,
    ) -> Result<Effects, Status> {
        let t = ReservationType::from_u8(rtype).ok_or_else(invalid_field)?;
        if iekey {
            return Err(invalid_field());
        }
        match self.registrant(host) {
            Some(r) if r.rkey == crkey => {}
            _ => return Err(conflict()),
        }
        let mut fx = Effects { notices: Vec::new(), changed: true };
        match action {
            racqa::ACQUIRE => match self.reservation {
                Some((held, _)) if held == t && self.is_holder(host) => fx.changed = false,
                Some(_) => return Err(conflict()),
                None => self.reservation = Some((t, *host)),
            },
            racqa::PREEMPT | racqa::PREEMPT_AND_ABORT => {
                let before = self.other_hosts(host);
                let mut released = false;
                match self.reservation {
                    // No reservation: PRKEY only names registrations to remove.
                    None => {
                        self.remove_key(prkey, host);
                    }
                    Some((held, _)) if held.all_registrants() => {
                        if prkey == 0 {
                            for h in self.other_hosts(host) {
                                self.remove(&h);
                            }
                            self.reservation = Some((t, *host));
                        } else if self.remove_key(prkey, host) == 0 {
                            return Err(conflict());
                        }
                    }
                    Some((_, holder)) => {
                        let holder_key = self.holder_key();
                        if holder == *host && holder_key == prkey {
                            // Preempting itself: only the type changes.
                            self.reservation = Some((t, *host));
                            released = true;
                        } else if holder_key == prkey {
                            self.remove_key(prkey, host);
                            self.reservation = Some((t, *host));
                            released = true;
                        } else if prkey != 0 {
                            self.remove_key(prkey, host);
                        } else {
                            return Err(conflict());
                        }
                    }
                }
                self.generation = self.generation.wrapping_add(1);
                let after = self.other_hosts(host);
                fx.notices.extend(
                    before
                        .iter()
                        .filter(|h| !after.contains(h))
                        .map(|h| (*h, notification_type::REGISTRATION_PREEMPTED)),
                );
                if released {
                    fx.notices.extend(after.iter().map(|h| (*h, notification_type::RESERVATION_RELEASED)));
                }
            }
            _ => return Err(invalid_field()),
        }
        Ok(fx)
    }

    /// Reservation Release (release, clear).
    pub fn release(
        &mut self,
        host: &HostId,
        action: u8,
        iekey: bool,
        rtype: u8,
        crkey: u64,
    ) -> Result<Effects, Status> {
        if iekey {
            return Err(invalid_field());
        }
        match self.registrant(host) {
            Some(r) if r.rkey == crkey => {}
            _ => return Err(conflict()),
        }
        let others = self.other_hosts(host);
        let mut fx = Effects::default();
        match action {
            rrela::RELEASE => {
                let Some((t, _)) = self.reservation else { return Ok(fx) };
                if t as u8 != rtype {
                    return Err(invalid_field());
                }
                // Not the holder: nothing to release, and not an error.
                if !self.is_holder(host) {
                    return Ok(fx);
                }
                self.reservation = None;
                fx.changed = true;
                if t.registrants_have_access() {
                    fx.notices.extend(others.into_iter().map(|h| (h, notification_type::RESERVATION_RELEASED)));
                }
            }
            rrela::CLEAR => {
                self.registrants.clear();
                self.reservation = None;
                self.generation = self.generation.wrapping_add(1);
                fx.changed = true;
                fx.notices.extend(others.into_iter().map(|h| (h, notification_type::RESERVATION_PREEMPTED)));
            }
            _ => return Err(invalid_field()),
        }
        Ok(fx)
    }
}

/// A namespace's reservations: the state, a lock-free "is a reservation held" for the I/O path,
/// and the PTPL file when the namespace has one.
#[derive(Debug, Default)]
pub struct Reservations {
    held: AtomicBool,
    state: Mutex<ReservationState>,
    /// Numbers each change (taken under the mutex), so PTPL writes land in order.
    changes: AtomicU64,
    pub(crate) ptpl: Option<ptpl::PtplFile>,
}

impl Reservations {
    /// With a PTPL file: the state it holds (none if the file is absent or empty).
    pub fn new(ptpl: Option<ptpl::PtplFile>, state: ReservationState) -> Self {
        Reservations {
            held: AtomicBool::new(state.reservation.is_some()),
            state: Mutex::new(state),
            changes: AtomicU64::new(0),
            ptpl,
        }
    }

    /// The I/O path: one atomic load while nobody holds a reservation.
    #[inline]
    pub fn allows(&self, host: &HostId, write: bool) -> bool {
        !self.held.load(Ordering::Acquire) || self.lock().allows(host, write)
    }

    /// Run a reservation command on the state; publishes the held flag before returning. Also
    /// returns the new state and its change number (for the PTPL file).
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut ReservationState) -> R) -> (R, ReservationState, u64) {
        let mut st = self.lock();
        let r = f(&mut st);
        self.held.store(st.reservation.is_some(), Ordering::Release);
        let seq = self.changes.fetch_add(1, Ordering::Relaxed) + 1;
        (r, st.clone(), seq)
    }

    /// The namespace's PTPL file, if it has one.
    pub fn ptpl_file(&self) -> Option<&std::path::Path> {
        self.ptpl.as_ref().map(|f| f.path())
    }

    /// A copy of the state (Reservation Report, tests).
    pub fn snapshot(&self) -> ReservationState {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, ReservationState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
