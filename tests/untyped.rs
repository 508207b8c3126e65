//! Untyped endpoints (`dchan::Value`) and dead letters: an untyped sender reaches typed
//! receivers on its own node and on others; what does not fit the receiver's type is kept as a
//! dead letter, visible in the stats and readable from any node, and the receiver carries on.

mod common;

use common::{cluster, receivers_visible, shutdown, within};
use dchan::Value;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
}

fn job_value(id: u64, name: &str) -> Value {
    Value::Map(vec![("id".into(), id.into()), ("name".into(), name.into())])
}

#[actix_rt::test]
async fn untyped_senders_reach_typed_receivers_locally_and_remotely_and_back() {
    let nodes = cluster(2).await;
    // The untyped sender comes first: it fixes no type, the typed receivers fix `Job`.
    let raw = nodes[0].sender::<Value>("jobs").await.expect("untyped sender");
    assert_eq!(nodes[0].cluster().channel("jobs").expect("channel").type_name, dchan::UNTYPED);
    let mut remote = nodes[1].receiver::<Job>("jobs").capacity(8).await.expect("receiver");
    receivers_visible(&nodes, "jobs", 1).await;
    within("send", raw.send(job_value(1, "remote"))).await.expect("send");
    assert_eq!(
        within("remote job", remote.recv()).await,
        Some(Job { id: 1, name: "remote".into() })
    );
    drop(remote);
    let mut local = nodes[0].receiver::<Job>("jobs").capacity(8).await.expect("receiver");
    receivers_visible(&nodes, "jobs", 1).await;
    within("send", raw.send(job_value(2, "local"))).await.expect("send");
    assert_eq!(within("local job", local.recv()).await, Some(Job { id: 2, name: "local".into() }));
    assert!(nodes[0].cluster().channel("jobs").expect("channel").type_name.ends_with("Job"));

    // An untyped receiver gets typed messages, from its own node and from another.
    drop(local);
    let mut any = nodes[0].receiver::<Value>("jobs").capacity(8).await.expect("untyped receiver");
    receivers_visible(&nodes, "jobs", 1).await;
    let typed_here = nodes[0].sender::<Job>("jobs").await.expect("typed sender");
    let typed_there = nodes[1].sender::<Job>("jobs").await.expect("typed sender");
    within("receiver known", typed_there.wait_for_receivers(1)).await.expect("open");
    // A local hand-off to a receiver of another type, while its credit is offered to the other
    // node's sender: the room is reclaimed, not waited for forever.
    within("send", typed_here.send(Job { id: 3, name: "here".into() })).await.expect("send");
    assert_eq!(within("from here", any.recv()).await, Some(job_value(3, "here")));
    within("send", typed_there.send(Job { id: 4, name: "there".into() })).await.expect("send");
    assert_eq!(within("from there", any.recv()).await, Some(job_value(4, "there")));
    drop(any);
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn what_does_not_decode_is_a_dead_letter_and_the_receiver_carries_on() {
    let nodes = cluster(2).await;
    let mut rx = nodes[1].receiver::<Job>("jobs").capacity(4).await.expect("receiver");
    receivers_visible(&nodes, "jobs", 1).await;
    let raw = nodes[0].sender::<Value>("jobs").await.expect("untyped sender");
    within("receiver known", raw.wait_for_receivers(1)).await.expect("open");
    // More misfits than the capacity: each is taken as it comes up, so none holds the
    // receiver's room, and its `recv` returns the first message that fits.
    let receiving = actix_rt::spawn(async move {
        let job = rx.recv().await;
        (job, rx)
    });
    for i in 0..10 {
        within("send", raw.send(Value::from(format!("not a job {i}")))).await.expect("send");
    }
    within("send", raw.send(job_value(5, "fits"))).await.expect("send");
    let (job, rx) = within("the job", receiving).await.expect("receiving task");
    assert_eq!(job, Some(Job { id: 5, name: "fits".into() }));

    let stats = nodes[1].stats();
    let ch = stats.channel("jobs").expect("stats of the channel");
    assert_eq!((ch.dead_letters, ch.dead_letters_total), (10, 10));
    // Read from the other node, as `dchan recv --dead-letters` does.
    let letters = within("dead letters", nodes[0].dead_letters("jobs")).await.expect("letters");
    assert_eq!(letters.len(), 10);
    assert!(letters.iter().all(|l| l.node == nodes[1].id() && l.from == Some(nodes[0].id())));
    assert_eq!(letters[0].value().expect("msgpack"), Value::from("not a job 0"));
    assert!(letters[0].expected.ends_with("Job"), "{}", letters[0].expected);
    let remote_stats = within("member stats", nodes[0].member_stats()).await;
    let of_1 = remote_stats.iter().find(|(id, _)| *id == nodes[1].id()).expect("node 1");
    assert_eq!(of_1.1.as_ref().expect("answered").channel("jobs").expect("jobs").dead_letters, 10);

    within("remove", nodes[0].remove_dead_letters(&letters[..4])).await.expect("removed");
    let left = within("dead letters", nodes[0].dead_letters("jobs")).await.expect("letters");
    assert_eq!(left.iter().map(|l| l.seq).collect::<Vec<_>>(), (5..=10).collect::<Vec<_>>());
    assert_eq!(nodes[1].stats().channel("jobs").expect("jobs").dead_letters_total, 10);
    drop(rx);
    shutdown(nodes).await;
}

#[actix_rt::test]
async fn a_dead_letter_gives_its_room_back_under_manual_acknowledgement() {
    let nodes = cluster(2).await;
    let mut rx = nodes[0].receiver::<Job>("acked").capacity(2).manual_ack().await.expect("rx");
    receivers_visible(&nodes, "acked", 1).await;
    // From this node's own untyped sender (moved in, never sent over a socket) and from the
    // other node's: each misfit fills the whole capacity, and must give it back when taken.
    let here = nodes[0].sender::<Value>("acked").await.expect("untyped sender");
    let there = nodes[1].sender::<Value>("acked").await.expect("untyped sender");
    let typed = nodes[0].sender::<Job>("acked").await.expect("typed sender");
    within("receiver known", there.wait_for_receivers(1)).await.expect("open");
    for (round, raw) in [&here, &there, &here].into_iter().enumerate() {
        for i in 0..2 {
            within("misfit", raw.send(Value::from(format!("not a job {round}.{i}"))))
                .await
                .expect("send");
        }
        let id = round as u64;
        let sending = typed.send(Job { id, name: "fits".into() });
        let job = async {
            let d = rx.recv().await.expect("open");
            d.ack()
        };
        let (sent, job) =
            within("a job after two dead letters", async { tokio::join!(sending, job) }).await;
        sent.expect("send");
        assert_eq!(job, Job { id, name: "fits".into() });
    }
    assert_eq!(nodes[0].stats().channel("acked").expect("stats").dead_letters_total, 6);
    drop(rx);
    shutdown(nodes).await;
}
