//! The inbox with its message type erased ([`ErasedInbox`]): what the router and the switchboard
//! call, for data and credit frames from other nodes, fences, closes and hand-overs.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ErasedInbox, Inbox, Item, Refused};
use crate::channel::credit::Departure;
use crate::channel::router::ChannelRoute;
use crate::ids::{EndpointId, NodeId};
use crate::link::dispatch::Msgs;

impl<T: Serialize + DeserializeOwned + Send + 'static> Inbox<T> {
    /// Messages from node `from`, in order, from any iterator: [`ErasedInbox::push_frame`]'s
    /// (a frame's, cut as they are buffered), the unit tests' and the credit simulation's.
    pub(crate) fn push_remote(
        &self,
        from: NodeId,
        copies: bool,
        msgs: impl ExactSizeIterator<Item = Bytes>,
    ) {
        let mut st = self.lock();
        if !st.detached && st.ended && st.owes(from) {
            // Not taken in, and not released yet: a release would have the node deliver again
            // the deliveries of its that the application may still acknowledge (the
            // switchboard simulation's seed 66361: delivered twice). It is told once they are
            // acknowledged.
            if let Some(unacked) = st.unacked.as_mut() {
                unacked.release_after_acks.insert(from);
            }
            return;
        }
        if st.detached || st.ended {
            drop(st);
            // Its sender keeps it: tell it (again) to deliver it elsewhere. (After the end, only
            // a node that was out of the cluster when the channel closed, and so was not waited
            // for, still sends: taken in here, it would be lost.)
            self.release_to([from]);
            return;
        }
        // Booked at once (a frame's messages: about 40 instructions a message, booked one by
        // one), then buffered in order: those on credit, then those on credit its node had
        // when it left (held as this node's own: its taking is told to nobody, and if the
        // receiver goes, this node delivers it elsewhere); the rest came without credit and
        // are not taken in.
        let n = msgs.len();
        let (credit, left) = st.grants.arrived_many(from, u32::try_from(n).unwrap_or(u32::MAX));
        let taken_in = (credit + left) as usize;
        st.buf.reserve(taken_in);
        for (i, msg) in msgs.take(taken_in).enumerate() {
            let (from, left) =
                if i < credit as usize { (Some(from), None) } else { (None, Some(from)) };
            st.buf.push_back(Item::Encoded { from, msg, copy: copies, left });
        }
        let refused = n - taken_in;
        st.wake();
        // (A want kept until this node's credit was used stands now: answered at once.)
        let out = st.grants.wants_settling().then(|| {
            let idle = st.buf.is_empty();
            self.settle_books(&mut st, idle, None, false)
        });
        drop(st);
        if let Some(out) = out {
            self.send(out);
        }
        if refused > 0 {
            tracing::warn!(
                node = from,
                receiver = self.id(),
                messages = refused,
                "messages sent without credit dropped"
            );
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ErasedInbox for Inbox<T> {
    fn id(&self) -> EndpointId {
        self.id.load(Ordering::Acquire)
    }

    fn channel(&self) -> &Arc<ChannelRoute> {
        &self.route
    }

    fn push_frame(&self, from: NodeId, copies: bool, (frame, msgs): Msgs<'_>) {
        self.push_remote(from, copies, msgs.cut_from(frame));
    }

    fn try_push_encoded(
        &self,
        msg: Bytes,
        rerouted: bool,
        copy: bool,
    ) -> Result<(), Refused<Bytes>> {
        let mut st = self.lock();
        if st.ended || (st.closing.is_some() && !rerouted) {
            return Err(Refused::Closed(msg));
        }
        if let Err(out) = Self::local_room(&mut st) {
            drop(st);
            self.send(out);
            return Err(Refused::Full(msg));
        }
        st.buf.push_back(Item::Encoded { from: None, msg, copy, left: None });
        st.wake();
        Ok(())
    }

    fn want(&self, from: NodeId) {
        let out = {
            let mut st = self.lock();
            if st.detached {
                return;
            }
            if st.restarting {
                // Asked under its old id (by a node that has not applied its removal): what it
                // granted under that id, the node would count on a window released since, and
                // the credit would be out for ever (the switchboard simulation's seed 19663,
                // with freezes). Offered again under the new id.
                return;
            }
            if st.ended {
                // It takes nothing more: told it is gone, unless it has deliveries here that
                // the application may still acknowledge (see `State::tell_gone`).
                st.grants.want(from);
                self.say_gone(st);
                return;
            }
            st.grants.want(from);
            let idle = st.buf.is_empty();
            self.settle_books(&mut st, idle, None, false)
        };
        self.send(out);
    }

    fn returned(&self, from: NodeId, n: u32, last: Option<bool>) {
        let out = {
            let mut st = self.lock();
            st.grants.returned(from, n);
            if let Some(member) = last {
                st.grants.handed_over(from, member);
            }
            let idle = st.buf.is_empty();
            self.settle_books(&mut st, idle, None, false)
        };
        self.send(out);
        self.route.wake();
    }

    fn sends_no_more(&self, from: NodeId) {
        let out = {
            let mut st = self.lock();
            if !st.grants.sends_no_more(from) {
                return;
            }
            let idle = st.buf.is_empty();
            self.settle_books(&mut st, idle, None, false)
        };
        self.send(out);
        self.route.wake();
    }

    fn offer(&self, nodes: &[NodeId]) {
        let out = {
            let mut st = self.lock();
            if st.detached {
                return;
            }
            let new: Vec<NodeId> = {
                let known: BTreeSet<NodeId> = st.grants.known().collect();
                nodes.iter().copied().filter(|n| !known.contains(n)).collect()
            };
            if new.is_empty() {
                return;
            }
            for n in new {
                st.grants.want(n);
            }
            let idle = st.buf.is_empty();
            self.settle_books(&mut st, idle, None, false)
        };
        self.send(out);
    }

    fn node_left(&self, node: NodeId, done: bool, how: Departure) -> bool {
        let (out, wanted) = {
            let mut st = self.lock();
            if how == Departure::LeftAfter && st.leaving {
                // It left after this node did (the log's order): it delivers elsewhere whatever
                // this node did not tell it was taken before its leave (it applied this node's
                // leave first), and this node hands nothing of it to the application. Held as
                // this node's own, one was taken here too (the switchboard simulation's seed
                // 13439, with impatient leaves): it stays that node's, released to it.
                return false;
            }
            let wanted = st.grants.wants(node);
            // What it sent and the receiver holds is no longer its to hear about: if the node
            // comes back (it was removed while alive), it is another incarnation, which must not
            // be told of these. They are held as this node's own from now on (delivered here,
            // or elsewhere by this node if the receiver goes).
            let mut held = 0u32;
            for item in &mut st.buf {
                if let Item::Encoded { from: from @ Some(_), left, .. } = item {
                    if *from == Some(node) {
                        *from = None;
                        *left = Some(node);
                        held = held.saturating_add(1);
                    }
                }
            }
            // Deliveries not acknowledged yet come before those held, and this node has no copy
            // of them: the node's new incarnation must deliver them and what follows again.
            // Not a node that left gracefully before this one: it comes back as no incarnation,
            // and this node delivers what it holds, so it is told of all it took in (told none,
            // it delivered again what this node delivers: the switchboard simulation's seed
            // 49239, with leaves written twice).
            let unacked = match st.unacked.as_mut().and_then(|u| u.remote.get_mut(&node)) {
                Some(acks) => acks.forget(),
                None => 0,
            };
            let owed = match how {
                Departure::LeftFirst => Some(held.saturating_add(unacked)),
                _ => (unacked == 0).then_some(held),
            };
            st.grants.forget(node, owed, how);
            if done {
                // Nothing more comes on the credit it had (kept, a grant it never used stayed
                // for good: tests/churn.rs, after the want kept for a leaving node).
                st.grants.void_left_credit(node);
            }
            if let Some(unacked) = st.unacked.as_mut() {
                unacked.release_after_acks.remove(&node);
            }
            let idle = st.buf.is_empty();
            (self.settle_books(&mut st, idle, None, false), wanted)
        };
        self.send(out);
        self.route.wake();
        wanted
    }

    fn restart(&self) {
        let (nodes, batch) = {
            let mut st = self.lock();
            // Restarted already: nothing was taken in from other nodes since.
            if st.detached || st.restarting {
                return;
            }
            // What other nodes sent goes elsewhere (they saw this receiver removed, or are told
            // now, in case their copy of the registry skipped the removal): not here too.
            let before = st.buf.len();
            st.buf.retain(|item| !matches!(item, Item::Encoded { from: Some(_), .. }));
            let dropped = u32::try_from(before - st.buf.len()).unwrap_or(u32::MAX);
            st.grants.taken(None, dropped);
            let mut nodes: BTreeSet<NodeId> = st.grants.known().collect();
            if let Some(unacked) = st.unacked.as_mut() {
                // Delivered and not acknowledged: they go elsewhere too; acknowledged, they
                // give their room back and are told to nobody.
                for (node, acks) in &mut unacked.remote {
                    acks.forget();
                    nodes.insert(*node);
                }
            }
            nodes.extend(st.grants.owing());
            // A node that left and may still send on the credit it had: what it sends is not
            // taken in once the books are reset, and it is the one to deliver it elsewhere.
            // (Told nothing, its message still on its way was dropped here as sent without
            // credit: the switchboard simulation's seed 3898, with freezes, once departures
            // came before restarts; before, the node was still among those known.) What this
            // receiver holds of it as its own is told first (`take_owed`), so it delivers the
            // rest alone; a release reaches it before this node's acknowledgement of anything
            // it sends later, so before its hand-over ends.
            nodes.extend(st.grants.may_still_send());
            // Under the same lock as the reset: nothing a node sends meanwhile is taken in on
            // credit it held before (it is released; it delivers that elsewhere).
            let owed: Vec<(NodeId, u32)> =
                nodes.into_iter().map(|n| (n, st.grants.take_owed(n))).collect();
            st.grants.reset_remote();
            st.restarting = true;
            (owed, st.grants.batch())
        };
        self.released_to(nodes, batch);
        self.route.wake();
    }

    fn renamed(&self, id: EndpointId) {
        let mut st = self.lock();
        self.id.store(id, Ordering::Release);
        st.restarting = false;
    }

    fn rejoined(&self, node: NodeId) -> u32 {
        let _ = self.node_left(node, false, Departure::Removed);
        // The old incarnation's credit, counted until now (see `Grants::forget`), is free
        // again: granted to whoever wants it (left unsettled, a node that wanted waited for
        // ever: the switchboard simulation's seed 1805, once seed 114199 kept it counted).
        let (owed, out) = {
            let mut st = self.lock();
            let owed = st.grants.rejoined(node);
            let idle = st.buf.is_empty();
            (owed, self.settle_books(&mut st, idle, None, false))
        };
        self.send(out);
        self.route.wake();
        owed
    }

    fn close(&self, waiting_for: BTreeSet<NodeId>) {
        let mut st = self.lock();
        st.closing = Some(Box::new(match st.closing.take() {
            // Fences already counted stay counted.
            Some(prev) => prev.intersection(&waiting_for).copied().collect(),
            None => waiting_for,
        }));
        st.wake();
    }

    fn fence(&self, from: NodeId) {
        let mut st = self.lock();
        if let Some(w) = st.closing.as_mut() {
            w.remove(&from);
        }
        st.wake();
    }

    fn hand_over(&self, keep_local: bool) -> Option<Vec<Bytes>> {
        self.detach(keep_local)
    }

    fn tell_taken(&self) {
        let mut out = {
            let mut st = self.lock();
            // From now on, what other nodes sent stays here: it goes back to them with the
            // hand-over (the leave is committed meanwhile, and a "taken" told after it would
            // come too late: the message would be delivered twice).
            st.leaving = true;
            st.grants.flush_taken()
        };
        out.urgent = true;
        self.send(out);
    }

    fn is_detached(&self) -> bool {
        self.lock().detached
    }

    fn no_local_waiter(&self, elsewhere: bool) {
        let out = {
            let mut st = self.lock();
            if !st.grants.local_wanted() {
                return;
            }
            if elsewhere {
                // (Another sender still waiting finds no room when it tries again, and asks
                // for it again.)
                st.grants.local_waiting(false);
            }
            let idle = st.buf.is_empty();
            self.settle_books(&mut st, idle, None, false)
        };
        self.send(out);
    }

    fn stopping(&self) {
        let mut st = self.lock();
        st.leaving = false;
        st.wake();
    }

    fn orphan(&self) -> bool {
        let mut st = self.lock();
        if st.detached || st.closed() {
            return false;
        }
        // What other nodes sent goes elsewhere (they saw this receiver removed, or are told
        // now, in case their copy of the registry skipped the removal): not here too.
        let before = st.buf.len();
        st.buf.retain(|item| !matches!(item, Item::Encoded { from: Some(_), .. }));
        let dropped = u32::try_from(before - st.buf.len()).unwrap_or(u32::MAX);
        st.grants.taken(None, dropped);
        let mut nodes: BTreeSet<NodeId> = st.grants.known().chain(st.grants.owing()).collect();
        if crate::ids::is_unnamed(self.id()) {
            // No registry tells the nodes waiting for credit that it is gone (dropped from
            // the list as it ends, unanswered, they waited for ever: the switchboard
            // simulation's seed 229, with unnamed channels).
            nodes.extend(st.grants.take_wanting(|_| true));
        }
        st.closing = Some(Box::default());
        st.wake();
        drop(st);
        self.release_to(nodes);
        true
    }

    fn entries(&self) -> usize {
        let st = self.lock();
        st.grants.entries() + st.unacked.as_ref().map_or(0, |u| u.remote.len())
    }

    fn buffered(&self) -> usize {
        self.lock().buf.len()
    }

    fn granted(&self) -> BTreeSet<NodeId> {
        let st = self.lock();
        st.grants.known().chain(st.grants.wanting()).collect()
    }

    fn has_ended(&self) -> bool {
        self.lock().ended
    }

    fn awaited(&self) -> BTreeSet<NodeId> {
        self.lock().closing.as_deref().cloned().unwrap_or_default()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
