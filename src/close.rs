//! Close fences: after a channel's close is applied, each node sends a *fence* to every node
//! that has a receiver of the channel, behind the last data it sent on it; a receiver ends only
//! once every node that was a member at the close has fenced. This module keeps, per channel,
//! which fences came in and whether this node has sent its own. Beside the message path: the
//! connection's reader records fences here; the switchboard reads them when closing inboxes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use crate::peer::lock;
use crate::registry::NodeId;

/// The fences of every closed channel, as this node knows them.
#[derive(Debug, Default)]
pub(crate) struct Fences {
    /// Fences received, per channel.
    received: Mutex<HashMap<String, BTreeSet<NodeId>>>,
    /// Channels whose close this node has fenced.
    sent: Mutex<HashSet<String>>,
}

impl Fences {
    /// Node `from` fenced `channel`.
    pub(crate) fn received(&self, channel: &str, from: NodeId) {
        lock(&self.received).entry(channel.to_owned()).or_default().insert(from);
    }

    /// The nodes that have fenced `channel` so far.
    pub(crate) fn heard(&self, channel: &str) -> BTreeSet<NodeId> {
        lock(&self.received).get(channel).cloned().unwrap_or_default()
    }

    /// Channel `channel` left the registry: a new channel of that name starts with no fences.
    pub(crate) fn forget(&self, channel: &str) {
        lock(&self.received).remove(channel);
        lock(&self.sent).remove(channel);
    }

    /// True the first time it is asked for `channel`: this node sends its fence now.
    pub(crate) fn send_once(&self, channel: &str) -> bool {
        lock(&self.sent).insert(channel.to_owned())
    }
}
