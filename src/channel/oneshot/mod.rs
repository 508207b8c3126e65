//! Reply handles: one answer, from whichever node ends up holding the handle, straight to the
//! node that asked (issue 19, promise 11). [`Node::oneshot`](crate::Node::oneshot) makes a
//! pair; the [`Sender`] goes inside a message (it is `Serialize + Deserialize`), the
//! [`Receiver`] is a future of the answer. No registry write and no Raft commit per handle: the
//! asking node keeps an entry in a table of its own ([`crate::link::replies`]) for as long as
//! its `Receiver` waits, and the answer travels as one reliable frame.
//!
//! ```no_run
//! # async fn example(node: dchan::Node) -> Result<(), Box<dyn std::error::Error>> {
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Ask {
//!     item: u32,
//!     reply: dchan::oneshot::Sender<String>,
//! }
//! let tx = node.sender::<Ask>("questions").await?;
//! let (reply, answer) = node.oneshot::<String>();
//! tx.send(Ask { item: 7, reply }).await?;
//! // On the node whose receiver takes it: `ask.reply.send(format!("item {}", ask.item))`.
//! let text: String = answer.await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::oneshot;

mod gate;

pub(crate) use gate::{encoded, gated, revive, tentative, Gates};

use crate::ids::NodeId;
use crate::link::peer::Peers;
use crate::link::replies::Answer;

/// Why a [`Receiver`] got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The handle was dropped without an answer (by whichever node held it).
    #[error("the reply handle was dropped without an answer")]
    Dropped,
    /// The node holding the handle (this node id) left the cluster (it died, or was removed)
    /// without answering, and no other node took the request over (a redelivery) in time.
    #[error("node {0}, which held the reply handle, left the cluster without answering")]
    Lost(NodeId),
    /// The asking node stopped.
    #[error("the asking node stopped")]
    Stopped,
    /// The asking node was removed from the cluster while alive (paused or cut off past the
    /// failure timeout) and started over: an answer on its way to it may have been lost.
    #[error("the asking node was removed from the cluster while alive: the answer may be lost")]
    Removed,
    /// The answer did not decode as the handle's type (a handle forged or sent back with another
    /// type).
    #[error("the answer does not decode: {0}")]
    Decode(String),
}

/// The answering end of a reply handle: put it in a message; whoever holds it answers once with
/// [`Sender::send`]. Dropped unanswered, it tells the asker ([`RecvError::Dropped`]).
pub struct Sender<R> {
    /// The asking node, and its handle's id and token there.
    node: NodeId,
    id: u64,
    token: u64,
    /// How many messages this handle crossed from the asking node.
    hop: u32,
    /// The links this handle answers through: the node that made it, or the node that decoded
    /// it from a message (`None`: decoded outside a receiver, and cannot answer).
    via: Option<Weak<Peers>>,
    /// Answered, or copied into an encoded message (the copy answers; this one says nothing
    /// when dropped).
    done: AtomicBool,
    /// Set when the handle came in a delivery to acknowledge (see [`gated`]): until the
    /// delivery is acknowledged, dropping the handle says nothing (the request is delivered
    /// again if the delivery never is).
    gate: std::sync::Mutex<Option<Arc<gate::Gate>>>,
    _answer: PhantomData<fn(R)>,
}

impl<R> fmt::Debug for Sender<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Sender").field("node", &self.node).field("id", &self.id).finish()
    }
}

impl<R: Serialize> Sender<R> {
    /// Answer: the value goes to the asking node at once (not async, like tokio's
    /// `oneshot::Sender::send`). Given back if it cannot go: the asking node is out of reach
    /// (gone from the cluster), this handle was decoded outside a receiver, or the value does
    /// not encode.
    ///
    /// # Errors
    ///
    /// The value, when it cannot go.
    pub fn send(self, value: R) -> Result<(), R> {
        let Some(peers) = self.via.as_ref().and_then(Weak::upgrade) else {
            tracing::warn!(node = self.node, "a reply handle with no node to answer through");
            return Err(value);
        };
        let body = match rmp_serde::to_vec_named(&value) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "an answer that does not encode");
                return Err(value);
            }
        };
        self.done.store(true, Ordering::Release);
        if peers.answer(self.node, self.id, self.token, Some(body.into())) {
            Ok(())
        } else {
            tracing::warn!(node = self.node, "the asking node is out of reach: no answer");
            Err(value)
        }
    }
}

impl<R> Sender<R> {
    /// A new handle of node `node`'s entry `id`/`token`, answering through `via`.
    pub(crate) fn new(node: NodeId, id: u64, token: u64, via: Weak<Peers>) -> Self {
        Sender {
            node,
            id,
            token,
            hop: 0,
            via: Some(via),
            done: AtomicBool::new(false),
            gate: std::sync::Mutex::new(None),
            _answer: PhantomData,
        }
    }
}

impl<R> Drop for Sender<R> {
    fn drop(&mut self) {
        if self.done.load(Ordering::Acquire) {
            return;
        }
        let Some(via) = self.via.as_ref() else { return };
        let gate = crate::sync::lock(&self.gate).clone();
        if gate.is_some_and(|g| !g.dropped((via.clone(), self.node, self.id, self.token))) {
            // In a delivery not acknowledged yet: noted, and told if it is (unacknowledged, it
            // is delivered again, and answered then).
            return;
        }
        if let Some(peers) = via.upgrade() {
            peers.answer(self.node, self.id, self.token, None);
        }
    }
}

impl<R> Serialize for Sender<R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match gate::encoding() {
            // The encoded copy is the handle from now on.
            (gate::Encoding::Moves, _) => self.done.store(true, Ordering::Release),
            // Kept by a receiver until its delivery is acknowledged: this handle stays the one
            // that answers, behind the delivery's gate; the copy answers only if the delivery
            // goes to another receiver.
            (gate::Encoding::Gated, new) => *crate::sync::lock(&self.gate) = new,
            (gate::Encoding::Tentative, _) => {}
            (gate::Encoding::Revives, _) => self.done.store(false, Ordering::Release),
        }
        (self.node, self.id, self.token, self.hop.saturating_add(1)).serialize(s)
    }
}

impl<'de, R> Deserialize<'de> for Sender<R> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (node, id, token, hop) = <(NodeId, u64, u64, u32)>::deserialize(d)?;
        let via = crate::channel::decoding::peers();
        if let Some(peers) = via.as_ref().and_then(Weak::upgrade) {
            // This node holds the handle now: if it leaves without answering, the asker is told.
            peers.held(node, id, token, hop, crate::channel::decoding::carrier());
        }
        let gate = std::sync::Mutex::new(gate::new_gate());
        Ok(Sender {
            node,
            id,
            token,
            hop,
            via,
            done: AtomicBool::new(false),
            gate,
            _answer: PhantomData,
        })
    }
}

/// The asking end of a reply handle: a future of the answer.
pub struct Receiver<R> {
    id: u64,
    replies: Weak<Peers>,
    rx: oneshot::Receiver<Answer>,
    _answer: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Receiver<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Receiver").field("id", &self.id).finish()
    }
}

impl<R> Receiver<R> {
    pub(crate) fn new(id: u64, peers: &Arc<Peers>, rx: oneshot::Receiver<Answer>) -> Self {
        Receiver { id, replies: Arc::downgrade(peers), rx, _answer: PhantomData }
    }
}

impl<R: DeserializeOwned> Future for Receiver<R> {
    type Output = Result<R, RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|answer| match answer {
            Ok(Answer::Value(body)) => {
                rmp_serde::from_slice(&body).map_err(|e| RecvError::Decode(e.to_string()))
            }
            Ok(Answer::Dropped) => Err(RecvError::Dropped),
            Ok(Answer::Lost(node)) => Err(RecvError::Lost(node)),
            Ok(Answer::Removed) => Err(RecvError::Removed),
            Err(_) => Err(RecvError::Stopped),
        })
    }
}

impl<R> Drop for Receiver<R> {
    fn drop(&mut self) {
        if let Some(peers) = self.replies.upgrade() {
            peers.replies.cancel(self.id);
        }
    }
}

/// A new reply handle of node `me`, answered through `peers`.
pub(crate) fn pair<R>(me: NodeId, peers: &Arc<Peers>) -> (Sender<R>, Receiver<R>) {
    let (id, token, rx) = peers.replies.open();
    (Sender::new(me, id, token, Arc::downgrade(peers)), Receiver::new(id, peers, rx))
}

/// A reply handle of node `me` that takes up to `max` answers (one from each copy of a
/// broadcast request), and where they come.
pub(crate) fn many<R>(me: NodeId, peers: &Arc<Peers>, max: usize) -> (Sender<R>, Answers<R>) {
    let (id, token, rx) = peers.replies.open_many(max);
    let answers = Answers { id, replies: Arc::downgrade(peers), rx, _answer: PhantomData };
    (Sender::new(me, id, token, Arc::downgrade(peers)), answers)
}

/// The answers to a handle made by [`many`], as they come.
pub(crate) struct Answers<R> {
    id: u64,
    replies: Weak<Peers>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Answer>,
    _answer: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Answers<R> {
    /// The next answer: `Some(Ok)` a value, `Some(Err)` a copy dropped unanswered or an
    /// answer that does not decode; `None` when no more can come.
    pub(crate) async fn next(&mut self) -> Option<Result<R, RecvError>> {
        Some(match self.rx.recv().await? {
            Answer::Value(body) => {
                rmp_serde::from_slice(&body).map_err(|e| RecvError::Decode(e.to_string()))
            }
            Answer::Dropped => Err(RecvError::Dropped),
            Answer::Lost(node) => Err(RecvError::Lost(node)),
            Answer::Removed => Err(RecvError::Removed),
        })
    }
}

impl<R> Drop for Answers<R> {
    fn drop(&mut self) {
        if let Some(peers) = self.replies.upgrade() {
            peers.replies.cancel(self.id);
        }
    }
}
