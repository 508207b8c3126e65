//! Tombstones: the inboxes of dropped receivers of this node, kept after their deregistration
//! until nothing more can arrive for them.
//!
//! When a receiver leaves the registry, every other node sends `Gone` after the last data it had
//! queued for it; until then, late data still lands in the old inbox, which re-routes it. A
//! tombstone waits for the nodes that were members when the removal applied here, not for
//! whoever is a member later (a node that joined afterwards never knew the receiver and never
//! says `Gone`), and stops waiting for a node that leaves the cluster (it never will either).
//! So every tombstone is released by something that ends.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use crate::peer::lock;
use crate::registry::{EndpointId, NodeId};

/// Dropped receivers of this node waiting for the other nodes' `Gone`.
#[derive(Debug, Default)]
pub(crate) struct Tombstones {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per removed receiver: the nodes whose `Gone` it still waits for.
    awaiting: HashMap<EndpointId, BTreeSet<NodeId>>,
    /// `Gone`s that came before this node applied the removal itself.
    early: HashMap<EndpointId, BTreeSet<NodeId>>,
}

impl Tombstones {
    /// Receiver `id` of this node left the registry while `others` were the other members.
    pub(crate) fn removed(&self, id: EndpointId, others: impl IntoIterator<Item = NodeId>) {
        let mut inner = lock(&self.inner);
        let heard = inner.early.remove(&id).unwrap_or_default();
        let waiting = others.into_iter().filter(|n| !heard.contains(n)).collect();
        inner.awaiting.insert(id, waiting);
    }

    /// Node `from` says `Gone` for receiver `id`. `known` tells whether this node holds an inbox
    /// for `id` (a `Gone` for anything else is not kept: a peer cannot grow this table).
    pub(crate) fn gone(&self, id: EndpointId, from: NodeId, known: bool) {
        let mut inner = lock(&self.inner);
        match inner.awaiting.get_mut(&id) {
            Some(waiting) => {
                waiting.remove(&from);
            }
            None if known => {
                inner.early.entry(id).or_default().insert(from);
            }
            None => {}
        }
    }

    /// The members now: nodes that left will send nothing more.
    pub(crate) fn members(&self, members: &BTreeSet<NodeId>) {
        for waiting in lock(&self.inner).awaiting.values_mut() {
            waiting.retain(|n| members.contains(n));
        }
    }

    /// Whether removed receiver `id` waits for nobody any more; it is forgotten if so.
    pub(crate) fn release(&self, id: EndpointId) -> bool {
        let mut inner = lock(&self.inner);
        if inner.awaiting.get(&id).is_some_and(BTreeSet::is_empty) {
            inner.awaiting.remove(&id);
            return true;
        }
        false
    }

    /// Forget early `Gone`s for receivers this node no longer holds.
    pub(crate) fn retain_early(&self, mut holds: impl FnMut(EndpointId) -> bool) {
        lock(&self.inner).early.retain(|id, _| holds(*id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_joins_later_is_not_waited_for() {
        let t = Tombstones::default();
        t.removed(7, [2]);
        t.members(&BTreeSet::from([1, 2, 3])); // node 3 joined after the removal
        assert!(!t.release(7), "node 2 has not said Gone yet");
        t.gone(7, 2, true);
        assert!(t.release(7), "node 3 never knew the receiver");
        assert!(!t.release(7), "released once");
    }

    #[test]
    fn a_node_that_leaves_is_not_waited_for() {
        let t = Tombstones::default();
        t.removed(7, [2, 3]);
        t.gone(7, 2, true);
        t.members(&BTreeSet::from([1, 2]));
        assert!(t.release(7));
    }

    #[test]
    fn a_gone_before_the_removal_counts() {
        let t = Tombstones::default();
        t.gone(7, 2, true);
        t.gone(8, 2, false); // not held here: not kept
        t.removed(7, [2]);
        assert!(t.release(7));
        t.removed(8, [2]);
        assert!(!t.release(8));
    }
}
