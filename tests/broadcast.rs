//! Broadcast: every receiver registered when it was sent gets exactly one copy.

mod common;

use common::{cluster, receivers_visible, shutdown, within};

#[actix_rt::test]
async fn broadcast_reaches_every_receiver_once() {
    let nodes = cluster(3).await;
    // Two receivers on the sending node (served in-process) and one on each other node.
    let mut rxs = vec![
        nodes[0].receiver::<u32>("news").await.expect("rx"),
        nodes[0].receiver::<u32>("news").await.expect("rx"),
        nodes[1].receiver::<u32>("news").await.expect("rx"),
        nodes[2].receiver::<u32>("news").await.expect("rx"),
    ];
    receivers_visible(&nodes, "news", 4).await;
    let tx = nodes[0].sender::<u32>("news").await.expect("tx");
    common::within("receivers known", tx.wait_for_receivers(4)).await.expect("open");

    for i in 0..100 {
        assert_eq!(within("broadcast", tx.broadcast(i)).await.expect("broadcast"), 4);
    }
    within("close", tx.close()).await.expect("close");
    for rx in &mut rxs {
        let mut got = Vec::new();
        while let Some(v) = within("recv", rx.recv()).await {
            got.push(v);
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>(), "receiver {}", rx.id());
    }
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn broadcast_waits_for_room_instead_of_dropping() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<u32>("slow-news").capacity(4).await.expect("rx");
    let tx = nodes[0].sender::<u32>("slow-news").await.expect("tx");
    common::within("receiver known", tx.wait_for_receivers(1)).await.expect("open");
    let sending = actix_rt::spawn(async move {
        for i in 0..200 {
            tx.broadcast(i).await.expect("broadcast");
        }
        tx
    });
    for i in 0..200 {
        assert_eq!(within("recv", rx.recv()).await, Some(i));
    }
    within("sender", sending).await.expect("sender task");
    shutdown(nodes).await;
}
