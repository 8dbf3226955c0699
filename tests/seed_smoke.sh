#!/usr/bin/env bash
# usher-seed end to end, small volume: seeds two fresh servers with the same
# --seed and checks the counts the API reports (theaters, movies, showtimes,
# bookings) and that both got the same catalog (titles and theater names; ids
# may differ, since requests complete in any order).
set -euo pipefail
usherd=${USHERD:?USHERD must point to the usherd binary}
seed=${USHER_SEED:?USHER_SEED must point to the usher-seed binary}
dir=$(mktemp -d /tmp/usher-seed-smoke-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "seed_smoke: $1"; shift; for f in "$@"; do echo "--- $f"; tail -30 "$f"; done; exit 1; }
email=admin@seed.example
password=seed-smoke-admin-pw
start() { # $1: name; sets $url (no subshell: the PID must reach cleanup)
    USHER_ADMIN_PASSWORD=$password "$usherd" --create-admin "$email" --data-dir "$dir/$1" \
        --shards 2 --password-cost min >"$dir/$1.admin" 2>&1 || fail "--create-admin failed" "$dir/$1.admin"
    "$usherd" --listen 127.0.0.1:0 --data-dir "$dir/$1" --shards 2 --password-cost min \
        --rate-limit off >"$dir/$1.out" 2>"$dir/$1.err" &
    pids+=($!)
    for _ in $(seq 1 300); do grep -q '^listening on ' "$dir/$1.out" && break; sleep 0.1; done
    url=$(sed -n 's/^listening on //p' "$dir/$1.out")
}
total() { curl -fsS "$1" | sed 's/.*"total":\([0-9]*\).*/\1/'; }
titles() { curl -fsS "$1/api/movies?limit=100" | grep -o '"title":"[^"]*"' | sort; }
for run in a b; do
    start "$run"
    [ -n "$url" ] || fail "usherd $run did not start" "$dir/$run.err"
    "$seed" --target "$url" --admin-email "$email" --admin-password "$password" --seed 42 \
        --cities 3 --theaters 6 --movies 20 --showtimes 40 --users 50 --bookings 400 \
        --connections 16 --quiet >"$dir/$run.seed" 2>&1 || fail "usher-seed failed" "$dir/$run.seed"
    grep -q 'bookings: 400 confirmed' "$dir/$run.seed" || fail "not 400 bookings" "$dir/$run.seed"
    [ "$(total "$url/api/theaters")" = 6 ] || fail "theaters != 6" "$dir/$run.seed"
    [ "$(total "$url/api/movies")" = 20 ] || fail "movies != 20" "$dir/$run.seed"
    [ "$(total "$url/api/showtimes?limit=1")" = 40 ] || fail "showtimes != 40" "$dir/$run.seed"
    sold=$(curl -fsS "$url/metrics" | awk '/^usher_confirms_total/ {s += $2} END {print s}')
    [ "$sold" = 400 ] || fail "usher_confirms_total is $sold, not 400" "$dir/$run.seed"
    titles "$url" >"$dir/$run.titles"
    curl -fsS "$url/api/theaters?limit=100" | grep -o '"name":"[^"]*"' | sort >>"$dir/$run.titles"
done
cmp -s "$dir/a.titles" "$dir/b.titles" || fail "the same --seed gave another catalog" \
    "$dir/a.titles" "$dir/b.titles"
echo "seed_smoke: ok ($(grep -c . "$dir/a.titles") names identical across two runs)"
