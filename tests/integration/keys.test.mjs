// Write keys over HTTP (superusers), and the verified user of a request carrying a user token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { start, tempDir } from './lib/server.mjs';
import { client, createSuperuser, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';

let dir, srv, su, pb;

before(async () => {
  dir = tempDir();
  await createSuperuser(dir);
  srv = await start({ dir, keepDir: true });
  pb = client(srv.url);
  await pb.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  su = pb.authStore.token;
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

const api = (method, path, { token, body } = {}) => fetch(`${srv.url}${path}`, {
  method,
  headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: token } : {}) },
  body: body === undefined ? undefined : JSON.stringify(body),
});
const track = (key, extra = {}, headers = {}) => fetch(`${srv.url}/v1/track`, {
  method: 'POST',
  headers: { Authorization: `Basic ${Buffer.from(`${key}:`).toString('base64')}`, ...headers },
  body: JSON.stringify({ userId: 'u', event: 'E', ...extra }),
});
async function logged(messageId) {
  const r = await api('GET', '/api/log/events?limit=1000', { token: su });
  return (await r.json()).records.map((x) => x.value).find((v) => v.messageId === messageId);
}

test('create, list and revoke write keys through /api/capture/keys', async () => {
  const r = await api('POST', '/api/capture/keys', { token: su, body: { name: 'mobile' } });
  assert.equal(r.status, 200);
  const k = await r.json();
  assert.equal(k.name, 'mobile');
  assert.match(k.key, /^tk_[a-z0-9]{30}$/);
  assert.equal(k.prefix, k.key.slice(0, 7));

  assert.equal((await track(k.key, { messageId: 'key-1' })).status, 200);
  assert.equal((await logged('key-1')).source, 'mobile');

  const list = await (await api('GET', '/api/capture/keys', { token: su })).json();
  const item = list.items.find((x) => x.name === 'mobile');
  assert.equal(item.prefix, k.prefix);
  assert.equal(item.revoked, '');
  assert.equal(JSON.stringify(list).includes(k.key), false); // the key itself is never shown again

  const dup = await api('POST', '/api/capture/keys', { token: su, body: { name: 'mobile' } });
  assert.equal(dup.status, 400);
  assert.equal((await dup.json()).data.name.code, 'validation_not_unique');
  for (const name of ['', 'has space', 'x'.repeat(65), 42]) {
    const bad = await api('POST', '/api/capture/keys', { token: su, body: { name } });
    assert.equal(bad.status, 400, String(name));
  }

  assert.equal((await api('DELETE', '/api/capture/keys/mobile', { token: su })).status, 204);
  assert.equal((await api('DELETE', '/api/capture/keys/mobile', { token: su })).status, 404);
  assert.equal((await track(k.key, { messageId: 'key-2' })).status, 401);
  assert.equal(await logged('key-2'), undefined);
  const after = await (await api('GET', '/api/capture/keys', { token: su })).json();
  assert.notEqual(after.items.find((x) => x.name === 'mobile').revoked, '');
});

test('only superusers manage write keys', async () => {
  const user = await pb.collection('users').create({ email: 'k@example.com', password: 'user-password', passwordConfirm: 'user-password' });
  const u = client(srv.url);
  await u.collection('users').authWithPassword('k@example.com', 'user-password');
  assert.equal((await api('GET', '/api/capture/keys')).status, 401);
  assert.equal((await api('GET', '/api/capture/keys', { token: u.authStore.token })).status, 403);
  assert.equal((await api('POST', '/api/capture/keys', { token: u.authStore.token, body: { name: 'x' } })).status, 403);
  assert.equal((await api('DELETE', '/api/capture/keys/x', { token: 'forged.token.here' })).status, 401);
  assert.ok(user.id);
});

test('a request with a user token records that user as verified; clients cannot claim it', async () => {
  const k = await (await api('POST', '/api/capture/keys', { token: su, body: { name: 'web' } })).json();
  await pb.collection('users').create({ email: 'v@example.com', password: 'user-password', passwordConfirm: 'user-password' });
  const u = client(srv.url);
  const auth = await u.collection('users').authWithPassword('v@example.com', 'user-password');

  // the write key goes in the body so the Authorization header can carry the user's token
  const body = (extra) => JSON.stringify({ writeKey: k.key, userId: 'claimed', event: 'E', ...extra });
  const post = (payload, headers = {}) => fetch(`${srv.url}/v1/track`, { method: 'POST', headers, body: payload });
  assert.equal((await post(body({ messageId: 'ver-1' }), { Authorization: u.authStore.token })).status, 200);
  assert.deepEqual((await logged('ver-1')).context.tandem, { verifiedUserId: auth.record.id });

  // a forged claim in the body is removed; an invalid token verifies nobody
  assert.equal((await post(body({ messageId: 'ver-2', context: { tandem: { verifiedUserId: 'admin' } } }))).status, 200);
  assert.equal((await logged('ver-2')).context.tandem, undefined);
  assert.equal((await post(body({ messageId: 'ver-3' }), { Authorization: `${u.authStore.token}x` })).status, 200);
  assert.equal((await logged('ver-3')).context.tandem, undefined);
});
