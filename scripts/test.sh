#!/usr/bin/env bash
# The test command (README: "Run the tests").
#
# Brings the local stack up (installing what is missing), then runs every check CI runs:
# formatting, clippy with warnings as errors, buf lint of the contracts, and the whole test
# suite against the real NATS, Redis and PostgreSQL of the stack.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "local stack"
bash deploy/local/stack.sh up
eval "$(bash deploy/local/stack.sh env)"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "buf lint"
buf="$(bash deploy/local/tools.sh buf)"
"$buf" lint

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
else
    echo "cargo-nextest not installed; using cargo test" >&2
    cargo test --workspace --locked --no-fail-fast
fi
