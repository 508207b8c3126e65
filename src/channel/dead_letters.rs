//! Dead letters: where a message ends that reached a receiver on this node and did not decode as
//! the receiver's type. A side exit at the last stop of a message's path.
//!
//! Typed endpoints of one channel share a type (the registry sees to it), so this happens only
//! when an untyped sender ([`Value`](crate::Value), the `dchan` command) sent something of
//! another shape, or a peer is broken. The message is not dropped: it counts as taken (its sender
//! lets go of it, the receiver carries on), and is kept here, per channel, bounded in count and
//! bytes (the oldest go first when full, counted), logged with its channel and origin. Read them
//! with [`Node::dead_letters`](crate::Node::dead_letters) (or `dchan recv --dead-letters`), see
//! their counts in [`Node::stats`](crate::Node::stats).

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;

use crate::ids::NodeId;
use crate::report::DeadLetter;

/// Dead letters kept per channel per node, at most.
pub(crate) const MAX_LETTERS: usize = 1024;
/// Bytes of dead letters kept per channel per node, at most.
pub(crate) const MAX_BYTES: usize = 4 * 1024 * 1024;

/// The dead letters of one channel on this node.
#[derive(Debug, Default)]
pub(crate) struct DeadLetters {
    /// Made at the first dead letter: most channels never have one, and an unnamed channel's
    /// router, one per request, stays small.
    inner: Mutex<Option<Box<Inner>>>,
}

#[derive(Debug, Default)]
struct Inner {
    letters: VecDeque<Kept>,
    bytes: usize,
    /// Dead letters ever kept (the last one's number).
    total: u64,
    /// Dead letters pushed out by newer ones when full.
    discarded: u64,
}

#[derive(Debug)]
struct Kept {
    seq: u64,
    from: Option<NodeId>,
    expected: &'static str,
    error: String,
    message: Bytes,
}

/// The counts of one channel's dead letters on one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) held: u64,
    pub(crate) total: u64,
    pub(crate) discarded: u64,
}

impl DeadLetters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Box<Inner>>> {
        crate::sync::lock(&self.inner)
    }

    /// Keep a message that did not decode.
    pub(crate) fn keep(
        &self,
        channel: &str,
        from: Option<NodeId>,
        expected: &'static str,
        error: String,
        message: Bytes,
    ) {
        let mut guard = self.lock();
        let inner = guard.get_or_insert_with(Box::default);
        inner.total += 1;
        let seq = inner.total;
        tracing::warn!(
            channel,
            from,
            seq,
            expected,
            error = %error,
            "a message did not decode as the receiver's type: kept as a dead letter"
        );
        if message.len() > MAX_BYTES {
            inner.discarded += 1;
            return;
        }
        inner.bytes += message.len();
        inner.letters.push_back(Kept { seq, from, expected, error, message });
        while inner.letters.len() > MAX_LETTERS || inner.bytes > MAX_BYTES {
            let Some(old) = inner.letters.pop_front() else { break };
            inner.bytes -= old.message.len();
            inner.discarded += 1;
        }
    }

    /// Take over the letters and counts of `old` (a router replaced by a new one of its name).
    pub(crate) fn adopt(&self, old: &DeadLetters) {
        let taken = old.lock().take();
        *self.lock() = taken;
    }

    /// Copies of the letters kept now, oldest first.
    pub(crate) fn list(&self, channel: &str, node: NodeId) -> Vec<DeadLetter> {
        let guard = self.lock();
        let Some(inner) = guard.as_ref() else { return Vec::new() };
        inner
            .letters
            .iter()
            .map(|k| DeadLetter {
                channel: channel.to_owned(),
                node,
                from: k.from,
                seq: k.seq,
                expected: k.expected.to_owned(),
                error: k.error.clone(),
                message: k.message.to_vec(),
            })
            .collect()
    }

    /// Let go of the letters numbered `seqs` (read and dealt with); returns how many were held.
    pub(crate) fn remove(&self, seqs: &[u64]) -> u64 {
        let mut guard = self.lock();
        let Some(inner) = guard.as_mut() else { return 0 };
        let before = inner.letters.len();
        let mut freed = 0;
        inner.letters.retain(|k| {
            let keep = !seqs.contains(&k.seq);
            if !keep {
                freed += k.message.len();
            }
            keep
        });
        inner.bytes -= freed;
        (before - inner.letters.len()) as u64
    }

    pub(crate) fn counts(&self) -> Counts {
        self.lock().as_ref().map_or_else(Counts::default, |inner| Counts {
            held: inner.letters.len() as u64,
            total: inner.total,
            discarded: inner.discarded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_are_bounded_oldest_out_first_and_counted() {
        let dead = DeadLetters::default();
        for i in 0..(MAX_LETTERS + 10) {
            dead.keep("c", Some(2), "T", "bad".into(), Bytes::from(vec![i as u8]));
        }
        let c = dead.counts();
        assert_eq!(
            (c.held, c.total, c.discarded),
            (MAX_LETTERS as u64, MAX_LETTERS as u64 + 10, 10)
        );
        let list = dead.list("c", 1);
        assert_eq!(list[0].seq, 11, "the oldest went first");
        assert_eq!(dead.remove(&[11, 12, 99_999]), 2);
        assert_eq!(dead.counts().held, MAX_LETTERS as u64 - 2);
        dead.keep("c", None, "T", "big".into(), Bytes::from(vec![0; MAX_BYTES]));
        assert!(dead.counts().held <= 1, "bytes are bounded too");
    }
}
