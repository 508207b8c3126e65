//! The `dchan` command line: run a node of a cluster from the shell.
//!
//! ```text
//! dchan node --listen 127.0.0.1:7001                       # bootstrap a cluster
//! dchan node --listen 127.0.0.1:7002 --join 127.0.0.1:7001 # join it
//! ```
//!
//! The node prints the cluster (members, leader, channels) whenever it changes, and leaves the
//! cluster gracefully on Ctrl-C or SIGTERM.

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "dchan", version, about = "Distributed channels: run and inspect nodes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node until Ctrl-C: bootstrap a cluster, or join one with --join.
    Node {
        /// Address to listen on for Raft and data.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Join the cluster through this member (repeat for more seeds); without it, bootstrap.
        #[arg(long)]
        join: Vec<String>,
        /// The address other nodes dial for this one (default: the bound address). Needed with
        /// `--listen 0.0.0.0:PORT`, behind NAT or a container port mapping.
        #[arg(long)]
        advertise: Option<String>,
    },
}

fn main() -> Result<(), dchan::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    actix_rt::System::new().block_on(async move {
        match cli.command {
            Command::Node { listen, join, advertise } => run_node(listen, join, advertise).await,
        }
    })
}

async fn run_node(
    listen: String,
    join: Vec<String>,
    advertise: Option<String>,
) -> Result<(), dchan::Error> {
    let mut builder = dchan::Node::builder().listen(listen);
    if let Some(addr) = advertise {
        builder = builder.advertise(addr);
    }
    let builder = if join.is_empty() { builder.bootstrap() } else { builder.join(join) };
    // Service managers and container platforms stop a process with SIGTERM: leave gracefully
    // then too, as on Ctrl-C.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let node = builder.start().await?;
    println!("node {} listening on {}", node.id(), node.addr());
    let mut last = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => {
                let view = node.cluster();
                if last.as_ref() != Some(&view) {
                    print_cluster(&view);
                    last = Some(view);
                }
            }
        }
    }
    println!("leaving the cluster");
    node.shutdown().await
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
