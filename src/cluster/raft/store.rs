//! Raft storage: the log in memory, and the state machine that is the [`Registry`].
//!
//! Every node applies the committed log here; each apply publishes the new registry on a `watch`
//! channel, which is how routers learn of new receivers, closes and departures without polling.
//! Both halves are checked by openraft's own storage test suite (`openraft::testing::Suite`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::TypeConfig;
use crate::cluster::registry::Registry;
use crate::ids::NodeId;
use crate::rpc::Outcome;
use crate::sync::lock;

type Membership = StoredMembership<NodeId, crate::cluster::raft::MemberNode>;

/// The Raft log, in memory. Cloning shares it (the clone is the log reader openraft asks for).
#[derive(Debug, Clone, Default)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// The index of the last entry known committed (saved by Raft), if any.
    pub(crate) fn committed(&self) -> Option<u64> {
        lock(&self.inner).committed.map(|c| c.index)
    }

    /// The last entry of the log (or the last purged one, if the log is empty after a snapshot).
    pub(crate) fn last(&self) -> Option<LogId<NodeId>> {
        lock(&self.inner).last()
    }

    /// Make `last` this log's last entry (as a snapshot would), for tests of what reads it.
    #[cfg(test)]
    pub(crate) fn set_last_for_test(&self, last: Option<LogId<NodeId>>) {
        let mut inner = lock(&self.inner);
        inner.log.clear();
        inner.last_purged = last;
    }
}

#[derive(Debug, Default)]
struct LogInner {
    last_purged: Option<LogId<NodeId>>,
    log: BTreeMap<u64, Entry<TypeConfig>>,
    committed: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

impl LogInner {
    fn last(&self) -> Option<LogId<NodeId>> {
        self.log.values().next_back().map(|e| e.log_id).or(self.last_purged)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(lock(&self.inner).log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = lock(&self.inner);
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id: inner.last() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        lock(&self.inner).vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(lock(&self.inner).vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        lock(&self.inner).committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(lock(&self.inner).committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut inner = lock(&self.inner);
            for e in entries {
                inner.log.insert(e.log_id.index, e);
            }
        }
        // In memory, "flushed" is "stored".
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        lock(&self.inner).log.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = lock(&self.inner);
        inner.last_purged = Some(log_id);
        inner.log = inner.log.split_off(&(log_id.index + 1));
        Ok(())
    }
}

/// What a snapshot holds: the registry and where it stands in the log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SmData {
    last_applied: Option<LogId<NodeId>>,
    membership: Membership,
    registry: Registry,
}

/// The last snapshot: a copy of the state machine's data, which shares all but what changed since
/// with the live registry (persistent maps), serialized only when a node asks for it.
#[derive(Debug)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, crate::cluster::raft::MemberNode>,
    data: SmData,
}

/// `data` serialized, on a blocking thread: a large registry takes a while, and the node's own
/// runtime carries its messages meanwhile.
async fn serialize(data: SmData) -> Result<Vec<u8>, StorageError<NodeId>> {
    let bytes = tokio::task::spawn_blocking(move || rmp_serde::to_vec_named(&data))
        .await
        .map_err(io_error)?;
    bytes.map_err(io_error)
}

/// The state machine: applies registry commands and publishes each new registry.
#[derive(Debug, Clone)]
pub(crate) struct StateMachine {
    data: Arc<Mutex<SmData>>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    snapshot_seq: Arc<Mutex<u64>>,
    published: Arc<watch::Sender<Arc<Registry>>>,
}

impl StateMachine {
    /// A new, empty state machine and the watch its registries are published on.
    pub(crate) fn new() -> (Self, watch::Receiver<Arc<Registry>>) {
        let (tx, rx) = watch::channel(Arc::new(Registry::default()));
        let sm = StateMachine {
            data: Arc::default(),
            snapshot: Arc::default(),
            snapshot_seq: Arc::default(),
            published: Arc::new(tx),
        };
        (sm, rx)
    }

    /// Publish `registry` as the newest: O(1), since its maps are persistent (the copy shares
    /// everything with the state machine's own).
    fn publish(&self, registry: &mut Registry) {
        registry.version += 1;
        self.published.send_replace(Arc::new(registry.clone()));
    }
}

fn set_membership(registry: &mut Registry, m: &Membership) {
    let nodes = m.membership().nodes().map(|(id, n)| (*id, n.addr.clone()));
    registry.set_membership(nodes, m.membership().voter_ids());
}

fn io_error(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(&e).into()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        // Copied under the lock in O(1) (persistent maps): applying goes on meanwhile.
        let copy = lock(&self.data).clone();
        let (last_applied, membership) = (copy.last_applied, copy.membership.clone());
        let seq = {
            let mut s = lock(&self.snapshot_seq);
            *s += 1;
            *s
        };
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("--{seq}"),
        };
        let meta =
            SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        *lock(&self.snapshot) = Some(StoredSnapshot { meta: meta.clone(), data: copy });
        // The bytes are made when a node asks for the snapshot (`get_current_snapshot`), not
        // here: openraft (pinned at 0.9.25) reads only the meta of what the builder returns, and
        // serializing a large registry at every snapshot left its transient buffers in the
        // allocator's arenas (about 100 bytes per endpoint of resident memory, measured).
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(Vec::new())) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let d = lock(&self.data);
        Ok((d.last_applied, d.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut d = lock(&self.data);
        let mut out = Vec::new();
        for entry in entries {
            d.last_applied = Some(entry.log_id);
            out.push(match entry.payload {
                EntryPayload::Blank => Outcome::Done,
                EntryPayload::Normal(cmd) => d.registry.apply(&cmd),
                EntryPayload::Membership(m) => {
                    d.membership = StoredMembership::new(Some(entry.log_id), m);
                    let SmData { membership, registry, .. } = &mut *d;
                    set_membership(registry, membership);
                    Outcome::Done
                }
            });
        }
        d.registry.applied = d.last_applied.map_or(0, |l| l.index);
        self.publish(&mut d.registry);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, crate::cluster::raft::MemberNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let mut new: SmData = rmp_serde::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        new.last_applied = meta.last_log_id;
        new.registry.share_types();
        new.membership = meta.last_membership.clone();
        let kept = {
            let mut d = lock(&self.data);
            // Versions only grow, whatever the snapshot holds.
            new.registry.version = d.registry.version;
            new.registry.applied = meta.last_log_id.map_or(0, |l| l.index);
            *d = new;
            let SmData { membership, registry, .. } = &mut *d;
            set_membership(registry, membership);
            self.publish(registry);
            d.clone()
        };
        *lock(&self.snapshot) = Some(StoredSnapshot { meta: meta.clone(), data: kept });
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let stored = lock(&self.snapshot).as_ref().map(|s| (s.meta.clone(), s.data.clone()));
        let Some((meta, data)) = stored else { return Ok(None) };
        let bytes = serialize(data).await?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, ()> for Builder {
        async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError<NodeId>> {
            Ok(((), LogStore::default(), StateMachine::new().0))
        }
    }

    #[test]
    fn openraft_storage_suite() -> Result<(), Box<StorageError<NodeId>>> {
        Suite::test_all(Builder).map_err(Box::new)
    }
}
