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
use crate::link::envelope;
use crate::link::peer::Peers;

/// Decodes a message as the channel's type, and drops it, given the links its reply handles
/// answer through (the node's: the caller's). A function of the type alone, which the router
/// refers to ([`Of::DISCARD`]): nothing boxed, and 8 bytes in every router, not 24 (one per
/// unnamed channel).
pub(super) type Discard = fn(&Bytes, &Weak<Peers>);

/// The [`Discard`] of type `T`, for ever.
struct Of<T>(std::marker::PhantomData<T>);

impl<T: DeserializeOwned + 'static> Of<T> {
    const DISCARD: &'static Discard = &(decode_and_drop::<T> as Discard);
}

/// See [`Discard`]. After the message's header, if it has one (see
/// [`envelope`]: a traced message delivered again keeps it).
fn decode_and_drop<T: DeserializeOwned>(msg: &Bytes, peers: &Weak<Peers>) {
    let context = decoding::Context { peers: peers.clone(), node: Arc::new(()) };
    let at = envelope::split(msg).map_or(0, |(_, at)| at);
    let _ = decoding::with(Some(&context), || rmp_serde::from_slice::<T>(&msg[at..]));
}

impl ChannelRoute {
    /// An endpoint of type `T` is made on this node: a message this node drops undelivered is
    /// decoded as a `T` (the first typed endpoint made here decides). Decoded without a node to
    /// register on: a sender of a channel inside does not decode, nor what follows it in the
    /// message.
    pub(crate) fn typed<T: DeserializeOwned + 'static>(&self) {
        let _ = self.discard.get_or_init(|| Of::<T>::DISCARD);
    }

    /// Let go of `msg`, dropped undelivered: the reply handles in it tell their askers, through
    /// `peers` (this node's links).
    pub(super) fn discard(&self, msg: &Bytes, peers: &Weak<Peers>) {
        if let Some(discard) = self.discard.get() {
            discard(msg, peers);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::link::envelope::{put_header, TRACEPARENT};

    static DECODED: AtomicUsize = AtomicUsize::new(0);

    /// Counts its decodes (as a reply handle inside would be decoded, and dropped).
    struct Probe;

    impl<'de> serde::Deserialize<'de> for Probe {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            u64::deserialize(d)?;
            DECODED.fetch_add(1, Ordering::SeqCst);
            Ok(Probe)
        }
    }

    /// A traced message dropped undelivered is decoded past its header: the handles in it
    /// tell their askers (before, the decode failed on the header's first byte).
    #[test]
    fn a_dropped_message_is_decoded_past_its_header() {
        let mut traced = Vec::new();
        put_header(
            &mut traced,
            TRACEPARENT,
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        traced.extend_from_slice(&rmp_serde::to_vec_named(&7u64).unwrap());
        let plain = rmp_serde::to_vec_named(&8u64).unwrap();
        for msg in [traced, plain] {
            decode_and_drop::<Probe>(&Bytes::from(msg), &Weak::new());
        }
        assert_eq!(DECODED.load(Ordering::SeqCst), 2);
    }
}
