//! The node layer: wires the layers together and runs a node. One per process (or more, in
//! tests), owning the listener, the peers, Raft and the local endpoints; everything a node
//! starts is tracked and stopped by [`Node::shutdown`].
//!
//! [`Node`] is the public handle; [`Core`] what its tasks share. Here: the builder and start
//! (`builder`), bootstrapping or joining (`join`), making endpoints (`endpoints`), the control
//! path (`control`: registry writes, always through the leader, and the requests other nodes
//! make), starting over when it was removed while alive and let back in (`rejoin`), what the
//! node reports of itself (`stats`), the `Endpoint` trait behind
//! `#[dchan::endpoint]` (`endpoint`) and [`ClusterWatch`](crate::ClusterWatch). On the message path the node only
//! passes frames through: the connections hand them up through
//! [`Dispatch`], which [`Core`] implements by calling the
//! switchboard ([`crate::channel::switchboard`]); the registry watcher brings the switchboard up
//! to date when the registry changes and has Raft snapshot the registry when one is due.
//!
//! May import every layer below: `link`, `cluster`, `channel`, and the crate's root modules.

pub(crate) mod builder;
pub(crate) mod cluster_watch;
pub(crate) mod control;
pub(crate) mod endpoint;
pub(crate) mod endpoints;
mod join;
#[cfg(feature = "prometheus")]
mod probes;
pub(crate) mod rejoin;
pub(crate) mod stats;
pub(crate) mod telemetry;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::channel::switchboard::Switchboard;
use crate::cluster::membership::Membership;
use crate::cluster::raft::election::Elections;
use crate::cluster::raft::Raft;
use crate::cluster::registry::Registry;
use crate::cluster::view::{ClusterInfo, Member, Role};
use crate::ids::NodeId;
use crate::link::connection::Links;
use crate::link::dispatch::{Dispatch, Frames};
use crate::link::peer::Peers;
use crate::rpc::{Request, Response};
use crate::tasks::Tasks;
use crate::Error;

/// A receiver's default capacity: what it holds and has granted to sending nodes, together.
///
/// Sized to the network, not to the application: a sending node sends only on credit, and a
/// quarter of the capacity is granted again at a time, so the capacity bounds what is in
/// flight on a stream. At 4096 (256 KiB of 64-byte messages) a stream across processes runs
/// at the rate of the receiving process rather than of the credit's round trip; at 1024 it
/// carried 10-35% less (the README's figures). A receiver that wants less in flight, or less
/// held for a slow application, sets [`ReceiverBuilder::capacity`](crate::ReceiverBuilder).
pub const DEFAULT_CAPACITY: usize = 4096;

/// Deregistrations a node has in flight at once (a quarter of what a peer answers at once,
/// `link::connection`'s request limit), so that a leave or a registration behind a burst of them
/// still gets through.
pub(crate) const MAX_DEREGISTRATIONS: usize = 64;

/// A node's shutdown, run once, on the node's own runtime, to its end, whoever awaits it.
#[derive(Debug)]
pub(crate) struct ShutDown {
    /// Taken by the first call, and moved into the task that shuts down: its end (or its
    /// drop, the node's runtime gone) is what every caller waits for.
    start: std::sync::Mutex<Option<watch::Sender<bool>>>,
    done: watch::Receiver<bool>,
    /// What the shutdown found, for the first caller to come for it.
    result: std::sync::Mutex<Option<Result<(), Error>>>,
}

impl Default for ShutDown {
    fn default() -> Self {
        let (tx, done) = watch::channel(false);
        ShutDown {
            start: std::sync::Mutex::new(Some(tx)),
            done,
            result: std::sync::Mutex::default(),
        }
    }
}

/// What the node shares between its tasks, its endpoints and its handles.
pub(crate) struct Core {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
    /// The address other nodes dial for this one (the bound address unless told otherwise).
    pub(crate) advertised: String,
    /// This node never votes ([`NodeBuilder::non_voting`](crate::NodeBuilder::non_voting)).
    pub(crate) non_voting: bool,
    /// What this node is ([`NodeBuilder::name`](crate::NodeBuilder::name)).
    pub(crate) name: Option<String>,
    pub(crate) raft: Raft,
    /// Raft's timing, and the node's waits across the network (from `NodeBuilder::round_trip`).
    pub(crate) timing: crate::cluster::raft::Timing,
    pub(crate) registry: watch::Receiver<Arc<Registry>>,
    pub(crate) peers: Arc<Peers>,
    /// Joins, leaves, failure detection and the voter count, carried out while this node leads.
    pub(crate) membership: Arc<Membership>,
    /// When this node last heard from a leader; starts elections when that is too long ago.
    pub(crate) elections: Arc<Elections>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: Tasks,
    /// The node's span, for tasks started from outside it (a handle dropped anywhere).
    pub(crate) span: tracing::Span,
    /// Set when `shutdown` starts.
    pub(crate) leaving: AtomicBool,
    /// The shutdown's progress (see [`Node::shutdown`]).
    pub(crate) shutdown: ShutDown,
    /// Deregistrations in flight at once, at most [`MAX_DEREGISTRATIONS`]: a thousand receivers
    /// dropped together must not fill the leader's requests (a leave behind them was refused).
    pub(crate) deregistrations: Arc<tokio::sync::Semaphore>,
    /// This node's routers and inboxes, and what connects them (see [`crate::channel::switchboard`]).
    pub(crate) switch: Switchboard,
    /// This node's live endpoints and the registrations standing for them (see [`rejoin`]).
    pub(crate) endpoints: rejoin::LiveEndpoints,
    /// What this node's connections share; they hand frames up through [`Dispatch`].
    pub(crate) links: Arc<Links>,
    /// What every unnamed channel's receiver made here shares (see [`Node::channel`]): made
    /// with the first.
    pub(crate) unnamed: std::sync::OnceLock<endpoints::UnnamedParts>,
    /// Where its figures go (see [`telemetry`]).
    pub(crate) telemetry: telemetry::Telemetry,
    /// Raft's log: what it last saved as committed.
    pub(crate) log: crate::cluster::raft::store::LogStore,
    /// Where its metrics and probes are served, if anywhere (`NodeBuilder::metrics`).
    pub(crate) metrics_addr: Option<SocketAddr>,
}

/// The connections' readers hand each frame to the node here: data, credit, fences and releases
/// to the switchboard, requests to the control path.
impl Dispatch for Core {
    fn frames(&self) -> &dyn Frames {
        &self.switch
    }

    fn request(
        self: Arc<Self>,
        from: NodeId,
        req: Request,
    ) -> BoxFuture<'static, Option<Response>> {
        Box::pin(async move { self.handle_request(from, req).await })
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// A member of a dchan cluster.
///
/// Cheap to clone: clones share one node. Create it with [`Node::builder`], inside an actix
/// system (`#[actix::main]`, `#[actix_rt::test]` or `actix_rt::System::new().block_on(..)`):
/// each receiver has an actix actor, and `Actor::start` panics outside a system.
///
/// # Examples
///
/// ```
/// # #[actix::main]
/// # async fn main() -> Result<(), dchan::Error> {
/// let first = dchan::Node::builder().listen("127.0.0.1:0").bootstrap().start().await?;
/// let second = dchan::Node::builder().join([first.addr()]).start().await?;
/// let view = second.cluster();
/// assert_eq!(view.members.len(), 2);
/// assert_eq!(view.leader, Some(first.id()));
/// second.shutdown().await?;
/// first.shutdown().await
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Node {
    pub(crate) core: Arc<Core>,
}

impl Node {
    /// This node's id in the cluster.
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// The address this node listens on (the bound one, if it was given port 0).
    pub fn addr(&self) -> SocketAddr {
        self.core.addr
    }

    /// Where this node serves `/metrics`, `/healthz` and `/readyz`, if it does (see
    /// `NodeBuilder::metrics`, cargo feature `prometheus`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.core.metrics_addr
    }

    /// Whether this node can serve now: `Ok` once it is a member that knows a leader (what
    /// `/readyz` answers); otherwise why not.
    ///
    /// # Errors
    ///
    /// The reason, as text: stopped, leaving, not a member, no leader known or heard from
    /// lately, or leading without a quorum.
    pub fn ready(&self) -> Result<(), String> {
        self.core.readiness()
    }

    /// Not part of the API (for dchan's tests): how many receiver inboxes this node holds,
    /// including those of dropped receivers that are still re-routing late arrivals.
    #[doc(hidden)]
    pub fn __inbox_count(&self) -> usize {
        self.core.switch.inbox_count()
    }

    /// Not part of the API (for dchan's tests): whether this node keeps counts of `channel` for
    /// its metrics (forgotten, once published a last time, when nothing of it is left here).
    #[doc(hidden)]
    pub fn __counts_channel(&self, channel: &str) -> bool {
        self.core.switch.counts_channel(channel)
    }

    /// Not part of the API (for dchan's tests): this node's Raft term, which goes up by one for
    /// each campaign.
    #[doc(hidden)]
    pub fn __raft_term(&self) -> u64 {
        self.core.raft.metrics().borrow().current_term
    }

    /// Not part of the API (for dchan's tests): how many entries this node keeps per channel,
    /// receiver and other node, to check that members coming and going leave nothing behind.
    #[doc(hidden)]
    pub fn __entries(&self) -> usize {
        self.core.switch.entries() + self.core.endpoints.len() + self.core.peers.replies.len()
    }

    /// Not part of the API (for dchan's tests): [`Node::__entries`] by table, to say which one
    /// kept something.
    #[doc(hidden)]
    pub fn __entries_by_table(&self) -> String {
        format!(
            "{:?}, endpoints {}, peers and book {:?}",
            self.core.switch.tables(),
            self.core.endpoints.len(),
            self.core.peers.ids()
        )
    }

    /// Not part of the API (for dchan's tests): the index of the last entry in this node's Raft
    /// log, to check that an idle cluster writes nothing.
    #[doc(hidden)]
    pub fn __last_log_index(&self) -> Option<u64> {
        self.core.raft.metrics().borrow().last_log_index
    }

    /// A snapshot of the cluster as this node knows it: members, leader, channels.
    ///
    /// A copy made for the caller: it costs O(endpoints in the registry), unlike a registration
    /// (see the README's registry benchmark), so call it to look, not in a loop per message.
    pub fn cluster(&self) -> ClusterInfo {
        let registry = self.core.registry.borrow().clone();
        // Copy what is needed out of the metrics and drop the borrow at once: holding it would
        // block Raft's own updates.
        let (leader, names) = {
            let m = self.core.raft.metrics();
            let m = m.borrow();
            let names: std::collections::HashMap<u64, String> = m
                .membership_config
                .membership()
                .nodes()
                .filter_map(|(id, n)| Some((*id, n.name.clone()?)))
                .collect();
            (m.current_leader, names)
        };
        ClusterInfo {
            me: self.core.id,
            leader,
            members: registry
                .nodes
                .iter()
                .map(|(id, addr)| Member {
                    id: *id,
                    addr: addr.clone(),
                    role: if registry.voters.contains(id) { Role::Voter } else { Role::Learner },
                    name: names.get(id).cloned(),
                })
                .collect(),
            channels: registry.channels.iter().map(|(name, c)| c.info(name)).collect(),
        }
    }

    /// Leave the cluster and stop every task this node started.
    ///
    /// Its endpoints are deregistered and it is removed from Raft's membership (unless it is the
    /// last voter). Receivers on this node then yield what they hold, then `None`; senders fail
    /// with `Closed`.
    ///
    /// The shutdown runs on the node's own runtime, once: a call made while one runs, or after,
    /// waits for it to end and returns once the node has stopped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future (a timeout, a `select!`) does not stop the shutdown
    /// half-way; it goes on to its end, and a later call waits for it.
    ///
    /// # Errors
    ///
    /// [`Error::Registry`] or [`Error::NoQuorum`] if the cluster could not be told (the node
    /// still stops), for the first call that comes for the outcome (later ones get `Ok`);
    /// [`Error::Shutdown`] if the node's runtime ended before the shutdown did.
    pub async fn shutdown(&self) -> Result<(), Error> {
        let core = &self.core;
        let mut done = core.shutdown.done.clone();
        let start = crate::sync::lock(&core.shutdown.start).take();
        if let Some(tx) = start {
            // Senders refuse from the first poll on, as the call returns pending.
            core.leaving.store(true, Ordering::SeqCst);
            core.switch.leaving();
            let leaving = core.clone();
            core.tasks.detach(async move {
                let left = leaving.leave_and_stop().await;
                *crate::sync::lock(&leaving.shutdown.result) = Some(left);
                let _ = tx.send(true);
            });
        }
        let stopped = done.wait_for(|stopped| *stopped).await.is_ok();
        if !stopped {
            return Err(Error::Shutdown);
        }
        crate::sync::lock(&core.shutdown.result).take().unwrap_or(Ok(()))
    }
}

impl Core {
    /// Hand over, leave the cluster and stop (see [`Node::shutdown`]).
    async fn leave_and_stop(self: &Arc<Self>) -> Result<(), Error> {
        let span = tracing::info_span!(parent: &self.span, "leave");
        async {
            tracing::info!("leaving the cluster");
            self.switch.tell_taken().await;
            let left = self.leave().await;
            if let Ok(removed) = left {
                self.switch.hand_over(removed).await;
            }
            self.stop().await;
            left.map(|_| ())
        }
        .instrument(span)
        .await
    }

    pub(crate) async fn stop(&self) {
        let core = self;
        // First, so that nothing (a dropped handle's deregistration, a retried write) starts
        // talking to Raft while it stops.
        core.cancel.cancel();
        core.switch.close_all();
        // Askers waiting for answers that can no longer come are told.
        core.peers.replies.close();
        if let Err(e) = core.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
        core.tasks.close_and_wait().await;
        core.switch.clear();
        tracing::info!("node stopped");
    }
}
