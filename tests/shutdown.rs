//! A node that shuts down leaves gracefully: its endpoints are deregistered, what its receivers
//! held goes to receivers on other nodes, and the cluster goes on without it.

mod common;

use common::{cluster, eventually, shutdown, within};

#[actix_rt::test]
async fn shutdown_hands_buffered_messages_to_another_node() {
    let mut nodes = cluster(3).await;
    let leaving = nodes.pop().expect("three nodes");
    // Fifty messages sit in a receiver on the leaving node (sent in-process, so they are in its
    // buffer the moment `send` returns).
    let mut held = leaving.receiver::<u64>("handback").capacity(64).await.expect("rx");
    let tx = leaving.sender::<u64>("handback").await.expect("tx");
    for i in 0..50 {
        tx.send(i).await.expect("send");
    }
    let mut elsewhere = nodes[1].receiver::<u64>("handback").capacity(64).await.expect("rx");
    within("leaving node sees both receivers", tx.wait_for_receivers(2)).await.expect("open");
    drop(tx);

    let gone = leaving.id();
    let addr = leaving.addr();
    within("shutdown", leaving.shutdown()).await.expect("graceful shutdown");
    // Its listener is gone with every other task it started.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still listening after shutdown");
    for i in 0..50 {
        assert_eq!(within("handed-over message", elsewhere.recv()).await, Some(i), "in order");
    }
    // The handle on the node that left ends: what it held is elsewhere now.
    assert_eq!(held.recv().await, None);
    for node in &nodes {
        eventually(|| {
            let view = node.cluster();
            view.members.iter().all(|m| m.id != gone)
                && view
                    .channel("handback")
                    .is_some_and(|c| c.endpoints.values().all(|e| e.node != gone))
        })
        .await;
    }
    // The remaining two still work together.
    let tx = nodes[0].sender::<u64>("handback").await.expect("tx");
    tx.send(7).await.expect("send");
    assert_eq!(within("recv", elsewhere.recv()).await, Some(7));
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_lone_node_keeps_its_messages_for_its_own_receiver() {
    let nodes = cluster(1).await;
    let mut rx = nodes[0].receiver::<u64>("lonely").await.expect("rx");
    let tx = nodes[0].sender::<u64>("lonely").await.expect("tx");
    for i in 0..10 {
        tx.send(i).await.expect("send");
    }
    within("shutdown", nodes[0].shutdown()).await.expect("shutdown");
    // Nowhere to hand them to: the receiver yields them, then ends; the sender is closed.
    for i in 0..10 {
        assert_eq!(rx.recv().await, Some(i));
    }
    assert_eq!(rx.recv().await, None);
    assert!(tx.try_send(11).is_err());
}

/// Messages a receiver took just before its node left are never delivered again: the node tells
/// their sending node what it took, and waits until it has it, before it leaves. (Found by the
/// command's test of `dchan recv --count` under load, about one run in 50: its node left as soon
/// as its last acknowledgement was queued, the sending node saw the leave first, delivered the
/// two printed messages again and, with no receiver left, `dchan send` waited forever. In one
/// process the acknowledgement usually wins the race, so this test guards the path rather than
/// reproducing the race.)
#[actix_rt::test]
async fn what_was_taken_just_before_a_shutdown_is_not_delivered_again() {
    let mut nodes = cluster(3).await;
    // The leader is the first node: the leave goes to it, the acknowledgements to the sender's.
    for round in 0..5 {
        let leaving = nodes.pop().expect("a node to leave");
        let channel = format!("taken-{round}");
        let tx = nodes[1].sender::<u64>(&channel).await.expect("tx");
        let mut rx = leaving.receiver::<u64>(&channel).capacity(1024).await.expect("rx");
        within("receiver visible", tx.wait_for_receivers(1)).await.expect("open");
        // Fewer than half the capacity: the "taken" count is told lazily, not at once.
        for i in 0..100 {
            tx.send(i).await.expect("send");
        }
        for i in 0..100 {
            assert_eq!(within("recv", rx.recv()).await, Some(i));
        }
        drop(rx);
        within("shutdown", leaving.shutdown()).await.expect("graceful shutdown");
        // Nothing is in flight or on its way elsewhere: had the sending node not been told, it
        // would deliver the 100 again and, with no receiver left, wait for one.
        within("every message taken", tx.wait_taken()).await;
        let stats = nodes[1].stats();
        let ch = stats.channels.iter().find(|c| c.name == channel).expect("the channel");
        assert_eq!(ch.in_flight, 0, "{ch:?}");
        nodes.push(
            dchan::Node::builder()
                .listen("127.0.0.1:0")
                .join([nodes[0].addr().to_string()])
                .start()
                .await
                .expect("a node joins in its place"),
        );
    }
    shutdown(nodes).await;
}

/// A receiving node that shuts down while it holds messages of another node's sender (a rolling
/// restart of a consumer): each message is taken exactly once, by the old receiver or by the one
/// that comes after it, never by both.
#[actix_rt::test]
async fn a_receiving_node_that_shuts_down_duplicates_nothing() {
    let mut nodes = cluster(3).await;
    let leaving = nodes.remove(1);
    let tx = nodes[0].sender::<u64>("rolling").await.expect("tx");
    let mut old = leaving.receiver::<u64>("rolling").capacity(64).await.expect("rx");
    within("receiver known", tx.wait_for_receivers(1)).await.expect("open");
    for i in 0..50 {
        within("send", tx.send(i)).await.expect("send");
    }
    for i in 0..10 {
        assert_eq!(within("recv", old.recv()).await, Some(i));
    }
    within("shutdown", leaving.shutdown()).await.expect("graceful shutdown");
    let mut taken: Vec<u64> = (0..10).collect();
    while let Some(i) = within("the old receiver ends", old.recv()).await {
        taken.push(i);
    }
    let mut new = nodes[1].receiver::<u64>("rolling").capacity(64).await.expect("rx");
    while taken.len() < 50 {
        taken.push(within("the rest, elsewhere", new.recv()).await.expect("open"));
    }
    // Every message is taken now: had the sending node still counted one as out, it would
    // deliver it again (to `new`) before `wait_taken` returned.
    within("every message taken", tx.wait_taken()).await;
    assert!(new.try_recv().is_err(), "a message delivered twice");
    assert_eq!(taken, (0..50).collect::<Vec<_>>(), "each once, in order");
    drop((old, new));
    shutdown(nodes).await;
}

/// A node that shuts down hands its own messages to a receiver elsewhere that has no room for a
/// while (its application slow: busy for 3.5 s): the credit that receiver grants it once room
/// frees reaches it, however long after the leave, within the hand-over's 5 s. (The link to a
/// node that left was dropped after 3 s, and with it that credit: the hand-over timed out and
/// its messages were lost.)
#[actix_rt::test]
async fn a_hand_over_to_a_slow_receiver_loses_nothing() {
    let mut nodes = cluster(3).await;
    let leaving = nodes.pop().expect("three nodes");
    // The receiver elsewhere has room for one message, and holds one.
    let mut slow = nodes[1].receiver::<u64>("slow").capacity(1).await.expect("rx");
    let filler = nodes[1].sender::<u64>("slow").await.expect("tx");
    within("fill the slow receiver", filler.send(100)).await.expect("send");
    // Ten messages sit in a receiver on the leaving node (the other is full).
    let held = leaving.receiver::<u64>("slow").capacity(16).await.expect("rx");
    let tx = leaving.sender::<u64>("slow").await.expect("tx");
    for i in 0..10 {
        within("send", tx.send(i)).await.expect("send");
    }
    drop(tx);
    within("leaving node sees both receivers", async {
        let tx = leaving.sender::<u64>("slow").await.expect("tx");
        tx.wait_for_receivers(2).await
    })
    .await
    .expect("open");
    let consumer = async {
        // Busy for longer than the link to a node that left was kept (3 s), well within the
        // hand-over's 5 s.
        tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
        assert_eq!(within("the filler", slow.recv()).await, Some(100));
        let mut got = Vec::new();
        while got.len() < 10 {
            got.push(within("a handed-over message", slow.recv()).await.expect("open"));
        }
        got
    };
    let (left, got) = tokio::join!(leaving.shutdown(), consumer);
    left.expect("graceful shutdown");
    assert_eq!(got, (0..10).collect::<Vec<_>>(), "each handed-over message once, in order");
    drop((held, filler));
    shutdown(nodes).await;
}

/// Two nodes shut down (a rolling scale-down): one sends, the other holds what it was sent in
/// a receiver its application never reads, and a third node has the other receiver. At once,
/// whichever leave the cluster commits first, the leader holding or not, or one after the
/// other, each message the leaving sender sent is taken exactly once, on a node that stays. (The receiving node gave the
/// messages of a sender that had left before it back to that sender, gone by then: lost.)
#[actix_rt::test]
async fn two_nodes_that_shut_down_lose_nothing_and_duplicate_nothing() {
    let orders = [
        "sender first, at once",
        "holder first, at once",
        "sender, then holder",
        "the leader holds, at once",
    ];
    for order in orders {
        let mut nodes = cluster(4).await;
        // (A leader that leaves steps down and is removed again by the next one, after the
        // other's leave perhaps.)
        let leader = nodes[0].cluster().leader;
        let at = match order {
            "the leader holds, at once" => {
                nodes.iter().position(|n| Some(n.id()) == leader).expect("a leader among them")
            }
            _ => nodes.iter().rposition(|n| Some(n.id()) != leader).expect("a follower"),
        };
        let holding = nodes.remove(at);
        let at = nodes.iter().rposition(|n| Some(n.id()) != leader).expect("a follower");
        let sending = nodes.remove(at);
        let mut stays = nodes[1].receiver::<u64>("scale").capacity(64).await.expect("rx");
        let mut held = holding.receiver::<u64>("scale").capacity(32).await.expect("rx");
        let tx = sending.sender::<u64>("scale").await.expect("tx");
        within("both receivers known", tx.wait_for_receivers(2)).await.expect("open");
        for i in 0..40 {
            within("send", tx.send(i)).await.expect("send");
        }
        let timed = |node: dchan::Node| async move {
            let started = std::time::Instant::now();
            (node.shutdown().await, started.elapsed())
        };
        let ((a, took_a), (b, took_b)) = match order {
            "sender first, at once" => tokio::join!(timed(sending), timed(holding)),
            "holder first, at once" | "the leader holds, at once" => {
                let (b, a) = tokio::join!(timed(holding), timed(sending));
                (a, b)
            }
            _ => {
                let a = within("the sender leaves", timed(sending)).await;
                (a, within("the holder leaves", timed(holding)).await)
            }
        };
        a.expect("the sending node leaves");
        b.expect("the holding node leaves");
        // Neither waits for the other, stopped first, to confirm what it was sent until the
        // hand-over's timeout (5 s): a node that refuses connections has stopped.
        for took in [took_a, took_b] {
            assert!(took < std::time::Duration::from_secs(3), "a leave took {took:?} ({order})");
        }
        // The holding node's receiver yields nothing: what it held is elsewhere.
        assert_eq!(within("the held receiver ends", held.recv()).await, None, "{order}");
        let mut got = Vec::new();
        while got.len() < 40 {
            let what = format!("every message, on the node that stays ({order})");
            got.push(within(&what, stays.recv()).await.expect("open"));
        }
        // Both hand-overs are done and flushed: a second copy would be here by now.
        assert!(stays.try_recv().is_err(), "a message taken twice ({order})");
        got.sort_unstable();
        assert_eq!(got, (0..40).collect::<Vec<_>>(), "each once ({order})");
        drop((stays, tx));
        shutdown(nodes).await;
    }
}

/// A shutdown whose future is dropped before it is done (a caller's timeout, a `select!`) still
/// completes: the node hands over, leaves the cluster and stops; a later call waits for that,
/// and so does a call made while one runs. (Dropped, the leave stopped where it was: the node
/// refused every send, kept its tasks running, and a second call returned at once with the
/// node neither left nor stopped.)
#[actix_rt::test]
async fn a_shutdown_given_up_on_still_completes() {
    let nodes = cluster(3).await;
    let leaving = &nodes[2];
    let id = leaving.id();
    let mut first = Box::pin(leaving.shutdown());
    assert!(futures::poll!(&mut first).is_pending(), "a leave takes a round trip at least");
    drop(first);
    within("the second call", leaving.shutdown()).await.expect("left");
    assert_eq!(leaving.ready(), Err("the node has stopped".to_owned()), "stopped when it returns");
    eventually(|| nodes[..2].iter().all(|n| n.cluster().members.iter().all(|m| m.id != id))).await;
    shutdown(nodes).await;
}
