//! The router: on each node, one per channel, it picks the receiver each message goes to.
//!
//! Targets are rebuilt from the local copy of the registry whenever it changes, so picking a
//! receiver never waits on Raft. A receiver on this node is fed in-process (the message is moved,
//! not encoded); a remote one is fed through its node's [`Outbox`](crate::link::outbox::Outbox), on the
//! credit its receiver granted this node (a [`Window`]); with none left, the router asks the
//! receiver for more ([`Frame::Want`]). Receivers take
//! turns (round-robin, skipping any without room); since each remote node usually has one receiver
//! of a channel, its turns still fill one data frame per batch. A sender that finds no room waits
//! on [`ChannelRoute::wait`], woken when a receiver frees room, an ack returns credit, or the
//! targets change.

mod copies;
mod departed;
mod discard;
#[cfg(test)]
pub(crate) mod held;
mod rare;
mod targets;
pub(crate) mod unnamed;
mod wants;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::channel::counters::Counters;
use crate::channel::credit::Window;
use crate::channel::inbox::{ErasedInbox, Inbox, Refused};
use crate::channel::oneshot;
use crate::channel::trace;
use crate::ids::EndpointId;
use crate::link::outbox::{Gate, PushError};
use crate::link::peer::{Peer, Peers};
use crate::link::wire::{self, Frame};
use crate::sync::lock;
use targets::Targets;

/// Where a node's round-robin starts: not at the same receiver on every node.
fn random_start() -> u32 {
    (crate::clock::random_u64() % 1024) as u32
}

/// Where a receiver of the channel is.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// On this node.
    Local(Arc<dyn ErasedInbox>),
    /// On another node.
    Remote { id: EndpointId, peer: Arc<Peer>, window: Arc<Window> },
}

impl Target {
    pub(crate) fn id(&self) -> EndpointId {
        match self {
            Target::Local(inbox) => inbox.id(),
            Target::Remote { id, .. } => *id,
        }
    }
}

/// What one attempt to place a message did.
#[derive(Debug)]
pub(crate) enum Attempt<T> {
    Sent,
    Full(T),
    NoReceivers(T),
    Closed(T),
}

/// One channel's routing state on this node.
///
/// (An unnamed channel has one, one per request maybe: what only some routers use is in `rare`,
/// made when first needed, and counts that stay small are 32 bits.)
#[derive(Debug)]
pub(crate) struct ChannelRoute {
    /// The channel's name, or the unnamed channel's owner and receiver (see [`unnamed::Name`]).
    name: unnamed::Name,
    /// Of an unnamed channel's router on a node that does not own it: the senders using it
    /// (counted under the switchboard's table lock; the last one gone gives its credit back).
    pub(crate) users: AtomicU32,
    /// Of an unnamed channel's router on a node that does not own it: this node's registry
    /// listed the owner as a member (once it does not, the owner has left).
    pub(crate) owner_listed: AtomicBool,
    /// Of an unnamed channel's router: which membership change let its owner in, as the owner
    /// saw it when it made the channel (0: not known). A registry that lists the owner as let
    /// in by a later change shows another incarnation of it, whose channels these are not.
    pub(crate) owner_admitted: std::sync::atomic::AtomicU64,
    targets: RwLock<Targets<Target>>,
    /// What this node counts of the channel's messages (see [`crate::channel::counters`]).
    pub(crate) counters: Arc<Counters>,
    /// What most routers never need, made when first needed (8 bytes here, not 200, in every
    /// router: one per unnamed channel).
    rare: once_cell::race::OnceBox<rare::Rare>,
    /// Set when the close is applied on this node; read under the outbox lock (see
    /// [`crate::link::outbox::Outbox::push_data`]).
    pub(crate) closed: AtomicBool,
    /// Set when this node starts leaving (`Node::shutdown`): its application's sends fail
    /// with `Closed` from then on, as after a close, while what it re-routes still goes (see
    /// [`ChannelRoute::refuse_sends`]).
    refusing: AtomicBool,
    /// What waiting senders wait on: made by the first one (a router whose senders never
    /// waited, most unnamed channels', keeps 8 bytes for it, not 32). Nobody waits on one not
    /// made yet, so a change then wakes nobody (see [`ChannelRoute::notify`]).
    changed: once_cell::race::OnceBox<Notify>,
    /// Everyone waiting for a change; wakers skip the notify when there are none.
    waiters: AtomicU32,
    /// Of those, the senders waiting for room (a send, a broadcast, a redelivery): what a
    /// receiver's reclaim and its node's own room wait for (see [`ChannelRoute::has_waiters`]).
    room_waiters: AtomicU32,
    /// Whether a receiver of the channel is on this node.
    local: AtomicBool,
    /// Where the next round-robin starts (wrapping).
    cursor: AtomicU32,
    /// Windows with a reclaim deferred until the waiting senders have tried (see
    /// [`Window::defer_reclaim`]): one load per attempt tells whether to look.
    deferred: AtomicU32,
    /// How this node lets go of a message of the channel it drops undelivered (see
    /// [`ChannelRoute::dropped_one`]); set by the first typed endpoint made here.
    discard: once_cell::race::OnceRef<'static, discard::Discard>,
}

/// Counts a waiting sender for as long as it lives.
#[derive(Debug)]
pub(crate) struct Waiting<'a> {
    route: &'a ChannelRoute,
    changed: &'a Notify,
    notified: Pin<Box<Notified<'a>>>,
    /// It waits for room (see [`ChannelRoute::wait_for_room`]).
    room: bool,
}

impl Waiting<'_> {
    /// Wait for the next change (room, credit, targets, close) after this `Waiting` was made.
    pub(crate) async fn changed(&mut self) {
        self.notified.as_mut().await;
        self.notified.set(self.changed.notified());
        self.notified.as_mut().enable();
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.route.waiters.fetch_sub(1, Ordering::SeqCst);
        // The last sender waiting for room gone: deferred reclaims are answered, and room a
        // receiver here kept for it goes to the nodes that want it.
        if self.room && self.route.room_waiters.fetch_sub(1, Ordering::SeqCst) == 1 {
            let targets = self.route.read();
            self.route.answer_deferred(&targets);
            for t in targets.iter() {
                if let Target::Local(inbox) = t {
                    inbox.no_local_waiter(false);
                }
            }
        }
    }
}

impl ChannelRoute {
    pub(crate) fn new(name: &str, counters: Arc<Counters>) -> Self {
        Self::with_name(unnamed::Name::Named(name.into()), counters)
    }

    fn with_name(name: unnamed::Name, counters: Arc<Counters>) -> Self {
        ChannelRoute {
            name,
            counters,
            users: AtomicU32::new(0),
            owner_listed: AtomicBool::new(false),
            owner_admitted: std::sync::atomic::AtomicU64::new(0),
            targets: RwLock::default(),
            rare: once_cell::race::OnceBox::new(),
            closed: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            local: AtomicBool::new(false),
            changed: once_cell::race::OnceBox::new(),
            waiters: AtomicU32::new(0),
            room_waiters: AtomicU32::new(0),
            // Each node starts its round-robin somewhere else, so that the first receiver
            // registered is not every node's first pick.
            cursor: AtomicU32::new(random_start()),
            deferred: AtomicU32::new(0),
            discard: once_cell::race::OnceRef::new(),
        }
    }

    /// Wake everyone waiting for a change (see [`ChannelRoute::wait`]), if anyone ever waited.
    /// (The change is made before, and the fence pairs with the waiter's: one of the two sees
    /// the other.)
    fn notify(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if let Some(changed) = self.changed.get() {
            changed.notify_waiters();
        }
    }

    /// Whether senders wait for room on this node.
    pub(crate) fn has_waiters(&self) -> bool {
        self.room_waiters.load(Ordering::SeqCst) > 0
    }

    /// A window's reclaim was deferred: the waiting senders are woken to try, and it is
    /// answered after.
    pub(crate) fn reclaim_deferred(&self) {
        self.deferred.fetch_add(1, Ordering::SeqCst);
        self.notify();
        // No sender waits any more (the last one stopped meanwhile): answered now.
        if !self.has_waiters() {
            self.answer_deferred(&self.read());
        }
    }

    /// Answer the deferred reclaims of `targets`' windows with the credit still unused.
    fn answer_deferred(&self, targets: &[Target]) {
        if self.deferred.load(Ordering::SeqCst) == 0 {
            return;
        }
        for t in targets {
            if let Target::Remote { id, peer, window } = t {
                if let Some(n) = window.take_deferred() {
                    self.deferred.fetch_sub(1, Ordering::SeqCst);
                    tracing::trace!(receiver = id, n, "deferred reclaim answered");
                    peer.outbox
                        .push_frame(wire::encode(&Frame::Return { to: *id, n, last: false }), true);
                }
            }
        }
    }

    /// Message `msg`, to redeliver, found every receiver of the closed channel ended: it is
    /// dropped (the caller warns), and the reply handles in it tell their askers (through
    /// `peers`, this node's links).
    pub(crate) fn dropped_one(&self, msg: &Bytes, peers: &std::sync::Weak<Peers>) {
        self.discard(msg, peers);
        #[cfg(test)]
        lock(&self.rare().dropped).push(msg.clone());
    }

    /// The messages to redeliver this node dropped since last asked (see
    /// [`ChannelRoute::dropped_one`]).
    #[cfg(test)]
    pub(crate) fn take_dropped(&self) -> Vec<Bytes> {
        self.rare.get().map(|r| std::mem::take(&mut *lock(&r.dropped))).unwrap_or_default()
    }

    #[inline]
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Targets<Target>> {
        crate::sync::read(&self.targets)
    }

    /// Replace the receivers (the registry changed) and wake every waiting sender.
    pub(crate) fn set_targets(&self, targets: Vec<Target>) {
        let local = targets.iter().any(|t| matches!(t, Target::Local(_)));
        let mut current = crate::sync::write(&self.targets);
        let old = std::mem::replace(&mut *current, Targets::from(targets));
        // Listed as departed before the new targets can be read (see `in_flight`). By a set of
        // ids: a channel with thousands of receivers is not compared pair by pair.
        let now: std::collections::HashSet<EndpointId> = current.iter().map(Target::id).collect();
        let mut gone = old.into_iter().filter(|t| {
            matches!(t, Target::Remote { .. }) && !now.contains(&t.id()) && Self::unsettled(t)
        });
        if let Some(first) = gone.next() {
            lock(&self.rare().departed).push(first);
        }
        if let Some(mut departed) = self.departed() {
            departed.extend(gone);
            departed.retain(Self::unsettled);
        }
        drop(current);
        self.local.store(local, Ordering::Relaxed);
        self.notify();
    }

    /// Mark the channel closed on this node and wake every waiting sender.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// Whether a receiver of the channel is on another node.
    pub(crate) fn has_remote(&self) -> bool {
        self.read()
            .iter()
            .any(|t| matches!(t, Target::Remote { window, .. } if !window.is_released()))
    }

    /// Whether a receiver of the channel is on this node (a send may be a hand-off in-process).
    #[inline]
    pub(crate) fn has_local(&self) -> bool {
        self.local.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// This node is leaving: its application's sends on this router fail with `Closed` from
    /// now on (waiting ones are woken to fail), and only what it re-routes still goes. A send
    /// that completed after the hand-over had flushed what this node had sent was lost with
    /// the node (the switchboard simulation's seed 5043, with impatient leaves).
    pub(crate) fn refuse_sends(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// Whether the application's sends fail: the channel is closed, or this node is leaving.
    #[inline]
    pub(crate) fn refuses_sends(&self) -> bool {
        self.is_closed() || self.refusing.load(Ordering::SeqCst)
    }

    /// A receiver freed room or credit came back: wake waiting senders, if any.
    #[inline]
    pub(crate) fn wake(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify();
        }
    }

    /// A unit of `window` taken for a message that did not go is given back, and the senders
    /// that wait are woken: one that found none while it was taken may use it now (its node
    /// asked the receiver for more, which counts that unit out and grants nothing until it is
    /// used: see `Grants::want`).
    pub(crate) fn undo(&self, window: &Window) {
        window.undo();
        self.wake();
    }

    /// `n` more messages to re-route.
    pub(crate) fn rerouting(&self, n: usize) {
        self.rare().rerouting.fetch_add(n, Ordering::SeqCst);
    }

    /// One re-routed message is out (or given up on). The last: the receivers on this node that
    /// wait only for that to end (the channel is closed) are woken.
    pub(crate) fn rerouted(&self) {
        if self.rare().rerouting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.wake_ending();
        }
        self.notify();
    }

    /// A receiver of this node waits to end until nothing is left to re-route: `waker` is woken
    /// then (at once, if nothing is). Kept here, not looked up among the targets: a receiver
    /// that the registry no longer lists (its node starts over, the channel closed meanwhile)
    /// ends too (the switchboard simulation's seed 907).
    pub(crate) fn wake_when_rerouted(&self, waker: &std::task::Waker) {
        let mut ending = lock(&self.rare().ending);
        if !ending.iter().any(|w| w.will_wake(waker)) {
            ending.push(waker.clone());
        }
        drop(ending);
        if !self.is_rerouting() {
            self.wake_ending();
        }
    }

    /// Whether messages of dropped receivers on this node are still to be re-routed.
    pub(crate) fn is_rerouting(&self) -> bool {
        self.rare.get().is_some_and(|r| r.rerouting.load(Ordering::SeqCst) > 0)
    }

    /// Wait until nothing is left to re-route on this node.
    pub(crate) async fn rerouting_done(&self) {
        self.rerouting_done_while(|| true).await;
    }

    /// Whether messages are re-routed and have somewhere to go: a receiver on another node.
    /// (With none, they wait for the channel's next receiver, promise 5.)
    pub(crate) fn is_rerouting_elsewhere(&self) -> bool {
        self.is_rerouting() && self.has_remote()
    }

    /// Wait until nothing is left to re-route on this node with a receiver elsewhere to go to.
    pub(crate) async fn rerouting_elsewhere_done(&self) {
        self.rerouting_done_while(|| self.has_remote()).await;
    }

    /// Wait until nothing is left to re-route, or `counts` says what is left does not count.
    async fn rerouting_done_while(&self, counts: impl Fn() -> bool) {
        let mut waiting = self.wait();
        while self.is_rerouting() && counts() {
            waiting.changed().await;
        }
    }

    /// Register as a waiting sender. Make it *before* the attempt that may fail, so that a change
    /// between the attempt and the wait is not missed.
    pub(crate) fn wait(&self) -> Waiting<'_> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let changed = self.changed.get_or_init(|| Box::new(Notify::new()));
        // (Made, before anything the waiter reads: a change made meanwhile either sees it made,
        // and notifies, or is seen by the waiter's next attempt; see `notify`.)
        std::sync::atomic::fence(Ordering::SeqCst);
        let mut notified = Box::pin(changed.notified());
        notified.as_mut().enable();
        Waiting { route: self, changed, notified, room: false }
    }

    /// As [`ChannelRoute::wait`], for a sender that waits for room to place a message.
    pub(crate) fn wait_for_room(&self) -> Waiting<'_> {
        self.room_waiters.fetch_add(1, Ordering::SeqCst);
        let mut waiting = self.wait();
        waiting.room = true;
        waiting
    }

    pub(crate) fn receiver_count(&self) -> usize {
        self.read().len()
    }

    /// The ids of the receivers right now.
    #[cfg(test)]
    pub(crate) fn target_ids(&self) -> Vec<EndpointId> {
        self.read().iter().map(Target::id).collect()
    }

    /// Place `msg` with one receiver that has room, without waiting.
    pub(crate) fn try_send<T: Serialize + DeserializeOwned + Send + 'static>(
        &self,
        msg: T,
    ) -> Attempt<T> {
        let attempt = self.place(msg);
        self.after_attempt();
        attempt
    }

    /// Reclaims deferred for the senders that wait are answered once one of them has tried.
    #[inline]
    fn after_attempt(&self) {
        if self.deferred.load(Ordering::Relaxed) > 0 {
            self.answer_deferred(&self.read());
        }
    }

    fn place<T: Serialize + DeserializeOwned + Send + 'static>(&self, mut msg: T) -> Attempt<T> {
        if self.refuses_sends() {
            return Attempt::Closed(msg);
        }
        let targets = self.read();
        let n = targets.len();
        if n == 0 {
            return Attempt::NoReceivers(msg);
        }
        // Round robin; with one receiver, no shared counter to bump per message.
        let mut at =
            if n == 1 { 0 } else { self.cursor.fetch_add(1, Ordering::Relaxed) as usize % n };
        // A remote receiver passed over for want of credit is asked for some, even when another
        // took the message: otherwise a node with room elsewhere (its own receiver) would never
        // ask, and that receiver would never get its turns from this node again.
        let mut passed_over = false;
        // A receiver here without room keeps its next unit for the senders of this node; one
        // that placed its message elsewhere lets that go (kept while any other sender waited,
        // for a broadcast say, the unit was lost to every node that wanted: the switchboard
        // simulation's seed 8212, with freezes).
        let mut full_here = false;
        // Its trace context, read once, if it goes to another node (see [`trace`]).
        let mut traceparent = trace::Lazy::default();
        let sent = |passed_over: bool, full_here: bool, bytes: usize| {
            self.counters.sent(bytes);
            if passed_over {
                Self::want(&targets, None);
            }
            if full_here {
                Self::placed_elsewhere(&targets);
            }
            Attempt::Sent
        };
        for _ in 0..n {
            let target = &targets[at];
            at = if at + 1 == n { 0 } else { at + 1 };
            match target {
                Target::Local(erased) => {
                    let Some(inbox) = erased.as_any().downcast_ref::<Inbox<T>>() else {
                        // A receiver of another type: one side is untyped (`Value`). It gets the
                        // message encoded, as if from another node.
                        // (Tentatively: refused, the message may go to a typed receiver here
                        // as a value, its reply handles in it.)
                        let bytes = match oneshot::tentative(|| rmp_serde::to_vec_named(&msg)) {
                            Ok(b) => Bytes::from(b),
                            Err(e) => {
                                tracing::error!(channel = %self.label(), error = %e, "message cannot be encoded");
                                return Attempt::Closed(msg);
                            }
                        };
                        match erased.try_push_encoded(bytes, false, false) {
                            Ok(()) => {
                                oneshot::encoded(&msg);
                                return sent(passed_over, full_here, 0);
                            }
                            Err(Refused::Closed(_)) => return Attempt::Closed(msg),
                            Err(Refused::Full(_)) => {
                                full_here = true;
                                continue;
                            }
                        }
                    };
                    match inbox.try_push(msg) {
                        Ok(()) => return sent(passed_over, full_here, 0),
                        Err(Refused::Closed(m)) => return Attempt::Closed(m),
                        Err(Refused::Full(m)) => {
                            msg = m;
                            full_here = true;
                        }
                    }
                }
                Target::Remote { id, peer, window } => {
                    if !window.try_acquire() {
                        passed_over = true;
                        continue;
                    }
                    let gate = Gate { closed: &self.closed, gone: Some(window.gone()) };
                    let pushed = match traceparent.get(self.label()) {
                        None => peer.outbox.push_data(*id, &msg, gate),
                        Some(tp) => peer.outbox.push_traced(*id, &msg, tp, gate),
                    };
                    match pushed {
                        Ok(bytes) => return sent(passed_over, full_here, bytes),
                        Err(PushError::Closed) => {
                            self.undo(window);
                            return Attempt::Closed(msg);
                        }
                        // Released meanwhile: another receiver takes it.
                        Err(PushError::Gone) => continue,
                        Err(e) => {
                            self.undo(window);
                            tracing::error!(channel = %self.label(), error = %e, "message refused");
                            // Encoded, then thrown away: its reply handles answer again.
                            oneshot::revive(&msg);
                            return Attempt::Closed(msg);
                        }
                    }
                }
            }
        }
        Self::want(&targets, None);
        Attempt::Full(msg)
    }
}
