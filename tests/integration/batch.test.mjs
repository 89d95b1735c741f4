// /api/batch through the real SDK (pb.createBatch(), which sends multipart with @jsonPayload):
// disabled until the settings enable it, creates/updates/upserts/deletes in one transaction,
// each sub-request under its collection's rules as the caller, all or nothing with the index
// of the failing sub-request, maxRequests, and the changes it writes reaching the log.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { client, expectStatus, startWithSuperuser } from './lib/pb.mjs';

let srv, su, user, other;

before(async () => {
  ({ srv, pb: su } = await startWithSuperuser());
  await su.collections.create({
    name: 'notes',
    fields: [{ name: 'title', type: 'text', required: true }, { name: 'n', type: 'number' },
      { name: 'owner', type: 'text' }],
    listRule: 'owner = @request.auth.id', viewRule: 'owner = @request.auth.id',
    createRule: '@request.auth.id != "" && owner = @request.auth.id',
    updateRule: 'owner = @request.auth.id', deleteRule: 'owner = @request.auth.id',
  });
  for (const e of ['a@example.com', 'b@example.com'])
    await su.collection('users').create({ email: e, password: 'passw0rd-123', passwordConfirm: 'passw0rd-123' });
  user = client(srv.url);
  await user.collection('users').authWithPassword('a@example.com', 'passw0rd-123');
  other = client(srv.url);
  await other.collection('users').authWithPassword('b@example.com', 'passw0rd-123');
});
after(async () => {
  await srv.stop();
});

const count = async () => (await su.collection('notes').getList(1, 1)).totalItems;

test('batch is refused until the settings enable it', async () => {
  const b = user.createBatch();
  b.collection('notes').create({ title: 'x', owner: user.authStore.record.id });
  const e = await expectStatus(b.send(), 403);
  assert.equal(e.response.message, 'Batch requests are not allowed.');
  assert.equal(await count(), 0);
  await su.settings.update({ batch: { enabled: true, maxRequests: 5 } });
});

test('creates, updates, upserts and deletes commit together, answers in order', async () => {
  const me = user.authStore.record.id;
  const keep = await user.collection('notes').create({ title: 'keep', n: 1, owner: me });
  const gone = await user.collection('notes').create({ title: 'gone', owner: me });
  const b = user.createBatch();
  b.collection('notes').create({ title: 'one', owner: me }, { fields: 'id,title' });
  b.collection('notes').update(keep.id, { 'n+': 2 });
  b.collection('notes').upsert({ id: keep.id, title: 'kept' });
  b.collection('notes').upsert({ id: 'upsert000000001', title: 'fresh', owner: me });
  b.collection('notes').delete(gone.id);
  const res = await b.send();
  assert.deepEqual(res.map((r) => r.status), [200, 200, 200, 200, 204]);
  assert.deepEqual(Object.keys(res[0].body).sort(), ['id', 'title']);
  assert.equal(res[1].body.n, 3);
  assert.equal(res[2].body.title, 'kept');
  assert.equal(res[3].body.id, 'upsert000000001');
  assert.equal(res[4].body, null);
  const all = await su.collection('notes').getFullList({ sort: 'title' });
  assert.deepEqual(all.map((r) => r.title), ['fresh', 'kept', 'one']);
});

test('one failing sub-request fails the batch with its index, and nothing is written', async () => {
  const me = user.authStore.record.id;
  const before = await count();
  const note = (await su.collection('notes').getFullList())[0];
  const b = user.createBatch();
  b.collection('notes').create({ title: 'a', owner: me });
  b.collection('notes').update(note.id, { title: '' }); // required
  b.collection('notes').create({ title: 'c', owner: me });
  const e = await expectStatus(b.send(), 400);
  assert.equal(e.response.message, 'Batch transaction failed.');
  const item = e.response.data.requests['1'];
  assert.equal(item.code, 'batch_request_failed');
  assert.equal(item.response.status, 400);
  assert.equal(item.response.data.title.code, 'validation_required');
  assert.equal(await count(), before);
  assert.equal((await su.collection('notes').getOne(note.id)).title, note.title);
});

test('each sub-request is checked against its rules as the caller', async () => {
  const me = user.authStore.record.id;
  const mine = await user.collection('notes').create({ title: 'mine', owner: me });
  const before = await count();
  // another user cannot touch it, nor create in someone else's name
  let b = other.createBatch();
  b.collection('notes').create({ title: 'ok', owner: other.authStore.record.id });
  b.collection('notes').update(mine.id, { title: 'stolen' });
  let e = await expectStatus(b.send(), 400);
  assert.equal(e.response.data.requests['1'].response.status, 404);
  b = other.createBatch();
  b.collection('notes').create({ title: 'forged', owner: me });
  e = await expectStatus(b.send(), 400);
  assert.equal(e.response.data.requests['0'].response.status, 400);
  // a guest's create is refused by the create rule
  b = client(srv.url).createBatch();
  b.collection('notes').create({ title: 'guest', owner: '' });
  e = await expectStatus(b.send(), 400);
  assert.ok(e.response.data.requests['0']);
  assert.equal(await count(), before);
  assert.equal((await su.collection('notes').getOne(mine.id)).title, 'mine');
});

test('the envelope is checked: maxRequests, unknown actions, empty batches', async () => {
  const me = user.authStore.record.id;
  let b = user.createBatch();
  for (let i = 0; i < 6; i++) b.collection('notes').create({ title: `t${i}`, owner: me });
  let e = await expectStatus(b.send(), 400);
  assert.equal(e.response.message, 'Invalid batch request data.');
  assert.equal(e.response.data.requests.code, 'validation_length_too_long');
  e = await expectStatus(user.send('/api/batch', { method: 'POST', body: { requests: [] } }), 400);
  assert.equal(e.response.data.requests.code, 'validation_required');
  e = await expectStatus(user.send('/api/batch', { method: 'POST', body: { requests: [{ method: 'GET', url: '/api/collections/notes/records' }] } }), 400);
  assert.equal(e.response.data.requests['0'].response.message, 'Unknown batch request action.');
  e = await expectStatus(user.send('/api/batch', { method: 'POST', body: { requests: [{ method: 'POST', url: '/api/settings' }] } }), 400);
  assert.equal(e.response.data.requests['0'].code, 'batch_request_failed');
  e = await expectStatus(user.send('/api/batch', { method: 'POST', body: { requests: [{ method: 'POST', url: '/api/collections/nope/records', body: {} }] } }), 400);
  assert.equal(e.response.data.requests['0'].response.status, 404);
});

test('auth records with passwords can be created in a batch and sign in', async () => {
  const b = su.createBatch();
  b.collection('users').create({ email: 'c@example.com', password: 'passw0rd-c', passwordConfirm: 'passw0rd-c' });
  b.collection('users').create({ email: 'd@example.com', password: 'passw0rd-d', passwordConfirm: 'passw0rd-d' });
  const res = await b.send();
  assert.deepEqual(res.map((r) => r.status), [200, 200]);
  const c = client(srv.url);
  await c.collection('users').authWithPassword('d@example.com', 'passw0rd-d');
  assert.equal(c.authStore.record.email, 'd@example.com');
  // a password mismatch fails the whole batch
  const bad = su.createBatch();
  bad.collection('users').create({ email: 'e@example.com', password: 'passw0rd-e', passwordConfirm: 'passw0rd-e' });
  bad.collection('users').create({ email: 'f@example.com', password: 'passw0rd-f', passwordConfirm: 'nope' });
  const e = await expectStatus(bad.send(), 400);
  assert.ok(e.response.data.requests['1'].response.data.passwordConfirm);
  await expectStatus(su.collection('users').getFirstListItem('email = "e@example.com"'), 404);
});

test('the batch\'s changes reach the changes log in order', async () => {
  const me = user.authStore.record.id;
  const b = user.createBatch();
  b.collection('notes').create({ title: 'log-1', owner: me });
  b.collection('notes').create({ title: 'log-2', owner: me });
  const res = await b.send();
  const ids = res.map((r) => r.body.id);
  let seen = [];
  for (let i = 0; i < 100 && seen.length < 2; i++) {
    const r = await fetch(`${srv.url}/api/log/changes?from=0&limit=1000`, { headers: { Authorization: su.authStore.token } });
    const body = await r.json();
    const recs = (body.records || body.items || []).map((x) => x.value || x);
    seen = recs.filter((x) => ids.includes(x.record_id || x.recordId || x.record?.id)).map((x) => x.record_id || x.recordId || x.record?.id);
    if (seen.length < 2) await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(seen, ids);
});
