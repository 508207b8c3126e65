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
        common::eventually(|| tx.receiver_count() == 3).await;
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
