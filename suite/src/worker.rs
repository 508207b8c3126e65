//! The child side of a run: a worker reads its [`Spec`], reports on stdout one line per event,
//! starts sending when stdin says `go`, and stops when stdin closes (or after [`DEADLINE`], so
//! that no worker outlives a parent that died).

use std::io::BufRead;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::ctx::Ctx;
use crate::spec::Spec;
use crate::{dchan_nodes, in_process, nats_core, raw_tcp, zenoh_peer, Error};

/// The longest any worker runs.
pub(crate) const DEADLINE: Duration = Duration::from_secs(300);

/// `dchan-suite worker SPEC`.
pub(crate) fn main(spec: &str) -> Result<(), Error> {
    let spec: Spec = serde_json::from_str(spec)?;
    let (go_tx, go) = oneshot::channel();
    let (stop_tx, stop) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut go_tx = Some(go_tx);
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if line.trim() == "go" {
                if let Some(tx) = go_tx.take() {
                    let _ = tx.send(());
                }
            }
        }
        let _ = stop_tx.send(());
    });
    let ctx = Ctx { go: Some(go) };
    let zenoh = matches!(
        spec,
        Spec::ZenohRecv { .. }
            | Spec::ZenohSend { .. }
            | Spec::ZenohPong { .. }
            | Spec::ZenohPing { .. }
    );
    let work = async move {
        let work = run(spec, ctx);
        tokio::select! {
            r = work => r,
            _ = stop => Ok(()),
            () = tokio::time::sleep(DEADLINE) => Err("deadline passed".into()),
        }
    };
    if zenoh {
        // Zenoh refuses a current-thread runtime; it suggests one worker thread (its own
        // runtime's threads do the work).
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(work)
    } else {
        // dchan's actors need actix's system (a current-thread runtime); the other baselines run
        // on the same kind of runtime.
        actix_rt::System::new().block_on(work)
    }
}

/// Run one worker; returns when it is done (receivers and servers never are: they are stopped).
async fn run(spec: Spec, mut ctx: Ctx) -> Result<(), Error> {
    match spec {
        Spec::Spin => spin(&mut ctx).await,
        Spec::RawRecv { rmp, expect } => raw_tcp::recv(&ctx, rmp, expect).await,
        Spec::RawSend { rmp, addr, count, size } => {
            raw_tcp::send(&mut ctx, rmp, &addr, count, size).await
        }
        Spec::RawSendMany { addrs, count, fan_out } => {
            raw_tcp::send_many(&mut ctx, &addrs, count, fan_out).await
        }
        Spec::RawPong => raw_tcp::pong(&ctx).await,
        Spec::RawPing { addr, rounds, size } => raw_tcp::ping(&mut ctx, &addr, rounds, size).await,
        Spec::Mpsc { count, size } => in_process::mpsc(&mut ctx, count, size).await,
        Spec::DchanLocal { count, size, capacity, metrics } => {
            in_process::dchan_local(&mut ctx, count, size, capacity, metrics).await
        }
        Spec::NatsRecv { url, subject, queue, capacity, expect } => {
            nats_core::recv(&ctx, &url, &subject, queue, capacity, expect).await
        }
        Spec::NatsSend { url, subject, count, size } => {
            nats_core::send(&mut ctx, &url, &subject, count, size).await
        }
        Spec::NatsReply { url, subject, queue } => {
            nats_core::reply(&ctx, &url, &subject, queue).await
        }
        Spec::NatsRequests { url, subject, count, inflight, size } => {
            nats_core::requests(&mut ctx, &url, &subject, count, inflight, size).await
        }
        Spec::NatsRequest { url, subject, rounds, size } => {
            nats_core::request(&mut ctx, &url, &subject, rounds, size).await
        }
        Spec::ZenohRecv { port, expect } => zenoh_peer::recv(&ctx, port, expect).await,
        Spec::ZenohSend { port, count, size } => {
            zenoh_peer::send(&mut ctx, port, count, size).await
        }
        Spec::ZenohPong { port } => zenoh_peer::pong(&ctx, port).await,
        Spec::ZenohPing { port, rounds, size } => {
            zenoh_peer::ping(&mut ctx, port, rounds, size).await
        }
        Spec::Dchan { .. } => dchan_nodes::flow(&mut ctx, spec).await,
        Spec::DchanPong => dchan_nodes::pong(&ctx).await,
        Spec::DchanPing { join, rounds, size } => {
            dchan_nodes::ping(&mut ctx, &join, rounds, size).await
        }
        Spec::DchanAnswer { join } => dchan_nodes::answer(&ctx, join).await,
        Spec::DchanRequest { join, rounds, size } => {
            dchan_nodes::request(&mut ctx, &join, rounds, size).await
        }
        Spec::DchanRequests { join, count, inflight, size, answerers } => {
            dchan_nodes::requests(&mut ctx, &join, count, inflight, size, answerers).await
        }
        Spec::DchanMember { join, voters, registrations } => {
            dchan_nodes::member(&mut ctx, join, voters, registrations).await
        }
    }?;
    // Done: stay until stopped, so that leaving does not disturb the others' measurement.
    std::future::pending::<()>().await;
    Ok(())
}

/// Keep one core busy (a thread spinning) until the worker stops.
async fn spin(ctx: &mut Ctx) -> Result<(), Error> {
    std::thread::spawn(|| {
        let start = std::time::Instant::now();
        let mut x: u64 = 0;
        // Bounded: the process exits long before, when its stdin closes.
        while start.elapsed() < DEADLINE {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    });
    ctx.out("ready");
    Ok(())
}
