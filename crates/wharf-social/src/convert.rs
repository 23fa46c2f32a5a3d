//! Conversions between protobuf timestamps and the database's times, and the checks on
//! identifiers events and requests carry.

use prost_types::Timestamp;
use sqlx::types::chrono::{DateTime, Utc};

/// Longest user id social stores (the schema's CHECK constraints agree).
pub const MAX_USER_ID: usize = 200;

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range of `google.protobuf.Timestamp`
/// (well inside PostgreSQL's), for event times and page tokens alike.
pub(crate) const MIN_SECONDS: i64 = -62_135_596_800;
pub(crate) const MAX_SECONDS: i64 = 253_402_300_799;

/// The time of a protobuf timestamp, if it is one PostgreSQL can store.
pub fn instant(at: Option<Timestamp>) -> Option<DateTime<Utc>> {
    let at = at?;
    let nanos = u32::try_from(at.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&at.seconds) {
        return None;
    }
    DateTime::<Utc>::from_timestamp(at.seconds, nanos)
}

pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// 1 to [`MAX_USER_ID`] bytes with no control characters: a user id social accepts.
pub fn is_user_id(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= MAX_USER_ID && !raw.chars().any(char::is_control)
}
