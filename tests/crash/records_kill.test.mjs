// Record writes under SIGKILL: concurrent clients create, update and delete their own records
// through the records API (as a superuser) and retry any write that got no answer or a 503,
// while the server is killed at random moments and restarted on the same data directory.
//
// The records API has no idempotency key, so the workload is built on what it does promise:
// creates carry client-chosen ids (a retried create whose first attempt committed gets 400
// "id not unique", and the record exists once), updates set absolute values (a retried update
// writes the same values again: a second, identical change), a retried delete whose first
// attempt committed gets 404. Every write therefore ends with a definite outcome, and the
// changes topic must hold, per record, exactly the client's writes in the client's order, each
// create and delete once and each update at least once and at most once per attempt; outbox
// ids in the topic strictly increase (the relay never appends a row twice); after a final
// kill, a restart drains the outbox; the records' final state matches their last change.
// With TANDEM_TEST_LOG=kafka the changes go through Kafka and are read from the primary's
// copy once it caught up; outbox ids then grow per record (the topic's key), not across it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { TEST_LOG, settled, tempDir } from '../integration/lib/server.mjs';
import { SU_EMAIL, SU_PASSWORD, createSuperuser } from '../integration/lib/pb.mjs';
import { Restartable, dumpTopic, logCheck, prng, request, seedFromEnv, sleep, killLoop } from './lib.mjs';

const CLIENTS = 8;
const RECORDS_PER_CLIENT = 4;
const KILLS = 8;

// 15 characters of [a-z0-9], as PocketBase ids are
const recordId = (c, r) => `c${String(c).padStart(2, '0')}r${String(r).padStart(2, '0')}`.padEnd(15, 'z');

function outboxCount(dir) {
  const out = execFileSync('sqlite3', ['-cmd', '.timeout 5000', join(dir, 'app.db'), 'SELECT count(*) FROM _outbox;'], { encoding: 'utf8' });
  return Number(out.trim());
}

test('every acknowledged record write reaches the changes topic once, in order', { timeout: 120000 }, async () => {
  try {
    execFileSync('sqlite3', ['-version']);
  } catch {
    assert.fail('this test reads app.db with the sqlite3 command-line tool; install it (apt-get install sqlite3)');
  }
  const seed = seedFromEnv('records_kill');
  const rand = prng(seed);
  const dir = tempDir('tandem-crash-records-');
  console.log(`records_kill: data in ${dir} (removed only when the test passes)`);
  await createSuperuser(dir);
  const server = new Restartable(dir);
  await server.start();

  const signIn = await request(`${server.url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ identity: SU_EMAIL, password: SU_PASSWORD }),
  });
  assert.equal(signIn.status, 200, signIn.body);
  const token = JSON.parse(signIn.body).token;
  const created = await request(`${server.url}/api/collections`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: token },
    body: JSON.stringify({ name: 'items', type: 'base', fields: [{ name: 'seq', type: 'number' }, { name: 'owner', type: 'text' }] }),
  });
  assert.equal(created.status, 200, created.body);

  const ops = new Map(); // record id -> [{action, seq, attempts, outcome}] in client order
  const stats = { writes: 0, requests: 0, noAnswer: 0, status503: 0, confirmedByRetry: 0, unexpected: [] };
  let stopping = false;

  async function client(c) {
    const r = prng(seed + 1000 + c);
    const exists = new Array(RECORDS_PER_CLIENT).fill(false);
    const lastSeq = new Array(RECORDS_PER_CLIENT).fill(null);
    for (let n = 1; !stopping; n++) {
      const k = r.int(0, RECORDS_PER_CLIENT - 1);
      const id = recordId(c, k);
      const seq = c * 1000000 + n; // unique over the whole run
      let op;
      if (!exists[k]) op = { action: 'create', seq };
      else if (r() < 0.15) op = { action: 'delete', seq: lastSeq[k] };
      else op = { action: 'update', seq };
      op.attempts = 0;
      if (!ops.has(id)) ops.set(id, []);
      ops.get(id).push(op);
      stats.writes++;
      for (;;) {
        const url = await server.waitUrl();
        const headers = { 'Content-Type': 'application/json', Authorization: token };
        const base = `${url}/api/collections/items/records`;
        op.attempts++;
        stats.requests++;
        let res;
        if (op.action === 'create') res = await request(base, { method: 'POST', headers, body: JSON.stringify({ id, seq, owner: `c${c}` }) });
        else if (op.action === 'update') res = await request(`${base}/${id}`, { method: 'PATCH', headers, body: JSON.stringify({ seq, owner: `c${c}` }) });
        else res = await request(`${base}/${id}`, { method: 'DELETE', headers });
        if (res.error) { stats.noAnswer++; await sleep(r.int(1, 10)); continue; }
        if (res.status === 503) { stats.status503++; await sleep(r.int(1, 10)); continue; }
        const ok = op.action === 'delete' ? res.status === 204 : res.status === 200;
        if (ok) {
          op.outcome = 'acked';
        } else if (op.attempts > 1 && op.action === 'create' && res.status === 400 && JSON.parse(res.body)?.data?.id?.code === 'validation_not_unique') {
          op.outcome = 'confirmed'; // an earlier attempt committed
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

  const clients = Array.from({ length: CLIENTS }, (_, c) => client(c));
  // at least KILLS kills; more (up to twice as many) until one cut a request in flight
  const killMoments = await killLoop({
    server, rand, kills: KILLS, minMs: 30, maxMs: 500, clients,
    moreWanted: () => stats.noAnswer === 0,
    stop: () => { stopping = true; },
  });
  assert.deepEqual(stats.unexpected, [], 'unexpected answers');

  // a last kill right after the writes, so the relay may leave rows behind; a restart must
  // move all of them
  await server.kill();
  const pending = outboxCount(dir);
  await server.start();
  const t0 = Date.now();
  let left = outboxCount(dir);
  while (left > 0 && Date.now() - t0 < 10000) {
    await sleep(20);
    left = outboxCount(dir);
  }
  console.log(`records_kill: kills after ${killMoments.join(',')} ms; ${pending} outbox rows pending after the final kill, drained in ${Date.now() - t0} ms; ${JSON.stringify({ ...stats, unexpected: undefined })}`);
  assert.equal(left, 0, 'the outbox was not drained after restart');

  // the records as the API serves them now
  const finalState = new Map();
  for (const id of ops.keys()) {
    const res = await request(`${server.url}/api/collections/items/records/${id}`, { headers: { Authorization: token } });
    assert.ok(res.status === 200 || res.status === 404, res.body);
    finalState.set(id, res.status === 200 ? JSON.parse(res.body).seq : null);
  }
  await settled(server.url, token); // on Kafka: the copy holds everything the relay sent
  await server.stop();
  assert.ok(stats.noAnswer > 0, 'no request was cut by a kill');

  const changes = (await dumpTopic(dir, 'changes')).map((r) => r.value);
  // exactly once out of the outbox: its ids only grow (on Kafka per record, the key: the copy
  // interleaves partitions; and no id twice)
  if (TEST_LOG === 'kafka') {
    assert.equal(new Set(changes.map((c) => c.id)).size, changes.length, 'an outbox id copied twice');
    const lastId = new Map();
    for (const c of changes) {
      assert.ok(!(lastId.get(c.recordId) >= c.id), `${c.recordId}: outbox id ${c.id} after ${lastId.get(c.recordId)}`);
      lastId.set(c.recordId, c.id);
    }
  } else {
    for (let i = 1; i < changes.length; i++) assert.ok(changes[i].id > changes[i - 1].id, `outbox id ${changes[i].id} after ${changes[i - 1].id}`);
  }

  const perRecord = new Map();
  for (const ch of changes.filter((x) => x.collection === 'items')) {
    if (!perRecord.has(ch.recordId)) perRecord.set(ch.recordId, []);
    perRecord.get(ch.recordId).push(ch);
  }
  for (const id of perRecord.keys()) assert.ok(ops.has(id), `change for a record no client wrote: ${id}`);
  let matched = 0;
  for (const [id, list] of ops) {
    const got = perRecord.get(id) || [];
    // walk the record's changes against the client's writes, in order
    let i = 0;
    for (const op of list) {
      assert.ok(op.outcome, `write without an outcome: ${id} ${JSON.stringify(op)}`);
      let copies = 0;
      while (i < got.length && got[i].action === op.action && got[i].record.seq === op.seq) { copies++; i++; }
      assert.ok(copies >= 1, `${id}: ${op.action} seq ${op.seq} (${op.outcome}) is missing from the changes topic at position ${i}: ${JSON.stringify(got.slice(i, i + 3))}`);
      if (op.action !== 'update') assert.equal(copies, 1, `${id}: ${op.action} logged ${copies} times`);
      else assert.ok(copies <= op.attempts, `${id}: update seq ${op.seq} logged ${copies} times for ${op.attempts} attempts`);
      matched++;
    }
    assert.equal(i, got.length, `${id}: changes no client wrote, or out of order: ${JSON.stringify(got.slice(i, i + 3))}`);
    const last = list[list.length - 1];
    assert.equal(finalState.get(id), last.action === 'delete' ? null : last.seq, `${id}: final state`);
  }
  console.log(`records_kill: ${changes.length} changes in the log, ${matched} writes matched, ${[...perRecord.values()].reduce((a, l) => a + l.length, 0) - matched} extra copies of retried updates`);
  await logCheck(dir);
  rmSync(dir, { recursive: true, force: true });
});
