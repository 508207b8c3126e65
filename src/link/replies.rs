//! Answers waited for on this node: the far end of a reply handle (issue 19). A handle is an id
//! and a random token in this node's table; whichever node holds the handle answers with a
//! [`Frame::Answer`](crate::link::wire::Frame::Answer) straight to this node (or in-process, if
//! it is this node), and the connection's reader completes the entry here. No registry write,
//! no Raft commit: an entry lives as long as its asker waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::sync::{lock, HashMap};

/// What came for a reply handle.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The answer, MessagePack-encoded.
    Value(Bytes),
    /// The handle was dropped without an answer.
    Dropped,
}

/// The answers this node waits for, by handle id.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, (u64, oneshot::Sender<Answer>)>>,
}

impl Replies {
    /// A new entry: its id, its token, and where its answer comes.
    pub(crate) fn open(&self) -> (u64, u64, oneshot::Receiver<Answer>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = crate::clock::random_u64();
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id, (token, tx));
        (id, token, rx)
    }

    /// An answer for entry `id` with `token`: taken if the entry waits and the token is its
    /// own (a second answer, a stale or forged handle: refused). Whether it was taken.
    pub(crate) fn complete(&self, id: u64, token: u64, answer: Answer) -> bool {
        let tx = {
            let mut waiting = lock(&self.waiting);
            if waiting.get(&id).is_none_or(|(t, _)| *t != token) {
                tracing::debug!(reply = id, "an answer for no handle of this node's: dropped");
                return false;
            }
            waiting.remove(&id).map(|(_, tx)| tx)
        };
        tx.is_some_and(|tx| tx.send(answer).is_ok())
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
