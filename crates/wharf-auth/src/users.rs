//! The `auth` schema: users and registrations.

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// A user's place in the registration saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    Pending,
    Active,
    Rejected,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Active => "ACTIVE",
            Self::Rejected => "REJECTED",
        }
    }

    fn parse(raw: &str) -> Self {
        match raw {
            "ACTIVE" => Self::Active,
            "REJECTED" => Self::Rejected,
            _ => Self::Pending,
        }
    }
}

/// What login needs of a user.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: Uuid,
    pub password_hash: String,
    pub status: UserStatus,
    pub roles: Vec<String>,
}

/// A new user, as `Register` writes it.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub handle: &'a str,
    pub display_name: &'a str,
    pub registration_event_id: Uuid,
}

/// An earlier registration found by its idempotency key.
#[derive(Debug, Clone)]
pub struct PriorRegistration {
    pub fingerprint: Vec<u8>,
    pub user_id: Uuid,
    pub status: UserStatus,
    pub password_hash: String,
}

/// The live (not rejected) user with this email, if any.
pub async fn credentials(
    pool: &PgPool,
    email_key: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    let row: Option<(Uuid, String, String, Vec<String>)> = sqlx::query_as(
        "SELECT id, password_hash, status, roles FROM users \
         WHERE email_key = $1 AND status <> 'REJECTED'",
    )
    .bind(email_key)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(id, password_hash, status, roles)| Credentials {
        id,
        password_hash,
        status: UserStatus::parse(&status),
        roles,
    }))
}

pub async fn prior_registration(
    pool: &PgPool,
    idempotency_key: &str,
) -> Result<Option<PriorRegistration>, sqlx::Error> {
    let row: Option<(Vec<u8>, Uuid, String, String)> = sqlx::query_as(
        "SELECT r.fingerprint, r.user_id, u.status, u.password_hash \
         FROM registrations r JOIN users u ON u.id = r.user_id \
         WHERE r.idempotency_key = $1",
    )
    .bind(idempotency_key)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(fingerprint, user_id, status, password_hash)| PriorRegistration {
            fingerprint,
            user_id,
            status: UserStatus::parse(&status),
            password_hash,
        },
    ))
}

/// Why a user could not be inserted.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("a live account already uses this email")]
    EmailTaken,
    #[error("the idempotency key was used concurrently")]
    KeyRaced,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    user: &NewUser<'_>,
    idempotency: Option<(&str, &[u8])>,
) -> Result<(), InsertError> {
    sqlx::query(
        "INSERT INTO users (id, email, email_key, password_hash, handle, display_name, registration_event_id) \
         VALUES ($1, $2, lower($2), $3, $4, $5, $6)",
    )
    .bind(user.id)
    .bind(user.email)
    .bind(user.password_hash)
    .bind(user.handle)
    .bind(user.display_name)
    .bind(user.registration_event_id)
    .execute(&mut **tx)
    .await
    .map_err(|err| match unique_violation(&err) {
        Some("users_email_live") => InsertError::EmailTaken,
        _ => InsertError::Database(err),
    })?;
    if let Some((key, fingerprint)) = idempotency {
        sqlx::query(
            "INSERT INTO registrations (idempotency_key, fingerprint, user_id) VALUES ($1, $2, $3)",
        )
        .bind(key)
        .bind(fingerprint)
        .bind(user.id)
        .execute(&mut **tx)
        .await
        .map_err(|err| match unique_violation(&err) {
            Some("registrations_pkey") => InsertError::KeyRaced,
            _ => InsertError::Database(err),
        })?;
    }
    Ok(())
}

fn unique_violation(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => db.constraint(),
        _ => None,
    }
}

/// Saga outcome: moves a PENDING user on. Returns the status the user had, or `None` if there
/// is no such user.
pub async fn settle(
    tx: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
    to: UserStatus,
    reason: Option<&str>,
) -> Result<Option<UserStatus>, sqlx::Error> {
    let before: Option<(String,)> =
        sqlx::query_as("SELECT status FROM users WHERE id = $1 FOR UPDATE")
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some((before,)) = before else {
        return Ok(None);
    };
    let before = UserStatus::parse(&before);
    if before == UserStatus::Pending {
        sqlx::query("UPDATE users SET status = $2, status_reason = $3 WHERE id = $1")
            .bind(user_id)
            .bind(to.as_str())
            .bind(reason)
            .execute(&mut **tx)
            .await?;
    }
    Ok(Some(before))
}

pub async fn status(pool: &PgPool, user_id: Uuid) -> Result<Option<UserStatus>, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as("SELECT status FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(status,)| UserStatus::parse(&status)))
}
