//! Making endpoints: [`Node::sender`] and [`Node::receiver`] register through Raft and return
//! once the registration is committed; a receiver's builder sets its capacity and whether it
//! hands out deliveries to acknowledge. [`Node::oneshot`] makes a reply handle, and
//! [`Node::channel`] an unnamed channel, which commit nothing.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Core, Node, DEFAULT_CAPACITY};
use crate::channel::inbox::owner::{OnDrop, Unnamed};
use crate::channel::inbox::Inbox;
use crate::channel::receiver::Receiver;
use crate::channel::router::ChannelRoute;
use crate::channel::sender::Sender;
use crate::rpc::EndpointKind;
use crate::Error;

impl Node {
    /// A reply handle: put the [`oneshot::Sender`](crate::oneshot::Sender) in a message, and
    /// await the [`oneshot::Receiver`](crate::oneshot::Receiver) for the answer that whichever
    /// node holds the handle sends straight to this one. No registry write: nothing is
    /// committed, and nothing crosses the network until the answer.
    ///
    /// ```no_run
    /// # async fn example(node: dchan::Node) {
    /// let (reply, answer) = node.oneshot::<u32>();
    /// assert!(reply.send(7).is_ok());
    /// assert_eq!(answer.await, Ok(7));
    /// # }
    /// ```
    #[must_use]
    pub fn oneshot<R>(&self) -> (crate::oneshot::Sender<R>, crate::oneshot::Receiver<R>) {
        crate::channel::oneshot::pair(self.core.id, &self.core.peers)
    }

    /// An unnamed channel: a [`Sender`] and its one [`Receiver`], which this node holds, with
    /// room for `capacity` messages sent and not yet received (counted over every sending node
    /// together, as a named channel's). Nothing is registered: it costs no Raft commit and no
    /// round trip. Put the `Sender` in a message (it is `Serialize + Deserialize`) and whichever
    /// node decodes it sends straight to the receiver here, with the same promises as on a named
    /// channel: order per sender, capacity, backpressure, close (Go's `chan chan T`).
    ///
    /// Once the receiver is dropped, or this node stops or is removed from the cluster, sends
    /// anywhere fail with `Closed`, and what was sent and not received is dropped (as with a
    /// tokio channel whose receiver is gone). The channel has no name: [`Sender::channel`] shows
    /// one, for logs, that no named channel can have.
    ///
    /// ```
    /// # #[actix::main]
    /// # async fn main() -> Result<(), dchan::Error> {
    /// let node = dchan::Node::builder().bootstrap().start().await?;
    /// let (tx, mut rx) = node.channel::<u32>(8);
    /// tx.send(1).await.expect("open channel");
    /// tx.close().await?;
    /// assert_eq!(rx.recv().await, Some(1));
    /// assert_eq!(rx.recv().await, None);
    /// node.shutdown().await
    /// # }
    /// ```
    #[must_use]
    pub fn channel<T>(&self, capacity: usize) -> (Sender<T>, Receiver<T>)
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let core = &self.core;
        let capacity = capacity.clamp(1, u32::MAX as usize);
        let id = crate::ids::UNNAMED | crate::clock::random_u64();
        let route =
            Arc::new(ChannelRoute::new_unnamed(core.id, id, core.switch.unnamed_counters()));
        route.owner_admitted.store(core.switch.admission(), std::sync::atomic::Ordering::Relaxed);
        let links: std::sync::Weak<crate::link::peer::Peers> = Arc::downgrade(&core.peers);
        let inbox = Arc::new(Inbox::<T>::new(id, route.clone(), capacity, false, links));
        inbox.set_unnamed(core.unnamed.get_or_init(|| unnamed_parts(core)).clone());
        core.switch.add_unnamed(inbox.clone());
        (Sender::unnamed(core.clone(), route), Receiver::unnamed(inbox))
    }

    /// A sender on channel `name`, registered cluster-wide when this returns.
    ///
    /// # Errors
    ///
    /// [`Error::TypeMismatch`] if the channel carries another type, [`Error::ChannelClosed`] if it
    /// was closed, [`Error::NoQuorum`] if Raft could not commit the registration in time (this
    /// node is cut off from the majority, or too many voters are down).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the registration is carried out on the node's runtime, and one that commits
    /// after the future was dropped is removed again, so nothing stays registered without a handle.
    pub async fn sender<T>(&self, name: &str) -> Result<Sender<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let id = self.core.register::<T>(name, EndpointKind::Sender, 0).await?.claim();
        Ok(Sender::new(self.core.clone(), self.core.switch.route(name), id))
    }

    /// A receiver on channel `name`; await it (optionally after [`ReceiverBuilder::capacity`]).
    /// It is registered cluster-wide when the future completes. Errors and cancel safety are as
    /// for [`sender`](Node::sender).
    pub fn receiver<T>(&self, name: &str) -> ReceiverBuilder<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        ReceiverBuilder {
            node: self.clone(),
            name: name.to_owned(),
            capacity: DEFAULT_CAPACITY,
            _t: std::marker::PhantomData,
        }
    }
}

/// Configures a [`Receiver`]; await it to register the receiver.
#[must_use = "a receiver is registered only when the builder is awaited"]
pub struct ReceiverBuilder<T> {
    node: Node,
    name: String,
    capacity: usize,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ReceiverBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverBuilder")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<T> ReceiverBuilder<T> {
    /// How many messages may be sent to the receiver and not yet taken by it, counted over every
    /// sending node together (default [`DEFAULT_CAPACITY`], 4096): the (n+1)-th waits in its
    /// sender.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.clamp(1, u32::MAX as usize);
        self
    }

    /// Hand out each message as a [`Delivery`](crate::Delivery) to acknowledge explicitly after
    /// processing (see [`AckReceiver`](crate::AckReceiver)).
    pub fn manual_ack(self) -> AckReceiverBuilder<T> {
        AckReceiverBuilder(self)
    }

    /// Register the receiver; its inbox is added to the node.
    async fn register(self, manual_ack: bool) -> Result<(Arc<Inbox<T>>, Arc<ChannelRoute>), Error>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let core = &self.node.core;
        let id = core
            .register::<T>(&self.name, EndpointKind::Receiver, self.capacity as u32)
            .await?
            .claim();
        let route = core.switch.route(&self.name);
        let links: std::sync::Weak<crate::link::peer::Peers> = Arc::downgrade(&core.peers);
        let inbox = Arc::new(Inbox::<T>::new(id, route.clone(), self.capacity, manual_ack, links));
        core.switch.add_inbox(inbox.clone());
        Ok((inbox, route))
    }
}

/// Configures an [`AckReceiver`](crate::AckReceiver); await it to register the receiver.
#[must_use = "a receiver is registered only when the builder is awaited"]
#[derive(Debug)]
pub struct AckReceiverBuilder<T>(ReceiverBuilder<T>);

impl<T> IntoFuture for AckReceiverBuilder<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    type Output = Result<crate::AckReceiver<T>, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let core = self.0.node.core.clone();
            let (inbox, route) = self.0.register(true).await?;
            Ok(crate::AckReceiver::new(registrar(&core), inbox, route))
        })
    }
}

impl<T> IntoFuture for ReceiverBuilder<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    type Output = Result<Receiver<T>, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let core = self.node.core.clone();
            let (inbox, route) = self.register(false).await?;
            Ok(Receiver::new(registrar(&core), inbox, route))
        })
    }
}

/// What every unnamed channel's receiver on a node shares: the node its messages decode on,
/// and what tells the node when one is dropped (one each cost 40 bytes a channel).
pub(crate) type UnnamedParts = Arc<Unnamed>;

fn unnamed_parts(core: &Arc<Core>) -> UnnamedParts {
    let switch = Arc::downgrade(core);
    let on_drop: OnDrop = Arc::new(move |id, mine| {
        if let Some(core) = switch.upgrade() {
            core.switch.unnamed_dropped(id, mine);
        }
    });
    let context = crate::channel::decoding::Context {
        peers: Arc::downgrade(&core.peers),
        node: Arc::new(registrar(core)),
    };
    Arc::new(Unnamed { context, on_drop })
}

/// `core` as its endpoints hold it (they must not keep the node alive).
pub(super) fn registrar(
    core: &Arc<Core>,
) -> std::sync::Weak<dyn crate::channel::registrar::Registrar> {
    let weak: std::sync::Weak<Core> = Arc::downgrade(core);
    weak
}
