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

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::ids::{EndpointId, NodeId};
use crate::sync::lock;

/// This node's credit with one remote receiver.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// Granted and not yet used.
    credit: AtomicU32,
    /// A [`Frame::Want`](crate::link::wire::Frame::Want) was sent and no grant has come since.
    asked: AtomicBool,
    /// The receiver is gone: nothing more goes to it.
    released: AtomicBool,
}

impl Window {
    /// Take one unit of credit for a message, if there is one.
    pub(crate) fn try_acquire(&self) -> bool {
        !self.released.load(Ordering::Acquire)
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
    }

    /// The receiver asks for unused credit back: all of it, returned.
    pub(crate) fn reclaim(&self) -> u32 {
        self.asked.store(false, Ordering::Release);
        self.credit.swap(0, Ordering::AcqRel)
    }

    /// Whether to ask the receiver for credit now: none left, and not asked already.
    pub(crate) fn should_ask(&self) -> bool {
        !self.released.load(Ordering::Acquire)
            && self.credit.load(Ordering::Acquire) == 0
            && !self.asked.swap(true, Ordering::AcqRel)
    }

    /// The receiver is gone. True the first time.
    pub(crate) fn release(&self) -> bool {
        self.credit.store(0, Ordering::Release);
        !self.released.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
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
        Credits { inner: Mutex::new(Inner { windows: HashMap::new(), early: HashMap::new() }) }
    }
}

#[derive(Debug)]
struct Inner<R> {
    windows: HashMap<EndpointId, Credit<R>>,
    /// Credit granted before this node made the window (a receiver offers credit when it sees
    /// this node's sender registered, which can be before the sender's router exists here), and
    /// the node that granted it.
    early: HashMap<EndpointId, (NodeId, u32)>,
}

impl<R> Credits<R> {
    /// The window towards receiver `id` of `route`'s channel, made on first use (with any credit
    /// granted before).
    pub(crate) fn window(&self, id: EndpointId, node: NodeId, route: &Arc<R>) -> Arc<Window> {
        let mut inner = lock(&self.inner);
        let early = inner.early.remove(&id);
        let window =
            inner.windows.entry(id).or_insert_with(|| (Arc::default(), route.clone(), node));
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
        if let Some((window, route, node)) = inner.windows.get(&id) {
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
    /// them is settled), and any credit they granted early.
    pub(crate) fn settle(&self, gone: impl Iterator<Item = EndpointId>) {
        let mut inner = lock(&self.inner);
        for id in gone {
            if inner.windows.get(&id).is_some_and(|(w, _, _)| w.is_released()) {
                inner.windows.remove(&id);
            }
            inner.early.remove(&id);
        }
    }

    /// Forget the window towards receiver `id` (released, and gone from the registry).
    pub(crate) fn remove(&self, id: EndpointId) {
        lock(&self.inner).windows.remove(&id);
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
    pub(crate) fn give_up_all(&self) -> Vec<(EndpointId, NodeId, u32)> {
        let inner = lock(&self.inner);
        inner
            .windows
            .iter()
            .map(|(id, (window, _, node))| (*id, *node, window.reclaim()))
            .filter(|(_, _, n)| *n > 0)
            .collect()
    }

    /// Windows and early grants held (for tests that check that churn leaves nothing behind).
    pub(crate) fn entries(&self) -> usize {
        let inner = lock(&self.inner);
        inner.windows.len() + inner.early.len()
    }

    /// How many grants are kept for receivers this node has no window for.
    #[cfg(test)]
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
    /// Not this node's to keep (no room for another early grant): to give back.
    Returned(u32),
    /// From a node that does not hold the receiver: dropped.
    Refused,
}

/// What a change to a receiver's books asks to send: per node, messages taken and credit
/// granted; and the nodes to ask for unused credit back.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    pub(crate) credit: Vec<(NodeId, u32, u32)>,
    pub(crate) reclaim: Vec<NodeId>,
    /// A node waits for this credit (it asked, or it is a whole batch): send it now rather than
    /// with the next frame.
    pub(crate) urgent: bool,
}

impl Outgoing {
    pub(crate) fn is_empty(&self) -> bool {
        self.credit.is_empty() && self.reclaim.is_empty()
    }

    fn add(&mut self, node: NodeId, taken: u32, grant: u32) {
        match self.credit.iter_mut().find(|(n, _, _)| *n == node) {
            Some((_, t, g)) => {
                *t += taken;
                *g += grant;
            }
            None => self.credit.push((node, taken, grant)),
        }
    }
}

/// Nodes that left with credit out a receiver keeps taking messages from (on that credit).
const MAX_LEFT: usize = 64;

/// A receiver's books: what it holds and what credit it has out, per sending node.
#[derive(Debug)]
pub(crate) struct Grants {
    capacity: u32,
    /// Freed room is granted once this much is free (or the buffer has run dry): half the
    /// capacity (a quarter carried about 20% less on a 1-to-1 stream: twice the credit frames).
    batch: u32,
    /// Messages in the buffer, and delivered but not yet acknowledged.
    held: u32,
    /// Credit granted and not yet used, per node; a node stays listed (with 0) once granted
    /// anything: the nodes that may have sent something.
    out: BTreeMap<NodeId, u32>,
    out_total: u32,
    /// Nodes that asked for credit, in the order they asked.
    wanting: VecDeque<NodeId>,
    /// Nodes asked to give unused credit back, not yet answered.
    reclaiming: BTreeSet<NodeId>,
    /// A sender on this node found no room while credit was out elsewhere.
    local_wants: bool,
    /// Messages taken per node, not yet told.
    taken: Vec<(NodeId, u32)>,
    /// Nodes that wanted credit before this node knew they have a sender of the channel: they
    /// are offered some once it does (they do not ask twice).
    deferred: BTreeSet<NodeId>,
    /// Nodes that left the cluster with credit out, and how much (what they may have sent
    /// before they left: taken in, and no more), the latest [`MAX_LEFT`] of them; an entry goes
    /// once its credit is used. A node that left is no longer in `out`: nothing is granted or
    /// told to it again.
    left: VecDeque<(NodeId, u32)>,
}

impl Grants {
    pub(crate) fn new(capacity: u32) -> Self {
        let capacity = capacity.max(1);
        Grants {
            capacity,
            batch: (capacity / 2).max(1),
            held: 0,
            out: BTreeMap::new(),
            out_total: 0,
            wanting: VecDeque::new(),
            reclaiming: BTreeSet::new(),
            local_wants: false,
            taken: Vec::new(),
            deferred: BTreeSet::new(),
            left: VecDeque::new(),
        }
    }

    /// Entries kept per sending node (for tests that check that churn leaves nothing behind).
    pub(crate) fn entries(&self) -> usize {
        self.out.len()
            + self.left.len()
            + self.wanting.len()
            + self.deferred.len()
            + self.reclaiming.len()
            + self.taken.len()
    }

    /// How many taken messages are worth a frame of their own.
    pub(crate) fn batch(&self) -> u32 {
        self.batch
    }

    fn free(&self) -> u32 {
        self.capacity.saturating_sub(self.held.saturating_add(self.out_total))
    }

    /// A sender on this node wants to hand over a message: true (and counted) if there is room.
    pub(crate) fn local(&mut self) -> bool {
        if self.free() > 0 {
            self.held += 1;
            self.local_wants = false;
            return true;
        }
        if self.out_total > 0 {
            self.local_wants = true;
        }
        false
    }

    /// A message from node `from` arrived on its credit. False if it had none: a peer that
    /// sends beyond its credit breaks the protocol, and the message is not taken in (its sending
    /// node keeps it until told it was taken, which it never is).
    pub(crate) fn arrived(&mut self, from: NodeId) -> bool {
        match self.out.get_mut(&from) {
            Some(n) if *n > 0 => {
                *n -= 1;
                self.out_total -= 1;
            }
            // Sent before the node left, on credit it had then (voided since): taken, it is
            // owed. No more than that credit.
            _ => match self.left.iter().position(|(node, _)| *node == from) {
                Some(i) => {
                    self.left[i].1 -= 1;
                    if self.left[i].1 == 0 {
                        self.left.remove(i);
                    }
                }
                None => return false,
            },
        }
        self.held = self.held.saturating_add(1);
        true
    }

    /// The application took (or acknowledged) `n` messages of `from` (`None`: of this node).
    pub(crate) fn taken(&mut self, from: Option<NodeId>, n: u32) {
        self.held = self.held.saturating_sub(n);
        if let Some(from) = from.filter(|f| self.out.contains_key(f)) {
            match self.taken.iter_mut().find(|(node, _)| *node == from) {
                Some((_, t)) => *t += n,
                None => self.taken.push((from, n)),
            }
        }
    }

    /// Node `from` wants credit.
    pub(crate) fn want(&mut self, from: NodeId) {
        if !self.wanting.contains(&from) {
            self.wanting.push_back(from);
        }
    }

    /// Node `from` wanted credit before its sender was known here: kept for [`Grants::undefer`].
    pub(crate) fn defer(&mut self, from: NodeId) {
        self.deferred.insert(from);
    }

    /// Whether node `from` wanted credit before its sender was known (forgotten as it is told).
    pub(crate) fn undefer(&mut self, from: NodeId) -> bool {
        self.deferred.remove(&from)
    }

    /// Node `from` gave `n` unused credits back.
    pub(crate) fn returned(&mut self, from: NodeId, n: u32) {
        self.reclaiming.remove(&from);
        if let Some(out) = self.out.get_mut(&from) {
            let n = n.min(*out);
            *out -= n;
            self.out_total -= n;
        }
    }

    /// Node `node` left the cluster: its credit is void, and nothing is owed to it.
    pub(crate) fn forget(&mut self, node: NodeId) {
        let n = self.out.remove(&node).unwrap_or(0);
        self.out_total -= n;
        if n > 0 {
            if self.left.len() == MAX_LEFT {
                self.left.pop_front();
            }
            self.left.push_back((node, n));
        }
        self.wanting.retain(|n| *n != node);
        self.deferred.remove(&node);
        self.reclaiming.remove(&node);
        self.taken.retain(|(n, _)| *n != node);
    }

    /// Every node that may have sent something (for [`Frame::Released`](crate::link::wire::Frame::Released)).
    pub(crate) fn known(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.out.keys().copied()
    }

    /// Everything taken, to tell now (the receiver is going away).
    pub(crate) fn flush_taken(&mut self) -> Outgoing {
        let mut out = Outgoing::default();
        for (node, n) in self.taken.drain(..) {
            out.add(node, n, 0);
        }
        out
    }

    /// Settle the books: grant free room to the nodes that want it (or, if none does, back to
    /// `last`, the node whose message was taken last), ask idle holders for their credit when
    /// someone wants and nothing is free, and tell what was taken. Room is granted in batches
    /// unless `idle` (nothing is buffered: the receiver is waiting).
    pub(crate) fn settle(&mut self, idle: bool, last: Option<NodeId>, urgent: bool) -> Outgoing {
        let mut out = Outgoing::default();
        let mut free = self.free();
        if free > 0 && (idle || free >= self.batch || !self.wanting.is_empty()) {
            if std::mem::take(&mut self.local_wants) {
                // Keep one for the sender on this node, woken to take it (if it finds none
                // again, it says so again).
                free -= 1;
            }
            while free > 0 {
                let Some(node) = self.wanting.pop_front() else { break };
                let share = (free / (self.wanting.len() as u32 + 1)).max(1);
                self.grant(node, share, &mut out);
                free -= share;
                out.urgent = true;
            }
            if let Some(node) = last.filter(|n| free > 0 && self.out.contains_key(n)) {
                out.urgent |= free >= self.batch;
                self.grant(node, free, &mut out);
                free = 0;
            }
        }
        // Someone still wants and nothing is free: ask the nodes holding credit they are not
        // asking for (idle, or just granted) to give back what they do not use.
        if free == 0 && (!self.wanting.is_empty() || self.local_wants) {
            for (node, n) in &self.out {
                if *n > 0 && !self.wanting.contains(node) && self.reclaiming.insert(*node) {
                    out.reclaim.push(*node);
                }
            }
        }
        let told = self.taken.iter().map(|(_, n)| *n).sum::<u32>();
        if urgent || told >= self.batch || !out.is_empty() || idle {
            for (node, n) in self.taken.drain(..) {
                out.add(node, n, 0);
            }
        }
        out
    }

    fn grant(&mut self, node: NodeId, n: u32, out: &mut Outgoing) {
        // Its want is answered, however the credit came.
        self.wanting.retain(|w| *w != node);
        *self.out.entry(node).or_default() += n;
        self.out_total += n;
        out.add(node, 0, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(out: &Outgoing, node: NodeId) -> u32 {
        out.credit.iter().filter(|(n, _, _)| *n == node).map(|(_, _, g)| *g).sum()
    }

    #[test]
    fn one_sending_node_gets_the_whole_window_and_keeps_it_while_it_streams() {
        let mut g = Grants::new(8);
        g.want(1);
        assert_eq!(granted(&g.settle(true, None, false), 1), 8);
        for _ in 0..8 {
            assert!(g.arrived(1));
        }
        assert!(!g.local(), "a sender on the receiver's node finds no room");
        g.taken(Some(1), 3);
        assert!(g.settle(false, Some(1), false).is_empty(), "less than a batch: not yet");
        g.taken(Some(1), 1);
        let out = g.settle(false, Some(1), false);
        assert_eq!(granted(&out, 1), 4, "freed room goes back to the node it came from");
        assert_eq!(out.credit, [(1, 4, 4)], "with what was taken");
    }

    #[test]
    fn credit_out_never_exceeds_the_capacity_and_moves_to_who_wants_it() {
        let mut g = Grants::new(4);
        g.want(1);
        g.settle(true, None, false);
        // Node 1 holds all 4, unused; node 2 wants some: node 1 is asked to give it back.
        g.want(2);
        let out = g.settle(true, None, false);
        assert_eq!(out.reclaim, [1]);
        assert!(g.settle(true, None, false).reclaim.is_empty(), "asked once");
        assert!(g.arrived(1));
        g.returned(1, 3);
        let out = g.settle(true, None, false);
        assert_eq!(granted(&out, 2), 3);
        assert_eq!(g.held + g.out_total, 4);
    }

    #[test]
    fn capacity_one_hands_over_one_at_a_time() {
        let mut g = Grants::new(1);
        g.want(1);
        assert_eq!(granted(&g.settle(true, None, false), 1), 1);
        assert!(g.arrived(1));
        assert_eq!(granted(&g.settle(false, None, false), 1), 0);
        g.taken(Some(1), 1);
        assert_eq!(g.settle(true, Some(1), false).credit, [(1, 1, 1)]);
    }

    #[test]
    fn a_local_sender_gets_credit_back_from_idle_holders() {
        let mut g = Grants::new(2);
        g.want(1);
        g.settle(true, None, false);
        assert!(!g.local());
        assert_eq!(g.settle(true, None, false).reclaim, [1]);
        g.returned(1, 2);
        let out = g.settle(true, None, false);
        assert!(out.credit.is_empty(), "nobody else wants: the room stays free");
        assert!(g.local());
    }

    #[test]
    fn a_node_that_left_is_owed_only_the_credit_it_had_out() {
        let mut g = Grants::new(8);
        g.want(7);
        let _ = g.settle(true, None, false);
        assert!(g.arrived(7));
        let out = *g.out.get(&7).expect("granted");
        g.forget(7);
        for _ in 0..out {
            assert!(g.arrived(7), "sent before it left, on its credit");
        }
        assert!(!g.arrived(7), "beyond its credit");
        assert!(!g.arrived(9), "a node never granted anything");
    }

    #[test]
    fn a_want_before_the_sender_is_known_is_answered_once_it_is() {
        let mut g = Grants::new(4);
        g.defer(3);
        assert!(g.settle(true, None, false).is_empty(), "nothing granted to an unknown sender");
        assert!(g.undefer(3), "offered once its sender is known");
        assert!(!g.undefer(3));
    }

    #[test]
    fn early_grants_wait_for_their_window_and_are_given_back_when_reclaimed_or_unkeepable() {
        let credits: Credits<()> = Credits::default();
        assert!(matches!(credits.grant(10, 2, 5), Granted::Kept));
        // A receiver this node has not seen registered yet: its grant stays.
        credits.retain_early(|_| false);
        assert_eq!(credits.early_count(), 1);
        assert!(matches!(credits.grant(10, 3, 1), Granted::Refused), "not the receiver's node");
        assert_eq!(credits.take_early(10, 3), 0);
        assert_eq!(credits.take_early(10, 2), 5, "reclaimed before the window was made");
        assert!(matches!(credits.grant(11, 2, 4), Granted::Kept));
        let window = credits.window(11, 2, &Arc::new(()));
        assert!(window.try_acquire(), "the early grant is in the window");
        for id in 0..MAX_EARLY_GRANTS as u64 {
            assert!(matches!(credits.grant(100 + id, 2, 1), Granted::Kept));
        }
        assert!(matches!(credits.grant(1, 2, 3), Granted::Returned(3)), "no room: given back");
        credits.retain_early(|id| id >= 100);
        assert_eq!(credits.early_count(), 0, "receivers that are gone");
    }
}
