// Webhooks: add, test, recent deliveries, re-enable, remove, for a user's
// own endpoints or an org's (the base route says whose). The section shows only
// when the server answers its API; a 404 (no such route on this server)
// keeps it hidden. A new endpoint's signing secret is never put in the page:
// it can be copied to the clipboard once.
import { api, ApiError, seg } from './api.js';
import { el, uid, fieldError, announce, confirmAction, busy } from './dom.js';
import { fmtTime, fmtInt } from './format.js';

export const EVENTS = ['byok.key_invalid', 'byok.key_valid', 'byok.fallback', 'byok.quota_warning', 'byok.webhook_disabled'];

const listOf = (data, name) => (Array.isArray(data) ? data : (data && (data[name] || data.items || data.data)) || []);

export async function initWebhooks(section, base) {
  let data;
  try {
    data = await api('GET', base);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
      section.hidden = true;
      return;
    }
    section.hidden = false;
    section.querySelector('.wh-body').replaceChildren(el('p', { class: 'error' }, 'Webhooks could not be loaded: ', err.message));
    return;
  }
  section.hidden = false;
  render(section, base, listOf(data, 'webhooks'));
}

function render(section, base, hooks) {
  const body = section.querySelector('.wh-body');
  const reload = () => initWebhooks(section, base);
  const list = hooks.length
    ? el('ul', { class: 'hooks' }, hooks.map((h) => hook(h, base, reload)))
    : el('p', { class: 'muted' }, 'No webhook endpoints yet.');
  body.replaceChildren(list, addForm(base, reload, section));
}

function hook(h, base, reload) {
  const deliveries = el('div', { class: 'deliveries', 'aria-live': 'polite' });
  const err = el('p', { class: 'error', hidden: true });
  const state = h.status === 'disabled' ? 'disabled' : 'active';
  return el('li', { class: 'hook', 'data-id': h.id },
    el('p', {}, el('code', {}, h.url), h.secret_hint ? el('span', { class: 'muted' }, ' secret ', h.secret_hint) : null, ' ', el('span', { class: 'chip ' + (state === 'active' ? 'chip-valid' : 'chip-invalid') }, state === 'active' ? 'Active' : 'Disabled')),
    el('p', { class: 'muted' }, 'Events: ', (h.events || []).join(', ') || 'all'),
    el('div', { class: 'actions' },
      el('button', { type: 'button', onclick: (ev) => busy(ev.currentTarget, async () => {
        fieldError(null, err, '');
        try {
          await api('POST', `${base}/${seg(h.id)}/test`);
          announce('Test event sent.');
          await showDeliveries(deliveries, base, h.id, err);
        } catch (e) {
          if (!(e instanceof ApiError)) throw e;
          fieldError(null, err, e.message);
        }
      }) }, 'Send test event'),
      el('button', { type: 'button', onclick: (ev) => busy(ev.currentTarget, () => showDeliveries(deliveries, base, h.id, err)) }, 'Recent deliveries'),
      // A disabled endpoint (3 days of failures, or paused) is turned back on
      // with a fresh failure clock (docs/webhooks.md).
      state === 'disabled' ? el('button', { type: 'button', class: 'reenable', onclick: (ev) => busy(ev.currentTarget, async () => {
        fieldError(null, err, '');
        try {
          await api('PATCH', `${base}/${seg(h.id)}`, { body: { enabled: true } });
          announce('Webhook re-enabled.');
          await reload();
        } catch (e) {
          if (!(e instanceof ApiError)) throw e;
          fieldError(null, err, e.message);
        }
      }) }, 'Re-enable') : null,
      el('button', { type: 'button', class: 'danger', onclick: async (ev) => {
        if (!await confirmAction('Remove this webhook?', `Events stop going to ${h.url} at once.`, 'Remove')) return;
        await busy(ev.currentTarget, async () => {
          try {
            await api('DELETE', `${base}/${seg(h.id)}`);
            announce('Webhook removed.');
            await reload();
          } catch (e) {
            if (!(e instanceof ApiError)) throw e;
            fieldError(null, err, e.message);
          }
        });
      } }, 'Remove')),
    err, deliveries);
}

async function showDeliveries(node, base, id, err) {
  try {
    const data = await api('GET', `${base}/${seg(id)}/deliveries`);
    const rows = listOf(data, 'deliveries');
    node.replaceChildren(rows.length
      ? el('table', { class: 'data' }, el('caption', {}, 'Recent deliveries'),
        el('thead', {}, el('tr', {}, ['Time', 'Event', 'Status', 'Latency', 'Attempt'].map((t) => el('th', { scope: 'col' }, t)))),
        el('tbody', {}, rows.map((d) => el('tr', {},
          el('td', {}, fmtTime(d.at || d.time || d.attempted_at)), el('td', {}, d.event_type || d.event || ''),
          el('td', {}, [d.http_status || d.status || '', d.result || '', d.error || ''].filter(Boolean).join(' · ') || 'no answer'),
          el('td', {}, d.latency_ms !== undefined ? fmtInt(Math.round(d.latency_ms)) + ' ms' : ''),
          el('td', {}, String(d.attempt ?? ''))))))
      : el('p', { class: 'muted' }, 'No deliveries yet.'));
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    fieldError(null, err, e.message);
  }
}

function addForm(base, reload, section) {
  const id = uid('wh-url');
  const url = el('input', { id, type: 'url', name: 'url', required: true, placeholder: 'https://example.com/hooks/byok', 'aria-describedby': id + '-err' });
  const urlErr = el('p', { id: id + '-err', class: 'error field-error', hidden: true });
  const boxes = EVENTS.map((e) => {
    const bid = uid('wh-ev');
    return { e, input: el('input', { id: bid, type: 'checkbox', value: e, checked: true }), bid };
  });
  const evErr = el('p', { class: 'error field-error', hidden: true });
  const secretNote = el('div', { class: 'secret-note', 'aria-live': 'polite' });
  const submit = el('button', { type: 'submit', class: 'primary' }, 'Add webhook');
  const form = el('form', { class: 'wh-add', novalidate: true, 'aria-label': 'Add a webhook endpoint' },
    el('div', { class: 'field' }, el('label', { for: id }, 'Endpoint URL (https)'), url, urlErr),
    el('fieldset', {}, el('legend', {}, 'Events'), boxes.map((b) => el('div', { class: 'check' }, b.input, el('label', { for: b.bid }, b.e))), evErr),
    el('div', { class: 'actions' }, submit), secretNote);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    fieldError(url, urlErr, '');
    fieldError(null, evErr, '');
    const events = boxes.filter((b) => b.input.checked).map((b) => b.e);
    if (!url.value.trim()) { fieldError(url, urlErr, 'Enter the https:// URL that should receive events.'); url.focus(); return; }
    if (!events.length) { fieldError(null, evErr, 'Choose at least one event.'); return; }
    await busy(submit, async () => {
      try {
        const res = await api('POST', base, { body: { url: url.value.trim(), events } });
        const secret = res && res.secret;
        await reload();
        const note = section.querySelector('.secret-note');
        if (secret && note) {
          const copy = el('button', { type: 'button' }, 'Copy signing secret');
          copy.addEventListener('click', async () => {
            try {
              await navigator.clipboard.writeText(secret);
              note.replaceChildren(el('p', {}, 'Signing secret copied. It is not shown again.'));
            } catch {
              note.replaceChildren(el('p', { class: 'error' }, 'The browser refused the clipboard; remove this webhook and add it again to get a new secret.'));
            }
          });
          note.replaceChildren(el('p', {}, 'Webhook added. Its signing secret is shown only once: copy it now.'), copy);
          copy.focus();
        }
        announce('Webhook added.');
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        if (/event/i.test(e.message)) fieldError(null, evErr, e.message);
        else { fieldError(url, urlErr, e.message); url.focus(); }
      }
    });
  });
  return form;
}
