//! A message's trace context, carried from the sending node to the receiving one (cargo
//! feature `opentelemetry`): where the path of a message meets the application's traces.
//!
//! On the sending node, a message sent to another node inside a span that OpenTelemetry traces
//! (through `tracing-opentelemetry`) gets a `send` span, child of that one, whose W3C
//! `traceparent` travels in the message's header (see [`crate::link::envelope`]). On the
//! receiving node, taking the message opens a `receive` span whose parent is that `send`: a
//! trace shows send → receive across processes. Both are named as OpenTelemetry's messaging
//! conventions name them (`send jobs`, `receive jobs`: kinds producer and consumer, the
//! `messaging.*` attributes), with a `channel` field for `tracing`'s own subscribers.
//! `Receiver::recv_traced` (and `Delivery::span`) hand that span to the application, to process
//! the message in it.
//!
//! Without the feature, nothing is written and a header that comes is skipped: [`outgoing`]
//! is `None` and [`Received`] is `()`, so the message path pays nothing. A message sent to a
//! receiver of its own node is moved, not encoded, and carries no header; a broadcast is
//! encoded once for all its receivers, this node's included, and carries it. An unnamed
//! channel's spans are named `send (unnamed)` and `receive (unnamed)`, its id in the
//! `channel` field only (a span name per request would not do for a tracing backend).

/// A W3C `traceparent` in its text form (version `00`: always 55 bytes).
pub(crate) type Traceparent = [u8; 55];

/// The `traceparent` of one message sent to other nodes, read the first time it is needed
/// (see [`outgoing`]); nothing at all without the feature.
#[derive(Debug, Default)]
pub(crate) struct Lazy(#[cfg(feature = "opentelemetry")] Option<Option<Traceparent>>);

#[cfg(test)]
thread_local! {
    /// See [`carry_headers`].
    static HEADERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// In test builds: every message this thread sends to another node carries a `traceparent`
/// header, as a traced one does, whatever the feature (the delivery simulation's schedules
/// with headers: every path that keeps, delivers again or drops a message's bytes must read
/// past it; `router/discard.rs` did not, which a review found and no schedule could reach).
#[cfg(test)]
pub(crate) fn carry_headers(on: bool) {
    HEADERS.with(|h| h.set(on));
}

/// The header [`carry_headers`] has messages carry.
#[cfg(test)]
const TEST_HEADER: &Traceparent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// [`TEST_HEADER`], if this thread's messages carry it.
#[cfg(test)]
fn test_header() -> Option<Traceparent> {
    HEADERS.with(std::cell::Cell::get).then_some(*TEST_HEADER)
}
#[cfg(not(test))]
#[inline(always)]
fn test_header() -> Option<Traceparent> {
    None
}

impl Lazy {
    /// The message's `traceparent`, if it has one.
    #[inline(always)]
    pub(crate) fn get(&mut self, _channel: &dyn std::fmt::Display) -> Option<&[u8]> {
        #[cfg(test)]
        if HEADERS.with(std::cell::Cell::get) {
            return Some(TEST_HEADER);
        }
        #[cfg(feature = "opentelemetry")]
        return self.0.get_or_insert_with(|| outgoing(_channel)).as_ref().map(|t| &t[..]);
        #[cfg(not(feature = "opentelemetry"))]
        None
    }
}

/// What taking a message leaves of its trace: the `receive` span (see the module's text).
#[cfg(feature = "opentelemetry")]
pub(crate) type Received = Option<tracing::Span>;
/// Without the feature: nothing.
#[cfg(not(feature = "opentelemetry"))]
pub(crate) type Received = ();

/// The `traceparent` of a message of `channel` sent now to another node: `None` unless the send
/// runs inside a span that OpenTelemetry traces.
#[cfg(not(feature = "opentelemetry"))]
#[inline(always)]
pub(crate) fn outgoing(_channel: &dyn std::fmt::Display) -> Option<Traceparent> {
    test_header()
}

/// The span of a message of `channel` taken with `traceparent` in its header.
#[cfg(not(feature = "opentelemetry"))]
#[inline(always)]
pub(crate) fn received(_traceparent: Option<&[u8]>, _channel: &dyn std::fmt::Display) -> Received {}

#[cfg(feature = "opentelemetry")]
pub(crate) use otel::{outgoing, received};

#[cfg(feature = "opentelemetry")]
mod otel {
    use std::io::Write;

    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{Received, Traceparent};

    /// A span of one message's way (`send` or `receive`), as OpenTelemetry's messaging
    /// conventions name and describe it.
    macro_rules! messaging_span {
        ($op:literal, $kind:literal, $channel:expr $(, parent: $parent:expr)?) => {
            tracing::info_span!(
                target: "dchan",
                $(parent: $parent,)?
                $op,
                channel = %$channel,
                otel.name = %format_args!(concat!($op, " {:#}"), $channel),
                otel.kind = $kind,
                messaging.system = "dchan",
                messaging.destination.name = %format_args!("{:#}", $channel),
                messaging.operation.type = $op,
            )
        };
    }

    /// See [`super::outgoing`](super).
    pub(crate) fn outgoing(channel: &dyn std::fmt::Display) -> Option<Traceparent> {
        if let Some(header) = super::test_header() {
            return Some(header);
        }
        let current = tracing::Span::current();
        // (No span, or one no subscriber records: the common case, and the cheap one.)
        if current.is_none() {
            return None;
        }
        let parent = current.context().span().span_context().clone();
        if !parent.is_valid() {
            return None;
        }
        let send = messaging_span!("send", "producer", channel, parent: &current);
        let own = send.context().span().span_context().clone();
        // (The `send` span filtered out: the message is the child of the application's span.)
        let context = if own.is_valid() { own } else { parent };
        let mut out = [0u8; 55];
        write!(
            &mut out[..],
            "00-{:032x}-{:016x}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        )
        .ok()?;
        Some(out)
    }

    /// See [`super::received`](super).
    pub(crate) fn received(
        traceparent: Option<&[u8]>,
        channel: &dyn std::fmt::Display,
    ) -> Received {
        let parent = parse(traceparent?)?;
        let span = messaging_span!("receive", "consumer", channel);
        // (Fails only without the OpenTelemetry layer: the span is then no one's.)
        let cx = opentelemetry::Context::new().with_remote_span_context(parent);
        span.set_parent(cx).ok()?;
        Some(span)
    }

    /// A `traceparent` of version `00`, as W3C Trace Context reads it: anything else (another
    /// version, a zero id, bad hex, from a broken or hostile peer) is no parent at all.
    fn parse(text: &[u8]) -> Option<SpanContext> {
        let text = std::str::from_utf8(text).ok()?;
        let mut parts = text.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        if flags.len() != 2 || !text.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) {
            return None;
        }
        let trace = TraceId::from_hex(trace).ok()?;
        let span = SpanId::from_hex(span).ok()?;
        let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()?);
        let context = SpanContext::new(trace, span, flags, true, TraceState::default());
        context.is_valid().then_some(context)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn traceparents_are_read_as_w3c_says() {
            let good = parse(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
            assert_eq!(
                good.trace_id(),
                TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
            );
            assert_eq!(good.span_id(), SpanId::from_hex("b7ad6b7169203331").unwrap());
            assert!(good.is_sampled() && good.is_remote());
            for bad in [
                &b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..],
                b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
                b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
                b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
                b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
                b"00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                b"00-0af7651916cd43dd8448eb211c8031\xff-b7ad6b7169203331-01",
                b"",
            ] {
                assert!(parse(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
            }
        }
    }
}
