//! The credit a receiver has out, per sending node ([`PerNode`]): a list sorted by node, boxed
//! to its length. A receiver grants to few nodes, each added once (and removed once, when it
//! leaves), and looks one up per message: a boxed slice, searched, is 16 bytes in every
//! receiver's books, where a `BTreeMap` is 24, with the same one pointer to follow.

use crate::ids::NodeId;

/// Credit out per node, in node order (see the module's doc): what a `BTreeMap` of it would do.
#[derive(Default)]
pub(super) struct PerNode(Box<[(NodeId, u32)]>);

impl std::fmt::Debug for PerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PerNode {
    #[inline]
    fn find(&self, node: NodeId) -> Result<usize, usize> {
        self.0.binary_search_by_key(&node, |(n, _)| *n)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn get(&self, node: &NodeId) -> Option<&u32> {
        self.find(*node).ok().map(|i| &self.0[i].1)
    }

    pub(super) fn get_mut(&mut self, node: &NodeId) -> Option<&mut u32> {
        self.find(*node).ok().map(|i| &mut self.0[i].1)
    }

    #[inline]
    pub(super) fn contains_key(&self, node: &NodeId) -> bool {
        self.find(*node).is_ok()
    }

    /// Node `node`'s entry, made (with 0) if it has none.
    pub(super) fn entry_or_default(&mut self, node: NodeId) -> &mut u32 {
        let i = match self.find(node) {
            Ok(i) => i,
            Err(i) => {
                let mut list = std::mem::take(&mut self.0).into_vec();
                list.insert(i, (node, 0));
                self.0 = list.into_boxed_slice();
                i
            }
        };
        &mut self.0[i].1
    }

    pub(super) fn remove(&mut self, node: &NodeId) -> Option<u32> {
        let i = self.find(*node).ok()?;
        let mut list = std::mem::take(&mut self.0).into_vec();
        let (_, credit) = list.remove(i);
        self.0 = list.into_boxed_slice();
        Some(credit)
    }

    pub(super) fn clear(&mut self) {
        self.0 = Box::default();
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &NodeId> + '_ {
        self.0.iter().map(|(node, _)| node)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&NodeId, &u32)> + '_ {
        self.0.iter().map(|(node, credit)| (node, credit))
    }
}
