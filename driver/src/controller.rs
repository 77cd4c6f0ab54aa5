//! Controller bring-up, identify, queue allocation, reset and shutdown (NVMe Base 2.0 section
//! 3.5: controller initialization and shutdown).

use crate::admin::{self, AdminQueue};
use crate::dma::{DmaAllocator, DmaBacking, DmaRegion, PAGE_SIZE};
use crate::error::{Error, Result};
use crate::mmio::RegisterSpace;
use crate::qpair::IoQpair;
use crate::rings::{CompQueue, SubQueue};
use crate::spec::{
    cns, doorbell_offset, fid, lid, reg, shn, shst, Aqa, Cap, Cc, Cqe, Csts, ErrorLogEntry, IdentifyController,
    IdentifyNamespace, NumberOfQueues, SmartLog, Sqe,
};
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use zerocopy::FromZeros;

/// Settings for bring-up and queue pairs.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Admin SQ/CQ entries (2..=4096).
    pub admin_queue_entries: u16,
    /// Default entries of an I/O queue pair (capped by CAP.MQES).
    pub io_queue_entries: u16,
    /// I/O queue pairs to ask for with Set Features Number of Queues.
    pub io_queues: u16,
    /// Time before an I/O command is aborted; `None` disables I/O timeouts.
    pub io_timeout: Option<Duration>,
    /// Time to wait for an admin command.
    pub admin_timeout: Duration,
    /// What backs DMA memory for controllers created with [`Controller::new_emulated`].
    pub dma_backing: DmaBacking,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            admin_queue_entries: 32,
            io_queue_entries: 256,
            io_queues: 64,
            io_timeout: Some(Duration::from_secs(30)),
            admin_timeout: Duration::from_secs(10),
            dma_backing: DmaBacking::PreferHugepages,
        }
    }
}

/// An active namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub nsid: u32,
    /// Logical block size in bytes.
    pub block_size: u32,
    /// Size in logical blocks (NSZE).
    pub blocks: u64,
}

/// What bring-up learned; replaced on reset.
pub(crate) struct Info {
    pub(crate) identify: Box<IdentifyController>,
    pub(crate) namespaces: Vec<Namespace>,
    pub(crate) granted_queues: u16,
    pub(crate) max_transfer: usize,
}

pub(crate) struct AdminState {
    pub(crate) queue: AdminQueue,
    pub(crate) scratch: DmaRegion,
    /// `qid_used[q]` for I/O queue ids 1..=granted (index 0 unused).
    pub(crate) qid_used: Vec<bool>,
}

pub(crate) struct Shared {
    pub(crate) regs: Arc<dyn RegisterSpace>,
    pub(crate) dma: Arc<DmaAllocator>,
    pub(crate) cap: Cap,
    pub(crate) opts: ControllerOptions,
    pub(crate) admin: Mutex<AdminState>,
    pub(crate) info: RwLock<Info>,
    /// Bumped by reset and shutdown; queue pairs of an older generation are dead.
    pub(crate) generation: AtomicU64,
    shut_down: AtomicBool,
    /// The emulated controller's DMA guard, told what each I/O command was lent.
    #[cfg(any(test, feature = "dma-guard"))]
    pub(crate) guard: std::sync::OnceLock<Arc<crate::emulator::DmaGuard>>,
    /// Keeps the VFIO device and container open as long as the controller lives.
    _owner: Option<Box<dyn Any + Send + Sync>>,
}

impl Shared {
    pub(crate) fn lock_admin(&self) -> MutexGuard<'_, AdminState> {
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn is_current(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation && !self.shut_down.load(Ordering::Acquire)
    }
    pub(crate) fn admin_cmd(&self, admin: &mut AdminState, sqe: Sqe) -> Result<Cqe> {
        admin.queue.execute(&*self.regs, sqe, self.opts.admin_timeout)
    }
    fn csts(&self) -> Csts {
        Csts(self.regs.read32(reg::CSTS as usize))
    }
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cap.timeout_ms().max(500) as u64)
    }
    /// Poll CSTS (with short sleeps: bring-up only) until `done` or CAP.TO passes.
    fn wait_csts(&self, what: &'static str, timeout: Duration, done: impl Fn(Csts) -> bool) -> Result<()> {
        let start = Instant::now();
        loop {
            let csts = self.csts();
            if done(csts) {
                return Ok(());
            }
            if csts.cfs() && what != "RDY=0" {
                return Err(Error::ControllerFatal);
            }
            if start.elapsed() > timeout {
                return Err(Error::ReadyTimeout { what, timeout_ms: timeout.as_millis() as u64, csts: csts.0 });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// A PCIe NVMe controller (real over VFIO, or emulated). `Sync`: share it (e.g. in an `Arc`) and
/// let each thread allocate its own [`IoQpair`].
pub struct Controller {
    pub(crate) shared: Arc<Shared>,
}

impl Controller {
    /// Bring up the controller behind `regs`, using `dma` for queues and buffers.
    pub fn new(regs: Arc<dyn RegisterSpace>, dma: Arc<DmaAllocator>, opts: ControllerOptions) -> Result<Self> {
        Self::with_owner(regs, dma, opts, None)
    }

    /// Bring up an in-process [`EmulatedController`](crate::emulator::EmulatedController).
    pub fn new_emulated(emu: &Arc<crate::emulator::EmulatedController>, opts: ControllerOptions) -> Result<Self> {
        let dma = Arc::new(DmaAllocator::new(emu.mapper(), opts.dma_backing));
        let ctrl = Self::new(emu.clone(), dma, opts)?;
        #[cfg(any(test, feature = "dma-guard"))]
        let _ = ctrl.shared.guard.set(emu.dma_guard().clone());
        Ok(ctrl)
    }

    pub(crate) fn with_owner(
        regs: Arc<dyn RegisterSpace>,
        dma: Arc<DmaAllocator>,
        opts: ControllerOptions,
        owner: Option<Box<dyn Any + Send + Sync>>,
    ) -> Result<Self> {
        let cap = Cap(regs.read64(reg::CAP as usize));
        if cap.min_page_size() > PAGE_SIZE {
            return Err(Error::Device(format!("CAP.MPSMIN {} is above 4 KiB", cap.min_page_size())));
        }
        let entries = opts.admin_queue_entries.clamp(2, 4096).min(cap.max_queue_entries().min(4096) as u16);
        let dstrd = cap.dstrd();
        let sq = SubQueue::new(dma.alloc(entries as usize * 64, PAGE_SIZE)?, entries, doorbell_offset(0, false, dstrd));
        let cq = CompQueue::new(dma.alloc(entries as usize * 16, PAGE_SIZE)?, entries, doorbell_offset(0, true, dstrd));
        let scratch = dma.alloc(PAGE_SIZE, PAGE_SIZE)?;
        let info = Info {
            identify: Box::new(IdentifyController::new_zeroed()),
            namespaces: Vec::new(),
            granted_queues: 0,
            max_transfer: crate::prp::MAX_TRANSFER,
        };
        let shared = Arc::new(Shared {
            regs,
            dma,
            cap,
            opts,
            admin: Mutex::new(AdminState { queue: AdminQueue::new(sq, cq), scratch, qid_used: Vec::new() }),
            info: RwLock::new(info),
            generation: AtomicU64::new(0),
            shut_down: AtomicBool::new(false),
            #[cfg(any(test, feature = "dma-guard"))]
            guard: std::sync::OnceLock::new(),
            _owner: owner,
        });
        let ctrl = Controller { shared };
        ctrl.init()?;
        Ok(ctrl)
    }

    /// Disable, set up the admin queues, enable, identify, negotiate queues.
    fn init(&self) -> Result<()> {
        let s = &*self.shared;
        let mut admin = s.lock_admin();
        self.disable()?;
        admin.queue.reset();
        let entries = admin.queue.sq.entries();
        s.regs.write32(reg::AQA as usize, Aqa::new(entries, entries).0);
        s.regs.write64(reg::ASQ as usize, admin.queue.sq.mem.iova());
        s.regs.write64(reg::ACQ as usize, admin.queue.cq.mem.iova());
        s.regs.write32(reg::CC as usize, Cc::enabled_nvm().0);
        s.wait_csts("RDY=1", s.timeout(), |c| c.rdy())?;
        log::debug!("controller enabled, CAP={:#x}", s.cap.0);

        let scratch_iova = admin.scratch.iova();
        s.admin_cmd(&mut admin, admin::identify_controller(scratch_iova))?;
        let identify: Box<IdentifyController> = Box::new(admin.scratch.read_obj(0));
        let mdts = identify.mdts;
        let mut max_transfer = crate::prp::MAX_TRANSFER - PAGE_SIZE;
        if mdts != 0 && mdts < 20 {
            max_transfer = max_transfer.min(s.cap.min_page_size() << mdts);
        }

        let want = NumberOfQueues { sq: s.opts.io_queues as u32, cq: s.opts.io_queues as u32 };
        let cqe = s.admin_cmd(&mut admin, admin::set_features(fid::NUMBER_OF_QUEUES, want.to_dw()))?;
        let got = NumberOfQueues::from_dw(cqe.dw0.get());
        let granted = got.sq.min(got.cq).min(s.opts.io_queues as u32).min(u16::MAX as u32 - 1) as u16;
        admin.qid_used = vec![false; granted as usize + 1];

        let namespaces = self.scan_namespaces(&mut admin, identify.nn.get())?;
        log::info!(
            "NVMe controller {} ready: {} namespaces, {granted} I/O queues, max transfer {max_transfer} bytes",
            identify.model(),
            namespaces.len()
        );
        *s.info.write().unwrap_or_else(|p| p.into_inner()) =
            Info { identify, namespaces, granted_queues: granted, max_transfer };
        Ok(())
    }

    fn scan_namespaces(&self, admin: &mut AdminState, nn: u32) -> Result<Vec<Namespace>> {
        let s = &*self.shared;
        let iova = admin.scratch.iova();
        let ids: Vec<u32> = match s.admin_cmd(admin, admin::identify(cns::ACTIVE_NS_LIST, 0, iova)) {
            Ok(_) => {
                let list: [u32; 1024] = admin.scratch.read_obj(0);
                list.iter().map(|v| u32::from_le(*v)).take_while(|&id| id != 0).collect()
            }
            // Controllers before NVMe 1.1 lack CNS 2: every namespace up to NN is active.
            Err(Error::Nvme { .. }) => (1..=nn.min(1024)).collect(),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for nsid in ids {
            s.admin_cmd(admin, admin::identify(cns::NAMESPACE, nsid, iova))?;
            let id: IdentifyNamespace = admin.scratch.read_obj(0);
            let block_size = id.block_size();
            if id.nsze.get() == 0 || block_size == 0 {
                log::debug!("namespace {nsid} inactive or unsupported format");
                continue;
            }
            out.push(Namespace { nsid, block_size, blocks: id.nsze.get() });
        }
        Ok(out)
    }

    /// CC.EN = 0 and wait for CSTS.RDY = 0.
    fn disable(&self) -> Result<()> {
        let s = &*self.shared;
        let cc = Cc(s.regs.read32(reg::CC as usize));
        if cc.en() {
            // Clearing EN while RDY is still rising is undefined on some controllers.
            let _ = s.wait_csts("RDY=1", s.timeout(), |c| c.rdy() || c.cfs());
            s.regs.write32(reg::CC as usize, cc.with_en(false).0);
        }
        s.wait_csts("RDY=0", s.timeout(), |c| !c.rdy())
    }

    /// Identify Controller data from bring-up.
    pub fn identify(&self) -> IdentifyController {
        *self.shared.info.read().unwrap_or_else(|p| p.into_inner()).identify
    }
    /// Active namespaces.
    pub fn namespaces(&self) -> Vec<Namespace> {
        self.shared.info.read().unwrap_or_else(|p| p.into_inner()).namespaces.clone()
    }
    pub fn namespace(&self, nsid: u32) -> Option<Namespace> {
        self.namespaces().into_iter().find(|n| n.nsid == nsid)
    }
    /// I/O queue pairs the controller granted.
    pub fn max_io_qpairs(&self) -> u16 {
        self.shared.info.read().unwrap_or_else(|p| p.into_inner()).granted_queues
    }
    /// Largest data transfer of one command, from MDTS and the PRP list size.
    pub fn max_transfer_bytes(&self) -> usize {
        self.shared.info.read().unwrap_or_else(|p| p.into_inner()).max_transfer
    }
    pub fn cap(&self) -> Cap {
        self.shared.cap
    }
    /// The allocator for DMA buffers usable with this controller's queue pairs.
    pub fn dma(&self) -> &Arc<DmaAllocator> {
        &self.shared.dma
    }
    /// Whether CSTS.CFS is set: the controller needs [`Controller::reset`].
    pub fn is_fatal(&self) -> bool {
        self.shared.csts().cfs()
    }

    /// Allocate an I/O queue pair with the default number of entries.
    pub fn alloc_io_qpair(&self) -> Result<IoQpair> {
        self.alloc_io_qpair_with(self.shared.opts.io_queue_entries)
    }

    /// Allocate an I/O queue pair of `entries` entries (capped by CAP.MQES; one fewer can be
    /// outstanding).
    pub fn alloc_io_qpair_with(&self, entries: u16) -> Result<IoQpair> {
        let s = &self.shared;
        let entries = entries.clamp(2, s.cap.max_queue_entries().min(u16::MAX as u32) as u16);
        let mut admin = s.lock_admin();
        let generation = s.generation.load(Ordering::Acquire);
        if !s.is_current(generation) {
            return Err(Error::QpairInvalidated);
        }
        let granted = admin.qid_used.len().saturating_sub(1) as u16;
        let qid =
            (1..admin.qid_used.len()).find(|&q| !admin.qid_used[q]).ok_or(Error::NoQueuesLeft { granted })? as u16;
        let cq_mem = s.dma.alloc(entries as usize * 16, PAGE_SIZE)?;
        let sq_mem = s.dma.alloc(entries as usize * 64, PAGE_SIZE)?;
        let prp_lists = s.dma.alloc((entries as usize - 1) * PAGE_SIZE, PAGE_SIZE)?;
        s.admin_cmd(&mut admin, admin::create_io_cq(qid, entries, cq_mem.iova()))?;
        if let Err(e) = s.admin_cmd(&mut admin, admin::create_io_sq(qid, entries, sq_mem.iova(), qid)) {
            let _ = s.admin_cmd(&mut admin, admin::delete_io_cq(qid));
            return Err(e);
        }
        admin.qid_used[qid as usize] = true;
        drop(admin);
        let dstrd = s.cap.dstrd();
        let sq = SubQueue::new(sq_mem, entries, doorbell_offset(qid, false, dstrd));
        let cq = CompQueue::new(cq_mem, entries, doorbell_offset(qid, true, dstrd));
        let info = s.info.read().unwrap_or_else(|p| p.into_inner());
        let ns = info.namespaces.iter().map(|n| (n.nsid, n.block_size)).collect();
        let max_transfer = info.max_transfer;
        drop(info);
        log::debug!("created I/O queue pair {qid} with {entries} entries");
        Ok(IoQpair::new(s.clone(), generation, qid, sq, cq, prp_lists, ns, max_transfer))
    }

    /// Run an admin command (passthrough), with optional data buffer of at most two pages.
    pub fn admin_command(&self, mut sqe: Sqe, data: Option<&DmaRegion>) -> Result<Cqe> {
        let s = &self.shared;
        let mut admin = s.lock_admin();
        if let Some(buf) = data {
            // The scratch page serves other admin commands too: clear every entry past ours.
            let mut stale = crate::prp::LIST_ENTRIES;
            let (p1, p2) = crate::prp::build(buf, 0, buf.len(), &admin.scratch, &mut stale)?;
            sqe.set_prps(p1, p2);
        }
        s.admin_cmd(&mut admin, sqe)
    }

    /// Get Log Page: SMART / Health Information.
    pub fn smart_log(&self) -> Result<SmartLog> {
        let s = &self.shared;
        let mut admin = s.lock_admin();
        let iova = admin.scratch.iova();
        s.admin_cmd(&mut admin, admin::get_log_page(lid::SMART, 512, iova))?;
        Ok(admin.scratch.read_obj(0))
    }

    /// Get Log Page: the first `n` (at most 64) Error Information entries.
    pub fn error_log(&self, n: usize) -> Result<Vec<ErrorLogEntry>> {
        let n = n.clamp(1, PAGE_SIZE / 64);
        let s = &self.shared;
        let mut admin = s.lock_admin();
        let iova = admin.scratch.iova();
        s.admin_cmd(&mut admin, admin::get_log_page(lid::ERROR, (n * 64) as u32, iova))?;
        Ok((0..n).map(|i| admin.scratch.read_obj::<ErrorLogEntry>(i * 64)).collect())
    }

    /// Reset the controller (e.g. after CSTS.CFS): disable, re-create the admin queues, enable and
    /// identify again. Existing queue pairs report [`Error::QpairInvalidated`]; allocate new ones.
    pub fn reset(&self) -> Result<()> {
        log::warn!("resetting NVMe controller");
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        self.init()?;
        self.shared.shut_down.store(false, Ordering::Release);
        Ok(())
    }

    /// Normal shutdown (CC.SHN = 01b, wait for CSTS.SHST = complete). Also done on drop.
    pub fn shutdown(&self) -> Result<()> {
        let s = &*self.shared;
        let _admin = s.lock_admin();
        if s.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        s.generation.fetch_add(1, Ordering::AcqRel);
        if s.csts().cfs() {
            return Err(Error::ControllerFatal);
        }
        let cc = Cc(s.regs.read32(reg::CC as usize));
        s.regs.write32(reg::CC as usize, cc.with_shn(shn::NORMAL).0);
        let rtd3e = Duration::from_micros(self.identify().rtd3e.get() as u64);
        s.wait_csts("SHST=complete", rtd3e.max(s.timeout()), |c| c.shst() == shst::COMPLETE)?;
        log::debug!("controller shut down");
        Ok(())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::warn!("NVMe controller shutdown: {e}");
        }
    }
}
