//! The RDMA part of a poll group. Per device its connections arrive on: one protection domain,
//! one completion queue and one shared receive queue for all connections, and one registered
//! arena holding the SRQ's receive buffers and the data staging units. CM events of the
//! group's connections come on the group's own event channel (ids are migrated to it), so
//! disconnects and device removal are seen by the thread that owns the connection.
//!
//! Direct mode: the first time a connection moves data in a DMA buffer lent by an NVMe bdev
//! channel, that channel's whole buffer pool is registered on the device's PD (once; the
//! registration goes when the pool is no longer used), so RDMA READ/WRITE work on the same
//! memory the NVMe device does.

use super::cm::RdmaNewConn;
use super::conn::{ConnLimits, ConnResources, ConnState, LocalMem, RdmaConn, SendQueue, UnitPool};
use super::private;
use super::verbs::{self, Arena, CmEventKind, CmId, Cq, Device, DmaMr, EventChannel, Pd, QpCaps, Srq, Wc};
use super::wr::{split_send_wr_id, Wr, SQE_SIZE, WR_SEND};
use super::RdmaTransportOpts;
use crate::bdev::BdevCompletion;
use crate::poll_group::GroupCtx;
use crate::transport::{TransportAddr, TransportConn, TransportPollGroup, TransportType};
use std::collections::HashMap;
use zerocopy::IntoBytes;

/// Completions taken per CQ per poll.
const CQ_BUDGET: usize = 128;

/// The QP of a connection, as conn.rs sees it.
struct Qp(CmId);

impl SendQueue for Qp {
    fn post(&mut self, wr_id: u64, wr: &Wr<'_>) -> bool {
        match self.0.post_send(wr_id, wr) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("ibv_post_send: {e}");
                false
            }
        }
    }
    fn disconnect(&mut self) {
        self.0.disconnect();
    }
}

/// A device's registered memory as a connection sees it during one call: the arena, and the
/// registrations of NVMe DMA buffer pools (made on first use).
struct DevMem<'a> {
    arena: &'a mut Arena,
    dma_mrs: &'a mut Vec<PoolReg>,
    pd: &'a Pd,
}

/// An NVMe DMA pool's registration on a device, or the failure to register it; both keep the
/// pool alive (so its id cannot be reused by another pool) until it is reaped.
enum PoolReg {
    Registered(DmaMr),
    Failed(nvme_driver::DmaPool),
}

impl PoolReg {
    fn pool(&self) -> &nvme_driver::DmaPool {
        match self {
            PoolReg::Registered(mr) => mr.pool(),
            PoolReg::Failed(pool) => pool,
        }
    }
    fn lkey(&self) -> Option<u32> {
        match self {
            PoolReg::Registered(mr) => Some(mr.lkey()),
            PoolReg::Failed(_) => None,
        }
    }
}

impl LocalMem for DevMem<'_> {
    fn addr(&self, off: usize) -> u64 {
        self.arena.addr(off)
    }
    fn lkey(&self) -> u32 {
        self.arena.lkey()
    }
    fn read(&self, off: usize, dst: &mut [u8]) {
        self.arena.read(off, dst)
    }
    fn write(&mut self, off: usize, src: &[u8]) {
        self.arena.write(off, src)
    }
    fn dma_lkey(&mut self, buf: &nvme_driver::PoolBuf) -> Option<u32> {
        let id = buf.pool_id();
        if let Some(reg) = self.dma_mrs.iter().find(|r| r.pool().id() == id) {
            return reg.lkey();
        }
        // Once per pool and device; a failure is remembered (that pool's I/O is staged).
        let reg = match DmaMr::new(self.pd, buf.pool()) {
            Ok(mr) => {
                let (va, len) = mr.pool().span();
                log::info!("rdma: registered NVMe DMA buffer pool at {va:#x} ({len} bytes) for direct data transfers");
                PoolReg::Registered(mr)
            }
            Err(e) => {
                log::warn!("rdma: {e}; data of that pool goes through staging buffers");
                PoolReg::Failed(buf.pool())
            }
        };
        let lkey = reg.lkey();
        self.dma_mrs.push(reg);
        lkey
    }
}

/// Resources of one device in this poll group. Field order is drop order: memory and SRQ
/// before the CQ, all before the PD.
struct DeviceResources {
    /// NVMe DMA buffer pools seen (registered, or failed to register).
    dma_mrs: Vec<PoolReg>,
    arena: Arena,
    srq: Srq,
    cq: Cq,
    pd: Pd,
    dev: Device,
    units: UnitPool,
    recv_size: usize,
    recv_count: usize,
    max_send_wr: u32,
    max_rd_atom: u8,
    max_init_rd_atom: u8,
}

impl DeviceResources {
    fn new(dev: Device, opts: &RdmaTransportOpts) -> std::io::Result<DeviceResources> {
        let attrs = dev.attrs()?;
        let pd = Pd::new(dev)?;
        let cq = Cq::new(dev, opts.cq_size.min(attrs.max_cqe))?;
        let recv_count = (opts.max_srq_depth.min(attrs.max_srq_wr.max(1))) as usize;
        let srq = Srq::new(&pd, recv_count as u32)?;
        let recv_size = SQE_SIZE + opts.in_capsule_data_size as usize;
        let unit = opts.io_unit_size.max(4096) as usize;
        let recv_bytes = (recv_count * recv_size).next_multiple_of(4096);
        let arena = Arena::new(&pd, recv_bytes + unit * opts.num_shared_buffers.max(1) as usize, false)?;
        let units = UnitPool::new(recv_bytes, unit, opts.num_shared_buffers.max(1) as usize);
        // Every queue entry may have its response SEND and the data units it holds posted.
        let max_send_wr = (opts.max_queue_depth as u32 + opts.num_shared_buffers).min(attrs.max_qp_wr);
        let d = DeviceResources {
            dma_mrs: Vec::new(),
            arena,
            srq,
            cq,
            pd,
            dev,
            units,
            recv_size,
            recv_count,
            max_send_wr,
            max_rd_atom: attrs.max_qp_rd_atom,
            max_init_rd_atom: attrs.max_qp_init_rd_atom,
        };
        for i in 0..recv_count {
            d.post_recv(i)?;
        }
        Ok(d)
    }

    /// Forget registrations of pools nobody else uses any more (their channel was closed and
    /// every buffer came back): the memory can go.
    fn reap_dma_mrs(&mut self) {
        self.dma_mrs.retain(|r| !r.pool().is_last_handle());
    }

    fn post_recv(&self, i: usize) -> std::io::Result<()> {
        let off = i * self.recv_size;
        self.srq.post_recv(i as u64, self.arena.addr(off), self.recv_size as u32, self.arena.lkey())
    }
}

pub(crate) struct RdmaPollGroup {
    opts: RdmaTransportOpts,
    // Field order is drop order: connections (QPs, ids) before the device resources and the
    // event channel they use.
    conns: Vec<Option<RdmaConn>>,
    devs: Vec<DeviceResources>,
    ch: Option<EventChannel>,
    free: Vec<u32>,
    live: usize,
    by_qpn: HashMap<u32, u32>,
    wcs: Vec<Wc>,
}

impl RdmaPollGroup {
    pub fn new(opts: RdmaTransportOpts) -> Self {
        RdmaPollGroup {
            opts,
            conns: Vec::new(),
            devs: Vec::new(),
            ch: None,
            free: Vec::new(),
            live: 0,
            by_qpn: HashMap::new(),
            wcs: Vec::with_capacity(CQ_BUDGET),
        }
    }

    fn dev_index(&mut self, dev: Device) -> std::io::Result<usize> {
        if let Some(i) = self.devs.iter().position(|d| d.dev == dev) {
            return Ok(i);
        }
        self.devs.push(DeviceResources::new(dev, &self.opts)?);
        Ok(self.devs.len() - 1)
    }

    /// Set up the QP and accept; Err(reject status) when it cannot be.
    fn setup(&mut self, nc: &mut RdmaNewConn) -> Result<(usize, u32), (u16, String)> {
        let no_rsc = |e: std::io::Error| (private::reject_status::NO_RESOURCES, e.to_string());
        if self.ch.is_none() {
            self.ch = Some(EventChannel::new(false).map_err(no_rsc)?);
        }
        let dev = nc
            .id
            .device()
            .ok_or((private::reject_status::NO_RESOURCES, "connect request without a device".to_string()))?;
        let di = self.dev_index(dev).map_err(no_rsc)?;
        let d = &self.devs[di];
        let caps = QpCaps { max_send_wr: d.max_send_wr, max_recv_wr: 0, max_inline: 64 };
        let qpn = nc.id.create_qp(&d.pd, &d.cq, Some(&d.srq), caps).map_err(no_rsc)?;
        if let Some(ch) = self.ch.as_ref() {
            nc.id.migrate(ch).map_err(no_rsc)?;
        }
        let acc = private::accept(nc.req.sq_size);
        // Responder resources: how many RDMA READs we accept from the host (none are needed:
        // the host never reads our memory); initiator depth: READs we issue at once.
        let init_depth = nc.responder_resources.min(d.max_init_rd_atom).max(1);
        let resp_res = nc.initiator_depth.min(d.max_rd_atom);
        nc.id.accept(acc.as_bytes(), resp_res, init_depth).map_err(no_rsc)?;
        Ok((di, qpn))
    }

    /// Run `f` with device `di`'s registered memory and staging units.
    fn with_res<R>(devs: &mut [DeviceResources], di: usize, f: impl FnOnce(&mut ConnResources<'_>) -> R) -> Option<R> {
        let d = devs.get_mut(di)?;
        let mut mem = DevMem { arena: &mut d.arena, dma_mrs: &mut d.dma_mrs, pd: &d.pd };
        let mut res = ConnResources { mem: &mut mem, units: &mut d.units };
        Some(f(&mut res))
    }
}

impl TransportPollGroup for RdmaPollGroup {
    fn trtype(&self) -> TransportType {
        TransportType::Rdma
    }

    fn add(&mut self, conn: Box<dyn TransportConn>, listener: TransportAddr, _ctx: &mut GroupCtx) {
        let Ok(nc) = conn.into_any().downcast::<RdmaNewConn>() else {
            log::error!("not an RDMA connection");
            return;
        };
        let mut nc = *nc;
        let (di, qpn) = match self.setup(&mut nc) {
            Ok(v) => v,
            Err((sts, why)) => {
                log::warn!("rdma connection {}: cannot accept ({why}); rejecting", nc.peer);
                nc.id.reject(private::reject(sts).as_bytes());
                return;
            }
        };
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                (self.conns.len() - 1) as u32
            }
        };
        log::debug!(
            "rdma connection {} (qid {}, depth {}) added to poll group (slot {idx})",
            nc.peer,
            nc.req.qid,
            nc.req.sq_size
        );
        let limits = ConnLimits { max_io: self.opts.max_io_size, icd_max: self.opts.in_capsule_data_size as usize };
        let key = nc.id.key();
        let c = RdmaConn::new(idx, nc.peer, Box::new(Qp(nc.id)), di, qpn, key, listener, limits);
        self.by_qpn.insert(qpn, idx);
        self.conns[idx as usize] = Some(c);
        self.live += 1;
    }

    fn poll(&mut self, ctx: &mut GroupCtx) -> usize {
        let mut work = 0;
        // CM events: disconnects and device removal close only that connection.
        if let Some(ch) = self.ch.as_ref() {
            while let Some(ev) = ch.get() {
                work += 1;
                let Some(c) = self.conns.iter_mut().flatten().find(|c| c.cm_key == ev.id) else { continue };
                match ev.kind {
                    CmEventKind::Established => log::debug!("rdma connection {} established", c.peer),
                    CmEventKind::Disconnected => c.fail("host disconnected (CM)"),
                    CmEventKind::DeviceRemoval => c.fail("RDMA device removed"),
                    CmEventKind::TimewaitExit => {}
                    other => {
                        log::warn!("rdma connection {}: CM event {other:?} (status {})", c.peer, ev.status);
                        c.fail("CM error event");
                    }
                }
            }
        }
        // Completions.
        for di in 0..self.devs.len() {
            self.wcs.clear();
            let mut wcs = std::mem::take(&mut self.wcs);
            loop {
                let room = CQ_BUDGET - wcs.len();
                if room == 0 || self.devs[di].cq.poll(&mut wcs, room) == 0 {
                    break;
                }
            }
            work += wcs.len();
            for wc in wcs.iter() {
                if wc.wr_id & WR_SEND == 0 {
                    let recv = wc.wr_id as usize;
                    if wc.ok {
                        if let Some(&ci) = self.by_qpn.get(&wc.qp_num) {
                            if let Some(Some(c)) = self.conns.get_mut(ci as usize) {
                                let off = recv * self.devs[di].recv_size;
                                Self::with_res(&mut self.devs, di, |res| {
                                    c.on_recv(off, wc.byte_len as usize, ctx, res)
                                });
                            }
                        }
                    } else if !wc.flushed {
                        log::warn!("rdma receive failed: {}", verbs::wc_status_str(wc.status));
                    }
                    let d = &mut self.devs[di];
                    if recv < d.recv_count {
                        if let Err(e) = d.post_recv(recv) {
                            log::error!("re-posting an SRQ receive: {e}");
                        }
                    }
                } else {
                    let (ci, slot) = split_send_wr_id(wc.wr_id);
                    // The QP number guards against a late completion of a connection that was
                    // given up (FLUSH_TIMEOUT) and whose index now belongs to a new one.
                    if let Some(Some(c)) =
                        self.conns.get_mut(ci as usize).filter(|c| c.as_ref().is_some_and(|c| c.qp_num == wc.qp_num))
                    {
                        if !wc.ok && !wc.flushed {
                            log::warn!(
                                "rdma connection {}: work request failed: {}",
                                c.peer,
                                verbs::wc_status_str(wc.status)
                            );
                        }
                        Self::with_res(&mut self.devs, c.dev, |res| c.on_send_done(slot, wc.ok, ctx, res));
                    }
                }
            }
            self.wcs = wcs;
        }
        // Per-connection work; drained connections go.
        let mut dead = Vec::new();
        for (i, slot) in self.conns.iter_mut().enumerate() {
            let Some(c) = slot.as_mut() else { continue };
            work += Self::with_res(&mut self.devs, c.dev, |res| {
                let mut work = 0;
                if c.state == ConnState::Ready {
                    work += c.retry_waiting(ctx, res);
                    work += c.poll_events(ctx, res);
                }
                if c.state == ConnState::Closing {
                    c.close(ctx, res);
                    work += 1;
                }
                if ctx.tick && c.abandon_stuck_work_requests(ctx, res) {
                    work += 1;
                }
                work
            })
            .unwrap_or(0);
            if c.is_drained() {
                dead.push(i);
            }
        }
        if ctx.tick {
            for d in self.devs.iter_mut() {
                d.reap_dma_mrs();
            }
        }
        for i in dead {
            if let Some(c) = self.conns[i].take() {
                self.by_qpn.remove(&c.qp_num);
                log::debug!("rdma connection {} removed ({})", c.peer, c.close_reason);
                self.free.push(i as u32);
                self.live -= 1;
            }
        }
        work
    }

    fn bdev_complete(&mut self, conn: u32, slot: u16, done: BdevCompletion, ctx: &mut GroupCtx) {
        match self.conns.get_mut(conn as usize) {
            Some(Some(c)) => {
                Self::with_res(&mut self.devs, c.dev, |res| c.bdev_complete(slot, done, ctx, res));
            }
            _ => {
                if let Some(b) = done.buf {
                    ctx.bufs.put(b);
                }
            }
        }
    }

    fn num_connections(&self) -> usize {
        self.live
    }

    fn close_all(&mut self) {
        for c in self.conns.iter_mut().flatten() {
            c.fail("target shutting down");
        }
    }
}
