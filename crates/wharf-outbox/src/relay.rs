//! The outbox relay: publishes committed outbox rows to JetStream, in order per key, deleting
//! each row only after its PubAck arrived.
//!
//! - **Buckets and leases.** Every row has a bucket (hash of its ordering key). A relay holds a
//!   session advisory lock per bucket it publishes; several relays split the buckets, and a
//!   dead relay's locks vanish with its connection, so another picks its buckets up. One key is
//!   therefore only ever published by one relay at a time.
//! - **Claims, no cursor.** A worker claims the oldest rows of its buckets with
//!   `FOR UPDATE SKIP LOCKED` and deletes them in the same statement, publishes them, and
//!   commits the delete once every ack arrived (otherwise it rolls back and deletes only the
//!   acknowledged rows). A row that becomes visible late (its transaction committed after a
//!   later one's) is simply claimed by the next pass.
//! - **Pipelined acks.** A batch is sent without waiting, then all acks are awaited together.
//!   `Nats-Msg-Id` = event id makes a retried publish (a lost ack, a crash before the delete) a
//!   duplicate that JetStream drops within its duplicate window; consumers' inboxes absorb any
//!   that get through later.
//! - **Wake-ups.** Producers wake the relay after their commit ([`Waker`]): directly in this
//!   process, or with `NOTIFY wharf_outbox`, which the relay LISTENs for. It also polls every
//!   `poll_interval`, for rows whose wake never came.
//! - **Faults.** A failed publish leaves its row (attempts and last error recorded) and the
//!   worker backs off; a lost database connection drops the leases and the relay reconnects.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use futures::FutureExt;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, RwLock, watch};
use tokio_util::sync::CancellationToken;
use wharf_events::envelope::Envelope;
use wharf_events::topology::Namespace;
use wharf_runtime::db::{HeldConnection, HeldConnections};

use crate::wake::{Local, Waker};
use crate::{BUCKETS, CHANNEL, fnv1a};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Rows claimed and published per batch.
    pub batch_size: usize,
    /// Concurrent drain workers; each owns a disjoint slice of the buckets, so order per key
    /// holds while batches overlap. One is best with NATS nearby: its next batch takes every
    /// row committed while it was publishing, where several workers would each claim, publish
    /// and commit a row or two, and a steady flow would pay three database round trips per
    /// event (`wharf-bench --only latency --relay-workers N` shows it). More overlap slow
    /// publish acks (a distant NATS).
    pub workers: usize,
    /// Fallback poll when no notification arrives.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a publish may wait for its ack.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// How often unowned buckets are tried (and a lost lease connection re-made).
    #[serde(with = "humantime_serde")]
    pub lease_interval: Duration,
    /// Longest pause after repeated failures.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 512,
            workers: 1,
            poll_interval: Duration::from_secs(1),
            publish_timeout: Duration::from_secs(5),
            lease_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Counters for tests, benchmarks and operators.
#[derive(Debug, Default)]
pub struct RelayStats {
    published: AtomicU64,
    duplicates: AtomicU64,
    failures: AtomicU64,
    batches: AtomicU64,
    claims: AtomicU64,
    chained: AtomicU64,
}

impl RelayStats {
    /// Rows acknowledged by JetStream and deleted.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    /// Acks that reported a duplicate (the event had been stored before).
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
    /// Publishes or batches that failed and will be retried.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
    /// Batches that published at least one row.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
    /// Batches whose commit also began the next batch's transaction, because more rows were
    /// waiting (one round trip fewer each).
    pub fn chained(&self) -> u64 {
        self.chained.load(Ordering::Relaxed)
    }
    /// Claims made, including those that found nothing (`claims() - batches()`): a wake-up
    /// for rows an earlier claim already took, or a chained batch that found none (its
    /// transaction is ended before this counts it).
    pub fn claims(&self) -> u64 {
        self.claims.load(Ordering::Relaxed)
    }
}

/// A relay for the outbox table of one schema.
#[derive(Debug)]
pub struct Relay {
    pool: PgPool,
    /// The workers' connections: a busy worker keeps one from batch to batch (taking it from
    /// the pool and giving it back would cost two pings per batch); an idle worker's goes
    /// back after `poll_interval`.
    conns: HeldConnections,
    js: jetstream::Context,
    namespace: Namespace,
    schema: String,
    config: RelayConfig,
    stats: Arc<RelayStats>,
    /// One per drain worker: rung by the LISTEN task and by this process's [`Waker`]s.
    wakes: Arc<Vec<Notify>>,
    /// The buckets this relay holds leases on, published by the lease task.
    owned: watch::Sender<BTreeSet<i16>>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    event_id: uuid::Uuid,
    subject: String,
    event_type: String,
    ordering_key: String,
    payload: Vec<u8>,
    traceparent: Option<String>,
}

impl Relay {
    /// `pool` must resolve `outbox` to the schema's table (see `wharf_runtime::db::connect_lazy`).
    pub fn new(
        pool: PgPool,
        client: async_nats::Client,
        namespace: Namespace,
        schema: &str,
        config: RelayConfig,
    ) -> Self {
        let js = jetstream::ContextBuilder::new()
            .timeout(config.publish_timeout)
            .max_ack_inflight(config.batch_size.max(1) * config.workers.max(1))
            .backpressure_on_inflight(true)
            .build(client);
        Self {
            conns: HeldConnections::new(pool.clone(), config.poll_interval),
            pool,
            js,
            namespace,
            schema: schema.to_owned(),
            wakes: Arc::new((0..config.workers.max(1)).map(|_| Notify::new()).collect()),
            owned: watch::Sender::new(BTreeSet::new()),
            config,
            stats: Arc::new(RelayStats::default()),
        }
    }

    /// A [`Waker`] for producers in this process: it wakes this relay directly, and the relays
    /// of other processes through PostgreSQL unless this one owns every bucket.
    pub fn waker(&self) -> Waker {
        Waker::build(
            Some(Local {
                workers: Arc::clone(&self.wakes),
                owned: self.owned.subscribe(),
            }),
            self.pool.clone(),
        )
    }

    pub fn stats(&self) -> Arc<RelayStats> {
        Arc::clone(&self.stats)
    }

    /// Publishes until `shutdown` is cancelled. Never returns an error: every failure is
    /// retried with backoff, because a relay that gives up loses nothing but delays everything.
    pub async fn run(self, shutdown: CancellationToken) {
        let owned_tx = self.owned.clone();
        let owned_rx = self.owned.subscribe();
        let relay = Arc::new(self);
        let wakes = Arc::clone(&relay.wakes);

        let gate = Arc::new(RwLock::new(()));
        let leases = tokio::spawn(Arc::clone(&relay).lease_buckets(
            owned_tx,
            Arc::clone(&gate),
            shutdown.clone(),
        ));
        let listener =
            tokio::spawn(Arc::clone(&relay).listen(Arc::clone(&wakes), shutdown.clone()));
        let workers: Vec<_> = (0..relay.config.workers.max(1))
            .map(|index| {
                tokio::spawn(Arc::clone(&relay).drain_worker(
                    index,
                    owned_rx.clone(),
                    Arc::clone(&wakes),
                    Arc::clone(&gate),
                    shutdown.clone(),
                ))
            })
            .collect();

        shutdown.cancelled().await;
        for task in workers.into_iter().chain([listener, leases]) {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "a relay task panicked");
            }
        }
    }

    /// Keeps session advisory locks on a fair share of the buckets, on one dedicated
    /// connection, and publishes the owned set to the workers.
    ///
    /// Each relay also holds one "slot" lock; counting the granted slot locks in `pg_locks`
    /// tells how many relays are alive, so each aims for `ceil(64 / relays)` buckets. A relay
    /// above its share hands buckets back, but only after the workers finished any batch that
    /// might still be publishing from them (the `gate`), so two relays never publish one key at
    /// once. A lost connection loses every lock at once, and with it every bucket.
    async fn lease_buckets(
        self: Arc<Self>,
        owned_tx: watch::Sender<BTreeSet<i16>>,
        gate: Arc<RwLock<()>>,
        shutdown: CancellationToken,
    ) {
        let slots = lease_class(&self.schema, "slots");
        let buckets = lease_class(&self.schema, "buckets");
        let mut backoff = self.config.lease_interval;
        while !shutdown.is_cancelled() {
            let mut conn = match self.pool.acquire().await {
                Ok(conn) => conn.detach(),
                Err(err) => {
                    tracing::warn!(error = %err, "relay cannot reach the database; retrying");
                    owned_tx.send_replace(BTreeSet::new());
                    if sleep_or_stop(backoff, &shutdown).await {
                        break;
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    continue;
                }
            };
            backoff = self.config.lease_interval;
            let mut owned = BTreeSet::new();
            let mut slot = None;
            loop {
                match self
                    .rebalance(
                        &mut conn, slots, buckets, &mut slot, &mut owned, &owned_tx, &gate,
                    )
                    .await
                {
                    Ok(()) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "relay lost its lease connection");
                        owned_tx.send_replace(BTreeSet::new());
                        break;
                    }
                }
                if sleep_or_stop(self.config.lease_interval, &shutdown).await {
                    // Workers finish their batch before the locks go with the connection.
                    owned_tx.send_replace(BTreeSet::new());
                    let _drained = gate.write().await;
                    return;
                }
            }
        }
    }

    /// One leasing round: take a slot, count the live relays, then grow or shrink to the share.
    #[allow(clippy::too_many_arguments)]
    async fn rebalance(
        &self,
        conn: &mut sqlx::PgConnection,
        slots: i32,
        buckets: i32,
        slot: &mut Option<i32>,
        owned: &mut BTreeSet<i16>,
        owned_tx: &watch::Sender<BTreeSet<i16>>,
        gate: &RwLock<()>,
    ) -> Result<(), sqlx::Error> {
        if slot.is_none() {
            for candidate in 0..MAX_RELAYS {
                if try_lock(conn, slots, candidate).await? {
                    *slot = Some(candidate);
                    break;
                }
            }
        }
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND classid = $1::bigint::oid AND objsubid = 2",
        )
        .bind(i64::from(slots))
        .fetch_one(&mut *conn)
        .await?;
        let live = usize::try_from(live.max(1)).unwrap_or(1);
        let share = usize::from(BUCKETS.unsigned_abs()).div_ceil(live);

        if owned.len() > share {
            let excess: Vec<i16> = owned
                .iter()
                .rev()
                .take(owned.len() - share)
                .copied()
                .collect();
            for bucket in &excess {
                owned.remove(bucket);
            }
            owned_tx.send_replace(owned.clone());
            // No batch may still be running on a bucket we hand back.
            let _drained = gate.write().await;
            for bucket in excess {
                sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                    .bind(buckets)
                    .bind(i32::from(bucket))
                    .execute(&mut *conn)
                    .await?;
            }
            tracing::info!(
                buckets = owned.len(),
                relays = live,
                "relay handed buckets back"
            );
            return Ok(());
        }
        let before = owned.len();
        for bucket in 0..BUCKETS {
            if owned.len() >= share {
                break;
            }
            if !owned.contains(&bucket) && try_lock(conn, buckets, i32::from(bucket)).await? {
                owned.insert(bucket);
            }
        }
        // A cheap liveness probe even when nothing changed: a dead connection holds no locks.
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        if owned.len() != before || *owned_tx.borrow() != *owned {
            tracing::info!(buckets = owned.len(), relays = live, "relay leases updated");
            owned_tx.send_replace(owned.clone());
        }
        Ok(())
    }

    /// Turns `NOTIFY wharf_outbox, '<bucket>'` into a wake-up of the worker that owns the
    /// bucket (all workers for an unknown payload). Notifications lost while reconnecting are
    /// covered by the workers' poll.
    async fn listen(self: Arc<Self>, wakes: Arc<Vec<Notify>>, shutdown: CancellationToken) {
        let wake_all = || wakes.iter().for_each(Notify::notify_waiters);
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::debug!(error = %err, "relay cannot LISTEN yet; polling meanwhile");
                    if sleep_or_stop(backoff, &shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    continue;
                }
            };
            if let Err(err) = listener.listen(CHANNEL).await {
                tracing::debug!(error = %err, "relay cannot LISTEN yet; polling meanwhile");
                if sleep_or_stop(backoff, &shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(self.config.max_backoff);
                continue;
            }
            backoff = Duration::from_millis(100);
            wake_all();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    received = listener.try_recv() => match received {
                        Ok(Some(notification)) => match notification.payload().parse::<usize>() {
                            Ok(bucket) => wakes[bucket % wakes.len()].notify_waiters(),
                            Err(_) => wake_all(),
                        },
                        // The connection was lost (and will be re-made): rows may have
                        // committed meanwhile.
                        Ok(None) => wake_all(),
                        Err(err) => {
                            tracing::debug!(error = %err, "relay LISTEN failed; reconnecting");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Drains the owned buckets `bucket % workers == index` whenever woken or polled.
    async fn drain_worker(
        self: Arc<Self>,
        index: usize,
        mut owned_rx: watch::Receiver<BTreeSet<i16>>,
        wakes: Arc<Vec<Notify>>,
        gate: Arc<RwLock<()>>,
        shutdown: CancellationToken,
    ) {
        let workers = self.config.workers.max(1);
        let mut backoff = Duration::from_millis(50);
        while !shutdown.is_cancelled() {
            // Registered before draining, so a notification that lands mid-drain is not lost.
            let notified = wakes[index].notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // The next batch's transaction, already begun by the last batch's COMMIT because
            // more rows were waiting (see `relay_batch`); never held while idle. (Between
            // batches it may wait for the batch gate while the lease task hands buckets back.)
            let mut begun: Option<HeldConnection> = None;

            let mut failed = false;
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                // Held for one batch: the lease task waits for it before handing buckets back.
                let _batch = gate.read().await;
                let buckets: Vec<i16> = owned_rx
                    .borrow_and_update()
                    .iter()
                    .copied()
                    .filter(|bucket| usize::try_from(*bucket).unwrap_or(0) % workers == index)
                    .collect();
                if buckets.is_empty() {
                    // Not to be held while waiting for buckets: closed now (its transaction
                    // is empty).
                    drop(begun.take());
                    break;
                }
                // A wake since the worker last listened (before this batch's claim) may mean
                // rows the claim did not see: the next batch follows at once.
                let more = || notified.as_mut().now_or_never().is_some();
                match self.relay_batch(&buckets, begun.take(), more).await {
                    Ok(next @ Some(_)) => {
                        backoff = Duration::from_millis(50);
                        begun = next;
                        // The notification (if that was it) is spent: listen afresh before
                        // the next claim.
                        notified.set(wakes[index].notified());
                        notified.as_mut().enable();
                    }
                    // A short batch and no wake since its claim: the buckets are drained.
                    Ok(None) => {
                        backoff = Duration::from_millis(50);
                        break;
                    }
                    Err(err) => {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %err, ?backoff, "relay batch failed; backing off");
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                if sleep_or_stop(backoff, &shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(self.config.max_backoff);
                continue;
            }
            tokio::select! {
                () = &mut notified => {}
                _ = owned_rx.changed() => {}
                // A whole poll interval without a notification: idle.
                () = tokio::time::sleep(self.config.poll_interval) => self.conns.trim(),
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Claims, publishes and deletes one batch. Returns the connection inside the next
    /// batch's transaction, already begun, when more rows may be waiting: a full batch, or
    /// `more()` (a wake since the worker last listened, which it did before the claim).
    ///
    /// Round trips to PostgreSQL: `BEGIN`, one statement that claims the rows and deletes them
    /// (uncommitted, so they stay locked and come back if anything fails), and the `COMMIT`
    /// once every ack is in. While rows keep coming, that `COMMIT` also begins the next
    /// batch's transaction, so a steady flow costs two per batch. A batch with a failed
    /// publish is rolled back instead, and its acknowledged rows are deleted (the others
    /// marked) in a transaction of their own. A connection left by an error is closed (it may
    /// be inside a transaction), never reused.
    async fn relay_batch(
        &self,
        buckets: &[i16],
        begun: Option<HeldConnection>,
        more: impl FnOnce() -> bool,
    ) -> Result<Option<HeldConnection>, BatchError> {
        let (mut conn, is_begun) = match begun {
            Some(conn) => (conn, true),
            None => (self.conns.acquire().await?, false),
        };
        match self
            .relay_batch_on(&mut conn, buckets, is_begun, more)
            .await
        {
            Ok(true) => Ok(Some(conn)),
            Ok(false) => {
                self.conns.keep(conn);
                Ok(None)
            }
            // A failed publish leaves the connection clean (its rows were dealt with in a
            // transaction that committed).
            Err(err @ BatchError::Publish(_)) => {
                self.conns.keep(conn);
                Err(err)
            }
            Err(err) => Err(err),
        }
    }

    /// [`Self::relay_batch`] on `conn` (inside a begun transaction if `begun`); returns
    /// whether it began the next batch's transaction.
    async fn relay_batch_on(
        &self,
        conn: &mut PgConnection,
        buckets: &[i16],
        begun: bool,
        more: impl FnOnce() -> bool,
    ) -> Result<bool, BatchError> {
        // The relay's own commit (the delete of published rows) need not wait for the disk: if
        // PostgreSQL crashed and forgot it, the rows would come back and be published again,
        // and JetStream's duplicate window or the consumers' inboxes would absorb them. This
        // spares one fsync per batch; producers and consumers keep durable commits.
        // (One round trip: the setting rides on the BEGIN.) The transaction is managed with
        // plain statements, not an sqlx `Transaction`, so that its COMMIT can also begin the
        // next one; every error path drops the connection, which `HeldConnection` then closes.
        if !begun {
            sqlx::raw_sql(BEGIN).execute(&mut *conn).await?;
        }
        let rows: Vec<Row> = sqlx::query_as(
            // `= ANY (ARRAY(…))` runs the claim once, up front, and deletes by primary key
            // (a plain `IN (…)` lets the planner hash-join against a scan of the whole table).
            "WITH claimed AS ( \
                 DELETE FROM outbox WHERE id = ANY (ARRAY( \
                     SELECT id FROM outbox WHERE bucket = ANY($1) \
                     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)) \
                 RETURNING id, event_id, subject, event_type, ordering_key, payload, traceparent) \
             SELECT * FROM claimed ORDER BY id",
        )
        .bind(buckets)
        .bind(i64::try_from(self.config.batch_size).unwrap_or(512))
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
        }
        // Counted once the transaction of an empty claim has ended.
        self.stats.claims.fetch_add(1, Ordering::Relaxed);
        if rows.is_empty() {
            return Ok(false);
        }

        // Send everything first (one pipelined burst in id order), then collect the acks.
        let claimed = rows.len();
        let all_ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        let mut pending = Vec::with_capacity(claimed);
        let mut send_error = None;
        for row in rows {
            let envelope = Envelope {
                event_id: row.event_id.to_string(),
                event_type: row.event_type,
                key: row.ordering_key,
                traceparent: row.traceparent,
            };
            let subject = self.namespace.subject(&row.subject);
            match self
                .js
                .publish_with_headers(subject, envelope.headers(), row.payload.into())
                .await
            {
                Ok(ack) => pending.push((row.id, ack)),
                Err(err) => {
                    // Later rows of the same keys must not overtake this one: stop sending.
                    send_error = Some(err.to_string());
                    break;
                }
            }
        }
        let (ids, acks): (Vec<i64>, Vec<_>) = pending.into_iter().unzip();
        let results = join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await;

        let mut acked = Vec::with_capacity(ids.len());
        let mut first_error = send_error;
        for (id, result) in ids.into_iter().zip(results) {
            match result {
                Ok(ack) => {
                    if ack.duplicate {
                        self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    acked.push(id);
                }
                Err(err) => {
                    first_error.get_or_insert_with(|| err.to_string());
                }
            }
        }

        match first_error {
            None => {
                let next = claimed >= self.config.batch_size || more();
                let commit = if next { COMMIT_AND_BEGIN } else { "COMMIT" };
                sqlx::raw_sql(commit).execute(&mut *conn).await?;
                self.record(acked.len());
                if next {
                    self.stats.chained.fetch_add(1, Ordering::Relaxed);
                }
                Ok(next)
            }
            Some(error) => {
                // The unacknowledged rows must stay: undo the claim, then delete only what
                // JetStream stored. The buckets are still ours (the batch gate is held), so
                // nothing else publishes these rows meanwhile.
                sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
                let acked_set: HashSet<i64> = acked.iter().copied().collect();
                let unacked: Vec<i64> = all_ids
                    .into_iter()
                    .filter(|id| !acked_set.contains(id))
                    .collect();
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
                    .bind(&acked)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1)",
                )
                .bind(&unacked)
                .bind(&error)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                self.record(acked.len());
                Err(BatchError::Publish(error))
            }
        }
    }

    fn record(&self, published: usize) {
        self.stats
            .published
            .fetch_add(published as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("publish: {0}")]
    Publish(String),
}

/// A batch's transaction: its commit (the delete of published rows) need not wait for the
/// disk (see `relay_batch_on`).
const BEGIN: &str = "BEGIN; SET LOCAL synchronous_commit = off";
/// A batch's commit that also begins the next batch's transaction (in one round trip).
const COMMIT_AND_BEGIN: &str = "COMMIT; BEGIN; SET LOCAL synchronous_commit = off";

/// Relays of one schema that can run at once (one slot lock each).
const MAX_RELAYS: i32 = 64;

/// The advisory-lock class of a schema's `kind` of lock (non-negative, so it compares as an
/// oid in `pg_locks`); relays of different schemas never contend.
fn lease_class(schema: &str, kind: &str) -> i32 {
    let hash = fnv1a(format!("wharf-outbox:{schema}:{kind}").as_bytes());
    i32::try_from((hash >> 33) & 0x7fff_ffff).expect("masked to 31 bits")
}

async fn try_lock(
    conn: &mut sqlx::PgConnection,
    class: i32,
    key: i32,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(class)
        .bind(key)
        .fetch_one(conn)
        .await
}

/// Sleeps; returns true when stopped instead.
async fn sleep_or_stop(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = shutdown.cancelled() => true,
    }
}
