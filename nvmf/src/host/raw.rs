//! [`RawConnection`]: PDU-level access for malformed-input tests. Nothing is validated on the
//! way out; on the way in only PLEN is bounded.

use super::conn::{recv_icresp, tcp_connect};
use super::error::{HostError, Result};
use super::pdu::{self, MAX_PDU_LEN};
use super::HostConfig;
use crate::spec::tcp::{pdu_type, CapsuleRespHdr, CommonHeader, ICResp};
use crate::spec::{Cqe, Sqe};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;
use zerocopy::{FromBytes, IntoBytes};

/// Most bytes [`RawConnection::expect_closed`] throws away before giving up.
const MAX_DRAIN: usize = 4 << 20;

/// A TCP connection to a target driven PDU by PDU.
pub struct RawConnection {
    stream: TcpStream,
    hdgst: bool,
    ddgst: bool,
    cpda: u8,
}

impl RawConnection {
    /// Connect with the default 10 s timeouts.
    pub fn connect(addr: SocketAddr) -> Result<RawConnection> {
        Self::connect_timeout(addr, HostConfig::default().io_timeout)
    }

    pub fn connect_timeout(addr: SocketAddr, timeout: Duration) -> Result<RawConnection> {
        let cfg = HostConfig { io_timeout: timeout, ..Default::default() };
        Ok(RawConnection { stream: tcp_connect(addr, &cfg)?, hdgst: false, ddgst: false, cpda: 0 })
    }

    /// Change the read/write timeout.
    pub fn set_timeout(&self, timeout: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.set_write_timeout(Some(timeout))?;
        Ok(())
    }

    /// The socket, for anything not covered here.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Send bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Send a well-formed ICReq (HPDA 0, MAXR2T 0) and receive the ICResp; later helpers use
    /// the digests asked for here and the CPDA returned.
    pub fn icreq(&mut self, hdgst: bool, ddgst: bool) -> Result<ICResp> {
        self.send(pdu::icreq(hdgst, ddgst, 0, 0).as_bytes())?;
        let r = recv_icresp(&mut self.stream)?;
        self.hdgst = hdgst;
        self.ddgst = ddgst;
        self.cpda = r.cpda;
        Ok(r)
    }

    /// Send a well-formed CapsuleCmd (negotiated digests and CPDA) with `data` in-capsule.
    pub fn send_capsule(&mut self, sqe: &Sqe, data: &[u8]) -> Result<()> {
        let mut out = Vec::new();
        pdu::encode_capsule_cmd(&mut out, sqe, data, self.hdgst, self.ddgst, self.cpda);
        self.send(&out)
    }

    /// Send a well-formed H2CData PDU.
    pub fn send_h2c_data(&mut self, cccid: u16, ttag: u16, datao: u32, data: &[u8], last: bool) -> Result<()> {
        let mut out = Vec::new();
        pdu::encode_h2c_data(&mut out, cccid, ttag, datao, data, last, self.hdgst, self.ddgst, self.cpda);
        self.send(&out)
    }

    /// Send a Fabrics Connect (CID 0) for `qid` with SQSIZE `sqsize` (0's based), KATO, CNTLID
    /// and the host identity from `cfg`, and wait for the CapsuleResp. Returns the CQE whatever
    /// its status.
    pub fn fabrics_connect(
        &mut self,
        qid: u16,
        sqsize: u16,
        cntlid: u16,
        subnqn: &str,
        cfg: &HostConfig,
    ) -> Result<Cqe> {
        let kato = if qid == 0 { cfg.kato_ms } else { 0 };
        let sqe = pdu::connect_sqe(qid, sqsize, kato);
        let data = pdu::connect_data(&cfg.hostid, cntlid, subnqn, &cfg.hostnqn);
        self.send_capsule(&sqe, data.as_bytes())?;
        self.recv_capsule_resp()
    }

    /// Receive the next PDU, which must be a CapsuleResp (a C2HTermReq becomes
    /// `HostError::TermReq`).
    pub fn recv_capsule_resp(&mut self) -> Result<Cqe> {
        let (ch, bytes) = self.recv_pdu()?;
        match ch.pdu_type {
            pdu_type::CAPSULE_RESP => {
                let (h, _) = CapsuleRespHdr::read_from_prefix(&bytes[..])
                    .map_err(|_| HostError::Protocol(format!("CapsuleResp of {} bytes", bytes.len())))?;
                Ok(h.cqe)
            }
            pdu_type::C2H_TERM_REQ if bytes.len() >= 14 => Err(HostError::TermReq {
                fes: u16::from_le_bytes([bytes[8], bytes[9]]),
                fei: u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]),
            }),
            t => Err(HostError::Protocol(format!("expected CapsuleResp, got PDU type {t:#04x}"))),
        }
    }

    /// Receive one whole PDU (PLEN bytes, at most [`MAX_PDU_LEN`]), digests unchecked.
    pub fn recv_pdu(&mut self) -> Result<(CommonHeader, Vec<u8>)> {
        let mut chb = [0u8; 8];
        self.stream.read_exact(&mut chb)?;
        let ch = CommonHeader::read_from_bytes(&chb[..]).map_err(|_| HostError::Protocol("short header".into()))?;
        let plen = ch.plen.get() as usize;
        if !(8..=MAX_PDU_LEN).contains(&plen) {
            return Err(HostError::Protocol(format!("PDU type {:#04x} with PLEN {plen}", ch.pdu_type)));
        }
        let mut bytes = vec![0u8; plen];
        bytes[..8].copy_from_slice(&chb);
        self.stream.read_exact(&mut bytes[8..])?;
        Ok((ch, bytes))
    }

    /// Wait for the target to close the connection, throwing away anything it still sends.
    /// `HostError::Timeout` when it stays open.
    pub fn expect_closed(&mut self) -> Result<()> {
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    drained += n;
                    log::debug!("expect_closed: discarding {n} bytes");
                    if drained > MAX_DRAIN {
                        return Err(HostError::Protocol(format!("still sending after {drained} bytes")));
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                    return Ok(())
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Header/data digest flags in effect for the `send_*` helpers.
    pub fn digests(&self) -> (bool, bool) {
        (self.hdgst, self.ddgst)
    }

    /// Close our side.
    pub fn close(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}
