//! What `send`, `recv` and `status` share: joining a cluster for the command's lifetime as a
//! non-voting member, and stopping on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::Failure;

/// How long a command keeps asking the seeds to let it in.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The options every client command takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Join {
    /// A member of the cluster to join through (repeat for more seeds).
    #[arg(
        long,
        required = true,
        env = "DCHAN_JOIN",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub(crate) join: Vec<String>,
    /// The address this command listens on while it is a member (default: the local address
    /// that routes to the first seed, any free port).
    #[arg(long)]
    pub(crate) listen: Option<String>,
    #[command(flatten)]
    pub(crate) options: NodeOptions,
}

/// What every command that starts a node takes: the cluster secret, TLS, and where to serve
/// the node's metrics and probes.
#[derive(Clone, Default, clap::Args)]
pub(crate) struct NodeOptions {
    /// The cluster secret (cookie) every node of the cluster shares; a node that does not know
    /// it is refused. Prefer the environment variable: a command line is visible to every user
    /// of the machine.
    #[arg(long, env = "DCHAN_COOKIE", hide_env_values = true)]
    pub(crate) cookie: Option<String>,
    /// Listen on an address other than loopback without a cookie or TLS (anyone who reaches the
    /// port is trusted with everything).
    #[arg(long)]
    pub(crate) insecure: bool,
    /// TLS between nodes: this node's certificate chain (PEM); with --tls-key and --tls-ca.
    #[arg(long, env = "DCHAN_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "DCHAN_TLS_KEY", requires_all = ["tls_cert", "tls_ca"])]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// The certificate authority that signs every node's certificate (PEM).
    #[arg(long, env = "DCHAN_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
    /// Serve this node's metrics (`/metrics`, Prometheus' text format) and probes (`/healthz`,
    /// `/readyz`) over HTTP on this address (port 0: any free port, printed).
    #[arg(long, env = "DCHAN_METRICS", value_name = "ADDR")]
    pub(crate) metrics: Option<String>,
    /// The round trip expected between the cluster's nodes, e.g. `300ms` across regions
    /// (default: a LAN). Raft's heartbeat, elections and the failure timeout follow from it;
    /// give every node the same.
    #[arg(long, env = "DCHAN_ROUND_TRIP", value_parser = humantime::parse_duration)]
    pub(crate) round_trip: Option<std::time::Duration>,
    /// What this node is, shown beside its id by `dchan status` and in logs (default for `send`,
    /// `recv`, `request` and `status`: the command and its channel, such as `send jobs`).
    #[arg(long, env = "DCHAN_NAME")]
    pub(crate) name: Option<String>,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("cookie", &self.cookie.as_ref().map(|_| ".."))
            .field("insecure", &self.insecure)
            .field("tls_cert", &self.tls_cert)
            .field("metrics", &self.metrics)
            .field("round_trip", &self.round_trip)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NodeOptions {
    /// `builder` with this secret and TLS (or none), serving metrics if asked.
    pub(crate) fn apply(
        &self,
        mut builder: dchan::NodeBuilder,
    ) -> Result<dchan::NodeBuilder, dchan::Error> {
        if let Some(c) = &self.cookie {
            builder = builder.cookie(c);
        }
        if let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            builder = builder.tls(dchan::TlsConfig::from_pem_files(cert, key, ca)?);
        }
        if self.insecure {
            builder = builder.insecure();
        }
        if let Some(addr) = &self.metrics {
            builder = builder.metrics(addr);
        }
        if let Some(rtt) = self.round_trip {
            builder = builder.round_trip(rtt);
        }
        if let Some(name) = &self.name {
            builder = builder.name(name);
        }
        Ok(builder)
    }
}

/// Fail at once, with a clear line, when no seed has anything listening (rather than retrying
/// for the whole join timeout).
pub(crate) async fn check_seeds(seeds: &[String]) -> Result<(), Failure> {
    let mut last = None;
    for seed in seeds {
        match tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(seed.as_str())).await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = Some(format!("nothing is listening at {seed} ({e})")),
            Err(_) => last = Some(format!("nothing answers at {seed} (no connection within 3 s)")),
        }
    }
    Err(Failure::new(last.unwrap_or_else(|| "no address to join given".into())))
}

/// The local address that routes to `seed` (no packet is sent: a UDP socket is only connected).
fn local_ip_towards(seed: &str) -> Option<std::net::IpAddr> {
    let to: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(seed).ok()?.next()?;
    let any: SocketAddr =
        if to.is_ipv4() { "0.0.0.0:0".parse().ok()? } else { "[::]:0".parse().ok()? };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(to).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// Say where `node` serves its metrics, if it does (on stderr: stdout may be the command's data).
pub(crate) fn say_metrics(node: &dchan::Node) {
    if let Some(addr) = node.metrics_addr() {
        eprintln!("metrics on http://{addr}/metrics (probes: /healthz, /readyz)");
    }
}

/// `name` cut to what a node's name may be (a channel's name can be longer).
pub(crate) fn node_name(name: &str) -> String {
    let clean: String = name.chars().filter(|c| !c.is_control()).collect();
    if clean.len() <= 120 {
        return clean;
    }
    let mut end = 120;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &clean[..end])
}

/// Join the cluster as a non-voting member, named `name` unless `--name` says otherwise.
pub(crate) async fn join(args: &Join, name: &str) -> Result<dchan::Node, Failure> {
    check_seeds(&args.join).await?;
    let listen = match &args.listen {
        Some(l) => l.clone(),
        None => match local_ip_towards(&args.join[0]) {
            Some(ip) => SocketAddr::new(ip, 0).to_string(),
            None => "127.0.0.1:0".into(),
        },
    };
    let node = args
        .options
        .apply(dchan::Node::builder().name(node_name(name)))?
        .listen(listen)
        .join(args.join.iter())
        .non_voting()
        .join_timeout(JOIN_TIMEOUT)
        .start()
        .await?;
    say_metrics(&node);
    Ok(node)
}

/// Ctrl-C or SIGTERM.
pub(crate) struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    pub(crate) fn new() -> Result<Self, Failure> {
        Ok(Stop {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Wait for either signal.
    pub(crate) async fn signalled(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
