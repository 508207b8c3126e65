//! Connections: dialing and accepting them, the handshake on each, and the loops that move
//! frames (the framing itself is the transport's: [`crate::link::transport`]).
//!
//! A connection starts with a hello each way (who is talking, where to dial it back). It is then
//! read by [`read_loop`], which hands each frame up through [`Dispatch`] (the node implements it;
//! this module does not know the node): data, credit, fences and releases, and requests (Raft RPCs in
//! order, on a task of their own); answers go to whoever waits for them. If it is the first connection between the two nodes it also becomes the
//! peer's writer ([`writer::write_loop`]), on both sides: one connection per pair of nodes, both ways.
//! [`keep_connected`] dials a peer only when something is queued for it and no connection writes
//! for it. A frame that is too large (the transport's codec checks the length prefix before
//! anything is allocated) or malformed closes that one connection with a logged reason.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::Cause;
use crate::ids::NodeId;
use crate::link::dispatch::Dispatch;
use crate::link::handshake::{self, Me, PeerHello, Secret, HANDSHAKE_MAX_FRAME};
use crate::link::peer::{Peer, Peers, WriterClaim};
use crate::link::transport::{framed, FramedTcp, TlsConfig};
use crate::link::wire::{self, Frame};
use crate::link::writer;
use crate::rpc::{Request, Response};
use crate::sync::lock;
use crate::tasks::Tasks;
use crate::Error;

/// The most connections a node accepts at once (each holds a task and buffers): enough for
/// hundreds of nodes, each with a link and a connection being replaced.
pub(crate) const MAX_CONNECTIONS: usize = 1024;

/// The most accepted connections in their handshake at once (each has at most the handshake
/// timeout, [`HANDSHAKE_TIMEOUT`](handshake::HANDSHAKE_TIMEOUT) on a LAN, to finish it).
pub(crate) const MAX_HANDSHAKES: usize = 128;

/// Raft requests from one connection waiting to be answered, at most (Raft has a few in flight
/// per peer; it sends again what is dropped).
const MAX_QUEUED_RPCS: usize = 64;

/// Bytes of Raft requests from one connection waiting to be answered, at most (as received:
/// a frame may be as large as the frame limit).
const MAX_QUEUED_RPC_BYTES: usize = 32 * 1024 * 1024;

/// Other requests from one connection being answered at once, at most (each may wait for a
/// commit); one more is refused with "busy" (a write is retried) or not answered (a read).
const MAX_REQUESTS: usize = 256;

/// What every connection of one node shares: who the node is, its limits, its peers, and where
/// frames go.
pub(crate) struct Links {
    pub(crate) me: NodeId,
    /// The address this node gives in its hello (where to dial it back).
    pub(crate) advertised: String,
    pub(crate) peers: Arc<Peers>,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: Tasks,
    /// The node, weakly: links do not keep it alive.
    pub(crate) dispatch: Weak<dyn Dispatch>,
    /// The cluster secret every connection proves in its handshake.
    pub(crate) secret: Secret,
    /// TLS under every connection, if configured.
    pub(crate) tls: Option<TlsConfig>,
    /// How long a connection's set-up may take ([`HANDSHAKE_TIMEOUT`](handshake::HANDSHAKE_TIMEOUT) on a LAN).
    pub(crate) handshake_timeout: Duration,
    /// Connections accepted and not yet closed, handshakes included: at most
    /// [`MAX_CONNECTIONS`]; one more is closed at once.
    pub(crate) accepted: Arc<tokio::sync::Semaphore>,
    /// Accepted connections still in their handshake: at most [`MAX_HANDSHAKES`], so that
    /// strangers holding sockets open cannot take every connection a member may need.
    pub(crate) handshaking: Arc<tokio::sync::Semaphore>,
}

impl Links {
    /// How this node introduces itself in a handshake.
    pub(crate) fn intro(&self) -> Me {
        Me {
            node: self.me,
            addr: self.advertised.clone(),
            max_frame: self.peers.max_frame,
            secret: self.secret.clone(),
            tls: self.tls.clone(),
            handshake_timeout: self.handshake_timeout,
        }
    }
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links").field("me", &self.me).finish_non_exhaustive()
    }
}

/// A connection this node dialed, past the handshake.
#[derive(Debug)]
pub(crate) struct Dialed {
    pub(crate) hello: PeerHello,
    pub(crate) framed: FramedTcp,
}

/// Dial `addr` and go through the handshake (connect included, within `me`'s handshake timeout);
/// `received` is how much of the peer's stream of reliable frames this node has, if it is `expect`.
pub(crate) async fn dial(
    addr: &str,
    me: &Me,
    expect: Option<(NodeId, Option<(u64, u64)>)>,
) -> Result<Dialed, Error> {
    let handshake = async {
        let stream = TcpStream::connect(addr).await?;
        // Small frames must not wait for Nagle: batching is done by the outbox, not the kernel.
        let _ = stream.set_nodelay(true);
        let stream = crate::link::transport::connect(me.tls.as_ref(), stream, addr).await?;
        let mut framed = framed(stream, HANDSHAKE_MAX_FRAME);
        let received = |node| expect.and_then(|(id, r)| if id == node { r } else { None });
        let hello = handshake::dial(&mut framed, addr, me, received).await?;
        Ok(Dialed { hello, framed })
    };
    tokio::time::timeout(me.handshake_timeout, handshake)
        .await
        .map_err(|_| Error::Io(std::io::ErrorKind::TimedOut.into()))?
}

/// Keep a link to `peer` while it is needed (something queued, sent and not acknowledged, or an
/// acknowledgement owed) and no other connection writes for it: dial, run the connection until
/// it breaks, and start again with backoff, until the node shuts down or the peer leaves. A
/// broken link keeps its reliable frames: the next connection resends what the peer lacks.
pub(crate) async fn keep_connected(links: Weak<Links>, peer: Arc<Peer>) {
    let stop = peer.stop.clone();
    let mut backoff = Duration::from_millis(20);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = async {
                loop {
                    peer.addressed().await;
                    peer.writer_is(false).await;
                    // Not once a connection the peer dialed writes: its wake-ups are its own (an
                    // acknowledgement that woke this task instead was never sent). One this task
                    // took on its way out is passed on.
                    tokio::select! {
                        biased;
                        _ = peer.outbox.wanted() => return,
                        _ = peer.writer_is(true) => peer.outbox.kick(),
                    }
                }
            } => {}
        }
        let Some(claim) = peer.claim_writer() else {
            // An accepted connection became the writer meanwhile: the wake-up was its.
            peer.outbox.kick();
            continue;
        };
        let Some(node) = links.upgrade() else { return };
        let me = node.intro();
        let addr = peer.addr();
        let run = async {
            let received = lock(&peer.inbound).received();
            let conn = dial(&addr, &me, Some((peer.id, received))).await?;
            if conn.hello.node != peer.id {
                return Err(Error::join(format!(
                    "{addr} is node {}, expected node {}",
                    conn.hello.node, peer.id
                )));
            }
            tracing::debug!(%addr, "connected");
            backoff = Duration::from_millis(20);
            peer.outbox.limit_frames(conn.hello.max_frame);
            run(&node, conn.framed, &peer, Some((claim, conn.hello.received))).await
        };
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            res = run => match res {
                Err(e @ Error::Auth(_)) => tracing::warn!(error = %e, "link refused"),
                // Nothing listens there: the peer stopped, and a flush no longer waits for it.
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tracing::debug!(error = %e, "link refused: the peer stopped");
                    peer.outbox.dial_refused(true);
                }
                Err(e) => tracing::debug!(error = %e, "link down"),
                Ok(()) => {}
            },
        }
        drop(node);
        // Requests in flight are left to their own timeouts. Raft's own frames queued for a peer
        // that cannot be reached would pile up (Raft retries them anyway): they go. Everything
        // else waits for the next connection.
        let dropped = peer.outbox.drop_unreliable();
        if dropped > 0 {
            tracing::debug!(frames = dropped, "dropped Raft frames for an unreachable peer");
        }
        if tokio::time::timeout(backoff, stop.cancelled()).await.is_ok() {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// Use a connection this node dialed for something else (a join's first contact with a seed) as
/// `peer`'s link if no other connection writes for it; else close it (both would dial again).
pub(crate) fn adopt(links: &Arc<Links>, peer: &Arc<Peer>, conn: Dialed) {
    let Some(claim) = peer.claim_writer() else { return };
    peer.outbox.limit_frames(conn.hello.max_frame);
    let (links, peer) = (links.clone(), peer.clone());
    let span = tracing::info_span!("link", node = links.me, peer = peer.id);
    let tasks = links.tasks.clone();
    tasks.spawn(
        async move {
            if let Err(e) =
                run(&links, conn.framed, &peer, Some((claim, conn.hello.received))).await
            {
                tracing::debug!(error = %e, "link down");
            }
        }
        .instrument(span),
    );
}

/// Accept connections until the node shuts down.
pub(crate) async fn accept_loop(listener: TcpListener, core: Arc<Links>) {
    loop {
        let (stream, from) = tokio::select! {
            biased;
            _ = core.cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = core.accepted.clone().try_acquire_owned() else {
            tracing::warn!(%from, "too many connections ({MAX_CONNECTIONS}): one more closed");
            continue;
        };
        let Ok(shaking) = core.handshaking.clone().try_acquire_owned() else {
            tracing::warn!(%from, "too many handshakes at once ({MAX_HANDSHAKES}): one more closed");
            continue;
        };
        let span = tracing::info_span!("conn", node = core.me, %from);
        let c = core.clone();
        core.tasks.spawn(
            async move {
                match serve(stream, &c, shaking).await {
                    Err(e @ Error::Auth(_)) => tracing::warn!(reason = %e, "connection refused"),
                    // (A probe that connects and closes, a peer that went: not news at info.)
                    Err(e) => tracing::debug!(reason = %e, "connection closed"),
                    Ok(()) => {}
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Handshake on an accepted connection, then run it: as the peer's writer too if no other
/// connection is.
async fn serve(
    stream: TcpStream,
    core: &Arc<Links>,
    shaking: tokio::sync::OwnedSemaphorePermit,
) -> Result<(), Error> {
    let _ = stream.set_nodelay(true);
    let me = core.intro();
    let received = |node| core.peers.find(node).and_then(|p| lock(&p.inbound).received());
    let handshake = async {
        let stream = crate::link::transport::accept(me.tls.as_ref(), stream).await?;
        let mut framed = framed(stream, HANDSHAKE_MAX_FRAME);
        let theirs = handshake::accept(&mut framed, &me, received).await?;
        Ok::<_, Error>((framed, theirs))
    };
    let (framed, theirs) = tokio::time::timeout(me.handshake_timeout, handshake)
        .await
        .map_err(|_| Error::codec("no handshake within the handshake timeout"))??;
    drop(shaking);
    // Dialed back at the address the membership gives, not at the one it claims (see
    // `Peers::dial_back`).
    let peer = core.peers.get_or_add(theirs.node, &core.peers.dial_back(theirs.node, &theirs.addr));
    peer.outbox.limit_frames(theirs.max_frame);
    let claim = match peer.claim_writer() {
        Some(claim) => Some(claim),
        // Both nodes dialed: the lower id's connection is the one both write on.
        None if theirs.node < core.me => tokio::select! {
            biased;
            _ = core.cancel.cancelled() => return Ok(()),
            c = peer.take_over_writer() => c,
        },
        None => None,
    };
    let result = run(core, framed, &peer, claim.map(|c| (c, theirs.received))).await;
    // A node this one only knows from connections it accepted (a joining node that went, a
    // client that knew the secret): forgotten with its link, unless it comes back or joins
    // meanwhile.
    core.peers.forget_stranger(theirs.node);
    result
}

/// Read (and, holding the writer claim, write) one connection until it breaks or the node stops.
/// The claim comes with what the peer's hello said it has of this node's reliable frames.
async fn run(
    core: &Arc<Links>,
    framed: FramedTcp,
    peer: &Arc<Peer>,
    claim: Option<(WriterClaim, Option<(u64, u64)>)>,
) -> Result<(), Error> {
    // The reader keeps the codec (and what the handshake read ahead); the writer writes the
    // frames itself (see `link::writer`).
    let parts = framed.into_parts();
    debug_assert!(parts.write_buf.is_empty(), "the handshake flushed what it wrote");
    let (read, write) = tokio::io::split(parts.io);
    let mut reading = FramedParts::new::<Bytes>(read, parts.codec);
    reading.read_buf = parts.read_buf;
    let stream = Framed::from_parts(reading);
    let resume = claim.as_ref().map(|(_, received)| *received);
    // Stopped when the node stops, the peer stops, or (the writer) another connection takes
    // over: one token, a child of the other two (the peer's stop is the node's child), since
    // the select polls it at every wake-up of the loops (three tokens cost about 1,500
    // instructions a round trip in a ping-pong; issue 21).
    let stop = claim.as_ref().map_or_else(|| peer.stop.clone(), |(c, _)| c.displaced.clone());
    let result = tokio::select! {
        biased;
        _ = stop.cancelled() => {
            if !peer.stop.is_cancelled() && !core.cancel.is_cancelled() {
                tracing::debug!("another connection took over");
            }
            Ok(())
        }
        r = read_loop(core, stream, peer) => r,
        w = async {
            match resume {
                Some(received) => writer::write_loop(write, &peer.outbox, received).await,
                None => std::future::pending().await,
            }
        } => w,
    };
    drop(claim);
    result
}

/// Where a connection is in the peer's stream of reliable frames.
#[derive(Debug, Default)]
struct Position {
    /// The stream its [`Frame::Resume`] named; `None` before it came.
    stream: Option<u64>,
    /// The number of the next reliable frame it carries.
    next: u64,
}

/// Dispatch every frame the peer sends until the connection closes.
async fn read_loop(
    core: &Arc<Links>,
    mut stream: impl futures::Stream<Item = std::io::Result<bytes::BytesMut>> + Unpin,
    peer: &Arc<Peer>,
) -> Result<(), Error> {
    let mut reader = Reader::new(core.clone(), peer.clone());
    while let Some(buf) = stream.next().await {
        let buf = buf?.freeze();
        peer.heard();
        let frame = wire::decode(&buf).map_err(|e| Error::codec(Cause::of(e)))?;
        if !matches!(frame, Frame::Response { .. } | Frame::Received { .. }) {
            // Any frame may cause an answer (a response, credit, a release): a peer that does
            // not read what it is sent stops being read (bounded in bytes).
            peer.outbox.room_for_answers().await;
        }
        if !reader.take_in(frame, &buf)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Hands one connection's frames up, in order.
///
/// Reliable frames are numbered (from the connection's [`Frame::Resume`]) and handed up only if
/// they are the next the node has not taken in: a frame resent after a reconnect that came
/// already, or one still arriving on an older connection, is skipped. Each frame taken in is
/// acknowledged to the peer (lazily), so it can let go of it. (The delivery protocol's
/// simulation reads its simulated connections with this too.)
pub(crate) struct Reader {
    core: Arc<Links>,
    peer: Arc<Peer>,
    /// Where the connection is in the peer's stream.
    at: Position,
    /// Raft RPCs are answered in the order they came, on a task of their own (started on the
    /// first), so that a slow append never holds up the data behind it on this connection. At
    /// most [`MAX_QUEUED_RPCS`] wait; more are dropped (Raft sends them again).
    rpc_tx: Option<mpsc::Sender<(u64, Request, OwnedSemaphorePermit)>>,
    /// The bytes of the Raft requests waiting, at most [`MAX_QUEUED_RPC_BYTES`].
    rpc_bytes: Arc<Semaphore>,
    /// Other requests being answered, at most [`MAX_REQUESTS`] at once.
    requests: Arc<tokio::sync::Semaphore>,
}

impl Reader {
    pub(crate) fn new(core: Arc<Links>, peer: Arc<Peer>) -> Self {
        Reader {
            core,
            peer,
            at: Position::default(),
            rpc_tx: None,
            rpc_bytes: Arc::new(Semaphore::new(MAX_QUEUED_RPC_BYTES)),
            requests: Arc::new(tokio::sync::Semaphore::new(MAX_REQUESTS)),
        }
    }

    /// Take in `frame`, decoded from `buf`, the next of the connection. False: the node is gone
    /// (dropped without a shutdown), nothing to hand frames to. An error closes the connection.
    pub(crate) fn take_in(&mut self, frame: Frame<'_>, buf: &Bytes) -> Result<bool, Error> {
        let Some(up) = self.core.dispatch.upgrade() else { return Ok(false) };
        let peer = self.peer.clone();
        if !frame.is_reliable() {
            match frame {
                Frame::Resume { stream, from } => {
                    let mut inbound = lock(&peer.inbound);
                    if inbound.stream != Some(stream) {
                        inbound.stream = Some(stream);
                        inbound.count = from;
                    } else if from > inbound.count {
                        tracing::warn!(
                            missing = from - inbound.count,
                            "the peer resumes past frames this node never got"
                        );
                        inbound.count = from;
                    }
                    self.at = Position { stream: Some(stream), next: from };
                }
                Frame::Received { stream, count } => peer.outbox.acknowledged(stream, count),
                Frame::Hello { .. }
                | Frame::Challenge { .. }
                | Frame::Proof { .. }
                | Frame::Welcome { .. }
                | Frame::Refused { .. } => {
                    return Err(Error::codec("a handshake frame after the handshake"))
                }
                frame => self.dispatch(&up, frame, buf),
            }
            return Ok(true);
        }
        let Some(stream) = self.at.stream else {
            return Err(Error::codec("a numbered frame before the stream was named"));
        };
        let seq = self.at.next;
        self.at.next = self
            .at
            .next
            .checked_add(1)
            .ok_or_else(|| Error::codec("the peer's frame numbers ran out"))?;
        let mut inbound = lock(&peer.inbound);
        if inbound.stream != Some(stream) || seq < inbound.count {
            // A newer stream took over, or the frame came already: skip it.
            return Ok(true);
        }
        if seq > inbound.count {
            return Err(Error::codec(format!(
                "frame {seq} of the peer's stream arrived before frame {}",
                inbound.count
            )));
        }
        inbound.count += 1;
        let count = inbound.count;
        // Handed up under the lock: another connection from the peer waits, and order holds.
        self.dispatch(&up, frame, buf);
        drop(inbound);
        peer.outbox.push_received(stream, count);
        Ok(true)
    }
    fn dispatch(&mut self, up: &Arc<dyn Dispatch>, frame: Frame<'_>, buf: &Bytes) {
        let (core, peer, remote) = (&self.core, &self.peer, self.peer.id);
        match frame {
            Frame::Data { to, copies, msgs } => {
                up.frames().data(remote, to, copies, (buf, &msgs));
            }
            Frame::Credit { to, taken, grant } => up.frames().credit(remote, to, taken, grant),
            Frame::Want { to } => up.frames().want(remote, to),
            Frame::Reclaim { to } => up.frames().reclaim(remote, to),
            Frame::Return { to, n, last } => up.frames().returned(remote, to, n, last),
            Frame::Bye {} => up.frames().bye(remote),
            Frame::Fence { channel, created } => up.frames().fence(remote, &channel, created),
            Frame::Released { to } => up.frames().released(remote, to),
            Frame::Shut { to, ask } => up.frames().shut(remote, to, ask),
            Frame::Answers { answers } => {
                use crate::link::replies::Answer;
                for (id, token, body) in answers {
                    let answer = body.map_or(Answer::Dropped, |b| Answer::Value(buf.slice_ref(b)));
                    self.core.peers.replies.complete(id, token, answer);
                }
            }
            // This peer holds a handle of `asker`, which it came in a message from this node:
            // passed on to the asker (the holder is the peer, whatever the frame says).
            Frame::Held { id, token, hop, asker: Some(asker), .. } => {
                self.core.peers.held_by(asker, remote, id, token, hop);
            }
            // A claim the node that carried the handle passes on.
            Frame::Held { id, token, hop, asker: None, holder: Some(holder) } => {
                self.core.peers.held_by(self.core.peers.me, holder, id, token, hop);
            }
            Frame::Held { id, token, hop, asker: None, holder: None } => {
                self.core.peers.replies.held(id, token, remote, hop);
                // A claim read after its node's removal was seen: no removal will come again
                // to tell its asker, so look now.
                if peer.is_departing() {
                    self.core.peers.holder_left(remote);
                }
            }
            Frame::Response { id, body } => {
                let rejoined = matches!(*body, Response::Rejoined(_));
                if peer.complete(id, *body) && rejoined {
                    up.frames().rejoin_answered(remote);
                }
            }
            Frame::Request { id, body } => match *body {
                req @ (Request::AppendEntries(_)
                | Request::Vote(_)
                | Request::InstallSnapshot(_)) => {
                    let tx = self.rpc_tx.get_or_insert_with(|| {
                        let (tx, rx) = mpsc::channel(MAX_QUEUED_RPCS);
                        let task = answer_in_order(core.clone(), peer.clone(), rx);
                        core.tasks.spawn(task.in_current_span());
                        tx
                    });
                    let size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
                    let queued = self.rpc_bytes.clone().try_acquire_many_owned(size).ok();
                    if queued.and_then(|room| tx.try_send((id, req, room)).ok()).is_none() {
                        tracing::debug!("too many Raft requests waiting: one dropped");
                    }
                }
                // Writes and membership changes may wait for a commit: answered concurrently.
                req => {
                    let Ok(permit) = self.requests.clone().try_acquire_owned() else {
                        tracing::warn!("too many requests at once ({MAX_REQUESTS}): one refused");
                        let busy = || format!("node {} is busy: try again", core.me);
                        match req {
                            Request::Write(_) => respond(peer, id, Response::Write(Err(busy()))),
                            Request::Join { .. } | Request::Leave { .. } => {
                                respond(peer, id, Response::Membership(Err(busy())));
                            }
                            _ => {}
                        }
                        return;
                    };
                    let (answer, p) = (up.clone().request(remote, req), peer.clone());
                    core.tasks.spawn(
                        async move {
                            if let Some(answer) = answer.await {
                                respond(&p, id, answer);
                            }
                            drop(permit);
                        }
                        .in_current_span(),
                    );
                }
            },
            // The link's own frames (handshake, resume, received): the read loop's.
            _ => {}
        }
    }
}

async fn answer_in_order(
    core: Arc<Links>,
    peer: Arc<Peer>,
    mut rx: mpsc::Receiver<(u64, Request, OwnedSemaphorePermit)>,
) {
    while let Some((id, req, _room)) = rx.recv().await {
        let Some(up) = core.dispatch.upgrade() else { return };
        let resp = tokio::select! {
            biased;
            _ = core.cancel.cancelled() => return,
            r = up.request(peer.id, req) => r,
        };
        if let Some(resp) = resp {
            respond(&peer, id, resp);
        }
    }
}

fn respond(peer: &Peer, id: u64, resp: Response) {
    let reliable = resp.is_reliable();
    let barrier = matches!(resp, Response::Rejoined(_));
    let frame = wire::encode(&Frame::Response { id, body: Box::new(resp) });
    if barrier {
        // Credit granted after the answer must not reach the asker before it (see
        // `Credits::answered`).
        peer.outbox.push_barrier(frame);
    } else {
        peer.outbox.push_frame(frame, reliable);
    }
}
