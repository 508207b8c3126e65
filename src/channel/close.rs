//! Close fences: after a channel's close is applied, each node sends a *fence* to every node
//! that has a receiver of the channel, behind the last data it sent on it; a receiver ends only
//! once every node that was a member at the close has fenced. This module keeps, per channel,
//! which fences came in and whether this node has sent its own. Beside the message path: the
//! connection's reader records fences here; the switchboard reads them when closing inboxes.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

use crate::ids::{EndpointId, NodeId};
use crate::sync::{lock, HashMap, HashSet};

/// A channel by name and by the endpoint id that created it: fences of a closed channel are never
/// counted for a later channel of the same name.
type Incarnation = (String, EndpointId);

/// The fences of every closed channel, as this node knows them.
#[derive(Debug, Default)]
pub(crate) struct Fences {
    /// Fences received, per channel.
    received: Mutex<HashMap<Incarnation, BTreeSet<NodeId>>>,
    /// Channels whose close this node has fenced.
    sent: Mutex<HashSet<Incarnation>>,
    /// Fences that came before this node's registry listed their channel (or their node): its
    /// registry lags behind the sender's. Counted once it catches up ([`Fences::heard`]); the
    /// latest [`MAX_EARLY`] only, so that a peer cannot fill memory with fences for channels
    /// that never come.
    early: Mutex<VecDeque<(Incarnation, NodeId)>>,
}

/// How many early fences are kept.
const MAX_EARLY: usize = 1024;

impl Fences {
    /// Node `from` fenced channel `channel`, made by endpoint `created`.
    pub(crate) fn received(&self, channel: &str, created: EndpointId, from: NodeId) {
        lock(&self.received).entry((channel.to_owned(), created)).or_default().insert(from);
    }

    /// Node `from` fenced a channel this node's registry does not list yet (or while it does
    /// not list `from` yet).
    pub(crate) fn early(&self, channel: &str, created: EndpointId, from: NodeId) {
        let mut early = lock(&self.early);
        if early.len() == MAX_EARLY {
            early.pop_front();
        }
        early.push_back(((channel.to_owned(), created), from));
    }

    /// The nodes that have fenced the channel so far (those that came early included).
    pub(crate) fn heard(&self, channel: &str, created: EndpointId) -> BTreeSet<NodeId> {
        let key = (channel.to_owned(), created);
        let mut received = lock(&self.received);
        let mut early = lock(&self.early);
        if early.iter().any(|(k, _)| *k == key) {
            let (now, rest): (VecDeque<_>, VecDeque<_>) =
                std::mem::take(&mut *early).into_iter().partition(|(k, _)| *k == key);
            *early = rest;
            received.entry(key.clone()).or_default().extend(now.into_iter().map(|(_, n)| n));
        }
        drop(early);
        received.get(&key).cloned().unwrap_or_default()
    }

    /// The channel left the registry: what was kept for it goes.
    pub(crate) fn forget(&self, channel: &str, created: EndpointId) {
        let key = (channel.to_owned(), created);
        lock(&self.received).remove(&key);
        lock(&self.sent).remove(&key);
        lock(&self.early).retain(|(k, _)| *k != key);
    }

    /// Whether this node has fenced any channel it still knows.
    #[cfg(test)]
    pub(crate) fn sent_any(&self) -> bool {
        !lock(&self.sent).is_empty()
    }

    /// True the first time it is asked for the channel: this node sends its fence now.
    pub(crate) fn send_once(&self, channel: &str, created: EndpointId) -> bool {
        lock(&self.sent).insert((channel.to_owned(), created))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_of_a_channel_are_never_counted_for_a_later_one_of_its_name() {
        let f = Fences::default();
        f.received("jobs", 1, 7);
        assert!(f.heard("jobs", 5).is_empty(), "the old channel's fence");
        f.received("jobs", 5, 8);
        assert!(f.send_once("jobs", 1));
        assert!(f.send_once("jobs", 5), "the new channel is fenced on its own");
        f.forget("jobs", 1);
        assert_eq!(f.heard("jobs", 5), BTreeSet::from([8]), "forgetting the old keeps the new");
        assert!(!f.send_once("jobs", 5));
        assert!(f.send_once("jobs", 1), "forgotten");
    }

    #[test]
    fn a_fence_that_comes_before_its_channel_is_counted_once_the_channel_is_known() {
        let f = Fences::default();
        f.early("jobs", 3, 7);
        f.early("other", 9, 7);
        assert_eq!(f.heard("jobs", 3), BTreeSet::from([7]));
        assert_eq!(f.heard("jobs", 3), BTreeSet::from([7]), "counted once, kept");
        f.forget("other", 9);
        assert!(f.heard("other", 9).is_empty(), "forgotten with its channel");
        for n in 0..MAX_EARLY as NodeId + 1 {
            f.early("flood", 1, n);
        }
        assert_eq!(f.heard("flood", 1).len(), MAX_EARLY, "bounded");
    }
}
