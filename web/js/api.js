// api.js - the superuser token and the calls to tandem's API (same origin).
const TOKEN_KEY = 'tandem.token';
const EMAIL_KEY = 'tandem.email';
const COLL_KEY = 'tandem.collection';

export class ApiError extends Error {
  constructor(status, body) {
    const msg = body?.message || `HTTP ${status}`;
    const fields = body?.data && typeof body.data === 'object'
      ? Object.entries(body.data).map(([k, v]) => (v && v.message ? `${k}: ${v.message}` : `${k}: ${JSON.stringify(v)}`)).join('; ')
      : '';
    super(fields ? `${msg} (${fields})` : msg);
    this.status = status;
    this.body = body;
  }
}

export const auth = {
  get token() { return localStorage.getItem(TOKEN_KEY); },
  get email() { return localStorage.getItem(EMAIL_KEY) || ''; },
  // an analyst signs in to another auth collection (settings.analytics.accessRule): the
  // dashboard then shows only the analytics pages
  get analyst() { return (localStorage.getItem(COLL_KEY) || '_superusers') !== '_superusers'; },
  set(token, email, collection = '_superusers') {
    localStorage.setItem(TOKEN_KEY, token);
    localStorage.setItem(EMAIL_KEY, email);
    localStorage.setItem(COLL_KEY, collection);
  },
  clear() { localStorage.removeItem(TOKEN_KEY); localStorage.removeItem(EMAIL_KEY); localStorage.removeItem(COLL_KEY); },
};

// Called on a 401 with a token: the token expired or was revoked.
let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

export async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (auth.token) headers.Authorization = auth.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    if (res.status === 401 && auth.token) onUnauthorized();
    throw new ApiError(res.status, json || { message: text.slice(0, 200) || `HTTP ${res.status}` });
  }
  return json;
}

export async function signIn(email, password, collection = '_superusers') {
  const r = await request('POST', `/api/collections/${encodeURIComponent(collection)}/auth-with-password`, { identity: email, password });
  auth.set(r.token, r.record?.email || email, collection);
  return r;
}

export const sql = (query, params = []) => request('POST', '/api/warehouse/sql', { query, params });
export const insight = (kind, q) => request('POST', `/api/insights/${kind}`, q);
export const pipeline = () => request('GET', '/api/pipeline');

// GET /metrics (Prometheus text) -> Map of 'name{labels}' -> number.
export async function metrics() {
  const res = await fetch('/metrics');
  if (!res.ok) throw new ApiError(res.status, { message: `metrics: HTTP ${res.status}` });
  const out = new Map();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

// Track event names seen in the warehouse, for the pickers.
let eventNames = null;
export async function listEvents() {
  if (!eventNames) {
    const r = await sql('SELECT event, count(*) AS n FROM events WHERE event IS NOT NULL GROUP BY event ORDER BY n DESC, event LIMIT 500');
    eventNames = r.rows.map((x) => x[0]);
  }
  return eventNames;
}
export function forgetEvents() { eventNames = null; }

// Property keys seen on recent track events, for the breakdown picker.
export async function listPropertyKeys() {
  const r = await sql("SELECT DISTINCT unnest(json_keys(properties)) AS k FROM (SELECT properties FROM events WHERE type = 'track' AND properties IS NOT NULL ORDER BY received_at DESC LIMIT 2000) ORDER BY 1 LIMIT 200");
  return r.rows.map((x) => `properties.${x[0]}`);
}
