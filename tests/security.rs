//! Only members get in (promise 10 in the README): every connection starts with a challenge-response
//! on the cluster secret (the cookie), and one that cannot prove it gets one clear refusal and is
//! closed before any Raft or data frame is read. Nodes and raw clients on loopback only.

mod common;

use common::hostile::{frame, hello, prefixed, reason, variant, Client, Read};
use common::{eventually, receivers_visible, within, DEADLINE};
use dchan::{Error, Node};
use rmpv::Value;

async fn node_with(cookie: Option<&str>) -> Node {
    common::tracing();
    let mut b = Node::builder().listen("127.0.0.1:0");
    if let Some(c) = cookie {
        b = b.cookie(c);
    }
    b.bootstrap().start().await.expect("bootstrap")
}

async fn join_with(seed: &Node, cookie: Option<&str>) -> Result<Node, Error> {
    let mut b = Node::builder().listen("127.0.0.1:0").join_timeout(DEADLINE);
    if let Some(c) = cookie {
        b = b.cookie(c);
    }
    b.join([seed.addr()]).start().await
}

#[actix_rt::test]
async fn nodes_that_share_a_cookie_form_a_cluster_and_carry_messages() {
    let a = node_with(Some("s3cret")).await;
    let b = join_with(&a, Some("s3cret")).await.expect("join with the same cookie");
    let nodes = [a, b];
    let mut rx = nodes[1].receiver::<u64>("guarded").await.expect("rx");
    receivers_visible(&nodes, "guarded", 1).await;
    let tx = nodes[0].sender::<u64>("guarded").await.expect("tx");
    for i in 0..100 {
        within("send", tx.send(i)).await.expect("send");
    }
    for i in 0..100 {
        assert_eq!(within("recv", rx.recv()).await, Some(i));
    }
    common::shutdown(nodes.into()).await;
}

#[actix_rt::test]
async fn a_node_with_another_cookie_or_none_is_refused_with_a_clear_error() {
    for (cluster, joiner) in
        [(Some("right"), Some("wrong")), (Some("right"), None), (None, Some("x"))]
    {
        let a = node_with(cluster).await;
        // Refused at the first attempt, not after the join timeout: the error says why.
        match join_with(&a, joiner).await {
            Err(Error::Auth(msg)) => {
                eprintln!("cluster {cluster:?}, joiner {joiner:?}: {msg}");
                assert!(msg.contains("cookie"), "{msg}");
                assert!(msg.contains(&a.addr().to_string()), "says which seed: {msg}");
            }
            Err(e) => panic!("cluster {cluster:?}, joiner {joiner:?}: not an auth error: {e}"),
            Ok(_) => panic!("cluster {cluster:?}, joiner {joiner:?}: let in"),
        }
        assert_eq!(a.cluster().members.len(), 1, "the membership is unchanged");
        within("shutdown", a.shutdown()).await.expect("shutdown");
    }
}

#[actix_rt::test]
async fn a_seed_of_another_cluster_does_not_stop_a_join_through_the_others() {
    let stranger = node_with(Some("other")).await;
    let a = node_with(Some("right")).await;
    let b = Node::builder()
        .listen("127.0.0.1:0")
        .cookie("right")
        .join_timeout(DEADLINE)
        .join([stranger.addr(), a.addr()])
        .start()
        .await
        .expect("joined through the seed of its cluster");
    assert_eq!(b.cluster().members.len(), 2);
    common::shutdown(vec![a, b]).await;
    within("shutdown", stranger.shutdown()).await.expect("shutdown");
}

#[actix_rt::test]
async fn a_node_listening_beyond_loopback_needs_a_cookie_or_insecure() {
    // Refused before binding: nothing listens on the wildcard address.
    match Node::builder().listen("0.0.0.0:0").bootstrap().start().await {
        Err(Error::Config(msg)) => {
            assert!(msg.contains("cookie") && msg.contains("insecure"), "{msg}")
        }
        other => panic!("started without a cookie on 0.0.0.0: {:?}", other.map(|n| n.addr())),
    }
    match Node::builder().listen("127.0.0.1:0").cookie("").bootstrap().start().await {
        Err(Error::Config(msg)) => assert!(msg.contains("empty"), "{msg}"),
        other => panic!("an empty cookie: {:?}", other.map(|n| n.addr())),
    }
    for b in [Node::builder().insecure(), Node::builder().cookie("k")] {
        let node = b.listen("0.0.0.0:0").bootstrap().start().await.expect("start");
        within("shutdown", node.shutdown()).await.expect("shutdown");
    }
}

#[actix_rt::test]
async fn raw_clients_that_do_not_prove_the_secret_are_refused_and_closed() {
    let a = node_with(Some("s3cret")).await;
    let addr = a.addr();

    // A length prefix past the handshake's small frame limit: closed, nothing allocated for it.
    let mut c = Client::connect(addr).await;
    c.write(&(15u32 << 20).to_be_bytes()).await;
    c.write(&[0u8; 4096]).await;
    assert!(c.closed().await, "an oversized first frame");

    // Not a hello: one refusal, then closed.
    let mut c = Client::connect(addr).await;
    c.send(&frame("Want", vec![("to", Value::from(1))])).await;
    match c.read().await {
        Read::Frame(name, f) if name == "Refused" => assert!(reason(&f).contains("hello"), "{f}"),
        other => panic!("{other:?}"),
    }
    assert!(c.closed().await);

    // Garbage.
    let mut c = Client::connect(addr).await;
    c.write(&prefixed(&[0xc1; 64])).await;
    assert!(matches!(c.read().await, Read::Frame(ref n, _) if n == "Refused"));
    assert!(c.closed().await);

    // A hello and a wrong proof (no cookie, then another one).
    for secret in [&b""[..], b"guess"] {
        let mut c = Client::connect(addr).await;
        let refused = c.handshake(42, secret).await.expect_err("let in without the cookie");
        assert!(refused.contains("cookie"), "{refused}");
        assert!(c.closed().await);
    }

    // A hello announcing a frame limit below what a handshake needs: refused.
    let mut c = Client::connect(addr).await;
    let tiny = hello(42, 1, &[1; 32]);
    c.send(&tiny).await;
    assert!(matches!(c.read().await, Read::Frame(ref n, _) if n == "Refused"));
    assert!(c.closed().await);

    // Frame numbers that would run past the largest: the connection closes, the node stays.
    let mut c = Client::connect(addr).await;
    c.handshake(44, b"s3cret").await.expect("welcomed");
    c.send(&frame("Resume", vec![("stream", Value::from(1)), ("from", Value::from(u64::MAX))]))
        .await;
    c.send(&frame("Want", vec![("to", Value::from(1))])).await;
    assert!(c.closed().await, "numbering overflow");

    // A Raft vote straight after a hello, without the proof: refused, not read as a vote.
    let mut c = Client::connect(addr).await;
    c.send(&hello(42, 1 << 20, &[1; 32])).await;
    assert!(matches!(c.read().await, Read::Frame(ref n, _) if n == "Challenge"));
    let pre_vote = variant("PreVote", vec![("last_log", Value::Nil)]);
    c.send(&frame("Request", vec![("id", Value::from(1)), ("body", pre_vote)])).await;
    assert!(matches!(c.read().await, Read::Frame(ref n, _) if n == "Refused"));
    assert!(c.closed().await);

    // With the secret, the same client is let in: the refusals were for the secret.
    let mut c = Client::connect(addr).await;
    c.handshake(42, b"s3cret").await.expect("welcomed with the cookie");
    // After the handshake, frames up to the negotiated maximum (16 MiB): one announced past it
    // closes the connection before anything is allocated for it.
    let mut big = Client::connect(addr).await;
    big.handshake(43, b"s3cret").await.expect("welcomed");
    big.write(&(17u32 << 20).to_be_bytes()).await;
    big.write(&[0u8; 4096]).await;
    assert!(big.closed().await, "an oversized frame after the handshake");

    // The node carried on: a member with the cookie joins and messages flow.
    let b = join_with(&a, Some("s3cret")).await.expect("join");
    let nodes = [a, b];
    eventually(|| nodes[0].cluster().members.len() == 2).await;
    let mut rx = nodes[0].receiver::<u64>("after").await.expect("rx");
    receivers_visible(&nodes, "after", 1).await;
    let tx = nodes[1].sender::<u64>("after").await.expect("tx");
    within("send", tx.send(7)).await.expect("send");
    assert_eq!(within("recv", rx.recv()).await, Some(7));
    drop(c);
    common::shutdown(nodes.into()).await;
}

#[actix_rt::test]
async fn a_connection_that_says_nothing_is_closed_after_the_handshake_timeout() {
    let a = node_with(Some("s3cret")).await;
    let mut c = Client::connect(a.addr()).await;
    // Closed by the node within the deadline (its handshake timeout is 5 s), though this side
    // never writes.
    assert!(c.closed().await);
    within("shutdown", a.shutdown()).await.expect("shutdown");
}

#[actix_rt::test]
async fn channel_names_are_checked_before_anything_is_registered() {
    let a = node_with(None).await;
    for bad in [String::new(), "two words".into(), "line\nbreak".into(), "x".repeat(256)] {
        match a.receiver::<u64>(&bad).await {
            Err(Error::InvalidName(msg)) => assert!(!msg.is_empty()),
            other => panic!("{bad:?}: {:?}", other.map(|r| r.id())),
        }
    }
    assert!(a.cluster().channels.is_empty(), "nothing registered");
    a.receiver::<u64>("orders.eu-west/1").await.expect("a good name");
    within("shutdown", a.shutdown()).await.expect("shutdown");
}

/// Every kind of forged frame, from a client that knows the cookie but is not a member, at a
/// live 3-node cluster while a work queue streams: the stream loses nothing and stays in order,
/// the registry is unchanged, and every forged write or membership change is answered with a
/// refusal. Then connections that send noise, with and without the handshake.
#[actix_rt::test]
async fn a_hostile_client_changes_nothing_and_loses_nothing() {
    use common::hostile::{field, noise, request, value_of};
    const SECRET: &str = "s3cret";
    const N: u64 = 20_000;
    let a = node_with(Some(SECRET)).await;
    let b = join_with(&a, Some(SECRET)).await.expect("join");
    let c = join_with(&a, Some(SECRET)).await.expect("join");
    let nodes = [a, b, c];
    for n in &nodes {
        eventually(|| n.cluster().members.len() == 3).await;
    }
    let mut rx = nodes[2].receiver::<u64>("work").capacity(16).await.expect("rx");
    receivers_visible(&nodes, "work", 1).await;
    let tx = nodes[0].sender::<u64>("work").await.expect("tx");
    let rx_id = rx.id();
    let leader = nodes[0].cluster().leader.expect("a leader");
    // Every node has applied both registrations: the registry the attack must not change.
    let before = nodes[0].cluster();
    for n in &nodes {
        eventually(|| n.cluster().channels == before.channels).await;
    }

    // A baseline of the same stream, without an attack (printed beside the one under attack).
    let stream = |tx: dchan::Sender<u64>, from: u64| {
        actix_rt::spawn(async move {
            for i in from..from + N {
                tx.send(i).await.expect("send");
            }
        })
    };
    let t = std::time::Instant::now();
    let sending = stream(tx.clone(), 0);
    for i in 0..N {
        assert_eq!(within("recv", rx.recv()).await, Some(i));
    }
    sending.await.expect("sender");
    let quiet = t.elapsed();

    let t = std::time::Instant::now();
    let sending = stream(tx.clone(), N);
    let checking = actix_rt::spawn(async move {
        for i in N..2 * N {
            assert_eq!(within("recv", rx.recv()).await, Some(i), "in order, none lost");
        }
        rx
    });
    let mut tried = 0usize;
    // The forged frames, to every node (the receiver's, the sender's, the leader).
    let vote = openraft::raft::VoteRequest::<u64>::new(openraft::Vote::new(1_000, 42), None);
    for node in &nodes {
        let mut h = Client::connect(node.addr()).await;
        h.handshake(42, SECRET.as_bytes()).await.expect("the cookie lets it connect");
        let reliable = vec![
            frame("Resume", vec![("stream", Value::from(7)), ("from", Value::from(0))]),
            frame(
                "Data",
                vec![
                    ("to", Value::from(rx_id)),
                    ("copies", Value::from(true)),
                    ("msgs", Value::Array(vec![Value::Binary(vec![0xcd, 0x01, 0x00]); 64])),
                ],
            ),
            frame(
                "Credit",
                vec![
                    ("to", Value::from(rx_id)),
                    ("taken", Value::from(16)),
                    ("grant", Value::from(1_000)),
                ],
            ),
            frame("Want", vec![("to", Value::from(rx_id))]),
            frame("Reclaim", vec![("to", Value::from(rx_id))]),
            frame("Return", vec![("to", Value::from(rx_id)), ("n", Value::from(1_000))]),
            // "Sends nothing more", twice: it voids only what was granted the peer itself.
            frame("Bye", vec![]),
            frame("Bye", vec![]),
            frame("Fence", vec![("channel", Value::from("work")), ("created", Value::from(1))]),
            frame("Released", vec![("to", Value::from(rx_id))]),
            // Closes of an unnamed channel, for the named receiver and for an unnamed id.
            frame("Shut", vec![("to", Value::from(rx_id)), ("ask", Value::from(false))]),
            frame("Shut", vec![("to", Value::from(rx_id)), ("ask", Value::from(true))]),
            frame("Shut", vec![("to", Value::from(1u64 << 63 | 5)), ("ask", Value::from(false))]),
            frame("Shut", vec![("to", Value::from(1u64 << 63 | 5)), ("ask", Value::from(true))]),
            request(
                1,
                variant(
                    "Write",
                    vec![(
                        "Close",
                        Value::Map(vec![(Value::from("channel"), Value::from("work"))]),
                    )],
                ),
            ),
            request(
                2,
                variant(
                    "Write",
                    vec![(
                        "Deregister",
                        Value::Map(vec![
                            (Value::from("channel"), Value::from("work")),
                            (Value::from("id"), Value::from(rx_id)),
                        ]),
                    )],
                ),
            ),
            request(3, variant("Leave", vec![("node", Value::from(leader))])),
            request(
                4,
                variant(
                    "Join",
                    vec![
                        ("node", Value::from(43)),
                        ("addr", Value::from("127.0.0.1:9")),
                        ("non_voting", Value::from(false)),
                    ],
                ),
            ),
            request(5, Value::Map(vec![(Value::from("Vote"), value_of(&vote))])),
            request(6, variant("PreVote", vec![("last_log", Value::Nil)])),
            request(7, Value::from("Stats")),
            request(
                8,
                variant(
                    "RemoveDeadLetters",
                    vec![
                        ("channel", Value::from("work")),
                        ("seqs", Value::Array(vec![Value::from(0)])),
                    ],
                ),
            ),
        ];
        for f in &reliable {
            assert!(h.send(f).await, "the node keeps reading");
            tried += 1;
        }
        // The writes and membership changes are answered, each with a refusal.
        let mut refused = std::collections::BTreeSet::new();
        for _ in 0..1_000 {
            match h.read().await {
                Read::Frame(name, f) if name == "Response" => {
                    let id = field(&f, "id").as_u64().expect("id");
                    let body = format!("{}", field(&f, "body"));
                    assert!(body.contains("Err"), "request {id} was not refused: {body}");
                    refused.insert(id);
                    if refused.len() == 4 {
                        break;
                    }
                }
                Read::Frame(..) => {}
                Read::Closed => panic!("closed before answering"),
            }
        }
        assert_eq!(refused, (1..=4).collect(), "every write and membership change refused");
    }
    // Noise: with and without the handshake, each on a connection of its own.
    for seed in 0..64u64 {
        let node = &nodes[seed as usize % 3];
        let mut h = Client::connect(node.addr()).await;
        if seed % 2 == 0 {
            h.handshake(42, SECRET.as_bytes()).await.expect("handshake");
        }
        let junk = noise(seed, 64 + (seed as usize * 97) % 4_000);
        let framed = seed % 4 < 2;
        if framed {
            h.send(&junk).await
        } else {
            h.write(&junk).await
        };
        h.write(&[0; 8]).await;
        tried += 1;
        assert!(h.closed().await, "noise {seed} closes the connection");
    }
    sending.await.expect("sender");
    let mut rx = within("every message, once, in order", checking).await.expect("checker");
    let attacked = t.elapsed();
    eprintln!(
        "{tried} hostile inputs; the stream of {N} took {attacked:?} under attack, {quiet:?} without ({:.2}x)",
        attacked.as_secs_f64() / quiet.as_secs_f64()
    );
    assert!(rx.try_recv().is_err(), "nothing forged was delivered");
    // The registry is as it was, on every node.
    for n in &nodes {
        let now = n.cluster();
        assert_eq!(now.members.len(), 3);
        assert_eq!(now.leader, Some(leader), "the leader was not deposed");
        assert_eq!(now.channels, before.channels, "the registry is unchanged");
    }
    common::shutdown(nodes.into()).await;
}
