#!/usr/bin/env node
// The web pages in headless Chromium at scale: does the browse page stay smooth with 10,000
// showtimes, and how fast does a seat map follow another client's holds? A benchmark, not a
// test (no pass/fail; not in meson test). See bench/README.md, "Web pages in Chromium".
//
// It starts its own usherd (--demo, a temp data dir, the web root built from web/src), creates
// N showtimes through the admin API, then in Chromium:
//   browse   #/ : time to the first rows; a sweep from top to bottom (scrollTo in steps) and a
//          wheel scroll at a human pace, with every frame's interval recorded by a
//          requestAnimationFrame loop in the page, the rows in the DOM, the /api/showtimes
//          requests, the JS heap and the DOM size (CDP Performance.getMetrics).
//   naive  : the baseline. The same page, the virtual list replaced by all N rows as plain DOM
//          (the real rows' markup, cloned), scrolled the same way.
//   seatmap: a 600-seat showtime open in the page; from Node another customer holds and
//          releases a seat R times; the time from the API answer in Node to the seat's class
//          changing in the page (a MutationObserver; Date.now on both sides, one machine).
import { Harness, repo } from '../tests/browser/lib.mjs';
import fs from 'node:fs';
import path from 'node:path';

const HELP = `usage: node bench/web-bench.mjs [--showtimes N] [--rounds N] [--json FILE]

  --showtimes N   showtimes to create through the admin API on top of the demo's (10000)
  --rounds N      hold + release rounds on the seat map (50)
  --steps N       scrollTo steps of the top-to-bottom sweep (200)
  --step-ms N     ms between sweep steps (40)
  --wheel N       wheel events of 100 px at ~60 per second, from the top (150)
  --concurrency N parallel showtime creates (32)
  --json FILE     also write the results as JSON
  --help          this text

Environment: USHERD (default build-release/net/usherd in the repo; a release build),
CHROMIUM (default /usr/bin/chromium), KEEP_TMP=1 keeps the temp dir.
The run stops itself after 170 s.`;

const opt = { showtimes: 10000, rounds: 50, steps: 200, 'step-ms': 40, wheel: 150, concurrency: 32, json: null };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--help' || a === '-h') {
    console.log(HELP);
    process.exit(0);
  }
  const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
  if (!m || !(m[1] in opt)) {
    console.error(`unknown argument ${a}\n\n${HELP}`);
    process.exit(2);
  }
  const v = m[2] !== undefined ? m[2] : argv[++i];
  if (v === undefined) {
    console.error(`${a} needs a value`);
    process.exit(2);
  }
  opt[m[1]] = m[1] === 'json' ? v : Number(v);
  if (m[1] !== 'json' && !(Number.isInteger(opt[m[1]]) && opt[m[1]] >= 0)) {
    console.error(`${a}: not a whole number: ${v}`);
    process.exit(2);
  }
}
if (!process.env.USHERD) process.env.USHERD = path.join(repo, 'build-release', 'net', 'usherd');
if (!fs.existsSync(process.env.USHERD)) {
  console.error(`no usherd at ${process.env.USHERD} (build it, or set USHERD)`);
  process.exit(2);
}

const t = new Harness('webbench');
const deadline = setTimeout(() => t.fail('the run took over 170 s; stopped'), 170000);
const report = { when: new Date().toISOString(), options: { ...opt }, usherd: process.env.USHERD };

// ---- statistics
const q = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN);
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, p50: q(s, 50), p95: q(s, 95), p99: q(s, 99), max: s.length ? s[s.length - 1] : NaN };
};
const r1 = (x) => (Number.isFinite(x) ? Math.round(x * 10) / 10 : x);

const { admin } = await t.startUsherd();
await t.launch();
const adminTok = await t.login(admin);

// ---- 1. N showtimes through the admin API
await t.step(`create ${opt.showtimes} showtimes`, async () => {
  const th = (await t.api('POST', '/api/theaters', { token: adminTok, body: { name: 'Bench Multiplex', city: 'Pune' } })).json;
  const SCREENS = 10;
  const screens = [];
  for (let s = 0; s < SCREENS; s++) {
    const r = await t.api('POST', '/api/screens', {
      token: adminTok,
      body: { theater_id: th.id, name: `Screen ${s + 1}`, layout: { categories: ['regular'], rows: [{ label: 'A', category: 'regular', seats: 4 }] } },
    });
    t.check(r.status === 201, `screen: ${r.status} ${JSON.stringify(r.json)}`);
    screens.push(r.json.id);
  }
  const mv = (await t.api('POST', '/api/movies', { token: adminTok, body: { title: 'Bench Reel', duration_min: 90, genre: 'drama', language: 'english' } })).json;
  const base = Date.UTC(2027, 0, 1);
  let next = 0;
  const fails = [];
  const lat = [];
  const worker = async () => {
    while (next < opt.showtimes) {
      const i = next++;
      // One screen in ten, one show every 3 hours on each: no overlaps.
      const start = new Date(base + Math.floor(i / SCREENS) * 3 * 3600e3).toISOString().replace(/\.\d+Z$/, 'Z');
      const t1 = performance.now();
      const r = await t.api('POST', '/api/showtimes', {
        token: adminTok,
        body: { movie_id: mv.id, screen_id: screens[i % SCREENS], start_time: start, prices: { regular: 10000 + (i % 5000) } },
      });
      lat.push(performance.now() - t1);
      if (r.status !== 201) fails.push(`${r.status} ${JSON.stringify(r.json)}`);
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: opt.concurrency }, worker));
  const ms = performance.now() - t0;
  const total = (await t.api('GET', '/api/showtimes?limit=1')).json.total;
  report.create = { n: opt.showtimes, failed: fails.length, first_failure: fails[0] || null, ms: Math.round(ms), per_s: Math.round(opt.showtimes / (ms / 1000)), latency_ms: stats(lat), total_listed: total };
  t.log(`created ${opt.showtimes - fails.length}/${opt.showtimes} in ${(ms / 1000).toFixed(2)} s (${report.create.per_s}/s); the list has ${total}`);
  t.check(fails.length === 0, `${fails.length} creates failed, first: ${fails[0]}`);
});

// ---- 2. browse in Chromium
const page = await t.newPage('browse');
const cdp = await page.context().newCDPSession(page);
await cdp.send('Performance.enable');
const metrics = async (gc = false) => {
  if (gc) await cdp.send('HeapProfiler.collectGarbage');
  const m = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((x) => [x.name, x.value]));
  return m;
};
let listRequests = 0;
page.on('request', (req) => {
  if (new URL(req.url()).pathname === '/api/showtimes') listRequests++;
});

// The frame recorder: a requestAnimationFrame loop noting each frame's interval (rAF
// timestamps) and the most children the list container had in any frame.
await page.addInitScript(() => {
  window.__rec = {
    start(sel) {
      const r = (window.__rec.cur = { frames: [], maxRows: 0, on: true, last: 0 });
      const tick = (ts) => {
        if (r.last) r.frames.push(ts - r.last);
        r.last = ts;
        const c = document.querySelector(sel);
        if (c) r.maxRows = Math.max(r.maxRows, c.childElementCount);
        if (r.on) requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    },
    stop() {
      const r = window.__rec.cur;
      r.on = false;
      return { frames: r.frames, maxRows: r.maxRows };
    },
  };
  // The first showtime row with data in the DOM, in ms from the navigation's start.
  new MutationObserver((_, obs) => {
    if (document.querySelector('.vlist .st-row[data-id]')) {
      window.__firstRow = performance.now();
      obs.disconnect();
    }
  }).observe(document, { childList: true, subtree: true });
});

// A top-to-bottom sweep by scrollTo in steps, driven inside the page (no round trips).
const sweep = (sel) =>
  page.evaluate(
    ({ sel, steps, stepMs }) =>
      new Promise((resolve) => {
        window.scrollTo(0, 0);
        window.__rec.start(sel);
        const max = document.documentElement.scrollHeight - window.innerHeight;
        let i = 0;
        const t0 = performance.now();
        const timer = setInterval(() => {
          i++;
          window.scrollTo(0, Math.round((max * i) / steps));
          // Bounded: a page that cannot keep up stops at 3x the planned time (noted).
          if (i >= steps || performance.now() - t0 > 3 * steps * stepMs) {
            clearInterval(timer);
            const ms = performance.now() - t0;
            setTimeout(() => resolve({ ...window.__rec.stop(), ms, scrollPx: max, stepsDone: i }), 300);
          }
        }, stepMs);
      }),
    { sel, steps: opt.steps, stepMs: opt['step-ms'] },
  );

// Wheel events of 100 px from Node, ~60 a second: a brisk human scroll near the top.
const wheel = async (sel) => {
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(200);
  await page.mouse.move(640, 600);
  await page.evaluate((s) => window.__rec.start(s), sel);
  const t0 = performance.now();
  for (let i = 0; i < opt.wheel; i++) {
    await page.mouse.wheel(0, 100);
    if (performance.now() - t0 > 15000) break; // bounded (noted by scrolled_px)
    const due = t0 + (i + 1) * 16.7;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await page.waitForTimeout(300);
  const r = await page.evaluate(() => ({ ...window.__rec.stop(), y: window.scrollY }));
  return { ...r, ms: performance.now() - t0 };
};

const frameSummary = (r) => {
  const s = stats(r.frames);
  return {
    frames: s.n,
    p50: r1(s.p50),
    p95: r1(s.p95),
    p99: r1(s.p99),
    max: r1(s.max),
    over50: r.frames.filter((x) => x > 50).length,
    max_rows_in_dom: r.maxRows,
    ms: Math.round(r.ms),
    ...(r.stepsDone !== undefined ? { steps_done: r.stepsDone } : {}),
  };
};
const domSize = () => page.evaluate(() => document.getElementsByTagName('*').length);

await t.step('browse: first rows, sweep and wheel over the virtual list', async () => {
  const total = (await t.api('GET', '/api/showtimes?limit=1')).json.total;
  const tNav = Date.now();
  await page.goto('/#/');
  // The browse page lists the first 10,000 matches at most (the API pages that far only).
  const rows = Math.min(total, 10000);
  await page.locator('.summary').getByText(`${total.toLocaleString('en-IN')} showtimes`).waitFor();
  await page.waitForFunction(() => window.__firstRow !== undefined);
  const firstRow = await page.evaluate(() => window.__firstRow);
  const wall = Date.now() - tNav;
  await page.waitForTimeout(500);
  const m0 = await metrics();
  const req0 = listRequests;
  const sw = await sweep('.vlist');
  const reqSweep = listRequests - req0;
  // Let the last page arrive, then check the end of the list is there.
  await page.waitForFunction(
    (n) => document.querySelector(`.vlist .st-row[aria-posinset="${n}"][data-id]`),
    rows,
    { timeout: 15000 },
  );
  const m1 = await metrics();
  const req1 = listRequests;
  const wh = await wheel('.vlist');
  const m2 = await metrics(true);
  report.virtual = {
    total,
    rows,
    first_rows_ms: Math.round(firstRow),
    first_rows_wall_ms: wall,
    sweep: { ...frameSummary(sw), scroll_px: sw.scrollPx, showtimes_requests: reqSweep, layout_ms: Math.round((m1.LayoutDuration - m0.LayoutDuration) * 1000), style_ms: Math.round((m1.RecalcStyleDuration - m0.RecalcStyleDuration) * 1000), script_ms: Math.round((m1.ScriptDuration - m0.ScriptDuration) * 1000) },
    wheel: { ...frameSummary(wh), scrolled_px: wh.y, showtimes_requests: listRequests - req1 },
    showtimes_requests_total: listRequests,
    dom_elements_end: await domSize(),
    cdp_nodes_end: m2.Nodes,
    js_heap_used_mb: r1(m2.JSHeapUsedSize / 1048576),
  };
  t.log(`virtual: first rows at ${firstRow.toFixed(0)} ms; sweep p95 ${report.virtual.sweep.p95} ms, ${reqSweep} list requests`);
});

// ---- 3. the baseline: all rows as plain DOM in the same page, same CSS, same scrolling
await t.step('naive baseline: every row in the DOM', async () => {
  const total = report.virtual.rows;
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.locator('.vlist .st-row[data-id]').nth(8).waitFor();
  const build = await page.evaluate((n) => {
    const real = [...document.querySelectorAll('.vlist > .st-row[data-id]')].map((e) => e.cloneNode(true));
    const t0 = performance.now();
    const box = document.createElement('div');
    box.className = 'naive-list';
    box.setAttribute('role', 'list');
    for (let i = 0; i < n; i++) {
      const row = real[i % real.length].cloneNode(true);
      row.style.cssText = 'position: relative; height: 76px'; // in flow, the virtual rows' height
      row.setAttribute('aria-posinset', String(i + 1));
      box.append(row);
    }
    document.querySelector('.vlist').replaceWith(box); // the virtual list is gone (its updates stop)
    void box.offsetHeight; // layout
    const built = performance.now() - t0;
    return { built, distinct: real.length, height: box.offsetHeight };
  }, total);
  await page.waitForTimeout(500);
  const m0 = await metrics();
  const sw = await sweep('.naive-list');
  const m1 = await metrics();
  const wh = await wheel('.naive-list');
  const m2 = await metrics(true);
  report.naive = {
    rows: total,
    distinct_rows_cloned: build.distinct,
    build_and_layout_ms: Math.round(build.built),
    sweep: { ...frameSummary(sw), scroll_px: sw.scrollPx, layout_ms: Math.round((m1.LayoutDuration - m0.LayoutDuration) * 1000), style_ms: Math.round((m1.RecalcStyleDuration - m0.RecalcStyleDuration) * 1000), script_ms: Math.round((m1.ScriptDuration - m0.ScriptDuration) * 1000) },
    wheel: { ...frameSummary(wh), scrolled_px: wh.y },
    dom_elements_end: await domSize(),
    cdp_nodes_end: m2.Nodes,
    js_heap_used_mb: r1(m2.JSHeapUsedSize / 1048576),
  };
  const v = report.virtual;
  const nv = report.naive;
  report.ratio = {
    sweep_p95_virtual_over_naive: r1(v.sweep.p95 / nv.sweep.p95),
    wheel_p95_virtual_over_naive: r1(v.wheel.p95 / nv.wheel.p95),
    dom_elements_virtual_over_naive: Math.round((v.dom_elements_end / nv.dom_elements_end) * 10000) / 10000,
    rows_in_dom_virtual_over_naive: Math.round((v.sweep.max_rows_in_dom / nv.sweep.max_rows_in_dom) * 10000) / 10000,
  };
});

// ---- 4. the seat map following another client's holds
await t.step(`seat map: ${opt.rounds} holds and releases from another client`, async () => {
  const reg = await t.api('POST', '/api/auth/register', { body: { name: 'Bench Buyer', email: 'bench@usher.local', password: 'bench-password-1' } });
  t.check(reg.status === 201, `register: ${reg.status} ${JSON.stringify(reg.json)}`);
  const tok = reg.json.token;
  let big = null;
  for (let p = 1; !big && p <= 5; p++) {
    big = (await t.api('GET', `/api/showtimes?limit=100&page=${p}`)).json.items.find((s) => s.seats_total === 600 && s.seats_available > 100);
  }
  t.check(big, 'a 600-seat demo showtime');
  const map = (await t.api('GET', `/api/seats/${big.id}`)).json;
  const free = map.seats.filter((s) => s.state === 'free').map((s) => s.label);
  const sm = await t.newPage('seatmap');
  await sm.goto(`/#/showtimes/${big.id}`);
  await sm.locator('.seatgrid [role=gridcell][data-label="A1"]').waitFor();
  await sm.locator('.live').getByText('Live').waitFor();
  t.check((await sm.locator('.seatgrid [role=gridcell]').count()) === 600, '600 seats drawn');
  // Every class change of a seat: its label, its class, Date.now() at the change and at the
  // next frame.
  await sm.evaluate(() => {
    window.__ch = [];
    new MutationObserver((muts) => {
      const now = Date.now();
      for (const m of muts) {
        const el = m.target;
        if (!el.dataset || !el.dataset.label) continue;
        const rec = { label: el.dataset.label, cls: el.className, dom: now, frame: 0 };
        window.__ch.push(rec);
        requestAnimationFrame(() => (rec.frame = Date.now()));
      }
    }).observe(document.querySelector('.seatgrid'), { subtree: true, attributes: true, attributeFilter: ['class'] });
  });
  // The clocks: the page's Date.now() between two of Node's.
  const skew = [];
  for (let i = 0; i < 5; i++) {
    const a = Date.now();
    const p = await sm.evaluate(() => Date.now());
    const b = Date.now();
    skew.push({ a, p, b });
  }
  const inside = skew.every((s) => s.p >= s.a - 1 && s.p <= s.b + 1);
  const seen = async (label, re, since) => {
    const h = await sm.waitForFunction(
      ({ label, re, since }) => window.__ch.find((c) => c.label === label && new RegExp(re).test(c.cls) && c.dom >= since - 5 && c.frame),
      { label, re, since },
      { timeout: 3000 },
    ).catch(() => null);
    return h ? h.jsonValue() : null;
  };
  const holdDom = [];
  const holdFrame = [];
  const relDom = [];
  const relFrame = [];
  const holdSent = [];
  const relSent = [];
  let missed = 0;
  for (let i = 0; i < opt.rounds; i++) {
    const label = free[(i * 37) % free.length];
    const sendHold = Date.now();
    const r = await t.api('POST', '/api/bookings/reserve', { token: tok, body: { showtime_id: big.id, seats: [label] } });
    const tHold = Date.now();
    t.check(r.status === 201, `reserve ${label}: ${r.status} ${JSON.stringify(r.json)}`);
    const c1 = await seen(label, '\\bs-held\\b', tHold - 1000);
    if (c1) {
      holdDom.push(c1.dom - tHold);
      holdFrame.push(c1.frame - tHold);
      holdSent.push(c1.frame - sendHold);
    } else missed++;
    const sendRel = Date.now();
    const d = await t.api('DELETE', `/api/holds/${r.json.hold_id}`, { token: tok });
    const tRel = Date.now();
    t.check(d.status === 200 || d.status === 204, `release: ${d.status} ${JSON.stringify(d.json)}`);
    const c2 = await seen(label, '\\bs-free\\b', tRel - 1000);
    if (c2) {
      relDom.push(c2.dom - tRel);
      relFrame.push(c2.frame - tRel);
      relSent.push(c2.frame - sendRel);
    } else missed++;
    await sm.evaluate(() => (window.__ch.length = 0));
  }
  const sum = (xs) => {
    const s = stats(xs);
    return { n: s.n, p50: s.p50, p95: s.p95, max: s.max, min: Math.min(...xs) };
  };
  report.seatmap = {
    showtime_id: big.id,
    seats: 600,
    rounds: opt.rounds,
    missed,
    clock_check_ok: inside,
    hold_to_dom_ms: sum(holdDom),
    hold_to_frame_ms: sum(holdFrame),
    release_to_dom_ms: sum(relDom),
    release_to_frame_ms: sum(relFrame),
    hold_sent_to_frame_ms: sum(holdSent),
    release_sent_to_frame_ms: sum(relSent),
    api_round_trip_note: 'negative *_to_* values: the page changed before Node had the answer parsed (the event and the answer leave the server together)',
  };
});

// ---- the table
const v = report.virtual;
const nv = report.naive;
const s = report.seatmap;
const row = (...c) => console.log(c.map((x, i) => String(x).padEnd(i ? 14 : 40)).join(''));
console.log(`\nweb-bench: ${v.total} showtimes (${opt.showtimes} created + demo; the page lists ${v.rows}), Chromium headless, ${opt.steps} sweep steps every ${opt['step-ms']} ms, ${opt.wheel} wheel events of 100 px`);
console.log(`create: ${report.create.n} showtimes in ${(report.create.ms / 1000).toFixed(2)} s (${report.create.per_s}/s, ${opt.concurrency} parallel, p95 ${r1(report.create.latency_ms.p95)} ms), ${report.create.failed} failed`);
console.log(`browse: first rows ${v.first_rows_ms} ms after navigation start (${v.first_rows_wall_ms} ms from goto in Node); naive DOM build + layout ${nv.build_and_layout_ms} ms`);
row('', 'virtual', 'naive', 'virt/naive');
const fr = (k) => row(`sweep frame ${k} (ms)`, v.sweep[k], nv.sweep[k], r1(v.sweep[k] / nv.sweep[k]));
for (const k of ['p50', 'p95', 'p99', 'max']) fr(k);
row('sweep frames > 50 ms / frames', `${v.sweep.over50}/${v.sweep.frames}`, `${nv.sweep.over50}/${nv.sweep.frames}`, '');
row('sweep layout+style ms (CDP)', v.sweep.layout_ms + v.sweep.style_ms, nv.sweep.layout_ms + nv.sweep.style_ms, '');
for (const k of ['p50', 'p95', 'p99', 'max']) row(`wheel frame ${k} (ms)`, v.wheel[k], nv.wheel[k], r1(v.wheel[k] / nv.wheel[k]));
row('wheel frames > 50 ms / frames', `${v.wheel.over50}/${v.wheel.frames}`, `${nv.wheel.over50}/${nv.wheel.frames}`, '');
row('sweep took (ms; planned steps*step-ms)', v.sweep.ms, nv.sweep.ms, '');
row('sweep steps done', v.sweep.steps_done, nv.sweep.steps_done, '');
row('wheel scroll took (ms)', v.wheel.ms, nv.wheel.ms, '');
row('wheel px scrolled (stops at 15 s)', v.wheel.scrolled_px, nv.wheel.scrolled_px, '');
row('max rows in the DOM', v.sweep.max_rows_in_dom, nv.sweep.max_rows_in_dom, report.ratio.rows_in_dom_virtual_over_naive);
row('DOM elements at the end', v.dom_elements_end, nv.dom_elements_end, report.ratio.dom_elements_virtual_over_naive);
row('JS heap used after GC (MB)', v.js_heap_used_mb, nv.js_heap_used_mb, r1(v.js_heap_used_mb / nv.js_heap_used_mb));
row('/api/showtimes requests', `${v.sweep.showtimes_requests} sweep`, '-', '');
console.log(`  (${v.showtimes_requests_total} list requests in all, ${v.wheel.showtimes_requests} during the wheel scroll)`);
console.log(`seat map (600 seats), ${s.rounds} rounds, ${s.missed} missed, clocks ${s.clock_check_ok ? 'agree' : 'DISAGREE'}:`);
row('', 'p50', 'p95', 'max');
row('hold: API answer -> class change', s.hold_to_dom_ms.p50, s.hold_to_dom_ms.p95, s.hold_to_dom_ms.max);
row('hold: API answer -> next frame', s.hold_to_frame_ms.p50, s.hold_to_frame_ms.p95, s.hold_to_frame_ms.max);
row('release: API answer -> class change', s.release_to_dom_ms.p50, s.release_to_dom_ms.p95, s.release_to_dom_ms.max);
row('release: API answer -> next frame', s.release_to_frame_ms.p50, s.release_to_frame_ms.p95, s.release_to_frame_ms.max);
row('hold: request sent -> next frame', s.hold_sent_to_frame_ms.p50, s.hold_sent_to_frame_ms.p95, s.hold_sent_to_frame_ms.max);
row('release: request sent -> next frame', s.release_sent_to_frame_ms.p50, s.release_sent_to_frame_ms.p95, s.release_sent_to_frame_ms.max);
console.log(`  (min answer -> class change: hold ${s.hold_to_dom_ms.min} ms, release ${s.release_to_dom_ms.min} ms; below 0 = the page saw it before Node had parsed the answer)`);

if (opt.json) {
  fs.writeFileSync(opt.json, JSON.stringify(report, null, 2) + '\n');
  t.log(`wrote ${opt.json}`);
}
clearTimeout(deadline);
await t.cleanup();
t.log(`done in ${((Date.now() - t.t0) / 1000).toFixed(1)} s`);
