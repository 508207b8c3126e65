//! Unnamed channels (`Node::channel`): a receiver of this node that no registry lists, and the
//! senders of it that messages carried to other nodes. They ride the same path as a named
//! channel's (router, credit windows, outboxes, inbox): only what the registry does for a named
//! channel is done here instead.
//!
//! - The owner's router targets its inbox alone ([`Switchboard::add_unnamed`]); a node that
//!   decodes a sender gets a router targeting the owner ([`Switchboard::unnamed_route`]), one per
//!   channel and node, shared by every sender of it decoded there, with a credit window asked
//!   for on the first send.
//! - The receiver dropped, or its node gone (left, died, removed): the channel is closed on
//!   every node that holds a sender (told by [`Frame::Released`], or by the membership), and
//!   what was sent and not taken is dropped, as a tokio channel drops what its receiver left.
//! - A close ([`Switchboard::shut`]) is a fence round without Raft: the owner asks every node it
//!   granted credit for a fence ([`Frame::Shut`]); each closes its router and answers behind
//!   what it sent; the receiver yields what came before the last answer, then `None`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use super::Switchboard;
use crate::channel::credit::Departure;
use crate::channel::inbox::ErasedInbox;
use crate::channel::router::{ChannelRoute, Target};
use crate::cluster::registry::Registry;
use crate::ids::{is_unnamed, EndpointId, NodeId};
use crate::link::wire::{self, Frame};
use crate::sync::lock;

/// How many entries each of the switchboard's lists for unnamed channels keeps (wants from
/// nodes not known as members yet, channels closed here, closes due to owners with no link
/// yet): the latest, the oldest going first.
const MAX_LATEST: usize = 1024;

/// The latest [`MAX_LATEST`] entries of a list, each once (see [`MAX_LATEST`]).
#[derive(Debug)]
pub(super) struct Latest<T>(Mutex<VecDeque<T>>);

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest(Mutex::default())
    }
}

impl<T: PartialEq> Latest<T> {
    /// Add `entry`, unless listed; the oldest goes when the list is full.
    pub(super) fn push(&self, entry: T) {
        let mut list = lock(&self.0);
        if list.contains(&entry) {
            return;
        }
        if list.len() == MAX_LATEST {
            list.pop_front();
        }
        list.push_back(entry);
    }

    pub(super) fn contains(&self, entry: &T) -> bool {
        lock(&self.0).contains(entry)
    }

    /// Take out the entries `now` says are due, oldest first.
    pub(super) fn take(&self, now: impl Fn(&T) -> bool) -> VecDeque<T> {
        let mut list = lock(&self.0);
        let (due, later) = list.drain(..).partition(|e| now(e));
        *list = later;
        due
    }
}

/// How long a router of an unnamed channel whose owner this node does not know (its registry
/// lags behind the node the sender came from) waits for it to be admitted before it is closed.
const OWNER_UNKNOWN_FOR: std::time::Duration = super::HAND_OVER_TIMEOUT;

/// Where the owner of an unnamed channel's router stands in a registry.
enum OwnerIs<'a> {
    /// A member, the incarnation that made the channel (or one the sender did not name), at
    /// this address.
    Member(&'a str),
    /// Removed since it made the channel, or let in again since (another incarnation): the
    /// channel is over.
    Gone,
    /// The registry has not seen it let in yet (it lags behind the one the sender was made
    /// under).
    NotYet,
}

/// Where `route`'s owner stands in `registry`, by the membership change that let it in as the
/// sender names it (a node removed and let back in since, the registry may list it again, as
/// another incarnation; one lagging behind may not list it yet: the switchboard simulation's
/// seed 19041, with unnamed channels).
fn owner_in<'a>(route: &ChannelRoute, registry: &'a Registry) -> OwnerIs<'a> {
    let Some((owner, _)) = route.unnamed() else { return OwnerIs::Gone };
    let made = route.owner_admitted.load(Ordering::SeqCst);
    match (registry.admitted(owner), registry.nodes.get(&owner)) {
        (Some(a), Some(addr)) if made == 0 || a == made => OwnerIs::Member(addr),
        (Some(a), Some(_)) if a > made => OwnerIs::Gone,
        (Some(_), Some(_)) => OwnerIs::NotYet,
        (_, Some(addr)) => OwnerIs::Member(addr),
        (_, None) if made != 0 && registry.membership_changes() >= made => OwnerIs::Gone,
        (_, None) => OwnerIs::NotYet,
    }
}

impl Switchboard {
    /// This node's admission: which membership change let it in, as its registry shows, or,
    /// while it no longer lists this node (removed while alive, not yet let back in), the
    /// last that did: a channel made meanwhile is the old incarnation's, ended when this node
    /// starts over (`end_unnamed`), and closed for every node that has applied the removal (a
    /// sender of it decoded there is closed at once: `owner_in`). (0: this node was never a
    /// member, which a started `Node` always is.)
    /// An unnamed channel's senders name it (see `owner_in`).
    ///
    /// (Named as 0, such a channel's owner could not be told from its next incarnation, and a
    /// node whose registry does not list the owner yet waits for it only `OWNER_UNKNOWN_FOR`.)
    pub(crate) fn admission(&self) -> u64 {
        match self.registry.borrow().admitted(self.me) {
            Some(admitted) => {
                if self.admitted.load(Ordering::Relaxed) < admitted {
                    self.admitted.fetch_max(admitted, Ordering::SeqCst);
                }
                admitted
            }
            None => self.admitted.load(Ordering::SeqCst),
        }
    }

    /// Node `from`, not a member as this node sees it, wants credit with unnamed channel `to`
    /// of this node: kept, and answered once this node's registry admits it (it may be newer
    /// than this node, whose registry lags). Kept, at most [`MAX_LATEST`] of them (the
    /// oldest go), not answered: a node that never joins never gets credit.
    pub(super) fn defer_want(&self, from: NodeId, to: EndpointId) {
        tracing::debug!(
            node = from,
            receiver = to,
            "credit asked for by a node not known yet: deferred"
        );
        self.deferred_wants.push((from, to));
    }

    /// The membership changed: deferred wants of nodes that are members now are answered
    /// (one for a receiver gone since with a release: dropped, the node waited for ever: the
    /// switchboard simulation's seed 2, with unnamed channels).
    fn answer_deferred_wants(&self, registry: &Registry) {
        for (from, to) in self.deferred_wants.take(|(n, _)| registry.nodes.contains_key(n)) {
            // (Under the refresh lock: members of the registry being refreshed to.)
            self.want_of(from, to, Some(true));
        }
    }

    /// A new unnamed channel's receiver of this node, `inbox`: its router targets it alone.
    pub(crate) fn add_unnamed(&self, inbox: Arc<dyn ErasedInbox>) {
        let route = inbox.channel().clone();
        route.set_targets(vec![Target::Local(inbox.clone())]);
        // (Its router is found through the inbox, not the routers' table, which holds other
        // nodes' channels: one entry per channel, not two.)
        let mut inboxes = lock(&self.inboxes);
        self.refuse_if_leaving(&route);
        inboxes.insert(inbox.id(), inbox);
    }

    /// The router of unnamed channel `id`, whose receiver node `owner` holds, for a sender of it
    /// decoded on this node: the one senders decoded before share, or a new one. Closed from
    /// the start if the receiver is known to be gone (its owner is this node and does not hold
    /// it, or is not a member, with no link to it).
    pub(crate) fn unnamed_route(
        &self,
        owner: NodeId,
        id: EndpointId,
        admitted: u64,
    ) -> Arc<ChannelRoute> {
        let closed = || {
            let route = Arc::new(ChannelRoute::new_unnamed(owner, id, self.unnamed_counters()));
            route.close();
            route.users.fetch_add(1, Ordering::SeqCst);
            route
        };
        // This node's own channel: the router its receiver's inbox holds. (A sender naming
        // another owner with an id of this node's reaches only that owner, which answers
        // that its receiver is gone.)
        if owner == self.me {
            let own = lock(&self.inboxes).get(&id).cloned();
            return match own.filter(|i| !i.is_detached()) {
                Some(inbox) if inbox.channel().unnamed() == Some((owner, id)) => {
                    let route = inbox.channel().clone();
                    route.users.fetch_add(1, Ordering::SeqCst);
                    route
                }
                _ => closed(),
            };
        }
        let route = {
            let mut table = lock(&self.unnamed);
            if let Some(route) = table.get(&id).and_then(Weak::upgrade) {
                // (Another owner for the same id: a forged or garbled sender.)
                if route.unnamed() != Some((owner, id)) {
                    return closed();
                }
                route.users.fetch_add(1, Ordering::SeqCst);
                return route;
            }
            if self.cancel.is_cancelled() || self.closed_unnamed.contains(&id) {
                return closed();
            }
            let route = Arc::new(ChannelRoute::new_unnamed(owner, id, self.unnamed_counters()));
            self.refuse_if_leaving(&route);
            route.owner_admitted.store(admitted, Ordering::SeqCst);
            route.users.fetch_add(1, Ordering::SeqCst);
            table.insert(id, Arc::downgrade(&route));
            route
        };
        // (The registry this node last refreshed to, as its links are: a newer one, not yet
        // refreshed to, may list a member its links have let go of, and a link made for it
        // then was kept for ever: the switchboard simulation's seed 12377.)
        let registry = lock(&self.last).clone();
        self.target_unnamed(&route, &registry);
        if admitted == 0 && !route.owner_listed.load(Ordering::SeqCst) && !route.is_closed() {
            // Its owner is not a member as this node sees it (targeted through a link to it,
            // or not at all), and the sender did not say which incarnation of it made the
            // channel: closed unless this node sees it admitted in time (it died before this
            // node heard of it, and no removal will come to say so: the switchboard
            // simulation's seed 15864, with unnamed channels).
            let (weak, cancel) = (Arc::downgrade(&route), self.cancel.clone());
            let registry = self.registry.clone();
            self.tasks.spawn(async move {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(OWNER_UNKNOWN_FOR) => {
                        // (Not if this node's registry lists it by now: its refresh targets it.)
                        let member = registry.borrow().nodes.contains_key(&owner);
                        let unknown = |r: &Arc<ChannelRoute>| !r.owner_listed.load(Ordering::SeqCst);
                        if let Some(route) = weak.upgrade().filter(unknown).filter(|_| !member) {
                            route.close();
                        }
                    }
                }
            });
        }
        route
    }

    /// Point `route`, an unnamed channel's router on a node that does not own it, at its owner,
    /// with this node's credit window towards the receiver (new, after a start-over); closed if
    /// the owner cannot be reached (not a member, and no link to it).
    fn target_unnamed(&self, route: &Arc<ChannelRoute>, registry: &Registry) {
        let Some((owner, id)) = route.unnamed() else { return };
        if owner == self.me || route.is_closed() {
            return;
        }
        let peer = match owner_in(route, registry) {
            OwnerIs::Member(addr) => {
                route.owner_listed.store(true, Ordering::SeqCst);
                Some(self.peers.get(owner, addr))
            }
            OwnerIs::Gone => {
                self.unnamed_released(owner, id);
                self.closed_here(route);
                return;
            }
            // This node has not applied the owner's admission yet: a link to it tells where it
            // is (not one that is leaving: that is an earlier incarnation's); otherwise it
            // waits to see it admitted.
            OwnerIs::NotYet => self.peers.find(owner).filter(|p| !p.is_departing()),
        };
        let Some(peer) = peer else {
            // Targeted when this node sees the owner admitted (`refresh_unnamed`), or closed
            // after a while (see `unnamed_route`).
            tracing::debug!(node = owner, channel = %route.label(), "an unnamed channel's node is not known here yet");
            return;
        };
        // Under the table lock, as `unnamed_gone` removes the window: a router that left the
        // table makes none (it would outlive its senders, and a later router of the channel
        // would find it, waking the wrong one), and one made now is not removed by a router
        // gone before.
        let table = lock(&self.unnamed);
        let listed = table.get(&id).is_some_and(|r| std::ptr::eq(r.as_ptr(), Arc::as_ptr(route)));
        if !listed {
            return;
        }
        let window = self.credits.window(id, owner, route);
        drop(table);
        route.set_targets(vec![Target::Remote { id, peer, window }]);
    }

    /// After this node started over (every window new), or the membership changed: every
    /// unnamed channel's router of this node that sends to another node targets its owner
    /// again, and those whose owner `left` are closed (what was sent and not taken went with
    /// the owner).
    pub(super) fn refresh_unnamed(&self, left: &[NodeId], registry: &Registry) {
        self.answer_deferred_wants(registry);
        for (owner, to) in self.shuts_due.take(|(n, _)| registry.nodes.contains_key(n)) {
            self.fence_unnamed(owner, to, None);
        }
        let routes: Vec<Arc<ChannelRoute>> = {
            let mut table = lock(&self.unnamed);
            table.retain(|_, r| r.strong_count() > 0);
            table.values().filter_map(Weak::upgrade).collect()
        };
        let members: BTreeSet<NodeId> = registry.nodes.keys().copied().collect();
        for route in routes {
            let Some((owner, _)) = route.unnamed().filter(|(owner, _)| *owner != self.me) else {
                continue;
            };
            // Listed once and no longer, with no incarnation to tell by: it left, though this
            // node may have refreshed to no registry that had it (no departure names it: the
            // switchboard simulation's seed 581, with unnamed channels).
            let listed = route.owner_listed.load(Ordering::SeqCst);
            let unknown = route.owner_admitted.load(Ordering::SeqCst) == 0;
            if unknown && (left.contains(&owner) || (listed && !members.contains(&owner))) {
                if let Some((owner, id)) = route.unnamed() {
                    self.unnamed_released(owner, id);
                }
                self.closed_here(&route);
            } else {
                // (Closed here if the registry shows its incarnation gone.)
                self.target_unnamed(&route, registry);
            }
        }
        // The owner's side: a node that left sends nothing more (its fence, if one is awaited).
        // Nor does one that is not a member now, though no departure named it: this node
        // granted it credit, or asked it for a fence, as a member of a registry it never
        // refreshed to (the switchboard simulation's seeds 4802 and 10604, with unnamed
        // channels: waited for, or its credit out, for ever). Forgotten as one that left.
        let inboxes: Vec<Arc<dyn ErasedInbox>> =
            lock(&self.inboxes).values().filter(|i| is_unnamed(i.id())).cloned().collect();
        for inbox in inboxes {
            let known = inbox.granted().into_iter().chain(inbox.awaited());
            let gone: BTreeSet<NodeId> =
                known.filter(|n| *n != self.me && !members.contains(n)).collect();
            for node in left.iter().copied().chain(gone.iter().copied()) {
                inbox.fence(node);
            }
            // (Not one that left lately: its departure's timer voids the credit it holds
            // (`Switchboard::departed`) unless it is let back in meanwhile. A node removed
            // while alive may have been granted credit since (it asked as one that left lately,
            // see `Switchboard::want_of`) and still send on it: refused, its message was lost,
            // and the "taken" told for the next one acknowledged the lost one in its place (the
            // switchboard simulation's seed 1155, with unnamed channels).)
            for node in gone.into_iter().filter(|n| !left.contains(n) && !self.left_lately(*n)) {
                let _ = inbox.node_left(node, true, Departure::Removed);
            }
        }
    }

    /// A sender of `route`'s unnamed channel, made by [`Switchboard::unnamed_route`], is gone.
    /// The last on this node: its router leaves the table, and the credit this node holds goes
    /// back to the receiver (what was sent on it stays kept until taken). Nothing for the
    /// owner's own router.
    pub(crate) fn unnamed_gone(&self, route: &Arc<ChannelRoute>) {
        let Some((owner, id)) = route.unnamed() else { return };
        if owner == self.me {
            return;
        }
        let mut table = lock(&self.unnamed);
        if route.users.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        if table.get(&id).is_some_and(|r| std::ptr::eq(r.as_ptr(), Arc::as_ptr(route))) {
            table.remove(&id);
            // Credit kept for no window (granted after this node started over, or its window
            // went): no router of the channel is left here to take it, so it goes back now, as
            // `Switchboard::credit` gives it back once no router is left (kept for ever once the
            // owner had left: the switchboard simulation's seed 423, with unnamed channels).
            let n = self.credits.take_early(id, owner);
            if let Some(p) = self.peers.reach(owner).filter(|_| n > 0) {
                p.outbox.push_frame(wire::encode(&Frame::Return { to: id, n, last: false }), true);
            }
        }
        // (Under the table lock: see `target_unnamed`.)
        let Some((window, of, _)) = self.credits.get_from(id, owner) else { return };
        if !Arc::ptr_eq(&of, route) {
            return;
        }
        self.credits.remove(id);
        drop(table);
        let n = window.reclaim();
        if n > 0 && !window.is_released() {
            if let Some(p) = self.peers.reach(owner) {
                p.outbox.push_frame(wire::encode(&Frame::Return { to: id, n, last: false }), true);
            }
        }
    }

    /// Unnamed channel `route` of another node is closed on this node: closed, and remembered
    /// (a sender decoded after its last router here went is closed from the start; opened
    /// again, it sent after the close, on credit granted before it: the switchboard
    /// simulation's seed 5792, with unnamed channels).
    fn closed_here(&self, route: &ChannelRoute) {
        route.close();
        if let Some((_, id)) = route.unnamed().filter(|(owner, _)| *owner != self.me) {
            self.remember_closed(id);
        }
    }

    /// Unnamed channel `id` of another node is closed here (see [`Switchboard::closed_here`]).
    fn remember_closed(&self, id: EndpointId) {
        self.closed_unnamed.push(id);
    }

    /// A live router of another node's unnamed channel `id` on this node, if any (this node's
    /// own are found through their inboxes).
    pub(super) fn unnamed_here(&self, id: EndpointId) -> Option<Arc<ChannelRoute>> {
        lock(&self.unnamed).get(&id).and_then(Weak::upgrade)
    }

    /// The owner of unnamed channel `to`, node `from`, says its receiver is gone: the channel
    /// is closed here, and what this node sent and was not taken is dropped (no other receiver
    /// can take it).
    pub(super) fn unnamed_released(&self, from: NodeId, to: EndpointId) {
        if let Some((window, _, _)) = self.credits.get_from(to, from) {
            window.release();
            self.credits.remove(to);
        }
        self.credits.take_early(to, from);
        if let Some(route) = self.unnamed_here(to).filter(|r| r.unnamed() == Some((from, to))) {
            self.closed_here(&route);
        }
        if let Some(peer) = self.peers.find(from) {
            let (kept, _) = peer.outbox.take_kept(to, false, |_| {});
            if !kept.is_empty() {
                tracing::debug!(
                    node = from,
                    messages = kept.len(),
                    "an unnamed channel's receiver is gone: what it did not take is dropped"
                );
            }
        }
    }

    /// The unnamed channel's receiver `id` of this node was dropped: it leaves the tables, its
    /// router is closed (this node's senders get `Closed`; the others are told by the inbox's
    /// release), and what this node's senders gave it is dropped with it.
    pub(crate) fn unnamed_dropped(&self, id: EndpointId, mine: usize) {
        let inbox = lock(&self.inboxes).remove(&id);
        if let Some(inbox) = inbox {
            let route = inbox.channel();
            route.close();
            // The router holds the inbox, which holds the router: let go.
            route.set_targets(Vec::new());
            for _ in 0..mine {
                route.rerouted();
            }
        }
    }

    /// Close unnamed channel `route` (a sender's `close`): on its owner, a fence round; on
    /// another node, its router is closed at once and the owner told, behind what this node
    /// sent.
    pub(crate) fn shut_unnamed(&self, route: &Arc<ChannelRoute>) {
        let Some((owner, id)) = route.unnamed() else { return };
        if owner != self.me {
            self.closed_here(route);
            self.fence_unnamed(owner, id, Some(route.clone()));
            return;
        }
        match self.inbox(id) {
            Some(inbox) => self.shut_here(&inbox, None),
            None => route.close(),
        }
    }

    /// Unnamed channel `to` is closed ([`Frame::Shut`] from node `from`): `ask`, from its owner,
    /// which waits for this node's fence; otherwise, to this node as its owner, from a node
    /// that closed it or answers.
    pub(crate) fn shut(&self, from: NodeId, to: EndpointId, ask: bool) {
        if !is_unnamed(to) {
            tracing::warn!(
                node = from,
                receiver = to,
                "a close for a receiver that is not an unnamed channel's: dropped"
            );
            return;
        }
        if !ask {
            match self.inbox(to) {
                Some(inbox) => self.shut_here(&inbox, Some(from)),
                None => tracing::debug!(
                    node = from,
                    receiver = to,
                    "a close for an unnamed channel gone: dropped"
                ),
            }
            return;
        }
        let route = self.unnamed_here(to);
        match route {
            Some(route) if route.unnamed() == Some((from, to)) => {
                self.closed_here(&route);
                self.fence_unnamed(from, to, Some(route));
            }
            // No sender of it here any more (or only one naming another owner: a forged one,
            // which sends nothing to this one): nothing more follows, and a sender decoded
            // later is closed (opened, it sent after this answer, on credit the owner granted
            // while it waited for it: the switchboard simulation's seed 13848).
            Some(_) => self.fence_unnamed(from, to, None),
            // (Not for an id of this node's own channels: a forged ask, which must not fill the
            // bounded list.)
            None if self.inbox(to).is_some() => self.fence_unnamed(from, to, None),
            None => {
                self.remember_closed(to);
                self.fence_unnamed(from, to, None);
            }
        }
    }

    /// On the owner: close the channel of `inbox` (once), asking every node it granted credit
    /// for its fence; `from` closed it, and its word is its fence.
    fn shut_here(&self, inbox: &Arc<dyn ErasedInbox>, from: Option<NodeId>) {
        let route = inbox.channel();
        if !route.close_first() {
            if let Some(from) = from {
                inbox.fence(from);
            }
            return;
        }
        let to = inbox.id();
        let frame = wire::encode(&Frame::Shut { to, ask: true });
        // (A node that is not a member, or out of reach, has left: it sends nothing more, and
        // no removal will come to count it as fenced. Asked for credit after it left, it was
        // waited for, dead, for ever: the switchboard simulation's seed 835, with unnamed
        // channels. Members as the registry this node last refreshed to says, not a newer
        // one: a node listed there only, and gone again before this node refreshed, was
        // waited for, as no refresh saw it leave: seed 88033.)
        let members: BTreeSet<NodeId> = lock(&self.last).nodes.keys().copied().collect();
        let mut waiting = BTreeSet::new();
        let asked = inbox.granted().into_iter().filter(|n| Some(*n) != from && *n != self.me);
        for node in asked.filter(|n| members.contains(n)) {
            if let Some(p) = self.peers.reach(node) {
                p.outbox.push_frame(frame.clone(), true);
                waiting.insert(node);
            }
        }
        inbox.close(waiting);
    }

    /// A node that wants credit of a closed unnamed channel of this node's (its receiver still
    /// yields what came before): it is asked for its fence instead, and closes its router.
    pub(super) fn ask_fence(&self, from: NodeId, to: EndpointId) {
        if let Some(p) = self.peers.reach(from) {
            p.outbox.push_frame(wire::encode(&Frame::Shut { to, ask: true }), true);
        }
    }

    /// Tell `owner` that nothing more of unnamed channel `to` follows from this node: after the
    /// messages `route` re-routes (this node starts over), behind everything sent before.
    fn fence_unnamed(&self, owner: NodeId, to: EndpointId, route: Option<Arc<ChannelRoute>>) {
        // (No link to the owner yet, this node's registry lagging behind the one it decoded
        // the sender under: sent once a refresh lists the owner. Dropped, the close never
        // reached the receiver, which waited for ever: the switchboard simulation's seed 576;
        // sent on a link made for it from a registry not refreshed to, the link was kept for
        // ever: seed 58117, both with unnamed channels.)
        let Some(peer) = self.peers.reach(owner) else {
            self.shuts_due.push((owner, to));
            return;
        };
        let frame = wire::encode(&Frame::Shut { to, ask: false });
        let send = move || peer.outbox.push_frame(frame, true);
        match route {
            Some(route) => self.after_rerouting(route, send),
            None => send(),
        }
    }

    /// This node was removed while alive: its unnamed channels are over (the other nodes close
    /// their senders when they see it removed, or when told now). Each receiver yields what this
    /// node's own senders gave it, then `None`.
    pub(super) fn end_unnamed(&self) {
        let inboxes: Vec<Arc<dyn ErasedInbox>> =
            lock(&self.inboxes).values().filter(|i| is_unnamed(i.id())).cloned().collect();
        for inbox in inboxes {
            inbox.channel().close();
            // What other nodes sent it goes (as with a receiver gone), and they are told: their
            // routers close. (Not left to the nodes' word that this one is back: by then it may
            // have made new channels, which must stay open: the switchboard simulation's seed
            // 1813, with unnamed channels.)
            inbox.orphan();
        }
    }

    /// Every unnamed channel's router on this node (the node stops).
    pub(super) fn close_unnamed(&self) {
        let mut routes: Vec<Arc<ChannelRoute>> =
            lock(&self.unnamed).values().filter_map(Weak::upgrade).collect();
        let inboxes = lock(&self.inboxes);
        let own = inboxes.values().filter(|i| is_unnamed(i.id())).map(|i| i.channel().clone());
        routes.extend(own);
        drop(inboxes);
        for route in routes {
            route.close();
        }
    }

    /// How many routers of other nodes' unnamed channels this node's table holds (for the
    /// bounds).
    pub(crate) fn unnamed_count(&self) -> usize {
        lock(&self.unnamed).len()
    }
}
