#!/usr/bin/env bash
# Exporter lag under load (issue #6): how long an event takes from usherd's WAL to a
# committed row in PostgreSQL while usher-bench's `steady` scenario runs.
#
#   bench/pgexport-bench.sh      (make bench runs it last)
#
# Starts a throwaway PostgreSQL cluster (initdb + pg_ctl on a private socket, fsync on:
# the commits are real), the release usherd (WAL fsync on) with a replication token, and
# the release usher-pgexport; runs `usher-bench --scenario steady`; stops the exporter once
# it has caught up and prints its summary: events, batches, and the lag of every event
# (commit time in PostgreSQL minus the event's time in usherd) at p50, p99 and max. The
# target is p99 < 100 ms. The lines go to bench/results/pgexport-<date>-<time>.txt.
#
# Environment: BENCH_DURATION=S (default 20), BENCH_CONNECTIONS=N (default 100),
# BUILD_DIR=DIR (default build-release).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BUILD_DIR:-$root/build-release}
duration=${BENCH_DURATION:-20}
conns=${BENCH_CONNECTIONS:-100}
results=$root/bench/results/pgexport-$(date +%Y%m%d-%H%M%S).txt
token=pgexport-bench-replication-token-0123456789
say() { printf 'pgexport-bench: %s\n' "$*"; }
die() {
    printf 'pgexport-bench: %s\n' "$*" >&2
    exit 1
}

pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort | tail -1)")
[ -x "$pgbin/initdb" ] || die "no PostgreSQL server: install the Debian package postgresql (tools/install-deps --bench)"
for b in net/usherd tools/usher-pgexport bench/usher-bench; do
    [ -x "$build/$b" ] || die "$build/$b not found: build the release tree first (make)"
done

dir=$(mktemp -d /tmp/usher-pgexport-bench-XXXXXX)
chmod 755 "$dir"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
    as_pg=(runuser -u postgres --) # initdb refuses root
    mkdir "$dir/pg" && chown postgres:postgres "$dir/pg"
else
    mkdir "$dir/pg"
fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    "${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

"${as_pg[@]}" "$pgbin/initdb" -D "$dir/pg/data" -A trust -U postgres -E UTF8 >"$dir/initdb.log" 2>&1 ||
    die "initdb failed: $(tail -5 "$dir/initdb.log")"
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -w \
    -o "-c listen_addresses='' -c unix_socket_directories=$dir/pg" start >/dev/null ||
    die "PostgreSQL did not start: $(tail -5 "$dir/pg/log")"
psql -X -q -h "$dir/pg" -U postgres -c "CREATE DATABASE usher" postgres

admin_pw=pgexport-bench-admin-pw
USHER_ADMIN_PASSWORD=$admin_pw "$build/net/usherd" --create-admin admin@bench.example \
    --data-dir "$dir/data" --password-cost min >/dev/null 2>&1 || die "--create-admin failed"
USHER_REPLICATION_TOKEN=$token "$build/net/usherd" --listen 127.0.0.1:0 --data-dir "$dir/data" \
    --password-cost min --rate-limit off >"$dir/usherd.out" 2>"$dir/usherd.err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^listening on ' "$dir/usherd.out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$dir/usherd.out")
[ -n "$url" ] || die "usherd did not start: $(tail -5 "$dir/usherd.err")"

"$build/tools/usher-pgexport" --source "$url" --pg "postgresql:///usher?host=$dir/pg&user=postgres" \
    --token "$token" --stats-interval 5 2>"$dir/export.err" &
exporter=$!
pids+=($exporter)

say "usher-bench --scenario steady --connections $conns --duration $duration against $url"
"$build/bench/usher-bench" --target "$url" --scenario steady --connections "$conns" \
    --duration "$duration" --admin-email admin@bench.example --admin-password "$admin_pw" \
    --quiet >"$dir/bench.out" 2>&1 || die "usher-bench failed: $(tail -5 "$dir/bench.out")"

# Caught up: export_state equals every shard's durable LSN.
for _ in $(seq 1 300); do
    want=$(curl -fsS -H "Authorization: Bearer $token" "$url/api/replication/status" |
        grep -o '"durable_lsn":[0-9]*' | cut -d: -f2 | paste -sd+ | bc)
    have=$(psql -X -At -h "$dir/pg" -U postgres -c "SELECT coalesce(sum(lsn),0) FROM export_state" usher)
    [ "$want" = "$have" ] && break
    sleep 0.2
done
[ "$want" = "$have" ] || die "the exporter did not catch up ($have of $want)"
kill -TERM "$exporter"
wait "$exporter" || die "usher-pgexport failed: $(tail -5 "$dir/export.err")"
pids=("${pids[@]:0:1}")

summary=$(grep 'msg="summary"' "$dir/export.err")
p99=$(sed -n 's/.*lag_ms_p99=\([0-9]*\).*/\1/p' <<<"$summary")
mkdir -p "$root/bench/results"
{
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) CPUs; steady, $conns connections, ${duration}s"
    grep -E '^(total|browse|reserve|confirm|cancel|release)' "$dir/bench.out" || true
    grep 'msg="stats"' "$dir/export.err" || true
    echo "$summary"
} | tee "$results"
if [ -n "$p99" ] && [ "$p99" -lt 100 ]; then
    say "lag p99 ${p99} ms: target (< 100 ms) met"
else
    say "lag p99 ${p99:-?} ms: target (< 100 ms) MISSED"
fi
say "written to $results"
