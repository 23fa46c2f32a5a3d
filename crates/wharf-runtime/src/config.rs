//! Typed, layered configuration.
//!
//! Layers, lowest to highest precedence:
//! 1. the `Default` of the config type (every value has a sensible default for local use);
//! 2. an optional TOML file (`--config FILE` or `WHARF_CONFIG`);
//! 3. environment variables `WHARF_<SECTION>__<KEY>` (double underscore between levels, e.g.
//!    `WHARF_SERVER__LISTEN=0.0.0.0:50051`); variables without `__` are not configuration
//!    (the stack scripts use names like `WHARF_NATS_PORT`) and are ignored;
//! 4. explicit overrides from command-line flags (`--set server.listen=...`).
//!
//! Unknown keys are errors, and every error names the key and the layer it came from, e.g.
//! ``key `server.request_timeout`: invalid value string "soon", expected a duration (from
//! environment variable WHARF_SERVER__REQUEST_TIMEOUT)``.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::db::DatabaseConfig;
use crate::server::ServerConfig;
use crate::telemetry::TelemetryConfig;

/// Environment variable naming a config file when no `--config` flag is given.
pub const CONFIG_FILE_ENV: &str = "WHARF_CONFIG";
const ENV_PREFIX: &str = "WHARF_";

/// Why configuration could not be loaded. The message names every bad key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} does not exist")]
    MissingFile { path: PathBuf },
    // Not a `#[source]`: the message already lists every underlying error, and a report that
    // walks the chain would print them twice.
    #[error("invalid configuration: {}", describe(.0))]
    Invalid(Box<figment::Error>),
    #[error("invalid override {raw:?}: expected KEY=VALUE, e.g. server.listen=127.0.0.1:50051")]
    BadOverride { raw: String },
}

/// One line per problem: the key as written in a file, what is wrong, and which layer said it
/// (for the environment, the exact variable name to fix).
fn describe(err: &figment::Error) -> String {
    err.clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_ascii_lowercase();
            let origin = match &e.metadata {
                Some(meta) if meta.name.contains("environment") => {
                    format!(
                        "environment variable {ENV_PREFIX}{}",
                        e.path.join("__").to_ascii_uppercase()
                    )
                }
                Some(meta) => match &meta.source {
                    Some(source) => format!("{} {source}", meta.name),
                    None => meta.name.to_string(),
                },
                None => "the defaults".to_owned(),
            };
            if key.is_empty() {
                format!("{} (from {origin})", e.kind)
            } else {
                format!("key `{key}`: {} (from {origin})", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Builds a [`Figment`] layer by layer; see the module docs for the order.
#[derive(Debug, Clone)]
pub struct ConfigLoader {
    figment: Figment,
    /// The top-level sections `T` has (lowercase), for filtering the environment.
    sections: Vec<String>,
}

impl ConfigLoader {
    /// Starts from the defaults of `T`.
    pub fn defaults<T: Serialize + Default>() -> Self {
        let figment = Figment::from(Serialized::defaults(T::default()));
        let sections = figment
            .extract::<figment::value::Dict>()
            .map(|dict| dict.into_keys().map(|key| key.to_lowercase()).collect())
            .unwrap_or_default();
        Self { figment, sections }
    }

    /// Merges a TOML file. `None` falls back to `WHARF_CONFIG`, and to no file at all.
    pub fn file(mut self, path: Option<&Path>) -> Result<Self, ConfigError> {
        let from_env = std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from);
        let Some(path) = path.map(Path::to_owned).or(from_env) else {
            return Ok(self);
        };
        if !path.is_file() {
            return Err(ConfigError::MissingFile { path });
        }
        self.figment = self.figment.merge(Toml::file_exact(path));
        Ok(self)
    }

    /// Merges `WHARF_<SECTION>__<KEY>` environment variables of the sections this process
    /// has. One environment serves many processes (`wharf stack env` exports NATS, Redis and
    /// PostgreSQL for all of them), so a section another process uses is not an error here;
    /// an unknown key inside a known section still is.
    pub fn env(mut self) -> Self {
        let sections = self.sections.clone();
        self.figment = self.figment.merge(
            Env::prefixed(ENV_PREFIX)
                .filter(move |key| {
                    key.as_str().split_once("__").is_some_and(|(section, _)| {
                        sections
                            .iter()
                            .any(|known| known.eq_ignore_ascii_case(section))
                    })
                })
                .split("__"),
        );
        self
    }

    /// Merges one `KEY=VALUE` override, the value parsed like an environment variable
    /// (numbers, booleans, strings, arrays).
    pub fn set(mut self, raw: &str) -> Result<Self, ConfigError> {
        let (key, value) = raw
            .split_once('=')
            .filter(|(key, _)| !key.trim().is_empty())
            .ok_or_else(|| ConfigError::BadOverride {
                raw: raw.to_owned(),
            })?;
        let value: figment::value::Value = value
            .parse()
            .unwrap_or_else(|_| figment::value::Value::from(value.to_owned()));
        self.figment = self.figment.merge(Override {
            key: key.trim().to_owned(),
            value,
        });
        Ok(self)
    }

    /// Merges every `KEY=VALUE` override in order.
    pub fn set_all<'a>(
        self,
        overrides: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ConfigError> {
        overrides.into_iter().try_fold(self, Self::set)
    }

    /// Deserializes the merged layers into `T`.
    pub fn extract<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ConfigError> {
        self.figment
            .extract()
            .map_err(|err| ConfigError::Invalid(Box::new(err)))
    }
}

/// One `--set KEY=VALUE`, named as such in error messages.
struct Override {
    key: String,
    value: figment::value::Value,
}

impl figment::Provider for Override {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("--set {}", self.key))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::default(&self.key, &self.value).data()
    }
}

/// Loads `T` from every layer: defaults, `file` (or `WHARF_CONFIG`), env, then `overrides`.
pub fn load<T>(file: Option<&Path>, overrides: &[String]) -> Result<T, ConfigError>
where
    T: Serialize + Default + for<'de> Deserialize<'de>,
{
    ConfigLoader::defaults::<T>()
        .file(file)?
        .env()
        .set_all(overrides.iter().map(String::as_str))?
        .extract()
}

/// The sections every Wharf process understands. Services embed it with `#[serde(flatten)]`
/// or reuse its sections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlatformConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub redis: RedisConfig,
}

/// Where NATS JetStream is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl NatsConfig {
    /// A client that retries the first connection and reconnects forever, as every
    /// long-running process needs: NATS going away is a fault to ride out, not a reason to
    /// exit.
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        async_nats::ConnectOptions::new()
            .connection_timeout(self.connect_timeout)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connect(&self.url)
            .await
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:14222".to_owned(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    /// Prefix of every key Wharf writes; lets several deployments (or tests) share a server.
    pub key_prefix: String,
    /// A command without a reply within this fails (the caller answers `UNAVAILABLE`).
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:16379".to_owned(),
            key_prefix: "wharf:".to_owned(),
            response_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

impl RedisConfig {
    /// A connection that is made on first use and re-made after every failure, so a service
    /// starts while Redis is down and recovers by itself once it is back; meanwhile every
    /// command fails within the timeouts instead of hanging.
    pub fn connect_lazy(&self) -> Result<redis::aio::ConnectionManager, redis::RedisError> {
        let client = redis::Client::open(self.url.as_str())?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.connect_timeout))
            .set_number_of_retries(1)
            .set_max_delay(self.connect_timeout);
        redis::aio::ConnectionManager::new_lazy_with_config(client, manager)
    }
}
