// Catalog management (#/admin/catalog/:kind): theaters, screens, movies and showtimes listed a
// page at a time, created, edited and deleted. Forms follow docs/api.md; a 400 invalid-field is
// shown next to the input it names (fieldErrors), other refusals in words. Screens are built in
// the layout editor (#/admin/layout), which this page links to.

import { get, post, patch, del, query, errorText, ApiError } from '../api.js';
import { h, clear, money, when, debounce, toast, errorBox, field, confirmDialog, pageTitle } from '../ui.js';
import { adminNav } from './nav.js';
import {
  fetchAll, fieldErrors, saveWith, pager, localToUtc, utcToLocal, timeZoneName, rupeesToPaise,
  paiseToRupees, forgetEntity,
} from './common.js';

const LIMIT = 20;

// A problem found before sending (a price that is not an amount): shown like a server's.
class FieldProblem extends Error {
  constructor(fieldName, message) {
    super(message);
    this.fieldName = fieldName;
  }
}

// Text input helpers. read() gives what the API takes: trimmed text, an integer for number
// fields (or the text as typed when it is not one, so the server names what is wrong).
function text(name, label, opts = {}) {
  const input = opts.multiline
    ? h('textarea', { name, rows: 4, maxlength: opts.max })
    : h('input', { type: opts.type || 'text', name, maxlength: opts.max, required: !!opts.required, inputmode: opts.inputmode });
  return {
    name,
    label,
    input,
    hint: opts.hint,
    set: (v) => {
      input.value = v === undefined || v === null ? '' : String(v);
    },
    read: () => {
      const v = input.value.trim();
      if (opts.integer) {
        if (v === '') return undefined;
        return /^-?\d+$/.test(v) ? Number(v) : v;
      }
      if (v === '' && !opts.required && !opts.sendEmpty) return '';
      return v;
    },
  };
}

function select(name, label, options, opts = {}) {
  const input = h('select', { name, required: !!opts.required });
  fillSelect(input, options, opts.placeholder);
  return {
    name,
    label,
    input,
    hint: opts.hint,
    set: (v) => {
      input.value = v === undefined || v === null ? '' : String(v);
    },
    read: () => (input.value === '' ? undefined : Number(input.value)),
  };
}

// options: [{value, text}] or [{group, options: [...]}].
function fillSelect(sel, options, placeholder) {
  clear(sel);
  if (placeholder !== undefined) sel.append(h('option', { value: '' }, placeholder));
  for (const o of options) {
    if (o.group !== undefined) {
      sel.append(h('optgroup', { label: o.group }, o.options.map((x) => h('option', { value: x.value }, x.text))));
    } else {
      sel.append(h('option', { value: o.value }, o.text));
    }
  }
}

async function lookups() {
  const [theaters, movies, screens] = await Promise.all([
    fetchAll('/api/theaters'),
    fetchAll('/api/movies'),
    fetchAll('/api/screens'),
  ]);
  const byId = (xs) => new Map(xs.map((x) => [x.id, x]));
  return { theaters, movies, screens, theater: byId(theaters), movie: byId(movies), screen: byId(screens) };
}

function theaterOptions(lk) {
  return lk.theaters.map((t) => ({ value: t.id, text: `${t.name} (${t.city})` }));
}

function screenOptions(lk) {
  const groups = new Map();
  for (const s of lk.screens) {
    const t = lk.theater.get(s.theater_id);
    const g = t ? `${t.name} (${t.city})` : `Theater ${s.theater_id}`;
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push({ value: s.id, text: s.name });
  }
  return [...groups].map(([group, options]) => ({ group, options }));
}

function priceList(prices) {
  return Object.entries(prices || {})
    .map(([k, v]) => `${k} ${money(v)}`)
    .join(' · ');
}

// A search box filtering the list by query parameter `name`, debounced.
function textFilter(state, reload, name, label) {
  const input = h('input', { type: 'search', name, value: state.filters[name] || '' });
  input.addEventListener(
    'input',
    debounce(() => {
      state.filters[name] = input.value.trim();
      reload(1);
    }, 300),
  );
  return field(label, input);
}

// ---- the four kinds ---------------------------------------------------------------------

const KINDS = {
  theaters: {
    title: 'Theaters',
    noun: 'theater',
    path: '/api/theaters',
    describe: (x) => x.name,
    filters: (state, lk, reload) => [textFilter(state, reload, 'city', 'City (exact)')],
    columns: [
      { label: 'Name', cell: (x) => x.name },
      { label: 'City', cell: (x) => x.city },
      { label: 'Address', cell: (x) => x.address || '—' },
    ],
    fields: () => [
      text('name', 'Name', { required: true, max: 200 }),
      text('city', 'City', { required: true, max: 100 }),
      text('address', 'Address', { max: 500 }),
    ],
  },

  screens: {
    title: 'Screens',
    noun: 'screen',
    path: '/api/screens',
    describe: (x) => x.name,
    // Screens are created and edited in the layout editor.
    newLink: '#/admin/layout',
    editLink: (x) => `#/admin/layout/${x.id}`,
    filters: (state, lk, reload) => {
      const sel = h('select', { name: 'theater_id' });
      fillSelect(sel, theaterOptions(lk), 'All theaters');
      sel.value = state.filters.theater_id || '';
      sel.addEventListener('change', () => {
        state.filters.theater_id = sel.value;
        reload(1);
      });
      return [field('Theater', sel)];
    },
    columns: [
      { label: 'Name', cell: (x) => x.name },
      {
        label: 'Theater',
        cell: (x, lk) => {
          const t = lk.theater.get(x.theater_id);
          return t ? `${t.name} (${t.city})` : `#${x.theater_id}`;
        },
      },
    ],
  },

  movies: {
    title: 'Movies',
    noun: 'movie',
    path: '/api/movies',
    describe: (x) => x.title,
    filters: (state, lk, reload) => [textFilter(state, reload, 'q', 'Title contains')],
    columns: [
      { label: 'Title', cell: (x) => x.title },
      { label: 'Minutes', cell: (x) => x.duration_min, num: true },
      { label: 'Genre', cell: (x) => x.genre },
      { label: 'Language', cell: (x) => x.language },
      { label: 'Rating', cell: (x) => x.rating || '—' },
    ],
    fields: () => [
      text('title', 'Title', { required: true, max: 200 }),
      text('duration_min', 'Duration (minutes)', { integer: true, inputmode: 'numeric', required: true, hint: '1 to 1000' }),
      text('genre', 'Genre', { required: true, max: 50 }),
      text('language', 'Language', { required: true, max: 50 }),
      text('rating', 'Rating', { max: 20, hint: 'e.g. U, UA, A (optional)' }),
      text('poster_url', 'Poster URL', { type: 'url', max: 2000, hint: 'http:// or https:// (optional)' }),
      text('description', 'Description', { multiline: true, max: 4000 }),
    ],
  },

  showtimes: {
    title: 'Showtimes',
    noun: 'showtime',
    path: '/api/showtimes',
    describe: (x, lk) => {
      const m = lk.movie.get(x.movie_id);
      return `${m ? m.title : `Movie ${x.movie_id}`}, ${when(x.start_time)}`;
    },
    listParams: (state) => ({ sort: 'time', include_past: state.filters.include_past ? 'true' : undefined }),
    filters: (state, lk, reload) => {
      const th = h('select', { name: 'theater_id' });
      fillSelect(th, theaterOptions(lk), 'All theaters');
      th.value = state.filters.theater_id || '';
      th.addEventListener('change', () => {
        state.filters.theater_id = th.value;
        reload(1);
      });
      const mv = h('select', { name: 'movie_id' });
      fillSelect(mv, lk.movies.map((m) => ({ value: m.id, text: m.title })), 'All movies');
      mv.value = state.filters.movie_id || '';
      mv.addEventListener('change', () => {
        state.filters.movie_id = mv.value;
        reload(1);
      });
      const past = h('input', { type: 'checkbox', name: 'include_past', checked: !!state.filters.include_past });
      past.addEventListener('change', () => {
        state.filters.include_past = past.checked;
        reload(1);
      });
      return [
        field('Theater', th),
        field('Movie', mv),
        h('div', { class: 'field check' }, h('label', {}, past, ' Include past showtimes')),
      ];
    },
    filterParams: (f) => ({ theater_id: f.theater_id, movie_id: f.movie_id }),
    columns: [
      { label: 'Starts', cell: (x) => h('time', { datetime: x.start_time }, when(x.start_time)) },
      { label: 'Movie', cell: (x, lk) => x.movie_title || (lk.movie.get(x.movie_id) || {}).title || `#${x.movie_id}` },
      {
        label: 'Theater · screen',
        cell: (x, lk) => {
          const s = lk.screen.get(x.screen_id);
          return `${x.theater_name || `#${x.theater_id}`} · ${s ? s.name : `screen ${x.screen_id}`}`;
        },
      },
      { label: 'Prices', cell: (x) => priceList(x.prices) },
      { label: 'Sold / for sale', cell: (x) => `${x.seats_sold} / ${x.seats_total}`, num: true },
    ],
    form: showtimeFields,
  },
};

// The showtime form: movie and screen pickers, the start in local time (sent as UTC), and one
// price input (rupees) per seat category of the chosen screen's layout.
async function showtimeFields(existing, lk, errs) {
  const movie = select(
    'movie_id',
    'Movie',
    lk.movies.map((m) => ({ value: m.id, text: `${m.title} (${m.language}, ${m.duration_min} min)` })),
    { placeholder: 'Choose a movie', required: true },
  );
  const screen = select('screen_id', 'Screen', screenOptions(lk), { placeholder: 'Choose a screen', required: true });
  const startInput = h('input', { type: 'datetime-local', name: 'start_time', required: true });
  const utcNote = h('small', { class: 'muted', id: `utc-${Math.random().toString(36).slice(2, 8)}` });
  const showUtc = () => {
    const u = localToUtc(startInput.value);
    utcNote.textContent = `Your time zone: ${timeZoneName()}. ${u ? `Sent as ${u} (UTC).` : ''}`;
  };
  startInput.addEventListener('input', showUtc);
  startInput.setAttribute('aria-describedby', utcNote.id);
  const start = {
    name: 'start_time',
    label: 'Starts (local time)',
    input: startInput,
    wrap: h('div', { class: 'field' }, h('label', { for: 'st-start' }, 'Starts (your local time)'), startInput, utcNote),
    set: (v) => {
      startInput.value = v ? utcToLocal(v) : '';
      showUtc();
    },
    read: () => {
      if (!startInput.value) return undefined;
      const u = localToUtc(startInput.value);
      if (!u) throw new FieldProblem('start_time', 'Enter a date and a time.');
      return u;
    },
  };
  startInput.id = 'st-start';

  // Prices: rebuilt when the screen changes, keeping what was typed for a category of the
  // same name.
  const priceBox = h('div', { class: 'price-grid' });
  const priceSet = h(
    'fieldset',
    { class: 'prices' },
    h('legend', {}, 'Prices in rupees (₹), one per seat category'),
    priceBox,
  );
  let priceInputs = new Map();
  let loadedFor = null;
  const typed = new Map();
  const loadPrices = async (initial) => {
    const id = screen.input.value;
    for (const [cat, input] of priceInputs) typed.set(cat, input.value);
    errs.remove('prices.');
    priceInputs = new Map();
    clear(priceBox);
    loadedFor = id;
    if (!id) {
      priceBox.append(h('p', { class: 'muted' }, 'Choose a screen to see its seat categories.'));
      return;
    }
    priceBox.append(h('p', { class: 'muted' }, 'Loading the screen’s categories…'));
    let scr;
    try {
      scr = await get(`/api/screens/${id}`);
    } catch (e) {
      clear(priceBox).append(errorBox(e));
      return;
    }
    if (loadedFor !== id) return;
    clear(priceBox);
    for (const cat of scr.layout.categories) {
      const input = h('input', { type: 'text', inputmode: 'decimal', name: `price-${cat}`, autocomplete: 'off' });
      if (typed.has(cat)) input.value = typed.get(cat);
      else if (initial && initial[cat] !== undefined) input.value = paiseToRupees(initial[cat]);
      priceInputs.set(cat, input);
      errs.add(`prices.${cat}`, input, `the ${cat} price`);
      priceBox.append(field(`${cat} (₹)`, input));
    }
  };
  screen.input.addEventListener('change', () => loadPrices(existing && existing.prices));
  const prices = {
    name: 'prices',
    label: 'Prices',
    input: priceSet,
    wrap: priceSet,
    set: () => {},
    read: () => {
      const out = {};
      for (const [cat, input] of priceInputs) {
        const v = input.value.trim();
        if (v === '') throw new FieldProblem(`prices.${cat}`, `Enter a price for ${cat} in rupees, e.g. 250.`);
        const p = rupeesToPaise(v);
        if (Number.isNaN(p)) throw new FieldProblem(`prices.${cat}`, 'Enter rupees as a number, e.g. 250 or 249.50.');
        out[cat] = p;
      }
      return priceInputs.size ? out : undefined;
    },
  };
  const fields = [movie, screen, start, prices];
  if (existing) {
    movie.set(existing.movie_id);
    screen.set(existing.screen_id);
    start.set(existing.start_time);
  } else {
    start.set(null);
  }
  const ready = loadPrices(existing && existing.prices);
  fields.ready = ready;
  return fields;
}

// Equal as JSON values, whatever the order of object members (prices come back sorted).
function same(a, b) {
  const canon = (x) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, canon(x[k])]))
      : x;
  return JSON.stringify(canon(a)) === JSON.stringify(canon(b));
}

// ---- the page ---------------------------------------------------------------------------

const remembered = {};

export async function render(root, { params }) {
  const kindName = params[0] || 'theaters';
  const kind = KINDS[kindName];
  pageTitle(root, kind ? `Catalog: ${kind.title}` : 'Catalog');
  root.append(adminNav('catalog'));
  root.append(
    h(
      'nav',
      { class: 'tabs', 'aria-label': 'Catalog' },
      h(
        'ul',
        {},
        Object.entries(KINDS).map(([k, v]) =>
          h('li', {}, h('a', { href: `#/admin/catalog/${k}`, 'aria-current': k === kindName ? 'page' : null }, v.title)),
        ),
      ),
    ),
  );
  if (!kind) {
    root.append(errorBox(`There is no catalog list called “${kindName}”. Choose one above.`));
    return undefined;
  }

  const state = remembered[kindName] || (remembered[kindName] = { page: 1, filters: {} });
  const messages = h('div', { class: 'messages' });
  const formSlot = h('div', { class: 'form-slot' });
  const listBox = h('div', { class: 'list-box' });
  let alive = true;

  let lk;
  try {
    lk = await lookups();
  } catch (e) {
    root.append(errorBox(e));
    return undefined;
  }

  const newButton = kind.newLink
    ? h('a', { class: 'button primary', href: kind.newLink }, `New ${kind.noun}`)
    : h('button', { type: 'button', class: 'primary', onclick: () => openForm(null) }, `New ${kind.noun}`);
  const filterBox = h('div', { class: 'filters row' }, kind.filters(state, lk, (p) => load(p)));
  root.append(h('div', { class: 'toolbar row' }, filterBox, h('div', { class: 'grow' }), newButton), formSlot, messages, listBox);

  // Only the newest list request draws: an older, slower answer for other filters is dropped.
  let loadSeq = 0;
  async function load(page = state.page) {
    const my = ++loadSeq;
    const params = {
      ...(kind.listParams ? kind.listParams(state) : {}),
      ...(kind.filterParams ? kind.filterParams(state.filters) : state.filters),
      limit: LIMIT,
    };
    let r;
    try {
      if (page === 'last') {
        const first = await get(`${kind.path}${query({ ...params, page: 1, limit: 1 })}`);
        page = Math.max(1, Math.ceil(first.total / LIMIT));
      }
      r = await get(`${kind.path}${query({ ...params, page })}`);
    } catch (e) {
      if (alive && my === loadSeq) clear(listBox).append(errorBox(e));
      return;
    }
    if (!alive || my !== loadSeq) return;
    state.page = page;
    renderList(r);
  }

  function renderList(r) {
    clear(listBox);
    if (!r.items.length) {
      listBox.append(h('p', { class: 'muted empty' }, r.total ? 'No more on this page.' : `No ${kind.title.toLowerCase()} match.`));
    } else {
      const table = h(
        'table',
        { class: 'catalog-table' },
        h('caption', { class: 'visually-hidden' }, `${kind.title}, page ${r.page}`),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { scope: 'col', class: 'num' }, 'Id'),
            kind.columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)),
            h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')),
          ),
        ),
        h(
          'tbody',
          {},
          r.items.map((x) => {
            const name = kind.describe(x, lk);
            return h(
              'tr',
              { dataset: { id: x.id } },
              h('td', { class: 'num' }, x.id),
              kind.columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.cell(x, lk))),
              h(
                'td',
                { class: 'actions' },
                kind.editLink
                  ? h('a', { class: 'button small', href: kind.editLink(x), 'aria-label': `Edit ${kind.noun} ${name}` }, 'Edit')
                  : h(
                      'button',
                      { type: 'button', class: 'small', 'aria-label': `Edit ${kind.noun} ${name}`, onclick: () => openForm(x) },
                      'Edit',
                    ),
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'small danger-outline',
                    'aria-label': `Delete ${kind.noun} ${name}`,
                    onclick: (ev) => remove(x, name, ev.currentTarget),
                  },
                  'Delete',
                ),
              ),
            );
          }),
        ),
      );
      listBox.append(h('div', { class: 'table-wrap', role: 'region', 'aria-label': kind.title, tabindex: '0' }, table));
    }
    listBox.append(pager({ page: r.page, limit: LIMIT, total: r.total, onPage: (p) => load(p), label: `${kind.title} pages` }));
  }

  async function remove(x, name, button) {
    clear(messages);
    const ok = await confirmDialog(
      `Delete this ${kind.noun}?`,
      `“${name}” will be removed for good.`,
      `Delete ${kind.noun}`,
    );
    if (!ok) {
      button.focus();
      return;
    }
    try {
      await del(`${kind.path}/${x.id}`);
    } catch (e) {
      messages.append(errorBox(deleteText(e, kind)));
      return;
    }
    forgetEntity(kindName, x.id);
    toast(`Deleted ${kind.noun} “${name}”.`, 'ok');
    if (kindName !== 'showtimes') lk = await lookups().catch(() => lk);
    await load(state.page);
  }

  async function openForm(existing) {
    clear(formSlot);
    clear(messages);
    let current = existing;
    if (existing) {
      try {
        current = await get(`${kind.path}/${existing.id}`);
      } catch (e) {
        messages.append(errorBox(e));
        return;
      }
    }
    const errs = fieldErrors();
    const general = h('div', { class: 'errors' });
    const fields = kind.form ? await kind.form(current, lk, errs) : kind.fields(current);
    for (const f of fields) {
      errs.add(f.name, f.input, f.label);
      if (current && !kind.form) f.set(current[f.name]);
    }
    const save = h('button', { type: 'submit', class: 'primary' }, existing ? 'Save changes' : `Create ${kind.noun}`);
    const cancel = h('button', { type: 'button', onclick: () => close() }, 'Cancel');
    const title = existing ? `Edit ${kind.noun} #${existing.id}` : `New ${kind.noun}`;
    const form = h(
      'form',
      { class: 'card catalog-form', novalidate: true, 'aria-labelledby': 'cf-title' },
      h('h2', { id: 'cf-title' }, title),
      h('div', { class: 'form-grid' }, fields.map((f) => f.wrap || field(f.label, f.input, f.hint))),
      general,
      h('div', { class: 'row' }, save, cancel),
    );
    form.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') close();
    });
    const close = () => {
      clear(formSlot);
      newButton.focus();
    };
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const done = await saveWith(
        save,
        general,
        errs,
        async () => {
          const body = {};
          try {
            for (const f of fields) {
              const v = f.read();
              if (v === undefined) continue;
              if (current && same(v, current[f.name])) continue;
              body[f.name] = v;
            }
          } catch (e) {
            if (!(e instanceof FieldProblem)) throw e;
            const marked = errs.mark(e.fieldName, e.message);
            if (marked) marked.input.focus();
            throw new Error(marked ? `Check ${marked.label}: ${e.message}` : e.message);
          }
          if (current && !Object.keys(body).length) return 'unchanged';
          return current ? patch(`${kind.path}/${current.id}`, body) : post(kind.path, body);
        },
        (e) => (e instanceof ApiError ? errorText(e) : e.message),
      );
      if (!done) return;
      if (done === 'unchanged') {
        toast('Nothing changed.', 'info');
        close();
        return;
      }
      forgetEntity(kindName, done.id);
      const name = kind.describe({ ...done, movie_title: undefined }, lk);
      toast(existing ? `Saved ${kind.noun} “${name}”.` : `Created ${kind.noun} “${name}” (#${done.id}).`, 'ok');
      clear(formSlot);
      newButton.focus();
      lk = await lookups().catch(() => lk);
      await load(existing || kindName === 'showtimes' ? state.page : 'last');
    });
    formSlot.append(form);
    if (fields.ready) await fields.ready;
    fields[0].input.focus();
  }

  await load();
  return () => {
    alive = false;
  };
}

// A refused delete in words: what depends on it and what to do.
function deleteText(e, kind) {
  if (!(e instanceof ApiError)) return errorText(e);
  if (e.slug === 'in-use') {
    const detail = e.detail ? `${e.detail.charAt(0).toUpperCase()}${e.detail.slice(1)}.` : '';
    return e.retryAfter
      ? `Cannot delete this ${kind.noun} right now: a change that refers to it is in progress. Try again in a moment.`
      : `Cannot delete this ${kind.noun}: it is still in use. ${detail}`;
  }
  if (e.slug === 'showtime-in-use') {
    return `Cannot delete this showtime: it has live holds or confirmed bookings (${e.detail || 'seats are held or sold'}). A showtime that sold seats stays in the catalog.`;
  }
  return errorText(e);
}
