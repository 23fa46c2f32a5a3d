//! Page tokens of `ListFollowers`, `ListFollowing` and `GetFeed`: opaque to callers, a
//! [`Cursor`] inside.
//!
//! A token is base64url (no padding) of a version byte, the list it belongs to, the last
//! row's time in microseconds since the epoch (PostgreSQL's precision, so the cursor is
//! exact), and its id (a user id, or a trade id for the feed). It carries no secret and grants
//! nothing: a forged token only moves where a page of a list the caller may read starts. A
//! token of one list is refused by the others.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sqlx::types::chrono::{DateTime, Utc};

use crate::convert::{MAX_SECONDS, MAX_USER_ID, MIN_SECONDS};
use crate::store::Cursor;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 1 + 8;

/// Which list a token pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum List {
    Followers = 1,
    Following = 2,
    Feed = 3,
}

/// The token that continues `list` after `cursor`.
pub fn encode(list: List, cursor: &Cursor) -> String {
    let mut bytes = Vec::with_capacity(HEADER + cursor.id.len());
    bytes.push(VERSION);
    bytes.push(list as u8);
    bytes.extend_from_slice(&cursor.at.timestamp_micros().to_be_bytes());
    bytes.extend_from_slice(cursor.id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The cursor in `token`, or `None` for anything this service did not issue for `list`.
pub fn decode(list: List, token: &str) -> Option<Cursor> {
    // Longer than any token this service issues: refused before decoding.
    if token.len() > 4 * (HEADER + MAX_USER_ID) / 3 + 4 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    if bytes.len() <= HEADER || bytes[0] != VERSION || bytes[1] != list as u8 {
        return None;
    }
    let micros = i64::from_be_bytes(bytes[2..HEADER].try_into().ok()?);
    // A forged time PostgreSQL cannot hold would fail the query, not the request.
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&micros.div_euclid(1_000_000)) {
        return None;
    }
    let id = String::from_utf8(bytes[HEADER..].to_vec()).ok()?;
    let at = DateTime::<Utc>::from_timestamp_micros(micros)?;
    Some(Cursor { at, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_garbage_is_refused() {
        let cursor = Cursor {
            at: DateTime::<Utc>::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: "01a1ff5c-a0ed-772e-9502-cbe1507a7d92".to_owned(),
        };
        let token = encode(List::Followers, &cursor);
        assert_eq!(decode(List::Followers, &token), Some(cursor.clone()));
        assert_eq!(
            decode(List::Following, &token),
            None,
            "another list's token"
        );
        assert_eq!(decode(List::Feed, &token), None, "another list's token");
        for bad in [
            "",
            "x",
            "not base64!",
            &token[..12],
            "AAAA",
            &"A".repeat(1000),
        ] {
            assert_eq!(decode(List::Followers, bad), None, "{bad:?}");
        }
        let mut other_version = URL_SAFE_NO_PAD.decode(&token).unwrap();
        other_version[0] = 2;
        assert_eq!(
            decode(List::Followers, &URL_SAFE_NO_PAD.encode(other_version)),
            None
        );
        for micros in [i64::MIN, (MAX_SECONDS + 1) * 1_000_000] {
            let mut far = URL_SAFE_NO_PAD.decode(&token).unwrap();
            far[2..10].copy_from_slice(&micros.to_be_bytes());
            assert_eq!(
                decode(List::Followers, &URL_SAFE_NO_PAD.encode(far)),
                None,
                "{micros}"
            );
        }
    }
}
