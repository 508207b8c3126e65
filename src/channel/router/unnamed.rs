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

/// Which channel a router routes: a named one, or an unnamed one (the node that holds its one
/// receiver, and that receiver), whose name is made from its id where it is shown (see
/// [`ChannelRoute::name`]): 24 bytes in every unnamed channel's router, not 48 and a string.
pub(crate) enum Name {
    Named(Box<str>),
    Unnamed(NodeId, EndpointId),
}

/// As the name it shows (what a `String` of it showed).
impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Named(name) => name.fmt(f),
            Name::Unnamed(..) => self.to_string().fmt(f),
        }
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Named(name) => f.write_str(name),
            // (`{:#}`: without the id, for names that should not grow with the channels, such
            // as a span's.)
            Name::Unnamed(_, _) if f.alternate() => f.write_str("(unnamed)"),
            Name::Unnamed(_, id) => write!(f, "(unnamed {:x})", id & !crate::ids::UNNAMED),
        }
    }
}

impl ChannelRoute {
    /// The router of the unnamed channel whose receiver `id` node `owner` holds.
    pub(crate) fn new_unnamed(owner: NodeId, id: EndpointId, counters: Arc<Counters>) -> Self {
        Self::with_name(Name::Unnamed(owner, id), counters)
    }

    /// An unnamed channel's router (see `Node::channel`): the node that holds its one receiver,
    /// and that receiver. Not in the registry: its targets are set by the switchboard's
    /// `unnamed` table, and when its receiver is gone the channel is closed, not re-routed.
    pub(crate) fn unnamed(&self) -> Option<(NodeId, EndpointId)> {
        match self.name {
            Name::Unnamed(owner, id) => Some((owner, id)),
            Name::Named(_) => None,
        }
    }

    /// The channel's name: an unnamed channel's is made when first asked for (see
    /// [`unnamed_name`]); logs show [`ChannelRoute::label`], which makes nothing.
    pub(crate) fn name(&self) -> &str {
        match &self.name {
            Name::Named(name) => name,
            Name::Unnamed(_, id) => self.rare().name.get_or_init(|| unnamed_name(*id)),
        }
    }

    /// The channel's name, as logs show it.
    pub(crate) fn label(&self) -> &Name {
        &self.name
    }

    /// Mark the channel closed, as [`ChannelRoute::close`]: true if it was not already.
    pub(crate) fn close_first(&self) -> bool {
        let first = !self.closed.swap(true, Ordering::SeqCst);
        self.notify();
        first
    }
}
