//! The simulation's schedule: one random step at a time, the invariants after each, the fair
//! finish that checks liveness, and the test that runs the seeds.

use std::collections::VecDeque;

use super::{receiver_id, receiver_index, Msg, Phase, Sim, LOCAL};
use crate::channel::credit::Departure;
use crate::channel::inbox::ErasedInbox;
use crate::ids::NodeId;

impl Sim {
    /// Credit out never above the capacity, and every unit accounted for.
    fn check(&self) {
        for (r, rx) in self.receivers.iter().enumerate() {
            assert!(
                rx.inbox.books(|b| b.out_total()) <= rx.capacity,
                "receiver {r}: credit out above the capacity"
            );
            assert!(
                rx.detached || rx.inbox.books(|b| b.committed()) <= rx.capacity + rx.slack,
                "receiver {r}: {} held or out, capacity {}: {}",
                rx.inbox.books(|b| b.committed()),
                rx.capacity,
                rx.inbox.books(|b| format!("{b:?}"))
            );
            for (s, sender) in self.senders.iter().enumerate() {
                let settling = matches!(sender.phase, Phase::Settling(_));
                // An ended receiver, like a dropped one, takes nothing more: its books stand.
                if sender.stopped() || rx.forgot[s] || rx.detached || rx.ended || settling {
                    continue;
                }
                let held = match &sender.windows[r] {
                    Some(w) => w.credit(),
                    None => sender.credits.early_of(receiver_id(r)),
                };
                let mut on_the_way = 0u32;
                let there = self.net.get(&(rx.node, sender.node)).into_iter().flatten();
                for m in there {
                    if let Msg::Credit { to, grant, .. } = m {
                        if *to == r {
                            on_the_way += grant;
                        }
                    }
                }
                let back = self.net.get(&(sender.node, rx.node)).into_iter().flatten();
                for m in back {
                    match m {
                        Msg::Data { to, .. } if *to == r => on_the_way += 1,
                        Msg::Return { to, n } if *to == r => on_the_way += n,
                        _ => {}
                    }
                }
                assert_eq!(
                    rx.inbox.books(|b| b.out_to(sender.node)),
                    held + on_the_way,
                    "receiver {r} counts credit out to node {} that the node neither holds nor has on its way ({:?}; {})",
                    sender.node,
                    sender.phase,
                    rx.inbox.books(|b| format!("{b:?}"))
                );
            }
        }
    }

    /// A sending node leaves gracefully (never the last one sending), as `Node::shutdown` does
    /// for credit: every window gives its unused credit back (`Credits::give_up_all`, the code
    /// users run), and it sends nothing more. Its application first stops sending and waits for
    /// `Sender::wait_taken` (nothing kept, nothing to re-route), as that documentation asks of a
    /// process that must lose nothing: a node that leaves with messages not yet taken cannot
    /// deliver them elsewhere if their receiver goes away after (seed 95 showed it, with the
    /// leave allowed at once).
    fn leave(&mut self) {
        let live: Vec<usize> = (0..self.senders.len())
            .filter(|s| {
                let sender = &self.senders[*s];
                !sender.stopped() && !sender.finishing && sender.phase == Phase::Member
            })
            .collect();
        if live.len() < 2 {
            return;
        }
        let s = live[self.rng.below(live.len())];
        self.senders[s].finishing = true;
    }

    /// A finishing sender whose messages are all taken: its node leaves (see [`Sim::leave`]).
    fn leave_when_settled(&mut self) {
        for s in 0..self.senders.len() {
            let sender = &self.senders[s];
            let settled = sender.redeliver.is_empty() && sender.kept.iter().all(VecDeque::is_empty);
            if sender.finishing && !sender.stopped() && settled {
                self.senders[s].gone = true;
                let node = self.senders[s].node;
                for (id, to_node, n) in self.senders[s].credits.give_up_all(false) {
                    self.push(node, to_node, Msg::Return { to: receiver_index(id), n });
                }
            }
        }
    }

    /// Whether receiver `r`'s node may apply sender `s`'s removal now: a crashed node, or one
    /// frozen past the failure timeout (or thawed since), at any time; a node that left once
    /// everything it sent `r` has arrived.
    fn removable(&self, r: usize, s: usize) -> bool {
        let sender = &self.senders[s];
        let flushed =
            || self.net.get(&(sender.node, self.receivers[r].node)).is_none_or(VecDeque::is_empty);
        let removed_alive = matches!(sender.phase, Phase::Frozen | Phase::Cut | Phase::Thawed);
        // Let back in (starting over), it is a member again wherever it was removed before.
        let readded = matches!(sender.phase, Phase::Settling(_) | Phase::Registering);
        let member = !self.receivers[r].forgot[s] || readded && !self.receivers[r].removed_again[s];
        member && (sender.dead || sender.gone && flushed() || removed_alive)
    }

    /// Every receiver's node applies every removal it may apply now.
    fn forget_stopped(&mut self) {
        for r in 0..self.receivers.len() {
            for s in 0..self.senders.len() {
                if self.removable(r, s) {
                    self.forget(r, s);
                }
            }
        }
    }

    /// Long enough has passed since stopped nodes left (`Switchboard::departed`): every
    /// receiver's node that applied the removal of one with nothing more on its way voids the
    /// credit it had, which it counted until then (the switchboard simulation's seed 114199:
    /// freed at the removal, a graceful leave's hand-over took its receiver beyond capacity).
    fn void_stopped(&mut self) {
        for r in 0..self.receivers.len() {
            for s in 0..self.senders.len() {
                let (sender, rx) = (&self.senders[s], &self.receivers[r]);
                let on_its_way =
                    self.net.get(&(sender.node, rx.node)).is_some_and(|q| !q.is_empty());
                if sender.stopped() && rx.forgot[s] && !on_its_way {
                    let _ = rx.inbox.node_left(sender.node, true, Departure::Removed);
                    // `Inbox::node_left` wakes the senders waiting for room.
                    self.receivers[r].local_waiting = false;
                    self.flush(r);
                }
            }
        }
    }

    /// A sending node crashes (never the last one alive): what it has not sent is lost with it,
    /// frames to it are lost, and the frames it sent may or may not arrive.
    fn crash(&mut self) {
        let alive: Vec<usize> =
            (0..self.senders.len()).filter(|s| !self.senders[*s].stopped()).collect();
        if alive.len() < 2 {
            return;
        }
        let s = alive[self.rng.below(alive.len())];
        self.senders[s].dead = true;
        if self.rng.below(2) == 0 {
            let node = self.senders[s].node;
            for ((from, _), q) in &mut self.net {
                if *from == node {
                    q.clear();
                }
            }
        }
    }

    /// A receiver's application drops it (never the last one), as `Inbox::detach` does: what it
    /// took is told first, then every sending node is told it takes nothing more; what it held
    /// of theirs is theirs to deliver elsewhere.
    fn drop_receiver(&mut self) {
        let alive: Vec<usize> =
            (0..self.receivers.len()).filter(|r| !self.receivers[*r].detached).collect();
        if alive.len() < 2 {
            return;
        }
        let r = alive[self.rng.below(alive.len())];
        if super::tracing_frames() {
            eprintln!("receiver {r} dropped");
        }
        self.unacked_go_elsewhere(r);
        let rx = &mut self.receivers[r];
        rx.detached = true;
        rx.local_left = 0;
        // `Inbox::drop_receiver`: what it took is told, then the release; its own node's
        // messages come back to be delivered elsewhere by that node (`Detached`), which is not
        // the credit protocol's business.
        // Among them, messages of nodes this one had forgotten, held as its own since: this
        // node delivers them elsewhere (counted as taken here), and their node must not.
        let mine = rx.inbox.hand_over(false).expect("detached once");
        for msg in mine {
            let (s, seq): (usize, u64) = rmp_serde::from_slice(&msg).expect("decode");
            if s == LOCAL {
                self.seen.insert((LOCAL - r, seq));
            } else if self.seen.insert((s, seq)) {
                self.taken += 1;
            } else {
                assert!(self.may_repeat.contains(&(s, seq)), "{seq} of sender {s} delivered twice");
            }
        }
        self.flush(r);
    }

    /// Receiver `r`'s node applies sender `s`'s removal (`Inbox::node_left`).
    fn forget(&mut self, r: usize, s: usize) {
        let node = self.senders[s].node;
        self.note_gap(r, s);
        if super::tracing_frames() {
            eprintln!("receiver {r}'s node forgets sender {s}");
        }
        let readded = matches!(self.senders[s].phase, Phase::Settling(_) | Phase::Registering);
        let rx = &mut self.receivers[r];
        rx.removed_again[s] |= rx.forgot[s] && readded;
        rx.forgot[s] = true;
        rx.slack += rx.inbox.books(|b| b.out_to(node));
        let graceful = self.senders[s].gone;
        let rx = &mut self.receivers[r];
        let how = if graceful { Departure::LeftFirst } else { Departure::Removed };
        rx.inbox.node_left(node, false, how);
        // `Inbox::node_left` wakes the senders waiting for room.
        rx.local_waiting = false;
        self.flush(r);
        // The removal takes the node out of those a close waits for.
        self.not_waited_for(s);
        if self.receivers[r].closing {
            self.receiver_applies_close(r);
        }
    }

    /// Links with frames to deliver (those to a frozen node, and those of a node cut off, wait).
    fn links(&self) -> Vec<(NodeId, NodeId)> {
        self.net
            .iter()
            .filter(|((from, to), q)| !q.is_empty() && !self.held_up(*from, *to))
            .map(|(k, _)| *k)
            .collect()
    }

    /// One random step.
    fn step(&mut self) {
        self.steps += 1;
        match self.rng.below(10) {
            0..=1 => {
                let s = self.rng.below(self.senders.len());
                self.send(s);
            }
            2 => {
                let r = self.rng.below(self.receivers.len());
                self.local_send(r);
            }
            3..=5 => {
                let links = self.links();
                if !links.is_empty() {
                    let link = links[self.rng.below(links.len())];
                    self.deliver(link);
                }
            }
            6..=7 => {
                let r = self.rng.below(self.receivers.len());
                self.take(r);
            }
            8 => {
                let r = self.rng.below(self.receivers.len());
                if self.receivers[r].manual && self.rng.below(2) == 0 {
                    self.ack(r);
                } else {
                    self.take(r);
                }
            }
            9 if self.rng.below(8) == 0 => self.pause_step(),
            9 if self.rng.below(30) == 0 => self.close(),
            9 if self.rng.below(20) == 0 => self.crash(),
            9 if self.rng.below(20) == 0 => self.leave(),
            9 if self.rng.below(20) == 0 => self.drop_receiver(),
            _ => {
                let s = self.rng.below(self.senders.len());
                let r = self.rng.below(self.receivers.len());
                self.make_window(s, r);
            }
        }
        self.leave_when_settled();
        self.close_step();
        // Receivers' nodes apply a stopped node's removal, each in its own time.
        if self.rng.below(4) == 0 {
            let r = self.rng.below(self.receivers.len());
            if let Some(s) = (0..self.senders.len()).find(|s| self.removable(r, *s)) {
                self.forget(r, s);
            }
        }
        self.check();
    }

    /// After the random phase: every node gets its turn until everything is taken.
    fn finish(&mut self) {
        self.forget_stopped();
        self.finish_pauses();
        self.finish_close();
        for s in 0..self.senders.len() {
            for r in 0..self.receivers.len() {
                self.make_window(s, r);
            }
        }
        let mut idle_rounds = 0;
        let done = |sim: &Sim| {
            sim.nowhere_to_go()
                || sim.senders.iter().all(|s| {
                    s.stopped()
                        || s.left_to_send == 0
                            && s.redeliver.is_empty()
                            && s.kept.iter().all(VecDeque::is_empty)
                }) && sim
                    .receivers
                    .iter()
                    .all(|r| r.detached || r.ended || r.local_left == 0 && r.inbox.buffered() == 0)
        };
        while !done(self) {
            let before = (self.taken, self.steps);
            self.finish_pauses();
            self.finish_close();
            self.leave_when_settled();
            self.forget_stopped();
            self.void_stopped();
            for s in 0..self.senders.len() {
                self.send(s);
            }
            for r in 0..self.receivers.len() {
                self.local_send(r);
            }
            for link in self.links() {
                self.deliver(link);
            }
            for r in 0..self.receivers.len() {
                self.take(r);
            }
            self.ack_all();
            self.steps += 1;
            self.check();
            idle_rounds = if self.taken == before.0 { idle_rounds + 1 } else { 0 };
            assert!(
                idle_rounds < 50,
                "stalled with {} taken: credit lost (dead {:?}, left to send {:?}, kept {:?}); books {:?}; windows {:?}",
                self.taken,
                self.senders.iter().map(|s| s.dead).collect::<Vec<_>>(),
                self.senders.iter().map(|s| s.left_to_send).collect::<Vec<_>>(),
                self.senders.iter().map(|s| s.kept.clone()).collect::<Vec<_>>(),
                self.receivers.iter().map(|r| r.inbox.books(|b| format!("{b:?}"))).collect::<Vec<_>>(),
                self.senders.iter().map(|s| format!("{:?}", s.windows)).collect::<Vec<_>>(),
            );
        }
        // What is left on the way (the last "taken" counts) arrives; then every sending node
        // knows that everything it sent was taken.
        for _ in 0..50 {
            self.forget_stopped();
            self.finish_close();
            for link in self.links() {
                self.deliver(link);
            }
            for r in 0..self.receivers.len() {
                self.take(r);
            }
            self.ack_all();
            self.check();
            // What arrived may have settled a node starting over (its last answer): it fences
            // now, as it does once settled (the loop ended a step early, with that fence never
            // sent: seed 8695, once a batch was a quarter of the capacity).
            self.finish_close();
            if self.links().is_empty() {
                break;
            }
        }
        self.check_ended();
        for (r, rx) in self.receivers.iter().enumerate() {
            let lost: Vec<u64> =
                (0..rx.local_next).filter(|seq| !self.seen.contains(&(LOCAL - r, *seq))).collect();
            assert!(lost.is_empty(), "messages {lost:?} of receiver {r}'s own node never taken");
        }
        // Delivered again after every receiver of the closed channel had ended: nowhere to go
        // (README, Close).
        let nowhere = self.nowhere_to_go();
        let gone_after_close = |s: usize, seq: u64| {
            nowhere && (self.redelivered.contains(&(s, seq)) || self.may_repeat.contains(&(s, seq)))
        };
        for (s, sender) in self.senders.iter().enumerate().filter(|(_, s)| !s.dead) {
            let lost: Vec<u64> = (0..sender.next_seq)
                .filter(|seq| !self.seen.contains(&(s, *seq)) && !gone_after_close(s, *seq))
                .collect();
            assert!(
                lost.is_empty(),
                "messages {lost:?} of sender {s} never taken (gone {}, detached {:?}, kept {:?})",
                sender.gone,
                self.receivers.iter().map(|r| r.detached).collect::<Vec<_>>(),
                sender.kept
            );
        }
        assert!(
            nowhere
                || self
                    .senders
                    .iter()
                    .all(|s| s.stopped() || s.kept.iter().all(VecDeque::is_empty)),
            "everything taken, yet not told: {:?}",
            self.senders.iter().map(|s| s.kept.clone()).collect::<Vec<_>>()
        );
    }
}

/// Run `seed`'s schedule: its steps, how many sending nodes started over in it, and whether
/// the channel was closed.
fn run(seed: u64) -> (u64, u64, u64) {
    let mut sim = Sim::new(seed);
    let steps = 200 + sim.rng.below(2000);
    for _ in 0..steps {
        sim.step();
    }
    sim.finish();
    (sim.steps, sim.started_over, u64::from(sim.closed_by.is_some()))
}

#[test]
fn the_credit_protocol_holds_under_seeded_schedules() {
    let started = std::time::Instant::now();
    let counts = crate::channel::seeded::run_seeds(2_000, "cargo test --lib credit::sim", run);
    let seeds = counts.len();
    let (steps, started_over, closed) = counts
        .into_iter()
        .fold((0, 0, 0), |(a, b, c), (steps, over, closed)| (a + steps, b + over, c + closed));
    eprintln!(
        "{seeds} schedules, {steps} steps in {:?}; {started_over} nodes started over, {closed} \
         channels closed",
        started.elapsed()
    );
}
