#!/usr/bin/env bash
# Server benchmark (issue #5, "Baseline in the same run"): usherd against nginx on the same
# machine, in the same run, driven by the same load generator (usher-bench).
#
#   bench/server-bench.sh       (make bench runs it after engine-bench and replay-bench)
#
# It starts nginx (Debian package, `return 204`, its own config in a temporary directory) as
# the machine's HTTP ceiling and the release usherd (temporary data directory, WAL fsync on,
# one shard per CPU), then for each connection count runs BENCH_ROUNDS rounds of
# `usher-bench --scenario http` against nginx and `usher-bench --scenario reserve` against
# usherd (alternating, so both see the same machine), then `--scenario flash` against usherd
# for the audit (reserve sells nothing), one run at a time, and prints usher's throughput and
# p99 as ratios of nginx's (medians of the rounds), the targets of issue #5 and the audit. The JSON of
# every run goes to bench/results/server-<date>-<time>.json. bench/README.md has the figures.
#
# Environment:
#   BENCH_DURATION=S         seconds per usher-bench run (default 10)
#   BENCH_CONNECTIONS="C.."  connection counts (default "1000 10000")
#   BENCH_ROUNDS=N           nginx/usherd pairs of runs per connection count (default 3)
#   BENCH_RESULTS=FILE       where the JSON goes (default bench/results/server-<date>-<time>.json)
#   BUILD_DIR=DIR            release build tree (default build-release)
#   NGINX=PATH               nginx binary (default /usr/sbin/nginx)
#
# Exit status: 0 when every run finished with a clean audit (a missed performance target is
# reported, not an error); 1 when a server did not start, a run failed or an audit failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build-release}
usherd=$build/net/usherd
bench=$build/bench/usher-bench
nginx=${NGINX:-/usr/sbin/nginx}
duration=${BENCH_DURATION:-10}
rounds=${BENCH_ROUNDS:-3}
read -r -a conns_list <<<"${BENCH_CONNECTIONS:-1000 10000}"
results=${BENCH_RESULTS:-$root/bench/results/server-$(date +%Y%m%d-%H%M%S).json}
startup_timeout=10 # seconds a server gets to start
headroom=1024      # open files usher-bench needs beyond its connections

say() { printf 'server-bench: %s\n' "$*"; }
die() {
    printf 'server-bench: %s\n' "$*" >&2
    exit 1
}

# ---- preconditions -------------------------------------------------------------------------
[ -x "$nginx" ] || die "no nginx at $nginx: install the Debian package nginx (tools/install-deps --bench)"
command -v jq >/dev/null || die "jq not found: install the Debian package jq (tools/install-deps --bench)"
[ -x "$usherd" ] || die "$usherd not found: build the release tree first (make)"
[ -x "$bench" ] || die "$bench not found: build the release tree first (make)"
[[ $duration =~ ^[1-9][0-9]*$ ]] || die "BENCH_DURATION must be a whole number of seconds, not '$duration'"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a whole number of rounds, not '$rounds'"
[ ${#conns_list[@]} -gt 0 ] || die "BENCH_CONNECTIONS is empty"
for c in "${conns_list[@]}"; do
    [[ $c =~ ^[1-9][0-9]*$ ]] || die "BENCH_CONNECTIONS: '$c' is not a connection count"
done

# Every process here (nginx, usherd, usher-bench) inherits the soft open-file limit: raise it
# to the hard limit, which an unprivileged user may do.
hard=$(ulimit -Hn)
[ "$hard" != unlimited ] || hard=1048576
ulimit -Sn "$hard" || die "cannot raise the open-file soft limit to the hard limit ($hard)"
nofile=$(ulimit -Sn)
say "open files: $nofile (soft limit raised to the hard limit)"
for c in "${conns_list[@]}"; do
    if [ "$nofile" -lt $((c + headroom)) ]; then
        say "the $c-connection run will be SKIPPED: it needs an open-file hard limit of at" \
            "least $((c + headroom)), this shell has $nofile (raise it with ulimit -Hn as root, or in" \
            "/etc/security/limits.conf)"
    fi
done

# A server this script configures alone: no USHER_* setting from the caller's environment.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^USHER_' || true)

# ---- processes and cleanup -----------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/usher-server-bench.XXXXXX")
pids=() # every background process this script started and has not yet reaped

# True when $1 is still a child of this shell (so never a recycled, unrelated PID).
is_child() {
    local stat rest ppid
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    read -r _ ppid _ <<<"$rest"
    [ "$ppid" = "$$" ]
}

forget() {
    local keep=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}

# SIGTERM (usherd: final snapshot and WAL sync; nginx: fast shutdown), SIGKILL after 10 s.
stop() {
    local pid=$1 i
    if is_child "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            is_child "$pid" || break
            sleep 0.1
        done
        if is_child "$pid"; then
            say "process $pid still running 10 s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do stop "$pid"; done
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'say "interrupted: stopping what it started"; exit 130' INT
trap 'say "terminated: stopping what it started"; exit 143' TERM

# A loopback port nothing listens on, below the ephemeral range (32768+) the clients use.
free_port() {
    local p i
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# Waits until 127.0.0.1:$2 accepts a connection while process $1 lives; at most 10 s.
wait_port() {
    local pid=$1 port=$2 i
    for ((i = 0; i < startup_timeout * 10; i++)); do
        is_child "$pid" || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# ---- nginx ---------------------------------------------------------------------------------
ndir=$tmp/nginx
mkdir -p "$ndir"
user_line="" # unprivileged: the workers run as the caller
if [ "$(id -u)" -eq 0 ]; then
    user_line="user nobody nogroup;" # root: workers drop privileges, as nginx means them to
    chmod 0711 "$tmp"
    chmod 0755 "$ndir"
fi

start_nginx() {
    local port=$1
    cat >"$ndir/nginx.conf" <<EOF
# written by bench/server-bench.sh: the machine's HTTP ceiling, nothing outside $ndir
$user_line
daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile $nofile;
pid "$ndir/nginx.pid";
lock_file "$ndir/nginx.lock";
error_log "$ndir/error.log" warn;

events {
    worker_connections 20000;
}

http {
    access_log off;
    client_body_temp_path "$ndir/client_body";
    proxy_temp_path "$ndir/proxy";
    fastcgi_temp_path "$ndir/fastcgi";
    uwsgi_temp_path "$ndir/uwsgi";
    scgi_temp_path "$ndir/scgi";
    # usher-bench keeps its connections for the whole run; nginx's default closes one
    # after 1,000 requests.
    keepalive_requests 1000000000;
    keepalive_timeout 300s;

    server {
        # reuseport and backlog as usherd's listeners (SO_REUSEPORT per shard, backlog 4096)
        listen 127.0.0.1:$port reuseport backlog=4096;
        location / {
            return 204;
        }
    }
}
EOF
    "$nginx" -p "$ndir/" -c "$ndir/nginx.conf" -e "$ndir/error.log" \
        >"$ndir/output.log" 2>&1 </dev/null &
    nginx_pid=$!
    pids+=("$nginx_pid")
    wait_port "$nginx_pid" "$port"
}

nginx_pid=""
nginx_port=""
for attempt in 1 2 3; do
    port=$(free_port) || die "no free loopback port for nginx"
    if start_nginx "$port"; then
        nginx_port=$port
        break
    fi
    cat "$ndir/output.log" "$ndir/error.log" >&2 2>/dev/null || true
    if is_child "$nginx_pid"; then
        stop "$nginx_pid"
        die "nginx did not accept connections on 127.0.0.1:$port within ${startup_timeout} s (log above)"
    fi
    # It exited: most likely the port found free was taken before nginx bound it.
    grep -q 'Address already in use' "$ndir/error.log" "$ndir/output.log" 2>/dev/null ||
        die "nginx exited at startup (log above)"
    say "port $port was taken meanwhile (attempt $attempt of 3)"
done
[ -n "$nginx_port" ] || die "nginx: no free port after 3 attempts"
nginx_version=$("$nginx" -v 2>&1 | sed 's/^nginx version: //')
say "$nginx_version: pid $nginx_pid, http://127.0.0.1:$nginx_port/ (return 204)"

# ---- usherd --------------------------------------------------------------------------------
udir=$tmp/usherd
mkdir -p "$udir"
shards=$(nproc)
[ "$shards" -le 32 ] || shards=32
admin_email="bench-admin@usher.local"
admin_password=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
if ! USHER_ADMIN_PASSWORD=$admin_password "$usherd" --create-admin "$admin_email" \
    --data-dir "$udir/data" --shards "$shards" >"$udir/create-admin.log" 2>&1 </dev/null; then
    cat "$udir/create-admin.log" >&2
    die "usherd --create-admin failed (log above)"
fi

"$usherd" --listen 127.0.0.1:0 --data-dir "$udir/data" --shards "$shards" --rate-limit off \
    >"$udir/stdout.log" 2>"$udir/stderr.log" </dev/null &
usherd_pid=$!
pids+=("$usherd_pid")
usherd_url=""
for ((i = 0; i < startup_timeout * 10; i++)); do
    line=$(grep -m1 -o 'listening on http://[^[:space:]]*' "$udir/stdout.log" || true)
    if [ -n "$line" ]; then
        usherd_url=${line#listening on }
        break
    fi
    is_child "$usherd_pid" || break
    sleep 0.1
done
if [ -z "$usherd_url" ]; then
    tail -n 20 "$udir/stderr.log" >&2 || true
    if is_child "$usherd_pid"; then
        die "usherd did not print 'listening on http://...' within ${startup_timeout} s (log above)"
    fi
    die "usherd exited during startup (log above)"
fi
usherd_port=${usherd_url##*:}
say "usherd: pid $usherd_pid, $usherd_url ($shards shards, WAL fsync on, data in $udir/data)"

# ---- runs ----------------------------------------------------------------------------------
# run_bench NAME OUT ARGS...: one usher-bench run; its JSON in OUT, its stderr in OUT.err.
# Returns usher-bench's status (1 = audit violation). Bounded: usher-bench stops by itself
# after --duration plus its setup and audit; timeout stops it if it does not.
run_bench() {
    local name=$1 out=$2 limit=$((duration * 3 + 300)) pid rc=0
    shift 2
    say "$name: usher-bench $* --duration $duration --json --quiet"
    timeout --kill-after=10 "$limit" "$bench" "$@" --duration "$duration" --json --quiet \
        >"$out" 2>"$out.err" </dev/null &
    pid=$!
    pids+=("$pid")
    wait "$pid" || rc=$?
    forget "$pid"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        say "$name: usher-bench did not finish within $limit s: stopped"
    fi
    return "$rc"
}

# measure LABEL OUT OP ARGS...: run_bench, then check that OUT holds usher-bench's JSON with
# figures for OP. Sets rc (usher-bench's status) and json (the object, or null).
measure() {
    local label=$1 out=$2 op=$3
    shift 3
    rc=0
    json=null
    run_bench "$label" "$out" "$@" || rc=$?
    sleep 2 # let the closed connections' sockets go before the next run
    if jq -e --arg op "$op" 'type == "object" and (.ops[$op].rps | type == "number")' "$out" \
        >/dev/null 2>&1; then
        json=$(cat "$out")
    fi
    if [ "$rc" -ne 0 ] || [ "$json" = null ]; then
        say "$label: usher-bench failed (status $rc); the end of its stderr:"
        tail -n 20 "$out.err" >&2 || true
        failed=1
    fi
}

# The figures of OP in a JSON object: requests/s, p99 in ms, then over all ops: failed
# requests and requests/s; "n/a" for each when there is no object.
figures() {
    if [ "$1" = null ]; then
        printf 'n/a\tn/a\tn/a\tn/a\n'
        return
    fi
    jq -r --arg op "$2" '[.ops[$op].rps, .ops[$op].p99_ms,
        (.total.errors // ([.ops[].errors[]?] | add // 0)),
        (.total.rps // ([.ops[].rps] | add))] | @tsv' <<<"$1"
}

num() { if [ "$1" = n/a ]; then echo n/a; else printf "%.${2}f" "$1"; fi; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "n/a" && b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
at_least() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a + 0 >= b + 0) }'; }
at_most() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "n/a" && a + 0 <= b + 0) }'; }

row() { printf '%11s | %7s | %13s | %11s | %15s | %11s | %9s | %9s | %13s | %-32s | %s\n' "$@"; }
median() { tr ' ' '\n' | grep -v '^$' | grep -v 'n/a' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2];
    else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
spread() { tr ' ' '\n' | grep -v '^$' | grep -v 'n/a' | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) print "n/a"; else printf "%.2f-%.2f\n", v[1], v[NR] }'; }
failed=0
rows=()
audits=()
: >"$tmp/runs.jsonl"
for c in "${conns_list[@]}"; do
    if [ "$nofile" -lt $((c + headroom)) ]; then
        why="open-file hard limit $nofile is below $c connections + $headroom"
        say "SKIPPING $c connections: $why"
        rows+=("$(printf '%11s | skipped: %s' "$c" "$why")")
        jq -nc --argjson c "$c" --arg why "$why" '{connections: $c, skipped: $why}' \
            >>"$tmp/runs.jsonl"
        continue
    fi

    # Rounds alternate nginx and usherd, so that both see the same machine: on a shared VM
    # the rate moves by 10-20 % from minute to minute. A round's ratio compares its own two
    # runs; the table gives the median of the rounds and their range.
    n_rps_all="" n_p99_all="" u_rps_all="" u_p99_all="" u_all_all="" rr_all="" pr_all=""
    errs=""
    for ((round = 1; round <= rounds; round++)); do
        # 1. the ceiling: nginx answering 204 to GET /
        measure "nginx $c #$round" "$tmp/nginx-$c-$round.json" http \
            --target "http://127.0.0.1:$nginx_port" --scenario http --path / --connections "$c"
        n_rc=$rc n_json=$json
        # 2. usherd, durable reserve then release of 4 listed seats: the figure of issue #5
        USHER_BENCH_ADMIN_EMAIL=$admin_email USHER_BENCH_ADMIN_PASSWORD=$admin_password \
            measure "usherd reserve $c #$round" "$tmp/reserve-$c-$round.json" reserve \
            --target "http://127.0.0.1:$usherd_port" --scenario reserve --connections "$c"
        u_rc=$rc u_json=$json
        IFS=$'\t' read -r n_rps n_p99 n_err _ < <(figures "$n_json" http)
        IFS=$'\t' read -r u_rps u_p99 u_err u_all < <(figures "$u_json" reserve)
        # The reserve scenario's rate is all of its requests: every one (reserve or release)
        # is a durable write, journaled and fdatasync'd before its answer.
        n_rps_all+=" $n_rps" n_p99_all+=" $n_p99" u_rps_all+=" $u_rps" u_p99_all+=" $u_p99"
        u_all_all+=" $u_all" rr_all+=" $(ratio "$u_all" "$n_rps")" pr_all+=" $(ratio "$u_p99" "$n_p99")"
        errs+=" $n_err/$u_err"
        jq -nc --argjson c "$c" --argjson round "$round" --argjson nginx "$n_json" \
            --argjson reserve "$u_json" --argjson status "{\"nginx\": $n_rc, \"reserve\": $u_rc}" \
            '{connections: $c, round: $round, status: $status, nginx: $nginx, reserve: $reserve}' \
            >>"$tmp/runs.jsonl"
    done
    # 3. usherd, flash sale: reserve sells nothing, so the audit comes from this run
    USHER_BENCH_ADMIN_EMAIL=$admin_email USHER_BENCH_ADMIN_PASSWORD=$admin_password \
        measure "usherd flash $c" "$tmp/flash-$c.json" reserve \
        --target "http://127.0.0.1:$usherd_port" --scenario flash --connections "$c"
    f_rc=$rc f_json=$json

    rps_ratio=$(num "$(median <<<"$rr_all")" 2)
    p99_ratio=$(num "$(median <<<"$pr_all")" 2)
    if [ "$c" -ge 10000 ]; then
        target="rps >= 0.6x, p99 <= 1.5x"
        if at_least "$rps_ratio" 0.6 && at_most "$p99_ratio" 1.5; then met=true; else met=false; fi
    else
        target="rps >= 0.7x"
        if at_least "$rps_ratio" 0.7; then met=true; else met=false; fi
    fi
    if [ "$met" = true ]; then target="$target: met"; else target="$target: missed"; fi

    audit="n/a"
    if [ "$f_json" != null ]; then
        case $(jq -r '.audit.ok // "missing"' <<<"$f_json") in
            true) audit="ok" ;;
            false) audit="FAILED" ;;
            *) audit="missing" ;;
        esac
        audits+=("$c connections, flash sale: $audit: $(jq -r '.audit |
            "seats sold \(.seats_sold), confirmed to clients \(.seats_confirmed_by_clients), " +
            "double sold \(.double_sold), lost confirmations \(.lost_confirmations)"' <<<"$f_json")")
        audits+=("  flash reserve answers/s $(jq -r '.ops.reserve.rps | floor' <<<"$f_json"), p50 $(
            jq -r '.ops.reserve.p50_ms' <<<"$f_json") ms, p99 $(jq -r '.ops.reserve.p99_ms' <<<"$f_json") ms")
    fi
    [ "$audit" = ok ] || failed=1

    rows+=("$(row "$c" "$rounds" "$(num "$(median <<<"$n_rps_all")" 0)" \
        "$(num "$(median <<<"$n_p99_all")" 1)" "$(num "$(median <<<"$u_all_all")" 0)" \
        "$(num "$(median <<<"$u_p99_all")" 1)" "$rps_ratio" "$p99_ratio" \
        "$(spread <<<"$rr_all")" "$target" "$audit")")
    say "$c connections: rps ratios by round:$rr_all; p99 ratios:$pr_all; failed requests" \
        "(nginx/usherd):$errs"
    jq -nc --argjson c "$c" --argjson flash "$f_json" --arg rps_ratio "$rps_ratio" \
        --arg p99_ratio "$p99_ratio" --arg rr "$rr_all" --arg pr "$pr_all" --arg target "$target" \
        --argjson met "$met" --arg audit "$audit" --argjson status "{\"flash\": $f_rc}" \
        '{connections: $c, summary: true, rps_ratio_median: ($rps_ratio | tonumber? // null),
          p99_ratio_median: ($p99_ratio | tonumber? // null),
          rps_ratios: [$rr | splits(" +") | select(length > 0) | tonumber? // null],
          p99_ratios: [$pr | splits(" +") | select(length > 0) | tonumber? // null],
          target: $target, met: $met, audit: $audit, status: $status, flash: $flash}' \
        >>"$tmp/runs.jsonl"
done

# A server that died under load is a failure whatever the figures say.
if ! is_child "$nginx_pid"; then
    say "nginx exited during the benchmark: $(tail -n 5 "$ndir/error.log" 2>/dev/null)"
    failed=1
fi
if ! is_child "$usherd_pid"; then
    say "usherd exited during the benchmark; the end of its log:"
    tail -n 20 "$udir/stderr.log" >&2 || true
    failed=1
fi

# ---- report --------------------------------------------------------------------------------
jq -s --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg host "$(uname -srm)" \
    --argjson cpus "$(nproc)" --arg nginx "$nginx_version" --argjson duration "$duration" \
    --argjson shards "$shards" \
    --arg commit "$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)" \
    '{date: $date, host: $host, cpus: $cpus, commit: $commit, nginx: $nginx,
      usherd: {shards: $shards, fsync: true}, duration_s: $duration, runs: .}' \
    "$tmp/runs.jsonl" >"$tmp/results.json"
if ! { mkdir -p "$(dirname "$results")" && cp "$tmp/results.json" "$results"; } 2>/dev/null; then
    fallback=${TMPDIR:-/tmp}/$(basename "$results")
    say "cannot write $results; writing $fallback instead"
    results=$fallback
    cp "$tmp/results.json" "$results"
fi

echo
echo "usherd ($shards shards, WAL fsync on) vs $nginx_version (return 204), $duration s per run," \
    "usher-bench on the same $(nproc)-CPU machine"
row connections rounds "nginx req/s" "nginx p99 ms" "usher req/s" "reserve p99 ms" \
    "rps ratio" "p99 ratio" "rps ratio range" "target (issue #5)" "audit"
for line in "${rows[@]}"; do echo "$line"; done
echo
echo "Medians over the rounds. usher req/s: the reserve scenario's requests per second, a durable"
echo "4-seat reserve then its release, each journaled and fdatasync'd before its answer; rps ratio:"
echo "usher req/s / nginx req/s of the same round; p99 ratio: usher's reserve p99 / nginx's p99."
echo "Failed requests per round are in the log above; audit: the flash-sale run's (no seat sold"
echo "twice, no acknowledged booking lost, seats sold = seats confirmed to clients)."
for a in "${audits[@]}"; do echo "  $a"; done
echo
say "JSON of every run: $results"
if [ "$failed" -ne 0 ]; then
    die "a run failed or its audit did not pass (see above)"
fi
