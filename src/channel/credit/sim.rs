//! The credit protocol under seeded schedules: the first stage of the deterministic simulation
//! (issue 18, route (a): the channel layer as pure state machines driven by a seeded scheduler).
//!
//! What runs is the code users run for credit: each receiver's books ([`Grants`]), each sending
//! node's table of windows ([`Credits`], early grants included) and its [`Window`]s. What the
//! inbox, the router and the switchboard do around them (take a message, then settle; answer a
//! want, a reclaim, a return; ask for credit when a receiver is passed over) is written out here
//! as they do it, over a simulated network: one FIFO queue per pair of nodes (links are ordered),
//! frames of different links delivered in any order, a sending node's window made at any time
//! (its registry may apply the receiver late: grants come before it), receivers that go away
//! (their application drops them: what they took is told, then `Released`, and the sending nodes
//! deliver the rest to another receiver), a sender on a receiver's own node (handing messages
//! over on room the books keep for it, asking for credit out elsewhere back when there is none),
//! sending nodes that crash
//! (what they sent may or may not arrive) and whose removal each receiver's node applies in its
//! own time. After every step: credit out never above the capacity (nor what is held with it,
//! until a crashed node's credit is voided), every unit of credit of a live node accounted for
//! (the receiver's count equals what the sending node holds plus what is on its way either
//! side), order per sender and receiver (but for redeliveries), nothing taken twice. Once the
//! random phase ends, every schedule must deliver every message of the live nodes, once, and tell
//! them it was taken (liveness: no credit lost, no redelivery dropped).
//!
//! `DCHAN_SIM_SEEDS=N` runs more seeds; `DCHAN_SIM_SEED=S` replays one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::{Credits, Granted, Grants, Outgoing, Window};
use crate::ids::{EndpointId, NodeId};

/// splitmix64: a seed gives the same schedule on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug, Clone, Copy)]
enum Msg {
    /// Sender `from` to receiver `to`: one message, the `seq`-th of that sender.
    Data {
        to: usize,
        from: usize,
        seq: u64,
    },
    Credit {
        to: usize,
        taken: u32,
        grant: u32,
    },
    Want {
        to: usize,
    },
    Reclaim {
        to: usize,
    },
    Return {
        to: usize,
        n: u32,
    },
    /// Receiver `to` is gone: what the node it goes to sent it and was not told taken is to go
    /// to another receiver.
    Released {
        to: usize,
    },
}

struct Receiver {
    node: NodeId,
    /// Sending nodes this receiver's node has seen removed (it applied their removal).
    forgot: Vec<bool>,
    capacity: u32,
    books: Grants,
    buf: VecDeque<(usize, u64)>,
    /// Per sender, the last sequence number taken (order per sender and receiver).
    last: BTreeMap<usize, u64>,
    /// Its application dropped it (`Inbox::detach`): it takes nothing more.
    detached: bool,
    /// A sender on the receiver's own node: messages it has still to hand over (moved in, on
    /// room the books keep for it), the next one's number, and whether it waits for room.
    local_left: u64,
    local_next: u64,
    local_waiting: bool,
}

/// The sender index of a message from the receiver's own node.
const LOCAL: usize = usize::MAX;

struct Sender {
    node: NodeId,
    credits: Credits<()>,
    /// Per receiver, the window once this node has made it.
    windows: Vec<Option<Arc<Window>>>,
    left_to_send: u64,
    next_seq: u64,
    cursor: usize,
    /// Sent and not yet told taken, per receiver, in the order sent.
    kept: Vec<VecDeque<u64>>,
    /// Messages of receivers that went away, to place again before any new one.
    redeliver: VecDeque<u64>,
    /// Its last attempt found no credit: it waits until a grant wakes it (`ChannelRoute::wait`),
    /// and tries nothing meanwhile.
    waiting: bool,
    /// Crashed: it sends nothing more, and frames to it are lost.
    dead: bool,
}

struct Sim {
    rng: Rng,
    receivers: Vec<Receiver>,
    senders: Vec<Sender>,
    /// Frames on their way, per (from node, to node), in order.
    net: BTreeMap<(NodeId, NodeId), VecDeque<Msg>>,
    taken: u64,
    steps: u64,
    /// Every (sender, seq) taken: nothing is taken twice while no node crashes.
    seen: std::collections::HashSet<(usize, u64)>,
    /// Messages placed again after their receiver went away.
    redelivered: std::collections::HashSet<(usize, u64)>,
}

fn msg_to(msg: &Msg) -> usize {
    match *msg {
        Msg::Data { to, .. }
        | Msg::Credit { to, .. }
        | Msg::Want { to }
        | Msg::Reclaim { to }
        | Msg::Return { to, .. }
        | Msg::Released { to } => to,
    }
}

fn receiver_id(r: usize) -> EndpointId {
    1000 + r as EndpointId
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let receivers = (0..1 + rng.below(3))
            .map(|r| {
                let capacity = 1 + rng.below(8) as u32;
                Receiver {
                    node: 100 + r as NodeId,
                    forgot: Vec::new(),
                    capacity,
                    books: Grants::new(capacity),
                    buf: VecDeque::new(),
                    last: BTreeMap::new(),
                    detached: false,
                    local_left: if rng.below(2) == 0 { 0 } else { rng.below(40) as u64 },
                    local_next: 0,
                    local_waiting: false,
                }
            })
            .collect::<Vec<_>>();
        let senders = (0..1 + rng.below(3))
            .map(|s| Sender {
                node: 1 + s as NodeId,
                credits: Credits::default(),
                windows: vec![None; receivers.len()],
                left_to_send: 20 + rng.below(60) as u64,
                next_seq: 0,
                cursor: rng.below(8),
                kept: vec![VecDeque::new(); receivers.len()],
                redeliver: VecDeque::new(),
                waiting: false,
                dead: false,
            })
            .collect::<Vec<_>>();
        let mut sim = Sim {
            rng,
            receivers,
            senders,
            net: BTreeMap::new(),
            taken: 0,
            steps: 0,
            seen: Default::default(),
            redelivered: Default::default(),
        };
        for r in 0..sim.receivers.len() {
            sim.receivers[r].forgot = vec![false; sim.senders.len()];
        }
        // Each receiver offers credit to the sending nodes it knows of (all, here), as it does
        // when it sees their senders registered.
        for r in 0..sim.receivers.len() {
            for s in 0..sim.senders.len() {
                let node = sim.senders[s].node;
                sim.receivers[r].books.want(node);
            }
            let out = sim.receivers[r].books.settle(true, None, false);
            sim.emit(r, out);
        }
        sim
    }

    fn push(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        self.net.entry((from, to)).or_default().push_back(msg);
    }

    /// What a receiver's books ask to send (as `Inbox::send` does).
    fn emit(&mut self, r: usize, out: Outgoing) {
        let from = self.receivers[r].node;
        for (node, taken, grant) in out.credit {
            self.push(from, node, Msg::Credit { to: r, taken, grant });
        }
        for node in out.reclaim {
            self.push(from, node, Msg::Reclaim { to: r });
        }
    }

    fn sender_index(&self, node: NodeId) -> usize {
        self.senders.iter().position(|s| s.node == node).expect("a sending node")
    }

    /// A sending node's registry applies receiver `r`: its window is made (with what was
    /// granted before).
    fn make_window(&mut self, s: usize, r: usize) {
        let node = self.receivers[r].node;
        let sender = &mut self.senders[s];
        if sender.windows[r].is_none() {
            sender.windows[r] = Some(sender.credits.window(receiver_id(r), node, &Arc::new(())));
            // New targets wake the router's senders.
            sender.waiting = false;
        }
    }

    /// One send attempt of sender `s`, as the router makes it: round robin over the receivers
    /// with credit; one passed over for want of credit is asked for some.
    fn send(&mut self, s: usize) {
        let nothing = self.senders[s].left_to_send == 0 && self.senders[s].redeliver.is_empty();
        if nothing || self.senders[s].waiting || self.senders[s].dead {
            return;
        }
        let n = self.receivers.len();
        let start = self.senders[s].cursor;
        self.senders[s].cursor += 1;
        let mut placed = None;
        for i in 0..n {
            let r = (start + i) % n;
            if self.senders[s].windows[r].as_ref().is_some_and(|w| w.try_acquire()) {
                placed = Some(r);
                break;
            }
        }
        if let Some(r) = placed {
            let sender = &mut self.senders[s];
            let seq = match sender.redeliver.pop_front() {
                Some(seq) => seq,
                None => {
                    sender.next_seq += 1;
                    sender.left_to_send -= 1;
                    sender.next_seq - 1
                }
            };
            sender.kept[r].push_back(seq);
            let (from, to) = (sender.node, self.receivers[r].node);
            self.push(from, to, Msg::Data { to: r, from: s, seq });
        } else {
            self.senders[s].waiting = true;
        }
        for r in 0..n {
            let ask = self.senders[s].windows[r].as_ref().is_some_and(|w| w.should_ask());
            if ask {
                let (from, to) = (self.senders[s].node, self.receivers[r].node);
                self.push(from, to, Msg::Want { to: r });
            }
        }
    }

    /// The sender on receiver `r`'s own node hands over a message, as `Inbox::try_push` does:
    /// on room the books keep for it, or it asks for room (credit out elsewhere is reclaimed)
    /// and waits until the receiver takes a message or credit comes back.
    fn local_send(&mut self, r: usize) {
        let rx = &mut self.receivers[r];
        if rx.detached || rx.local_left == 0 || rx.local_waiting {
            return;
        }
        if rx.books.local() {
            rx.buf.push_back((LOCAL, rx.local_next));
            rx.local_next += 1;
            rx.local_left -= 1;
            return;
        }
        rx.local_waiting = true;
        let idle = rx.buf.is_empty();
        let out = rx.books.settle(idle, None, false);
        self.emit(r, out);
    }

    /// Receiver `r`'s application takes one message, as `Inbox::next` does; with none, the
    /// books are settled as a waiting `recv` settles them.
    fn take(&mut self, r: usize) {
        if self.receivers[r].detached {
            return;
        }
        let rx = &mut self.receivers[r];
        let out = match rx.buf.pop_front() {
            Some((LOCAL, seq)) => {
                if let Some(last) = rx.last.insert(LOCAL, seq) {
                    assert!(seq > last, "receiver {r} took its own node's {seq} after {last}");
                }
                assert!(self.seen.insert((LOCAL - r, seq)), "local message {seq} taken twice");
                self.taken += 1;
                rx.books.taken(None, 1);
                rx.local_waiting = false;
                let idle = rx.buf.is_empty();
                rx.books.settle(idle, None, false)
            }
            Some((s, seq)) => {
                if let Some(last) = rx.last.insert(s, seq) {
                    // A redelivery may come after later messages (README: Order).
                    assert!(
                        seq > last || self.redelivered.contains(&(s, seq)),
                        "receiver {r} took {seq} of sender {s} after {last}"
                    );
                }
                assert!(self.seen.insert((s, seq)), "message {seq} of sender {s} taken twice");
                self.taken += 1;
                let from = self.senders[s].node;
                rx.books.taken(Some(from), 1);
                rx.local_waiting = false;
                let idle = rx.buf.is_empty();
                rx.books.settle(idle, Some(from), false)
            }
            None => rx.books.settle(true, None, false),
        };
        self.emit(r, out);
    }

    /// Deliver the next frame of link `link`.
    fn deliver(&mut self, link: (NodeId, NodeId)) {
        let Some(msg) = self.net.get_mut(&link).and_then(VecDeque::pop_front) else { return };
        let (from, _) = link;
        match msg {
            Msg::Data { to, .. } if self.receivers[to].detached => {
                // Its sender keeps it: told (again) to deliver it elsewhere.
                let node = self.receivers[to].node;
                self.push(node, from, Msg::Released { to });
            }
            Msg::Want { .. } | Msg::Return { .. } if self.receivers[msg_to(&msg)].detached => {}
            Msg::Data { to, from: s, seq } => {
                let rx = &mut self.receivers[to];
                let forgotten = rx.forgot[s];
                let ok = rx.books.arrived(from);
                assert!(ok || forgotten, "a message of node {from} arrived without credit");
                if ok {
                    rx.buf.push_back((s, seq));
                }
            }
            Msg::Want { to } => {
                let s = self.sender_index(from);
                let rx = &mut self.receivers[to];
                if rx.forgot[s] {
                    // Not a member any more, as this node has it: refused (`Switchboard::want`).
                    return;
                }
                rx.books.want(from);
                let idle = rx.buf.is_empty();
                let out = rx.books.settle(idle, None, false);
                self.emit(to, out);
            }
            Msg::Return { to, n } => {
                let rx = &mut self.receivers[to];
                rx.books.returned(from, n);
                rx.local_waiting = false;
                let idle = rx.buf.is_empty();
                let out = rx.books.settle(idle, None, false);
                self.emit(to, out);
            }
            Msg::Credit { .. } | Msg::Reclaim { .. } | Msg::Released { .. }
                if self.senders[self.sender_index(link.1)].dead => {}
            Msg::Released { to } => {
                // `Switchboard::released`: the first release re-routes what was kept for it.
                let s = self.sender_index(link.1);
                let sender = &mut self.senders[s];
                let first = sender.windows[to].as_ref().is_some_and(|w| w.release());
                if first {
                    let kept: Vec<u64> = sender.kept[to].drain(..).collect();
                    for seq in kept.into_iter().rev() {
                        sender.redeliver.push_front(seq);
                        self.redelivered.insert((s, seq));
                    }
                    sender.waiting = false;
                }
            }
            Msg::Credit { to, taken, grant } => {
                let s = self.sender_index(link.1);
                let sender = &mut self.senders[s];
                for _ in 0..taken {
                    sender.kept[to].pop_front().expect("told more taken than sent");
                }
                match sender.credits.grant(receiver_id(to), from, grant) {
                    // The router's senders are woken (`ChannelRoute::wake`).
                    Granted::Window(_) => sender.waiting = false,
                    Granted::Kept => {}
                    Granted::Returned(n) => {
                        let node = sender.node;
                        self.push(node, from, Msg::Return { to, n });
                    }
                    Granted::Refused => panic!("credit refused from the receiver's own node"),
                }
            }
            Msg::Reclaim { to } => {
                let s = self.sender_index(link.1);
                let sender = &self.senders[s];
                let n = match sender.credits.get_from(receiver_id(to), from) {
                    Some((window, _, _)) => window.reclaim(),
                    None => sender.credits.take_early(receiver_id(to), from),
                };
                let node = sender.node;
                self.push(node, from, Msg::Return { to, n });
            }
        }
    }

    /// Credit out never above the capacity, and every unit accounted for.
    fn check(&self) {
        for (r, rx) in self.receivers.iter().enumerate() {
            let any_forgotten = rx.forgot.iter().any(|f| *f);
            assert!(
                rx.books.out_total() <= rx.capacity,
                "receiver {r}: credit out above the capacity"
            );
            assert!(
                any_forgotten || rx.books.committed() <= rx.capacity,
                "receiver {r}: {} held or out, capacity {}",
                rx.books.committed(),
                rx.capacity
            );
            for (s, sender) in self.senders.iter().enumerate() {
                if sender.dead || rx.forgot[s] || rx.detached {
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
                    rx.books.out_to(sender.node),
                    held + on_the_way,
                    "receiver {r} counts credit out to node {} that the node neither holds nor has on its way",
                    sender.node
                );
            }
        }
    }

    /// A sending node crashes (never the last one alive): what it has not sent is lost with it,
    /// frames to it are lost, and the frames it sent may or may not arrive.
    fn crash(&mut self) {
        let alive: Vec<usize> =
            (0..self.senders.len()).filter(|s| !self.senders[*s].dead).collect();
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
        let rx = &mut self.receivers[r];
        rx.detached = true;
        let mut nodes: std::collections::BTreeSet<NodeId> = rx.books.known().collect();
        rx.local_left = 0;
        for (s, seq) in std::mem::take(&mut rx.buf) {
            if s == LOCAL {
                // Its own node delivers those elsewhere (`Detached`): not the credit protocol's.
                self.seen.insert((LOCAL - r, seq));
            } else {
                nodes.insert(self.senders[s].node);
            }
        }
        let taken = self.receivers[r].books.flush_taken();
        self.emit(r, taken);
        let node = self.receivers[r].node;
        for to in nodes {
            self.push(node, to, Msg::Released { to: r });
        }
    }

    /// Receiver `r`'s node applies sender `s`'s removal (`Inbox::node_left`).
    fn forget(&mut self, r: usize, s: usize) {
        let node = self.senders[s].node;
        let rx = &mut self.receivers[r];
        rx.forgot[s] = true;
        rx.books.forget(node);
        // `Inbox::node_left` wakes the senders waiting for room.
        rx.local_waiting = false;
        let idle = rx.buf.is_empty();
        let out = rx.books.settle(idle, None, false);
        self.emit(r, out);
    }

    fn links(&self) -> Vec<(NodeId, NodeId)> {
        self.net.iter().filter(|(_, q)| !q.is_empty()).map(|(k, _)| *k).collect()
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
            6..=8 => {
                let r = self.rng.below(self.receivers.len());
                self.take(r);
            }
            9 if self.rng.below(20) == 0 => self.crash(),
            9 if self.rng.below(20) == 0 => self.drop_receiver(),
            _ => {
                let s = self.rng.below(self.senders.len());
                let r = self.rng.below(self.receivers.len());
                self.make_window(s, r);
            }
        }
        // Receivers' nodes apply a crashed node's removal, each in its own time.
        if self.rng.below(4) == 0 {
            let r = self.rng.below(self.receivers.len());
            for s in 0..self.senders.len() {
                if self.senders[s].dead && !self.receivers[r].forgot[s] {
                    self.forget(r, s);
                    break;
                }
            }
        }
        self.check();
    }

    /// After the random phase: every node gets its turn until everything is taken.
    fn finish(&mut self) {
        for r in 0..self.receivers.len() {
            for s in 0..self.senders.len() {
                if self.senders[s].dead && !self.receivers[r].forgot[s] {
                    self.forget(r, s);
                }
            }
        }
        for s in 0..self.senders.len() {
            for r in 0..self.receivers.len() {
                self.make_window(s, r);
            }
        }
        let mut idle_rounds = 0;
        let done = |sim: &Sim| {
            sim.senders.iter().all(|s| {
                s.dead
                    || s.left_to_send == 0
                        && s.redeliver.is_empty()
                        && s.kept.iter().all(VecDeque::is_empty)
            }) && sim.receivers.iter().all(|r| r.detached || r.local_left == 0 && r.buf.is_empty())
        };
        while !done(self) {
            let before = (self.taken, self.steps);
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
                self.receivers.iter().map(|r| format!("{:?}", r.books)).collect::<Vec<_>>(),
                self.senders.iter().map(|s| format!("{:?}", s.windows)).collect::<Vec<_>>(),
            );
        }
        // What is left on the way (the last "taken" counts) arrives; then every sending node
        // knows that everything it sent was taken.
        for _ in 0..50 {
            if self.links().is_empty() {
                break;
            }
            for link in self.links() {
                self.deliver(link);
            }
            for r in 0..self.receivers.len() {
                self.take(r);
            }
            self.check();
        }
        for (r, rx) in self.receivers.iter().enumerate() {
            let lost: Vec<u64> =
                (0..rx.local_next).filter(|seq| !self.seen.contains(&(LOCAL - r, *seq))).collect();
            assert!(lost.is_empty(), "messages {lost:?} of receiver {r}'s own node never taken");
        }
        for (s, sender) in self.senders.iter().enumerate().filter(|(_, s)| !s.dead) {
            let lost: Vec<u64> =
                (0..sender.next_seq).filter(|seq| !self.seen.contains(&(s, *seq))).collect();
            assert!(lost.is_empty(), "messages {lost:?} of sender {s} never taken");
        }
        assert!(
            self.senders.iter().all(|s| s.dead || s.kept.iter().all(VecDeque::is_empty)),
            "everything taken, yet not told: {:?}",
            self.senders.iter().map(|s| s.kept.clone()).collect::<Vec<_>>()
        );
    }
}

/// Run `seed`'s schedule; the panic message names the seed.
fn run(seed: u64) -> u64 {
    let outcome = std::panic::catch_unwind(|| {
        let mut sim = Sim::new(seed);
        let steps = 200 + sim.rng.below(2000);
        for _ in 0..steps {
            sim.step();
        }
        sim.finish();
        sim.steps
    });
    match outcome {
        Ok(steps) => steps,
        Err(e) => {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("seed {seed} failed: {why}\nreplay: DCHAN_SIM_SEED={seed} cargo test --lib credit::sim");
        }
    }
}

#[test]
fn the_credit_protocol_holds_under_seeded_schedules() {
    if let Some(seed) = std::env::var("DCHAN_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        run(seed);
        return;
    }
    let seeds: u64 =
        std::env::var("DCHAN_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let started = std::time::Instant::now();
    let steps: u64 = (0..seeds).map(run).sum();
    eprintln!("{seeds} schedules, {steps} steps in {:?}", started.elapsed());
}
