//! Quickstart: a three-node cluster in one process, a work queue, a broadcast, a close, and a node
//! leaving.
//!
//! What it shows, step by step:
//!
//! 1. Node A bootstraps a cluster; B and C join it through A's address.
//! 2. A `#[dchan::endpoint]` message type, `Job`, bound to the channel `jobs`. Each node gets a
//!    receiver of it (a worker that takes a moment per job); A and C each get a sender.
//! 3. A and C send 30 jobs between them. Each job reaches exactly one worker, wherever it is.
//! 4. The channel is closed right after the last send: every worker still gets what it holds,
//!    then `None`.
//! 5. A broadcast on a second channel, `news`, reaches the receiver on every node; closing it
//!    ends each of them.
//! 6. The cluster as node A sees it (members and their Raft roles, the leader, the channels).
//! 7. Node C leaves with `shutdown()`, and A's view shows it gone; then B and A shut down.
//!
//! It asserts that every job was received exactly once, so it doubles as a smoke test.
//!
//! ```text
//! cargo run --example quickstart
//! RUST_LOG=dchan=debug cargo run --example quickstart   # with the library's logs
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use dchan::{ClusterInfo, Endpoint, Node};

/// A unit of work. The attribute derives serde and binds the type to the channel `jobs`.
#[dchan::endpoint(channel = "jobs")]
#[derive(Debug, Clone, PartialEq)]
struct Job {
    id: u64,
    /// The node that sent it, by name, so the output shows where each job came from.
    from: String,
    task: String,
}

/// How many jobs A and C send between them.
const JOBS: u64 = 30;

/// How long any step may take before the example gives up.
const DEADLINE: Duration = Duration::from_secs(20);

type BoxError = Box<dyn std::error::Error>;

#[actix::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,openraft=error".into()),
        )
        .init();

    // 1. Three nodes: A bootstraps, B and C join through A.
    println!("== 1. starting three nodes");
    let a = Node::builder().listen("127.0.0.1:0").bootstrap().start().await?;
    let b = Node::builder().listen("127.0.0.1:0").join([a.addr()]).start().await?;
    let c = Node::builder().listen("127.0.0.1:0").join([a.addr()]).start().await?;
    let names: Names = [(a.id(), "A"), (b.id(), "B"), (c.id(), "C")].into_iter().collect();
    for (node, name) in [(&a, "A"), (&b, "B"), (&c, "C")] {
        println!("node {name}: id {} listening on {}", node.id(), node.addr());
    }
    for node in [&a, &b, &c] {
        eventually("every node sees three members", || node.cluster().members.len() == 3).await?;
    }

    // 2. A worker on every node, senders on A and C. Capacity 2 and a little work per job keep
    //    any one worker from taking everything, so the jobs spread over the cluster.
    println!("\n== 2. a `jobs` receiver on every node, senders on A and C");
    let mut workers = Vec::new();
    for (node, name) in [(&a, "A"), (&b, "B"), (&c, "C")] {
        let rx = Job::receiver(node).capacity(2).await?;
        workers.push(actix::spawn(work(name, rx)));
    }
    let tx_a = Job::sender(&a).await?;
    let tx_c = Job::sender(&c).await?;
    // Registration returns once it is committed and applied on the registering node; wait until
    // the sending nodes have applied the other nodes' registrations too, so that every worker
    // gets a share from the start. (Without this, `send` would still be correct: it picks among
    // the receivers it knows, and waits if it knows none.)
    for tx in [&tx_a, &tx_c] {
        within("senders see three receivers", tx.wait_for_receivers(3)).await??;
    }
    print_cluster("A", &a.cluster(), &names);

    // 3. Send the jobs, odd ones from A and even ones from C, both at once.
    println!("\n== 3. sending {JOBS} jobs from A and C");
    let send_from = |tx: dchan::Sender<Job>, from: &'static str, first: u64| async move {
        for id in (first..=JOBS).step_by(2) {
            let job = Job { id, from: from.into(), task: format!("resize image {id}") };
            tx.send(job).await.map_err(|_| "jobs closed while sending")?;
        }
        Ok::<_, BoxError>(())
    };
    let (sent_a, sent_c) =
        futures::join!(send_from(tx_a.clone(), "A", 1), send_from(tx_c.clone(), "C", 2));
    sent_a?;
    sent_c?;

    // 4. Close at once: the workers still get every job already sent, then `None`.
    println!("\n== 4. all {JOBS} jobs sent; closing `jobs` (workers drain, then get None)");
    tx_a.close().await?;
    let mut got = BTreeMap::new();
    for worker in workers {
        let (name, jobs) = within("workers drain", worker).await??;
        got.insert(name, jobs);
    }
    let mut all: Vec<u64> = got.values().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (1..=JOBS).collect::<Vec<_>>(), "every job received exactly once");
    for (name, jobs) in &got {
        println!("node {name} did {:2} jobs: {jobs:?}", jobs.len());
    }
    println!("every one of the {JOBS} jobs was received exactly once");
    // A closed channel refuses new messages, on every node. (C has applied the close: its worker
    // could only end after that.)
    let refused = tx_c.send(Job { id: 99, from: "C".into(), task: "late".into() }).await;
    assert!(refused.is_err(), "a send after close fails");
    println!("a send from C after the close fails: {}", refused.unwrap_err());
    drop((tx_a, tx_c));

    // 5. Broadcast: one copy to every receiver of `news`.
    println!("\n== 5. broadcast on `news` from B");
    let mut news = Vec::new();
    for (node, name) in [(&a, "A"), (&b, "B"), (&c, "C")] {
        news.push((name, node.receiver::<String>("news").await?));
    }
    let tx_news = b.sender::<String>("news").await?;
    within("B sees three news receivers", tx_news.wait_for_receivers(3)).await??;
    let reached = tx_news
        .broadcast("the jobs are done, thanks all".to_string())
        .await
        .map_err(|_| "news closed")?;
    assert_eq!(reached, 3, "the broadcast reached every receiver");
    tx_news.close().await?;
    for (name, rx) in &mut news {
        let msg = within("broadcast arrives", rx.recv()).await?;
        println!("node {name} got the broadcast: {msg:?}");
        assert!(msg.is_some(), "every receiver gets the broadcast");
    }
    for (name, rx) in &mut news {
        let end = within("news ends", rx.recv()).await?;
        println!("node {name}: news closed -> {end:?}");
        assert_eq!(end, None);
    }

    // 6. The cluster as A sees it: `jobs` is closed and its endpoints are gone (dropped handles
    //    deregister in the background), `news` is closed but its handles are still alive.
    println!("\n== 6. the cluster as node A sees it");
    print_cluster("A", &a.cluster(), &names);
    drop((news, tx_news));

    // 7. C leaves; A's view drops it once A has applied the change.
    println!("\n== 7. node C shuts down");
    within("C shuts down", c.shutdown()).await??;
    let c_id = c.id();
    eventually("A sees C gone", || a.cluster().members.iter().all(|m| m.id != c_id)).await?;
    print_cluster("A", &a.cluster(), &names);
    within("B shuts down", b.shutdown()).await??;
    within("A shuts down", a.shutdown()).await??;
    println!("\nall nodes shut down");
    Ok(())
}

/// A worker: takes jobs until the channel is closed and drained, and returns the ids it did.
async fn work(name: &'static str, mut rx: dchan::Receiver<Job>) -> (&'static str, Vec<u64>) {
    let mut done = Vec::new();
    while let Some(job) = rx.recv().await {
        println!("node {name} got job {:2} from {} ({})", job.id, job.from, job.task);
        tokio::time::sleep(Duration::from_millis(5)).await; // the work itself
        done.push(job.id);
    }
    println!("node {name}: jobs closed and drained -> None, after {} jobs", done.len());
    (name, done)
}

/// Node ids to the names this example gives them.
type Names = BTreeMap<u64, &'static str>;

fn print_cluster(on: &str, info: &ClusterInfo, names: &Names) {
    let name = |id: u64| names.get(&id).copied().unwrap_or("?");
    let leader = info.leader.map_or("none".to_string(), |l| format!("{} ({l})", name(l)));
    println!("cluster as seen by node {on}: leader {leader}");
    let mut members: Vec<_> = info.members.iter().collect();
    members.sort_by_key(|m| name(m.id));
    for m in members {
        println!("  member {} id {:>10} at {:<16} {:?}", name(m.id), m.id, m.addr, m.role);
    }
    for ch in &info.channels {
        let list = |it: &mut dyn Iterator<Item = &dchan::EndpointInfo>| {
            it.map(|e| name(e.node)).collect::<Vec<_>>().join(",")
        };
        println!(
            "  channel {:<5} of {:<12} closed: {:<5} receivers on [{}], senders on [{}]",
            ch.name,
            ch.type_name.rsplit("::").next().unwrap_or(&ch.type_name),
            ch.closed,
            list(&mut ch.receivers()),
            list(&mut ch.senders()),
        );
    }
}

/// Wait until `cond` holds, checking every few milliseconds, for at most [`DEADLINE`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) -> Result<(), BoxError> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{what}: not within {DEADLINE:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Await `fut` for at most [`DEADLINE`].
async fn within<F: Future>(what: &str, fut: F) -> Result<F::Output, BoxError> {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .map_err(|_| format!("{what}: not within {DEADLINE:?}").into())
}
