//! The inbox: a receiver's buffer, the last stop of a message before [`Receiver::recv`].
//!
//! It holds at most `capacity` messages, counted together with the credit it has granted to
//! sending nodes (see [`crate::channel::credit::Grants`]): a remote node sends only on credit, and a
//! sender on this node hands a message over only when there is room, so nothing waits anywhere
//! beyond the capacity. Messages from this node's own senders are moved in as values, never
//! encoded; messages from the network are kept encoded and decoded by the receiving task.
//!
//! A message counts as delivered when the application takes it: only then is its sending node
//! told (so that it lets go of its copy) and the room granted again. With manual
//! acknowledgement ([`Delivery`](crate::Delivery)), only when the application acknowledges it.
//!
//! When the [`Receiver`](crate::Receiver) is dropped the inbox is *detached*: messages from this
//! node's senders are handed to its endpoint actor to be delivered elsewhere, and every sending
//! node is told ([`Frame::Released`](crate::link::wire::Frame::Released)) that what it sent and was
//! not taken is to go to another receiver; what still arrives is dropped (its sender has it).
//!
//! [`Receiver::recv`]: crate::Receiver::recv

mod ack;
mod acks;
mod erased;
mod links;
mod many;
pub(crate) mod owner;
use std::any::Any;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use actix::Message;

use crate::channel::credit::{Departure, Grants, Outgoing};
use crate::channel::decoding;
use crate::channel::oneshot::{self, Gates};
use crate::channel::router::ChannelRoute;
use crate::channel::trace;
use crate::error::TryRecvError;
use crate::ids::{EndpointId, NodeId};
use crate::link::envelope;

use acks::{Acks, Unacked};
pub(crate) use links::Wire;

/// To the receiver's endpoint actor: the receiver went away; here are the messages of this
/// node's senders it held (encoded), to deliver elsewhere.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Detached(pub(crate) Vec<Bytes>);

/// A message in a buffer: moved in from this node, or encoded (from the network, or a
/// broadcast copy or redelivery from this node: `from` is `None`).
enum Item<T> {
    Value(T),
    /// `copy`: a broadcast copy, for this receiver alone (never delivered elsewhere: every
    /// other receiver had its own), from this node or from another (which, if it leaves the
    /// cluster, leaves it to this node: see [`ErasedInbox::node_left`]).
    Encoded {
        from: Option<NodeId>,
        msg: Bytes,
        copy: bool,
        /// Held as this node's own (`from` is `None`), though node `left` sent it: it came on
        /// the credit that node had when it left, or was here when it left (see
        /// [`ErasedInbox::node_left`]).
        left: Option<NodeId>,
    },
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
    fn channel(&self) -> &Arc<ChannelRoute>;
    /// A data frame's messages from node `from`, in order, sent on credit this inbox granted
    /// (broadcast copies, if `copies`), booked together before they are read (hence their
    /// exact count), each cut from the frame as it is buffered.
    fn push_frame(&self, from: NodeId, copies: bool, msgs: crate::link::dispatch::Msgs<'_>);
    /// An encoded message from this node: a broadcast copy (`copy`), or (`rerouted`) a message
    /// another receiver did not take, which was sent before any close and so is taken until the
    /// inbox has ended.
    fn try_push_encoded(
        &self,
        msg: Bytes,
        rerouted: bool,
        copy: bool,
    ) -> Result<(), Refused<Bytes>>;
    /// Node `from` has messages waiting and no credit (a member, with a sender of the channel
    /// or messages of one to redeliver: see [`crate::channel::switchboard::Switchboard::want`]).
    fn want(&self, from: NodeId);
    /// Node `from` gave back `n` unused credits. `last`: it has handed over, and wants nothing
    /// more; `Some(member)` says whether this node's registry still lists it.
    fn returned(&self, from: NodeId, n: u32, last: Option<bool>);
    /// Node `from` has stopped sending for good (see `Grants::sends_no_more`).
    fn sends_no_more(&self, from: NodeId);
    /// These nodes have senders of the channel: offer credit to any not offered yet.
    fn offer(&self, nodes: &[NodeId]);
    /// Node `node` left (`done`: its credit is void; `how`: whether it asked to leave, and
    /// may hand over on the credit it had, which stays counted, and whether before this node:
    /// see `Grants::forget`); whether it waited for credit. One that leaves after this node,
    /// which is leaving, changes nothing (false): what it sent stays its own.
    fn node_left(&self, node: NodeId, done: bool, how: Departure) -> bool;
    /// The receiver's registration was removed with its node (which starts over once let back
    /// in): what other nodes sent it goes elsewhere (they are told, in case they skipped the
    /// removal), their credit is void, and it takes nothing from them until it is registered
    /// again ([`ErasedInbox::renamed`]). What this node's senders gave it stays. Once until
    /// then: a second call does nothing.
    fn restart(&self);
    /// Registered again as `id` (after [`ErasedInbox::restart`]).
    fn renamed(&self, id: EndpointId);
    /// Node `node` came back as a new incarnation (it was removed while alive): forget its
    /// books as when it left, and say how many of its earlier messages, from the first it was
    /// not told of, this receiver took in.
    fn rejoined(&self, node: NodeId) -> u32;
    /// The channel is closed; `waiting_for` are the nodes whose fence has not come yet.
    fn close(&self, waiting_for: BTreeSet<NodeId>);
    /// Node `from` will send nothing more for this channel.
    fn fence(&self, from: NodeId);
    /// The receiver goes away (its node is leaving): tell every sending node to deliver what it
    /// sent elsewhere, and return this node's messages (encoded, counted as being re-routed on
    /// the channel's route) to deliver elsewhere, or, with `keep_local`, keep them for the
    /// receiver to yield. `None` if it was handed over already. The receiver then ends.
    fn hand_over(&self, keep_local: bool) -> Option<Vec<Bytes>>;
    /// Tell every sending node now what the receiver has taken of its messages (its node is
    /// about to leave: a sending node delivers elsewhere whatever it was not told was taken).
    fn tell_taken(&self);
    /// Whether the inbox was handed over (its receiver is gone).
    fn is_detached(&self) -> bool;
    /// No sender of this node waits for room any more (`elsewhere`: the one that found none here
    /// placed its message with another receiver): room kept for one goes to the nodes that want.
    fn no_local_waiter(&self, elsewhere: bool);
    /// Its node stops (after a leave that handed over, or one that failed and handed nothing
    /// over): what it holds is handed out again, then the end.
    fn stopping(&self);
    /// The receiver's registration is gone without its handle being dropped (its node was
    /// removed from the cluster, and its senders deliver what it held elsewhere): it yields what
    /// its own node's senders gave it, then ends. True the first time.
    fn orphan(&self) -> bool;
    /// Messages waiting to be taken.
    fn buffered(&self) -> usize;
    /// The nodes this receiver granted credit to, ever (those that may have sent it something),
    /// and those waiting for credit now (they may be granted some before they hear of a close).
    fn granted(&self) -> BTreeSet<NodeId>;
    /// Whether the receiver has ended (`recv` said so).
    fn has_ended(&self) -> bool;
    /// The nodes whose fence the closed channel still awaits (none if it is not closed).
    fn awaited(&self) -> BTreeSet<NodeId>;
    /// Entries kept per sending node (for tests that check that churn leaves nothing behind).
    fn entries(&self) -> usize;
    fn as_any(&self) -> &dyn Any;
}

/// A message taken: the token that acknowledges it (manual acknowledgement), and the reply
/// handles in it that wait for the acknowledgement, and its `receive` span (see [`trace`]).
pub(crate) type Taken<T> = (T, Option<Token>, Gates, trace::Received);

/// Which delivery an acknowledgement is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Token {
    Remote { from: NodeId, seq: u64 },
    Local(u64),
}

struct State<T> {
    buf: VecDeque<Item<T>>,
    grants: Grants,
    waker: Option<Waker>,
    /// Set once the close is applied here: the nodes still to send their fence.
    #[expect(clippy::box_collection, reason = "8 bytes in every inbox, not 24: most never close")]
    closing: Option<Box<BTreeSet<NodeId>>>,
    /// The receiver is gone.
    detached: bool,
    /// The channel ended here: `recv` has said so (closed, every fence in, nothing left), and
    /// nothing that comes after can be taken.
    ended: bool,
    /// Its node is leaving and has told what was taken: messages of other nodes are not handed
    /// out any more (see [`ErasedInbox::tell_taken`]).
    leaving: bool,
    /// Removed with its node, which starts over: it grants nothing until registered again
    /// under its new id (see [`ErasedInbox::restart`]).
    restarting: bool,
    /// Manual acknowledgement: deliveries not yet acknowledged.
    unacked: Option<Box<Unacked>>,
}

impl<T> State<T> {
    /// The receiver has ended: the nodes still asking it for credit (to deliver again, after
    /// the close, what a receiver that went away held) will get none. Those with nothing of
    /// theirs delivered here and unacknowledged are told it is gone, after what it took of
    /// theirs: they stop waiting (the switchboard simulation's seed 8259, where a node waited
    /// for ever). Those with unacknowledged deliveries are not: a release would have them
    /// deliver those again, while the application may still acknowledge them.
    fn tell_gone(&mut self) -> (Outgoing, Vec<NodeId>) {
        let unacked = self.unacked.as_ref();
        let owes = |node| unacked.and_then(|u| u.remote.get(&node)).is_some_and(Acks::waiting);
        let gone = self.grants.take_wanting(|n| !owes(n));
        let taken = if gone.is_empty() { Outgoing::default() } else { self.grants.flush_taken() };
        (taken, gone)
    }

    fn closed(&self) -> bool {
        self.closing.as_ref().is_some_and(|w| w.is_empty())
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// The buffer of one receiver.
pub(crate) struct Inbox<T> {
    /// The receiver's registration (a new one if its node started over: see
    /// [`ErasedInbox::restart`]).
    id: AtomicU64,
    route: Arc<ChannelRoute>,
    /// (Its capacity, and the credit worth a frame of its own, are in its books: see
    /// [`Grants::batch`].)
    state: Mutex<State<T>>,
    /// Where credit and releases go: the links to the sending nodes.
    wire: Weak<dyn Wire>,
    /// Who is told when the receiver is dropped, and the node its messages are decoded on (set
    /// with its receiver).
    owner: OnceLock<owner::Owner>,
}

impl<T> fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Inbox");
        d.field("id", &self.id.load(std::sync::atomic::Ordering::Relaxed));
        d.field("channel", self.route.label());
        // (Kept in its books alone: shown unless they are locked now.)
        let state = match self.state.try_lock() {
            Ok(st) => Some(st),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(st) = state {
            d.field("capacity", &st.grants.capacity());
        }
        d.finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Inbox<T> {
    pub(crate) fn new(
        id: EndpointId,
        route: Arc<ChannelRoute>,
        capacity: usize,
        manual_ack: bool,
        wire: Weak<dyn Wire>,
    ) -> Self {
        let capacity = u32::try_from(capacity.max(1)).unwrap_or(u32::MAX);
        let grants = Grants::new(capacity);
        Inbox {
            id: AtomicU64::new(id),
            route,
            state: Mutex::new(State {
                // (An unnamed channel's, one per request maybe, grows as it needs; a named one
                // starts with room for 1024, not its capacity: a node with many receivers
                // reserves no more than it did when the default capacity was 1024.)
                buf: VecDeque::with_capacity(if crate::ids::is_unnamed(id) {
                    0
                } else {
                    capacity.min(1024) as usize
                }),
                grants,
                waker: None,
                closing: None,
                detached: false,
                ended: false,
                leaving: false,
                restarting: false,
                unacked: manual_ack.then(Box::default),
            }),
            wire,
            owner: OnceLock::new(),
        }
    }

    /// A look at the books (for the delivery protocol's simulation).
    #[cfg(test)]
    pub(crate) fn books<R>(&self, f: impl FnOnce(&Grants) -> R) -> R {
        f(&self.lock().grants)
    }

    /// What the inbox waits for to end (the simulation's report): the nodes whose fence it
    /// waits for, whether its node re-routes, what it holds.
    #[cfg(test)]
    pub(crate) fn ending(&self) -> String {
        let st = self.lock();
        format!(
            "closing {:?}, rerouting {}, {} buffered, leaving {}, ended {}",
            st.closing,
            self.route.is_rerouting(),
            st.buf.len(),
            st.leaving,
            st.ended
        )
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        crate::sync::lock(&self.state)
    }

    /// Take room for one message from this node, if there is any. Without, credit may sit
    /// unused with other nodes: what asks it back is returned, to send once the lock is dropped.
    fn local_room(st: &mut State<T>) -> Result<(), Outgoing> {
        if st.detached {
            return Err(Outgoing::default());
        }
        if st.grants.local() {
            return Ok(());
        }
        // The sender on this node is trying now: its want stands for this settle.
        let idle = st.buf.is_empty();
        Err(st.grants.settle(idle, None, false))
    }

    /// A message from a sender on this node.
    pub(crate) fn try_push(&self, msg: T) -> Result<(), Refused<T>> {
        let mut st = self.lock();
        if st.closing.is_some() {
            return Err(Refused::Closed(msg));
        }
        if let Err(out) = Self::local_room(&mut st) {
            drop(st);
            self.send(out);
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
        self.poll_next(cx).map(|o| o.map(|(v, _, gates, _)| gates.discard_with(v)))
    }

    /// Like [`Inbox::poll_recv`], with the token that acknowledges the message (manual
    /// acknowledgement).
    pub(crate) fn poll_delivery(&self, cx: &mut Context<'_>) -> Poll<Option<Taken<T>>> {
        self.poll_next(cx)
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Taken<T>>> {
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

    /// The receiver has ended: tell the nodes still asking for credit it is gone (see
    /// [`State::tell_gone`]), once the lock is let go.
    fn say_gone(&self, mut st: MutexGuard<'_, State<T>>) {
        let (taken, gone) = st.tell_gone();
        drop(st);
        self.send(taken);
        if !gone.is_empty() {
            self.release_to(gone);
        }
    }

    /// Settle the books (see [`Grants::settle`]), knowing whether a sender of this node waits
    /// for room. A detached receiver grants nothing more: its release went to the nodes it had
    /// granted, and credit granted after was a node's for ever (room freed by a return, or by
    /// a node that left, went to a node that wanted it: the switchboard simulation's seeds
    /// 1766 and 1884, once it bounded the tables).
    fn settle_books(
        &self,
        st: &mut State<T>,
        idle: bool,
        last: Option<NodeId>,
        urgent: bool,
    ) -> Outgoing {
        if st.detached {
            return st.grants.flush_taken();
        }
        let mut last = last;
        if let Some(waiting) = st.closing.as_ref().filter(|_| crate::ids::is_unnamed(self.id())) {
            // A closed unnamed channel grants only to the nodes whose fence it still waits for
            // (what they deliver again after a start-over). Granted to another (one that asked
            // before its own close), a router made there later from a sender in a message
            // sent on it after the end, and the message was lost (the switchboard
            // simulation's seed 599, with unnamed channels).
            let _ = st.grants.take_wanting(|n| !waiting.contains(&n));
            last = last.filter(|n| waiting.contains(n));
        }
        st.grants.local_waiting(self.route.has_waiters());
        st.grants.settle(idle, last, urgent)
    }

    /// Nothing to take now (`held_back`: the next message is another node's, held back while
    /// this node leaves): `Closed` if the inbox has ended (closed, every fence in, and nothing of
    /// this node's own on its way here again: a message of its senders that another receiver did
    /// not take, which was sent before the close, and which the fence this node sends waits for
    /// too), told to the nodes still asking; otherwise `Empty`, with `waker` left to be woken
    /// and the books settled (the buffer ran dry: what was taken since the last time is told
    /// now, once per batch that arrived, not once per message).
    fn nothing_to_take(
        &self,
        mut st: MutexGuard<'_, State<T>>,
        waker: Option<&Waker>,
        held_back: bool,
    ) -> TryRecvError {
        let rerouting = st.closed() && self.route.is_rerouting();
        let end = (st.closed() && !rerouting) || st.detached;
        if rerouting {
            if let Some(w) = waker {
                self.route.wake_when_rerouted(w);
            }
        }
        if end && !held_back {
            st.ended = true;
            self.say_gone(st);
            return TryRecvError::Closed;
        }
        if let Some(w) = waker {
            if !st.waker.as_ref().is_some_and(|old| old.will_wake(w)) {
                st.waker = Some(w.clone());
            }
        }
        let out = self.settle_books(&mut st, true, None, false);
        drop(st);
        self.send(out);
        TryRecvError::Empty
    }

    /// Take the next message if one is ready.
    pub(crate) fn try_recv(&self) -> Result<Taken<T>, TryRecvError> {
        self.next(None)
    }

    /// Take the next message; when there is none, leave `waker` to be woken (checked and stored
    /// under one lock, so no wake-up is lost).
    fn next(&self, waker: Option<&Waker>) -> Result<Taken<T>, TryRecvError> {
        loop {
            let (item, token, out) = {
                let mut st = self.lock();
                let remote_next =
                    matches!(st.buf.front(), Some(Item::Encoded { from: Some(_), .. }));
                let held_back = st.leaving && remote_next;
                let next = if held_back { None } else { st.buf.pop_front() };
                let Some(item) = next else {
                    return Err(self.nothing_to_take(st, waker, held_back));
                };
                let from = match &item {
                    Item::Encoded { from, .. } => *from,
                    Item::Value(_) => None,
                };
                let token = match st.unacked.as_mut() {
                    Some(unacked) => Some(match from {
                        Some(from) => {
                            let seq = unacked.remote.entry(from).or_default().push();
                            Token::Remote { from, seq }
                        }
                        None => {
                            unacked.next_local += 1;
                            Token::Local(unacked.next_local)
                        }
                    }),
                    None => None,
                };
                // Taken (a delivery to acknowledge is taken when acknowledged), and settled once
                // per batch: between, nothing would come of it (see `Grants::quiet`; a closing or
                // detached inbox settles every time), and `None` is sent.
                let out = if token.is_none() {
                    let idle = st.buf.is_empty();
                    let quiet = st.grants.take_one(from, idle) && st.closing.is_none();
                    (!quiet || st.detached).then(|| self.settle_books(&mut st, idle, from, false))
                } else {
                    None
                };
                (item, token, out)
            };
            // (What settling says, this message taken among it, goes once the reply handles in
            // it are decoded: their claims are queued first, and a writer that takes the credit
            // has taken them before it; see `Outbox::take`.)
            let mut gates = Gates::default();
            #[cfg_attr(
                not(feature = "opentelemetry"),
                expect(clippy::let_unit_value, reason = "a span, with the feature")
            )]
            let mut received = trace::Received::default();
            let value = match item {
                Item::Value(v) => {
                    if let Some(Token::Local(n)) = token {
                        // Kept encoded until acknowledged, to go elsewhere if it never is.
                        // If it cannot be encoded, it cannot go elsewhere: an empty entry
                        // still gives its room back when acknowledged.
                        let kept;
                        (kept, gates) = oneshot::gated(|| rmp_serde::to_vec_named(&v));
                        let kept = kept.map(Bytes::from).unwrap_or_else(|e| {
                            tracing::error!(error = %e, "could not keep a delivery");
                            Bytes::new()
                        });
                        if let Some(u) = self.lock().unacked.as_mut() {
                            u.local.insert(n, kept);
                        }
                    }
                    v
                }
                Item::Encoded { msg, from, copy, .. } => {
                    // After its header, if any (see `link::envelope`); one cut short leaves the
                    // whole message to decode, which fails on the header's first byte.
                    let header = envelope::split(&msg);
                    let (traceparent, at) = header.as_ref().map_or((None, 0), |h| *h);
                    let body = &msg[at..];
                    let decode = || rmp_serde::from_slice(body);
                    let context = self.owner.get().map(owner::Owner::context);
                    let decoded = decoding::with_from(context, from, || {
                        // (A broadcast copy is never delivered again: not gated.)
                        if token.is_some() && !copy {
                            let (decoded, g) = oneshot::gated(decode);
                            gates = g;
                            decoded
                        } else {
                            decode()
                        }
                    });
                    match decoded {
                        Ok(v) => {
                            received = trace::received(traceparent, self.route.label());
                            if let Some(Token::Local(n)) = token {
                                if let Some(u) = self.lock().unacked.as_mut() {
                                    // A copy is not delivered elsewhere: an empty entry gives its
                                    // room back when acknowledged, and nothing else.
                                    u.local.insert(n, if copy { Bytes::new() } else { msg });
                                }
                            }
                            v
                        }
                        // From an untyped sender (or a broken peer): kept as a dead letter, taken
                        // (its sender lets go of it), and the receiver carries on.
                        Err(e) => {
                            if let Some(out) = out {
                                self.send(out);
                            }
                            self.route.wake();
                            let error =
                                header.err().map_or_else(|| e.to_string(), |h| h.to_string());
                            self.dead_letter(from, error, msg.slice(at..));
                            // Not delivered again: handles decoded before the error tell.
                            gates.open();
                            if let Some(token) = token {
                                self.settle(token, false);
                            }
                            continue;
                        }
                    }
                }
            };
            self.route.counters.received();
            if let Some(out) = out {
                self.send(out);
            }
            self.route.wake();
            return Ok((value, token, gates, received));
        }
    }
}

#[cfg(test)]
mod tests;
