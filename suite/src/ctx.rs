//! What every worker's backend is given and shares: [`Ctx`] (report lines to the parent, wait
//! for its `go`, time round trips), the histogram of nanoseconds, and [`hold`]. Backends import
//! this, never the worker that dispatches to them.

use std::io::Write;

use hdrhistogram::Histogram;
use tokio::sync::oneshot;

use crate::Error;

/// What a worker is given besides its spec: a way to report and the `go` signal.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) go: Option<oneshot::Receiver<()>>,
}

impl Ctx {
    /// Print one report line (flushed at once: the parent reads lines as they come).
    pub(crate) fn out(&self, line: impl AsRef<str>) {
        (self.reporter())(line.as_ref().to_string());
    }

    /// A printer of report lines for tasks of the worker.
    pub(crate) fn reporter(&self) -> impl Fn(String) + 'static {
        |line| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    /// Wait for the parent's `go`.
    pub(crate) async fn go(&mut self) -> Result<(), Error> {
        match self.go.take() {
            Some(go) => go.await.map_err(|_| "stopped before go".into()),
            None => Ok(()),
        }
    }

    /// Say `ready`, wait for `go`, and report the start of the timed part.
    pub(crate) async fn started(&mut self) -> Result<(), Error> {
        self.out("ready");
        self.go().await?;
        self.out(format!("start {}", crate::now_ns()));
        Ok(())
    }

    /// Say `ready`, wait for `go`, make `count` requests with `ask`, `inflight` at a time, and
    /// report `start` and `done` (every answer in).
    pub(crate) async fn requests<F, E>(
        &mut self,
        count: u64,
        inflight: usize,
        ask: impl Fn() -> F,
    ) -> Result<(), Error>
    where
        F: std::future::Future<Output = Result<(), E>>,
        Error: From<E>,
    {
        use futures::StreamExt;
        self.started().await?;
        let mut answers = futures::stream::iter(0..count).map(|_| ask()).buffer_unordered(inflight);
        let mut done = 0u64;
        while let Some(answer) = answers.next().await {
            answer?;
            done += 1;
        }
        self.out(format!("done {done} {}", crate::now_ns()));
        Ok(())
    }

    /// Say `ready`, wait for `go`, time `rounds` calls of `trip` (after a tenth as many to warm
    /// up) and report them.
    pub(crate) async fn round_trips(
        &mut self,
        rounds: usize,
        mut trip: impl AsyncFnMut() -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.out("ready");
        self.go().await?;
        let mut rtt = histogram();
        for i in 0..rounds + rounds / 10 {
            let t = std::time::Instant::now();
            trip().await?;
            if i >= rounds / 10 {
                rtt.record(t.elapsed().as_nanos() as u64)?;
            }
        }
        self.rtt(&rtt);
        Ok(())
    }

    /// Report `rtt N P50 P99` from round trips in nanoseconds.
    pub(crate) fn rtt(&self, samples: &Histogram<u64>) {
        self.out(format!(
            "rtt {} {} {}",
            samples.len(),
            samples.value_at_quantile(0.5),
            samples.value_at_quantile(0.99)
        ));
    }
}

/// A histogram of nanoseconds, up to a minute.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

/// Keep `keep` (a node, a session, a connection) until the worker is stopped.
pub(crate) async fn hold<T>(keep: T) -> Result<(), Error> {
    std::future::pending::<()>().await;
    drop(keep);
    Ok(())
}
