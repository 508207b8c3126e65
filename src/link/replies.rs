//! Answers waited for on this node: the far end of a reply handle (issue 19). A handle is an id
//! and a random token in this node's table; whichever node holds the handle answers with a
//! [`Frame::Answers`](crate::link::wire::Frame::Answers) straight to this node (or in-process, if
//! it is this node), and the connection's reader completes the entry here. No registry write,
//! no Raft commit: an entry lives as long as its asker waits.
//!
//! A node that decodes a handle from a message claims it
//! ([`Frame::Held`](crate::link::wire::Frame::Held)): if that node then leaves the cluster (it
//! died, or was removed) and no other node claims the handle within [`HOLDER_GRACE`] (a
//! request redelivered to another receiver), the asker is told the handle is lost instead of
//! waiting for an answer that cannot come.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::ids::NodeId;
use crate::sync::{lock, HashMap};

/// How long the asker waits, once the node holding a handle left, for another node to claim
/// it (a request redelivered elsewhere after its receiving node died) before it is told the
/// handle is lost. The hand-over time of a leaving node's messages
/// (`switchboard::HAND_OVER_TIMEOUT`).
pub(crate) const HOLDER_GRACE: Duration = Duration::from_secs(5);

/// What came for a reply handle.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The answer, MessagePack-encoded.
    Value(Bytes),
    /// The handle was dropped without an answer.
    Dropped,
    /// The node holding the handle left the cluster, and no other node claimed it in time.
    Lost(NodeId),
    /// This node was removed from the cluster while alive: an answer on its way may be lost.
    Removed,
}

/// Where an entry's answers go.
#[derive(Debug)]
enum Waiter {
    /// One answer: the first is taken, later ones refused.
    One(oneshot::Sender<Answer>),
    /// Up to `left` answers (a request broadcast to every receiver: each copy of the handle
    /// answers once).
    Many { tx: mpsc::UnboundedSender<Answer>, left: usize },
}

/// One handle this node waits on.
#[derive(Debug)]
struct Entry {
    token: u64,
    waiter: Waiter,
    /// The node that claimed the handle last, and how far from here it was.
    holder: Option<(NodeId, u32)>,
}

/// The answers this node waits for, by handle id.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    /// The node stopped: nothing more is waited for.
    closed: std::sync::atomic::AtomicBool,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, Entry>>,
    /// Nodes that left, whose handles wait out their grace (see [`Replies::grace_starts`]).
    grace: Mutex<std::collections::HashSet<NodeId>>,
}

impl Replies {
    /// A new entry: its id, its token, and where its answer comes.
    pub(crate) fn open(&self) -> (u64, u64, oneshot::Receiver<Answer>) {
        let (tx, rx) = oneshot::channel();
        let (id, token) = self.insert(Waiter::One(tx));
        (id, token, rx)
    }

    /// A new entry that takes up to `max` answers (at least one).
    pub(crate) fn open_many(&self, max: usize) -> (u64, u64, mpsc::UnboundedReceiver<Answer>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (id, token) = self.insert(Waiter::Many { tx, left: max.max(1) });
        (id, token, rx)
    }

    fn insert(&self, waiter: Waiter) -> (u64, u64) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = crate::clock::random_u64();
        let mut waiting = lock(&self.waiting);
        // (Checked under the lock `close` takes: an entry made after it would wait for ever.)
        if !self.closed.load(Ordering::SeqCst) {
            waiting.insert(id, Entry { token, waiter, holder: None });
        }
        (id, token)
    }

    /// The node stopped: every asker waiting is told (`RecvError::Stopped`), and handles made
    /// from now on are told at once.
    pub(crate) fn close(&self) {
        let waiting = {
            let mut waiting = lock(&self.waiting);
            self.closed.store(true, Ordering::SeqCst);
            std::mem::take(&mut *waiting)
        };
        drop(waiting);
    }

    /// This node was removed from the cluster while alive (paused or cut off past the failure
    /// timeout), and starts over: every asker waiting is told (`RecvError::Removed`). An answer
    /// on its way here may be lost: a node that forgot this one meanwhile dropped what it had
    /// queued for it, answers among it, and answers this node's new incarnation on a new
    /// stream (the switchboard simulation's seed 57763, with reply handles: a handle dropped
    /// unanswered while its asker was paused, the `Dropped` lost with the holder's link to it,
    /// and the asker, let back in, waited for ever). Handles made from now on wait as usual.
    pub(crate) fn removed(&self) {
        let waiting = std::mem::take(&mut *lock(&self.waiting));
        for (_, entry) in waiting {
            match entry.waiter {
                Waiter::One(tx) => {
                    let _ = tx.send(Answer::Removed);
                }
                Waiter::Many { tx, .. } => {
                    let _ = tx.send(Answer::Removed);
                }
            }
        }
    }

    /// An answer for entry `id` with `token`: taken if the entry waits and the token is its
    /// own (a second answer, a stale or forged handle: refused). Whether it was taken.
    pub(crate) fn complete(&self, id: u64, token: u64, answer: Answer) -> bool {
        let mut waiting = lock(&self.waiting);
        let Some(entry) = waiting.get_mut(&id).filter(|e| e.token == token) else {
            tracing::debug!(reply = id, "an answer for no handle of this node's: dropped");
            return false;
        };
        match &mut entry.waiter {
            Waiter::Many { tx, left } => {
                let value = matches!(answer, Answer::Value(_));
                let taken = tx.send(answer).is_ok();
                if value {
                    *left -= 1;
                }
                if *left == 0 || !taken {
                    waiting.remove(&id);
                }
                taken
            }
            Waiter::One(_) => {
                let Some(Entry { waiter: Waiter::One(tx), .. }) = waiting.remove(&id) else {
                    unreachable!("matched above")
                };
                drop(waiting);
                tx.send(answer).is_ok()
            }
        }
    }

    /// Node `node` decoded handle `id` (with `token`), `hop` messages from here: it holds it
    /// now, unless a node further along claimed it already (claims travel on different links
    /// and may arrive out of order).
    pub(crate) fn held(&self, id: u64, token: u64, node: NodeId, hop: u32) {
        let mut waiting = lock(&self.waiting);
        // (A request broadcast has a copy of its handle on every receiving node: none holds it
        // alone, and its asker waits until its own deadline.)
        let one = |e: &&mut Entry| e.token == token && matches!(e.waiter, Waiter::One(_));
        if let Some(entry) = waiting.get_mut(&id).filter(one) {
            if entry.holder.is_none_or(|(_, h)| hop >= h) {
                entry.holder = Some((node, hop));
            }
        }
    }

    /// Node `node` left the cluster: whether a grace timer should start for the handles it
    /// holds (false: one runs already; one per node, however many claims come meanwhile).
    pub(crate) fn grace_starts(&self, node: NodeId) -> bool {
        lock(&self.grace).insert(node)
    }

    /// The grace after node `node` left is over: every handle it still holds (not claimed by
    /// another node since) is lost, its asker told.
    pub(crate) fn grace_over(&self, node: NodeId, member: bool) {
        lock(&self.grace).remove(&node);
        if member {
            // Let back in, with its application and the handles it holds.
            return;
        }
        let lost: Vec<Entry> = {
            let mut waiting = lock(&self.waiting);
            let ids: Vec<u64> = waiting
                .iter()
                .filter(|(_, e)| e.holder.is_some_and(|(n, _)| n == node))
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| waiting.remove(id)).collect()
        };
        for entry in lost {
            tracing::debug!(node, "the node holding a reply handle left");
            if let Waiter::One(tx) = entry.waiter {
                let _ = tx.send(Answer::Lost(node));
            }
        }
    }

    /// The asker stopped waiting for entry `id`.
    pub(crate) fn cancel(&self, id: u64) {
        lock(&self.waiting).remove(&id);
    }

    /// How many entries wait.
    pub(crate) fn len(&self) -> usize {
        lock(&self.waiting).len()
    }
}
