//! What a node tells a monitoring system, through the [`metrics`] facade: every second (and
//! before each scrape of its own `/metrics`: see `NodeBuilder::metrics`), it reads what its
//! layers count and publishes it, to the application's recorder or to the node's own. Nothing
//! here is on a message's path: senders and receivers only bump the relaxed counters of their
//! channel (see [`crate::channel::counters`]), the connections' writers count per batch, and
//! this reads them.
//!
//! The names follow Prometheus' conventions (`_total` for counters, `_seconds` for times);
//! they are part of the contract, listed in the README's "Metrics" section. Labels: `channel`
//! (unnamed channels counted together as `(unnamed)`: one per request would be a series each),
//! `peer` (a node id). A process with several nodes publishing to one global recorder would
//! mix their figures: give each its own (`NodeBuilder::metrics`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use metrics::{counter, gauge, histogram, Recorder};
use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use super::Core;
use crate::sync::lock;

/// The label of every unnamed channel's figures.
pub(crate) const UNNAMED: &str = "(unnamed)";

/// How often the figures are published.
pub(crate) const PERIOD: Duration = Duration::from_secs(1);

/// A node without a leader heard from for this long, or the leader lease if longer (a leader:
/// without a quorum's acknowledgement) is not ready: it cannot register anything.
pub(crate) const READY_WITHIN: Duration = Duration::from_secs(2);

/// Where a node's figures go.
#[derive(Default)]
pub(crate) struct Telemetry {
    /// The node's own recorder (`NodeBuilder::metrics`); `None`: the process' global one.
    recorder: Option<Arc<dyn Recorder + Send + Sync>>,
    /// The channels and peers whose gauges the last round set: one gone since is set to 0
    /// once (a recorder keeps a series' last value, and a peer removed is not connected).
    shown: Mutex<(HashSet<String>, HashSet<String>)>,
    /// The figures' descriptions went to the recorder (once).
    described: std::sync::OnceLock<()>,
    /// Each counter's value as last published, by name and label value (see
    /// [`Totals`]); held for a whole publish, which it also keeps to one at a time.
    totals: Mutex<Totals>,
}

/// What the counters of channels and peers last published: published as increments, so that a
/// source that starts again from 0 (a channel gone and used again, a peer's link books made
/// anew) carries its series on, where `absolute` would keep the largest value and flatten it
/// until the new source passed the old. Only what the last publish saw is kept.
#[derive(Debug, Default)]
struct Totals {
    last: HashMap<(&'static str, String), u64>,
    seen: HashMap<(&'static str, String), u64>,
    /// When the last publish ended.
    at: Option<std::time::Instant>,
}

impl Totals {
    /// Counter `name` with `label` = `value` is at `now` in its source.
    fn publish(&mut self, name: &'static str, label: &'static str, value: &str, now: u64) {
        let key = (name, value.to_owned());
        let last = self.last.get(&key).copied().unwrap_or(0);
        // A source below what was published started again from 0: all of it is new.
        let delta = if now >= last { now - last } else { now };
        counter!(name, label => value.to_owned()).increment(delta);
        self.seen.insert(key, now);
    }

    /// A publish is over: what it did not see is forgotten.
    fn done(&mut self) {
        self.last = std::mem::take(&mut self.seen);
        self.at = Some(std::time::Instant::now());
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("own_recorder", &self.recorder.is_some()).finish()
    }
}

impl Telemetry {
    /// Figures that go to `recorder` rather than the global one.
    #[cfg(feature = "prometheus")]
    pub(crate) fn with_recorder(recorder: Arc<dyn Recorder + Send + Sync>) -> Self {
        Telemetry { recorder: Some(recorder), ..Telemetry::default() }
    }

    /// Run `f`, which records, against this node's recorder.
    pub(crate) fn record<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.recorder {
            Some(recorder) => metrics::with_local_recorder(&**recorder, f),
            None => f(),
        }
    }

    /// A `send` on `channel` waited `waited` for room (or a receiver).
    pub(crate) fn send_blocked(&self, channel: &str, unnamed: bool, waited: Duration) {
        let channel = if unnamed { UNNAMED.to_owned() } else { channel.to_owned() };
        self.record(|| {
            histogram!("dchan_send_blocked_seconds", "channel" => channel)
                .record(waited.as_secs_f64());
        });
    }

    /// A registration committed after `took`.
    pub(crate) fn registered(&self, took: Duration) {
        self.record(|| histogram!("dchan_registration_seconds").record(took.as_secs_f64()));
    }
}

impl Core {
    /// Publish every figure now.
    pub(crate) fn publish(&self) {
        self.telemetry.record(|| {
            let mut totals = lock(&self.telemetry.totals);
            self.telemetry.described.get_or_init(describe);
            self.publish_cluster();
            self.publish_channels(&mut totals);
            self.publish_peers(&mut totals);
            totals.done();
        });
    }

    /// Publish unless the last publish is younger than `age` (a scrape publishes first: many
    /// scrapers at once do not make the node walk its channels for each).
    #[cfg(feature = "prometheus")]
    pub(crate) fn publish_unless_within(&self, age: Duration) {
        if lock(&self.telemetry.totals).at.is_some_and(|at| at.elapsed() < age) {
            return;
        }
        self.publish();
    }

    fn publish_cluster(&self) {
        let registry = self.registry.borrow().clone();
        gauge!("dchan_members").set(registry.nodes.len() as f64);
        gauge!("dchan_voters").set(registry.voters.len() as f64);
        let m = self.raft.metrics().borrow().clone();
        gauge!("dchan_raft_term").set(m.current_term as f64);
        gauge!("dchan_raft_is_leader").set(f64::from(u8::from(m.state == ServerState::Leader)));
        let applied = m.last_applied.map_or(0, |l| l.index);
        gauge!("dchan_raft_applied_index").set(applied as f64);
        gauge!("dchan_raft_commit_index").set(self.log.committed().unwrap_or(applied) as f64);
        counter!("dchan_nodes_removed_total").absolute(self.membership.removed());
    }

    fn publish_channels(&self, totals: &mut Totals) {
        let label = |name: Option<String>| name.unwrap_or_else(|| UNNAMED.to_owned());
        for (name, c) in self.switch.counts() {
            if name.is_none() && c == Default::default() {
                continue; // no unnamed channel used yet
            }
            let channel = label(name);
            totals.publish("dchan_messages_sent_total", "channel", &channel, c.sent);
            totals.publish("dchan_bytes_sent_total", "channel", &channel, c.bytes_sent);
            totals.publish("dchan_messages_received_total", "channel", &channel, c.received);
            totals.publish("dchan_messages_redelivered_total", "channel", &channel, c.redelivered);
        }
        let mut shown = HashSet::new();
        for s in self.switch.stats() {
            let channel = s.name;
            shown.insert(channel.clone());
            gauge!("dchan_receiver_buffered", "channel" => channel.clone()).set(s.buffered as f64);
            gauge!("dchan_in_flight", "channel" => channel.clone()).set(s.in_flight as f64);
            gauge!("dchan_sends_blocked", "channel" => channel.clone()).set(s.blocked as f64);
            totals.publish("dchan_dead_letters_total", "channel", &channel, s.dead_letters_total);
        }
        // This node's endpoints, and 0 for a channel it routes without any (O(its own), not
        // O(the registry): a registry of 100,000 channels is not walked every second).
        let mut endpoints = self.endpoints.per_channel();
        for name in &shown {
            endpoints.entry(name.clone()).or_default();
        }
        for (name, (receivers, senders)) in endpoints {
            gauge!("dchan_receivers", "channel" => name.clone()).set(f64::from(receivers));
            gauge!("dchan_senders", "channel" => name.clone()).set(f64::from(senders));
            shown.insert(name);
        }
        let before = std::mem::replace(&mut lock(&self.telemetry.shown).0, shown.clone());
        for channel in before.difference(&shown) {
            for name in [
                "dchan_receiver_buffered",
                "dchan_in_flight",
                "dchan_sends_blocked",
                "dchan_receivers",
                "dchan_senders",
            ] {
                gauge!(name, "channel" => channel.clone()).set(0.0);
            }
        }
    }

    fn publish_peers(&self, totals: &mut Totals) {
        let mut shown = HashSet::new();
        for peer in self.peers.all() {
            shown.insert(peer.id.to_string());
            let (connected, connections) = peer.connections();
            let (frames, bytes, unacked) = peer.outbox.traffic();
            let id = peer.id.to_string();
            gauge!("dchan_peer_connected", "peer" => id.clone())
                .set(f64::from(u8::from(connected)));
            let reconnects = connections.saturating_sub(1);
            totals.publish("dchan_peer_reconnects_total", "peer", &id, reconnects);
            totals.publish("dchan_peer_frames_sent_total", "peer", &id, frames);
            totals.publish("dchan_peer_bytes_sent_total", "peer", &id, bytes);
            gauge!("dchan_peer_unacked_bytes", "peer" => id).set(unacked as f64);
        }
        let before = std::mem::replace(&mut lock(&self.telemetry.shown).1, shown.clone());
        for peer in before.difference(&shown) {
            gauge!("dchan_peer_connected", "peer" => peer.clone()).set(0.0);
            gauge!("dchan_peer_unacked_bytes", "peer" => peer.clone()).set(0.0);
        }
    }

    /// Whether this node can serve: a member that knows a leader (heard from it lately, or,
    /// leading, acknowledged by a quorum lately). `Err` says why not.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        if self.cancel.is_cancelled() {
            return Err("the node has stopped".into());
        }
        if self.leaving.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("the node is leaving the cluster".into());
        }
        if !self.registry.borrow().nodes.contains_key(&self.id) {
            return Err("not a member of the cluster (joining, or removed)".into());
        }
        // (Stretched with the round trip: heartbeats are further apart on a slow network.)
        let within = READY_WITHIN.max(self.elections.lease());
        let m = self.raft.metrics().borrow().clone();
        if m.state == ServerState::Leader {
            let acked = m.millis_since_quorum_ack.map(Duration::from_millis);
            return match acked {
                Some(a) if a < within => Ok(()),
                _ => Err("leading without a quorum: the other voters do not answer".into()),
            };
        }
        if m.current_leader.is_none() {
            return Err("no leader known (an election is under way, or no quorum)".into());
        }
        let silent = self.elections.leaderless_for();
        if silent >= within {
            return Err(format!("no leader heard from for {} ms", silent.as_millis()));
        }
        Ok(())
    }
}

/// How a figure is recorded.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every figure a node publishes: its name, kind, unit and what it is (Prometheus' `# HELP`).
const FIGURES: &[(&str, Kind, Option<metrics::Unit>, &str)] = {
    use metrics::Unit::{Bytes, Seconds};
    use Kind::{Counter, Gauge, Histogram};
    &[
        (
            "dchan_messages_sent_total",
            Counter,
            None,
            "Messages this node's senders placed (each broadcast copy counts)",
        ),
        (
            "dchan_bytes_sent_total",
            Counter,
            Some(Bytes),
            "Bytes of messages this node's senders encoded for other nodes",
        ),
        ("dchan_messages_received_total", Counter, None, "Messages this node's receivers took"),
        (
            "dchan_messages_redelivered_total",
            Counter,
            None,
            "Messages this node delivered again after their receiver went without taking them",
        ),
        (
            "dchan_dead_letters_total",
            Counter,
            None,
            "Messages this node's receivers could not decode",
        ),
        (
            "dchan_receiver_buffered",
            Gauge,
            None,
            "Messages waiting in this node's receivers' buffers",
        ),
        (
            "dchan_in_flight",
            Gauge,
            None,
            "Messages this node sent to other nodes and that are not taken yet",
        ),
        (
            "dchan_sends_blocked",
            Gauge,
            None,
            "Sends on this node waiting now for room or a receiver",
        ),
        (
            "dchan_send_blocked_seconds",
            Histogram,
            Some(Seconds),
            "How long a send waited for room or a receiver",
        ),
        ("dchan_receivers", Gauge, None, "Receivers of the channel on this node"),
        ("dchan_senders", Gauge, None, "Senders of the channel on this node"),
        ("dchan_peer_connected", Gauge, None, "1 while a connection to the peer is up"),
        ("dchan_peer_reconnects_total", Counter, None, "Connections to the peer after the first"),
        ("dchan_peer_frames_sent_total", Counter, None, "Frames written to the peer"),
        ("dchan_peer_bytes_sent_total", Counter, Some(Bytes), "Bytes written to the peer"),
        (
            "dchan_peer_unacked_bytes",
            Gauge,
            Some(Bytes),
            "Bytes written to the peer and not yet acknowledged (resent on a new connection)",
        ),
        (
            "dchan_members",
            Gauge,
            None,
            "Members of the cluster, as this node's registry lists them",
        ),
        ("dchan_voters", Gauge, None, "Voters of the cluster"),
        ("dchan_raft_term", Gauge, None, "This node's Raft term"),
        ("dchan_raft_is_leader", Gauge, None, "1 while this node leads"),
        (
            "dchan_raft_commit_index",
            Gauge,
            None,
            "The last Raft log index this node knows committed",
        ),
        ("dchan_raft_applied_index", Gauge, None, "The last Raft log index this node applied"),
        (
            "dchan_registration_seconds",
            Histogram,
            Some(Seconds),
            "How long registering an endpoint took, to its commit",
        ),
        (
            "dchan_nodes_removed_total",
            Counter,
            None,
            "Nodes this node removed, while leading, for not answering",
        ),
    ]
};

/// Tell the recorder what each figure is.
fn describe() {
    metrics::with_recorder(|r| {
        for &(name, kind, unit, help) in FIGURES {
            let (name, help) = (name.into(), help.into());
            match kind {
                Kind::Counter => r.describe_counter(name, unit, help),
                Kind::Gauge => r.describe_gauge(name, unit, help),
                Kind::Histogram => r.describe_histogram(name, unit, help),
            }
        }
    });
}

/// Publish `core`'s figures every [`PERIOD`] until it stops.
pub(crate) async fn publish_every(core: Weak<Core>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PERIOD) => {}
        }
        let Some(core) = core.upgrade() else { return };
        core.publish();
    }
}

/// A counter whose source starts again from 0 carries on from where it was, and what a publish
/// no longer sees is forgotten.
#[cfg(all(test, feature = "prometheus"))]
#[test]
fn a_counter_whose_source_starts_again_carries_on() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let mut totals = Totals::default();
    let mut round = |now: Option<u64>| {
        metrics::with_local_recorder(&recorder, || {
            if let Some(now) = now {
                totals.publish("t_total", "channel", "jobs", now);
            }
            totals.done();
        });
    };
    let value = || {
        let text = handle.render();
        let line = text.lines().find(|l| l.starts_with("t_total{")).map(str::to_owned);
        line.and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
    };
    round(Some(5));
    round(Some(7));
    assert_eq!(value(), Some(7));
    round(None); // gone: forgotten
    round(Some(2)); // used again, counted from 0
    assert_eq!(value(), Some(9), "carried on, not flattened at 7");
    round(Some(1)); // its source started again without a gap
    assert_eq!(value(), Some(10));
}
