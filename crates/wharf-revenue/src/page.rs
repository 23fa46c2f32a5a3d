//! Page tokens of `ListLedgerEntries`: opaque to callers, a [`Cursor`] inside.
//!
//! A token is base64url (no padding) of a version byte, the last entry's `recorded_at` in
//! microseconds since the epoch (PostgreSQL's precision, so the cursor is exact), and its id.
//! It carries no secret and grants nothing: a forged token only moves where a page starts
//! for a caller who may read every entry anyway.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sqlx::types::chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::ledger::Cursor;
use crate::service::{MAX_SECONDS, MIN_SECONDS};

const VERSION: u8 = 1;
const LEN: usize = 1 + 8 + 16;

/// The token that continues after `cursor`.
pub fn encode(cursor: &Cursor) -> String {
    let mut bytes = Vec::with_capacity(LEN);
    bytes.push(VERSION);
    bytes.extend_from_slice(&cursor.recorded_at.timestamp_micros().to_be_bytes());
    bytes.extend_from_slice(cursor.id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The cursor in `token`, or `None` for anything this service did not issue.
pub fn decode(token: &str) -> Option<Cursor> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    if bytes.len() != LEN || bytes[0] != VERSION {
        return None;
    }
    let micros = i64::from_be_bytes(bytes[1..9].try_into().ok()?);
    // A forged time PostgreSQL cannot hold would fail the query, not the request.
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&micros.div_euclid(1_000_000)) {
        return None;
    }
    let id = Uuid::from_slice(&bytes[9..]).ok()?;
    let recorded_at = DateTime::<Utc>::from_timestamp_micros(micros)?;
    Some(Cursor { recorded_at, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_garbage_is_refused() {
        let cursor = Cursor {
            recorded_at: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        let token = encode(&cursor);
        assert_eq!(decode(&token), Some(cursor));
        for bad in ["", "x", "not base64!", &token[..token.len() - 2], "AAAA"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        let mut other_version = URL_SAFE_NO_PAD.decode(&token).unwrap();
        other_version[0] = 2;
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode(other_version)), None);
        for micros in [i64::MIN, (MAX_SECONDS + 1) * 1_000_000] {
            let mut far = URL_SAFE_NO_PAD.decode(&token).unwrap();
            far[1..9].copy_from_slice(&micros.to_be_bytes());
            assert_eq!(decode(&URL_SAFE_NO_PAD.encode(far)), None, "{micros}");
        }
    }
}
