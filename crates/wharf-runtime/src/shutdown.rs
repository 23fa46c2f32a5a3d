//! Process shutdown on SIGINT or SIGTERM.
//!
//! The first signal starts a graceful shutdown (the caller flips health to NOT_SERVING, stops
//! accepting, and lets in-flight calls finish within a grace period). A second signal means the
//! operator has given up waiting: the process exits at once with status 130.

use tokio::signal::unix::{SignalKind, signal as unix_signal};

/// Exit status after a second signal, as a shell reports an interrupted command.
pub const FORCED_EXIT_CODE: i32 = 130;

/// Resolves on the first SIGINT or SIGTERM, and arms the second-signal exit.
pub async fn signal() {
    let mut interrupt =
        unix_signal(SignalKind::interrupt()).expect("failed to install the SIGINT handler");
    let mut terminate =
        unix_signal(SignalKind::terminate()).expect("failed to install the SIGTERM handler");
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    tracing::info!(
        signal = name,
        "shutdown requested; a second signal exits immediately"
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::warn!("second signal received; exiting without draining");
        std::process::exit(FORCED_EXIT_CODE);
    });
}
