//! The only unsafe code of the RDMA transport: small owning wrappers over librdmacm
//! (`rdma_cm_id`, event channel) and libibverbs (PD, CQ, SRQ, registered memory, posting work
//! requests). Everything above this file is safe Rust and sees plain values (`Wc`, `CmEvent`,
//! `Wr`), so the request logic can be driven by a fake in unit tests.
//!
//! Ownership: each wrapper frees its object on drop. Callers drop QPs (inside `CmId`) before
//! the CQ/SRQ/PD/memory they use; the poll group's field order guarantees that.

use super::wr::Wr;
use rdma_sys::*;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ptr;

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn check(rc: i32, what: &str) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(os_err(what))
    }
}

/// Number of RDMA devices libibverbs sees (0 on a machine without RDMA hardware or soft-RoCE).
pub(crate) fn device_count() -> usize {
    let mut n: i32 = 0;
    // SAFETY: ibv_get_device_list only writes `n`; the list it returns (or NULL) is freed at once
    // and never dereferenced.
    unsafe {
        let list = ibv_get_device_list(&mut n);
        if list.is_null() {
            return 0;
        }
        ibv_free_device_list(list);
    }
    n.max(0) as usize
}

fn to_storage(addr: &SocketAddr) -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned at least as sockaddr_in.
            unsafe { ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned at least as sockaddr_in6.
            unsafe { ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
        }
    }
    ss
}

fn from_storage(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

/// A CM event, copied out of librdmacm's event (which is acknowledged before this is returned).
pub(crate) struct CmEvent {
    pub kind: CmEventKind,
    /// The `rdma_cm_id` the event is about (its address, to find the connection).
    pub id: usize,
    /// For a connect request: the new connection's id, now owned by the caller.
    pub new_id: Option<CmId>,
    pub status: i32,
    pub private_data: Vec<u8>,
    pub responder_resources: u8,
    pub initiator_depth: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmEventKind {
    AddrResolved,
    RouteResolved,
    ConnectRequest,
    ConnectResponse,
    Established,
    Disconnected,
    DeviceRemoval,
    Rejected,
    TimewaitExit,
    /// Errors (address/route/connect/unreachable) and anything else.
    Other(u32),
}

fn event_kind(t: u32) -> CmEventKind {
    use rdma_cm_event_type::*;
    match t {
        RDMA_CM_EVENT_ADDR_RESOLVED => CmEventKind::AddrResolved,
        RDMA_CM_EVENT_ROUTE_RESOLVED => CmEventKind::RouteResolved,
        RDMA_CM_EVENT_CONNECT_REQUEST => CmEventKind::ConnectRequest,
        RDMA_CM_EVENT_CONNECT_RESPONSE => CmEventKind::ConnectResponse,
        RDMA_CM_EVENT_ESTABLISHED => CmEventKind::Established,
        RDMA_CM_EVENT_DISCONNECTED => CmEventKind::Disconnected,
        RDMA_CM_EVENT_DEVICE_REMOVAL => CmEventKind::DeviceRemoval,
        RDMA_CM_EVENT_REJECTED => CmEventKind::Rejected,
        RDMA_CM_EVENT_TIMEWAIT_EXIT => CmEventKind::TimewaitExit,
        other => CmEventKind::Other(other),
    }
}

/// An rdma_cm event channel whose file descriptor is non-blocking.
pub(crate) struct EventChannel(*mut rdma_event_channel);

// SAFETY: the channel is used by one thread at a time (the owner); librdmacm objects are not
// tied to the thread that created them.
unsafe impl Send for EventChannel {}

impl EventChannel {
    pub fn new(blocking: bool) -> io::Result<EventChannel> {
        // SAFETY: plain constructor; NULL means failure.
        let ch = unsafe { rdma_create_event_channel() };
        if ch.is_null() {
            return Err(os_err("rdma_create_event_channel"));
        }
        let me = EventChannel(ch);
        if !blocking {
            // SAFETY: `ch` is a valid channel; its fd is an open descriptor we only flag.
            let fd = unsafe { (*ch).fd };
            // SAFETY: fcntl on a valid fd with integer arguments.
            let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            // SAFETY: as above.
            if fl < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
                return Err(os_err("fcntl(O_NONBLOCK) on the rdma_cm event channel"));
            }
        }
        Ok(me)
    }

    /// Wait up to `timeout` for the channel to have an event, then take it (host side: a
    /// non-blocking channel waited on with poll(2), so that connection setup is bounded).
    pub fn wait(&self, timeout: std::time::Duration) -> Option<CmEvent> {
        // SAFETY: `self.0` is a valid channel; its fd stays open while the channel lives.
        let fd = unsafe { (*self.0).fd };
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd, for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n <= 0 {
            return None;
        }
        self.get()
    }

    /// The next event, or `None` when there is none (non-blocking channel) or on error.
    pub fn get(&self) -> Option<CmEvent> {
        let mut ev: *mut rdma_cm_event = ptr::null_mut();
        // SAFETY: valid channel; on success `ev` points to an event we own until acked.
        if unsafe { rdma_get_cm_event(self.0, &mut ev) } != 0 || ev.is_null() {
            return None;
        }
        // SAFETY: `ev` is valid until rdma_ack_cm_event below; everything needed is copied out.
        let out = unsafe {
            let e = &*ev;
            let kind = event_kind(e.event);
            let conn = &e.param.conn;
            let private_data = if !conn.private_data.is_null() && conn.private_data_len > 0 {
                std::slice::from_raw_parts(conn.private_data as *const u8, conn.private_data_len as usize).to_vec()
            } else {
                Vec::new()
            };
            CmEvent {
                kind,
                id: e.id as usize,
                new_id: if kind == CmEventKind::ConnectRequest { Some(CmId { id: e.id, has_qp: false }) } else { None },
                status: e.status,
                private_data,
                responder_resources: conn.responder_resources,
                initiator_depth: conn.initiator_depth,
            }
        };
        // SAFETY: acknowledging the event we got; it is not used afterwards.
        unsafe { rdma_ack_cm_event(ev) };
        Some(out)
    }
}

impl Drop for EventChannel {
    fn drop(&mut self) {
        // SAFETY: every id using this channel was destroyed or migrated before (owners drop
        // their ids first); the channel is not used again.
        unsafe { rdma_destroy_event_channel(self.0) };
    }
}

/// The device (verbs context) an id is bound to. Owned by librdmacm; valid while ids on it
/// exist, which the poll group guarantees by keeping the device resources only while its
/// connections (and the listener) live.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Device(*mut ibv_context);

// SAFETY: a verbs context is thread-safe (libibverbs locks internally).
unsafe impl Send for Device {}

/// Device limits the transport sizes its queues by.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeviceAttrs {
    pub max_qp_wr: u32,
    pub max_cqe: u32,
    pub max_srq_wr: u32,
    pub max_qp_rd_atom: u8,
    pub max_qp_init_rd_atom: u8,
}

impl Device {
    #[allow(dead_code)]
    pub fn key(&self) -> usize {
        self.0 as usize
    }
    pub fn attrs(&self) -> io::Result<DeviceAttrs> {
        // SAFETY: ibv_device_attr is plain data; zero is valid.
        let mut a: ibv_device_attr = unsafe { std::mem::zeroed() };
        // SAFETY: valid context, valid out pointer.
        check(unsafe { ibv_query_device(self.0, &mut a) }, "ibv_query_device")?;
        Ok(DeviceAttrs {
            max_qp_wr: a.max_qp_wr.max(1) as u32,
            max_cqe: a.max_cqe.max(1) as u32,
            max_srq_wr: a.max_srq_wr.max(0) as u32,
            max_qp_rd_atom: a.max_qp_rd_atom.clamp(0, 255) as u8,
            max_qp_init_rd_atom: a.max_qp_init_rd_atom.clamp(0, 255) as u8,
        })
    }
}

/// A protection domain.
pub(crate) struct Pd(*mut ibv_pd);
// SAFETY: verbs objects may be used from any thread; we use each from one at a time.
unsafe impl Send for Pd {}

impl Pd {
    pub fn new(dev: Device) -> io::Result<Pd> {
        // SAFETY: valid context.
        let pd = unsafe { ibv_alloc_pd(dev.0) };
        if pd.is_null() {
            return Err(os_err("ibv_alloc_pd"));
        }
        Ok(Pd(pd))
    }
}
impl Drop for Pd {
    fn drop(&mut self) {
        // SAFETY: the QPs, SRQs and MRs on this PD were dropped before (field order).
        unsafe { ibv_dealloc_pd(self.0) };
    }
}

/// One work completion, copied out of `ibv_wc`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Wc {
    pub wr_id: u64,
    pub ok: bool,
    /// Flushed because the QP went to the error state (a consequence, not a cause).
    pub flushed: bool,
    pub status: u32,
    pub is_recv: bool,
    pub byte_len: u32,
    pub qp_num: u32,
}

pub(crate) fn wc_status_str(status: u32) -> String {
    // SAFETY: ibv_wc_status_str returns a static string for any value.
    let p = unsafe { ibv_wc_status_str(status) };
    if p.is_null() {
        return format!("status {status}");
    }
    // SAFETY: NUL-terminated static string.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A completion queue (polled, no completion channel).
pub(crate) struct Cq(*mut ibv_cq);
// SAFETY: see Pd.
unsafe impl Send for Cq {}

impl Cq {
    pub fn new(dev: Device, entries: u32) -> io::Result<Cq> {
        // SAFETY: valid context; no channel, no user context.
        let cq =
            unsafe { ibv_create_cq(dev.0, entries.min(i32::MAX as u32) as i32, ptr::null_mut(), ptr::null_mut(), 0) };
        if cq.is_null() {
            return Err(os_err("ibv_create_cq"));
        }
        Ok(Cq(cq))
    }

    /// Append up to `max` completions to `out`; returns how many (0 on error too).
    pub fn poll(&self, out: &mut Vec<Wc>, max: usize) -> usize {
        const BATCH: usize = 32;
        // SAFETY: ibv_wc is plain data (integers and a union of integers); zero is valid.
        let mut wcs: [ibv_wc; BATCH] = unsafe { std::mem::zeroed() };
        let n = max.min(BATCH) as i32;
        // SAFETY: valid CQ; `wcs` has room for `n` entries.
        let got = unsafe { ibv_poll_cq(self.0, n, wcs.as_mut_ptr()) };
        if got <= 0 {
            return 0;
        }
        for w in &wcs[..got as usize] {
            out.push(Wc {
                wr_id: w.wr_id,
                ok: w.status == ibv_wc_status::IBV_WC_SUCCESS,
                flushed: w.status == ibv_wc_status::IBV_WC_WR_FLUSH_ERR,
                status: w.status,
                is_recv: w.opcode & ibv_wc_opcode::IBV_WC_RECV != 0,
                byte_len: w.byte_len,
                qp_num: w.qp_num,
            });
        }
        got as usize
    }
}
impl Drop for Cq {
    fn drop(&mut self) {
        // SAFETY: the QPs using this CQ were destroyed before (field order).
        unsafe { ibv_destroy_cq(self.0) };
    }
}

/// A shared receive queue.
pub(crate) struct Srq(*mut ibv_srq);
// SAFETY: see Pd.
unsafe impl Send for Srq {}

impl Srq {
    pub fn new(pd: &Pd, max_wr: u32) -> io::Result<Srq> {
        // SAFETY: plain data; zero is valid.
        let mut attr: ibv_srq_init_attr = unsafe { std::mem::zeroed() };
        attr.attr.max_wr = max_wr;
        attr.attr.max_sge = 1;
        // SAFETY: valid PD and attributes.
        let srq = unsafe { ibv_create_srq(pd.0, &mut attr) };
        if srq.is_null() {
            return Err(os_err("ibv_create_srq"));
        }
        Ok(Srq(srq))
    }

    /// Post one receive of `len` bytes at `addr` (inside memory registered with `lkey`).
    pub fn post_recv(&self, wr_id: u64, addr: u64, len: u32, lkey: u32) -> io::Result<()> {
        let mut sge = ibv_sge { addr, length: len, lkey };
        let mut wr = ibv_recv_wr { wr_id, next: ptr::null_mut(), sg_list: &mut sge, num_sge: 1 };
        let mut bad: *mut ibv_recv_wr = ptr::null_mut();
        // SAFETY: valid SRQ; `wr` and `sge` live across the call (the provider copies them);
        // the buffer is registered memory that stays mapped while the SRQ exists.
        let rc = unsafe { ibv_post_srq_recv(self.0, &mut wr, &mut bad) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }
}
impl Drop for Srq {
    fn drop(&mut self) {
        // SAFETY: the QPs attached to this SRQ were destroyed before (field order).
        unsafe { ibv_destroy_srq(self.0) };
    }
}

/// Anonymous memory registered with a PD once, for the whole life of the poll group (or host
/// queue): receive buffers and data staging units live in it.
pub(crate) struct Arena {
    base: *mut u8,
    len: usize,
    mr: *mut ibv_mr,
}
// SAFETY: the mapping and MR are owned; access goes through &self/&mut self.
unsafe impl Send for Arena {}

impl Arena {
    /// Map and register `len` bytes. `remote` also grants the peer RDMA READ/WRITE access
    /// (the host side needs it; the target only needs local write).
    pub fn new(pd: &Pd, len: usize, remote: bool) -> io::Result<Arena> {
        let len = len.max(4096);
        // SAFETY: anonymous private mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err("mmap of the RDMA buffer arena"));
        }
        let mut access = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0;
        if remote {
            access |= ibv_access_flags::IBV_ACCESS_REMOTE_READ.0 | ibv_access_flags::IBV_ACCESS_REMOTE_WRITE.0;
        }
        // SAFETY: `p..p+len` is mapped and stays mapped until after the MR is deregistered.
        let mr = unsafe { ibv_reg_mr(pd.0, p, len, access as i32) };
        if mr.is_null() {
            let e = os_err("ibv_reg_mr of the RDMA buffer arena");
            // SAFETY: unmapping what we mapped above; nothing refers to it.
            unsafe { libc::munmap(p, len) };
            return Err(e);
        }
        Ok(Arena { base: p as *mut u8, len, mr })
    }
    #[allow(dead_code)]
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn addr(&self, off: usize) -> u64 {
        self.base as u64 + off as u64
    }
    pub fn lkey(&self) -> u32 {
        // SAFETY: the MR is valid while self lives.
        unsafe { (*self.mr).lkey }
    }
    pub fn rkey(&self) -> u32 {
        // SAFETY: as above.
        unsafe { (*self.mr).rkey }
    }
    /// Copy out of the arena. Out-of-range requests copy nothing past the end.
    pub fn read(&self, off: usize, dst: &mut [u8]) {
        let n = dst.len().min(self.len.saturating_sub(off));
        // SAFETY: `off..off+n` is inside the mapping. The caller only reads regions no work
        // request is writing at the moment (a completed receive or RDMA READ).
        unsafe { ptr::copy_nonoverlapping(self.base.add(off.min(self.len)), dst.as_mut_ptr(), n) };
    }
    /// Copy into the arena. Out-of-range requests copy nothing past the end.
    pub fn write(&mut self, off: usize, src: &[u8]) {
        let n = src.len().min(self.len.saturating_sub(off));
        // SAFETY: `off..off+n` is inside the mapping; the caller owns that region (no work
        // request uses it until the caller posts one).
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(off.min(self.len)), n) };
    }
}
impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: the QPs and SRQ that referenced this memory were destroyed before.
        unsafe {
            ibv_dereg_mr(self.mr);
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}

/// A memory region over a DMA buffer pool of the NVMe driver (direct mode), so RDMA READs
/// and WRITEs move host data straight into and out of the buffers the device works on.
/// Holding a pool handle keeps the memory mapped for as long as it is registered.
pub(crate) struct DmaMr {
    mr: *mut ibv_mr,
    pool: nvme_driver::DmaPool,
}
// SAFETY: the MR is owned and only read (its keys) after registration.
unsafe impl Send for DmaMr {}

impl DmaMr {
    /// Register the whole pool once (local write access: the target is the RDMA initiator).
    pub fn new(pd: &Pd, pool: nvme_driver::DmaPool) -> io::Result<DmaMr> {
        let (va, len) = pool.span();
        let access = ibv_access_flags::IBV_ACCESS_LOCAL_WRITE.0;
        // SAFETY: `va..va+len` is the pool's mapping, kept mapped by `pool` (held in the
        // returned value) until after the MR is deregistered in Drop.
        let mr = unsafe { ibv_reg_mr(pd.0, va as *mut libc::c_void, len, access as i32) };
        if mr.is_null() {
            return Err(os_err("ibv_reg_mr of an NVMe DMA buffer pool"));
        }
        Ok(DmaMr { mr, pool })
    }
    pub fn lkey(&self) -> u32 {
        // SAFETY: the MR is valid while self lives.
        unsafe { (*self.mr).lkey }
    }
    pub fn pool(&self) -> &nvme_driver::DmaPool {
        &self.pool
    }
}
impl Drop for DmaMr {
    fn drop(&mut self) {
        // SAFETY: registered in `new`; the pool memory is still mapped (`self.pool` drops after).
        unsafe { ibv_dereg_mr(self.mr) };
    }
}

/// QP sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QpCaps {
    pub max_send_wr: u32,
    pub max_recv_wr: u32,
    pub max_inline: u32,
}

/// An `rdma_cm_id` we own, with its QP once created.
pub(crate) struct CmId {
    id: *mut rdma_cm_id,
    has_qp: bool,
}
// SAFETY: an id is used by one thread at a time (moved from the listener to a poll group);
// librdmacm does not tie ids to threads.
unsafe impl Send for CmId {}

impl CmId {
    pub fn new(ch: &EventChannel) -> io::Result<CmId> {
        let mut id: *mut rdma_cm_id = ptr::null_mut();
        check(
            // SAFETY: valid channel, out pointer.
            unsafe { rdma_create_id(ch.0, &mut id, ptr::null_mut(), rdma_port_space::RDMA_PS_TCP) },
            "rdma_create_id",
        )?;
        Ok(CmId { id, has_qp: false })
    }

    /// Bind to `addr` and listen.
    pub fn listen(ch: &EventChannel, addr: SocketAddr, backlog: i32) -> io::Result<CmId> {
        let me = CmId::new(ch)?;
        let mut ss = to_storage(&addr);
        // SAFETY: valid id; `ss` holds a sockaddr of the right family.
        check(unsafe { rdma_bind_addr(me.id, &mut ss as *mut _ as *mut libc::sockaddr) }, "rdma_bind_addr")?;
        // SAFETY: valid bound id.
        check(unsafe { rdma_listen(me.id, backlog) }, "rdma_listen")?;
        Ok(me)
    }

    pub fn key(&self) -> usize {
        self.id as usize
    }

    /// Local port (host byte order).
    pub fn local_port(&self) -> u16 {
        // SAFETY: valid id.
        u16::from_be(unsafe { rdma_get_src_port(self.id) })
    }

    /// The peer's address, when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        // SAFETY: valid id; the route's address union is plain data, read as sockaddr_storage.
        let ss = unsafe { (*self.id).route.addr.dst_addr_union.dst_storage };
        from_storage(&ss)
    }

    /// The device this id is bound to (None before address resolution / binding to one).
    pub fn device(&self) -> Option<Device> {
        // SAFETY: valid id.
        let v = unsafe { (*self.id).verbs };
        (!v.is_null()).then_some(Device(v))
    }

    /// Deliver this id's future events to `ch`.
    pub fn migrate(&self, ch: &EventChannel) -> io::Result<()> {
        // SAFETY: valid id and channel; all of this id's events were acked (EventChannel::get
        // acks before returning).
        check(unsafe { rdma_migrate_id(self.id, ch.0) }, "rdma_migrate_id")
    }

    /// Create the RC QP on `pd`, completing into `cq`, receiving from `srq` when given.
    pub fn create_qp(&mut self, pd: &Pd, cq: &Cq, srq: Option<&Srq>, caps: QpCaps) -> io::Result<u32> {
        // SAFETY: plain data; zero is valid.
        let mut a: ibv_qp_init_attr = unsafe { std::mem::zeroed() };
        a.send_cq = cq.0;
        a.recv_cq = cq.0;
        a.srq = srq.map_or(ptr::null_mut(), |s| s.0);
        a.qp_type = ibv_qp_type::IBV_QPT_RC;
        a.cap.max_send_wr = caps.max_send_wr;
        a.cap.max_recv_wr = if srq.is_some() { 0 } else { caps.max_recv_wr };
        a.cap.max_send_sge = 1;
        a.cap.max_recv_sge = 1;
        a.cap.max_inline_data = caps.max_inline;
        // SAFETY: valid id, PD, CQ and SRQ (they outlive the QP: field order in the owners).
        check(unsafe { rdma_create_qp(self.id, pd.0, &mut a) }, "rdma_create_qp")?;
        self.has_qp = true;
        // SAFETY: rdma_create_qp succeeded, so id->qp is valid.
        Ok(unsafe { (*(*self.id).qp).qp_num })
    }

    fn conn_param(private: &[u8], responder_resources: u8, initiator_depth: u8) -> rdma_conn_param {
        rdma_conn_param {
            private_data: private.as_ptr() as *const libc::c_void,
            private_data_len: private.len().min(255) as u8,
            responder_resources,
            initiator_depth,
            flow_control: 1,
            retry_count: 7,
            rnr_retry_count: 7,
            srq: 0,
            qp_num: 0,
        }
    }

    pub fn accept(&self, private: &[u8], responder_resources: u8, initiator_depth: u8) -> io::Result<()> {
        let mut p = Self::conn_param(private, responder_resources, initiator_depth);
        // SAFETY: valid id with a QP; `private` outlives the call (librdmacm copies it).
        check(unsafe { rdma_accept(self.id, &mut p) }, "rdma_accept")
    }

    pub fn connect(&self, private: &[u8], responder_resources: u8, initiator_depth: u8) -> io::Result<()> {
        let mut p = Self::conn_param(private, responder_resources, initiator_depth);
        // SAFETY: valid id with a QP; `private` outlives the call.
        check(unsafe { rdma_connect(self.id, &mut p) }, "rdma_connect")
    }

    pub fn reject(&self, private: &[u8]) {
        // SAFETY: valid id from a connect request; `private` outlives the call.
        unsafe { rdma_reject(self.id, private.as_ptr() as *const libc::c_void, private.len().min(255) as u8) };
    }

    /// Disconnect; moves the QP to the error state so outstanding work requests flush.
    pub fn disconnect(&self) {
        // SAFETY: valid id (failure, e.g. never connected, is harmless).
        unsafe { rdma_disconnect(self.id) };
    }

    pub fn resolve_addr(&self, dst: SocketAddr, timeout_ms: i32) -> io::Result<()> {
        let mut ss = to_storage(&dst);
        // SAFETY: valid id; `ss` holds a sockaddr of the right family.
        check(
            unsafe {
                rdma_resolve_addr(self.id, ptr::null_mut(), &mut ss as *mut _ as *mut libc::sockaddr, timeout_ms)
            },
            "rdma_resolve_addr",
        )
    }

    pub fn resolve_route(&self, timeout_ms: i32) -> io::Result<()> {
        // SAFETY: valid id with a resolved address.
        check(unsafe { rdma_resolve_route(self.id, timeout_ms) }, "rdma_resolve_route")
    }

    /// Post one signaled send-queue work request.
    pub fn post_send(&self, wr_id: u64, wr: &Wr<'_>) -> io::Result<()> {
        if !self.has_qp {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "no QP"));
        }
        // SAFETY: ibv_send_wr is plain data (integers, pointers, unions of those); zero is valid.
        let mut w: ibv_send_wr = unsafe { std::mem::zeroed() };
        w.wr_id = wr_id;
        w.send_flags = ibv_send_flags::IBV_SEND_SIGNALED.0;
        let mut sge = match *wr {
            Wr::Read { local, len, lkey, remote, rkey } | Wr::Write { local, len, lkey, remote, rkey } => {
                w.opcode = if matches!(wr, Wr::Read { .. }) {
                    ibv_wr_opcode::IBV_WR_RDMA_READ
                } else {
                    ibv_wr_opcode::IBV_WR_RDMA_WRITE
                };
                w.wr.rdma = rdma_t { remote_addr: remote, rkey };
                ibv_sge { addr: local, length: len, lkey }
            }
            Wr::SendInline { data, inv_rkey } => {
                w.send_flags |= ibv_send_flags::IBV_SEND_INLINE.0;
                match inv_rkey {
                    Some(k) => {
                        w.opcode = ibv_wr_opcode::IBV_WR_SEND_WITH_INV;
                        w.imm_data_invalidated_rkey_union.invalidated_rkey = k;
                    }
                    None => w.opcode = ibv_wr_opcode::IBV_WR_SEND,
                }
                ibv_sge { addr: data.as_ptr() as u64, length: data.len() as u32, lkey: 0 }
            }
            Wr::Send { local, len, lkey } => {
                w.opcode = ibv_wr_opcode::IBV_WR_SEND;
                ibv_sge { addr: local, length: len, lkey }
            }
        };
        w.sg_list = &mut sge;
        w.num_sge = 1;
        let mut bad: *mut ibv_send_wr = ptr::null_mut();
        // SAFETY: valid QP; `w` and `sge` live across the call; inline data is copied by the
        // provider during the call; other buffers are registered memory kept until the work
        // request completes (the callers hold the staging units until then).
        let rc = unsafe { ibv_post_send((*self.id).qp, &mut w, &mut bad) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }

    /// Post one receive on the QP's own receive queue (host side, no SRQ).
    pub fn post_recv(&self, wr_id: u64, addr: u64, len: u32, lkey: u32) -> io::Result<()> {
        if !self.has_qp {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "no QP"));
        }
        let mut sge = ibv_sge { addr, length: len, lkey };
        let mut wr = ibv_recv_wr { wr_id, next: ptr::null_mut(), sg_list: &mut sge, num_sge: 1 };
        let mut bad: *mut ibv_recv_wr = ptr::null_mut();
        // SAFETY: valid QP; `wr`/`sge` live across the call; the buffer is registered memory
        // that outlives the QP.
        let rc = unsafe { ibv_post_recv((*self.id).qp, &mut wr, &mut bad) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }
}

impl Drop for CmId {
    fn drop(&mut self) {
        // SAFETY: the QP (if any) and then the id are destroyed once; the CQ/SRQ/PD it used
        // are still alive (owners drop connections first).
        unsafe {
            if self.has_qp {
                rdma_destroy_qp(self.id);
            }
            rdma_destroy_id(self.id);
        }
    }
}
