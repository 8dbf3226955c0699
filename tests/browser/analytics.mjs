// The analytics page against a real PostgreSQL: usherd --analytics-url points the page at
// usher-pgexport --http, which follows usherd into a throwaway cluster. Bookings made from Node
// show up in the page's tables and charts with the right amounts; a CSV download has the
// table's columns and rows; a date range without sales shows none; an exporter that is gone
// is said in words.
//
// Environment: USHERD, PGEXPORT (the usher-pgexport binary), as lib.mjs says.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Harness, until } from './lib.mjs';

const t = new Harness('analytics');
const freePort = () =>
  new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });

const port = await freePort();
const analytics = `http://127.0.0.1:${port}`;
let pg, admin, adminToken, exporter;
const expected = { gross: 0, refunds: 0 };

await t.step('PostgreSQL, usherd and the exporter start', async () => {
  pg = await t.startPostgres();
  pg.sql('postgres', 'CREATE DATABASE usher');
  const info = await t.startUsherd(['--analytics-url', analytics]);
  admin = info.admin;
  adminToken = await t.login(admin);
  const tokenFile = path.join(t.tmp, 'admin.token');
  fs.writeFileSync(tokenFile, `${adminToken}\n`, { mode: 0o600 });
  if (!process.env.PGEXPORT) throw new Error('PGEXPORT is not set (the usher-pgexport binary)');
  exporter = t.spawnLogged('pgexport', process.env.PGEXPORT, [
    '--source', t.base, '--pg', pg.conninfo('usher'), '--token-file', tokenFile,
    '--http', `127.0.0.1:${port}`, '--jwt-secret-file', path.join(t.tmp, 'data', 'jwt.secret'),
    '--http-allow-origin', t.base, '--http-tz', 'UTC', '--stats-interval', '0',
  ]);
  await until(async () => {
    try {
      return (await fetch(`${analytics}/api/analytics/health`)).ok;
    } catch (_) {
      return false;
    }
  }, 20000, 'the exporter to answer /api/analytics/health');
});

await t.step('a customer buys twice and cancels once', async () => {
  const reg = await t.api('POST', '/api/auth/register', {
    body: { email: 'buyer@example.com', password: 'correct horse', name: 'Bea Buyer' },
  });
  t.check(reg.status === 201, `register: ${reg.status}`);
  const token = reg.json.token;
  const list = await t.api('GET', '/api/showtimes?limit=2&sort=time');
  const shows = list.json.items;
  const buy = async (show, seats) => {
    const hold = await t.api('POST', '/api/bookings/reserve', { token, body: { showtime_id: show.id, seats } });
    t.check(hold.status === 201 || hold.status === 200, `reserve: ${hold.status} ${JSON.stringify(hold.json)}`);
    const conf = await t.api('POST', '/api/bookings/confirm', {
      token,
      body: { hold_id: hold.json.hold_id, payment: { method: 'upi' } },
    });
    t.check(conf.status === 200 || conf.status === 201, `confirm: ${conf.status} ${JSON.stringify(conf.json)}`);
    expected.gross += hold.json.amount;
    return conf.json;
  };
  await buy(shows[0], ['E7', 'E8']);
  const second = await buy(shows[1], ['F3']);
  const cancel = await t.api('POST', `/api/bookings/${second.booking_id}/cancel`, { token });
  t.check(cancel.status === 200, `cancel: ${cancel.status} ${JSON.stringify(cancel.json)}`);
  expected.refunds += cancel.json.refund;
  expected.net = expected.gross - expected.refunds;
  // Exported: the API's own numbers, straight from pgexport.
  await until(async () => {
    const r = await fetch(`${analytics}/api/analytics/top-users?tz=UTC`, { headers: { Authorization: `Bearer ${adminToken}` } });
    const j = await r.json();
    return j.rows && j.rows.some((u) => u.email === 'buyer@example.com' && u.net === expected.net);
  }, 20000, `the exporter to have net ${expected.net}`);
  t.log(`gross ${expected.gross}, refunds ${expected.refunds}, net ${expected.net}`);
});

await t.launch();
const page = await t.newPage('admin');
const rupees = (minor) => new Intl.NumberFormat('en-IN', { style: 'currency', currency: 'INR' }).format(minor / 100);

await t.step('the page shows the sales in its tables and charts', async () => {
  await t.uiLogin(page, admin);
  await page.goto('/#/admin/analytics');
  await page.getByLabel('Time zone').fill('UTC');
  await page.getByRole('button', { name: 'Show' }).click();
  const top = page.locator('#an-top');
  await top.getByRole('cell', { name: 'buyer@example.com' }).waitFor();
  const row = top.getByRole('row').filter({ hasText: 'buyer@example.com' });
  await row.getByRole('cell', { name: rupees(expected.net), exact: true }).first().waitFor();
  // Today's revenue bucket has the day's net; the line chart has one point per day.
  const today = new Date().toISOString().slice(0, 10);
  const rev = page.locator('#an-revenue');
  await rev.getByRole('row').filter({ hasText: today }).getByRole('cell', { name: rupees(expected.net), exact: true }).waitFor();
  const charts = await page.evaluate(() => {
    const info = {};
    for (const id of ['revenue', 'by', 'peak', 'conversion', 'cancellations', 'top']) {
      const c = window.Chart.getChart(document.querySelector(`#an-${id} canvas`));
      info[id] = c ? { type: c.config.type, points: c.data.datasets[0].data.length, rows: document.querySelectorAll(`#an-${id} tbody tr`).length } : null;
    }
    return info;
  });
  t.check(charts.revenue && charts.revenue.type === 'line' && charts.revenue.points === charts.revenue.rows, `revenue chart: ${JSON.stringify(charts.revenue)}`);
  t.check(charts.peak && charts.peak.type === 'matrix' && charts.peak.points === 168, `heatmap: ${JSON.stringify(charts.peak)}`);
  t.check(charts.by && charts.by.type === 'bar' && charts.by.points === 2, `revenue by movie: ${JSON.stringify(charts.by)}`);
  for (const id of ['conversion', 'cancellations', 'top']) t.check(charts[id] && charts[id].points > 0, `${id} chart: ${JSON.stringify(charts[id])}`);
  const cancelled = page.locator('#an-cancellations').getByRole('row').filter({ hasText: today });
  await cancelled.getByRole('cell', { name: rupees(expected.refunds), exact: true }).waitFor();
  await page.setViewportSize({ width: 1280, height: 1100 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await t.screenshot(page, 'admin-analytics');
  await page.setViewportSize({ width: 1280, height: 860 });
});

await t.step('a table downloads as CSV with its columns and rows', async () => {
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('#an-top').getByRole('button', { name: 'Download CSV' }).click(),
  ]);
  const file = path.join(t.tmp, 'top.csv');
  await download.saveAs(file);
  const lines = fs.readFileSync(file, 'utf8').trim().split('\r\n');
  t.check(lines[0] === 'user_id,name,email,bookings,tickets,gross_inr,refunds_inr,net_inr', `CSV header: ${lines[0]}`);
  const buyer = lines.find((l) => l.includes('buyer@example.com'));
  const inr = (minor) => (minor / 100).toFixed(2);
  t.check(buyer && buyer.endsWith(`,${inr(expected.gross)},${inr(expected.refunds)},${inr(expected.net)}`), `CSV row: ${buyer}`);
  t.check(/^usher-top-users-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv$/.test(download.suggestedFilename()), download.suggestedFilename());
});

await t.step('a range without sales shows none', async () => {
  await page.getByLabel('From').fill('2020-01-01');
  await page.getByLabel('To', { exact: true }).fill('2020-01-31');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.locator('#an-top').getByText('No sales in this range.').waitFor();
  const rows = await page.locator('#an-revenue tbody tr').count();
  t.check(rows === 31, `31 days of revenue rows, not ${rows}`);
  await page.locator('#an-revenue').getByRole('row').filter({ hasText: '2020-01-15' }).getByRole('cell', { name: rupees(0), exact: true }).first().waitFor();
  await page.getByLabel('From').fill('2020-02-01');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.getByRole('alert').filter({ hasText: 'start of the range is after its end' }).waitFor();
});

await t.step('an exporter that is gone is said in words', async () => {
  exporter.kill('SIGTERM');
  await new Promise((r) => exporter.once('exit', r));
  await page.getByLabel('From').fill('2020-01-01');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.locator('#an-revenue').getByRole('alert').filter({ hasText: 'cannot be reached' }).waitFor();
  // The browser logs the refused connections; they are this step's point.
  t.expectConsole(/ERR_CONNECTION_REFUSED|Failed to fetch/, 1, { atLeast: true });
});

await t.finish();
