//! Baseline: Zenoh 1.x peer to peer over TCP on loopback (multicast scouting off, the receiving
//! peer listens, the sending peer connects to it). Reliable, `CongestionControl::Block` so that
//! nothing is dropped, and a callback subscriber as in Zenoh's own throughput example.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zenoh::qos::{CongestionControl, Reliability};
use zenoh::Wait;

use crate::ctx::{histogram, Ctx};
use crate::{now_ns, Error};

/// A peer session that listens on `listen` or connects to `connect` (ports on 127.0.0.1).
async fn session(listen: Option<u16>, connect: Option<u16>) -> Result<zenoh::Session, Error> {
    let mut config = zenoh::Config::default();
    let endpoints = |port: Option<u16>| match port {
        Some(p) => format!(r#"["tcp/127.0.0.1:{p}"]"#),
        None => "[]".to_string(),
    };
    config.insert_json5("mode", r#""peer""#)?;
    config.insert_json5("scouting/multicast/enabled", "false")?;
    config.insert_json5("listen/endpoints", &endpoints(listen))?;
    config.insert_json5("connect/endpoints", &endpoints(connect))?;
    zenoh::open(config).await
}

/// Wait (at most 30 s) until the publisher has a matching subscriber: a put before that goes
/// nowhere. Driven by Zenoh's matching listener (no polling).
async fn wait_matching(publisher: &zenoh::pubsub::Publisher<'_>) -> Result<(), Error> {
    let listener = publisher.matching_listener().await?;
    let matched = async {
        if publisher.matching_status().await?.matching() {
            return Ok(());
        }
        while !listener.recv_async().await?.matching() {}
        Ok::<_, Error>(())
    };
    tokio::time::timeout(Duration::from_secs(30), matched)
        .await
        .map_err(|_| "no Zenoh subscriber matched within 30 s")?
}

pub(crate) async fn recv(ctx: &Ctx, port: u16, expect: u64) -> Result<(), Error> {
    let session = session(Some(port), None).await?;
    let n = Arc::new(AtomicU64::new(0));
    let (done_tx, done) = std::sync::mpsc::channel::<u64>();
    let count = n.clone();
    let sub = session
        .declare_subscriber("bench/thr")
        .callback(move |_sample| {
            if count.fetch_add(1, Ordering::Relaxed) + 1 == expect {
                let _ = done_tx.send(now_ns());
            }
        })
        .await?;
    ctx.out("ready");
    let at = tokio::task::spawn_blocking(move || done.recv()).await??;
    ctx.out(format!("done {} {at}", n.load(Ordering::Relaxed)));
    crate::ctx::hold((sub, session)).await
}

pub(crate) async fn send(ctx: &mut Ctx, port: u16, count: u64, size: usize) -> Result<(), Error> {
    let session = session(None, Some(port)).await?;
    let publisher = session
        .declare_publisher("bench/thr")
        .congestion_control(CongestionControl::Block)
        .reliability(Reliability::Reliable)
        .await?;
    wait_matching(&publisher).await?;
    let payload = zenoh::bytes::ZBytes::from(vec![0x5a; size]);
    ctx.started().await?;
    for _ in 0..count {
        publisher.put(payload.clone()).wait()?;
    }
    crate::ctx::hold((publisher, session)).await
}

pub(crate) async fn pong(ctx: &Ctx, port: u16) -> Result<(), Error> {
    let session = session(Some(port), None).await?;
    let publisher = session
        .declare_publisher("bench/pong")
        .congestion_control(CongestionControl::Block)
        .express(true)
        .await?;
    let sub = session
        .declare_subscriber("bench/ping")
        .callback(move |sample| {
            let _ = publisher.put(sample.payload().clone()).wait();
        })
        .await?;
    ctx.out("ready");
    crate::ctx::hold((sub, session)).await
}

pub(crate) async fn ping(
    ctx: &mut Ctx,
    port: u16,
    rounds: usize,
    size: usize,
) -> Result<(), Error> {
    let session = session(None, Some(port)).await?;
    let sub = session.declare_subscriber("bench/pong").await?;
    let publisher = session
        .declare_publisher("bench/ping")
        .congestion_control(CongestionControl::Block)
        .express(true)
        .await?;
    wait_matching(&publisher).await?;
    // Each ping carries its number, so that a late answer is never taken for the current one.
    let ping = |i: u64| {
        let mut p = vec![0x5a; size.max(8)];
        p[..8].copy_from_slice(&i.to_be_bytes());
        zenoh::bytes::ZBytes::from(p)
    };
    let number = |s: &zenoh::sample::Sample| {
        let b = s.payload().to_bytes();
        b.get(..8).map(|n| u64::from_be_bytes(n.try_into().expect("8 bytes")))
    };
    ctx.out("ready");
    ctx.go().await?;
    // The pong side's publisher learns of this subscriber on its own: the first pings may go
    // unanswered until it has, so the warm-up waits at most 100 ms per ping.
    let warm = Instant::now();
    let mut i: u64 = 0;
    let mut warmed = 0;
    while warmed < rounds / 10 {
        if warm.elapsed() > Duration::from_secs(30) {
            return Err("no Zenoh pong within 30 s".into());
        }
        i += 1;
        publisher.put(ping(i)).wait()?;
        if tokio::time::timeout(Duration::from_millis(100), sub.recv_async()).await.is_ok() {
            warmed += 1;
        }
    }
    let mut rtt = histogram();
    for _ in 0..rounds {
        i += 1;
        let t = Instant::now();
        publisher.put(ping(i)).wait()?;
        while number(&sub.recv_async().await?) != Some(i) {}
        rtt.record(t.elapsed().as_nanos() as u64)?;
    }
    ctx.rtt(&rtt);
    crate::ctx::hold((sub, publisher, session)).await
}
