// Analytics (#/admin/analytics): charts and tables from PostgreSQL, read from
// usher-pgexport --http (docs/analytics.md, "HTTP analytics API"). usherd tells the pages where
// that is (/usher-config.json, from usherd --analytics-url) and lets them fetch it in its CSP.
// The admin's own login token is sent; pgexport checks it with usherd's secret.
//
// Charts are Chart.js (+ chartjs-chart-matrix for the heatmap), loaded from /vendor only when
// this page opens. Every chart has its table beside it (the numbers for screen readers, and
// what the CSV button downloads).

import { get, errorText } from '../api.js';
import { h, clear, money, pageTitle, downloadCsv, errorBox, debounce } from '../ui.js';
import { adminNav } from './nav.js';

const DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

let chartLib = null;
function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = h('script', { src });
    s.onload = resolve;
    s.onerror = () => reject(new Error(`${src} did not load`));
    document.head.append(s);
  });
}
async function charts() {
  if (!chartLib) {
    chartLib = (async () => {
      if (!window.Chart) await loadScript('/vendor/chart.umd.min.js');
      // The plugin's UMD file registers its matrix chart type with window.Chart itself.
      if (!window['chartjs-chart-matrix']) await loadScript('/vendor/chartjs-chart-matrix.min.js');
      window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
      window.Chart.defaults.color = '#1b1f24';
      return window.Chart;
    })();
  }
  return chartLib;
}

// A local calendar day as YYYY-MM-DD (toISOString() would give the UTC day).
const iso = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
const money_cols = new Set(['gross', 'refunds', 'net', 'revenue', 'spent', 'amount', 'avg_price', 'lifetime_net']);
const rate_cols = new Set(['rate', 'conversion_rate', 'cancellation_rate', 'occupancy']);

function cellText(col, v) {
  if (v === null || v === undefined) return '';
  if (money_cols.has(col) && typeof v === 'number') return money(v);
  if (rate_cols.has(col) && typeof v === 'number') return `${(v * 100).toFixed(1)} %`;
  if (col === 'bucket' || col === 'day') return String(v).slice(0, 10);
  return String(v);
}

function table(answer, caption) {
  const cols = answer.columns;
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      {},
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col', class: typeof answer.rows[0]?.[c] === 'number' ? 'num' : null }, c.replace(/_/g, ' '))))),
      h(
        'tbody',
        {},
        answer.rows.length
          ? answer.rows.map((r) => h('tr', {}, cols.map((c) => h('td', { class: typeof r[c] === 'number' ? 'num' : null }, cellText(c, r[c])))))
          : h('tr', {}, h('td', { colspan: cols.length, class: 'muted' }, 'No sales in this range.')),
      ),
    ),
  );
}

// One section: heading, chart canvas, table, CSV button; fill(answer, canvas) draws.
function section(id, title, describe) {
  const canvas = h('canvas', { role: 'img', 'aria-label': `${title} chart; the table below has the numbers` });
  const body = h('div', { class: 'an-body' }, h('p', { class: 'muted' }, 'Loading…'));
  const csv = h('button', { type: 'button', disabled: true }, 'Download CSV');
  const el = h(
    'section',
    { class: 'card an-section', id: `an-${id}`, 'aria-labelledby': `an-${id}-h` },
    h('div', { class: 'row' }, h('h2', { id: `an-${id}-h`, class: 'grow' }, title), csv),
    describe ? h('p', { class: 'muted' }, describe) : null,
    h('div', { class: 'an-chart' }, canvas),
    body,
  );
  return { el, canvas, body, csv, chart: null };
}

export async function render(root) {
  pageTitle(root, 'Analytics');
  root.prepend(adminNav('analytics'));
  const status = h('div', { class: 'an-status' });
  root.append(status);

  let cfg;
  try {
    cfg = await get('/usher-config.json');
  } catch (e) {
    root.append(errorBox(e));
    return undefined;
  }
  if (!cfg.analytics_url) {
    root.append(
      h(
        'div',
        { class: 'notice' },
        h('p', {}, 'Analytics come from PostgreSQL through usher-pgexport, which is not configured for this server.'),
        h('p', {}, 'Start the exporter with its HTTP API, and usherd with the address of it:'),
        h(
          'pre',
          {},
          'usher-pgexport --source http://127.0.0.1:8080 --pg postgresql:///usher \\\n' +
            '    --token-file admin.token --http 127.0.0.1:8081 \\\n' +
            '    --jwt-secret-file data/jwt.secret --http-allow-origin http://127.0.0.1:8080\n' +
            'usherd ... --analytics-url http://127.0.0.1:8081',
        ),
        h('p', {}, 'docs/analytics.md and docs/web.md have the details.'),
      ),
    );
    return undefined;
  }
  const base = cfg.analytics_url;

  const today = new Date();
  const from = h('input', { type: 'date', value: iso(new Date(today.getTime() - 29 * 86400000)), required: true });
  const to = h('input', { type: 'date', value: iso(today), required: true });
  const tz = h('input', { type: 'text', value: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC', size: 16 });
  const gran = h('select', {}, ['day', 'week', 'month'].map((g) => h('option', { value: g }, g)));
  const dim = h('select', {}, ['movie', 'theater', 'genre'].map((d) => h('option', { value: d }, d)));
  const errors = h('div', { 'aria-live': 'polite' });
  const filters = h(
    'form',
    { class: 'card row an-filters', 'aria-label': 'Date range' },
    h('label', {}, 'From ', from),
    h('label', {}, 'To ', to),
    h('label', {}, 'Time zone ', tz),
    h('label', {}, 'Revenue per ', gran),
    h('button', { class: 'primary', type: 'submit' }, 'Show'),
  );
  root.append(filters, errors);

  const S = {
    revenue: section('revenue', 'Revenue over time', 'Net = gross sales minus refunds, by the day of the sale.'),
    by: section('by', 'Revenue by movie, theater or genre'),
    peak: section('peak', 'Peak booking hours', 'Bookings by weekday and hour of the sale.'),
    conversion: section('conversion', 'Conversion: holds to bookings'),
    cancellations: section('cancellations', 'Cancellations'),
    top: section('top', 'Top customers'),
  };
  S.by.el.querySelector('.row').append(h('label', {}, 'By ', dim));
  const grid = h('div', { class: 'an-grid' }, Object.values(S).map((s) => s.el));
  root.append(grid);

  let Chart;
  try {
    Chart = await charts();
  } catch (e) {
    errors.append(errorBox(e));
    return undefined;
  }

  const params = () => `from=${from.value}&to=${to.value}&tz=${encodeURIComponent(tz.value.trim())}`;
  const fetchJson = (path) => get(path, { base });

  function draw(s, config) {
    if (s.chart) s.chart.destroy();
    s.chart = new Chart(s.canvas, { ...config, options: { animation: false, maintainAspectRatio: false, responsive: true, ...config.options } });
  }

  function fill(s, answer, name, config) {
    clear(s.body);
    s.body.append(table(answer, s.el.querySelector('h2').textContent));
    if (answer.truncated) s.body.append(h('p', { class: 'muted' }, 'Only the first rows are shown (the server\u2019s row limit).'));
    s.csv.disabled = false;
    // The file is named for the range the answer covers (not the inputs, which may have changed
    // since), and money is in rupees like the table, in columns that say so.
    const cols = answer.columns.map((c) => (money_cols.has(c) ? { key: c, label: `${c}_inr` } : { key: c }));
    const rows = answer.rows.map((r) => {
      const o = { ...r };
      for (const c of answer.columns) if (money_cols.has(c) && typeof o[c] === 'number') o[c] = (o[c] / 100).toFixed(2);
      return o;
    });
    s.csv.onclick = () => downloadCsv(`usher-${name}-${answer.from}-${answer.to}.csv`, cols, rows);
    if (config) draw(s, config);
  }

  // Each section draws only its newest answer, and nothing after the page was left: the
  // exporter answers one request at a time, so answers can come late and out of order.
  let alive = true;
  async function load(s, path, name, configOf) {
    const my = (s.seq = (s.seq || 0) + 1);
    try {
      const answer = await fetchJson(path);
      if (!alive || my !== s.seq) return;
      fill(s, answer, name, configOf(answer));
    } catch (e) {
      if (!alive || my !== s.seq) return;
      clear(s.body).append(errorBox(e));
      s.csv.disabled = true;
      if (s.chart) {
        s.chart.destroy();
        s.chart = null;
      }
    }
  }

  const line = (labels, sets) => ({
    type: 'line',
    data: { labels, datasets: sets },
    options: { interaction: { mode: 'index', intersect: false }, scales: { y: { beginAtZero: true } } },
  });
  const rupees = (rows, col) => rows.map((r) => (r[col] || 0) / 100);

  function loadAll() {
    const p = params();
    load(S.revenue, `/api/analytics/revenue?${p}&granularity=${gran.value}`, `revenue-${gran.value}`, (a) =>
      line(
        a.rows.map((r) => String(r.bucket).slice(0, 10)),
        [
          { label: 'Net (₹)', data: rupees(a.rows, 'net'), borderColor: '#0b57d0', backgroundColor: '#0b57d0' },
          { label: 'Gross (₹)', data: rupees(a.rows, 'gross'), borderColor: '#7a4b00', backgroundColor: '#7a4b00', borderDash: [6, 4] },
        ],
      ),
    );
    load(S.by, `/api/analytics/revenue-by?${p}&dim=${dim.value}`, `revenue-by-${dim.value}`, (a) => ({
      type: 'bar',
      data: {
        labels: a.rows.map((r) => r.label ?? `#${r.key}`),
        datasets: [{ label: 'Net (₹)', data: rupees(a.rows, 'net'), backgroundColor: '#0b57d0' }],
      },
      options: { indexAxis: 'y', plugins: { legend: { display: false } } },
    }));
    load(S.peak, `/api/analytics/peak-hours?${p}`, 'peak-hours', (a) => {
      const max = Math.max(1, ...a.rows.map((r) => r.bookings));
      return {
        type: 'matrix',
        data: {
          datasets: [
            {
              label: 'Bookings',
              data: a.rows.map((r) => ({ x: r.hour, y: DAYS[r.isodow - 1], v: r.bookings })),
              backgroundColor: (c) => `rgba(11, 87, 208, ${0.08 + 0.92 * ((c.raw && c.raw.v) || 0) / max})`,
              borderColor: '#ffffff',
              borderWidth: 1,
              width: ({ chart }) => (chart.chartArea || {}).width / 24 - 1,
              height: ({ chart }) => (chart.chartArea || {}).height / 7 - 1,
            },
          ],
        },
        options: {
          plugins: {
            legend: { display: false },
            tooltip: { callbacks: { title: () => '', label: (c) => `${c.raw.y} ${c.raw.x}:00 — ${c.raw.v} bookings` } },
          },
          scales: {
            x: { type: 'linear', min: -0.5, max: 23.5, ticks: { stepSize: 1 }, grid: { display: false }, title: { display: true, text: 'hour' } },
            y: { type: 'category', labels: DAYS, offset: true, grid: { display: false } },
          },
        },
      };
    });
    load(S.conversion, `/api/analytics/conversion?${p}`, 'conversion', (a) =>
      line(
        a.rows.map((r) => String(r.day).slice(0, 10)),
        [{ label: 'Holds that became bookings (%)', data: a.rows.map((r) => (r.rate === null ? null : r.rate * 100)), borderColor: '#146c2e', backgroundColor: '#146c2e' }],
      ),
    );
    load(S.cancellations, `/api/analytics/cancellations?${p}`, 'cancellations', (a) =>
      line(
        a.rows.map((r) => String(r.day).slice(0, 10)),
        [{ label: 'Sales cancelled (%)', data: a.rows.map((r) => (r.rate === null ? null : r.rate * 100)), borderColor: '#b3261e', backgroundColor: '#b3261e' }],
      ),
    );
    load(S.top, `/api/analytics/top-users?${p}&limit=10`, 'top-users', (a) => ({
      type: 'bar',
      data: {
        labels: a.rows.map((r) => r.email || r.name || `user ${r.user_id}`),
        datasets: [{ label: 'Net (₹)', data: rupees(a.rows, 'net'), backgroundColor: '#5b3cc4' }],
      },
      options: { indexAxis: 'y', plugins: { legend: { display: false } } },
    }));
    get('/api/analytics/health', { base })
      .then((hh) => {
        clear(status).append(h('p', { class: 'muted' }, healthText(hh)));
      })
      .catch((e) => clear(status).append(errorBox(`The analytics server at ${base} does not answer: ${errorText(e)}`)));
  }

  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    clear(errors);
    if (from.value > to.value) {
      errors.append(errorBox('The start of the range is after its end.'));
      return;
    }
    loadAll();
  });
  gran.addEventListener('change', () => loadAll());
  dim.addEventListener('change', debounce(() => loadAll(), 50));
  loadAll();

  return () => {
    alive = false;
    for (const s of Object.values(S)) if (s.chart) s.chart.destroy();
  };
}

function healthText(hh) {
  if (!hh || !Array.isArray(hh.shards)) return 'Exported from usherd into PostgreSQL.';
  const parts = hh.shards.map((s) => `shard ${s.shard}: LSN ${s.lsn}${s.updated_at ? `, ${new Date(s.updated_at).toLocaleTimeString()}` : ''}`);
  return `Exported from usherd into PostgreSQL up to: ${parts.join('; ')}.`;
}
