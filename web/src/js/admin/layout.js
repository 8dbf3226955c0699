// The seat-layout editor (#/admin/layout and #/admin/layout/:screenId): builds a screen's
// layout (docs/api.md, "Screen layouts": categories, rows front first, seats per row, aisles,
// wheelchair spaces, companion seats, blocked seats) with a live preview drawn like the
// buyer's seat map. Clicking a seat in the preview cycles it through wheelchair space →
// companion → blocked → normal. Saves with POST /api/screens (new) or PATCH (existing); a
// refusal names the row it points at.

import { get, post, patch, ApiError, errorText } from '../api.js';
import { h, clear, toast, errorBox, field, pageTitle } from '../ui.js';
import { navigate } from '../app.js';
import { adminNav } from './nav.js';
import { fetchAll, fieldErrors } from './common.js';

const MAX_CATEGORIES = 8;
const MAX_ROWS = 2048;
const PREVIEW_SEATS = 6000; // the preview draws at most this many seats
const MARKS = ['accessible', 'companion', 'blocked'];
const MARK_WORDS = { accessible: 'wheelchair space', companion: 'companion seat', blocked: 'blocked (not for sale)' };
const MARK_SIGN = { accessible: 'W', companion: 'C', blocked: '×' };

function defaultLayout() {
  return {
    categories: ['regular'],
    best_row: '',
    rows: ['A', 'B', 'C', 'D', 'E'].map((label) => row(label, 'regular', 10)),
  };
}

function row(label, category, seats, aisles = []) {
  return { label, category, seats, aisles_after: [...aisles], accessible: [], companion: [], blocked: [] };
}

// The next row label after `label`: A → B, Z → AA, AZ → BA, 9 → 10.
function nextLabel(label, taken) {
  let l = label || '';
  for (let i = 0; i < 5000; i++) {
    if (/^\d+$/.test(l)) l = String(Number(l) + 1);
    else if (!l) l = 'A';
    else {
      const chars = l.toUpperCase().split('');
      let j = chars.length - 1;
      while (j >= 0) {
        if (chars[j] === 'Z') {
          chars[j] = 'A';
          j--;
        } else if (/[A-Y]/.test(chars[j])) {
          chars[j] = String.fromCharCode(chars[j].charCodeAt(0) + 1);
          break;
        } else {
          chars[j] = 'A';
          j--;
        }
      }
      if (j < 0) chars.unshift('A');
      l = chars.join('');
    }
    if (!taken.has(l)) return l;
  }
  return '';
}

// "4, 12" → [4, 12] (ascending, once each); null when something is not a seat number.
function parseNumbers(text) {
  const parts = text.split(/[\s,;]+/).filter(Boolean);
  const out = [];
  for (const p of parts) {
    if (!/^\d+$/.test(p)) return null;
    out.push(Number(p));
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

// The layout as the API takes it: every row with its four lists (ascending), best_row only
// when chosen.
function toJson(layout) {
  const out = { categories: [...layout.categories] };
  if (layout.best_row) out.best_row = layout.best_row;
  out.rows = layout.rows.map((r) => ({
    label: r.label,
    category: r.category,
    seats: r.seats,
    aisles_after: [...r.aisles_after],
    accessible: [...r.accessible].sort((a, b) => a - b),
    companion: [...r.companion].sort((a, b) => a - b),
    blocked: [...r.blocked].sort((a, b) => a - b),
  }));
  return out;
}

// A layout from JSON (pasted, or a screen's): missing lists become empty ones.
function fromJson(j) {
  if (!j || typeof j !== 'object' || !Array.isArray(j.categories) || !Array.isArray(j.rows)) {
    throw new Error('A layout is an object with a "categories" list and a "rows" list.');
  }
  return {
    categories: j.categories.map(String),
    best_row: typeof j.best_row === 'string' ? j.best_row : '',
    rows: j.rows.map((r, i) => {
      if (!r || typeof r !== 'object') throw new Error(`rows[${i}] is not an object.`);
      const list = (k) => (Array.isArray(r[k]) ? r[k].filter((x) => Number.isInteger(x)) : []);
      return {
        label: String(r.label ?? ''),
        category: String(r.category ?? ''),
        seats: Number.isInteger(r.seats) ? r.seats : 0,
        aisles_after: list('aisles_after'),
        accessible: list('accessible'),
        companion: list('companion'),
        blocked: list('blocked'),
      };
    }),
  };
}

function markOf(r, n) {
  for (const m of MARKS) if (r[m].includes(n)) return m;
  return null;
}

function setMark(r, n, mark) {
  for (const m of MARKS) r[m] = r[m].filter((x) => x !== n);
  if (mark) r[mark].push(n);
}

function defaultBestRow(layout) {
  const i = Math.floor((layout.rows.length * 2) / 3);
  return layout.rows[i] ? layout.rows[i].label : '';
}

export async function render(root, { params }) {
  const screenId = params[0] ? Number(params[0]) : null;
  pageTitle(root, screenId ? `Seat layout: screen #${screenId}` : 'Seat layout: new screen');
  root.append(adminNav('layout'));

  let theaters;
  let screens;
  try {
    [theaters, screens] = await Promise.all([fetchAll('/api/theaters'), fetchAll('/api/screens')]);
  } catch (e) {
    root.append(errorBox(e));
    return undefined;
  }
  const theaterById = new Map(theaters.map((t) => [t.id, t]));

  let original = null;
  let layout = defaultLayout();
  let name = '';
  let theaterId = '';
  if (screenId) {
    try {
      original = await get(`/api/screens/${screenId}`);
    } catch (e) {
      root.append(errorBox(e), h('p', {}, h('a', { href: '#/admin/layout' }, 'Build a new screen instead')));
      return undefined;
    }
    layout = fromJson(original.layout);
    name = original.name;
    theaterId = String(original.theater_id);
  }

  const errs = fieldErrors();
  const general = h('div', { class: 'errors' });

  // ---- the screen: which one, its theater and name ----
  const pick = h('select', { name: 'screen' });
  pick.append(h('option', { value: '' }, 'New screen'));
  const groups = new Map();
  for (const s of screens) {
    const t = theaterById.get(s.theater_id);
    const g = t ? `${t.name} (${t.city})` : `Theater ${s.theater_id}`;
    if (!groups.has(g)) groups.set(g, h('optgroup', { label: g }));
    groups.get(g).append(h('option', { value: s.id }, `${s.name} (#${s.id})`));
  }
  pick.append(...groups.values());
  pick.value = screenId ? String(screenId) : '';
  pick.addEventListener('change', () => navigate(pick.value ? `/admin/layout/${pick.value}` : '/admin/layout'));

  const theaterSel = h('select', { name: 'theater_id', required: true });
  theaterSel.append(h('option', { value: '' }, 'Choose a theater'));
  for (const t of theaters) theaterSel.append(h('option', { value: t.id }, `${t.name} (${t.city})`));
  theaterSel.value = theaterId;
  const nameInput = h('input', { type: 'text', name: 'name', maxlength: 100, required: true, value: name });
  errs.add('theater_id', theaterSel, 'the theater');
  errs.add('name', nameInput, 'the screen name');

  const screenCard = h(
    'section',
    { class: 'card', 'aria-labelledby': 'ls-screen' },
    h('h2', { id: 'ls-screen' }, 'Screen'),
    field('Edit screen', pick, 'Pick an existing screen to change its layout, or build a new one.'),
    h('div', { class: 'form-grid' }, field('Theater', theaterSel), field('Screen name', nameInput)),
  );

  // ---- categories ----
  const catList = h('ul', { class: 'cat-list' });
  const addCat = h('button', { type: 'button', class: 'small' }, 'Add category');
  const catCard = h(
    'section',
    { class: 'card', 'aria-labelledby': 'ls-cats' },
    h('h2', { id: 'ls-cats' }, 'Seat categories'),
    h('p', { class: 'muted' }, 'Up to 8, cheapest first. Each showtime sets a price per category.'),
    catList,
    addCat,
  );
  addCat.addEventListener('click', () => {
    let n = layout.categories.length + 1;
    while (layout.categories.includes(`category ${n}`)) n++;
    layout.categories.push(`category ${n}`);
    renderCats();
    renderRows();
    update();
    catList.querySelector('li:last-child input').focus();
  });

  function renderCats() {
    errs.remove('layout.categories');
    clear(catList);
    layout.categories.forEach((c, i) => {
      const input = h('input', { type: 'text', value: c, maxlength: 23, 'aria-label': `Category ${i + 1} name` });
      input.addEventListener('change', () => {
        const old = layout.categories[i];
        const v = input.value.trim();
        layout.categories[i] = v;
        for (const r of layout.rows) if (r.category === old) r.category = v;
        renderRows();
        update();
      });
      const del = h(
        'button',
        {
          type: 'button',
          class: 'small',
          disabled: layout.categories.length <= 1,
          'aria-label': `Remove category ${c}`,
          onclick: () => {
            const gone = layout.categories.splice(i, 1)[0];
            for (const r of layout.rows) if (r.category === gone) r.category = layout.categories[0];
            renderCats();
            renderRows();
            update();
            catList.querySelector('input').focus();
          },
        },
        'Remove',
      );
      errs.add(`layout.categories[${i}]`, input, `category ${i + 1}`);
      catList.append(h('li', {}, h('span', { class: `swatch cat-${i % 8}`, 'aria-hidden': 'true' }), input, del));
    });
    if (layout.categories.length) errs.add('layout.categories', catList.querySelector('input'), 'the categories');
    addCat.disabled = layout.categories.length >= MAX_CATEGORIES;
  }

  // ---- rows ----
  const rowsBody = h('tbody', {});
  const bestSel = h('select', { name: 'best_row' });
  errs.add('layout.best_row', bestSel, 'the best row');
  bestSel.addEventListener('change', () => {
    layout.best_row = bestSel.value;
    update();
  });
  const addRowBtn = h('button', { type: 'button', class: 'small' }, 'Add a row at the back');
  errs.add('layout.rows', addRowBtn, 'the rows');
  addRowBtn.addEventListener('click', () => {
    const last = layout.rows[layout.rows.length - 1];
    const taken = new Set(layout.rows.map((r) => r.label.toUpperCase()));
    layout.rows.push(
      last
        ? row(nextLabel(last.label, taken), last.category, last.seats, last.aisles_after)
        : row('A', layout.categories[0], 10),
    );
    renderRows();
    update();
    rowsBody.querySelector('tr:last-child input').focus();
  });

  function renderRows() {
    errs.remove('layout.rows[');
    clear(rowsBody);
    layout.rows.forEach((r, i) => {
      const label = h('input', { type: 'text', class: 'label-in', value: r.label, maxlength: 7, 'aria-label': `Row ${i + 1} label` });
      label.addEventListener('change', () => {
        r.label = label.value.trim();
        renderBest();
        update();
      });
      const cat = h('select', { 'aria-label': `Row ${r.label || i + 1} category` });
      for (const c of layout.categories) cat.append(h('option', { value: c }, c));
      if (!layout.categories.includes(r.category)) cat.append(h('option', { value: r.category }, `${r.category} (unknown)`));
      cat.value = r.category;
      cat.addEventListener('change', () => {
        r.category = cat.value;
        update();
      });
      const seats = h('input', {
        type: 'number', class: 'seats-in', min: 1, max: 1000, value: r.seats, 'aria-label': `Row ${r.label || i + 1} seats`,
      });
      seats.addEventListener('input', () => {
        const n = Number(seats.value);
        if (!Number.isInteger(n) || n < 1) return;
        r.seats = Math.min(n, 1000);
        for (const m of MARKS) r[m] = r[m].filter((x) => x <= r.seats);
        update();
      });
      const aisles = h('input', {
        type: 'text', class: 'aisles-in', value: r.aisles_after.join(', '), inputmode: 'numeric',
        'aria-label': `Row ${r.label || i + 1} aisles after seats`, placeholder: 'e.g. 4, 12',
      });
      aisles.addEventListener('change', () => {
        const v = parseNumbers(aisles.value);
        errs.clear();
        if (!v) {
          errs.mark(`layout.rows[${i}].aisles_after`, 'Seat numbers separated by commas, e.g. 4, 12.');
          return;
        }
        r.aisles_after = v;
        aisles.value = v.join(', ');
        update();
      });
      const up = h('button', { type: 'button', class: 'small', disabled: i === 0, 'aria-label': `Move row ${r.label} forward`, title: `Move row ${r.label} one row nearer the screen` }, '↑');
      up.addEventListener('click', () => {
        [layout.rows[i - 1], layout.rows[i]] = [layout.rows[i], layout.rows[i - 1]];
        renderRows();
        update();
        rowsBody.children[i - 1].querySelector('button[aria-label^="Move"]:not(:disabled)').focus();
      });
      const rm = h('button', { type: 'button', class: 'small danger-outline', disabled: layout.rows.length <= 1, 'aria-label': `Remove row ${r.label}`, title: `Remove row ${r.label}` }, '✕');
      rm.addEventListener('click', () => {
        layout.rows.splice(i, 1);
        renderRows();
        update();
        const tr = rowsBody.children[Math.min(i, layout.rows.length - 1)];
        if (tr) tr.querySelector('input').focus();
      });
      const who = `row ${r.label || i + 1}`;
      errs.add(`layout.rows[${i}]`, label, `${who} (row ${i + 1} from the front)`);
      errs.add(`layout.rows[${i}].label`, label, `${who}'s label (row ${i + 1} from the front)`);
      errs.add(`layout.rows[${i}].category`, cat, `${who}'s category`);
      errs.add(`layout.rows[${i}].seats`, seats, `${who}'s seat count`);
      errs.add(`layout.rows[${i}].aisles_after`, aisles, `${who}'s aisles`);
      rowsBody.append(
        h(
          'tr',
          { dataset: { row: i } },
          h('td', {}, label),
          h('td', {}, cat),
          h('td', {}, seats),
          h('td', {}, aisles),
          h('td', { class: 'actions' }, up, ' ', rm),
        ),
      );
    });
    renderBest();
    addRowBtn.disabled = layout.rows.length >= MAX_ROWS;
  }

  function renderBest() {
    clear(bestSel);
    bestSel.append(h('option', { value: '' }, `Default (row ${defaultBestRow(layout) || '—'})`));
    for (const r of layout.rows) if (r.label) bestSel.append(h('option', { value: r.label }, `Row ${r.label}`));
    if (layout.best_row && !layout.rows.some((r) => r.label === layout.best_row)) {
      bestSel.append(h('option', { value: layout.best_row }, `${layout.best_row} (no such row)`));
    }
    bestSel.value = layout.best_row || '';
  }

  // Bulk tools: add several rows; set a category on a range of rows; aisles for every row.
  const bulkCount = h('input', { type: 'number', min: 1, max: 100, value: 3 });
  const bulkSeats = h('input', { type: 'number', min: 1, max: 1000, value: 12 });
  const bulkCat = h('select', {});
  const rangeFrom = h('select', {});
  const rangeTo = h('select', {});
  const rangeCat = h('select', {});
  const allAisles = h('input', { type: 'text', placeholder: 'e.g. 4, 12', inputmode: 'numeric' });
  const bulkMsg = h('div', { class: 'errors' });
  function refreshBulk() {
    for (const sel of [bulkCat, rangeCat]) {
      const v = sel.value;
      clear(sel);
      for (const c of layout.categories) sel.append(h('option', { value: c }, c));
      if (layout.categories.includes(v)) sel.value = v;
    }
    for (const [sel, last] of [[rangeFrom, false], [rangeTo, true]]) {
      const v = sel.value;
      clear(sel);
      layout.rows.forEach((r, i) => sel.append(h('option', { value: i }, r.label || `#${i + 1}`)));
      sel.value = v !== '' && Number(v) < layout.rows.length ? v : String(last ? layout.rows.length - 1 : 0);
    }
  }
  const bulkCard = h(
    'details',
    { class: 'bulk-tools' },
    h('summary', {}, 'Quick edits: several rows at once'),
    h(
      'div',
      { class: 'bulk' },
      field('Rows to add', bulkCount),
      field('Seats each', bulkSeats),
      field('Category', bulkCat),
      h('button', {
        type: 'button',
        class: 'small',
        onclick: () => {
          const n = Math.min(Number(bulkCount.value) || 0, MAX_ROWS - layout.rows.length);
          const seats = Math.min(Math.max(Number(bulkSeats.value) || 1, 1), 1000);
          const taken = new Set(layout.rows.map((r) => r.label.toUpperCase()));
          let last = layout.rows.length ? layout.rows[layout.rows.length - 1].label : '';
          for (let k = 0; k < n; k++) {
            const l = nextLabel(last, taken);
            taken.add(l);
            layout.rows.push(row(l, bulkCat.value, seats));
            last = l;
          }
          renderRows();
          update();
          toast(`Added ${n} rows.`, 'ok', 2500);
        },
      }, 'Add rows'),
    ),
    h(
      'div',
      { class: 'bulk' },
      field('From row', rangeFrom),
      field('To row', rangeTo),
      field('Category', rangeCat),
      h('button', {
        type: 'button',
        class: 'small',
        onclick: () => {
          const a = Number(rangeFrom.value);
          const b = Number(rangeTo.value);
          for (let k = Math.min(a, b); k <= Math.max(a, b); k++) layout.rows[k].category = rangeCat.value;
          renderRows();
          update();
        },
      }, 'Set category'),
    ),
    h(
      'div',
      { class: 'bulk' },
      field('Aisles after seats, every row', allAisles),
      h('button', {
        type: 'button',
        class: 'small',
        onclick: () => {
          clear(bulkMsg);
          const v = parseNumbers(allAisles.value);
          if (!v) {
            bulkMsg.append(errorBox('Aisles: seat numbers separated by commas, e.g. 4, 12.'));
            return;
          }
          for (const r of layout.rows) r.aisles_after = v.filter((x) => x < r.seats);
          renderRows();
          update();
        },
      }, 'Set aisles'),
    ),
    bulkMsg,
  );

  const rowsCard = h(
    'section',
    { class: 'card', 'aria-labelledby': 'ls-rows' },
    h('h2', { id: 'ls-rows' }, 'Rows'),
    h('p', { class: 'muted' }, 'Front row (nearest the screen) first. Seats are numbered from the left; an aisle follows the seat numbers you list.'),
    h(
      'div',
      { class: 'rows-wrap', role: 'region', 'aria-label': 'Rows', tabindex: '0' },
      h(
        'table',
        { class: 'rows-table' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { scope: 'col' }, 'Row'),
            h('th', { scope: 'col' }, 'Category'),
            h('th', { scope: 'col' }, 'Seats'),
            h('th', { scope: 'col' }, 'Aisles after'),
            h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')),
          ),
        ),
        rowsBody,
      ),
    ),
    h('div', { class: 'row' }, addRowBtn),
    field('Best row (best available starts here)', bestSel),
    bulkCard,
  );

  // ---- JSON ----
  const jsonArea = h('textarea', { spellcheck: 'false', rows: 12, name: 'layout-json' });
  const jsonMsg = h('div', { class: 'errors' });
  const loadJson = h('button', { type: 'button', class: 'small' }, 'Use this JSON');
  loadJson.addEventListener('click', () => {
    clear(jsonMsg);
    try {
      layout = fromJson(JSON.parse(jsonArea.value));
    } catch (e) {
      jsonMsg.append(errorBox(`This JSON cannot be used: ${e.message}`));
      return;
    }
    renderAll();
    toast('Layout loaded from the JSON.', 'ok', 2500);
  });
  const jsonCard = h(
    'section',
    { class: 'card json-box', 'aria-labelledby': 'ls-json' },
    h('h2', { id: 'ls-json' }, 'Layout JSON'),
    h('p', { class: 'muted' }, 'Exactly what is sent as the screen’s layout. Paste a layout here and press “Use this JSON” to load it.'),
    field('Layout as JSON', jsonArea),
    h('div', { class: 'row' }, loadJson),
    jsonMsg,
  );

  // ---- preview ----
  const grid = h('div', { class: 'seat-grid', role: 'group', 'aria-label': 'Seats, front row first. Arrow keys move; Enter changes the seat.' });
  const stats = h('p', { class: 'stats muted', 'aria-live': 'polite' });
  const more = h('p', { class: 'preview-more muted' });
  const legend = h('ul', { class: 'legend', 'aria-label': 'Legend' });
  const save = h('button', { type: 'button', class: 'primary' }, screenId ? 'Save layout' : 'Create screen');
  const previewCard = h(
    'section',
    { class: 'card preview-card', 'aria-labelledby': 'ls-preview' },
    h('h2', { id: 'ls-preview' }, 'Preview'),
    h('p', { class: 'muted' }, 'Click a seat to make it a wheelchair space (W), then a companion seat (C), then blocked (×), then normal again.'),
    h('div', { class: 'seat-preview' }, h('div', { class: 'screen-bar', 'aria-hidden': 'true' }, 'SCREEN'), grid),
    more,
    legend,
    stats,
    general,
    h('div', { class: 'row' }, save, screenId ? h('a', { href: '#/admin/catalog/screens' }, 'All screens') : null),
  );

  let focusAt = { r: 0, n: 1 };
  function seatLabel(r, n, mark) {
    return `${r.label}${n}, ${r.category}${mark ? `, ${MARK_WORDS[mark]}` : ''}`;
  }
  function paintSeat(btn, r, n) {
    const mark = markOf(r, n);
    const ci = layout.categories.indexOf(r.category);
    btn.className = `seat cat-${(ci < 0 ? 7 : ci) % 8}${mark ? ` ${mark}` : ''}`;
    btn.textContent = mark ? MARK_SIGN[mark] : '';
    btn.setAttribute('aria-label', seatLabel(r, n, mark));
    btn.title = seatLabel(r, n, mark);
  }
  function renderPreview() {
    clear(grid);
    let drawn = 0;
    const best = layout.best_row || defaultBestRow(layout);
    let shownRows = 0;
    for (let ri = 0; ri < layout.rows.length; ri++) {
      const r = layout.rows[ri];
      if (drawn + r.seats > PREVIEW_SEATS && shownRows > 0) break;
      shownRows++;
      const line = h('div', { class: `seat-row${r.label === best ? ' best' : ''}`, dataset: { row: r.label } });
      line.append(h('span', { class: 'row-label', 'aria-hidden': 'true' }, r.label));
      const aisles = new Set(r.aisles_after);
      for (let n = 1; n <= r.seats; n++) {
        const b = h('button', { type: 'button', tabindex: '-1', dataset: { r: ri, n } });
        paintSeat(b, r, n);
        line.append(b);
        if (aisles.has(n) && n < r.seats) line.append(h('span', { class: 'aisle', 'aria-hidden': 'true' }));
      }
      line.append(h('span', { class: 'row-label', 'aria-hidden': 'true' }, r.label));
      grid.append(line);
      drawn += r.seats;
    }
    more.textContent = shownRows < layout.rows.length
      ? `The preview shows the first ${shownRows} of ${layout.rows.length} rows (${drawn} seats).`
      : '';
    const target = grid.querySelector(`button[data-r="${focusAt.r}"][data-n="${focusAt.n}"]`) || grid.querySelector('button');
    if (target) target.tabIndex = 0;
  }
  grid.addEventListener('click', (ev) => {
    const b = ev.target.closest('button.seat');
    if (!b) return;
    const r = layout.rows[Number(b.dataset.r)];
    const n = Number(b.dataset.n);
    const cur = markOf(r, n);
    const next = cur === null ? MARKS[0] : MARKS[MARKS.indexOf(cur) + 1] || null;
    setMark(r, n, next);
    paintSeat(b, r, n);
    moveFocus(b);
    updateJson();
  });
  function moveFocus(b) {
    for (const x of grid.querySelectorAll('button[tabindex="0"]')) x.tabIndex = -1;
    b.tabIndex = 0;
    focusAt = { r: Number(b.dataset.r), n: Number(b.dataset.n) };
  }
  grid.addEventListener('keydown', (ev) => {
    const b = ev.target.closest('button.seat');
    if (!b) return;
    const line = b.parentElement;
    const inRow = [...line.querySelectorAll('button.seat')];
    const i = inRow.indexOf(b);
    let t = null;
    if (ev.key === 'ArrowRight') t = inRow[i + 1];
    else if (ev.key === 'ArrowLeft') t = inRow[i - 1];
    else if (ev.key === 'Home') t = inRow[0];
    else if (ev.key === 'End') t = inRow[inRow.length - 1];
    else if (ev.key === 'ArrowUp' || ev.key === 'ArrowDown') {
      const other = ev.key === 'ArrowUp' ? line.previousElementSibling : line.nextElementSibling;
      if (other) {
        const seats = [...other.querySelectorAll('button.seat')];
        t = seats[Math.min(i, seats.length - 1)];
      }
    } else return;
    ev.preventDefault();
    if (t) {
      moveFocus(t);
      t.focus();
    }
  });

  function renderLegend() {
    clear(legend);
    layout.categories.forEach((c, i) => {
      legend.append(h('li', {}, h('span', { class: `seat cat-${i % 8}`, 'aria-hidden': 'true' }), c));
    });
    for (const m of MARKS) {
      legend.append(h('li', {}, h('span', { class: `seat cat-7 ${m}`, 'aria-hidden': 'true' }, MARK_SIGN[m]), MARK_WORDS[m]));
    }
  }

  function updateJson() {
    const j = toJson(layout);
    jsonArea.value = JSON.stringify(j, null, 1).replace(/\[\s+([\d,\s]*?)\s+\]/g, (m, inner) => `[${inner.replace(/\s+/g, ' ')}]`);
    const count = (k) => layout.rows.reduce((a, r) => a + r[k].length, 0);
    const seats = layout.rows.reduce((a, r) => a + r.seats, 0);
    const n = (k, one, many) => `${k} ${k === 1 ? one : many}`;
    stats.textContent = `${n(layout.rows.length, 'row', 'rows')}, ${n(seats, 'seat', 'seats')}: ${seats - count('blocked')} for sale, ${n(count('accessible'), 'wheelchair space', 'wheelchair spaces')}, ${n(count('companion'), 'companion seat', 'companion seats')}, ${count('blocked')} blocked.`;
  }

  function update() {
    refreshBulk();
    renderLegend();
    renderPreview();
    updateJson();
  }

  function renderAll() {
    renderCats();
    renderRows();
    update();
  }

  // ---- save ----
  save.addEventListener('click', async () => {
    save.disabled = true;
    clear(general);
    errs.clear();
    for (const tr of rowsBody.querySelectorAll('tr.row-error')) tr.classList.remove('row-error');
    const j = toJson(layout);
    const body = {};
    const tid = theaterSel.value === '' ? undefined : Number(theaterSel.value);
    const nm = nameInput.value.trim();
    try {
      let answer;
      if (original) {
        if (tid !== undefined && tid !== original.theater_id) body.theater_id = tid;
        if (nm !== original.name) body.name = nm;
        if (JSON.stringify(j) !== JSON.stringify(toJson(fromJson(original.layout)))) body.layout = j;
        if (!Object.keys(body).length) {
          toast('Nothing changed.', 'info');
          return;
        }
        answer = await patch(`/api/screens/${original.id}`, body);
      } else {
        answer = await post('/api/screens', { theater_id: tid, name: nm, layout: j });
      }
      toast(original ? `Saved screen “${answer.name}”.` : `Created screen “${answer.name}” (#${answer.id}).`, 'ok');
      if (original) {
        original = answer;
        layout = fromJson(answer.layout);
        renderAll();
      } else {
        navigate(`/admin/layout/${answer.id}`);
      }
    } catch (e) {
      general.append(errorBox(saveText(e)));
      if (e instanceof ApiError && e.field && e.slug === 'invalid-field') {
        const f = errs.show(e);
        const m = /^layout\.rows\[(\d+)\]/.exec(e.field);
        if (m && rowsBody.children[Number(m[1])]) rowsBody.children[Number(m[1])].classList.add('row-error');
        if (!f) general.scrollIntoView({ block: 'nearest' });
      } else if (e instanceof ApiError && e.field && e.slug !== 'in-use') {
        errs.show(e);
      }
    } finally {
      save.disabled = false;
    }
  });

  // The refusal in words, naming the row (by label and place) a layout path points at.
  function saveText(e) {
    if (!(e instanceof ApiError)) return errorText(e);
    if (e.slug === 'in-use') {
      return `This screen’s layout or theater cannot change: showtimes use it. Delete its showtimes first, or build a new screen. (${e.detail})`;
    }
    if (e.slug === 'unknown-reference' && e.field === 'theater_id') return 'That theater no longer exists. Choose another.';
    if (e.slug !== 'invalid-field' || !e.field) return errorText(e);
    const detail = e.detail || 'is not accepted';
    const m = /^layout\.rows\[(\d+)\](?:\.(\w+))?(?:\[(\d+)\])?/.exec(e.field);
    if (m) {
      const i = Number(m[1]);
      const r = layout.rows[i];
      const what = { label: 'label', category: 'category', seats: 'seat count', aisles_after: 'aisles', accessible: 'wheelchair spaces', companion: 'companion seats', blocked: 'blocked seats' }[m[2]] || m[2] || '';
      const item = m[3] !== undefined && r && r[m[2]] ? ` (seat ${r[m[2]][Number(m[3])]})` : '';
      return `Row ${r ? r.label : i + 1} (row ${i + 1} from the front)${what ? `, ${what}${item}` : ''}: ${detail}.`;
    }
    const c = /^layout\.categories\[(\d+)\]/.exec(e.field);
    if (c) return `Category ${Number(c[1]) + 1} (“${layout.categories[Number(c[1])] ?? ''}”): ${detail}.`;
    const names = { theater_id: 'Theater', name: 'Screen name', 'layout.best_row': 'Best row', 'layout.rows': 'Rows', 'layout.categories': 'Categories' };
    return `${names[e.field] || e.field}: ${detail}.`;
  }

  root.append(
    h('div', { class: 'layout-page' }, h('div', { class: 'layout-edit' }, screenCard, catCard, rowsCard, jsonCard), previewCard),
  );
  renderAll();
  return undefined;
}
