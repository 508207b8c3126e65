//! The delivery protocol under seeded schedules, whole: the second stage of the deterministic
//! simulation (issue 18). Where the first stage ([`crate::channel::credit`]'s) drives the
//! receivers' books against a written-out sending side, this one runs, on every node, the code
//! users run from the switchboard down: [`Switchboard`](super::Switchboard) and its frame
//! handlers, refresh, release, redelivery and fences; the routers; the receivers' inboxes;
//! credit; the peers' outboxes (batching, keeping for redelivery, the numbered stream and its
//! resume); the connections' [`Reader`](crate::link::connection::Reader); and the application's
//! real [`Sender`](crate::Sender), [`Receiver`](crate::Receiver) and
//! [`AckReceiver`](crate::AckReceiver) (whose actors run on the simulation's actix system).
//!
//! What the simulation stands in for: the sockets (each link a FIFO per connection, see
//! [`net`]), Raft (a log it commits registry writes and membership changes to, applied by each
//! node in its own time, the watcher's refresh a step of its own, see [`node`]), and time
//! (nothing waits on a timer). One seed gives one schedule: the nodes' random draws come from
//! it ([`crate::clock::seed_thread`]), and everything runs on one thread, each spawned task
//! (redelivery, fences) polled when the schedule yields to the runtime.
//!
//! Events: registrations of senders and receivers (auto and manual acknowledgement) at any
//! time, racing frames; sends (a sender polled only when woken), takes, acknowledgements in any
//! order; frames read from any connection in any order (in order on each); writers; registry
//! applies and refreshes per node; a receiver dropped; a node crashing (what it wrote may still
//! arrive; it is removed from the registry, then the membership); a connection breaking (what it
//! carried lost, or read late, behind the next connection); a close; a send held between the
//! credit it took and its push, across any of these (see [`held`]).
//!
//! After every step: credit out never above a receiver's capacity (nor what it holds with it,
//! beyond the credit removed nodes held); nothing taken that was not sent; nothing taken twice
//! but in the windows the README names (a receiving node that died, a `manual_ack` receiver gone
//! with deliveries unacknowledged); order per sender and receiver until a receiver goes. Once
//! the faults stop, a fair finish: every message sent by a live node is taken, every
//! `wait_taken` returns, every live receiver ends after a close, and each node's tables hold
//! entries only for what is live (see [`bounds`]).
//!
//! Unnamed channels (`Node::channel`) run beside the named one, their senders carried from
//! node to node and decoded there, under the same faults and with their own invariants (see
//! [`unnamed`]); `DCHAN_SIM_UNNAMED=0` leaves them out (the schedules seeds made before them).
//!
//! Reply handles (`Node::oneshot`) travel inside the named channel's messages, answered,
//! dropped or passed on by whoever takes them, under the same faults and with their own
//! invariants (see [`replies`]); `DCHAN_SIM_REPLIES=0` leaves them out.
//!
//! `DCHAN_SIM_SEEDS=N` runs more seeds (from `DCHAN_SIM_FROM`); `DCHAN_SIM_SEED=S` replays one
//! ([`crate::channel::seeded`]; `DCHAN_SIM_TRACE=1`
//! prints every frame read).

mod app;
mod bounds;
mod found;
mod held;
mod leave;
mod net;
mod node;
mod rejoin;
mod replies;
mod replies_check;
mod schedule;
mod unnamed;
mod unnamed_check;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::Wake;

use bytes::Bytes;

use tokio_util::sync::CancellationToken;

use crate::channel::credit::sim::Rng;
use crate::channel::inbox::Inbox;
use crate::cluster::registry::Registry;
use crate::ids::{EndpointId, NodeId};
use crate::link::connection::{Links, Reader};
use crate::rpc::{Command, EndpointKind, Outcome};
use crate::{AckReceiver, Delivery, Receiver, SendError, Sender};

/// `DCHAN_SIM_TRACE` set: every frame read is printed.
pub(super) static TRACE: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("DCHAN_SIM_TRACE").is_some());

/// A message: (sending node, its number there).
type Msg = (u64, u64);

const CHANNEL: &str = "sim";

/// Set in the number of a broadcast message.
const BROADCAST: u64 = 1 << 32;

/// Set when a task's waker is woken: the simulation polls an application's future only then.
#[derive(Debug, Default)]
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Woken {
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// An endpoint a node registers during the schedule.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Sender { total: u64 },
    Receiver { capacity: u32, manual: bool },
}

/// What a node does once it has applied a registry write of its own (as `Core::write`
/// returns then).
#[derive(Debug, Clone, Copy)]
enum Then {
    Made(Plan, EndpointId),
    Deregistered(EndpointId),
    /// A live endpoint registered again after its node started over: (first id, new id).
    Again(EndpointId, EndpointId),
}

struct Node {
    id: NodeId,
    core: Arc<node::Core>,
    links: Arc<Links>,
    cancel: CancellationToken,
    /// How far into the log it has applied (its registry watch holds that registry).
    applied: usize,
    /// Its registry watcher has refreshed the switchboard since the last apply.
    refreshed: bool,
    dead: bool,
    /// Never crashes, and its receiver is never dropped: someone is left to take everything.
    steady: bool,
    /// Writes of its own committed and not yet applied here: (log index, what then).
    awaiting: Vec<(usize, Then)>,
    plans: Vec<Plan>,
    sender: Option<AppSender>,
    receiver: Option<AppReceiver>,
    /// It is leaving gracefully (see [`leave`]).
    leave: Option<leave::Leave>,
    /// Frozen, removed while alive, starting over (see [`rejoin`]).
    rejoin: rejoin::Rejoin,
}

/// One connection, one way (see [`net`]): the frames it carries, read by the real reader.
struct Conn {
    frames: VecDeque<Bytes>,
    reader: Reader,
    /// Still written to (the newest of its pair); a broken one only drains.
    open: bool,
    /// The peer whose outbox it carries, on the writing node, and the one it is read for, on
    /// the reading node: a node that forgets a peer stops its connections with it.
    writer: Arc<crate::link::peer::Peer>,
    read_for: Arc<crate::link::peer::Peer>,
}

/// An application's sending task: the send (of that number) or the wait in progress.
type Op = Pin<Box<dyn Future<Output = Result<Option<u64>, SendError<replies::Wire>>>>>;

struct AppSender {
    tx: Sender<replies::Wire>,
    /// Its registration now (a new one once its node started over), and the first.
    id: EndpointId,
    first: EndpointId,
    next: u64,
    total: u64,
    /// The send (of that number) or the wait in progress.
    op: Option<Op>,
    woken: Arc<Woken>,
    /// A send failed: the channel is closed.
    closed: bool,
    /// Every message sent and taken (`wait_taken` returned).
    done: bool,
}

enum Rx {
    Auto(Receiver<replies::Wire>),
    Manual(AckReceiver<replies::Wire>),
}

struct AppReceiver {
    rx: Option<Rx>,
    /// Its registration now (a new one once its node started over), and the first.
    id: EndpointId,
    first: EndpointId,
    inbox: Arc<Inbox<replies::Wire>>,
    capacity: u32,
    unacked: Vec<Delivery<replies::Wire>>,
    woken: Arc<Woken>,
    /// It said `None`: the channel closed and everything sent before was taken.
    ended: bool,
}

impl Node {
    /// Neither dead nor frozen.
    fn runs(&self) -> bool {
        !self.dead && !self.rejoin.frozen
    }

    /// Runs, and is not cut off from the others (see [`rejoin::Rejoin::cut`]): its links carry
    /// frames, it applies the log, and its writes reach the leader.
    fn reachable(&self) -> bool {
        self.runs() && !self.rejoin.cut
    }
}

struct Sim {
    rng: Rng,
    nodes: Vec<Node>,
    links: BTreeMap<(NodeId, NodeId), Vec<Conn>>,
    /// The registry after each committed entry (the log, applied).
    log: Vec<Arc<Registry>>,
    /// Every message whose send (or broadcast) returned `Ok`.
    sent: BTreeSet<Msg>,
    /// Every broadcast started, and the steady receiver if the sending node's router had it
    /// then (it must get its copy).
    broadcasts: HashMap<Msg, Option<EndpointId>>,
    /// The steady receiver's id, once registered.
    steady_receiver: Option<EndpointId>,
    /// Who took each message.
    taken: HashMap<Msg, Vec<NodeId>>,
    /// Messages that may be taken again (README: a receiving node that dies; `manual_ack`).
    may_repeat: HashSet<Msg>,
    /// Nodes removed while alive: their messages, and what they took, may be taken again.
    loose: HashSet<NodeId>,
    /// Nodes let back in after a removal (each starts over).
    started_over: u64,
    /// Per (sending node, its thread: the application's 0, a held send's `held::HELD`, receiving
    /// node), the last number taken; checked until a receiver goes.
    last: HashMap<(u64, u64, NodeId), u64>,
    disorder: bool,
    /// Nodes crashed so far; whether the channel was closed (committed), or asked to be.
    crashed: u32,
    closed: bool,
    closing: bool,
    /// Whether this schedule freezes nodes (see [`schedule::freezes`]).
    freezes: bool,
    /// Messages dropped so far because every receiver of the closed channel had ended when
    /// they were to be delivered again (README, Close), as last checked.
    dropped: HashSet<Msg>,
    steps: u64,
    /// How far the log was read for receivers, and every receiver registered so far (see
    /// [`bounds`]).
    receivers_seen: (usize, BTreeSet<EndpointId>),
    /// Dead nodes' endpoints, kept so that nothing of theirs runs on drop.
    graveyard: Vec<(Option<AppSender>, Option<AppReceiver>)>,
    /// The unnamed channels (see [`unnamed`]).
    unnamed: unnamed::Unnamed,
    /// The reply handles (see [`replies`]).
    replies: replies::Replies,
    /// Whether senders are dropped, between their sends (see [`schedule::drop_senders`]).
    drop_senders: bool,
    /// Whether a node may leave before everything it sent was taken (see
    /// [`schedule::impatient_leaves`]).
    impatient: bool,
    /// Some leaves are written twice, as a leader's (see [`schedule::rewritten_leaves`]).
    rewritten_leaves: bool,
    /// Faults so far that may lose what a node that has left sent (see [`Sim::left_clean`]):
    /// removals, leaves, receivers dropped, a close.
    faults: u64,
    /// Nodes that left gracefully, with `faults` when they stopped: what such a node sent is
    /// taken unless a fault came after (README, Delivery guarantees: its messages depend on
    /// the receiving nodes once it has gone; nothing may be lost by the leave itself).
    left_at: HashMap<NodeId, u64>,
    /// Nodes that were leaving when another node crashed: what they sent that node and had not
    /// heard taken may be lost with it (README, Delivery guarantees: a receiving node that dies
    /// while a sending node leaves), so `left_at` does not hold them to it.
    crash_while_leaving: HashSet<NodeId>,
    /// (reader, sayer): node `reader` has read node `sayer`'s last word (`Frame::Bye`); its
    /// receiver counts no credit out to it from then on (see `Sim::check`).
    byes: HashSet<(NodeId, NodeId)>,
    /// Sends held between their credit and their push (see [`held`]).
    held: held::HeldSends,
}

impl Sim {
    fn new(seed: u64, freezes: bool) -> Self {
        let mut rng = Rng(seed);
        let n = 2 + rng.below(3);
        let mut nodes = Vec::new();
        for i in 0..n {
            let id = i as NodeId + 1;
            let (core, links, cancel) = node::start(id);
            let mut plans = Vec::new();
            if i == 0 || rng.below(2) == 0 {
                plans.push(Plan::Receiver {
                    capacity: 1 + rng.below(8) as u32,
                    manual: rng.below(3) == 0,
                });
            }
            if i == 1 || rng.below(3) > 0 {
                plans.push(Plan::Sender { total: 10 + rng.below(50) as u64 });
            }
            nodes.push(Node {
                id,
                core,
                links,
                cancel,
                applied: 0,
                refreshed: true,
                dead: false,
                steady: i == 0,
                awaiting: Vec::new(),
                plans,
                sender: None,
                receiver: None,
                leave: None,
                rejoin: rejoin::Rejoin::default(),
            });
        }
        let mut sim = Sim {
            rng,
            nodes,
            links: BTreeMap::new(),
            log: vec![Arc::new(Registry::default())],
            sent: BTreeSet::new(),
            broadcasts: HashMap::new(),
            steady_receiver: None,
            taken: HashMap::new(),
            may_repeat: HashSet::new(),
            loose: HashSet::new(),
            started_over: 0,
            last: HashMap::new(),
            disorder: false,
            crashed: 0,
            closed: false,
            closing: false,
            dropped: HashSet::new(),
            freezes,
            steps: 0,
            receivers_seen: (0, BTreeSet::new()),
            graveyard: Vec::new(),
            unnamed: unnamed::Unnamed::default(),
            replies: replies::Replies::default(),
            drop_senders: false,
            impatient: false,
            rewritten_leaves: false,
            faults: 0,
            left_at: HashMap::new(),
            crash_while_leaving: HashSet::new(),
            byes: HashSet::new(),
            held: held::HeldSends::default(),
        };
        let members: Vec<NodeId> = sim.nodes.iter().map(|n| n.id).collect();
        sim.commit_membership(&members);
        // Each node acts only once it has seen itself a member (`Node::join` returns then).
        let formed = sim.log.last().expect("log").clone();
        for node in &mut sim.nodes {
            node.rejoin.joined(&formed, node.id);
        }
        // The steady receiver first: registered before any close.
        sim.register(0);
        sim
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize - 1]
    }

    /// Commit `cmd` to the log (as the leader does).
    fn commit(&mut self, cmd: &Command) -> (usize, Outcome) {
        let mut registry = (**self.log.last().expect("log")).clone();
        let outcome = registry.apply(cmd);
        self.push(registry);
        (self.log.len() - 1, outcome)
    }

    fn commit_membership(&mut self, members: &[NodeId]) {
        let mut registry = (**self.log.last().expect("log")).clone();
        registry.set_membership(
            members.iter().map(|id| (*id, node::addr(*id))),
            members.iter().copied(),
        );
        self.push(registry);
    }

    fn push(&mut self, mut registry: Registry) {
        registry.version = self.log.len() as u64;
        registry.applied = registry.version;
        // A node the membership drops has its unnamed channels over (the nodes that see it
        // close their senders), whether it knows yet or not, and however it comes back.
        for c in &mut self.unnamed.chans {
            if !registry.nodes.is_empty() && !registry.nodes.contains_key(&c.owner) {
                c.owner_removed = true;
            }
        }
        if *TRACE {
            eprintln!(
                "log {}: members {:?}",
                registry.version,
                registry.nodes.keys().collect::<Vec<_>>()
            );
        }
        self.log.push(Arc::new(registry));
    }

    /// Commit the registration of an endpoint of node `i` (a write it waits on).
    fn commit_register(&mut self, i: usize, kind: EndpointKind, capacity: u32) -> (usize, Outcome) {
        let cmd = Command::Register {
            channel: CHANNEL.to_owned(),
            type_name: std::any::type_name::<replies::Wire>().to_owned(),
            kind,
            node: self.nodes[i].id,
            capacity,
            token: self.rng.next(),
        };
        self.commit(&cmd)
    }

    /// Node `i` registers the next endpoint it plans (a registry write it waits on).
    fn register(&mut self, i: usize) {
        let node = &self.nodes[i];
        // (New registrations wait while the node starts over: `wait_started_over`.)
        if !node.reachable() || node.rejoin.starting_over || node.plans.is_empty() {
            return;
        }
        let plan = self.nodes[i].plans.remove(0);
        let (kind, capacity) = match plan {
            Plan::Sender { .. } => (EndpointKind::Sender, 0),
            Plan::Receiver { capacity, .. } => (EndpointKind::Receiver, capacity),
        };
        match self.commit_register(i, kind, capacity) {
            (at, Outcome::Registered(id)) => {
                self.nodes[i].awaiting.push((at, Then::Made(plan, id)))
            }
            (_, Outcome::Closed) => {}
            (_, other) => panic!("registration refused: {other:?}"),
        }
    }

    /// Node `i` applies the next entry of the log: its registry watch changes (frames handled
    /// from now on see it); its watcher refreshes the switchboard later.
    fn apply(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if !node.reachable() || node.applied + 1 >= self.log.len() {
            return;
        }
        node.applied += 1;
        node.core.registry.send_replace(self.log[node.applied].clone());
        node.refreshed = false;
    }

    /// Node `i`'s registry watcher runs (`Switchboard::refresh`); then its writes applied
    /// return to their callers (as `Core::write` does, after a refresh of its own).
    fn refresh(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if !node.runs() {
            return;
        }
        let registry = node.core.registry.borrow().clone();
        if *TRACE && !node.refreshed {
            eprintln!(
                "node {} refreshes to {} (members {:?})",
                node.id,
                registry.applied,
                registry.nodes.keys().collect::<Vec<_>>()
            );
        }
        node.core.switch.refresh(&registry);
        node.refreshed = true;
        let applied = node.applied;
        let (due, later): (Vec<_>, Vec<_>) =
            node.awaiting.drain(..).partition(|(at, _)| *at <= applied);
        node.awaiting = later;
        for (_, then) in due {
            match then {
                Then::Made(plan, id) => self.make(i, plan, id),
                Then::Deregistered(id) => self.nodes[i].core.switch.deregistered(id),
                Then::Again(first, id) => self.registered_again(i, first, id),
            }
        }
        self.check_removed(i);
        // As the node's registry watcher: the fences this registry made due go after it has
        // looked for its own removal.
        self.nodes[i].core.switch.send_fences();
    }

    /// The registry writes node `i`'s endpoints asked for (deregistrations, a close) commit.
    fn commit_writes(&mut self, i: usize) {
        if !self.nodes[i].reachable() {
            return;
        }
        let writes = std::mem::take(&mut *crate::sync::lock(&self.nodes[i].core.writes));
        for cmd in writes {
            let (at, _) = self.commit(&cmd);
            match cmd {
                Command::Deregister { id, .. } => {
                    self.nodes[i].awaiting.push((at, Then::Deregistered(id)));
                }
                Command::Close { .. } => {
                    self.closed = true;
                    self.faults += 1;
                }
                _ => {}
            }
        }
    }

    /// Node `i` stops (it crashed, or has left): it does nothing more, and its endpoints are
    /// kept aside, so that nothing of theirs runs on drop.
    fn stop(&mut self, i: usize) {
        self.collect_dropped();
        let node = &mut self.nodes[i];
        node.dead = true;
        node.cancel.cancel();
        node.core.switch.close_all();
        let (sender, receiver) = (node.sender.take(), node.receiver.take());
        self.graveyard.push((sender, receiver));
        let id = node.id;
        self.unnamed_stopped(id);
    }

    /// Node `i` crashes: it does nothing more; what it wrote may still arrive. The cluster
    /// removes it: its endpoints, then its membership.
    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.dead || node.steady {
            return;
        }
        let id = node.id;
        let late = self.rng.below(2) == 0;
        self.stop(i);
        self.held_crashed(i);
        self.cut_dead(id, late);
        // What it took may have been taken before its node said so: delivered again.
        let took: Vec<Msg> =
            self.taken.iter().filter(|(_, by)| by.contains(&id)).map(|(m, _)| *m).collect();
        self.may_repeat.extend(took);
        self.disorder = true;
        self.crashed += 1;
        let leaving = self.nodes.iter().filter(|n| !n.dead && n.leave.is_some()).map(|n| n.id);
        self.crash_while_leaving.extend(leaving);
        self.remove(id, false);
    }

    /// The cluster removes node `id`: its endpoints, then its membership (`graceful`: it asked
    /// to leave).
    /// Answers with the log index of the removal from the registry.
    fn remove(&mut self, id: NodeId, graceful: bool) -> u64 {
        self.faults += 1;
        let (removed, _) = self.commit(&Command::RemoveNode { node: id, graceful });
        let last = self.log.last().expect("log").clone();
        let members: Vec<NodeId> = last.nodes.keys().copied().filter(|n| *n != id).collect();
        self.commit_membership(&members);
        removed as u64
    }
}
