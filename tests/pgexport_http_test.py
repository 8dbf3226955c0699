#!/usr/bin/env python3
"""usher-pgexport --http: the analytics JSON API, against a real PostgreSQL (issue #8).

Starts a throwaway PostgreSQL cluster, a usherd and usher-pgexport with --http, makes
known bookings through usherd's API (sales, a cancellation with a refund, a released
hold, a hold left to expire), waits for the export, and moves two sales in time in
PostgreSQL (one 40 days back, one to 2025-01-10 20:00 UTC, which is 01:30 on the 11th
in Asia/Kolkata). Then:

  - every endpoint's rows equal an oracle computed here from the bookings rows (Python,
    with zoneinfo for the days and hours), for several ranges and time zones: a range
    that leaves a sale out does leave it out, and the time zone moves the 20:00 UTC
    sale to another day and hour; revenue and revenue-by also equal the views of
    003_analytics.sql;
  - 401 unauthorized / 401 invalid-token (garbage, expired, another secret's) / 403
    for a customer; 400 with `field` for each bad parameter; 404, 405, 413, 431;
  - CORS: a preflight from the allowed origin gets the headers, another origin none;
  - bounds: the 33rd connection gets 503, a request that does not finish gets 408
    after 10 s and an idle connection is closed; a statement held up by a lock gets
    504; PostgreSQL stopped gives 503 and the server recovers once it is back;
  - SIGTERM stops the exporter and its HTTP server cleanly.

Environment: USHERD, PGEXPORT (binaries).
"""
import base64
import datetime
import decimal
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from zoneinfo import ZoneInfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import usherlib  # noqa: E402

USHERD = os.environ["USHERD"]
PGEXPORT = os.environ["PGEXPORT"]
REPL_TOKEN = "pgexport-http-test-replication-token-0123456789"
ADMIN_EMAIL, ADMIN_PW = "admin@pgexport-http.test", "pgexport-http-admin-pw"
ORIGIN = "http://127.0.0.1:8080"
PRICES = {"silver": 15000, "gold": 25000}
SEATS_PER_SHOWTIME = 32

PG = None
EXPORTER = None  # (process, log path)


class Harness(usherlib.Harness):
    """fail() prints the message, the stack and the exporter's log, and raises SystemExit:
    main's finally stops what was started (PostgreSQL too) and keeps the temp dir."""

    def fail(self, msg, *files):
        print("FAIL: " + msg + "\n" + "".join(traceback.format_stack(limit=5)[:-1]), flush=True)
        for f in files or ([EXPORTER[1]] if EXPORTER else []):
            try:
                with open(f, errors="replace") as fh:
                    print(f"--- last lines of {f}:\n" + "".join(fh.readlines()[-30:]), flush=True)
            except OSError:
                pass
        raise SystemExit(1)


H = Harness("usher-pgexport-http-test-", elapsed_log=True)
os.chmod(H.tmp, 0o755)  # the cluster runs as postgres when we are root
log, fail, check = H.log, H.fail, H.check


# ---- HTTP to the analytics server -------------------------------------------------------


class Analytics:
    def __init__(self, port, token):
        self.port = port
        self.token = token

    def raw(self, path, token=None, method="GET", headers=None, body=None):
        """(status, lowercased headers, parsed JSON or None)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        c.request(method, path, body, h)
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        if data and r.status != 204:
            ctype = hdrs.get("content-type", "")
            want = "application/json" if r.status == 200 else "application/problem+json"
            check(ctype == want, f"{method} {path}: {r.status} with Content-Type {ctype}")
        return r.status, hdrs, json.loads(data) if data else None

    def get(self, endpoint, **params):
        q = "&".join(f"{k}={v}" for k, v in params.items())
        path = f"/api/analytics/{endpoint}" + (f"?{q}" if q else "")
        st, _, body = self.raw(path, self.token)
        check(st == 200, f"GET {path}: {st} {body}")
        check(body["columns"] == list(body["rows"][0].keys()) if body["rows"] else True,
              f"GET {path}: columns {body['columns']} are not the rows' keys")
        return body

    def problem(self, path, status, slug, field=None, token="admin", **kw):
        st, hdrs, body = self.raw(path, self.token if token == "admin" else token, **kw)
        check(st == status and body is not None and body.get("status") == status
              and body.get("type") == f"https://usher.dev/problems/{slug}"
              and body.get("title") and body.get("detail") and body.get("field") == field,
              f"{kw.get('method', 'GET')} {path}: {st} {body}, want {status} {slug} "
              f"field={field}")
        return hdrs, body


def jwt(secret, role, exp_in, iat_ago=60):
    """A token as usherd signs them (auth/auth.h): HS256, claims in usherd's order."""
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    now = int(time.time())
    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    claims = {"iss": "usher", "sub": "1", "aud": "usher-api", "exp": now + exp_in,
              "iat": now - iat_ago, "jti": secrets.token_hex(16), "role": role}
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


# ---- The oracle: the same figures, computed here from the bookings rows -------------------


def rate(n, d):
    if d == 0:
        return None
    q = decimal.Decimal(n) / decimal.Decimal(d)
    return float(q.quantize(decimal.Decimal("0.0001"), rounding=decimal.ROUND_HALF_UP))


def days(f, t):
    d = f
    while d <= t:
        yield d
        d += datetime.timedelta(days=1)


def local(ts, tz):
    return datetime.datetime.fromtimestamp(ts, ZoneInfo(tz))


class Oracle:
    def __init__(self, rows, showtimes, catalog, users):
        self.rows = rows            # dicts from the bookings table
        self.showtimes = showtimes  # id -> {movie, theater, starts (epoch)}
        self.catalog = catalog      # movie id -> (title, genre); theater id -> (name, city)
        self.users = users          # id -> (name, email)

    def sales(self, f, t, tz):
        return [r for r in self.rows if r["status"] in ("confirmed", "cancelled")
                and f <= local(r["confirmed"], tz).date() <= t]

    @staticmethod
    def money(group):
        gross = sum(r["amount"] for r in group)
        refunds = sum(r["refund"] for r in group)
        return {"bookings": len(group), "tickets": sum(r["seats"] for r in group),
                "gross": gross, "refunds": refunds, "net": gross - refunds}

    def revenue(self, f, t, tz, gran):
        def bucket(d):
            if gran == "week":
                return d - datetime.timedelta(days=d.weekday())
            if gran == "month":
                return d.replace(day=1)
            return d
        sales = self.sales(f, t, tz)
        out, seen = [], set()
        for d in days(bucket(f), t):
            b = bucket(d)
            if b in seen:
                continue
            seen.add(b)
            group = [r for r in sales if bucket(local(r["confirmed"], tz).date()) == b]
            out.append({"bucket": b.isoformat(), **self.money(group)})
        return out

    def key_of(self, r, dim):
        st = self.showtimes[r["showtime"]]
        if dim == "movie":
            return st["movie"], self.catalog[st["movie"]][0], None
        if dim == "theater":
            return st["theater"], *self.catalog[st["theater"]]
        genre = self.catalog[st["movie"]][1]
        return genre, genre, None

    def revenue_by(self, f, t, tz, dim):
        groups = {}
        for r in self.sales(f, t, tz):
            groups.setdefault(self.key_of(r, dim), []).append(r)
        out = []
        for (key, label, city), g in groups.items():
            row = {"key": key, "label": label}
            if dim == "theater":
                row["city"] = city
            out.append({**row, **self.money(g)})
        return sorted(out, key=lambda x: (-x["net"], x["key"]))

    def peak_hours(self, f, t, tz):
        cells = {}
        for r in self.sales(f, t, tz):
            lt = local(r["confirmed"], tz)
            c = cells.setdefault((lt.isoweekday(), lt.hour), [0, 0])
            c[0] += 1
            c[1] += r["seats"]
        return [{"isodow": d, "hour": h, "bookings": cells.get((d, h), [0, 0])[0],
                 "tickets": cells.get((d, h), [0, 0])[1]}
                for d in range(1, 8) for h in range(24)]

    def conversion(self, f, t, tz):
        out = []
        for d in days(f, t):
            g = [r for r in self.rows if r["reserved"] is not None
                 and local(r["reserved"], tz).date() == d]
            conf = sum(1 for r in g if r["status"] in ("confirmed", "cancelled"))
            out.append({"day": d.isoformat(), "holds": len(g), "confirmed": conf,
                        "expired": sum(1 for r in g if r["status"] == "expired"),
                        "released": sum(1 for r in g if r["status"] == "released"),
                        "rate": rate(conf, len(g))})
        return out

    @staticmethod
    def cancel_figures(g):
        n = sum(1 for r in g if r["status"] == "cancelled")
        return {"bookings": len(g), "cancelled": n, "rate": rate(n, len(g)),
                "refunds": sum(r["refund"] for r in g)}

    def cancellations(self, f, t, tz, by):
        sales = self.sales(f, t, tz)
        if by == "day":
            return [{"day": d.isoformat(), **self.cancel_figures(
                [r for r in sales if local(r["confirmed"], tz).date() == d])}
                for d in days(f, t)]
        groups = {}
        for r in sales:
            groups.setdefault(self.key_of(r, by), []).append(r)
        out = []
        for (key, label, city), g in groups.items():
            row = {"key": key, "label": label}
            if by == "theater":
                row["city"] = city
            out.append({**row, **self.cancel_figures(g)})
        return sorted(out, key=lambda x: (-x["rate"], -x["bookings"], x["key"]))

    def top_users(self, f, t, tz, limit):
        groups = {}
        for r in self.sales(f, t, tz):
            groups.setdefault(r["user"], []).append(r)
        out = [{"user_id": u, "name": self.users[u][0], "email": self.users[u][1],
                **self.money(g)} for u, g in groups.items()]
        out.sort(key=lambda x: (-x["net"], x["user_id"]))
        return out[:limit], len(out) > limit

    def occupancy(self, f, t, tz, now):
        out = []
        for sid, st in sorted(self.showtimes.items(), key=lambda kv: (kv[1]["starts"], kv[0])):
            lt = local(st["starts"], tz)
            if not f <= lt.date() <= t:
                continue
            g = [r for r in self.rows if r["showtime"] == sid]
            sold = sum(r["seats"] for r in g if r["status"] == "confirmed")
            held = sum(r["seats"] for r in g if r["status"] == "held" and r["expires"] > now)
            title = self.catalog[st["movie"]][0]
            name, city = self.catalog[st["theater"]]
            out.append({"showtime_id": sid, "starts_at": lt.isoformat(), "movie_id": st["movie"],
                        "title": title, "theater_id": st["theater"], "theater": name,
                        "city": city, "seat_count": SEATS_PER_SHOWTIME, "sold": sold,
                        "held": held, "occupancy": rate(sold, SEATS_PER_SHOWTIME)})
        return out


def same_rows(what, got, want):
    """The answer's rows equal the oracle's, member by member (ratios to 1e-9)."""
    def eq(a, b):
        if isinstance(a, float) or isinstance(b, float):
            return a is not None and b is not None and abs(a - b) < 1e-9
        return a == b
    ok = len(got["rows"]) == len(want) and all(
        list(g.keys()) == list(w.keys()) and all(eq(g[k], w[k]) for k in w)
        for g, w in zip(got["rows"], want))
    if not ok:
        bad = [(g, w) for g, w in zip(got["rows"], want) if g != w][:3]
        fail(f"{what}: {len(got['rows'])} rows, want {len(want)}; first differences: {bad}")
    check(got["columns"] == (list(want[0].keys()) if want else got["columns"]),
          f"{what}: columns {got['columns']}")


# ---- Setup ---------------------------------------------------------------------------------


def layout():
    return {"categories": ["silver", "gold"],
            "rows": [{"label": r, "category": "gold" if r in "CD" else "silver", "seats": 8}
                     for r in "ABCD"]}


def start_exporter(pg, port, data):
    global EXPORTER
    err = os.path.join(H.tmp, "pgexport.err")
    argv = [PGEXPORT, "--source", f"http://127.0.0.1:{port}", "--pg", pg.conninfo("an"),
            "--token", REPL_TOKEN, "--stats-interval", "0", "--http", "127.0.0.1:0",
            "--jwt-secret-file", os.path.join(data, "jwt.secret"),
            "--http-allow-origin", f"http://other.test, {ORIGIN}/",
            "--http-statement-timeout", "1000"]
    env = {k: v for k, v in os.environ.items() if k != "USHER_JWT_SECRET"}
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(err, "w"), env=env)
    H.procs.append(p)
    EXPORTER = (p, err)

    def addr():
        check(p.poll() is None, "usher-pgexport exited at start", err)
        m = re.search(r'http: serving analytics" addr=127\.0\.0\.1:(\d+)', open(err).read())
        return int(m.group(1)) if m else None
    return p, H.wait_for(addr, "the HTTP server's address", files=[err])


def wait_caught_up(pg, api, what, timeout=60):
    def done():
        st = api.call("GET", "/api/replication/status", token=REPL_TOKEN, expect=200)[1]
        want = {s["shard"]: s["durable_lsn"] for s in st["shards"]}
        got = {int(r[0]): int(r[1]) for r in pg.sql("an", "SELECT shard, lsn FROM export_state")}
        return all(got.get(k) == v for k, v in want.items())
    H.wait_for(done, what, timeout=timeout, poll=0.1)


def book(api, tokens):
    """The bookings; returns {hold_id: what became of it} and the catalog."""
    admin = api.login(ADMIN_EMAIL, ADMIN_PW)
    th = [api.call("POST", "/api/theaters", {"name": n, "city": c}, admin, 201)[1]
          for n, c in (("Alpha Plaza", "Pune"), ("Beta Cinema", "Mumbai"))]
    sc = [api.call("POST", "/api/screens", {"theater_id": t["id"], "name": "Screen 1",
                                            "layout": layout()}, admin, 201)[1] for t in th]
    mv = [api.call("POST", "/api/movies", {"title": t, "duration_min": 100, "genre": g,
                                           "language": "hindi"}, admin, 201)[1]
          for t, g in (("Replica", "drama"), ("Orbit", "sci-fi"))]
    st = []
    for m, s, days_ahead in ((0, 0, 3), (1, 1, 4), (0, 1, 5)):
        start = usherlib.iso(time.time() + days_ahead * 86400)
        st.append(api.call("POST", "/api/showtimes", {
            "movie_id": mv[m]["id"], "screen_id": sc[s]["id"], "start_time": start,
            "prices": PRICES}, admin, 201)[1])
    catalog = {mv[0]["id"]: ("Replica", "drama"), mv[1]["id"]: ("Orbit", "sci-fi"),
               th[0]["id"]: ("Alpha Plaza", "Pune"), th[1]["id"]: ("Beta Cinema", "Mumbai")}
    showtimes = {s["id"]: {"movie": mv[m]["id"], "theater": th[t]["id"]}
                 for s, m, t in ((st[0], 0, 0), (st[1], 1, 1), (st[2], 0, 1))}
    plan = [  # user, showtime, seats, what to do with the hold
        (0, 0, ["A1"], "expire"),
        (0, 0, ["A2", "A3"], "confirm"),
        (0, 1, ["C1"], "confirm"),                  # moved 40 days back
        (1, 1, ["C2", "C3"], "cancel"),
        (1, 2, ["D1"], "confirm"),                  # moved to 2025-01-10 20:00 UTC
        (1, 0, ["B1"], "release"),
        (0, 2, ["A5", "A6", "A7"], "confirm"),
    ]
    holds = []
    for u, s, seats, action in plan:
        _, h = api.call("POST", "/api/bookings/reserve", {"showtime_id": st[s]["id"],
                                                          "seats": seats}, tokens[u], 201)
        holds.append((h["hold_id"], action, h["amount"]))
        if action in ("confirm", "cancel"):
            _, b = api.call("POST", "/api/bookings/confirm", {
                "hold_id": h["hold_id"], "payment": {"method": "upi"}}, tokens[u], 201)
            if action == "cancel":
                api.call("POST", f"/api/bookings/{b['booking_id']}/cancel", {}, tokens[u], 200)
        elif action == "release":
            api.call("DELETE", f"/api/holds/{h['hold_id']}", None, tokens[u], 204)
    return holds, showtimes, catalog


def load_rows(pg):
    rows = []
    for r in pg.sql("an", """
            SELECT hold_id, status, amount, refund, cardinality(seats), showtime_id, user_id,
                   extract(epoch FROM confirmed_at), extract(epoch FROM reserved_at),
                   extract(epoch FROM expires_at)
              FROM bookings ORDER BY hold_id"""):
        rows.append({"hold": int(r[0]), "status": r[1], "amount": int(r[2]),
                     "refund": int(r[3]), "seats": int(r[4]), "showtime": int(r[5]),
                     "user": int(r[6]), "confirmed": float(r[7]) if r[7] else None,
                     "reserved": float(r[8]) if r[8] else None,
                     "expires": float(r[9]) if r[9] else None})
    return rows


# ---- The checks ----------------------------------------------------------------------------


def check_refusals(an, secret, customer):
    p = "/api/analytics/revenue"
    an.problem(p, 401, "unauthorized", token=None)
    an.problem(p, 401, "invalid-token", "authorization", token="not.a.token")
    an.problem(p, 401, "invalid-token", "authorization", token=REPL_TOKEN)
    _, body = an.problem(p, 401, "invalid-token", "authorization",
                         token=jwt(secret, "admin", -120, 3600))
    check("expire" in body["detail"], f"an expired token: {body}")
    an.problem(p, 401, "invalid-token", "authorization",
               token=jwt(b"another-secret-of-at-least-32-bytes!!", "admin", 600))
    an.problem(p, 403, "forbidden", token=customer)
    an.problem(p, 403, "forbidden", token=jwt(secret, "customer", 600))
    st, _, _ = an.raw(p, jwt(secret, "admin", 600))
    check(st == 200, f"a token signed here with usherd's secret: {st}")
    for path, field in [
            ("/api/analytics/revenue?from=2026-02-30", "from"),
            ("/api/analytics/revenue?from=2026-1-01", "from"),
            ("/api/analytics/revenue?to=yesterday", "to"),
            ("/api/analytics/revenue?from=2026-03-02&to=2026-03-01", "from"),
            ("/api/analytics/revenue?from=2010-01-01&to=2020-12-31", "from"),
            ("/api/analytics/revenue?tz=Mars%2FOlympus", "tz"),
            ("/api/analytics/revenue?tz=Asia/Kolkata;DROP", "tz"),
            ("/api/analytics/revenue?granularity=hour", "granularity"),
            ("/api/analytics/revenue?from=2026-01-01&from=2026-01-02", "from"),
            ("/api/analytics/revenue?limit=5", "limit"),
            ("/api/analytics/revenue-by?dim=city", "dim"),
            ("/api/analytics/cancellations?by=genre", "by"),
            ("/api/analytics/top-users?limit=0", "limit"),
            ("/api/analytics/top-users?limit=101", "limit"),
            ("/api/analytics/occupancy?limit=1001", "limit"),
            ("/api/analytics/peak-hours?bogus=1", "bogus"),
            ("/api/analytics/health?x=1", "x")]:
        an.problem(path, 400, "invalid-field", field)
    # A range may be 3,700 days long, not one more.
    f = datetime.date(2016, 1, 1)
    t = f + datetime.timedelta(days=3699)
    st, _, body = an.raw(f"/api/analytics/revenue?granularity=month&from={f}&to={t}", an.token)
    months = (t.year - f.year) * 12 + t.month - f.month + 1
    check(st == 200 and body["from"] == str(f) and len(body["rows"]) == months,
          f"a 3,700-day range by month: {st} {body and len(body['rows'])}")
    an.problem(f"/api/analytics/revenue?from={f}&to={t + datetime.timedelta(days=1)}", 400,
               "invalid-field", "from")
    for path in ("/api/analytics/nope", "/api/analytics/", "/api/analytics", "/",
                 "/api/analytics/revenue/"):
        an.problem(path, 404, "not-found")
    hdrs, _ = an.problem(p, 405, "method-not-allowed", method="DELETE")
    check("GET" in hdrs.get("allow", ""), f"405 without Allow: {hdrs}")
    an.problem(p, 413, "body-too-large", method="POST", body="{}",
               headers={"Content-Type": "application/json"})
    an.problem(p, 431, "headers-too-large", headers={"X-Pad": "x" * 9000})
    log("refusals: 401 x5, 403 x2, 400 with field x17, 404 x5, 405, 413, 431")


def check_cors(an):
    p = "/api/analytics/revenue"
    pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
           "Access-Control-Request-Headers": "authorization"}
    st, h, _ = an.raw(p, method="OPTIONS", headers=pre)
    check(st == 204 and h.get("access-control-allow-origin") == ORIGIN
          and h.get("access-control-allow-methods") == "GET"
          and h.get("access-control-allow-headers", "").lower() == "authorization"
          and h.get("access-control-max-age") == "600" and h.get("vary") == "Origin",
          f"preflight from {ORIGIN}: {st} {h}")
    st, h, _ = an.raw(p, method="OPTIONS", headers=dict(pre, Origin="http://evil.test"))
    check(st == 204 and not any(k.startswith("access-control-") for k in h),
          f"preflight from another origin: {st} {h}")
    st, h, _ = an.raw(p, an.token, headers={"Origin": ORIGIN})
    check(st == 200 and h.get("access-control-allow-origin") == ORIGIN,
          f"GET from {ORIGIN}: {st} {h}")
    st, h, _ = an.raw(p, None, headers={"Origin": ORIGIN})
    check(st == 401 and h.get("access-control-allow-origin") == ORIGIN,
          f"a 401 to {ORIGIN} must be readable by the page: {h}")
    st, h, _ = an.raw(p, an.token, headers={"Origin": "http://127.0.0.1:8081"})
    check(st == 200 and not any(k.startswith("access-control-") for k in h),
          f"GET from an origin not listed: {h}")
    st, h, _ = an.raw(p, method="OPTIONS", headers={"Origin": "http://other.test"})
    check(st == 204 and h.get("access-control-allow-origin") == "http://other.test",
          f"the comma list's first origin: {h}")
    log("CORS: the listed origins get the headers, others none")


def check_figures(an, pg, oracle, today):
    """Every endpoint against the oracle, over ranges that include and exclude the sales
    moved in time, in UTC and Asia/Kolkata."""
    old = today - datetime.timedelta(days=40)
    jan10, jan11 = datetime.date(2025, 1, 10), datetime.date(2025, 1, 11)
    ranges = [(today - datetime.timedelta(days=45), today, "UTC"),
              (today, today, "UTC"),
              (old, old, "UTC"),
              (jan10, jan11, "UTC"),
              (jan11, jan11, "Asia/Kolkata"),
              (jan10, jan10, "Asia/Kolkata"),
              (today - datetime.timedelta(days=45), today, "Asia/Kolkata")]
    for f, t, tz in ranges:
        q = {"from": f.isoformat(), "to": t.isoformat(), "tz": tz.replace("/", "%2F")}
        what = f"{f}..{t} {tz}"
        for gran in ("day", "week", "month"):
            got = an.get("revenue", granularity=gran, **q)
            check(got["from"] == f.isoformat() and got["to"] == t.isoformat()
                  and got["tz"] == tz and got["granularity"] == gran
                  and got["truncated"] is False, f"revenue envelope: {got}")
            same_rows(f"revenue {gran} {what}", got, oracle.revenue(f, t, tz, gran))
        for dim in ("movie", "theater", "genre"):
            same_rows(f"revenue-by {dim} {what}", an.get("revenue-by", dim=dim, **q),
                      oracle.revenue_by(f, t, tz, dim))
        same_rows(f"peak-hours {what}", an.get("peak-hours", **q), oracle.peak_hours(f, t, tz))
        for by in ("day", "movie", "theater"):
            same_rows(f"cancellations {by} {what}", an.get("cancellations", by=by, **q),
                      oracle.cancellations(f, t, tz, by))
        for limit in (1, 10):
            got = an.get("top-users", limit=limit, **q)
            want, cut = oracle.top_users(f, t, tz, limit)
            same_rows(f"top-users {limit} {what}", got, want)
            check(got["truncated"] is cut and got["limit"] == limit,
                  f"top-users {limit} {what}: truncated {got['truncated']}")
    # What the ranges above prove, spelled out: each moved sale is in exactly the ranges
    # that cover its day, in the time zone asked for.
    net = {r: sum(x["net"] for x in an.get("revenue", **{"from": r[0], "to": r[1],
                                                          "tz": r[2]})["rows"])
           for r in (("2025-01-10", "2025-01-10", "UTC"), ("2025-01-11", "2025-01-11", "UTC"),
                     ("2025-01-10", "2025-01-10", "Asia/Kolkata"),
                     ("2025-01-11", "2025-01-11", "Asia/Kolkata"))}
    check(list(net.values()) == [25000, 0, 0, 25000], f"the 20:00 UTC sale by day: {net}")
    cell = [c for c in an.get("peak-hours", **{"from": "2025-01-11", "to": "2025-01-11",
                                               "tz": "Asia/Kolkata"})["rows"] if c["bookings"]]
    check(cell == [{"isodow": 6, "hour": 1, "bookings": 1, "tickets": 1}],
          f"the 20:00 UTC sale in Kolkata's peak hours: {cell}")
    # Left out, the range is the 30 days up to today; the sale 40 days back is outside.
    got = an.get("revenue")
    check(got["to"] == today.isoformat()
          and got["from"] == (today - datetime.timedelta(days=29)).isoformat()
          and len(got["rows"]) == 30 and got["tz"] == "UTC", f"default range: {got}")
    same_rows("revenue, default range", got,
              oracle.revenue(today - datetime.timedelta(days=29), today, "UTC", "day"))
    # The views of 003_analytics.sql say the same.
    f, t = today - datetime.timedelta(days=45), today
    view = pg.sql("an", f"""SET TIME ZONE 'Asia/Kolkata';
        SELECT to_char(bucket, 'YYYY-MM-DD'), bookings, tickets, gross, refunds, net
          FROM revenue_daily WHERE bucket >= '{f}' AND bucket < '{t}'::date + 1 ORDER BY 1""")
    got = [[r["bucket"]] + [str(r[k]) for k in ("bookings", "tickets", "gross", "refunds", "net")]
           for r in an.get("revenue", **{"from": f.isoformat(), "to": t.isoformat(),
                                         "tz": "Asia/Kolkata"})["rows"] if r["bookings"]]
    check(got == view, f"revenue vs revenue_daily: {got} != {view}")
    view = pg.sql("an", "SELECT movie_id, title, bookings, tickets, gross, refunds, net "
                        "FROM revenue_by_movie ORDER BY net DESC, movie_id")
    got = [[str(r[k]) for k in ("key", "label", "bookings", "tickets", "gross", "refunds", "net")]
           for r in an.get("revenue-by", dim="movie", **{"from": "2025-01-01",
                                                         "to": t.isoformat()})["rows"]]
    check(got == view, f"revenue-by movie vs revenue_by_movie: {got} != {view}")
    log(f"figures: {len(ranges)} ranges x 13 queries equal the oracle; views agree")


def check_after_expiry(an, oracle, today, now):
    for f, t, tz in ((today - datetime.timedelta(days=45), today, "UTC"),
                     (today, today, "Asia/Kolkata"), (datetime.date(2025, 1, 10),
                                                      datetime.date(2025, 1, 11), "UTC")):
        q = {"from": f.isoformat(), "to": t.isoformat(), "tz": tz}
        got = an.get("conversion", **q)
        same_rows(f"conversion {f}..{t} {tz}", got, oracle.conversion(f, t, tz))
    q = {"from": today.isoformat(), "to": (today + datetime.timedelta(days=10)).isoformat()}
    for tz in ("UTC", "Asia/Kolkata"):
        same_rows(f"occupancy {tz}", an.get("occupancy", tz=tz, **q),
                  oracle.occupancy(today, today + datetime.timedelta(days=10), tz, now))
    got = an.get("occupancy", limit=2, **q)
    check(len(got["rows"]) == 2 and got["truncated"] is True, f"occupancy limit=2: {got}")
    log("conversion (holds confirmed, expired, released) and occupancy equal the oracle")


def read_all(s):
    """Reads s until the server closes it."""
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk


def check_connection_limit(port, already):
    """`already` connections are open; the 33rd gets 503 and the server goes on."""
    time.sleep(0.3)  # the test's earlier connections, closed, are gone
    socks = []
    for _ in range(32 - already):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    time.sleep(0.3)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    data = read_all(s)
    s.close()
    check(data.startswith(b"HTTP/1.1 503") and b"too-many-connections" in data,
          f"the 33rd connection: {data[:200]!r}")
    # One of the 32 still works, keep-alive included.
    socks[0].sendall(b"GET /api/analytics/health HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
    socks[0].settimeout(5)
    data = b""
    while data.count(b"HTTP/1.1 200") < 2:
        chunk = socks[0].recv(65536)
        check(chunk, f"keep-alive health answers: {data!r}")
        data += chunk
    for s in socks:
        s.close()
    # Not HTTP: 400, and the connection closes.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"HELLO /api/analytics/health\r\n\r\n")
    data = read_all(s)
    s.close()
    check(data.startswith(b"HTTP/1.1 400") and b"malformed-request" in data,
          f"a request that is not HTTP: {data[:200]!r}")
    log("bounds: 32 connections served, the 33rd refused with 503; garbage gets 400")


def check_statement_timeout(an, pg):
    lock = subprocess.Popen(
        ["psql", "-X", "-q", "-h", pg.dir, "-U", "postgres", "-d", "an", "-c",
         "BEGIN; LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(2.5); COMMIT;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    H.procs.append(lock)
    H.wait_for(lambda: pg.one("an", "SELECT count(*) FROM pg_locks l JOIN pg_class c ON "
                                    "c.oid = l.relation WHERE c.relname = 'bookings' AND "
                                    "l.mode = 'AccessExclusiveLock' AND l.granted") == "1",
               "the lock on bookings")
    t0 = time.time()
    an.problem("/api/analytics/revenue", 504, "query-timeout")
    took = time.time() - t0
    check(0.9 < took < 2.4, f"the statement timeout (1 s) took {took:.2f} s")
    st, _, body = an.raw("/api/analytics/health")
    check(st == 200 and body["ok"] is True, f"health during the lock: {st} {body}")
    lock.wait()
    st, _, _ = an.raw("/api/analytics/revenue", an.token)
    check(st == 200, f"after the lock: {st}")
    log(f"a statement held up by a lock: 504 after {took:.2f} s, then 200 again")


def check_pg_restart(an, pg):
    pg.stop("fast")
    for path in ("/api/analytics/revenue", "/api/analytics/health"):
        hdrs, _ = an.problem(path, 503, "database-unavailable")
        check(hdrs.get("retry-after") == "1", f"503 without Retry-After: {hdrs}")
    pg.start()
    t0 = time.time()
    H.wait_for(lambda: an.raw("/api/analytics/revenue", an.token)[0] == 200,
               "the HTTP server back on PostgreSQL", timeout=15, poll=0.2)
    log(f"PostgreSQL stopped: 503; back after {time.time() - t0:.1f} s")


def open_slow_sockets(port):
    idle = socket.create_connection(("127.0.0.1", port), timeout=20)
    slow = socket.create_connection(("127.0.0.1", port), timeout=20)
    slow.sendall(b"GET /api/analytics/health HTTP/1.1\r\nHost: x\r\n")  # never finished
    return idle, slow, time.time()


def check_slow_sockets(idle, slow, t0):
    got_idle, got_slow = read_all(idle), read_all(slow)
    took = time.time() - t0
    idle.close()
    slow.close()
    check(got_idle == b"", f"an idle connection got {got_idle[:100]!r}")
    check(got_slow.startswith(b"HTTP/1.1 408") and b"request-timeout" in got_slow,
          f"an unfinished request got {got_slow[:200]!r}")
    check(9.5 < took < 14, f"the idle and request timeouts (10 s) took {took:.1f} s")
    log(f"timeouts: idle connection closed, unfinished request 408, after {took:.1f} s")


def main():
    global PG
    log(f"work dir {H.tmp}")
    # --http without a secret refuses to start.
    r = subprocess.run([PGEXPORT, "--pg", "postgresql:///x", "--http", "127.0.0.1:0"],
                       env={k: v for k, v in os.environ.items() if k != "USHER_JWT_SECRET"},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    check(r.returncode == 2 and "--jwt-secret-file" in r.stdout, f"--http, no secret: {r}")
    pg = PG = usherlib.Postgres(H)
    pg.createdb("an")
    srv = usherlib.Usherd(H, USHERD, os.path.join(H.tmp, "usher"), ADMIN_EMAIL, ADMIN_PW,
                          ["--shards", "2", "--password-cost", "min", "--hold-ttl", "10",
                           "--rate-limit", "off"], env={"USHER_REPLICATION_TOKEN": REPL_TOKEN})
    srv.start()
    api = usherlib.Api(H, srv.port, snippet=300)
    ex, port = start_exporter(pg, srv.port, srv.data)
    with open(os.path.join(srv.data, "jwt.secret"), "rb") as f:
        secret = f.read()
    tokens = [api.user(f"u{i}@pgexport-http.test", f"User {i}") for i in range(2)]
    t_hold = time.time()
    holds, showtimes, catalog = book(api, tokens)
    wait_caught_up(pg, api, "the export of the bookings")
    h = {action: hid for hid, action, _ in holds if action != "confirm"}
    confirmed = [hid for hid, action, _ in holds if action == "confirm"]
    # Two sales move in time: 40 days back, and to 20:00 UTC on 2025-01-10.
    pg.sql("an", f"""UPDATE bookings SET reserved_at = reserved_at - interval '40 days',
                            confirmed_at = confirmed_at - interval '40 days'
                      WHERE hold_id = {confirmed[1]}""")
    pg.sql("an", f"""UPDATE bookings SET reserved_at = '2025-01-10 19:55:00+00',
                            confirmed_at = '2025-01-10 20:00:00+00'
                      WHERE hold_id = {confirmed[2]}""")
    rows = {r["hold"]: r for r in load_rows(pg)}
    check(sorted(rows) == sorted(hid for hid, _, _ in holds), f"bookings rows: {sorted(rows)}")
    for hid, action, amount in holds:
        check(rows[hid]["amount"] == amount, f"hold {hid}: amount {rows[hid]['amount']}")
    check(rows[h["cancel"]]["refund"] > 0, "the cancellation has no refund")
    for sid, row in pg.sql("an", "SELECT id, extract(epoch FROM starts_at) FROM showtimes"):
        showtimes[int(sid)]["starts"] = float(row)
    users = {int(r[0]): (r[1], r[2]) for r in pg.sql("an", "SELECT id, name, email FROM users")}
    today = datetime.datetime.fromtimestamp(rows[confirmed[0]]["confirmed"],
                                            datetime.timezone.utc).date()
    check(datetime.datetime.now(datetime.timezone.utc).date() == today,
          "the test crossed midnight UTC; run it again")

    admin = api.login(ADMIN_EMAIL, ADMIN_PW)
    an = Analytics(port, admin)
    st, _, body = an.raw("/api/analytics/health")
    check(st == 200 and body["ok"] is True and len(body["shards"]) == 2
          and all(s["lsn"] > 0 for s in body["shards"]), f"health: {st} {body}")
    idle, slow, t_slow = open_slow_sockets(port)
    check_connection_limit(port, 2)
    check_refusals(an, secret, tokens[0])
    check_cors(an)
    check_figures(an, pg, Oracle(list(rows.values()), showtimes, catalog, users), today)
    check_statement_timeout(an, pg)
    check_pg_restart(an, pg)
    check_slow_sockets(idle, slow, t_slow)
    # The first hold has expired by now (hold TTL 10 s, a 1 s sweep).
    H.wait_for(lambda: pg.one("an", f"SELECT status FROM bookings WHERE hold_id = "
                                    f"{h['expire']}") == "expired",
               "the export of the hold's expiry", timeout=max(5, t_hold + 25 - time.time()))
    rows[h["expire"]]["status"] = "expired"
    check_after_expiry(an, Oracle(list(rows.values()), showtimes, catalog, users), today,
                       time.time())

    ex.send_signal(signal.SIGTERM)
    try:
        ex.wait(15)
    except subprocess.TimeoutExpired:
        fail("usher-pgexport did not stop on SIGTERM")
    check(ex.returncode == 0, f"usher-pgexport exited {ex.returncode}")
    srv.stop()
    log("pgexport --http: all checks passed")


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
            shutil.rmtree(H.tmp, ignore_errors=True)
        else:
            print(f"kept {H.tmp} for inspection")
