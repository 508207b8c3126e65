//! Answers: `Node::oneshot` gives a reply handle that travels inside a message and answers
//! once, straight to the asking node, without a registry write; `Sender::request` and its
//! variants ask in one call. The tests at the end run nodes in processes of their own (see
//! `common::procs`) and kill the answering one.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::procs::{self, Proc};
use common::{cluster, receivers_visible, shutdown, within};
use dchan::oneshot::RecvError;
use dchan::RequestError;
use serde::{Deserialize, Serialize};

/// A node process of this file's tests.
#[test]
#[ignore = "a node process started by this file's tests"]
fn child() {
    procs::child_main();
}

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
    let (node, id, token, hop): (u64, u64, u64, u32) =
        rmp_serde::from_slice(&rmp_serde::to_vec(&reply).expect("encode")).expect("decode");
    let forged = dchan::Value::Map(vec![
        (dchan::Value::from("n"), dchan::Value::from(666u64)),
        (
            dchan::Value::from("reply"),
            dchan::Value::Array(vec![
                node.into(),
                id.into(),
                token.wrapping_add(1).into(),
                hop.into(),
            ]),
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
        rmp_serde::from_slice(&rmp_serde::to_vec(&(node, 999u64, 1u64, 1u32)).expect("encode"))
            .expect("decode");
    assert_eq!(stray.send(3), Err(3));
    drop((tx, raw));
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn request_asks_one_receiver_and_request_timeout_gives_up() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<Ask>("double").await.expect("rx");
    let tx = nodes[0].sender::<Ask>("double").await.expect("tx");
    receivers_visible(&nodes, "double", 1).await;
    let answering = actix_rt::spawn(async move {
        let mut n = 0;
        while let Some(ask) = rx.recv().await {
            // Every third request is dropped unanswered.
            if ask.n % 3 != 2 {
                ask.reply.send(ask.n * 2).expect("answered");
            }
            n += 1;
        }
        n
    });
    for n in 0..30 {
        let got = within("request", tx.request(|reply| Ask { n, reply })).await;
        if n % 3 == 2 {
            assert_eq!(got, Err(RequestError::NoAnswer(RecvError::Dropped)));
        } else {
            assert_eq!(got, Ok(n * 2));
        }
        let got = tx.request_timeout(Duration::from_secs(10), |reply| Ask { n, reply }).await;
        assert_eq!(got.ok(), (n % 3 != 2).then_some(n * 2));
    }
    // No receiver: the request waits for one, and gives up at its deadline.
    let lonely = nodes[0].sender::<Ask>("lonely").await.expect("tx");
    let got = lonely.request_timeout(Duration::from_millis(200), |reply| Ask { n: 1, reply });
    assert_eq!(within("lonely", got).await, Err(RequestError::Timeout));
    // A closed channel: not sent.
    within("close", lonely.close()).await.expect("close");
    let got = lonely.request(|reply| Ask { n: 1, reply });
    assert_eq!(within("closed", got).await, Err(RequestError::Closed));
    drop(tx);
    within("close", nodes[0].sender::<Ask>("double").await.expect("tx").close())
        .await
        .expect("close");
    assert_eq!(within("answering", answering).await.expect("task"), 60);
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn request_many_collects_one_answer_from_every_receiver() {
    let nodes = cluster(3).await;
    let mut tasks = Vec::new();
    for node in &nodes {
        let mut rx = node.receiver::<Ask>("census").await.expect("rx");
        let id = node.id();
        tasks.push(actix_rt::spawn(async move {
            while let Some(ask) = rx.recv().await {
                ask.reply.send(id + ask.n).expect("answered");
            }
        }));
    }
    receivers_visible(&nodes, "census", 3).await;
    let tx = nodes[0].sender::<Ask>("census").await.expect("tx");
    // Every receiver answers: back long before the deadline (`within` allows far less).
    let mut got = within(
        "many",
        tx.request_many(10, Duration::from_secs(600), |reply| Ask { n: 1000, reply }),
    )
    .await
    .expect("sent");
    got.sort_unstable();
    let mut want: Vec<u64> = nodes.iter().map(|n| n.id() + 1000).collect();
    want.sort_unstable();
    assert_eq!(got, want);
    // At most `max`: the others are refused.
    let got =
        within("two", tx.request_many(2, Duration::from_secs(600), |reply| Ask { n: 0, reply }))
            .await
            .expect("sent");
    assert_eq!(got.len(), 2);
    tx.close().await.expect("close");
    for task in tasks {
        within("receiver", task).await.expect("task");
    }
    shutdown(nodes).await;
}

/// The outcome of each request `@ ask` printed on `p`, until `@ asked`.
async fn outcomes(p: &mut Proc, count: usize) -> BTreeMap<u64, Result<u64, String>> {
    let mut got = BTreeMap::new();
    loop {
        let line = p.expect_any(&["@ reply ", "@ noreply ", "@ asked "]).await;
        let (outcome, rest) = if let Some(rest) = line.strip_prefix("@ reply ") {
            let (n, v) = rest.split_once(' ').expect("n v");
            (Ok(v.parse().expect("value")), n.to_owned())
        } else if let Some(rest) = line.strip_prefix("@ noreply ") {
            let (n, why) = rest.split_once(' ').expect("n reason");
            (Err(why.to_owned()), n.to_owned())
        } else {
            break;
        };
        let n: u64 = rest.parse().expect("n");
        assert!(got.insert(n, outcome).is_none(), "request {n} has two outcomes");
    }
    assert_eq!(got.len(), count, "every request has an outcome");
    got
}

#[actix_rt::test]
async fn ten_thousand_requests_across_processes_write_nothing_to_the_log() {
    let mut asker = procs::start(&[]).await;
    let mut answerer = procs::start(&[asker.addr]).await;
    answerer.cmd("answer questions 64");
    answerer.expect("@ recv questions").await;
    asker.cmd("asker questions");
    asker.expect("@ asker questions").await;
    // One request first: it waits until the receiver is visible here.
    asker.cmd("ask questions 0 1 20000");
    assert_eq!(outcomes(&mut asker, 1).await[&0], Ok(0));
    // The membership settled first: both members, one voter (a second would make two voters,
    // which the leader's keeper never does on its own: it promotes learners to an odd count).
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while asker.members().await.2.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the answerer never became a member");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(asker.members().await.1, 1, "two nodes keep one voter");
    asker.cmd("logindex");
    let before = asker.expect("@ logindex ").await;
    asker.cmd("ask questions 1 10001 20000");
    let got = outcomes(&mut asker, 10_000).await;
    for (n, outcome) in got {
        assert_eq!(outcome, Ok(2 * n), "request {n}");
    }
    asker.cmd("logindex");
    assert_eq!(asker.expect("@ logindex ").await, before, "requests commit nothing");
    answerer.kill();
    asker.kill();
}

#[actix_rt::test]
async fn requests_in_flight_when_the_answering_process_is_killed_are_answered_or_fail() {
    const N: u64 = 200;
    let mut asker = procs::start(&[]).await;
    let mut holder = procs::start(&[asker.addr]).await;
    let mut answerer = procs::start(&[asker.addr]).await;
    // The holder takes a request every 20 ms and never answers; the other answers at once.
    holder.cmd("hold questions 16 20000");
    holder.expect("@ recv questions").await;
    answerer.cmd("answer questions 16");
    answerer.expect("@ recv questions").await;
    asker.cmd("asker questions");
    asker.expect("@ asker questions").await;
    asker.cmd(&format!("ask questions 0 {N} 60000"));
    for _ in 0..5 {
        holder.expect("@ held questions ").await;
    }
    holder.kill();
    // Answered by the other receiver (redelivered, if the holder had it), or failed because
    // the node holding the handle died: none waits for its deadline.
    let got = outcomes(&mut asker, N as usize).await;
    let mut lost = 0;
    for (n, outcome) in &got {
        match outcome {
            Ok(v) => assert_eq!(*v, 2 * n, "request {n}"),
            Err(why) => {
                assert!(why.contains("left the cluster"), "request {n}: {why}");
                lost += 1;
            }
        }
    }
    assert!(lost >= 1, "the handles the killed process held are lost: {got:?}");
    eprintln!("{N} requests: {} answered, {lost} lost with the killed process", N - lost);
    answerer.kill();
    asker.kill();
}

/// Under manual acknowledgement a request dropped unacknowledged is delivered again: its
/// handle, dropped with it, must not fail the asker (who would then refuse the answer of the
/// receiver that gets it next). Acknowledged and dropped unanswered, it fails the asker at once.
#[actix_rt::test]
async fn a_request_dropped_unacknowledged_is_answered_where_it_is_delivered_again() {
    let nodes = cluster(3).await;
    // The receiver that drops the request is on another node than the asker (the request comes
    // encoded), then on the asker's own node (it comes as a value).
    for (round, holder) in [(0, 1), (1, 0)] {
        let channel = format!("acked-{round}");
        let mut first =
            nodes[holder].receiver::<Ask>(&channel).capacity(4).manual_ack().await.expect("rx");
        let tx = nodes[0].sender::<Ask>(&channel).await.expect("tx");
        receivers_visible(&nodes, &channel, 1).await;
        let (reply, answer) = nodes[0].oneshot::<u64>();
        within("send", tx.send(Ask { n: 3, reply })).await.expect("send");
        drop(within("recv", first.recv()).await.expect("open"));
        let mut second = nodes[2].receiver::<Ask>(&channel).await.expect("rx");
        receivers_visible(&nodes, &channel, 2).await;
        drop(first);
        let ask = within("delivered again", second.recv()).await.expect("open");
        assert_eq!(ask.n, 3);
        ask.reply.send(ask.n * 2).expect("answered");
        assert_eq!(within("answer", answer).await, Ok(6), "round {round}");
        drop((tx, second));
    }
    for holder in [1, 0] {
        let channel = format!("acked-then-dropped-{holder}");
        let mut rx = nodes[holder].receiver::<Ask>(&channel).manual_ack().await.expect("rx");
        let tx = nodes[0].sender::<Ask>(&channel).await.expect("tx");
        receivers_visible(&nodes, &channel, 1).await;
        let (reply, answer) = nodes[0].oneshot::<u64>();
        within("send", tx.send(Ask { n: 1, reply })).await.expect("send");
        drop(within("recv", rx.recv()).await.expect("open").ack());
        assert_eq!(within("answer", answer).await, Err(RecvError::Dropped), "on node {holder}");
    }
    shutdown(nodes).await;
}

/// A request refused by a full untyped receiver (it was encoded for it) and taken by a typed
/// one on the same node (as a value): its handle, dropped unanswered there, still tells the
/// asker.
#[actix_rt::test]
async fn a_request_refused_by_a_full_untyped_receiver_keeps_its_handle_live() {
    let nodes = cluster(1).await;
    let _untyped = nodes[0].receiver::<dchan::Value>("mixed").capacity(1).await.expect("rx");
    let mut typed = nodes[0].receiver::<Ask>("mixed").capacity(16).await.expect("rx");
    let tx = nodes[0].sender::<Ask>("mixed").await.expect("tx");
    let mut dropped = 0;
    for n in 0..20 {
        let (reply, answer) = nodes[0].oneshot::<u64>();
        within("send", tx.send(Ask { n, reply })).await.expect("send");
        // Where it went: the typed receiver, or (while it had room) the untyped one.
        if let Ok(ask) = typed.try_recv() {
            drop(ask);
            assert_eq!(within("answer", answer).await, Err(RecvError::Dropped), "request {n}");
            dropped += 1;
        }
    }
    assert!(dropped >= 19, "the untyped receiver holds one request at most: {dropped}");
    drop(tx);
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn across_processes_a_handle_passed_on_is_answered_two_hops_away_and_one_dropped_fails_at_once(
) {
    const N: u64 = 100;
    let mut asker = procs::start(&[]).await;
    let mut relay = procs::start(&[asker.addr]).await;
    let mut answerer = procs::start(&[asker.addr]).await;
    answerer.cmd("answer second 16");
    answerer.expect("@ recv second").await;
    relay.cmd("relay first second 16");
    relay.expect("@ recv first").await;
    asker.cmd("asker first");
    asker.expect("@ asker first").await;
    asker.cmd(&format!("ask first 0 {N} 60000"));
    // The relay adds one; the answerer doubles: answered by the third process, straight back.
    for (n, outcome) in outcomes(&mut asker, N as usize).await {
        assert_eq!(outcome, Ok(2 * (n + 1)), "request {n}");
    }
    // Dropped unanswered in another process: each asker hears it at once, long before its 60 s.
    answerer.cmd("drop ignored 16");
    answerer.expect("@ recv ignored").await;
    asker.cmd("asker ignored");
    asker.expect("@ asker ignored").await;
    asker.cmd("ask ignored 0 10 60000");
    for (n, outcome) in outcomes(&mut asker, 10).await {
        let why = outcome.expect_err("dropped");
        assert!(why.contains("dropped without an answer"), "request {n}: {why}");
    }
    relay.kill();
    answerer.kill();
    asker.kill();
}

#[actix_rt::test]
async fn an_asker_is_told_when_its_own_node_stops() {
    let nodes = cluster(1).await;
    let node = nodes[0].clone();
    // Held by nobody who will answer: the node stops under it.
    let (reply, answer) = node.oneshot::<u64>();
    within("shutdown", node.shutdown()).await.expect("shutdown");
    assert_eq!(within("answer", answer).await, Err(RecvError::Stopped));
    drop(reply);
    // Made after the stop: told at once.
    let (_reply, answer) = node.oneshot::<u64>();
    assert_eq!(within("answer", answer).await, Err(RecvError::Stopped));
}

#[derive(Debug, Serialize, Deserialize)]
struct MaybeAsk {
    n: u64,
    reply: Option<dchan::oneshot::Sender<u64>>,
}

/// A handle taken out of a delivery and dropped before the delivery is acknowledged tells its
/// asker when it is (the delivery is not delivered again then).
#[actix_rt::test]
async fn a_handle_dropped_before_its_delivery_is_acknowledged_tells_once_it_is() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<MaybeAsk>("taken-out").manual_ack().await.expect("rx");
    let tx = nodes[0].sender::<MaybeAsk>("taken-out").await.expect("tx");
    receivers_visible(&nodes, "taken-out", 1).await;
    let (reply, answer) = nodes[0].oneshot::<u64>();
    within("send", tx.send(MaybeAsk { n: 1, reply: Some(reply) })).await.expect("send");
    let mut delivery = within("recv", rx.recv()).await.expect("open");
    drop(delivery.reply.take());
    delivery.ack();
    assert_eq!(within("answer", answer).await, Err(RecvError::Dropped));
    drop(tx);
    shutdown(nodes).await;
}

/// A request that becomes a dead letter after its handle was decoded (a later field does not
/// fit) is not delivered again: its asker is told.
#[actix_rt::test]
async fn a_request_that_is_a_dead_letter_tells_its_asker() {
    let nodes = cluster(2).await;
    for manual in [false, true] {
        let channel = format!("misfit-{manual}");
        let mut plain = None;
        let mut acked = None;
        if manual {
            acked = Some(nodes[1].receiver::<Ask>(&channel).manual_ack().await.expect("rx"));
        } else {
            plain = Some(nodes[1].receiver::<Ask>(&channel).await.expect("rx"));
        }
        let raw = nodes[0].sender::<dchan::Value>(&channel).await.expect("tx");
        receivers_visible(&nodes, &channel, 1).await;
        let (reply, answer) = nodes[0].oneshot::<u64>();
        // The handle first, then a field that is not a number.
        let misfit = dchan::Value::Map(vec![
            (dchan::Value::from("reply"), dchan::rmpv::ext::to_value(&reply).expect("encodes")),
            (dchan::Value::from("n"), dchan::Value::from("not a number")),
        ]);
        within("send", raw.send(misfit)).await.expect("send");
        within("close", raw.close()).await.expect("close");
        match (plain.as_mut(), acked.as_mut()) {
            (Some(rx), _) => assert!(within("recv", rx.recv()).await.is_none()),
            (_, Some(rx)) => assert!(within("recv", rx.recv()).await.is_none()),
            _ => unreachable!(),
        }
        assert_eq!(within("answer", answer).await, Err(RecvError::Dropped), "manual {manual}");
    }
    shutdown(nodes).await;
}

/// An answer too large for a frame comes back to its `send`, and the asker is told the handle
/// is gone rather than wait.
#[actix_rt::test]
async fn an_answer_too_large_for_a_frame_fails_the_asker_at_once() {
    let a = dchan::Node::builder().max_frame_size(64 * 1024).bootstrap().start().await.expect("a");
    let b =
        dchan::Node::builder().max_frame_size(64 * 1024).join([a.addr()]).start().await.expect("b");
    let mut rx = b.receiver::<BigAsk>("big").await.expect("rx");
    let tx = a.sender::<BigAsk>("big").await.expect("tx");
    receivers_visible(&[a.clone(), b.clone()], "big", 1).await;
    let (reply, answer) = a.oneshot::<Vec<u8>>();
    within("send", tx.send(BigAsk { reply })).await.expect("send");
    let ask = within("recv", rx.recv()).await.expect("open");
    let back = ask.reply.send(vec![7; 100 * 1024]).expect_err("too large for a frame");
    assert_eq!(back.len(), 100 * 1024);
    assert_eq!(within("answer", answer).await, Err(RecvError::Dropped));
    drop(tx);
    shutdown(vec![a, b]).await;
}

#[derive(Debug, Serialize, Deserialize)]
struct BigAsk {
    reply: dchan::oneshot::Sender<Vec<u8>>,
}
