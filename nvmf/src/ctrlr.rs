//! Controller state shared by a controller's admin queue and its I/O queues, which may live on
//! different poll groups (threads). Everything the I/O path reads is an atomic; the rest (AEN
//! bookkeeping, changed-namespace list) is touched only by the admin queue and control path.

use crate::spec::registers::{shst, Cap, Cc, Csts};
use crate::subsystem::{HostKeys, Subsystem};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Most I/O queues one controller may have.
pub const MAX_IO_QUEUES: u16 = 127;
/// Most entries per I/O queue (CAP.MQES + 1).
pub const MAX_QUEUE_DEPTH: u16 = 128;
/// Most entries in the admin queue.
pub const MAX_ADMIN_QUEUE_DEPTH: u16 = 128;
/// Asynchronous Event Requests a controller holds at once (AERL + 1).
pub const MAX_AERS: usize = 4;

/// Keep-alive timeout given to a discovery controller whose host asked for none (KATO 0), so
/// that half-open discovery connections are reaped: 120 s, as SPDK and Linux nvmet
/// (NVMET_DISC_KATO_MS) do.
pub const DISCOVERY_DEFAULT_KATO_MS: u32 = 120_000;

/// NVMe version reported in VS and Identify Controller VER: 2.0.0. Every item Base 2.0 makes
/// mandatory for an I/O and a discovery controller is implemented (docs/user-guide.md lists them).
pub const NVME_VERSION: u32 = 0x0002_0000;

/// Warning Composite Temperature Threshold (Identify WCTEMP), and the default over-temperature
/// threshold of the Temperature Threshold feature: 343 K (70 degrees C).
pub const WARNING_TEMPERATURE_K: u16 = 343;
/// Critical Composite Temperature Threshold (Identify CCTEMP): 358 K (85 degrees C).
pub const CRITICAL_TEMPERATURE_K: u16 = 358;

/// What a Property Set of CC did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CcChange {
    /// Not a valid CC value (queue entry sizes): refused, nothing changed.
    Invalid,
    Applied,
    /// A shutdown notification arrived: CSTS.SHST is 01b until the caller has flushed every
    /// namespace and called `Controller::shutdown_complete`.
    ShutdownStarted,
}

/// Pending asynchronous events and the changed-namespace log.
#[derive(Default)]
pub(crate) struct EventState {
    /// NSIDs changed since the host last read log page 04h.
    pub changed_ns: Vec<u32>,
    /// A Namespace Attribute Changed notice waits for an AER (and is not masked).
    pub ns_change_pending: bool,
    /// Masked until the host reads the changed namespace log (Base 2.0 section 5.2).
    pub ns_change_masked: bool,
    /// Reservation Notification log entries not read yet: (log page type, NSID), oldest first,
    /// at most `MAX_RESERVATION_NOTICES` (older ones are dropped and counted).
    pub reservation_notices: std::collections::VecDeque<(u8, u32)>,
    /// Log Page Count of the newest notice (Base 2.0 section 5.16.1.21).
    pub reservation_notice_count: u64,
    /// A Reservation Log Page Available event is masked until the host reads log 80h.
    pub reservation_masked: bool,
    /// An ANA state of this controller's listener changed (Asymmetric Namespace Access Change).
    pub ana_change_pending: bool,
    /// Masked until the host reads the ANA log page 0Ch.
    pub ana_change_masked: bool,
    /// The discovery log changed since this (discovery) controller's host last read it or was
    /// told (Discovery Log Page Change notice, NVMe-oF 1.1 section 5.3).
    pub disc_change_pending: bool,
    /// Masked until the host reads the discovery log page 70h.
    pub disc_change_masked: bool,
}

/// Reservation notices a controller keeps unread (a host that never reads the log cannot grow it).
pub const MAX_RESERVATION_NOTICES: usize = 64;

/// Reservation Notification Masks of one controller (bounded by the subsystem's namespace count:
/// only NSIDs of its namespaces are set one by one).
#[derive(Debug, Default)]
struct ReservationMasks {
    all: u32,
    per_ns: Vec<(u32, u32)>,
}

/// A controller: created by an admin-queue Connect, shared with its I/O queues.
pub struct Controller {
    pub cntlid: u16,
    pub subsys: Arc<Subsystem>,
    pub hostnqn: String,
    pub hostid: [u8; 16],
    /// The listener the admin queue connected through.
    pub listener: crate::transport::TransportAddr,
    /// DH-HMAC-CHAP settings when the host must authenticate (taken at the admin Connect).
    pub(crate) host_keys: Option<Arc<HostKeys>>,
    /// Keep-alive timeout in ms; 0 disables the timer.
    kato_ms: AtomicU32,
    /// Milliseconds since `epoch` when the last Keep Alive arrived.
    last_keep_alive_ms: AtomicU64,
    epoch: Instant,
    cc: AtomicU32,
    csts: AtomicU32,
    /// Volatile Write Cache feature (FID 06h) WCE: when cleared, every write of this
    /// controller to a namespace with a volatile write cache is written through (as FUA).
    write_cache_enabled: AtomicBool,
    /// Set when the controller is torn down: its I/O queues close on their next poll.
    failed: AtomicBool,
    /// Bumped on controller reset (CC.EN 1 -> 0): I/O queues connected before it close.
    reset_epoch: AtomicU32,
    /// Number of I/O queues granted (Set Features Number of Queues), 1-based.
    num_io_queues: AtomicU32,
    /// Bitmap of connected I/O queue IDs.
    io_queues: Mutex<Vec<bool>>,
    pub(crate) aen_config: AtomicU32,
    /// Temperature Threshold feature for the composite temperature: bits 15:0 the
    /// over-temperature threshold, bits 31:16 the under-temperature threshold (kelvin).
    pub(crate) temp_thresholds: AtomicU32,
    /// Reservation Notification Mask feature (FID 82h): bits 1-3 mask Registration Preempted,
    /// Reservation Released and Reservation Preempted notices (one mask for all namespaces).
    /// Reservation Notification Mask (feature 82h) per namespace: (NSID, mask) for namespaces
    /// set one by one; the others have `reservation_mask_all`.
    reservation_masks: Mutex<ReservationMasks>,
    /// The ANA state of each group through this controller's listener.
    pub(crate) ana: crate::ana::AnaView,
    /// The discovery generation counter (GENCTR) this discovery controller's host last saw:
    /// at Connect, in a discovery log page it read, or in an event.
    pub(crate) disc_genctr_seen: AtomicU64,
    /// Set by the control path when `events` has something for the admin queue.
    pub(crate) event_flag: AtomicBool,
    pub(crate) events: Mutex<EventState>,
}

impl Controller {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cntlid: u16,
        subsys: Arc<Subsystem>,
        hostnqn: String,
        hostid: [u8; 16],
        listener: crate::transport::TransportAddr,
        host_keys: Option<Arc<HostKeys>>,
        kato_ms: u32,
        now: Instant,
    ) -> Self {
        let kato_ms = if kato_ms == 0 && subsys.is_discovery() { DISCOVERY_DEFAULT_KATO_MS } else { kato_ms };
        let groups = subsys.max_namespaces as usize;
        let genctr = subsys.discovery_genctr();
        Controller {
            cntlid,
            subsys,
            hostnqn,
            hostid,
            listener,
            host_keys,
            kato_ms: AtomicU32::new(kato_ms),
            last_keep_alive_ms: AtomicU64::new(0),
            epoch: now,
            cc: AtomicU32::new(0),
            csts: AtomicU32::new(0),
            write_cache_enabled: AtomicBool::new(true),
            failed: AtomicBool::new(false),
            reset_epoch: AtomicU32::new(0),
            num_io_queues: AtomicU32::new(MAX_IO_QUEUES as u32),
            io_queues: Mutex::new(vec![false; MAX_IO_QUEUES as usize + 1]),
            aen_config: AtomicU32::new(0),
            temp_thresholds: AtomicU32::new(WARNING_TEMPERATURE_K as u32),
            reservation_masks: Mutex::new(ReservationMasks::default()),
            ana: crate::ana::AnaView::new(&vec![crate::ana::AnaState::Optimized; groups]),
            disc_genctr_seen: AtomicU64::new(genctr),
            event_flag: AtomicBool::new(false),
            events: Mutex::new(EventState::default()),
        }
    }

    /// The ANA state of group `anagrpid` through this controller (Optimized without ANA
    /// reporting).
    #[inline]
    pub fn ana_state(&self, anagrpid: u32) -> crate::ana::AnaState {
        self.ana.get(anagrpid)
    }

    /// On a timer tick of a discovery controller's admin queue: if the discovery log changed
    /// since its host last saw it, raise the Discovery Log Page Change event (one atomic load
    /// otherwise).
    pub(crate) fn check_discovery_change(&self) {
        let now = self.subsys.discovery_genctr();
        if self.disc_genctr_seen.swap(now, Ordering::AcqRel) != now {
            self.events.lock().unwrap_or_else(|e| e.into_inner()).disc_change_pending = true;
            self.event_flag.store(true, Ordering::Release);
        }
    }

    /// The host read the discovery log page with generation counter `genctr` (without Retain
    /// Asynchronous Event): the change event is unmasked, and pending only for later changes.
    pub(crate) fn discovery_log_read(&self, genctr: u64) {
        self.disc_genctr_seen.store(genctr, Ordering::Release);
        let mut ev = self.events.lock().unwrap_or_else(|e| e.into_inner());
        ev.disc_change_masked = false;
        ev.disc_change_pending = false;
    }

    /// An ANA state of this controller's listener changed: raise the ANA Change event.
    pub(crate) fn ana_changed(&self) {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).ana_change_pending = true;
        self.event_flag.store(true, Ordering::Release);
    }

    /// The Reservation Notification Mask of namespace `nsid` (feature 82h, bits 3:1).
    pub(crate) fn reservation_mask(&self, nsid: u32) -> u32 {
        let m = self.reservation_masks.lock().unwrap_or_else(|e| e.into_inner());
        m.per_ns.iter().find(|(n, _)| *n == nsid).map_or(m.all, |(_, v)| *v)
    }

    /// Set the Reservation Notification Mask of namespace `nsid`, or of every namespace
    /// (`None`: NSID FFFFFFFFh).
    pub(crate) fn set_reservation_mask(&self, nsid: Option<u32>, mask: u32) {
        let mut m = self.reservation_masks.lock().unwrap_or_else(|e| e.into_inner());
        match nsid {
            None => {
                m.all = mask;
                m.per_ns.clear();
            }
            Some(n) => match m.per_ns.iter_mut().find(|(id, _)| *id == n) {
                Some(e) => e.1 = mask,
                None => m.per_ns.push((n, mask)),
            },
        }
    }

    /// Queue a Reservation Notification log entry (unless masked) and raise its event.
    pub(crate) fn reservation_notice(&self, log_type: u8, nsid: u32) {
        if self.reservation_mask(nsid) & 1 << log_type != 0 {
            return;
        }
        let mut ev = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if ev.reservation_notices.len() == MAX_RESERVATION_NOTICES {
            ev.reservation_notices.pop_front();
        }
        ev.reservation_notices.push_back((log_type, nsid));
        ev.reservation_notice_count = ev.reservation_notice_count.wrapping_add(1).max(1);
        self.event_flag.store(true, Ordering::Release);
    }

    /// The CAP property (Base 2.0 section 3.1.3.1).
    pub fn cap() -> Cap {
        // MQES 0's based; TO 15 s in 500 ms units; CQR; CSS NVM; MPSMIN 4 KiB.
        Cap::new(MAX_QUEUE_DEPTH - 1, 30)
    }

    pub fn cc(&self) -> Cc {
        Cc(self.cc.load(Ordering::Acquire))
    }
    pub fn csts(&self) -> Csts {
        Csts(self.csts.load(Ordering::Acquire))
    }
    /// CC.EN = 1 and CSTS.RDY = 1.
    pub fn is_ready(&self) -> bool {
        self.csts().rdy() && !self.is_failed()
    }

    /// Apply a Property Set of CC (Base 2.0 section 3.6: enable, reset, shutdown).
    pub(crate) fn set_cc(&self, new: Cc) -> CcChange {
        let old = self.cc();
        // IOSQES / IOCQES must describe 64-byte SQEs and 16-byte CQEs once enabled.
        if new.en()
            && !old.en()
            && ((new.iosqes() != 0 && new.iosqes() != 6) || (new.iocqes() != 0 && new.iocqes() != 4))
        {
            return CcChange::Invalid;
        }
        let mut change = CcChange::Applied;
        self.cc.store(new.0, Ordering::Release);
        let mut csts = self.csts();
        if new.en() && !old.en() {
            csts = csts.with_rdy(true);
        } else if !new.en() && old.en() {
            // Controller reset: I/O queues go away, RDY clears.
            self.reset_epoch.fetch_add(1, Ordering::AcqRel);
            if let Ok(mut q) = self.io_queues.lock() {
                q.iter_mut().for_each(|b| *b = false);
            }
            csts = csts.with_rdy(false).with_shst(0);
        }
        if new.shn() != 0 && old.shn() == 0 {
            // Shutdown notification: acknowledged writes must be made durable (file page cache,
            // device write caches) before shutdown is complete. The caller flushes through the
            // poll group's bdev channels, never blocking the poll thread, and then calls
            // `shutdown_complete`.
            csts = csts.with_shst(shst::OCCURRING);
            change = CcChange::ShutdownStarted;
        } else if new.shn() == 0 && new.en() && !old.en() {
            csts = csts.with_shst(shst::NORMAL);
        }
        self.csts.store(csts.0, Ordering::Release);
        change
    }

    /// The shutdown flush started by `set_cc` is done: CSTS.SHST = 10b (Shutdown processing
    /// complete), unless the host has since reset the controller.
    pub(crate) fn shutdown_complete(&self) {
        let csts = self.csts();
        if csts.shst() == shst::OCCURRING {
            self.csts.store(csts.with_shst(shst::COMPLETE).0, Ordering::Release);
        }
    }

    /// Volatile Write Cache feature WCE (Base 2.0 section 5.27.1.4).
    pub fn write_cache_enabled(&self) -> bool {
        self.write_cache_enabled.load(Ordering::Relaxed)
    }
    pub(crate) fn set_write_cache_enabled(&self, on: bool) {
        self.write_cache_enabled.store(on, Ordering::Relaxed);
    }

    pub fn reset_epoch(&self) -> u32 {
        self.reset_epoch.load(Ordering::Acquire)
    }

    pub fn kato_ms(&self) -> u32 {
        self.kato_ms.load(Ordering::Relaxed)
    }
    pub(crate) fn set_kato_ms(&self, ms: u32) {
        let ms = if ms == 0 && self.subsys.is_discovery() { DISCOVERY_DEFAULT_KATO_MS } else { ms };
        self.kato_ms.store(ms, Ordering::Relaxed);
    }
    /// Restart the keep-alive timer.
    pub(crate) fn keep_alive(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.last_keep_alive_ms.store(ms, Ordering::Relaxed);
    }
    /// Whether the keep-alive timeout has passed without a Keep Alive command.
    pub(crate) fn keep_alive_expired(&self, now: Instant) -> bool {
        let kato = self.kato_ms() as u64;
        if kato == 0 {
            return false;
        }
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        now_ms.saturating_sub(self.last_keep_alive_ms.load(Ordering::Relaxed)) > kato
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
    /// Tear the controller down: its queues close on their next poll.
    pub(crate) fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    pub fn num_io_queues(&self) -> u16 {
        self.num_io_queues.load(Ordering::Relaxed) as u16
    }
    pub(crate) fn set_num_io_queues(&self, n: u16) -> u16 {
        let n = n.clamp(1, MAX_IO_QUEUES);
        self.num_io_queues.store(n as u32, Ordering::Relaxed);
        n
    }
    /// Claim I/O queue `qid` (Connect); false when it is out of range or taken.
    pub(crate) fn claim_io_queue(&self, qid: u16) -> bool {
        if qid == 0 || qid > self.num_io_queues() {
            return false;
        }
        let mut q = self.io_queues.lock().unwrap_or_else(|e| e.into_inner());
        match q.get_mut(qid as usize) {
            Some(slot) if !*slot => {
                *slot = true;
                true
            }
            _ => false,
        }
    }
    /// IDs of the I/O queues connected now.
    pub fn io_queue_ids(&self) -> Vec<u16> {
        let q = self.io_queues.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().enumerate().filter(|(_, on)| **on).map(|(i, _)| i as u16).collect()
    }
    pub(crate) fn release_io_queue(&self, qid: u16) {
        let mut q = self.io_queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = q.get_mut(qid as usize) {
            *slot = false;
        }
    }

    /// Control path: a namespace was added or removed.
    pub(crate) fn namespace_changed(&self, nsid: u32) {
        let mut ev = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if !ev.changed_ns.contains(&nsid) {
            ev.changed_ns.push(nsid);
        }
        ev.ns_change_pending = true;
        self.event_flag.store(true, Ordering::Release);
    }
}
