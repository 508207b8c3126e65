//! Registration cost and memory as the registry grows: three nodes, each a process of
//! its own on loopback (this program starts the two others as children of itself), receivers
//! registered one after another on a follower (this process), each on a channel of its own
//! (capacity 16), each timed from the call to its return (committed and applied here).
//!
//! At each checkpoint (how many are registered), it times the next 500 registrations: p50 and
//! p99, and both against the same figures at the first checkpoint (10 registered), measured in
//! the same run. Memory is
//! resident memory (Linux `/proc/<pid>/statm`) per registered receiver: on its own node (this
//! process: the receiver, its inbox and router, and the registry's copy) and on each other node
//! (the children: the registry's copy, its index and Raft's log).
//!
//! ```text
//! cargo bench --bench registry                                # 10, 200, 1000, 3000, 10000
//! cargo bench --bench registry -- 10 200 1000 3000 10000 100000
//! cargo bench --bench registry -- --nodes 20 10 1000 10000     # 17 more nodes, as learners
//! cargo bench --bench registry -- --senders 10 100000           # senders instead of receivers
//! cargo bench --bench registry -- --one-channel 10 1000 10000   # all on one channel
//! ```
//!
//! At the end, one more node joins, and the time until it is a member (the registry installed
//! from a snapshot, or replayed from the log) is printed.
//!
//! A measurement, not a test: it asserts nothing but that every registration succeeds.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in a child: start a node (bootstrap, or join the address it holds) and run until stdin
/// closes.
const NODE_ENV: &str = "DCHAN_REGISTRY_BENCH_NODE";
/// How many registrations are timed at each checkpoint.
const PROBE: usize = 500;

/// Resident memory of process `pid`, bytes.
fn rss(pid: &str) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// What is registered and kept: receivers, or with `--senders` senders.
enum Endpoint {
    Receiver(#[allow(dead_code)] dchan::Receiver<u64>),
    Sender(#[allow(dead_code)] dchan::Sender<u64>),
}

/// A node in a child process, and its address.
struct ChildNode {
    child: Child,
    addr: String,
}

impl ChildNode {
    fn start(seed: Option<&str>) -> ChildNode {
        let exe = std::env::current_exe().expect("this program");
        let mut child = Command::new(exe)
            .env(NODE_ENV, seed.unwrap_or("bootstrap"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("a child node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the child's address");
        let addr = line.trim().strip_prefix("addr ").expect("an address line").to_owned();
        ChildNode { child, addr }
    }

    fn rss(&self) -> u64 {
        rss(&self.child.id().to_string())
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn child(seed: String) {
    actix_rt::System::new().block_on(async move {
        let builder = dchan::Node::builder();
        let builder = if seed == "bootstrap" { builder.bootstrap() } else { builder.join([seed]) };
        let node = builder.start().await.expect("a node");
        println!("addr {}", node.addr());
        std::io::stdout().flush().expect("stdout");
        // Until the parent closes stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await;
        let _ = node.shutdown().await;
    });
}

fn main() {
    if let Ok(seed) = std::env::var(NODE_ENV) {
        return child(seed);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: usize = args
        .iter()
        .position(|a| a == "--nodes")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
        .max(3);
    let senders = args.iter().any(|a| a == "--senders");
    let one_channel = args.iter().any(|a| a == "--one-channel");
    let mut checkpoints: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || args[i - 1] != "--nodes")
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    if checkpoints.is_empty() {
        checkpoints = vec![10, 200, 1000, 3000, 10000];
    }
    checkpoints.sort_unstable();
    let leader = ChildNode::start(None);
    let other = ChildNode::start(Some(&leader.addr));
    // Past three, learners: they replicate the registry and hold no endpoint.
    let learners: Vec<ChildNode> =
        (3..nodes).map(|_| ChildNode::start(Some(&leader.addr))).collect();
    let seed = leader.addr.clone();
    let (leader_ref, other_ref) = (&leader, &other);
    actix_rt::System::new().block_on(async move {
        let (leader, other) = (leader_ref, other_ref);
        let kind = if senders { "sender" } else { "receiver" };
        let me = dchan::Node::builder().join([seed]).start().await.expect("join");
        assert_ne!(me.cluster().leader, Some(me.id()), "this node is a follower");
        let my_pid = std::process::id().to_string();
        let base = (rss(&my_pid), leader.rss(), other.rss());
        println!(
            "| {kind}s registered | total | p50 | p99 | p50 / p50 at {first} | p99 / p99 at {first} | own node per {kind} | other node per {kind} |",
            first = checkpoints[0]
        );
        println!("|---|---|---|---|---|---|---|---|");
        let mut keep = Vec::new();
        let mut first: Option<(Duration, Duration)> = None;
        let start = Instant::now();
        let register = |i: usize| {
            let me = me.clone();
            async move {
                let t = Instant::now();
                let name = if one_channel { "scale".to_owned() } else { format!("scale-{i}") };
                let endpoint = if senders {
                    Endpoint::Sender(me.sender::<u64>(&name).await.expect("registered"))
                } else {
                    Endpoint::Receiver(
                        me.receiver::<u64>(&name).capacity(16).await.expect("registered"),
                    )
                };
                (endpoint, t.elapsed())
            }
        };
        for (k, &at) in checkpoints.iter().enumerate() {
            while keep.len() < at {
                let (rx, _) = register(keep.len()).await;
                keep.push(rx);
            }
            let registered = keep.len();
            let elapsed = start.elapsed();
            // Up to the next checkpoint at most, so that each row starts where it says.
            let size = checkpoints.get(k + 1).map_or(PROBE, |next| PROBE.min(next - at));
            let mut probe = Vec::with_capacity(size);
            for _ in 0..size {
                let (rx, took) = register(keep.len()).await;
                keep.push(rx);
                probe.push(took);
            }
            probe.sort_unstable();
            let (p50, p99) = (percentile(&probe, 0.5), percentile(&probe, 0.99));
            let (p50_0, p99_0) = *first.get_or_insert((p50, p99));
            let n = keep.len() as u64;
            // Each child holds the same; the figure is their mean.
            let others = (leader.rss() + other.rss()).saturating_sub(base.1 + base.2) / 2;
            println!(
                "| {registered} | {:.2} s | {p50:?} | {p99:?} | {:.2}x | {:.2}x | {} B | {} B |",
                elapsed.as_secs_f64(),
                p50.as_secs_f64() / p50_0.as_secs_f64(),
                p99.as_secs_f64() / p99_0.as_secs_f64(),
                rss(&my_pid).saturating_sub(base.0) / n,
                others / n,
            );
        }
        let joining = Instant::now();
        let late = ChildNode::start(Some(&leader.addr));
        println!(
            "\n{nodes} nodes; a node joining {} registered endpoints was a member after {:.2} s",
            keep.len(),
            joining.elapsed().as_secs_f64()
        );
        late.stop();
        drop(keep);
        let _ = me.shutdown().await;
    });
    for learner in learners {
        learner.stop();
    }
    other.stop();
    leader.stop();
}
