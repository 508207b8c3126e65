//! Credit: how many messages may be on their way to a receiver, counted by the receiver over
//! every sending node together (promise 4 in the README).
//!
//! On the receiving node, [`Grants`] (one per inbox) keeps the books: messages held (in the
//! buffer, or delivered and not yet acknowledged) plus credit granted to sending nodes and not
//! yet used never exceed the capacity. Credit is granted on demand: a sending node that has
//! messages waiting and no credit says so ([`Frame::Want`](crate::link::wire::Frame::Want)); freed room
//! goes to the nodes that want it, otherwise back to the node whose message was taken (so a
//! single sending node keeps the whole window, and a stream needs no request per batch). When
//! nothing is free and a node (or a sender on the receiver's own node) wants credit, the nodes
//! that hold unused credit are asked to give it back ([`Frame::Reclaim`](crate::link::wire::Frame::Reclaim)).
//!
//! On the sending node, a [`Window`] per remote receiver holds the credit granted to this node;
//! the router takes one unit per message, and [`Credits`] finds the window an incoming grant is for.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::ids::{EndpointId, NodeId};
use crate::sync::{lock, HashMap};

mod grants;
mod left;
mod per_node;
mod untold;
#[cfg(test)]
pub(crate) use grants::Arrival;
pub(crate) use grants::{Grants, Outgoing};
pub(crate) use left::Departure;

/// This node's credit with one remote receiver.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// Granted and not yet used.
    credit: AtomicU32,
    /// A [`Frame::Want`](crate::link::wire::Frame::Want) was sent and no grant has come since.
    asked: AtomicBool,
    /// The receiver is gone: nothing more goes to it.
    released: AtomicBool,
    /// This node is starting over: nothing goes on this window's credit, and it asks for none
    /// (a new window replaces it), but the receiver is not gone (a broadcast waits for it).
    voided: AtomicBool,
    /// The receiver asked for its unused credit back while senders of this node waited for
    /// room: answered after their next attempt (see [`Window::defer_reclaim`]).
    reclaim_deferred: AtomicBool,
    /// Released or voided (both for good): nothing is taken or asked for on this window any
    /// more, nor queued on its credit, whatever took a unit of it before (see [`Window::gone`]).
    /// One flag, so that a send reads one atomic, not two, and the outbox's gate (a layer
    /// below, which knows no window) reads the same.
    refuses: AtomicBool,
    /// The receiver granted something: it counts this node among those it tells when it goes
    /// ([`Frame::Released`](crate::link::wire::Frame::Released)). A window never granted
    /// carried nothing, and is settled without that word (see [`Credits::settle`]).
    granted: AtomicBool,
}

impl Window {
    /// Take one unit of credit for a message, if there is one.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        !self.refuses.load(Ordering::Acquire)
            && self
                .credit
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
    }

    /// Give back a unit taken by [`Window::try_acquire`] for a message that did not go.
    pub(crate) fn undo(&self) {
        self.credit.fetch_add(1, Ordering::AcqRel);
    }

    /// The receiver granted `n` more.
    pub(crate) fn grant(&self, n: u32) {
        // Saturating: a grant is a peer's word, and must not wrap the count around.
        let _ = self
            .credit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| Some(c.saturating_add(n)));
        self.asked.store(false, Ordering::Release);
        self.granted.store(true, Ordering::Release);
    }

    /// The receiver asks for unused credit back: all of it, returned.
    pub(crate) fn reclaim(&self) -> u32 {
        self.asked.store(false, Ordering::Release);
        self.credit.swap(0, Ordering::AcqRel)
    }

    /// The receiver asks for unused credit back while senders here wait for room, woken by the
    /// grant that came just before (a receiver grants a node that wants, and reclaims at once if
    /// someone else wants too): answered once they have tried ([`Window::take_deferred`]).
    /// Answered at once, the credit went back before any waiting sender could use it, and the
    /// two nodes traded it back and forth for ever (the switchboard simulation's seed 10).
    pub(crate) fn defer_reclaim(&self) {
        self.reclaim_deferred.store(true, Ordering::Release);
    }

    /// A deferred reclaim, answered now: the credit left unused.
    pub(crate) fn take_deferred(&self) -> Option<u32> {
        self.reclaim_deferred.swap(false, Ordering::AcqRel).then(|| self.reclaim())
    }

    /// Whether to ask the receiver for credit now: none left, and not asked already.
    pub(crate) fn should_ask(&self) -> bool {
        // Loads first: the router asks after every message that passed a window over, and a
        // window already asked must not cost a read-modify-write per message.
        !self.refuses.load(Ordering::Acquire)
            && self.credit.load(Ordering::Acquire) == 0
            && !self.asked.load(Ordering::Acquire)
            && !self.asked.swap(true, Ordering::AcqRel)
    }

    /// The receiver is gone. True the first time.
    pub(crate) fn release(&self) -> bool {
        self.credit.store(0, Ordering::Release);
        self.refuses.store(true, Ordering::Release);
        !self.released.swap(true, Ordering::AcqRel)
    }

    /// This node starts over: the credit is void (see [`Window::voided`]).
    fn void(&self) {
        self.voided.store(true, Ordering::Release);
        self.refuses.store(true, Ordering::Release);
        self.credit.store(0, Ordering::Release);
    }

    /// Whether this node voided it as it started over.
    pub(crate) fn is_voided(&self) -> bool {
        self.voided.load(Ordering::Acquire)
    }

    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    /// Set once the receiver is gone, or this node starts over: the outbox checks it under its
    /// lock (see [`crate::link::outbox::Gate`]), so that nothing is queued for the receiver
    /// after what was kept for it was taken back. (A send that took a unit just before the
    /// window was voided, and pushed after the start-over had taken back what it would deliver
    /// again, went out on void credit and was lost while its node counted it in flight: the
    /// switchboard simulation's seed 228061, a send held across a start-over. Refused, it goes
    /// to another receiver, or waits for the new window.)
    pub(crate) fn gone(&self) -> &AtomicBool {
        &self.refuses
    }

    /// Credit granted and not yet used.
    #[cfg(test)]
    pub(crate) fn credit(&self) -> u32 {
        self.credit.load(Ordering::Acquire)
    }
}

/// Credit said to come from node `from` for receiver `id`, which another node holds.
fn not_the_receivers(from: NodeId, id: EndpointId) {
    tracing::warn!(
        node = from,
        receiver = id,
        "credit from a node that does not hold the receiver dropped"
    );
}

/// The window towards one remote receiver, the route `R` whose senders wait for its credit (the
/// channel's router), and the receiver's node.
type Credit<R> = (Arc<Window>, Arc<R>, NodeId);

/// Grants kept for receivers this node has no window for yet, at most this many.
const MAX_EARLY_GRANTS: usize = 4096;

/// This node's windows towards every remote receiver, each with the route `R` that waits on it
/// (the channel's router: the table only holds it, to hand back with the window).
#[derive(Debug)]
pub(crate) struct Credits<R> {
    inner: Mutex<Inner<R>>,
}

impl<R> Default for Credits<R> {
    fn default() -> Self {
        Credits {
            inner: Mutex::new(Inner {
                windows: HashMap::default(),
                early: HashMap::default(),
                void: false,
                unanswered: BTreeSet::new(),
                handed_over: false,
                stopped: false,
            }),
        }
    }
}

#[derive(Debug)]
struct Inner<R> {
    windows: HashMap<EndpointId, Credit<R>>,
    /// Credit granted before this node made the window (a receiver offers credit when it sees
    /// this node's sender registered, which can be before the sender's router exists here), and
    /// the node that granted it.
    early: HashMap<EndpointId, (NodeId, u32)>,
    /// This node is starting over: every window is void, a window made meanwhile too, until
    /// [`Credits::clear`]. A grant from a node in `unanswered` (the old incarnation's, or one it
    /// forgets as it answers) is dropped; one from any other node is the new incarnation's, and
    /// kept for the window made after.
    void: bool,
    /// While starting over, the nodes asked what they took in that have not answered yet, and
    /// are still asked ([`Credits::answered`]).
    unanswered: BTreeSet<NodeId>,
    /// This node has handed over what it held (it is leaving): every grant goes back at once
    /// ([`Credits::handed_over`]).
    handed_over: bool,
    /// This node sends nothing more, on any credit ([`Credits::stop`]).
    stopped: bool,
}

impl<R> Credits<R> {
    /// The window towards receiver `id` of `route`'s channel, made on first use (with any credit
    /// granted before).
    pub(crate) fn window(&self, id: EndpointId, node: NodeId, route: &Arc<R>) -> Arc<Window> {
        let mut inner = lock(&self.inner);
        let (void, stopped) = (inner.void, inner.stopped);
        // Starting over, early grants wait for the window made after (this one is void).
        let early = if void || stopped { None } else { inner.early.remove(&id) };
        let window = inner.windows.entry(id).or_insert_with(|| {
            let window = Arc::new(Window::default());
            if void {
                window.void();
            }
            if stopped {
                // (Asks for nothing: see `Credits::stop`.)
                window.asked.store(true, Ordering::Release);
            }
            (window, route.clone(), node)
        });
        match early {
            // Granted by the node the registry says holds the receiver: kept.
            Some((from, n)) if from == window.2 => window.0.grant(n),
            Some((from, _)) => {
                not_the_receivers(from, id);
            }
            None => {}
        }
        window.0.clone()
    }

    /// Receiver `id` on node `from` granted `n`: added to its window, or kept until the window
    /// is made. Credit from a node other than the receiver's is refused.
    pub(crate) fn grant(&self, id: EndpointId, from: NodeId, n: u32) -> Granted<R> {
        let mut inner = lock(&self.inner);
        if inner.stopped {
            // Unused: given back (a grant the receiver made after this node's last word, which
            // it counts; one made before, it no longer counts, and a return takes nothing off
            // what is not counted).
            return if n > 0 { Granted::Returned(n) } else { Granted::Void };
        }
        if inner.handed_over && n > 0 {
            // (Asked again if a release starts more re-routing: `Credits::reopen`.)
            if let Some((window, _, _)) = inner.windows.get(&id) {
                window.asked.store(false, Ordering::Release);
            }
            return Granted::Returned(n);
        }
        // Not even to a (void) window: a reclaim would hand it back to a receiver that counts
        // it no more, or, once it has granted the new incarnation, counts that instead.
        if inner.void && inner.unanswered.contains(&from) {
            return Granted::Void;
        }
        // Starting over, and the node has answered: it granted the new incarnation (dropped,
        // the node counted it out for ever: the switchboard simulation's seed 6058). Kept for
        // the window made once every answer is in; the void one keeps nothing.
        let window = inner.windows.get(&id).filter(|_| !inner.void);
        if let Some((window, route, node)) = window {
            if *node != from {
                not_the_receivers(from, id);
                return Granted::Refused;
            }
            window.grant(n);
            return Granted::Window(route.clone());
        }
        let known = inner.early.get(&id).map(|(node, _)| *node);
        match known {
            Some(node) if node != from => {
                not_the_receivers(from, id);
                Granted::Refused
            }
            Some(_) => {
                if let Some((_, early)) = inner.early.get_mut(&id) {
                    *early = early.saturating_add(n);
                }
                Granted::Kept
            }
            None if n == 0 => Granted::Kept,
            None if inner.early.len() < MAX_EARLY_GRANTS => {
                inner.early.insert(id, (from, n));
                Granted::Kept
            }
            // No room to keep it: given back, so that the receiver does not count it as out.
            None => Granted::Returned(n),
        }
    }

    /// The window towards receiver `id` and its route, if this node has one and the receiver is
    /// on node `node`.
    pub(crate) fn get_from(&self, id: EndpointId, node: NodeId) -> Option<Credit<R>> {
        lock(&self.inner).windows.get(&id).filter(|(_, _, n)| *n == node).cloned()
    }

    /// The receivers on node `node` this node has windows towards.
    pub(crate) fn on_node(&self, node: NodeId) -> Vec<EndpointId> {
        let inner = lock(&self.inner);
        inner.windows.iter().filter(|(_, (_, _, n))| *n == node).map(|(id, _)| *id).collect()
    }

    /// Receivers `gone` left the registry: their windows go once released (what was sent to
    /// them is settled), and any credit they granted early. A window the receiver never granted
    /// anything carried nothing, and no release will come for it (the receiver tells only the
    /// nodes it granted): released here, and gone. (Kept, every receiver that came and went
    /// left its window, and its router's departed target, on every node with a router of the
    /// channel and no sender: the switchboard simulation's seed 2, once it bounded the tables.)
    /// A grant on its way meanwhile is kept as early until the receiver's release comes after
    /// it (see [`Credits::take_early`]), or the next refresh.
    pub(crate) fn settle(&self, gone: impl Iterator<Item = EndpointId>) {
        let mut inner = lock(&self.inner);
        for id in gone {
            let settled = inner.windows.get(&id).is_some_and(|(w, _, _)| {
                w.is_released() || (!w.granted.load(Ordering::Acquire) && w.release())
            });
            if settled {
                inner.windows.remove(&id);
            }
            inner.early.remove(&id);
        }
    }

    /// Void every window: nothing more goes on its credit, nor on a window made until
    /// [`Credits::clear`] (this node starts over: see [`crate::rpc::Request::Rejoined`]); grants
    /// from the nodes `asking` (those asked what they took in) are dropped until each answers.
    /// Every receiver it had a window towards, with its node and route.
    pub(crate) fn release_all(
        &self,
        asking: impl IntoIterator<Item = NodeId>,
    ) -> Vec<(EndpointId, NodeId, Arc<R>)> {
        let mut inner = lock(&self.inner);
        inner.void = true;
        inner.unanswered = asking.into_iter().collect();
        inner.early.clear();
        inner
            .windows
            .iter()
            .map(|(id, (window, route, node))| {
                window.void();
                (*id, *node, route.clone())
            })
            .collect()
    }

    /// Forget every window (this node starts over: after [`Credits::release_all`], every window
    /// is void; one still held by a router stays so until the router's targets are rebuilt).
    /// Grants kept meanwhile, the new incarnation's, go to the windows made next.
    pub(crate) fn clear(&self) {
        let mut inner = lock(&self.inner);
        inner.windows.clear();
        inner.void = false;
        inner.unanswered.clear();
    }

    /// Node `from` answered what it took in (this node starts over): it has forgotten the old
    /// incarnation, and what it grants from now on is the new one's. Called as the answer is
    /// read, before anything the node sent after it; or once this node no longer asks it (it
    /// is no longer a member: see `Switchboard::ask_rejoined`).
    pub(crate) fn answered(&self, from: NodeId) {
        lock(&self.inner).unanswered.remove(&from);
    }

    /// Forget the window towards receiver `id` (released, and gone from the registry).
    pub(crate) fn remove(&self, id: EndpointId) {
        lock(&self.inner).windows.remove(&id);
    }

    /// Receiver `id` on node `from` reclaims its credit while this node starts over (its
    /// window is void): `None` if the node has not answered what it took in yet (its credit is
    /// the old incarnation's, which it forgets as it answers, its reclaim with it: answered
    /// with nothing, it reclaimed again at once, a round trip after round trip until then);
    /// otherwise what it granted the new incarnation since, kept for the window made next.
    /// Under one lock: the window made meanwhile takes that credit or the answer does, not
    /// both, nor neither.
    pub(crate) fn reclaim_void(&self, id: EndpointId, from: NodeId) -> Option<u32> {
        let mut inner = lock(&self.inner);
        if !inner.void {
            // (The start-over ended meanwhile: the window made since answers.)
            return inner
                .windows
                .get(&id)
                .filter(|(_, _, n)| *n == from)
                .map(|(w, _, _)| w.reclaim());
        }
        if inner.unanswered.contains(&from) {
            return None;
        }
        Some(match inner.early.get(&id) {
            Some((node, n)) if *node == from => {
                let n = *n;
                inner.early.remove(&id);
                n
            }
            _ => 0,
        })
    }

    /// Take back the credit receiver `id` on node `from` granted this node before its window was
    /// made (the receiver reclaims it).
    pub(crate) fn take_early(&self, id: EndpointId, from: NodeId) -> u32 {
        let mut inner = lock(&self.inner);
        match inner.early.get(&id) {
            Some((node, n)) if *node == from => {
                let n = *n;
                inner.early.remove(&id);
                n
            }
            _ => 0,
        }
    }

    /// Drop early grants for receivers that are gone (`gone`: issued by the registry and no
    /// longer registered). A receiver the registry has not issued yet is a registration this
    /// node has not applied: its grant stays, for the window its router will make.
    pub(crate) fn retain_early(&self, gone: impl Fn(EndpointId) -> bool) {
        let mut inner = lock(&self.inner);
        if !inner.early.is_empty() {
            inner.early.retain(|id, _| !gone(*id));
        }
    }

    /// This node is leaving: every window gives up its unused credit, returned to its receiver
    /// (which then keeps nothing for this node once it has left). Per receiver: its node and the
    /// credit to return.
    pub(crate) fn give_up_all(&self, zero: bool) -> Vec<(EndpointId, NodeId, u32)> {
        self.give_up(zero, false)
    }

    /// This node has handed over what it held (it leaves): [`Credits::give_up_all`], and every
    /// grant that comes from now on goes back at once ([`Granted::Returned`]). Kept, a grant
    /// that crossed the node's last return (a receiver answering a want from before the leave)
    /// stayed counted out at the receiver until the node's departure timer ran out, 10 s, and
    /// another leaving node's hand-over found no room there (the switchboard simulation's seed
    /// 256364, with impatient leaves).
    pub(crate) fn handed_over(&self) -> Vec<(EndpointId, NodeId, u32)> {
        self.give_up(true, true)
    }

    /// Messages are re-routed after [`Credits::handed_over`] (a release came): on credit
    /// granted from now on, until the next [`Credits::handed_over`]. Not once stopped.
    pub(crate) fn reopen(&self) {
        let mut inner = lock(&self.inner);
        inner.handed_over = inner.stopped;
    }

    /// This node has handed over for the last time and says so (`Frame::Bye`): it sends
    /// nothing more, and its receivers void what they granted it, grants still on their way
    /// included (a receiver kept those counted until the node's departure was 10 s old: the
    /// switchboard simulation's seed 79912). Grants read from now on are void here too.
    /// Every window is emptied and asks for nothing more, and early grants go: what the node
    /// still re-routes after this (a release read late) is not sent, as the node stops.
    pub(crate) fn stop(&self) {
        let mut inner = lock(&self.inner);
        inner.handed_over = true;
        inner.stopped = true;
        for (window, _, _) in inner.windows.values() {
            let _ = window.reclaim();
            window.asked.store(true, Ordering::Release);
        }
        inner.early.clear();
    }

    /// Whether [`Credits::stop`] was called.
    pub(crate) fn is_stopped(&self) -> bool {
        lock(&self.inner).stopped
    }

    fn give_up(&self, zero: bool, for_good: bool) -> Vec<(EndpointId, NodeId, u32)> {
        let mut inner = lock(&self.inner);
        inner.handed_over |= for_good;
        inner
            .windows
            .iter()
            .map(|(id, (window, _, node))| (*id, *node, window.reclaim()))
            .filter(|(_, _, n)| zero || *n > 0)
            .collect()
    }

    /// Windows and early grants held (for tests that check that churn leaves nothing behind).
    pub(crate) fn entries(&self) -> usize {
        let inner = lock(&self.inner);
        inner.windows.len() + inner.early.len()
    }

    /// The credit receiver `id` granted before this node made its window.
    #[cfg(test)]
    pub(crate) fn early_of(&self, id: EndpointId) -> u32 {
        lock(&self.inner).early.get(&id).map_or(0, |(_, n)| *n)
    }

    /// How many grants are kept for receivers this node has no window for.
    pub(crate) fn early_count(&self) -> usize {
        lock(&self.inner).early.len()
    }
}

/// What became of a grant.
#[derive(Debug)]
pub(crate) enum Granted<R> {
    /// Added to a window: the route to wake.
    Window(Arc<R>),
    /// Kept until this node makes the window.
    Kept,
    /// Not this node's to keep (no room for another early grant, or this node has handed
    /// over: [`Credits::handed_over`]): to give back.
    Returned(u32),
    /// The old incarnation's, come while this node starts over, or nothing granted to a node
    /// that has stopped sending (see [`Credits::stop`]): dropped.
    Void,
    /// From a node that does not hold the receiver: dropped.
    Refused,
}

#[cfg(test)]
pub(crate) mod sim;
#[cfg(test)]
mod tests;
