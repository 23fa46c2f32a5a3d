//! Streams and durable consumers, declared in code from the contracts.
//!
//! One stream per domain (`AUTH`, `TRADING`, `REVENUE`, `SOCIAL`, derived from the events in
//! `wharf_proto::EVENTS`) capturing `<domain>.>`, plus `DLQ` capturing `dlq.>`. All use file
//! storage and a duplicate window of at least [`MIN_DUPLICATE_WINDOW`], so a publish the relay
//! retries within that window (same `Nats-Msg-Id`) is stored once.
//!
//! [`Topology::apply`] creates what is missing and then runs the same self-check as
//! [`Topology::verify`]: a live stream or consumer whose config contradicts the declaration
//! (memory storage, a shorter duplicate window, other subjects, a missing DLQ, a consumer with
//! another filter or ack policy) is an error naming the stream, the field and both values, so a
//! service fails at start-up instead of losing or duplicating events later.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};

/// The shortest duplicate window Wharf accepts (ARCHITECTURE §6: at least 10 minutes).
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Name of the dead-letter stream and its subject prefix.
pub const DLQ_STREAM: &str = "DLQ";
pub const DLQ_PREFIX: &str = "dlq";

/// A prefix for every stream name and subject, so that tests (or tenants) sharing one NATS
/// server never see each other's events. Empty in production.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Namespace(Option<String>);

impl Namespace {
    /// No prefix: the names of ARCHITECTURE.md.
    pub fn root() -> Self {
        Self(None)
    }

    /// `prefix` must be a single subject token (letters, digits, `_`, `-`).
    pub fn new(prefix: &str) -> Self {
        assert!(
            !prefix.is_empty()
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "a namespace is one subject token, got {prefix:?}"
        );
        Self(Some(prefix.to_owned()))
    }

    /// `TRADING` → `T42_TRADING`.
    pub fn stream(&self, name: &str) -> String {
        match &self.0 {
            Some(prefix) => format!("{}_{name}", prefix.to_ascii_uppercase().replace('-', "_")),
            None => name.to_owned(),
        }
    }

    /// `trading.trade.executed` → `t42.trading.trade.executed`.
    pub fn subject(&self, subject: &str) -> String {
        match &self.0 {
            Some(prefix) => format!("{prefix}.{subject}"),
            None => subject.to_owned(),
        }
    }

    /// The inverse of [`Namespace::subject`].
    pub fn strip<'a>(&self, subject: &'a str) -> &'a str {
        match &self.0 {
            Some(prefix) => subject
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .unwrap_or(subject),
            None => subject,
        }
    }

    /// Durable consumer names must be unique per stream only, but a prefix keeps logs clear.
    pub fn durable(&self, name: &str) -> String {
        match &self.0 {
            Some(prefix) => format!("{prefix}-{name}"),
            None => name.to_owned(),
        }
    }
}

/// One stream as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    pub subjects: Vec<String>,
    pub duplicate_window: Duration,
    pub max_age: Duration,
    pub replicas: usize,
}

impl StreamSpec {
    fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            num_replicas: self.replicas,
            allow_direct: true,
            ..Default::default()
        }
    }
}

/// One durable pull consumer as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable: String,
    pub filter_subject: String,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Unacknowledged messages the server hands out at once; 1 gives strict per-stream order.
    pub max_ack_pending: i64,
}

impl ConsumerSpec {
    fn config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.clone()),
            filter_subject: self.filter_subject.clone(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            deliver_policy: DeliverPolicy::All,
            // Redelivery is unbounded on the server: the consumer runtime counts handler
            // failures itself and dead-letters after its own max_deliver, so an outage of the
            // consumer's database never dead-letters healthy events.
            max_deliver: -1,
            max_ack_pending: self.max_ack_pending,
            ..Default::default()
        }
    }
}

/// Why the live topology cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "stream {stream} is missing (declared subjects {subjects:?}); run the service once with topology apply, or create it"
    )]
    MissingStream {
        stream: String,
        subjects: Vec<String>,
    },
    #[error("stream {stream}: live {field} is {live}, but Wharf declares {declared}")]
    StreamContradicts {
        stream: String,
        field: &'static str,
        live: String,
        declared: String,
    },
    #[error(
        "stream {stream}: duplicate window {window:?} is shorter than the relay's retry horizon {horizon:?}; \
         a retried publish could be stored twice"
    )]
    WindowTooShort {
        stream: String,
        window: Duration,
        horizon: Duration,
    },
    #[error(
        "consumer {durable} on {stream}: live {field} is {live}, but Wharf declares {declared}; \
         once every instance runs the same settings, set the durable to the declared value \
         (`nats consumer edit {stream} {durable}`)"
    )]
    ConsumerContradicts {
        stream: String,
        durable: String,
        field: &'static str,
        live: String,
        declared: String,
    },
    #[error("JetStream request for {what} failed: {source}")]
    JetStream {
        what: String,
        #[source]
        source: async_nats::Error,
    },
}

fn js_err(what: impl Into<String>) -> impl FnOnce(async_nats::Error) -> TopologyError {
    let what = what.into();
    move |source| TopologyError::JetStream { what, source }
}

/// Every stream Wharf uses.
#[derive(Debug, Clone)]
pub struct Topology {
    pub namespace: Namespace,
    pub streams: Vec<StreamSpec>,
    /// The longest time within which the outbox relay may re-publish the same event; every
    /// stream's duplicate window must cover it.
    pub relay_retry_horizon: Duration,
}

impl Topology {
    /// The streams derived from the contracts, plus `DLQ`.
    pub fn declared(namespace: Namespace) -> Self {
        let mut domains: Vec<&str> = wharf_proto::EVENTS
            .iter()
            .map(|event| event.stream)
            .collect();
        domains.sort_unstable();
        domains.dedup();
        let mut streams: Vec<StreamSpec> = domains
            .into_iter()
            .map(|stream| StreamSpec {
                name: namespace.stream(stream),
                subjects: vec![namespace.subject(&format!("{}.>", stream.to_ascii_lowercase()))],
                duplicate_window: MIN_DUPLICATE_WINDOW,
                max_age: Duration::from_secs(7 * 24 * 3600),
                replicas: 1,
            })
            .collect();
        streams.push(StreamSpec {
            name: namespace.stream(DLQ_STREAM),
            subjects: vec![namespace.subject(&format!("{DLQ_PREFIX}.>"))],
            duplicate_window: MIN_DUPLICATE_WINDOW,
            max_age: Duration::from_secs(30 * 24 * 3600),
            replicas: 1,
        });
        Self {
            namespace,
            streams,
            relay_retry_horizon: Duration::from_secs(2 * 60),
        }
    }

    /// Production runs NATS as a cluster with replicated streams (ARCHITECTURE §7).
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        for stream in &mut self.streams {
            stream.replicas = replicas;
        }
        self
    }

    /// The declared name of a domain stream, e.g. `TRADING` in this namespace.
    pub fn stream_name(&self, stream: &str) -> String {
        self.namespace.stream(stream)
    }

    /// Creates every missing stream, then checks the live config against the declaration.
    pub async fn apply(&self, js: &Context) -> Result<(), TopologyError> {
        for spec in &self.streams {
            match js.get_stream(&spec.name).await {
                Ok(_) => {}
                Err(err) if is_stream_not_found(&err) => {
                    js.create_stream(spec.config())
                        .await
                        .map_err(|e| js_err(format!("create stream {}", spec.name))(e.into()))?;
                    tracing::info!(stream = %spec.name, "created stream");
                }
                Err(err) => return Err(js_err(format!("stream {}", spec.name))(err.into())),
            }
        }
        self.verify(js).await
    }

    /// Checks, without changing anything, that every declared stream exists and agrees.
    pub async fn verify(&self, js: &Context) -> Result<(), TopologyError> {
        for spec in &self.streams {
            let mut stream = match js.get_stream(&spec.name).await {
                Ok(stream) => stream,
                Err(err) if is_stream_not_found(&err) => {
                    return Err(TopologyError::MissingStream {
                        stream: spec.name.clone(),
                        subjects: spec.subjects.clone(),
                    });
                }
                Err(err) => return Err(js_err(format!("stream {}", spec.name))(err.into())),
            };
            let info = stream
                .info()
                .await
                .map_err(|e| js_err(format!("stream {} info", spec.name))(e.into()))?;
            check_stream(spec, &info.config, self.relay_retry_horizon)?;
        }
        Ok(())
    }

    /// Creates the durable consumer if missing and checks the live one against `spec`.
    pub async fn ensure_consumer(
        &self,
        js: &Context,
        spec: &ConsumerSpec,
    ) -> Result<jetstream::consumer::Consumer<pull::Config>, TopologyError> {
        let stream = js
            .get_stream(&spec.stream)
            .await
            .map_err(|e| js_err(format!("stream {}", spec.stream))(e.into()))?;
        let mut consumer = stream
            .get_or_create_consumer(&spec.durable, spec.config())
            .await
            .map_err(|e| js_err(format!("consumer {}", spec.durable))(e.into()))?;
        let info = consumer
            .info()
            .await
            .map_err(|e| js_err(format!("consumer {} info", spec.durable))(e.into()))?;
        check_consumer(spec, &info.config)?;
        Ok(consumer)
    }
}

fn is_stream_not_found(err: &jetstream::context::GetStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(inner)
            if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

fn check_stream(
    spec: &StreamSpec,
    live: &stream::Config,
    horizon: Duration,
) -> Result<(), TopologyError> {
    let contradicts = |field, live: String, declared: String| TopologyError::StreamContradicts {
        stream: spec.name.clone(),
        field,
        live,
        declared,
    };
    if live.subjects != spec.subjects {
        return Err(contradicts(
            "subjects",
            format!("{:?}", live.subjects),
            format!("{:?}", spec.subjects),
        ));
    }
    if live.storage != StorageType::File {
        return Err(contradicts(
            "storage",
            format!("{:?}", live.storage),
            "File".to_owned(),
        ));
    }
    if live.retention != RetentionPolicy::Limits {
        return Err(contradicts(
            "retention",
            format!("{:?}", live.retention),
            "Limits".to_owned(),
        ));
    }
    if live.duplicate_window < MIN_DUPLICATE_WINDOW {
        return Err(contradicts(
            "duplicate_window",
            format!("{:?}", live.duplicate_window),
            format!("at least {MIN_DUPLICATE_WINDOW:?}"),
        ));
    }
    if live.duplicate_window < horizon {
        return Err(TopologyError::WindowTooShort {
            stream: spec.name.clone(),
            window: live.duplicate_window,
            horizon,
        });
    }
    if live.num_replicas < spec.replicas {
        return Err(contradicts(
            "num_replicas",
            live.num_replicas.to_string(),
            format!("at least {}", spec.replicas),
        ));
    }
    Ok(())
}

fn check_consumer(
    spec: &ConsumerSpec,
    live: &jetstream::consumer::Config,
) -> Result<(), TopologyError> {
    let contradicts = |field, live: String, declared: String| TopologyError::ConsumerContradicts {
        stream: spec.stream.clone(),
        durable: spec.durable.clone(),
        field,
        live,
        declared,
    };
    if live.ack_policy != AckPolicy::Explicit {
        return Err(contradicts(
            "ack_policy",
            format!("{:?}", live.ack_policy),
            "Explicit".to_owned(),
        ));
    }
    if live.filter_subject != spec.filter_subject {
        return Err(contradicts(
            "filter_subject",
            live.filter_subject.clone(),
            spec.filter_subject.clone(),
        ));
    }
    if live.max_deliver > 0 {
        return Err(contradicts(
            "max_deliver",
            live.max_deliver.to_string(),
            "unbounded (-1): Wharf dead-letters itself".to_owned(),
        ));
    }
    if live.ack_wait != spec.ack_wait {
        return Err(contradicts(
            "ack_wait",
            format!("{:?}", live.ack_wait),
            format!("{:?}", spec.ack_wait),
        ));
    }
    if live.max_ack_pending != spec.max_ack_pending {
        return Err(contradicts(
            "max_ack_pending",
            live.max_ack_pending.to_string(),
            spec.max_ack_pending.to_string(),
        ));
    }
    Ok(())
}

/// The `[events]` section: which namespace this deployment's streams and subjects live in.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Prefix for every stream and subject; empty in production.
    pub namespace: Option<String>,
}

impl EventsConfig {
    pub fn namespace(&self) -> Namespace {
        match self.namespace.as_deref() {
            Some(prefix) if !prefix.is_empty() => Namespace::new(prefix),
            _ => Namespace::root(),
        }
    }
}
