//! What a worker process is told to be: the parent serializes a [`Spec`] to JSON on the worker's
//! command line.

use serde::{Deserialize, Serialize};

/// One message of the throughput runs that carry structs (dchan and the rmp-serde baseline).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Msg {
    pub(crate) seq: u64,
    pub(crate) payload: bytes::Bytes,
}

/// A request of the request/reply runs: answered with its body.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Ask {
    pub(crate) body: bytes::Bytes,
    pub(crate) reply: dchan::oneshot::Sender<bytes::Bytes>,
}

/// A node's certificate, key and the authority that signed every node's, as PEM files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TlsFiles {
    pub(crate) cert: String,
    pub(crate) key: String,
    pub(crate) ca: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Mode {
    Queue,
    Broadcast,
}

/// A worker. Receivers print `ready [ADDR]` once they can receive, then `done N NS` (messages
/// so far, time of the last) when they have the count they expect, or, when they cannot know it
/// (work queues), each time they run dry; senders print `ready`, wait for `go` on
/// stdin, then print `start NS`; latency workers print `rtt N P50 P99` (ns); every worker stops
/// when its stdin closes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Spec {
    /// Busy-loop one core until stopped.
    Spin,
    /// Raw framed TCP: listen, count `expect` messages (decoding `Msg`s when `rmp`).
    RawRecv { rmp: bool, expect: u64 },
    /// Raw framed TCP: `count` frames of `size` bytes, or `Msg`s batched into 64 KiB frames.
    RawSend { rmp: bool, addr: String, count: u64, size: usize },
    /// Raw framed TCP to several receivers: `count` `Msg`s batched into 64 KiB frames, every
    /// frame to each (`fan_out`), or frames dealt out in turn, each receiver's messages numbered
    /// from 0 (`count` in all).
    RawSendMany { addrs: Vec<String>, count: u64, fan_out: bool },
    /// Raw framed TCP: echo every frame.
    RawPong,
    /// Raw framed TCP: `rounds` round trips of a `size`-byte frame.
    RawPing { addr: String, rounds: usize, size: usize },
    /// A bounded tokio mpsc channel in one process (sender task and receiver task).
    Mpsc { count: u64, size: usize },
    /// NATS core subscriber (in queue group `queue` if given).
    /// `expect`: messages for this subscriber, 0 when not known (queue group).
    NatsRecv { url: String, subject: String, queue: Option<String>, capacity: usize, expect: u64 },
    /// NATS core publisher.
    NatsSend { url: String, subject: String, count: u64, size: usize },
    /// NATS request/reply: the replier (in queue group `queue` if given).
    NatsReply { url: String, subject: String, queue: Option<String> },
    /// NATS request/reply: the requester.
    NatsRequest { url: String, subject: String, rounds: usize, size: usize },
    /// NATS request/reply: `count` requests, `inflight` at a time; reports `start` and `done`.
    NatsRequests { url: String, subject: String, count: u64, inflight: usize, size: usize },
    /// Zenoh peer listening on `port`, callback subscriber.
    ZenohRecv { port: u16, expect: u64 },
    /// Zenoh peer publishing to the peer on `port`.
    ZenohSend { port: u16, count: u64, size: usize },
    /// Zenoh: answer each ping with a pong.
    ZenohPong { port: u16 },
    /// Zenoh: `rounds` round trips.
    ZenohPing { port: u16, rounds: usize, size: usize },
    /// A dchan node (bootstrapping when `join` is `None`) with `receivers` receivers and
    /// `senders` senders of `channel`; each sender sends `count` messages of `size` bytes once
    /// `wait_for` receivers exist.
    Dchan {
        join: Option<String>,
        channel: String,
        receivers: usize,
        senders: usize,
        count: u64,
        size: usize,
        mode: Mode,
        wait_for: usize,
        capacity: usize,
        /// Messages for this node's receivers together, 0 when not known (work queue).
        expect: u64,
        /// TLS between the nodes, from these PEM files.
        tls: Option<TlsFiles>,
        /// Each node serves its metrics (`NodeBuilder::metrics`), published every second.
        metrics: bool,
        /// Receivers take up to this many messages a call (`Receiver::recv_many`); 0: one at a
        /// time (`recv`).
        batch: usize,
        /// The channel has one sender: each receiver checks that what it takes comes in the
        /// order sent (a worker that finds otherwise stops with an error).
        ordered: bool,
    },
    /// One dchan node, a sender and a receiver on it.
    DchanLocal { count: u64, size: usize, capacity: usize, metrics: bool },
    /// dchan: answer each message of `ping` on `pong`.
    DchanPong,
    /// dchan: `rounds` round trips through the `DchanPong` node at `join`.
    DchanPing { join: String, rounds: usize, size: usize },
    /// dchan: a node (bootstrapping when `join` is `None`) answering every request of `asks`
    /// with its body, through the reply handle in it.
    DchanAnswer { join: Option<String> },
    /// dchan: `rounds` requests, one at a time (`Sender::request`), through the `DchanAnswer`
    /// node at `join`.
    DchanRequest { join: String, rounds: usize, size: usize },
    /// dchan: `count` requests, `inflight` at a time, once `answerers` receivers exist; reports
    /// `start` and `done`.
    DchanRequests { join: String, count: u64, inflight: usize, size: usize, answerers: usize },
    /// A dchan member; with `registrations`, it waits until the cluster has `voters` voters,
    /// then creates that many receivers one after another and reports `rtt`-style percentiles
    /// of the time each took to be registered.
    DchanMember { join: Option<String>, voters: usize, registrations: usize },
}
