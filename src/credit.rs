//! Credit: how many messages this node may have on the way to each remote receiver, not yet
//! acknowledged. On the message path between the router (which takes credit before it queues a
//! message for a remote receiver) and the connection's reader (acks give it back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::peer::lock;
use crate::registry::EndpointId;
use crate::router::ChannelRoute;

/// Credit for one (sending node, remote receiver) pair: at most `limit` messages unacknowledged.
#[derive(Debug)]
pub(crate) struct Window {
    inflight: AtomicU32,
    limit: u32,
}

impl Window {
    pub(crate) fn new(limit: u32) -> Self {
        Window { inflight: AtomicU32::new(0), limit: limit.max(1) }
    }

    pub(crate) fn try_acquire(&self) -> bool {
        self.inflight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < self.limit).then_some(n + 1))
            .is_ok()
    }

    pub(crate) fn release(&self, n: u32) {
        let _ = self
            .inflight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| Some(cur.saturating_sub(n)));
    }
}

/// The window towards one remote receiver, and the route whose senders wait for its credit.
type Credit = (Arc<Window>, Arc<ChannelRoute>);

/// This node's windows towards every remote receiver.
#[derive(Debug, Default)]
pub(crate) struct Credits {
    windows: Mutex<HashMap<EndpointId, Credit>>,
}

impl Credits {
    /// The window towards receiver `id` of `route`'s channel, made on first use.
    pub(crate) fn window(
        &self,
        id: EndpointId,
        capacity: u32,
        route: &Arc<ChannelRoute>,
    ) -> Arc<Window> {
        lock(&self.windows)
            .entry(id)
            .or_insert_with(|| (Arc::new(Window::new(capacity)), route.clone()))
            .0
            .clone()
    }

    /// Receiver `id` acknowledged `n` messages: credit back, waiting senders woken.
    pub(crate) fn release(&self, id: EndpointId, n: u32) {
        let entry = lock(&self.windows).get(&id).cloned();
        if let Some((window, route)) = entry {
            window.release(n);
            route.wake();
        }
    }

    /// Drop the windows of receivers for which `keep` (receiver, its channel) says no.
    pub(crate) fn retain(&self, mut keep: impl FnMut(EndpointId, &str) -> bool) {
        lock(&self.windows).retain(|id, (_, route)| keep(*id, &route.name));
    }
}
