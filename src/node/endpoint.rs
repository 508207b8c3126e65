//! Typed endpoints: what `#[dchan::endpoint]` implements, so a message type knows its channel.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::node::endpoints::ReceiverBuilder;
use crate::{Error, Node, Sender};

/// A message type bound to one channel. Implemented by `#[dchan::endpoint]`.
///
/// # Examples
///
/// ```
/// #[dchan::endpoint(channel = "orders")]
/// #[derive(Debug, PartialEq)]
/// struct Order {
///     id: u64,
/// }
///
/// # #[actix::main]
/// # async fn main() -> Result<(), dchan::Error> {
/// use dchan::Endpoint;
/// let node = dchan::Node::builder().bootstrap().start().await?;
/// let mut rx = Order::receiver(&node).await?;
/// let tx = Order::sender(&node).await?;
/// tx.send(Order { id: 1 }).await.expect("open channel");
/// assert_eq!(rx.recv().await, Some(Order { id: 1 }));
/// node.shutdown().await
/// # }
/// ```
pub trait Endpoint: Serialize + DeserializeOwned + Send + 'static {
    /// The channel this type travels on.
    const CHANNEL: &'static str;

    /// A sender on [`Self::CHANNEL`]; see [`Node::sender`].
    fn sender(node: &Node) -> impl Future<Output = Result<Sender<Self>, Error>> + Send + '_ {
        node.sender::<Self>(Self::CHANNEL)
    }

    /// A receiver on [`Self::CHANNEL`]; see [`Node::receiver`].
    fn receiver(node: &Node) -> ReceiverBuilder<Self> {
        node.receiver::<Self>(Self::CHANNEL)
    }
}
