//! Parked data: messages that arrived for a receiver of this node before this node applied its
//! registration (the sending node applied it first). They wait here, bounded, until the inbox
//! exists. On the message path between the connection's reader and the inbox.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::peer::lock;
use crate::registry::{EndpointId, NodeId};

/// How many messages for endpoints this node does not know yet may wait for them.
const MAX_PARKED: usize = 1 << 16;

/// Messages waiting for receivers this node does not know yet.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// How many messages are parked in all.
    count: usize,
    by_endpoint: HashMap<EndpointId, Vec<(NodeId, Bytes)>>,
}

impl Parked {
    /// Keep messages from node `from` for receiver `to`, up to the bound; the rest are dropped
    /// with a warning.
    pub(crate) fn park(&self, from: NodeId, to: EndpointId, msgs: impl Iterator<Item = Bytes>) {
        let mut inner = lock(&self.inner);
        let Inner { count, by_endpoint } = &mut *inner;
        let slot = by_endpoint.entry(to).or_default();
        for m in msgs {
            if *count >= MAX_PARKED {
                tracing::warn!(endpoint = to, "dropped data for an unknown endpoint");
                break;
            }
            slot.push((from, m));
            *count += 1;
        }
    }

    /// What waited for receiver `id`, in arrival order.
    pub(crate) fn take(&self, id: EndpointId) -> Vec<(NodeId, Bytes)> {
        let mut inner = lock(&self.inner);
        let msgs = inner.by_endpoint.remove(&id).unwrap_or_default();
        inner.count -= msgs.len();
        msgs
    }
}
