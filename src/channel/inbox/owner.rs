//! Who an inbox tells when its receiver is dropped: the receiver's endpoint actor, or, for an
//! unnamed channel's receiver (nothing registered, so no actor), its node.

use std::sync::Arc;

use actix::Recipient;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Detached, Inbox};
use crate::channel::decoding;
use crate::ids::EndpointId;

/// Who an inbox tells when its receiver is dropped.
pub(super) enum Owner {
    /// The endpoint actor, which deregisters the receiver and delivers elsewhere what this
    /// node's senders gave the inbox.
    Actor(Recipient<Detached>),
    /// An unnamed channel's receiver has no actor (nothing to deregister): its node is told,
    /// with how many of this node's messages it held (dropped with it).
    Unnamed(OnDrop),
}

/// See [`Owner::Unnamed`].
pub(crate) type OnDrop = std::sync::Arc<dyn Fn(EndpointId, usize) + Send + Sync>;

impl<T: Serialize + DeserializeOwned + Send + 'static> Inbox<T> {
    /// An unnamed channel's receiver: what its node does when it is dropped, and the node its
    /// messages decode with.
    pub(crate) fn set_unnamed(&self, on_drop: OnDrop, context: Arc<decoding::Context>) {
        self.route.typed::<T>(context.peers.clone());
        let _ = (self.owner.set(Owner::Unnamed(on_drop)), self.decoding.set(context));
    }

    /// The receiver's actor, and the node it belongs to (what its messages decode with).
    pub(crate) fn set_actor(&self, actor: Recipient<Detached>, context: Arc<decoding::Context>) {
        self.route.typed::<T>(context.peers.clone());
        let _ = (self.owner.set(Owner::Actor(actor)), self.decoding.set(context));
    }
}
