// Account safety through the real `pocketbase` SDK: emails are unique whatever their case
// (create, update, sign-in, and databases made before the rule), only refreshable tokens can
// be refreshed, and an increment the store cannot keep is a 400, never a silent no-op.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { client, expectStatus, startWithSuperuser } from './lib/pb.mjs';
import { HS256, claims, collectionSecret, craft } from './lib/tokens.mjs';

let srv, su, dir;
const now = () => Math.floor(Date.now() / 1000);

before(async () => {
  ({ srv, pb: su, dir } = await startWithSuperuser({ keepDir: true }));
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function raw(method, path, token, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (token !== undefined) headers.Authorization = token;
  const r = await fetch(`${srv.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

test('auth-refresh refuses a token that is not refreshable', async () => {
  const pw = 'passw0rd-refresh';
  const u = await client(srv.url).collection('users').create({ email: 'refresh@example.com', password: pw, passwordConfirm: pw });
  // a known tokenKey (a superuser may set one) so the test can sign like the server
  const tk = 'R'.repeat(25) + 'k'.repeat(25);
  await su.collection('users').update(u.id, { tokenKey: tk });
  const key = tk + collectionSecret(dir, '_pb_users_auth_');
  const exp = now() + 3600;
  // control: a refreshable token signed by the test is refreshed
  const good = craft(HS256, claims('_pb_users_auth_', u.id, exp, true), { key });
  const r = await raw('POST', '/api/collections/users/auth-refresh', good);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.record.id, u.id);
  const { refreshable: _, ...noFlag } = claims('_pb_users_auth_', u.id, exp);
  for (const [what, c] of [
    ['refreshable: false', claims('_pb_users_auth_', u.id, exp, false)],
    ['no refreshable claim', noFlag],
  ]) {
    const t = craft(HS256, c, { key });
    // the token is valid: it authorises an ordinary request as its record ...
    const view = await raw('GET', `/api/collections/users/records/${u.id}`, t);
    assert.equal(view.status, 200, `${what}: ${JSON.stringify(view.body)}`);
    // ... but cannot be exchanged for a new (refreshable, full-length) one
    const ref = await raw('POST', '/api/collections/users/auth-refresh', t);
    assert.equal(ref.status, 401, `${what}: ${JSON.stringify(ref.body)}`);
    assert.equal(ref.body.message, 'The request requires valid record authorization token.');
    assert.equal(ref.body.token, undefined);
  }
});

test('an increment that the number field cannot hold is a 400 in PocketBase\'s shape', async () => {
  await su.collections.create({ name: 'counters', fields: [{ name: 'n', type: 'number' }], listRule: '', viewRule: '', createRule: '', updateRule: '' });
  const guest = client(srv.url);
  const cases = [
    [1e308, { 'n+': 1e308 }],
    [-1e308, { 'n-': 1e308 }],
    [1e308, { 'n+': '1e308' }],
    [1e300, { 'n+': 1 }],
    [2 ** 53, { 'n+': 1 }],
    [0, { 'n+': '1e309' }],
    [0, { 'n+': 'lots' }],
  ];
  for (const [start, patch] of cases) {
    const rec = await guest.collection('counters').create({ n: start });
    const e = await expectStatus(guest.collection('counters').update(rec.id, patch), 400);
    assert.equal(e.response.status, 400);
    assert.equal(e.response.message, 'Failed to update record.');
    assert.deepEqual(Object.keys(e.response.data), ['n'], JSON.stringify(e.response));
    assert.equal(e.response.data.n.code, 'validation_not_a_number');
    assert.equal(typeof e.response.data.n.message, 'string');
    assert.equal((await guest.collection('counters').getOne(rec.id)).n, start, `${JSON.stringify(patch)} left n alone`);
  }
  // on create too, and an exact increment still works
  const e = await expectStatus(guest.collection('counters').create({ 'n+': 'x' }), 400);
  assert.equal(e.response.data.n.code, 'validation_not_a_number');
  const rec = await guest.collection('counters').create({ n: 2 ** 53 - 1 });
  assert.equal((await guest.collection('counters').update(rec.id, { 'n+': 1 })).n, 2 ** 53);
  assert.equal((await guest.collection('counters').update(rec.id, { 'n-': 2 ** 53 })).n, 0);
});
