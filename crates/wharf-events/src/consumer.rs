//! The idempotent consumer runtime.
//!
//! For each message of a durable pull consumer:
//! 1. decode it into the typed event (a message that cannot be decoded can never succeed: it
//!    goes straight to the dead-letter stream);
//! 2. begin a transaction and insert the inbox row `(consumer, event_id)`; if the row already
//!    exists the event was applied before, so it is acknowledged without running the handler;
//! 3. run the handler inside the same transaction, so its effect and the inbox row commit
//!    together or not at all;
//! 4. commit, then acknowledge with a double ack (the server confirms it recorded the ack).
//!
//! A crash between 3 and 4 redelivers the event after `ack_wait`, and step 2 absorbs it.
//! A handler failure is NAK'd with exponential backoff; after `max_deliver` failed deliveries the
//! message goes to `DLQ` with its subject, headers, payload, the error and the delivery count,
//! and is terminated. Failures of the runtime's own database work (the database is down) are
//! retried without limit: an outage must not dead-letter healthy events.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use wharf_proto::Event;

use crate::dlq::{self, DeadLetter};
use crate::envelope::{self, Envelope};
use crate::topology::{ConsumerSpec, Topology, TopologyError};

/// How a consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The consumer's name: its durable name on the server and its key in the inbox.
    pub name: String,
    /// Unacknowledged time after which the server redelivers.
    pub ack_wait: Duration,
    /// Failed handler deliveries before the event is dead-lettered.
    pub max_deliver: u32,
    /// First retry delay; doubles per delivery up to `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Events handled at once. 1 handles one at a time, in stream order.
    pub concurrency: usize,
    /// Messages requested per pull.
    pub batch: usize,
}

impl ConsumerConfig {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            concurrency: 1,
            batch: 256,
        }
    }

    /// The retry delay after the `delivered`-th failed delivery.
    pub fn backoff(&self, delivered: u32) -> Duration {
        let exponent = delivered.saturating_sub(1).min(16);
        self.backoff_base
            .saturating_mul(1 << exponent)
            .min(self.backoff_max)
    }
}

/// What a handler knows about the message besides the event.
#[derive(Debug, Clone)]
pub struct EventContext {
    pub envelope: Envelope,
    /// The subject without the namespace prefix.
    pub subject: String,
    /// 1 on first delivery.
    pub delivered: u32,
    pub stream_sequence: u64,
}

/// Why a handler did not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event can never be applied (it breaks an invariant): dead-letter it now.
    #[error("{0}")]
    Permanent(String),
    /// It may work later: retry with backoff, dead-letter after `max_deliver`.
    #[error("{0}")]
    Transient(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Applies one event inside the transaction that also holds its inbox row.
pub trait Handler<E: Event>: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        ctx: &'a EventContext,
        event: E,
        tx: &'a mut Transaction<'static, Postgres>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;
}

/// Counters, for tests, benchmarks and operators.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    applied: AtomicU64,
    duplicates: AtomicU64,
    redeliveries: AtomicU64,
    retries: AtomicU64,
    dead_lettered: AtomicU64,
}

impl ConsumerStats {
    /// Events whose effect committed.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }
    /// Deliveries absorbed by the inbox.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
    /// Deliveries with a delivery count above 1.
    pub fn redeliveries(&self) -> u64 {
        self.redeliveries.load(Ordering::Relaxed)
    }
    /// NAKs sent for a later retry.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

type Hook = Arc<dyn Fn(&EventContext) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A durable, idempotent consumer of events of type `E`.
pub struct Consumer<E, H> {
    js: jetstream::Context,
    pool: PgPool,
    topology: Topology,
    spec: ConsumerSpec,
    config: ConsumerConfig,
    handler: Arc<H>,
    stats: Arc<ConsumerStats>,
    after_commit: Option<Hook>,
    _event: PhantomData<fn() -> E>,
}

impl<E, H> std::fmt::Debug for Consumer<E, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl<E: Event, H: Handler<E>> Consumer<E, H> {
    pub fn new(
        js: jetstream::Context,
        pool: PgPool,
        topology: &Topology,
        config: ConsumerConfig,
        handler: H,
    ) -> Self {
        let namespace = &topology.namespace;
        let spec = ConsumerSpec {
            stream: topology.stream_name(E::STREAM),
            durable: namespace.durable(&config.name),
            filter_subject: namespace.subject(E::SUBJECT),
            ack_wait: config.ack_wait,
            max_ack_pending: i64::try_from(config.concurrency.max(1) * 2).unwrap_or(i64::MAX),
        };
        Self {
            js,
            pool,
            topology: topology.clone(),
            spec,
            config,
            handler: Arc::new(handler),
            stats: Arc::new(ConsumerStats::default()),
            after_commit: None,
            _event: PhantomData,
        }
    }

    /// Strict order: one unacknowledged message at a time on the server, one handler at a time
    /// here. Events of a key then apply in the order they were published.
    pub fn ordered(mut self) -> Self {
        self.config.concurrency = 1;
        self.spec.max_ack_pending = 1;
        self
    }

    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.stats)
    }

    /// Runs `hook` after each commit and before the ack: fault tests park it there to stand
    /// for a crash between the two.
    #[doc(hidden)]
    pub fn with_after_commit_hook(mut self, hook: Hook) -> Self {
        self.after_commit = Some(hook);
        self
    }

    /// Consumes until `shutdown` is cancelled; in-flight events finish first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let consumer = self.topology.ensure_consumer(&self.js, &self.spec).await?;
        let worker = Arc::new(Worker {
            js: self.js.clone(),
            pool: self.pool,
            topology: self.topology,
            config: self.config,
            handler: self.handler,
            stats: self.stats,
            after_commit: self.after_commit,
            _event: PhantomData,
        });
        let permits = Arc::new(Semaphore::new(worker.config.concurrency.max(1)));
        let tasks = TaskTracker::new();
        let mut reconnect_delay = Duration::from_millis(100);

        while !shutdown.is_cancelled() {
            let messages = consumer
                .stream()
                .max_messages_per_batch(worker.config.batch)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(30))
                .messages()
                .await;
            let mut messages = match messages {
                Ok(messages) => messages,
                Err(err) => {
                    tracing::warn!(consumer = %worker.config.name, error = %err, "pull failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(reconnect_delay) => {}
                        () = shutdown.cancelled() => break,
                    }
                    reconnect_delay = (reconnect_delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    next = messages.next() => next,
                    () = shutdown.cancelled() => break,
                };
                match next {
                    Some(Ok(message)) => {
                        reconnect_delay = Duration::from_millis(100);
                        let permit = Arc::clone(&permits)
                            .acquire_owned()
                            .await
                            .expect("semaphore open");
                        let worker = Arc::clone(&worker);
                        if worker.config.concurrency <= 1 {
                            worker.process(message, permit).await;
                        } else {
                            tasks.spawn(async move { worker.process(message, permit).await });
                        }
                    }
                    Some(Err(err)) => {
                        // Back off before re-subscribing, so a persistent error is not a hot loop.
                        tracing::debug!(consumer = %worker.config.name, error = %err, "pull stream error; re-subscribing");
                        tokio::select! {
                            () = tokio::time::sleep(reconnect_delay) => {}
                            () = shutdown.cancelled() => {}
                        }
                        reconnect_delay = (reconnect_delay * 2).min(Duration::from_secs(5));
                        break;
                    }
                    None => break,
                }
            }
        }
        // In-flight events finish (and are acknowledged) before the consumer returns.
        tasks.close();
        tasks.wait().await;
        Ok(())
    }
}

struct Worker<E, H> {
    js: jetstream::Context,
    pool: PgPool,
    topology: Topology,
    config: ConsumerConfig,
    handler: Arc<H>,
    stats: Arc<ConsumerStats>,
    after_commit: Option<Hook>,
    _event: PhantomData<fn() -> E>,
}

/// What to do with a message after processing.
enum Outcome {
    Ack,
    Retry(Duration),
    DeadLetter(String),
}

impl<E: Event, H: Handler<E>> Worker<E, H> {
    /// Applies one message, then acknowledges it. `slot` bounds the database work only: it is
    /// released before the ack, so a slow ack never idles a database slot (the server's
    /// `max_ack_pending` still bounds what is unacknowledged).
    async fn process(&self, message: jetstream::Message, slot: OwnedSemaphorePermit) {
        let (delivered, stream_sequence) = match message.info() {
            Ok(info) => (
                u32::try_from(info.delivered).unwrap_or(u32::MAX),
                info.stream_sequence,
            ),
            Err(_) => (1, 0),
        };
        if delivered > 1 {
            self.stats.redeliveries.fetch_add(1, Ordering::Relaxed);
        }
        let subject = self
            .topology
            .namespace
            .strip(message.subject.as_str())
            .to_owned();
        let span = tracing::info_span!("consume", consumer = %self.config.name, %subject, delivered, stream_sequence);
        let outcome = match envelope::decode::<E>(message.headers.as_ref(), &message.payload) {
            Err(err) => Outcome::DeadLetter(format!("undecodable: {err}")),
            Ok((envelope, event)) => {
                if let Some(traceparent) = &envelope.traceparent {
                    wharf_runtime::telemetry::set_parent_traceparent(&span, traceparent);
                }
                let ctx = EventContext {
                    envelope,
                    subject,
                    delivered,
                    stream_sequence,
                };
                self.apply(ctx, event).instrument(span.clone()).await
            }
        };
        drop(slot);
        let acked = async {
            match outcome {
                Outcome::Ack => message.double_ack().await,
                Outcome::Retry(delay) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    message.ack_with(AckKind::Nak(Some(delay))).await
                }
                Outcome::DeadLetter(error) => {
                    self.dead_letter(&message, delivered, stream_sequence, error)
                        .await
                }
            }
        }
        .instrument(span.clone())
        .await;
        if let Err(err) = acked {
            let _entered = span.enter();
            // The message will be redelivered; the inbox absorbs it if it was applied.
            tracing::warn!(error = %err, "ack failed");
        }
    }

    async fn apply(&self, ctx: EventContext, event: E) -> Outcome {
        let Ok(event_id) = uuid::Uuid::parse_str(&ctx.envelope.event_id) else {
            return Outcome::DeadLetter(format!(
                "event id {:?} is not a UUID",
                ctx.envelope.event_id
            ));
        };
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(err) => return self.infrastructure(&ctx, &err),
        };
        let inserted = sqlx::query(
            "INSERT INTO inbox (consumer, event_id, subject) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&self.config.name)
        .bind(event_id)
        .bind(&ctx.subject)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(done) if done.rows_affected() == 0 => {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(event_id = %event_id, "already applied; acknowledging");
                return Outcome::Ack;
            }
            Ok(_) => {}
            Err(err) => return self.infrastructure(&ctx, &err),
        }

        match self.handler.handle(&ctx, event, &mut tx).await {
            Ok(()) => {}
            Err(HandlerError::Permanent(reason)) => return Outcome::DeadLetter(reason),
            Err(err) if ctx.delivered >= self.config.max_deliver => {
                return Outcome::DeadLetter(err.to_string());
            }
            Err(err) => {
                tracing::warn!(error = %err, delivered = ctx.delivered, "handler failed; will retry");
                return Outcome::Retry(self.config.backoff(ctx.delivered));
            }
        }
        if let Err(err) = tx.commit().await {
            return self.infrastructure(&ctx, &err);
        }
        self.stats.applied.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &self.after_commit {
            hook(&ctx).await;
        }
        Outcome::Ack
    }

    fn infrastructure(&self, ctx: &EventContext, err: &sqlx::Error) -> Outcome {
        tracing::warn!(error = %err, delivered = ctx.delivered, "database unavailable; will retry");
        Outcome::Retry(self.config.backoff(ctx.delivered))
    }

    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        delivered: u32,
        stream_sequence: u64,
        error: String,
    ) -> Result<(), async_nats::Error> {
        let letter = DeadLetter {
            original_subject: self
                .topology
                .namespace
                .strip(message.subject.as_str())
                .to_owned(),
            headers: message.headers.clone().unwrap_or_default(),
            payload: message.payload.clone(),
            error,
            deliveries: delivered,
            consumer: self.config.name.clone(),
            stream_sequence,
        };
        match dlq::publish(&self.js, &self.topology.namespace, &letter).await {
            Ok(()) => {
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %letter.error, deliveries = delivered, "event dead-lettered");
                message.ack_with(AckKind::Term).await
            }
            Err(err) => {
                // Never terminate a message whose dead letter was not stored.
                tracing::warn!(error = %err, "dead-letter publish failed; will retry");
                message
                    .ack_with(AckKind::Nak(Some(self.config.backoff(delivered))))
                    .await
            }
        }
    }
}
