//! What the connections' readers hand the switchboard: data for an inbox, credit for a router's
//! windows and the release of kept messages, requests for credit and credit given back, a close
//! fence, a receiver gone (what it did not take is delivered elsewhere).

use std::sync::Arc;

use super::Switchboard;
use crate::channel::credit::Granted;
use crate::channel::inbox::ErasedInbox;
use crate::channel::router::ChannelRoute;
use crate::cluster::registry::Registry;
use crate::ids::{is_unnamed, EndpointId, NodeId};
use crate::link::dispatch::{Frames, Msgs};
use crate::link::peer::Peer;
use crate::link::wire::{self, Frame};
use crate::sync::lock;

impl Switchboard {
    /// Tell node `to_node` that receiver `id` takes nothing more (it is gone).
    pub(super) fn say_released(&self, to_node: NodeId, id: EndpointId) {
        if let Some(p) = self.peers.reach(to_node) {
            p.outbox.push_frame(wire::encode(&Frame::Released { to: id }), true);
        }
    }

    /// Something came from node `from` for receiver `id`, which this node does not hold: if it
    /// was a receiver of this node and is gone, tell the sender so (it delivers elsewhere).
    pub(super) fn not_here(&self, from: NodeId, id: EndpointId) {
        let registry = self.registry.borrow().clone();
        // (An unnamed channel's receiver that is not here is gone, or never was.)
        if is_unnamed(id) || (registry.issued(id) && !registry.is_registered(id)) {
            self.say_released(from, id);
        } else {
            tracing::debug!(node = from, endpoint = id, "dropped a frame for an unknown receiver");
        }
    }

    /// Messages from node `from` for receiver `to` (called by the connection reader); broadcast
    /// copies if `copies`.
    pub(crate) fn deliver(&self, from: NodeId, to: EndpointId, copies: bool, msgs: Msgs<'_>) {
        match self.inbox(to) {
            Some(inbox) => inbox.push_frame(from, copies, msgs),
            None => self.not_here(from, to),
        }
    }

    /// Receiver `to` on node `from` took `taken` of this node's messages and grants `grant`.
    pub(crate) fn credit(&self, from: NodeId, to: EndpointId, taken: u32, grant: u32) {
        tracing::trace!(node = from, receiver = to, taken, grant, "credit in");
        if taken > 0 {
            if let Some(p) = self.peers.find(from) {
                p.outbox.release(to, taken);
            }
        }
        match self.credits.grant(to, from, grant) {
            Granted::Window(route) => route.wake(),
            // Kept for a window not made yet; not for a receiver the registry has removed (a
            // grant read late, after its node died): kept by nobody, it stayed until the next
            // registry change (the switchboard simulation's seed 2165, once it bounded the
            // tables). Looked up only then, not per credit frame.
            Granted::Kept => {
                let gone = {
                    let registry = self.registry.borrow();
                    registry.issued(to) && !registry.is_registered(to)
                };
                if gone {
                    self.credits.take_early(to, from);
                } else if is_unnamed(to) && self.unnamed_here(to).is_none() {
                    // For an unnamed channel no sender of this node holds any more (its
                    // window went with the last one): given back at once.
                    let n = self.credits.take_early(to, from);
                    if let Some(p) = self.peers.reach(from).filter(|_| n > 0) {
                        p.outbox
                            .push_frame(wire::encode(&Frame::Return { to, n, last: false }), true);
                    }
                }
            }
            Granted::Returned(n) => {
                if let Some(p) = self.peers.reach(from) {
                    p.outbox.push_frame(wire::encode(&Frame::Return { to, n, last: false }), true);
                }
            }
            Granted::Refused | Granted::Void => {}
        }
    }

    /// Node `from` wants credit with receiver `to`: a member that has messages for it (a node
    /// asks only when a message passed the receiver over), whether or not this node's registry
    /// lists a sender of it: its sender may not be applied here yet, or may be gone while the
    /// node still redelivers what it sent (a deferred want starved such a node for ever, and
    /// its close fence with it: the switchboard simulation's seed 273). Or a member that left
    /// lately: it hands over what it held after its leave is committed (refused, what it held
    /// was lost: the switchboard simulation's seed 5002); it gives back what it does not use,
    /// and this receiver forgets it as it does (see [`Switchboard::returned`]).
    pub(crate) fn want(&self, from: NodeId, to: EndpointId) {
        self.want_of(from, to, None);
    }

    /// As [`Switchboard::want`]; `member` says whether node `from` is a member, if the caller
    /// knows (it holds the refresh lock).
    pub(super) fn want_of(&self, from: NodeId, to: EndpointId, member: Option<bool>) {
        tracing::trace!(node = from, receiver = to, "want in");
        if self.said_bye(from) {
            // It sends nothing more: granted, the room was out to a node that had stopped.
            return;
        }
        let Some(inbox) = self.inbox(to).or_else(|| self.want_early(from, to)) else { return };
        match inbox {
            // An unnamed channel's receiver dropped (its inbox leaves the table next), or
            // closed: the node is told it is gone, or asked for its fence (it grants nothing
            // after its close).
            inbox if is_unnamed(to) && inbox.is_detached() => self.say_released(from, to),
            inbox if is_unnamed(to) && inbox.channel().is_closed() => {
                // Ended: it takes nothing more, whatever its books say of the node (credit out
                // to an earlier incarnation of it answered nothing: the switchboard
                // simulation's seed 3041, with unnamed channels). A node whose fence is
                // awaited may deliver again what it sent before.
                if inbox.has_ended() {
                    self.say_released(from, to);
                } else if inbox.awaited().contains(&from) {
                    inbox.want(from);
                } else {
                    self.ask_fence(from, to);
                }
            }
            inbox => {
                // (An unnamed channel's owner counts members as its links do, by the registry
                // it last refreshed to: the nodes a close of it waits for, see `shut_here`.)
                let member = member.unwrap_or_else(|| match is_unnamed(to) {
                    true => crate::sync::lock(&self.last).nodes.contains_key(&from),
                    false => self.registry.borrow().nodes.contains_key(&from),
                });
                if member {
                    inbox.want(from);
                    return;
                }
                // Checked and answered under the list's lock: the departure's timer, which
                // frees what the node was granted, runs before the check or after the grant,
                // never between (credit granted after it ran was out for ever).
                let departed = crate::sync::lock(&self.departed);
                if !Self::lately(&departed, from) && is_unnamed(to) {
                    // No registry offers an unnamed channel's credit later: asked again once
                    // this node sees the asking node admitted (see `defer_want`).
                    drop(departed);
                    self.defer_want(from, to);
                    return;
                }
                if !Self::lately(&departed, from) {
                    // Not a member of the registry applied, and not among those that left as
                    // far as this node has refreshed: one that left since (its leave applied,
                    // the refresh to come). Kept for that refresh, under the list's lock, as
                    // that refresh records the departure before it looks at what is kept
                    // (refused at once, the leaving node never asked again and what it handed
                    // over was lost: the switchboard simulation's seed 163371, with impatient
                    // leaves).
                    self.wants_of_leavers.push((from, to));
                    return;
                }
                inbox.want(from);
            }
        }
    }

    /// Node `from` wants credit with receiver `to`, which has no inbox here: gone, the node is
    /// told so (see [`Switchboard::not_here`]); otherwise it is one of this node's that the
    /// registry lists, or will (the node applied its registration first), and whose inbox is
    /// not added yet: the want is kept until it is ([`Switchboard::answer_early_wants`]).
    /// Dropped, the node never asked again (its window waits for a grant since it asked), and
    /// the receiver offers credit only to the nodes its registry lists with senders when its
    /// inbox comes or they change: a node whose sender was dropped before this node refreshed
    /// past it, with messages of that sender still to deliver (re-routed from a receiver
    /// dropped meanwhile), never got credit, and they were never delivered (the switchboard
    /// simulation's seed 53672, with dropped senders on).
    /// The inbox, if it came meanwhile.
    fn want_early(&self, from: NodeId, to: EndpointId) -> Option<Arc<dyn ErasedInbox>> {
        // Kept only for an id that may get an inbox here: anything else never does, and kept,
        // it could push out a want that will.
        let mine = self.may_come_here(&self.registry.borrow(), to);
        if is_unnamed(to) || !mine {
            self.not_here(from, to);
            return None;
        }
        // Looked up and kept under the inboxes' lock: an inbox added meanwhile is in the table
        // before its kept wants are answered (`add_inbox`), never between.
        let inboxes = crate::sync::lock(&self.inboxes);
        if let Some(inbox) = inboxes.get(&to) {
            return Some(inbox.clone());
        }
        tracing::debug!(
            node = from,
            receiver = to,
            "credit asked for before the receiver is here: kept"
        );
        self.early_wants.push((from, to));
        None
    }

    /// Whether endpoint `id` may yet have an inbox on this node, as `registry` has it: a
    /// receiver of this node, or a registration not applied here yet. (Early wants are kept
    /// for those alone, and dropped by the refresh once this says no.)
    pub(super) fn may_come_here(&self, registry: &Registry, id: EndpointId) -> bool {
        !registry.issued(id)
            || registry
                .endpoint(id)
                .is_some_and(|e| e.node == self.me && e.kind == crate::rpc::EndpointKind::Receiver)
    }

    /// Receiver `id`'s inbox is here now: the wants kept for it are answered.
    pub(super) fn answer_early_wants(&self, id: EndpointId) {
        for (from, _) in self.early_wants.take(|(_, to)| *to == id) {
            self.want(from, id);
        }
    }

    /// Receiver `to` on node `from` wants its unused credit back: always answered, with what
    /// this node holds of it (nothing, if it never made the window), so that the receiver never
    /// counts credit as out that no node holds; after the senders waiting for room have tried,
    /// if any are (see [`crate::channel::credit::Window::defer_reclaim`]).
    pub(crate) fn reclaim(&self, from: NodeId, to: EndpointId) {
        let n = match self.credits.get_from(to, from) {
            // This node starts over: no sender uses its void window, so nothing is deferred on
            // it (deferred, the reclaim was never answered once the window was replaced, and
            // the receiver never asked this node again: a node that wanted starved, the
            // switchboard simulation's seed 138301). See `Credits::reclaim_void`: the credit the
            // new incarnation was granted goes back; a receiver that has not answered yet is
            // not answered (it forgets the reclaim as it forgets the old incarnation).
            Some((window, _, _)) if window.is_voided() => {
                match self.credits.reclaim_void(to, from) {
                    Some(n) => n,
                    None => return,
                }
            }
            // Senders wait for room, woken by the grant before: they try first.
            Some((window, route, _)) if route.has_waiters() => {
                window.defer_reclaim();
                route.reclaim_deferred();
                return;
            }
            Some((window, _, _)) => window.reclaim(),
            None => self.credits.take_early(to, from),
        };
        tracing::trace!(node = from, receiver = to, n, "reclaim in: returned");
        if let Some(p) = self.peers.reach(from) {
            p.outbox.push_frame(wire::encode(&Frame::Return { to, n, last: false }), true);
        }
    }

    /// Node `from` gave back `n` credits with receiver `to`. A node that left gives back what
    /// it got to hand over and did not use: its books go as when it left.
    pub(crate) fn returned(&self, from: NodeId, to: EndpointId, n: u32, last: bool) {
        tracing::trace!(node = from, receiver = to, n, last, "return in");
        let last = last.then(|| {
            // Its want kept for the refresh past its leave goes too (see `want_of`): answered,
            // the grant was out to a node that had stopped (seed 115779, as in the inbox).
            self.wants_of_leavers.take(|w| *w == (from, to));
            self.registry.borrow().nodes.contains_key(&from)
        });
        if let Some(inbox) = self.inbox(to) {
            inbox.returned(from, n, last);
            // (The registry is read only for a node that left lately: a return of a member,
            // the common case, costs no borrow.)
            if !self.left_lately(from) {
                return;
            }
            let (member, how) = {
                let registry = self.registry.borrow();
                (registry.nodes.contains_key(&from), self.departure(from, &registry))
            };
            // Its want stands but after its marked last return: an unmarked one answers a
            // reclaim, and a node that answers 0 may still want (it asked before: a hand-over's
            // re-route that found its unit used by another send). Dropped with its books, the
            // node never asked again, its hand-over timed out and what it re-routed was lost
            // (the switchboard simulation's seed 20436, with freezes).
            if !member {
                self.forget_node(&inbox, from, how, how.graceful() && last.is_none());
            }
        }
    }

    /// Node `from` has handed over and stops: every receiver here voids what it granted it
    /// (see [`Frame::Bye`]).
    pub(crate) fn bye(&self, from: NodeId) {
        tracing::trace!(node = from, "bye in");
        {
            let mut said = lock(&self.said_bye);
            if said.contains(&from) {
                return;
            }
            if said.len() == super::MAX_DEPARTED {
                said.pop_front();
            }
            said.push_back(from);
        }
        // Its wants kept for later are void too.
        self.wants_of_leavers.take(|(node, _)| *node == from);
        self.early_wants.take(|(node, _)| *node == from);
        let inboxes: Vec<Arc<dyn ErasedInbox>> = lock(&self.inboxes).values().cloned().collect();
        for inbox in inboxes {
            inbox.sends_no_more(from);
        }
    }

    /// Whether node `from` said it sends nothing more (see [`Switchboard::bye`]).
    pub(super) fn said_bye(&self, from: NodeId) -> bool {
        let said = lock(&self.said_bye);
        !said.is_empty() && said.contains(&from)
    }

    /// Receiver `to` on node `from` is gone: deliver elsewhere what it did not take (called by
    /// the connection reader, and when a node dies with its receivers).
    pub(crate) fn released(&self, from: NodeId, to: EndpointId) {
        if is_unnamed(to) {
            self.unnamed_released(from, to);
            return;
        }
        // Only the receiver's node releases it. A window settled unused (see
        // `Credits::settle`) is gone: a grant that came after is kept early, and goes now.
        let Some((window, route, _)) = self.credits.get_from(to, from) else {
            self.credits.take_early(to, from);
            return;
        };
        if !window.release() {
            return;
        }
        // (Through the link it was sent on: see `settle`.)
        if let Some(peer) = route.peer_of(to).or_else(|| self.peers.find(from)) {
            self.take_back(&peer, to, &route, false);
        }
        route.prune_departed();
        // Settled: the window goes once the registry no longer lists the receiver (if it still
        // does, with the refresh that removes it).
        if !self.registry.borrow().is_registered(to) {
            self.credits.remove(to);
        }
    }

    /// Deliver elsewhere what `peer` keeps for receiver `to` of `route`'s channel, and, with
    /// `copies` (this node starts over and the receiver is still there), send the broadcast
    /// copies it kept for `to` to `to` again. They count as re-routing as they stop being kept:
    /// a sender waiting for its messages to be taken never sees them neither in flight nor
    /// re-routing.
    pub(super) fn take_back(
        &self,
        peer: &Peer,
        to: EndpointId,
        route: &Arc<ChannelRoute>,
        copies: bool,
    ) {
        let mut counted = 0;
        let (kept, bcast) = peer.outbox.take_kept(to, copies, |n| {
            counted = n;
            route.rerouting(n);
        });
        // A kept frame that does not decode (never: this node encoded it) is not waited for.
        for _ in kept.len() + bcast.len()..counted {
            route.rerouted();
        }
        self.redeliver(route, kept);
        if !bcast.is_empty() {
            crate::channel::redelivery::redeliver_to(
                route.clone(),
                Some(to),
                bcast,
                Arc::downgrade(&self.peers),
                &self.tasks,
                self.cancel.clone(),
            );
        }
        route.wake();
    }

    /// Node `from` fenced `channel`, the one made by endpoint `created` (called by the
    /// connection reader).
    pub(crate) fn fence(&self, from: NodeId, channel: &str, created: EndpointId) {
        // Kept from members, for channels that exist: a fence is never counted twice. Others
        // are kept apart, bounded (see `Fences::early`).
        let registry = self.registry.borrow().clone();
        let ch = registry
            .channel(channel)
            .filter(|c| c.created == created && registry.nodes.contains_key(&from));
        let Some(ch) = ch else {
            // This node's registry lags behind the fencing node's (the channel, or the node,
            // is yet to be applied here): counted once it catches up.
            tracing::debug!(node = from, %channel, "a fence before its channel or node is known here: kept");
            self.fences.early(channel, created, from);
            return;
        };
        self.fences.received(channel, created, from);
        for inbox in self.local_inboxes(ch) {
            inbox.fence(from);
        }
    }
}

/// The connections' readers hand the message path's frames here, on a node and in the
/// delivery protocol's simulation alike.
impl Frames for Switchboard {
    fn data(&self, from: NodeId, to: EndpointId, copies: bool, msgs: Msgs<'_>) {
        self.deliver(from, to, copies, msgs);
    }

    fn credit(&self, from: NodeId, to: EndpointId, taken: u32, grant: u32) {
        Switchboard::credit(self, from, to, taken, grant);
    }

    fn want(&self, from: NodeId, to: EndpointId) {
        Switchboard::want(self, from, to);
    }

    fn reclaim(&self, from: NodeId, to: EndpointId) {
        Switchboard::reclaim(self, from, to);
    }

    fn returned(&self, from: NodeId, to: EndpointId, n: u32, last: bool) {
        Switchboard::returned(self, from, to, n, last);
    }

    fn bye(&self, from: NodeId) {
        Switchboard::bye(self, from);
    }

    fn fence(&self, from: NodeId, channel: &str, created: EndpointId) {
        Switchboard::fence(self, from, channel, created);
    }

    fn released(&self, from: NodeId, to: EndpointId) {
        Switchboard::released(self, from, to);
    }

    fn shut(&self, from: NodeId, to: EndpointId, ask: bool) {
        Switchboard::shut(self, from, to, ask);
    }

    fn rejoin_answered(&self, from: NodeId) {
        Switchboard::rejoin_answered(self, from);
    }
}
