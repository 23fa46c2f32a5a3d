//! Publishers for the two classes that do not go through the outbox.
//!
//! - [`AckedPublisher`] (`ACKED`): publishes and awaits the JetStream PubAck within a deadline.
//!   Its typed error tells the caller to compensate (e.g. login deletes the pending session).
//! - [`FireAndForgetPublisher`] (`FIRE_AND_FORGET`): `emit` is a plain function that never
//!   waits and never fails; a background task publishes. What cannot be sent is counted.
//!
//! `OUTBOX` events have no publisher: the only way to send one is `wharf_outbox::enqueue` inside
//! a PostgreSQL transaction. The bounds on each method make any other use a compile error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, publish::PublishAck};
use bytes::Bytes;
use tokio::sync::mpsc;
use wharf_proto::{AckedEvent, FireAndForgetEvent};

use crate::envelope;
use crate::topology::Namespace;

/// Why an `ACKED` publish did not get its ack. In every case the caller must assume the event
/// was not stored and compensate.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "the event has no event_id; stamp it (wharf_events::envelope::stamp) before publishing"
    )]
    MissingEventId,
    #[error("no ack from JetStream within {0:?}")]
    Timeout(Duration),
    #[error("no stream captures subject {0}")]
    NoStream(String),
    #[error("NATS is unavailable: {0}")]
    Unavailable(#[source] async_nats::Error),
    #[error("JetStream rejected the event: {0}")]
    Rejected(#[source] async_nats::Error),
}

/// Publishes `ACKED` events and waits for their ack.
#[derive(Debug, Clone)]
pub struct AckedPublisher {
    js: jetstream::Context,
    namespace: Namespace,
}

impl AckedPublisher {
    pub fn new(js: jetstream::Context, namespace: Namespace) -> Self {
        Self { js, namespace }
    }

    /// Publishes `event` with `Nats-Msg-Id` = its event id and waits at most `deadline` for the
    /// stream's ack (sending and acknowledging both count against it).
    pub async fn publish<E: AckedEvent>(
        &self,
        event: &E,
        deadline: Duration,
    ) -> Result<PublishAck, PublishError> {
        if event.event_id().is_empty() {
            return Err(PublishError::MissingEventId);
        }
        let subject = self.namespace.subject(E::SUBJECT);
        let (headers, payload) =
            envelope::encode(event, wharf_runtime::telemetry::current_traceparent());
        let attempt = async {
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers, payload)
                .await
                .map_err(|err| classify(err, &subject, deadline))?;
            ack.await.map_err(|err| classify(err, &subject, deadline))
        };
        tokio::time::timeout(deadline, attempt)
            .await
            .map_err(|_| PublishError::Timeout(deadline))?
    }
}

fn classify(
    err: jetstream::context::PublishError,
    subject: &str,
    deadline: Duration,
) -> PublishError {
    match err.kind() {
        PublishErrorKind::TimedOut => PublishError::Timeout(deadline),
        PublishErrorKind::StreamNotFound => PublishError::NoStream(subject.to_owned()),
        PublishErrorKind::BrokenPipe => PublishError::Unavailable(err.into()),
        _ => PublishError::Rejected(err.into()),
    }
}

/// Counters of the fire-and-forget emitter.
#[derive(Debug, Default)]
pub struct FireAndForgetStats {
    emitted: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl FireAndForgetStats {
    /// Events handed to `emit`.
    pub fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Relaxed)
    }

    /// Events dropped because the send queue was full (NATS slow or down).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Events the client failed to send.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

type Outgoing = (String, HeaderMap, Bytes);

/// Emits `FIRE_AND_FORGET` events without ever blocking or failing the caller.
#[derive(Debug, Clone)]
pub struct FireAndForgetPublisher {
    queue: mpsc::Sender<Outgoing>,
    namespace: Namespace,
    stats: Arc<FireAndForgetStats>,
}

impl FireAndForgetPublisher {
    /// Starts the background sender with a queue of `capacity` events.
    pub fn start(client: async_nats::Client, namespace: Namespace, capacity: usize) -> Self {
        let (queue, mut outgoing) = mpsc::channel::<Outgoing>(capacity);
        let stats = Arc::new(FireAndForgetStats::default());
        let worker_stats = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Some((subject, headers, payload)) = outgoing.recv().await {
                if let Err(err) = client
                    .publish_with_headers(subject.clone(), headers, payload)
                    .await
                {
                    worker_stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%subject, error = %err, "fire-and-forget publish failed");
                }
            }
        });
        Self {
            queue,
            namespace,
            stats,
        }
    }

    /// Queues `event` for publishing; returns at once whatever happens to it.
    pub fn emit<E: FireAndForgetEvent>(&self, mut event: E) {
        envelope::stamp(&mut event);
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
        let subject = self.namespace.subject(E::SUBJECT);
        let (headers, payload) =
            envelope::encode(&event, wharf_runtime::telemetry::current_traceparent());
        if self.queue.try_send((subject, headers, payload)).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                subject = E::SUBJECT,
                "fire-and-forget queue full; event dropped"
            );
        }
    }

    pub fn stats(&self) -> &FireAndForgetStats {
        &self.stats
    }
}
