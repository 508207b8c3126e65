//! The cluster layer: who is a member, and which endpoints exist.
//!
//! The [`registry`] is the state Raft replicates: nodes, channels and their endpoints, changed
//! only by committed commands. [`raft`] wires openraft to it (storage, the network over the link
//! layer's peers, election timing); [`membership`] carries out joins, leaves, failure detection
//! and the voter count while this node leads; [`authority`] decides which node may ask what of
//! this one; [`view`] is the read-only snapshot users see ([`Node::cluster`](crate::Node::cluster)).
//!
//! May import: the link layer (Raft's RPCs travel on the peers' links) and the crate's root
//! modules. Never `channel` or `node`.

pub(crate) mod authority;
pub(crate) mod membership;
pub(crate) mod raft;
pub(crate) mod registry;
pub(crate) mod view;
