//! A message's trace context goes with it (cargo feature `opentelemetry`): a message sent
//! inside a traced span gets a `send` span, child of that one, and its receiving node opens a
//! `receive` span, child of the `send`, even across processes and after the message was
//! delivered again to another receiver because the first one's process was killed. Spans are
//! exported to an in-memory exporter in each process (`common::traced`) and compared by id.

mod common;

use std::collections::{BTreeSet, HashSet};

use common::traced::{ids, install, span, spans};
use common::{cluster, procs, receivers_visible, shutdown, within};
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::SpanData;
use tracing::Instrument;

#[test]
#[ignore = "a child process of the tests below"]
fn child() {
    install();
    procs::child_main();
}

/// Whether `s` is dchan's `name` span (`send` or `receive`) of channel `channel`, named and
/// described as OpenTelemetry's messaging conventions say.
fn of(s: &SpanData, name: &str, channel: &str) -> bool {
    let attr =
        |k: &str| s.attributes.iter().find(|kv| kv.key.as_str() == k).map(|kv| kv.value.as_str());
    let kind = if name == "send" { SpanKind::Producer } else { SpanKind::Consumer };
    s.name == format!("{name} {channel}")
        && s.span_kind == kind
        && attr("messaging.system").as_deref() == Some("dchan")
        && attr("messaging.destination.name").as_deref() == Some(channel)
        && attr("messaging.operation.type").as_deref() == Some(name)
}

/// The `send` spans of `channel` ended in this process under `parent`.
fn sends(channel: &str, parent: SpanId) -> HashSet<SpanId> {
    spans()
        .iter()
        .filter(|s| of(s, "send", channel) && s.parent_span_id == parent)
        .map(|s| s.span_context.span_id())
        .collect()
}

#[actix_rt::test]
async fn a_message_sent_in_a_traced_span_is_taken_in_its_child_on_another_node() {
    const QUEUE: &str = "traced-queue";
    const CAST: &str = "traced-cast";
    const FEED: &str = "traced-feed";
    install();
    let nodes = cluster(3).await;
    let mut rx = nodes[1].receiver::<u64>(QUEUE).await.expect("rx");
    receivers_visible(&nodes, QUEUE, 1).await;
    let tx = nodes[0].sender::<u64>(QUEUE).await.expect("tx");

    let produce = tracing::info_span!("produce");
    let (trace, produce_id) = ids(&produce);
    assert_ne!(trace, TraceId::INVALID, "the test's spans are traced");
    async {
        for i in 0..3 {
            tx.send(i).await.expect("send");
        }
    }
    .instrument(produce.clone())
    .await;
    // Outside any span: no context travels.
    tx.send(3).await.expect("send");

    let mut parents = HashSet::new();
    for i in 0..3 {
        let (v, received) = within("recv", rx.recv_traced()).await.expect("open");
        assert_eq!(v, i);
        let (t, id) = ids(&received);
        assert_eq!(t, trace, "message {i} is in the trace it was sent in");
        let processing = received.in_scope(|| tracing::info_span!("process"));
        let (_, process_id) = ids(&processing);
        drop(processing);
        drop(received);
        let received = span(id).expect("the receive span ended");
        assert!(of(&received, "receive", QUEUE), "{received:?}");
        assert!(received.parent_span_is_remote, "its parent is on another node");
        parents.insert(received.parent_span_id);
        assert_eq!(span(process_id).expect("ended").parent_span_id, id, "processed in it");
    }
    assert_eq!(parents, sends(QUEUE, produce_id), "each received in the child of its own send");
    assert_eq!(parents.len(), 3);
    let (v, received) = within("recv", rx.recv_traced()).await.expect("open");
    assert_eq!(v, 3);
    assert!(received.is_none(), "sent outside any span: no receive span");

    // A plain `recv` opens and closes the receive span all the same.
    tx.send(4).instrument(produce.clone()).await.expect("send");
    assert_eq!(within("recv", rx.recv()).await, Some(4));
    let receives = |channel: &str| {
        spans().into_iter().filter(|s| of(s, "receive", channel)).collect::<Vec<_>>()
    };
    assert_eq!(receives(QUEUE).len(), 4);

    // A broadcast is encoded once: every copy carries the one send, to every node, and a
    // delivery acknowledged by hand has its span too.
    let mut plain = nodes[1].receiver::<u64>(CAST).await.expect("rx");
    let mut acked = nodes[2].receiver::<u64>(CAST).manual_ack().await.expect("rx");
    receivers_visible(&nodes, CAST, 2).await;
    let cast = nodes[0].sender::<u64>(CAST).await.expect("tx");
    let reached = cast.broadcast(9).instrument(produce.clone()).await.expect("broadcast");
    assert_eq!(reached, 2);
    let (v, one) = within("recv", plain.recv_traced()).await.expect("open");
    assert_eq!(v, 9);
    let delivery = within("recv", acked.recv()).await.expect("open");
    let (_, one_id) = ids(&one);
    let (two_trace, two_id) = ids(delivery.span());
    assert_eq!(two_trace, trace);
    drop(one);
    assert_eq!(delivery.ack(), 9);
    let send = sends(CAST, produce_id);
    assert_eq!(send.len(), 1, "one send span for the broadcast");
    for id in [one_id, two_id] {
        assert_eq!(Some(span(id).expect("ended").parent_span_id), send.iter().next().copied());
    }

    // An unnamed channel's sender, taken to another node in a message: its spans are named for
    // what it is, not for its id (one name per request would swamp a tracing backend).
    let (results, mut got) = nodes[1].channel::<u64>(4);
    let mut feed = nodes[0].receiver::<dchan::Sender<u64>>(FEED).await.expect("rx");
    receivers_visible(&nodes, FEED, 1).await;
    let feeding = nodes[1].sender::<dchan::Sender<u64>>(FEED).await.expect("tx");
    feeding.send(results).await.expect("send");
    let results = within("recv", feed.recv()).await.expect("open");
    results.send(5).instrument(produce.clone()).await.expect("send");
    let (v, received) = within("recv", got.recv_traced()).await.expect("open");
    assert_eq!(v, 5);
    let (t, id) = ids(&received);
    assert_eq!(t, trace);
    drop(received);
    let received = span(id).expect("ended");
    assert!(of(&received, "receive", "(unnamed)"), "{received:?}");
    assert_eq!(sends("(unnamed)", produce_id), HashSet::from([received.parent_span_id]));
    shutdown(nodes).await;
}

/// Across processes: the messages go to a receiving process that holds them unacknowledged
/// and is killed; the node that sent them delivers them again to a receiver in another
/// process, whose `receive` spans are still children of the original `send` spans here.
#[actix_rt::test]
async fn the_trace_goes_across_processes_and_survives_redelivery() {
    const CHANNEL: &str = "traced-jobs";
    const N: u64 = 10;
    install();
    // (Three voters here: the process killed is a learner, and the cluster keeps its quorum.)
    let nodes = cluster(3).await;
    let mut first = procs::start(&[nodes[0].addr()]).await;
    first.cmd(&format!("ackrecv {CHANNEL} 64 0"));
    first.expect(&format!("@ recv {CHANNEL}")).await;
    receivers_visible(&nodes, CHANNEL, 1).await;
    let tx = nodes[0].sender::<u64>(CHANNEL).await.expect("tx");
    let produce = tracing::info_span!("produce");
    let (trace, produce_id) = ids(&produce);
    async {
        for i in 0..N {
            tx.send(i).await.expect("send");
        }
    }
    .instrument(produce.clone())
    .await;
    for _ in 0..N {
        first.expect(&format!("@ got {CHANNEL} ")).await;
    }
    // Held, never acknowledged: the sending node keeps them for another receiver.
    first.kill();
    let mut second = procs::start(&[nodes[0].addr()]).await;
    second.cmd(&format!("tracedrecv {CHANNEL} {N}"));
    second.expect(&format!("@ recv {CHANNEL}")).await;
    let mut got = BTreeSet::new();
    let mut parents = HashSet::new();
    for _ in 0..N {
        let line = second.expect(&format!("@ traced {CHANNEL} ")).await;
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_, _, _, v, t, parent] = words[..] else { panic!("{line}") };
        assert!(got.insert(v.parse::<u64>().expect("a number")), "{v} received twice");
        assert_eq!(t, trace.to_string(), "message {v} is in the trace it was sent in");
        parents.insert(SpanId::from_hex(parent).expect("a span id"));
    }
    assert_eq!(got, (0..N).collect());
    assert_eq!(parents, sends(CHANNEL, produce_id), "each the child of its own send, here");
    drop(second);
    shutdown(nodes).await;
}
