//! A receiver's books ([`Grants`]): what it holds and what credit it has out, per sending node,
//! and what a change to them asks to send ([`Outgoing`]).

use std::collections::{BTreeSet, VecDeque};

mod departed;

use super::left::Left;
use super::per_node::PerNode;
use super::untold::Untold;
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
    /// The receiver's [`Grants::batch`]: credit and taken messages worth a frame of their own
    /// (carried here, not kept in every inbox; 0 in one with nothing to send).
    pub(crate) batch: u32,
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

/// How a message from another node was taken in ([`Grants::arrived`]).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// On the credit the node holds: its sending node is told when it is taken.
    Credit,
    /// On credit the node had when it left the cluster: held, and told to nobody (the node,
    /// if it comes back, is another incarnation that delivers again what it was not told).
    Left,
    /// Without credit: not taken in.
    Refused,
}

/// A receiver's books: what it holds and what credit it has out, per sending node.
#[derive(Debug)]
pub(crate) struct Grants {
    capacity: u32,
    /// Messages in the buffer, and delivered but not yet acknowledged.
    held: u32,
    /// Credit out: to members (`out`), and what nodes that left gracefully had (see [`Left`]).
    out_total: u32,
    /// Credit granted and not yet used, per node; a node stays listed (with 0) once granted
    /// anything: the nodes that may have sent something.
    out: PerNode,
    /// A sender on this node found no room while credit was out elsewhere (and still waits:
    /// see [`Grants::local_waiting`]).
    local_wants: bool,
    /// The books of other nodes' wants and takes: made when first written.
    remote: Remote,
}

/// What a receiver's books keep of other nodes beyond their credit ([`Grants::remote`]).
#[derive(Debug, Default)]
struct RemoteBooks {
    /// Nodes that asked for credit, in the order they asked.
    wanting: VecDeque<NodeId>,
    /// Nodes that asked while credit was out to them (see [`Grants::want`]): wanting once that
    /// credit is used or given back, unless a grant answers them first.
    deferred: Vec<NodeId>,
    /// A deferred want stands since the books were last settled (see [`Grants::wants_settling`]).
    revived: bool,
    /// Nodes asked to give unused credit back, not yet answered.
    reclaiming: BTreeSet<NodeId>,
    /// Messages taken per node, not yet told.
    taken: Untold,
    /// Nodes that left the cluster with credit out or messages taken in and not told, the
    /// latest [`MAX_LEFT`](super::left::MAX_LEFT) of them (see [`Left`]). A node that left is no longer in `out`:
    /// nothing is granted or told to it again.
    left: VecDeque<Left>,
    /// Members that have handed over (their last return) or stopped sending (their last word):
    /// offered nothing and given no freed room until they want again or are forgotten (see
    /// [`Grants::handed_over`], [`Grants::sends_no_more`]).
    done: Vec<NodeId>,
}

/// The empty books every receiver reads until another node wants or sends.
static NO_REMOTE: RemoteBooks = RemoteBooks {
    wanting: VecDeque::new(),
    deferred: Vec::new(),
    revived: false,
    reclaiming: BTreeSet::new(),
    taken: Untold::new(),
    left: VecDeque::new(),
    done: Vec::new(),
};

/// [`RemoteBooks`], boxed when first written: a receiver only this node sends to (most
/// unnamed channels) keeps one pointer, not 112 bytes of empty lists (issue 19: 100,000
/// unnamed channels alive). Read, an empty one is [`NO_REMOTE`]; written (`DerefMut`), it is
/// made. Writes that would change nothing are guarded by a read first.
#[derive(Debug, Default)]
struct Remote(Option<Box<RemoteBooks>>);

impl std::ops::Deref for Remote {
    type Target = RemoteBooks;
    #[inline]
    fn deref(&self) -> &RemoteBooks {
        self.0.as_deref().unwrap_or(&NO_REMOTE)
    }
}

impl std::ops::DerefMut for Remote {
    #[inline]
    fn deref_mut(&mut self) -> &mut RemoteBooks {
        self.0.get_or_insert_with(Box::default)
    }
}

impl Grants {
    pub(crate) fn new(capacity: u32) -> Self {
        let capacity = capacity.max(1);
        Grants {
            capacity,
            held: 0,
            out_total: 0,
            out: PerNode::default(),
            local_wants: false,
            remote: Remote::default(),
        }
    }

    /// Entries kept per sending node (for tests that check that churn leaves nothing behind).
    pub(crate) fn entries(&self) -> usize {
        self.out.len()
            + self.remote.left.len()
            + self.remote.wanting.len()
            + self.remote.deferred.len()
            + self.remote.reclaiming.len()
            + self.remote.taken.len()
            + self.remote.done.len()
    }

    /// Whether the books of other nodes were made (see [`Remote`]).
    #[cfg(test)]
    pub(crate) fn has_remote_books(&self) -> bool {
        self.remote.0.is_some()
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

    /// How many messages it holds at most, counting the credit out.
    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// How many taken messages are worth a frame of their own, and freed room is granted once
    /// this much is free (or the buffer has run dry): a quarter of the capacity. With half, a
    /// 1-to-1 stream at a capacity of 1024 (the default then) ran at half the speed a larger capacity
    /// allows: the sender waited out every credit round trip, both processes idle half the
    /// time (`suite/run`, issue 21: 3.4-3.6 M msgs/s with half, 6.1-6.8 M with a quarter, 5.6-6.0
    /// M with an eighth; queue 1->2 and broadcast 3 level or better). Once, when every frame
    /// cost more, a quarter carried 20% less. Worked out, not kept: 8 bytes less in every
    /// receiver's books.
    #[inline]
    pub(crate) fn batch(&self) -> u32 {
        (self.capacity / 4).max(1)
    }

    #[inline]
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

    /// A message from node `from` arrived: on its credit ([`Arrival::Credit`]), on credit it had
    /// when it left ([`Arrival::Left`]), or without credit ([`Arrival::Refused`]: a peer that
    /// sends beyond its credit breaks the protocol, and the message is not taken in). One at a
    /// time, the reference that [`Grants::arrived_many`], which the inbox calls, is checked
    /// against.
    #[cfg(test)]
    pub(crate) fn arrived(&mut self, from: NodeId) -> Arrival {
        let arrival = match self.out.get_mut(&from) {
            Some(n) if *n > 0 => {
                *n -= 1;
                self.out_total -= 1;
                if *n == 0 {
                    self.used_up(from);
                }
                Arrival::Credit
            }
            // Sent before the node left, on credit it had then (voided since): taken in, and
            // told to nobody. No more than that credit.
            _ => match self.remote.left.iter().position(|l| l.node == from && l.credit > 0) {
                Some(i) => {
                    let l = &mut self.remote.left[i];
                    if l.counted {
                        self.out_total -= 1;
                    }
                    l.credit -= 1;
                    l.owed = l.owed.map(|n| n.saturating_add(1));
                    if l.credit == 0 && l.owed.is_none() {
                        self.remote.left.remove(i);
                    }
                    Arrival::Left
                }
                None => return Arrival::Refused,
            },
        };
        self.held = self.held.saturating_add(1);
        arrival
    }

    /// `n` messages from node `from` arrived together, booked at once: how many of them (the
    /// first) came on its credit, and how many (the next) on credit it had when it left; the
    /// rest came without credit (a peer that sends beyond its credit breaks the protocol) and
    /// are not taken in. As `n` arrivals one by one (checked against them in the tests).
    pub(crate) fn arrived_many(&mut self, from: NodeId, n: u32) -> (u32, u32) {
        let mut credit = 0;
        if let Some(out) = self.out.get_mut(&from) {
            credit = (*out).min(n);
            *out -= credit;
            self.out_total -= credit;
            if *out == 0 && credit > 0 {
                self.used_up(from);
            }
        }
        let mut left = 0;
        while credit + left < n {
            let Some(i) = self.remote.left.iter().position(|l| l.node == from && l.credit > 0)
            else {
                break;
            };
            let l = &mut self.remote.left[i];
            let k = l.credit.min(n - credit - left);
            if l.counted {
                self.out_total -= k;
            }
            l.credit -= k;
            l.owed = l.owed.map(|o| o.saturating_add(k));
            if l.credit == 0 && l.owed.is_none() {
                self.remote.left.remove(i);
            }
            left += k;
        }
        self.held = self.held.saturating_add(credit + left);
        (credit, left)
    }

    /// The application took (or acknowledged) `n` messages of `from` (`None`: of this node).
    #[inline]
    pub(crate) fn taken(&mut self, from: Option<NodeId>, n: u32) {
        self.held = self.held.saturating_sub(n);
        if let Some(from) = from.filter(|f| self.out.contains_key(f)) {
            self.remote.taken.add(from, n);
        }
    }

    /// The application took one message of `from` (as [`Grants::taken`]); then whether the
    /// books are [`Grants::quiet`]. One call a message on `recv`'s path.
    #[inline]
    pub(crate) fn take_one(&mut self, from: Option<NodeId>, idle: bool) -> bool {
        self.taken(from, 1);
        self.quiet(idle)
    }

    /// Whether [`Grants::settle`] (not `urgent`) would find nothing to do after a take: nothing
    /// wants (no node, no sender here), less than a batch is free and less than a batch taken
    /// is untold, and the buffer has not run dry (`idle`). A stream's receiver then skips the
    /// settle, message after message, and settles once per batch (issue 21: the books cost
    /// about 150 instructions a message, settled every time).
    #[inline]
    pub(crate) fn quiet(&self, idle: bool) -> bool {
        if idle || self.local_wants || !self.remote.wanting.is_empty() {
            return false;
        }
        let batch = self.batch();
        self.free() < batch && self.remote.taken.total < batch
    }

    /// Node `from` wants credit. A node that has credit out is not made to wait among those
    /// wanting: either it asked before a grant reached it (the two crossed), and that grant
    /// answers it (kept waiting, it would never be asked to give back the credit it holds,
    /// however long it sits unused: seed 788 of the credit simulation); or units of that credit
    /// are taken and their messages not here yet: a send that took the last unit and has not
    /// pushed its message (a thread preempted between the two), while another send of that
    /// node found none and asked. That node asks nothing more (its window has asked). The
    /// books cannot tell the two apart, so the want is kept, apart (`deferred`), and stands
    /// once the credit out to the node is used up or given back (see [`Grants::used_up`]); a
    /// grant meanwhile answers it. (Dropped, another node got all the freed room, and the node
    /// that asked starved for good: the switchboard simulation's seed 115913, a leaving node's
    /// hand-over. Kept, a want that crossed a grant comes back once that grant is used: at
    /// worst one grant the node does not need, which a reclaim takes back.)
    pub(crate) fn want(&mut self, from: NodeId) {
        if self.out.get(&from).is_some_and(|n| *n > 0) {
            if !self.remote.deferred.contains(&from) {
                self.remote.deferred.push(from);
            }
            return;
        }
        if self.remote.done.contains(&from) {
            // It re-routes after its hand-over: answered again.
            self.remote.done.retain(|n| *n != from);
        }
        if !self.remote.wanting.contains(&from) {
            self.remote.wanting.push_back(from);
        }
    }

    /// The nodes waiting for credit.
    pub(crate) fn wanting(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.remote.wanting.iter().copied()
    }

    /// Whether node `node` asked for credit and waits for it (or will, once the credit out to
    /// it is used: see [`Grants::want`]).
    pub(crate) fn wants(&self, node: NodeId) -> bool {
        self.remote.wanting.contains(&node) || self.remote.deferred.contains(&node)
    }

    /// The credit out to node `from` is used up (or given back): a want it made meanwhile
    /// stands now (see [`Grants::want`]).
    fn used_up(&mut self, from: NodeId) {
        if self.remote.deferred.contains(&from) {
            self.remote.deferred.retain(|n| *n != from);
            self.want(from);
            self.remote.revived = true;
        }
    }

    /// Whether a want kept apart stands since the last call (its node's credit arrived used
    /// up): the books are to be settled now, as a want read is, not at the application's next
    /// take (which a receiver holding back while its node leaves never makes). Read once per
    /// frame that arrives; written only when set.
    pub(crate) fn wants_settling(&mut self) -> bool {
        self.remote.revived && std::mem::replace(&mut self.remote.revived, false)
    }

    /// The receiver has ended: the nodes waiting for credit that `settled` says may stop
    /// waiting (none will come), taken off the list.
    /// (Those whose want waits for the credit out to them to be used too.)
    pub(crate) fn take_wanting(&mut self, settled: impl Fn(NodeId) -> bool) -> Vec<NodeId> {
        if self.remote.wanting.is_empty() && self.remote.deferred.is_empty() {
            return Vec::new();
        }
        let (done, wait): (VecDeque<NodeId>, VecDeque<NodeId>) =
            self.remote.wanting.drain(..).partition(|n| settled(*n));
        self.remote.wanting = wait;
        let mut done: Vec<NodeId> = done.into();
        let remote = &mut *self.remote;
        remote.deferred.retain(|n| {
            let settled = settled(*n);
            if settled && !done.contains(n) {
                done.push(*n);
            }
            !settled
        });
        done
    }

    /// Node `from` gave `n` unused credits back.
    pub(crate) fn returned(&mut self, from: NodeId, n: u32) {
        if self.remote.reclaiming.contains(&from) {
            self.remote.reclaiming.remove(&from);
        }
        let mut n = n;
        if let Some(out) = self.out.get_mut(&from) {
            let back = n.min(*out);
            *out -= back;
            self.out_total -= back;
            n -= back;
            if *out == 0 {
                self.used_up(from);
            }
        }
        // The rest of what it gives back is credit it had when it left (see [`Left`]). (Read
        // first: written, the books of other nodes are made.)
        let counted = |l: &Left| l.node == from && l.counted;
        if n > 0 && self.remote.left.iter().any(counted) {
            if let Some(l) = self.remote.left.iter_mut().find(|l| counted(l)) {
                let back = n.min(l.credit);
                l.credit -= back;
                self.out_total -= back;
            }
        }
    }

    /// The receiver starts over under a new registration (its node was removed while alive):
    /// nothing granted to other nodes stands, nothing is told to them, and what they sent before
    /// is no longer held here. Its own node's messages stay held.
    pub(crate) fn reset_remote(&mut self) {
        self.out.clear();
        self.out_total = 0;
        self.remote = Remote::default();
    }

    /// Every node that may have sent something (for [`Frame::Released`](crate::link::wire::Frame::Released)).
    pub(crate) fn known(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.out.keys().copied()
    }

    /// Everything taken, to tell now (the receiver is going away).
    pub(crate) fn flush_taken(&mut self) -> Outgoing {
        let mut out = Outgoing { batch: self.batch(), ..Outgoing::default() };
        if let Some(remote) = self.remote.0.as_mut() {
            for (node, n) in remote.taken.drain() {
                out.add(node, n, 0);
            }
        }
        out
    }

    /// Whether room is kept for a sender on this node.
    pub(crate) fn local_wanted(&self) -> bool {
        self.local_wants
    }

    /// Whether a sender on this node waits for room now. One that went elsewhere, or stopped
    /// waiting, wants nothing here any more: the room kept for it goes to the nodes that want
    /// (kept for it for ever, a node that wanted starved: the switchboard simulation's seed 395).
    pub(crate) fn local_waiting(&mut self, waiting: bool) {
        if !waiting {
            self.local_wants = false;
        }
    }

    /// Settle the books: grant free room to the nodes that want it (or, if none does, back to
    /// `last`, the node whose message was taken last), ask idle holders for their credit when
    /// someone wants and nothing is free, and tell what was taken. Room is granted in batches
    /// unless `idle` (nothing is buffered: the receiver is waiting).
    pub(crate) fn settle(&mut self, idle: bool, last: Option<NodeId>, urgent: bool) -> Outgoing {
        let _ = self.wants_settling();
        let mut out = Outgoing { batch: self.batch(), ..Outgoing::default() };
        let mut free = self.free();
        if free > 0 && (idle || free >= self.batch() || !self.remote.wanting.is_empty()) {
            if self.local_wants {
                // Keep one for the sender on this node, woken to take it, for as long as it
                // waits (granted away at the next settle, it lost every race with the nodes
                // that want).
                free -= 1;
            }
            while free > 0 && !self.remote.wanting.is_empty() {
                let Some(node) = self.remote.wanting.pop_front() else { break };
                let share = (free / (self.remote.wanting.len() as u32 + 1)).max(1);
                self.grant(node, share, &mut out);
                free -= share;
                out.urgent = true;
            }
            // (Not to a node that handed over: see `handed_over`.)
            let back = |n: &NodeId| self.out.contains_key(n) && !self.remote.done.contains(n);
            if let Some(node) = last.filter(|n| free > 0 && back(n)) {
                out.urgent |= free >= self.batch();
                self.grant(node, free, &mut out);
                free = 0;
            }
        }
        // Someone still wants and nothing is free: ask the nodes holding credit they are not
        // asking for (idle, or just granted) to give back what they do not use.
        if free == 0 && (!self.remote.wanting.is_empty() || self.local_wants) {
            for (node, n) in self.out.iter() {
                if *n > 0
                    && !self.remote.wanting.contains(node)
                    && self.remote.reclaiming.insert(*node)
                {
                    out.reclaim.push(*node);
                }
            }
        }
        let told = self.remote.taken.total;
        if !self.remote.taken.is_empty()
            && (urgent || told >= self.batch() || !out.is_empty() || idle)
        {
            for (node, n) in self.remote.taken.drain() {
                out.add(node, n, 0);
            }
        }
        out
    }

    fn grant(&mut self, node: NodeId, n: u32, out: &mut Outgoing) {
        // Its want is answered, however the credit came.
        if self.remote.wanting.contains(&node) {
            self.remote.wanting.retain(|w| *w != node);
        }
        if self.remote.deferred.contains(&node) {
            self.remote.deferred.retain(|w| *w != node);
        }
        *self.out.entry_or_default(node) += n;
        self.out_total += n;
        out.add(node, 0, n);
    }
}
