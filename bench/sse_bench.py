#!/usr/bin/env python3
"""Live seat map fan-out: what thousands of watchers of one showtime cost.

    bench/sse_bench.py --usherd build-release/net/usherd [--watchers 1000,5000] [--rounds 40]

Starts usherd (release build, 2 shards, --demo, rate limits off) in a
temporary data dir, then for each watcher count N:

  1. opens N `GET /api/seats/:id/events` streams on one showtime and waits
     for every snapshot; usherd's RSS before and after gives the server's
     memory per watcher;
  2. runs `rounds` changes (a reserve of 2 seats, then its release), one
     at a time: for each, the time from the reserve's answer to the first
     and to the last watcher holding the event, and the reserve's own
     latency;
  3. checks every watcher got every event, byte for byte the same.

Baseline, same run: the same reserve/release rounds with no watcher (the
reserve latency ratio is the watchers' cost on the write path). usherd's
CPU time per change (from /proc) is reported per round and per watcher.

The client is one Python process reading N sockets through epoll: for
large N the "last watcher" time includes the client's own reading (about
2-5 us per socket here), so it is an upper bound on the server's fan-out.
"""
import argparse
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100 * len(v)))]


class Api:
    def __init__(self, port, token=None):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.token = token

    def call(self, method, path, body=None):
        h = {"Content-Type": "application/json"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        self.c.request(method, path, json.dumps(body) if body is not None else None, h)
        r = self.c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)


class Watchers:
    """N event-stream sockets on one showtime, read through epoll."""

    def __init__(self, port, showtime, n):
        self.sel = selectors.DefaultSelector()
        self.bufs = {}
        self.events = {}  # socket -> list of (id, data)
        req = (f"GET /api/seats/{showtime}/events HTTP/1.1\r\nHost: x\r\n"
               "Accept: text/event-stream\r\n\r\n").encode()
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(req)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
            self.bufs[s] = b""
            self.events[s] = []

    def pump(self, timeout):
        """Reads what is there; returns the sockets that completed an event."""
        done = []
        for key, _ in self.sel.select(timeout):
            s = key.fileobj
            try:
                chunk = s.recv(1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                raise SystemExit("a stream closed")
            self.bufs[s] += chunk
            while b"\n\n" in self.bufs[s]:
                ev, self.bufs[s] = self.bufs[s].split(b"\n\n", 1)
                m = re.search(rb"id: (\d+)\n", ev)
                if m and b"data: " in ev:
                    self.events[s].append((int(m.group(1)), ev.split(b"data: ", 1)[1]))
                    done.append(s)
        return done

    def wait_all(self, pred, deadline_s=60):
        """Pumps until pred(events of a socket) holds for every socket; the
        time the first and the last did (perf_counter)."""
        pending = {s for s in self.events if not pred(self.events[s])}
        first = last = time.perf_counter() if not pending else None
        end = time.monotonic() + deadline_s
        while pending:
            if time.monotonic() > end:
                raise SystemExit(f"{len(pending)} watchers never got the event")
            for s in self.pump(1.0):
                if s in pending and pred(self.events[s]):
                    pending.discard(s)
                    now = time.perf_counter()
                    first = first or now
                    last = now
        return first, last

    def close(self):
        for s in self.events:
            self.sel.unregister(s)
            s.close()


def rounds(api, showtime, n, watchers):
    lat, first, last = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        st, hold = api.call("POST", "/api/bookings/reserve",
                            {"showtime_id": showtime, "count": 2, "category": "gold"})
        t1 = time.perf_counter()
        assert st == 201, (st, hold)
        lat.append(t1 - t0)
        labels = [f'"label":"{x}","state":"held"'.encode() for x in hold["seats"]]
        if watchers is not None:
            f, l = watchers.wait_all(lambda evs: evs and all(lb in evs[-1][1] for lb in labels))
            first.append(f - t1)
            last.append(l - t1)
        st, _ = api.call("DELETE", f"/api/holds/{hold['hold_id']}")
        assert st == 204
        if watchers is not None:
            freed = [lb.replace(b"held", b"free") for lb in labels]
            watchers.wait_all(lambda evs: evs and all(lb in evs[-1][1] for lb in freed))
    return lat, first, last


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--usherd", required=True)
    ap.add_argument("--watchers", default="1000,5000")
    ap.add_argument("--rounds", type=int, default=40)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="usher-sse-bench-")
    out = open(os.path.join(tmp, "out"), "w+")
    proc = subprocess.Popen([a.usherd, "--listen", "127.0.0.1:0", "--data-dir", tmp + "/data",
                             "--shards", "2", "--demo", "--rate-limit", "off",
                             "--password-cost", "min"], stdout=out,
                            stderr=open(os.path.join(tmp, "err"), "w"))
    try:
        for _ in range(200):
            out.seek(0)
            text = out.read()
            if "listening on" in text:
                break
            time.sleep(0.05)
        port = int(re.search(r"listening on http://127.0.0.1:(\d+)", text).group(1))
        pw = re.search(r"demo@usher.local\s+(\S+)", text).group(1)
        st, body = Api(port).call("POST", "/api/auth/login",
                                  {"email": "demo@usher.local", "password": pw})
        api = Api(port, body["token"])
        _, lst = api.call("GET", "/api/showtimes?limit=1&sort=time")
        showtime = lst["items"][0]["id"]
        print(f"usherd {a.usherd}, showtime {showtime}, {a.rounds} rounds of reserve+release")
        print("| watchers | server RSS per watcher | reserve p50 / p99 (ms) | first watcher p50 "
              "(ms) | last watcher p50 / p99 (ms) | usherd CPU per change | per watcher |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        c0 = cpu_s(proc.pid)
        lat, _, _ = rounds(api, showtime, a.rounds, None)
        c1 = cpu_s(proc.pid)
        base = statistics.median(lat)
        print(f"| 0 (baseline) | - | {base * 1e3:.2f} / {pct(lat, 99) * 1e3:.2f} | - | - | "
              f"{(c1 - c0) / (2 * a.rounds) * 1e6:.0f} us | - |")
        for n in [int(x) for x in a.watchers.split(",")]:
            r0 = rss_kib(proc.pid)
            w = Watchers(port, showtime, n)
            w.wait_all(lambda evs: len(evs) >= 1)  # every snapshot
            time.sleep(0.5)
            r1 = rss_kib(proc.pid)
            c0 = cpu_s(proc.pid)
            lat, first, last = rounds(api, showtime, a.rounds, w)
            c1 = cpu_s(proc.pid)
            ids = None
            for evs in w.events.values():
                seq = [e for e in evs[1:]]
                ids = ids or seq
                assert seq == ids, "watchers disagree on the events"
            assert len(ids) == 2 * a.rounds, (len(ids), 2 * a.rounds)
            per_change = (c1 - c0) / (2 * a.rounds)
            print(f"| {n} | {(r1 - r0) * 1024 / n:.0f} B | {statistics.median(lat) * 1e3:.2f} / "
                  f"{pct(lat, 99) * 1e3:.2f} | {statistics.median(first) * 1e3:.2f} | "
                  f"{statistics.median(last) * 1e3:.2f} / {pct(last, 99) * 1e3:.2f} | "
                  f"{per_change * 1e6:.0f} us | {per_change / n * 1e9:.0f} ns |")
            print(f"  reserve latency with {n} watchers / without: "
                  f"{statistics.median(lat) / base:.2f}x", flush=True)
            w.close()
            time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
