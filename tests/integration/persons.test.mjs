// Person deletion and export (docs/governance.md): the bytes of a deleted person are gone
// from every file of the data directory (log segments, warehouse and its WAL, app db and its
// WAL) while another person's events keep their offsets; a kill -9 half way through a
// deletion is resumed at the next start with the same result; suppressed ids are dropped at
// capture (the client still gets 200); the export streams one JSON document.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Analytics } from '@segment/analytics-node';
import { run, start } from './lib/server.mjs';
import { startWithSuperuserAndKey, client, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';
import { api, sql, waitLoaded } from './lib/models.mjs';

const dirs = [];
after(() => { if (!process.env.KEEP_DIRS) for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

// every regular file under dir
function files(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

// The files under dir holding needle. The server may be writing (a temporary file renamed
// over the consumers' positions comes and goes): a file gone between the listing and its read
// makes the walk start again, so every file of one listing is read whole.
function holding(dir, needle) {
  const b = Buffer.from(needle);
  for (let attempt = 0; ; attempt++) {
    try {
      return files(dir).filter((f) => readFileSync(f).includes(b));
    } catch (err) {
      if (err.code !== 'ENOENT' || attempt >= 20) throw err;
    }
  }
}

async function capture(url, key, n, person, secret, prefix) {
  const seg = new Analytics({ writeKey: key, host: url, flushAt: 50, maxRetries: 3 });
  for (let i = 0; i < n; i++) {
    const base = { messageId: `${prefix}-${i}`, properties: { secret, i, pad: 'x'.repeat(6000) } };
    if (person.userId && i % 3 === 0) seg.track({ ...base, userId: person.userId, event: 'Paid' });
    else seg.track({ ...base, anonymousId: person.anonymousId, event: 'Viewed' });
  }
  if (person.userId)
    seg.identify({ userId: person.userId, anonymousId: person.anonymousId, messageId: `${prefix}-id`, traits: { secret } });
  await seg.closeAndFlush({ timeout: 30000 });
}

async function until(fn, what, timeoutMs = 60000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitJob(a, id) {
  return until(async () => {
    const r = await api(a, 'GET', `/api/persons/deletions/${id}`);
    assert.equal(r.status, 200, r.text);
    return r.json.status === 'done' || r.json.status === 'failed' ? r.json : null;
  }, `deletion ${id}`);
}

async function logEvents(a) {
  const out = [];
  for (let from = 0; ;) {
    const r = await api(a, 'GET', `/api/log/events?from=${from}&limit=1000`);
    assert.equal(r.status, 200, r.text);
    out.push(...r.json.records);
    if (r.json.nextOffset >= r.json.endOffset || r.json.records.length === 0) return out;
    from = r.json.nextOffset;
  }
}

const alice = { userId: `alice-${randomBytes(4).toString('hex')}`, anonymousId: `anon-a-${randomBytes(4).toString('hex')}` };
const bob = { userId: `bob-${randomBytes(4).toString('hex')}`, anonymousId: `anon-b-${randomBytes(4).toString('hex')}` };
const SECRET_A = `SECRET-A-${randomBytes(8).toString('hex')}`;
const SECRET_B = `SECRET-B-${randomBytes(8).toString('hex')}`;

async function setup(extraArgs = [], env = {}) {
  const s = await startWithSuperuserAndKey({ keepDir: true, args: ['--log-segment-size', '1MiB', ...extraArgs], env });
  dirs.push(s.dir);
  const a = { url: s.srv.url, token: s.token };
  await capture(a.url, s.key, 120, bob, SECRET_B, 'b1');
  await capture(a.url, s.key, 120, alice, SECRET_A, 'a1');
  await capture(a.url, s.key, 40, bob, SECRET_B, 'b2');
  await waitLoaded(a, 'SELECT count(*) FROM events', 283);
  return { ...s, a };
}

async function bobRows(a) {
  const r = await sql(a, `SELECT log_offset, id FROM events WHERE user_id = '${bob.userId}' OR anonymous_id = '${bob.anonymousId}' ORDER BY log_offset`);
  return r.rows.map((x) => `${x[0]}:${x[1]}`);
}

function checkGone(dir) {
  assert.deepEqual(holding(dir, SECRET_A), [], 'no file may still hold the deleted person\'s value');
  // the distinct ids themselves stay in the job and the suppression list (app db): they are
  // what suppression checks; docs/governance.md says so
  assert.ok(holding(dir, SECRET_B).length > 0, 'the other person\'s data is still there');
}

test('a deleted person is gone from every file; others keep offsets; suppressed ids are dropped', async () => {
  const { srv, dir, a, key } = await setup();
  try {
    const before = await bobRows(a);
    const logBefore = await logEvents(a);
    assert.equal(before.length, 162);
    assert.ok(holding(dir, SECRET_A).length > 0, 'the value is on disk before the deletion');
    assert.ok(readdirSync(join(dir, 'log', 'events')).length >= 2, 'several segments');

    // bad requests
    for (const body of [{}, { distinctIds: [] }, { distinctIds: [1] }, { userId: 'x', distinctIds: ['y'] },
      { distinctIds: ['x'], deleteUser: true }, { userId: 'x', suppress: 'yes' }, { userId: 'x'.repeat(201) }]) {
      const r = await api(a, 'POST', '/api/persons/delete', body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.json.status, 400);
    }
    assert.equal((await api({ url: a.url }, 'POST', '/api/persons/delete', { userId: 'x' })).status, 401);
    assert.equal((await api(a, 'GET', '/api/persons/deletions/nope')).status, 404);

    // by one anonymous id: the user id it was linked to and its events go too
    const r = await api(a, 'POST', '/api/persons/delete', { distinctIds: [alice.anonymousId], suppress: true });
    assert.equal(r.status, 202, r.text);
    const job = await waitJob(a, r.json.id);
    assert.equal(job.status, 'done', JSON.stringify(job));
    assert.deepEqual([...job.distinctIds].sort(), [alice.anonymousId, alice.userId].sort());
    assert.equal(job.erased.warehouse, 121);
    assert.equal(job.erased.log, 121);

    // the warehouse and the log: the other person untouched, same offsets
    assert.deepEqual(await bobRows(a), before);
    const c = await sql(a, `SELECT count(*) FROM events WHERE user_id = '${alice.userId}' OR anonymous_id = '${alice.anonymousId}'`);
    assert.equal(Number(c.rows[0][0]), 0);
    const logAfter = await logEvents(a);
    assert.equal(logAfter.length, logBefore.length, 'every offset is still there');
    for (let i = 0; i < logBefore.length; i++) {
      assert.equal(logAfter[i].offset, logBefore[i].offset);
      const v = logBefore[i].value;
      if (v.userId === alice.userId || v.anonymousId === alice.anonymousId) assert.equal(logAfter[i].value, null);
      else assert.deepEqual(logAfter[i].value, v);
    }
    checkGone(dir);

    // suppressed: acknowledged with 200, never written
    const end = (await api(a, 'GET', '/api/log/events?from=0&limit=1')).json.endOffset;
    const res = await fetch(`${a.url}/v1/track`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` },
      body: JSON.stringify({ userId: alice.userId, event: 'Back', messageId: 'again-1', properties: { secret: SECRET_A } }),
    });
    assert.equal(res.status, 200);
    const res2 = await fetch(`${a.url}/v1/track`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` },
      body: JSON.stringify({ userId: bob.userId, event: 'Still', messageId: 'again-2' }),
    });
    assert.equal(res2.status, 200);
    assert.equal((await api(a, 'GET', '/api/log/events?from=0&limit=1')).json.endOffset, end + 1, 'only bob\'s event was written');
    checkGone(dir);

    // export: bob's events and linked ids as one document; alice has none left
    await waitLoaded(a, `SELECT count(*) FROM events WHERE user_id = '${bob.userId}'`, 57);
    const ex = await api(a, 'GET', `/api/persons/export?distinctId=${encodeURIComponent(bob.anonymousId)}`);
    assert.equal(ex.status, 200, ex.text);
    assert.deepEqual([...ex.json.distinctIds].sort(), [bob.anonymousId, bob.userId].sort());
    assert.equal(ex.json.eventCount, 163);
    assert.equal(ex.json.events.length, 163);
    assert.equal(ex.json.truncated, false);
    assert.equal(ex.json.error, null);
    assert.equal(ex.json.events[0].properties.secret, SECRET_B);
    const exa = await api(a, 'GET', `/api/persons/export?distinctId=${encodeURIComponent(alice.userId)}`);
    assert.equal(exa.status, 200);
    assert.equal(exa.json.eventCount, 0);
    assert.equal((await api(a, 'GET', '/api/persons/export')).status, 400);

    // the suppression list survives a restart
    await srv.stop();
    const srv2 = await start({ dir });
    try {
      const pb = client(srv2.url);
      await pb.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
      const a2 = { url: srv2.url, token: pb.authStore.token };
      const e0 = (await api(a2, 'GET', '/api/log/events?from=0&limit=1')).json.endOffset;
      const res3 = await fetch(`${a2.url}/v1/track`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}` },
        body: JSON.stringify({ anonymousId: alice.anonymousId, event: 'Back', messageId: 'again-3' }),
      });
      assert.equal(res3.status, 200);
      assert.equal((await api(a2, 'GET', '/api/log/events?from=0&limit=1')).json.endOffset, e0);
    } finally {
      await srv2.stop();
    }
  } finally {
    await srv.stop();
  }
});

test('deleting a user deletes its auth record and its events; the app db keeps no bytes', async () => {
  const { srv, dir, a, key, pb } = await setup();
  try {
    const users = await pb.collection('users').create({ email: 'gone@example.org', password: 'secret-pass-1', passwordConfirm: 'secret-pass-1', name: SECRET_A });
    await capture(a.url, key, 5, { userId: users.id, anonymousId: 'anon-u' }, SECRET_A, 'u');
    await waitLoaded(a, `SELECT count(*) FROM events WHERE user_id = '${users.id}' OR anonymous_id = 'anon-u'`, 6);
    const ex = await api(a, 'GET', `/api/persons/export?distinctId=${users.id}`);
    assert.equal(ex.status, 200, ex.text);
    assert.equal(ex.json.records.length, 1);
    assert.equal(ex.json.records[0].record.email, 'gone@example.org');
    assert.equal(ex.json.records[0].record.password, undefined);
    assert.equal(ex.json.eventCount, 6);

    const r = await api(a, 'POST', '/api/persons/delete', { userId: users.id, deleteUser: true });
    assert.equal(r.status, 202, r.text);
    const job = await waitJob(a, r.json.id);
    assert.equal(job.status, 'done', JSON.stringify(job));
    assert.equal(job.erased.user, true);
    assert.equal(job.erased.warehouse, 6);
    await assert.rejects(pb.collection('users').getOne(users.id), (e) => e.status === 404);
    const c = await sql(a, `SELECT count(*) FROM events WHERE user_id = '${users.id}'`);
    assert.equal(Number(c.rows[0][0]), 0);
    // the app db and its WAL: the user's record is gone from them
    for (const f of ['data.db', 'data.db-wal', 'app.db', 'app.db-wal']) {
      let st = null;
      try { st = statSync(join(dir, f)); } catch { continue; }
      if (st) assert.ok(!readFileSync(join(dir, f)).includes(Buffer.from('gone@example.org')), f);
    }
  } finally {
    await srv.stop();
  }
});

test('kill -9 half way through a deletion: the job resumes at the next start and finishes', async () => {
  const { srv, dir, a } = await setup([], { TANDEM_TEST_DELETE_PAUSE_MS: '3000' });
  const before = await bobRows(a);
  const r = await api(a, 'POST', '/api/persons/delete', { userId: alice.userId });
  assert.equal(r.status, 202, r.text);
  // the log is erased, the warehouse not yet: kill it there
  await until(async () => {
    const j = await api(a, 'GET', `/api/persons/deletions/${r.json.id}`);
    return j.json.phase === 'warehouse' ? j.json : null;
  }, 'the log phase');
  srv.proc.kill('SIGKILL');
  await srv.exited;
  const c = await sql({ url: a.url, token: a.token }, 'SELECT 1').catch(() => null);
  assert.equal(c, null, 'the server is gone');

  const srv2 = await start({ dir });
  try {
    const pb = client(srv2.url);
    await pb.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
    const a2 = { url: srv2.url, token: pb.authStore.token };
    const job = await waitJob(a2, r.json.id);
    assert.equal(job.status, 'done', JSON.stringify(job));
    assert.equal(job.erased.log, 121);
    assert.equal(job.erased.warehouse, 121);
    assert.deepEqual(await bobRows(a2), before);
    checkGone(dir);
  } finally {
    await srv2.stop();
  }
});

test('tandem persons delete and export over the running server', async () => {
  const s = await startWithSuperuserAndKey({ keepDir: true });
  dirs.push(s.dir);
  const a = { url: s.srv.url, token: s.token };
  try {
    await capture(a.url, s.key, 6, { userId: 'cli-user', anonymousId: 'cli-anon' }, SECRET_A, 'c');
    await waitLoaded(a, "SELECT count(*) FROM events WHERE user_id = 'cli-user' OR anonymous_id = 'cli-anon'", 7);
    const auth = ['--url', a.url, '--email', SU_EMAIL, '--password', SU_PASSWORD];
    const ex = await run(['persons', 'export', 'cli-anon', ...auth]);
    assert.equal(ex.code, 0, ex.stderr);
    assert.equal(JSON.parse(ex.stdout).eventCount, 7);
    assert.equal((await run(['persons', 'delete', ...auth])).code, 2);
    assert.equal((await run(['persons', 'delete', 'x', '--user', 'y', ...auth])).code, 2);
    const del = await run(['persons', 'delete', '--user', 'cli-user', '--suppress', 'true', '--wait', '120', ...auth]);
    assert.equal(del.code, 0, del.stderr);
    const job = JSON.parse(del.stdout);
    assert.equal(job.status, 'done');
    assert.equal(job.erased.warehouse, 7);
    assert.deepEqual(holding(s.dir, SECRET_A), []);
  } finally {
    await s.srv.stop();
  }
});
