// Switching a data directory from the local log to Kafka (`tandem log migrate --to kafka`,
// docs/scale-out.md "Switching"). On the local log: events captured and records written, some
// of them loaded into the warehouse and some not (the server is killed with SIGKILL right
// after its last acknowledgement, and the warehouse is read offline to see that the loader
// was behind), and the last record change is put back into the outbox as if the relay had
// crashed before deleting it. The migration refuses while a server runs; it is killed with SIGKILL after its
// first step and run again, then once more (nothing left to do). Then the server runs on the
// mock cluster, more events are captured and records written, and at the end the warehouse
// holds every acknowledged messageId exactly once and every record change exactly once.
// Another directory cannot then migrate onto the same topics: they hold events it never
// copied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, run, start, tempDir } from '../integration/lib/server.mjs';
import { createSuperuser } from '../integration/lib/pb.mjs';
import { startKafkaMock, kafkaArgs } from '../integration/lib/kafka.mjs';
import { Restartable, basic, dumpTopic, request, writeKey } from './lib.mjs';
import { checkExactlyOnce, drained, signIn, sql } from './kafka_lib.mjs';

const BATCHES = 12;
const PER_BATCH = 40;

// Sends `batches` batches of events (ids `${tag}-b-e`) concurrently; each is retried until 200.
async function capture(url, key, tag, batches, sent, acked) {
  await Promise.all(Array.from({ length: batches }, async (_, b) => {
    const batch = Array.from({ length: PER_BATCH }, (_, i) => ({ type: 'track', event: 'Migrate', userId: `u${(b * 7 + i) % 11}`, messageId: `${tag}-${b}-${i}` }));
    batch.forEach((e) => sent.add(e.messageId));
    for (;;) {
      const r = await request(`${url}/v1/batch`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: basic(key) }, body: JSON.stringify({ batch }) });
      if (r.status === 200) break;
      assert.ok(r.error || r.status === 503, `unexpected answer ${r.status} ${r.body}`);
    }
    batch.forEach((e) => acked.add(e.messageId));
  }));
}

async function createItems(url, token, tag, n) {
  for (let i = 0; i < n; i++) {
    const r = await request(`${url}/api/collections/items/records`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: token }, body: JSON.stringify({ title: `${tag}-${i}` }) });
    assert.equal(r.status, 200, r.body);
  }
}

const migrateArgs = (dir, mock) => ['log', 'migrate', '--to', 'kafka', '--dir', dir, '--kafka-brokers', mock.bootstrap];

// The migration, killed with SIGKILL as soon as it printed its first line.
function migrateKilled(dir, mock) {
  return new Promise((resolve) => {
    const proc = spawn(BIN, migrateArgs(dir, mock), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => { out += d; if (proc.exitCode === null) proc.kill('SIGKILL'); });
    proc.on('exit', (code, signal) => resolve({ code, signal, out }));
  });
}

async function loadedOffline(dir) {
  const r = await run(['query', 'SELECT count(*) AS n FROM events', '--dir', dir, '--format', 'json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  return Number(Array.isArray(j) ? j[0].n : j.rows[0][0]);
}

test('log migrate --to kafka: nothing lost, nothing loaded twice, resumable after SIGKILL', { timeout: 300000 }, async () => {
  const mock = await startKafkaMock({ brokers: 3, partitions: 4 });
  const dir = tempDir('tandem-crash-migrate-');
  const other = tempDir('tandem-crash-migrate-other-');
  console.log(`kafka_migrate: data in ${dir} (removed only when the test passes)`);
  let server = null;
  try {
    const key = await writeKey(dir, 'crash');
    await createSuperuser(dir);
    const sent = new Set(), acked = new Set();

    // 1. the local log: some loaded, some not
    let srv = await start({ dir, keepDir: true });
    let token = await signIn(srv.url);
    const col = await request(`${srv.url}/api/collections`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: token }, body: JSON.stringify({ name: 'items', type: 'base', fields: [{ name: 'title', type: 'text' }] }) });
    assert.equal(col.status, 200, col.body);
    await createItems(srv.url, token, 'local', 20);
    await capture(srv.url, key, 'a', BATCHES, sent, acked);
    const busy = await run(migrateArgs(dir, mock));
    assert.equal(busy.code, 2, 'the migration must refuse while a server runs');
    assert.match(busy.stderr, /a server is running/);
    // loaded: wait for the first part, then a burst and SIGKILL right after its last 200
    for (let i = 0; i < 600; i++) {
      const n = (await sql(srv.url, token, 'SELECT count(*) FROM events'))[0][0];
      if (Number(n) === acked.size) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    let loaded = 0;
    for (let attempt = 0; ; attempt++) {
      await capture(srv.url, key, `b${attempt}`, BATCHES, sent, acked);
      const r = await srv.stop('SIGKILL');
      assert.equal(r.signal, 'SIGKILL');
      loaded = await loadedOffline(dir);
      if (loaded < acked.size || attempt === 4) break;
      srv = await start({ dir, keepDir: true });
    }
    console.log(`kafka_migrate: ${acked.size} events acknowledged on the local log, ${loaded} of them loaded before the switch`);
    assert.ok(loaded > 0 && loaded < acked.size, 'the switch must find events loaded and events not loaded yet');
    // the relay's crash window: the last change is in the local log but its outbox row was not
    // deleted yet (put back here). On Kafka the relay would publish it again, unless the
    // migration removes it.
    const changes = await dumpTopic(dir, 'changes');
    const last = changes[changes.length - 1].value;
    assert.equal(last.collection, 'items');
    const q = (v) => `'${String(v).replaceAll("'", "''")}'`;
    execFileSync('sqlite3', ['-cmd', '.timeout 5000', join(dir, 'app.db'),
      `INSERT OR IGNORE INTO _outbox (id, collection_id, collection, record_id, action, record, created) VALUES (${last.id}, ${q(last.collectionId)}, ${q(last.collection)}, ${q(last.recordId)}, ${q(last.action)}, ${q(JSON.stringify(last.record))}, ${q(last.changedAt)});`]);

    // 2. the migration, killed after its first step, then run to the end, then again
    const killed = await migrateKilled(dir, mock);
    assert.equal(killed.signal, 'SIGKILL', `the migration ended before the kill: ${killed.out}`);
    const m1 = await run(migrateArgs(dir, mock));
    assert.equal(m1.code, 0, m1.stdout + m1.stderr);
    assert.match(m1.stdout, /switched/);
    const m2 = await run(migrateArgs(dir, mock));
    assert.equal(m2.code, 0, m2.stdout + m2.stderr);
    assert.match(m2.stdout, /already switched/);

    // 3. on Kafka
    server = new Restartable(dir, kafkaArgs(mock));
    await server.start();
    token = await signIn(server.url);
    await capture(server.url, key, 'k', BATCHES, sent, acked);
    await createItems(server.url, token, 'kafka', 10);
    // a SIGKILL on Kafka as well, then more
    await server.kill();
    await server.start();
    token = await signIn(server.url);
    await capture(server.url, key, 'k2', BATCHES / 2, sent, acked);
    await drained(server.url, token);
    const n = await checkExactlyOnce(server.url, token, acked, sent);
    assert.equal(n, acked.size);
    const [[rows, ids]] = await sql(server.url, token, 'SELECT count(*), count(DISTINCT id) FROM events');
    assert.equal(Number(rows), acked.size, 'events holds every acknowledged event once');
    assert.equal(Number(ids), acked.size);
    const ch = await sql(server.url, token, "SELECT count(*), count(DISTINCT id) FROM changes WHERE collection = 'items'");
    assert.deepEqual(ch[0].map(Number), [30, 30], 'every record change once');
    const items = await sql(server.url, token, 'SELECT count(*) FROM app_items');
    assert.equal(Number(items[0][0]), 30);
    console.log(`kafka_migrate: ${n} events in the warehouse, every one once`);

    // 4. another directory cannot switch onto topics that hold this one's events
    const o = await start({ dir: other, keepDir: true });
    await o.stop();
    const refused = await run(migrateArgs(other, mock));
    assert.equal(refused.code, 1, refused.stdout + refused.stderr);
    assert.match(refused.stdout, /never copied/);
    await server.stop();
    server = null;
    rmSync(dir, { recursive: true, force: true });
  } finally {
    if (server?.srv) await server.srv.stop('SIGKILL');
    rmSync(other, { recursive: true, force: true });
    await mock.stop();
  }
});
