//! The receiving end of a channel, and its endpoint actor: the last stop of a message.
//!
//! [`Receiver`] takes messages out of its [`inbox`](crate::channel::inbox); [`AckReceiver`] hands them out
//! as [`Delivery`]s acknowledged explicitly. Each receiver also has an actix actor,
//! [`EndpointActor`], that owns its registration: when the receiver is dropped, the actor
//! deregisters it through Raft and delivers the messages of this node's senders it still held to
//! another receiver (the other nodes' senders deliver theirs: see [`crate::channel::redelivery`]).

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context as TaskContext, Poll};

use crate::channel::inbox::{Detached, ErasedInbox, Inbox, Taken, Token};
use crate::channel::registrar::Registrar;
use crate::channel::router::ChannelRoute;
use crate::error::TryRecvError;
use crate::ids::EndpointId;
use actix::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Receives messages from a channel.
///
/// Implements [`futures::Stream`], so an actix actor can consume it with `ctx.add_stream(rx)`.
/// Dropping it deregisters it; messages it held go to another receiver.
///
/// # Examples
///
/// ```
/// # #[actix::main]
/// # async fn main() -> Result<(), dchan::Error> {
/// let node = dchan::Node::builder().bootstrap().start().await?;
/// let mut rx = node.receiver::<u64>("numbers").capacity(16).await?;
/// let tx = node.sender::<u64>("numbers").await?;
/// tx.send(7).await.expect("open channel");
/// tx.close().await?;
/// assert_eq!(rx.recv().await, Some(7));
/// assert_eq!(rx.recv().await, None); // closed and drained
/// node.shutdown().await
/// # }
/// ```
pub struct Receiver<T: Serialize + DeserializeOwned + Send + 'static> {
    inbox: Arc<Inbox<T>>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").field("inbox", &self.inbox).finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Receiver<T> {
    pub(crate) fn new(
        node: Weak<dyn Registrar>,
        inbox: Arc<Inbox<T>>,
        route: Arc<ChannelRoute>,
    ) -> Self {
        EndpointActor::start_for(node, &inbox, route);
        Receiver { inbox }
    }

    /// The receiver of an unnamed channel, its inbox set up by its node
    /// ([`Inbox::set_unnamed`]): nothing registered, so no actor.
    pub(crate) fn unnamed(inbox: Arc<Inbox<T>>) -> Self {
        Receiver { inbox }
    }

    /// Receive the next message: `None` once the channel is closed and everything sent before
    /// the close has been received (or once this receiver's node has shut down and handed what it
    /// held to other receivers).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken only when the future completes.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.inbox.poll_recv(cx)).await
    }

    /// Receive up to `limit` messages at once, appended to `buffer` in order; returns how many.
    /// Waits for at least one, as [`recv`](Receiver::recv) does, and takes what is ready then,
    /// up to `limit`. Returns 0 once the channel is closed and everything sent before the close
    /// has been received (when [`recv`](Receiver::recv) would return `None`), and at once if
    /// `limit` is 0. The shape of tokio's `mpsc::Receiver::recv_many`.
    ///
    /// Every message returned is taken, as if by as many calls to `recv`: credit goes back to
    /// the senders for all of them. The receiver's lock, its credit books and the wake-up of
    /// senders waiting for room are paid once per call instead of once per message, so a
    /// stream read in batches costs less per message.
    ///
    /// ```
    /// # #[actix::main]
    /// # async fn main() -> Result<(), dchan::Error> {
    /// let node = dchan::Node::builder().bootstrap().start().await?;
    /// let mut rx = node.receiver::<u32>("batches").await?;
    /// let tx = node.sender::<u32>("batches").await?;
    /// for n in 0..5 {
    ///     tx.send(n).await.expect("open channel");
    /// }
    /// let mut batch = Vec::new();
    /// assert_eq!(rx.recv_many(&mut batch, 3).await, 3);
    /// assert_eq!(rx.recv_many(&mut batch, 100).await, 2);
    /// assert_eq!(batch, [0, 1, 2, 3, 4]);
    /// # node.shutdown().await }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: messages are taken only when the future completes.
    pub async fn recv_many(&mut self, buffer: &mut Vec<T>, limit: usize) -> usize {
        std::future::poll_fn(|cx| self.inbox.poll_recv_many(cx, buffer, limit)).await
    }

    /// Like [`recv`](Receiver::recv), with the message's `receive` span: the child of its
    /// `send` on the sending node when the message came from another node inside a traced span
    /// (W3C trace context, carried in the message's header), [`Span::none`] otherwise. Process
    /// the message in it (`.instrument(span)`, or `span.in_scope`) and the trace shows the
    /// whole path, send → receive → processing, across processes.
    ///
    /// Every message received with a trace context opens a `receive` span, whichever method
    /// takes it; [`recv`](Receiver::recv) closes it at once.
    ///
    /// [`Span::none`]: tracing::Span::none
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`recv`](Receiver::recv).
    #[cfg(feature = "opentelemetry")]
    pub async fn recv_traced(&mut self) -> Option<(T, tracing::Span)> {
        let (value, _, _, span) = std::future::poll_fn(|cx| self.inbox.poll_delivery(cx)).await?;
        Some((value, span.unwrap_or_else(tracing::Span::none)))
    }

    /// Receive a message if one is ready.
    ///
    /// Unlike [`recv`](Receiver::recv), it never yields: a loop that drains the buffer with
    /// `try_recv` keeps this thread (and the node's tasks on it: credit going back to the senders,
    /// more messages coming in) until the buffer is empty. For a stream, prefer `recv().await`,
    /// which lets them run every 128 messages, as tokio's channels do.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if nothing is buffered, [`TryRecvError::Closed`] if the channel is
    /// closed and drained.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.inbox.try_recv().map(|(v, ..)| v)
    }

    /// This receiver's endpoint id in the registry.
    pub fn id(&self) -> u64 {
        self.inbox.id()
    }

    /// How many messages are buffered here, ready to be received without waiting (as tokio's
    /// `Receiver::len`). At most the receiver's capacity.
    ///
    /// ```
    /// # #[actix::main]
    /// # async fn main() -> Result<(), dchan::Error> {
    /// let node = dchan::Node::builder().bootstrap().start().await?;
    /// let mut rx = node.receiver::<u32>("len").await?;
    /// let tx = node.sender::<u32>("len").await?;
    /// assert!(rx.is_empty());
    /// tx.send(1).await?;
    /// tx.send(2).await?;
    /// assert_eq!(rx.len(), 2);
    /// assert_eq!(rx.recv().await, Some(1));
    /// assert_eq!(rx.len(), 1);
    /// # node.shutdown().await }
    /// ```
    pub fn len(&self) -> usize {
        self.inbox.buffered()
    }

    /// Whether nothing is buffered here: the next [`recv`](Receiver::recv) would wait (or say
    /// the channel is closed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> futures::Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<T>> {
        self.inbox.poll_recv(cx)
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.inbox.drop_receiver();
    }
}

/// Receives messages from a channel with explicit acknowledgement: each message comes as a
/// [`Delivery`], counted as taken only when it is [acknowledged](Delivery::ack).
///
/// Made by [`ReceiverBuilder::manual_ack`](crate::ReceiverBuilder::manual_ack). A delivery not
/// acknowledged keeps its place in the receiver's capacity; if the receiver goes away (dropped,
/// its node shut down or declared dead) before it is acknowledged, the message is delivered to
/// another receiver of the channel. That gives at-least-once delivery to the application itself:
/// acknowledge after processing, and make processing idempotent.
///
/// Credit comes back in the order messages were sent by each sending node: a delivery held
/// unacknowledged holds back the room of later ones from the same node until it is acknowledged.
///
/// # Examples
///
/// ```
/// # #[actix::main]
/// # async fn main() -> Result<(), dchan::Error> {
/// let node = dchan::Node::builder().bootstrap().start().await?;
/// let mut rx = node.receiver::<u64>("jobs").capacity(4).manual_ack().await?;
/// let tx = node.sender::<u64>("jobs").await?;
/// tx.send(7).await.expect("open channel");
/// let job = rx.recv().await.expect("a delivery");
/// assert_eq!(*job, 7);
/// let n = job.ack(); // processed: never delivered again
/// assert_eq!(n, 7);
/// node.shutdown().await
/// # }
/// ```
pub struct AckReceiver<T: Serialize + DeserializeOwned + Send + 'static> {
    inbox: Arc<Inbox<T>>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> fmt::Debug for AckReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckReceiver").field("inbox", &self.inbox).finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> AckReceiver<T> {
    pub(crate) fn new(
        node: Weak<dyn Registrar>,
        inbox: Arc<Inbox<T>>,
        route: Arc<ChannelRoute>,
    ) -> Self {
        EndpointActor::start_for(node, &inbox, route);
        AckReceiver { inbox }
    }

    fn delivery(&self, (value, token, gates, span): Taken<T>) -> Delivery<T> {
        let ack = token.map(|t| (self.inbox.clone(), t));
        Delivery { value: Some(value), ack, gates, span }
    }

    /// Receive the next delivery: `None` once the channel is closed and everything sent before
    /// the close has been received.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken only when the future completes.
    pub async fn recv(&mut self) -> Option<Delivery<T>> {
        let next = std::future::poll_fn(|cx| self.inbox.poll_delivery(cx)).await?;
        Some(self.delivery(next))
    }

    /// Receive a delivery if one is ready.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if nothing is buffered, [`TryRecvError::Closed`] if the channel is
    /// closed and drained.
    pub fn try_recv(&mut self) -> Result<Delivery<T>, TryRecvError> {
        let next = self.inbox.try_recv()?;
        Ok(self.delivery(next))
    }

    /// This receiver's endpoint id in the registry.
    pub fn id(&self) -> u64 {
        self.inbox.id()
    }

    /// How many messages are buffered here, not yet handed out (deliveries handed out and not
    /// acknowledged are not counted).
    pub fn len(&self) -> usize {
        self.inbox.buffered()
    }

    /// Whether nothing is buffered here: the next [`recv`](AckReceiver::recv) would wait (or say
    /// the channel is closed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> futures::Stream for AckReceiver<T> {
    type Item = Delivery<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Delivery<T>>> {
        self.inbox.poll_delivery(cx).map(|o| o.map(|next| self.delivery(next)))
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Drop for AckReceiver<T> {
    fn drop(&mut self) {
        self.inbox.drop_receiver();
    }
}

/// A message from an [`AckReceiver`], to be acknowledged once processed.
///
/// Dereferences to the message. Dropping it without [`ack`](Delivery::ack) leaves it
/// unacknowledged: it keeps its place in the receiver's capacity, and goes to another receiver
/// if this one goes away.
pub struct Delivery<T: Serialize + DeserializeOwned + Send + 'static> {
    value: Option<T>,
    ack: Option<(Arc<Inbox<T>>, Token)>,
    /// The reply handles in the message: a handle dropped unanswered tells its asker only once
    /// the delivery is acknowledged (unacknowledged, the request is delivered again).
    gates: crate::channel::oneshot::Gates,
    /// Its `receive` span (see [`Delivery::span`]).
    #[cfg_attr(not(feature = "opentelemetry"), expect(dead_code, reason = "nothing to keep"))]
    span: crate::channel::trace::Received,
}

impl<T: Serialize + DeserializeOwned + Send + 'static + fmt::Debug> fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery").field("value", &self.value).finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Delivery<T> {
    /// Acknowledge the message: it counts as taken, is never delivered again, and its room in
    /// the receiver's capacity is free. Returns the message.
    pub fn ack(mut self) -> T {
        self.gates.open();
        if let Some((inbox, token)) = self.ack.take() {
            inbox.ack(token);
        }
        self.value.take().expect("a delivery holds its value until consumed")
    }

    /// The message's `receive` span: the child of its `send` on the sending node when it came
    /// from another node inside a traced span, [`Span::none`](tracing::Span::none) otherwise
    /// (see [`Receiver::recv_traced`]). It closes when the delivery is dropped or acknowledged.
    #[cfg(feature = "opentelemetry")]
    pub fn span(&self) -> &tracing::Span {
        static NONE: std::sync::OnceLock<tracing::Span> = std::sync::OnceLock::new();
        self.span.as_ref().unwrap_or_else(|| NONE.get_or_init(tracing::Span::none))
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> std::ops::Deref for Delivery<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value.as_ref().expect("a delivery holds its value until consumed")
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> std::ops::DerefMut for Delivery<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("a delivery holds its value until consumed")
    }
}

/// The actor behind each receiver: owns its registration, and when the receiver goes away
/// deregisters it and delivers elsewhere what this node's senders had given it. `Drop` cannot
/// wait; the actor can.
#[derive(Debug)]
pub(crate) struct EndpointActor {
    node: Weak<dyn Registrar>,
    id: EndpointId,
    route: Arc<ChannelRoute>,
}

impl EndpointActor {
    /// Start the actor of `inbox`'s receiver, on `route`'s channel, owned by `node`.
    fn start_for<T: Serialize + DeserializeOwned + Send + 'static>(
        node: Weak<dyn Registrar>,
        inbox: &Inbox<T>,
        route: Arc<ChannelRoute>,
    ) {
        let peers = node.upgrade().map_or_else(Weak::new, |n| Arc::downgrade(n.replies().1));
        let context = crate::channel::decoding::Context { peers, node: Arc::new(node.clone()) };
        let actor = EndpointActor { node, id: inbox.id(), route }.start();
        inbox.set_actor(actor.recipient(), context);
    }
}

impl Actor for EndpointActor {
    type Context = Context<Self>;
}

impl Handler<Detached> for EndpointActor {
    type Result = ();

    fn handle(&mut self, Detached(mine): Detached, ctx: &mut Context<Self>) {
        if let Some(node) = self.node.upgrade() {
            node.clone().deregister(self.route.name(), self.id);
            node.redeliver(&self.route, mine);
        }
        ctx.stop();
    }
}
