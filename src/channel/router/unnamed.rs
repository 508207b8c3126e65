//! An unnamed channel's router (`Node::channel`): named for display only, made for its owner
//! and receiver, closed once by whoever closes it first (see `Switchboard::shut`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::ChannelRoute;
use crate::channel::counters::Counters;
use crate::ids::{EndpointId, NodeId};

/// How an unnamed channel is named where a name is shown (its `Sender::channel`, logs, dead
/// letters): not a name any endpoint can register (see `check_name`), so never confused with one.
pub(crate) fn unnamed_name(id: EndpointId) -> String {
    format!("(unnamed {:x})", id & !crate::ids::UNNAMED)
}

impl ChannelRoute {
    /// The router of the unnamed channel whose receiver `id` node `owner` holds.
    pub(crate) fn unnamed(owner: NodeId, id: EndpointId, counters: Arc<Counters>) -> Self {
        Self::with_owner(&unnamed_name(id), Some((owner, id)), counters)
    }

    /// Mark the channel closed, as [`ChannelRoute::close`]: true if it was not already.
    pub(crate) fn close_first(&self) -> bool {
        let first = !self.closed.swap(true, Ordering::SeqCst);
        self.changed.notify_waiters();
        first
    }
}
