//! The names every layer shares: a node's id and an endpoint's id, as the wire carries them.

/// A node's id in the cluster.
pub(crate) type NodeId = u64;

/// An endpoint's id, unique in the cluster for its lifetime (assigned when its registration applies).
pub(crate) type EndpointId = u64;

/// The bit that marks an unnamed channel's receiver (`Node::channel`): its id is drawn at random
/// by its node, never issued by the registry (whose ids count up from 1), so the two never meet.
pub(crate) const UNNAMED: EndpointId = 1 << 63;

/// Whether `id` is an unnamed channel's receiver (see [`UNNAMED`]).
pub(crate) fn is_unnamed(id: EndpointId) -> bool {
    id & UNNAMED != 0
}
