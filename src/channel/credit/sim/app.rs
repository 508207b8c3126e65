//! What the simulation's applications do: a sender on a receiver's own node hands messages
//! over (`Inbox::try_push`), and a receiver's application takes them (`Inbox::try_recv`),
//! checking order and that nothing is taken twice.

use super::{tracing_frames, Sim, LOCAL};
use crate::channel::inbox::Refused;
use crate::error::TryRecvError;

impl Sim {
    /// The sender on receiver `r`'s own node hands over a message, as `Inbox::try_push` does:
    /// on room the books keep for it, or it asks for room (credit out elsewhere is reclaimed)
    /// and waits until the receiver takes a message or credit comes back.
    pub(super) fn local_send(&mut self, r: usize) {
        let rx = &mut self.receivers[r];
        if rx.detached || rx.local_left == 0 || rx.local_waiting {
            return;
        }
        match rx.inbox.try_push((LOCAL, rx.local_next)) {
            Ok(()) => {
                rx.local_next += 1;
                rx.local_left -= 1;
            }
            Err(Refused::Full(_)) => rx.local_waiting = true,
            Err(Refused::Closed(_)) => panic!("receiver {r} closed"),
        }
        self.flush(r);
    }

    /// Receiver `r`'s application takes one message, as `Inbox::next` does; with none, the
    /// books are settled as a waiting `recv` settles them.
    pub(super) fn take(&mut self, r: usize) {
        if self.receivers[r].detached || self.receivers[r].ended {
            return;
        }
        let rx = &mut self.receivers[r];
        let got = rx.inbox.try_recv();
        if tracing_frames() {
            if let Ok((msg, token, ..)) = &got {
                eprintln!("receiver {r} takes {msg:?} ({token:?})");
            }
        }
        match got {
            Ok(((LOCAL, seq), token, ..)) => {
                if let Some(token) = token {
                    rx.unacked.push((token, (LOCAL, seq)));
                }
                if let Some(last) = rx.last.insert(LOCAL, seq) {
                    assert!(seq > last, "receiver {r} took its own node's {seq} after {last}");
                }
                assert!(self.seen.insert((LOCAL - r, seq)), "local message {seq} taken twice");
                self.taken += 1;
                rx.local_waiting = false;
            }
            Ok(((s, seq), token, ..)) => {
                if let Some(last) = rx.last.insert(s, seq) {
                    // A redelivery may come after later messages (README: Order).
                    let again = self.redelivered.contains(&(s, seq));
                    assert!(
                        seq > last || again || self.may_repeat.contains(&(s, seq)),
                        "receiver {r} took {seq} of sender {s} after {last}"
                    );
                }
                assert!(
                    self.seen.insert((s, seq)) || self.may_repeat.contains(&(s, seq)),
                    "message {seq} of sender {s} taken twice"
                );
                self.taken += 1;
                rx.local_waiting = false;
                if let Some(token) = token {
                    rx.unacked.push((token, (s, seq)));
                }
            }
            Err(TryRecvError::Closed) => rx.ended = true,
            Err(TryRecvError::Empty) => {}
        }
        self.flush(r);
    }
}
