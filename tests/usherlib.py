"""What the end-to-end Python tests share (onsale_api_test.py, sse_test.py, pgexport_test.py,
pgexport_http_test.py).

A Harness is one test run: its temp dir, the processes it started, how it logs
and how it fails (printing the tail of usherd's stderr). Usherd is the server
on a data dir of its own, Api the HTTP JSON calls to it. Where the tests
differ (the log's clock, the stack printed on failure, how a failure exits,
one connection per call or a keep-alive one), each passes its own parameters.

A test puts this directory on sys.path first, so it imports this module from
whatever directory it is run in:

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import usherlib
"""
import glob
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback


class Harness:
    """One test run: a temp dir, the processes started in it, logging and failure."""

    def __init__(self, prefix, elapsed_log=False, stack=4, hard_exit=False, default_files=None,
                 on_cleanup=None):
        """Makes the temp dir (prefix: its name's start).

        elapsed_log: log lines carry the seconds since now instead of the wall clock;
        stack: how many frames up to fail() are printed with its message (the caller's
        last stack-1 frames); hard_exit: fail() ends with os._exit(1), for a test whose
        other threads must not keep the process alive, not sys.exit(1); default_files:
        a function returning the files fail() prints when given none; on_cleanup:
        called first by cleanup()."""
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.procs = []  # every process started, killed by cleanup()
        self.t0 = time.time()
        self.elapsed_log = elapsed_log
        self.stack = stack
        self.hard_exit = hard_exit
        self.default_files = default_files
        self.on_cleanup = on_cleanup

    def log(self, msg):
        """Prints msg behind the time (or the seconds since the start), flushed."""
        if self.elapsed_log:
            print(f"[{time.time() - self.t0:6.1f}s] {msg}", flush=True)
        else:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def fail(self, msg, *files):
        """Prints FAIL, msg and the caller's stack, the last 3000 bytes of each of files
        (usherd's stderr), cleans up and exits 1."""
        print("FAIL: " + msg + "\n" + "".join(traceback.format_stack(limit=self.stack)[:-1]),
              flush=True)
        if not files and self.default_files is not None:
            files = self.default_files()
        for f in files:
            try:
                with open(f) as fh:
                    print(f"--- {f} (last 3000 bytes)\n{fh.read()[-3000:]}")
            except OSError:
                pass
        self.cleanup()
        if self.hard_exit:
            os._exit(1)
        sys.exit(1)

    def check(self, cond, msg, *files):
        """fail(msg, *files) unless cond."""
        if not cond:
            self.fail(msg, *files)

    def kill_all(self):
        """SIGKILLs and reaps every started process still running."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def cleanup(self):
        """Runs on_cleanup, kills the started processes and removes the temp dir."""
        if self.on_cleanup is not None:
            self.on_cleanup()
        self.kill_all()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def wait_for(self, pred, what, timeout=20, poll=0.1, files=()):
        """Calls pred every poll seconds until it returns something true, and returns that;
        fail(f"timed out waiting for {what}", *files) after timeout seconds."""
        end = time.time() + timeout
        while time.time() < end:
            v = pred()
            if v:
                return v
            time.sleep(poll)
        self.fail(f"timed out waiting for {what}", *files)

    def run(self, main):
        """Runs main(); an exception other than SystemExit prints its traceback, cleans up
        and exits 1."""
        try:
            main()
        except SystemExit:
            raise
        except BaseException:
            traceback.print_exc()
            self.cleanup()
            sys.exit(1)


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def iso(t):
    """Seconds since the epoch as the API's UTC time, 2026-11-21T13:02:35Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Usherd:
    """usherd on a data dir of its own; each start() writes usherd.N.out and usherd.N.err
    into the harness's temp dir (self.err is the current stderr)."""

    def __init__(self, h, binary, data, admin_email, admin_pw, args, port=None, env=None,
                 start_polls=600):
        """Creates the admin (--create-admin, 2 shards, minimum password cost) in data.

        args: the flags after --data-dir; port: where to listen, or None to listen on
        port 0 and take the port usherd prints (restarts keep it); env: variables
        added to the environment of the server; start_polls: how many times start()
        looks for "listening on", 50 ms apart."""
        self.h = h
        self.binary = binary
        self.data = data
        self.args = list(args)
        self.port = port
        self.pick_port = port is None
        self.env = env
        self.start_polls = start_polls
        self.n = 0
        self.proc = None
        r = subprocess.run([binary, "--create-admin", admin_email, "--data-dir", self.data,
                            "--shards", "2", "--password-cost", "min"],
                           env=dict(os.environ, USHER_ADMIN_PASSWORD=admin_pw),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        h.check(r.returncode == 0, f"usherd --create-admin: {r.stdout}")

    def start(self, extra=()):
        """Starts usherd with args + extra and waits until it listens; fails if it exits
        or does not listen in time."""
        self.n += 1
        self.out = os.path.join(self.h.tmp, f"usherd.{self.n}.out")
        self.err = os.path.join(self.h.tmp, f"usherd.{self.n}.err")
        self.proc = subprocess.Popen(
            [self.binary, "--listen", f"127.0.0.1:{self.port or 0}", "--data-dir", self.data]
            + self.args + list(extra),
            env=dict(os.environ, **self.env) if self.env else None,
            stdout=open(self.out, "w"), stderr=open(self.err, "w"))
        self.h.procs.append(self.proc)
        for _ in range(self.start_polls):
            with open(self.out) as f:
                text = f.read()
            if self.pick_port:
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
                if m:
                    self.port = int(m.group(1))
                    return
            elif "listening on" in text:
                return
            self.h.check(self.proc.poll() is None, "usherd exited at start", self.err)
            time.sleep(0.05)
        self.h.fail("usherd did not start", self.err)

    def kill9(self):
        """SIGKILLs usherd and reaps it."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, sig=signal.SIGTERM, fail_on_hang=True):
        """Sends sig and waits up to 60 s; after SIGTERM usherd must exit 0. A usherd still
        running after 60 s fails the test, or with fail_on_hang=False raises
        subprocess.TimeoutExpired."""
        self.proc.send_signal(sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            if not fail_on_hang:
                raise
            self.h.fail("usherd did not stop on SIGTERM", self.err)
        if sig == signal.SIGTERM:
            self.h.check(self.proc.returncode == 0, f"usherd exited {self.proc.returncode}",
                         self.err)


class Api:
    """HTTP JSON requests to usherd on 127.0.0.1: a new connection per request, or with
    keepalive one keep-alive connection (use one Api per thread)."""

    def __init__(self, h, port, keepalive=False, snippet=400, files=None):
        """port: the port, or a function returning it (a server that restarts);
        snippet: how many bytes of an unexpected answer's body call() puts in its
        failure message; files: a function returning the files that failure prints
        (None: the harness's default)."""
        self.h = h
        self._port = port
        self.keepalive = keepalive
        self.snippet = snippet
        self.files = files
        self.c = None

    def port(self):
        """The port requests go to."""
        return self._port() if callable(self._port) else self._port

    def raw(self, method, path, body=None, token=None, headers=None):
        """Sends one request (body as JSON, token as a Bearer token) and returns
        (response, body bytes). A keep-alive connection the server closed (idle, or
        a restart) is reopened once; one the server answers with Connection: close
        is dropped."""
        h = dict(headers or {})
        if body is not None:
            h["Content-Type"] = "application/json"
        if token:
            h["Authorization"] = "Bearer " + token
        data = json.dumps(body) if body is not None else None
        if not self.keepalive:
            c = http.client.HTTPConnection("127.0.0.1", self.port(), timeout=30)
            c.request(method, path, data, h)
            r = c.getresponse()
            out = r.read()
            c.close()
            return r, out
        for attempt in range(2):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port(), timeout=30)
            try:
                self.c.request(method, path, data, h)
                r = self.c.getresponse()
                out = r.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.c.close()
                self.c = None
                if attempt:
                    raise
        if (r.getheader("Connection") or "").lower() == "close":
            self.c.close()
            self.c = None
        return r, out

    def call(self, method, path, body=None, token=None, expect=None, headers=None):
        """raw(), then (status, the JSON body or None); fails unless the status is expect
        (when given)."""
        r, data = self.raw(method, path, body, token, headers)
        obj = json.loads(data) if data else None
        if expect is not None and r.status != expect:
            self.h.fail(f"{method} {path}: {r.status} {data[:self.snippet]!r}, expected {expect}",
                        *(self.files() if self.files is not None else ()))
        return r.status, obj

    def close(self):
        """Closes the keep-alive connection, if any."""
        if self.c is not None:
            self.c.close()
            self.c = None

    def login(self, email, pw):
        """Logs in and returns the token (fails unless 200)."""
        return self.call("POST", "/api/auth/login", {"email": email, "password": pw},
                         expect=200)[1]["token"]

    def user(self, email, name, pw="user-password-123"):
        """Registers a user (201, or 409 if already there) and returns its token."""
        st, _ = self.call("POST", "/api/auth/register",
                          {"email": email, "password": pw, "name": name})
        self.h.check(st in (201, 409), f"register {email}: {st}")
        return self.login(email, pw)


class Postgres:
    """A throwaway PostgreSQL cluster: initdb and pg_ctl on a private Unix socket in the
    harness's temp dir (as the `postgres` user when run as root, since initdb refuses root);
    stop() at the end. Used by pgexport_test.py and pgexport_http_test.py."""

    def __init__(self, h):
        """initdb and pg_ctl start in h.tmp/pg; fails the test when they fail."""
        self.h = h
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            self.h.fail("no PostgreSQL server binaries (tools/install-deps --test installs them)")
        self.bindir = os.path.dirname(bins[-1])
        self.dir = os.path.join(h.tmp, "pg")
        os.mkdir(self.dir)
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.log = os.path.join(self.dir, "server.log")
        self.run([os.path.join(self.bindir, "initdb"), "-D", self.dir + "/data", "-A", "trust",
                  "-U", "postgres", "--no-sync", "-E", "UTF8"])
        self.start()
        h.log(f"PostgreSQL up on socket dir {self.dir}")

    def start(self):
        """pg_ctl start, waiting until it accepts connections (again, after stop())."""
        opts = (f"-c listen_addresses='' -c unix_socket_directories={self.dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self.run([os.path.join(self.bindir, "pg_ctl"), "-D", self.dir + "/data", "-o", opts,
                  "-l", self.log, "-w", "start"])

    def run(self, argv):
        r = subprocess.run(self.as_user + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        if r.returncode != 0:
            self.h.fail(f"{argv[0]} failed:\n{r.stdout}", self.log)

    def stop(self, mode="immediate"):
        """pg_ctl stop -m mode (immediate: like a crash)."""
        subprocess.run(self.as_user + [os.path.join(self.bindir, "pg_ctl"), "-D",
                                       self.dir + "/data", "-m", mode, "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def conninfo(self, db):
        return f"postgresql:///{db}?host={self.dir}&user=postgres"

    def createdb(self, db):
        self.sql("postgres", f"CREATE DATABASE {db}")

    def sql(self, db, query):
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t",
                            "-h", self.dir, "-U", "postgres", "-d", db, "-c", query],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            self.h.fail(f"psql on {db}: {r.stderr.strip()}\nquery: {query}")
        return [line.split("\t") for line in r.stdout.splitlines()]

    def one(self, db, query):
        rows = self.sql(db, query)
        return rows[0][0] if rows else None
