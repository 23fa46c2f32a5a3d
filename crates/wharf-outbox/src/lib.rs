//! The transactional outbox (ARCHITECTURE §6).
//!
//! [`enqueue`] writes an `OUTBOX` event into the producer's own PostgreSQL transaction: it
//! commits with the business rows or not at all. The [`relay::Relay`] publishes committed rows
//! to JetStream with `Nats-Msg-Id` = event id, and deletes a row only after its PubAck arrived.
//!
//! Why no cursor: a relay that remembers "the last id I published" skips rows of transactions
//! that took a lower id but committed later. The relay instead claims whatever is there with
//! `FOR UPDATE SKIP LOCKED`, so a row is published whenever it becomes visible.
//!
//! # Layout
//! - [`enqueue`] (this module): the only way to send an `OUTBOX` event.
//! - [`relay`]: bucket leases, batched claims with pipelined acks.
//! - [`wake`]: waking relays after the producer's commit.
#![forbid(unsafe_code)]

pub mod relay;
pub mod wake;

use sqlx::migrate::Migrator;
use sqlx::{Postgres, Transaction};
use wharf_events::envelope;
use wharf_proto::OutboxEvent;
use wharf_runtime::db::SchemaMigrations;

pub use relay::{Relay, RelayConfig, RelayStats};
pub use wake::Waker;

/// Buckets that ordering keys hash into. Part of the stored data: never change it.
pub const BUCKETS: i16 = 64;

/// The channel relays listen on for wakes from other processes ([`Waker`]).
pub const CHANNEL: &str = "wharf_outbox";

/// The outbox table's migrations, applied into a producing service's own schema.
pub fn migrations(service: &'static str, schema: &'static str) -> SchemaMigrations {
    static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
    let migrator = Migrator::with_migrations(MIGRATOR.iter().cloned().collect());
    SchemaMigrations::component(service, schema, "outbox", migrator)
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("failed to write the outbox row: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event id {0:?} is not a UUID")]
    BadEventId(String),
}

/// Enqueues `event` in `tx`, returning its event id.
///
/// Only an `OUTBOX` event, and only inside a live transaction: anything else does not compile.
/// The event's envelope (`event_id`, `occurred_at`) is filled in when left empty.
///
/// Producers of one ordering key are serialised from here until their commit (a transaction
/// advisory lock on the key), so ids grow in commit order within a key and the relay publishes
/// them in that order. Enqueue events of several keys in a consistent order to avoid deadlocks.
///
/// Commit through [`Waker::commit`] (or call [`Waker::wake`] after committing) so a relay
/// publishes the event at once; otherwise it is published at the relay's next poll.
pub async fn enqueue<E: OutboxEvent>(
    tx: &mut Transaction<'_, Postgres>,
    mut event: E,
) -> Result<String, OutboxError> {
    envelope::stamp(&mut event);
    let event_id = event.event_id().to_owned();
    let id =
        uuid::Uuid::parse_str(&event_id).map_err(|_| OutboxError::BadEventId(event_id.clone()))?;
    let key = event.ordering_key().into_owned();
    let hash = fnv1a(key.as_bytes());

    // One round trip: the key's lock is taken (in the FROM clause) before the row's id is
    // drawn. No NOTIFY here: it would serialise every producer's commit (see [`wake`]). The
    // lock is the key's within this schema: another
    // service producing events of the same key (trading and revenue both key by account)
    // never waits for it, and never deadlocks with it.
    let bucket = bucket_of(hash);
    sqlx::query(
        "INSERT INTO outbox (event_id, subject, event_type, ordering_key, bucket, payload, traceparent) \
         SELECT $1, $2, $3, $4, $5, $6, $7 \
         FROM (SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || $4, 0))) \
              AS serialised",
    )
    .bind(id)
    .bind(E::SUBJECT)
    .bind(E::FULL_NAME)
    .bind(&key)
    .bind(bucket)
    .bind(event.encode_to_vec())
    .bind(wharf_runtime::telemetry::current_traceparent())
    .execute(&mut **tx)
    .await?;
    Ok(event_id)
}

/// FNV-1a, 64 bit: stable across releases and platforms, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn bucket_of(hash: u64) -> i16 {
    i16::try_from(hash % u64::from(BUCKETS.unsigned_abs())).expect("bucket fits")
}

#[cfg(test)]
mod tests {
    use super::{BUCKETS, bucket_of, fnv1a};

    #[test]
    fn buckets_are_stable_and_in_range() {
        // Stored data depends on these values: they must never change.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        for key in ["", "acc-1", "acc-2", "user-42"] {
            let bucket = bucket_of(fnv1a(key.as_bytes()));
            assert!((0..BUCKETS).contains(&bucket));
        }
    }
}
