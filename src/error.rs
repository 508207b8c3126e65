//! Errors: one type per channel operation, each handing the unsent message back (as tokio's
//! `mpsc` does), and [`Error`] for everything the node itself can fail at.
//!
//! The channel errors do not require `T: Debug` for their `Debug` impl, so any message type can be
//! `?`-ed or `unwrap`-ed.

use std::fmt;

/// What a node, a registration or the wire can fail at.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Binding, dialing or reading a socket failed.
    Io(std::io::Error),
    /// A channel keeps the message type of its first endpoint; this endpoint asked for another.
    TypeMismatch {
        /// The channel's name.
        channel: String,
        /// The message type the channel was created with.
        existing: String,
        /// The message type this endpoint asked for.
        requested: String,
    },
    /// Not a channel name: 1 to 255 bytes, without whitespace or control characters.
    InvalidName(String),
    /// The channel was closed; no endpoint can be added to it any more.
    ChannelClosed(String),
    /// Raft could not commit the request (no leader reachable, the node is shutting down, ...).
    Registry(Cause),
    /// No majority of the voters answered in time: the registry cannot change now (this node
    /// may be cut off from the rest, or too many voters are down). Channels between reachable
    /// nodes keep working; try again later.
    NoQuorum {
        /// How long the write was tried.
        waited: std::time::Duration,
        /// Why the last attempt failed.
        last: String,
    },
    /// Joining the cluster through the given addresses failed.
    Join(Cause),
    /// A connection's handshake failed: this node and the other do not share the cluster secret
    /// (the cookie), or the other refused this node.
    Auth(Cause),
    /// A message or frame could not be encoded or decoded.
    Codec(Cause),
    /// The node has been shut down.
    Shutdown,
    /// The builder was given an inconsistent configuration.
    Config(Cause),
    /// A send failed because the channel is closed (converted from [`SendError`], whose message
    /// is dropped by the conversion).
    Closed,
}

// Display and source by hand (not thiserror's): an error's message says what failed and, as it
// always has, why; `source()` is the error that caused it when there is one, skipping the
// `Cause` that carries it, so that a report of the chain does not say the message twice.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::TypeMismatch { channel, existing, requested } => {
                write!(f, "channel `{channel}` carries `{existing}`, not `{requested}`")
            }
            Error::InvalidName(why) => write!(f, "invalid channel name: {why}"),
            Error::ChannelClosed(channel) => write!(f, "channel `{channel}` is closed"),
            Error::Registry(c) => write!(f, "registry: {c}"),
            Error::NoQuorum { waited, last } => write!(
                f,
                "no quorum: the registry could not commit within {waited:?} (last attempt: {last})"
            ),
            Error::Join(c) => write!(f, "could not join the cluster: {c}"),
            Error::Auth(c) => write!(f, "authentication failed: {c}"),
            Error::Codec(c) => write!(f, "codec: {c}"),
            Error::Shutdown => write!(f, "the node is shut down"),
            Error::Config(c) => write!(f, "invalid configuration: {c}"),
            Error::Closed => write!(f, "channel closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Registry(c)
            | Error::Join(c)
            | Error::Auth(c)
            | Error::Codec(c)
            | Error::Config(c) => std::error::Error::source(c),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

/// What an [`Error`] of the node says, and the error that caused it, when one did: its
/// [`source`](std::error::Error::source), so that an error chain (`anyhow`'s `{:#}`, a
/// `tracing` error field) shows the cause whatever its type. Displays as the message alone.
pub struct Cause {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Cause {
    /// A cause that says `message`, caused by `source`.
    pub(crate) fn new(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Cause { message: message.into(), source: Some(Box::new(source)) }
    }

    /// A cause that says what `source` says, and is caused by it.
    pub(crate) fn of(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause::new(source.to_string(), source)
    }

    /// What the error says.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            None => write!(f, "{:?}", self.message),
            Some(source) => write!(f, "{:?} (caused by {source:?})", self.message),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A cause reads as its message (these variants held a `String` before).
impl std::ops::Deref for Cause {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Cause { message, source: None }
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Cause { message: message.to_owned(), source: None }
    }
}

impl Error {
    pub(crate) fn registry(cause: impl Into<Cause>) -> Self {
        Error::Registry(cause.into())
    }

    pub(crate) fn join(cause: impl Into<Cause>) -> Self {
        Error::Join(cause.into())
    }

    pub(crate) fn auth(cause: impl Into<Cause>) -> Self {
        Error::Auth(cause.into())
    }

    pub(crate) fn codec(cause: impl Into<Cause>) -> Self {
        Error::Codec(cause.into())
    }

    pub(crate) fn config(cause: impl Into<Cause>) -> Self {
        Error::Config(cause.into())
    }
}

impl<T> From<SendError<T>> for Error {
    fn from(_: SendError<T>) -> Self {
        Error::Closed
    }
}

/// [`Sender::send`](crate::Sender::send) or [`Sender::broadcast`](crate::Sender::broadcast)
/// failed: the channel is closed. The message is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

impl<T> SendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "channel closed")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// [`Sender::try_send`](crate::Sender::try_send) failed. The message is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// Every receiver of the channel is full (or the network window to it is).
    Full(T),
    /// The channel has no receiver right now.
    NoReceivers(T),
    /// The channel is closed.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(t) | TrySendError::NoReceivers(t) | TrySendError::Closed(t) => t,
        }
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::NoReceivers(_) => f.write_str("NoReceivers(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySendError::Full(_) => "no available capacity",
            TrySendError::NoReceivers(_) => "channel has no receivers",
            TrySendError::Closed(_) => "channel closed",
        })
    }
}

impl<T> std::error::Error for TrySendError<T> {}

/// [`Sender::send_timeout`](crate::Sender::send_timeout) failed. The message is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum SendTimeoutError<T> {
    /// The deadline passed with no receiver able to take the message.
    Timeout(T),
    /// The channel is closed.
    Closed(T),
}

impl<T> SendTimeoutError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(t) | SendTimeoutError::Closed(t) => t,
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendTimeoutError::Timeout(_) => "timed out waiting on send operation",
            SendTimeoutError::Closed(_) => "channel closed",
        })
    }
}

impl<T> std::error::Error for SendTimeoutError<T> {}

/// [`Receiver::try_recv`](crate::Receiver::try_recv) found nothing to return.
#[derive(Debug, PartialEq, Eq, Clone, Copy, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing is buffered right now.
    #[error("receiving on an empty channel")]
    Empty,
    /// The channel is closed and everything it held has been received.
    #[error("receiving on a closed channel")]
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_the_source_and_the_message_reads_as_before() {
        let refused = std::io::Error::other("refused");
        let e = Error::codec(Cause::new("10.0.0.5:7001: refused", refused));
        assert_eq!(e.to_string(), "codec: 10.0.0.5:7001: refused");
        let source = std::error::Error::source(&e).expect("the cause");
        assert!(source.downcast_ref::<std::io::Error>().is_some(), "typed: {source:?}");
        assert!(std::error::Error::source(source).is_none(), "the chain ends there");
        let plain = Error::registry("no leader");
        assert!(std::error::Error::source(&plain).is_none(), "nothing caused it");
        match plain {
            Error::Registry(cause) => assert!(cause.contains("no leader"), "{cause}"),
            other => panic!("not a registry error: {other}"),
        }
    }
}
