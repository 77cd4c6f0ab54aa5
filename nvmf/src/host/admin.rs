//! The admin queue: [`Controller`].

use super::error::{HostError, Result};
use super::io::IoQueue;
use super::pdu::{self, ADMIN_QUEUE_SIZE};
use super::queue::{check, Queue};
use super::HostConfig;
use crate::spec::discovery::{DiscoveryLogEntry, DiscoveryLogHeader};
use crate::spec::fabrics::{PropertyCmd, CNTLID_DYNAMIC, DISCOVERY_NQN};
use crate::spec::identify::identify_cdw10;
use crate::spec::{
    cns, lid, reg, shn, shst, AdminOpcode, Cap, Cc, Cqe, Csts, FabricsType, GetLogPageArgs, IdentifyController,
    IdentifyNamespace, Sqe, Vs,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use zerocopy::{FromBytes, IntoBytes};

/// In-capsule data the host uses on the admin queue (like Linux's NVME_TCP_ADMIN_CCSZ).
pub const ADMIN_IN_CAPSULE: usize = 8192;
/// Most discovery log records [`Controller::discovery_log`] reads.
const MAX_DISCOVERY_RECORDS: u64 = 1024;

/// A connected, enabled controller: the admin queue's connection and what Connect returned.
pub struct Controller {
    q: Queue,
    addr: SocketAddr,
    subnqn: String,
    cfg: HostConfig,
    cntlid: u16,
    cap: Cap,
    vs: Vs,
    /// In-capsule bytes for I/O queues (IOCCSZ * 16 - 64), once Identify Controller has run.
    io_in_capsule: Option<usize>,
}

fn admin_sqe(opcode: AdminOpcode, nsid: u32) -> Sqe {
    let mut sqe = Sqe { opcode: opcode as u8, ..Default::default() };
    sqe.nsid.set(nsid);
    sqe
}

/// Wait between register polls: 1 ms, doubling up to 32 ms.
fn backoff(step: &mut u32) {
    std::thread::sleep(Duration::from_millis(1 << (*step).min(5)));
    *step += 1;
}

impl Controller {
    /// Connect the admin queue of `subnqn` at `addr` and enable the controller: ICReq/ICResp,
    /// Fabrics Connect (QID 0, dynamic controller ID, KATO from `cfg`), Property Get CAP and VS,
    /// Property Set CC (EN, IOSQES 6, IOCQES 4), then CSTS.RDY polled for up to CAP.TO. The
    /// discovery subsystem is enabled the same way.
    pub fn connect(addr: SocketAddr, subnqn: &str, cfg: &HostConfig) -> Result<Controller> {
        let mut q = Queue::open(addr, 0, CNTLID_DYNAMIC, ADMIN_QUEUE_SIZE as usize - 1, ADMIN_IN_CAPSULE, cfg)?;
        let cqe = connect_queue(&mut q, 0, ADMIN_QUEUE_SIZE - 1, cfg.kato_ms, CNTLID_DYNAMIC, subnqn, cfg)?;
        let cntlid = cqe.dw0.get() as u16;
        log::debug!("connected to {subnqn} at {addr}: controller {cntlid}");
        let mut c = Controller {
            q,
            addr,
            subnqn: subnqn.to_string(),
            cfg: cfg.clone(),
            cntlid,
            cap: Cap(0),
            vs: Vs(0),
            io_in_capsule: None,
        };
        c.enable()?;
        Ok(c)
    }

    fn enable(&mut self) -> Result<()> {
        self.cap = Cap(self.property_get(reg::CAP, true)?);
        self.vs = Vs(self.property_get(reg::VS, false)? as u32);
        let cc = Cc::enabled_nvm();
        self.property_set(reg::CC, false, cc.0 as u64)?;
        let limit = Duration::from_millis(self.cap.timeout_ms().max(1000) as u64);
        self.wait_csts(limit, |csts| csts.rdy(), "CSTS.RDY")
    }

    /// Poll CSTS until `done` holds (`HostError::Timeout` after `limit`; CSTS.CFS is an error).
    pub fn wait_csts(&mut self, limit: Duration, done: impl Fn(Csts) -> bool, what: &str) -> Result<()> {
        let start = Instant::now();
        let mut step = 0;
        loop {
            let csts = Csts(self.property_get(reg::CSTS, false)? as u32);
            if done(csts) {
                return Ok(());
            }
            if csts.cfs() {
                return Err(HostError::Protocol(format!("controller fatal status waiting for {what}")));
            }
            if start.elapsed() >= limit {
                log::warn!("{what} not reached within {limit:?} (CSTS {:#x})", csts.0);
                return Err(HostError::Timeout);
            }
            backoff(&mut step);
        }
    }

    /// Controller ID the target assigned.
    pub fn cntlid(&self) -> u16 {
        self.cntlid
    }
    /// CAP as read during connect.
    pub fn cap(&self) -> Cap {
        self.cap
    }
    /// VS as read during connect.
    pub fn vs(&self) -> Vs {
        self.vs
    }
    pub fn subnqn(&self) -> &str {
        &self.subnqn
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn config(&self) -> &HostConfig {
        &self.cfg
    }
    pub fn is_discovery(&self) -> bool {
        self.subnqn == DISCOVERY_NQN
    }
    /// CPDA and MAXH2CDATA from the ICResp.
    pub fn icresp_params(&self) -> (u8, u32) {
        self.q.icresp_params()
    }

    /// Fabrics Property Get: a 4- or 8-byte property at `offset`.
    pub fn property_get(&mut self, offset: u32, eight_bytes: bool) -> Result<u64> {
        let mut sqe = pdu::fabrics_sqe(FabricsType::PropertyGet);
        PropertyCmd { eight_bytes, offset, value: 0 }.write(&mut sqe);
        let cqe = self.q.execute_ok(sqe, None, None)?;
        let v = cqe.dw0.get() as u64 | if eight_bytes { (cqe.dw1.get() as u64) << 32 } else { 0 };
        Ok(v)
    }

    /// Fabrics Property Set.
    pub fn property_set(&mut self, offset: u32, eight_bytes: bool, value: u64) -> Result<()> {
        let mut sqe = pdu::fabrics_sqe(FabricsType::PropertySet);
        PropertyCmd { eight_bytes, offset, value }.write(&mut sqe);
        self.q.execute_ok(sqe, None, None).map(|_| ())
    }

    /// Any admin (or fabrics) command. CID, PSDT and SGL1 are filled in; `data_out` goes
    /// in-capsule up to 8 KiB, otherwise by R2T. Returns the CQE whatever its status.
    pub fn admin_raw(&mut self, sqe: Sqe, data_out: Option<&[u8]>, data_in: Option<&mut [u8]>) -> Result<Cqe> {
        self.q.execute(sqe, data_out, data_in)
    }

    fn identify_raw(&mut self, cns: u8, nsid: u32) -> Result<[u8; 4096]> {
        let mut sqe = admin_sqe(AdminOpcode::Identify, nsid);
        sqe.cdw10.set(identify_cdw10(cns, 0));
        let mut buf = [0u8; 4096];
        self.q.execute_ok(sqe, None, Some(&mut buf))?;
        Ok(buf)
    }

    /// Identify Controller (CNS 01h). Also records IOCCSZ for the I/O queues' in-capsule size.
    pub fn identify_controller(&mut self) -> Result<IdentifyController> {
        let raw = self.identify_raw(cns::CONTROLLER, 0)?;
        let id = IdentifyController::read_from_bytes(&raw[..])
            .map_err(|_| HostError::Protocol("identify controller size".into()))?;
        self.io_in_capsule = Some((id.ioccsz.get() as usize * 16).saturating_sub(64));
        Ok(id)
    }

    /// Identify Namespace (CNS 00h).
    pub fn identify_namespace(&mut self, nsid: u32) -> Result<IdentifyNamespace> {
        let raw = self.identify_raw(cns::NAMESPACE, nsid)?;
        IdentifyNamespace::read_from_bytes(&raw[..]).map_err(|_| HostError::Protocol("identify namespace size".into()))
    }

    /// Active namespace IDs (CNS 02h), all of them (several lists when there are more than 1024).
    pub fn active_namespaces(&mut self) -> Result<Vec<u32>> {
        let mut all = Vec::new();
        let mut start = 0u32;
        loop {
            let raw = self.identify_raw(cns::ACTIVE_NS_LIST, start)?;
            let ids: Vec<u32> = raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .take_while(|&id| id != 0)
                .collect();
            let full = ids.len() == 1024;
            for &id in &ids {
                if id <= start || id >= 0xffff_fffe {
                    return Err(HostError::Protocol(format!("active namespace list: NSID {id} after {start}")));
                }
                start = id;
                all.push(id);
            }
            if !full {
                return Ok(all);
            }
        }
    }

    /// Namespace Identification Descriptor list (CNS 03h), the raw 4096 bytes.
    pub fn ns_descriptors(&mut self, nsid: u32) -> Result<Vec<u8>> {
        Ok(self.identify_raw(cns::NS_DESCRIPTOR_LIST, nsid)?.to_vec())
    }

    /// Get Log Page: `len` bytes (a multiple of 4) of log `lid` from byte `offset`.
    pub fn get_log_page(&mut self, lid: u8, nsid: u32, len: usize, offset: u64) -> Result<Vec<u8>> {
        if len == 0 || len & 3 != 0 || len > super::MAX_TRANSFER || offset & 3 != 0 {
            return Err(HostError::InvalidArgument(format!("log page length {len} / offset {offset}")));
        }
        let mut sqe = admin_sqe(AdminOpcode::GetLogPage, nsid);
        GetLogPageArgs::new(lid, len as u32, offset).apply_to(&mut sqe);
        let mut buf = vec![0u8; len];
        self.q.execute_ok(sqe, None, Some(&mut buf))?;
        Ok(buf)
    }

    /// The whole discovery log: the header, then the entries, then the header again; starts over
    /// (a few times) when GENCTR changed in between.
    pub fn discovery_log(&mut self) -> Result<(u64, Vec<DiscoveryLogEntry>)> {
        const HDR: usize = core::mem::size_of::<DiscoveryLogHeader>();
        const ENTRY: usize = core::mem::size_of::<DiscoveryLogEntry>();
        let header = |b: &[u8]| {
            DiscoveryLogHeader::read_from_bytes(b).map_err(|_| HostError::Protocol("discovery log header".into()))
        };
        for _ in 0..10 {
            let h = header(&self.get_log_page(lid::DISCOVERY, 0, HDR, 0)?)?;
            let numrec = h.numrec.get();
            if numrec > MAX_DISCOVERY_RECORDS {
                return Err(HostError::Protocol(format!("discovery log with {numrec} records")));
            }
            let mut entries = Vec::with_capacity(numrec as usize);
            if numrec > 0 {
                let raw = self.get_log_page(lid::DISCOVERY, 0, numrec as usize * ENTRY, HDR as u64)?;
                for e in raw.chunks_exact(ENTRY) {
                    entries.push(
                        DiscoveryLogEntry::read_from_bytes(e)
                            .map_err(|_| HostError::Protocol("discovery log entry".into()))?,
                    );
                }
            }
            let again = header(&self.get_log_page(lid::DISCOVERY, 0, HDR, 0)?)?;
            if again.genctr.get() == h.genctr.get() {
                return Ok((h.genctr.get(), entries));
            }
            log::debug!("discovery log changed while reading (GENCTR {} -> {})", h.genctr.get(), again.genctr.get());
        }
        Err(HostError::Protocol("discovery log keeps changing".into()))
    }

    /// Get Features (current value): returns CQE DW0.
    pub fn get_features(&mut self, fid: u8, cdw11: u32) -> Result<u32> {
        let mut sqe = admin_sqe(AdminOpcode::GetFeatures, 0);
        sqe.cdw10.set(fid as u32);
        sqe.cdw11.set(cdw11);
        Ok(self.q.execute_ok(sqe, None, None)?.dw0.get())
    }

    /// Set Features (not saved): returns CQE DW0.
    pub fn set_features(&mut self, fid: u8, cdw11: u32) -> Result<u32> {
        let mut sqe = admin_sqe(AdminOpcode::SetFeatures, 0);
        sqe.cdw10.set(fid as u32);
        sqe.cdw11.set(cdw11);
        Ok(self.q.execute_ok(sqe, None, None)?.dw0.get())
    }

    /// Keep Alive.
    pub fn keep_alive(&mut self) -> Result<()> {
        self.q.execute_ok(admin_sqe(AdminOpcode::KeepAlive, 0), None, None).map(|_| ())
    }

    /// Connect I/O queue `qid` on a new TCP connection: ICReq with the same digests, Connect
    /// with this controller's CNTLID, the same HOSTID/HOSTNQN and SQSIZE `queue_size - 1`.
    /// Runs Identify Controller first if it has not run yet (for IOCCSZ).
    pub fn connect_io_queue(&mut self, qid: u16) -> Result<IoQueue> {
        let icd = match self.io_in_capsule {
            Some(n) => n,
            None if self.is_discovery() => 0,
            None => {
                self.identify_controller()?;
                self.io_in_capsule.unwrap_or(0)
            }
        };
        IoQueue::connect(self.addr, &self.subnqn, self.cntlid, qid, &self.cfg, icd)
    }

    /// Normal shutdown: CC.SHN = 01b, then wait (up to the I/O timeout) for CSTS.SHST = 10b.
    pub fn shutdown(&mut self) -> Result<()> {
        let cc = Cc(self.property_get(reg::CC, false)? as u32).with_shn(shn::NORMAL);
        self.property_set(reg::CC, false, cc.0 as u64)?;
        let limit = self.cfg.io_timeout;
        self.wait_csts(limit, |c| c.shst() == shst::COMPLETE, "CSTS.SHST complete")
    }

    /// Close the admin queue's connection (the target then tears the controller down). Call
    /// [`Controller::shutdown`] first for an orderly shutdown.
    pub fn disconnect(mut self) -> Result<()> {
        let r = self.q.flush();
        self.q.close();
        r
    }
}

/// Send a Connect on the fresh queue `q` and wait for its answer; an error status becomes
/// `HostError::Status`. The Connect data always goes in-capsule.
pub(crate) fn connect_queue(
    q: &mut Queue,
    qid: u16,
    sqsize: u16,
    kato_ms: u32,
    cntlid: u16,
    subnqn: &str,
    cfg: &HostConfig,
) -> Result<Cqe> {
    let data = pdu::connect_data(&cfg.hostid, cntlid, subnqn, &cfg.hostnqn);
    let icd = q.icd_max();
    q.set_icd_max(icd.max(data.as_bytes().len()));
    let r = q.execute(pdu::connect_sqe(qid, sqsize, kato_ms), Some(data.as_bytes()), None);
    q.set_icd_max(icd);
    let cqe = r?;
    if !cqe.is_success() {
        log::debug!("Connect QID {qid} to {subnqn} failed: {:?} dw0 {:#x}", cqe.status(), cqe.dw0.get());
    }
    let cqe = check(cqe)?;
    // In-band authentication when the controller asks for it (AUTHREQ.ATR), or when we want to
    // authenticate the controller.
    if cqe.dw0.get() & crate::auth::messages::CONNECT_AUTHREQ_ATR != 0 || cfg.dhchap_ctrl_secret.is_some() {
        super::auth::authenticate(q, qid, subnqn, cfg)?;
    }
    Ok(cqe)
}
