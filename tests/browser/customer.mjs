// The customer pages in Chromium: browse with filters and sorts (the rows are the API's, in
// its order; the hash keeps them over a reload and back), a debounced search, a virtual list of
// thousands of showtimes, the seat map (every seat, aisles, keyboard), reserve after a login,
// another client's hold appearing live, both kinds of conflict (seen on the stream, refused by
// the server while the stream is stale), confirm with UPI, my bookings with release and cancel
// (the refund shown is the server's), and a phone-sized viewport.
import { Harness, until } from './lib.mjs';

const t = new Harness('customer');
const { demo, admin } = await t.startUsherd();
await t.launch();
const adminTok = await t.login(admin);
const demoTok = await t.login(demo);

// "Another client": a second registered customer, from Node.
const reg = await t.api('POST', '/api/auth/register', {
  body: { name: 'Other Buyer', email: 'other@usher.local', password: 'other-password-1' },
});
if (reg.status !== 201) await t.fail(`register: ${reg.status} ${JSON.stringify(reg.json)}`);
const otherTok = reg.json.token;
const otherHold = async (showtimeId, seats) => {
  const r = await t.api('POST', '/api/bookings/reserve', { token: otherTok, body: { showtime_id: showtimeId, seats } });
  t.check(r.status === 201, `the other client's reserve of ${seats}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
};

const inr = new Intl.NumberFormat('en-IN', { style: 'currency', currency: 'INR' });
const money = (minor) => inr.format(minor / 100);

const page = await t.newPage('customer');
const apiRequests = [];
page.on('request', (req) => {
  const u = new URL(req.url());
  if (u.pathname.startsWith('/api/')) apiRequests.push({ path: u.pathname + u.search, headers: req.headers(), method: req.method() });
});

// The rows of the virtual list now in the DOM: [position, showtime id] in list order.
const rowsShown = (p) =>
  p.$$eval('.vlist .st-row[data-id]', (els) =>
    els.map((e) => [Number(e.getAttribute('aria-posinset')), Number(e.dataset.id)]).sort((a, b) => a[0] - b[0]),
  );
const seatCell = (p, label) => p.locator(`.seatgrid [role=gridcell][data-label="${label}"]`);

await t.step('browse: a filter and a sort list the API answer for the same query, in order', async () => {
  await page.goto('/#/');
  await page.locator('.vlist .st-row[data-id]').first().waitFor();
  await page.getByLabel('City', { exact: true }).selectOption('Mumbai');
  await page.waitForURL(/city=Mumbai/);
  await page.getByLabel('Sort by').selectOption('price');
  await page.waitForURL(/city=Mumbai&sort=price$/);
  const api = (await t.api('GET', '/api/showtimes?city=Mumbai&sort=price&limit=100')).json;
  await page.getByText(`${api.total} showtimes`, { exact: true }).waitFor();
  const shown = await until(async () => {
    const r = await rowsShown(page);
    return r.length >= 8 && r[0][0] === 1 ? r : null;
  }, 5000, 'the rows of the filtered list');
  const want = api.items.slice(0, shown.length).map((s) => s.id);
  t.check(JSON.stringify(shown.map((r) => r[1])) === JSON.stringify(want), `rows ${shown.map((r) => r[1])} != API ${want}`);
  t.check(shown.every((r, i) => r[0] === i + 1), 'rows in list order without gaps');
  const firstTitle = await page.locator(`.st-row[data-id="${want[0]}"] .st-title`).textContent();
  t.check(firstTitle === api.items[0].movie_title, `first row shows ${firstTitle}`);
  const prices = api.items.map((s) => s.price_from);
  t.check(prices.every((p, i) => i === 0 || prices[i - 1] <= p), 'the API sorted by price (sanity)');
  // A reload keeps the filters (the hash); back goes to the previous filters.
  await page.reload();
  await page.getByText(`${api.total} showtimes`, { exact: true }).waitFor();
  t.check((await page.getByLabel('City', { exact: true }).inputValue()) === 'Mumbai', 'city kept over a reload');
  t.check((await page.getByLabel('Sort by').inputValue()) === 'price', 'sort kept over a reload');
  await t.screenshot(page, 'browse');
  await page.goBack();
  await page.waitForURL(/#\/\?city=Mumbai$/);
  await until(async () => (await page.getByLabel('Sort by').inputValue()) === 'time', 5000, 'back to sort by time');
  // Removing the city's chip clears the city in the form, the hash and the list.
  await page.getByRole('button', { name: 'Remove filter City: Mumbai' }).click();
  await page.waitForURL(/#\/$/);
  t.check((await page.getByLabel('City', { exact: true }).inputValue()) === '', 'the city select is cleared');
  const all = (await t.api('GET', '/api/showtimes?limit=1')).json.total;
  await page.getByText(`${all} showtimes`, { exact: true }).waitFor();
});

await t.step('browse: prices typed in rupees are sent in paise', async () => {
  await page.goto('/#/');
  await page.locator('.vlist .st-row[data-id]').first().waitFor();
  const before = apiRequests.length;
  await page.getByLabel('Lowest price in rupees').fill('160');
  await page.getByLabel('Lowest price in rupees').press('Enter');
  await page.getByLabel('Highest price in rupees').fill('250');
  await page.getByLabel('Highest price in rupees').press('Tab');
  await page.waitForURL(/min=160&max=250/);
  const sent = await until(() => apiRequests.slice(before).find((r) => r.path.includes('max_price=')), 5000, 'the price query');
  t.check(/min_price=16000&max_price=25000/.test(sent.path), `sent ${sent.path}`);
  const api = (await t.api('GET', '/api/showtimes?min_price=16000&max_price=25000&limit=100')).json;
  await page.getByText(`${api.total} showtimes`, { exact: true }).waitFor();
  const shown = await until(async () => {
    const r = await rowsShown(page);
    return r.length >= Math.min(api.total, 8) ? r : null;
  }, 5000, 'the rows');
  t.check(shown.every((r, i) => r[1] === api.items[i].id), 'rows match the API in the price range');
});

await t.step('search is debounced: typing a title asks the API a few times, not per key', async () => {
  await page.goto('/#/');
  await page.locator('.vlist .st-row[data-id]').first().waitFor();
  await page.waitForTimeout(300);
  const before = apiRequests.length;
  const word = 'Monsoon Wedding';
  await page.getByRole('combobox', { name: 'Search' }).pressSequentially(word, { delay: 45 });
  const option = page.getByRole('option', { name: /Monsoon Wedding Redux/ });
  await option.waitFor();
  const typed = apiRequests.slice(before);
  t.check(typed.length <= 3, `${typed.length} API requests for ${word.length} keystrokes: ${typed.map((r) => r.path).join(' ')}`);
  await option.click();
  await page.waitForURL(/movie_id=\d+/);
  const movieId = /movie_id=(\d+)/.exec(page.url())[1];
  const api = (await t.api('GET', `/api/showtimes?movie_id=${movieId}&limit=100`)).json;
  await page.getByText(`${api.total} showtimes`, { exact: true }).waitFor();
  await page.getByRole('button', { name: 'Remove filter Movie: Monsoon Wedding Redux' }).waitFor();
  const titles = await page.locator('.vlist .st-row .st-title').allTextContents();
  t.check(titles.length > 0 && titles.every((x) => x === 'Monsoon Wedding Redux'), `titles: ${titles}`);
});

await t.step('a virtual list: 2,000 more showtimes, the last is reachable, the DOM stays small', async () => {
  const th = (await t.api('POST', '/api/theaters', { token: adminTok, body: { name: 'Bulk Hall', city: 'Pune' } })).json;
  const sc = (await t.api('POST', '/api/screens', {
    token: adminTok,
    body: { theater_id: th.id, name: 'Tiny', layout: { categories: ['regular'], rows: [{ label: 'A', category: 'regular', seats: 4 }] } },
  })).json;
  const mv = (await t.api('POST', '/api/movies', { token: adminTok, body: { title: 'Long Run', duration_min: 90, genre: 'drama', language: 'english' } })).json;
  const N = 2000;
  const base = Date.UTC(2027, 0, 1);
  let next = 0;
  let bad = 0;
  const worker = async () => {
    while (next < N) {
      const i = next++;
      const start = new Date(base + i * 3600e3).toISOString().replace(/\.\d+Z$/, 'Z');
      const r = await t.api('POST', '/api/showtimes', { token: adminTok, body: { movie_id: mv.id, screen_id: sc.id, start_time: start, prices: { regular: 10000 + i } } });
      if (r.status !== 201) bad++;
    }
  };
  await Promise.all(Array.from({ length: 48 }, worker));
  t.check(bad === 0, `${bad} showtime creates failed`);
  const total = (await t.api('GET', '/api/showtimes?limit=1')).json.total;
  t.check(total >= N + 50, `total ${total}`);
  const last = (await t.api('GET', `/api/showtimes?limit=100&page=${Math.ceil(total / 100)}`)).json.items.at(-1);

  await page.goto('/#/');
  await page.getByText(`${total.toLocaleString('en-IN')} showtimes`, { exact: true }).waitFor();
  const before = apiRequests.length;
  await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
  const lastRow = page.locator(`.vlist .st-row[data-id="${last.id}"]`);
  await lastRow.waitFor();
  t.check((await lastRow.getAttribute('aria-posinset')) === String(total), 'the last row is at position total');
  t.check(await lastRow.isVisible(), 'the last row is on screen');
  const inView = await lastRow.evaluate((el) => {
    const r = el.getBoundingClientRect();
    return r.bottom <= window.innerHeight + 1 && r.top >= 0;
  });
  t.check(inView, 'the last row is inside the viewport');
  const domRows = await page.locator('.vlist > .st-row').count();
  t.check(domRows <= 40, `${domRows} rows in the DOM for ${total} showtimes`);
  const pagesFetched = apiRequests.slice(before).filter((r) => r.path.startsWith('/api/showtimes?'));
  t.check(pagesFetched.length <= 3, `fetched ${pagesFetched.length} pages to reach the end: ${pagesFetched.map((r) => r.path)}`);
  // Scrolling back to the middle fetches the page there, and only the rows there are built.
  await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight / 2));
  await until(async () => {
    const r = await rowsShown(page);
    return r.length > 5 && r[0][0] > 900 && r[0][0] < 1200;
  }, 5000, 'rows in the middle of the list');
  t.check((await page.locator('.vlist > .st-row').count()) <= 40, 'still a bounded DOM');
});

// The demo's first 150-seat showtime (10 rows of 15, aisles after seats 5 and 10, wheelchair
// spaces J1 and J15 with companions J2 and J14).
const small = (await t.api('GET', '/api/showtimes?limit=100')).json.items.find((s) => s.seats_total === 150);
const SID = small.id;

await t.step('the seat map shows every seat, its rows, its aisles and its marks', async () => {
  await page.goto(`/#/showtimes/${SID}`);
  const map = (await t.api('GET', `/api/seats/${SID}`)).json;
  await seatCell(page, 'A1').waitFor();
  t.check((await page.locator('.seatgrid [role=gridcell]').count()) === map.seats.length, 'a cell per seat');
  t.check((await page.locator('.seatgrid [role=rowheader]').count()) === 10, 'ten row labels');
  const x = async (l) => (await seatCell(page, l).boundingBox()).x;
  const pitch = (await x('A5')) - (await x('A4'));
  const aisle = (await x('A6')) - (await x('A5'));
  t.check(pitch > 20 && Math.abs(aisle - 2 * pitch) < 2, `an aisle is one seat wide: pitch ${pitch}, A5→A6 ${aisle}`);
  t.check(Math.abs((await x('B6')) - (await x('A6'))) < 1, 'columns line up across rows');
  const j1 = await seatCell(page, 'J1').getAttribute('aria-label');
  t.check(/^J1, platinum, ₹400\.00, wheelchair space, free$/.test(j1), `J1 is named "${j1}"`);
  t.check((await seatCell(page, 'J1').textContent()) === '♿', 'a wheelchair symbol on J1');
  t.check((await seatCell(page, 'J2').getAttribute('aria-label')).includes('companion seat'), 'J2 is a companion seat');
  await page.getByText('Screen this way').waitFor();
  await page.locator('.live').getByText('Live').waitFor();
  for (const c of map.categories) {
    await page.locator('.legend-cats li').filter({ hasText: c.name }).filter({ hasText: money(c.price) }).waitFor();
  }
});

await t.step('keyboard: one tab stop, arrows move, Space and Enter choose', async () => {
  t.check((await page.locator('.seatgrid [tabindex="0"]').count()) === 1, 'one tab stop in the grid');
  await page.locator('.seatgrid [tabindex="0"]').focus();
  t.check((await page.evaluate(() => document.activeElement.dataset.label)) === 'A1', 'the tab stop starts on A1');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowDown');
  const name = await page.evaluate(() => document.activeElement.getAttribute('aria-label'));
  t.check(name === 'B3, silver, ₹150.00, free', `focus on "${name}"`);
  await page.keyboard.press('Space');
  t.check((await seatCell(page, 'B3').getAttribute('aria-selected')) === 'true', 'Space chose B3');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Enter');
  t.check((await seatCell(page, 'B4').getAttribute('aria-selected')) === 'true', 'Enter chose B4');
  await page.keyboard.press('Space');
  t.check((await seatCell(page, 'B4').getAttribute('aria-selected')) === 'false', 'Space again let B4 go');
  await page.getByRole('list', { name: 'Chosen seats' }).getByText('B3').waitFor();
  t.check((await page.locator('.seatgrid [aria-selected=true]').count()) === 1, 'only B3 chosen');
});

let holdId;
await t.step('reserve: not logged in goes to the login, then the hold with a countdown', async () => {
  await page.getByRole('button', { name: 'Log in to hold these seats' }).click();
  await page.waitForURL(new RegExp(`#/login\\?next=%2Fshowtimes%2F${SID}$`));
  await page.getByLabel('Email').fill(demo.email);
  await page.getByLabel('Password').fill(demo.password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(new RegExp(`#/showtimes/${SID}$`));
  await seatCell(page, 'B3').waitFor();
  await until(async () => (await seatCell(page, 'B3').getAttribute('aria-selected')) === 'true', 5000, 'B3 still chosen after the login');
  await page.getByRole('button', { name: 'Hold this seat' }).click();
  await page.getByRole('heading', { name: 'Seats held for you' }).waitFor();
  const mine = (await t.api('GET', '/api/bookings/my-holds', { token: demoTok })).json.items;
  t.check(mine.length === 1 && mine[0].seats.join() === 'B3', `the server holds ${JSON.stringify(mine)}`);
  holdId = mine[0].hold_id;
  t.check(/^[45]:\d\d$/.test(await page.locator('.countdown').textContent()), 'a countdown of about 5 minutes');
  t.check((await seatCell(page, 'B3').getAttribute('aria-label')).endsWith('held for you'), 'B3 is held for me');
  const c1 = await page.locator('.countdown').textContent();
  await page.waitForTimeout(1100);
  t.check((await page.locator('.countdown').textContent()) !== c1, 'the countdown runs');
});

await t.step("another client's hold appears on the map live, within 2 s, without a reload", async () => {
  const url = page.url();
  const t0 = Date.now();
  await otherHold(SID, ['E5', 'E6']);
  await until(async () => (await seatCell(page, 'E6').getAttribute('aria-label')).endsWith('held by someone else'), 2000, 'E6 shown held');
  t.log(`the other client's hold showed after ${Date.now() - t0} ms`);
  t.check(/s-held/.test(await seatCell(page, 'E5').getAttribute('class')), 'E5 drawn as held');
  t.check(page.url() === url, 'no navigation');
  await t.screenshot(page, 'hold');
});

let bookingId;
await t.step('confirm with UPI: booked, with the booking number and a link to my bookings', async () => {
  await page.getByLabel('UPI').check();
  await page.getByRole('button', { name: 'Pay ₹150.00' }).click();
  await page.getByRole('heading', { name: 'Booked' }).waitFor();
  const text = await page.locator('.sm-panel .success').textContent();
  bookingId = /Booking (\d+)/.exec(text)[1];
  const b = (await t.api('GET', `/api/bookings/${bookingId}`, { token: demoTok })).json;
  t.check(b.status === 'confirmed' && b.payment_method === 'upi' && b.seats.join() === 'B3', `booking ${JSON.stringify(b)}`);
  t.check(b.hold_id === holdId, 'the hold that was shown was confirmed');
  await page.getByRole('link', { name: 'See my bookings' }).waitFor();
  await until(async () => /s-sold/.test(await seatCell(page, 'B3').getAttribute('class')), 2000, 'B3 sold on the map');
});

await t.step('conflict seen live: a chosen seat taken by someone else is said, marked and let go', async () => {
  await page.getByRole('button', { name: 'Choose more seats' }).click();
  await seatCell(page, 'F7').click();
  await seatCell(page, 'F8').click();
  await otherHold(SID, ['F8']);
  const alert = page.getByRole('alert').filter({ hasText: 'Someone else has just taken seat F8' });
  await alert.waitFor({ timeout: 2000 });
  t.check((await seatCell(page, 'F8').getAttribute('aria-selected')) === 'false', 'F8 let go');
  t.check((await seatCell(page, 'F7').getAttribute('aria-selected')) === 'true', 'F7 still chosen');
  t.check(/s-held/.test(await seatCell(page, 'F8').getAttribute('class')), 'F8 drawn as held');
  await t.screenshot(page, 'seatmap');
  await seatCell(page, 'F7').click(); // let it go again
});

await t.step('conflict refused by the server: the seat is named and marked at once, before any stream event', async () => {
  const stale = await t.newPage('stale');
  await t.uiLogin(stale, demo);
  // This page's seat stream never delivers an event: what it shows comes from the 409.
  await stale.route('**/api/seats/*/events', (route) =>
    route.fulfill({ status: 200, contentType: 'text/event-stream', body: 'retry: 600000\n\n' }),
  );
  await stale.goto(`/#/showtimes/${SID}`);
  await seatCell(stale, 'G7').click();
  await seatCell(stale, 'G8').click();
  await otherHold(SID, ['G8']);
  await stale.waitForTimeout(300);
  t.check((await seatCell(stale, 'G8').getAttribute('aria-selected')) === 'true', 'the stale page still shows G8 chosen');
  await stale.getByRole('button', { name: 'Hold these 2 seats' }).click();
  await stale.getByRole('alert').filter({ hasText: 'Someone else has just taken seat G8' }).waitFor();
  t.check(/s-held/.test(await seatCell(stale, 'G8').getAttribute('class')), 'G8 marked taken');
  t.check((await seatCell(stale, 'G8').getAttribute('aria-selected')) === 'false', 'G8 let go');
  t.check((await seatCell(stale, 'G7').getAttribute('aria-selected')) === 'true', 'G7 still chosen');
  t.check((await stale.locator('.live').textContent()) !== 'Live', 'the stale page does not claim to be live');
  await stale.context().close();
});

await t.step('best available: the best 3 together in a category, held and marked mine', async () => {
  await page.getByLabel('Number of seats').selectOption('3');
  await page.locator('#best-cat').selectOption('platinum');
  await page.getByRole('button', { name: 'Find and hold the best seats' }).click();
  await page.getByRole('heading', { name: 'Seats held for you' }).waitFor();
  const hd = (await t.api('GET', '/api/bookings/my-holds', { token: demoTok })).json.items[0];
  t.check(hd && hd.seats.length === 3, `held ${JSON.stringify(hd)}`);
  const nums = hd.seats.map((l) => Number(l.slice(1))).sort((a, b) => a - b);
  t.check(new Set(hd.seats.map((l) => l[0])).size === 1 && 'IJ'.includes(hd.seats[0][0]), 'one platinum row');
  t.check(nums[2] - nums[0] === 2, `adjacent seats ${hd.seats}`);
  for (const l of hd.seats) {
    t.check((await seatCell(page, l).getAttribute('aria-label')).endsWith('held for you'), `${l} marked mine`);
  }
  await page.getByRole('list', { name: 'Held seats' }).getByText(hd.seats[0]).waitFor();
  await page.getByRole('button', { name: 'Release these seats' }).click();
  await page.getByText('Your seats were released.').waitFor();
  for (const l of hd.seats) t.check((await seatCell(page, l).getAttribute('aria-label')).endsWith(', free'), `${l} free again`);
});

// A problem answer as usherd sends it (only the type's last segment matters to the page).
const problem = (status, slug, detail) => ({
  status,
  contentType: 'application/problem+json',
  headers: { 'Retry-After': '1' },
  body: JSON.stringify({ type: `https://usher.invalid/problems/${slug}`, title: slug, status, detail }),
});
const heldForMe = async (l) => (await seatCell(page, l).getAttribute('aria-label')).endsWith('held for you');
const releaseShown = async () => {
  await page.getByRole('button', { name: 'Release these seats' }).click();
  await page.getByText('Your seats were released.').waitFor();
};

await t.step('reserve: a 409 idempotency-in-flight is tried again with the same key and body', async () => {
  const keys = [];
  let n = 0;
  await page.route('**/api/bookings/reserve', (route) => {
    keys.push([route.request().headers()['idempotency-key'], route.request().postData()]);
    if (n++ === 0) return route.fulfill(problem(409, 'idempotency-in-flight', 'a request with this Idempotency-Key is still executing'));
    return route.continue();
  });
  await seatCell(page, 'C1').click();
  await page.getByRole('button', { name: 'Hold this seat' }).click();
  await page.locator('.sm-panel [role=alert]').waitFor();
  await page.getByRole('button', { name: 'Hold this seat' }).click();
  await page.getByRole('heading', { name: 'Seats held for you' }).waitFor();
  await page.unroute('**/api/bookings/reserve');
  t.check(keys.length === 2 && keys[0][0] && keys[0][0] === keys[1][0] && keys[0][1] === keys[1][1], `the two tries: ${JSON.stringify(keys)}`);
  t.check(await heldForMe('C1'), 'C1 is held for me');
  await releaseShown();
});

await t.step("reserve: the answer lost after the server held the seat: the page shows the hold as mine", async () => {
  // The request reaches usherd (which holds C3); the browser never sees the answer.
  await page.route('**/api/bookings/reserve', async (route) => {
    await route.fetch();
    await route.abort('failed');
  }, { times: 1 });
  await seatCell(page, 'C3').click();
  await page.getByRole('button', { name: 'Hold this seat' }).click();
  await page.getByRole('heading', { name: 'Seats held for you' }).waitFor();
  t.check(await heldForMe('C3'), 'C3 is held for me');
  t.check((await page.getByText('Someone else has just taken').count()) === 0, 'not said to be taken by someone else');
  const mine = (await t.api('GET', '/api/bookings/my-holds', { token: demoTok })).json.items;
  t.check(mine.length === 1 && mine[0].seats.join() === 'C3', `one hold on the server: ${JSON.stringify(mine)}`);
  t.expectConsole(/ERR_FAILED|Failed to fetch/, 0, { atLeast: true });
});

await t.step('confirm: the answer lost: the method is locked, paying again resends it and shows the booking', async () => {
  let failLookups = true; // the page's own look-up of my bookings fails too, for a while
  await page.route('**/api/bookings/my-bookings*', (route) => (failLookups ? route.abort('failed') : route.continue()));
  await page.route('**/api/bookings/confirm', async (route) => {
    await route.fetch();
    await route.abort('failed');
  }, { times: 1 });
  await page.getByLabel('UPI').check();
  await page.getByRole('button', { name: /^Pay / }).click();
  await until(() => page.getByLabel('Card').isDisabled(), 5000, 'the payment methods locked');
  t.check(await page.getByLabel('UPI').isChecked(), 'UPI stays chosen');
  failLookups = false;
  const pay = page.getByRole('button', { name: /^Pay / });
  if (await pay.isVisible()) await pay.click();
  await page.getByRole('heading', { name: 'Booked' }).waitFor();
  const text = await page.locator('.sm-panel .success').textContent();
  t.check(/paid by UPI/.test(text), `the booking shown: ${text}`);
  const id = /Booking (\d+)/.exec(text)[1];
  const b = (await t.api('GET', `/api/bookings/${id}`, { token: demoTok })).json;
  t.check(b.status === 'confirmed' && b.seats.join() === 'C3' && b.payment_method === 'upi', `booking ${JSON.stringify(b)}`);
  await page.unroute('**/api/bookings/my-bookings*');
  t.expectConsole(/ERR_FAILED|Failed to fetch/, 0, { atLeast: true });
  await page.getByRole('button', { name: 'Choose more seats' }).click();
});

await t.step('a hold bought elsewhere (its seats turn sold on the stream): the page shows the booking', async () => {
  await seatCell(page, 'D1').click();
  await page.getByRole('button', { name: 'Hold this seat' }).click();
  await page.getByRole('heading', { name: 'Seats held for you' }).waitFor();
  const hd = (await t.api('GET', '/api/bookings/my-holds', { token: demoTok })).json.items[0];
  const r = await t.api('POST', '/api/bookings/confirm', { token: demoTok, body: { hold_id: hd.hold_id, payment: { method: 'wallet' } } });
  t.check(r.status === 201, `confirm from elsewhere: ${r.status}`);
  await page.getByRole('heading', { name: 'Booked' }).waitFor({ timeout: 3000 });
  await page.locator('.sm-panel .success').getByText(`Booking ${r.json.booking_id}`).waitFor();
  await page.locator('.sm-panel .success').getByText('paid by WALLET').waitFor();
  await page.getByRole('button', { name: 'Choose more seats' }).click();
});

await t.step('the countdown runs to expires_at, not to a replayed expires_in_s', async () => {
  await page.route('**/api/bookings/reserve', async (route) => {
    const res = await route.fetch();
    const hd = await res.json();
    // As a replay of an answer given 280 s ago would say.
    hd.expires_in_s = 300;
    hd.expires_at = new Date(Date.now() + 20000).toISOString();
    await route.fulfill({ response: res, body: JSON.stringify(hd) });
  }, { times: 1 });
  await seatCell(page, 'D3').click();
  await page.getByRole('button', { name: 'Hold this seat' }).click();
  await page.getByRole('heading', { name: 'Seats held for you' }).waitFor();
  const c = await page.locator('.countdown').textContent();
  const [m, sec] = c.split(':').map(Number);
  t.check(m * 60 + sec <= 20 && m * 60 + sec >= 15, `the countdown shows ${c}`);
  await releaseShown();
});

await t.step('my bookings: a hold released, a booking cancelled with the refund shown', async () => {
  const r = await t.api('POST', '/api/bookings/reserve', { token: demoTok, body: { showtime_id: SID, seats: ['H1', 'H2'] } });
  t.check(r.status === 201, 'a hold for the list');
  await page.getByRole('link', { name: 'My bookings' }).first().click();
  await page.waitForURL(/#\/bookings$/);
  const holdCard = page.locator(`li[data-hold="${r.json.hold_id}"]`);
  await holdCard.getByText('H1, H2').waitFor();
  await holdCard.getByRole('link', { name: 'Continue to payment' }).waitFor();
  const card = page.locator(`li[data-booking="${bookingId}"]`);
  await card.getByText('Monsoon Wedding Redux').waitFor();
  await t.screenshot(page, 'bookings');
  await holdCard.getByRole('button', { name: 'Release' }).click();
  await holdCard.waitFor({ state: 'detached' });
  t.check((await t.api('GET', '/api/bookings/my-holds', { token: demoTok })).json.total === 0, 'the hold was released');

  await card.getByRole('button', { name: `Cancel booking ${bookingId}` }).click();
  const dlg = page.getByRole('dialog', { name: `Cancel booking ${bookingId}?` });
  await dlg.getByText('Refund:').waitFor();
  await dlg.getByRole('button', { name: 'Cancel the booking' }).click();
  const b = await until(async () => {
    const x = (await t.api('GET', `/api/bookings/${bookingId}`, { token: demoTok })).json;
    return x.status === 'cancelled' ? x : null;
  }, 5000, 'the booking cancelled');
  const done = page.locator(`li[data-booking="${bookingId}"]`);
  await done.getByText(`Booking ${bookingId} cancelled. Refund: ${money(b.refund)}.`).waitFor();
  await done.locator('.refund').getByText(money(b.refund)).waitFor();
  await done.getByText('Cancelled', { exact: true }).waitFor();
  t.log(`refund ${money(b.refund)} of ${money(b.amount)}`);
});

await t.step('a phone-sized viewport: no page overflow, the map scrolls in its box, big enough seats', async () => {
  const phone = await t.newPage('phone', { width: 390, height: 844 });
  const overflow = () => phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await phone.goto('/#/');
  await phone.locator('.vlist .st-row[data-id]').first().waitFor();
  t.check((await overflow()) <= 0, `browse is ${await overflow()} px too wide`);
  const big = (await t.api('GET', '/api/showtimes?limit=100')).json.items.find((s) => s.seats_total === 600);
  await phone.goto(`/#/showtimes/${big.id}`);
  await seatCell(phone, 'A1').waitFor();
  t.check((await overflow()) <= 0, `the seat map page is ${await overflow()} px too wide`);
  const box = await phone.locator('.mapbox').evaluate((el) => ({ sw: el.scrollWidth, cw: el.clientWidth }));
  t.check(box.sw > box.cw, 'the seat map scrolls inside its box');
  const size = await seatCell(phone, 'K12').boundingBox();
  t.check(size.width >= 24 && size.height >= 24, `seats are ${size.width}x${size.height} px`);
  await seatCell(phone, 'K12').click();
  t.check((await seatCell(phone, 'K12').getAttribute('aria-selected')) === 'true', 'a tap chooses a seat');
  await t.screenshot(phone, 'seatmap-phone');
  await t.uiLogin(phone, demo);
  await phone.goto('/#/bookings');
  await phone.locator('li[data-booking]').first().waitFor();
  t.check((await overflow()) <= 0, `my bookings is ${await overflow()} px too wide`);
});

await t.finish();
