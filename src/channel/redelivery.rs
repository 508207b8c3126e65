//! Redelivery: messages a receiver did not take (it was dropped, or its node left or died) go
//! to another receiver of the channel, or wait for one. On the sending node, between what it
//! kept of the messages it sent ([`crate::link::outbox`]) and the router, which places them again as
//! a sender would, waiting for room, oldest first. While any are on their way the channel's
//! close fence waits (see [`ChannelRoute::rerouting_done`]), so a redelivered message never
//! lands behind it.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::channel::router::{Attempt, ChannelRoute};
use crate::ids::EndpointId;
use crate::link::peer::Peers;
use crate::tasks::Tasks;

/// Deliver `msgs` (encoded, oldest first) to the other receivers of `route`'s channel, in the
/// background, until the node stops. The caller has counted them on the route
/// ([`ChannelRoute::rerouting`]); each is uncounted once placed (or given up on). `peers`:
/// this node's links, which the reply handles in a message dropped undelivered answer through.
pub(crate) fn redeliver(
    route: Arc<ChannelRoute>,
    msgs: Vec<Bytes>,
    peers: Weak<Peers>,
    tasks: &Tasks,
    cancel: CancellationToken,
) {
    redeliver_to(route, None, msgs, peers, tasks, cancel);
}

/// As [`redeliver`], to receiver `only` alone if given (broadcast copies sent again by a node
/// that starts over: a copy whose receiver is gone meanwhile is dropped, as it would have
/// been).
pub(crate) fn redeliver_to(
    route: Arc<ChannelRoute>,
    only: Option<EndpointId>,
    msgs: Vec<Bytes>,
    peers: Weak<Peers>,
    tasks: &Tasks,
    cancel: CancellationToken,
) {
    if msgs.is_empty() {
        return;
    }
    tracing::debug!(channel = %route.label(), messages = msgs.len(), "delivering elsewhere");
    let span = tracing::info_span!("redeliver", channel = %route.label());
    tasks.spawn(
        async move {
            let mut left = msgs.len();
            for msg in msgs {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    () = place(&route, &msg, only, &peers) => {}
                }
                route.rerouted();
                left -= 1;
            }
            if left > 0 {
                tracing::warn!(messages = left, "node stopped: messages not delivered elsewhere");
                for _ in 0..left {
                    route.rerouted();
                }
            }
        }
        .instrument(span),
    );
}

/// Place one message with a receiver that has room, waiting as long as it takes; give up only
/// when the channel is closed and no receiver is left to take it.
async fn place(route: &ChannelRoute, msg: &Bytes, only: Option<EndpointId>, peers: &Weak<Peers>) {
    let mut waiting = route.wait_for_room();
    loop {
        match route.try_send_encoded(msg, only, true) {
            Attempt::Sent => return,
            // A copy for one receiver, which is gone.
            Attempt::NoReceivers(()) if only.is_some() => return,
            Attempt::Closed(()) => {
                tracing::warn!("every receiver has ended: a message is dropped");
                route.dropped_one(msg, peers);
                return;
            }
            Attempt::NoReceivers(()) if route.is_closed() => {
                tracing::warn!("channel closed with no receiver: a message is dropped");
                route.dropped_one(msg, peers);
                return;
            }
            Attempt::Full(()) | Attempt::NoReceivers(()) => waiting.changed().await,
        }
    }
}
