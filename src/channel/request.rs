//! Request/reply in one call, on any [`Sender`]: a reply handle made on this node
//! ([`oneshot`](crate::oneshot)) goes inside the request, and the answer comes straight back
//! from whichever node takes it. [`Sender::request`] asks one receiver (the work queue's
//! choice), [`Sender::request_many`] every receiver (NATS' "request many"). Nothing is
//! committed per request.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::oneshot;
use crate::channel::sender::Sender;
use crate::error::{SendError, SendTimeoutError};

/// [`Sender::request`](crate::Sender::request) (or one of its variants) got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The channel is closed: the request was not sent.
    #[error("channel closed: the request was not sent")]
    Closed,
    /// No answer within the deadline (the request may have been sent, and may still be
    /// answered: that answer is refused).
    #[error("no answer within the deadline")]
    Timeout,
    /// The request was sent, and no answer can come: why.
    #[error("no answer: {0}")]
    NoAnswer(#[from] oneshot::RecvError),
}

impl<T> Sender<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    /// Send a request to one receiver and wait for its answer: `make` builds the message
    /// around a new reply handle, which whoever takes it answers with
    /// [`oneshot::Sender::send`](crate::oneshot::Sender::send).
    ///
    /// ```
    /// # #[actix::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Double {
    ///     n: u64,
    ///     reply: dchan::oneshot::Sender<u64>,
    /// }
    /// let node = dchan::Node::builder().bootstrap().start().await?;
    /// let mut rx = node.receiver::<Double>("double").await?;
    /// let tx = node.sender::<Double>("double").await?;
    /// tokio::spawn(async move {
    ///     while let Some(ask) = rx.recv().await {
    ///         let _ = ask.reply.send(ask.n * 2);
    ///     }
    /// });
    /// assert_eq!(tx.request(|reply| Double { n: 21, reply }).await?, 42);
    /// # drop(tx);
    /// # node.shutdown().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RequestError::Closed`] if the channel is closed; [`RequestError::NoAnswer`] if the
    /// request went out and no answer can come (the handle was dropped unanswered, or the node
    /// holding it left the cluster and no other receiver took the request over). Without a
    /// deadline this waits as long as the request waits for a receiver: see
    /// [`request_timeout`](Sender::request_timeout).
    ///
    /// # Cancel safety
    ///
    /// Cancelling stops the wait: an answer that comes after is refused at the answering side
    /// (its `send` returns the value).
    pub async fn request<R, F>(&self, make: F) -> Result<R, RequestError>
    where
        R: DeserializeOwned,
        F: FnOnce(crate::oneshot::Sender<R>) -> T,
    {
        let (me, peers) = self.registrar().replies();
        let (reply, answer) = oneshot::pair::<R>(me, peers);
        self.send(make(reply)).await.map_err(|SendError(_)| RequestError::Closed)?;
        Ok(answer.await?)
    }

    /// Like [`request`](Sender::request), giving up after `timeout`: the time to find a
    /// receiver with room and the time to answer together.
    ///
    /// # Errors
    ///
    /// As [`request`](Sender::request), and [`RequestError::Timeout`] when no answer came in
    /// time.
    pub async fn request_timeout<R, F>(&self, timeout: Duration, make: F) -> Result<R, RequestError>
    where
        R: DeserializeOwned,
        F: FnOnce(crate::oneshot::Sender<R>) -> T,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let (me, peers) = self.registrar().replies();
        let (reply, answer) = oneshot::pair::<R>(me, peers);
        match self.send_timeout(make(reply), timeout).await {
            Ok(()) => {}
            Err(SendTimeoutError::Closed(_)) => return Err(RequestError::Closed),
            Err(SendTimeoutError::Timeout(_)) => return Err(RequestError::Timeout),
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(RequestError::Timeout),
        }
    }

    /// Broadcast a request to every receiver registered now and collect their answers: up to
    /// `max`, within `timeout`. Returns early once every receiver reached has answered (or
    /// dropped its copy of the handle unanswered), so a caller that knows how many answer need
    /// not wait out the deadline; the answers come in the order they arrived. NATS calls this
    /// "request many".
    ///
    /// Each receiver's copy of the handle answers once; answers past `max` are refused at the
    /// answering side. An answer that does not decode as `R` is logged and not counted.
    ///
    /// # Errors
    ///
    /// [`RequestError::Closed`] if the channel is closed. No answer at all is not an error: the
    /// vector is empty.
    pub async fn request_many<R, F>(
        &self,
        max: usize,
        timeout: Duration,
        make: F,
    ) -> Result<Vec<R>, RequestError>
    where
        R: DeserializeOwned,
        F: FnOnce(crate::oneshot::Sender<R>) -> T,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let (me, peers) = self.registrar().replies();
        let (reply, mut answers) = oneshot::many::<R>(me, peers, max);
        let reached = match tokio::time::timeout_at(deadline, self.broadcast(make(reply))).await {
            Ok(Ok(reached)) => reached,
            Ok(Err(SendError(_))) => return Err(RequestError::Closed),
            // (Some receivers may have a copy: their answers are refused from now on.)
            Err(_) => return Ok(Vec::new()),
        };
        let mut got = Vec::new();
        let mut heard = 0;
        while got.len() < max && heard < reached {
            match tokio::time::timeout_at(deadline, answers.next()).await {
                Ok(Some(Ok(value))) => got.push(value),
                Ok(Some(Err(e))) => {
                    if let crate::oneshot::RecvError::Decode(why) = &e {
                        tracing::warn!(channel = self.channel(), %why, "an answer that does not decode");
                    }
                }
                Ok(None) | Err(_) => break,
            }
            heard += 1;
        }
        Ok(got)
    }
}
