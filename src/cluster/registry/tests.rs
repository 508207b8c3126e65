//! The registry's unit tests: applying commands, deterministically, and finding what changed.

use super::*;

fn register(channel: &str, ty: &str, kind: EndpointKind, node: NodeId) -> Command {
    static TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let token = TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Command::Register {
        channel: channel.into(),
        type_name: ty.into(),
        kind,
        node,
        capacity: 8,
        token,
    }
}

#[test]
fn a_withdrawn_registration_is_gone_whichever_applies_first() {
    let mut r = Registry::default();
    let late = register("jobs", "A", EndpointKind::Receiver, 1);
    let Command::Register { token, .. } = late else { unreachable!() };
    assert_eq!(r.apply(&Command::Withdraw { node: 1, token }), Outcome::Done);
    assert_eq!(r.apply(&late), Outcome::Withdrawn, "withdrawn before it applied");
    let early = register("jobs", "A", EndpointKind::Receiver, 1);
    let Command::Register { token, .. } = early else { unreachable!() };
    assert!(matches!(r.apply(&early), Outcome::Registered(_)));
    r.apply(&Command::Withdraw { node: 1, token });
    assert!(r.channel("jobs").is_none(), "withdrawn after it applied: gone with its last endpoint");
    r.apply(&Command::RemoveNode { node: 1, graceful: false });
    assert!(r.withdrawn.is_empty());
}

#[test]
fn a_node_registers_at_most_its_share_and_names_are_checked() {
    let mut r = Registry::default();
    let reg = |r: &mut Registry, channel: &str, node: NodeId, token: u64| {
        r.apply(&Command::Register {
            channel: channel.into(),
            type_name: "T".into(),
            kind: EndpointKind::Sender,
            node,
            capacity: 1,
            token,
        })
    };
    for t in 0..u64::from(MAX_ENDPOINTS_PER_NODE) {
        assert!(matches!(reg(&mut r, "c", 1, t), Outcome::Registered(_)));
    }
    assert!(matches!(reg(&mut r, "c", 1, u64::MAX), Outcome::Refused(_)), "one too many");
    assert!(matches!(reg(&mut r, "c", 2, 0), Outcome::Registered(_)), "another node's own");
    let first = r.channels["c"].endpoints[0].id;
    r.apply(&Command::Deregister { channel: "c".into(), id: first });
    assert!(matches!(reg(&mut r, "c", 1, u64::MAX), Outcome::Registered(_)), "room again");
    r.apply(&Command::RemoveNode { node: 1, graceful: false });
    assert_eq!(r.per_node.get(&1), None, "nothing counted for a node that left");
    for bad in ["", "a b", "tab\t", &"x".repeat(MAX_NAME + 1)] {
        assert!(matches!(reg(&mut r, bad, 2, 9), Outcome::Refused(_)), "{bad:?}");
    }
    assert!(matches!(reg(&mut r, "orders.eu-west/1", 2, 10), Outcome::Registered(_)));
}

#[test]
fn a_repeated_registration_registers_once() {
    let mut r = Registry::default();
    let cmd = register("jobs", "A", EndpointKind::Receiver, 1);
    assert_eq!(r.apply(&cmd), Outcome::Registered(1));
    assert_eq!(r.apply(&cmd), Outcome::Registered(1), "the retry finds the first");
    assert_eq!(r.channels["jobs"].endpoints.len(), 1);
    r.apply(&Command::RemoveNode { node: 1, graceful: false });
    assert!(r.by_token.is_empty() && r.registrations.is_empty(), "tokens go with their endpoints");
}

#[test]
fn a_channel_keeps_the_type_of_its_first_endpoint() {
    let mut r = Registry::default();
    assert_eq!(r.apply(&register("jobs", "A", EndpointKind::Receiver, 1)), Outcome::Registered(1));
    assert_eq!(
        r.apply(&register("jobs", "B", EndpointKind::Sender, 2)),
        Outcome::TypeMismatch { existing: "A".into() }
    );
    assert_eq!(r.apply(&register("jobs", "A", EndpointKind::Sender, 2)), Outcome::Registered(2));
}

#[test]
fn untyped_endpoints_join_any_channel_and_fix_no_type() {
    let mut r = Registry::default();
    assert!(matches!(
        r.apply(&register("jobs", UNTYPED, EndpointKind::Sender, 1)),
        Outcome::Registered(_)
    ));
    assert_eq!(&*r.channels["jobs"].type_name, UNTYPED);
    assert!(matches!(
        r.apply(&register("jobs", "A", EndpointKind::Receiver, 2)),
        Outcome::Registered(_)
    ));
    assert_eq!(&*r.channels["jobs"].type_name, "A", "the first typed endpoint fixes it");
    assert_eq!(
        r.apply(&register("jobs", "B", EndpointKind::Sender, 2)),
        Outcome::TypeMismatch { existing: "A".into() }
    );
    assert!(matches!(
        r.apply(&register("jobs", UNTYPED, EndpointKind::Receiver, 3)),
        Outcome::Registered(_)
    ));
    assert_eq!(&*r.channels["jobs"].type_name, "A");
}

#[test]
fn close_remembers_the_members_and_refuses_new_endpoints() {
    let mut r = Registry::default();
    r.set_membership([(1, "a".into()), (3, "c".into())], [1]);
    r.apply(&register("jobs", "A", EndpointKind::Sender, 1));
    r.apply(&register("jobs", "A", EndpointKind::Sender, 3));
    r.apply(&register("jobs", "A", EndpointKind::Receiver, 2));
    r.apply(&Command::Close { channel: "jobs".into() });
    let ch = &r.channels["jobs"];
    assert!(ch.is_closed());
    assert_eq!(ch.closed.as_deref(), Some(&BTreeSet::from([1, 3])));
    assert_eq!(r.apply(&register("jobs", "A", EndpointKind::Receiver, 2)), Outcome::Closed);
    r.apply(&Command::RemoveNode { node: 3, graceful: false });
    assert_eq!(r.channels["jobs"].closed.as_deref(), Some(&BTreeSet::from([1])));
}

#[test]
fn a_closed_channel_leaves_with_its_last_endpoint_and_its_name_names_a_new_one() {
    let mut r = Registry::default();
    r.set_membership([(1, "a".into()), (2, "b".into())], [1]);
    let Outcome::Registered(rx) = r.apply(&register("jobs", "A", EndpointKind::Receiver, 1)) else {
        panic!("registered")
    };
    let Outcome::Registered(tx) = r.apply(&register("jobs", "A", EndpointKind::Sender, 2)) else {
        panic!("registered")
    };
    let created = r.channels["jobs"].created;
    r.apply(&Command::Close { channel: "jobs".into() });
    r.apply(&Command::Deregister { channel: "jobs".into(), id: tx });
    assert!(r.channel("jobs").is_some_and(|c| c.is_closed()), "a receiver still drains it");
    assert_eq!(r.apply(&register("jobs", "A", EndpointKind::Sender, 2)), Outcome::Closed);
    r.apply(&Command::Deregister { channel: "jobs".into(), id: rx });
    assert!(r.channel("jobs").is_none() && r.closed.is_empty(), "gone with its last endpoint");
    assert!(r.registrations.is_empty() && r.by_token.is_empty() && r.per_node.is_empty());
    assert!(r.types.0.is_empty(), "its type name with it");
    assert!(
        matches!(r.apply(&register("jobs", "B", EndpointKind::Sender, 2)), Outcome::Registered(_)),
        "a new channel, of any type, open"
    );
    assert!(!r.channels["jobs"].is_closed());
    assert_ne!(r.channels["jobs"].created, created, "told apart from the old one");
    // A deregistration naming another channel than the endpoint's changes nothing.
    let id = r.channels["jobs"].endpoints[0].id;
    r.apply(&Command::Deregister { channel: "other".into(), id });
    assert!(r.is_registered(id));
    // An open channel leaves with its last endpoint too (a typo leaves no litter), its type
    // with it.
    r.apply(&Command::RemoveNode { node: 2, graceful: false });
    assert!(r.channel("jobs").is_none() && r.registrations.is_empty() && r.types.0.is_empty());
    let Outcome::Registered(a) = r.apply(&register("jobs", "A", EndpointKind::Receiver, 1)) else {
        panic!("a new channel, of type A")
    };
    let Outcome::Registered(b) = r.apply(&register("jobs", "A", EndpointKind::Sender, 1)) else {
        panic!("registered")
    };
    r.apply(&Command::Deregister { channel: "jobs".into(), id: a });
    r.apply(&Command::Withdraw { node: 1, token: r.registrations[&b].token });
    assert!(r.channel("jobs").is_none(), "gone with its last endpoint, withdrawn");
    // Closed with no endpoint left, it goes at once.
    r.apply(&register("jobs", "A", EndpointKind::Sender, 1));
    r.apply(&Command::Close { channel: "jobs".into() });
    assert!(r.channel("jobs").is_some_and(|c| c.is_closed()), "its sender is still there");
    r.apply(&Command::RemoveNode { node: 1, graceful: false });
    assert!(r.channel("jobs").is_none() && r.types.0.is_empty() && r.closed.is_empty());
}

#[test]
fn what_changed_is_found_without_a_full_walk_and_copies_share() {
    let mut r = Registry::default();
    for i in 0..5_000 {
        r.apply(&register(&format!("c{i}"), "A", EndpointKind::Receiver, 1 + i % 3));
    }
    let before = r.clone();
    r.apply(&register("c42", "A", EndpointKind::Sender, 2));
    r.apply(&register("new", "A", EndpointKind::Sender, 2));
    let gone = before.channels["c7"].endpoints[0].id;
    r.apply(&Command::Deregister { channel: "c7".into(), id: gone });
    let mut changed: Vec<String> =
        r.changed_channels(&before).iter().map(|n| n.to_string()).collect();
    changed.sort();
    assert_eq!(changed, ["c42", "c7", "new"]);
    assert!(r.changed_channels(&r.clone()).is_empty());
    // RemoveNode names every channel of the node.
    let before = r.clone();
    r.apply(&Command::RemoveNode { node: 3, graceful: false });
    assert_eq!(r.changed_channels(&before).len(), before.endpoints_of(3) as usize);
    assert_eq!(r.endpoints_of(3), 0);
}

#[test]
fn a_close_between_a_removal_and_the_membership_change_does_not_wait_for_the_removed_node() {
    // A node leaves: its endpoints go (RemoveNode), then its membership. A close committed in
    // between listed it among the nodes whose fence every receiver waits for; no fence ever
    // comes from it (the switchboard simulation's seed 4412).
    let mut r = Registry::default();
    let addrs = |ids: &[NodeId]| ids.iter().map(|i| (*i, format!("n{i}"))).collect::<Vec<_>>();
    r.set_membership(addrs(&[1, 2]), [1, 2]);
    r.apply(&register("jobs", "A", EndpointKind::Receiver, 1));
    r.apply(&Command::RemoveNode { node: 2, graceful: false });
    r.apply(&Command::Close { channel: "jobs".into() });
    assert!(r.channels["jobs"].closed_by(2), "still a member when the close applied");
    r.set_membership(addrs(&[1]), [1]);
    assert!(!r.channels["jobs"].closed_by(2), "no longer waited for");
    assert!(r.channels["jobs"].closed_by(1));
}

/// A node tells it was removed and let in again by the membership change that let it in, even
/// when its copy of the registry jumps over the registry without it (the switchboard
/// simulation's seed 904); taking the same membership again (a snapshot) changes nothing.
#[test]
fn a_node_removed_and_let_in_again_is_admitted_by_another_change() {
    let addrs = |ids: &[NodeId]| ids.iter().map(|i| (*i, format!("n{i}"))).collect::<Vec<_>>();
    let mut r = Registry::default();
    r.set_membership(addrs(&[1, 2]), [1, 2]);
    let (one, two) = (r.admitted(1), r.admitted(2));
    assert!(one.is_some() && one == two);
    r.set_membership(addrs(&[1, 2]), [1, 2]);
    assert_eq!(r.admitted(2), two, "the same membership again");
    let snapshot = r.clone();
    r.set_membership(addrs(&[1]), [1]);
    assert_eq!(r.admitted(2), None);
    r.set_membership(addrs(&[1, 2]), [1]);
    assert!(r.admitted(2).is_some() && r.admitted(2) != two, "let in again");
    assert_eq!(r.admitted(1), one, "the node that stayed");
    let mut copy: Registry = rmp_serde::from_slice(&rmp_serde::to_vec_named(&r).unwrap()).unwrap();
    copy.set_membership(addrs(&[1, 2]), [1]);
    assert_eq!(copy.admitted(2), r.admitted(2), "replicated with the registry");
    assert_eq!(snapshot.admitted(2), two);
}

/// Nodes that leave gracefully are ordered as the log applied their leaves, the same on every
/// node; one let in again (its id configured) has not left until it leaves again.
#[test]
fn graceful_leaves_keep_the_logs_order() {
    let mut r = Registry::default();
    r.set_membership([(1, "a".into()), (2, "b".into()), (3, "c".into())], [1]);
    assert!(!r.left_gracefully_before(2, 3), "neither left");
    r.apply(&Command::RemoveNode { node: 3, graceful: true });
    assert!(r.left_gracefully_before(3, 2), "3 left, 2 has not");
    assert!(!r.left_gracefully_before(2, 3));
    r.apply(&Command::RemoveNode { node: 1, graceful: false });
    r.apply(&Command::RemoveNode { node: 2, graceful: true });
    assert!(r.left_gracefully_before(3, 2), "3 left first");
    assert!(!r.left_gracefully_before(2, 3));
    assert!(!r.left_gracefully_before(1, 2), "1 was removed, not a graceful leave");
    r.set_membership([(1, "a".into())], [1]);
    r.set_membership([(1, "a".into()), (3, "c".into())], [1]);
    assert!(!r.left_gracefully(3), "let in again");
    assert!(r.left_gracefully_before(2, 3));
}

/// A scale-down of a thousand nodes at once: every leave is remembered in the log's order, the
/// first among them too (fallen off a list of 64, the first of 100 counted as removed, and
/// what another leaving node held of it went back to it, stopped). Beyond the bound, the
/// oldest goes first.
#[test]
fn a_large_scale_down_keeps_every_leave_in_order() {
    let mut r = Registry::default();
    let max = super::MAX_GRACEFUL as u64;
    r.set_membership((1..=max + 1).map(|i| (i, format!("n{i}"))), [max + 1]);
    for node in 1..=1000 {
        r.apply(&Command::RemoveNode { node, graceful: true });
    }
    assert!(r.left_gracefully(1) && r.left_gracefully_before(1, 1000), "the first and the last");
    assert!(r.left_gracefully_before(999, 1000) && !r.left_gracefully_before(1000, 1));
    for node in 1001..=max + 1 {
        r.apply(&Command::RemoveNode { node, graceful: true });
    }
    assert!(!r.left_gracefully(1) && r.left_gracefully_before(2, max + 1), "the oldest went");
    let clone = r.clone();
    assert!(clone.left_gracefully_before(2, max + 1), "a published copy keeps the list");
}
