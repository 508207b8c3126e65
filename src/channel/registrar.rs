//! What an endpoint asks of the node that holds it, beside the message path: to leave the
//! registry when its handle goes, to close its channel, and to deliver elsewhere what a dropped
//! receiver held. The node implements [`Registrar`]; senders and receivers hold it as a trait
//! object, so the channel layer calls up without naming the node (as connections hand frames up
//! through [`Dispatch`](crate::link::dispatch::Dispatch)).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::channel::router::ChannelRoute;
use crate::error::Error;
use crate::ids::EndpointId;

/// The node, as its endpoints see it.
pub(crate) trait Registrar: Send + Sync + std::fmt::Debug + 'static {
    /// Endpoint `id` of `channel` is gone (its handle was dropped): remove it from the registry,
    /// in the background (`Drop` cannot wait).
    fn deregister(self: Arc<Self>, channel: &str, id: EndpointId);

    /// Close `channel` cluster-wide; resolves once the close is committed.
    fn close(&self, channel: &str) -> BoxFuture<'_, Result<(), Error>>;

    /// Deliver `msgs`, held by a dropped receiver of `route`'s channel, to other receivers.
    fn redeliver(&self, route: &Arc<ChannelRoute>, msgs: Vec<Bytes>);

    /// This node's id, and the links its reply handles are answered through (for
    /// [`Sender::request`](crate::Sender::request)).
    fn replies(&self) -> (crate::ids::NodeId, &Arc<crate::link::peer::Peers>);

    /// Register a sender of `channel` carrying `type_name` (one decoded from a message);
    /// resolves once committed, with its id.
    fn register_sender(
        self: Arc<Self>,
        channel: String,
        type_name: String,
    ) -> BoxFuture<'static, Result<EndpointId, Error>>;

    /// The router of `channel` on this node.
    fn route(&self, channel: &str) -> Arc<ChannelRoute>;

    /// Run `task` in the background, owned by the node (stopped with it).
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// The router of the unnamed channel whose receiver `id` node `owner` holds, for a sender
    /// of it decoded here (counted until [`Registrar::unnamed_gone`]).
    fn unnamed_route(
        &self,
        owner: crate::ids::NodeId,
        id: EndpointId,
        admitted: u64,
    ) -> Arc<ChannelRoute>;

    /// A sender on `route`, an unnamed channel's router, is gone.
    fn unnamed_gone(&self, route: &Arc<ChannelRoute>);

    /// Close unnamed channel `route`.
    fn shut(&self, route: &Arc<ChannelRoute>);

    /// Which membership change let this node in, as its registry shows (0: not yet).
    fn admission(&self) -> u64;

    /// A send on `route` waited `waited` for room or a receiver (for metrics).
    fn send_blocked(&self, route: &ChannelRoute, waited: std::time::Duration) {
        let _ = (route, waited);
    }
}
