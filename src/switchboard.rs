//! The switchboard: on each node, what connects the stops of a message's path. It owns the
//! channel routers and the receivers' inboxes of this node, and takes what the connections'
//! readers hand up: data for an inbox ([`Switchboard::deliver`], parked if the inbox is not
//! known yet), credit back for a router ([`Switchboard::ack`]), a close fence, a receiver gone.
//! When the registry changes ([`Switchboard::refresh`]) it rebuilds the routers, sends `Gone`
//! for receivers that left, fences closed channels and lets go of dropped receivers' inboxes.
//!
//! Each concern it connects keeps its own state: credit in [`crate::credit`], fences in
//! [`crate::close`], parked data in [`crate::parked`], dropped receivers in
//! [`crate::tombstones`], routing in [`crate::router`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::close::Fences;
use crate::credit::Credits;
use crate::inbox::ErasedInbox;
use crate::parked::Parked;
use crate::peer::{lock, Peers};
use crate::registry::{EndpointId, NodeId, Registry};
use crate::router::{ChannelRoute, Target};
use crate::tasks::Tasks;
use crate::tombstones::Tombstones;
use crate::wire::{self, Frame};

/// How long a leaving node waits for its messages to reach other nodes.
pub(crate) const HAND_OVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One node's routers and inboxes, and the state of the concerns between them.
#[derive(Debug)]
pub(crate) struct Switchboard {
    me: NodeId,
    peers: Arc<Peers>,
    registry: watch::Receiver<Arc<Registry>>,
    tasks: Tasks,
    cancel: CancellationToken,
    routes: Mutex<HashMap<String, Arc<ChannelRoute>>>,
    inboxes: Mutex<HashMap<EndpointId, Arc<dyn ErasedInbox>>>,
    /// Data for receivers on this node whose registration this node has not seen yet.
    parked: Parked,
    /// Credit towards each remote receiver.
    credits: Credits,
    /// Fences received and sent, per closed channel.
    fences: Fences,
    /// Dropped receivers of this node, waiting for every node's `Gone`.
    tombstones: Tombstones,
    /// The members at the last refresh: a node that drops out of them has left, and its link goes.
    members: Mutex<BTreeSet<NodeId>>,
    /// Every receiver in the registry at the last refresh, with its node: one that drops out is
    /// told (`Gone`) by every node, after the last data it had for it.
    receivers: Mutex<BTreeMap<EndpointId, NodeId>>,
    /// Set when this node starts leaving: its receivers leave the registry before the node
    /// leaves the membership, and that is not a removal to report.
    leaving: AtomicBool,
}

impl Switchboard {
    pub(crate) fn new(
        me: NodeId,
        peers: Arc<Peers>,
        registry: watch::Receiver<Arc<Registry>>,
        tasks: Tasks,
        cancel: CancellationToken,
    ) -> Self {
        Switchboard {
            me,
            peers,
            registry,
            tasks,
            cancel,
            routes: Mutex::default(),
            inboxes: Mutex::default(),
            parked: Parked::default(),
            credits: Credits::default(),
            fences: Fences::default(),
            tombstones: Tombstones::default(),
            members: Mutex::default(),
            receivers: Mutex::default(),
            leaving: AtomicBool::new(false),
        }
    }

    /// This node is leaving the cluster (a graceful shutdown has started).
    pub(crate) fn leaving(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    /// The node is stopping: every router refuses, every inbox ends after what it holds.
    pub(crate) fn close_all(&self) {
        for route in lock(&self.routes).values() {
            route.close();
        }
        for inbox in lock(&self.inboxes).values() {
            inbox.close(BTreeSet::new());
        }
    }

    /// Let go of every inbox (the node has stopped).
    pub(crate) fn clear(&self) {
        lock(&self.inboxes).clear();
    }
}

impl Switchboard {
    /// This node's router for `channel`.
    pub(crate) fn route(&self, channel: &str) -> Arc<ChannelRoute> {
        let route = {
            let mut routes = lock(&self.routes);
            if let Some(r) = routes.get(channel) {
                return r.clone();
            }
            let r = Arc::new(ChannelRoute::new(channel));
            routes.insert(channel.to_owned(), r.clone());
            r
        };
        let registry = self.registry.borrow().clone();
        self.refresh_route(&route, &registry);
        route
    }

    pub(crate) fn add_inbox(&self, inbox: Arc<dyn ErasedInbox>) {
        let id = inbox.id();
        lock(&self.inboxes).insert(id, inbox.clone());
        for (from, msg) in self.parked.take(id) {
            let n = inbox.push_remote(from, &mut std::iter::once(msg));
            self.peers.send_ack(from, id, n, inbox.ack_batch());
        }
        let registry = self.registry.borrow().clone();
        self.refresh_route(inbox.channel(), &registry);
    }

    /// Messages from node `from` for receiver `to` (called by the connection reader).
    pub(crate) fn deliver(
        &self,
        from: NodeId,
        to: EndpointId,
        mut msgs: impl Iterator<Item = Bytes>,
    ) {
        let inbox = lock(&self.inboxes).get(&to).cloned();
        match inbox {
            Some(inbox) => {
                let n = inbox.push_remote(from, &mut msgs);
                self.peers.send_ack(from, to, n, inbox.ack_batch());
            }
            None => self.parked.park(from, to, msgs),
        }
    }

    /// Credit back from a remote receiver (called by the connection reader).
    pub(crate) fn ack(&self, to: EndpointId, n: u32) {
        self.credits.release(to, n);
    }

    /// Node `from` sends nothing more to receiver `to` (called by the connection reader).
    pub(crate) fn gone(&self, from: NodeId, to: EndpointId) {
        let held = lock(&self.inboxes).contains_key(&to);
        self.tombstones.gone(to, from, held);
        let registry = self.registry.borrow().clone();
        self.release_tombstones(&registry);
    }

    /// Let go of the inboxes of dropped receivers that nothing more can reach: removed from the
    /// registry, and every node that was a member then has said `Gone` (or left). Their actors
    /// end once they have re-routed what is left.
    fn release_tombstones(&self, registry: &Registry) {
        let registered: BTreeSet<EndpointId> =
            registry.channels.values().flat_map(|c| c.endpoints.keys().copied()).collect();
        let mut inboxes = lock(&self.inboxes);
        inboxes.retain(|id, inbox| {
            registered.contains(id) || !inbox.is_detached() || !self.tombstones.release(*id)
        });
        self.tombstones.retain_early(|id| inboxes.contains_key(&id));
    }

    /// How many receivers' inboxes this node holds, dropped ones still re-routing included.
    pub(crate) fn inbox_count(&self) -> usize {
        lock(&self.inboxes).len()
    }

    /// Node `from` fenced `channel` (called by the connection reader).
    pub(crate) fn fence(&self, from: NodeId, channel: &str) {
        self.fences.received(channel, from);
        let inboxes: Vec<_> = lock(&self.inboxes).values().cloned().collect();
        for inbox in inboxes.iter().filter(|i| i.channel().name == channel) {
            inbox.fence(from);
        }
    }

    /// Hand what this node's receivers hold to receivers on other nodes, and flush every outbox,
    /// within [`HAND_OVER_TIMEOUT`]. A channel with no receiver elsewhere keeps its messages
    /// here: its receivers yield them, then `None`.
    pub(crate) async fn hand_over(&self) {
        let inboxes: Vec<_> = lock(&self.inboxes).values().cloned().collect();
        let mut routes = Vec::new();
        for inbox in inboxes {
            if inbox.channel().receiver_count() > 0 {
                inbox.hand_over();
                routes.push(inbox.channel().clone());
            }
        }
        let done = async {
            for route in &routes {
                route.rerouting_done().await;
            }
            for peer in self.peers.all() {
                peer.outbox.flushed().await;
            }
        };
        if tokio::time::timeout(HAND_OVER_TIMEOUT, done).await.is_err() {
            tracing::warn!("shutdown: messages still on their way after {HAND_OVER_TIMEOUT:?}");
        }
    }

    /// The registry changed: rebuild every router, and process closes.
    pub(crate) fn refresh(&self, registry: &Registry) {
        let now: BTreeSet<NodeId> = registry.nodes.keys().copied().collect();
        let before = std::mem::replace(&mut *lock(&self.members), now.clone());
        for gone in before.difference(&now).filter(|n| **n != self.me) {
            self.peers.remove(*gone);
        }
        self.tombstones.members(&now);
        // The membership says where each member listens: links dial that, whatever a seed or a
        // hello said before.
        for (id, addr) in registry.nodes.iter().filter(|(id, _)| **id != self.me) {
            if self.peers.find(*id).is_some() {
                self.peers.get(*id, addr);
            }
        }
        let routes: Vec<_> = lock(&self.routes).values().cloned().collect();
        for route in &routes {
            self.refresh_route(route, registry);
        }
        // Windows of receivers that are gone.
        self.credits.retain(|id, channel| {
            registry.channels.get(channel).is_some_and(|c| c.endpoints.contains_key(&id))
        });
        // Receivers that are gone: say so to their node, behind any data already queued for them
        // (the routers above no longer pick them, so nothing more can follow).
        let now: BTreeMap<EndpointId, NodeId> = registry
            .channels
            .values()
            .flat_map(|c| c.receivers().map(|e| (e.id, e.node)))
            .collect();
        let before = std::mem::replace(&mut *lock(&self.receivers), now.clone());
        for (id, node) in before.iter().filter(|(id, _)| !now.contains_key(id)) {
            if *node == self.me {
                let others = registry.nodes.keys().copied().filter(|n| *n != self.me);
                self.tombstones.removed(*id, others);
                continue;
            }
            if let Some(addr) = registry.nodes.get(node) {
                let frame = wire::encode(&Frame::Gone { to: *id });
                self.peers.get(*node, addr).outbox.push_frame(frame, true);
            }
        }
        // A receiver of this node that the registry no longer lists, though its handle is alive:
        // the node was removed (cut off for longer than the failure timeout) and let back in.
        // It ends cleanly rather than wait for data that can no longer be routed to it. (An id
        // this registry has not issued yet is a registration newer than this refresh.)
        if registry.nodes.contains_key(&self.me) && !self.leaving.load(Ordering::SeqCst) {
            for inbox in lock(&self.inboxes).values() {
                let id = inbox.id();
                if registry.issued(id) && !now.contains_key(&id) && inbox.orphan() {
                    tracing::warn!(
                        channel = %inbox.channel().name,
                        receiver = id,
                        "this node was removed from the cluster: the receiver ends after what it holds"
                    );
                }
            }
        }
        self.release_tombstones(registry);
        // Fence every closed channel once: nothing more of it will leave this node.
        for ch in registry.channels.values().filter(|c| c.closed && c.closed_by.contains(&self.me))
        {
            if !self.fences.send_once(&ch.name) {
                continue;
            }
            let peers: Vec<_> = ch
                .receivers()
                .map(|e| e.node)
                .filter(|n| *n != self.me)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter_map(|n| Some(self.peers.get(n, registry.nodes.get(&n)?)))
                .collect();
            let frame = wire::encode(&Frame::Fence { channel: ch.name.clone() });
            let route = lock(&self.routes).get(&ch.name).cloned();
            match route {
                // Messages of dropped receivers still being re-routed go out before the fence.
                Some(route) => {
                    route.close();
                    let cancel = self.cancel.clone();
                    self.tasks.spawn(async move {
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = route.rerouting_done() => {
                                for p in peers {
                                    p.outbox.push_frame(frame.clone(), true);
                                }
                            }
                        }
                    });
                }
                None => {
                    for p in peers {
                        p.outbox.push_frame(frame.clone(), true);
                    }
                }
            }
        }
    }

    fn refresh_route(&self, route: &Arc<ChannelRoute>, registry: &Registry) {
        let Some(ch) = registry.channels.get(&route.name) else {
            route.set_targets(Vec::new());
            return;
        };
        if ch.closed {
            route.close();
        }
        let inboxes = lock(&self.inboxes);
        let mut targets = Vec::new();
        for e in ch.receivers() {
            if e.node == self.me {
                if let Some(inbox) = inboxes.get(&e.id) {
                    targets.push(Target::Local(inbox.clone()));
                }
            } else if let Some(addr) = registry.nodes.get(&e.node) {
                let window = self.credits.window(e.id, e.capacity, route);
                targets.push(Target::Remote {
                    id: e.id,
                    peer: self.peers.get(e.node, addr),
                    window,
                });
            }
        }
        if ch.closed {
            let fences = self.fences.heard(&ch.name);
            let waiting: BTreeSet<NodeId> = ch
                .closed_by
                .iter()
                .filter(|n| **n != self.me && !fences.contains(n))
                .copied()
                .collect();
            for inbox in inboxes.values().filter(|i| i.channel().name == ch.name) {
                inbox.close(waiting.clone());
            }
        }
        drop(inboxes);
        route.set_targets(targets);
    }
}
