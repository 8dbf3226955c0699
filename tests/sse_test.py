#!/usr/bin/env python3
"""Server-Sent Events end to end: live seat maps and queue positions (net/sse.c).

Starts usherd (2 shards, 10 s holds, the minimum), builds a small catalog over
the admin API (showtimes on both shards, told apart by the per-shard
usher_showtimes gauge), then checks:

  1. transitions: a stream starts with `retry: 2000` and a snapshot equal to
     GET /api/seats/:id; reserve, release, confirm, cancel, best available and
     hold expiry each show up as one `seats` event listing exactly the seats
     changed with their newest state; ids strictly increase and each is an
     LSN of its change (above the owning shard's durable_lsn before it, at
     most the one after); snapshot + events == GET after every change; no
     event repeats a state the watcher already has; every event, and every
     snapshot taken while a reserve was being synced, is durable (GET /readyz)
     when it arrives; other showtimes' streams see nothing; a deleted
     showtime ends its streams (`end`, showtime-deleted); 404; 400 for a
     malformed Last-Event-ID (field "Last-Event-ID") and ?last_event_id=.
  2. resume: a watcher that disconnects and comes back with Last-Event-ID (or
     ?last_event_id=) gets no snapshot and exactly the events another watcher
     got after that id, byte for byte; an id older than the ring (1) and one
     never sent get a snapshot equal to GET; the newest id gets nothing until
     the next change. Pipelining reserve + stream on one connection gives 400
     pipelined-stream when the connection must move shards, and on the owning
     shard a snapshot that already shows the hold and no event repeating it.
  3. fan-out: 300 concurrent watchers (about half moved between shards) get
     byte-identical snapshots and events.
  4. slow watcher: a watcher with a 4 KiB receive buffer that stops reading
     while 2 x PAIRS changes of 16 seats happen gets a gapless prefix of the
     normal watcher's events, then `end` (too-slow), then the connection
     closes; the normal watcher got every change, one event each;
     reconnecting with the slow watcher's last id gives a snapshot.
  5. kill -9: every change a watcher saw survives a crash (snapshot + events
     == GET after the restart); its last id gives a snapshot equal to GET or
     nothing; ids keep increasing after the restart; an id from before the
     restart gets a snapshot.
  6. queue stream: 401 (no token, bad ?access_token=), 404 no-queue,
     not-waiting and unknown showtime; users who joined in the prequeue see
     prequeue -> waiting (positions never increase, at most one a second) ->
     admitted with a token (within ~1 s of admitted_at), then the stream
     ends; each token reserves; leaving the queue sends state none and ends;
     a removed queue ends its streams (`end`, no-queue).
  7. SIGTERM: open streams (both shards, a queue stream) get `end` (shutdown)
     and usherd exits 0.
  Also: an idle stream gets `: keep-alive` comments (every 15 s).

  8. showtime changes: a PATCH of start_time (which re-creates the showtime)
     ends its streams (`end`, showtime-changed) and a reconnect gets a
     snapshot and the changes after it; a seat change and the showtime's
     deletion in one loop turn end its streams (`end`, showtime-deleted)
     and usherd lives on.

Environment: USHERD (binary).
"""
import http.client
import json
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import usherlib  # noqa: E402
from usherlib import iso  # noqa: E402

USHERD = os.environ["USHERD"]
ADMIN_EMAIL, ADMIN_PW = "admin@sse.test", "sse-test-admin-pw"
HOLD_TTL = 10  # usherd's minimum
PAIRS = 1400  # reserve/release pairs of 16 seats in the slow-watcher test
FANOUT = 300


def _stop_poller():
    if POLLER is not None:
        POLLER.stop = True


# fail() prints usherd's stderr when given no file, and must end the process
# with os._exit (other threads, the poller, must not keep it alive).
H = usherlib.Harness("usher-sse-test-", elapsed_log=True, stack=5, hard_exit=True,
                     default_files=lambda: (SRV.err,) if SRV is not None else (),
                     on_cleanup=_stop_poller)
T0 = H.t0
log, fail, check, cleanup = H.log, H.fail, H.check, H.cleanup


# ---- usherd ---------------------------------------------------------------------------------


class Usherd(usherlib.Usherd):
    """2 shards, the minimum hold TTL, 16 seats a hold; the first start picks a free
    port, restarts keep it."""

    def __init__(self):
        super().__init__(
            H, USHERD, os.path.join(H.tmp, "data"), ADMIN_EMAIL, ADMIN_PW,
            ["--shards", "2", "--password-cost", "min", "--hold-ttl", str(HOLD_TTL),
             "--max-seats-per-hold", "16", "--admission-window", "60", "--rate-limit", "off"],
            start_polls=1200)


SRV = None


# ---- HTTP requests ---------------------------------------------------------------------------


class Api(usherlib.Api):
    """One keep-alive connection (one per thread)."""

    def __init__(self):
        super().__init__(H, lambda: SRV.port, keepalive=True)


API = Api()


def call(*a, **kw):
    return API.call(*a, **kw)


def login(email, pw):
    return API.login(email, pw)


def user(i):
    return API.user(f"u{i}@sse.test", f"User {i}")


def parse_ms(t):
    """2026-11-21T13:02:35.000Z (or without the fraction) -> seconds."""
    import calendar
    base, _, frac = t.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))


def metrics(api=None):
    r, body = (api or API).raw("GET", "/metrics")
    check(r.status == 200, f"/metrics: {r.status}")
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r'^(\w+)\{shard="(\d+)"\} (\d+)$', line)
        if m:
            out[(m.group(1), int(m.group(2)))] = int(m.group(3))
    return out


def seat_map(obj):
    return {s["label"]: s["state"] for s in obj["seats"]}


def get_seats(show, api=None):
    return (api or API).call("GET", f"/api/seats/{show}", expect=200)[1]


def wait_for(pred, what, timeout=20):
    return H.wait_for(pred, what, timeout, poll=0.05)


# ---- Event streams ------------------------------------------------------------------------------

COND = threading.Condition()


class Event:
    def __init__(self, raw):
        self.raw = raw  # the block's bytes, without the blank line
        self.t = time.time()  # when it arrived
        self.id = None
        self.event = None
        self.data = None
        for line in raw.decode().split("\n"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                self.id = int(value)
            elif field == "event":
                self.event = value
            elif field == "data":
                check(self.data is None, f"an event with two data lines: {raw!r}")
                self.data = value

    def json(self):
        return json.loads(self.data)

    def __repr__(self):
        return f"<{self.event} {self.id} {self.data[:120] if self.data else ''}>"


class Stream:
    """An HTTP request whose answer is read as it comes: a chunked event
    stream (events, comments, `retry:` lines), or an ordinary answer."""

    def __init__(self, path, headers=None, rcvbuf=None, sock=None, initial=b"", send=True):
        self.path = path
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.connect(("127.0.0.1", SRV.port))
        self.sock = sock
        if send:
            req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" +
                   "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + "\r\n")
            sock.sendall(req.encode())
        self.buf = bytearray()
        self.text = bytearray()
        self.status = None
        self.headers = {}
        self.body = b""
        self.blocks = []  # every block of the stream, in order (bytes)
        self.events = []
        self.comments = []
        self.done = False  # the terminating chunk (or the whole body) arrived
        self.eof = False
        self.polled = False
        self.on_event = None  # called (outside the lock) with each new event
        self.opened = time.time()
        if initial:
            self.feed(initial)

    # Parsing. Returns the new events.
    def feed(self, data):
        if not data:
            self.eof = True
            return []
        self.buf += data
        new = []
        if self.status is None:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return new
            lines = self.buf[:i].decode().split("\r\n")
            self.status = int(lines[0].split()[1])
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                self.headers[k.strip().lower()] = v.strip()
            del self.buf[:i + 4]
        if self.headers.get("transfer-encoding") != "chunked":
            n = int(self.headers.get("content-length", "0"))
            if len(self.buf) >= n:
                self.body = bytes(self.buf[:n])
                del self.buf[:n]
                self.done = True
            return new
        pos = 0
        while not self.done:
            i = self.buf.find(b"\r\n", pos)
            if i < 0:
                break
            n = int(self.buf[pos:i], 16)
            if len(self.buf) < i + 2 + n + 2:
                break
            check(self.buf[i + 2 + n:i + 4 + n] == b"\r\n", f"{self.path}: bad chunk framing")
            if n == 0:
                self.done = True
            else:
                self.text += self.buf[i + 2:i + 2 + n]
            pos = i + 4 + n
        del self.buf[:pos]
        pos = 0
        while True:
            i = self.text.find(b"\n\n", pos)
            if i < 0:
                break
            block = bytes(self.text[pos:i])
            pos = i + 2
            self.blocks.append(block)
            if block.startswith(b":"):
                self.comments.append(block)
            elif block.startswith(b"retry:"):
                pass
            else:
                ev = Event(block)
                self.events.append(ev)
                new.append(ev)
        del self.text[:pos]
        return new

    def problem(self):
        return json.loads(self.body) if self.body else None

    def read_until(self, pred, timeout, what):
        """Reads on this thread (the stream is not polled) until pred(self)."""
        end = time.time() + timeout
        while not pred(self):
            left = end - time.time()
            if left <= 0:
                fail(f"{self.path}: timed out waiting for {what}; events {self.events[-3:]}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 18)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            for ev in self.feed(data):
                if self.on_event:
                    self.on_event(ev)
            if self.eof and not pred(self):
                fail(f"{self.path}: connection closed before {what}; events {self.events[-3:]}")

    def wait(self, pred, timeout, what):
        """Waits (the stream is polled) until pred(self)."""
        end = time.time() + timeout
        with COND:
            while not pred(self):
                left = end - time.time()
                if left <= 0 or (self.eof and not pred(self)):
                    fail(f"{self.path}: {'closed' if self.eof else 'timed out'} waiting for "
                         f"{what}; status {self.status}, {len(self.events)} events, last "
                         f"{self.events[-3:]}")
                COND.wait(min(left, 0.2))

    def seats_events(self):
        return [e for e in self.events if e.event == "seats"]

    def close(self):
        if self.polled:
            POLLER.remove(self)
        self.sock.close()


class Poller(threading.Thread):
    """Reads every registered stream as data arrives (one thread)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sel = selectors.DefaultSelector()
        self.r, self.w = socket.socketpair()
        self.r.setblocking(False)
        self.sel.register(self.r, selectors.EVENT_READ, None)
        self.lock = threading.Lock()
        self.cmds = []
        self.stop = False

    def _cmd(self, op, s):
        done = threading.Event()
        with self.lock:
            self.cmds.append((op, s, done))
        self.w.send(b"x")
        return done

    def add(self, *streams):
        waits = [self._cmd("add", s) for s in streams]
        for d in waits:
            d.wait(10)

    def remove(self, s):
        self._cmd("remove", s).wait(10)

    def run(self):
        while not self.stop:
            for key, _ in self.sel.select(0.5):
                if key.data is None:
                    try:
                        self.r.recv(4096)
                    except BlockingIOError:
                        pass
                    continue
                s = key.data
                try:
                    data = s.sock.recv(1 << 18)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                with COND:
                    new = s.feed(data)
                    COND.notify_all()
                if s.on_event:
                    for ev in new:
                        try:
                            s.on_event(ev)
                        except Exception:
                            import traceback
                            traceback.print_exc()
                            fail(f"{s.path}: the event hook failed")
                if not data:
                    self.sel.unregister(s.sock)
                    s.polled = False
            with self.lock:
                cmds, self.cmds = self.cmds, []
            for op, s, done in cmds:
                if op == "add" and not s.polled:
                    s.sock.setblocking(False)
                    self.sel.register(s.sock, selectors.EVENT_READ, s)
                    s.polled = True
                elif op == "remove" and s.polled:
                    self.sel.unregister(s.sock)
                    s.polled = False
                done.set()


POLLER = None
SHARD_OF = {}  # showtime id -> owning shard


def watch(path, headers=None, **kw):
    s = Stream(path, headers, **kw)
    POLLER.add(s)
    return s


def refused(path, headers=None):
    """A stream request expected to be refused: its (status, problem)."""
    s = Stream(path, headers)
    s.read_until(lambda x: x.done, 10, "the answer")
    s.close()
    check(s.headers.get("content-type") == "application/problem+json",
          f"{path}: refusal is not problem+json: {s.status} {s.headers}")
    return s.status, s.problem()


def check_stream_head(s):
    check(s.status == 200, f"{s.path}: status {s.status} {s.body[:300]!r}")
    check(s.headers.get("content-type") == "text/event-stream",
          f"{s.path}: content-type {s.headers}")
    check(s.headers.get("transfer-encoding") == "chunked", f"{s.path}: not chunked: {s.headers}")
    check(s.blocks and s.blocks[0] == b"retry: 2000",
          f"{s.path}: the stream does not start with retry: 2000: {s.blocks[:1]}")


def apply(model, ev, show, strict=True):
    """Applies a seats event to a label->state map. strict: every seat it
    lists changes (no change is sent twice)."""
    check(ev.event == "seats", f"not a seats event: {ev}")
    d = ev.json()
    check(d["showtime_id"] == show, f"event for showtime {d['showtime_id']} on {show}'s stream")
    labels = [s["label"] for s in d["seats"]]
    check(len(labels) == len(set(labels)) and labels, f"seats listed twice or none: {ev}")
    for s in d["seats"]:
        check(s["label"] in model, f"unknown seat {s['label']} in {ev}")
        check(s["state"] in ("free", "held", "sold"), f"bad state in {ev}")
        if strict:
            check(model[s["label"]] != s["state"],
                  f"event {ev.id} repeats a state the watcher already has: {s} (sent twice?)")
        model[s["label"]] = s["state"]
    return {s["label"]: s["state"] for s in d["seats"]}


def replay(s, show, strict=True):
    """snapshot + events of a stream: its seat map; checks ids increase."""
    check(s.events and s.events[0].event == "snapshot", f"{s.path}: no snapshot first: "
          f"{s.events[:1]}")
    model = seat_map(s.events[0].json())
    last = s.events[0].id
    for ev in s.events[1:]:
        if ev.event == "end":
            continue
        check(ev.id is not None and ev.id > last, f"{s.path}: ids not increasing: {last} then {ev}")
        last = ev.id
        apply(model, ev, show, strict)
    return model


class DurableProbe:
    """On each event: the owning shard's durable LSN (GET /readyz) must be at
    least the event's id: events go out only once their changes are synced."""

    def __init__(self, shard):
        self.shard = shard
        self.api = Api()
        self.seen = []
        self.calls = 0

    def __call__(self, ev):
        try:
            if ev.id is None:
                return
            try:
                r, body = self.api.raw("GET", "/readyz")
            except (OSError, http.client.HTTPException):
                return  # the server is gone (kill -9): nothing to compare
            if r.status != 200:
                return
            d = json.loads(body)["shards"][self.shard]["durable_lsn"]
            self.seen.append((ev.id, d, ev.event))
        finally:
            self.calls += 1

    def verify(self, what):
        bad = [(i, d, k) for i, d, k in self.seen if d < i]
        check(not bad, f"{what}: events arrived before their change was durable "
              f"(id, durable_lsn, event): {bad[:5]}")
        return len(self.seen)


# ---- Catalog ---------------------------------------------------------------------------------


def setup_catalog(admin):
    _, th = call("POST", "/api/theaters", {"name": "SSE Hall", "city": "Pune"}, admin, 201)
    small = [{"label": r, "category": "silver" if r in "AB" else "gold", "seats": 8}
             for r in "ABCD"]
    _, scr = call("POST", "/api/screens", {"theater_id": th["id"], "name": "small", "layout": {
        "categories": ["silver", "gold"], "rows": small}}, admin, 201)
    big = [{"label": r, "category": "std", "seats": 16} for r in "ABCDEFGH"]
    _, bigscr = call("POST", "/api/screens", {"theater_id": th["id"], "name": "big", "layout": {
        "categories": ["std"], "rows": big}}, admin, 201)
    _, mv = call("POST", "/api/movies", {"title": "Streaming", "duration_min": 120,
                                         "genre": "drama", "language": "hindi"}, admin, 201)
    shows = {0: [], 1: []}
    big_show = None
    # Showtimes until each shard has seven (the first one on the big screen).
    for i in range(40):
        if big_show is not None and min(len(v) for v in shows.values()) >= 7:
            break
        before = metrics()
        screen = bigscr if i == 0 else scr
        prices = {"std": 15000} if i == 0 else {"silver": 10000, "gold": 20000}
        _, s = call("POST", "/api/showtimes", {
            "movie_id": mv["id"], "screen_id": screen["id"],
            "start_time": iso(time.time() + (3 + i) * 86400), "prices": prices}, admin, 201)

        def owner():
            m = metrics()
            return [k for k in (0, 1) if m[("usher_showtimes", k)] > before[("usher_showtimes", k)]]
        grew = wait_for(owner, f"showtime {s['id']} on a shard")
        check(len(grew) == 1, f"showtime {s['id']}: usher_showtimes grew on {grew}")
        SHARD_OF[s["id"]] = grew[0]
        if i == 0:
            big_show = (s["id"], grew[0])
        else:
            shows[grew[0]].append(s["id"])
    check(min(len(v) for v in shows.values()) >= 7,
          f"showtimes do not spread over both shards: {shows}")
    log(f"showtimes by shard: {shows}, big {big_show}")
    return shows, big_show


# ---- 1. transitions ---------------------------------------------------------------------------


def test_transitions(admin, u, show, shard, other, noise):
    log(f"1. every transition kind (showtime {show}, shard {shard})")
    # Refusals first.
    st, p = refused("/api/seats/987654321/events")
    check(st == 404, f"unknown showtime: {st} {p}")
    for bad in ("abc", "0", "-5", "12x", "1.5"):
        st, p = refused(f"/api/seats/{show}/events", {"Last-Event-ID": bad})
        check(st == 400 and p.get("field") == "Last-Event-ID",
              f"Last-Event-ID {bad!r}: {st} {p}")
    st, p = refused(f"/api/seats/{show}/events?last_event_id=abc")
    check(st == 400, f"?last_event_id=abc: {st} {p}")

    probe = DurableProbe(shard)
    w = Stream(f"/api/seats/{show}/events")
    w.on_event = probe
    POLLER.add(w)
    w.wait(lambda s: len(s.events) >= 1, 10, "the snapshot")
    check_stream_head(w)
    snap = w.events[0]
    check(snap.event == "snapshot" and snap.id is not None, f"first event: {snap}")
    got = get_seats(show)
    check(snap.json() == got, f"snapshot != GET /api/seats/{show}:\n {snap.data[:300]}\n "
          f"{json.dumps(got)[:300]}")
    wo = watch(f"/api/seats/{other}/events")
    wo.wait(lambda s: len(s.events) >= 1, 10, "the other showtime's snapshot")
    check_stream_head(wo)
    model = seat_map(snap.json())

    def durable():
        return call("GET", "/readyz", expect=200)[1]["shards"][shard]["durable_lsn"]

    def step(action, expect, timeout=10):
        # Records of another showtime of the shard first: LSNs move on
        # between this showtime's events.
        _, hn = call("POST", "/api/bookings/reserve", {"showtime_id": noise, "seats": ["A1"]},
                     u[3], 201)
        call("DELETE", f"/api/holds/{hn['hold_id']}", token=u[3], expect=204)
        n = len(w.events)
        d0 = durable()  # quiet: every record so far is durable
        t = time.time()
        action()
        w.wait(lambda s: len(s.events) > n, timeout, f"the event of {expect}")
        elapsed = time.time() - t
        time.sleep(0.15)  # nothing more may come for this one change
        check(len(w.events) == n + 1, f"one change, {len(w.events) - n} events: {w.events[n:]}")
        ev = w.events[n]
        check(ev.id > w.events[n - 1].id, f"ids not increasing: {w.events[n - 1].id} then {ev.id}")
        changed = apply(model, ev, show)
        check(changed == expect, f"event {ev} lists {changed}, expected {expect}")
        # The id is the LSN that covers the change: journaled after d0, synced.
        d1 = durable()
        check(d0 < ev.id <= d1, f"event id {ev.id} is not an LSN of the change "
              f"(durable_lsn {d0} before it, {d1} after)")
        gm = seat_map(get_seats(show))
        check(gm == model, f"snapshot + events != GET after {expect}:\n {model}\n {gm}")
        return elapsed

    h = {}

    def reserve(seats, who=0):
        def f():
            h["hold"] = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": seats},
                             u[who], 201)[1]
        return f

    step(reserve(["A1", "A2"]), {"A1": "held", "A2": "held"})
    step(lambda: call("DELETE", f"/api/holds/{h['hold']['hold_id']}", token=u[0], expect=204),
         {"A1": "free", "A2": "free"})
    step(reserve(["A3", "C5"], 1), {"A3": "held", "C5": "held"})

    def confirm():
        h["booking"] = call("POST", "/api/bookings/confirm", {
            "hold_id": h["hold"]["hold_id"], "payment": {"method": "upi"}}, u[1], 201)[1]
    step(confirm, {"A3": "sold", "C5": "sold"})
    step(lambda: call("POST", f"/api/bookings/{h['booking']['booking_id']}/cancel", token=u[1],
                      expect=200), {"A3": "free", "C5": "free"})
    # Best available too: the event names the seats it chose.
    step(reserve(["B4"], 0), {"B4": "held"})
    n = len(w.events)
    _, hb = call("POST", "/api/bookings/reserve", {"showtime_id": show, "count": 3,
                                                   "category": "gold"}, u[3], 201)
    w.wait(lambda s: len(s.events) > n, 10, "the best-available event")
    ch = apply(model, w.events[n], show)
    check(ch == {x: "held" for x in hb["seats"]}, f"best available {hb['seats']}: event {ch}")
    call("DELETE", f"/api/holds/{hb['hold_id']}", token=u[3], expect=204)
    call("DELETE", f"/api/holds/{h['hold']['hold_id']}", token=u[0], expect=204)
    w.wait(lambda s: len(s.events) >= n + 3, 10, "the releases")
    time.sleep(0.2)
    check(replay(w, show) == seat_map(get_seats(show)), "snapshot + events != GET at the end")
    check(len(wo.events) == 1, f"another showtime's stream got events: {wo.events[1:]}")
    # A change there reaches its stream and not this one.
    n = len(w.events)
    _, ho = call("POST", "/api/bookings/reserve", {"showtime_id": other, "seats": ["A1"]}, u[0], 201)
    wo.wait(lambda s: len(s.events) >= 2, 10, "the other showtime's event")
    check(apply(seat_map(wo.events[0].json()), wo.events[1], other) == {"A1": "held"},
          f"other showtime: {wo.events[1]}")
    call("DELETE", f"/api/holds/{ho['hold_id']}", token=u[0], expect=204)
    wo.wait(lambda s: len(s.events) >= 3, 10, "the other showtime's release")
    time.sleep(0.2)
    check(len(w.events) == n, f"{show}'s stream got {other}'s change: {w.events[n:]}")
    k = probe.verify("transitions")
    check(k >= 10, f"only {k} events probed for durability")
    w.close()
    wo.close()
    log(f"   ok: {len(w.events)} events, each durable on arrival")


def test_snapshot_race(u, show, shard):
    """Streams opened while a reserve's record is being synced: the snapshot
    (which may show the hold) goes out only once what it shows is durable."""
    path = f"/api/seats/{show}/events"
    keep = watch(path)  # the feed exists: the snapshot's id covers every change
    keep.wait(lambda s: len(s.events) >= 1, 10, "the snapshot")
    shown = 0
    for i in range(20):
        probe = DurableProbe(shard)
        y = socket.create_connection(("127.0.0.1", SRV.port))
        x = socket.create_connection(("127.0.0.1", SRV.port))
        body = json.dumps({"showtime_id": show, "seats": [f"B{i % 8 + 1}"]})
        x.sendall((f"POST /api/bookings/reserve HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {u[i % 4]}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        s = Stream(path, sock=y)
        s.on_event = probe
        s.read_until(lambda z: len(z.events) >= 1, 10, "the snapshot")
        x.settimeout(10)
        st, _, hb, _ = read_response(x, b"")
        check(st == 201, f"reserve: {st} {hb[:200]!r}")
        x.close()
        shown += seat_map(s.events[0].json())[f"B{i % 8 + 1}"] == "held"
        s.close()
        probe.verify("a snapshot taken while a change was being synced")
        call("DELETE", f"/api/holds/{json.loads(hb)['hold_id']}", token=u[i % 4], expect=204)
    keep.close()
    log(f"   ok: 20 snapshots raced a reserve ({shown} showed it), each durable on arrival")


def start_expiry(u, show):
    """A hold whose expiry is watched while the other tests run."""
    w = watch(f"/api/seats/{show}/events")
    w.wait(lambda s: len(s.events) >= 1, 10, "the snapshot")
    check_stream_head(w)
    _, h = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["D8", "D7"]},
                u[2], 201)
    t = time.time()
    w.wait(lambda s: len(s.events) >= 2, 10, "the hold's event")
    return {"w": w, "show": show, "t": t, "hold": h}


def finish_expiry(x):
    w, show = x["w"], x["show"]
    w.wait(lambda s: len(s.events) >= 3, HOLD_TTL + 10, "the hold's expiry")
    elapsed = time.time() - x["t"]
    check(elapsed > HOLD_TTL - 1, f"the hold expired after {elapsed:.1f} s (TTL {HOLD_TTL} s)")
    time.sleep(0.2)
    check(len(w.events) == 3, f"more than reserve + expiry: {w.events}")
    model = seat_map(w.events[0].json())
    check(apply(model, w.events[1], show) == {"D8": "held", "D7": "held"}, f"hold: {w.events[1]}")
    check(apply(model, w.events[2], show) == {"D8": "free", "D7": "free"}, f"expiry: {w.events[2]}")
    check(w.events[2].id > w.events[1].id > w.events[0].id, f"ids: {w.events}")
    check(model == seat_map(get_seats(show)), "snapshot + events != GET after the expiry")
    w.close()
    log(f"   ok: hold expiry seen after {elapsed:.1f} s")


def test_deleted(admin, show):
    w = watch(f"/api/seats/{show}/events")
    w.wait(lambda s: len(s.events) >= 1, 10, "the snapshot")
    call("DELETE", f"/api/showtimes/{show}", token=admin, expect=204)
    w.wait(lambda s: s.done and s.eof, 10, "the end of a deleted showtime's stream")
    ev = w.events[-1]
    check(ev.event == "end" and ev.json()["reason"] == "showtime-deleted",
          f"deleted showtime: last event {ev}")
    w.close()
    log("   ok: a deleted showtime ends its stream (showtime-deleted)")


# ---- 2. resume --------------------------------------------------------------------------------


def test_resume(u, show, shard):
    log(f"2. resume (showtime {show}, shard {shard})")
    path = f"/api/seats/{show}/events"
    a = watch(path)
    b = watch(path)
    for s in (a, b):
        s.wait(lambda x: len(x.events) >= 1, 10, "the snapshot")
        check_stream_head(s)
    check(a.events[0].id > 1, f"snapshot id {a.events[0].id}: too small for the ring test")
    holds = []

    # DELETE needs the owner's token: keep each hold with its user.
    owners = []

    def change2(i):
        n = len(a.events)
        if i % 3 == 2:
            hid, who = holds.pop(0), owners.pop(0)
            call("DELETE", f"/api/holds/{hid}", token=u[who], expect=204)
        else:
            seat = f"{'ABCD'[i // 8 % 4]}{i % 8 + 1}"
            holds.append(call("POST", "/api/bookings/reserve",
                              {"showtime_id": show, "seats": [seat]}, u[i % 4], 201)[1]["hold_id"])
            owners.append(i % 4)
        a.wait(lambda x: len(x.events) > n, 10, f"change {i}")

    for i in range(4):
        change2(i)
    b.wait(lambda x: len(x.events) >= len(a.events), 10, "b's events")
    b.close()
    last_b = b.events[-1].id
    check([e.raw for e in b.events[1:]] == [e.raw for e in a.events[1:]],
          "two watchers of one showtime got different events")
    for i in range(4, 12):
        change2(i)
    after = [e for e in a.events if e.id > last_b]
    check(len(after) == 8, f"a got {len(after)} events after {last_b}, expected 8")

    def resumed(s, what):
        s.wait(lambda x: x.events and x.events[-1].id >= a.events[-1].id, 10,
               f"{what} to catch up")
        time.sleep(0.2)
        check_stream_head(s)
        check(all(e.event != "snapshot" for e in s.events),
              f"{what}: a snapshot on a resume inside the ring: {s.events[:2]}")
        check([e.raw for e in s.events] == [e.raw for e in after],
              f"{what}: events after {last_b} differ from what a got:\n "
              f"{[e.id for e in s.events]}\n {[e.id for e in after]}")

    b2 = watch(path, {"Last-Event-ID": str(last_b)})
    resumed(b2, "Last-Event-ID")
    b3 = watch(f"{path}?last_event_id={last_b}")
    resumed(b3, "?last_event_id=")
    # The newest id: nothing to send until the next change.
    b4 = watch(path, {"Last-Event-ID": str(a.events[-1].id)})
    # An id older than the ring covers, and one it never sent: a fresh snapshot.
    b5 = watch(path, {"Last-Event-ID": "1"})
    b6 = watch(path, {"Last-Event-ID": str(10 ** 15)})
    cur = get_seats(show)
    for s, what in ((b5, "Last-Event-ID: 1"), (b6, "a future Last-Event-ID")):
        s.wait(lambda x: len(x.events) >= 1, 10, f"{what}'s snapshot")
        check(s.events[0].event == "snapshot" and s.events[0].json() == cur,
              f"{what}: {s.events[0]} is not a snapshot equal to GET")
    time.sleep(0.3)
    # (The stream's first bytes, `retry:` included, come with its first event.)
    check(b4.status == 200 and b4.events == [] and b4.blocks in ([], [b"retry: 2000"]),
          f"resume at the newest id sent {b4.status} {b4.blocks}")
    # One more change: everyone gets the same bytes.
    change2(12)
    for s in (b2, b3, b4, b5, b6):
        s.wait(lambda x: x.events and x.events[-1].id == a.events[-1].id, 10, "the next change")
        check_stream_head(s)
        check(s.events[-1].raw == a.events[-1].raw, f"{s.path}: the next change differs")
    now = seat_map(get_seats(show))
    for s in (a, b5, b6):
        check(replay(s, show) == now, f"{s.path}: snapshot + events != GET")
    for s in (b2, b3, b4, b5, b6):
        s.close()
    for hid, who in zip(holds, owners):
        call("DELETE", f"/api/holds/{hid}", token=u[who], expect=204)
    log(f"   ok: resumed after {last_b}: {len(after)} events, none repeated, none lost")
    return a


def read_response(sock, buf):
    """One Content-Length answer from sock (buf: bytes already read)."""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        check(d, "connection closed before an answer")
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        d = sock.recv(65536)
        check(d, "connection closed in an answer")
        rest += d
    return status, hdrs, rest[:n], rest[n:]


def test_pipelined(u, show, a):
    """reserve + stream pipelined on one connection. On the owning shard the
    stream starts in the turn the reserve changed a seat: its snapshot shows
    the hold and no event may repeat it. On the other shard the stream cannot
    move with the reserve's answer owed: 400 pipelined-stream."""
    log(f"   pipelined reserve + stream (showtime {show})")
    seen = {"owner": 0, "moved": 0}
    token = u[0]
    for attempt in range(60):
        if seen["owner"] >= 2 and seen["moved"] >= 2:
            break
        seat = "D7"
        body = json.dumps({"showtime_id": show, "seats": [seat]})
        req = (f"POST /api/bookings/reserve HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
               f"GET /api/seats/{show}/events HTTP/1.1\r\nHost: x\r\n\r\n")
        n = len(a.events)
        sock = socket.create_connection(("127.0.0.1", SRV.port))
        sock.settimeout(10)
        sock.sendall(req.encode())
        st, _, hb, rest = read_response(sock, b"")
        check(st == 201, f"pipelined reserve: {st} {hb[:300]!r}")
        hold = json.loads(hb)["hold_id"]
        probe = DurableProbe(SHARD_OF[show])
        s = Stream(f"pipelined {show}", sock=sock, send=False)
        s.on_event = probe
        # The reserve's answer and the stream's head may come in one read or two: feed
        # only bytes (feed(b"") means the peer closed).
        for ev in s.feed(rest) if rest else []:
            probe(ev)
        s.read_until(lambda x: x.status is not None, 10, "the stream's answer")
        if s.status == 400:
            s.read_until(lambda x: x.done, 10, "the 400's body")
            p = s.problem()
            check(p["type"].endswith("/pipelined-stream"), f"pipelined stream refused with {p}")
            seen["moved"] += 1
            s.close()
        else:
            s.read_until(lambda x: len(x.events) >= 1, 10, "the snapshot")
            check_stream_head(s)
            snap = s.events[0]
            check(snap.event == "snapshot" and seat_map(snap.json())[seat] == "held",
                  f"the snapshot after a pipelined reserve does not show {seat} held: {snap}")
            seen["owner"] += 1
            POLLER.add(s)
        call("DELETE", f"/api/holds/{hold}", token=token, expect=204)
        a.wait(lambda x: len(x.events) >= n + 2 and x.events[-1].json()["seats"] == [
            {"label": seat, "state": "free"}], 10, "the release")
        if s.status == 200:
            s.wait(lambda x: x.events[-1].id >= a.events[-1].id, 10, "the release on the stream")
            time.sleep(0.1)
            # Nothing repeats what the snapshot showed (strict), and the events
            # after it are a's (the hold's event is older than the snapshot).
            replay(s, show)
            check([e.raw for e in s.events[1:]] == [e.raw for e in a.events if e.id > snap.id],
                  f"pipelined stream events {s.events[1:]} vs {a.events[-2:]}")
            probe.verify("the snapshot after a pipelined reserve")
            s.close()
    check(seen["owner"] >= 1 and seen["moved"] >= 1,
          f"pipelining never hit both shards in 60 connections: {seen}")
    log(f"   ok: pipelined {seen}")


# ---- 3. fan-out --------------------------------------------------------------------------------


def test_fanout(u, show):
    log(f"3. fan-out: {FANOUT} watchers (showtime {show})")
    before = metrics()
    t = time.time()
    ws = []
    for i in range(FANOUT):
        ws.append(Stream(f"/api/seats/{show}/events"))
    POLLER.add(*ws)
    for w in ws:
        w.wait(lambda s: len(s.events) >= 1, 30, "the snapshot")
        check_stream_head(w)
    log(f"   {FANOUT} snapshots in {time.time() - t:.1f} s")
    moved = (sum(metrics()[("usher_cross_shard_jobs_total", k)] for k in (0, 1)) -
             sum(before[("usher_cross_shard_jobs_total", k)] for k in (0, 1)))
    check(moved >= FANOUT // 10, f"only {moved} of {FANOUT} connections moved shards")
    snaps = {w.events[0].raw for w in ws}
    check(len(snaps) == 1, f"{len(snaps)} different snapshots of a quiet showtime")
    check(ws[0].events[0].json() == get_seats(show), "the snapshot != GET")
    _, hold = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["B1", "B2", "C3"]},
                   u[0], 201)
    for w in ws:
        w.wait(lambda s: len(s.events) >= 2, 20, "the hold's event")
    call("DELETE", f"/api/holds/{hold['hold_id']}", token=u[0], expect=204)
    for w in ws:
        w.wait(lambda s: len(s.events) >= 3, 20, "the release's event")
    time.sleep(0.2)
    for k in (1, 2):
        got = {w.events[k].raw for w in ws}
        check(len(got) == 1, f"event {k}: {len(got)} different versions among {FANOUT} watchers")
    check(all(len(w.events) == 3 for w in ws), "a watcher got more than two events")
    check(apply(seat_map(ws[0].events[0].json()), ws[0].events[1], show) ==
          {"B1": "held", "B2": "held", "C3": "held"}, f"fan-out event {ws[0].events[1]}")
    for w in ws:
        w.close()
    log(f"   ok: {FANOUT} watchers ({moved} moved shards), identical events, {time.time() - t:.1f} s")


# ---- 4. slow watcher ---------------------------------------------------------------------------


def test_slow(u, show):
    log(f"4. slow watcher: {PAIRS} reserve/release pairs of 16 seats (showtime {show})")
    path = f"/api/seats/{show}/events"
    a = watch(path)
    slow = Stream(path, rcvbuf=4096)
    slow.read_until(lambda s: len(s.events) >= 1, 10, "the slow watcher's snapshot")
    check_stream_head(slow)
    a.wait(lambda s: len(s.events) >= 1, 10, "a's snapshot")
    seats = [f"A{i}" for i in range(1, 17)]
    api = Api()
    t = time.time()
    for i in range(PAIRS):
        _, hold = api.call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": seats},
                           u[i % 4], 201)
        api.call("DELETE", f"/api/holds/{hold['hold_id']}", token=u[i % 4], expect=204)
    api.close()
    took = time.time() - t
    log(f"   {2 * PAIRS} changes in {took:.1f} s")
    a.wait(lambda s: len(s.events) >= 1 + 2 * PAIRS, 30, "every change on the normal watcher")
    time.sleep(0.2)
    check(len(a.events) == 1 + 2 * PAIRS and not a.done,
          f"the normal watcher got {len(a.events) - 1} events for {2 * PAIRS} changes")
    model = seat_map(a.events[0].json())
    for k, ev in enumerate(a.events[1:]):
        state = "held" if k % 2 == 0 else "free"
        check(apply(model, ev, show) == {x: state for x in seats}, f"a's event {k}: {ev}")
    replay(a, show)
    check(model == seat_map(get_seats(show)), "a: snapshot + events != GET")
    # Now the slow watcher reads what it has.
    t = time.time()
    last_a = a.events[-1].id
    slow.read_until(lambda s: (s.done and s.eof) or (s.events and s.events[-1].id == last_a),
                    30, "the slow stream's end")
    evs = slow.events
    check(evs[0].event == "snapshot" and evs[0].raw == a.events[0].raw,
          f"slow watcher's snapshot {evs[0]} != a's {a.events[0]}")
    got = [e for e in evs[1:] if e.event != "end"]
    check(all(e.event == "seats" for e in got), "the slow stream has other events")
    ids = [e.id for e in a.events[1:]]
    check([e.raw for e in got] == [e.raw for e in a.events[1:1 + len(got)]],
          "the slow stream is not a gapless prefix of the normal watcher's events: " +
          next((f"its event {k} has id {e.id}, a's has {ids[k] if k < len(ids) else None}"
                for k, e in enumerate(got) if k >= len(ids) or e.id != ids[k]), ""))
    check(evs[-1].event == "end" and slow.done,
          f"the slow stream did not end with an end event: {len(got)} events, last {evs[-2:]}")
    end = evs[-1].json()
    check(end["reason"] == "too-slow" and isinstance(end.get("detail"), str),
          f"slow stream's end: {end}")
    slow.read_until(lambda s: s.eof, 10, "the connection to close after end")
    check(len(got) < 2 * PAIRS - 1024,
          f"the slow watcher got {len(got)} of {2 * PAIRS} events before it was dropped")
    log(f"   slow watcher: {len(got)} events (a gapless prefix), then end too-slow")
    # Reconnecting with its last id: too old for the ring, a fresh snapshot.
    r = watch(path, {"Last-Event-ID": str(got[-1].id if got else evs[0].id)})
    r.wait(lambda s: len(s.events) >= 1, 10, "the snapshot after too-slow")
    check(r.events[0].event == "snapshot" and r.events[0].json() == get_seats(show),
          f"reconnect after too-slow: {r.events[0]}")
    # The normal watcher still works.
    _, hold = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["H1"]}, u[0], 201)
    a.wait(lambda s: len(s.events) >= 2 + 2 * PAIRS, 10, "a change after the slow watcher left")
    r.wait(lambda s: len(s.events) >= 2, 10, "a change on the reconnected stream")
    check(r.events[1].raw == a.events[-1].raw, "the reconnected stream's event differs")
    call("DELETE", f"/api/holds/{hold['hold_id']}", token=u[0], expect=204)
    slow.close()
    r.close()
    a.close()
    log(f"   ok: slow watcher dropped with end too-slow, normal watcher got all {2 * PAIRS}")


# ---- 5. kill -9 --------------------------------------------------------------------------------


def test_crash(admin, u, show, shard):
    log(f"5. kill -9 (showtime {show}, shard {shard})")
    path = f"/api/seats/{show}/events"
    probe = DurableProbe(shard)
    w = Stream(path)
    w.on_event = probe
    POLLER.add(w)
    w.wait(lambda s: len(s.events) >= 1, 10, "the snapshot")
    first_id = w.events[0].id
    expect = seat_map(w.events[0].json())
    # A booking, a cancelled booking, a released hold, then a burst of bookings
    # from several connections at once (their events may merge).
    _, h1 = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["A1", "A2"]}, u[0], 201)
    call("POST", "/api/bookings/confirm", {"hold_id": h1["hold_id"], "payment": {"method": "card"}},
         u[0], 201)
    _, h2 = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["A3"]}, u[1], 201)
    _, b2 = call("POST", "/api/bookings/confirm", {"hold_id": h2["hold_id"], "payment": {"method": "upi"}},
                 u[1], 201)
    call("POST", f"/api/bookings/{b2['booking_id']}/cancel", token=u[1], expect=200)
    _, h3 = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["A4"]}, u[2], 201)
    call("DELETE", f"/api/holds/{h3['hold_id']}", token=u[2], expect=204)
    expect.update({"A1": "sold", "A2": "sold"})
    errors = []

    def buyer(k):
        api = Api()
        for row in "BCD":
            try:
                st, h = api.call("POST", "/api/bookings/reserve",
                                 {"showtime_id": show, "seats": [f"{row}{k + 1}"]}, u[k % 4])
                st2, _ = api.call("POST", "/api/bookings/confirm",
                                  {"hold_id": h["hold_id"], "payment": {"method": "wallet"}}, u[k % 4])
                if (st, st2) != (201, 201):
                    errors.append((k, row, st, st2))
            except Exception as e:  # reported below
                errors.append((k, row, repr(e)))
        api.close()
    threads = [threading.Thread(target=buyer, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    check(not errors, f"burst: {errors}")
    for row in "BCD":
        for k in range(8):
            expect[f"{row}{k + 1}"] = "sold"
    w.wait(lambda s: replay(s, show) == expect, 20, "the watcher to see every change")
    wait_for(lambda: probe.calls == len(w.events), "the durability probes", 10)
    SRV.kill9()
    seen = replay(w, show)
    last_id = w.events[-1].id
    n_events = len(w.events)
    w.close()
    k = probe.verify("crash")
    log(f"   watcher saw {n_events - 1} events up to id {last_id}; killed; restarting")
    SRV.start()
    API.close()
    after = get_seats(show)
    check(seat_map(after) == seen, f"after kill -9 the seat map differs from what the watcher saw:\n"
          f" saw   {seen}\n after {seat_map(after)}")
    # Its last id: a snapshot equal to GET, or nothing (nothing changed since).
    r = watch(path, {"Last-Event-ID": str(last_id)})
    time.sleep(0.5)
    check(r.status == 200, f"resume after restart: {r.status}")
    if r.events:
        check(r.events[0].event == "snapshot" and r.events[0].json() == after,
              f"resume after restart: {r.events[0]} is not a snapshot equal to GET")
        check(r.events[0].id >= last_id, f"snapshot id {r.events[0].id} below {last_id}")
        kind = "a snapshot"
    else:
        kind = "nothing (no change since)"
    # An id from well before the crash: a snapshot.
    old = watch(path, {"Last-Event-ID": str(first_id)})
    old.wait(lambda s: len(s.events) >= 1, 10, "the snapshot for an id from before the restart")
    check(old.events[0].event == "snapshot" and old.events[0].json() == after,
          f"an id from before the restart: {old.events[0]}")
    # Ids keep increasing after the restart.
    n = len(r.events)
    _, h = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["A8"]}, u[0], 201)
    r.wait(lambda s: len(s.events) > n, 10, "a change after the restart")
    check(r.events[-1].event == "seats" and r.events[-1].id > last_id,
          f"event after restart {r.events[-1]} (id must exceed {last_id})")
    m = dict(seen)
    check(apply(m, r.events[-1], show) == {"A8": "held"}, f"after restart: {r.events[-1]}")
    call("DELETE", f"/api/holds/{h['hold_id']}", token=u[0], expect=204)
    r.close()
    old.close()
    log(f"   ok: {k} events each durable on arrival, all survived; resume gave {kind}")


# ---- 6. queue stream ------------------------------------------------------------------------------


def test_queue(admin, u, show, show2, show3):
    log(f"6. queue stream (showtimes {show}, {show2})")
    path = f"/api/showtimes/{show}/queue/events"
    st, p = refused(path)
    check(st == 401, f"queue events without a token: {st} {p}")
    st, p = refused(path + "?access_token=not-a-jwt")
    check(st == 401, f"queue events with a bad ?access_token=: {st} {p}")
    st, p = refused(path, {"Authorization": "Bearer " + u[0]})
    check(st == 404 and p["type"].endswith("/no-queue"), f"no queue: {st} {p}")
    st, p = refused("/api/showtimes/987654321/queue/events", {"Authorization": "Bearer " + u[0]})
    check(st == 404, f"unknown showtime: {st} {p}")
    start = time.time() + 3.5
    rate = 2
    call("PUT", f"/api/showtimes/{show}/queue", {"rate_per_second": rate, "start_time": iso(start)},
         admin, 200)
    start = int(start)  # iso() drops the fraction
    st, p = refused(path, {"Authorization": "Bearer " + u[7]})
    check(st == 404 and p["type"].endswith("/not-waiting"), f"not in the queue: {st} {p}")
    users = list(range(6))
    for i in users:
        _, me = call("POST", f"/api/showtimes/{show}/queue/join", token=u[i], expect=201)
        check(me["state"] == "prequeue", f"join before the start: {me}")
    ws = {}
    for i in users:
        if i == 0:
            ws[i] = watch(f"{path}?access_token={u[i]}")
        else:
            ws[i] = watch(path, {"Authorization": "Bearer " + u[i]})
    for i, w in ws.items():
        w.wait(lambda s: len(s.events) >= 1, 10, f"user {i}'s first queue event")
        check_stream_head(w)
        d = w.events[0].json()
        check(w.events[0].event == "queue" and d["state"] == "prequeue" and d["showtime_id"] == show,
              f"user {i}'s first event: {w.events[0]}")
        _, me = call("GET", f"/api/showtimes/{show}/queue/me", token=u[i], expect=200)
        check(set(me) == set(d) and me["state"] == d["state"],
              f"the queue event is not GET queue/me: {d} vs {me}")
    check(time.time() < start, "the joins took longer than the queue's lead")
    for i, w in ws.items():
        w.wait(lambda s: s.events[-1].json().get("state") == "admitted", 4 + len(users) / rate + 10,
               f"user {i}'s admission")
        w.wait(lambda s: s.done and s.eof, 3, f"user {i}'s stream to end after admitted")
    waited = 0
    for i, w in ws.items():
        states = [e.json() for e in w.events]
        check(all(e.event == "queue" for e in w.events), f"user {i}: {w.events}")
        names = [s["state"] for s in states]
        check(names[0] == "prequeue" and names[-1] == "admitted" and
              set(names[1:-1]) <= {"waiting"}, f"user {i}: states {names}")
        pos = [s["position"] for s in states if s["state"] == "waiting"]
        check(all(isinstance(x, int) and x >= 1 for x in pos) and
              all(x >= y for x, y in zip(pos, pos[1:])), f"user {i}: positions {pos}")
        # A position change at most once a second (arrival times, with slack).
        tw = [e.t for e, st in zip(w.events, states) if st["state"] == "waiting"]
        check(all(y - x > 0.5 for x, y in zip(tw, tw[1:])),
              f"user {i}: position updates {[round(y - x, 2) for x, y in zip(tw, tw[1:])]} s apart")
        # A state change within ~250 ms (+ a sync): the admission.
        lag = w.events[-1].t - parse_ms(states[-1]["admitted_at"])
        check(-0.5 < lag < 1.5, f"user {i}: the admission arrived {lag:.2f} s after admitted_at")
        check(parse_ms(states[-1]["admitted_at"]) >= start - 0.01,
              f"user {i}: admitted at {states[-1]['admitted_at']} before the start")
        waited += bool(pos)
        adm = states[-1]
        check(adm.get("admission_token"), f"user {i}: admitted without a token: {adm}")
        check(w.events[-1].raw == w.blocks[-1], f"user {i}: something after admitted")
        # The token reserves.
        _, hold = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": [f"B{i + 1}"]},
                       u[i], 201, headers={"Admission-Token": adm["admission_token"]})
        call("DELETE", f"/api/holds/{hold['hold_id']}", token=u[i], expect=204)
        w.close()
    check(waited >= 1, "nobody was seen waiting (with a position) before admission")
    # Leaving the queue: a last event with state none, then the end.
    call("PUT", f"/api/showtimes/{show2}/queue",
         {"rate_per_second": 1, "start_time": iso(time.time() + 3600)}, admin, 200)
    call("POST", f"/api/showtimes/{show2}/queue/join", token=u[5], expect=201)
    w = watch(f"/api/showtimes/{show2}/queue/events", {"Authorization": "Bearer " + u[5]})
    w.wait(lambda s: len(s.events) >= 1, 10, "the first event")
    call("DELETE", f"/api/showtimes/{show2}/queue/me", token=u[5], expect=204)
    w.wait(lambda s: s.done and s.eof, 10, "the stream's end after leaving the queue")
    check([e.json()["state"] for e in w.events] == ["prequeue", "none"],
          f"leaving the queue: {w.events}")
    w.close()
    # The queue removed: its streams end (no-queue).
    call("POST", f"/api/showtimes/{show2}/queue/join", token=u[6], expect=201)
    w = watch(f"/api/showtimes/{show2}/queue/events", {"Authorization": "Bearer " + u[6]})
    w.wait(lambda s: len(s.events) >= 1, 10, "the first event")
    call("DELETE", f"/api/showtimes/{show2}/queue", token=admin, expect=204)
    w.wait(lambda s: s.done and s.eof, 10, "the stream's end after the queue was removed")
    ev = w.events[-1]
    check(ev.event == "end" and ev.json()["reason"] == "no-queue", f"queue removed: {ev}")
    w.close()
    # For the SIGTERM test: a queue that starts in an hour.
    call("PUT", f"/api/showtimes/{show3}/queue",
         {"rate_per_second": 1, "start_time": iso(time.time() + 3600)}, admin, 200)
    call("POST", f"/api/showtimes/{show3}/queue/join", token=u[7], expect=201)
    log(f"   ok: {len(users)} users prequeue -> waiting ({waited} seen) -> admitted, tokens reserve")


# ---- 7. SIGTERM --------------------------------------------------------------------------------


def test_sigterm(u, seat_shows, queue_show):
    log("7. SIGTERM")
    ws = [watch(f"/api/seats/{s}/events") for s in seat_shows]
    ws.append(watch(f"/api/showtimes/{queue_show}/queue/events", {"Authorization": "Bearer " + u[7]}))
    for w in ws:
        w.wait(lambda s: len(s.events) >= 1, 10, "the first event")
    SRV.proc.send_signal(signal.SIGTERM)
    for w in ws:
        w.wait(lambda s: s.done and s.eof, 30, "the stream's end on SIGTERM")
        ev = w.events[-1]
        check(ev.event == "end" and ev.json()["reason"] == "shutdown",
              f"{w.path} on SIGTERM: last event {ev}")
        w.close()
    try:
        SRV.proc.wait(60)
    except subprocess.TimeoutExpired:
        fail("usherd did not exit within 60 s of SIGTERM")
    check(SRV.proc.returncode == 0, f"usherd exited {SRV.proc.returncode} on SIGTERM")
    log(f"   ok: {len(ws)} streams ended (shutdown), exit 0")


def test_showtime_changes(admin, u, patched, deleted):
    """A showtime re-created (screen or start changed) or deleted in the same
    loop turn as a seat change (two bugs this test found in net/sse.c)."""
    log("showtime changes")
    # A. PATCH start_time re-creates the engine showtime: its streams end
    # (showtime-changed); a reconnect gets a snapshot and then the changes.
    w = watch(f"/api/seats/{patched}/events")
    w.wait(lambda s: len(s.events) >= 1, 10, "the snapshot")
    snap_id = w.events[0].id
    call("PATCH", f"/api/showtimes/{patched}", {"start_time": iso(time.time() + 40 * 86400)},
         admin, 200)
    w.wait(lambda s: s.done and s.eof, 10, "the stream to end after the showtime changed")
    check(w.events[-1].event == "end" and w.events[-1].json()["reason"] == "showtime-changed",
          f"after PATCH start_time: {w.events[-2:]}")
    w.close()
    w = watch(f"/api/seats/{patched}/events", headers={"Last-Event-ID": str(snap_id)})
    w.wait(lambda s: len(s.events) >= 1, 10, "the snapshot after the change")
    check(w.events[0].event == "snapshot", f"a reconnect after the change: {w.events[:1]}")
    _, h = call("POST", "/api/bookings/reserve", {"showtime_id": patched, "seats": ["A1"]}, u[0], 201)
    w.wait(lambda s: len(s.events) >= 2, 10, "the reserve's event after the change")
    check(w.events[1].event == "seats" and
          w.events[1].json()["seats"] == [{"label": "A1", "state": "held"}],
          f"the reserve after the change: {w.events[1:]}")
    call("DELETE", f"/api/holds/{h['hold_id']}", token=u[0], expect=204)
    w.close()
    # B. A seat change and the showtime's deletion in one loop turn (pipelined
    # here; an expiry sweep and a DELETE can meet the same way) used to trip
    # feed_stamp's assertion and abort usherd.
    w = watch(f"/api/seats/{deleted}/events")
    w.wait(lambda s: len(s.events) >= 1, 10, "the snapshot")
    _, h = call("POST", "/api/bookings/reserve", {"showtime_id": deleted, "seats": ["A1"]}, u[0], 201)
    w.wait(lambda s: len(s.events) >= 2, 10, "the hold's event")
    sock = socket.create_connection(("127.0.0.1", SRV.port))
    sock.settimeout(10)
    sock.sendall((f"DELETE /api/holds/{h['hold_id']} HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {u[0]}\r\n\r\n"
                  f"DELETE /api/showtimes/{deleted} HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {admin}\r\n\r\n").encode())
    time.sleep(1.5)
    check(SRV.proc.poll() is None, "usherd died when a showtime was deleted in the turn of a "
          "seat change of its watched feed")
    st1, _, _, rest = read_response(sock, b"")
    st2, _, _, _ = read_response(sock, rest)
    sock.close()
    check((st1, st2) == (204, 204), f"release + delete: {st1} {st2}")
    w.wait(lambda s: s.done and s.eof, 10, "the deleted showtime's stream to end")
    check(w.events[-1].event == "end" and w.events[-1].json()["reason"] == "showtime-deleted",
          f"deleted showtime's stream: {w.events[-2:]}")
    w.close()
    log("   ok: a changed showtime ends its streams (showtime-changed), a reconnect follows it; "
        "a delete in a change's turn ends them (showtime-deleted)")


def main():
    global SRV, POLLER
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # usherd inherits it
    check(hard >= 2 * FANOUT + 200, f"RLIMIT_NOFILE hard limit {hard} is too low")
    POLLER = Poller()
    POLLER.start()
    SRV = Usherd()
    SRV.start()
    admin = login(ADMIN_EMAIL, ADMIN_PW)
    shows, (big, big_shard) = setup_catalog(admin)
    u = [user(i) for i in range(8)]
    s0, s1 = shows[0], shows[1]
    idle = watch(f"/api/seats/{s1[-1]}/events")  # no change ever: keep-alive comments

    exp = start_expiry(u, s0[4])
    test_transitions(admin, u, s0[0], 0, s1[0], s0[5])
    test_snapshot_race(u, s0[5], 0)
    test_deleted(admin, s0[-1])
    a = test_resume(u, s1[1], 1)
    test_pipelined(u, s1[1], a)
    a.close()
    finish_expiry(exp)
    test_fanout(u, s0[1])
    test_slow(u, big)
    # An idle stream gets a comment every 15 s.
    left = idle.opened + 17.5 - time.time()
    if left > 0:
        time.sleep(left)
    with COND:
        check(any(c.startswith(b": keep-alive") for c in idle.comments) and idle.events and
              len(idle.events) == 1, f"idle stream after 17.5 s: {idle.blocks}")
    idle.close()
    log("   ok: an idle stream got a keep-alive comment")
    test_crash(admin, u, s1[2], 1)
    test_queue(admin, u, s0[2], s1[3], s0[3])
    test_showtime_changes(admin, u, s1[4], s1[5])
    test_sigterm(u, [s0[0], s1[0]], s0[3])
    log(f"ok ({time.time() - T0:.1f} s)")
    POLLER.stop = True
    cleanup()


if __name__ == "__main__":
    H.run(main)
