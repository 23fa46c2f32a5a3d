//! A database of its own for one test, on the stack's PostgreSQL (or `DATABASE_URL`).

use sqlx::Connection;
use wharf_runtime::db::DatabaseConfig;

#[derive(Debug)]
pub struct FreshDatabase {
    pub name: String,
    pub config: DatabaseConfig,
    admin_url: String,
}

impl FreshDatabase {
    /// Creates `wharf_test_<unique>` on the server at `DATABASE_URL` (default: the stack's).
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DatabaseConfig::default().url);
        Self::create_on(&admin_url).await
    }

    /// Creates a database on the server at `admin_url`.
    pub async fn create_on(admin_url: &str) -> anyhow::Result<Self> {
        let name = crate::unique_name("wharf_test_");
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .map_err(|err| {
                anyhow::anyhow!(
                    "PostgreSQL must be reachable at {admin_url} (run `wharf stack up`): {err}"
                )
            })?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        let config = DatabaseConfig {
            url: format!("{base}/{name}"),
            max_connections: 32,
            ..DatabaseConfig::default()
        };
        Ok(Self {
            name,
            config,
            admin_url: admin_url.to_owned(),
        })
    }

    /// Drops the database (best effort; the name is unique, so a leftover harms nothing).
    pub async fn drop_now(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut admin)
                .await;
        }
    }
}
