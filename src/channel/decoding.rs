//! What a message is decoded with, besides its bytes: the node whose receiver takes it. Handles
//! inside a message need it: a reply handle ([`crate::oneshot::Sender`]) answers through that
//! node's links, and a [`Sender`](crate::Sender) registers on that node to send. A receiver sets
//! this context around its decode ([`with`]); a handle decoded anywhere else has no node.

use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, Weak};

use crate::link::peer::Peers;

/// The node a receiver's messages are decoded on.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The links reply handles answer through.
    pub(crate) peers: Weak<Peers>,
    /// The node senders register on: a `Weak<dyn Registrar>`, type-erased (this module is
    /// below the registrar, which the inbox's router depends on).
    pub(crate) node: Arc<dyn Any + Send + Sync>,
}

thread_local! {
    static DECODING: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Restores the thread's decoding context when dropped (a panicking decode included).
struct Scope(Option<Context>);

impl Drop for Scope {
    fn drop(&mut self) {
        let before = self.0.take();
        DECODING.with(|d| *d.borrow_mut() = before);
    }
}

/// Run `f`, a receiver's decode of a message, with `context` as the thread's decoding context.
pub(crate) fn with<T>(context: Option<&Context>, f: impl FnOnce() -> T) -> T {
    let _restore = Scope(DECODING.with(|d| d.replace(context.cloned())));
    f()
}

/// The links of the node decoding now, if a receiver decodes.
pub(crate) fn peers() -> Option<Weak<Peers>> {
    DECODING.with(|d| d.borrow().as_ref().map(|c| c.peers.clone()))
}

/// The node decoding now (a `Weak<dyn Registrar>`: see [`Context::node`]), if a receiver
/// decodes.
pub(crate) fn node() -> Option<Arc<dyn Any + Send + Sync>> {
    DECODING.with(|d| d.borrow().as_ref().map(|c| c.node.clone()))
}
