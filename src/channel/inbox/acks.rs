//! What a `manual_ack` receiver handed out and the application has not acknowledged yet, per
//! sending node and in order: the last books of a message on its way out of the inbox (its
//! room, and its sending node's word, come back only with the acknowledgement).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::ids::NodeId;
use crate::sync::HashMap;

/// Deliveries handed out and not yet acknowledged (manual acknowledgement).
#[derive(Debug, Default)]
pub(super) struct Unacked {
    /// Per sending node: the number of its first unacknowledged delivery, and which of those from
    /// there on are acknowledged. Its credit comes back in order.
    pub(super) remote: HashMap<NodeId, Acks>,
    /// Deliveries of this node's messages, encoded, to deliver elsewhere if never acknowledged.
    pub(super) local: HashMap<u64, Bytes>,
    pub(super) next_local: u64,
    /// Nodes that sent after the receiver had ended, while it still had deliveries of theirs
    /// unacknowledged: told it is gone once those are acknowledged (see
    /// [`ErasedInbox::push_frame`](super::ErasedInbox::push_frame)). (Only a node owed an
    /// acknowledgement is listed, so only here.)
    pub(super) release_after_acks: std::collections::BTreeSet<NodeId>,
}

/// One sending node's deliveries handed out and not yet acknowledged, in the order they were.
#[derive(Debug, Default)]
pub(super) struct Acks {
    /// The number of the first unacknowledged delivery.
    first: u64,
    /// Which deliveries from `first` on are acknowledged.
    acked: VecDeque<bool>,
    /// Deliveries numbered below this were handed out before the node left: their room comes
    /// back, but the node (another incarnation, if it comes back) is not told.
    told_from: u64,
}

impl Acks {
    /// Whether any delivery waits for the application's acknowledgement.
    pub(super) fn waiting(&self) -> bool {
        self.acked.iter().any(|b| !b)
    }

    /// The next delivery's number.
    pub(super) fn push(&mut self) -> u64 {
        let seq = self.first + self.acked.len() as u64;
        self.acked.push_back(false);
        seq
    }

    /// Delivery `seq` is acknowledged: how many deliveries, in order, are done with now, and of
    /// those how many the sending node is to be told of.
    pub(super) fn ack(&mut self, seq: u64) -> (u32, u32) {
        let Some(slot) = seq.checked_sub(self.first).and_then(|i| self.acked.get_mut(i as usize))
        else {
            return (0, 0);
        };
        *slot = true;
        let (mut n, mut told) = (0, 0);
        while self.acked.front() == Some(&true) {
            self.acked.pop_front();
            if self.first >= self.told_from {
                told += 1;
            }
            self.first += 1;
            n += 1;
        }
        (n, told)
    }

    /// The sending node left: nothing handed out so far is told to it. How many of those
    /// deliveries are not counted as taken yet (some still to be acknowledged).
    pub(super) fn forget(&mut self) -> u32 {
        self.told_from = self.first + self.acked.len() as u64;
        u32::try_from(self.acked.len()).unwrap_or(u32::MAX)
    }
}
