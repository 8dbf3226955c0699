// The one way the pages talk to usherd: JSON requests, problem+json errors turned into
// ApiError, the login session, and event streams read with fetch (so the token travels in the
// Authorization header, never in a URL).

const SESSION_KEY = 'usher.session';
const listeners = new Set();

// The session lives in sessionStorage: it survives a reload of this tab, is not shared with
// other tabs, and ends when the tab closes. It is never put in localStorage, a cookie or a URL.
let current = loadSession();

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (s && typeof s.token === 'string' && s.user && s.expires_ms > Date.now()) return s;
  } catch (_) {
    /* a damaged entry is no session */
  }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

export function session() {
  if (current && current.expires_ms <= Date.now()) setSession(null);
  return current;
}

export function isAdmin() {
  const s = session();
  return !!s && s.user.role === 'admin';
}

// answer: a token answer of register or login ({token, expires_in, user}); null logs out.
export function setSession(answer) {
  if (answer) {
    current = {
      token: answer.token,
      user: answer.user,
      expires_ms: Date.now() + answer.expires_in * 1000,
    };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(current));
  } else {
    current = null;
    sessionStorage.removeItem(SESSION_KEY);
  }
  for (const fn of listeners) fn(current);
}

export function onSessionChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

// Problem types (docs/api.md, "Problem types") in words a buyer understands. The server's
// detail is added after these where it says more.
const WORDS = {
  'seats-taken': 'Someone else has just taken some of these seats.',
  'seats-unavailable': 'Some of these seats are not for sale.',
  'not-available': 'There is no block of seats together that size left in this category.',
  'sales-closed': 'This show has started; sales are closed.',
  'hold-expired': 'Your hold ran out of time, so the seats went back on sale.',
  'hold-ended': 'That hold has already ended (released, expired or bought).',
  'already-cancelled': 'That booking was already cancelled.',
  'rate-limited': 'Too many tries in a short time.',
  'invalid-credentials': 'The email or password is wrong.',
  'email-taken': 'An account with this email already exists.',
  'unauthorized': 'Please log in first.',
  'invalid-token': 'Your session has ended. Please log in again.',
  'forbidden': 'Your account may not do this.',
  'not-found': 'That was not found. It may have been removed.',
  'admission-required': 'This show is selling through a queue: wait for your turn first.',
  'already-waiting': 'You are already on this waiting list.',
  'not-waiting': 'You are not on this waiting list.',
  'seats-available': 'Seats are still on sale: book them instead of waiting.',
  'no-queue': 'This show has no queue.',
  'queue-started': 'The queue has already started.',
  'in-use': 'Other things still depend on this one.',
  'showtime-in-use': 'This showtime has holds or bookings.',
  'overloaded': 'The box office is very busy right now.',
  'too-many-connections': 'The box office is very busy right now.',
  'wal-failed': 'The box office could not save this. Nothing was changed.',
};

export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    const slug = (problem.type || '').split('/').pop() || (status ? `http-${status}` : 'network');
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.slug = slug;
    this.title = problem.title || '';
    this.detail = problem.detail || '';
    this.field = problem.field || null;
    this.seats = Array.isArray(problem.seats) ? problem.seats : null;
    this.limit = problem.limit || null;
    this.retryAfter = retryAfter;
    this.problem = problem;
  }
}

// One sentence (or two) for people: what happened, the server's detail, the field to fix, and
// when to try again.
export function errorText(err) {
  if (!(err instanceof ApiError)) {
    return `Something went wrong: ${err && err.message ? err.message : err}`;
  }
  if (err.slug === 'network') return 'The box office cannot be reached. Check your connection.';
  const parts = [];
  const words = WORDS[err.slug];
  if (words) parts.push(words);
  if (err.detail && (!words || err.slug === 'invalid-field' || err.status >= 400)) {
    const d = err.detail.charAt(0).toUpperCase() + err.detail.slice(1);
    if (!words || !words.toLowerCase().includes(err.detail.toLowerCase())) parts.push(`${d}.`);
  } else if (!words && err.title) {
    parts.push(`${err.title}.`);
  }
  if (err.field && err.slug === 'invalid-field') parts.push(`(Field: ${err.field})`);
  if (err.seats && err.seats.length) parts.push(`Seats: ${err.seats.join(', ')}.`);
  if (err.retryAfter) parts.push(`Try again in ${err.retryAfter} s.`);
  return parts.join(' ').replace(/\.\./g, '.');
}

function authHeaders(headers) {
  const s = session();
  if (s) headers.Authorization = `Bearer ${s.token}`;
  return headers;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function toError(res) {
  let problem = {};
  try {
    problem = await res.json();
  } catch (_) {
    problem = { title: res.statusText };
  }
  const ra = res.headers.get('Retry-After');
  return new ApiError(res.status, problem, ra ? Number(ra) : null);
}

// request('POST', '/api/bookings/reserve', {body, idempotencyKey, headers, signal, base})
// resolves to the parsed JSON answer (null for an empty one) or throws ApiError.
export async function request(method, path, opts = {}) {
  const headers = authHeaders({ Accept: 'application/json', ...(opts.headers || {}) });
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  if (opts.idempotencyKey) headers['Idempotency-Key'] = opts.idempotencyKey;
  let res;
  try {
    res = await fetch((opts.base || '') + path, { method, headers, body, signal: opts.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { detail: e.message }, null);
  }
  if (!res.ok) {
    const err = await toError(res);
    if (err.status === 401 && err.slug === 'invalid-token' && session() && !opts.base) setSession(null);
    throw err;
  }
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, opts) => request('GET', path, opts);
export const post = (path, body, opts = {}) => request('POST', path, { ...opts, body });
export const patch = (path, body, opts = {}) => request('PATCH', path, { ...opts, body });
export const put = (path, body, opts = {}) => request('PUT', path, { ...opts, body });
export const del = (path, opts) => request('DELETE', path, opts);

// A fresh Idempotency-Key for one user action (a retry of the same action reuses it).
export function newKey(prefix) {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return `${prefix}-${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
}

// Reads lines of a fetch body as they arrive; calls onLine(line) for each complete line.
async function readLines(res, onLine, signal) {
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let ended = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        ended = true;
        return true;
      }
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (onLine(line) === false || signal.aborted) return false;
      }
    }
  } finally {
    // Whatever ends the reading (the caller, an abort, an exception in onLine) closes the
    // connection: an open one would hold one of the browser's six per host.
    if (!ended) reader.cancel().catch(() => {});
  }
}

// Server-Sent Events over fetch. stream(path, {onEvent(name, data, id), onState(state, info)})
// returns {close()}. Reconnects after the server's retry: (default 2 s) with Last-Event-ID, as
// EventSource does, unless onEvent returned false or the answer was an error (4xx: onState
// 'failed' with the ApiError). States: 'connecting', 'open', 'retrying', 'closed', 'failed'.
export function stream(path, { onEvent, onState = () => {}, lastEventId = null } = {}) {
  const ctl = new AbortController();
  let retryMs = 2000;
  let lastId = lastEventId;
  let stopped = false;

  const run = async () => {
    while (!stopped) {
      onState('connecting');
      let finished = false;
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (lastId) headers['Last-Event-ID'] = lastId;
        const res = await fetch(path, { headers, signal: ctl.signal, cache: 'no-store' });
        if (!res.ok) {
          const err = await toError(res);
          if (res.status >= 500) throw err;
          if (err.status === 401 && err.slug === 'invalid-token' && session()) setSession(null);
          onState('failed', err);
          return;
        }
        onState('open');
        let name = '';
        let data = [];
        let id = null;
        const more = await readLines(
          res,
          (line) => {
            if (line === '') {
              if (data.length) {
                if (id !== null) lastId = id;
                let parsed = data.join('\n');
                try {
                  parsed = JSON.parse(parsed);
                } catch (_) {
                  /* not JSON: hand over the text */
                }
                const keep = onEvent(name || 'message', parsed, id);
                if (keep === false) {
                  finished = true;
                  return false;
                }
              }
              name = '';
              data = [];
              id = null;
              return true;
            }
            if (line.startsWith(':')) return true;
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            let value = c < 0 ? '' : line.slice(c + 1);
            if (value.startsWith(' ')) value = value.slice(1);
            if (field === 'event') name = value;
            else if (field === 'data') data.push(value);
            else if (field === 'id') id = value;
            else if (field === 'retry' && /^\d+$/.test(value)) retryMs = Number(value);
            return true;
          },
          ctl.signal,
        );
        if (!more) finished = true;
      } catch (e) {
        if (stopped || e.name === 'AbortError') break;
      }
      if (finished || stopped) break;
      onState('retrying', retryMs);
      await new Promise((r) => setTimeout(r, retryMs));
    }
    onState('closed');
  };
  run();
  return {
    close() {
      stopped = true;
      ctl.abort();
    },
  };
}

// NDJSON (the replication stream): ndjson(path, {onLine(obj), onState}) -> {close()}. No
// automatic reconnect: the caller knows the LSN to resume from.
export function ndjson(path, { onLine, onState = () => {} }) {
  const ctl = new AbortController();
  (async () => {
    try {
      onState('connecting');
      const res = await fetch(path, { headers: authHeaders({ Accept: 'application/x-ndjson' }), signal: ctl.signal });
      if (!res.ok) {
        onState('failed', await toError(res));
        return;
      }
      onState('open');
      await readLines(res, (line) => (line ? onLine(JSON.parse(line)) : true), ctl.signal);
      onState('closed');
    } catch (e) {
      onState(e.name === 'AbortError' ? 'closed' : 'failed', new ApiError(0, { detail: e.message }, null));
    }
  })();
  return { close: () => ctl.abort() };
}
