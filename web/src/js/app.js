// The page shell: hash routes, the navigation bar, and one page at a time in <main>.
//
// A page module exports render(root, params) and may return a cleanup function, which runs
// when the visitor leaves the page (it closes the page's event streams and timers).

import { session, isAdmin, setSession, onSessionChange } from './api.js';
import { h, clear, errorBox } from './ui.js';

// [pattern, module, export, needs] — needs: 'user' or 'admin' sends a visitor who is not
// logged in (or not an admin) to the login page first.
const ROUTES = [
  [/^\/$/, './pages/browse.js', 'render'],
  [/^\/showtimes\/(\d+)$/, './pages/seatmap.js', 'render'],
  [/^\/showtimes\/(\d+)\/queue$/, './pages/queue.js', 'render', 'user'],
  [/^\/bookings$/, './pages/bookings.js', 'render', 'user'],
  [/^\/login$/, './pages/auth.js', 'renderLogin'],
  [/^\/register$/, './pages/auth.js', 'renderRegister'],
  [/^\/admin$/, './admin/live.js', 'render', 'admin'],
  [/^\/admin\/catalog(?:\/(\w+))?$/, './admin/catalog.js', 'render', 'admin'],
  [/^\/admin\/layout(?:\/(\d+))?$/, './admin/layout.js', 'render', 'admin'],
  [/^\/admin\/analytics$/, './admin/analytics.js', 'render', 'admin'],
];

let cleanup = null;
let generation = 0;

export function navigate(path) {
  if (location.hash === `#${path}`) route();
  else location.hash = `#${path}`;
}

function currentPath() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const q = raw.indexOf('?');
  return { path: q < 0 ? raw : raw.slice(0, q), query: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

function renderNav() {
  const nav = clear(document.getElementById('nav'));
  const s = session();
  const link = (href, text) => h('li', {}, h('a', { href, 'data-nav': href }, text));
  nav.append(link('#/', 'Showtimes'));
  if (s) nav.append(link('#/bookings', 'My bookings'));
  if (isAdmin()) nav.append(link('#/admin', 'Admin'));
  if (s) {
    nav.append(
      h('li', { class: 'who' }, h('span', { class: 'muted' }, s.user.name || s.user.email)),
      h(
        'li',
        {},
        h(
          'button',
          {
            class: 'link',
            type: 'button',
            onclick: () => {
              setSession(null);
              navigate('/');
            },
          },
          'Log out',
        ),
      ),
    );
  } else {
    nav.append(link('#/login', 'Log in'), link('#/register', 'Register'));
  }
  markCurrent();
}

function markCurrent() {
  const { path } = currentPath();
  for (const a of document.querySelectorAll('#nav a[data-nav]')) {
    const target = a.getAttribute('data-nav').slice(1);
    const here = target === '/' ? path === '/' : path === target || path.startsWith(`${target}/`);
    if (here) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  // Only '#/...' is a page: an in-page anchor such as the skip link's '#main' is not.
  if (location.hash && !location.hash.startsWith('#/')) return;
  const my = ++generation;
  if (cleanup) {
    try {
      cleanup();
    } catch (_) {
      /* a page's cleanup must not stop the next page */
    }
    cleanup = null;
  }
  markCurrent();
  const { path, query } = currentPath();
  const main = clear(document.getElementById('main'));
  for (const [re, mod, fn, needs] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    if (needs && !session()) {
      navigate(`/login?next=${encodeURIComponent(path)}`);
      return;
    }
    if (needs === 'admin' && !isAdmin()) {
      main.append(errorBox('This page is for administrators. Log in with an admin account.'));
      return;
    }
    try {
      const page = await import(mod);
      if (my !== generation) return;
      const root = h('div', { class: 'page' });
      main.append(root);
      const done = await page[fn](root, { params: m.slice(1), query });
      if (my !== generation) {
        if (typeof done === 'function') done();
        return;
      }
      if (typeof done === 'function') cleanup = done;
      // The new page's heading takes the focus (screen readers announce it), unless the page
      // put it somewhere itself (a form's first field).
      const h1 = main.querySelector('h1');
      if (h1 && !root.contains(document.activeElement)) h1.focus({ preventScroll: true });
    } catch (e) {
      if (my === generation) main.append(errorBox(e));
    }
    return;
  }
  document.title = 'Not found · usher';
  main.append(h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/' }, 'See the showtimes')));
}

// A session that ends (log out, or an expired token refused by the server) leaves pages that
// need one: routing again sends the visitor to the login page.
onSessionChange((s) => {
  renderNav();
  if (!s) {
    const { path } = currentPath();
    if (ROUTES.some(([re, , , needs]) => needs && re.test(path))) route();
  }
});
document.querySelector('.skip').addEventListener('click', (ev) => {
  ev.preventDefault();
  document.getElementById('main').focus();
});
window.addEventListener('hashchange', route);
renderNav();
route();
