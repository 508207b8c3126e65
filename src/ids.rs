//! The names every layer shares: a node's id and an endpoint's id, as the wire carries them.

/// A node's id in the cluster.
pub(crate) type NodeId = u64;

/// An endpoint's id, unique in the cluster for its lifetime (assigned when its registration applies).
pub(crate) type EndpointId = u64;
