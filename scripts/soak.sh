#!/usr/bin/env bash
# Bounded soak (loopback only): for the demo on Redis and on PostgreSQL, `GET /me` with a valid
# session cookie for SOAK_SECONDS (60) on SOAK_CONNECTIONS (64) connections; every response must
# be a 200 (a wrk Lua script counts statuses), and the demo's resident memory (VmRSS) is printed
# at the start, every 10 s, and at the end.
#
#   scripts/soak.sh                     # redis and postgres, 60 s each
#   SOAK_SECONDS=5 scripts/soak.sh      # a quick check
#   scripts/soak.sh redis               # one target
#
# Environment: SOAK_SECONDS (60), SOAK_CONNECTIONS (64), SOAK_THREADS (2), plus REDIS_URL,
# DATABASE_URL and SKIP_BUILD as in scripts/load.sh (whose helpers this script uses).
# Exits non-zero when any response is not a 200.

set -euo pipefail

# shellcheck source=scripts/load.sh
source "$(dirname "${BASH_SOURCE[0]}")/load.sh"

write_status_script() {
  cat >"$1" <<'LUA'
-- Counts responses by status across wrk's threads and prints them when the run is done.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      total[status] = (total[status] or 0) + n
    end
  end
  for status, n in pairs(total) do
    io.write(string.format("status %s %d\n", status, n))
  end
  local e = summary.errors
  io.write(string.format("socket_errors connect=%d read=%d write=%d timeout=%d\n",
    e.connect, e.read, e.write, e.timeout))
  io.write(string.format("p50_ms %.3f p99_ms %.3f max_ms %.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
LUA
}

soak_main() {
  local seconds="${SOAK_SECONDS:-60}" conns="${SOAK_CONNECTIONS:-64}" threads="${SOAK_THREADS:-2}"
  local -a targets=("$@")
  [[ ${#targets[@]} -gt 0 ]] || targets=(redis postgres)
  ensure_wrk
  build_demo
  setup_work
  local lua="$WORK/statuses.lua"
  write_status_script "$lua"
  local failed=0 target
  local -a summary=()
  for target in "${targets[@]}"; do
    case "$target" in
      redis | postgres) ;;
      *) die "soak targets are redis and postgres, not $target" ;;
    esac
    start_demo "$target"
    local header out="$WORK/$target/wrk.txt"
    header="$(credential_header "$target")"
    local rss_start rss_end
    rss_start="$(rss_kb "$DEMO_PID")"
    local -a samples=()
    log "soak $target: wrk -t$threads -c$conns -d${seconds}s GET /me, RSS at start ${rss_start} kB"
    timeout $((seconds + 60)) wrk -t"$threads" -c"$conns" -d"${seconds}s" --timeout 10s \
      -s "$lua" -H "$header" "http://$DEMO_ADDR/me" >"$out" &
    local wrk_pid=$! elapsed=0
    while kill -0 "$wrk_pid" 2>/dev/null; do
      sleep 1
      elapsed=$((elapsed + 1))
      if ((elapsed % 10 == 0)) && kill -0 "$wrk_pid" 2>/dev/null; then
        samples+=("${elapsed}s:$(rss_kb "$DEMO_PID")")
      fi
    done
    wait "$wrk_pid" || die "wrk failed on $target: $(cat "$out")"
    kill -0 "$DEMO_PID" 2>/dev/null || die "the demo ($target) died during the soak: $(cat "$WORK/$target/stderr")"
    rss_end="$(rss_kb "$DEMO_PID")"
    # After the run the credential must still work (the session survived the soak).
    local after
    after="$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H "$header" "http://$DEMO_ADDR/me")"

    local total ok unexpected
    total="$(awk '/^status / { n += $3 } END { print n + 0 }' "$out")"
    ok="$(awk '/^status 200 / { n += $3 } END { print n + 0 }' "$out")"
    unexpected="$(awk '/^status / && $2 != "200" { printf "%s%s=%s", sep, $2, $3; sep = "," }' "$out")"
    printf '\n== %s: %s s, %s connections\n' "$target" "$seconds" "$conns"
    printf 'requests %s (%s req/s), 200: %s, other statuses: %s\n' "$total" "$(wrk_rps "$out")" \
      "$ok" "${unexpected:-none}"
    grep -E '^(socket_errors|p50_ms)' "$out" || true
    printf 'RSS kB: start %s, %s, end %s (%+d kB)\n' "$rss_start" "${samples[*]:-no samples}" \
      "$rss_end" "$((rss_end - rss_start))"
    printf '/me after the soak: %s\n' "$after"
    if [[ -n "$unexpected" || "$total" == 0 || "$after" != 200 ]]; then
      failed=1
      printf 'FAIL: unexpected statuses on %s\n' "$target"
      grep -iE 'error|panic' "$WORK/$target/stderr" | head -n 20 || true
    fi
    summary+=("$(printf '%-9s %10s %12s %8s %14s %12s %10s' "$target" "$total" "$(wrk_rps "$out")" \
      "${unexpected:-0}" "$rss_start" "$rss_end" "$after")")
    stop_demo
    drop_pg_db
    drop_redis_keys
  done
  printf '\n%-9s %10s %12s %8s %14s %12s %10s\n' target requests requests/s non-200 \
    'RSS start kB' 'RSS end kB' '/me after'
  printf '%s\n' "${summary[@]}"
  return "$failed"
}

soak_main "$@"
