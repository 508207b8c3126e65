//! Close: committed through Raft; then every send fails on every node, and every receiver drains
//! what was sent before, then yields `None`.

mod common;

use common::{cluster, receivers_visible, shutdown, within};
use dchan::{TryRecvError, TrySendError};

#[actix_rt::test]
async fn close_then_drain_then_none_on_every_node() {
    let nodes = cluster(3).await;
    let mut rxs = Vec::new();
    for node in &nodes {
        rxs.push(node.receiver::<u64>("closing").capacity(64).await.expect("rx"));
    }
    receivers_visible(&nodes, "closing", 3).await;
    let txs: Vec<_> = {
        let mut v = Vec::new();
        for node in &nodes {
            v.push(node.sender::<u64>("closing").await.expect("tx"));
        }
        v
    };
    for tx in &txs {
        common::within("receivers known", tx.wait_for_receivers(3)).await.expect("open");
    }
    // Enough to leave messages buffered and in flight when the close commits.
    const N: u64 = 3_000;
    let mut tasks = Vec::new();
    for (i, tx) in txs.iter().enumerate() {
        let tx = tx.clone();
        tasks.push(actix_rt::spawn(async move {
            for k in 0..N {
                tx.send(i as u64 * N + k).await.expect("send before close");
            }
        }));
    }
    let mut readers = Vec::new();
    for mut rx in rxs {
        readers.push(actix_rt::spawn(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
            got
        }));
    }
    for t in tasks {
        within("senders", t).await.expect("task");
    }
    within("close", txs[1].close()).await.expect("close");
    // On the closing node, the very next send fails.
    assert!(txs[1].is_closed());
    assert!(matches!(txs[1].try_send(7), Err(TrySendError::Closed(7))));

    let mut all = Vec::new();
    for r in readers {
        all.extend(within("drain to None", r).await.expect("reader"));
    }
    all.sort_unstable();
    assert_eq!(all, (0..3 * N).collect::<Vec<_>>(), "everything sent before the close, once");

    // Afterwards, sends fail everywhere (each node applies the close promptly).
    for tx in &txs {
        common::eventually(|| tx.is_closed()).await;
        assert!(matches!(tx.try_send(1), Err(TrySendError::Closed(1))));
        assert_eq!(tx.send(2).await.unwrap_err().into_inner(), 2);
    }
    // And no endpoint can be added to a closed channel.
    let err = nodes[2].receiver::<u64>("closing").await.unwrap_err();
    assert!(matches!(err, dchan::Error::ChannelClosed(ref c) if c == "closing"), "{err}");
    shutdown(nodes).await;
}

/// The close commits through other links than the data takes: a receiver must not end before
/// the data sent ahead of the close has arrived (the sending node's fence says when it has).
/// Whether the race is really lost here depends on scheduling; the fence logic itself is
/// unit-tested in `src/channel/inbox/tests.rs`.
#[actix_rt::test]
async fn a_close_racing_data_in_flight_loses_nothing() {
    let nodes = cluster(3).await;
    const N: u64 = 20_000;
    let rx = nodes[1].receiver::<u64>("race").capacity(N as usize).await.expect("rx");
    receivers_visible(&nodes, "race", 1).await;
    // The sender is on a node that does not lead, so the close travels sender -> leader ->
    // receiver while the data goes sender -> receiver, behind a backlog.
    let leader = nodes[0].cluster().leader.expect("leader");
    let sender_node = nodes.iter().find(|n| n.id() != leader && n.id() != nodes[1].id());
    let sender_node = sender_node.unwrap_or(&nodes[2]);
    let tx = sender_node.sender::<u64>("race").await.expect("tx");
    common::within("receiver known", tx.wait_for_receivers(1)).await.expect("open");
    // The first send waits for the receiver's credit (a round trip after the registration);
    // the rest fit in its capacity at once.
    within("first send", tx.send(0)).await.expect("open");
    for i in 1..N {
        tx.try_send(i).expect("capacity holds all of it");
    }
    within("close", tx.close()).await.expect("close");
    let mut rx = rx;
    let mut got = 0;
    while let Some(v) = within("recv", rx.recv()).await {
        assert_eq!(v, got, "in order");
        got += 1;
    }
    assert_eq!(got, N, "messages sent before the close were lost");
    shutdown(nodes).await;
}
