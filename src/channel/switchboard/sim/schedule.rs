//! The schedule: random steps with faults, the invariants after each, then a fair finish that
//! checks liveness; and the test that runs the seeds.

use super::{Sim, BROADCAST, CHANNEL, TRACE};
use crate::rpc::Command;

/// Whether seed `seed`'s schedule also freezes nodes past the failure timeout, which the
/// cluster then removes, and thaws them, lets them back in and has them start over (see
/// [`super::rejoin`]): odd seeds do, even seeds do not (a schedule without freezes reaches
/// further into the rest). `DCHAN_SIM_FREEZE=1` freezes in every schedule, `=0` in none; the
/// seeds the closing notes of issue 18 name as found "with freezes" replay with `=1`.
pub(super) fn freezes(seed: u64) -> bool {
    match std::env::var("DCHAN_SIM_FREEZE").ok().as_deref().map(str::trim) {
        Some("0") => false,
        Some(_) => true,
        None => seed % 2 == 1,
    }
}

/// Steps of the fair finish before a schedule is declared stuck.
const FINISH_ROUNDS: usize = 400;

impl Sim {
    /// One random step of the schedule.
    async fn step(&mut self, faults: bool) {
        self.steps += 1;
        let n = self.nodes.len();
        let i = self.rng.below(n);
        if self.unnamed.on && self.rng.below(4) == 0 {
            self.unnamed_step(i, faults);
            self.leaves();
            self.rejoins();
            self.check();
            self.check_unnamed();
            self.check_replies();
            self.check_bounds();
            return;
        }
        if self.replies.on && self.rng.below(8) == 0 {
            self.replies_step(i);
            self.leaves();
            self.rejoins();
            self.check();
            self.check_replies();
            self.check_bounds();
            return;
        }
        match self.rng.below(100) {
            0..=24 => {
                let readable = self.readable();
                if !readable.is_empty() {
                    let (from, to, c) = readable[self.rng.below(readable.len())];
                    self.read(from, to, c);
                }
            }
            25..=37 => {
                let writable = self.writable();
                if !writable.is_empty() {
                    let (from, to) = writable[self.rng.below(writable.len())];
                    self.write(from, to);
                }
            }
            38..=43 => self.apply(i),
            44..=49 => self.refresh(i),
            50..=53 => self.commit_writes(i),
            54..=56 => self.register(i),
            57..=69 => self.send(i),
            70..=81 => self.take(i),
            82..=85 => self.ack(i),
            86..=93 => settle_tasks(1 + self.rng.below(4)).await,
            94 | 95 if faults => {
                let j = self.rng.below(n);
                if i != j {
                    let late = self.rng.below(2) == 0;
                    let (a, b) = (self.nodes[i].id, self.nodes[j].id);
                    if *TRACE {
                        eprintln!("reset {a} <-> {b} (late: {late})");
                    }
                    self.reset(a, b, late);
                }
            }
            96 if faults && self.rng.below(4) == 0 => {
                if *TRACE && !self.nodes[i].dead && !self.nodes[i].steady {
                    eprintln!("crash {}", self.nodes[i].id);
                }
                self.crash(i);
            }
            97 if faults && self.drop_senders && self.rng.below(3) == 0 => self.drop_named_sender(),
            97 if faults && self.rng.below(2) == 0 => {
                if *TRACE {
                    eprintln!("drop receiver of {}", self.nodes[i].id);
                }
                self.drop_receiver(i);
            }
            98 if faults && !self.closing && !self.nodes[i].dead && self.rng.below(8) == 0 => {
                if *TRACE {
                    eprintln!("close, by {}", self.nodes[i].id);
                }
                self.closing = true;
                crate::sync::lock(&self.nodes[i].core.writes)
                    .push(Command::Close { channel: CHANNEL.to_owned() });
            }
            99 if faults && self.rng.below(3) == 0 => self.leave(i),
            99 if faults && self.freezes && self.rng.below(2) == 0 => {
                let cut = self.rng.below(2) == 0;
                self.freeze(i, cut);
            }
            99 if self.freezes && self.rng.below(2) == 0 => self.thaw(i),
            // Time passes (timeouts: a leave that waits for a peer that died, a request
            // unanswered, a forgotten peer's grace period).
            99 if self.rng.below(2) == 0 => {
                let mut ms = self.rng.below(3000) as u64;
                // (While a node hands over, with impatient leaves, little at a time: its
                // hand-over's timeout is not for receivers that run, and what a leaving node
                // sent is checked as delivered; see `left_at`.)
                if self.impatient && self.handing_over() {
                    ms = ms.min(100);
                }
                tokio::time::advance(std::time::Duration::from_millis(ms)).await;
            }
            _ => {}
        }
        self.leaves();
        self.rejoins();
        self.check();
        self.check_unnamed();
        self.check_replies();
        self.check_bounds();
    }

    /// Every node does everything it can, in turn, until nothing is left to do.
    async fn finish(&mut self) {
        for i in 0..self.nodes.len() {
            self.thaw(i);
        }
        for _ in 0..FINISH_ROUNDS {
            for i in 0..self.nodes.len() {
                // (Registrations wait while a node starts over.)
                for _ in 0..self.nodes[i].plans.len() {
                    self.register(i);
                }
                self.commit_writes(i);
                while !self.nodes[i].dead && self.nodes[i].applied + 1 < self.log.len() {
                    self.apply(i);
                }
                if !self.nodes[i].refreshed || !self.nodes[i].awaiting.is_empty() {
                    self.refresh(i);
                }
            }
            for (from, to) in self.writable() {
                self.write(from, to);
            }
            let mut frames = 0;
            while let Some(&(from, to, c)) = self.readable().first() {
                self.read(from, to, c);
                frames += 1;
                assert!(frames < 100_000, "frames never stop: {}", self.report());
            }
            for i in 0..self.nodes.len() {
                for _ in 0..64 {
                    self.send(i);
                    self.take(i);
                }
                while self.nodes[i].receiver.as_ref().is_some_and(|r| r.has_unacked()) {
                    self.ack(i);
                }
                self.unnamed_finish(i);
                self.replies_finish(i);
            }
            settle_tasks(4).await;
            if std::env::var("DCHAN_SIM_BOOKS").is_ok() {
                for n in &self.nodes {
                    if let Some(r) = n.receiver.as_ref() {
                        eprintln!("BOOKS node {} {}", n.id, r.describe());
                    }
                }
            }
            // Time passes, so that what waits on a timeout gets on.
            tokio::time::advance(std::time::Duration::from_millis(100)).await;
            self.leaves();
            self.rejoins();
            self.check();
            self.check_unnamed();
            self.check_replies();
            if self.is_done() {
                return;
            }
        }
        panic!("stuck after the faults stopped: {}", self.report());
    }

    /// Every live sender has sent everything and seen it taken; every message a live node sent
    /// was taken; after a close, every live receiver has ended.
    fn is_done(&self) -> bool {
        let live = |node: u64| self.nodes.iter().any(|n| n.id == node && !n.dead);
        let senders_done = self
            .nodes
            .iter()
            .filter(|n| !n.dead)
            .all(|n| n.sender.as_ref().is_none_or(|s| s.done) && n.plans.is_empty());
        let steady = self.nodes.iter().find(|n| n.steady).map(|n| n.id);
        // Every broadcast that had the steady receiver reached it.
        let copies = self.sent.iter().filter(|m| m.1 & BROADCAST != 0).all(|m| {
            self.broadcasts[m].is_none()
                || self.taken.get(m).is_some_and(|by| by.iter().any(|n| Some(*n) == steady))
        });
        // Every message of a live sender, but those a node had to redeliver once every receiver
        // of the closed channel had ended (README, Close): dropped, and known by the node.
        // (And of a node that left, unless a fault since may have lost it, see `left_at`, or
        // the channel is closed: what the node had to deliver again once every receiver had
        // ended was dropped, README, Close, and it is not there to say which.)
        let left_clean = |node: u64| !self.closing && self.left_at.get(&node) == Some(&self.faults);
        let all_taken = self
            .sent
            .iter()
            .filter(|m| m.1 & BROADCAST == 0 && (live(m.0) || left_clean(m.0)))
            .filter(|m| !self.taken.contains_key(m))
            .all(|m| self.dropped.contains(m));
        let ended = !self.closed
            || self
                .nodes
                .iter()
                .filter(|n| !n.dead)
                .all(|n| n.receiver.as_ref().is_none_or(|r| r.rx.is_none() || r.ended));
        let left = self.nodes.iter().all(|n| n.dead || n.leave.is_none());
        let settled = self.nodes.iter().all(|n| n.dead || !n.rejoin.starting_over);
        if std::env::var("DCHAN_SIM_WHY").is_ok() {
            eprintln!("why: senders {senders_done} taken {all_taken} copies {copies} ended {ended} left {left} settled {settled} unnamed {} replies {}", self.unnamed_done(), self.replies_done());
        }
        senders_done
            && all_taken
            && copies
            && ended
            && left
            && settled
            && self.unnamed_done()
            && self.replies_done()
    }

    pub(super) fn report(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out += &format!(
                "\n  node {}{}: applied {}/{}, sender {}, receiver {}, entries {}",
                n.id,
                if n.dead { " (dead)" } else { "" },
                n.applied,
                self.log.len() - 1,
                n.sender.as_ref().map_or("-".into(), |s| {
                    let route = n.core.switch.find_route(CHANNEL);
                    let (in_flight, rerouting) =
                        route.map_or((0, false), |r| (r.in_flight(), r.is_rerouting()));
                    let departed = n.core.switch.find_route(CHANNEL).map(|r| r.departed_state());
                    format!(
                        "{} (in flight {in_flight}, rerouting {rerouting}, departed {departed:?})",
                        s.describe()
                    )
                }),
                n.receiver.as_ref().map_or("-".into(), |r| r.describe()),
                n.core.switch.entries(),
            );
        }
        let missing: Vec<_> =
            self.sent.iter().filter(|m| !self.taken.contains_key(m)).take(10).collect();
        out += &format!("\n  not taken (first 10): {missing:?}");
        out += &self.describe_unnamed();
        out += &self.describe_replies();
        for (i, r) in self.log.iter().enumerate() {
            let ch = r.channel(CHANNEL);
            out += &format!(
                "\n  log {i}: members {:?}, endpoints {:?}, closed by {:?}",
                r.nodes.keys().collect::<Vec<_>>(),
                ch.map(|c| c.endpoints.iter().map(|e| (e.id, e.node)).collect::<Vec<_>>()),
                ch.and_then(|c| c.closed.clone()),
            );
        }
        out
    }
}

/// Let the runtime run what is ready (redelivery, fences, receivers' actors), `rounds` times.
pub(super) async fn settle_tasks(rounds: usize) {
    for _ in 0..rounds {
        tokio::task::yield_now().await;
    }
}

/// Whether schedules have unnamed channels (see [`super::unnamed`]): they do, but with
/// `DCHAN_SIM_UNNAMED=0` (the schedule each seed made before they came, as the seeds of
/// [`FOUND`] replay).
fn unnamed() -> bool {
    std::env::var("DCHAN_SIM_UNNAMED").ok().as_deref().map(str::trim) != Some("0")
}

/// Whether schedules drop senders (see `Sim::drop_named_sender`): they do, but with
/// `DCHAN_SIM_DROP_SENDERS=0` (the schedule each seed made before, as the seeds found before
/// replay). The schedules it makes (every seed's, since it draws) found two defects, fixed (the
/// seeds of [`FOUND_DROPS`]).
fn drop_senders() -> bool {
    std::env::var("DCHAN_SIM_DROP_SENDERS").ok().as_deref().map(str::trim) != Some("0")
}

/// Whether odd seeds' messages carry trace headers (see `trace::carry_headers`): they do, but
/// with `DCHAN_SIM_HEADERS=0`. Headers draw nothing from the schedule's randomness: a seed
/// makes the same schedule with them or without.
fn headers() -> bool {
    std::env::var("DCHAN_SIM_HEADERS").ok().as_deref().map(str::trim) != Some("0")
}

/// Whether a node may leave before everything its sender sent was taken (it hands over what
/// its own receiver holds of it, and delivers elsewhere what a receiver gone meanwhile gives
/// back; what it sent is checked as taken unless a fault came after it stopped): with
/// `DCHAN_SIM_IMPATIENT=1`. Not yet by default: such schedules still find a defect (seed 3848:
/// a message of a node that left taken twice, see the note); never in the replays of
/// the seeds found before [`FOUND_IMPATIENT`] (their schedules waited for `wait_taken`).
fn impatient_leaves() -> bool {
    std::env::var("DCHAN_SIM_IMPATIENT").ok().as_deref().map(str::trim) == Some("1")
}

/// Whether schedules have reply handles (see [`super::replies`]): they do, but with
/// `DCHAN_SIM_REPLIES=0` (the schedule each seed made before they came, as the seeds of
/// [`FOUND_UNNAMED`] replay; with `DCHAN_SIM_UNNAMED=0` too, those of [`FOUND`]).
fn replies() -> bool {
    std::env::var("DCHAN_SIM_REPLIES").ok().as_deref().map(str::trim) != Some("0")
}

/// What one schedule did: steps, messages sent, broadcasts sent, nodes crashed, closes,
/// messages dropped by the README's Close exception, nodes that left, nodes let back in;
/// unnamed channels made, messages sent on them, their senders decoded, their closes; reply
/// handles made, answers, `Dropped`, `Lost`, `Removed`, and those answered more than once
/// (copies of a request delivered again).
type Counts = [u64; 18];

/// Run the schedule of `seed`: random steps with faults, then the fair finish.
fn run(seed: u64) -> Counts {
    let settings = Settings {
        freezes: freezes(seed),
        unnamed: unnamed(),
        replies: replies(),
        drop_senders: drop_senders(),
        impatient: impatient_leaves(),
    };
    run_all(seed, settings)
}

/// What a schedule may do besides sending, taking and its faults (each off in the replays of
/// seeds found before it came, whose schedules it would change).
#[derive(Clone, Copy)]
#[allow(clippy::struct_excessive_bools)]
struct Settings {
    /// Nodes freeze (see [`freezes`]).
    freezes: bool,
    /// Unnamed channels (see [`unnamed`]).
    unnamed: bool,
    /// Reply handles (see [`replies`]).
    replies: bool,
    /// Senders dropped between their sends (see [`drop_senders`]).
    drop_senders: bool,
    /// Nodes leave before what they sent was taken (see [`impatient_leaves`]).
    impatient: bool,
}

/// Schedule `seed`, freezing nodes or not, with unnamed channels or not, with reply handles or
/// not, never dropping a sender (the schedules the seeds found before made).
fn run_with(seed: u64, freezes: bool, unnamed: bool, replies: bool) -> Counts {
    let settings = Settings { freezes, unnamed, replies, drop_senders: false, impatient: false };
    run_all(seed, settings)
}

/// Run the schedule of `seed` with `settings`.
fn run_all(seed: u64, settings: Settings) -> Counts {
    let Settings { freezes, unnamed, replies, drop_senders, impatient } = settings;
    crate::clock::seed_thread(Some(seed));
    crate::sync::hash_order(crate::channel::seeded::hash_key(seed));
    // Odd seeds: every message a node sends to another carries a trace header (see
    // `trace::carry_headers`), through redelivery, broadcast copies and drops.
    crate::channel::trace::carry_headers(headers() && seed % 2 == 1);
    let _logs = TRACE.then(|| {
        let logs = tracing_subscriber::fmt()
            .with_env_filter("dchan=trace")
            // Through the test harness, in order with the simulation's own lines.
            .with_test_writer()
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::set_default(logs)
    });
    let system = actix::System::new();
    let steps = system.block_on(async move {
        // The simulation's clock: it moves only when the schedule says so.
        tokio::time::pause();
        let mut sim = Sim::new(seed, freezes);
        sim.unnamed.on = unnamed;
        sim.drop_senders = drop_senders;
        sim.impatient = impatient;
        if replies {
            sim.replies_start();
        }
        let length = 200 + sim.rng.below(1200);
        for _ in 0..length {
            sim.step(true).await;
        }
        sim.finish().await;
        sim.check_tables_settle().await;
        sim.check_replies_settled();
        let broadcasts = sim.sent.iter().filter(|m| m.1 & BROADCAST != 0).count() as u64;
        let sent = sim.sent.len() as u64 - broadcasts;
        let dropped = sim.dropped.len() as u64;
        let left = sim.nodes.iter().filter(|n| n.leave.is_some() && n.dead).count() as u64;
        let back = sim.started_over;
        let closed = u64::from(sim.closed);
        let u = &sim.unnamed;
        let (chans, usent) = (u.chans.len() as u64, u.sent.len() as u64);
        let (decoded, ucloses) = (u.decoded, u.closes);
        let asks = &sim.replies.asks;
        let got = |f: fn(&Result<_, crate::oneshot::RecvError>) -> bool| {
            asks.iter().filter(|a| a.got.as_ref().is_some_and(f)).count() as u64
        };
        let answered = got(Result::is_ok);
        let rdropped = got(|g| matches!(g, Err(crate::oneshot::RecvError::Dropped)));
        let lost = got(|g| matches!(g, Err(crate::oneshot::RecvError::Lost(_))));
        let removed = got(|g| matches!(g, Err(crate::oneshot::RecvError::Removed)));
        let twice = asks.iter().filter(|a| a.sent.len() > 1).count() as u64;
        #[rustfmt::skip]
        let counts = [sim.steps, sent, broadcasts, u64::from(sim.crashed), closed, dropped, left,
            back, chans, usent, decoded, ucloses, asks.len() as u64, answered, rdropped, lost,
            removed, twice];
        counts
    });
    crate::clock::seed_thread(None);
    crate::sync::hash_order(0);
    steps
}

#[test]
fn every_schedule_delivers_every_message_through_the_real_switchboards() {
    let started = std::time::Instant::now();
    // (A failing seed ends the test, and its thread with the seeded clock.)
    // (A failure found with the freezes forced on or off replays with the same setting.)
    // (And one found with another hash order, with the same order.)
    let mut replay = String::new();
    for var in ["DCHAN_SIM_FREEZE", "DCHAN_SIM_HASH", "DCHAN_SIM_IMPATIENT"] {
        if let Ok(v) = std::env::var(var) {
            replay.push_str(&format!("{var}={v} "));
        }
    }
    replay.push_str("cargo test --lib switchboard::sim");
    let counts = crate::channel::seeded::run_seeds(300, &replay, run);
    let schedules = counts.len();
    let mut total: Counts = [0; 18];
    for counts in counts {
        for (t, n) in total.iter_mut().zip(counts) {
            *t += n;
        }
    }
    let [steps, sent, broadcasts, crashes, closes, dropped, left, back, chans, usent, decoded, ucloses, asks, answered, rdropped, lost, removed, twice] =
        total;
    eprintln!(
        "{schedules} schedules, {steps} steps in {:.1} s: {sent} messages sent, {broadcasts} broadcasts, \
         {crashes} nodes crashed, {left} left, {back} removed while alive and let back in, \
         {closes} channels closed, {dropped} redeliveries dropped after every receiver ended; \
         {chans} unnamed channels, {usent} messages sent on them, {decoded} of their senders \
         decoded, {ucloses} closes; {asks} reply handles, {answered} answered, {rdropped} \
         dropped, {lost} lost, {removed} removed, {twice} answered \
         twice",
        started.elapsed().as_secs_f64()
    );
}

/// Seeds named in issue 18's notes whose schedule, as it was found, is not among those CI runs:
/// beyond the range it runs, or found without freezes before odd seeds froze (or with
/// `DCHAN_SIM_FREEZE=1`, when even). With whether they freeze. (A change to the order things
/// run in changes the schedule a seed makes: these are the seeds, not always the schedules.)
const FOUND: &[(u64, bool)] = &[
    (5, false),
    (1_830, true),
    (2_165, false),
    (83, false),
    (141, false),
    (395, false),
    (907, false),
    (8_212, true),
    (15_067, false),
    (23_276, true),
    (104_967, true),
    (184_707, true),
    (269_126, false),
    (298_533, true),
];

/// Seeds that found defects of the unnamed channels (issue 19), with them (and freezes as the
/// seed says): 3 (a sender decoded after its owner crashed targeted the departing peer, and
/// waited for ever), 423 (credit granted for no window, after a start-over, kept for ever
/// once the owner had left), and those of the session after (each named where it is fixed, in
/// `switchboard::unnamed` and the inbox): 599 (a closed receiver granted a node that had
/// asked before its own close), 3041 (an ended receiver answered nothing to a want), 835,
/// 4802, 10604 (a close waited for, or credit stayed out to, a node no longer a member), 581
/// and 15864 (an owner gone that no departure named), 1813 (a peer back from a start-over
/// released its new incarnation's channels), 5792 and 13848 (a sender decoded after its
/// channel closed there sent after the end), 229 (a receiver ending at its node's start-over
/// left a waiting node unanswered), 12377 (a link made for a node its links had let go of),
/// 576 (a close that did not reach an owner the node had no link to yet), 19041 (a lagging
/// registry took a channel of an owner's new incarnation for its old one's), 10540 (the
/// capacity check's slack for a leaving node), 37369 (an owner's forgetting of a node removed
/// while alive), 49188 (a channel made before its node saw its own admission, taken for an
/// unknown owner's), 58117 (a close sent on a link made from a registry not refreshed to),
/// 88033 (a close waited for a member of a registry not refreshed to, gone again since).
/// Once senders were decoded on any node, whatever it knew of the owner: 1155 (credit granted
/// to a node that left lately voided at once, its next message refused), 14026 (a channel made
/// before its node saw itself admitted: the model, now as a started `Node`), 33245 (the
/// capacity check's slack for a node removed while alive, named channel), 138301 (a reclaim
/// deferred on a window a start-over voided, never answered, named channel).
const FOUND_UNNAMED: &[u64] = &[
    3, 229, 423, 576, 581, 599, 835, 1155, 1813, 3041, 4802, 5792, 10540, 10604, 12377, 13848,
    14026, 15864, 19041, 33245, 37369, 49188, 58117, 88033, 138301,
];

/// Seeds that found defects of the reply handles (issue 19), with them, and with unnamed
/// channels or not (freezes as the seed says), each named where it is fixed: 8 (a request
/// dropped undelivered after the close, its asker never told: `router::discard`), 3677 (a claim
/// behind the credit that said its request was taken) and 156914 (an answer behind an `ack`),
/// both lost with a receiving node that died (`Outbox::take`), 57763 (an answer lost with the
/// link of a node that forgot its asker, removed while alive: `Replies::removed`), 59736 (a
/// handle passed on by a node other than the asker, its taker dead after the passing node read
/// its "taken" and before its claim reached the asker: claimed through the passing node too,
/// `Peers::held`); and those
/// that found errors of the model: 77302 (a leaving node's unnamed inboxes), 21652 (a handle
/// passed on, its taker dead before its claim arrived: counted as the README's window, now
/// required to resolve), 118683 (the capacity slack of a node removed while alive), 25339 (a node removed and let back in while
/// it started over did not go round again, as `Core::check_removed` does). And, with them
/// and without unnamed channels, a defect of the named channel its schedule reaches only with
/// reply handles (they change the schedule: without them it passes, so it is not in [`FOUND`]):
/// 235795 (a start-over made its new windows from a registry newer than the one it last
/// refreshed to: a receiver registered and dropped between the two kept a departed target for
/// ever, `Switchboard::settle`).
const FOUND_REPLIES: &[(u64, bool)] = &[
    (8, true),
    (25_339, true),
    (59_736, false),
    (3_677, true),
    (57_763, true),
    (77_302, true),
    (21_652, false),
    (118_683, false),
    (156_914, false),
    (235_795, false),
];

/// Seeds that found defects with senders dropped between their sends (`DCHAN_SIM_DROP_SENDERS=1`,
/// which changes every seed's schedule), with unnamed channels and reply handles (freezes as
/// the seed says), each named where it is fixed: 23557 (no sender dropped in it: a peer given
/// up on as it started over, for it was no longer a member, stayed unanswered, so the credit
/// its new receiver granted after its own return was dropped and its reclaim never answered,
/// `Switchboard::ask_rejoined`), 53672 (a want that came before its receiver's inbox was
/// dropped, and the node, whose sender was gone before the receiver's node saw it, was never
/// offered credit for what it re-routed, `Switchboard::want_early`), 114199 (credit a receiver
/// had granted a node before it saw the node leave was freed at once and granted to another
/// node, while the leaving node handed over on it: 2 held or out against capacity 1,
/// `Grants::forget`, `Registry::left_gracefully`), 108581 (found with that fix's first
/// version, which kept the credit of every node that left counted, a dead one's too: the
/// hand-over of a node that left meanwhile found no room and lost what it held), 4661 (odd: its
/// messages carry trace headers; a request dropped undelivered after the close was decoded from
/// its header's first byte, so its reply handle never told its asker, `router/discard.rs`),
/// 170215 (a node refreshed from one registry to a later one listing the same members, an
/// unnamed channel's owner admitted and removed in between: its senders there were never
/// closed, `Switchboard::refresh` counts membership changes too).
const FOUND_DROPS: &[u64] = &[4_661, 23_557, 53_672, 108_581, 114_199, 170_215];

/// Seeds that found defects with impatient leaves (`DCHAN_SIM_IMPATIENT=1`), with unnamed
/// channels, reply handles and dropped senders (freezes as the seed says), each named where it
/// is fixed: 4554 (a leaving node stopped once its receivers' hand-over was out, while its own
/// sender's message, given back by a receiving node that died meanwhile, was still to be
/// delivered elsewhere: lost, `Switchboard::hand_over`).
const FOUND_IMPATIENT: &[u64] = &[4_554];

#[test]
fn the_schedules_that_found_defects_deliver_every_message() {
    // (Everything on; impatient leaves only for the seeds found with them.)
    let found = FOUND_DROPS.iter().map(|s| (*s, false));
    for (seed, impatient) in found.chain(FOUND_IMPATIENT.iter().map(|s| (*s, true))) {
        let replay = format!(
            "DCHAN_SIM_SEED={seed} DCHAN_SIM_IMPATIENT={} cargo test --lib switchboard::sim",
            u8::from(impatient)
        );
        crate::channel::seeded::run_one(&seed.to_string(), &replay, move || {
            let settings = Settings {
                freezes: freezes(seed),
                unnamed: true,
                replies: true,
                drop_senders: true,
                impatient,
            };
            run_all(seed, settings)
        });
    }
    for &(seed, unnamed) in FOUND_REPLIES {
        let replay = format!(
            "DCHAN_SIM_SEED={seed} DCHAN_SIM_UNNAMED={} cargo test --lib switchboard::sim",
            u8::from(unnamed)
        );
        crate::channel::seeded::run_one(&seed.to_string(), &replay, move || {
            run_with(seed, freezes(seed), unnamed, true)
        });
    }
    for &seed in FOUND_UNNAMED {
        let replay = format!("DCHAN_SIM_SEED={seed} cargo test --lib switchboard::sim");
        crate::channel::seeded::run_one(&seed.to_string(), &replay, move || {
            run_with(seed, freezes(seed), true, false)
        });
    }
    for &(seed, freezes) in FOUND {
        let replay = format!(
            "DCHAN_SIM_SEED={seed} DCHAN_SIM_FREEZE={} cargo test --lib switchboard::sim",
            u8::from(freezes)
        );
        crate::channel::seeded::run_one(&seed.to_string(), &replay, move || {
            run_with(seed, freezes, false, false)
        });
    }
}
