//! Unnamed channels (issue 19, `Node::channel`) in the simulation: a node makes one as
//! `Node::channel` does (the real [`Inbox`], [`Switchboard::add_unnamed`](super::super::Switchboard::add_unnamed),
//! the real [`Sender`] and [`Receiver`]), and a sender of it travels: encoded on the node that
//! holds it (the real `Serialize`), it is decoded on another node (or the same) at any later
//! step, inside that node's decoding context (the real `Deserialize`, which makes the
//! decoded sender's router with `Switchboard::unnamed_route`). The carrier is the simulation's
//! mail, not a channel's message: a sender may sit in a message for as long as anyone keeps
//! it, so it may be decoded at any time, on any node that runs.
//!
//! Events: a channel made; a sender given to a node; sends on any sender a node holds (one
//! sending task per channel and node, numbering its messages); takes on the owner's receiver; a
//! sender dropped (the last one on a node cancels its send in progress); the receiver dropped;
//! a close from any node that holds a sender. The schedule's faults apply as they are: crashes,
//! leaves, freezes and cuts (removals while alive and start-overs), broken connections.
//!
//! Checked (see [`super::unnamed_check`]): credit out never above the receiver's capacity;
//! nothing taken that was not sent, nor twice, nor out of order per sending node, but from a
//! node removed while alive; a receiver ends only after a close, or its node's removal; once
//! it ends after a close, it has yielded every message whose send returned on a node alive and
//! never removed. Once the faults stop: every sending task finishes (everything sent, or a send
//! failed); every message of a live node is taken while the receiver lives and no close came;
//! every receiver ends after a close or its node's removal; once the receiver is dropped or its
//! node stopped or was removed, every sender a live node holds says `is_closed`. Each node's
//! unnamed routers stay at most one per channel, and none once every handle is dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::{FutureExt, Stream};

use super::{Sim, Woken, TRACE};
use crate::channel::decoding;
use crate::channel::inbox::Inbox;
use crate::channel::registrar::Registrar;
use crate::channel::router::ChannelRoute;
use crate::ids::{EndpointId, NodeId};
use crate::{Receiver, SendError, Sender};

/// A message of an unnamed channel: (channel, sending node, its number there).
pub(super) type UMsg = (usize, NodeId, u64);

/// A sending task's send in progress, and the number it sends.
type SendOp = Pin<Box<dyn Future<Output = Result<u64, SendError<UMsg>>>>>;

/// The most unnamed channels one schedule makes.
const MAX_CHANNELS: usize = 5;

/// The unnamed channels of one schedule, and what was sent and taken on them.
#[derive(Default)]
pub(super) struct Unnamed {
    /// Whether this schedule has unnamed channels (off: the schedule draws nothing for them,
    /// and is the one it was before they came).
    pub(super) on: bool,
    pub(super) chans: Vec<Chan>,
    /// Senders on their way: (to node, channel, the encoded sender).
    mail: Vec<(NodeId, usize, Vec<u8>)>,
    /// Every message whose send returned `Ok`.
    pub(super) sent: BTreeSet<UMsg>,
    /// How many times each message was taken.
    pub(super) taken: HashMap<UMsg, u32>,
    /// Per (channel, sending node), the last number taken.
    pub(super) last: HashMap<(usize, NodeId), u64>,
    /// Senders decoded (mail delivered), and closes.
    pub(super) decoded: u64,
    pub(super) closes: u64,
    /// Nodes that started to leave: what they send meanwhile on credit they had is taken in
    /// once their leave is committed, while that credit is free again (the capacity check's
    /// slack, as for a node removed while alive).
    pub(super) leaving: u32,
}

/// One unnamed channel.
pub(super) struct Chan {
    pub(super) owner: NodeId,
    pub(super) id: EndpointId,
    pub(super) capacity: u32,
    pub(super) inbox: Arc<Inbox<UMsg>>,
    /// The owner's receiver, until its application drops it.
    pub(super) rx: Option<Receiver<UMsg>>,
    woken: Arc<Woken>,
    /// It said `None`.
    pub(super) ended: bool,
    /// The application dropped the receiver.
    pub(super) dropped: bool,
    /// Its owner stopped (crashed), or leaves.
    pub(super) owner_stopped: bool,
    /// Its owner was removed while alive (or started over) since the channel was made.
    pub(super) owner_removed: bool,
    /// The nodes that closed it (a sender's `close`).
    pub(super) closers: Vec<NodeId>,
    /// Per node, what its application holds of the channel.
    pub(super) holders: BTreeMap<NodeId, Holder>,
}

impl Chan {
    /// The receiver is gone, or its node: what was sent and not taken may be dropped.
    pub(super) fn over(&self) -> bool {
        self.dropped || self.owner_stopped || self.owner_removed
    }
}

/// What a node's application holds of an unnamed channel: its senders, and one sending task.
pub(super) struct Holder {
    pub(super) senders: Vec<Sender<UMsg>>,
    pub(super) next: u64,
    pub(super) total: u64,
    op: Option<SendOp>,
    /// The send in progress started after this node closed the channel: it must fail.
    op_after_close: bool,
    woken: Arc<Woken>,
    /// A send failed: the channel is closed (until a sender comes again: perhaps on a new
    /// router, which learns only when it sends).
    pub(super) failed: bool,
    /// A send returned `Ok` on the router its senders share now (its window had credit): once
    /// the receiver or its node is gone, the router must be told.
    pub(super) sent_on_route: bool,
    /// This node closed the channel.
    closed_here: bool,
}

impl Holder {
    fn new(total: u64) -> Self {
        let woken = Arc::new(Woken::default());
        woken.wake_by_ref();
        Holder {
            senders: Vec::new(),
            next: 0,
            total,
            op: None,
            op_after_close: false,
            woken,
            failed: false,
            sent_on_route: false,
            closed_here: false,
        }
    }

    /// Nothing more to send: everything sent, a send failed, or no sender left to send with.
    pub(super) fn finished(&self) -> bool {
        self.failed || self.next == self.total || (self.senders.is_empty() && self.op.is_none())
    }
}

impl Sim {
    /// One step of the unnamed channels' schedule, node `i`'s.
    pub(super) fn unnamed_step(&mut self, i: usize, faults: bool) {
        match self.rng.below(40) {
            0..=1 => self.make_unnamed(i),
            2..=7 => self.give(i),
            8..=12 => {
                let k = self.rng.below(self.unnamed.mail.len().max(1));
                self.deliver(k);
            }
            13..=24 => self.usend(i),
            25..=34 => self.utake(i),
            35 => self.drop_sender(i),
            36 if faults && self.rng.below(3) == 0 => self.drop_unnamed_receiver(i),
            37 if faults && self.rng.below(3) == 0 => self.uclose(i),
            _ => {}
        }
    }

    /// A random channel of which node `i`'s application holds something (`pick` says what).
    fn pick(&mut self, i: usize, pick: impl Fn(&Chan, NodeId) -> bool) -> Option<usize> {
        let id = self.nodes[i].id;
        if !self.nodes[i].runs() {
            return None;
        }
        let ks: Vec<usize> =
            (0..self.unnamed.chans.len()).filter(|k| pick(&self.unnamed.chans[*k], id)).collect();
        (!ks.is_empty()).then(|| ks[self.rng.below(ks.len())])
    }

    /// Node `i` makes an unnamed channel, as `Node::channel` does.
    fn make_unnamed(&mut self, i: usize) {
        if !self.nodes[i].runs() || self.unnamed.chans.len() >= MAX_CHANNELS {
            return;
        }
        let capacity = 1 + self.rng.below(8) as u32;
        let total = 5 + self.rng.below(40) as u64;
        let node = &self.nodes[i];
        let core = &node.core;
        // Only once the node has seen itself let in, as a `Node` is when it starts.
        if core.switch.admission() == 0 {
            return;
        }
        let id = crate::ids::UNNAMED | crate::clock::random_u64();
        let route =
            Arc::new(ChannelRoute::new_unnamed(node.id, id, core.switch.unnamed_counters()));
        route.owner_admitted.store(core.switch.admission(), std::sync::atomic::Ordering::Relaxed);
        let links = Arc::downgrade(&core.peers);
        let inbox =
            Arc::new(Inbox::<UMsg>::new(id, route.clone(), capacity as usize, false, links));
        let weak = Arc::downgrade(core);
        let on_drop = Arc::new(move |id, mine| {
            if let Some(core) = weak.upgrade() {
                core.switch.unnamed_dropped(id, mine);
            }
        });
        let context = context(node);
        inbox.set_unnamed(Arc::new(crate::channel::inbox::owner::Unnamed { context, on_drop }));
        core.switch.add_unnamed(inbox.clone());
        let registrar: Arc<dyn Registrar> = core.clone();
        let tx = Sender::unnamed(registrar, route);
        let rx = Receiver::unnamed(inbox.clone());
        if *TRACE {
            eprintln!(
                "node {}: unnamed channel {} ({id}), capacity {capacity}, admitted {}",
                node.id,
                self.unnamed.chans.len(),
                core.switch.admission()
            );
        }
        let leaving = self.nodes[i].leave.is_some();
        // (Or under an admission the cluster has since replaced: it starts over again once it
        // sees that, and its channels of before end.)
        let last = self.log.last().expect("log");
        let me = self.nodes[i].id;
        let admission = self.nodes[i].core.switch.admission();
        let stale = admission != 0 && last.admitted(me).is_some_and(|a| a != admission);
        let removed = !last.nodes.contains_key(&me) || self.nodes[i].rejoin.doomed || stale;
        let woken = Arc::new(Woken::default());
        woken.wake_by_ref();
        let mut holder = Holder::new(total);
        holder.senders.push(tx);
        self.unnamed.chans.push(Chan {
            owner: node.id,
            id,
            capacity,
            inbox,
            rx: Some(rx),
            woken,
            ended: false,
            dropped: false,
            // (Made while its node leaves: over at once.)
            owner_stopped: leaving,
            // (Made while its node is removed, cut off: over once it starts over.)
            owner_removed: removed,
            closers: Vec::new(),
            holders: BTreeMap::from([(node.id, holder)]),
        });
    }

    /// Node `i` puts one of its senders in a message to a node (perhaps itself).
    fn give(&mut self, i: usize) {
        let Some(k) =
            self.pick(i, |c, me| c.holders.get(&me).is_some_and(|h| !h.senders.is_empty()))
        else {
            return;
        };
        let to = self.nodes[self.rng.below(self.nodes.len())].id;
        let holder = &self.unnamed.chans[k].holders[&self.nodes[i].id];
        let tx = &holder.senders[self.rng.below(holder.senders.len())];
        let bytes = rmp_serde::to_vec(tx).expect("a sender encodes");
        if *TRACE {
            eprintln!("node {} gives a sender of unnamed {k} to node {to}", self.nodes[i].id);
        }
        self.unnamed.mail.push((to, k, bytes));
    }

    /// Mail `m` (if any) is decoded where it goes, if that node runs; to a dead node, it is lost.
    /// Whatever the two nodes know of each other: the receiving node may not have applied the
    /// owner's admission yet (its router waits for it), nor the owner the receiving node's (it
    /// answers the node's want once it has: `Switchboard::defer_want`).
    fn deliver(&mut self, m: usize) {
        let Some(&(to, k, _)) = self.unnamed.mail.get(m) else { return };
        if self.node(to).dead {
            self.unnamed.mail.swap_remove(m);
            return;
        }
        if !self.node(to).runs() {
            return;
        }
        let (_, _, bytes) = self.unnamed.mail.swap_remove(m);
        let ctx = context(self.node(to));
        let tx: Sender<UMsg> = decoding::with(Some(&ctx), || rmp_serde::from_slice(&bytes))
            .expect("a sender decodes on a node that runs");
        if *TRACE {
            eprintln!("node {to} decodes a sender of unnamed {k} (closed: {})", tx.is_closed());
        }
        self.unnamed.decoded += 1;
        let total = 5 + self.rng.below(40) as u64;
        let holder = self.unnamed.chans[k].holders.entry(to).or_insert_with(|| Holder::new(total));
        holder.senders.push(tx);
        holder.failed = false;
        holder.woken.wake_by_ref();
    }

    /// Node `i`'s sending task of a channel goes on, if woken: the next send.
    fn usend(&mut self, i: usize) {
        let Some(k) = self.pick(i, |c, me| c.holders.get(&me).is_some_and(|h| !h.finished()))
        else {
            return;
        };
        self.usend_on(i, k);
    }

    pub(super) fn usend_on(&mut self, i: usize, k: usize) {
        let me = self.nodes[i].id;
        if !self.nodes[i].runs() {
            return;
        }
        let pick = self.rng.next() as usize;
        // (A node leaving starts no more sends, as on named channels: its application is
        // shutting down, and its senders refuse. One under way runs to its end.)
        let leaving = self.nodes[i].leave.is_some();
        let Some(h) = self.unnamed.chans[k].holders.get_mut(&me) else { return };
        if h.finished() || (leaving && h.op.is_none()) || !h.woken.take() {
            return;
        }
        if h.op.is_none() {
            let tx = h.senders[pick % h.senders.len()].clone();
            let next = h.next;
            h.op_after_close = h.closed_here;
            h.op = Some(Box::pin(async move { tx.send((k, me, next)).await.map(|()| next) }));
        }
        let waker = Waker::from(h.woken.clone());
        let op = h.op.as_mut().expect("a send");
        let Poll::Ready(result) = op.as_mut().poll(&mut Context::from_waker(&waker)) else {
            return;
        };
        h.op = None;
        h.woken.wake_by_ref();
        if *TRACE {
            eprintln!("node {me} unnamed {k} send: {result:?}");
        }
        let after_close = h.op_after_close;
        match result {
            Ok(seq) => {
                assert!(!after_close, "node {me}: a send on unnamed {k} after its close went");
                h.next = seq + 1;
                h.sent_on_route = true;
                self.unnamed.sent.insert((k, me, seq));
            }
            Err(_) => {
                h.failed = true;
                let c = &self.unnamed.chans[k];
                assert!(
                    c.over() || !c.closers.is_empty() || leaving,
                    "node {me}: a send on unnamed {k} failed, neither closed, its receiver gone \
                     nor its node leaving"
                );
            }
        }
    }

    /// The owner's application takes from one of node `i`'s unnamed receivers, if woken.
    fn utake(&mut self, i: usize) {
        let Some(k) = self.pick(i, |c, me| c.owner == me && c.rx.is_some() && !c.ended) else {
            return;
        };
        self.utake_on(k);
    }

    pub(super) fn utake_on(&mut self, k: usize) {
        let c = &mut self.unnamed.chans[k];
        let owner = c.owner;
        if !self.nodes[owner as usize - 1].runs() || c.ended || !c.woken.take() {
            return;
        }
        let Some(rx) = c.rx.as_mut() else { return };
        let waker = Waker::from(c.woken.clone());
        let got = match Pin::new(rx).poll_next(&mut Context::from_waker(&waker)) {
            Poll::Ready(got) => got,
            Poll::Pending => return,
        };
        c.woken.wake_by_ref();
        match got {
            Some(msg) => self.utook(k, msg),
            None => self.uended(k),
        }
    }

    /// A node's application drops one of its senders (the last one: its send in progress too).
    fn drop_sender(&mut self, i: usize) {
        let Some(k) =
            self.pick(i, |c, me| c.holders.get(&me).is_some_and(|h| !h.senders.is_empty()))
        else {
            return;
        };
        let me = self.nodes[i].id;
        let at = self.rng.next() as usize;
        let h = self.unnamed.chans[k].holders.get_mut(&me).expect("a holder");
        drop(h.senders.swap_remove(at % h.senders.len()));
        if h.senders.is_empty() {
            h.op = None;
            h.sent_on_route = false;
        }
        if *TRACE {
            eprintln!("node {me} drops a sender of unnamed {k} ({} left)", h.senders.len());
        }
    }

    /// The owner's application drops the receiver.
    fn drop_unnamed_receiver(&mut self, i: usize) {
        let Some(k) = self.pick(i, |c, me| c.owner == me && c.rx.is_some()) else { return };
        if *TRACE {
            eprintln!("node {} drops the receiver of unnamed {k}", self.nodes[i].id);
        }
        let c = &mut self.unnamed.chans[k];
        c.dropped = true;
        drop(c.rx.take());
    }

    /// A node's application closes a channel it holds a sender of.
    fn uclose(&mut self, i: usize) {
        let Some(k) =
            self.pick(i, |c, me| c.holders.get(&me).is_some_and(|h| !h.senders.is_empty()))
        else {
            return;
        };
        let me = self.nodes[i].id;
        if *TRACE {
            eprintln!("node {me} closes unnamed {k}");
        }
        let c = &mut self.unnamed.chans[k];
        c.closers.push(me);
        let h = c.holders.get_mut(&me).expect("a holder");
        h.closed_here = true;
        let closed = h.senders[0].close().now_or_never();
        assert!(matches!(closed, Some(Ok(()))), "an unnamed channel's close returns at once");
        assert!(h.senders.iter().all(Sender::is_closed), "closed, and a sender here says open");
        self.unnamed.closes += 1;
    }

    /// Node `id` stopped (crashed), or leaves: its channels are over (its receivers and
    /// senders are kept, so that nothing of theirs runs on drop; its mail is lost as it comes).
    pub(super) fn unnamed_stopped(&mut self, id: NodeId) {
        self.unnamed.leaving += 1;
        for c in &mut self.unnamed.chans {
            if c.owner == id {
                c.owner_stopped = true;
            }
        }
    }

    /// Node `id` was removed while alive, or starts over: its channels are over. And the
    /// owners of the channels it sent on forget it (it is another incarnation once back): like
    /// a router that never sent, it learns of a receiver gone when it next asks for credit.
    pub(super) fn unnamed_owner_removed(&mut self, id: NodeId) {
        for c in &mut self.unnamed.chans {
            if c.owner == id {
                c.owner_removed = true;
            }
            if let Some(h) = c.holders.get_mut(&id) {
                h.sent_on_route = false;
            }
        }
    }

    /// The fair finish, for node `i`: its mail is decoded, its sending tasks and receivers go on.
    pub(super) fn unnamed_finish(&mut self, i: usize) {
        let me = self.nodes[i].id;
        let mut m = 0;
        while m < self.unnamed.mail.len() {
            let before = self.unnamed.mail.len();
            if self.unnamed.mail[m].0 == me {
                self.deliver(m);
            }
            if self.unnamed.mail.len() == before {
                m += 1;
            }
        }
        for k in 0..self.unnamed.chans.len() {
            for _ in 0..64 {
                self.usend_on(i, k);
                if self.unnamed.chans[k].owner == me {
                    self.utake_on(k);
                }
            }
        }
    }

    /// Once the schedule is done: every live node's application drops what it holds of the
    /// unnamed channels (senders first), so that their tables must empty.
    pub(super) fn drop_unnamed_all(&mut self) {
        self.unnamed.mail.clear();
        let live: BTreeSet<NodeId> = self.nodes.iter().filter(|n| !n.dead).map(|n| n.id).collect();
        for c in &mut self.unnamed.chans {
            for (node, h) in &mut c.holders {
                if live.contains(node) {
                    h.op = None;
                    h.senders.clear();
                }
            }
        }
        for c in &mut self.unnamed.chans {
            if live.contains(&c.owner) {
                drop(c.rx.take());
            }
        }
    }
}

/// What node `node`'s receivers decode with (as `Node::channel` and `EndpointActor::start_for`
/// set it).
fn context(node: &super::Node) -> decoding::Context {
    let weak: std::sync::Weak<super::node::Core> = Arc::downgrade(&node.core);
    let registrar: std::sync::Weak<dyn Registrar> = weak;
    decoding::Context { peers: Arc::downgrade(&node.core.peers), node: Arc::new(registrar) }
}
