// Person deletion and export (docs/governance.md): the bytes of a deleted person are gone
// from every file of the data directory (log segments, warehouse and its WAL, app db and its
// WAL) while another person's events keep their offsets; a kill -9 half way through a
// deletion is resumed at the next start with the same result; suppressed ids are dropped at
// capture (the client still gets 200); the export streams one JSON document. With deleteUser
// and relations, the auth record and the records pointing at it are deleted and their history
// (the "changes" topic, the warehouse's changes table and mirrors) leaves every file too.
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

// alice's user id has the shape of a record id: an auth record of "users" may carry it
const alice = { userId: `alice${randomBytes(5).toString('hex')}`, anonymousId: `anon-a-${randomBytes(4).toString('hex')}` };
const bob = { userId: `bob-${randomBytes(4).toString('hex')}`, anonymousId: `anon-b-${randomBytes(4).toString('hex')}` };
const SECRET_A = `SECRET-A-${randomBytes(8).toString('hex')}`;
const SECRET_B = `SECRET-B-${randomBytes(8).toString('hex')}`;
const SECRET_U = `SECRET-U-${randomBytes(8).toString('hex')}`;

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

// An app user (created by a guest, so the superuser's audit trail never sees its values) with
// a unique email and name, updated once, three posts of its own whose titles hold a unique
// value (the first with a file holding it too), a comment on one of them (cascade: it goes
// with its post), and a post of another user.
async function appUser(a, pb, id) {
  const tag = randomBytes(6).toString('hex');
  const u = { email: `gone-${tag}@example.org`, name: `NAME-${tag}`, name2: `NAME2-${tag}`, title: `TITLE-${tag}` };
  const users = await pb.collections.getOne('users');
  await pb.collections.create({
    name: 'posts', type: 'base', createRule: '@request.auth.id != ""', listRule: '', viewRule: '',
    fields: [{ name: 'title', type: 'text' }, { name: 'author', type: 'relation', collectionId: users.id, maxSelect: 1 },
      { name: 'attachment', type: 'file', maxSelect: 1, maxSize: 1000000 }],
  });
  const posts = await pb.collections.getOne('posts');
  await pb.collections.create({
    name: 'comments', type: 'base', createRule: '@request.auth.id != ""', viewRule: '',
    fields: [{ name: 'body', type: 'text' }, { name: 'post', type: 'relation', collectionId: posts.id, maxSelect: 1, cascadeDelete: true }],
  });
  const guest = client(a.url);
  const pw = 'secret-pass-1';
  const rec = await guest.collection('users').create({ ...(id ? { id } : {}), email: u.email, password: pw, passwordConfirm: pw, name: u.name });
  await guest.collection('users').authWithPassword(u.email, pw);
  await guest.collection('users').update(rec.id, { name: u.name2 });
  u.id = rec.id;
  u.posts = [];
  // the first post has a file holding the unique value: it goes with the record
  for (let i = 0; i < 3; i++) {
    const extra = i === 0 ? { attachment: new File([`file of ${u.title}`], 'note.txt', { type: 'text/plain' }) } : {};
    u.posts.push((await guest.collection('posts').create({ title: `${u.title} ${i}`, author: rec.id, ...extra })).id);
  }
  await guest.collection('comments').create({ body: 'a comment', post: u.posts[0] });
  const other = client(a.url);
  await other.collection('users').create({ email: `keep-${tag}@example.org`, password: pw, passwordConfirm: pw });
  await other.collection('users').authWithPassword(`keep-${tag}@example.org`, pw);
  u.kept = (await other.collection('posts').create({ title: 'KEPT-POST', author: other.authStore.record.id })).id;
  await waitLoaded(a, 'SELECT count(*) FROM app_posts', 4);
  await waitLoaded(a, `SELECT count(*) FROM changes WHERE record_id = '${rec.id}'`, 2);
  return u;
}

// The app user's values are in no file; the other user's post is still there.
async function checkUserGone(dir, a, pb, u) {
  for (const v of [u.email, u.name, u.name2, u.title])
    assert.deepEqual(holding(dir, v), [], `no file may still hold ${v}`);
  await assert.rejects(pb.collection('users').getOne(u.id), (e) => e.status === 404);
  for (const p of u.posts) await assert.rejects(pb.collection('posts').getOne(p), (e) => e.status === 404);
  assert.equal((await pb.collection('posts').getOne(u.kept)).title, 'KEPT-POST');
  assert.equal((await pb.collection('comments').getFullList()).length, 0, 'the cascade ran');
  const ch = await sql(a, `SELECT count(*) FROM changes WHERE record_id IN ('${[u.id, ...u.posts].join("','")}')`);
  assert.equal(Number(ch.rows[0][0]), 0);
  const m = await sql(a, 'SELECT count(*) FROM app_posts');
  assert.equal(Number(m.rows[0][0]), 1);
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

test('deleting a user deletes its auth record, the records of a relation and their history', async () => {
  const { srv, dir, a, key, pb } = await setup();
  try {
    const u = await appUser(a, pb);
    await capture(a.url, key, 5, { userId: u.id, anonymousId: 'anon-u' }, SECRET_U, 'u');
    await waitLoaded(a, `SELECT count(*) FROM events WHERE user_id = '${u.id}' OR anonymous_id = 'anon-u'`, 6);
    const ex = await api(a, 'GET', `/api/persons/export?distinctId=${u.id}`);
    assert.equal(ex.status, 200, ex.text);
    assert.equal(ex.json.records.length, 4, 'the user and its 3 posts');
    assert.equal(ex.json.records[0].record.email, u.email);
    assert.equal(ex.json.records[0].record.password, undefined);
    assert.equal(ex.json.eventCount, 6);
    for (const v of [u.email, u.name, u.title])
      assert.ok(holding(dir, v).length > 0, `${v} is on disk before the deletion`);
    assert.ok(holding(dir, `file of ${u.title}`).some((f) => f.includes('storage')), 'the file is stored');
    const hist = await sql(a, `SELECT count(*) FROM changes WHERE record_id IN ('${[u.id, ...u.posts].join("','")}')`);
    assert.equal(Number(hist.rows[0][0]), 5, 'user created and updated, 3 posts created');

    // bad relations are refused, naming the field
    for (const body of [
      { userId: u.id, relations: 'posts.author' }, { userId: u.id, relations: ['posts'] },
      { userId: u.id, relations: ['nope.author'] }, { userId: u.id, relations: ['posts.title'] },
      { userId: u.id, relations: ['comments.post'] }, { distinctIds: [u.id], relations: ['posts.author'] }]) {
      const r = await api(a, 'POST', '/api/persons/delete', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.match(r.json.data.request.message, /relations/, r.text);
    }

    // settings.persons.deleteRelations: checked when saved; a request that names its relations
    // does not use it
    for (const bad of [['posts.title'], ['nope.author'], ['posts'], 'posts.author'])
      assert.equal((await api(a, 'PATCH', '/api/settings', { persons: { deleteRelations: bad } })).status, 400, JSON.stringify(bad));
    const bs = await api(a, 'PATCH', '/api/settings', { persons: { deleteRelations: ['comments.post'] } });
    assert.equal(bs.status, 400);
    assert.match(bs.json.data.persons.deleteRelations.message, /\[0\]: "comments.post": not a relation field of a base or auth collection pointing at an auth collection/);
    const st = await api(a, 'PATCH', '/api/settings', { persons: { deleteRelations: ['posts.author'] } });
    assert.equal(st.status, 200, st.text);
    assert.deepEqual(st.json.persons.deleteRelations, ['posts.author']);
    const none = await api(a, 'POST', '/api/persons/delete', { userId: 'nobody', relations: [] });
    assert.equal(none.status, 202, none.text);
    assert.deepEqual(none.json.request.relations, []);

    const r = await api(a, 'POST', '/api/persons/delete', { userId: u.id, deleteUser: true, relations: ['posts.author'] });
    assert.equal(r.status, 202, r.text);
    assert.deepEqual(r.json.request.relations, ['posts.author']);
    const job = await waitJob(a, r.json.id);
    assert.equal(job.status, 'done', JSON.stringify(job));
    assert.equal(job.erased.user, true);
    assert.equal(job.erased.records, 3);
    assert.equal(job.erased.warehouse, 6);
    assert.equal(job.records.length, 4);
    // create + update + delete of the user, create + delete of each post
    assert.equal(job.erased.changesLog, 9);
    assert.equal(job.erased.changesWarehouse, 9);
    const c = await sql(a, `SELECT count(*) FROM events WHERE user_id = '${u.id}'`);
    assert.equal(Number(c.rows[0][0]), 0);
    await checkUserGone(dir, a, pb, u);
    assert.deepEqual(holding(dir, SECRET_U), [], 'the user\'s events');
    // the newest record of "changes" is an erased one now: a restarted server's relay still
    // finds where it left off and ships the next change
    await srv.stop();
    const srv2 = await start({ dir });
    try {
      const pb2 = client(srv2.url);
      await pb2.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
      const a2 = { url: srv2.url, token: pb2.authStore.token };
      await pb2.collection('posts').create({ title: 'AFTER-RESTART' });
      await waitLoaded(a2, "SELECT count(*) FROM app_posts WHERE title = 'AFTER-RESTART'", 1);
    } finally {
      await srv2.stop();
    }
  } finally {
    await srv.stop();
  }
});

// The server is killed twice: once the log is erased (the warehouse not yet), and once the app
// records are deleted (their history not yet erased); each restart resumes the job.
test('kill -9 half way through a deletion: the job resumes at the next start and finishes', async () => {
  const pause = { TANDEM_TEST_DELETE_PAUSE_MS: '3000' };
  const { srv, dir, a, pb } = await setup([], pause);
  const u = await appUser(a, pb, alice.userId);
  const before = await bobRows(a);
  // the relations come from the settings here
  assert.equal((await api(a, 'PATCH', '/api/settings', { persons: { deleteRelations: ['posts.author'] } })).status, 200);
  const r = await api(a, 'POST', '/api/persons/delete', { userId: alice.userId, deleteUser: true });
  assert.equal(r.status, 202, r.text);
  assert.deepEqual(r.json.request.relations, ['posts.author']);
  const killAt = async (s, auth, phase) => {
    await until(async () => {
      const j = await api(auth, 'GET', `/api/persons/deletions/${r.json.id}`);
      return j.json.phase === phase ? j.json : null;
    }, `the phase before ${phase}`);
    s.proc.kill('SIGKILL');
    await s.exited;
    const c = await sql(auth, 'SELECT 1').catch(() => null);
    assert.equal(c, null, 'the server is gone');
  };
  const restart = async (env = {}) => {
    const s = await start({ dir, env });
    const p = client(s.url);
    await p.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
    return { s, p, auth: { url: s.url, token: p.authStore.token } };
  };
  await killAt(srv, a, 'warehouse');
  const one = await restart(pause);
  try {
    await killAt(one.s, one.auth, 'history');
  } finally {
    if (one.s.proc.exitCode === null && one.s.proc.signalCode === null) await one.s.stop();
  }
  const two = await restart();
  try {
    const job = await waitJob(two.auth, r.json.id);
    assert.equal(job.status, 'done', JSON.stringify(job));
    assert.equal(job.erased.log, 121);
    assert.equal(job.erased.warehouse, 121);
    assert.equal(job.erased.user, true);
    assert.equal(job.erased.records, 3);
    assert.equal(job.erased.changesLog, 9);
    assert.deepEqual(await bobRows(two.auth), before);
    checkGone(dir);
    await checkUserGone(dir, two.auth, two.p, u);
  } finally {
    await two.s.stop();
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
    const bad = await run(['persons', 'delete', '--user', 'cli-user', '--relations', 'nope.author', ...auth]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /relations\[0\]: no collection/);
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
