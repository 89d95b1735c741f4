// Warehouse retention end to end: settings.warehouse is validated, a retention period
// registers the __tandemWarehouseRetention__ job in /api/crons, running it deletes exactly
// the events older than the period (counted by age before and after) while capture and
// loading go on, and a period of 0 removes the job.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startWithSuperuserAndKey } from './lib/pb.mjs';
import { api, sql, waitLoaded } from './lib/models.mjs';

const JOB = '__tandemWarehouseRetention__';
const DAY = 86400000;
let srv;
after(async () => { await srv?.stop(); });

async function capture(url, key, batch) {
  const res = await fetch(`${url}/v1/batch`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'Basic ' + Buffer.from(`${key}:`).toString('base64') },
    body: JSON.stringify({ batch }),
  });
  assert.equal(res.status, 200, await res.text());
}

const track = (id, ageDays, now) => ({
  type: 'track', event: 'Viewed', messageId: id, anonymousId: `a-${id}`,
  timestamp: new Date(now - ageDays * DAY).toISOString(),
});

const BY_AGE = `SELECT count(*) FILTER (WHERE "timestamp" < now()::TIMESTAMP - INTERVAL 30 DAY) AS old,
  count(*) FILTER (WHERE "timestamp" >= now()::TIMESTAMP - INTERVAL 30 DAY) AS recent,
  count(DISTINCT id) AS ids FROM events`;

test('warehouse retention: settings, the cron job, exactly the old rows, loading goes on', { timeout: 120000 }, async () => {
  const s = await startWithSuperuserAndKey();
  srv = s.srv;
  const a = { url: srv.url, token: s.token };

  // validation: PocketBase's envelope with the field named
  for (const [body, field] of [
    [{ retentionDays: -1 }, 'retentionDays'],
    [{ retentionDays: 40000 }, 'retentionDays'],
    [{ retentionCron: 'every day' }, 'retentionCron'],
    [{ retentionBatch: 5 }, 'retentionBatch'],
  ]) {
    const r = await api(a, 'PATCH', '/api/settings', { warehouse: body });
    assert.equal(r.status, 400, r.text);
    assert.ok(r.json.data.warehouse[field], r.text);
  }
  const r0 = await api(a, 'PATCH', '/api/settings', { warehouse: { retentionDays: 'x' } });
  assert.equal(r0.status, 400);
  const got = await api(a, 'GET', '/api/settings');
  assert.deepEqual(got.json.warehouse, { retentionDays: 0, retentionCron: '@hourly', retentionBatch: 122880 });
  let crons = await api(a, 'GET', '/api/crons');
  assert.equal(crons.json.find((j) => j.id === JOB), undefined, 'no job while retention is off');

  // 3,000 events: 1,200 of them 31..400 days old, the rest 0..29 days
  const now = Date.now();
  const batch = [];
  let oldN = 0;
  for (let i = 0; i < 3000; i++) {
    const age = i % 5 < 2 ? 31 + (i % 370) : i % 30;
    if (age > 30) oldN++;
    batch.push(track(`m${i}`, age, now));
  }
  for (let i = 0; i < batch.length; i += 500) await capture(srv.url, s.key, batch.slice(i, i + 500));
  await waitLoaded(a, 'SELECT count(*) FROM events', 3000);
  const before = (await sql(a, BY_AGE)).rows[0];
  assert.deepEqual(before, [oldN, 3000 - oldN, 3000]);

  // a period of 30 days: the job appears, runnable by hand
  const p = await api(a, 'PATCH', '/api/settings', { warehouse: { retentionDays: 30, retentionBatch: 100 } });
  assert.equal(p.status, 200, p.text);
  crons = await api(a, 'GET', '/api/crons');
  assert.deepEqual(crons.json.find((j) => j.id === JOB), { id: JOB, expression: '@hourly' });

  // capture goes on while the job runs: 1,000 recent events in small batches
  assert.equal((await api(a, 'POST', `/api/crons/${JOB}`)).status, 204);
  for (let i = 0; i < 1000; i += 50) {
    const more = [];
    for (let k = i; k < i + 50; k++) more.push(track(`n${k}`, 1, now));
    await capture(srv.url, s.key, more);
  }
  await waitLoaded(a, 'SELECT count(*) FROM events WHERE id LIKE \'n%\'', 1000);
  for (let t0 = Date.now(); ; await new Promise((r) => setTimeout(r, 100))) {
    const [old] = (await sql(a, BY_AGE)).rows[0];
    if (old === 0) break;
    assert.ok(Date.now() - t0 < 60000, `old events left: ${old}`);
  }
  assert.deepEqual((await sql(a, BY_AGE)).rows[0], [0, 4000 - oldN, 4000 - oldN]);
  // the right ones: every recent messageId is there, no old one is
  const ids = await sql(a, 'SELECT count(*) FROM events WHERE id LIKE \'m%\' AND "timestamp" >= now()::TIMESTAMP - INTERVAL 30 DAY');
  assert.equal(ids.rows[0][0], 3000 - oldN);
  // the loader's position moved on and nothing was loaded twice
  const pipe = await api(a, 'GET', '/api/pipeline');
  const ev = pipe.json.consumers.find((c) => c.consumer === 'warehouse-events');
  assert.equal(ev.lastError, null);
  const metrics = await (await fetch(`${srv.url}/metrics`)).text();
  assert.match(metrics, new RegExp(`tandem_warehouse_retention_rows_total\\{table="events"\\} ${oldN}\\n`));

  // 0 again: the job goes
  assert.equal((await api(a, 'PATCH', '/api/settings', { warehouse: { retentionDays: 0 } })).status, 200);
  crons = await api(a, 'GET', '/api/crons');
  assert.equal(crons.json.find((j) => j.id === JOB), undefined);
});
