//! Decoding a message that came encoded (from another node, or a broadcast copy), as the
//! receiving task takes it: its header read (see [`crate::link::envelope`]: the trace context,
//! which opens the `receive` span of [`crate::channel::trace`]), the message decoded in this
//! node's context (the senders and reply handles in it), gated if it may be delivered again.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Inbox, Token};
use crate::channel::decoding;
use crate::channel::oneshot::{self, Gates};
use crate::channel::trace;
use crate::ids::NodeId;
use crate::link::envelope;

/// A message that did not decode: what to keep as its dead letter (the message without its
/// header), and why.
pub(super) struct Undecoded {
    pub(super) message: Bytes,
    pub(super) error: String,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Inbox<T> {
    /// Decode `msg` from node `from` (`None`: this node's own, a broadcast copy or a message
    /// delivered again), taken with `token`; the reply handles in it go to `gates` when it may
    /// be delivered again (acknowledged by hand, and not a broadcast `copy`).
    pub(super) fn decode(
        &self,
        msg: &Bytes,
        from: Option<NodeId>,
        copy: bool,
        token: Option<Token>,
        gates: &mut Gates,
    ) -> Result<(T, trace::Received), Undecoded> {
        let (traceparent, at) = envelope::split(msg)
            .map_err(|e| Undecoded { message: msg.clone(), error: e.to_string() })?;
        let body = &msg[at..];
        let decode = || decoding::carried_from(from, || rmp_serde::from_slice(body));
        let decoded = decoding::with(self.owner.get().map(super::owner::Owner::context), || {
            // (A broadcast copy is never delivered again: not gated.)
            if token.is_some() && !copy {
                let (decoded, g) = oneshot::gated(decode);
                *gates = g;
                decoded
            } else {
                decode()
            }
        });
        match decoded {
            Ok(v) => Ok((v, trace::received(traceparent, self.route.label()))),
            Err(e) => Err(Undecoded { message: msg.slice(at..), error: e.to_string() }),
        }
    }
}
