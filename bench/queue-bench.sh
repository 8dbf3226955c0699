#!/usr/bin/env bash
# flash against flash --queue (issue #7): the same on-sale run straight at usherd and through
# its virtual queue, on the same server, in the same session, one run at a time.
#
#   bench/queue-bench.sh
#   BENCH_CONNECTIONS="1000 10000" BENCH_DURATION=20 BENCH_ROUNDS=2 bench/queue-bench.sh
#
# It starts the release usherd (temporary data directory, one shard per CPU, WAL fsync on,
# --rate-limit off, --password-cost min so that registering one account per connection is
# quick: only setup registers), then for each connection count runs BENCH_ROUNDS rounds of
# `usher-bench --scenario flash` and `usher-bench --scenario flash --queue`, alternating, with
# the same connections, seats (5,000), accounts (one per connection) and duration. Each run
# creates its own showtime. usherd's CPU time is read from /proc over the run's --duration
# (from usher-bench's "flash: N connections" line on). Prints one row per run, the queue's
# figures and the ratios queue / plain of each round; writes every run's JSON to
# bench/results/queue-<date>-<time>.json (or BENCH_RESULTS). bench/README.md has the figures.
#
# Environment:
#   BENCH_CONNECTIONS="C.."  connection counts (default "1000 10000")
#   BENCH_DURATION=S         seconds per run (default 20; the queue starts 2-3 s into it)
#   BENCH_ROUNDS=N           plain/queue pairs per connection count (default 2)
#   BENCH_QUEUE_RATE=N       --queue-rate (default 500)
#   BENCH_RESULTS=FILE       where the JSON goes
#   BUILD_DIR=DIR            release build tree (default build-release)
#
# Exit status: 0 when every run finished with a clean audit (and, queued, no 403
# admission-required, some admissions and no FIFO violation); 1 otherwise.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build-release}
usherd=$build/net/usherd
bench=$build/bench/usher-bench
duration=${BENCH_DURATION:-20}
rounds=${BENCH_ROUNDS:-2}
rate=${BENCH_QUEUE_RATE:-500}
read -r -a conns_list <<<"${BENCH_CONNECTIONS:-1000 10000}"
results=${BENCH_RESULTS:-$root/bench/results/queue-$(date +%Y%m%d-%H%M%S).json}

say() { printf 'queue-bench: %s\n' "$*"; }
die() {
    printf 'queue-bench: %s\n' "$*" >&2
    exit 1
}

command -v jq >/dev/null || die "jq not found: install the Debian package jq (tools/install-deps --bench)"
[ -x "$usherd" ] || die "$usherd not found: build the release tree first (make)"
[ -x "$bench" ] || die "$bench not found: build the release tree first (make)"
[[ $duration =~ ^[1-9][0-9]*$ ]] || die "BENCH_DURATION must be a whole number of seconds"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a whole number"
[[ $rate =~ ^[1-9][0-9]*$ ]] || die "BENCH_QUEUE_RATE must be a whole number"
hard=$(ulimit -Hn)
[ "$hard" != unlimited ] || hard=1048576
ulimit -Sn "$hard" || die "cannot raise the open-file soft limit to $hard"
for c in "${conns_list[@]}"; do
    [[ $c =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONNECTIONS: '$c' is not a connection count"
    [ "$hard" -ge $((c + 1024)) ] || die "$c connections need an open-file limit of $((c + 1024))"
done
while read -r var; do unset "$var"; done < <(compgen -e | grep '^USHER_' || true)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/usher-queue-bench.XXXXXX")
usherd_pid=""
bench_pid=""
cleanup() {
    local status=$? i
    trap - EXIT INT TERM
    [ -z "$bench_pid" ] || kill -TERM "$bench_pid" 2>/dev/null || true
    if [ -n "$usherd_pid" ] && kill -0 "$usherd_pid" 2>/dev/null; then
        kill -TERM "$usherd_pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do kill -0 "$usherd_pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$usherd_pid" 2>/dev/null && kill -KILL "$usherd_pid" 2>/dev/null
        wait "$usherd_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

shards=$(nproc)
[ "$shards" -le 32 ] || shards=32
admin_email="queue-bench@usher.local"
admin_password=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
USHER_ADMIN_PASSWORD=$admin_password "$usherd" --create-admin "$admin_email" \
    --data-dir "$tmp/data" --shards "$shards" --password-cost min >"$tmp/admin.log" 2>&1 ||
    { cat "$tmp/admin.log" >&2; die "usherd --create-admin failed"; }
: >"$tmp/usherd.out"
"$usherd" --listen 127.0.0.1:0 --data-dir "$tmp/data" --shards "$shards" --rate-limit off \
    --password-cost min >"$tmp/usherd.out" 2>"$tmp/usherd.err" </dev/null &
usherd_pid=$!
url=""
for ((i = 0; i < 100; i++)); do
    url=$(sed -n 's/^listening on //p' "$tmp/usherd.out")
    [ -n "$url" ] && break
    kill -0 "$usherd_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$url" ] || { tail -20 "$tmp/usherd.err" >&2; die "usherd did not start"; }
say "usherd: pid $usherd_pid, $url ($shards shards, WAL fsync on, --rate-limit off)"

tck=$(getconf CLK_TCK)
table() { if command -v column >/dev/null; then column -t -s $'\t'; else cat; fi; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$usherd_pid/stat"; }

# run MODE C OUT: one usher-bench run; usherd's CPU seconds over its --duration in OUT.cpu.
run() {
    local mode=$1 c=$2 out=$3 extra=() rc=0 t0="" i
    [ "$mode" = queue ] && extra=(--queue --queue-rate "$rate")
    say "$mode, $c connections: usher-bench --scenario flash ${extra[*]} --connections $c" \
        "--users $c --duration $duration --json"
    USHER_BENCH_ADMIN_EMAIL=$admin_email USHER_BENCH_ADMIN_PASSWORD=$admin_password \
        timeout --kill-after=10 $((duration * 3 + 300)) "$bench" --target "$url" \
        --scenario flash "${extra[@]}" --connections "$c" --users "$c" --duration "$duration" \
        --json >"$out" 2>"$out.err" </dev/null &
    bench_pid=$!
    # The run starts with the line "usher-bench: flash: C connections over T threads".
    for ((i = 0; i < 6000; i++)); do
        if grep -q 'flash: [0-9]* connections over' "$out.err" 2>/dev/null; then
            t0=$(cpu_ticks)
            sleep "$duration"
            echo "$t0 $(cpu_ticks)" | awk -v t="$tck" '{ printf "%.2f\n", ($2 - $1) / t }' >"$out.cpu"
            break
        fi
        kill -0 "$bench_pid" 2>/dev/null || break
        sleep 0.02
    done
    wait "$bench_pid" || rc=$?
    bench_pid=""
    [ -s "$out.cpu" ] || echo null >"$out.cpu"
    sleep 2 # let the closed connections' sockets go
    return "$rc"
}

failed=0
: >"$tmp/runs.jsonl"
for c in "${conns_list[@]}"; do
    for ((round = 1; round <= rounds; round++)); do
        for mode in plain queue; do
            out=$tmp/$mode-$c-$round.json
            rc=0
            run "$mode" "$c" "$out" || rc=$?
            if [ "$rc" -ne 0 ] || ! jq -e '.ops.reserve' "$out" >/dev/null 2>&1; then
                say "$mode $c #$round: usher-bench failed (status $rc); the end of its stderr:"
                tail -n 20 "$out.err" >&2 || true
                failed=1
            fi
            json=$(jq -c . "$out" 2>/dev/null || echo null)
            [ -n "$json" ] || json=null
            jq -nc --arg mode "$mode" --argjson c "$c" --argjson round "$round" \
                --argjson status "$rc" --argjson cpu "$(cat "$out.cpu")" --argjson run "$json" \
                '{mode: $mode, connections: $c, round: $round, status: $status,
                  usherd_cpu_s: $cpu, result: $run}' >>"$tmp/runs.jsonl"
        done
    done
done
kill -0 "$usherd_pid" 2>/dev/null || { say "usherd exited during the benchmark"; failed=1; }

jq -s --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg host "$(uname -srm)" \
    --argjson cpus "$(nproc)" --argjson duration "$duration" --argjson rate "$rate" \
    --argjson shards "$shards" \
    --arg commit "$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)" \
    '{date: $date, host: $host, cpus: $cpus, commit: $commit, duration_s: $duration,
      queue_rate: $rate, usherd: {shards: $shards, fsync: true}, runs: .}' \
    "$tmp/runs.jsonl" >"$tmp/results.json"
if ! { mkdir -p "$(dirname "$results")" && cp "$tmp/results.json" "$results"; } 2>/dev/null; then
    results=${TMPDIR:-/tmp}/$(basename "$results")
    cp "$tmp/results.json" "$results"
fi

echo
echo "flash vs flash --queue ($rate admissions/s), usherd $shards shards, $duration s per run," \
    "5,000 seats, one account per connection, usher-bench on the same $(nproc) CPUs"
jq -r '
  def f(x): if x == null then "n/a" else (x * 10 | round / 10 | tostring) end;
  def g(x): if x == null then "n/a" else (x * 100 | round / 100 | tostring) end;
  ["conns", "round", "mode", "req/s", "reserve/s", "reserve p50", "reserve p99", "confirm p99",
   "errors", "seats sold", "95% sold s", "usherd cpu s", "audit"],
  (.runs[] | .result as $r | [.connections, .round, .mode,
    f($r.total.rps), f($r.ops.reserve.rps), f($r.ops.reserve.p50_ms), f($r.ops.reserve.p99_ms),
    f($r.ops.confirm.p99_ms), ($r.total.errors // "n/a"), ($r.audit.seats_sold // "n/a"),
    g($r.sale.p95_s), f(.usherd_cpu_s), (if $r.audit.ok == true then "ok" else "FAILED" end)])
  | @tsv' "$results" | table
echo
echo "the queue (per queued run)"
jq -r '
  def f(x): if x == null then "n/a" else (x * 10 | round / 10 | tostring) end;
  ["conns", "round", "admitted", "rate/s", "x rate", "1st wave p50", "1st wave max",
   "join->adm p50", "join->adm p99", "polls/adm", "poll p50", "poll p99", "join p99", "fifo",
   "403"],
  (.runs[] | select(.mode == "queue") | .result as $r | $r.queue as $q | [.connections, .round,
    $q.admitted, f($q.admission_rate.observed), $q.admission_rate.ratio,
    f($q.start_to_admission_prequeue.p50_ms), f($q.start_to_admission_prequeue.max_ms),
    f($q.join_to_admission_after_start.p50_ms), f($q.join_to_admission_after_start.p99_ms),
    $q.polls_per_admission.mean, f($r.ops.queue_me.p50_ms), f($r.ops.queue_me.p99_ms),
    f($r.ops.queue_join.p99_ms), "\($q.fifo.violations)/\($q.fifo.checked)",
    $q.admission_refused])
  | @tsv' "$results" | table
echo
echo "queue / plain, same round"
jq -r '
  def r(a; b): if a == null or b == null or b == 0 then "n/a" else (a / b * 100 | round / 100 | tostring) end;
  ["conns", "round", "req/s", "reserve/s", "reserve p99", "confirm p99", "seats sold", "95% sold",
   "usherd cpu"],
  (.runs | group_by([.connections, .round])[] |
    (map(select(.mode == "plain"))[0]) as $p | (map(select(.mode == "queue"))[0]) as $q |
    [$p.connections, $p.round, r($q.result.total.rps; $p.result.total.rps),
     r($q.result.ops.reserve.rps; $p.result.ops.reserve.rps),
     r($q.result.ops.reserve.p99_ms; $p.result.ops.reserve.p99_ms),
     r($q.result.ops.confirm.p99_ms; $p.result.ops.confirm.p99_ms),
     r($q.result.audit.seats_sold; $p.result.audit.seats_sold),
     r($q.result.sale.p95_s; $p.result.sale.p95_s), r($q.usherd_cpu_s; $p.usherd_cpu_s)])
  | @tsv' "$results" | table
echo
say "JSON of every run: $results"
[ "$failed" -eq 0 ] || die "a run failed or its audit did not pass (see above)"
