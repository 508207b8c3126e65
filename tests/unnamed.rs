//! Unnamed channels (`Node::channel`): made without a Raft commit, their `Sender` travels in
//! messages, and whichever node decodes it sends straight to the receiver, with a named
//! channel's promises: order, capacity counted over every node, close, and `Closed` once the
//! receiver or its node is gone.

mod common;

use std::time::Duration;

use common::procs::{self, Proc};
use common::{cluster, eventually, receivers_visible, shutdown, within};
use dchan::{SendTimeoutError, TrySendError};
use serde::{Deserialize, Serialize};

/// A node process of this file's tests.
#[test]
#[ignore = "a node process started by this file's tests"]
fn child() {
    procs::child_main();
}

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
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiting.is_finished(), "a fifth message went with four held");
    assert_eq!(within("recv", rx.recv()).await, Some(0));
    within("room", waiting).await.expect("task").expect("open");
    for n in [1, 2, 3, 103] {
        assert_eq!(within("recv", rx.recv()).await, Some(n));
    }
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
    let (tx, rx) = owner.channel::<u64>(2);
    let mut holds = nodes[1].receiver::<Hold>("holds").await.expect("rx");
    let holds_tx = owner.sender::<Hold>("holds").await.expect("tx");
    eventually(|| owner.cluster().channel("holds").is_some_and(|c| c.receivers().count() == 1))
        .await;
    within("send", holds_tx.send(Hold { results: tx.clone() })).await.expect("send");
    let remote = within("recv", holds.recv()).await.expect("a hold").results;
    within("send", remote.send(1)).await.expect("open");
    drop((holds_tx, tx));
    // The receiver lives on: its node leaving is what closes the channel.
    within("shutdown", owner.shutdown()).await.expect("shutdown");
    drop(rx);
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

/// A node that waits for its first credit when the owner closes the channel is asked for its
/// fence too: its send fails, and the receiver yields what was sent before, then `None` (the
/// review's finding: it was neither asked nor waited for, and its message, granted room as the
/// receiver drained, came after the close or was lost).
#[actix_rt::test]
async fn a_close_reaches_a_node_still_waiting_for_credit() {
    let nodes = cluster(2).await;
    let (tx, mut rx) = nodes[0].channel::<u64>(2);
    let remote = decoded_on(&nodes, "holds", tx.clone()).await;
    within("send", tx.send(0)).await.expect("open");
    within("send", tx.send(1)).await.expect("open");
    let blocked = {
        let remote = remote.clone();
        actix_rt::spawn(async move { remote.send(2).await })
    };
    // Its want is in the receiver's books (their one entry).
    eventually(|| nodes[0].__entries_by_table().contains("books_total: 1,")).await;
    within("close", tx.close()).await.expect("close");
    assert_eq!(within("recv", rx.recv()).await, Some(0));
    assert_eq!(within("recv", rx.recv()).await, Some(1));
    assert_eq!(within("end", rx.recv()).await, None, "nothing after the close");
    let blocked = within("blocked send", blocked).await.expect("task");
    assert!(matches!(blocked, Err(dchan::SendError(2))), "{blocked:?}");
    drop((remote, tx));
    shutdown(nodes).await;
}

#[derive(Debug, Serialize, Deserialize)]
struct Asking {
    reply: dchan::oneshot::Sender<u64>,
}

/// A reply handle in a message an unnamed channel's receiver never took: dropped with the
/// receiver, it tells its asker at once.
#[actix_rt::test]
async fn a_reply_handle_dropped_with_an_unnamed_receiver_tells_its_asker() {
    let nodes = cluster(1).await;
    let (tx, rx) = nodes[0].channel::<Asking>(4);
    let (reply, answer) = nodes[0].oneshot::<u64>();
    within("send", tx.send(Asking { reply })).await.expect("open");
    drop(rx);
    assert_eq!(within("answer", answer).await, Err(dchan::oneshot::RecvError::Dropped));
    drop(tx);
    shutdown(nodes).await;
}

#[derive(Debug, Serialize, Deserialize)]
struct Forged {
    results: (String, String, Option<(u64, u64, u64)>),
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
    let stale = (String::new(), u64_name.clone(), Some((nodes[0].id(), (1 << 63) | 12345, 0)));
    within("send", forged.send(forge(stale))).await.expect("send");
    let remote = within("recv", holds.recv()).await.expect("a hold").results;
    assert!(within("send on a stale sender", remote.send(1)).await.is_err());
    assert!(remote.is_closed());
    // An id that is not an unnamed channel's: a dead letter saying so.
    let named = (String::new(), u64_name, Some((nodes[0].id(), 3, 0)));
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

/// The values `@ took` lines carry, `count` of them.
async fn took(p: &mut Proc, count: usize) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..count {
        let line = p.expect("@ took ").await;
        got.push(line["@ took ".len()..].parse().expect("a number"));
    }
    got
}

/// Across processes: the owner makes an unnamed channel of capacity 8 and sends its sender to a
/// producer process, which sends 100 numbers. Without taking, the producer gets exactly 8 sends
/// through; each message taken lets one more through; the producer's close ends the channel
/// after the last number, and its next send fails. Everything arrives once, in order.
#[actix_rt::test]
async fn across_processes_an_unnamed_channel_in_a_message_honours_capacity_and_close() {
    let mut owner = procs::start(&[]).await;
    let mut producer = procs::start(&[owner.addr]).await;
    producer.cmd("produce feeds close");
    producer.expect("@ recv feeds").await;
    owner.cmd("own 8");
    owner.expect("@ own").await;
    owner.cmd("feed feeds 100");
    owner.expect("@ fed").await;
    // Nothing taken: 8 sends return, the 9th waits.
    producer.expect("@ sent 7").await;
    let early = producer.expect_within(&["@ sent 8"], Duration::from_millis(300)).await;
    assert_eq!(early, None, "a 9th message went with 8 held and capacity 8");
    owner.cmd("take 3");
    assert_eq!(took(&mut owner, 3).await, vec![0, 1, 2]);
    let held: usize = owner.expect("@ len ").await["@ len ".len()..].parse().expect("len");
    assert!(held <= 8, "the receiver held {held} with capacity 8");
    // Three taken: three more go, not a fourth.
    producer.expect("@ sent 10").await;
    let early = producer.expect_within(&["@ sent 11"], Duration::from_millis(300)).await;
    assert_eq!(early, None, "a message beyond the capacity went");
    owner.cmd("drain");
    let rest = took(&mut owner, 97).await;
    assert_eq!(rest, (3..100).collect::<Vec<u64>>(), "once each, in order");
    owner.expect("@ ended").await;
    producer.expect("@ closed").await;
    assert_eq!(producer.expect("@ after ").await, "@ after closed");
    producer.kill();
    owner.kill();
}

/// Across processes: the process that owns an unnamed channel is killed while a producer in
/// another process waits for room on it; once the cluster removes the dead node, the send fails
/// with `Closed` (it does not wait for ever).
#[actix_rt::test]
async fn across_processes_the_owner_killed_closes_the_senders() {
    let mut seed = procs::start(&[]).await;
    let mut owner = procs::start(&[seed.addr]).await;
    let mut producer = procs::start(&[seed.addr]).await;
    producer.cmd("produce feeds keep");
    producer.expect("@ recv feeds").await;
    owner.cmd("own 4");
    owner.expect("@ own").await;
    owner.cmd("feed feeds 2");
    owner.expect("@ fed").await;
    producer.expect("@ sent 1").await;
    // Two more fit, the third waits for room that never comes.
    producer.cmd("more 3");
    producer.expect("@ more ok").await;
    producer.expect("@ more ok").await;
    owner.kill();
    assert_eq!(producer.expect_any(&["@ more "]).await, "@ more closed");
    producer.kill();
    seed.kill();
}

/// A node that leaves refuses its application's sends from the moment `shutdown` starts, on
/// unnamed channels too, as on named ones: another node's channel (a sender decoded here) and
/// one of its own. (An unnamed sender on a leaving node sent on: a send that returned after
/// the hand-over's flush went with the node.)
#[actix_rt::test]
async fn a_leaving_node_refuses_sends_on_unnamed_channels_too() {
    let nodes = cluster(3).await;
    let (tx, mut rx) = nodes[0].channel::<u64>(8);
    let remote = decoded_on(&nodes, "holds", tx.clone()).await;
    let (own, mut own_rx) = nodes[1].channel::<u64>(8);
    within("send", remote.send(1)).await.expect("open");
    assert_eq!(within("recv", rx.recv()).await, Some(1));
    let mut leaving = Box::pin(nodes[1].shutdown());
    assert!(futures::poll!(&mut leaving).is_pending(), "a leave takes a round trip");
    assert!(remote.is_closed() && own.is_closed(), "closed from the start of the leave");
    assert!(within("send", remote.send(2)).await.is_err(), "another node's channel");
    assert!(within("send", own.send(3)).await.is_err(), "its own");
    within("shutdown", leaving).await.expect("shutdown");
    assert_eq!(within("own ends", own_rx.recv()).await, None);
    drop(tx);
    assert!(rx.try_recv().is_err(), "nothing sent while leaving arrives");
    drop((remote, own));
    shutdown(nodes).await;
}
