//! The channel layer: the delivery protocol on one node.
//!
//! A message's path through it: a [`sender`] asks its channel's [`router`] for a receiver with
//! room; a local receiver's [`inbox`] gets the value moved in, a remote one gets it through the
//! peer's outbox (the link layer) on the [`credit`] that receiver granted. On the receiving node
//! the [`switchboard`] takes what the connections hand up and puts it in the receiver's inbox,
//! where the [`receiver`] takes it. Beside the path: close fences ([`close`]), delivering
//! elsewhere what a receiver that went away did not take ([`redelivery`]), messages that do not
//! decode ([`dead_letters`]). The switchboard also brings routers and inboxes up to date when
//! the registry changes.
//!
//! May import: the link layer, the cluster layer's registry (the local copy that says which
//! receivers exist; the protocol reads it and never writes it), and the crate's root modules.
//! Never `node`: what an endpoint asks of its node goes through [`Registrar`](registrar::Registrar),
//! which the node implements.

pub(crate) mod close;
pub(crate) mod counters;
pub(crate) mod credit;
pub(crate) mod dead_letters;
pub(crate) mod decoding;
pub(crate) mod inbox;
pub(crate) mod oneshot;
pub(crate) mod receiver;
pub(crate) mod redelivery;
pub(crate) mod registrar;
pub(crate) mod request;
pub(crate) mod router;
#[cfg(test)]
pub(crate) mod seeded;
pub(crate) mod sender;
pub(crate) mod switchboard;
pub(crate) mod trace;
