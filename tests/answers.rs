//! Reply handles (issue 19, first part): `Node::oneshot` gives a handle that travels inside a
//! message and answers once, straight to the asking node, without a registry write.

mod common;

use common::{cluster, receivers_visible, shutdown, within};
use dchan::oneshot::RecvError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Ask {
    n: u64,
    reply: dchan::oneshot::Sender<u64>,
}

#[actix_rt::test]
async fn a_handle_answered_on_its_own_node() {
    let nodes = cluster(1).await;
    let (reply, answer) = nodes[0].oneshot::<String>();
    reply.send("here".to_owned()).expect("answered");
    assert_eq!(within("answer", answer).await, Ok("here".to_owned()));
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn requests_are_answered_across_nodes_without_a_raft_write() {
    const N: u64 = 1_000;
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<Ask>("questions").await.expect("rx");
    let tx = nodes[0].sender::<Ask>("questions").await.expect("tx");
    receivers_visible(&nodes, "questions", 1).await;
    let entries = nodes[0].__entries();
    let log = nodes[0].__last_log_index();
    let answering = actix_rt::spawn(async move {
        for _ in 0..N {
            let ask = rx.recv().await.expect("open");
            ask.reply.send(ask.n * 2).expect("answered");
        }
        rx
    });
    for n in 0..N {
        let (reply, answer) = nodes[0].oneshot::<u64>();
        within("send", tx.send(Ask { n, reply })).await.expect("send");
        assert_eq!(within("answer", answer).await, Ok(n * 2));
    }
    let _rx = within("answering", answering).await.expect("answering task");
    assert_eq!(nodes[0].__last_log_index(), log, "a handle commits nothing");
    assert_eq!(nodes[0].__entries(), entries, "an answered handle leaves nothing behind");
    drop(tx);
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_handle_passed_on_is_answered_from_two_hops_away() {
    let nodes = cluster(3).await;
    let mut first = nodes[1].receiver::<Ask>("first").await.expect("rx");
    let mut second = nodes[2].receiver::<Ask>("second").await.expect("rx");
    let to_first = nodes[0].sender::<Ask>("first").await.expect("tx");
    let to_second = nodes[1].sender::<Ask>("second").await.expect("tx");
    receivers_visible(&nodes, "first", 1).await;
    receivers_visible(&nodes, "second", 1).await;
    let (reply, answer) = nodes[0].oneshot::<u64>();
    within("send", to_first.send(Ask { n: 20, reply })).await.expect("send");
    // Node 1 passes the handle on; node 2 answers.
    let ask = within("first", first.recv()).await.expect("open");
    within("pass on", to_second.send(Ask { n: ask.n + 1, reply: ask.reply })).await.expect("send");
    let ask = within("second", second.recv()).await.expect("open");
    ask.reply.send(ask.n * 2).expect("answered");
    assert_eq!(within("answer", answer).await, Ok(42));
    drop((to_first, to_second));
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_handle_dropped_unanswered_fails_the_asker_at_once() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<Ask>("ignored").await.expect("rx");
    let tx = nodes[0].sender::<Ask>("ignored").await.expect("tx");
    receivers_visible(&nodes, "ignored", 1).await;
    let (reply, answer) = nodes[0].oneshot::<u64>();
    within("send", tx.send(Ask { n: 1, reply })).await.expect("send");
    drop(within("recv", rx.recv()).await.expect("open"));
    assert_eq!(within("answer", answer).await, Err(RecvError::Dropped));
    // And one dropped on the asking node itself.
    let (reply, answer) = nodes[0].oneshot::<u64>();
    drop(reply);
    assert_eq!(within("answer", answer).await, Err(RecvError::Dropped));
    drop(tx);
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_forged_handle_answers_nobody() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<Ask>("forged").await.expect("rx");
    let raw = nodes[0].sender::<dchan::Value>("forged").await.expect("tx");
    let tx = nodes[0].sender::<Ask>("forged").await.expect("tx");
    receivers_visible(&nodes, "forged", 1).await;
    let (reply, answer) = nodes[0].oneshot::<u64>();
    // The real handle's node and id, another token: answering it reaches the asking node and
    // is refused there.
    let (node, id, token): (u64, u64, u64) =
        rmp_serde::from_slice(&rmp_serde::to_vec(&reply).expect("encode")).expect("decode");
    let forged = dchan::Value::Map(vec![
        (dchan::Value::from("n"), dchan::Value::from(666u64)),
        (
            dchan::Value::from("reply"),
            dchan::Value::Array(vec![node.into(), id.into(), token.wrapping_add(1).into()]),
        ),
    ]);
    within("send forged", raw.send(forged)).await.expect("send");
    let ask = within("recv forged", rx.recv()).await.expect("open");
    assert_eq!(ask.n, 666);
    ask.reply.send(666).expect("sent, and refused where it arrives");
    within("send", tx.send(Ask { n: 5, reply })).await.expect("send");
    let ask = within("recv", rx.recv()).await.expect("open");
    ask.reply.send(ask.n).expect("answered");
    assert_eq!(within("answer", answer).await, Ok(5), "the real answer, not the forged one");
    // A handle decoded outside a receiver has no node to answer through: the value comes back.
    let stray: dchan::oneshot::Sender<u64> =
        rmp_serde::from_slice(&rmp_serde::to_vec(&(node, 999u64, 1u64)).expect("encode"))
            .expect("decode");
    assert_eq!(stray.send(3), Err(3));
    drop((tx, raw));
    shutdown(nodes).await;
}
