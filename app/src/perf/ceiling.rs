//! The ceiling: a trivial NVMe/TCP responder. It speaks just enough of the protocol for the perf
//! client (ICReq/ICResp, any capsule answered with success, reads answered with one C2HData of
//! the asked length plus a CapsuleResp, writes by R2T -> H2CData -> CapsuleResp or in-capsule)
//! and does no NVMe processing and no bdev I/O, so the client moves the same bytes, in the same
//! PDUs, over the same loopback as against the target. One thread busy-polls every connection
//! with non-blocking reads and one write per connection per pass.

use nvmf::spec::tcp::{data_offset, digest, pdu_flags, pdu_type};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

// Byte offsets in the PDUs (NVMe/TCP 1.0 figures 18-34; SQE/CQE from the base spec).
const SQE: usize = 8;
const SQE_CID: usize = SQE + 2;
const SQE_NSID: usize = SQE + 4; // FCTYPE of a fabrics command
const SQE_SGL_LEN: usize = SQE + 24 + 8;
const DATA_CCCID: usize = 8;

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

const RX_BUF: usize = 64 << 10;
/// Read data comes from here (zeros): as big as the largest transfer the target allows.
const MAX_XFER: usize = 1 << 20;
/// Empty passes spun before the responder starts sleeping between passes.
const IDLE_SPIN: u32 = 1000;
/// Stop taking new commands on a connection while this much waits to be sent.
const TX_HIGH: usize = 8 << 20;

struct Conn {
    s: TcpStream,
    rx: Box<[u8]>,
    head: usize,
    tail: usize,
    /// Payload bytes (with padding and digest) still to discard.
    skip: usize,
    /// A CapsuleResp to send once the skipped payload is in: CID.
    resp_after_skip: Option<u16>,
    tx: Vec<u8>,
    txh: usize,
    hdgst: bool,
    ddgst: bool,
    hpda: u8,
    sqhd: u16,
    dead: bool,
}

fn push_hdr(tx: &mut Vec<u8>, h: &[u8], hdgst: bool) {
    tx.extend_from_slice(h);
    if hdgst {
        tx.extend_from_slice(&digest(h).to_le_bytes());
    }
}

/// A 24-byte header: common header, then `f` (16 bytes of type-specific fields).
fn hdr24(t: u8, flags: u8, pdo: u8, plen: usize, hdgst: bool, f: [u8; 16]) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0] = t;
    h[1] = flags | if hdgst { pdu_flags::HDGSTF } else { 0 };
    h[2] = 24;
    h[3] = pdo;
    h[4..8].copy_from_slice(&(plen as u32).to_le_bytes());
    h[8..].copy_from_slice(&f);
    h
}

impl Conn {
    fn new(s: TcpStream) -> Conn {
        Conn {
            s,
            rx: vec![0; RX_BUF].into_boxed_slice(),
            head: 0,
            tail: 0,
            skip: 0,
            resp_after_skip: None,
            tx: Vec::with_capacity(256 << 10),
            txh: 0,
            hdgst: false,
            ddgst: false,
            hpda: 0,
            sqhd: 0,
            dead: false,
        }
    }

    fn resp(&mut self, cid: u16, dw0: u32) {
        // CQE: DW0, DW1, SQHD, SQID, CID, status 0.
        let mut cqe = [0u8; 16];
        cqe[0..4].copy_from_slice(&dw0.to_le_bytes());
        self.sqhd = self.sqhd.wrapping_add(1);
        cqe[8..10].copy_from_slice(&self.sqhd.to_le_bytes());
        cqe[12..14].copy_from_slice(&cid.to_le_bytes());
        let hd = if self.hdgst { 4 } else { 0 };
        let r = hdr24(pdu_type::CAPSULE_RESP, 0, 0, 24 + hd, self.hdgst, cqe);
        push_hdr(&mut self.tx, &r, self.hdgst);
    }

    fn c2h(&mut self, cid: u16, len: usize, zeros: &[u8]) {
        let pdo = data_offset(24, self.hdgst, self.hpda);
        let plen = pdo + len + if self.ddgst { 4 } else { 0 };
        let flags = pdu_flags::LAST_PDU | if self.ddgst { pdu_flags::DDGSTF } else { 0 };
        let mut f = [0u8; 16];
        f[0..2].copy_from_slice(&cid.to_le_bytes());
        f[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        let h = hdr24(pdu_type::C2H_DATA, flags, pdo as u8, plen, self.hdgst, f);
        let start = self.tx.len();
        push_hdr(&mut self.tx, &h, self.hdgst);
        self.tx.resize(start + pdo, 0);
        let data = &zeros[..len.min(zeros.len())];
        self.tx.extend_from_slice(data);
        if self.ddgst {
            self.tx.extend_from_slice(&digest(data).to_le_bytes());
        }
    }

    /// Handle every complete PDU in the buffer.
    fn parse(&mut self, zeros: &[u8]) {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.tail - self.head);
                self.head += n;
                self.skip -= n;
                if self.skip > 0 {
                    return;
                }
                if let Some(cid) = self.resp_after_skip.take() {
                    self.resp(cid, 0);
                }
            }
            if self.tx.len() - self.txh > TX_HIGH {
                return;
            }
            let avail = &self.rx[self.head..self.tail];
            if avail.len() < 8 {
                return;
            }
            let (ty, flags, hlen, plen) = (avail[0], avail[1], avail[2] as usize, le32(avail, 4) as usize);
            let hd = if self.hdgst && ty != pdu_type::IC_REQ { 4 } else { 0 };
            let hlen = hlen + hd;
            if avail.len() < hlen {
                return;
            }
            let payload = plen.saturating_sub(hlen);
            match ty {
                pdu_type::IC_REQ => {
                    let (hpda, dg) = (avail[10], avail[11]);
                    self.hdgst = dg & 1 != 0;
                    self.ddgst = dg & 2 != 0;
                    self.hpda = hpda;
                    let mut r = [0u8; 128];
                    r[0] = pdu_type::IC_RESP;
                    r[2] = 128;
                    r[4..8].copy_from_slice(&128u32.to_le_bytes());
                    r[11] = dg & 3;
                    r[12..16].copy_from_slice(&(128u32 * 1024).to_le_bytes());
                    self.tx.extend_from_slice(&r);
                }
                pdu_type::CAPSULE_CMD => {
                    let cid = le16(avail, SQE_CID);
                    let len = le32(avail, SQE_SGL_LEN) as usize;
                    let opcode = avail[SQE];
                    let bits = if opcode == 0x7f { avail[SQE_NSID] } else { opcode };
                    if payload > 0 {
                        // In-capsule data: discard it, then answer.
                        self.head += hlen;
                        self.skip = payload;
                        self.resp_after_skip = Some(cid);
                        continue;
                    }
                    match bits & 3 {
                        2 if len > 0 => {
                            self.c2h(cid, len, zeros);
                            self.resp(cid, 0);
                        }
                        1 if len > 0 => {
                            let hdr = if self.hdgst { 4 } else { 0 };
                            let mut f = [0u8; 16];
                            f[0..2].copy_from_slice(&cid.to_le_bytes()); // CCCID
                            f[2..4].copy_from_slice(&cid.to_le_bytes()); // TTAG
                            f[8..12].copy_from_slice(&(len as u32).to_le_bytes()); // R2TL
                            let r = hdr24(pdu_type::R2T, 0, 0, 24 + hdr, self.hdgst, f);
                            push_hdr(&mut self.tx, &r, self.hdgst);
                        }
                        // Connect gets CNTLID 1 in DW0; anything else plain success.
                        _ => self.resp(cid, u32::from(opcode == 0x7f)),
                    }
                }
                pdu_type::H2C_DATA => {
                    let cccid = le16(avail, DATA_CCCID);
                    self.head += hlen;
                    self.skip = payload;
                    if flags & pdu_flags::LAST_PDU != 0 {
                        self.resp_after_skip = Some(cccid);
                    }
                    continue;
                }
                _ => {
                    self.dead = true;
                    return;
                }
            }
            self.head += hlen + payload;
        }
    }

    /// One pass: one read, parse, one write.
    fn pass(&mut self, zeros: &[u8]) -> bool {
        let mut work = false;
        if self.tx.len() - self.txh <= TX_HIGH {
            if self.head == self.tail {
                self.head = 0;
                self.tail = 0;
            } else if self.tail == self.rx.len() {
                self.rx.copy_within(self.head..self.tail, 0);
                self.tail -= self.head;
                self.head = 0;
            }
            match self.s.read(&mut self.rx[self.tail..]) {
                Ok(0) => self.dead = true,
                Ok(n) => {
                    self.tail += n;
                    work = true;
                    self.parse(zeros);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
        }
        if self.txh < self.tx.len() {
            match self.s.write(&self.tx[self.txh..]) {
                Ok(n) => {
                    self.txh += n;
                    work = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.dead = true,
            }
            if self.txh == self.tx.len() {
                self.tx.clear();
                self.txh = 0;
                // Output drained: PDUs held back by TX_HIGH can go now.
                self.parse(zeros);
            }
        }
        work
    }
}

/// Serve on `listener` until `stop` is set.
pub fn serve(listener: TcpListener, stop: Arc<AtomicBool>) {
    let _ = listener.set_nonblocking(true);
    let zeros = vec![0u8; MAX_XFER];
    let mut conns: Vec<Conn> = Vec::new();
    let mut idle = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if conns.is_empty() || idle > IDLE_SPIN {
            if let Ok((s, _)) = listener.accept() {
                if s.set_nonblocking(true).is_ok() && s.set_nodelay(true).is_ok() {
                    conns.push(Conn::new(s));
                }
            }
            if conns.is_empty() {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            idle = 0;
        }
        let mut work = false;
        for c in conns.iter_mut() {
            work |= c.pass(&zeros);
        }
        conns.retain(|c| !c.dead);
        if work {
            idle = 0;
        } else {
            idle += 1;
            // Idle (e.g. while the target phase runs on the same core): back off like
            // `nvmf_tgt --idle-backoff-us 50`, so the two servers never compete for the core.
            if idle > IDLE_SPIN {
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
        }
    }
}

/// Start the responder on a thread (pinned to `core` if given). Returns its address.
pub fn spawn(
    addr: SocketAddr,
    core: Option<usize>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let l = TcpListener::bind(addr)?;
    let a = l.local_addr()?;
    let h = std::thread::Builder::new().name("ceiling".into()).spawn(move || {
        if let Some(c) = core {
            super::args::pin(c);
        }
        serve(l, stop)
    })?;
    Ok((a, h))
}
