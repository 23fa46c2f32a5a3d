//! Tracing, logs and W3C trace context.
//!
//! [`init`] installs one global subscriber: human-readable or JSON logs (a config switch), an
//! `EnvFilter`, and — only when an OTLP endpoint is configured — an OpenTelemetry layer that
//! exports spans over OTLP/gRPC. It returns a [`TelemetryGuard`] that flushes pending spans when
//! dropped, so binaries keep it alive until the very end of `main`.
//!
//! Trace context crosses process boundaries as a W3C `traceparent`: [`inject`] and [`extract`]
//! move it in and out of gRPC metadata, [`current_traceparent`] gives the string to store next
//! to an outbox row or put in a NATS header.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub log_filter: String,
    /// OTLP/gRPC collector endpoint, e.g. `http://127.0.0.1:4317`. Export is off when unset.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_filter: "info".to_owned(),
            otlp_endpoint: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("failed to build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
}

/// Flushes and shuts down span export when dropped.
#[derive(Debug)]
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("failed to flush spans on shutdown: {err}");
        }
    }
}

/// Installs the global subscriber and propagator for `service_name`.
pub fn init(
    config: &TelemetryConfig,
    service_name: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => from_env,
        _ => config.log_filter.clone(),
    };
    let filter = EnvFilter::try_new(&filter).map_err(|source| TelemetryError::Filter {
        filter: filter.clone(),
        source,
    })?;

    let fmt = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(true)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };

    let provider = match &config.otlp_endpoint {
        Some(endpoint) => Some(otlp_provider(endpoint, service_name)?),
        None => None,
    };
    let otel = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name.to_owned()))
    });

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

fn otlp_provider(endpoint: &str, service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject(metadata: &mut MetadataMap) {
    inject_context(&tracing::Span::current().context(), metadata);
}

/// Writes `context` into gRPC metadata as a W3C `traceparent` (and `tracestate`).
pub fn inject_context(context: &opentelemetry::Context, metadata: &mut MetadataMap) {
    TraceContextPropagator::new().inject_context(context, &mut MetadataInjector(metadata));
}

/// Reads a trace context from incoming gRPC metadata (empty when there is none).
pub fn extract(metadata: &MetadataMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&MetadataExtractor(metadata))
}

/// Makes `span` a child of the trace context carried by `metadata`, if any.
pub fn set_parent_from(span: &tracing::Span, metadata: &MetadataMap) {
    // Without an OpenTelemetry layer there is nothing to attach to; that is not an error.
    let _ = span.set_parent(extract(metadata));
}

/// Makes `span` a child of a stored `traceparent` (an outbox row's, a NATS header's), so one
/// trace spans commit → relay → consumer → effect.
pub fn set_parent_traceparent(span: &tracing::Span, traceparent: &str) {
    let _ = span.set_parent(context_from_traceparent(traceparent));
}

/// The current span's `traceparent`, to store next to an outbox row or send as a NATS header.
/// `None` when no trace is being recorded.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// A context built from a stored `traceparent` (e.g. read back from an outbox row).
pub fn context_from_traceparent(traceparent: &str) -> opentelemetry::Context {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|key| match key {
                KeyRef::Ascii(key) => Some(key.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;
    use tonic::metadata::MetadataMap;

    use super::{context_from_traceparent, extract, inject_context};

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// A trace context survives the trip through gRPC metadata unchanged.
    #[test]
    fn trace_context_round_trips_through_metadata() {
        let context = context_from_traceparent(TRACEPARENT);
        let mut metadata = MetadataMap::new();
        inject_context(&context, &mut metadata);
        assert_eq!(
            metadata.get("traceparent").unwrap().to_str().unwrap(),
            TRACEPARENT
        );

        let extracted = extract(&metadata);
        let span = extracted.span();
        let span_context = span.span_context();
        assert!(span_context.is_valid() && span_context.is_remote());
        assert_eq!(
            span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    /// Garbage in metadata yields no parent rather than an error.
    #[test]
    fn malformed_traceparent_is_ignored() {
        let mut metadata = MetadataMap::new();
        metadata.insert("traceparent", "not-a-trace".parse().unwrap());
        assert!(!extract(&metadata).span().span_context().is_valid());
    }
}
