// Write keys replicated to capture nodes through the key topic (docs/scale-out.md, "Write
// keys"), on librdkafka's mock cluster: a primary and capture nodes whose own stores hold no
// key at all. A key made on the primary is taken by every capture node, a revoked one is
// refused by every node, a node started after the revocation never takes it, a restarted node
// reads the set back, and a node that has not read the topic answers 503 + Retry-After.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { run, tempDir } from './lib/server.mjs';
import { createSuperuser, SU_EMAIL, SU_PASSWORD } from './lib/pb.mjs';
import { startKafkaMock, kafkaArgs } from './lib/kafka.mjs';
import { Restartable, sleep } from '../crash/lib.mjs';

const basic = (key) => 'Basic ' + Buffer.from(`${key}:`).toString('base64');
let seq = 0;

// One Segment track call; returns {status, retryAfter}.
async function track(url, key) {
  const r = await fetch(`${url}/v1/track`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: basic(key) },
    body: JSON.stringify({ userId: 'u1', event: 'Key Test', messageId: `kk-${process.pid}-${++seq}` }),
  });
  await r.text();
  return { status: r.status, retryAfter: r.headers.get('retry-after') };
}

// Polls until track() answers want; every answer is kept in seen. A generous bound (60 s):
// the test is about the outcome, not the time it takes.
async function until(url, key, want, seen = []) {
  for (let i = 0; i < 600; i++) {
    const a = await track(url, key);
    seen.push(a.status);
    if (a.status === want) return seen;
    await sleep(100);
  }
  assert.fail(`${url} never answered ${want} for the key: ${[...new Set(seen)].join(',')}`);
}

async function signIn(url) {
  const r = await fetch(`${url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ identity: SU_EMAIL, password: SU_PASSWORD }),
  });
  assert.equal(r.status, 200);
  return (await r.json()).token;
}

async function keyApi(url, token, method, path, body) {
  const r = await fetch(`${url}/api/capture/keys${path}`, {
    method, headers: { Authorization: token, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

test('kafka: write keys made and revoked on the primary reach every capture node', { timeout: 300000 }, async () => {
  const mock = await startKafkaMock({ brokers: 3, partitions: 4 });
  const root = tempDir('tandem-kafka-keys-');
  const nodes = [];
  try {
    const pdir = `${root}/primary`;
    await createSuperuser(pdir);
    // a key made before the primary ever ran: published with the full set at its start
    const early = await run(['writekey', 'create', 'early', '--dir', pdir]);
    assert.equal(early.code, 0, early.stderr);
    const earlyKey = early.stdout.trim();
    const primary = new Restartable(pdir, kafkaArgs(mock, ['--role', 'primary']));
    nodes.push(primary);
    await primary.start();
    const token = await signIn(primary.url);
    // the capture nodes' stores hold no key: whatever they take came from the topic
    const capture = (i) => new Restartable(`${root}/capture${i}`, kafkaArgs(mock, ['--role', 'capture']));
    const c1 = capture(1), c2 = capture(2);
    nodes.push(c1, c2);
    await c1.start();
    await c2.start();
    for (const c of [c1, c2]) await until(c.url, earlyKey, 200);

    // made on the primary: taken by both capture nodes
    const made = await keyApi(primary.url, token, 'POST', '', { name: 'web' });
    assert.equal(made.status, 200);
    const key = made.body.key;
    for (const c of [c1, c2]) await until(c.url, key, 200);
    const gauges = await (await fetch(`${c1.url}/metrics`)).text();
    assert.match(gauges, /^tandem_capture_keys_ready 1$/m);
    assert.match(gauges, /^tandem_capture_keys 2$/m);
    // the API never shows the hash the topic carries
    const listed = await keyApi(primary.url, token, 'GET', '');
    assert.equal(listed.status, 200);
    assert.ok(listed.body.items.every((k) => !('hash' in k)));
    // an unknown key is refused as on a single node
    for (const c of [c1, c2]) assert.equal((await track(c.url, 'tk_' + 'x'.repeat(30))).status, 401);

    // revoked on the primary: refused by both (as a bad key is: 401)
    const revokedAt = Date.now();
    assert.equal((await keyApi(primary.url, token, 'DELETE', '/web')).status, 204);
    for (const c of [c1, c2]) {
      const seen = await until(c.url, key, 401);
      // a figure, not a threshold: how long the revocation took to reach the node
      console.log(`kafka_keys: revocation refused by ${c.dir.split('/').pop()} after ${Date.now() - revokedAt} ms (load average ${loadavg()[0].toFixed(1)})`);
      assert.ok(seen.every((s) => s === 200 || s === 401), `unexpected answers: ${seen}`);
      assert.equal((await track(c.url, key)).status, 401); // and it stays refused
    }
    assert.equal((await track(c1.url, earlyKey)).status, 200); // the other keys stay valid

    // a node started after the revocation never takes the key: 503 until it has read the
    // topic to its end, then 401
    const c3 = capture(3);
    nodes.push(c3);
    await c3.start();
    const seen3 = [];
    let a;
    for (let i = 0; i < 600; i++) {
      a = await track(c3.url, key);
      seen3.push(a.status);
      if (a.status === 503) assert.ok(a.retryAfter, '503 without Retry-After');
      if (a.status !== 503) break;
      await sleep(100);
    }
    assert.ok(seen3.every((s) => s === 503 || s === 401), `a revoked key was answered ${seen3}`);
    assert.equal(a.status, 401);
    await until(c3.url, earlyKey, 200);
    assert.equal((await track(c3.url, key)).status, 401);

    // a restarted node reads the set back, with what changed while it was down
    await c1.stop();
    const later = await keyApi(primary.url, token, 'POST', '', { name: 'later' });
    assert.equal(later.status, 200);
    await c1.start();
    await until(c1.url, later.body.key, 200);
    await until(c1.url, earlyKey, 200);
    assert.equal((await track(c1.url, key)).status, 401);

    // a key made with the CLI while the primary is stopped reaches the nodes when it starts
    await primary.stop();
    const offline = await run(['writekey', 'create', 'offline', '--dir', pdir]);
    assert.equal(offline.code, 0, offline.stderr);
    await primary.start();
    for (const c of [c1, c2, c3]) await until(c.url, offline.stdout.trim(), 200);
    for (const c of [c1, c2, c3]) assert.equal((await track(c.url, key)).status, 401);

    for (const nd of nodes) await nd.stop();
    // `tandem log check` shows the key topic beside the mirrored ones
    const check = await run(['log', 'check', '--dir', pdir, ...kafkaArgs(mock)]);
    assert.match(check.stdout, /^tandem-keys: 4 partitions \(compacted, read by capture nodes\)$/m, check.stdout + check.stderr);
    rmSync(root, { recursive: true, force: true });
  } finally {
    for (const nd of nodes) if (nd.srv) await nd.srv.stop('SIGKILL');
    await mock.stop();
  }
});

test('kafka: a capture node that has not read the key topic answers 503 + Retry-After, never 401', { timeout: 120000 }, async () => {
  const mock = await startKafkaMock({ brokers: 1, partitions: 1 });
  const dir = tempDir('tandem-kafka-keys-');
  // its own store has a key, which must not count: only the topic does on a capture node
  const made = await run(['writekey', 'create', 'local', '--dir', dir]);
  assert.equal(made.code, 0, made.stderr);
  const key = made.stdout.trim();
  await createSuperuser(dir);
  const node = new Restartable(dir, kafkaArgs(mock, ['--role', 'capture']));
  try {
    await mock.cmd('down 1'); // the only broker: the key topic cannot be read
    await node.start();
    assert.match(await (await fetch(`${node.url}/metrics`)).text(), /^tandem_capture_keys_ready 0$/m);
    for (let i = 0; i < 10; i++) {
      const a = await track(node.url, key);
      assert.equal(a.status, 503);
      assert.ok(a.retryAfter, '503 without Retry-After');
      await sleep(200);
    }
    // once the topic (empty: no primary published to it) is read, the key is unknown
    await mock.cmd('up 1');
    const seen = await until(node.url, key, 401);
    assert.ok(seen.every((s) => s === 503 || s === 401), `unexpected answers: ${seen}`);
    // keys are managed on the primary: a capture node's own key routes say so
    const token = await signIn(node.url);
    for (const [method, path, body] of [['GET', ''], ['POST', '', { name: 'x' }], ['DELETE', '/local']]) {
      const r = await keyApi(node.url, token, method, path, body);
      assert.equal(r.status, 400, `${method} ${r.status}`);
      assert.match(r.body.message, /primary/);
    }
    await node.stop();
  } finally {
    if (node.srv) await node.srv.stop('SIGKILL');
    await mock.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('kafka: a primary restored from a backup taken before a revocation keeps the key revoked', { timeout: 180000 }, async () => {
  const mock = await startKafkaMock({ brokers: 1, partitions: 2 });
  const root = tempDir('tandem-kafka-keys-');
  const nodes = [];
  try {
    const pdir = `${root}/primary`, old = `${root}/restored`;
    await createSuperuser(pdir);
    const made = await run(['writekey', 'create', 'web', '--dir', pdir]);
    assert.equal(made.code, 0, made.stderr);
    const key = made.stdout.trim();
    cpSync(pdir, old, { recursive: true }); // the "backup": the key is live in it
    const primary = new Restartable(pdir, kafkaArgs(mock, ['--role', 'primary']));
    nodes.push(primary);
    await primary.start();
    const capture = new Restartable(`${root}/capture`, kafkaArgs(mock, ['--role', 'capture']));
    nodes.push(capture);
    await capture.start();
    await until(capture.url, key, 200);
    assert.equal((await keyApi(primary.url, await signIn(primary.url), 'DELETE', '/web')).status, 204);
    await until(capture.url, key, 401);
    await primary.stop();

    // the primary comes back on the old store, where the key is live
    const restored = new Restartable(old, kafkaArgs(mock, ['--role', 'primary']));
    nodes.push(restored);
    await restored.start();
    assert.equal((await track(restored.url, key)).status, 401); // revoked in its store again
    const list = await keyApi(restored.url, await signIn(restored.url), 'GET', '');
    assert.ok(list.body.items.find((k) => k.name === 'web').revoked, 'the restored key is live');
    assert.equal((await track(capture.url, key)).status, 401);
    const fresh = new Restartable(`${root}/capture2`, kafkaArgs(mock, ['--role', 'capture']));
    nodes.push(fresh);
    await fresh.start();
    const seen = await until(fresh.url, key, 401);
    assert.ok(seen.every((s) => s === 503 || s === 401), `a revoked key was answered ${seen}`);
    for (const nd of nodes) await nd.stop();
    rmSync(root, { recursive: true, force: true });
  } finally {
    for (const nd of nodes) if (nd.srv) await nd.srv.stop('SIGKILL');
    await mock.stop();
  }
});
