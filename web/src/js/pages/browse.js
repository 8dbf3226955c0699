// Browse (#/): the showtimes of GET /api/showtimes with its filters and sorts, kept in the hash
// query (so back, forward and reload show the same list), in a virtual list that fetches pages
// of 100 as they scroll into view, and a search box that turns a movie title or theater name
// into a movie_id / theater_id filter (the API has no text search of showtimes).

import { get, query } from '../api.js';
import { h, clear, money, debounce, errorBox, field, pageTitle } from '../ui.js';
import { virtualList } from './vlist.js';
import { allTheaters, someGenres, moviesLike, movie, theater } from './catalog.js';

const PAGE = 100;
const MAX_ROWS = 10000; // the API pages through the first 10,000 matches only
const KEYS = ['movie_id', 'theater_id', 'city', 'genre', 'date', 'min', 'max', 'available', 'sort'];
const SORTS = [
  ['time', 'Start time'],
  ['price', 'Price, cheapest first'],
  ['popularity', 'Popularity, most sold first'],
];
const scrollMemory = new Map(); // hash query -> window.scrollY, for coming back to the list
const SCROLL_MAX = 50; // the last 50 lists left, oldest dropped first

function readState(q) {
  const s = {};
  for (const k of KEYS) s[k] = q.get(k) || '';
  if (!SORTS.some(([v]) => v === s.sort)) s.sort = 'time';
  s.available = s.available === 'true' ? 'true' : '';
  return s;
}

function hashOf(s) {
  const q = new URLSearchParams();
  for (const k of KEYS) {
    if (s[k] && !(k === 'sort' && s[k] === 'time')) q.set(k, s[k]);
  }
  const t = q.toString();
  return t ? `#/?${t}` : '#/';
}

// Rupees as typed ("250", "249.50") to paise; null when empty; NaN when not a price.
function paise(text) {
  const t = String(text).trim();
  if (!t) return null;
  if (!/^\d{1,6}(\.\d{1,2})?$/.test(t)) return NaN;
  return Math.round(Number(t) * 100);
}

// The query of GET /api/showtimes for a state (prices in paise).
export function apiQuery(s, page) {
  const min = paise(s.min);
  const max = paise(s.max);
  return query({
    movie_id: s.movie_id,
    theater_id: s.theater_id,
    city: s.city,
    genre: s.genre,
    date: s.date,
    min_price: Number.isFinite(min) ? min : undefined,
    max_price: Number.isFinite(max) ? max : undefined,
    available: s.available || undefined,
    sort: s.sort,
    page,
    limit: PAGE,
  });
}

const narrow = () => window.matchMedia('(max-width: 900px)').matches;
const dayFmt = { weekday: 'short', day: 'numeric', month: 'short' };
const timeFmt = { hour: '2-digit', minute: '2-digit' };

export function render(root, { query: q }) {
  const state = readState(q);
  const myHash = hashOf(state);
  pageTitle(root, 'Showtimes');
  const cleanups = [];

  // ---- search: text -> suggestions of movies and theaters -> a filter
  const listId = 'search-suggestions';
  const input = h('input', {
    type: 'search',
    id: 'search',
    role: 'combobox',
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-autocomplete': 'list',
    'aria-expanded': 'false',
    'aria-controls': listId,
    placeholder: 'Type a movie title or a theater name',
  });
  const listbox = h('ul', { id: listId, role: 'listbox', class: 'suggest', 'aria-label': 'Suggestions', hidden: true });
  const searchStatus = h('div', { class: 'visually-hidden', 'aria-live': 'polite' });
  let options = [];
  let active = -1;
  let searchSeq = 0;

  function closeList() {
    listbox.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
    active = -1;
  }

  function showOptions(list, text) {
    options = list;
    active = -1;
    clear(listbox);
    list.forEach((o, i) => {
      const li = h(
        'li',
        {
          id: `sg-${i}`,
          role: 'option',
          'aria-selected': 'false',
          class: 'suggest-item',
          onmousedown: (ev) => ev.preventDefault(), // keep focus in the box
          onclick: () => pick(o),
        },
        h('span', { class: `tag tag-${o.kind}` }, o.kind === 'movie' ? 'Movie' : 'Theater'),
        h('span', { class: 'suggest-name' }, o.name),
        h('span', { class: 'muted suggest-meta' }, o.meta),
      );
      listbox.append(li);
    });
    if (!list.length) {
      listbox.append(h('li', { class: 'suggest-none muted', role: 'presentation' }, `Nothing matches “${text}”.`));
    }
    listbox.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    searchStatus.textContent = list.length ? `${list.length} suggestions` : 'No suggestions';
  }

  function setActive(i) {
    const items = listbox.querySelectorAll('[role=option]');
    if (!items.length) return;
    active = (i + items.length) % items.length;
    items.forEach((li, k) => li.setAttribute('aria-selected', k === active ? 'true' : 'false'));
    input.setAttribute('aria-activedescendant', items[active].id);
    items[active].scrollIntoView({ block: 'nearest' });
  }

  // Resolves text to suggestions: movies by the server's title filter (q), theaters from the
  // cached list of all theaters. Both are cached, so typing the same text again asks nothing.
  async function search(text) {
    const my = ++searchSeq;
    const t = text.trim();
    if (t.length < 2) {
      closeList();
      return [];
    }
    try {
      const low = t.toLowerCase();
      const [movies, theaters] = await Promise.all([moviesLike(t), allTheaters()]);
      if (my !== searchSeq) return null;
      const list = [
        ...movies.map((m) => ({ kind: 'movie', id: m.id, name: m.title, meta: `${m.genre} · ${m.language}` })),
        ...theaters
          .filter((x) => x.name.toLowerCase().includes(low) || x.city.toLowerCase().includes(low))
          .slice(0, 8)
          .map((x) => ({ kind: 'theater', id: x.id, name: x.name, meta: x.city })),
      ];
      if (document.activeElement === input) showOptions(list, t);
      return list;
    } catch (e) {
      if (my === searchSeq) {
        clear(listbox).append(h('li', { class: 'suggest-none', role: 'presentation' }, errorBox(e)));
        listbox.hidden = false;
      }
      return [];
    }
  }
  const searchSoon = debounce(search, 300);

  function pick(o) {
    input.value = '';
    closeList();
    searchSeq++;
    if (o.kind === 'movie') setState({ movie_id: String(o.id) });
    else setState({ theater_id: String(o.id), city: '' });
  }

  input.addEventListener('input', () => searchSoon(input.value));
  input.addEventListener('blur', () => setTimeout(closeList, 150));
  input.addEventListener('keydown', async (ev) => {
    if (ev.key === 'ArrowDown') {
      ev.preventDefault();
      if (listbox.hidden) await search(input.value);
      setActive(active + 1);
    } else if (ev.key === 'ArrowUp') {
      ev.preventDefault();
      setActive(active - 1);
    } else if (ev.key === 'Enter') {
      ev.preventDefault();
      if (active >= 0 && options[active]) pick(options[active]);
      else {
        const list = await search(input.value);
        if (list && list.length) pick(list[0]);
      }
    } else if (ev.key === 'Escape') {
      if (!listbox.hidden) closeList();
      else input.value = '';
    }
  });

  const searchBox = h(
    'div',
    { class: 'search', role: 'search' },
    h('label', { for: 'search' }, 'Search'),
    h('div', { class: 'suggest-wrap' }, input, listbox),
    searchStatus,
  );

  // ---- filters
  const errors = h('div', { class: 'errors' });
  const date = h('input', { type: 'date', name: 'date', value: state.date });
  const city = h('select', { name: 'city' }, h('option', { value: '' }, 'Any city'));
  const theaterSel = h('select', { name: 'theater_id' }, h('option', { value: '' }, 'Any theater'));
  const genre = h('select', { name: 'genre' }, h('option', { value: '' }, 'Any genre'));
  const min = h('input', { type: 'text', inputmode: 'decimal', name: 'min', value: state.min, placeholder: '0', size: 6 });
  const max = h('input', { type: 'text', inputmode: 'decimal', name: 'max', value: state.max, placeholder: 'any', size: 6 });
  const available = h('input', { type: 'checkbox', name: 'available', checked: state.available === 'true' });
  const sort = h(
    'select',
    { name: 'sort' },
    SORTS.map(([v, t]) => h('option', { value: v, selected: v === state.sort }, t)),
  );

  const addOption = (sel, value, text, current) => {
    sel.append(h('option', { value, selected: value === current }, text));
  };
  let theaterList = null;
  let genreList = null;

  // Fills the city, theater and genre choices for the state now (the theaters of the chosen
  // city; a value not in the lists is added so the select can show it).
  function fillChoices() {
    const lc = state.city.toLowerCase();
    clear(city).append(h('option', { value: '' }, 'Any city'));
    clear(theaterSel).append(h('option', { value: '' }, 'Any theater'));
    clear(genre).append(h('option', { value: '' }, 'Any genre'));
    const list = theaterList || [];
    const cities = [...new Map(list.map((t) => [t.city.toLowerCase(), t.city])).values()].sort();
    if (state.city && !cities.some((c) => c.toLowerCase() === lc)) cities.push(state.city);
    const cityNow = cities.find((x) => x.toLowerCase() === lc) || '';
    for (const c of cities) addOption(city, c, c, cityNow);
    const shown = list.filter((t) => !state.city || t.city.toLowerCase() === lc);
    if (state.theater_id && !shown.some((t) => String(t.id) === state.theater_id)) {
      const t = list.find((x) => String(x.id) === state.theater_id);
      shown.push(t || { id: state.theater_id, name: `Theater ${state.theater_id}`, city: '?' });
    }
    for (const t of shown.sort((a, b) => a.name.localeCompare(b.name))) {
      addOption(theaterSel, String(t.id), `${t.name} (${t.city})`, state.theater_id);
    }
    const gs = [...(genreList || [])];
    if (state.genre && !gs.includes(state.genre.toLowerCase())) gs.push(state.genre.toLowerCase());
    for (const g of gs) addOption(genre, g, g.charAt(0).toUpperCase() + g.slice(1), state.genre.toLowerCase());
  }

  // The form shows the state (after a chip was removed, "Clear all", …).
  function syncForm() {
    fillChoices();
    date.value = state.date;
    min.value = state.min;
    max.value = state.max;
    min.removeAttribute('aria-invalid');
    max.removeAttribute('aria-invalid');
    available.checked = state.available === 'true';
    sort.value = state.sort;
  }

  fillChoices();
  allTheaters()
    .then((list) => {
      theaterList = list;
      fillChoices();
    })
    .catch(() => {});
  someGenres()
    .then((gs) => {
      genreList = gs;
      fillChoices();
    })
    .catch(() => {});

  function priceField(input, which) {
    input.addEventListener('change', () => {
      const v = paise(input.value);
      if (Number.isNaN(v)) {
        input.setAttribute('aria-invalid', 'true');
        clear(errors).append(errorBox(`The ${which} price must be an amount in rupees, like 250 or 249.50.`));
        return;
      }
      input.removeAttribute('aria-invalid');
      const other = which === 'lowest' ? paise(max.value) : paise(min.value);
      const lo = which === 'lowest' ? v : other;
      const hi = which === 'lowest' ? other : v;
      if (Number.isFinite(lo) && Number.isFinite(hi) && lo > hi) {
        clear(errors).append(errorBox('The lowest price is above the highest price.'));
        return;
      }
      clear(errors);
      setState({ min: min.value.trim(), max: max.value.trim() });
    });
  }
  priceField(min, 'lowest');
  priceField(max, 'highest');
  date.addEventListener('change', () => setState({ date: date.value }));
  city.addEventListener('change', () => setState({ city: city.value, theater_id: '' }));
  theaterSel.addEventListener('change', () => setState({ theater_id: theaterSel.value }));
  genre.addEventListener('change', () => setState({ genre: genre.value }));
  available.addEventListener('change', () => setState({ available: available.checked ? 'true' : '' }));
  sort.addEventListener('change', () => setState({ sort: sort.value }));

  const inUse = KEYS.filter((k) => k !== 'sort' && k !== 'movie_id' && k !== 'theater_id' && state[k]).length;
  const filters = h(
    'details',
    { class: 'filters-box', open: !narrow() || inUse > 0 ? true : null },
    h('summary', {}, 'Filters and sorting'),
    h(
      'form',
      { class: 'browse-filters', 'aria-label': 'Filters', onsubmit: (ev) => ev.preventDefault() },
      field('Date (UTC day)', date),
      field('City', city),
      field('Theater', theaterSel),
      field('Genre', genre),
      h(
        'fieldset',
        { class: 'price-range' },
        h('legend', {}, 'Price (₹)'),
        h(
          'div',
          { class: 'price-inputs' },
          h('label', { class: 'visually-hidden', for: 'f-min' }, 'Lowest price in rupees'),
          Object.assign(min, { id: 'f-min' }),
          h('span', { 'aria-hidden': 'true' }, 'to'),
          h('label', { class: 'visually-hidden', for: 'f-max' }, 'Highest price in rupees'),
          Object.assign(max, { id: 'f-max' }),
        ),
      ),
      field('Sort by', sort),
      h('div', { class: 'field check' }, h('label', {}, available, 'Seats available only')),
    ),
  );

  // ---- chips of the filters in force (from the search or the form)
  const chips = h('ul', { class: 'chips', 'aria-label': 'Filters in use' });
  const chip = (text, clearKeys) =>
    h(
      'li',
      { class: 'chip' },
      h('span', {}, text),
      h(
        'button',
        {
          type: 'button',
          class: 'chip-x',
          'aria-label': `Remove filter ${text}`,
          onclick: () => {
            setState(Object.fromEntries(clearKeys.map((k) => [k, ''])));
            input.focus(); // the chip is gone: focus goes back to the search box
          },
        },
        '×',
      ),
    );
  function renderChips() {
    clear(chips);
    if (state.movie_id) {
      const c = chip(`Movie ${state.movie_id}`, ['movie_id']);
      chips.append(c);
      movie(state.movie_id)
        .then((m) => {
          c.firstChild.textContent = `Movie: ${m.title}`;
          c.lastChild.setAttribute('aria-label', `Remove filter Movie: ${m.title}`);
        })
        .catch(() => {});
    }
    if (state.theater_id) {
      const c = chip(`Theater ${state.theater_id}`, ['theater_id']);
      chips.append(c);
      theater(state.theater_id)
        .then((t) => {
          c.firstChild.textContent = `Theater: ${t.name}`;
          c.lastChild.setAttribute('aria-label', `Remove filter Theater: ${t.name}`);
        })
        .catch(() => {});
    }
    if (state.city) chips.append(chip(`City: ${state.city}`, ['city']));
    if (state.genre) chips.append(chip(`Genre: ${state.genre}`, ['genre']));
    if (state.date) chips.append(chip(`Date: ${state.date}`, ['date']));
    if (state.min || state.max) {
      chips.append(chip(`Price: ₹${state.min || '0'} to ${state.max ? `₹${state.max}` : 'any'}`, ['min', 'max']));
    }
    if (state.available) chips.append(chip('Seats available', ['available']));
    const any = KEYS.some((k) => k !== 'sort' && state[k]);
    if (any) {
      chips.append(
        h(
          'li',
          {},
          h('button', { type: 'button', class: 'link', onclick: () => setState(Object.fromEntries(KEYS.filter((k) => k !== 'sort').map((k) => [k, '']))) }, 'Clear all'),
        ),
      );
    }
    chips.hidden = !any;
  }

  // ---- results: a count, then the virtual list
  const summary = h('p', { class: 'summary', 'aria-live': 'polite', id: 'results-summary' }, 'Loading showtimes…');
  const listStatus = h('div', { class: 'list-status' });
  let pages = new Map(); // page number -> items
  let loading = new Set();
  let failed = null;
  let total = null;
  let gen = 0;
  let restored = false;

  const rowHeight = () => (narrow() ? 132 : 76);
  const vl = virtualList({
    label: 'Showtimes',
    rowHeight,
    renderRow: (i) => {
      const item = (pages.get(Math.floor(i / PAGE) + 1) || [])[i % PAGE];
      return item ? showtimeRow(item) : h('div', { class: 'st-row st-placeholder' }, h('span', { class: 'muted' }, 'Loading…'));
    },
    onRange: (first, last) => want(first, last),
  });
  cleanups.push(() => vl.destroy());

  let wanted = [1, 1];
  let pumpTimer = null;
  function want(first, last) {
    wanted = [Math.floor(first / PAGE) + 1, Math.floor(last / PAGE) + 1];
    // At most one round of page fetches every 120 ms, for the rows in view then: a fast
    // scroll past a page does not fetch it.
    if (!pumpTimer) pumpTimer = setTimeout(pump, pages.size ? 120 : 0);
  }
  function pump() {
    pumpTimer = null;
    for (let p = wanted[0]; p <= wanted[1]; p++) {
      if (!pages.has(p) && !loading.has(p) && loading.size < 4) loadPage(p);
    }
  }
  cleanups.push(() => clearTimeout(pumpTimer));

  async function loadPage(p) {
    const my = gen;
    loading.add(p);
    try {
      const r = await get(`/api/showtimes${apiQuery(state, p)}`);
      if (my !== gen) return;
      pages.set(p, r.items);
      if (failed) {
        failed = null;
        clear(listStatus);
      }
      if (total === null || r.total !== total) setTotal(r.total);
      vl.refresh((i) => Math.floor(i / PAGE) + 1 === p);
    } catch (e) {
      if (my !== gen) return;
      failed = e;
      if (total === null) summary.textContent = 'The showtimes could not be loaded.';
      clear(listStatus).append(
        errorBox(e),
        h('button', { type: 'button', onclick: () => { clear(listStatus); failed = null; if (total === null) loadPage(1); else pump(); } }, 'Try again'),
      );
    } finally {
      if (my === gen) loading.delete(p);
    }
  }

  function setTotal(n) {
    const first = total === null;
    total = n;
    const rows = Math.min(n, MAX_ROWS);
    const words = n === 0 ? 'No showtimes match.' : n === 1 ? '1 showtime' : `${n.toLocaleString('en-IN')} showtimes`;
    summary.textContent = n > MAX_ROWS ? `${words}; the first ${MAX_ROWS.toLocaleString('en-IN')} are listed` : words;
    vl.setCount(rows);
    clear(empty);
    if (n === 0) {
      const filtered = KEYS.some((k) => k !== 'sort' && state[k]);
      empty.append(
        h('p', {}, filtered ? 'No showtimes match these filters. Try another date, a wider price range or fewer filters.' : 'There are no upcoming showtimes yet.'),
        filtered ? h('button', { type: 'button', onclick: () => setState(Object.fromEntries(KEYS.filter((k) => k !== 'sort').map((k) => [k, '']))) }, 'Clear all filters') : null,
      );
    }
    if (n > MAX_ROWS) {
      clear(tail).append(h('p', { class: 'muted' }, `Only the first ${MAX_ROWS.toLocaleString('en-IN')} showtimes can be listed. Narrow the filters to see the others.`));
    } else clear(tail);
    if (first && !restored && hashOf(state) === myHash && scrollMemory.has(myHash)) {
      restored = true;
      const y = scrollMemory.get(myHash);
      requestAnimationFrame(() => window.scrollTo(0, y));
    }
  }
  const empty = h('div', { class: 'browse-empty' });
  const tail = h('div', {});

  function showtimeRow(s) {
    const href = `#/showtimes/${s.id}`;
    const d = new Date(s.start_time);
    const free = s.seats_available;
    const pct = s.seats_total ? Math.round((free / s.seats_total) * 100) : 0;
    const availWords = free === 0 ? 'Sold out' : `${free} of ${s.seats_total} free`;
    const bar = h('span', { class: 'bar', 'aria-hidden': 'true' }, h('span', { style: { width: `${pct}%` } }));
    return h(
      'div',
      { class: `st-row${free === 0 ? ' sold-out' : ''}`, dataset: { id: String(s.id) } },
      h(
        'div',
        { class: 'st-when' },
        h('span', { class: 'st-day' }, d.toLocaleDateString(undefined, dayFmt)),
        h('span', { class: 'st-time' }, d.toLocaleTimeString(undefined, timeFmt)),
      ),
      h(
        'div',
        { class: 'st-movie' },
        h('a', { href, class: 'st-title' }, s.movie_title),
        h('span', { class: 'muted' }, `${s.genre} · ${s.language}`),
      ),
      h('div', { class: 'st-place' }, h('span', {}, s.theater_name), h('span', { class: 'muted' }, s.city)),
      h('div', { class: 'st-price' }, h('span', { class: 'muted' }, 'from '), h('strong', {}, money(s.price_from))),
      h(
        'div',
        { class: `st-avail${free === 0 ? ' none' : pct < 10 ? ' few' : ''}`, title: `${free} of ${s.seats_total} seats free` },
        h('span', {}, availWords),
        bar,
      ),
      h('a', { href, class: 'button st-go', tabindex: '-1', 'aria-hidden': 'true' }, free === 0 ? 'Waiting list' : 'Choose seats'),
    );
  }

  // ---- state changes: a new history entry (back goes to the previous filters), a fresh list
  function setState(change) {
    const next = { ...state, ...change };
    const hash = hashOf(next);
    if (hash === hashOf(state)) return;
    history.pushState(null, '', hash);
    Object.assign(state, next);
    reload();
  }

  function reload() {
    gen++;
    pages = new Map();
    loading = new Set();
    failed = null;
    total = null;
    clear(listStatus);
    clear(empty);
    clear(tail);
    clear(errors);
    summary.textContent = 'Loading showtimes…';
    renderChips();
    syncForm();
    vl.setCount(0);
    window.scrollTo({ top: Math.min(window.scrollY, list.offsetTop - 80) });
    loadPage(1);
  }

  const list = h('section', { class: 'results', 'aria-labelledby': 'results-summary' }, summary, empty, listStatus, vl.el, tail);
  root.append(
    h('div', { class: 'browse-top' }, searchBox, chips),
    filters,
    errors,
    list,
  );
  renderChips();
  loadPage(1);

  return () => {
    const key = hashOf(state);
    scrollMemory.delete(key); // newest last
    scrollMemory.set(key, window.scrollY);
    while (scrollMemory.size > SCROLL_MAX) scrollMemory.delete(scrollMemory.keys().next().value);
    gen++;
    for (const fn of cleanups) fn();
  };
}
