//! `wharf stack`: a thin front for `deploy/local/stack.sh`, which installs what is missing and
//! runs NATS, Redis and PostgreSQL on project ports in a local state folder.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum StackAction {
    /// Installs what is missing and starts the stack; a no-op when it already runs.
    Up,
    /// Stops what the stack started (never an external DATABASE_URL server).
    Down {
        /// Also delete the state folder.
        #[arg(long)]
        purge: bool,
    },
    /// One line per component; exit status 3 when something is down.
    Status,
    /// Prints the connection settings as shell exports.
    Env,
}

/// The script, from `WHARF_STACK_SCRIPT` or the checkout this binary was built from.
pub fn script() -> PathBuf {
    std::env::var_os("WHARF_STACK_SCRIPT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/stack.sh"),
        PathBuf::from,
    )
}

pub fn run(action: &StackAction) -> anyhow::Result<()> {
    let args: &[&str] = match action {
        StackAction::Up => &["up"],
        StackAction::Down { purge: false } => &["down"],
        StackAction::Down { purge: true } => &["down", "--purge"],
        StackAction::Status => &["status"],
        StackAction::Env => &["env"],
    };
    let script = script();
    let status = Command::new("bash")
        .arg(&script)
        .args(args)
        .status()
        .with_context(|| format!("failed to run {}", script.display()))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

/// Brings the stack up (quietly) and returns its connection settings, e.g. `DATABASE_URL`.
pub fn up_and_read_env() -> anyhow::Result<HashMap<String, String>> {
    let script = script();
    let up = Command::new("bash")
        .arg(&script)
        .arg("up")
        .output()
        .with_context(|| format!("failed to run {}", script.display()))?;
    if !up.status.success() {
        bail!(
            "`{} up` failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
    }
    let env = Command::new("bash").arg(&script).arg("env").output()?;
    if !env.status.success() {
        bail!(
            "`{} env` failed: {}",
            script.display(),
            String::from_utf8_lossy(&env.stderr)
        );
    }
    Ok(parse_exports(&String::from_utf8_lossy(&env.stdout)))
}

/// Parses `export KEY=VALUE` lines (values optionally quoted).
fn parse_exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(key, value)| {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            (key.trim().to_owned(), value.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_exports;

    #[test]
    fn exports_are_parsed() {
        let env = parse_exports(
            "# comment\nexport NATS_URL=nats://127.0.0.1:14222\nexport DATABASE_URL='postgres://wharf@127.0.0.1:15432/wharf'\n",
        );
        assert_eq!(env["NATS_URL"], "nats://127.0.0.1:14222");
        assert_eq!(
            env["DATABASE_URL"],
            "postgres://wharf@127.0.0.1:15432/wharf"
        );
    }
}
