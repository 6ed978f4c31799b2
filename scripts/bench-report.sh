#!/usr/bin/env bash
# Runs the criterion benches briefly and prints every performance ratio keycard promises, with its
# limit, as a Markdown table (see README, "Performance").
#
#   scripts/bench-report.sh                     # run benches/jwt.rs and benches/session.rs, report
#   scripts/bench-report.sh --rounds 9          # more paired rounds (default 5)
#   scripts/bench-report.sh --no-run            # report from the results already on disk
#   scripts/bench-report.sh -- --measurement-time 10   # other criterion arguments
#
# Ratios are of criterion medians (target/criterion/<group>/<function>/new/estimates.json) from
# this run only: a result older than the run (a bench that failed or was skipped) is reported as
# `missing`, never silently reused. The session bench needs PostgreSQL and Redis
# (DATABASE_URL, REDIS_URL; defaults 127.0.0.1); without them its rows are `missing` and the JWT
# rows are still reported.
#
# The rows against a floor (`cold_<alg> / floor_<alg>`, `<store> / floor_<store>`) have tight
# limits (3 to 10 %), and on a shared VM a floor's own time drifts by more than that over
# seconds (a loopback round trip by 10 to 40 %); even a sub-microsecond row now and then lands
# on a slow stretch in one pass. So besides the full pass, every ratio's pair is measured in
# paired rounds: baseline and keycard one after the other, in alternating order (baseline first
# in odd rounds, keycard first in even ones), each a criterion run of its own. Each row reports
# the median of its per-round ratios (full pass included) and their range; every round's pair is
# printed below the tables. With the default 5 rounds the whole report takes about 30 minutes.
#
# Exit status: 0 when every ratio holds, 1 when one fails or is missing, 2 on usage errors.
# Needs: cargo, python3.

set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUN=1
ROUNDS=5
CRITERION_ARGS=(--warm-up-time 1 --measurement-time 3)
while [ $# -gt 0 ]; do
    case "$1" in
        --no-run) RUN=0; shift ;;
        --rounds)
            [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "--rounds needs a number" >&2; exit 2; }
            ROUNDS="$2"; shift 2 ;;
        --) shift; CRITERION_ARGS=("$@"); break ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 2; }

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null)"
TARGET_DIR="${TARGET_DIR:-$ROOT/target}"
CRITERION_DIR="${CRITERION_HOME:-$TARGET_DIR/criterion}"

# The pairs measured in rounds, one per ratio: "<group> <keycard function> <baseline function>".
PAIRS=()
for alg in hs256 es256 eddsa rs256; do PAIRS+=("jwt cold_$alg floor_$alg"); done
for alg in hs256 es256 eddsa rs256; do PAIRS+=("jwt cold_$alg jsonwebtoken_$alg"); done
for alg in hs256 es256 eddsa rs256; do PAIRS+=("jwt warm_$alg bare_router"); done
for store in redis postgres sqlite; do PAIRS+=("session $store floor_$store"); done
for store in redis postgres sqlite; do PAIRS+=("session ${store}_cached bare_router"); done
PAIRS+=("session memory tower_sessions_memory")
STARTED=0
STATUS_NOTES=()
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
ROUNDS_FILE="$(mktemp)"
trap 'rm -f "$ROUNDS_FILE"' EXIT

# Prints the median (ns) of <group>/<function> from the last criterion run of it.
last_median() {
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["median"]["point_estimate"])' \
        "$CRITERION_DIR/$1/$2/new/estimates.json" 2>/dev/null
}

# Records the pairs of the full pass of <group> as round 0.
record_pass() {
    local pair group keycard floor k f
    for pair in "${PAIRS[@]}"; do
        read -r group keycard floor <<<"$pair"
        [ "$group" = "$1" ] || continue
        f="$(last_median "$group" "$floor")" && k="$(last_median "$group" "$keycard")" &&
            echo "0 $group $keycard $floor $f $k" >>"$ROUNDS_FILE"
    done
}

if [ "$RUN" = 1 ]; then
    STARTED="$(date +%s)"
    # One target at a time, so that a missing database only loses the session rows.
    for bench in jwt session; do
        echo ">> cargo bench --all-features --bench $bench -- ${CRITERION_ARGS[*]}" >&2
        if ! cargo bench --all-features --bench "$bench" -- "${CRITERION_ARGS[@]}" >&2; then
            STATUS_NOTES+=("\`cargo bench --bench $bench\` failed; see its output above.")
        else
            record_pass "$bench"
        fi
    done
    for round in $(seq 1 "$ROUNDS"); do
        for pair in "${PAIRS[@]}"; do
            read -r group keycard floor <<<"$pair"
            if [ $((round % 2)) = 1 ]; then order=("$floor" "$keycard"); else order=("$keycard" "$floor"); fi
            declare -A got=()
            for function in "${order[@]}"; do
                echo ">> round $round/$ROUNDS: $group/$function" >&2
                if cargo bench --all-features --bench "$group" -- "${CRITERION_ARGS[@]}" \
                    "^$group/$function\$" >/dev/null 2>&1; then
                    got[$function]="$(last_median "$group" "$function")"
                fi
            done
            if [ -n "${got[$floor]:-}" ] && [ -n "${got[$keycard]:-}" ]; then
                echo "$round $group $keycard $floor ${got[$floor]} ${got[$keycard]}" >>"$ROUNDS_FILE"
            else
                STATUS_NOTES+=("round $round of \`$group/$keycard\` failed.")
            fi
            unset got
        done
    done
else
    record_pass jwt
    record_pass session
fi

{
    echo "Machine: $(nproc) CPU(s), $(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//'),"\
        "load average $LOAD_START before, $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) after;"\
        "$(date -u '+%Y-%m-%d %H:%M UTC');"\
        "$(rustc --version 2>/dev/null); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "Criterion: ${CRITERION_ARGS[*]}"
    echo
}

for note in "${STATUS_NOTES[@]+"${STATUS_NOTES[@]}"}"; do
    echo "Note: $note"
    echo
done

CRITERION_DIR="$CRITERION_DIR" STARTED="$STARTED" ROUNDS_FILE="$ROUNDS_FILE" python3 - <<'PY'
import json, os, statistics, sys

root = os.environ["CRITERION_DIR"]
started = int(os.environ["STARTED"])

# (group, keycard function, floor function) -> [(round, floor_ns, keycard_ns)]
rounds = {}
with open(os.environ["ROUNDS_FILE"]) as f:
    for line in f:
        r, group, keycard, floor, floor_ns, keycard_ns = line.split()
        rounds.setdefault((group, keycard, floor), []).append(
            (int(r), float(floor_ns), float(keycard_ns)))

def median(group, function):
    """The median point estimate (ns) of group/function from this run, or None."""
    path = os.path.join(root, group, function, "new", "estimates.json")
    try:
        if os.path.getmtime(path) < started:
            return None
        with open(path) as f:
            return float(json.load(f)["median"]["point_estimate"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

# The paired functions' files hold their last round by now: every other use takes the
# full pass's values.
full_pass = {}
for (group, keycard, floor), pairs in rounds.items():
    for r, f, k in pairs:
        if r == 0:
            full_pass[(group, floor)], full_pass[(group, keycard)] = f, k

def full(group, function):
    """The full pass's median of group/function."""
    value = full_pass.get((group, function))
    return value if value is not None else median(group, function)

def fmt_ns(ns):
    if ns is None:
        return "missing"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"

ALGS = ["hs256", "es256", "eddsa", "rs256"]
FLOOR_LIMIT = {"hs256": 1.6, "es256": 1.03, "eddsa": 1.03, "rs256": 1.08}
STORES = ["redis", "postgres", "sqlite"]

# (label, group, numerator, denominator, limit, strict): pass when num/den <= limit
# (num/den < limit when strict).
rows = []
for alg in ALGS:
    rows.append((f"cold_{alg} / floor_{alg}", "jwt", f"cold_{alg}", f"floor_{alg}",
                 FLOOR_LIMIT[alg], False))
for alg in ALGS:
    rows.append((f"cold_{alg} / jsonwebtoken_{alg}", "jwt", f"cold_{alg}",
                 f"jsonwebtoken_{alg}", 1.0, True))
for alg in ALGS:
    rows.append((f"warm_{alg} / bare_router", "jwt", f"warm_{alg}", "bare_router", 2.0, False))
for store in STORES:
    rows.append((f"{store} / floor_{store}", "session", store, f"floor_{store}", 1.10, False))
for store in STORES:
    rows.append((f"{store}_cached / bare_router", "session", f"{store}_cached", "bare_router",
                 2.0, False))
rows.append(("memory / tower_sessions_memory", "session", "memory", "tower_sessions_memory",
             1.0, False))

failed = 0
print("| ratio | value | limit | result |")
print("|---|---:|---:|---|")
for label, group, num, den, limit, strict in rows:
    op = "<" if strict else "≤"
    if (group, num, den) in rounds:
        ratios = [k / f for _, f, k in rounds[(group, num, den)]]
        ratio = statistics.median(ratios)
        ok = ratio < limit if strict else ratio <= limit
        failed += not ok
        spread = f" (median of {len(ratios)} paired rounds, {min(ratios):.3f} to {max(ratios):.3f})"
        print(f"| {group}: {label}{spread} | {ratio:.3f} | {op} {limit:.2f} | "
              f"{'pass' if ok else 'FAIL'} |")
        continue
    a, b = full(group, num), full(group, den)
    if a is None or b is None:
        missing = " and ".join(f"`{group}/{f}`" for f, v in ((num, a), (den, b)) if v is None)
        print(f"| {group}: {label} | missing | {op} {limit:.2f} | missing ({missing}) |")
        failed += 1
        continue
    ratio = a / b
    ok = ratio < limit if strict else ratio <= limit
    failed += not ok
    print(f"| {group}: {label} | {ratio:.3f} | {op} {limit:.2f} | {'pass' if ok else 'FAIL'} |")

print()
print("| function | median |")
print("|---|---:|")
functions = {"jwt": ["bare_router"] + [f"{k}_{alg}" for alg in ALGS
                                       for k in ("floor", "jsonwebtoken", "cold", "warm")],
             "session": ["bare_router", "memory", "tower_sessions_memory"]
                        + [f for s in STORES for f in (f"floor_{s}", s, f"{s}_cached")]}
for group, names in functions.items():
    for name in names:
        print(f"| {group}/{name} | {fmt_ns(full(group, name))} |")

if rounds:
    print()
    print("Paired rounds (round 0 is the full pass; odd rounds measure the baseline first):")
    print()
    print("| pair | round | baseline | keycard | ratio |")
    print("|---|---:|---:|---:|---:|")
    for (group, keycard, base), pairs in rounds.items():
        for r, f, k in pairs:
            print(f"| {group}/{keycard} / {base} | {r} | {fmt_ns(f)} | {fmt_ns(k)} | "
                  f"{k / f:.3f} |")

sys.exit(1 if failed else 0)
PY
