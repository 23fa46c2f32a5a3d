//! Reconciliation of the trading side: a lost event is re-driven, an audit difference reported.

use std::time::Duration;

use wharf_proto::wharf::trading::v1::{Side, TradeExecuted};
use wharf_testkit::wait_until;
use wharf_trading::TradingConfig;
use wharf_trading::reconcile::{AUDIT_MATCHES_BALANCES, ORDER_SETTLES};

use crate::harness::{Harness, test_config};

/// An outbox row deleted before it was published (a lost event) leaves its order FILLED;
/// reconciliation re-emits the trade under a new event id, and it reaches the stream.
#[tokio::test]
async fn a_lost_trade_event_is_found_and_re_driven() {
    let h = Harness::start_with(TradingConfig {
        relay: false,
        ..test_config()
    })
    .await;
    let user = h.user(&[]);
    h.deposit(&user, 1_000_000).await;
    let order = h.order(&user, "ACME", Side::Buy, 2).await.unwrap();
    assert_eq!(
        h.count("WITH lost AS (DELETE FROM outbox RETURNING 1) SELECT count(*) FROM lost")
            .await,
        1,
        "the event is lost"
    );

    let findings = wharf_trading::reconcile::run(&h.pool, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].invariant, ORDER_SETTLES);
    assert_eq!(findings[0].subject, order.order_id);
    assert_eq!(findings[0].action, "repaired");
    assert_eq!(
        h.count("SELECT count(*) FROM reconciliation_log").await,
        1,
        "the repair is on record"
    );
    // A second run right away does not re-drive the same order again.
    assert!(
        wharf_trading::reconcile::run(&h.pool, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );

    // The re-driven event reaches JetStream once a relay runs.
    let relay = wharf_outbox::Relay::new(
        h.pool.clone(),
        h.nats.client().await.unwrap(),
        wharf_events::Namespace::root(),
        wharf_trading::SCHEMA,
        wharf_outbox::RelayConfig::default(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(relay.run(stop.clone()));
    let stream = h.js.get_stream("TRADING").await.unwrap();
    wait_until(Duration::from_secs(20), "the re-driven trade", || {
        let mut stream = stream.clone();
        async move {
            stream
                .info()
                .await
                .is_ok_and(|info| info.state.messages == 1)
        }
    })
    .await
    .unwrap();
    stop.cancel();
    running.await.unwrap();
    let message = stream.get_raw_message(1).await.unwrap();
    let event: TradeExecuted = prost::Message::decode(message.payload.as_ref()).unwrap();
    assert_eq!(event.order_id, order.order_id);
    assert_eq!(event.fee_minor, order.fee_minor);
}

/// Cash that no longer matches its audit rows is reported, not "repaired".
#[tokio::test]
async fn an_audit_difference_is_reported() {
    let h = Harness::start().await;
    let user = h.user(&[]);
    h.deposit(&user, 5_000).await;
    sqlx::query("UPDATE accounts SET cash_minor = cash_minor + 7")
        .execute(&h.pool)
        .await
        .unwrap();
    let findings = wharf_trading::reconcile::run(&h.pool, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].invariant, AUDIT_MATCHES_BALANCES);
    assert_eq!(findings[0].action, "reported");
    assert!(
        findings[0].detail.contains("5007"),
        "{}",
        findings[0].detail
    );
}
