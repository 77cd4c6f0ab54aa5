//! The TCP part of a poll group: connections in a slab, readiness from one `mio::Poll`
//! (epoll) checked without blocking once per poll.

use super::conn::{ConnState, TcpConn};
use super::{TcpNewConn, TcpTransportOpts};
use crate::bdev::BdevCompletion;
use crate::poll_group::GroupCtx;
use crate::transport::{TransportAddr, TransportConn, TransportPollGroup, TransportType};
use mio::{Events, Interest, Poll, Token};
use std::time::Duration;

pub(crate) struct TcpPollGroup {
    opts: TcpTransportOpts,
    poll: Option<Poll>,
    events: Events,
    conns: Vec<Option<TcpConn>>,
    free: Vec<u32>,
    live: usize,
    /// `flush_completions` wrote payloads out of heap buffers, which wait in their
    /// connections' send queues to go back to the pool (it has no pool at hand).
    reclaim: bool,
}

impl TcpPollGroup {
    pub fn new(opts: TcpTransportOpts) -> Self {
        let poll = Poll::new().map_err(|e| log::error!("epoll_create: {e}")).ok();
        TcpPollGroup {
            opts,
            poll,
            events: Events::with_capacity(1024),
            conns: Vec::new(),
            free: Vec::new(),
            live: 0,
            reclaim: false,
        }
    }

    fn remove(&mut self, idx: usize) {
        if let Some(mut c) = self.conns[idx].take() {
            if let Some(p) = self.poll.as_ref() {
                let _ = p.registry().deregister(&mut c.sock);
            }
            self.free.push(idx as u32);
            self.live -= 1;
        }
    }
}

impl TransportPollGroup for TcpPollGroup {
    fn trtype(&self) -> TransportType {
        TransportType::Tcp
    }

    fn add(&mut self, conn: Box<dyn TransportConn>, listener: TransportAddr, ctx: &mut GroupCtx) {
        let Ok(nc) = conn.into_any().downcast::<TcpNewConn>() else {
            log::error!("not a TCP connection");
            return;
        };
        let Some(poll) = self.poll.as_ref() else { return };
        // The pool limits are this transport's options (the pool is the poll group's).
        ctx.bufs.set_max_buffers(self.opts.buf_pool_size);
        ctx.buf_watermark = self.opts.buf_pool_watermark;
        let TcpNewConn { sock, peer, slot } = *nc;
        let peer = peer.to_string();
        let mut sock = mio::net::TcpStream::from_std(sock);
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                (self.conns.len() - 1) as u32
            }
        };
        if let Err(e) =
            poll.registry().register(&mut sock, Token(idx as usize), Interest::READABLE | Interest::WRITABLE)
        {
            log::error!("register connection {peer}: {e}");
            self.free.push(idx);
            return;
        }
        log::debug!("connection {peer} added to poll group (slot {idx})");
        self.conns[idx as usize] = Some(TcpConn::new(sock, peer, idx, listener, &self.opts, slot, ctx.now));
        self.live += 1;
    }

    fn poll(&mut self, ctx: &mut GroupCtx) -> usize {
        let mut work = 0;
        if let Some(p) = self.poll.as_mut() {
            if p.poll(&mut self.events, Some(Duration::ZERO)).is_ok() {
                for ev in self.events.iter() {
                    if let Some(Some(c)) = self.conns.get_mut(ev.token().0) {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            c.readable = true;
                        }
                        if ev.is_read_closed() || ev.is_error() {
                            c.peer_closed = true;
                        }
                        if ev.is_writable() || ev.is_write_closed() {
                            c.writable = true;
                        }
                    }
                }
            }
        }
        if std::mem::take(&mut self.reclaim) {
            // Before any connection takes buffers for new commands, so the pool never grows
            // for want of buffers that are merely waiting to be handed back.
            for c in self.conns.iter_mut().flatten() {
                c.reclaim(ctx);
            }
        }
        let mut dead = Vec::new();
        for (i, slot) in self.conns.iter_mut().enumerate() {
            let Some(c) = slot.as_mut() else { continue };
            if c.state != ConnState::Closed {
                work += c.retry_need_buf(ctx);
                if c.readable || c.rx_pending() {
                    work += c.on_readable(ctx);
                }
                if ctx.tick {
                    work += c.poll_timers(ctx);
                    work += c.poll_events(ctx);
                }
                if c.tx_pending() {
                    work += c.flush().min(1);
                }
                // Heap buffers whose payloads this flush wrote out go back to the pool.
                c.reclaim(ctx);
                if c.state == ConnState::Closing && !c.tx_pending() {
                    c.close(ctx);
                } else if c.state == ConnState::Closing && !c.writable {
                    // The peer is not reading: do not wait forever for the TermReq to go out.
                    c.close(ctx);
                }
            }
            if c.is_drained() {
                dead.push(i);
            }
        }
        for i in dead {
            self.remove(i);
        }
        work
    }

    fn bdev_complete(&mut self, conn: u32, slot: u16, done: BdevCompletion, ctx: &mut GroupCtx) {
        match self.conns.get_mut(conn as usize) {
            Some(Some(c)) => {
                c.bdev_complete(slot, done, ctx);
            }
            _ => {
                if let Some(b) = done.buf {
                    ctx.bufs.put(b);
                }
            }
        }
    }

    fn flush_completions(&mut self) {
        for c in self.conns.iter_mut().flatten() {
            if c.tx_pending() && c.writable {
                c.flush();
                self.reclaim = true;
            }
        }
    }

    fn num_connections(&self) -> usize {
        self.live
    }

    fn close_all(&mut self) {
        for c in self.conns.iter_mut().flatten() {
            c.fail(super::conn::Fatal::Close("target shutting down"), &[]);
        }
    }
}
