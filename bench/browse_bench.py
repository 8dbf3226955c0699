# browse_bench.py - fills a running usherd with N showtimes through the admin API
# (sequential: each create is answered after its fsync and LMDB apply), then
# times browse queries. Usage: python3 bench/browse_bench.py BASE ADMIN_EMAIL ADMIN_PW N
import http.client, json, sys, time, urllib.parse
base, email, pw, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
def call(method, path, body=None, tok=None):
    h = {"content-type": "application/json"}
    if tok: h["authorization"] = "Bearer " + tok
    c.request(method, path, json.dumps(body) if body is not None else None, h)
    r = c.getresponse(); d = r.read()
    return r.status, (json.loads(d) if d else None)
st, a = call("POST", "/api/auth/login", {"email": email, "password": pw}); tok = a["token"]
st, screens = call("GET", "/api/screens?limit=100")
st, movies = call("GET", "/api/movies?limit=100")
sids = [s["id"] for s in screens["items"]]; mids = [m["id"] for m in movies["items"]]
t0 = time.time(); base_t = int(time.time()) + 86400 * 2
for i in range(n):
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base_t + i * 60))
    st, _ = call("POST", "/api/showtimes", {"movie_id": mids[i % len(mids)], "screen_id": sids[i % len(sids)], "start_time": when, "prices": {"silver": 10000 + i % 50 * 100, "gold": 20000, "platinum": 30000}}, tok)
    assert st == 201, (st, _)
create_s = time.time() - t0
def timeit(path, reps=20):
    ts = []
    for _ in range(reps):
        t = time.time(); st, d = call("GET", path); ts.append((time.time() - t) * 1000); assert st == 200, st
    ts.sort(); return ts[len(ts)//2], ts[-1], d.get("total")
print(f"created {n} showtimes in {create_s:.1f} s ({n/create_s:.0f}/s, each answered after fsync + LMDB apply)")
for q in ["/api/showtimes?limit=20", "/api/showtimes?sort=popularity&limit=20", "/api/showtimes?city=Mumbai&genre=drama&sort=price&limit=20&page=5", "/api/movies?city=Bengaluru"]:
    med, mx, total = timeit(q)
    print(f"GET {q}: median {med:.1f} ms, max {mx:.1f} ms (total {total})")
