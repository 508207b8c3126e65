//! The inbox: a receiver's buffer, the last stop of a message before [`Receiver::recv`].
//!
//! It holds at most `capacity` messages ready to be received. Messages arriving from another
//! node beyond that wait in a staging queue that only the senders' windows bound (the network's
//! share, see [`crate::credit::Window`]); each message taken into the buffer is acknowledged to its
//! sending node in batches, which is what gives the sender its credit back. Messages from this
//! node's own senders are moved in as values, never encoded. Messages from the network are kept
//! encoded and decoded by the receiving task, off the connection's reader.
//!
//! When the [`Receiver`](crate::Receiver) is dropped the inbox is *detached*: what it held, and
//! whatever still arrives for it, goes to its endpoint actor to be re-routed to another receiver.
//!
//! [`Receiver::recv`]: crate::Receiver::recv

use std::any::Any;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use actix::Addr;

use crate::error::TryRecvError;
use crate::peer::Peers;
use crate::receiver::{Detached, EndpointActor};
use crate::registry::{EndpointId, NodeId};
use crate::router::ChannelRoute;

/// A message in a buffer: moved in from this node, or still encoded from the network.
enum Item<T> {
    Value(T),
    Encoded(Bytes),
}

/// Why a push was refused; the message comes back.
#[derive(Debug)]
pub(crate) enum Refused<T> {
    Full(T),
    Closed(T),
}

/// What the node needs of an inbox, whatever its message type.
pub(crate) trait ErasedInbox: Send + Sync + fmt::Debug + 'static {
    fn id(&self) -> EndpointId;
    /// How much owed credit is worth an ack of its own (less rides along with other frames).
    fn ack_batch(&self) -> u32;
    fn channel(&self) -> &Arc<ChannelRoute>;
    /// Messages from node `from`, in order. Returns how many went straight into the buffer:
    /// the caller acknowledges those now.
    fn push_remote(&self, from: NodeId, msgs: &mut dyn Iterator<Item = Bytes>) -> u32;
    /// An encoded message from this node: a broadcast, or (`rerouted`) a message a dropped
    /// receiver held, which was sent before any close and so is taken until the inbox has ended.
    fn try_push_encoded(&self, msg: Bytes, rerouted: bool) -> Result<(), Refused<Bytes>>;
    /// The channel is closed; `waiting_for` are the nodes whose fence has not come yet.
    fn close(&self, waiting_for: BTreeSet<NodeId>);
    /// Node `from` will send nothing more for this channel.
    fn fence(&self, from: NodeId);
    /// Give everything held, and everything still arriving, to the endpoint actor to re-route
    /// (the receiver was dropped, or its node is leaving). The receiver then ends.
    fn hand_over(&self);
    /// Whether the inbox was handed over (its receiver is gone).
    fn is_detached(&self) -> bool;
    /// The receiver's registration is gone without its handle being dropped (its node was
    /// removed from the cluster): it yields what it holds, then ends. True the first time.
    fn orphan(&self) -> bool;
    fn as_any(&self) -> &dyn Any;
}

struct State<T> {
    buf: VecDeque<Item<T>>,
    /// Arrived from the network while the buffer was full; bounded by the senders' windows.
    staged: VecDeque<(NodeId, Bytes)>,
    /// Messages taken into the buffer and not yet acknowledged, per sending node.
    unacked: Vec<(NodeId, u32)>,
    unacked_total: u32,
    waker: Option<Waker>,
    /// Set once the close is applied here: the nodes still to send their fence.
    closing: Option<BTreeSet<NodeId>>,
    /// The receiver is gone: everything goes to its actor for re-routing.
    detached: Option<mpsc::UnboundedSender<Bytes>>,
}

impl<T> State<T> {
    fn closed(&self) -> bool {
        self.closing.as_ref().is_some_and(BTreeSet::is_empty)
    }

    fn count_ack(&mut self, from: NodeId, n: u32) {
        if n == 0 {
            return;
        }
        self.unacked_total += n;
        match self.unacked.iter_mut().find(|(node, _)| *node == from) {
            Some((_, c)) => *c += n,
            None => self.unacked.push((from, n)),
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// The buffer of one receiver.
pub(crate) struct Inbox<T> {
    id: EndpointId,
    route: Arc<ChannelRoute>,
    capacity: usize,
    /// Acks are sent once this many are owed (or nothing more is staged).
    ack_batch: u32,
    state: Mutex<State<T>>,
    /// Where acks go: the links to the sending nodes.
    peers: Weak<Peers>,
    /// The endpoint actor that re-routes what the inbox held when it is handed over.
    actor: OnceLock<Addr<EndpointActor>>,
}

impl<T> fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("id", &self.id)
            .field("channel", &self.route.name)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Inbox<T> {
    pub(crate) fn new(
        id: EndpointId,
        route: Arc<ChannelRoute>,
        capacity: usize,
        peers: Weak<Peers>,
    ) -> Self {
        Inbox {
            id,
            route,
            capacity: capacity.max(1),
            ack_batch: (capacity as u32 / 4).max(1),
            state: Mutex::new(State {
                buf: VecDeque::with_capacity(capacity.min(4096)),
                staged: VecDeque::new(),
                unacked: Vec::new(),
                unacked_total: 0,
                waker: None,
                closing: None,
                detached: None,
            }),
            peers,
            actor: OnceLock::new(),
        }
    }

    pub(crate) fn set_actor(&self, actor: Addr<EndpointActor>) {
        let _ = self.actor.set(actor);
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message from a sender on this node.
    pub(crate) fn try_push(&self, msg: T) -> Result<(), Refused<T>> {
        let mut st = self.lock();
        if st.closing.is_some() {
            return Err(Refused::Closed(msg));
        }
        if st.detached.is_some() || st.buf.len() >= self.capacity || !st.staged.is_empty() {
            return Err(Refused::Full(msg));
        }
        st.buf.push_back(Item::Value(msg));
        st.wake();
        Ok(())
    }

    /// Take the next message, or register `cx` to be woken when there is one.
    ///
    /// Takes part in tokio's cooperative budget, as tokio's own channels do: a task that keeps
    /// finding a message ready yields to the runtime now and then (by returning `Pending` once
    /// its budget is spent), so the node's tasks and the application's other tasks on the same
    /// thread keep running.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        match self.next(Some(cx.waker())) {
            Ok(v) => {
                coop.made_progress();
                Poll::Ready(Some(v))
            }
            Err(TryRecvError::Closed) => {
                coop.made_progress();
                Poll::Ready(None)
            }
            Err(TryRecvError::Empty) => Poll::Pending,
        }
    }

    /// Take the next message if one is ready.
    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        self.next(None)
    }

    /// Take the next message; when there is none, leave `waker` to be woken (checked and stored
    /// under one lock, so no wake-up is lost).
    fn next(&self, waker: Option<&Waker>) -> Result<T, TryRecvError> {
        loop {
            let (item, acks) = {
                let mut st = self.lock();
                let Some(item) = st.buf.pop_front() else {
                    if st.closed() || st.detached.is_some() {
                        return Err(TryRecvError::Closed);
                    }
                    if let Some(w) = waker {
                        if !st.waker.as_ref().is_some_and(|old| old.will_wake(w)) {
                            st.waker = Some(w.clone());
                        }
                    }
                    return Err(TryRecvError::Empty);
                };
                if let Some((from, msg)) = st.staged.pop_front() {
                    st.buf.push_back(Item::Encoded(msg));
                    st.count_ack(from, 1);
                }
                let acks = if st.unacked_total >= self.ack_batch || st.staged.is_empty() {
                    st.unacked_total = 0;
                    std::mem::take(&mut st.unacked)
                } else {
                    Vec::new()
                };
                (item, acks)
            };
            self.send_acks(acks);
            self.route.wake();
            match item {
                Item::Value(v) => return Ok(v),
                Item::Encoded(bytes) => match rmp_serde::from_slice(&bytes) {
                    Ok(v) => return Ok(v),
                    // The registry guarantees the type; bytes that do not decode came from a
                    // broken or hostile peer. Dropping them is all that can be done.
                    Err(e) => tracing::warn!(
                        channel = %self.route.name,
                        error = %e,
                        "dropped a message that does not decode as {}",
                        std::any::type_name::<T>()
                    ),
                },
            }
        }
    }

    /// Hand everything held, and everything arriving from now on, to `forward` (encoded), and
    /// acknowledge what was staged. Returns false if the inbox was detached already.
    fn detach(&self, forward: mpsc::UnboundedSender<Bytes>) -> bool {
        let acks = {
            let mut st = self.lock();
            if st.detached.is_some() {
                return false;
            }
            for item in std::mem::take(&mut st.buf) {
                let bytes = match item {
                    Item::Encoded(b) => b,
                    Item::Value(v) => match rmp_serde::to_vec_named(&v) {
                        Ok(b) => b.into(),
                        Err(e) => {
                            tracing::error!(error = %e, "could not encode a message to re-route it");
                            continue;
                        }
                    },
                };
                self.reroute(&forward, bytes);
            }
            for (from, bytes) in std::mem::take(&mut st.staged) {
                st.count_ack(from, 1);
                self.reroute(&forward, bytes);
            }
            st.detached = Some(forward);
            st.unacked_total = 0;
            std::mem::take(&mut st.unacked)
        };
        self.send_acks(acks);
        self.route.wake();
        true
    }

    /// Queue a message for the endpoint actor to re-route; counted, so that this node's fence of
    /// a closing channel waits until re-routed messages are out.
    fn reroute(&self, forward: &mpsc::UnboundedSender<Bytes>, msg: Bytes) {
        if forward.send(msg).is_ok() {
            self.route.rerouting(1);
        }
    }

    fn send_acks(&self, acks: Vec<(NodeId, u32)>) {
        if acks.is_empty() {
            return;
        }
        if let Some(peers) = self.peers.upgrade() {
            for (node, n) in acks {
                peers.send_ack(node, self.id, n, self.ack_batch);
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> ErasedInbox for Inbox<T> {
    fn id(&self) -> EndpointId {
        self.id
    }

    fn ack_batch(&self) -> u32 {
        self.ack_batch
    }

    fn channel(&self) -> &Arc<ChannelRoute> {
        &self.route
    }

    fn push_remote(&self, from: NodeId, msgs: &mut dyn Iterator<Item = Bytes>) -> u32 {
        let mut st = self.lock();
        let mut taken = 0;
        if let Some(forward) = &st.detached {
            for m in msgs {
                self.reroute(forward, m);
                taken += 1;
            }
            return taken;
        }
        for m in msgs {
            if st.buf.len() < self.capacity && st.staged.is_empty() {
                st.buf.push_back(Item::Encoded(m));
                taken += 1;
            } else {
                st.staged.push_back((from, m));
            }
        }
        st.wake();
        taken
    }

    fn try_push_encoded(&self, msg: Bytes, rerouted: bool) -> Result<(), Refused<Bytes>> {
        let mut st = self.lock();
        if st.closed() || (st.closing.is_some() && !rerouted) {
            return Err(Refused::Closed(msg));
        }
        if st.detached.is_some() || st.buf.len() >= self.capacity || !st.staged.is_empty() {
            return Err(Refused::Full(msg));
        }
        st.buf.push_back(Item::Encoded(msg));
        st.wake();
        Ok(())
    }

    fn close(&self, waiting_for: BTreeSet<NodeId>) {
        let mut st = self.lock();
        st.closing = Some(match st.closing.take() {
            // Fences already counted stay counted.
            Some(prev) => prev.intersection(&waiting_for).copied().collect(),
            None => waiting_for,
        });
        st.wake();
    }

    fn fence(&self, from: NodeId) {
        let mut st = self.lock();
        if let Some(w) = st.closing.as_mut() {
            w.remove(&from);
        }
        st.wake();
    }

    fn hand_over(&self) {
        let (tx, rx) = mpsc::unbounded_channel();
        if self.detach(tx) {
            if let Some(actor) = self.actor.get() {
                actor.do_send(Detached(rx));
            }
        }
    }

    fn is_detached(&self) -> bool {
        self.lock().detached.is_some()
    }

    fn orphan(&self) -> bool {
        let mut st = self.lock();
        if st.detached.is_some() || st.closed() {
            return false;
        }
        st.closing = Some(BTreeSet::new());
        st.wake();
        true
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox(capacity: usize) -> Inbox<u64> {
        Inbox::new(1, Arc::new(ChannelRoute::new("t")), capacity, Weak::new())
    }

    fn encoded(v: u64) -> Bytes {
        rmp_serde::to_vec_named(&v).expect("encode").into()
    }

    fn poll(inbox: &Inbox<u64>) -> Poll<Option<u64>> {
        let waker = futures::task::noop_waker();
        inbox.poll_recv(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_closed_inbox_ends_only_after_every_fence() {
        let inbox = inbox(8);
        assert_eq!(inbox.push_remote(7, &mut [encoded(1)].into_iter()), 1);
        inbox.close(BTreeSet::from([7, 9]));
        assert_eq!(poll(&inbox), Poll::Ready(Some(1)));
        // Node 7 and 9 may still have data on the way: not the end yet.
        assert_eq!(poll(&inbox), Poll::Pending);
        inbox.push_remote(7, &mut [encoded(2)].into_iter());
        inbox.fence(7);
        assert_eq!(poll(&inbox), Poll::Ready(Some(2)));
        assert_eq!(poll(&inbox), Poll::Pending);
        inbox.fence(9);
        assert_eq!(poll(&inbox), Poll::Ready(None));
    }

    #[test]
    fn beyond_capacity_messages_are_staged_in_order_and_acked_when_taken() {
        let inbox = inbox(2);
        let taken = inbox.push_remote(7, &mut (0..5).map(encoded));
        assert_eq!(taken, 2, "only the buffer's room is acknowledged at once");
        // A local sender cannot jump the staged messages.
        assert!(matches!(inbox.try_push(99), Err(Refused::Full(99))));
        for i in 0..5 {
            assert_eq!(poll(&inbox), Poll::Ready(Some(i)));
        }
        assert_eq!(poll(&inbox), Poll::Pending);
        assert!(inbox.try_push(5).is_ok());
    }

    #[test]
    fn a_detached_inbox_hands_everything_over() {
        let inbox = inbox(2);
        inbox.try_push(1).expect("room");
        inbox.push_remote(7, &mut (2..5).map(encoded));
        let (tx, mut rx) = mpsc::unbounded_channel();
        assert!(inbox.detach(tx));
        // Later arrivals follow.
        inbox.push_remote(7, &mut [encoded(5)].into_iter());
        let mut got = Vec::new();
        while let Ok(b) = rx.try_recv() {
            got.push(rmp_serde::from_slice::<u64>(&b).expect("decode"));
        }
        assert_eq!(got, [1, 2, 3, 4, 5]);
        assert!(matches!(inbox.try_push(6), Err(Refused::Full(6))));
        // The receiver ends: what it held went elsewhere.
        assert_eq!(poll(&inbox), Poll::Ready(None));
    }

    #[test]
    fn undecodable_bytes_are_skipped_not_fatal() {
        let inbox = inbox(4);
        inbox.push_remote(7, &mut [Bytes::from_static(b"\xc1"), encoded(3)].into_iter());
        assert_eq!(poll(&inbox), Poll::Ready(Some(3)));
    }
}
