//! Best effort means never in the way: with NATS gone, notifications are dropped and counted,
//! and queuing them costs the caller nothing.

use std::time::{Duration, Instant};

use wharf_events::Namespace;
use wharf_proto::wharf::gateway::v1::Notification;
use wharf_social::Notifier;
use wharf_testkit::TestNats;

#[tokio::test]
async fn notifications_never_block_or_fail_when_nats_is_down() {
    let mut nats = TestNats::start().await.expect("nats");
    let client = nats.client().await.unwrap();
    let notifier = Notifier::start(client, Namespace::root(), 16);
    nats.stop();

    let start = Instant::now();
    for n in 0..10_000 {
        notifier.notify(&Notification {
            event_id: format!("event-{n}"),
            user_id: format!("user-{n}"),
            kind: "achievement".to_owned(),
            ..Notification::default()
        });
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "10,000 notifications took {took:?}"
    );
    let stats = notifier.stats();
    assert_eq!(stats.queued() + stats.dropped(), 10_000);
    assert!(stats.dropped() > 0, "the queue holds 16, NATS takes none");
}
