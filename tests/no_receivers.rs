//! A channel without receivers: `try_send` says so, `send` waits for one, `send_timeout` gives up.

mod common;

use std::time::Duration;

use common::{cluster, shutdown, within};
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
