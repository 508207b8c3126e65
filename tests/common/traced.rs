//! OpenTelemetry in a test process (cargo feature `opentelemetry`): a global subscriber whose
//! spans go to an in-memory exporter, and the child command that receives traced messages
//! (see [`super::procs`]):
//!
//! | command | answer |
//! |---|---|
//! | `tracedrecv CHANNEL N` | `@ recv CHANNEL` once registered; then for each of N messages, taken with `recv_traced` and processed in a `process` span inside its `receive` span: `@ traced CHANNEL V TRACE PARENT`, the trace id and the parent span id of its `receive` span (`none none` without one) |
#![allow(dead_code)]

use std::sync::OnceLock;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer as _;

/// Install (once) the process's subscriber: every span the filter lets through (`info`, or
/// `DCHAN_TEST_OTEL_LOG`) to OpenTelemetry, exported as it ends into the returned exporter, and
/// warnings to stderr. Call before anything else installs one.
pub fn install() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        let tracer = provider.tracer("dchan-tests");
        // (The provider lives as long as the process: spans are exported as they end.)
        std::mem::forget(provider);
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(
                std::env::var("DCHAN_TEST_OTEL_LOG")
                    .unwrap_or_else(|_| "info,openraft=error".into()),
            ))
            .with(tracing_opentelemetry::layer().with_tracer(tracer))
            // (The warnings still read in the test's output, as `super::tracing` has them.)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
            );
        tracing::subscriber::set_global_default(subscriber).expect("the first subscriber");
        exporter
    })
}

/// The spans ended so far.
pub fn spans() -> Vec<SpanData> {
    install().get_finished_spans().expect("the in-memory exporter")
}

/// The ended span with id `id`.
pub fn span(id: opentelemetry::trace::SpanId) -> Option<SpanData> {
    spans().into_iter().find(|s| s.span_context.span_id() == id)
}

/// The OpenTelemetry ids of `span`: its trace and its own id.
pub fn ids(span: &tracing::Span) -> (opentelemetry::trace::TraceId, opentelemetry::trace::SpanId) {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.trace_id(), sc.span_id())
}

/// Run one of this module's commands, if `words` is one: its task, if it started one.
pub async fn command(
    node: &dchan::Node,
    words: &[&str],
) -> Option<Option<actix_rt::task::JoinHandle<()>>> {
    let ["tracedrecv", channel, n] = words else { return None };
    let n: usize = n.parse().expect("count");
    let mut rx = node.receiver::<u64>(channel).capacity(n.max(1)).await.expect("recv");
    println!("@ recv {channel}");
    let channel = channel.to_string();
    Some(Some(actix_rt::spawn(async move {
        for _ in 0..n {
            let Some((v, span)) = rx.recv_traced().await else { break };
            span.in_scope(|| tracing::info_span!("process").in_scope(|| {}));
            let (trace, id) = ids(&span);
            drop(span);
            match span_parent(id) {
                Some(parent) => println!("@ traced {channel} {v} {trace} {parent}"),
                None => println!("@ traced {channel} {v} none none"),
            }
        }
    })))
}

/// The parent span id of the ended span `id`, if it ended (and was traced at all).
fn span_parent(id: opentelemetry::trace::SpanId) -> Option<opentelemetry::trace::SpanId> {
    (id != opentelemetry::trace::SpanId::INVALID)
        .then(|| span(id))
        .flatten()
        .map(|s| s.parent_span_id)
}
