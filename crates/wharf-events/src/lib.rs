//! Wharf's event plumbing on NATS JetStream.
//!
//! Events are protobuf messages whose delivery class is part of their type (see `wharf-proto`).
//! This crate moves them:
//! - [`envelope`]: the headers every event carries (`Nats-Msg-Id` = event id, the protobuf
//!   full name, `traceparent`, content type) and decoding back into the typed event;
//! - [`topology`]: the streams and durable consumers, declared in code from the contracts,
//!   applied idempotently at start-up, and checked against what the server really has;
//! - [`publish`]: the `ACKED` publisher (awaits the PubAck within a deadline) and the
//!   `FIRE_AND_FORGET` emitter (never blocks, counts what it drops). `OUTBOX` events have no
//!   publisher here on purpose: they can only be enqueued in a transaction (`wharf-outbox`);
//! - [`consumer`]: the idempotent consumer runtime (inbox row + effect in one transaction,
//!   commit then ack, NAK with backoff, dead letters after `max_deliver`, an after-commit hook
//!   for best-effort side effects of committed events);
//! - [`dlq`]: the dead-letter stream and its operations (list, show, replay, discard);
//! - [`Namespace`]: a prefix for stream names and subjects, so tests (and tenants) isolate.
#![forbid(unsafe_code)]

pub mod consumer;
pub mod dlq;
pub mod envelope;
mod inbox;
pub mod publish;
pub mod topology;

use sqlx::migrate::Migrator;
use wharf_runtime::db::SchemaMigrations;

pub use consumer::{Consumer, ConsumerConfig, EventContext, HandlerError};
pub use publish::{AckedPublisher, FireAndForgetPublisher, PublishError};
pub use topology::{EventsConfig, Namespace, Topology};

/// The inbox table's migrations, applied into a consuming service's own schema.
pub fn migrations(service: &'static str, schema: &'static str) -> SchemaMigrations {
    static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
    SchemaMigrations::component(service, schema, "events", clone_migrator(&MIGRATOR))
}

fn clone_migrator(migrator: &Migrator) -> Migrator {
    Migrator::with_migrations(migrator.iter().cloned().collect())
}
