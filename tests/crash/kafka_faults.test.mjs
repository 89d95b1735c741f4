// Capture into Kafka (the mock cluster: tests/kafka_mock.c) under failures: a broker down
// during ingest, leader changes, produce requests timing out, every broker down (503 with
// Retry-After, never a 200 for events Kafka does not hold), and the server (with its mirror
// and its loader) killed with SIGKILL mid-batch. Clients retry every batch with the same
// messageIds until it is answered 200. At the end every acknowledged messageId is in the
// warehouse's events table exactly once, and nothing is there that no client sent.
// A second test recreates the topics (a new cluster under the same names): the copy stops with
// a clear error instead of silently starting over at offset 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { run, start, tempDir } from '../integration/lib/server.mjs';
import { createSuperuser, SU_EMAIL, SU_PASSWORD } from '../integration/lib/pb.mjs';
import { startKafkaMock, kafkaArgs } from '../integration/lib/kafka.mjs';
import { Restartable, basic, prng, request, seedFromEnv, sleep, writeKey } from './lib.mjs';

const CLIENTS = 4;

export async function signIn(url) {
  const r = await fetch(`${url}/api/collections/_superusers/auth-with-password`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ identity: SU_EMAIL, password: SU_PASSWORD }),
  });
  assert.equal(r.status, 200);
  return (await r.json()).token;
}

export async function sql(url, token, query) {
  const r = await fetch(`${url}/api/warehouse/sql`, { method: 'POST', headers: { Authorization: token, 'Content-Type': 'application/json' }, body: JSON.stringify({ query }) });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text).rows;
}

// Waits until the mirror has copied every partition to its end and the loader has loaded it
// all: /api/pipeline says lag 0 everywhere, twice in a row.
export async function drained(url, token) {
  let calm = 0;
  for (let i = 0; i < 600 && calm < 2; i++) {
    const r = await fetch(`${url}/api/pipeline`, { headers: { Authorization: token } });
    const p = await r.json();
    const parts = p.kafkaPartitions || [];
    const ok = parts.length > 0 && parts.every((x) => x.error === undefined && x.lag === 0 && x.end >= 0) &&
      p.consumers.every((c) => c.ready && c.lagRecords === 0);
    calm = ok ? calm + 1 : 0;
    await sleep(250);
  }
  assert.equal(calm, 2, 'the pipeline did not catch up with Kafka');
}

// Every acknowledged id exactly once in the warehouse, nothing foreign.
export async function checkExactlyOnce(url, token, acked, sent) {
  const dups = await sql(url, token, 'SELECT id, count(*) FROM events GROUP BY id HAVING count(*) > 1 LIMIT 20');
  assert.deepEqual(dups, [], 'events loaded more than once');
  const ids = new Set();
  for (let off = 0; ; off += 10000) {
    const rows = await sql(url, token, `SELECT id FROM events ORDER BY id LIMIT 10000 OFFSET ${off}`);
    for (const [id] of rows) ids.add(id);
    if (rows.length < 10000) break;
  }
  const lost = [...acked].filter((id) => !ids.has(id));
  const foreign = [...ids].filter((id) => !sent.has(id));
  assert.deepEqual(lost.slice(0, 20), [], `${lost.length} acknowledged events missing from the warehouse`);
  assert.deepEqual(foreign.slice(0, 20), [], 'events no client sent');
  return ids.size;
}

// Clients sending batches until stop(); each batch is retried with the same ids until 200.
export function traffic(urls, key, seed, stats, sent, acked) {
  let stopping = false;
  async function client(c) {
    const r = prng(seed + 1000 + c);
    for (let b = 0; !stopping; b++) {
      const n = r.int(1, 30);
      const batch = [];
      for (let i = 0; i < n; i++) {
        const id = `c${c}-b${b}-e${i}`;
        sent.add(id);
        batch.push({ type: 'track', event: 'Kafka Test', userId: `u${c}-${r.int(0, 9)}`, messageId: id, properties: { c, b, i } });
      }
      const body = JSON.stringify({ batch });
      for (let attempt = 0; ; attempt++) {
        if (attempt > 0 && stopping) break; // never acknowledged: no promise was made
        if (attempt > 0) stats.retries++;
        const url = await urls(r);
        stats.requests++;
        const res = await request(`${url}/v1/batch`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: basic(key) }, body });
        if (res.error) stats.noAnswer++;
        else if (res.status === 200) {
          stats.ok++;
          for (const e of batch) acked.add(e.messageId);
          break;
        } else if (res.status === 503) {
          stats.status503++;
          if (!res.headers.get('retry-after')) stats.unexpected.push('503 without Retry-After');
        } else {
          stats.unexpected.push(`${res.status} ${res.body}`);
          return;
        }
        await sleep(r.int(5, 50));
      }
    }
  }
  const clients = Array.from({ length: CLIENTS }, (_, c) => client(c));
  return async () => { stopping = true; await Promise.all(clients); };
}

test('kafka: broker outages, leader changes, timeouts and SIGKILL lose nothing and load nothing twice', { timeout: 300000 }, async () => {
  const seed = seedFromEnv('kafka_faults');
  const rand = prng(seed);
  const mock = await startKafkaMock({ brokers: 3, partitions: 4 });
  const dir = tempDir('tandem-crash-kafka-');
  console.log(`kafka_faults: data in ${dir} (removed only when the test passes)`);
  let cleanup = async () => {};
  try {
    const key = await writeKey(dir, 'crash');
    await createSuperuser(dir);
    const server = new Restartable(dir, kafkaArgs(mock));
    cleanup = async () => { if (server.srv) await server.srv.stop('SIGKILL'); };
    await server.start();
    const sent = new Set(), acked = new Set();
    const stats = { requests: 0, ok: 0, status503: 0, noAnswer: 0, retries: 0, unexpected: [] };
    const stop = traffic(() => server.waitUrl(), key, seed, stats, sent, acked);
    const kill = async () => { await server.kill(); await sleep(rand.int(0, 100)); await server.start(); };
    const phases = [];
    try {
      await sleep(500);
      phases.push('broker 1 down'); await mock.cmd('down 1'); await sleep(1500); await mock.cmd('up 1');
      await sleep(rand.int(200, 600)); phases.push('kill'); await kill();
      phases.push('leader changes'); await mock.cmd('leader tandem-events 0 2'); await mock.cmd('leader tandem-events 1 3');
      await sleep(800); await mock.cmd('leader tandem-events 0 3'); await mock.cmd('leader tandem-changes 0 2');
      await sleep(rand.int(200, 600)); phases.push('kill'); await kill();
      // Produce (ApiKey 0) answered REQUEST_TIMED_OUT (7) after 300 ms, 3 times per broker
      phases.push('produce timeouts'); for (const b of [1, 2, 3]) await mock.cmd(`error ${b} 0 7 3 300`);
      await sleep(1500);
      phases.push('all brokers down'); for (const b of [1, 2, 3]) await mock.cmd(`down ${b}`);
      await sleep(3000);
      for (const b of [1, 2, 3]) await mock.cmd(`up ${b}`);
      await sleep(rand.int(100, 400)); phases.push('kill'); await kill();
      await sleep(1500);
    } finally {
      await stop();
    }
    console.log(`kafka_faults: ${phases.join(', ')}; ${JSON.stringify({ ...stats, sent: sent.size, acked: acked.size })}`);
    assert.deepEqual(stats.unexpected, [], 'only 200 and 503 (with Retry-After) are allowed answers');
    assert.ok(stats.status503 > 0 || stats.noAnswer > 0, 'the outage was never seen by a client');
    assert.ok(acked.size > 0);
    const token = await signIn(server.url);
    await drained(server.url, token);
    const n = await checkExactlyOnce(server.url, token, acked, sent);
    console.log(`kafka_faults: ${n} events in the warehouse, ${acked.size} acknowledged`);
    await server.stop();
    // `tandem log check` reads the mirror and the cluster: clean, every partition copied
    const check = await run(['log', 'check', '--dir', dir, ...kafkaArgs(mock)]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /partition 0: offsets 0\.\.\d+, mirrored up to \d+, lag 0/);
    rmSync(dir, { recursive: true, force: true });
  } finally {
    await cleanup();
    if (process.env.KEEP_MOCK) { console.log(`mock ${mock.bootstrap} pid ${mock.proc.pid}`); mock.proc.unref(); } else await mock.stop();
  }
});

test('kafka: recreated topics stop the copy with a clear error, not a reset to offset 0', { timeout: 120000 }, async () => {
  let mock = await startKafkaMock({ brokers: 1, partitions: 2 });
  const dir = tempDir('tandem-crash-kafka-');
  try {
    const key = await writeKey(dir, 'k');
    await createSuperuser(dir);
    let srv = await start({ dir, keepDir: true, args: kafkaArgs(mock) });
    const batch = Array.from({ length: 20 }, (_, i) => ({ type: 'track', event: 'e', userId: `u${i}`, messageId: `m${i}` }));
    const res = await request(`${srv.url}/v1/batch`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: basic(key) }, body: JSON.stringify({ batch }) });
    assert.equal(res.status, 200);
    let token = await signIn(srv.url);
    await drained(srv.url, token);
    await srv.stop();
    await mock.stop();
    mock = await startKafkaMock({ brokers: 1, partitions: 2 }); // same topic names, empty
    srv = await start({ dir, keepDir: true, args: kafkaArgs(mock) });
    token = await signIn(srv.url);
    let err = null;
    for (let i = 0; i < 100 && !err; i++) {
      const p = await (await fetch(`${srv.url}/api/pipeline`, { headers: { Authorization: token } })).json();
      err = (p.kafkaPartitions || []).find((x) => x.topic === 'tandem-events' && x.error);
      if (!err) await sleep(100);
    }
    assert.ok(err, 'no error reported for the recreated topic');
    assert.match(err.error, /recreated/);
    assert.equal(err.stopped, true);
    assert.equal((await sql(srv.url, token, 'SELECT count(*) FROM events'))[0][0], 20);
    await srv.stop();
    const check = await run(['log', 'check', '--dir', dir, ...kafkaArgs(mock)]);
    assert.notEqual(check.code, 0);
    assert.match(check.stdout, /recreated/);
    rmSync(dir, { recursive: true, force: true });
  } finally {
    await mock.stop();
  }
});
