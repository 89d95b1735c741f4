// The warehouse under SIGKILL: capture clients send batches with their own messageIds and
// retry until answered 200 (as in capture_kill), record writers create, update and delete
// records with client-chosen ids and retry until the outcome is definite (as in records_kill),
// while the server is killed at random moments and restarted on the same data directory.
// After the last restart the loader catches up (both consumers at lag 0, the outbox drained),
// and then, through the SQL API:
//   - every acknowledged messageId is in `events` exactly once, and nothing no client sent;
//   - `events` and `changes` hold each log offset once and every offset of their topic;
//   - the mirror `app_items` equals the SQLite table `items` row for row, every column
//     (read with the sqlite3 command-line tool), and the final record states the clients
//     expect.
// With TANDEM_TEST_LOG=kafka the catch-up also waits for the copy from Kafka (settled()).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { TEST_LOG, settled, tempDir } from '../integration/lib/server.mjs';
import { SU_EMAIL, SU_PASSWORD, createSuperuser } from '../integration/lib/pb.mjs';
import { Restartable, basic, prng, request, seedFromEnv, sleep, writeKey, killLoop } from './lib.mjs';

const CAPTURE_CLIENTS = 4;
const RECORD_CLIENTS = 4;
const RECORDS_PER_CLIENT = 5;
const KILLS = 8;

const recordId = (c, r) => `w${String(c).padStart(2, '0')}r${String(r).padStart(2, '0')}`.padEnd(15, 'q');
const TAGS = ['a', 'b', 'c', 'd'];

// the field values a write with this seq sets (absolute, so a retried write repeats them)
function valuesFor(seq, c) {
  return {
    seq,
    owner: `c${c}`,
    flag: seq % 2 === 0,
    tags: TAGS.filter((_, i) => (seq >> i) & 1),
    meta: { seq, big: '9007199254740993', list: [seq % 7, 'x'], nested: { ok: seq % 3 === 0 } },
    when: new Date(Date.UTC(2026, 0, 1) + (seq % 100000) * 1000 + (seq % 1000)).toISOString().replace('T', ' '),
  };
}

function sqlite(dir, sql) {
  return execFileSync('sqlite3', ['-cmd', '.timeout 5000', '-json', join(dir, 'app.db'), sql], { encoding: 'utf8' });
}
const sqliteRows = (dir, sql) => {
  const out = sqlite(dir, sql).trim();
  return out ? JSON.parse(out) : [];
};

test('warehouse: acknowledged events load exactly once and mirrors equal SQLite across SIGKILLs', { timeout: 90000 }, async () => {
  try {
    execFileSync('sqlite3', ['-version']);
  } catch {
    assert.fail('this test reads app.db with the sqlite3 command-line tool; install it (apt-get install sqlite3)');
  }
  const seed = seedFromEnv('warehouse_kill');
  const rand = prng(seed);
  const dir = tempDir('tandem-crash-warehouse-');
  console.log(`warehouse_kill: data in ${dir} (removed only when the test passes)`);
  const key = await writeKey(dir, 'crash');
  await createSuperuser(dir);
  const server = new Restartable(dir, ['--sql-max-rows', '1000000']);
  await server.start();

  const signIn = await request(`${server.url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ identity: SU_EMAIL, password: SU_PASSWORD }),
  });
  assert.equal(signIn.status, 200, signIn.body);
  const token = JSON.parse(signIn.body).token;
  const created = await request(`${server.url}/api/collections`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: token },
    body: JSON.stringify({
      name: 'items', type: 'base',
      fields: [
        { name: 'seq', type: 'number' },
        { name: 'owner', type: 'text' },
        { name: 'flag', type: 'bool' },
        { name: 'tags', type: 'select', values: TAGS, maxSelect: 4 },
        { name: 'meta', type: 'json' },
        { name: 'when', type: 'date' },
      ],
    }),
  });
  assert.equal(created.status, 200, created.body);

  const sent = new Set();
  const acked = new Set();
  const ops = new Map(); // record id -> [{action, seq, attempts, outcome}]
  const stats = { capRequests: 0, capNoAnswer: 0, cap503: 0, recRequests: 0, recNoAnswer: 0, rec503: 0, confirmedByRetry: 0, unexpected: [] };
  let stopping = false;

  async function captureClient(c) {
    const r = prng(seed + 1000 + c);
    for (let b = 0; !stopping; b++) {
      const n = r.int(1, 200);
      const batch = [];
      for (let i = 0; i < n; i++) {
        const id = `k${c}-b${b}-e${i}`;
        sent.add(id);
        batch.push({ type: 'track', event: 'Warehouse Crash', userId: `u${c}`, messageId: id, properties: { c, b, i, big: 9007199254740993n.toString(), pad: 'x'.repeat(r.int(0, 300)) } });
      }
      const body = JSON.stringify({ batch });
      for (;;) {
        const url = await server.waitUrl();
        stats.capRequests++;
        const res = await request(`${url}/v1/batch`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: basic(key) }, body });
        if (res.error) stats.capNoAnswer++;
        else if (res.status === 200) {
          for (const e of batch) acked.add(e.messageId);
          break;
        } else if (res.status === 503) stats.cap503++;
        else {
          stats.unexpected.push(`capture ${res.status} ${res.body}`);
          stopping = true;
          return;
        }
        await sleep(r.int(1, 20));
      }
    }
  }

  async function recordClient(c) {
    const r = prng(seed + 2000 + c);
    const exists = new Array(RECORDS_PER_CLIENT).fill(false);
    const lastSeq = new Array(RECORDS_PER_CLIENT).fill(null);
    for (let n = 1; !stopping; n++) {
      const k = r.int(0, RECORDS_PER_CLIENT - 1);
      const id = recordId(c, k);
      const seq = c * 1000000 + n;
      let op;
      if (!exists[k]) op = { action: 'create', seq };
      else if (r() < 0.15) op = { action: 'delete', seq: lastSeq[k] };
      else op = { action: 'update', seq };
      op.attempts = 0;
      if (!ops.has(id)) ops.set(id, []);
      ops.get(id).push(op);
      for (;;) {
        const url = await server.waitUrl();
        const headers = { 'Content-Type': 'application/json', Authorization: token };
        const base = `${url}/api/collections/items/records`;
        op.attempts++;
        stats.recRequests++;
        let res;
        if (op.action === 'create') res = await request(base, { method: 'POST', headers, body: JSON.stringify({ id, ...valuesFor(seq, c) }) });
        else if (op.action === 'update') res = await request(`${base}/${id}`, { method: 'PATCH', headers, body: JSON.stringify(valuesFor(seq, c)) });
        else res = await request(`${base}/${id}`, { method: 'DELETE', headers });
        if (res.error) { stats.recNoAnswer++; await sleep(r.int(1, 10)); continue; }
        if (res.status === 503) { stats.rec503++; await sleep(r.int(1, 10)); continue; }
        const ok = op.action === 'delete' ? res.status === 204 : res.status === 200;
        if (ok) op.outcome = 'acked';
        else if (op.attempts > 1 && op.action === 'create' && res.status === 400 && JSON.parse(res.body)?.data?.id?.code === 'validation_not_unique') {
          op.outcome = 'confirmed';
          stats.confirmedByRetry++;
        } else if (op.attempts > 1 && op.action === 'delete' && res.status === 404) {
          op.outcome = 'confirmed';
          stats.confirmedByRetry++;
        } else {
          stats.unexpected.push(`${op.action} ${id} attempt ${op.attempts}: ${res.status} ${res.body}`);
          stopping = true;
          return;
        }
        break;
      }
      exists[k] = op.action !== 'delete';
      lastSeq[k] = op.action === 'delete' ? null : seq;
    }
  }

  const clients = [
    ...Array.from({ length: CAPTURE_CLIENTS }, (_, c) => captureClient(c)),
    ...Array.from({ length: RECORD_CLIENTS }, (_, c) => recordClient(c)),
  ];
  const t0 = Date.now();
  const killMoments = await killLoop({
    server, rand, kills: KILLS, minMs: 100, maxMs: 900, clients,
    moreWanted: () => stats.capNoAnswer === 0 || stats.recNoAnswer === 0,
    stop: () => { stopping = true; },
  });
  assert.deepEqual(stats.unexpected, [], 'unexpected answers');
  // one more kill right after the last writes: the relay and the loader resume from there
  await server.kill();
  await server.start();
  const url = server.url;
  const su = { 'Content-Type': 'application/json', Authorization: token };

  // catch-up: the outbox drained, then both consumers at the log's end
  const tc = Date.now();
  let status;
  for (;;) {
    const left = Number(sqlite(dir, 'SELECT count(*) AS n FROM _outbox;').match(/\d+/)[0]);
    const res = await request(`${url}/api/pipeline`, { headers: su });
    assert.equal(res.status, 200, res.body);
    status = JSON.parse(res.body).consumers;
    const done = left === 0 && status.every((c) => c.lagRecords === 0 && c.committedOffset === c.logEndOffset && c.lastError === null);
    if (done && TEST_LOG === 'kafka') { // the outbox drained into Kafka: wait for the copy too
      await settled(url, token);
      status = JSON.parse((await request(`${url}/api/pipeline`, { headers: su })).body).consumers;
    }
    if (done) break;
    assert.ok(Date.now() - tc < 20000, `no catch-up within 20 s: outbox ${left}, ${JSON.stringify(status)}`);
    await sleep(50);
  }
  const catchUpMs = Date.now() - tc;

  async function sql(query, params = []) {
    const res = await request(`${url}/api/warehouse/sql`, { method: 'POST', headers: su, body: JSON.stringify({ query, params }) }, 30000);
    assert.equal(res.status, 200, `${query}: ${res.error || res.body}`);
    const j = JSON.parse(res.body);
    assert.equal(j.truncated, false, query);
    return j;
  }

  // events: each acknowledged messageId exactly once, nothing foreign
  const evEnd = status.find((c) => c.topic === 'events').logEndOffset;
  const chEnd = status.find((c) => c.topic === 'changes').logEndOffset;
  const evAgg = (await sql('SELECT count(*), count(DISTINCT log_offset), min(log_offset), max(log_offset) FROM events')).rows[0];
  assert.deepEqual(evAgg, [evEnd, evEnd, 0, evEnd - 1], 'events holds every offset of the topic once');
  const dup = await sql('SELECT id, count(*) AS n FROM events GROUP BY id HAVING count(*) > 1 ORDER BY id LIMIT 20');
  assert.deepEqual(dup.rows, [], 'messageIds in events more than once');
  const ids = new Set((await sql('SELECT id FROM events')).rows.map((r) => r[0]));
  const lost = [...acked].filter((id) => !ids.has(id));
  const foreign = [...ids].filter((id) => !sent.has(id));
  assert.deepEqual(lost.slice(0, 20), [], `${lost.length} acknowledged events missing from the warehouse`);
  assert.deepEqual(foreign.slice(0, 20), [], 'events in the warehouse that no client sent');
  const big = await sql(`SELECT DISTINCT properties->>'big' FROM events`);
  assert.deepEqual(big.rows, [['9007199254740993']]);

  // changes: every offset once
  const chAgg = (await sql('SELECT count(*), count(DISTINCT log_offset), count(DISTINCT id) FROM changes')).rows[0];
  assert.deepEqual(chAgg, [chEnd, chEnd, chEnd], 'changes holds every change of the topic once');

  // the mirror equals the SQLite table, row for row and column for column
  const mirror = await sql('SELECT * FROM app_items ORDER BY id');
  const cols = mirror.columns.map((c) => c.name);
  const types = Object.fromEntries(mirror.columns.map((c) => [c.name, c.type]));
  assert.deepEqual(types, { id: 'VARCHAR', seq: 'DOUBLE', owner: 'VARCHAR', flag: 'BOOLEAN', tags: 'VARCHAR[]', meta: 'JSON', when: 'TIMESTAMP' });
  const table = sqliteRows(dir, 'SELECT * FROM items ORDER BY id;');
  assert.equal(mirror.rows.length, table.length, 'row count of app_items vs items');
  const sqliteCols = table.length ? Object.keys(table[0]).sort() : cols.slice().sort();
  assert.deepEqual(cols.slice().sort(), sqliteCols, 'mirror columns vs SQLite columns');
  const norm = {
    id: (v) => v,
    seq: (v) => Number(v),
    owner: (v) => v,
    flag: (v) => v === true || v === 1,
    tags: (v) => (typeof v === 'string' ? JSON.parse(v) : v),
    meta: (v) => (typeof v === 'string' ? JSON.parse(v) : v),
    when: (v) => (v === '' || v === null ? null : Date.parse(v.replace(' ', 'T'))),
  };
  for (let i = 0; i < table.length; i++) {
    const got = Object.fromEntries(cols.map((c, k) => [c, norm[c](mirror.rows[i][k])]));
    const want = Object.fromEntries(cols.map((c) => [c, norm[c](table[i][c])]));
    assert.deepEqual(got, want, `row ${i} of app_items differs from items`);
  }
  // and what the clients expect: each record's last write
  const expect = new Map();
  for (const [id, list] of ops) {
    for (const op of list) assert.ok(op.outcome, `write without an outcome: ${id} ${JSON.stringify(op)}`);
    const last = list[list.length - 1];
    if (last.action !== 'delete') expect.set(id, last.seq);
  }
  const mirrorSeq = new Map(mirror.rows.map((r) => [r[cols.indexOf('id')], r[cols.indexOf('seq')]]));
  assert.deepEqual(mirrorSeq, expect, 'the mirror holds each record at its last write');
  for (const r of mirror.rows) {
    const seq = r[cols.indexOf('seq')];
    const want = valuesFor(seq, Math.floor(seq / 1000000));
    assert.equal(r[cols.indexOf('flag')], want.flag);
    assert.deepEqual(r[cols.indexOf('tags')], want.tags);
    assert.deepEqual(r[cols.indexOf('meta')], want.meta);
    assert.equal(Date.parse(r[cols.indexOf('when')]), Date.parse(want.when.replace(' ', 'T')));
  }

  await server.stop();
  console.log(`warehouse_kill: ${Date.now() - t0} ms, kills after ${killMoments.join(',')} ms; catch-up ${catchUpMs} ms; ${evEnd} events (${acked.size} acknowledged), ${chEnd} changes, ${mirror.rows.length} mirrored records; ${JSON.stringify({ ...stats, unexpected: undefined })}`);
  assert.ok(stats.capNoAnswer > 0 || stats.recNoAnswer > 0, 'no request was cut by a kill');
  assert.ok(acked.size > 0 && mirror.rows.length > 0);
  rmSync(dir, { recursive: true, force: true });
});
