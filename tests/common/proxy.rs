//! A fault-injecting TCP proxy for multi-process tests: one in front of each node, which
//! advertises the proxy's address, so every connection between two nodes passes through the
//! proxy of the node that was dialed. The proxy reads the first frame of each connection (the
//! dialer's hello) to learn which node dialed, so [`Faults::isolate`] can cut one node off from
//! all others, both ways (its connections reset, new ones refused), [`Faults::cut_one_way`] can
//! hold back everything one node sends another (a black hole in one direction: bytes wait,
//! nothing is lost or corrupted), [`Faults::delay`] can slow every link, and [`Faults::heal`]
//! ends it all. Loopback only, ordinary user.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The faults in force for a set of proxies.
#[derive(Default)]
pub struct Faults {
    isolated: Mutex<HashSet<u64>>,
    /// (from, to): what `from` sends `to` is held back.
    one_way: Mutex<HashSet<(u64, u64)>>,
    /// Added to every chunk passed on.
    delay: Mutex<Option<std::time::Duration>>,
    /// Open connections: dialer, dialed, the task piping them.
    conns: Mutex<Vec<(u64, u64, AbortHandle)>>,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Faults::default())
    }

    /// Cut `node` off from every other node: its connections are reset, new ones refused.
    pub fn isolate(&self, node: u64) {
        self.isolated.lock().unwrap().insert(node);
        for (from, to, task) in self.conns.lock().unwrap().iter() {
            if *from == node || *to == node {
                task.abort();
            }
        }
    }

    /// Reset every open connection (what was in flight in the proxy is lost, as with a TCP reset);
    /// new connections go through. Returns how many were reset.
    pub fn reset(&self) -> usize {
        let conns = self.conns.lock().unwrap();
        let live = conns.iter().filter(|(_, _, t)| !t.is_finished()).count();
        for (_, _, task) in conns.iter() {
            task.abort();
        }
        live
    }

    /// Hold back everything `from` sends `to` (their connections stay up).
    pub fn cut_one_way(&self, from: u64, to: u64) {
        self.one_way.lock().unwrap().insert((from, to));
    }

    /// Delay every chunk on every link by `by`.
    pub fn delay(&self, by: std::time::Duration) {
        *self.delay.lock().unwrap() = Some(by);
    }

    /// Let every node reach every other again, at full speed.
    pub fn heal(&self) {
        self.isolated.lock().unwrap().clear();
        self.one_way.lock().unwrap().clear();
        *self.delay.lock().unwrap() = None;
    }

    fn held(&self, from: u64, to: u64) -> bool {
        self.one_way.lock().unwrap().contains(&(from, to))
    }

    fn cut(&self, from: u64, to: u64) -> bool {
        let isolated = self.isolated.lock().unwrap();
        isolated.contains(&from) || isolated.contains(&to)
    }
}

/// One proxy, in front of one node.
pub struct Proxy {
    pub addr: SocketAddr,
    task: AbortHandle,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// A proxy on 127.0.0.1:0 in front of the node that listens (or will) on `real`.
    pub async fn start(faults: &Arc<Faults>, real: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy addr");
        let faults = faults.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                faults.conns.lock().unwrap().retain(|(_, _, t)| !t.is_finished());
                tokio::spawn(pass(conn, real, faults.clone()));
            }
        })
        .abort_handle();
        Proxy { addr, task }
    }
}

/// The first frame each way, which says who is on that end: the dialer's hello
/// `[version, {"Hello": {node, ..}}]` and the acceptor's answer `[version, {"Challenge": {node, ..}}]`.
#[derive(serde::Deserialize)]
enum Hello {
    Hello { node: u64 },
    Challenge { node: u64 },
}

/// Read one length-delimited frame (the hello), whole, with its prefix.
async fn hello(conn: &mut TcpStream) -> Option<(u64, Vec<u8>)> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).await.ok()?;
    let n = u32::from_be_bytes(len) as usize;
    if n > 64 * 1024 {
        return None;
    }
    let mut frame = vec![0u8; 4 + n];
    frame[..4].copy_from_slice(&len);
    conn.read_exact(&mut frame[4..]).await.ok()?;
    let (_, Hello::Hello { node } | Hello::Challenge { node }) =
        rmp_serde::from_slice::<(u8, Hello)>(&frame[4..]).ok()?;
    Some((node, frame))
}

/// Pass the first frame each way through (learning who is on each end), then pipe the connection, unless a
/// fault cuts it.
async fn pass(mut conn: TcpStream, real: SocketAddr, faults: Arc<Faults>) {
    let Some((from, first)) = hello(&mut conn).await else { return };
    if faults.cut(from, from) {
        return;
    }
    let Ok(mut node) = TcpStream::connect(real).await else { return };
    if node.write_all(&first).await.is_err() {
        return;
    }
    let Some((to, answer)) = hello(&mut node).await else { return };
    if faults.cut(from, to) || conn.write_all(&answer).await.is_err() {
        return;
    }
    let (conn_rd, conn_wr) = conn.into_split();
    let (node_rd, node_wr) = node.into_split();
    let (f1, f2) = (faults.clone(), faults.clone());
    let piping = tokio::spawn(async move {
        tokio::select! {
            _ = pump(conn_rd, node_wr, from, to, f1) => {}
            _ = pump(node_rd, conn_wr, to, from, f2) => {}
        }
    });
    faults.conns.lock().unwrap().push((from, to, piping.abort_handle()));
    // A fault set between the check above and the registration just now.
    if faults.cut(from, to) {
        piping.abort();
    }
    let _ = piping.await;
}

/// Pass what `from` sends on to `to`, chunk by chunk, as the faults allow. A delay holds each
/// chunk for that long after it was read, without holding up the chunks behind it (a slow link,
/// not a narrow one).
async fn pump(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    from: u64,
    to: u64,
    faults: Arc<Faults>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let holding = faults.clone();
    let reading = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due =
                tokio::time::Instant::now() + faults.delay.lock().unwrap().unwrap_or_default();
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let writing = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            // Held back, not dropped: a one-way black hole that ends when healed.
            while holding.held(from, to) {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = reading => {}
        _ = writing => {}
    }
}
