//! `NodeBuilder::metrics` (cargo feature `prometheus`): a small HTTP server, on the node's
//! runtime, owned and stopped by the node, that answers what a monitoring system and an
//! orchestrator ask:
//!
//! - `GET /metrics`: every figure of [`super::telemetry`], published afresh, in Prometheus'
//!   text format (metrics-exporter-prometheus, with this node's own recorder: two nodes in one
//!   process do not mix their figures);
//! - `GET /healthz`: 200 while the node runs (a liveness probe);
//! - `GET /readyz`: 200 once the node is a member that knows a leader, 503 with the reason
//!   otherwise (a readiness probe: see [`Core::readiness`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::Core;
use crate::Error;

/// How long a series nothing touched stays in `/metrics`.
const IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// Buckets of the `_seconds` histograms: from a tenth of a millisecond to a minute.
const BUCKETS: &[f64] =
    &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// At most this many connections are answered at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;

/// How long one connection may take, its request read and answered.
const CONNECTION_LIFE: std::time::Duration = std::time::Duration::from_secs(10);

/// The listener bound by `NodeBuilder::start`, and the recorder its figures go to.
pub(crate) struct Served {
    pub(crate) addr: SocketAddr,
    listener: TcpListener,
    pub(crate) recorder: Arc<dyn metrics::Recorder + Send + Sync>,
    handle: PrometheusHandle,
}

impl Served {
    /// Bind `addr` and make the node's recorder.
    pub(crate) async fn bind(addr: &str) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::Io(std::io::Error::new(e.kind(), format!("cannot serve metrics on {addr}: {e}")))
        })?;
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .map_err(|e| Error::config(crate::error::Cause::of(e)))?
            // A series not touched for this long goes: those of channels and peers gone (the
            // node publishes every live one each second; a histogram only when it records).
            .idle_timeout(metrics_util::MetricKindMask::ALL, Some(IDLE))
            .build_recorder();
        let handle = recorder.handle();
        Ok(Served { addr: listener.local_addr()?, listener, recorder: Arc::new(recorder), handle })
    }

    /// Answer until the node stops.
    pub(crate) async fn serve(self, core: Weak<Core>) {
        let Some(cancel) = core.upgrade().map(|c| c.cancel.clone()) else { return };
        tracing::info!(addr = %self.addr, "serving /metrics, /healthz and /readyz");
        let mut connections = JoinSet::new();
        loop {
            while connections.len() >= MAX_CONNECTIONS {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = connections.join_next() => {}
                }
            }
            let accepted = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics: accept failed");
                    continue;
                }
            };
            let (core, handle) = (core.clone(), self.handle.clone());
            let service = hyper::service::service_fn(move |req| {
                let answer = answer(&req, &core, &handle);
                async move { Ok::<_, Infallible>(answer) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            connections.spawn(async move {
                // One request per connection, and a bounded life: an idle or slow client
                // holds no slot for long (and none past the node's stop: the set is dropped).
                let conn = hyper::server::conn::http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(io, service);
                match tokio::time::timeout(CONNECTION_LIFE, conn).await {
                    Ok(Err(e)) => tracing::debug!(error = %e, "metrics: connection ended"),
                    Err(_) => tracing::debug!("metrics: a connection took too long, closed"),
                    Ok(Ok(())) => {}
                }
            });
        }
    }
}

fn answer(
    req: &Request<Incoming>,
    core: &Weak<Core>,
    handle: &PrometheusHandle,
) -> Response<Full<Bytes>> {
    let Some(core) = core.upgrade() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "the node has stopped\n".into());
    };
    let path = req.uri().path();
    if req.method() != Method::GET && matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match path {
        "/metrics" => {
            core.publish_unless_within(std::time::Duration::from_millis(100));
            handle.run_upkeep();
            let mut response = text(StatusCode::OK, handle.render());
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        "/healthz" if core.cancel.is_cancelled() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "the node has stopped\n".into())
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match core.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
