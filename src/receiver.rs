//! The receiving end of a channel, and its endpoint actor: the last stop of a message.
//!
//! [`Receiver`] takes messages out of its [`inbox`](crate::inbox). Each receiver also has an
//! actix actor, [`EndpointActor`], that owns its registration: when the `Receiver` is dropped,
//! the actor deregisters it through Raft and re-routes every message it still held (and any that
//! arrive before every node has applied the deregistration) to another receiver of the channel,
//! one after the other, waiting for room as a sender would. `Drop` cannot wait; the actor can.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context as TaskContext, Poll};

use actix::prelude::*;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::TryRecvError;
use crate::inbox::{ErasedInbox, Inbox};
use crate::node::Core;
use crate::registry::EndpointId;
use crate::router::{Attempt, ChannelRoute};

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
    pub(crate) fn new(core: &Arc<Core>, inbox: Arc<Inbox<T>>, route: Arc<ChannelRoute>) -> Self {
        let actor = EndpointActor { core: Arc::downgrade(core), id: inbox.id(), route }.start();
        inbox.set_actor(actor);
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

    /// Receive a message if one is ready.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] if nothing is buffered, [`TryRecvError::Closed`] if the channel is
    /// closed and drained.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.inbox.try_recv()
    }

    /// This receiver's endpoint id in the registry.
    pub fn id(&self) -> u64 {
        self.inbox.id()
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
        self.inbox.hand_over();
    }
}

/// The actor behind each receiver: owns its registration and re-routes what it held when the
/// [`Receiver`] is dropped.
#[derive(Debug)]
pub(crate) struct EndpointActor {
    core: Weak<Core>,
    id: EndpointId,
    route: Arc<ChannelRoute>,
}

impl Actor for EndpointActor {
    type Context = Context<Self>;
}

/// The receiver handle was dropped; here is what it held and will still get.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Detached(pub(crate) mpsc::UnboundedReceiver<Bytes>);

impl Handler<Detached> for EndpointActor {
    type Result = ();

    fn handle(&mut self, Detached(mut rx): Detached, ctx: &mut Context<Self>) {
        if let Some(core) = self.core.upgrade() {
            core.deregister(&self.route.name, self.id);
        }
        ctx.add_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    }
}

impl StreamHandler<Bytes> for EndpointActor {
    fn handle(&mut self, msg: Bytes, ctx: &mut Context<Self>) {
        let (route, me) = (self.route.clone(), self.id);
        // One at a time, in order: the next message waits until this one has a receiver.
        ctx.wait(
            async move {
                let mut waiting = route.wait();
                loop {
                    match route.try_send_encoded(&msg, None, Some(me)) {
                        Attempt::Sent => break,
                        Attempt::Closed(()) => {
                            tracing::warn!(channel = %route.name, "every receiver has ended: a re-routed message is dropped");
                            break;
                        }
                        // With no receiver left to take it, a closed channel ends the wait.
                        Attempt::NoReceivers(()) if route.is_closed() => {
                            tracing::warn!(channel = %route.name, "channel closed with no receiver: a re-routed message is dropped");
                            break;
                        }
                        Attempt::Full(()) | Attempt::NoReceivers(()) => waiting.changed().await,
                    }
                }
                drop(waiting);
                route.rerouted();
            }
            .into_actor(self),
        );
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
