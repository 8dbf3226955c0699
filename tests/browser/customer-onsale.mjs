// On-sales and limits in Chromium: a showtime behind a virtual queue (the seat map sends the
// buyer to the queue, the queue page shows the place live until the admission, the seat map then
// reserves with the Admission-Token header), a sold-out showtime's waiting list (join, the place
// shown, an offer arriving as a hold when seats come free, leave), and, with a server of short
// holds and small holds, a hold running out (announced at 10 s, then said) and a refused size.
import { Harness, until } from './lib.mjs';

const t = new Harness('customer-onsale');
// Holds of 12 s (to watch one run out) and at most 4 seats a hold (to see the refusal).
const { demo, admin } = await t.startUsherd(['--hold-ttl', '12', '--max-seats-per-hold', '4']);
await t.launch();
const adminTok = await t.login(admin);
const demoTok = await t.login(demo);

async function customer(n) {
  const r = await t.api('POST', '/api/auth/register', {
    body: { name: `Buyer ${n}`, email: `buyer${n}@usher.local`, password: `buyer-password-${n}` },
  });
  if (r.status !== 201) throw new Error(`register ${n}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json.token;
}

const page = await t.newPage('customer');
const requests = [];
page.on('request', (req) => {
  const u = new URL(req.url());
  if (u.pathname.startsWith('/api/')) requests.push({ method: req.method(), path: u.pathname, headers: req.headers() });
});
const seatCell = (p, label) => p.locator(`.seatgrid [role=gridcell][data-label="${label}"]`);
await t.uiLogin(page, demo);

await t.step('queue: told to queue, join, see the place live, get admitted, then hold seats', async () => {
  const st = (await t.api('GET', '/api/showtimes?limit=100')).json.items.find((s) => s.seats_total === 600);
  const q = await t.api('PUT', `/api/showtimes/${st.id}/queue`, { token: adminTok, body: { rate_per_second: 1 } });
  t.check(q.status === 200, `queue: ${q.status} ${JSON.stringify(q.json)}`);
  // Three others are in line first, so the page shows a place before the admission.
  const others = await Promise.all([1, 2, 3].map(customer));
  for (const tok of others) {
    const j = await t.api('POST', `/api/showtimes/${st.id}/queue/join`, { token: tok });
    t.check(j.status === 201, `another buyer joins: ${j.status}`);
  }
  await page.goto(`/#/showtimes/${st.id}`);
  await page.locator('.queue-notice').getByText('sells through a virtual queue').waitFor();
  await page.getByRole('link', { name: 'Go to the queue' }).first().click();
  await page.waitForURL(new RegExp(`#/showtimes/${st.id}/queue$`));
  await page.getByRole('button', { name: 'Join the queue' }).click();
  await page.getByRole('heading', { name: 'You are in the queue' }).waitFor();
  const pos = Number(await page.locator('.qpos').textContent());
  t.check(pos >= 1 && pos <= 4, `place ${pos}`);
  await page.locator('.qwait').getByText(/about|a moment/).waitFor();
  await page.locator('.live').getByText('Live').waitFor();
  await t.screenshot(page, 'queue');
  // The place comes down as others are let in (the stream), then the turn comes.
  await page.getByRole('heading', { name: 'It is your turn' }).waitFor({ timeout: 10000 });
  const stored = await page.evaluate((id) => sessionStorage.getItem(`usher.admission.${id}`), st.id);
  t.check(stored && JSON.parse(stored).token, 'the admission token is kept in sessionStorage');
  t.check(!requests.some((r) => /access_token/.test(r.path)), 'no token in a URL');
  const streamReq = requests.find((r) => r.path === `/api/showtimes/${st.id}/queue/events`);
  t.check(streamReq && /^Bearer /.test(streamReq.headers.authorization || ''), 'the queue stream sends the token in a header');

  await page.getByRole('link', { name: 'Choose seats' }).click();
  await page.waitForURL(new RegExp(`#/showtimes/${st.id}$`));
  await page.getByText('It is your turn: you may hold seats').waitFor();
  await seatCell(page, 'K12').click();
  await seatCell(page, 'K13').click();
  const before = requests.length;
  await page.getByRole('button', { name: 'Hold these 2 seats' }).click();
  await page.getByRole('heading', { name: 'Seats held for you' }).waitFor();
  const reserve = requests.slice(before).find((r) => r.path === '/api/bookings/reserve');
  const now = JSON.parse(await page.evaluate((id) => sessionStorage.getItem(`usher.admission.${id}`), st.id));
  t.check(reserve && /^a1\./.test(reserve.headers['admission-token'] || ''), 'reserve sent an Admission-Token header');
  t.check(reserve.headers['admission-token'] === now.token, 'the token kept for this showtime');
  const holds = (await t.api('GET', '/api/bookings/my-holds', { token: demoTok })).json.items;
  t.check(holds.length === 1 && holds[0].seats.join() === 'K12,K13', `held ${JSON.stringify(holds)}`);
  await page.getByRole('button', { name: 'Release these seats' }).click();
  await page.getByText('Your seats were released.').waitFor();
});

await t.step('a queued show without an admission: reserve is refused in words, with the way to the queue', async () => {
  const st = (await t.api('GET', '/api/showtimes?limit=100')).json.items.filter((s) => s.seats_total === 600)[1];
  await t.api('PUT', `/api/showtimes/${st.id}/queue`, { token: adminTok, body: { rate_per_second: 1 } });
  await page.goto(`/#/showtimes/${st.id}`);
  await seatCell(page, 'A1').click();
  await page.getByRole('button', { name: 'Hold seats (queue first)' }).click();
  await page.locator('.sm-panel').getByText('Join the queue; when it is your turn').waitFor();
  await page.locator('.sm-panel').getByRole('link', { name: 'Go to the queue' }).waitFor();
  t.check((await t.api('GET', '/api/bookings/my-holds', { token: demoTok })).json.total === 0, 'nothing held');
});

await t.step('waiting list: a sold-out show offers it; an offer arrives as a hold; leave', async () => {
  const th = (await t.api('POST', '/api/theaters', { token: adminTok, body: { name: 'Small Room', city: 'Pune' } })).json;
  const sc = (await t.api('POST', '/api/screens', {
    token: adminTok,
    body: { theater_id: th.id, name: 'Room 1', layout: { categories: ['regular'], rows: [{ label: 'A', category: 'regular', seats: 4, aisles_after: [2] }] } },
  })).json;
  const mv = (await t.api('GET', '/api/movies?limit=1')).json.items[0];
  const start = new Date(Date.now() + 3 * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');
  const st = (await t.api('POST', '/api/showtimes', { token: adminTok, body: { movie_id: mv.id, screen_id: sc.id, start_time: start, prices: { regular: 12000 } } })).json;
  const otherTok = await customer(9);
  const full = await t.api('POST', '/api/bookings/reserve', { token: otherTok, body: { showtime_id: st.id, seats: ['A1', 'A2', 'A3', 'A4'] } });
  t.check(full.status === 201, 'the other buyer holds every seat');

  await page.goto(`/#/showtimes/${st.id}`);
  await page.getByRole('heading', { name: 'Sold out' }).waitFor();
  await page.getByLabel('Number of seats').selectOption('1');
  await page.getByRole('button', { name: 'Join the waiting list' }).click();
  await page.getByText('You are number 1 on the waiting list').waitFor();
  const w = await t.api('GET', `/api/showtimes/${st.id}/waitlist`, { token: demoTok });
  t.check(w.status === 200 && w.json.position === 1 && w.json.count === 1, `the server has ${JSON.stringify(w.json)}`);
  await t.screenshot(page, 'waitlist');

  // The other buyer lets the seats go: the first waiter gets an offer (a hold), which the
  // page shows without a reload. The page's first look at its place after that fails (503):
  // it keeps its place and asks again at the next poll (10 s) rather than giving up.
  await page.route(`**/api/showtimes/${st.id}/waitlist`, (route) =>
    route.request().method() === 'GET'
      ? route.fulfill({ status: 503, contentType: 'application/problem+json', headers: { 'Retry-After': '1' }, body: JSON.stringify({ type: 'https://usher.invalid/problems/overloaded', title: 'overloaded', status: 503 }) })
      : route.continue(), { times: 1 });
  const rel = await t.api('DELETE', `/api/holds/${full.json.hold_id}`, { token: otherTok });
  t.check(rel.status === 204, 'released');
  await page.getByRole('heading', { name: 'Seats from the waiting list, held for you' }).waitFor({ timeout: 15000 });
  t.expectConsole(/status of 503/, 0, { atLeast: true });
  const offer = (await t.api('GET', '/api/bookings/my-holds', { token: demoTok })).json.items[0];
  t.check(offer && offer.source === 'waitlist' && offer.showtime_id === st.id, `offer ${JSON.stringify(offer)}`);
  t.check((await seatCell(page, offer.seats[0]).getAttribute('aria-label')).endsWith('held for you'), 'the offered seat is marked mine');
  await page.getByRole('button', { name: 'Release these seats' }).click();
  await page.getByText('Your seats were released.').waitFor();

  // Sold out again; join and leave.
  const again = await t.api('POST', '/api/bookings/reserve', { token: otherTok, body: { showtime_id: st.id, seats: ['A1', 'A2', 'A3', 'A4'] } });
  t.check(again.status === 201, 'sold out again');
  await page.getByRole('heading', { name: 'Sold out' }).waitFor();
  await page.getByRole('button', { name: 'Join the waiting list' }).click();
  await page.getByText('You are number 1 on the waiting list').waitFor();
  await page.getByRole('button', { name: 'Leave the waiting list' }).click();
  await page.getByText('You left the waiting list.').waitFor();
  const gone = await t.api('GET', `/api/showtimes/${st.id}/waitlist`, { token: demoTok });
  t.check(gone.status === 404, 'off the list');
});

await t.step('a hold runs out: announced at 10 s, then said, and the seats are free again', async () => {
  const st = (await t.api('GET', '/api/showtimes?limit=100')).json.items.find((s) => s.seats_total === 150);
  await page.goto(`/#/showtimes/${st.id}`);
  await seatCell(page, 'C3').click();
  await page.getByRole('button', { name: 'Hold this seat' }).click();
  await page.getByRole('heading', { name: 'Seats held for you' }).waitFor();
  t.check(/^0:1[0-2]$/.test(await page.locator('.countdown').textContent()), 'a 12 s countdown');
  const live = page.locator('.page > [aria-live=polite]');
  await until(async () => (await live.textContent()) === '10 seconds left to pay for your seats.', 4000, 'the 10 s announcement');
  t.check(/urgent/.test(await page.locator('.timer').getAttribute('class')), 'the timer turns urgent');
  await page.getByRole('alert').filter({ hasText: 'Your hold ran out of time' }).waitFor({ timeout: 13000 });
  await until(async () => (await seatCell(page, 'C3').getAttribute('aria-label')).endsWith(', free'), 3000, 'C3 free again');
  t.check((await t.api('GET', '/api/bookings/my-holds', { token: demoTok })).json.total === 0, 'no hold left');
});

await t.step('limits: at most 10 seats chosen; a hold bigger than the server allows is refused in words', async () => {
  const labels = ['D1', 'D2', 'D3', 'D4', 'D5', 'D6', 'D7', 'D8', 'D9', 'D10', 'D11'];
  for (const l of labels) await seatCell(page, l).click();
  await page.getByRole('alert').filter({ hasText: 'You can hold at most 10 seats at a time.' }).waitFor();
  t.check((await seatCell(page, 'D11').getAttribute('aria-selected')) === 'false', 'the 11th seat is not chosen');
  for (const l of labels.slice(5, 10)) await seatCell(page, l).click();
  await page.getByRole('button', { name: 'Hold these 5 seats' }).click();
  const alert = page.getByRole('alert').filter({ hasText: '(Field: seats)' });
  await alert.waitFor();
  t.log(`refusal: ${await alert.textContent()}`);
  // The browser logs the refused request (400); it was the point of this step.
  t.expectConsole(/status of 400/, 1);
  t.check((await t.api('GET', '/api/bookings/my-holds', { token: demoTok })).json.total === 0, 'nothing held');
});

await t.finish();
