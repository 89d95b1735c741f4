// Helpers for the models tests: the /api/models and SQL APIs over fetch, waiting for the
// loader and for runs, sending events with the Segment SDK.
import assert from 'node:assert/strict';

// {status, json, text} of a request; a = {url, token}
export async function api(a, method, path, body) {
  const headers = {};
  if (a.token) headers.Authorization = a.token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${a.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* empty or not JSON */ }
  return { status: res.status, json, text };
}

export async function sql(a, query, params) {
  const r = await api(a, 'POST', '/api/warehouse/sql', params ? { query, params } : { query });
  assert.equal(r.status, 200, `${query}: ${r.text}`);
  return r.json;
}

// Waits until the single number query returns reaches at least n (the loader is asynchronous).
export async function waitLoaded(a, query, n, { timeoutMs = 60000 } = {}) {
  const t0 = Date.now();
  for (;;) {
    const r = await api(a, 'POST', '/api/warehouse/sql', { query });
    if (r.status === 200 && Number(r.json.rows[0][0]) >= n) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${query} did not reach ${n}: ${r.text}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

// Requests a run and waits for it to finish; returns the run.
export async function runModel(a, name, opts = {}, { timeoutMs = 120000 } = {}) {
  const r = await api(a, 'POST', `/api/models/${name}/run`, opts);
  assert.equal(r.status, 202, r.text);
  const id = r.json.id;
  const t0 = Date.now();
  for (;;) {
    const runs = await api(a, 'GET', `/api/models/${name}/runs?limit=50`);
    assert.equal(runs.status, 200, runs.text);
    const run = runs.json.items.find((x) => x.id === id);
    if (run && run.status !== 'queued' && run.status !== 'running') return run;
    if (Date.now() - t0 > timeoutMs) throw new Error(`run ${id} of ${name} did not finish: ${runs.text}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

export async function sendEvents(analytics, evs) {
  await Promise.all(evs.map((e) => new Promise((resolve, reject) => {
    analytics.track(e, (err) => (err ? reject(err) : resolve()));
  })));
}
