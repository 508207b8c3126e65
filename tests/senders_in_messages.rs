//! Channels of channels, for named channels: a `Sender<T>` inside a message travels as its
//! channel's name and type; the node whose receiver decodes it sends on it with a registration
//! of its own (one, shared by every sender of that channel decoded there).

mod common;

use common::{cluster, eventually, receivers_visible, shutdown, within};
use dchan::EndpointKind;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    n: u64,
    results: dchan::Sender<u64>,
}

/// Senders of `channel` registered on `node`, as `on` sees the registry.
fn senders_on(on: &dchan::Node, channel: &str, node: u64) -> usize {
    let view = on.cluster();
    view.channels.iter().find(|c| c.name == channel).map_or(0, |c| {
        c.endpoints.values().filter(|e| e.kind == EndpointKind::Sender && e.node == node).count()
    })
}

#[actix_rt::test]
async fn a_sender_in_a_message_sends_from_the_node_that_takes_it() {
    const N: u64 = 200;
    let nodes = cluster(2).await;
    // Capacity 4: the worker's decoded senders wait for room like any sender.
    let mut results = nodes[0].receiver::<u64>("results").capacity(4).await.expect("rx");
    let mut jobs = nodes[1].receiver::<Job>("jobs").await.expect("rx");
    let results_tx = nodes[0].sender::<u64>("results").await.expect("tx");
    let jobs_tx = nodes[0].sender::<Job>("jobs").await.expect("tx");
    receivers_visible(&nodes, "jobs", 1).await;
    let worker = actix_rt::spawn(async move {
        let mut kept = Vec::new();
        while let Some(job) = jobs.recv().await {
            job.results.send(job.n * 2).await.expect("results open");
            // Keep a few alive: decoded senders share one registration while one lives.
            if kept.len() < 3 {
                kept.push(job.results);
            }
        }
        kept
    });
    for n in 0..N {
        within("send", jobs_tx.send(Job { n, results: results_tx.clone() })).await.expect("send");
    }
    for n in 0..N {
        assert_eq!(within("result", results.recv()).await, Some(n * 2), "in order, once");
    }
    assert_eq!(senders_on(&nodes[0], "results", nodes[1].id()), 1, "one registration on node 1");
    within("close", jobs_tx.close()).await.expect("close");
    let kept = within("worker", worker).await.expect("worker");
    assert_eq!(kept.len(), 3);
    drop(kept);
    // The last decoded sender gone, its registration goes.
    eventually(|| senders_on(&nodes[0], "results", nodes[1].id()) == 0).await;
    drop((results_tx, results));
    shutdown(nodes).await;
}

#[derive(Debug, Serialize, Deserialize)]
struct WrongJob {
    n: u64,
    results: dchan::Sender<String>,
}

#[actix_rt::test]
async fn a_sender_decoded_as_another_type_is_a_dead_letter_with_a_clear_reason() {
    let nodes = cluster(2).await;
    let _results = nodes[0].receiver::<u64>("numbers").await.expect("rx");
    let results_tx = nodes[0].sender::<u64>("numbers").await.expect("tx");
    let mut jobs = nodes[1].receiver::<WrongJob>("wrong").await.expect("rx");
    let jobs_tx = nodes[0].sender::<Job>("wrong").await;
    // The channel is of `WrongJob`: a `Job` sender is refused; send through an untyped one.
    assert!(jobs_tx.is_err(), "a channel keeps its first type");
    let raw = nodes[0].sender::<dchan::Value>("wrong").await.expect("tx");
    receivers_visible(&nodes, "wrong", 1).await;
    let job = Job { n: 1, results: results_tx.clone() };
    let value = dchan::rmpv::ext::to_value(&job).expect("a job encodes");
    within("send", raw.send(value)).await.expect("send");
    within("close", raw.close()).await.expect("close");
    assert!(within("recv", jobs.recv()).await.is_none(), "the job did not decode");
    let letters = within("dead letters", nodes[1].dead_letters("wrong")).await.expect("read");
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].error.contains("a sender of channel numbers carrying u64, decoded as a sender of alloc::string::String"),
        "{}",
        letters[0].error
    );
    assert_eq!(senders_on(&nodes[0], "numbers", nodes[1].id()), 0, "nothing registered");
    drop(results_tx);
    shutdown(nodes).await;
}

/// A sender of a closed channel, decoded elsewhere: its registration is refused for good;
/// `try_send` says `Closed` once that is known, and `send` fails.
#[actix_rt::test]
async fn a_sender_of_a_closed_channel_decoded_elsewhere_says_closed() {
    let nodes = cluster(2).await;
    let _results = nodes[0].receiver::<u64>("finished").await.expect("rx");
    let results_tx = nodes[0].sender::<u64>("finished").await.expect("tx");
    within("close", results_tx.close()).await.expect("close");
    let mut jobs = nodes[1].receiver::<Job>("late").await.expect("rx");
    let jobs_tx = nodes[0].sender::<Job>("late").await.expect("tx");
    receivers_visible(&nodes, "late", 1).await;
    within("send", jobs_tx.send(Job { n: 1, results: results_tx.clone() })).await.expect("send");
    let job = within("recv", jobs.recv()).await.expect("open");
    eventually(|| matches!(job.results.try_send(2), Err(dchan::TrySendError::Closed(2)))).await;
    assert!(within("send", job.results.send(3)).await.is_err(), "closed");
    drop((job, jobs_tx, results_tx));
    shutdown(nodes).await;
}
