// /api/settings through the real `pocketbase` SDK (pb.settings): superusers only, PocketBase's
// defaults and validation errors, the SMTP password never returned, settings kept across a
// restart, rate limits and trusted proxy headers applied at once, and --ratelimit winning
// over the stored rate limits.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { start } from './lib/server.mjs';
import { client, expectStatus, startWithSuperuser, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';

let srv, su, dir;

before(async () => {
  ({ srv, pb: su, dir } = await startWithSuperuser({ keepDir: true }));
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function restart(args = []) {
  await srv.stop();
  srv = await start({ dir, keepDir: true, args });
  su = client(srv.url);
  await su.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
}

async function create(headers = {}) {
  const r = await fetch(`${srv.url}/api/collections/notes/records`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ t: 'x' }),
  });
  await r.text();
  return r.status;
}

test('only superusers read or change the settings', async () => {
  const guest = client(srv.url);
  await expectStatus(guest.settings.getAll(), 401);
  await su.collection('users').create({ email: 'u@example.com', password: 'passw0rd-123', passwordConfirm: 'passw0rd-123' });
  const user = client(srv.url);
  await user.collection('users').authWithPassword('u@example.com', 'passw0rd-123');
  await expectStatus(user.settings.getAll(), 403);
  await expectStatus(user.settings.update({ meta: { appName: 'Mine' } }), 403);
});

test('defaults are PocketBase\'s, and the SMTP password is never returned', async () => {
  const s = await su.settings.getAll();
  assert.equal(s.meta.appName, 'Acme');
  assert.equal(s.meta.senderAddress, 'support@example.com');
  assert.deepEqual(s.batch, { enabled: false, maxRequests: 50, timeout: 3, maxBodySize: 0 });
  assert.equal(s.rateLimits.enabled, false);
  assert.deepEqual(s.rateLimits.rules.map((r) => r.label), ['*:auth', '*:create', '/api/batch', '/api/']);
  assert.deepEqual(s.trustedProxy, { headers: [], useLeftmostIP: false });
  assert.equal(s.smtp.port, 587);
  assert.ok(!('password' in s.smtp));

  const up = await su.settings.update({ meta: { appName: 'Tandem Shop' }, smtp: { host: 'mail.example.com', password: 's3cret', username: 'me' }, unknown: { x: 1 } });
  assert.equal(up.meta.appName, 'Tandem Shop');
  assert.equal(up.meta.appURL, 'http://localhost:8090'); // other keys of the section kept
  assert.equal(up.smtp.username, 'me');
  assert.ok(!('password' in up.smtp));
  assert.ok(!('unknown' in up));
  // a later change to the section keeps the stored password
  await su.settings.update({ smtp: { port: 2525 } });
  const stored = JSON.parse(execFileSync('sqlite3', [join(dir, 'app.db'), "SELECT value FROM _params WHERE id = 'settings'"]).toString());
  assert.equal(stored.smtp.password, 's3cret');
  assert.equal(stored.smtp.port, 2525);
});

test('invalid settings are refused with PocketBase\'s error shape, and nothing changes', async () => {
  let e = await expectStatus(su.settings.update({ meta: { appURL: 'not a url', senderAddress: 'nope', appName: '' } }), 400);
  assert.equal(e.response.message, 'An error occurred while submitting the form.');
  assert.equal(e.response.data.meta.appURL.code, 'validation_is_url');
  assert.equal(e.response.data.meta.senderAddress.code, 'validation_is_email');
  assert.equal(e.response.data.meta.appName.code, 'validation_required');
  e = await expectStatus(su.settings.update({ smtp: { enabled: true, host: '' } }), 400);
  assert.equal(e.response.data.smtp.host.code, 'validation_required');
  e = await expectStatus(su.settings.update({ batch: { enabled: true, maxRequests: 0 } }), 400);
  assert.equal(e.response.data.batch.maxRequests.code, 'validation_required');
  e = await expectStatus(su.settings.update({ rateLimits: { rules: [{ label: 'users:list', maxRequests: 1, duration: 1 }, { label: '*:auth', maxRequests: 0, duration: 1 }] } }), 400);
  assert.equal(e.response.data.rateLimits.rules['0'].label.code, 'validation_invalid_rate_limit_label');
  assert.equal(e.response.data.rateLimits.rules['1'].maxRequests.code, 'validation_min_greater_equal_than_required');
  e = await expectStatus(su.settings.update({ trustedProxy: { headers: ['Bad Header'] } }), 400);
  assert.equal(e.response.data.trustedProxy.headers.code, 'validation_invalid_value');
  e = await expectStatus(su.settings.update({ meta: { appName: 42 } }), 400); // wrong type
  assert.equal(e.response.status, 400);
  e = await expectStatus(su.send('/api/settings', { method: 'PATCH', body: '[1,2]', headers: { 'Content-Type': 'application/json' } }), 400);
  assert.equal((await su.settings.getAll()).meta.appName, 'Tandem Shop');
});

test('settings survive a restart', async () => {
  await restart();
  const s = await su.settings.getAll();
  assert.equal(s.meta.appName, 'Tandem Shop');
  assert.equal(s.smtp.port, 2525);
});

test('rate limits and trusted proxy headers from the settings apply at once', async () => {
  await su.collections.create({ name: 'notes', fields: [{ name: 't', type: 'text' }], createRule: '' });
  assert.equal(await create(), 200);
  assert.equal(await create(), 200);
  await su.settings.update({ rateLimits: { enabled: true, rules: [{ label: '*:create', maxRequests: 2, duration: 3600 }] } });
  assert.equal(await create(), 200);
  assert.equal(await create(), 200);
  assert.equal(await create(), 429);
  // behind a trusted proxy, each forwarded client has its own window
  await su.settings.update({ trustedProxy: { headers: ['X-Real-IP'] } });
  assert.equal(await create({ 'X-Real-IP': '203.0.113.7' }), 200);
  assert.equal(await create({ 'X-Real-IP': '203.0.113.7' }), 200);
  assert.equal(await create({ 'X-Real-IP': '203.0.113.7' }), 429);
  assert.equal(await create({ 'X-Real-IP': '203.0.113.8' }), 200);
  assert.equal(await create({ 'X-Real-IP': 'not-an-ip' }), 429); // falls back to the socket's address
  await su.settings.update({ rateLimits: { enabled: false } });
  assert.equal(await create(), 200);
});

test('--ratelimit on the command line wins over settings.rateLimits', async () => {
  await su.settings.update({ rateLimits: { enabled: true, rules: [{ label: '*:create', maxRequests: 1, duration: 3600 }] } });
  await restart(['--ratelimit', 'off']);
  for (let i = 0; i < 3; i++) assert.equal(await create(), 200);
  assert.match(srv.stderr(), /--ratelimit overrides settings\.rateLimits/);
  await restart();
  assert.equal(await create(), 200);
  assert.equal(await create(), 429);
});
