//! `wharf.social.v1.SocialService`: profiles, follows, the feed and achievements.
//!
//! Every call needs a valid access token. The check runs first in each handler, with the token
//! layer's `verify_bearer` (the runtime's server builder takes generated servers, so the check
//! cannot be an interceptor around one): a missing or bad token is `UNAUTHENTICATED` with the
//! one generic message. Only then is the request validated: a bad request is
//! `INVALID_ARGUMENT` with a field violation per problem, and nothing is written.
//!
//! | case | status | details |
//! |---|---|---|
//! | a profile (or the user to follow) does not exist | `NOT_FOUND` | `ResourceInfo` |
//! | following or unfollowing yourself | `INVALID_ARGUMENT` | `BadRequest` on `user_id` |
//! | the caller has no profile yet (registration pending) | `FAILED_PRECONDITION` | `PreconditionFailure` `PROFILE` |
//! | the database is unreachable | `UNAVAILABLE` | |
//!
//! Follow and Unfollow are idempotent: following someone twice, or unfollowing someone not
//! followed, succeeds and changes nothing.

use std::sync::Arc;

use sqlx::PgPool;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;
use wharf_proto::wharf::social::v1::social_service_server::{SocialService, SocialServiceServer};
use wharf_proto::wharf::social::v1::{
    Achievement, FeedItem, FollowRequest, FollowResponse, GetFeedRequest, GetFeedResponse,
    GetProfileRequest, GetProfileResponse, ListAchievementsRequest, ListAchievementsResponse,
    ListFollowersRequest, ListFollowersResponse, ListFollowingRequest, ListFollowingResponse,
    Profile, UnfollowRequest, UnfollowResponse, UpdateProfileRequest, UpdateProfileResponse,
};
use wharf_tokens::layer::verify_bearer;
use wharf_tokens::{Identity, Tokens};

use crate::convert::{MAX_USER_ID, is_user_id, timestamp};
use crate::page::{self, List};
use crate::registration::MAX_DISPLAY_NAME;
use crate::store::{self, Cursor, Direction, FollowOutcome};

/// Rows per page when the caller names no size.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// The largest page a caller may ask for.
pub const MAX_PAGE_SIZE: i32 = 500;
/// Longest bio, in characters.
pub const MAX_BIO: usize = 280;
/// The resource type `NOT_FOUND` names.
pub const PROFILE_RESOURCE: &str = "wharf.social.v1.Profile";

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct SocialHandlers {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    tokens: Arc<Tokens>,
}

impl std::fmt::Debug for SocialHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocialHandlers").finish_non_exhaustive()
    }
}

impl SocialHandlers {
    /// Handlers over the social schema in `pool`, verifying callers with `tokens`.
    pub fn new(pool: PgPool, tokens: Arc<Tokens>) -> Self {
        Self {
            inner: Arc::new(Inner { pool, tokens }),
        }
    }

    pub fn server(self) -> SocialServiceServer<Self> {
        SocialServiceServer::new(self)
    }

    /// The caller, verified.
    fn caller<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        verify_bearer(&self.inner.tokens, request.metadata())
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The profile of `user_id`, or `NOT_FOUND`.
    async fn existing(&self, user_id: &str) -> Result<store::Profile, Status> {
        store::profile(self.pool(), user_id)
            .await
            .map_err(|err| database(&err))?
            .ok_or_else(|| not_found(user_id))
    }
}

// ---------------------------------------------------------------------------------------------
// Errors as callers see them.

fn invalid(what: &str, violations: Vec<(&'static str, String)>) -> Status {
    let mut details = ErrorDetails::new();
    for (field, description) in violations {
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("invalid {what} request"),
        details,
    )
}

fn not_found(user_id: &str) -> Status {
    Status::with_error_details(
        tonic::Code::NotFound,
        "no such profile",
        ErrorDetails::with_resource_info(
            PROFILE_RESOURCE,
            user_id,
            "",
            "no profile has this user id",
        ),
    )
}

fn no_profile_yet() -> Status {
    Status::with_error_details(
        tonic::Code::FailedPrecondition,
        "you have no profile yet; try again shortly",
        ErrorDetails::with_precondition_failure_violation(
            "PROFILE",
            "caller",
            "the caller has no profile yet: the registration may still be in progress",
        ),
    )
}

fn database(err: &sqlx::Error) -> Status {
    tracing::error!(error = %err, "social database call failed");
    if wharf_runtime::db::is_unreachable(err) {
        Status::unavailable("social is unavailable; retry later")
    } else {
        Status::internal("internal error")
    }
}

fn profile(stored: store::Profile) -> Profile {
    Profile {
        user_id: stored.user_id,
        handle: stored.handle,
        display_name: stored.display_name,
        bio: stored.bio,
        follower_count: stored.follower_count,
        following_count: stored.following_count,
        created_at: Some(timestamp(stored.created_at)),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// The user a request names: the caller when it names none. `Err` describes the problem.
fn target(requested: &str, caller: &Identity) -> Result<String, String> {
    if requested.is_empty() {
        Ok(caller.user_id.clone())
    } else if is_user_id(requested) {
        Ok(requested.to_owned())
    } else {
        Err(user_id_problem())
    }
}

fn user_id_problem() -> String {
    format!("must be a user id: 1 to {MAX_USER_ID} bytes without control characters")
}

/// The user to (un)follow, who must be someone else.
fn other_user(what: &str, requested: &str, caller: &Identity) -> Result<String, Status> {
    let problem = if requested.is_empty() {
        format!("must name the user to {what}")
    } else if !is_user_id(requested) {
        user_id_problem()
    } else if requested == caller.user_id {
        format!("you cannot {what} yourself")
    } else {
        return Ok(requested.to_owned());
    };
    Err(invalid(what, vec![("user_id", problem)]))
}

/// A page request that passed validation.
struct ValidPage {
    size: i64,
    after: Option<Cursor>,
}

impl ValidPage {
    fn parse(
        list: List,
        page_size: i32,
        page_token: &str,
        violations: &mut Vec<(&'static str, String)>,
    ) -> Self {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if (1..=MAX_PAGE_SIZE).contains(&size) => size,
            _ => {
                violations.push((
                    "page_size",
                    format!("must be 1 to {MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}"),
                ));
                DEFAULT_PAGE_SIZE
            }
        };
        let mut after = None;
        if !page_token.is_empty() {
            after = page::decode(list, page_token)
                .filter(|cursor| list != List::Feed || Uuid::parse_str(&cursor.id).is_ok());
            if after.is_none() {
                violations.push((
                    "page_token",
                    "must be a next_page_token from an earlier response to the same call"
                        .to_owned(),
                ));
            }
        }
        Self {
            size: i64::from(size),
            after,
        }
    }

    fn limit(&self) -> usize {
        usize::try_from(self.size).unwrap_or(usize::MAX)
    }
}

/// A profile update that passed validation.
struct ValidUpdate {
    display_name: String,
    bio: String,
}

impl ValidUpdate {
    fn parse(request: &UpdateProfileRequest) -> Result<Self, Status> {
        let display_name = request.display_name.trim();
        let bio = request.bio.trim();
        let mut violations = Vec::new();
        if display_name.is_empty() || display_name.chars().count() > MAX_DISPLAY_NAME {
            violations.push((
                "display_name",
                format!("must be 1 to {MAX_DISPLAY_NAME} characters"),
            ));
        } else if display_name.chars().any(char::is_control) {
            violations.push((
                "display_name",
                "must not contain control characters".to_owned(),
            ));
        }
        if bio.chars().count() > MAX_BIO {
            violations.push(("bio", format!("must be at most {MAX_BIO} characters")));
        } else if bio.chars().any(char::is_control) {
            violations.push((
                "bio",
                "must not contain control characters (line breaks included)".to_owned(),
            ));
        }
        if !violations.is_empty() {
            return Err(invalid("update profile", violations));
        }
        Ok(Self {
            display_name: display_name.to_owned(),
            bio: bio.to_owned(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The RPCs.

impl SocialHandlers {
    /// One page of a follow list of `user_id` (the caller's when empty).
    async fn follow_page(
        &self,
        caller: &Identity,
        direction: Direction,
        user_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Profile>, String), Status> {
        let (what, list) = match direction {
            Direction::Followers => ("list followers", List::Followers),
            Direction::Following => ("list following", List::Following),
        };
        let mut violations = Vec::new();
        let user = target(user_id, caller)
            .map_err(|problem| violations.push(("user_id", problem)))
            .ok();
        let page = ValidPage::parse(list, page_size, page_token, &mut violations);
        let Some(user) = user.filter(|_| violations.is_empty()) else {
            return Err(invalid(what, violations));
        };
        // One more than asked: whether it exists says whether there is a next page.
        let mut rows = store::follow_list(
            self.pool(),
            direction,
            &user,
            page.after.as_ref(),
            page.size + 1,
        )
        .await
        .map_err(|err| database(&err))?;
        if rows.is_empty() && user != caller.user_id {
            // An empty list of someone who does not exist is a mistake worth naming.
            self.existing(&user).await?;
        }
        let more = rows.len() > page.limit();
        rows.truncate(page.limit());
        let next_page_token = match rows.last() {
            Some(last) if more => page::encode(
                list,
                &Cursor {
                    at: last.followed_at,
                    id: last.profile.user_id.clone(),
                },
            ),
            _ => String::new(),
        };
        let profiles = rows.into_iter().map(|row| profile(row.profile)).collect();
        Ok((profiles, next_page_token))
    }
}

#[tonic::async_trait]
impl SocialService for SocialHandlers {
    /// A profile with its follower and following counts; the caller's when no user is named.
    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<GetProfileResponse>, Status> {
        let caller = self.caller(&request)?;
        let user = target(&request.get_ref().user_id, &caller)
            .map_err(|problem| invalid("get profile", vec![("user_id", problem)]))?;
        let found = self.existing(&user).await?;
        Ok(Response::new(GetProfileResponse {
            profile: Some(profile(found)),
        }))
    }

    /// Sets the caller's display name (1–64 characters) and bio (at most 280).
    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Response<UpdateProfileResponse>, Status> {
        let caller = self.caller(&request)?;
        let update = ValidUpdate::parse(request.get_ref())?;
        let updated = store::update_profile(
            self.pool(),
            &caller.user_id,
            &update.display_name,
            &update.bio,
        )
        .await
        .map_err(|err| database(&err))?
        .ok_or_else(no_profile_yet)?;
        Ok(Response::new(UpdateProfileResponse {
            profile: Some(profile(updated)),
        }))
    }

    /// The caller follows a user; following again changes nothing.
    async fn follow(
        &self,
        request: Request<FollowRequest>,
    ) -> Result<Response<FollowResponse>, Status> {
        let caller = self.caller(&request)?;
        let followee = other_user("follow", &request.get_ref().user_id, &caller)?;
        match store::follow(self.pool(), &caller.user_id, &followee)
            .await
            .map_err(|err| database(&err))?
        {
            FollowOutcome::Changed | FollowOutcome::Unchanged => {
                Ok(Response::new(FollowResponse {}))
            }
            FollowOutcome::NoFollower => Err(no_profile_yet()),
            FollowOutcome::NoFollowee => Err(not_found(&followee)),
        }
    }

    /// The caller stops following a user; not following them already is no error.
    async fn unfollow(
        &self,
        request: Request<UnfollowRequest>,
    ) -> Result<Response<UnfollowResponse>, Status> {
        let caller = self.caller(&request)?;
        let followee = other_user("unfollow", &request.get_ref().user_id, &caller)?;
        match store::unfollow(self.pool(), &caller.user_id, &followee)
            .await
            .map_err(|err| database(&err))?
        {
            FollowOutcome::Changed | FollowOutcome::Unchanged => {
                Ok(Response::new(UnfollowResponse {}))
            }
            FollowOutcome::NoFollower => Err(no_profile_yet()),
            FollowOutcome::NoFollowee => Err(not_found(&followee)),
        }
    }

    /// Who follows a user (the caller when none is named), newest follow first.
    async fn list_followers(
        &self,
        request: Request<ListFollowersRequest>,
    ) -> Result<Response<ListFollowersResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let (profiles, next_page_token) = self
            .follow_page(
                &caller,
                Direction::Followers,
                &request.user_id,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(ListFollowersResponse {
            profiles,
            next_page_token,
        }))
    }

    /// Whom a user follows (the caller when none is named), newest follow first.
    async fn list_following(
        &self,
        request: Request<ListFollowingRequest>,
    ) -> Result<Response<ListFollowingResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let (profiles, next_page_token) = self
            .follow_page(
                &caller,
                Direction::Following,
                &request.user_id,
                request.page_size,
                &request.page_token,
            )
            .await?;
        Ok(Response::new(ListFollowingResponse {
            profiles,
            next_page_token,
        }))
    }

    /// The caller's feed: the trades of the users they follow, newest trade first.
    async fn get_feed(
        &self,
        request: Request<GetFeedRequest>,
    ) -> Result<Response<GetFeedResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        let page = ValidPage::parse(
            List::Feed,
            request.page_size,
            &request.page_token,
            &mut violations,
        );
        if !violations.is_empty() {
            return Err(invalid("get feed", violations));
        }
        let after = page
            .after
            .as_ref()
            .and_then(|cursor| Some((cursor.at, Uuid::parse_str(&cursor.id).ok()?)));
        let mut items = store::feed(self.pool(), &caller.user_id, after, page.size + 1)
            .await
            .map_err(|err| database(&err))?;
        let more = items.len() > page.limit();
        items.truncate(page.limit());
        let next_page_token = match items.last() {
            Some(last) if more => page::encode(
                List::Feed,
                &Cursor {
                    at: last.occurred_at,
                    id: last.trade_id.to_string(),
                },
            ),
            _ => String::new(),
        };
        Ok(Response::new(GetFeedResponse {
            items: items
                .into_iter()
                .map(|item| FeedItem {
                    feed_item_id: item.id.to_string(),
                    actor_user_id: item.actor_user_id,
                    kind: item.kind,
                    text: item.text,
                    trade_id: item.trade_id.to_string(),
                    occurred_at: Some(timestamp(item.occurred_at)),
                })
                .collect(),
            next_page_token,
        }))
    }

    /// A user's achievements (the caller's when none is named), first unlocked first. There
    /// are only as many as rules, so the list is never paged.
    async fn list_achievements(
        &self,
        request: Request<ListAchievementsRequest>,
    ) -> Result<Response<ListAchievementsResponse>, Status> {
        let caller = self.caller(&request)?;
        let user = target(&request.get_ref().user_id, &caller)
            .map_err(|problem| invalid("list achievements", vec![("user_id", problem)]))?;
        let unlocked = store::achievements(self.pool(), &user)
            .await
            .map_err(|err| database(&err))?;
        if unlocked.is_empty() && user != caller.user_id {
            self.existing(&user).await?;
        }
        Ok(Response::new(ListAchievementsResponse {
            achievements: unlocked
                .into_iter()
                .map(|unlocked| Achievement {
                    achievement: unlocked.achievement,
                    title: unlocked.title,
                    unlocked_at: Some(timestamp(unlocked.unlocked_at)),
                })
                .collect(),
        }))
    }
}
