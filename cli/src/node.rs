//! `dchan node`: run a member of a cluster until Ctrl-C or SIGTERM, printing the cluster as it
//! changes, then leave gracefully.

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
    loop {
        tokio::select! {
            _ = stop.signalled() => break,
            view = watch.changed() => match view {
                Some(view) => print_cluster(&view),
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

fn cluster_lines(view: &dchan::ClusterInfo) -> Vec<String> {
    let leader = view.leader.map_or("none".to_string(), |l| l.to_string());
    let mut lines = vec![format!("cluster seen from node {} (leader {leader}):", view.me)];
    for m in &view.members {
        lines.push(format!("  member {} at {} ({:?})", m.id, m.addr, m.role));
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
        lines.push(format!(
            "  channel {:?} of {}{}: {} sender(s), {} receiver(s)",
            c.name,
            c.type_name,
            if c.closed { " (closed)" } else { "" },
            c.senders().count(),
            c.receivers().count()
        ));
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
