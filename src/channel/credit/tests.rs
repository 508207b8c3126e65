//! The books of credit, checked: grants follow demand and never exceed the capacity; early
//! grants wait for their window.

use std::sync::Arc;

use super::*;

fn granted(out: &Outgoing, node: NodeId) -> u32 {
    out.credit.iter().filter(|(n, _, _)| *n == node).map(|(_, _, g)| *g).sum()
}

/// A window of this node's towards receiver 10 (on node 2), granted `n`, and the route it was
/// made for.
fn granted_window(credits: &Credits<()>, n: u32) -> (Arc<()>, Arc<Window>) {
    let route = Arc::new(());
    let window = credits.window(10, 2, &route);
    window.grant(n);
    (route, window)
}

#[test]
fn one_sending_node_gets_the_whole_window_and_keeps_it_while_it_streams() {
    // (A batch is a quarter of the capacity: 4.)
    let mut g = Grants::new(16);
    g.want(1);
    assert_eq!(granted(&g.settle(true, None, false), 1), 16);
    for _ in 0..16 {
        assert_eq!(g.arrived(1), Arrival::Credit);
    }
    assert!(!g.local(), "a sender on the receiver's node finds no room");
    g.taken(Some(1), 3);
    assert!(g.settle(false, Some(1), false).is_empty(), "less than a batch: not yet");
    g.taken(Some(1), 1);
    let out = g.settle(false, Some(1), false);
    assert_eq!(granted(&out, 1), 4, "freed room goes back to the node it came from");
    assert_eq!(out.credit, [(1, 4, 4)], "with what was taken");
}

#[test]
fn credit_out_never_exceeds_the_capacity_and_moves_to_who_wants_it() {
    let mut g = Grants::new(4);
    g.want(1);
    g.settle(true, None, false);
    // Node 1 holds all 4, unused; node 2 wants some: node 1 is asked to give it back.
    g.want(2);
    let out = g.settle(true, None, false);
    assert_eq!(out.reclaim, [1]);
    assert!(g.settle(true, None, false).reclaim.is_empty(), "asked once");
    assert_eq!(g.arrived(1), Arrival::Credit);
    g.returned(1, 3);
    let out = g.settle(true, None, false);
    assert_eq!(granted(&out, 2), 3);
    assert_eq!(g.committed(), 4);
}

#[test]
fn capacity_one_hands_over_one_at_a_time() {
    let mut g = Grants::new(1);
    g.want(1);
    assert_eq!(granted(&g.settle(true, None, false), 1), 1);
    assert_eq!(g.arrived(1), Arrival::Credit);
    assert_eq!(granted(&g.settle(false, None, false), 1), 0);
    g.taken(Some(1), 1);
    assert_eq!(g.settle(true, Some(1), false).credit, [(1, 1, 1)]);
}

#[test]
fn a_local_sender_gets_credit_back_from_idle_holders() {
    let mut g = Grants::new(2);
    g.want(1);
    g.settle(true, None, false);
    assert!(!g.local());
    assert_eq!(g.settle(true, None, false).reclaim, [1]);
    g.returned(1, 2);
    let out = g.settle(true, None, false);
    assert!(out.credit.is_empty(), "nobody else wants: the room stays free");
    assert!(g.local());
}

#[test]
fn a_node_that_left_is_owed_only_the_credit_it_had_out() {
    let mut g = Grants::new(8);
    g.want(7);
    let _ = g.settle(true, None, false);
    assert_eq!(g.arrived(7), Arrival::Credit);
    let out = g.out_to(7);
    assert!(out > 0, "granted");
    g.forget(7, Some(1), Departure::Removed);
    for _ in 0..out {
        assert_eq!(g.arrived(7), Arrival::Left, "sent before it left, on its credit");
    }
    assert_eq!(g.arrived(7), Arrival::Refused, "beyond its credit");
    assert_eq!(g.arrived(9), Arrival::Refused, "a node never granted anything");
}

#[test]
fn the_credit_of_a_node_that_left_gracefully_stays_counted_until_it_is_settled() {
    // Seed 114199 of the switchboard simulation: the leaving node hands over on the credit it
    // had; freed at its leave and granted to another node, the receiver held 2 of capacity 1.
    let mut g = Grants::new(2);
    g.want(7);
    let _ = g.settle(true, None, false);
    assert_eq!(g.out_to(7), 2);
    g.forget(7, Some(0), Departure::LeftFirst);
    assert_eq!(g.committed(), 2, "still counted");
    g.want(8);
    assert!(g.settle(true, None, false).credit.is_empty(), "nothing to grant node 8");
    assert_eq!(g.arrived(7), Arrival::Left, "handed over on it");
    g.returned(7, 1);
    assert_eq!(g.committed(), 1, "one held, the other given back");
    let out = g.settle(true, None, false);
    assert_eq!(out.credit, [(8, 0, 1)], "the room given back goes to node 8");
    // Removed for not answering, its credit is free at once (the README's exception).
    let mut g = Grants::new(2);
    g.want(7);
    let _ = g.settle(true, None, false);
    g.forget(7, Some(0), Departure::Removed);
    assert_eq!(g.committed(), 0);
    // Gracefully, but it never comes: free once its time is up.
    let mut g = Grants::new(2);
    g.want(7);
    let _ = g.settle(true, None, false);
    g.forget(7, Some(0), Departure::LeftFirst);
    g.void_left_credit(7);
    assert_eq!(g.committed(), 0);
    assert_eq!(g.entries(), 0);
}

#[test]
fn a_node_back_as_a_new_incarnation_hears_how_many_of_its_messages_were_taken_in() {
    let mut g = Grants::new(8);
    g.want(7);
    let _ = g.settle(true, None, false);
    let out = g.out_to(7);
    assert!(out >= 4, "granted");
    for _ in 0..4 {
        assert_eq!(g.arrived(7), Arrival::Credit);
    }
    // Two taken (not yet told), two held in the buffer when it left.
    g.taken(Some(7), 2);
    g.forget(7, Some(2), Departure::Removed);
    assert_eq!(g.arrived(7), Arrival::Left, "sent before it left, on its credit");
    // Forgotten again (its own word that it is back): nothing counted twice.
    g.forget(7, Some(0), Departure::Removed);
    assert_eq!(g.rejoined(7), 5, "two taken, two held, one arrived after it left");
    assert_eq!(g.rejoined(7), 0, "answered once");
    assert_eq!(g.arrived(7), Arrival::Refused, "the old credit is void");
    assert_eq!(g.entries(), 0, "nothing of it is kept");
    // Deliveries not acknowledged when it left break the count: it delivers again.
    let mut g = Grants::new(8);
    g.want(7);
    let _ = g.settle(true, None, false);
    assert_eq!(g.arrived(7), Arrival::Credit);
    g.forget(7, None, Departure::Removed);
    assert_eq!(g.arrived(7), Arrival::Left);
    assert_eq!(g.rejoined(7), 0);
    // Told with a release, but out of reach: still owed when it comes back.
    let mut g = Grants::new(8);
    g.want(7);
    let _ = g.settle(true, None, false);
    assert_eq!(g.arrived(7), Arrival::Credit);
    g.forget(7, Some(1), Departure::Removed);
    let owed = g.take_owed(7);
    assert_eq!(owed, 1);
    g.restore_owed(7, owed);
    assert_eq!(g.rejoined(7), 1);
}

#[test]
fn early_grants_wait_for_their_window_and_are_given_back_when_reclaimed_or_unkeepable() {
    let credits: Credits<()> = Credits::default();
    assert!(matches!(credits.grant(10, 2, 5), Granted::Kept));
    // A receiver this node has not seen registered yet: its grant stays.
    credits.retain_early(|_| false);
    assert_eq!(credits.early_count(), 1);
    assert!(matches!(credits.grant(10, 3, 1), Granted::Refused), "not the receiver's node");
    assert_eq!(credits.take_early(10, 3), 0);
    assert_eq!(credits.take_early(10, 2), 5, "reclaimed before the window was made");
    assert!(matches!(credits.grant(11, 2, 4), Granted::Kept));
    let window = credits.window(11, 2, &Arc::new(()));
    assert!(window.try_acquire(), "the early grant is in the window");
    for id in 0..MAX_EARLY_GRANTS as u64 {
        assert!(matches!(credits.grant(100 + id, 2, 1), Granted::Kept));
    }
    assert!(matches!(credits.grant(1, 2, 3), Granted::Returned(3)), "no room: given back");
    credits.retain_early(|id| id >= 100);
    assert_eq!(credits.early_count(), 0, "receivers that are gone");
}

/// Starting over: a grant from a node not yet answered is the old incarnation's (dropped, the
/// node forgets it as it answers); one from a node that answered is the new incarnation's, kept
/// for the window made once every answer is in (dropped, the node counted it out for ever: the
/// switchboard simulation's seed 6058).
#[test]
fn starting_over_keeps_the_grants_of_nodes_that_answered_for_the_new_windows() {
    let credits: Credits<()> = Credits::default();
    let (route, old) = granted_window(&credits, 3);
    let released = credits.release_all([2, 3]);
    assert_eq!(released.len(), 1);
    assert!(!old.try_acquire(), "void");
    assert!(matches!(credits.grant(10, 2, 4), Granted::Void), "node 2 has not answered");
    credits.answered(2);
    assert!(matches!(credits.grant(10, 2, 2), Granted::Kept), "node 2 answered: the new one's");
    assert!(matches!(credits.grant(11, 3, 1), Granted::Void), "node 3 has not answered");
    let made_meanwhile = credits.window(12, 2, &route);
    assert!(!made_meanwhile.try_acquire(), "a window made while starting over is void too");
    credits.clear();
    let new = credits.window(10, 2, &route);
    assert!(new.try_acquire() && new.try_acquire(), "the answered node's grant");
    assert!(!new.try_acquire(), "and nothing of the old incarnation's");
    assert!(matches!(credits.grant(11, 3, 1), Granted::Kept), "no longer starting over");
}

#[test]
fn a_receiver_only_its_own_node_sends_to_keeps_no_books_of_other_nodes() {
    // (Unnamed channels: 100,000 alive on a node must stay small, tests/unnamed_memory.rs.)
    let mut g = Grants::new(2);
    for round in 0..3 {
        assert!(g.local() && g.local(), "round {round}: room for two");
        assert!(!g.local(), "round {round}: full");
        g.local_waiting(false);
        g.taken(None, 2);
        assert!(g.settle(true, None, false).is_empty(), "nothing to tell another node");
        g.forget(9, Some(0), Departure::Removed);
        assert!(g.take_wanting(|_| true).is_empty());
        assert_eq!(g.flush_taken().credit, []);
        g.returned(9, 0);
        // (Every inbox hears every node's last word, and each return marked last.)
        assert!(!g.sends_no_more(9), "nothing was out to it");
        g.handed_over(9, false);
        assert!(!g.has_remote_books(), "round {round}: books of other nodes made");
    }
    g.want(1);
    assert!(g.has_remote_books(), "made once another node wants");
    assert_eq!(granted(&g.settle(true, None, false), 1), 2);
}

/// `Grants::quiet` is what lets a receiver skip settling after a take: wherever it says so,
/// settling finds nothing to send and changes nothing. Two books driven alike, one settled
/// after every take and one only when not quiet, never part.
#[test]
fn books_that_are_quiet_have_nothing_to_settle() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let (mut every, mut lazy) = (Grants::new(16), Grants::new(16));
    let mut held: Vec<Option<NodeId>> = Vec::new();
    let mut quiet_seen = 0;
    for step in 0..20_000 {
        let node = 1 + next(3);
        match next(6) {
            0 => {
                every.want(node);
                lazy.want(node);
            }
            1 | 2 => {
                let (a, b) = (every.arrived(node), lazy.arrived(node));
                assert_eq!(a, b, "step {step}");
                if a != Arrival::Refused {
                    held.push(Some(node));
                }
            }
            3 if every.local() => {
                assert!(lazy.local(), "step {step}");
                held.push(None);
            }
            3 => assert!(!lazy.local(), "step {step}"),
            _ if !held.is_empty() => {
                let from = held.remove(0);
                every.taken(from, 1);
                lazy.taken(from, 1);
                let idle = held.is_empty() || next(8) == 0;
                let a = every.settle(idle, from, false);
                if lazy.quiet(idle) {
                    quiet_seen += 1;
                    assert!(a.is_empty(), "step {step}: quiet, yet settling sends {a:?}");
                } else {
                    let b = lazy.settle(idle, from, false);
                    assert_eq!((a.credit, a.reclaim), (b.credit, b.reclaim), "step {step}");
                }
                if !idle || next(4) == 0 {
                    continue;
                }
                // The buffer ran dry: `next` settles again, idle.
                let (a, b) = (every.settle(true, None, false), lazy.settle(true, None, false));
                assert_eq!((a.credit, a.reclaim), (b.credit, b.reclaim), "step {step}");
            }
            _ => {}
        }
        assert_eq!(every.committed(), lazy.committed(), "step {step}");
        assert_eq!(every.entries(), lazy.entries(), "step {step}");
    }
    assert!(quiet_seen > 1000, "the fast path was taken {quiet_seen} times");
}

/// A frame's messages booked at once are booked as one by one: on credit, then on the credit
/// of a node that left, then refused; the books after are the same.
#[test]
fn messages_booked_together_are_booked_as_one_by_one() {
    let mut seen = (0, 0, 0);
    for graceful in [false, true] {
        for n in 0..40 {
            let (mut one, mut many) = (Grants::new(16), Grants::new(16));
            for g in [&mut one, &mut many] {
                g.want(1);
                g.settle(true, None, false);
                // Node 1 uses 2 of its credit, leaves (with the rest), and comes back wanting.
                assert_eq!((g.arrived(1), g.arrived(1)), (Arrival::Credit, Arrival::Credit));
                g.forget(
                    1,
                    Some(0),
                    if graceful { Departure::LeftFirst } else { Departure::Removed },
                );
                g.want(1);
                g.settle(true, None, false);
            }
            let (mut credit, mut left, mut refused) = (0, 0, 0);
            for _ in 0..n {
                match one.arrived(1) {
                    Arrival::Credit if left + refused == 0 => credit += 1,
                    Arrival::Left if refused == 0 => left += 1,
                    Arrival::Refused => refused += 1,
                    other => panic!("{other:?} out of order"),
                }
            }
            assert_eq!(
                many.arrived_many(1, n),
                (credit, left),
                "{n} messages, graceful {graceful}"
            );
            seen = (seen.0.max(credit), seen.1.max(left), seen.2.max(refused));
            assert_eq!(one.committed(), many.committed());
            assert_eq!(one.entries(), many.entries());
            assert_eq!(one.out_total(), many.out_total());
        }
    }
    assert!(seen.0 > 0 && seen.1 > 0 && seen.2 > 0, "every kind of arrival: {seen:?}");
}

/// A node that has handed over (its last `Return`) wants nothing more: its want from before is
/// void, and a refresh that still lists its sender does not offer it credit again. Granted,
/// the room was counted out to a node that had stopped, and another node's hand-over found
/// none (the switchboard simulation's seed 115779).
#[test]
fn a_node_that_handed_over_is_granted_nothing_more() {
    let mut g = Grants::new(1);
    g.want(2);
    g.want(3);
    g.handed_over(2, true);
    assert_eq!(g.wanting().collect::<Vec<_>>(), [3], "its want is void");
    assert!(g.known().any(|n| n == 2), "known: a refresh's offer passes it over");
    assert_eq!(granted(&g.settle(true, None, false), 2), 0);
    // Its removal applied: forgotten as any node that left.
    g.forget(2, Some(0), Departure::Removed);
    assert!(!g.known().any(|n| n == 2));
    // Not a member any more when it handed over: nothing is kept of it.
    g.want(4);
    g.handed_over(4, false);
    assert!(!g.known().any(|n| n == 4) && !g.wants(4));
}

/// A node that has handed over keeps what was granted to it counted (a grant on its way may
/// still be used, by a hand-over that re-routes after all) until it says it sends nothing more:
/// then nothing is counted out to it, grants it never read included, and nothing is granted to
/// it again (a grant it never read, the node stopping first, held the room 10 s after its
/// departure, while another leaving node's hand-over found none: the switchboard simulation's
/// seed 79912, with unnamed channels refusing while their node leaves). Nor is room freed by
/// taking its messages given back to it once it has handed over.
#[test]
fn a_node_that_stops_sending_leaves_no_credit_counted() {
    let mut g = Grants::new(4);
    g.want(2);
    assert_eq!(granted(&g.settle(true, None, false), 2), 4);
    assert_eq!(g.arrived(2), Arrival::Credit);
    // Its last return says 0: the other 3 were granted after it gave up its credit, and are
    // still on their way to it.
    g.returned(2, 0);
    g.handed_over(2, true);
    assert_eq!((g.out_to(2), g.committed()), (3, 4), "still counted: it may re-route");
    // Its message taken: the room freed is not granted back to it.
    g.taken(Some(2), 1);
    assert_eq!(granted(&g.settle(true, Some(2), false), 2), 0);
    assert_eq!(g.committed(), 3);
    // It stops: nothing more comes, the 3 are void.
    assert!(g.sends_no_more(2));
    assert_eq!((g.out_to(2), g.committed()), (0, 0));
    g.taken(Some(2), 0);
    assert_eq!(granted(&g.settle(true, Some(2), false), 2), 0, "nothing granted to it again");
    // Its graceful departure keeps nothing counted.
    g.forget(2, Some(0), Departure::LeftFirst);
    assert_eq!(g.committed(), 0);
    // Re-routing after its hand-over, a node wants again: its want is answered, and room its
    // messages free goes back to it again.
    let mut h = Grants::new(4);
    h.want(3);
    assert_eq!(granted(&h.settle(true, None, false), 3), 4);
    h.returned(3, 4);
    h.handed_over(3, true);
    h.want(3);
    assert_eq!(granted(&h.settle(true, None, false), 3), 4);
    assert_eq!(h.arrived(3), Arrival::Credit);
    h.taken(Some(3), 1);
    assert_eq!(granted(&h.settle(true, Some(3), false), 3), 1, "the room back to it");
    // Forgotten before it says so (a graceful departure keeps its credit counted): void then.
    h.forget(3, Some(0), Departure::LeftFirst);
    assert_eq!(h.committed(), 4);
    assert!(h.sends_no_more(3));
    assert_eq!(h.committed(), 0);
}

/// A scale-down of a thousand nodes at once, every one of them granted credit by one
/// receiver: each departure keeps its credit counted, and what each sent on it before it left
/// is taken in, not refused (the books kept the latest 64 departures; the rest's messages,
/// arriving after, were dropped as sent without credit).
#[test]
fn a_thousand_nodes_leaving_at_once_keep_their_credit() {
    let nodes = 1000u64;
    let mut g = Grants::new(4 * nodes as u32);
    for n in 1..=nodes {
        g.want(n);
    }
    let out = g.settle(true, None, false);
    assert!((1..=nodes).all(|n| granted(&out, n) > 0), "every node granted");
    for n in 1..=nodes {
        g.forget(n, Some(0), Departure::LeftFirst);
    }
    for n in 1..=nodes {
        assert_eq!(g.arrived_many(n, 1), (0, 1), "node {n}'s message on the credit it had");
    }
}

/// A node that says it sends nothing more (its last word, after its hand-over) stops for good:
/// its windows are emptied and ask for nothing, a re-routing hand-over cannot re-open them,
/// early grants go, and a grant read after goes back (the receiver voids what it granted
/// before the last word; what it granted after, it counts, and the return takes it off).
#[test]
fn a_node_that_stopped_sends_and_asks_for_nothing() {
    let credits: Credits<()> = Credits::default();
    let (route, window) = granted_window(&credits, 3);
    assert!(matches!(credits.grant(11, 2, 4), Granted::Kept));
    credits.stop();
    assert!(credits.is_stopped());
    assert!(!window.try_acquire(), "emptied");
    assert!(!window.should_ask(), "asks for nothing");
    assert_eq!(credits.early_count(), 0, "early grants gone");
    credits.reopen();
    assert!(matches!(credits.grant(10, 2, 5), Granted::Returned(5)), "not re-opened");
    assert!(!window.try_acquire());
    let later = credits.window(11, 2, &route);
    assert!(!later.try_acquire() && !later.should_ask(), "a window made after: the same");
    assert!(matches!(credits.grant(11, 2, 0), Granted::Void));
}

#[test]
fn a_want_read_while_a_unit_is_on_its_way_is_answered_once_that_unit_arrives() {
    // Node 1 holds the whole window (1).
    let mut g = Grants::new(1);
    g.want(1);
    assert_eq!(granted(&g.settle(true, None, false), 1), 1);
    // A send of node 1 has taken the unit and not pushed its message yet (a thread preempted
    // between the two); another of its sends finds no credit and asks. Read while the unit is
    // out, the want cannot be answered yet; node 1 asks nothing more (its window asked).
    g.want(1);
    assert!(g.wants(1), "the want is kept");
    // Node 2 wants too: node 1 is asked for what it does not use, and has nothing to give.
    g.want(2);
    assert_eq!(g.settle(true, None, false).reclaim, [1]);
    g.returned(1, 0);
    // The message arrives: node 1's want stands, and the books are to be settled at once
    // (not at the application's next take)...
    assert_eq!(g.arrived(1), Arrival::Credit);
    assert!(g.wants_settling(), "a want that stands now");
    assert!(!g.wants_settling(), "said once");
    // ...and once it is taken, the room goes to node 2, which asked first...
    g.taken(Some(1), 1);
    assert_eq!(granted(&g.settle(true, Some(1), false), 2), 1);
    // ...and once node 2's message is taken, to node 1, whose want stood (dropped, node 2 got
    // the room back for ever and node 1's hand-over starved: the switchboard simulation's
    // seed 115913, with a send held between its credit and its push).
    assert_eq!(g.arrived(2), Arrival::Credit);
    g.taken(Some(2), 1);
    let out = g.settle(true, Some(2), false);
    assert_eq!(granted(&out, 1), 1, "{out:?}");
}

/// A send that took a unit just before its node started over pushes after the windows were
/// voided: the outbox's gate refuses it (`Window::gone`), as for a receiver gone, so the message
/// goes to another receiver or waits for the new window instead of going out on void credit
/// (lost, and counted in flight for ever: the switchboard simulation's seed 228061).
#[test]
fn a_unit_taken_before_a_start_over_cannot_be_pushed_after_it() {
    let credits: Credits<()> = Credits::default();
    let (_route, window) = granted_window(&credits, 1);
    assert!(window.try_acquire(), "the unit, taken");
    assert!(!window.gone().load(Ordering::Acquire));
    let _ = credits.release_all([2]);
    assert!(window.is_voided());
    assert!(window.gone().load(Ordering::Acquire), "the push after is refused");
    assert!(!window.is_released(), "the receiver is not gone for that");
}
