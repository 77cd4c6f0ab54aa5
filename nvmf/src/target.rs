//! The target: subsystems, transports and listeners. `Target::accept` runs on one thread and
//! hands new connections to the caller, who places them in a poll group of its choice.

use crate::auth::FfdheGroups;
use crate::cmd::discovery::DiscoveryView;
use crate::deferred::WorkRunner;
use crate::poll_group::PollGroup;
use crate::referral::{Referral, Referrals};
use crate::spec::fabrics::DISCOVERY_NQN;
use crate::subsystem::{valid_nqn, Subsystem, SubsystemConfig, SubsystemKind};
use crate::transport::{Transport, TransportAddr, TransportConn, TransportListener, TransportType};
use crate::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// State every poll group can reach: the subsystems and the discovery generation counter.
/// Read on Connect and discovery, never per I/O.
pub struct TargetShared {
    subsystems: RwLock<Vec<Arc<Subsystem>>>,
    listeners: RwLock<Vec<TransportAddr>>,
    /// Discovery referrals listed in every host's discovery log page.
    referrals: Mutex<Referrals>,
    genctr: Arc<AtomicU64>,
    ns_uid: Arc<AtomicU64>,
    /// Data-buffer bytes each controller's connections hold (per-host limits).
    pub(crate) host_data: crate::transport::limits::HostDataRegistry,
    /// The ffdhe groups of DH-HMAC-CHAP, parsed once.
    pub(crate) ffdhe: FfdheGroups,
    /// Runs deferred work (`crate::deferred`) off the poll groups; `None`: they run it.
    work_runner: RwLock<Option<Arc<dyn WorkRunner>>>,
}

impl TargetShared {
    pub(crate) fn find_subsystem(&self, nqn: &str) -> Option<Arc<Subsystem>> {
        self.subsystems.read().unwrap_or_else(|e| e.into_inner()).iter().find(|s| s.nqn == nqn).cloned()
    }
    pub(crate) fn subsystems(&self) -> Vec<Arc<Subsystem>> {
        self.subsystems.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub(crate) fn work_runner(&self) -> Option<Arc<dyn WorkRunner>> {
        self.work_runner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The discovery log page's view of the target (`cmd::discovery` reads nothing else of it).
impl DiscoveryView for TargetShared {
    fn listener_addrs(&self) -> Vec<TransportAddr> {
        self.listeners.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn subsystems_visible_to(&self, hostnqn: &str) -> Vec<Arc<Subsystem>> {
        let subs = self.subsystems.read().unwrap_or_else(|e| e.into_inner());
        subs.iter().filter(|s| !s.is_discovery() && s.host_allowed(hostnqn)).cloned().collect()
    }
    fn referrals(&self) -> Vec<Referral> {
        self.referrals.lock().unwrap_or_else(|e| e.into_inner()).list()
    }
    fn discovery_genctr(&self) -> u64 {
        self.genctr.load(Ordering::Acquire)
    }
}

/// A new connection, not yet in a poll group.
pub struct Qpair {
    pub(crate) conn: Box<dyn TransportConn>,
    pub(crate) listener: TransportAddr,
}

impl Qpair {
    pub fn trtype(&self) -> TransportType {
        self.conn.trtype()
    }
    /// The host's address.
    pub fn peer(&self) -> String {
        self.conn.peer()
    }
    /// The listener it arrived on.
    pub fn listener(&self) -> &TransportAddr {
        &self.listener
    }
}

/// An NVMe-oF target.
pub struct Target {
    shared: Arc<TargetShared>,
    transports: Vec<Arc<dyn Transport>>,
    listeners: Vec<Box<dyn TransportListener>>,
}

impl Default for Target {
    fn default() -> Self {
        Self::new()
    }
}

impl Target {
    /// A target with only the discovery subsystem.
    pub fn new() -> Self {
        let genctr = Arc::new(AtomicU64::new(1));
        let ns_uid = Arc::new(AtomicU64::new(1));
        let mut cfg = SubsystemConfig::new(DISCOVERY_NQN);
        cfg.model = "nvmf-rs Discovery Controller".into();
        let discovery = Arc::new(Subsystem::new(cfg, SubsystemKind::Discovery, genctr.clone(), ns_uid.clone()));
        Target {
            shared: Arc::new(TargetShared {
                subsystems: RwLock::new(vec![discovery]),
                listeners: RwLock::new(Vec::new()),
                referrals: Mutex::new(Referrals::default()),
                genctr,
                ns_uid,
                host_data: Default::default(),
                ffdhe: FfdheGroups::new(),
                work_runner: RwLock::new(None),
            }),
            transports: Vec::new(),
            listeners: Vec::new(),
        }
    }

    /// Run slow control-path work (DH-HMAC-CHAP's modular exponentiations) with `runner`, off
    /// the poll groups' threads; `None` puts it back on the poll groups (at most one job per
    /// poll). Takes effect for work started afterwards, in every poll group. See
    /// [`WorkRunner`] and docs/authentication.md.
    pub fn set_work_runner(&self, runner: Option<Arc<dyn WorkRunner>>) {
        *self.shared.work_runner.write().unwrap_or_else(|e| e.into_inner()) = runner;
    }

    /// Register a transport (at most one per type). Add transports before creating poll groups.
    pub fn add_transport(&mut self, t: Arc<dyn Transport>) {
        self.transports.retain(|x| x.trtype() != t.trtype());
        self.transports.push(t);
    }

    pub fn transports(&self) -> &[Arc<dyn Transport>] {
        &self.transports
    }

    /// Listen on `addr` with the transport of its type.
    pub fn listen(&mut self, addr: &TransportAddr) -> Result<()> {
        if self.listeners.iter().any(|l| l.addr() == addr) {
            return Err(Error::AlreadyListening(addr.to_string()));
        }
        let t =
            self.transports.iter().find(|t| t.trtype() == addr.trtype).ok_or(Error::NoTransport(addr.trtype.name()))?;
        let l = t.listen(addr)?;
        log::info!("listening on {}", l.addr());
        self.shared.listeners.write().unwrap_or_else(|e| e.into_inner()).push(l.addr().clone());
        self.listeners.push(l);
        self.shared.genctr.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Stop listening on `addr` (existing connections stay).
    pub fn stop_listening(&mut self, addr: &TransportAddr) -> Result<()> {
        let before = self.listeners.len();
        self.listeners.retain(|l| l.addr() != addr);
        if self.listeners.len() == before {
            return Err(Error::NotListening(addr.to_string()));
        }
        self.shared.listeners.write().unwrap_or_else(|e| e.into_inner()).retain(|l| l != addr);
        self.shared.genctr.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Addresses being listened on (with the real port when 0 was asked for).
    pub fn listen_addrs(&self) -> Vec<TransportAddr> {
        self.listeners.iter().map(|l| l.addr().clone()).collect()
    }

    pub fn add_subsystem(&self, cfg: SubsystemConfig) -> Result<Arc<Subsystem>> {
        if !valid_nqn(&cfg.nqn) || cfg.nqn == DISCOVERY_NQN {
            return Err(Error::InvalidNqn(cfg.nqn));
        }
        let mut subs = self.shared.subsystems.write().unwrap_or_else(|e| e.into_inner());
        if subs.iter().any(|s| s.nqn == cfg.nqn) {
            return Err(Error::SubsystemExists(cfg.nqn));
        }
        let s =
            Arc::new(Subsystem::new(cfg, SubsystemKind::Nvm, self.shared.genctr.clone(), self.shared.ns_uid.clone()));
        subs.push(s.clone());
        self.shared.genctr.fetch_add(1, Ordering::Release);
        Ok(s)
    }

    /// Remove a subsystem; its controllers are torn down and their connections close.
    pub fn remove_subsystem(&self, nqn: &str) -> Result<()> {
        let mut subs = self.shared.subsystems.write().unwrap_or_else(|e| e.into_inner());
        let Some(pos) = subs.iter().position(|s| s.nqn == nqn && !s.is_discovery()) else {
            return Err(Error::SubsystemNotFound(nqn.to_string()));
        };
        let s = subs.remove(pos);
        drop(subs);
        s.fail_all_controllers();
        self.shared.genctr.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Add a discovery referral (SPDK's `nvmf_discovery_add_referral`). One to the same address
    /// and NQN already there is left as it is (returns false).
    pub fn add_referral(&self, r: Referral) -> Result<bool> {
        let added = self.shared.referrals.lock().unwrap_or_else(|e| e.into_inner()).add(r)?;
        if added {
            self.shared.genctr.fetch_add(1, Ordering::Release);
        }
        Ok(added)
    }

    /// Remove the referral to `r`'s address and NQN.
    pub fn remove_referral(&self, r: &Referral) -> Result<()> {
        self.shared.referrals.lock().unwrap_or_else(|e| e.into_inner()).remove(r)?;
        self.shared.genctr.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The discovery referrals, in the order they were added.
    pub fn referrals(&self) -> Vec<Referral> {
        self.shared.referrals()
    }

    pub fn subsystem(&self, nqn: &str) -> Option<Arc<Subsystem>> {
        self.shared.find_subsystem(nqn)
    }

    /// All subsystems, the discovery subsystem first.
    pub fn subsystems(&self) -> Vec<Arc<Subsystem>> {
        self.shared.subsystems()
    }

    /// Accept every pending connection on every listener, handing each to `cb`.
    /// Returns how many were accepted.
    pub fn accept(&mut self, mut cb: impl FnMut(Qpair)) -> usize {
        let mut n = 0;
        for l in self.listeners.iter_mut() {
            while let Some(conn) = l.accept() {
                log::debug!("new connection from {} on {}", conn.peer(), l.addr());
                cb(Qpair { conn, listener: l.addr().clone() });
                n += 1;
            }
        }
        n
    }

    /// A new poll group with a part for every registered transport. Send it to the thread that
    /// will poll it.
    /// The shared state, for unit tests that drive a transport's connection directly.
    #[cfg(all(test, feature = "rdma"))]
    pub(crate) fn shared_for_test(&self) -> Arc<TargetShared> {
        self.shared.clone()
    }

    pub fn create_poll_group(&self) -> PollGroup {
        PollGroup::new(self.shared.clone(), self.transports.iter().map(|t| t.create_poll_group()).collect())
    }
}
