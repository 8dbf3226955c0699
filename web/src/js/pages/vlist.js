// A virtual list that scrolls with the page: every row has the same height, the list's box is
// as tall as all rows together, and only the rows in view (plus a margin) are in the DOM. So a
// list of 10,000 rows costs a few dozen elements.
//
// virtualList({rowHeight(), renderRow(i), onRange(first, last), margin, label}) returns
// {el, setCount(n), refresh(), destroy(), count()}. renderRow(i) builds row i (a placeholder
// while its data is not there); refresh() builds the rows in view again (after data came in).

import { h } from '../ui.js';

export function virtualList({ rowHeight, renderRow, onRange = () => {}, margin = 6, label }) {
  const el = h('div', { class: 'vlist', role: 'list', 'aria-label': label });
  const rows = new Map(); // index -> element
  let count = 0;
  let rowH = rowHeight();
  let frame = 0;

  const place = (row, i) => {
    row.style.top = `${i * rowH}px`;
    row.style.height = `${rowH}px`;
    row.setAttribute('role', 'listitem');
    row.setAttribute('aria-posinset', String(i + 1));
    row.setAttribute('aria-setsize', String(count));
    row.dataset.index = String(i);
  };

  function range() {
    if (!count || !el.isConnected) return [0, -1];
    const r = el.getBoundingClientRect();
    const top = Math.max(0, -r.top);
    const bottom = Math.min(count * rowH, window.innerHeight - r.top);
    if (bottom <= 0 || top >= count * rowH) return [0, -1];
    const first = Math.max(0, Math.floor(top / rowH) - margin);
    const last = Math.min(count - 1, Math.ceil(bottom / rowH) + margin);
    return [first, last];
  }

  function update(rebuild = false) {
    frame = 0;
    const h2 = rowHeight();
    if (h2 !== rowH) {
      rowH = h2;
      el.style.height = `${count * rowH}px`;
      rebuild = true;
    }
    const [first, last] = range();
    for (const [i, row] of rows) {
      if (i < first || i > last || rebuild) {
        // Keep a focused row in the DOM: removing it would drop keyboard focus on the body.
        if (!rebuild && row.contains(document.activeElement)) continue;
        row.remove();
        rows.delete(i);
      }
    }
    for (let i = first; i <= last; i++) {
      if (rows.has(i)) continue;
      const row = renderRow(i);
      place(row, i);
      rows.set(i, row);
      el.append(row);
    }
    if (last >= first) onRange(first, last);
  }

  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(() => update());
  };
  window.addEventListener('scroll', schedule, { passive: true });
  window.addEventListener('resize', schedule);

  return {
    el,
    count: () => count,
    setCount(n) {
      count = n;
      el.style.height = `${count * rowH}px`;
      update(true);
    },
    // Rebuilds the rows in view whose index passes want(i) (default: all), e.g. once a page of
    // data arrived.
    refresh(want = () => true) {
      for (const [i, row] of rows) {
        if (!want(i)) continue;
        const next = renderRow(i);
        place(next, i);
        const hadFocus = row.contains(document.activeElement);
        row.replaceWith(next);
        rows.set(i, next);
        if (hadFocus) {
          const a = next.querySelector('a');
          if (a) a.focus({ preventScroll: true });
        }
      }
      update();
    },
    destroy() {
      if (frame) cancelAnimationFrame(frame);
      window.removeEventListener('scroll', schedule);
      window.removeEventListener('resize', schedule);
    },
  };
}
