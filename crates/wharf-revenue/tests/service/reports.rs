//! `GetRevenue` and `ListLedgerEntries` over a real ledger: totals by UTC day and instrument
//! with their filters, and keyset pages that return every entry once, newest first.

use std::collections::HashSet;

use prost_types::Timestamp;
use wharf_proto::wharf::revenue::v1::{
    GetRevenueRequest, GetRevenueResponse, LedgerEntry, ListLedgerEntriesRequest, RevenueBucket,
};

use crate::harness::{Harness, trade};

/// 2026-11-20T00:00:00Z, a UTC midnight.
const DAY1: i64 = 1_795_132_800;
const DAY: i64 = 86_400;

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn bucket(day: &str, instrument: &str, fee_minor: i64, trade_count: i64) -> RevenueBucket {
    RevenueBucket {
        day: day.to_owned(),
        instrument: instrument.to_owned(),
        fee_minor,
        trade_count,
    }
}

async fn revenue(h: &Harness, request: GetRevenueRequest) -> GetRevenueResponse {
    h.client()
        .await
        .get_revenue(h.admin(request))
        .await
        .unwrap()
        .into_inner()
}

/// Fees and trade counts by UTC day of execution and instrument, the total and the currency;
/// `from` is inclusive, `to` exclusive, and the instrument filter narrows the report.
#[tokio::test]
async fn revenue_is_totalled_by_day_and_instrument_with_filters() {
    let h = Harness::start().await;
    let trades = [
        trade("WHRF", 10, DAY1),               // the first instant of day 1
        trade("WHRF", 5, DAY1 + DAY - 1),      // the last second of day 1
        trade("ACME", 7, DAY1 + 3600),         // day 1
        trade("WHRF", 3, DAY1 + DAY),          // the first instant of day 2
        trade("ACME", 1, DAY1 + 2 * DAY + 60), // day 3
    ];
    for event in &trades {
        h.publish_raw(event).await;
    }
    h.wait_entries(trades.len()).await;

    let all = revenue(&h, GetRevenueRequest::default()).await;
    assert_eq!(
        all.buckets,
        vec![
            bucket("2026-11-20", "ACME", 7, 1),
            bucket("2026-11-20", "WHRF", 15, 2),
            bucket("2026-11-21", "WHRF", 3, 1),
            bucket("2026-11-22", "ACME", 1, 1),
        ]
    );
    assert_eq!(all.total_fee_minor, 26);
    assert_eq!(all.currency, "USD");

    let from_day2 = revenue(
        &h,
        GetRevenueRequest {
            from: at(DAY1 + DAY),
            ..GetRevenueRequest::default()
        },
    )
    .await;
    assert_eq!(
        from_day2.buckets,
        vec![
            bucket("2026-11-21", "WHRF", 3, 1),
            bucket("2026-11-22", "ACME", 1, 1),
        ],
        "from is inclusive"
    );
    assert_eq!(from_day2.total_fee_minor, 4);

    let day1 = revenue(
        &h,
        GetRevenueRequest {
            from: at(DAY1),
            to: at(DAY1 + DAY),
            ..GetRevenueRequest::default()
        },
    )
    .await;
    assert_eq!(
        day1.buckets,
        vec![
            bucket("2026-11-20", "ACME", 7, 1),
            bucket("2026-11-20", "WHRF", 15, 2),
        ],
        "to is exclusive"
    );
    assert_eq!(day1.total_fee_minor, 22);

    let whrf = revenue(
        &h,
        GetRevenueRequest {
            instrument: "WHRF".to_owned(),
            ..GetRevenueRequest::default()
        },
    )
    .await;
    assert_eq!(
        whrf.buckets,
        vec![
            bucket("2026-11-20", "WHRF", 15, 2),
            bucket("2026-11-21", "WHRF", 3, 1),
        ]
    );
    assert_eq!(whrf.total_fee_minor, 18);

    let acme_day3 = revenue(
        &h,
        GetRevenueRequest {
            from: at(DAY1 + DAY),
            to: at(DAY1 + 3 * DAY),
            instrument: "ACME".to_owned(),
        },
    )
    .await;
    assert_eq!(acme_day3.buckets, vec![bucket("2026-11-22", "ACME", 1, 1)]);
    assert_eq!(acme_day3.total_fee_minor, 1);

    let nothing = revenue(
        &h,
        GetRevenueRequest {
            instrument: "BOLT".to_owned(),
            ..GetRevenueRequest::default()
        },
    )
    .await;
    assert!(nothing.buckets.is_empty());
    assert_eq!(nothing.total_fee_minor, 0);
    assert_eq!(nothing.currency, "USD");
}

async fn page(h: &Harness, page_size: i32, page_token: &str) -> (Vec<LedgerEntry>, String) {
    let response = h
        .client()
        .await
        .list_ledger_entries(h.admin(ListLedgerEntriesRequest {
            page_size,
            page_token: page_token.to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    (response.entries, response.next_page_token)
}

/// Walking the pages returns every entry exactly once, newest first; the last page has no
/// token; an entry written mid-walk (newer than every page) never shifts the later pages.
/// With no size, a page holds 50.
#[tokio::test]
async fn pages_return_every_entry_once_newest_first() {
    let h = Harness::start().await;
    for i in 0..55 {
        h.publish_raw(&trade("WHRF", i, DAY1 + i)).await;
    }
    let stored = h.wait_entries(55).await;
    // Newest first: recorded_at, then id, both descending.
    let mut expected = stored.clone();
    expected.sort_by_key(|e| std::cmp::Reverse((e.recorded_at, e.id)));
    let expected: Vec<String> = expected.iter().map(|e| e.id.to_string()).collect();

    let (first, token) = page(&h, 0, "").await;
    assert_eq!(first.len(), 50, "the default page size");
    assert!(!token.is_empty());
    let (rest, last) = page(&h, 0, &token).await;
    assert_eq!(rest.len(), 5);
    assert!(last.is_empty(), "the last page has no next token");

    let mut walked = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let (entries, next) = page(&h, 7, &token).await;
        assert!(entries.len() <= 7);
        walked.extend(entries);
        pages += 1;
        if pages == 2 {
            // Written mid-walk: newer than everything, so never on a later page.
            h.publish_raw(&trade("ACME", 1, DAY1)).await;
            h.wait_entries(56).await;
        }
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(pages, 8, "55 entries in pages of 7");
    let ids: Vec<String> = walked.iter().map(|e| e.ledger_entry_id.clone()).collect();
    assert_eq!(ids, expected, "every entry once, newest first");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 55);

    let entry = &walked[0];
    let stored_entry = stored
        .iter()
        .find(|e| e.id.to_string() == entry.ledger_entry_id)
        .unwrap();
    assert_eq!(entry.trade_id, stored_entry.trade_id.to_string());
    assert_eq!(entry.order_id, stored_entry.order_id.to_string());
    assert_eq!(entry.account_id, stored_entry.account_id.to_string());
    assert_eq!(entry.event_id, stored_entry.event_id.to_string());
    assert_eq!(entry.instrument, stored_entry.instrument);
    assert_eq!(entry.fee_minor, stored_entry.fee_minor);
    let recorded = entry.recorded_at.unwrap();
    assert_eq!(
        recorded.seconds * 1_000_000 + i64::from(recorded.nanos / 1000),
        stored_entry.recorded_at.timestamp_micros()
    );

    let (newest, _) = page(&h, 1, "").await;
    assert_ne!(
        newest[0].ledger_entry_id, ids[0],
        "the mid-walk entry is now the newest"
    );
}

/// An empty ledger is one empty page without a token.
#[tokio::test]
async fn an_empty_ledger_is_one_empty_page() {
    let h = Harness::start().await;
    let (entries, token) = page(&h, 10, "").await;
    assert!(entries.is_empty());
    assert!(token.is_empty());
}
