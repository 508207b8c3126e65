//! `dchan status`: the members and channels of a cluster, once or live (`--watch`).
//!
//! The registry comes from the cluster itself (this command is a non-voting member while it
//! runs), so `--watch` redraws when it changes; the counts of messages held come from asking
//! every member, once a second. A member that does not answer is shown unreachable.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::client::{self, Join, Stop};
use crate::Failure;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Show only this channel.
    channel: Option<String>,
    #[command(flatten)]
    join: Join,
    /// One JSON object (one per line with --watch) instead of text.
    #[arg(long)]
    json: bool,
    /// Keep showing the cluster as it changes (and the counts every second) until Ctrl-C.
    #[arg(long)]
    watch: bool,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    let mut stop = Stop::new()?;
    let node = client::join(&args.join, "status").await?;
    let result = tokio::select! {
        r = show(&node, &args) => r,
        // As `send` and `recv`: interrupted is 130, the shells' code for SIGINT.
        _ = stop.signalled() => Err(Failure::interrupted("interrupted")),
    };
    let left = node.shutdown().await;
    result?;
    left.map_err(Failure::from)
}

async fn show(node: &dchan::Node, args: &Args) -> Result<(), Failure> {
    let mut watch = node.watch_cluster();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut view = watch.changed().await.ok_or_else(|| Failure::new("the node stopped"))?;
    // The last frame's totals, and when: rates are the difference over the time between.
    let mut before: Option<(std::time::Instant, serde_json::Value)> = None;
    loop {
        if let Some(name) = &args.channel {
            if view.channel(name).is_none() {
                return Err(Failure::new(format!("no channel named {name:?}")));
            }
        }
        let stats = node.member_stats().await;
        let mut report = report(&view, &stats, args.channel.as_deref());
        let now = std::time::Instant::now();
        if let Some((then, last)) = &before {
            rates(&mut report, last, now.duration_since(*then));
        }
        before = Some((now, report.clone()));
        if args.json {
            println!("{report}");
        } else {
            if args.watch {
                print!("\x1b[2J\x1b[H"); // clear the terminal between frames
            }
            print_text(&report);
        }
        if !args.watch {
            return Ok(());
        }
        // Once a second at most, with the newest view if the cluster changed meanwhile (each
        // view copies the whole registry; registrations can come by thousands a second).
        tick.tick().await;
        if let Some(v) = futures::FutureExt::now_or_never(watch.changed()) {
            view = v.ok_or_else(|| Failure::new("the node stopped"))?;
        }
    }
}

/// The status as JSON (also what the text is printed from).
fn report(
    view: &dchan::ClusterInfo,
    stats: &[(u64, Result<dchan::NodeStats, dchan::Error>)],
    only: Option<&str>,
) -> serde_json::Value {
    let reachable: BTreeMap<u64, bool> = stats.iter().map(|(id, s)| (*id, s.is_ok())).collect();
    // Each member's channels by name, once: a registry of many channels is not searched per
    // channel.
    let by_name: Vec<std::collections::HashMap<&str, &dchan::ChannelStats>> = stats
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .map(|s| s.channels.iter().map(|c| (c.name.as_str(), c)).collect())
        .collect();
    let members: Vec<_> = view
        .members
        .iter()
        // This command is a member while it runs; it is not part of what is shown.
        .filter(|m| m.id != view.me)
        .map(|m| {
            json!({
                "id": m.id,
                "name": m.name,
                "addr": m.addr,
                "role": match m.role { dchan::Role::Voter => "voter", _ => "learner" },
                "leader": view.leader == Some(m.id),
                "reachable": reachable.get(&m.id).copied().unwrap_or(false),
            })
        })
        .collect();
    let channels: Vec<_> = view
        .channels
        .iter()
        .filter(|c| only.is_none_or(|o| o == c.name))
        .map(|c| {
            let per_node = |kind| {
                let mut n: BTreeMap<String, u64> = BTreeMap::new();
                for e in c.endpoints.values().filter(|e| e.kind == kind) {
                    *n.entry(e.node.to_string()).or_default() += 1;
                }
                n
            };
            let (mut buffered, mut in_flight, mut dead) = (0, 0, 0);
            let (mut sent, mut received, mut redelivered, mut blocked) = (0, 0, 0, 0);
            for s in &by_name {
                if let Some(cs) = s.get(c.name.as_str()) {
                    buffered += cs.buffered;
                    in_flight += cs.in_flight;
                    dead += cs.dead_letters;
                    sent += cs.sent;
                    received += cs.received;
                    redelivered += cs.redelivered;
                    blocked += cs.blocked;
                }
            }
            let capacity: u64 = c.receivers().map(|r| u64::from(r.capacity)).sum();
            let mut attention = Vec::new();
            // Held by the receivers (buffered, or delivered and not acknowledged), as their
            // nodes and the sending nodes count it: at the capacity, senders wait for them.
            if capacity > 0 && buffered.max(in_flight) >= capacity {
                attention.push(
                    "slow consumer: the receivers hold all they can take; senders wait".to_owned(),
                );
            }
            if blocked > 0 {
                let why = if c.receivers().next().is_none() { "a receiver" } else { "room" };
                attention.push(format!("{blocked} send(s) waiting for {why}"));
            }
            if dead > 0 {
                attention.push(format!(
                    "{dead} dead letter(s) kept: `dchan recv {} --dead-letters`",
                    c.name
                ));
            }
            json!({
                "name": c.name,
                "type": c.type_name,
                "closed": c.closed,
                "receivers": per_node(dchan::EndpointKind::Receiver),
                "senders": per_node(dchan::EndpointKind::Sender),
                "buffered": buffered,
                "capacity": capacity,
                "in_flight": in_flight,
                "dead_letters": dead,
                "sent": sent,
                "received": received,
                "redelivered": redelivered,
                "blocked": blocked,
                "attention": attention,
            })
        })
        .collect();
    json!({
        "leader": view.leader,
        "members": members,
        "channels": channels,
        "attention": cluster_attention(view, stats),
    })
}

/// What needs attention in the cluster as a whole: no leader, members that do not answer, fewer
/// voters than the leader keeps the cluster at.
fn cluster_attention(
    view: &dchan::ClusterInfo,
    stats: &[(u64, Result<dchan::NodeStats, dchan::Error>)],
) -> Vec<String> {
    let mut attention = Vec::new();
    let Some(leader) = view.leader else {
        attention.push("no leader: registrations wait (an election, or no majority)".into());
        return attention;
    };
    let unreachable: Vec<String> = stats
        .iter()
        .filter(|(id, s)| s.is_err() && *id != view.me)
        .map(|(id, _)| id.to_string())
        .collect();
    if !unreachable.is_empty() {
        attention.push(format!(
            "member(s) {} did not answer: removed after the failure timeout if they stay silent",
            unreachable.join(", ")
        ));
    }
    let voters = view.members.iter().filter(|m| m.role == dchan::Role::Voter).count();
    let wanted = stats
        .iter()
        .find(|(id, _)| *id == leader)
        .and_then(|(_, s)| s.as_ref().ok())
        .map_or(0, |s| s.voters_wanted);
    if voters < wanted {
        attention.push(format!(
            "{voters} voter(s) of the {wanted} the leader wants: the cluster survives the loss of {} \
             (start another node that votes: `dchan node --join ...`)",
            match voters {
                0 => "none".to_owned(),
                v => match (v - 1) / 2 {
                    0 => "none".to_owned(),
                    n => format!("{n} of them"),
                },
            }
        ));
    }
    attention
}

/// Add to `report` each channel's rates since `last` (`elapsed` ago), and mark redeliveries
/// that happened meanwhile.
fn rates(report: &mut serde_json::Value, last: &serde_json::Value, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(0.001);
    let empty = Vec::new();
    let previous = last["channels"].as_array().unwrap_or(&empty);
    let Some(channels) = report["channels"].as_array_mut() else { return };
    for c in channels {
        let Some(p) = previous.iter().find(|p| p["name"] == c["name"]) else { continue };
        let delta = |c: &serde_json::Value, key: &str| {
            c[key].as_u64().unwrap_or(0).saturating_sub(p[key].as_u64().unwrap_or(0))
        };
        let (sent, received, redelivered) =
            (delta(c, "sent"), delta(c, "received"), delta(c, "redelivered"));
        c["sent_per_s"] = json!((sent as f64 / secs).round());
        c["received_per_s"] = json!((received as f64 / secs).round());
        if redelivered > 0 {
            if let Some(a) = c["attention"].as_array_mut() {
                a.push(json!(format!(
                    "{redelivered} message(s) delivered again (a receiver or its node went)"
                )));
            }
        }
    }
}

fn print_text(r: &serde_json::Value) {
    let empty = Vec::new();
    let members = r["members"].as_array().unwrap_or(&empty);
    println!("members ({}):", members.len());
    println!(
        "  {:<12} {:<20} {:<22} {:<8} {:<7} reachable",
        "id", "name", "address", "role", "leader"
    );
    for m in members {
        println!(
            "  {:<12} {:<20} {:<22} {:<8} {:<7} {}",
            m["id"].to_string(),
            m["name"].as_str().unwrap_or("-"),
            m["addr"].as_str().unwrap_or(""),
            m["role"].as_str().unwrap_or(""),
            if m["leader"] == true { "yes" } else { "" },
            if m["reachable"] == true { "yes" } else { "NO" },
        );
    }
    for a in r["attention"].as_array().unwrap_or(&empty) {
        println!("  ! {}", a.as_str().unwrap_or(""));
    }
    let channels = r["channels"].as_array().unwrap_or(&empty);
    println!("channels ({}):", channels.len());
    for c in channels {
        let list = |v: &serde_json::Value| {
            let m = v.as_object().cloned().unwrap_or_default();
            if m.is_empty() {
                return "none".to_string();
            }
            m.iter().map(|(node, n)| format!("{n} on {node}")).collect::<Vec<_>>().join(", ")
        };
        let rate = |key: &str| c[key].as_f64().map(|r| format!(" ({r}/s)")).unwrap_or_default();
        println!(
            "  {} ({}){}\n    receivers: {}\n    senders:   {}\n    sent {}{}, received {}{}, delivered again {}\n    buffered {} of {}, in flight {}, dead letters {}",
            c["name"].as_str().unwrap_or(""),
            c["type"].as_str().unwrap_or(""),
            if c["closed"] == true { " closed" } else { "" },
            list(&c["receivers"]),
            list(&c["senders"]),
            c["sent"],
            rate("sent_per_s"),
            c["received"],
            rate("received_per_s"),
            c["redelivered"],
            c["buffered"],
            c["capacity"],
            c["in_flight"],
            c["dead_letters"],
        );
        for a in c["attention"].as_array().unwrap_or(&empty) {
            println!("    ! {}", a.as_str().unwrap_or(""));
        }
    }
}
