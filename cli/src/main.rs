//! The `dchan` command line: run a node, send and receive JSON on a channel, watch a cluster,
//! benchmark it.
//!
//! ```text
//! dchan node --listen 127.0.0.1:7001                       # bootstrap a cluster
//! dchan node --listen 127.0.0.1:7002 --join 127.0.0.1:7001 # join it
//! dchan recv jobs --join 127.0.0.1:7001                    # print each message as a JSON line
//! seq 1 1000000 | dchan send jobs --join 127.0.0.1:7001    # send one JSON value per line
//! dchan request prices '{"item":"apple"}' --join 127.0.0.1:7001 # ask, print the answer
//! dchan status --join 127.0.0.1:7001 --watch               # members and channels, live
//! dchan bench                                              # like `nats bench`
//! ```
//!
//! `send`, `recv` and `status` join the cluster for their lifetime as non-voting members (their
//! exit never costs the cluster a voter) and leave when done. Their endpoints are untyped
//! (`dchan::Value`): JSON is carried as MessagePack with field names, so a typed Rust receiver
//! gets it as its type when the JSON has that shape. Errors are one line on stderr and a
//! non-zero exit.

mod bench;
mod client;
mod json;
mod node;
mod recv;
mod request;
mod send;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dchan",
    version,
    about = "Distributed channels: run nodes, send, receive, watch, benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node until Ctrl-C or SIGTERM: bootstrap a cluster, or join one with --join.
    Node(node::Args),
    /// Send JSON values to a channel: the arguments, or one per line of stdin.
    Send(send::Args),
    /// Send one request (a JSON object with a reply handle in one field) and print its answer.
    Request(request::Args),
    /// Print the messages of a channel as JSON lines, acknowledging each once printed.
    Recv(recv::Args),
    /// Show the members and channels of a cluster.
    Status(status::Args),
    /// Measure throughput and latency, one node per process by default.
    Bench(bench::Args),
    /// Internal: one node of `dchan bench` (started by it as a child process).
    #[command(hide = true)]
    BenchNode(bench::NodeArgs),
}

/// A failure to report: one line on stderr, and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: 1 }
    }

    /// Interrupted by Ctrl-C or SIGTERM (exit code 130, as shells report a SIGINT).
    pub(crate) fn interrupted(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: 130 }
    }
}

impl From<dchan::Error> for Failure {
    fn from(e: dchan::Error) -> Self {
        Failure::new(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::new(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A node prints what it does; the short-lived commands only what goes wrong.
    let default_filter = match cli.command {
        // openraft's own lines (an RPC error every 0.6 s for a peer already known down, routine
        // vote and membership warnings) are not the operator's alarm: dchan says what matters.
        Command::Node(_) => "info,openraft=off",
        _ => "error,openraft=off",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in a file or a log collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    let name = match &cli.command {
        Command::Node(_) => "node",
        Command::Send(_) => "send",
        Command::Recv(_) => "recv",
        Command::Request(_) => "request",
        Command::Status(_) => "status",
        Command::Bench(_) | Command::BenchNode(_) => "bench",
    };
    let result = match cli.command {
        // `bench` runs its own systems (one per simulated process with --in-process).
        Command::Bench(args) => bench::run(args),
        command => actix_rt::System::new().block_on(async move {
            match command {
                Command::Node(args) => node::run(args).await,
                Command::Send(args) => send::run(args).await,
                Command::Recv(args) => recv::run(args).await,
                Command::Request(args) => request::run(args).await,
                Command::Status(args) => status::run(args).await,
                Command::BenchNode(args) => bench::node(args).await,
                Command::Bench(_) => unreachable!("handled above"),
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("dchan {name}: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
