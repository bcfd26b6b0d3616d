// Settings → Admin (role admin): routing mode, BYOK on/off, tier limits,
// and a user's tier and credits. The server checks the role on every call.
import { api, ApiError, seg, newIdempotencyKey } from './api.js';
import { el, uid, fieldError, announce, busy } from './dom.js';
import { start } from './nav.js';
import { MODES, fmtInt } from './format.js';

const TIERS = ['free', 'starter', 'premium', 'lifetime'];
const LIMITS = [['requests_per_minute', 'Requests per minute'], ['tokens_per_day', 'Tokens per day'], ['concurrent_requests', 'Concurrent requests']];

const settingsBody = document.getElementById('settings-body');

function field(labelText, input, help) {
  const id = input.id || uid('f');
  input.id = id;
  const err = el('p', { id: id + '-err', class: 'error field-error', hidden: true });
  input.setAttribute('aria-describedby', [help ? id + '-help' : '', id + '-err'].filter(Boolean).join(' '));
  return { input, err, wrap: el('div', { class: 'field' }, el('label', { for: id }, labelText), input, help ? el('p', { id: id + '-help', class: 'help' }, help) : null, err) };
}

async function loadSettings() {
  let s;
  try {
    s = await api('GET', '/v1/admin/settings');
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    settingsBody.replaceChildren(el('p', { class: 'error', role: 'alert' }, err.status === 403 ? 'This page is for administrators: ' + err.message : 'The settings could not be loaded: ' + err.message));
    document.getElementById('users').hidden = true;
    return;
  }
  renderSettings(s);
}

function renderSettings(s) {
  const mode = field('Routing mode', el('select', { name: 'routing_mode' },
    Object.entries(MODES).map(([v, t]) => el('option', { value: v, selected: v === s.routing_mode }, t))));
  const byokId = uid('byok');
  const byok = el('input', { id: byokId, type: 'checkbox', name: 'byok_enabled', checked: !!s.byok_enabled });
  const limits = {};
  const table = el('table', { class: 'data limits' }, el('caption', {}, 'Tier limits (credits route only)'),
    el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Tier'), LIMITS.map(([, t]) => el('th', { scope: 'col' }, t)))),
    el('tbody', {}, TIERS.map((tier) => el('tr', {}, el('th', { scope: 'row' }, tier),
      LIMITS.map(([k, t]) => {
        const id = uid('lim');
        const input = el('input', { id, type: 'number', min: '0', step: '1', inputmode: 'numeric', name: `${tier}.${k}`, 'aria-label': `${tier}: ${t}`, value: String(s.tier_limits?.[tier]?.[k] ?? ''), 'aria-describedby': id + '-err' });
        const err = el('p', { id: id + '-err', class: 'error field-error', hidden: true });
        limits[`${tier}.${k}`] = { input, err, tier, k };
        return el('td', {}, input, err);
      })))));
  const formErr = el('p', { class: 'error', hidden: true, id: 'settings-error' });
  const done = el('p', { class: 'card-status', 'aria-live': 'polite', id: 'settings-status' });
  const submit = el('button', { type: 'submit', class: 'primary' }, 'Save settings');
  const form = el('form', { id: 'settings-form', novalidate: true, 'aria-labelledby': 'settings-h' },
    mode.wrap,
    el('div', { class: 'check' }, byok, el('label', { for: byokId }, 'BYOK enabled (users on Premium and Lifetime may use their own keys)')),
    table, el('div', { class: 'actions' }, submit), formErr, done);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    fieldError(null, formErr, '');
    done.textContent = '';
    const tierLimits = {};
    let bad = null;
    for (const f of Object.values(limits)) {
      fieldError(f.input, f.err, '');
      const v = f.input.value.trim();
      const n = Number(v);
      if (v === '' || !Number.isInteger(n) || n < 0) {
        fieldError(f.input, f.err, 'Enter a whole number, 0 or more.');
        bad = bad || f.input;
        continue;
      }
      (tierLimits[f.tier] ||= {})[f.k] = n;
    }
    if (bad) { bad.focus(); return; }
    await busy(submit, async () => {
      try {
        const res = await api('PUT', '/v1/admin/settings', { body: { routing_mode: mode.input.value, byok_enabled: byok.checked, tier_limits: tierLimits } });
        renderSettings(res);
        const st = document.getElementById('settings-status');
        st.textContent = 'Settings saved. Routing mode: ' + (MODES[res.routing_mode] || res.routing_mode) + '.';
        announce(st.textContent);
        st.focus();
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        const m = /tier_limits\.(\w+)\.(\w+)/.exec(err.message);
        const f = m && limits[`${m[1]}.${m[2]}`];
        if (f) { fieldError(f.input, f.err, err.message); f.input.focus(); } else if (/routing_mode|mode/.test(err.message)) { fieldError(mode.input, mode.err, err.message); } else fieldError(null, formErr, err.message);
        announce(err.message);
      }
    });
  });
  done.setAttribute('tabindex', '-1');
  settingsBody.replaceChildren(form);
}

function userTools() {
  const uidField = field('User id', el('input', { type: 'text', name: 'user_id', id: 'lookup-id', autocomplete: 'off', required: true }), 'The user\'s sub claim.');
  const lookupBtn = el('button', { type: 'submit', class: 'primary' }, 'Look up');
  const result = el('div', { id: 'user-result', 'aria-live': 'polite' });
  const form = el('form', { id: 'lookup-form', novalidate: true, 'aria-label': 'Look up a user' }, uidField.wrap, el('div', { class: 'actions' }, lookupBtn));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    fieldError(uidField.input, uidField.err, '');
    const id = uidField.input.value.trim();
    if (!id) { fieldError(uidField.input, uidField.err, 'Enter a user id.'); uidField.input.focus(); return; }
    await busy(lookupBtn, async () => {
      try {
        const u = await api('GET', `/v1/admin/users/${seg(id)}`);
        showUser(result, u);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        result.replaceChildren();
        fieldError(uidField.input, uidField.err, err.message);
        uidField.input.focus();
      }
    });
  });
  document.getElementById('users-body').replaceChildren(form, result);
}

function showUser(node, u) {
  const tier = field('Tier', el('select', { name: 'tier', id: 'user-tier' }, TIERS.map((t) => el('option', { value: t, selected: t === u.tier }, t))));
  const email = field('E-mail', el('input', { type: 'email', name: 'email', id: 'user-email', value: u.email || '' }));
  const saveErr = el('p', { class: 'error', hidden: true });
  const saveBtn = el('button', { type: 'submit' }, 'Save tier and e-mail');
  const userForm = el('form', { id: 'user-form', novalidate: true, 'aria-label': 'Tier and e-mail' }, tier.wrap, email.wrap, el('div', { class: 'actions' }, saveBtn), saveErr);
  userForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    fieldError(email.input, email.err, '');
    fieldError(tier.input, tier.err, '');
    fieldError(null, saveErr, '');
    await busy(saveBtn, async () => {
      try {
        const res = await api('PUT', `/v1/admin/users/${seg(u.user_id)}`, { body: { tier: tier.input.value, email: email.input.value.trim() } });
        showUser(node, res);
        announce(`Saved: ${res.user_id} is on ${res.tier}.`);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        if (/email/i.test(err.message)) fieldError(email.input, email.err, err.message);
        else if (/tier/i.test(err.message)) fieldError(tier.input, tier.err, err.message);
        else fieldError(null, saveErr, err.message);
      }
    });
  });
  const amount = field('Credits to grant', el('input', { type: 'number', name: 'amount', id: 'grant-amount', min: '1', step: '1', inputmode: 'numeric' }));
  const reason = field('Reason', el('input', { type: 'text', name: 'reason', id: 'grant-reason', maxlength: '200' }), 'Kept in the credit ledger.');
  const grantErr = el('p', { class: 'error', hidden: true });
  const grantBtn = el('button', { type: 'submit', class: 'primary' }, 'Grant credits');
  const grantForm = el('form', { id: 'grant-form', novalidate: true, 'aria-label': 'Grant credits' }, amount.wrap, reason.wrap, el('div', { class: 'actions' }, grantBtn), grantErr);
  const balance = el('dd', { id: 'user-balance' }, fmtInt(u.credit_balance));
  grantForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    fieldError(amount.input, amount.err, '');
    fieldError(reason.input, reason.err, '');
    fieldError(null, grantErr, '');
    const n = Number(amount.input.value);
    if (!Number.isInteger(n) || n <= 0) { fieldError(amount.input, amount.err, 'Enter a whole number of credits, 1 or more.'); amount.input.focus(); return; }
    if (!reason.input.value.trim()) { fieldError(reason.input, reason.err, 'Say why (kept in the ledger).'); reason.input.focus(); return; }
    // One key per click: a retried request of this click is not granted twice.
    const key = newIdempotencyKey();
    await busy(grantBtn, async () => {
      try {
        const res = await api('POST', `/v1/admin/users/${seg(u.user_id)}/credits`, { body: { amount: n, reason: reason.input.value.trim() }, headers: { 'Idempotency-Key': key } });
        balance.textContent = fmtInt(res.balance);
        amount.input.value = '';
        announce(`Granted ${fmtInt(res.amount)} credits; balance ${fmtInt(res.balance)}.`);
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        if (/amount/i.test(err.message)) fieldError(amount.input, amount.err, err.message);
        else if (/reason/i.test(err.message)) fieldError(reason.input, reason.err, err.message);
        else fieldError(null, grantErr, err.message);
      }
    });
  });
  node.replaceChildren(
    el('h3', {}, 'User ', el('code', {}, u.user_id)),
    el('dl', { class: 'facts' }, el('dt', {}, 'Tier'), el('dd', { id: 'user-tier-value' }, u.tier), el('dt', {}, 'E-mail'), el('dd', {}, u.email || '—'), el('dt', {}, 'Credit balance'), balance),
    userForm, grantForm);
}

const c = start('admin');
if (c) {
  if (c.role !== 'admin') {
    const n = document.getElementById('notice');
    n.textContent = 'Your sign-in is not an administrator\'s (role admin); the server will refuse these settings.';
    n.hidden = false;
  }
  userTools();
  await loadSettings();
}
document.body.dataset.ready = 'true';
