//! The `revenue-ledger` consumer: a trade becomes one ledger entry and one
//! `revenue.fee.recorded`; a redelivered event changes nothing; a re-driven trade writes no
//! second entry but announces its fee again; an event that can never apply is dead-lettered.

use std::collections::HashSet;

use wharf_proto::wharf::trading::v1::TradeExecuted;
use wharf_revenue::LEDGER_CONSUMER;

use crate::harness::{Harness, redrive, trade};

/// Another trade of `event`'s account.
fn same_account(event: &TradeExecuted) -> TradeExecuted {
    TradeExecuted {
        account_id: event.account_id.clone(),
        ..trade("ACME", 1, NOON)
    }
}

/// 2026-11-21T12:00:00Z.
const NOON: i64 = 1_795_262_400;

/// A trade event → one entry carrying the trade, and one `revenue.fee.recorded` for it in the
/// REVENUE stream, published with `Nats-Msg-Id` = its event id.
#[tokio::test]
async fn a_trade_becomes_one_entry_and_one_fee_recorded() {
    let h = Harness::start().await;
    let event = trade("WHRF", 42, NOON);
    h.publish_raw(&event).await;

    let entries = h.wait_entries(1).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.event_id.to_string(), event.event_id);
    assert_eq!(entry.trade_id.to_string(), event.trade_id);
    assert_eq!(entry.order_id.to_string(), event.order_id);
    assert_eq!(entry.account_id.to_string(), event.account_id);
    assert_eq!(entry.user_id, event.user_id);
    assert_eq!(entry.instrument, "WHRF");
    assert_eq!(entry.fee_minor, 42);
    assert_eq!(entry.currency, "USD");
    assert_eq!(entry.trade_executed_at.timestamp(), NOON);
    assert_eq!(entry.id.get_version_num(), 7, "ledger ids are UUIDv7");

    let fees = h.wait_fee_events(1).await;
    assert_eq!(fees.len(), 1);
    let fee = &fees[0];
    assert_eq!(fee.ledger_entry_id, entry.id.to_string());
    assert_eq!(fee.trade_id, event.trade_id);
    assert_eq!(fee.order_id, event.order_id);
    assert_eq!(fee.account_id, event.account_id);
    assert_eq!(fee.fee_minor, 42);
    assert_eq!(fee.currency, "USD");
    assert!(fee.occurred_at.is_some());
    let (msg_id, _) = &h.fee_events().await[0];
    assert_eq!(msg_id, &fee.event_id, "Nats-Msg-Id is the event id");
    assert!(h.dead_letters().await.is_empty());
}

/// The same event delivered twice (stored twice in the stream, as a replayed dead letter is)
/// is absorbed by the inbox: still one entry and one `revenue.fee.recorded`.
#[tokio::test]
async fn the_same_event_twice_is_one_entry_and_one_fee_recorded() {
    let h = Harness::start().await;
    let event = trade("WHRF", 42, NOON);
    h.publish_raw(&event).await;
    h.publish_again(&event).await;

    h.wait_handled(2).await;
    assert_eq!(h.stats.applied(), 1);
    assert_eq!(
        h.stats.duplicates(),
        1,
        "the inbox absorbed the second delivery"
    );
    assert_eq!(h.entries().await.len(), 1);
    // A later trade of the same account: the relay publishes one account's fee events in
    // commit order, so once its fee event is out, any the duplicate had caused would be too.
    h.publish_raw(&same_account(&event)).await;
    h.wait_entries(2).await;
    let fees = h.wait_fee_events(2).await;
    assert_eq!(
        fees.iter().filter(|f| f.trade_id == event.trade_id).count(),
        1
    );
}

/// A re-drive (the same trade under a new event id, as trading's reconciliation sends it)
/// writes no second entry, but a fresh `revenue.fee.recorded` for the existing entry, so the
/// order can settle.
#[tokio::test]
async fn a_redriven_trade_keeps_one_entry_and_announces_its_fee_again() {
    let h = Harness::start().await;
    let original = trade("WHRF", 42, NOON);
    h.publish_raw(&original).await;
    let entries = h.wait_entries(1).await;
    h.wait_fee_events(1).await;

    let again = redrive(&original);
    h.publish_raw(&again).await;
    let fees = h.wait_fee_events(2).await;
    assert_eq!(fees.len(), 2);
    let entry = &entries[0];
    for fee in &fees {
        assert_eq!(fee.ledger_entry_id, entry.id.to_string());
        assert_eq!(fee.trade_id, original.trade_id);
        assert_eq!(fee.fee_minor, 42);
    }
    assert_ne!(fees[0].event_id, fees[1].event_id, "two distinct events");

    assert_eq!(h.stats.applied(), 2, "both events applied (inbox rows)");
    let after = h.entries().await;
    assert_eq!(after.len(), 1, "no second entry");
    assert_eq!(
        after[0].event_id.to_string(),
        original.event_id,
        "the entry keeps the event that created it"
    );
}

/// Many trades, each re-driven while its original may still be in flight (the consumer applies
/// 16 at a time): one entry per trade, two fee events per trade, all naming that entry.
#[tokio::test]
async fn redrives_racing_their_originals_still_write_one_entry_per_trade() {
    let h = Harness::start().await;
    let trades: Vec<TradeExecuted> = (0..40).map(|i| trade("WHRF", i, NOON + i)).collect();
    for event in &trades {
        h.publish_raw(event).await;
        h.publish_raw(&redrive(event)).await;
    }
    h.wait_handled(80).await;
    let entries = h.entries().await;
    assert_eq!(entries.len(), 40);
    let fees = h.wait_fee_events(80).await;
    assert_eq!(fees.len(), 80);
    for entry in &entries {
        let announced: Vec<_> = fees
            .iter()
            .filter(|f| f.trade_id == entry.trade_id.to_string())
            .collect();
        assert_eq!(announced.len(), 2, "trade {}", entry.trade_id);
        assert!(
            announced
                .iter()
                .all(|f| f.ledger_entry_id == entry.id.to_string())
        );
    }
    assert!(h.dead_letters().await.is_empty());
}

/// Events that can never apply go to the DLQ at once, naming the reason, and write nothing;
/// the consumer carries on with the next valid trade.
#[tokio::test]
async fn invalid_events_are_dead_lettered_with_their_reason() {
    let h = Harness::start().await;
    let invalid = [
        (
            TradeExecuted {
                account_id: "account-7".to_owned(),
                ..trade("WHRF", 1, NOON)
            },
            "account_id \"account-7\" is not a UUID",
        ),
        (
            TradeExecuted {
                fee_minor: -5,
                ..trade("WHRF", 1, NOON)
            },
            "fee_minor -5 is negative",
        ),
        (
            TradeExecuted {
                trade_id: String::new(),
                ..trade("WHRF", 1, NOON)
            },
            "trade_id is empty",
        ),
        (
            TradeExecuted {
                currency: "EUR".to_owned(),
                ..trade("WHRF", 1, NOON)
            },
            "the fee is in EUR, but the ledger is kept in USD",
        ),
    ];
    for (event, _) in &invalid {
        h.publish_raw(event).await;
    }
    let letters = h.wait_dead_letters(invalid.len()).await;
    assert_eq!(letters.len(), invalid.len());
    for (_, reason) in &invalid {
        let letter = letters
            .iter()
            .find(|l| l.letter.error.contains(reason))
            .unwrap_or_else(|| panic!("a dead letter saying {reason:?}"));
        assert_eq!(letter.letter.consumer, LEDGER_CONSUMER);
        assert_eq!(letter.letter.original_subject, "trading.trade.executed");
        assert_eq!(letter.letter.deliveries, 1, "never retried");
    }
    assert!(h.entries().await.is_empty());

    let valid = trade("WHRF", 3, NOON);
    h.publish_raw(&valid).await;
    let entries = h.wait_entries(1).await;
    assert_eq!(entries[0].trade_id.to_string(), valid.trade_id);
    h.wait_fee_events(1).await;
}

/// A re-drive that disagrees with the trade's entry (another fee) contradicts the ledger: it
/// is dead-lettered, and neither the entry nor the fee events change.
#[tokio::test]
async fn a_redrive_that_contradicts_the_ledger_is_dead_lettered() {
    let h = Harness::start().await;
    let original = trade("WHRF", 42, NOON);
    h.publish_raw(&original).await;
    h.wait_entries(1).await;
    h.wait_fee_events(1).await;

    let contradicting = TradeExecuted {
        fee_minor: 43,
        ..redrive(&original)
    };
    h.publish_raw(&contradicting).await;
    let letters = h.wait_dead_letters(1).await;
    assert!(
        letters[0]
            .letter
            .error
            .contains("fee_minor 43 (ledger: 42)"),
        "{}",
        letters[0].letter.error
    );
    let entries = h.entries().await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].fee_minor, 42);
    // A later trade of the same account: its fee event follows anything the contradiction
    // could have enqueued.
    h.publish_raw(&same_account(&original)).await;
    let fees = h.wait_fee_events(2).await;
    assert_eq!(
        fees.iter()
            .filter(|f| f.trade_id == original.trade_id)
            .count(),
        1
    );
}

/// The ledger is append-only in the database too: UPDATE, DELETE and TRUNCATE are refused.
#[tokio::test]
async fn the_ledger_refuses_updates_and_deletes() {
    let h = Harness::start().await;
    h.publish_raw(&trade("WHRF", 42, NOON)).await;
    h.wait_entries(1).await;
    for statement in [
        "UPDATE ledger_entries SET fee_minor = 0",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries",
    ] {
        let err = sqlx::query(statement)
            .execute(&h.pool)
            .await
            .expect_err(statement);
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
    let refused = sqlx::query(
        "INSERT INTO ledger_entries (id, event_id, trade_id, order_id, account_id, user_id, \
             instrument, fee_minor, currency, trade_executed_at) \
         VALUES (gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), \
             gen_random_uuid(), 'u', 'WHRF', -1, 'USD', now())",
    )
    .execute(&h.pool)
    .await;
    assert!(
        refused.is_err(),
        "a negative fee is refused by the database"
    );
    let fees: HashSet<_> = h.entries().await.into_iter().map(|e| e.fee_minor).collect();
    assert_eq!(fees, HashSet::from([42]));
}
