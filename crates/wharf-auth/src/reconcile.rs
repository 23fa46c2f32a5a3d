//! Reconciliation of the registration saga: no user stays `PENDING`.
//!
//! | invariant | found when | repair |
//! |---|---|---|
//! | `registration-settles` | a user PENDING longer than `retry_after` (the registration event or social's reply was lost, or social is down) | retry: `auth.user.registered` is emitted again under a new event id (social answers a known user again); at most once per `retry_after` |
//! | `registration-settles` | a user PENDING longer than `give_up_after` | compensate: the user becomes `REJECTED` (the email is free again), as if social had refused |
//!
//! Every action is written to `auth.reconciliation_log`.

use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;
use wharf_proto::wharf::auth::v1::UserRegistered;

pub const REGISTRATION_SETTLES: &str = "registration-settles";

/// One thing reconciliation found, and what it did about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub invariant: &'static str,
    pub subject: String,
    /// `repaired` (retried or compensated) or `reported`.
    pub action: &'static str,
    pub detail: String,
}

/// The deadlines of the registration saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SagaDeadlines {
    /// How often the periodic run looks; `0s` turns it off.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A user PENDING this long has its registration event emitted again.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// A user PENDING this long is compensated (REJECTED).
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
}

impl Default for SagaDeadlines {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            retry_after: Duration::from_secs(120),
            give_up_after: Duration::from_secs(3600),
        }
    }
}

#[derive(sqlx::FromRow)]
struct Pending {
    id: Uuid,
    email: String,
    handle: String,
    display_name: String,
    age_seconds: f64,
}

/// Runs the saga's invariant once.
pub async fn run(pool: &PgPool, deadlines: SagaDeadlines) -> Result<Vec<Finding>, sqlx::Error> {
    let retry = deadlines.retry_after.as_secs_f64();
    let stuck: Vec<Pending> = sqlx::query_as(
        "SELECT id, email, handle, display_name, \
                EXTRACT(EPOCH FROM now() - created_at)::float8 AS age_seconds \
         FROM users u WHERE status = 'PENDING' AND created_at < now() - make_interval(secs => $1) \
           AND NOT EXISTS (SELECT 1 FROM reconciliation_log l \
                           WHERE l.invariant = 'registration-settles' AND l.subject = u.id::text \
                             AND l.at > now() - make_interval(secs => $1)) \
         ORDER BY created_at LIMIT 1000",
    )
    .bind(retry)
    .fetch_all(pool)
    .await?;
    let mut findings = Vec::with_capacity(stuck.len());
    for user in stuck {
        let mut tx = pool.begin().await?;
        let finding = if user.age_seconds >= deadlines.give_up_after.as_secs_f64() {
            let updated = sqlx::query(
                "UPDATE users SET status = 'REJECTED', status_reason = $2 WHERE id = $1 AND status = 'PENDING'",
            )
            .bind(user.id)
            .bind("registration timed out: no profile was created")
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                continue;
            }
            Finding {
                invariant: REGISTRATION_SETTLES,
                subject: user.id.to_string(),
                action: "repaired",
                detail: format!(
                    "PENDING for {:.0}s, past the {}s deadline: compensated (REJECTED, email freed)",
                    user.age_seconds,
                    deadlines.give_up_after.as_secs()
                ),
            }
        } else {
            let event_id = Uuid::now_v7();
            wharf_outbox::enqueue(
                &mut tx,
                UserRegistered {
                    event_id: event_id.to_string(),
                    occurred_at: None,
                    user_id: user.id.to_string(),
                    email: user.email,
                    handle: user.handle,
                    display_name: user.display_name,
                },
            )
            .await
            .map_err(|err| match err {
                wharf_outbox::OutboxError::Database(db) => db,
                other => sqlx::Error::Protocol(other.to_string()),
            })?;
            Finding {
                invariant: REGISTRATION_SETTLES,
                subject: user.id.to_string(),
                action: "repaired",
                detail: format!(
                    "PENDING for {:.0}s: registration re-emitted as event {event_id}",
                    user.age_seconds
                ),
            }
        };
        sqlx::query(
            "INSERT INTO reconciliation_log (invariant, subject, action, detail) VALUES ($1, $2, $3, $4)",
        )
        .bind(finding.invariant)
        .bind(&finding.subject)
        .bind(finding.action)
        .bind(&finding.detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        wharf_outbox::wake::notify(pool).await;
        tracing::warn!(subject = %finding.subject, detail = %finding.detail, "reconciliation");
        findings.push(finding);
    }
    Ok(findings)
}
