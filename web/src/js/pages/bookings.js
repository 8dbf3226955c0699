// My bookings (#/bookings): seats on hold (GET /api/bookings/my-holds) with the time left, to
// pay for or release, and bookings (GET /api/bookings/my-bookings, newest first, 20 a page),
// which can be cancelled before the show: the refund the policy gives is shown before (an
// estimate from the policy) and after (the box office's answer).

import { get, post, del } from '../api.js';
import { h, clear, money, when, errorBox, confirmDialog, pageTitle, toast } from '../ui.js';
import { details, describe, clock } from './catalog.js';

const PER_PAGE = 20;
const HOUR = 3600 * 1000;

// The refund policy (docs/api.md, "POST /api/bookings/:id/cancel"): 100 % at 24 hours or more
// before the start, 50 % at 2 hours or more, nothing after that.
export function refundShare(startMs, now = Date.now()) {
  const left = startMs - now;
  if (left >= 24 * HOUR) return 1;
  if (left >= 2 * HOUR) return 0.5;
  return 0;
}

const pct = (share) => `${Math.round(share * 100)} %`;

export function render(root) {
  let closed = false;
  pageTitle(root, 'My bookings');
  const holdsList = h('ul', { class: 'blist', 'aria-labelledby': 'holds-title' });
  const holdsBox = h('section', { class: 'holds' }, h('h2', { id: 'holds-title' }, 'Seats on hold'), h('p', { class: 'muted' }, 'Loading…'), holdsList);
  const bookList = h('ul', { class: 'blist', 'aria-labelledby': 'bookings-title' });
  const more = h('div', { class: 'more' });
  const bookBox = h(
    'section',
    { class: 'bookings' },
    h('h2', { id: 'bookings-title' }, 'Bookings'),
    h(
      'p',
      { class: 'policy' },
      'Cancelling gives a full refund 24 hours or more before the show, half from 2 hours before, and nothing in the last 2 hours. A show that has started cannot be cancelled.',
    ),
    h('p', { class: 'muted status' }, 'Loading…'),
    bookList,
    more,
  );
  const say = h('div', { class: 'visually-hidden', 'aria-live': 'polite' });
  root.append(holdsBox, bookBox, say);

  // Showtime details fill in when they arrive (cached: one look-up per showtime).
  function showInfo(showtimeId, into) {
    details(showtimeId)
      .then((d) => {
        if (closed) return;
        const w = describe(d);
        clear(into).append(
          h('a', { class: 'b-title', href: `#/showtimes/${showtimeId}` }, w.title),
          h('span', { class: 'b-where muted' }, [w.place, w.screen].filter(Boolean).join(' · ')),
        );
      })
      .catch(() => {
        clear(into).append(h('span', { class: 'b-title' }, `Showtime ${showtimeId}`));
      });
  }

  // ---- holds, with a countdown each
  const countdowns = new Map(); // element -> deadline ms
  const timer = setInterval(() => {
    for (const [el, deadline] of countdowns) {
      const left = (deadline - Date.now()) / 1000;
      if (left <= 0) {
        el.textContent = 'ran out of time';
        el.closest('li').classList.add('ended');
        el.closest('li').querySelectorAll('button, a.button').forEach((b) => b.remove());
        countdowns.delete(el);
      } else el.textContent = `${clock(left)} left`;
    }
  }, 1000);

  function holdItem(hd) {
    const where = h('div', { class: 'b-what' }, h('span', { class: 'b-title' }, `Showtime ${hd.showtime_id}`));
    showInfo(hd.showtime_id, where);
    const left = h('span', { class: 'b-left', role: 'timer' }, `${clock(hd.expires_in_s)} left`);
    countdowns.set(left, Date.now() + hd.expires_in_s * 1000);
    const li = h('li', { class: 'bcard hold', dataset: { hold: String(hd.hold_id) } });
    const release = h(
      'button',
      {
        type: 'button',
        onclick: async () => {
          release.disabled = true;
          try {
            await del(`/api/holds/${hd.hold_id}`);
            countdowns.delete(left);
            li.remove();
            say.textContent = `Seats ${hd.seats.join(', ')} released.`;
            toast(`Seats ${hd.seats.join(', ')} released.`, 'ok');
            if (!holdsList.children.length) drawNoHolds();
          } catch (e) {
            release.disabled = false;
            li.append(errorBox(e));
          }
        },
      },
      'Release',
    );
    li.append(
      where,
      h(
        'div',
        { class: 'b-facts' },
        h('span', {}, h('span', { class: 'muted' }, 'Seats '), h('strong', {}, hd.seats.join(', '))),
        h('span', {}, h('span', { class: 'muted' }, 'Amount '), h('strong', {}, money(hd.amount))),
        hd.source === 'waitlist' ? h('span', { class: 'badge ok' }, 'Offered from the waiting list') : null,
        left,
      ),
      h(
        'div',
        { class: 'b-actions' },
        h('a', { class: 'button primary', href: `#/showtimes/${hd.showtime_id}?hold=${hd.hold_id}` }, 'Continue to payment'),
        release,
      ),
    );
    return li;
  }

  function drawNoHolds() {
    clear(holdsList);
    holdsBox.querySelector('p').textContent = 'No seats on hold right now.';
    holdsBox.querySelector('p').hidden = false;
  }

  async function loadHolds() {
    try {
      const r = await get('/api/bookings/my-holds?limit=100');
      if (closed) return;
      const p = holdsBox.querySelector('p');
      if (!r.items.length) {
        drawNoHolds();
        return;
      }
      p.textContent = 'Held seats are yours only until their time runs out: pay for them or release them.';
      for (const hd of r.items) holdsList.append(holdItem(hd));
    } catch (e) {
      if (closed) return;
      clear(holdsBox.querySelector('p')).append(errorBox(e));
    }
  }

  // ---- bookings
  function bookingItem(b) {
    const where = h('div', { class: 'b-what' }, h('span', { class: 'b-title' }, `Showtime ${b.showtime_id}`));
    showInfo(b.showtime_id, where);
    const li = h('li', { class: `bcard booking ${b.status}`, dataset: { booking: String(b.booking_id) } });
    const outcome = h('div', { class: 'b-outcome' });
    const startMs = Date.parse(b.start_time);
    const badge = h('span', { class: `badge ${b.status === 'confirmed' ? 'ok' : 'bad'}` }, b.status === 'confirmed' ? 'Confirmed' : 'Cancelled');
    const facts = h(
      'div',
      { class: 'b-facts' },
      h('span', {}, h('span', { class: 'muted' }, 'Show '), h('strong', {}, when(b.start_time))),
      h('span', {}, h('span', { class: 'muted' }, 'Seats '), h('strong', {}, b.seats.join(', '))),
      h('span', {}, h('span', { class: 'muted' }, 'Paid '), h('strong', {}, money(b.amount)), ` by ${b.payment_method.toUpperCase()}`),
      h('span', { class: 'muted' }, `Booking ${b.booking_id}, booked ${when(b.confirmed_at)}`),
    );
    const actions = h('div', { class: 'b-actions' });
    if (b.status === 'cancelled') {
      outcome.append(refundLine(b));
    } else if (startMs <= Date.now()) {
      actions.append(h('span', { class: 'muted' }, 'The show has started: it can no longer be cancelled.'));
    } else {
      const cancel = h(
        'button',
        {
          type: 'button',
          class: 'danger',
          'aria-label': `Cancel booking ${b.booking_id}`,
          onclick: () => cancelBooking(b, li, cancel),
        },
        'Cancel booking',
      );
      actions.append(cancel);
    }
    li.append(h('div', { class: 'b-top' }, where, badge), facts, outcome, actions);
    return li;
  }

  function refundLine(b) {
    const share = b.amount ? b.refund / b.amount : 0;
    return h(
      'p',
      { class: 'refund' },
      `Cancelled ${when(b.cancelled_at)}. Refund: `,
      h('strong', {}, money(b.refund)),
      b.amount ? ` (${pct(share)} of ${money(b.amount)})` : '',
      '.',
    );
  }

  async function cancelBooking(b, li, button) {
    const startMs = Date.parse(b.start_time);
    const share = refundShare(startMs);
    const hoursLeft = (startMs - Date.now()) / HOUR;
    const why =
      share === 1
        ? 'The show is 24 hours or more away, so the whole amount is refunded.'
        : share === 0.5
          ? `The show starts in about ${Math.floor(hoursLeft)} hours: less than 24 hours away, so half is refunded.`
          : 'The show starts in less than 2 hours, so nothing is refunded.';
    const body = h(
      'div',
      {},
      h('p', {}, `Seats ${b.seats.join(', ')} go back on sale.`),
      h('p', {}, 'Refund: ', h('strong', {}, `${money(Math.floor(b.amount * share))} (${pct(share)})`), '. ', why),
      h('p', { class: 'muted small' }, 'The box office works the refund out when you confirm; the answer is shown after.'),
    );
    const ok = await confirmDialog(`Cancel booking ${b.booking_id}?`, body, 'Cancel the booking', 'Keep it');
    if (!ok || closed) return;
    button.disabled = true;
    try {
      const c = await post(`/api/bookings/${b.booking_id}/cancel`, {});
      if (closed) return;
      const next = bookingItem(c);
      li.replaceWith(next);
      const words = `Booking ${c.booking_id} cancelled. Refund: ${money(c.refund)}.`;
      next.querySelector('.b-outcome').prepend(h('div', { class: 'success', role: 'status' }, words));
      say.textContent = words;
    } catch (e) {
      if (closed) return;
      button.disabled = false;
      li.querySelector('.b-outcome').append(errorBox(e));
    }
  }

  let page = 0;
  let total = 0;
  async function loadBookings() {
    const status = bookBox.querySelector('.status');
    clear(more);
    try {
      const r = await get(`/api/bookings/my-bookings?page=${page + 1}&limit=${PER_PAGE}`);
      if (closed) return;
      page++;
      total = r.total;
      for (const b of r.items) bookList.append(bookingItem(b));
      status.textContent = total === 0 ? 'No bookings yet.' : `${total} ${total === 1 ? 'booking' : 'bookings'}.`;
      if (total === 0) status.append(' ', h('a', { href: '#/' }, 'Find a show'));
      if (bookList.children.length < total) {
        more.append(
          h(
            'button',
            { type: 'button', onclick: () => loadBookings() },
            `Show more (${total - bookList.children.length} more)`,
          ),
        );
      }
    } catch (e) {
      if (closed) return;
      clear(status).append(errorBox(e));
      more.append(h('button', { type: 'button', onclick: () => loadBookings() }, 'Try again'));
    }
  }

  loadHolds();
  loadBookings();
  return () => {
    closed = true;
    clearInterval(timer);
  };
}
