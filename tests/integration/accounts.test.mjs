// Account safety through the real `pocketbase` SDK: emails are unique whatever their case
// (create, update, sign-in, and databases made before the rule), only refreshable tokens can
// be refreshed, and an increment the store cannot keep is a 400, never a silent no-op.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { start, tempDir } from './lib/server.mjs';
import { client, createSuperuser, expectStatus, startWithSuperuser, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';
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

test('emails are unique whatever their case; sign-in finds the one record', async () => {
  const guest = client(srv.url);
  const pw = 'passw0rd-victim';
  const victim = await guest.collection('users').create({ email: 'Victim@Corp.com', password: pw, passwordConfirm: pw });
  for (const email of ['victim@corp.com', 'VICTIM@CORP.COM', 'victim@Corp.com']) {
    const e = await expectStatus(guest.collection('users').create({ email, password: 'passw0rd-attacker', passwordConfirm: 'passw0rd-attacker' }), 400);
    assert.equal(e.response.message, 'Failed to create record.');
    assert.equal(e.response.data.email.code, 'validation_not_unique', email);
  }
  // any case signs in to the one record
  for (const email of ['victim@corp.com', 'VICTIM@corp.COM']) {
    const a = await client(srv.url).collection('users').authWithPassword(email, pw);
    assert.equal(a.record.id, victim.id);
  }
  // an email change (by a superuser) to another case of a taken one
  const other = await guest.collection('users').create({ email: 'other@corp.com', password: pw, passwordConfirm: pw });
  const e = await expectStatus(su.collection('users').update(other.id, { email: 'VICTIM@corp.com' }), 400);
  assert.equal(e.response.message, 'Failed to update record.');
  assert.equal(e.response.data.email.code, 'validation_not_unique');
  assert.equal((await su.collection('users').update(victim.id, { email: 'victim@corp.com' })).email, 'victim@corp.com', 'its own email in another case');
  // every auth collection, old and new, has the case-insensitive index
  const users = await su.collections.getOne('users');
  assert.ok(users.indexes.some((x) => /\(`email` COLLATE NOCASE\) WHERE `email` != ''/.test(x)), JSON.stringify(users.indexes));
  const staff = await su.collections.create({ name: 'staff', type: 'auth', fields: [], createRule: '' });
  assert.ok(staff.indexes.some((x) => /\(`email` COLLATE NOCASE\)/.test(x)), JSON.stringify(staff.indexes));
  await guest.collection('staff').create({ email: 'boss@corp.com', password: pw, passwordConfirm: pw });
  const e2 = await expectStatus(guest.collection('staff').create({ email: 'Boss@Corp.com', password: pw, passwordConfirm: pw }), 400);
  assert.equal(e2.response.data.email.code, 'validation_not_unique');
  // superusers too
  const e3 = await expectStatus(su.collection('_superusers').create({ email: SU_EMAIL.toUpperCase(), password: pw, passwordConfirm: pw }), 400);
  assert.equal(e3.response.data.email.code, 'validation_not_unique');
});

let hasSqlite3 = true;
try { execFileSync('sqlite3', ['-version']); } catch { hasSqlite3 = false; }

test('a database from before, with emails that differ only in case: warned, sign-in refused, fixed once resolved', { skip: !hasSqlite3 && 'no sqlite3 command' }, async () => {
  const d = tempDir();
  await createSuperuser(d);
  let s = await start({ dir: d });
  const pw = 'passw0rd-twins';
  const first = await client(s.url).collection('users').create({ email: 'Twin@Corp.com', password: pw, passwordConfirm: pw });
  await s.stop();
  // what an older version allowed: a case-sensitive index, and a second record with the
  // same address in another case (and, for the attack, a password the attacker knows: here
  // the same hash, so only the refusal can keep the two apart)
  const db = join(d, 'app.db');
  execFileSync('sqlite3', [db, [
    'DROP INDEX `idx_email__pb_users_auth_`;',
    "CREATE UNIQUE INDEX `idx_email__pb_users_auth_` ON `users` (`email`) WHERE `email` != '';",
    "UPDATE _collections SET spec = replace(spec, '(`email` COLLATE NOCASE)', '(`email`)') WHERE id = '_pb_users_auth_';",
    "INSERT INTO users (id, email, tokenKey, password) SELECT 'attackerrecord1', 'twin@corp.com', 'attacker-token-key-0123456789', password FROM users WHERE id = '" + first.id + "';",
  ].join('\n')]);
  s = await start({ dir: d });
  try {
    assert.match(s.stderr(), /auth collection users: 1 emails are each held by more than one record when case is ignored \(2 records\)/);
    for (const email of ['twin@corp.com', 'Twin@Corp.com', 'TWIN@CORP.COM']) {
      const e = await expectStatus(client(s.url).collection('users').authWithPassword(email, pw), 400);
      assert.equal(e.response.message, 'Failed to authenticate.');
    }
    const e = await expectStatus(client(s.url).collection('users').create({ email: 'tWiN@corp.com', password: pw, passwordConfirm: pw }), 400);
    assert.equal(e.response.data.email.code, 'validation_not_unique');
    const sa = client(s.url);
    await sa.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
    await sa.collection('users').delete('attackerrecord1');
  } finally {
    await s.stop();
  }
  s = await start({ dir: d });
  try {
    assert.doesNotMatch(s.stderr(), /held by more than one record/);
    const a = await client(s.url).collection('users').authWithPassword('twin@corp.com', pw);
    assert.equal(a.record.id, first.id);
    const ix = execFileSync('sqlite3', [db, "SELECT sql FROM sqlite_master WHERE name = 'idx_email__pb_users_auth_'"]).toString();
    assert.match(ix, /\(`email` COLLATE NOCASE\) WHERE `email` != ''/);
  } finally {
    await s.stop();
  }
  rmSync(d, { recursive: true, force: true });
});
