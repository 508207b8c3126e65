//! Unnamed channels (`Node::channel`): made without a Raft commit, their `Sender` travels in
//! messages, and whichever node decodes it sends straight to the receiver, with a named
//! channel's promises: order, capacity counted over every node, close, and `Closed` once the
//! receiver or its node is gone.

mod common;

use std::time::Duration;

use common::{cluster, eventually, receivers_visible, shutdown, within};
use dchan::{SendTimeoutError, TrySendError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    n: u64,
    results: dchan::Sender<u64>,
}

/// A worker on node 1 that answers each job with `count` results on the job's own channel,
/// then closes it if `close`.
async fn worker(
    mut jobs: dchan::Receiver<Job>,
    count: u64,
    close: bool,
) -> Vec<dchan::Sender<u64>> {
    let mut kept = Vec::new();
    while let Some(job) = jobs.recv().await {
        for i in 0..count {
            job.results.send(job.n * 1000 + i).await.expect("results open");
        }
        if close {
            job.results.close().await.expect("close");
        }
        kept.push(job.results);
    }
    kept
}

#[actix_rt::test]
async fn an_unnamed_sender_in_a_message_sends_back_in_order_and_commits_nothing() {
    let nodes = cluster(2).await;
    let jobs = nodes[1].receiver::<Job>("jobs").await.expect("rx");
    let jobs_tx = nodes[0].sender::<Job>("jobs").await.expect("tx");
    receivers_visible(&nodes, "jobs", 1).await;
    let work = actix_rt::spawn(worker(jobs, 50, true));
    let log = nodes[0].__last_log_index();
    for n in 0..20u64 {
        // Capacity 4: the worker's sends wait for room on the asker's node.
        let (tx, mut rx) = nodes[0].channel::<u64>(4);
        within("send", jobs_tx.send(Job { n, results: tx })).await.expect("send");
        for i in 0..50 {
            assert_eq!(within("result", rx.recv()).await, Some(n * 1000 + i), "in order, once");
        }
        // Closed by the worker, after everything it sent.
        assert_eq!(within("end", rx.recv()).await, None);
    }
    assert_eq!(nodes[0].__last_log_index(), log, "unnamed channels commit nothing");
    within("close", jobs_tx.close()).await.expect("close");
    let kept = within("worker", work).await.expect("worker");
    assert_eq!(kept.len(), 20);
    for tx in &kept {
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(1), Err(TrySendError::Closed(1))));
    }
    drop(kept);
    shutdown(nodes).await;
}

#[derive(Debug, Serialize, Deserialize)]
struct Hold {
    results: dchan::Sender<u64>,
}

/// Node 1 decodes the sender, keeps it, and hands it back to the test.
async fn decoded_on(
    nodes: &[dchan::Node],
    name: &str,
    tx: dchan::Sender<u64>,
) -> dchan::Sender<u64> {
    let mut holds = nodes[1].receiver::<Hold>(name).await.expect("rx");
    let holds_tx = nodes[0].sender::<Hold>(name).await.expect("tx");
    receivers_visible(nodes, name, 1).await;
    within("send", holds_tx.send(Hold { results: tx })).await.expect("send");
    within("recv", holds.recv()).await.expect("a hold").results
}

#[actix_rt::test]
async fn capacity_is_counted_over_every_node() {
    let nodes = cluster(2).await;
    let (tx, mut rx) = nodes[0].channel::<u64>(4);
    let remote = decoded_on(&nodes, "holds", tx.clone()).await;
    // The remote sender fills the channel (its first try asks for credit).
    let mut sent = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sent < 4 {
        match remote.try_send(sent) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(_)) => {
                assert!(tokio::time::Instant::now() < deadline, "no credit came");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    eventually(|| rx.len() == 4).await;
    // Four sent and not taken: no room anywhere.
    assert!(matches!(tx.try_send(100), Err(TrySendError::Full(100))));
    assert!(matches!(remote.try_send(101), Err(TrySendError::Full(101))));
    assert!(matches!(
        remote.send_timeout(102, Duration::from_millis(200)).await,
        Err(SendTimeoutError::Timeout(102))
    ));
    assert_eq!(rx.len(), 4, "never more than the capacity");
    // One taken: the waiting sender gets its room.
    let waiting = {
        let remote = remote.clone();
        actix_rt::spawn(async move { remote.send(103).await })
    };
    assert_eq!(within("recv", rx.recv()).await, Some(0));
    within("room", waiting).await.expect("task").expect("open");
    for n in [1, 2, 3, 103] {
        assert_eq!(within("recv", rx.recv()).await, Some(n));
    }
    assert!(rx.len() <= 4);
    drop((remote, tx, rx));
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_close_on_the_owner_waits_for_what_other_nodes_sent() {
    let nodes = cluster(2).await;
    let (tx, mut rx) = nodes[0].channel::<u64>(128);
    let remote = decoded_on(&nodes, "holds", tx.clone()).await;
    // 100 sends returned on node 1, many still on their way when the close comes.
    let sending = {
        let remote = remote.clone();
        actix_rt::spawn(async move {
            for n in 0..100 {
                remote.send(n).await.expect("open");
            }
        })
    };
    assert_eq!(within("first", rx.recv()).await, Some(0));
    within("sent", sending).await.expect("task");
    within("close", tx.close()).await.expect("close");
    assert!(matches!(tx.try_send(7), Err(TrySendError::Closed(7))), "closed here at once");
    for n in 1..100 {
        assert_eq!(within("recv", rx.recv()).await, Some(n), "everything sent before the close");
    }
    assert_eq!(within("end", rx.recv()).await, None);
    // Node 1 was asked for its fence: its sender is closed too.
    eventually(|| remote.is_closed()).await;
    assert!(within("send after close", remote.send(1)).await.is_err());
    drop((remote, tx));
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn dropping_the_receiver_closes_the_senders_everywhere() {
    let nodes = cluster(2).await;
    let (tx, mut rx) = nodes[0].channel::<u64>(2);
    let remote = decoded_on(&nodes, "holds", tx.clone()).await;
    within("send", remote.send(1)).await.expect("open");
    assert_eq!(within("recv", rx.recv()).await, Some(1));
    // Sends that wait for room when the receiver goes fail.
    within("send", remote.send(2)).await.expect("open");
    within("send", remote.send(3)).await.expect("open");
    let blocked = {
        let remote = remote.clone();
        actix_rt::spawn(async move { remote.send(4).await })
    };
    drop(rx);
    let blocked = within("blocked send", blocked).await.expect("task");
    assert!(matches!(blocked, Err(dchan::SendError(4))), "{blocked:?}");
    assert!(within("send", remote.send(5)).await.is_err());
    assert!(within("send", tx.send(6)).await.is_err());
    assert!(remote.is_closed() && tx.is_closed());
    drop((remote, tx));
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn the_owner_node_gone_closes_the_senders() {
    let mut nodes = cluster(3).await;
    let owner = nodes.pop().expect("three nodes");
    let (tx, _rx) = owner.channel::<u64>(2);
    let mut holds = nodes[1].receiver::<Hold>("holds").await.expect("rx");
    let holds_tx = owner.sender::<Hold>("holds").await.expect("tx");
    eventually(|| owner.cluster().channel("holds").is_some_and(|c| c.receivers().count() == 1))
        .await;
    within("send", holds_tx.send(Hold { results: tx.clone() })).await.expect("send");
    let remote = within("recv", holds.recv()).await.expect("a hold").results;
    within("send", remote.send(1)).await.expect("open");
    drop((holds_tx, tx, _rx));
    within("shutdown", owner.shutdown()).await.expect("shutdown");
    let failed = within("send after the owner left", async {
        loop {
            if remote.send(2).await.is_err() {
                break;
            }
        }
    });
    failed.await;
    assert!(remote.is_closed());
    drop(remote);
    shutdown(nodes).await;
}

#[derive(Debug, Serialize, Deserialize)]
struct Forged {
    results: (String, String, Option<(u64, u64)>),
}

#[actix_rt::test]
async fn a_forged_or_stale_unnamed_sender_gets_closed_or_a_dead_letter() {
    let nodes = cluster(2).await;
    let mut holds = nodes[1].receiver::<Hold>("forged").await.expect("rx");
    // (Through an untyped sender: the channel carries `Hold`s.)
    let forged = nodes[0].sender::<dchan::Value>("forged").await.expect("tx");
    let forge = |results| dchan::rmpv::ext::to_value(Forged { results }).expect("encodes");
    receivers_visible(&nodes, "forged", 1).await;
    let u64_name = std::any::type_name::<u64>().to_owned();
    // A receiver that does not exist on node 0: the sender decodes, and is closed at the
    // first send (node 0 says it is gone).
    let stale = (String::new(), u64_name.clone(), Some((nodes[0].id(), (1 << 63) | 12345)));
    within("send", forged.send(forge(stale))).await.expect("send");
    let remote = within("recv", holds.recv()).await.expect("a hold").results;
    assert!(within("send on a stale sender", remote.send(1)).await.is_err());
    assert!(remote.is_closed());
    // An id that is not an unnamed channel's: a dead letter saying so.
    let named = (String::new(), u64_name, Some((nodes[0].id(), 3)));
    within("send", forged.send(forge(named))).await.expect("send");
    within("close", forged.close()).await.expect("close");
    assert!(within("recv", holds.recv()).await.is_none(), "it did not decode");
    let letters = within("dead letters", nodes[1].dead_letters("forged")).await.expect("read");
    assert_eq!(letters.len(), 1);
    assert!(letters[0].error.contains("which is not one"), "{}", letters[0].error);
    drop(remote);
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_sender_back_on_its_own_node_sends_in_process() {
    let nodes = cluster(2).await;
    let (tx, mut rx) = nodes[0].channel::<u64>(4);
    // There and back: decoded on node 1, then on node 0 again.
    let remote = decoded_on(&nodes, "there", tx.clone()).await;
    let mut back = nodes[0].receiver::<Hold>("back").await.expect("rx");
    let back_tx = nodes[1].sender::<Hold>("back").await.expect("tx");
    receivers_visible(&nodes, "back", 1).await;
    within("send", back_tx.send(Hold { results: remote.clone() })).await.expect("send");
    let home = within("recv", back.recv()).await.expect("a hold").results;
    within("send", home.send(9)).await.expect("open");
    within("send", remote.send(10)).await.expect("open");
    assert_eq!(within("recv", rx.recv()).await, Some(9));
    assert_eq!(within("recv", rx.recv()).await, Some(10));
    drop(rx);
    assert!(within("send", home.send(11)).await.is_err(), "the receiver is gone");
    drop((home, tx, remote));
    shutdown(nodes).await;
}
