//! A fault-injecting TCP proxy for multi-process tests: one in front of each node, which
//! advertises the proxy's address, so every connection between two nodes passes through the
//! proxy of the node that was dialed. The proxy reads the first frame of each connection (the
//! dialer's hello) to learn which node dialed, so [`Faults::isolate`] can cut one node off from
//! all others, both ways, and [`Faults::heal`] let it back. Loopback only, ordinary user.

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

    /// Let every node reach every other again.
    pub fn heal(&self) {
        self.isolated.lock().unwrap().clear();
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

/// The hello that opens every connection between nodes, each way:
/// `[version, {"Hello": {node, addr}}]`.
#[derive(serde::Deserialize)]
enum Hello {
    Hello {
        node: u64,
        #[allow(dead_code)]
        addr: String,
    },
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
    let (_, Hello::Hello { node, .. }) = rmp_serde::from_slice::<(u8, Hello)>(&frame[4..]).ok()?;
    Some((node, frame))
}

/// Pass the hellos through (learning who is on each end), then pipe the connection, unless a
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
    let piping = tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut conn, &mut node).await;
    });
    faults.conns.lock().unwrap().push((from, to, piping.abort_handle()));
    // A fault set between the check above and the registration just now.
    if faults.cut(from, to) {
        piping.abort();
    }
    let _ = piping.await;
}
