//! What an inbox tells the sending nodes: messages taken (so they let go of them) and credit
//! granted, coalesced through each peer's outbox; a manual acknowledgement frees room as a take
//! does; and when the receiver goes away, the release (what it did not take goes elsewhere).

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::owner::Owner;
use super::{Acks, Detached, ErasedInbox, Inbox, Item, State, Token};
use crate::channel::credit::Outgoing;
use crate::ids::NodeId;
use crate::link::wire::Frame;

impl<T> State<T> {
    /// Whether deliveries of node `node`'s messages here wait for the application's
    /// acknowledgement.
    pub(super) fn owes(&self, node: NodeId) -> bool {
        let unacked = self.unacked.as_ref();
        unacked.and_then(|u| u.remote.get(&node)).is_some_and(Acks::waiting)
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Inbox<T> {
    /// The application acknowledges a delivery (manual acknowledgement).
    pub(crate) fn ack(&self, token: Token) {
        self.settle(token, true);
    }

    /// A delivery is done with: acknowledged by the application, or (`kept` false) a dead letter
    /// taken before its local copy was ever kept. Either way its room comes back.
    pub(super) fn settle(&self, token: Token, kept: bool) {
        let out = {
            let mut st = self.lock();
            let Some(unacked) = st.unacked.as_mut() else { return };
            let from = match token {
                Token::Local(n) => {
                    // A token acknowledged twice (or after a hand-over) counts once.
                    if unacked.local.remove(&n).is_none() && kept {
                        return;
                    }
                    st.grants.taken(None, 1);
                    None
                }
                Token::Remote { from, seq } => {
                    let Some(acks) = unacked.remote.get_mut(&from) else { return };
                    let (n, told) = acks.ack(seq);
                    if n == 0 {
                        return;
                    }
                    // Those handed out before the node left are held as this node's own.
                    if n > told {
                        st.grants.taken(None, n - told);
                    }
                    if told > 0 {
                        st.grants.taken(Some(from), told);
                    }
                    Some(from)
                }
            };
            if st.ended {
                // It grants nothing more: what was taken is told, and a node that was not told
                // it is gone while the application could still acknowledge its deliveries is
                // told now, once they are (see `State::tell_gone`, `ErasedInbox::push_frame`).
                let taken = st.grants.flush_taken();
                let listed = |st: &mut super::State<T>, n: &NodeId| {
                    st.unacked.as_mut().is_some_and(|u| u.release_after_acks.remove(n))
                };
                let now = from.filter(|n| !st.owes(*n) && listed(&mut st, n));
                drop(st);
                self.send(taken);
                self.release_to(now);
                self.say_gone(self.lock());
                return;
            }
            let idle = st.buf.is_empty();
            self.settle_books(&mut st, idle, from, false)
        };
        self.send(out);
        self.route.wake();
    }

    /// Send what a change to the books asks for.
    pub(super) fn send(&self, out: Outgoing) {
        if out.is_empty() {
            return;
        }
        let Some(wire) = self.wire.upgrade() else { return };
        for (node, taken, grant) in out.credit {
            tracing::trace!(receiver = self.id(), node, taken, grant, "credit out");
            if !wire.credit(node, self.id(), taken, grant, out.urgent, out.batch) {
                tracing::debug!(node, "credit for a node that left dropped");
            }
        }
        for node in out.reclaim {
            tracing::trace!(receiver = self.id(), node, "reclaim out");
            wire.frame(node, &Frame::Reclaim { to: self.id() });
        }
    }

    /// Tell `nodes` that this receiver takes nothing more. A node that left (and may come back
    /// as a new incarnation) is first told as taken what this receiver took in of its messages
    /// and holds as its own: it delivers only the rest elsewhere.
    pub(super) fn release_to(&self, nodes: impl IntoIterator<Item = NodeId>) {
        let (owed, batch): (Vec<(NodeId, u32)>, u32) = {
            let mut st = self.lock();
            (nodes.into_iter().map(|n| (n, st.grants.take_owed(n))).collect(), st.grants.batch())
        };
        self.released_to(owed, batch);
    }

    /// Tell each node that this receiver takes nothing more, after telling it as taken what it
    /// is owed (see [`Inbox::release_to`]); `batch`: its books' (see [`Grants::batch`]).
    ///
    /// [`Grants::batch`]: crate::channel::credit::Grants::batch
    pub(super) fn released_to(&self, nodes: Vec<(NodeId, u32)>, batch: u32) {
        let Some(wire) = self.wire.upgrade() else { return };
        for (node, owed) in nodes {
            if owed > 0 && !wire.credit(node, self.id(), owed, 0, true, batch) {
                // Out of reach (its link is gone with it): answered if it comes back.
                self.lock().grants.restore_owed(node, owed);
            }
            wire.frame(node, &Frame::Released { to: self.id() });
        }
    }

    /// The receiver handle was dropped: hand over, and give this node's messages to the endpoint
    /// actor, which deregisters the receiver and delivers them elsewhere.
    pub(crate) fn drop_receiver(&self) {
        if let Some(mine) = self.detach(false) {
            match self.owner.get() {
                Some(Owner::Actor(actor)) => actor.0.do_send(Detached(mine)),
                Some(Owner::Unnamed(parts)) => {
                    (parts.on_drop)(self.id(), mine.len());
                    // (Also when its node is gone: the router holds the inbox, which holds it.)
                    self.route.close();
                    self.route.set_targets(Vec::new());
                }
                None => {}
            }
        }
    }

    /// Detach: returns this node's messages (encoded, counted as being re-routed, so that a close
    /// fence waits for them) to deliver elsewhere, or `None` if the inbox was detached already.
    /// Remote messages are dropped: every sending node is told to deliver them elsewhere, after
    /// what was taken. With `keep_local` (its node leaves and no other node has a receiver of the
    /// channel), this node's messages stay for the receiver to yield before it ends; what other
    /// nodes sent is theirs to deliver elsewhere either way, never here too.
    pub(super) fn detach(&self, keep_local: bool) -> Option<Vec<Bytes>> {
        let (mine, taken, nodes) = {
            let mut st = self.lock();
            if st.detached {
                return None;
            }
            st.detached = true;
            let mut mine = Vec::new();
            let mut nodes: BTreeSet<NodeId> = st.grants.known().chain(st.grants.owing()).collect();
            let unnamed = crate::ids::is_unnamed(self.id());
            if unnamed {
                // No registry tells the nodes waiting for credit that it is gone.
                nodes.extend(st.grants.take_wanting(|_| true));
            }
            let mut kept = std::collections::VecDeque::new();
            let leaving = st.leaving;
            for item in std::mem::take(&mut st.buf) {
                match item {
                    Item::Encoded { from: Some(from), .. } => {
                        nodes.insert(from);
                    }
                    // Its node is leaving: a message of a node that was removed, or leaves
                    // after this one, held as this node's own, goes back to that node (told
                    // with the release, not as taken), which delivers it elsewhere (one that
                    // left gracefully first has stopped: this node delivers it, see
                    // `Grants::give_back_owed`). Taken over, it was lost when nobody would grant
                    // this node credit any more to re-route it (its leave applied: the
                    // switchboard simulation's seed 73821, under another hash order). Every one
                    // still here goes back, broadcast copies too: what that node is told as
                    // taken counts its messages in the order sent, and those taken are the
                    // first (a copy given back is for a receiver that is gone: dropped there).
                    Item::Encoded { from: None, left: Some(node), .. }
                        if leaving && st.grants.give_back_owed(node) =>
                    {
                        nodes.insert(node);
                    }
                    local if keep_local => kept.push_back(local),
                    // A broadcast copy was for this receiver alone.
                    Item::Encoded { from: None, copy: true, .. } => {}
                    Item::Encoded { from: None, msg, .. } => mine.push(msg),
                    // An unnamed channel's: no other receiver, so dropped here as values (the
                    // reply handles in them tell their askers).
                    Item::Value(v) if unnamed => drop(v),
                    Item::Value(v) => match rmp_serde::to_vec_named(&v) {
                        Ok(b) => mine.push(b.into()),
                        Err(e) => {
                            tracing::error!(error = %e, "could not encode a message to deliver it elsewhere");
                        }
                    },
                }
            }
            st.buf = kept;
            if let Some(mut unacked) = st.unacked.take() {
                nodes.extend(unacked.remote.drain().map(|(node, _)| node));
                if keep_local {
                    // Still the application's to acknowledge.
                    st.unacked = Some(unacked);
                } else {
                    let local = std::mem::take(&mut unacked.local);
                    mine.extend(local.into_values().filter(|m| !m.is_empty()));
                }
            }
            let taken = st.grants.flush_taken();
            st.wake();
            (mine, taken, nodes)
        };
        self.route.rerouting(mine.len());
        // What was taken first, then the release, on the same link: the sending node knows
        // exactly what is left.
        self.send(taken);
        self.release_to(nodes);
        self.route.wake();
        Some(mine)
    }
}
