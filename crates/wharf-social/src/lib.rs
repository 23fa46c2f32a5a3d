//! The social service (ARCHITECTURE §4: registration, auxiliary, real-time notifications).
//!
//! - **The registration saga, social side**: the durable consumer `social-registration` of
//!   `auth.user.registered` creates the user's profile (handle unique, `^[a-z0-9_]{3,30}$`)
//!   and, in the same transaction, enqueues the `OUTBOX` reply `social.profile.created`, or
//!   `social.profile.creation_failed` with a reason when the handle is invalid or taken. A
//!   registration seen again (redelivered, or re-emitted by auth's reconciliation under a new
//!   event id) for a user who has a profile is answered `created` again.
//! - **Feeds**: the durable consumer `social-feed` of `trading.trade.executed` writes one item
//!   per follower of the trader with one `INSERT … SELECT` from `follows`, from the event's
//!   payload alone; items are unique per (follower, trade).
//! - **Gamification**: the durable consumer `social-achievements` counts each trade once per
//!   user and evaluates the declarative [`achievements::RULES`]; an achievement unlocks once
//!   per user, and after the commit a `FIRE_AND_FORGET` `social.achievement.unlocked` and a
//!   `notify.user.<id>` notification are queued, best effort.
//! - **RPCs** (`wharf.social.v1.SocialService`, every call authenticated): profiles with their
//!   counts, follow / unfollow, follower and following lists, the caller's feed and
//!   achievements, with keyset page tokens.
//!
//! Auxiliary by contract: social only consumes, and nothing in auth, trading or revenue waits
//! for it; a slow or stopped social delays feeds and achievements, never a trade or a login.
//!
//! # Layout
//! - [`app`]: `App::build` + `run_until_stopped`, the schema list.
//! - [`registration`]: the `social-registration` handler.
//! - [`feed`]: the `social-feed` handler and what makes a trade event valid.
//! - [`achievements`]: the rules, the `social-achievements` handler and its announcer.
//! - [`notify`]: user notifications on core NATS.
//! - [`store`]: the `social` schema and its queries.
//! - [`service`]: the RPC handlers, their authentication and validation.
//! - [`page`]: the opaque page tokens.
//! - [`config`]: the `[social]` section.
#![forbid(unsafe_code)]

pub mod achievements;
pub mod app;
pub mod config;
pub mod convert;
pub mod feed;
pub mod notify;
pub mod page;
pub mod registration;
pub mod service;
pub mod store;

pub use achievements::{ACHIEVEMENTS_CONSUMER, Gamify, RULES, Rule};
pub use app::{App, AppError, Deps, SCHEMA, schemas};
pub use config::{SocialConfig, SocialConfigError};
pub use feed::{FEED_CONSUMER, FanOut};
pub use notify::Notifier;
pub use registration::{CreateProfile, REGISTRATION_CONSUMER};
pub use service::SocialHandlers;
