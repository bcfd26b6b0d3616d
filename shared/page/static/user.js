// Settings → API Keys: the user's own keys, banner, usage and webhooks.
import { api, ApiError } from './api.js';
import { el } from './dom.js';
import { start } from './nav.js';
import { renderCards } from './cards.js';
import { renderBanner } from './banner.js';
import { loadUsage, bindExport } from './usage.js';
import { initWebhooks } from './webhooks.js';

const cards = document.getElementById('cards');
const banner = document.getElementById('banner');

async function loadKeys(flash) {
  try {
    const list = await api('GET', '/v1/keys');
    if (list.routing) renderBanner(banner, list.routing);
    renderCards(cards, list.keys || [], { base: '/v1/keys', reload: loadKeys, flash });
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    cards.replaceChildren(el('p', { class: 'error', role: 'alert' }, 'Your keys could not be loaded: ', err.message));
  }
}

if (start('keys')) {
  document.body.dataset.ready = 'loading';
  const status = document.getElementById('export-status');
  bindExport(document.getElementById('export-csv'), 'csv', status);
  bindExport(document.getElementById('export-json'), 'json', status);
  await Promise.all([
    loadKeys(),
    loadUsage(document.getElementById('usage-body')),
    initWebhooks(document.getElementById('webhooks'), '/v1/webhooks'),
  ]);
}
document.body.dataset.ready = 'true';
