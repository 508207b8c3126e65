//! A channel without receivers: `try_send` says so, `send` waits for one, `send_timeout` gives up.

mod common;

use std::time::Duration;

use common::{cluster, eventually, shutdown, within};
use dchan::{SendTimeoutError, TrySendError};

#[actix_rt::test]
async fn try_send_without_receivers_is_no_receivers() {
    let nodes = cluster(1).await;
    let tx = nodes[0].sender::<String>("empty").await.expect("tx");
    assert_eq!(tx.receiver_count(), 0);
    match tx.try_send("hi".into()) {
        Err(TrySendError::NoReceivers(m)) => assert_eq!(m, "hi"),
        other => panic!("expected NoReceivers, got {other:?}"),
    }
    match tx.send_timeout("late".into(), Duration::from_millis(50)).await {
        Err(SendTimeoutError::Timeout(m)) => assert_eq!(m, "late"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn send_waits_for_a_receiver_that_registers_later_on_another_node() {
    let nodes = cluster(2).await;
    let tx = nodes[0].sender::<String>("later").await.expect("tx");
    let sending = {
        let tx = tx.clone();
        actix_rt::spawn(async move { tx.send("waited".into()).await })
    };
    // Let the send run until it parks: with no receiver it cannot complete.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!sending.is_finished(), "send completed with no receiver");
    let mut rx = nodes[1].receiver::<String>("later").await.expect("rx");
    assert_eq!(within("recv", rx.recv()).await.as_deref(), Some("waited"));
    within("send", sending).await.expect("task").expect("send");
    shutdown(nodes).await;
}

/// A channel leaves the registry with its last endpoint, open or closed: a typo (`dchan recv
/// nosuch2`) leaves no litter. What a node still holds for it (sent to a receiver that went
/// without taking it, the sender gone too) waits for the name's next receiver, and reaches it.
#[actix_rt::test]
async fn a_channel_without_endpoints_leaves_and_what_waits_reaches_its_next_receiver() {
    let nodes = cluster(3).await;
    let typo = nodes[1].receiver::<u64>("nosuch2").await.expect("rx");
    eventually(|| nodes[0].cluster().channel("nosuch2").is_some()).await;
    drop(typo);
    eventually(|| nodes.iter().all(|n| n.cluster().channel("nosuch2").is_none())).await;
    // Its counts too, once published a last time (every second): a channel per job leaves no
    // count behind.
    eventually(|| nodes.iter().all(|n| !n.__counts_channel("nosuch2"))).await;

    // Sent to a receiver on another node, which goes without taking them; the sender goes too.
    let rx = nodes[1].receiver::<u64>("later").capacity(16).await.expect("rx");
    let tx = nodes[0].sender::<u64>("later").await.expect("tx");
    within("receiver seen", tx.wait_for_receivers(1)).await.expect("open");
    for i in 0..10 {
        within("send", tx.send(i)).await.expect("sent");
    }
    eventually(|| nodes[1].stats().channel("later").is_some_and(|c| c.buffered == 10)).await;
    drop(tx);
    drop(rx);
    eventually(|| nodes.iter().all(|n| n.cluster().channel("later").is_none())).await;
    // The name's next receiver, on a third node, gets each of them once.
    let mut rx = nodes[2].receiver::<u64>("later").capacity(16).await.expect("rx");
    let mut got = Vec::new();
    for _ in 0..10 {
        got.push(within("recv", rx.recv()).await.expect("a message"));
    }
    got.sort_unstable();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    eventually(|| nodes[0].stats().channel("later").is_some_and(|c| c.in_flight == 0)).await;
    shutdown(nodes).await;
}
