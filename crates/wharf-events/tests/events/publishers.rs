//! The ACKED publisher waits for the stream's ack and fails within its deadline; the
//! fire-and-forget emitter never blocks or fails its caller, and counts what it drops.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use wharf_events::publish::PublishError;
use wharf_events::{AckedPublisher, FireAndForgetPublisher, Namespace, Topology};
use wharf_proto::wharf::auth::v1::UserLoggedIn;
use wharf_proto::wharf::social::v1::AchievementUnlocked;
use wharf_testkit::TestNats;

fn logged_in() -> UserLoggedIn {
    let mut event = UserLoggedIn {
        user_id: "user-1".into(),
        session_id: "session-1".into(),
        ..Default::default()
    };
    wharf_events::envelope::stamp(&mut event);
    event
}

/// With NATS up, the publish returns the stream's ack; publishing the same event again is
/// reported as a duplicate (Nats-Msg-Id = event id).
#[tokio::test]
async fn acked_publish_returns_the_stream_ack() {
    let nats = TestNats::start().await.unwrap();
    let js = jetstream::new(nats.client().await.unwrap());
    Topology::declared(Namespace::root())
        .apply(&js)
        .await
        .unwrap();
    let publisher = AckedPublisher::new(js, Namespace::root());
    let event = logged_in();

    let ack = publisher
        .publish(&event, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ack.stream, "AUTH");
    assert!(!ack.duplicate);
    let again = publisher
        .publish(&event, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(again.duplicate, "the same event id is stored once");
}

/// With NATS down, the publish fails with a typed error within its deadline, so the caller can
/// compensate inside its own request deadline.
#[tokio::test]
async fn acked_publish_fails_within_its_deadline_when_nats_is_down() {
    let mut nats = TestNats::start().await.unwrap();
    let js = jetstream::new(nats.client().await.unwrap());
    Topology::declared(Namespace::root())
        .apply(&js)
        .await
        .unwrap();
    let publisher = AckedPublisher::new(js, Namespace::root());
    nats.kill9();

    let started = Instant::now();
    let err = publisher
        .publish(&logged_in(), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PublishError::Timeout(_) | PublishError::Unavailable(_)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the deadline: {:?}",
        started.elapsed()
    );
}

/// An event without an id is refused before anything is sent.
#[tokio::test]
async fn acked_publish_requires_an_event_id() {
    let nats = TestNats::start().await.unwrap();
    let publisher = AckedPublisher::new(
        jetstream::new(nats.client().await.unwrap()),
        Namespace::root(),
    );
    let err = publisher
        .publish(&UserLoggedIn::default(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::MissingEventId), "{err:?}");
}

/// With NATS up, emitted events land in the stream.
#[tokio::test]
async fn fire_and_forget_delivers_when_nats_is_up() {
    let nats = TestNats::start().await.unwrap();
    let client = nats.client().await.unwrap();
    let js = jetstream::new(client.clone());
    Topology::declared(Namespace::root())
        .apply(&js)
        .await
        .unwrap();
    let emitter = FireAndForgetPublisher::start(client, Namespace::root(), 1024);
    for _ in 0..10 {
        emitter.emit(AchievementUnlocked {
            user_id: "user-1".into(),
            achievement: "first_trade".into(),
            ..Default::default()
        });
    }
    wharf_testkit::wait_until(Duration::from_secs(10), "10 achievements stored", || {
        let js = js.clone();
        async move {
            let Ok(mut social) = js.get_stream("SOCIAL").await else {
                return false;
            };
            social
                .info()
                .await
                .map(|info| info.state.messages == 10)
                .unwrap_or(false)
        }
    })
    .await
    .unwrap();
    assert_eq!(emitter.stats().emitted(), 10);
    assert_eq!(emitter.stats().dropped(), 0);
}

/// With NATS down, `emit` still returns at once, every time, and what cannot be queued is
/// counted as dropped instead of growing without bound.
#[tokio::test]
async fn fire_and_forget_never_blocks_and_counts_drops() {
    let mut nats = TestNats::start().await.unwrap();
    let emitter =
        FireAndForgetPublisher::start(nats.client().await.unwrap(), Namespace::root(), 16);
    nats.kill9();

    let started = Instant::now();
    for _ in 0..10_000 {
        emitter.emit(AchievementUnlocked {
            user_id: "user-1".into(),
            ..Default::default()
        });
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "10,000 emits took {elapsed:?}"
    );
    let stats = emitter.stats();
    assert_eq!(stats.emitted(), 10_000);
    assert!(stats.dropped() > 0, "a full queue drops and counts");
}
