//! Trade → revenue end to end, with the services as separate processes: the chaos test, a
//! stopped revenue service, and reconciliation through `wharf reconcile`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tonic::Code;

use crate::platform::{Platform, buy, deposit, trading};

/// Orders from concurrent clients while the relay and the revenue consumer are killed -9
/// again and again and NATS is restarted; afterwards every order is settled with exactly one
/// ledger entry, the ledger equals the fees, the outboxes are empty, and JetStream's own
/// counters show the consumer really had deliveries repeated.
///
/// `WHARF_CHAOS_ORDERS` (default 1,000) and `WHARF_CHAOS_FAULTS` (default 6) scale it: the
/// long form is `WHARF_CHAOS_ORDERS=10000 WHARF_CHAOS_FAULTS=30`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_killed_relays_consumers_and_a_nats_restart() {
    let orders: u64 = env_or("WHARF_CHAOS_ORDERS", 1_000);
    let faults: u64 = env_or("WHARF_CHAOS_FAULTS", 6).max(3);
    const CLIENTS: u64 = 8;

    let mut p = Platform::start().await;
    let (_trading, addr) = p.serve("trading");
    let (mut revenue, _) = p.serve("revenue");
    let mut relay = p.relay();

    let placed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let token = p.user();
        let placed = Arc::clone(&placed);
        let mut trading = trading(addr).await;
        deposit(&mut trading, &token, 1_000_000_000_000).await;
        let share = orders / CLIENTS + u64::from(client < orders % CLIENTS);
        clients.push(tokio::spawn(async move {
            for n in 0..share {
                let key = format!("c{client}-o{n}");
                // A retry with the same key is safe: the same order comes back.
                loop {
                    match buy(
                        &mut trading,
                        &token,
                        &key,
                        1 + i64::try_from(n % 3).unwrap(),
                    )
                    .await
                    {
                        Ok(_) => break,
                        Err(status) if status.code() == Code::Unavailable => continue,
                        Err(status) => panic!("order {key}: {status}"),
                    }
                }
                placed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Faults spaced by progress: after every `step` orders, the next fault in the schedule.
    let step = orders / (faults + 1);
    let mut nats_restarted = false;
    for fault in 0..faults {
        let due = step * (fault + 1);
        while placed.load(Ordering::Relaxed) < due {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match fault % 3 {
            0 => {
                relay.child.kill().unwrap();
                relay.child.wait().unwrap();
                relay = p.relay();
            }
            1 => {
                revenue.child.kill().unwrap();
                revenue.child.wait().unwrap();
                revenue = p.serve("revenue").0;
            }
            _ if !nats_restarted => {
                p.nats.kill9();
                p.nats.restart().await.unwrap();
                nats_restarted = true;
            }
            _ => {
                relay.child.kill().unwrap();
                relay.child.wait().unwrap();
                revenue.child.kill().unwrap();
                revenue.child.wait().unwrap();
                relay = p.relay();
                revenue = p.serve("revenue").0;
            }
        }
    }
    for client in clients {
        client.await.unwrap();
    }
    assert!(nats_restarted, "NATS was restarted at least once");

    p.quiesce(Duration::from_secs(240)).await;
    p.assert_books_balance(i64::try_from(orders).unwrap()).await;

    // JetStream's consumer sequence counts every delivery, its stream sequence every message:
    // the difference is the redeliveries the kills caused, absorbed by the inbox.
    let js = async_nats::jetstream::new(p.nats.client().await.unwrap());
    let mut stream = js.get_stream("TRADING").await.unwrap();
    let info = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("revenue-ledger")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    let redeliveries = info.delivered.consumer_sequence - info.delivered.stream_sequence;
    let messages = stream.info().await.unwrap().state.messages;
    eprintln!(
        "chaos: {orders} orders, {faults} faults, {messages} trade events in the stream, {redeliveries} redeliveries"
    );
    assert!(redeliveries > 0, "the kills caused redeliveries");
    assert!(messages >= orders, "every trade reached the stream");
}

/// With revenue stopped, orders still succeed; when it returns, the ledger catches up and
/// every order settles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_succeed_without_revenue_and_the_ledger_catches_up() {
    let p = Platform::start().await;
    let (_trading, addr) = p.serve("trading");
    let _relay = p.relay();
    let token = p.user();
    let mut client = trading(addr).await;
    deposit(&mut client, &token, 10_000_000).await;
    for n in 0..20 {
        buy(&mut client, &token, &format!("o{n}"), 1).await.unwrap();
    }
    assert_eq!(
        p.scalar("SELECT count(*) FROM trading.orders WHERE state = 'FILLED'")
            .await,
        20,
        "filled, waiting for revenue"
    );
    let (_revenue, _) = p.serve("revenue");
    p.quiesce(Duration::from_secs(60)).await;
    p.assert_books_balance(20).await;
}

/// `wharf reconcile` finds a lost event (its outbox row deleted before publishing) and
/// repairs it by re-driving the trade, and reports an injected ledger difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_repairs_a_lost_event_and_reports_a_ledger_difference() {
    let p = Platform::start().await;
    let (_trading, addr) = p.serve("trading");
    let (_revenue, _) = p.serve("revenue");
    let token = p.user();
    let mut client = trading(addr).await;
    deposit(&mut client, &token, 10_000_000).await;
    let lost = buy(&mut client, &token, "lost", 2).await.unwrap();
    assert_eq!(
        p.scalar("WITH gone AS (DELETE FROM trading.outbox RETURNING 1) SELECT count(*) FROM gone")
            .await,
        1,
        "the event is lost before any relay saw it"
    );

    let output = p
        .command(&["reconcile", "--json", "--settle-after", "0s"])
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "only repairs: exit 0, got {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["repaired"], 1, "{report}");
    assert_eq!(report["findings"][0]["invariant"], "order-settles");
    assert_eq!(report["findings"][0]["subject"], lost.order_id.as_str());

    let _relay = p.relay();
    p.quiesce(Duration::from_secs(60)).await;
    p.assert_books_balance(1).await;

    // An entry in the ledger for no trade, as a bad manual fix would leave.
    sqlx::query(
        "INSERT INTO revenue.ledger_entries (id, event_id, trade_id, order_id, account_id, user_id, instrument, fee_minor, currency, trade_executed_at) \
         VALUES (gen_random_uuid(), gen_random_uuid(), '00000000-0000-7000-8000-00000000beef', gen_random_uuid(), gen_random_uuid(), 'nobody', 'BOLT', 42, 'USD', now() - interval '1 hour')",
    )
    .execute(&p.pool)
    .await
    .unwrap();
    let output = p
        .command(&["reconcile"])
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "a difference needs a human");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("ledger-matches-fees"), "{table}");
    assert!(
        table.contains("00000000-0000-7000-8000-00000000beef"),
        "{table}"
    );
    assert!(table.contains("difference 42"), "{table}");
    assert!(
        p.scalar("SELECT count(*) FROM trading.reconciliation_log WHERE invariant = 'ledger-matches-fees'")
            .await
            >= 2,
        "the findings are on record"
    );
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
