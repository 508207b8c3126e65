//! A node removed from the cluster while alive (paused or cut off past the failure timeout) and
//! let back in starts over as a new incarnation. On that node ([`Switchboard::start_over`]):
//! every window is void, each peer is asked ([`Request::Rejoined`]) how many of the messages
//! it was sent and not told of it took in, and the rest goes out again, as if every receiver
//! had released it. On the others ([`Switchboard::rejoined`]): every inbox forgets its books of
//! the node, as when it left, and answers what it took in (it delivers those, told to nobody);
//! what they sent to the node's receivers of before goes elsewhere. The node registers nothing
//! until every peer has answered, so no credit granted to its new incarnation is mistaken for
//! the old one's.
//!
//! A message is delivered twice only if a receiver took it and its "taken" was on its way when
//! the receiving node dropped its link to the removed one, or if a peer does not answer in time
//! (at-least-once, as for a receiving node that dies).

use std::sync::Arc;

use super::{Switchboard, HAND_OVER_TIMEOUT};
use crate::channel::router::ChannelRoute;
use crate::ids::{EndpointId, NodeId};
use crate::link::peer::Peer;
use crate::rpc::{Request, Response};
use crate::sync::lock;

/// A start-over begun ([`Switchboard::start_over`]) and not yet settled
/// ([`Switchboard::settle`]).
#[must_use = "a start-over begun is settled"]
pub(crate) struct StartOver {
    /// Every member, asked what it took in.
    peers: Vec<Arc<Peer>>,
    /// The old incarnation's windows: (receiver, its node, its router).
    old: Vec<(EndpointId, NodeId, Arc<ChannelRoute>)>,
    /// The routers that count what goes again as re-routing until it is placed.
    settling: Vec<Arc<ChannelRoute>>,
    /// How far this node had applied the log.
    at: u64,
}

impl Switchboard {
    /// This node was removed while alive and is a member again: start over. Void every window
    /// (nothing more is queued for a receiver on the old credit) and make new ones, ask every
    /// peer what it took in of what this node sent before (at most [`HAND_OVER_TIMEOUT`]), and
    /// deliver the rest again. Only then may this node register its senders again: a receiver
    /// grants them credit once it has applied that, and by then it has forgotten the old
    /// incarnation's.
    ///
    /// This part runs at once, before any close fence this node owes goes out (the caller
    /// holds them back until it has called this: [`Switchboard::send_fences`]), so that a
    /// fence waits for what goes again (the switchboard simulation's seed 23276, with freezes:
    /// the fence went out first, and receivers could end before what came after it). The rest
    /// is [`Switchboard::settle`].
    pub(crate) fn start_over(&self) -> StartOver {
        tracing::warn!("this node was removed from the cluster while alive: it starts over");
        // Receivers removed with this node: what other nodes sent them goes elsewhere; they
        // take nothing more until registered again (`renamed`).
        let registry = self.registry.borrow().clone();
        let inboxes: Vec<_> = lock(&self.inboxes).values().cloned().collect();
        // (An id the registry has not issued yet is a registration newer than this copy.)
        let removed = |id| registry.issued(id) && !registry.is_registered(id);
        for inbox in inboxes.iter().filter(|i| removed(i.id()) && !i.is_detached()) {
            inbox.restart();
        }
        self.end_unnamed();
        // Answers on their way here may be lost with the links of nodes that forgot this one:
        // every asker waiting is told (see `Replies::removed`).
        self.peers.replies.removed();
        // Every window is void at once (nothing more is queued on old credit); they stay in
        // the table until every peer has answered, so that a grant of the old incarnation's
        // still on its way lands on a void window, not on a new one.
        // Every member is asked, linked to or not yet (one let in again itself since this node
        // last talked to it may have granted this node's new senders credit already).
        let mut peers = self.peers.all();
        for id in registry.nodes.keys().filter(|id| **id != self.me) {
            if !peers.iter().any(|p| p.id == *id) {
                peers.extend(self.peers.reach(*id));
            }
        }
        let old = self.credits.release_all(peers.iter().map(|p| p.id));
        // What goes again counts as re-routing from now on, so that a close fence waits for it
        // (`ChannelRoute::rerouting_done`): it was sent before any close.
        let mut settling: Vec<Arc<ChannelRoute>> = Vec::new();
        for (_, _, route) in &old {
            if !settling.iter().any(|r| Arc::ptr_eq(r, route)) {
                route.rerouting(1);
                settling.push(route.clone());
            }
        }
        StartOver { peers, old, settling, at: registry.applied }
    }

    /// The rest of a start-over ([`Switchboard::start_over`]): ask every peer what it took in
    /// (at most [`HAND_OVER_TIMEOUT`] each, again while it stays a member), make new windows
    /// and deliver the rest again.
    pub(crate) async fn settle(&self, started: StartOver) {
        let StartOver { peers, old, settling, at } = started;
        // The question goes behind everything sent before on each link, and the answer behind
        // everything the peer sent this node before: the count covers both.
        let answers =
            futures::future::join_all(peers.iter().map(|p| self.ask_rejoined(p.id, at))).await;
        for (peer, answer) in peers.iter().zip(answers) {
            match answer {
                Some((peer, taken)) => {
                    for (to, n) in taken {
                        peer.outbox.release(to, n);
                    }
                }
                None => tracing::warn!(
                    peer = peer.id,
                    "starting over: a peer left without saying what it took in; what this node sent it goes again"
                ),
            }
        }
        self.credits.clear();
        let routes: Vec<Arc<ChannelRoute>> = lock(&self.routes).values().cloned().collect();
        let refreshed = {
            // Under the refresh lock, as in `route`: new windows for every receiver, as the
            // registry this node last refreshed to lists them, not a newer one its watch holds
            // already. The next refresh settles the windows of receivers gone since by what
            // that registry listed: a receiver registered and dropped between the two, its
            // release read before this window was made, kept its window and a departed target
            // for ever (the switchboard simulation's seed 235795, with freezes and a close).
            let refreshed = lock(&self.last);
            for route in &routes {
                self.refresh_route(route, &refreshed);
            }
            refreshed.clone()
        };
        self.refresh_unnamed(&[], &refreshed);
        for (id, node, route) in old {
            // Through the link it was sent on, which this node may have forgotten since (a
            // peer that did not answer because it died, forgotten while this node waited for
            // its removal, kept what it was sent for ever, and a sender's `wait_taken` with it:
            // the switchboard simulation's seed 2087, with freezes), and which a peer of the
            // same node made since (it dialed again) does not hold.
            let Some(peer) = route.peer_of(id).or_else(|| self.peers.find(node)) else { continue };
            // Broadcast copies go again to their receiver alone (if it is still there).
            self.take_back(&peer, id, &route, true);
        }
        for route in settling {
            route.rerouted();
        }
    }

    /// Ask peer `id` what it took in of this node's old incarnation's messages, until it
    /// answers or is no longer a member (a peer that does not answer is removed within the
    /// failure timeout). Going on without its answer would let its forgetting come later, after
    /// it has granted the new incarnation credit, and wipe that. Asked through the peer as this
    /// node knows it at each try: one that left and was let in again meanwhile is another
    /// `Peer`, and the answer comes on its link (asked through the old one, the answer matched
    /// nothing and the node asked for ever: the switchboard simulation's seed 344735).
    async fn ask_rejoined(
        &self,
        id: NodeId,
        at: u64,
    ) -> Option<(Arc<Peer>, Vec<(EndpointId, u32)>)> {
        let mut registry = self.registry.clone();
        loop {
            match self.peers.reach(id) {
                Some(peer) => {
                    let asked = peer.request(Request::Rejoined { at }, HAND_OVER_TIMEOUT).await;
                    if let Ok(Response::Rejoined(taken)) = asked {
                        return Some((peer, taken));
                    }
                }
                // Not reachable yet (its address comes with a registry this node has not
                // refreshed to): asked again after the next.
                None => {
                    let _ = tokio::time::timeout(HAND_OVER_TIMEOUT, registry.changed()).await;
                }
            }
            let member = self.registry.borrow().nodes.contains_key(&id);
            if !member || self.cancel.is_cancelled() {
                // Given up on: what it grants from now on is no longer dropped as the old
                // incarnation's. Removed, its receivers went with it (a grant of theirs finds
                // none here); let back in, it starts over itself and forgets its books of
                // every node before it registers receivers again, whose grants are the new
                // incarnation's. Kept as not answered, its grants were dropped until this
                // node's start-over ended, while it counted them out, and its reclaims were
                // never answered: its answer to the question asked before its removal, read
                // once no request waited for it, was not counted, and its new receiver's
                // credit was out for ever (the switchboard simulation's seed 23557, with
                // dropped senders on: node 4, frozen past its removal and let back in, its
                // receiver registered while this node still waited for a dead peer's answer).
                self.credits.answered(id);
                return None;
            }
            tracing::debug!(peer = id, "starting over: asking again what it took in");
        }
    }

    /// Node `from` answered this node's [`Request::Rejoined`] (read from its link, before
    /// anything it sent after): what it grants from now on is the new incarnation's.
    pub(crate) fn rejoin_answered(&self, from: NodeId) {
        self.credits.answered(from);
    }

    /// Receiver `old` of this node, removed with it, is registered again as `new`: it takes
    /// messages under that id from now on, and is offered to the nodes with senders of its
    /// channel.
    pub(crate) fn renamed(&self, old: EndpointId, new: EndpointId) {
        let _refreshing = lock(&self.last);
        let Some(inbox) = lock(&self.inboxes).remove(&old) else { return };
        if inbox.is_detached() {
            // Its handle is gone: its new registration goes with it.
            return;
        }
        inbox.renamed(new);
        lock(&self.inboxes).insert(new, inbox.clone());
        let registry = self.registry.borrow().clone();
        self.refresh_route(inbox.channel(), &registry);
        inbox.offer(&self.sending_nodes(inbox.channel().name(), &registry));
        self.answer_early_wants(new);
    }

    /// Receiver `id` of this node, removed with it, could not be registered again: it ends
    /// after what this node's senders gave it.
    pub(crate) fn orphaned(&self, id: EndpointId) {
        if let Some(inbox) = self.inbox(id) {
            if inbox.orphan() {
                tracing::warn!(
                    channel = %inbox.channel().label(),
                    receiver = id,
                    "this node was removed from the cluster: the receiver ends after what it holds"
                );
            }
        }
    }

    /// Node `from` was removed from the cluster while alive and let back in (its
    /// [`Request::Rejoined`]): it starts over. Once this node has applied the log as far as
    /// the node had (`at`: its removal and its return included) and refreshed to it, every
    /// inbox of this node forgets its books of the node, as when it left (if this node never
    /// saw the removal, having caught up past it at once), and says how many of its earlier
    /// messages it took in; what this node sent to the node's receivers of before, which the
    /// registry no longer lists, goes elsewhere.
    ///
    /// `None` (not answered: the node asks again) if this node has not caught up within
    /// [`HAND_OVER_TIMEOUT`]. Answered before, the removal applied after would forget the books
    /// of the new incarnation as the old one's: what it sent since was held here and never told
    /// (the switchboard simulation's seed 2057, with freezes).
    pub(crate) async fn rejoined(&self, from: NodeId, at: u64) -> Option<Vec<(EndpointId, u32)>> {
        let caught_up = self.registry_when(HAND_OVER_TIMEOUT, |r| r.applied >= at);
        let Some(registry) = caught_up.await else {
            tracing::debug!(node = from, at, "asked to forget a node's old incarnation before applying its removal: not answered yet");
            return None;
        };
        self.refresh(&registry);
        tracing::info!(node = from, "a node removed while alive is back: it starts over");
        let inboxes: Vec<_> = lock(&self.inboxes).values().cloned().collect();
        let taken = inboxes
            .iter()
            .map(|inbox| (inbox.id(), inbox.rejoined(from)))
            .filter(|(_, n)| *n > 0)
            .collect();
        // (An unnamed channel's receiver there is the new incarnation's: the old one's were
        // ended, and their senders told, as it started over: `end_unnamed`.)
        for id in self.credits.on_node(from) {
            if !crate::ids::is_unnamed(id) && !registry.is_registered(id) {
                self.released(from, id);
            }
        }
        Some(taken)
    }
}
