//! Starting over: this node was removed from the cluster while alive (frozen or cut off past
//! the failure timeout; the others removed it and its endpoints) and was let back in. Its
//! endpoints carry on: the switchboard voids what the old incarnation held and settles with
//! every peer ([`crate::channel::switchboard::Switchboard::start_over`]), then each live
//! endpoint is registered again under its channel, with a new id. A receiver takes messages
//! under its new id from then on; a receiver that cannot be registered again (its channel was
//! closed meanwhile) ends after what this node's senders gave it.
//!
//! The node keeps, per live endpoint handle, the registration that stands for it now
//! ([`LiveEndpoints`]); dropping the handle deregisters that one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::Instrument;

use super::Core;
use crate::cluster::registry::Registry;
use crate::ids::EndpointId;
use crate::rpc::{Command, EndpointKind, Outcome};
use crate::sync::lock;

/// One live endpoint's registration.
#[derive(Debug, Clone)]
struct Live {
    channel: String,
    type_name: String,
    kind: EndpointKind,
    capacity: u32,
    /// The registration standing for the handle now (its own id until the node starts over).
    current: EndpointId,
}

/// This node's live endpoints, by the id they were first registered under.
#[derive(Debug)]
pub(crate) struct LiveEndpoints {
    by_handle: Mutex<HashMap<EndpointId, Live>>,
    /// An endpoint vanished from the registry while its handle lives: the node was removed,
    /// and starts over once it is a member again.
    removed: AtomicBool,
    /// A start-over is under way: new registrations wait for it (see
    /// [`LiveEndpoints::wait_started_over`]).
    starting_over: tokio::sync::watch::Sender<bool>,
    /// The membership change that let this node in, as it last saw it (0: it has not been a
    /// member yet): a registry without it, or with another number, means it was removed.
    admitted: AtomicU64,
}

impl Default for LiveEndpoints {
    fn default() -> Self {
        LiveEndpoints {
            by_handle: Mutex::default(),
            removed: AtomicBool::new(false),
            starting_over: tokio::sync::watch::Sender::new(false),
            admitted: AtomicU64::new(0),
        }
    }
}

impl LiveEndpoints {
    /// Wait (at most `limit`) until no start-over is under way: a sender registered while the
    /// node starts over would be offered credit that the node, still voiding its old
    /// incarnation's, would drop while the receiver counts it out.
    pub(crate) async fn wait_started_over(&self, limit: std::time::Duration) {
        let mut over = self.starting_over.subscribe();
        let _ = tokio::time::timeout(limit, over.wait_for(|on| !*on)).await;
    }

    pub(crate) fn add(
        &self,
        id: EndpointId,
        channel: &str,
        type_name: &str,
        kind: EndpointKind,
        capacity: u32,
    ) {
        let live = Live {
            channel: channel.to_owned(),
            type_name: type_name.to_owned(),
            kind,
            capacity,
            current: id,
        };
        lock(&self.by_handle).insert(id, live);
    }

    /// The handle first registered as `id` was dropped: the registration standing for it now.
    pub(crate) fn remove(&self, id: EndpointId) -> Option<EndpointId> {
        lock(&self.by_handle).remove(&id).map(|l| l.current)
    }

    /// How many live endpoints this node has (for tests that check that churn leaves nothing).
    pub(crate) fn len(&self) -> usize {
        lock(&self.by_handle).len()
    }

    /// This node's live receivers and senders, per channel (for metrics: O(its own endpoints),
    /// not O(the registry)).
    pub(crate) fn per_channel(&self) -> HashMap<String, (u32, u32)> {
        let mut out: HashMap<String, (u32, u32)> = HashMap::new();
        for live in lock(&self.by_handle).values() {
            let counts = out.entry(live.channel.clone()).or_default();
            match live.kind {
                EndpointKind::Receiver => counts.0 += 1,
                EndpointKind::Sender => counts.1 += 1,
            }
        }
        out
    }

    /// A live endpoint's registration is gone already when it is made (this node was removed
    /// meanwhile).
    pub(crate) fn removed(&self) {
        self.removed.store(true, Ordering::SeqCst);
    }

    /// This node is a member (it joined, or formed the cluster), as `registry` shows: the
    /// membership change that let it in is the one it acts under. Noted here, before anything
    /// of it can ask for credit, rather than at the registry watcher's next turn: a node paused
    /// in between, removed and let in again, saw only its second admission, took it for its
    /// first, and never started over, while a receiver had taken in its messages as the old
    /// incarnation's (the switchboard simulation's seed 298533, with freezes).
    pub(crate) fn joined(&self, registry: &Registry, me: crate::ids::NodeId) {
        if let Some(admitted) = registry.admitted(me) {
            let _ = self.admitted.compare_exchange(0, admitted, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// Whether any of `ids`, gone from the registry, stands for a live endpoint.
    fn any_live(&self, ids: &[EndpointId]) -> bool {
        lock(&self.by_handle).values().any(|l| ids.contains(&l.current))
    }
}

impl Core {
    /// After each registry change: if a live endpoint of this node vanished from the registry,
    /// the node was removed while alive; once it is a member again, it starts over.
    pub(crate) fn check_removed(self: &Arc<Self>, registry: &Registry) {
        let vanished = self.switch.take_vanished();
        if !vanished.is_empty() && self.endpoints.any_live(&vanished) {
            self.endpoints.removed.store(true, Ordering::SeqCst);
        }
        // Let in again since it last looked (another admission than the one it acts under),
        // not by its own leave: removed, whether or not an endpoint of it vanished (one
        // registered again after a first start-over may have failed to, and its peers forget
        // its books all the same: the switchboard simulation's seeds 273 and 904). A registry
        // without it says nothing by itself: one older than the registry it joined by may
        // reach this watcher after `joined` (the switchboard simulation's seed 955).
        if let Some(admitted) = registry.admitted(self.id) {
            let before = self.endpoints.admitted.swap(admitted, Ordering::SeqCst);
            if before != 0 && before != admitted && !self.leaving.load(Ordering::SeqCst) {
                self.endpoints.removed.store(true, Ordering::SeqCst);
            }
        }
        if !self.endpoints.removed.load(Ordering::SeqCst)
            || !registry.nodes.contains_key(&self.id)
            || self.leaving.load(Ordering::SeqCst)
            || self.endpoints.starting_over.send_replace(true)
        {
            return;
        }
        self.endpoints.removed.store(false, Ordering::SeqCst);
        // At once, before the fences this registry made due go out (the caller sends them).
        let started = self.switch.start_over();
        let core = self.clone();
        self.tasks.spawn(
            async move {
                core.switch.settle(started).await;
                core.register_again().await;
                core.endpoints.starting_over.send_replace(false);
                // Removed again meanwhile: go round again.
                let registry = core.registry.borrow().clone();
                core.check_removed(&registry);
            }
            .instrument(self.span.clone()),
        );
    }

    /// Register every live endpoint the registry no longer lists again, under its channel;
    /// a write that fails is withdrawn and tried again (a receiver waits for it, a sender
    /// without a registration would get no credit), until the handle is dropped or the node
    /// stops. Only a channel closed meanwhile (or taken by another type) ends a receiver.
    async fn register_again(self: &Arc<Self>) {
        let stale: Vec<(EndpointId, Live)> = {
            let registry = self.registry.borrow().clone();
            let map = lock(&self.endpoints.by_handle);
            map.iter()
                .filter(|(_, l)| registry.issued(l.current) && !registry.is_registered(l.current))
                .map(|(h, l)| (*h, l.clone()))
                .collect()
        };
        let mut again = 0usize;
        for (handle, live) in stale {
            again += usize::from(self.register_one_again(handle, &live).await);
        }
        tracing::info!(endpoints = again, "back in the cluster: endpoints registered again");
    }

    /// Register the endpoint of handle `handle` again; whether it is.
    async fn register_one_again(self: &Arc<Self>, handle: EndpointId, live: &Live) -> bool {
        let channel = &live.channel;
        loop {
            let alive = lock(&self.endpoints.by_handle).contains_key(&handle);
            if !alive || self.cancel.is_cancelled() || self.leaving.load(Ordering::SeqCst) {
                return false;
            }
            let token = crate::cluster::registry::token();
            let cmd = Command::Register {
                channel: channel.clone(),
                type_name: live.type_name.clone(),
                kind: live.kind,
                node: self.id,
                capacity: live.capacity,
                token,
            };
            let why = match self.write(cmd).await {
                Ok(Outcome::Registered(id)) => {
                    let mut map = lock(&self.endpoints.by_handle);
                    let Some(entry) = map.get_mut(&handle) else {
                        // Dropped meanwhile: the new registration has no handle.
                        drop(map);
                        self.deregister(channel, id);
                        return false;
                    };
                    entry.current = id;
                    // Under the lock: a drop of the handle now deregisters `id`, after the
                    // inbox is known by it.
                    if live.kind == EndpointKind::Receiver {
                        self.switch.renamed(live.current, id);
                    }
                    return true;
                }
                Ok(outcome @ (Outcome::Closed | Outcome::TypeMismatch { .. })) => {
                    tracing::warn!(%channel, ?outcome, "an endpoint cannot be registered again");
                    if live.kind == EndpointKind::Receiver {
                        self.switch.orphaned(live.current);
                    }
                    return false;
                }
                Ok(outcome) => format!("{outcome:?}"),
                Err(e) => {
                    // It may still commit: withdrawn, so that nothing stays registered twice.
                    self.withdraw(token);
                    e.to_string()
                }
            };
            tracing::warn!(%channel, %why, "registering an endpoint again will be retried");
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return false,
                _ = tokio::time::sleep(self.membership.failure_timeout()) => {}
            }
        }
    }
}
