//! Configuration layering: defaults → file → `WHARF_*` env → flags, and errors naming the key.

// `Jail::expect_with` fixes the closure's error type to figment's (large) `Error`.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::time::Duration;

use figment::Jail;
use wharf_runtime::PlatformConfig;
use wharf_runtime::config::{ConfigError, ConfigLoader, load};

fn loaded(file: Option<&str>, overrides: &[&str]) -> Result<PlatformConfig, ConfigError> {
    let overrides: Vec<String> = overrides.iter().map(|s| (*s).to_owned()).collect();
    load(file.map(Path::new), &overrides)
}

/// Each layer overrides the one below it, key by key.
#[test]
fn layers_override_in_order() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file(
            "wharf.toml",
            r#"
            [server]
            listen = "127.0.0.1:6000"
            request_timeout = "3s"
            max_concurrent_requests = 10
            "#,
        )?;
        jail.set_env("WHARF_SERVER__REQUEST_TIMEOUT", "750ms");
        jail.set_env("WHARF_SERVER__MAX_CONCURRENT_REQUESTS", "20");

        let config = loaded(Some("wharf.toml"), &["server.max_concurrent_requests=30"]).unwrap();
        assert_eq!(config.server.listen.port(), 6000, "file over default");
        assert_eq!(
            config.server.request_timeout,
            Duration::from_millis(750),
            "env over file"
        );
        assert_eq!(config.server.max_concurrent_requests, 30, "flag over env");
        assert_eq!(
            config.server.max_decoding_message_bytes,
            4 * 1024 * 1024,
            "default kept"
        );
        Ok(())
    });
}

/// A bad value names the key and where it came from.
#[test]
fn bad_env_value_names_the_key() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("WHARF_SERVER__REQUEST_TIMEOUT", "soon");
        let err = loaded(None, &[]).unwrap_err().to_string();
        assert!(err.contains("key `server.request_timeout`"), "{err}");
        assert!(err.contains("WHARF_SERVER__REQUEST_TIMEOUT"), "{err}");
        Ok(())
    });
}

/// A typo in a file is an error naming the unknown key, not a silently ignored setting.
#[test]
fn unknown_key_in_file_is_an_error() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("wharf.toml", "[server]\nlisten_adress = \"127.0.0.1:1\"\n")?;
        let err = loaded(Some("wharf.toml"), &[]).unwrap_err().to_string();
        assert!(err.contains("listen_adress"), "{err}");
        assert!(err.contains("wharf.toml"), "{err}");
        Ok(())
    });
}

/// A bad flag value names the key.
#[test]
fn bad_flag_value_names_the_key() {
    Jail::expect_with(|_jail| {
        let err = loaded(None, &["server.listen=not-an-address"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{err}");
        let malformed = loaded(None, &["no-equals-sign"]).unwrap_err();
        assert!(
            matches!(malformed, ConfigError::BadOverride { .. }),
            "{malformed}"
        );
        Ok(())
    });
}

/// A named config file that does not exist is an error, not an empty layer.
#[test]
fn missing_file_is_an_error() {
    Jail::expect_with(|_jail| {
        let err = loaded(Some("nope.toml"), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile { .. }), "{err}");
        Ok(())
    });
}

/// `WHARF_CONFIG` names the file when no flag does; variables without `__` (the stack
/// script's) are not configuration and do not trip the unknown-key check.
#[test]
fn config_file_from_env_and_non_config_vars_ignored() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("from-env.toml", "[redis]\nurl = \"redis://127.0.0.1:1\"\n")?;
        jail.set_env("WHARF_CONFIG", "from-env.toml");
        jail.set_env("WHARF_NATS_PORT", "24222");
        let config: PlatformConfig = ConfigLoader::defaults::<PlatformConfig>()
            .file(None)
            .unwrap()
            .env()
            .extract()
            .unwrap();
        assert_eq!(config.redis.url, "redis://127.0.0.1:1");
        Ok(())
    });
}

/// One environment serves every process: a section this process does not have (another
/// service's) is skipped, while an unknown key inside one of its sections is still refused.
#[test]
fn env_sections_of_other_processes_are_skipped_unknown_keys_are_not() {
    #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct NoRedis {
        nats: wharf_runtime::config::NatsConfig,
    }
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("WHARF_REDIS__URL", "redis://127.0.0.1:1");
        jail.set_env("WHARF_NATS__URL", "nats://127.0.0.1:2");
        let config: NoRedis = ConfigLoader::defaults::<NoRedis>().env().extract().unwrap();
        assert_eq!(config.nats.url, "nats://127.0.0.1:2");

        jail.set_env("WHARF_NATS__URLL", "typo");
        let err = ConfigLoader::defaults::<NoRedis>()
            .env()
            .extract::<NoRedis>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("urll"), "{err}");
        Ok(())
    });
}
