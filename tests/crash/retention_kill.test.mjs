// Warehouse retention under SIGKILL: a warehouse holds old events (40..400 days) and recent
// ones; a capture client keeps sending recent events (own messageIds, retried until answered
// 200) while the retention job is started through /api/crons and the server is killed at a
// random moment of the run, then restarted on the same directory. After each restart:
//   - no event is in `events` twice (by messageId and by log offset),
//   - every recent event loaded before is still there (no recent row lost),
//   - the old events only ever decrease.
// At the end the job runs once more without a kill and finishes: no old event is left, every
// acknowledged recent event is there exactly once, and `tandem log check` finds nothing wrong.
// The test also counts the kills that left a run half done (reported; the invariants are
// asserted whatever the moment was).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { tempDir } from '../integration/lib/server.mjs';
import { SU_EMAIL, SU_PASSWORD, createSuperuser } from '../integration/lib/pb.mjs';
import { Restartable, basic, logCheck, prng, request, seedFromEnv, sleep, writeKey } from './lib.mjs';

const JOB = '__tandemWarehouseRetention__';
const DAY = 86400000;
const OLD = 12000;
const RECENT = 6000;
const KILLS = 6;

test('warehouse retention: a kill -9 during a run leaves a consistent warehouse and the next run finishes', { timeout: 240000 }, async () => {
  const seed = seedFromEnv('retention_kill');
  const rand = prng(seed);
  const dir = tempDir('tandem-crash-retention-');
  console.log(`retention_kill: data in ${dir} (removed only when the test passes)`);
  const key = await writeKey(dir, 'crash');
  await createSuperuser(dir);
  const server = new Restartable(dir, ['--sql-max-rows', '1000000']);
  await server.start();
  const signIn = await request(`${server.url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ identity: SU_EMAIL, password: SU_PASSWORD }),
  });
  assert.equal(signIn.status, 200, signIn.body);
  const su = { 'Content-Type': 'application/json', Authorization: JSON.parse(signIn.body).token };

  async function sql(query) {
    for (;;) {
      const url = await server.waitUrl();
      const res = await request(`${url}/api/warehouse/sql`, { method: 'POST', headers: su, body: JSON.stringify({ query }) }, 30000);
      if (res.status === 200) return JSON.parse(res.body).rows;
      assert.ok(res.error || res.status === 503, `${query}: ${res.status} ${res.body}`);
      await sleep(50);
    }
  }
  async function send(batch) {
    const body = JSON.stringify({ batch });
    for (;;) {
      const url = await server.waitUrl();
      const res = await request(`${url}/v1/batch`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: basic(key) }, body });
      if (res.status === 200) return;
      assert.ok(res.error || res.status === 503, `capture: ${res.status} ${res.body}`);
      await sleep(10);
    }
  }
  async function caughtUp() {
    for (const t0 = Date.now(); ; await sleep(50)) {
      const url = await server.waitUrl();
      const res = await request(`${url}/api/pipeline`, { headers: su });
      if (res.status === 200) {
        const ev = JSON.parse(res.body).consumers.find((c) => c.consumer === 'warehouse-events');
        if (ev.ready && ev.lagRecords === 0 && ev.lastError === null) return;
      }
      assert.ok(Date.now() - t0 < 30000, `no catch-up: ${res.body}`);
    }
  }

  // windows of 100 offsets: a run takes many transactions
  const p = await request(`${server.url}/api/settings`, { method: 'PATCH', headers: su, body: JSON.stringify({ warehouse: { retentionDays: 30, retentionBatch: 100 } }) });
  assert.equal(p.status, 200, p.body);
  const now = Date.now();
  const ev = (id, age) => ({ type: 'track', event: 'Kept', messageId: id, userId: `u${id.length % 7}`, timestamp: new Date(now - age * DAY).toISOString() });
  const all = [];
  for (let i = 0; i < OLD; i++) all.push(ev(`o${i}`, 40 + (i % 360)));
  for (let i = 0; i < RECENT; i++) all.push(ev(`r${i}`, i % 20));
  for (let i = all.length - 1; i > 0; i--) { // interleave old and recent in the log
    const j = rand.int(0, i);
    [all[i], all[j]] = [all[j], all[i]];
  }
  for (let i = 0; i < all.length; i += 1000) await send(all.slice(i, i + 1000));
  await caughtUp();
  const AGE = `"timestamp" < now()::TIMESTAMP - INTERVAL 30 DAY`;
  assert.deepEqual(await sql(`SELECT count(*) FILTER (WHERE ${AGE}), count(*) FILTER (WHERE NOT ${AGE}) FROM events`), [[OLD, RECENT]]);

  // a capture client sends recent events all along
  const acked = new Set();
  let stopping = false;
  const client = (async () => {
    for (let b = 0; !stopping; b++) {
      const batch = [];
      for (let i = 0; i < 20; i++) batch.push(ev(`c${b}-${i}`, 0));
      await send(batch);
      for (const e of batch) acked.add(e.messageId);
      await sleep(rand.int(5, 30));
    }
  })();

  let oldLeft = OLD, partial = 0;
  for (let k = 0; k < KILLS || (partial < 2 && k < 3 * KILLS); k++) {
    if (oldLeft < OLD / 2) { // top up, so that every kill can land in a run
      const more = [];
      for (let i = 0; i < OLD; i++) more.push(ev(`o${k}-${i}`, 40 + (i % 360)));
      for (let i = 0; i < more.length; i += 1000) await send(more.slice(i, i + 1000));
      await caughtUp();
      oldLeft = (await sql(`SELECT count(*) FILTER (WHERE ${AGE}) FROM events`))[0][0];
    }
    const url = await server.waitUrl();
    const r = await request(`${url}/api/crons/${JOB}`, { method: 'POST', headers: su });
    assert.equal(r.status, 204, r.body);
    await sleep(rand.int(10, 400));
    await server.kill();
    await server.start();
    await caughtUp();
    const [[dupIds, dupOffsets, old, recent]] = await sql(
      `SELECT count(*) - count(DISTINCT id), count(*) - count(DISTINCT log_offset), count(*) FILTER (WHERE ${AGE}), count(*) FILTER (WHERE id LIKE 'r%') FROM events`);
    assert.equal(dupIds, 0, 'an event loaded twice');
    assert.equal(dupOffsets, 0, 'a log offset loaded twice');
    assert.equal(recent, RECENT, 'a recent event lost');
    assert.ok(old <= oldLeft, `old events came back: ${old} > ${oldLeft}`);
    if (old > 0 && old < oldLeft) partial++;
    oldLeft = old;
  }
  stopping = true;
  await client;
  console.log(`retention_kill: ${partial} kill(s) cut a run half way; ${oldLeft} old events left before the last run`);

  // the next run, uninterrupted, finishes the job
  const r = await request(`${server.url}/api/crons/${JOB}`, { method: 'POST', headers: su });
  assert.equal(r.status, 204, r.body);
  for (const t0 = Date.now(); ; await sleep(100)) {
    const [[old]] = await sql(`SELECT count(*) FILTER (WHERE ${AGE}) FROM events`);
    if (old === 0) break;
    assert.ok(Date.now() - t0 < 60000, `old events left: ${old}`);
  }
  await caughtUp();
  const [[n, ids, recent, clients]] = await sql(`SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE id LIKE 'r%'), count(*) FILTER (WHERE id LIKE 'c%') FROM events`);
  assert.equal(n, ids);
  assert.equal(recent, RECENT);
  assert.equal(clients, acked.size, 'every acknowledged event is there once');
  const rows = await sql(`SELECT id FROM events WHERE id LIKE 'c%'`);
  const have = new Set(rows.map((x) => x[0]));
  for (const id of acked) assert.ok(have.has(id), `acknowledged ${id} missing`);
  await server.stop();
  await logCheck(dir);
  rmSync(dir, { recursive: true, force: true });
});
