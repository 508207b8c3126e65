//! The credit protocol under seeded schedules: the first stages of the deterministic simulation
//! (issue 18, route (a): the channel layer as pure state machines driven by a seeded scheduler).
//!
//! What runs is the code users run: each receiver is a real [`Inbox`] (its books, its take,
//! want, return, offer, removal and hand-over paths), which sends its frames through the
//! [`Wire`] seam into a simulated network instead of the links; each sending node has the real
//! table of windows ([`Credits`], early grants included) and [`Window`]s. What the router and the
//! switchboard do around the windows (round robin, asking a receiver passed over, answering a
//! reclaim, re-routing on a release) is still written out here as they do it: the next stage puts
//! them behind the same kind of seam. The network is one FIFO queue per pair of nodes (links are
//! ordered), frames of different links delivered in any order.
//!
//! Events: sends, deliveries, takes, a sending node's window made at any time (its registry may
//! apply the receiver late: grants come before it), a sender on a receiver's own node (handing
//! messages over on room the books keep for it, asking for credit out elsewhere back when there
//! is none), receivers that go away (what they took is told, then `Released`, and the sending
//! nodes deliver the rest to another receiver), sending nodes that crash (what they sent may or
//! may not arrive) and whose removal each receiver's node applies in its own time, sending
//! nodes frozen past the failure timeout or cut off by a partition, removed while alive, thawed
//! (or healed) and starting over (`rejoin`), receivers with manual acknowledgement that
//! acknowledge in any order (`acks`), and a close that each node applies in its own time, with
//! fences behind the data (`close`). Waiting senders are woken only by what wakes them in the
//! real code.
//!
//! After every step: credit out never above the capacity (nor what is held with it, beyond the
//! credit a removed node held when it was forgotten), every unit of credit of a live node
//! accounted for (the receiver's count equals what the sending node holds plus what is on its
//! way either side), order per sender and receiver (but for redeliveries), nothing taken twice
//! (but, with manual acknowledgement, in the window the README names). Once the random phase
//! ends, every schedule must deliver every message of the live nodes, and tell them it was
//! taken (liveness: no credit lost, no redelivery dropped).
//!
//! `DCHAN_SIM_SEEDS=N` runs more seeds (from `DCHAN_SIM_FROM`); `DCHAN_SIM_SEED=S` replays one
//! ([`crate::channel::seeded`]; `DCHAN_SIM_TRACE=1`
//! prints every frame delivered).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::{Credits, Granted, Window};
use crate::channel::inbox::{ErasedInbox, Inbox, Token, Wire};
use crate::channel::router::ChannelRoute;
use crate::ids::{EndpointId, NodeId};
use crate::link::wire::Frame;
use crate::sync::lock;

/// The simulated network as an inbox sees it: what it sends is caught here, and put on the
/// links by the simulation.
#[derive(Debug, Default)]
struct SimWire {
    out: std::sync::Mutex<Vec<(NodeId, Msg)>>,
}

impl Wire for SimWire {
    fn credit(
        &self,
        node: NodeId,
        to: EndpointId,
        taken: u32,
        grant: u32,
        _: bool,
        _: u32,
    ) -> bool {
        let to = receiver_index(to);
        lock(&self.out).push((node, Msg::Credit { to, taken, grant }));
        true
    }

    fn frame(&self, node: NodeId, frame: &Frame<'_>) {
        let msg = match frame {
            Frame::Reclaim { to } => Msg::Reclaim { to: receiver_index(*to) },
            Frame::Released { to } => Msg::Released { to: receiver_index(*to) },
            other => panic!("an inbox sent {other:?}"),
        };
        lock(&self.out).push((node, msg));
    }
}

/// `DCHAN_SIM_TRACE` set: every frame delivered is printed (to follow a replayed seed).
fn tracing_frames() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("DCHAN_SIM_TRACE").is_some())
}

fn receiver_index(id: EndpointId) -> usize {
    (id - 1000) as usize
}

/// splitmix64: a seed gives the same schedule on every machine.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
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
    /// The sending node was removed while alive and starts over (`Request::Rejoined`).
    Rejoined,
    /// The sending node applied the close: nothing of the channel follows.
    Fence,
    /// The answer, from receiver `to`'s node: of what the sending node sent it and was not told
    /// taken, the first `n` were taken in.
    TookIn {
        to: usize,
        n: u32,
    },
}

struct Receiver {
    node: NodeId,
    /// Sending nodes this receiver's node has seen removed (it applied their removal).
    forgot: Vec<bool>,
    /// Sending nodes it has seen removed again after they were let back in (they died while
    /// starting over).
    removed_again: Vec<bool>,
    /// The credit those nodes held when they were forgotten: what they may still send on it is
    /// taken in beyond the capacity (README, Credit).
    slack: u32,
    capacity: u32,
    /// The receiver's inbox (the code users run), its frames caught by `wire`.
    inbox: Arc<Inbox<(usize, u64)>>,
    wire: Arc<SimWire>,
    /// Per sender, the last sequence number taken (order per sender and receiver).
    last: BTreeMap<usize, u64>,
    /// Its application dropped it (`Inbox::detach`): it takes nothing more.
    detached: bool,
    /// It hands out deliveries to acknowledge (`manual_ack`): those not yet acknowledged.
    manual: bool,
    unacked: Vec<(Token, (usize, u64))>,
    /// Per sending node: it had deliveries not yet acknowledged when this node forgot it (its
    /// new incarnation delivers again what it was not told was taken: README, manual_ack).
    gap: Vec<bool>,
    /// This node applied the close (see [`close`]), and the fences it has heard, per sender.
    closing: bool,
    fences: Vec<bool>,
    /// Its `recv` said the channel ended: its application takes nothing more.
    ended: bool,
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
    /// Left gracefully (`Node::shutdown`): it gave back its unused credit and sends nothing
    /// more; what it sent arrives before its removal does (it flushes first); frames to it are
    /// lost once it has stopped.
    gone: bool,
    /// Its application is done: it sends nothing new, waits until what it sent is taken
    /// (`Sender::wait_taken`), then its node leaves.
    finishing: bool,
    /// Frozen past the failure timeout, removed while alive, thawed, starting over (see
    /// [`rejoin`]).
    phase: Phase,
    /// It applied the close, and sent its fence (see [`close`]).
    closed: bool,
    fenced: bool,
}

/// Where a sending node stands with its membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Member,
    /// Frozen (SIGSTOP): it does nothing, and the frames to it wait on the link. The others
    /// remove it, each receiver's node in its own time.
    Frozen,
    /// Cut off by a partition: it goes on sending on the credit it has, but nothing it sends
    /// arrives, nor anything sent to it, until the partition heals; the others remove it.
    Cut,
    /// Thawed, removed, and not yet aware of it: it goes on with its old credit.
    Thawed,
    /// Let back in, it starts over: windows void, waiting for this many receivers' nodes to
    /// say what they took in of what it sent before.
    Settling(usize),
    /// Settled: its senders are registered again, and each receiver's node applies that (and
    /// offers it credit) in its own time.
    Registering,
}

impl Sender {
    /// Crashed or left: it sends nothing and hears nothing more.
    fn stopped(&self) -> bool {
        self.dead || self.gone
    }

    /// Frozen: it neither sends nor hears anything.
    fn frozen(&self) -> bool {
        self.phase == Phase::Frozen && !self.dead
    }
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
    /// Messages that may be taken twice: delivered and not acknowledged when their receiver
    /// went away, or sent again by a node starting over that a receiver with such deliveries
    /// could not answer for (at-least-once, as the README says of `manual_ack`).
    may_repeat: std::collections::HashSet<(usize, u64)>,
    /// Sending nodes that started over after being removed while alive.
    started_over: u64,
    /// The channel was closed: which sending nodes were members then (waited for).
    closed_by: Option<Vec<bool>>,
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
                let manual = rng.below(3) == 0;
                let wire = Arc::new(SimWire::default());
                let weak: std::sync::Weak<SimWire> = Arc::downgrade(&wire);
                Receiver {
                    node: 100 + r as NodeId,
                    forgot: Vec::new(),
                    removed_again: Vec::new(),
                    slack: 0,
                    capacity,
                    inbox: Arc::new(Inbox::new(
                        receiver_id(r),
                        Arc::new(ChannelRoute::new("sim", Arc::default())),
                        capacity as usize,
                        manual,
                        weak,
                    )),
                    wire,
                    last: BTreeMap::new(),
                    detached: false,
                    manual,
                    unacked: Vec::new(),
                    gap: Vec::new(),
                    closing: false,
                    fences: Vec::new(),
                    ended: false,
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
                gone: false,
                finishing: false,
                phase: Phase::Member,
                closed: false,
                fenced: false,
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
            may_repeat: Default::default(),
            started_over: 0,
            closed_by: None,
        };
        for r in 0..sim.receivers.len() {
            sim.receivers[r].forgot = vec![false; sim.senders.len()];
            sim.receivers[r].removed_again = vec![false; sim.senders.len()];
            sim.receivers[r].gap = vec![false; sim.senders.len()];
            sim.receivers[r].fences = vec![false; sim.senders.len()];
        }
        // Each receiver offers credit to the sending nodes it knows of (all, here), as it does
        // when it sees their senders registered.
        let nodes: Vec<NodeId> = sim.senders.iter().map(|s| s.node).collect();
        for r in 0..sim.receivers.len() {
            sim.receivers[r].inbox.offer(&nodes);
            sim.flush(r);
        }
        sim
    }

    fn push(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        self.net.entry((from, to)).or_default().push_back(msg);
    }

    /// What receiver `r`'s inbox sent, onto the network.
    fn flush(&mut self, r: usize) {
        let from = self.receivers[r].node;
        let out = std::mem::take(&mut *lock(&self.receivers[r].wire.out));
        for (node, msg) in out {
            self.push(from, node, msg);
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
        let no_new = self.senders[s].left_to_send == 0 || self.senders[s].finishing;
        let nothing = no_new && self.senders[s].redeliver.is_empty();
        if nothing || self.senders[s].waiting || self.senders[s].stopped() {
            return;
        }
        if self.senders[s].frozen() {
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
            if self.receivers[r].gap[s] {
                self.may_repeat.insert((s, seq));
            }
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

    /// Deliver the next frame of link `link`.
    fn deliver(&mut self, link: (NodeId, NodeId)) {
        let Some(msg) = self.net.get_mut(&link).and_then(VecDeque::pop_front) else { return };
        if tracing_frames() {
            eprintln!("{link:?}: {msg:?}");
        }
        let (from, _) = link;
        match msg {
            Msg::Data { to, from: s, seq } => {
                // Released again by a detached inbox; dropped (and warned about) by one that
                // gave no credit for it, which only a node it forgot may do.
                let rx = &mut self.receivers[to];
                let before = rx.inbox.buffered();
                let msg = Bytes::from(rmp_serde::to_vec_named(&(s, seq)).expect("encode"));
                rx.inbox.push_remote(from, false, std::iter::once(msg));
                let taken_in = rx.inbox.buffered() > before;
                assert!(
                    taken_in || rx.forgot[s] || rx.detached || rx.ended,
                    "a message of node {from} arrived without credit"
                );
                self.flush(to);
            }
            Msg::Want { to } => {
                let s = self.sender_index(from);
                if self.receivers[to].forgot[s] {
                    // Not a member any more, as this node has it: refused (`Switchboard::want`).
                    return;
                }
                self.receivers[to].inbox.want(from);
                self.flush(to);
            }
            Msg::Return { to, n } => {
                let rx = &mut self.receivers[to];
                rx.inbox.returned(from, n, None);
                rx.local_waiting = false;
                self.flush(to);
            }
            Msg::Rejoined => self.rejoined(link),
            Msg::Fence => {
                let s = self.sender_index(link.0);
                let r = self.receivers.iter().position(|r| r.node == link.1).expect("receiver");
                self.fence_arrives(r, s);
            }
            Msg::TookIn { to, n } => self.took_in(link, to, n),
            Msg::Credit { .. } | Msg::Reclaim { .. } | Msg::Released { .. }
                if self.senders[self.sender_index(link.1)].stopped() => {}
            Msg::Released { to } => {
                // `Switchboard::released`: the first release re-routes what was kept for it.
                let s = self.sender_index(link.1);
                let sender = &mut self.senders[s];
                let first = sender.windows[to].as_ref().is_some_and(|w| w.release());
                if first {
                    let kept: Vec<u64> = sender.kept[to].drain(..).collect();
                    // Released by a receiver that ended with deliveries not acknowledged: they
                    // go elsewhere too (README, manual_ack).
                    if self.receivers[to].manual {
                        self.may_repeat.extend(kept.iter().map(|seq| (s, *seq)));
                    }
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
                // After a release, what is acknowledged of what went elsewhere is nothing to
                // let go of any more (`Outbox::release` finds nothing kept).
                let released = sender.windows[to].as_ref().is_some_and(|w| w.is_released());
                for _ in 0..taken {
                    let kept = sender.kept[to].pop_front();
                    assert!(kept.is_some() || released, "told more taken than sent");
                }
                match sender.credits.grant(receiver_id(to), from, grant) {
                    // The router's senders are woken (`ChannelRoute::wake`).
                    Granted::Window(_) => sender.waiting = false,
                    Granted::Kept | Granted::Void => {}
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
}

mod acks;
mod app;
mod close;
mod rejoin;
mod schedule;
