// The insights API over HTTP: events sent with the Segment SDK, then trends and a funnel as a
// superuser; who may call it (401 guest, 403 user); the 400 envelope naming the bad member; an
// unknown insight. The semantics themselves are tested in tests/unit/test_analytics_*.c and,
// against a reference implementation, in insights.test.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Analytics } from '@segment/analytics-node';
import { client, startWithSuperuserAndKey } from './lib/pb.mjs';

let srv, dir, key, token;

before(async () => {
  ({ srv, dir, key, token } = await startWithSuperuserAndKey());
});
after(async () => { await srv?.stop(); });

async function post(path, body, auth = token) {
  const headers = { 'Content-Type': 'application/json' };
  if (auth) headers.Authorization = auth;
  const res = await fetch(`${srv.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

test('trends and a funnel over events sent with the Segment SDK', async () => {
  const analytics = new Analytics({ writeKey: key, host: srv.url, flushAt: 1, maxRetries: 3 });
  const at = (h) => new Date(Date.UTC(2024, 2, 1, h));
  analytics.track({ anonymousId: 'ia1', event: 'signup', timestamp: at(1) });
  analytics.identify({ userId: 'iu1', anonymousId: 'ia1', timestamp: at(2) });
  analytics.track({ userId: 'iu1', anonymousId: 'ia1', event: 'purchase', properties: { amount: 5 }, timestamp: at(3) });
  analytics.track({ userId: 'iu2', event: 'signup', timestamp: at(4) });
  await analytics.closeAndFlush({ timeout: 10000 });

  // an idle query thread brings the identity tables up to date by itself (every 5 s)
  const since = Date.now();
  for (;;) {
    const r = await post('/api/warehouse/sql', { query: "SELECT count(*) FROM _person_links WHERE did = 'ia1' AND person = 'iu1'" });
    if (r.status === 200 && r.json.rows[0][0] === 1) break;
    assert.ok(Date.now() - since < 15000, `identity tables not refreshed: ${r.text}`);
    await new Promise((ok) => setTimeout(ok, 200));
  }

  const q = { series: [{ event: 'signup' }, { event: 'purchase', math: 'sum', mathProperty: 'properties.amount' }], dateFrom: '2024-03-01', dateTo: '2024-03-02' };
  let r;
  for (let i = 0; i < 100; i++) { // the loader makes the events visible within a second or two
    r = await post('/api/insights/trends', q);
    assert.equal(r.status, 200, r.text);
    if (r.json.results[0].count === 2 && r.json.results[1].count === 5) break;
    await new Promise((ok) => setTimeout(ok, 50));
  }
  assert.deepEqual(r.json.results[0].data, [2, 0]);
  assert.deepEqual(r.json.results[0].labels, ['2024-03-01', '2024-03-02']);
  assert.deepEqual(r.json.results[1].data, [5, 0]);
  assert.equal(r.json.dateFrom, '2024-03-01T00:00:00.000Z');

  // ia1's anonymous signup and iu1's purchase are one person
  const f = await post('/api/insights/funnel', { steps: [{ event: 'signup' }, { event: 'purchase' }], dateFrom: '2024-03-01', dateTo: '2024-03-02' });
  assert.equal(f.status, 200, f.text);
  assert.deepEqual(f.json.results[0].steps.map((s) => s.count), [2, 1]);
  // timestamps are skew-corrected by the server, so allow a little drift
  assert.ok(Math.abs(f.json.results[0].steps[1].averageConversionTime - 7200) < 5, f.text);
});

test('superusers only; a bad query names its member; unknown insights are 404', async () => {
  const body = { series: [{ event: 'x', math: 'avg_users' }] };
  assert.equal((await post('/api/insights/trends', body, null)).status, 401);
  const pb = client(srv.url);
  await pb.collections.create({ name: 'members', type: 'auth', fields: [] }, { headers: { Authorization: token } });
  await pb.collection('members').create({ email: 'ins@example.com', password: 'secret-pass-123', passwordConfirm: 'secret-pass-123' }, { headers: { Authorization: token } });
  await pb.collection('members').authWithPassword('ins@example.com', 'secret-pass-123');
  assert.equal((await post('/api/insights/trends', body, pb.authStore.token)).status, 403);

  const r = await post('/api/insights/trends', body);
  assert.equal(r.status, 400);
  assert.equal(r.json.message, 'Invalid insight query.');
  assert.equal(r.json.data['series.0.math'].code, 'validation_invalid_value');
  const s = await post('/api/insights/funnel', { steps: [{ event: 'a' }, {}], bogus: 1 });
  assert.equal(s.status, 400);
  assert.equal(s.json.data['steps.1.event'].code, 'validation_required');
  assert.equal(s.json.data.bogus.code, 'validation_unknown_field');
  assert.equal((await post('/api/insights/paths', { })).status, 404);
  const bad = await fetch(`${srv.url}/api/insights/trends`, { method: 'POST', headers: { Authorization: token, 'Content-Type': 'application/json' }, body: '{' });
  assert.equal(bad.status, 400);
});
