//! The `social-registration` consumer: social's side of the registration saga
//! (ARCHITECTURE §4).
//!
//! `auth.user.registered` → the user's profile and, in the same transaction (next to the
//! inbox row), the `OUTBOX` reply: `social.profile.created`, or
//! `social.profile.creation_failed` with a reason a person can read when the handle is invalid
//! or taken (auth then compensates: the user becomes REJECTED).
//!
//! Idempotent twice over:
//! - the same event delivered again is absorbed by the inbox before this handler runs;
//! - the same *registration* under a new event id (auth's reconciliation re-emits a user stuck
//!   PENDING) finds the user's profile and answers `social.profile.created` again, writing
//!   nothing, so the user ends ACTIVE. Handles are never released, so a registration refused
//!   for a taken handle is refused again, and the user ends REJECTED. Neither answer can
//!   leave the user stuck.
//!
//! An event that can never apply (an event id that is not a UUID, no user id) is
//! dead-lettered at once.

use sqlx::{Postgres, Transaction};
use uuid::Uuid;
use wharf_events::EventContext;
use wharf_events::consumer::{Handler, HandlerError};
use wharf_outbox::OutboxError;
use wharf_proto::wharf::auth::v1::UserRegistered;
use wharf_proto::wharf::social::v1::{ProfileCreated, ProfileCreationFailed};

use crate::convert::{MAX_USER_ID, is_user_id};
use crate::store::{self, Created, NewProfile};

/// The durable consumer's name: its name on the server and its key in the inbox.
pub const REGISTRATION_CONSUMER: &str = "social-registration";

/// Longest display name a profile holds, in characters.
pub const MAX_DISPLAY_NAME: usize = 64;

/// Creates the profile of a registered user and answers the saga.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateProfile;

/// What is wrong with a handle, in words for the person who chose it; `None` if it is valid
/// (`^[a-z0-9_]{3,30}$`).
pub fn handle_problem(handle: &str) -> Option<String> {
    let valid = (3..=30).contains(&handle.len())
        && handle
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    (!valid).then(|| format!("the handle {handle:?} is not 3 to 30 characters of a-z, 0-9 and _"))
}

/// The display name a profile starts with: the registration's, without control characters,
/// cut to [`MAX_DISPLAY_NAME`] characters, or the handle when nothing is left.
pub fn initial_display_name(requested: &str, handle: &str) -> String {
    let cleaned: String = requested
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DISPLAY_NAME)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        handle.to_owned()
    } else {
        cleaned.to_owned()
    }
}

fn outbox_error(err: OutboxError) -> HandlerError {
    match err {
        OutboxError::Database(err) => HandlerError::Database(err),
        OutboxError::BadEventId(id) => {
            HandlerError::Permanent(format!("reply event id {id:?} is not a UUID"))
        }
    }
}

async fn created(
    tx: &mut Transaction<'_, Postgres>,
    user_id: &str,
    handle: &str,
    registration_event_id: &str,
) -> Result<(), HandlerError> {
    wharf_outbox::enqueue(
        tx,
        ProfileCreated {
            // Filled in by `enqueue`: every reply is an event of its own.
            event_id: String::new(),
            occurred_at: None,
            user_id: user_id.to_owned(),
            handle: handle.to_owned(),
            registration_event_id: registration_event_id.to_owned(),
        },
    )
    .await
    .map_err(outbox_error)?;
    Ok(())
}

async fn failed(
    tx: &mut Transaction<'_, Postgres>,
    user_id: &str,
    reason: String,
    registration_event_id: &str,
) -> Result<(), HandlerError> {
    tracing::info!(%user_id, %reason, "registration refused: no profile created");
    wharf_outbox::enqueue(
        tx,
        ProfileCreationFailed {
            event_id: String::new(),
            occurred_at: None,
            user_id: user_id.to_owned(),
            reason,
            registration_event_id: registration_event_id.to_owned(),
        },
    )
    .await
    .map_err(outbox_error)?;
    Ok(())
}

impl Handler<UserRegistered> for CreateProfile {
    async fn handle(
        &self,
        _ctx: &EventContext,
        event: UserRegistered,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), HandlerError> {
        let registration_event_id = Uuid::parse_str(&event.event_id).map_err(|_| {
            HandlerError::Permanent(format!("event_id {:?} is not a UUID", event.event_id))
        })?;
        if !is_user_id(&event.user_id) {
            return Err(HandlerError::Permanent(format!(
                "user_id must be 1 to {MAX_USER_ID} bytes without control characters"
            )));
        }
        let user_id = event.user_id.as_str();
        let registration = event.event_id.as_str();

        // A user who has a profile gets it confirmed, whatever this event asks: it is a
        // redelivery or a re-emission of their registration.
        if let Some(existing) = store::profile(&mut **tx, user_id).await? {
            tracing::info!(%user_id, %registration, "registration seen again: profile exists");
            return created(tx, user_id, &existing.handle, registration).await;
        }
        if let Some(problem) = handle_problem(&event.handle) {
            return failed(tx, user_id, problem, registration).await;
        }
        let new = NewProfile {
            user_id: user_id.to_owned(),
            handle: event.handle.clone(),
            display_name: initial_display_name(&event.display_name, &event.handle),
            registration_event_id,
        };
        match store::create_profile(tx, &new).await? {
            Created::New(profile) => {
                tracing::info!(%user_id, handle = %profile.handle, "profile created");
                created(tx, user_id, &profile.handle, registration).await
            }
            Created::Existing(profile) => created(tx, user_id, &profile.handle, registration).await,
            Created::HandleTaken => {
                let reason = format!("the handle {:?} is already taken", event.handle);
                failed(tx, user_id, reason, registration).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_follow_the_pattern() {
        for ok in ["ada", "a_1", "abcdefghijklmnopqrstuvwxyz0123"] {
            assert_eq!(handle_problem(ok), None, "{ok}");
        }
        for bad in [
            "ab",
            "Ada",
            "a b",
            "ada!",
            "abcdefghijklmnopqrstuvwxyz01234",
            "é_é",
        ] {
            let problem = handle_problem(bad).expect(bad);
            assert!(problem.contains("3 to 30"), "{problem}");
        }
    }

    #[test]
    fn display_names_start_clean() {
        assert_eq!(initial_display_name("Ada", "ada"), "Ada");
        assert_eq!(initial_display_name("", "ada"), "ada");
        assert_eq!(initial_display_name(" \u{7}\n ", "ada"), "ada");
        assert_eq!(initial_display_name("A\u{0}da", "ada"), "Ada");
        assert_eq!(
            initial_display_name(&"é".repeat(100), "ada")
                .chars()
                .count(),
            MAX_DISPLAY_NAME
        );
    }
}
