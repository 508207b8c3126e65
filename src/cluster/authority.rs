//! Who may ask what: every request a connection hands up is checked against the node that sent
//! it (proved by the handshake, [`crate::link::handshake`]) and the membership, before the node acts on
//! it. It sits between a connection's reader and [`Core::handle_request`](crate::node::Core).
//!
//! Raft's RPCs, registry writes, pre-votes and reads of a node's state come only from members;
//! a Raft RPC only from the leader or candidate it names; a write names only its sender's own
//! endpoints; a node asks only to leave itself, and to join as itself (a member may pass on
//! another's join: a joining node knows a seed, not the leader). A node that is not a member yet
//! takes Raft's RPCs from any node that knows the cluster secret: its registry is empty until
//! the leader's first append, and it cannot know the leader before then.
//!
//! The frames of the message path are checked where their state is (credit against the node
//! that holds the receiver's window, in [`crate::channel::switchboard`]; messages without credit, in
//! [`crate::channel::inbox`]).

use crate::cluster::registry::Registry;
use crate::ids::NodeId;
use crate::rpc::Command;
use crate::rpc::Request;

/// The largest Raft snapshot a node takes (the registry, serialized): a chunk that would take it
/// past this is refused rather than allocated.
pub(crate) const MAX_SNAPSHOT: u64 = 256 * 1024 * 1024;

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal(pub(crate) String);

/// Whether node `from` may make request `req` of node `me`, whose registry is `registry`;
/// `in_log` says whether Raft's latest membership (in the log, maybe not applied yet) lists it.
pub(crate) fn check(
    me: NodeId,
    registry: &Registry,
    in_log: bool,
    from: NodeId,
    req: &Request,
) -> Result<(), Refusal> {
    let member = registry.nodes.contains_key(&from);
    // A member in the log is one for Raft (a lagging node must hear a new leader to catch up);
    // until this node is a member, the leader is not known here yet.
    let raft_peer = member || in_log || !registry.nodes.contains_key(&me);
    let refuse = |why: &str| Err(Refusal(format!("{} from node {from}: {why}", name(req))));
    let named = |leader: Option<&NodeId>| leader == Some(&from);
    match req {
        Request::AppendEntries(r) if !named(r.vote.leader_id().voted_for().as_ref()) => {
            refuse("it names another leader")
        }
        Request::Vote(r) if !named(r.vote.leader_id().voted_for().as_ref()) => {
            refuse("it names another candidate")
        }
        Request::InstallSnapshot(r) if !named(r.vote.leader_id().voted_for().as_ref()) => {
            refuse("it names another leader")
        }
        Request::InstallSnapshot(r)
            if r.offset.saturating_add(r.data.len() as u64) > MAX_SNAPSHOT =>
        {
            refuse("the snapshot would exceed the largest this node takes")
        }
        Request::AppendEntries(_) | Request::Vote(_) | Request::InstallSnapshot(_) => {
            if raft_peer {
                Ok(())
            } else {
                refuse("not a member")
            }
        }
        Request::Join { node, .. } if *node != from && !member => refuse("a node joins as itself"),
        Request::Leave { node } if *node != from => refuse("a node may only remove itself"),
        Request::Join { .. } | Request::Leave { .. } => Ok(()),
        // It touches only the asker's own books, and it may not be a member here yet.
        Request::Rejoined { .. } => Ok(()),
        _ if !member => refuse("not a member"),
        Request::Write(cmd) => write(registry, from, cmd).or_else(|why| refuse(&why)),
        Request::PreVote { .. }
        | Request::Stats
        | Request::Ping
        | Request::DeadLetters { .. }
        | Request::RemoveDeadLetters { .. } => Ok(()),
    }
}

/// A member's registry write names only its own endpoints and registrations.
fn write(registry: &Registry, from: NodeId, cmd: &Command) -> Result<(), String> {
    match cmd {
        Command::Register { node, .. } | Command::Withdraw { node, .. } if *node != from => {
            Err("it registers for another node".into())
        }
        // Checked before it reaches the log (applying refuses it too, but after every node
        // stored it).
        Command::Register { channel, .. } => crate::cluster::registry::check_name(channel),
        Command::Withdraw { .. } | Command::Close { .. } => Ok(()),
        Command::Deregister { channel, id } => {
            let owner = registry.channel(channel).and_then(|c| c.endpoint(*id)).map(|e| e.node);
            match owner {
                Some(node) if node != from => Err(format!("endpoint {id} is node {node}'s")),
                _ => Ok(()),
            }
        }
        // Only the leader removes a node, on its own (a leave, or the failure detector).
        Command::RemoveNode { .. } => Err("nodes are removed by the leader alone".into()),
    }
}

fn name(req: &Request) -> &'static str {
    match req {
        Request::AppendEntries(_) => "append-entries",
        Request::Vote(_) => "vote request",
        Request::InstallSnapshot(_) => "snapshot",
        Request::Write(_) => "registry write",
        Request::Join { .. } => "join",
        Request::Leave { .. } => "leave",
        Request::Rejoined { .. } => "start-over",
        Request::PreVote { .. } => "pre-vote",
        Request::Stats => "stats request",
        Request::Ping => "ping",
        Request::DeadLetters { .. } => "dead-letter read",
        Request::RemoveDeadLetters { .. } => "dead-letter removal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::EndpointKind;

    fn registry() -> Registry {
        let mut r = Registry::default();
        r.nodes.insert(1, "a".into());
        r.nodes.insert(2, "b".into());
        let reg = Command::Register {
            channel: "c".into(),
            type_name: "T".into(),
            kind: EndpointKind::Receiver,
            node: 2,
            capacity: 1,
            token: 1,
        };
        r.apply(&reg);
        r
    }

    fn vote(candidate: NodeId) -> Request {
        Request::Vote(openraft::raft::VoteRequest::new(openraft::Vote::new(9, candidate), None))
    }

    #[test]
    fn members_act_for_themselves_and_strangers_only_join() {
        let r = registry();
        let ok = |from, req: Request| check(1, &r, false, from, &req).is_ok();
        assert!(ok(2, vote(2)));
        assert!(!ok(2, vote(1)), "a vote for another candidate");
        assert!(!ok(7, vote(7)), "a vote from a stranger");
        assert!(ok(2, Request::Leave { node: 2 }));
        assert!(!ok(2, Request::Leave { node: 1 }), "removing another");
        assert!(ok(7, Request::Join { node: 7, addr: "x".into(), non_voting: true, name: None }));
        assert!(!ok(7, Request::Join { node: 8, addr: "x".into(), non_voting: true, name: None }));
        assert!(
            ok(2, Request::Join { node: 8, addr: "x".into(), non_voting: true, name: None }),
            "passed on"
        );
        assert!(!ok(7, Request::Stats));
        assert!(ok(2, Request::Stats));
        let close = Request::Write(Command::Close { channel: "c".into() });
        assert!(!ok(7, close), "a stranger's write");
        let dereg = |id| Request::Write(Command::Deregister { channel: "c".into(), id });
        let id = r.channels["c"].endpoints[0].id;
        assert!(ok(2, dereg(id)));
        assert!(!ok(1, dereg(id)), "another node's endpoint");
        assert!(!ok(2, Request::Write(Command::RemoveNode { node: 1, graceful: false })));
        let named = |channel: String| {
            Request::Write(Command::Register {
                channel,
                type_name: "T".into(),
                kind: EndpointKind::Sender,
                node: 2,
                capacity: 1,
                token: 7,
            })
        };
        assert!(ok(2, named("fine".into())));
        assert!(!ok(2, named("x".repeat(1 << 20))), "a name too long never reaches the log");
        // A snapshot chunk that would take the snapshot past the bound, from the leader.
        let chunk = |offset| {
            Request::InstallSnapshot(openraft::raft::InstallSnapshotRequest {
                vote: openraft::Vote::new_committed(9, 2),
                meta: Default::default(),
                offset,
                data: vec![0; 16],
                done: false,
            })
        };
        assert!(ok(2, chunk(0)));
        assert!(!ok(2, chunk(MAX_SNAPSHOT)), "past the largest snapshot");
        assert!(!ok(2, chunk(u64::MAX)), "an offset that would wrap");
        // Not a member yet: Raft's RPCs from anyone who got past the handshake.
        let empty = Registry::default();
        assert!(check(1, &empty, false, 7, &vote(7)).is_ok());
        // In the log's membership, not applied here yet: a new leader this node must hear.
        assert!(check(1, &r, true, 7, &vote(7)).is_ok());
    }
}
