//! The simulation's manual acknowledgements: a receiver made with `manual_ack` hands out each
//! delivery with a token, and its application acknowledges them in any order, at any time
//! (`Inbox::ack`, the code users run): room comes back, and the sending node is told, in the
//! order it sent. What was delivered and not acknowledged when the receiver goes away is
//! delivered again elsewhere (at-least-once, as the README says), and so is what a node starting
//! over sent such a receiver after those deliveries.

use super::Sim;

impl Sim {
    /// Receiver `r`'s application acknowledges one of its deliveries, any of them.
    pub(super) fn ack(&mut self, r: usize) {
        let rx = &mut self.receivers[r];
        if rx.unacked.is_empty() || rx.detached {
            return;
        }
        let at = self.rng.below(rx.unacked.len());
        let (token, msg) = rx.unacked.swap_remove(at);
        if super::tracing_frames() {
            eprintln!("receiver {r} acks {msg:?} ({token:?})");
        }
        rx.inbox.ack(token);
        rx.local_waiting = false;
        self.flush(r);
    }

    /// Every receiver acknowledges everything it was handed (the end of a schedule).
    pub(super) fn ack_all(&mut self) {
        for r in 0..self.receivers.len() {
            while !self.receivers[r].unacked.is_empty() && !self.receivers[r].detached {
                self.ack(r);
            }
        }
    }

    /// Receiver `r`'s node forgets sending node `s`: if it had deliveries of `s` not yet
    /// acknowledged, it cannot answer for what `s` sent it after the first of them, which `s`
    /// delivers again when it starts over (or is released); the receiver may deliver it too.
    /// So may what `s` sends it from now until then.
    pub(super) fn note_gap(&mut self, r: usize, s: usize) {
        let rx = &mut self.receivers[r];
        if rx.unacked.iter().any(|(_, (from, _))| *from == s) {
            rx.gap[s] = true;
            self.may_repeat.extend(self.senders[s].kept[r].iter().map(|seq| (s, *seq)));
        }
    }

    /// Receiver `r` goes away: what it was handed and had not acknowledged goes elsewhere too,
    /// and so does what it acknowledged behind such a delivery (a sending node is told what was
    /// taken in the order it sent: seed 58 found the README saying less).
    pub(super) fn unacked_go_elsewhere(&mut self, r: usize) {
        for (_, msg) in std::mem::take(&mut self.receivers[r].unacked) {
            self.may_repeat.insert(msg);
        }
        if self.receivers[r].manual {
            for (s, sender) in self.senders.iter().enumerate() {
                self.may_repeat.extend(sender.kept[r].iter().map(|seq| (s, *seq)));
            }
        }
    }
}
