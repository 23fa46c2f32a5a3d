//! The idempotent consumer runtime.
//!
//! For each message of a durable pull consumer:
//! 1. decode it into the typed event (a message that cannot be decoded can never succeed: it
//!    goes straight to the dead-letter stream);
//! 2. begin a transaction and insert the inbox row `(consumer, event_id)`, in one round trip
//!    (the private `inbox` module says how); if the row already exists the event was applied
//!    before, so it is acknowledged without running the handler;
//! 3. run the handler inside the same transaction, so its effect and the inbox row commit
//!    together or not at all;
//! 4. commit, then acknowledge with a double ack (the server confirms it recorded the ack; in a
//!    batch, its answer to the last ack confirms them all).
//!
//! A crash between 3 and 4 redelivers the event after `ack_wait`, and step 2 absorbs it.
//!
//! When several messages are already waiting, up to `max_batch` of them share one transaction
//! (one commit instead of one each): their inbox rows go in with one statement, then each
//! handler runs. A handler that fails settles its own event (retry or dead letter, as alone)
//! and the transaction starts over without it, so the others still commit; failures are rare,
//! and a savepoint per event would cost every batch a round trip per event instead. A
//! handler's database error, or a failed commit, sends the whole batch back through the
//! one-event path.
//! A handler failure is NAK'd with exponential backoff; after `max_deliver` failed deliveries the
//! message goes to `DLQ` with its subject, headers, payload, the error and the delivery count,
//! and is terminated. Failures of the runtime's own database work (the database is down) are
//! retried without limit: an outage must not dead-letter healthy events.
//!
//! Work that must follow an event's commit but has no place in its transaction (a
//! `FIRE_AND_FORGET` announcement, a notification, a cache to invalidate) goes in an
//! after-commit hook ([`Consumer::after_commit`]): it runs between the commit and the ack, only
//! for events whose effect committed, at most once each.

use std::collections::HashSet;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt, StreamExt};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::Instrument;
use wharf_proto::Event;
use wharf_runtime::db::HeldConnections;

use crate::dlq::{self, DeadLetter};
use crate::envelope::{self, Envelope};
use crate::inbox;
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
    /// Most events applied in one transaction, when several are waiting at once (each keeps
    /// its own inbox row). 1 gives every event its own transaction.
    pub max_batch: usize,
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
            max_batch: 16,
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
        tx: &'a mut Transaction<'_, Postgres>,
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
    transactions: AtomicU64,
    ack_failures: AtomicU64,
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
    /// Acks (or NAKs, terminations) that failed or were not confirmed in time; their messages
    /// come back after `ack_wait`.
    pub fn ack_failures(&self) -> u64 {
        self.ack_failures.load(Ordering::Relaxed)
    }
    /// Apply transactions committed; `applied() / transactions()` is the mean batch.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
}

/// An after-commit hook, as the consumer stores it; see [`Consumer::after_commit`].
pub type AfterCommit =
    Arc<dyn Fn(&EventContext) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A durable, idempotent consumer of events of type `E`.
pub struct Consumer<E, H> {
    js: jetstream::Context,
    pool: PgPool,
    topology: Topology,
    spec: ConsumerSpec,
    config: ConsumerConfig,
    handler: Arc<H>,
    stats: Arc<ConsumerStats>,
    after_commit: Option<AfterCommit>,
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
            // Room for every slot to fill its batch: with only a message or two per slot
            // outstanding, events trickle in one per transaction, each paying for its own
            // commit.
            max_ack_pending: i64::try_from(config.concurrency.max(1) * config.max_batch.max(1))
                .unwrap_or(i64::MAX),
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
        self.config.max_batch = 1;
        self.spec.max_ack_pending = 1;
        self
    }

    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.stats)
    }

    /// Runs `hook` for each event whose effect this consumer committed, after the commit and
    /// before the ack. For side effects that must never happen for an event that was not
    /// applied, and that may be lost: a `FIRE_AND_FORGET` event, a notification, a metric.
    ///
    /// When it runs:
    /// - only once the transaction holding the event's inbox row and its handler's effect has
    ///   committed, so whatever the hook reads from the database includes that effect;
    /// - never for an event whose effect was rolled back: a handler that failed (retried or
    ///   dead-lettered), a batch started over without a failed handler's event, a batch whose
    ///   commit failed (its events are then applied one by one, and the hook runs for those
    ///   that commit);
    /// - never for a duplicate the inbox absorbs (a redelivery, or the same event id published
    ///   again): its effect committed earlier, and the hook ran then or was lost;
    /// - at most once per event: a crash between the commit and the hook loses it, and the
    ///   redelivery that follows is a duplicate. What must not be lost belongs in the
    ///   transaction (the outbox), not here.
    ///
    /// The hook is awaited in the event's tracing span, before its ack and while its
    /// concurrency slot is held; the events of a batch run theirs one after another, in the
    /// batch's order. Keep it short — queue work, never wait on a remote service. Setting a
    /// hook replaces the previous one.
    pub fn after_commit<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(&EventContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.after_commit = Some(Arc::new(move |ctx: &EventContext| {
            Box::pin(hook(ctx)) as Pin<Box<dyn Future<Output = ()> + Send>>
        }));
        self
    }

    /// Consumes until `shutdown` is cancelled; in-flight events finish first.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let consumer = self.topology.ensure_consumer(&self.js, &self.spec).await?;
        let worker = Arc::new(Worker {
            client: self.js.client(),
            js: self.js.clone(),
            conns: HeldConnections::new(self.pool, HELD_CONNECTION_LINGER),
            topology: self.topology,
            config: self.config,
            handler: self.handler,
            stats: self.stats,
            after_commit: self.after_commit,
            _event: PhantomData,
        });
        let permits = Arc::new(Semaphore::new(worker.config.concurrency.max(1)));
        let tasks = TaskTracker::new();
        // Ends with this future, however it ends (a dropped consumer keeps no connections).
        let trimmer = AbortOnDropHandle::new(tokio::spawn({
            let worker = Arc::clone(&worker);
            async move {
                let mut tick = tokio::time::interval(HELD_CONNECTION_LINGER);
                loop {
                    tick.tick().await;
                    worker.conns.trim();
                }
            }
        }));
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
            // A message (or the end of the stream, or an error) read while gathering a batch,
            // handled on the next turn.
            let mut lookahead = None;
            loop {
                let next = match lookahead.take() {
                    Some(next) => next,
                    None => tokio::select! {
                        next = messages.next() => next,
                        () = shutdown.cancelled() => break,
                    },
                };
                match next {
                    Some(Ok(message)) => {
                        reconnect_delay = Duration::from_millis(100);
                        let permit = Arc::clone(&permits)
                            .acquire_owned()
                            .await
                            .expect("semaphore open");
                        // Whatever else has arrived by now (typically while every slot was
                        // busy) shares the transaction; nothing is waited for.
                        let mut batch = vec![message];
                        while batch.len() < worker.config.max_batch {
                            match messages.next().now_or_never() {
                                None => break,
                                Some(Some(Ok(message))) => batch.push(message),
                                Some(other) => {
                                    lookahead = Some(other);
                                    break;
                                }
                            }
                        }
                        // Concurrent batches take their keys' locks (the outbox's per-key lock,
                        // rows of the key's aggregate) in one global order, so two batches
                        // never wait on each other in a cycle. Stable: a key's events keep
                        // their stream order.
                        batch.sort_by(|a, b| batch_key(a).cmp(batch_key(b)));
                        let worker = Arc::clone(&worker);
                        if worker.config.concurrency <= 1 {
                            worker.process(batch, permit).await;
                        } else {
                            tasks.spawn(async move { worker.process(batch, permit).await });
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
        drop(trimmer);
        Ok(())
    }
}

struct Worker<E, H> {
    /// For confirmed acks, through the client's shared request inbox.
    client: async_nats::Client,
    js: jetstream::Context,
    /// Each slot's connection stays out of the pool while the consumer is busy.
    conns: HeldConnections,
    topology: Topology,
    config: ConsumerConfig,
    handler: Arc<H>,
    stats: Arc<ConsumerStats>,
    after_commit: Option<AfterCommit>,
    _event: PhantomData<fn() -> E>,
}

/// The ordering key a message was published under (`Wharf-Key`), for ordering a batch.
fn batch_key(message: &jetstream::Message) -> &str {
    message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(envelope::KEY))
        .map_or("", |value| value.as_str())
}

/// What to do with a message after processing.
#[derive(Debug, Clone)]
enum Outcome {
    Ack,
    Retry(Duration),
    DeadLetter(String),
}

/// A received message, with what its processing is traced and acknowledged under.
struct Received {
    message: jetstream::Message,
    span: tracing::Span,
    delivered: u32,
    stream_sequence: u64,
}

/// An event ready to be applied.
struct Decoded<E> {
    ctx: EventContext,
    event_id: uuid::Uuid,
    event: E,
}

/// One attempt at a batch: the events not settled yet (`pending`: positions in `ready`).
struct Attempt<'a, E> {
    received: &'a [Received],
    ready: &'a [(usize, Decoded<E>)],
    pending: &'a [(usize, &'a Decoded<E>)],
}

/// How an attempt at a batch ended, when no error stopped it.
enum Attempted {
    Committed,
    /// A handler failed and settled its event; the others go again.
    Again,
}

/// Why a batch did not commit.
enum BatchError {
    /// The database could not start it: every event is retried later, as one event would be.
    Unavailable(sqlx::Error),
    /// Something went wrong that one event may have caused (a handler's database error, a
    /// failed commit): the batch is rolled back and its events are applied one by one.
    Abandoned(String),
}

/// How long a slot's connection stays out of the pool unused. Short: a service's RPCs share the
/// pool, and a steady flow reuses a connection within milliseconds anyway.
const HELD_CONNECTION_LINGER: Duration = Duration::from_millis(100);

/// How long a double ack waits for the server's confirmation.
const DOUBLE_ACK_TIMEOUT: Duration = Duration::from_secs(5);

impl<E: Event, H: Handler<E>> Worker<E, H> {
    /// Applies a batch of messages (one transaction when several can be applied), then
    /// acknowledges each. `slot` bounds the database work only: it is released before the
    /// acks, so a slow ack never idles a database slot (the server's `max_ack_pending` still
    /// bounds what is unacknowledged).
    async fn process(&self, messages: Vec<jetstream::Message>, slot: OwnedSemaphorePermit) {
        let (received, decoded): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .map(|message| self.receive(message))
            .unzip();
        let outcomes = self.apply_all(&received, decoded).await;
        drop(slot);
        // One confirmation covers the batch: the server handles a connection's acks in the
        // order they arrive, so its answer to the last one means it recorded the others. They
        // are settled one after another, so they leave in that order (a plain ack only queues
        // its message on the connection). If the connection is lost with acks still queued, the
        // confirmation may come over the next one; the lost acks' events are redelivered after
        // `ack_wait` and the inbox absorbs them.
        let confirmed = outcomes
            .iter()
            .rposition(|outcome| matches!(outcome, Outcome::Ack));
        for (index, (received, outcome)) in received.into_iter().zip(outcomes).enumerate() {
            self.settle(received, outcome, Some(index) == confirmed)
                .await;
        }
    }

    /// Reads a message's delivery info and decodes its event; a message that can never be
    /// applied gets its outcome at once.
    fn receive(&self, message: jetstream::Message) -> (Received, Result<Decoded<E>, Outcome>) {
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
        let decoded = match envelope::decode::<E>(message.headers.as_ref(), &message.payload) {
            Err(err) => Err(Outcome::DeadLetter(format!("undecodable: {err}"))),
            Ok((envelope, event)) => {
                if let Some(traceparent) = &envelope.traceparent {
                    wharf_runtime::telemetry::set_parent_traceparent(&span, traceparent);
                }
                match uuid::Uuid::parse_str(&envelope.event_id) {
                    Ok(event_id) => Ok(Decoded {
                        ctx: EventContext {
                            envelope,
                            subject,
                            delivered,
                            stream_sequence,
                        },
                        event_id,
                        event,
                    }),
                    Err(_) => Err(Outcome::DeadLetter(format!(
                        "event id {:?} is not a UUID",
                        envelope.event_id
                    ))),
                }
            }
        };
        let received = Received {
            message,
            span,
            delivered,
            stream_sequence,
        };
        (received, decoded)
    }

    /// The outcome of every message, in order: the applicable events in one transaction when
    /// there are several, otherwise (or for those a batch could not settle) one by one.
    async fn apply_all(
        &self,
        received: &[Received],
        decoded: Vec<Result<Decoded<E>, Outcome>>,
    ) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = decoded
            .iter()
            .map(|decoded| decoded.as_ref().err().cloned())
            .collect();
        let ready: Vec<(usize, Decoded<E>)> = decoded
            .into_iter()
            .enumerate()
            .filter_map(|(index, decoded)| decoded.ok().map(|decoded| (index, decoded)))
            .collect();

        let mut unavailable = None;
        if ready.len() > 1 {
            let span = tracing::info_span!("consume_batch", consumer = %self.config.name, events = ready.len());
            let mut settled = vec![None; ready.len()];
            let batch = self
                .apply_batch(received, &ready, &mut settled)
                .instrument(span)
                .await;
            for ((index, _), outcome) in ready.iter().zip(settled) {
                outcomes[*index] = outcome;
            }
            match batch {
                Ok(()) => {}
                Err(BatchError::Unavailable(err)) => unavailable = Some(err),
                Err(BatchError::Abandoned(reason)) => {
                    tracing::debug!(consumer = %self.config.name, %reason, "batch rolled back; applying its events one by one");
                }
            }
        }

        for (index, decoded) in ready {
            if outcomes[index].is_some() {
                continue;
            }
            let span = received[index].span.clone();
            let ctx = decoded.ctx;
            let outcome = match &unavailable {
                // The database just failed: the others would only wait for it in turn.
                Some(err) => span.in_scope(|| self.infrastructure(&ctx, err)),
                None => match self
                    .apply_one(&ctx, decoded.event_id, decoded.event)
                    .instrument(span.clone())
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(err) => {
                        let outcome = span.in_scope(|| self.infrastructure(&ctx, &err));
                        unavailable = Some(err);
                        outcome
                    }
                },
            };
            outcomes[index] = Some(outcome);
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every message has an outcome"))
            .collect()
    }

    /// One event in its own transaction. `Err` is the database failing (not the handler).
    async fn apply_one(
        &self,
        ctx: &EventContext,
        event_id: uuid::Uuid,
        event: E,
    ) -> Result<Outcome, sqlx::Error> {
        let mut conn = self.conns.acquire().await?;
        let outcome = self.apply_one_on(&mut conn, ctx, event_id, event).await?;
        self.conns.keep(conn);
        Ok(outcome)
    }

    async fn apply_one_on(
        &self,
        conn: &mut PgConnection,
        ctx: &EventContext,
        event_id: uuid::Uuid,
        event: E,
    ) -> Result<Outcome, sqlx::Error> {
        let rows = [(event_id, ctx.subject.as_str())];
        let slow = match inbox::begin(conn, &self.config.name, &rows).await? {
            Ok(tx) => return self.apply_one_in(tx, ctx, event).await,
            Err(slow) => slow,
        };
        let mut tx = conn.begin_with(slow).await?;
        let inserted = sqlx::query(inbox::INSERT_ONE)
            .bind(&self.config.name)
            .bind(event_id)
            .bind(&ctx.subject)
            .execute(&mut *tx)
            .await?;
        if inserted.rows_affected() == 0 {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(event_id = %event_id, "already applied; acknowledging");
            return Ok(Outcome::Ack);
        }
        self.apply_one_in(tx, ctx, event).await
    }

    /// Runs the handler in `tx`, which holds the event's new inbox row, and commits.
    async fn apply_one_in(
        &self,
        mut tx: Transaction<'_, Postgres>,
        ctx: &EventContext,
        event: E,
    ) -> Result<Outcome, sqlx::Error> {
        if let Err(err) = self.handler.handle(ctx, event, &mut tx).await {
            return Ok(self.failed(ctx, err));
        }
        tx.commit().await?;
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        self.stats.applied.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &self.after_commit {
            hook(ctx).await;
        }
        Ok(Outcome::Ack)
    }

    /// Several events in one transaction. One statement inserts their inbox rows, then each
    /// new event's handler runs. A handler that fails settles its event and the transaction
    /// starts over without it, so the others still commit, and its outcome is what it would
    /// have been alone.
    ///
    /// Fills in `settled` (aligned with `ready`) for every event whose outcome is decided;
    /// on an error, the events left unsettled have not been applied.
    async fn apply_batch(
        &self,
        received: &[Received],
        ready: &[(usize, Decoded<E>)],
        settled: &mut [Option<Outcome>],
    ) -> Result<(), BatchError> {
        let mut conn = self
            .conns
            .acquire()
            .await
            .map_err(BatchError::Unavailable)?;
        self.apply_batch_on(&mut conn, received, ready, settled)
            .await?;
        self.conns.keep(conn);
        Ok(())
    }

    async fn apply_batch_on(
        &self,
        conn: &mut PgConnection,
        received: &[Received],
        ready: &[(usize, Decoded<E>)],
        settled: &mut [Option<Outcome>],
    ) -> Result<(), BatchError> {
        // Each attempt applies the events not settled yet; a handler that fails settles its
        // own event and the attempt starts over without it.
        loop {
            let pending: Vec<(usize, &Decoded<E>)> = ready
                .iter()
                .enumerate()
                .filter(|(position, _)| settled[*position].is_none())
                .map(|(position, (_, decoded))| (position, decoded))
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            let rows: Vec<(uuid::Uuid, &str)> = pending
                .iter()
                .map(|(_, decoded)| (decoded.event_id, decoded.ctx.subject.as_str()))
                .collect();
            let batch = Attempt {
                received,
                ready,
                pending: &pending,
            };
            let begun = inbox::begin(conn, &self.config.name, &rows).await;
            let slow = match begun.map_err(BatchError::Unavailable)? {
                // Every row was new (an id twice in the batch would have failed the insert).
                Ok(tx) => {
                    let new = rows.iter().map(|(event_id, _)| *event_id).collect();
                    match self.attempt_batch(tx, new, &batch, settled).await? {
                        Attempted::Committed => return Ok(()),
                        Attempted::Again => continue,
                    }
                }
                Err(slow) => slow,
            };
            let mut tx = conn
                .begin_with(slow)
                .await
                .map_err(BatchError::Unavailable)?;
            let (ids, subjects): (Vec<uuid::Uuid>, Vec<&str>) = rows.iter().copied().unzip();
            let inserted: Vec<uuid::Uuid> = sqlx::query_scalar(inbox::INSERT_MANY)
                .bind(&self.config.name)
                .bind(&ids)
                .bind(&subjects)
                .fetch_all(&mut *tx)
                .await
                .map_err(BatchError::Unavailable)?;
            // An id absent here was applied before; an id twice in the batch is applied once.
            let new = inserted.into_iter().collect();
            match self.attempt_batch(tx, new, &batch, settled).await? {
                Attempted::Committed => return Ok(()),
                Attempted::Again => {}
            }
        }
    }

    /// Runs the handlers of `batch.pending` whose event id is in `new` (the others were
    /// applied before) in `tx`, and commits; a handler that fails settles its own event and
    /// rolls the attempt back.
    async fn attempt_batch(
        &self,
        mut tx: Transaction<'_, Postgres>,
        mut new: HashSet<uuid::Uuid>,
        batch: &Attempt<'_, E>,
        settled: &mut [Option<Outcome>],
    ) -> Result<Attempted, BatchError> {
        let abandoned = |err: sqlx::Error| BatchError::Abandoned(err.to_string());
        let mut applied = Vec::with_capacity(batch.pending.len());
        for &(position, decoded) in batch.pending {
            let span = &batch.received[batch.ready[position].0].span;
            let ctx = &decoded.ctx;
            if !new.remove(&decoded.event_id) {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                span.in_scope(|| tracing::debug!(event_id = %decoded.event_id, "already applied; acknowledging"));
                settled[position] = Some(Outcome::Ack);
                continue;
            }
            let result = self
                .handler
                .handle(ctx, decoded.event.clone(), &mut tx)
                .instrument(span.clone())
                .await;
            match result {
                Ok(()) => applied.push(position),
                // Maybe the event's doing, maybe the batch's (a deadlock between two
                // batches): the one-event path decides.
                Err(HandlerError::Database(err)) => return Err(abandoned(err)),
                Err(err) => {
                    settled[position] = Some(span.in_scope(|| self.failed(ctx, err)));
                    // Rolled back (with every inbox row of the attempt); the others go again.
                    return Ok(Attempted::Again);
                }
            }
        }
        tx.commit().await.map_err(abandoned)?;

        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        self.stats
            .applied
            .fetch_add(applied.len() as u64, Ordering::Relaxed);
        for position in applied {
            let (index, decoded) = &batch.ready[position];
            if let Some(hook) = &self.after_commit {
                hook(&decoded.ctx)
                    .instrument(batch.received[*index].span.clone())
                    .await;
            }
            settled[position] = Some(Outcome::Ack);
        }
        Ok(Attempted::Committed)
    }

    /// What a handler's failure means for its event.
    fn failed(&self, ctx: &EventContext, err: HandlerError) -> Outcome {
        match err {
            HandlerError::Permanent(reason) => Outcome::DeadLetter(reason),
            err if ctx.delivered >= self.config.max_deliver => Outcome::DeadLetter(err.to_string()),
            err => {
                tracing::warn!(error = %err, delivered = ctx.delivered, "handler failed; will retry");
                Outcome::Retry(self.config.backoff(ctx.delivered))
            }
        }
    }

    /// Acknowledges a message according to its outcome; `confirm` waits for the server to
    /// confirm an ack (a double ack).
    async fn settle(&self, received: Received, outcome: Outcome, confirm: bool) {
        let Received {
            message,
            span,
            delivered,
            stream_sequence,
        } = received;
        let acked = async {
            match outcome {
                Outcome::Ack if confirm => self.double_ack(&message).await,
                Outcome::Ack => message.ack().await,
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
            self.stats.ack_failures.fetch_add(1, Ordering::Relaxed);
            let _entered = span.enter();
            // The message will be redelivered; the inbox absorbs it if it was applied.
            tracing::warn!(error = %err, "ack failed");
        }
    }

    /// JetStream's double ack, as a request through the client's shared inbox: async-nats's
    /// `Message::double_ack` subscribes an inbox of its own for every ack, which costs the
    /// server two more protocol messages and two updates of its subscription table per event.
    async fn double_ack(&self, message: &jetstream::Message) -> Result<(), async_nats::Error> {
        let reply = message
            .reply
            .clone()
            .ok_or("no reply subject: not a JetStream message")?;
        let request = async_nats::Request::new()
            .payload(AckKind::Ack.into())
            .timeout(Some(DOUBLE_ACK_TIMEOUT));
        self.client.send_request(reply, request).await?;
        Ok(())
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
