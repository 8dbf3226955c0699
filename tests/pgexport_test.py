#!/usr/bin/env python3
"""usher-pgexport end to end, against a real PostgreSQL (issue #6).

Starts a throwaway PostgreSQL cluster (initdb + pg_ctl on a private Unix
socket; as the `postgres` user when run as root, since initdb refuses root),
a usherd, and usher-pgexport, then:

  1. model:     books, confirms, cancels, releases and lets a hold expire
                through the API; once the exporter has caught up, every
                PostgreSQL row and analytics figure must match what the API
                said (statuses, amounts, refunds, methods, seat labels, sold
                seats per showtime, net revenue).
  2. stream:    the replication routes' errors (400, 401, 403, 416, 503),
                heartbeats, contiguous LSNs, and a stalled reader that the
                server does not buffer for.
  3. kill -9:   usher-bench drives bookings while the exporter is SIGKILLed
                and restarted at random moments (12 times); usherd is then
                SIGKILLed and restarted under the running exporter. A second
                exporter, never interrupted, fills another database from
                LSN 1: both databases must be identical, table by table.
  4. bootstrap: usherd restarts with 1 MiB WAL segments and 1 s snapshots
                until old WAL is gone; an exporter starting from LSN 1 gets
                410, bootstraps from the snapshot, and ends with the same
                bookings, catalog and position as the exporter that saw
                everything.

Environment: USHERD, PGEXPORT, BENCH (binaries); USHER_TEST_SEED (default:
time-based, printed) makes the kill schedule reproducible.
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import usherlib  # noqa: E402
from usherlib import free_port  # noqa: E402

USHERD = os.environ["USHERD"]
PGEXPORT = os.environ["PGEXPORT"]
BENCH = os.environ["BENCH"]
SEED = int(os.environ.get("USHER_TEST_SEED", str(int(time.time()) % 100000)))
REPL_TOKEN = "pgexport-test-replication-token-0123456789"
ADMIN_EMAIL, ADMIN_PW = "admin@pgexport.test", "pgexport-test-admin-pw"

rng = random.Random(SEED)
PG = None  # the cluster, stopped at exit


class Harness(usherlib.Harness):
    """fail() names the seed, prints the last 40 lines of each file and raises
    SystemExit; main's finally stops what was started and keeps the temp dir."""

    def fail(self, msg, *files):
        print(f"FAIL: {msg} (seed {SEED})", flush=True)
        for f in files:
            try:
                with open(f, errors="replace") as fh:
                    lines = fh.readlines()
                print(f"--- last lines of {f}:\n" + "".join(lines[-40:]), flush=True)
            except OSError:
                pass
        raise SystemExit(1)


H = Harness("usher-pgexport-test-")
os.chmod(H.tmp, 0o755)
tmp = H.tmp
procs = H.procs  # everything we started, stopped at exit
log, fail, check = H.log, H.fail, H.check


# ---- usherd and the exporter -------------------------------------------------------------


class Usherd(usherlib.Usherd):
    """2 shards, 10 s holds, 4 replication streams; start(extra) replaces the extra
    flags, which later starts keep."""

    def __init__(self, name, port, extra=()):
        super().__init__(
            H, USHERD, os.path.join(tmp, name), ADMIN_EMAIL, ADMIN_PW,
            ["--shards", "2", "--password-cost", "min", "--hold-ttl", "10",
             "--replication-streams", "4", "--rate-limit", "off"],
            port=port, env={"USHER_REPLICATION_TOKEN": REPL_TOKEN})
        self.extra = list(extra)

    def start(self, extra=None):
        if extra is not None:
            self.extra = list(extra)
        super().start(self.extra)


class Exporter:
    count = 0

    def __init__(self, pg, db, port, batch=None):
        Exporter.count += 1
        self.log = os.path.join(tmp, f"pgexport.{Exporter.count}.{db}.err")
        argv = [PGEXPORT, "--source", f"http://127.0.0.1:{port}", "--pg", pg.conninfo(db),
                "--token", REPL_TOKEN, "--stats-interval", "0"]
        if batch is not None:
            argv += ["--batch", str(batch)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        procs.append(self.proc)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            fail("usher-pgexport did not stop on SIGTERM", self.log)
        check(self.proc.returncode == 0, f"usher-pgexport exited {self.proc.returncode}",
              self.log)


# ---- HTTP ------------------------------------------------------------------------------------


def call(port, method, path, body=None, token=None, expect=None):
    return usherlib.Api(H, port, snippet=300).call(method, path, body, token, expect)


def login(port, email, pw):
    return usherlib.Api(H, port, snippet=300).login(email, pw)


def status(port):
    return call(port, "GET", "/api/replication/status", token=REPL_TOKEN, expect=200)[1]


def wait_caught_up(pg, db, port, exporter=None, timeout=120):
    """Waits until export_state equals every shard's durable LSN."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = status(port)
        want = {s["shard"]: s["durable_lsn"] for s in st["shards"]}
        got = {int(r[0]): int(r[1]) for r in pg.sql(db, "SELECT shard, lsn FROM export_state")
               } if pg.one(db, "SELECT to_regclass('export_state') IS NOT NULL") == "t" else {}
        if all(got.get(k) == v for k, v in want.items()):
            # Durable LSNs move only with writes; if none came meanwhile, we are there.
            if status(port)["shards"] == st["shards"]:
                return want
        if exporter is not None:
            check(exporter.proc.poll() is None, "the exporter died", exporter.log)
        time.sleep(0.2)
    fail(f"exporter into {db} did not catch up: want {want}, have {got}",
         exporter.log if exporter else "")


# ---- 1. Bookings through the API must match the rows -------------------------------------


def layout_rows():
    return [{"label": r, "category": "gold" if r in "CD" else "silver", "seats": 8}
            for r in "ABCD"]


def phase_model(pg, srv):
    port = srv.port
    admin = login(port, ADMIN_EMAIL, ADMIN_PW)
    _, th = call(port, "POST", "/api/theaters", {"name": "Export Plaza", "city": "Pune"}, admin,
                 201)
    screen_body = {"theater_id": th["id"], "name": "Screen X", "layout": {
        "categories": ["silver", "gold"], "rows": layout_rows()}}
    st, scr = call(port, "POST", "/api/screens", screen_body, admin)
    if st != 201:
        fail(f"screen create: {st} {scr}")
    _, mv = call(port, "POST", "/api/movies", {"title": "Replica", "duration_min": 100,
                                               "genre": "drama", "language": "marathi"}, admin, 201)
    showtimes = []
    for i in range(4):
        s = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + (5 + i) * 86400))
        _, sh = call(port, "POST", "/api/showtimes", {
            "movie_id": mv["id"], "screen_id": scr["id"], "start_time": s,
            "prices": {"silver": 15000, "gold": 25000}}, admin, 201)
        showtimes.append(sh["id"])
    users = []
    for i in range(3):
        email = f"u{i}@pgexport.test"
        call(port, "POST", "/api/auth/register",
             {"email": email, "password": "user-password-123", "name": f"User {i}"}, None, 201)
        users.append(login(port, email, "user-password-123"))

    model = {}  # hold_id -> expected row
    # The hold left to expire first: it has the longest to wait (hold TTL 10 s).
    _, h = call(port, "POST", "/api/bookings/reserve",
                {"showtime_id": showtimes[0], "seats": ["A1"]}, users[0], 201)
    model[h["hold_id"]] = {"status": "expired", "amount": h["amount"], "labels": ["A1"]}
    methods = ["upi", "card", "wallet"]
    seat_no = 2
    for i in range(12):
        u = users[i % 3]
        sid = showtimes[i % 4]
        labels = [f"{'ABCD'[i % 4]}{seat_no}", f"{'ABCD'[i % 4]}{seat_no + 1}"]
        seat_no += 2 if i % 4 == 3 else 0
        _, h = call(port, "POST", "/api/bookings/reserve", {"showtime_id": sid, "seats": labels},
                    u, 201)
        # Left alone, it expires during the wait below.
        row = {"status": "expired", "amount": h["amount"], "labels": labels, "showtime": sid}
        if i % 4 != 3:
            m = methods[i % 3]
            _, b = call(port, "POST", "/api/bookings/confirm",
                        {"hold_id": h["hold_id"], "payment": {"method": m}}, u, 201)
            row.update(status="confirmed", method=m, booking_id=b["booking_id"])
            if i % 4 == 2:
                _, c = call(port, "POST", f"/api/bookings/{b['booking_id']}/cancel", {}, u, 200)
                row.update(status="cancelled", refund=c["refund"])
        elif i % 8 == 3:
            call(port, "DELETE", f"/api/holds/{h['hold_id']}", None, u, 204)
            row["status"] = "released"
        model[h["hold_id"]] = row
    log(f"model: {len(model)} holds placed; waiting for the first to expire")
    time.sleep(12)  # hold TTL 10 s and the 1 s sweep
    _, h = call(port, "POST", "/api/bookings/reserve",
                {"showtime_id": showtimes[1], "seats": ["D8"]}, users[1], 201)
    model[h["hold_id"]] = {"status": "held", "amount": h["amount"], "labels": ["D8"]}

    ex = Exporter(pg, "a", port)
    wait_caught_up(pg, "a", port, ex)
    rows = {int(r[0]): r for r in pg.sql("a", """
        SELECT hold_id, status, amount, coalesce(method, ''), coalesce(refund, 0),
               array_to_string(seat_labels, ','), coalesce(booking_id, 0)
        FROM bookings""")}
    for hid, want in model.items():
        r = rows.get(hid)
        check(r is not None, f"hold {hid} missing from bookings", ex.log)
        check(r[1] == want["status"], f"hold {hid}: status {r[1]}, API said {want['status']}")
        check(int(r[2]) == want["amount"], f"hold {hid}: amount {r[2]} != {want['amount']}")
        check(r[3] == want.get("method", ""), f"hold {hid}: method {r[3]}")
        check(int(r[4]) == want.get("refund", 0), f"hold {hid}: refund {r[4]}")
        check(r[5] == ",".join(want["labels"]), f"hold {hid}: seats {r[5]} != {want['labels']}")
        check(int(r[6]) == want.get("booking_id", 0), f"hold {hid}: booking id {r[6]}")
    check(len(rows) == len(model), f"{len(rows)} booking rows for {len(model)} holds")
    net = sum(w["amount"] - w.get("refund", 0) for w in model.values()
              if w["status"] in ("confirmed", "cancelled"))
    got_net = int(pg.one("a", "SELECT coalesce(sum(net), 0) FROM revenue_daily"))
    check(got_net == net, f"revenue_daily net {got_net} != {net} from the API")
    got_movie = pg.sql("a", f"SELECT net FROM revenue_by_movie WHERE movie_id = {mv['id']}")
    check(got_movie and int(got_movie[0][0]) == net, f"revenue_by_movie: {got_movie} != {net}")
    for sid in showtimes:
        _, sm = call(port, "GET", f"/api/seats/{sid}", expect=200)
        sold = sum(1 for seat in sm["seats"] if seat["state"] == "sold")
        got = pg.one("a", f"SELECT sold FROM occupancy_by_showtime WHERE showtime_id = {sid}")
        check(got is not None and int(got) == sold,
              f"showtime {sid}: occupancy sold {got}, the seat map says {sold}")
    conv = pg.sql("a", f"SELECT reserved, confirmed FROM conversion_by_movie "
                       f"WHERE movie_id = {mv['id']}")
    confirmed = sum(1 for w in model.values() if w["status"] in ("confirmed", "cancelled"))
    check(conv and int(conv[0][0]) == len(model) and int(conv[0][1]) == confirmed,
          f"conversion_by_movie {conv}: want {len(model)} reserved, {confirmed} confirmed")
    cols = [r[0] for r in pg.sql("a", "SELECT column_name FROM information_schema.columns "
                                      "WHERE table_name = 'users'")]
    check(not any("password" in c for c in cols), f"users has a password column: {cols}")
    leaked = pg.one("a", "SELECT count(*) FROM booking_events WHERE data::text LIKE '%password%'")
    check(leaked == "0", "a password hash reached booking_events")
    users_n = pg.one("a", "SELECT count(*) FROM users")
    check(int(users_n) == 4, f"{users_n} users exported, want 4 (admin + 3)")
    log(f"model: {len(model)} holds match, net revenue {net}, occupancy and conversion match")
    return ex, users[0]


# ---- 2. The stream's own behaviour ------------------------------------------------------------


def raw_get(port, path, token, read_for=0.0, rcvbuf=None):
    """Sends GET; returns (status line, headers+body bytes read within read_for s)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
    data = b""
    deadline = time.time() + max(read_for, 0.5)
    s.settimeout(0.2)
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            if read_for == 0 and data:
                break
            continue
        if not chunk:
            break
        data += chunk
    return s, data


def dechunk(body):
    out, i = b"", 0
    while True:
        j = body.find(b"\r\n", i)
        if j < 0:
            return out
        n = int(body[i:j], 16)
        if n == 0 or j + 2 + n > len(body):
            return out
        out += body[j + 2:j + 2 + n]
        i = j + 2 + n + 2


def phase_stream(pg, srv, customer, ex):
    port = srv.port
    for path, token, code in [
            ("/api/replication?shard=0", None, 401),
            ("/api/replication?shard=0", customer, 403),
            ("/api/replication?shard=2", REPL_TOKEN, 400),
            ("/api/replication", REPL_TOKEN, 400),
            ("/api/replication?shard=0&from_lsn=0", REPL_TOKEN, 400),
            ("/api/replication?shard=0&from_lsn=999999999", REPL_TOKEN, 416),
            ("/api/replication/status", "not-the-token-at-all-but-long-enough-x", 401)]:
        st, body = call(port, "GET", path, token=token)
        check(st == code, f"GET {path}: {st} {body}, want {code}")
        check(body.get("type", "").startswith("https://usher.dev/problems/"),
              f"GET {path}: not a problem body: {body}")
    s, data = raw_get(port, "/api/replication?shard=0&from_lsn=999999999", REPL_TOKEN)
    s.close()
    check(data.startswith(b"HTTP/1.1 416 Range Not Satisfiable\r\n"), f"416 head: {data[:40]!r}")
    # A client that half-closes after its request still gets its stream.
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET /api/replication?shard=0&from_lsn=1 HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: Bearer {REPL_TOKEN}\r\n\r\n".encode())
    s.shutdown(socket.SHUT_WR)
    data, deadline = b"", time.time() + 1.5
    s.settimeout(0.2)
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
    s.close()
    lines = dechunk(data.partition(b"\r\n\r\n")[2]).splitlines()
    check(len(lines) > 10 and json.loads(lines[0])["lsn"] == 1,
          f"a half-closed stream got {len(lines)} lines")
    # An idle stream from the end: only heartbeats, each naming the durable LSN.
    durable = status(port)["shards"][1]["durable_lsn"]
    s, data = raw_get(port, f"/api/replication?shard=1&from_lsn={durable + 1}", REPL_TOKEN, 2.5)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower(),
          f"stream head: {head!r}")
    lines = [json.loads(x) for x in dechunk(body).splitlines()]
    beats = [x for x in lines if x["type"] == "heartbeat"]
    check(len(beats) >= 1 and all(b["durable_lsn"] >= durable for b in beats)
          and len(beats) == len(lines), f"idle stream lines: {lines}")
    # History: contiguous LSNs from 1, every line a documented type.
    s, data = raw_get(port, "/api/replication?shard=0&from_lsn=1", REPL_TOKEN, 1.0)
    s.close()
    events = [json.loads(x) for x in dechunk(data.partition(b"\r\n\r\n")[2]).splitlines()]
    events = [e for e in events if "lsn" in e]
    check(events and [e["lsn"] for e in events] == list(range(1, len(events) + 1)),
          "shard 0's history is not contiguous from LSN 1")
    known = {"catalog.upsert", "catalog.delete", "layout.created", "layout.deleted",
             "showtime.opened", "showtime.closed", "booking.reserved", "hold.extended",
             "hold.released", "hold.expired", "booking.confirmed", "booking.cancelled"}
    check(all(e["type"] in known and e["v"] == 1 and e["shard"] == 0 for e in events),
          "an event of an unknown type or version")
    # The stream limit: the exporter holds 2 of 4.
    held = [raw_get(port, "/api/replication?shard=0", REPL_TOKEN)[0] for _ in range(2)]
    st, body = call(port, "GET", "/api/replication?shard=1", token=REPL_TOKEN)
    check(st == 503 and body["type"].endswith("too-many-streams"), f"5th stream: {st} {body}")
    for h in held:
        h.close()
    time.sleep(0.3)
    # A reader that stops reading: the server reads ahead one chunk (64 KiB) and the
    # socket's buffers (256 KiB send) for it, not the log. The exporter is stopped so
    # that the byte counter is this stream's alone.
    ex.stop()
    before = metric(port, "usher_replication_bytes_total")
    s, _ = raw_get(port, "/api/replication?shard=1&from_lsn=1", REPL_TOKEN, 0.0, rcvbuf=4096)
    bench(srv, 5, "reserve")
    time.sleep(0.5)
    grown = metric(port, "usher_replication_bytes_total") - before
    s.close()
    time.sleep(0.3)
    before = metric(port, "usher_replication_bytes_total")
    s, data = raw_get(port, "/api/replication?shard=1&from_lsn=1", REPL_TOKEN, 3.0)
    s.close()
    log_bytes = metric(port, "usher_replication_bytes_total") - before
    check(log_bytes > 2 * 1024 * 1024, f"the load made only {log_bytes} bytes of events")
    check(grown < 1024 * 1024, f"a stalled stream made the server produce {grown} of "
                               f"{log_bytes} bytes")
    log(f"stream: errors, heartbeats, contiguous history, limit ok; a stalled reader got "
        f"{grown:.0f} of {log_bytes:.0f} bytes produced")
    return Exporter(pg, "a", port)


def metric(port, name):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def bench(srv, seconds, scenario="flash", wait=True):
    argv = [BENCH, "--target", f"http://127.0.0.1:{srv.port}", "--scenario", scenario,
            "--connections", "16", "--threads", "1", "--users", "8", "--seats", "400",
            "--duration", str(seconds), "--admin-email", ADMIN_EMAIL, "--admin-password",
            ADMIN_PW, "--quiet", "--seed", str(rng.randrange(1 << 30))]
    if scenario == "steady":
        argv += ["--showtimes", "6"]
    out = os.path.join(tmp, f"bench.{time.time():.3f}.out")
    p = subprocess.Popen(argv, stdout=open(out, "w"), stderr=subprocess.STDOUT)
    procs.append(p)
    if wait:
        p.wait()
        check(p.returncode == 0, f"usher-bench {scenario} failed", out)
    return p, out


# ---- 3. kill -9 the exporter, restart usherd under it ------------------------------------------


def settle():
    """Waits until the holds the bench left have expired (TTL 10 s, 1 s sweep): after
    that the log stops moving, and exporters that caught up hold the same state."""
    time.sleep(11.5)


def compare(pg, db1, db2, what):
    queries = {
        "bookings": "SELECT hold_id, booking_id, shard, showtime_id, user_id, seats, seat_labels, "
                    "amount, refund, method, status, reserved_at, expires_at, ended_at, "
                    "confirmed_at, cancelled_at FROM bookings",
        "booking_events": "SELECT shard, lsn, ts, type, hold_id, booking_id, data FROM "
                          "booking_events",
        "export_state": "SELECT shard, lsn, events FROM export_state",
        "theaters": "SELECT id, name, city, doc, deleted_at FROM theaters",
        "screens": "SELECT id, theater_id, name, doc, deleted_at FROM screens",
        "movies": "SELECT id, title, genre, doc, deleted_at FROM movies",
        "showtimes": "SELECT id, shard, movie_id, layout_id, seat_count, starts_at, prices, doc, "
                     "deleted_at FROM showtimes",
        "users": "SELECT id, name, email, role, created_at, deleted_at FROM users",
        "layouts": "SELECT shard, id, categories, seat_labels, seat_categories FROM layouts",
    }
    for table, q in queries.items():
        a = sorted(map(tuple, pg.sql(db1, q)))
        b = sorted(map(tuple, pg.sql(db2, q)))
        if a != b:
            sa, sb = set(a), set(b)
            only_a = [r for r in a if r not in sb][:3]
            only_b = [r for r in b if r not in sa][:3]
            fail(f"{what}: table {table} differs between {db1} ({len(a)} rows) and {db2} "
                 f"({len(b)} rows): only in {db1}: {only_a}; only in {db2}: {only_b}")
    n = pg.one(db1, "SELECT count(*) FROM booking_events")
    log(f"{what}: {db1} and {db2} identical ({n} events)")


def phase_kill(pg, srv, ex):
    load, out = bench(srv, 10, "flash", wait=False)
    kills = 0
    while load.poll() is None or kills < 12:
        time.sleep(rng.uniform(0.2, 1.2))
        ex.kill()
        kills += 1
        ex = Exporter(pg, "a", srv.port, batch=rng.choice([1, 7, 100, 1000]))
    load.wait()
    check(load.returncode == 0, "usher-bench failed", out)
    log(f"kill -9: exporter killed {kills} times during the load")
    # usherd crashes and comes back under the running exporter.
    load, out = bench(srv, 6, "steady", wait=False)
    time.sleep(2)
    srv.stop(signal.SIGKILL)
    load.wait()
    srv.start()
    bench(srv, 3, "flash")
    settle()
    wait_caught_up(pg, "a", srv.port, ex, timeout=180)
    check("reconnect" in open(ex.log).read() or "stream closed" in open(ex.log).read(),
          "the exporter did not notice usherd going away", ex.log)
    fresh = Exporter(pg, "b", srv.port)
    wait_caught_up(pg, "b", srv.port, fresh, timeout=180)
    fresh.stop()
    compare(pg, "a", "b", "kill -9")
    dupes = pg.one("a", "SELECT count(*) - count(DISTINCT (shard, lsn)) FROM booking_events")
    check(dupes == "0", f"{dupes} duplicate events")
    for shard, lsn, n in pg.sql("a", "SELECT shard, lsn, events FROM export_state"):
        got = pg.one("a", f"SELECT count(*) FROM booking_events WHERE shard = {shard}")
        check(int(got) == int(lsn) == int(n),
              f"shard {shard}: {got} events stored, position {lsn}, counted {n}")
    return ex


# ---- 4. Bootstrap after old WAL is gone --------------------------------------------------------


def phase_bootstrap(pg, srv, ex):
    srv.stop()
    srv.start(["--wal-segment-mb", "1", "--snapshot-wal-mb", "1", "--snapshot-interval", "1"])
    deadline = time.time() + 120
    while True:
        bench(srv, 3, "reserve")
        time.sleep(1.5)  # a snapshot, then segments dropped
        if any(s["oldest_lsn"] > 1 for s in status(srv.port)["shards"]):
            break
        check(time.time() < deadline, "no WAL segment was ever removed", srv.err)
    st = status(srv.port)["shards"]
    log(f"bootstrap: oldest retained LSNs now {[s['oldest_lsn'] for s in st]}")
    boot = Exporter(pg, "d", srv.port)
    bench(srv, 3, "flash")
    settle()
    wait_caught_up(pg, "d", srv.port, boot, timeout=180)
    wait_caught_up(pg, "a", srv.port, ex, timeout=180)
    boot.stop()
    check("bootstrapped from a snapshot" in open(boot.log).read(),
          "the new exporter did not bootstrap", boot.log)
    queries = {
        "bookings": "SELECT hold_id, booking_id, showtime_id, user_id, seats, seat_labels, "
                    "amount, refund, method, status, confirmed_at, cancelled_at FROM bookings "
                    "WHERE status IN ('confirmed', 'cancelled')",
        "held": "SELECT hold_id, seats, amount, expires_at FROM bookings WHERE status = 'held'",
        "catalog": "SELECT 't', id, name FROM theaters WHERE deleted_at IS NULL UNION ALL "
                   "SELECT 'm', id, title FROM movies WHERE deleted_at IS NULL UNION ALL "
                   "SELECT 's', id, doc::text FROM showtimes WHERE deleted_at IS NULL UNION ALL "
                   "SELECT 'u', id, email FROM users WHERE deleted_at IS NULL",
        "position": "SELECT shard, lsn FROM export_state",
        "occupancy": "SELECT showtime_id, sold FROM occupancy_by_showtime",
    }
    for name, q in queries.items():
        a = sorted(map(tuple, pg.sql("a", q)))
        d = sorted(map(tuple, pg.sql("d", q)))
        if a != d:
            sa, sd = set(a), set(d)
            fail(f"bootstrap: {name} differs: a has {len(a)} rows, d {len(d)}; e.g. "
                 f"{[r for r in a if r not in sd][:2]} / {[r for r in d if r not in sa][:2]}")
    n = pg.one("d", "SELECT count(*) FROM bookings WHERE status IN ('confirmed','cancelled')")
    log(f"bootstrap: the exporter from LSN 1 bootstrapped and ends equal ({n} bookings)")


def main():
    log(f"seed {SEED}, work dir {tmp}")
    global PG
    pg = PG = usherlib.Postgres(H)  # stopped in the finally below
    for db in ("a", "b", "d"):
        pg.createdb(db)
    srv = Usherd("usher", free_port())
    srv.start()
    ex, customer = phase_model(pg, srv)
    ex = phase_stream(pg, srv, customer, ex)
    ex = phase_kill(pg, srv, ex)
    phase_bootstrap(pg, srv, ex)
    ex.stop()
    srv.stop()
    log("pgexport: all phases passed")


if __name__ == "__main__":
    ok = False
    try:
        main()
        ok = True
    finally:
        H.kill_all()
        if PG is not None:
            PG.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp} for inspection")
