//! Who an inbox tells when its receiver is dropped: the receiver's endpoint actor, or, for an
//! unnamed channel's receiver (nothing registered, so no actor), its node.

use std::sync::Arc;

use actix::Recipient;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Detached, Inbox};
use crate::channel::decoding;
use crate::ids::EndpointId;

/// Who an inbox tells when its receiver is dropped, with the node its messages decode on.
pub(super) enum Owner {
    /// The endpoint actor, which deregisters the receiver and delivers elsewhere what this
    /// node's senders gave the inbox. (Boxed: 16 bytes in every inbox, not 24.)
    Actor(Box<(Recipient<Detached>, decoding::Context)>),
    /// An unnamed channel's receiver has no actor (nothing to deregister): its node is told,
    /// with how many of this node's messages it held (dropped with it). What every unnamed
    /// channel's receiver of a node shares, in one: its owner and its decoding node took 48
    /// bytes in every inbox, and take 24.
    Unnamed(Arc<Unnamed>),
}

impl Owner {
    /// The node the inbox's messages decode on.
    pub(super) fn context(&self) -> &decoding::Context {
        match self {
            Owner::Actor(actor) => &actor.1,
            Owner::Unnamed(parts) => &parts.context,
        }
    }
}

/// What every unnamed channel's receiver on a node shares (see [`Owner::Unnamed`]).
pub(crate) struct Unnamed {
    /// The node its messages decode on.
    pub(crate) context: decoding::Context,
    /// What tells the node when one is dropped.
    pub(crate) on_drop: OnDrop,
}

impl std::fmt::Debug for Unnamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unnamed").field("context", &self.context).finish_non_exhaustive()
    }
}

/// See [`Owner::Unnamed`].
pub(crate) type OnDrop = std::sync::Arc<dyn Fn(EndpointId, usize) + Send + Sync>;

impl<T: Serialize + DeserializeOwned + Send + 'static> Inbox<T> {
    /// An unnamed channel's receiver: what its node does when it is dropped, and the node its
    /// messages decode with.
    pub(crate) fn set_unnamed(&self, parts: Arc<Unnamed>) {
        self.route.typed::<T>();
        let _ = self.owner.set(Owner::Unnamed(parts));
    }

    /// The receiver's actor, and the node it belongs to (what its messages decode with).
    pub(crate) fn set_actor(&self, actor: Recipient<Detached>, context: decoding::Context) {
        self.route.typed::<T>();
        let _ = self.owner.set(Owner::Actor(Box::new((actor, context))));
    }
}
