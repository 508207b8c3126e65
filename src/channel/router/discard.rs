//! What a node does with a message of a channel it drops undelivered (once every receiver of
//! the closed channel has ended: README, Close): it decodes it as the channel's type, on this
//! node, and drops it, so that the reply handles in it tell their askers
//! ([`RecvError::Dropped`](crate::oneshot::RecvError::Dropped)). Otherwise a handle no node
//! ever decoded, and so claimed, leaves its asker waiting for an answer that cannot come (the
//! switchboard simulation's seed 8, with reply handles: a request sent to a receiver on a node
//! that left, redelivered once every receiver of the closed channel had ended, and dropped).

use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::ChannelRoute;
use crate::channel::decoding;
use crate::link::peer::Peers;

/// Decodes a message as the channel's type, and drops it: a function of the type, and the
/// links its reply handles answer through (nothing boxed: one per unnamed channel).
pub(super) struct Discard {
    decode: fn(&Bytes, &Weak<Peers>),
    peers: Weak<Peers>,
}

/// See [`Discard`].
fn decode_and_drop<T: DeserializeOwned>(msg: &Bytes, peers: &Weak<Peers>) {
    let context = decoding::Context { peers: peers.clone(), node: Arc::new(()) };
    let _ = decoding::with(Some(&context), || rmp_serde::from_slice::<T>(msg));
}

impl std::fmt::Debug for Discard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Discard")
    }
}

impl ChannelRoute {
    /// An endpoint of type `T` is made on this node, whose reply handles answer through
    /// `peers`: a message this node drops undelivered is decoded as a `T` (the first typed
    /// endpoint made here decides). Decoded without a node to register on: a sender of a
    /// channel inside does not decode, nor what follows it in the message.
    pub(crate) fn typed<T: DeserializeOwned + 'static>(&self, peers: Weak<Peers>) {
        let _ = self.discard.get_or_init(|| Discard { decode: decode_and_drop::<T>, peers });
    }

    /// Let go of `msg`, dropped undelivered: the reply handles in it tell their askers.
    pub(super) fn discard(&self, msg: &Bytes) {
        if let Some(discard) = self.discard.get() {
            (discard.decode)(msg, &discard.peers);
        }
    }
}
