//! Subsystems and namespaces. A `Subsystem` is shared by every thread (`Arc`): configuration
//! changes take a mutex, while the I/O path only reads an atomic generation number and a
//! snapshot of the namespace table cached per queue.

use crate::ana::AnaState;
use crate::auth::{DhGroup, HashId, Secret};
use crate::bdev::Bdev;
use crate::ctrlr::Controller;
use crate::spec::fabrics::{DISCOVERY_NQN, NQN_MAX_LEN};
use crate::transport::TransportAddr;
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Most namespaces one subsystem may hold (Identify Controller NN).
pub const MAX_NAMESPACES: u32 = 1024;

/// Whether this is the discovery subsystem or an NVM subsystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubsystemKind {
    Discovery,
    Nvm,
}

/// A namespace: an NSID bound to a bdev.
pub struct Namespace {
    pub nsid: u32,
    /// Target-unique id: poll groups key their bdev channels by it.
    pub(crate) uid: u64,
    pub bdev: Arc<dyn Bdev>,
    pub nguid: [u8; 16],
    pub eui64: [u8; 8],
    pub uuid: [u8; 16],
    /// Pass I/O opcodes the target does not model, whose data length it cannot check, to an
    /// NVMe bdev (trusting the hosts); see [`NamespaceConfig::passthru_io`].
    pub passthru_io: bool,
    /// Every poll group's I/O counters on this namespace.
    pub(crate) iostats: crate::bdev::iostat::IoStatsRegistry,
    /// Holds writes back while a fused Compare and Write runs (`fused::gate`).
    pub(crate) write_gate: crate::fused::gate::WriteGate,
    /// Visible to every host (SPDK's `no_auto_visible: false`). Otherwise only the hosts in
    /// `visible_hosts` see it (`Subsystem::ns_add_host`).
    pub auto_visible: bool,
    /// Hosts that see a namespace that is not auto-visible. Control path only.
    visible_hosts: Mutex<Vec<String>>,
    /// Registrants and reservation (Base 2.0 section 8.19), with the PTPL file if configured.
    pub reservations: crate::reservation::Reservations,
    /// ANA group (1..=the subsystem's namespace limit; SPDK's default: the NSID).
    pub anagrpid: u32,
}

impl Namespace {
    /// I/Os the target submitted to this namespace's bdev, over all poll groups.
    pub fn io_stats(&self) -> crate::bdev::iostat::IoStats {
        self.iostats.total()
    }
    /// Whether controllers of host `hostnqn` see this namespace.
    pub fn visible_to(&self, hostnqn: &str) -> bool {
        self.auto_visible || self.hosts_lock().iter().any(|h| h == hostnqn)
    }
    /// The hosts a namespace that is not auto-visible is visible to, in the order they were added.
    pub fn visible_hosts(&self) -> Vec<String> {
        self.hosts_lock().clone()
    }
    fn hosts_lock(&self) -> MutexGuard<'_, Vec<String>> {
        self.visible_hosts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("nsid", &self.nsid).field("bdev", &self.bdev.name()).finish()
    }
}

/// Namespace settings for `Subsystem::add_namespace`.
#[derive(Clone)]
pub struct NamespaceConfig {
    /// NSID to use; `None` picks the lowest free one.
    pub nsid: Option<u32>,
    pub bdev: Arc<dyn Bdev>,
    /// NGUID / EUI-64 / UUID; zero means "derive one from the subsystem NQN and NSID".
    pub nguid: [u8; 16],
    pub eui64: [u8; 8],
    pub uuid: [u8; 16],
    /// Passthrough trusting the hosts (off by default). On a namespace whose bdev is an NVMe
    /// device, I/O opcodes the target neither models nor can compute the data length of
    /// (vendor specific, ...) go to the device instead of failing with Invalid Opcode. Whatever
    /// the command claims, the device only reaches memory lent to that command, but what the
    /// command does on the device is the host's to choose. Reservations, Copy and Cancel are
    /// refused even so.
    pub passthru_io: bool,
    /// Visible to every host (default); `false` hides it until `Subsystem::ns_add_host`.
    pub auto_visible: bool,
    /// Persist Through Power Loss file (SPDK's `ptpl_file`): reservations are reloaded from it
    /// now and written to it before each reservation command that changes them completes.
    /// `None`: reservations last as long as the target process (PTPL cannot be turned on).
    pub ptpl_file: Option<std::path::PathBuf>,
    /// ANA group; `None`: the NSID (as SPDK).
    pub anagrpid: Option<u32>,
}

impl NamespaceConfig {
    pub fn new(bdev: Arc<dyn Bdev>) -> Self {
        NamespaceConfig {
            nsid: None,
            bdev,
            nguid: [0; 16],
            eui64: [0; 8],
            uuid: [0; 16],
            passthru_io: false,
            auto_visible: true,
            ptpl_file: None,
            anagrpid: None,
        }
    }
}

/// The namespace table as the I/O path sees it: index `nsid - 1`.
pub(crate) type NsTable = Arc<Vec<Option<Arc<Namespace>>>>;

/// Subsystem settings for `Target::add_subsystem`.
#[derive(Clone, Debug)]
pub struct SubsystemConfig {
    pub nqn: String,
    /// Serial number (Identify Controller SN, up to 20 ASCII characters).
    pub serial: String,
    /// Model number (Identify Controller MN, up to 40 ASCII characters).
    pub model: String,
    pub allow_any_host: bool,
    /// Maximum namespaces (Identify Controller NN); also the number of ANA groups.
    pub max_namespaces: u32,
    /// Asymmetric Namespace Access reporting (SPDK's `ana_reporting`): each listener has a state
    /// per ANA group (`Subsystem::set_ana_state`) that its controllers report and enforce.
    pub ana_reporting: bool,
}

impl SubsystemConfig {
    pub fn new(nqn: &str) -> Self {
        SubsystemConfig {
            nqn: nqn.to_string(),
            serial: "NVMFRS00000000000001".to_string(),
            model: "nvmf-rs Controller".to_string(),
            allow_any_host: false,
            max_namespaces: 32,
            ana_reporting: false,
        }
    }
}

/// Check an NQN's syntax (NVMe Base 2.0 section 4.5): "nqn." prefix or the UUID form, at most 223 bytes.
pub fn valid_nqn(nqn: &str) -> bool {
    nqn.len() <= NQN_MAX_LEN && nqn.len() > 11 && nqn.starts_with("nqn.") && nqn.is_ascii()
}

/// DH-HMAC-CHAP settings of one allowed host (`Subsystem::add_host_with_keys`). With a
/// `dhchap_key`, every queue of this host must authenticate right after Connect; with a
/// `dhchap_ctrlr_key` too, the host may also authenticate the controller (bidirectional).
/// `Debug` never shows the keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostKeys {
    /// The host's secret (what the host is configured with as `--dhchap-secret`).
    pub dhchap_key: Option<Secret>,
    /// The controller's secret (the host's `--dhchap-ctrl-secret`).
    pub dhchap_ctrlr_key: Option<Secret>,
    /// Hash functions the controller accepts, most preferred first; empty means the default
    /// order SHA-256, SHA-384, SHA-512. The first one the host offers is used.
    pub dhchap_digests: Vec<HashId>,
    /// DH groups the controller accepts, most preferred first; empty means the default order
    /// ffdhe2048, ffdhe3072, ffdhe4096, ffdhe6144, ffdhe8192, null.
    pub dhchap_dhgroups: Vec<DhGroup>,
}

impl HostKeys {
    /// Default digest preference.
    pub const DEFAULT_DIGESTS: [HashId; 3] = [HashId::Sha256, HashId::Sha384, HashId::Sha512];
    /// Default DH group preference: a real key exchange first, the cheapest group first.
    pub const DEFAULT_DHGROUPS: [DhGroup; 6] = [
        DhGroup::Ffdhe2048,
        DhGroup::Ffdhe3072,
        DhGroup::Ffdhe4096,
        DhGroup::Ffdhe6144,
        DhGroup::Ffdhe8192,
        DhGroup::Null,
    ];

    /// Host key only (unidirectional authentication).
    pub fn new(dhchap_key: Secret) -> Self {
        HostKeys { dhchap_key: Some(dhchap_key), ..Default::default() }
    }
    /// Digests in preference order (the configured ones or the default).
    pub fn digests(&self) -> &[HashId] {
        if self.dhchap_digests.is_empty() {
            &Self::DEFAULT_DIGESTS
        } else {
            &self.dhchap_digests
        }
    }
    /// DH groups in preference order (the configured ones or the default).
    pub fn dhgroups(&self) -> &[DhGroup] {
        if self.dhchap_dhgroups.is_empty() {
            &Self::DEFAULT_DHGROUPS
        } else {
            &self.dhchap_dhgroups
        }
    }
}

pub(crate) struct SubsystemState {
    pub hosts: Vec<String>,
    /// DH-HMAC-CHAP settings of the hosts in `hosts` that have some.
    pub host_keys: HashMap<String, Arc<HostKeys>>,
    pub listeners: Vec<TransportAddr>,
    /// Each listener's ANA state per group (index `anagrpid - 1`), in `listeners` order.
    pub ana: Vec<Vec<AnaState>>,
    /// ANA log page Change Count: bumped on every state change.
    pub ana_chgcnt: u64,
    pub namespaces: NsTable,
    pub controllers: Vec<Weak<Controller>>,
    next_cntlid: u16,
}

/// An NVM subsystem (or the discovery subsystem).
pub struct Subsystem {
    pub nqn: String,
    pub kind: SubsystemKind,
    pub serial: String,
    pub model: String,
    pub max_namespaces: u32,
    /// ANA reporting is on (fixed at creation, as in SPDK).
    pub ana_reporting: bool,
    allow_any_host: AtomicBool,
    /// Bumped on every namespace change; queues compare it to refresh their cached table.
    pub(crate) ns_generation: AtomicU64,
    state: Mutex<SubsystemState>,
    /// The target's discovery generation counter, bumped on changes visible in the discovery log.
    discovery_genctr: Arc<AtomicU64>,
    ns_uid: Arc<AtomicU64>,
}

impl std::fmt::Debug for Subsystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subsystem").field("nqn", &self.nqn).field("kind", &self.kind).finish()
    }
}

impl Subsystem {
    pub(crate) fn new(
        cfg: SubsystemConfig,
        kind: SubsystemKind,
        genctr: Arc<AtomicU64>,
        ns_uid: Arc<AtomicU64>,
    ) -> Self {
        let max = cfg.max_namespaces.clamp(1, MAX_NAMESPACES);
        Subsystem {
            nqn: cfg.nqn,
            kind,
            serial: cfg.serial,
            model: cfg.model,
            max_namespaces: if kind == SubsystemKind::Discovery { 0 } else { max },
            ana_reporting: cfg.ana_reporting && kind != SubsystemKind::Discovery,
            allow_any_host: AtomicBool::new(cfg.allow_any_host || kind == SubsystemKind::Discovery),
            ns_generation: AtomicU64::new(0),
            state: Mutex::new(SubsystemState {
                hosts: Vec::new(),
                host_keys: HashMap::new(),
                listeners: Vec::new(),
                ana: Vec::new(),
                ana_chgcnt: 0,
                namespaces: Arc::new(Vec::new()),
                controllers: Vec::new(),
                next_cntlid: 1,
            }),
            discovery_genctr: genctr,
            ns_uid,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SubsystemState> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.discovery_genctr.fetch_add(1, Ordering::Release);
    }

    /// The target's discovery generation counter (GENCTR), shared by every subsystem.
    pub(crate) fn discovery_genctr(&self) -> u64 {
        self.discovery_genctr.load(Ordering::Acquire)
    }

    pub fn is_discovery(&self) -> bool {
        self.kind == SubsystemKind::Discovery || self.nqn == DISCOVERY_NQN
    }

    pub fn allow_any_host(&self) -> bool {
        self.allow_any_host.load(Ordering::Acquire)
    }
    pub fn set_allow_any_host(&self, allow: bool) {
        self.allow_any_host.store(allow, Ordering::Release);
        self.changed();
    }
    /// Whether `hostnqn` may connect.
    pub fn host_allowed(&self, hostnqn: &str) -> bool {
        self.allow_any_host() || self.lock().hosts.iter().any(|h| h == hostnqn)
    }
    pub fn add_host(&self, hostnqn: &str) -> Result<()> {
        if !valid_nqn(hostnqn) {
            return Err(Error::InvalidNqn(hostnqn.to_string()));
        }
        let mut st = self.lock();
        if st.hosts.iter().any(|h| h == hostnqn) {
            return Err(Error::HostExists(hostnqn.to_string()));
        }
        st.hosts.push(hostnqn.to_string());
        drop(st);
        self.changed();
        Ok(())
    }
    /// Allow `hostnqn` with DH-HMAC-CHAP settings: with `keys.dhchap_key` set the host must
    /// authenticate every queue (admin and I/O) after Connect. A controller key needs a host key.
    /// Applies to controllers created afterwards.
    pub fn add_host_with_keys(&self, hostnqn: &str, keys: HostKeys) -> Result<()> {
        if keys.dhchap_ctrlr_key.is_some() && keys.dhchap_key.is_none() {
            return Err(Error::InvalidParam("a DH-HMAC-CHAP controller key needs a host key".into()));
        }
        if self.is_discovery() && keys.dhchap_key.is_some() {
            return Err(Error::InvalidParam("the discovery subsystem does not authenticate hosts".into()));
        }
        self.add_host(hostnqn)?;
        if keys.dhchap_key.is_some() {
            self.lock().host_keys.insert(hostnqn.to_string(), Arc::new(keys));
        }
        Ok(())
    }
    /// The DH-HMAC-CHAP settings of `hostnqn`, if it has a host key.
    /// Replace the DH-HMAC-CHAP settings of allowed host `hostnqn` (no `dhchap_key`: the host no
    /// longer authenticates). Connections made from now on use them, I/O queues of controllers
    /// that already exist included; queues already connected stay as they are.
    pub fn set_host_keys(&self, hostnqn: &str, keys: HostKeys) -> Result<()> {
        if keys.dhchap_ctrlr_key.is_some() && keys.dhchap_key.is_none() {
            return Err(Error::InvalidParam("a DH-HMAC-CHAP controller key needs a host key".into()));
        }
        let mut st = self.lock();
        if !st.hosts.iter().any(|h| h == hostnqn) {
            return Err(Error::HostNotFound(hostnqn.to_string()));
        }
        if keys.dhchap_key.is_some() {
            st.host_keys.insert(hostnqn.to_string(), Arc::new(keys));
        } else {
            st.host_keys.remove(hostnqn);
        }
        Ok(())
    }
    pub fn host_keys(&self, hostnqn: &str) -> Option<Arc<HostKeys>> {
        self.lock().host_keys.get(hostnqn).cloned()
    }
    pub fn remove_host(&self, hostnqn: &str) -> Result<()> {
        let mut st = self.lock();
        let before = st.hosts.len();
        st.hosts.retain(|h| h != hostnqn);
        st.host_keys.remove(hostnqn);
        if st.hosts.len() == before {
            return Err(Error::HostNotFound(hostnqn.to_string()));
        }
        drop(st);
        self.changed();
        Ok(())
    }
    pub fn hosts(&self) -> Vec<String> {
        self.lock().hosts.clone()
    }

    /// Make the subsystem reachable through `addr` (the target must also listen there).
    pub fn add_listener(&self, addr: TransportAddr) -> Result<()> {
        let mut st = self.lock();
        if st.listeners.contains(&addr) {
            return Err(Error::AlreadyListening(addr.to_string()));
        }
        st.listeners.push(addr);
        st.ana.push(vec![AnaState::Optimized; self.max_namespaces as usize]);
        drop(st);
        self.changed();
        Ok(())
    }
    pub fn remove_listener(&self, addr: &TransportAddr) -> Result<()> {
        let mut st = self.lock();
        let Some(i) = st.listeners.iter().position(|l| l == addr) else {
            return Err(Error::NotListening(addr.to_string()));
        };
        st.listeners.remove(i);
        st.ana.remove(i);
        drop(st);
        self.changed();
        Ok(())
    }
    pub fn listeners(&self) -> Vec<TransportAddr> {
        self.lock().listeners.clone()
    }

    /// Listener `addr`'s ANA state of each group (index `anagrpid - 1`).
    pub fn ana_states(&self, addr: &TransportAddr) -> Option<Vec<AnaState>> {
        let st = self.lock();
        st.listeners.iter().position(|l| l == addr).map(|i| st.ana[i].clone())
    }

    /// SPDK's `nvmf_subsystem_listener_set_ana_state`: set listener `addr`'s state of group
    /// `anagrpid` (`None`: every group). Controllers connected through it report the new state
    /// at once (their next I/O is checked against it) and get an ANA Change event.
    pub fn set_ana_state(&self, addr: &TransportAddr, anagrpid: Option<u32>, state: AnaState) -> Result<()> {
        if !self.ana_reporting {
            return Err(Error::InvalidParam(format!("{} does not have ANA reporting", self.nqn)));
        }
        if anagrpid.is_some_and(|g| g == 0 || g > self.max_namespaces) {
            return Err(Error::InvalidParam(format!("ANA group ID must be 1..={}", self.max_namespaces)));
        }
        let mut st = self.lock();
        let Some(i) = st.listeners.iter().position(|l| l == addr) else {
            return Err(Error::NotListening(addr.to_string()));
        };
        for (g, s) in st.ana[i].iter_mut().enumerate() {
            if anagrpid.is_none_or(|a| a as usize == g + 1) {
                *s = state;
            }
        }
        st.ana_chgcnt += 1;
        st.controllers.retain(|c| c.strong_count() > 0);
        for c in st.controllers.iter().filter_map(Weak::upgrade).filter(|c| addr.matches(&c.listener)) {
            for g in 1..=self.max_namespaces {
                if anagrpid.is_none_or(|a| a == g) {
                    c.ana.set(g, state);
                }
            }
            c.ana_changed();
        }
        log::info!("{}: listener {addr} ANA group {anagrpid:?} is now {}", self.nqn, state.name());
        Ok(())
    }

    /// Run `f` with the ANA log page's Change Count while no ANA state can change
    /// (`set_ana_state` updates the count, the controllers' states and their events under the
    /// same lock): what `f` reads of a controller's states matches the count.
    pub(crate) fn with_ana_stable<R>(&self, f: impl FnOnce(u64) -> R) -> R {
        let st = self.lock();
        f(st.ana_chgcnt)
    }
    /// Whether a connection that arrived on `listener` may reach this subsystem.
    pub fn listening_on(&self, listener: &TransportAddr) -> bool {
        self.is_discovery() || self.lock().listeners.iter().any(|l| l.matches(listener))
    }

    /// Add a namespace and return its NSID. Connected controllers get a Namespace Attribute
    /// Changed event.
    pub fn add_namespace(&self, cfg: NamespaceConfig) -> Result<u32> {
        if self.is_discovery() {
            return Err(Error::InvalidParam("the discovery subsystem has no namespaces".into()));
        }
        let mut st = self.lock();
        let table = &st.namespaces;
        let nsid = match cfg.nsid {
            Some(n) if n == 0 || n > self.max_namespaces => return Err(Error::NsidInUse(n)),
            Some(n) if table.get(n as usize - 1).is_some_and(|e| e.is_some()) => return Err(Error::NsidInUse(n)),
            Some(n) => n,
            None => (1..=self.max_namespaces)
                .find(|&n| table.get(n as usize - 1).is_none_or(|e| e.is_none()))
                .ok_or(Error::TooManyNamespaces(self.max_namespaces))?,
        };
        let mut ids = Self::derive_ids(&self.nqn, nsid);
        if cfg.nguid != [0; 16] {
            ids.0 = cfg.nguid;
        }
        if cfg.eui64 != [0; 8] {
            ids.1 = cfg.eui64;
        }
        if cfg.uuid != [0; 16] {
            ids.2 = cfg.uuid;
        }
        let anagrpid = cfg.anagrpid.unwrap_or(nsid);
        if anagrpid == 0 || anagrpid > self.max_namespaces {
            return Err(Error::InvalidParam(format!("ANA group ID {anagrpid} is not in 1..={}", self.max_namespaces)));
        }
        let ptpl = cfg.ptpl_file.map(|p| crate::reservation::ptpl::PtplFile::new(p, ids.2));
        let restored = match &ptpl {
            // The file is read without the subsystem lock, which Connect and the poll groups'
            // namespace-table reloads take; the NSID is checked again afterwards.
            Some(f) => {
                drop(st);
                let r = f.load()?;
                st = self.lock();
                if st.namespaces.get(nsid as usize - 1).is_some_and(|e| e.is_some()) {
                    return Err(Error::NsidInUse(nsid));
                }
                r
            }
            None => Default::default(),
        };
        let ns = Arc::new(Namespace {
            nsid,
            uid: self.ns_uid.fetch_add(1, Ordering::Relaxed),
            bdev: cfg.bdev,
            nguid: ids.0,
            eui64: ids.1,
            uuid: ids.2,
            iostats: Default::default(),
            write_gate: Default::default(),
            passthru_io: cfg.passthru_io,
            auto_visible: cfg.auto_visible,
            visible_hosts: Mutex::new(Vec::new()),
            reservations: crate::reservation::Reservations::new(ptpl, restored),
            anagrpid,
        });
        let mut next: Vec<Option<Arc<Namespace>>> = st.namespaces.as_ref().clone();
        if next.len() < nsid as usize {
            next.resize(nsid as usize, None);
        }
        next[nsid as usize - 1] = Some(ns.clone());
        st.namespaces = Arc::new(next);
        self.ns_generation.fetch_add(1, Ordering::Release);
        Self::notify_ns_change(&mut st, nsid, |host| ns.visible_to(host));
        Ok(nsid)
    }

    /// Remove a namespace. I/O already submitted to its bdev completes normally.
    pub fn remove_namespace(&self, nsid: u32) -> Result<Arc<Namespace>> {
        let mut st = self.lock();
        let Some(Some(ns)) = st.namespaces.get((nsid as usize).wrapping_sub(1)).cloned() else {
            return Err(Error::NamespaceNotFound(nsid));
        };
        let mut next: Vec<Option<Arc<Namespace>>> = st.namespaces.as_ref().clone();
        next[nsid as usize - 1] = None;
        while next.last().is_some_and(|e| e.is_none()) {
            next.pop();
        }
        st.namespaces = Arc::new(next);
        self.ns_generation.fetch_add(1, Ordering::Release);
        Self::notify_ns_change(&mut st, nsid, |host| ns.visible_to(host));
        Ok(ns)
    }

    /// Make namespace `nsid` (added with `auto_visible: false`) visible to host `hostnqn`, as
    /// SPDK's `spdk_nvmf_ns_add_host`: applies to that host's existing controllers (each gets a
    /// Namespace Attribute Changed event) and to the ones it creates later. Adding a host that
    /// already sees it changes nothing.
    pub fn ns_add_host(&self, nsid: u32, hostnqn: &str) -> Result<()> {
        self.set_ns_visible(nsid, hostnqn, true)
    }

    /// Hide namespace `nsid` from host `hostnqn` again (`spdk_nvmf_ns_remove_host`).
    pub fn ns_remove_host(&self, nsid: u32, hostnqn: &str) -> Result<()> {
        self.set_ns_visible(nsid, hostnqn, false)
    }

    fn set_ns_visible(&self, nsid: u32, hostnqn: &str, visible: bool) -> Result<()> {
        if !valid_nqn(hostnqn) {
            return Err(Error::InvalidNqn(hostnqn.to_string()));
        }
        let mut st = self.lock();
        let Some(Some(ns)) = st.namespaces.get((nsid as usize).wrapping_sub(1)).cloned() else {
            return Err(Error::NamespaceNotFound(nsid));
        };
        if ns.auto_visible {
            return Err(Error::InvalidParam(format!(
                "namespace {nsid} is visible to every host (no_auto_visible not set)"
            )));
        }
        let mut hosts = ns.hosts_lock();
        match (visible, hosts.iter().position(|h| h == hostnqn)) {
            (true, None) => hosts.push(hostnqn.to_string()),
            (false, Some(i)) => {
                hosts.remove(i);
            }
            _ => return Ok(()),
        }
        drop(hosts);
        self.ns_generation.fetch_add(1, Ordering::Release);
        Self::notify_ns_change(&mut st, nsid, |host| host == hostnqn);
        Ok(())
    }

    /// Give the live controllers whose host `affected` selects a Namespace Attribute Changed event.
    fn notify_ns_change(st: &mut SubsystemState, nsid: u32, affected: impl Fn(&str) -> bool) {
        st.controllers.retain(|c| c.strong_count() > 0);
        for c in st.controllers.iter().filter_map(Weak::upgrade).filter(|c| affected(&c.hostnqn)) {
            c.namespace_changed(nsid);
        }
    }

    /// Snapshot of the namespace table as controllers of `hostnqn` see it: the shared table
    /// itself when every namespace is auto-visible, else a copy without the hidden ones.
    pub(crate) fn ns_table_for(&self, hostnqn: &str) -> NsTable {
        let st = self.lock();
        if st.namespaces.iter().flatten().all(|ns| ns.auto_visible) {
            return st.namespaces.clone();
        }
        let mut table: Vec<Option<Arc<Namespace>>> =
            st.namespaces.iter().map(|e| e.as_ref().filter(|ns| ns.visible_to(hostnqn)).cloned()).collect();
        while table.last().is_some_and(|e| e.is_none()) {
            table.pop();
        }
        Arc::new(table)
    }

    /// Snapshot of the namespace table.
    pub(crate) fn ns_table(&self) -> NsTable {
        self.lock().namespaces.clone()
    }
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        self.ns_table().iter().flatten().cloned().collect()
    }
    pub fn namespace(&self, nsid: u32) -> Option<Arc<Namespace>> {
        self.ns_table().get((nsid as usize).wrapping_sub(1)).cloned().flatten()
    }

    /// Register a new controller and give it a free controller ID (1..=0xFFEF).
    pub(crate) fn register_controller<F>(&self, make: F) -> Option<Arc<Controller>>
    where
        F: FnOnce(u16) -> Controller,
    {
        let mut st = self.lock();
        st.controllers.retain(|c| c.strong_count() > 0);
        let used: Vec<u16> = st.controllers.iter().filter_map(Weak::upgrade).map(|c| c.cntlid).collect();
        let mut id = st.next_cntlid;
        for _ in 0..0xffef {
            if !used.contains(&id) {
                break;
            }
            id = if id >= 0xffef { 1 } else { id + 1 };
        }
        if used.contains(&id) {
            return None;
        }
        st.next_cntlid = if id >= 0xffef { 1 } else { id + 1 };
        let c = Arc::new(make(id));
        // The controller reports the ANA states of the listener it came through.
        if let Some(i) = st.listeners.iter().position(|l| l.matches(&c.listener)) {
            for (g, s) in st.ana[i].iter().enumerate() {
                c.ana.set(g as u32 + 1, *s);
            }
        }
        st.controllers.push(Arc::downgrade(&c));
        Some(c)
    }

    pub(crate) fn find_controller(&self, cntlid: u16) -> Option<Arc<Controller>> {
        self.lock().controllers.iter().filter_map(Weak::upgrade).find(|c| c.cntlid == cntlid && !c.is_failed())
    }

    /// The live controllers, by CNTLID.
    pub fn controllers(&self) -> Vec<Arc<Controller>> {
        let mut v: Vec<_> =
            self.lock().controllers.iter().filter_map(Weak::upgrade).filter(|c| !c.is_failed()).collect();
        v.sort_by_key(|c| c.cntlid);
        v
    }

    /// Live controllers (for statistics and tests).
    pub fn num_controllers(&self) -> usize {
        self.lock().controllers.iter().filter_map(Weak::upgrade).filter(|c| !c.is_failed()).count()
    }

    /// NGUID, EUI-64 and UUID derived from the NQN and NSID (stable across restarts).
    fn derive_ids(nqn: &str, nsid: u32) -> ([u8; 16], [u8; 8], [u8; 16]) {
        let a = crc32c::crc32c(nqn.as_bytes());
        let b = crc32c::crc32c_append(a, &nsid.to_le_bytes());
        let c = crc32c::crc32c_append(b, b"nguid");
        let d = crc32c::crc32c_append(c, b"uuid");
        let mut nguid = [0u8; 16];
        nguid[0..4].copy_from_slice(&a.to_be_bytes());
        nguid[4..8].copy_from_slice(&b.to_be_bytes());
        nguid[8..12].copy_from_slice(&c.to_be_bytes());
        nguid[12..16].copy_from_slice(&nsid.to_be_bytes());
        let mut eui = [0u8; 8];
        eui[0..4].copy_from_slice(&b.to_be_bytes());
        eui[4..8].copy_from_slice(&nsid.to_be_bytes());
        let mut uuid = nguid;
        uuid[8..12].copy_from_slice(&d.to_be_bytes());
        uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4 layout
        uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
        (nguid, eui, uuid)
    }
}

impl Subsystem {
    /// Tear down every controller (subsystem removal): their queues close on the next poll.
    pub(crate) fn fail_all_controllers(&self) {
        for c in self.lock().controllers.iter().filter_map(Weak::upgrade) {
            c.fail();
        }
    }
}
