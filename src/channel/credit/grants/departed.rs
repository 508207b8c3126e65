//! A receiver's books ([`Grants`]) as nodes leave: a node that handed over, one that left the
//! cluster (its credit kept counted, or void, and what it is owed: see [`Left`]), one that
//! comes back as a new incarnation.

use super::{Grants, Left};
use crate::channel::credit::left::{Departure, MAX_LEFT};
use crate::ids::NodeId;

impl Grants {
    /// Node `node`'s entry in `left` goes (pushed out, answered or void): its credit is no
    /// longer counted.
    fn drop_left(&mut self, i: usize) -> Option<Left> {
        let l = self.remote.left.remove(i)?;
        if l.counted {
            self.out_total -= l.credit;
        }
        Some(l)
    }

    /// Room for one more entry in `left`: the oldest goes if it is full.
    fn make_left_room(&mut self) {
        if self.remote.left.len() == MAX_LEFT {
            let _ = self.drop_left(0);
        }
    }

    /// Node `from` has handed over and leaves (its last return, see `Frame::Return`): its want
    /// is void, and a `member` still (its removal not applied here yet) stays listed in `out`
    /// so that a refresh does not offer it credit (see `Inbox::offer`), nor is room freed by
    /// taking its messages given back to it, until it wants again (re-routing after its
    /// hand-over) or is forgotten (offered, the room was out to a node that had stopped: the
    /// switchboard simulation's seed 115779). What was granted to it before stays counted: a
    /// grant on its way may still be used, by a hand-over that re-routes after all (it goes
    /// back unused otherwise), until the node says it sends nothing more
    /// ([`Grants::sends_no_more`]). Not on any return: the answer to a deferred reclaim can be
    /// zero too, from a node that still wants.
    pub(crate) fn handed_over(&mut self, from: NodeId, member: bool) {
        self.drop_wants(from);
        if member {
            self.out.entry_or_default(from);
            self.mark_done(from);
        }
    }

    /// Node `from`'s wants go, asked or kept, and a reclaim it has not answered. (Books of other
    /// nodes not made yet are not made for this: every inbox hears every node's last word, and
    /// most receivers of a node with 100,000 unnamed channels keep none.)
    fn drop_wants(&mut self, from: NodeId) {
        if let Some(remote) = self.remote.0.as_mut() {
            remote.wanting.retain(|n| *n != from);
            remote.deferred.retain(|n| *n != from);
            remote.reclaiming.remove(&from);
        }
    }

    /// Node `from` is done: settling passes it over (see `RemoteBooks::done`).
    fn mark_done(&mut self, from: NodeId) {
        if !self.remote.done.contains(&from) {
            self.remote.done.push(from);
        }
    }

    /// Node `from` has stopped sending, for good (`Frame::Bye`: it has handed over, and every
    /// message it sent came before): no credit is counted out to it any more, grants still on
    /// their way to it included, and no freed room goes back to it (its node refuses its
    /// wants, and a grant it is made all the same it gives back). Counted
    /// until its departure was forgotten, a grant it never read (it stopped first) held the
    /// room for 10 s, while another leaving node's hand-over found none (the switchboard
    /// simulation's seed 79912). True if room was freed.
    pub(crate) fn sends_no_more(&mut self, from: NodeId) -> bool {
        let before = self.out_total;
        self.drop_wants(from);
        if let Some(out) = self.out.get_mut(&from) {
            self.out_total -= std::mem::take(out);
            self.mark_done(from);
        }
        self.void_left_credit(from);
        self.out_total < before
    }

    /// Node `node` left the cluster: nothing is granted or told to it again. The credit it had
    /// is free again, but for a node that left gracefully: it stays counted until it
    /// arrives, comes back or is void (see [`Left`]). `held`: how many of its messages the
    /// receiver holds, to be delivered here, after those taken and not told (`None`: some are
    /// delivered and not acknowledged, which the node must deliver again if it comes back;
    /// see [`Left`]). `how`: see [`Departure`].
    pub(crate) fn forget(&mut self, node: NodeId, held: Option<u32>, how: Departure) {
        let graceful = how.graceful();
        let first = how == Departure::LeftFirst;
        // (Still in `out_total` for now: moved from `out` to `left`.)
        let credit = self.out.remove(&node).unwrap_or(0);
        let told = self.remote.taken.of(node);
        let owed = held.map(|h| h.saturating_add(told));
        let before = self.remote.left.iter().position(|l| l.node == node);
        match before.map(|i| &mut self.remote.left[i]) {
            // Forgotten before (a removal, then the node's own word that it is back).
            Some(l) => {
                if !l.counted {
                    self.out_total -= credit;
                }
                l.credit = l.credit.saturating_add(credit);
                l.owed = l.owed.zip(owed).map(|(a, b)| a.saturating_add(b));
                l.first |= first;
            }
            None if credit > 0 || owed.is_some_and(|n| n > 0) => {
                if !graceful {
                    self.out_total -= credit;
                }
                self.make_left_room();
                self.remote.left.push_back(Left { node, credit, owed, counted: graceful, first });
            }
            None => {}
        }
        if let Some(remote) = self.remote.0.as_mut() {
            remote.wanting.retain(|n| *n != node);
            remote.deferred.retain(|n| *n != node);
            remote.reclaiming.remove(&node);
            remote.taken.remove(node);
            remote.done.retain(|n| *n != node);
        }
    }

    /// Node `node`, which left, sends nothing more on the credit it had (long enough has
    /// passed): that credit is void. What it owes is kept (it may still come back as a new
    /// incarnation, and be answered).
    pub(crate) fn void_left_credit(&mut self, node: NodeId) {
        let Some(i) = self.remote.left.iter().position(|l| l.node == node) else { return };
        let credit = std::mem::take(&mut self.remote.left[i].credit);
        if self.remote.left[i].counted {
            self.out_total -= credit;
        }
        if self.remote.left[i].owed.is_none_or(|n| n == 0) {
            self.remote.left.remove(i);
        }
    }

    /// Node `node` left and came back as a new incarnation (it was removed while alive): how
    /// many of the messages it sent before, from the first it was not told of, this receiver
    /// took in (they are delivered here; it delivers the rest again). Nothing of its old
    /// incarnation is kept after this: it sends nothing more on the old credit.
    pub(crate) fn rejoined(&mut self, node: NodeId) -> u32 {
        match self.remote.left.iter().position(|l| l.node == node) {
            Some(i) => self.drop_left(i).and_then(|l| l.owed).unwrap_or(0),
            None => 0,
        }
    }

    /// How many messages of node `node`, which left, this receiver took in and holds as its
    /// own (told now, with a release: it delivers them, the node delivers the rest elsewhere);
    /// counted as told.
    pub(crate) fn take_owed(&mut self, node: NodeId) -> u32 {
        let Some(i) = self.remote.left.iter().position(|l| l.node == node) else { return 0 };
        let owed = self.remote.left[i].owed.as_mut().map_or(0, std::mem::take);
        if self.remote.left[i].credit == 0 {
            self.remote.left.remove(i);
        }
        owed
    }

    /// One message of node `node`, which left, that this receiver took in and holds as its own
    /// goes back to it instead (this receiver's node is leaving too): not counted as owed (so
    /// not told as taken, and the node delivers it elsewhere with the rest). False if the
    /// message is this node's to deliver: the node left gracefully before this one (it has
    /// stopped, or stops without waiting: [`Departure::LeftFirst`]), or is owed no count (it
    /// has deliveries here not acknowledged, and is told nothing).
    pub(crate) fn give_back_owed(&mut self, node: NodeId) -> bool {
        let Some(l) = self.remote.left.iter_mut().find(|l| l.node == node) else { return false };
        if l.first {
            return false;
        }
        match l.owed.as_mut() {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// What [`Grants::take_owed`] took could not be told (the node is out of reach): owed
    /// still, to answer when it comes back.
    pub(crate) fn restore_owed(&mut self, node: NodeId, n: u32) {
        match self.remote.left.iter_mut().find(|l| l.node == node) {
            Some(l) => l.owed = l.owed.map(|o| o.saturating_add(n)),
            None => {
                self.make_left_room();
                let left = Left { node, credit: 0, owed: Some(n), counted: false, first: false };
                self.remote.left.push_back(left);
            }
        }
    }

    /// Nodes that left whose messages this receiver took in and has not told them of.
    pub(crate) fn owing(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.remote.left.iter().filter(|l| l.owed.is_some_and(|n| n > 0)).map(|l| l.node)
    }

    /// Nodes that left and may still send on the credit they had (a graceful leaver hands
    /// over on it: see [`Grants::forget`]).
    pub(crate) fn may_still_send(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.remote.left.iter().filter(|l| l.credit > 0).map(|l| l.node)
    }
}
