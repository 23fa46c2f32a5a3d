//! `wharf.auth.v1.AuthService`: the RPC handlers.

use std::sync::Arc;
use std::time::Duration;

use prost_types::Timestamp;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;
use wharf_events::AckedPublisher;
use wharf_outbox::Waker;
use wharf_proto::wharf::auth::v1::auth_service_server::{AuthService, AuthServiceServer};
use wharf_proto::wharf::auth::v1::{
    GetJwksRequest, GetJwksResponse, Jwk, LoginRequest, LoginResponse, LogoutAllRequest,
    LogoutAllResponse, LogoutRequest, LogoutResponse, RefreshRequest, RefreshResponse,
    RegisterRequest, RegisterResponse, TokenPair, UserLoggedIn, UserRegistered,
    UserStatus as ProtoStatus, WhoAmIRequest, WhoAmIResponse,
};
use wharf_resilience::ratelimit::limited_status;
use wharf_resilience::{AllDecision, Bucket, Limit, RateLimitError, RateLimiter};
use wharf_tokens::layer::{UNAUTHENTICATED, verify_bearer};
use wharf_tokens::refresh::{self, RefreshToken};
use wharf_tokens::{Identity, Tokens};

use crate::config::AuthConfig;
use crate::password::{self, PasswordError, Passwords};
use crate::sessions::{Rotation, Session, Sessions, StoreError, unix_now};
use crate::users::{self, InsertError, NewUser, PriorRegistration, UserStatus};

/// The one answer to every credential failure (unknown email, wrong password, rejected user):
/// a caller cannot tell them apart.
pub const BAD_CREDENTIALS: &str = "invalid email or password";

/// The steps of a login, in order. Fault tests stop a login after any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStep {
    /// The password matched; nothing is written yet.
    Verified,
    /// The session is in Redis, *pending*.
    PendingWritten,
    /// `auth.user.logged_in` was acknowledged by JetStream.
    Published,
    /// The session is *active*; the response is about to be sent.
    Promoted,
}

type StepHook = Arc<dyn Fn(LoginStep) + Send + Sync>;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AuthHandlers {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    tokens: Arc<Tokens>,
    sessions: Sessions,
    limiter: RateLimiter,
    passwords: Passwords,
    publisher: AckedPublisher,
    /// Wakes the relay once a registration (and its `user.registered` event) has committed.
    outbox: Waker,
    config: AuthConfig,
    after_step: Option<StepHook>,
}

impl std::fmt::Debug for AuthHandlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthHandlers").finish_non_exhaustive()
    }
}

/// The pieces the handlers are built from (see `App::build`).
#[derive(Debug)]
pub struct Parts {
    pub pool: PgPool,
    pub tokens: Arc<Tokens>,
    pub sessions: Sessions,
    pub limiter: RateLimiter,
    pub passwords: Passwords,
    pub publisher: AckedPublisher,
    pub outbox: Waker,
    pub config: AuthConfig,
}

impl AuthHandlers {
    pub fn new(parts: Parts) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool: parts.pool,
                tokens: parts.tokens,
                sessions: parts.sessions,
                limiter: parts.limiter,
                passwords: parts.passwords,
                publisher: parts.publisher,
                outbox: parts.outbox,
                config: parts.config,
                after_step: None,
            }),
        }
    }

    /// Runs `hook` after each login step; a fault test panics in it to stand for a crash
    /// there. Only before the handlers are first cloned into a server.
    #[doc(hidden)]
    pub fn set_login_step_hook(&mut self, hook: StepHook) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.after_step = Some(hook);
        }
    }

    pub fn server(self) -> AuthServiceServer<Self> {
        AuthServiceServer::new(self)
    }

    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    pub fn passwords(&self) -> &Passwords {
        &self.inner.passwords
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

fn database(err: &sqlx::Error) -> Status {
    tracing::error!(error = %err, "auth database call failed");
    if wharf_runtime::db::is_unreachable(err) {
        Status::unavailable("the user store is unavailable; retry later")
    } else {
        Status::internal("internal error")
    }
}

fn store(err: &StoreError) -> Status {
    tracing::error!(error = %err, "session store call failed");
    Status::unavailable("the session store is unavailable; retry later")
}

fn limiter(err: &RateLimitError) -> Status {
    tracing::error!(error = %err, "rate limiter unavailable");
    Status::unavailable("the session store is unavailable; retry later")
}

fn passwords(err: &PasswordError) -> Status {
    match err {
        PasswordError::Busy => {
            let details = ErrorDetails::with_retry_info(Some(Duration::from_secs(1)));
            Status::with_error_details(
                tonic::Code::ResourceExhausted,
                "too many sign-ins in progress; retry shortly",
                details,
            )
        }
        PasswordError::Internal(reason) => {
            tracing::error!(%reason, "password hashing failed");
            Status::internal("internal error")
        }
    }
}

fn unauthenticated() -> Status {
    Status::unauthenticated(UNAUTHENTICATED)
}

fn timestamp(unix_seconds: u64) -> Timestamp {
    Timestamp {
        seconds: i64::try_from(unix_seconds).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Validation.

const MAX_EMAIL: usize = 254;
const MAX_DISPLAY_NAME: usize = 64;
const MAX_IDEMPOTENCY_KEY: usize = 200;

fn email_problem(email: &str) -> Option<String> {
    if email.is_empty() {
        return Some("is required".to_owned());
    }
    if email.len() > MAX_EMAIL {
        return Some(format!("must be at most {MAX_EMAIL} bytes"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain spaces or control characters".to_owned());
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && local.len() <= 64
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            None
        }
        _ => Some("must be an address like name@example.com".to_owned()),
    }
}

fn handle_problem(handle: &str) -> Option<String> {
    let ok_chars = handle
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !(3..=30).contains(&handle.len()) || !ok_chars {
        Some("must be 3 to 30 characters of a-z, 0-9 and _".to_owned())
    } else {
        None
    }
}

fn display_name_problem(name: &str) -> Option<String> {
    if name.chars().count() > MAX_DISPLAY_NAME {
        Some(format!("must be at most {MAX_DISPLAY_NAME} characters"))
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    }
}

/// A register request that passed validation.
struct ValidRegistration {
    idempotency_key: Option<String>,
    email: String,
    password: String,
    handle: String,
    display_name: String,
}

impl ValidRegistration {
    fn parse(request: RegisterRequest) -> Result<Self, Status> {
        let email = request.email.trim().to_owned();
        let handle = request.handle.trim().to_owned();
        let display_name = request.display_name.trim().to_owned();
        let key = request.idempotency_key.trim().to_owned();
        let mut violations = Vec::new();
        if let Some(problem) = email_problem(&email) {
            violations.push(("email", problem));
        }
        if let Err(problem) = password::check_policy(&request.password) {
            violations.push(("password", problem.to_string()));
        }
        if let Some(problem) = handle_problem(&handle) {
            violations.push(("handle", problem));
        }
        if let Some(problem) = display_name_problem(&display_name) {
            violations.push(("display_name", problem));
        }
        if key.len() > MAX_IDEMPOTENCY_KEY {
            violations.push((
                "idempotency_key",
                format!("must be at most {MAX_IDEMPOTENCY_KEY} bytes"),
            ));
        }
        if !violations.is_empty() {
            return Err(invalid("register", violations));
        }
        let display_name = if display_name.is_empty() {
            handle.clone()
        } else {
            display_name
        };
        Ok(Self {
            idempotency_key: (!key.is_empty()).then_some(key),
            email,
            password: request.password,
            handle,
            display_name,
        })
    }

    /// What identifies "the same request" for the idempotency key, without the password.
    fn fingerprint(&self) -> Vec<u8> {
        let mut hash = Sha256::new();
        for part in [
            self.email.to_lowercase().as_str(),
            self.handle.as_str(),
            self.display_name.as_str(),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hash.finalize().to_vec()
    }
}

fn proto_status(status: UserStatus) -> i32 {
    match status {
        UserStatus::Pending => ProtoStatus::Pending,
        UserStatus::Active => ProtoStatus::Active,
        UserStatus::Rejected => ProtoStatus::Rejected,
    }
    .into()
}

// ---------------------------------------------------------------------------------------------
// Shared steps.

impl AuthHandlers {
    fn client_address<T>(&self, request: &Request<T>) -> String {
        if self.inner.config.trust_forwarded_for
            && let Some(forwarded) = request
                .metadata()
                .get("x-forwarded-for")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(',').next())
                .map(str::trim)
                .filter(|value| !value.is_empty())
        {
            return forwarded.to_owned();
        }
        request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string())
    }

    async fn limit(&self, name: &str, bucket: &str, limit: Limit) -> Result<(), Status> {
        self.limits(&[(name, Bucket::count(bucket, limit))]).await
    }

    /// Asks every named bucket in one Redis round trip and counts the call against those that
    /// count, if none refuses it; a refusal names the limit that was hit.
    async fn limits(&self, buckets: &[(&str, Bucket<'_>)]) -> Result<(), Status> {
        let asked: Vec<Bucket<'_>> = buckets.iter().map(|(_, bucket)| *bucket).collect();
        match self
            .inner
            .limiter
            .acquire_all(&asked)
            .await
            .map_err(|err| limiter(&err))?
        {
            AllDecision::Allowed => Ok(()),
            AllDecision::Limited { index, retry_after } => {
                let name = buckets.get(index).map_or("rate_limit", |(name, _)| name);
                Err(limited_status(name, retry_after))
            }
        }
    }

    /// The caller's verified identity, whose session must still be active.
    async fn authenticate<T>(&self, request: &Request<T>) -> Result<(Identity, Session), Status> {
        let identity = verify_bearer(&self.inner.tokens, request.metadata())?;
        match self
            .inner
            .sessions
            .active(&identity.session_id, &identity.user_id)
            .await
            .map_err(|err| store(&err))?
        {
            Some(session) => Ok((identity, session)),
            None => {
                tracing::info!(session_id = %identity.session_id, "token of an inactive session refused");
                Err(unauthenticated())
            }
        }
    }

    fn step(&self, step: LoginStep) {
        if let Some(hook) = &self.inner.after_step {
            hook(step);
        }
    }

    fn token_pair(&self, session: &Session, refresh_token: String) -> Result<TokenPair, Status> {
        let (access_token, claims) = self
            .inner
            .tokens
            .issue(&session.user_id, &session.session_id, &session.roles)
            .map_err(|err| {
                tracing::error!(error = %err, "cannot sign access tokens");
                Status::internal("internal error")
            })?;
        Ok(TokenPair {
            access_token,
            access_expires_at: Some(timestamp(claims.exp)),
            refresh_token,
            refresh_expires_at: Some(timestamp(session.expires_at)),
            token_type: "Bearer".to_owned(),
        })
    }

    /// The answer to a Register retry with a key already used.
    async fn replay_registration(
        &self,
        prior: PriorRegistration,
        request: ValidRegistration,
    ) -> Result<Response<RegisterResponse>, Status> {
        let same_password = self
            .inner
            .passwords
            .verify(request.password.clone(), Some(prior.password_hash.clone()))
            .await
            .map_err(|err| passwords(&err))?;
        if prior.fingerprint != request.fingerprint() || !same_password {
            let mut details = ErrorDetails::new();
            details.set_error_info(
                "IDEMPOTENCY_KEY_REUSED",
                "wharf.auth.v1",
                std::collections::HashMap::new(),
            );
            return Err(Status::with_error_details(
                tonic::Code::FailedPrecondition,
                "this idempotency key was used for a different registration",
                details,
            ));
        }
        Ok(Response::new(RegisterResponse {
            user_id: prior.user_id.to_string(),
            status: proto_status(prior.status),
        }))
    }

    /// How long the login may wait for the `logged_in` ack: the configured bound, or less
    /// when the client's own deadline is nearer (leaving it time to compensate).
    fn publish_deadline<T>(&self, request: &Request<T>) -> Duration {
        let configured = self.inner.config.login_publish_timeout;
        request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(wharf_runtime::server::layers::parse_grpc_timeout)
            .map_or(configured, |client| configured.min(client * 3 / 4))
    }
}

// ---------------------------------------------------------------------------------------------
// The RPCs.

#[tonic::async_trait]
impl AuthService for AuthHandlers {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let address = self.client_address(&request);
        let valid = ValidRegistration::parse(request.into_inner())?;
        let limits = &self.inner.config.limits;
        self.limit(
            "register_per_address",
            &format!("register:addr:{address}"),
            limits.register_per_address,
        )
        .await?;
        let pool = &self.inner.pool;
        if let Some(key) = &valid.idempotency_key
            && let Some(prior) = users::prior_registration(pool, key)
                .await
                .map_err(|err| database(&err))?
        {
            return self.replay_registration(prior, valid).await;
        }

        let password_hash = self
            .inner
            .passwords
            .hash(valid.password.clone())
            .await
            .map_err(|err| passwords(&err))?;
        let user_id = Uuid::now_v7();
        let event_id = Uuid::now_v7();
        let fingerprint = valid.fingerprint();
        let mut tx = pool.begin().await.map_err(|err| database(&err))?;
        let inserted = users::insert(
            &mut tx,
            &NewUser {
                id: user_id,
                email: &valid.email,
                password_hash: &password_hash,
                handle: &valid.handle,
                display_name: &valid.display_name,
                registration_event_id: event_id,
            },
            valid
                .idempotency_key
                .as_deref()
                .map(|key| (key, fingerprint.as_slice())),
        )
        .await;
        match inserted {
            Ok(()) => {}
            Err(InsertError::EmailTaken) => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation("email", "is already registered");
                return Err(Status::with_error_details(
                    tonic::Code::AlreadyExists,
                    "an account with this email already exists",
                    details,
                ));
            }
            Err(InsertError::KeyRaced) => {
                drop(tx);
                let key = valid.idempotency_key.as_deref().unwrap_or_default();
                let prior = users::prior_registration(pool, key)
                    .await
                    .map_err(|err| database(&err))?
                    .ok_or_else(|| Status::aborted("concurrent registration; retry"))?;
                return self.replay_registration(prior, valid).await;
            }
            Err(InsertError::Database(err)) => return Err(database(&err)),
        }
        wharf_outbox::enqueue(
            &mut tx,
            UserRegistered {
                event_id: event_id.to_string(),
                occurred_at: None,
                user_id: user_id.to_string(),
                email: valid.email.clone(),
                handle: valid.handle.clone(),
                display_name: valid.display_name.clone(),
            },
        )
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "failed to enqueue auth.user.registered");
            Status::unavailable("the user store is unavailable; retry later")
        })?;
        self.inner
            .outbox
            .commit(tx)
            .await
            .map_err(|err| database(&err))?;
        tracing::info!(%user_id, "user registered, pending its profile");
        Ok(Response::new(RegisterResponse {
            user_id: user_id.to_string(),
            status: proto_status(UserStatus::Pending),
        }))
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let address = self.client_address(&request);
        let user_agent = request
            .metadata()
            .get("user-agent")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .chars()
            .take(256)
            .collect::<String>();
        let publish_deadline = self.publish_deadline(&request);
        let LoginRequest { email, password } = request.into_inner();
        let email = email.trim().to_lowercase();
        let mut violations = Vec::new();
        if email.is_empty() || email.len() > MAX_EMAIL {
            violations.push(("email", format!("must be 1 to {MAX_EMAIL} bytes")));
        }
        if password.is_empty() || password.chars().count() > password::MAX_CHARS {
            violations.push((
                "password",
                format!("must be 1 to {} characters", password::MAX_CHARS),
            ));
        }
        if !violations.is_empty() {
            return Err(invalid("login", violations));
        }

        // Limits first, all in one round trip: a refused attempt costs no hash. Attempts count
        // per address; failures are counted per account after the fact, and only asked here.
        let limits = &self.inner.config.limits;
        let per_address = format!("login:addr:{address}");
        let per_pair = format!("login:fail:{email}:{address}");
        let per_account = format!("login:fail:{email}");
        self.limits(&[
            (
                "login_per_address",
                Bucket::count(&per_address, limits.login_per_address),
            ),
            (
                "login_failures_per_account_address",
                Bucket::peek(&per_pair, limits.login_failures_per_account_address),
            ),
            (
                "login_failures_per_account",
                Bucket::peek(&per_account, limits.login_failures_per_account),
            ),
        ])
        .await?;

        let user = users::credentials(&self.inner.pool, &email)
            .await
            .map_err(|err| database(&err))?;
        let matched = self
            .inner
            .passwords
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(|err| passwords(&err))?;
        let Some(user) = user.filter(|_| matched) else {
            for (bucket, limit) in [
                (&per_pair, limits.login_failures_per_account_address),
                (&per_account, limits.login_failures_per_account),
            ] {
                self.inner
                    .limiter
                    .record(bucket, limit)
                    .await
                    .map_err(|err| limiter(&err))?;
            }
            return Err(Status::unauthenticated(BAD_CREDENTIALS));
        };
        if user.status != UserStatus::Active {
            let mut details = ErrorDetails::new();
            details.add_precondition_failure_violation(
                "USER_STATUS",
                "user",
                "registration is not complete yet: the account is pending its profile",
            );
            return Err(Status::with_error_details(
                tonic::Code::FailedPrecondition,
                "registration is not complete yet; try again shortly",
                details,
            ));
        }
        self.step(LoginStep::Verified);

        // Dual write without a shared transaction (ARCHITECTURE §4).
        let session = Session {
            session_id: Uuid::now_v7().to_string(),
            user_id: user.id.to_string(),
            roles: user.roles,
            expires_at: unix_now() + self.inner.config.session_ttl.as_secs(),
        };
        let refresh = RefreshToken::generate();
        let tokens = self.token_pair(&session, refresh.token.clone())?;
        let sessions = &self.inner.sessions;
        sessions
            .create_pending(
                &session,
                &refresh.digest,
                self.inner.config.pending_session_ttl,
            )
            .await
            .map_err(|err| store(&err))?;
        self.step(LoginStep::PendingWritten);

        let event = UserLoggedIn {
            event_id: session.session_id.clone(),
            occurred_at: Some(wharf_events::envelope::now()),
            user_id: session.user_id.clone(),
            session_id: session.session_id.clone(),
            client_address: address,
            user_agent,
        };
        if let Err(err) = self.inner.publisher.publish(&event, publish_deadline).await {
            tracing::warn!(error = %err, session_id = %session.session_id, "logged_in not acknowledged; rolling the session back");
            if let Err(rollback) = sessions.delete(&session.session_id).await {
                // The pending TTL removes it: a pending session is never honoured meanwhile.
                tracing::warn!(error = %rollback, session_id = %session.session_id, "rollback failed; the pending TTL will remove the session");
            }
            return Err(Status::unavailable(
                "sign-in is temporarily unavailable; retry shortly",
            ));
        }
        self.step(LoginStep::Published);

        match sessions.promote(&session, &refresh.digest).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(session_id = %session.session_id, "pending session expired before promotion");
                return Err(Status::unavailable(
                    "sign-in is temporarily unavailable; retry shortly",
                ));
            }
            Err(err) => return Err(store(&err)),
        }
        self.step(LoginStep::Promoted);
        tracing::info!(user_id = %session.user_id, session_id = %session.session_id, "signed in");
        Ok(Response::new(LoginResponse {
            tokens: Some(tokens),
            session_id: session.session_id,
            user_id: session.user_id,
        }))
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        let address = self.client_address(&request);
        let presented = request.into_inner().refresh_token;
        self.limit(
            "refresh_per_address",
            &format!("refresh:addr:{address}"),
            self.inner.config.limits.refresh_per_address,
        )
        .await?;
        if !refresh::looks_like_refresh_token(presented.trim()) {
            return Err(unauthenticated());
        }
        let next = RefreshToken::generate();
        let rotation = self
            .inner
            .sessions
            .rotate(&refresh::digest(presented.trim()), &next.digest)
            .await
            .map_err(|err| store(&err))?;
        match rotation {
            Rotation::Rotated(session) => Ok(Response::new(RefreshResponse {
                tokens: Some(self.token_pair(&session, next.token)?),
            })),
            Rotation::Unknown => Err(unauthenticated()),
            Rotation::Reused {
                session_id,
                user_id,
            } => {
                tracing::warn!(%session_id, %user_id, "a rotated refresh token was replayed; the whole family is revoked");
                Err(unauthenticated())
            }
        }
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let (identity, _) = self.authenticate(&request).await?;
        self.inner
            .sessions
            .revoke(&identity.session_id, &identity.user_id)
            .await
            .map_err(|err| store(&err))?;
        Ok(Response::new(LogoutResponse {}))
    }

    async fn logout_all(
        &self,
        request: Request<LogoutAllRequest>,
    ) -> Result<Response<LogoutAllResponse>, Status> {
        let (identity, _) = self.authenticate(&request).await?;
        let sessions_revoked = self
            .inner
            .sessions
            .revoke_all(&identity.user_id)
            .await
            .map_err(|err| store(&err))?;
        Ok(Response::new(LogoutAllResponse { sessions_revoked }))
    }

    async fn get_jwks(
        &self,
        _request: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        let keys = self
            .inner
            .tokens
            .keys()
            .jwks()
            .into_iter()
            .map(|(kid, x)| Jwk {
                kid,
                kty: "OKP".to_owned(),
                crv: "Ed25519".to_owned(),
                x,
                alg: "EdDSA".to_owned(),
                r#use: "sig".to_owned(),
            })
            .collect();
        Ok(Response::new(GetJwksResponse { keys }))
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let (identity, _) = self.authenticate(&request).await?;
        Ok(Response::new(WhoAmIResponse {
            user_id: identity.user_id,
            session_id: identity.session_id,
            roles: identity.roles,
            expires_at: Some(timestamp(identity.expires_at)),
        }))
    }
}
