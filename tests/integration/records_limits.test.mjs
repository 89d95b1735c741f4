// Expensive reads and bodies from guests are bounded: a public collection with a
// self-relation lets one guest filter walk 30^5 rows, one expand six levels deep load
// millions of records, and one sign-up body carry millions of junk keys. Each now stops with
// a 4xx in PocketBase's envelope: the store deadline (--records-timeout, 400), the expand byte
// cap (--records-max-expand, 400), the records body limit (--records-max-body, 413) and the
// key limit (--records-max-keys, 400). Other clients are answered meanwhile.
//
// The limits are given through TANDEM_* variables, so a build without them still starts and
// fails these tests on their assertions rather than on an unknown option.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { startWithSuperuser, client, expectStatus } from './lib/pb.mjs';

const N = 30;
const DEEP = "rel.rel.rel.rel.rel.t ?= 'x'"; // 30^5 joins: seconds of SQLite work
let srv, su, ids;

before(async () => {
  ({ srv, pb: su } = await startWithSuperuser({
    args: ['--threads', '2'],
    env: { TANDEM_RECORDS_TIMEOUT: '1', TANDEM_RECORDS_MAX_EXPAND: '1MiB' },
  }));
  const nodes = await su.collections.create({
    name: 'nodes', type: 'base', listRule: '', viewRule: '', createRule: '',
    fields: [{ name: 't', type: 'text' }],
  });
  await su.collections.update('nodes', {
    fields: [...nodes.fields, { name: 'rel', type: 'relation', collectionId: nodes.id, maxSelect: 999 }],
  });
  ids = [];
  for (let i = 0; i < N; i++) ids.push((await su.collection('nodes').create({ t: `node ${i} ${'y'.repeat(200)}` })).id);
  for (const id of ids) await su.collection('nodes').update(id, { rel: ids });
});
after(async () => {
  await srv?.stop();
});

async function get(path) {
  const r = await fetch(`${srv.url}${path}`);
  const text = await r.text();
  return { status: r.status, text, body: text ? JSON.parse(text) : null };
}

const list = (q) => get(`/api/collections/nodes/records?${new URLSearchParams(q)}`);

function assertTimeout(r) {
  assert.equal(r.status, 400, r.text.slice(0, 300));
  assert.deepEqual(r.body.data, {});
  assert.equal(r.body.status, 400);
  assert.match(r.body.message, /took too long/);
}

test('a nested self-relation filter stops at the deadline; others are answered meanwhile', async () => {
  let expensiveDone = false;
  const expensive = list({ filter: DEEP }).then((r) => { expensiveDone = true; return r; });
  await new Promise((resolve) => setTimeout(resolve, 150)); // let it reach SQLite
  // a client on a new connection reaches the other server thread. (One whose keep-alive
  // connection sits on the busy thread waits for it: at most the deadline.)
  const normal = await getFresh(`/api/collections/nodes/records/${ids[0]}`);
  assert.equal(normal.status, 200);
  assert.equal(normal.body.id, ids[0]);
  assert.equal(expensiveDone, false, 'the normal request was answered while the expensive one ran');
  assertTimeout(await expensive);

  // the deadline never outlives its request: work of more than the handler's period still
  // runs to its end on both threads afterwards
  for (let i = 0; i < 8; i++) {
    const r = await list({ filter: "rel.t ?= 'none'", perPage: '30' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.totalItems, 0);
  }
  const sorted = await list({ filter: "rel.t ~ 'node'", sort: '-t', perPage: '30' });
  assert.equal(sorted.status, 200, sorted.text);
  assert.equal(sorted.body.items.length, N);
});

test('the same deadline bounds a view rule, a create rule and an auth rule', async () => {
  // a view: the rule is checked with the read
  await su.collections.update('nodes', { viewRule: DEEP });
  assertTimeout(await get(`/api/collections/nodes/records/${ids[1]}`));
  await su.collections.update('nodes', { viewRule: '' });

  // a create through the group-commit writer: only its own rule is stopped, nothing is written
  const slow = await su.collections.create({
    name: 'slow_create', type: 'base', listRule: '', createRule: DEEP.replace(/^rel\./, 'rel.rel.'),
    fields: [{ name: 'rel', type: 'relation', collectionId: (await su.collections.getOne('nodes')).id, maxSelect: 999 }],
  });
  const guest = client(srv.url);
  const e = await expectStatus(guest.collection('slow_create').create({ rel: ids }), 400);
  assert.match(e.response.message, /took too long/);
  assert.equal((await su.collection('slow_create').getList(1, 1)).totalItems, 0);
  // a create with a cheap rule right after it commits
  await su.collections.update(slow.id, { createRule: '' });
  await guest.collection('slow_create').create({ rel: [ids[0]] });

  // an auth rule, checked on the hashing pool's thread after the password
  const members = await su.collections.create({
    name: 'members', type: 'auth', authRule: DEEP,
    fields: [{ name: 'rel', type: 'relation', collectionId: (await su.collections.getOne('nodes')).id, maxSelect: 999 }],
  });
  await su.collection('members').create({ email: 'm@example.com', password: 'member-pass-1', passwordConfirm: 'member-pass-1', rel: ids });
  const r = await fetch(`${srv.url}/api/collections/members/auth-with-password`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ identity: 'm@example.com', password: 'member-pass-1' }),
  });
  const text = await r.text();
  assertTimeout({ status: r.status, text, body: JSON.parse(text) });
  await su.collections.update(members.id, { authRule: '' });
  await client(srv.url).collection('members').authWithPassword('m@example.com', 'member-pass-1');
});

test('an expand six levels deep is refused with a 400 instead of a huge answer', async () => {
  const r = await list({ expand: 'rel.rel.rel.rel.rel.rel' });
  assert.equal(r.status, 400, `${r.status} ${r.text.length} bytes`);
  assert.match(r.body.message, /too large/);
  assert.deepEqual(r.body.data, {});
  assert.ok(r.text.length < 1000, `${r.text.length} bytes`);
  // the same from a view, and one level still works as PocketBase's
  const v = await get(`/api/collections/nodes/records/${ids[0]}?expand=rel.rel.rel.rel`);
  assert.equal(v.status, 400);
  const one = await list({ expand: 'rel', perPage: '5' });
  assert.equal(one.status, 200, one.text.slice(0, 300));
  assert.equal(one.body.items.length, 5);
  for (const item of one.body.items) assert.equal(item.expand.rel.length, N);
});

// POSTs a body on a connection of its own with `Expect: 100-continue`, as curl does for large
// bodies: the body is sent once the server says 100 Continue, so a server that judges the
// declared length answers 413 without the body crossing the wire (writing it anyway would race
// the server's close). Resolves with the status and the answer's text.
function post(path, contentType, body) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to POST ${path}`)), 60_000);
    const req = httpRequest(`${srv.url}${path}`, {
      method: 'POST',
      agent: false,
      headers: { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), Expect: '100-continue' },
    }, (res) => {
      let text = '';
      const done = () => { clearTimeout(timer); resolve({ status: res.statusCode, text }); };
      res.on('data', (d) => { text += d; });
      res.on('end', done);
      res.on('error', done);
    });
    req.on('continue', () => req.end(body));
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

// A GET on a new connection (no keep-alive connection of the pool, which may belong to the
// server thread that is busy).
function getFresh(path) {
  return new Promise((resolve, reject) => {
    httpRequest(`${srv.url}${path}`, { agent: false }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text, body: JSON.parse(text) }));
    }).on('error', reject).end();
  });
}

function junkKeys(n) {
  const o = {};
  for (let i = 0; i < n; i++) o[`k${i}`] = 1;
  return o;
}

test('a 22 MB sign-up body of junk keys is refused with 413 before it is read', async () => {
  const junk = Array.from({ length: 1_800_000 }, (_, i) => `"k${i}":1`).join(',');
  const body = `{"email":"j@example.com","password":"junk-pass-1","passwordConfirm":"junk-pass-1",${junk}}`;
  assert.ok(body.length > 20_000_000, `${body.length}`);
  const r = await post('/api/collections/users/records', 'application/json', body);
  assert.equal(r.status, 413);
  assert.match(r.text, /"status":413/);
  const a = await post('/api/collections/users/auth-with-password', 'application/json', body);
  assert.equal(a.status, 413);
  // the server still works, and the capture limit elsewhere is untouched (32 MiB)
  const ok = await get(`/api/collections/nodes/records/${ids[0]}`);
  assert.equal(ok.status, 200);
});

test('more than 1000 top-level keys are refused with 400 in JSON, forms and multipart', async () => {
  const expectKeys = (r) => {
    assert.equal(r.status, 400, r.text.slice(0, 300));
    assert.match(JSON.parse(r.text).message, /too many keys \(at most 1000\)/);
  };
  const json = JSON.stringify({ t: 'many', ...junkKeys(1001) });
  expectKeys(await post('/api/collections/nodes/records', 'application/json', json));
  expectKeys(await post('/api/collections/users/auth-with-password', 'application/json', json));
  const form = new URLSearchParams({ t: 'many', ...junkKeys(1001) }).toString();
  expectKeys(await post('/api/collections/nodes/records', 'application/x-www-form-urlencoded', form));
  const fd = new FormData();
  fd.append('t', 'many');
  for (let i = 0; i < 1001; i++) fd.append(`k${i}`, '1');
  const r = await fetch(`${srv.url}/api/collections/nodes/records`, { method: 'POST', body: fd });
  expectKeys({ status: r.status, text: await r.text() });
  // 1000 keys are fine (unknown keys are ignored, as PocketBase does)
  const fine = await post('/api/collections/nodes/records', 'application/json', JSON.stringify({ t: 'fine', ...junkKeys(999) }));
  assert.equal(fine.status, 200, fine.text.slice(0, 300));
  assert.equal(JSON.parse(fine.text).t, 'fine');
});
