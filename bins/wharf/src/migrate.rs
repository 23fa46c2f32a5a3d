//! `wharf migrate`: the separate migration step. Services never migrate at start-up; they
//! refuse to start on a schema that is behind and name this command.

use crate::config::WharfConfig;
use anyhow::Context;
use wharf_runtime::db::{self, DatabaseConfig};

use crate::ConfigArgs;
use crate::services;

pub async fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    let config: WharfConfig = wharf_runtime::config::load(args.config.as_deref(), &args.overrides)?;
    migrate_all(&config.database).await
}

/// Applies every registered schema's migrations, printing one line per schema.
pub async fn migrate_all(database: &DatabaseConfig) -> anyhow::Result<()> {
    let schemas = services::schemas();
    if schemas.is_empty() {
        println!("migrate: no service schemas registered yet; nothing to do");
        return Ok(());
    }
    for schema in &schemas {
        let report = db::migrate(database, schema)
            .await
            .with_context(|| format!("failed to migrate {}", schema.service))?;
        println!(
            "migrate: {:<10} schema {:<10} applied {:?} ({} migrations known)",
            report.service, report.schema, report.applied, report.total
        );
    }
    Ok(())
}
