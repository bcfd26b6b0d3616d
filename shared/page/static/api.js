// The page's one door to the JSON API. The token arrives in the URL fragment
// (#token=...), which browsers never send to a server; it is moved into
// sessionStorage at once and removed from the address bar, and it only ever
// travels in the Authorization header.
const TOKEN_KEY = 'byok.token';

// ROOT is whatever prefix the page is served under (an API stage path), so
// API calls go to the same place the page came from.
export const ROOT = location.pathname.slice(0, Math.max(0, location.pathname.indexOf('/settings/')));

export function takeToken() {
  if (location.hash.length > 1) {
    const params = new URLSearchParams(location.hash.slice(1));
    const t = params.get('token');
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    if (params.has('token')) history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId || '';
  }
}

// api calls path (under ROOT) and returns the parsed JSON body, null for 204,
// or the Response itself when raw is set; any non-2xx throws an ApiError
// carrying the API's error.code and error.message.
export async function api(method, path, { body, headers = {}, raw = false } = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    throw new ApiError(401, 'no_token', 'You are not signed in: open this page from the platform\'s Settings link (it carries your sign-in).');
  }
  const h = { Authorization: 'Bearer ' + token, Accept: 'application/json', ...headers };
  let payload;
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(ROOT + path, { method, headers: h, body: payload, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' });
  } catch {
    throw new ApiError(0, 'network', 'The server could not be reached (a network problem). Check your connection and try again.');
  }
  if (resp.ok && raw) return resp;
  const text = resp.status === 204 ? '' : await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!resp.ok) {
    const e = data && typeof data.error === 'object' ? data.error : null;
    const msg = e && typeof e.message === 'string' && e.message
      ? e.message
      : `The server answered ${resp.status} ${resp.statusText || ''}`.trim() + '.';
    throw new ApiError(resp.status, (e && e.code) || 'http_' + resp.status, msg, (e && e.request_id) || resp.headers.get('X-Request-Id'));
  }
  return data;
}

// claims reads the token's payload for display only (which links to show);
// the server verifies the token on every call and decides.
export function claims() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  if (!t) return {};
  try {
    const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(part + '='.repeat((4 - part.length % 4) % 4));
    const c = JSON.parse(json);
    return c && typeof c === 'object' ? c : {};
  } catch {
    return {};
  }
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// seg makes a value safe as one path segment.
export const seg = (s) => encodeURIComponent(String(s));

// newIdempotencyKey is a fresh random key for one click of a money action.
export function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
