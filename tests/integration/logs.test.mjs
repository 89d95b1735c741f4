// The request logs through the real `pocketbase` SDK (pb.logs): every answered request becomes
// a PocketBase log entry in the `requests` topic, loaded into the warehouse; list (filter,
// sort, pages), view and hourly stats read it there; bad filters are 400 envelopes, guests 401
// and other users 403; settings.logs (logIP, logAuthId, minLevel, maxDays) shape what is
// logged; __pbLogsCleanup__ deletes what maxDays no longer keeps.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { client, expectStatus, startWithSuperuser } from './lib/pb.mjs';

const DEADLINE_MS = 30000;
let srv, pb;

before(async () => {
  ({ srv, pb } = await startWithSuperuser());
  await pb.collections.create({ name: 'notes', type: 'base', fields: [{ name: 't', type: 'text' }], createRule: '', listRule: '', viewRule: '' });
});
after(async () => {
  await srv?.stop();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function eventually(what, fn) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    assert.ok(Date.now() - t0 < DEADLINE_MS, `timed out waiting for ${what}`);
    await sleep(50);
  }
}

// the entries matching filter, once there are at least n of them
async function logged(filter, n = 1) {
  return eventually(`${n} log entries matching ${filter}`, async () => {
    const r = await pb.logs.getList(1, 100, { filter, sort: '-@rowid' });
    return r.items.length >= n ? r : null;
  });
}

test('logs: requests become entries with PocketBase shapes, filters, sorts, pages and stats', async () => {
  const guest = client(srv.url);
  const marker = `m${Date.now()}`;
  const rec = await guest.collection('notes').create({ t: marker });
  await guest.collection('notes').getOne(rec.id, { headers: { Referer: 'http://app.example/page', 'User-Agent': 'logs-test/1.0' } });
  await expectStatus(guest.collection('notes').getOne('nope12345678901'), 404);
  const bad = await fetch(`${srv.url}/api/collections/notes/records?filter=${encodeURIComponent('nope = 1')}&x=%C3%A9t%C3%A9`);
  assert.equal(bad.status, 400);

  // the successful view, by its URL, with PocketBase's entry shape
  const ok = await logged(`data.url ~ '/api/collections/notes/records/${rec.id}' && data.method = 'GET'`);
  assert.equal(ok.items.length, 1);
  const e = ok.items[0];
  assert.deepEqual(Object.keys(e).sort(), ['created', 'data', 'id', 'level', 'message']);
  assert.equal(e.level, 0);
  assert.equal(e.message, `GET /api/collections/notes/records/${rec.id}`);
  assert.match(e.created, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(e.data.type, 'request');
  assert.equal(e.data.method, 'GET');
  assert.equal(e.data.status, 200);
  assert.equal(e.data.url, `/api/collections/notes/records/${rec.id}`);
  assert.equal(e.data.referer, 'http://app.example/page');
  assert.equal(e.data.userAgent, 'logs-test/1.0');
  assert.equal(e.data.auth, '');
  assert.equal(e.data.userIP, '127.0.0.1');
  assert.equal(e.data.remoteIP, '127.0.0.1');
  assert.equal(typeof e.data.execTime, 'number');
  assert.ok(!('authId' in e.data) && !('error' in e.data));

  // the failures are errors (level 8) carrying the envelope's message and details
  const nf = await logged(`data.status = 404 && data.url ~ 'nope12345678901'`);
  assert.equal(nf.items[0].level, 8);
  assert.equal(typeof nf.items[0].data.error, 'string');
  const bf = await logged(`data.status = 400 && data.url ~ 'filter='`);
  assert.equal(bf.items[0].level, 8);
  assert.ok(bf.items[0].data.url.includes('x=%C3%A9t%C3%A9'), bf.items[0].data.url);
  assert.ok(bf.items[0].message.includes('x=été'), bf.items[0].message);

  // any bytes a client sends are logged as valid UTF-8 (the broken ones dropped)
  const odd = await fetch(`${srv.url}/api/health?utf8probe=%ff%C3%A9`, { headers: { 'User-Agent': 'caf\u00e9 agent' } });
  assert.equal(odd.status, 200);
  const u8 = await logged(`data.url ~ 'utf8probe'`);
  assert.equal(u8.items[0].data.url, '/api/health?utf8probe=%ff%C3%A9');
  assert.equal(u8.items[0].message, 'GET /api/health?utf8probe=é');
  assert.equal(u8.items[0].data.userAgent, 'caf agent');

  // view one
  const one = await pb.logs.getOne(e.id);
  assert.deepEqual(one, e);
  await expectStatus(pb.logs.getOne('missing0000000'), 404);
  // (a failure of the logs routes is logged too: wait for it, so the reads below see a still
  // table)
  await logged(`data.url ~ 'missing0000000' && data.status = 404`);

  // the superuser's own requests name its collection
  const su = await logged(`data.auth = '_superusers' && data.url ~ '/api/collections' && data.method = 'POST'`);
  assert.equal(su.items[0].data.status, 200);

  // numbers, levels, sorts and pages
  const errors = await pb.logs.getList(1, 100, { filter: 'level > 0' });
  assert.ok(errors.items.length >= 2 && errors.items.every((x) => x.level === 8));
  const s4 = await pb.logs.getList(1, 100, { filter: 'data.status >= 400 && data.status < 500' });
  assert.ok(s4.items.every((x) => x.data.status >= 400 && x.data.status < 500));
  assert.deepEqual(s4.items.map((x) => x.id).sort(), errors.items.filter((x) => x.data.status < 500).map((x) => x.id).sort());
  const all = await pb.logs.getList(1, 1000, { sort: '-@rowid' });
  assert.equal(all.totalItems, all.items.length);
  const asc = await pb.logs.getList(1, 1000, { sort: 'created,@rowid' });
  assert.deepEqual(asc.items.map((x) => x.id), all.items.map((x) => x.id).reverse());
  const p2 = await pb.logs.getList(2, 2, { sort: '-@rowid' });
  assert.equal(p2.page, 2);
  assert.equal(p2.perPage, 2);
  assert.equal(p2.totalItems, all.totalItems);
  assert.equal(p2.totalPages, Math.ceil(all.totalItems / 2));
  assert.deepEqual(p2.items.map((x) => x.id), all.items.slice(2, 4).map((x) => x.id));
  const skip = await pb.logs.getList(1, 2, { skipTotal: true });
  assert.equal(skip.totalItems, -1);
  const bySort = await pb.logs.getList(1, 1000, { sort: '-data.status,-@rowid', filter: "data.type = 'request'" });
  const st = bySort.items.map((x) => x.data.status);
  assert.deepEqual(st, [...st].sort((a, b) => b - a));
  const none = await pb.logs.getList(1, 10, { filter: `message ~ 'no-such-thing-${marker}'` });
  assert.equal(none.totalItems, 0);
  assert.deepEqual(none.items, []);
  const today = await pb.logs.getList(1, 1, { filter: 'created >= @todayStart && created <= @now' });
  assert.ok(today.totalItems >= all.totalItems - 5);

  // stats: one row per hour with entries, filterable
  const stats = await pb.logs.getStats();
  assert.ok(stats.length >= 1);
  for (const s of stats) assert.match(s.date, /^\d{4}-\d\d-\d\d \d\d:00:00\.000Z$/);
  const total = stats.reduce((n, s) => n + s.total, 0);
  assert.ok(total >= all.totalItems);
  const errStats = await pb.logs.getStats({ filter: 'level >= 8' });
  assert.ok(errStats.reduce((n, s) => n + s.total, 0) >= 2);
  assert.ok(errStats.reduce((n, s) => n + s.total, 0) < total);
});

test('logs: bad filters and sorts are 400 envelopes; guests 401, other users 403', async () => {
  for (const filter of ['nope = 1', 'data.status >', '@request.auth.id = ""', "@collection.notes.t = 'x'", 'strftime("%Y", created) = "2024"', "level = 'abc'"]) {
    const e = await expectStatus(pb.logs.getList(1, 10, { filter }), 400);
    assert.equal(e.response.status, 400);
    assert.equal(typeof e.response.message, 'string');
    assert.deepEqual(e.response.data, {});
  }
  await expectStatus(pb.logs.getList(1, 10, { sort: 'nope' }), 400);
  await expectStatus(pb.logs.getList(1, 10, { sort: "-created'; DROP TABLE requests; --" }), 400);
  await expectStatus(pb.logs.getStats({ filter: 'created >' }), 400);
  await expectStatus(pb.logs.getStats({ filter: 'x.y = 1' }), 400);
  // a filter value is a value, never SQL
  const inj = await pb.logs.getList(1, 10, { filter: `message = "x' OR 1=1 --"` });
  assert.equal(inj.totalItems, 0);
  // the failures of the logs routes are logged themselves
  await logged(`data.url ~ '/api/logs' && data.status = 400`);

  const guest = client(srv.url);
  await expectStatus(guest.logs.getList(1, 10), 401);
  await expectStatus(guest.logs.getStats(), 401);
  await expectStatus(guest.logs.getOne('x'), 401);
  await pb.collection('users').create({ email: 'lu@example.com', password: 'password123', passwordConfirm: 'password123' });
  const u = client(srv.url);
  await u.collection('users').authWithPassword('lu@example.com', 'password123');
  await expectStatus(u.logs.getList(1, 10), 403);
  await expectStatus(u.logs.getStats(), 403);
  // a user's requests carry the collection, and its id with logAuthId
  await pb.settings.update({ logs: { logAuthId: true, logIP: false } });
  await u.collection('notes').getList(1, 1, { filter: "t = 'auth-probe'" });
  const ue = await logged(`data.auth = 'users' && data.url ~ 'auth-probe'`);
  assert.equal(ue.items[0].data.authId, u.authStore.record.id);
  assert.ok(!('userIP' in ue.items[0].data) && !('remoteIP' in ue.items[0].data));
  await pb.settings.update({ logs: { logAuthId: false, logIP: true } });
});

test('logs: minLevel leaves out successes; maxDays 0 logs nothing and __pbLogsCleanup__ empties the table', async () => {
  const jobs = await pb.crons.getFullList();
  assert.deepEqual(jobs.find((j) => j.id === '__pbLogsCleanup__'), { id: '__pbLogsCleanup__', expression: '0 */6 * * *' });
  const guest = client(srv.url);

  await pb.settings.update({ logs: { minLevel: 8 } });
  await guest.collection('notes').getList(1, 1, { filter: "t = 'minlevel-ok'" });
  await expectStatus(guest.collection('notes').getList(1, 1, { filter: "nope = 'minlevel-bad'" }), 400);
  // entries are written and loaded in order: once the failure is there, the success would be
  await logged(`data.url ~ 'minlevel-bad'`);
  const okOnes = await pb.logs.getList(1, 10, { filter: `data.url ~ 'minlevel-ok'` });
  assert.equal(okOnes.totalItems, 0);
  await pb.settings.update({ logs: { minLevel: 0 } });

  // (which entries a cleanup keeps by age is checked in tests/unit/test_wh_logs.c)
  assert.ok((await pb.logs.getList(1, 1)).totalItems > 0);
  await pb.settings.update({ logs: { maxDays: 0 } });
  assert.equal(await pb.crons.run('__pbLogsCleanup__'), true);
  await eventually('the cleanup to delete every entry', async () => (await pb.logs.getList(1, 1)).totalItems === 0);
  await guest.collection('notes').getList(1, 1, { filter: "t = 'after-disable'" });
  await expectStatus(guest.collection('notes').getOne('after-disable00'), 404);
  await pb.settings.update({ logs: { maxDays: 5 } });
  await guest.collection('notes').getList(1, 1, { filter: "t = 'after-enable'" });
  // entries are written and loaded in order: once this one is there, earlier ones would be
  await logged(`data.url ~ 'after-enable'`);
  assert.equal((await pb.logs.getList(1, 10, { filter: `data.url ~ 'after-disable'` })).totalItems, 0);
});
