#!/usr/bin/env bash
# Counts the instructions per request of bench functions with callgrind: a figure that, unlike
# wall time, does not depend on what else the machine does (Redis rows repeat within a few
# instructions; SQL rows within about 2 %, their setup and background work amortising over
# a varying number of requests). It
# complements scripts/bench-report.sh: the ratios there are what the limits apply to, and this
# says how much work keycard adds to each floor, without the round trip's noise.
#
#   scripts/bench-instructions.sh                    # every row of both bench targets
#   scripts/bench-instructions.sh session/redis      # one row (the function and its baseline)
#
# Per request = instructions of the whole bench routine (criterion's `--profile-time` loop plus
# the one-off setup, which is the same for every function of a target) divided by the requests
# the routine built. valgrind emulates the CPU without SHA-NI and some vector extensions, so
# crypto costs more under it than on the hardware; both sides of a pair run the same crypto.
# Needs: cargo, valgrind (callgrind_annotate), python3; PostgreSQL and Redis for the session rows.

set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v valgrind >/dev/null || { echo "valgrind is required" >&2; exit 2; }

case "${1:-}" in -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

PAIRS=()
for alg in hs256 es256 eddsa rs256; do PAIRS+=("jwt cold_$alg floor_$alg"); done
for store in redis postgres sqlite; do PAIRS+=("session $store floor_$store"); done
# The in-process rows: a verified-token cache hit and a session cache hit against the bare router,
# and the in-memory store against tower-sessions.
for alg in hs256 es256 eddsa rs256; do PAIRS+=("jwt warm_$alg bare_router"); done
for store in redis postgres sqlite; do PAIRS+=("session ${store}_cached bare_router"); done
PAIRS+=("session memory tower_sessions_memory")
if [ $# -gt 0 ]; then
    wanted=()
    for pair in "${PAIRS[@]}"; do
        read -r group keycard _ <<<"$pair"
        for arg in "$@"; do [ "$arg" = "$group/$keycard" ] && wanted+=("$pair"); done
    done
    [ ${#wanted[@]} -gt 0 ] || { echo "no such pair: $* (see --help)" >&2; exit 2; }
    PAIRS=("${wanted[@]}")
fi

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

# The bench executable of target $1, built if needed.
binary() {
    cargo bench --all-features --bench "$1" --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and \
            m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1" | tail -n1
}

# Instructions per request of <group>/<function>.
count() {
    local group=$1 function=$2 exe
    exe="$(binary "$group")"
    [ -n "$exe" ] || { echo "missing"; return; }
    valgrind --tool=callgrind --callgrind-out-file="$OUT/$function.out" "$exe" --bench \
        --profile-time 3 "^$group/$function\$" >/dev/null 2>&1 || { echo "missing"; return; }
    python3 - "$OUT/$function.out" "$group" <<'PY'
import re, subprocess, sys

path, group = sys.argv[1], sys.argv[2]
names, callee, requests = {}, None, 0
with open(path) as f:
    for line in f:
        m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
        if m:
            kind, key, name = m.groups()
            if name:
                names[key] = name
            if kind == "cfn":
                callee = names.get(key)
            continue
        m = re.match(r"calls=(\d+)", line)
        # Every measured request is built by the bench's `request` function.
        if m and callee and callee.startswith(f"{group}::request"):
            requests += int(m.group(1))
out = subprocess.run(["callgrind_annotate", "--inclusive=yes", path],
                     capture_output=True, text=True).stdout
total = next((int(l.split()[0].replace(",", "")) for l in out.splitlines()
              if f"{group}::bench_app" in l), None)
print("missing" if not requests or total is None else round(total / requests))
PY
}

echo "| row | baseline | baseline (instructions / request) | keycard | keycard − baseline | ratio |"
echo "|---|---|---:|---:|---:|---:|"
for pair in "${PAIRS[@]}"; do
    read -r group keycard floor <<<"$pair"
    echo ">> callgrind $group/$floor and $group/$keycard" >&2
    f="$(count "$group" "$floor")"
    k="$(count "$group" "$keycard")"
    if [ "$f" = missing ] || [ "$k" = missing ]; then
        echo "| $group/$keycard | $floor | $f | $k | missing | missing |"
    else
        ratio="$(python3 -c "print(f'{$k / $f:.3f}')")"
        echo "| $group/$keycard | $floor | $f | $k | $((k - f)) | $ratio |"
    fi
done
