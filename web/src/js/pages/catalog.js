// The customer pages' shared look-ups of the catalog (movies, theaters, screens, showtimes),
// cached for a few minutes so that moving between pages does not ask the same things again,
// and the admission tokens of virtual queues (kept per showtime in sessionStorage).

import { get, query } from '../api.js';

const TTL_MS = 5 * 60 * 1000;
const cache = new Map(); // path -> {at, promise}, oldest use first (a small LRU)
const CACHE_MAX = 200; // every distinct search text is a path: keep only the last ones

// GET path, answered from the cache while it is fresh. A failure is not cached.
export function cached(path) {
  const hit = cache.get(path);
  if (hit && Date.now() - hit.at < TTL_MS) {
    cache.delete(path); // move to the newest end
    cache.set(path, hit);
    return hit.promise;
  }
  const promise = get(path).catch((e) => {
    if (cache.get(path) && cache.get(path).promise === promise) cache.delete(path);
    throw e;
  });
  cache.delete(path);
  cache.set(path, { at: Date.now(), promise });
  while (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value);
  return promise;
}

export const movie = (id) => cached(`/api/movies/${id}`);
export const theater = (id) => cached(`/api/theaters/${id}`);
export const screen = (id) => cached(`/api/screens/${id}`);
export const showtime = (id) => cached(`/api/showtimes/${id}`);

// Every page of a list endpoint (100 at a time), at most maxPages pages.
async function allPages(path, params = {}, maxPages = 20) {
  const items = [];
  for (let page = 1; page <= maxPages; page++) {
    const r = await cached(`${path}${query({ ...params, page, limit: 100 })}`);
    items.push(...r.items);
    if (items.length >= r.total || r.items.length === 0) break;
  }
  return items;
}

// Every theater (a catalog has few; at most 2,000 are looked at).
export const allTheaters = () => allPages('/api/theaters');

// Genres seen in the first 100 movies, sorted: enough for a filter's choices.
export async function someGenres() {
  const r = await cached(`/api/movies${query({ limit: 100 })}`);
  return [...new Set(r.items.map((m) => m.genre.toLowerCase()))].sort();
}

// Movies whose title contains text (the server's q filter), the first few.
export async function moviesLike(text, limit = 8) {
  const r = await cached(`/api/movies${query({ q: text.toLowerCase(), limit })}`);
  return r.items;
}

// {showtime, movie, theater, screen} of one showtime; movie/theater/screen may be null when
// they cannot be read (the showtime itself must be).
export async function details(showtimeId) {
  const st = await showtime(showtimeId);
  const soft = (p) => p.catch(() => null);
  const [m, t, s] = await Promise.all([soft(movie(st.movie_id)), soft(theater(st.theater_id)), soft(screen(st.screen_id))]);
  return { showtime: st, movie: m, theater: t, screen: s };
}

// "Orbit of Ash · Usher Cinemas Andheri, Mumbai"
export function describe(d) {
  const title = d.movie ? d.movie.title : `Showtime ${d.showtime.id}`;
  const place = d.theater ? `${d.theater.name}, ${d.theater.city}` : '';
  return { title, place, screen: d.screen ? d.screen.name : '' };
}

// Admission tokens of virtual queues: {token, expires_ms, until_ms} per showtime, in
// sessionStorage like the login session (this tab only, gone when it closes).
const ADMISSION = (id) => `usher.admission.${id}`;

export function saveAdmission(showtimeId, me) {
  if (!me || me.state !== 'admitted' || !me.admission_token) return;
  sessionStorage.setItem(
    ADMISSION(showtimeId),
    JSON.stringify({
      token: me.admission_token,
      expires_ms: Date.parse(me.admission_token_expires_at),
      until_ms: Date.parse(me.admitted_until),
    }),
  );
}

export function loadAdmission(showtimeId) {
  try {
    const a = JSON.parse(sessionStorage.getItem(ADMISSION(showtimeId)) || 'null');
    if (a && typeof a.token === 'string' && a.until_ms > Date.now()) return a;
  } catch (_) {
    /* a damaged entry is no admission */
  }
  sessionStorage.removeItem(ADMISSION(showtimeId));
  return null;
}

export function dropAdmission(showtimeId) {
  sessionStorage.removeItem(ADMISSION(showtimeId));
}

// "about 3 min", "about 40 s", "a few seconds"
export function waitWords(s) {
  if (s === null || s === undefined) return 'unknown';
  if (s < 1) return 'a moment';
  if (s < 20) return `about ${Math.round(s)} s`;
  if (s < 90) return `about ${Math.round(s / 5) * 5} s`;
  if (s < 90 * 60) return `about ${Math.round(s / 60)} min`;
  const hrs = Math.floor(s / 3600);
  const min = Math.round((s % 3600) / 60);
  return `about ${hrs} h ${min} min`;
}

// "4:05" for 245 seconds.
export function clock(s) {
  const v = Math.max(0, Math.ceil(s));
  return `${Math.floor(v / 60)}:${String(v % 60).padStart(2, '0')}`;
}
