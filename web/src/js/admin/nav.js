// The admin sub-navigation, shown under each admin page's heading. The analytics page (the
// lead's) imports it too: adminNav('analytics').

import { h } from '../ui.js';

const LINKS = [
  ['live', '#/admin', 'Live'],
  ['catalog', '#/admin/catalog', 'Catalog'],
  ['layout', '#/admin/layout', 'Layout editor'],
  ['analytics', '#/admin/analytics', 'Analytics'],
];

// current: 'live' | 'catalog' | 'layout' | 'analytics' (the page being shown). Returns a
// <nav aria-label="Admin"> whose current link has aria-current="page".
export function adminNav(current) {
  return h(
    'nav',
    { class: 'admin-nav', 'aria-label': 'Admin' },
    h(
      'ul',
      {},
      LINKS.map(([key, href, text]) =>
        h('li', {}, h('a', { href, 'aria-current': key === current ? 'page' : null }, text)),
      ),
    ),
  );
}
