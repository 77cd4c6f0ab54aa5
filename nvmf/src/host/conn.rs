//! One NVMe/TCP connection, PDU by PDU, over a blocking `TcpStream` with read and write timeouts:
//! the ICReq/ICResp exchange, sending CapsuleCmd/H2CData (batched in one reused buffer), and
//! receiving headers and data with every length bounded and digests checked.

use super::error::{HostError, Result};
use super::pdu::{self, check_rx_header, RxLayout};
use super::HostConfig;
use crate::spec::tcp::{dgst, digest, fes, pdu_type, CommonHeader, ICResp, TermReqHdr, DIGEST_LEN, TERM_REQ_MAX_DATA};
use crate::spec::Sqe;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use zerocopy::{FromBytes, IntoBytes};

/// Size of the receive buffer in front of the socket (large data reads bypass it).
const RX_BUF: usize = 64 << 10;
/// Queued outgoing bytes beyond which a send goes out at once instead of waiting for a flush.
const TX_FLUSH_AT: usize = 64 << 10;

/// Open a TCP connection with the configured timeouts and Nagle off.
pub(crate) fn tcp_connect(addr: SocketAddr, cfg: &HostConfig) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, cfg.io_timeout)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(cfg.io_timeout))?;
    s.set_write_timeout(Some(cfg.io_timeout))?;
    Ok(s)
}

/// Read the rest of a C2HTermReq whose common header is `ch` (at most 128 bytes of data) and
/// turn it into the error it stands for.
pub(crate) fn read_term_req(rd: &mut impl Read, ch: &CommonHeader) -> HostError {
    let plen = ch.plen.get() as usize;
    let hlen = core::mem::size_of::<TermReqHdr>();
    let mut buf = [0u8; 24 + TERM_REQ_MAX_DATA];
    buf[..8].copy_from_slice(ch.as_bytes());
    if ch.hlen as usize != hlen || plen < hlen || plen > buf.len() {
        return HostError::Protocol(format!("malformed C2HTermReq (HLEN {}, PLEN {plen})", ch.hlen));
    }
    if let Err(e) = rd.read_exact(&mut buf[8..plen]) {
        return e.into();
    }
    let Ok((h, _)) = TermReqHdr::read_from_prefix(&buf[..]) else {
        return HostError::Protocol("short C2HTermReq".into());
    };
    log::warn!("target terminated the connection: FES {:#x} FEI {:#x}", h.fes.get(), h.fei.get());
    HostError::TermReq { fes: h.fes.get(), fei: h.fei.get() }
}

/// An established NVMe/TCP connection (after ICReq/ICResp).
pub(crate) struct Conn {
    rd: BufReader<TcpStream>,
    tx: Vec<u8>,
    /// Negotiated header digest.
    pub hdgst: bool,
    /// Negotiated data digest.
    pub ddgst: bool,
    /// Controller PDU data alignment from the ICResp (0's based dwords).
    pub cpda: u8,
    /// Largest H2CData payload the controller accepts.
    pub maxh2cdata: u32,
    /// Set after any transport error: the byte stream can no longer be trusted.
    dead: bool,
    /// Header of the PDU being received (up to HLEN bytes).
    hdr: [u8; 128],
    /// Layout of the PDU being received.
    rx: RxLayout,
}

impl Conn {
    /// Connect to `addr` and exchange ICReq/ICResp with the digests `cfg` asks for.
    pub fn connect(addr: SocketAddr, cfg: &HostConfig) -> Result<Conn> {
        let stream = tcp_connect(addr, cfg)?;
        let mut conn = Conn {
            rd: BufReader::with_capacity(RX_BUF, stream),
            tx: Vec::with_capacity(4096),
            hdgst: false,
            ddgst: false,
            cpda: 0,
            maxh2cdata: 4096,
            dead: false,
            hdr: [0; 128],
            rx: RxLayout { hdgst: false, pad: 0, data_len: 0, ddgst: false },
        };
        let r = conn.initialize(cfg.header_digest, cfg.data_digest);
        conn.guard(r)?;
        Ok(conn)
    }

    fn initialize(&mut self, hdgst: bool, ddgst: bool) -> Result<()> {
        let req = pdu::icreq(hdgst, ddgst, 0, 0);
        self.rd.get_mut().write_all(req.as_bytes())?;
        let resp = recv_icresp(&mut self.rd)?;
        let want = if hdgst { dgst::HEADER } else { 0 } | if ddgst { dgst::DATA } else { 0 };
        if resp.dgst != want {
            return Err(HostError::Protocol(format!("ICResp DGST {:#x}, asked for {want:#x}", resp.dgst)));
        }
        self.hdgst = hdgst;
        self.ddgst = ddgst;
        self.cpda = resp.cpda;
        self.maxh2cdata = resp.maxh2cdata.get();
        log::debug!("ICResp: CPDA {} MAXH2CDATA {} hdgst {hdgst} ddgst {ddgst}", resp.cpda, self.maxh2cdata);
        Ok(())
    }

    /// Mark the connection dead when `r` is an error.
    pub fn guard<T>(&mut self, r: Result<T>) -> Result<T> {
        if r.is_err() && !self.dead {
            self.dead = true;
            let _ = self.rd.get_ref().shutdown(Shutdown::Both);
        }
        r
    }

    pub fn check_alive(&self) -> Result<()> {
        if self.dead {
            Err(HostError::Closed)
        } else {
            Ok(())
        }
    }

    /// Report a target protocol violation: send an H2CTermReq (best effort) when there is a
    /// fatal error status for it, and return the error. The caller's `guard` closes the socket.
    /// `hdr_len` bytes of the received header go into the TermReq.
    pub fn violation(&mut self, fes: Option<(u16, u32)>, hdr_len: usize, msg: String) -> HostError {
        log::warn!("target protocol violation: {msg}");
        if let Some((fes, fei)) = fes {
            let mut out = Vec::new();
            pdu::encode_h2c_term_req(&mut out, fes, fei, &self.hdr[..hdr_len.min(self.hdr.len())]);
            let _ = self.rd.get_mut().write_all(&out);
        }
        HostError::Protocol(msg)
    }

    /// Queue a CapsuleCmd (sent at the next flush, or now when much is queued).
    pub fn send_capsule(&mut self, sqe: &Sqe, data: &[u8]) -> Result<()> {
        pdu::encode_capsule_cmd(&mut self.tx, sqe, data, self.hdgst, self.ddgst, self.cpda);
        self.maybe_flush()
    }

    /// Queue the H2CData PDUs answering one R2T: `data` goes at `offset`, split into PDUs of at
    /// most MAXH2CDATA bytes, the last with LAST_PDU.
    pub fn send_h2c(&mut self, cccid: u16, ttag: u16, offset: u32, data: &[u8]) -> Result<()> {
        let max = (self.maxh2cdata as usize).max(4096);
        let n = data.len().div_ceil(max);
        for (i, chunk) in data.chunks(max).enumerate() {
            let datao = offset + (i * max) as u32;
            pdu::encode_h2c_data(
                &mut self.tx,
                cccid,
                ttag,
                datao,
                chunk,
                i + 1 == n,
                self.hdgst,
                self.ddgst,
                self.cpda,
            );
            self.maybe_flush()?;
        }
        Ok(())
    }

    fn maybe_flush(&mut self) -> Result<()> {
        if self.tx.len() >= TX_FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Write everything queued.
    pub fn flush(&mut self) -> Result<()> {
        if !self.tx.is_empty() {
            self.check_alive()?;
            let r = self.rd.get_mut().write_all(&self.tx);
            self.tx.clear();
            r?;
        }
        Ok(())
    }

    /// True when received bytes are waiting in the buffer (a PDU can be read without waiting
    /// for the network, at least its first part).
    pub fn rx_buffered(&self) -> bool {
        !self.rd.buffer().is_empty()
    }

    /// Receive the next PDU's header (and its digest and padding): returns its type. The header
    /// is then available through [`Conn::header`], and for a C2HData the data must be consumed
    /// with [`Conn::recv_data`]. A C2HTermReq becomes `HostError::TermReq`.
    pub fn recv_header(&mut self) -> Result<u8> {
        self.check_alive()?;
        let mut chb = [0u8; 8];
        self.rd.read_exact(&mut chb)?;
        let ch = CommonHeader::read_from_bytes(&chb[..]).map_err(|_| HostError::Protocol("short header".into()))?;
        self.hdr[..8].copy_from_slice(&chb);
        let lay = match check_rx_header(&ch, self.hdgst, self.ddgst) {
            Ok(l) => l,
            Err(f) => return Err(self.violation(Some((f.fes, f.fei)), 8, f.msg)),
        };
        if ch.pdu_type == pdu_type::C2H_TERM_REQ {
            return Err(read_term_req(&mut self.rd, &ch));
        }
        let hlen = ch.hlen as usize;
        self.rd.read_exact(&mut self.hdr[8..hlen])?;
        if lay.hdgst {
            let mut d = [0u8; DIGEST_LEN];
            self.rd.read_exact(&mut d)?;
            let want = digest(&self.hdr[..hlen]);
            if u32::from_le_bytes(d) != want {
                let msg = format!("header digest mismatch: got {:#010x}, expected {want:#010x}", u32::from_le_bytes(d));
                return Err(self.violation(Some((fes::HEADER_DIGEST_ERROR, 0)), hlen, msg));
            }
        }
        let mut pad = [0u8; 256];
        self.rd.read_exact(&mut pad[..lay.pad])?;
        self.rx = lay;
        Ok(ch.pdu_type)
    }

    /// The header just received, as `T`.
    pub fn header<T: FromBytes>(&self) -> T {
        // The header buffer is 128 bytes, more than any header type read here.
        match T::read_from_prefix(&self.hdr[..]) {
            Ok((t, _)) => t,
            Err(_) => T::new_zeroed(),
        }
    }

    /// Data length of the PDU whose header was just received.
    pub fn data_len(&self) -> usize {
        self.rx.data_len
    }

    /// Read the current PDU's data (exactly [`Conn::data_len`] bytes) into `dst` and check its
    /// digest.
    pub fn recv_data(&mut self, dst: &mut [u8]) -> Result<()> {
        debug_assert_eq!(dst.len(), self.rx.data_len);
        self.rd.read_exact(dst)?;
        if self.rx.ddgst {
            let mut d = [0u8; DIGEST_LEN];
            self.rd.read_exact(&mut d)?;
            let want = digest(dst);
            if u32::from_le_bytes(d) != want {
                let msg = format!("data digest mismatch: got {:#010x}, expected {want:#010x}", u32::from_le_bytes(d));
                return Err(self.violation(None, 0, msg));
            }
        }
        self.rx.data_len = 0;
        Ok(())
    }

    /// Close the socket (both directions).
    pub fn close(&mut self) {
        let _ = self.flush();
        self.dead = true;
        let _ = self.rd.get_ref().shutdown(Shutdown::Both);
    }
}

/// Receive and validate an ICResp (a C2HTermReq instead becomes `HostError::TermReq`).
pub(crate) fn recv_icresp(rd: &mut impl Read) -> Result<ICResp> {
    let mut b = [0u8; 128];
    rd.read_exact(&mut b[..8])?;
    let ch = CommonHeader::read_from_bytes(&b[..8]).map_err(|_| HostError::Protocol("short header".into()))?;
    if ch.pdu_type == pdu_type::C2H_TERM_REQ {
        return Err(read_term_req(rd, &ch));
    }
    if ch.pdu_type != pdu_type::IC_RESP || ch.hlen != 128 || ch.plen.get() != 128 {
        return Err(HostError::Protocol(format!(
            "expected ICResp, got type {:#04x} HLEN {} PLEN {}",
            ch.pdu_type,
            ch.hlen,
            ch.plen.get()
        )));
    }
    rd.read_exact(&mut b[8..])?;
    let r = ICResp::read_from_bytes(&b[..]).map_err(|_| HostError::Protocol("short ICResp".into()))?;
    if r.pfv.get() != 0 {
        return Err(HostError::Protocol(format!("ICResp PFV {}", r.pfv.get())));
    }
    if r.cpda > 31 {
        return Err(HostError::Protocol(format!("ICResp CPDA {}", r.cpda)));
    }
    if r.maxh2cdata.get() < 4096 || r.maxh2cdata.get() & 3 != 0 {
        return Err(HostError::Protocol(format!("ICResp MAXH2CDATA {}", r.maxh2cdata.get())));
    }
    Ok(r)
}
