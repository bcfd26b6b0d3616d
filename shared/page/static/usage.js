// Usage (Last 30 Days): totals, per provider, a per-day bar chart drawn as
// inline SVG with DOM calls, and the CSV / JSON export (fetched with the
// Authorization header and saved from a Blob: the token never goes in a URL).
import { api, ApiError } from './api.js';
import { el, svg, announce, busy } from './dom.js';
import { providerName, fmtInt, fmtUSD } from './format.js';

const tokens = (t) => (t.input_tokens || 0) + (t.output_tokens || 0);

export function loadUsage(body, query = '') {
  return loadInto(body, '/v1/usage?days=30' + query, renderUsage, 'Usage could not be loaded: ');
}

// loadInto fetches path and renders it into body, or says in body that
// it could not (failed is the message's start).
async function loadInto(body, path, render, failed) {
  body.setAttribute('aria-busy', 'true');
  try {
    render(body, await api('GET', path));
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    body.replaceChildren(el('p', { class: 'error' }, failed, err.message));
  } finally {
    body.removeAttribute('aria-busy');
  }
}

function zero() { return { requests: 0, input_tokens: 0, output_tokens: 0, cost_usd: 0, errors: 0, credits_charged: 0 }; }

export function renderUsage(body, u) {
  const byok = u.byok || zero();
  const credits = u.credits || zero();
  const totals = el('table', { class: 'data', id: 'usage-totals' },
    el('caption', {}, 'Totals'),
    el('thead', {}, el('tr', {}, ['Route', 'Requests', 'Tokens', 'Estimated cost', 'Errors'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {},
      row('BYOK (your keys)', byok, 'byok'),
      row('Credits', credits, 'credits')));
  const provs = Object.keys(u.by_provider || {}).sort();
  const per = provs.length
    ? el('table', { class: 'data', id: 'usage-providers' },
      el('caption', {}, 'Per provider'),
      el('thead', {}, el('tr', {}, ['Provider', 'BYOK requests', 'BYOK tokens', 'BYOK cost', 'Credit requests', 'Credit tokens', 'Credit cost'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, provs.map((p) => {
        const s = u.by_provider[p];
        return el('tr', { 'data-provider': p }, el('th', { scope: 'row' }, providerName(p)),
          el('td', {}, fmtInt(s.byok.requests)), el('td', {}, fmtInt(tokens(s.byok))), el('td', {}, fmtUSD(s.byok.cost_usd)),
          el('td', {}, fmtInt(s.credits.requests)), el('td', {}, fmtInt(tokens(s.credits))), el('td', {}, fmtUSD(s.credits.cost_usd)));
      })))
    : el('p', { class: 'muted' }, 'No requests in the last 30 days.');
  body.replaceChildren(totals, per, chart(u.by_day || []));
}

function row(label, t, route) {
  return el('tr', { 'data-route': route }, el('th', { scope: 'row' }, label),
    el('td', {}, fmtInt(t.requests)), el('td', {}, fmtInt(tokens(t))), el('td', {}, fmtUSD(t.cost_usd)), el('td', {}, fmtInt(t.errors)));
}

// loadOrgUsage shows an organisation's usage (GET /v1/usage?org=, owners and
// admins only): every member's requests with the org's or its projects'
// keys, per project the member's token named (chargeback), and per day.
export function loadOrgUsage(body, org) {
  return loadInto(body, '/v1/usage?days=30&org=' + encodeURIComponent(org), renderOrgUsage,
    'The organisation\'s usage could not be loaded: ');
}

export function renderOrgUsage(body, u) {
  const by = u.by_project || {};
  const projects = Object.keys(by).sort();
  const cells = (t) => [el('td', {}, fmtInt(t.requests)), el('td', {}, fmtInt(tokens(t))), el('td', {}, fmtUSD(t.cost_usd)), el('td', {}, fmtInt(t.errors))];
  const table = projects.length
    ? el('table', { class: 'data', id: 'org-usage-projects' },
      el('caption', {}, 'Per project (the project each member\'s request named)'),
      el('thead', {}, el('tr', {}, ['Project', 'Requests', 'Tokens', 'Estimated cost', 'Errors', 'Providers'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, projects.map((p) => el('tr', { 'data-project': p },
        el('th', { scope: 'row' }, p || '(no project)'), cells(by[p].byok || zero()),
        el('td', {}, Object.keys(by[p].by_provider || {}).sort().map(providerName).join(', '))))),
      el('tfoot', {}, el('tr', { 'data-project-total': '' }, el('th', { scope: 'row' }, 'All projects'), cells(u.byok || zero()), el('td', {}))))
    : el('p', { class: 'muted' }, 'No requests used the organisation\'s keys in the last 30 days.');
  body.replaceChildren(table, chart(u.by_day || []));
}

// chart draws requests per day, BYOK and credits stacked.
function chart(days) {
  const W = 720, H = 220, left = 40, right = 10, top = 16, bottom = 36;
  const plotW = W - left - right, plotH = H - top - bottom;
  const max = Math.max(1, ...days.map((d) => (d.byok?.requests || 0) + (d.credits?.requests || 0)));
  const step = days.length ? plotW / days.length : plotW;
  const barW = Math.max(2, step * 0.7);
  const total = days.reduce((s, d) => s + (d.byok?.requests || 0) + (d.credits?.requests || 0), 0);
  const title = svg('title', { id: 'usage-chart-title' }, 'Requests per day, last 30 days');
  const desc = svg('desc', { id: 'usage-chart-desc' }, `${fmtInt(total)} requests in ${days.length} days; the tallest day has ${fmtInt(max)}. The tables above give the numbers.`);
  const g = svg('g', {});
  const y = (v) => top + plotH - (v / max) * plotH;
  // Axis and gridlines at 0, half and max.
  for (const v of [0, Math.round(max / 2), max]) {
    g.append(svg('line', { x1: left, x2: W - right, y1: y(v), y2: y(v), class: 'grid' }),
      svg('text', { x: left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, String(v)));
  }
  days.forEach((d, i) => {
    const b = d.byok?.requests || 0, c = d.credits?.requests || 0;
    const x = left + i * step + (step - barW) / 2;
    const bar = svg('g', { class: 'day', 'data-date': d.date, 'data-byok': b, 'data-credits': c },
      svg('title', {}, `${d.date}: ${b} BYOK, ${c} credits`));
    if (b) bar.append(svg('rect', { class: 'bar-byok', x, width: barW, y: y(b), height: y(0) - y(b) }));
    if (c) bar.append(svg('rect', { class: 'bar-credits', x, width: barW, y: y(b + c), height: y(b) - y(b + c) }));
    g.append(bar);
    if (i === 0 || i === days.length - 1 || i === Math.floor(days.length / 2)) {
      g.append(svg('text', { x: x + barW / 2, y: H - bottom + 16, class: 'axis', 'text-anchor': 'middle' }, d.date.slice(5)));
    }
  });
  const legend = svg('g', { class: 'legend' },
    svg('rect', { x: left, y: H - 14, width: 12, height: 12, class: 'bar-byok' }), svg('text', { x: left + 16, y: H - 4, class: 'axis' }, 'BYOK'),
    svg('rect', { x: left + 70, y: H - 14, width: 12, height: 12, class: 'bar-credits' }), svg('text', { x: left + 86, y: H - 4, class: 'axis' }, 'Credits'));
  return el('figure', { class: 'chart' },
    svg('svg', { id: 'usage-chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'usage-chart-title usage-chart-desc', preserveAspectRatio: 'xMidYMid meet' }, title, desc, g, legend),
    el('figcaption', {}, 'Requests per day (UTC), BYOK and credits stacked.'));
}

// bindExport wires an export button: fetch with the header, then save.
export function bindExport(button, format, statusEl, query = '') {
  button.addEventListener('click', () => busy(button, async () => {
    statusEl.textContent = `Preparing the ${format.toUpperCase()} export…`;
    try {
      const resp = await api('GET', `/v1/usage/export?format=${format}` + query, { raw: true, headers: { Accept: format === 'csv' ? 'text/csv' : 'application/json' } });
      const blob = await resp.blob();
      const cd = resp.headers.get('Content-Disposition') || '';
      const m = /filename="([^"]+)"/.exec(cd);
      const name = m ? m[1] : `usage.${format}`;
      const url = URL.createObjectURL(blob);
      const a = el('a', { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      statusEl.textContent = `Downloaded ${name} (${fmtInt(blob.size)} bytes).`;
      announce(statusEl.textContent);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      statusEl.textContent = 'Export failed: ' + err.message;
      announce(statusEl.textContent);
    }
  }));
}
