//! One node per process: the same program started several times forms a cluster, and messages
//! cross between the processes.
//!
//! Each process starts a node (bootstrapping a new cluster when no `--join` is given), prints the
//! cluster as it sees it, and then, depending on `--role`:
//!
//! - `recv` (or `both`): registers a receiver on the channel (`--name`, default `chat`) and
//!   prints every message it gets, with the id and address of the node that sent it;
//! - `send` (or `both`): registers a sender, waits until the channel has `--min-receivers`
//!   receivers, then sends `--count` messages, one every `--interval-ms`. Each `send` goes to
//!   exactly one receiver (a work queue); with `--broadcast` every receiver gets each message.
//!
//! It runs until Ctrl-C, or for `--exit-after-secs` if given, then prints the cluster once more
//! and leaves it gracefully with `Node::shutdown`.
//!
//! In three terminals:
//!
//! ```text
//! cargo run --example cluster -- --listen 127.0.0.1:7001
//! cargo run --example cluster -- --listen 127.0.0.1:7002 --join 127.0.0.1:7001
//! cargo run --example cluster -- --listen 127.0.0.1:7003 --join 127.0.0.1:7001 --broadcast
//! ```
//!
//! `--join` may be repeated: any member's address lets a new node in. To wait for the whole
//! cluster before sending, give every process `--min-receivers 3`. Non-interactively (as a test):
//!
//! ```text
//! cargo build --example cluster
//! for p in 1 2 3; do
//!   j=$([ $p = 1 ] || echo "--join 127.0.0.1:7001")
//!   cargo run -q --example cluster -- --listen 127.0.0.1:700$p $j \
//!     --min-receivers 3 --broadcast --exit-after-secs $((10 - p)) > node$p.log 2>&1 &
//!   sleep 0.5
//! done; wait; cat node*.log
//! ```
//!
//! `RUST_LOG=dchan=debug` shows the library's logs.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use dchan::{ClusterInfo, Node};
use serde::{Deserialize, Serialize};

/// One process, one dchan node: send and/or receive on a channel.
#[derive(Debug, Parser)]
#[command(name = "cluster")]
struct Args {
    /// The address to listen on for Raft and data.
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen: String,
    /// A member's address to join the cluster through (repeatable); without one, this node
    /// bootstraps a new cluster.
    #[arg(long)]
    join: Vec<String>,
    /// The channel's name.
    #[arg(long, default_value = "chat")]
    name: String,
    /// Whether this process sends, receives, or both.
    #[arg(long, value_enum, default_value_t = Role::Both)]
    role: Role,
    /// How many messages to send.
    #[arg(long, default_value_t = 10)]
    count: u64,
    /// How many receivers the channel must have (as this node sees it) before sending starts.
    #[arg(long, default_value_t = 1)]
    min_receivers: usize,
    /// The pause between two messages, in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// Send every message to every receiver instead of to exactly one.
    #[arg(long)]
    broadcast: bool,
    /// Leave the cluster and exit after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    exit_after_secs: Option<u64>,
}

/// What this process does on the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Only send.
    Send,
    /// Only receive.
    Recv,
    /// Send and receive.
    Both,
}

/// What travels on the channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chat {
    /// The sending node's id.
    from: u64,
    /// The sending node's address.
    from_addr: String,
    /// 1, 2, ... per sending process.
    seq: u64,
    text: String,
}

type BoxError = Box<dyn std::error::Error>;

#[actix::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,openraft=error".into()),
        )
        .init();

    let builder = Node::builder().listen(&args.listen);
    let node = if args.join.is_empty() {
        println!("[{}] bootstrapping a new cluster", args.listen);
        builder.bootstrap().start().await?
    } else {
        println!("[{}] joining through {}", args.listen, args.join.join(", "));
        builder.join(&args.join).start().await?
    };
    let me = node.addr().to_string();
    println!("[{me}] node {} started", node.id());
    print_cluster(&me, &node.cluster());

    let receiving = match args.role {
        Role::Recv | Role::Both => {
            let rx = node.receiver::<Chat>(&args.name).await?;
            println!("[{me}] receiving on `{}`", args.name);
            Some(actix::spawn(receive(me.clone(), node.id(), rx)))
        }
        Role::Send => None,
    };
    let sending = match args.role {
        Role::Send | Role::Both => {
            let tx = node.sender::<Chat>(&args.name).await?;
            Some(actix::spawn(send(me.clone(), node.clone(), tx, args.clone_for_sending())))
        }
        Role::Recv => None,
    };

    match args.exit_after_secs {
        Some(secs) => {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(secs)) => {
                    println!("[{me}] {secs} s are up");
                }
                _ = tokio::signal::ctrl_c() => println!("[{me}] Ctrl-C"),
            }
        }
        None => {
            tokio::signal::ctrl_c().await?;
            println!("[{me}] Ctrl-C");
        }
    }

    print_cluster(&me, &node.cluster());
    if let Some(sending) = sending {
        // Stop sending (a send may be waiting for a receiver); dropping the task drops the sender.
        sending.abort();
        let _ = sending.await;
    }
    println!("[{me}] leaving the cluster");
    node.shutdown().await?;
    if let Some(receiving) = receiving {
        // Shutdown ends the receiver: it yields what it holds, then `None`.
        let got = receiving.await?;
        println!("[{me}] received {got} messages in all");
    }
    println!("[{me}] bye");
    Ok(())
}

/// What the sending task needs from the arguments.
#[derive(Debug, Clone)]
struct Sending {
    name: String,
    count: u64,
    min_receivers: usize,
    interval: Duration,
    broadcast: bool,
}

impl Args {
    fn clone_for_sending(&self) -> Sending {
        Sending {
            name: self.name.clone(),
            count: self.count,
            min_receivers: self.min_receivers,
            interval: Duration::from_millis(self.interval_ms),
            broadcast: self.broadcast,
        }
    }
}

/// Print every message until the channel ends (closed, or this node shut down); return how many.
async fn receive(me: String, my_id: u64, mut rx: dchan::Receiver<Chat>) -> u64 {
    let mut got = 0;
    while let Some(msg) = rx.recv().await {
        got += 1;
        let origin = if msg.from == my_id { "this process" } else { "another process" };
        println!(
            "[{me}] got #{} from node {} at {} ({origin}): {}",
            msg.seq, msg.from, msg.from_addr, msg.text
        );
    }
    got
}

/// Wait for enough receivers, then send the messages.
async fn send(me: String, node: Node, tx: dchan::Sender<Chat>, s: Sending) {
    if tx.receiver_count() < s.min_receivers {
        println!(
            "[{me}] `{}` has {} receiver(s); waiting for {}",
            s.name,
            tx.receiver_count(),
            s.min_receivers
        );
        if tx.wait_for_receivers(s.min_receivers).await.is_err() {
            println!("[{me}] `{}` was closed before enough receivers came", s.name);
            return;
        }
    }
    let how = if s.broadcast { "broadcasting" } else { "sending" };
    println!(
        "[{me}] `{}` has {} receiver(s): {how} {} messages",
        s.name,
        tx.receiver_count(),
        s.count
    );
    for seq in 1..=s.count {
        let msg = Chat {
            from: node.id(),
            from_addr: node.addr().to_string(),
            seq,
            text: format!("hello #{seq} from {}", node.addr()),
        };
        let sent =
            if s.broadcast { tx.broadcast(msg).await.map(|_| ()) } else { tx.send(msg).await };
        if sent.is_err() {
            println!("[{me}] `{}` is closed; stopping", s.name);
            return;
        }
        tokio::time::sleep(s.interval).await;
    }
    println!("[{me}] sent all {} messages", s.count);
}

fn print_cluster(me: &str, info: &ClusterInfo) {
    let leader = info.leader.map_or("none".to_string(), |l| l.to_string());
    println!("[{me}] cluster: {} member(s), leader {leader}", info.members.len());
    for m in &info.members {
        let this = if m.id == info.me { " (this node)" } else { "" };
        println!("[{me}]   node {} at {} {:?}{this}", m.id, m.addr, m.role);
    }
    for ch in &info.channels {
        let nodes = |it: &mut dyn Iterator<Item = &dchan::EndpointInfo>| {
            it.map(|e| e.node.to_string()).collect::<Vec<_>>().join(", ")
        };
        println!(
            "[{me}]   channel `{}`{}: receivers on [{}], senders on [{}]",
            ch.name,
            if ch.closed { " (closed)" } else { "" },
            nodes(&mut ch.receivers()),
            nodes(&mut ch.senders()),
        );
    }
}
