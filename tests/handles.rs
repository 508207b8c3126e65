//! The public handles are thread-safe where users need them to be, and debuggable.

use std::fmt::Debug;

fn send_sync<T: Send + Sync + Debug>() {}
fn send<T: Send + Debug>() {}

/// Not even `Debug` is asked of the message type.
struct Opaque;

#[test]
fn public_handles_are_send_sync_and_debug() {
    send_sync::<dchan::Node>();
    send_sync::<dchan::Sender<u64>>();
    send_sync::<dchan::ClusterInfo>();
    send_sync::<dchan::Error>();
    send::<dchan::Receiver<u64>>();
    send::<dchan::ReceiverBuilder<u64>>();
    // Errors hand any message back and are `Debug` and `Error` without `T: Debug`.
    fn error<E: std::error::Error + Send + Sync>() {}
    error::<dchan::SendError<Opaque>>();
    error::<dchan::TrySendError<Opaque>>();
    error::<dchan::SendTimeoutError<Opaque>>();
    error::<dchan::TryRecvError>();
    error::<dchan::RequestError>();
    error::<dchan::oneshot::RecvError>();
    // A reply handle goes wherever a message goes; its answer is awaited on any task.
    send_sync::<dchan::oneshot::Sender<Opaque>>();
    send_sync::<dchan::oneshot::Receiver<Opaque>>();
    assert_eq!(format!("{:?}", dchan::TrySendError::Full(Opaque)), "Full(..)");
    assert_eq!(dchan::SendError(7).into_inner(), 7);
}
