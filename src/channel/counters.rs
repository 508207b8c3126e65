//! What a node counts of each channel's messages, for its metrics: sent by its senders (each
//! copy a receiver got), the bytes of those encoded for other nodes, taken by its receivers,
//! and delivered again. Counted where a message is placed and where it is taken, one relaxed
//! add each on counters no other channel shares; read and published on a tick by the node (see
//! `node::metrics`). A channel's counters outlive its router (a router is replaced when its
//! channel ends and starts again): the switchboard keeps them by name. Unnamed channels, one
//! per request maybe, share one set: counted together, as `(unnamed)`.

use std::sync::atomic::{AtomicU64, Ordering};

/// One channel's counts on this node.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    bytes_sent: AtomicU64,
    redelivered: AtomicU64,
    /// Sends (and broadcasts) of this node waiting now for room or a receiver.
    blocked: AtomicU64,
    /// On a cache line of its own: bumped by the receiving task, while senders on another
    /// thread bump `sent`.
    received: Line,
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Line(AtomicU64);

/// A reading of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) sent: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) received: u64,
    pub(crate) redelivered: u64,
    /// Sends waiting now (a gauge, not a total).
    pub(crate) blocked: u64,
}

impl Counters {
    /// A message placed (one copy), and its encoded size if it went to another node.
    pub(crate) fn sent(&self, bytes: usize) {
        self.sent_many(1, bytes);
    }

    /// `n` copies of a broadcast placed, `bytes` of them encoded for other nodes.
    pub(crate) fn sent_many(&self, n: u64, bytes: usize) {
        if n > 0 {
            self.sent.fetch_add(n, Ordering::Relaxed);
        }
        if bytes > 0 {
            self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// A message taken by a receiver of this node.
    pub(crate) fn received(&self) {
        self.received_many(1);
    }

    /// `n` messages taken at once by a receiver of this node.
    pub(crate) fn received_many(&self, n: u64) {
        if n > 0 {
            self.received.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// `n` messages delivered again (their receiver went without taking them).
    pub(crate) fn redelivered(&self, n: u64) {
        self.redelivered.fetch_add(n, Ordering::Relaxed);
    }

    /// A send starts waiting: counted as blocked until the guard is dropped (done or cancelled).
    /// Off the fast path: only a send that found no room comes here.
    pub(crate) fn blocked(&self) -> Blocked<'_> {
        self.blocked.fetch_add(1, Ordering::Relaxed);
        Blocked(self)
    }

    pub(crate) fn read(&self) -> Counts {
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            received: self.received.0.load(Ordering::Relaxed),
            redelivered: self.redelivered.load(Ordering::Relaxed),
            blocked: self.blocked.load(Ordering::Relaxed),
        }
    }
}

/// A send counted as blocked while this lives (see [`Counters::blocked`]).
#[derive(Debug)]
pub(crate) struct Blocked<'a>(&'a Counters);

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.blocked.fetch_sub(1, Ordering::Relaxed);
    }
}
