//! Peers: the nodes this node talks to, each with its outbox and a task that keeps it connected.
//!
//! Everything for one peer (Raft RPCs, answers to its requests, data of every channel, acks,
//! fences) goes through its outbox, written by exactly one connection at a time: the *writer*.
//! Whichever connection between the two nodes comes first, dialed or accepted, becomes the writer;
//! when both dial at once, the connection dialed by the node with the lower id takes over on both
//! sides, so a pair of nodes shares one connection for both directions and all channels (see
//! [`crate::link::connection`]). Requests are matched to responses by id; a caller that
//! gives up (a Raft timeout, a cancelled election) just drops its slot.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::clock::now_ms;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::ids::NodeId;
use crate::link::connection::Links;
use crate::link::outbox::Outbox;
use crate::link::wire::{self, Frame};
use crate::rpc::{Request, Response};
use crate::sync::{lock, HashMap};
use crate::tasks::Tasks;

/// How long the link to a node that left stays up (what is queued for it still reaches it).
pub(crate) const LEAVE_GRACE: Duration = Duration::from_secs(10);

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
    /// Where to dial it: from the membership once it is a member, a seed's address before;
    /// empty for a node that dialed this one and is not a member (never dialed: what it claims
    /// in its hello is not an address to trust). Read afresh at every dial.
    addr: watch::Sender<String>,
    /// When a frame last came from it ([`now_ms`]); what the failure detector reads.
    last_heard: AtomicU64,
    /// Everything queued for this peer, drained by the connection's writer.
    pub(crate) outbox: Outbox,
    /// Requests sent and not yet answered.
    pending: Mutex<HashMap<u64, oneshot::Sender<Response>>>,
    next_request: AtomicU64,
    /// Set while the peer is in its grace period after leaving the membership.
    departing: AtomicBool,
    /// Stops this peer's link task and connections (node shutdown, or the peer left).
    pub(crate) stop: CancellationToken,
    /// Whether a connection is writing this peer's outbox.
    writer: watch::Sender<bool>,
    /// Stops the current writer (so that another connection can take over).
    displace: Mutex<CancellationToken>,
    /// An accepted connection is taking over as the writer: no other may claim meanwhile.
    handover: AtomicBool,
    /// Connections that have written for this peer (the first, then each reconnect).
    connections: AtomicU64,
    /// How far this node has taken in the peer's stream of reliable frames. Locked while a
    /// reliable frame is handed up, so that two connections from the peer (an old one still
    /// draining, a new one resending) hand each frame up once, in order.
    pub(crate) inbound: Mutex<Inbound>,
}

/// This node's place in a peer's stream of reliable frames.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Inbound {
    /// The peer's stream ([`crate::link::wire::Frame::Resume`]); `None` before the first.
    pub(crate) stream: Option<u64>,
    /// How many of its frames have been taken in.
    pub(crate) count: u64,
}

impl Inbound {
    /// What a hello says this node has taken in.
    pub(crate) fn received(&self) -> Option<(u64, u64)> {
        self.stream.map(|s| (s, self.count))
    }
}

/// The right to write a peer's outbox, held by one connection; released on drop.
#[derive(Debug)]
pub(crate) struct WriterClaim {
    peer: Arc<Peer>,
    /// Cancelled when another connection takes over: the holder stops writing and closes.
    pub(crate) displaced: CancellationToken,
}

impl Drop for WriterClaim {
    fn drop(&mut self) {
        self.peer.writer.send_replace(false);
    }
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
    /// This peer left the membership, as this node saw it (see [`Peers::remove`]).
    pub(crate) fn is_departing(&self) -> bool {
        self.departing.load(Ordering::SeqCst)
    }

    /// The address this peer is dialed at.
    pub(crate) fn addr(&self) -> String {
        self.addr.borrow().clone()
    }

    /// Wait until this peer has an address to dial.
    pub(crate) async fn addressed(&self) {
        let mut rx = self.addr.subscribe();
        let _ = rx.wait_for(|a| !a.is_empty()).await;
    }

    /// A frame came from this peer.
    pub(crate) fn heard(&self) {
        self.last_heard.store(now_ms(), Ordering::Relaxed);
    }

    /// How long since a frame came from this peer (or since it was created).
    pub(crate) fn silent_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_heard.load(Ordering::Relaxed)))
    }

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
        let reliable = req.is_reliable();
        let frame = wire::encode(&Frame::Request { id, body: Box::new(req) });
        self.outbox.push_frame(frame, reliable);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(RpcError::Disconnected(self.id)),
            Err(_) => Err(RpcError::Timeout(self.id, timeout)),
        }
    }

    /// Become this peer's writer, unless a connection already is (or is taking over).
    pub(crate) fn claim_writer(self: &Arc<Self>) -> Option<WriterClaim> {
        if self.handover.load(Ordering::SeqCst) {
            return None;
        }
        self.claim()
    }

    fn claim(self: &Arc<Self>) -> Option<WriterClaim> {
        if !self.writer.send_if_modified(|w| !std::mem::replace(w, true)) {
            return None;
        }
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.outbox.dial_refused(false); // (a connection is up, whoever dialed)
                                         // (A child of the peer's stop: the connection waits on this token alone.)
        let displaced = self.stop.child_token();
        *lock(&self.displace) = displaced.clone();
        Some(WriterClaim { peer: self.clone(), displaced })
    }

    /// Become this peer's writer in place of the current one, which stops (and closes its
    /// connection) first: two connections never write at once. Used for a connection the peer
    /// dialed when its id is the lower, so that both nodes settle on the same connection. `None`
    /// if another connection took over first.
    pub(crate) async fn take_over_writer(self: &Arc<Self>) -> Option<WriterClaim> {
        if self.handover.swap(true, Ordering::SeqCst) {
            return None;
        }
        lock(&self.displace).cancel();
        self.writer_is(false).await;
        let claim = self.claim();
        self.handover.store(false, Ordering::SeqCst);
        claim
    }

    /// Whether a connection writes for this peer now, and how many have since it was added.
    pub(crate) fn connections(&self) -> (bool, u64) {
        (*self.writer.borrow(), self.connections.load(Ordering::Relaxed))
    }

    /// Wait until a connection writes for this peer (`claimed`), or none does.
    pub(crate) async fn writer_is(&self, claimed: bool) {
        let _ = self.writer.subscribe().wait_for(|w| *w == claimed).await;
    }

    /// Hand an answer to whoever waits for request `id` (ignored if nobody does any more);
    /// whether somebody did.
    pub(crate) fn complete(&self, id: u64, resp: Response) -> bool {
        match lock(&self.pending).remove(&id) {
            Some(tx) => tx.send(resp).is_ok(),
            None => false,
        }
    }
}

/// Every peer of this node, created on first use.
#[derive(Debug)]
pub(crate) struct Peers {
    pub(crate) me: NodeId,
    pub(crate) max_frame: usize,
    map: Arc<Mutex<HashMap<NodeId, Arc<Peer>>>>,
    cancel: CancellationToken,
    tasks: Tasks,
    /// What the links share (the node's identity, where frames go); set once, at start.
    links: OnceLock<Weak<Links>>,
    /// Where each member listens, as the membership last said.
    book: Mutex<HashMap<NodeId, String>>,
    /// This node is a member (the membership lists it).
    member: AtomicBool,
    /// Where this node stood in the streams of the latest [`MAX_FORGOTTEN`] peers it forgot: a
    /// peer removed while alive resumes its stream when it comes back, and the frames this node
    /// took in before must not be taken in twice. (Bounded and a few bytes each: not counted in
    /// [`Peers::entries`].)
    forgotten: Arc<Mutex<VecDeque<(NodeId, Inbound)>>>,
    /// Peers get no link task: the delivery protocol's simulation carries their outboxes.
    simulated: bool,
    /// The answers this node waits for (reply handles).
    pub(crate) replies: crate::link::replies::Replies,
}

/// The most bytes a frame of answers takes besides the answer itself (version, tags, id,
/// token and lengths).
pub(crate) const ANSWER_OVERHEAD: usize = 64;

/// How many forgotten peers' stream positions are kept.
const MAX_FORGOTTEN: usize = 64;

impl Peers {
    pub(crate) fn new(
        me: NodeId,
        max_frame: usize,
        cancel: CancellationToken,
        tasks: Tasks,
    ) -> Self {
        Peers {
            me,
            max_frame,
            map: Arc::default(),
            cancel,
            tasks,
            links: OnceLock::new(),
            book: Mutex::default(),
            member: AtomicBool::new(false),
            forgotten: Arc::default(),
            simulated: false,
            replies: crate::link::replies::Replies::default(),
        }
    }

    /// This node's id.
    #[cfg(test)]
    pub(crate) fn me(&self) -> NodeId {
        self.me
    }

    /// These peers, weakly (through the links that own them): what a reply handle decoded on
    /// this node answers through.
    pub(crate) fn weak(&self) -> Option<Weak<Peers>> {
        Some(Arc::downgrade(&self.links.get()?.upgrade()?.peers))
    }

    /// Answer reply handle `id` (with `token`) of node `node`: `Some` encoded answer, or `None`
    /// (dropped unanswered). In-process if `node` is this node; otherwise a reliable frame
    /// straight to it. False if `node` cannot be reached (it is not a member, or left).
    pub(crate) fn answer(&self, node: NodeId, id: u64, token: u64, body: Option<Bytes>) -> bool {
        use crate::link::replies::Answer;
        if node == self.me {
            return self.replies.complete(id, token, body.map_or(Answer::Dropped, Answer::Value));
        }
        let Some(p) = self.reach(node) else { return false };
        if body.as_ref().is_some_and(|b| b.len() + ANSWER_OVERHEAD > p.outbox.max_frame()) {
            tracing::warn!(
                node,
                size = body.as_ref().map_or(0, Bytes::len),
                "an answer larger than a frame"
            );
            // The asker is told the handle is gone, rather than wait for nothing.
            p.outbox.push_answer(id, token, None);
            return false;
        }
        p.outbox.push_answer(id, token, body);
        true
    }

    /// This node decoded reply handle `id` (with `token`) of node `node`, `hop` messages away
    /// from it, in a message node `carrier` sent (if another): tell that node this one holds
    /// it now (see [`crate::link::replies`]).
    ///
    /// And, if the carrier is neither, tell the carrier too, which passes the claim on: on
    /// the link the "taken" for that message goes, ahead of it. A claim sent to the asker
    /// alone, on another link, could be lost with this node after the carrier read the
    /// "taken" (it delivers the message nowhere again), and the asker waited on the carrier,
    /// alive, for ever (the switchboard simulation's seed 59736, with reply handles).
    pub(crate) fn held(
        &self,
        node: NodeId,
        id: u64,
        token: u64,
        hop: u32,
        carrier: Option<NodeId>,
    ) {
        use crate::link::wire::Claim;
        if node == self.me {
            // (Asked here: nothing to pass on through the carrier.)
            self.replies.held(id, token, node, hop);
            return;
        }
        if let Some(p) = self.reach(node) {
            p.outbox.push_claim(Claim { id, token, hop, asker: None, holder: None });
        }
        let carrier = carrier.filter(|c| *c != node && *c != self.me);
        if let Some(p) = carrier.and_then(|c| self.reach(c)) {
            p.outbox.push_claim(Claim { id, token, hop, asker: Some(node), holder: None });
        }
    }

    /// Node `holder` claims reply handle `id` of node `asker`, as the node it came from says
    /// (a [`Frame::Held`] passed on, see [`Peers::held`]):
    /// told to the asker, or taken here if this node asked.
    pub(crate) fn held_by(&self, asker: NodeId, holder: NodeId, id: u64, token: u64, hop: u32) {
        use crate::link::wire::Claim;
        if asker == self.me {
            self.replies.held(id, token, holder, hop);
            // Gone already (its claim came after its removal was seen): no removal will come
            // again to tell the asker, so look now.
            let departing = self.find(holder).is_some_and(|p| p.is_departing());
            if departing || self.member_addr(holder).is_none() {
                self.holder_left(holder);
            }
        } else if let Some(p) = self.reach(asker) {
            // Bounded by this node's own limit, not the passing peer's manners: past it, the
            // claim is dropped (the holder's own claim to the asker still goes).
            if p.outbox.control_backlog_full() {
                tracing::debug!(peer = asker, "a claim to pass on dropped: the link is backed up");
                return;
            }
            p.outbox.push_claim(Claim { id, token, hop, asker: None, holder: Some(holder) });
        }
    }

    /// Member `id` left: the reply handles it held are lost unless another node claims them
    /// within [`HOLDER_GRACE`](crate::link::replies::HOLDER_GRACE), or it is a member again by
    /// then (let back in after a pause, with its application and the handles it holds).
    pub(crate) fn holder_left(&self, id: NodeId) {
        let Some(peers) = self.weak() else { return };
        if !self.replies.grace_starts(id) {
            return;
        }
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(crate::link::replies::HOLDER_GRACE) => {
                    if let Some(peers) = peers.upgrade() {
                        peers.replies.grace_over(id, peers.member_addr(id).is_some());
                    }
                }
            }
        });
    }

    /// Peers without links: the simulation takes what is queued for each and carries it
    /// ([`crate::channel::switchboard::sim`]).
    #[cfg(test)]
    pub(crate) fn simulated(me: NodeId, cancel: CancellationToken, tasks: Tasks) -> Self {
        Peers {
            simulated: true,
            ..Peers::new(me, crate::link::wire::DEFAULT_MAX_FRAME, cancel, tasks)
        }
    }

    /// Entries kept per other node, for tests that check that churn leaves nothing behind: the
    /// address book (a member each), and peers of nodes that are not members. A peer of a member
    /// is not counted: links among members come with use (a new leader links to every voter)
    /// and are bounded by the membership. (Counted, two nodes that had never talked and then
    /// did, after a leader change under load, looked like one entry left behind each:
    /// `tests/churn.rs` failed so, `[7, 4, 4]` against `[7, 3, 3]`, twice under load.)
    pub(crate) fn entries(&self) -> usize {
        let book = lock(&self.book);
        let strangers = lock(&self.map).keys().filter(|id| !book.contains_key(id)).count();
        book.len() + strangers
    }

    /// The peers, and the members in the address book (for tests' reports).
    pub(crate) fn ids(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        (lock(&self.map).keys().copied().collect(), lock(&self.book).keys().copied().collect())
    }

    /// Give the links what they share. Called once, before any peer is asked for.
    pub(crate) fn set_links(&self, links: Weak<Links>) {
        let _ = self.links.set(links);
    }

    /// The peer `id`, listening on `addr` as the membership says (an address it had before is
    /// replaced); dialed in the background the first time it is asked for.
    pub(crate) fn get(&self, id: NodeId, addr: &str) -> Arc<Peer> {
        self.get_with(id, addr, true)
    }

    /// The peer `id`; `addr` (a seed's address, or what its hello said) is used only if this node
    /// does not know the peer yet: the membership's address wins.
    pub(crate) fn get_or_add(&self, id: NodeId, addr: &str) -> Arc<Peer> {
        self.get_with(id, addr, false)
    }

    fn get_with(&self, id: NodeId, addr: &str, authoritative: bool) -> Arc<Peer> {
        let mut map = lock(&self.map);
        if let Some(p) = map.get(&id) {
            // Asked for by the membership: a member again, if it was leaving. (Not by a
            // connection it makes: a node that left and still flushes what it owes dials
            // again, and was kept for ever, link and all: the switchboard simulation's seed
            // 704, once it bounded the tables.)
            if authoritative {
                p.departing.store(false, Ordering::SeqCst);
            }
            if authoritative || p.addr.borrow().is_empty() {
                p.addr.send_if_modified(|current| {
                    let changed = current != addr;
                    if changed {
                        tracing::debug!(peer = id, from = %current, to = %addr, "peer address updated");
                        addr.clone_into(current);
                    }
                    changed
                });
            }
            return p.clone();
        }
        let peer = Arc::new(Peer {
            id,
            addr: watch::Sender::new(addr.to_owned()),
            last_heard: AtomicU64::new(now_ms()),
            outbox: Outbox::new(self.max_frame),
            pending: Mutex::default(),
            // Request ids start anywhere: only this peer's answers are matched to them anyway.
            next_request: AtomicU64::new(crate::clock::random_u64() >> 1),
            departing: AtomicBool::new(false),
            stop: self.cancel.child_token(),
            writer: watch::Sender::new(false),
            displace: Mutex::new(CancellationToken::new()),
            handover: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            inbound: Mutex::new(self.remembered(id)),
        });
        map.insert(id, peer.clone());
        drop(map);
        match self.links.get() {
            _ if self.simulated => {}
            Some(links) => {
                let span = tracing::info_span!("link", node = self.me, peer = id);
                let task = crate::link::connection::keep_connected(links.clone(), peer.clone());
                self.tasks.spawn(task.instrument(span));
            }
            None => tracing::error!(peer = id, "peer asked for before the node was set up"),
        }
        peer
    }

    /// The membership changed: where each member listens.
    pub(crate) fn set_book(&self, book: impl IntoIterator<Item = (NodeId, String)>, member: bool) {
        self.member.store(member, Ordering::SeqCst);
        *lock(&self.book) = book.into_iter().collect();
    }

    /// Where member `id` listens, as the membership says; `None` for a node that is not a member.
    pub(crate) fn member_addr(&self, id: NodeId) -> Option<String> {
        lock(&self.book).get(&id).cloned()
    }

    /// Where to dial back node `id`, which dialed this node saying it listens at `claimed`: where
    /// the membership says; before this node is a member itself (it is joining, and those who
    /// dial it are the cluster's members, whose addresses it does not know yet), where it says;
    /// otherwise nowhere (empty).
    pub(crate) fn dial_back(&self, id: NodeId, claimed: &str) -> String {
        match self.member_addr(id) {
            Some(addr) => addr,
            None if !self.member.load(Ordering::SeqCst) => claimed.to_owned(),
            None => String::new(),
        }
    }

    /// The peer `id` if this node talks to it or it is a member (then dialed when needed).
    pub(crate) fn reach(&self, id: NodeId) -> Option<Arc<Peer>> {
        if let Some(p) = self.find(id) {
            return Some(p);
        }
        let addr = lock(&self.book).get(&id).cloned()?;
        Some(self.get(id, &addr))
    }

    /// Every peer this node talks to (members, not those in their grace period after leaving).
    pub(crate) fn all(&self) -> Vec<Arc<Peer>> {
        // Not those that left the cluster: a shutdown does not wait to flush to a dead node.
        lock(&self.map).values().filter(|p| !p.departing.load(Ordering::SeqCst)).cloned().collect()
    }

    /// The peer `id` if this node has talked to it.
    pub(crate) fn find(&self, id: NodeId) -> Option<Arc<Peer>> {
        lock(&self.map).get(&id).cloned()
    }

    /// Forget a peer that left the cluster. Its link stays up for a grace period, so that the
    /// answer to its own leave request (and anything else already queued) still reaches it; if
    /// it is let back in meanwhile (it was removed while cut off, and rejoined), it stays, link
    /// and all. Otherwise its link task and its connections stop: a connection left running for
    /// a forgotten peer would answer requests nobody matches any more.
    pub(crate) fn remove(&self, id: NodeId) {
        let peer = lock(&self.map).get(&id).cloned();
        // Departing first, then the handles it holds: a claim read meanwhile sees one or the
        // other (the reader looks at `departing` after recording the claim).
        if let Some(peer) = &peer {
            peer.departing.store(true, Ordering::SeqCst);
        }
        self.holder_left(id);
        let Some(peer) = peer else { return };
        let cancel = self.cancel.clone();
        let map = self.map.clone();
        let forgotten = self.forgotten.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(LEAVE_GRACE) => {
                    let mut map = lock(&map);
                    let same = map.get(&id).is_some_and(|p| Arc::ptr_eq(p, &peer));
                    if same && peer.departing.load(Ordering::SeqCst) {
                        map.remove(&id);
                        peer.stop.cancel();
                        let mut forgotten = lock(&forgotten);
                        forgotten.retain(|(node, _)| *node != id);
                        if forgotten.len() == MAX_FORGOTTEN {
                            forgotten.pop_front();
                        }
                        forgotten.push_back((id, *lock(&peer.inbound)));
                    }
                }
            }
        });
    }

    /// Peers known by an address (dialed, or dialed back) that are not members now (`member`
    /// says who is), not yet forgotten, and with no connection up: nodes that left without
    /// this node seeing them leave (they came and went between two of its refreshes). Strangers (peers known only
    /// from connections they made, a joining node among them) are not listed: they go with
    /// their connections ([`Peers::forget_stranger`]).
    pub(crate) fn non_members(&self, member: impl Fn(NodeId) -> bool) -> Vec<NodeId> {
        lock(&self.map)
            .values()
            .filter(|p| !member(p.id) && !p.departing.load(Ordering::SeqCst))
            .filter(|p| !p.addr.borrow().is_empty())
            // (One with a connection up is alive: a learner Raft replicates to before this
            // node has applied its admission, say.)
            .filter(|p| !*p.writer.borrow())
            .map(|p| p.id)
            .collect()
    }

    /// Where this node stood in peer `id`'s stream when it forgot it (nowhere, if it never did).
    fn remembered(&self, id: NodeId) -> Inbound {
        let mut forgotten = lock(&self.forgotten);
        match forgotten.iter().position(|(node, _)| *node == id) {
            Some(i) => forgotten.remove(i).map(|(_, inbound)| inbound).unwrap_or_default(),
            None => Inbound::default(),
        }
    }

    /// Forget peer `id` if this node only knows it from connections it accepted: not a member,
    /// and never given an address (a seed this node dialed is kept).
    pub(crate) fn forget_stranger(&self, id: NodeId) {
        let stranger = self.find(id).is_some_and(|p| p.addr.borrow().is_empty());
        if stranger && self.member_addr(id).is_none() {
            self.remove(id);
        }
    }
}
