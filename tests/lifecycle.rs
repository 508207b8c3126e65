//! Lifecycle: a registration whose future is dropped leaves nothing registered, and work a call
//! leaves behind (a close's fence) runs on the node's own runtime, not the caller's.

mod common;

use std::future::IntoFuture;

use common::{cluster, eventually, shutdown, within};

#[actix_rt::test]
async fn a_dropped_registration_leaves_no_receiver_behind() {
    let nodes = cluster(2).await;
    let leader = nodes[0].cluster().leader.expect("leader");
    let follower = nodes.iter().find(|n| n.id() != leader).expect("a follower");
    let before = follower.__last_log_index().expect("a log");
    // Poll the registration once (its write is on its way to the leader), then drop it.
    {
        let mut registering = follower.receiver::<u64>("abandoned").capacity(4).into_future();
        assert!(futures::poll!(&mut registering).is_pending(), "a registration needs Raft");
    }
    // The write still commits, and so does its withdrawal (in either order): two entries, and no
    // receiver nobody owns.
    for node in &nodes {
        eventually(|| {
            node.__last_log_index().is_some_and(|i| i >= before + 2)
                && node
                    .cluster()
                    .channel("abandoned")
                    .is_none_or(|c| c.receivers().next().is_none())
        })
        .await;
    }
    let tx = nodes[0].sender::<u64>("abandoned").await.expect("tx");
    // (This node's router catches up with its registry a moment after `cluster()` shows it:
    // under load, a try_send at once still found the dropped receiver, full.)
    eventually(|| tx.receiver_count() == 0).await;
    let r = tx.try_send(1);
    assert!(
        matches!(r, Err(dchan::TrySendError::NoReceivers(1))),
        "{r:?} receivers {}",
        tx.receiver_count()
    );
    drop(tx);
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn close_from_a_short_lived_runtime_still_fences_other_nodes() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<u64>("fenced").await.expect("rx");
    let tx = nodes[0].sender::<u64>("fenced").await.expect("tx");
    within("receiver known", tx.wait_for_receivers(1)).await.expect("open");
    tx.send(1).await.expect("send");
    // Close from a thread with a runtime of its own, gone as soon as close returns.
    let closer = tx.clone();
    let closed = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(closer.close())
    });
    let closed = within("close", async {
        loop {
            if closed.is_finished() {
                return closed.join().expect("closing thread");
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    closed.expect("close commits");
    // The receiver on the other node ends only once the closing node's fence arrives.
    assert_eq!(within("recv", rx.recv()).await, Some(1));
    assert_eq!(within("end of channel", rx.recv()).await, None);
    drop(tx);
    shutdown(nodes).await;
}
