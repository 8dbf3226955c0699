// The shell: log in through the form (wrong password first: the error in words), the
// navigation changes with the session, a reload keeps it, log out ends it, an admin page
// asks a customer to log in as an admin, an unknown page says so; a phone-sized viewport too.
// Without usherd --analytics-url, the analytics page says how to set analytics up.
import { Harness } from './lib.mjs';

const t = new Harness('shell');
const { demo, admin } = await t.startUsherd();
await t.launch();
const page = await t.newPage('customer');

await t.step('a wrong password is refused in words', async () => {
  await page.goto('/#/login');
  await page.getByLabel('Email').fill(demo.email);
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'The email or password is wrong.' }).waitFor();
  t.check((await page.getByRole('link', { name: 'Log in' }).count()) === 1, 'still logged out');
});

await t.step('log in, the session survives a reload, not the tab', async () => {
  await t.uiLogin(page, demo);
  await page.getByText('Demo Customer').waitFor();
  await page.reload();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
  const stored = await page.evaluate(() => ({
    session: sessionStorage.getItem('usher.session'),
    local: Object.keys(localStorage),
    cookie: document.cookie,
  }));
  t.check(stored.session && JSON.parse(stored.session).token, 'token in sessionStorage');
  t.check(stored.local.length === 0 && stored.cookie === '', 'no token in localStorage or cookies');
});

await t.step('the skip link moves the focus to the page and keeps it', async () => {
  await page.goto('/#/bookings');
  await page.getByRole('heading', { name: 'My bookings' }).waitFor();
  await page.getByRole('link', { name: 'Skip to content' }).focus();
  await page.keyboard.press('Enter');
  t.check((await page.evaluate(() => document.activeElement.id)) === 'main', 'focus on main');
  t.check((await page.getByRole('heading', { name: 'My bookings' }).count()) === 1, 'still on My bookings');
  t.check(page.url().endsWith('#/bookings'), `the address stays: ${page.url()}`);
});

await t.step('a customer on an admin page is told so', async () => {
  await page.goto('/#/admin');
  await page.getByRole('alert').filter({ hasText: 'for administrators' }).waitFor();
});

await t.step('an unknown page says so', async () => {
  await page.goto('/#/no/such/page');
  await page.getByRole('heading', { name: 'Page not found' }).waitFor();
});

await t.step('log out ends the session', async () => {
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('link', { name: 'Log in' }).waitFor();
  t.check((await page.evaluate(() => sessionStorage.getItem('usher.session'))) === null, 'session removed');
  await page.goto('/#/bookings');
  await page.waitForURL(/#\/login\?next=%2Fbookings$/);
});

await t.step('the login page on a phone-sized viewport', async () => {
  const phone = await t.newPage('phone', { width: 390, height: 844 });
  await phone.goto('/#/login');
  await phone.getByLabel('Email').waitFor();
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  t.check(overflow <= 0, `the page is ${overflow} px wider than the phone`);
  await t.screenshot(phone, 'login-phone');
});

await t.step('analytics without --analytics-url explains how to set it up', async () => {
  await t.uiLogin(page, admin);
  await page.getByRole('link', { name: 'Admin' }).waitFor();
  await page.goto('/#/admin/analytics');
  await page.getByText('which is not configured for this server').waitFor();
  await page.getByText('--analytics-url http://127.0.0.1:8081').waitFor();
  t.check((await page.locator('canvas').count()) === 0, 'no charts without an analytics server');
});

await t.finish();
