//! `dchan node`: run a member of a cluster until Ctrl-C or SIGTERM, printing the cluster as it
//! changes, then leave gracefully.

use crate::Failure;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on for Raft and data.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Join the cluster through this member (repeat for more seeds); without it, bootstrap.
    #[arg(long)]
    join: Vec<String>,
    /// The address other nodes dial for this one (default: the bound address). Needed with
    /// `--listen 0.0.0.0:PORT` (which also needs a cookie or TLS), behind NAT or a container
    /// port mapping.
    #[arg(long)]
    advertise: Option<String>,
    #[command(flatten)]
    secret: crate::client::Secret,
}

pub(crate) async fn run(args: Args) -> Result<(), Failure> {
    let mut builder = args.secret.apply(dchan::Node::builder())?.listen(args.listen);
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
    let mut watch = node.watch_cluster();
    loop {
        tokio::select! {
            _ = stop.signalled() => break,
            view = watch.changed() => match view {
                Some(view) => print_cluster(&view),
                None => break,
            },
        }
    }
    println!("leaving the cluster");
    node.shutdown().await?;
    Ok(())
}

fn print_cluster(view: &dchan::ClusterInfo) {
    let leader = view.leader.map_or("none".to_string(), |l| l.to_string());
    println!("cluster seen from node {} (leader {leader}):", view.me);
    for m in &view.members {
        println!("  member {} at {} ({:?})", m.id, m.addr, m.role);
    }
    for c in &view.channels {
        println!(
            "  channel {:?} of {}{}: {} sender(s), {} receiver(s)",
            c.name,
            c.type_name,
            if c.closed { " (closed)" } else { "" },
            c.senders().count(),
            c.receivers().count()
        );
    }
}
