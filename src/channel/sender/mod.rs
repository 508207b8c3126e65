//! The sending end of a channel: the first stop of a message.
//!
//! `send` asks the channel's [`router`](crate::channel::router) for a receiver with room; if none has any,
//! it waits for the router to say that something changed (room freed, credit returned, a receiver
//! registered, the channel closed) and tries again. Nothing here waits on Raft.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

mod travel;

use crate::channel::registrar::Registrar;
use crate::channel::router::{Attempt, ChannelRoute};
use crate::cluster::registry::static_type_of as type_of;
use crate::error::{SendError, SendTimeoutError, TrySendError};
use crate::ids::EndpointId;
use crate::link::envelope;
use crate::Error;

/// Sends messages on a channel, to one receiver each ([`send`](Sender::send)) or to all
/// ([`broadcast`](Sender::broadcast)).
///
/// Cheap to clone; clones share one registration, removed when the last clone is dropped.
///
/// # Examples
///
/// ```
/// # #[actix::main]
/// # async fn main() -> Result<(), dchan::Error> {
/// let node = dchan::Node::builder().bootstrap().start().await?;
/// let mut rx = node.receiver::<String>("greetings").await?;
/// let tx = node.sender::<String>("greetings").await?;
/// tx.send("hello".to_string()).await.expect("open channel");
/// assert_eq!(rx.recv().await.as_deref(), Some("hello"));
/// node.shutdown().await
/// # }
/// ```
pub struct Sender<T> {
    inner: Arc<Registration>,
    _t: PhantomData<fn(T) -> T>,
}

/// The registration shared by a sender's clones (and by the senders decoded on one node from
/// messages: see [`travel`]).
struct Registration {
    node: Arc<dyn Registrar>,
    route: Arc<ChannelRoute>,
    /// Set once committed: at once for a sender made by `Node::sender`; for one decoded from a
    /// message, when its registration commits.
    id: Id,
}

/// A sender's registration: known when the sender is made (registered as its own type), or
/// set once the registration of one decoded from a message commits (registered as the type
/// the message named). (Boxed while registering: 16 bytes in every sender's share, one per
/// unnamed channel, not the 88 of tokio's `OnceCell`, a type name and a flag.)
#[derive(Debug)]
enum Id {
    Known(EndpointId),
    Registering(Box<Registering>),
}

/// A sender decoded from a message, registering (see [`Id`]).
#[derive(Debug)]
struct Registering {
    /// Set once committed.
    cell: tokio::sync::OnceCell<EndpointId>,
    /// The type it registers as.
    type_name: String,
    /// Its registration was refused for good (see [`Registration::ready`]).
    refused: std::sync::atomic::AtomicBool,
}

impl Registering {
    fn of(type_name: String) -> Box<Self> {
        let refused = std::sync::atomic::AtomicBool::new(false);
        Box::new(Registering { cell: Default::default(), type_name, refused })
    }
}

impl Id {
    fn get(&self) -> Option<EndpointId> {
        match self {
            Id::Known(id) => Some(*id),
            Id::Registering(registering) => registering.cell.get().copied(),
        }
    }
}

impl Registration {
    /// Its registration was refused for good (see [`Registration::ready`]).
    fn refused(&self) -> bool {
        let refused = |r: &Registering| r.refused.load(std::sync::atomic::Ordering::Acquire);
        matches!(&self.id, Id::Registering(r) if refused(r))
    }

    /// Registered (now, or after waiting for the registration to commit); false, with the
    /// reason logged, if it cannot be (its channel closed, or of another type, no quorum).
    /// Ready without waiting: made here, or its registration committed.
    #[inline]
    fn ready_now(&self) -> bool {
        match &self.id {
            Id::Registering(registering) => registering.cell.initialized(),
            _ => true,
        }
    }

    async fn ready(&self) -> bool {
        let Id::Registering(registering) = &self.id else { return true };
        let Registering { cell, type_name, refused } = &**registering;
        if cell.initialized() {
            return true;
        }
        let register = || {
            let (channel, type_name) = (self.route.name().to_owned(), type_name.clone());
            self.node.clone().register_sender(channel, type_name)
        };
        match cell.get_or_try_init(register).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(channel = %self.route.label(), error = %e, "a sender from a message could not register");
                // For good: its channel is closed, or of another type (no quorum may pass).
                let lasting = matches!(e, Error::ChannelClosed(_) | Error::TypeMismatch { .. });
                refused.store(lasting, std::sync::atomic::Ordering::Release);
                false
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.route.unnamed().is_some() {
            self.node.unnamed_gone(&self.route);
        } else if let Some(id) = self.id.get() {
            self.node.clone().deregister(self.route.name(), id);
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender { inner: self.inner.clone(), _t: PhantomData }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("channel", self.inner.route.label())
            .field("id", &self.inner.id)
            .finish()
    }
}

/// Whether this message spends a unit of tokio's cooperative budget, as tokio's channels do, so
/// that a loop of sends that never waits (receivers keep up) still yields to the node's tasks
/// and the application's others (`send` and `broadcast` then `consume_budget().await`; checked
/// before the await: a message that spends none makes no future). A hand-off on this node
/// spends a unit per message. A message for another node spends a unit every
/// [`REMOTE_SENDS_PER_UNIT`] messages: the connection's writer, on this thread, sends what is
/// queued each time the task yields, so yielding lets the data go out while the sender goes on
/// (without it, a window of credit goes out in one burst and the sender then waits for the
/// next), and yielding less often than tokio's channels do keeps those writes large.
#[inline]
fn spends(route: &ChannelRoute) -> bool {
    thread_local!(static REMOTE_SENDS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
    route.has_local() || {
        let next = REMOTE_SENDS.get().wrapping_add(1);
        REMOTE_SENDS.set(next);
        next.is_multiple_of(REMOTE_SENDS_PER_UNIT)
    }
}

/// See [`spends`]: with tokio's budget of 128 units a task, a sender streaming to other
/// nodes yields every 512 messages (measured with `suite/run`: 1, 4 and 16 compared; 4 was best
/// or level on 1->1, 1->2, 4->4, broadcast and 1 KiB messages).
const REMOTE_SENDS_PER_UNIT: u32 = 4;

impl<T> Sender<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(node: Arc<dyn Registrar>, route: Arc<ChannelRoute>, id: EndpointId) -> Self {
        route.typed::<T>();
        let id = Id::Known(id);
        let inner = Registration { node, route, id };
        Sender { inner: Arc::new(inner), _t: PhantomData }
    }

    /// A sender of an unnamed channel on `route` (its receiver's, or one from
    /// [`Registrar::unnamed_route`]): nothing to register.
    pub(crate) fn unnamed(node: Arc<dyn Registrar>, route: Arc<ChannelRoute>) -> Self {
        route.typed::<T>();
        let id = route.unnamed().map_or_else(
            || Id::Registering(Registering::of(type_of::<T>().to_owned())),
            |(_, id)| Id::Known(id),
        );
        let inner = Registration { node, route, id };
        Sender { inner: Arc::new(inner), _t: PhantomData }
    }

    fn route(&self) -> &ChannelRoute {
        &self.inner.route
    }

    /// The node this sender belongs to.
    pub(crate) fn registrar(&self) -> &dyn Registrar {
        &*self.inner.node
    }

    /// Send `msg` to exactly one receiver of the channel, waiting for room if every receiver is
    /// full and for a receiver if there is none.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message if the channel is closed (or the message cannot be encoded,
    /// which is logged).
    ///
    /// # Cancel safety
    ///
    /// Cancelling the future drops the message unsent; no receiver gets it.
    pub async fn send(&self, msg: T) -> Result<(), SendError<T>> {
        // (The waits are boxed, made only by a send that waits: every send's future stays the
        // size of its message and a few pointers, not of the waiting's state, 344 bytes for a
        // u64 before; it is moved and polled once per message.)
        if !self.inner.ready_now() && !Box::pin(self.inner.ready()).await {
            return Err(SendError(msg));
        }
        if spends(self.route()) {
            tokio::task::coop::consume_budget().await;
        }
        let msg = match self.route().try_send(msg) {
            Attempt::Sent => return Ok(()),
            Attempt::Closed(m) => return Err(SendError(m)),
            Attempt::Full(m) | Attempt::NoReceivers(m) => m,
        };
        Box::pin(self.send_waiting(msg, None)).await.map_err(|e| SendError(e.into_inner()))
    }

    /// Send `msg` to one receiver if one has room right now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] if every receiver is full (or this sender came in a message and
    /// its registration on this node has not committed yet; refused for good, `Closed`),
    /// [`TrySendError::NoReceivers`] if there is
    /// none, [`TrySendError::Closed`] if the channel is closed (or the message, bound for another
    /// node, cannot be encoded, which is logged). Each hands the message back.
    pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
        if self.inner.id.get().is_none() {
            // A sender from a message: still registering, or refused for good.
            if self.inner.refused() {
                return Err(TrySendError::Closed(msg));
            }
            return Err(TrySendError::Full(msg));
        }
        match self.route().try_send(msg) {
            Attempt::Sent => Ok(()),
            Attempt::Full(m) => Err(TrySendError::Full(m)),
            Attempt::NoReceivers(m) => Err(TrySendError::NoReceivers(m)),
            Attempt::Closed(m) => Err(TrySendError::Closed(m)),
        }
    }

    /// Like [`send`](Sender::send), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`SendTimeoutError::Timeout`] when no receiver took the message in time,
    /// [`SendTimeoutError::Closed`] if the channel is closed. Each hands the message back.
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Sender::send).
    pub async fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.inner.ready()).await {
            Ok(true) => self.send_waiting(msg, Some(deadline)).await,
            Ok(false) => Err(SendTimeoutError::Closed(msg)),
            Err(_) => Err(SendTimeoutError::Timeout(msg)),
        }
    }

    async fn send_waiting(
        &self,
        mut msg: T,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), SendTimeoutError<T>> {
        let route = self.route();
        let started = std::time::Instant::now();
        // Counted as blocked from the first wait until done (or cancelled: dropped with it).
        let mut blocked = None;
        let mut waiting = route.wait_for_room();
        let result = loop {
            match route.try_send(msg) {
                Attempt::Sent => break Ok(()),
                Attempt::Closed(m) => break Err(SendTimeoutError::Closed(m)),
                Attempt::Full(m) | Attempt::NoReceivers(m) => msg = m,
            }
            blocked.get_or_insert_with(|| route.counters.blocked());
            match deadline {
                None => waiting.changed().await,
                Some(d) => tokio::select! {
                    biased;
                    _ = waiting.changed() => {}
                    _ = tokio::time::sleep_until(d) => break Err(SendTimeoutError::Timeout(msg)),
                },
            }
        };
        // (`send_timeout` comes here first: only a send that waited is a blocked one.)
        if blocked.take().is_some() {
            self.registrar().send_blocked(route, started.elapsed());
        }
        result
    }

    /// Send a copy of `msg` to every receiver registered now, waiting for room in each, and
    /// return how many got it (0 when the channel has no receiver: unlike `send`, a broadcast
    /// does not wait for one). The message is encoded once.
    ///
    /// # Errors
    ///
    /// [`SendError`] with the message if the channel is closed (or the message cannot be encoded).
    /// Receivers reached before the close keep their copy.
    ///
    /// # Cancel safety
    ///
    /// Cancelling may leave some receivers with a copy and others without.
    pub async fn broadcast(&self, msg: T) -> Result<usize, SendError<T>> {
        // (As `send`: nothing boxed or awaited unless it waits.)
        if !self.inner.ready_now() && !Box::pin(self.inner.ready()).await {
            return Err(SendError(msg));
        }
        let route = self.route();
        if spends(route) {
            tokio::task::coop::consume_budget().await;
        }
        // (Encoded once for every receiver: after its trace context, if it has one; into room
        // for as much as the last broadcast of this thread took, grown at most once or twice.)
        thread_local!(static LAST_LEN: std::cell::Cell<usize> = const { std::cell::Cell::new(64) });
        let mut bytes = Vec::with_capacity(LAST_LEN.get());
        if let Some(tp) = crate::channel::trace::outgoing(route.label()) {
            envelope::put_header(&mut bytes, envelope::TRACEPARENT, &tp);
        }
        let bytes: bytes::Bytes = match rmp_serde::encode::write_named(&mut bytes, &msg) {
            Ok(()) => {
                LAST_LEN.set(bytes.len());
                // Copies for this node's receivers share these bytes until taken: a buffer
                // reserved for a larger broadcast is not kept for a small one (no more room
                // than the Vec's own growth would have left).
                if bytes.capacity() > 2 * bytes.len() + 64 {
                    bytes.shrink_to_fit();
                }
                bytes.into()
            }
            Err(e) => {
                tracing::error!(channel = %route.label(), error = %e, "message cannot be encoded");
                crate::channel::oneshot::revive(&msg);
                return Err(SendError(msg));
            }
        };
        // Every receiver with room now gets its copy at once; the others, one by one.
        let copies = route.place_copies(&bytes);
        let mut reached = copies.reached;
        if copies.closed {
            if reached == 0 {
                // No copy went: the reply handles in it answer again.
                crate::channel::oneshot::revive(&msg);
            }
            return Err(SendError(msg));
        }
        let mut blocked = None;
        for id in copies.full {
            // Made only once this receiver still has no room, then tried again before waiting
            // (a change between the try and the wait's start is not missed), as `send` does.
            let mut waiting = None;
            loop {
                match route.try_send_encoded(&bytes, Some(id), false) {
                    Attempt::Sent => {
                        reached += 1;
                        break;
                    }
                    Attempt::Closed(()) => {
                        if reached == 0 {
                            // No copy went: the reply handles in it answer again.
                            crate::channel::oneshot::revive(&msg);
                        }
                        return Err(SendError(msg));
                    }
                    // The receiver is gone since the broadcast started: it needs no copy.
                    Attempt::NoReceivers(()) => break,
                    Attempt::Full(()) => match waiting.as_mut() {
                        None => waiting = Some(route.wait_for_room()),
                        Some(w) => {
                            blocked.get_or_insert_with(|| route.counters.blocked());
                            w.changed().await;
                        }
                    },
                }
            }
        }
        if reached == 0 {
            // No copy went: dropped here, the reply handles in it tell their askers.
            crate::channel::oneshot::revive(&msg);
        }
        Ok(reached)
    }

    /// Wait until the channel has at least `n` receivers (as this node sees it), or is closed.
    /// Useful before a [`broadcast`](Sender::broadcast) that should reach receivers being
    /// registered on other nodes.
    ///
    /// # Errors
    ///
    /// [`SendError`] (holding `n`) if the channel is closed first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn wait_for_receivers(&self, n: usize) -> Result<(), SendError<usize>> {
        let route = self.route();
        let mut waiting = route.wait();
        loop {
            if route.refuses_sends() {
                return Err(SendError(n));
            }
            if route.receiver_count() >= n {
                return Ok(());
            }
            waiting.changed().await;
        }
    }

    /// Close the channel cluster-wide. Returns once the close is committed: from then on every
    /// send on this node fails with `Closed`, as it does on every other node once it applies the
    /// close (promptly). Receivers yield what was sent before, then `None`.
    ///
    /// An unnamed channel's close ([`Node::channel`](crate::Node::channel)) commits nothing: it
    /// returns at once, every send on this node fails with `Closed` from then on, and on the
    /// other nodes once the receiver's node has asked them (one round trip); the receiver yields
    /// what every node sent before, then `None`.
    ///
    /// # Errors
    ///
    /// [`Error::Registry`] if Raft could not commit the close in time.
    pub async fn close(&self) -> Result<(), Error> {
        if self.inner.route.unnamed().is_some() {
            self.inner.node.shut(&self.inner.route);
            return Ok(());
        }
        self.inner.node.close(self.route().name()).await
    }

    /// Wait until every message this node sent on the channel has been taken by a receiving
    /// application (on another node: its node said so; a message re-routed from a receiver that
    /// went away counts once taken where it went). Call it before a short-lived process leaves:
    /// a message is lost only if its sending node is gone before it is received, so a process
    /// that waits here and then shuts down loses nothing to a receiving node that dies after.
    ///
    /// Woken by what the receivers say they took; bound it with a timeout if they may never
    /// take them.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn wait_taken(&self) {
        let route = self.route();
        // Made before the check: a "taken" between the check and the wait is not missed (every
        // one wakes the route's waiters, as do re-routing and a receiver's node leaving).
        let mut waiting = route.wait();
        while route.in_flight() > 0 || route.is_rerouting() {
            waiting.changed().await;
        }
    }

    /// How many receivers the channel has, as this node sees it now.
    pub fn receiver_count(&self) -> usize {
        self.route().receiver_count()
    }

    /// Whether the channel is closed (as this node sees it now), or this node is shutting
    /// down ([`Node::shutdown`](crate::Node::shutdown)): either way sends fail with `Closed`.
    pub fn is_closed(&self) -> bool {
        self.route().refuses_sends()
    }

    /// The channel's name.
    pub fn channel(&self) -> &str {
        self.route().name()
    }
}
