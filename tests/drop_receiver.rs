//! Dropping a receiver mid-stream loses nothing: what it held goes to another receiver.

mod common;

use common::{cluster, receivers_visible, shutdown, within};

#[actix_rt::test]
async fn dropping_a_receiver_mid_stream_loses_nothing() {
    let nodes = cluster(3).await;
    // The receiver that will be dropped is remote to the sender and holds a full buffer.
    let doomed = nodes[1].receiver::<u64>("handover").capacity(64).await.expect("rx");
    let mut survivor = nodes[2].receiver::<u64>("handover").capacity(64).await.expect("rx");
    let mut local = nodes[0].receiver::<u64>("handover").capacity(64).await.expect("rx");
    receivers_visible(&nodes, "handover", 3).await;
    let tx = nodes[0].sender::<u64>("handover").await.expect("tx");
    common::within("receivers known", tx.wait_for_receivers(3)).await.expect("open");

    const N: u64 = 20_000;
    let sending = {
        let tx = tx.clone();
        actix_rt::spawn(async move {
            for i in 0..N {
                tx.send(i).await.expect("send");
            }
        })
    };
    // Read a little so that the stream is really under way (the doomed receiver, which never
    // reads, fills up meanwhile), then drop it while sends go on.
    let mut got = Vec::new();
    for _ in 0..100 {
        got.push(within("recv", survivor.recv()).await.expect("open"));
    }
    drop(doomed);

    let readers = [
        actix_rt::spawn(async move {
            let mut v = Vec::new();
            while let Some(x) = survivor.recv().await {
                v.push(x);
            }
            v
        }),
        actix_rt::spawn(async move {
            let mut v = Vec::new();
            while let Some(x) = local.recv().await {
                v.push(x);
            }
            v
        }),
    ];
    within("sender", sending).await.expect("task");
    // The close waits for nothing: messages still being re-routed go out before the fences.
    common::eventually(|| tx.receiver_count() == 2).await;
    within("close", tx.close()).await.expect("close");
    for r in readers {
        got.extend(within("drain", r).await.expect("reader"));
    }
    got.sort_unstable();
    let dups = got.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(dups, 0, "duplicates");
    assert_eq!(got.len() as u64, N, "every message received once");
    shutdown(nodes).await;
}

/// Receivers made and dropped over and over (say, one per request) leave nothing behind: once
/// every node has said it sends nothing more to a dropped receiver, its inbox and actor go.
#[actix_rt::test]
async fn dropped_receivers_are_let_go() {
    let nodes = cluster(3).await;
    // Room for a round (16) and what the previous round's dropped receiver handed over (4): the
    // test reads only between rounds, and capacity is exact.
    let mut steady = nodes[1].receiver::<u64>("churn").capacity(32).await.expect("rx");
    let txs = [
        nodes[0].sender::<u64>("churn").await.expect("tx"),
        nodes[2].sender::<u64>("churn").await.expect("tx"),
    ];
    let mut next = 0u64;
    let mut got = Vec::new();
    for _ in 0..20 {
        let temp = nodes[1].receiver::<u64>("churn").capacity(4).await.expect("rx");
        for tx in &txs {
            within("wait", tx.wait_for_receivers(2)).await.expect("open");
            for _ in 0..8 {
                within("send", tx.send(next)).await.expect("send");
                next += 1;
            }
        }
        drop(temp); // what it held goes to `steady`
        while let Ok(v) = steady.try_recv() {
            got.push(v);
        }
    }
    common::eventually(|| {
        while let Ok(v) = steady.try_recv() {
            got.push(v);
        }
        got.len() as u64 == next
    })
    .await;
    got.sort_unstable();
    assert_eq!(got, (0..next).collect::<Vec<_>>(), "every message once");
    // Only the steady receiver's inbox is left on its node.
    common::eventually(|| nodes[1].__inbox_count() == 1).await;
    shutdown(nodes).await;
}
