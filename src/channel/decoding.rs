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

/// What a thread is decoding now: read and written twice per message a receiver decodes, so
/// plain values in a [`Cell`] (no destructor, no borrow flag: the three thread-locals this
/// replaced cost about 100 instructions a message).
#[derive(Debug, Clone, Copy)]
struct Now {
    /// Whether a receiver decodes now: outside one, a handle has no node.
    active: bool,
    /// Whether any decode (a receiver's, or one without a context) runs now: one inside it
    /// that replaces [`KEPT`] puts it back after.
    inside: bool,
    /// The node that sent the message decoded now, if another (see [`carrier`]).
    carrier: Option<crate::ids::NodeId>,
}

thread_local! {
    static NOW: Cell<Now> = const { Cell::new(Now { active: false, inside: false, carrier: None }) };
    /// The context of the last receiver that decoded on this thread, kept between decodes so
    /// that a receiver decoding message after message clones nothing per message.
    static KEPT: RefCell<Option<Context>> = const { RefCell::new(None) };
    /// Which context [`KEPT`] holds (see [`Context::key`]), `(0, 0)` for none: read once a
    /// message, written only when another context comes (apart from [`NOW`], which a decode
    /// writes and puts back: the two together were 40 bytes copied four times a message).
    static KEPT_KEY: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

impl Context {
    /// Which context this is: the addresses of what it holds. [`KEPT`] holds a clone of the
    /// context [`KEPT_KEY`] names, so no other context can have those addresses meanwhile.
    fn key(&self) -> (usize, usize) {
        (Weak::as_ptr(&self.peers) as usize, Arc::as_ptr(&self.node) as *const () as usize)
    }
}

/// Restores what the thread decoded before, when dropped (a panicking decode included).
struct Scope {
    before: Now,
    /// The context to put back in [`KEPT`], and its key (only when a decode inside another
    /// replaced it).
    context: Option<(Option<Context>, (usize, usize))>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some((before, key)) = self.context.take() {
            KEPT.with(|k| *k.borrow_mut() = before);
            KEPT_KEY.set(key);
        }
        NOW.set(self.before);
    }
}

/// Run `f`, a receiver's decode of a message, with `context` as the thread's decoding context
/// (and no [`carrier`]: the message is this node's own).
pub(crate) fn with<T>(context: Option<&Context>, f: impl FnOnce() -> T) -> T {
    with_from(context, None, f)
}

/// Run `f`, a receiver's decode of a message node `from` sent (`None`: this node's own, or one
/// it holds as its own), with `context` as the thread's decoding context and `from` as its
/// [`carrier`]; both restored after, a panic included. (Inlined: once per message, on the
/// receiving task.)
#[inline(always)]
pub(crate) fn with_from<T>(
    context: Option<&Context>,
    from: Option<crate::ids::NodeId>,
    f: impl FnOnce() -> T,
) -> T {
    let before = NOW.get();
    let mut scope = Scope { before, context: None };
    let active = context.is_some();
    if let Some(context) = context {
        let key = context.key();
        let kept = KEPT_KEY.get();
        if key != kept {
            let replaced = KEPT.with(|k| k.replace(Some(context.clone())));
            KEPT_KEY.set(key);
            if before.inside {
                // Inside another decode (with a context, or one without inside one with): the
                // context it had comes back after, or what it decodes next would get this one.
                scope.context = Some((replaced, kept));
            }
        }
    }
    NOW.set(Now { active, inside: true, carrier: from });
    let out = f();
    drop(scope);
    out
}

/// The context of the decode running now, if a receiver decodes.
fn current<T>(get: impl FnOnce(&Context) -> T) -> Option<T> {
    if !NOW.get().active {
        return None;
    }
    KEPT.with(|k| k.borrow().as_ref().map(get))
}

/// The node that sent the message a receiver decodes now, if another node did: a reply
/// handle decoded from it claims itself there too (see `oneshot::Sender`'s `Deserialize`).
pub(crate) fn carrier() -> Option<crate::ids::NodeId> {
    let now = NOW.get();
    now.carrier.filter(|_| now.active)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn context(tag: u32) -> Context {
        Context { peers: Weak::new(), node: Arc::new(tag) }
    }

    fn tag() -> Option<u32> {
        node().map(|n| *n.downcast_ref::<u32>().expect("a tag"))
    }

    /// The context and carrier of a decode hold inside it alone, nested decodes included, and
    /// come back after a panicking one.
    #[test]
    fn a_decode_sees_its_own_context_and_carrier_and_nothing_leaks_out() {
        let (a, b) = (context(1), context(2));
        assert_eq!((tag(), carrier()), (None, None), "outside any decode");
        for _ in 0..2 {
            with_from(Some(&a), Some(7), || {
                assert_eq!((tag(), carrier()), (Some(1), Some(7)));
                with_from(Some(&b), None, || assert_eq!((tag(), carrier()), (Some(2), None)));
                assert_eq!((tag(), carrier()), (Some(1), Some(7)), "the outer decode's again");
                with(None, || assert_eq!((tag(), carrier()), (None, None)));
                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    with_from(Some(&b), Some(9), || panic!("a decode that panics"));
                }));
                assert!(caught.is_err());
                assert_eq!((tag(), carrier()), (Some(1), Some(7)), "after the panic");
            });
            assert_eq!((tag(), carrier()), (None, None), "after the decode");
        }
        with(Some(&b), || assert_eq!(tag(), Some(2), "another receiver's context"));
        with(Some(&a), || assert_eq!(tag(), Some(1), "and back"));
        // A decode without a context between two with (a message received from an inbox with
        // no owner, inside a decode, holding one received from an owned inbox).
        with(Some(&a), || {
            with(None, || with(Some(&b), || assert_eq!(tag(), Some(2))));
            assert_eq!(tag(), Some(1), "the outer decode's context after the inner ones");
        });
        with(Some(&a), || assert_eq!(tag(), Some(1), "and in the next decode"));
    }
}
