//! The declared topology is applied idempotently, and the self-check refuses a live config that
//! contradicts it.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use wharf_events::topology::{ConsumerSpec, TopologyError};
use wharf_events::{Namespace, Topology};
use wharf_testkit::TestNats;

async fn js(nats: &TestNats) -> jetstream::Context {
    jetstream::new(nats.client().await.unwrap())
}

fn topology() -> Topology {
    Topology::declared(Namespace::root())
}

/// Apply creates one stream per domain plus DLQ with file storage and a ≥ 10 min duplicate
/// window; applying again changes nothing and passes the self-check.
#[tokio::test]
async fn apply_creates_the_declared_streams_and_is_idempotent() {
    let nats = TestNats::start().await.unwrap();
    let js = js(&nats).await;
    let topology = topology();
    topology.apply(&js).await.unwrap();
    topology.apply(&js).await.unwrap();

    for name in ["AUTH", "TRADING", "REVENUE", "SOCIAL", "DLQ"] {
        let mut stream = js
            .get_stream(name)
            .await
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let config = stream.info().await.unwrap().config.clone();
        assert_eq!(config.storage, stream::StorageType::File, "{name}");
        assert!(
            config.duplicate_window >= Duration::from_secs(600),
            "{name}"
        );
    }
    let mut trading = js.get_stream("TRADING").await.unwrap();
    assert_eq!(
        trading.info().await.unwrap().config.subjects,
        vec!["trading.>"]
    );
}

/// A stream someone created with a short duplicate window fails the start-up check, naming the
/// stream and both values.
#[tokio::test]
async fn short_duplicate_window_is_refused() {
    let nats = TestNats::start().await.unwrap();
    let js = js(&nats).await;
    js.create_stream(stream::Config {
        name: "TRADING".into(),
        subjects: vec!["trading.>".into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(30),
        ..Default::default()
    })
    .await
    .unwrap();

    let err = topology().apply(&js).await.unwrap_err();
    assert!(
        matches!(err, TopologyError::StreamContradicts { ref stream, field: "duplicate_window", .. } if stream == "TRADING"),
        "{err}"
    );
    assert!(err.to_string().contains("30s"), "{err}");
}

/// Memory storage would lose committed events on a restart: refused.
#[tokio::test]
async fn memory_storage_is_refused() {
    let nats = TestNats::start().await.unwrap();
    let js = js(&nats).await;
    js.create_stream(stream::Config {
        name: "AUTH".into(),
        subjects: vec!["auth.>".into()],
        storage: stream::StorageType::Memory,
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = topology().apply(&js).await.unwrap_err();
    assert!(
        matches!(
            err,
            TopologyError::StreamContradicts {
                field: "storage",
                ..
            }
        ),
        "{err}"
    );
}

/// Verify-only mode (no changes) reports a missing DLQ.
#[tokio::test]
async fn missing_dlq_is_reported() {
    let nats = TestNats::start().await.unwrap();
    let js = js(&nats).await;
    let topology = topology();
    topology.apply(&js).await.unwrap();
    js.delete_stream("DLQ").await.unwrap();

    let err = topology.verify(&js).await.unwrap_err();
    assert!(
        matches!(err, TopologyError::MissingStream { ref stream, .. } if stream == "DLQ"),
        "{err}"
    );
}

/// The relay's retry horizon must fit in the duplicate window.
#[tokio::test]
async fn window_shorter_than_relay_horizon_is_refused() {
    let nats = TestNats::start().await.unwrap();
    let js = js(&nats).await;
    let mut topology = topology();
    topology.apply(&js).await.unwrap();
    topology.relay_retry_horizon = Duration::from_secs(3600);
    let err = topology.verify(&js).await.unwrap_err();
    assert!(matches!(err, TopologyError::WindowTooShort { .. }), "{err}");
}

/// A durable consumer whose live config differs from the declaration is refused.
#[tokio::test]
async fn contradicting_consumer_is_refused() {
    let nats = TestNats::start().await.unwrap();
    let js = js(&nats).await;
    let topology = topology();
    topology.apply(&js).await.unwrap();
    let spec = ConsumerSpec {
        stream: "TRADING".into(),
        durable: "ledger".into(),
        filter_subject: "trading.trade.executed".into(),
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 32,
    };
    topology.ensure_consumer(&js, &spec).await.unwrap();
    let changed = ConsumerSpec {
        ack_wait: Duration::from_secs(5),
        ..spec
    };
    let err = topology.ensure_consumer(&js, &changed).await.unwrap_err();
    assert!(
        matches!(
            err,
            TopologyError::ConsumerContradicts {
                field: "ack_wait",
                ..
            }
        ),
        "{err}"
    );
}
