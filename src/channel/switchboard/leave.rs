//! A graceful leave, as the switchboard does it: from `Node::shutdown`'s start its senders
//! refuse ([`Switchboard::leaving`]); it tells every sending node what its receivers took
//! ([`Switchboard::tell_taken`]); once the cluster has committed the leave, its routers stop
//! targeting its receivers ([`Switchboard::left`]), and it hands what they hold to receivers on
//! other nodes, waiting until that is out and every peer has it ([`Switchboard::hand_over`]);
//! last, it tells every peer it sends nothing more ([`Frame::Bye`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Switchboard, HAND_OVER_TIMEOUT};
use crate::channel::inbox::ErasedInbox;
use crate::channel::router::ChannelRoute;
use crate::cluster::registry::Registry;
use crate::ids::{EndpointId, NodeId};
use crate::link::wire::{self, Frame};
use crate::sync::lock;

/// How long a leaving node waits for its registry to apply what came before its leave, before
/// it hands over
/// (see [`Switchboard::hand_over`]).
const OWN_LEAVE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Switchboard {
    /// This node is leaving the cluster (a graceful shutdown has started).
    pub(crate) fn leaving(&self) {
        self.leaving.store(true, Ordering::SeqCst);
        // (A router made from now on refuses from the start: see `route`, `unnamed_route` and
        // `add_unnamed`.) Unnamed channels' too: other nodes' (decoded senders) and this
        // node's own.
        for route in lock(&self.routes).values() {
            route.refuse_sends();
        }
        for route in lock(&self.unnamed).values().filter_map(std::sync::Weak::upgrade) {
            route.refuse_sends();
        }
        for inbox in lock(&self.inboxes).values() {
            if inbox.channel().unnamed().is_some() {
                inbox.channel().refuse_sends();
            }
        }
    }

    /// The cluster committed this node's leave (its endpoints left the registry before its
    /// membership did): every router stops targeting this node's receivers now, without
    /// waiting for this node's copy of the registry to say so.
    pub(crate) fn left(&self) {
        self.left.store(true, Ordering::SeqCst);
        let registry = self.registry.borrow().clone();
        self.refresh(&registry);
        // A node that leaves does not start over: its fences go.
        self.send_fences();
        let routes: Vec<Arc<ChannelRoute>> = lock(&self.routes).values().cloned().collect();
        for route in &routes {
            self.refresh_route(route, &registry);
        }
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
        // Unused credit goes back too: a receiver keeps what a node that left had out (it may
        // still send on it), and this node will not.
        self.return_credit(self.credits.give_up_all(false), false);
        if tokio::time::timeout(HAND_OVER_TIMEOUT, self.peers_flushed()).await.is_err() {
            tracing::warn!(
                "leaving: a peer did not confirm what was taken within {HAND_OVER_TIMEOUT:?}"
            );
        }
    }

    /// Give receivers back credit this node will not use: per receiver, its node and how much
    /// (a zero too says so: a receiver forgets a node that left as it hears, see
    /// [`Switchboard::returned`]). `last`: the hand-over is done, and this node wants nothing
    /// more of them (see [`Frame::Return`]).
    fn return_credit(&self, credit: Vec<(EndpointId, NodeId, u32)>, last: bool) {
        for (to, node, n) in credit {
            if let Some(p) = self.peers.reach(node) {
                p.outbox.push_frame(wire::encode(&Frame::Return { to, n, last }), true);
            }
        }
    }

    /// Wait until every peer has acknowledged everything queued for it so far.
    async fn peers_flushed(&self) {
        for peer in self.peers.all() {
            peer.outbox.flushed().await;
        }
    }

    /// Wait (at most [`OWN_LEAVE_WAIT`]) until this node's registry has applied everything
    /// before its own leave (`removed`: the log index of its removal; 0 if the leader found it
    /// removed already, a retried leave: then until it shows the leave), and refresh to it.
    /// Nodes leaving at once hand over in the log's order: every node that left before this one
    /// is then known here as such (what its receivers held of this node's messages, it
    /// released, and this node delivers elsewhere; what it sent this node's receivers, they
    /// hold as this node's own and deliver: see `Departure`). Handed over against an older
    /// registry, a message of a node that had left and stopped went back to it and was lost
    /// (the switchboard simulation's seed 123468, with impatient leaves). Not the leave itself:
    /// a node no longer a member may never be told it is committed (a learner's replication
    /// stops as its removal is appended), and waiting for it took one leave in ten the whole
    /// second (`tests/churn.rs`).
    async fn own_leave_applied(&self, removed: u64) {
        let me = self.me;
        let ready = |r: &Registry| {
            if removed == 0 {
                r.left_gracefully(me)
            } else {
                r.applied + 1 >= removed
            }
        };
        match self.registry_when(OWN_LEAVE_WAIT, ready).await {
            Some(registry) => self.refresh(&registry),
            None => tracing::warn!(
                removed,
                "leaving: this node's registry did not reach its leave within {OWN_LEAVE_WAIT:?}: \
                 it hands over by what it has"
            ),
        }
    }

    /// Hand what this node's receivers hold to receivers on other nodes, and flush every outbox,
    /// within [`HAND_OVER_TIMEOUT`] (after [`OWN_LEAVE_WAIT`] at most for this node's registry to
    /// apply what came before its leave). A channel with no receiver elsewhere keeps this node's
    /// own messages here: its receivers yield them, then `None`. What other nodes sent is
    /// released to them, so that it is delivered once, elsewhere; but for a node that left
    /// gracefully before this one: what this node holds of it, it delivers (see `Departure`).
    pub(crate) async fn hand_over(&self, removed: u64) {
        self.own_leave_applied(removed).await;
        let inboxes: Vec<_> = lock(&self.inboxes).values().cloned().collect();
        // Every router of this node: its own senders' messages that a receiver elsewhere gave
        // back (dropped, its node gone) are being delivered elsewhere too, and a release that
        // comes while this waits starts more (stopped before they were out, they were lost: the
        // switchboard simulation's seed 4554, with nodes that leave before what they sent was
        // taken, a receiving node dying during the hand-over).
        let mut routes: Vec<Arc<ChannelRoute>> = lock(&self.routes).values().cloned().collect();
        for inbox in inboxes {
            let route = inbox.channel().clone();
            // What other nodes sent goes back to them either way (they deliver it elsewhere,
            // once there is a receiver); this node's own messages stay here when there is
            // nowhere else for them.
            let elsewhere = route.has_remote();
            if let Some(mine) = inbox.hand_over(!elsewhere) {
                if elsewhere {
                    self.redeliver(&route, mine);
                    routes.push(route); // (Perhaps twice: a second wait returns at once.)
                }
            }
        }
        // Re-routing with somewhere to go (a receiver on another node). A router whose channel has
        // no receiver elsewhere holds what it re-routes for the name's next receiver (promise
        // 5), which need not come while this node leaves: waited for, the hand-over timed out
        // without its flush below.
        let rerouting = || routes.iter().any(|r| r.is_rerouting_elsewhere());
        let done = async {
            loop {
                while rerouting() {
                    for route in &routes {
                        route.rerouting_elsewhere_done().await;
                    }
                }
                // Credit asked for to hand over and not used goes back (the receivers would
                // count it out for ever), marked last: the receivers drop this node's wants
                // (see `Frame::Return`). Credit granted from now on goes back at once (see
                // `Credits::handed_over`), and what went back is with the receivers before the
                // node stops.
                self.return_credit(self.credits.handed_over(), true);
                self.peers_flushed().await;
                if !rerouting() {
                    break;
                }
                // A release read meanwhile, or a receiving node's leave applied, started more
                // (seeds 38565 and 86405, with impatient leaves: lost as the node stopped), or
                // a re-routing found a receiver elsewhere only now: its messages need credit
                // again (`Switchboard::redeliver` reopens as one starts; not the second, which
                // started before), asked for again, and the receivers' books take the node's
                // wants again. (Before the last return was marked, a want of this node
                // answered after it held the room for 10 s: two returns a round, the first
                // unmarked, narrowed that to a race, seed 115779's.)
                self.credits.reopen();
                for route in &routes {
                    route.wake();
                }
            }
            // Nothing more is sent: every peer's receivers void what they granted this node,
            // grants that crossed its last return included (see `Credits::stop`).
            self.say_bye();
            self.peers_flushed().await;
        };
        if tokio::time::timeout(HAND_OVER_TIMEOUT, done).await.is_err() {
            tracing::warn!("shutdown: messages still on their way after {HAND_OVER_TIMEOUT:?}");
            // (Unless said already, as the flush after it timed out. Not flushed: a receiver
            // that does not read it keeps the node's credit counted until its departure is 10
            // s old.)
            if !self.credits.is_stopped() {
                self.return_credit(self.credits.handed_over(), true);
                self.say_bye();
            }
        }
    }

    /// This node sends nothing more (`Credits::stop`): tell every peer ([`Frame::Bye`]).
    fn say_bye(&self) {
        self.credits.stop();
        let bye = wire::encode(&Frame::Bye {});
        for peer in self.peers.all() {
            peer.outbox.push_bye(bye.clone());
        }
    }
}
