//! A receiver's books ([`Grants`]): what it holds and what credit it has out, per sending node,
//! and what a change to them asks to send ([`Outgoing`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::ids::NodeId;

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

    /// Messages held (buffered, or delivered and not acknowledged) plus credit out: what the
    /// capacity bounds.
    #[cfg(test)]
    pub(crate) fn committed(&self) -> u32 {
        self.held.saturating_add(self.out_total)
    }

    /// Credit out to every node together.
    #[cfg(test)]
    pub(crate) fn out_total(&self) -> u32 {
        self.out_total
    }

    /// Credit granted to node `node` and not yet used.
    #[cfg(test)]
    pub(crate) fn out_to(&self, node: NodeId) -> u32 {
        self.out.get(&node).copied().unwrap_or(0)
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

    /// Node `from` wants credit. A node that has credit out already asked before a grant reached
    /// it (the two crossed): that grant answers it, and it asks again once it has used it. (Kept
    /// waiting, it would never be asked to give back the credit it holds, however long it sits
    /// unused: seed 788 of the credit simulation.)
    pub(crate) fn want(&mut self, from: NodeId) {
        if self.out.get(&from).is_some_and(|n| *n > 0) {
            return;
        }
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
