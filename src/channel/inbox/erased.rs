//! The inbox with its message type erased ([`ErasedInbox`]): what the router and the switchboard
//! call, for data and credit frames from other nodes, fences, closes and hand-overs.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ErasedInbox, Inbox, Item, Refused};
use crate::channel::router::ChannelRoute;
use crate::ids::{EndpointId, NodeId};

impl<T: Serialize + DeserializeOwned + Send + 'static> ErasedInbox for Inbox<T> {
    fn id(&self) -> EndpointId {
        self.id
    }

    fn channel(&self) -> &Arc<ChannelRoute> {
        &self.route
    }

    fn push_remote(&self, from: NodeId, msgs: &mut dyn Iterator<Item = Bytes>) {
        let mut st = self.lock();
        if st.detached {
            drop(st);
            // Its sender keeps it: tell it (again) to deliver it elsewhere.
            self.release_to([from]);
            return;
        }
        let mut refused = 0usize;
        for msg in msgs {
            if st.grants.arrived(from) {
                st.buf.push_back(Item::Encoded { from: Some(from), msg });
            } else {
                refused += 1;
            }
        }
        st.wake();
        drop(st);
        if refused > 0 {
            tracing::warn!(
                node = from,
                receiver = self.id,
                messages = refused,
                "messages sent without credit dropped"
            );
        }
    }

    fn try_push_encoded(&self, msg: Bytes, rerouted: bool) -> Result<(), Refused<Bytes>> {
        let mut st = self.lock();
        if st.closed() || (st.closing.is_some() && !rerouted) {
            return Err(Refused::Closed(msg));
        }
        if let Err(out) = Self::local_room(&mut st) {
            drop(st);
            self.send(out);
            return Err(Refused::Full(msg));
        }
        st.buf.push_back(Item::Encoded { from: None, msg });
        st.wake();
        Ok(())
    }

    fn want(&self, from: NodeId, sender: bool) {
        let out = {
            let mut st = self.lock();
            if st.detached {
                return;
            }
            if !sender {
                st.grants.defer(from);
                return;
            }
            st.grants.want(from);
            let idle = st.buf.is_empty();
            st.grants.settle(idle, None, false)
        };
        self.send(out);
    }

    fn returned(&self, from: NodeId, n: u32) {
        let out = {
            let mut st = self.lock();
            st.grants.returned(from, n);
            let idle = st.buf.is_empty();
            st.grants.settle(idle, None, false)
        };
        self.send(out);
        self.route.wake();
    }

    fn offer(&self, nodes: &[NodeId]) {
        let out = {
            let mut st = self.lock();
            if st.detached {
                return;
            }
            let new: Vec<NodeId> = {
                let known: BTreeSet<NodeId> = st.grants.known().collect();
                let grants = &mut st.grants;
                nodes.iter().copied().filter(|n| grants.undefer(*n) || !known.contains(n)).collect()
            };
            if new.is_empty() {
                return;
            }
            for n in new {
                st.grants.want(n);
            }
            let idle = st.buf.is_empty();
            st.grants.settle(idle, None, false)
        };
        self.send(out);
    }

    fn node_left(&self, node: NodeId) {
        let out = {
            let mut st = self.lock();
            st.grants.forget(node);
            let idle = st.buf.is_empty();
            st.grants.settle(idle, None, false)
        };
        self.send(out);
        self.route.wake();
    }

    fn close(&self, waiting_for: BTreeSet<NodeId>) {
        let mut st = self.lock();
        st.closing = Some(match st.closing.take() {
            // Fences already counted stay counted.
            Some(prev) => prev.intersection(&waiting_for).copied().collect(),
            None => waiting_for,
        });
        st.wake();
    }

    fn fence(&self, from: NodeId) {
        let mut st = self.lock();
        if let Some(w) = st.closing.as_mut() {
            w.remove(&from);
        }
        st.wake();
    }

    fn hand_over(&self, keep_local: bool) -> Option<Vec<Bytes>> {
        self.detach(keep_local)
    }

    fn tell_taken(&self) {
        let mut out = self.lock().grants.flush_taken();
        out.urgent = true;
        self.send(out);
    }

    fn is_detached(&self) -> bool {
        self.lock().detached
    }

    fn orphan(&self) -> bool {
        let mut st = self.lock();
        if st.detached || st.closed() {
            return false;
        }
        // What other nodes sent goes elsewhere (they saw this receiver removed): not here too.
        st.buf.retain(|item| !matches!(item, Item::Encoded { from: Some(_), .. }));
        st.closing = Some(BTreeSet::new());
        st.wake();
        true
    }

    fn entries(&self) -> usize {
        let st = self.lock();
        st.grants.entries() + st.unacked.as_ref().map_or(0, |u| u.remote.len())
    }

    fn buffered(&self) -> usize {
        self.lock().buf.len()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
