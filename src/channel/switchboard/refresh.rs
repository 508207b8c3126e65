//! The registry changed: the switchboard finds the channels that changed since the last registry
//! it saw, and for those only rebuilds the router, offers credit to new sending nodes, delivers
//! elsewhere what was sent to receivers of nodes that died, fences a closed channel, retires a
//! channel gone from the registry and lets go of dropped receivers' inboxes; a change of
//! membership also revisits the links and every router and inbox of this node.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{DueFence, Switchboard};
use crate::channel::credit::Departure;
use crate::channel::inbox::ErasedInbox;
use crate::channel::router::{ChannelRoute, Target};
use crate::cluster::registry::{Channel, Registry};
use crate::ids::{is_unnamed, EndpointId, NodeId};
use crate::link::wire::{self, Frame};
use crate::rpc::EndpointKind;
use crate::sync::lock;

impl Switchboard {
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
        // (Also when the same members are listed again, with nodes come and gone in between
        // (this node paused, or its refreshes skipped registries): an unnamed channel of a node
        // that came and went meanwhile is over, and its senders here are closed only by
        // `refresh_unnamed` (the switchboard simulation's seed 170215: never closed, their
        // message sent after it never taken).)
        let members_changed = before.nodes != registry.nodes
            || before.membership_changes() != registry.membership_changes();
        let left: Vec<NodeId> = before
            .nodes
            .keys()
            .filter(|n| **n != self.me && !registry.nodes.contains_key(n))
            .copied()
            .collect();
        if members_changed {
            if let Some(admitted) = registry.admitted(self.me) {
                // (Kept for when a later registry no longer lists this node: `admission`.)
                self.admitted.fetch_max(admitted, Ordering::SeqCst);
            }
            self.refresh_links(&left, registry);
        }
        let mut orphans = Vec::new();
        for name in registry.changed_channels(&before) {
            orphans.extend(self.refresh_channel(&name, &before, registry));
        }
        if members_changed {
            self.refresh_members(&left, registry);
        }
        // Receivers of this node removed with it restart only now, after every node that left
        // is applied to the inboxes: what a node that left gracefully sent them is held here as
        // this node's own then, and kept through the restart. Restarted first, they released
        // it to that node, which had handed over and said its last word already (the
        // switchboard simulation's seed 204087, with held sends: this node paused, removed,
        // and refreshed past both at once; lost). (A change of membership checked every inbox,
        // after its departures: `refresh_members`.)
        if !members_changed {
            self.check_orphans(&orphans, registry);
        }
        self.prune_kept(registry);
        self.answer_wants_of_leavers(registry);
        // Early grants for receivers that are gone (not for those this node has yet to see).
        self.credits.retain_early(|id| registry.issued(id) && !registry.is_registered(id));
        // Wants kept for ids that will have no inbox here (a receiver of this node gone before
        // its inbox came, its registration withdrawn; a sender; another node's receiver): the
        // asking nodes settle their windows by the registry.
        self.early_wants.take(|(_, id)| !self.may_come_here(registry, *id));
    }

    /// Wants kept by [`Switchboard::want_of`] from nodes no member as this node saw it: answered
    /// for those that left gracefully lately (recorded by this refresh) or are members, refused
    /// for the rest.
    fn answer_wants_of_leavers(&self, registry: &Registry) {
        for (from, to) in self.wants_of_leavers.take(|_| true) {
            let left = registry.left_gracefully(from) && self.left_lately(from);
            if registry.nodes.contains_key(&from) || left {
                if let Some(inbox) = self.inbox(to) {
                    inbox.want(from);
                }
            } else {
                tracing::warn!(
                    node = from,
                    receiver = to,
                    "credit asked for by a non-member: refused"
                );
            }
        }
    }

    /// The membership changed: links go to where each member listens, and to nobody that left.
    pub(super) fn refresh_links(&self, left: &[NodeId], registry: &Registry) {
        for gone in left {
            self.peers.remove(*gone);
            self.departed(*gone);
        }
        // Peers of nodes that came and went since the last refresh (one that is paused between
        // its admission and its first refresh misses whoever left meanwhile): not in `left`,
        // and kept for ever, with a link dialing a node that is gone (the switchboard
        // simulation's seed 57, with freezes, once it bounded the tables).
        // (Not before this node is a member: the seeds it joins through are not listed yet.)
        if registry.nodes.contains_key(&self.me) {
            let member = |id| id == self.me || registry.nodes.contains_key(&id);
            for stale in self.peers.non_members(member) {
                self.peers.remove(stale);
            }
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
    pub(super) fn refresh_members(&self, left: &[NodeId], registry: &Registry) {
        let routes: Vec<_> = lock(&self.routes).values().cloned().collect();
        for route in &routes {
            self.refresh_route(route, registry);
        }
        // Receivers removed before their node was (no release will come from a dead node).
        for node in left.iter().filter(|n| !self.left_after_me(**n, registry)) {
            // (An unnamed channel's receiver: its router decides, knowing which incarnation
            // of the node it is of: `refresh_unnamed`.)
            for id in self.credits.on_node(*node).into_iter().filter(|id| !is_unnamed(*id)) {
                self.released(*node, id);
            }
        }
        self.refresh_unnamed(left, registry);
        let inboxes: Vec<_> = lock(&self.inboxes).values().cloned().collect();
        let left: Vec<(NodeId, Departure)> =
            left.iter().map(|n| (*n, self.departure(*n, registry))).collect();
        for inbox in &inboxes {
            for &(node, how) in &left {
                // It asked for credit and left before it came: a leaving node hands over what
                // it holds after its leave is committed, and waits for that credit. Asked again,
                // as by a member that left lately (`Switchboard::want`). Forgotten, it waited
                // for nothing until its hand-over timed out, and what it held was lost (the
                // switchboard simulation's seed 184707, with freezes).
                // (Left gracefully, the credit it had stays counted: it may hand over on it,
                // see `Grants::forget`.) Not one that died or was removed while alive: it hands
                // nothing over, and the credit granted to it was out until its departure's
                // timer freed it, 10 s, with a receiver's whole capacity at times (the
                // switchboard simulation's seed 121444, with impatient leaves: the hand-over of
                // another node waited for that room in vain).
                self.forget_node(inbox, node, how, how.graceful() && self.left_lately(node));
            }
        }
        self.check_orphans(&inboxes, registry);
    }

    /// `inbox` forgets node `node`, which left (`how`); if it wanted credit and `may_want` (it
    /// may still hand over what it holds), its want stands again, as a member's would.
    pub(super) fn forget_node(
        &self,
        inbox: &Arc<dyn ErasedInbox>,
        node: NodeId,
        how: Departure,
        may_want: bool,
    ) {
        if inbox.node_left(node, false, how) && may_want {
            inbox.want(node);
        }
    }

    /// How node `node`, no longer a member, left, as `registry` says: removed, or gracefully
    /// before or after this node's own leave (the log's order).
    pub(super) fn departure(&self, node: NodeId, registry: &Registry) -> Departure {
        if !registry.left_gracefully(node) {
            Departure::Removed
        } else if registry.left_gracefully_before(node, self.me) {
            Departure::LeftFirst
        } else {
            Departure::LeftAfter
        }
    }

    /// Whether node `node` left gracefully after this node did (the log's order). What this
    /// node sent its receivers is then theirs to deliver: they hold it as their own once they
    /// have applied this node's leave, which comes first, and release only what they did not
    /// take in. Delivered elsewhere from here too on their removal, it was delivered twice
    /// (the switchboard simulation's seed 38565, with impatient leaves, once seed 123468 had
    /// them deliver it).
    fn left_after_me(&self, node: NodeId, registry: &Registry) -> bool {
        registry.left_gracefully(node) && registry.left_gracefully_before(self.me, node)
    }

    /// Receivers of this node that the registry no longer lists, though their handles are
    /// alive: the node was removed (cut off for longer than the failure timeout), and starts
    /// over once it is let back in (see [`Switchboard::start_over`]). Each restarts at once
    /// (the other nodes deliver elsewhere what they sent it, and count nothing it grants under
    /// that id), and is noted for the node, as vanished senders are. (An id this registry has
    /// not issued yet is a registration newer than this refresh.)
    ///
    /// At once, not when the node starts over: a receiver registered while the node had not
    /// yet started over from one removal, and removed with it again, kept granting under its
    /// removed id through that start-over, and its new registration counted that credit out
    /// for ever (the switchboard simulation's seed 104967).
    pub(super) fn check_orphans(&self, inboxes: &[Arc<dyn ErasedInbox>], registry: &Registry) {
        if self.leaving.load(Ordering::SeqCst) {
            return;
        }
        let gone: Vec<&Arc<dyn ErasedInbox>> = inboxes
            .iter()
            .filter(|inbox| {
                let id = inbox.id();
                registry.issued(id) && !registry.is_registered(id) && !inbox.is_detached()
            })
            .collect();
        for inbox in &gone {
            inbox.restart();
        }
        lock(&self.vanished).extend(gone.iter().map(|inbox| inbox.id()));
    }

    /// Channel `name` changed between `before` and `registry` (or appeared, or went). Returns
    /// this node's receivers gone from it whose handles are alive, for
    /// [`Switchboard::check_orphans`] once the membership is refreshed too.
    #[must_use = "orphaned receivers restart"]
    pub(super) fn refresh_channel(
        &self,
        name: &str,
        before: &Registry,
        registry: &Registry,
    ) -> Vec<Arc<dyn ErasedInbox>> {
        let old = before.channel(name);
        let new = registry.channel(name);
        let renewed = matches!((old, new), (Some(o), Some(n)) if o.created != n.created);
        if let Some(old) = old.filter(|_| new.is_none() || renewed) {
            self.retire(name, old);
        }
        if let Some(route) = self.find_route(name) {
            self.refresh_route(&route, registry);
        }
        let listed = |ch: Option<&Arc<Channel>>, id: EndpointId| {
            ch.is_some_and(|c| c.endpoint(id).is_some())
        };
        // Receivers gone from the channel. Those of nodes that died or left (or are leaving:
        // their membership change may come only after other nodes' leaves, a leader that
        // leaves being removed again by the next one): what was sent to them and not taken
        // goes elsewhere. (A receiver dropped on a live node says so itself, after what it
        // took: `released`.)
        let gone: Vec<(EndpointId, NodeId)> = old
            .into_iter()
            .flat_map(|c| c.receivers())
            .filter(|e| !listed(new, e.id))
            .map(|e| (e.id, e.node))
            .collect();
        for (id, node) in &gone {
            let left = !registry.nodes.contains_key(node) || registry.left_gracefully(*node);
            if *node != self.me && left && !self.left_after_me(*node, registry) {
                self.released(*node, *id);
            }
        }
        // Senders of this node gone from the registry: dropped, or removed with this node
        // (the node finds out which: `Switchboard::take_vanished`).
        if !self.leaving.load(Ordering::SeqCst) {
            let mine = old
                .into_iter()
                .flat_map(|c| c.endpoints.iter())
                .filter(|e| e.kind == EndpointKind::Sender && e.node == self.me)
                .filter(|e| !listed(new, e.id))
                .map(|e| e.id);
            lock(&self.vanished).extend(mine);
        }
        // Windows of receivers that are gone, once what was sent to them is settled (the rest
        // go when their release comes: `released`).
        self.credits.settle(gone.iter().map(|(id, _)| *id));
        if let Some(route) = self.find_route(name).filter(|_| !gone.is_empty()) {
            route.prune_departed();
        }
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
        mine_gone
    }

    /// Closed channel `name` left the registry (and a new channel of that name may have come):
    /// its router leaves this node's table, so that the name's next endpoints get a new one,
    /// and its fences are forgotten. Whatever still holds the old router (a window settling, a
    /// re-delivery) finishes with it. Its dead letters stay readable: a new router of the name
    /// takes them over.
    pub(super) fn retire(&self, name: &str, channel: &Channel) {
        self.fences.forget(name, channel.created);
        let Some(old) = self.find_route(name) else { return };
        old.set_targets(Vec::new());
        // An open channel left with its last endpoint while this node still holds messages sent
        // on it (kept for receivers that went, or being delivered again): they wait for the
        // name's next receiver (promise 5), on this same router. A new one would never see
        // them: they are placed through the router they were sent on.
        // So does one that a handle of this node still holds (a sender or receiver whose
        // registration was removed with this node, which registers it again as it starts over;
        // a sender decoded from a message, registering): kept, the name's next registration
        // gives it its targets. A new router instead, the handle's stayed without targets for
        // ever (a sender frozen past the failure timeout never sent again). (The table's and
        // `old` are two.)
        if !channel.is_closed() && (holds_messages(&old) || Arc::strong_count(&old) > 2) {
            lock(&self.kept).push(name.to_owned());
            return;
        }
        lock(&self.routes).remove(name);
        if let Some(dead) = old.dead().filter(|d| d.counts().held > 0) {
            let mut routes = lock(&self.routes);
            let fresh = self.new_route(name);
            fresh.dead_letters().adopt(dead);
            routes.entry(name.to_owned()).or_insert(fresh);
        }
    }

    /// Let go of the routers kept for channels gone from the registry (see
    /// [`Switchboard::retire`]) once they hold nothing; forget those whose channel is back
    /// (ordinary routers again). O(kept), nearly always none.
    fn prune_kept(&self, registry: &Registry) {
        let mut kept = lock(&self.kept);
        kept.retain(|name| {
            if registry.channel(name).is_some() {
                return false;
            }
            let mut routes = lock(&self.routes);
            match routes.get(name.as_str()) {
                Some(route) if holds_messages(route) || Arc::strong_count(route) > 1 => true,
                Some(route) => {
                    // (Dead letters keep a router for as long as they are kept: `retire`.)
                    if route.dead().is_none_or(|d| d.counts().held == 0) {
                        routes.remove(name.as_str());
                    }
                    false
                }
                None => false,
            }
        });
    }

    /// The inboxes this node holds for receivers `ch` lists.
    pub(super) fn local_inboxes(&self, ch: &Channel) -> Vec<Arc<dyn ErasedInbox>> {
        let inboxes = lock(&self.inboxes);
        ch.receivers()
            .filter(|e| e.node == self.me)
            .filter_map(|e| inboxes.get(&e.id).cloned())
            .collect()
    }

    /// Fence closed channel `name` once: nothing more of it will leave this node. The fence is
    /// held until [`Switchboard::send_fences`], which the node calls after it has looked at
    /// the same registry for its own removal (a start-over begun then delivers again what the
    /// old incarnation sent, and the fence waits for that).
    pub(super) fn send_fence(&self, name: &str, ch: &Channel, registry: &Registry) {
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
        let route = self.find_route(name);
        if let Some(route) = &route {
            route.close();
        }
        lock(&self.fences_due).push(DueFence { frame, peers, route });
    }

    /// Whether this node fenced a channel in an earlier refresh than the last (a fence made due
    /// by the last one is held until [`Switchboard::send_fences`]).
    #[cfg(test)]
    pub(crate) fn fenced_before(&self) -> bool {
        self.fences.sent_any() && lock(&self.fences_due).is_empty()
    }

    /// Send the close fences held since the last call (see [`Switchboard::send_fence`]): each
    /// after the redeliveries in progress on this node, so that nothing redelivered lands
    /// behind it.
    pub(crate) fn send_fences(&self) {
        let due = std::mem::take(&mut *lock(&self.fences_due));
        for DueFence { frame, peers, route } in due {
            let send = move || {
                for p in peers {
                    p.outbox.push_frame(frame.clone(), true);
                }
            };
            match route {
                Some(route) => self.after_rerouting(route, send),
                None => send(),
            }
        }
    }

    /// Run `then`, in a task of the node's, once nothing is left to re-route on `route`, unless
    /// the node stops first: a fence goes behind what this node delivers again.
    pub(super) fn after_rerouting(
        &self,
        route: Arc<ChannelRoute>,
        then: impl FnOnce() + Send + 'static,
    ) {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {}
                () = route.rerouting_done() => then(),
            }
        });
    }

    pub(super) fn refresh_route(&self, route: &Arc<ChannelRoute>, registry: &Registry) {
        let Some(ch) = registry.channel(route.name()) else {
            route.set_targets(Vec::new());
            return;
        };
        if ch.is_closed() {
            route.close();
        }
        let mut targets = Vec::new();
        {
            let inboxes = lock(&self.inboxes);
            let left = self.left.load(Ordering::SeqCst);
            for e in ch.receivers() {
                if e.node == self.me && left {
                    // Out of the registry already (see `Switchboard::left`).
                } else if e.node == self.me {
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
            let fences = self.fences.heard(route.name(), ch.created);
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

/// Whether this node holds messages sent on `route`'s channel that no receiver has taken: kept
/// for receivers on other nodes, or being delivered again.
fn holds_messages(route: &ChannelRoute) -> bool {
    route.is_rerouting() || route.in_flight() > 0
}
