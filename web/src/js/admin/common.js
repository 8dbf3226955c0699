// What the admin pages share: whole lists fetched page by page (bounded), field errors shown
// next to the input the server named, times and money converted for forms, a pager, and small
// caches of catalog entities for the live feed.

import { get, ApiError, errorText } from '../api.js';
import { h, clear } from '../ui.js';

// Every item of a paginated list, 100 at a time, at most `max` items (the catalog of one
// usherd is small; a larger one is cut, and `truncated` says so).
export async function fetchAll(path, params = {}, max = 1000) {
  const items = [];
  let total = 0;
  for (let page = 1; items.length < max; page++) {
    const q = new URLSearchParams({ ...params, page: String(page), limit: '100' });
    const r = await get(`${path}?${q}`);
    total = r.total;
    items.push(...r.items);
    if (r.items.length < 100 || items.length >= r.total) break;
  }
  items.truncated = total > items.length;
  return items;
}

// "2026-11-21T18:30" (an <input type=datetime-local>, the viewer's time zone) to
// "2026-11-21T13:00:00Z"; null when empty or not a time.
export function localToUtc(value) {
  if (!value) return null;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return null;
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// An RFC 3339 UTC time to the value of an <input type=datetime-local> in the viewer's zone.
export function utcToLocal(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function timeZoneName() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || 'local time';
  } catch (_) {
    return 'local time';
  }
}

// "250" or "250.50" rupees to paise; NaN when it is not an amount.
export function rupeesToPaise(text) {
  const s = String(text).trim().replace(/,/g, '');
  if (!/^\d+(\.\d{1,2})?$/.test(s)) return NaN;
  return Math.round(Number(s) * 100);
}

export function paiseToRupees(minor) {
  const r = minor / 100;
  return Number.isInteger(r) ? String(r) : r.toFixed(2);
}

// Field errors: register inputs under the names the server uses in `field` (`name`,
// `prices.gold`, `layout.rows[3].seats`); show(err) puts an invalid-field (or a
// unknown-reference / in-use naming a field) next to its input, marks it aria-invalid and
// focuses it. A name the form does not have is looked up by its parents
// (`layout.rows[3].aisles_after[1]` → `layout.rows[3].aisles_after` → `layout.rows[3]`).
export function fieldErrors() {
  const inputs = new Map();
  let shown = [];
  let n = 0;
  const api = {
    add(name, input, label) {
      inputs.set(name, { input, label: label || name });
      return input;
    },
    remove(prefix) {
      for (const k of [...inputs.keys()]) if (k === prefix || k.startsWith(prefix)) inputs.delete(k);
    },
    clear() {
      for (const { input, msg, describedBy } of shown) {
        msg.remove();
        input.removeAttribute('aria-invalid');
        if (describedBy) input.setAttribute('aria-describedby', describedBy);
        else input.removeAttribute('aria-describedby');
      }
      shown = [];
    },
    find(name) {
      let k = name;
      while (k) {
        if (inputs.has(k)) return { name: k, ...inputs.get(k) };
        const m = /^(.*)(\[\d+\]|\.[^.[\]]+)$/.exec(k);
        if (!m) break;
        k = m[1];
      }
      return null;
    },
    // Shows a message next to the input registered as `name`; returns the entry or null.
    mark(name, text) {
      const f = api.find(name);
      if (!f) return null;
      const id = `ferr-${++n}`;
      const msg = h('p', { class: 'field-error', id }, text);
      const describedBy = f.input.getAttribute('aria-describedby');
      f.input.setAttribute('aria-invalid', 'true');
      f.input.setAttribute('aria-describedby', describedBy ? `${describedBy} ${id}` : id);
      f.input.after(msg);
      const entry = { input: f.input, msg, describedBy };
      shown.push(entry);
      // Editing the field takes its message away (the next save checks it again).
      const fixed = () => {
        f.input.removeEventListener('input', fixed);
        f.input.removeEventListener('change', fixed);
        if (!shown.includes(entry)) return;
        shown = shown.filter((x) => x !== entry);
        msg.remove();
        f.input.removeAttribute('aria-invalid');
        if (describedBy) f.input.setAttribute('aria-describedby', describedBy);
        else f.input.removeAttribute('aria-describedby');
      };
      f.input.addEventListener('input', fixed);
      f.input.addEventListener('change', fixed);
      return f;
    },
    // err: an ApiError. Returns true when it was shown next to a field.
    show(err) {
      if (!(err instanceof ApiError) || !err.field) return false;
      const detail = err.detail ? err.detail.charAt(0).toUpperCase() + err.detail.slice(1) : err.title;
      const f = api.mark(err.field, `${detail}.`.replace(/\.\.$/, '.'));
      if (!f) return false;
      f.input.focus();
      return f;
    },
  };
  return api;
}

// Runs a form's save: clears old errors, shows an invalid-field next to its input (and a
// summary in `general`), anything else in words in `general`. Resolves to fn's value or
// undefined on error.
export async function saveWith(button, general, errs, fn, describe) {
  if (button) button.disabled = true;
  clear(general);
  errs.clear();
  try {
    return await fn();
  } catch (e) {
    const f = errs.show(e);
    const text = f
      ? `Check ${f.label}: ${e.detail || e.title}.`
      : describe
        ? describe(e)
        : errorText(e);
    general.append(h('div', { class: 'error', role: 'alert' }, text.replace(/\.\.$/, '.')));
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// Previous · Page 2 of 4 (78 in all) · Next.
export function pager({ page, limit, total, onPage, label = 'Pages' }) {
  const pages = Math.max(1, Math.ceil(total / limit));
  return h(
    'nav',
    { class: 'pager row', 'aria-label': label },
    h('button', { type: 'button', disabled: page <= 1, onclick: () => onPage(page - 1) }, '← Previous'),
    h('span', { class: 'muted' }, `Page ${page} of ${pages} (${total} in all)`),
    h('button', { type: 'button', disabled: page >= pages, onclick: () => onPage(page + 1) }, 'Next →'),
  );
}

// A Map that forgets its oldest entries beyond `max`.
export class Bounded extends Map {
  constructor(max) {
    super();
    this.max = max;
  }

  set(k, v) {
    if (this.has(k)) this.delete(k);
    super.set(k, v);
    while (this.size > this.max) this.delete(this.keys().next().value);
    return this;
  }
}

// Memoised GETs of catalog entities (a failed one is forgotten so it can be asked again).
const entityCache = new Bounded(2000);
export function entity(kind, id) {
  const key = `${kind}:${id}`;
  if (!entityCache.has(key)) {
    const p = get(`/api/${kind}/${id}`).catch((e) => {
      entityCache.delete(key);
      throw e;
    });
    entityCache.set(key, p);
  }
  return entityCache.get(key);
}

export function forgetEntity(kind, id) {
  entityCache.delete(`${kind}:${id}`);
}

export function putEntity(kind, id, value) {
  entityCache.set(`${kind}:${id}`, Promise.resolve(value));
}

// A short description of a showtime: "Orbit of Ash · Usher Cinemas Andheri · Sat 22 Nov, 14:30".
export async function showtimeText(id, whenFn) {
  const st = await entity('showtimes', id);
  const [movie, theater] = await Promise.all([
    entity('movies', st.movie_id).catch(() => null),
    entity('theaters', st.theater_id).catch(() => null),
  ]);
  return {
    showtime: st,
    text: [movie ? movie.title : `movie ${st.movie_id}`, theater ? theater.name : null, whenFn(st.start_time)]
      .filter(Boolean)
      .join(' · '),
  };
}

export function occupancyOf(st) {
  const total = st.seats_total || 0;
  const sold = st.seats_sold || 0;
  const free = st.seats_available || 0;
  const held = Math.max(0, total - free - sold);
  return { total, sold, held, free, taken: total ? (sold + held) / total : 0 };
}

// A stacked bar: sold, held, free; the numbers are text too (screen readers read the text).
export function occupancyBar(o) {
  const pct = (x) => (o.total ? `${((x / o.total) * 100).toFixed(2)}%` : '0%');
  return h(
    'div',
    { class: 'occ' },
    h(
      'div',
      { class: 'occ-bar', 'aria-hidden': 'true' },
      h('span', { class: 'occ-sold', style: { width: pct(o.sold) } }),
      h('span', { class: 'occ-held', style: { width: pct(o.held) } }),
    ),
    h(
      'div',
      { class: 'occ-text' },
      h('span', { class: 'occ-n sold' }, `${o.sold} sold`),
      ' · ',
      h('span', { class: 'occ-n held' }, `${o.held} held`),
      ' · ',
      h('span', { class: 'occ-n free' }, `${o.free} free`),
      h('span', { class: 'muted' }, ` of ${o.total} (${Math.round(o.taken * 100)}% taken)`),
    ),
  );
}
