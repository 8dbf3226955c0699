#!/usr/bin/env bash
# Self-test of usher-pgexport's SQL (tools/pgexport/migrations/*.sql).
#
# Starts a throwaway PostgreSQL 15 cluster in a temporary directory (unix socket only), applies
# the migrations as the exporter would (each file once, in one transaction; 004 only after the
# first events, as an upgrade of a database with data), feeds usher_apply event batches built
# from the examples of docs/replication.md and checks, with queries compared to expected values:
# the tables, the exactly-once guard (UR001), every analytics view, a snapshot bootstrap (lapsed
# holds, soft deletes, UR002, UR003), waiting lists, queues and price changes (004_onsale.sql),
# and then times 10,000 booking.reserved + booking.confirmed events in batches of 1,000.
#
# Usage: tools/pgexport/sql_check.sh        (as root or as any user that can run PostgreSQL)
# Needs: postgresql-15 (Debian: /usr/lib/postgresql/15/bin), psql. Exit 0 = every check passed.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
MIG="$HERE/migrations"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
[ -x "$PGBIN/initdb" ] || { echo "sql_check: no $PGBIN/initdb (apt-get install postgresql-15)" >&2; exit 2; }

WORK="$(mktemp -d /tmp/usher-sqlcheck.XXXXXX)"
chmod 755 "$WORK"
if [ "$(id -u)" = 0 ]; then
    chown postgres: "$WORK"
    AS_PG=(runuser -u postgres --)
else
    AS_PG=()
fi
PGDATA="$WORK/data"
SOCK="$WORK"
STARTED=0

cleanup() {
    if [ "$STARTED" = 1 ]; then
        "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"${AS_PG[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 ||
    { cat "$WORK/initdb.log" >&2; exit 2; }
"${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/server.log" -w \
    -o "-c listen_addresses='' -c unix_socket_directories=$SOCK -c fsync=on" start >/dev/null ||
    { cat "$WORK/server.log" >&2; exit 2; }
STARTED=1

export PGHOST="$SOCK" PGUSER=postgres PGTZ=UTC
PSQL=(psql -X -q -v ON_ERROR_STOP=1)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE usher" -c "CREATE DATABASE bench"

MIGRATIONS=(001_core.sql 002_apply.sql 003_analytics.sql 004_onsale.sql)
[ "$(cd "$MIG" && ls -- *.sql | paste -sd' ')" = "${MIGRATIONS[*]}" ] ||
    { echo "sql_check: MIGRATIONS does not list exactly the files of $MIG" >&2; exit 2; }
migrate() {   # migrate DB FILE...: the exporter's way, each file once, in one transaction
    local db=$1 f
    shift
    for f in "$@"; do
        "${PSQL[@]}" --single-transaction -d "$db" -f "$MIG/$f"
    done
}
migrate usher "${MIGRATIONS[@]:0:3}"   # 004_onsale.sql comes later, on a database with data
migrate bench "${MIGRATIONS[@]}"
echo "sql_check: migrations applied"

FAILS=0
CHECKS=0
q() {   # one query (the last statement's rows), unaligned, '|' between columns
    "${PSQL[@]}" -A -t -d usher -c "$1"
}
check() {   # check NAME SQL EXPECTED
    local got
    CHECKS=$((CHECKS + 1))
    if ! got="$(q "$2" 2>&1)"; then
        echo "FAIL $1: query failed: $got"; FAILS=$((FAILS + 1)); return
    fi
    if [ "$got" != "$3" ]; then
        echo "FAIL $1"; echo "  expected:"; printf '    %s\n' "$3"; echo "  got:"; printf '    %s\n' "$got"
        FAILS=$((FAILS + 1))
    fi
}
check_value() {   # check_value NAME GOT EXPECTED
    CHECKS=$((CHECKS + 1))
    [ "$2" = "$3" ] || { echo "FAIL $1: expected '$3', got '$2'"; FAILS=$((FAILS + 1)); }
}
nonblank() {   # the non-empty lines of $1, joined by spaces
    grep -v '^$' <<<"$1" | paste -sd' '
}
check_ist() { check "$1" "SET TIME ZONE 'Asia/Kolkata'; $2" "$3"; }
batch() {   # a file of NDJSON event lines -> one JSON array
    printf '[%s]' "$(paste -sd, "$1")"
}
apply() {   # apply SHARD FILE: prints the returned LSN; fails on error
    "${PSQL[@]}" -A -t -d usher -v batch="$(batch "$2")" <<<"SELECT usher_apply($1, :'batch');"
}
check_error() {   # check_error NAME SQLSTATE SQL-on-stdin...: the script must fail with SQLSTATE
    local out
    CHECKS=$((CHECKS + 1))
    if out="$("${PSQL[@]}" -A -t -d usher -v VERBOSITY=verbose "${@:3}" 2>&1)"; then
        echo "FAIL $1: succeeded, expected SQLSTATE $2"; FAILS=$((FAILS + 1)); return
    fi
    if ! grep -q "ERROR:  $2:" <<<"$out"; then
        echo "FAIL $1: expected SQLSTATE $2, got: $out"; FAILS=$((FAILS + 1)); return
    fi
    echo "  ok $1: $(grep -m1 'ERROR:' <<<"$out")"
}

H=281474976710656   # 2^48: hold and booking ids of shard 1 carry 1 in their top 16 bits
h() { echo $((H + $1)); }

# ---------------------------------------------------------------------------------------------
# Shard 0: theaters, screens, movies, users (the catalog lives in shard 0's WAL).
cat >"$WORK/s0.ndjson" <<EOF
{"v":1,"shard":0,"lsn":1,"ts":"2026-11-21T09:10:00.000Z","type":"catalog.upsert","data":{"kind":"theater","id":7,"entity":{"address":"Link Road, Andheri West","city":"Mumbai","id":7,"name":"Usher Cinemas Andheri"}}}
{"v":1,"shard":0,"lsn":2,"ts":"2026-11-21T09:10:01.000Z","type":"catalog.upsert","data":{"kind":"screen","id":8,"entity":{"id":8,"layout":{"best_row":"B","categories":["silver","gold"],"rows":[{"accessible":[],"aisles_after":[],"blocked":[],"category":"silver","companion":[],"label":"A","seats":2},{"accessible":[],"aisles_after":[],"blocked":[],"category":"gold","companion":[],"label":"B","seats":2}]},"name":"Screen 1","theater_id":7}}}
{"v":1,"shard":0,"lsn":3,"ts":"2026-11-21T09:10:02.000Z","type":"catalog.upsert","data":{"kind":"theater","id":9,"entity":{"address":"FC Road","city":"Pune","id":9,"name":"Usher Cinemas Shivajinagar"}}}
{"v":1,"shard":0,"lsn":4,"ts":"2026-11-21T09:10:03.000Z","type":"catalog.upsert","data":{"kind":"screen","id":10,"entity":{"id":10,"layout":{"best_row":"C","categories":["regular"],"rows":[{"accessible":[1],"aisles_after":[3],"blocked":[],"category":"regular","companion":[2],"label":"C","seats":6}]},"name":"Screen 2","theater_id":9}}}
{"v":1,"shard":0,"lsn":5,"ts":"2026-11-21T09:12:03.412Z","type":"catalog.upsert","data":{"kind":"movie","id":12,"entity":{"duration_min":142,"genre":"drama","id":12,"language":"hindi","title":"Monsoon Wedding Redux"}}}
{"v":1,"shard":0,"lsn":6,"ts":"2026-11-21T09:12:03.500Z","type":"catalog.upsert","data":{"kind":"movie","id":13,"entity":{"description":"A demo film.","duration_min":151,"genre":"sci-fi","id":13,"language":"english","poster_url":"","rating":"UA","title":"Orbit of Ash"}}}
{"v":1,"shard":0,"lsn":7,"ts":"2026-11-21T09:12:04.001Z","type":"catalog.upsert","data":{"kind":"user","id":31,"entity":{"created_at":"2026-11-21T09:12:04Z","email":"asha@example.com","id":31,"name":"Asha","role":"customer"}}}
{"v":1,"shard":0,"lsn":8,"ts":"2026-11-21T09:12:04.100Z","type":"catalog.upsert","data":{"kind":"user","id":32,"entity":{"created_at":"2026-11-21T09:12:04Z","email":"ravi@example.com","id":32,"name":"Ravi","role":"customer"}}}
{"v":1,"shard":0,"lsn":9,"ts":"2026-11-21T09:12:04.200Z","type":"catalog.upsert","data":{"kind":"user","id":33,"entity":{"created_at":"2026-11-21T09:12:04Z","email":"meera@example.com","id":33,"name":"Meera","role":"customer"}}}
{"v":1,"shard":0,"lsn":10,"ts":"2026-11-21T09:13:00.000Z","type":"catalog.upsert","data":{"kind":"movie","id":14,"entity":{"duration_min":90,"genre":"comedy","id":14,"language":"tamil","title":"Withdrawn"}}}
{"v":1,"shard":0,"lsn":11,"ts":"2026-11-21T09:14:00.000Z","type":"catalog.delete","data":{"kind":"movie","id":14}}
EOF

# Shard 1: two showtimes, their layouts, and the life of eight holds.
cat >"$WORK/s1a.ndjson" <<EOF
{"v":1,"shard":1,"lsn":1,"ts":"2026-11-21T09:12:05.000Z","type":"catalog.upsert","data":{"kind":"showtime","id":45,"entity":{"id":45,"movie_id":12,"prices":{"gold":25000,"silver":15000},"screen_id":8,"start_ms":1795271400000,"start_time":"2026-11-22T14:30:00Z","theater_id":7}}}
{"v":1,"shard":1,"lsn":2,"ts":"2026-11-21T09:12:05.000Z","type":"layout.created","data":{"layout_id":8,"categories":["silver","gold"],"seat_labels":["A1","A2","B1","B2"],"seat_categories":[0,0,1,1]}}
{"v":1,"shard":1,"lsn":3,"ts":"2026-11-21T09:12:05.000Z","type":"showtime.opened","data":{"showtime_id":45,"layout_id":8,"starts_at":"2026-11-22T14:30:00.000Z","prices":[15000,25000]}}
{"v":1,"shard":1,"lsn":4,"ts":"2026-11-21T09:12:06.000Z","type":"layout.created","data":{"layout_id":10,"categories":["regular"],"seat_labels":["C1","C2","C3","C4","C5","C6"],"seat_categories":[0,0,0,0,0,0]}}
{"v":1,"shard":1,"lsn":5,"ts":"2026-11-21T09:12:06.000Z","type":"showtime.opened","data":{"showtime_id":46,"layout_id":10,"starts_at":"2026-11-23T10:00:00.000Z","prices":[20000]}}
{"v":1,"shard":1,"lsn":6,"ts":"2026-11-21T09:12:06.000Z","type":"catalog.upsert","data":{"kind":"showtime","id":46,"entity":{"id":46,"movie_id":13,"prices":{"regular":20000},"screen_id":10,"start_ms":1795428000000,"start_time":"2026-11-23T10:00:00Z","theater_id":9}}}
{"v":1,"shard":1,"lsn":7,"ts":"2026-11-21T09:30:00.250Z","type":"booking.reserved","data":{"hold_id":$(h 1),"showtime_id":45,"user_id":31,"seats":[2,3],"amount":50000,"currency":"INR","expires_at":"2026-11-21T09:35:00.250Z"}}
{"v":1,"shard":1,"lsn":8,"ts":"2026-11-21T09:31:00.000Z","type":"hold.extended","data":{"hold_id":$(h 1),"expires_at":"2026-11-21T09:36:00.000Z"}}
{"v":1,"shard":1,"lsn":9,"ts":"2026-11-21T09:31:20.000Z","type":"booking.confirmed","data":{"booking_id":$(h 1),"hold_id":$(h 1),"method":"upi"}}
{"v":1,"shard":1,"lsn":10,"ts":"2026-11-21T09:32:00.000Z","type":"booking.reserved","data":{"hold_id":$(h 2),"showtime_id":45,"user_id":32,"seats":[0],"amount":15000,"currency":"INR","expires_at":"2026-11-21T09:37:00.000Z"}}
{"v":1,"shard":1,"lsn":11,"ts":"2026-11-21T09:33:00.000Z","type":"hold.released","data":{"hold_id":$(h 2)}}
{"v":1,"shard":1,"lsn":12,"ts":"2026-11-21T09:34:00.000Z","type":"booking.reserved","data":{"hold_id":$(h 3),"showtime_id":45,"user_id":33,"seats":[1],"amount":15000,"currency":"INR","expires_at":"2026-11-21T09:39:00.000Z"}}
{"v":1,"shard":1,"lsn":13,"ts":"2026-11-21T09:35:00.000Z","type":"hold.extended","data":{"hold_id":$(h 3),"expires_at":"2026-11-21T09:40:00.000Z"}}
{"v":1,"shard":1,"lsn":14,"ts":"2026-11-21T09:40:00.300Z","type":"hold.expired","data":{"hold_id":$(h 3)}}
EOF
cat >"$WORK/s1b.ndjson" <<EOF
{"v":1,"shard":1,"lsn":15,"ts":"2026-11-21T10:02:00.000Z","type":"booking.cancelled","data":{"booking_id":$(h 1),"refund":40000}}
{"v":1,"shard":1,"lsn":16,"ts":"2026-11-21T10:10:00.000Z","type":"booking.reserved","data":{"hold_id":$(h 6),"showtime_id":45,"user_id":33,"seats":[1],"amount":15000,"currency":"INR","expires_at":"2026-11-21T10:15:00.000Z"}}
{"v":1,"shard":1,"lsn":17,"ts":"2026-11-21T10:11:00.000Z","type":"booking.confirmed","data":{"booking_id":$(h 4),"hold_id":$(h 6),"method":"upi"}}
{"v":1,"shard":1,"lsn":18,"ts":"2026-11-21T10:20:00.000Z","type":"booking.reserved","data":{"hold_id":$(h 8),"showtime_id":45,"user_id":32,"seats":[0],"amount":15000,"currency":"INR","expires_at":"2026-11-21T10:25:00.000Z"}}
{"v":1,"shard":1,"lsn":19,"ts":"2026-11-21T10:21:00.000Z","type":"promo.applied","data":{"hold_id":$(h 8),"code":"FUTURE","new_member":true}}
{"v":1,"shard":1,"lsn":20,"ts":"2026-11-21T18:29:50.000Z","type":"booking.reserved","data":{"hold_id":$(h 4),"showtime_id":46,"user_id":31,"seats":[0,1,2],"amount":60000,"currency":"INR","expires_at":"2026-11-21T18:34:50.000Z"}}
{"v":1,"shard":1,"lsn":21,"ts":"2026-11-21T18:30:30.000Z","type":"booking.confirmed","data":{"booking_id":$(h 2),"hold_id":$(h 4),"method":"card"}}
{"v":1,"shard":1,"lsn":22,"ts":"2026-11-22T05:00:00.000Z","type":"booking.reserved","data":{"hold_id":$(h 5),"showtime_id":46,"user_id":32,"seats":[3],"amount":20000,"currency":"INR","expires_at":"2026-11-22T05:05:00.000Z"}}
{"v":1,"shard":1,"lsn":23,"ts":"2026-11-22T05:01:00.000Z","type":"booking.confirmed","data":{"booking_id":$(h 3),"hold_id":$(h 5),"method":"wallet"}}
{"v":1,"shard":1,"lsn":24,"ts":"2026-11-22T05:10:00.000Z","type":"booking.reserved","data":{"hold_id":$(h 7),"showtime_id":46,"user_id":33,"seats":[4,5],"amount":40000,"currency":"INR","expires_at":"2099-01-01T00:00:00.000Z"}}
EOF

echo "sql_check: applying the event batches"
check "empty batch on a new shard" "SELECT usher_apply(0, '[]')" "0"
[ "$(apply 0 "$WORK/s0.ndjson")" = 11 ] || { echo "FAIL shard 0 batch"; exit 1; }
# Catalog upserts are idempotent as such, but the LSN guard refuses a repeat all the same.
[ "$(apply 1 "$WORK/s1a.ndjson")" = 14 ] || { echo "FAIL shard 1 batch a"; exit 1; }
# An upgrade: 004 on a database with bookings (they become source 'reserve'); batch b and every
# later event go through 004's usher_apply.
migrate usher "${MIGRATIONS[@]:3}"
echo "sql_check: 004_onsale.sql applied on a database with data"
[ "$(apply 1 "$WORK/s1b.ndjson")" = 24 ] || { echo "FAIL shard 1 batch b"; exit 1; }
check "empty batch keeps the LSN" "SELECT usher_apply(1, '[]'), usher_apply(1, NULL)" "24|24"

check "export_state" "SELECT shard, lsn, snapshot_lsn, events FROM export_state ORDER BY shard" \
"0|11|0|11
1|24|0|24"
check "booking_events" \
"SELECT shard, count(*), min(lsn), max(lsn), count(hold_id), count(booking_id) FROM booking_events GROUP BY shard ORDER BY shard" \
"0|11|1|11|0|0
1|24|1|24|17|5"
check "unknown type recorded" \
"SELECT type, hold_id - $H, data->>'code' FROM booking_events WHERE shard = 1 AND lsn = 19" "promo.applied|8|FUTURE"

check "theaters" "SELECT id, name, city, address, updated_at, deleted_at IS NULL FROM theaters ORDER BY id" \
"7|Usher Cinemas Andheri|Mumbai|Link Road, Andheri West|2026-11-21 09:10:00+00|t
9|Usher Cinemas Shivajinagar|Pune|FC Road|2026-11-21 09:10:02+00|t"
check "screens" "SELECT id, theater_id, name, seat_count, doc->'layout'->>'best_row' FROM screens ORDER BY id" \
"8|7|Screen 1|4|B
10|9|Screen 2|6|C"
check "movies" "SELECT id, title, genre, language, duration_min, deleted_at FROM movies ORDER BY id" \
"12|Monsoon Wedding Redux|drama|hindi|142|
13|Orbit of Ash|sci-fi|english|151|
14|Withdrawn|comedy|tamil|90|2026-11-21 09:14:00+00"
check "users" "SELECT id, name, email, role, created_at FROM users ORDER BY id" \
"31|Asha|asha@example.com|customer|2026-11-21 09:12:04+00
32|Ravi|ravi@example.com|customer|2026-11-21 09:12:04+00
33|Meera|meera@example.com|customer|2026-11-21 09:12:04+00"
check "no password column" "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name LIKE '%pass%'" "0"
check "showtimes (catalog + opened, both orders)" \
"SELECT id, shard, movie_id, screen_id, theater_id, starts_at, layout_id, seat_count, prices, doc->>'start_ms' FROM showtimes ORDER BY id" \
"45|1|12|8|7|2026-11-22 14:30:00+00|8|4|[15000, 25000]|1795271400000
46|1|13|10|9|2026-11-23 10:00:00+00|10|6|[20000]|1795428000000"
check "layouts" "SELECT shard, id, categories, seat_labels, seat_categories FROM layouts ORDER BY shard, id" \
"1|8|{silver,gold}|{A1,A2,B1,B2}|{0,0,1,1}
1|10|{regular}|{C1,C2,C3,C4,C5,C6}|{0,0,0,0,0,0}"
check "bookings" \
"SELECT hold_id - $H, booking_id - $H, shard, showtime_id, user_id, seats, seat_labels, amount, refund, currency, method, status,
        reserved_at, expires_at, ended_at, confirmed_at, cancelled_at
   FROM bookings ORDER BY hold_id" \
"1|1|1|45|31|{2,3}|{B1,B2}|50000|40000|INR|upi|cancelled|2026-11-21 09:30:00.25+00|2026-11-21 09:36:00+00||2026-11-21 09:31:20+00|2026-11-21 10:02:00+00
2||1|45|32|{0}|{A1}|15000|0|INR||released|2026-11-21 09:32:00+00|2026-11-21 09:37:00+00|2026-11-21 09:33:00+00||
3||1|45|33|{1}|{A2}|15000|0|INR||expired|2026-11-21 09:34:00+00|2026-11-21 09:40:00+00|2026-11-21 09:40:00.3+00||
4|2|1|46|31|{0,1,2}|{C1,C2,C3}|60000|0|INR|card|confirmed|2026-11-21 18:29:50+00|2026-11-21 18:34:50+00||2026-11-21 18:30:30+00|
5|3|1|46|32|{3}|{C4}|20000|0|INR|wallet|confirmed|2026-11-22 05:00:00+00|2026-11-22 05:05:00+00||2026-11-22 05:01:00+00|
6|4|1|45|33|{1}|{A2}|15000|0|INR|upi|confirmed|2026-11-21 10:10:00+00|2026-11-21 10:15:00+00||2026-11-21 10:11:00+00|
7||1|46|33|{4,5}|{C5,C6}|40000|0|INR||held|2026-11-22 05:10:00+00|2099-01-01 00:00:00+00|||
8||1|45|32|{0}|{A1}|15000|0|INR||held|2026-11-21 10:20:00+00|2026-11-21 10:25:00+00|||"
check "bookings.source (holds 1-3 from before 004, the others after)" \
"SELECT source, count(*), min(hold_id) - $H, max(hold_id) - $H FROM bookings GROUP BY source" "reserve|8|1|8"

# ---------------------------------------------------------------------------------------------
echo "sql_check: the exactly-once guard"
snap_state() { q "SELECT (SELECT string_agg(shard || ':' || lsn || ':' || events, ',' ORDER BY shard) FROM export_state),
                         (SELECT count(*) FROM booking_events), (SELECT md5(string_agg(b::text, ',' ORDER BY hold_id)) FROM bookings b),
                         (SELECT md5(string_agg(s::text, ',' ORDER BY id)) FROM showtimes s)"; }
resv() {   # resv LSN HOLD [SHARD] [V]: one booking.reserved line of showtime 46
    echo "{\"v\":${4:-1},\"shard\":${3:-1},\"lsn\":$1,\"ts\":\"2026-11-22T06:00:00.000Z\",\"type\":\"booking.reserved\",\"data\":{\"hold_id\":$2,\"showtime_id\":46,\"user_id\":31,\"seats\":[0],\"amount\":20000,\"currency\":\"INR\",\"expires_at\":\"2026-11-22T06:05:00.000Z\"}}"
}
try_apply() {   # try_apply NAME SQLSTATE LINE...: usher_apply(1, [LINE, ...]) must fail with SQLSTATE
    local name=$1 state=$2 arr
    shift 2
    arr="[$(IFS=,; echo "$*")]"
    check_error "$name" "$state" -v batch="$arr" <<<"SELECT usher_apply(1, :'batch');"
}
before="$(snap_state)"
check_error "re-sending batch a" UR001 -v batch="$(batch "$WORK/s1a.ndjson")" <<<"SELECT usher_apply(1, :'batch');"
check_error "re-sending batch b" UR001 -v batch="$(batch "$WORK/s1b.ndjson")" <<<"SELECT usher_apply(1, :'batch');"
try_apply "re-sending the last event" UR001 "$(tail -n1 "$WORK/s1b.ndjson")"
try_apply "re-sending the last event before a new one" UR001 "$(tail -n1 "$WORK/s1b.ndjson")" "$(resv 25 "$(h 11)")"
try_apply "a gap (26 after 24)" UR001 "$(resv 26 "$(h 11)")"
try_apply "a gap inside a batch (25, 27)" UR001 "$(resv 25 "$(h 11)")" "$(resv 27 "$(h 12)")"
try_apply "format version 2" UR001 "$(resv 25 "$(h 11)" 1 2)"
try_apply "an event of another shard" UR001 "$(resv 25 "$(h 11)" 2)"
try_apply "not an object" UR001 "$(resv 25 "$(h 11)")" '"x"'
try_apply "a duplicate hold (an event applied twice)" 23505 "$(resv 25 "$(h 11)")" "$(resv 26 "$(h 7)")"
check_error "not an array" 22023 -c "SELECT usher_apply(1, '{\"v\":1}')"
after="$(snap_state)"
CHECKS=$((CHECKS + 1))
[ "$before" = "$after" ] || { echo "FAIL state changed by refused batches: $before -> $after"; FAILS=$((FAILS + 1)); }
msg="$("${PSQL[@]}" -d usher -v batch="[$(resv 30 "$(h 11)")]" <<<"SELECT usher_apply(1, :'batch');" 2>&1 || true)"
CHECKS=$((CHECKS + 1))
grep -q 'expected LSN 25, got 30' <<<"$msg" || { echo "FAIL UR001 message: $msg"; FAILS=$((FAILS + 1)); }
echo "  ok message: $(grep -m1 ERROR <<<"$msg")"

# A reservation on a showtime whose layout is unknown (shard 2): seat_labels NULL.
check "seat_labels NULL without a layout" \
"BEGIN; DO \$\$ BEGIN PERFORM usher_apply(2, '[{\"v\":1,\"shard\":2,\"lsn\":1,\"ts\":\"2026-11-21T11:00:00Z\",\"type\":\"booking.reserved\",\"data\":{\"hold_id\":562949953421313,\"showtime_id\":99,\"user_id\":31,\"seats\":[0],\"amount\":100,\"currency\":\"INR\",\"expires_at\":\"2026-11-21T11:05:00Z\"}}]'); END \$\$;
 SELECT status, seat_labels IS NULL, shard FROM bookings WHERE hold_id = 562949953421313; ROLLBACK" "held|t|2"

# ---------------------------------------------------------------------------------------------
echo "sql_check: analytics views"
# Sales: hold 1 (cancelled, refund 40000), 4, 5, 6. Days in Asia/Kolkata (UTC+5:30): hold 4 was
# placed at 18:29:50Z, 23:59:50 on the 21st there, and confirmed at 18:30:30Z, 00:00:30 on the 22nd.
check_ist "revenue_daily (IST)" "SELECT bucket, bookings, tickets, gross, refunds, net FROM revenue_daily ORDER BY bucket" \
"2026-11-21 00:00:00+05:30|2|3|65000|40000|25000
2026-11-22 00:00:00+05:30|2|4|80000|0|80000"
check "revenue_daily (UTC)" "SELECT bucket, bookings, tickets, gross, refunds, net FROM revenue_daily ORDER BY bucket" \
"2026-11-21 00:00:00+00|3|6|125000|40000|85000
2026-11-22 00:00:00+00|1|1|20000|0|20000"
check_ist "revenue_daily, last 30 days" "SELECT count(*) FROM revenue_daily WHERE bucket >= TIMESTAMPTZ '2026-11-22 12:00+05:30' - interval '30 days'" "2"
check_ist "revenue_weekly" "SELECT bucket, bookings, tickets, gross, refunds, net FROM revenue_weekly ORDER BY bucket" \
"2026-11-16 00:00:00+05:30|4|7|145000|40000|105000"
check_ist "revenue_monthly" "SELECT bucket, bookings, tickets, gross, refunds, net FROM revenue_monthly ORDER BY bucket" \
"2026-11-01 00:00:00+05:30|4|7|145000|40000|105000"
check "revenue_by_movie" "SELECT * FROM revenue_by_movie ORDER BY movie_id" \
"12|Monsoon Wedding Redux|2|3|65000|40000|25000
13|Orbit of Ash|2|4|80000|0|80000"
check "revenue_by_theater" "SELECT * FROM revenue_by_theater ORDER BY theater_id" \
"7|Usher Cinemas Andheri|Mumbai|2|3|65000|40000|25000
9|Usher Cinemas Shivajinagar|Pune|2|4|80000|0|80000"
check "revenue_by_genre" "SELECT * FROM revenue_by_genre ORDER BY genre" \
"drama|2|3|65000|40000|25000
sci-fi|2|4|80000|0|80000"
check "avg_ticket_price" "SELECT * FROM avg_ticket_price" "4|7|145000|105000|20714.29|15000.00"
check "avg_ticket_price_by_movie" "SELECT * FROM avg_ticket_price_by_movie ORDER BY movie_id" \
"12|Monsoon Wedding Redux|2|3|21666.67|8333.33
13|Orbit of Ash|2|4|20000.00|20000.00"
# Showtime 45: hold 6's seat sold (hold 1 was cancelled), hold 8 is 'held' but past expires_at.
check "occupancy_by_showtime" "SELECT * FROM occupancy_by_showtime ORDER BY showtime_id" \
"45|12|Monsoon Wedding Redux|7|Usher Cinemas Andheri|2026-11-22 14:30:00+00|4|1|0|0.2500
46|13|Orbit of Ash|9|Usher Cinemas Shivajinagar|2026-11-23 10:00:00+00|6|4|2|0.6667"
check_ist "conversion_daily" "SELECT * FROM conversion_daily ORDER BY day" \
"2026-11-21 00:00:00+05:30|6|3|0.5000
2026-11-22 00:00:00+05:30|2|1|0.5000"
check "conversion_by_movie" "SELECT * FROM conversion_by_movie ORDER BY movie_id" \
"12|Monsoon Wedding Redux|5|2|0.4000
13|Orbit of Ash|3|2|0.6667"
check "cancellation_rate_by_movie" "SELECT * FROM cancellation_rate_by_movie ORDER BY movie_id" \
"12|Monsoon Wedding Redux|2|1|0.5000|40000
13|Orbit of Ash|2|0|0.0000|0"
check "cancellation_rate_by_theater" "SELECT * FROM cancellation_rate_by_theater ORDER BY theater_id" \
"7|Usher Cinemas Andheri|Mumbai|2|1|0.5000|40000
9|Usher Cinemas Shivajinagar|Pune|2|0|0.0000|0"
# 2026-11-21 is a Saturday (isodow 6).
check_ist "peak_booking_hours" "SELECT * FROM peak_booking_hours ORDER BY isodow, hour" \
"6|15|2|3
7|0|1|3
7|10|1|1"
check_ist "customers_new_vs_returning" "SELECT * FROM customers_new_vs_returning ORDER BY day" \
"2026-11-21 00:00:00+05:30|2|2|0
2026-11-22 00:00:00+05:30|2|1|1"
check "user_lifetime_value" "SELECT * FROM user_lifetime_value ORDER BY user_id" \
"31|Asha|asha@example.com|2|5|110000|40000|70000|2026-11-21 09:31:20+00|2026-11-21 18:30:30+00
32|Ravi|ravi@example.com|1|1|20000|0|20000|2026-11-22 05:01:00+00|2026-11-22 05:01:00+00
33|Meera|meera@example.com|1|1|15000|0|15000|2026-11-21 10:11:00+00|2026-11-21 10:11:00+00"
check "top_users" "SELECT user_id, net FROM top_users" \
"31|70000
32|20000
33|15000"

# ---------------------------------------------------------------------------------------------
echo "sql_check: snapshot bootstrap"
check_error "snapshot rows without begin" UR003 -c "SELECT usher_snapshot_rows(1, '[]')"
check_error "snapshot end without begin" UR003 -c "SELECT usher_snapshot_end(1, 30)"
check_error "snapshot end for another shard" UR003 <<<"BEGIN; SELECT usher_snapshot_begin(1); SELECT usher_snapshot_end(2, 30); COMMIT;"

# Shard 1 at S = 30 (this database has 24): showtime 45 is gone from the catalog, 47 is new;
# layout 8 is gone; hold 7 was confirmed, booking 2 (hold 4) cancelled; hold 8 ended unseen
# (lapsed); hold 9 is new and live; booking 5 (hold 10) is new.
cat >"$WORK/snap1.ndjson" <<EOF
{"v":1,"shard":1,"type":"snapshot.catalog","data":{"kind":"showtime","id":46,"entity":{"id":46,"movie_id":13,"prices":{"regular":20000},"screen_id":10,"start_ms":1795428000000,"start_time":"2026-11-23T10:00:00Z","theater_id":9}}}
{"v":1,"shard":1,"type":"snapshot.catalog","data":{"kind":"showtime","id":47,"entity":{"id":47,"movie_id":13,"prices":{"regular":22000},"screen_id":10,"start_ms":1795438800000,"start_time":"2026-11-23T13:00:00Z","theater_id":9}}}
{"v":1,"shard":1,"type":"snapshot.layout","data":{"layout_id":10,"categories":["regular"],"seat_labels":["C1","C2","C3","C4","C5","C6"],"seat_categories":[0,0,0,0,0,0]}}
{"v":1,"shard":1,"type":"snapshot.showtime","data":{"showtime_id":46,"layout_id":10,"starts_at":"2026-11-23T10:00:00.000Z","prices":[20000],"seat_count":6,"held":0,"sold":3}}
{"v":1,"shard":1,"type":"snapshot.showtime","data":{"showtime_id":47,"layout_id":10,"starts_at":"2026-11-23T13:00:00.000Z","prices":[22000],"seat_count":6,"held":1,"sold":2}}
{"v":1,"shard":1,"type":"snapshot.hold","data":{"hold_id":$(h 9),"showtime_id":47,"user_id":31,"seats":[0],"amount":22000,"currency":"INR","reserved_at":"2026-11-22T05:20:00.000Z","expires_at":"2099-01-01T00:00:00.000Z"}}
{"v":1,"shard":1,"type":"snapshot.booking","data":{"booking_id":$(h 2),"hold_id":$(h 4),"showtime_id":46,"user_id":31,"seats":[0,1,2],"amount":60000,"refund":30000,"currency":"INR","method":"card","status":"cancelled","confirmed_at":"2026-11-21T18:30:30.000Z","cancelled_at":"2026-11-22T05:30:00.000Z"}}
{"v":1,"shard":1,"type":"snapshot.booking","data":{"booking_id":$(h 3),"hold_id":$(h 5),"showtime_id":46,"user_id":32,"seats":[3],"amount":20000,"refund":0,"currency":"INR","method":"wallet","status":"confirmed","confirmed_at":"2026-11-22T05:01:00.000Z","cancelled_at":null}}
{"v":1,"shard":1,"type":"snapshot.booking","data":{"booking_id":$(h 5),"hold_id":$(h 7),"showtime_id":46,"user_id":33,"seats":[4,5],"amount":40000,"refund":0,"currency":"INR","method":"upi","status":"confirmed","confirmed_at":"2026-11-22T05:12:00.000Z","cancelled_at":null}}
{"v":1,"shard":1,"type":"snapshot.booking","data":{"booking_id":$(h 6),"hold_id":$(h 10),"showtime_id":47,"user_id":32,"seats":[1,2],"amount":44000,"refund":0,"currency":"INR","method":"upi","status":"confirmed","confirmed_at":"2026-11-22T05:25:00.000Z","cancelled_at":null}}
EOF
# The exporter sends the lines in chunks: here two calls.
head -n 5 "$WORK/snap1.ndjson" >"$WORK/snap1a.ndjson"
tail -n +6 "$WORK/snap1.ndjson" >"$WORK/snap1b.ndjson"
out="$("${PSQL[@]}" -A -t -d usher -v r1="$(batch "$WORK/snap1a.ndjson")" -v r2="$(batch "$WORK/snap1b.ndjson")" <<'EOF'
BEGIN;
SELECT usher_snapshot_begin(1);
SELECT usher_snapshot_rows(1, :'r1');
SELECT usher_snapshot_rows(1, '[{"v":1,"shard":1,"type":"snapshot.begin","lsn":30,"ts":"2026-11-22T05:30:00.000Z"}]');
SELECT usher_snapshot_rows(1, :'r2');
SELECT usher_snapshot_end(1, 30);
COMMIT;
EOF
)"
check_value "snapshot rows applied" "$(nonblank "$out")" "5 0 5"
check "snapshot: export_state" "SELECT shard, lsn, snapshot_lsn, events FROM export_state ORDER BY shard" \
"0|11|0|11
1|30|30|24"
check "snapshot: showtimes (45 soft-deleted, 47 new)" \
"SELECT id, movie_id, layout_id, seat_count, prices, starts_at, deleted_at IS NOT NULL, deleted_at > now() - interval '1 minute' FROM showtimes ORDER BY id" \
"45|12|8|4|[15000, 25000]|2026-11-22 14:30:00+00|t|t
46|13|10|6|[20000]|2026-11-23 10:00:00+00|f|
47|13|10|6|[22000]|2026-11-23 13:00:00+00|f|"
check "snapshot: layouts (8 gone)" "SELECT shard, id FROM layouts ORDER BY shard, id" "1|10"
check "snapshot: bookings" \
"SELECT hold_id - $H, booking_id - $H, showtime_id, user_id, seat_labels, amount, refund, method, status,
        reserved_at, expires_at, ended_at IS NOT NULL, confirmed_at, cancelled_at
   FROM bookings ORDER BY hold_id" \
"1|1|45|31|{B1,B2}|50000|40000|upi|cancelled|2026-11-21 09:30:00.25+00|2026-11-21 09:36:00+00|f|2026-11-21 09:31:20+00|2026-11-21 10:02:00+00
2||45|32|{A1}|15000|0||released|2026-11-21 09:32:00+00|2026-11-21 09:37:00+00|t||
3||45|33|{A2}|15000|0||expired|2026-11-21 09:34:00+00|2026-11-21 09:40:00+00|t||
4|2|46|31|{C1,C2,C3}|60000|30000|card|cancelled|2026-11-21 18:29:50+00|2026-11-21 18:34:50+00|f|2026-11-21 18:30:30+00|2026-11-22 05:30:00+00
5|3|46|32|{C4}|20000|0|wallet|confirmed|2026-11-22 05:00:00+00|2026-11-22 05:05:00+00|f|2026-11-22 05:01:00+00|
6|4|45|33|{A2}|15000|0|upi|confirmed|2026-11-21 10:10:00+00|2026-11-21 10:15:00+00|f|2026-11-21 10:11:00+00|
7|5|46|33|{C5,C6}|40000|0|upi|confirmed|2026-11-22 05:10:00+00|2099-01-01 00:00:00+00|f|2026-11-22 05:12:00+00|
8||45|32|{A1}|15000|0||lapsed|2026-11-21 10:20:00+00|2026-11-21 10:25:00+00|t||
9||47|31|{C1}|22000|0||held|2026-11-22 05:20:00+00|2099-01-01 00:00:00+00|f||
10|6|47|32|{C2,C3}|44000|0|upi|confirmed|||f|2026-11-22 05:25:00+00|"
check "snapshot: lapsed at now()" "SELECT ended_at > now() - interval '1 minute' FROM bookings WHERE hold_id = $(h 8)" "t"
check "snapshot: occupancy after" "SELECT showtime_id, sold, held, occupancy FROM occupancy_by_showtime ORDER BY showtime_id" \
"45|1|0|0.2500
46|3|0|0.5000
47|2|1|0.3333"

before="$(snap_state)"
check_error "snapshot going backwards (29 < 30)" UR002 <<<"BEGIN; SELECT usher_snapshot_begin(1); SELECT usher_snapshot_end(1, 29); COMMIT;"
check_error "snapshot end with NULL LSN" UR002 <<<"BEGIN; SELECT usher_snapshot_begin(1); SELECT usher_snapshot_end(1, NULL); COMMIT;"
check_error "snapshot line of another shard" UR003 <<<"BEGIN; SELECT usher_snapshot_begin(1); SELECT usher_snapshot_rows(1, '[{\"v\":1,\"shard\":2,\"type\":\"snapshot.layout\",\"data\":{}}]'); COMMIT;"
after="$(snap_state)"
CHECKS=$((CHECKS + 1))
[ "$before" = "$after" ] || { echo "FAIL state changed by refused snapshots: $before -> $after"; FAILS=$((FAILS + 1)); }
try_apply "stream from an LSN before the snapshot (25)" UR001 "$(resv 25 "$(h 11)")"
check "stream continues at S + 1" \
"SELECT usher_apply(1, '[{\"v\":1,\"shard\":1,\"lsn\":31,\"ts\":\"2026-11-22T06:00:00.000Z\",\"type\":\"hold.expired\",\"data\":{\"hold_id\":$(h 9)}}]')" "31"
check "hold 9 expired" "SELECT status, ended_at FROM bookings WHERE hold_id = $(h 9)" "expired|2026-11-22 06:00:00+00"
# Releasing a hold that is no longer 'held' changes nothing.
check "hold.released of ended holds" \
"SELECT usher_apply(1, '[{\"v\":1,\"shard\":1,\"lsn\":32,\"ts\":\"2026-11-22T06:01:00.000Z\",\"type\":\"hold.released\",\"data\":{\"hold_id\":$(h 9)}},
                         {\"v\":1,\"shard\":1,\"lsn\":33,\"ts\":\"2026-11-22T06:01:00.000Z\",\"type\":\"hold.expired\",\"data\":{\"hold_id\":$(h 7)}}]')" "33"
check "... statuses kept" "SELECT hold_id - $H, status, ended_at FROM bookings WHERE hold_id IN ($(h 7), $(h 9)) ORDER BY hold_id" \
"7|confirmed|
9|expired|2026-11-22 06:00:00+00"

# Shard 0 bootstrap at its current LSN (allowed: equal): user 33 and movie 13 are gone from the
# catalog, theater 9 was renamed; movie 14 keeps the deleted_at of its catalog.delete.
cat >"$WORK/snap0.ndjson" <<EOF
{"v":1,"shard":0,"type":"snapshot.catalog","data":{"kind":"theater","id":7,"entity":{"address":"Link Road, Andheri West","city":"Mumbai","id":7,"name":"Usher Cinemas Andheri"}}}
{"v":1,"shard":0,"type":"snapshot.catalog","data":{"kind":"theater","id":9,"entity":{"address":"FC Road","city":"Pune","id":9,"name":"Usher Cinemas FC Road"}}}
{"v":1,"shard":0,"type":"snapshot.catalog","data":{"kind":"screen","id":8,"entity":{"id":8,"layout":{"best_row":"B","categories":["silver","gold"],"rows":[{"accessible":[],"aisles_after":[],"blocked":[],"category":"silver","companion":[],"label":"A","seats":2},{"accessible":[],"aisles_after":[],"blocked":[],"category":"gold","companion":[],"label":"B","seats":2}]},"name":"Screen 1","theater_id":7}}}
{"v":1,"shard":0,"type":"snapshot.catalog","data":{"kind":"screen","id":10,"entity":{"id":10,"layout":{"best_row":"C","categories":["regular"],"rows":[{"accessible":[1],"aisles_after":[3],"blocked":[],"category":"regular","companion":[2],"label":"C","seats":6}]},"name":"Screen 2","theater_id":9}}}
{"v":1,"shard":0,"type":"snapshot.catalog","data":{"kind":"movie","id":12,"entity":{"duration_min":142,"genre":"drama","id":12,"language":"hindi","title":"Monsoon Wedding Redux"}}}
{"v":1,"shard":0,"type":"snapshot.catalog","data":{"kind":"user","id":31,"entity":{"created_at":"2026-11-21T09:12:04Z","email":"asha@example.com","id":31,"name":"Asha","role":"customer"}}}
{"v":1,"shard":0,"type":"snapshot.catalog","data":{"kind":"user","id":32,"entity":{"created_at":"2026-11-21T09:12:04Z","email":"ravi@example.com","id":32,"name":"Ravi","role":"customer"}}}
EOF
"${PSQL[@]}" -A -t -d usher -v r="$(batch "$WORK/snap0.ndjson")" >/dev/null <<'EOF'
BEGIN;
SELECT usher_snapshot_begin(0);
SELECT usher_snapshot_rows(0, :'r');
SELECT usher_snapshot_end(0, 11);
COMMIT;
EOF
check "snapshot 0: theaters (unchanged row untouched)" \
"SELECT id, name, updated_at = '2026-11-21 09:10:00+00', deleted_at FROM theaters ORDER BY id" \
"7|Usher Cinemas Andheri|t|
9|Usher Cinemas FC Road|f|"
check "snapshot 0: movies" \
"SELECT id, deleted_at IS NOT NULL, deleted_at = '2026-11-21 09:14:00+00' FROM movies ORDER BY id" \
"12|f|
13|t|f
14|t|t"
check "snapshot 0: users" "SELECT id, deleted_at IS NOT NULL FROM users ORDER BY id" \
"31|f
32|f
33|t"
check "snapshot 0: showtimes of shard 1 untouched" "SELECT id, deleted_at IS NOT NULL FROM showtimes ORDER BY id" \
"45|t
46|f
47|f"
check "snapshot 0: export_state" "SELECT shard, lsn, snapshot_lsn FROM export_state ORDER BY shard" \
"0|11|11
1|33|30"
check "catalog.upsert after a soft delete" \
"SELECT usher_apply(0, '[{\"v\":1,\"shard\":0,\"lsn\":12,\"ts\":\"2026-11-22T06:00:00.000Z\",\"type\":\"catalog.upsert\",\"data\":{\"kind\":\"user\",\"id\":33,\"entity\":{\"created_at\":\"2026-11-21T09:12:04Z\",\"email\":\"meera@example.org\",\"id\":33,\"name\":\"Meera\",\"role\":\"admin\"}}}]')" "12"
check "... clears deleted_at" "SELECT email || ' ' || role || ' ' || (deleted_at IS NULL) FROM users WHERE id = 33" "meera@example.org admin true"

# Two bootstraps of one shard in one session (the exporter keeps its connection): the temporary
# table of the first is gone with its transaction, the second starts clean.
out="$("${PSQL[@]}" -A -t -d usher <<'EOF'
BEGIN; SELECT usher_snapshot_begin(7);
SELECT usher_snapshot_rows(7, '[{"v":1,"shard":7,"type":"snapshot.layout","data":{"layout_id":1,"categories":["a"],"seat_labels":["A1"],"seat_categories":[0]}}]');
SELECT usher_snapshot_end(7, 5); COMMIT;
BEGIN; SELECT usher_snapshot_begin(7); SELECT usher_snapshot_begin(7);
SELECT usher_snapshot_rows(7, '[{"v":1,"shard":7,"type":"snapshot.layout","data":{"layout_id":2,"categories":["a"],"seat_labels":["A1"],"seat_categories":[0]}}]');
SELECT usher_snapshot_end(7, 6); COMMIT;
SELECT string_agg(id::text, ',') FROM layouts WHERE shard = 7;
SELECT lsn || ' ' || snapshot_lsn FROM export_state WHERE shard = 7;
EOF
)"
check_value "two bootstraps in one session" "$(nonblank "$out")" "1 1 2 6 6"

# ---------------------------------------------------------------------------------------------
echo "sql_check: waiting lists, queues and price changes (004_onsale.sql)"
# Shard 1 goes on from LSN 33. Showtime 47 (layout 10: C1..C6, prices [22000]; C2, C3 sold): a
# queue (user 33 leaves before the start), a price change to 24000, a waiting list whose first
# offer (C4, C5 at the new price) is confirmed and whose second (C6) expires. Showtime 46: an offer
# released; a queue removed after one admission and configured again (a second queue, from place 0).
cat >"$WORK/w1.ndjson" <<EOF
{"v":1,"shard":1,"lsn":34,"ts":"2026-11-22T06:10:00.000Z","type":"queue.configured","data":{"showtime_id":47,"rate_per_second":2,"starts_at":"2026-11-22T06:30:00.000Z"}}
{"v":1,"shard":1,"lsn":35,"ts":"2026-11-22T06:11:00.000Z","type":"queue.joined","data":{"showtime_id":47,"user_id":31}}
{"v":1,"shard":1,"lsn":36,"ts":"2026-11-22T06:12:00.000Z","type":"queue.joined","data":{"showtime_id":47,"user_id":32}}
{"v":1,"shard":1,"lsn":37,"ts":"2026-11-22T06:13:00.000Z","type":"queue.joined","data":{"showtime_id":47,"user_id":33}}
{"v":1,"shard":1,"lsn":38,"ts":"2026-11-22T06:14:00.000Z","type":"queue.left","data":{"showtime_id":47,"user_id":33}}
{"v":1,"shard":1,"lsn":39,"ts":"2026-11-22T06:30:00.000Z","type":"queue.started","data":{"showtime_id":47}}
{"v":1,"shard":1,"lsn":40,"ts":"2026-11-22T06:30:01.000Z","type":"queue.admitted","data":{"showtime_id":47,"admitted_through":3}}
{"v":1,"shard":1,"lsn":41,"ts":"2026-11-22T06:40:00.000Z","type":"showtime.repriced","data":{"showtime_id":47,"prices":[24000]}}
{"v":1,"shard":1,"lsn":42,"ts":"2026-11-22T06:41:00.000Z","type":"waitlist.joined","data":{"showtime_id":47,"user_id":31,"count":2,"category":0}}
{"v":1,"shard":1,"lsn":43,"ts":"2026-11-22T06:42:00.000Z","type":"waitlist.joined","data":{"showtime_id":47,"user_id":32,"count":1,"category":null}}
{"v":1,"shard":1,"lsn":44,"ts":"2026-11-22T06:43:00.000Z","type":"waitlist.joined","data":{"showtime_id":47,"user_id":33,"count":1,"category":null}}
{"v":1,"shard":1,"lsn":45,"ts":"2026-11-22T06:44:00.000Z","type":"waitlist.left","data":{"showtime_id":47,"user_id":33}}
EOF
cat >"$WORK/w2.ndjson" <<EOF
{"v":1,"shard":1,"lsn":46,"ts":"2026-11-22T06:50:00.000Z","type":"waitlist.offered","data":{"hold_id":$(h 12),"showtime_id":47,"user_id":31,"seats":[3,4],"amount":48000,"currency":"INR","expires_at":"2026-11-22T06:55:00.000Z"}}
{"v":1,"shard":1,"lsn":47,"ts":"2026-11-22T06:52:00.000Z","type":"booking.confirmed","data":{"booking_id":$(h 7),"hold_id":$(h 12),"method":"upi"}}
{"v":1,"shard":1,"lsn":48,"ts":"2026-11-22T06:53:00.000Z","type":"waitlist.offered","data":{"hold_id":$(h 13),"showtime_id":47,"user_id":32,"seats":[5],"amount":24000,"currency":"INR","expires_at":"2026-11-22T06:58:00.000Z"}}
{"v":1,"shard":1,"lsn":49,"ts":"2026-11-22T06:58:00.100Z","type":"hold.expired","data":{"hold_id":$(h 13)}}
{"v":1,"shard":1,"lsn":50,"ts":"2026-11-22T07:00:00.000Z","type":"waitlist.joined","data":{"showtime_id":46,"user_id":32,"count":1,"category":0}}
{"v":1,"shard":1,"lsn":51,"ts":"2026-11-22T07:01:00.000Z","type":"waitlist.offered","data":{"hold_id":$(h 14),"showtime_id":46,"user_id":32,"seats":[0],"amount":20000,"currency":"INR","expires_at":"2026-11-22T07:06:00.000Z"}}
{"v":1,"shard":1,"lsn":52,"ts":"2026-11-22T07:02:00.000Z","type":"hold.released","data":{"hold_id":$(h 14)}}
{"v":1,"shard":1,"lsn":53,"ts":"2026-11-22T07:03:00.000Z","type":"queue.configured","data":{"showtime_id":46,"rate_per_second":5,"starts_at":"2026-11-22T07:10:00.000Z"}}
{"v":1,"shard":1,"lsn":54,"ts":"2026-11-22T07:04:00.000Z","type":"queue.joined","data":{"showtime_id":46,"user_id":31}}
{"v":1,"shard":1,"lsn":55,"ts":"2026-11-22T07:10:00.000Z","type":"queue.started","data":{"showtime_id":46}}
{"v":1,"shard":1,"lsn":56,"ts":"2026-11-22T07:10:01.000Z","type":"queue.admitted","data":{"showtime_id":46,"admitted_through":1}}
{"v":1,"shard":1,"lsn":57,"ts":"2026-11-22T07:20:00.000Z","type":"queue.configured","data":{"showtime_id":46,"rate_per_second":0,"starts_at":null}}
{"v":1,"shard":1,"lsn":58,"ts":"2026-11-22T07:21:00.000Z","type":"queue.configured","data":{"showtime_id":46,"rate_per_second":5,"starts_at":"2026-11-22T07:30:00.000Z"}}
{"v":1,"shard":1,"lsn":59,"ts":"2026-11-22T07:22:00.000Z","type":"queue.joined","data":{"showtime_id":46,"user_id":32}}
{"v":1,"shard":1,"lsn":60,"ts":"2026-11-22T07:23:00.000Z","type":"queue.joined","data":{"showtime_id":46,"user_id":33}}
{"v":1,"shard":1,"lsn":61,"ts":"2026-11-22T07:30:00.000Z","type":"queue.started","data":{"showtime_id":46}}
{"v":1,"shard":1,"lsn":62,"ts":"2026-11-22T07:30:01.000Z","type":"queue.admitted","data":{"showtime_id":46,"admitted_through":2}}
EOF
check "showtime 47 before the price change" "SELECT prices FROM showtimes WHERE id = 47" "[22000]"
[ "$(apply 1 "$WORK/w1.ndjson")" = 45 ] || { echo "FAIL shard 1 batch w1"; exit 1; }
check "showtime.repriced: prices (other columns and existing holds unchanged)" \
"SELECT s.id, s.prices, s.updated_at, s.layout_id, s.seat_count, s.starts_at, s.movie_id, s.doc->'prices',
        (SELECT string_agg((hold_id - $H) || ':' || amount, ',' ORDER BY hold_id) FROM bookings WHERE showtime_id = 47)
   FROM showtimes s WHERE s.id = 47" \
"47|[24000]|2026-11-22 06:40:00+00|10|6|2026-11-23 13:00:00+00|13|{\"regular\": 22000}|9:22000,10:44000"
check "showtime.repriced of an unknown showtime changes nothing" \
"BEGIN; DO \$\$ BEGIN PERFORM usher_apply(2, '[{\"v\":1,\"shard\":2,\"lsn\":1,\"ts\":\"2026-11-22T06:40:00Z\",\"type\":\"showtime.repriced\",\"data\":{\"showtime_id\":99,\"prices\":[1]}}]'); END \$\$;
 SELECT count(*), (SELECT type FROM booking_events WHERE shard = 2) FROM showtimes WHERE id = 99; ROLLBACK" "0|showtime.repriced"

# The guards with the new types: a re-sent batch, a gap, an offer repeating a hold.
before="$(snap_state)"
check_error "re-sending batch w1" UR001 -v batch="$(batch "$WORK/w1.ndjson")" <<<"SELECT usher_apply(1, :'batch');"
check_error "a gap (batch w2 without its first event)" UR001 -v batch="$(batch <(tail -n +2 "$WORK/w2.ndjson"))" <<<"SELECT usher_apply(1, :'batch');"
check_error "batch w2 twice in one batch" UR001 -v batch="$(batch <(cat "$WORK/w2.ndjson" "$WORK/w2.ndjson"))" <<<"SELECT usher_apply(1, :'batch');"
try_apply "waitlist.offered of a hold already there" 23505 \
    "$(head -n1 "$WORK/w2.ndjson")" "$(head -n1 "$WORK/w2.ndjson" | sed 's/"lsn":46/"lsn":47/')"
try_apply "waitlist.offered of a reserved hold" 23505 \
    "$(head -n1 "$WORK/w2.ndjson" | sed "s/\"hold_id\":$(h 12)/\"hold_id\":$(h 9)/")"
after="$(snap_state)"
CHECKS=$((CHECKS + 1))
[ "$before" = "$after" ] || { echo "FAIL state changed by refused batches: $before -> $after"; FAILS=$((FAILS + 1)); }

revenue_probe() {   # the waitlist booking's marks on the views: must move by exactly its sale
    q "SELECT (SELECT gross FROM revenue_daily WHERE bucket = '2026-11-22'), (SELECT tickets FROM revenue_by_movie WHERE movie_id = 13),
              (SELECT net FROM revenue_by_theater WHERE theater_id = 9), (SELECT bookings FROM avg_ticket_price),
              (SELECT gross FROM user_lifetime_value WHERE user_id = 31), (SELECT sold FROM occupancy_by_showtime WHERE showtime_id = 47)"
}
rev_before="$(revenue_probe)"
[ "$(apply 1 "$WORK/w2.ndjson")" = 62 ] || { echo "FAIL shard 1 batch w2"; exit 1; }
rev_after="$(revenue_probe)"
check_value "revenue views count the confirmed offer (+48000, 2 tickets)" \
    "$(paste -d'|' <(tr '|' '\n' <<<"$rev_before") <(tr '|' '\n' <<<"$rev_after") | awk -F'|' '{ printf "%s%d", (NR > 1 ? "|" : ""), $2 - $1 }')" \
    "48000|2|48000|1|48000|2"
check "waitlist offers in bookings" \
"SELECT hold_id - $H, booking_id - $H, shard, showtime_id, user_id, seats, seat_labels, amount, currency, method, status, source,
        reserved_at, expires_at, ended_at, confirmed_at
   FROM bookings WHERE source = 'waitlist' ORDER BY hold_id" \
"12|7|1|47|31|{3,4}|{C4,C5}|48000|INR|upi|confirmed|waitlist|2026-11-22 06:50:00+00|2026-11-22 06:55:00+00||2026-11-22 06:52:00+00
13||1|47|32|{5}|{C6}|24000|INR||expired|waitlist|2026-11-22 06:53:00+00|2026-11-22 06:58:00+00|2026-11-22 06:58:00.1+00|
14||1|46|32|{0}|{C1}|20000|INR||released|waitlist|2026-11-22 07:01:00+00|2026-11-22 07:06:00+00|2026-11-22 07:02:00+00|"
check "bookings.source" "SELECT source, count(*) FROM bookings GROUP BY source ORDER BY source" \
"reserve|10
waitlist|3"
check "revenue_by_movie with the offer" "SELECT * FROM revenue_by_movie ORDER BY movie_id" \
"12|Monsoon Wedding Redux|2|3|65000|40000|25000
13|Orbit of Ash|5|10|212000|30000|182000"
check "new events in booking_events" \
"SELECT type, count(*), count(hold_id), count(booking_id) FROM booking_events WHERE shard = 1 AND lsn BETWEEN 34 AND 62 GROUP BY type ORDER BY type" \
"booking.confirmed|1|1|1
hold.expired|1|1|0
hold.released|1|1|0
queue.admitted|3|0|0
queue.configured|4|0|0
queue.joined|6|0|0
queue.left|1|0|0
queue.started|3|0|0
showtime.repriced|1|0|0
waitlist.joined|4|0|0
waitlist.left|1|0|0
waitlist.offered|3|3|0"
check "... data as received" \
"SELECT lsn, data FROM booking_events WHERE shard = 1 AND lsn IN (41, 43, 57) ORDER BY lsn" \
"41|{\"prices\": [24000], \"showtime_id\": 47}
43|{\"count\": 1, \"user_id\": 32, \"category\": null, \"showtime_id\": 47}
57|{\"starts_at\": null, \"showtime_id\": 46, \"rate_per_second\": 0}"
check "export_state after the on-sale batches" "SELECT lsn, events FROM export_state WHERE shard = 1" "62|56"
check "waitlist_conversion" "SELECT * FROM waitlist_conversion ORDER BY showtime_id" \
"46|1|0|1|0|1|0|0.0000
47|3|1|2|1|0|1|0.5000"
# 46: two queues (removed after admitting through place 1, configured again, admitted through 2).
check "queue_activity" "SELECT * FROM queue_activity ORDER BY showtime_id" \
"46|5|2026-11-22 07:30:00+00|2026-11-22 07:30:00+00|3|0|3
47|2|2026-11-22 06:30:00+00|2026-11-22 06:30:00+00|3|1|3"
try_apply "stream after the on-sale batches: a gap (64)" UR001 "$(resv 64 "$(h 15)")"
check "stream continues at 63" "SELECT usher_apply(1, '[$(resv 63 "$(h 15)")]')" "63"
check "... booking.reserved: source 'reserve'" "SELECT source, amount, seat_labels FROM bookings WHERE hold_id = $(h 15)" "reserve|20000|{C1}"

# snapshot.hold's "offer": shard 3 (hold ids 3 << 48), bootstrapped twice.
H3=$((3 * H))
cat >"$WORK/snap3.ndjson" <<EOF
{"v":1,"shard":3,"type":"snapshot.layout","data":{"layout_id":20,"categories":["regular"],"seat_labels":["D1","D2","D3"],"seat_categories":[0,0,0]}}
{"v":1,"shard":3,"type":"snapshot.showtime","data":{"showtime_id":300,"layout_id":20,"starts_at":"2026-11-24T10:00:00.000Z","prices":[18000],"seat_count":3,"held":3,"sold":0}}
{"v":1,"shard":3,"type":"snapshot.hold","data":{"hold_id":$((H3 + 1)),"showtime_id":300,"user_id":31,"seats":[0],"amount":18000,"currency":"INR","reserved_at":"2026-11-22T08:00:00.000Z","expires_at":"2099-01-01T00:00:00.000Z","offer":true}}
{"v":1,"shard":3,"type":"snapshot.hold","data":{"hold_id":$((H3 + 2)),"showtime_id":300,"user_id":32,"seats":[1],"amount":18000,"currency":"INR","reserved_at":"2026-11-22T08:01:00.000Z","expires_at":"2099-01-01T00:00:00.000Z","offer":false}}
{"v":1,"shard":3,"type":"snapshot.hold","data":{"hold_id":$((H3 + 3)),"showtime_id":300,"user_id":33,"seats":[2],"amount":18000,"currency":"INR","reserved_at":"2026-11-22T08:02:00.000Z","expires_at":"2099-01-01T00:00:00.000Z"}}
EOF
out="$("${PSQL[@]}" -A -t -d usher -v r="$(batch "$WORK/snap3.ndjson")" -v r2="$(batch <(sed -n 3p "$WORK/snap3.ndjson" | sed 's/,"offer":true//'))" <<'EOF'
BEGIN; SELECT usher_snapshot_begin(3); SELECT usher_snapshot_rows(3, :'r'); SELECT usher_snapshot_end(3, 10); COMMIT;
SELECT string_agg(source, ',' ORDER BY hold_id) FROM bookings WHERE shard = 3;
BEGIN; SELECT usher_snapshot_begin(3); SELECT usher_snapshot_rows(3, :'r2'); SELECT usher_snapshot_end(3, 20); COMMIT;
SELECT string_agg(source || ':' || status, ',' ORDER BY hold_id) FROM bookings WHERE shard = 3;
EOF
)"
# The second bootstrap lists only hold 1, without "offer": it stays 'waitlist'; 2 and 3 lapse.
check_value "snapshot.hold offer -> source" "$(nonblank "$out")" \
    "5 waitlist,reserve,reserve 1 waitlist:held,reserve:lapsed,reserve:lapsed"

# ---------------------------------------------------------------------------------------------
echo "sql_check: throughput (10,000 events, batches of 1,000, one transaction each)"
SH=5
HB=$((SH * 281474976710656))
{
    echo "{\"v\":1,\"shard\":$SH,\"lsn\":1,\"ts\":\"2026-11-21T09:00:00.000Z\",\"type\":\"catalog.upsert\",\"data\":{\"kind\":\"showtime\",\"id\":1000,\"entity\":{\"id\":1000,\"movie_id\":12,\"prices\":{\"silver\":15000,\"gold\":25000},\"screen_id\":8,\"start_ms\":1795271400000,\"start_time\":\"2026-11-22T14:30:00Z\",\"theater_id\":7}}}"
    labels="$(for r in A B C D E F G H I J; do for n in $(seq 1 20); do printf '"%s%s",' "$r" "$n"; done; done)"
    cats="$(for i in $(seq 1 200); do printf '%s,' $((i > 100)); done)"
    echo "{\"v\":1,\"shard\":$SH,\"lsn\":2,\"ts\":\"2026-11-21T09:00:00.000Z\",\"type\":\"layout.created\",\"data\":{\"layout_id\":8,\"categories\":[\"silver\",\"gold\"],\"seat_labels\":[${labels%,}],\"seat_categories\":[${cats%,}]}}"
    echo "{\"v\":1,\"shard\":$SH,\"lsn\":3,\"ts\":\"2026-11-21T09:00:00.000Z\",\"type\":\"showtime.opened\",\"data\":{\"showtime_id\":1000,\"layout_id\":8,\"starts_at\":\"2026-11-22T14:30:00.000Z\",\"prices\":[15000,25000]}}"
} >"$WORK/bench_setup.ndjson"
"${PSQL[@]}" -A -t -d bench -v batch="$(batch "$WORK/bench_setup.ndjson")" <<<"SELECT usher_apply($SH, :'batch');" >/dev/null
awk -v sh=$SH -v hb=$HB 'BEGIN {
    lsn = 3
    for (b = 0; b < 10; b++) {
        f = sprintf("'"$WORK"'/bench_%02d.ndjson", b)
        for (i = 0; i < 500; i++) {
            k = b * 500 + i + 1; s = (2 * k) % 200
            ms = k * 37; sec = int(ms / 1000) % 60; mn = int(ms / 60000) % 60
            ts = sprintf("2026-11-21T10:%02d:%02d.%03dZ", mn, sec, ms % 1000)
            printf "{\"v\":1,\"shard\":%d,\"lsn\":%d,\"ts\":\"%s\",\"type\":\"booking.reserved\",\"data\":{\"hold_id\":%.0f,\"showtime_id\":1000,\"user_id\":%d,\"seats\":[%d,%d],\"amount\":%d,\"currency\":\"INR\",\"expires_at\":\"2026-11-21T11:00:00.000Z\"}}\n", sh, ++lsn, ts, hb + k, 100 + k % 50, s, s + 1, (s >= 100 ? 50000 : 30000) > f
            printf "{\"v\":1,\"shard\":%d,\"lsn\":%d,\"ts\":\"%s\",\"type\":\"booking.confirmed\",\"data\":{\"booking_id\":%.0f,\"hold_id\":%.0f,\"method\":\"upi\"}}\n", sh, ++lsn, ts, hb + k, hb + k > f
        }
        close(f)
    }
}'
{
    printf '%s\n' '\timing on'
    for f in "$WORK"/bench_??.ndjson; do
        printf '\\set batch %s\n' "'$(batch "$f")'"
        echo "SELECT usher_apply($SH, :'batch');"
    done
} >"$WORK/bench.sql"
t0=$(date +%s%N)
"${PSQL[@]}" -A -t -d bench -f "$WORK/bench.sql" >"$WORK/bench.out"
t1=$(date +%s%N)
server_ms="$(awk '/^Time:/ { s += $2 } END { printf "%.1f", s }' "$WORK/bench.out")"
wall_ms="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')"
max_ms="$(awk '/^Time:/ { if ($2 > m) m = $2 } END { printf "%.1f", m }' "$WORK/bench.out")"
eps="$(awk -v ms="$server_ms" 'BEGIN { printf "%d", 10000 / (ms / 1000) }')"
eps_wall="$(awk -v ms="$wall_ms" 'BEGIN { printf "%d", 10000 / (ms / 1000) }')"
CHECKS=$((CHECKS + 1))
got="$("${PSQL[@]}" -A -t -d bench -c "SELECT (SELECT lsn FROM export_state WHERE shard = $SH), count(*), count(*) FILTER (WHERE status = 'confirmed'), count(*) FILTER (WHERE seat_labels IS NOT NULL AND cardinality(seat_labels) = 2 AND seat_labels[1] IS NOT NULL) FROM bookings")"
[ "$got" = "10003|5000|5000|5000" ] || { echo "FAIL bench state: $got"; FAILS=$((FAILS + 1)); }
echo "  10,000 events in 10 batches: ${server_ms} ms in usher_apply calls (slowest batch ${max_ms} ms), ${wall_ms} ms wall with psql"
echo "  => ${eps} events/s (server time), ${eps_wall} events/s (wall)"

echo "sql_check: $CHECKS checks, $FAILS failed"
[ "$FAILS" = 0 ]
