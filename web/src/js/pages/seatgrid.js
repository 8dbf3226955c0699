// The seat map as an ARIA grid: the screen's rows front first, each with its label on both
// sides, seats placed by their physical column (a gap in `col` is an aisle), rows grouped by
// category. One tab stop: the arrow keys move between seats, Home/End go to a row's ends,
// Space or Enter toggles a seat. Every seat's accessible name says what it is and its state
// ("F7, gold, ₹250.00, free"); states are drawn with symbols and patterns, not colour alone.

import { h, clear, money } from '../ui.js';

// Text colours for up to 8 categories (each 4.5:1 or more on white and on its 10 % tint).
export const CATEGORY_COLOURS = ['#4a5561', '#845400', '#6a1b9a', '#00695c', '#ad1457', '#2b5f8e', '#7b3f00', '#37474f'];

const STATE_WORDS = {
  free: 'free',
  held: 'held by someone else',
  sold: 'sold',
  unavailable: 'not for sale',
  mine: 'held for you',
};

export class SeatGrid {
  // view(seat) -> 'free' | 'selected' | 'mine' | 'held' | 'sold' | 'unavailable';
  // onToggle(seat) when a seat is clicked or Space/Enter is pressed on it.
  constructor({ view, onToggle, label = 'Seats' }) {
    this.view = view;
    this.onToggle = onToggle;
    this.seats = new Map(); // label -> seat (with .el)
    this.rows = []; // [{label, seats: [seat, ...] by col}]
    this.categories = []; // [{name, price, ...}] in layout order
    this.catIndex = new Map();
    this.signature = '';
    this.active = null;
    this.el = h('div', { class: 'seatgrid', role: 'grid', 'aria-label': label, 'aria-multiselectable': 'true' });
    this.el.addEventListener('keydown', (ev) => this.key(ev));
    this.el.addEventListener('click', (ev) => {
      const cell = ev.target.closest('.seat');
      if (!cell) return;
      const seat = this.seats.get(cell.dataset.label);
      this.setActive(seat, true);
      this.onToggle(seat);
    });
  }

  // A seat map answer (GET /api/seats/:id or a snapshot event): builds the grid when the layout
  // is new, else updates states and prices in place (focus stays where it is).
  load(map) {
    const sig = map.seats.map((s) => `${s.label}@${s.col}`).join(',');
    this.categories = map.categories;
    this.catIndex = new Map(map.categories.map((c, i) => [c.name, i]));
    if (sig !== this.signature) {
      this.signature = sig;
      this.build(map);
      return true;
    }
    for (const s of map.seats) {
      const seat = this.seats.get(s.label);
      Object.assign(seat, { state: s.state, price: s.price, category: s.category });
      this.paint(seat);
    }
    return false;
  }

  build(map) {
    const activeLabel = this.active && this.active.label;
    clear(this.el);
    this.seats = new Map();
    this.rows = [];
    const maxCol = Math.max(1, ...map.seats.map((s) => s.col));
    this.el.style.setProperty('--cols', String(maxCol));
    this.el.style.setProperty('--tmpl', `var(--lab) repeat(${maxCol}, var(--seat)) var(--lab)`);
    let group = null;
    let groupCat = null;
    let row = null;
    for (const s of map.seats) {
      const seat = { ...s, el: null };
      this.seats.set(s.label, seat);
      if (!row || row.label !== s.row) {
        // A row's category is its first seat's: layouts give each row one category.
        if (s.category !== groupCat) {
          groupCat = s.category;
          const ci = this.catIndex.get(s.category) || 0;
          const cat = map.categories[ci];
          group = h(
            'div',
            { role: 'rowgroup', class: `seatgroup cat-${ci}`, 'aria-label': `${s.category}, ${money(cat ? cat.price : s.price)}` },
            h('div', { class: 'groupcap', 'aria-hidden': 'true' }, h('span', {}, `${s.category} · ${money(cat ? cat.price : s.price)}`)),
          );
          this.el.append(group);
        }
        row = { label: s.row, seats: [], el: h('div', { role: 'row', class: 'seatrow' }) };
        row.el.append(h('div', { role: 'rowheader', class: 'rowlabel', 'aria-label': `Row ${s.row}` }, s.row));
        this.rows.push(row);
        group.append(row.el);
      }
      seat.el = h('div', {
        role: 'gridcell',
        class: 'seat',
        tabindex: '-1',
        dataset: { label: s.label },
        style: { gridColumn: String(s.col + 1) },
      });
      row.seats.push(seat);
      row.el.append(seat.el);
      this.paint(seat);
    }
    for (const r of this.rows) {
      r.seats.sort((a, b) => a.col - b.col);
      r.el.append(h('div', { class: 'rowlabel end', 'aria-hidden': 'true', style: { gridColumn: String(maxCol + 2) } }, r.label));
    }
    const keep = activeLabel && this.seats.get(activeLabel);
    const firstFree = [...this.seats.values()].find((x) => x.state === 'free');
    this.setActive(keep || firstFree || this.rows[0].seats[0], false);
  }

  name(seat, v = this.view(seat)) {
    const parts = [seat.label, seat.category, money(seat.price)];
    if (seat.accessible) parts.push('wheelchair space');
    if (seat.companion) parts.push('companion seat');
    parts.push(STATE_WORDS[v === 'selected' ? 'free' : v] || v);
    return parts.join(', ');
  }

  paint(seat) {
    const v = this.view(seat);
    const el = seat.el;
    if (!el) return;
    const ci = this.catIndex.get(seat.category) || 0;
    let cls = `seat cat-${ci} s-${v}`;
    if (seat.accessible) cls += ' acc';
    if (seat.companion) cls += ' comp';
    el.className = cls;
    let sym;
    if (v === 'selected') sym = '✓';
    else if (v === 'mine') sym = '★';
    else if (v === 'sold') sym = '×';
    else if (v === 'held' || v === 'unavailable') sym = '';
    else if (seat.accessible) sym = '♿';
    else if (seat.companion) sym = 'C';
    else sym = seat.label.slice(seat.row.length);
    if (el.textContent !== sym) el.textContent = sym;
    const name = this.name(seat, v);
    el.setAttribute('aria-label', name);
    el.title = name;
    el.setAttribute('aria-selected', v === 'selected' ? 'true' : 'false');
    if (v === 'free' || v === 'selected') el.removeAttribute('aria-disabled');
    else el.setAttribute('aria-disabled', 'true');
  }

  paintAll() {
    for (const s of this.seats.values()) this.paint(s);
  }

  setActive(seat, focus) {
    if (!seat) return;
    if (this.active && this.active.el) this.active.el.tabIndex = -1;
    this.active = seat;
    seat.el.tabIndex = 0;
    if (focus) seat.el.focus();
  }

  focus() {
    if (this.active) this.active.el.focus();
  }

  key(ev) {
    const cur = this.active;
    if (!cur) return;
    const r = this.rows.findIndex((x) => x.label === cur.row);
    const row = this.rows[r];
    const i = row.seats.indexOf(cur);
    const nearest = (rr) => {
      const list = this.rows[rr].seats;
      let best = list[0];
      for (const s of list) if (Math.abs(s.col - cur.col) < Math.abs(best.col - cur.col)) best = s;
      return best;
    };
    let next = null;
    switch (ev.key) {
      case 'ArrowRight':
        next = row.seats[Math.min(i + 1, row.seats.length - 1)];
        break;
      case 'ArrowLeft':
        next = row.seats[Math.max(i - 1, 0)];
        break;
      case 'ArrowDown':
        next = nearest(Math.min(r + 1, this.rows.length - 1));
        break;
      case 'ArrowUp':
        next = nearest(Math.max(r - 1, 0));
        break;
      case 'Home':
        next = ev.ctrlKey ? this.rows[0].seats[0] : row.seats[0];
        break;
      case 'End':
        next = ev.ctrlKey ? this.rows[this.rows.length - 1].seats.at(-1) : row.seats[row.seats.length - 1];
        break;
      case 'PageUp':
        next = nearest(Math.max(r - 5, 0));
        break;
      case 'PageDown':
        next = nearest(Math.min(r + 5, this.rows.length - 1));
        break;
      case ' ':
      case 'Enter':
        ev.preventDefault();
        this.onToggle(cur);
        return;
      default:
        return;
    }
    ev.preventDefault();
    this.setActive(next, true);
  }

  // Free / held / sold counts per category, from the seats' states now.
  counts() {
    const by = new Map(this.categories.map((c) => [c.name, { ...c, free: 0, held: 0, sold: 0, unavailable: 0 }]));
    for (const s of this.seats.values()) {
      const c = by.get(s.category);
      if (c && c[s.state] !== undefined) c[s.state]++;
    }
    return [...by.values()];
  }
}

// The legend: categories with their price and free seats, then what the marks mean.
export function legend(counts) {
  const swatch = (cls, sym) => h('span', { class: `seat sample ${cls}`, 'aria-hidden': 'true' }, sym);
  return h(
    'div',
    { class: 'legend' },
    h(
      'ul',
      { class: 'legend-cats', 'aria-label': 'Seat categories' },
      counts.map((c, i) =>
        h(
          'li',
          {},
          swatch(`cat-${i} s-free`, ''),
          h('span', { class: 'lc-name' }, c.name),
          h('strong', {}, money(c.price)),
          h('span', { class: 'muted' }, c.free === 0 ? 'sold out' : `${c.free} free`),
        ),
      ),
    ),
    h(
      'ul',
      { class: 'legend-states', 'aria-label': 'What the marks mean' },
      h('li', {}, swatch('cat-0 s-free', '7'), 'Free'),
      h('li', {}, swatch('s-selected', '✓'), 'Your choice'),
      h('li', {}, swatch('s-mine', '★'), 'Held for you'),
      h('li', {}, swatch('s-held', ''), 'Held by others'),
      h('li', {}, swatch('s-sold', '×'), 'Sold'),
      h('li', {}, swatch('s-unavailable', ''), 'Not for sale'),
      h('li', {}, swatch('cat-0 s-free acc', '♿'), 'Wheelchair space'),
      h('li', {}, swatch('cat-0 s-free comp', 'C'), 'Companion seat'),
    ),
  );
}
