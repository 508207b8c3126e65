//! The link layer: frames between two nodes, numbered and resent.
//!
//! What travels between two nodes and how: the wire format ([`wire`]), the byte stream and its
//! framing (`transport`: TCP, optionally TLS), the cookie handshake that every connection passes
//! first ([`handshake`]), the connections and the loops that read them ([`connection`]) and
//! write them ([`writer`]), one [`peer`] per other node with its pooled link and request/response
//! matching, and each peer's [`outbox`]: the frames queued for it, data frames built in place,
//! numbered, kept until acknowledged and resent after a reconnect (a message's own bytes, with
//! the header that may carry its trace context, are laid out by [`envelope`]); and the answers this node
//! waits for ([`replies`]), which any node answers straight to it.
//!
//! It knows nothing of channels, the registry or Raft: frames name endpoints and nodes by id
//! ([`crate::ids`]), requests and answers are the crate's shared vocabulary ([`crate::rpc`]),
//! and what a connection reads goes up through [`dispatch`]: its frames to the switchboard, its
//! requests to the node.
//!
//! May import: the crate's root modules (`ids`, `rpc`, `report`, `error`, `clock`, `tasks`,
//! `sync`). Never `channel`, `cluster` or `node`.

pub(crate) mod connection;
pub(crate) mod dispatch;
pub(crate) mod envelope;
pub(crate) mod handshake;
pub(crate) mod outbox;
pub(crate) mod peer;
pub(crate) mod replies;
pub(crate) mod transport;
pub(crate) mod wire;
pub(crate) mod writer;
