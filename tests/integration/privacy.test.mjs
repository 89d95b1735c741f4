// Personal data rules at capture (settings.privacy): drop, hash (keyed, the same value gives
// the same hash across Segment and PostHog events) and truncate, per source or for all, set
// through the `pocketbase` SDK, applied before the event is written: the raw log segments
// never hold the original values. The default rules switch on with one flag.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Analytics } from '@segment/analytics-node';
import { PostHog } from 'posthog-node';
import { run } from './lib/server.mjs';
import { expectStatus, startWithSuperuserAndKey } from './lib/pb.mjs';

let srv, pb, dir, web, backend;

before(async () => {
  ({ srv, pb, dir, key: web } = await startWithSuperuserAndKey({ keepDir: true }));
  const r = await run(['writekey', 'create', 'backend', '--dir', dir]);
  assert.equal(r.code, 0, r.stderr);
  backend = r.stdout.trim();
});
after(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function events() {
  const r = await fetch(`${srv.url}/api/log/events?from=0&limit=1000`, { headers: { Authorization: pb.authStore.token } });
  assert.equal(r.status, 200);
  return (await r.json()).records.map((x) => x.value);
}

// every byte of the events topic as stored on disk
function segments() {
  const d = join(dir, 'log', 'events');
  return Buffer.concat(readdirSync(d).filter((f) => f.endsWith('.seg')).map((f) => readFileSync(join(d, f))));
}

test('bad rules are refused with the field named, and nothing changes', async () => {
  for (const rules of [
    [{ field: 'properties.email', action: 'encrypt' }],
    [{ field: 'email', action: 'hash' }],
    [{ field: 'userId.x', action: 'drop' }],
    [{ field: 'properties.email', action: 'truncate', length: -1 }],
    [{ field: 'properties.email', action: 'hash', sources: ['no such/name'] }],
    [{ action: 'hash' }],
  ]) {
    const e = await expectStatus(pb.settings.update({ privacy: { rules } }), 400);
    assert.equal(e.response.data.privacy.rules.code, 'validation_invalid_value', JSON.stringify(rules));
  }
  const s = await pb.settings.getAll();
  assert.deepEqual(s.privacy, { defaults: false, rules: [] });
});

test('drop, hash and truncate apply to Segment and PostHog events before they are written', async () => {
  await pb.settings.update({
    privacy: {
      rules: [
        { field: 'properties.email', action: 'hash' },
        { field: 'traits.email', action: 'hash' },
        { field: 'properties.card', action: 'drop' },
        { field: 'context.ip', action: 'truncate' },
        { field: 'properties.$ip', action: 'truncate' }, // PostHog keeps $ip in properties too
        { field: 'traits.name', action: 'truncate', length: 3, sources: ['web'] },
        { field: 'context.page.referrer', action: 'drop' },
      ],
    },
  });
  const seg = new Analytics({ writeKey: web, host: srv.url, flushAt: 1, maxRetries: 3 });
  seg.track({
    userId: 'u1', event: 'Paid', messageId: 'pii-1',
    properties: { email: 'pat.unique@example.org', card: '4111-2222-3333-4444', plan: 'pro' },
    context: { ip: '203.0.113.77', page: { referrer: 'https://secret.example/?t=1', path: '/pay' } },
  });
  seg.identify({ userId: 'u1', messageId: 'pii-2', traits: { name: 'Alexandra', email: 'pat.unique@example.org' } });
  await seg.closeAndFlush({ timeout: 20000 });
  // another source: the per-source rule does not apply, the others do
  const r = await fetch(`${srv.url}/v1/identify`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ writeKey: backend, userId: 'u2', messageId: 'pii-3', traits: { name: 'Alexandra' }, context: { ip: '2001:db8:1234:5678::9' } }),
  });
  assert.equal(r.status, 200);
  const ph = new PostHog(backend, { host: srv.url, flushAt: 1, flushInterval: 0 });
  ph.capture({ distinctId: 'u3', event: 'viewed', uuid: '0190f0c4-0000-7000-8000-0000000000aa', properties: { email: 'pat.unique@example.org', $ip: '198.51.100.23' } });
  await ph.shutdown(20000);

  const all = await events();
  const by = (id) => all.find((e) => e.messageId === id);
  const t = by('pii-1');
  assert.match(t.properties.email, /^[0-9a-f]{32}$/);
  assert.equal(t.properties.card, undefined);
  assert.equal(t.properties.plan, 'pro');
  assert.equal(t.context.ip, '203.0.113.0');
  assert.deepEqual(t.context.page, { path: '/pay' });
  const i = by('pii-2');
  assert.equal(i.traits.name, 'Ale');
  // keyed, deterministic: the same email hashes the same in every event and API, so joins work
  assert.equal(i.traits.email, t.properties.email);
  const b = by('pii-3');
  assert.equal(b.traits.name, 'Alexandra');
  assert.equal(b.context.ip, '2001:db8:1234::');
  const p = by('0190f0c4-0000-7000-8000-0000000000aa');
  assert.equal(p.properties.email, t.properties.email);
  assert.equal(p.context.ip, '198.51.100.0');
  assert.equal(p.properties.$ip, '198.51.100.0');

  // nothing of the originals reached the disk
  const raw = segments();
  for (const secret of ['pat.unique@example.org', '4111-2222-3333-4444', '203.0.113.77', '198.51.100.23', 'secret.example'])
    assert.equal(raw.indexOf(secret), -1, secret);
  assert.notEqual(raw.indexOf('Alexandra'), -1); // the other source's, kept
});

test('the default rules switch on with one flag, and off again', async () => {
  await pb.settings.update({ privacy: { defaults: true, rules: [] } });
  const r = await fetch(`${srv.url}/v1/identify`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ writeKey: web, userId: 'u4', messageId: 'pii-4', traits: { email: 'quinn.unique@example.org' }, context: { ip: '192.0.2.201' } }),
  });
  assert.equal(r.status, 200);
  const ph = new PostHog(backend, { host: srv.url, flushAt: 1, flushInterval: 0 });
  ph.capture({ distinctId: 'u5', event: 'x', uuid: '0190f0c4-0000-7000-8000-0000000000bb', properties: { $ip: '192.0.2.202', $set: { email: 'rory.unique@example.org' } } });
  await ph.shutdown(20000);
  const all = await events();
  const e = all.find((x) => x.messageId === 'pii-4');
  assert.match(e.traits.email, /^[0-9a-f]{32}$/);
  assert.equal(e.context.ip, '192.0.2.0');
  const p = all.find((x) => x.messageId === '0190f0c4-0000-7000-8000-0000000000bb');
  assert.equal(p.context.ip, '192.0.2.0');
  assert.match(p.properties.$set.email, /^[0-9a-f]{32}$/);
  for (const secret of ['quinn.unique@example.org', 'rory.unique@example.org', '192.0.2.201', '192.0.2.202'])
    assert.equal(segments().indexOf(secret), -1, secret);
  // off again: values pass through unchanged
  await pb.settings.update({ privacy: { defaults: false } });
  const r2 = await fetch(`${srv.url}/v1/track`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ writeKey: web, userId: 'u4', event: 'x', messageId: 'pii-5', properties: { email: 'kept@example.org' } }),
  });
  assert.equal(r2.status, 200);
  assert.equal((await events()).find((x) => x.messageId === 'pii-5').properties.email, 'kept@example.org');
});
