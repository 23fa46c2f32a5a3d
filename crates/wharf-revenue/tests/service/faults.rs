//! Faults against real servers: PostgreSQL killed with SIGKILL under the running service.

use std::time::Duration;

use tonic::Code;
use wharf_proto::wharf::revenue::v1::GetRevenueRequest;
use wharf_revenue::RevenueConfig;
use wharf_testkit::{FreshDatabase, TestPostgres};

use crate::harness::{Harness, assert_code, trade};

/// 2026-11-21T12:00:00Z.
const NOON: i64 = 1_795_262_400;

/// PostgreSQL dies: reports answer UNAVAILABLE (saying nothing of the cause) within the
/// acquire timeout, and a trade published meanwhile waits in the stream. PostgreSQL returns:
/// the service recovers by itself (consumer and relay), the trade is applied once, nothing is
/// dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_unavailable_and_the_service_recovers() {
    let mut postgres = TestPostgres::start().await.expect("postgres");
    let mut db = FreshDatabase::create_on(&postgres.url())
        .await
        .expect("database");
    db.config.acquire_timeout = Duration::from_secs(1);
    let h = Harness::start_on(RevenueConfig::default(), db).await;
    h.publish_raw(&trade("WHRF", 10, NOON)).await;
    h.wait_entries(1).await;

    postgres.kill9();
    let mut client = h.client().await;
    let status = assert_code(
        client
            .get_revenue(h.admin(GetRevenueRequest::default()))
            .await,
        Code::Unavailable,
        "database down",
    );
    assert_eq!(status.message(), "the ledger is unavailable; retry later");
    h.publish_raw(&trade("WHRF", 5, NOON)).await;

    postgres.restart().await.expect("postgres back");
    h.wait_entries(2).await;
    let report = client
        .get_revenue(h.admin(GetRevenueRequest::default()))
        .await
        .expect("reports work again")
        .into_inner();
    assert_eq!(report.total_fee_minor, 15);
    assert_eq!(h.entries().await.len(), 2);
    // The relay came back too: both fee events are out, once each.
    let fees = h.wait_fee_events(2).await;
    assert_eq!(fees.len(), 2);
    assert!(h.dead_letters().await.is_empty());
}
