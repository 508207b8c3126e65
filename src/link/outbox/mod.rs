//! The outbox: everything one node has to say to one peer, batched into frames.
//!
//! A [`Sender`](crate::Sender) that picks a remote receiver encodes the message straight into the
//! open [`Frame::Data`] of that peer's outbox: consecutive messages for
//! the same receiver share one frame, and no allocation is made per message. The peer's writer
//! task ([`crate::link::connection`]) takes everything queued at once, feeds it to the socket and flushes
//! only when the outbox has run dry, so many messages share one syscall.
//!
//! Every data frame is also kept, per receiver, until the receiver says its messages were taken
//! ([`Outbox::release`]); what is left when a receiver goes away comes back with
//! [`Outbox::take_kept`], to be delivered elsewhere. Every frame but Raft's own is numbered and
//! kept until the peer acknowledges it, so that a new connection resends what a broken one lost
//! ([`Outbox::resume`]).
//!
//! Credit for a sending node is coalesced per receiver and is *lazy*: a small grant does not wake
//! the writer but rides along with the next frame going to that peer (in a request/reply
//! exchange, with the reply), or goes out on its own after [`LAZY_ACK_DELAY`]. Credit a node
//! waits for, or a whole batch of it, is sent at once.

mod acks;
mod data;
mod kept;
mod stream;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use tokio::sync::{watch, Notify};

use crate::ids::EndpointId;
use crate::link::wire::{self, Frame};
use crate::sync::HashMap;

/// A list a take has emptied, to fill again: its room is kept (one allocation a round trip
/// fewer), but not a burst's (a list that held 100,000 receivers' entries once would hold their
/// room for good).
fn emptied<T>(list: Vec<T>) -> Vec<T> {
    debug_assert!(list.is_empty(), "nothing is queued on a list while it is taken");
    if list.capacity() > 256 {
        Vec::new()
    } else {
        list
    }
}

/// The longest a lazy ack waits for a frame to ride along with.
pub(crate) const LAZY_ACK_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// The most bytes of control frames queued for one peer and not yet written before its
/// requests stop being read (see [`Outbox::room_for_answers`]).
pub(crate) const MAX_CONTROL_BACKLOG: usize = 16 * 1024 * 1024;

/// The most bytes of reliable frames written to one peer and not yet acknowledged by it: past
/// this, the writer sends only the link's and Raft's own frames until the peer acknowledges
/// (a peer that never acknowledges cannot make this node keep everything it sent).
pub(crate) const MAX_UNACKED: usize = 64 * 1024 * 1024;

/// What stops a message at the outbox's lock, checked under it: its channel closed (a fence
/// may follow at any moment), or its receiver gone (what is kept for it may have been taken
/// back to go elsewhere: a message queued after that would be kept for nobody).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gate<'a> {
    pub(crate) closed: &'a AtomicBool,
    pub(crate) gone: Option<&'a AtomicBool>,
}

impl<'a> From<&'a AtomicBool> for Gate<'a> {
    fn from(closed: &'a AtomicBool) -> Self {
        Gate { closed, gone: None }
    }
}

/// Why a message was not queued.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The channel was closed before the message got in.
    Closed,
    /// The receiver went away before the message got in: it is to go to another.
    Gone,
    /// The message could not be encoded.
    Encode(rmp_serde::encode::Error),
    /// The encoded message does not fit in a frame: it would close the connection it went on.
    TooLarge {
        /// The frame it needs.
        size: usize,
        /// The largest frame allowed.
        max: usize,
    },
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Closed => f.write_str("channel closed"),
            PushError::Gone => f.write_str("receiver gone"),
            PushError::Encode(e) => write!(f, "message cannot be encoded: {e}"),
            PushError::TooLarge { size, max } => {
                write!(f, "message needs a {size}-byte frame, over the maximum of {max}")
            }
        }
    }
}

/// Frames queued for one peer.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// The largest frame the connection may carry: the smaller of this node's limit and the
    /// peer's (learned in the handshake); no message is queued that would exceed it.
    max_frame: AtomicUsize,
    /// Names this node's stream of reliable frames to the peer (random, per outbox): a peer that
    /// knows another stream has not seen any frame of this one.
    stream: u64,
    inner: Mutex<Inner>,
    /// Wakes the writer when something urgent is queued.
    ready: Notify,
    /// Wakes the writer's delayed flush when lazy acks are queued.
    lazy: Notify,
    /// Wakes readers waiting in [`Outbox::room_for_answers`] when a writer took the queue.
    drained: Notify,
    /// Bytes of control frames (answers, credit, Raft's traffic) queued and not yet taken by a
    /// writer: changed under the lock, read without it by every frame a reader takes in (see
    /// [`Outbox::room_for_answers`]).
    control_bytes: AtomicUsize,
    /// How many reliable frames the peer has acknowledged: see [`Outbox::flushed`].
    acked: watch::Sender<u64>,
    /// Whether the last dial of the peer was refused (nothing listens at its address: it
    /// stopped), until a connection writes for it again, whoever dialed: see
    /// [`Outbox::flushed`].
    refused: watch::Sender<bool>,
    /// Frames and bytes written to the peer, counted per batch by the writer (for metrics).
    frames_written: AtomicU64,
    bytes_written: AtomicU64,
}

impl Outbox {
    pub(crate) fn new(max_frame: usize) -> Self {
        Outbox {
            max_frame: AtomicUsize::new(max_frame),
            stream: crate::clock::random_u64(),
            inner: Mutex::default(),
            ready: Notify::new(),
            lazy: Notify::new(),
            drained: Notify::new(),
            control_bytes: AtomicUsize::new(0),
            acked: watch::Sender::new(0),
            refused: watch::Sender::new(false),
            frames_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Finished frames, oldest first, each marked reliable (numbered, kept until the peer has it)
    /// or not (Raft's own traffic, which Raft retries: dropped when the link breaks).
    frames: VecDeque<(Bytes, bool)>,
    /// The reliable frames taken by a writer and not yet acknowledged by the peer, oldest first:
    /// what a new connection resends.
    sent: VecDeque<Bytes>,
    /// The number of the first frame in `sent`.
    first_sent: u64,
    /// Bytes in `sent`: at most about [`MAX_UNACKED`].
    sent_bytes: usize,
    /// The number the next reliable frame taken gets.
    next_seq: u64,
    /// How many of the peer's reliable frames (of which stream of the peer's) this node has
    /// taken in: told to the peer (lazily), so that it can let go of them.
    received: Option<(u64, u64)>,
    /// The data frames being filled, one per receiver that has messages queued: messages for
    /// several receivers on one node, interleaved, still travel many to a frame.
    open: Vec<Open>,
    /// Per receiver: messages taken and credit granted, not yet put in a frame.
    acks: Vec<(EndpointId, u32, u32)>,
    /// Reply handles of the peer's this node decoded and holds, not yet claimed: id, token and
    /// hop of each (see [`Outbox::push_claim`]).
    claims: Vec<wire::Claim>,
    /// Answers to the peer's reply handles, not yet put in a frame: id, token, answer (see
    /// [`Outbox::push_answer`]).
    answers: Vec<(u64, u64, Option<Bytes>)>,
    /// Per remote receiver: the data frames sent to it, kept until it has taken every message in
    /// them, so that what it had not taken can go to another receiver if it goes away.
    kept: HashMap<EndpointId, VecDeque<Kept>>,
    /// An emptied list of `kept`, its room kept for the next (see [`Outbox::release`]).
    spare_kept: VecDeque<Kept>,
    /// Something that must go out now is queued (the writer has been or is being woken).
    urgent: bool,
    /// Lazy acks are queued and the writer's delayed flush has been armed.
    lazy_armed: bool,
    /// A frame nothing queued after it may overtake is among `frames` (see
    /// [`Outbox::push_barrier`], and claims a flush made frames of: [`Outbox::flushed`]): credit
    /// queued meanwhile goes behind it, as a frame.
    barrier: bool,
    /// The buffer the writer cuts credit and received frames from (see [`Inner::control_frame`]).
    control: BytesMut,
    /// This node said its last word to the peer ([`Outbox::push_bye`]): no message goes after.
    bye: bool,
    /// The receiver of the last data frame queued, and the most its recent frames held (see
    /// [`Inner::room_for`]).
    last_data: (EndpointId, usize),
}

/// A data frame kept for its receiver until every message in it is taken.
#[derive(Debug)]
struct Kept {
    frame: Bytes,
    /// Messages in the frame.
    count: u32,
    /// Messages at its front already taken.
    taken: u32,
    /// The frame holds broadcast copies: they are not delivered elsewhere.
    broadcast: bool,
}

/// A data frame being filled for one receiver.
#[derive(Debug)]
struct Open {
    to: EndpointId,
    /// It carries broadcast copies (a frame holds one kind or the other).
    broadcast: bool,
    buf: BytesMut,
    /// Where the 4-byte message count sits in `buf`.
    count_at: usize,
    count: u32,
}

impl Outbox {
    /// A writer wrote `frames` frames of `bytes` bytes together.
    pub(crate) fn written(&self, frames: usize, bytes: usize) {
        self.frames_written.fetch_add(frames as u64, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Frames and bytes written to the peer so far, and the bytes of reliable frames written
    /// and not yet acknowledged (what a new connection would resend).
    pub(crate) fn traffic(&self) -> (u64, u64, u64) {
        let unacked = self.lock().sent_bytes as u64;
        (
            self.frames_written.load(Ordering::Relaxed),
            self.bytes_written.load(Ordering::Relaxed),
            unacked,
        )
    }

    /// The largest frame the peer takes.
    #[inline]
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame.load(Ordering::Relaxed)
    }

    /// The peer takes frames up to `max` bytes (its hello said so): never queue larger ones.
    pub(crate) fn limit_frames(&self, max: usize) {
        self.max_frame.fetch_min(max, Ordering::Relaxed);
    }

    /// Queue a control frame behind everything queued so far: `reliable` ones are numbered and
    /// resent after a reconnect until the peer has them; the others (Raft's own traffic, which
    /// Raft retries) are dropped if the link breaks first.
    pub(crate) fn push_frame(&self, frame: Bytes, reliable: bool) {
        static OPEN: AtomicBool = AtomicBool::new(false);
        if frame.len() > self.max_frame() {
            // It would break the connection for everything queued behind it.
            tracing::error!(
                size = frame.len(),
                max = self.max_frame(),
                "control frame too large, dropped"
            );
            return;
        }
        let len = frame.len();
        let _ = self.push((&OPEN).into(), |inner| {
            inner.finish_open();
            inner.frames.push_back((frame, reliable));
            self.control_bytes.fetch_add(len, Ordering::Relaxed);
            Ok(())
        });
    }

    /// This node's last word to the peer, `Frame::Bye` (`bye`, encoded): it has handed over and
    /// sends nothing more. A message pushed from now on is refused (`PushError::Closed`, under
    /// the lock its frame is queued under): one whose send took credit before the node stopped
    /// its windows and was pushed after would reach the peer behind the word, on credit the peer
    /// had voided, and be dropped there while its sender counted it sent.
    pub(crate) fn push_bye(&self, bye: Bytes) {
        self.lock().bye = true;
        self.push_frame(bye, true);
    }

    /// A control frame that nothing queued after it may overtake: credit queued before it goes
    /// before it, credit queued after goes after it (lazy credit otherwise goes ahead of every
    /// queued frame). The answer to [`crate::rpc::Request::Rejoined`]: the peer drops the
    /// credit it reads before it as the old incarnation's, and takes what comes after.
    pub(crate) fn push_barrier(&self, frame: Bytes) {
        let len = frame.len();
        let mut inner = self.lock();
        inner.finish_open();
        let acks = std::mem::take(&mut inner.acks);
        for (to, taken, grant) in acks {
            let credit = inner.control_frame(&Frame::Credit { to, taken, grant });
            self.control_bytes.fetch_add(credit.len(), Ordering::Relaxed);
            inner.frames.push_back((credit, true));
        }
        inner.frames.push_back((frame, true));
        inner.barrier = true;
        self.control_bytes.fetch_add(len, Ordering::Relaxed);
        let wake = !std::mem::replace(&mut inner.urgent, true);
        drop(inner);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Whether the control frames queued for the peer are past [`MAX_CONTROL_BACKLOG`].
    pub(crate) fn control_backlog_full(&self) -> bool {
        self.control_bytes.load(Ordering::Relaxed) >= MAX_CONTROL_BACKLOG
    }

    /// Wait until the control frames queued for this peer and not yet written are under
    /// [`MAX_CONTROL_BACKLOG`] bytes. A connection's reader waits here before it takes in the
    /// peer's next request: a peer that asks and never reads the answers stops being read,
    /// rather than growing this queue.
    pub(crate) async fn room_for_answers(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.control_bytes.load(Ordering::Relaxed) < MAX_CONTROL_BACKLOG {
                return;
            }
            drained.await;
        }
    }

    /// Run `add` under the lock unless `closed`, and wake the writer if the outbox was empty.
    #[inline]
    fn push(
        &self,
        gate: Gate<'_>,
        add: impl FnOnce(&mut Inner) -> Result<(), PushError>,
    ) -> Result<(), PushError> {
        let mut inner = self.lock();
        if gate.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        if gate.gone.is_some_and(|g| g.load(Ordering::Acquire)) {
            return Err(PushError::Gone);
        }
        let added = add(&mut inner);
        // A failed `add` leaves no trace (see `Inner::append`): nothing to wake the writer for.
        let wake = added.is_ok() && !std::mem::replace(&mut inner.urgent, added.is_ok());
        drop(inner);
        if wake {
            self.ready.notify_one();
        }
        added
    }

    /// Whether a link is needed: something is queued, sent and not yet acknowledged, or an
    /// acknowledgement of the peer's frames is owed (the peer keeps them, and a flush before it
    /// leaves waits, until it comes).
    pub(crate) fn has_work(&self) -> bool {
        let inner = self.lock();
        inner.urgent
            || inner.received.is_some()
            || !inner.sent.is_empty()
            || !inner.frames.is_empty()
            || !inner.open.is_empty()
            || !inner.acks.is_empty()
            || !inner.claims.is_empty()
            || !inner.answers.is_empty()
    }

    /// Wait until every reliable frame pushed before this call has been acknowledged by the peer,
    /// or the peer refuses connections (it stopped: nothing will acknowledge them). Used by
    /// shutdown (under its own timeout), so that it loses nothing queued; without the second, a
    /// node leaving at the same moment as another waited for it, stopped, until the timeout.
    pub(crate) async fn flushed(&self) {
        let target = {
            let mut inner = self.lock();
            inner.finish_open();
            // Claims and answers become frames now: counted pending, a claim answered before
            // the writer took it (not sent at all) would leave the target out of reach. They go
            // where a writer would write them, ahead of everything queued, and the credit queued
            // with them after them (as frames too): it may say their messages were taken, which
            // a node must not read before the claims (see `Outbox::take`), and it goes before
            // the frames queued, a release among them. (Made frames behind what was queued, the
            // claims went after the credit: lost with the connection as their node died while
            // leaving, the asker waited for ever, the switchboard simulation's seed 61823.)
            let mut ahead: Vec<Bytes> =
                std::mem::take(&mut inner.claims).iter().map(wire::Claim::frame).collect();
            if !inner.answers.is_empty() {
                let answers = std::mem::take(&mut inner.answers);
                ahead.extend(stream::answer_frames(&answers, self.max_frame()));
            }
            for (to, taken, grant) in std::mem::take(&mut inner.acks) {
                let credit = inner.control_frame(&Frame::Credit { to, taken, grant });
                self.control_bytes.fetch_add(credit.len(), Ordering::Relaxed);
                ahead.push(credit);
            }
            // Credit queued from now on goes behind them too, as a frame (it may say taken a
            // message whose claim is among them), until a writer takes them.
            inner.barrier |= !ahead.is_empty();
            for frame in ahead.into_iter().rev() {
                inner.frames.push_front((frame, true));
            }
            let queued = inner.frames.iter().filter(|(_, reliable)| *reliable).count();
            inner.next_seq + queued as u64
        };
        let mut acked = self.acked.subscribe();
        let mut refused = self.refused.subscribe();
        tokio::select! {
            _ = acked.wait_for(|a| *a >= target) => {}
            _ = refused.wait_for(|r| *r) => {}
        }
    }

    /// Whether the last dial of the peer was refused (`true`) or a connection came up (`false`).
    pub(crate) fn dial_refused(&self, refused: bool) {
        self.refused.send_if_modified(|r| std::mem::replace(r, refused) != refused);
    }

    /// Wake whoever waits in [`Outbox::ready`] (a wake-up that went to the wrong waiter).
    pub(crate) fn kick(&self) {
        self.ready.notify_one();
    }

    /// Wait until a link is needed (see [`Outbox::has_work`]).
    pub(crate) async fn wanted(&self) {
        while !self.has_work() {
            tokio::select! {
                biased;
                _ = self.ready() => {}
                _ = self.lazy_due() => {}
            }
        }
    }

    /// Wait until something that must go out now is queued (at once if something already is).
    pub(crate) async fn ready(&self) {
        if self.lock().urgent {
            return;
        }
        self.ready.notified().await
    }

    /// Wait until lazy acks have waited [`LAZY_ACK_DELAY`] for a frame to ride along with.
    ///
    /// The frame they wait for is most often queued in the same turn of the scheduler: the
    /// message that made this node ack woke a task that answers it at once (a request and its
    /// reply, a ping-pong). So the delay starts only once the tasks woken before have run, and
    /// not at all if they queued something urgent: a timer set earlier than the runtime's next
    /// one wakes its driver (an eventfd write and one more poll), two syscalls of each process
    /// a round trip of a ping-pong (issue 21). Twice: the reader shares the writer's task, and
    /// a wake-up from it polls the task again at once, which ends the first yield there and
    /// then. (A timer kept set for the next acks instead left each process blocking with a 1 ms
    /// timeout, which on this VM doubled a ping-pong's round trip with a core busy.)
    pub(crate) async fn lazy_due(&self) {
        loop {
            self.lazy.notified().await;
            for _ in 0..2 {
                tokio::task::yield_now().await;
                if self.lock().urgent {
                    return;
                }
            }
            // (A notification kept by `Notify` for a wait that was dropped, for urgent frames
            // that took the acks along, is stale.)
            if self.lock().lazy_armed {
                break;
            }
        }
        tokio::time::sleep(LAZY_ACK_DELAY).await;
    }

    #[inline]
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }
}

#[cfg(test)]
mod tests;
