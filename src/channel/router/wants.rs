//! What a router asks of its receivers around placing a message, beside the path of the message
//! itself: credit from the remote ones that had none ([`Frame::Want`]), and the room its own
//! node's receivers keep for this node's senders, let go once a message went elsewhere.

use super::{ChannelRoute, Target};
use crate::ids::EndpointId;
use crate::link::wire::{self, Frame};

impl ChannelRoute {
    /// A message went to another receiver after one of this node's had no room: what those
    /// keep for this node's senders goes to the nodes that want it.
    pub(super) fn placed_elsewhere(targets: &[Target]) {
        for t in targets {
            if let Target::Local(inbox) = t {
                inbox.no_local_waiter(true);
            }
        }
    }

    /// Nothing had room: ask each remote receiver without credit (`only` that one, if given)
    /// for some, once until it grants.
    pub(super) fn want(targets: &[Target], only: Option<EndpointId>) {
        for t in targets {
            if let Target::Remote { id, peer, window } = t {
                if only.is_none_or(|o| o == *id) && window.should_ask() {
                    tracing::trace!(receiver = id, "want out");
                    peer.outbox.push_frame(wire::encode(&Frame::Want { to: *id }), true);
                }
            }
        }
    }
}
