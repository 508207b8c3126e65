//! `dchan node`: run a member of a cluster until Ctrl-C or SIGTERM, printing the cluster once
//! and then a line per change (a member joining or leaving, a new leader, a channel's
//! endpoints), then leave gracefully.

use crate::Failure;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on for Raft and data.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Join the cluster through this member (repeat, or separate with commas, for more seeds;
    /// a DNS name gives all its addresses); without it, bootstrap.
    #[arg(long, env = "DCHAN_JOIN", hide_env_values = true, value_delimiter = ',')]
    join: Vec<String>,
    /// The address other nodes dial for this one (default: the bound address). Needed with
    /// `--listen 0.0.0.0:PORT` (which also needs a cookie or TLS), behind NAT or a container
    /// port mapping.
    #[arg(long)]
    advertise: Option<String>,
    #[command(flatten)]
    options: crate::client::NodeOptions,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    let mut builder = args.options.apply(dchan::Node::builder())?.listen(args.listen);
    if let Some(addr) = args.advertise {
        builder = builder.advertise(addr);
    }
    // A node keeps asking its seeds for the join timeout (they may be starting too).
    let builder = if args.join.is_empty() { builder.bootstrap() } else { builder.join(args.join) };
    // Service managers and container platforms stop a process with SIGTERM: leave gracefully
    // then too, as on Ctrl-C.
    let mut stop = crate::client::Stop::new()?;
    let node = builder.start().await?;
    println!("node {} listening on {}", node.id(), node.addr());
    crate::client::say_metrics(&node);
    let mut watch = node.watch_cluster();
    // The whole cluster once, then one line per change. Names are remembered: a member that
    // left may be listed a moment longer than Raft's membership names it.
    let mut last: Option<dchan::ClusterInfo> = None;
    let mut names = Names::default();
    loop {
        tokio::select! {
            _ = stop.signalled() => break,
            view = watch.changed() => match view {
                Some(view) => {
                    names.learn(&view);
                    match &last {
                        None => print_cluster(&view),
                        Some(before) => {
                            for line in changes(before, &view, &names) {
                                println!("{line}");
                            }
                        }
                    }
                    names.keep(&view);
                    last = Some(view);
                }
                None => break,
            },
        }
        // What changes meanwhile comes in the next print (the watch returns the newest view).
        tokio::select! {
            _ = stop.signalled() => break,
            _ = tokio::time::sleep(PRINT_EVERY) => {}
        }
    }
    println!("leaving the cluster");
    node.shutdown().await?;
    Ok(())
}

/// At most one print of the cluster per this interval: each view is a copy of the whole
/// registry (O(endpoints)), made on the node's own thread, and registrations can come by
/// thousands a second.
const PRINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Channels are listed one by one up to this many; past it, counted.
const LISTED_CHANNELS: usize = 50;

fn print_cluster(view: &dchan::ClusterInfo) {
    for line in cluster_lines(view) {
        println!("{line}");
    }
}

/// The names of the members seen so far.
#[derive(Default)]
struct Names(std::collections::HashMap<u64, String>);

impl Names {
    fn learn(&mut self, view: &dchan::ClusterInfo) {
        for m in &view.members {
            if let Some(name) = &m.name {
                self.0.insert(m.id, name.clone());
            }
        }
    }

    /// Forget the names of members `view` does not list (their leaving was printed): a node
    /// that runs for months sees many clients come and go.
    fn keep(&mut self, view: &dchan::ClusterInfo) {
        self.0.retain(|id, _| view.members.iter().any(|m| m.id == *id));
    }

    /// Member `id` as the log names it (see [`label`]).
    fn of(&self, id: u64) -> String {
        label(id, self.0.get(&id))
    }
}

/// A member as the log names it: its id, and its name if it has one.
fn label(id: u64, name: Option<&String>) -> String {
    match name {
        Some(name) => format!("{id} ({name})"),
        None => id.to_string(),
    }
}

fn role(m: &dchan::Member) -> &'static str {
    if m.role == dchan::Role::Voter {
        "voter"
    } else {
        "learner"
    }
}

fn channel_line(c: &dchan::ChannelInfo) -> String {
    format!(
        "channel {:?} of {}{}: {} sender(s), {} receiver(s)",
        c.name,
        c.type_name,
        if c.closed { " (closed)" } else { "" },
        c.senders().count(),
        c.receivers().count()
    )
}

/// What changed from `before` to `now`, a line each: members joining, leaving or changing role,
/// the leader, and channels (up to [`LISTED_CHANNELS`] of them, then counted).
fn changes(before: &dchan::ClusterInfo, now: &dchan::ClusterInfo, names: &Names) -> Vec<String> {
    let mut lines = Vec::new();
    let was: std::collections::HashMap<u64, &dchan::Member> =
        before.members.iter().map(|m| (m.id, m)).collect();
    let is: std::collections::HashMap<u64, &dchan::Member> =
        now.members.iter().map(|m| (m.id, m)).collect();
    for m in &now.members {
        match was.get(&m.id) {
            None => lines.push(format!(
                "member {} joined at {} as a {}",
                names.of(m.id),
                m.addr,
                role(m)
            )),
            Some(w) if w.role != m.role => {
                lines.push(format!("member {} is now a {}", names.of(m.id), role(m)))
            }
            Some(_) => {}
        }
    }
    for m in &before.members {
        if !is.contains_key(&m.id) {
            lines.push(format!("member {} left", names.of(m.id)));
        }
    }
    if before.leader != now.leader {
        lines.push(match now.leader {
            Some(l) => format!("leader: {}", names.of(l)),
            None => "no leader (an election, or no majority)".to_owned(),
        });
    }
    let old: std::collections::HashMap<&str, &dchan::ChannelInfo> =
        before.channels.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut changed: Vec<String> = now
        .channels
        .iter()
        .filter(|c| old.get(c.name.as_str()).is_none_or(|o| channel_line(o) != channel_line(c)))
        .map(channel_line)
        .collect();
    let current: std::collections::HashSet<&str> =
        now.channels.iter().map(|c| c.name.as_str()).collect();
    changed.extend(
        before
            .channels
            .iter()
            .filter(|c| !current.contains(c.name.as_str()))
            .map(|c| format!("channel {:?} is gone", c.name)),
    );
    if changed.len() > LISTED_CHANNELS {
        lines.push(format!(
            "{} channels changed; now {} channels, {} sender(s), {} receiver(s)",
            changed.len(),
            now.channels.len(),
            now.channels.iter().map(|c| c.senders().count()).sum::<usize>(),
            now.channels.iter().map(|c| c.receivers().count()).sum::<usize>(),
        ));
    } else {
        lines.extend(changed);
    }
    lines
}

fn cluster_lines(view: &dchan::ClusterInfo) -> Vec<String> {
    let leader = view.leader.map_or("none".to_string(), |l| l.to_string());
    let mut lines = vec![format!("cluster seen from node {} (leader {leader}):", view.me)];
    for m in &view.members {
        lines.push(format!(
            "  member {} at {} ({})",
            label(m.id, m.name.as_ref()),
            m.addr,
            role(m)
        ));
    }
    if view.channels.len() > LISTED_CHANNELS {
        let count =
            |f: fn(&dchan::ChannelInfo) -> usize| view.channels.iter().map(f).sum::<usize>();
        lines.push(format!(
            "  {} channels ({} closed): {} sender(s), {} receiver(s)",
            view.channels.len(),
            view.channels.iter().filter(|c| c.closed).count(),
            count(|c| c.senders().count()),
            count(|c| c.receivers().count()),
        ));
        return lines;
    }
    for c in &view.channels {
        lines.push(format!("  {}", channel_line(c)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_listed_up_to_a_limit_then_counted() {
        actix_rt::System::new().block_on(async {
            let node = dchan::Node::builder().bootstrap().start().await.expect("a node");
            let mut keep = Vec::new();
            for i in 0..LISTED_CHANNELS {
                keep.push(node.sender::<u64>(&format!("c{i}")).await.expect("a sender"));
            }
            let lines = cluster_lines(&node.cluster());
            assert_eq!(
                lines.iter().filter(|l| l.contains("  channel \"c")).count(),
                LISTED_CHANNELS
            );
            keep.push(node.sender::<u64>("one-more").await.expect("a sender"));
            let lines = cluster_lines(&node.cluster());
            assert!(lines.iter().all(|l| !l.contains("  channel ")), "{lines:?}");
            let summary = format!(
                "  {} channels (0 closed): {} sender(s), 0 receiver(s)",
                keep.len(),
                keep.len()
            );
            assert!(lines.contains(&summary), "{lines:?}");
            assert!(lines.iter().any(|l| l.contains(&format!("member {}", node.id()))));
            drop(keep);
            node.shutdown().await.expect("shutdown");
        });
    }
}
