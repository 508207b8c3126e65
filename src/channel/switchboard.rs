//! The switchboard: on each node, what connects the stops of a message's path. It owns the
//! channel routers and the receivers' inboxes of this node, and takes what the connections'
//! readers hand up: data for an inbox ([`Switchboard::deliver`]), credit for a router's windows
//! and the release of kept messages ([`Switchboard::credit`]), requests for credit and credit
//! given back, a close fence, a receiver gone ([`Switchboard::released`]: what it did not take
//! is delivered elsewhere). When the registry changes ([`Switchboard::refresh`]) it finds the
//! channels that changed since the last registry it saw, and for those only rebuilds the router,
//! offers credit to new sending nodes, delivers elsewhere what was sent to receivers of nodes
//! that died, fences a closed channel, retires a channel gone from the registry and lets go of
//! dropped receivers' inboxes; a change of membership also revisits the links and every router
//! and inbox of this node.
//!
//! Each concern it connects keeps its own state: credit in [`crate::channel::credit`], fences in
//! [`crate::channel::close`], kept messages in [`crate::link::outbox`], redelivery in [`crate::channel::redelivery`],
//! routing in [`crate::channel::router`].

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::channel::close::Fences;
use crate::channel::credit::Credits;
use crate::channel::inbox::ErasedInbox;
use crate::channel::router::{ChannelRoute, Target};
use crate::cluster::registry::{Channel, Registry};
use crate::ids::{EndpointId, NodeId};
use crate::link::peer::Peers;
use crate::link::wire::{self, Frame};
use crate::rpc::EndpointKind;
use crate::sync::lock;
use crate::tasks::Tasks;

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
    /// Credit towards each remote receiver.
    credits: Credits<ChannelRoute>,
    /// Fences received and sent, per closed channel.
    fences: Fences,
    /// The registry at the last refresh: the next one acts on what differs from it (a member
    /// gone has left, and its link goes; a receiver gone with its node died or left, and what
    /// was sent to it is delivered elsewhere).
    last: Mutex<Arc<Registry>>,
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
            credits: Credits::default(),
            fences: Fences::default(),
            last: Mutex::default(),
            leaving: AtomicBool::new(false),
        }
    }

    /// This node is leaving the cluster (a graceful shutdown has started).
    pub(crate) fn leaving(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    /// Before this node leaves: tell every sending node what this node's receivers have taken
    /// of its messages, and wait (at most [`HAND_OVER_TIMEOUT`]) until every peer has everything
    /// queued for it. Once the leave is committed, a sending node delivers elsewhere whatever it
    /// was not told was taken; without this, messages taken just before the leave (their
    /// "taken" still queued, or read by the sending node after the leave) would be delivered
    /// twice.
    pub(crate) async fn tell_taken(&self) {
        let inboxes: Vec<Arc<dyn ErasedInbox>> = lock(&self.inboxes).values().cloned().collect();
        for inbox in &inboxes {
            inbox.tell_taken();
        }
        if tokio::time::timeout(HAND_OVER_TIMEOUT, self.peers_flushed()).await.is_err() {
            tracing::warn!(
                "leaving: a peer did not confirm what was taken within {HAND_OVER_TIMEOUT:?}"
            );
        }
    }

    /// Wait until every peer has acknowledged everything queued for it so far.
    async fn peers_flushed(&self) {
        for peer in self.peers.all() {
            peer.outbox.flushed().await;
        }
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
        // Under the refresh lock: a refresh running meanwhile must not set targets it read before
        // this router existed (they would stand until the channel changes again).
        let _refreshing = lock(&self.last);
        let registry = self.registry.borrow().clone();
        self.refresh_route(&route, &registry);
        route
    }

    pub(crate) fn add_inbox(&self, inbox: Arc<dyn ErasedInbox>) {
        // Under the refresh lock, as in `route`: a refresh that read the inboxes before this one
        // was added would otherwise set targets without it.
        let _refreshing = lock(&self.last);
        lock(&self.inboxes).insert(inbox.id(), inbox.clone());
        let registry = self.registry.borrow().clone();
        self.refresh_route(inbox.channel(), &registry);
        inbox.offer(&self.sending_nodes(&inbox.channel().name, &registry));
    }

    /// Endpoint `id` of this node was deregistered (its handle dropped): if its inbox is still
    /// here and the registry no longer lists it, the inbox goes. (Usually the refresh that
    /// applies the deregistration removes it; a receiver the registry had dropped before, with
    /// its node, changes no channel when it is deregistered.)
    pub(crate) fn deregistered(&self, id: EndpointId) {
        let registry = self.registry.borrow().clone();
        if registry.is_registered(id) {
            return;
        }
        let mut inboxes = lock(&self.inboxes);
        if inboxes.get(&id).is_some_and(|i| i.is_detached()) {
            inboxes.remove(&id);
        }
    }

    /// The other nodes with senders of `channel`: those offered credit before they ask.
    fn sending_nodes(&self, channel: &str, registry: &Registry) -> Vec<NodeId> {
        let Some(ch) = registry.channel(channel) else { return Vec::new() };
        let nodes: BTreeSet<NodeId> = ch
            .endpoints
            .iter()
            .filter(|e| e.kind == EndpointKind::Sender && e.node != self.me)
            .map(|e| e.node)
            .collect();
        nodes.into_iter().collect()
    }

    fn inbox(&self, id: EndpointId) -> Option<Arc<dyn ErasedInbox>> {
        lock(&self.inboxes).get(&id).cloned()
    }

    /// Tell node `to_node` that receiver `id` takes nothing more (it is gone).
    fn say_released(&self, to_node: NodeId, id: EndpointId) {
        if let Some(p) = self.peers.reach(to_node) {
            p.outbox.push_frame(wire::encode(&Frame::Released { to: id }), true);
        }
    }

    /// Something came from node `from` for receiver `id`, which this node does not hold: if it
    /// was a receiver of this node and is gone, tell the sender so (it delivers elsewhere).
    fn not_here(&self, from: NodeId, id: EndpointId) {
        let registry = self.registry.borrow().clone();
        if registry.issued(id) && !registry.is_registered(id) {
            self.say_released(from, id);
        } else {
            tracing::debug!(node = from, endpoint = id, "dropped a frame for an unknown receiver");
        }
    }

    /// Messages from node `from` for receiver `to` (called by the connection reader).
    pub(crate) fn deliver(&self, from: NodeId, to: EndpointId, msgs: impl Iterator<Item = Bytes>) {
        let mut msgs = msgs;
        match self.inbox(to) {
            Some(inbox) => inbox.push_remote(from, &mut msgs),
            None => self.not_here(from, to),
        }
    }

    /// Receiver `to` on node `from` took `taken` of this node's messages and grants `grant`.
    pub(crate) fn credit(&self, from: NodeId, to: EndpointId, taken: u32, grant: u32) {
        if taken > 0 {
            if let Some(p) = self.peers.find(from) {
                p.outbox.release(to, taken);
            }
        }
        if let Some(route) = self.credits.grant(to, from, grant) {
            route.wake();
        }
    }

    /// Node `from` wants credit with receiver `to`: given only to a node with a sender of the
    /// receiver's channel (credit given to any other would sit unused, taking room).
    pub(crate) fn want(&self, from: NodeId, to: EndpointId) {
        match self.inbox(to) {
            Some(inbox) => {
                let registry = self.registry.borrow().clone();
                if self.sending_nodes(&inbox.channel().name, &registry).contains(&from) {
                    inbox.want(from);
                } else {
                    tracing::warn!(
                        node = from,
                        receiver = to,
                        "credit asked for by a node without a sender of the channel: refused"
                    );
                }
            }
            None => self.not_here(from, to),
        }
    }

    /// Receiver `to` on node `from` wants its unused credit back.
    pub(crate) fn reclaim(&self, from: NodeId, to: EndpointId) {
        // Answered only for a receiver of that node this node has credit with.
        let Some((window, _, _)) = self.credits.get_from(to, from) else { return };
        let n = window.reclaim();
        if let Some(p) = self.peers.reach(from) {
            p.outbox.push_frame(wire::encode(&Frame::Return { to, n }), true);
        }
    }

    /// Node `from` gave back `n` credits with receiver `to`.
    pub(crate) fn returned(&self, from: NodeId, to: EndpointId, n: u32) {
        if let Some(inbox) = self.inbox(to) {
            inbox.returned(from, n);
        }
    }

    /// Receiver `to` on node `from` is gone: deliver elsewhere what it did not take (called by
    /// the connection reader, and when a node dies with its receivers).
    pub(crate) fn released(&self, from: NodeId, to: EndpointId) {
        // Only the receiver's node releases it.
        let Some((window, route, _)) = self.credits.get_from(to, from) else { return };
        if !window.release() {
            return;
        }
        // Counted as re-routing as they stop being kept: a sender waiting for its messages to be
        // taken never sees them neither in flight nor re-routing.
        let mut counted = 0;
        let kept = self
            .peers
            .find(from)
            .map(|p| {
                p.outbox.take_kept(to, |n| {
                    counted = n;
                    route.rerouting(n);
                })
            })
            .unwrap_or_default();
        // A kept frame that does not decode (never: this node encoded it) is not waited for.
        for _ in kept.len()..counted {
            route.rerouted();
        }
        self.redeliver(&route, kept);
        route.wake();
        // Settled: the window goes once the registry no longer lists the receiver (if it still
        // does, with the refresh that removes it).
        if !self.registry.borrow().is_registered(to) {
            self.credits.remove(to);
        }
    }

    /// Deliver `msgs` to other receivers of `route`'s channel, in the background (see
    /// [`crate::channel::redelivery`]). The caller has counted them as re-routing on the route.
    pub(crate) fn redeliver(&self, route: &Arc<ChannelRoute>, msgs: Vec<Bytes>) {
        crate::channel::redelivery::redeliver(
            route.clone(),
            msgs,
            &self.tasks,
            self.cancel.clone(),
        );
    }

    /// What this node holds of each channel it has a router for.
    pub(crate) fn stats(&self) -> Vec<crate::report::ChannelStats> {
        let routes: Vec<Arc<ChannelRoute>> = lock(&self.routes).values().cloned().collect();
        let mut buffered: HashMap<*const ChannelRoute, u64> = HashMap::new();
        for inbox in lock(&self.inboxes).values().filter(|i| !i.is_detached()) {
            *buffered.entry(Arc::as_ptr(inbox.channel())).or_default() += inbox.buffered() as u64;
        }
        let mut out: Vec<_> = routes
            .iter()
            .map(|r| {
                let dead = r.dead.counts();
                crate::report::ChannelStats {
                    name: r.name.clone(),
                    buffered: buffered.get(&Arc::as_ptr(r)).copied().unwrap_or(0),
                    in_flight: r.in_flight(),
                    dead_letters: dead.held,
                    dead_letters_total: dead.total,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The router of `channel`, if this node has one.
    pub(crate) fn find_route(&self, channel: &str) -> Option<Arc<ChannelRoute>> {
        lock(&self.routes).get(channel).cloned()
    }

    /// How many receivers' inboxes this node holds, dropped ones not yet deregistered included.
    pub(crate) fn inbox_count(&self) -> usize {
        lock(&self.inboxes).len()
    }

    /// Node `from` fenced `channel`, the one made by endpoint `created` (called by the
    /// connection reader).
    pub(crate) fn fence(&self, from: NodeId, channel: &str, created: EndpointId) {
        // Kept only from members, for channels that exist: a fence is never counted twice, and
        // what a stranger sends takes no room here.
        let registry = self.registry.borrow().clone();
        let ch = registry
            .channel(channel)
            .filter(|c| c.created == created && registry.nodes.contains_key(&from));
        let Some(ch) = ch else {
            tracing::warn!(node = from, %channel, "a fence from a non-member or for no channel: dropped");
            return;
        };
        self.fences.received(channel, created, from);
        for inbox in self.local_inboxes(ch) {
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
            let route = inbox.channel().clone();
            if route.has_remote() {
                if let Some(mine) = inbox.hand_over() {
                    self.redeliver(&route, mine);
                }
                routes.push(route);
            }
        }
        let done = async {
            for route in &routes {
                route.rerouting_done().await;
            }
            self.peers_flushed().await;
        };
        if tokio::time::timeout(HAND_OVER_TIMEOUT, done).await.is_err() {
            tracing::warn!("shutdown: messages still on their way after {HAND_OVER_TIMEOUT:?}");
        }
    }

    /// The registry changed: bring the routers and inboxes of the channels that changed up to
    /// date, and, when the membership changed, the links and every router of this node. What
    /// changed is found against the registry of the last refresh, without visiting what the two
    /// share ([`Registry::changed_channels`]): a registration costs O(log n) here, however many
    /// endpoints the registry holds. A registry older than the last one refreshed is ignored.
    pub(crate) fn refresh(&self, registry: &Arc<Registry>) {
        let mut last = lock(&self.last);
        if registry.version <= last.version {
            return;
        }
        let before = std::mem::replace(&mut *last, registry.clone());
        let members_changed = before.nodes != registry.nodes;
        let left: Vec<NodeId> = before
            .nodes
            .keys()
            .filter(|n| **n != self.me && !registry.nodes.contains_key(n))
            .copied()
            .collect();
        if members_changed {
            self.refresh_links(&left, registry);
        }
        for name in registry.changed_channels(&before) {
            self.refresh_channel(&name, &before, registry);
        }
        if members_changed {
            self.refresh_members(&left, registry);
        }
        // Early grants for receivers that are gone (at most `MAX_EARLY_GRANTS` of them).
        self.credits.retain_early(|id| registry.is_registered(id));
    }

    /// The membership changed: links go to where each member listens, and to nobody that left.
    fn refresh_links(&self, left: &[NodeId], registry: &Registry) {
        for gone in left {
            self.peers.remove(*gone);
        }
        self.peers.set_book(
            registry.nodes.iter().filter(|(id, _)| **id != self.me).map(|(id, a)| (*id, a.clone())),
            registry.nodes.contains_key(&self.me),
        );
        // The membership says where each member listens: links dial that, whatever a seed or a
        // hello said before.
        for (id, addr) in registry.nodes.iter().filter(|(id, _)| **id != self.me) {
            if self.peers.find(*id).is_some() {
                self.peers.get(*id, addr);
            }
        }
    }

    /// After the membership changed: every router of this node, what was sent to the receivers
    /// of nodes that left, and every inbox of this node (O(this node's routers and inboxes)).
    fn refresh_members(&self, left: &[NodeId], registry: &Registry) {
        let routes: Vec<_> = lock(&self.routes).values().cloned().collect();
        for route in &routes {
            self.refresh_route(route, registry);
        }
        // Receivers removed before their node was (no release will come from a dead node).
        for node in left {
            for id in self.credits.on_node(*node) {
                self.released(*node, id);
            }
        }
        let inboxes: Vec<_> = lock(&self.inboxes).values().cloned().collect();
        for inbox in &inboxes {
            for node in left {
                inbox.node_left(*node);
            }
        }
        self.check_orphans(&inboxes, registry);
    }

    /// A receiver of this node that the registry no longer lists, though its handle is alive:
    /// the node was removed (cut off for longer than the failure timeout) and let back in. It
    /// ends cleanly rather than wait for data that can no longer be routed to it. (An id this
    /// registry has not issued yet is a registration newer than this refresh.)
    fn check_orphans(&self, inboxes: &[Arc<dyn ErasedInbox>], registry: &Registry) {
        if !registry.nodes.contains_key(&self.me) || self.leaving.load(Ordering::SeqCst) {
            return;
        }
        for inbox in inboxes {
            let id = inbox.id();
            if registry.issued(id) && !registry.is_registered(id) && inbox.orphan() {
                tracing::warn!(
                    channel = %inbox.channel().name,
                    receiver = id,
                    "this node was removed from the cluster: the receiver ends after what it holds"
                );
            }
        }
    }

    /// Channel `name` changed between `before` and `registry` (or appeared, or went).
    fn refresh_channel(&self, name: &str, before: &Registry, registry: &Registry) {
        let old = before.channel(name);
        let new = registry.channel(name);
        let renewed = matches!((old, new), (Some(o), Some(n)) if o.created != n.created);
        if let Some(old) = old.filter(|_| new.is_none() || renewed) {
            self.retire(name, old.created);
        }
        if let Some(route) = self.find_route(name) {
            self.refresh_route(&route, registry);
        }
        let listed = |ch: Option<&Arc<Channel>>, id: EndpointId| {
            ch.is_some_and(|c| c.endpoint(id).is_some())
        };
        // Receivers gone from the channel. Those of nodes that died or left: what was sent to
        // them and not taken goes elsewhere. (A receiver dropped on a live node says so itself,
        // after what it took: `released`.)
        let gone: Vec<(EndpointId, NodeId)> = old
            .into_iter()
            .flat_map(|c| c.receivers())
            .filter(|e| !listed(new, e.id))
            .map(|e| (e.id, e.node))
            .collect();
        for (id, node) in &gone {
            if *node != self.me && !registry.nodes.contains_key(node) {
                self.released(*node, *id);
            }
        }
        // Windows of receivers that are gone, once what was sent to them is settled (the rest
        // go when their release comes: `released`).
        self.credits.settle(gone.iter().map(|(id, _)| *id));
        // Dropped receivers of this node whose deregistration is applied: nothing more is sent to
        // them on credit; whatever still comes is answered with a release.
        let mine_gone: Vec<Arc<dyn ErasedInbox>> = {
            let mut inboxes = lock(&self.inboxes);
            let mut alive = Vec::new();
            for (id, _) in gone.iter().filter(|(_, node)| *node == self.me) {
                match inboxes.get(id) {
                    Some(inbox) if inbox.is_detached() => {
                        inboxes.remove(id);
                    }
                    Some(inbox) => alive.push(inbox.clone()),
                    None => {}
                }
            }
            alive
        };
        self.check_orphans(&mine_gone, registry);
        if let Some(ch) = new {
            // New sending nodes are offered credit before they ask. Only when they changed: a
            // receiver added since was offered to them when its inbox came (`add_inbox`), so a
            // change of a channel with many receivers here does not visit them all.
            let senders = self.sending_nodes(name, registry);
            if renewed || senders != self.sending_nodes(name, before) {
                for inbox in self.local_inboxes(ch) {
                    if !inbox.is_detached() {
                        inbox.offer(&senders);
                    }
                }
            }
            if ch.closed_by(self.me) {
                self.send_fence(name, ch, registry);
            }
        }
    }

    /// Closed channel `name` left the registry (and a new channel of that name may have come):
    /// its router leaves this node's table, so that the name's next endpoints get a new one,
    /// and its fences are forgotten. Whatever still holds the old router (a window settling, a
    /// re-delivery) finishes with it. Its dead letters stay readable: a new router of the name
    /// takes them over.
    fn retire(&self, name: &str, created: EndpointId) {
        self.fences.forget(name, created);
        let old = lock(&self.routes).remove(name);
        let Some(old) = old else { return };
        old.set_targets(Vec::new());
        if old.dead.counts().held > 0 {
            let fresh = Arc::new(ChannelRoute::new(name));
            fresh.dead.adopt(&old.dead);
            lock(&self.routes).entry(name.to_owned()).or_insert(fresh);
        }
    }

    /// The inboxes this node holds for receivers `ch` lists.
    fn local_inboxes(&self, ch: &Channel) -> Vec<Arc<dyn ErasedInbox>> {
        let inboxes = lock(&self.inboxes);
        ch.receivers()
            .filter(|e| e.node == self.me)
            .filter_map(|e| inboxes.get(&e.id).cloned())
            .collect()
    }

    /// Fence closed channel `name` once: nothing more of it will leave this node.
    fn send_fence(&self, name: &str, ch: &Channel, registry: &Registry) {
        if !self.fences.send_once(name, ch.created) {
            return;
        }
        let peers: Vec<_> = ch
            .receivers()
            .map(|e| e.node)
            .filter(|n| *n != self.me)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter_map(|n| Some(self.peers.get(n, registry.nodes.get(&n)?)))
            .collect();
        let frame = wire::encode(&Frame::Fence { channel: name.to_owned(), created: ch.created });
        match self.find_route(name) {
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

    fn refresh_route(&self, route: &Arc<ChannelRoute>, registry: &Registry) {
        let Some(ch) = registry.channel(&route.name) else {
            route.set_targets(Vec::new());
            return;
        };
        if ch.is_closed() {
            route.close();
        }
        let mut targets = Vec::new();
        {
            let inboxes = lock(&self.inboxes);
            for e in ch.receivers() {
                if e.node == self.me {
                    if let Some(inbox) = inboxes.get(&e.id) {
                        targets.push(Target::Local(inbox.clone()));
                    }
                } else if let Some(addr) = registry.nodes.get(&e.node) {
                    let window = self.credits.window(e.id, e.node, route);
                    targets.push(Target::Remote {
                        id: e.id,
                        peer: self.peers.get(e.node, addr),
                        window,
                    });
                }
            }
        }
        if let Some(closed_by) = &ch.closed {
            let fences = self.fences.heard(&route.name, ch.created);
            let waiting: BTreeSet<NodeId> = closed_by
                .iter()
                .filter(|n| **n != self.me && !fences.contains(n))
                .copied()
                .collect();
            for inbox in self.local_inboxes(ch) {
                inbox.close(waiting.clone());
            }
        }
        route.set_targets(targets);
    }
}
