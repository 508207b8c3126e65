//! The replicated registry: registrations visible everywhere, one type per channel, membership.

mod common;

use common::{cluster, eventually, shutdown};
use dchan::{Error, Role};

#[actix_rt::test]
async fn a_registration_on_one_node_is_visible_in_every_nodes_cluster_view() {
    let nodes = cluster(3).await;
    let rx = nodes[2].receiver::<u8>("seen").await.expect("rx");
    let _tx = nodes[1].sender::<u8>("seen").await.expect("tx");
    for node in &nodes {
        eventually(|| {
            let c = node.cluster();
            let Some(ch) = c.channel("seen") else { return false };
            ch.receivers().any(|e| e.node == nodes[2].id() && e.id == rx.id())
                && ch.senders().any(|e| e.node == nodes[1].id())
        })
        .await;
    }
    let view = nodes[0].cluster();
    assert_eq!(view.channel("seen").map(|c| c.type_name.as_str()), Some("u8"));
    assert!(view.leader.is_some());
    // Dropping the receiver deregisters it everywhere.
    drop(rx);
    for node in &nodes {
        eventually(|| node.cluster().channel("seen").is_some_and(|c| c.receivers().count() == 0))
            .await;
    }
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_channel_keeps_the_type_of_its_first_endpoint() {
    let nodes = cluster(2).await;
    let _rx = nodes[0].receiver::<u64>("typed").await.expect("rx");
    let err = nodes[1].sender::<String>("typed").await.unwrap_err();
    let message = err.to_string();
    match err {
        Error::TypeMismatch { channel, existing, requested } => {
            assert_eq!(channel, "typed");
            assert_eq!(existing, "u64");
            assert_eq!(requested, "alloc::string::String");
        }
        other => panic!("expected TypeMismatch, got {other}"),
    }
    assert!(
        message.contains("typed") && message.contains("u64") && message.contains("String"),
        "the message names the channel and both types: {message}"
    );
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn three_voters_then_learners() {
    let nodes = cluster(4).await;
    for node in &nodes {
        eventually(|| {
            let c = node.cluster();
            c.members.iter().filter(|m| m.role == Role::Voter).count() == 3
                && c.members.iter().filter(|m| m.role == Role::Learner).count() == 1
        })
        .await;
    }
    // A learner can register endpoints too (its writes go to the leader).
    let learner = nodes[3].clone();
    let mut rx = learner.receiver::<u8>("from-learner").await.expect("rx on a learner");
    let tx = nodes[0].sender::<u8>("from-learner").await.expect("tx");
    common::within("receiver known", tx.wait_for_receivers(1)).await.expect("open");
    tx.send(5).await.expect("send");
    assert_eq!(common::within("recv", rx.recv()).await, Some(5));
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_non_voting_node_is_never_promoted() {
    let nodes = cluster(1).await;
    let client = dchan::Node::builder()
        .non_voting()
        .join([nodes[0].addr()])
        .start()
        .await
        .expect("non-voting join");
    // Two voting nodes joining after it are promoted (together: the voters go from one to
    // three) while the non-voting one, which came first and has caught up, stays a learner.
    let voter = dchan::Node::builder().join([nodes[0].addr()]).start().await.expect("join");
    let other = dchan::Node::builder().join([nodes[0].addr()]).start().await.expect("join");
    let role =
        |id| move |n: &dchan::Node| n.cluster().members.iter().find(|m| m.id == id).map(|m| m.role);
    eventually(|| role(voter.id())(&nodes[0]) == Some(Role::Voter)).await;
    eventually(|| role(other.id())(&nodes[0]) == Some(Role::Voter)).await;
    assert_eq!(role(client.id())(&nodes[0]), Some(Role::Learner));
    assert!(matches!(
        dchan::Node::builder().non_voting().bootstrap().start().await,
        Err(Error::Config(_))
    ));
    client.shutdown().await.expect("shutdown");
    voter.shutdown().await.expect("shutdown");
    other.shutdown().await.expect("shutdown");
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_node_needs_bootstrap_or_join() {
    let err = dchan::Node::builder().start().await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = dchan::Node::builder()
        .join(["127.0.0.1:1"])
        .join_timeout(std::time::Duration::from_millis(500))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Join(_)), "{err}");
}

#[actix_rt::test]
async fn a_node_can_join_through_any_member() {
    let nodes = cluster(3).await;
    let leader = nodes[0].cluster().leader.expect("leader");
    let follower = nodes.iter().find(|n| n.id() != leader).expect("a follower");
    let late =
        dchan::Node::builder().join([follower.addr()]).start().await.expect("join via follower");
    for node in nodes.iter().chain([&late]) {
        eventually(|| node.cluster().members.len() == 4).await;
    }
    let role = late.cluster().members.iter().find(|m| m.id == late.id()).map(|m| m.role);
    assert_eq!(role, Some(Role::Learner), "three voters already");
    let mut all = nodes;
    all.push(late);
    shutdown(all).await;
}

/// Leaders leave one after another: each time the rest elect a new one (openraft 0.9 draws each
/// node's election timeout once, so this runs several failovers), registrations go on, and data
/// between the remaining nodes keeps flowing.
#[actix_rt::test]
async fn repeated_leader_departures() {
    let mut nodes = cluster(5).await;
    for round in 0..3u32 {
        let leader = nodes[0].cluster().leader.expect("leader");
        let at = nodes.iter().position(|n| n.id() == leader).expect("leader is a member");
        let gone = nodes.remove(at);
        common::within("leader leaves", gone.shutdown()).await.expect("shutdown");
        for node in &nodes {
            eventually(|| {
                let view = node.cluster();
                view.leader.is_some_and(|l| l != leader) && view.members.len() == nodes.len()
            })
            .await;
        }
        // Registrations need the new leader; then data flows between two of the remaining nodes.
        let channel = format!("after-failover-{round}");
        let mut rx = nodes[0].receiver::<u32>(&channel).await.expect("rx after failover");
        let tx = nodes[nodes.len() - 1].sender::<u32>(&channel).await.expect("tx after failover");
        common::within("wait", tx.wait_for_receivers(1)).await.expect("open");
        tx.send(round).await.expect("send");
        assert_eq!(common::within("recv", rx.recv()).await, Some(round));
    }
    assert_eq!(nodes.len(), 2, "three leaders left, one after the other");
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn nodes_joining_at_once_settle_at_three_voters_and_an_idle_cluster_writes_nothing() {
    common::tracing();
    let first =
        dchan::Node::builder().listen("127.0.0.1:0").bootstrap().start().await.expect("bootstrap");
    let seed = first.addr();
    let joins = (0..4).map(|_| dchan::Node::builder().listen("127.0.0.1:0").join([seed]).start());
    let mut nodes = vec![first];
    for joined in futures::future::join_all(joins).await {
        nodes.push(joined.expect("every node started at once joins"));
    }
    for node in &nodes {
        eventually(|| {
            let view = node.cluster();
            view.members.len() == 5
                && view.members.iter().filter(|m| m.role == Role::Voter).count() == 3
                && view.leader.is_some()
        })
        .await;
    }
    // Settled: from now on heartbeats go out, but no entry is appended.
    let last = || nodes.iter().map(|n| n.__last_log_index()).collect::<Vec<_>>();
    eventually(|| last().windows(2).all(|w| w[0] == w[1])).await;
    let before = last();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await; // ten heartbeats, ten keeper rounds
    assert_eq!(before, last(), "an idle cluster appended to its log");
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_node_joining_after_the_log_was_purged_gets_the_registry_from_a_snapshot() {
    let mut nodes = cluster(2).await;
    // Past the first snapshot (2,000 entries) and the 500 entries kept after it: a new node
    // cannot replay the log from the start and must install a snapshot.
    const N: usize = 2_700;
    let mut receivers = Vec::with_capacity(N);
    for i in 0..N {
        receivers.push(nodes[1].receiver::<u64>(&format!("early-{i}")).await.expect("rx"));
    }
    // A closed channel whose endpoints are all gone is not in the snapshot.
    let gone = receivers.pop().expect("one");
    let tx = nodes[0].sender::<u64>(&format!("early-{}", N - 1)).await.expect("tx");
    tx.close().await.expect("close");
    drop((tx, gone));
    eventually(|| nodes[0].cluster().channel(&format!("early-{}", N - 1)).is_none()).await;
    let late = dchan::Node::builder()
        .listen("127.0.0.1:0")
        .join([nodes[0].addr()])
        .start()
        .await
        .expect("join");
    eventually(|| late.cluster().channels.len() == N - 1).await;
    assert!(late.cluster().channel(&format!("early-{}", N - 1)).is_none());
    // Routes on the new node come from the installed registry.
    let tx = late.sender::<u64>("early-7").await.expect("tx");
    tx.send(7).await.expect("send");
    assert_eq!(common::within("recv", receivers[7].recv()).await, Some(7));
    drop(tx);
    nodes.push(late);
    drop(receivers);
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_closed_channel_leaves_with_its_last_endpoint_and_its_name_names_a_new_one() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<u64>("reused").await.expect("rx");
    let tx = nodes[0].sender::<u64>("reused").await.expect("tx");
    common::within("receiver", tx.wait_for_receivers(1)).await.expect("open");
    tx.send(1).await.expect("send");
    tx.close().await.expect("close");
    assert!(matches!(nodes[0].sender::<u64>("reused").await, Err(Error::ChannelClosed(_))));
    drop(tx);
    assert_eq!(common::within("drain", rx.recv()).await, Some(1));
    assert_eq!(common::within("end", rx.recv()).await, None);
    // Open or closed, a channel goes with its last endpoint, from the registry and from every
    // router table.
    let open = nodes[0].sender::<u64>("open").await.expect("tx");
    drop(open);
    drop(rx);
    for node in &nodes {
        eventually(|| {
            node.cluster().channel("reused").is_none()
                && node.stats().channel("reused").is_none()
                && node.cluster().channel("open").is_none()
                && node.stats().channel("open").is_none()
        })
        .await;
    }
    // Its name names a new channel, of another type, open, on both nodes.
    let mut rx = nodes[0].receiver::<String>("reused").await.expect("a new channel");
    let tx = nodes[1].sender::<String>("reused").await.expect("a new channel");
    common::within("receiver", tx.wait_for_receivers(1)).await.expect("open");
    tx.send("again".into()).await.expect("send");
    assert_eq!(common::within("recv", rx.recv()).await.as_deref(), Some("again"));
    drop((tx, rx));
    shutdown(nodes).await;
}

/// What a builder is given is checked before anything starts: a name that is not one short line,
/// a round trip Raft's timing cannot be a multiple of (it overflowed, a panic), each a clear
/// `Error::Config`.
#[actix_rt::test]
async fn a_builder_refuses_a_bad_name_or_round_trip_with_a_clear_error() {
    let start = |b: dchan::NodeBuilder| async move { b.bootstrap().start().await.unwrap_err() };
    let err = start(dchan::Node::builder().name("x".repeat(200))).await;
    assert!(
        matches!(&err, Error::Config(_)) && err.to_string().contains("at most 128 bytes"),
        "{err}"
    );
    let err = start(dchan::Node::builder().name("two\nlines")).await;
    assert!(matches!(&err, Error::Config(_)), "{err}");
    let err = start(dchan::Node::builder().round_trip(std::time::Duration::MAX)).await;
    assert!(matches!(&err, Error::Config(_)) && err.to_string().contains("at most 60s"), "{err}");
    let node = dchan::Node::builder().name("fine").bootstrap().start().await.expect("a node");
    node.shutdown().await.expect("shutdown");
}
