// SQL models under SIGKILL (docs/models.md "Crashes"): a server killed during a model's run
// comes back with either the previous or the new published version, never a mix, and with
// what an incremental model was built from matching its rows; a server killed during a sync
// leaves whole batches only. In both cases the next run gives exactly what an uninterrupted
// run gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prng, seedFromEnv, sleep, basic, writeKey, Restartable } from './lib.mjs';
import { tempDir } from '../integration/lib/server.mjs';
import { client, createSuperuser, SU_EMAIL, SU_PASSWORD } from '../integration/lib/pb.mjs';
import { api, sql, waitLoaded, runModel } from '../integration/lib/models.mjs';

async function up(server) {
  await server.start();
  const pb = client(server.url);
  await pb.collection('_superusers').authWithPassword(SU_EMAIL, SU_PASSWORD);
  return { pb, a: { url: server.url, token: pb.authStore.token } };
}

// capture in batches of 500 (well under the batch size limit)
async function capture(url, key, events) {
  for (let i = 0; i < events.length; i += 500) {
    const res = await fetch(`${url}/v1/batch`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: basic(key) }, body: JSON.stringify({ batch: events.slice(i, i + 500) }) });
    assert.equal(res.status, 200, await res.text());
  }
}

async function requestRun(a, name, body = {}) {
  const r = await api(a, 'POST', `/api/models/${name}/run`, body);
  assert.equal(r.status, 202, r.text);
  return r.json.id;
}

const digest = (a, table) => sql(a, `SELECT count(*)::BIGINT, coalesce(sum(n), 0)::BIGINT, coalesce(sum(hash(k)), 0)::HUGEINT::VARCHAR FROM ${table}`).then((r) => r.rows[0]);

test('kill -9 during runs: previous or new version, and the next run equals an uninterrupted one', async () => {
  const rand = prng(seedFromEnv('models_kill runs'));
  const dir = tempDir('tandem-models-kill-');
  await createSuperuser(dir);
  const key = await writeKey(dir, 'web');
  const server = new Restartable(dir);
  let { a } = await up(server);
  // events: 40 users, through the capture API
  const batch = [];
  for (let i = 0; i < 4000; i++) batch.push({ type: 'track', userId: `ku${i % 40}`, event: `e${i % 3}`, messageId: `k-${i}`, timestamp: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString() });
  await capture(a.url, key, batch);
  await waitLoaded(a, 'SELECT count(*) FROM events', 4000);

  // a slow incremental model (each event multiplied by a range) and its full twin
  const body = `SELECT user_id AS k, count(*)::BIGINT AS n FROM events, range(3000) GROUP BY user_id`;
  let r = await api(a, 'POST', '/api/models', { name: 'kinc', sql: body, materialized: 'incremental', uniqueKey: 'k' });
  assert.equal(r.status, 200, r.text);
  r = await api(a, 'POST', '/api/models', { name: 'kfull', sql: body.replace('range(3000)', 'range(1)'), materialized: 'table' });
  assert.equal(r.status, 200, r.text);
  assert.equal((await runModel(a, 'kinc')).status, 'success');

  for (let round = 0; round < 3; round++) {
    // new events, then a run killed at a random moment
    const more = [];
    for (let i = 0; i < 500; i++) more.push({ type: 'track', userId: `ku${(i * 3 + round) % 45}`, event: 'late', messageId: `k-${round}-${i}`, timestamp: '2025-01-01T00:00:00Z' });
    await capture(a.url, key, more);
    const total = 4000 + 500 * (round + 1);
    await waitLoaded(a, 'SELECT count(*) FROM events', total);
    const before = await digest(a, 'kinc');
    await requestRun(a, 'kinc');
    await sleep(rand.int(20, 1500));
    await server.kill();
    ({ a } = await up(server));
    const after = await digest(a, 'kinc');
    // the new version is either not there at all or whole: n sums to 3000 per event
    assert.ok(JSON.stringify(after) === JSON.stringify(before) || Number(after[1]) === total * 3000,
      `round ${round}: a mix of versions: ${before} -> ${after}`);
    // the next (uninterrupted) run equals a full rebuild
    assert.equal((await runModel(a, 'kinc')).status, 'success');
    assert.equal((await runModel(a, 'kfull')).status, 'success');
    const diff = await sql(a, 'SELECT count(*) FROM ((SELECT k, n FROM kinc EXCEPT SELECT k, n * 3000 FROM kfull) UNION ALL (SELECT k, n * 3000 FROM kfull EXCEPT SELECT k, n FROM kinc))');
    assert.equal(diff.rows[0][0], 0, `round ${round}: the incremental model differs from a full rebuild`);
  }
  await server.stop();
});

test('kill -9 during a sync: whole batches only; the next run finishes the job', async () => {
  const rand = prng(seedFromEnv('models_kill sync'));
  const dir = tempDir('tandem-models-kill-');
  await createSuperuser(dir);
  const server = new Restartable(dir);
  let { pb, a } = await up(server);
  await pb.collections.create({ name: 'synced', type: 'base', fields: [{ name: 'k', type: 'text' }, { name: 'n', type: 'number' }] });
  const N = 20000;
  const r = await api(a, 'POST', '/api/models', {
    name: 'ksync', sql: `SELECT 'key' || i AS k, i * 2 AS n FROM range(${N}) t(i)`, materialized: 'table',
    sync: { collection: 'synced', key: 'k', delete: true },
  });
  assert.equal(r.status, 200, r.text);
  for (let round = 0; round < 2; round++) {
    await requestRun(a, 'ksync', round ? { fullRefresh: true } : {});
    await sleep(rand.int(100, 2500));
    await server.kill();
    ({ pb, a } = await up(server));
    const count = (await pb.collection('synced').getList(1, 1)).totalItems;
    if (round === 0) assert.equal(count % 500, 0, `a half-applied batch is visible: ${count} records`);
    const run = await runModel(a, 'ksync');
    assert.equal(run.status, 'success', JSON.stringify(run));
    const all = await pb.collection('synced').getFullList({ batch: 1000 });
    assert.equal(all.length, N);
    assert.equal(new Set(all.map((x) => x.k)).size, N);
    assert.ok(all.every((x) => x.n === Number(x.k.slice(3)) * 2));
    // and the sync did not write anything twice: created + unchanged covers every row once
    assert.equal(run.sync.created + run.sync.updated + run.sync.unchanged, N);
  }
  await server.stop();
});
