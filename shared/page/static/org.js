// Settings → Organisation keys: the same cards on the org's routes, for the
// org's owners and admins, shown only when the server has org keys.
import { api, ApiError, seg } from './api.js';
import { el } from './dom.js';
import { start } from './nav.js';
import { renderCards } from './cards.js';
import { initWebhooks } from './webhooks.js';
import { loadOrgUsage, bindExport } from './usage.js';

const body = document.getElementById('org-body');
const cards = document.getElementById('cards');

function say(text) {
  body.replaceChildren(el('p', { class: 'notice' }, text));
}

const c = start('org');
if (c) {
  if (!c.org) {
    say('Your sign-in names no organisation, so there are no organisation keys to manage.');
  } else {
    document.getElementById('org-name').textContent = String(c.org);
    if (c.org_role !== 'owner' && c.org_role !== 'admin') {
      say('Only the organisation\'s owners and admins manage its keys. Your role: ' + (c.org_role || 'member') + '.');
    } else {
      const base = `/v1/orgs/${seg(c.org)}/keys`;
      const load = async (flash) => {
        try {
          const list = await api('GET', base);
          renderCards(cards, list.keys || [], { base, reload: load, flash });
        } catch (err) {
          if (!(err instanceof ApiError)) throw err;
          if (err.status === 404 && err.code === 'not_found') say('Organisation keys are not available on this server.');
          else say('The organisation\'s keys could not be loaded: ' + err.message);
        }
      };
      // The org's usage: owners and admins only, like its keys.
      const usage = document.getElementById('org-usage');
      const status = document.getElementById('org-export-status');
      const q = '&org=' + encodeURIComponent(c.org);
      bindExport(document.getElementById('org-export-csv'), 'csv', status, q);
      bindExport(document.getElementById('org-export-json'), 'json', status, q);
      usage.hidden = false;
      await Promise.all([load(), loadOrgUsage(document.getElementById('org-usage-body'), c.org), initWebhooks(document.getElementById('webhooks'), `/v1/orgs/${seg(c.org)}/webhooks`)]);
    }
  }
}
document.body.dataset.ready = 'true';
