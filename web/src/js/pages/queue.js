// The virtual queue of one showtime (#/showtimes/:id/queue): join, then watch your place and
// the estimated wait live (GET /api/showtimes/:id/queue/events, read with api.stream so the
// token stays in the Authorization header), until it is your turn: the admission token is then
// kept in sessionStorage for this showtime and the seat map uses it. Leave at any time.

import { get, post, del, stream, errorText } from '../api.js';
import { h, clear, when, errorBox, pageTitle } from '../ui.js';
import { details, describe, saveAdmission, dropAdmission, waitWords } from './catalog.js';

const hm = { hour: '2-digit', minute: '2-digit' };

export function render(root, { params }) {
  const id = params[0];
  let closed = false;
  let info = null; // the queue (GET /api/showtimes/:id/queue)
  let me = null; // my place (queue/me or a stream event), or null
  let qs = null; // the queue stream
  let liveState = 'closed';
  let lastState = null;
  let error = null;

  const h1 = pageTitle(root, 'Queue');
  const sub = h('p', { class: 'sm-sub muted' });
  const box = h('section', { class: 'queue-box card', 'aria-labelledby': 'queue-status', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  const say = h('div', { class: 'visually-hidden', 'aria-live': 'polite' });
  const about = h('div', { class: 'queue-about' });
  root.append(sub, box, about, say);

  function announce(text) {
    say.textContent = text;
  }

  function openStream() {
    if (closed) return; // called after an await: the page may have been left meanwhile
    if (qs) qs.close();
    qs = stream(`/api/showtimes/${id}/queue/events`, {
      onEvent(name, data) {
        if (closed) return false;
        if (name === 'queue') {
          me = data;
          error = null;
          if (me.state === 'admitted') saveAdmission(id, me);
          draw();
          // The server ends the stream after admitted or lapsed.
          return me.state !== 'admitted' && me.state !== 'lapsed';
        }
        if (name === 'end') {
          if (data.reason === 'no-queue') {
            info = null;
            me = null;
            dropAdmission(id);
          }
          draw();
          return false;
        }
        return true;
      },
      onState(state, err) {
        if (closed) return;
        liveState = state;
        if (state === 'failed') {
          if (err && (err.slug === 'not-waiting' || err.slug === 'no-queue')) {
            me = null;
            if (err.slug === 'no-queue') info = null;
          } else error = err;
        }
        draw();
      },
    });
  }

  async function join(button) {
    button.disabled = true;
    error = null;
    try {
      me = await post(`/api/showtimes/${id}/queue/join`, {});
      if (me.state === 'admitted') saveAdmission(id, me);
      draw();
      if (me.state !== 'admitted') openStream();
    } catch (e) {
      error = e;
      button.disabled = false;
      draw();
    }
  }

  async function leave(button) {
    button.disabled = true;
    try {
      await del(`/api/showtimes/${id}/queue/me`);
    } catch (e) {
      if (e.slug !== 'not-waiting') {
        error = e;
        button.disabled = false;
        draw();
        return;
      }
    }
    if (qs) qs.close();
    qs = null;
    me = null;
    dropAdmission(id);
    announce('You left the queue.');
    draw();
  }

  const seatsLink = (text, primary) => h('a', { href: `#/showtimes/${id}`, class: `button${primary ? ' primary' : ''}` }, text);

  function draw() {
    if (closed) return;
    const focusKey = box.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
    clear(box);
    box.removeAttribute('aria-busy');
    const state = me ? me.state : info ? 'none' : 'no-queue';
    if (state !== lastState) {
      const words = {
        prequeue: 'You are in the queue. Sales have not opened yet.',
        waiting: 'You are in the queue.',
        admitted: 'It is your turn: choose your seats now.',
        lapsed: 'Your turn has passed.',
      }[state];
      if (words && lastState !== null) announce(words);
      lastState = state;
    }
    const joinBtn = (text) =>
      h('button', { type: 'button', class: 'primary big', dataset: { focusKey: 'join' }, onclick: (ev) => join(ev.currentTarget) }, text);
    const leaveBtn = () => h('button', { type: 'button', dataset: { focusKey: 'leave' }, onclick: (ev) => leave(ev.currentTarget) }, 'Leave the queue');
    const liveTag = qs && me && (me.state === 'waiting' || me.state === 'prequeue')
      ? h('span', { class: `live live-${liveState}` }, liveState === 'open' ? 'Live' : liveState === 'retrying' ? 'Reconnecting…' : liveState === 'failed' ? 'Not live' : 'Connecting…')
      : null;

    if (state === 'no-queue') {
      box.append(
        h('h2', { id: 'queue-status' }, 'No queue for this show'),
        h('p', {}, 'Seats for this show are on sale directly.'),
        seatsLink('Choose seats', true),
      );
    } else if (state === 'none') {
      box.append(
        h('h2', { id: 'queue-status' }, 'Join the queue to buy'),
        h('p', {}, info.started
          ? `Sales are open. People are let in ${rate(info.rate_per_second)}, in the order they joined.`
          : `Sales open ${when(info.start_time)}. Everyone who joins before then is put in a random order when sales open, so there is no need to rush.`),
        h('p', { class: 'muted' }, `${info.waiting} waiting now.`),
        joinBtn('Join the queue'),
      );
    } else if (state === 'prequeue') {
      box.append(
        h('div', { class: 'qhead' }, h('h2', { id: 'queue-status' }, 'You are in the queue'), liveTag),
        h('p', { class: 'qbig' }, h('span', { class: 'qlabel' }, 'Sales open'), h('strong', {}, when(me.start_time))),
        h('p', {}, 'When sales open, everyone who joined early is put in a random order. Your place appears here then.'),
        h('p', {}, h('span', { class: 'qlabel' }, 'Estimated wait '), h('strong', { class: 'qwait' }, waitWords(me.estimated_wait_s))),
        h('p', { class: 'muted' }, 'Keep this page open: it updates by itself.'),
        leaveBtn(),
      );
    } else if (state === 'waiting') {
      box.append(
        h('div', { class: 'qhead' }, h('h2', { id: 'queue-status' }, 'You are in the queue'), liveTag),
        h(
          'div',
          { class: 'qstats' },
          h('p', { class: 'qbig' }, h('span', { class: 'qlabel' }, 'Your place'), h('strong', { class: 'qpos' }, String(me.position))),
          h('p', { class: 'qbig' }, h('span', { class: 'qlabel' }, 'Estimated wait'), h('strong', { class: 'qwait' }, waitWords(me.estimated_wait_s))),
        ),
        h('p', { class: 'muted' }, `People are let in ${rate(me.rate_per_second)}. Keep this page open: it updates by itself.`),
        leaveBtn(),
      );
    } else if (state === 'admitted') {
      box.append(
        h('h2', { id: 'queue-status' }, 'It is your turn'),
        h('div', { class: 'success' }, h('p', {}, `Choose your seats before ${when(me.admitted_until, hm)}. After that, your turn passes to the next people.`)),
        h('div', { class: 'row' }, seatsLink('Choose seats', true), leaveBtn()),
      );
    } else if (state === 'lapsed') {
      box.append(
        h('h2', { id: 'queue-status' }, 'Your turn has passed'),
        h('p', {}, 'You did not hold seats in time. You can join again: you go to the back of the queue.'),
        joinBtn('Join again'),
      );
    }
    if (error) box.append(errorBox(errorText(error)));
    if (focusKey) {
      const el = box.querySelector(`[data-focus-key="${focusKey}"]`);
      if (el) el.focus();
    }
  }

  function rate(n) {
    return n === 1 ? 'one a second' : `${n} a second`;
  }

  (async () => {
    try {
      const d = await details(id);
      if (closed) return;
      const words = describe(d);
      h1.textContent = `Queue: ${words.title}`;
      document.title = `Queue: ${words.title} · usher`;
      clear(sub).append(
        h('span', { class: 'sm-when' }, when(d.showtime.start_time)),
        words.place ? ` · ${words.place}` : '',
        ' · ',
        h('a', { href: `#/showtimes/${id}` }, 'Seat map'),
      );
    } catch (e) {
      if (closed) return;
      clear(box).append(errorBox(e), h('p', {}, h('a', { href: '#/' }, 'See the showtimes')));
      box.removeAttribute('aria-busy');
      return;
    }
    try {
      info = await get(`/api/showtimes/${id}/queue`);
    } catch (e) {
      info = null;
      if (e.slug !== 'no-queue' && e.slug !== 'not-found') error = e;
    }
    if (info) {
      try {
        me = await get(`/api/showtimes/${id}/queue/me`);
        if (me.state === 'admitted') saveAdmission(id, me);
        if (me.state === 'waiting' || me.state === 'prequeue') openStream();
      } catch (e) {
        me = null;
        if (e.slug !== 'not-waiting') error = e;
      }
    }
    if (closed) return;
    about.append(
      h('h2', {}, 'How the queue works'),
      h(
        'ul',
        {},
        h('li', {}, 'People who join before sales open are put in a random order when they open; after that it is first come, first served.'),
        h('li', {}, info && info.admission_window_s
          ? `When it is your turn you have ${Math.round(info.admission_window_s / 60)} minutes to hold seats; held seats then stay yours for a few minutes while you pay.`
          : 'When it is your turn you have a few minutes to hold seats.'),
        h('li', {}, 'Leaving and joining again puts you at the back.'),
      ),
    );
    draw();
  })();

  return () => {
    closed = true;
    if (qs) qs.close();
  };
}
