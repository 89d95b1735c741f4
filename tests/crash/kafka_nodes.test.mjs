// Three capture nodes and one primary on 127.0.0.1 over one Kafka cluster (the mock: three
// brokers, four partitions). Clients send Segment batches to a random capture node and retry a
// batch that got no 200 on any node, with the same messageIds; meanwhile capture nodes are
// killed with SIGKILL and restarted, the primary is killed once, and a broker goes down and
// comes back. At the end the primary's warehouse holds every acknowledged messageId exactly
// once (retries that reached different nodes are dropped by the primary's mirror).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { tempDir } from '../integration/lib/server.mjs';
import { createSuperuser } from '../integration/lib/pb.mjs';
import { startKafkaMock, kafkaArgs } from '../integration/lib/kafka.mjs';
import { Restartable, seedFromEnv, sleep, writeKey } from './lib.mjs';
import { checkExactlyOnce, drained, signIn, traffic } from './kafka_lib.mjs';

test('kafka: 3 capture nodes + 1 primary with node kills and a broker outage end with exact counts', { timeout: 300000 }, async () => {
  const seed = seedFromEnv('kafka_nodes');
  let s = seed;
  const rand = () => { s = (s * 1103515245 + 12345) >>> 0; return s / 4294967296; };
  const mock = await startKafkaMock({ brokers: 3, partitions: 4 });
  const root = tempDir('tandem-crash-nodes-');
  const nodes = [];
  try {
    const pdir = `${root}/primary`;
    const key = await writeKey(pdir, 'web');
    await createSuperuser(pdir);
    // capture nodes start with empty stores: the write key reaches them through the key topic
    // (docs/scale-out.md "Write keys")
    const cdirs = [1, 2, 3].map((i) => `${root}/capture${i}`);
    const primary = new Restartable(pdir, kafkaArgs(mock, ['--role', 'primary']));
    nodes.push(primary);
    await primary.start();
    const captures = cdirs.map((d) => new Restartable(d, kafkaArgs(mock, ['--role', 'capture'])));
    nodes.push(...captures);
    for (const c of captures) await c.start();

    const pick = async (r) => {
      for (;;) {
        const up = captures.filter((c) => c.url);
        if (up.length) return up[r.int(0, up.length - 1)].url;
        await sleep(5);
      }
    };
    const sent = new Set(), acked = new Set();
    const stats = { requests: 0, ok: 0, status503: 0, noAnswer: 0, retries: 0, unexpected: [] };
    const stop = traffic(pick, key, seed, stats, sent, acked);
    const events = [];
    try {
      for (let round = 0; round < 6; round++) {
        await sleep(300 + Math.floor(rand() * 500));
        const victim = captures[Math.floor(rand() * captures.length)];
        events.push(`kill capture ${captures.indexOf(victim) + 1}`);
        await victim.kill();
        await sleep(Math.floor(rand() * 200));
        await victim.start();
        // the primary reads the relay's position from every partition when it starts: it is
        // restarted while all brokers are up (docs/scale-out.md)
        if (round === 1) { events.push('kill primary'); await primary.kill(); await primary.start(); }
        if (round === 3) { events.push('broker 2 down'); await mock.cmd('down 2'); }
        if (round === 4) { events.push('broker 2 up'); await mock.cmd('up 2'); }
      }
      await sleep(500);
    } finally {
      await stop();
    }
    console.log(`kafka_nodes: ${events.join(', ')}; ${JSON.stringify({ ...stats, sent: sent.size, acked: acked.size })}`);
    assert.deepEqual(stats.unexpected, [], 'only 200 and 503 (with Retry-After) are allowed answers');
    assert.ok(acked.size > 0);
    const token = await signIn(primary.url);
    await drained(primary.url, token);
    const n = await checkExactlyOnce(primary.url, token, acked, sent);
    console.log(`kafka_nodes: ${n} events in the primary's warehouse, ${acked.size} acknowledged`);
    for (const nd of nodes) await nd.stop();
    rmSync(root, { recursive: true, force: true });
  } finally {
    for (const nd of nodes) if (nd.srv) await nd.srv.stop('SIGKILL');
    await mock.stop();
  }
});
