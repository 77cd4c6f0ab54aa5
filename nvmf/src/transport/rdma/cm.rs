//! The rdma_cm listener: one event channel (non-blocking fd) and one listening id per address.
//! `accept` takes connect requests off the channel, checks their private data and either
//! rejects them with the spec's status or hands them out as `RdmaNewConn`. The poll group that
//! takes a connection moves its id to its own event channel, creates the QP and accepts.

use super::private::{self, QueueRequest};
use super::verbs::{self, CmEventKind, CmId, EventChannel};
use super::RdmaTransportOpts;
use crate::transport::{TransportAddr, TransportConn, TransportListener, TransportType};
use std::any::Any;
use std::io;
use std::net::SocketAddr;
use zerocopy::IntoBytes;

pub(crate) struct RdmaListener {
    // Field order: the id goes before its channel.
    id: CmId,
    ch: EventChannel,
    addr: TransportAddr,
    max_queue_depth: u16,
}

impl RdmaListener {
    pub fn listen(sa: SocketAddr, addr: &TransportAddr, opts: &RdmaTransportOpts) -> io::Result<RdmaListener> {
        if verbs::device_count() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no RDMA device (ibv_get_device_list found none; load an RDMA driver, or create a \
                 soft-RoCE device: rdma link add rxe0 type rxe netdev <ifname>)",
            ));
        }
        let ch = EventChannel::new(false)?;
        let id = CmId::listen(&ch, sa, opts.acceptor_backlog)?;
        let port = id.local_port();
        let addr =
            TransportAddr { trtype: TransportType::Rdma, traddr: addr.traddr.clone(), trsvcid: port.to_string() };
        Ok(RdmaListener { id, ch, addr, max_queue_depth: opts.max_queue_depth })
    }
}

impl TransportListener for RdmaListener {
    fn addr(&self) -> &TransportAddr {
        &self.addr
    }

    fn accept(&mut self) -> Option<Box<dyn TransportConn>> {
        while let Some(ev) = self.ch.get() {
            if ev.kind != CmEventKind::ConnectRequest {
                // Events of ids not handed out yet (e.g. a host that gave up): nothing to do.
                log::debug!("rdma listener {}: ignoring CM event {:?} (status {})", self.addr, ev.kind, ev.status);
                continue;
            }
            let Some(id) = ev.new_id else { continue };
            let peer = id.peer().map_or_else(|| "?".to_string(), |p| p.to_string());
            match private::parse_request(&ev.private_data, self.max_queue_depth) {
                Ok(req) => {
                    log::debug!("rdma connect request from {peer}: {req:?}");
                    return Some(Box::new(RdmaNewConn {
                        id,
                        peer,
                        req,
                        responder_resources: ev.responder_resources,
                        initiator_depth: ev.initiator_depth,
                    }));
                }
                Err(sts) => {
                    log::warn!("rdma connect request from {peer} rejected (status {sts:#x})");
                    id.reject(private::reject(sts).as_bytes());
                    // The id is destroyed here.
                }
            }
        }
        let _ = &self.id;
        None
    }
}

/// A connect request on its way to a poll group (not accepted yet).
pub(crate) struct RdmaNewConn {
    pub id: CmId,
    pub peer: String,
    pub req: QueueRequest,
    pub responder_resources: u8,
    pub initiator_depth: u8,
}

impl TransportConn for RdmaNewConn {
    fn trtype(&self) -> TransportType {
        TransportType::Rdma
    }
    fn peer(&self) -> String {
        self.peer.clone()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}
