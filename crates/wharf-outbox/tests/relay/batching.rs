//! The consumer applies events that wait together in one transaction, and a failing event in
//! such a batch takes none of the others down: each keeps its own inbox row and outcome.
//!
//! Each test lets the relay publish a backlog first, so the consumer starts with messages
//! already waiting (the situation batches are made of).

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream;
use wharf_events::ConsumerConfig;
use wharf_proto::Event;
use wharf_proto::wharf::trading::v1::TradeExecuted;

use crate::helpers::{Harness, Recorder, consumer_stats_line, fast_relay};

const POISON: &str = "account-poison";

/// Relays `accounts` (one event each, in order) into the stream; returns their event ids.
async fn publish_backlog(harness: &Harness, accounts: &[String]) -> Vec<String> {
    let mut ids = Vec::with_capacity(accounts.len());
    for (seq, account) in accounts.iter().enumerate() {
        ids.push(harness.enqueue(account, seq as i64).await);
    }
    let relay_stop = harness.stop.child_token();
    let relay = wharf_outbox::Relay::new(
        harness.pool.clone(),
        harness.client.clone(),
        harness.namespace.clone(),
        crate::helpers::SCHEMA,
        fast_relay(),
    );
    let running = tokio::spawn(relay.run(relay_stop.clone()));
    harness.wait_outbox_empty(Duration::from_secs(30)).await;
    relay_stop.cancel();
    running.await.unwrap();
    ids
}

fn batching(name: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(name);
    config.concurrency = 4;
    config.max_batch = 8;
    config.max_deliver = 2;
    config.backoff_base = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(200);
    config
}

async fn inbox_ids(harness: &Harness) -> Vec<uuid::Uuid> {
    sqlx::query_scalar("SELECT event_id FROM inbox ORDER BY event_id")
        .fetch_all(&harness.pool)
        .await
        .unwrap()
}

async fn applied_ids(harness: &Harness) -> Vec<uuid::Uuid> {
    sqlx::query_scalar("SELECT event_id FROM applied ORDER BY event_id")
        .fetch_all(&harness.pool)
        .await
        .unwrap()
}

/// 200 waiting events with failing ones among them: the healthy ones are applied once each, in
/// fewer transactions than events (a batch with a failing event starts over without it, so a
/// healthy handler may run again, but its effect commits once); every failing event is retried
/// alone and dead-lettered, and leaves no inbox row behind, so a replay once the cause is fixed
/// applies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_event_does_not_take_its_batch_down() {
    let harness = Harness::new().await;
    let accounts: Vec<String> = (0..200)
        .map(|seq| {
            if seq % 50 == 7 {
                POISON.to_owned()
            } else {
                format!("account-{}", seq % 13)
            }
        })
        .collect();
    let poisoned = accounts.iter().filter(|account| *account == POISON).count();
    let healthy = accounts.len() - poisoned;
    let ids = publish_backlog(&harness, &accounts).await;

    let recorder = Recorder::default();
    *recorder.poison_account.lock().unwrap() = Some(POISON.to_owned());
    recorder.poisoned.store(true, Ordering::SeqCst);
    let consumer = harness.consumer(batching("ledger"), recorder.clone());
    let stats = consumer.stats();
    let _consumer = tokio::spawn(consumer.run(harness.stop.clone()));

    wharf_testkit::wait_until(
        Duration::from_secs(60),
        "the healthy events applied and the failing ones dead-lettered",
        || async { stats.applied() == healthy as u64 && stats.dead_lettered() == poisoned as u64 },
    )
    .await
    .unwrap_or_else(|err| panic!("{err}: {}", consumer_stats_line(&stats)));

    assert_eq!(applied_ids(&harness).await.len(), healthy);
    let mut expected: Vec<uuid::Uuid> = ids
        .iter()
        .zip(&accounts)
        .filter(|(_, account)| *account != POISON)
        .map(|(id, _)| uuid::Uuid::parse_str(id).unwrap())
        .collect();
    expected.sort();
    assert_eq!(
        inbox_ids(&harness).await,
        expected,
        "an inbox row for every applied event, none for the failed ones"
    );
    let calls = recorder.calls.load(Ordering::SeqCst);
    assert!(
        calls >= (healthy + 2 * poisoned) as u64 && calls < (2 * healthy + 2 * poisoned) as u64,
        "each event handled at least once per delivery, and only the batches with a failing \
         event started over ({calls} calls; {})",
        consumer_stats_line(&stats)
    );
    assert!(
        stats.transactions() < stats.applied(),
        "waiting events shared transactions: {} transactions for {} events",
        stats.transactions(),
        stats.applied()
    );

    // Fix the cause and replay: nothing of the failed attempts is in the way.
    recorder.poisoned.store(false, Ordering::SeqCst);
    for letter in wharf_events::dlq::list(&harness.js, &harness.namespace, 10)
        .await
        .unwrap()
    {
        wharf_events::dlq::replay(&harness.js, &harness.namespace, letter.sequence)
            .await
            .unwrap();
    }
    harness
        .wait_applied(accounts.len() as i64, Duration::from_secs(30))
        .await;
    assert_eq!(inbox_ids(&harness).await.len(), accounts.len());
    harness.finish().await;
}

/// A handler's database error may be the batch's doing rather than the event's, so the batch
/// is rolled back and its events applied one by one: the others commit, and the failing one
/// is retried alone and dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_in_a_batch_falls_back_to_one_event_at_a_time() {
    let harness = Harness::new().await;
    let accounts: Vec<String> = (0..60).map(|seq| format!("account-{}", seq % 7)).collect();
    let ids = publish_backlog(&harness, &accounts).await;
    // The handler's insert of event 30 will break the applied table's primary key.
    let conflicting = uuid::Uuid::parse_str(&ids[30]).unwrap();
    sqlx::query("INSERT INTO applied (event_id, account_id, seq) VALUES ($1, 'planted', -1)")
        .bind(conflicting)
        .execute(&harness.pool)
        .await
        .unwrap();

    let recorder = Recorder::default();
    let consumer = harness.consumer(batching("ledger"), recorder.clone());
    let stats = consumer.stats();
    let _consumer = tokio::spawn(consumer.run(harness.stop.clone()));
    wharf_testkit::wait_until(
        Duration::from_secs(60),
        "the others applied and the conflicting event dead-lettered",
        || async { stats.applied() == 59 && stats.dead_lettered() == 1 },
    )
    .await
    .unwrap_or_else(|err| panic!("{err}: {}", consumer_stats_line(&stats)));

    assert_eq!(
        applied_ids(&harness).await.len(),
        60,
        "59 applied + the planted row"
    );
    let inbox = inbox_ids(&harness).await;
    assert_eq!(inbox.len(), 59);
    assert!(
        !inbox.contains(&conflicting),
        "no inbox row for the failed event"
    );
    let letters = wharf_events::dlq::list(&harness.js, &harness.namespace, 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0]
            .letter
            .headers
            .get("Wharf-Event-Id")
            .unwrap()
            .as_str(),
        ids[30]
    );
    assert!(
        letters[0].letter.error.contains("database"),
        "{}",
        letters[0].letter.error
    );
    harness.finish().await;
}

/// Copies of already-applied events (published again outside the duplicate window) are
/// absorbed by the inbox, also when the copy and the original wait in the same batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_in_a_batch_are_applied_once() {
    let harness = Harness::new().await;
    let accounts: Vec<String> = (0..40).map(|seq| format!("account-{}", seq % 5)).collect();
    publish_backlog(&harness, &accounts).await;
    // A second copy of every message, with a fresh Nats-Msg-Id so the stream keeps it.
    let originals = harness.stream_messages().await;
    let subject = harness.namespace.subject(TradeExecuted::SUBJECT);
    let js = jetstream::new(harness.client.clone());
    for original in &originals {
        let mut headers = original.headers.clone();
        let again = format!(
            "{}-again",
            headers
                .get(wharf_events::envelope::MSG_ID)
                .unwrap()
                .as_str()
        );
        headers.insert(wharf_events::envelope::MSG_ID, again.as_str());
        js.publish_with_headers(subject.clone(), headers, original.payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    assert_eq!(harness.stream_len().await, 80);

    let recorder = Recorder::default();
    let consumer = harness.consumer(batching("ledger"), recorder.clone());
    let stats = consumer.stats();
    let _consumer = tokio::spawn(consumer.run(harness.stop.clone()));
    wharf_testkit::wait_until(Duration::from_secs(60), "every copy absorbed", || async {
        stats.applied() == 40 && stats.duplicates() == 40
    })
    .await
    .unwrap_or_else(|err| panic!("{err}: {}", consumer_stats_line(&stats)));
    assert_eq!(applied_ids(&harness).await.len(), 40);
    assert_eq!(inbox_ids(&harness).await.len(), 40);
    assert_eq!(
        recorder.calls.load(Ordering::SeqCst),
        40,
        "each handled once"
    );
    harness.finish().await;
}
