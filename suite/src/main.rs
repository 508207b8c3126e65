//! The dchan benchmark suite: one command that measures dchan as users run it (one node per
//! process) side by side with the baselines it should be read against, in one run on one
//! machine, and prints a table with ratios.
//!
//! The parent (`dchan-suite`, [`suite`]) starts every measured program as a child process of
//! this same binary (`dchan-suite worker SPEC`, [`worker`]), tells them when to go, and reads what
//! they report on stdout ([`harness`]). The workers are: raw framed TCP ([`raw_tcp`]), NATS core
//! through a `nats-server` this suite starts on loopback ([`nats_core`]), Zenoh peer to peer
//! ([`zenoh_peer`]), dchan nodes ([`dchan_nodes`]), and in-process channels ([`in_process`]).

mod ctx;
mod dchan_nodes;
mod harness;
mod in_process;
mod nats_core;
mod raw_tcp;
mod report;
mod spec;
mod suite;
mod worker;
mod zenoh_peer;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "dchan-suite",
    about = "dchan side by side with raw TCP, tokio mpsc, NATS and Zenoh"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: suite::Args,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// One measured program (started by the suite; SPEC is JSON).
    #[command(hide = true)]
    Worker { spec: String },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Worker { spec }) => worker::main(&spec),
        None => {
            let r = suite::run(cli.run);
            // The certificates the TLS run made, if it ran.
            let _ = std::fs::remove_dir_all(suite::tls_dir());
            r
        }
    };
    if let Err(e) = result {
        eprintln!("dchan-suite: {e}");
        std::process::exit(1);
    }
}

/// Every failure of the suite: one line for a person.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// Nanoseconds since the Unix epoch: comparable between processes of one machine.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
