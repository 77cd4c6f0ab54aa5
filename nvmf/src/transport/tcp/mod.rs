//! The NVMe/TCP transport (NVMe/TCP Transport Specification 1.0): non-blocking sockets,
//! one `mio` poller per poll group, batched sends.

mod conn;
mod group;
mod pdu_tx;
mod send;

use super::{Transport, TransportAddr, TransportConn, TransportListener, TransportPollGroup, TransportType};
use crate::{Error, Result};
use std::any::Any;
use std::net::{SocketAddr, TcpListener};

/// NVMe/TCP transport options (names as in SPDK's `nvmf_create_transport`).
#[derive(Clone, Debug)]
pub struct TcpTransportOpts {
    /// Largest H2CData payload accepted (ICResp MAXH2CDATA).
    pub max_h2c_data: u32,
    /// Largest data transfer per command (MDTS is fixed at 1 MiB in Identify).
    pub max_io_size: u32,
    /// In-capsule data accepted per command.
    pub in_capsule_data_size: u32,
    /// Accept header and data digests when a host asks for them.
    pub allow_digests: bool,
    /// Use C2HData with the SUCCESS flag instead of a CapsuleResp when the host disabled SQ
    /// flow control.
    pub c2h_success: bool,
    /// Per-connection receive buffer.
    pub recv_buf_size: usize,
}

impl Default for TcpTransportOpts {
    fn default() -> Self {
        TcpTransportOpts {
            max_h2c_data: 128 * 1024,
            max_io_size: crate::MAX_IO_SIZE as u32,
            in_capsule_data_size: crate::IN_CAPSULE_DATA_SIZE as u32,
            allow_digests: true,
            c2h_success: true,
            recv_buf_size: 32 * 1024,
        }
    }
}

/// The NVMe/TCP transport.
#[derive(Debug, Default)]
pub struct TcpTransport {
    opts: TcpTransportOpts,
}

impl TcpTransport {
    pub fn new(opts: TcpTransportOpts) -> Self {
        TcpTransport { opts }
    }
    pub fn opts(&self) -> &TcpTransportOpts {
        &self.opts
    }
}

impl Transport for TcpTransport {
    fn trtype(&self) -> TransportType {
        TransportType::Tcp
    }

    fn listen(&self, addr: &TransportAddr) -> Result<Box<dyn TransportListener>> {
        let err = |source| Error::Listen { addr: addr.to_string(), source };
        let ip: std::net::IpAddr = addr.traddr.parse().map_err(|_| Error::InvalidParam(format!("bad IP address {:?}", addr.traddr)))?;
        let port: u16 = addr.trsvcid.parse().map_err(|_| Error::InvalidParam(format!("bad TCP port {:?}", addr.trsvcid)))?;
        let sock = TcpListener::bind(SocketAddr::new(ip, port)).map_err(err)?;
        sock.set_nonblocking(true).map_err(err)?;
        let local = sock.local_addr().map_err(err)?;
        Ok(Box::new(TcpListenerImpl { sock, addr: TransportAddr::tcp(&addr.traddr, local.port()) }))
    }

    fn create_poll_group(&self) -> Box<dyn TransportPollGroup> {
        Box::new(group::TcpPollGroup::new(self.opts.clone()))
    }
}

struct TcpListenerImpl {
    sock: TcpListener,
    addr: TransportAddr,
}

impl TransportListener for TcpListenerImpl {
    fn addr(&self) -> &TransportAddr {
        &self.addr
    }
    fn accept(&mut self) -> Option<Box<dyn TransportConn>> {
        loop {
            match self.sock.accept() {
                Ok((s, peer)) => {
                    if s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = s.set_nodelay(true);
                    return Some(Box::new(TcpNewConn { sock: s, peer }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ECONNABORTED, EMFILE...: skip this one, keep listening.
                    log::warn!("accept on {}: {e}", self.addr);
                    return None;
                }
            }
        }
    }
}

/// An accepted TCP connection on its way to a poll group.
pub(crate) struct TcpNewConn {
    sock: std::net::TcpStream,
    peer: SocketAddr,
}

impl TransportConn for TcpNewConn {
    fn trtype(&self) -> TransportType {
        TransportType::Tcp
    }
    fn peer(&self) -> String {
        self.peer.to_string()
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}
