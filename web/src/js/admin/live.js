// Live operations (#/admin, the dashboard's home):
//  - the bookings feed: every shard's replication stream (docs/replication.md) read from a
//    little before its durable LSN, the booking, hold, waiting-list and queue events shown as
//    lines, newest first, bounded; resumed from the last LSN after an error;
//  - occupancy of the upcoming showtimes (sold / held / free), refreshed every few seconds and
//    soon after a feed event;
//  - low-occupancy alerts with GET /api/pricing/suggest and an Apply that PATCHes the prices;
//  - the virtual queues of on-sales: state, waiting, admitted, rate; configure and remove.
// Every stream, timer and request loop stops when the page is left (the cleanup returned).

import { get, put, patch, del, ndjson, query, errorText, ApiError } from '../api.js';
import { h, clear, money, when, debounce, toast, errorBox, field, confirmDialog, pageTitle } from '../ui.js';
import { adminNav } from './nav.js';
import {
  fetchAll, Bounded, entity, putEntity, forgetEntity, occupancyOf, occupancyBar, localToUtc, timeZoneName,
} from './common.js';

const FEED_MAX = 200; // lines kept in the feed
const BACKLOG = 400; // events read back from each shard's durable LSN at the start
const QUIET_MS = 5000; // no line (not even a heartbeat) for this long: the stream is gone
const OCC_EVERY_MS = 5000;
const ALERTS_EVERY_MS = 15000;
const QUEUES_EVERY_MS = 3000;
const ALERT_HOURS = 72; // showtimes starting within this many hours can be flagged
const ALERT_BELOW = 0.3; // ... when fewer than this share of their seats are taken
const ALERTS_SHOWN = 3;
const QUEUE_PROBE = 20; // upcoming showtimes asked for a queue when the page opens
const OCC_PAGE = 8;

const METHOD = { upi: 'UPI', card: 'card', wallet: 'wallet' };
const filter = { theater: '' }; // survives leaving and coming back

const hhmmss = (iso) =>
  new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });

export async function render(root) {
  pageTitle(root, 'Live operations');
  root.append(adminNav('live'));
  const stops = [];
  let alive = true;
  const every = (fn, ms) => {
    const t = setInterval(() => {
      if (alive && !document.hidden) fn();
    }, ms);
    stops.push(() => clearInterval(t));
  };

  let theaters = [];
  try {
    theaters = await fetchAll('/api/theaters');
  } catch (e) {
    root.append(errorBox(e));
  }
  const theaterSel = h('select', { name: 'theater' });
  theaterSel.append(h('option', { value: '' }, 'All theaters'));
  for (const t of theaters) theaterSel.append(h('option', { value: t.id }, `${t.name} (${t.city})`));
  theaterSel.value = filter.theater;
  root.append(
    h(
      'div',
      { class: 'row live-bar' },
      field('Theater (occupancy, alerts, queues)', theaterSel),
    ),
  );

  const feed = feedSection(stops, () => alive);
  const occ = occupancySection();
  const alerts = alertsSection();
  const queues = queuesSection();
  root.append(
    h('div', { class: 'live-grid' }, feed.el, h('div', { class: 'live-col' }, occ.el, alerts.el, queues.el)),
  );

  // One list of upcoming showtimes (the first 100 of the filter) feeds occupancy, alerts and
  // the queue form.
  let upcoming = [];
  let upcomingTotal = 0;
  let loading = null;
  let loadingFor = null;
  // A refresh already under way is shared, unless it was asked for another theater: then a
  // new one starts and the old answer is dropped.
  async function refreshUpcoming() {
    if (loading && loadingFor === filter.theater) return loading;
    const want = filter.theater;
    loadingFor = want;
    const p = (async () => {
      try {
        const r = await get(`/api/showtimes${query({ sort: 'time', limit: 100, theater_id: want })}`);
        if (!alive || want !== filter.theater) return;
        upcoming = r.items;
        upcomingTotal = r.total;
        for (const st of upcoming) putEntity('showtimes', st.id, st);
        occ.show(upcoming, upcomingTotal);
        queues.showtimes(upcoming);
      } catch (e) {
        if (alive && want === filter.theater) occ.fail(e);
      } finally {
        if (loading === p) loading = null;
      }
    })();
    loading = p;
    return p;
  }
  const refreshAlerts = async () => {
    if (!upcoming.length) await refreshUpcoming();
    if (alive) await alerts.show(upcoming);
  };
  const soon = debounce(async () => {
    if (!alive) return;
    await refreshUpcoming();
    queues.refresh();
  }, 400);
  const alertsSoon = debounce(() => alive && refreshAlerts(), 1500);
  feed.onChange((ev) => {
    if (/^(booking|hold|waitlist)\./.test(ev.type)) {
      soon();
      alertsSoon();
    }
    if (ev.type === 'showtime.repriced') alertsSoon();
    if (ev.type === 'queue.configured') queues.track(ev.data.showtime_id, ev.data.rate_per_second > 0);
    if (/^queue\./.test(ev.type)) soon();
  });
  alerts.onApplied(() => {
    refreshUpcoming().then(() => refreshAlerts());
  });
  queues.onChanged(() => refreshUpcoming());

  theaterSel.addEventListener('change', async () => {
    filter.theater = theaterSel.value;
    occ.page = 1;
    await refreshUpcoming();
    await refreshAlerts();
    queues.setTheater(filter.theater);
    queues.probe(upcoming.slice(0, QUEUE_PROBE));
  });

  await refreshUpcoming();
  queues.setTheater(filter.theater);
  refreshAlerts();
  queues.probe(upcoming.slice(0, QUEUE_PROBE));
  feed.start();

  every(refreshUpcoming, OCC_EVERY_MS);
  every(refreshAlerts, ALERTS_EVERY_MS);
  every(() => queues.refresh(), QUEUES_EVERY_MS);

  return () => {
    alive = false;
    for (const s of stops) s();
  };
}

// ---- the bookings feed -----------------------------------------------------------------

function feedSection(stops, isAlive) {
  const list = h('ol', { class: 'feed', 'aria-label': 'Bookings and holds, newest first', 'aria-live': 'off' });
  const empty = h('p', { class: 'muted feed-empty' }, 'Waiting for the first events…');
  const state = h('p', { class: 'stream-state', 'aria-live': 'polite' }, h('span', { class: 'dot' }), 'Connecting…');
  const streamErr = h('div', { class: 'errors' });
  const pauseBtn = h('button', { type: 'button', 'aria-pressed': 'false', class: 'small' }, 'Pause');
  const announce = h('input', { type: 'checkbox' });
  const el = h(
    'section',
    { 'aria-labelledby': 'live-feed-h' },
    h('h2', { id: 'live-feed-h' }, 'Bookings as they happen'),
    h('div', { class: 'row' }, state, h('div', { class: 'grow' }), pauseBtn),
    h('div', { class: 'field check' }, h('label', {}, announce, ' Read new lines aloud (screen readers)')),
    streamErr,
    empty,
    list,
  );
  announce.addEventListener('change', () => list.setAttribute('aria-live', announce.checked ? 'polite' : 'off'));

  const holds = new Bounded(20000); // hold_id → {showtime_id, user_id, seats, amount}
  const bookings = new Bounded(20000); // booking_id → hold info + method
  const layoutOf = new Bounded(5000); // showtime_id → layout_id
  const layouts = new Bounded(64); // layout_id → {labels, categories}
  const listeners = [];
  let paused = false;
  let pending = [];
  const shards = [];

  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    pauseBtn.setAttribute('aria-pressed', String(paused));
    if (!paused) {
      const lines = pending;
      pending = [];
      for (const l of lines) insert(l);
    }
    pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    setState();
  });

  function setState() {
    const open = shards.filter((s) => s.state === 'open').length;
    const bad = shards.find((s) => s.problem);
    clear(state);
    const cls = open === shards.length && shards.length ? 'on' : bad ? 'bad' : 'warn';
    state.append(h('span', { class: `dot ${cls}`, 'aria-hidden': 'true' }));
    if (!shards.length) state.append('Connecting…');
    else if (open === shards.length) state.append(`Live: ${shards.length} shard${shards.length > 1 ? 's' : ''}`);
    else state.append(`${open} of ${shards.length} shards live; reconnecting the others…`);
    if (paused) state.append(` · paused (${pending.length} new)`);
    clear(streamErr);
    if (bad) streamErr.append(errorBox(bad.problem));
    for (const s of shards) if (s.notice) streamErr.append(h('div', { class: 'notice', role: 'status' }, s.notice));
  }

  // Lines are kept newest first by event time (shards interleave).
  function insert(line) {
    if (paused) {
      pending.push(line);
      if (pending.length > FEED_MAX) pending.shift();
      setState();
      return;
    }
    empty.remove();
    let before = list.firstChild;
    while (before && before.dataset.ts > line.dataset.ts) before = before.nextSibling;
    list.insertBefore(line, before);
    while (list.children.length > FEED_MAX) list.lastChild.remove();
  }

  async function layoutFor(showtimeId) {
    const lid = layoutOf.get(showtimeId);
    if (lid && layouts.has(lid)) return layouts.get(lid);
    // Seat indexes count every seat of the layout row by row (blocked ones too).
    const st = await entity('showtimes', showtimeId);
    const key = lid || st.screen_id;
    if (layouts.has(key)) return layouts.get(key);
    const scr = await entity('screens', st.screen_id);
    const labels = [];
    for (const r of scr.layout.rows) for (let n = 1; n <= r.seats; n++) labels.push(`${r.label}${n}`);
    const l = { labels, categories: scr.layout.categories };
    layouts.set(key, l);
    return l;
  }

  async function seatText(showtimeId, seats) {
    if (!seats || !seats.length) return '';
    if (typeof seats[0] === 'string') return seats.join(', ');
    try {
      const l = await layoutFor(showtimeId);
      return seats.map((i) => l.labels[i] || `#${i}`).join(', ');
    } catch (_) {
      return `${seats.length} seat${seats.length > 1 ? 's' : ''}`;
    }
  }

  async function showText(showtimeId) {
    try {
      const st = await entity('showtimes', showtimeId);
      const [movie, theater] = await Promise.all([
        entity('movies', st.movie_id).catch(() => null),
        entity('theaters', st.theater_id).catch(() => null),
      ]);
      return `${movie ? movie.title : `Movie ${st.movie_id}`}${theater ? ` · ${theater.name}` : ''} · ${when(st.start_time)} (showtime #${showtimeId})`;
    } catch (_) {
      return `Showtime #${showtimeId}`;
    }
  }

  // line({ev, kind, cls, showtimeId, seats, amount, note}) with any member a promise.
  function line(ev, { kind, cls, info }) {
    const what = h('span', { class: 'what' }, h('span', { class: 'muted' }, '…'));
    const li = h(
      'li',
      { dataset: { ts: `${ev.ts}|${String(ev.shard).padStart(3, '0')}|${String(ev.lsn).padStart(12, '0')}`, type: ev.type } },
      h('time', { datetime: ev.ts, title: ev.ts }, hhmmss(ev.ts)),
      h('span', { class: `kind k-${cls}` }, kind),
      what,
    );
    if (ev.live) li.classList.add('fresh');
    insert(li);
    Promise.resolve(info)
      .then(async (x) => {
        const [seats, show] = await Promise.all([
          x.seats !== undefined ? seatText(x.showtimeId, x.seats) : '',
          x.showtimeId ? showText(x.showtimeId) : '',
        ]);
        clear(what);
        const parts = [];
        if (seats) parts.push(h('span', { class: 'seats' }, `Seats ${seats}`));
        if (x.amount !== undefined) parts.push(h('span', { class: 'amount' }, money(x.amount)));
        if (x.method) parts.push(h('span', { class: 'feed-method' }, `paid by ${METHOD[x.method] || x.method}`));
        if (x.note) parts.push(h('span', { class: 'note' }, x.note));
        parts.forEach((p, i) => {
          if (i) what.append(' · ');
          what.append(p);
        });
        if (show) what.append(h('span', { class: 'show' }, show));
      })
      .catch((e) => {
        clear(what).append(h('span', { class: 'muted' }, `(${errorText(e)})`));
      });
  }

  // The hold an event refers to: from the feed, or else from the API (an admin may read any
  // booking; an ended hold cannot be read back).
  function holdInfo(holdId) {
    return holds.get(holdId) || null;
  }

  async function bookingInfo(bookingId) {
    const b = bookings.get(bookingId);
    if (b) return b;
    const x = await get(`/api/bookings/${bookingId}`);
    return {
      showtime_id: x.showtime_id,
      seats: x.seats,
      amount: x.amount,
      method: x.payment_method,
      user_id: x.user_id,
    };
  }

  function handle(ev) {
    const d = ev.data || {};
    switch (ev.type) {
      case 'catalog.upsert':
        if (['showtime', 'movie', 'theater', 'screen'].includes(d.kind)) putEntity(`${d.kind}s`, d.id, d.entity);
        return;
      case 'catalog.delete':
        if (d.kind !== 'showtime') forgetEntity(`${d.kind}s`, d.id);
        return;
      case 'layout.created':
        layouts.set(d.layout_id, { labels: d.seat_labels, categories: d.categories });
        return;
      case 'showtime.opened':
        layoutOf.set(d.showtime_id, d.layout_id);
        return;
      case 'booking.reserved':
      case 'waitlist.offered': {
        const hold = { showtime_id: d.showtime_id, user_id: d.user_id, seats: d.seats, amount: d.amount, offer: ev.type === 'waitlist.offered' };
        holds.set(d.hold_id, hold);
        line(ev, {
          kind: ev.type === 'waitlist.offered' ? 'Offered' : 'Held',
          cls: ev.type === 'waitlist.offered' ? 'waitlist' : 'reserved',
          info: {
            showtimeId: d.showtime_id,
            seats: d.seats,
            amount: d.amount,
            note: `${ev.type === 'waitlist.offered' ? 'waiting-list offer, ' : ''}until ${hhmmss(d.expires_at)}`,
          },
        });
        return;
      }
      case 'booking.confirmed': {
        const hold = holdInfo(d.hold_id);
        if (hold) bookings.set(d.booking_id, { ...hold, method: d.method });
        line(ev, {
          kind: 'Booked',
          cls: 'confirmed',
          info: hold
            ? { showtimeId: hold.showtime_id, seats: hold.seats, amount: hold.amount, method: d.method }
            : bookingInfo(d.booking_id).then((b) => ({ showtimeId: b.showtime_id, seats: b.seats, amount: b.amount, method: d.method })),
        });
        return;
      }
      case 'booking.cancelled':
        line(ev, {
          kind: 'Cancelled',
          cls: 'cancelled',
          info: bookingInfo(d.booking_id).then((b) => ({
            showtimeId: b.showtime_id,
            seats: b.seats,
            amount: b.amount,
            note: `refund ${money(d.refund)}`,
          })),
        });
        return;
      case 'hold.released':
      case 'hold.expired': {
        const hold = holdInfo(d.hold_id);
        const kind = ev.type === 'hold.released' ? 'Released' : 'Expired';
        line(ev, {
          kind,
          cls: ev.type === 'hold.released' ? 'released' : 'expired',
          info: hold
            ? { showtimeId: hold.showtime_id, seats: hold.seats, amount: hold.amount, note: 'seats back on sale' }
            : { note: `hold ${d.hold_id} (placed before this feed started); its seats are back on sale` },
        });
        return;
      }
      case 'waitlist.joined':
      case 'waitlist.left':
        line(ev, {
          kind: ev.type === 'waitlist.joined' ? 'Waitlist +' : 'Waitlist −',
          cls: 'waitlist',
          info:
            ev.type === 'waitlist.joined'
              ? layoutFor(d.showtime_id)
                  .catch(() => null)
                  .then((l) => ({
                    showtimeId: d.showtime_id,
                    note: `${d.count} seat${d.count > 1 ? 's' : ''} wanted, ${
                      d.category === null ? 'any category' : (l && l.categories[d.category]) || `category ${d.category}`
                    } (user ${d.user_id})`,
                  }))
              : { showtimeId: d.showtime_id, note: `user ${d.user_id} left the waiting list` },
        });
        return;
      case 'queue.configured':
        line(ev, {
          kind: 'Queue',
          cls: 'queue',
          info: {
            showtimeId: d.showtime_id,
            note: d.rate_per_second > 0
              ? `queue set: ${d.rate_per_second} a second from ${when(d.starts_at)}`
              : 'queue removed',
          },
        });
        return;
      case 'queue.joined':
      case 'queue.left':
        line(ev, {
          kind: ev.type === 'queue.joined' ? 'Queue +' : 'Queue −',
          cls: 'queue',
          info: { showtimeId: d.showtime_id, note: `user ${d.user_id} ${ev.type === 'queue.joined' ? 'joined' : 'left'} the queue` },
        });
        return;
      case 'queue.started':
        line(ev, { kind: 'Queue', cls: 'queue', info: { showtimeId: d.showtime_id, note: 'queue opened: admitting' } });
        return;
      case 'queue.admitted':
        line(ev, { kind: 'Admitted', cls: 'queue', info: { showtimeId: d.showtime_id, note: `places up to ${d.admitted_through} admitted` } });
        return;
      case 'showtime.repriced':
        forgetEntity('showtimes', d.showtime_id);
        line(ev, {
          kind: 'Repriced',
          cls: 'repriced',
          info: layoutFor(d.showtime_id)
            .catch(() => null)
            .then((l) => ({
              showtimeId: d.showtime_id,
              note: `new prices: ${d.prices.map((p, i) => `${(l && l.categories[i]) || `#${i}`} ${money(p)}`).join(', ')}`,
            })),
        });
        return;
      default:
    }
  }

  function openShard(s, from) {
    const gen = ++s.gen;
    s.state = 'connecting';
    s.lastLine = Date.now();
    if (s.conn) s.conn.close();
    s.conn = ndjson(`/api/replication?shard=${s.shard}&from_lsn=${from}`, {
      onLine: (ev) => {
        if (gen !== s.gen || !isAlive()) return false;
        s.lastLine = Date.now();
        if (s.state !== 'open' || s.problem) {
          s.state = 'open';
          s.problem = null;
          s.backoff = 1000;
          setState();
        }
        if (ev.v !== 1) return true;
        if (ev.type === 'heartbeat') return true;
        if (ev.type === 'error') {
          retry(s, ev.next_lsn || s.next, 500);
          return false;
        }
        if (typeof ev.lsn !== 'number') return true;
        s.next = ev.lsn + 1;
        // Going on from an older LSN (after a 410) repeats events already shown: skip them.
        if (ev.lsn <= s.seen) return true;
        s.seen = ev.lsn;
        ev.live = ev.lsn > s.startDurable;
        try {
          handle(ev);
          for (const fn of listeners) fn(ev);
        } catch (e) {
          console.warn('feed: an event could not be shown', e);
        }
        return true;
      },
      onState: (st, err) => {
        if (gen !== s.gen || !isAlive()) return;
        if (st === 'open') {
          s.state = 'open';
          s.problem = null;
          setState();
        } else if (st === 'closed') {
          retry(s, s.next, 1000);
        } else if (st === 'failed') {
          onFailure(s, err);
        }
      },
    });
  }

  function retry(s, from, ms) {
    if (!isAlive()) return;
    s.gen++;
    if (s.conn) s.conn.close();
    s.conn = null;
    s.state = 'retrying';
    setState();
    clearTimeout(s.timer);
    s.timer = setTimeout(() => isAlive() && openShard(s, from), ms);
  }

  async function onFailure(s, err) {
    const slug = err instanceof ApiError ? err.slug : 'network';
    s.backoff = Math.min((s.backoff || 1000) * 2, 15000);
    if (slug === 'lsn-gone') {
      // The WAL before oldest_lsn was deleted after a snapshot: go on from the oldest event
      // still there (the feed shows only what happens from then on).
      let oldest = err.problem && err.problem.oldest_lsn;
      try {
        const st = await get('/api/replication/status');
        const mine = st.shards.find((x) => x.shard === s.shard);
        if (mine) oldest = mine.oldest_lsn;
      } catch (_) {
        /* keep the problem's oldest_lsn */
      }
      s.notice = `Shard ${s.shard}'s events from LSN ${s.next} on were already deleted after a snapshot (this page was away too long), so some bookings are missing from the feed. It goes on from LSN ${oldest}, the oldest kept. Occupancy is not affected.`;
      s.next = oldest || 1;
      retry(s, s.next, 200);
      return;
    }
    if (slug === 'lsn-ahead') {
      s.next = (err.problem && err.problem.durable_lsn) || 1;
      retry(s, s.next, 500);
      return;
    }
    if (slug === 'too-many-streams') {
      const wait = Math.max((err.retryAfter || 1) * 1000, s.backoff);
      s.problem = `The server already serves as many replication streams as it allows (16 by default: other dashboards, exporters or tabs hold them), so shard ${s.shard}'s feed is waiting. Trying again in ${Math.round(wait / 1000)} s; closing another admin tab frees a stream.`;
      retry(s, s.next, wait);
      return;
    }
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      s.problem = `The feed needs an admin login: ${errorText(err)}`;
      s.state = 'failed';
      setState();
      return;
    }
    s.problem = `Shard ${s.shard}: ${errorText(err)} Reconnecting from LSN ${s.next}…`;
    retry(s, s.next, s.backoff);
  }

  async function start() {
    let status;
    for (let wait = 1000; isAlive(); wait = Math.min(wait * 2, 15000)) {
      try {
        status = await get('/api/replication/status');
        break;
      } catch (e) {
        clear(streamErr).append(errorBox(`The feed cannot start: ${errorText(e)} Trying again…`));
        await new Promise((r) => setTimeout(r, wait));
      }
    }
    if (!isAlive() || !status) return;
    for (const sh of status.shards) {
      const s = {
        shard: sh.shard,
        gen: 0,
        next: Math.max(sh.oldest_lsn || 1, sh.durable_lsn - BACKLOG + 1, 1),
        startDurable: sh.durable_lsn,
        seen: 0,
        notice: null,
        backoff: 1000,
        state: 'connecting',
        problem: null,
        conn: null,
        timer: null,
        lastLine: Date.now(),
      };
      shards.push(s);
      openShard(s, s.next);
    }
    setState();
    if (!status.shards.length || status.shards.every((x) => x.durable_lsn === 0)) empty.textContent = 'No events yet.';
    setTimeout(() => {
      if (empty.isConnected) empty.textContent = 'No bookings yet in the recent history. New ones appear here as they happen.';
    }, 3000);
    // A stream that sent nothing (not even a heartbeat, sent every second) for 5 s is gone.
    const watchdog = setInterval(() => {
      for (const s of shards) {
        if (s.state === 'open' && Date.now() - s.lastLine > QUIET_MS) retry(s, s.next, 0);
      }
    }, 1000);
    stops.push(() => clearInterval(watchdog));
    // A hidden tab lets its streams go: each holds one of the six connections a browser keeps
    // per host (usherd speaks HTTP/1.1), and a few dashboards left open in the background
    // would stall every other request to usherd. Back in view, each shard goes on from its
    // next LSN, so nothing is missed.
    const onVisibility = () => {
      for (const s of shards) {
        if (document.hidden) {
          s.gen++;
          clearTimeout(s.timer);
          if (s.conn) s.conn.close();
          s.conn = null;
          s.state = 'paused';
        } else if (s.state === 'paused') {
          openShard(s, s.next);
        }
      }
      setState();
    };
    document.addEventListener('visibilitychange', onVisibility);
    stops.push(() => document.removeEventListener('visibilitychange', onVisibility));
  }
  stops.push(() => {
    for (const s of shards) {
      s.gen++;
      clearTimeout(s.timer);
      if (s.conn) s.conn.close();
    }
  });

  return {
    el,
    start,
    onChange: (fn) => listeners.push(fn),
  };
}

// ---- occupancy ---------------------------------------------------------------------------

function occupancySection() {
  const list = h('ul', { class: 'occ-list' });
  const note = h('p', { class: 'muted' });
  const prev = h('button', { type: 'button', class: 'small' }, '← Earlier');
  const next = h('button', { type: 'button', class: 'small' }, 'Later →');
  const where = h('span', { class: 'muted' });
  const err = h('div', { class: 'errors' });
  const el = h(
    'section',
    { 'aria-labelledby': 'live-occ-h' },
    h('h2', { id: 'live-occ-h' }, 'Occupancy of upcoming showtimes'),
    note,
    err,
    list,
    h('nav', { class: 'pager row', 'aria-label': 'Occupancy pages' }, prev, where, next),
  );
  let items = [];
  let total = 0;
  const me = {
    el,
    page: 1,
    show(upcoming, t) {
      items = upcoming;
      total = t;
      clear(err);
      paint();
    },
    fail(e) {
      clear(err).append(errorBox(e));
    },
  };
  prev.addEventListener('click', () => {
    me.page--;
    paint();
  });
  next.addEventListener('click', () => {
    me.page++;
    paint();
  });
  function paint() {
    const pages = Math.max(1, Math.ceil(items.length / OCC_PAGE));
    me.page = Math.min(Math.max(1, me.page), pages);
    const slice = items.slice((me.page - 1) * OCC_PAGE, me.page * OCC_PAGE);
    clear(list);
    if (!items.length) list.append(h('li', { class: 'muted' }, 'No upcoming showtimes.'));
    for (const st of slice) {
      const o = occupancyOf(st);
      list.append(
        h(
          'li',
          { class: 'occ-item', dataset: { showtime: st.id } },
          h(
            'div',
            { class: 'occ-title' },
            h('strong', {}, st.movie_title),
            h('span', { class: 'muted' }, `${st.theater_name} · ${when(st.start_time)}`),
          ),
          occupancyBar(o),
        ),
      );
    }
    note.textContent = `Sold, held and free seats, refreshed every ${OCC_EVERY_MS / 1000} s and after each booking.${
      total > items.length ? ` Showing the first ${items.length} of ${total}.` : ''
    }`;
    where.textContent = `Page ${me.page} of ${pages}`;
    prev.disabled = me.page <= 1;
    next.disabled = me.page >= pages;
  }
  return me;
}

// ---- low-occupancy alerts with pricing suggestions -----------------------------------------

function alertsSection() {
  const box = h('div', {});
  const err = h('div', { class: 'errors' });
  const el = h(
    'section',
    { 'aria-labelledby': 'live-alerts-h' },
    h('h2', { id: 'live-alerts-h' }, 'Low occupancy'),
    h(
      'p',
      { class: 'muted' },
      `Showtimes starting within ${ALERT_HOURS} hours with under ${ALERT_BELOW * 100}% of their seats taken, with the server’s price suggestion (GET /api/pricing/suggest).`,
    ),
    err,
    box,
  );
  const cards = new Map(); // showtime id → {el, sig}
  let applied = () => {};
  let busyApply = false;

  async function show(upcoming) {
    if (busyApply) return;
    const now = Date.now();
    const flagged = upcoming.filter((st) => {
      const o = occupancyOf(st);
      return st.start_ms - now <= ALERT_HOURS * 3600e3 && st.start_ms > now && o.total > 0 && o.taken < ALERT_BELOW;
    });
    const shown = flagged.slice(0, ALERTS_SHOWN);
    const results = await Promise.all(
      shown.map((st) =>
        get(`/api/pricing/suggest${query({ showtime_id: st.id })}`).then(
          (s) => ({ st, s }),
          (e) => ({ st, e }),
        ),
      ),
    );
    clear(err);
    const keep = new Set(shown.map((st) => st.id));
    for (const [id, c] of cards) {
      if (!keep.has(id)) {
        c.el.remove();
        cards.delete(id);
      }
    }
    if (!shown.length) {
      clear(box).append(h('p', { class: 'muted none' }, 'No showtime needs attention now.'));
      return;
    }
    box.querySelector('p.none')?.remove();
    let prev = null;
    for (const { st, s, e } of results) {
      const sig = JSON.stringify([st.seats_sold, st.seats_available, st.prices, s && s.categories.map((c) => c.suggested_price), e && e.slug]);
      let c = cards.get(st.id);
      if (!c || c.sig !== sig) {
        const card = renderCard(st, s, e);
        if (c) {
          const hadFocus = c.el.contains(document.activeElement);
          c.el.replaceWith(card);
          if (hadFocus) card.querySelector('button')?.focus();
        }
        c = { el: card, sig };
        cards.set(st.id, c);
      }
      if (prev ? prev.nextSibling !== c.el : box.firstChild !== c.el) {
        if (prev) prev.after(c.el);
        else box.prepend(c.el);
      }
      prev = c.el;
    }
    if (flagged.length > shown.length) {
      box.querySelector('p.more')?.remove();
      box.append(h('p', { class: 'muted more' }, `${flagged.length - shown.length} more showtimes are below ${ALERT_BELOW * 100}%.`));
    } else box.querySelector('p.more')?.remove();
  }

  function renderCard(st, s, e) {
    const o = occupancyOf(st);
    const head = h(
      'div',
      {},
      h('h3', {}, `${st.movie_title} · ${when(st.start_time)}`),
      h('p', { class: 'muted' }, `${st.theater_name} · ${Math.round(o.taken * 100)}% taken (${o.sold} sold, ${o.held} held of ${o.total}) · showtime #${st.id}`),
    );
    if (e) return h('article', { class: 'alert-card', dataset: { showtime: st.id } }, head, errorBox(e));
    const changes = s.categories.some((c) => c.suggested_price !== c.current_price);
    const msg = h('div', { class: 'errors' });
    const apply = h('button', { type: 'button', class: 'primary small', disabled: !changes }, changes ? 'Apply suggested prices' : 'No change suggested');
    apply.addEventListener('click', async () => {
      const prices = {};
      for (const c of s.categories) prices[c.name] = c.suggested_price;
      const ok = await confirmDialog(
        'Apply the suggested prices?',
        h(
          'div',
          {},
          h('p', {}, `${st.movie_title}, ${when(st.start_time)}. Holds placed from now on pay:`),
          h('ul', {}, s.categories.map((c) => h('li', {}, `${c.name}: ${money(c.current_price)} → ${money(c.suggested_price)}`))),
          h('p', { class: 'muted' }, 'Seats already held or booked keep their price.'),
        ),
        'Apply prices',
      );
      if (!ok) {
        apply.focus();
        return;
      }
      busyApply = true;
      apply.disabled = true;
      try {
        await patch(`/api/showtimes/${st.id}`, { prices });
        forgetEntity('showtimes', st.id);
        toast(`New prices for ${st.movie_title}, ${when(st.start_time)}.`, 'ok');
      } catch (er) {
        clear(msg).append(errorBox(er));
        apply.disabled = false;
        return;
      } finally {
        busyApply = false;
      }
      applied();
    });
    return h(
      'article',
      { class: 'alert-card', dataset: { showtime: st.id } },
      head,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          {},
          h('caption', { class: 'visually-hidden' }, `Price suggestion for showtime ${st.id}`),
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', { scope: 'col' }, 'Category'),
              h('th', { scope: 'col', class: 'num' }, 'Taken'),
              h('th', { scope: 'col', class: 'num' }, 'Now'),
              h('th', { scope: 'col', class: 'num' }, 'Suggested'),
              h('th', { scope: 'col', class: 'num' }, 'Change'),
            ),
          ),
          h(
            'tbody',
            {},
            s.categories.map((c) =>
              h(
                'tr',
                { dataset: { category: c.name } },
                h('th', { scope: 'row' }, c.name),
                h('td', { class: 'num' }, `${c.seats_held + c.seats_sold} / ${c.seats_for_sale}`),
                h('td', { class: 'num' }, money(c.current_price)),
                h('td', { class: 'num suggested' }, money(c.suggested_price)),
                h(
                  'td',
                  { class: `num ${c.change_percent > 0 ? 'up' : c.change_percent < 0 ? 'down' : ''}` },
                  `${c.change_percent > 0 ? '+' : ''}${c.change_percent}%`,
                ),
              ),
            ),
          ),
        ),
      ),
      h(
        'details',
        {},
        h('summary', {}, 'Why'),
        s.categories.map((c) => h('div', {}, h('strong', {}, c.name), h('ul', {}, c.factors.map((f) => h('li', {}, f.reason))))),
      ),
      msg,
      apply,
    );
  }

  return { el, show, onApplied: (fn) => (applied = fn) };
}

// ---- virtual queues ----------------------------------------------------------------------

function queuesSection() {
  const tbody = h('tbody', {});
  const tableWrap = h(
    'div',
    { class: 'table-wrap', role: 'region', 'aria-label': 'Queues', tabindex: '0' },
    h(
      'table',
      { class: 'queue-table' },
      h('caption', { class: 'visually-hidden' }, 'On-sale queues'),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { scope: 'col' }, 'Showtime'),
          h('th', { scope: 'col' }, 'State'),
          h('th', { scope: 'col', class: 'num' }, 'Waiting'),
          h('th', { scope: 'col', class: 'num' }, 'Admitted'),
          h('th', { scope: 'col', class: 'num' }, 'Rate'),
          h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')),
        ),
      ),
      tbody,
    ),
  );
  const none = h('p', { class: 'muted' }, 'No queue found on the upcoming showtimes.');
  const err = h('div', { class: 'errors' });

  const stSel = h('select', { name: 'queue-showtime', required: true });
  const rate = h('input', { type: 'number', name: 'rate', min: 1, max: 1000000, value: 5, inputmode: 'numeric' });
  const start = h('input', { type: 'datetime-local', name: 'queue-start' });
  const formErr = h('div', { class: 'errors' });
  const saveBtn = h('button', { type: 'submit', class: 'primary' }, 'Set queue');
  const form = h(
    'form',
    { class: 'row queue-form', novalidate: true, 'aria-label': 'Set up a queue' },
    Object.assign(field('Showtime', stSel), { className: 'field wide' }),
    field('Admit per second', rate),
    field('Opens at (optional, your time)', start, `Empty: now. Time zone ${timeZoneName()}.`),
    saveBtn,
  );
  const el = h(
    'section',
    { 'aria-labelledby': 'live-queues-h' },
    h('h2', { id: 'live-queues-h' }, 'On-sale queues'),
    h('p', { class: 'muted' }, 'Showtimes behind a virtual queue: buyers wait their turn and are admitted at the rate.'),
    err,
    none,
    tableWrap,
    h('h3', {}, 'Put a showtime behind a queue'),
    form,
    formErr,
  );
  tableWrap.hidden = true;

  const tracked = new Bounded(50); // showtime id → last GET answer (or null until read)
  const rows = new Map();
  let theater = '';
  let changed = () => {};
  let refreshing = false;

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clear(formErr);
    const id = Number(stSel.value);
    if (!id) {
      formErr.append(errorBox('Choose a showtime.'));
      stSel.focus();
      return;
    }
    const body = { rate_per_second: /^\d+$/.test(rate.value.trim()) ? Number(rate.value.trim()) : rate.value };
    if (start.value) {
      const u = localToUtc(start.value);
      if (!u) {
        formErr.append(errorBox('The opening time is not a date and time.'));
        start.focus();
        return;
      }
      body.start_time = u;
    }
    saveBtn.disabled = true;
    try {
      const q = await put(`/api/showtimes/${id}/queue`, body);
      tracked.set(id, q);
      toast(`Queue set: ${q.rate_per_second} a second.`, 'ok');
      await paint();
      changed();
    } catch (e) {
      const f = e instanceof ApiError && e.field;
      formErr.append(errorBox(f === 'rate_per_second' ? `Admit per second: ${e.detail}.` : f === 'start_time' ? `Opens at: ${e.detail}.` : errorText(e)));
      (f === 'rate_per_second' ? rate : f === 'start_time' ? start : stSel).focus();
    } finally {
      saveBtn.disabled = false;
    }
  });

  async function read(id) {
    try {
      const q = await get(`/api/showtimes/${id}/queue`);
      tracked.set(id, q);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) tracked.delete(id);
      else throw e;
    }
  }

  async function refresh() {
    if (refreshing || !tracked.size) return;
    refreshing = true;
    try {
      await Promise.all([...tracked.keys()].map((id) => read(id)));
      clear(err);
    } catch (e) {
      clear(err).append(errorBox(e));
    } finally {
      refreshing = false;
    }
    await paint();
  }

  function stateText(q) {
    if (q.started) return 'admitting';
    return `opens ${when(q.start_time)}`;
  }

  async function paint() {
    const entries = [];
    for (const [id, q] of tracked) {
      if (!q) continue;
      let st = null;
      try {
        st = await entity('showtimes', id);
      } catch (_) {
        /* deleted */
      }
      if (theater && st && String(st.theater_id) !== theater) continue;
      entries.push({ id, q, st });
    }
    const keep = new Set(entries.map((x) => x.id));
    for (const [id, r] of rows) {
      if (!keep.has(id)) {
        r.tr.remove();
        rows.delete(id);
      }
    }
    for (const { id, q, st } of entries) {
      let r = rows.get(id);
      if (!r) {
        const cells = {
          show: h('td', {}),
          state: h('td', {}),
          waiting: h('td', { class: 'num' }),
          admitted: h('td', { class: 'num' }),
          rate: h('td', { class: 'num' }),
        };
        const rm = h('button', { type: 'button', class: 'small danger-outline' }, 'Remove');
        rm.addEventListener('click', () => removeQueue(id, rm));
        const tr = h('tr', { dataset: { showtime: id } }, cells.show, cells.state, cells.waiting, cells.admitted, cells.rate, h('td', {}, rm));
        r = { tr, cells, rm };
        rows.set(id, r);
        tbody.append(tr);
        showName(id, st).then((t) => {
          cells.show.textContent = t;
          rm.setAttribute('aria-label', `Remove the queue of ${t}`);
        });
      }
      r.cells.state.textContent = stateText(q);
      r.cells.waiting.textContent = String(q.waiting);
      r.cells.admitted.textContent = String(q.admitted);
      r.cells.rate.textContent = `${q.rate_per_second}/s`;
    }
    tableWrap.hidden = rows.size === 0;
    none.hidden = rows.size !== 0;
  }

  async function showName(id, st) {
    try {
      const s = st || (await entity('showtimes', id));
      const m = await entity('movies', s.movie_id).catch(() => null);
      return `${m ? m.title : `Movie ${s.movie_id}`}, ${when(s.start_time)} (#${id})`;
    } catch (_) {
      return `Showtime #${id}`;
    }
  }

  async function removeQueue(id, btn) {
    const name = await showName(id);
    const ok = await confirmDialog('Remove this queue?', `${name}: buyers will reserve directly, without waiting their turn.`, 'Remove queue');
    if (!ok) {
      btn.focus();
      return;
    }
    try {
      await del(`/api/showtimes/${id}/queue`);
      tracked.delete(id);
      toast('Queue removed.', 'ok');
    } catch (e) {
      if (e instanceof ApiError && e.slug === 'no-queue') tracked.delete(id);
      else clear(err).append(errorBox(e));
    }
    await paint();
    changed();
    stSel.focus();
  }

  return {
    el,
    refresh,
    onChanged: (fn) => (changed = fn),
    setTheater(t) {
      theater = t;
      paint();
    },
    track(id, on) {
      if (on) {
        if (!tracked.has(id)) tracked.set(id, null);
        read(id).then(paint, () => {});
      } else {
        tracked.delete(id);
        paint();
      }
    },
    // Asks the first upcoming showtimes whether they have a queue (a bounded probe: 404
    // no-queue is the usual answer), four at a time.
    async probe(showtimes) {
      const ids = showtimes.map((s) => s.id).filter((id) => !tracked.has(id));
      for (let i = 0; i < ids.length; i += 4) {
        await Promise.all(ids.slice(i, i + 4).map((id) => read(id).catch(() => {})));
      }
      await paint();
    },
    showtimes(upcoming) {
      const sig = upcoming.map((st) => st.id).join(',');
      if (sig === stSel.dataset.sig) return;
      stSel.dataset.sig = sig;
      const v = stSel.value;
      clear(stSel);
      stSel.append(h('option', { value: '' }, 'Choose a showtime'));
      for (const st of upcoming) {
        stSel.append(h('option', { value: st.id }, `${st.movie_title} · ${st.theater_name} · ${when(st.start_time)} (#${st.id})`));
      }
      if ([...stSel.options].some((o) => o.value === v)) stSel.value = v;
    },
  };
}
