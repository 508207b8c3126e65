//! What a connection hands up, as the link sees it: the message path's frames ([`Frames`]: the
//! channel layer's switchboard takes them) and requests ([`Dispatch`]: the node answers them).
//! The connections' readers ([`crate::link::connection`]) call through these and know nothing
//! else of the layers above.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::ids::{EndpointId, NodeId};
use crate::link::wire::DataMsgs;
use crate::rpc::{Request, Response};

/// The messages of one data frame as decoded (`msgs`), each a part of its bytes (`frame`).
pub(crate) type Msgs<'a> = (&'a Bytes, &'a DataMsgs<'a>);

/// The frames of the message path, from node `from`, in the order its link delivers them.
pub(crate) trait Frames: Send + Sync {
    /// Messages from node `from` for receiver `to`, in the order sent (broadcast copies, if
    /// `copies`).
    fn data(&self, from: NodeId, to: EndpointId, copies: bool, msgs: Msgs<'_>);
    /// Receiver `to` on node `from` took `taken` of this node's messages and grants `grant`.
    fn credit(&self, from: NodeId, to: EndpointId, taken: u32, grant: u32);
    /// Node `from` wants credit with receiver `to` of this node.
    fn want(&self, from: NodeId, to: EndpointId);
    /// Receiver `to` on node `from` asks for its unused credit back.
    fn reclaim(&self, from: NodeId, to: EndpointId);
    /// Node `from` gives back `n` unused credits with receiver `to` of this node (`last`: it
    /// has handed over, and wants nothing more).
    fn returned(&self, from: NodeId, to: EndpointId, n: u32, last: bool);
    /// Node `from` has handed over and stops: it sends nothing more (see
    /// [`crate::link::wire::Frame::Bye`]).
    fn bye(&self, from: NodeId);
    /// Node `from` sends nothing more on closed `channel` (the one made by endpoint `created`).
    fn fence(&self, from: NodeId, channel: &str, created: EndpointId);
    /// Receiver `to` on node `from` is gone: what it did not take goes elsewhere.
    fn released(&self, from: NodeId, to: EndpointId);
    /// Unnamed channel `to` is closed (see [`crate::link::wire::Frame::Shut`]).
    fn shut(&self, from: NodeId, to: EndpointId, ask: bool);
    /// Node `from` answered this node's [`Request::Rejoined`] (this node starts over): called as
    /// the answer is read, before the frames behind it.
    fn rejoin_answered(&self, from: NodeId);
}

/// Where what a connection reads goes: the layer above. The node implements it (and the
/// delivery protocol's simulation, with the same [`Frames`]).
pub(crate) trait Dispatch: Send + Sync + 'static {
    /// Where the message path's frames go.
    fn frames(&self) -> &dyn Frames;
    /// Answer a request (a Raft RPC, a registry write, a membership change) from node `from`;
    /// `None`: refused without an answer (the asker times out).
    fn request(self: Arc<Self>, from: NodeId, req: Request)
        -> BoxFuture<'static, Option<Response>>;
}
