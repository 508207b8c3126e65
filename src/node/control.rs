//! The control path: registry writes and membership changes, always carried out by the Raft
//! leader, whichever node asks.
//!
//! Nothing here is on the message path: a registration waits for a commit, a message never does.
//! A write made on a follower (or a learner) is forwarded to the leader over the peer links; the
//! caller then waits until its own node has applied it, so that a `receiver()` that returns is
//! already in this node's routers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use openraft::raft::AppendEntriesResponse;
use tracing::Instrument;

use crate::channel::registrar::Registrar;
use crate::channel::router::ChannelRoute;
use crate::cluster::authority::Refusal;
use crate::error::Cause;
use crate::ids::{EndpointId, NodeId};
use crate::node::Core;
use crate::rpc::{Command, EndpointKind, Outcome, Request, Response};
use crate::Error;

/// A registered endpoint that no handle owns yet: deregistered when dropped, unless
/// [`claim`](Unclaimed::claim)ed by the handle made for it.
#[derive(Debug)]
pub(crate) struct Unclaimed {
    core: Arc<Core>,
    channel: String,
    id: Option<EndpointId>,
}

impl Unclaimed {
    /// The endpoint's id; its handle owns the registration from now on.
    pub(crate) fn claim(mut self) -> EndpointId {
        self.id.take().unwrap_or_default()
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            tracing::debug!(channel = %self.channel, endpoint = id, "registration cancelled: deregistering");
            Core::deregister(&self.core, &self.channel, id);
        }
    }
}

impl Core {
    /// Commit a registry command through the leader, and wait until this node has applied it.
    pub(crate) async fn write(&self, cmd: Command) -> Result<Outcome, Error> {
        let deadline = tokio::time::Instant::now() + self.timing.write();
        loop {
            if self.cancel.is_cancelled() {
                return Err(Error::Shutdown);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let attempt = match self.leader().await {
                // A leader cut off from the majority never commits: bounded like the rest.
                Some((leader, _)) if leader == self.id => {
                    match tokio::time::timeout(left, self.write_here(cmd.clone())).await {
                        Ok(r) => r,
                        Err(_) => Err("not committed: no majority answered".into()),
                    }
                }
                Some((leader, addr)) => {
                    match self.ask_leader(leader, &addr, Request::Write(cmd.clone()), left).await {
                        Ok(Response::Write(r)) => r,
                        Ok(_) => Err("unexpected answer".into()),
                        Err(e) => Err(e),
                    }
                }
                None => Err("no leader".into()),
            };
            match attempt {
                Ok((index, outcome)) => {
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    self.raft
                        .wait(Some(remaining.max(Duration::from_secs(1))))
                        .applied_index_at_least(Some(index), "registry write applied here")
                        .await
                        .map_err(|e| Error::registry(Cause::of(e)))?;
                    // Routers reflect the write before it returns (the watcher may not have run
                    // yet): a close fails the next send here, a new receiver is a target at once.
                    let registry = self.registry.borrow().clone();
                    self.switch.refresh(&registry);
                    return Ok(outcome);
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::NoQuorum { waited: self.timing.write(), last: e })
                }
                Err(e) => {
                    tracing::debug!(error = %e, "registry write will be retried");
                    self.wait_leader_change().await;
                }
            }
        }
    }

    /// Commit on this node, which believes it leads.
    async fn write_here(&self, cmd: Command) -> Result<(u64, Outcome), String> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok((resp.log_id.index, resp.data)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The current leader and its address, waiting a little for an election if there is none.
    async fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self
            .raft
            .wait(Some(Duration::from_secs(2)))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .ok()?;
        let leader = metrics.current_leader?;
        let addr = metrics.membership_config.membership().get_node(&leader)?.addr.clone();
        Some((leader, addr))
    }

    /// Send `req` to `leader` and wait for its answer, up to `timeout`, or until this node learns
    /// of another leader: a leader that died cannot answer, and waiting out the whole timeout
    /// for it would stall every registration until then. The request may still have been
    /// carried out; every request is idempotent, so the caller retries it.
    async fn ask_leader(
        &self,
        leader: NodeId,
        addr: &str,
        req: Request,
        timeout: Duration,
    ) -> Result<Response, String> {
        let peer = self.peers.get(leader, addr);
        let mut metrics = self.raft.metrics();
        let moved = metrics.wait_for(|m| m.current_leader != Some(leader));
        tokio::select! {
            biased;
            r = peer.request(req, timeout) => r.map_err(|e| e.to_string()),
            _ = moved => Err(format!("node {leader} is no longer the leader")),
        }
    }

    /// Wait (briefly) for Raft's view to change before retrying a write.
    async fn wait_leader_change(&self) {
        let mut m = self.raft.metrics();
        m.borrow_and_update();
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => {}
            _ = tokio::time::timeout(Duration::from_millis(200), m.changed()) => {}
        }
    }

    pub(crate) async fn wait_member(&self, id: NodeId) -> Result<(), Error> {
        let mut reg = self.registry.clone();
        let registry =
            tokio::time::timeout(self.timing.write(), reg.wait_for(|r| r.nodes.contains_key(&id)))
                .await
                .map_err(|_| Error::join("membership was not applied in time"))?
                .map_err(|_| Error::Shutdown)?;
        if id == self.id {
            self.endpoints.joined(&registry, id);
        }
        Ok(())
    }

    /// Register an endpoint of `channel` for messages of type `T`. The write runs on the node's
    /// own runtime, so cancelling the caller cannot leave it half done: an endpoint that commits
    /// after its caller has gone is handed to an [`Unclaimed`], which deregisters it.
    pub(crate) async fn register<T: 'static>(
        self: &Arc<Self>,
        channel: &str,
        kind: EndpointKind,
        capacity: u32,
    ) -> Result<Unclaimed, Error> {
        self.register_as(channel, crate::cluster::registry::type_of::<T>(), kind, capacity).await
    }

    /// [`Core::register`], with the type's name given.
    pub(crate) async fn register_as(
        self: &Arc<Self>,
        channel: &str,
        requested: String,
        kind: EndpointKind,
        capacity: u32,
    ) -> Result<Unclaimed, Error> {
        crate::cluster::registry::check_name(channel).map_err(Error::InvalidName)?;
        let cmd = Command::Register {
            channel: channel.to_owned(),
            type_name: requested.clone(),
            kind,
            node: self.id,
            capacity,
            token: crate::cluster::registry::token(),
        };
        let token = match &cmd {
            Command::Register { token, .. } => *token,
            _ => 0,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let core = self.clone();
        let channel = channel.to_owned();
        let started = std::time::Instant::now();
        let span = tracing::info_span!(parent: &self.span, "register", channel = %channel, ?kind);
        self.tasks.spawn(
            async move {
                core.endpoints.wait_started_over(core.timing.write()).await;
                let result = match core.write(cmd).await {
                    Ok(Outcome::Registered(id)) => {
                        tracing::debug!(id, took = ?started.elapsed(), "registered");
                        core.telemetry.registered(started.elapsed());
                        core.endpoints.add(id, &channel, &requested, kind, capacity);
                        // Removed already, with this node (cut off while the write was on its
                        // way): once a member again, the node starts over and registers it
                        // again (its refresh never saw it, so never saw it vanish: the
                        // switchboard simulation's seed 16).
                        let registry = core.registry.borrow().clone();
                        if !registry.is_registered(id) {
                            core.endpoints.removed();
                            core.check_removed(&registry);
                        }
                        Ok(Unclaimed { core: core.clone(), channel, id: Some(id) })
                    }
                    Ok(Outcome::TypeMismatch { existing }) => {
                        Err(Error::TypeMismatch { channel, existing, requested })
                    }
                    Ok(Outcome::Closed) => Err(Error::ChannelClosed(channel)),
                    Ok(Outcome::Refused(why)) => Err(Error::registry(why)),
                    Ok(Outcome::Done | Outcome::Withdrawn) => {
                        Err(Error::registry("registration applied without an id"))
                    }
                    Err(e) => {
                        // The write may still commit later (it reached a leader that had not
                        // committed it yet): withdraw it, so that nothing stays registered
                        // without an owner.
                        core.withdraw(token);
                        Err(e)
                    }
                };
                if let Err(e) = &result {
                    tracing::debug!(error = %e, "not registered");
                }
                // If the caller has gone, the endpoint is dropped with the message: deregistered.
                let _ = tx.send(result);
            }
            .instrument(span),
        );
        rx.await.map_err(|_| Error::Shutdown)?
    }

    /// Withdraw a registration this node gave up on, in the background, retrying until it
    /// commits or the node stops.
    pub(crate) fn withdraw(self: &Arc<Self>, token: u64) {
        if self.cancel.is_cancelled() {
            return;
        }
        let core = self.clone();
        self.tasks.spawn(
            async move {
                tracing::debug!("withdrawing a registration whose answer did not come");
                let cmd = Command::Withdraw { node: core.id, token };
                while let Err(e) = core.write(cmd.clone()).await {
                    if matches!(e, Error::Shutdown) || core.cancel.is_cancelled() {
                        return;
                    }
                    tracing::debug!(error = %e, "withdrawing a registration will be retried");
                }
            }
            .instrument(tracing::info_span!(parent: &self.span, "withdraw", token)),
        );
    }

    /// Deregister an endpoint in the background (its handle was dropped; `Drop` cannot wait).
    pub(crate) fn deregister(self: &Arc<Self>, channel: &str, id: EndpointId) {
        // An endpoint registered again when this node started over is known by its new id.
        let id = self.endpoints.remove(id).unwrap_or(id);
        // A leaving node's endpoints are removed all at once by its leave.
        if self.cancel.is_cancelled() || self.leaving.load(Ordering::SeqCst) {
            return;
        }
        let core = self.clone();
        let span = tracing::info_span!(parent: &self.span, "deregister", channel, id);
        let cmd = Command::Deregister { channel: channel.to_owned(), id };
        self.tasks.spawn(
            async move {
                let permit = core.deregistrations.clone().acquire_owned().await;
                // A leave that started meanwhile removes the endpoint with the rest.
                if permit.is_ok() && !core.leaving.load(Ordering::SeqCst) {
                    if let Err(e) = core.write(cmd).await {
                        tracing::debug!(error = %e, "deregistration failed");
                    }
                }
                core.switch.deregistered(id);
            }
            .instrument(span),
        );
    }

    /// Answer a request from node `from`, if it may make it ([`crate::cluster::authority`]): a refused
    /// write or membership change is answered with the reason, anything else refused is not
    /// answered.
    pub(crate) async fn handle_request(
        self: &Arc<Self>,
        from: NodeId,
        req: Request,
    ) -> Option<Response> {
        let in_log = matches!(
            req,
            Request::AppendEntries(_) | Request::Vote(_) | Request::InstallSnapshot(_)
        ) && self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&from)
            .is_some();
        let checked = {
            let registry = self.registry.borrow();
            crate::cluster::authority::check(self.id, &registry, in_log, from, &req)
        };
        if let Err(Refusal(why)) = checked {
            tracing::warn!("refused: {why}");
            return match req {
                Request::Write(_) => Some(Response::Write(Err(why))),
                Request::Join { .. } | Request::Leave { .. } => {
                    Some(Response::Membership(Err(why)))
                }
                _ => None,
            };
        }
        if let Request::Rejoined { at } = req {
            return self.switch.rejoined(from, at).await.map(Response::Rejoined);
        }
        Some(self.answer(req).await)
    }

    async fn answer(self: &Arc<Self>, req: Request) -> Response {
        match req {
            Request::AppendEntries(r) => {
                let resp = self.raft.append_entries(r).await;
                // Anything but "your term is old" comes from the current leader.
                if matches!(&resp, Ok(a) if !matches!(a, AppendEntriesResponse::HigherVote(_))) {
                    self.elections.heard_leader();
                }
                Response::AppendEntries(resp)
            }
            Request::Vote(r) => {
                let resp = self.raft.vote(r).await;
                if matches!(&resp, Ok(v) if v.vote_granted) {
                    self.elections.contact();
                }
                Response::Vote(resp)
            }
            Request::InstallSnapshot(r) => {
                Response::InstallSnapshot(self.raft.install_snapshot(r).await)
            }
            Request::Write(cmd) => Response::Write(self.write_here(cmd).await),
            req @ Request::Join { .. } => Response::Membership(self.on_leader(req).await),
            // Carried out by the leader only: passed on, it would come from this node, and a
            // node may only remove itself. The leaving node asks the leader itself.
            Request::Leave { node } => {
                let leader = self.raft.metrics().borrow().current_leader;
                Response::Membership(match leader {
                    Some(l) if l == self.id => self.membership.leave(node, true).await,
                    _ => Err(format!("node {} is not the leader: ask the leader", self.id)),
                })
            }
            Request::PreVote { last_log } => Response::PreVote(self.elections.would_vote(last_log)),
            Request::Stats => Response::Stats(self.stats()),
            Request::Ping => Response::Pong,
            Request::DeadLetters { channel } => {
                Response::DeadLetters(self.local_dead_letters(&channel))
            }
            Request::RemoveDeadLetters { channel, seqs } => {
                Response::Removed(self.remove_dead_letters(&channel, &seqs))
            }
            // Answered with the asker's id (see `handle_request`).
            Request::Rejoined { .. } => Response::Rejoined(Vec::new()),
        }
    }

    /// What this node holds, per channel.
    pub(crate) fn stats(&self) -> crate::report::NodeStats {
        crate::report::NodeStats {
            node: self.id,
            channels: self.switch.stats(),
            voters_wanted: self.membership.voters_wanted(),
        }
    }

    /// The dead letters of `channel` kept on this node.
    pub(crate) fn local_dead_letters(&self, channel: &str) -> Vec<crate::DeadLetter> {
        self.switch
            .find_route(channel)
            .and_then(|r| r.dead().map(|d| d.list(channel, self.id)))
            .unwrap_or_default()
    }

    /// Let go of dead letters of `channel` on this node; how many were held.
    pub(crate) fn remove_dead_letters(&self, channel: &str, seqs: &[u64]) -> u64 {
        self.switch.find_route(channel).and_then(|r| r.dead().map(|d| d.remove(seqs))).unwrap_or(0)
    }

    /// Run a membership change on the leader: here if this node leads, else forwarded (see
    /// [`Response::Membership`] for what it answers).
    pub(super) async fn on_leader(self: &Arc<Self>, req: Request) -> Result<u64, String> {
        // (A change may first wait out a failure timeout: a voter that stays and is gone is
        // removed before a leave that needs it; see `Membership::leave`.)
        let wait = self.timing.write() + self.membership.failure_timeout();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let res = match self.leader().await {
                // A leader cut off from the majority never commits: bounded like the rest.
                Some((leader, _)) if leader == self.id => {
                    let here = async {
                        match &req {
                            Request::Join { node, addr, non_voting, name } => self
                                .membership
                                .join(*node, addr, *non_voting, name.clone())
                                .await
                                .map(|()| 0),
                            Request::Leave { node } => self.membership.leave(*node, true).await,
                            _ => Err("not a membership request".into()),
                        }
                    };
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match tokio::time::timeout(left, here).await {
                        Ok(r) => r,
                        Err(_) => Err("not committed: no majority answered".into()),
                    }
                }
                Some((leader, addr)) => {
                    let fwd = match &req {
                        Request::Join { node, addr, non_voting, name } => Request::Join {
                            node: *node,
                            addr: addr.clone(),
                            non_voting: *non_voting,
                            name: name.clone(),
                        },
                        Request::Leave { node } => Request::Leave { node: *node },
                        _ => return Err("not a membership request".into()),
                    };
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match self.ask_leader(leader, &addr, fwd, left).await {
                        Ok(Response::Membership(r)) => r,
                        Ok(_) => Err("unexpected answer".into()),
                        Err(e) => Err(e),
                    }
                }
                None => Err("no leader".into()),
            };
            match res {
                Ok(index) => return Ok(index),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "membership change will be retried");
                    self.wait_leader_change().await;
                }
            }
        }
    }

    /// Keep this node in the cluster: a node that has heard from no leader for a failure
    /// timeout may have been cut off (or frozen) long enough to be removed, so it asks the
    /// members it knows to let it in again (a join is answered at once if it is still a
    /// member: asking costs a round trip, while an election is on too). Once back, its registry
    /// no longer lists what it had registered: it starts over (see [`super::rejoin`]). Runs
    /// until shutdown.
    pub(crate) async fn stay_member(self: Arc<Self>) {
        let after = self.membership.failure_timeout();
        let mut reported = false;
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(after / 6) => {}
            }
            let silent = self.elections.leaderless_for();
            if silent < after || self.leaving.load(Ordering::SeqCst) {
                reported = false;
                continue;
            }
            if !reported {
                tracing::warn!(
                    ?silent,
                    "no leader heard from: asking the members to let this node back in"
                );
                reported = true;
            }
            let members: Vec<(NodeId, String)> = self
                .registry
                .borrow()
                .nodes
                .iter()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, addr)| (*id, addr.clone()))
                .collect();
            for (id, addr) in members {
                let req = Request::Join {
                    node: self.id,
                    addr: self.advertised.clone(),
                    non_voting: self.non_voting,
                    name: self.name.clone(),
                };
                let answer = self.peers.get(id, &addr).request(req, after / 3).await;
                if let Ok(Response::Membership(Ok(_))) = answer {
                    tracing::info!(through = id, "back in the cluster");
                    break;
                }
            }
        }
    }
}

/// What this node's senders and receivers ask of it.
impl Registrar for Core {
    fn send_blocked(&self, route: &ChannelRoute, waited: std::time::Duration) {
        // (An unnamed channel's name is not asked for: not shown, nor made.)
        let unnamed = route.unnamed().is_some();
        let name = if unnamed { "" } else { route.name() };
        self.telemetry.send_blocked(name, unnamed, waited);
    }

    fn deregister(self: Arc<Self>, channel: &str, id: EndpointId) {
        Core::deregister(&self, channel, id);
    }

    fn close(&self, channel: &str) -> BoxFuture<'_, Result<(), Error>> {
        let cmd = Command::Close { channel: channel.to_owned() };
        let span = tracing::info_span!(parent: &self.span, "close", channel);
        Box::pin(
            async move {
                let result = self.write(cmd).await.map(|_| ());
                match &result {
                    Ok(()) => tracing::info!("channel closed"),
                    Err(e) => tracing::warn!(error = %e, "close not committed"),
                }
                result
            }
            .instrument(span),
        )
    }

    fn redeliver(&self, route: &Arc<ChannelRoute>, msgs: Vec<Bytes>) {
        self.switch.redeliver(route, msgs);
    }

    fn replies(&self) -> (crate::ids::NodeId, &Arc<crate::link::peer::Peers>) {
        (self.id, &self.peers)
    }

    fn register_sender(
        self: Arc<Self>,
        channel: String,
        type_name: String,
    ) -> BoxFuture<'static, Result<EndpointId, Error>> {
        Box::pin(async move {
            let kind = crate::rpc::EndpointKind::Sender;
            Ok(self.register_as(&channel, type_name, kind, 0).await?.claim())
        })
    }

    fn route(&self, channel: &str) -> Arc<ChannelRoute> {
        self.switch.route(channel)
    }

    fn unnamed_route(&self, owner: NodeId, id: EndpointId, admitted: u64) -> Arc<ChannelRoute> {
        self.switch.unnamed_route(owner, id, admitted)
    }

    fn unnamed_gone(&self, route: &Arc<ChannelRoute>) {
        self.switch.unnamed_gone(route);
    }

    fn shut(&self, route: &Arc<ChannelRoute>) {
        self.switch.shut_unnamed(route);
    }

    fn admission(&self) -> u64 {
        self.switch.admission()
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        let cancel = self.cancel.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = task => {}
            }
        });
    }
}
