//! Nodes in separate processes: this test binary starts copies of itself as child nodes, each
//! joining the parent's cluster over loopback, and checks that a work queue spans them.
//!
//! A child is this same binary run with `DCHAN_CHILD_JOIN=<addr>` and the filter
//! `child_node --exact --ignored`: it joins, registers a receiver on `spread`, prints `child: ready`, then
//! `child: got N` for every number it receives until the channel is closed and drained, then
//! `child: done`, and leaves the cluster.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{cluster, within};

const CHILD_ENV: &str = "DCHAN_CHILD_JOIN";

/// The child side: not a test of its own (hence ignored), run only by `a_work_queue_spans_processes`.
#[actix_rt::test]
#[ignore = "the child node of a_work_queue_spans_processes, started by it"]
async fn child_node() {
    let seed = std::env::var(CHILD_ENV).expect("started by a_work_queue_spans_processes");
    common::tracing();
    let node = dchan::Node::builder().join([seed]).start().await.expect("child joins");
    let mut rx = node.receiver::<u64>("spread").capacity(64).await.expect("child receiver");
    println!("child: ready {}", node.id());
    while let Some(n) = rx.recv().await {
        println!("child: got {n}");
    }
    println!("child: done");
    drop(rx);
    node.shutdown().await.expect("child leaves");
}

/// Kills the child if the test fails before it exits on its own.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(seed: std::net::SocketAddr) -> (ChildGuard, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["child_node", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (ChildGuard(child), rx)
}

/// The next line holding `prefix` from a child, from `prefix` on, waiting at most the test deadline.
async fn line_from(rx: &std::sync::mpsc::Receiver<String>, prefix: &str) -> String {
    let deadline = std::time::Instant::now() + common::DEADLINE;
    loop {
        match rx.try_recv() {
            // libtest may have printed `test child_node ... ` on the same line.
            Ok(line) => match line.find(prefix) {
                Some(at) => return line[at..].to_owned(),
                None => continue,
            },
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                assert!(std::time::Instant::now() < deadline, "no `{prefix}` line from the child");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                panic!("child exited before printing `{prefix}`")
            }
        }
    }
}

#[actix_rt::test]
async fn a_work_queue_spans_processes() {
    let nodes = cluster(1).await;
    let parent = &nodes[0];
    let mut children = Vec::new();
    for _ in 0..2 {
        let (guard, lines) = spawn_child(parent.addr());
        line_from(&lines, "child: ready").await;
        children.push((guard, lines));
    }
    let mut local = parent.receiver::<u64>("spread").capacity(64).await.expect("rx");
    let tx = parent.sender::<u64>("spread").await.expect("tx");
    within("three receivers", tx.wait_for_receivers(3)).await.expect("open");

    const N: u64 = 30_000;
    let sending = {
        let tx = tx.clone();
        actix_rt::spawn(async move {
            for i in 0..N {
                tx.send(i).await.expect("send");
            }
            tx.close().await.expect("close");
        })
    };
    let mut got = Vec::new();
    while let Some(n) = within("local recv", local.recv()).await {
        got.push(n);
    }
    within("sender", sending).await.expect("sender task");

    let mut per_process = vec![got.len()];
    for (guard, lines) in &mut children {
        let mut mine = Vec::new();
        loop {
            let line = line_from(lines, "child:").await;
            if line == "child: done" {
                break;
            }
            if let Some(n) = line.strip_prefix("child: got ") {
                mine.push(n.parse::<u64>().expect("a number"));
            }
        }
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "one sender's messages arrive in order");
        per_process.push(mine.len());
        got.extend(mine);
        // The child leaves through this process's node: wait without blocking its thread.
        let status = within("child exits", async {
            loop {
                match guard.0.try_wait().expect("child status") {
                    Some(status) => return status,
                    None => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                }
            }
        })
        .await;
        assert!(status.success(), "child failed: {status}");
    }
    got.sort_unstable();
    assert_eq!(got, (0..N).collect::<Vec<_>>(), "every message received exactly once");
    assert!(per_process.iter().all(|n| *n > 0), "every process took a share: {per_process:?}");
    for node in nodes {
        within("shutdown", node.shutdown()).await.expect("shutdown");
    }
}
