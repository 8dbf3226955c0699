// The seat map of one showtime (#/showtimes/:id): the screen's real layout from
// GET /api/seats/:id, kept live by the seat stream (GET /api/seats/:id/events, read with
// api.stream so the token, if any, stays in a header). Pick seats (mouse or keyboard) or ask for
// the best N in a category, hold them (POST /api/bookings/reserve), pay before the hold runs out
// (POST /api/bookings/confirm) or release them. Seats someone else takes are marked at once and
// taken out of the selection. A showtime behind a virtual queue needs an admission first; a
// sold-out one offers its waiting list.

import { get, post, del, session, newKey, stream, errorText, ApiError } from '../api.js';
import { h, clear, money, when, errorBox, pageTitle } from '../ui.js';
import { navigate } from '../app.js';
import { SeatGrid, legend } from './seatgrid.js';
import { details, describe, loadAdmission, saveAdmission, dropAdmission, clock } from './catalog.js';

const MAX_SEATS = 10; // the server's default --max-seats-per-hold
const PICK_KEY = (id) => `usher.pick.${id}`;
const EXPIRED = 'Your hold ran out of time, so the seats went back on sale. Choose seats again to book.';
const METHODS = [
  ['upi', 'UPI'],
  ['card', 'Card'],
  ['wallet', 'Wallet'],
];

export function render(root, { params, query: q }) {
  const id = params[0];
  let closed = false;
  const timers = new Set();
  const later = (fn, ms) => {
    const t = setTimeout(() => {
      timers.delete(t);
      if (!closed) fn();
    }, ms);
    timers.add(t);
    return t;
  };
  const cancel = (t) => {
    clearTimeout(t);
    timers.delete(t);
  };
  // An answer that may or may not have been acted on: no answer, a server error, or the same
  // Idempotency-Key still executing.
  const unknownOutcome = (err) => err instanceof ApiError && (err.status === 0 || err.status >= 500 || err.slug === 'idempotency-in-flight');

  const h1 = pageTitle(root, 'Choose seats');
  const sub = h('p', { class: 'sm-sub muted' });
  const live = h('span', { class: 'live live-connecting', role: 'status' }, 'Connecting…');
  const notices = h('div', { class: 'sm-notices' });
  const mapBox = h('div', { class: 'mapbox', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading the seat map…'));
  const legendBox = h('div', { class: 'legend-box' });
  const panel = h('aside', { class: 'sm-panel card', 'aria-labelledby': 'panel-title' });
  const say = h('div', { class: 'visually-hidden', 'aria-live': 'polite' }); // countdown and other news
  // On a phone the panel is below a tall map: a bar at the bottom says what is chosen or held
  // and jumps to the panel.
  const bar = h('div', { class: 'sm-bar', hidden: true });
  const help = h(
    'p',
    { id: 'grid-help', class: 'muted sm-help' },
    'The screen is at the top. Click seats to choose them, or use the arrow keys to move and Space or Enter to choose.',
  );
  const head = h('div', { class: 'sm-head' });
  h1.before(head);
  head.append(h1, live);
  root.append(
    sub,
    notices,
    h(
      'div',
      { class: 'sm-layout' },
      h('div', { class: 'sm-mapcol' }, help, mapBox, legendBox),
      panel,
    ),
    bar,
    say,
  );

  // ---- state
  const grid = new SeatGrid({ view: (s) => view(s), onToggle: (s) => toggle(s), label: 'Seat map' });
  grid.el.setAttribute('aria-describedby', 'grid-help');
  const selected = new Set();
  let mine = new Set();
  let hold = null; // {hold_id, seats, amount, deadline, confirmKey, confirmBody, source}
  let booking = null; // the last confirmed booking (done panel)
  let info = null; // {showtime, movie, theater, screen}
  let queue = null; // GET /api/showtimes/:id/queue, or null
  let queueMe = null; // GET .../queue/me, or null
  let waiting = null; // GET .../waitlist, or null
  let reserving = false;
  let holdBusy = false; // a confirm or release of the hold is under way
  const deferred = new Set(); // selected seats the stream said were taken while a reserve ran
  let panelMessage = null; // {kind: 'error'|'notice'|'success', node}
  let lastReserve = null; // {text, key, retriable, unknown}
  let tickTimer = null; // the one countdown timer
  let seatStream = null;
  let loaded = false;
  const form = { count: '2', cat: '', acc: false, method: 'upi' }; // the panel's choices

  function view(seat) {
    if (mine.has(seat.label)) return 'mine';
    if (selected.has(seat.label) && seat.state === 'free') return 'selected';
    return seat.state;
  }

  const started = () => info && info.showtime.start_ms <= Date.now();
  const soldOut = () => loaded && grid.counts().every((c) => c.free === 0) && grid.seats.size > 0;
  const needsAdmission = () => !!queue;

  function message(kind, content) {
    panelMessage = content ? { kind, node: typeof content === 'string' ? h('p', {}, content) : content } : null;
    renderPanel();
  }

  // ---- selection
  function toggle(seat) {
    if (hold) {
      message('notice', 'You have seats on hold: pay for them or release them before choosing others.');
      return;
    }
    if (booking) booking = null;
    if (selected.has(seat.label)) {
      selected.delete(seat.label);
    } else if (seat.state !== 'free') {
      say.textContent = `${seat.label} is ${grid.name(seat).split(', ').pop()}.`;
      return;
    } else if (selected.size >= MAX_SEATS) {
      message('error', `You can hold at most ${MAX_SEATS} seats at a time.`);
      return;
    } else {
      selected.add(seat.label);
    }
    if (panelMessage && panelMessage.kind !== 'success') panelMessage = null;
    grid.paint(seat);
    renderPanel();
  }

  function selectionAmount() {
    let sum = 0;
    for (const l of selected) sum += grid.seats.get(l).price;
    return sum;
  }

  // Seats someone else took: out of the selection, marked on the map, and said.
  function taken(labels, state = 'held', how = 'Someone else has just taken') {
    const list = labels.filter((l) => grid.seats.has(l));
    for (const l of list) {
      const seat = grid.seats.get(l);
      if (seat.state === 'free') seat.state = state;
      selected.delete(l);
      grid.paint(seat);
    }
    if (list.length) {
      const which = list.length === 1 ? `seat ${list[0]}` : `seats ${list.join(', ')}`;
      message('error', `${how} ${which}. ${list.length === 1 ? 'It is' : 'They are'} marked on the map and no longer in your choice: please choose other seats.`);
      refreshLegend();
    }
  }

  // ---- holds
  // The countdown's end. An idempotent replay repeats the first answer's expires_in_s, so the
  // page counts down to expires_at (this clock's idea of that instant). If this clock and the
  // server's disagree so much that the deadline is already past or further away than the hold's
  // whole time (expires_at - created_at) allows, ask GET /api/holds/:id once: a fresh answer's
  // expires_in_s is then the time left (a 404 means the hold has ended).
  function deadlineOf(hd) {
    const at = Date.parse(hd.expires_at);
    const ttl = at - Date.parse(hd.created_at);
    const left = at - Date.now();
    if (Number.isFinite(left) && left > 0 && !(ttl >= 0 && left > ttl + 2000)) return at;
    return null;
  }

  async function checkDeadline(hd) {
    try {
      const fresh = await get(`/api/holds/${hd.hold_id}`);
      if (closed || !hold || hold.hold_id !== hd.hold_id) return;
      hold.deadline = Date.now() + fresh.expires_in_s * 1000;
      tick();
    } catch (err) {
      if (closed || !hold || hold.hold_id !== hd.hold_id) return;
      if (err.slug === 'not-found') endHold(EXPIRED);
    }
  }

  function startHold(hd, words) {
    lastReserve = null;
    const at = deadlineOf(hd);
    hold = {
      hold_id: hd.hold_id,
      seats: hd.seats,
      amount: hd.amount,
      source: hd.source || 'reserve',
      // Until the hold is re-read, count with expires_in_s (at worst the replayed value).
      deadline: at !== null ? at : Date.now() + hd.expires_in_s * 1000,
      confirmKey: newKey('confirm'),
      confirmBody: null, // the body of a confirm whose outcome is unknown: resent as it was
      announced: new Set(),
    };
    if (at === null) checkDeadline(hd);
    mine = new Set(hd.seats);
    for (const l of hd.seats) {
      const s = grid.seats.get(l);
      if (s) s.state = 'held';
    }
    selected.clear();
    booking = null;
    grid.paintAll();
    refreshLegend();
    if (words) say.textContent = words;
    panelMessage = null;
    renderPanel();
    tick();
  }

  function endHold(words, kind = 'error', state = null) {
    if (!hold) return;
    const seats = hold.seats;
    hold = null;
    cancel(tickTimer);
    mine = new Set();
    if (state) {
      for (const l of seats) {
        const s = grid.seats.get(l);
        if (s) s.state = state;
      }
    }
    grid.paintAll();
    refreshLegend();
    message(kind, words);
  }

  function tick() {
    cancel(tickTimer); // one countdown chain, whatever started this one
    tickTimer = null;
    if (!hold || closed) return;
    const left = (hold.deadline - Date.now()) / 1000;
    const t = panel.querySelector('.countdown');
    if (t) t.textContent = clock(left);
    const b = bar.querySelector('.bar-count');
    if (b) b.textContent = clock(left);
    const whole = Math.ceil(left);
    for (const mark of [60, 10]) {
      if (whole <= mark && whole > 0 && !hold.announced.has(mark)) {
        hold.announced.add(mark);
        say.textContent = mark === 60 ? 'One minute left to pay for your seats.' : '10 seconds left to pay for your seats.';
        if (t) t.parentElement.classList.add('urgent');
      }
    }
    if (left <= 0) {
      if (hold.confirmBody) {
        // A payment whose answer never came may have gone through.
        const h0 = hold;
        settleFromBookings().then((found) => {
          if (!found && hold === h0) {
            endHold(EXPIRED);
            say.textContent = 'Your hold ran out of time.';
          }
        });
        return;
      }
      endHold(EXPIRED);
      say.textContent = 'Your hold ran out of time.';
      return;
    }
    tickTimer = later(tick, (hold.deadline - Date.now()) % 1000 || 1000);
  }

  async function admissionToken() {
    const a = loadAdmission(id);
    if (a && a.expires_ms - 5000 > Date.now()) return a.token;
    try {
      queueMe = await get(`/api/showtimes/${id}/queue/me`);
      saveAdmission(id, queueMe);
      return queueMe.state === 'admitted' ? queueMe.admission_token : null;
    } catch (_) {
      queueMe = null;
      return null;
    }
  }

  async function reserve(body, button) {
    if (!session()) {
      sessionStorage.setItem(PICK_KEY(id), JSON.stringify([...selected]));
      navigate(`/login?next=${encodeURIComponent(`/showtimes/${id}`)}`);
      return;
    }
    const headers = {};
    if (needsAdmission()) {
      const token = await admissionToken();
      if (!token) {
        renderNotices();
        message('notice', queueNotice());
        return;
      }
      headers['Admission-Token'] = token;
    }
    const text = JSON.stringify(body);
    reserving = true;
    deferred.clear();
    if (button) button.disabled = true;
    // An earlier reserve whose outcome is unknown may have placed a hold: look for it before
    // trying again (with the same key and body, or, if the choice changed, a new key).
    const wasUnknown = !!(lastReserve && lastReserve.unknown);
    if (wasUnknown && (await recoverHold())) {
      reserving = false;
      deferred.clear();
      if (button) button.disabled = false;
      return;
    }
    if (closed) return;
    const same = lastReserve && lastReserve.retriable && lastReserve.text === text;
    const key = same ? lastReserve.key : newKey('reserve');
    const attempt = { text, key, retriable: false, unknown: wasUnknown };
    lastReserve = attempt;
    try {
      const hd = await post('/api/bookings/reserve', body, { idempotencyKey: key, headers });
      if (closed) return;
      startHold(hd, `${hd.seats.length === 1 ? 'Seat' : 'Seats'} ${hd.seats.join(', ')} held for you. Pay within ${Math.round(hd.expires_in_s / 60)} minutes.`);
      sessionStorage.removeItem(PICK_KEY(id));
      h2focus();
    } catch (err) {
      if (closed) return;
      const unknown = unknownOutcome(err);
      // Unknown outcomes and 429 (nothing held) are tried again with the same key and body.
      attempt.retriable = unknown || err.status === 429;
      attempt.unknown = unknown || wasUnknown;
      // The hold may be ours after all (placed by the attempt whose answer was lost).
      if ((unknown || (wasUnknown && err.slug === 'seats-taken')) && (await recoverHold())) return;
      if (closed) return;
      if (!unknown) attempt.unknown = false;
      if (err.slug === 'seats-taken' && err.seats) taken(err.seats);
      else if (err.slug === 'seats-unavailable' && err.seats) taken(err.seats, 'unavailable', 'These seats are not for sale:');
      else if (err.slug === 'admission-required') {
        dropAdmission(id);
        queueMe = null;
        renderNotices();
        message('error', queueNotice(errorText(err)));
      } else {
        if (deferred.size) taken([...deferred]);
        message('error', errorText(err));
      }
    } finally {
      reserving = false;
      deferred.clear();
      if (button) button.disabled = false;
    }
  }

  // The user's own hold on this showtime, if there is one, shown as theirs. True if a hold is
  // shown (or the page was left).
  async function recoverHold() {
    const mh = await findMyHold();
    if (closed || hold) return true;
    if (!mh) return false;
    startHold(mh, `${mh.seats.length === 1 ? 'Seat' : 'Seats'} ${mh.seats.join(', ')} held for you.`);
    sessionStorage.removeItem(PICK_KEY(id));
    h2focus();
    return true;
  }

  function h2focus() {
    const t = panel.querySelector('h2');
    if (t) {
      t.setAttribute('tabindex', '-1');
      t.focus({ preventScroll: true });
    }
  }

  function booked(b) {
    for (const l of b.seats) {
      const s = grid.seats.get(l);
      if (s) s.state = 'sold';
    }
    hold = null;
    mine = new Set();
    booking = b;
    cancel(tickTimer);
    grid.paintAll();
    refreshLegend();
    panelMessage = null;
    renderPanel();
    say.textContent = `Booked. Booking number ${b.booking_id}.`;
    h2focus();
  }

  // The hold may have been bought (a confirm whose answer was lost, or another tab): look for
  // its booking in my bookings (by hold, else by showtime and seats) and show it. True if found,
  // false if not, null if the look-up failed.
  async function settleFromBookings() {
    const hd = hold;
    if (!hd) return false;
    let b = null;
    try {
      const r = await get('/api/bookings/my-bookings?limit=50');
      const same = (x) => x.seats.length === hd.seats.length && hd.seats.every((l) => x.seats.includes(l));
      b =
        r.items.find((x) => String(x.hold_id) === String(hd.hold_id)) ||
        r.items.find((x) => x.status === 'confirmed' && String(x.showtime_id) === String(id) && same(x)) ||
        null;
    } catch (_) {
      return null;
    }
    if (closed || !b || hold !== hd) return false;
    booked(b);
    return true;
  }

  async function confirm(method, button) {
    if (!hold) return;
    const hd = hold;
    // After an attempt with an unknown outcome the same body goes again (the payment radios are
    // locked), so the same Idempotency-Key gets the first answer rather than a 422.
    const body = hd.confirmBody || { hold_id: hd.hold_id, payment: { method } };
    button.disabled = true;
    holdBusy = true;
    try {
      const b = await post('/api/bookings/confirm', body, { idempotencyKey: hd.confirmKey });
      if (closed) return;
      booked(b);
    } catch (err) {
      if (closed) return;
      button.disabled = false;
      holdBusy = false;
      if (hold !== hd) return;
      if (unknownOutcome(err)) {
        hd.confirmBody = body;
        if (await settleFromBookings()) return;
        if (closed || hold !== hd) return;
        message('error', h('div', {}, h('p', {}, errorText(err)), h('p', {}, 'Your payment may have gone through: paying again sends the same payment, which is never charged twice.')));
      } else if (err.slug === 'idempotency-key-reused' || err.slug === 'hold-ended') {
        if (await settleFromBookings()) return;
        if (!closed && hold === hd) endHold(errorText(err));
      } else if (err.slug === 'hold-expired') endHold(errorText(err));
      else message('error', errorText(err));
    } finally {
      holdBusy = false;
    }
  }

  async function release(button) {
    if (!hold) return;
    button.disabled = true;
    holdBusy = true;
    try {
      await del(`/api/holds/${hold.hold_id}`);
      if (closed) return;
      endHold('Your seats were released.', 'notice', 'free');
    } catch (err) {
      if (closed) return;
      button.disabled = false;
      if (err.slug === 'hold-ended' || err.slug === 'hold-expired' || err.slug === 'not-found') endHold(errorText(err));
      else message('error', errorText(err));
    } finally {
      holdBusy = false;
    }
  }

  // ---- waiting list (sold-out shows)
  let waitTimer = null;
  async function loadWaiting() {
    if (!session()) return;
    try {
      waiting = await get(`/api/showtimes/${id}/waitlist`);
    } catch (e) {
      // Any other failure (no answer, 503): keep what was known and ask again at the next poll.
      if (e.slug === 'not-waiting') {
        const was = waiting;
        waiting = null;
        if (was) {
          // Off the line: an offer (a hold from the waiting list) or gone.
          const offer = await findMyHold();
          if (closed) return;
          if (offer) startHold(offer, 'Seats came free for you: they are held for you now.');
          else message('notice', 'You are no longer on the waiting list.');
        }
      }
    }
    if (closed) return;
    renderPanel();
    cancel(waitTimer);
    waitTimer = waiting ? later(loadWaiting, 10000) : null;
  }

  async function joinWaiting(count, category, button) {
    if (!session()) {
      navigate(`/login?next=${encodeURIComponent(`/showtimes/${id}`)}`);
      return;
    }
    button.disabled = true;
    try {
      const body = { count };
      if (category) body.category = category;
      waiting = await post(`/api/showtimes/${id}/waitlist`, body);
      panelMessage = null;
      say.textContent = `You joined the waiting list: number ${waiting.position}.`;
      renderPanel();
      cancel(waitTimer);
      waitTimer = later(loadWaiting, 10000);
    } catch (err) {
      button.disabled = false;
      message('error', errorText(err));
    }
  }

  async function leaveWaiting(button) {
    button.disabled = true;
    try {
      await del(`/api/showtimes/${id}/waitlist`);
      waiting = null;
      cancel(waitTimer);
      waitTimer = null;
      message('notice', 'You left the waiting list.');
    } catch (err) {
      button.disabled = false;
      if (err.slug === 'not-waiting') {
        waiting = null;
        message('notice', errorText(err));
      } else message('error', errorText(err));
    }
  }

  async function findMyHold(holdId) {
    try {
      if (holdId && /^\d+$/.test(holdId)) {
        const one = await get(`/api/holds/${holdId}`);
        if (String(one.showtime_id) === String(id)) return one;
      }
      const r = await get('/api/bookings/my-holds?limit=100');
      return r.items.find((x) => String(x.showtime_id) === String(id)) || null;
    } catch (_) {
      return null;
    }
  }

  // ---- queue
  function queueNotice(extra) {
    const link = h('a', { href: `#/showtimes/${id}/queue`, class: 'button primary' }, 'Go to the queue');
    let words;
    if (!queueMe) words = 'This show sells through a virtual queue. Join the queue; when it is your turn you can choose seats here.';
    else if (queueMe.state === 'prequeue') words = `You are in the queue. Sales open ${when(queue.start_time)}; everyone who joined before then is put in a random order.`;
    else if (queueMe.state === 'waiting') words = `You are in the queue, number ${queueMe.position}. You can choose seats when it is your turn.`;
    else if (queueMe.state === 'lapsed') words = 'Your turn in the queue has passed. Join the queue again to buy.';
    else words = 'This show sells through a virtual queue.';
    return h('div', {}, extra ? h('p', {}, extra) : null, h('p', {}, words), link);
  }

  function renderNotices() {
    clear(notices);
    if (!info) return;
    if (started()) {
      notices.append(h('div', { class: 'notice' }, 'This show has started, so sales are closed. You can still look at the seat map.'));
      return;
    }
    if (queue) {
      const admitted = queueMe && queueMe.state === 'admitted';
      if (admitted) {
        notices.append(
          h('div', { class: 'success' }, `It is your turn: you may hold seats until ${when(queueMe.admitted_until, { hour: '2-digit', minute: '2-digit' })}.`),
        );
      } else {
        notices.append(h('div', { class: 'notice queue-notice' }, queueNotice()));
      }
    }
  }

  // ---- the side panel
  const add = (...nodes) => panel.append(...nodes.filter((n) => n !== null && n !== undefined && n !== false));
  function renderPanel() {
    if (closed) return;
    const focusInPanel = panel.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
    clear(panel);
    const msg = panelMessage
      ? h('div', { class: panelMessage.kind, role: panelMessage.kind === 'error' ? 'alert' : 'status' }, panelMessage.node)
      : null;
    if (booking) renderDone(msg);
    else if (hold) renderHold(msg);
    else if (loaded && soldOut() && !started()) renderSoldOut(msg);
    else renderChoose(msg);
    if (waiting && !hold && !(loaded && soldOut())) add(waitingBox());
    if (focusInPanel) {
      const el = panel.querySelector(`[data-focus-key="${focusInPanel}"]`);
      if (el) el.focus();
    }
    renderBar();
  }

  function renderBar() {
    clear(bar);
    const go = (text) =>
      h('button', { type: 'button', class: 'primary', onclick: () => { panel.scrollIntoView({ block: 'start' }); h2focus(); } }, text);
    if (hold) {
      bar.append(h('span', {}, `${hold.seats.length} held · `, h('strong', { class: 'bar-count' }, clock((hold.deadline - Date.now()) / 1000)), ' left'), go('Pay'));
    } else if (selected.size && !booking) {
      bar.append(h('span', {}, `${selected.size} ${selected.size === 1 ? 'seat' : 'seats'} · `, h('strong', {}, money(selectionAmount()))), go('Continue'));
    }
    bar.hidden = !bar.firstChild;
  }

  function renderChoose(msg) {
    add(h('h2', { id: 'panel-title' }, 'Your seats'));
    if (msg) add(msg);
    const list = [...selected].map((l) => grid.seats.get(l)).filter(Boolean);
    if (!list.length) {
      add(h('p', { class: 'muted' }, `Choose up to ${MAX_SEATS} seats on the map.`));
    } else {
      add(
        h(
          'ul',
          { class: 'picked', 'aria-label': 'Chosen seats' },
          list.map((s) =>
            h(
              'li',
              {},
              h('span', { class: 'picked-seat' }, s.label),
              h('span', { class: 'muted' }, `${s.category}${s.accessible ? ', wheelchair' : ''}${s.companion ? ', companion' : ''}`),
              h('span', { class: 'picked-price' }, money(s.price)),
              h(
                'button',
                {
                  type: 'button',
                  class: 'chip-x',
                  'aria-label': `Remove ${s.label}`,
                  onclick: () => {
                    selected.delete(s.label);
                    grid.paint(s);
                    renderPanel();
                  },
                },
                '×',
              ),
            ),
          ),
        ),
        h('p', { class: 'total' }, h('span', {}, `${list.length} ${list.length === 1 ? 'seat' : 'seats'}`), h('strong', {}, money(selectionAmount()))),
      );
    }
    const closedSales = started();
    const btn = h(
      'button',
      {
        type: 'button',
        class: 'primary wide',
        dataset: { focusKey: 'reserve' },
        disabled: !list.length || closedSales,
        onclick: () => reserve({ showtime_id: Number(id), seats: [...selected] }, btn),
      },
      !session() ? 'Log in to hold these seats' : needsAdmission() && !(queueMe && queueMe.state === 'admitted') ? 'Hold seats (queue first)' : list.length ? `Hold ${list.length === 1 ? 'this seat' : `these ${list.length} seats`}` : 'Hold seats',
    );
    add(btn);
    if (list.length) add(h('p', { class: 'muted small' }, 'Held seats stay yours for a few minutes while you pay.'));

    // Best available
    const cats = grid.counts();
    if (!cats.length) return;
    // The form's choices live across redraws of the panel (a stream event may redraw it).
    const count = h(
      'select',
      { id: 'best-count', dataset: { focusKey: 'best-count' }, onchange: () => (form.count = count.value) },
      Array.from({ length: MAX_SEATS }, (_, i) => h('option', { value: String(i + 1), selected: String(i + 1) === form.count }, String(i + 1))),
    );
    const firstFree = cats.find((c) => c.free > 0) || cats[0];
    const cat = h(
      'select',
      { id: 'best-cat', dataset: { focusKey: 'best-cat' }, onchange: () => (form.cat = cat.value) },
      cats.map((c) =>
        h('option', { value: c.name, selected: form.cat ? c.name === form.cat : c === firstFree }, `${c.name}, ${money(c.price)} (${c.free} free)`),
      ),
    );
    const acc = h('input', { type: 'checkbox', id: 'best-acc', checked: form.acc, onchange: () => (form.acc = acc.checked) });
    const go = h(
      'button',
      {
        type: 'submit',
        class: 'wide',
        dataset: { focusKey: 'best' },
        disabled: closedSales,
      },
      'Find and hold the best seats',
    );
    add(
      h(
        'form',
        {
          class: 'best',
          'aria-labelledby': 'best-title',
          onsubmit: (ev) => {
            ev.preventDefault();
            const body = { showtime_id: Number(id), count: Number(count.value), category: cat.value };
            if (acc.checked) body.accessible = true;
            reserve(body, go);
          },
        },
        h('h3', { id: 'best-title' }, 'Or: the best seats together'),
        h(
          'div',
          { class: 'best-fields' },
          h('div', { class: 'field' }, h('label', { for: 'best-count' }, 'Number of seats'), count),
          h('div', { class: 'field grow' }, h('label', { for: 'best-cat' }, 'Category'), cat),
        ),
        h('div', { class: 'field check' }, h('label', {}, acc, 'Wheelchair spaces and companion seats may be used')),
        go,
      ),
    );
  }

  function renderHold(msg) {
    const left = (hold.deadline - Date.now()) / 1000;
    const methodName = 'pay-method';
    // A payment whose answer was lost is sent again as it was: its method cannot change.
    const sent = hold.confirmBody ? hold.confirmBody.payment.method : null;
    const radios = METHODS.map(([v, t]) =>
      h(
        'label',
        { class: 'method' },
        h('input', { type: 'radio', name: methodName, value: v, checked: v === (sent || form.method), disabled: !!sent, onchange: () => (form.method = v) }),
        h('span', {}, t),
      ),
    );
    const pay = h(
      'button',
      {
        type: 'submit',
        class: 'primary wide',
        dataset: { focusKey: 'pay' },
      },
      `Pay ${money(hold.amount)}`,
    );
    const rel = h('button', { type: 'button', class: 'wide', dataset: { focusKey: 'release' }, onclick: () => release(rel) }, 'Release these seats');
    add(
      h('h2', { id: 'panel-title' }, hold.source === 'waitlist' ? 'Seats from the waiting list, held for you' : 'Seats held for you'),
      msg,
      h('ul', { class: 'picked', 'aria-label': 'Held seats' }, hold.seats.map((l) => {
        const s = grid.seats.get(l);
        return h('li', {}, h('span', { class: 'picked-seat' }, l), h('span', { class: 'muted' }, s ? s.category : ''), h('span', { class: 'picked-price' }, s ? money(s.price) : ''));
      })),
      h('p', { class: 'total' }, h('span', {}, 'Total'), h('strong', {}, money(hold.amount))),
      h(
        'div',
        { class: `timer${left <= 60 ? ' urgent' : ''}` },
        h('span', {}, 'Time left to pay'),
        h('span', { class: 'countdown', role: 'timer', 'aria-label': 'Time left to pay' }, clock(left)),
      ),
      h(
        'form',
        {
          class: 'pay',
          onsubmit: (ev) => {
            ev.preventDefault();
            const m = panel.querySelector(`input[name=${methodName}]:checked`);
            confirm(m ? m.value : 'upi', pay);
          },
        },
        h('fieldset', { class: 'methods' }, h('legend', {}, 'Pay with'), radios),
        h('p', { class: 'muted small' }, 'Payment is simulated: nothing is charged.'),
        pay,
      ),
      rel,
    );
  }

  function renderDone(msg) {
    const b = booking;
    add(
      h('h2', { id: 'panel-title' }, 'Booked'),
      msg,
      h(
        'div',
        { class: 'success', role: 'status' },
        h('p', {}, h('strong', {}, `Booking ${b.booking_id}`), ' is confirmed.'),
        h('p', {}, `Seats ${b.seats.join(', ')}, ${money(b.amount)} paid by ${b.payment_method.toUpperCase()}.`),
      ),
      h('p', {}, h('a', { href: '#/bookings', class: 'button primary wide' }, 'See my bookings')),
      h('button', { type: 'button', class: 'wide', onclick: () => { booking = null; renderPanel(); grid.focus(); } }, 'Choose more seats'),
    );
  }

  function renderSoldOut(msg) {
    add(h('h2', { id: 'panel-title' }, 'Sold out'));
    if (msg) add(msg);
    if (waiting) {
      add(waitingBox());
      return;
    }
    add(
      h('p', {}, 'Every seat is held or sold. Join the waiting list: when seats come free, the first request in line that fits gets them held for a limited time, and they show up here and in My bookings.'),
    );
    const count = h('select', { id: 'wl-count' }, Array.from({ length: MAX_SEATS }, (_, i) => h('option', { value: String(i + 1) }, String(i + 1))));
    const cat = h('select', { id: 'wl-cat' }, h('option', { value: '' }, 'Any category'), grid.counts().map((c) => h('option', { value: c.name }, `${c.name}, ${money(c.price)}`)));
    const join = h('button', { type: 'submit', class: 'primary wide', dataset: { focusKey: 'wl-join' } }, session() ? 'Join the waiting list' : 'Log in to join the waiting list');
    add(
      h(
        'form',
        {
          class: 'best',
          onsubmit: (ev) => {
            ev.preventDefault();
            joinWaiting(Number(count.value), cat.value, join);
          },
        },
        h('div', { class: 'best-fields' }, h('div', { class: 'field' }, h('label', { for: 'wl-count' }, 'Number of seats'), count), h('div', { class: 'field grow' }, h('label', { for: 'wl-cat' }, 'Category'), cat)),
        join,
      ),
    );
  }

  function waitingBox() {
    const w = waiting;
    const leave = h('button', { type: 'button', dataset: { focusKey: 'wl-leave' }, onclick: () => leaveWaiting(leave) }, 'Leave the waiting list');
    return h(
      'div',
      { class: 'waiting notice' },
      h('p', { class: 'wl-pos' }, h('strong', {}, `You are number ${w.position} on the waiting list`), ` (${w.waiting} waiting).`),
      h('p', {}, `You asked for ${w.count} ${w.count === 1 ? 'seat' : 'seats'}${w.category ? ` in ${w.category}` : ' in any category'}. If seats come free for you, they are held for you for a limited time: this page shows them.`),
      leave,
    );
  }

  function refreshLegend() {
    clear(legendBox).append(legend(grid.counts()));
    if (!hold && !booking) {
      // The sold-out panel comes and goes with the free seats.
      const isSold = soldOut();
      if (isSold !== refreshLegend.lastSold) {
        refreshLegend.lastSold = isSold;
        renderPanel();
      }
    }
  }

  // ---- the live stream
  function setLive(state, err) {
    const words = {
      connecting: 'Connecting…',
      open: 'Live',
      retrying: 'Reconnecting…',
      closed: 'Not live',
      failed: 'Not live',
    }[state];
    live.className = `live live-${state}`;
    live.textContent = words;
    live.title = state === 'failed' && err ? errorText(err) : state === 'open' ? 'Seat changes appear as they happen' : '';
  }

  function applyChanges(list) {
    const lost = [];
    let mineGone = 0;
    let mineSold = 0;
    for (const c of list) {
      const seat = grid.seats.get(c.label);
      if (!seat) continue;
      seat.state = c.state;
      if (selected.has(c.label) && c.state !== 'free') {
        if (reserving) deferred.add(c.label);
        else lost.push(c.label);
      }
      if (mine.has(c.label) && c.state === 'free') mineGone++;
      if (mine.has(c.label) && c.state === 'sold') mineSold++;
      grid.paint(seat);
    }
    if (lost.length && lastReserve && lastReserve.unknown) {
      // A reserve whose answer was lost may have held these seats for this user: look first.
      recoverHold().then((found) => {
        if (!found) taken(lost, 'held');
      });
    } else if (lost.length) taken(lost, 'held');
    // Seats came free while on the waiting list: an offer may be ours; ask soon, not in 10 s.
    if (waiting && list.some((c) => c.state === 'free' || c.state === 'held')) {
      cancel(waitTimer);
      waitTimer = later(loadWaiting, 400);
    }
    if (hold && !holdBusy && mineSold && hold.seats.every((l) => grid.seats.get(l) && grid.seats.get(l).state === 'sold')) {
      // Bought: by a confirm whose answer was lost, or in another tab. Show the booking.
      const hd = hold;
      settleFromBookings().then((found) => {
        if (found === false && !closed && hold === hd) endHold('Your seats have been bought (perhaps in another tab): see My bookings.', 'notice');
      });
    }
    if (hold && !holdBusy && mineGone && hold.seats.every((l) => grid.seats.get(l) && grid.seats.get(l).state === 'free')) {
      // The server's clock ends a hold a little before or after this page's countdown does.
      const nearEnd = hold.deadline - Date.now() < 3000;
      endHold(nearEnd ? EXPIRED : 'Your hold has ended (it was released or bought elsewhere); the seats are on sale again.');
      if (nearEnd) say.textContent = 'Your hold ran out of time.';
    }
    refreshLegend();
  }

  function openStream() {
    if (seatStream) seatStream.close();
    seatStream = stream(`/api/seats/${id}/events`, {
      onEvent(name, data) {
        if (closed) return false;
        if (name === 'snapshot') {
          applyMap(data);
        } else if (name === 'seats') {
          applyChanges(data.seats || []);
        } else if (name === 'end') {
          if (data.reason === 'showtime-deleted') {
            clear(notices).append(errorBox('This showtime was removed. Choose another one from the showtimes.'));
            setLive('closed');
            return false;
          }
          // Any other end (too slow, the showtime changed, shutdown): start again from a
          // fresh snapshot.
          later(() => openStream(), data.reason === 'shutdown' ? 2000 : 200);
          return false;
        }
        return true;
      },
      onState(state, err) {
        if (!closed) setLive(state, err);
      },
    });
  }

  function applyMap(map) {
    const rebuilt = grid.load(map);
    for (const l of [...selected]) {
      const s = grid.seats.get(l);
      if (!s) selected.delete(l);
      else if (s.state !== 'free' && !mine.has(l)) taken([l]);
    }
    if (rebuilt) {
      clear(mapBox).append(
        h('div', { class: 'mapinner' }, h('div', { class: 'screen', 'aria-hidden': 'true' }, h('span', {}, 'Screen this way')), grid.el),
      );
      mapBox.removeAttribute('aria-busy');
      fitSeats();
      // A map wider than its box starts centred, the screen's middle in view.
      mapBox.scrollLeft = Math.max(0, (mapBox.scrollWidth - mapBox.clientWidth) / 2);
    }
    loaded = true;
    refreshLegend();
    renderPanel();
  }

  // Seat size: as large as fits, up to 34 px, else the map scrolls inside its box. At least
  // 20 px 4 px apart (targets 24 px apart: WCAG 2.5.8) with a mouse; 26 px on a phone's width.
  function fitSeats() {
    const cols = Number(grid.el.style.getPropertyValue('--cols')) + 2;
    const avail = mapBox.clientWidth - 24;
    const gap = 4;
    const least = window.matchMedia('(max-width: 700px), (pointer: coarse)').matches ? 26 : 20;
    const size = Math.max(least, Math.min(34, Math.floor((avail + gap) / cols) - gap));
    mapBox.style.setProperty('--seat', `${size}px`);
    mapBox.style.setProperty('--lab', `${Math.max(size, 22)}px`);
  }
  const ro = new ResizeObserver(() => {
    if (loaded) fitSeats();
  });
  ro.observe(mapBox);

  // ---- start
  (async () => {
    try {
      const [d, map] = await Promise.all([details(id), get(`/api/seats/${id}`)]);
      if (closed) return;
      info = d;
      const words = describe(d);
      h1.textContent = words.title;
      document.title = `${words.title}: seats · usher`;
      clear(sub).append(
        h('span', { class: 'sm-when' }, when(d.showtime.start_time)),
        words.place ? h('span', {}, ` · ${words.place}`) : null,
        words.screen ? h('span', {}, ` · ${words.screen}`) : null,
        ' · ',
        h('a', { href: '#/' }, 'Other showtimes'),
      );
      applyMap(map);
      openStream();
      // Seats chosen before a login (restored once).
      try {
        const picked = JSON.parse(sessionStorage.getItem(PICK_KEY(id)) || '[]');
        sessionStorage.removeItem(PICK_KEY(id));
        for (const l of picked.slice(0, MAX_SEATS)) {
          const s = grid.seats.get(l);
          if (s && s.state === 'free') selected.add(l);
        }
        if (picked.length) grid.paintAll();
      } catch (_) {
        /* nothing to restore */
      }
      // A queue? (public) and, logged in, my place in it, my holds here, my waiting place.
      try {
        queue = await get(`/api/showtimes/${id}/queue`);
      } catch (e) {
        queue = null;
      }
      if (session()) {
        const jobs = [findMyHold(q.get('hold')), get(`/api/showtimes/${id}/waitlist`).catch(() => null)];
        if (queue) jobs.push(get(`/api/showtimes/${id}/queue/me`).catch(() => null));
        const [mh, w, me] = await Promise.all(jobs);
        if (closed) return;
        waiting = w;
        if (queue) {
          queueMe = me || null;
          saveAdmission(id, queueMe);
        }
        if (mh) startHold(mh);
        if (waiting) waitTimer = later(loadWaiting, 10000);
      }
      renderNotices();
      renderPanel();
    } catch (err) {
      if (closed) return;
      mapBox.removeAttribute('aria-busy');
      clear(mapBox).append(errorBox(err), h('p', {}, h('a', { href: '#/' }, 'See the showtimes')));
      if (err.slug === 'not-found') h1.textContent = 'Showtime not found';
      setLive('closed');
    }
  })();

  renderPanel();
  return () => {
    closed = true;
    if (seatStream) seatStream.close();
    ro.disconnect();
    for (const t of timers) clearTimeout(t);
  };
}
