//! Twenty nodes in one process: three voters, seventeen learners. Endpoints on every node, a work
//! queue across all of them while learners join and leave, and connections only between nodes
//! that exchange something. (Counts connections from the kernel's table, so Linux only.)

#![cfg(target_os = "linux")]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{accepted, eventually, within};
use dchan::{Node, Role};
use tokio::sync::mpsc;

async fn join(seed: &Node) -> Node {
    Node::builder().listen("127.0.0.1:0").join([seed.addr()]).start().await.expect("join")
}

/// Every node in `nodes` sees exactly them as members, `voters` of them voting, and a leader.
async fn settled(nodes: &[Node], voters: usize) {
    let ids: BTreeSet<u64> = nodes.iter().map(Node::id).collect();
    for node in nodes {
        eventually(|| {
            let view = node.cluster();
            let seen: BTreeSet<u64> = view.members.iter().map(|m| m.id).collect();
            let v = view.members.iter().filter(|m| m.role == Role::Voter).count();
            view.leader.is_some() && seen == ids && v == voters
        })
        .await;
    }
}

/// A receiver of `channel` on `node` that reports `(receiver, message)` for each message.
async fn collect(node: &Node, channel: &str, tag: usize, out: mpsc::UnboundedSender<(usize, u64)>) {
    let mut rx = node.receiver::<u64>(channel).capacity(32).await.expect("receiver");
    actix_rt::spawn(async move {
        while let Some(m) = rx.recv().await {
            if out.send((tag, m)).is_err() {
                return;
            }
        }
    });
}

#[actix_rt::test]
async fn twenty_nodes_carry_a_work_queue_while_learners_join_and_leave() {
    common::tracing();
    let first = Node::builder().listen("127.0.0.1:0").bootstrap().start().await.expect("bootstrap");
    let mut nodes = vec![first];
    for _ in 1..20 {
        let node = join(&nodes[0]).await;
        nodes.push(node);
    }
    settled(&nodes, 3).await;
    let leader = nodes[0].cluster().leader.expect("a leader");
    let view = nodes[0].cluster();
    let role = |id: u64| view.members.iter().find(|m| m.id == id).map(|m| m.role);
    let learners: Vec<usize> =
        (0..nodes.len()).filter(|i| role(nodes[*i].id()) == Some(Role::Learner)).collect();
    assert_eq!(learners.len(), 17);
    // Which pairs of nodes exchange something: Raft (the leader with everyone, voters among
    // themselves), and every pair the test sends data between.
    let mut pairs: BTreeSet<(u64, u64)> = BTreeSet::new();
    let mut pair = |a: u64, b: u64| {
        if a != b {
            pairs.insert((a.min(b), a.max(b)));
        }
    };
    let voters: Vec<u64> =
        view.members.iter().filter(|m| m.role == Role::Voter).map(|m| m.id).collect();
    for n in &nodes {
        pair(leader, n.id());
    }
    for a in &voters {
        for b in &voters {
            pair(*a, *b);
        }
    }

    // A channel of its own on every node, fed from the next node round the ring.
    for i in 0..nodes.len() {
        let next = &nodes[(i + 1) % nodes.len()];
        let name = format!("own-{i}");
        let mut rx = nodes[i].receiver::<u64>(&name).await.expect("receiver");
        let tx = next.sender::<u64>(&name).await.expect("sender");
        within("own receiver visible", tx.wait_for_receivers(1)).await.expect("open");
        tx.send(i as u64).await.expect("send");
        assert_eq!(within("own message", rx.recv()).await, Some(i as u64));
        pair(nodes[i].id(), next.id());
    }

    // The work queue: a receiver on every node that stays, three senders on learners.
    let leaving: Vec<usize> = learners[learners.len() - 3..].to_vec();
    let sending: Vec<usize> = learners[..3].to_vec();
    let (out, mut got) = mpsc::unbounded_channel();
    let mut receiving = Vec::new();
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| !leaving.contains(i)) {
        collect(node, "work", i, out.clone()).await;
        receiving.push(node.id());
    }
    // The leaving learners hold endpoints too (their own channels' and a side channel's).
    let mut held = Vec::new();
    for i in &leaving {
        held.push(nodes[*i].receiver::<u64>(&format!("side-{i}")).await.expect("receiver"));
    }
    const PER_SENDER: u64 = 3_000;
    let mut sends = Vec::new();
    for (s, i) in sending.iter().enumerate() {
        let tx = nodes[*i].sender::<u64>("work").await.expect("sender");
        within("receivers visible", tx.wait_for_receivers(receiving.len())).await.expect("open");
        for r in &receiving {
            pair(nodes[*i].id(), *r);
        }
        sends.push(actix_rt::spawn(async move {
            for k in 0..PER_SENDER {
                tx.send(s as u64 * 1_000_000 + k).await.expect("send");
            }
        }));
    }

    // While it flows: three learners join (and receive from the queue), three leave.
    let mut joined = Vec::new();
    for _ in 0..3 {
        let node = join(&nodes[0]).await;
        collect(&node, "work", 100 + joined.len(), out.clone()).await;
        joined.push(node);
    }
    for i in leaving.iter().rev() {
        let node = nodes.remove(*i);
        within("a learner leaves", node.shutdown()).await.expect("leave");
    }
    drop(held);
    for node in &joined {
        pair(leader, node.id());
        for s in &sending {
            // Indices shifted by the removals only past the senders, which come first.
            pair(node.id(), nodes[*s].id());
        }
    }
    nodes.extend(joined);
    drop(out);
    for s in sends {
        within("senders done", s).await.expect("sender task");
    }

    // Every message once, and in order per sender and receiver.
    let total = PER_SENDER * sending.len() as u64;
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<(usize, u64), u64> = BTreeMap::new();
    while (seen.len() as u64) < total {
        let (r, m) = within("every message", got.recv()).await.expect("receivers alive");
        assert!(seen.insert(m), "message {m} received twice");
        let (s, k) = (m / 1_000_000, m % 1_000_000);
        if let Some(prev) = last.insert((r, s), k) {
            assert!(prev < k, "receiver {r} got {k} of sender {s} after {prev}");
        }
    }
    let spread = last.keys().map(|(r, _)| *r).collect::<BTreeSet<_>>().len();
    eprintln!("{total} messages over {spread} receivers, {} nodes", nodes.len());
    assert!(spread > 1, "the queue spreads over the nodes");
    settled(&nodes, 3).await;

    // One connection per pair that exchanged something, not one per pair of nodes.
    let ports: BTreeSet<u16> = nodes.iter().map(|n| n.addr().port()).collect();
    let mesh = nodes.len() * (nodes.len() - 1) / 2;
    let live: BTreeSet<u64> = nodes.iter().map(Node::id).collect();
    let expected = pairs.iter().filter(|(a, b)| live.contains(a) && live.contains(b)).count();
    eventually(|| accepted(&ports) <= expected).await;
    eprintln!("{} connections among {} nodes (full mesh {mesh})", accepted(&ports), nodes.len());
    for node in nodes.into_iter().rev() {
        within("shutdown", node.shutdown()).await.expect("shutdown");
    }
}
