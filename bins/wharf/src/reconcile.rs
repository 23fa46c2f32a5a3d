//! `wharf reconcile`: checks every declared invariant once, repairs what it can, reports the
//! rest — as a table, or JSON with `--json`. Exits 3 when something needs a human.
//!
//! | invariant | repair |
//! |---|---|
//! | `order-settles`: no order stays FILLED past `--settle-after` | its trade event is re-emitted (re-drive) |
//! | `audit-matches-balances`: cash and positions equal the sum of their audit rows | reported |
//! | `ledger-matches-fees`: every trade has one ledger entry with its fee, and nothing else is in the ledger | reported, with the differing trades |
//! | `registration-settles`: no user stays PENDING | retried (registration re-emitted), then compensated (REJECTED) past `auth.saga.give_up_after` |
//!
//! Every finding is recorded in the owning schema's `reconciliation_log`.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use wharf_trading::reconcile::Finding;

use crate::ConfigArgs;
use crate::config::WharfConfig;

pub const LEDGER_MATCHES_FEES: &str = "ledger-matches-fees";

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Re-drive orders FILLED for longer than this (default: trading.reconcile.settle_after).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    settle_after: Option<Duration>,
}

#[derive(Debug, Serialize)]
struct Report {
    invariants: [&'static str; 4],
    findings: Vec<Finding>,
    repaired: usize,
    reported: usize,
}

pub async fn run(args: ReconcileArgs) -> anyhow::Result<()> {
    let config: WharfConfig =
        wharf_runtime::config::load(args.config.config.as_deref(), &args.config.overrides)?;
    let settle_after = args
        .settle_after
        .unwrap_or(config.trading.reconcile.settle_after);
    let findings = reconcile(&config, settle_after).await?;
    let report = Report {
        invariants: [
            wharf_trading::reconcile::ORDER_SETTLES,
            wharf_trading::reconcile::AUDIT_MATCHES_BALANCES,
            LEDGER_MATCHES_FEES,
            wharf_auth::reconcile::REGISTRATION_SETTLES,
        ],
        repaired: findings.iter().filter(|f| f.action == "repaired").count(),
        reported: findings.iter().filter(|f| f.action == "reported").count(),
        findings,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", wharf_trading::reconcile::table(&report.findings));
        println!(
            "{} repaired, {} reported for a human",
            report.repaired, report.reported
        );
    }
    if report.reported > 0 {
        std::process::exit(3);
    }
    Ok(())
}

/// Every invariant, trading's and the cross-service one.
pub async fn reconcile(
    config: &WharfConfig,
    settle_after: Duration,
) -> anyhow::Result<Vec<Finding>> {
    let trading = wharf_runtime::db::connect_lazy(&config.database, wharf_trading::SCHEMA)?;
    let mut findings = wharf_trading::reconcile::run(&trading, settle_after).await?;
    let ledger = ledger_against_trades(&trading).await?;
    for finding in &ledger {
        sqlx::query(
            "INSERT INTO reconciliation_log (invariant, subject, action, detail) VALUES ($1, $2, $3, $4)",
        )
        .bind(finding.invariant)
        .bind(&finding.subject)
        .bind(finding.action)
        .bind(&finding.detail)
        .execute(&trading)
        .await?;
    }
    findings.extend(ledger);
    trading.close().await;

    let auth = wharf_runtime::db::connect_lazy(&config.database, wharf_auth::SCHEMA)?;
    let registrations = wharf_auth::reconcile::run(&auth, config.auth.saga).await?;
    findings.extend(registrations.into_iter().map(|finding| Finding {
        invariant: finding.invariant,
        subject: finding.subject,
        action: finding.action,
        detail: finding.detail,
    }));
    auth.close().await;
    Ok(findings)
}

/// The ledger (revenue's schema) against the trades (trading's): the totals, and each trade
/// that differs. An operator's view across two services' schemas; no service reads the other's.
async fn ledger_against_trades(pool: &PgPool) -> anyhow::Result<Vec<Finding>> {
    let revenue_exists: bool =
        sqlx::query_scalar("SELECT to_regclass('revenue.ledger_entries') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if !revenue_exists {
        return Ok(Vec::new());
    }
    // Trades settle in their own time: a trade younger than a minute without its entry is
    // in flight, not missing.
    let differing: Vec<(String, Option<i64>, Option<i64>, i64)> = sqlx::query_as(
        "WITH ledger AS ( \
             SELECT trade_id::text AS trade_id, SUM(fee_minor)::bigint AS fee, count(*) AS entries \
             FROM revenue.ledger_entries GROUP BY trade_id::text) \
         SELECT COALESCE(t.id::text, l.trade_id), t.fee_minor, l.fee, COALESCE(l.entries, 0) \
         FROM trading.trades t FULL OUTER JOIN ledger l ON l.trade_id = t.id::text \
         WHERE (t.id IS NULL) \
            OR (l.trade_id IS NULL AND t.executed_at < now() - interval '1 minute') \
            OR (l.trade_id IS NOT NULL AND (l.fee <> t.fee_minor OR l.entries <> 1)) \
         ORDER BY 1 LIMIT 1000",
    )
    .fetch_all(pool)
    .await?;
    // Totals over trades executed more than a minute ago, on both sides (the ledger keeps
    // each trade's execution time), so trades still in flight never show as a difference.
    let (trades_total, ledger_total): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(SUM(fee_minor), 0)::bigint FROM trading.trades \
                 WHERE executed_at < now() - interval '1 minute'), \
                (SELECT COALESCE(SUM(fee_minor), 0)::bigint FROM revenue.ledger_entries \
                 WHERE trade_executed_at < now() - interval '1 minute')",
    )
    .fetch_one(pool)
    .await?;
    let mut findings: Vec<Finding> = differing
        .into_iter()
        .map(|(trade, trade_fee, ledger_fee, entries)| Finding {
            invariant: LEDGER_MATCHES_FEES,
            subject: trade,
            action: "reported",
            detail: match (trade_fee, ledger_fee) {
                (Some(fee), None) => format!("trade fee {fee}, no ledger entry after a minute"),
                (None, Some(fee)) => {
                    format!("ledger entry of {fee} for a trade that does not exist")
                }
                (Some(fee), Some(ledger)) => {
                    format!("trade fee {fee}, ledger {ledger} in {entries} entries")
                }
                (None, None) => "no trade and no ledger entry".to_owned(),
            },
        })
        .collect();
    if trades_total != ledger_total {
        findings.insert(
            0,
            Finding {
                invariant: LEDGER_MATCHES_FEES,
                subject: "total".to_owned(),
                action: "reported",
                detail: format!(
                    "ledger total {ledger_total} ≠ sum of trade fees {trades_total} (difference {})",
                    ledger_total - trades_total
                ),
            },
        );
    }
    Ok(findings)
}
