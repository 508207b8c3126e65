//! The inbox's unit tests: capacity, fences, hand-over, manual acknowledgement.

use super::*;
use crate::link::peer::Peers;

fn inbox(capacity: usize) -> Inbox<u64> {
    Inbox::new(
        1,
        Arc::new(ChannelRoute::new("t", Arc::default())),
        capacity,
        false,
        Weak::<Peers>::new(),
    )
}

fn encoded(v: u64) -> Bytes {
    rmp_serde::to_vec_named(&v).expect("encode").into()
}

fn poll(inbox: &Inbox<u64>) -> Poll<Option<u64>> {
    let waker = futures::task::noop_waker();
    inbox.poll_recv(&mut Context::from_waker(&waker))
}

#[test]
fn a_closed_inbox_ends_only_after_every_fence() {
    let inbox = inbox(8);
    inbox.offer(&[7]);
    inbox.push_remote(7, false, [encoded(1)].into_iter());
    inbox.close(BTreeSet::from([7, 9]));
    assert_eq!(poll(&inbox), Poll::Ready(Some(1)));
    // Node 7 and 9 may still have data on the way: not the end yet.
    assert_eq!(poll(&inbox), Poll::Pending);
    inbox.push_remote(7, false, [encoded(2)].into_iter());
    inbox.fence(7);
    assert_eq!(poll(&inbox), Poll::Ready(Some(2)));
    assert_eq!(poll(&inbox), Poll::Pending);
    inbox.fence(9);
    assert_eq!(poll(&inbox), Poll::Ready(None));
}

#[test]
fn local_senders_count_against_the_capacity_with_remote_credit() {
    let inbox = inbox(2);
    inbox.offer(&[7]);
    // Node 7 holds both credits: a sender on this node finds no room until it gives some back.
    assert!(matches!(inbox.try_push(1), Err(Refused::Full(1))));
    inbox.returned(7, 1, None);
    assert!(inbox.try_push(1).is_ok());
    assert!(matches!(inbox.try_push(2), Err(Refused::Full(2))));
    inbox.push_remote(7, false, [encoded(3)].into_iter());
    assert_eq!(poll(&inbox), Poll::Ready(Some(1)));
    assert_eq!(poll(&inbox), Poll::Ready(Some(3)));
    assert_eq!(poll(&inbox), Poll::Pending);
}

#[test]
fn a_detached_inbox_hands_back_only_its_own_nodes_messages() {
    let inbox = inbox(4);
    inbox.try_push(1).expect("room");
    inbox.offer(&[7]);
    inbox.push_remote(7, false, (2..4u32).map(|n| encoded(n.into())));
    let mine = inbox.hand_over(false).expect("first detach");
    let got: Vec<u64> = mine.iter().map(|b| rmp_serde::from_slice(b).unwrap()).collect();
    assert_eq!(got, [1], "node 7 delivers its own elsewhere");
    assert!(inbox.hand_over(false).is_none());
    assert!(matches!(inbox.try_push(6), Err(Refused::Full(6))));
    assert_eq!(poll(&inbox), Poll::Ready(None));
}

#[test]
fn manual_acknowledgements_free_room_in_order_per_sending_node() {
    let inbox: Inbox<u64> = Inbox::new(
        1,
        Arc::new(ChannelRoute::new("t", Arc::default())),
        2,
        true,
        Weak::<Peers>::new(),
    );
    inbox.try_push(1).expect("room");
    inbox.try_push(2).expect("room");
    let (_, t1, ..) = inbox.try_recv().expect("one");
    let (_, t2, ..) = inbox.try_recv().expect("two");
    assert!(matches!(inbox.try_push(3), Err(Refused::Full(3))), "unacknowledged: still held");
    inbox.ack(t2.expect("token"));
    assert!(inbox.try_push(3).is_ok());
    inbox.ack(t1.expect("token"));
    inbox.ack(t1.expect("token")); // twice is once
    assert!(inbox.try_push(4).is_ok());
    assert!(matches!(inbox.try_push(5), Err(Refused::Full(5))));
}

#[test]
fn undecodable_bytes_are_skipped_not_fatal() {
    let inbox = inbox(4);
    inbox.offer(&[7]);
    inbox.push_remote(7, false, [Bytes::from_static(b"\xc1"), encoded(3)].into_iter());
    assert_eq!(poll(&inbox), Poll::Ready(Some(3)));
}

#[test]
fn messages_beyond_a_nodes_credit_are_not_taken_in() {
    let inbox = inbox(2);
    inbox.push_remote(9, false, [encoded(1)].into_iter());
    assert_eq!(inbox.buffered(), 0, "no credit was granted to node 9");
    inbox.offer(&[7]);
    inbox.push_remote(7, false, (2..6u32).map(|n| encoded(n.into())));
    assert_eq!(inbox.buffered(), 2, "node 7 had credit for 2");
    assert_eq!(poll(&inbox), Poll::Ready(Some(2)));
    assert_eq!(poll(&inbox), Poll::Ready(Some(3)));
}

#[test]
fn an_ended_inbox_takes_nothing_more() {
    let inbox = inbox(8);
    inbox.offer(&[7]);
    // Node 7 was out of the cluster when the channel closed: not waited for.
    inbox.close(BTreeSet::new());
    assert_eq!(poll(&inbox), Poll::Ready(None));
    // What it sent on the credit it had comes back to it (released), not into a buffer nobody
    // reads: a `recv` after the end still says `None`.
    inbox.push_remote(7, false, [encoded(1)].into_iter());
    assert_eq!(inbox.buffered(), 0);
    assert_eq!(poll(&inbox), Poll::Ready(None));
}

#[test]
fn a_node_back_as_a_new_incarnation_is_answered_what_was_taken_in_and_told_nothing_more() {
    let inbox = inbox(8);
    inbox.offer(&[7]);
    inbox.push_remote(7, false, (1..5u32).map(|n| encoded(n.into())));
    assert_eq!(poll(&inbox), Poll::Ready(Some(1)));
    // Removed: one taken and not yet told, three held; they are this node's to deliver now.
    inbox.node_left(7, false, Departure::Removed);
    assert_eq!(inbox.rejoined(7), 4, "one taken, three held, in the order sent");
    for i in 2..5 {
        assert_eq!(poll(&inbox), Poll::Ready(Some(i)));
    }
    assert_eq!(inbox.books(|b| b.entries()), 0, "nothing kept of its old incarnation");
}

#[test]
fn a_broadcast_copy_is_not_delivered_elsewhere_when_its_receiver_goes() {
    // A receiver on this node holds a broadcast copy and a message another receiver did not
    // take; dropped, it gives back the message only: every other receiver had its own copy
    // (the switchboard simulation's seed 83 took a copy twice).
    let inbox = inbox(4);
    inbox.try_push_encoded(encoded(1), false, true).expect("room");
    inbox.try_push_encoded(encoded(2), true, false).expect("room");
    let mine = inbox.detach(false).expect("detached once");
    assert_eq!(mine, vec![encoded(2)]);
}

#[test]
fn a_broadcast_copy_of_a_node_that_left_is_not_delivered_elsewhere_either() {
    // Node 7 broadcast two messages and sent one more to this receiver alone, then died: what
    // it sent is this node's to deliver now. The receiver goes: only the message goes
    // elsewhere (the switchboard simulation's seed 269126 took a copy twice).
    let inbox = inbox(8);
    inbox.offer(&[7]);
    inbox.push_remote(7, true, (1..3u32).map(|n| encoded(n.into())));
    inbox.push_remote(7, false, [encoded(3)].into_iter());
    let _ = inbox.node_left(7, false, Departure::Removed);
    let mine = inbox.detach(false).expect("detached once");
    assert_eq!(mine, vec![encoded(3)]);
}

#[test]
fn credit_a_departed_node_never_used_is_void_once_its_time_is_up() {
    // Node 7 was granted the whole window, then left the cluster without using or returning
    // it: kept at first (what it sent before it left may still come), void once it is done
    // (kept, a churn of leaving nodes left an entry behind for each: tests/churn.rs).
    let inbox = inbox(4);
    inbox.offer(&[7]);
    assert_eq!(inbox.books(|b| b.out_to(7)), 4);
    assert!(
        !inbox.node_left(7, false, Departure::Removed),
        "it had credit: it was not waiting for any"
    );
    assert_eq!(inbox.books(|b| b.entries()), 1, "its credit is kept for what is on its way");
    let _ = inbox.node_left(7, true, Departure::Removed);
    assert_eq!(inbox.books(|b| b.entries()), 0);
    assert_eq!(inbox.books(|b| b.committed()), 0, "the whole capacity is free again");
}

#[test]
fn a_closed_inbox_waits_for_its_own_nodes_redelivery() {
    // Every fence is in, but this node still re-routes a message of its own (taken back from
    // a receiver that went away): the receiver does not end before it arrives (seed 5).
    let inbox = inbox(4);
    inbox.route.rerouting(1);
    inbox.close(BTreeSet::new());
    assert_eq!(poll(&inbox), Poll::Pending);
    inbox.try_push_encoded(encoded(3), true, false).expect("room for a redelivery");
    inbox.route.rerouted();
    assert_eq!(poll(&inbox), Poll::Ready(Some(3)));
    assert_eq!(poll(&inbox), Poll::Ready(None));
}

/// A message's header (its trace context: `link::envelope`) is read and skipped whatever this
/// build's features; a header cut short makes the message a dead letter, not a panic, and the
/// receiver carries on.
#[test]
fn a_message_header_is_skipped_and_a_broken_one_is_a_dead_letter() {
    use crate::link::envelope::{put_header, MARK, TRACEPARENT};
    let inbox = inbox(8);
    inbox.offer(&[7]);
    let mut traced = Vec::new();
    put_header(
        &mut traced,
        TRACEPARENT,
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    traced.extend_from_slice(&encoded(1));
    // A traceparent that is not one: no parent, the message still delivered.
    let mut junk = Vec::new();
    put_header(&mut junk, TRACEPARENT, b"\xff\x00 not a traceparent");
    junk.extend_from_slice(&encoded(2));
    let cut: Bytes = vec![MARK, TRACEPARENT, 200, 0x01].into();
    let mut msgs = [traced.into(), junk.into(), cut, encoded(3)].into_iter();
    inbox.push_remote(7, false, &mut msgs);
    assert_eq!(poll(&inbox), Poll::Ready(Some(1)));
    assert_eq!(poll(&inbox), Poll::Ready(Some(2)));
    assert_eq!(poll(&inbox), Poll::Ready(Some(3)));
    let dead = inbox.route.dead().expect("a dead letter").list("t", 1);
    assert_eq!(dead.len(), 1);
    assert!(dead[0].error.contains("malformed message header"), "{}", dead[0].error);
}

/// Messages of a node that left, held as this node's own, are re-routed by this node if its
/// receiver goes while it stays; but once this node is leaving (it told what was taken), those
/// still buffered go back to their node (not told as taken), which delivers them elsewhere:
/// taken over, they were lost when nobody would grant the leaving node credit any more (the
/// switchboard simulation's seed 73821, under another hash order).
#[test]
fn a_leaving_node_gives_a_left_nodes_messages_back() {
    let decoded = |mine: Vec<Bytes>| -> Vec<u64> {
        mine.iter().map(|b| rmp_serde::from_slice(b).unwrap()).collect()
    };
    for leaving in [false, true] {
        let inbox = inbox(8);
        inbox.offer(&[7]);
        inbox.push_remote(7, false, (1..4u32).map(|n| encoded(n.into())));
        // Node 7 is removed while alive: what it sent is held here as this node's own.
        inbox.node_left(7, false, Departure::Removed);
        assert_eq!(poll(&inbox), Poll::Ready(Some(1)));
        if leaving {
            inbox.tell_taken();
        }
        let mine = decoded(inbox.hand_over(false).expect("first detach"));
        if leaving {
            assert_eq!(mine, Vec::<u64>::new(), "node 7 delivers 2 and 3 elsewhere");
        } else {
            assert_eq!(mine, [2, 3], "this node re-routes them, as its own");
        }
    }
}

/// Two nodes leaving at once hand over in the log's order. Messages of a node whose graceful
/// leave came before this node's are this node's to deliver, even once it is leaving too (that
/// node has stopped: given back, they were lost, the switchboard simulation's seed 123468).
/// Those of a node whose leave comes after this node's stay that node's: it delivers elsewhere
/// whatever it was not told was taken before this node's leave, so the application here takes
/// none of them (seed 13439: one was taken here too).
#[test]
fn of_two_nodes_leaving_at_once_the_first_leaves_its_messages_to_the_second() {
    let decoded = |mine: Vec<Bytes>| -> Vec<u64> {
        mine.iter().map(|b| rmp_serde::from_slice(b).unwrap()).collect()
    };
    // Node 7 left first; this node leaves after it.
    let first = inbox(8);
    first.offer(&[7]);
    first.push_remote(7, false, (1..4u32).map(|n| encoded(n.into())));
    first.node_left(7, false, Departure::LeftFirst);
    assert_eq!(poll(&first), Poll::Ready(Some(1)));
    first.tell_taken();
    let mine = decoded(first.hand_over(false).expect("first detach"));
    assert_eq!(mine, [2, 3], "this node re-routes them, as its own");

    // This node left first; node 7 leaves after it.
    let second = inbox(8);
    second.offer(&[7]);
    second.push_remote(7, false, (1..4u32).map(|n| encoded(n.into())));
    assert_eq!(poll(&second), Poll::Ready(Some(1)));
    second.tell_taken();
    second.node_left(7, false, Departure::LeftAfter);
    assert_eq!(poll(&second), Poll::Pending, "node 7's to deliver elsewhere, not taken here");
    let mine = decoded(second.hand_over(false).expect("first detach"));
    assert_eq!(mine, Vec::<u64>::new(), "node 7 delivers 2 and 3 elsewhere");
}
