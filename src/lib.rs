//! dchan: distributed channels. Go-channel simplicity across a cluster, without a broker.
//!
//! Every process is a [`Node`]. Senders and receivers of a channel, found by name, may live on any
//! node, many of each: [`Sender::send`] reaches exactly one receiver (a work queue),
//! [`Sender::broadcast`] reaches all. Which endpoints exist is kept in a registry replicated with
//! Raft, so every node agrees on it; messages go straight from node to node over TCP, batched.
//!
//! ```
//! # #[actix::main]
//! # async fn main() -> Result<(), dchan::Error> {
//! let a = dchan::Node::builder().listen("127.0.0.1:0").bootstrap().start().await?;
//! let b = dchan::Node::builder().listen("127.0.0.1:0").join([a.addr()]).start().await?;
//!
//! let mut rx = b.receiver::<String>("jobs").await?; // registered cluster-wide when this returns
//! let tx = a.sender::<String>("jobs").await?;
//! tx.send("hello".into()).await.expect("open channel");
//! assert_eq!(rx.recv().await.as_deref(), Some("hello"));
//!
//! b.shutdown().await?;
//! a.shutdown().await
//! # }
//! ```
//!
//! # Map
//!
//! The crate is in layers, each a folder whose `mod.rs` says what it does and what it may
//! import; imports go down, never up: `link` (frames between two nodes), `cluster` (who is a
//! member, which endpoints exist), `channel` (the delivery protocol on one node), `node` (wires
//! them together and runs a node). Beneath them all: the shared vocabulary (`ids`, `rpc`:
//! what nodes ask each other, with Raft's types, `report`: stats and dead letters) and
//! primitives (`error`, `clock`, `tasks`: the node's background work on its own runtime, `sync`).
//!
//! The path of one message, from `send` to `recv`, and the module at each stop:
//!
//! 1. `channel::sender`: [`Sender::send`] asks the channel's router for a receiver with room.
//! 2. `channel::router`: one per channel per node; picks a receiver from the local copy of the
//!    registry (`cluster::registry`). A local receiver gets the value moved into its inbox (no
//!    encoding); a remote one gets it through the peer's outbox, on credit the receiver granted
//!    (`channel::credit`).
//! 3. `link::outbox`: encodes the message straight into an open data frame for that receiver;
//!    consecutive messages share the frame, which is kept until the receiver has taken its
//!    messages.
//! 4. `link::connection`: the peer's writer feeds every queued frame and flushes once; frames
//!    are length-delimited, versioned MessagePack (`link::wire`), numbered and resent after a
//!    reconnect until the peer acknowledges them.
//! 5. On the receiving node, the connection's reader hands the batch up (through
//!    `link::dispatch`: frames to the switchboard, requests to the node) to the `channel::switchboard`,
//!    which puts it in the receiver's `channel::inbox`.
//! 6. `channel::receiver`: [`Receiver::recv`] takes it out and decodes it; only then is the
//!    sending node told it was taken, and the room granted again.
//!
//! Credit and "taken" go back the same way, coalesced per receiver and riding along with other
//! frames when they are small. A close sends fences behind the last data (`channel::close`); a
//! receiver that goes away, or dies with its node, has what it had not taken delivered
//! elsewhere by the sending nodes (`channel::redelivery`).
//!
//! Beside the path: `cluster::raft` replicates the registry, `cluster::membership` carries out
//! joins, leaves, failure detection and the voter count, `cluster::authority` decides which
//! node may ask what; `node` starts and joins a node, and `node::control` makes the registry
//! writes (always through the leader).
//!
//! Programs run under `#[actix::main]` (or inside an `actix_rt::System`): each receiver has an
//! actix actor. Senders may be used from any thread or runtime.
//!
//! # Promises
//!
//! Each `send` is received by exactly one receiver; a `broadcast` by every receiver registered
//! when it was sent; messages from one `Sender` to one receiver arrive in order; at most
//! `capacity` messages are sent to a receiver and not yet taken, over every sending node, and a
//! full cluster makes `send` wait (never drop); a message is lost only if its sending node dies
//! before it is received; `close` ends the channel everywhere once what was sent before it is
//! received. See the README for the whole list and the exact delivery guarantees.

#![warn(missing_docs)]
// No unsafe code in the library; unit tests allow it only where marked (a counting allocator).
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]

mod channel;
mod clock;
mod cluster;
mod error;
mod ids;
mod link;
mod node;
mod report;
mod rpc;
mod sync;
mod tasks;

/// Reply handles: [`Node::oneshot`] makes one; the [`oneshot::Sender`] travels inside a message
/// and answers once, straight to the asking node (see the module's documentation).
pub mod oneshot {
    pub use crate::channel::oneshot::{Receiver, RecvError, Sender};
}
pub use channel::receiver::{AckReceiver, Delivery, Receiver};
pub use channel::request::RequestError;
pub use channel::sender::Sender;
pub use cluster::registry::UNTYPED;
pub use cluster::view::{ChannelInfo, ClusterInfo, EndpointInfo, EndpointKind, Member, Role};
pub use dchan_macros::endpoint;
pub use error::{Cause, Error, SendError, SendTimeoutError, TryRecvError, TrySendError};
pub use link::transport::TlsConfig;
pub use node::builder::NodeBuilder;
pub use node::cluster_watch::ClusterWatch;
pub use node::endpoint::Endpoint;
pub use node::endpoints::{AckReceiverBuilder, ReceiverBuilder};
pub use node::{Node, DEFAULT_CAPACITY};
pub use report::DeadLetter;
pub use report::{ChannelStats, NodeStats};
/// rmpv, whose [`Value`] is dchan's untyped message.
pub use rmpv;
/// An untyped message: any MessagePack value.
///
/// Endpoints of `Value` are untyped: they join a channel whatever its type, and a channel only
/// they have used takes the type of its first typed endpoint ([`UNTYPED`] until then). What a
/// `Sender<Value>` sends reaches a typed receiver as its type when it has that type's shape (maps
/// with field names, as dchan encodes structs); one that does not is kept as a [`DeadLetter`].
/// A `Receiver<Value>` gets whatever is sent, typed or not. The `dchan` command uses these to
/// send and receive JSON.
///
/// ```
/// # #[actix::main]
/// # async fn main() -> Result<(), dchan::Error> {
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Job { id: u64 }
///
/// let node = dchan::Node::builder().bootstrap().start().await?;
/// let mut rx = node.receiver::<Job>("jobs").await?;
/// let tx = node.sender::<dchan::Value>("jobs").await?; // untyped: no type mismatch
/// let job = dchan::Value::Map(vec![("id".into(), 7.into())]);
/// tx.send(job).await.expect("open channel");
/// assert_eq!(rx.recv().await, Some(Job { id: 7 }));
/// node.shutdown().await
/// # }
/// ```
pub use rmpv::Value;
/// rustls, whose configurations [`TlsConfig::new`] takes.
pub use rustls;
/// serde, as dchan uses it; `#[dchan::endpoint]` derives through this path.
pub use serde;

/// For the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
pub mod __fuzz {
    /// Decode `bytes` as a frame and check it (panics on a defect).
    pub fn decode(bytes: &[u8]) {
        crate::link::wire::fuzz_decode(bytes);
    }
}

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
