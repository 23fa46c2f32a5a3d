//! The auth side of the registration saga: social's replies settle a PENDING user.
//!
//! `social.profile.created` → `ACTIVE`; `social.profile.creation_failed` → `REJECTED` (the
//! compensation: the email is free again). Both run in the consumer's transaction, next to the
//! inbox row, so a redelivered reply changes nothing. A reply that contradicts the user's
//! settled state (a profile created for a user already rejected) is a bug upstream: it is
//! dead-lettered for an operator, never applied.

use sqlx::{Postgres, Transaction};
use uuid::Uuid;
use wharf_events::EventContext;
use wharf_events::consumer::{Handler, HandlerError};
use wharf_proto::wharf::social::v1::{ProfileCreated, ProfileCreationFailed};

use crate::users::{self, UserStatus};

/// Consumer name of the `social.profile.created` handler.
pub const PROFILE_CREATED: &str = "auth-profile-created";
/// Consumer name of the `social.profile.creation_failed` handler.
pub const PROFILE_FAILED: &str = "auth-profile-creation-failed";

#[derive(Debug, Clone, Copy, Default)]
pub struct OnProfileCreated;

#[derive(Debug, Clone, Copy, Default)]
pub struct OnProfileCreationFailed;

fn user_id(raw: &str) -> Result<Uuid, HandlerError> {
    Uuid::parse_str(raw)
        .map_err(|_| HandlerError::Permanent(format!("user_id {raw:?} is not a UUID")))
}

impl Handler<ProfileCreated> for OnProfileCreated {
    async fn handle(
        &self,
        _ctx: &EventContext,
        event: ProfileCreated,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), HandlerError> {
        let id = user_id(&event.user_id)?;
        match users::settle(tx, id, UserStatus::Active, None).await? {
            Some(UserStatus::Pending | UserStatus::Active) => {
                tracing::info!(user_id = %id, "registration complete: user is active");
                Ok(())
            }
            Some(UserStatus::Rejected) => Err(HandlerError::Permanent(format!(
                "profile created for user {id}, who was already rejected"
            ))),
            None => Err(HandlerError::Permanent(format!("no user {id}"))),
        }
    }
}

impl Handler<ProfileCreationFailed> for OnProfileCreationFailed {
    async fn handle(
        &self,
        _ctx: &EventContext,
        event: ProfileCreationFailed,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<(), HandlerError> {
        let id = user_id(&event.user_id)?;
        let reason = if event.reason.is_empty() {
            "profile could not be created"
        } else {
            event.reason.as_str()
        };
        match users::settle(tx, id, UserStatus::Rejected, Some(reason)).await? {
            Some(UserStatus::Pending | UserStatus::Rejected) => {
                tracing::info!(user_id = %id, %reason, "registration compensated: user rejected");
                Ok(())
            }
            Some(UserStatus::Active) => Err(HandlerError::Permanent(format!(
                "profile creation failed for user {id}, who is already active"
            ))),
            None => Err(HandlerError::Permanent(format!("no user {id}"))),
        }
    }
}
