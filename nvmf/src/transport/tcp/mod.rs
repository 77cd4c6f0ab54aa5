//! The NVMe/TCP transport (NVMe/TCP Transport Specification 1.0): non-blocking sockets,
//! one `mio` poller per poll group, batched sends.

mod conn;
mod group;
mod pdu_rx;
mod pdu_tx;
mod send;

use super::limits::{admit, ConnCounter, ConnSlot};
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
    // Per-host limits (docs/reliability.md, "Per-host resources"). Timeouts of 0 disable.
    /// Data-buffer bytes one connection may hold for its commands' transfers (a connection
    /// holding nothing may always take one transfer).
    pub max_data_per_qpair: u64,
    /// Data-buffer bytes all connections of one controller (host) may hold together.
    pub max_data_per_ctrlr: u64,
    /// A write whose R2T went out fails (Command Transient Transport Error) when its data has
    /// not all arrived this long after the R2T; its buffer returns to the pool.
    pub h2c_data_timeout_ms: u64,
    /// A socket that sent no ICReq this long after it was accepted is closed.
    pub icreq_timeout_ms: u64,
    /// A connection not connected (and authenticated, when required) this long after its
    /// ICResp is closed.
    pub connect_timeout_ms: u64,
    /// While more than this many bytes wait to be sent, the connection takes no new commands.
    pub send_backlog_size: usize,
    /// A connection whose queued bytes did not move for this long is closed (write stall).
    pub send_timeout_ms: u64,
    /// Connections one listener accepts at once; more are refused at accept.
    pub max_connections_per_listener: usize,
    /// Connections this transport (the target's NVMe/TCP side) holds at once.
    pub max_connections: usize,
    /// Pool buffers one poll group lends at once (each grows to the largest transfer seen).
    pub buf_pool_size: usize,
    /// Idle pool memory a poll group keeps; idle buffers beyond it are freed after a second.
    pub buf_pool_watermark: usize,
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
            max_data_per_qpair: 64 << 20,
            max_data_per_ctrlr: 256 << 20,
            h2c_data_timeout_ms: 10_000,
            icreq_timeout_ms: 10_000,
            connect_timeout_ms: 10_000,
            send_backlog_size: 8 << 20,
            send_timeout_ms: 30_000,
            max_connections_per_listener: 4096,
            max_connections: 16384,
            buf_pool_size: crate::group_ctx::MAX_BUFFERS,
            buf_pool_watermark: crate::group_ctx::DEFAULT_BUF_WATERMARK,
        }
    }
}

/// The NVMe/TCP transport.
#[derive(Debug)]
pub struct TcpTransport {
    opts: TcpTransportOpts,
    /// Connections of all its listeners (`max_connections`).
    conns: ConnCounter,
}

impl Default for TcpTransport {
    fn default() -> Self {
        Self::new(TcpTransportOpts::default())
    }
}

impl TcpTransport {
    pub fn new(opts: TcpTransportOpts) -> Self {
        let conns = ConnCounter::new(opts.max_connections);
        TcpTransport { opts, conns }
    }
    /// Connections this transport holds now (accepted and not yet gone from their poll group).
    pub fn connections(&self) -> usize {
        self.conns.live()
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
        let ip: std::net::IpAddr =
            addr.traddr.parse().map_err(|_| Error::InvalidParam(format!("bad IP address {:?}", addr.traddr)))?;
        let port: u16 =
            addr.trsvcid.parse().map_err(|_| Error::InvalidParam(format!("bad TCP port {:?}", addr.trsvcid)))?;
        let sock = TcpListener::bind(SocketAddr::new(ip, port)).map_err(err)?;
        sock.set_nonblocking(true).map_err(err)?;
        let local = sock.local_addr().map_err(err)?;
        let all = self.conns.clone();
        Ok(Box::new(TcpListenerImpl {
            sock,
            addr: TransportAddr::tcp(&addr.traddr, local.port()),
            conns: ConnCounter::new(self.opts.max_connections_per_listener),
            all,
            refusing: false,
        }))
    }

    fn create_poll_group(&self) -> Box<dyn TransportPollGroup> {
        Box::new(group::TcpPollGroup::new(self.opts.clone()))
    }
}

struct TcpListenerImpl {
    sock: TcpListener,
    addr: TransportAddr,
    /// This listener's connections (`max_connections_per_listener`).
    conns: ConnCounter,
    all: ConnCounter,
    /// Refusing connections since the last one admitted (logged once per episode).
    refusing: bool,
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
                    let slot = match admit(&[&self.conns, &self.all]) {
                        Ok(slot) => slot,
                        Err(which) => {
                            // Refused at accept: closing the socket costs the target nothing more.
                            if !self.refusing {
                                let (what, c) =
                                    if which == 0 { ("listener", &self.conns) } else { ("transport", &self.all) };
                                log::warn!(
                                    "{}: {what} connection limit ({}) reached; refusing connections",
                                    self.addr,
                                    c.max()
                                );
                                self.refusing = true;
                            }
                            continue;
                        }
                    };
                    if self.refusing {
                        log::info!("{}: accepting connections again", self.addr);
                        self.refusing = false;
                    }
                    let _ = s.set_nodelay(true);
                    return Some(Box::new(TcpNewConn { sock: s, peer, slot }));
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
    /// Its place under the connection limits, held until it leaves its poll group.
    slot: ConnSlot,
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
