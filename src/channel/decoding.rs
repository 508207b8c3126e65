//! What a message is decoded with, besides its bytes: the node whose receiver takes it. Handles
//! inside a message need it: a reply handle ([`crate::oneshot::Sender`]) answers through that
//! node's links, and a [`Sender`](crate::Sender) registers on that node to send. A receiver sets
//! this context around its decode ([`with`]); a handle decoded anywhere else has no node.

use std::any::Any;
use std::cell::{Cell, RefCell};
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
    /// The context of the last receiver that decoded on this thread, kept between decodes so
    /// that a receiver decoding message after message clones nothing per message.
    static DECODING: RefCell<Option<Context>> = const { RefCell::new(None) };
    /// Whether a receiver decodes now: outside one, a handle has no node.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    /// The node that sent the message decoded now, if another (see [`carrier`]).
    static CARRIER: Cell<Option<crate::ids::NodeId>> = const { Cell::new(None) };
}

impl Context {
    fn same(&self, other: &Context) -> bool {
        Weak::ptr_eq(&self.peers, &other.peers) && Arc::ptr_eq(&self.node, &other.node)
    }
}

/// Restores whether a receiver decodes, and the context it had, when dropped (a panicking
/// decode included).
struct Scope {
    active: bool,
    /// The context to put back (only when a decode inside another replaced it).
    context: Option<Option<Context>>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(before) = self.context.take() {
            DECODING.with(|d| *d.borrow_mut() = before);
        }
        ACTIVE.with(|a| a.set(self.active));
    }
}

/// Run `f`, a receiver's decode of a message, with `context` as the thread's decoding context.
pub(crate) fn with<T>(context: Option<&Context>, f: impl FnOnce() -> T) -> T {
    let active = ACTIVE.with(|a| a.replace(context.is_some()));
    let mut scope = Scope { active, context: None };
    if let Some(context) = context {
        DECODING.with(|d| {
            let mut d = d.borrow_mut();
            if !d.as_ref().is_some_and(|c| c.same(context)) {
                let before = d.replace(context.clone());
                // Inside another receiver's decode: its context comes back after.
                if active {
                    scope.context = Some(before);
                }
            }
        });
    }
    let out = f();
    drop(scope);
    out
}

/// The context of the decode running now, if a receiver decodes.
fn current<T>(get: impl FnOnce(&Context) -> T) -> Option<T> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    DECODING.with(|d| d.borrow().as_ref().map(get))
}

/// Run `f`, the decode of a message node `from` sent (`None`: this node's own, or one it holds
/// as its own), with `from` as the thread's [`carrier`]; restored after, a panic included.
/// (Inlined: once per message, on the receiving task.)
#[inline(always)]
pub(crate) fn carried_from<T>(from: Option<crate::ids::NodeId>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<crate::ids::NodeId>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CARRIER.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CARRIER.with(|c| c.replace(from)));
    f()
}

/// The node that sent the message a receiver decodes now, if another node did: a reply
/// handle decoded from it claims itself there too (see `oneshot::Sender`'s `Deserialize`).
pub(crate) fn carrier() -> Option<crate::ids::NodeId> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CARRIER.with(Cell::get)
}

/// The links of the node decoding now, if a receiver decodes.
pub(crate) fn peers() -> Option<Weak<Peers>> {
    current(|c| c.peers.clone())
}

/// The node decoding now (a `Weak<dyn Registrar>`: see [`Context::node`]), if a receiver
/// decodes.
pub(crate) fn node() -> Option<Arc<dyn Any + Send + Sync>> {
    current(|c| c.node.clone())
}
