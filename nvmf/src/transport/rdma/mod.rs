//! The NVMe/RDMA transport (NVMe over Fabrics RDMA Transport Specification 1.0b), over
//! librdmacm and libibverbs (`rdma-sys`). Built with the `rdma` Cargo feature.
//!
//! - `cm.rs`: the rdma_cm listener (one non-blocking event channel per listener); connect
//!   requests are checked (`private.rs`) and rejected with the spec's status, or handed out
//!   as new connections.
//! - `group.rs`: per poll group and device, one protection domain, one completion queue and one
//!   shared receive queue for all its connections, and one registered buffer arena (receive
//!   buffers and data staging units), registered once when the group first sees the device.
//! - `conn.rs`: the per-queue-pair request state machine (RDMA READ for host data, RDMA WRITE
//!   for controller data, SEND / SEND with Invalidate for responses).
//! - `verbs.rs`: the only unsafe code.
//!
//! Copies: in direct mode the data buffer is a DMA buffer lent by the NVMe bdev channel; its
//! pool is registered once (`verbs::DmaMr`) and RDMA READ/WRITE move data straight into and out
//! of it, no copy. Other bdevs take Vec-backed `IoBuf`s from the poll group's `BufPool`, which
//! are not registered memory: host data is read into registered staging units and copied into
//! the `IoBuf`, read data copied from the `IoBuf` into units and written from there. In-capsule
//! data is copied out of the receive buffer so that it can be re-posted at once. Registering
//! memory per I/O is avoided on purpose.

#[forbid(unsafe_code)]
mod cm;
#[forbid(unsafe_code)]
pub(crate) mod conn;
#[forbid(unsafe_code)]
mod group;
#[forbid(unsafe_code)]
pub mod private;
#[forbid(unsafe_code)]
mod sgl;
#[allow(unsafe_code)]
pub(crate) mod verbs;
#[forbid(unsafe_code)]
pub(crate) mod wr;

use super::{Transport, TransportAddr, TransportListener, TransportPollGroup, TransportType};
use crate::{Error, Result};

pub use verbs_api::rdma_device_count;

/// Public helpers that need the verbs layer.
mod verbs_api {
    /// Number of RDMA devices libibverbs sees (0 where there is no RDMA hardware or soft-RoCE).
    pub fn rdma_device_count() -> usize {
        super::verbs::device_count()
    }
}

/// NVMe/RDMA transport options (names as in SPDK's `nvmf_create_transport -t RDMA`).
#[derive(Clone, Debug)]
pub struct RdmaTransportOpts {
    /// Largest data transfer per command (MDTS is fixed at 1 MiB in Identify).
    pub max_io_size: u32,
    /// In-capsule data accepted per command (Identify IOCCSZ reports 8 KiB).
    pub in_capsule_data_size: u32,
    /// Queue entries a host may ask for (HSQSIZE + 1), at most 128.
    pub max_queue_depth: u16,
    /// Size of one registered data staging unit; a transfer uses `len / io_unit_size` of them.
    pub io_unit_size: u32,
    /// Staging units per poll group and device (`num_shared_buffers`).
    pub num_shared_buffers: u32,
    /// Receive buffers posted to each poll group's shared receive queue.
    pub max_srq_depth: u32,
    /// Completion queue entries per poll group and device (capped by the device).
    pub cq_size: u32,
    /// rdma_listen backlog.
    pub acceptor_backlog: i32,
}

impl Default for RdmaTransportOpts {
    fn default() -> Self {
        RdmaTransportOpts {
            max_io_size: crate::MAX_IO_SIZE as u32,
            in_capsule_data_size: crate::IN_CAPSULE_DATA_SIZE as u32,
            max_queue_depth: crate::ctrlr::MAX_QUEUE_DEPTH,
            io_unit_size: 128 * 1024,
            num_shared_buffers: 256,
            max_srq_depth: 512,
            cq_size: 16384,
            acceptor_backlog: 100,
        }
    }
}

/// The NVMe/RDMA transport.
#[derive(Debug, Default)]
pub struct RdmaTransport {
    opts: RdmaTransportOpts,
}

impl RdmaTransport {
    pub fn new(opts: RdmaTransportOpts) -> Self {
        RdmaTransport { opts }
    }
    pub fn opts(&self) -> &RdmaTransportOpts {
        &self.opts
    }
}

impl Transport for RdmaTransport {
    fn trtype(&self) -> TransportType {
        TransportType::Rdma
    }

    fn listen(&self, addr: &TransportAddr) -> Result<Box<dyn TransportListener>> {
        let ip: std::net::IpAddr =
            addr.traddr.parse().map_err(|_| Error::InvalidParam(format!("bad IP address {:?}", addr.traddr)))?;
        let port: u16 =
            addr.trsvcid.parse().map_err(|_| Error::InvalidParam(format!("bad RDMA port {:?}", addr.trsvcid)))?;
        let l = cm::RdmaListener::listen(std::net::SocketAddr::new(ip, port), addr, &self.opts)
            .map_err(|source| Error::Listen { addr: addr.to_string(), source })?;
        Ok(Box::new(l))
    }

    fn create_poll_group(&self) -> Box<dyn TransportPollGroup> {
        Box::new(group::RdmaPollGroup::new(self.opts.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_without_device_says_so() {
        if rdma_device_count() > 0 {
            return; // a machine with RDMA: nothing to check here
        }
        let t = RdmaTransport::default();
        let addr = TransportAddr { trtype: TransportType::Rdma, traddr: "127.0.0.1".into(), trsvcid: "4420".into() };
        let err = t.listen(&addr).err().expect("listen must fail without an RDMA device").to_string();
        assert!(err.contains("no RDMA device"), "{err}");
        assert!(err.contains("trtype:RDMA"), "{err}");
    }

    #[test]
    fn listen_rejects_bad_addresses() {
        let t = RdmaTransport::default();
        let addr = TransportAddr { trtype: TransportType::Rdma, traddr: "not-an-ip".into(), trsvcid: "4420".into() };
        assert!(matches!(t.listen(&addr), Err(Error::InvalidParam(_))));
    }
}
