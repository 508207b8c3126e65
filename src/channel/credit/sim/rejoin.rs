//! The simulation's pauses: a sending node frozen past the failure timeout (SIGSTOP, a long GC
//! pause), or cut off by a partition (it goes on sending, and nothing arrives), is removed while
//! alive, each receiver's node applying that in its own time; thawed, it
//! goes on with its old credit until it learns of the removal, then starts over as
//! `Switchboard::start_over` and `Switchboard::rejoined` do: its windows are void at once, each
//! receiver's node forgets its books of the old incarnation and answers how many of the
//! messages it was sent and had not told it took in (`Inbox::rejoined`, the code users run),
//! the sending node lets go of those, forgets every window and early grant once every answer is
//! in, delivers the rest again, and registers its sender again, which each receiver's node
//! applies (and offers credit for) in its own time. Nothing may be lost or taken twice.

use super::{Msg, Phase, Sim};
use crate::channel::inbox::ErasedInbox;
use crate::ids::NodeId;

impl Sim {
    /// A sending node freezes (one that is a member and not finishing).
    pub(super) fn freeze(&mut self) {
        let members: Vec<usize> = (0..self.senders.len())
            .filter(|s| {
                let sender = &self.senders[*s];
                !sender.stopped() && !sender.finishing && sender.phase == Phase::Member
            })
            .collect();
        if let Some(s) = members.get(self.rng.below(members.len().max(1))) {
            let cut = self.rng.below(2) == 0;
            self.senders[*s].phase = if cut { Phase::Cut } else { Phase::Frozen };
        }
    }

    /// A frozen node thaws (or a partition heals), removed by now, and not aware of it yet.
    pub(super) fn thaw(&mut self, s: usize) {
        if matches!(self.senders[s].phase, Phase::Frozen | Phase::Cut) {
            self.senders[s].phase = Phase::Thawed;
        }
    }

    /// A thawed node is let back in and starts over: its windows are void at once, and every
    /// receiver's node is asked what it took in.
    pub(super) fn start_over(&mut self, s: usize) {
        if self.senders[s].phase != Phase::Thawed || self.senders[s].stopped() {
            return;
        }
        let from = self.senders[s].node;
        let nodes: Vec<NodeId> = self.receivers.iter().map(|r| r.node).collect();
        self.senders[s].credits.release_all(nodes.iter().copied());
        for node in &nodes {
            self.push(from, *node, Msg::Rejoined);
        }
        self.senders[s].phase = Phase::Settling(nodes.len());
    }

    /// Receiver node `link.1` hears that node `link.0` starts over (`Switchboard::rejoined`).
    pub(super) fn rejoined(&mut self, link: (NodeId, NodeId)) {
        let s = self.sender_index(link.0);
        let r = self.receivers.iter().position(|r| r.node == link.1).expect("a receiving node");
        self.note_gap(r, s);
        let rx = &mut self.receivers[r];
        rx.slack += rx.inbox.books(|b| b.out_to(link.0));
        let n = rx.inbox.rejoined(link.0);
        rx.forgot[s] = true;
        rx.local_waiting = false;
        self.flush(r);
        self.push(link.1, link.0, Msg::TookIn { to: r, n });
    }

    /// Receiver `to`'s node answered that it took in the first `n` of what node `link.1` sent it
    /// and was not told of. With every answer in, the rest goes again.
    pub(super) fn took_in(&mut self, link: (NodeId, NodeId), to: usize, n: u32) {
        let s = self.sender_index(link.1);
        let sender = &mut self.senders[s];
        if sender.stopped() {
            return;
        }
        if super::tracing_frames() {
            eprintln!("took in: sender {s} receiver {to} n {n} kept {:?}", sender.kept[to]);
        }
        sender.credits.answered(link.0);
        for _ in 0..n {
            sender.kept[to].pop_front().expect("told it took in more than was sent");
        }
        // Behind a delivery not acknowledged, the receiver cannot answer for what follows: it
        // goes again, and the receiver may deliver it too.
        if std::mem::take(&mut self.receivers[to].gap[s]) {
            self.may_repeat.extend(sender.kept[to].iter().map(|seq| (s, *seq)));
        }
        let Phase::Settling(left) = sender.phase else {
            panic!("an answer while {:?}", sender.phase)
        };
        if left > 1 {
            sender.phase = Phase::Settling(left - 1);
            return;
        }
        sender.credits.clear();
        sender.windows.iter_mut().for_each(|w| *w = None);
        for r in 0..sender.kept.len() {
            let kept: Vec<u64> = sender.kept[r].drain(..).collect();
            for seq in kept {
                sender.redeliver.push_back(seq);
                self.redelivered.insert((s, seq));
            }
        }
        sender.waiting = false;
        sender.phase = Phase::Registering;
        self.started_over += 1;
        // New windows for every receiver its registry lists (`Switchboard::refresh_route`).
        for r in 0..self.receivers.len() {
            self.make_window(s, r);
        }
    }

    /// Receiver `r`'s node applies the new registration of sender `s`'s node: it offers it
    /// credit (`Switchboard::refresh` offering to new sending nodes).
    pub(super) fn registered_again(&mut self, r: usize, s: usize) {
        if self.senders[s].phase != Phase::Registering || !self.receivers[r].forgot[s] {
            return;
        }
        let node = self.senders[s].node;
        let rx = &mut self.receivers[r];
        rx.forgot[s] = false;
        if !rx.detached {
            rx.inbox.offer(&[node]);
        }
        self.flush(r);
        if self.receivers.iter().all(|rx| !rx.forgot[s]) {
            self.senders[s].phase = Phase::Member;
        }
    }

    /// One random step of a pause: thaw, start over, or a registration applied.
    pub(super) fn pause_step(&mut self) {
        let s = self.rng.below(self.senders.len());
        match self.senders[s].phase {
            Phase::Member => {
                if self.rng.below(4) == 0 {
                    self.freeze();
                }
            }
            Phase::Frozen | Phase::Cut => self.thaw(s),
            Phase::Thawed => self.start_over(s),
            Phase::Settling(_) => {}
            Phase::Registering => {
                let r = self.rng.below(self.receivers.len());
                self.registered_again(r, s);
            }
        }
    }

    /// After the random phase: every pause runs to its end.
    pub(super) fn finish_pauses(&mut self) {
        for s in 0..self.senders.len() {
            self.thaw(s);
            self.start_over(s);
            for r in 0..self.receivers.len() {
                self.registered_again(r, s);
            }
        }
    }

    /// Whether frames from node `from` to node `to` wait: `to` is frozen, or either side is
    /// cut off.
    pub(super) fn held_up(&self, from: NodeId, to: NodeId) -> bool {
        let cut = |node: NodeId| {
            self.senders.iter().any(|s| s.node == node && s.phase == Phase::Cut && !s.dead)
        };
        self.senders.iter().any(|s| s.node == to && s.frozen()) || cut(from) || cut(to)
    }
}
