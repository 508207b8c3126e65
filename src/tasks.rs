//! The node's background work: every task a node starts runs on the node's own runtime (the one
//! [`NodeBuilder::start`](crate::NodeBuilder::start) ran on), whichever thread or runtime asks
//! for it, and is tracked so that [`Node::shutdown`](crate::Node::shutdown) can wait for it.
//!
//! A `close()` called from a short-lived runtime, or a handle dropped on a plain thread, still
//! gets its follow-up work (a fence, a deregistration) done: it is spawned here, not there.

use std::future::Future;

use tokio::runtime::Handle;
use tokio_util::task::TaskTracker;

/// Spawns on the node's runtime and keeps count.
#[derive(Debug, Clone)]
pub(crate) struct Tasks {
    tracker: TaskTracker,
    runtime: Handle,
}

impl Tasks {
    /// Tasks on the runtime this is called from. Panics outside a tokio runtime, like any spawn
    /// would; `start` is always awaited inside one.
    pub(crate) fn here() -> Self {
        Tasks { tracker: TaskTracker::new(), runtime: Handle::current() }
    }

    /// Run `task` on the node's runtime.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn_on(task, &self.runtime);
    }

    /// Run `task` on the node's runtime, not counted: the shutdown itself, which waits for the
    /// counted ones (see [`Node::shutdown`](crate::Node::shutdown)).
    pub(crate) fn detach<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.runtime.spawn(task));
    }

    /// No more tasks will be started; wait for those running to end.
    pub(crate) async fn close_and_wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}
