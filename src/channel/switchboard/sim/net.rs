//! The simulated network: per ordered pair of nodes, the connections that carried the first
//! node's outbox to the second, each a FIFO of frames read by the real reader
//! ([`Reader`]: the stream's numbering, skipping what came already). A writer takes what the
//! outbox has queued ([`Outbox::take`](crate::link::outbox::Outbox::take)); a new connection
//! first resends what the peer may not have ([`Outbox::resume`](crate::link::outbox::Outbox::resume)),
//! from where the peer says it stands, as the handshake does. A connection that breaks loses
//! what it carried, or delivers it late, behind the connection that replaced it.

use std::sync::Arc;

use super::{Conn, Sim, TRACE};
use crate::ids::NodeId;
use crate::link::connection::Reader;
use crate::link::wire;
use crate::sync::lock;

impl Sim {
    /// The writer of link `from` -> `to` takes everything queued and writes it, on a new
    /// connection if there is none (resending first what `to` may not have).
    pub(super) fn write(&mut self, from: NodeId, to: NodeId) {
        if !self.node(from).reachable() || self.node(to).dead || self.node(to).rejoin.cut {
            return;
        }
        let Some(peer) = self.node(from).core.peers.find(to) else { return };
        let fence_held = self.node(from).rejoin.fence_held;
        let conns = self.links.entry((from, to)).or_default();
        if let Some(c) = conns.last_mut().filter(|c| !Arc::ptr_eq(&c.writer, &peer)) {
            // The writing node forgot the peer (and made a new one): that connection stopped.
            c.open = false;
            c.frames.clear();
        }
        if !conns.last().is_some_and(|c| c.open) {
            // The handshake: the accepting side says where it stands in the stream.
            let to_node = self.nodes.iter().find(|n| n.id == to).expect("node");
            // (Dialed back where the membership says, as the accepting side does.)
            let peers = &to_node.core.peers;
            let back = peers.get_or_add(from, &peers.dial_back(from, &super::node::addr(from)));
            let received = lock(&back.inbound).received();
            let frames = peer.outbox.resume(received).into();
            let reader = Reader::new(to_node.links.clone(), back.clone());
            let writer = peer.clone();
            conns.push(Conn { frames, reader, open: true, writer, read_for: back });
        }
        let mut out = Vec::new();
        peer.outbox.take(&mut out);
        if fence_held {
            let fence =
                out.iter().any(|buf| matches!(wire::decode(buf), Ok(wire::Frame::Fence { .. })));
            assert!(
                !fence,
                "node {from} fenced before it delivered again what it sent before it started over"
            );
        }
        let conn = conns.last_mut().expect("a connection");
        conn.frames.extend(out);
    }

    /// Read the next frame of connection `i` of link `from` -> `to`.
    pub(super) fn read(&mut self, from: NodeId, to: NodeId, i: usize) {
        let current = self.node(to).core.peers.find(from);
        let Some(conn) = self.links.get_mut(&(from, to)).and_then(|c| c.get_mut(i)) else {
            return;
        };
        if !current.is_some_and(|p| Arc::ptr_eq(&p, &conn.read_for)) {
            // The reading node forgot the peer: that connection stopped, with what it carried.
            conn.open = false;
            conn.frames.clear();
            self.drop_drained(from, to);
            return;
        }
        let Some(buf) = conn.frames.pop_front() else { return };
        let frame = wire::decode(&buf).expect("a frame a node encoded decodes");
        if *TRACE {
            eprintln!("{from} -> {to} #{i}: {frame:?}");
        }
        let bye = matches!(frame, wire::Frame::Bye { .. });
        match conn.reader.take_in(frame, &buf) {
            Ok(true) if bye => {
                self.byes.insert((to, from));
            }
            Ok(true) => {}
            Ok(false) => panic!("node {to} is gone"),
            Err(e) => panic!("link {from} -> {to} closed: {e}"),
        }
        self.drop_drained(from, to);
    }

    /// Broken connections with nothing left to read go; as each ends, the reading node forgets
    /// the peer if it knows it only from connections it accepted (as the connection task does).
    fn drop_drained(&mut self, from: NodeId, to: NodeId) {
        let Some(conns) = self.links.get_mut(&(from, to)) else { return };
        let before = conns.len();
        conns.retain(|c| c.open || !c.frames.is_empty());
        if conns.len() < before {
            self.node(to).core.peers.forget_stranger(from);
        }
    }

    /// The connection between `a` and `b` breaks, both ways: what it still carried is lost,
    /// or (`late`) still read, after what the next connection carries, perhaps.
    pub(super) fn reset(&mut self, a: NodeId, b: NodeId, late: bool) {
        for link in [(a, b), (b, a)] {
            if let Some(conns) = self.links.get_mut(&link) {
                for c in conns.iter_mut() {
                    c.open = false;
                    if !late {
                        c.frames.clear();
                    }
                }
            }
            self.drop_drained(link.0, link.1);
        }
    }

    /// Every connection to `node` is gone (it died); those from it lose what they carried, or
    /// (`late`) deliver it still.
    pub(super) fn cut_dead(&mut self, node: NodeId, late: bool) {
        self.links.retain(|(_, to), _| *to != node);
        for ((from, to), conns) in self.links.iter_mut() {
            if *from == node {
                for c in conns.iter_mut() {
                    c.open = false;
                    if !late {
                        c.frames.clear();
                    }
                }
                let _ = to;
            }
        }
        let links: Vec<(NodeId, NodeId)> = self.links.keys().copied().collect();
        for (from, to) in links {
            self.drop_drained(from, to);
        }
        self.links.retain(|_, conns| !conns.is_empty());
    }

    /// Links with frames to read: (from, to, connection).
    pub(super) fn readable(&self) -> Vec<(NodeId, NodeId, usize)> {
        let mut out = Vec::new();
        for ((from, to), conns) in &self.links {
            // (A node cut off reads nothing, and nothing of it is read, until the cut heals.)
            if !self.node(*to).reachable() || self.node(*from).rejoin.cut {
                continue;
            }
            for (i, c) in conns.iter().enumerate() {
                if !c.frames.is_empty() {
                    out.push((*from, *to, i));
                }
            }
        }
        out
    }

    /// Ordered pairs of live nodes where the first has something queued for the second.
    pub(super) fn writable(&self) -> Vec<(NodeId, NodeId)> {
        let mut out = Vec::new();
        for a in self.nodes.iter().filter(|n| n.reachable()) {
            for b in self.nodes.iter().filter(|n| !n.dead && !n.rejoin.cut && n.id != a.id) {
                // A link with frames sent and not acknowledged reconnects by itself (and
                // resends them), as the link task does.
                let connected =
                    self.links.get(&(a.id, b.id)).is_some_and(|c| c.iter().any(|c| c.open));
                let work = |p: &crate::link::peer::Peer| {
                    p.outbox.has_queued() || (!connected && p.outbox.has_work())
                };
                if a.core.peers.find(b.id).is_some_and(|p| work(&p)) {
                    out.push((a.id, b.id));
                }
            }
        }
        out
    }
}
