#!/usr/bin/env bash
# Runs the README's curl walkthrough, exactly as written there, against a
# usherd started with --demo on a free port: the documented session must
# work (register, login, browse, reserve, confirm, my-bookings, cancel).
set -euo pipefail
usherd=${1:?usage: readme_walkthrough.sh USHERD REPO_ROOT}
root=${2:?usage: readme_walkthrough.sh USHERD REPO_ROOT}
dir=$(mktemp -d /tmp/usher-readme-XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
"$usherd" --listen 127.0.0.1:0 --data-dir "$dir/data" --shards 2 --demo --password-cost min \
    --rate-limit off >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 1 300); do grep -q '^listening on ' "$dir/out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$dir/out")
[ -n "$url" ] || { echo "readme_walkthrough: usherd did not start"; cat "$dir/err"; exit 1; }
# The block after "a whole booking with curl", up to its closing fence.
awk '/a whole booking with curl/ {f=1} f && /^```sh$/ {b=1; next} b && /^```$/ {exit} b {print}' \
    "$root/README.md" >"$dir/walk.sh"
[ -s "$dir/walk.sh" ] || { echo "readme_walkthrough: no walkthrough found in README.md"; exit 1; }
B=$url bash -euo pipefail "$dir/walk.sh" >"$dir/walk.out" 2>"$dir/walk.err" ||
    { echo "readme_walkthrough: the walkthrough failed"; cat "$dir/walk.out" "$dir/walk.err"; exit 1; }
fail() { echo "readme_walkthrough: $1"; cat "$dir/walk.out" "$dir/walk.err"; exit 1; }
grep -q '"email":"asha@example.com"' "$dir/walk.out" || fail "register/me did not answer the user"
grep -q '"title":"The Last Usher"' "$dir/walk.out" || fail "movies?city=Mumbai&genre=thriller is wrong"
grep -q '"hold_id":' "$dir/walk.err" || fail "reserve did not answer a hold"
grep -q '"status":"confirmed"' "$dir/walk.err" || fail "confirm did not answer a confirmed booking"
grep -q '"total":1' "$dir/walk.out" || fail "my-bookings does not list the booking"
grep -q '"status":"cancelled"' "$dir/walk.out" || fail "cancel did not cancel"
if grep -q '"type":"https://usher.dev/problems' "$dir/walk.out" "$dir/walk.err"; then
    fail "an API call in the walkthrough answered a problem"
fi
kill -TERM "$pid"
wait "$pid"
pid=
echo "readme_walkthrough: ok"
