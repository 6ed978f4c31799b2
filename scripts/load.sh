#!/usr/bin/env bash
# Bounded throughput run against the demo (loopback only): for each target, start the release
# demo on a free loopback port, log in with curl, run `wrk` with the credential and print one row.
#
#   scripts/load.sh                  # every target: bare jwt redis postgres
#   scripts/load.sh redis postgres   # some of them
#
# Targets: bare = `GET /` anonymous (keycard's layer, no credential, no store call);
#          jwt = `GET /me` with `Authorization: Bearer` (ephemeral Ed25519 key, SQLite families);
#          redis = `GET /me` with the session cookie (Redis at REDIS_URL, a key prefix of its own);
#          postgres = `GET /me` with the session cookie (a database created for the run on the
#          server at DATABASE_URL, dropped at the end).
# Environment: LOAD_SECONDS (10), LOAD_CONNECTIONS (64), LOAD_THREADS (2),
#   REDIS_URL (redis://127.0.0.1:6379), DATABASE_URL (postgres://postgres@127.0.0.1:5432/test),
#   SKIP_BUILD=1 to reuse target/release/examples/demo as it is.
# Needs: cargo, curl, wrk (installed from Debian packages when missing), redis-cli, psql.
#
# This file is also sourced by scripts/soak.sh for its helpers.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO_BIN="$ROOT/target/release/examples/demo"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
PG_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
ALICE='{"username":"alice","password":"wonderland"}'

WORK=""          # scratch directory of this run
DEMO_PID=""      # the running demo, if any
DEMO_ADDR=""     # its host:port
PG_DB=""         # the PostgreSQL database created for this run, if any
REDIS_PREFIX=""  # the Redis key prefix of this run, if any

log() { printf '%s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

ensure_wrk() {
  command -v wrk >/dev/null 2>&1 && return 0
  local sudo=""
  [[ "$(id -u)" == 0 ]] || sudo="sudo"
  log "wrk not found: installing it from Debian packages"
  $sudo apt-get install -y wrk >/dev/null 2>&1 || {
    $sudo apt-get update >/dev/null
    $sudo apt-get install -y wrk >/dev/null
  }
  command -v wrk >/dev/null 2>&1 || die "could not install wrk"
}

build_demo() {
  if [[ "${SKIP_BUILD:-0}" == 1 && -x "$DEMO_BIN" ]]; then
    return 0
  fi
  log "building the demo (release, all features)"
  (cd "$ROOT" && cargo build --release --example demo --all-features) >&2
}

setup_work() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/keycard-load.XXXXXX")"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

stop_demo() {
  if [[ -n "$DEMO_PID" ]]; then
    kill -TERM "$DEMO_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
      kill -0 "$DEMO_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$DEMO_PID" 2>/dev/null || true
    wait "$DEMO_PID" 2>/dev/null || true
    DEMO_PID=""
    DEMO_ADDR=""
  fi
}

# The server part of a PostgreSQL URL and its query string: postgres://u@h:p/db?x → (postgres://u@h:p, ?x).
pg_server() {
  local url="${PG_URL%%\?*}"
  printf '%s' "${url%/*}"
}
pg_query() {
  [[ "$PG_URL" == *\?* ]] && printf '?%s' "${PG_URL#*\?}" || true
}

drop_pg_db() {
  if [[ -n "$PG_DB" ]]; then
    psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
    PG_DB=""
  fi
}

drop_redis_keys() {
  if [[ -n "$REDIS_PREFIX" ]]; then
    redis-cli -u "$REDIS_URL" --scan --pattern "*$REDIS_PREFIX*" 2>/dev/null |
      xargs -r -n 100 redis-cli -u "$REDIS_URL" DEL >/dev/null 2>&1 || true
    REDIS_PREFIX=""
  fi
}

cleanup() {
  stop_demo
  drop_pg_db
  drop_redis_keys
  [[ -n "$WORK" ]] && rm -rf "$WORK"
  return 0
}

# start_demo <target>: starts the demo for a target on a free loopback port (the demo binds
# 127.0.0.1:0 and prints the address it got), sets DEMO_PID and DEMO_ADDR.
start_demo() {
  local target="$1" dir="$WORK/$1"
  mkdir -p "$dir"
  local -a vars=(KEYCARD_DEMO_ADDR=127.0.0.1:0 RUST_LOG=warn)
  case "$target" in
    bare | jwt)
      # SQLite in the scratch directory: the demo's default file, in its working directory.
      [[ "$target" == jwt ]] && vars+=(KEYCARD_STRATEGY=jwt) || vars+=(KEYCARD_STRATEGY=database)
      ;;
    redis)
      REDIS_PREFIX="kc-load-$$-$RANDOM"
      printf 'strategy = "redis"\n[redis]\nkey_prefix = "%s"\n' "$REDIS_PREFIX" >"$dir/keycard.toml"
      vars+=(KEYCARD_STRATEGY=redis "REDIS_URL=$REDIS_URL" "KEYCARD_CONFIG=$dir/keycard.toml")
      ;;
    postgres)
      PG_DB="keycard_load_$$_$RANDOM"
      psql "$PG_URL" -qc "CREATE DATABASE $PG_DB" >/dev/null ||
        die "cannot create a database on $(pg_server) (DATABASE_URL)"
      vars+=(KEYCARD_STRATEGY=database "DATABASE_URL=$(pg_server)/$PG_DB$(pg_query)")
      ;;
    *) die "unknown target $target (bare, jwt, redis, postgres)" ;;
  esac
  (
    cd "$dir"
    exec env -u KEYCARD_CONFIG -u KEYCARD_STRATEGY -u DATABASE_URL -u REDIS_URL \
      -u REDIS_CLUSTER_URLS "${vars[@]}" "$DEMO_BIN" >"$dir/stdout" 2>"$dir/stderr" </dev/null
  ) &
  DEMO_PID=$!
  local i line=""
  for i in $(seq 1 300); do
    line="$(head -n1 "$dir/stdout" 2>/dev/null || true)"
    [[ "$line" == *http://* ]] && break
    kill -0 "$DEMO_PID" 2>/dev/null || die "demo ($target) exited: $(cat "$dir/stderr")"
    sleep 0.1
  done
  [[ "$line" == *http://* ]] || die "demo ($target) did not start within 30 s: $(cat "$dir/stderr")"
  DEMO_ADDR="${line#*http://}"
  DEMO_ADDR="${DEMO_ADDR%% *}"
  case "$DEMO_ADDR" in
    127.0.0.1:*) ;;
    *) die "demo not on loopback: $DEMO_ADDR" ;;
  esac
  log "demo ($target) pid $DEMO_PID on $DEMO_ADDR: ${line#*(}"
}

# credential_header <target>: logs alice in with curl and prints the header wrk must send
# (empty for bare).
credential_header() {
  local target="$1" dir="$WORK/$1"
  [[ "$target" == bare ]] && return 0
  local code
  code="$(curl -sS --max-time 30 -o "$dir/login.json" -D "$dir/login.head" -w '%{http_code}' \
    -H 'Content-Type: application/json' --data "$ALICE" "http://$DEMO_ADDR/login")"
  [[ "$code" == 200 ]] || die "login on $target answered $code: $(cat "$dir/login.json")"
  local header
  if [[ "$target" == jwt ]]; then
    local token
    token="$(grep -o '"access_token":"[^"]*"' "$dir/login.json" | head -n1 | cut -d'"' -f4)"
    [[ -n "$token" ]] || die "no access_token in $(cat "$dir/login.json")"
    header="Authorization: Bearer $token"
  else
    local cookie
    cookie="$(tr -d '\r' <"$dir/login.head" | grep -i '^set-cookie: __Host-keycard=' | head -n1 |
      sed -e 's/^[^:]*: *//' -e 's/;.*//')"
    [[ -n "$cookie" ]] || die "no session cookie in $(cat "$dir/login.head")"
    header="Cookie: $cookie"
  fi
  # Check the credential once before loading with it.
  code="$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -H "$header" "http://$DEMO_ADDR/me")"
  [[ "$code" == 200 ]] || die "/me with the fresh credential answered $code on $target"
  printf '%s' "$header"
}

target_path() {
  [[ "$1" == bare ]] && printf '/' || printf '/me'
}

# rss_kb <pid>: resident set size in kB.
rss_kb() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# wrk_field <file> <what>: requests/s, non-2xx count or socket errors from wrk's report.
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
wrk_non2xx() { awk '/Non-2xx or 3xx responses:/ { n = $NF } END { print n + 0 }' "$1"; }
wrk_socket_errors() {
  # "Socket errors: connect 0, read 0, write 0, timeout 0"
  awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10, "(c" $4 "/r" $6 "/w" $8 "/t" $10 ")"; found = 1 }
       END { if (!found) print "0" }' "$1"
}

load_main() {
  local seconds="${LOAD_SECONDS:-10}" conns="${LOAD_CONNECTIONS:-64}" threads="${LOAD_THREADS:-2}"
  local -a targets=("$@")
  [[ ${#targets[@]} -gt 0 ]] || targets=(bare jwt redis postgres)
  ensure_wrk
  build_demo
  setup_work
  local -a rows=()
  local target
  for target in "${targets[@]}"; do
    start_demo "$target"
    local header path out="$WORK/$target/wrk.txt"
    header="$(credential_header "$target")"
    path="$(target_path "$target")"
    local -a hdr=()
    [[ -n "$header" ]] && hdr=(-H "$header")
    log "wrk -t$threads -c$conns -d${seconds}s $path ($target)"
    timeout $((seconds + 60)) wrk -t"$threads" -c"$conns" -d"${seconds}s" --timeout 10s \
      "${hdr[@]}" "http://$DEMO_ADDR$path" >"$out"
    rows+=("$(printf '%-10s %12s %10s %s' "$target" "$(wrk_rps "$out")" "$(wrk_non2xx "$out")" \
      "$(wrk_socket_errors "$out")")")
    [[ "${LOAD_VERBOSE:-0}" == 1 ]] && cat "$out" >&2
    stop_demo
    drop_pg_db
    drop_redis_keys
  done
  printf '\nwrk -t%s -c%s -d%ss, loopback, release demo (%s)\n' "$threads" "$conns" "$seconds" \
    "$(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
  printf '%-10s %12s %10s %s\n' target requests/s non-2xx socket-errors
  printf '%s\n' "${rows[@]}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  load_main "$@"
fi
