#!/usr/bin/env python3
"""Waiting lists, virtual queues and price changes over real sockets (issue #7).

Starts usherd (2 shards, 10 s holds, 5 s offers), builds a small sold-out
showtime, then checks:

  1. waitlist: join refused while seats fit (409 seats-available); waiters
     join in order; a released hold and an expired hold are offered to the
     first waiter whose request fits (FIFO), visible in my-holds with
     source "waitlist"; an offer not confirmed in time passes on; a confirmed
     offer is a booking; cancelling it offers the seat again.
  2. queue: reserve without an admission token is 403; users joining before
     the start are shuffled at the start, later joiners are served in order;
     admission follows the configured rate (within tolerance); an admitted
     user's token lets them reserve, a token for another user or showtime
     does not.
  3. prices: PATCH prices on a showtime with holds keeps their amounts and
     prices new holds at the new price.
  4. kill -9: usherd is SIGKILLed and restarted; waiting list positions,
     queue positions and admissions, offers and prices are all still there.

Environment: USHERD (binary).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import usherlib  # noqa: E402
from usherlib import iso  # noqa: E402

USHERD = os.environ["USHERD"]
ADMIN_EMAIL, ADMIN_PW = "admin@onsale.test", "onsale-test-admin-pw"
H = usherlib.Harness("usher-onsale-test-")
log, fail, check, cleanup = H.log, H.fail, H.check, H.cleanup


class Usherd(usherlib.Usherd):
    """2 shards, 10 s holds, 5 s offers, on a free port."""

    def __init__(self):
        super().__init__(
            H, USHERD, os.path.join(H.tmp, "data"), ADMIN_EMAIL, ADMIN_PW,
            ["--shards", "2", "--password-cost", "min", "--hold-ttl", "10", "--offer-ttl", "5",
             "--admission-window", "60", "--rate-limit", "off"], port=usherlib.free_port())


SRV = None
API = usherlib.Api(H, lambda: SRV.port, files=lambda: (SRV.err,))
call, login = API.call, API.login


def user(i):
    return API.user(f"u{i}@onsale.test", f"User {i}")


def setup_catalog(admin):
    _, th = call("POST", "/api/theaters", {"name": "Onsale Hall", "city": "Pune"}, admin, 201)
    rows = [{"label": "A", "category": "silver", "seats": 3},
            {"label": "B", "category": "gold", "seats": 2}]
    _, scr = call("POST", "/api/screens", {"theater_id": th["id"], "name": "S1", "layout": {
        "categories": ["silver", "gold"], "rows": rows}}, admin, 201)
    _, mv = call("POST", "/api/movies", {"title": "Blockbuster", "duration_min": 150,
                                         "genre": "action", "language": "hindi"}, admin, 201)
    shows = []
    for i in range(3):
        _, s = call("POST", "/api/showtimes", {
            "movie_id": mv["id"], "screen_id": scr["id"], "start_time": iso(time.time() + (3 + i) * 86400),
            "prices": {"silver": 10000, "gold": 20000}}, admin, 201)
        shows.append(s["id"])
    return shows


def my_holds(tok):
    return call("GET", "/api/bookings/my-holds", token=tok, expect=200)[1]["items"]


def wait_for(pred, what, timeout=20):
    return H.wait_for(pred, what, timeout, poll=0.1, files=(SRV.err,))


def phase_waitlist(admin, show, u):
    # Seats free: join refused.
    st, p = call("POST", f"/api/showtimes/{show}/waitlist", {"count": 1}, u[0])
    check(st == 409 and p["type"].endswith("seats-available"), f"join while free: {st} {p}")
    # u0 holds two silver seats, u9 books the third, u1 holds the two gold ones: sold out.
    _, h_silver = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["A1", "A2"]}, u[0], 201)
    _, h9 = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["A3"]}, u[9], 201)
    call("POST", "/api/bookings/confirm", {"hold_id": h9["hold_id"], "payment": {"method": "card"}}, u[9], 201)
    _, h_gold = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["B1", "B2"]}, u[1], 201)
    # Bad input changes nothing.
    st, p = call("POST", f"/api/showtimes/{show}/waitlist", {"count": 0}, u[2])
    check(st == 400 and p["field"] == "count", f"count 0: {st} {p}")
    st, p = call("POST", f"/api/showtimes/{show}/waitlist", {"count": 1, "category": "vip"}, u[2])
    check(st == 400 and p["field"] == "category", f"bad category: {st} {p}")
    # Waiters: u2 wants 2 gold, u3 wants 1 silver, u4 1 of any.
    _, w = call("POST", f"/api/showtimes/{show}/waitlist", {"count": 2, "category": "gold"}, u[2], 201)
    check(w["position"] == 1 and w["category"] == "gold", f"u2: {w}")
    _, w = call("POST", f"/api/showtimes/{show}/waitlist", {"count": 1, "category": "silver"}, u[3], 201)
    check(w["position"] == 2, f"u3: {w}")
    _, w = call("POST", f"/api/showtimes/{show}/waitlist", {"count": 1}, u[4], 201)
    check(w["position"] == 3 and w["category"] is None, f"u4: {w}")
    st, _ = call("POST", f"/api/showtimes/{show}/waitlist", {"count": 1}, u[4])
    check(st == 409, "joining twice is 409")
    _, me = call("GET", f"/api/showtimes/{show}/waitlist", token=u[4], expect=200)
    check(me["position"] == 3 and me["waiting"] == 3, f"u4 position: {me}")

    # u0 releases its silver hold: u2 (gold) does not fit, u3 (silver) is first that fits,
    # then u4 (any) gets another silver seat.
    call("DELETE", f"/api/holds/{h_silver['hold_id']}", token=u[0], expect=204)
    o3 = wait_for(lambda: my_holds(u[3]), "u3's offer")
    check(len(o3) == 1 and o3[0]["source"] == "waitlist" and len(o3[0]["seats"]) == 1
          and o3[0]["seats"][0].startswith("A"), f"u3's offer: {o3}")
    o4 = wait_for(lambda: my_holds(u[4]), "u4's offer")
    check(o4[0]["source"] == "waitlist" and o4[0]["seats"][0].startswith("A"), f"u4's offer: {o4}")
    st, _ = call("GET", f"/api/showtimes/{show}/waitlist", token=u[3])
    check(st == 404, "an offered waiter left the list")
    _, me = call("GET", f"/api/showtimes/{show}/waitlist", token=u[2], expect=200)
    check(me["position"] == 1, f"u2 still first: {me}")
    # u3 confirms its offer; u4 lets its offer lapse (5 s).
    _, b3 = call("POST", "/api/bookings/confirm", {"hold_id": o3[0]["hold_id"],
                                                   "payment": {"method": "upi"}}, u[3], 201)
    check(b3["amount"] == 10000, f"offer booked at the seat price: {b3}")
    # u5 joins for one silver seat behind u2; when u4's offer expires its seat passes to u5.
    _, w = call("POST", f"/api/showtimes/{show}/waitlist", {"count": 1, "category": "silver"}, u[5], 201)
    check(w["position"] == 2, f"u5: {w}")
    o5 = wait_for(lambda: my_holds(u[5]), "the lapsed offer passing to u5", timeout=30)
    check(o5[0]["seats"] == o4[0]["seats"], f"u4's lapsed seat went to u5: {o5} vs {o4}")
    check(my_holds(u[4]) == [], "u4's offer is gone")
    call("POST", "/api/bookings/confirm", {"hold_id": o5[0]["hold_id"], "payment": {"method": "wallet"}},
         u[5], 201)
    # u1's gold hold expires (10 s): u2 gets both gold seats.
    o2 = wait_for(lambda: my_holds(u[2]), "u2's gold offer", timeout=30)
    check(sorted(o2[0]["seats"]) == ["B1", "B2"], f"u2's offer: {o2}")
    # Cancelling u3's booking offers its seat again: u6 waits for it.
    call("POST", f"/api/showtimes/{show}/waitlist", {"count": 1}, u[6], 201)
    call("POST", f"/api/bookings/{b3['booking_id']}/cancel", token=u[3], expect=200)
    o6 = wait_for(lambda: my_holds(u[6]), "the cancelled seat offered to u6")
    check(o6[0]["seats"] == b3["seats"], f"u6 got the cancelled seat: {o6}")
    # DELETE leaves the list.
    call("POST", f"/api/showtimes/{show}/waitlist", {"count": 2}, u[7], 201)
    call("DELETE", f"/api/showtimes/{show}/waitlist", token=u[7], expect=204)
    st, _ = call("DELETE", f"/api/showtimes/{show}/waitlist", token=u[7])
    check(st == 404, "leaving twice is 404")
    return {"o2": o2[0]["hold_id"]}


def phase_queue(admin, show, u):
    st, _ = call("GET", f"/api/showtimes/{show}/queue")
    check(st == 404, "no queue yet")
    st, p = call("PUT", f"/api/showtimes/{show}/queue", {"rate_per_second": 0}, admin)
    check(st == 400 and p["field"] == "rate_per_second", f"rate 0: {st} {p}")
    st, _ = call("PUT", f"/api/showtimes/{show}/queue", {"rate_per_second": 5}, u[0])
    check(st == 403, "only an admin sets a queue")
    start = time.time() + 3
    _, q = call("PUT", f"/api/showtimes/{show}/queue", {"rate_per_second": 5, "start_time": iso(start)}, admin, 200)
    check(q["rate_per_second"] == 5 and not q["started"], f"queue: {q}")
    # Reserve without a token: 403.
    st, p = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["A1"]}, u[0])
    check(st == 403 and p["type"].endswith("admission-required"), f"reserve without token: {st} {p}")
    early = list(range(0, 20))
    for i in early:
        _, me = call("POST", f"/api/showtimes/{show}/queue/join", token=u[i], expect=201)
        check(me["state"] == "prequeue" and me["position"] is None, f"early join: {me}")
    _, me = call("POST", f"/api/showtimes/{show}/queue/join", token=u[0], expect=200)
    check(me["state"] == "prequeue", "joining again keeps the place")
    wait_for(lambda: call("GET", f"/api/showtimes/{show}/queue")[1]["started"], "the queue start")
    t_start = time.time()
    positions = {}
    for i in early:
        _, me = call("GET", f"/api/showtimes/{show}/queue/me", token=u[i], expect=200)
        if me["state"] == "waiting":
            positions[i] = me["position"]
    # Late joiners queue behind everyone, in order.
    late = list(range(20, 26))
    last = 0
    for i in late:
        _, me = call("POST", f"/api/showtimes/{show}/queue/join", token=u[i], expect=201)
        check(me["state"] == "waiting" and me["position"] > last, f"late join: {me}")
        last = me["position"]
    by_position = [k for k, _ in sorted(positions.items(), key=lambda kv: kv[1])]
    check(len(by_position) < 8 or by_position != sorted(by_position),
          f"early joiners not shuffled: {positions}")
    # Admission at 5/s: after ~3 s about 15 admitted.
    time.sleep(3)
    _, q = call("GET", f"/api/showtimes/{show}/queue", expect=200)
    elapsed = time.time() - t_start
    check(q["admitted"] <= 5 * (elapsed + 0.5) + 5 and q["admitted"] >= 5 * (elapsed - 1.5) - 5,
          f"admitted {q['admitted']} after {elapsed:.1f} s at 5/s")
    log(f"queue: {q['admitted']} admitted {elapsed:.1f} s after the start at 5/s")
    # Someone admitted reserves with the token; others' tokens do not work for them.
    admitted = None
    for i in early:
        _, me = call("GET", f"/api/showtimes/{show}/queue/me", token=u[i], expect=200)
        if me["state"] == "admitted":
            admitted = (i, me)
            break
    check(admitted is not None, "nobody admitted")
    i, me = admitted
    tok = me["admission_token"]
    other = (i + 1) % 20
    st, p = call("POST", "/api/bookings/reserve", {"showtime_id": show, "count": 1, "category": "silver"},
                 u[other], headers={"Admission-Token": tok})
    check(st == 403, f"someone else's token: {st} {p}")
    st, p = call("POST", "/api/bookings/reserve", {"showtime_id": show, "count": 1, "category": "silver"},
                 u[i], headers={"Admission-Token": tok + "x"})
    check(st == 403, f"tampered token: {st}")
    _, h = call("POST", "/api/bookings/reserve", {"showtime_id": show, "count": 1, "category": "silver"},
                u[i], 201, headers={"Admission-Token": tok})
    # Leaving ends an admission: a token given before is refused after.
    quitter = None
    for k in early:
        if k != i:
            _, mk = call("GET", f"/api/showtimes/{show}/queue/me", token=u[k], expect=200)
            if mk["state"] == "admitted":
                quitter = (k, mk["admission_token"])
                break
    check(quitter is not None, "a second admitted user")
    k, ktok = quitter
    call("DELETE", f"/api/showtimes/{show}/queue/me", token=u[k], expect=204)
    st, p = call("POST", "/api/bookings/reserve", {"showtime_id": show, "count": 1, "category": "silver"},
                 u[k], headers={"Admission-Token": ktok})
    check(st == 403 and "ended" in p.get("detail", ""), f"a token after leaving: {st} {p}")
    # Late joiners are admitted after every early joiner.
    order = []
    end = time.time() + 15
    while time.time() < end and len(order) < len(late):
        for j in late:
            if j not in order:
                _, me = call("GET", f"/api/showtimes/{show}/queue/me", token=u[j], expect=200)
                if me["state"] == "admitted":
                    order.append(j)
        time.sleep(0.2)
    check(order == sorted(order), f"late joiners admitted out of order: {order}")
    _, q = call("GET", f"/api/showtimes/{show}/queue", expect=200)
    return {"queue_admitted": q["admitted"], "hold": h["hold_id"], "holder": i}


def phase_price(admin, show, u):
    _, h = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["A1"]}, u[0], 201)
    _, s = call("PATCH", f"/api/showtimes/{show}", {"prices": {"silver": 12000, "gold": 26000}}, admin, 200)
    _, h2 = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["A2"]}, u[1], 201)
    check(h["amount"] == 10000 and h2["amount"] == 12000, f"price change: {h['amount']} {h2['amount']}")
    _, again = call("GET", f"/api/holds/{h['hold_id']}", token=u[0], expect=200)
    check(again["amount"] == 10000, "a live hold keeps its price")
    # Sell the rest out with bookings (they do not expire) and put two waiters in line.
    _, b0 = call("POST", "/api/bookings/confirm", {"hold_id": h["hold_id"], "payment": {"method": "upi"}}, u[0], 201)
    call("POST", "/api/bookings/confirm", {"hold_id": h2["hold_id"], "payment": {"method": "upi"}}, u[1], 201)
    _, h3 = call("POST", "/api/bookings/reserve", {"showtime_id": show, "seats": ["A3", "B1", "B2"]}, u[2], 201)
    check(h3["amount"] == 12000 + 2 * 26000, f"new prices: {h3}")
    call("POST", "/api/bookings/confirm", {"hold_id": h3["hold_id"], "payment": {"method": "card"}}, u[2], 201)
    call("POST", f"/api/showtimes/{show}/waitlist", {"count": 1}, u[10], 201)
    call("POST", f"/api/showtimes/{show}/waitlist", {"count": 1}, u[11], 201)
    return {"b0": b0["booking_id"]}


def main():
    global SRV
    SRV = Usherd()
    SRV.start()
    admin = login(ADMIN_EMAIL, ADMIN_PW)
    shows = setup_catalog(admin)
    u = [user(i) for i in range(30)]
    log("waiting list")
    wl = phase_waitlist(admin, shows[0], u)
    log("virtual queue")
    qs = phase_queue(admin, shows[1], u)
    log("prices")
    pr = phase_price(admin, shows[2], u)

    # What must survive: waiting list order, bookings at their prices, the queue.
    def state():
        return {
            "wl": [call("GET", f"/api/showtimes/{shows[2]}/waitlist", token=u[i])[1] for i in (10, 11)],
            "booking": call("GET", f"/api/bookings/{pr['b0']}", token=u[0])[1],
            "seats": call("GET", f"/api/seats/{shows[2]}")[1]["categories"],
            "queue": call("GET", f"/api/showtimes/{shows[1]}/queue")[1],
            "qme": [call("GET", f"/api/showtimes/{shows[1]}/queue/me", token=u[i])[1].get("state")
                    for i in range(26)],
        }
    before = state()
    check([w["position"] for w in before["wl"]] == [1, 2], f"waiters: {before['wl']}")
    log("kill -9 and restart")
    SRV.kill9()
    SRV.start()
    after = state()
    for k in ("wl", "booking", "seats", "queue", "qme"):
        check(before[k] == after[k], f"{k} changed across kill -9:\n {before[k]}\n {after[k]}")
    # The waiting list still works after the restart: a cancellation goes to u10, first in line.
    call("POST", f"/api/bookings/{pr['b0']}/cancel", token=u[0], expect=200)
    o = wait_for(lambda: my_holds(u[10]), "the offer to u10 after the restart")
    check(o[0]["seats"] == ["A1"] and o[0]["amount"] == 12000, f"offer after restart: {o}")
    check(my_holds(u[11]) == [], "u11 is second")
    SRV.stop(fail_on_hang=False)
    log("ok")
    cleanup()


if __name__ == "__main__":
    H.run(main)
