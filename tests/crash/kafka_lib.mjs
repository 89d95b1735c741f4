// Shared pieces of the Kafka crash tests: SQL and pipeline checks on the primary, and clients
// that retry each batch with the same messageIds until it is answered 200.
import assert from 'node:assert/strict';
import { SU_EMAIL, SU_PASSWORD } from '../integration/lib/pb.mjs';
import { basic, prng, request, sleep } from './lib.mjs';

export const CLIENTS = 4;

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
// all: /api/pipeline says lag 0 everywhere, twice in a row, with every partition's end read
// from its leader after `since` (by default: the call; the caller stopped its traffic before).
// The consumer's own high watermark is not enough: it is as old as the last fetch response,
// and says lag 0 while acknowledged messages still wait in Kafka (see docs/scale-out.md).
export async function drained(url, token, since = Date.now()) {
  let calm = 0;
  for (let i = 0; i < 600 && calm < 2; i++) {
    const asked = Date.now();
    const r = await fetch(`${url}/api/pipeline`, { headers: { Authorization: token } });
    const p = await r.json();
    const parts = p.kafkaPartitions || [];
    const ok = parts.length > 0 && parts.every((x) => x.error === undefined && x.lag === 0 && x.end >= 0 &&
      x.endAgeMs !== undefined && asked - x.endAgeMs > since) &&
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

