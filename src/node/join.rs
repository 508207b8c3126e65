//! Becoming a member: a bootstrapping node makes itself the cluster of one; a joining node asks
//! its seeds, one after another, until one that leads (or knows who does) lets it in. And
//! leaving: the leader removes the node ([`super::Core::leave`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::Node;
use crate::error::Cause;
use crate::rpc::{Request, Response};
use crate::Error;

impl Node {
    pub(super) async fn bootstrap(&self) -> Result<(), Error> {
        let core = &self.core;
        let members = BTreeMap::from([(
            core.id,
            crate::cluster::raft::MemberNode::new(
                core.advertised.clone(),
                false,
                core.name.clone(),
            ),
        )]);
        core.raft.initialize(members).await.map_err(|e| Error::registry(Cause::of(e)))?;
        core.wait_member(core.id).await
    }

    /// Ask the seeds, in turn and again with backoff, to let this node in, until it is a member
    /// or `timeout` has passed. The leader answers a repeated join as it did the first, and a
    /// node whose answer was lost is in as soon as its own registry lists it.
    pub(super) async fn join(&self, seeds: &[String], timeout: Duration) -> Result<(), Error> {
        let span = tracing::info_span!("join", seeds = %seeds.join(","));
        self.join_seeds(seeds, timeout).instrument(span).await
    }

    async fn join_seeds(&self, seeds: &[String], timeout: Duration) -> Result<(), Error> {
        let core = &self.core;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut registry = core.registry.clone();
        let me = core.id;
        let member = registry.wait_for(|r| r.nodes.contains_key(&me));
        tokio::pin!(member);
        let mut last = String::from("no seed given");
        let mut backoff = Duration::from_millis(50);
        let mut told = false;
        loop {
            // Every address of every seed, resolved again each round (the pods behind a
            // headless Service come and go): each is asked on its own, this node's own left out
            // (a node refuses a hello with its own id: that would count as a refusal). Not with
            // TLS: a certificate names the seed's name, which an address would not match.
            let round = if core.links.tls.is_some() {
                seeds.to_vec()
            } else {
                let own = [core.advertised.clone(), core.addr.to_string()];
                let mine = tokio::time::timeout_at(deadline, resolve_all(&own)).await;
                let mine = mine.unwrap_or_default();
                let all = tokio::time::timeout_at(deadline, resolve_all(seeds)).await;
                let all = all.unwrap_or_else(|_| seeds.to_vec());
                let others: Vec<String> =
                    all.iter().filter(|a| !mine.contains(a)).cloned().collect();
                if others.is_empty() {
                    all
                } else {
                    others
                }
            };
            // Seeds that refused this node in this round.
            let mut refused = 0;
            for seed in &round {
                let attempt = async {
                    let intro = core.links.intro();
                    let dialed = crate::link::connection::dial(seed, &intro, None).await?;
                    let peer = core.peers.get_or_add(dialed.hello.node, seed);
                    crate::link::connection::adopt(&core.links, &peer, dialed);
                    let (node, addr, non_voting) = (core.id, intro.addr, core.non_voting);
                    let req = Request::Join { node, addr, non_voting, name: core.name.clone() };
                    match peer.request(req, core.timing.join_attempt()).await {
                        Ok(Response::Membership(r)) => r.map_err(Error::join),
                        Ok(_) => Err(Error::join("unexpected answer")),
                        Err(e) => Err(Error::join(Cause::of(e))),
                    }
                };
                tokio::select! {
                    biased;
                    joined = &mut member => {
                        let registry = joined.map_err(|_| Error::Shutdown)?;
                        core.endpoints.joined(&registry, me);
                        return Ok(());
                    }
                    answer = tokio::time::timeout_at(deadline, attempt) => match answer {
                        Ok(Ok(_)) => {
                            return match tokio::time::timeout_at(deadline, &mut member).await {
                                Ok(Ok(registry)) => {
                                    core.endpoints.joined(&registry, me);
                                    Ok(())
                                }
                                Ok(Err(_)) => Err(Error::Shutdown),
                                Err(_) => Err(Error::join(format!(
                                    "{seed} let this node in, but the membership did not reach it within {timeout:?}"
                                ))),
                            };
                        }
                        // Trying again will not change the secret: said at once if every seed
                        // refuses this node (one that does may be something else at its address).
                        Ok(Err(e @ Error::Auth(_))) => {
                            tracing::warn!(%seed, error = %e, "refused by a seed");
                            refused += 1;
                            if refused == round.len() {
                                return Err(e);
                            }
                            last = format!("{seed}: {e}");
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%seed, error = %e, "join attempt failed");
                            last = match e {
                                // Said by this function's own error: not twice.
                                Error::Join(e) => format!("{seed}: {e}"),
                                e => format!("{seed}: {e}"),
                            };
                        }
                        Err(_) => return Err(Error::join(format!("{last} (gave up after {timeout:?})"))),
                    },
                }
            }
            if !told {
                // Said once, from the first round that let nobody in: not 30 s of silence.
                tracing::warn!(seeds = ?seeds, last = %last, ?timeout, "waiting for a seed to let this node in");
                told = true;
            }
            tokio::select! {
                biased;
                joined = &mut member => {
                    let registry = joined.map_err(|_| Error::Shutdown)?;
                    core.endpoints.joined(&registry, me);
                    return Ok(());
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::join(format!("{last} (gave up after {timeout:?})")))
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

/// Every address `seeds` name, in order and once each: a name (`dchan-headless:7001`) gives all
/// its addresses (a StatefulSet's pods behind a headless Service). A seed that does not resolve
/// is kept as given: dialing it says why.
pub(crate) async fn resolve_all(seeds: &[String]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for seed in seeds {
        let resolved: Vec<String> = match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => addrs.map(|a| a.to_string()).collect(),
            Err(_) => Vec::new(),
        };
        let found = if resolved.is_empty() { vec![seed.clone()] } else { resolved };
        for a in found {
            if !all.contains(&a) {
                all.push(a);
            }
        }
    }
    all
}

impl super::Core {
    /// Leave the cluster: answers with the log index of this node's removal from the registry
    /// (what its hand-over waits for its own registry to reach, see `Switchboard::hand_over`).
    pub(crate) async fn leave(self: &Arc<Self>) -> Result<u64, Error> {
        let removed =
            self.on_leader(Request::Leave { node: self.id }).await.map_err(Error::registry)?;
        // The leader removed this node's endpoints before its membership: routers follow now
        // (this node's copy of the registry may never show it, once it is no longer a member).
        self.switch.left();
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_name_gives_every_address_and_a_bad_one_is_kept() {
        let all = super::resolve_all(&[
            "localhost:7001".to_owned(),
            "127.0.0.1:7001".to_owned(),
            "no-such-host.invalid:7001".to_owned(),
        ])
        .await;
        assert!(all.contains(&"127.0.0.1:7001".to_owned()), "{all:?}");
        assert_eq!(all.iter().filter(|a| *a == "127.0.0.1:7001").count(), 1, "once each: {all:?}");
        assert_eq!(all.last().map(String::as_str), Some("no-such-host.invalid:7001"));
    }
}
