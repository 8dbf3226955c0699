#!/usr/bin/env bash
# A short usher-bench run end to end: creates an administrator on a fresh data
# directory, starts usherd on a free port, runs the flash scenario (200
# connections, 3 s, --json) and fails unless reserves succeeded and the audit
# is ok; then flash --queue (100 connections, 50 admissions/s, 4 s) and fails
# unless clients were admitted at about that rate, none was refused with 403
# admission-required, FIFO held and the audit is ok. Stops the usherd it
# started with SIGTERM and expects a clean exit.
set -euo pipefail
usherd=${USHERD:?USHERD must point to the usherd binary}
bench=${USHER_BENCH:?USHER_BENCH must point to the usher-bench binary}
command -v python3 >/dev/null || { echo "bench_smoke: python3 missing"; exit 1; }
dir=$(mktemp -d /tmp/usher-bench-smoke-XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
email=admin@bench.example
password=bench-smoke-admin-pw
USHER_ADMIN_PASSWORD=$password "$usherd" --create-admin "$email" --data-dir "$dir/data" \
    --shards 2 --password-cost min >"$dir/admin.out" 2>"$dir/admin.err" ||
    { echo "bench_smoke: --create-admin failed"; cat "$dir/admin.out" "$dir/admin.err"; exit 1; }
"$usherd" --listen 127.0.0.1:0 --data-dir "$dir/data" --shards 2 --password-cost min \
    --rate-limit off >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 1 300); do grep -q '^listening on ' "$dir/out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$dir/out")
[ -n "$url" ] || { echo "bench_smoke: usherd did not start"; tail -20 "$dir/err"; exit 1; }
rc=0
USHER_BENCH_ADMIN_EMAIL=$email USHER_BENCH_ADMIN_PASSWORD=$password \
    "$bench" --target "$url" --scenario flash --connections 200 --duration 3 --json \
    >"$dir/bench.json" 2>"$dir/bench.err" || rc=$?
out=bench
fail() {
    echo "bench_smoke: $1"
    echo "--- usher-bench stderr"; tail -40 "$dir/$out.err"
    echo "--- usher-bench stdout"; cat "$dir/$out.json"
    echo "--- usherd stderr (tail)"; tail -20 "$dir/err"
    exit 1
}
[ "$rc" -eq 0 ] || fail "usher-bench exited with $rc"
python3 - "$dir/bench.json" <<'EOF' || fail "the report does not show a clean run"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, f"expected one JSON line, got {len(lines)}"
r = json.loads(lines[0])
assert r["scenario"] == "flash" and r["connections"] == 200, r
res = r["ops"]["reserve"]
ok = res["count"] - sum(res["outcomes"].values()) - sum(res["errors"].values())
assert ok > 0 and res["ok"] > 0, f"no reserve succeeded: {res}"
assert r["ops"]["confirm"]["ok"] > 0, f"no confirm succeeded: {r['ops']['confirm']}"
a = r["audit"]
assert a["ok"] is True, f"audit failed: {a}"
assert a["double_sold"] == 0 and a["lost_confirmations"] == 0, a
assert a["seats_sold"] > 0 and a["seats_sold"] == a["seats_confirmed_by_clients"] + a["seats_in_doubt_sold"], a
for name in ("count", "rps", "p50_ms", "p99_ms", "p999_ms", "max_ms", "errors"):
    assert name in res, f"reserve lacks {name}"
print(f"bench_smoke: reserve {res['count']} ({res['rps']}/s, p99 {res['p99_ms']} ms), "
      f"{a['seats_sold']} seats sold, audit ok")
EOF

# The same sale behind a virtual queue. usher-bench itself exits 1 on a 403
# admission-required, no admission at all or a FIFO violation; the report is checked too.
out=queue
rc=0
USHER_BENCH_ADMIN_EMAIL=$email USHER_BENCH_ADMIN_PASSWORD=$password \
    "$bench" --target "$url" --scenario flash --queue --queue-rate 50 \
    --queue-start-delay-ms 500 --connections 100 --duration 4 --json \
    >"$dir/queue.json" 2>"$dir/queue.err" || rc=$?
[ "$rc" -eq 0 ] || fail "usher-bench flash --queue exited with $rc"
python3 - "$dir/queue.json" <<'EOF' || fail "the flash --queue report does not show a clean run"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, f"expected one JSON line, got {len(lines)}"
r = json.loads(lines[0])
assert r["scenario"] == "flash" and r["queue_mode"] is True, r
q = r["queue"]
assert q["ok"] is True, f"queue failed: {q}"
assert q["admission_refused"] == 0, f"403 admission-required: {q['admission_refused']}"
assert "403" not in r["ops"]["reserve"]["errors"], r["ops"]["reserve"]
assert q["joins_prequeue"] > 0 and q["admitted"] > 0, q
assert q["fifo"]["violations"] == 0 and q["fifo"]["checked"] > 0, q["fifo"]
rate = q["admission_rate"]
assert rate["observed_over_s"] > 0 and 0.5 <= rate["ratio"] <= 1.5, rate
for op in ("queue_join", "queue_me", "queue_leave", "reserve", "confirm"):
    assert r["ops"][op]["ok"] > 0, f"no {op} succeeded: {r['ops'].get(op)}"
for op in ("queue_join", "queue_me", "queue_leave"):
    assert not r["ops"][op]["errors"], f"{op} errors: {r['ops'][op]['errors']}"
a = r["audit"]
assert a["ok"] is True and a["double_sold"] == 0 and a["lost_confirmations"] == 0, a
assert a["seats_sold"] > 0, a
print(f"bench_smoke: flash --queue: {q['admitted']} admitted "
      f"({rate['observed']}/s of {rate['configured']}/s), "
      f"start->admission p99 {q['start_to_admission']['p99_ms']} ms, "
      f"{q['polls']} polls, FIFO checked {q['fifo']['checked']}, "
      f"reserve p99 {r['ops']['reserve']['p99_ms']} ms, {a['seats_sold']} seats sold, audit ok")
EOF
kill -TERM "$pid"
wait "$pid" || { pid=; fail "usherd did not exit cleanly"; }
pid=
echo "bench_smoke: ok"
