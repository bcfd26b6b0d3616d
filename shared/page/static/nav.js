// Page start-up shared by the three pages: token, navigation, sign-out.
import { takeToken, claims, signOut, ROOT } from './api.js';
import { el } from './dom.js';

// start takes the token and fills the navigation; it returns the token's
// claims (for display only) or null when there is no token.
export function start(current) {
  // A new #token=... on an open page (same-document navigation) signs in
  // afresh: take it and reload, so nothing of the old session stays.
  window.addEventListener('hashchange', () => {
    if (new URLSearchParams(location.hash.slice(1)).has('token')) {
      takeToken();
      location.reload();
    }
  });
  const token = takeToken();
  const nav = document.getElementById('nav');
  const c = claims();
  const links = [['keys', 'API Keys', '/settings/']];
  if (c.org) links.push(['org', 'Organisation keys', '/settings/org/']);
  if (c.role === 'admin') links.push(['admin', 'Admin', '/settings/admin/']);
  nav.replaceChildren(...links.map(([id, text, href]) => el('li', {},
    el('a', { href: ROOT + href, 'aria-current': id === current ? 'page' : null }, text))));
  const who = document.getElementById('who');
  if (who) {
    who.replaceChildren();
    if (token) {
      who.append(el('span', {}, 'Signed in as ', el('strong', {}, String(c.sub || 'unknown'))), ' ',
        el('button', { type: 'button', class: 'link', onclick: () => { signOut(); location.reload(); } }, 'Sign out'));
    }
  }
  if (!token) {
    const n = document.getElementById('notice');
    n.textContent = 'You are not signed in. Open this page from the platform\'s Settings link (it carries your sign-in), or in development use the URL that make run prints.';
    n.hidden = false;
    return null;
  }
  return c;
}
