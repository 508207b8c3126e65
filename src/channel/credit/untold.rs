//! What a receiver's books keep of the messages taken and not yet told to their sending nodes
//! ([`Untold`]), with their sum, read after every take (see
//! [`Grants::quiet`](super::Grants::quiet)).

use crate::ids::NodeId;

/// Messages taken per node and not yet told, with their sum (read after every take: see
/// [`Grants::quiet`](super::Grants::quiet)).
#[derive(Debug, Default)]
pub(super) struct Untold {
    per_node: Vec<(NodeId, u32)>,
    pub(super) total: u32,
}

impl Untold {
    pub(super) const fn new() -> Self {
        Untold { per_node: Vec::new(), total: 0 }
    }

    #[inline]
    pub(super) fn add(&mut self, node: NodeId, n: u32) {
        match self.per_node.iter_mut().find(|(m, _)| *m == node) {
            Some((_, t)) => *t += n,
            None => self.per_node.push((node, n)),
        }
        self.total += n;
    }

    pub(super) fn of(&self, node: NodeId) -> u32 {
        self.per_node.iter().find(|(n, _)| *n == node).map_or(0, |(_, t)| *t)
    }

    pub(super) fn remove(&mut self, node: NodeId) {
        let of = self.of(node);
        self.per_node.retain(|(n, _)| *n != node);
        self.total -= of;
    }

    pub(super) fn drain(&mut self) -> std::vec::Drain<'_, (NodeId, u32)> {
        self.total = 0;
        self.per_node.drain(..)
    }

    pub(super) fn len(&self) -> usize {
        self.per_node.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.per_node.is_empty()
    }
}
