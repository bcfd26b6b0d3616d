// Provider cards, built from the `keys` array of GET {base}: one card per
// provider the API lists, so a provider the server adds appears here with
// no change to the page. When a key carries `entries` (several keys per
// provider), each entry is shown with its label, priority and model filter.
import { api, ApiError, seg } from './api.js';
import { el, uid, fieldError, announce, confirmAction, busy } from './dom.js';
import { providerName, keyPlaceholder, reasonText, STATUS, fmtTime } from './format.js';

// renderCards fills container. base is the keys collection path
// ("/v1/keys", or an org's); reload re-reads the list and calls renderCards
// again with a flash message for the card that changed.
export function renderCards(container, keys, { base, reload, flash }) {
  container.replaceChildren(...keys.map((k) => card(k, { base, reload, flash: flash && flash.provider === k.provider ? flash : null })));
  if (flash) {
    const target = container.querySelector(`[data-provider="${CSS.escape(flash.provider)}"] .card-status`);
    if (target) target.focus();
  }
}

function chip(status) {
  const s = STATUS[status];
  if (!s) return null;
  return el('span', { class: 'chip ' + s.cls, 'data-status': status }, el('span', { 'aria-hidden': 'true' }, s.glyph + ' '), s.label);
}

function facts(rows) {
  return el('dl', { class: 'facts' }, rows.filter(Boolean).map(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

function statusBlock(k) {
  const parts = [];
  if (k.status === 'invalid' || k.status === 'unchecked') {
    const why = reasonText(k.reason) || (k.status === 'unchecked' ? 'The key has not been checked with the provider yet. Press Test.' : '');
    if (why) parts.push(el('p', { class: 'reason reason-' + k.status, 'data-reason': k.reason || '' }, why));
    if (k.detail) parts.push(el('p', { class: 'detail' }, 'Details: ', k.detail));
  }
  return parts;
}

function card(k, ctx) {
  const p = k.provider;
  const name = providerName(p);
  const hid = uid('card-h');
  const hasEntries = Array.isArray(k.entries);
  const status = el('p', { class: 'card-status', tabindex: '-1', 'aria-live': 'polite' }, ctx.flash ? ctx.flash.message : '');
  const cardErr = el('p', { class: 'error', hidden: true });
  const node = el('article', { class: 'card', 'data-provider': p, 'aria-labelledby': hid },
    el('header', { class: 'card-head' },
      el('h3', { id: hid }, name),
      k.configured ? chip(k.status) : el('span', { class: 'chip chip-none' }, 'No key')),
  );
  if (k.configured) {
    node.append(...statusBlock(k));
    node.append(facts([
      ['Key', el('code', { class: 'hint' }, k.hint || '—')],
      ['Last validated', fmtTime(k.validated_at)],
      ['Last used', fmtTime(k.last_used_at || lastUsed(k.entries))],
      k.updated_at && ['Saved', fmtTime(k.updated_at)],
    ]));
  } else {
    node.append(el('p', { class: 'muted' }, `No ${name} key saved. Requests to ${name} models use internal credits, if the routing mode allows.`));
  }
  if (hasEntries && k.entries.length > 0) {
    node.append(el('h4', {}, `Keys, in the order they are tried (${k.entries.length})`));
    node.append(el('ol', { class: 'entries' }, k.entries.map((e) => entry(p, e, ctx, status, cardErr))));
  }
  const actions = el('div', { class: 'actions' });
  if (k.configured && !(hasEntries && k.entries.length > 0)) {
    actions.append(
      el('button', { type: 'button', class: 'test', onclick: (ev) => testKey(ev.currentTarget, `${ctx.base}/${seg(p)}/test`, p, ctx, status, cardErr) }, 'Test'),
      el('button', { type: 'button', class: 'danger remove', onclick: (ev) => removeKey(ev.currentTarget, `${ctx.base}/${seg(p)}`, `Remove your ${name} key?`, p, ctx, status, cardErr) }, 'Remove'),
    );
  } else if (hasEntries && k.entries.length > 1) {
    actions.append(el('button', { type: 'button', class: 'danger remove', onclick: (ev) => removeKey(ev.currentTarget, `${ctx.base}/${seg(p)}`, `Remove all ${k.entries.length} ${name} keys?`, p, ctx, status, cardErr) }, 'Remove all'));
  }
  if (actions.childNodes.length) node.append(actions);
  node.append(status, cardErr, saveForm(k, ctx, status, cardErr));
  return node;
}

function lastUsed(entries) {
  if (!Array.isArray(entries)) return null;
  return entries.map((e) => e.last_used_at).filter(Boolean).sort().pop() || null;
}

function entry(p, e, ctx, status, cardErr) {
  const id = seg(e.key_id);
  const label = e.label || 'Unnamed key';
  const models = Array.isArray(e.models) && e.models.length ? e.models.join(', ') : 'all models';
  const li = el('li', { class: 'entry', 'data-key-id': e.key_id },
    el('div', { class: 'entry-head' }, el('strong', {}, label), chip(e.status),
      e.stale ? el('span', { class: 'chip chip-unchecked' }, 'Unused for 90 days') : null,
      e.scope && e.scope !== 'user' ? el('span', { class: 'chip chip-none' }, e.scope + ' key') : null),
    ...statusBlock(e),
    facts([
      ['Key', el('code', { class: 'hint' }, e.hint || '—')],
      ['Priority', String(e.priority ?? 0)],
      ['Models', models],
      ['Last validated', fmtTime(e.validated_at)],
      ['Last used', fmtTime(e.last_used_at)],
      e.endpoint && ['Endpoint', el('code', {}, e.endpoint)],
      e.api_version && ['API version', e.api_version],
      e.endpoint && ['Deployments', deploymentsText(e.deployments)],
    ]),
    el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'test', onclick: (ev) => testKey(ev.currentTarget, `${ctx.base}/${seg(p)}/${id}/test`, p, ctx, status, cardErr) }, `Test ${label}`),
      el('button', { type: 'button', class: 'danger remove', onclick: (ev) => removeKey(ev.currentTarget, `${ctx.base}/${seg(p)}/${id}`, `Remove the ${providerName(p)} key "${label}"?`, p, ctx, status, cardErr) }, `Remove ${label}`)),
    editForm(p, e, ctx, status),
  );
  return li;
}

// deploymentsText shows an Azure key's model → deployment map.
function deploymentsText(d) {
  const names = Object.keys(d || {}).sort();
  if (!names.length) return 'none (azure/<deployment> names the deployment)';
  return names.map((m) => (d[m] === m ? m : `${m} → ${d[m]}`)).join(', ');
}

// parseDeployments reads one `model=deployment` (or just `deployment`) per
// line into the API's map.
function parseDeployments(s) {
  const out = {};
  for (const line of s.split('\n').map((x) => x.trim()).filter(Boolean)) {
    const i = line.indexOf('=');
    if (i < 0) out[line] = line;
    else out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

// field builds a labelled input (a textarea when attrs.rows is set) with
// its own error line.
function field(labelText, attrs, help) {
  const id = uid('f');
  const errId = id + '-err';
  const helpId = help ? id + '-help' : null;
  const input = el(attrs.rows ? 'textarea' : 'input', { id, 'aria-describedby': [helpId, errId].filter(Boolean).join(' '), ...attrs });
  const err = el('p', { id: errId, class: 'error field-error', hidden: true });
  const wrap = el('div', { class: 'field' }, el('label', { for: id }, labelText), input, help ? el('p', { id: helpId, class: 'help' }, help) : null, err);
  return { wrap, input, err };
}

function parseList(s) {
  return s.split(',').map((x) => x.trim()).filter(Boolean);
}

// errorTarget picks the field an API error is about, by its code or by the
// field name the message quotes.
function errorTarget(err, fields, fallback) {
  if (err.code === 'invalid_key_format' && fields.api_key) return fields.api_key;
  for (const [name, f] of Object.entries(fields)) {
    if (f && err.message && (err.message.includes(`"${name}"`) || err.message.includes(name + ' '))) return f;
  }
  return fallback;
}

function saveForm(k, ctx, status, cardErr) {
  const p = k.provider;
  const name = providerName(p);
  const multi = Array.isArray(k.entries);
  const fields = {
    api_key: field(`${name} API key`, { type: 'password', name: 'api_key', autocomplete: 'off', spellcheck: 'false', placeholder: keyPlaceholder(p), required: true },
      'Stored encrypted; only its last characters are ever shown again.'),
  };
  if (multi) {
    fields.label = field('Label (optional)', { type: 'text', name: 'label', maxlength: '64' });
    fields.priority = field('Priority (optional)', { type: 'number', name: 'priority', min: '0', step: '1', inputmode: 'numeric' }, 'Lower numbers are tried first.');
    fields.models = field('Model filter (optional)', { type: 'text', name: 'models' }, 'Comma-separated model names or prefix* patterns; empty means all models.');
  }
  if (p === 'azure_openai') {
    fields.endpoint = field('Azure endpoint', { type: 'url', name: 'endpoint', placeholder: 'https://your-resource.openai.azure.com', required: true });
    fields.api_version = field('API version (optional)', { type: 'text', name: 'api_version', placeholder: '2024-10-21' });
    fields.deployments = field('Deployments (optional)', { name: 'deployments', rows: '3', spellcheck: 'false', placeholder: 'gpt-4o=my-gpt4o-deployment' },
      'One per line: model=deployment, or just the deployment name. Call them as azure/<model>.');
  }
  const formErr = el('p', { class: 'error', hidden: true });
  const submit = el('button', { type: 'submit', class: 'primary' }, multi && k.configured ? `Add ${name} key` : `Save ${name} key`);
  const form = el('form', { class: 'save', novalidate: true, 'aria-label': `Save a ${name} key` },
    Object.values(fields).map((f) => f.wrap), el('div', { class: 'actions' }, submit), formErr);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const f of Object.values(fields)) fieldError(f.input, f.err, '');
    fieldError(null, formErr, '');
    fieldError(null, cardErr, '');
    const key = fields.api_key.input.value.trim();
    if (!key) {
      fieldError(fields.api_key.input, fields.api_key.err, `Enter your ${name} API key.`);
      fields.api_key.input.focus();
      return;
    }
    const body = { api_key: key };
    if (multi) {
      if (fields.label.input.value.trim()) body.label = fields.label.input.value.trim();
      if (fields.priority.input.value.trim()) {
        const n = Number(fields.priority.input.value);
        if (!Number.isInteger(n) || n < 0) {
          fieldError(fields.priority.input, fields.priority.err, 'Priority must be a whole number, 0 or more.');
          fields.priority.input.focus();
          return;
        }
        body.priority = n;
      }
      const models = parseList(fields.models.input.value);
      if (models.length) body.models = models;
    }
    if (p === 'azure_openai') {
      body.endpoint = fields.endpoint.input.value.trim();
      if (fields.api_version.input.value.trim()) body.api_version = fields.api_version.input.value.trim();
      const deps = parseDeployments(fields.deployments.input.value);
      if (Object.keys(deps).length) body.deployments = deps;
    }
    const method = multi && k.configured ? 'POST' : 'PUT';
    await busy(submit, async () => {
      try {
        const res = await api(method, `${ctx.base}/${seg(p)}`, { body });
        fields.api_key.input.value = '';
        const st = STATUS[res && res.status];
        const msg = `${name} key saved` + (st ? `: ${st.label}.` : '.') + (res && res.reason ? ' ' + reasonText(res.reason) : '');
        announce(msg);
        await ctx.reload({ provider: p, message: msg });
      } catch (err) {
        fields.api_key.input.value = ''; // never keep a refused key on screen either
        if (!(err instanceof ApiError)) throw err;
        const f = errorTarget(err, fields, null);
        if (f) {
          fieldError(f.input, f.err, err.message);
          f.input.focus();
        } else {
          fieldError(null, formErr, err.message);
        }
        announce(err.message);
      }
    });
  });
  return form;
}

function editForm(p, e, ctx, status) {
  const label = field('Label', { type: 'text', name: 'label', maxlength: '64', value: e.label || '' });
  const priority = field('Priority', { type: 'number', name: 'priority', min: '0', step: '1', value: String(e.priority ?? 0) });
  const models = field('Model filter', { type: 'text', name: 'models', value: (e.models || []).join(', ') }, 'Comma-separated; empty means all models.');
  const formErr = el('p', { class: 'error', hidden: true });
  const submit = el('button', { type: 'submit' }, 'Save changes');
  const form = el('form', { class: 'edit', novalidate: true }, label.wrap, priority.wrap, models.wrap, el('div', { class: 'actions' }, submit), formErr);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const f of [label, priority, models]) fieldError(f.input, f.err, '');
    fieldError(null, formErr, '');
    const n = Number(priority.input.value);
    if (!Number.isInteger(n) || n < 0) {
      fieldError(priority.input, priority.err, 'Priority must be a whole number, 0 or more.');
      priority.input.focus();
      return;
    }
    await busy(submit, async () => {
      try {
        await api('PATCH', `${ctx.base}/${seg(p)}/${seg(e.key_id)}`, { body: { label: label.input.value.trim(), priority: n, models: parseList(models.input.value) } });
        const msg = `Changes to "${label.input.value.trim() || 'Unnamed key'}" saved.`;
        announce(msg);
        await ctx.reload({ provider: p, message: msg });
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        const f = errorTarget(err, { label, priority, models }, null);
        if (f) fieldError(f.input, f.err, err.message);
        else fieldError(null, formErr, err.message);
      }
    });
  });
  return el('details', { class: 'edit' }, el('summary', {}, 'Edit label, priority and models'), form);
}

async function testKey(button, path, p, ctx, status, cardErr) {
  fieldError(null, cardErr, '');
  status.textContent = `Testing your ${providerName(p)} key…`;
  await busy(button, async () => {
    try {
      const res = await api('POST', path);
      const st = STATUS[res && res.status];
      const msg = `Test finished: ${st ? st.label : 'unknown status'}.` + (res && res.reason ? ' ' + reasonText(res.reason) : '');
      announce(msg);
      await ctx.reload({ provider: p, message: msg });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      status.textContent = '';
      fieldError(null, cardErr, err.message);
      announce(err.message);
    }
  });
}

async function removeKey(button, path, question, p, ctx, status, cardErr) {
  fieldError(null, cardErr, '');
  const ok = await confirmAction(question, 'The key is deleted at once and cannot be used again. Requests then use credits if the routing mode allows.', 'Remove');
  if (!ok) return;
  await busy(button, async () => {
    try {
      await api('DELETE', path);
      const msg = `${providerName(p)} key removed.`;
      announce(msg);
      await ctx.reload({ provider: p, message: msg });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      fieldError(null, cardErr, err.message);
      announce(err.message);
    }
  });
}
