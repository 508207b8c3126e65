//! Bounded memory: a receiver that does not read holds its senders back; nothing is dropped.

mod common;

use common::{cluster, shutdown, within};
use dchan::TrySendError;

/// Fill with `try_send` until `Full`, returning how many got in.
fn fill(tx: &dchan::Sender<u64>, from: u64) -> u64 {
    let mut n = 0;
    loop {
        match tx.try_send(from + n) {
            Ok(()) => n += 1,
            Err(TrySendError::Full(v)) => {
                assert_eq!(v, from + n, "Full hands the message back");
                return n;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(n <= 1_000, "try_send never reported Full: memory is not bounded");
    }
}

#[actix_rt::test]
async fn a_full_local_receiver_makes_try_send_full() {
    let nodes = cluster(1).await;
    let mut rx = nodes[0].receiver::<u64>("bp-local").capacity(8).await.expect("rx");
    let tx = nodes[0].sender::<u64>("bp-local").await.expect("tx");
    assert_eq!(fill(&tx, 0), 8, "a local receiver holds exactly its capacity");
    // One taken, one more fits.
    assert_eq!(rx.recv().await, Some(0));
    assert_eq!(fill(&tx, 8), 1);
    for i in 1..9 {
        assert_eq!(rx.try_recv(), Ok(i));
    }
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_full_remote_receiver_holds_senders_back_and_loses_nothing() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<u64>("bp-remote").capacity(8).await.expect("rx");
    let tx = nodes[0].sender::<u64>("bp-remote").await.expect("tx");
    common::within("receiver known", tx.wait_for_receivers(1)).await.expect("open");

    // Capacity 8 means 8 sent and not received, whatever is in flight: the receiver's credit
    // reaches the sending node a moment after the registration, then exactly 8 get in.
    let mut sent = 0;
    common::eventually(|| {
        sent += fill(&tx, sent);
        assert!(sent <= 8, "{sent} accepted for a receiver of capacity 8");
        sent == 8
    })
    .await;
    assert!(matches!(tx.try_send(99), Err(TrySendError::Full(99))));

    // A send that has to wait completes once the receiver reads, and not before.
    let waiting = {
        let tx = tx.clone();
        actix_rt::spawn(async move { tx.send(8).await })
    };
    let timed_out = tx.send_timeout(100, std::time::Duration::from_millis(300)).await;
    assert!(
        matches!(timed_out, Err(dchan::SendTimeoutError::Timeout(100))),
        "a send got in although the receiver took nothing: {timed_out:?}"
    );
    for i in 0..=8 {
        assert_eq!(within("recv", rx.recv()).await, Some(i), "in order, nothing lost");
    }
    within("waiting send", waiting).await.expect("task").expect("send");
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn send_timeout_hands_the_message_back_when_everything_is_full() {
    let nodes = cluster(1).await;
    let _rx = nodes[0].receiver::<u64>("bp-timeout").capacity(1).await.expect("rx");
    let tx = nodes[0].sender::<u64>("bp-timeout").await.expect("tx");
    tx.send(1).await.expect("first fits");
    let err = tx.send_timeout(2, std::time::Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(err, dchan::SendTimeoutError::Timeout(2)));
    shutdown(nodes).await;
}

/// A small receiver shared by a busy sender on its own node and a sender on another: the other
/// node's messages get in while the local sender keeps it full, they do not wait for it to stop.
#[actix_rt::test]
async fn a_busy_local_sender_does_not_starve_another_node() {
    const LOCAL: u64 = 5_000;
    const REMOTE: u64 = 20;
    let nodes = cluster(2).await;
    let mut rx = nodes[0].receiver::<(bool, u64)>("fair").capacity(1).await.expect("rx");
    let local = nodes[0].sender::<(bool, u64)>("fair").await.expect("local tx");
    let remote = nodes[1].sender::<(bool, u64)>("fair").await.expect("remote tx");
    within("receiver known", remote.wait_for_receivers(1)).await.expect("open");
    let busy = actix_rt::spawn(async move {
        for i in 0..LOCAL {
            local.send((false, i)).await.expect("local send");
        }
    });
    let other = actix_rt::spawn(async move {
        for i in 0..REMOTE {
            remote.send((true, i)).await.expect("remote send");
        }
    });
    // Bounded by the count: every message is taken once.
    let (mut locals, mut remotes, mut locals_when_remotes_done) = (0, 0, None);
    while locals < LOCAL || remotes < REMOTE {
        let (from_remote, i) = within("recv", rx.recv()).await.expect("open channel");
        if from_remote {
            assert_eq!(i, remotes, "in order");
            remotes += 1;
            if remotes == REMOTE {
                locals_when_remotes_done = Some(locals);
            }
        } else {
            assert_eq!(i, locals, "in order");
            locals += 1;
        }
    }
    let locals_then = locals_when_remotes_done.expect("every remote message came");
    // They take turns (19 local messages by the 20th remote one, run after run); a fifth of
    // the local sender's messages is far more than turns need, far less than waiting for it.
    assert!(
        locals_then <= LOCAL / 5,
        "the other node's {REMOTE} messages got in only after {locals_then} of the busy local \
         sender's {LOCAL}"
    );
    within("senders", busy).await.expect("local task");
    within("senders", other).await.expect("remote task");
    shutdown(nodes).await;
}
