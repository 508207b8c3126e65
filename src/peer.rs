//! Peers: the nodes this node talks to, each with its outbox and a task that keeps it connected.
//!
//! A node dials one connection to each peer it has something for and sends everything for that
//! peer over it: Raft RPCs, answers to the peer's requests, data of every channel, acks and fences.
//! What the peer sends back arrives on the connection the peer dialed (see [`crate::connection`]),
//! so each connection carries one direction and a pair of nodes shares at most two, whatever the
//! number of channels. Requests are matched to responses by id; a caller that gives up (a Raft
//! timeout, a cancelled election) just drops its slot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::outbox::Outbox;
use crate::registry::NodeId;
use crate::wire::{self, Frame, Request, Response};

/// How long the link to a node that left stays up.
const LEAVE_GRACE: Duration = Duration::from_secs(3);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RpcError {
    #[error("no answer from node {0} within {1:?}")]
    Timeout(NodeId, Duration),
    #[error("node {0} is gone")]
    Disconnected(NodeId),
}

/// One remote node.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: NodeId,
    pub(crate) addr: String,
    /// Everything queued for this peer, drained by the connection's writer.
    pub(crate) outbox: Outbox,
    /// Requests sent and not yet answered.
    pending: Mutex<HashMap<u64, oneshot::Sender<Response>>>,
    next_request: AtomicU64,
    /// Stops this peer's link task (node shutdown, or the peer left).
    stop: CancellationToken,
}

/// Removes a request's slot if its caller stops waiting (timeout or cancellation).
struct PendingGuard<'a> {
    peer: &'a Peer,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.peer.pending).remove(&self.id);
    }
}

impl Peer {
    /// Send `req` and wait up to `timeout` for the answer.
    pub(crate) async fn request(
        &self,
        req: Request,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let _guard = PendingGuard { peer: self, id };
        self.outbox.push_frame(wire::encode(&Frame::Request { id, body: Box::new(req) }));
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(RpcError::Disconnected(self.id)),
            Err(_) => Err(RpcError::Timeout(self.id, timeout)),
        }
    }

    /// Hand an answer to whoever waits for request `id` (ignored if nobody does any more).
    pub(crate) fn complete(&self, id: u64, resp: Response) {
        if let Some(tx) = lock(&self.pending).remove(&id) {
            let _ = tx.send(resp);
        }
    }
}

/// Every peer of this node, created on first use.
#[derive(Debug)]
pub(crate) struct Peers {
    pub(crate) me: NodeId,
    pub(crate) my_addr: SocketAddr,
    pub(crate) max_frame: usize,
    map: Mutex<HashMap<NodeId, Arc<Peer>>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Peers {
    pub(crate) fn new(
        me: NodeId,
        my_addr: SocketAddr,
        max_frame: usize,
        cancel: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Peers { me, my_addr, max_frame, map: Mutex::default(), cancel, tasks }
    }

    /// The peer `id`, listening on `addr`; dialed in the background the first time it is asked for.
    pub(crate) fn get(&self, id: NodeId, addr: &str) -> Arc<Peer> {
        let mut map = lock(&self.map);
        if let Some(p) = map.get(&id) {
            if p.addr == addr {
                return p.clone();
            }
        }
        let peer = Arc::new(Peer {
            id,
            addr: addr.to_owned(),
            outbox: Outbox::default(),
            pending: Mutex::default(),
            next_request: AtomicU64::new(1),
            stop: self.cancel.child_token(),
        });
        map.insert(id, peer.clone());
        drop(map);
        let span = tracing::info_span!("link", node = self.me, peer = id);
        let (p, me, my_addr, max) = (peer.clone(), self.me, self.my_addr, self.max_frame);
        self.tasks.spawn(keep_connected(p, me, my_addr, max).instrument(span));
        peer
    }

    /// Every peer this node talks to.
    pub(crate) fn all(&self) -> Vec<Arc<Peer>> {
        lock(&self.map).values().cloned().collect()
    }

    /// The peer `id` if this node has talked to it.
    pub(crate) fn find(&self, id: NodeId) -> Option<Arc<Peer>> {
        lock(&self.map).get(&id).cloned()
    }

    /// Forget a peer that left the cluster. Its link stays up for a grace period, so that the
    /// answer to its own leave request (and anything else already queued) still reaches it.
    pub(crate) fn remove(&self, id: NodeId) {
        let Some(peer) = lock(&self.map).remove(&id) else { return };
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(LEAVE_GRACE) => peer.stop.cancel(),
            }
        });
    }
}

/// Dial the peer, run the connection until it breaks, and dial again, until the node shuts down
/// or the peer leaves.
async fn keep_connected(peer: Arc<Peer>, me: NodeId, my_addr: SocketAddr, max_frame: usize) {
    let cancel = peer.stop.clone();
    let mut backoff = Duration::from_millis(20);
    loop {
        let run = async {
            let conn = crate::connection::dial(&peer.addr, me, my_addr, max_frame).await?;
            if conn.remote != peer.id {
                return Err(crate::Error::Join(format!(
                    "{} is node {}, expected node {}",
                    peer.addr, conn.remote, peer.id
                )));
            }
            tracing::debug!(addr = %peer.addr, "connected");
            backoff = Duration::from_millis(20);
            crate::connection::write_loop(conn.framed, &peer.outbox).await
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            res = run => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "link down");
                }
            }
        }
        // Requests in flight are left to their own timeouts: after a graceful leave, Raft drops
        // its replication to the node that left before they expire, and has nothing to report.
        // Frames for a peer that cannot be reached would pile up: drop them. Raft retries its
        // own; lost data is what the failure handling (re-routing unacked messages) is for.
        let mut dropped = Vec::new();
        let mark = peer.outbox.take(&mut dropped);
        peer.outbox.mark_written(mark);
        if !dropped.is_empty() {
            tracing::debug!(frames = dropped.len(), "dropped frames for an unreachable peer");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}
