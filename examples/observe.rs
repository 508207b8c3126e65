//! Observe: a node that serves its metrics and probes, a slow consumer, and what a scrape of
//! `/metrics` shows of it. Needs the `prometheus` feature:
//!
//! ```text
//! cargo run --example observe --features prometheus
//! ```
//!
//! 1. A node bootstraps a cluster of one and serves `/metrics`, `/healthz` and `/readyz` on a
//!    free port of 127.0.0.1, printed (`NodeBuilder::metrics`; `dchan node --metrics ADDR`
//!    does the same).
//! 2. A receiver of capacity 8 takes a message every 50 ms; a sender sends 100 and waits for
//!    room.
//! 3. Every half second, the example scrapes its own node, as Prometheus would, and prints the
//!    channel's lines: what was sent and taken, what waits in the receiver, the blocked sends.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

type BoxError = Box<dyn std::error::Error>;

/// `GET path` on `addr`, the whole answer (the node closes each connection after one answer).
async fn get(addr: std::net::SocketAddr, path: &str) -> Result<String, BoxError> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await?;
    Ok(answer)
}

#[actix::main]
async fn main() -> Result<(), BoxError> {
    // 1. A node with its metrics served.
    let node =
        dchan::Node::builder().name("observed").metrics("127.0.0.1:0").bootstrap().start().await?;
    let addr = node.metrics_addr().ok_or("the node serves no metrics")?;
    println!("metrics on http://{addr}/metrics (probes: /healthz, /readyz)");
    let ready = get(addr, "/readyz").await?;
    println!("/readyz: {}", ready.lines().next().unwrap_or(""));

    // 2. A slow consumer: capacity 8, one message taken every 50 ms.
    let mut rx = node.receiver::<u64>("jobs").capacity(8).await?;
    let tx = node.sender::<u64>("jobs").await?;
    let sending = actix_rt::spawn(async move {
        for i in 0..100 {
            tx.send(i).await.expect("the channel stays open");
        }
    });
    let taking = actix_rt::spawn(async move {
        let mut taken = 0;
        while taken < 100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match rx.recv().await {
                Some(_) => taken += 1,
                None => break,
            }
        }
    });

    // 3. What a scrape shows, three times (figures are published once a second, and before
    // each scrape).
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let body = get(addr, "/metrics").await?;
        println!("--");
        for line in body.lines().filter(|l| l.contains("channel=\"jobs\"")) {
            println!("{line}");
        }
    }
    // Both tasks end by themselves: 100 sent, 100 taken (5 s at one per 50 ms).
    tokio::time::timeout(Duration::from_secs(30), async {
        sending.await.expect("sender task");
        taking.await.expect("receiver task");
    })
    .await?;
    node.shutdown().await?;
    Ok(())
}
