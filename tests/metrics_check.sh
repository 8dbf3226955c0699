#!/usr/bin/env bash
# Starts usherd on a free port, serves a few requests (including errors),
# fetches /metrics and runs `promtool check metrics` on it: the exposition
# must be valid Prometheus text. Then stops usherd with SIGTERM and expects a
# clean exit.
set -euo pipefail
usherd=${USHERD:?USHERD must point to the usherd binary}
command -v promtool >/dev/null || { echo "metrics_check: promtool missing (tools/install-deps --test)"; exit 1; }
dir=$(mktemp -d /tmp/usher-metrics-XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
# Rate limits at their defaults except login-email (1 per minute), so that a
# second login is refused and counted.
"$usherd" --listen 127.0.0.1:0 --data-dir "$dir/data" --shards 2 --password-cost min \
    --rate-limit login-email=1/60 >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 1 100); do grep -q '^listening on ' "$dir/out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$dir/out")
[ -n "$url" ] || { echo "metrics_check: usherd did not start"; cat "$dir/err"; exit 1; }
curl -fsS "$url/livez" >/dev/null
curl -sS "$url/nope" >/dev/null
curl -sS -X POST "$url/livez" >/dev/null
login='{"email":"nobody@example.com","password":"not the password"}'
code1=$(curl -sS -o /dev/null -w '%{http_code}' --json "$login" "$url/api/auth/login")
code2=$(curl -sS -o /dev/null -w '%{http_code}' --json "$login" "$url/api/auth/login")
[ "$code1 $code2" = "401 429" ] ||
    { echo "metrics_check: logins answered $code1 $code2, not 401 429"; exit 1; }
curl -fsS "$url/metrics" >"$dir/metrics"
grep -q '^usher_rate_limited_total{limit="login-email"} 1$' "$dir/metrics" ||
    { echo "metrics_check: the 429 was not counted"; grep rate_limit "$dir/metrics"; exit 1; }
grep -q '^usher_rate_limit_keys [1-9]' "$dir/metrics" ||
    { echo "metrics_check: no rate-limit keys"; grep rate_limit "$dir/metrics"; exit 1; }
grep -q '^usher_http_requests_total{shard="[01]",route="[^"]*",code="4xx"} [1-9]' "$dir/metrics" ||
    { echo "metrics_check: the 4xx answers were not counted"; cat "$dir/metrics"; exit 1; }
promtool check metrics <"$dir/metrics"
kill -TERM "$pid"
wait "$pid"
pid=
grep -q 'usherd: stopped' "$dir/err"
echo "metrics_check: ok (promtool accepts /metrics; clean shutdown)"
