//! Waking relays once a producer's transaction has committed.
//!
//! Why not `NOTIFY` inside the producer's transaction: PostgreSQL (up to 16) serialises the
//! commits of every transaction that ran `NOTIFY` in the cluster, holding one lock from the
//! start of the commit through its WAL flush. Producers then wait for each other's disk
//! flushes one at a time, with no group commit, and a backend preempted while holding the lock
//! stalls them all. `wharf-bench --only latency` showed it: the producers' most common wait was
//! `Lock:object`, and the producer's commit p99 was ten times its p50.
//!
//! So [`crate::enqueue`] only writes the row, and the producer calls [`Waker::commit`] (or
//! [`Waker::wake`] after its own commit):
//! - **Same process.** A relay running here is woken directly, a `tokio::sync::Notify`, no
//!   round trip. When it owns every bucket, that is all.
//! - **Other processes.** Otherwise one `NOTIFY wharf_outbox` goes out, from its own small
//!   transaction that does not wait for the disk (a notification lost in a crash only delays
//!   a row until the relays' poll). Wakes that arrive while one is being sent share the next.
//!
//! A row whose wake never comes (a producer that forgot it, a crash between commit and wake) is
//! still published: relays also poll, every `poll_interval`.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{Notify, mpsc, watch};
use wharf_runtime::db::HeldConnections;

use crate::BUCKETS;

/// One notification, sent from a transaction that does not wait for its WAL flush (so it holds
/// PostgreSQL's notify lock only for a moment). The payload is empty: every listening relay
/// worker wakes and claims from its own buckets.
const NOTIFY: &str =
    "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_notify('wharf_outbox', ''); COMMIT";

/// How long the notifying task keeps its connection after the last wake.
const LINGER: Duration = Duration::from_secs(1);

/// Wakes the relays of one schema after a commit that enqueued events. Cheap to clone; a wake
/// never blocks and never fails its caller.
#[derive(Debug, Clone)]
pub struct Waker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    local: Option<Local>,
    pool: PgPool,
    /// Started on the first wake that has to reach another process.
    notifier: OnceLock<mpsc::Sender<()>>,
}

/// The drain workers of a relay in this process, and the buckets it owns.
#[derive(Debug)]
pub(crate) struct Local {
    pub(crate) workers: Arc<Vec<Notify>>,
    pub(crate) owned: watch::Receiver<BTreeSet<i16>>,
}

impl Waker {
    /// Wakes relays through PostgreSQL only: for a producer with no relay of its own.
    /// `pool` must reach the database the relays listen on.
    pub fn notifying(pool: PgPool) -> Self {
        Self::build(None, pool)
    }

    pub(crate) fn build(local: Option<Local>, pool: PgPool) -> Self {
        Self {
            inner: Arc::new(Inner {
                local,
                pool,
                notifier: OnceLock::new(),
            }),
        }
    }

    /// Commits `tx`, then wakes the relays. The commit's error is returned as is; the wake
    /// happens only after a successful commit.
    pub async fn commit(&self, tx: Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.wake();
        Ok(())
    }

    /// Wakes the relays: call it after committing a transaction that enqueued events.
    pub fn wake(&self) {
        if let Some(local) = &self.inner.local {
            local.workers.iter().for_each(Notify::notify_waiters);
            if local.owned.borrow().len() == usize::from(BUCKETS.unsigned_abs()) {
                return;
            }
        }
        let notifier = self.inner.notifier.get_or_init(|| {
            // Capacity 1: a wake that finds one already queued is covered by it, since the
            // queued notification is sent after this call.
            let (tx, rx) = mpsc::channel(1);
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(notify_relays(self.inner.pool.clone(), rx));
            }
            tx
        });
        let _ = notifier.try_send(());
    }
}

/// Wakes every relay of the database through PostgreSQL, once: for rare producers (a
/// reconciliation pass) that keep no [`Waker`]. A failure only delays the rows until the
/// relays' poll, so it is logged, not returned.
pub async fn notify(pool: &PgPool) {
    if let Err(err) = sqlx::raw_sql(NOTIFY).execute(pool).await {
        tracing::debug!(error = %err, "cannot notify the relays; they will poll");
    }
}

/// Sends one notification per batch of wakes until every [`Waker`] clone is gone.
async fn notify_relays(pool: PgPool, mut wakes: mpsc::Receiver<()>) {
    let conns = HeldConnections::new(pool, LINGER);
    loop {
        let wake = match tokio::time::timeout(LINGER, wakes.recv()).await {
            Ok(wake) => wake,
            Err(_idle) => {
                conns.trim();
                continue;
            }
        };
        if wake.is_none() {
            return;
        }
        let sent = match conns.acquire().await {
            Ok(mut conn) => match sqlx::raw_sql(NOTIFY).execute(&mut *conn).await {
                Ok(_) => {
                    conns.keep(conn);
                    Ok(())
                }
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        if let Err(err) = sent {
            // The relays' poll picks the rows up; nothing is lost.
            tracing::debug!(error = %err, "cannot notify the relays; they will poll");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_notification_goes_to_the_relays_channel() {
        assert!(super::NOTIFY.contains(&format!("pg_notify('{}', '')", crate::CHANNEL)));
    }
}
